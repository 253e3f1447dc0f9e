//! The container's set-up, run as PID 1 of its new namespaces.
//!
//! Order matters: propagation is made private before any mount; the scratch tmpfs, the root
//! (overlay, copy, or host binds), `/proc`, `/sys`, `/tmp` and `/dev` are mounted while the old
//! root is still visible (a user namespace may only mount procfs while a full one is visible);
//! then `pivot_root`, the old root detached, and only then is anything written through the new
//! root, so no symlink in a rootfs can point a write at the host. (Over an overlay whose rootfs
//! has a real `/etc`, `/etc/hostname` and `/etc/hosts` are put into the empty writable layer
//! before it is mounted: a directory nstest made, where no rootfs path is followed.)

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::copy::copy_tree;
use crate::protocol::{BaseSpec, ChildSpec, Step};
use crate::sys::{self, SysError};

/// A step of the set-up that failed, with the call and errno.
#[derive(Debug)]
pub struct SetupError {
    /// Which step.
    pub step: Step,
    /// The failed call and its arguments, or what was wrong.
    pub detail: String,
    /// The errno.
    pub errno: Errno,
}

fn at(step: Step) -> impl Fn(SysError) -> SetupError {
    move |e| SetupError {
        step,
        detail: e.call,
        errno: e.errno,
    }
}

