//! What PID 1 of a container needs from the kernel to do an init's duties: its own session, a
//! wake-up on every `SIGCHLD`, reaping only its main thread's children, Rust's stack-overflow
//! message on the test's thread, and an environment region that shows the container's own
//! environment in `/proc/self/environ`.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::sync::OnceLock;

use nix::errno::Errno;

use super::{Result, SysError};

extern "C" {
    /// The C library's environment: a NULL-terminated array of `KEY=value` strings.
    static mut environ: *mut *mut libc::c_char;
}

/// The environment's entries (`KEY=value`) as the C library holds them, without copying them.
/// For a container's PID 1 before its test starts: its only other thread (the test's, waiting)
/// reads and changes no variable meanwhile.
pub fn env_entries() -> Vec<&'static [u8]> {
    let mut entries = Vec::with_capacity(128);
    // SAFETY: `environ` is a NULL-terminated array of NUL-terminated strings, which nothing
    // changes while this reads it (see above). The strings are never freed: they are on the
    // initial stack, or were made by `setenv(3)`, which leaks them by design (a caller may hold
    // a `getenv` result); so they may be borrowed for the process's life.
    unsafe {
        let mut at = environ;
        while !at.is_null() && !(*at).is_null() {
            entries.push(std::ffi::CStr::from_ptr(*at).to_bytes());
            at = at.add(1);
        }
    }
    entries
}

/// Replaces the environment at once with `region`'s entries (`KEY=value`, each ending in a NUL
/// byte): the C library's `environ` points at them in place, instead of one `setenv(3)` (a scan
/// of the whole environment and a copy) per variable, and so does the kernel's record of it
/// (what `/proc/<pid>/environ` shows; [`set_environ_region`]). The buffer and the array are
/// leaked: the process needs them until it ends. For a container's PID 1 before its test starts
/// (see [`env_entries`]).
pub fn replace_env(region: Vec<u8>) -> Result<()> {
    let region: &'static mut [u8] = Box::leak(region.into_boxed_slice());
    let base: *mut libc::c_char = region.as_mut_ptr().cast();
    let mut ptrs: Vec<*mut libc::c_char> = Vec::with_capacity(64);
    let mut start = 0;
    for (i, b) in region.iter().enumerate() {
        if *b == 0 {
            if i > start {
                ptrs.push(base.wrapping_add(start));
            }
            start = i + 1;
        }
    }
    ptrs.push(std::ptr::null_mut());
    let ptrs: &'static mut [*mut libc::c_char] = Box::leak(ptrs.into_boxed_slice());
    // SAFETY: nothing reads or changes the environment meanwhile (see above). The array ends
    // in NULL and its entries point at NUL-terminated strings, both leaked, so they live as
    // long as the process. The C library may write to the array (`setenv` replacing a value,
    // `unsetenv`), which is writable, and copies it before growing it, as it did not allocate it.
    unsafe { environ = ptrs.as_mut_ptr() };
    set_environ_region(region)
}

/// `setsid(2)`: this process leads a new session and process group (as PID 1: both are 1).
pub fn setsid() -> Result<()> {
    nix::unistd::setsid()
        .map(drop)
        .map_err(|e| SysError::new("setsid()", e))
}

/// Counts `SIGCHLD`s; PID 1's main thread sleeps on it as a futex.
static CHILD_EVENTS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_sigchld(_: libc::c_int) {
    CHILD_EVENTS.fetch_add(1, Ordering::SeqCst);
    // SAFETY: errno is saved and restored around futex(2), which is async-signal-safe and only
    // wakes the threads of this process sleeping on the counter.
    unsafe {
        let errno = *libc::__errno_location();
        libc::syscall(
            libc::SYS_futex,
            CHILD_EVENTS.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
        *libc::__errno_location() = errno;
    }
}

/// Installs a `SIGCHLD` handler (`SA_RESTART | SA_NOCLDSTOP`) that counts every ended child
/// of any thread of this process and wakes [`wait_child_event`]. It takes no fd: a test sees
/// only the fds it is promised.
pub fn count_child_events() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_sigchld),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    // SAFETY: the handler only touches an atomic and calls futex(2), keeping errno.
    unsafe { sigaction(Signal::SIGCHLD, &act) }
        .map(drop)
        .map_err(|e| SysError::new("sigaction(SIGCHLD)", e))
}

/// The number of `SIGCHLD`s counted so far.
pub fn child_events() -> u32 {
    CHILD_EVENTS.load(Ordering::SeqCst)
}

