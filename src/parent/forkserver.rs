//! The fork server: one re-executed copy of this binary per run, which clones every container
//! from itself. A container then starts without an `execve` of its own: the test binary's
//! loading, relocation and start-up are paid once per run instead of once per test. What the
//! container does after the clone is the same as after a re-execution (see `child::forkserver`).
//!
//! The server is started on first use from a thread that lives as long as the process, so that
//! the parent-death signal of the server (and of the containers, which are cloned with
//! `CLONE_PARENT` and so are this process's children) fires only when the harness ends. If the
//! server cannot be started, or stops answering, the containers are cloned and re-executed from
//! the harness as before. It is on by default, from a process's second container (see
//! `spawn`); `NSTEST_FORK_SERVER=off` turns it off.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use nix::sched::CloneFlags;
use once_cell::sync::OnceCell;

use crate::error::Error;
use crate::protocol::{ForkRequest, MAX_FORK_REQUEST as MAX_REQUEST};
use crate::reexec::{FORK_SERVER_ENV, LIFE_FD, SOCKET_FD};
use crate::sys::{self, ChildPlan, Cloned, ExecPlan, SysError};

/// How long the harness waits for the server to take a request or answer it. A clone takes
/// well under a millisecond; a server that is stopped (`SIGSTOP`, a debugger) or stuck delays the
/// request it holds by this much; that container is then started again without it.
pub(super) const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What starting the server needs from the spawner's once-per-process set-up.
pub(crate) struct Start<'a> {
    pub env: &'a [CString],
    pub argv0: &'a CString,
    pub life: &'a (OwnedFd, OwnedFd),
}

/// What became of a request to the server.
pub(crate) enum Answer {
    /// The request was not sent (the server is off, failed before, or cannot take it): the
    /// caller clones by itself, with the same plan.
    NotSent,
    /// The server cloned the container.
    Cloned(Cloned),
    /// The server's clone failed as a clone by the harness would have (`Error::Namespaces`).
    Refused(Error),
    /// The server took the request and gave no usable answer; it is stopped now. A clone it may
    /// have made is held on this plan's pipes and ends without running anything once they
    /// close: the caller starts over with fresh ones.
    Lost,
}

/// A running fork server.
#[derive(Debug)]
pub(crate) struct Server {
    /// Our end of its socket; `None` once it failed (the harness clones by itself from then on).
    sock: Mutex<Option<(OwnedFd, Cloned)>>,
    /// Whether it has said it is ready (a server forked before `main` says so when first asked).
    ready: AtomicBool,
    /// The write end of its liveness pipe, for a server forked before `main` (the one of a
    /// re-executed server is the spawner's).
    _life: Option<OwnedFd>,
    /// Set when it failed, read without the lock (`get`, once per container).
    failed: AtomicBool,
    /// The process that started it: a process forked from that one has its own children, and
    /// clones by itself.
    owner: nix::unistd::Pid,
}

static SERVER: OnceCell<Option<Server>> = OnceCell::new();

/// The fork server, started on first use; `None` if it is off, could not start, has failed, or
/// belongs to the process this one was forked from (which has its own children).
pub(crate) fn get<'a>(start: impl FnOnce() -> Start<'a>) -> Option<&'static Server> {
    SERVER
        .get_or_init(|| {
            // Off with `NSTEST_FORK_SERVER=off`, and without glibc: its clones need the C
            // library's cached thread id rewritten, which nstest knows how to do for glibc only.
            if !crate::settings::fork_server() || !cfg!(target_env = "gnu") {
                return None;
            }
            let start = start();
            let (env, argv0) = (start.env.to_vec(), start.argv0.clone());
            let life = (start.life.0.as_raw_fd(), start.life.1.as_raw_fd());
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("nstest-forksrv".into())
                .spawn(move || {
                    let _ = tx.send(launch(env, argv0, life));
                    // The server's parent thread: it must outlive every container.
                    loop {
                        std::thread::park();
                    }
                })
                .ok()?;
            let (sock, cloned) = rx.recv().ok()??;
            Some(Server {
                sock: Mutex::new(Some((sock, cloned))),
                ready: AtomicBool::new(true),
                _life: None,
                failed: AtomicBool::new(false),
                owner: nix::unistd::getpid(),
            })
        })
        .as_ref()
        .filter(|s| s.owner == nix::unistd::getpid() && !s.failed.load(Ordering::Relaxed))
}

/// Adopts a server forked before `main` (`super::prefork`): the harness's end of its socket,
/// the server, and the write end of its liveness pipe. It says it is ready when first asked.
/// Whether it was taken (no server was there yet).
pub(super) fn adopt(sock: OwnedFd, cloned: Cloned, life: OwnedFd) -> bool {
    SERVER
        .set(Some(Server {
            sock: Mutex::new(Some((sock, cloned))),
            ready: AtomicBool::new(false),
            _life: Some(life),
            failed: AtomicBool::new(false),
            owner: nix::unistd::getpid(),
        }))
        .is_ok()
}

