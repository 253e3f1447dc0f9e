//! Resource limits: each limited test in a cgroup of its own, under one cgroup for the run.
//!
//! cgroup v2 is used where our cgroup's controllers include the ones asked for; otherwise the
//! v1 hierarchies that carry them (a v1+v2 hybrid machine binds memory, pids and cpu to v1).
//! The run's cgroup is `nstest-<pid>-<pid namespace inode>` under the harness's own cgroup in
//! each v1 hierarchy, and on v2 under the nearest cgroup that passes the controllers on (see
//! `v2_parent`); a test's is `t<n>` below it, made before the container starts, removed after
//! it ends — always. Run cgroups of our PID namespace whose pid is dead (a killed harness) are
//! removed by the next run that sets a limit, which says so.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use once_cell::sync::Lazy;

use crate::spec::{format_bytes, Limits};

/// A limit that could not be applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupError {
    /// No mounted cgroup hierarchy, v1 or v2, offers the controller.
    NoController(&'static str),
    /// A cgroup file or directory could not be written.
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The errno.
        errno: Errno,
    },
}

impl fmt::Display for CgroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoController(c) => write!(
                f,
                "cannot apply the {c} limit: no cgroup hierarchy (v1 or v2) offers the {c} controller here"
            ),
            Self::Write { path, errno } => {
                write!(f, "cannot apply the limit: writing {} => {errno:?} ({})", path.display(), errno.desc())?;
                if matches!(errno, Errno::EACCES | Errno::EPERM | Errno::EROFS) {
                    f.write_str(": cgroups are not delegated to this user; run as root, or under systemd with Delegate=yes (e.g. `systemd-run --user --scope -p Delegate=yes cargo test`)")?;
                }
                if matches!(errno, Errno::EBUSY | Errno::EOPNOTSUPP) {
                    f.write_str(": cgroup v2 will not enable controllers below a cgroup that holds processes, and no cgroup above it that nstest may write passes them on; run the tests in a cgroup of their own (e.g. `systemd-run --scope -p Delegate=yes cargo test`)")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for CgroupError {}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|e| CgroupError::Write {
        path: path.to_path_buf(),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CgroupError::Write {
            path: path.to_path_buf(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        }),
    }
}

/// A controller's directory for this run (`…/nstest-<pid>-<ns>`) and its cgroup version.
#[derive(Clone, Debug)]
struct Dir {
    run: PathBuf,
    v2: bool,
}

/// Where each controller lives for this run.
#[derive(Debug, Default)]
struct Run {
    memory: Option<Dir>,
    pids: Option<Dir>,
    cpu: Option<Dir>,
}

/// The cgroup mounts: `(mountpoint, mount root, fstype, super options)`.
fn cgroup_mounts() -> Vec<(PathBuf, String, String, String)> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let left: Vec<&str> = left.split_whitespace().collect();
            let right: Vec<&str> = right.split_whitespace().collect();
            let fstype = *right.first()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some((
                PathBuf::from(left.get(4)?),
                left.get(3)?.to_string(),
                fstype.to_string(),
                right.get(2)?.to_string(),
            ))
        })
        .collect()
}

/// Our cgroup path in the hierarchy whose `/proc/self/cgroup` controller field matches.
fn own_path(field: impl Fn(&str) -> bool) -> Option<String> {
    let s = fs::read_to_string("/proc/self/cgroup").ok()?;
    s.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        field(controllers).then(|| path.to_string())
    })
}

fn join(mountpoint: &Path, mount_root: &str, path: &str) -> PathBuf {
    let rel = path
        .strip_prefix(mount_root)
        .unwrap_or(path)
        .trim_start_matches('/');
    mountpoint.join(rel)
}

/// The directory our process sits in for `controller`, and whether it is v2.
fn locate(controller: &'static str) -> Option<(PathBuf, bool)> {
    let mounts = cgroup_mounts();
    // v2 first, where it offers the controller.
    if let Some((mp, root, _, _)) = mounts.iter().find(|m| m.2 == "cgroup2") {
        if let Some(path) = own_path(|c| c.is_empty()) {
            let own = join(mp, root, &path);
            if let Some(dir) = v2_parent(&own, mp, controller) {
                return Some((dir, true));
            }
            // Offered but nowhere writable: our own cgroup, so that the failure names the cause
            // (not delegated; processes in the way).
            let offered = fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
            if offered.split_whitespace().any(|c| c == controller) {
                return Some((own, true));
            }
        }
    }
    let (mp, root, _, _) = mounts
        .iter()
        .find(|m| m.2 == "cgroup" && m.3.split(',').any(|o| o == controller))?;
    let path = own_path(|c| c.split(',').any(|x| x == controller))?;
    Some((join(mp, root, &path), false))
}

