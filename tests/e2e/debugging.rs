//! Looking into a failed test: the command that reruns just it, `NSTEST_KEEP` (its writes
//! kept until the next run) and `NSTEST_SHELL` (a shell in its container).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::host::HostGuard;
use crate::runs::{fixture, in_dirs, run_fixture};

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
    let (_host, tmp, cache) = HostGuard::for_run("shell-tmp");
    // `script` gives the harness a terminal; the shell reads these lines from it.
    let command = format!(
        "{} fail_after_writing_evidence --exact",
        fixture().display()
    );
    let mut child = in_dirs(&mut Command::new("script"), &tmp, &cache)
        .args(["-qec", &command, "/dev/null"])
        .env("NSTEST_SHELL", "1")
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
}
