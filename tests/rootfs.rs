//! Bad rootfs input: each hostile or broken archive is refused with one error naming the archive
//! and the entry, and nothing is written outside nstest's cache (and nothing left inside it).
//! No containers here: these run as any user.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Once;

use nstest::rootfs::{self, RootfsError};
use nstest::spec::RootfsSource;

fn cache_dir() -> PathBuf {
    // Per process: `cargo nextest run` runs each test in a process of its own.
    common::process_dir("rootfs-test-cache")
}

/// The cache's tmp/ is shared: tests that look at it must not see each other's builds.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = std::fs::remove_dir_all(cache_dir());
        std::env::set_var("NSTEST_CACHE_DIR", cache_dir());
    });
}

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("rootfs-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One raw entry: names are written as given, bypassing the tar crate's own checks, as a
/// hostile archive would.
struct Entry<'a> {
    name: &'a str,
    kind: tar::EntryType,
    link: &'a str,
    data: &'a [u8],
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Entry<'a> {
    Entry {
        name,
        kind: tar::EntryType::Regular,
        link: "",
        data,
    }
}

fn link<'a>(name: &'a str, kind: tar::EntryType, target: &'a str) -> Entry<'a> {
    Entry {
        name,
        kind,
        link: target,
        data: b"",
    }
}

