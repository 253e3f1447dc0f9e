//! Owners an unprivileged unpack cannot give: recorded while unpacking, then applied inside a
//! user namespace with subordinate ids where the machine offers them (see `idmap`), or kept in
//! the cache as a record (`owners/<key>`) where it does not.
//!
//! The manifest is one record per path, `uid gid mode path` ending in a NUL byte.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Paths (relative to the root) whose owner in the archive is not root, with owner and mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owners(BTreeMap<PathBuf, (u32, u32, u32)>);

impl Owners {
    /// Records the owner an entry has in the archive; a later entry for the same path wins,
    /// and one owned by root needs no record.
    pub(crate) fn record(&mut self, path: &Path, uid: u32, gid: u32, mode: u32) {
        let path = normal(path);
        if path.as_os_str().is_empty() {
            return; // the root itself (`./`) stays the caller's: it is renamed into the cache
        }
        if uid == 0 && gid == 0 {
            self.0.remove(&path);
        } else {
            self.0.insert(path, (uid, gid, mode));
        }
    }

    /// Forgets `path` and everything recorded below it: a whiteout deleted them, or a hard
    /// link now names another file there.
    pub(crate) fn forget(&mut self, path: &Path) {
        let path = normal(path);
        self.0.retain(|p, _| !p.starts_with(&path));
    }

    /// How many paths are recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps only the records for which `keep(uid, gid)` holds; returns how many were dropped.
    pub(crate) fn retain(&mut self, keep: impl Fn(u32, u32) -> bool) -> usize {
        let before = self.0.len();
        self.0.retain(|_, (u, g, _)| keep(*u, *g));
        before - self.0.len()
    }

    /// The manifest's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, (uid, gid, mode)) in &self.0 {
            out.extend_from_slice(format!("{uid} {gid} {mode:o} ").as_bytes());
            out.extend_from_slice(path.as_os_str().as_bytes());
            out.push(0);
        }
        out
    }

    /// Reads a manifest made by [`Owners::encode`].
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let mut owners = Self::default();
        for rec in bytes.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            let mut f = rec.splitn(4, |b| *b == b' ');
            let mut num = |radix| {
                let s = std::str::from_utf8(f.next()?).ok()?;
                u32::from_str_radix(s, radix).ok()
            };
            let (uid, gid, mode) = (num(10)?, num(10)?, num(8)?);
            let path = Path::new(std::ffi::OsStr::from_bytes(f.next()?));
            owners.0.insert(path.to_path_buf(), (uid, gid, mode));
        }
        Some(owners)
    }
}

/// `path` without `.` (or other non-name) components.
fn normal(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

/// Gives each path of the manifest at `manifest` under `root` its owner, then its mode again
/// (`chown` clears set-user-id bits). Run as root of a user namespace whose maps hold the ids.
/// A path that is gone (a later layer deleted it) or that lies behind a symlink is skipped: no
/// `chown` ever follows a link out of the root.
pub(crate) fn apply(root: &Path, manifest: &Path) -> Result<(), String> {
    let bytes = std::fs::read(manifest).map_err(|e| format!("read {manifest:?}: {e}"))?;
    let owners = Owners::decode(&bytes).ok_or_else(|| format!("garbled manifest {manifest:?}"))?;
    'records: for (rel, (uid, gid, mode)) in &owners.0 {
        let mut at = root.to_path_buf();
        let mut parts = rel.components().peekable();
        while let Some(c) = parts.next() {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Err(_) => continue 'records,
                Ok(m) if m.file_type().is_symlink() && parts.peek().is_some() => continue 'records,
                Ok(_) => {}
            }
        }
        lchown(&at, Some(*uid), Some(*gid)).map_err(|e| format!("chown {at:?}: {e}"))?;
        let meta = std::fs::symlink_metadata(&at).map_err(|e| format!("stat {at:?}: {e}"))?;
        if !meta.file_type().is_symlink() {
            std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(|e| format!("chmod {at:?}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_round_trips_and_later_entries_win() {
        let mut o = Owners::default();
        o.record(Path::new("./home/user"), 1000, 1000, 0o755);
        o.record(Path::new("etc/shadow"), 0, 42, 0o640);
        o.record(Path::new("a b/with space"), 7, 7, 0o2755);
        o.record(Path::new("tmp/x"), 5, 5, 0o644);
        o.record(Path::new("tmp/x"), 0, 0, 0o644);
        o.record(Path::new("./"), 1000, 1000, 0o755);
        assert_eq!(
            o.len(),
            3,
            "root-owned entries, and the root itself, need no record"
        );
        let back = Owners::decode(&o.encode()).unwrap();
        assert_eq!(back, o);
        assert_eq!(back.0[Path::new("home/user")], (1000, 1000, 0o755));
        assert_eq!(back.0[Path::new("a b/with space")], (7, 7, 0o2755));
        assert_eq!(Owners::decode(b"1 2 zz path\0"), None);
    }

    #[test]
    fn whiteouts_and_hard_links_forget_what_was_there() {
        let mut o = Owners::default();
        o.record(Path::new("usr/bin/x"), 1000, 1000, 0o755);
        o.record(Path::new("opt/app/a"), 7, 7, 0o644);
        o.record(Path::new("opt/app/b/c"), 7, 7, 0o644);
        o.record(Path::new("opt/application"), 7, 7, 0o644);
        o.forget(Path::new("./opt/app"));
        o.forget(Path::new("usr/bin/x"));
        let left: Vec<_> = o.0.keys().cloned().collect();
        assert_eq!(left, [PathBuf::from("opt/application")]);
    }

    #[test]
    fn ids_outside_the_range_are_dropped() {
        let mut o = Owners::default();
        o.record(Path::new("a"), 1000, 1000, 0o644);
        o.record(Path::new("b"), 70000, 1, 0o644);
        assert_eq!(o.retain(|u, g| u <= 65536 && g <= 65536), 1);
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn apply_never_follows_a_symlink_out_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("f"), "host").unwrap();
        std::fs::write(root.join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::fs::set_permissions(outside.join("f"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        // Ids this process may give: its own, or (as root, whose own need no record) uid 1.
        let me = nix::unistd::geteuid().as_raw().max(1);
        let gid = nix::unistd::getegid().as_raw().max(1);
        let mut o = Owners::default();
        o.record(Path::new("link/f"), me, gid, 0o4777);
        o.record(Path::new("d/f"), me, gid, 0o640);
        o.record(Path::new("gone"), me, gid, 0o640);
        let manifest = dir.path().join("manifest");
        std::fs::write(&manifest, o.encode()).unwrap();
        apply(&root, &manifest).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&root.join("d/f")), 0o640);
        assert_eq!(
            mode(&outside.join("f")),
            0o600,
            "not reached through the link"
        );
    }
}
