//! Ctrl-C, SIGTERM and SIGKILL of the harness, during a test or at any moment of a parallel
//! run; what a killed run leaves to the next one; and what a harness started with fds or
//! signal dispositions of its own passes on (nothing).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::host::{host_state, processes_with, serial, wait_until, HostGuard};
use crate::load::load_command;
use crate::runs::{e2e_cache, fixture, in_dirs, run_fixture_in, scratch, Run, ORPHAN_MARK};

/// Starts the fixture on a test that hangs with a child process, waits until that child is
/// running, then sends `signal` to the harness.
fn interrupt(signal: i32) {
    let (_host, tmp, cache) = HostGuard::for_run(&format!("signal-{signal}-tmp"));
    let mut child = in_dirs(&mut Command::new(fixture()), &tmp, &cache)
        .args(["hangs_with_a_child", "--ignored", "--exact"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the test's child process", Duration::from_secs(10), || {
        !processes_with(ORPHAN_MARK).is_empty()
    });
    let st = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(st.success());
    let status = child.wait().unwrap();
    assert!(!status.success());
}

#[test]
fn ctrl_c_of_the_harness_leaves_nothing_behind() {
    interrupt(libc_sig::SIGINT);
}

#[test]
fn sigterm_and_sigkill_of_the_harness_leave_nothing_behind() {
    interrupt(libc_sig::SIGTERM);
    interrupt(libc_sig::SIGKILL);
}

mod libc_sig {
    pub const SIGINT: i32 = 2;
    pub const SIGKILL: i32 = 9;
    pub const SIGTERM: i32 = 15;
}

#[test]
fn killing_a_parallel_run_at_any_moment_leaves_nothing_behind() {
    let (host, tmp, cache) = HostGuard::for_run("kill-load-tmp");
    for signal in [libc_sig::SIGINT, libc_sig::SIGTERM, libc_sig::SIGKILL] {
        for delay_ms in [20, 150, 500] {
            let mut child = load_command("8", &cache, &tmp)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay_ms));
            Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()
                .unwrap();
            child.wait().unwrap();
            host.assert_clean();
        }
    }
}

#[test]
fn a_killed_runs_cgroups_are_removed_by_the_next_run_which_says_so() {
    let (host, tmp, cache) = HostGuard::for_run("stale-cgroup-tmp");
    let limited = |args: &[&str]| {
        let mut c = Command::new(fixture());
        in_dirs(&mut c, &tmp, &cache)
            .args(args)
            .env("NSTEST_PIDS", "64");
        c
    };
    let mut child = limited(&["hangs_with_a_child", "--ignored", "--exact"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the test's child process", Duration::from_secs(10), || {
        !processes_with(ORPHAN_MARK).is_empty()
    });
    Command::new("kill")
        .arg("-9")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();
    wait_until("the container to die", Duration::from_secs(5), || {
        processes_with(ORPHAN_MARK).is_empty()
    });
    let stale = host_state().cgroups;
    assert!(
        stale.len() > host.before().cgroups.len(),
        "SIGKILL left the run's cgroup: {stale:?}"
    );
    let out = limited(&["demo_pid_one", "--exact"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("left by a run that was killed"), "{err}");
}

/// The harness process holds fds 7 and 8 without close-on-exec (as a careless parent may
/// leave them); no test sees them.
#[test]
fn inherited_fds_never_reach_a_test() {
    const LEAKY: &[&str] = &[
        "sh",
        "-c",
        "exec 7</dev/null 8>/dev/null; exec \"$0\" \"$@\"",
    ];
    // "only" matches four tests, this one third: its container is cloned by the fork server,
    // or by the harness when the server is off.
    for server in ["on", "off"] {
        let run = run_fixture_in(
            "fds",
            LEAKY,
            "e2e-cache",
            &["only", "--test-threads", "1"],
            &[("NSTEST_FORK_SERVER", server)],
        );
        assert_eq!(run.outcomes.len(), 4, "{}", run.text());
        assert_eq!(
            run.outcome("demo_only_documented_fds_are_open"),
            "ok",
            "NSTEST_FORK_SERVER={server}: {}",
            run.text()
        );
    }
}

#[test]
fn a_container_blocks_and_ignores_no_signal_whatever_its_spawner_did() {
    // The `run` example and the fixture start with SIGTERM and SIGINT blocked and SIGHUP,
    // SIGQUIT and SIGCHLD ignored (a mask and an ignored signal survive exec: `nohup`, a
    // script's background job). The example must still build its rootfs (an empty cache: the
    // busybox applets are listed by a child) and get its container's exit status, and the
    // command in the container must be stoppable, and a shell there able to trap them. The
    // example's one container is cloned and re-executed by the harness; the fixture's fourth
    // test (`demo_n` matches four) by the fork server, or by the harness when it is off.
    let _serial = serial();
    let cache = scratch("signals-cache");
    let mut cmd = Command::new(fixture().parent().unwrap().join("run"));
    cmd.args([
        "--rootfs",
        "builtin:busybox",
        "grep",
        "-E",
        "SigBlk|SigIgn",
        "/proc/self/status",
    ])
    .env("NSTEST_CACHE_DIR", &cache);
    let out = blocking_and_ignoring_signals(&mut cmd).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}{err}");
    std::fs::remove_dir_all(&cache).unwrap();
    let mask = |name: &str| {
        let line = text.lines().find_map(|l| l.strip_prefix(name)).unwrap();
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{text}");
    // Bit n-1 is signal n. (glibc's posix_spawn, as cargo runs tests, leaves its internal
    // signal 32 ignored; the C library keeps that one for itself.)
    let ignored = [libc::SIGHUP, libc::SIGQUIT, libc::SIGCHLD]
        .iter()
        .fold(0, |m, s| m | 1 << (s - 1));
    assert_eq!(mask("SigIgn:") & ignored, 0, "{text}");

    for server in [None, Some("off")] {
        let mut cmd = Command::new(fixture());
        cmd.args(["demo_n", "--test-threads", "1"])
            .env("NSTEST_CACHE_DIR", e2e_cache())
            .env_remove("NSTEST_FORK_SERVER");
        if let Some(value) = server {
            cmd.env("NSTEST_FORK_SERVER", value);
        }
        let run = Run::parse(blocking_and_ignoring_signals(&mut cmd).output().unwrap());
        assert_eq!(run.outcomes.len(), 4, "{}", run.text());
        assert_eq!(
            run.outcome("demo_no_signal_is_blocked_or_ignored"),
            "ok",
            "NSTEST_FORK_SERVER={server:?}: {}",
            run.text()
        );
    }
}

/// `cmd`, set to start with SIGTERM and SIGINT blocked and SIGHUP, SIGQUIT and SIGCHLD ignored.
fn blocking_and_ignoring_signals(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only sigprocmask and sigaction, which are
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
            let mut set = SigSet::empty();
            set.add(Signal::SIGTERM);
            set.add(Signal::SIGINT);
            set.thread_block()?;
            signal(Signal::SIGHUP, SigHandler::SigIgn)?;
            signal(Signal::SIGQUIT, SigHandler::SigIgn)?;
            signal(Signal::SIGCHLD, SigHandler::SigIgn)?;
            Ok(())
        })
    }
}
