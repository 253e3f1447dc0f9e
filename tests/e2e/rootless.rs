//! The end-to-end suite as an unprivileged user: rootless mode, with one id or with
//! subordinate ids, tarball owners, and the writable layer on disk.

use std::fs::File;
use std::path::Path;

use crate::host::{serial, HostGuard};
use crate::outcomes::check_every_outcome;
use crate::runs::{
    busybox_base, fixture, in_dirs, nobody_dir, run_fixture, run_fixture_in, wrapped, AS_NOBODY,
};

/// Runs as uid/gid 65534 with subordinate ids: in a private mount namespace (the host's files
/// stay as they are), `/etc/subuid` and `/etc/subgid` give 65534 the range 100000+65536, so
/// containers map those ids through newuidmap/newgidmap.
const AS_NOBODY_WITH_SUBIDS: &[&str] = &[
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    "ids=\"$TMPDIR/../subids\" && echo 65534:100000:65536 > \"$ids\" && chmod 644 \"$ids\" \
     && mount --bind \"$ids\" /etc/subuid && mount --bind \"$ids\" /etc/subgid \
     && exec setpriv --reuid=65534 --regid=65534 --clear-groups -- \"$0\" \"$@\"",
];

#[test]
fn every_outcome_is_the_same_for_an_unprivileged_user() {
    let run = run_fixture_in(
        "nobody",
        AS_NOBODY,
        "e2e-cache-nobody",
        &["--test-threads", "2"],
        &[],
    );
    check_every_outcome(&run, true);
    assert!(
        run.text().contains("user (rootless; your own id only)"),
        "{}",
        run.text()
    );
}

#[test]
fn with_the_writable_layer_on_disk_every_outcome_is_the_same() {
    // NSTEST_UPPER=disk (automatic for rootless before Linux 6.6): each overlay's upper layer
    // is a directory in the cache; none is left after the run (checked with the cache's tmp/).
    let env = [("NSTEST_UPPER", "disk")];
    let root = run_fixture("disk", &["--test-threads", "2"], &env);
    let nobody = run_fixture_in(
        "nobody-disk",
        AS_NOBODY,
        "e2e-cache-nobody-disk",
        &["--test-threads", "2"],
        &env,
    );
    for (run, rootless) in [(root, false), (nobody, true)] {
        check_every_outcome(&run, rootless);
        assert!(
            run.message("fail_panic")
                .contains("(overlay, writable layer on disk)"),
            "{}",
            run.message("fail_panic")
        );
    }
}

#[test]
fn every_outcome_is_the_same_with_subordinate_ids() {
    assert!(
        Path::new("/usr/bin/newuidmap").exists(),
        "this test needs newuidmap/newgidmap: apt-get install uidmap"
    );
    // The maps are given by newuidmap/newgidmap to each container while it waits, whether the
    // fork server cloned it (the default) or the harness did (NSTEST_FORK_SERVER=off).
    for (name, env) in [
        ("nobody-subids", None),
        (
            "nobody-subids-no-fork-server",
            Some(("NSTEST_FORK_SERVER", "off")),
        ),
    ] {
        let run = run_fixture_in(
            name,
            AS_NOBODY_WITH_SUBIDS,
            "e2e-cache-nobody-subids",
            &["--test-threads", "2"],
            env.as_slice(),
        );
        check_every_outcome(&run, true);
        assert!(
            run.text()
                .contains("user (rootless; subordinate ids 100000+65536 of /etc/subuid)"),
            "{}",
            run.text()
        );
    }
}

