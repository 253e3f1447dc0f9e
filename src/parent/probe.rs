//! The probe: can containers be made here at all, and if not, why? Run once per process, when
//! a test's container could not be made (or first thing with `NSTEST_UNAVAILABLE=skip`).
//!
//! `unshare` succeeding proves nothing (Ubuntu's AppArmor lets `CLONE_NEWUSER` through and then
//! refuses what the namespace is for), so the probe runs the same sequence a real test does —
//! clone with the namespaces, uid map, private mounts, a tmpfs, `/proc`, `/dev`, `pivot_root` —
//! over `builtin:host` (nothing to unpack), once per process. A failure is classified into one
//! line naming the cause found on this machine and the setting that fixes it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use once_cell::sync::Lazy;

use super::{rootless, setup_failure, Launch, Out, StdioSetup};
use crate::error::Error;
use crate::protocol::{RunSpec, Step};
use crate::spec::{Net, RootfsSource};

/// How long the probe's container may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Set once a container of this process has finished its set-up: containers can be made here,
/// whatever fails later (a limit of the moment such as ENOSPC under load must not be blamed on
/// the machine).
static ONE_WAS_MADE: AtomicBool = AtomicBool::new(false);

/// Records that a container of this process finished its set-up.
pub(crate) fn made_one() {
    ONE_WAS_MADE.store(true, Ordering::Relaxed);
}

/// Whether a container of this process has finished its set-up.
pub(crate) fn one_was_made() -> bool {
    ONE_WAS_MADE.load(Ordering::Relaxed)
}

/// `Err(reason)` when containers cannot be made here.
pub(crate) fn check() -> &'static Result<(), String> {
    static RESULT: Lazy<Result<(), String>> =
        Lazy::new(|| run().map_err(|e| explain(&e, &Machine::read())));
    &RESULT
}

