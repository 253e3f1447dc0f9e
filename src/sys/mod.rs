//! Every raw system call nstest makes, in one place.
//!
//! Each wrapper returns a [`SysError`] that names the call and its arguments and keeps the errno
//! matchable (`mount("overlay", "/…/root", …) => EPERM`). `unsafe` lives in this module only, and
//! each block says why it is sound. By role: [`clone`] makes the container's process, [`mount`]
//! its mounts, [`net`] and [`netlink`] its network, [`socket`] the fork server's channel,
//! [`init`] PID 1's duties (session, reaping, stack overflows, its environment); the rest (fds,
//! waits, signals, names) is here.

mod clone;
mod cpus;
mod fork;
mod init;
mod mount;
mod net;
mod netlink;
mod socket;

pub use clone::{clone_call, clone_exec, join_namespaces, ChildPlan, Cloned, ExecPlan};
pub use cpus::{cpu_mask, set_cpu_mask, start_elsewhere};
pub use fork::{
    clone_child, fork_container, fork_helper, prepare_ahead, single_threaded, SingleThreaded,
};
pub use init::{
    catch_stack_overflow, child_events, count_child_events, env_entries, reap_own_children,
    replace_env, setsid, sigchld_handler_is_ours, wait_child_event,
};
pub use mount::{
    bind, bind_read_only_tree, make_rprivate, mknod_exact, mknod_like, mount, pivot_root_to,
    set_xattr,
};
pub use net::{loopback_up, new_netns_with_lo, spare_netns, unshare_cgroup, unshare_net};
pub use netlink::{if_index, in_netns, netns_of, Rtnl, QDISC_CHILD, QDISC_ROOT};
pub use socket::{recv_message, recv_with_fds, send_with_fds, seqpacket_pair, set_socket_timeouts};

use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
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

/// Ignores SIGPIPE, as Rust's runtime does before `main`: for a process forked before `main`
/// (a container or a fork server cloned from a harness then), so that its tests see what a test
/// in a harness that ran `main` sees (`EPIPE` from a write to a closed pipe, no signal).
pub fn ignore_sigpipe() {
    // SAFETY: installs SIG_IGN, no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
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

/// The fd the harness put at `fd` for this re-executed process, as an `OwnedFd`. Call once per
/// fd, before anything else could own it.
pub fn inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    // F_GETFD: is it open at all?
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).ok()?;
    // SAFETY: open (checked above); the harness placed it for this process alone, and the
    // caller takes it once, first.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
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

/// The inode of this process's PID namespace: pids are comparable only within one.
pub fn pid_ns_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// `sethostname(2)`.
pub fn sethostname(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).map_err(|e| SysError::new(format!("sethostname({name:?})"), e))
}

/// Marks `fd` close-on-exec.
pub fn set_cloexec(fd: RawFd) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map(drop)
        .map_err(|e| SysError::new(format!("fcntl({fd}, F_SETFD, FD_CLOEXEC)"), e))
}

/// Where [`report_sigabrt`]'s handler writes, and the frame it writes, less the signal number.
static FATAL_FRAME: std::sync::OnceLock<(RawFd, [u8; 10])> = std::sync::OnceLock::new();

extern "C" fn report_fatal_signal(sig: libc::c_int) {
    if let Some((fd, header)) = FATAL_FRAME.get() {
        let mut frame = [0u8; 14];
        frame[..10].copy_from_slice(header);
        frame[10..].copy_from_slice(&sig.to_le_bytes());
        // SAFETY: write(2) is async-signal-safe; the frame lives on this stack.
        unsafe { libc::write(*fd, frame.as_ptr().cast(), frame.len()) };
    }
    // SAFETY: _exit(2) is async-signal-safe.
    unsafe { libc::_exit(128 + sig) }
}

/// PID 1 ignores signals it has no handler for, even `abort()`'s SIGABRT to itself. This handler
/// writes `header` and the signal number (4 bytes LE) on `fd` and exits, so the parent can name
/// the signal.
pub fn report_sigabrt(fd: RawFd, header: [u8; 10]) -> Result<()> {
    let _ = FATAL_FRAME.set((fd, header));
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

/// Closes every fd of this process, then `_exit(code)`: whoever reads this process's pipes sees
/// them end now, not after the kernel has taken its memory and namespaces down.
pub fn close_all_and_exit(code: i32) -> ! {
    // SAFETY: close_range(2) on fds this process owns; nothing uses them after this (the process
    // ends on the next line). If the call is missing (Linux before 5.9), `_exit` closes them.
    unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) };
    exit_now(code)
}

