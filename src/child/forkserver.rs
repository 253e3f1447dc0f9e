//! The fork server's side (see `parent::forkserver`): a re-executed copy of the test binary that,
//! before `main` and with one thread, clones one container per request and sends back its pid and
//! pidfd. Each clone prepares itself exactly as a re-executed container child would (the same
//! [`ChildPlan`] steps), then takes the spec and runs the container side without an `execve`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sched::CloneFlags;

use crate::protocol::{ForkRequest, MAX_FORK_REQUEST};
use crate::reexec::{LIFE_FD, REPORT_FD, SOCKET_FD};
use crate::sys::{self, ChildPlan};

/// The fork server: serves requests until the harness goes. Never returns. `spare_netns`: a
/// re-executed server's, which makes a network namespace ahead for its first request (not one
/// forked before `main`).
pub(crate) fn serve(spare_netns: bool) -> ! {
    // In ps, instead of `exe`.
    let _ = sys::set_name(b"nstest-forksrv");
    // A server forked before `main` (`parent::prefork`) is so before Rust's runtime ignored
    // SIGPIPE in the harness; a re-executed one inherits it ignored. Its clones keep it.
    sys::ignore_sigpipe();
    let Some(sock) = sys::inherited_fd(SOCKET_FD) else {
        sys::exit_now(1)
    };
    // With a second thread, a fork-like clone could copy a lock held by a thread it lacks; without
    // glibc's thread id slot, clones would keep the server's id: say nothing, and the harness
    // clones by itself.
    let Some(one_thread) = sys::single_threaded() else {
        sys::exit_now(1)
    };
    // A network namespace made now, before the first request (the harness is still starting
    // up): the first container without `net = "host"` enters it instead of making its own. Not
    // in rootless mode, where every container makes its own in its user namespace, nor in a
    // server forked before `main` (`parent::prefork`), which serves a test in rootless mode or
    // with `net = "host"`.
    let wanted = spare_netns && !crate::settings::rootless();
    let mut spare = if wanted { sys::spare_netns() } else { None };
    let ready = sys::send_with_fds(sock.as_fd(), b"ready", &[]);
    if ready.is_err() {
        sys::exit_now(1)
    }
    loop {
        let (buf, fds) = match sys::recv_message(sock.as_fd(), MAX_FORK_REQUEST) {
            Ok((buf, _)) if buf.is_empty() => sys::exit_now(0), // the harness is gone
            Ok(got) => got,
            // Truncated: answered as a request that makes no sense.
            Err(e) if e.errno == nix::errno::Errno::EMSGSIZE => (Vec::new(), Vec::new()),
            Err(_) => sys::exit_now(0),
        };
        let answer = match ForkRequest::decode(&buf) {
            Ok(req) if req.fd_count() == fds.len() => {
                clone_for(&one_thread, &req, &fds, &mut spare)
            }
            _ => Err(0),
        };
        drop(fds);
        let sent = match answer {
            Ok((pid, pidfd)) => {
                sys::send_with_fds(sock.as_fd(), &pid.to_le_bytes(), &[pidfd.as_raw_fd()])
            }
            Err(code) => sys::send_with_fds(sock.as_fd(), &code.to_le_bytes(), &[]),
        };
        if sent.is_err() {
            sys::exit_now(0);
        }
    }
}

/// A container for the request, cloned now; in the clone, runs it.
fn clone_for(
    one_thread: &sys::SingleThreaded,
    req: &ForkRequest,
    fds: &[OwnedFd],
    spare: &mut Option<OwnedFd>,
) -> Result<(i32, OwnedFd), i32> {
    let mut flags = CloneFlags::from_bits_retain(req.flags);
    let mut plan = plan(req, fds);
    // Not for a user namespace's container: its network namespace must be its own.
    let own_netns = flags.contains(CloneFlags::CLONE_NEWNET)
        && !flags.contains(CloneFlags::CLONE_NEWUSER)
        && plan.netns.is_none();
    let spare = if own_netns { spare.take() } else { None };
    if let Some(fd) = &spare {
        plan.netns = Some(fd.as_raw_fd());
        flags.remove(CloneFlags::CLONE_NEWNET);
    }
    // The clone closes the socket first, so that the harness sees a server that died, even
    // while the clone waits to be released.
    match sys::fork_container(one_thread, flags, &plan, &[SOCKET_FD]) {
        Ok(None) => run_container(req.spec.clone()),
        Ok(Some(cloned)) => Ok((cloned.pid.as_raw(), cloned.pidfd)),
        Err(e) => Err(-(e.errno as i32)),
    }
}

/// The [`ChildPlan`] of a request, over the fds that came with it.
pub(super) fn plan(req: &ForkRequest, fds: &[OwnedFd]) -> ChildPlan {
    let mut rest = fds.iter().map(AsRawFd::as_raw_fd);
    let mapped = req
        .fd_dsts
        .iter()
        .map(|&dst| (rest.next().unwrap_or(-1), dst));
    let fds = mapped.collect();
    let netns = if req.netns { rest.next() } else { None };
    let sync = if req.sync {
        rest.next().map(|r| (r, -1))
    } else {
        None
    };
    ChildPlan {
        fds,
        life: (LIFE_FD, -1),
        report_fd: REPORT_FD,
        writes: req
            .writes
            .iter()
            .map(|(p, c, f)| {
                let path = std::ffi::CString::new(p.clone()).unwrap_or_default();
                (path, c.clone(), f.clone())
            })
            .collect(),
        sync,
        netns,
        cgroup_ns: req.cgroup_ns.clone(),
    }
}

/// In the clone, prepared: the container side, as a re-executed child runs it.
pub(super) fn run_container(spec: String) -> ! {
    super::enter(std::ffi::OsStr::new(&spec))
}