fn io_at(step: Step, what: String) -> impl FnOnce(std::io::Error) -> SetupError {
    move |e| SetupError {
        step,
        detail: what,
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// The device nodes bound from the host into the container's `/dev`.
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];
/// Parts of `/proc` that reach the whole host; read-only unless a user namespace confines them.
const PROC_READ_ONLY: [&str; 2] = ["sys", "sysrq-trigger"];
/// Parts of `/proc` that reach host hardware (IRQ affinity, PCI config space, file system
/// servers); masked for a root test.
const PROC_MASKED: [&str; 3] = ["irq", "bus", "fs"];
/// Host directories that make up `builtin:host`, bound read-only (or recreated as symlinks).
const HOST_DIRS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// Host files `builtin:host` needs in its fresh `/etc` so the host's binaries work.
const HOST_ETC: [&str; 2] = ["ld.so.cache", "alternatives"];

/// Sets up the container described by `spec`. `note` receives things the user should hear once.
/// Returns whether the rootfs is a private copy (not an overlay).
pub fn setup(spec: &ChildSpec, note: &mut dyn FnMut(String)) -> Result<bool, SetupError> {
    sys::make_rprivate().map_err(at(Step::MakePrivate))?;
    let scratch = &spec.scratch;
    sys::mount(
        "tmpfs",
        scratch,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(at(Step::MountScratch))?;
    let root = scratch.join("root");
    mkdir(&root, 0o755, Step::MountScratch)?;

    let (copied, etc_written) = match &spec.base {
        BaseSpec::Lower(lower) if spec.overlay => overlay_root(spec, lower, &root, note)?,
        BaseSpec::Lower(lower) => (copy_root(lower, &root).map(|()| true)?, false),
        BaseSpec::Host => (host_root(&root).map(|()| false)?, false),
    };

    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let proc_dir = mountpoint(&root, "proc", Step::MountProc)?;
    sys::mount("proc", &proc_dir, Some("proc"), flags, None).map_err(at(Step::MountProc))?;
    if !spec.userns {
        proc_read_only(&proc_dir)?;
    }
    let sys_dir = mountpoint(&root, "sys", Step::MountSys)?;
    if spec.host_net {
        // A fresh sysfs needs a network namespace of our own: show the host's, read-only.
        sys::bind(Path::new("/sys"), &sys_dir, true).map_err(at(Step::MountSys))?;
    } else {
        let ro = flags | MsFlags::MS_RDONLY;
        sys::mount("sysfs", &sys_dir, Some("sysfs"), ro, None).map_err(at(Step::MountSys))?;
    }
    let tmp = mountpoint(&root, "tmp", Step::MountTmp)?;
    sys::mount(
        "tmpfs",
        &tmp,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )
    .map_err(at(Step::MountTmp))?;
    dev(&root, spec.userns)?;
    // The test's package at its own paths, read-only; a private writable CARGO_TARGET_TMPDIR.
    for (host, target, if_missing) in &spec.package {
        if *if_missing && in_rootfs(&root, target) {
            continue; // the rootfs's own loader (a glibc image) serves its programs
        }
        let inside = bind_target(&root, target, host.is_dir())?;
        sys::bind_read_only_tree(host, &inside).map_err(at(Step::Package))?;
    }
    for dir in &spec.tmpfs {
        let inside = root.join(dir.strip_prefix("/").unwrap_or(dir));
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        sys::mount("tmpfs", &inside, Some("tmpfs"), flags, Some("mode=0755"))
            .map_err(at(Step::Package))?;
    }
    for (host, target, read_only) in &spec.binds {
        let inside = bind_target(&root, target, host.is_dir())?;
        sys::bind(host, &inside, *read_only).map_err(at(Step::Bind))?;
    }

    sys::pivot_root_to(&root).map_err(|(detached, e)| {
        at(if detached {
            Step::DetachOldRoot
        } else {
            Step::PivotRoot
        })(e)
    })?;

    if !etc_written {
        write_etc(&spec.hostname)?;
    }
    if let Some(w) = &spec.workdir {
        fs::create_dir_all(w).map_err(io_at(
            Step::Workdir,
            format!("mkdir -p {:?}", w.display().to_string()),
        ))?;
        nix::unistd::chdir(w.as_path()).map_err(|e| SetupError {
            step: Step::Workdir,
            detail: format!("chdir({:?})", w.display().to_string()),
            errno: e,
        })?;
    }
    sys::sethostname(&spec.hostname).map_err(at(Step::SetHostname))?;
    if !spec.host_net {
        sys::loopback_up().map_err(at(Step::LoopbackUp))?;
    }
    Ok(copied)
}

/// The note that says a container got a private copy instead of an overlay.
const COPY_FALLBACK: &str = "each test gets a private copy of the rootfs instead";

/// `root` as an overlay over `lower`, its writable layer on the scratch tmpfs (or in the kept
/// directory); a private copy of `lower` where overlayfs cannot serve, said once. Returns
/// whether it is the copy, and whether `/etc/hostname` and `/etc/hosts` are written.
fn overlay_root(
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

fn mkdir(p: &Path, mode: u32, step: Step) -> Result<(), SetupError> {
    fs::create_dir(p).map_err(io_at(step, format!("mkdir({:?})", p.display().to_string())))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(io_at(
        step,
        format!("chmod({:?}, {mode:o})", p.display().to_string()),
    ))
}

/// The mount point for a bind at `target` (absolute, in the container) under `root`: missing
/// directories are made, a directory or an empty file at the end; a symlink anywhere on the way
/// is refused, so a rootfs cannot aim a bind at the host (this runs before `pivot_root`).
fn bind_target(root: &Path, target: &Path, dir: bool) -> Result<PathBuf, SetupError> {
    let parts: Vec<_> = target
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    let mut at = root.to_path_buf();
    let refuse = |p: &Path, why: &str| SetupError {
        step: Step::Bind,
        detail: format!(
            "bind target {:?}: {} {why}",
            target.display().to_string(),
            p.strip_prefix(root).unwrap_or(p).display()
        ),
        errno: Errno::ENOTDIR,
    };
    for (i, c) in parts.iter().enumerate() {
        at.push(c);
        let last = i + 1 == parts.len();
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refuse(&at, "is a symlink in the rootfs"))
            }
            Ok(m) if !last && !m.is_dir() => return Err(refuse(&at, "is not a directory")),
            Ok(m) if last && m.is_dir() != dir => {
                return Err(refuse(
                    &at,
                    if dir {
                        "is not a directory"
                    } else {
                        "is a directory"
                    },
                ))
            }
            Ok(_) => {}
            Err(_) if last && !dir => fs::write(&at, b"").map_err(io_at(
                Step::Bind,
                format!("create {:?}", at.display().to_string()),
            ))?,
            Err(_) => mkdir(&at, 0o755, Step::Bind)?,
        }
    }
    Ok(at)
}

/// Whether the rootfs at `root` has anything at `path` (absolute, inside), a symlink on the way
/// counting as something (it is not followed: this runs before `pivot_root`).
fn in_rootfs(root: &Path, path: &Path) -> bool {
    let mut at = root.to_path_buf();
    for c in path.components() {
        if let std::path::Component::Normal(c) = c {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }
    true
}

/// Host-wide knobs under a fresh `/proc` (`/proc/sys`, `/proc/sysrq-trigger` read-only;
/// `/proc/irq`, `/proc/bus`, `/proc/fs` masked) for a root test (a user namespace confines them
/// already), as Docker does: the hostname is still the test's to change, with sethostname(2).
/// Each read-only path costs two mount calls per test and each mask one, so the list is kept to
/// what reaches the host.
fn proc_read_only(proc_dir: &Path) -> Result<(), SetupError> {
    for p in PROC_READ_ONLY {
        let p = proc_dir.join(p);
        if p.exists() {
            sys::bind(&p, &p, true).map_err(at(Step::MountProc))?;
        }
    }
    // Host-wide directories nobody in a test needs to see: hidden under an empty read-only
    // tmpfs (one mount each).
    for d in PROC_MASKED {
        let d = proc_dir.join(d);
        if d.is_dir() {
            let ro =
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            sys::mount("tmpfs", &d, Some("tmpfs"), ro, Some("size=0"))
                .map_err(at(Step::MountProc))?;
        }
    }
    Ok(())
}

/// `root/name` as a real directory to mount on: created if missing, refused if it is a symlink
/// (a rootfs must not steer a mount elsewhere) or not a directory.
fn mountpoint(root: &Path, name: &str, step: Step) -> Result<PathBuf, SetupError> {
    let p = root.join(name);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => Ok(p),
        Ok(_) => Err(SetupError {
            step,
            detail: format!("the rootfs's /{name} is a symlink or a file, not a directory"),
            errno: Errno::ENOTDIR,
        }),
        Err(_) => {
            mkdir(&p, 0o755, step)?;
            Ok(p)
        }
    }
}

