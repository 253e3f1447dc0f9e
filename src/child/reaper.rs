//! PID 1 duties while the test runs: reaping orphans, without stealing the test's own children.
//!
//! The test is PID 1 of its namespace, so every orphan is re-parented to it; a plain
//! `waitpid(-1)` reaper would also take the exit status of a child the test is about to wait
//! for. This reaper takes only zombies the test cannot be waiting for: children of PID 1 that
//! are in another session than PID 1's — daemons, which `setsid` on their way to the
//! background (a test that `setsid`s its own child and waits for it is the exception it gets
//! wrong). Other orphans are reaped when the test ends and its namespace goes.

use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// How often the reaper looks for zombies.
const PERIOD: Duration = Duration::from_millis(20);

/// `(ppid, session, state)` of a process, from `/proc/<pid>/stat`.
fn stat(pid: &str) -> Option<(i32, i32, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = s.rsplit_once(") ")?;
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let _pgrp = f.next()?;
    let session = f.next()?.parse().ok()?;
    Some((ppid, session, state))
}

/// Starts the reaper thread; it lives as long as PID 1 does.
pub fn start() {
    let Ok(own_session) = nix::unistd::getsid(None).map(Pid::as_raw) else {
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("nstest-reaper".into())
        .stack_size(64 << 10) // it reads /proc, no more
        .spawn(move || loop {
            std::thread::sleep(PERIOD);
            let Ok(entries) = std::fs::read_dir("/proc") else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(pid) = name
                    .to_str()
                    .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                else {
                    continue;
                };
                if let Some((1, session, 'Z')) = stat(pid) {
                    if session != own_session {
                        let _ = waitpid(
                            Pid::from_raw(pid.parse().unwrap_or(0)),
                            Some(WaitPidFlag::WNOHANG),
                        );
                    }
                }
            }
        });
    drop(spawned);
}
