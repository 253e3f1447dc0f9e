//! Root filesystems: where a container's files come from, prepared once per run.
//!
//! A [`RootfsSource`] is turned into a [`Base`] on the host side, before any container starts: a
//! tarball is unpacked (safely, see [`unpack`]) into the [cache](mod@cache), keyed by its digest, so a
//! second run unpacks nothing; a directory is used in place; `builtin:busybox` is built from the
//! host's static busybox; `builtin:host` needs no preparation. Each distinct source is prepared
//! at most once per process ([`prepare`] memoizes), then shared read-only by every container.

pub mod cache;
mod error;
pub mod image;
#[doc(hidden)]
pub mod owners;
pub mod pull;
#[doc(hidden)]
pub mod unpack;

#[path = "../../rootfs-fixtures/busybox.rs"]
#[doc(hidden)]
pub mod busybox;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use once_cell::sync::{Lazy, OnceCell};

use crate::spec::{RootfsSource, SpecError};
use cache::Cache;
pub use error::RootfsError;
use owners::Owners;

#[doc(hidden)] // for nstest's own tests and examples
/// A prepared root, shared read-only by the containers that use it.
///
/// ```no_run
/// if let nstest::rootfs::Base::Dir(d) = nstest::rootfs::prepare(&nstest::spec::RootfsSource::Busybox)?.base {
///     assert!(d.join("bin/busybox").exists());
/// }
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    /// An unpacked tree: the overlay's lower layer.
    Dir(PathBuf),
    /// The host's binaries, bound read-only (`builtin:host`).
    Host,
}

#[doc(hidden)] // for nstest's own tests and examples
/// A prepared base with the cache its containers mount their scratch space in.
///
/// ```no_run
/// let p = nstest::rootfs::prepare(&nstest::spec::RootfsSource::Host)?;
/// assert_eq!(p.base, nstest::rootfs::Base::Host);
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The root.
    pub base: Base,
    /// The cache root's `mnt/` directory.
    pub scratch: PathBuf,
}

static CACHE: OnceCell<Cache> = OnceCell::new();

#[doc(hidden)] // for nstest's own tests and examples
/// The cache, opened once per process.
///
/// ```no_run
/// println!("{}", nstest::rootfs::cache()?.root().display());
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
pub fn cache() -> Result<&'static Cache, RootfsError> {
    CACHE.get_or_try_init(|| {
        let c = Cache::open(Cache::default_root())?;
        c.hold_in_use();
        Ok(c)
    })
}

type Slot = Arc<OnceCell<Result<Prepared, RootfsError>>>;
static PREPARED: Lazy<Mutex<HashMap<RootfsSource, Slot>>> = Lazy::new(Default::default);

/// What [`RootfsSource::Default`] means here: `NSTEST_ROOTFS` (relative to `base_dir`), else
/// `builtin:busybox` when a static busybox is installed, else `builtin:host`.
///
/// ```
/// std::env::set_var("NSTEST_ROOTFS", "builtin:host");
/// let s = nstest::rootfs::default_source(std::path::Path::new("/pkg")).unwrap();
/// assert_eq!(s, nstest::spec::RootfsSource::Host);
/// ```
pub fn default_source(base_dir: &Path) -> Result<RootfsSource, RootfsError> {
    match crate::settings::rootfs() {
        Some(s) => RootfsSource::parse(&s, base_dir)
            .map_err(|e| RootfsError::Spec(SpecError::Env("NSTEST_ROOTFS", Box::new(e)))),
        _ if busybox_path().is_some() => Ok(RootfsSource::Busybox),
        _ => Ok(RootfsSource::Host),
    }
}

/// [`default_source`], worked out once per directory and process: `NSTEST_ROOTFS` is read and
/// parsed (a `stat` for a directory) once per run, not on every test's path.
pub(crate) fn default_source_cached(base_dir: &Path) -> Result<RootfsSource, RootfsError> {
    static SOURCES: Lazy<Mutex<HashMap<PathBuf, Result<RootfsSource, RootfsError>>>> =
        Lazy::new(Default::default);
    let mut sources = SOURCES.lock().unwrap_or_else(|e| e.into_inner());
    sources
        .entry(base_dir.to_path_buf())
        .or_insert_with(|| default_source(base_dir))
        .clone()
}

