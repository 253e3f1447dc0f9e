//! Safe unpacking of a (compressed) tar archive, or of an image layer, into a directory.
//!
//! Every entry is checked before anything is written: absolute paths, `..` components, hard links
//! whose target is not a plain path inside the archive, and relative symlinks that climb above
//! the root are refused with the entry's name. (An absolute symlink such as `/bin/sh ->
//! /bin/busybox` is normal in a rootfs: it is resolved inside the container after `pivot_root`,
//! and the unpacker never follows links.) The `tar` crate additionally refuses to write through
//! a symlink that leads out of the destination; whiteouts never delete through one either.
//!
//! The compression (none, gzip, zstd, xz) is read from the archive's first bytes, not its name.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::owners::Owners;
use super::RootfsError;

/// How an archive is compressed, as its first bytes say.
///
/// ```
/// use nstest::rootfs::unpack::Compression;
/// assert_eq!(Compression::sniff(&[0x1f, 0x8b]), Compression::Gzip);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (`.tar.gz`, `.tgz`).
    Gzip,
    /// zstd (`.tar.zst`).
    Zstd,
    /// xz (`.tar.xz`).
    Xz,
}

impl Compression {
    /// The compression of the stream that starts with `head`.
    ///
    /// ```
    /// use nstest::rootfs::unpack::Compression;
    /// assert_eq!(Compression::sniff(b"\xfd7zXZ\x00"), Compression::Xz);
    /// ```
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Self::Xz
        } else {
            Self::None
        }
    }
}

/// The decompressed stream of the archive at `path`.
///
/// ```no_run
/// let mut tar = tar::Archive::new(nstest::rootfs::unpack::open(std::path::Path::new("root.tar.zst"))?);
/// # let _ = &mut tar;
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
pub fn open(path: &Path) -> Result<Box<dyn Read>, RootfsError> {
    let read_err = |e| RootfsError::Read {
        path: path.into(),
        source: Arc::new(e),
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut head = [0u8; 6];
    let n = file.read(&mut head).map_err(read_err)?;
    let file = BufReader::new(std::io::Cursor::new(head[..n].to_vec()).chain(file));
    Ok(match Compression::sniff(&head[..n]) {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
        Compression::Zstd => {
            Box::new(
                zstd::stream::read::Decoder::new(file).map_err(|e| RootfsError::Corrupt {
                    archive: path.into(),
                    source: Arc::new(e),
                })?,
            )
        }
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(file)),
    })
}

/// Unpacks the rootfs archive `archive` into `dest` (an existing, empty directory). Returns the
/// number of entries.
///
/// ```no_run
/// let n = nstest::rootfs::unpack::unpack("alpine.tar.gz".as_ref(), "/tmp/root".as_ref(), &mut Default::default())?;
/// println!("{n} entries");
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
pub fn unpack(archive: &Path, dest: &Path, owners: &mut Owners) -> Result<u64, RootfsError> {
    let count = unpack_entries(archive, dest, false, owners)?;
    if count == 0 {
        return Err(RootfsError::Corrupt {
            archive: archive.into(),
            source: Arc::new(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the archive holds no entries",
            )),
        });
    }
    Ok(count)
}

/// Applies the image layer `layer` on top of `dest`: its whiteouts (`.wh.<name>` deletes
/// `<name>` from the layers below, `.wh..wh..opq` empties its directory) first, then its entries.
///
/// ```no_run
/// for layer in ["layer1.tar.gz", "layer2.tar.gz"] {
///     nstest::rootfs::unpack::apply_layer(layer.as_ref(), "/tmp/root".as_ref(), &mut Default::default())?;
/// }
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
pub fn apply_layer(layer: &Path, dest: &Path, owners: &mut Owners) -> Result<u64, RootfsError> {
    // First pass: the deletions this layer makes in the layers below it.
    let mut ar = tar::Archive::new(open(layer)?);
    let corrupt = |e: std::io::Error| RootfsError::Corrupt {
        archive: layer.into(),
        source: Arc::new(e),
    };
    for entry in ar.entries().map_err(corrupt)? {
        let entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let escape = |reason: String| RootfsError::Escape {
            archive: layer.into(),
            entry: path.clone(),
            reason,
        };
        check_inside(&path).map_err(|r| escape(r.to_string()))?;
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let parent = path.parent().unwrap_or(Path::new(""));
        if name == ".wh..wh..opq" {
            let dir = safe_existing(dest, parent).map_err(|r| escape(r.to_string()))?;
            if let Some(dir) =
                dir.filter(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()))
            {
                for child in std::fs::read_dir(&dir).map_err(corrupt)?.flatten() {
                    remove_any(&child.path());
                    owners.forget(&parent.join(child.file_name()));
                }
            }
        } else if let Some(hidden) = name.strip_prefix(".wh.") {
            let target = parent.join(hidden);
            check_inside(&target).map_err(|r| escape(r.to_string()))?;
            if let Some(t) = safe_existing(dest, &target).map_err(|r| escape(r.to_string()))? {
                remove_any(&t);
            }
            owners.forget(&target);
        }
    }
    // Second pass: the layer's own files.
    unpack_entries(layer, dest, true, owners)
}

