//! The re-exec contract: what this binary can become when nstest starts it again (from
//! `/proc/self/exe`, or as a clone of the fork server), and the variables and fds that say so.
//! The parent side sets them (`parent::spawn`, `parent::forkserver`, `idmap`); `entry` reads
//! them, once, before `main`, and dispatches. This module imports nothing of nstest.

use std::ffi::OsString;
use std::os::fd::RawFd;

/// Makes the binary a container child: the hex-encoded `protocol::ChildSpec`.
pub(crate) const CONTAINER_ENV: &str = "__NSTEST_CHILD";
/// Makes the binary the fork server (`parent::forkserver`).
pub(crate) const FORK_SERVER_ENV: &str = "__NSTEST_FORK_SERVER";
/// Makes the binary a helper that runs one task in a user namespace with subordinate ids
/// (`idmap`): its arguments say which.
pub(crate) const IDMAP_TASK_ENV: &str = "__NSTEST_IDMAP_TASK";

/// In a container child: where it writes its report (`protocol::Message` frames).
pub(crate) const REPORT_FD: RawFd = 3;
/// In a container child that the fork server cloned: the hold pipe it reads before it runs
/// anything (`ChildSpec::held_before_run`).
pub(crate) const HOLD_FD: RawFd = 4;
/// In the fork server: its end of the socket to the harness.
pub(crate) const SOCKET_FD: RawFd = 3;
/// In a container cloned before `main` (`parent::prefork`): its end of the socket to the
/// harness (`child::ahead`).
pub(crate) const AHEAD_FD: RawFd = 5;
/// In the fork server: the read end of the harness's liveness pipe.
pub(crate) const LIFE_FD: RawFd = 4;

/// What this process is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Not started by nstest: a harness, a test binary, any program.
    Own,
    /// A container child, with its spec (hex).
    Container(OsString),
    /// The fork server.
    ForkServer,
    /// An id-map helper task.
    IdMapTask,
}

/// This process's role, from its environment; the variable that said so is removed, so that
/// nothing the process starts inherits it. Call once, while the process has one thread.
pub(crate) fn take_role() -> Role {
    let take = |name: &str| {
        let v = std::env::var_os(name)?;
        std::env::remove_var(name);
        Some(v)
    };
    if let Some(hex) = take(CONTAINER_ENV) {
        Role::Container(hex)
    } else if take(FORK_SERVER_ENV).is_some() {
        Role::ForkServer
    } else if take(IDMAP_TASK_ENV).is_some() {
        Role::IdMapTask
    } else {
        Role::Own
    }
}

/// Whether this process is a container child that has not entered yet (a `Container` started
/// from code run before nstest's entry point, which is an error).
pub(crate) fn is_container_child() -> bool {
    std::env::var_os(CONTAINER_ENV).is_some()
}

static INSIDE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks this process as an nstest container with a network namespace of its own (not
/// `net = "host"`).
pub(crate) fn mark_inside() {
    INSIDE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether this process is an nstest container with a network namespace of its own (a test,
/// or a `Container`'s process that is this binary, without `net = "host"`): never the host's.
pub(crate) fn inside_container() -> bool {
    INSIDE.load(std::sync::atomic::Ordering::Relaxed)
}