/// The copy fallback: the base copied into the scratch tmpfs, made a mount point.
fn copy_root(lower: &Path, root: &Path) -> Result<(), SetupError> {
    copy_tree(lower, root).map_err(|(path, e)| {
        io_at(
            Step::CopyRootfs,
            format!("copy {:?}", path.display().to_string()),
        )(e)
    })?;
    sys::bind(root, root, false).map_err(at(Step::CopyRootfs))
}

/// `builtin:host`: the host's binaries read-only, a fresh `/etc`, empty writable dirs.
fn host_root(root: &Path) -> Result<(), SetupError> {
    sys::bind(root, root, false).map_err(at(Step::BindHost))?;
    for d in HOST_DIRS {
        let host = Path::new("/").join(d);
        let Ok(meta) = fs::symlink_metadata(&host) else {
            continue;
        };
        let inside = root.join(d);
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&host)
                .map_err(io_at(Step::BindHost, format!("readlink({host:?})")))?;
            symlink(&target, &inside)
                .map_err(io_at(Step::BindHost, format!("symlink({inside:?})")))?;
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
                .map_err(io_at(Step::BindHost, format!("create({inside:?})")))?;
        }
        sys::bind(&host, &inside, true).map_err(at(Step::BindHost))?;
    }
    for (f, text) in [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ] {
        let p = root.join(f);
        fs::write(&p, text).map_err(io_at(Step::BindHost, format!("write({p:?})")))?;
    }
    Ok(())
}

/// A minimal `/dev`: a tmpfs with the host's harmless device nodes bound in, a private devpts,
/// `/dev/shm` and the usual symlinks.
fn dev(root: &Path, userns: bool) -> Result<(), SetupError> {
    let dev = mountpoint(root, "dev", Step::MountDev)?;
    sys::mount(
        "tmpfs",
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755"),
    )
    .map_err(at(Step::MountDev))?;
    for node in DEV_NODES {
        let (host, inside) = (Path::new("/dev").join(node), dev.join(node));
        if userns {
            // A user namespace may not create device nodes: bind the host's.
            fs::write(&inside, b"")
                .map_err(io_at(Step::MountDev, format!("create({inside:?})")))?;
            sys::bind(&host, &inside, false).map_err(at(Step::MountDev))?;
        } else {
            // Privileged: the same node, made here (no mount, so no mount lock per node).
            sys::mknod_like(&host, &inside).map_err(at(Step::MountDev))?;
        }
    }
    let pts = dev.join("pts");
    mkdir(&pts, 0o755, Step::MountDev)?;
    sys::mount(
        "devpts",
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(at(Step::MountDev))?;
    let shm = dev.join("shm");
    mkdir(&shm, 0o1777, Step::MountDev)?;
    sys::mount(
        "tmpfs",
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
    )
    .map_err(at(Step::MountDev))?;
    for (name, target) in DEV_LINKS {
        let p = dev.join(name);
        symlink(target, &p)
            .map_err(io_at(Step::MountDev, format!("symlink({target:?}, {p:?})")))?;
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
                    .map_err(io_at(Step::WriteEtc, format!("write({file:?})")))?;
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// `/etc/hostname` and `/etc/hosts` consistent with the hostname. Runs after `pivot_root`, so a
/// symlink in the rootfs can only lead somewhere inside the container.
fn write_etc(hostname: &str) -> Result<(), SetupError> {
    let etc = Path::new("/etc");
    if fs::symlink_metadata(etc).is_err() {
        mkdir(etc, 0o755, Step::WriteEtc)?;
    }
    for (name, text) in etc_files(hostname) {
        let file = etc.join(name);
        let _ = fs::remove_file(&file);
        fs::write(&file, text).map_err(io_at(Step::WriteEtc, format!("write({file:?})")))?;
    }
    Ok(())
}
