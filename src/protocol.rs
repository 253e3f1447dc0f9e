//! The messages that cross the container boundary, as bytes.
//!
//! - **Parent → child**: a [`ChildSpec`] (what to set up and what to run), hex-encoded: sent to
//!   the fork server inside a `ForkRequest` (with the fds to place), or, without the server, in
//!   the environment variable `reexec::CONTAINER_ENV` of the re-executed binary.
//! - **Child → parent**: a stream of [`Message`] frames on a dedicated pipe (`reexec::REPORT_FD` in the
//!   child), never on stdout/stderr, so nothing a test prints can forge a result.
//!
//! A frame is `MAGIC (4) | VERSION (1) | kind (1) | payload length (u32 LE) | payload`. Strings
//! are `u32 LE length | UTF-8 bytes`. The decoder is incremental and refuses anything it does
//! not understand rather than guessing.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// The frame's magic bytes.
pub const MAGIC: [u8; 4] = *b"NSTR";
/// The protocol version; a child of another version is refused by the parent.
pub const VERSION: u8 = 1;
/// Largest payload the decoder accepts.
pub const MAX_PAYLOAD: usize = 16 << 20;

const HEADER: usize = 10;
const KIND_SETUP_DONE: u8 = 1;
const KIND_NOTE: u8 = 2;
const KIND_SETUP_FAILED: u8 = 3;
const KIND_OUTCOME: u8 = 4;
const KIND_FATAL_SIGNAL: u8 = 5;
const KIND_ROOTFS_COPIED: u8 = 6;

/// The step of the container's set-up that failed. Kept small and stable: it travels as a byte.
///
/// ```no_run
/// match nstest::Container::new("true").status() {
///     Err(nstest::Error::Setup { step: nstest::Step::MountOverlay, errno, .. }) => eprintln!("overlay: {errno}"),
///     other => println!("{other:?}"),
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Reading what to set up from the environment (`__NSTEST_CHILD`).
    ReadSpec,
    /// Writing the user namespace's `setgroups`, `uid_map` and `gid_map` (rootless mode).
    UserNamespace,
    /// Entering the test's cgroup namespace (resource limits).
    CgroupNamespace,
    /// Bind-mounting a host path into the container (`bind = [...]`).
    Bind,
    /// Showing the test's package read-only at its own paths (`package = false` turns it off).
    Package,
    /// Changing to the working directory (`workdir = ...`).
    Workdir,
    /// Making mount propagation of `/` private, recursively.
    MakePrivate,
    /// Mounting the per-test scratch tmpfs.
    MountScratch,
    /// Mounting the overlay (base read-only, upper on the scratch tmpfs).
    MountOverlay,
    /// Copying the base into the scratch tmpfs (fallback when overlayfs is refused).
    CopyRootfs,
    /// Assembling the root from the host's binaries (`builtin:host`).
    BindHost,
    /// Writing `/etc/hostname` and `/etc/hosts`.
    WriteEtc,
    /// Mounting `/proc`.
    MountProc,
    /// Mounting `/sys` read-only.
    MountSys,
    /// Mounting `/tmp`.
    MountTmp,
    /// Building `/dev`.
    MountDev,
    /// `pivot_root` into the new root.
    PivotRoot,
    /// Detaching the old root.
    DetachOldRoot,
    /// Setting the hostname.
    SetHostname,
    /// Bringing up `lo`.
    LoopbackUp,
    /// Finding the test to run in the re-executed binary.
    FindTest,
    /// `execve` of the command (Container) or of the test binary itself.
    Exec,
}

const STEPS: [Step; 22] = [
    Step::ReadSpec,
    Step::MakePrivate,
    Step::MountScratch,
    Step::MountOverlay,
    Step::CopyRootfs,
    Step::BindHost,
    Step::WriteEtc,
    Step::MountProc,
    Step::MountSys,
    Step::MountTmp,
    Step::MountDev,
    Step::PivotRoot,
    Step::DetachOldRoot,
    Step::SetHostname,
    Step::LoopbackUp,
    Step::FindTest,
    Step::Exec,
    Step::UserNamespace,
    Step::CgroupNamespace,
    Step::Bind,
    Step::Workdir,
    Step::Package,
];

