//! A fork server forked before `main`, for a process that runs one isolated test (`cargo nextest
//! run` starts one per test): the process is still pristine then (one thread, nothing of
//! nstest's set up), so its fork is as good a server as a re-executed binary, without the
//! second `execve`, dynamic loading and C library start-up of a large test binary.

use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use super::forkserver::{adopt, ANSWER_TIMEOUT};
use crate::reexec::{AHEAD_FD, LIFE_FD, SOCKET_FD};
use crate::sys::{self, ChildPlan};

/// Whether a server was forked before `main` (see [`prefork`]): then even a process's first
/// container is cloned by it.
pub(crate) fn preforked() -> bool {
    PREFORKED.load(Ordering::Relaxed)
}

static PREFORKED: AtomicBool = AtomicBool::new(false);

/// The one test this process runs, when it is one that forked its server before `main` (the
/// server reads it too: it is a copy of this process from then).
pub(crate) fn the_test() -> Option<&'static crate::registry::TestDesc> {
    THE_TEST.get().copied()
}

static THE_TEST: std::sync::OnceLock<&'static crate::registry::TestDesc> =
    std::sync::OnceLock::new();

/// What [`prefork`] made of this process.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Prefork {
    /// Nothing: not a process that runs one isolated test, or the server could not be forked.
    NotHere,
    /// The server: it serves (`child::serve_fork_requests`) and never returns.
    Server,
    /// The harness, with its server.
    Harness,
}

/// Before `main`, in a process started to run one isolated test (`<binary> <name> --exact`:
/// how `cargo nextest run` runs each test), starts the fork server by forking this process,
/// still pristine (one thread, before `main`, nothing of nstest's set up), instead of
/// re-executing the binary for the test's container: the `execve`, the dynamic loading and the
/// C library's start-up of a large test binary are paid once per process, not twice.
pub(crate) fn prefork() -> Prefork {
    if !crate::settings::fork_server() || !cfg!(target_env = "gnu") || !one_test_process() {
        return Prefork::NotHere;
    }
    let Some(one_thread) = sys::single_threaded() else {
        return Prefork::NotHere;
    };
    let (Ok((mine, theirs)), Ok((direct, ahead)), Ok(life), Ok(null)) = (
        sys::seqpacket_pair(),
        sys::seqpacket_pair(),
        sys::pipe(),
        sys::open_dev_null(),
    ) else {
        return Prefork::NotHere;
    };
    if sys::set_socket_timeouts(mine.as_fd(), ANSWER_TIMEOUT).is_err()
        || sys::set_socket_timeouts(direct.as_fd(), ANSWER_TIMEOUT).is_err()
    {
        return Prefork::NotHere;
    }
    // The server holds none of the harness's stdio: a test runner waiting for the end of the
    // harness's output must not wait for it.
    let n = null.as_raw_fd();
    let plan = ChildPlan {
        fds: vec![
            (n, 0),
            (n, 1),
            (n, 2),
            (theirs.as_raw_fd(), SOCKET_FD),
            (life.0.as_raw_fd(), LIFE_FD),
            // For the container the server may clone ahead (the harness talks to it directly).
            (ahead.as_raw_fd(), AHEAD_FD),
        ],
        life: (life.0.as_raw_fd(), life.1.as_raw_fd()),
        report_fd: SOCKET_FD,
        writes: Vec::new(),
        sync: None,
        netns: None,
        cgroup_ns: None,
    };
    match sys::fork_helper(&one_thread, &plan) {
        Ok(None) => {
            // The server: its socket and liveness pipe are at SOCKET_FD and LIFE_FD now, and
            // the fds these hold were closed; they must not be closed again.
            std::mem::forget((mine, theirs, direct, ahead, life, null));
            Prefork::Server
        }
        Ok(Some(cloned)) => {
            drop((theirs, ahead, life.0, null));
            PREFORKED.store(adopt(mine, cloned, life.1, direct), Ordering::Relaxed);
            Prefork::Harness
        }
        Err(_) => Prefork::NotHere,
    }
}

/// Whether the command line names one registered test with `--exact`, lists nothing, and runs
/// that test (it is not an ignored one left out).
fn one_test_process() -> bool {
    let Ok(cmdline) = std::fs::read("/proc/self/cmdline") else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).skip(1).collect();
    let flag = |f: &[u8]| args.contains(&f);
    if !flag(b"--exact") || flag(b"--list") {
        return false;
    }
    // The filters: words that are neither options nor the value of one.
    const WITH_VALUE: [&[u8]; 7] = [
        b"--test-threads",
        b"--skip",
        b"--format",
        b"--color",
        b"--logfile",
        b"-Z",
        b"--shuffle-seed",
    ];
    let mut filters = Vec::new();
    let mut words = args.iter().filter(|a| !a.is_empty());
    while let Some(a) = words.next() {
        if WITH_VALUE.contains(a) {
            words.next();
        } else if !a.starts_with(b"-") {
            filters.push(*a);
        }
    }
    match filters.as_slice() {
        [name] => match std::str::from_utf8(name)
            .ok()
            .and_then(crate::registry::find)
        {
            // Not for an ignored test that the run does not run: no container will be made.
            Some(desc) if desc.ignore && !flag(b"--ignored") && !flag(b"--include-ignored") => {
                false
            }
            Some(desc) => THE_TEST.set(desc).is_ok(),
            None => false,
        },
        _ => false,
    }
}
