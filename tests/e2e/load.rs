//! The 500 tests of the `e2e-load` example (`tests/fixtures/e2e-load.rs`), round after round:
//! no flake, the harness's memory flat, the host clean.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::host::HostGuard;
use crate::runs::{fixture, in_dirs};

/// The 500-test `e2e-load` example on `threads` threads, with its own cache and TMPDIR.
pub fn load_command(threads: &str, cache: &Path, tmp: &Path) -> Command {
    let mut cmd = Command::new(fixture().parent().unwrap().join("e2e-load"));
    in_dirs(&mut cmd, tmp, cache).args(["--test-threads", threads]);
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
    let (_host, tmp, cache) = HostGuard::for_run("load-tmp");
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
}
