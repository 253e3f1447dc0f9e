//! A real nstest test binary whose tests demonstrate the container and fail on purpose, each
//! in its own way. Built by `cargo test` as the example `e2e-fixture`; `tests/e2e.rs` runs it
//! and checks every reported outcome and that the host is untouched.
//!
//! Tests named `demo_*` must pass; `fail_*` must fail for the reason `tests/e2e.rs` expects;
//! `#[ignore]`d ones are driven explicitly (hangs, signals).

// Leaving processes behind, unwaited, is what these tests are about.
#![allow(clippy::zombie_processes)]

use std::path::Path;
use std::process::{Command, Stdio};

/// Marks processes a test leaves behind, so the host can be searched for them afterwards.
const ORPHAN_SECONDS: &str = "987654";

#[nstest::test(hostname = "inside")]
fn demo_hostname_changes_stay_inside() {
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "inside"
    );
    let st = Command::new("hostname")
        .arg("changed-by-test")
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "changed-by-test"
    );
}

#[nstest::test]
fn demo_pid_one() {
    assert_eq!(std::process::id(), 1);
    let status = std::fs::read_to_string("/proc/1/status").unwrap();
    assert!(status.contains("PPid:\t0"), "{status}");
    // Named after the test binary (the kernel keeps 15 bytes), not `exe` after /proc/self/exe.
    let argv0 = std::env::args().next().unwrap();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let comm = std::fs::read_to_string("/proc/1/comm").unwrap();
    assert_eq!(comm.trim_end(), &name[..name.len().min(15)]);
    // The C library knows the main thread by its id in here (a clone of the fork server has it
    // rewritten, as fork does): another thread can signal it.
    // SAFETY: pthread_self has no preconditions.
    let main = unsafe { libc::pthread_self() };
    // SAFETY: `main` is this live thread (it joins below); signal 0 only checks it exists.
    let r = std::thread::spawn(move || unsafe { libc::pthread_kill(main, 0) });
    assert_eq!(r.join().unwrap(), 0, "pthread_kill(main thread, 0)");
    // A cgroup namespace of its own: its cgroup is the root it sees.
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    assert!(cgroups.lines().all(|l| l.ends_with(":/")), "{cgroups}");
}

#[nstest::test]
fn demo_proc_shows_only_the_container() {
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect();
    assert_eq!(pids, [1], "only PID 1 in /proc");
    let out = Command::new("ps").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 3, "header, the test and ps:\n{text}");
}

#[nstest::test]
fn demo_a_writes_a_marker() {
    std::fs::write("/etc/nstest-marker", "from demo_a").unwrap();
    std::fs::write("/bin/nstest-marker", "from demo_a").unwrap();
    assert!(Path::new("/etc/nstest-marker").exists());
}

#[nstest::test]
fn demo_b_never_sees_the_marker() {
    assert!(!Path::new("/etc/nstest-marker").exists());
    assert!(!Path::new("/bin/nstest-marker").exists());
}

// Without the package: what it shows (the host's loader under /usr and /lib64, read-only bind
// mounts) could not be deleted.
#[nstest::test(package = false)]
fn demo_c_deletes_bin_etc_usr() {
    for d in ["/bin", "/etc", "/usr", "/sbin"] {
        std::fs::remove_dir_all(d).unwrap();
        assert!(!Path::new(d).exists());
    }
}

