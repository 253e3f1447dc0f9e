//! When the host cannot give nstest what it needs (user namespaces switched off, cgroups not
//! delegated): each test names the cause and the fix, or `NSTEST_UNAVAILABLE=skip` turns it
//! into an ignored test with the reason.

use crate::runs::{run_fixture_in, AS_NOBODY};

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
    assert_eq!(run.outcomes.len(), 26, "{}", run.text());
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
    assert_eq!(run.outcomes.len(), 44);
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
        44,
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
