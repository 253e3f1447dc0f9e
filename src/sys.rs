//! Every raw system call nstest makes, in one place.
//!
//! Each wrapper returns a [`SysError`] that names the call and its arguments and keeps the errno
//! matchable (`mount("overlay", "/…/root", …) => EPERM`). `unsafe` lives in this module only, and
//! each block says why it is sound.

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// A failed system call: which call, with which arguments, and the errno.
///
/// ```no_run
/// if let Err(nstest::Error::Namespaces(e)) = nstest::Container::new("true").status() {
///     assert_eq!(e.errno, nix::errno::Errno::EPERM, "{}", e.call);
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysError {
    /// The call and its arguments, e.g. `pivot_root(".", ".")`.
    pub call: String,
    /// What the kernel said.
    pub errno: Errno,
}

impl SysError {
    pub(crate) fn new(call: impl Into<String>, errno: Errno) -> Self {
        Self {
            call: call.into(),
            errno,
        }
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} => {:?} ({})",
            self.call,
            self.errno,
            self.errno.desc()
        )
    }
}

impl std::error::Error for SysError {}

type Result<T> = std::result::Result<T, SysError>;

/// A pipe, both ends close-on-exec: `(read, write)`.
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SysError::new("pipe2(O_CLOEXEC)", e))
}

/// Puts SIGCHLD back to its default action if this process was started with it ignored (a
/// disposition survives exec): while it is ignored, the kernel reaps children by itself and
/// their exit status is lost.
pub fn unignore_sigchld() {
    unignore(libc::SIGCHLD);
}

/// Sets `sig` back to its default action if it is ignored; leaves a handler or the default
/// as it is. Async-signal-safe (two `sigaction` calls at most).
fn unignore(sig: libc::c_int) {
    // SAFETY: reads the disposition into a zeroed struct; replaces it only if it is SIG_IGN,
    // and then with SIG_DFL: no handler is installed.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
        {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &default, std::ptr::null_mut());
        }
    }
}

/// `/dev/null` opened read-write, close-on-exec.
pub fn open_dev_null() -> Result<OwnedFd> {
    open_fd("/dev/null", true)
}

