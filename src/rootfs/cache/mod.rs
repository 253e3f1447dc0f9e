//! nstest's cache directory: unpacked bases, keyed by the digest of their source.
//!
//! Layout under the cache root (`NSTEST_CACHE_DIR`, else `$XDG_CACHE_HOME/nstest`, else
//! `~/.cache/nstest`, else `$TMPDIR/nstest-<uid>`):
//!
//! ```text
//! bases/<key>/      a finished base, never modified after it is renamed into place
//! tmp/<key>.<tag>/  a base being built (`<tag>` = `<pid>-<PID namespace inode>` of its
//!                   builder); stale ones (their builder died) are removed, as are other `tmp/`
//!                   entries of dead processes (a container's on-disk writable layer
//!                   `layer-<n>.<tag>`, a pruned base `prune-<key>.<tag>`, …)
//! mnt/              an empty directory: each container mounts its private tmpfs here,
//!                   in its own mount namespace, so the host never sees that mount
//! owners/<key>      owners an unprivileged unpack could not give (no subordinate ids)
//! keys/<name>       a source file's key, named by the file's device, inode, size, mtime and
//!                   ctime, so that a process finds it without reading the file again
//! lock              flock(2)ed while a base is built, so concurrent runs build it once
//! use.lock          held shared by every process that uses the cache; `prune` needs it alone
//! ```

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};

use super::RootfsError;

mod keys;
mod list;

pub use keys::{derived_key, file_key};
use list::lock_file;
pub use list::Entry;

/// Bumped when the layout of a built base changes, so old entries are not reused.
const FORMAT: &str = "nstest-base-v1";

/// The cache root and its fixed subdirectories.
///
/// ```no_run
/// let cache = nstest::rootfs::cache::Cache::open(nstest::rootfs::cache::Cache::default_root())?;
/// println!("{} bases", cache.list()?.len());
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RootfsError + '_ {
    move |e| RootfsError::Cache {
        path: path.to_path_buf(),
        source: Arc::new(e),
    }
}

impl Cache {
    /// The cache root nstest uses in this environment.
    ///
    /// ```
    /// std::env::set_var("NSTEST_CACHE_DIR", "/var/tmp/nstest");
    /// assert_eq!(nstest::rootfs::cache::Cache::default_root(), std::path::Path::new("/var/tmp/nstest"));
    /// ```
    pub fn default_root() -> PathBuf {
        if let Some(d) = crate::settings::cache_dir() {
            return PathBuf::from(d);
        }
        if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(d).join("nstest");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
            let home = PathBuf::from(home);
            if home.is_dir() {
                return home.join(".cache").join("nstest");
            }
        }
        std::env::temp_dir().join(format!("nstest-{}", nix::unistd::geteuid()))
    }

    /// Opens (creating if needed) the cache at `root`, and removes what builders that were
    /// killed left in `tmp/` (recognised by their dead owner pid), saying so.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("nstest-doc-{}", std::process::id()));
    /// let cache = nstest::rootfs::cache::Cache::open(dir.clone()).unwrap();
    /// assert!(cache.root().join("bases").is_dir());
    /// # std::fs::remove_dir_all(dir).unwrap();
    /// ```
    pub fn open(root: PathBuf) -> Result<Self, RootfsError> {
        for sub in ["bases", "tmp", "mnt"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let cache = Self { root };
        cache.remove_stale();
        Ok(cache)
    }

    /// Removes `tmp/<key>.<tag>` entries and `kept/<tag>` directories whose maker is no longer
    /// alive (a killed builder's half-built base; an earlier run's kept containers).
    fn remove_stale(&self) {
        if let Ok(entries) = fs::read_dir(self.root.join("kept")) {
            for e in entries.flatten() {
                if e.file_name().to_str().and_then(maker_gone).is_some() {
                    remove_tree(&e.path());
                }
            }
        }
        let _ = self.remove_stale_tmp(false);
    }

    /// Removes the `tmp/<name>.<tag>` entries whose maker is gone; with `untagged`, also any
    /// entry without a tag (safe only under the build lock, where no build is under way).
    fn remove_stale_tmp(&self, untagged: bool) -> Result<(), RootfsError> {
        let tmp = self.root.join("tmp");
        for e in fs::read_dir(&tmp).map_err(io_err(&tmp))?.flatten() {
            let name = e.file_name();
            let why = match name.to_str().and_then(|n| n.rsplit_once('.')) {
                Some((_, tag)) => {
                    maker_gone(tag).map(|pid| format!("a run that was killed (pid {pid})"))
                }
                None => untagged.then(|| "an interrupted run".to_string()),
            };
            if let Some(why) = why {
                eprintln!("nstest: removed {}, left by {why}", e.path().display());
                remove_tree(&e.path());
            }
        }
        Ok(())
    }

    /// The finished base for `key`, if it is there.
    pub(crate) fn built(&self, key: &str) -> Option<PathBuf> {
        let done = self.root.join("bases").join(key);
        done.is_dir().then_some(done)
    }

    /// The cache root.
    ///
    /// ```no_run
    /// println!("{}", nstest::rootfs::cache()?.root().display());
    /// # Ok::<(), nstest::rootfs::RootfsError>(())
    /// ```
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A scratch directory for a build of `key` (`tmp/src-<key>.<pid>-<pidns>`), created empty; the
    /// caller removes it. A killed run's is removed as stale like any `tmp/` entry.
    pub fn scratch_dir(&self, key: &str) -> PathBuf {
        let dir = self
            .root
            .join("tmp")
            .join(format!("src-{key}.{}", crate::sys::owner_tag()));
        remove_tree(&dir);
        let _ = fs::create_dir_all(&dir);
        dir
    }

    /// The empty directory on which containers mount their scratch tmpfs.
    pub fn scratch_mountpoint(&self) -> PathBuf {
        self.root.join("mnt")
    }

    /// The finished base for `key`, building it with `build` (into a temporary directory that is
    /// renamed into place) if it is not there yet. Concurrent callers, in this process or
    /// another, build it once; a failed build leaves nothing behind.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("nstest-doc-build-{}", std::process::id()));
    /// let cache = nstest::rootfs::cache::Cache::open(dir.clone()).unwrap();
    /// let (base, built) = cache.get_or_build("demo-1", |tmp| { std::fs::write(tmp.join("f"), "x").unwrap(); Ok(()) }).unwrap();
    /// assert!(built && base.join("f").exists());
    /// assert!(!cache.get_or_build("demo-1", |_| unreachable!()).unwrap().1, "built once");
    /// # std::fs::remove_dir_all(dir).unwrap();
    /// ```
    pub fn get_or_build(
        &self,
        key: &str,
        build: impl FnOnce(&Path) -> Result<(), RootfsError>,
    ) -> Result<(PathBuf, bool), RootfsError> {
        let done = self.root.join("bases").join(key);
        if done.is_dir() {
            return Ok((done, false));
        }
        let lock_path = self.root.join("lock");
        let lock = lock_file(&lock_path).map_err(io_err(&lock_path))?;
        let _guard =
            Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| RootfsError::Cache {
                path: lock_path.clone(),
                source: Arc::new(e.into()),
            })?;
        if done.is_dir() {
            return Ok((done, false)); // another run built it while we waited
        }
        // We hold the lock: a build in tmp/ whose process is gone was interrupted. (Other
        // entries there — scratch dirs, containers' layers — belong to live runs.)
        self.remove_stale_tmp(true)?;
        let tmp_root = self.root.join("tmp");
        let tmp = tmp_root.join(format!("{key}.{}", crate::sys::owner_tag()));
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        if let Err(e) = build(&tmp) {
            remove_tree(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &done).map_err(|e| {
            remove_tree(&tmp);
            io_err(&done)(e)
        })?;
        Ok((done, true))
    }
}