#[nstest::test]
fn demo_d_has_a_whole_rootfs() {
    for p in ["/bin/sh", "/etc/passwd", "/usr/bin", "/sbin"] {
        assert!(Path::new(p).exists(), "{p} is missing");
    }
    let out = Command::new("/bin/sh")
        .args(["-c", "echo ok"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"ok\n");
}

#[nstest::test]
fn demo_network_is_loopback_only() {
    let ifaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(ifaces, ["lo"]);
    let flags = std::fs::read_to_string("/sys/class/net/lo/flags").unwrap();
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is up");
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
}

#[nstest::test(net = "host")]
fn demo_net_host_shares_the_hosts_network() {
    // A network namespace of its own would hold only `lo`; the host's has its interfaces.
    let ifaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(ifaces.len() > 1, "only {ifaces:?}: not the host's network");
    assert_eq!(
        std::process::id(),
        1,
        "still PID 1 of its own PID namespace"
    );
}

#[nstest::test]
fn demo_env_is_clean() {
    let allowed = [
        "PATH",
        "HOME",
        "HOSTNAME",
        "TERM",
        "RUST_BACKTRACE",
        "RUST_LIB_BACKTRACE",
        "RUST_MIN_STACK",
        "RUST_LOG",
        "OUT_DIR",
        "CARGO",
    ];
    for (k, v) in std::env::vars() {
        // tests/e2e.rs gives the harness secrets (`E2E_SECRET`, `CARGO_REGISTRY_TOKEN`) that
        // must not reach a test; what cargo sets for a test run does.
        assert!(
            !v.contains("hunter2"),
            "{k} leaked from the harness's environment"
        );
        assert!(
            allowed.contains(&k.as_str()) || k.starts_with("CARGO_") || k.starts_with("NEXTEST"),
            "{k} leaked from the harness's environment"
        );
    }
    // The kernel's record of the environment says the same: nothing of the harness's (nor
    // nstest's own variables) is left in /proc/self/environ.
    let kernel: std::collections::BTreeSet<String> = std::fs::read("/proc/self/environ")
        .unwrap()
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    let seen: std::collections::BTreeSet<String> =
        std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(kernel, seen, "/proc/self/environ");
    assert_eq!(
        std::env::var("PATH").unwrap(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(std::env::var("HOME").unwrap(), "/root");
    assert_eq!(std::env::var("HOSTNAME").unwrap(), "demo-env-is-clean");
}

#[nstest::test(
    bind = ["/etc/os-release:/host/os-release", "/usr/bin:/host/bin:ro"],
    env = ["GREETING=hello", "EMPTY="],
    workdir = "/srv/app"
)]
fn demo_bind_env_workdir() {
    assert_eq!(std::env::current_dir().unwrap(), Path::new("/srv/app"));
    assert_eq!(std::env::var("GREETING").unwrap(), "hello");
    assert_eq!(std::env::var("EMPTY").unwrap(), "");
    let os = std::fs::read_to_string("/host/os-release").unwrap();
    assert!(os.contains("ID="), "{os}");
    assert!(
        Path::new("/host/bin/sh").exists(),
        "the host's /usr/bin is bound"
    );
    assert!(
        std::fs::write("/host/os-release", "x").is_err(),
        "read-only by default"
    );
    assert!(
        std::fs::write("/host/bin/nstest-x", "x").is_err(),
        ":ro is read-only"
    );
}

#[nstest::test]
fn demo_dev_and_tmp() {
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd",
    ] {
        assert!(
            Path::new("/dev").join(d).symlink_metadata().is_ok(),
            "/dev/{d} missing"
        );
    }
    std::fs::write("/dev/null", "x").unwrap();
    // A fresh /tmp: nothing in it but the way to the package or the test binary, shown at
    // their own paths where they live under the host's /tmp (an unprivileged run's copy).
    let shown: Vec<std::path::PathBuf> = [
        std::env::current_exe().unwrap(),
        env!("CARGO_MANIFEST_DIR").into(),
    ]
    .iter()
    .filter_map(|p| p.strip_prefix("/tmp").ok()?.components().next())
    .map(|c| Path::new("/tmp").join(c))
    .collect();
    let entries: Vec<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !shown.contains(p))
        .collect();
    assert_eq!(entries, Vec::<std::path::PathBuf>::new(), "a fresh /tmp");
    assert!(
        std::fs::write("/sys/kernel/x", "y").is_err(),
        "/sys is read-only"
    );
}

#[nstest::test]
fn demo_orphans_left_running() {
    // A plain child and a double-forked daemon, neither waited for: they die with the container.
    Command::new("sleep")
        .arg(ORPHAN_SECONDS)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Command::new("sh")
        .args(["-c", &format!("sleep {ORPHAN_SECONDS} &")])
        .status()
        .unwrap();
}