/// Sleeps until the count of [`child_events`] is no longer `seen` (at once if it already is
/// not), or `timeout` passes.
pub fn wait_child_event(seen: u32, timeout: std::time::Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT on a live static atomic, with a relative timeout on this stack; it
    // returns at once if the value is not `seen`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            CHILD_EVENTS.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            seen,
            &ts as *const libc::timespec,
        );
    }
}

/// Whether `SIGCHLD` still has the handler of [`count_child_events`] (a test may replace it).
pub fn sigchld_handler_is_ours() -> bool {
    // SAFETY: reads the disposition into a zeroed struct; changes nothing.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == on_sigchld as *const () as libc::sighandler_t
    }
}

/// Reaps every ended child of the calling thread only (`__WNOTHREAD`), of any kind
/// (`__WALL`), without waiting: in PID 1's main thread, the orphans the kernel gave it, never a
/// child another thread (the test) forked and may be waiting for. Returns how many it reaped.
pub fn reap_own_children() -> usize {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let flags = WaitPidFlag::WNOHANG | WaitPidFlag::__WALL | WaitPidFlag::__WNOTHREAD;
    let mut reaped = 0;
    loop {
        match waitpid(None, Some(flags)) {
            Ok(WaitStatus::StillAlive) => return reaped,
            Ok(_) => reaped += 1,
            Err(Errno::EINTR) => continue,
            Err(_) => return reaped, // ECHILD: none at all
        }
    }
}

/// The guard zone of the thread armed by [`catch_stack_overflow`], its kernel thread id, and
/// the message to print when it overflows.
static GUARD_START: AtomicUsize = AtomicUsize::new(0);
static GUARD_END: AtomicUsize = AtomicUsize::new(0);
static GUARDED_TID: AtomicI32 = AtomicI32::new(0);
static OVERFLOW_MESSAGE: OnceLock<Vec<u8>> = OnceLock::new();

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for a SA_SIGINFO handler of SIGSEGV/SIGBUS;
    // gettid, write, sigaction and abort are async-signal-safe; the message was written before
    // the handler was installed and is never changed.
    unsafe {
        let addr = (*info).si_addr() as usize;
        let tid = libc::syscall(libc::SYS_gettid) as i32;
        let in_guard = GUARD_START.load(Ordering::Relaxed) <= addr
            && addr < GUARD_END.load(Ordering::Relaxed)
            && tid == GUARDED_TID.load(Ordering::Relaxed);
        if in_guard {
            if let Some(m) = OVERFLOW_MESSAGE.get() {
                libc::write(2, m.as_ptr().cast(), m.len());
            }
            libc::abort();
        }
        // Not an overflow of the guarded thread: the default action, as if never handled
        // (returning makes the faulting instruction fault again).
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &default, std::ptr::null_mut());
    }
}

/// Arms Rust's stack-overflow report on the calling thread: an overflow into its guard page
/// prints `message` (Rust's own "thread '…' has overflowed its stack" lines) and aborts, as the
/// Rust runtime does for every thread of a program that ran its `main` (a container enters
/// before `main`, so the runtime never set this up). Other faults keep their default action.
pub fn catch_stack_overflow(message: Vec<u8>) -> Result<()> {
    let _ = OVERFLOW_MESSAGE.set(message);
    // SAFETY: pthread_getattr_np fills the attr for this live thread, destroyed after use; the
    // alternate stack is a fresh anonymous mapping that stays for the life of the process;
    // the handler only makes async-signal-safe calls.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return Err(SysError::new("pthread_getattr_np", Errno::last()));
        }
        let (mut addr, mut size, mut guard) = (std::ptr::null_mut(), 0usize, 0usize);
        libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_getguardsize(&attr, &mut guard);
        libc::pthread_attr_destroy(&mut attr);
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let guard = guard.max(page);
        // As the Rust runtime does: glibc has counted the guard inside the stack, or not.
        let low = addr as usize;
        GUARD_START.store(low.saturating_sub(guard), Ordering::Relaxed);
        GUARD_END.store(low + guard, Ordering::Relaxed);
        GUARDED_TID.store(libc::syscall(libc::SYS_gettid) as i32, Ordering::Relaxed);

        let alt_size = 64 << 10;
        let alt = libc::mmap(
            std::ptr::null_mut(),
            alt_size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if alt == libc::MAP_FAILED {
            return Err(SysError::new("mmap(alternate signal stack)", Errno::last()));
        }
        let stack = libc::stack_t {
            ss_sp: alt,
            ss_flags: 0,
            ss_size: alt_size,
        };
        if libc::sigaltstack(&stack, std::ptr::null_mut()) != 0 {
            return Err(SysError::new("sigaltstack", Errno::last()));
        }
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_fault as *const () as libc::sighandler_t;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        for sig in [libc::SIGSEGV, libc::SIGBUS] {
            if libc::sigaction(sig, &act, std::ptr::null_mut()) != 0 {
                return Err(SysError::new(
                    format!("sigaction({})", super::signal_name(sig)),
                    Errno::last(),
                ));
            }
        }
    }
    Ok(())
}

