//! PID 1's duties while the test runs, as any init's (tini, `docker --init`): the test runs on a
//! thread of its own, named after it as libtest names its threads, while the main thread reaps
//! every orphan. The thread is started before the container's set-up, which hides its start-up
//! (about 150 µs: `clone3`, and its first run on the other CPU) behind the mounts.
//!
//! The kernel gives orphans to the namespace's child reaper, PID 1's main thread, whereas a
//! child belongs to the thread that forked it. So the main thread reaps with `__WNOTHREAD`
//! (its own children: the orphans, whatever their session) and never takes the exit status of a
//! child the test forked and may be waiting for. It sleeps until a `SIGCHLD` handler counts an
//! ended child; should the test replace that handler, it looks every 50 ms instead.

use std::io::Write;
use std::sync::mpsc::{sync_channel, SendError, SyncSender};
use std::time::Duration;

use super::{run, Reporter};
use crate::protocol::{Message, Outcome};
use crate::registry::TestDesc;
use crate::sys;

/// The test's thread, started before the container's set-up and waiting for the go.
pub struct TestThread(Option<SyncSender<Reporter>>);

impl TestThread {
    /// Starts the thread that will run `desc`, named `name` as libtest names a test's thread,
    /// with `RUST_MIN_STACK` (or Rust's default) as its stack size. It arms Rust's
    /// stack-overflow message for itself, then waits. Where no thread can be made (a
    /// `pids = 1` limit), the test will run on the main thread.
    pub fn spawn(desc: &'static TestDesc, name: &str, hold: bool) -> Self {
        let (go, wait) = sync_channel::<Reporter>(1);
        let thread_name = name.to_string();
        let spawned = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let tid = nix::unistd::gettid();
                // Rust's own message, as its runtime prints it for a thread of a program that
                // ran `main`.
                let _ = sys::catch_stack_overflow(
                    format!(
                        "\nthread '{thread_name}' ({tid}) has overflowed its stack\nfatal runtime error: stack overflow, aborting\n"
                    )
                    .into_bytes(),
                );
                if let Ok(reporter) = wait.recv() {
                    finish(run::run_test(desc), reporter, hold)
                }
            });
        Self(spawned.is_ok().then_some(go))
    }
}

/// Runs the test on its thread and reaps orphans on this one until the test's thread ends the
/// process (or runs it here if there is no test thread).
pub fn run_test(desc: &'static TestDesc, thread: TestThread, reporter: Reporter, hold: bool) -> ! {
    let counting = sys::count_child_events().is_ok();
    // A thread that could not be made, or is gone, leaves the test to this one.
    let reporter = match thread.0 {
        Some(go) => go.send(reporter).err().map(|SendError(r)| r),
        None => Some(reporter),
    };
    if let Some(reporter) = reporter {
        finish(run::run_test(desc), reporter, hold)
    }
    loop {
        let seen = sys::child_events();
        sys::reap_own_children();
        if counting && sys::sigchld_handler_is_ours() {
            sys::wait_child_event(seen, Duration::from_secs(1));
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Reports the outcome and ends the process (the whole container), or, for `NSTEST_SHELL`,
/// waits after a failure until the parent has opened its shell and kills it.
fn finish(outcome: Outcome, mut reporter: Reporter, hold: bool) -> ! {
    // The hosts the test started: killed, their output complete before the outcome is told.
    crate::spawned::end_all();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let failed = outcome != Outcome::Passed;
    if !failed {
        // The harness judges a passed test before this container is gone (`parent::reap`):
        // whatever the test left running ends first, so that nothing of it prints or writes
        // after its verdict. (A failed one is judged after the kernel has ended them all.)
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-1), nix::sys::signal::SIGKILL);
    }
    reporter.send(&Message::Outcome(outcome));
    if failed && hold {
        sys::wait_forever();
    }
    if failed {
        sys::exit_now(0)
    }
    // Passed: the pipes end now, and the harness judges the test while the kernel takes this
    // container down (`parent::reap`).
    sys::close_all_and_exit(0)
}
