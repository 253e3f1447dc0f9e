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
#[ignore = "hangs on purpose"]
fn deliberately_hangs() {
    std::thread::sleep(std::time::Duration::from_secs(600));
}

/// Runs this same test binary on one of its ignored tests, with `RUST_BACKTRACE` set to
/// `backtrace`.
fn run_ignored(test: &str, backtrace: &str) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--include-ignored"])
        .env("RUST_BACKTRACE", backtrace)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_failing_isolated_test_reads_as_an_in_process_one() {
    let (ok, text) = run_ignored("deliberately_fails", "0");
    assert!(!ok, "{text}");
    assert!(
        text.contains("test deliberately_fails ... FAILED"),
        "{text}"
    );
    // The test's output, then its own panic as libtest prints it (its thread, its location),
    // once; then nstest's two lines; nothing of nstest's wrapper.
    let section = text
        .split_once("---- deliberately_fails stdout ----\n")
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no failure section: {text}"));
    assert!(
        section.starts_with(
            "output from inside\n\nthread 'deliberately_fails' (2) panicked at tests/standard_harness.rs:"
        ),
        "{text}"
    );
    assert!(
        section.contains(":\nboom from inside the container\nnote: run with `RUST_BACKTRACE=1`"),
        "{text}"
    );
    assert_eq!(
        text.matches("boom from inside the container").count(),
        1,
        "{text}"
    );
    assert!(section.contains("\ncontainer: rootfs "), "{text}");
    assert!(section.contains("\nrerun: "), "{text}");
    assert!(!text.contains("src/harness/"), "{text}");
    assert_eq!(text.matches("panicked at").count(), 1, "{text}");

    let (ok, text) = run_ignored("deliberately_hangs", "0");
    assert!(!ok, "{text}");
    assert!(text.contains("timed out after 300ms"), "{text}");

    // With RUST_BACKTRACE=1, one backtrace, symbolized (the binary is there, at its path),
    // through the test function and ending there, as libtest's does.
    let (_, text) = run_ignored("deliberately_fails", "1");
    assert_eq!(text.matches("stack backtrace:").count(), 1, "{text}");
    let trace = text.split_once("stack backtrace:").unwrap().1;
    let trace = trace.split_once("\ncontainer: ").unwrap().0;
    assert!(
        trace.contains("standard_harness::__nstest_body_deliberately_fails\n             at ./tests/standard_harness.rs:"),
        "{trace}"
    );
    assert!(!trace.contains("nstest::"), "nstest's frames: {trace}");
}

#[test]
fn an_ignore_reason_is_shown_as_libtest_shows_it() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "deliberately_hangs"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("test deliberately_hangs ... ignored, hangs on purpose"),
        "{text}"
    );
}
