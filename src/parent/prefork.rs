//! Before `main`, in a process that runs one isolated test (`cargo nextest run` starts one per
//! test): the process is still pristine then (one thread, nothing of nstest's set up), so a
//! fork of it is as good as a re-executed binary, without the second `execve`, dynamic loading
//! and C library start-up of a large test binary. As root, for a test with a network namespace
//! of its own, the test's container itself is cloned then, and sets itself up while the
//! harness starts (`child::ahead`) for the spec the harness works out right after the clone,
//! when that needs no work (`runner::spec_ahead`); otherwise a fork server is forked, which
//! clones the container when asked.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use nix::sched::CloneFlags;

use super::forkserver::{adopt, request, ANSWER_TIMEOUT};
use crate::reexec::{AHEAD_FD, LIFE_FD, SOCKET_FD};
use crate::sys::{self, ChildPlan, Cloned};

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

/// How [`prefork`] works out a test's spec ahead.
pub(crate) type SpecOf =
    fn(&'static crate::registry::TestDesc) -> Option<crate::protocol::ChildSpec>;

/// What [`prefork`] made of this process.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Prefork {
    /// Nothing: not a process that runs one isolated test, or nothing could be cloned.
    NotHere,
    /// The server: it serves (`child::serve_fork_requests`) and never returns.
    Server,
    /// The harness, with its server or the test's container cloned ahead.
    Harness,
}

/// Before `main`, in a process started to run one isolated test (`<binary> <name> --exact`:
/// how `cargo nextest run` runs each test), clones the test's container (as root, for a test
/// with a network namespace of its own), or else starts the fork server, from this process,
/// still pristine (one thread, before `main`, nothing of nstest's set up), instead of
/// re-executing the binary for the test's container: the `execve`, the dynamic loading and the
/// C library's start-up of a large test binary are paid once per process, not twice.
///
/// `spec_of` works out a test's spec as its harness will send it, when that can be known so
/// early (`runner::spec_ahead`, above this module).
pub(crate) fn prefork(spec_of: SpecOf) -> Prefork {
    if !crate::settings::fork_server() || !cfg!(target_env = "gnu") || !one_test_process() {
        return Prefork::NotHere;
    }
    let Some(one_thread) = sys::single_threaded() else {
        return Prefork::NotHere;
    };
    match the_test() {
        Some(test) if test.net != crate::spec::Net::Host && !super::rootless() => {
            return clone_ahead(&one_thread, test, spec_of);
        }
        _ => {}
    }
    let Some(links) = Links::open() else {
        return Prefork::NotHere;
    };
    match sys::fork_helper(&one_thread, &links.plan(SOCKET_FD)) {
        Ok(None) => {
            links.in_child();
            Prefork::Server
        }
        Ok(Some(cloned)) => {
            let (mine, life) = links.in_parent();
            PREFORKED.store(adopt(mine, cloned, life), Ordering::Relaxed);
            Prefork::Harness
        }
        Err(_) => Prefork::NotHere,
    }
}

/// What a process forked before `main` (the server, or the test's container) is given: a socket
/// to the harness, the harness's liveness pipe, and `/dev/null` as its stdio (a test runner
/// waiting for the end of the harness's output must not wait for it).
struct Links {
    mine: OwnedFd,
    theirs: OwnedFd,
    life: (OwnedFd, OwnedFd),
    null: OwnedFd,
}

impl Links {
    fn open() -> Option<Self> {
        let ((mine, theirs), life, null) = (
            sys::seqpacket_pair().ok()?,
            sys::pipe().ok()?,
            sys::open_dev_null().ok()?,
        );
        sys::set_socket_timeouts(mine.as_fd(), ANSWER_TIMEOUT).ok()?;
        Some(Self {
            mine,
            theirs,
            life,
            null,
        })
    }

    /// The child's plan: its end of the socket at `socket_fd` (where it also reports a failed
    /// step), the liveness pipe's read end at `LIFE_FD`, and `/dev/null` at every other fd up
    /// to the highest of those, its stdio among them, so that none of this process's stays
    /// open below it (those above are closed).
    fn plan(&self, socket_fd: RawFd) -> ChildPlan {
        let (null, life) = (self.null.as_raw_fd(), self.life.0.as_raw_fd());
        let fds = (0..=socket_fd.max(LIFE_FD))
            .map(|fd| match fd {
                _ if fd == socket_fd => (self.theirs.as_raw_fd(), fd),
                LIFE_FD => (life, fd),
                _ => (null, fd),
            })
            .collect();
        ChildPlan {
            fds,
            life: (life, self.life.1.as_raw_fd()),
            report_fd: socket_fd,
            writes: Vec::new(),
            sync: None,
            netns: None,
            cgroup_ns: None,
        }
    }

