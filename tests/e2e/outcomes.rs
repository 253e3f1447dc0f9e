//! Every outcome the fixture's tests can have, reported for the right reason, in libtest's
//! text and JSON formats, under libtest's flags and `NSTEST_TIMEOUT`.

use crate::runs::{e2e_cache, run_fixture, run_fixture_in, Run};

#[test]
fn every_outcome_is_reported_for_the_right_reason() {
    check_every_outcome(&run_fixture("all", &["--test-threads", "2"], &[]), false);
}

/// The fixture's `demo_*` passed, its `fail_*` failed each for its own reason; its `limit_*` were
/// bounded and reported for the right reason (or, rootless without cgroup delegation, failed
/// saying so).
pub fn check_every_outcome(run: &Run, rootless: bool) {
    check_outcomes(run, rootless, false)
}

/// [`check_every_outcome`] in an emulated VM, where a container's set-up alone may take longer
/// than the 300 ms and 500 ms timeouts of two tests: they may end with nstest's "set-up did not
/// finish within the timeout" instead of the test's "timed out" (both are timeouts, reported as
/// such; which one depends on the emulator's speed, not on nstest).
pub fn check_every_outcome_slowly(run: &Run, rootless: bool) {
    check_outcomes(run, rootless, true)
}

fn check_outcomes(run: &Run, rootless: bool, slow: bool) {
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
            // Its reason shown as libtest shows it (libtest-mimic's parentheses rewritten).
            "ignored, hangs on purpose: tests/e2e runs it"
        };
        assert_eq!(
            outcome,
            expected,
            "{test}:\n{}",
            run.messages.get(test).map(String::as_str).unwrap_or(&text)
        );
    }
    assert_eq!(run.outcomes.len(), 44, "{text}");
    let reasons = [
        // As libtest prints an in-process panic: the test's thread, its name, its tid (the
        // main thread is PID 1's reaper), the location, the message, once.
        (
            "fail_panic",
            "\nthread 'fail_panic' (2) panicked at tests/fixtures/e2e-fixture.rs:",
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
        let timeout = reason.strip_prefix("timed out after ");
        let setup_timeout =
            timeout.map(|d| format!("set-up did not finish within the timeout of {d}"));
        assert!(
            run.message(test).contains(reason)
                || (slow && setup_timeout.is_some_and(|s| run.message(test).contains(&s))),
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
    let (passed, failed) = if rootless { (26, 17) } else { (27, 16) };
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
    assert_eq!(run.outcomes.len(), 26, "{}", run.text());
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
    assert_eq!(listed.lines().count(), 44, "{listed}");
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
    assert!(run.text().contains("24 passed"), "{}", run.text());

    let run = run_fixture("nocapture", &["fail_panic", "--nocapture"], &[]);
    assert!(
        String::from_utf8_lossy(&run.output.stderr).contains("plain panic message"),
        "streamed live"
    );
}

/// An ignore reason reads as libtest prints it, in colour as in plain text; and a test's own
/// output under `--nocapture` still follows the start of its line (libtest-mimic's output is
/// relayed to stdout to print the reason so).
#[test]
fn an_ignore_reason_reads_as_libtest_prints_it() {
    let run = run_fixture(
        "ignore-reason",
        &["hangs_with_a_child", "--color", "always"],
        &[],
    );
    let text = run.text();
    assert!(
        text.contains(
            "\ntest hangs_with_a_child ... \x1b[33mignored, hangs on purpose: tests/e2e runs it\x1b[0m\n"
        ),
        "{text:?}"
    );
    assert!(run.output.status.success(), "{text}");
    // stdout and stderr in one pipe, in the order they were written.
    let merged = ["sh", "-c", "exec \"$0\" \"$@\" 2>&1"];
    let test = "demo_hostile_rm_rf_everything";
    let args = [test, "--exact", "--nocapture"];
    let run = run_fixture_in("ignore-reason-order", &merged, "e2e-cache", &args, &[]);
    let text = run.text();
    let start = text.find(&format!("test {test} ... ")).expect(&text);
    let own = text.find("rm: can't remove").expect(&text);
    assert!(start < own, "{text}");
    assert!(run.output.status.success(), "{text}");
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
