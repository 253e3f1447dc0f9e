//! Starting a container: a `clone(2)` into new namespaces with its stdio, the report pipe and the
//! [`ChildSpec`] in place. The fork server makes the clone (`super::forkserver`); without it, the
//! harness clones and the child re-executes this binary from `/proc/self/exe`. Either way the
//! binary was executed from the host path, before any root change, so a glibc-linked test
//! binary runs over a musl rootfs.
//!
//! Everything that does not change between containers (`/dev/null`, the parent-liveness pipe;
//! the environment and argv for a binary started again) is prepared once per process, and only
//! when first needed: a container cloned before `main` needs no environment of the harness's.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sched::CloneFlags;
use once_cell::sync::Lazy;

use super::forkserver::Answer;
use crate::error::Error;
use crate::protocol::{ChildSpec, Message, RunSpec, Step};
use crate::reexec::{CONTAINER_ENV, HOLD_FD, REPORT_FD};
use crate::sys::{self, ChildPlan, Cloned, ExecPlan, SysError};

/// The namespaces every container gets.
pub(crate) const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWUTS
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWNS)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWNET);

/// Where the child's stdout or stderr goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Out {
    Inherit,
    Null,
    Pipe,
    /// stderr only: the same pipe as stdout (libtest-style combined capture).
    SameAsStdout,
}

/// The child's stdio.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StdioSetup {
    pub stdin_null: bool,
    pub stdout: Out,
    pub stderr: Out,
}

/// A started container.
#[derive(Debug)]
pub(crate) struct Running {
    pub cloned: Cloned,
    /// Held back, before its set-up, until [`Running::release`] (spawned with `hold`, or by the
    /// fork server).
    pub hold: Option<OwnedFd>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    pub report: File,
}

struct Once {
    null: OwnedFd,
    /// Read end handed to every child; the write end stays here. A child that finds it closed
    /// knows its parent died before `PR_SET_PDEATHSIG` was in force.
    life: (OwnedFd, OwnedFd),
    cgroup_ns_frame: Vec<u8>,
}

static ONCE: Lazy<Result<Once, SysError>> = Lazy::new(|| {
    Ok(Once {
        null: sys::open_dev_null()?,
        life: sys::pipe()?,
        cgroup_ns_frame: frame_prefix(Step::CgroupNamespace, "unshare(CLONE_NEWCGROUP)".into()),
    })
});

/// What a process that starts this binary again needs (a re-executed container, the fork
/// server): worked out on first use, as a container cloned before `main` needs none of it.
struct Exec {
    env: Vec<CString>,
    argv0: CString,
    exec_failed_frame: Vec<u8>,
}

static EXEC: Lazy<Exec> = Lazy::new(|| Exec {
    env: std::env::vars_os()
        .filter(|(k, _)| k != CONTAINER_ENV)
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect(),
    argv0: std::env::args_os()
        .next()
        .and_then(|a| CString::new(a.as_bytes()).ok())
        .unwrap_or_else(|| c"nstest".into()),
    exec_failed_frame: frame_prefix(Step::Exec, "execve(\"/proc/self/exe\")".into()),
});

/// A write the child makes before anything else: `(path, content, the frame that reports its
/// failure, less the errno)`.
type Write = (CString, Vec<u8>, Vec<u8>);

/// The writes that map the caller's own ids in a new user namespace, worked out on first use.
static USERNS_WRITES: Lazy<Vec<Write>> = Lazy::new(userns_writes);

