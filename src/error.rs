//! nstest's own errors: the container could not be made or watched. A test that fails is *not*
//! one of these; it is an outcome (see the harness), so "my assertion failed" and "nstest could
//! not set up the container" never look alike.
//!
//! One rule for every error type of nstest's: its `Display` is whole (the step, the cause with
//! its errno, the fix: an inner error's text is part of it), and `source()` is `None`. So `{}`
//! alone says everything, and an anyhow chain or `{:#}` prints each cause once. The inner error
//! stays matchable through the variant that carries it; every type a variant carries is
//! nameable from the crate's root or its public modules.

use std::fmt;
use std::process::ExitStatus;

use nix::errno::Errno;

use crate::protocol::{ProtocolError, Step};
use crate::rootfs::RootfsError;
use crate::spec::SpecError;
use crate::sys::SysError;

/// Why nstest could not run a container.
///
/// ```no_run
/// match nstest::Container::new("true").rootfs("missing.tar").status() {
///     Err(nstest::Error::Rootfs(e)) => eprintln!("no rootfs: {e}"),
///     Err(e) => eprintln!("nstest could not run it: {e}"),
///     Ok(status) => println!("{status}"),
/// }
/// # Ok::<(), nstest::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A setting does not parse (hostname, timeout, rootfs string, `NSTEST_*`).
    Spec(SpecError),
    /// The root filesystem could not be prepared.
    Rootfs(RootfsError),
    /// `clone(2)` refused the namespaces: the message names the cause and the fix.
    Namespaces(SysError),
    /// Another host-side call failed (pipe, poll, wait).
    Host(SysError),
    /// The container's set-up failed at `step`, reported by the child.
    Setup {
        /// The step.
        step: Step,
        /// The failed call and its arguments.
        detail: String,
        /// The errno.
        errno: Errno,
    },
    /// The child died before it finished setting up, without saying why.
    DiedDuringSetup(ExitStatus),
    /// The container's set-up did not finish within the timeout (given here); it was killed with
    /// its whole PID namespace before the test or command started.
    SetupTimedOut(std::time::Duration),
    /// The command did not finish in time and was killed with its whole PID namespace.
    TimedOut(std::time::Duration),
    /// The host side of a `bind` does not exist or cannot be reached.
    BindSource(std::path::PathBuf, std::io::Error),
    /// A resource limit could not be applied (no controller, no delegation).
    Cgroup(crate::cgroup::CgroupError),
    /// The subordinate ids of `/etc/subuid` could not be mapped (`newuidmap` refused).
    IdMap(crate::idmap::IdMapError),
    /// The report stream from the child did not decode.
    Protocol(ProtocolError),
    /// A [`crate::Network`], or a container's place on it, could not be made or changed.
    Network(crate::network::NetworkError),
    /// This binary was re-executed as a container child, but nstest's constructor, which enters
    /// the container before `main`, did not run, and `main` does not start with `nstest::init()`
    /// (or `nstest::main!()`), the fallback.
    NotInitialized,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spec(e) => write!(f, "{e}"),
            Self::Rootfs(e) => write!(f, "{e}"),
            Self::Namespaces(e) => {
                write!(f, "cannot create the container's namespaces: {e}: ")?;
                f.write_str(match e.errno {
                    Errno::EPERM | Errno::EACCES => {
                        "creating mount, PID, UTS, IPC and network namespaces needs root (CAP_SYS_ADMIN); \
                         run the tests as root (e.g. `sudo -E cargo test`), or enable unprivileged user \
                         namespaces for rootless mode (see docs/privileges.md)"
                    }
                    Errno::EINVAL => "this kernel lacks namespace support (CONFIG_UTS_NS, CONFIG_PID_NS, CONFIG_IPC_NS, CONFIG_NET_NS)",
                    Errno::ENOSPC | Errno::EUSERS => {
                        "the namespace limit is reached; raise the sysctls user.max_pid_namespaces, \
                         user.max_net_namespaces, user.max_mnt_namespaces (…/uts/ipc) or run fewer tests at once (--test-threads)"
                    }
                    Errno::ENOMEM => "out of memory (or the PID namespace nesting limit); run fewer tests at once (--test-threads)",
                    _ => "see docs/privileges.md",
                })
            }
            Self::Host(e) => write!(f, "host-side call failed: {e}"),
            Self::Setup { step, detail, errno } => {
                write!(f, "container setup failed at step {step}: {detail} => {errno:?} ({})", errno.desc())?;
                if matches!(errno, Errno::EPERM | Errno::EACCES) {
                    f.write_str(": not permitted; nstest needs root or a user namespace (docs/privileges.md)")?;
                }
                if *step == Step::Exec && *errno == Errno::ENOENT {
                    f.write_str(": no such command in the container's rootfs")?;
                }
                Ok(())
            }
            Self::DiedDuringSetup(status) => write!(f, "the container died during setup, before it could report ({})", describe_status(*status)),
            Self::SetupTimedOut(d) => write!(
                f,
                "the container's set-up did not finish within the timeout of {}, so its test or command never started (a copy of a large rootfs under NSTEST_OVERLAY=off, or a mount that hangs?); raise the timeout",
                crate::spec::format_duration(*d)
            ),
            Self::TimedOut(d) => write!(f, "timed out after {}", crate::spec::format_duration(*d)),
            Self::Protocol(e) => write!(f, "garbled report from the container: {e}"),
            Self::Cgroup(e) => write!(f, "{e}"),
            Self::IdMap(e) => write!(f, "{e}"),
            Self::BindSource(p, e) => write!(
                f,
                "cannot bind {} into the container: {e} (relative bind paths start at the package's directory for tests, at the current directory for `Container`)",
                p.display()
            ),
            Self::Network(e) => write!(f, "{e}"),
            Self::NotInitialized => f.write_str(
                "this binary was re-executed as an nstest container but did not enter nstest: call `nstest::init()` first thing in `main` (test binaries: end with `nstest::main!()`)",
            ),
        }
    }
}

