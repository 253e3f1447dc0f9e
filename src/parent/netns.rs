//! Network namespaces made ahead of need (root only), so that making one — about half a
//! millisecond, serialized in the kernel — is off each container's critical path.
//!
//! A background thread keeps a few fresh namespaces ready: it `unshare(CLONE_NEWNET)`s itself,
//! brings `lo` up there, and keeps an fd of the namespace. A container takes one (never shared:
//! each is handed out once) and enters it with `setns` before its set-up. In a user
//! namespace (rootless) a container could not enter a namespace the host owns: it makes its own.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Condvar, Mutex};

use once_cell::sync::Lazy;

use crate::sys;

/// How many namespaces are kept ready.
const READY: usize = 4;

struct Pool {
    ready: Mutex<VecDeque<OwnedFd>>,
    /// Signalled when one is taken (the maker refills).
    taken: Condvar,
}

static POOL: Lazy<Option<&'static Pool>> = Lazy::new(|| {
    if !crate::settings::netns_pool() {
        return None;
    }
    let pool: &'static Pool = Box::leak(Box::new(Pool {
        ready: Mutex::new(VecDeque::new()),
        taken: Condvar::new(),
    }));
    let started = std::thread::Builder::new()
        .name("nstest-netns".into())
        .spawn(move || loop {
            let mut ready = pool.ready.lock().unwrap_or_else(|e| e.into_inner());
            while ready.len() >= READY {
                ready = pool.taken.wait(ready).unwrap_or_else(|e| e.into_inner());
            }
            drop(ready);
            match sys::new_netns_with_lo() {
                Ok(fd) => pool
                    .ready
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_back(fd),
                Err(_) => return, // not permitted here: containers make their own
            }
        });
    started.ok().map(|_| pool)
});

/// A fresh network namespace with `lo` up, if one is ready; `None`: make one in the clone.
/// The first call starts the pool.
pub(crate) fn take() -> Option<OwnedFd> {
    let pool = (*POOL)?;
    let fd = pool
        .ready
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop_front();
    pool.taken.notify_one();
    fd
}
