//! The grammar of nstest's option strings, written once for the two places that read them: the
//! `#[nstest::test(...)]` attribute (in nstest-macros, where a bad string is a compile error at
//! its span) and the run time (in nstest: the `NSTEST_*` variables and `Container`). An option
//! the attribute accepts is therefore one the run time accepts, with the same fix in the message.
//!
//! Use the nstest crate; this one has no API of its own. Each function returns `None` (or
//! `false`) for a string that does not parse, and each constant is the fix an error message
//! gives.

/// The fix for a duration that does not parse.
pub const DURATION_FIX: &str =
    "write a whole number followed by ms, s or m (\"500ms\", \"10s\", \"2m\")";
/// The fix for a memory size that does not parse.
pub const BYTES_FIX: &str = "write a whole number with K, M or G (\"64M\", \"1G\")";
/// The fix for a bind that does not parse.
pub const BIND_FIX: &str = "write \"host/path:/container/path\" (read-only) or \"…:rw\"; the container path is absolute, without '..'";
/// The fix for an environment entry that does not parse.
pub const ENV_FIX: &str = "write \"KEY=value\" (KEY: letters, digits, '_')";
/// The fix for a hostname that is not one DNS label.
pub const HOSTNAME_FIX: &str =
    "use 1 to 63 letters, digits and '-', not starting or ending with '-'";
/// The fix for a working directory that is not absolute.
pub const WORKDIR_FIX: &str = "write an absolute path without '..'";
/// The fix for a network other than the two there are.
pub const NET_FIX: &str = "use \"loopback\" (the default) or \"host\"";
/// The fix for a rootfs string that names nothing.
pub const ROOTFS_FIX: &str = "name builtin:busybox, builtin:host, a .tar (.tar.gz, .tgz, .tar.zst, .tzst, .tar.xz, .txz), a directory, oci:dir[:tag], docker-archive:path or docker://[registry/]repository[:tag][@sha256:digest]";

/// Splits a leading whole number from its unit: `"64M"` is `(64, "M")`.
fn number_and_unit(s: &str) -> Option<(u64, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    Some((num.parse().ok()?, unit))
}

/// `"500ms"`, `"10s"` or `"2m"`, in milliseconds; more than zero.
pub fn duration_ms(s: &str) -> Option<u64> {
    let (n, unit) = number_and_unit(s)?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        _ => None,
    };
    ms.filter(|&ms| ms > 0)
}

/// `"64M"`, `"1G"`, `"512K"` (either case) or plain bytes; more than zero.
pub fn bytes(s: &str) -> Option<u64> {
    let (n, unit) = number_and_unit(s)?;
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift).filter(|&b| b > 0)
}

/// A bind's parts, as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    /// The host path (relative ones are the caller's to resolve).
    pub host: &'a str,
    /// The absolute path in the container.
    pub target: &'a str,
    /// Without `:rw`.
    pub read_only: bool,
}

/// `"host:/container"`, read-only, or with `:ro` or `:rw`. The container path is absolute, has
/// no `:` and no `..`.
pub fn bind(s: &str) -> Option<Bind<'_>> {
    let (rest, read_only) = match s.rsplit_once(':') {
        Some((r, "ro")) => (r, true),
        Some((r, "rw")) => (r, false),
        _ => (s, true),
    };
    let (host, target) = rest.split_once(':')?;
    let ok = !host.is_empty()
        && target.starts_with('/')
        && !target.contains(':')
        && !target.split('/').any(|c| c == "..");
    ok.then_some(Bind {
        host,
        target,
        read_only,
    })
}

/// `"KEY=value"`: the key is letters, digits and `_`, not starting with a digit; no NUL byte.
pub fn env(s: &str) -> Option<(&str, &str)> {
    let (k, v) = s.split_once('=')?;
    let ok = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !v.contains('\0');
    ok.then_some((k, v))
}

/// One DNS label: 1 to 63 of `[A-Za-z0-9-]`, no `-` at either end.
pub fn hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An absolute path without `..`.
pub fn workdir(s: &str) -> bool {
    s.starts_with('/') && !s.split('/').any(|c| c == "..")
}

