//! `NSTEST_SHELL=1`: when a test fails, a shell inside its container — `docker exec` for a failed
//! test — before the harness goes on.
//!
//! The child (PID 1) reports its failing outcome and then waits instead of exiting; the harness
//! starts `/bin/sh` joined to all of its namespaces (through its pidfd), on the terminal, and
//! kills the container when the shell exits. Shells of tests failing in parallel take turns.

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Mutex;

use nix::sched::CloneFlags;

use crate::sys::{self, Cloned};

/// `NSTEST_SHELL=1`, and a terminal to talk to.
pub(crate) fn wanted() -> bool {
    crate::settings::shell() && sys::stdin_is_terminal()
}

/// Runs an interactive shell in the container of `cloned` and waits for it to exit.
pub(crate) fn open(cloned: &Cloned, test: &str, userns: bool, host_net: bool) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!("\nnstest: {test} failed. A shell in its container (same rootfs state, hostname, mounts); exit to go on.");
    let mut flags = CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP;
    if !host_net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if userns {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    // The shell that joins the namespaces is not in the PID namespace itself (only its children
    // are): it starts the interactive shell as its child, which is.
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "/bin/sh; :"])
        .env_clear()
        .env("PATH", crate::spec::CONTAINER_PATH)
        .env("HOME", "/root")
        .env("PS1", format!("[{test}] \\w # "));
    if let Ok(term) = std::env::var("TERM") {
        cmd.env("TERM", term);
    }
    sys::join_namespaces(&mut cmd, cloned.pidfd.as_raw_fd(), flags);
    if let Err(e) = cmd.status() {
        eprintln!("nstest: could not open a shell in the container: {e}");
    }
}
