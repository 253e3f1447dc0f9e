//! What a child sets up and runs: a [`ChildSpec`], hex-encoded for an environment variable or
//! a fork request.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use super::wire::{put_bytes, put_str, Reader};
use super::{ProtocolError, VERSION};

/// The root a child assembles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseSpec {
    /// An unpacked root directory: the read-only lower layer of the overlay (or the copy source).
    Lower(PathBuf),
    /// The host's binaries bound read-only (`builtin:host`).
    Host,
}

/// What the child runs once the container is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunSpec {
    /// The registered test of this name, in-process, as PID 1.
    Test(String),
    /// `execve` of this command line (PATH looked up inside the container).
    Command(Vec<OsString>),
    /// Nothing: set the container up, report, exit. The probe.
    Probe,
    /// A plain `fn()` of this binary ([`crate::Container::from_fn`]), called on PID 1's main
    /// thread: its address as an offset from an anchor function of nstest, which holds in any
    /// process of the same executable whatever its load address.
    Function(i64),
}

/// A container's interface on a [`crate::Network`]: `eth0`, made by the parent while the child
/// is held, is given this address and brought up by the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// The container's address.
    pub addr: std::net::Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
}

/// Everything the child needs to set up the container and run one thing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildSpec {
    /// An empty host directory on which the child mounts its private scratch tmpfs.
    pub scratch: PathBuf,
    /// The root to assemble.
    pub base: BaseSpec,
    /// `false`: copy the base instead of mounting an overlay.
    pub overlay: bool,
    /// The container's hostname.
    pub hostname: String,
    /// Cloned with `CLONE_NEWUSER` (rootless mode): mounts take the user namespace's rules.
    pub userns: bool,
    /// Shares the host's network namespace (`net = "host"`) instead of a new one with `lo`.
    pub host_net: bool,
    /// The test's package (see `parent::package`): `(host, container, only where the rootfs
    /// has nothing)` bound read-only with everything under them, before `binds`; an entry
    /// only where the rootfs has nothing that is a file (the loader) is made a symlink to its
    /// host path, which a directory entry before it shows.
    pub package: Vec<(PathBuf, PathBuf, bool)>,
    /// Where a fresh writable tmpfs is mounted over the package (`CARGO_TARGET_TMPDIR`).
    pub tmpfs: Vec<PathBuf>,
    /// Host paths bound into the container: `(host, container, read_only)`.
    pub binds: Vec<(PathBuf, PathBuf, bool)>,
    /// Variables set in the (otherwise clean) environment.
    pub env: Vec<(String, String)>,
    /// The working directory (created if missing); `/` when `None`.
    pub workdir: Option<PathBuf>,
    /// `NSTEST_SHELL=1`: after a failing outcome, PID 1 waits (instead of exiting) so the
    /// parent can open a shell in the container; the parent kills it afterwards.
    pub hold_on_failure: bool,
    /// `NSTEST_KEEP=1`: the overlay's upper and work directories go here (on disk) instead of
    /// the scratch tmpfs, so a failed test's writes can be looked at afterwards.
    pub keep_upper: Option<PathBuf>,
    /// An interface on a network (`/etc/hosts` is then the network's, bound in by the parent).
    pub interface: Option<InterfaceSpec>,
    /// A test's: its base is shown read-only at `/dev/.nstest-rootfs` (a directory base), and
    /// the containers the test starts inherit its rootfs.
    pub expose_base: bool,
    /// A clone of the fork server that nothing else holds back: it sets up, then waits on
    /// `reexec::HOLD_FD` until the harness has its pid (the server answered) before it runs
    /// anything; closed without a byte (the harness went first), it ends.
    pub held_before_run: bool,
    /// What to run.
    pub run: RunSpec,
}

