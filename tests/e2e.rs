//! End-to-end: run the real nstest test binary `tests/e2e/fixture.rs` (built by `cargo test` as
//! the example `e2e-fixture`) and check each reported outcome, the host around every run, and
//! what a killed harness leaves behind. Needs root, like nstest itself.

mod common;
#[path = "e2e/rootless.rs"]
mod rootless;
#[path = "e2e/vm.rs"]
mod vm;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use nix::fcntl::{Flock, FlockArg};
use std::time::{Duration, Instant};

/// Host-wide checks must not see another fixture run's containers: one run at a time, across
/// threads (`cargo test`) and processes (`cargo nextest run`).
fn serial() -> (MutexGuard<'static, ()>, Flock<File>) {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let guard = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    (
        guard,
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .unwrap(),
    )
}

const ORPHAN_MARK: &str = "987654";

fn fixture() -> PathBuf {
    common::example("e2e-fixture")
}

/// The cache the fixture runs share.
fn e2e_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-cache")
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What the host looks like, for the things a container must never change.
#[derive(Debug, PartialEq)]
struct HostState {
    hostname: String,
    mounts: BTreeSet<String>,
    /// nstest's cgroups (`nstest-<pid>` directories) anywhere under /sys/fs/cgroup.
    cgroups: BTreeSet<PathBuf>,
}

fn nstest_cgroups(dir: &Path, depth: usize, found: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        if e.file_name().to_string_lossy().starts_with("nstest-") {
            found.insert(e.path());
        } else if depth > 0 {
            nstest_cgroups(&e.path(), depth - 1, found);
        }
    }
}

fn host_state() -> HostState {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" "))
        .collect();
    let mut cgroups = BTreeSet::new();
    nstest_cgroups(Path::new("/sys/fs/cgroup"), 4, &mut cgroups);
    HostState {
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        mounts,
        cgroups,
    }
}

/// Processes on the host whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
            .is_none()
        {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks that nothing of a finished run is left on the host: processes, mounts, hostname,
/// temp files, half-built cache entries.
fn assert_host_clean(before: &HostState, tmp: &Path, cache: &Path) {
    wait_until(
        "the containers' processes to be gone",
        Duration::from_secs(5),
        || {
            // This checkout's fixtures only: another checkout's run on the same machine is not ours.
            let examples = fixture().parent().unwrap().display().to_string();
            processes_with(ORPHAN_MARK).is_empty()
                && processes_with(&examples).is_empty()
                && processes_with(&nobody_dir().display().to_string()).is_empty()
        },
    );
    assert_eq!(
        &host_state(),
        before,
        "the host's hostname or mount table changed"
    );
    let left: Vec<_> = std::fs::read_dir(tmp).unwrap().collect();
    assert!(left.is_empty(), "temp files left behind: {left:?}");
    for sub in ["tmp", "mnt"] {
        let Ok(entries) = std::fs::read_dir(cache.join(sub)) else {
            continue; // the run never opened the cache
        };
        let left: Vec<_> = entries.collect();
        assert!(left.is_empty(), "cache/{sub} not empty: {left:?}");
    }
}

struct Run {
    output: Output,
    outcomes: BTreeMap<String, String>,
    messages: BTreeMap<String, String>,
}

impl Run {
    fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }
    fn outcome(&self, test: &str) -> &str {
        self.outcomes
            .get(test)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no outcome for {test}:\n{}", self.text()))
    }
    fn message(&self, test: &str) -> &str {
        self.messages
            .get(test)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no failure message for {test}"))
    }
}

/// Runs the fixture with `args` and `env` in a fresh TMPDIR and cache, and checks the host
/// is clean afterwards.
fn run_fixture(name: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    run_fixture_in(name, &[], "e2e-cache", args, env)
}

/// Where an unprivileged run keeps its copy of the fixture, its TMPDIR and its cache (per test
/// process, so two checkouts tested at once do not meet).
fn nobody_dir() -> PathBuf {
    Path::new("/tmp").join(format!("nstest-e2e-nobody-{}", std::process::id()))
}

/// Runs as the unprivileged uid/gid 65534: rootless mode.
const AS_NOBODY: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--",
];

/// Runs where user namespaces are switched off: a user namespace of its own whose
/// `user.max_user_namespaces` is 0 (with `NSTEST_ROOTLESS=1`, nstest needs one more).
const WITHOUT_USERNS: &[&str] = &[
    "unshare",
    "--user",
    "--map-root-user",
    "sh",
    "-c",
    "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" \"$@\"",
];

/// `exe` run under the `wrapper` command (its program and first arguments), if any.
fn wrapped(wrapper: &[&str], exe: &Path) -> Command {
    match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    }
}

