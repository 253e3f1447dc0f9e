//! The user namespace's id maps in rootless mode.
//!
//! Without help, an unprivileged process may map one id: its own. The container child writes
//! that map itself (`0 <uid> 1`), so the caller is root inside and every other id is unmapped.
//!
//! When `/etc/subuid` and `/etc/subgid` give the caller subordinate ranges and the setuid helpers
//! `newuidmap`/`newgidmap` (Debian's package `uidmap`) are installed, containers get those ranges
//! as well: inside id `n` (1 ≤ n ≤ count) is the range's `start + n - 1`, so files a tarball gives
//! to other owners keep them. The helpers take the child's pid, so the parent runs them while
//! the child waits, before its set-up. `NSTEST_SUBIDS=off` keeps the single-id map.
//!
//! Files owned by subordinate ids are the caller's no more: unpacking such a rootfs, and removing
//! it again, runs in a user namespace with the same maps (this binary re-executed as a helper
//! task, which `entry` runs).

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use once_cell::sync::Lazy;

use crate::sys::{self, ChildPlan, ExecPlan};

/// One subordinate id range from `/etc/subuid` or `/etc/subgid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SubRange {
    pub start: u32,
    pub count: u32,
}

/// The caller's subordinate ranges and the helpers that map them.
#[derive(Debug)]
pub(crate) struct Ranges {
    uid: u32,
    gid: u32,
    pub sub_uid: SubRange,
    pub sub_gid: SubRange,
    newuidmap: PathBuf,
    newgidmap: PathBuf,
}

/// A map could not be written, or a helper task in the mapped namespace failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMapError {
    /// Which part failed.
    pub kind: IdMapStep,
    /// The command or task, spelled out.
    pub command: String,
    /// What it said (its stderr), or how it ended.
    pub detail: String,
    /// The errno, where a system call failed (starting a helper, a pipe, a clone).
    pub errno: Option<nix::errno::Errno>,
}

/// The part of using subordinate ids that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdMapStep {
    /// `newuidmap`/`newgidmap` refused (or could not be started).
    Map,
    /// The helper task (giving a rootfs its owners, removing it) failed inside the namespace.
    Task,
    /// Starting the helper task failed on the host (pipe, clone, wait).
    Host,
}

impl fmt::Display for IdMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, fix) = match self.kind {
            IdMapStep::Map => (
                "cannot map the subordinate ids of /etc/subuid and /etc/subgid",
                "check this user's entries there and that newuidmap/newgidmap are setuid root \
                 (Debian's package uidmap), or set NSTEST_SUBIDS=off to map only your own id",
            ),
            IdMapStep::Task => (
                "a helper in a user namespace with the subordinate ids failed",
                "see what it said; NSTEST_SUBIDS=off maps only your own id",
            ),
            IdMapStep::Host => (
                "cannot start a helper in a user namespace with the subordinate ids",
                "see the error; NSTEST_SUBIDS=off maps only your own id",
            ),
        };
        write!(
            f,
            "{what}: `{}` failed: {}; {fix} (docs/privileges.md)",
            self.command, self.detail
        )
    }
}

impl std::error::Error for IdMapError {}

/// The ranges containers get, if this is rootless mode and the machine offers them.
pub(crate) fn ranges() -> Option<&'static Ranges> {
    static RANGES: Lazy<Option<Ranges>> = Lazy::new(discover);
    RANGES.as_ref()
}

fn discover() -> Option<Ranges> {
    let off = !crate::settings::subids();
    if off || !crate::settings::rootless() {
        return None;
    }
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    let user = nix::unistd::User::from_uid(uid).ok().flatten();
    // newgidmap maps a single gid of the caller's only if it is the passwd entry's (not under
    // `sg`/`newgrp`, say): keep the single-id map then.
    if user.as_ref().is_some_and(|u| u.gid != gid) {
        return None;
    }
    let name = user.map(|u| u.name);
    let read = |p: &str| std::fs::read_to_string(p).ok();
    Some(Ranges {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        sub_uid: parse_subid(&read("/etc/subuid")?, name.as_deref(), uid.as_raw())?,
        sub_gid: parse_subid(&read("/etc/subgid")?, name.as_deref(), uid.as_raw())?,
        newuidmap: find_helper("newuidmap")?,
        newgidmap: find_helper("newgidmap")?,
    })
}

