//! Containers whose test passed, left to end on their own and reaped later.
//!
//! A container's PID 1 that reports a passed test closes all its fds and exits; the harness,
//! seeing the outcome and the end of every pipe, judges the test there and then, while the
//! kernel takes the container's memory, mounts and namespaces down (about half a millisecond
//! here) on another CPU. The container is reaped at the next container's start if it has ended
//! by then, and at the latest when the harness exits (an `atexit` handler waits for each one),
//! so that no process outlives the harness.

use std::sync::Mutex;

use crate::sys::{self, Cloned};

static PENDING: Mutex<Vec<Cloned>> = Mutex::new(Vec::new());

/// The process that registered the `atexit` handler: a process forked from it (a test's own
/// `fork` in a libtest target) inherits the handler, and must leave the list alone.
static OWNER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Leaves `cloned` to end on its own: reaped by [`ended`] or when the process exits.
pub(crate) fn later(cloned: Cloned) {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    let mut registered = true;
    AT_EXIT.call_once(|| {
        OWNER.store(std::process::id(), std::sync::atomic::Ordering::Relaxed);
        registered = sys::at_exit(at_exit).is_ok();
    });
    if !registered {
        // Nothing would reap it before the harness ends: wait now, as without this module.
        let _ = sys::wait_raw(cloned.pid);
        return;
    }
    lock().push(cloned);
}

/// Reaps those that have ended (called as a container starts, so the list stays short).
pub(crate) fn ended() {
    lock().retain(|c| !sys::try_reap(c.pid));
}

/// Waits for every container still ending.
fn all() {
    for c in lock().drain(..) {
        let _ = sys::wait_raw(c.pid);
    }
}

extern "C" fn at_exit() {
    if OWNER.load(std::sync::atomic::Ordering::Relaxed) != std::process::id() {
        return;
    }
    // Must not unwind into the C library.
    let _ = std::panic::catch_unwind(all);
}

fn lock() -> std::sync::MutexGuard<'static, Vec<Cloned>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}
