//! The host side of a container: prepare the rootfs, spawn, supervise, and judge what came back.

pub(crate) mod forkserver;
mod judge;
pub(crate) mod netns;
pub(crate) mod package;
pub(crate) mod prefork;
pub(crate) mod probe;
mod reap;
pub(crate) mod shell;
pub(crate) mod spawn;
pub(crate) mod supervise;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use once_cell::sync::Lazy;

use crate::error::Error;
use crate::protocol::{BaseSpec, ChildSpec, Message, Outcome, RunSpec};
use crate::rootfs::{self, Base};
use crate::spec::{Bind, Limits, Net, RootfsSource};
pub(crate) use judge::{judge_test, setup_failure, Verdict};
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
    /// A place on a [`crate::Network`]: `eth0`, made while the child is held.
    pub network: Option<crate::network::Attachment>,
    /// Each line of captured stdout (`[0]`) and stderr (`[1]`) is also written to this
    /// process's stderr after this prefix (a host's output, shown with the test's).
    pub echo: [Option<String>; 2],
}

/// A container started by [`Launch::start`], set up or on its way; [`Started::finish`] waits.
pub(crate) struct Started {
    running: spawn::Running,
    cgroup: Option<crate::cgroup::TestCgroup>,
    kept: Option<std::path::PathBuf>,
    _disk_layer: Option<RemoveOnDrop>,
    shell: Option<(String, bool, bool)>,
    timeout: Option<Duration>,
    capture_limit: Option<usize>,
    echo: [Option<String>; 2],
    network: Option<crate::network::Attachment>,
    /// A test's container, judged as soon as it has passed and closed its pipes, and reaped
    /// later (`reap`): nothing waits for its end here (no cgroup to remove, no layer to keep
    /// or remove, no shell, no network).
    early: bool,
}

impl Launch<'_> {
    /// Prepares the rootfs (once per run), starts the container and waits for it.
    pub(crate) fn run(self) -> Result<Finished, Error> {
        self.start()?.finish(&mut |_| {})
    }

    /// Prepares the rootfs (once per run) and starts the container, released to set itself up.
    pub(crate) fn start(self) -> Result<Started, Error> {
        if crate::reexec::is_container_child() {
            return Err(Error::NotInitialized);
        }
        crate::spec::validate_hostname(self.hostname)?;
        // The harness reads the exit status of its containers and helpers (a rootfs builder,
        // `newuidmap`): with SIGCHLD ignored, the kernel would reap them and drop it.
        crate::sys::unignore_sigchld();
        let (mut spec, keep_upper, disk_layer) = self.prepare()?;
        let cgroup = crate::cgroup::TestCgroup::create(&self.limits).map_err(Error::Cgroup)?;
        let ranges = crate::idmap::ranges().filter(|_| spec.userns);
        let hold = cgroup.is_some() || ranges.is_some() || self.network.is_some();
        let mut running = spawn::spawn(&mut spec, &self.args, self.stdio, hold)?;
        if hold {
            // The child waits before its set-up: give it its id maps, cgroups and interface.
            let pid = running.cloned.pid;
            let ready = ranges
                .map_or(Ok(()), |r| r.apply(pid).map_err(Error::IdMap))
                .and_then(|()| match &cgroup {
                    Some(cg) => cg.place(pid.as_raw()).map_err(Error::Cgroup),
                    None => Ok(()),
                })
                .and_then(|()| match &self.network {
                    Some(n) => n.attach(pid.as_raw()).map_err(Error::Network),
                    None => Ok(()),
                });
            if let Err(e) = ready {
                running.cloned.kill_and_reap();
                return Err(e);
            }
        }
        // Also a child of the fork server waits, until the harness holds its pidfd.
        if let Err(e) = running.release() {
            running.cloned.kill_and_reap();
            return Err(e);
        }
        let shell = match &spec.run {
            RunSpec::Test(name) if spec.hold_on_failure => {
                Some((name.clone(), spec.userns, spec.host_net))
            }
            _ => None,
        };
        let early = matches!(spec.run, RunSpec::Test(_))
            && cgroup.is_none()
            && keep_upper.is_none()
            && disk_layer.is_none()
            && shell.is_none()
            && self.network.is_none();
        Ok(Started {
            early,
            running,
            cgroup,
            kept: keep_upper,
            _disk_layer: disk_layer,
            shell,
            timeout: self.timeout,
            capture_limit: self.capture_limit,
            echo: self.echo,
            network: self.network,
        })
    }

    /// Prepares the rootfs (once per run) and the writable layer's place when that is on disk
    /// (kept, or a directory of the cache): the container's spec, `held_before_run` left to
    /// `spawn`.
    pub(crate) fn prepare(
        &self,
    ) -> Result<(ChildSpec, Option<PathBuf>, Option<RemoveOnDrop>), Error> {
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
        let spec = self.child_spec(
            prepared,
            keep_upper
                .clone()
                .or_else(|| disk_layer.as_ref().map(|d| d.0.clone())),
        )?;
        Ok((spec, keep_upper, disk_layer))
    }

    /// The spec of this launch's container over `prepared`, its writable layer in `keep_upper`
    /// when that is on disk. `held_before_run` is left to `spawn`.
    fn child_spec(
        &self,
        prepared: rootfs::Prepared,
        keep_upper: Option<PathBuf>,
    ) -> Result<ChildSpec, Error> {
        Ok(ChildSpec {
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
            env: self.env.clone(),
            workdir: self
                .workdir
                .clone()
                .or_else(|| self.package.as_ref().map(|p| p.workdir.clone())),
            keep_upper,
            hold_on_failure: self.shell_on_failure,
            interface: self.network.as_ref().map(|n| n.interface()),
            // A test shows its rootfs to the containers it starts: they inherit it, and need
            // not build a root of their own inside the test.
            expose_base: matches!(self.run, RunSpec::Test(_)),
            held_before_run: false, // decided by `spawn`
            run: self.run.clone(),
        })
    }

    /// The spec [`Launch::start`] will send for this launch's container, worked out ahead (before
    /// `main`, for the container cloned then, which sets itself up while the harness starts: see
    /// `prefork`), when nothing else is to be done for it: as root, no cgroup, nothing kept, the
    /// writable layer in memory, no shell, no network, a network namespace of its own, and a
    /// rootfs ready without any work. `None` otherwise.
    pub(crate) fn spec_ahead(&self) -> Option<ChildSpec> {
        let simple = !rootless()
            && self.net != Net::Host
            && self.limits.is_empty()
            && self.keep.is_none()
            && !self.shell_on_failure
            && self.network.is_none()
            && !*LAYER_ON_DISK;
        if !simple {
            return None;
        }
        let source = match self.rootfs {
            RootfsSource::Default => rootfs::default_source_cached(self.base_dir).ok()?,
            s => s.clone(),
        };
        let mut spec = self
            .child_spec(rootfs::prepared_if_ready(&source)?, None)
            .ok()?;
        // Cloned ahead, and held back by nothing else.
        spec.held_before_run = spawn::held_before_run(true, false, &spec);
        Some(spec)
    }
}

