//! The host side of a container: prepare the rootfs, spawn, supervise, and judge what came back.

pub(crate) mod forkserver;
pub(crate) mod netns;
pub(crate) mod package;
pub(crate) mod prefork;
pub(crate) mod probe;
pub(crate) mod shell;
pub(crate) mod spawn;
pub(crate) mod supervise;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use once_cell::sync::Lazy;

use crate::error::{describe_status, Error};
use crate::protocol::{BaseSpec, ChildSpec, Message, Outcome, RunSpec};
use crate::rootfs::{self, Base};
use crate::spec::{format_duration, Bind, Limits, Net, RootfsSource};
pub(crate) use spawn::{Out, StdioSetup};
pub(crate) use supervise::Finished;

/// `NSTEST_OVERLAY=off` (or `0`): every container gets a private copy of its rootfs, as when
/// overlayfs is refused. Read once per run.
static OVERLAY: Lazy<bool> = Lazy::new(crate::settings::overlay);

/// Rootless mode: the effective uid is not 0, or `NSTEST_ROOTLESS=1`. Containers then also get
/// a user namespace in which the caller is root.
pub(crate) fn rootless() -> bool {
    crate::settings::rootless()
}

/// Whether containers get an overlay (not `NSTEST_OVERLAY=off`).
pub(crate) fn overlay_enabled() -> bool {
    *OVERLAY
}

/// Whether an overlay's writable layer is on disk (see [`LAYER_ON_DISK`]).
pub(crate) fn layer_on_disk() -> bool {
    *LAYER_ON_DISK
}

/// One container to run.
#[derive(Debug)]
pub(crate) struct Launch<'a> {
    pub rootfs: &'a RootfsSource,
    /// Where relative paths in `NSTEST_ROOTFS` start.
    pub base_dir: &'a Path,
    pub hostname: &'a str,
    pub net: Net,
    pub run: RunSpec,
    /// Arguments after argv[0] of the re-executed binary (without the fork server: its clones
    /// keep the server's argv, argv[0] alone).
    pub args: Vec<String>,
    pub stdio: StdioSetup,
    pub timeout: Option<Duration>,
    pub capture_limit: Option<usize>,
    /// Resource limits (a cgroup of its own when any is set).
    pub limits: Limits,
    /// The test's package, shown read-only at its own paths (see [`package`]).
    pub package: Option<package::PackageView>,
    /// Host paths bound in.
    pub binds: Vec<Bind>,
    /// Variables of the otherwise clean environment.
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub workdir: Option<std::path::PathBuf>,
    /// `NSTEST_KEEP=1`: keep the overlay's writes on disk under this name (see [`Finished::kept`]).
    pub keep: Option<String>,
    /// `NSTEST_SHELL=1` (with a terminal): a shell in the container if the test fails.
    pub shell_on_failure: bool,
}