/// Where the run's cgroup goes on v2, starting from our own cgroup `own` and going up to the
/// hierarchy's `top`: the nearest cgroup we may write whose children get `controller`, i.e. that
/// has it in `cgroup.subtree_control`. Failing that, our own cgroup if it is the real root
/// (exempt from the no-internal-processes rule) and offers the controller: nstest enables it. (On a
/// systemd machine the harness shares a session scope with the shell, and the kernel refuses
/// controllers there: the run's cgroup goes beside that scope, under the slice.)
fn v2_parent(own: &Path, top: &Path, controller: &str) -> Option<PathBuf> {
    let has = |d: &Path, file: &str| {
        fs::read_to_string(d.join(file))
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == controller)
    };
    let writable = |d: &Path| nix::unistd::access(d, nix::unistd::AccessFlags::W_OK).is_ok();
    let mut d = own;
    loop {
        if has(d, "cgroup.subtree_control") && writable(d) {
            return Some(d.to_path_buf());
        }
        if d == top {
            // Our own cgroup is the real root (exempt from the no-internal-processes rule; a
            // cgroup namespace's root is not: it has a type): it may enable the controller.
            let real_root = d == own && !d.join("cgroup.type").exists();
            return (real_root && has(d, "cgroup.controllers") && writable(d))
                .then(|| d.to_path_buf());
        }
        d = d.parent()?;
    }
}

static RUN: Lazy<Run> = Lazy::new(|| {
    let found = ["memory", "pids", "cpu"].map(locate);
    // A process is in one cgroup of the v2 hierarchy: every v2 controller's run cgroup must be
    // the same one. The highest of the parents found serves them all (a controller enabled for
    // a cgroup's children is enabled in every ancestor too).
    let v2_parent = found
        .iter()
        .flatten()
        .filter(|(_, v2)| *v2)
        .map(|(p, _)| p.clone())
        .min_by_key(|p| p.components().count());
    let [memory, pids, cpu] = found.map(|f| {
        let (parent, v2) = f?;
        let parent = if v2 { v2_parent.clone()? } else { parent };
        remove_stale_runs(&parent);
        Some(Dir {
            run: parent.join(run_name()),
            v2,
        })
    });
    Run { memory, pids, cpu }
});

/// Whether a process in the cgroup tree at `dir` lives in a PID namespace we cannot see.
fn foreign_processes(dir: &Path) -> bool {
    let here = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .any(|p| p.trim() == "0");
    here || fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_type().is_ok_and(|t| t.is_dir()) && foreign_processes(&e.path()))
}

/// This run's cgroup name: `nstest-<pid>-<pid namespace inode>`.
fn run_name() -> String {
    format!("nstest-{}", crate::sys::owner_tag())
}

/// The pid of a run cgroup's harness, if the name is a run's of our PID namespace.
fn run_pid(name: &str, our_ns: u64) -> Option<i32> {
    match crate::sys::parse_owner_tag(name.strip_prefix("nstest-")?)? {
        (pid, Some(ns)) if ns == our_ns => Some(pid),
        _ => None,
    }
}

/// Removes `nstest-<pid>-<ns>` cgroups of runs of our PID namespace whose harness is gone, and
/// says so. (Another namespace's harness cannot be seen from here, dead or alive.)
fn remove_stale_runs(own: &Path) {
    let Ok(entries) = fs::read_dir(own) else {
        return;
    };
    let our_ns = crate::sys::pid_ns_inode();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| run_pid(n, our_ns)) else {
            continue;
        };
        // A harness in another PID namespace (a container sharing this cgroup) is not dead
        // because we cannot see it: its processes read as pid 0 here.
        if crate::sys::pid_is_dead(pid) && !foreign_processes(&e.path()) {
            if let Ok(children) = fs::read_dir(e.path()) {
                for c in children.flatten().filter(|c| c.path().is_dir()) {
                    kill_all(&c.path());
                    remove_dir(&c.path());
                }
            }
            remove_dir(&e.path());
            eprintln!(
                "nstest: removed cgroup {}, left by a run that was killed (pid {pid})",
                e.path().display()
            );
        }
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// How many test cgroups exist now; the run's cgroups are removed whenever it drops to 0, so
/// nothing is left when a run ends, however it ends (libtest calls no hook at the end).
static LIVE: Mutex<usize> = Mutex::new(0);