/// `"loopback"` (false) or `"host"` (true): whether the container shares the host's network.
pub fn host_net(s: &str) -> Option<bool> {
    match s {
        "loopback" => Some(false),
        "host" => Some(true),
        _ => None,
    }
}

/// What a rootfs string names, as far as its spelling tells (whether a path exists, and is a
/// directory or an archive, is for the run time to find out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rootfs<'a> {
    /// `builtin:busybox`.
    Busybox,
    /// `builtin:host`.
    Host,
    /// `oci:dir` or `oci:dir:tag` (a last part with a `/` belongs to the directory).
    Oci {
        /// The layout directory, as written.
        dir: &'a str,
        /// The tag, if given.
        tag: Option<&'a str>,
    },
    /// `docker-archive:path`.
    DockerArchive(&'a str),
    /// `docker://[registry/]repo[:tag][@sha256:digest]`: an image in a registry.
    Registry(ImageRef<'a>),
    /// Anything else: a path to an archive or a directory.
    Path(&'a str),
}

/// An image in a registry, as `docker://` names it (skopeo's transport, Docker's reference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageRef<'a> {
    /// The registry's host (and port): `docker.io` when the reference names none.
    pub registry: &'a str,
    /// The repository, as written (`alpine`; Docker Hub's official images are `library/…`).
    pub repo: &'a str,
    /// The tag: `latest` when neither a tag nor a digest is given.
    pub tag: Option<&'a str>,
    /// `sha256:<64 hex>`.
    pub digest: Option<&'a str>,
}

/// The fix for a `docker://` reference that does not read.
pub const IMAGE_REF_FIX: &str = "write docker://[registry/]repository[:tag][@sha256:<64 hex digits>], e.g. docker://alpine:3.20 or docker://127.0.0.1:5000/test/app:1";

/// Reads an image reference (after `docker://`): `[registry/]repo[:tag][@sha256:hex]`. The
/// first component is the registry if it has a `.` or a `:`, or is `localhost`.
pub fn image_ref(s: &str) -> Option<ImageRef<'_>> {
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let hex = d.strip_prefix("sha256:")?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return None;
        }
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest)
        }
        _ => ("docker.io", name),
    };
    let (repo, tag) = match path.rsplit_once(':') {
        Some((r, t)) => (r, Some(t)),
        None => (path, None),
    };
    let component = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    let tag_ok = |t: &str| {
        !t.is_empty()
            && t.len() <= 128
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && !t.starts_with(['.', '-'])
    };
    let host_ok = !registry.is_empty()
        && registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    (host_ok && repo.split('/').all(component) && tag.map_or(true, tag_ok)).then_some(ImageRef {
        registry,
        repo,
        tag: tag.or(if digest.is_none() {
            Some("latest")
        } else {
            None
        }),
        digest,
    })
}