/// The pid of the maker named by `tag` if it is gone. Only a maker of our PID namespace can be
/// judged; another namespace's may well be alive. A bare `<pid>` (a name of old) is judged by it.
pub(super) fn maker_gone(tag: &str) -> Option<i32> {
    let (pid, ns) = crate::sys::parse_owner_tag(tag)?;
    let ours = ns.map_or(true, |ns| ns == crate::sys::pid_ns_inode());
    (ours && crate::sys::pid_is_dead(pid)).then_some(pid)
}

/// Removes a directory tree, opening up read-only directories on the way if needed.
///
/// ```
/// let d = std::env::temp_dir().join(format!("nstest-doc-rm-{}", std::process::id()));
/// std::fs::create_dir_all(d.join("a/b")).unwrap();
/// nstest::rootfs::cache::remove_tree(&d);
/// assert!(!d.exists());
/// ```
pub fn remove_tree(path: &Path) {
    match fs::symlink_metadata(path) {
        Err(_) => return,
        Ok(m) if !m.is_dir() => {
            let _ = fs::remove_file(path);
            return;
        }
        Ok(_) => {}
    }
    if fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    fn open_up(p: &Path) {
        if let Ok(m) = fs::symlink_metadata(p) {
            if m.is_dir() {
                let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
                if let Ok(rd) = fs::read_dir(p) {
                    for e in rd.flatten() {
                        open_up(&e.path());
                    }
                }
            }
        }
    }
    open_up(path);
    if fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    // Files given to subordinate ids (see `idmap`) are removed from a namespace that maps them.
    if let Some(ranges) = crate::idmap::ranges() {
        if let Err(e) = ranges.remove_in_userns(path) {
            eprintln!("nstest: cannot remove {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dead_maker_of_our_pid_namespace_is_gone() {
        let ns = crate::sys::pid_ns_inode();
        assert_eq!(maker_gone(&crate::sys::owner_tag()), None, "we are alive");
        // pid_max is at most 2^22: this pid is nobody's.
        assert_eq!(maker_gone(&format!("99999999-{ns}")), Some(99999999));
        assert_eq!(
            maker_gone(&format!("99999999-{}", ns + 1)),
            None,
            "another namespace's maker cannot be judged"
        );
        assert_eq!(maker_gone("99999999"), Some(99999999), "a name of old");
        assert_eq!(maker_gone("garbage"), None);
    }
}