/// The first range of `/etc/subuid`-style `text` for the user `name` or the numeric `uid`.
pub(crate) fn parse_subid(text: &str, name: Option<&str>, uid: u32) -> Option<SubRange> {
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        let ours = Some(who) == name || who.parse::<u32>().ok() == Some(uid);
        let range = SubRange {
            start: start.trim().parse().ok()?,
            count: count.trim().parse().ok()?,
        };
        (ours && range.count > 0 && !line.trim_start().starts_with('#')).then_some(range)
    })
}

fn find_helper(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Ranges {
    /// Part of a cache key: a rootfs unpacked with these maps differs from one without.
    pub(crate) fn tag(&self) -> String {
        format!(
            "u{}+{}g{}+{}",
            self.sub_uid.start, self.sub_uid.count, self.sub_gid.start, self.sub_gid.count
        )
    }

    /// Whether an owner from a tarball has an id inside the container.
    pub(crate) fn maps(&self, uid: u32, gid: u32) -> bool {
        uid <= self.sub_uid.count && gid <= self.sub_gid.count
    }

    fn args(pid: Pid, own: u32, r: SubRange) -> Vec<String> {
        [pid.as_raw() as u32, 0, own, 1, 1, r.start, r.count]
            .iter()
            .map(u32::to_string)
            .collect()
    }

    /// Writes the maps of the (waiting) child `pid`: `0 <own id> 1` and `1 <start> <count>`.
    pub(crate) fn apply(&self, pid: Pid) -> Result<(), IdMapError> {
        let run = |helper: &Path, args: Vec<String>| {
            let command = format!("{} {}", helper.display(), args.join(" "));
            let child = Command::new(helper)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| IdMapError {
                    kind: IdMapStep::Map,
                    command: command.clone(),
                    detail: e.to_string(),
                    errno: e.raw_os_error().map(nix::errno::Errno::from_raw),
                })?;
            Ok::<_, IdMapError>((command, child))
        };
        let u = run(&self.newuidmap, Self::args(pid, self.uid, self.sub_uid))?;
        let g = match run(&self.newgidmap, Self::args(pid, self.gid, self.sub_gid)) {
            Ok(g) => g,
            Err(e) => {
                let _ = u.1.wait_with_output(); // no zombie left behind
                return Err(e);
            }
        };
        for (command, child) in [u, g] {
            let out = child.wait_with_output().map_err(|e| IdMapError {
                kind: IdMapStep::Map,
                command: command.clone(),
                detail: e.to_string(),
                errno: e.raw_os_error().map(nix::errno::Errno::from_raw),
            })?;
            if !out.status.success() {
                return Err(IdMapError {
                    kind: IdMapStep::Map,
                    command,
                    detail: format!(
                        "{} ({})",
                        String::from_utf8_lossy(&out.stderr).trim(),
                        out.status
                    ),
                    errno: None,
                });
            }
        }
        Ok(())
    }

    /// Runs this binary again as a helper `task` in a new user namespace with these maps.
    fn run_task(&self, task: &[&OsStr]) -> Result<(), IdMapError> {
        let command = format!(
            "{} in a user namespace with the subordinate ids",
            task.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let fail = |kind, detail: String, errno| IdMapError {
            kind,
            command: command.clone(),
            detail,
            errno,
        };
        let host = |e: sys::SysError| fail(IdMapStep::Host, e.to_string(), Some(e.errno));
        let cstr = |b: &[u8]| {
            CString::new(b)
                .map_err(|_| fail(IdMapStep::Host, "a path with a NUL byte".into(), None))
        };
        let null = sys::open_dev_null().map_err(host)?;
        let (err_r, err_w) = sys::pipe().map_err(host)?;
        let life = sys::pipe().map_err(host)?;
        let (hold_r, hold_w) = sys::pipe().map_err(host)?;
        let plan = ExecPlan {
            exe: c"/proc/self/exe".into(),
            argv: std::iter::once(Ok(c"nstest-idmap-task".into()))
                .chain(task.iter().map(|a| cstr(a.as_bytes())))
                .collect::<Result<_, _>>()?,
            envp: vec![cstr(
                format!("{}=1", crate::reexec::IDMAP_TASK_ENV).as_bytes(),
            )?],
            exec_failed_frame: b"nstest: cannot re-execute /proc/self/exe; errno (LE): ".to_vec(),
            child: ChildPlan {
                fds: vec![
                    (null.as_raw_fd(), 0),
                    (null.as_raw_fd(), 1),
                    (err_w.as_raw_fd(), 2),
                ],
                life: (life.0.as_raw_fd(), life.1.as_raw_fd()),
                report_fd: 2,
                writes: Vec::new(),
                sync: Some((hold_r.as_raw_fd(), hold_w.as_raw_fd())),
                netns: None,
                cgroup_ns: None,
            },
        };
        let cloned = sys::clone_exec(CloneFlags::CLONE_NEWUSER, &plan).map_err(host)?;
        drop((err_w, hold_r));
        let mapped = self.apply(cloned.pid);
        match mapped {
            Ok(()) => {
                let _ = nix::unistd::write(&hold_w, &[1]);
            }
            // Another held child cloned meanwhile may hold a copy of the hold pipe: kill this
            // one rather than wait for it to see the pipe closed.
            Err(_) => cloned.kill(),
        }
        drop(hold_w);
        let mut stderr = Vec::new();
        let _ = std::fs::File::from(err_r).read_to_end(&mut stderr);
        let status = sys::wait_raw(cloned.pid).map_err(host)?;
        drop::<(OwnedFd, OwnedFd)>(life);
        mapped?;
        if status != 0 {
            return Err(fail(
                IdMapStep::Task,
                format!(
                    "{} (wait status {status:#x})",
                    String::from_utf8_lossy(&stderr).trim()
                ),
                None,
            ));
        }
        Ok(())
    }

    /// Gives the files of `root` listed in `manifest` their owners, as root of a user namespace
    /// with these maps (the ids there are the tarball's).
    pub(crate) fn chown_in_userns(&self, root: &Path, manifest: &Path) -> Result<(), IdMapError> {
        self.run_task(&["chown".as_ref(), root.as_os_str(), manifest.as_os_str()])
    }

    /// Removes `path`, whose files may belong to subordinate ids, from inside such a namespace.
    pub(crate) fn remove_in_userns(&self, path: &Path) -> Result<(), IdMapError> {
        self.run_task(&["rm".as_ref(), path.as_os_str()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_lines_are_found_by_name_or_uid() {
        let text = "alice:100000:65536\n# bob:1:1\nbob:165536:65536\n1001:231072:1000\n";
        let r = |start, count| Some(SubRange { start, count });
        assert_eq!(parse_subid(text, Some("bob"), 1000), r(165536, 65536));
        assert_eq!(parse_subid(text, Some("carol"), 1001), r(231072, 1000));
        assert_eq!(parse_subid(text, Some("dave"), 1002), None);
        assert_eq!(
            parse_subid("eve:1:0\n", Some("eve"), 5),
            None,
            "empty range"
        );
        assert_eq!(parse_subid("eve:x:5\n", Some("eve"), 5), None, "garbage");
    }

    #[test]
    fn helper_arguments_map_root_then_the_range() {
        let r = SubRange {
            start: 100000,
            count: 65536,
        };
        assert_eq!(
            Ranges::args(Pid::from_raw(42), 1000, r),
            ["42", "0", "1000", "1", "1", "100000", "65536"]
        );
    }
}
