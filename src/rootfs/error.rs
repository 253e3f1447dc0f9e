//! Why a rootfs could not be prepared: every variant names the path (or the image) at fault.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::{image, pull};
use crate::spec::SpecError;

/// A rootfs that could not be prepared. Every variant names the path at fault.
///
/// ```
/// use nstest::{rootfs, spec::RootfsSource};
/// let err = rootfs::prepare(&RootfsSource::Tar("/nonexistent.tar".into())).unwrap_err();
/// assert!(matches!(err, rootfs::RootfsError::NotFound { .. }));
/// ```
#[allow(missing_docs)] // each field is named by what it holds
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RootfsError {
    /// The rootfs path does not exist.
    NotFound { path: PathBuf },
    /// The rootfs string or `NSTEST_ROOTFS` does not parse.
    Spec(SpecError),
    /// The archive could not be read.
    Read {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    /// The archive is not a valid (compressed) tar, or is truncated.
    Corrupt {
        archive: PathBuf,
        source: Arc<std::io::Error>,
    },
    /// An entry would land outside the root: refused, and the partial unpack removed.
    Escape {
        archive: PathBuf,
        entry: PathBuf,
        reason: String,
    },
    /// An entry could not be written.
    Unpack {
        archive: PathBuf,
        entry: PathBuf,
        source: Arc<std::io::Error>,
    },
    /// `builtin:busybox` was asked for and no static busybox is installed.
    NoBusybox,
    /// The busybox binary could not be copied or run.
    Busybox {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    /// An image (OCI layout, `docker save` archive) is not what it should be: a missing or
    /// corrupt blob or layer, a manifest that does not parse, no image of that tag.
    Image {
        path: PathBuf,
        reason: image::ImageError,
    },
    /// The cache directory could not be written.
    Cache {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    /// The archive's owners could not be given in a user namespace with subordinate ids.
    Owners(crate::idmap::IdMapError),
    /// An image of a registry (`docker://…`) could not be pulled.
    Pull {
        reference: String,
        reason: pull::PullError,
    },
}

impl fmt::Display for RootfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { path } => write!(
                f,
                "rootfs {} does not exist: fix the `rootfs` option or NSTEST_ROOTFS (relative paths start at the package's directory for tests, at the current directory for `Container`)",
                path.display()
            ),
            Self::Spec(e) => write!(f, "{e}"),
            Self::Read { path, source } => write!(f, "cannot read rootfs {}: {}", path.display(), chain(source)),
            Self::Corrupt { archive, source } => write!(
                f,
                "rootfs archive {} is corrupt or truncated ({}): download or build it again",
                archive.display(),
                chain(source)
            ),
            Self::Escape { archive, entry, reason } => write!(
                f,
                "rootfs archive {} is refused: entry {:?}: {reason}; nothing was unpacked",
                archive.display(),
                entry.display().to_string()
            ),
            Self::Unpack { archive, entry, source } => write!(
                f,
                "cannot unpack entry {:?} of {}: {}",
                entry.display().to_string(),
                archive.display(),
                chain(source)
            ),
            Self::NoBusybox => f.write_str(
                "builtin:busybox needs a static busybox on the host: install it (Debian/Ubuntu: apt-get install busybox-static)",
            ),
            Self::Image { path, reason } => write!(f, "image {} is refused: {reason}", path.display()),
            Self::Busybox { path, source } => write!(f, "cannot use busybox {}: {source}", path.display()),
            Self::Cache { path, source } => write!(
                f,
                "cannot write nstest's cache at {}: {source} (set NSTEST_CACHE_DIR to a writable directory)",
                path.display()
            ),
            Self::Owners(e) => write!(f, "{e}"),
            Self::Pull { reference, reason } => write!(f, "cannot pull {reference}: {reason}"),
        }
    }
}

impl std::error::Error for RootfsError {}

/// An error and its sources, `a: b: c` (the tar crate keeps the useful part in a source).
fn chain(e: &std::io::Error) -> String {
    let mut s = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(inner) = next {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        next = inner.source();
    }
    s
}
