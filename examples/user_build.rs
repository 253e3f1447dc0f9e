//! What an isolated test costs where users run it: a crate of their own that depends on
//! nstest, built by cargo in the default dev profile (no profile override), run by `cargo test`
//! and by `cargo nextest run` (a process per test), beside `unshare` + `chroot` of `/bin/true`
//! over the same root in the same run. Run as root:
//!
//! ```text
//! cargo run --release --example user_build            # 200 tests a row
//! cargo run --release --example user_build -- 50      # 50
//! cargo run --release --example user_build -- 200 --baseline ../nstest-before
//! ```
//!
//! With `--baseline DIR`, the generated crate is also built against the nstest checkout at
//! DIR, and its test processes are timed in turn with this checkout's: a before/after that the
//! machine's noise hits alike, and `cargo nextest run` of its isolated tests is timed in turn
//! with this checkout's runs. Every test binary is rewritten in place once built (`hold_alike`),
//! so that the page cache holds each alike.
//!
//! It writes a crate under `$TMPDIR/nstest-user-build/` (`tests/t.rs`: N `#[nstest::test]`s
//! and N plain `#[test]`s, in one ordinary libtest target), builds it in both profiles, then
//! times, sequentially: its test binary on the isolated tests (`--test-threads 1`, as `cargo
//! test -- --test-threads 1` runs it); a process per test as nextest starts them (`<binary>
//! <name> --exact --nocapture`), an isolated test's and a plain one's in turn, without nextest
//! around them; and `cargo nextest run -j 1` on the isolated tests and on the plain ones, in
//! five rounds, the median of each (what nstest adds under nextest is the difference), per test
//! by nextest's own time for the tests (its `Summary` line: cargo's start and the test list,
//! which vary by more than that difference, left out; the whole command's is shown too). Each
//! round times the floor again right before its runs, and the nextest rows are set against
//! those floors: what nstest adds, as a share of its own round's floor, round by round and the
//! median (a busy stretch of the machine then moves both sides of a ratio alike).
//! "CPU ms" is the CPU time per test on all cores (from `/proc/stat`: the harness, the
//! containers, kernel workers; a VM's steal not counted). The last line says how much of the
//! CPUs' time the hypervisor gave other guests while the rows were timed.

#[path = "support/cpu.rs"]
mod cpu;
use cpu::{cpu_jiffies, print_steal, steal_percent};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Wall time and CPU time (all cores, steal not counted) of `f`.
fn timed(f: impl FnOnce()) -> (Duration, Duration) {
    let hz = 100.0; // USER_HZ: /proc/stat counts in 1/100 s on Linux
    let before = cpu_jiffies();
    let start = Instant::now();
    f();
    let wall = start.elapsed();
    let after = cpu_jiffies();
    (
        wall,
        Duration::from_secs_f64((after.busy - before.busy) as f64 / hz),
    )
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.stderr(Stdio::piped()).output().expect("command runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// The generated crate, with `n` isolated and `n` plain tests.
fn write_crate(dir: &Path, n: usize, nstest: &Path) {
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"user-build\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dev-dependencies]\nnstest = {{ path = {:?} }}\n\n[workspace]\n",
            nstest.display().to_string()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), "").unwrap();
    let mut t = String::new();
    for i in 0..n {
        t.push_str(&format!(
            "#[nstest::test]\nfn iso_{i:04}() {{}}\n#[test]\nfn plain_{i:04}() {{}}\n"
        ));
    }
    std::fs::write(dir.join("tests/t.rs"), t).unwrap();
}