/// `path` opened for reading (and writing with `write`), close-on-exec as std always opens.
fn open_fd(path: &str, write: bool) -> Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| {
            let mode = if write { "O_RDWR" } else { "O_RDONLY" };
            let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
            SysError::new(format!("open({path:?}, {mode})"), errno)
        })
}

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
    unsafe fn from_clone(ret: libc::c_long, pidfd: libc::c_int) -> Self {
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
/// Call only in a fresh clone child, before anything else runs in it. It makes raw,
/// async-signal-safe system calls only (no allocation, no locks), so a clone of a multi-threaded
/// process may call it.
unsafe fn child_prepare(plan: &ChildPlan) {
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

/// Proof that this process had one thread when it was made (see [`single_threaded`]), and where
/// glibc keeps that thread's id: what a fork-like clone that goes on running Rust code needs.
#[derive(Debug)]
pub struct SingleThreaded {
    /// glibc's cached thread id of this (main) thread, in its thread descriptor.
    tid_slot: *mut libc::pid_t,
}

/// A [`SingleThreaded`] if `/proc/self/task` lists one thread and glibc's cached thread id is
/// found (see [`glibc_tid_slot`]). The holder must start no thread.
pub fn single_threaded() -> Option<SingleThreaded> {
    let threads = std::fs::read_dir("/proc/self/task").ok()?.count();
    if threads != 1 {
        return None;
    }
    Some(SingleThreaded {
        tid_slot: glibc_tid_slot()?,
    })
}

/// Where glibc keeps the calling thread's id (`struct pthread`'s `tid`), which its own `fork`
/// has the kernel rewrite in the child (`CLONE_CHILD_SETTID`); a raw clone must do the same, or
/// glibc goes on naming the main thread by the server's id. Found as the one 4-byte slot in the
/// first KiB of the thread descriptor that holds `gettid()`, and confirmed: glibc's
/// `pthread_getcpuclockid`, computed from that field, follows a change of the slot. `None`
/// elsewhere (another C library, another layout).
fn glibc_tid_slot() -> Option<*mut libc::pid_t> {
    // From glibc's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED).
    let clock_of = |tid: libc::pid_t| ((!(tid as u32) << 3) | 6) as libc::clockid_t;
    let clock_now = || {
        let mut clock: libc::clockid_t = 0;
        // SAFETY: pthread_self() is this live thread; `clock` outlives the call.
        let r = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
        (r == 0).then_some(clock)
    };
    // SAFETY: a plain syscall without arguments.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
    if clock_now()? != clock_of(tid) {
        return None;
    }
    // SAFETY: pthread_self has no preconditions.
    let base = unsafe { libc::pthread_self() } as *mut u8;
    let mut found = None;
    for offset in (0..1024).step_by(4) {
        // SAFETY: glibc's thread descriptor of this thread starts at pthread_self() and is over
        // 2 KiB long (x86_64 and aarch64); 4-byte aligned reads of plain memory.
        let slot = unsafe { base.add(offset) } as *mut libc::pid_t;
        // SAFETY: as above.
        if unsafe { slot.read_volatile() } == tid {
            if found.is_some() {
                return None; // two candidates: do not guess
            }
            found = Some(slot);
        }
    }
    let slot = found?;
    // SAFETY: the process has one thread, and glibc reads this field only when asked (the call
    // just below); it is written back at once.
    let follows = unsafe {
        slot.write_volatile(tid ^ 1);
        let follows = clock_now() == Some(clock_of(tid ^ 1));
        slot.write_volatile(tid);
        follows
    };
    follows.then_some(slot)
}

/// `clone(2)` of this single-threaded process with `flags` (namespaces), `CLONE_PARENT` (the
/// child is our parent's: the harness waits for it) and `CLONE_PIDFD`. In the child: `close_first`
/// closed, the steps of `plan`, then every fd above the mapped ones closed; returns `None` there.
/// Returns the child in the caller.
///
/// Like glibc's own fork, the clone has the kernel write the child's thread id into glibc's
/// descriptor (`CLONE_CHILD_SETTID`). glibc's other fork bookkeeping (atfork handlers, the
/// robust-mutex list) is skipped: the server registers no handlers and holds no mutex.
pub fn fork_container(
    one_thread: &SingleThreaded,
    flags: CloneFlags,
    plan: &ChildPlan,
    close_first: &[RawFd],
) -> Result<Option<Cloned>> {
    assert!(plan.fds.len() <= 8, "at most 8 fds are mapped");
    let mut pidfd: libc::c_int = -1;
    let all = flags.bits() as libc::c_ulong
        | libc::CLONE_PIDFD as libc::c_ulong
        | libc::CLONE_PARENT as libc::c_ulong
        | libc::CLONE_CHILD_SETTID as libc::c_ulong
        | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: this process has one thread (the SingleThreaded token), so no lock is held by a
    // thread the child lacks, and the child may go on running any code. The kernel writes the
    // child's tid at `tid_slot`, in the child's copy of this memory, where glibc's fork would.
    let ret = unsafe { fork_like_clone(all, &mut pidfd, one_thread.tid_slot) };
    if ret < 0 {
        return Err(SysError::new(clone_call(flags), Errno::last()));
    }
    if ret == 0 {
        let highest_dst = plan.fds.iter().map(|&(_, d)| d).max().unwrap_or(2);
        // SAFETY: we are the fresh clone child, as child_prepare requires; closing fds this
        // process owns. No exec follows, so what child_prepare marked close-on-exec is closed
        // here: the fds the server was sent, which the container must not hold. Without
        // close_range (Linux before 5.9), one by one up to the fd limit.
        unsafe {
            for &fd in close_first {
                libc::close(fd);
            }
            child_prepare(plan);
            let first = (highest_dst + 1) as libc::c_uint;
            if libc::syscall(
                libc::SYS_close_range,
                first,
                libc::c_uint::MAX,
                0 as libc::c_uint,
            ) != 0
            {
                let limit = libc::sysconf(libc::_SC_OPEN_MAX).clamp(0, 1 << 16) as libc::c_int;
                for fd in first as libc::c_int..limit {
                    libc::close(fd);
                }
            }
        }
        return Ok(None);
    }
    // SAFETY: the clone succeeded (ret > 0) and stored this pidfd.
    Ok(Some(unsafe { Cloned::from_clone(ret, pidfd) }))
}

/// `clone(2)` without `CLONE_VM` or a new stack (the child runs on a copy of this address space),
/// with `all` (flags, exit signal; `CLONE_PIDFD` among them, and `CLONE_CHILD_SETTID` with a
/// `child_tid`): 0 in the child, the child's pid in the caller, -1 on error.
///
/// # Safety
/// In a process with more than one thread, the child may only make async-signal-safe calls
/// before `execve` or `_exit` (another thread's locks are copied held). With
/// `CLONE_CHILD_SETTID`, `child_tid` points at a `pid_t` of this address space.
unsafe fn fork_like_clone(
    all: libc::c_ulong,
    pidfd: &mut libc::c_int,
    child_tid: *mut libc::pid_t,
) -> libc::c_long {
    // SAFETY: the raw clone's argument order of x86_64 and aarch64: flags, stack (0: the copy of
    // the caller's), parent_tid (where CLONE_PIDFD stores the pidfd: `pidfd`, which outlives the
    // call), child_tid (the caller's), tls (unused). The caller vouches for what the child runs.
    unsafe {
        libc::syscall(
            libc::SYS_clone,
            all,
            0 as libc::c_ulong,
            pidfd as *mut libc::c_int,
            child_tid,
            0 as libc::c_ulong,
        )
    }
}

/// A connected pair of `AF_UNIX` `SOCK_SEQPACKET` sockets (message boundaries kept), both
/// close-on-exec.
pub fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| SysError::new("socketpair(AF_UNIX, SOCK_SEQPACKET)", e))
}