/// One test's cgroups (one per controller hierarchy in use).
#[derive(Debug)]
pub(crate) struct TestCgroup {
    /// The run's cgroup directories this test's live under (removed with the last test).
    runs: Vec<PathBuf>,
    dirs: Vec<(PathBuf, bool)>,
    memory: Option<(PathBuf, bool)>,
    pids: Option<(PathBuf, bool)>,
    cpu: Option<(PathBuf, bool)>,
    limits: Limits,
}

/// What the limits did to a test.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    pub oom_kills: u64,
    pub pids_max_hits: u64,
    pub cpu_throttled: u64,
}

impl TestCgroup {
    /// Makes the cgroups for `limits` and writes the limits. Nothing is made for no limits.
    pub(crate) fn create(limits: &Limits) -> Result<Option<Self>, CgroupError> {
        if limits.is_empty() {
            // Before `RUN`: a run without limits never looks for its cgroups.
            return Ok(None);
        }
        Self::create_in(&RUN, limits).map(Some)
    }

    /// [`TestCgroup::create`] under the run cgroups `run`, for `limits` that set something.
    fn create_in(run: &Run, limits: &Limits) -> Result<Self, CgroupError> {
        let name = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        *live += 1;
        drop(live);
        let mut cg = TestCgroup {
            runs: [&run.memory, &run.pids, &run.cpu]
                .into_iter()
                .flatten()
                .map(|d| d.run.clone())
                .collect(),
            dirs: Vec::new(),
            memory: None,
            pids: None,
            cpu: None,
            limits: limits.clone(),
        };
        let wanted = [
            ("memory", limits.memory.is_some(), run.memory.as_ref()),
            ("pids", limits.pids.is_some(), run.pids.as_ref()),
            ("cpu", limits.cpus.is_some(), run.cpu.as_ref()),
        ];
        for (controller, want, dir) in wanted {
            if !want {
                continue;
            }
            let dir = dir.ok_or(CgroupError::NoController(controller))?;
            // On error, dropping `cg` removes what was made.
            cg.make(controller, dir, &name)?;
        }
        Ok(cg)
    }