/// [`run_fixture`] under a `wrapper` command, with the named cache directory.
fn run_fixture_in(
    name: &str,
    wrapper: &[&str],
    cache: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let _serial = serial();
    // An unprivileged uid may not reach this checkout (under /root, say): it gets a copy of
    // the fixture, its TMPDIR and its cache in a world-readable place.
    let nobody = wrapper.iter().any(|a| a.contains("setpriv"));
    let base = if nobody {
        nobody_dir()
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
    };
    let tmp = base.join(format!("{name}-tmp"));
    let cache = base.join(cache);
    let _ = std::fs::remove_dir_all(&tmp);
    for d in [&base, &tmp, &cache] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    }
    let exe = if nobody {
        let copy = base.join("e2e-fixture");
        std::fs::copy(fixture(), &copy).unwrap();
        copy
    } else {
        fixture()
    };
    let before = host_state();
    let binary = std::fs::read(&exe).unwrap();
    let output = wrapped(wrapper, &exe)
        .args(args)
        .env("TMPDIR", &tmp)
        .env("NSTEST_CACHE_DIR", &cache)
        // Failures read the same whatever the caller's own setting.
        .env("RUST_BACKTRACE", "0")
        // Secrets of the harness's environment, which no test may see (`demo_env_is_clean`).
        .env("E2E_SECRET", "hunter2")
        .env("CARGO_REGISTRY_TOKEN", "hunter2")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_host_clean(&before, &tmp, &cache);
    assert!(
        std::fs::read(&exe).unwrap() == binary,
        "the test binary was modified"
    );
    if nobody {
        let _ = std::fs::remove_dir_all(&base);
    }
    Run::parse(output)
}

impl Run {
    /// libtest's outcome lines and failure sections of a fixture run's output.
    fn parse(output: Output) -> Run {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut outcomes = BTreeMap::new();
        // Only libtest's own lines, before the failure section (where a test's output may say anything).
        for line in stdout.lines().take_while(|l| *l != "failures:") {
            if let Some(rest) = line.strip_prefix("test ") {
                if let Some((test, outcome)) = rest.split_once(" ... ") {
                    outcomes.insert(test.trim().to_string(), outcome.trim().to_string());
                }
            }
        }
        let mut messages = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        for line in stdout.lines() {
            if let Some(test) = line
                .strip_prefix("---- ")
                .and_then(|l| l.strip_suffix(" ----"))
            {
                if let Some((t, m)) = current.take() {
                    messages.insert(t, m);
                }
                current = Some((test.to_string(), String::new()));
            } else if line == "failures:" {
                if let Some((t, m)) = current.take() {
                    messages.insert(t, m);
                }
            } else if let Some((_, m)) = current.as_mut() {
                m.push_str(line);
                m.push('\n');
            }
        }
        Run {
            output,
            outcomes,
            messages,
        }
    }
}

#[test]
fn every_outcome_is_reported_for_the_right_reason() {
    check_every_outcome(&run_fixture("all", &["--test-threads", "2"], &[]), false);
}

/// The fixture's `demo_*` passed, its `fail_*` failed each for its own reason; its `limit_*` were
/// bounded and reported for the right reason (or, rootless without cgroup delegation, failed
/// saying so).
fn check_every_outcome(run: &Run, rootless: bool) {
    let text = run.text();
    assert!(
        !run.output.status.success(),
        "the fixture has failing tests:\n{text}"
    );
    for (test, outcome) in &run.outcomes {
        let expected = if test.starts_with("demo_") {
            "ok"
        } else if test.starts_with("fail_") {
            "FAILED"
        } else if test.starts_with("limit_") {
            if test == "limit_cpu_spinner_is_bounded" && !rootless {
                "ok"
            } else {
                "FAILED"
            }
        } else {
            // Its reason shown, as libtest-mimic shows a reason: in parentheses.
            "ignored (hangs on purpose: tests/e2e.rs runs it)"
        };
        assert_eq!(
            outcome,
            expected,
            "{test}:\n{}",
            run.messages.get(test).map(String::as_str).unwrap_or(&text)
        );
    }
    assert_eq!(run.outcomes.len(), 43, "{text}");
    let reasons = [
        // As libtest prints an in-process panic: the test's thread, its name, its tid (the
        // main thread is PID 1's reaper), the location, the message, once.
        (
            "fail_panic",
            "\nthread 'fail_panic' (2) panicked at tests/e2e/fixture.rs:",
        ),
        ("fail_panic", ":\nplain panic message\nnote: run with `RUST_BACKTRACE=1`"),
        (
            "fail_stack_overflow",
            "\nthread 'fail_stack_overflow' (2) has overflowed its stack\nfatal runtime error: stack overflow, aborting\ntest killed by signal SIGABRT\n",
        ),
        ("fail_err", "test returned an error: \"custom error value\""),
        (
            "fail_should_panic_mismatch",
            "panic did not contain expected string",
        ),
        ("fail_should_panic_mismatch", "\"wanted text\""),
        (
            "fail_should_panic_without_panic",
            "test did not panic as expected",
        ),
        ("fail_segfault", "killed by signal SIGSEGV"),
        ("fail_abort", "killed by signal SIGABRT"),
        (
            "fail_exit_zero",
            "exited with code 0 before reporting a result",
        ),
        ("fail_timeout", "timed out after 500ms"),
        (
            "fail_blocks_every_signal_and_hangs",
            "timed out after 300ms",
        ),
        (
            "fail_forged_stdout",
            "exited with code 3 before reporting a result",
        ),
        ("fail_flood_of_output", "after 100 MB of output"),
        ("fail_flood_of_output", "nstest left out"),
        (
            "fail_missing_rootfs",
            "nstest could not run this test: rootfs",
        ),
        (
            "fail_missing_rootfs",
            "does/not/exist.tar.gz does not exist",
        ),
    ];
    for (test, reason) in reasons {
        assert!(
            run.message(test).contains(reason),
            "{test} should say {reason:?}; it said:\n{}",
            run.message(test)
        );
    }
    assert_eq!(
        run.message("fail_panic")
            .matches("plain panic message")
            .count(),
        1,
        "the panic is told once: {}",
        run.message("fail_panic")
    );
    for (test, outcome) in &run.outcomes {
        if outcome == "FAILED" {
            let msg = run.message(test);
            assert!(
                msg.contains("\ncontainer: rootfs ") && msg.contains("\nrerun: "),
                "{test}: {msg}"
            );
        }
    }
    let (passed, failed) = if rootless { (25, 17) } else { (26, 16) };
    let summary = format!("test result: FAILED. {passed} passed; {failed} failed; 1 ignored");
    assert!(text.contains(&summary), "{text}");
    let limits: [(&str, &str); 2] = if rootless {
        [
            ("limit_memory_hog", "cgroups are not delegated"),
            ("limit_fork_bomb", "cgroups are not delegated"),
        ]
    } else {
        [
            ("limit_memory_hog", "killed: out of memory (limit 32M)"),
            ("limit_fork_bomb", "the pids limit (16) was reached"),
        ]
    };
    for (test, reason) in limits {
        assert!(
            run.message(test).contains(reason),
            "{test} should say {reason:?}; it said:\n{}",
            run.message(test)
        );
    }
}