/// Clones and re-executes this binary as the server, and waits until it says it is ready.
fn launch(env: Vec<CString>, argv0: CString, life: (RawFd, RawFd)) -> Option<(OwnedFd, Cloned)> {
    let (mine, theirs) = sys::seqpacket_pair().ok()?;
    sys::set_socket_timeouts(mine.as_fd(), ANSWER_TIMEOUT).ok()?;
    let mut envp = env;
    envp.push(CString::new(format!("{FORK_SERVER_ENV}=1")).ok()?);
    let plan = ExecPlan {
        exe: c"/proc/self/exe".into(),
        argv: vec![argv0],
        envp,
        // Its failure reaches the socket, where it is no answer: the harness then clones alone.
        exec_failed_frame: Vec::new(),
        child: ChildPlan {
            fds: vec![(theirs.as_raw_fd(), SOCKET_FD), (life.0, LIFE_FD)],
            life,
            report_fd: SOCKET_FD,
            writes: Vec::new(),
            sync: None,
            netns: None,
            cgroup_ns: None,
        },
    };
    let cloned = sys::clone_exec(CloneFlags::empty(), &plan).ok()?;
    drop(theirs);
    let mut buf = [0u8; 8];
    match sys::recv_with_fds(mine.as_fd(), &mut buf) {
        Ok((5, _)) if &buf[..5] == b"ready" => Some((mine, cloned)),
        _ => {
            cloned.kill_and_reap();
            None
        }
    }
}

impl Server {
    /// Has the server clone a container. Once it fails (killed, stopped, stuck), it is stopped,
    /// the run is told once, and every container from then on is cloned by the harness.
    pub(crate) fn clone_container(
        &self,
        flags: CloneFlags,
        plan: &ChildPlan,
        spec: &str,
    ) -> Answer {
        let mut guard = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        // Failed since `get` (another thread's container): clone by ourselves.
        let Some((sock, _)) = guard.as_ref() else {
            return Answer::NotSent;
        };
        if !self.ready.load(Ordering::Relaxed) {
            // A server forked before `main` says it is ready when first asked.
            let mut buf = [0u8; 8];
            match sys::recv_with_fds(sock.as_fd(), &mut buf) {
                Ok((5, _)) if &buf[..5] == b"ready" => self.ready.store(true, Ordering::Relaxed),
                Ok(_) => {
                    let why = SysError::new("its first word", nix::errno::Errno::EBADMSG);
                    self.stop(&mut guard, &why);
                    return Answer::NotSent;
                }
                Err(e) => {
                    self.stop(&mut guard, &e);
                    return Answer::NotSent;
                }
            }
        }
        let Some((req, fds)) = request(flags, plan, spec) else {
            return Answer::NotSent; // a huge spec: the environment takes up to 128 KiB
        };
        if let Err(e) = sys::send_with_fds(sock.as_fd(), &req, &fds) {
            self.stop(&mut guard, &e);
            return Answer::NotSent;
        }
        let mut buf = [0u8; 8];
        let answer = match sys::recv_with_fds(sock.as_fd(), &mut buf) {
            Ok((4, mut got)) => {
                let v = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                match (v, got.pop()) {
                    (pid, Some(pidfd)) if pid > 0 && got.is_empty() => {
                        return Answer::Cloned(Cloned {
                            pid: nix::unistd::Pid::from_raw(pid),
                            pidfd,
                        })
                    }
                    (e, None) if e < 0 => {
                        let errno = nix::errno::Errno::from_raw(-e);
                        return Answer::Refused(Error::Namespaces(SysError::new(
                            sys::clone_call(flags),
                            errno,
                        )));
                    }
                    (pid, _) => {
                        if pid > 0 {
                            // Cloned, but its pidfd was lost: it is our held child; end it.
                            let pid = nix::unistd::Pid::from_raw(pid);
                            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
                            let _ = sys::wait_raw(pid);
                        }
                        SysError::new("its answer", nix::errno::Errno::EBADMSG)
                    }
                }
            }
            Ok(_) => SysError::new("its answer", nix::errno::Errno::EPIPE),
            Err(e) if e.errno == nix::errno::Errno::EAGAIN => SysError::new(
                format!("its answer (none within {ANSWER_TIMEOUT:?})"),
                nix::errno::Errno::ETIMEDOUT,
            ),
            Err(e) => SysError::new(format!("its answer ({})", e.call), e.errno),
        };
        self.stop(&mut guard, &answer);
        Answer::Lost
    }

    /// Stops using a server that failed, makes sure it is gone, and says so once.
    fn stop(&self, guard: &mut Option<(OwnedFd, Cloned)>, why: &SysError) {
        self.failed.store(true, Ordering::Relaxed);
        if let Some((_, server)) = guard.take() {
            server.kill_and_reap();
            super::note_once(&format!(
                "the fork server failed ({why}); containers are cloned and re-executed by the harness from now on"
            ));
        }
    }
}

/// The request for a container cloned with `flags` and `plan` for `spec`, and the fds to send
/// with it; `None` if it is too big to send.
pub(super) fn request(
    flags: CloneFlags,
    plan: &ChildPlan,
    spec: &str,
) -> Option<(Vec<u8>, Vec<RawFd>)> {
    let mut fds: Vec<RawFd> = plan.fds.iter().map(|&(src, _)| src).collect();
    fds.extend(plan.netns);
    fds.extend(plan.sync.map(|(r, _)| r));
    let req = ForkRequest {
        flags: flags.bits(),
        fd_dsts: plan.fds.iter().map(|&(_, dst)| dst).collect(),
        netns: plan.netns.is_some(),
        sync: plan.sync.is_some(),
        writes: plan
            .writes
            .iter()
            .map(|(p, c, f)| (p.as_bytes().to_vec(), c.clone(), f.clone()))
            .collect(),
        cgroup_ns: plan.cgroup_ns.clone(),
        spec: spec.to_string(),
    }
    .encode();
    (req.len() <= MAX_REQUEST).then_some((req, fds))
}
