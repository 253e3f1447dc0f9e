//! `#[nstest::test]` in an ordinary libtest target (no `harness = false`): isolated tests and
//! plain `#[test]`s side by side, each reported by libtest.

use std::path::Path;
use std::process::Command;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn plain_tests_stay_in_process() {
    assert_ne!(std::process::id(), 1);
    assert_ne!(hostname(), "std-box");
}

#[nstest::test(hostname = "std-box")]
fn isolated_test_is_pid_one_in_its_container() {
    assert_eq!(std::process::id(), 1);
    assert_eq!(hostname(), "std-box");
    std::fs::write("/etc/std-harness-marker", "x").unwrap();
}

#[nstest::test]
fn isolated_writes_never_reach_another_test() {
    assert!(!Path::new("/etc/std-harness-marker").exists());
    std::fs::write("/etc/std-harness-marker", "x").unwrap();
}

#[nstest::test]
#[should_panic(expected = "expected boom")]
fn should_panic_works_in_libtest_mode() {
    panic!("expected boom")
}

#[nstest::test]
fn result_tests_work_in_libtest_mode() -> Result<(), std::io::Error> {
    std::fs::write("/root/x", "y")
}

#[nstest::test]
#[ignore]
fn deliberately_fails() {
    println!("output from inside");
    assert_eq!(std::process::id(), 1);
    panic!("boom from inside the container");
}

#[nstest::test(timeout = "300ms")]
#[ignore]
fn deliberately_hangs() {
    std::thread::sleep(std::time::Duration::from_secs(600));
}

/// Runs this same test binary on one of its ignored tests.
fn run_ignored(test: &str) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--include-ignored"])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_failing_isolated_test_is_reported_by_libtest() {
    let (ok, text) = run_ignored("deliberately_fails");
    assert!(!ok, "{text}");
    assert!(
        text.contains("test deliberately_fails ... FAILED"),
        "{text}"
    );
    assert!(text.contains("output from inside"), "{text}");
    assert!(
        text.contains("test panicked at tests/standard_harness.rs"),
        "{text}"
    );
    assert!(text.contains("boom from inside the container"), "{text}");

    let (ok, text) = run_ignored("deliberately_hangs");
    assert!(!ok, "{text}");
    assert!(text.contains("timed out after 300ms"), "{text}");
}
