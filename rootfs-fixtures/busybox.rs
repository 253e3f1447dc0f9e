//! The builder of nstest's default rootfs: Alpine's minirootfs layout, filled from a static
//! busybox found on the host. Compiled into the crate as `rootfs::busybox` (see README.md beside
//! this file for where the pieces come from).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::RootfsError;

/// Where distributions put busybox; `PATH` is searched after these.
const CANDIDATES: [&str; 4] = [
    "/bin/busybox",
    "/usr/bin/busybox",
    "/sbin/busybox",
    "/usr/sbin/busybox",
];

/// Directories of Alpine's minirootfs, with their modes.
const DIRS: [(&str, u32); 27] = [
    ("bin", 0o755),
    ("sbin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("home", 0o755),
    ("lib", 0o755),
    ("media", 0o755),
    ("mnt", 0o755),
    ("opt", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("run", 0o755),
    ("srv", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("usr/lib", 0o755),
    ("usr/local", 0o755),
    ("usr/local/bin", 0o755),
    ("usr/share", 0o755),
    ("var", 0o755),
    ("var/cache", 0o755),
    ("var/lib", 0o755),
    ("var/log", 0o755),
    ("var/tmp", 0o1777),
];

/// The version of this layout, part of a base's cache key (and its `VERSION_ID`): a base built
/// by an older layout is not taken for one of this.
pub const LAYOUT: &str = "2";

const FILES: [(&str, &str); 7] = [
    ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"),
    ("etc/group", "root:x:0:root\nnogroup:x:65534:\n"),
    ("etc/hostname", "localhost\n"),
    ("etc/hosts", "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost localhost.localdomain\n"),
    ("etc/shells", "/bin/sh\n/bin/ash\n"),
    ("etc/profile", "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\h:\\w\\$ '\n"),
    (
        "etc/os-release",
        "NAME=\"nstest busybox\"\nID=nstest-busybox\nVERSION_ID=2\nPRETTY_NAME=\"nstest busybox rootfs (Alpine minirootfs layout)\"\nHOME_URL=\"https://busybox.net/\"\n",
    ),
];

/// The first static busybox on this host, if any.
///
/// ```no_run
/// if let Some(bb) = nstest::rootfs::busybox::find() {
///     println!("static busybox at {}", bb.display());
/// }
/// ```
pub fn find() -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("busybox"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .chain(path_dirs)
        .find(|p| is_static_elf(p))
}

/// True for an ELF executable without an interpreter (`PT_INTERP`), i.e. statically linked.
///
/// ```
/// assert!(!nstest::rootfs::busybox::is_static_elf(std::path::Path::new("/nonexistent")));
/// ```
pub fn is_static_elf(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    // The file header, then the program headers where it says they are: two reads (every test
    // process looks for the busybox of the default rootfs).
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 64];
    if f.read_exact_at(&mut head, 0).is_err() || head[..4] != *b"\x7fELF" {
        return false;
    }
    if head[4] != 2 || head[5] != 1 {
        return false; // only 64-bit little-endian is checked; others are not taken
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[32..40].try_into().unwrap());
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    if phentsize < 4 || phnum > 1024 {
        return false;
    }
    let mut table = vec![0u8; phentsize * phnum];
    if f.read_exact_at(&mut table, phoff).is_err() {
        return false;
    }
    table
        .chunks_exact(phentsize)
        .all(|ph| u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) != 3)
}

/// Builds the rootfs into `dest` (an empty directory) from the static busybox at `busybox`.
///
/// ```no_run
/// let bb = nstest::rootfs::busybox::find().ok_or(nstest::rootfs::RootfsError::NoBusybox)?;
/// nstest::rootfs::busybox::build(&bb, "/tmp/empty-dir".as_ref())?;
/// # Ok::<(), nstest::rootfs::RootfsError>(())
/// ```
pub fn build(busybox: &Path, dest: &Path) -> Result<(), RootfsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e| RootfsError::Cache {
            path: path.clone(),
            source: Arc::new(e),
        }
    };
    for (dir, mode) in DIRS {
        let p = dest.join(dir);
        fs::create_dir_all(&p).map_err(io(&p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io(&p))?;
    }
    let bin = dest.join("bin/busybox");
    fs::copy(busybox, &bin).map_err(|e| RootfsError::Busybox {
        path: busybox.into(),
        source: Arc::new(e),
    })?;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).map_err(io(&bin))?;

    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| RootfsError::Busybox {
            path: busybox.into(),
            source: Arc::new(e),
        })?;
    let list = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || list.lines().count() < 10 {
        return Err(RootfsError::Busybox {
            path: busybox.into(),
            source: Arc::new(std::io::Error::other(
                "`busybox --list-full` did not list the applets",
            )),
        });
    }
    for applet in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "bin/busybox")
    {
        let link = dest.join(applet);
        if applet.contains("..") || applet.starts_with('/') || link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        symlink("/bin/busybox", &link).map_err(io(&link))?;
    }
    for (file, text) in FILES {
        let p = dest.join(file);
        fs::write(&p, text).map_err(io(&p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_static_elf_executable_counts() {
        // This test binary has an interpreter (the C library's loader).
        let me = std::env::current_exe().unwrap();
        assert!(!is_static_elf(&me));
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("text");
        fs::write(&text, "#!/bin/sh\n".repeat(20)).unwrap();
        assert!(!is_static_elf(&text));
        // An ELF header whose program headers lie past the file's end.
        let mut cut = fs::read(&me).unwrap();
        cut.truncate(64);
        let short = dir.path().join("short");
        fs::write(&short, &cut).unwrap();
        assert!(!is_static_elf(&short));
        if let Some(busybox) = find() {
            assert!(is_static_elf(&busybox), "{busybox:?}");
        }
    }
}