#[nstest::test]
fn demo_only_documented_fds_are_open() {
    // 0, 1, 2, and 3: the report pipe (close-on-exec). Nothing the harness held.
    let mut fds: Vec<u32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !std::fs::read_link(e.path()).is_ok_and(|l| l.starts_with("/proc")))
        .map(|e| e.file_name().to_str().unwrap().parse().unwrap())
        .collect();
    fds.sort();
    assert_eq!(fds, [0, 1, 2, 3]);
    let flags = std::fs::read_to_string("/proc/self/fdinfo/3").unwrap();
    let flags = flags.lines().find(|l| l.starts_with("flags:")).unwrap();
    let flags = u32::from_str_radix(flags.trim_start_matches("flags:").trim(), 8).unwrap();
    assert_ne!(flags & 0o2000000, 0, "the report pipe is close-on-exec");
}

#[nstest::test]
fn demo_no_signal_is_blocked_or_ignored() {
    // Whatever the harness's spawner blocked or ignored (a signal mask and an ignored signal
    // survive exec: `nohup`, a script's background job), the test's thread starts with no
    // signal blocked and these at their default, however its container was cloned.
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let mask = |name: &str| {
        let line = status.lines().find_map(|l| l.strip_prefix(name)).unwrap();
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{status}");
    // Bit n-1 is signal n. (Rust's runtime ignores SIGPIPE itself, and glibc's posix_spawn,
    // as cargo runs tests, leaves its internal signal 32 ignored.)
    let ignored = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTERM,
        libc::SIGCHLD,
    ]
    .iter()
    .fold(0, |m, s| m | 1 << (s - 1));
    assert_eq!(mask("SigIgn:") & ignored, 0, "{status}");
}

#[nstest::test]
fn demo_namespace_limits_stay_with_the_test() {
    // Rootless, /proc/sys/user holds the limits of the test's own user namespace: a test may
    // lower them, and no other test of the run may feel it (the fixture's other tests would
    // fail to start). As root, /proc/sys is read-only.
    let uid_map = std::fs::read_to_string("/proc/self/uid_map").unwrap();
    let rootless = !uid_map.contains("4294967295");
    let lowered = std::fs::write("/proc/sys/user/max_mnt_namespaces", "0");
    if rootless {
        lowered.unwrap();
        let more = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS);
        assert_eq!(
            more,
            Err(nix::errno::Errno::ENOSPC),
            "the limit holds in here"
        );
    } else {
        assert!(lowered.is_err(), "/proc/sys is read-only as root");
    }
}

#[nstest::test]
fn demo_host_wide_proc_knobs_are_read_only() {
    // Each write is harmless even if it went through: the same value back, sysrq's help text.
    let swappiness = std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
    assert!(
        std::fs::write("/proc/sys/vm/swappiness", &swappiness).is_err(),
        "/proc/sys is read-only"
    );
    assert!(
        std::fs::write("/proc/sysrq-trigger", "h").is_err(),
        "/proc/sysrq-trigger is read-only"
    );
    // Host hardware knobs are out of reach: masked (as root) or not writable (rootless).
    let irq_writable = std::fs::read_dir("/proc/irq")
        .map(|d| {
            d.flatten().any(|e| {
                // The value it already has: harmless even if the write went through.
                let f = e.path().join("smp_affinity_list");
                std::fs::read_to_string(&f).is_ok_and(|v| std::fs::write(&f, v).is_ok())
            })
        })
        .unwrap_or(false);
    assert!(
        !irq_writable,
        "/proc/irq reaches the host's interrupt routing"
    );
    // The container's hostname is still the test's to change, with sethostname(2).
    assert!(Command::new("hostname")
        .arg("renamed")
        .status()
        .unwrap()
        .success());
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "renamed"
    );
}

#[nstest::test]
fn demo_cannot_modify_its_own_binary() {
    for exe in ["/proc/self/exe", "/proc/1/exe"] {
        let append = std::fs::OpenOptions::new().append(true).open(exe);
        assert!(append.is_err(), "{exe} opened for writing");
        let truncate = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(exe);
        assert!(truncate.is_err(), "{exe} truncated");
    }
}

