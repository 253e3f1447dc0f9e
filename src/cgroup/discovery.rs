//! Where the cgroup hierarchies are, and where on cgroup v2 a run's cgroup may go.

use std::fs;
use std::path::{Path, PathBuf};

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
pub(super) fn locate(controller: &'static str) -> Option<(PathBuf, bool)> {
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
pub(super) fn v2_parent(own: &Path, top: &Path, controller: &str) -> Option<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
