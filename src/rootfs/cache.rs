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

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::RootfsError;

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

/// One finished base in the cache.
///
/// ```no_run
/// for e in nstest::rootfs::cache()?.list()? {
///     println!("{} {}", e.key, e.path.display());
/// }
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its key: the kind of source and the digest of its content.
    pub key: String,
    /// Where it is.
    pub path: PathBuf,
    /// The bytes its files take.
    pub bytes: u64,
}

/// A lock file of the cache, opened (created if missing) for `flock`.
fn lock_file(path: &Path) -> std::io::Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

fn tree_bytes(p: &Path) -> u64 {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| tree_bytes(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

impl Cache {
    /// Holds the cache in use (shared) for as long as this process lives, so that `prune` from
    /// elsewhere does not remove a base under running containers.
    pub fn hold_in_use(&self) {
        static HELD: std::sync::OnceLock<Option<Flock<File>>> = std::sync::OnceLock::new();
        HELD.get_or_init(|| {
            let f = lock_file(&self.root.join("use.lock")).ok()?;
            Flock::lock(f, FlockArg::LockShared).ok()
        });
    }

    /// The finished bases.
    ///
    /// ```no_run
    /// use nstest::rootfs::cache::Cache;
    /// for entry in Cache::open(Cache::default_root())?.list()? {
    ///     println!("{} {} bytes", entry.key, entry.bytes);
    /// }
    /// # Ok::<(), nstest::rootfs::RootfsError>(())
    /// ```
    pub fn list(&self) -> Result<Vec<Entry>, RootfsError> {
        let bases = self.root.join("bases");
        let mut v: Vec<Entry> = fs::read_dir(&bases)
            .map_err(io_err(&bases))?
            .flatten()
            .map(|e| Entry {
                key: e.file_name().to_string_lossy().into_owned(),
                bytes: tree_bytes(&e.path()),
                path: e.path(),
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(v)
    }

    /// Removes every finished base (the next run builds what it needs again), unless a process
    /// is using the cache: then nothing is removed and the error says so.
    ///
    /// ```no_run
    /// let removed = nstest::rootfs::cache::Cache::open(nstest::rootfs::cache::Cache::default_root())?.prune()?;
    /// println!("removed {}", removed.len());
    /// # Ok::<(), nstest::rootfs::RootfsError>(())
    /// ```
    pub fn prune(&self) -> Result<Vec<Entry>, RootfsError> {
        let path = self.root.join("use.lock");
        let f = lock_file(&path).map_err(io_err(&path))?;
        let _alone =
            Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|_| RootfsError::Cache {
                path: path.clone(),
                source: Arc::new(std::io::Error::other(
                    "the cache is in use by a running test; prune it when no test runs",
                )),
            })?;
        let entries = self.list()?;
        for e in &entries {
            // Out of bases/ first: a base that cannot be removed whole is never used half.
            let doomed =
                self.root
                    .join("tmp")
                    .join(format!("prune-{}.{}", e.key, crate::sys::owner_tag()));
            fs::rename(&e.path, &doomed).map_err(io_err(&e.path))?;
            remove_tree(&doomed);
            if doomed.exists() {
                return Err(RootfsError::Cache {
                    path: doomed,
                    source: Arc::new(std::io::Error::other(
                        "could not remove it all (files of other owners? see above); \
                         the next run retries",
                    )),
                });
            }
        }
        remove_tree(&self.root.join("owners"));
        remove_tree(&self.root.join("keys"));
        Ok(entries)
    }
}

/// The pid of the maker named by `tag` if it is gone. Only a maker of our PID namespace can be
/// judged; another namespace's may well be alive. A bare `<pid>` (a name of old) is judged by it.
fn maker_gone(tag: &str) -> Option<i32> {
    let (pid, ns) = crate::sys::parse_owner_tag(tag)?;
    let ours = ns.map_or(true, |ns| ns == crate::sys::pid_ns_inode());
    (ours && crate::sys::pid_is_dead(pid)).then_some(pid)
}

impl Cache {
    /// [`file_key`] of `path`, remembered in `keys/` under the file's device, inode, size,
    /// mtime and ctime: every process of a run needs the key (with `cargo nextest`, every test
    /// is a process), and hashing the file each time costs time that grows with its size. Any
    /// write to the file changes its ctime, so a remembered key is never that of older content;
    /// a file changed within the last two seconds is hashed and not remembered (its next write
    /// could land within the same timestamp), nor is one whose times have no nanoseconds.
    ///
    /// ```
    /// let dir = std::env::temp_dir().join(format!("nstest-doc-key-{}", std::process::id()));
    /// let cache = nstest::rootfs::cache::Cache::open(dir.join("cache")).unwrap();
    /// std::fs::write(dir.join("f"), b"content").unwrap();
    /// let key = cache.file_key("tar", &dir.join("f")).unwrap();
    /// assert_eq!(key, nstest::rootfs::cache::file_key("tar", &dir.join("f")).unwrap());
    /// # std::fs::remove_dir_all(dir).unwrap();
    /// ```
    pub fn file_key(&self, prefix: &str, path: &Path) -> Result<String, RootfsError> {
        let Ok(before) = fs::metadata(path) else {
            return file_key(prefix, path); // names the error
        };
        let name = memo_name(prefix, &before);
        let memo = self.root.join("keys").join(&name);
        if let Ok(key) = fs::read_to_string(&memo) {
            if is_key(prefix, &key) {
                return Ok(key);
            }
        }
        let key = file_key(prefix, path)?;
        let unchanged = fs::metadata(path).is_ok_and(|after| memo_name(prefix, &after) == name);
        if unchanged && settled(&before, std::time::SystemTime::now()) {
            // Best effort: without it the next process hashes the file again.
            let tmp = self
                .root
                .join("tmp")
                .join(format!("key-{name}.{}", crate::sys::owner_tag()));
            let _ = fs::create_dir_all(self.root.join("keys"))
                .and_then(|()| fs::write(&tmp, &key))
                .and_then(|()| fs::rename(&tmp, &memo))
                .inspect_err(|_| {
                    let _ = fs::remove_file(&tmp);
                });
        }
        Ok(key)
    }
}

/// The name a file's key is remembered under: its identity and times.
fn memo_name(prefix: &str, m: &fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{prefix}-{:x}-{:x}-{}-{}.{}-{}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    )
}

/// Whether `s` is a key [`file_key`] makes with `prefix`.
fn is_key(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the file's last change is far enough behind `now` (two seconds) that a change to
/// come cannot carry the same mtime and ctime. Never on a filesystem that keeps whole seconds
/// (both nanosecond parts 0), where a clock stepped back could repeat them.
fn settled(m: &fs::Metadata, now: std::time::SystemTime) -> bool {
    use std::os::unix::fs::MetadataExt;
    settled_at(
        (m.mtime(), m.mtime_nsec()),
        (m.ctime(), m.ctime_nsec()),
        now,
    )
}

/// [`settled`] for an mtime and a ctime as (seconds, nanoseconds).
fn settled_at(mtime: (i64, i64), ctime: (i64, i64), now: std::time::SystemTime) -> bool {
    use std::time::{Duration, UNIX_EPOCH};
    if mtime.1 == 0 && ctime.1 == 0 {
        return false;
    }
    let at = |(secs, nsec): (i64, i64)| {
        UNIX_EPOCH + Duration::new(secs.max(0) as u64, nsec.clamp(0, 999_999_999) as u32)
    };
    now.duration_since(at(mtime).max(at(ctime)))
        .is_ok_and(|age| age >= Duration::from_secs(2))
}

/// The cache key of a file's content: `<prefix>-<sha256>`.
///
/// ```no_run
/// let key = nstest::rootfs::cache::file_key("tar", std::path::Path::new("alpine.tar.gz"))?;
/// assert!(key.starts_with("tar-"));
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
pub fn file_key(prefix: &str, path: &Path) -> Result<String, RootfsError> {
    let read_err = |e| RootfsError::Read {
        path: path.to_path_buf(),
        source: Arc::new(e),
    };
    let mut f = File::open(path).map_err(read_err)?;
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let hex: String = h
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("{prefix}-{hex}"))
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

    #[test]
    fn a_file_key_is_remembered_until_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("nstest-keys-{}", std::process::id()));
        let cache = Cache::open(dir.join("cache")).unwrap();
        // Written when the repository was checked out: long settled.
        let old = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let key = cache.file_key("tar", &old).unwrap();
        assert_eq!(key, file_key("tar", &old).unwrap());
        let memo = dir
            .join("cache/keys")
            .join(memo_name("tar", &fs::metadata(&old).unwrap()));
        assert_eq!(fs::read_to_string(&memo).unwrap(), key);
        // The remembered key is what a later call gets: the file is not read again.
        let planted = format!("tar-{}", "0".repeat(32));
        fs::write(&memo, &planted).unwrap();
        assert_eq!(cache.file_key("tar", &old).unwrap(), planted);
        // A memo that is not a key of this prefix is ignored.
        fs::write(&memo, "junk").unwrap();
        assert_eq!(cache.file_key("tar", &old).unwrap(), key);
        fs::write(&memo, &planted).unwrap();
        assert_eq!(
            cache.file_key("busybox", &old).unwrap(),
            file_key("busybox", &old).unwrap()
        );

        // A file written just now is hashed and not remembered, and each write is seen.
        let fresh = dir.join("fresh");
        fs::write(&fresh, "one").unwrap();
        let one = cache.file_key("tar", &fresh).unwrap();
        fs::write(&fresh, "two").unwrap();
        let two = cache.file_key("tar", &fresh).unwrap();
        assert_ne!(one, two);
        assert_eq!(two, file_key("tar", &fresh).unwrap());
        let remembered = fs::read_dir(dir.join("cache/keys")).unwrap().count();
        assert_eq!(remembered, 2, "the two keys of the settled file only");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_is_settled_two_seconds_after_its_last_change() {
        let f = std::env::temp_dir().join(format!("nstest-settled-{}", std::process::id()));
        fs::write(&f, "x").unwrap();
        let m = fs::metadata(&f).unwrap();
        let now = std::time::SystemTime::now();
        assert!(!settled(&m, now));
        assert!(!settled(&m, now + std::time::Duration::from_millis(1500)));
        assert!(settled(&m, now + std::time::Duration::from_secs(3)));
        fs::remove_file(&f).unwrap();
        // Whole seconds only (a coarse filesystem): never, however old.
        let epoch = std::time::UNIX_EPOCH;
        let later = epoch + std::time::Duration::from_secs(1_000_000);
        assert!(!settled_at((1000, 0), (1000, 0), later));
        assert!(settled_at((1000, 0), (1000, 5), later));
    }
}