impl Step {
    fn to_u8(self) -> u8 {
        STEPS
            .iter()
            .position(|s| *s == self)
            .expect("every step is listed") as u8
    }
    fn from_u8(b: u8) -> Option<Self> {
        STEPS.get(b as usize).copied()
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What the test itself came to, as judged inside the container.
#[allow(missing_docs)] // each field is named by what it holds
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Returned `()`/`Ok(())`, or panicked as `#[should_panic]` wanted.
    Passed,
    /// Panicked without `#[should_panic]`.
    Panicked {
        message: String,
        location: Option<String>,
    },
    /// Returned `Err(e)`; `e` formatted with `{:?}`.
    ReturnedErr { debug: String },
    /// `#[should_panic]`, but it returned.
    DidNotPanic { expected: Option<String> },
    /// `#[should_panic(expected = ...)]`, and the message did not contain it.
    WrongPanic { message: String, expected: String },
}

/// A frame from the child.
#[allow(missing_docs)] // each field is named by what it holds
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// The container is set up; what follows is the test (or the command).
    SetupDone,
    /// Something the user should hear once per run, e.g. the overlay fallback.
    Note(String),
    /// The container could not be set up.
    SetupFailed {
        step: Step,
        detail: String,
        errno: i32,
    },
    /// The test's outcome.
    Outcome(Outcome),
    /// PID 1 caught a fatal signal it would otherwise ignore (SIGABRT from `abort()`).
    FatalSignal(i32),
    /// The rootfs is a private copy (overlayfs could not serve): nothing is kept on disk.
    RootfsCopied,
}

impl Message {
    /// Encodes the message; [`Decoder`] takes it back, byte by byte if need be.
    /// The whole frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        let kind = match self {
            Self::SetupDone => KIND_SETUP_DONE,
            Self::Note(s) => {
                put_str(&mut p, s);
                KIND_NOTE
            }
            Self::SetupFailed {
                step,
                detail,
                errno,
            } => {
                p.push(step.to_u8());
                put_str(&mut p, detail);
                p.extend_from_slice(&errno.to_le_bytes());
                KIND_SETUP_FAILED
            }
            Self::Outcome(o) => {
                match o {
                    Outcome::Passed => p.push(0),
                    Outcome::Panicked { message, location } => {
                        p.push(1);
                        put_str(&mut p, message);
                        put_opt(&mut p, location.as_deref());
                    }
                    Outcome::ReturnedErr { debug } => {
                        p.push(2);
                        put_str(&mut p, debug);
                    }
                    Outcome::DidNotPanic { expected } => {
                        p.push(3);
                        put_opt(&mut p, expected.as_deref());
                    }
                    Outcome::WrongPanic { message, expected } => {
                        p.push(4);
                        put_str(&mut p, message);
                        put_str(&mut p, expected);
                    }
                }
                KIND_OUTCOME
            }
            Self::FatalSignal(sig) => {
                p.extend_from_slice(&sig.to_le_bytes());
                KIND_FATAL_SIGNAL
            }
            Self::RootfsCopied => KIND_ROOTFS_COPIED,
        };
        frame(kind, &p)
    }
}

/// The frame of [`Message::FatalSignal`], built without allocating (for a signal handler).
pub fn fatal_signal_frame(sig: i32) -> [u8; HEADER + 4] {
    let mut f = [0u8; HEADER + 4];
    f[..4].copy_from_slice(&MAGIC);
    f[4] = VERSION;
    f[5] = KIND_FATAL_SIGNAL;
    f[6..10].copy_from_slice(&4u32.to_le_bytes());
    f[10..].copy_from_slice(&sig.to_le_bytes());
    f
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + payload.len());
    f.extend_from_slice(&MAGIC);
    f.push(VERSION);
    f.push(kind);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

fn put_bytes(p: &mut Vec<u8>, b: &[u8]) {
    p.extend_from_slice(&(b.len() as u32).to_le_bytes());
    p.extend_from_slice(b);
}

fn put_str(p: &mut Vec<u8>, s: &str) {
    put_bytes(p, s.as_bytes());
}

fn put_opt(p: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => p.push(0),
        Some(s) => {
            p.push(1);
            put_str(p, s);
        }
    }
}