/// Whole on its own (see the module's rule): no `source()`.
impl std::error::Error for Error {}

impl From<crate::network::NetworkError> for Error {
    fn from(e: crate::network::NetworkError) -> Self {
        Self::Network(e)
    }
}

impl From<SpecError> for Error {
    fn from(e: SpecError) -> Self {
        Self::Spec(e)
    }
}

impl From<RootfsError> for Error {
    fn from(e: RootfsError) -> Self {
        Self::Rootfs(e)
    }
}

/// "killed by signal SIGSEGV (core dumped)" or "exit code 3".
pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!(
            "killed by signal {}{}",
            crate::sys::signal_name(sig),
            if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            }
        ),
        _ => format!("{status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::Error;
    use crate::spec::SpecError;
    use crate::sys::SysError;

    /// What anyhow's `{:#}` prints: each error of the chain, joined by ": ".
    fn chain(e: &dyn std::error::Error) -> String {
        let mut s = e.to_string();
        let mut next = e.source();
        while let Some(cause) = next {
            s.push_str(": ");
            s.push_str(&cause.to_string());
            next = cause.source();
        }
        s
    }

    #[test]
    fn a_chain_tells_each_cause_once() {
        let inner = SysError::new("clone(CLONE_NEWPID)", nix::errno::Errno::EPERM);
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let errors = [
            Error::Namespaces(inner.clone()),
            Error::Host(inner),
            Error::Spec(SpecError::Env(
                "NSTEST_TIMEOUT",
                Box::new(SpecError::BadDuration("ten".into())),
            )),
            Error::Rootfs(crate::rootfs::RootfsError::Read {
                path: "/r.tar".into(),
                source: std::sync::Arc::new(io),
            }),
            Error::Protocol(crate::protocol::ProtocolError::Truncated),
        ];
        for e in &errors {
            let text = chain(e);
            assert_eq!(text, e.to_string(), "whole on its own");
            for needle in [
                "clone(CLONE_NEWPID)",
                "\"ten\"",
                "No such file",
                "ended inside",
            ] {
                assert!(text.matches(needle).count() <= 1, "{needle} twice: {text}");
            }
        }
    }
}