impl ChildSpec {
    /// Hex text for the environment variable.
    pub fn encode(&self) -> String {
        let mut p = vec![VERSION];
        put_bytes(&mut p, self.scratch.as_os_str().as_bytes());
        match &self.base {
            BaseSpec::Lower(path) => {
                p.push(0);
                put_bytes(&mut p, path.as_os_str().as_bytes());
            }
            BaseSpec::Host => p.push(1),
        }
        p.push(
            self.overlay as u8
                | (self.userns as u8) << 1
                | (self.host_net as u8) << 2
                | (self.hold_on_failure as u8) << 3
                | (self.expose_base as u8) << 4
                | (self.held_before_run as u8) << 5,
        );
        put_str(&mut p, &self.hostname);
        p.extend_from_slice(&(self.package.len() as u32).to_le_bytes());
        for (host, target, if_missing) in &self.package {
            put_bytes(&mut p, host.as_os_str().as_bytes());
            put_bytes(&mut p, target.as_os_str().as_bytes());
            p.push(*if_missing as u8);
        }
        p.extend_from_slice(&(self.tmpfs.len() as u32).to_le_bytes());
        for t in &self.tmpfs {
            put_bytes(&mut p, t.as_os_str().as_bytes());
        }
        p.extend_from_slice(&(self.binds.len() as u32).to_le_bytes());
        for (host, target, ro) in &self.binds {
            put_bytes(&mut p, host.as_os_str().as_bytes());
            put_bytes(&mut p, target.as_os_str().as_bytes());
            p.push(*ro as u8);
        }
        p.extend_from_slice(&(self.env.len() as u32).to_le_bytes());
        for (k, v) in &self.env {
            put_str(&mut p, k);
            put_str(&mut p, v);
        }
        for opt in [&self.workdir, &self.keep_upper] {
            match opt {
                None => p.push(0),
                Some(w) => {
                    p.push(1);
                    put_bytes(&mut p, w.as_os_str().as_bytes());
                }
            }
        }
        match &self.interface {
            None => p.push(0),
            Some(i) => {
                p.push(1);
                p.extend_from_slice(&i.addr.octets());
                p.push(i.prefix);
            }
        }
        match &self.run {
            RunSpec::Test(name) => {
                p.push(0);
                put_str(&mut p, name);
            }
            RunSpec::Command(argv) => {
                p.push(1);
                p.extend_from_slice(&(argv.len() as u32).to_le_bytes());
                for a in argv {
                    put_bytes(&mut p, a.as_bytes());
                }
            }
            RunSpec::Probe => p.push(2),
            RunSpec::Function(offset) => {
                p.push(3);
                p.extend_from_slice(&offset.to_le_bytes());
            }
        }
        hex(&p)
    }

    /// Parses what [`ChildSpec::encode`] wrote.
    pub fn decode(hex: &str) -> Result<Self, ProtocolError> {
        let bytes = unhex(hex.as_bytes()).ok_or(ProtocolError::Malformed)?;
        let mut r = Reader(&bytes);
        let v = r.u8()?;
        if v != VERSION {
            return Err(ProtocolError::Version(v));
        }
        let path = |r: &mut Reader| {
            Ok::<_, ProtocolError>(PathBuf::from(OsString::from_vec(r.bytes()?.to_vec())))
        };
        let scratch = path(&mut r)?;
        let base = match r.u8()? {
            0 => BaseSpec::Lower(path(&mut r)?),
            1 => BaseSpec::Host,
            _ => return Err(ProtocolError::Malformed),
        };
        let flags = r.u8()?;
        let (overlay, userns, host_net) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
        let hold_on_failure = flags & 8 != 0;
        let expose_base = flags & 16 != 0;
        let held_before_run = flags & 32 != 0;
        let hostname = r.string()?;
        let n = r.u32()?;
        let package = (0..n)
            .map(|_| Ok((path(&mut r)?, path(&mut r)?, r.u8()? != 0)))
            .collect::<Result<_, ProtocolError>>()?;
        let n = r.u32()?;
        let tmpfs = (0..n)
            .map(|_| path(&mut r))
            .collect::<Result<_, ProtocolError>>()?;
        let n = r.u32()?;
        let binds = (0..n)
            .map(|_| Ok((path(&mut r)?, path(&mut r)?, r.u8()? != 0)))
            .collect::<Result<_, ProtocolError>>()?;
        let n = r.u32()?;
        let env = (0..n)
            .map(|_| Ok((r.string()?, r.string()?)))
            .collect::<Result<_, ProtocolError>>()?;
        let opt_path = |r: &mut Reader| match r.u8()? {
            0 => Ok(None),
            1 => path(r).map(Some),
            _ => Err(ProtocolError::Malformed),
        };
        let workdir = opt_path(&mut r)?;
        let keep_upper = opt_path(&mut r)?;
        let interface = match r.u8()? {
            0 => None,
            1 => {
                let o = r.take(4)?;
                Some(InterfaceSpec {
                    addr: std::net::Ipv4Addr::new(o[0], o[1], o[2], o[3]),
                    prefix: r.u8()?,
                })
            }
            _ => return Err(ProtocolError::Malformed),
        };
        let run = match r.u8()? {
            0 => RunSpec::Test(r.string()?),
            1 => {
                let n = r.u32()?;
                let argv = (0..n)
                    .map(|_| Ok(OsString::from_vec(r.bytes()?.to_vec())))
                    .collect::<Result<_, ProtocolError>>()?;
                RunSpec::Command(argv)
            }
            2 => RunSpec::Probe,
            3 => RunSpec::Function(i64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"))),
            _ => return Err(ProtocolError::Malformed),
        };
        r.end()?;
        Ok(Self {
            scratch,
            base,
            overlay,
            hostname,
            userns,
            host_net,
            package,
            tmpfs,
            binds,
            env,
            workdir,
            hold_on_failure,
            keep_upper,
            interface,
            expose_base,
            held_before_run,
            run,
        })
    }
}

/// Lower-case hex of `bytes`. (A loop over a table, not `format!` per byte: every container's
/// spec goes through here and back, in the user's unoptimised test build too.) Also the cache's
/// keys and image digests.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    String::from_utf8(out).expect("hex digits")
}

