//! The run's cgroup, `nstest-<pid>-<pid namespace inode>` in each hierarchy in use, worked out
//! once per run; and the removal of what runs that were killed left.

use std::fs;
use std::path::{Path, PathBuf};

use once_cell::sync::Lazy;

use super::discovery::locate;
use super::{kill_all, remove_dir};

/// A controller's directory for this run (`…/nstest-<pid>-<ns>`) and its cgroup version.
#[derive(Clone, Debug)]
pub(super) struct Dir {
    pub(super) run: PathBuf,
    pub(super) v2: bool,
}

/// Where each controller lives for this run.
#[derive(Debug, Default)]
pub(super) struct Run {
    pub(super) memory: Option<Dir>,
    pub(super) pids: Option<Dir>,
    pub(super) cpu: Option<Dir>,
}

pub(super) static RUN: Lazy<Run> = Lazy::new(|| {
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
}
