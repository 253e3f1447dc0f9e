//! Network namespaces and their loopback interface.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;

use super::{open_fd, Result, SysError};

/// Brings the loopback interface up (`SIOCSIFFLAGS` on `lo` with `IFF_UP`) unless it is up.
pub fn loopback_up() -> Result<()> {
    // SAFETY: socket(2) with constant arguments; the fd is owned right after.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(SysError::new("socket(AF_INET, SOCK_DGRAM)", Errno::last()));
    }
    // SAFETY: `s` is a new fd owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, b) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the flags member of a valid, named ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(SysError::new("ioctl(SIOCGIFFLAGS, \"lo\")", Errno::last()));
    }
    // SAFETY: the flags member of the union is the one SIOCGIFFLAGS just wrote.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        // Already up (a namespace from the pool): setting it would only wait for the kernel's
        // RTNL lock, which namespaces being made and torn down hold for long stretches.
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the same valid ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(SysError::new(
            "ioctl(SIOCSIFFLAGS, \"lo\", IFF_UP)",
            Errno::last(),
        ));
    }
    Ok(())
}

/// A new network namespace with `lo` up, made while the caller stays in its own (it enters the
/// new one and comes back): an fd that keeps it, for a container to enter. `None` where the
/// caller may not (rootless).
pub fn spare_netns() -> Option<OwnedFd> {
    let home = open_fd("/proc/thread-self/ns/net", false).ok()?;
    let spare = new_netns_with_lo();
    if nix::sched::setns(&home, CloneFlags::CLONE_NEWNET).is_err() {
        // Stranded in the new namespace: the clones would share it. Nothing may go on.
        super::exit_now(1)
    }
    spare.ok()
}

/// Moves the calling thread into a new network namespace (its `lo` still down).
pub fn unshare_net() -> Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| SysError::new("unshare(CLONE_NEWNET)", e))
}

/// Moves the calling thread into a new cgroup namespace, its cgroup the root.
pub fn unshare_cgroup() -> Result<()> {
    nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
        .map_err(|e| SysError::new("unshare(CLONE_NEWCGROUP)", e))
}

/// A new network namespace with `lo` up, made by (and entered by) the calling thread; returns an
/// fd that keeps it. The thread stays in it: call from a thread of its own.
pub fn new_netns_with_lo() -> Result<OwnedFd> {
    unshare_net()?;
    loopback_up()?;
    open_fd("/proc/thread-self/ns/net", false)
}
