//! One test's cgroups, made before its container starts and removed after it ends, always.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::run::{Dir, Run, RUN};
use super::{kill_all, mkdir, remove_dir, write, CgroupError};
use crate::spec::{format_bytes, Limits};

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

#[cfg(test)]
mod tests {
    use super::*;

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
