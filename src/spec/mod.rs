//! What a container is, as plain data: no syscalls here.
//!
//! Shared by the `#[nstest::test]` attribute (through [`crate::registry::TestDesc`]), by
//! [`crate::Container`] and by the examples. The attribute validates its options at compile time
//! with the same grammar (the `nstest-grammar` crate, `grammar/src/lib.rs`); this module applies
//! it to values that only exist at run time (`NSTEST_TIMEOUT`, `NSTEST_ROOTFS`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use nstest_grammar as grammar;

mod error;
mod rootfs_source;

pub use error::SpecError;
pub use rootfs_source::{ImageRef, RootfsSource};

/// `PATH` inside a container (the test's, and `NSTEST_SHELL`'s shell): what an Alpine or Debian
/// root expects.
pub(crate) const CONTAINER_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Timeout of a test that names none and runs without `NSTEST_TIMEOUT`.
///
/// ```
/// assert_eq!(nstest::spec::DEFAULT_TIMEOUT.as_secs(), 60);
/// ```
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Hostname of a [`crate::Container`] that names none.
///
/// ```
/// assert_eq!(nstest::spec::DEFAULT_HOSTNAME, "nstest");
/// ```
pub const DEFAULT_HOSTNAME: &str = "nstest";

/// A container's network.
///
/// ```
/// assert_eq!(nstest::Net::parse("host"), Ok(nstest::Net::Host));
/// assert_eq!(nstest::Net::default(), nstest::Net::Loopback);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Net {
    /// `net = "loopback"` (the default): a new network namespace with only `lo`, up.
    #[default]
    Loopback,
    /// `net = "host"`: the host's network namespace, shared.
    Host,
}

impl Net {
    /// Parses `"loopback"` or `"host"`.
    ///
    /// ```
    /// assert!(nstest::Net::parse("bridge").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, SpecError> {
        match grammar::host_net(s) {
            Some(true) => Ok(Self::Host),
            Some(false) => Ok(Self::Loopback),
            None => Err(SpecError::BadNet(s.to_string())),
        }
    }
}

/// A host path bound into a container: `"host/path:/container/path[:ro|:rw]"`.
///
/// ```
/// let b = nstest::spec::Bind::parse("data:/data", std::path::Path::new("/pkg")).unwrap();
/// assert!(b.read_only);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    /// The host path (relative paths start at the package's directory for tests, at the current
    /// directory for `Container`).
    pub host: PathBuf,
    /// Where it appears in the container (absolute).
    pub target: PathBuf,
    /// Read-only (the default) or, with `:rw`, writable.
    pub read_only: bool,
}

impl Bind {
    /// Parses `"host:/container[:ro|:rw]"`; a relative host path is taken relative to `base`.
    ///
    /// ```
    /// use nstest::spec::Bind;
    /// let b = Bind::parse("fixtures:/data:rw", std::path::Path::new("/pkg")).unwrap();
    /// assert_eq!((b.host.to_str(), b.target.to_str(), b.read_only), (Some("/pkg/fixtures"), Some("/data"), false));
    /// ```
    pub fn parse(s: &str, base: &Path) -> Result<Self, SpecError> {
        let b = grammar::bind(s).ok_or_else(|| SpecError::BadBind(s.to_string()))?;
        Ok(Self {
            host: base.join(b.host),
            target: PathBuf::from(b.target),
            read_only: b.read_only,
        })
    }
}

/// Parses `"KEY=value"` for the container's environment.
/// ```
/// assert_eq!(nstest::spec::parse_env("RUST_LOG=debug"), Ok(("RUST_LOG".into(), "debug".into())));
/// ```
pub fn parse_env(s: &str) -> Result<(String, String), SpecError> {
    let (k, v) = grammar::env(s).ok_or_else(|| SpecError::BadEnv(s.to_string()))?;
    Ok((k.to_string(), v.to_string()))
}