/// Runs `f` when the process exits normally (`exit(3)`, a return from `main`), as
/// `atexit(3)` does; not after `_exit` or a fatal signal. Idempotence is the caller's.
pub fn at_exit(f: extern "C" fn()) -> Result<()> {
    // SAFETY: registers a plain function pointer with the C library; `f` is `extern "C"`, takes
    // nothing and must not unwind (the caller's contract: it catches every panic).
    let r = unsafe { libc::atexit(f) };
    if r == 0 {
        Ok(())
    } else {
        Err(SysError::new("atexit", Errno::ENOMEM))
    }
}

/// Whether the child `pid` has ended; reaps it if so (`waitpid(pid, WNOHANG)`). An error (no
/// such child) counts as ended.
pub fn try_reap(pid: Pid) -> bool {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return false,
            Err(Errno::EINTR) => continue,
            Ok(_) | Err(_) => return true,
        }
    }
}

/// The name of a signal, `SIGSEGV`, or `signal 42` for one nix does not name.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// The report fd `fd` of a container child, as a `File`. Call once, in the child only.
pub fn report_file(fd: RawFd) -> std::fs::File {
    // SAFETY: the parent put the write end of the report pipe at `fd` for this process, and
    // nothing else in the process owns that fd; it is taken once, by the child's entry point.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

/// What [`fn_offset`] measures from: a function of nstest's, which sits at the same offset from
/// the executable's load address in every process of the same executable.
#[inline(never)]
fn anchor() {
    std::hint::black_box(());
}

/// The load address of the object (the executable, or a shared library) that holds `addr`.
fn object_base(addr: usize) -> Option<usize> {
    // SAFETY: Dl_info is plain old data; all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables for `addr` and fills `info`.
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) };
    (found != 0 && !info.dli_fbase.is_null()).then_some(info.dli_fbase as usize)
}

/// Where `f` is, as an offset from [`anchor`]: the same in every process of this executable
/// (a re-executed container child, a clone of the fork server) whatever its load address.
/// `None` for a function outside the executable (a shared library's, loaded elsewhere).
pub fn fn_offset(f: fn()) -> Option<i64> {
    let (at, anchor) = (f as usize, anchor as fn() as usize);
    same_object(at, anchor).then(|| (at as i64).wrapping_sub(anchor as i64))
}

/// Whether `a` and `b` are in the same loaded object; where the loader can say nothing of
/// either (a static binary without `dladdr`), there is one object.
fn same_object(a: usize, b: usize) -> bool {
    match (object_base(a), object_base(b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => true,
        _ => false,
    }
}

/// The function at `offset` from [`anchor`] (see [`fn_offset`]); `None` where that address is
/// not in this executable.
pub fn fn_at(offset: i64) -> Option<fn()> {
    let anchor = anchor as fn() as usize;
    let addr = (anchor as i64).wrapping_add(offset) as usize;
    if addr == 0 || !same_object(addr, anchor) {
        return None;
    }
    // SAFETY: `offset` comes from the spec this process was started with, which `fn_offset`
    // wrote in a process of this same executable (the container child runs `/proc/self/exe`
    // of that process, or is a clone of a fork server that did), from a `fn()` of the
    // executable: `anchor + offset` is that function here, whatever the load address. (Who
    // can write a process's spec, its environment, can run any code in it anyway.)
    Some(unsafe { std::mem::transmute::<usize, fn()>(addr) })
}

#[cfg(test)]
mod fn_tests {
    fn target() {
        std::hint::black_box(7);
    }

    #[test]
    fn a_function_of_the_executable_is_found_again_by_its_offset() {
        let offset = super::fn_offset(target).expect("target is in this executable");
        assert_eq!(
            super::fn_at(offset).map(|f| f as usize),
            Some(target as fn() as usize)
        );
        // Far outside the executable: no function.
        assert!(super::fn_at(i64::MAX / 2).is_none());
        assert!(super::fn_at(-(super::anchor as fn() as usize as i64)).is_none());
    }
}