#[test]
fn writes_never_cross_tests_even_in_order() {
    // Sequential, sorted: a writes, b looks; c deletes /bin /etc /usr, d finds them whole.
    let run = run_fixture("order", &["demo_", "--test-threads", "1"], &[]);
    assert!(run.output.status.success(), "{}", run.text());
    assert_eq!(run.outcomes.len(), 25, "{}", run.text());
    // The shared base in the cache is untouched too.
    let cache = e2e_cache().join("bases");
    for base in std::fs::read_dir(cache).unwrap().flatten() {
        assert!(base.path().join("bin/sh").exists());
        assert!(!base.path().join("etc/nstest-marker").exists());
    }
}

#[test]
fn libtest_flags_work() {
    let run = run_fixture("list", &["--list", "--format", "terse"], &[]);
    let listed = String::from_utf8_lossy(&run.output.stdout);
    assert_eq!(listed.lines().count(), 43, "{listed}");
    assert!(listed.lines().all(|l| l.ends_with(": test")), "{listed}");

    // What nextest does: list the ignored tests apart, then run each test alone.
    let run = run_fixture(
        "list-ignored",
        &["--list", "--format", "terse", "--ignored"],
        &[],
    );
    let listed = String::from_utf8_lossy(&run.output.stdout);
    assert_eq!(listed.trim(), "hangs_with_a_child: test", "{listed}");
    let run = run_fixture(
        "nextest-one",
        &["demo_pid_one", "--exact", "--nocapture"],
        &[],
    );
    assert_eq!(run.outcomes.keys().collect::<Vec<_>>(), ["demo_pid_one"]);
    assert!(run.output.status.success(), "{}", run.text());

    let run = run_fixture("exact", &["demo_pid_one", "--exact"], &[]);
    assert_eq!(run.outcomes.keys().collect::<Vec<_>>(), ["demo_pid_one"]);
    assert!(run.output.status.success());

    let run = run_fixture(
        "skip",
        &[
            "demo_",
            "--skip",
            "demo_a_writes",
            "--skip",
            "demo_b_never",
            "-q",
        ],
        &[],
    );
    assert!(run.output.status.success(), "{}", run.text());
    assert!(run.text().contains("23 passed"), "{}", run.text());

    let run = run_fixture("nocapture", &["fail_panic", "--nocapture"], &[]);
    assert!(
        String::from_utf8_lossy(&run.output.stderr).contains("plain panic message"),
        "streamed live"
    );
}

#[test]
fn nstest_timeout_sets_the_default() {
    let run = run_fixture(
        "timeout",
        &["hangs_with_a_child", "--ignored"],
        &[("NSTEST_TIMEOUT", "300ms")],
    );
    assert_eq!(run.outcome("hangs_with_a_child"), "FAILED");
    assert!(run
        .message("hangs_with_a_child")
        .contains("timed out after 300ms"));

    // A timeout that ends the container before its set-up is done (the copy fallback takes
    // longer than 1 ms) is nstest's error, not the test's failure.
    let run = run_fixture(
        "setup-timeout",
        &["demo_pid_one", "--exact"],
        &[("NSTEST_TIMEOUT", "1ms"), ("NSTEST_OVERLAY", "off")],
    );
    assert_eq!(run.outcome("demo_pid_one"), "FAILED");
    let message = run.message("demo_pid_one");
    assert!(
        message.starts_with("nstest could not run this test: the container's set-up did not finish within the timeout of 1ms"),
        "{message}"
    );
}

