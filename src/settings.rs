//! Every `NSTEST_*` variable a user sets, read here and nowhere else. Plain values: what a
//! duration or a size means is `spec`'s to parse, what a switch changes is its reader's. This
//! module imports nothing of nstest. (The variables nstest sets for its own re-executed
//! processes are the re-exec contract's: `reexec`.)

use std::ffi::OsString;

/// Every variable (the test below checks that the code names no other).
#[cfg(test)]
const NAMES: [&str; 17] = [
    "NSTEST_ROOTFS",
    "NSTEST_TIMEOUT",
    "NSTEST_MEMORY",
    "NSTEST_PIDS",
    "NSTEST_CACHE_DIR",
    "NSTEST_OVERLAY",
    "NSTEST_UPPER",
    "NSTEST_ROOTLESS",
    "NSTEST_SUBIDS",
    "NSTEST_NETNS_POOL",
    "NSTEST_FORK_SERVER",
    "NSTEST_SHELL",
    "NSTEST_KEEP",
    "NSTEST_PACKAGE",
    "NSTEST_UNAVAILABLE",
    "NSTEST_PULL",
    "NSTEST_INSECURE_REGISTRIES",
];

/// `NSTEST_ROOTFS`, unless unset or empty.
pub(crate) fn rootfs() -> Option<String> {
    text("NSTEST_ROOTFS")
}

/// `NSTEST_TIMEOUT`, as written.
pub(crate) fn timeout() -> Option<String> {
    text("NSTEST_TIMEOUT")
}

/// `NSTEST_MEMORY`, as written.
pub(crate) fn memory() -> Option<String> {
    text("NSTEST_MEMORY")
}

/// `NSTEST_PIDS`, as written.
pub(crate) fn pids() -> Option<String> {
    text("NSTEST_PIDS")
}

/// `NSTEST_CACHE_DIR`, unless unset or empty.
pub(crate) fn cache_dir() -> Option<OsString> {
    std::env::var_os("NSTEST_CACHE_DIR").filter(|d| !d.is_empty())
}

/// Whether containers get an overlay (not `NSTEST_OVERLAY=off`).
pub(crate) fn overlay() -> bool {
    switch("NSTEST_OVERLAY") != Some(false)
}

/// `NSTEST_UPPER=disk`: each overlay's writable layer on disk.
pub(crate) fn upper_on_disk() -> bool {
    std::env::var("NSTEST_UPPER").as_deref() == Ok("disk")
}

/// Rootless mode: the effective uid is not 0 of the initial user namespace (a normal user, or
/// root of a user namespace: a rootless container's test that starts containers of its own),
/// or `NSTEST_ROOTLESS=1`. Decided once per process (it is asked for every container).
pub(crate) fn rootless() -> bool {
    static ROOTLESS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOTLESS.get_or_init(|| {
        !nix::unistd::geteuid().is_root()
            || !in_the_initial_user_namespace()
            || switch("NSTEST_ROOTLESS") == Some(true)
    })
}

/// Whether this process's user namespace maps every uid to itself (the initial one does).
fn in_the_initial_user_namespace() -> bool {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let fields: Vec<&str> = map.split_whitespace().collect();
    fields.is_empty() || fields == ["0", "0", "4294967295"]
}

/// Whether rootless mode may use `/etc/subuid` ranges (not `NSTEST_SUBIDS=off`).
pub(crate) fn subids() -> bool {
    switch("NSTEST_SUBIDS") != Some(false)
}

/// Whether network namespaces are made ahead of need (not `NSTEST_NETNS_POOL=off`).
pub(crate) fn netns_pool() -> bool {
    switch("NSTEST_NETNS_POOL") != Some(false)
}

/// Whether containers are cloned by a fork server (not `NSTEST_FORK_SERVER=off`).
pub(crate) fn fork_server() -> bool {
    switch("NSTEST_FORK_SERVER") != Some(false)
}

/// `NSTEST_SHELL=1`: a shell in a failed test's container (with a terminal).
pub(crate) fn shell() -> bool {
    switch("NSTEST_SHELL") == Some(true)
}

/// `NSTEST_KEEP=1`: a failed test's writes are kept.
pub(crate) fn keep() -> bool {
    switch("NSTEST_KEEP") == Some(true)
}

/// `NSTEST_PACKAGE`: whether tests without a `package` option see their package (unset: yes).
pub(crate) fn package() -> Option<bool> {
    switch("NSTEST_PACKAGE")
}

/// `NSTEST_UNAVAILABLE=skip`: tests that cannot run here are ignored, not failed.
pub(crate) fn unavailable_skip() -> bool {
    std::env::var("NSTEST_UNAVAILABLE").as_deref() == Ok("skip")
}

/// `NSTEST_PULL=always`: an image's tag is resolved again at the registry, instead of the digest
/// the cache kept from the first pull.
pub(crate) fn pull_always() -> bool {
    std::env::var("NSTEST_PULL").as_deref() == Ok("always")
}

/// `NSTEST_INSECURE_REGISTRIES`: registries (`host[:port]`, comma-separated) spoken to in plain
/// HTTP, beside loopback ones.
pub(crate) fn insecure_registries() -> Vec<String> {
    std::env::var("NSTEST_INSECURE_REGISTRIES")
        .unwrap_or_default()
        .split(',')
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect()
}

/// Every `NSTEST_*` variable of this run, sorted: what the `rerun:` line repeats.
pub(crate) fn given() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("NSTEST_"))
        .collect();
    v.sort();
    v
}

fn text(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// A switch variable: `Some(true)` for `1`, `true`, `yes` or `on`; `Some(false)` for `0`,
/// `false`, `no` or `off`; `None` when unset or anything else.
fn switch(name: &str) -> Option<bool> {
    switch_value(std::env::var(name).ok()?.as_str())
}

fn switch_value(v: &str) -> Option<bool> {
    match v {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::switch_value;

    #[test]
    fn switches_take_the_usual_words() {
        for on in ["1", "true", "yes", "on"] {
            assert_eq!(switch_value(on), Some(true), "{on}");
        }
        for off in ["0", "false", "no", "off"] {
            assert_eq!(switch_value(off), Some(false), "{off}");
        }
        for neither in ["", "2", "Off", "maybe"] {
            assert_eq!(switch_value(neither), None, "{neither}");
        }
    }

    /// Every `NSTEST_` variable named in the crate's code is listed, and read (`env::var`,
    /// `var_os`) only here.
    #[test]
    fn every_variable_is_read_here_and_only_here() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.clone()];
        let mut named = std::collections::BTreeSet::new();
        while let Some(p) = files.pop() {
            if p.is_dir() {
                files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("\"NSTEST_") {
                    let name: String = line[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                        .collect();
                    let read = line.contains("var(\"NSTEST_") || line.contains("var_os(\"NSTEST_");
                    assert!(
                        !read || p.ends_with("settings.rs"),
                        "{} reads {name}: read it through settings",
                        p.display()
                    );
                    if name != "NSTEST_" {
                        named.insert(name);
                    }
                }
            }
        }
        for n in &named {
            assert!(super::NAMES.contains(&n.as_str()), "{n} is not in NAMES");
        }
    }
}