fn run() -> Result<(), Error> {
    let finished = Launch {
        rootfs: &RootfsSource::Host,
        base_dir: Path::new("/"),
        hostname: "nstest-probe",
        net: Net::Loopback,
        run: RunSpec::Probe,
        args: Vec::new(),
        stdio: StdioSetup {
            stdin_null: true,
            stdout: Out::Null,
            stderr: Out::Null,
        },
        timeout: Some(TIMEOUT),
        capture_limit: Some(0),
        limits: crate::spec::Limits::default(),
        package: None,
        binds: Vec::new(),
        env: Vec::new(),
        workdir: None,
        keep: None,
        shell_on_failure: false,
        network: None,
        echo: [None, None],
    }
    .run()?;
    match setup_failure(&finished, Some(TIMEOUT)) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What the machine says about namespaces.
#[derive(Debug, Default)]
pub(crate) struct Machine {
    pub rootless: bool,
    pub apparmor_restrict: Option<u64>,
    pub max_user_namespaces: Option<u64>,
    pub unprivileged_userns_clone: Option<u64>,
    pub seccomp_filter: bool,
    pub in_container: bool,
}

impl Machine {
    fn read() -> Self {
        let num = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Self {
            rootless: rootless(),
            apparmor_restrict: num("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            max_user_namespaces: num("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: num("/proc/sys/kernel/unprivileged_userns_clone"),
            seccomp_filter: status
                .lines()
                .any(|l| l.starts_with("Seccomp:") && l.trim_end().ends_with('2')),
            in_container: Path::new("/.dockerenv").exists()
                || Path::new("/run/.containerenv").exists()
                || std::env::var_os("container").is_some(),
        }
    }
}

/// One line: the cause found, the fix, and the failure the probe saw.
pub(crate) fn explain(e: &Error, m: &Machine) -> String {
    let errno = match e {
        Error::Namespaces(s) => Some(s.errno),
        Error::Setup { errno, .. } => Some(*errno),
        _ => None,
    };
    let denied = matches!(errno, Some(Errno::EPERM | Errno::EACCES));
    let after_clone = matches!(e, Error::Setup { step, .. } if *step != Step::Exec);
    let (cause, fix) = if matches!(e, Error::IdMap(m) if m.kind == crate::idmap::IdMapStep::Map) {
        (
            "newuidmap/newgidmap refused this user's subordinate ids",
            "correct the user's entries in /etc/subuid and /etc/subgid, make sure newuidmap/newgidmap are setuid root (package uidmap), or set NSTEST_SUBIDS=off to map only your own id",
        )
    } else if m.rootless && m.max_user_namespaces == Some(0) {
        (
            "user namespaces are disabled (user.max_user_namespaces = 0)",
            "sysctl -w user.max_user_namespaces=15000",
        )
    } else if m.rootless && matches!(errno, Some(Errno::ENOSPC | Errno::EUSERS)) {
        (
            "the user namespace limit is reached (user.max_user_namespaces)",
            "raise it: sysctl -w user.max_user_namespaces=15000",
        )
    } else if matches!(errno, Some(Errno::ENOSPC | Errno::EUSERS)) {
        (
            "a namespace limit is reached (user.max_{pid,mnt,net,uts,ipc}_namespaces)",
            "raise the limit with sysctl, or run fewer tests at once (--test-threads)",
        )
    } else if m.rootless && denied && m.unprivileged_userns_clone == Some(0) {
        (
            "unprivileged user namespaces are switched off (kernel.unprivileged_userns_clone = 0)",
            "sysctl -w kernel.unprivileged_userns_clone=1, or run as root",
        )
    } else if m.rootless && denied && after_clone && m.apparmor_restrict == Some(1) {
        (
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1, as on Ubuntu 24.04)",
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile that allows `userns` for the test binary, or run as root",
        )
    } else if denied && m.seccomp_filter && m.in_container {
        (
            "this runs in a container whose seccomp filter refuses namespaces",
            "run the container with --privileged (or --security-opt seccomp=unconfined --cap-add SYS_ADMIN)",
        )
    } else if denied && m.seccomp_filter {
        (
            "a seccomp filter refuses the namespace calls",
            "run the tests outside that sandbox, or allow clone/unshare/mount in its filter",
        )
    } else if denied && m.in_container {
        (
            "this runs inside a container that does not allow nested namespaces or mounts",
            "run the container with --privileged, or run the tests on the host",
        )
    } else if denied && !m.rootless {
        ("root here lacks CAP_SYS_ADMIN", "run the tests as real root, or as a normal user (rootless mode through user namespaces)")
    } else if denied {
        (
            "the kernel refused an unprivileged user namespace",
            "run as root, or enable user namespaces (docs/privileges.md)",
        )
    } else if errno == Some(Errno::EINVAL) {
        (
            "this kernel lacks namespace support (CONFIG_USER_NS, CONFIG_PID_NS, CONFIG_NET_NS, …)",
            "use a kernel built with namespaces",
        )
    } else {
        ("containers cannot be made here", "see docs/privileges.md")
    };
    let seen = match e {
        Error::Namespaces(call) => call.to_string(),
        Error::IdMap(m) => format!("`{}` failed: {}", m.command, m.detail),
        other => other.to_string(),
    };
    format!("namespaces are not available: {cause}; fix: {fix} (the probe saw: {seen})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::SysError;
    use nix::errno::Errno;

    fn clone_err(errno: Errno) -> Error {
        Error::Namespaces(SysError::new("clone(CLONE_NEWUSER|CLONE_NEWUTS)", errno))
    }

    #[test]
    fn each_cause_is_named_with_its_fix() {
        let rootless = Machine {
            rootless: true,
            ..Machine::default()
        };
        let cases = [
            (
                clone_err(Errno::ENOSPC),
                Machine {
                    max_user_namespaces: Some(0),
                    ..Machine {
                        rootless: true,
                        ..Default::default()
                    }
                },
                "user.max_user_namespaces=15000",
            ),
            (
                clone_err(Errno::ENOSPC),
                Machine {
                    rootless: true,
                    ..Default::default()
                },
                "user.max_user_namespaces",
            ),
            (
                clone_err(Errno::EPERM),
                Machine {
                    unprivileged_userns_clone: Some(0),
                    rootless: true,
                    ..Default::default()
                },
                "kernel.unprivileged_userns_clone=1",
            ),
            (
                Error::Setup {
                    step: Step::MakePrivate,
                    detail: "mount".into(),
                    errno: Errno::EACCES,
                },
                Machine {
                    apparmor_restrict: Some(1),
                    rootless: true,
                    ..Default::default()
                },
                "kernel.apparmor_restrict_unprivileged_userns=0",
            ),
            (
                clone_err(Errno::EPERM),
                Machine {
                    seccomp_filter: true,
                    in_container: true,
                    ..Default::default()
                },
                "--privileged",
            ),
            (
                clone_err(Errno::EPERM),
                Machine {
                    seccomp_filter: true,
                    ..Default::default()
                },
                "seccomp",
            ),
            (clone_err(Errno::EPERM), Machine::default(), "CAP_SYS_ADMIN"),
            (clone_err(Errno::EINVAL), rootless, "CONFIG_USER_NS"),
            (
                Error::IdMap(crate::idmap::IdMapError {
                    kind: crate::idmap::IdMapStep::Map,
                    command: "/usr/bin/newuidmap 42 0 1000 1 1 100000 65536".into(),
                    detail: "newuidmap: write to uid_map failed: Operation not permitted".into(),
                    errno: None,
                }),
                Machine {
                    rootless: true,
                    ..Default::default()
                },
                "NSTEST_SUBIDS=off",
            ),
        ];
        for (err, machine, fix) in cases {
            let line = explain(&err, &machine);
            assert!(line.contains(fix), "{machine:?}: {line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }
}