#[test]
fn the_other_roots_pass_the_same_demos() {
    // The cache's busybox base as a directory, as a .tar and as a .tar.gz, the copy fallback, and
    // the host's own binaries.
    let base = busybox_base();
    let archives = scratch("archives");
    let tar = archives.join("root.tar");
    let tgz = archives.join("root.tar.gz");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&base)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&base)
        .arg("-czf")
        .arg(&tgz)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let base = base.to_string_lossy().into_owned();
    let roots: [(&str, &str); 4] = [
        ("NSTEST_ROOTFS", &base),
        ("NSTEST_ROOTFS", tar.to_str().unwrap()),
        ("NSTEST_ROOTFS", tgz.to_str().unwrap()),
        ("NSTEST_OVERLAY", "off"),
    ];
    for (var, value) in roots {
        let run = run_fixture("roots", &["demo_", "--test-threads", "1"], &[(var, value)]);
        assert!(
            run.output.status.success(),
            "{var}={value}:\n{}",
            run.text()
        );
        assert_eq!(run.outcomes.len(), 25, "{var}={value}:\n{}", run.text());
    }
    // builtin:host binds the host's /bin /usr /sbin read-only: the demos that write there fail
    // by design; everything else passes.
    let run = run_fixture("host", &["demo_"], &[("NSTEST_ROOTFS", "builtin:host")]);
    assert_eq!(run.outcome("demo_a_writes_a_marker"), "FAILED");
    assert!(run
        .message("demo_a_writes_a_marker")
        .contains("Read-only file system"));
    let passed = run.outcomes.values().filter(|o| *o == "ok").count();
    assert_eq!(passed, 23, "{}", run.text());
}

/// The busybox base in the e2e cache, built by a first run if need be.
/// A copy of the busybox base at `root` (`cp -a`), for a test to alter as its rootfs.
fn busybox_copy(root: &Path) {
    assert!(Command::new("cp")
        .arg("-a")
        .arg(busybox_base())
        .arg(root)
        .status()
        .unwrap()
        .success());
}

fn busybox_base() -> PathBuf {
    let run = run_fixture("warm", &["demo_pid_one"], &[]);
    assert!(run.output.status.success(), "{}", run.text());
    let bases = e2e_cache().join("bases");
    std::fs::read_dir(&bases)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("busybox-"))
        .unwrap()
        .path()
}