/// Checks a working directory: absolute, without `..`.
/// ```
/// assert!(nstest::spec::validate_workdir("/srv/app").is_ok());
/// assert!(nstest::spec::validate_workdir("srv").is_err());
/// ```
pub fn validate_workdir(s: &str) -> Result<PathBuf, SpecError> {
    if !grammar::workdir(s) {
        return Err(SpecError::BadWorkdir(s.to_string()));
    }
    Ok(PathBuf::from(s))
}

/// Resource limits of a container (cgroups). `None`: no limit.
///
/// ```
/// let l = nstest::spec::Limits { memory: Some(64 << 20), pids: Some(64), cpus: Some(0.5) };
/// assert!(!l.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// `memory = "64M"`: bytes.
    pub memory: Option<u64>,
    /// `pids = 64`: processes and threads.
    pub pids: Option<u64>,
    /// `cpus = 0.5`: CPU time per wall time.
    pub cpus: Option<f64>,
}

impl Limits {
    /// No limit at all.
    ///
    /// ```
    /// assert!(nstest::spec::Limits::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.pids.is_none() && self.cpus.is_none()
    }

    /// These limits, with `NSTEST_MEMORY` and `NSTEST_PIDS` filling what is not set.
    ///
    /// ```
    /// let limits = nstest::spec::Limits { pids: Some(64), ..Default::default() };
    /// assert_eq!(limits.clone().with_env_defaults().unwrap().pids, Some(64));
    /// ```
    pub fn with_env_defaults(mut self) -> Result<Self, SpecError> {
        if self.memory.is_none() {
            if let Some(s) = crate::settings::memory() {
                self.memory = Some(
                    parse_bytes(&s).map_err(|e| SpecError::Env("NSTEST_MEMORY", Box::new(e)))?,
                );
            }
        }
        if self.pids.is_none() {
            if let Some(s) = crate::settings::pids() {
                let n = s.parse().ok().filter(|&n: &u64| n > 0);
                self.pids = Some(n.ok_or_else(|| {
                    SpecError::Env("NSTEST_PIDS", Box::new(SpecError::BadPids(s)))
                })?);
            }
        }
        Ok(self)
    }
}

/// Parses `"64M"`, `"1G"`, `"512K"` or a plain number of bytes (K, M, G are powers of 1024).
/// ```
/// assert_eq!(nstest::spec::parse_bytes("64M"), Ok(64 << 20));
/// assert!(nstest::spec::parse_bytes("64MB").is_err());
/// ```
pub fn parse_bytes(s: &str) -> Result<u64, SpecError> {
    grammar::bytes(s).ok_or_else(|| SpecError::BadBytes(s.to_string()))
}

/// Formats bytes the way the options spell them: `64M`, `1G`, `512K`, `1000`.
/// ```
/// assert_eq!(nstest::spec::format_bytes(1 << 30), "1G");
/// ```
pub fn format_bytes(b: u64) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if b >= 1 << shift && b % (1 << shift) == 0 {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

/// Parses `"500ms"`, `"10s"` or `"2m"`.
/// ```
/// use std::time::Duration;
/// assert_eq!(nstest::spec::parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(nstest::spec::parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert!(nstest::spec::parse_duration("10").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, SpecError> {
    grammar::duration_ms(s)
        .map(Duration::from_millis)
        .ok_or_else(|| SpecError::BadDuration(s.to_string()))
}

/// Formats a duration the way the options spell it: `500ms`, `10s`, `2m`.
/// ```
/// assert_eq!(nstest::spec::format_duration(std::time::Duration::from_secs(10)), "10s");
/// ```
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Checks a hostname: one DNS label, 1 to 63 of `[A-Za-z0-9-]`, no leading or trailing `-`.
/// ```
/// assert!(nstest::spec::validate_hostname("web-1").is_ok());
/// assert!(nstest::spec::validate_hostname("not_valid").is_err());
/// ```
pub fn validate_hostname(s: &str) -> Result<(), SpecError> {
    if grammar::hostname(s) {
        Ok(())
    } else {
        Err(SpecError::BadHostname(s.to_string()))
    }
}

