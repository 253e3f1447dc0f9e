//! The copy fallback: a private copy of the base when overlayfs is refused.

use std::fs;
use std::os::unix::fs::{lchown, symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Copies the tree at `src` into the existing directory `dst`: regular files, directories,
/// symlinks (never followed), fifos and device nodes, with their modes and, where permitted,
/// owners. On failure returns the path that could not be copied.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    let privileged = nix::unistd::geteuid().is_root();
    let mut dirs = Vec::new();
    copy_dir(src, dst, privileged, &mut dirs)?;
    // Directory modes last, so read-only directories could be filled first.
    for (dir, mode) in dirs.into_iter().rev() {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
            .map_err(|e| (dir.clone(), e))?;
    }
    Ok(())
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    privileged: bool,
    dirs: &mut Vec<(PathBuf, u32)>,
) -> Result<(), (PathBuf, std::io::Error)> {
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let meta = fs::symlink_metadata(src).map_err(at(src))?;
    dirs.push((dst.to_path_buf(), meta.permissions().mode() & 0o7777));
    for entry in fs::read_dir(src).map_err(at(src))? {
        let entry = entry.map_err(at(src))?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let m = fs::symlink_metadata(&from).map_err(at(&from))?;
        let ft = m.file_type();
        if ft.is_dir() {
            fs::create_dir(&to).map_err(at(&to))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(0o700)).map_err(at(&to))?;
            copy_dir(&from, &to, privileged, dirs)?;
        } else if ft.is_symlink() {
            symlink(fs::read_link(&from).map_err(at(&from))?, &to).map_err(at(&to))?;
        } else if ft.is_file() {
            fs::copy(&from, &to).map_err(at(&from))?;
        } else if ft.is_fifo() || (privileged && (ft.is_char_device() || ft.is_block_device())) {
            crate::sys::mknod_exact(&to, m.mode(), m.rdev())
                .map_err(|e| (to.clone(), std::io::Error::from(e.errno)))?;
        } else {
            continue; // sockets, and device nodes without privileges
        }
        if privileged {
            lchown(&to, Some(m.uid()), Some(m.gid())).map_err(at(&to))?;
            if !ft.is_symlink() && m.mode() & 0o6000 != 0 {
                // chown cleared the set-user/group-id bits: give them back.
                fs::set_permissions(&to, fs::Permissions::from_mode(m.mode() & 0o7777))
                    .map_err(at(&to))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    #[test]
    fn a_fifo_keeps_its_mode_whatever_the_umask() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        let fifo = src.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666)).unwrap();
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        let copied = super::copy_tree(&src, &dst);
        nix::sys::stat::umask(old);
        copied.unwrap();
        let m = std::fs::symlink_metadata(dst.join("fifo")).unwrap();
        assert!(m.file_type().is_fifo());
        assert_eq!(m.permissions().mode() & 0o7777, 0o666);
    }
}