/// What, beside the busybox binary's digest, makes the key of `builtin:busybox`'s base: the
/// fixture's layout (a new one is a new base).
fn busybox_layout() -> String {
    format!("layout-{}", busybox::LAYOUT)
}

fn busybox_path() -> Option<&'static PathBuf> {
    static BUSYBOX: Lazy<Option<PathBuf>> = Lazy::new(busybox::find);
    BUSYBOX.as_ref()
}

#[doc(hidden)] // for nstest's own tests and examples
/// One line for the run's header: which rootfs the tests without a `rootfs` option get.
///
/// ```
/// std::env::set_var("NSTEST_ROOTFS", "builtin:host");
/// assert!(nstest::rootfs::describe_default(std::path::Path::new("/")).starts_with("builtin:host"));
/// ```
pub fn describe_default(base_dir: &Path) -> String {
    match default_source(base_dir) {
        Ok(RootfsSource::Busybox) => format!(
            "builtin:busybox (built from {} into {})",
            busybox_path()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            Cache::default_root().display()
        ),
        Ok(RootfsSource::Host) => {
            "builtin:host (no static busybox found: the host's /usr /bin /sbin /lib* read-only)"
                .to_string()
        }
        Ok(s) => format!("{s} (from NSTEST_ROOTFS)"),
        Err(e) => format!("unusable: {e}"),
    }
}

/// A fresh directory on disk for one container's overlay layer (its `upper` and `work`):
/// `tmp/layer-<n>.<pid>-<pidns>` in the cache, for kernels whose tmpfs cannot hold overlayfs's `user.*`
/// xattrs (rootless before Linux 6.6). The caller removes it; a killed run's are removed as
/// stale.
pub(crate) fn disk_layer_dir() -> Result<PathBuf, RootfsError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = cache()?.root().join("tmp");
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = tmp.join(format!("layer-{n}.{}", crate::sys::owner_tag()));
        // Never one that exists: it may be another process's (same pid, another namespace).
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(RootfsError::Cache {
                    path: dir,
                    source: Arc::new(e),
                })
            }
        }
    }
}

#[doc(hidden)] // for nstest's own tests and examples
/// A fresh directory for a kept container (`NSTEST_KEEP=1`): `kept/<pid>-<pidns>/<name>` in the cache.
/// Earlier runs' are removed when the cache is opened.
///
/// ```no_run
/// let dir = nstest::rootfs::keep_dir("my_test")?;
/// assert!(dir.ends_with("my_test"));
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
pub fn keep_dir(name: &str) -> Result<PathBuf, RootfsError> {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = cache()?
        .root()
        .join("kept")
        .join(crate::sys::owner_tag())
        .join(safe);
    cache::remove_tree(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| RootfsError::Cache {
        path: dir.clone(),
        source: Arc::new(e),
    })?;
    Ok(dir)
}

#[doc(hidden)] // for nstest's own tests and examples
/// Prepares `source` (at most once per process) and returns its base.
///
/// ```no_run
/// use nstest::{rootfs, spec::RootfsSource};
/// let prepared = rootfs::prepare(&RootfsSource::Busybox)?;
/// println!("{:?}", prepared.base); // Dir("~/.cache/nstest/bases/busybox-…")
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
pub fn prepare(source: &RootfsSource) -> Result<Prepared, RootfsError> {
    slot(source)
        .get_or_init(|| prepare_uncached(source))
        .clone()
}

/// Where [`prepare`] keeps what it made of `source` in this process.
fn slot(source: &RootfsSource) -> Slot {
    PREPARED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(source.clone())
        .or_default()
        .clone()
}