#[nstest::test]
fn demo_a_hundred_orphans_are_reaped_and_the_test_waits_for_its_own() {
    // 100 orphans re-parented to PID 1 while the test runs: 90 of the test's own session
    // (`(cmd &)` in a subshell), 10 daemon-style (setsid). nstest reaps every one while the test
    // runs; the test's own child is still its to wait for, with its exact status.
    let own = Command::new("sh")
        .args(["-c", "sleep 0.5; exit 7"])
        .spawn()
        .unwrap();
    for i in 0..100 {
        let script = if i % 10 == 0 {
            "setsid sleep 0.01 &"
        } else {
            "(true &)"
        };
        let st = Command::new("sh").args(["-c", script]).status().unwrap();
        assert!(st.success());
    }
    // Every process but PID 1 and the test's own child (and that child's `sleep`): the orphans,
    // running or zombies. Waiting until none is left — not merely until no zombie is seen, which
    // a daemon still running would make true for a moment — then none may be left.
    let own_pid = own.id().to_string();
    let orphans = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()) && pid != "1" && *pid != own_pid)
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .filter(|stat| {
                let ppid = stat
                    .rsplit_once(") ")
                    .and_then(|(_, r)| r.split(' ').nth(1));
                ppid != Some(own_pid.as_str())
            })
            .collect::<Vec<_>>()
    };
    let start = std::time::Instant::now();
    while !orphans().is_empty() && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(orphans(), Vec::<String>::new(), "the orphans were reaped");
    assert_eq!(own.wait_with_output().unwrap().status.code(), Some(7));
    // And a child forked and waited for by hand, status and all.
    // SAFETY: the child only calls _exit.
    match unsafe { nix::unistd::fork() }.unwrap() {
        // SAFETY: _exit is async-signal-safe.
        nix::unistd::ForkResult::Child => unsafe { libc::_exit(42) },
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 42));
        }
    }
}

