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

use super::root::{copy_root, host_root, overlay_root, write_etc};
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

pub(super) fn at(step: Step) -> impl Fn(SysError) -> SetupError {
    move |e| SetupError {
        step,
        detail: e.call,
        errno: e.errno,
    }
}

/// The error of `step`, whose failed call `what` spells out: called only on failure, so a
/// step that succeeds formats nothing (formatting is slow in the default dev profile).
pub(super) fn io_at(
    step: Step,
    what: impl FnOnce() -> String,
) -> impl FnOnce(std::io::Error) -> SetupError {
    move |e| SetupError {
        step,
        detail: what(),
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
    if let (true, BaseSpec::Lower(lower)) = (spec.expose_base, &spec.base) {
        // For the containers the test starts: they inherit its rootfs (see `child::inherited`).
        let inside = root.join(super::INHERITED_ROOTFS.trim_start_matches('/'));
        mkdir(&inside, 0o755, Step::Bind)?;
        sys::bind(lower, &inside, true).map_err(at(Step::Bind))?;
    }
    // The test's package at its own paths, read-only; a private writable CARGO_TARGET_TMPDIR.
    for (host, target, if_missing) in &spec.package {
        if *if_missing && in_rootfs(&root, target) {
            continue; // the rootfs's own loader (a glibc image) serves its programs
        }
        if *if_missing && !host.is_dir() {
            // The loader's file: a symlink to its real path, which the entry before shows.
            let parent = target.parent().unwrap_or(Path::new("/"));
            let at = bind_target(&root, parent, true)?.join(target.file_name().unwrap_or_default());
            symlink(host, &at).map_err(io_at(Step::Package, || format!("symlink({at:?})")))?;
            continue;
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
        // A container on a network has the network's `/etc/hosts`, bound in read-only.
        write_etc(&spec.hostname, spec.interface.is_none())?;
    }
    if let Some(w) = &spec.workdir {
        fs::create_dir_all(w).map_err(io_at(Step::Workdir, || {
            format!("mkdir -p {:?}", w.display().to_string())
        }))?;
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
    if let Some(i) = &spec.interface {
        // `eth0`, made in this namespace by the parent while this process was held.
        let index = sys::if_index("eth0").map_err(at(Step::Interface))?;
        let mut rtnl = sys::Rtnl::open().map_err(at(Step::Interface))?;
        // The caller has the first address of every network it made: by this route the host
        // reaches all of them (its name in /etc/hosts may be that of another network).
        let mask = u32::MAX.checked_shl(32 - u32::from(i.prefix)).unwrap_or(0);
        let gateway = std::net::Ipv4Addr::from((u32::from(i.addr) & mask) | 1);
        rtnl.add_addr(index, i.addr, i.prefix)
            .and_then(|()| rtnl.link_up(index, None))
            .and_then(|()| rtnl.add_default_route(index, gateway))
            .map_err(at(Step::Interface))?;
    }
    Ok(copied)
}

pub(super) fn mkdir(p: &Path, mode: u32, step: Step) -> Result<(), SetupError> {
    fs::create_dir(p).map_err(io_at(step, || {
        format!("mkdir({:?})", p.display().to_string())
    }))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(io_at(step, || {
        format!("chmod({:?}, {mode:o})", p.display().to_string())
    }))
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
            Err(_) if last && !dir => fs::write(&at, b"").map_err(io_at(Step::Bind, || {
                format!("create {:?}", at.display().to_string())
            }))?,
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
    // tmpfs, one for all of them (a bind of a read-only mount is read-only): each file system
    // made costs its making and its teardown.
    let mut empty: Option<PathBuf> = None;
    for d in PROC_MASKED {
        let d = proc_dir.join(d);
        if !d.is_dir() {
            continue;
        }
        match &empty {
            Some(first) => sys::bind(first, &d, false).map_err(at(Step::MountProc))?,
            None => {
                let ro = MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC;
                sys::mount("tmpfs", &d, Some("tmpfs"), ro, Some("size=0"))
                    .map_err(at(Step::MountProc))?;
                empty = Some(d);
            }
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
                .map_err(io_at(Step::MountDev, || format!("create({inside:?})")))?;
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
    // A directory of /dev's own tmpfs, sticky and open to all: a mount of its own would cost
    // each container a mount and its teardown for nothing a test can tell.
    mkdir(&dev.join("shm"), 0o1777, Step::MountDev)?;
    for (name, target) in DEV_LINKS {
        let p = dev.join(name);
        symlink(target, &p).map_err(io_at(Step::MountDev, || {
            format!("symlink({target:?}, {p:?})")
        }))?;
    }
    Ok(())
}