/// A report stream that does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The stream does not start with [`MAGIC`].
    BadMagic,
    /// A frame of another protocol version (a binary built with another nstest?).
    Version(u8),
    /// A frame kind this version does not know.
    UnknownKind(u8),
    /// A payload over [`MAX_PAYLOAD`].
    TooLarge(usize),
    /// A payload whose fields do not add up.
    Malformed,
    /// The stream ended inside a frame.
    Truncated,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str("report stream does not start with a frame"),
            Self::Version(v) => write!(
                f,
                "report frame of protocol version {v}, expected {VERSION}"
            ),
            Self::UnknownKind(k) => write!(f, "report frame of unknown kind {k}"),
            Self::TooLarge(n) => write!(f, "report frame of {n} bytes is over the limit"),
            Self::Malformed => f.write_str("malformed report frame"),
            Self::Truncated => f.write_str("report stream ended inside a frame"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Incremental decoder: feed bytes as they arrive, take whole messages out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Appends bytes read from the pipe.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        if self.buf.len() < HEADER {
            if !MAGIC.starts_with(&self.buf[..self.buf.len().min(4)]) {
                return Err(ProtocolError::BadMagic);
            }
            return Ok(None);
        }
        if self.buf[..4] != MAGIC {
            return Err(ProtocolError::BadMagic);
        }
        if self.buf[4] != VERSION {
            return Err(ProtocolError::Version(self.buf[4]));
        }
        let kind = self.buf[5];
        let len = u32::from_le_bytes(self.buf[6..10].try_into().unwrap()) as usize;
        if len > MAX_PAYLOAD {
            return Err(ProtocolError::TooLarge(len));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let payload: Vec<u8> = self.buf.drain(..HEADER + len).skip(HEADER).collect();
        decode_payload(kind, &payload).map(Some)
    }

    /// Call at end of stream: an error if bytes of an unfinished frame remain.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Truncated)
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.0.len() < n {
            return Err(ProtocolError::Malformed);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn i32(&mut self) -> Result<i32, ProtocolError> {
        Ok(self.u32()? as i32)
    }
    fn bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, ProtocolError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| ProtocolError::Malformed)
    }
    fn opt(&mut self) -> Result<Option<String>, ProtocolError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            _ => Err(ProtocolError::Malformed),
        }
    }
    fn end(&self) -> Result<(), ProtocolError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Malformed)
        }
    }
}