/// Bounds every `sendmsg` and `recvmsg` on `sock` to `limit`: past it they fail with `EAGAIN`.
pub fn set_socket_timeouts(sock: BorrowedFd<'_>, limit: std::time::Duration) -> Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let tv = nix::sys::time::TimeVal::new(limit.as_secs() as _, limit.subsec_micros() as _);
    setsockopt(&sock, sockopt::ReceiveTimeout, &tv)
        .and_then(|()| setsockopt(&sock, sockopt::SendTimeout, &tv))
        .map_err(|e| SysError::new("setsockopt(SO_RCVTIMEO, SO_SNDTIMEO)", e))
}

/// Sends one message with `fds` attached (`SCM_RIGHTS`).
pub fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(data)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs = if fds.is_empty() {
        &rights[..0]
    } else {
        &rights[..]
    };
    let call = || format!("sendmsg({} bytes, {} fds)", data.len(), fds.len());
    let sent = sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| SysError::new(call(), e))?;
    if sent != data.len() {
        return Err(SysError::new(call(), Errno::EMSGSIZE));
    }
    Ok(())
}

/// Receives one message into `buf` and the fds attached to it (close-on-exec), retried when a
/// signal interrupts the wait. `Ok((0, _))` is the end: the peer closed its socket.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 16]);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            got => break got.map_err(|e| SysError::new("recvmsg", e))?,
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(|e| SysError::new("recvmsg", e))? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these fds in this process for us alone.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if msg
        .flags
        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC)
    {
        return Err(SysError::new("recvmsg", Errno::EMSGSIZE));
    }
    Ok((msg.bytes, fds))
}

/// The fd the harness put at `fd` for this re-executed process, as an `OwnedFd`. Call once per
/// fd, before anything else could own it.
pub fn inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    // F_GETFD: is it open at all?
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).ok()?;
    // SAFETY: open (checked above); the harness placed it for this process alone, and the
    // caller takes it once, first.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
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

/// Sends `sig` through a pidfd (no pid-reuse race).
pub fn pidfd_kill(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> Result<()> {
    // SAFETY: plain syscall on a valid pidfd; a null siginfo is allowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(SysError::new(
            format!("pidfd_send_signal({sig})"),
            Errno::last(),
        ))
    } else {
        Ok(())
    }
}

/// Reaps `pid` and returns its raw wait status (as `ExitStatusExt::from_raw` wants it).
pub fn wait_raw(pid: Pid) -> Result<i32> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok((code & 0xff) << 8),
            Ok(WaitStatus::Signaled(_, sig, core)) => {
                return Ok(sig as i32 | if core { 0x80 } else { 0 })
            }
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(SysError::new(format!("waitpid({pid})"), e)),
        }
    }
}

/// `mount(2)` with the call spelled out on failure.
pub fn mount(
    src: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    nix::mount::mount(Some(src), target, fstype, flags, data).map_err(|e| {
        SysError::new(
            format!(
                "mount({src:?}, {:?}, {:?}, {flags:?}, {:?})",
                target.display().to_string(),
                fstype.unwrap_or(""),
                data.unwrap_or("")
            ),
            e,
        )
    })
}

/// Makes every mount of this (new) mount namespace private, so nothing propagates to the host.
pub fn make_rprivate() -> Result<()> {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| SysError::new("mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE, NULL)", e))
}