/// The bytes of hex text (either case); `None` if it is not that.
fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if text.len() % 2 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 2);
    for pair in text.chunks_exact(2) {
        out.push(nibble(pair[0])? << 4 | nibble(pair[1])?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        let all: Vec<u8> = (0..=255).collect();
        let text = hex(&all);
        assert_eq!(&text[..8], "00010203");
        assert_eq!(&text[text.len() - 4..], "feff");
        assert_eq!(unhex(text.as_bytes()).unwrap(), all);
        assert_eq!(unhex(b"0aFf").unwrap(), [10, 255]);
        for bad in [&b"0"[..], b"0g", b"zz", b" 1"] {
            assert_eq!(unhex(bad), None, "{bad:?}");
        }
        assert!(matches!(
            ChildSpec::decode("0"),
            Err(ProtocolError::Malformed)
        ));
    }

    #[test]
    fn child_spec_round_trips() {
        let probe = ChildSpec {
            scratch: "/s".into(),
            base: BaseSpec::Host,
            overlay: true,
            hostname: "p".into(),
            userns: true,
            host_net: true,
            package: vec![],
            tmpfs: vec![],
            binds: vec![],
            env: vec![],
            workdir: None,
            hold_on_failure: false,
            keep_upper: None,
            interface: None,
            expose_base: false,
            held_before_run: false,
            run: RunSpec::Probe,
        };
        for spec in [
            ChildSpec {
                scratch: "/c/mnt".into(),
                base: BaseSpec::Lower("/c/bases/ab,c:d".into()),
                overlay: true,
                hostname: "box".into(),
                userns: false,
                host_net: true,
                package: vec![
                    ("/ws".into(), "/ws".into(), false),
                    ("/ws/p".into(), "/l/p".into(), true),
                ],
                tmpfs: vec!["/ws/target/tmp".into()],
                binds: vec![
                    ("/h".into(), "/c".into(), true),
                    ("/a:b".into(), "/d".into(), false),
                ],
                env: vec![("K".into(), "v=1".into())],
                workdir: Some("/srv".into()),
                hold_on_failure: true,
                keep_upper: Some("/c/kept/1/t".into()),
                interface: Some(InterfaceSpec {
                    addr: [10, 88, 0, 7].into(),
                    prefix: 24,
                }),
                expose_base: true,
                held_before_run: true,
                run: RunSpec::Test("m::t".into()),
            },
            ChildSpec {
                scratch: "/x".into(),
                overlay: false,
                hostname: "h".into(),
                host_net: false,
                run: RunSpec::Command(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    OsString::from_vec(vec![0xff, b'a']),
                ]),
                ..probe.clone()
            },
            ChildSpec {
                run: RunSpec::Function(-0x1234_5678_9abc),
                ..probe.clone()
            },
            probe,
        ] {
            assert_eq!(ChildSpec::decode(&spec.encode()), Ok(spec));
        }
        assert!(ChildSpec::decode("zz").is_err());
        assert!(ChildSpec::decode("01").is_err());
    }
}
