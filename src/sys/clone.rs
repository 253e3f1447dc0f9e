//! Making the container's process: `clone(2)` with the namespaces, either re-executing this
//! binary (`clone_exec`) or, in the single-threaded fork server, going on without an exec
//! (`fork_container`, in `fork.rs`); the steps a fresh clone child takes before anything else, in raw,
//! async-signal-safe calls; joining a container's namespaces.

use std::ffi::CString;
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

use super::fork::fork_like_clone;
use super::{pidfd_kill, unignore, wait_raw, Result, SysError};

/// Everything the clone child needs to re-execute itself, prepared in the parent so that the
/// child allocates nothing.
#[derive(Debug)]
pub struct ExecPlan {
    /// The binary to execute (`/proc/self/exe`).
    pub exe: CString,
    /// Its argv.
    pub argv: Vec<CString>,
    /// Its whole environment.
    pub envp: Vec<CString>,
    /// The frame (without its errno) written on the report fd if `execve` fails.
    pub exec_failed_frame: Vec<u8>,
    /// What the child does before `execve`.
    pub child: ChildPlan,
}

/// What a clone child does first, in this order: parent-death signal, liveness check, `setns`,
/// the wait, fds into place, `unshare(CLONE_NEWCGROUP)`, the writes.
#[derive(Debug)]
pub struct ChildPlan {
    /// `(src, dst)`: fds moved into place (at most 8).
    pub fds: Vec<(RawFd, RawFd)>,
    /// The parent-liveness pipe `(read, write)`: the child closes its copy of the write end and
    /// exits if the read end reports the parent gone.
    pub life: (RawFd, RawFd),
    /// The report fd number in the child (after `fds` are in place).
    pub report_fd: RawFd,
    /// Files written last, in order: `(path, content, failure frame without errno)` (the user
    /// namespace's `setgroups`, `uid_map`, `gid_map`).
    pub writes: Vec<(CString, Vec<u8>, Vec<u8>)>,
    /// `(read, write)` of a pipe the child waits on before it goes on (the parent first moves it
    /// into its cgroups); the child exits if the parent closes it without a byte.
    pub sync: Option<(RawFd, RawFd)>,
    /// A network namespace to enter (`setns`) instead of making one (see `parent::netns`).
    pub netns: Option<RawFd>,
    /// `unshare(CLONE_NEWCGROUP)` after the wait, so the test sees its own cgroup as the root;
    /// with the frame (without errno) to report a failure.
    pub cgroup_ns: Option<Vec<u8>>,
}

/// A freshly cloned child: its pid (in the caller's namespace) and a pidfd for it.
#[derive(Debug)]
pub struct Cloned {
    /// The child's pid as the parent sees it.
    pub pid: Pid,
    /// A pidfd: readable once the child has exited; signals go through it without pid reuse races.
    pub pidfd: OwnedFd,
}

/// `clone(2)` with `flags` (namespaces) plus `CLONE_PIDFD`, then, in the child: parent-death signal
/// SIGKILL, a check that the parent is still alive, the fds moved into place, every other fd
/// marked close-on-exec, the files of `plan.writes` written, and `execve`. A failure after the
/// fds are in place is reported as a frame on the report fd (the prepared prefix, then the errno
/// as 4 LE bytes), and the child exits (125 for a write, 127 for `execve`).
pub fn clone_exec(flags: CloneFlags, plan: &ExecPlan) -> Result<Cloned> {
    assert!(plan.child.fds.len() <= 8, "at most 8 fds are mapped");
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let mut pidfd: libc::c_int = -1;
    let all = flags.bits() as libc::c_ulong
        | libc::CLONE_PIDFD as libc::c_ulong
        | libc::SIGCHLD as libc::c_ulong;
    // Without a hold (nothing for the parent to do between clone and exec), posix_spawn-style:
    // the child borrows this address space (CLONE_VM) on a stack of its own and this thread waits
    // until it has exec'd (CLONE_VFORK). No copy of the harness's memory mappings, which a
    // fork-like clone of a multi-threaded harness makes under its mm lock, one clone at a time.
    let ret = if plan.child.sync.is_none() {
        let mut stack = vec![0u8; 64 * 1024];
        let ctx = VforkCtx {
            plan,
            argv: &argv,
            envp: &envp,
        };
        // SAFETY: the stack top is 16-byte aligned and stays alive (this thread is suspended
        // until the child execs or exits, CLONE_VFORK); `ctx` outlives the call for the same
        // reason. The child runs `vfork_entry`, which only makes async-signal-safe system calls
        // and never returns into this thread's frames. CLONE_PIDFD stores into `pidfd`.
        unsafe {
            let top = stack.as_mut_ptr().add(stack.len());
            let top = top.sub(top as usize % 16);
            libc::clone(
                vfork_entry,
                top.cast(),
                (all | libc::CLONE_VM as libc::c_ulong | libc::CLONE_VFORK as libc::c_ulong)
                    as libc::c_int,
                &ctx as *const VforkCtx as *mut libc::c_void,
                &mut pidfd as *mut libc::c_int,
            ) as libc::c_long
        }
    } else {
        // SAFETY: in the child (ret == 0) only async-signal-safe system calls run before
        // execve or _exit: no allocation, no locks, every pointer used was prepared above.
        unsafe { fork_like_clone(all, &mut pidfd, std::ptr::null_mut()) }
    };
    if ret < 0 {
        return Err(SysError::new(clone_call(flags), Errno::last()));
    }
    if ret == 0 {
        // SAFETY: we are the clone child; see above. `child_exec` never returns.
        unsafe { child_exec(plan, &argv, &envp) }
    }
    // SAFETY: the clone succeeded (ret > 0) and stored this pidfd.
    Ok(unsafe { Cloned::from_clone(ret, pidfd) })
}