    fn make(&mut self, controller: &'static str, dir: &Dir, name: &str) -> Result<(), CgroupError> {
        let own = dir.run.parent().expect("the run cgroup has a parent");
        mkdir(&dir.run)?;
        if dir.v2 {
            let control =
                |d: &Path| write(&d.join("cgroup.subtree_control"), &format!("+{controller}"));
            let enabled =
                fs::read_to_string(own.join("cgroup.subtree_control")).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == controller) {
                control(own)?;
            }
            control(&dir.run)?;
        }
        let path = dir.run.join(name);
        // Another controller may share this hierarchy (cpu,cpuacct): make the directory once.
        if !self.dirs.iter().any(|(d, _)| d == &path) {
            mkdir(&path)?;
            self.dirs.push((path.clone(), dir.v2));
        }
        let l = &self.limits;
        match (controller, dir.v2) {
            ("memory", true) => {
                write(&path.join("memory.max"), &l.memory.unwrap().to_string())?;
                let _ = write(&path.join("memory.swap.max"), "0");
            }
            ("memory", false) => {
                write(
                    &path.join("memory.limit_in_bytes"),
                    &l.memory.unwrap().to_string(),
                )?;
                // Where swap is accounted, no swap either: the limit is the limit.
                let _ = write(
                    &path.join("memory.memsw.limit_in_bytes"),
                    &l.memory.unwrap().to_string(),
                );
            }
            ("pids", _) => write(&path.join("pids.max"), &l.pids.unwrap().to_string())?,
            ("cpu", true) => write(
                &path.join("cpu.max"),
                &format!("{} 100000", (l.cpus.unwrap() * 100_000.0).round() as u64),
            )?,
            ("cpu", false) => {
                write(&path.join("cpu.cfs_period_us"), "100000")?;
                write(
                    &path.join("cpu.cfs_quota_us"),
                    &((l.cpus.unwrap() * 100_000.0).round() as u64).to_string(),
                )?;
            }
            _ => unreachable!(),
        }
        let slot = (path, dir.v2);
        match controller {
            "memory" => self.memory = Some(slot),
            "pids" => self.pids = Some(slot),
            _ => self.cpu = Some(slot),
        }
        Ok(())
    }

    /// Moves `pid` (the container's PID 1, before it runs anything) into every test cgroup.
    pub(crate) fn place(&self, pid: i32) -> Result<(), CgroupError> {
        for (d, _) in &self.dirs {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Kills every process in the test's cgroups (the timeout path).
    pub(crate) fn kill(&self) {
        for (d, _) in &self.dirs {
            kill_all(d);
        }
    }

    /// What the limits did.
    pub(crate) fn usage(&self) -> Usage {
        let field = |p: Option<&(PathBuf, bool)>, file_v2: &str, file_v1: &str, key: &str| -> u64 {
            let Some((d, v2)) = p else { return 0 };
            let text =
                fs::read_to_string(d.join(if *v2 { file_v2 } else { file_v1 })).unwrap_or_default();
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
                .unwrap_or(0)
        };
        Usage {
            oom_kills: field(
                self.memory.as_ref(),
                "memory.events",
                "memory.oom_control",
                "oom_kill ",
            ),
            pids_max_hits: field(self.pids.as_ref(), "pids.events", "pids.events", "max "),
            cpu_throttled: field(self.cpu.as_ref(), "cpu.stat", "cpu.stat", "nr_throttled "),
        }
    }

    /// A sentence on what the limits did, for a failure message; empty if they did nothing.
    pub(crate) fn explain(&self, usage: &Usage) -> Option<String> {
        let l = &self.limits;
        if usage.oom_kills > 0 {
            return Some(format!(
                "killed: out of memory (limit {})",
                format_bytes(l.memory.unwrap_or(0))
            ));
        }
        if usage.pids_max_hits > 0 {
            return Some(format!(
                "the pids limit ({}) was reached: {} fork/clone calls failed",
                l.pids.unwrap_or(0),
                usage.pids_max_hits
            ));
        }
        if usage.cpu_throttled > 0 {
            return Some(format!(
                "cpu limited to {} (throttled {} times)",
                l.cpus.unwrap_or(0.0),
                usage.cpu_throttled
            ));
        }
        None
    }

    /// Removes the test's cgroups, killing what is left in them first; the run's too if this
    /// was the last test cgroup.
    fn remove(&self) {
        for (d, _) in &self.dirs {
            kill_all(d);
            remove_dir(d);
        }
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        *live -= 1;
        if *live == 0 {
            for d in &self.runs {
                let _ = fs::remove_dir(d);
            }
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Kills every process of a cgroup (`cgroup.kill` where there is one).
fn kill_all(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for _ in 0..50 {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs
            .lines()
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            return;
        }
        for p in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `rmdir` of a cgroup, retried while its last processes are still being torn down.
fn remove_dir(dir: &Path) {
    let end = Instant::now() + Duration::from_secs(5);
    while dir.exists() {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_runs_are_only_those_of_our_pid_namespace() {
        assert_eq!(run_pid("nstest-42-4026531836", 4026531836), Some(42));
        assert_eq!(run_pid("nstest-42-4026532000", 4026531836), None);
        assert_eq!(run_pid("nstest-42", 4026531836), None);
        assert_eq!(run_pid("other-42-4026531836", 4026531836), None);
        assert!(run_name().starts_with(&format!("nstest-{}-", std::process::id())));
    }

    /// Where the run's cgroup goes on v2, in a tree laid out as systemd does.
    #[test]
    fn v2_run_cgroups_go_where_the_controllers_reach() {
        let top = std::env::temp_dir().join(format!("nstest-cg2-up-{}", std::process::id()));
        let _ = fs::remove_dir_all(&top);
        let slice = top.join("user.slice");
        let scope = slice.join("session-1.scope");
        fs::create_dir_all(&scope).unwrap();
        fs::write(top.join("cgroup.controllers"), "cpu memory pids").unwrap();
        fs::write(top.join("cgroup.subtree_control"), "memory pids").unwrap();
        fs::write(slice.join("cgroup.controllers"), "memory pids").unwrap();
        fs::write(slice.join("cgroup.subtree_control"), "memory").unwrap();
        fs::write(slice.join("cgroup.procs"), "").unwrap();
        fs::write(scope.join("cgroup.controllers"), "memory").unwrap();
        fs::write(scope.join("cgroup.subtree_control"), "").unwrap();
        fs::write(scope.join("cgroup.procs"), "1234\n5678\n").unwrap();
        // The scope has processes: memory goes under the slice, pids under the root.
        assert_eq!(v2_parent(&scope, &top, "memory"), Some(slice.clone()));
        assert_eq!(v2_parent(&scope, &top, "pids"), Some(top.clone()));
        assert_eq!(
            v2_parent(&scope, &top, "cpu"),
            None,
            "enabled nowhere on the way (the root is not ours to change)"
        );
        // The real root may enable what it offers; a cgroup namespace's root may not.
        assert_eq!(v2_parent(&top, &top, "cpu"), Some(top.clone()));
        fs::write(top.join("cgroup.type"), "domain").unwrap();
        assert_eq!(v2_parent(&top, &top, "cpu"), None);
        fs::remove_dir_all(&top).unwrap();
    }

    /// A cgroup v2 hierarchy as files: what nstest writes there, and what it reads back. (This
    /// machine binds the controllers to v1; the kernel's own v2 is exercised where it has them.)
    #[test]
    fn v2_limits_are_written_and_read_back() {
        let own = std::env::temp_dir().join(format!("nstest-cg2-{}", std::process::id()));
        let _ = fs::remove_dir_all(&own);
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("cgroup.subtree_control"), "").unwrap();
        let dir = |c| {
            Some(Dir {
                run: own.join(format!("nstest-{c}")),
                v2: true,
            })
        };
        // One run dir per controller here, so each can be checked alone.
        let run = Run {
            memory: dir("m"),
            pids: dir("p"),
            cpu: dir("c"),
        };
        for d in [&run.memory, &run.pids, &run.cpu].into_iter().flatten() {
            fs::create_dir_all(&d.run).unwrap();
            fs::write(d.run.join("cgroup.subtree_control"), "").unwrap();
        }
        let limits = Limits {
            memory: Some(32 << 20),
            pids: Some(16),
            cpus: Some(0.5),
        };
        let cg = TestCgroup::create_in(&run, &limits).unwrap();
        let read = |p: &PathBuf, f: &str| fs::read_to_string(p.join(f)).unwrap();
        let (m, p, c) = (
            &cg.memory.as_ref().unwrap().0,
            &cg.pids.as_ref().unwrap().0,
            &cg.cpu.as_ref().unwrap().0,
        );
        assert_eq!(read(m, "memory.max"), (32u64 << 20).to_string());
        assert_eq!(read(m, "memory.swap.max"), "0");
        assert_eq!(read(p, "pids.max"), "16");
        assert_eq!(read(c, "cpu.max"), "50000 100000");
        assert_eq!(
            read(&run.memory.as_ref().unwrap().run, "cgroup.subtree_control"),
            "+memory"
        );
        // What the kernel reports after a test, read back and named.
        fs::write(
            m.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        fs::write(p.join("pids.events"), "max 4\n").unwrap();
        fs::write(
            c.join("cpu.stat"),
            "usage_usec 10\nnr_periods 9\nnr_throttled 7\n",
        )
        .unwrap();
        let usage = cg.usage();
        assert_eq!(
            (usage.oom_kills, usage.pids_max_hits, usage.cpu_throttled),
            (1, 4, 7)
        );
        assert_eq!(
            cg.explain(&usage).unwrap(),
            "killed: out of memory (limit 32M)"
        );
        let no_oom = Usage {
            oom_kills: 0,
            ..usage
        };
        assert!(cg
            .explain(&no_oom)
            .unwrap()
            .contains("the pids limit (16) was reached: 4"));
        let _ = fs::remove_dir_all(&own);
    }

    #[test]
    fn v1_limits_are_written() {
        let own = std::env::temp_dir().join(format!("nstest-cg1-{}", std::process::id()));
        let _ = fs::remove_dir_all(&own);
        fs::create_dir_all(&own).unwrap();
        let run = Run {
            memory: None,
            pids: None,
            cpu: Some(Dir {
                run: own.join("nstest-1"),
                v2: false,
            }),
        };
        let limits = Limits {
            cpus: Some(0.25),
            ..Limits::default()
        };
        let cg = TestCgroup::create_in(&run, &limits).unwrap();
        let c = &cg.cpu.as_ref().unwrap().0;
        assert_eq!(
            fs::read_to_string(c.join("cpu.cfs_quota_us")).unwrap(),
            "25000"
        );
        assert_eq!(
            fs::read_to_string(c.join("cpu.cfs_period_us")).unwrap(),
            "100000"
        );
        let err = TestCgroup::create_in(
            &run,
            &Limits {
                pids: Some(1),
                ..Limits::default()
            },
        )
        .unwrap_err();
        assert_eq!(err, CgroupError::NoController("pids"));
        let _ = fs::remove_dir_all(&own);
    }
}