#[test]
fn a_tarballs_owners_are_kept_where_the_maps_allow() {
    let base = busybox_base();
    let lock = serial();
    let dir = nobody_dir().join("owners");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for d in [&nobody_dir(), &dir] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    }
    // The busybox root plus entries owned by others than root: a user's home, a setgid tool.
    let tarball = dir.join("owned.tar");
    let mut b = tar::Builder::new(File::create(&tarball).unwrap());
    b.follow_symlinks(false);
    b.append_dir_all(".", &base).unwrap();
    let mut add = |path: &str, kind: tar::EntryType, (uid, gid): (u64, u64), mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mode(mode);
        h.set_size(if kind.is_dir() { 0 } else { 3 });
        h.set_cksum();
        b.append_data(&mut h, path, &b"hi\n"[..if kind.is_dir() { 0 } else { 3 }])
            .unwrap();
    };
    add("home/user", tar::EntryType::Directory, (1000, 1000), 0o750);
    add(
        "home/user/notes",
        tar::EntryType::Regular,
        (1000, 1000),
        0o600,
    );
    add(
        "usr/bin/sgid-tool",
        tar::EntryType::Regular,
        (0, 42),
        0o2755,
    );
    // A root entry of another owner (as `tar -C dir -cf x.tar .` by a user writes): the root
    // stays the caller's, or the unpacked base could not be renamed into the cache.
    add("./", tar::EntryType::Directory, (1000, 1000), 0o755);
    b.into_inner().unwrap();
    for exe in ["run", "cache"] {
        std::fs::copy(fixture().parent().unwrap().join(exe), dir.join(exe)).unwrap();
    }
    std::fs::set_permissions(
        &tarball,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let host = HostGuard::state_only(&lock);
    let stat = "stat -c '%u:%g %a' /home/user /home/user/notes /usr/bin/sgid-tool";
    let run_env = |wrapper: &[&str], cache: &str, args: &[&str], env: &[(&str, &str)]| {
        let cache = dir.join(cache);
        let out = in_dirs(&mut wrapped(wrapper, &dir.join(args[0])), &dir, &cache)
            .args(&args[1..])
            .env("HOME", &dir)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{wrapper:?} {args:?}: {text}{err}");
        (text, err, cache)
    };
    let run = |wrapper: &[&str], cache: &str, args: &[&str]| run_env(wrapper, cache, args, &[]);
    let tar = tarball.to_str().unwrap();
    let as_in_the_tarball = "1000:1000 750\n1000:1000 600\n0:42 2755\n";
    let (root, _, _) = run(&[], "c-root", &["run", "--rootfs", tar, "sh", "-c", stat]);
    assert_eq!(root, as_in_the_tarball, "as root");
    let (subids, _, cache) = run(
        AS_NOBODY_WITH_SUBIDS,
        "c-subids",
        &["run", "--rootfs", tar, "sh", "-c", stat],
    );
    assert_eq!(subids, as_in_the_tarball, "rootless with subordinate ids");
    // The private-copy fallback keeps them too (set-group-id bit included).
    let copy = ("NSTEST_OVERLAY", "off");
    let args = ["run", "--rootfs", tar, "sh", "-c", stat];
    let (root_copy, _, _) = run_env(&[], "c-root", &args, &[copy]);
    assert_eq!(root_copy, as_in_the_tarball, "as root, copied");
    let (subids_copy, _, _) = run_env(AS_NOBODY_WITH_SUBIDS, "c-subids", &args, &[copy]);
    assert_eq!(
        subids_copy, as_in_the_tarball,
        "with subordinate ids, copied"
    );
    // On the host, the files belong to the subordinate ids: 1000 inside is 100000 + 999.
    let home = std::fs::read_dir(cache.join("bases"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("home/user"))
        .find(|p| p.exists())
        .expect("the unpacked base");
    let meta = std::fs::symlink_metadata(&home).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            std::os::unix::fs::MetadataExt::gid(&meta)
        ),
        (100999, 100999)
    );
    // The unprivileged user removes those files again (from a namespace that maps them).
    let (pruned, _, cache) = run(AS_NOBODY_WITH_SUBIDS, "c-subids", &["cache", "prune"]);
    assert!(pruned.contains("removed 1 bases"), "{pruned}");
    assert_eq!(std::fs::read_dir(cache.join("bases")).unwrap().count(), 0);
    // Only the caller's own id: every file is root's inside, and the owners are recorded.
    let (single, err, cache) = run(
        AS_NOBODY,
        "c-single",
        &["run", "--rootfs", tar, "sh", "-c", stat],
    );
    assert_eq!(single, "0:0 750\n0:0 600\n0:0 2755\n", "rootless, one id");
    assert!(
        err.contains("3 files of this rootfs belong to other users"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(cache.join("owners")).unwrap().count(), 1);
    host.finish();
    // The whole unprivileged scratch place, with the `subids` file the wrapper wrote there.
    std::fs::remove_dir_all(nobody_dir()).unwrap();
}

#[test]
fn a_newuidmap_that_refuses_names_the_cause_and_the_fix() {
    // The same subordinate ids, but newuidmap without its setuid bit (a copy, bound over it in a
    // private mount namespace): every test fails with one line that says what to fix.
    let wrapper: Vec<&str> = AS_NOBODY_WITH_SUBIDS
        .iter()
        .map(|a| {
            if a.starts_with("ids=") {
                "cp /usr/bin/newuidmap \"$TMPDIR/../plain\" && mount --bind \"$TMPDIR/../plain\" \
                 /usr/bin/newuidmap && ids=\"$TMPDIR/../subids\" && echo 65534:100000:65536 > \"$ids\" \
                 && chmod 644 \"$ids\" && mount --bind \"$ids\" /etc/subuid \
                 && mount --bind \"$ids\" /etc/subgid \
                 && exec setpriv --reuid=65534 --regid=65534 --clear-groups -- \"$0\" \"$@\""
            } else {
                a
            }
        })
        .collect();
    let wrapper: &'static [&'static str] = Box::leak(wrapper.into_boxed_slice());
    let run = run_fixture_in(
        "nobody-badmap",
        wrapper,
        "e2e-cache-nobody-badmap",
        &["demo_pid_one"],
        &[],
    );
    assert!(!run.output.status.success(), "{}", run.text());
    let msg = run.message("demo_pid_one");
    assert!(
        msg.contains("newuidmap/newgidmap refused this user's subordinate ids")
            && msg.contains("NSTEST_SUBIDS=off")
            && msg.contains("newuidmap"),
        "{msg}"
    );
    assert_eq!(msg.trim().lines().count(), 1, "{msg}");
}

/// A rootless test that starts containers of its own (`tests/pid_one.rs`): root of its user
/// namespace only, so its containers are rootless too (no `mknod`, a nested user namespace).
#[test]
fn a_rootless_tests_own_containers_are_rootless_too() {
    let pid_one = crate::runs::test_binary("pid_one");
    let lock = serial();
    let _guard = HostGuard::state_only(&lock);
    let out = std::process::Command::new(&pid_one)
        .env("NSTEST_ROOTLESS", "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}