/// What [`prepare`] will return for `source` when that needs no work: a directory, the host,
/// or a base that is in the cache already under a key the cache remembers (the busybox one, a
/// tarball's). Hashes no file and builds nothing: for the spec of a container cloned before
/// `main`, which sets itself up while the harness starts (`parent::prefork`). The cache is
/// opened (and held in use, so that no `prune` takes the base away from under that container)
/// as [`prepare`] opens it, and what this finds is what [`prepare`] then returns for `source` in
/// this process, without looking again. `None` for anything else.
pub(crate) fn prepared_if_ready(source: &RootfsSource) -> Option<Prepared> {
    let cache = cache().ok()?;
    let base = match source {
        RootfsSource::Host => Base::Host,
        RootfsSource::Busybox => {
            let key =
                cache.remembered_derived_key("busybox", busybox_path()?, &busybox_layout())?;
            Base::Dir(cache.built(&key)?)
        }
        RootfsSource::Dir(path) => Base::Dir(existing(path).ok().filter(|p| p.is_dir())?),
        RootfsSource::Tar(path) => {
            let key = cache.remembered_key("tar", &existing(path).ok()?)?;
            Base::Dir(cache.built(&owned_key(key))?)
        }
        _ => return None,
    };
    let prepared = Prepared {
        base,
        scratch: cache.scratch_mountpoint(),
    };
    // What `prepare` would find again for this source later in the process (the same key, the
    // base that is there, held in use): it finds this instead of looking it up again.
    slot(source).get_or_init(|| Ok(prepared)).clone().ok()
}

fn prepare_uncached(source: &RootfsSource) -> Result<Prepared, RootfsError> {
    let cache = cache()?;
    let started = std::time::Instant::now();
    let built = |(dir, built): (PathBuf, bool)| {
        if built {
            // Said once per build: a second run that finds the base in the cache says nothing.
            eprintln!(
                "nstest: unpacked {source} into {} in {} ms",
                dir.display(),
                started.elapsed().as_millis()
            );
        }
        Base::Dir(dir)
    };
    let base = match source {
        RootfsSource::Default => unreachable!("the caller resolves the default source"),
        RootfsSource::Host => Base::Host,
        RootfsSource::Busybox => {
            let bb = busybox_path().ok_or(RootfsError::NoBusybox)?;
            let key = cache.derived_file_key("busybox", bb, &busybox_layout())?;
            built(cache.get_or_build(&key, |tmp| busybox::build(bb, tmp))?)
        }
        RootfsSource::Dir(path) => {
            let path = existing(path)?;
            if !path.is_dir() {
                return Err(RootfsError::Spec(SpecError::UnsupportedRootfs(path)));
            }
            Base::Dir(path)
        }
        RootfsSource::Tar(path) => {
            let path = existing(path)?;
            let key = owned_key(cache.file_key("tar", &path)?);
            built(cache.get_or_build(&key, |tmp| {
                let mut owners = Owners::default();
                unpack::unpack(&path, tmp, &mut owners)?;
                // A `docker save` archive, or an OCI layout packed as a tar, given as a plain
                // path: recognised by what it holds, and its image used.
                let kind = image::kind_of_unpacked(tmp);
                if kind == image::Unpacked::Rootfs {
                    return settle_owners(cache, &key, tmp, owners);
                }
                let scratch = cache.scratch_dir(&key);
                let io = |e: std::io::Error| RootfsError::Cache {
                    path: tmp.to_path_buf(),
                    source: Arc::new(e),
                };
                std::fs::rename(tmp, &scratch).map_err(io)?;
                std::fs::create_dir(tmp).map_err(io)?;
                let mut owners = Owners::default();
                let result = match kind {
                    image::Unpacked::DockerSave => {
                        image::build_docker_unpacked(&path, &scratch, tmp, &mut owners)
                    }
                    _ => image::build_oci_unpacked(&scratch, tmp, &mut owners),
                };
                cache::remove_tree(&scratch);
                result?;
                let what = if kind == image::Unpacked::DockerSave {
                    "a `docker save` archive"
                } else {
                    "an OCI image layout"
                };
                eprintln!(
                    "nstest: {} is {what}: its image is the rootfs",
                    path.display()
                );
                settle_owners(cache, &key, tmp, owners)
            })?)
        }
        RootfsSource::Oci { dir, tag } => {
            let dir = existing(dir)?;
            let digest = image::oci_manifest(&dir, tag.as_deref())?;
            let hex: String = digest
                .rsplit(':')
                .next()
                .unwrap_or("")
                .chars()
                .filter(char::is_ascii_hexdigit)
                .take(32)
                .collect();
            let key = owned_key(format!("oci-{hex}"));
            built(cache.get_or_build(&key, |tmp| {
                let mut owners = Owners::default();
                image::build_oci(&dir, &digest, tmp, &mut owners)?;
                settle_owners(cache, &key, tmp, owners)
            })?)
        }
        RootfsSource::Registry(r) => {
            let (store, digest) = pull::pull(cache, r)?;
            let hex: String = digest
                .trim_start_matches("sha256:")
                .chars()
                .take(32)
                .collect();
            let key = owned_key(format!("oci-{hex}"));
            built(cache.get_or_build(&key, |tmp| {
                let mut owners = Owners::default();
                image::build_oci(&store, &digest, tmp, &mut owners)?;
                settle_owners(cache, &key, tmp, owners)
            })?)
        }
        RootfsSource::DockerArchive(path) => {
            let path = existing(path)?;
            let key = owned_key(cache.file_key("docker", &path)?);
            built(cache.get_or_build(&key, |tmp| {
                let scratch = cache.scratch_dir(&key);
                let mut owners = Owners::default();
                let result = image::build_docker_archive(&path, &scratch, tmp, &mut owners);
                cache::remove_tree(&scratch);
                result?;
                settle_owners(cache, &key, tmp, owners)
            })?)
        }
    };
    Ok(Prepared {
        base,
        scratch: cache.scratch_mountpoint(),
    })
}