fn decode_payload(kind: u8, payload: &[u8]) -> Result<Message, ProtocolError> {
    let mut r = Reader(payload);
    let m = match kind {
        KIND_SETUP_DONE => Message::SetupDone,
        KIND_NOTE => Message::Note(r.string()?),
        KIND_SETUP_FAILED => Message::SetupFailed {
            step: Step::from_u8(r.u8()?).ok_or(ProtocolError::Malformed)?,
            detail: r.string()?,
            errno: r.i32()?,
        },
        KIND_OUTCOME => Message::Outcome(match r.u8()? {
            0 => Outcome::Passed,
            1 => Outcome::Panicked {
                message: r.string()?,
                location: r.opt()?,
            },
            2 => Outcome::ReturnedErr { debug: r.string()? },
            3 => Outcome::DidNotPanic { expected: r.opt()? },
            4 => Outcome::WrongPanic {
                message: r.string()?,
                expected: r.string()?,
            },
            _ => return Err(ProtocolError::Malformed),
        }),
        KIND_FATAL_SIGNAL => Message::FatalSignal(r.i32()?),
        KIND_ROOTFS_COPIED => Message::RootfsCopied,
        k => return Err(ProtocolError::UnknownKind(k)),
    };
    r.end()?;
    Ok(m)
}

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
    /// has nothing)` bound read-only with everything under them, before `binds`.
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
                | (self.hold_on_failure as u8) << 3,
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
        }
        p.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses what [`ChildSpec::encode`] wrote.
    pub fn decode(hex: &str) -> Result<Self, ProtocolError> {
        let hex = hex.as_bytes();
        if hex.len() % 2 != 0 {
            return Err(ProtocolError::Malformed);
        }
        let nibble = |c: u8| (c as char).to_digit(16).ok_or(ProtocolError::Malformed);
        let bytes = hex
            .chunks(2)
            .map(|c| Ok((nibble(c[0])? << 4 | nibble(c[1])?) as u8))
            .collect::<Result<Vec<u8>, ProtocolError>>()?;
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
            run,
        })
    }
}

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

    fn all_messages() -> Vec<Message> {
        vec![
            Message::SetupDone,
            Message::RootfsCopied,
            Message::Note("overlayfs refused".into()),
            Message::SetupFailed {
                step: Step::PivotRoot,
                detail: "pivot_root(\".\", \".\")".into(),
                errno: 1,
            },
            Message::Outcome(Outcome::Passed),
            Message::Outcome(Outcome::Panicked {
                message: "boom".into(),
                location: Some("a.rs:1:2".into()),
            }),
            Message::Outcome(Outcome::Panicked {
                message: "".into(),
                location: None,
            }),
            Message::Outcome(Outcome::ReturnedErr {
                debug: "Custom { kind: Other }".into(),
            }),
            Message::Outcome(Outcome::DidNotPanic {
                expected: Some("x".into()),
            }),
            Message::Outcome(Outcome::DidNotPanic { expected: None }),
            Message::Outcome(Outcome::WrongPanic {
                message: "a".into(),
                expected: "b".into(),
            }),
            Message::FatalSignal(6),
        ]
    }

    #[test]
    fn every_message_round_trips_even_byte_by_byte() {
        let stream: Vec<u8> = all_messages().iter().flat_map(Message::encode).collect();
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        d.finish().unwrap();
        assert_eq!(got, all_messages());
    }

    #[test]
    fn the_signal_handler_frame_is_a_normal_frame() {
        let mut d = Decoder::default();
        d.push(&fatal_signal_frame(6));
        assert_eq!(d.next_message().unwrap(), Some(Message::FatalSignal(6)));
    }

    #[test]
    fn garbage_is_refused_not_guessed() {
        let mut d = Decoder::default();
        d.push(b"test result: ok. 1 passed");
        assert_eq!(d.next_message(), Err(ProtocolError::BadMagic));

        let mut f = Message::SetupDone.encode();
        f[4] = 99;
        let mut d = Decoder::default();
        d.push(&f);
        assert_eq!(d.next_message(), Err(ProtocolError::Version(99)));

        let mut f = Message::Note("x".into()).encode();
        f[5] = 200;
        let mut d = Decoder::default();
        d.push(&f);
        assert_eq!(d.next_message(), Err(ProtocolError::UnknownKind(200)));

        let f = Message::Note("hello".into()).encode();
        let mut d = Decoder::default();
        d.push(&f[..f.len() - 1]);
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(d.finish(), Err(ProtocolError::Truncated));

        let mut f = Message::Note("hello".into()).encode();
        f[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut d = Decoder::default();
        d.push(&f);
        assert!(matches!(d.next_message(), Err(ProtocolError::TooLarge(_))));

        // A payload longer than its fields.
        let mut f = frame(KIND_SETUP_DONE, b"x");
        let mut d = Decoder::default();
        d.push(&f);
        assert_eq!(d.next_message(), Err(ProtocolError::Malformed));
        f.clear();
    }

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

    #[test]
    fn child_spec_round_trips() {
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
                run: RunSpec::Test("m::t".into()),
            },
            ChildSpec {
                scratch: "/x".into(),
                base: BaseSpec::Host,
                overlay: false,
                hostname: "h".into(),
                userns: true,
                host_net: false,
                package: vec![],
                tmpfs: vec![],
                binds: vec![],
                env: vec![],
                workdir: None,
                hold_on_failure: false,
                keep_upper: None,
                run: RunSpec::Command(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    OsString::from_vec(vec![0xff, b'a']),
                ]),
            },
        ] {
            assert_eq!(ChildSpec::decode(&spec.encode()), Ok(spec));
        }
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
            run: RunSpec::Probe,
        };
        assert_eq!(ChildSpec::decode(&probe.encode()), Ok(probe));
        assert!(ChildSpec::decode("zz").is_err());
        assert!(ChildSpec::decode("01").is_err());
    }
}