impl Cloned {
    /// The child a clone returned (`ret`, its pid) and the pidfd the kernel stored for it.
    ///
    /// # Safety
    /// `pidfd` is the fd a successful `CLONE_PIDFD` clone just stored, owned by nobody else.
    pub(super) unsafe fn from_clone(ret: libc::c_long, pidfd: libc::c_int) -> Self {
        // SAFETY: the caller's contract.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        Self {
            pid: Pid::from_raw(ret as i32),
            pidfd,
        }
    }

    /// SIGKILL through the pidfd: PID 1 of a PID namespace takes every process of it along.
    pub fn kill(&self) {
        let _ = pidfd_kill(self.pidfd.as_fd(), libc::SIGKILL);
    }

    /// [`Cloned::kill`], then reaps it, so that nothing is left running or a zombie.
    pub fn kill_and_reap(&self) {
        self.kill();
        let _ = wait_raw(self.pid);
    }
}

/// What the CLONE_VM child reads: the plan and the prepared pointer arrays.
struct VforkCtx<'a> {
    plan: &'a ExecPlan,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
}

/// Entry of the CLONE_VM child.
extern "C" fn vfork_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points at the VforkCtx of the suspended parent frame (see clone_exec), and
    // this is a fresh clone child, as child_exec requires. child_exec never returns.
    unsafe {
        let ctx = &*(arg as *const VforkCtx);
        child_exec(ctx.plan, ctx.argv, ctx.envp)
    }
}