/// Builds the crate's tests in `profile` (`dev` or `release`); the test binary.
fn build(dir: &Path, profile: &str) -> PathBuf {
    let mut cmd = Command::new("cargo");
    cmd.args(["test", "--no-run", "--message-format=short"])
        .current_dir(dir);
    if profile == "release" {
        cmd.arg("--release");
    }
    let out = run(&mut cmd);
    let exe = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Executable tests/t.rs ("))
        .and_then(|l| l.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no test binary in:\n{out}"));
    let exe = dir.join(exe);
    hold_alike(&exe);
    exe
}

/// Rewrites the binary `exe` in place by a plain read and write. How the page cache holds a
/// binary (as the linker wrote it, or as a plain write did) moves what its processes cost by up
/// to 0.8 ms on its own, more than a change to compare: every binary timed here is held alike,
/// whichever checkout and profile it is of. Cargo still finds it fresh.
fn hold_alike(exe: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let new = exe.with_extension("rewritten");
    let bytes = std::fs::read(exe).expect("the test binary reads");
    std::fs::write(&new, bytes).expect("its copy writes");
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&new, exe).expect("the copy replaces it");
}

/// One `cargo nextest run`: its whole time and the CPUs' (all cores), and nextest's own time
/// for its tests.
struct NextestRun {
    wall: Duration,
    cpu: Duration,
    tests: Duration,
}

/// nextest's own time for a run's tests, from its `Summary [   2.879s] …` line.
fn summary_time(out: &str) -> Duration {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Summary ["))
        .and_then(|l| l.split_once("s]"))
        .and_then(|(secs, _)| secs.trim().parse().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or_else(|| panic!("no Summary line in nextest's output:\n{out}"))
}

/// One round of the `cargo nextest run` rows: the floor timed right before it (wall, CPU),
/// then the runs.
struct Round {
    floor: (Duration, Duration),
    iso: NextestRun,
    plain: NextestRun,
    base_iso: Option<NextestRun>,
}

/// Round by round: the floor, what nstest adds under nextest (`iso` of a round against its
/// plain run, on nextest's own time), and that as a share of the round's floor, with the
/// median of those shares.
fn print_rounds(rounds: &[Round], n: usize, iso: impl Fn(&Round) -> Option<&NextestRun>) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    let mut shares = Vec::new();
    let each: Vec<String> = rounds
        .iter()
        .filter_map(|r| {
            let added = ms(iso(r)?.tests) - ms(r.plain.tests);
            let share = added / ms(r.floor.0);
            shares.push(share);
            Some(format!("{added:.2}/{:.2}={share:.2}", ms(r.floor.0)))
        })
        .collect();
    shares.sort_by(f64::total_cmp);
    let median = shares.get(shares.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "    round by round, added/floor ms: {} (median {median:.2})",
        each.join(" ")
    );
}

fn row(name: &str, n: usize, (wall, cpu): (Duration, Duration), floor: Option<Duration>) {
    let per = wall.as_secs_f64() * 1000.0 / n as f64;
    let cpu = cpu.as_secs_f64() * 1000.0 / n as f64;
    let x = floor.map_or(String::new(), |f| {
        format!("{:.2}", per / (f.as_secs_f64() * 1000.0 / n as f64))
    });
    println!("{name:<44} {per:>10.3} {x:>10} {cpu:>10.3}");
}

/// A row without the CPU column.
fn row_wall(name: &str, n: usize, wall: Duration, floor: Option<Duration>) {
    let per = wall.as_secs_f64() * 1000.0 / n as f64;
    let x = floor.map_or(String::new(), |f| {
        format!("{:.2}", per / (f.as_secs_f64() * 1000.0 / n as f64))
    });
    println!("{name:<44} {per:>10.3} {x:>10} {:>10}", "-");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200);
    // `--baseline DIR`: the same generated crate built against the nstest checkout at DIR too,
    // its test processes timed in turn with this one's (a before/after on a noisy machine).
    let baseline = args
        .iter()
        .position(|a| a == "--baseline")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let dir = std::env::temp_dir().join("nstest-user-build");
    write_crate(&dir, n, Path::new(env!("CARGO_MANIFEST_DIR")));
    let base_dir = std::env::temp_dir().join("nstest-user-build-baseline");
    let base_dev = baseline.map(|checkout| {
        let dir = &base_dir;
        write_crate(dir, n, &checkout);
        println!(
            "building the generated crate against {} …",
            checkout.display()
        );
        let exe = build(dir, "dev");
        run(Command::new(&exe).args(["iso_0000", "--exact"]));
        exe
    });
    let has_nextest = Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    println!("building the generated crate (dev and release profiles) …");
    let dev = build(&dir, "dev");
    let release = build(&dir, "release");
    // Warm: the rootfs is built once into the cache, the binaries are in the page cache.
    run(Command::new(&dev).args(["iso_0000", "--exact"]));
    run(Command::new(&release).args(["iso_0000", "--exact"]));
    let root = nstest::rootfs::prepare(&nstest::spec::RootfsSource::Busybox)
        .ok()
        .and_then(|p| match p.base {
            nstest::rootfs::Base::Dir(d) => Some(d),
            nstest::rootfs::Base::Host => None,
        })
        .expect("the busybox base (apt-get install busybox-static)");

    let at_start = cpu_jiffies();
    println!(
        "\n{n} tests a row, sequential; x unshare = per test / unshare's per run\n{:<44} {:>10} {:>10} {:>10}",
        "what", "ms/test", "x unshare", "CPU ms"
    );
    let unshare_floor = || {
        timed(|| {
            for _ in 0..n {
                run(Command::new("unshare")
                    .args([
                        "--uts", "--pid", "--mount", "--ipc", "--net", "--fork", "chroot",
                    ])
                    .arg(&root)
                    .arg("/bin/true"));
            }
        })
    };
    let floor = unshare_floor();
    let f = Some(floor.0);
    row("unshare + chroot of /bin/true (the floor)", n, floor, f);
    let libtest = |exe: &Path| {
        timed(|| {
            run(Command::new(exe).args(["iso_", "--test-threads", "1"]));
        })
    };
    row("cargo test, dev profile (the default)", n, libtest(&dev), f);
    row("cargo test, release profile", n, libtest(&release), f);
    // What nextest starts for each test, without nextest around it (its own work, and its
    // threads competing for the cores, vary more than what nstest adds): the dev binary run
    // as `<binary> <name> --exact --nocapture`, an isolated test's process and a plain one's
    // in turn, each timed on its own. (No CPU column: /proc/stat counts too coarsely for one
    // process.) In turn rather than in blocks: timed both ways, the difference was the same
    // (2.96 and 2.95 ms), so what the kernel still does after an isolated test's process is
    // not counted against the plain one after it.
    // iso, plain; the baseline's iso, plain
    let mut sums = [Duration::ZERO; 4];
    for i in 0..n {
        let exes = std::iter::once(&dev).chain(&base_dev);
        for (e, exe) in exes.enumerate() {
            for (k, kind) in ["iso", "plain"].iter().enumerate() {
                let start = Instant::now();
                run(Command::new(exe).args([&format!("{kind}_{i:04}"), "--exact", "--nocapture"]));
                sums[e * 2 + k] += start.elapsed();
            }
        }
    }
    row_wall("a process per test, dev: an nstest test", n, sums[0], f);
    row_wall("a process per test, dev: a plain #[test]", n, sums[1], f);
    row_wall(
        "  what nstest adds to a test's process",
        n,
        sums[0].saturating_sub(sums[1]),
        f,
    );
    if base_dev.is_some() {
        row_wall(
            "  the same, with the baseline's nstest",
            n,
            sums[2].saturating_sub(sums[3]),
            f,
        );
    }
    if has_nextest {
        let nextest = |filter: &str, dir: &Path| {
            let mut out = String::new();
            let (wall, cpu) = timed(|| {
                out = run(Command::new("cargo")
                    .args(["nextest", "run", "-j", "1", "--no-fail-fast", "-E"])
                    .arg(format!("test(/^{filter}/)"))
                    .current_dir(dir));
            });
            NextestRun {
                wall,
                cpu,
                tests: summary_time(&out),
            }
        };
        // Five rounds, each a run of the isolated tests and one of the plain ones (and one of
        // the baseline's isolated tests, if any), each row their median. A run's whole time
        // includes cargo's and nextest's start (the build check, the test list), which varies
        // from run to run by more than what nstest adds to 200 tests: the rows take nextest's
        // own time for its tests (its `Summary` line), from the first test's start to the last
        // one's end. Each round also times the floor again right before its runs, and what
        // nstest adds is set against the floor of its own round too: a busy stretch of the
        // machine (steal) that lasts a round moves both sides of that ratio.
        const RUNS: usize = 5;
        let mut rounds = Vec::new();
        for _ in 0..RUNS {
            let floor = unshare_floor();
            let iso = nextest("iso_", &dir);
            let plain = nextest("plain_", &dir);
            let base_iso = base_dev.as_ref().map(|_| nextest("iso_", &base_dir));
            rounds.push(Round {
                floor,
                iso,
                plain,
                base_iso,
            });
        }
        let median = |mut v: Vec<(Duration, Duration)>| {
            v.sort();
            v.get(v.len() / 2).copied().unwrap_or_default()
        };
        let of = |f: &dyn Fn(&Round) -> Option<(Duration, Duration)>| {
            median(rounds.iter().filter_map(f).collect())
        };
        let tests = |r: &NextestRun| (r.tests, r.cpu);
        let (iso, plain) = (of(&|r| Some(tests(&r.iso))), of(&|r| Some(tests(&r.plain))));
        let round_floor = of(&|r| Some(r.floor));
        let f = Some(round_floor.0);
        println!(
            "cargo nextest run, against the floor timed in each of its {RUNS} rounds (medians; \
             ms/test from nextest's own run time, CPU over the whole command):"
        );
        row(
            "unshare + chroot of /bin/true, in the rounds",
            n,
            round_floor,
            f,
        );
        row("cargo nextest run -j 1, dev: nstest tests", n, iso, f);
        row("cargo nextest run -j 1, dev: plain #[test]s", n, plain, f);
        let added = |a: (Duration, Duration), b: (Duration, Duration)| {
            (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1))
        };
        row("  what nstest adds under nextest", n, added(iso, plain), f);
        print_rounds(&rounds, n, |r| Some(&r.iso));
        let whole = |r: &NextestRun| (r.wall, r.cpu);
        row(
            "  the same on the whole command's time",
            n,
            added(of(&|r| Some(whole(&r.iso))), of(&|r| Some(whole(&r.plain)))),
            f,
        );
        if base_dev.is_some() {
            row(
                "  what the baseline's nstest adds",
                n,
                added(of(&|r| r.base_iso.as_ref().map(tests)), plain),
                f,
            );
            print_rounds(&rounds, n, |r| r.base_iso.as_ref());
        }
    } else {
        println!("(cargo-nextest not installed: no nextest rows)");
    }
    print_steal(steal_percent(at_start, cpu_jiffies()));
}