/// Starts the fixture on a test that hangs with a child process, waits until that child is
/// running, then sends `signal` to the harness.
fn interrupt(signal: i32) {
    let _serial = serial();
    let tmp = scratch(&format!("signal-{signal}-tmp"));
    let cache = e2e_cache();
    let before = host_state();
    let mut child = Command::new(fixture())
        .args(["hangs_with_a_child", "--ignored", "--exact"])
        .env("TMPDIR", &tmp)
        .env("NSTEST_CACHE_DIR", &cache)
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
    assert_host_clean(&before, &tmp, &cache);
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
fn without_user_namespaces_each_test_names_the_cause_and_the_fix() {
    let env = [("NSTEST_ROOTLESS", "1")];
    let run = run_fixture_in(
        "no-userns",
        WITHOUT_USERNS,
        "e2e-cache-userns",
        &["demo_", "--include-ignored"],
        &env,
    );
    assert!(!run.output.status.success(), "{}", run.text());
    assert_eq!(run.outcomes.len(), 25, "{}", run.text());
    for test in run.outcomes.keys() {
        assert_eq!(run.outcome(test), "FAILED");
        let msg = run.message(test);
        assert!(
            msg.contains("user namespaces are disabled (user.max_user_namespaces = 0)"),
            "{msg}"
        );
        assert!(
            msg.contains("fix: sysctl -w user.max_user_namespaces="),
            "{msg}"
        );
        assert_eq!(msg.trim().lines().count(), 1, "one line: {msg}");
    }
}

#[test]
fn nstest_unavailable_skip_turns_them_into_ignored_tests_with_the_reason() {
    let env = [("NSTEST_ROOTLESS", "1"), ("NSTEST_UNAVAILABLE", "skip")];
    let run = run_fixture_in("skip", WITHOUT_USERNS, "e2e-cache-userns", &[], &env);
    assert!(run.output.status.success(), "{}", run.text());
    assert_eq!(run.outcomes.len(), 43);
    assert!(
        run.outcomes.values().all(|o| o == "ignored"),
        "{}",
        run.text()
    );
    assert!(run
        .text()
        .contains("every test is skipped (NSTEST_UNAVAILABLE=skip): namespaces are not available"));
    // What nextest asks: every test is listed as ignored.
    let run = run_fixture_in(
        "skip-list",
        WITHOUT_USERNS,
        "e2e-cache-userns",
        &["--list", "--format", "terse", "--ignored"],
        &env,
    );
    assert_eq!(
        String::from_utf8_lossy(&run.output.stdout).lines().count(),
        43,
        "{}",
        run.text()
    );
    // Run anyway, each says why it is skipped.
    let run = run_fixture_in(
        "skip-run",
        WITHOUT_USERNS,
        "e2e-cache-userns",
        &["demo_pid_one", "--include-ignored"],
        &env,
    );
    let outcome = run.outcome("demo_pid_one");
    assert!(
        outcome.starts_with("ignored") && outcome.contains("namespaces are not available"),
        "{}",
        run.text()
    );
}

#[test]
fn the_container_api_runs_commands_as_pid_one() {
    let _serial = serial();
    let exe = fixture().parent().unwrap().join("container_api");
    let before = host_state();
    let text = succeeded(Command::new(exe).env_remove("NSTEST_FORK_SERVER"));
    let expect = [
        "output.stdout: \"api-box\\n1\\n\"",
        "output.stderr: \"oops\\n\"",
        "output.code: Some(3)",
        "output.fork_server_running: false",
        "status.success: true",
        "timeout.error: timed out after 300ms",
        "timeout.fast: true",
        "missing.error: container setup failed at step Exec: execvp(\"no-such-command\") => ENOENT",
        "hostname.error: invalid hostname \"bad_name\"",
        "net.Host.same_as_host: true",
        "bind.stdout: \"/work/dir\\nhi\\n\"",
        "bind.rw_reached_host: true",
        "net.Loopback.same_as_host: false",
        "big_env.length: 40000",
        "big_env.fork_server_running: true",
    ];
    for line in expect {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(host_state(), before);
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
fn etc_hostname_and_hosts_follow_the_hostname_whatever_the_rootfs_etc_is() {
    // Over an overlay the two files go into its writable layer before it is mounted when the
    // rootfs has a real /etc (the layer's /etc keeps its mode); a symlinked /etc is followed
    // inside the container, as it always was. Neither rootfs is changed.
    let base = busybox_base();
    let dir = scratch("etc-kinds");
    let copy = |name: &str| {
        let root = dir.join(name);
        busybox_copy(&root);
        root
    };
    let plain = copy("plain");
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o750);
    std::fs::set_permissions(plain.join("etc"), mode).unwrap();
    let linked = copy("linked");
    std::fs::create_dir(linked.join("private")).unwrap();
    std::fs::rename(linked.join("etc"), linked.join("private/etc")).unwrap();
    std::os::unix::fs::symlink("private/etc", linked.join("etc")).unwrap();
    let before = std::fs::read_to_string(base.join("etc/hostname")).unwrap();
    let run = |root: &Path, script: &str| {
        succeeded(
            Command::new(fixture().parent().unwrap().join("run"))
                .arg("--rootfs")
                .arg(root)
                .args(["--hostname", "etc-kinds", "sh", "-c", script]),
        )
    };
    let hosts =
        "grep -c '^127.0.1.1.etc-kinds$' /etc/hosts; grep -c '^127.0.0.1.localhost' /etc/hosts";
    assert_eq!(
        run(
            &plain,
            &format!("stat -c %a /etc; cat /etc/hostname; {hosts}; head -1 /etc/passwd")
        ),
        "750\netc-kinds\n1\n1\nroot:x:0:0:root:/root:/bin/sh\n"
    );
    assert_eq!(
        run(
            &linked,
            &format!("readlink /etc; cat /etc/hostname /private/etc/hostname; {hosts}")
        ),
        "private/etc\netc-kinds\netc-kinds\n1\n1\n"
    );
    for root in [&plain, &linked] {
        let hostname = std::fs::read_to_string(root.join("etc/hostname")).unwrap();
        assert_eq!(hostname, before, "{}", root.display());
    }
}

#[test]
fn a_rootfs_with_a_symlinked_proc_is_refused() {
    let root = scratch("symlinked-proc").join("root");
    busybox_copy(&root);
    std::fs::remove_dir(root.join("proc")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("proc")).unwrap();
    let run = run_fixture(
        "symlinked-proc",
        &["demo_pid_one"],
        &[("NSTEST_ROOTFS", root.to_str().unwrap())],
    );
    assert_eq!(run.outcome("demo_pid_one"), "FAILED");
    let msg = run.message("demo_pid_one");
    assert!(
        msg.contains("step MountProc") && msg.contains("/proc is a symlink"),
        "{msg}"
    );
}

/// The 500-test `e2e-load` example on `threads` threads, with its own cache and TMPDIR.
fn load_command(threads: &str, cache: &Path, tmp: &Path) -> Command {
    let mut cmd = Command::new(fixture().parent().unwrap().join("e2e-load"));
    cmd.args(["--test-threads", threads])
        .env("NSTEST_CACHE_DIR", cache)
        .env("TMPDIR", tmp);
    cmd
}

/// Runs the 500-test binary; returns whether it succeeded, its stdout and its peak RSS in KiB.
fn run_load(threads: &str, cache: &Path, tmp: &Path) -> (bool, String, i64) {
    use std::io::Read;
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, for its rusage
    let mut child = load_command(threads, cache, tmp)
        .arg("-q")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it for our own child, which `child` does
    // not reap itself afterwards (we never call wait on it).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child's; the pointers outlive the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    (
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        out,
        usage.ru_maxrss,
    )
}

#[test]
fn load_500_tests_5_rounds_1_2_8_threads_no_flake_flat_memory() {
    let _serial = serial();
    let cache = e2e_cache();
    let tmp = scratch("load-tmp");
    let before = host_state();
    for threads in ["1", "2", "8"] {
        let mut peaks = Vec::new();
        for round in 0..5 {
            let (ok, out, rss) = run_load(threads, &cache, &tmp);
            assert!(ok, "round {round}, {threads} threads:\n{out}");
            assert!(
                out.contains("test result: ok. 500 passed; 0 failed"),
                "round {round}, {threads} threads:\n{out}"
            );
            peaks.push(rss);
        }
        let (first, max) = (peaks[0], *peaks.iter().max().unwrap());
        assert!(
            max <= first + first / 5 + 2048,
            "harness memory grew across rounds ({threads} threads): {peaks:?} KiB"
        );
    }
    assert_host_clean(&before, &tmp, &cache);
}

#[test]
fn killing_a_parallel_run_at_any_moment_leaves_nothing_behind() {
    let _serial = serial();
    let cache = e2e_cache();
    let tmp = scratch("kill-load-tmp");
    let before = host_state();
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
            assert_host_clean(&before, &tmp, &cache);
        }
    }
}

