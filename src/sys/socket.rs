//! The fork server's channel: a `SOCK_SEQPACKET` pair, and messages with fds attached.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::{Result, SysError};

/// A connected pair of `AF_UNIX` `SOCK_SEQPACKET` sockets (message boundaries kept), both
/// close-on-exec.
pub fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| SysError::new("socketpair(AF_UNIX, SOCK_SEQPACKET)", e))
}

/// Bounds every `sendmsg` and `recvmsg` on `sock` to `limit`: past it they fail with `EAGAIN`.
pub fn set_socket_timeouts(sock: BorrowedFd<'_>, limit: std::time::Duration) -> Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let tv = nix::sys::time::TimeVal::new(limit.as_secs() as _, limit.subsec_micros() as _);
    setsockopt(&sock, sockopt::ReceiveTimeout, &tv)
        .and_then(|()| setsockopt(&sock, sockopt::SendTimeout, &tv))
        .map_err(|e| SysError::new("setsockopt(SO_RCVTIMEO, SO_SNDTIMEO)", e))
}

/// Sends one message with `fds` attached (`SCM_RIGHTS`).
pub fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(data)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs = if fds.is_empty() {
        &rights[..0]
    } else {
        &rights[..]
    };
    let call = || format!("sendmsg({} bytes, {} fds)", data.len(), fds.len());
    let sent = sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| SysError::new(call(), e))?;
    if sent != data.len() {
        return Err(SysError::new(call(), Errno::EMSGSIZE));
    }
    Ok(())
}

/// Receives one message into `buf` and the fds attached to it (close-on-exec), retried when a
/// signal interrupts the wait. `Ok((0, _))` is the end: the peer closed its socket.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 16]);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            got => break got.map_err(|e| SysError::new("recvmsg", e))?,
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(|e| SysError::new("recvmsg", e))? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these fds in this process for us alone.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if msg
        .flags
        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC)
    {
        return Err(SysError::new("recvmsg", Errno::EMSGSIZE));
    }
    Ok((msg.bytes, fds))
}