fn archive(path: &Path, entries: &[Entry]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for e in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_entry_type(e.kind);
        h.set_mode(if e.kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(e.data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.finish().unwrap();
}

/// Nothing half-built remains in the cache.
fn assert_cache_clean() {
    let left: Vec<_> = std::fs::read_dir(cache_dir().join("tmp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn prepare_tar(path: &Path) -> Result<rootfs::Prepared, RootfsError> {
    setup();
    rootfs::prepare(&RootfsSource::Tar(path.to_path_buf()))
}

#[test]
fn dot_dot_entries_are_refused() {
    let _serial = serial();
    let d = dir("dotdot");
    let tar = d.join("evil.tar");
    archive(
        &tar,
        &[file("ok.txt", b"x"), file("../escaped.txt", b"evil")],
    );
    let err = prepare_tar(&tar).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RootfsError::Escape { .. }), "{err:?}");
    assert!(
        msg.contains("evil.tar") && msg.contains("../escaped.txt"),
        "{msg}"
    );
    assert!(!d.join("escaped.txt").exists());
    assert!(!d.parent().unwrap().join("escaped.txt").exists());
    assert_cache_clean();
}

#[test]
fn absolute_entries_are_refused() {
    let _serial = serial();
    let d = dir("absolute");
    let target = d.join("abs-escaped.txt");
    let tar = d.join("evil.tar");
    archive(&tar, &[file(target.to_str().unwrap(), b"evil")]);
    let err = prepare_tar(&tar).unwrap_err();
    assert!(err.to_string().contains("absolute path"), "{err}");
    assert!(!target.exists());
    assert_cache_clean();
}

#[test]
fn symlinks_that_climb_out_are_refused() {
    let _serial = serial();
    let d = dir("symlink");
    let tar = d.join("evil.tar");
    archive(
        &tar,
        &[link("etc/x", tar::EntryType::Symlink, "../../../outside")],
    );
    let err = prepare_tar(&tar).unwrap_err();
    assert!(err.to_string().contains("points outside the root"), "{err}");
    assert_cache_clean();
}

#[test]
fn writing_through_a_symlink_to_the_host_is_refused() {
    let _serial = serial();
    let d = dir("through");
    let outside = d.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let tar = d.join("evil.tar");
    // An absolute symlink is normal in a rootfs (resolved inside the container), but a later
    // entry must not be written through it on the host.
    archive(
        &tar,
        &[
            link("hole", tar::EntryType::Symlink, outside.to_str().unwrap()),
            file("hole/pwned", b"evil"),
        ],
    );
    let err = prepare_tar(&tar).unwrap_err();
    assert!(err.to_string().contains("hole/pwned"), "{err}");
    assert!(!outside.join("pwned").exists());
    assert_cache_clean();
}

#[test]
fn hard_links_out_of_the_archive_are_refused() {
    let _serial = serial();
    let d = dir("hardlink");
    let tar = d.join("evil.tar");
    archive(
        &tar,
        &[link(
            "passwd",
            tar::EntryType::Link,
            "../../../../etc/passwd",
        )],
    );
    let err = prepare_tar(&tar).unwrap_err();
    assert!(err.to_string().contains("hard link"), "{err}");
    assert_cache_clean();
}

#[test]
fn corrupt_and_truncated_archives_are_named() {
    let _serial = serial();
    setup();
    let d = dir("corrupt");
    let garbage = d.join("garbage.tar.gz");
    std::fs::write(&garbage, b"this is not gzip at all").unwrap();
    let err = rootfs::prepare(&RootfsSource::Tar(garbage.clone())).unwrap_err();
    assert!(matches!(err, RootfsError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains("garbage.tar.gz") && err.to_string().contains("corrupt"),
        "{err}"
    );

    let good = d.join("good.tar");
    let big = vec![7u8; 200_000];
    archive(&good, &[file("a", &big), file("b", &big)]);
    let tgz = d.join("truncated.tar.gz");
    let status = std::process::Command::new("gzip")
        .arg("-k")
        .arg(&good)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(d.join("good.tar.gz")).unwrap();
    std::fs::write(&tgz, &bytes[..bytes.len() / 2]).unwrap();
    let err = rootfs::prepare(&RootfsSource::Tar(tgz)).unwrap_err();
    assert!(matches!(err, RootfsError::Corrupt { .. }), "{err:?}");
    assert_cache_clean();
}

#[test]
fn a_missing_rootfs_names_the_path_and_the_fix() {
    let _serial = serial();
    setup();
    let err = rootfs::prepare(&RootfsSource::Tar("/nonexistent/alpine.tar.gz".into())).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/alpine.tar.gz does not exist"),
        "{msg}"
    );
    assert!(msg.contains("NSTEST_ROOTFS"), "{msg}");

    // One that is there but cannot be reached keeps its cause (here a symlink loop).
    let d = dir("unreachable");
    let looped = d.join("loop.tar");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let err = rootfs::prepare(&RootfsSource::Tar(looped.clone())).unwrap_err();
    match &err {
        RootfsError::Read { path, source } => {
            assert_eq!(path, &looped);
            assert_eq!(source.raw_os_error(), Some(libc::ELOOP), "{err}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_good_archive_is_unpacked_once_by_content() {
    let _serial = serial();
    let d = dir("good");
    let a = d.join("a.tar");
    archive(
        &a,
        &[
            file("etc/os-release", b"ID=test\n"),
            link("bin/sh", tar::EntryType::Symlink, "/bin/busybox"),
        ],
    );
    let first = prepare_tar(&a).unwrap();
    let rootfs::Base::Dir(base) = &first.base else {
        panic!("{first:?}")
    };
    assert_eq!(
        std::fs::read(base.join("etc/os-release")).unwrap(),
        b"ID=test\n"
    );
    assert_eq!(
        std::fs::read_link(base.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert!(base.starts_with(cache_dir()));
    // The same content under another name is the same cache entry: nothing is unpacked again.
    let b = d.join("b.tar");
    std::fs::copy(&a, &b).unwrap();
    let second = prepare_tar(&b).unwrap();
    assert_eq!(second.base, first.base);
}

#[test]
fn what_a_killed_run_left_is_removed_by_the_next_one() {
    let _serial = serial();
    let d = dir("stale");
    let cache = d.join("cache");
    // A pid that is certainly dead: a child that has exited and been waited for.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = cache.join("tmp").join(format!("tar-0123.{dead}"));
    let alive = cache
        .join("tmp")
        .join(format!("tar-4567.{}", std::process::id()));
    for p in [&stale, &alive] {
        std::fs::create_dir_all(p.join("etc")).unwrap();
        std::fs::write(p.join("etc/half-written"), "x").unwrap();
    }
    let untagged = cache.join("tmp").join("tar-89ab");
    std::fs::create_dir_all(&untagged).unwrap();
    let opened = rootfs::cache::Cache::open(cache.clone()).unwrap();
    assert!(!stale.exists(), "the dead run's half-built base is removed");
    assert!(alive.exists(), "a live builder's is left alone");
    // An entry without its maker's tag is only removed under the build lock, by the next build.
    assert!(untagged.exists());
    opened.get_or_build("k-untagged", |_| Ok(())).unwrap();
    assert!(
        !untagged.exists(),
        "an untagged entry is removed by the next build"
    );
    assert!(alive.exists(), "a live builder's is still left alone");
}

#[test]
fn the_cache_lists_and_prunes_but_not_under_a_running_test() {
    let _serial = serial();
    let d = dir("good-for-prune");
    let a = d.join("a.tar");
    archive(&a, &[file("etc/os-release", b"ID=prune\n")]);
    prepare_tar(&a).unwrap(); // this process now uses the cache
    let cache = rootfs::cache::Cache::open(cache_dir()).unwrap();
    let listed = cache.list().unwrap();
    assert!(
        listed
            .iter()
            .any(|e| e.key.starts_with("tar-") && e.bytes >= 8),
        "{listed:?}"
    );
    let err = cache.prune().unwrap_err();
    assert!(
        err.to_string().contains("in use by a running test"),
        "{err}"
    );
    assert_eq!(cache.list().unwrap(), listed, "nothing removed");

    // A cache nobody uses is pruned.
    let other = d.join("other-cache");
    let c = rootfs::cache::Cache::open(other.clone()).unwrap();
    let (base, built) = c
        .get_or_build("k-1", |tmp| {
            std::fs::write(tmp.join("f"), "x").map_err(|_| unreachable!())
        })
        .unwrap();
    assert!(built && base.join("f").exists());
    let removed = c.prune().unwrap();
    assert_eq!(removed.len(), 1);
    assert!(c.list().unwrap().is_empty() && !base.exists());
}

/// Run as uid 65534 by the test below: device nodes cannot be made, so one outside /dev is
/// refused and one in /dev is skipped.
#[test]
#[ignore = "run as an unprivileged user by device_nodes_without_privileges"]
fn unprivileged_device_nodes() {
    assert!(!nix::unistd::geteuid().is_root(), "must run unprivileged");
    let d = std::env::temp_dir().join(format!("nstest-devnodes-{}", std::process::id()));
    let dest = d.join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let node = |name: &'static str| Entry {
        name,
        kind: tar::EntryType::Char,
        link: "",
        data: b"",
    };
    let in_dev = d.join("in-dev.tar");
    archive(&in_dev, &[file("etc/ok", b"x"), node("dev/null")]);
    rootfs::unpack::unpack(&in_dev, &dest, &mut Default::default()).unwrap();
    assert!(
        dest.join("etc/ok").exists() && !dest.join("dev/null").exists(),
        "skipped in /dev"
    );
    let elsewhere = d.join("elsewhere.tar");
    archive(&elsewhere, &[node("usr/bin/sneaky")]);
    let err = rootfs::unpack::unpack(&elsewhere, &dest, &mut Default::default()).unwrap_err();
    assert!(
        err.to_string().contains("usr/bin/sneaky") && err.to_string().contains("device node"),
        "{err}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn device_nodes_without_privileges() {
    if !nix::unistd::geteuid().is_root() {
        return; // the inner test runs directly then
    }
    // A copy of this test binary that uid 65534 can reach wherever the checkout is.
    let dir = std::env::temp_dir().join(format!("nstest-devnodes-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("rootfs-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--exact", "unprivileged_device_nodes", "--ignored"])
        .current_dir("/")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
