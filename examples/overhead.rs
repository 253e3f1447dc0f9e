//! What an isolated test costs: nstest beside an in-process test, `unshare`+`chroot` and
//! bubblewrap, on the same extracted rootfs. Run as root:
//!
//! ```text
//! cargo run --release --example overhead            # the full table (about ten minutes)
//! cargo run --release --example overhead -- quick   # 10 and 100 tests only
//! ```
//!
//! Per-test cost is measured sequentially (`--test-threads 1`: each run timed, median and p95)
//! and in parallel on every core (throughput: wall time / tests). "cores busy" is how many cores
//! the whole machine kept busy meanwhile (/proc/stat: helper threads and kernel workers count).
//! Peak memory is the largest resident set of a container's PID 1. "a process per test" runs
//! each test as `cargo nextest run` does: this binary started as a harness
//! (`<binary> --exact trivial --nocapture`), once per test (nextest's own work not included).

#[path = "support/cpu.rs"]
mod cpu;
use cpu::{cpu_jiffies, print_steal, steal_percent};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[nstest::test]
fn trivial() {}

/// The same without a network namespace of its own: what the network namespace costs.
#[nstest::test(net = "host")]
fn trivial_host_net() {}

/// A function call, as an in-process `#[test]` costs.
#[inline(never)]
fn in_process() {
    std::hint::black_box(());
}

#[derive(Clone, Copy)]
enum What {
    InProcess,
    Nstest,
    NstestHostNet,
    NstestProcess,
    Unshare,
    Bwrap,
}

fn run_once(what: What, root: &Path) {
    match what {
        What::InProcess => in_process(),
        What::Nstest => {
            nstest::__private::run_isolated(&__NSTEST_DESC_trivial).expect("trivial test passes")
        }
        What::NstestHostNet => nstest::__private::run_isolated(&__NSTEST_DESC_trivial_host_net)
            .expect("trivial test passes"),
        What::NstestProcess => tool(
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "trivial", "--nocapture"])
                .env(AS_HARNESS, "1"),
        ),
        What::Unshare => tool(
            Command::new("unshare")
                .args([
                    "--uts", "--pid", "--mount", "--ipc", "--net", "--fork", "chroot",
                ])
                .arg(root)
                .arg("/bin/true"),
        ),
        What::Bwrap => tool(Command::new("bwrap").arg("--bind").arg(root).args([
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--unshare-uts",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-net",
            "/bin/true",
        ])),
    }
}

/// Set for a child that is to be a test binary's harness (`nstest::main!()`).
const AS_HARNESS: &str = "OVERHEAD_AS_HARNESS";

fn tool(cmd: &mut Command) {
    let st = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("tool runs");
    assert!(st.success(), "{cmd:?} failed");
}

struct Stats {
    median: Duration,
    p95: Duration,
    /// Wall time divided by the number of tests, on `threads` threads.
    per_test: Duration,
    /// How many cores the whole machine kept busy meanwhile (all processes and kernel threads:
    /// helper threads, namespace clean-up), from /proc/stat.
    cores_busy: f64,
}

fn measure(what: What, root: &Path, n: usize, threads: usize) -> Stats {
    run_once(what, root); // warm: rootfs prepared, caches hot
    let next = AtomicUsize::new(0);
    let cpu_before = cpu_jiffies();
    let start = Instant::now();
    let mut times: Vec<Duration> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        let t = Instant::now();
                        run_once(what, root);
                        mine.push(t.elapsed());
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let wall = start.elapsed();
    let cpu_after = cpu_jiffies();
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let share = (cpu_after.busy - cpu_before.busy) as f64
        / (cpu_after.total - cpu_before.total).max(1) as f64;
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    Stats {
        median: at(0.5),
        p95: at(0.95),
        per_test: wall / n as u32,
        cores_busy: share * cores,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// The largest resident set of a container's PID 1 seen by the variant children (which wait
/// for nothing but containers), in KiB.
static PEAK_CONTAINER_RSS: AtomicUsize = AtomicUsize::new(0);

fn max_rss_kib() -> i64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|u| u.max_rss())
        .unwrap_or(0)
}

/// The busybox base nstest built, and a copy of it grown to `extra_mb` by one big file.
fn roots() -> Vec<(String, PathBuf)> {
    nstest::__private::run_isolated(&__NSTEST_DESC_trivial).expect("nstest works here");
    let prepared =
        nstest::rootfs::prepare(&nstest::spec::RootfsSource::Busybox).expect("busybox base");
    let nstest::rootfs::Base::Dir(small) = prepared.base else {
        panic!("no busybox base")
    };
    let big = std::env::temp_dir().join("nstest-overhead-300mb");
    if !big.join("big.bin").exists() {
        let _ = std::fs::remove_dir_all(&big);
        tool(Command::new("cp").arg("-a").arg(&small).arg(&big));
        tool(
            Command::new("dd")
                .args(["if=/dev/zero", "bs=1M", "count=300"])
                .arg(format!("of={}", big.join("big.bin").display())),
        );
    }
    let size = |p: &Path| {
        let out = Command::new("du").arg("-sm").arg(p).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_string()
    };
    vec![
        (format!("{} MB", size(&small)), small),
        (format!("{} MB", size(&big)), big),
    ]
}

