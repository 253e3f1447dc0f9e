//! A request to the fork server: one container, and how to prepare it.

use super::wire::{put_bytes, put_str, Reader};
use super::{ProtocolError, VERSION};

/// The largest [`ForkRequest`] sent to the fork server (larger ones take the exec path).
pub(crate) const MAX_FORK_REQUEST: usize = 64 << 10;

/// What the harness asks its fork server for: one container, cloned with `flags` and prepared as
/// a [`crate::sys::ChildPlan`] says. The fds travel beside it (`SCM_RIGHTS`), in this order: one
/// for each of `fd_dsts`, then the network namespace if `netns`, then the hold pipe's read end if
/// `sync`. The answer is 4 bytes (i32 LE) with the fd of a pidfd: the pid, or `-errno` if the
/// clone failed, or 0 if the request made no sense.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ForkRequest {
    /// `clone(2)` namespace flags.
    pub flags: i32,
    /// Where each sent fd goes in the child.
    pub fd_dsts: Vec<i32>,
    /// A network namespace fd follows the mapped fds.
    pub netns: bool,
    /// A hold pipe's read end follows.
    pub sync: bool,
    /// `ChildPlan::writes`: `(path, content, failure frame)`.
    pub writes: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    /// `ChildPlan::cgroup_ns`: the failure frame.
    pub cgroup_ns: Option<Vec<u8>>,
    /// The encoded [`ChildSpec`].
    pub spec: String,
}

impl ForkRequest {
    /// How many fds travel with it.
    pub fn fd_count(&self) -> usize {
        self.fd_dsts.len() + usize::from(self.netns) + usize::from(self.sync)
    }

    /// The bytes sent.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = vec![VERSION];
        p.extend_from_slice(&self.flags.to_le_bytes());
        p.extend_from_slice(&(self.fd_dsts.len() as u32).to_le_bytes());
        for d in &self.fd_dsts {
            p.extend_from_slice(&d.to_le_bytes());
        }
        p.push(u8::from(self.netns) | u8::from(self.sync) << 1);
        match &self.cgroup_ns {
            None => p.push(0),
            Some(frame) => {
                p.push(1);
                put_bytes(&mut p, frame);
            }
        }
        p.extend_from_slice(&(self.writes.len() as u32).to_le_bytes());
        for (path, content, frame) in &self.writes {
            put_bytes(&mut p, path);
            put_bytes(&mut p, content);
            put_bytes(&mut p, frame);
        }
        put_str(&mut p, &self.spec);
        p
    }

    /// Reads [`ForkRequest::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader(bytes);
        let v = r.u8()?;
        if v != VERSION {
            return Err(ProtocolError::Version(v));
        }
        let flags = r.i32()?;
        let n = r.u32()?;
        if n > 8 {
            return Err(ProtocolError::Malformed);
        }
        let fd_dsts = (0..n).map(|_| r.i32()).collect::<Result<_, _>>()?;
        let bits = r.u8()?;
        let cgroup_ns = match r.u8()? {
            0 => None,
            1 => Some(r.bytes()?.to_vec()),
            _ => return Err(ProtocolError::Malformed),
        };
        let n = r.u32()?;
        let writes = (0..n)
            .map(|_| {
                Ok((
                    r.bytes()?.to_vec(),
                    r.bytes()?.to_vec(),
                    r.bytes()?.to_vec(),
                ))
            })
            .collect::<Result<_, ProtocolError>>()?;
        let spec = r.string()?;
        r.end()?;
        Ok(Self {
            flags,
            fd_dsts,
            netns: bits & 1 != 0,
            sync: bits & 2 != 0,
            writes,
            cgroup_ns,
            spec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_request_round_trips() {
        let req = ForkRequest {
            flags: libc::CLONE_NEWPID | libc::CLONE_NEWNS,
            fd_dsts: vec![0, 1, 2, 3],
            netns: true,
            sync: false,
            writes: vec![(
                b"/proc/self/uid_map".to_vec(),
                b"0 1000 1\n".to_vec(),
                vec![1, 2],
            )],
            cgroup_ns: Some(vec![9; 12]),
            spec: "01ab".into(),
        };
        assert_eq!(req.fd_count(), 5);
        assert_eq!(ForkRequest::decode(&req.encode()), Ok(req.clone()));
        let bytes = req.encode();
        for cut in 0..bytes.len() {
            assert!(ForkRequest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