impl Launch<'_> {
    /// Prepares the rootfs (once per run), starts the container and waits for it.
    pub(crate) fn run(self) -> Result<Finished, Error> {
        if crate::reexec::is_container_child() {
            return Err(Error::NotInitialized);
        }
        crate::spec::validate_hostname(self.hostname)?;
        // The harness reads the exit status of its containers and helpers (a rootfs builder,
        // `newuidmap`): with SIGCHLD ignored, the kernel would reap them and drop it.
        crate::sys::unignore_sigchld();
        let source = match self.rootfs {
            RootfsSource::Default => rootfs::default_source_cached(self.base_dir)?,
            s => s.clone(),
        };
        let prepared = rootfs::prepare(&source)?;
        let keep_upper = match (&self.keep, &prepared.base) {
            (Some(name), Base::Dir(_)) if *OVERLAY => Some(rootfs::keep_dir(name)?),
            _ => None,
        };
        let disk_layer = match (&keep_upper, &prepared.base) {
            (None, Base::Dir(_)) if *OVERLAY && *LAYER_ON_DISK => {
                Some(RemoveOnDrop(rootfs::disk_layer_dir()?))
            }
            _ => None,
        };
        let spec = ChildSpec {
            scratch: prepared.scratch,
            base: match prepared.base {
                Base::Dir(d) => BaseSpec::Lower(d),
                Base::Host => BaseSpec::Host,
            },
            overlay: *OVERLAY,
            hostname: self.hostname.to_string(),
            userns: rootless(),
            host_net: self.net == Net::Host,
            package: self
                .package
                .iter()
                .flat_map(|p| {
                    let trees = p.trees.iter().map(|(h, t)| (h.clone(), t.clone(), false));
                    trees.chain(p.loader.iter().map(|(h, t)| (h.clone(), t.clone(), true)))
                })
                .collect(),
            tmpfs: self
                .package
                .as_ref()
                .and_then(|p| p.target_tmpdir.clone())
                .into_iter()
                .collect(),
            binds: self
                .binds
                .iter()
                .map(|b| {
                    let host = b
                        .host
                        .canonicalize()
                        .map_err(|e| Error::BindSource(b.host.clone(), e))?;
                    Ok((host, b.target.clone(), b.read_only))
                })
                .collect::<Result<_, Error>>()?,
            env: self.env,
            workdir: self
                .workdir
                .or_else(|| self.package.as_ref().map(|p| p.workdir.clone())),
            keep_upper: keep_upper
                .clone()
                .or_else(|| disk_layer.as_ref().map(|d| d.0.clone())),
            hold_on_failure: self.shell_on_failure,
            run: self.run,
        };
        let cgroup = crate::cgroup::TestCgroup::create(&self.limits).map_err(Error::Cgroup)?;
        let ranges = crate::idmap::ranges().filter(|_| spec.userns);
        let hold = cgroup.is_some() || ranges.is_some();
        let mut running = spawn::spawn(&spec, &self.args, self.stdio, hold)?;
        if hold {
            // The child waits before its set-up: give it its id maps and cgroups.
            let pid = running.cloned.pid;
            let ready = ranges
                .map_or(Ok(()), |r| r.apply(pid).map_err(Error::IdMap))
                .and_then(|()| match &cgroup {
                    Some(cg) => cg.place(pid.as_raw()).map_err(Error::Cgroup),
                    None => Ok(()),
                });
            if let Err(e) = ready {
                running.cloned.kill_and_reap();
                return Err(e);
            }
        }
        // Also a child of the fork server waits, until the harness holds its pidfd.
        running.release()?;
        let kill_cgroup = || {
            if let Some(cg) = &cgroup {
                cg.kill();
            }
        };
        let kept = keep_upper;
        let (test, userns, host_net) = match &spec.run {
            RunSpec::Test(name) => (name.as_str(), spec.userns, spec.host_net),
            _ => ("", false, false),
        };
        let mut on_message = |m: &Message, cloned: &crate::sys::Cloned| {
            if spec.hold_on_failure && matches!(m, Message::Outcome(o) if *o != Outcome::Passed) {
                shell::open(cloned, test, userns, host_net);
                cloned.kill();
            }
        };
        let mut finished = supervise::supervise(
            running,
            self.timeout,
            self.capture_limit,
            &kill_cgroup,
            &mut on_message,
        )?;
        if finished.setup_done() {
            probe::made_one();
        }
        if let Some(cg) = &cgroup {
            finished.limits = cg.explain(&cg.usage());
        }
        // A container that fell back to a copy kept nothing on disk.
        finished.kept = kept.filter(|_| !finished.messages.contains(&Message::RootfsCopied));
        drop(cgroup); // removed now, always
        for m in &finished.messages {
            if let Message::Note(n) = m {
                note_once(n);
            }
        }
        Ok(finished)
    }
}

/// Whether each overlay's writable layer goes in a directory of the cache (on disk) instead of
/// the container's tmpfs: `NSTEST_UPPER=disk` (tests that write more than fits in memory), and
/// rootless before Linux 6.6, where tmpfs keeps no `user.*` xattrs, which overlayfs needs for
/// its whiteouts in a user namespace. Decided once per run.
static LAYER_ON_DISK: Lazy<bool> = Lazy::new(|| {
    if crate::settings::upper_on_disk() {
        return true;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let old_tmpfs = (v.next().unwrap_or(0), v.next().unwrap_or(0)) < (6, 6);
    if rootless() && old_tmpfs {
        note_once(
            "tmpfs keeps no user.* xattrs before Linux 6.6, which rootless overlayfs needs: \
             each test's writable layer is a directory in the cache instead",
        );
    }
    rootless() && old_tmpfs
});

/// A directory removed when this is dropped, however the container ended.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        rootfs::cache::remove_tree(&self.0);
    }
}

/// Prints a note from a container once per run, however many containers send it.
fn note_once(note: &str) {
    static SEEN: Lazy<Mutex<HashSet<String>>> = Lazy::new(Default::default);
    if SEEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(note.to_string())
    {
        eprintln!("nstest: note: {note}");
    }
}

/// Why the container never got as far as its test or command, if it did not: the set-up
/// failure it reported, or, without a `SetupDone`, the timeout (`timeout`) that killed it, a
/// garbled report, or its death. Whatever a container does after `SetupDone` is judged apart.
pub(crate) fn setup_failure(f: &Finished, timeout: Option<Duration>) -> Option<Error> {
    if let Some(e) = reported_setup_error(f) {
        return Some(e);
    }
    if f.setup_done() {
        return None;
    }
    Some(match (&f.protocol_error, timeout) {
        (_, Some(t)) if f.timed_out => Error::SetupTimedOut(t),
        (Some(e), _) => Error::Protocol(e.clone()),
        (None, _) => Error::DiedDuringSetup(f.status),
    })
}

/// The set-up failure the child reported, if any.
fn reported_setup_error(f: &Finished) -> Option<Error> {
    f.messages.iter().find_map(|m| match m {
        Message::SetupFailed {
            step,
            detail,
            errno,
        } => Some(Error::Setup {
            step: *step,
            detail: detail.clone(),
            errno: nix::errno::Errno::from_raw(*errno),
        }),
        _ => None,
    })
}

/// What a test run came to.
#[derive(Debug)]
pub(crate) enum Verdict {
    Passed,
    /// The test failed; the reason, as the user reads it.
    Failed(String),
    /// nstest could not run the test.
    Error(Error),
}