#[test]
fn limits_that_cannot_be_applied_are_skipped_with_nstest_unavailable_skip() {
    // uid 65534 has no cgroup delegation here.
    let env = [("NSTEST_UNAVAILABLE", "skip")];
    let run = run_fixture_in(
        "nobody-skip",
        AS_NOBODY,
        "e2e-cache-nobody",
        &["limit_"],
        &env,
    );
    assert!(run.output.status.success(), "{}", run.text());
    for test in [
        "limit_memory_hog",
        "limit_fork_bomb",
        "limit_cpu_spinner_is_bounded",
    ] {
        let outcome = run.outcome(test);
        assert!(
            outcome.starts_with("ignored") && outcome.contains("cgroups are not delegated"),
            "{test}: {outcome}"
        );
    }
}

#[test]
fn a_bind_target_through_a_rootfs_symlink_is_refused() {
    let scratch_dir = scratch("symlinked-bind");
    let root = scratch_dir.join("root");
    let aim = scratch_dir.join("host-side");
    std::fs::create_dir(&aim).unwrap();
    busybox_copy(&root);
    // The rootfs's /host points at a host directory: the bind must not land there.
    std::os::unix::fs::symlink(&aim, root.join("host")).unwrap();
    let run = run_fixture(
        "symlinked-bind",
        &["demo_bind_env_workdir"],
        &[("NSTEST_ROOTFS", root.to_str().unwrap())],
    );
    assert_eq!(run.outcome("demo_bind_env_workdir"), "FAILED");
    let msg = run.message("demo_bind_env_workdir");
    assert!(
        msg.contains("step Bind") && msg.contains("is a symlink in the rootfs"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_dir(&aim).unwrap().count(),
        0,
        "nothing was created on the host side"
    );
}

#[test]
fn every_failure_ends_with_the_command_that_reruns_just_it() {
    let run = run_fixture("rerun", &["fail_err"], &[("NSTEST_TIMEOUT", "30s")]);
    let msg = run.message("fail_err");
    assert!(msg.contains("container: rootfs builtin:busybox (overlay), hostname fail-err, net loopback, timeout 30s"), "{msg}");
    let rerun = msg.lines().find_map(|l| l.strip_prefix("rerun: ")).unwrap();
    assert!(
        rerun.contains("NSTEST_TIMEOUT=30s") && rerun.ends_with("fail_err --exact"),
        "{rerun}"
    );
    let out = Command::new("sh").args(["-c", rerun]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("running 1 test") && text.contains("test fail_err ... FAILED"),
        "{text}"
    );
}

#[test]
fn json_output_stays_machine_readable() {
    let run = run_fixture("json", &["--format", "json", "fail_"], &[]);
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    let mut failed = 0;
    for line in stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v["event"] == "failed" && v["type"] == "test" {
            failed += 1;
            assert!(v["stdout"].as_str().unwrap().contains("rerun: "), "{line}");
        }
    }
    assert_eq!(failed, 14, "{stdout}");
}