/// Starts the container child for `spec` (a clone of the fork server, or a clone that
/// re-executes this binary with `args`). With `hold`, the child waits before its set-up until
/// [`Running::release`] (so the parent can move it into its cgroups first).
pub(crate) fn spawn(
    spec: &mut ChildSpec,
    args: &[String],
    stdio: StdioSetup,
    hold: bool,
) -> Result<Running, Error> {
    let once = ONCE.as_ref().map_err(|e| Error::Host(e.clone()))?;
    super::reap::ended();
    let host = |e: SysError| Error::Host(e);
    let (report_r, report_w) = sys::pipe().map_err(host)?;
    let (out_r, out_w) = pipe_if(stdio.stdout == Out::Pipe)?;
    let (err_r, err_w) = pipe_if(stdio.stderr == Out::Pipe)?;

    let null = once.null.as_raw_fd();
    let mut fds: Vec<(RawFd, RawFd)> = Vec::with_capacity(4);
    if stdio.stdin_null {
        fds.push((null, 0));
    }
    let fd_of = |o: Out, pipe: &Option<OwnedFd>| match o {
        Out::Inherit | Out::SameAsStdout => None,
        Out::Null => Some(null),
        Out::Pipe => pipe.as_ref().map(|p| p.as_raw_fd()),
    };
    if let Some(fd) = fd_of(stdio.stdout, &out_w) {
        fds.push((fd, 1));
    }
    match stdio.stderr {
        Out::SameAsStdout => fds.push((fd_of(stdio.stdout, &out_w).unwrap_or(1), 2)),
        o => fds.extend(fd_of(o, &err_w).map(|fd| (fd, 2))),
    }
    fds.push((report_w.as_raw_fd(), REPORT_FD));

    let mut flags = NAMESPACES;
    // What pays off over many containers (the network-namespace pool, the fork server) starts
    // at a process's second one: a process that starts one (nextest runs each test in a process
    // of its own) would only pay for it. The probe neither starts them nor counts.
    static STARTED_ONE: AtomicBool = AtomicBool::new(false);
    let first = matches!(spec.run, RunSpec::Probe) || !STARTED_ONE.swap(true, Ordering::Relaxed);
    // A ready-made network namespace (root only: in a user namespace the container makes its own).
    // Not for a container on a `Network`: its `eth0` is made in the namespace of its pid, which
    // must be the one it was cloned with (a clone enters a ready-made one on its own time).
    let on_network = spec.interface.is_some();
    let netns = if spec.host_net || spec.userns || first || on_network {
        None
    } else {
        super::netns::take()
    };
    if spec.host_net || netns.is_some() {
        flags.remove(CloneFlags::CLONE_NEWNET);
    }
    let writes = if spec.userns {
        flags.insert(CloneFlags::CLONE_NEWUSER);
        match crate::idmap::ranges() {
            // Subordinate ranges: newuidmap/newgidmap write the maps while the child is held.
            Some(_) => Vec::new(),
            None => USERNS_WRITES.clone(),
        }
    } else {
        Vec::new()
    };
    // In a process that runs one test, its container may have been cloned before `main`
    // (`prefork`); else a server forked then serves the first one too.
    let ahead = first && spec_is_test(spec) && super::prefork::ahead_waiting();
    let server =
        if ahead || on_network || first && !(super::prefork::preforked() && spec_is_test(spec)) {
            None
        } else {
            super::forkserver::get(|| super::forkserver::Start {
                env: &EXEC.env,
                argv0: &EXEC.argv0,
                life: &once.life,
            })
        };
    // Cloned by the server or ahead: the container does not start as a clone of this process.
    let elsewhere = ahead || server.is_some();
    if elsewhere {
        // A clone of the server has the server's stdio (`/dev/null`), not this process's: what
        // the container inherits is handed over explicitly (`--nocapture` output, a terminal).
        if !stdio.stdin_null {
            fds.push((0, 0));
        }
        if matches!(stdio.stdout, Out::Inherit) {
            fds.push((1, 1));
        }
        if matches!(stdio.stderr, Out::Inherit) {
            fds.push((2, 2));
        }
    }
    // A child of the fork server is always held: should the server die before it answers,
    // the child sees the hold pipe closed and ends without running anything. Held for that
    // alone, it sets up first and waits only before it runs anything: its set-up overlaps the
    // answer's way back here.
    let (hold_r, hold_w) = pipe_if(hold || elsewhere)?;
    spec.held_before_run = held_before_run(elsewhere, hold, spec);
    if let (true, Some(r)) = (spec.held_before_run, &hold_r) {
        fds.push((r.as_raw_fd(), HOLD_FD));
    }
    let child = ChildPlan {
        fds,
        life: (once.life.0.as_raw_fd(), once.life.1.as_raw_fd()),
        report_fd: REPORT_FD,
        writes,
        netns: netns.as_ref().map(|f| f.as_raw_fd()),
        sync: hold_r
            .as_ref()
            .zip(hold_w.as_ref())
            .filter(|_| !spec.held_before_run)
            .map(|(r, w)| (r.as_raw_fd(), w.as_raw_fd())),
        cgroup_ns: Some(once.cgroup_ns_frame.clone()),
    };
    let spec_hex = spec.encode();
    let answer = if ahead {
        // One that does not fit is ended: the container is cloned and re-executed from here.
        super::prefork::send_ahead(flags, &child, &spec_hex).map_or(Answer::NotSent, Answer::Cloned)
    } else {
        server.map_or(Answer::NotSent, |s| {
            s.clone_container(flags, &child, &spec_hex)
        })
    };
    let cloned = match answer {
        Answer::Cloned(cloned) => cloned,
        Answer::Refused(e) => return Err(e),
        // The server is stopped now. A clone it may have made is held on this attempt's pipes,
        // and ends unreleased once they close, before the new attempt starts: start over
        // without it.
        Answer::Lost => {
            drop((
                report_r, report_w, out_r, out_w, err_r, err_w, hold_r, hold_w,
            ));
            return spawn(spec, args, stdio, hold);
        }
        // No fork server (off, or it failed): clone and re-execute from here.
        Answer::NotSent => {
            let mut envp = EXEC.env.clone();
            envp.push(CString::new(format!("{CONTAINER_ENV}={spec_hex}")).expect("hex has no NUL"));
            let plan = ExecPlan {
                exe: c"/proc/self/exe".into(),
                argv: std::iter::once(Ok(EXEC.argv0.clone()))
                    .chain(args.iter().map(|a| CString::new(a.as_str())))
                    .collect::<Result<_, _>>()
                    .map_err(|_| {
                        Error::Host(SysError::new(
                            "argv with a NUL byte",
                            nix::errno::Errno::EINVAL,
                        ))
                    })?,
                envp,
                exec_failed_frame: EXEC.exec_failed_frame.clone(),
                child,
            };
            sys::clone_exec(flags, &plan).map_err(Error::Namespaces)?
        }
    };
    drop((report_w, out_w, err_w, hold_r));
    Ok(Running {
        hold: hold_w,
        cloned,
        stdout: out_r.map(File::from),
        stderr: err_r.map(File::from),
        report: File::from(report_r),
    })
}