impl Started {
    /// The container's PID 1, as this process's PID namespace numbers it.
    pub(crate) fn pid(&self) -> i32 {
        self.running.cloned.pid.as_raw()
    }

    /// A second fd of the container's pidfd (signals without pid-reuse races).
    pub(crate) fn pidfd(&self) -> Result<std::os::fd::OwnedFd, Error> {
        self.running.cloned.pidfd.try_clone().map_err(|e| {
            Error::Host(crate::sys::SysError::new(
                "dup(pidfd)",
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)),
            ))
        })
    }

    /// Kills the container (its whole PID namespace) and reaps it: for an error of the caller's
    /// after the start.
    pub(crate) fn abandon(self) {
        self.running.cloned.kill_and_reap();
    }

    /// Waits for the container to end (killed at its timeout), its output drained.
    /// `on_message` sees each report message as it arrives.
    pub(crate) fn finish(self, on_message: &mut dyn FnMut(&Message)) -> Result<Finished, Error> {
        let Started {
            running,
            cgroup,
            kept,
            _disk_layer,
            shell,
            timeout,
            capture_limit,
            echo,
            network,
            early,
        } = self;
        let kill_cgroup = || {
            if let Some(cg) = &cgroup {
                cg.kill();
            }
        };
        let mut on_message = |m: &Message, cloned: &crate::sys::Cloned| {
            if let (Message::SetupDone, Some(n)) = (m, &network) {
                if let Err(e) = n.publish() {
                    note_once(&e.to_string());
                }
            }
            on_message(m);
            if let Some((test, userns, host_net)) = &shell {
                if matches!(m, Message::Outcome(o) if *o != Outcome::Passed) {
                    shell::open(cloned, test, *userns, *host_net);
                    cloned.kill();
                }
            }
        };
        let mut finished = supervise::supervise(
            running,
            timeout,
            capture_limit,
            [echo[0].as_deref(), echo[1].as_deref()],
            early,
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
pub(crate) struct RemoveOnDrop(std::path::PathBuf);

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