/// The clone child's path to `execve`.
///
/// # Safety
/// Call only in a fresh clone child of a possibly multi-threaded process, with pointers prepared
/// by [`clone_exec`].
unsafe fn child_exec(
    plan: &ExecPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    // SAFETY: as for child_prepare (the caller's contract), then execve with the prepared
    // NULL-terminated arrays; on failure, a frame and _exit.
    unsafe {
        child_prepare(&plan.child);
        libc::execve(plan.exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
        report_failure(plan.child.report_fd, &plan.exec_failed_frame);
        libc::_exit(127)
    }
}

/// Writes a failure frame (prepared, without its errno) and the current errno on `fd`.
///
/// # Safety
/// Async-signal-safe: only `write(2)`; callable in any clone child.
unsafe fn report_failure(fd: RawFd, frame: &[u8]) {
    // SAFETY: reads this thread's errno and writes two valid buffers to an fd.
    unsafe {
        let errno = (*libc::__errno_location()).to_le_bytes();
        libc::write(fd, frame.as_ptr().cast(), frame.len());
        libc::write(fd, errno.as_ptr().cast(), errno.len());
    }
}

/// The steps of a [`ChildPlan`]; returns when all are done, ends the child (`_exit`) when one
/// fails.
///
/// # Safety
/// Call only in a fresh clone child, before anything else runs in it, or (`prepare_ahead`) in a
/// container cloned ahead whose only other thread, if any, holds no fd this closes or moves and
/// waits on a channel. It makes raw, async-signal-safe system calls only (no allocation, no
/// locks), so a clone of a multi-threaded process may call it. The signal mask it empties and
/// the cgroup namespace it makes are the calling thread's: a plan with `cgroup_ns` is for a
/// process with no other thread yet.
pub(super) unsafe fn child_prepare(plan: &ChildPlan) {
    // SAFETY: raw, async-signal-safe system calls on fds and pointers the parent prepared; no
    // allocation, no locks. Failure of any step ends the child with _exit.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        // No signal blocked, whatever the spawning thread had blocked.
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // Nor ignored: an ignored signal survives exec too (`nohup`, a background job of a
        // script), and a shell cannot trap what it was started ignoring. SIGPIPE stays as it
        // is: every Rust program ignores it.
        for sig in 1..=64 {
            if !matches!(sig, libc::SIGKILL | libc::SIGSTOP | libc::SIGPIPE) {
                unignore(sig);
            }
        }
        if plan.life.1 >= 0 {
            libc::close(plan.life.1);
        }
        let mut p = libc::pollfd {
            fd: plan.life.0,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut p, 1, 0) != 0 {
            // The parent died before PR_SET_PDEATHSIG took effect.
            libc::_exit(1);
        }
        if let Some(ns) = plan.netns {
            if libc::setns(ns, libc::CLONE_NEWNET) != 0 {
                libc::_exit(126);
            }
        }
        if let Some((r, w)) = plan.sync {
            if w >= 0 {
                libc::close(w);
            }
            let mut byte = 0u8;
            if libc::read(r, (&mut byte as *mut u8).cast(), 1) != 1 {
                libc::_exit(1);
            }
        }
        let highest_dst = plan.fds.iter().map(|&(_, d)| d).max().unwrap_or(2);
        let mut moved = [-1 as RawFd; 8];
        for (i, &(src, _)) in plan.fds.iter().enumerate() {
            moved[i] = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, highest_dst + 1);
            if moved[i] < 0 {
                libc::_exit(126);
            }
        }
        for (i, &(_, dst)) in plan.fds.iter().enumerate() {
            if libc::dup2(moved[i], dst) < 0 {
                libc::_exit(126);
            }
        }
        // Whatever else this process holds, the container must not inherit it: close-on-exec
        // here (the exec closes them), closed outright by a fork server's child (no exec).
        libc::syscall(
            libc::SYS_close_range,
            (highest_dst + 1) as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        );
        if let Some(frame) = &plan.cgroup_ns {
            if libc::unshare(libc::CLONE_NEWCGROUP) != 0 {
                report_failure(plan.report_fd, frame);
                libc::_exit(125);
            }
        }
        for (path, content, frame) in &plan.writes {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0
                || libc::write(fd, content.as_ptr().cast(), content.len()) != content.len() as isize
            {
                report_failure(plan.report_fd, frame);
                libc::_exit(125);
            }
            libc::close(fd);
        }
    }
}

/// `clone(CLONE_NEWUTS|…)`: how a failed clone with `flags` is named.
pub fn clone_call(flags: CloneFlags) -> String {
    format!("clone({})", clone_flag_names(flags))
}

fn clone_flag_names(flags: CloneFlags) -> String {
    let names = [
        (CloneFlags::CLONE_NEWUSER, "CLONE_NEWUSER"),
        (CloneFlags::CLONE_NEWUTS, "CLONE_NEWUTS"),
        (CloneFlags::CLONE_NEWPID, "CLONE_NEWPID"),
        (CloneFlags::CLONE_NEWNS, "CLONE_NEWNS"),
        (CloneFlags::CLONE_NEWIPC, "CLONE_NEWIPC"),
        (CloneFlags::CLONE_NEWNET, "CLONE_NEWNET"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(f, _)| flags.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    v.join("|")
}

/// Makes `cmd` join the namespaces of the process behind `pidfd` (`setns(2)` with a pidfd, all
/// of `flags` at once) just before it executes: its children are then in the container's PID
/// namespace, and it sees the container's root and mounts.
pub fn join_namespaces(cmd: &mut std::process::Command, pidfd: RawFd, flags: CloneFlags) {
    use std::os::unix::process::CommandExt;
    let flags = flags.bits();
    // SAFETY: the closure runs in the forked child before exec and only calls setns(2), which
    // is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(pidfd, flags) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
