//! Where a container's root filesystem comes from, as the `rootfs` option and `NSTEST_ROOTFS`
//! spell it.

use std::fmt;
use std::path::{Path, PathBuf};

use nstest_grammar as grammar;

use super::SpecError;

/// Where a container's root filesystem comes from.
///
/// ```
/// let s = nstest::spec::RootfsSource::parse("docker-archive:save.tar", std::path::Path::new("/pkg")).unwrap();
/// assert_eq!(s.to_string(), "docker-archive:/pkg/save.tar");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RootfsSource {
    /// `NSTEST_ROOTFS` if set, otherwise the busybox fixture, otherwise the host's own binaries.
    Default,
    /// `builtin:busybox`: a root with Alpine's minirootfs layout built from the host's static
    /// busybox (Debian's `busybox-static`), once, into the cache.
    Busybox,
    /// `builtin:host`: the host's `/usr /bin /sbin /lib*` bound read-only, with fresh writable
    /// `/etc /tmp /root /var`.
    Host,
    /// A tar archive: plain, gzip, zstd or xz (the compression is read from its first bytes).
    Tar(PathBuf),
    /// An unpacked root directory, used in place as the read-only lower layer.
    Dir(PathBuf),
    /// `oci:dir[:tag]`: an OCI image layout directory; its layers applied in order.
    Oci {
        /// The layout directory.
        dir: PathBuf,
        /// The image's tag (`org.opencontainers.image.ref.name`); optional when it holds one.
        tag: Option<String>,
    },
    /// `docker-archive:path`: a `docker save` archive; its first image's layers applied in order.
    DockerArchive(PathBuf),
    /// `docker://[registry/]repo[:tag][@sha256:digest]`: an image in a registry, pulled once
    /// into the cache and kept.
    Registry(ImageRef),
}

/// An image in a registry, as `docker://` names it.
///
/// ```
/// let s = nstest::spec::RootfsSource::parse("docker://alpine:3.20", std::path::Path::new("/")).unwrap();
/// let nstest::spec::RootfsSource::Registry(r) = s else { panic!() };
/// assert_eq!((r.api_host(), r.repository().as_str()), ("registry-1.docker.io", "library/alpine"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The registry's host (and port), as written: `docker.io` when the reference names none.
    pub registry: String,
    /// The repository as written.
    pub repo: String,
    /// The tag (`latest` when neither a tag nor a digest was given).
    pub tag: Option<String>,
    /// The digest (`sha256:…`), when the reference pins one.
    pub digest: Option<String>,
}

impl ImageRef {
    /// The host the registry's API answers on: Docker Hub's is `registry-1.docker.io`.
    pub fn api_host(&self) -> &str {
        match self.registry.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            r => r,
        }
    }

    /// The repository in the registry's API: Docker Hub's official images are `library/…`.
    pub fn repository(&self) -> String {
        if self.api_host() == "registry-1.docker.io" && !self.repo.contains('/') {
            format!("library/{}", self.repo)
        } else {
            self.repo.clone()
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "docker://{}/{}", self.registry, self.repo)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The archive names taken as tarballs.
const TAR_SUFFIXES: [&str; 7] = [
    ".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar.xz", ".txz",
];

impl RootfsSource {
    /// Parses a rootfs string as the `rootfs` option and `NSTEST_ROOTFS` spell it: `builtin:busybox`,
    /// `builtin:host`, `oci:dir[:tag]`, `docker-archive:path`, or a path to a `.tar` (also
    /// `.tar.gz`/`.tgz`, `.tar.zst`, `.tar.xz`) or a directory. A relative path is taken relative
    /// to `base` (the package's `CARGO_MANIFEST_DIR` for tests).
    ///
    /// A path that does not exist is accepted here; it is reported when the rootfs is prepared.
    ///
    /// ```
    /// use nstest::spec::RootfsSource;
    /// let base = std::path::Path::new("/pkg");
    /// assert_eq!(RootfsSource::parse("alpine.tar.gz", base), Ok(RootfsSource::Tar("/pkg/alpine.tar.gz".into())));
    /// assert_eq!(RootfsSource::parse("builtin:busybox", base), Ok(RootfsSource::Busybox));
    /// assert!(matches!(RootfsSource::parse("oci:img:3.20", base), Ok(RootfsSource::Oci { .. })));
    /// ```
    pub fn parse(s: &str, base: &Path) -> Result<Self, SpecError> {
        let s = match grammar::rootfs(s) {
            None if s.starts_with("builtin:") => {
                return Err(SpecError::UnknownBuiltin(s.to_string()))
            }
            None if s.is_empty() => return Err(SpecError::EmptyRootfs),
            None => return Err(SpecError::InvalidRootfs(s.to_string())),
            Some(grammar::Rootfs::Busybox) => return Ok(Self::Busybox),
            Some(grammar::Rootfs::Host) => return Ok(Self::Host),
            Some(grammar::Rootfs::Oci { dir, tag }) => {
                return Ok(Self::Oci {
                    dir: base.join(dir),
                    tag: tag.map(str::to_string),
                })
            }
            Some(grammar::Rootfs::DockerArchive(path)) => {
                return Ok(Self::DockerArchive(base.join(path)))
            }
            Some(grammar::Rootfs::Registry(r)) => {
                return Ok(Self::Registry(ImageRef {
                    registry: r.registry.to_string(),
                    repo: r.repo.to_string(),
                    tag: r.tag.map(str::to_string),
                    digest: r.digest.map(str::to_string),
                }))
            }
            Some(grammar::Rootfs::Path(path)) => path,
        };
        let path = base.join(s);
        if TAR_SUFFIXES.iter().any(|x| s.ends_with(x)) {
            Ok(Self::Tar(path))
        } else if path.is_dir() || !path.exists() && path.extension().is_none() {
            Ok(Self::Dir(path))
        } else {
            Err(SpecError::UnsupportedRootfs(path))
        }
    }

    /// The path this source reads, if it is one.
    ///
    /// ```
    /// use nstest::spec::RootfsSource;
    /// assert_eq!(RootfsSource::Tar("/a.tar".into()).path(), Some(std::path::Path::new("/a.tar")));
    /// assert_eq!(RootfsSource::Busybox.path(), None);
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Tar(p) | Self::Dir(p) | Self::DockerArchive(p) => Some(p),
            Self::Oci { dir, .. } => Some(dir),
            _ => None,
        }
    }
}

