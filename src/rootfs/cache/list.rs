//! What the cache holds, and its removal: `list`, `prune`, and the shared hold that keeps
//! `prune` from removing a base under running containers.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};

use super::{io_err, remove_tree, Cache};
use crate::rootfs::RootfsError;

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
pub(super) fn lock_file(path: &Path) -> std::io::Result<File> {
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
