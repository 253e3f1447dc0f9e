//! The container's root before the switch: an overlay of the shared base (its writable layer
//! on the scratch tmpfs), a private copy where overlayfs cannot serve, or the host's binaries
//! (`builtin:host`); and `/etc/hostname` and `/etc/hosts` to match the hostname.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::copy::copy_tree;
use super::setup::{at, io_at, mkdir, SetupError};
use crate::protocol::{ChildSpec, Step};
use crate::sys;

/// Host directories that make up `builtin:host`, bound read-only (or recreated as symlinks).
const HOST_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// Host files `builtin:host` needs in its fresh `/etc` so the host's binaries work.
const HOST_ETC: [&str; 2] = ["ld.so.cache", "alternatives"];

/// The note that says a container got a private copy instead of an overlay.
const COPY_FALLBACK: &str = "each test gets a private copy of the rootfs instead";

/// `root` as an overlay over `lower`, its writable layer on the scratch tmpfs (or in the kept
/// directory); a private copy of `lower` where overlayfs cannot serve, said once. Returns
/// whether it is the copy, and whether `/etc/hostname` and `/etc/hosts` are written.
pub(super) fn overlay_root(
    spec: &ChildSpec,
    lower: &Path,
    root: &Path,
    note: &mut dyn FnMut(String),
) -> Result<(bool, bool), SetupError> {
    let layer_dir = spec.keep_upper.as_ref().unwrap_or(&spec.scratch);
    let (upper, work) = (layer_dir.join("upper"), layer_dir.join("work"));
    mkdir(&upper, 0o755, Step::MountOverlay)?;
    mkdir(&work, 0o755, Step::MountOverlay)?;
    let etc_written = prefill_etc(lower, &upper, &spec.hostname)?;
    let copy = || copy_root(lower, root).map(|()| (true, false));
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        escape_overlay(lower),
        escape_overlay(&upper),
        escape_overlay(&work)
    );
    if spec.userns {
        // Whiteouts and opaque directories as user.* xattrs (unprivileged overlayfs). tmpfs
        // keeps those from Linux 6.6 only; without them the overlay mounts, but deleting or
        // renaming the rootfs's directories fails with EIO.
        match sys::set_xattr(&work, "user.nstest", b"1") {
            Ok(()) => {}
            Err(e) if e.errno == Errno::EOPNOTSUPP => {
                let fs = if spec.keep_upper.is_some() {
                    "the cache's filesystem has none"
                } else {
                    "tmpfs has them from Linux 6.6"
                };
                note(format!(
                    "overlayfs in a user namespace needs user.* xattrs on its upper layer and {fs} ({e}); {COPY_FALLBACK}"
                ));
                return copy();
            }
            Err(e) => return Err(at(Step::MountOverlay)(e)),
        }
        data.push_str(",userxattr");
    }
    match sys::mount(
        "overlay",
        root,
        Some("overlay"),
        MsFlags::empty(),
        Some(&data),
    ) {
        Ok(()) => Ok((false, etc_written)),
        Err(e)
            if matches!(
                e.errno,
                Errno::EPERM | Errno::EINVAL | Errno::ENODEV | Errno::EOPNOTSUPP
            ) =>
        {
            note(format!("overlayfs refused ({e}); {COPY_FALLBACK}"));
            copy()
        }
        Err(e) => Err(at(Step::MountOverlay)(e)),
    }
}