/// Removes a file, a symlink or a directory tree, never following a symlink.
fn remove_any(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => super::cache::remove_tree(path),
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// `dest/rel` if it exists, reached without crossing a symlink (a whiteout must not delete
/// through one); `None` if it does not exist.
fn safe_existing(dest: &Path, rel: &Path) -> Result<Option<PathBuf>, &'static str> {
    let mut at = dest.to_path_buf();
    let parts: Vec<_> = rel
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    for (i, c) in parts.iter().enumerate() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Err(_) => return Ok(None),
            Ok(m) if m.file_type().is_symlink() && i + 1 < parts.len() => {
                return Err("a whiteout would reach through a symlink")
            }
            Ok(_) => {}
        }
    }
    Ok(Some(at))
}

/// Unpacks every entry of `archive` into `dest`, checking each first. With `layer`, whiteout
/// entries are not written (their deletions were made by [`apply_layer`]).
fn unpack_entries(
    archive: &Path,
    dest: &Path,
    layer: bool,
    owners: &mut Owners,
) -> Result<u64, RootfsError> {
    let corrupt = |e: std::io::Error| RootfsError::Corrupt {
        archive: archive.into(),
        source: Arc::new(e),
    };
    let privileged = nix::unistd::geteuid().is_root();
    let mut ar = tar::Archive::new(open(archive)?);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_preserve_ownerships(privileged);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);

    let mut count = 0u64;
    let mut locked_dirs: Vec<(PathBuf, u32)> = Vec::new();
    for entry in ar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let escape = |reason: String| RootfsError::Escape {
            archive: archive.into(),
            entry: path.clone(),
            reason,
        };
        check_inside(&path).map_err(|r| escape(r.to_string()))?;
        if layer
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".wh."))
        {
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(corrupt)?
                .ok_or_else(|| escape("link without a target".into()))?
                .into_owned();
            if kind.is_hard_link() {
                check_inside(&target)
                    .map_err(|r| escape(format!("hard link to {}: {r}", target.display())))?;
            } else if target.is_relative() {
                let parent = path.parent().unwrap_or(Path::new(""));
                check_inside(&parent.join(&target)).map_err(|_| {
                    escape(format!(
                        "symlink to {} points outside the root",
                        target.display()
                    ))
                })?;
            }
        }
        if (kind.is_character_special() || kind.is_block_special()) && !privileged {
            // The container gets its own /dev: nodes there are skipped. Elsewhere a device
            // node that cannot be made is refused rather than silently lost.
            if path
                .components()
                .find(|c| matches!(c, Component::Normal(_)))
                == Some(Component::Normal("dev".as_ref()))
            {
                continue;
            }
            return Err(escape(
                "a device node outside /dev, which an unprivileged user cannot create".into(),
            ));
        }
        let unpacked = entry.unpack_in(dest).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof
                || e.kind() == std::io::ErrorKind::InvalidData
            {
                corrupt(e)
            } else {
                RootfsError::Unpack {
                    archive: archive.into(),
                    entry: path.clone(),
                    source: Arc::new(e),
                }
            }
        })?;
        if !unpacked {
            return Err(escape("it would be written outside the root".into()));
        }
        if kind.is_hard_link() {
            owners.forget(&path); // another file now: its owner is the target's
        } else if !privileged {
            let h = entry.header();
            let (uid, gid, mode) = (h.uid(), h.gid(), h.mode());
            let id = |v: std::io::Result<u64>| v.ok().and_then(|v| u32::try_from(v).ok());
            if let (Some(uid), Some(gid), Ok(mode)) = (id(uid), id(gid), mode) {
                owners.record(&path, uid, gid, mode);
            }
        }
        if kind.is_dir() && !privileged {
            // A read-only directory would stop the entries that follow; open it up until the end.
            let full = dest.join(&path);
            let mode = std::fs::symlink_metadata(&full)
                .map(|m| m.permissions().mode())
                .unwrap_or(0o755);
            if mode & 0o700 != 0o700 {
                let _ =
                    std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode | 0o700));
                locked_dirs.push((full, mode));
            }
        }
        count += 1;
    }
    for (dir, mode) in locked_dirs.into_iter().rev() {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
    }
    Ok(count)
}

/// Lexically checks that `p` stays inside the root: relative, and never climbing above it.
pub(crate) fn check_inside(p: &Path) -> Result<(), &'static str> {
    let mut depth = 0usize;
    for c in p.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => return Err("absolute path"),
            Component::ParentDir if depth == 0 => return Err("'..' leads outside the root"),
            Component::ParentDir => depth -= 1,
            Component::CurDir => {}
            Component::Normal(_) => depth += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_escape_are_caught() {
        assert!(check_inside(Path::new("./bin/sh")).is_ok());
        assert!(check_inside(Path::new("usr/lib/../bin")).is_ok());
        assert!(check_inside(Path::new("/etc/passwd")).is_err());
        assert!(check_inside(Path::new("../x")).is_err());
        assert!(check_inside(Path::new("a/../../x")).is_err());
        assert!(check_inside(Path::new("./../x")).is_err());
    }

    #[test]
    fn compression_is_read_from_the_first_bytes() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"\xfd7zXZ\x00"), Compression::Xz);
        assert_eq!(Compression::sniff(b"etc/\0\0"), Compression::None);
        assert_eq!(Compression::sniff(b""), Compression::None);
    }
}
