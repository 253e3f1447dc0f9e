//! The child's report: a stream of [`Message`] frames on the report fd.

use std::fmt;

use super::wire::{put_opt, put_str, Reader};

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
    /// Giving `eth0` its address on a [`crate::Network`] and bringing it up.
    Interface,
    /// Finding the test to run in the re-executed binary.
    FindTest,
    /// `execve` of the command (Container) or of the test binary itself.
    Exec,
}

const STEPS: [Step; 23] = [
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
    Step::Interface,
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

/// A report stream that does not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The stream does not start with a frame's magic bytes (`NSTR`).
    BadMagic,
    /// A frame of another protocol version (a binary built with another nstest?).
    Version(u8),
    /// A frame kind this version does not know.
    UnknownKind(u8),
    /// A payload over the limit (16 MiB).
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
}