/// Whether a container waits only before it runs anything (`ChildSpec::held_before_run`): one
/// cloned by the server or ahead (`elsewhere`) that nothing holds back before its set-up
/// (`hold`), and whose writable layer is not on disk (a clone never answered for must not set
/// up over the layer the next attempt uses).
pub(crate) fn held_before_run(elsewhere: bool, hold: bool, spec: &ChildSpec) -> bool {
    elsewhere && !hold && spec.keep_upper.is_none()
}

fn spec_is_test(spec: &ChildSpec) -> bool {
    matches!(spec.run, RunSpec::Test(_))
}

impl Running {
    /// Lets a child spawned with `hold` go on. A child that has ended already (one held before
    /// it runs sets up first, and may have failed there: `EPIPE`) is left to the supervision,
    /// which reads its report and reaps it.
    pub(crate) fn release(&mut self) -> Result<(), Error> {
        if let Some(w) = self.hold.take() {
            match nix::unistd::write(&w, &[1]) {
                Ok(_) | Err(nix::errno::Errno::EPIPE) => {}
                Err(e) => return Err(Error::Host(SysError::new("write(hold pipe)", e))),
            }
        }
        Ok(())
    }
}

/// A frame reporting `step` failed with `detail`, less the trailing errno the child appends.
fn frame_prefix(step: Step, detail: String) -> Vec<u8> {
    let mut f = Message::SetupFailed {
        step,
        detail,
        errno: 0,
    }
    .encode();
    f.truncate(f.len() - 4);
    f
}

/// The writes that make the caller root inside a new user namespace: one id mapped, the
/// caller's own, which needs no setuid helper.
fn userns_writes() -> Vec<Write> {
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    [
        ("/proc/self/setgroups", "deny".to_string()),
        ("/proc/self/uid_map", format!("0 {uid} 1\n")),
        ("/proc/self/gid_map", format!("0 {gid} 1\n")),
    ]
    .into_iter()
    .map(|(path, content)| {
        let detail = format!("write({path:?}, {:?})", content.trim());
        (
            CString::new(path).unwrap(),
            content.into_bytes(),
            frame_prefix(Step::UserNamespace, detail),
        )
    })
    .collect()
}

fn pipe_if(wanted: bool) -> Result<(Option<OwnedFd>, Option<OwnedFd>), Error> {
    if !wanted {
        return Ok((None, None));
    }
    let (r, w) = sys::pipe().map_err(Error::Host)?;
    Ok((Some(r), Some(w)))
}