fn main() {
    nstest::init();
    if std::env::var_os(AS_HARNESS).is_some() {
        nstest::__private::harness_main();
    }
    // `copy` child: the same measurement with NSTEST_OVERLAY=off, in a fresh process.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let root = PathBuf::from(&args[1]);
        let (n, threads) = (args[2].parse().unwrap(), args[3].parse().unwrap());
        std::env::set_var("NSTEST_ROOTFS", &root);
        let s = measure(What::Nstest, &root, n, threads);
        println!(
            "{} {} {} {} {}",
            s.median.as_nanos(),
            s.p95.as_nanos(),
            s.per_test.as_nanos(),
            max_rss_kib(),
            s.cores_busy
        );
        return;
    }
    let quick = args.iter().any(|a| a == "quick");
    let at_start = cpu_jiffies();
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2);
    let mut has_bwrap = Command::new("bwrap").arg("--version").output().is_ok();
    if !has_bwrap && nix::unistd::geteuid().is_root() && Path::new("/usr/bin/apt-get").exists() {
        // The peer comes from Debian's packages.
        println!("installing bubblewrap (apt-get install -y bubblewrap) for the comparison");
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "bubblewrap"])
            .stdout(Stdio::null())
            .status();
        has_bwrap = Command::new("bwrap").arg("--version").output().is_ok();
    }
    println!(
        "nstest overhead — {} cores, kernel {}",
        cores,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    if !has_bwrap {
        println!("(bwrap not installed: apt-get install bubblewrap)");
    }
    for (label, root) in roots() {
        std::env::set_var("NSTEST_ROOTFS", &root);
        let counts: &[usize] = if quick { &[10, 100] } else { &[10, 100, 1000] };
        for &n in counts {
            println!("\nrootfs {label}, {n} tests");
            println!(
                "{:<31} {:>7} {:>10} {:>10} {:>12} {:>10} {:>9} {:>11}",
                "what",
                "threads",
                "median ms",
                "p95 ms",
                "per test ms",
                "x unshare",
                "x bwrap",
                "cores busy"
            );
            for threads in [1, cores] {
                let base = measure(What::Unshare, &root, n, threads);
                let bw = has_bwrap.then(|| measure(What::Bwrap, &root, n, threads));
                let mut rows: Vec<(&str, Stats)> = vec![(
                    "in-process #[test]",
                    measure(What::InProcess, &root, n, threads),
                )];
                rows.push(("nstest, overlay", measure(What::Nstest, &root, n, threads)));
                rows.push((
                    "nstest, overlay, net=host",
                    measure(What::NstestHostNet, &root, n, threads),
                ));
                // Variants that need other settings for the whole process run in a child of
                // this benchmark: the copy fallback (copies the whole rootfs per test: kept
                // short), the network namespace made in each clone (no ready-made pool), each
                // container cloned and re-executed by the harness (no fork server), and a user
                // namespace (rootless: as root, the single-id map 0 -> 0).
                let big = root.ends_with("nstest-overhead-300mb");
                let variants = [
                    (
                        "nstest, copy fallback",
                        ("NSTEST_OVERLAY", "off"),
                        if big { n.min(10) } else { n.min(100) },
                    ),
                    (
                        "nstest, overlay, no netns pool",
                        ("NSTEST_NETNS_POOL", "off"),
                        n,
                    ),
                    (
                        "nstest, overlay, no fork server",
                        ("NSTEST_FORK_SERVER", "off"),
                        n,
                    ),
                    ("nstest, overlay, rootless", ("NSTEST_ROOTLESS", "1"), n),
                ];
                for (label, (var, value), count) in variants {
                    let out = Command::new(std::env::current_exe().unwrap())
                        .args([
                            "--child",
                            root.to_str().unwrap(),
                            &count.to_string(),
                            &threads.to_string(),
                        ])
                        .env(var, value)
                        .output()
                        .unwrap();
                    let v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    if v.len() >= 5 {
                        PEAK_CONTAINER_RSS.fetch_max(v[3] as usize, Ordering::Relaxed);
                        let d = |ns: f64| Duration::from_nanos(ns as u64);
                        rows.push((
                            label,
                            Stats {
                                median: d(v[0]),
                                p95: d(v[1]),
                                per_test: d(v[2]),
                                cores_busy: v[4],
                            },
                        ));
                    }
                }
                rows.push((
                    "nstest, a process per test",
                    measure(What::NstestProcess, &root, n.min(100), threads),
                ));
                rows.push(("unshare + chroot", base));
                if let Some(bw) = bw {
                    rows.push(("bwrap", bw));
                }
                let unshare = rows
                    .iter()
                    .find(|r| r.0 == "unshare + chroot")
                    .unwrap()
                    .1
                    .per_test;
                let bwrap = rows.iter().find(|r| r.0 == "bwrap").map(|r| r.1.per_test);
                for (name, s) in &rows {
                    let ratio =
                        |b: Duration| format!("{:.2}", s.per_test.as_secs_f64() / b.as_secs_f64());
                    println!(
                        "{:<31} {:>7} {:>10} {:>10} {:>12} {:>10} {:>9} {:>11.2}",
                        name,
                        threads,
                        ms(s.median),
                        ms(s.p95),
                        ms(s.per_test),
                        ratio(unshare),
                        bwrap.map(ratio).unwrap_or_default(),
                        s.cores_busy
                    );
                }
            }
        }
    }
    println!(
        "\npeak resident memory of any one container's PID 1 (the variant rows' containers): {} KiB",
        PEAK_CONTAINER_RSS.load(Ordering::Relaxed)
    );
    print_steal(steal_percent(at_start, cpu_jiffies()));
}
