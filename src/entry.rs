//! The one entry point: before `main` (a constructor, in every binary that links nstest) the
//! process asks the re-exec contract what it is, and becomes it: a container child, the fork
//! server, or an id-map helper task, none of which returns; any other process goes on to its
//! `main` (one that runs one isolated test after cloning that test's container or forking its
//! server, `parent::prefork`). This is what lets `#[nstest::test]` work in ordinary libtest targets and
//! `Container` in any binary.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use crate::reexec::{take_role, Role};

/// Becomes what the re-exec contract says this process is; returns in a process of its own.
/// Once per process (the constructor, and `nstest::init()` or `nstest::main!()` again).
pub(crate) fn dispatch() {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    match take_role() {
        // A process that runs one isolated test clones its container, or forks its fork server,
        // now, while pristine.
        Role::Own => {
            let made = crate::parent::prefork::prefork(crate::runner::spec_ahead);
            if made == crate::parent::prefork::Prefork::Server {
                crate::child::serve_fork_requests(true)
            }
        }
        Role::Container(hex) => crate::child::enter(&hex),
        Role::ForkServer => crate::child::serve_fork_requests(false),
        Role::IdMapTask => idmap_task(),
    }
}

/// An id-map helper's task (started by `idmap::Ranges::run_task`, in a user namespace with the
/// run's subordinate ids): `chown ROOT MANIFEST` or `rm PATH`. Exits.
fn idmap_task() -> ! {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let result = match args.as_slice() {
        [task, root, manifest] if *task == "chown" => {
            crate::rootfs::owners::apply(Path::new(root), Path::new(manifest))
        }
        [task, path] if *task == "rm" => {
            std::fs::remove_dir_all(path).map_err(|e| format!("remove {path:?}: {e}"))
        }
        _ => Err(format!("unknown task {args:?}")),
    };
    if let Err(e) = result {
        eprintln!("{e}");
        crate::sys::exit_now(1);
    }
    crate::sys::exit_now(0)
}

// SAFETY: runs before `main`, in every binary that links nstest (the only `unsafe` outside
// `sys`: the constructor's link section). It acts in a process the harness started with one of
// the re-exec contract's variables set, and never returns there, and in a process whose
// command line names one isolated test, where it clones that test's container or forks a
// server (neither returns) and returns in the harness; it uses the environment, files and
// system calls, none of which depends on the Rust runtime's `main` set-up.
#[allow(unsafe_code)]
#[ctor::ctor(unsafe)]
fn before_main() {
    dispatch();
}
