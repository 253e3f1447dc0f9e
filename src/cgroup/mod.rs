//! Resource limits: each limited test in a cgroup of its own, under one cgroup for the run.
//!
//! cgroup v2 is used where our cgroup's controllers include the ones asked for; otherwise the
//! v1 hierarchies that carry them (a v1+v2 hybrid machine binds memory, pids and cpu to v1).
//! The run's cgroup is `nstest-<pid>-<pid namespace inode>` under the harness's own cgroup in
//! each v1 hierarchy, and on v2 under the nearest cgroup that passes the controllers on (see
//! `v2_parent`); a test's is `t<n>` below it, made before the container starts, removed after
//! it ends — always. Run cgroups of our PID namespace whose pid is dead (a killed harness) are
//! removed by the next run that sets a limit, which says so.
//!
//! By role: `discovery` finds the hierarchies and where a run's cgroup may go, `run` is the
//! run's cgroup (and the removal of killed runs'), `test_cgroup` one test's.

mod discovery;
mod run;
mod test_cgroup;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;

pub(crate) use test_cgroup::TestCgroup;

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