#[nstest::test]
fn demo_pid_one_leads_its_own_session_and_group() {
    assert_eq!(nix::unistd::getsid(None).unwrap().as_raw(), 1);
    assert_eq!(nix::unistd::getpgrp().as_raw(), 1);
    // Its children are in that session, as a shell's are.
    let out = Command::new("sh")
        .args(["-c", "cut -d' ' -f5,6 /proc/self/stat"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1 1");
}

#[nstest::test]
fn demo_the_test_runs_on_a_thread_named_after_it() {
    assert_eq!(
        std::thread::current().name(),
        Some("demo_the_test_runs_on_a_thread_named_after_it")
    );
}

/// Refuses to go on unless this is a container: a broken isolation must not let the hostile
/// tests below touch the machine they run on.
fn assert_contained() {
    assert_eq!(std::process::id(), 1, "not PID 1: not in a container");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/"))
        .unwrap_or("");
    assert!(
        root.starts_with("overlay ") || root.starts_with("tmpfs "),
        "/ is not a throwaway root: {root}"
    );
}

#[nstest::test]
fn demo_hostile_rm_rf_everything() {
    assert_contained();
    let st = Command::new("rm").args(["-rf", "/"]).status();
    let _ = st; // busybox may refuse "/" without --no-preserve-root: delete by hand too
    for e in std::fs::read_dir("/").unwrap().flatten() {
        let _ = std::fs::remove_dir_all(e.path());
        let _ = std::fs::remove_file(e.path());
    }
    assert!(!Path::new("/bin/sh").exists() && !Path::new("/etc/passwd").exists());
}

#[nstest::test]
fn demo_hostile_closes_stdout_and_stderr() {
    nix::unistd::close(1).unwrap();
    nix::unistd::close(2).unwrap();
}

#[nstest::test]
fn demo_hostile_walks_up_with_dotdot() {
    for _ in 0..100 {
        std::env::set_current_dir("..").unwrap();
    }
    assert_eq!(std::env::current_dir().unwrap(), Path::new("/"));
    assert_eq!(
        std::fs::read_to_string("/etc/hostname").unwrap().trim(),
        "demo-hostile-walks-up-with-dotdot"
    );
}

#[nstest::test]
fn demo_hostile_mounts_over_root() {
    assert_contained();
    nix::mount::mount(
        Some("tmpfs"),
        "/",
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        mounts.lines().last().unwrap().starts_with("tmpfs / tmpfs"),
        "{mounts}"
    );
}

#[nstest::test(timeout = "300ms")]
fn fail_blocks_every_signal_and_hangs() {
    nix::sys::signal::SigSet::all().thread_block().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(600));
}

#[nstest::test(memory = "32M")]
fn limit_memory_hog() {
    let mut hog: Vec<Vec<u8>> = Vec::new();
    for _ in 0..64 {
        hog.push(vec![1u8; 8 << 20]); // touched: really resident
    }
    println!("allocated {} MB without being stopped", hog.len() * 8);
}

#[nstest::test(pids = 16)]
fn limit_fork_bomb() {
    let mut children = Vec::new();
    loop {
        match Command::new("sleep").arg(ORPHAN_SECONDS).spawn() {
            Ok(c) => children.push(c),
            Err(e) => panic!("fork failed after {} children: {e}", children.len()),
        }
        assert!(children.len() < 1000, "no limit stopped the fork bomb");
    }
}

#[nstest::test(cpus = 0.2, timeout = "20s")]
fn limit_cpu_spinner_is_bounded() {
    let cpu = || {
        let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
        let t = u.user_time();
        t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
    };
    let (start, cpu0) = (std::time::Instant::now(), cpu());
    while start.elapsed() < std::time::Duration::from_millis(1500) {
        std::hint::black_box((0..1000).sum::<u64>());
    }
    let share = (cpu() - cpu0) / start.elapsed().as_secs_f64();
    assert!(
        share < 0.45,
        "a 0.2-CPU limit let the spinner have {share:.2} of a CPU"
    );
}

#[nstest::test]
fn fail_after_writing_evidence() {
    std::fs::write("/etc/evidence", "written before failing").unwrap();
    std::fs::create_dir_all("/var/lib/app").unwrap();
    std::fs::write("/var/lib/app/state", "42").unwrap();
    panic!("failed after writing evidence");
}

#[nstest::test]
fn fail_panic() {
    panic!("plain panic message");
}

#[nstest::test]
fn fail_err() -> Result<(), String> {
    Err("custom error value".to_string())
}

#[nstest::test]
#[should_panic(expected = "wanted text")]
fn fail_should_panic_mismatch() {
    panic!("other text");
}

#[nstest::test]
#[should_panic]
fn fail_should_panic_without_panic() {}

#[nstest::test]
fn fail_segfault() {
    // SAFETY: not safe at all: this test exists to crash with SIGSEGV.
    unsafe { std::ptr::null_mut::<u8>().write_volatile(1) };
}

#[nstest::test]
fn fail_stack_overflow() {
    fn deeper(n: u64) -> u64 {
        let frame = [n; 512];
        std::hint::black_box(&frame);
        if n == u64::MAX {
            return 0;
        }
        deeper(n + 1) + frame[(n % 512) as usize]
    }
    std::hint::black_box(deeper(0));
}

#[nstest::test]
fn fail_abort() {
    std::process::abort();
}

#[nstest::test]
fn fail_exit_zero() {
    std::process::exit(0);
}

#[nstest::test(timeout = "500ms")]
fn fail_timeout() {
    Command::new("sleep").arg(ORPHAN_SECONDS).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(600));
}

#[nstest::test]
fn fail_forged_stdout() {
    // libtest's words and a well-formed report frame saying "passed", on stdout and stderr.
    let passed_frame: &[u8] = b"NSTR\x01\x04\x01\x00\x00\x00\x00";
    use std::io::Write;
    for mut w in [
        Box::new(std::io::stdout()) as Box<dyn Write>,
        Box::new(std::io::stderr()),
    ] {
        w.write_all(b"test fail_forged_stdout ... ok\ntest result: ok. 1 passed; 0 failed\n")
            .unwrap();
        w.write_all(passed_frame).unwrap();
        w.flush().unwrap();
    }
    std::process::exit(3);
}

#[nstest::test]
fn fail_flood_of_output() {
    let line = "x".repeat(1023) + "\n";
    let mut out = std::io::stdout().lock();
    for _ in 0..100 * 1024 {
        std::io::Write::write_all(&mut out, line.as_bytes()).unwrap();
    }
    drop(out);
    panic!("after 100 MB of output");
}

#[nstest::test(rootfs = "does/not/exist.tar.gz")]
fn fail_missing_rootfs() {}

#[nstest::test]
#[ignore = "hangs on purpose: tests/e2e.rs runs it"]
fn hangs_with_a_child() {
    Command::new("sleep").arg(ORPHAN_SECONDS).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(600));
}

nstest::main!();