    /// In the child: the fds these held were closed or moved where the plan says, and must not
    /// be closed again.
    fn in_child(self) {
        std::mem::forget(self);
    }

    /// In the parent: its end of the socket, and the liveness pipe's write end.
    fn in_parent(self) -> (OwnedFd, OwnedFd) {
        (self.mine, self.life.1)
    }
}

/// The test's container, cloned ahead: the harness's end of its socket, the container, and the
/// spec it is setting itself up for, if any.
struct Ahead {
    direct: OwnedFd,
    cloned: Cloned,
    spec: Option<String>,
}

static AHEAD: Mutex<Option<Ahead>> = Mutex::new(None);

/// The write end of the liveness pipe of the container cloned ahead, kept open as long as the
/// process runs (the container checks it again when it takes its request).
static AHEAD_LIFE: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();

/// Clones `test`'s container now, with every namespace but the network one, which it makes
/// itself (`child::ahead`) while this process works out its spec and sends it: its stdio
/// `/dev/null` (a test runner waiting for the end of the harness's output must not wait for
/// it), a socket to the harness at `AHEAD_FD`, its liveness pipe at `LIFE_FD`. In the clone,
/// never returns.
fn clone_ahead(
    one_thread: &sys::SingleThreaded,
    test: &'static crate::registry::TestDesc,
    spec_of: SpecOf,
) -> Prefork {
    let Some(links) = Links::open() else {
        return Prefork::NotHere;
    };
    let flags = super::spawn::NAMESPACES - CloneFlags::CLONE_NEWNET;
    let mask = sys::cpu_mask();
    match sys::clone_child(one_thread, flags, &links.plan(AHEAD_FD)) {
        Ok(None) => {
            links.in_child();
            crate::child::run_ahead(mask)
        }
        Ok(Some(cloned)) => {
            let (direct, life) = links.in_parent();
            let _ = AHEAD_LIFE.set(life);
            // Its first run on the other CPU, now: it would wait for this one's.
            if let Some(mask) = &mask {
                sys::start_elsewhere(cloned.pid, mask);
            }
            let spec = spec_of(test).map(|s| s.encode());
            let first: &[u8] = spec.as_deref().map_or(crate::child::NO_SPEC, str::as_bytes);
            if sys::send_with_fds(direct.as_fd(), first, &[]).is_err() {
                // Unused then: the test's container is made as any other.
                cloned.kill_and_reap();
                return Prefork::Harness;
            }
            *AHEAD.lock().unwrap_or_else(|e| e.into_inner()) = Some(Ahead {
                direct,
                cloned,
                spec,
            });
            AHEAD_OWNER.store(std::process::id(), Ordering::Relaxed);
            // Unused (the run filtered its test out), it is ended when the harness exits.
            let _ = sys::at_exit(end_unused);
            Prefork::Harness
        }
        Err(_) => Prefork::NotHere,
    }
}

/// The process that cloned the container ahead (a process forked from it inherits the
/// `atexit` handler, and must leave it alone).
static AHEAD_OWNER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// At exit: kills and reaps the container cloned ahead if nothing used it.
extern "C" fn end_unused() {
    if AHEAD_OWNER.load(Ordering::Relaxed) != std::process::id() {
        return;
    }
    // Must not unwind into the C library.
    let _ = std::panic::catch_unwind(|| {
        if let Some(ahead) = AHEAD.lock().unwrap_or_else(|e| e.into_inner()).take() {
            ahead.cloned.kill_and_reap();
        }
    });
}