/// Runs an example with the e2e cache; its stdout, once it has succeeded.
fn succeeded(cmd: &mut Command) -> String {
    let out = cmd.env("NSTEST_CACHE_DIR", e2e_cache()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The pids and names of `pid`'s children.
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut kids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for kid in list
            .split_whitespace()
            .filter_map(|k| k.parse::<u32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{kid}/comm")).unwrap_or_default();
            kids.push((kid, comm.trim().to_string()));
        }
    }
    kids
}

#[test]
fn containers_are_cloned_by_one_fork_server_as_the_harness_children() {
    // By default a run's containers, from its second on, are cloned by one fork server with
    // CLONE_PARENT: they are the harness's own children and the server keeps none. With
    // NSTEST_FORK_SERVER=0 (as `off`: the switches take both) there is no server. Both runs
    // sample the harness's children.
    let _serial = serial();
    let cache = e2e_cache();
    for server in [true, false] {
        let tmp = scratch("forksrv-tree-tmp");
        let mut cmd = load_command("2", &cache, &tmp);
        cmd.arg("-q").stdout(Stdio::null()).stderr(Stdio::null());
        cmd.env("NSTEST_FORK_SERVER", if server { "on" } else { "0" });
        let mut child = cmd.spawn().unwrap();
        // How many PID namespaces deep a process is, as this test's /proc sees it.
        let depth = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| {
                    l.strip_prefix("NSpid:")
                        .map(|p| p.split_whitespace().count())
                })
        };
        let harness = depth(child.id()).unwrap();
        let (mut servers, mut containers, mut theirs) =
            (BTreeSet::new(), BTreeSet::new(), Vec::new());
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            for (pid, comm) in children_of(child.id()) {
                // A container is PID 1 of a PID namespace of its own (just cloned, it still has
                // the server's name); the server is in the harness's.
                match depth(pid) {
                    Some(d) if d == harness + 1 => {
                        containers.insert(pid);
                    }
                    Some(d) if d == harness && comm == "nstest-forksrv" => {
                        servers.insert(pid);
                        theirs.extend(children_of(pid));
                    }
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        assert!(status.success());
        // The first is the harness's own clone either way; with the server, the others are its.
        assert!(
            containers.len() >= 2,
            "containers seen as the harness's children: {containers:?}"
        );
        if server {
            assert_eq!(servers.len(), 1, "one fork server per run: {servers:?}");
            assert!(
                theirs.is_empty(),
                "the server keeps no children: {theirs:?}"
            );
        } else {
            assert!(servers.is_empty(), "NSTEST_FORK_SERVER=0: {servers:?}");
        }
        wait_until(
            "the fork server to end with the harness",
            Duration::from_secs(5),
            || {
                servers
                    .iter()
                    .all(|s| !Path::new(&format!("/proc/{s}")).exists())
            },
        );
    }
}

#[test]
fn a_fork_server_killed_mid_run_costs_no_test() {
    fork_server_signalled_mid_run(nix::sys::signal::Signal::SIGKILL, "forksrv-kill-tmp");
}

#[test]
fn a_fork_server_stopped_mid_run_costs_no_test() {
    // Alive but silent (as under a debugger, or stuck): the harness waits for its answer 10 s at
    // most, then kills it and clones by itself, the held request's test included.
    let text = fork_server_signalled_mid_run(nix::sys::signal::Signal::SIGSTOP, "forksrv-stop-tmp");
    assert!(text.contains("none within 10s"), "{text}");
}

/// Runs the 500 tests of `e2e-load` on 2 threads, sends their fork server `sig` 100 ms in,
/// and checks that the run still ends, within a minute, with every test passed (the test whose
/// request the server held is started again without it), the run told once, and the host
/// clean. Returns the output.
fn fork_server_signalled_mid_run(sig: nix::sys::signal::Signal, tmp_name: &str) -> String {
    let _serial = serial();
    let cache = e2e_cache();
    let tmp = scratch(tmp_name);
    let before = host_state();
    let child = load_command("2", &cache, &tmp)
        .env_remove("NSTEST_FORK_SERVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let harness = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut server = None;
    wait_until("the fork server", Duration::from_secs(20), || {
        server = children_of(child.id())
            .into_iter()
            .find(|(_, comm)| comm == "nstest-forksrv");
        server.is_some()
    });
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.unwrap().0 as i32), sig).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    let Ok(out) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = nix::sys::signal::kill(harness, nix::sys::signal::Signal::SIGKILL);
        panic!("the run did not end within a minute of the fork server's {sig}");
    };
    let run = Run::parse(out);
    let text = run.text();
    let count = |outcome: &str| run.outcomes.values().filter(|o| *o == outcome).count();
    let (passed, failed) = (count("ok"), count("FAILED"));
    assert_eq!((passed, failed), (500, 0), "{text}");
    let note = "nstest: note: the fork server failed";
    assert_eq!(text.matches(note).count(), 1, "{text}");
    assert_host_clean(&before, &tmp, &cache);
    text
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