/// The default hostname of a test: its function name made a valid hostname
/// (`hostname_is_the_containers` → `hostname-is-the-containers`).
/// ```
/// assert_eq!(nstest::spec::hostname_for_test("writes_etc_hosts"), "writes-etc-hosts");
/// ```
pub fn hostname_for_test(fn_name: &str) -> String {
    let mut h: String = fn_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    h.truncate(63);
    let h = h.trim_matches('-');
    if h.is_empty() {
        DEFAULT_HOSTNAME.to_string()
    } else {
        h.to_string()
    }
}

/// `NSTEST_TIMEOUT`, if set.
///
/// ```
/// // Unset: no override of the 60 s default.
/// std::env::remove_var("NSTEST_TIMEOUT");
/// assert_eq!(nstest::spec::env_timeout(), Ok(None));
/// ```
pub fn env_timeout() -> Result<Option<Duration>, SpecError> {
    match crate::settings::timeout() {
        Some(s) => parse_duration(&s)
            .map(Some)
            .map_err(|e| SpecError::Env("NSTEST_TIMEOUT", Box::new(e))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The grammar's cases are nstest-grammar's tests; these check the types and errors on top.
    #[test]
    fn durations_and_sizes_parse_and_format_back() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(
            parse_duration("10"),
            Err(SpecError::BadDuration("10".into()))
        );
        for s in ["500ms", "10s", "2m", "1500ms", "90s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
        assert_eq!(parse_bytes("64MB"), Err(SpecError::BadBytes("64MB".into())));
        for s in ["64M", "1G", "512K", "1000", "1536M"] {
            assert_eq!(format_bytes(parse_bytes(s).unwrap()), s);
        }
    }

    #[test]
    fn binds_env_and_workdir() {
        let base = Path::new("/pkg");
        assert_eq!(
            Bind::parse("data:/data", base),
            Ok(Bind {
                host: "/pkg/data".into(),
                target: "/data".into(),
                read_only: true
            })
        );
        assert_eq!(
            Bind::parse("/abs:/x/y:rw", base),
            Ok(Bind {
                host: "/abs".into(),
                target: "/x/y".into(),
                read_only: false
            })
        );
        assert!(Bind::parse("/abs:/x:ro", base).unwrap().read_only);
        for bad in ["data", "data:rel", ":/x", "a:/x/../y", "a:/x:rx"] {
            assert!(Bind::parse(bad, base).is_err(), "{bad:?}");
        }
        assert_eq!(parse_env("K=v=1"), Ok(("K".into(), "v=1".into())));
        assert_eq!(parse_env("EMPTY="), Ok(("EMPTY".into(), "".into())));
        for bad in ["K", "=v", "1K=v", "K-1=v"] {
            assert!(parse_env(bad).is_err(), "{bad:?}");
        }
        assert!(validate_workdir("/srv/app").is_ok());
        assert!(validate_workdir("srv").is_err() && validate_workdir("/a/../b").is_err());
    }

    #[test]
    fn hostnames() {
        assert_eq!(
            hostname_for_test("hostname_is_the_containers"),
            "hostname-is-the-containers"
        );
        assert_eq!(hostname_for_test("__x__"), "x");
        assert_eq!(hostname_for_test("_"), "nstest");
        assert_eq!(hostname_for_test(&"a".repeat(80)).len(), 63);
        assert!(validate_hostname("box").is_ok());
        assert!(validate_hostname("web-1").is_ok());
        for bad in ["", "-a", "a-", "a_b", "a.b", "é", &"a".repeat(64)] {
            assert!(validate_hostname(bad).is_err(), "{bad:?}");
        }
    }
}
