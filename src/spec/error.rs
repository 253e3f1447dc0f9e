//! A container setting that does not parse, with the fix.

use std::fmt;
use std::path::PathBuf;

use nstest_grammar as grammar;

/// A container setting that does not parse.
///
/// ```
/// let e = nstest::spec::parse_duration("ten seconds").unwrap_err();
/// assert!(e.to_string().contains("\"10s\""));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// A duration without a number and one of the units `ms`, `s`, `m`.
    BadDuration(String),
    /// A hostname that the kernel or a resolver would not take.
    BadHostname(String),
    /// A network other than `loopback` or `host`.
    BadNet(String),
    /// A memory size that is not a number with an optional K, M or G.
    BadBytes(String),
    /// A pids limit that is not a positive whole number.
    BadPids(String),
    /// A CPU limit that is not a positive number.
    BadCpus(String),
    /// A bind that is not `host:/container[:ro|:rw]`.
    BadBind(String),
    /// An environment entry that is not `KEY=value`.
    BadEnv(String),
    /// A working directory that is not an absolute path.
    BadWorkdir(String),
    /// `rootfs = ""`.
    EmptyRootfs,
    /// `oci:` or `docker-archive:` without a path.
    InvalidRootfs(String),
    /// `builtin:` followed by something other than `busybox` or `host`.
    UnknownBuiltin(String),
    /// A path that is neither a tar archive (`.tar`, `.tar.gz`/`.tgz`, `.tar.zst`/`.tzst`,
    /// `.tar.xz`/`.txz`) nor a directory.
    UnsupportedRootfs(PathBuf),
    /// `Container::from_fn(f)` with an `f` outside the executable (in a shared library): the
    /// container, this executable started again, could not find it.
    FunctionOutsideBinary,
    /// An environment variable that holds one of the above.
    Env(&'static str, Box<SpecError>),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadDuration(s) => write!(f, "invalid duration {s:?}: {}", grammar::DURATION_FIX),
            Self::BadHostname(s) => write!(f, "invalid hostname {s:?}: {}", grammar::HOSTNAME_FIX),
            Self::BadNet(s) => write!(f, "invalid net {s:?}: {}", grammar::NET_FIX),
            Self::BadBytes(s) => write!(f, "invalid memory size {s:?}: {}", grammar::BYTES_FIX),
            Self::BadPids(s) => write!(f, "invalid pids limit {s:?}: write a positive whole number"),
            Self::BadCpus(s) => write!(f, "invalid cpus limit {s:?}: write a positive number (0.5 is half a CPU)"),
            Self::BadBind(s) => write!(f, "invalid bind {s:?}: {}", grammar::BIND_FIX),
            Self::BadEnv(s) => write!(f, "invalid env {s:?}: {}", grammar::ENV_FIX),
            Self::BadWorkdir(s) => write!(f, "invalid workdir {s:?}: {}", grammar::WORKDIR_FIX),
            Self::EmptyRootfs => write!(f, "empty rootfs: {}", grammar::ROOTFS_FIX),
            Self::FunctionOutsideBinary => f.write_str(
                "Container::from_fn: the function is not in this executable (a shared \
                 library's?); a container runs this executable again and finds only its own \
                 functions: pass a function of the test binary",
            ),
            Self::InvalidRootfs(s) => write!(f, "invalid rootfs {s:?}: {}", grammar::ROOTFS_FIX),
            Self::UnknownBuiltin(s) => {
                write!(f, "unknown rootfs {s:?}: the builtins are builtin:busybox and builtin:host")
            }
            Self::UnsupportedRootfs(p) => write!(
                f,
                "unsupported rootfs {}: expected a .tar (.tar.gz, .tgz, .tar.zst, .tar.xz), a directory, oci:dir[:tag] or docker-archive:path",
                p.display()
            ),
            Self::Env(var, e) => write!(f, "{var}: {e}"),
        }
    }
}

impl std::error::Error for SpecError {}
