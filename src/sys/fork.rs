//! Clones without an `execve`, as `fork` makes them but with namespaces: a fork server's
//! containers, and the fork server itself where it is forked before `main`. Only a
//! single-threaded process may make them (a [`SingleThreaded`] token).

use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sched::CloneFlags;

use super::clone::{child_prepare, clone_call};
use super::{ChildPlan, Cloned, Result, SysError};

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
    let all = flags.bits() as libc::c_ulong | libc::CLONE_PARENT as libc::c_ulong;
    fork_with(one_thread, all, plan, close_first).map_err(|e| SysError::new(clone_call(flags), e))
}

/// A clone of this single-threaded process into new namespaces (`flags`), a child of this
/// process, prepared as `plan` says: the container of a process that runs one test, cloned
/// before `main` (see `parent::prefork`). `Ok(None)` in the child.
pub fn clone_child(
    one_thread: &SingleThreaded,
    flags: CloneFlags,
    plan: &ChildPlan,
) -> Result<Option<Cloned>> {
    let all = flags.bits() as libc::c_ulong;
    fork_with(one_thread, all, plan, &[]).map_err(|e| SysError::new(clone_call(flags), e))
}

/// A fork of this single-threaded process, a child of this process (not a sibling as the
/// containers are), prepared as `plan` says: what starts a fork server without an `execve`
/// (see `parent::forkserver::prefork`). `Ok(None)` in the child.
pub fn fork_helper(one_thread: &SingleThreaded, plan: &ChildPlan) -> Result<Option<Cloned>> {
    fork_with(one_thread, 0, plan, &[]).map_err(|e| SysError::new("clone(fork)", e))
}

fn fork_with(
    one_thread: &SingleThreaded,
    flags: libc::c_ulong,
    plan: &ChildPlan,
    close_first: &[RawFd],
) -> std::result::Result<Option<Cloned>, Errno> {
    assert!(plan.fds.len() <= 8, "at most 8 fds are mapped");
    let mut pidfd: libc::c_int = -1;
    let all = flags
        | libc::CLONE_PIDFD as libc::c_ulong
        | libc::CLONE_CHILD_SETTID as libc::c_ulong
        | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: this process has one thread (the SingleThreaded token), so no lock is held by a
    // thread the child lacks, and the child may go on running any code. The kernel writes the
    // child's tid at `tid_slot`, in the child's copy of this memory, where glibc's fork would.
    let ret = unsafe { fork_like_clone(all, &mut pidfd, one_thread.tid_slot) };
    if ret < 0 {
        return Err(Errno::last());
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
            close_above(highest_dst);
        }
        return Ok(None);
    }
    // SAFETY: the clone succeeded (ret > 0) and stored this pidfd.
    Ok(Some(unsafe { Cloned::from_clone(ret, pidfd) }))
}

/// The rest of a container's preparation, in a container cloned ahead of its request
/// (`child::ahead`): `plan`'s steps (the parent-death signal and liveness
/// check again, the wait, the fds moved into place, the cgroup namespace), then every other fd
/// closed, as [`fork_container`]'s child does right after its clone. The signal mask it resets
/// is the calling thread's.
pub fn prepare_ahead(plan: &ChildPlan) {
    assert!(plan.fds.len() <= 8, "at most 8 fds are mapped");
    let highest_dst = plan.fds.iter().map(|&(_, d)| d).max().unwrap_or(2);
    // SAFETY: this process is a clone of a single-threaded process; child_prepare makes
    // only raw, async-signal-safe calls, which are sound with other threads too (a container
    // set up ahead has started its test's thread, which holds no fd and waits on a channel).
    // The fds closed are this process's own, and the caller uses none of them again (it runs
    // the container next).
    unsafe {
        child_prepare(plan);
        close_above(highest_dst);
    }
}

/// Closes every fd above `highest`. Without close_range (Linux before 5.9), one by one up to the
/// fd limit.
///
/// # Safety
/// The caller owns those fds and uses none of them afterwards.
unsafe fn close_above(highest: RawFd) {
    let first = (highest + 1) as libc::c_uint;
    // SAFETY: the caller's contract.
    unsafe {
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
}

/// `clone(2)` without `CLONE_VM` or a new stack (the child runs on a copy of this address space),
/// with `all` (flags, exit signal; `CLONE_PIDFD` among them, and `CLONE_CHILD_SETTID` with a
/// `child_tid`): 0 in the child, the child's pid in the caller, -1 on error.
///
/// # Safety
/// In a process with more than one thread, the child may only make async-signal-safe calls
/// before `execve` or `_exit` (another thread's locks are copied held). With
/// `CLONE_CHILD_SETTID`, `child_tid` points at a `pid_t` of this address space.
pub(super) unsafe fn fork_like_clone(
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