/// Reads a rootfs string; `None` if it is empty, a `builtin:` other than the two there are, or
/// an `oci:` or `docker-archive:` without a path.
pub fn rootfs(s: &str) -> Option<Rootfs<'_>> {
    if let Some(name) = s.strip_prefix("builtin:") {
        return match name {
            "busybox" => Some(Rootfs::Busybox),
            "host" => Some(Rootfs::Host),
            _ => None,
        };
    }
    if let Some(rest) = s.strip_prefix("oci:") {
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((d, t)) if !t.is_empty() && !t.contains('/') => (d, Some(t)),
            _ => (rest, None),
        };
        return (!dir.is_empty()).then_some(Rootfs::Oci { dir, tag });
    }
    if let Some(path) = s.strip_prefix("docker-archive:") {
        return (!path.is_empty()).then_some(Rootfs::DockerArchive(path));
    }
    if let Some(reference) = s.strip_prefix("docker://") {
        return image_ref(reference).map(Rootfs::Registry);
    }
    (!s.is_empty()).then_some(Rootfs::Path(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_strings() {
        assert_eq!(rootfs("builtin:busybox"), Some(Rootfs::Busybox));
        assert_eq!(rootfs("builtin:host"), Some(Rootfs::Host));
        assert_eq!(
            rootfs("oci:img:3.20"),
            Some(Rootfs::Oci {
                dir: "img",
                tag: Some("3.20")
            })
        );
        assert_eq!(
            rootfs("oci:a:b/c"),
            Some(Rootfs::Oci {
                dir: "a:b/c",
                tag: None
            })
        );
        assert_eq!(
            rootfs("docker-archive:save.tar"),
            Some(Rootfs::DockerArchive("save.tar"))
        );
        assert_eq!(rootfs("alpine.tar.gz"), Some(Rootfs::Path("alpine.tar.gz")));
        let r = |s| match rootfs(s) {
            Some(Rootfs::Registry(r)) => Some((r.registry, r.repo, r.tag, r.digest)),
            _ => None,
        };
        assert_eq!(
            r("docker://alpine:3.20"),
            Some(("docker.io", "alpine", Some("3.20"), None))
        );
        assert_eq!(
            r("docker://alpine"),
            Some(("docker.io", "alpine", Some("latest"), None))
        );
        assert_eq!(
            r("docker://127.0.0.1:5000/test/app:1"),
            Some(("127.0.0.1:5000", "test/app", Some("1"), None))
        );
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let ghcr = format!("docker://ghcr.io/o/r@{d}");
        assert_eq!(r(&ghcr), Some(("ghcr.io", "o/r", None, Some(d))));
        let local = format!("docker://localhost/r:t@{d}");
        assert_eq!(r(&local), Some(("localhost", "r", Some("t"), Some(d))));
        for bad in [
            "docker://",
            "docker://Alpine",
            "docker://a:",
            "docker://a@sha256:12",
            "docker://a b",
            "docker://a/:t",
        ] {
            assert_eq!(rootfs(bad), None, "{bad}");
        }
        for bad in [
            "",
            "builtin:",
            "builtin:busybx",
            "oci:",
            "oci::tag",
            "docker-archive:",
        ] {
            assert_eq!(rootfs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms("500ms"), Some(500));
        assert_eq!(duration_ms("10s"), Some(10_000));
        assert_eq!(duration_ms("2m"), Some(120_000));
        for bad in [
            "",
            "10",
            "s",
            "0s",
            "1.5s",
            "10 s",
            "10S",
            "-1s",
            "10h",
            "99999999999999999m",
            "99999999999999999999s",
        ] {
            assert_eq!(duration_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes("64M"), Some(64 << 20));
        assert_eq!(bytes("64m"), Some(64 << 20));
        assert_eq!(bytes("1G"), Some(1 << 30));
        assert_eq!(bytes("512K"), Some(512 << 10));
        assert_eq!(bytes("1000"), Some(1000));
        for bad in [
            "",
            "M",
            "0",
            "1.5G",
            "64MB",
            "-1M",
            "99999999999G",
            "99999999999999999999",
        ] {
            assert_eq!(bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn binds() {
        let b = |host, target, read_only| {
            Some(Bind {
                host,
                target,
                read_only,
            })
        };
        assert_eq!(bind("data:/data"), b("data", "/data", true));
        assert_eq!(bind("/srv:/srv:ro"), b("/srv", "/srv", true));
        assert_eq!(bind("out:/out:rw"), b("out", "/out", false));
        for bad in [
            "",
            "data",
            ":/data",
            "data:rel",
            "a:/x/../etc",
            "a:/b:c",
            "a:/b:rx",
        ] {
            assert_eq!(bind(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn env_entries() {
        assert_eq!(env("RUST_LOG=debug"), Some(("RUST_LOG", "debug")));
        assert_eq!(env("A="), Some(("A", "")));
        assert_eq!(env("A=b=c"), Some(("A", "b=c")));
        for bad in ["", "A", "=x", "1A=x", "A-B=x", "A=\0"] {
            assert_eq!(env(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hostnames_workdirs_and_nets() {
        assert!(hostname("web-1") && hostname(&"a".repeat(63)));
        for bad in ["", "-a", "a-", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!hostname(bad), "{bad:?}");
        }
        assert!(workdir("/srv/app") && workdir("/"));
        for bad in ["srv", "", "/srv/../etc"] {
            assert!(!workdir(bad), "{bad:?}");
        }
        assert_eq!(host_net("loopback"), Some(false));
        assert_eq!(host_net("host"), Some(true));
        assert_eq!(host_net("none"), None);
    }
}
