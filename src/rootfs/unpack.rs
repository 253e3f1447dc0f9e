//! Safe unpacking of a (compressed) tar archive into a fresh directory.
//!
//! Every entry is checked before anything is written: absolute paths, `..` components, hard links
//! whose target is not a plain path inside the archive, and relative symlinks that climb above
//! the root are refused with the entry's name. (An absolute symlink such as `/bin/sh ->
//! /bin/busybox` is normal in a rootfs: it is resolved inside the container after `pivot_root`,
//! and the unpacker never follows links.) The `tar` crate additionally refuses to write through
//! a symlink that leads out of the destination.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::RootfsError;

/// How the archive is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain `.tar`.
    None,
    /// `.tar.gz` / `.tgz`.
    Gzip,
}

/// Unpacks `archive` into `dest` (an existing, empty directory).
pub fn unpack(archive: &Path, compression: Compression, dest: &Path) -> Result<u64, RootfsError> {
    let file = File::open(archive).map_err(|e| RootfsError::Read {
        path: archive.into(),
        source: Arc::new(e),
    })?;
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(BufReader::new(file)),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(BufReader::new(file))),
    };
    let corrupt = |e: std::io::Error| RootfsError::Corrupt {
        archive: archive.into(),
        source: Arc::new(e),
    };
    let privileged = nix::unistd::geteuid().is_root();
    let mut ar = tar::Archive::new(reader);
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
            continue; // device nodes need privileges; the container gets its own /dev anyway
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

/// Lexically checks that `p` stays inside the root: relative, and never climbing above it.
fn check_inside(p: &Path) -> Result<(), &'static str> {
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
}