/// Bind-mounts `src` on `target` (recursively), read-only when `ro`. The read-only remount keeps
/// the flags the source already has (in a user namespace they are locked and must be kept).
pub fn bind(src: &Path, target: &Path, ro: bool) -> Result<()> {
    let s = src.to_string_lossy();
    mount(&s, target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    if ro {
        use nix::sys::statvfs::{statvfs, FsFlags};
        let have = statvfs(target)
            .map(|v| v.flags())
            .unwrap_or(FsFlags::empty());
        let mut flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
        for (fs, ms) in [
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if have.contains(fs) {
                flags |= ms;
            }
        }
        mount(&s, target, None, flags, None)?;
    }
    Ok(())
}

/// The inode of this process's PID namespace: pids are comparable only within one.
pub fn pid_ns_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// Sets the extended attribute `name` of `path` (not following a final symlink) to `value`.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    let call = || format!("lsetxattr({:?}, {name:?})", path.display().to_string());
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| SysError::new(call(), Errno::EINVAL))?;
    let c_name = CString::new(name).map_err(|_| SysError::new(call(), Errno::EINVAL))?;
    // SAFETY: both strings are NUL-terminated and live across the call; `value` is a valid
    // slice of the length passed.
    let r = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        return Err(SysError::new(call(), Errno::last()));
    }
    Ok(())
}

/// Creates at `target` a device node like the one at `host` (same type, numbers and mode).
pub fn mknod_like(host: &Path, target: &Path) -> Result<()> {
    let st = nix::sys::stat::stat(host)
        .map_err(|e| SysError::new(format!("stat({:?})", host.display().to_string()), e))?;
    mknod_exact(target, st.st_mode, st.st_rdev)
}

/// Creates at `target` a fifo or device node of `mode` (its file type and permission bits,
/// as `st_mode` holds them) and device number `rdev`, with exactly those permission bits.
pub fn mknod_exact(target: &Path, mode: u32, rdev: u64) -> Result<()> {
    use nix::sys::stat::{fchmodat, mknod, FchmodatFlags, Mode, SFlag};
    let kind = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
    let perms = Mode::from_bits_truncate(mode & 0o7777);
    mknod(target, kind, perms, rdev).map_err(|e| {
        SysError::new(
            format!(
                "mknod({:?}, {kind:?}, {:o}, {rdev})",
                target.display().to_string(),
                perms.bits(),
            ),
            e,
        )
    })?;
    // mknod applies the umask; the node gets the mode exactly.
    fchmodat(None, target, perms, FchmodatFlags::FollowSymlink)
        .map_err(|e| SysError::new(format!("chmod({:?})", target.display().to_string()), e))
}

/// `chdir(new_root)`, `pivot_root(".", ".")`, detach the old root stacked on top, `chdir("/")`.
pub fn pivot_root_to(new_root: &Path) -> std::result::Result<(), (bool, SysError)> {
    nix::unistd::chdir(new_root).map_err(|e| {
        (
            false,
            SysError::new(format!("chdir({:?})", new_root.display().to_string()), e),
        )
    })?;
    nix::unistd::pivot_root(".", ".")
        .map_err(|e| (false, SysError::new("pivot_root(\".\", \".\")", e)))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| (true, SysError::new("umount2(\".\", MNT_DETACH)", e)))?;
    nix::unistd::chdir("/").map_err(|e| (true, SysError::new("chdir(\"/\")", e)))
}

/// `sethostname(2)`.
pub fn sethostname(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).map_err(|e| SysError::new(format!("sethostname({name:?})"), e))
}

/// Brings the loopback interface up (`SIOCSIFFLAGS` on `lo` with `IFF_UP`) unless it is up.
pub fn loopback_up() -> Result<()> {
    // SAFETY: socket(2) with constant arguments; the fd is owned right after.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(SysError::new("socket(AF_INET, SOCK_DGRAM)", Errno::last()));
    }
    // SAFETY: `s` is a new fd owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, b) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the flags member of a valid, named ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(SysError::new("ioctl(SIOCGIFFLAGS, \"lo\")", Errno::last()));
    }
    // SAFETY: the flags member of the union is the one SIOCGIFFLAGS just wrote.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        // Already up (a namespace from the pool): setting it would only wait for the kernel's
        // RTNL lock, which namespaces being made and torn down hold for long stretches.
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the same valid ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(SysError::new(
            "ioctl(SIOCSIFFLAGS, \"lo\", IFF_UP)",
            Errno::last(),
        ));
    }
    Ok(())
}

