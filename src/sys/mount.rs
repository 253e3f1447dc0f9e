//! The container's mounts: propagation, binds, device nodes, `pivot_root`.

use std::ffi::CString;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::{Result, SysError};

/// `mount(2)` with the call spelled out on failure.
pub fn mount(
    src: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    nix::mount::mount(Some(src), target, fstype, flags, data).map_err(|e| {
        SysError::new(
            format!(
                "mount({src:?}, {:?}, {:?}, {flags:?}, {:?})",
                target.display().to_string(),
                fstype.unwrap_or(""),
                data.unwrap_or("")
            ),
            e,
        )
    })
}

/// Makes every mount of this (new) mount namespace private, so nothing propagates to the host.
pub fn make_rprivate() -> Result<()> {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| SysError::new("mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE, NULL)", e))
}

/// Bind-mounts `src` on `target` (recursively), read-only when `ro`. The read-only remount keeps
/// the flags the source already has (in a user namespace they are locked and must be kept).
pub fn bind(src: &Path, target: &Path, ro: bool) -> Result<()> {
    let s = src.to_string_lossy();
    mount(&s, target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    if ro {
        use nix::sys::statvfs::{statvfs, FsFlags};
        let have = statvfs(target)
            .map(|v| v.flags())
            .unwrap_or(FsFlags::empty());
        let mut flags =
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
        for (fs, ms) in [
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if have.contains(fs) {
                flags |= ms;
            }
        }
        mount(&s, target, None, flags, None)?;
    }
    Ok(())
}

/// `src` bound at `target` with everything mounted under it, all read-only and `nosuid`:
/// `mount_setattr(AT_RECURSIVE)` (Linux 5.12); before it, only the top mount is made read-only.
pub fn bind_read_only_tree(src: &Path, target: &Path) -> Result<()> {
    let s = src.to_string_lossy();
    mount(&s, target, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    let call = || {
        format!(
            "mount_setattr({:?}, AT_RECURSIVE, RDONLY|NOSUID)",
            target.display().to_string()
        )
    };
    let c_target = CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| SysError::new(call(), Errno::EINVAL))?;
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NOSUID,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a NUL-terminated path and a mount_attr on this stack, with its size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c_target.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    match (r, Errno::last()) {
        (0, _) => Ok(()),
        (_, Errno::ENOSYS) => {
            let flags =
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
            mount(&s, target, None, flags, None)
        }
        (_, e) => Err(SysError::new(call(), e)),
    }
}

/// Sets the extended attribute `name` of `path` (not following a final symlink) to `value`.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    let call = || format!("lsetxattr({:?}, {name:?})", path.display().to_string());
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| SysError::new(call(), Errno::EINVAL))?;
    let c_name = CString::new(name).map_err(|_| SysError::new(call(), Errno::EINVAL))?;
    // SAFETY: both strings are NUL-terminated and live across the call; `value` is a valid
    // slice of the length passed.
    let r = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        return Err(SysError::new(call(), Errno::last()));
    }
    Ok(())
}

/// Creates at `target` a device node like the one at `host` (same type, numbers and mode).
pub fn mknod_like(host: &Path, target: &Path) -> Result<()> {
    let st = nix::sys::stat::stat(host)
        .map_err(|e| SysError::new(format!("stat({:?})", host.display().to_string()), e))?;
    mknod_exact(target, st.st_mode, st.st_rdev)
}

/// Creates at `target` a fifo or device node of `mode` (its file type and permission bits,
/// as `st_mode` holds them) and device number `rdev`, with exactly those permission bits.
pub fn mknod_exact(target: &Path, mode: u32, rdev: u64) -> Result<()> {
    use nix::sys::stat::{fchmodat, mknod, FchmodatFlags, Mode, SFlag};
    let kind = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
    let perms = Mode::from_bits_truncate(mode & 0o7777);
    mknod(target, kind, perms, rdev).map_err(|e| {
        SysError::new(
            format!(
                "mknod({:?}, {kind:?}, {:o}, {rdev})",
                target.display().to_string(),
                perms.bits(),
            ),
            e,
        )
    })?;
    // mknod applies the umask; the node gets the mode exactly.
    fchmodat(None, target, perms, FchmodatFlags::FollowSymlink)
        .map_err(|e| SysError::new(format!("chmod({:?})", target.display().to_string()), e))
}

/// `chdir(new_root)`, `pivot_root(".", ".")`, detach the old root stacked on top, `chdir("/")`.
pub fn pivot_root_to(new_root: &Path) -> std::result::Result<(), (bool, SysError)> {
    nix::unistd::chdir(new_root).map_err(|e| {
        (
            false,
            SysError::new(format!("chdir({:?})", new_root.display().to_string()), e),
        )
    })?;
    nix::unistd::pivot_root(".", ".")
        .map_err(|e| (false, SysError::new("pivot_root(\".\", \".\")", e)))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| (true, SysError::new("umount2(\".\", MNT_DETACH)", e)))?;
    nix::unistd::chdir("/").map_err(|e| (true, SysError::new("chdir(\"/\")", e)))
}