/// Points the kernel's record of this process's environment (what `/proc/<pid>/environ` shows)
/// at `env`, `KEY=value` entries each ending in a NUL byte. A re-executed container child
/// was started with the harness's whole environment (and nstest's own variables), a fork
/// server's clone with the server's: what the process sees in `std::env` is cleaned in memory,
/// and this makes the kernel's copy say the same. `PR_SET_MM_MAP`, which needs no privilege
/// (only `CONFIG_CHECKPOINT_RESTORE`); the buffer lives as long as the process, which needs it
/// until it ends, and is on the heap (the kernel reads only anonymous memory for it).
fn set_environ_region(env: &'static [u8]) -> Result<()> {
    if env.is_empty() {
        return Ok(()); // an empty region is refused; nothing to show anyway
    }
    // One open and one read into a buffer on the stack (the line is under 1 KiB).
    let mut buf = [0u8; 2048];
    let n = std::fs::File::open("/proc/self/stat")
        .and_then(|mut f| std::io::Read::read(&mut f, &mut buf))
        .map_err(|e| SysError::new("read(/proc/self/stat)", errno_of(&e)))?;
    let fields = stat_fields(&buf[..n]);
    let field = |n: usize| fields[n - 3];
    if fields.len() < 49 {
        return Err(SysError::new("parse(/proc/self/stat)", Errno::EINVAL));
    }
    // SAFETY: brk(0) only reads the current break.
    let brk = unsafe { libc::syscall(libc::SYS_brk, 0) } as u64;
    let map = PrctlMmMap {
        start_code: field(26),
        end_code: field(27),
        start_data: field(45),
        end_data: field(46),
        start_brk: field(47),
        brk,
        start_stack: field(28),
        arg_start: field(48),
        arg_end: field(49),
        env_start: env.as_ptr() as u64,
        env_end: env.as_ptr() as u64 + env.len() as u64,
        auxv: std::ptr::null_mut(),
        auxv_size: 0,
        exe_fd: u32::MAX,
    };
    // SAFETY: the map holds this process's own layout as the kernel reported it, but for the
    // environment, which points at a leaked heap buffer; auxv and exe_fd are left unchanged.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP,
            &map as *const PrctlMmMap,
            std::mem::size_of::<PrctlMmMap>(),
            0,
        )
    };
    if r != 0 {
        return Err(SysError::new(
            "prctl(PR_SET_MM, PR_SET_MM_MAP)",
            Errno::last(),
        ));
    }
    Ok(())
}

/// The numeric fields of a `/proc/<pid>/stat` line from field 3 (the state, counted as 0) on:
/// those after the command name, which may hold spaces and parentheses. A field that is not a
/// number counts as 0.
fn stat_fields(line: &[u8]) -> Vec<u64> {
    let Some(close) = line.windows(2).rposition(|w| w == b") ") else {
        return Vec::new();
    };
    let mut fields = Vec::with_capacity(52);
    for word in line[close + 2..].split(|b| b.is_ascii_whitespace()) {
        if word.is_empty() {
            continue;
        }
        let mut n: u64 = 0;
        for &b in word {
            if !b.is_ascii_digit() {
                n = 0;
                break;
            }
            n = n.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
        }
        fields.push(n);
    }
    fields
}

/// `struct prctl_mm_map` of `<linux/prctl.h>` (the libc crate does not define it).
#[repr(C)]
struct PrctlMmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: *mut u64,
    auxv_size: u32,
    exe_fd: u32,
}

fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::stat_fields;

    #[test]
    fn stat_fields_start_after_the_command_name_whatever_it_holds() {
        let line = b"42 (a) b) (c) S 1 42 42 0 -1 4194560 99\n";
        // The state and the negative tty group are no numbers: they count as 0.
        assert_eq!(stat_fields(line), [0, 1, 42, 42, 0, 0, 4194560, 99]);
        assert!(stat_fields(b"42 no command name").is_empty());
        let own = std::fs::read("/proc/self/stat").unwrap();
        let fields = stat_fields(&own);
        // Up to `exit_code` (field 52), and field 4 is the parent's pid.
        assert!(fields.len() >= 50, "{fields:?}");
        assert_eq!(
            fields[4 - 3],
            u64::from(std::os::unix::process::parent_id())
        );
    }
}
