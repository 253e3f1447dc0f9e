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

/// Receives one message of at most `max` bytes and the fds attached to it, into a buffer of
/// the message's own length (its length read first with `MSG_PEEK | MSG_TRUNC`): a process
/// forked from a larger one shares its memory until it writes a page, and each page written
/// costs it a copy, so a buffer of `max` zeroed bytes would cost it one per 4 KiB of `max`.
/// An empty message is the end, as with [`recv_with_fds`]; one over `max` is `EMSGSIZE`.
pub fn recv_message(sock: BorrowedFd<'_>, max: usize) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    use nix::sys::socket::{recv, MsgFlags};
    let len = loop {
        match recv(
            sock.as_raw_fd(),
            &mut [],
            MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
        ) {
            Err(Errno::EINTR) => continue,
            got => break got.map_err(|e| SysError::new("recv(MSG_PEEK | MSG_TRUNC)", e))?,
        }
    };
    let mut buf = vec![0u8; len.min(max)];
    let (n, fds) = recv_with_fds(sock, &mut buf)?;
    buf.truncate(n);
    Ok((buf, fds))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_message_comes_whole_in_a_buffer_of_its_own_length_with_its_fds() {
        let (a, b) = seqpacket_pair().unwrap();
        let (r, w) = crate::sys::pipe().unwrap();
        send_with_fds(a.as_fd(), b"first", &[w.as_raw_fd()]).unwrap();
        send_with_fds(a.as_fd(), &[7u8; 3000], &[]).unwrap();
        let (first, fds) = recv_message(b.as_fd(), 4096).unwrap();
        assert_eq!(first, b"first");
        assert_eq!(
            first.capacity(),
            5,
            "sized to the message, not to the maximum"
        );
        assert_eq!(fds.len(), 1);
        // The fd that came with it is the pipe's write end.
        nix::unistd::write(&fds[0], b"x").unwrap();
        let mut got = [0u8; 1];
        nix::unistd::read(r.as_raw_fd(), &mut got).unwrap();
        assert_eq!(&got, b"x");
        let (second, fds) = recv_message(b.as_fd(), 4096).unwrap();
        assert_eq!(second, vec![7u8; 3000]);
        assert!(fds.is_empty());
    }

    #[test]
    fn a_message_over_the_maximum_is_emsgsize_and_the_peers_end_is_empty() {
        let (a, b) = seqpacket_pair().unwrap();
        send_with_fds(a.as_fd(), &[1u8; 100], &[]).unwrap();
        let e = recv_message(b.as_fd(), 10).unwrap_err();
        assert_eq!(e.errno, Errno::EMSGSIZE);
        drop(a);
        let (end, fds) = recv_message(b.as_fd(), 10).unwrap();
        assert!(end.is_empty() && fds.is_empty());
    }
}
