//! The fork server's side (see `parent::forkserver`): a re-executed copy of the test binary that,
//! before `main` and with one thread, clones one container per request and sends back its pid and
//! pidfd. Each clone prepares itself exactly as a re-executed container child would (the same
//! [`ChildPlan`] steps), then takes the spec and runs the container side without an `execve`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sched::CloneFlags;

use crate::protocol::{ForkRequest, MAX_FORK_REQUEST};
use crate::reexec::{AHEAD_FD, LIFE_FD, REPORT_FD, SOCKET_FD};
use crate::sys::{self, ChildPlan};

/// The fork server: serves requests until the harness goes. Never returns.
pub(crate) fn serve() -> ! {
    let _ = sys::set_name(b"nstest-forksrv"); // in ps, instead of `exe`
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
    // up): the first container without `net = "host"` enters it instead of making its own.
    let mut spare = sys::spare_netns();
    // And, in a process that runs one test, that test's container, cloned now too; the
    // harness hears of it with the word that the server is ready.
    let ready = match clone_ahead(&one_thread, &mut spare) {
        Some(ahead) => {
            let mut word = b"ready".to_vec();
            word.extend_from_slice(&ahead.pid.as_raw().to_le_bytes());
            sys::send_with_fds(sock.as_fd(), &word, &[ahead.pidfd.as_raw_fd()])
        }
        None => sys::send_with_fds(sock.as_fd(), b"ready", &[]),
    };
    if ready.is_err() {
        sys::exit_now(1)
    }
    let mut buf = vec![0u8; MAX_FORK_REQUEST];
    loop {
        let (n, fds) = match sys::recv_with_fds(sock.as_fd(), &mut buf) {
            Ok((0, _)) => sys::exit_now(0), // the harness is gone
            Ok(got) => got,
            // Truncated: answered as a request that makes no sense.
            Err(e) if e.errno == nix::errno::Errno::EMSGSIZE => (0, Vec::new()),
            Err(_) => sys::exit_now(0),
        };
        let answer = match ForkRequest::decode(&buf[..n]) {
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

/// In a process that runs one test (the server was forked before `main`, and knows the test):
/// its container, cloned now, while the harness is still starting up, instead of when the
/// request comes; it waits for its request on `AHEAD_FD`, from the harness directly. Only where
/// the request is known: as root (rootless containers differ in their user namespace and maps)
/// and with a network namespace of its own (the spare one, entered at the clone). The server
/// keeps no end of that socket: should the harness close its own, the container ends.
fn clone_ahead(
    one_thread: &sys::SingleThreaded,
    spare: &mut Option<OwnedFd>,
) -> Option<sys::Cloned> {
    let direct = sys::inherited_fd(AHEAD_FD)?;
    let test = crate::parent::prefork::the_test()?;
    if test.net == crate::spec::Net::Host || crate::parent::rootless() {
        return None;
    }
    let netns = spare.take()?;
    let plan = ChildPlan {
        fds: vec![(direct.as_raw_fd(), AHEAD_FD)],
        life: (LIFE_FD, -1),
        report_fd: REPORT_FD,
        writes: Vec::new(),
        sync: None,
        netns: Some(netns.as_raw_fd()),
        cgroup_ns: None,
    };
    let flags = crate::parent::spawn::NAMESPACES - CloneFlags::CLONE_NEWNET;
    match sys::fork_container(one_thread, flags, &plan, &[SOCKET_FD]) {
        Ok(None) => await_request(),
        Ok(Some(cloned)) => Some(cloned),
        Err(_) => {
            *spare = Some(netns);
            None
        }
    }
}

/// In a container cloned ahead: takes the request the harness sends, finishes preparing as a
/// clone made for it would have, and runs it. Ends if the harness goes without one.
fn await_request() -> ! {
    let Some(channel) = sys::inherited_fd(AHEAD_FD) else {
        sys::exit_now(1)
    };
    let mut buf = vec![0u8; MAX_FORK_REQUEST];
    let (n, fds) = match sys::recv_with_fds(channel.as_fd(), &mut buf) {
        Ok((n, fds)) if n > 0 => (n, fds),
        _ => sys::exit_now(0),
    };
    let req = match ForkRequest::decode(&buf[..n]) {
        Ok(req) if req.fd_count() == fds.len() => req,
        _ => sys::exit_now(1),
    };
    // The network namespace was entered at the clone.
    let plan = plan(&req, &fds);
    // The preparation closes every fd but the container's own, these among them.
    std::mem::forget((channel, fds));
    sys::prepare_ahead(&plan);
    run_container(req.spec)
}

/// The [`ChildPlan`] of a request, over the fds that came with it.
fn plan(req: &ForkRequest, fds: &[OwnedFd]) -> ChildPlan {
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
fn run_container(spec: String) -> ! {
    super::enter(std::ffi::OsStr::new(&spec))
}