/// Whether the test's container was cloned ahead and waits for its request.
pub(crate) fn ahead_waiting() -> bool {
    AHEAD.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// The container cloned ahead, sent the request for `spec` (cloned with `flags` and `plan`)
/// directly, if it fits: cloned with every namespace, none entered, and, if it is setting itself
/// up already, for this very spec and held at no point before that. One that does not fit, or
/// takes no request, is ended and reaped: the caller makes the container itself.
pub(crate) fn send_ahead(flags: CloneFlags, plan: &ChildPlan, spec: &str) -> Option<Cloned> {
    let ahead = AHEAD.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    let sent = fits(flags, plan, ahead.spec.as_deref(), spec)
        .then(|| request(flags, plan, spec))
        .flatten()
        .is_some_and(|(req, fds): (Vec<u8>, Vec<RawFd>)| {
            sys::send_with_fds(ahead.direct.as_fd(), &req, &fds).is_ok()
        });
    if sent {
        return Some(ahead.cloned);
    }
    ahead.cloned.kill_and_reap();
    None
}

/// Whether a container cloned ahead serves a request for `spec` cloned with `flags` and `plan`:
/// cloned with every namespace (it made its network one), entering none, and, if it is setting
/// itself up for a spec already (`set_up_for`), for this one, held at no point before that.
fn fits(flags: CloneFlags, plan: &ChildPlan, set_up_for: Option<&str>, spec: &str) -> bool {
    flags == super::spawn::NAMESPACES
        && plan.netns.is_none()
        && set_up_for.map_or(true, |s| s == spec && plan.sync.is_none())
}

/// Whether the command line names one registered test with `--exact`, lists nothing, and runs
/// that test (it is not an ignored one left out).
fn one_test_process() -> bool {
    use std::os::unix::ffi::OsStrExt;
    // std has the arguments by now where the C library hands them to constructors (glibc; std's
    // own runs before this one); else the kernel's copy, read from /proc.
    let from_std: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cmdline;
    let args: Vec<&[u8]> = if from_std.is_empty() {
        let Ok(read) = std::fs::read("/proc/self/cmdline") else {
            return false;
        };
        cmdline = read;
        cmdline.split(|b| *b == 0).skip(1).collect()
    } else {
        from_std.iter().skip(1).map(|a| a.as_bytes()).collect()
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(netns: Option<RawFd>, sync: Option<(RawFd, RawFd)>) -> ChildPlan {
        ChildPlan {
            fds: vec![(7, 0), (8, 3)],
            life: (9, 10),
            report_fd: 3,
            writes: Vec::new(),
            sync,
            netns,
            cgroup_ns: Some(Vec::new()),
        }
    }

    #[test]
    fn a_process_forked_before_main_holds_none_of_the_harness_fds_below_its_own() {
        let links = Links::open().unwrap();
        let (null, life, theirs) = (
            links.null.as_raw_fd(),
            links.life.0.as_raw_fd(),
            links.theirs.as_raw_fd(),
        );
        let server = links.plan(SOCKET_FD).fds;
        let want = [
            (null, 0),
            (null, 1),
            (null, 2),
            (theirs, SOCKET_FD),
            (life, LIFE_FD),
        ];
        assert_eq!(server, want);
        let ahead = links.plan(AHEAD_FD).fds;
        assert_eq!(
            ahead,
            [
                (null, 0),
                (null, 1),
                (null, 2),
                (null, 3),
                (life, 4),
                (theirs, 5)
            ]
        );
    }

    #[test]
    fn a_container_cloned_ahead_takes_the_request_it_is_ready_for() {
        let all = super::super::spawn::NAMESPACES;
        // Not set up yet: any request cloned with every namespace, held or not.
        assert!(fits(all, &plan(None, None), None, "ab"));
        assert!(fits(all, &plan(None, Some((11, 12))), None, "ab"));
        // Set up for a spec: that spec only, and nothing to hold it for before its set-up.
        assert!(fits(all, &plan(None, None), Some("ab"), "ab"));
        assert!(!fits(all, &plan(None, None), Some("ab"), "ac"));
        assert!(!fits(all, &plan(None, Some((11, 12))), Some("ab"), "ab"));
        // Its namespaces are made: none other, none entered.
        let host_net = all - CloneFlags::CLONE_NEWNET;
        assert!(!fits(host_net, &plan(None, None), None, "ab"));
        assert!(!fits(
            all | CloneFlags::CLONE_NEWUSER,
            &plan(None, None),
            None,
            "ab"
        ));
        assert!(!fits(all, &plan(Some(13), None), None, "ab"));
    }
}