#[test]
fn every_outcome_is_the_same_without_the_fork_server() {
    // NSTEST_FORK_SERVER=off: each container is cloned and re-executed by the harness.
    let env = [("NSTEST_FORK_SERVER", "off")];
    let run = run_fixture("no-fork-server", &["--test-threads", "2"], &env);
    check_every_outcome(&run, false);
    let nobody = run_fixture_in(
        "nobody-no-fork-server",
        AS_NOBODY,
        "e2e-cache-nobody",
        &["--test-threads", "2"],
        &env,
    );
    check_every_outcome(&nobody, true);
}

#[test]
fn the_run_example_takes_rootfs_hostname_bind_net_env_and_workdir() {
    let _serial = serial();
    let exe = fixture().parent().unwrap().join("run");
    let cache = e2e_cache();
    let before = host_state();
    let script = "hostname; pwd; echo $A; cat /srv/os-release | grep -c ^ID=; ls /sys/class/net | wc -l; echo pid $$";
    let mut cmd = Command::new(&exe);
    cmd.args([
        "--rootfs",
        "builtin:busybox",
        "--hostname",
        "web",
        "--bind",
        "/etc/os-release:/srv/os-release",
    ])
    .args([
        "--net",
        "host",
        "--env",
        "A=b",
        "--workdir",
        "/srv",
        "sh",
        "-c",
        script,
    ]);
    let text = succeeded(&mut cmd);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..4], ["web", "/srv", "b", "1"], "{text}");
    assert!(
        lines[4].trim().parse::<u32>().unwrap() > 1,
        "--net host shows the host's interfaces: {text}"
    );
    assert_eq!(lines[5], "pid 1");
    let out = Command::new(&exe)
        .args(["sh", "-c", "exit 7"])
        .env("NSTEST_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "the command's exit code is the example's"
    );
    assert_eq!(host_state(), before);
}

#[test]
fn nstest_keep_keeps_a_failed_tests_writes_until_the_next_run() {
    let env = [("NSTEST_KEEP", "1")];
    let run = run_fixture("keep", &["_writ"], &env); // demo_a_writes_a_marker, fail_after_writing_evidence
    assert_eq!(run.outcome("demo_a_writes_a_marker"), "ok");
    let msg = run.message("fail_after_writing_evidence");
    let kept = msg
        .lines()
        .find_map(|l| {
            l.strip_prefix("kept: the container's writes (its overlay upper layer) are in ")
        })
        .unwrap();
    let upper = Path::new(kept.split(" (NSTEST_KEEP=1").next().unwrap());
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/evidence")).unwrap(),
        "written before failing"
    );
    assert_eq!(
        std::fs::read_to_string(upper.join("var/lib/app/state")).unwrap(),
        "42"
    );
    let run_dir = upper.parent().unwrap().parent().unwrap();
    let kept_tests: Vec<_> = std::fs::read_dir(run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        kept_tests,
        ["fail_after_writing_evidence"],
        "a passing test keeps nothing"
    );
    // The next run removes it.
    run_fixture("keep-next", &["demo_pid_one"], &[]);
    assert!(!run_dir.exists(), "{} is still there", run_dir.display());
}

#[test]
fn nstest_shell_opens_a_shell_in_a_failed_tests_container() {
    use std::io::Write;
    let _serial = serial();
    let cache = e2e_cache();
    let tmp = scratch("shell-tmp");
    let before = host_state();
    // `script` gives the harness a terminal; the shell reads these lines from it.
    let command = format!(
        "{} fail_after_writing_evidence --exact",
        fixture().display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("NSTEST_SHELL", "1")
        .env("NSTEST_CACHE_DIR", &cache)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo \"evidence: $(cat /etc/evidence)\"; echo \"host: $(hostname)\"; echo \"pid: $$\"; exit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("A shell in its container"), "{text}");
    assert!(text.contains("evidence: written before failing"), "{text}");
    assert!(text.contains("host: fail-after-writing-evidence"), "{text}");
    assert!(
        text.lines().any(|l| l
            .strip_prefix("pid: ")
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(|p| p < 10)),
        "the shell is in the container's PID namespace: {text}"
    );
    assert!(
        text.contains("test fail_after_writing_evidence ... ") && text.contains("FAILED"),
        "{text}"
    );
    assert_host_clean(&before, &tmp, &cache);
}

#[test]
fn a_killed_runs_cgroups_are_removed_by_the_next_run_which_says_so() {
    let _serial = serial();
    let cache = e2e_cache();
    let tmp = scratch("stale-cgroup-tmp");
    let before = host_state();
    let limited = |args: &[&str]| {
        let mut c = Command::new(fixture());
        c.args(args)
            .env("NSTEST_PIDS", "64")
            .env("NSTEST_CACHE_DIR", &cache)
            .env("TMPDIR", &tmp);
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
        stale.len() > before.cgroups.len(),
        "SIGKILL left the run's cgroup: {stale:?}"
    );
    let out = limited(&["demo_pid_one", "--exact"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("left by a run that was killed"), "{err}");
    assert_host_clean(&before, &tmp, &cache);
}