impl fmt::Display for RootfsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Busybox => f.write_str("builtin:busybox"),
            Self::Host => f.write_str("builtin:host"),
            Self::Tar(p) | Self::Dir(p) => write!(f, "{}", p.display()),
            Self::Oci { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            Self::Oci { dir, tag: Some(t) } => write!(f, "oci:{}:{t}", dir.display()),
            Self::DockerArchive(p) => write!(f, "docker-archive:{}", p.display()),
            Self::Registry(r) => write!(f, "{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_strings() {
        let base = Path::new("/pkg");
        assert_eq!(
            RootfsSource::parse("builtin:busybox", base),
            Ok(RootfsSource::Busybox)
        );
        assert_eq!(
            RootfsSource::parse("builtin:host", base),
            Ok(RootfsSource::Host)
        );
        assert!(RootfsSource::parse("builtin:debian", base).is_err());
        assert_eq!(
            RootfsSource::parse("r/alpine.tar.gz", base),
            Ok(RootfsSource::Tar("/pkg/r/alpine.tar.gz".into()))
        );
        assert_eq!(
            RootfsSource::parse("/a.tar", base),
            Ok(RootfsSource::Tar("/a.tar".into()))
        );
        assert_eq!(
            RootfsSource::parse("/nonexistent/root", base),
            Ok(RootfsSource::Dir("/nonexistent/root".into()))
        );
        assert!(RootfsSource::parse("/nonexistent/x.zip", base).is_err());
        for x in ["a.tar.zst", "a.tar.xz", "a.tgz", "a.txz"] {
            assert_eq!(
                RootfsSource::parse(x, base),
                Ok(RootfsSource::Tar(base.join(x)))
            );
        }
        assert_eq!(
            RootfsSource::parse("oci:img:3.20", base),
            Ok(RootfsSource::Oci {
                dir: "/pkg/img".into(),
                tag: Some("3.20".into())
            })
        );
        assert_eq!(
            RootfsSource::parse("oci:/abs/img", base),
            Ok(RootfsSource::Oci {
                dir: "/abs/img".into(),
                tag: None
            })
        );
        assert_eq!(
            RootfsSource::parse("docker-archive:save.tar", base),
            Ok(RootfsSource::DockerArchive("/pkg/save.tar".into()))
        );
        assert_eq!(
            RootfsSource::parse("oci:", base),
            Err(SpecError::InvalidRootfs("oci:".into()))
        );
        assert_eq!(RootfsSource::parse("", base), Err(SpecError::EmptyRootfs));
        assert_eq!(
            RootfsSource::parse("builtin:nope", base),
            Err(SpecError::UnknownBuiltin("builtin:nope".into()))
        );
    }
}