/// The cache key of an unpacked archive: with subordinate ids, its files belong to other ids on
/// the host than without, so the two are kept apart.
fn owned_key(key: String) -> String {
    match crate::idmap::ranges() {
        Some(r) => format!("{key}-{}", r.tag()),
        None => key,
    }
}

/// After an unprivileged unpack into `tmp`: gives the recorded owners in a user namespace with
/// subordinate ids, or, without them, keeps the record in the cache (`owners/<key>`) and says
/// once that those files appear as root's.
fn settle_owners(
    cache: &Cache,
    key: &str,
    tmp: &Path,
    mut owners: Owners,
) -> Result<(), RootfsError> {
    if owners.is_empty() {
        return Ok(());
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e| RootfsError::Cache {
            path: path.clone(),
            source: Arc::new(e),
        }
    };
    let Some(ranges) = crate::idmap::ranges() else {
        let dir = cache.root().join("owners");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let record = dir.join(key);
        std::fs::write(&record, owners.encode()).map_err(io(&record))?;
        eprintln!(
            "nstest: note: {} files of this rootfs belong to other users than root; without \
             subordinate ids (/etc/subuid and newuidmap) they appear as root's (recorded in {})",
            owners.len(),
            record.display()
        );
        return Ok(());
    };
    let beyond = owners.retain(|u, g| ranges.maps(u, g));
    if beyond > 0 {
        eprintln!(
            "nstest: note: {beyond} files of this rootfs belong to ids beyond the subordinate \
             range ({} ids); they appear as root's",
            ranges.sub_uid.count.min(ranges.sub_gid.count)
        );
    }
    if owners.is_empty() {
        return Ok(());
    }
    let manifest = cache
        .root()
        .join("tmp")
        .join(format!("owners-{key}.{}", crate::sys::owner_tag()));
    std::fs::write(&manifest, owners.encode()).map_err(io(&manifest))?;
    let applied = ranges.chown_in_userns(tmp, &manifest);
    let _ = std::fs::remove_file(&manifest);
    applied.map_err(RootfsError::Owners)
}

/// `path`, resolved; a path that is not there is `NotFound`, one that cannot be reached
/// (permissions, a symlink loop) keeps its error.
fn existing(path: &Path) -> Result<PathBuf, RootfsError> {
    path.canonicalize().map_err(|e| match e.kind() {
        // `a.tar/x`: not there either.
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => RootfsError::NotFound {
            path: path.to_path_buf(),
        },
        _ => RootfsError::Read {
            path: path.to_path_buf(),
            source: Arc::new(e),
        },
    })
}
