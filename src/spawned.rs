//! [`Child`]: a container started with [`crate::Container::spawn`], running while the caller
//! goes on (a server, a peer of a cluster), as `std::process::Child` is for a process.
//!
//! A thread of the caller watches each one (drains its pipes, reaps it) and leaves what it came
//! to in a slot that [`Child::wait`] reads. Every child is also listed for the end of the test:
//! [`end_all`] kills those still running and waits until their output is in.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{ExitStatus, Output};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::sys::{self, SysError};

/// What a child came to, once its watcher is done.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    done: Mutex<Done>,
    ended: Condvar,
}

/// The watcher's result (until taken), and whether the watcher is done.
#[derive(Debug, Default)]
struct Done {
    result: Option<Result<Output, Error>>,
    ended: bool,
}

impl Slot {
    pub(crate) fn put(&self, r: Result<Output, Error>) {
        let mut done = self.lock();
        done.result = Some(r);
        done.ended = true;
        drop(done);
        self.ended.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Done> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the child's watcher is done, or `limit` has passed.
    fn wait_done(&self, limit: Option<Duration>) -> std::sync::MutexGuard<'_, Done> {
        let deadline = limit.map(|l| Instant::now() + l);
        let mut done = self.lock();
        while !done.ended {
            match deadline {
                None => done = self.ended.wait(done).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    done = self
                        .ended
                        .wait_timeout(done, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        done
    }
}

/// A running container, from [`crate::Container::spawn`]: its set-up is done (and, on a
/// [`crate::Network`], its address is up) when `spawn` returns.
///
/// When the test ends, every child it started that still runs is killed, and its output,
/// shown line by line with its hostname in front (`web | listening on :80`) as it came, is
/// complete before the test's outcome is reported.
///
/// ```no_run
/// # fn main() -> Result<(), nstest::Error> {
/// let mut server = nstest::Container::new("sleep").arg("60").spawn()?;
/// server.kill()?;
/// assert!(!server.wait()?.success());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Child {
    pid: u32,
    ip: IpAddr,
    hostname: String,
    pidfd: Arc<OwnedFd>,
    slot: Arc<Slot>,
}

/// The children of this process that may still run: what [`end_all`] kills.
static LIVE: Mutex<Vec<(Arc<OwnedFd>, Arc<Slot>)>> = Mutex::new(Vec::new());

impl Child {
    pub(crate) fn new(
        pid: i32,
        ip: Option<Ipv4Addr>,
        hostname: String,
        pidfd: OwnedFd,
        slot: Arc<Slot>,
    ) -> Self {
        let pidfd = Arc::new(pidfd);
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        // Those that ended are not listed any more (a program may spawn many over its life).
        live.retain(|(_, slot)| !slot.lock().ended);
        live.push((pidfd.clone(), slot.clone()));
        drop(live);
        Self {
            pid: pid as u32,
            ip: IpAddr::V4(ip.unwrap_or(Ipv4Addr::LOCALHOST)),
            hostname,
            pidfd,
            slot,
        }
    }

    /// The PID of the container's PID 1, as the caller's PID namespace numbers it.
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// The container's address on its [`crate::Network`]. A container on no network has only
    /// its own `lo`: this is then `127.0.0.1`, which only it can reach.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The container's hostname.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Kills the container (its PID 1, and with it every process of its PID namespace). A
    /// container that has already ended is no error.
    pub fn kill(&mut self) -> Result<(), Error> {
        match sys::pidfd_kill(self.pidfd.as_fd(), libc::SIGKILL) {
            Err(e) if e.errno != nix::errno::Errno::ESRCH => Err(Error::Host(e)),
            _ => Ok(()),
        }
    }

    /// Waits for the container to end: its PID 1's exit status. Its timeout, if it has one,
    /// ends it as [`Error::TimedOut`].
    pub fn wait(&mut self) -> Result<ExitStatus, Error> {
        let mut done = self.slot.wait_done(None);
        match done.result.as_ref() {
            Some(Ok(out)) => Ok(out.status),
            _ => Err(take_error(&mut done.result)),
        }
    }

    /// Waits for the container to end and collects its output: what it wrote to stdout and
    /// stderr, unless they were set to [`crate::Stdio::Null`] or [`crate::Stdio::Inherit`].
    pub fn wait_with_output(self) -> Result<Output, Error> {
        let mut done = self.slot.wait_done(None);
        match done.result.take() {
            Some(r) => r,
            None => Err(take_error(&mut done.result)),
        }
    }
}

/// The error a finished child left, taken; later calls get a note that it was reported.
fn take_error(done: &mut Option<Result<Output, Error>>) -> Error {
    match done.replace(Err(Error::Host(SysError::new(
        "wait (the container's error was already returned)",
        nix::errno::Errno::ECHILD,
    )))) {
        Some(Err(e)) => e,
        _ => Error::Host(SysError::new("wait", nix::errno::Errno::ECHILD)),
    }
}

/// The end of a test: kills every child still running and waits (a few seconds at most) until
/// each one's watcher has reaped it and shown the rest of its output.
pub(crate) fn end_all() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for (pidfd, _) in &live {
        let _ = sys::pidfd_kill(pidfd.as_fd(), libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    for (_, slot) in &live {
        drop(slot.wait_done(Some(deadline.saturating_duration_since(Instant::now()))));
    }
}