/// Escapes the characters overlayfs treats specially in its option string.
fn escape_overlay(p: &Path) -> String {
    let mut s = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// The copy fallback: the base copied into the scratch tmpfs, made a mount point.
pub(super) fn copy_root(lower: &Path, root: &Path) -> Result<(), SetupError> {
    copy_tree(lower, root).map_err(|(path, e)| {
        io_at(Step::CopyRootfs, || {
            format!("copy {:?}", path.display().to_string())
        })(e)
    })?;
    sys::bind(root, root, false).map_err(at(Step::CopyRootfs))
}

/// `builtin:host`: the host's binaries read-only, a fresh `/etc`, empty writable dirs.
pub(super) fn host_root(root: &Path) -> Result<(), SetupError> {
    sys::bind(root, root, false).map_err(at(Step::BindHost))?;
    for d in HOST_DIRS {
        let host = Path::new("/").join(d);
        let Ok(meta) = fs::symlink_metadata(&host) else {
            continue;
        };
        let inside = root.join(d);
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&host)
                .map_err(io_at(Step::BindHost, || format!("readlink({host:?})")))?;
            symlink(&target, &inside)
                .map_err(io_at(Step::BindHost, || format!("symlink({inside:?})")))?;
        } else if meta.is_dir() {
            mkdir(&inside, 0o755, Step::BindHost)?;
            sys::bind(&host, &inside, true).map_err(at(Step::BindHost))?;
        }
    }
    for (d, mode) in [
        ("etc", 0o755),
        ("root", 0o700),
        ("var", 0o755),
        ("var/tmp", 0o1777),
        ("run", 0o755),
        ("home", 0o755),
    ] {
        mkdir(&root.join(d), mode, Step::BindHost)?;
    }
    for f in HOST_ETC {
        let host = Path::new("/etc").join(f);
        let Ok(meta) = fs::metadata(&host) else {
            continue;
        };
        let inside = root.join("etc").join(f);
        if meta.is_dir() {
            mkdir(&inside, 0o755, Step::BindHost)?;
        } else {
            fs::write(&inside, b"")
                .map_err(io_at(Step::BindHost, || format!("create({inside:?})")))?;
        }
        sys::bind(&host, &inside, true).map_err(at(Step::BindHost))?;
    }
    for (f, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ] {
        let p = root.join(f);
        fs::write(&p, text).map_err(io_at(Step::BindHost, || format!("write({p:?})")))?;
    }
    Ok(())
}

/// The names and contents of `/etc/hostname` and `/etc/hosts` for `hostname`.
fn etc_files(hostname: &str) -> [(&'static str, String); 2] {
    [
        ("hostname", format!("{hostname}\n")),
        (
            "hosts",
            format!(
                "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost localhost.localdomain ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
            ),
        ),
    ]
}

/// `/etc/hostname` and `/etc/hosts` consistent with the hostname, written into the overlay's
/// writable layer `upper` (still empty, not yet mounted) when the rootfs `lower` has a real
/// `/etc` directory, whose mode the layer's `/etc` takes. Written through the overlay instead,
/// each container would copy `/etc` up and white out the rootfs's two files (500 `e2e-load`
/// tests: 2–4% slower, 10 alternating runs). Returns whether it wrote them (not for a missing
/// or symlinked `/etc`).
fn prefill_etc(lower: &Path, upper: &Path, hostname: &str) -> Result<bool, SetupError> {
    match fs::symlink_metadata(lower.join("etc")) {
        Ok(meta) if meta.is_dir() => {
            let etc = upper.join("etc");
            mkdir(&etc, meta.permissions().mode() & 0o7777, Step::WriteEtc)?;
            for (name, text) in etc_files(hostname) {
                let file = etc.join(name);
                fs::write(&file, text)
                    .map_err(io_at(Step::WriteEtc, || format!("write({file:?})")))?;
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// `/etc/hostname` and `/etc/hosts` consistent with the hostname. Runs after `pivot_root`, so a
/// symlink in the rootfs can only lead somewhere inside the container.
/// With `hosts` false, `/etc/hostname` only.
pub(super) fn write_etc(hostname: &str, hosts: bool) -> Result<(), SetupError> {
    let etc = Path::new("/etc");
    if fs::symlink_metadata(etc).is_err() {
        mkdir(etc, 0o755, Step::WriteEtc)?;
    }
    for (name, text) in etc_files(hostname) {
        if name == "hosts" && !hosts {
            continue;
        }
        let file = etc.join(name);
        let _ = fs::remove_file(&file);
        fs::write(&file, text).map_err(io_at(Step::WriteEtc, || format!("write({file:?})")))?;
    }
    Ok(())
}