/// Judges a finished test container; what the resource limits did is said with the reason.
pub(crate) fn judge_test(f: &Finished, timeout: Duration) -> Verdict {
    match (judge_outcome(f, timeout), &f.limits) {
        (Verdict::Failed(_), Some(note))
            if note.starts_with("killed: out of memory") && f.status.code().is_none() =>
        {
            Verdict::Failed(note.clone())
        }
        (Verdict::Failed(reason), Some(note)) => Verdict::Failed(format!("{reason}\n{note}")),
        (v, _) => v,
    }
}

fn judge_outcome(f: &Finished, timeout: Duration) -> Verdict {
    if let Some(e) = setup_failure(f, Some(timeout)) {
        return Verdict::Error(e);
    }
    let outcome = f.messages.iter().find_map(|m| match m {
        Message::Outcome(o) => Some(o),
        _ => None,
    });
    if let Some(o) = outcome {
        return match o {
            Outcome::Passed => Verdict::Passed,
            Outcome::Panicked { message, location } => Verdict::Failed(match location {
                Some(l) => format!("test panicked at {l}: {message}"),
                None => format!("test panicked: {message}"),
            }),
            Outcome::ReturnedErr { debug } => Verdict::Failed(format!("test returned an error: {debug}")),
            Outcome::DidNotPanic { expected: None } => Verdict::Failed("test did not panic as expected".into()),
            Outcome::DidNotPanic { expected: Some(e) } => {
                Verdict::Failed(format!("test did not panic as expected (expected a panic containing {e:?})"))
            }
            Outcome::WrongPanic { message, expected } => Verdict::Failed(format!(
                "panic did not contain expected string\n      panic message: {message:?}\n expected substring: {expected:?}"
            )),
        };
    }
    if f.timed_out {
        return Verdict::Failed(format!(
            "timed out after {} (PID 1 and every process of the container were killed)",
            format_duration(timeout)
        ));
    }
    if let Some(sig) = f.messages.iter().find_map(|m| match m {
        Message::FatalSignal(s) => Some(*s),
        _ => None,
    }) {
        return Verdict::Failed(format!(
            "test killed by signal {}",
            crate::sys::signal_name(sig)
        ));
    }
    if let Some(e) = &f.protocol_error {
        return Verdict::Error(Error::Protocol(e.clone()));
    }
    Verdict::Failed(match f.status.code() {
        Some(code) => format!(
            "test process exited with code {code} before reporting a result (std::process::exit or similar inside the test?)"
        ),
        None => format!("test {}", describe_status(f.status)),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;
    use std::time::Duration;

    use super::{judge_test, Error, Finished, Verdict};
    use crate::protocol::{Message, Outcome};

    fn finished(messages: Vec<Message>, status: ExitStatus, timed_out: bool) -> Finished {
        Finished {
            status,
            messages,
            protocol_error: None,
            stdout: Default::default(),
            stderr: Default::default(),
            timed_out,
            limits: None,
            kept: None,
        }
    }

    const SIGKILL: i32 = libc::SIGKILL;
    const SIGABRT: i32 = libc::SIGABRT;
    const TIMEOUT: Duration = Duration::from_millis(300);

    #[test]
    fn a_timeout_before_set_up_is_done_is_nstests_error_not_the_tests() {
        let f = finished(vec![], ExitStatus::from_raw(SIGKILL), true);
        match judge_test(&f, TIMEOUT) {
            Verdict::Error(e @ Error::SetupTimedOut(d)) => {
                assert_eq!(d, TIMEOUT);
                assert!(e
                    .to_string()
                    .contains("set-up did not finish within the timeout of 300ms"));
            }
            v => panic!("{v:?}"),
        }
        // Once set up, the same timeout is the test's.
        let f = finished(
            vec![Message::SetupDone],
            ExitStatus::from_raw(SIGKILL),
            true,
        );
        match judge_test(&f, TIMEOUT) {
            Verdict::Failed(reason) => {
                assert!(reason.contains("timed out after 300ms"), "{reason}")
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_fatal_signal_before_set_up_is_done_is_a_death_during_set_up() {
        let f = finished(
            vec![Message::FatalSignal(SIGABRT)],
            ExitStatus::from_raw(SIGABRT),
            false,
        );
        assert!(matches!(
            judge_test(&f, TIMEOUT),
            Verdict::Error(Error::DiedDuringSetup(_))
        ));
        let f = finished(
            vec![Message::SetupDone, Message::FatalSignal(SIGABRT)],
            ExitStatus::from_raw(SIGABRT),
            false,
        );
        match judge_test(&f, TIMEOUT) {
            Verdict::Failed(reason) => assert_eq!(reason, "test killed by signal SIGABRT"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn an_outcome_is_judged_after_set_up() {
        let f = finished(
            vec![Message::SetupDone, Message::Outcome(Outcome::Passed)],
            ExitStatus::from_raw(0),
            false,
        );
        assert!(matches!(judge_test(&f, TIMEOUT), Verdict::Passed));
    }
}