/// Marks `fd` close-on-exec.
pub fn set_cloexec(fd: RawFd) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map(drop)
        .map_err(|e| SysError::new(format!("fcntl({fd}, F_SETFD, FD_CLOEXEC)"), e))
}

extern "C" fn report_fatal_signal(sig: libc::c_int) {
    let frame = crate::protocol::fatal_signal_frame(sig);
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the frame lives on this stack.
    unsafe {
        libc::write(
            crate::protocol::REPORT_FD,
            frame.as_ptr().cast(),
            frame.len(),
        );
        libc::_exit(128 + sig);
    }
}

/// PID 1 ignores signals it has no handler for, even `abort()`'s SIGABRT to itself. This handler
/// reports the signal on the report fd and exits, so the parent can name it.
pub fn report_sigabrt() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(report_fatal_signal),
        SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    // SAFETY: the handler only calls async-signal-safe functions.
    unsafe { sigaction(Signal::SIGABRT, &act) }
        .map(drop)
        .map_err(|e| SysError::new("sigaction(SIGABRT)", e))
}

/// Waits until killed (`pause(2)` in a loop; PID 1 ignores the signals it has no handler for).
pub fn wait_forever() -> ! {
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
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

/// This process as the maker of a cache entry or a run cgroup, at the end of its name:
/// `<pid>-<PID namespace inode>` (pids are comparable only within one namespace).
pub fn owner_tag() -> String {
    format!("{}-{}", std::process::id(), pid_ns_inode())
}

/// `(pid, PID namespace inode)` from an [`owner_tag`]; a bare `<pid>` (names of old) has none.
pub fn parse_owner_tag(tag: &str) -> Option<(i32, Option<u64>)> {
    match tag.split_once('-') {
        Some((pid, ns)) => Some((pid.parse().ok()?, Some(ns.parse().ok()?))),
        None => Some((tag.parse().ok()?, None)),
    }
}

/// Whether no process has this pid any more (the owner of a stale cache entry or cgroup).
/// A pid that exists but is not ours to signal counts as alive.
pub fn pid_is_dead(pid: i32) -> bool {
    nix::sys::signal::kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH)
}

/// A new network namespace with `lo` up, made by (and entered by) the calling thread; returns an
/// fd that keeps it. The thread stays in it: call from a thread of its own.
pub fn new_netns_with_lo() -> Result<OwnedFd> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| SysError::new("unshare(CLONE_NEWNET)", e))?;
    loopback_up()?;
    open_fd("/proc/thread-self/ns/net", false)
}

/// Whether fd 0 is a terminal.
pub fn stdin_is_terminal() -> bool {
    nix::unistd::isatty(0).unwrap_or(false)
}

/// `prctl(PR_SET_NAME)`: this thread's name (for PID 1 of a container, its `comm`: what `ps` and
/// `/proc/1/comm` show). The kernel keeps the first 15 bytes.
pub fn set_name(name: &[u8]) -> Result<()> {
    let name =
        CString::new(name).map_err(|_| SysError::new("prctl(PR_SET_NAME)", Errno::EINVAL))?;
    nix::sys::prctl::set_name(&name)
        .map_err(|e| SysError::new(format!("prctl(PR_SET_NAME, {name:?})"), e))
}

/// `_exit(2)`: ends the process without running destructors or atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// The name of a signal, `SIGSEGV`, or `signal 42` for one nix does not name.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// The report fd of a container child, as a `File`. Call once, in the child only.
pub fn report_file() -> std::fs::File {
    // SAFETY: the parent put the write end of the report pipe at REPORT_FD for this process, and
    // nothing else in the process owns that fd; it is taken once, by the child's entry point.
    unsafe { std::fs::File::from_raw_fd(crate::protocol::REPORT_FD) }
}

// SAFETY: runs before `main`, in every binary that links nstest. It only acts in a process the
// harness started with one of its variables set: a re-executed container child
// (`__NSTEST_CHILD`), the fork server, or the id-map helper; there it never returns. It uses the
// environment, files and system calls, none of which depends on the Rust runtime's `main`
// set-up. This is what lets `#[nstest::test]` work in ordinary libtest targets and `Container`
// in any binary.
#[ctor::ctor(unsafe)]
fn enter_container_child() {
    crate::child::run_if_child();
}
