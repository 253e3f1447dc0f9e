//! Other kinds of rootfs (a directory, a .tar, a .tar.gz, the copy fallback, the host's own
//! binaries) and rootfs that try to steer nstest: their /etc, a symlinked /proc, a bind target
//! through a symlink.

use std::path::Path;
use std::process::Command;

use crate::runs::{busybox_base, busybox_copy, fixture, run_fixture, scratch, succeeded};

#[test]
fn the_other_roots_pass_the_same_demos() {
    // The cache's busybox base as a directory, as a .tar and as a .tar.gz, the copy fallback, and
    // the host's own binaries.
    let base = busybox_base();
    let archives = scratch("archives");
    let tar = archives.join("root.tar");
    let tgz = archives.join("root.tar.gz");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&base)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&base)
        .arg("-czf")
        .arg(&tgz)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let base = base.to_string_lossy().into_owned();
    let roots: [(&str, &str); 4] = [
        ("NSTEST_ROOTFS", &base),
        ("NSTEST_ROOTFS", tar.to_str().unwrap()),
        ("NSTEST_ROOTFS", tgz.to_str().unwrap()),
        ("NSTEST_OVERLAY", "off"),
    ];
    for (var, value) in roots {
        let run = run_fixture("roots", &["demo_", "--test-threads", "1"], &[(var, value)]);
        assert!(
            run.output.status.success(),
            "{var}={value}:\n{}",
            run.text()
        );
        assert_eq!(run.outcomes.len(), 26, "{var}={value}:\n{}", run.text());
    }
    // builtin:host binds the host's /bin /usr /sbin read-only: the demos that write there fail
    // by design; everything else passes.
    let run = run_fixture("host", &["demo_"], &[("NSTEST_ROOTFS", "builtin:host")]);
    assert_eq!(run.outcome("demo_a_writes_a_marker"), "FAILED");
    assert!(run
        .message("demo_a_writes_a_marker")
        .contains("Read-only file system"));
    let passed = run.outcomes.values().filter(|o| *o == "ok").count();
    assert_eq!(passed, 24, "{}", run.text());
}

#[test]
fn etc_hostname_and_hosts_follow_the_hostname_whatever_the_rootfs_etc_is() {
    // Over an overlay the two files go into its writable layer before it is mounted when the
    // rootfs has a real /etc (the layer's /etc keeps its mode); a symlinked /etc is followed
    // inside the container, as it always was. Neither rootfs is changed.
    let base = busybox_base();
    let dir = scratch("etc-kinds");
    let copy = |name: &str| {
        let root = dir.join(name);
        busybox_copy(&root);
        root
    };
    let plain = copy("plain");
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o750);
    std::fs::set_permissions(plain.join("etc"), mode).unwrap();
    let linked = copy("linked");
    std::fs::create_dir(linked.join("private")).unwrap();
    std::fs::rename(linked.join("etc"), linked.join("private/etc")).unwrap();
    std::os::unix::fs::symlink("private/etc", linked.join("etc")).unwrap();
    let before = std::fs::read_to_string(base.join("etc/hostname")).unwrap();
    let run = |root: &Path, script: &str| {
        succeeded(
            Command::new(fixture().parent().unwrap().join("run"))
                .arg("--rootfs")
                .arg(root)
                .args(["--hostname", "etc-kinds", "sh", "-c", script]),
        )
    };
    let hosts =
        "grep -c '^127.0.1.1.etc-kinds$' /etc/hosts; grep -c '^127.0.0.1.localhost' /etc/hosts";
    assert_eq!(
        run(
            &plain,
            &format!("stat -c %a /etc; cat /etc/hostname; {hosts}; head -1 /etc/passwd")
        ),
        "750\netc-kinds\n1\n1\nroot:x:0:0:root:/root:/bin/sh\n"
    );
    assert_eq!(
        run(
            &linked,
            &format!("readlink /etc; cat /etc/hostname /private/etc/hostname; {hosts}")
        ),
        "private/etc\netc-kinds\netc-kinds\n1\n1\n"
    );
    for root in [&plain, &linked] {
        let hostname = std::fs::read_to_string(root.join("etc/hostname")).unwrap();
        assert_eq!(hostname, before, "{}", root.display());
    }
}

/// A copy of the busybox base in a scratch dir `name` whose `/proc` is a symlink to `/etc`.
fn symlinked_proc_root(name: &str) -> std::path::PathBuf {
    let root = scratch(name).join("root");
    busybox_copy(&root);
    std::fs::remove_dir(root.join("proc")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("proc")).unwrap();
    root
}

#[test]
fn a_rootfs_with_a_symlinked_proc_is_refused() {
    let root = symlinked_proc_root("symlinked-proc");
    let run = run_fixture(
        "symlinked-proc",
        &["demo_pid_one"],
        &[("NSTEST_ROOTFS", root.to_str().unwrap())],
    );
    assert_eq!(run.outcome("demo_pid_one"), "FAILED");
    let msg = run.message("demo_pid_one");
    assert!(
        msg.contains("step MountProc") && msg.contains("/proc is a symlink"),
        "{msg}"
    );
}

/// A container that fails in its set-up reports the step, whoever cloned it and however soon it
/// fails: a fork server's clone sets up before it waits for the harness's release, so it may
/// have failed and ended before the release is written (which then meets a closed pipe). Many
/// at once, and one to a process (the clone made ahead of its request).
#[test]
fn a_set_up_failure_names_its_step_however_soon_it_comes() {
    let root = symlinked_proc_root("symlinked-proc-many");
    let env = [("NSTEST_ROOTFS", root.to_str().unwrap())];
    let runs: [&[&str]; 2] = [
        &["demo_", "--test-threads", "8"],
        &["demo_pid_one", "--exact", "--nocapture"],
    ];
    for args in runs {
        for round in 0..3 {
            let run = run_fixture("symlinked-proc-many", args, &env);
            assert!(!run.outcomes.is_empty(), "{}", run.text());
            for test in run.outcomes.keys() {
                assert_eq!(run.outcome(test), "FAILED", "{test}");
                let msg = run.message(test);
                assert!(
                    msg.contains("step MountProc") && msg.contains("/proc is a symlink"),
                    "{args:?}, round {round}, {test}: {msg}"
                );
            }
        }
    }
}

#[test]
fn a_bind_target_through_a_rootfs_symlink_is_refused() {
    let scratch_dir = scratch("symlinked-bind");
    let root = scratch_dir.join("root");
    let aim = scratch_dir.join("host-side");
    std::fs::create_dir(&aim).unwrap();
    busybox_copy(&root);
    // The rootfs's /host points at a host directory: the bind must not land there.
    std::os::unix::fs::symlink(&aim, root.join("host")).unwrap();
    let run = run_fixture(
        "symlinked-bind",
        &["demo_bind_env_workdir"],
        &[("NSTEST_ROOTFS", root.to_str().unwrap())],
    );
    assert_eq!(run.outcome("demo_bind_env_workdir"), "FAILED");
    let msg = run.message("demo_bind_env_workdir");
    assert!(
        msg.contains("step Bind") && msg.contains("is a symlink in the rootfs"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_dir(&aim).unwrap().count(),
        0,
        "nothing was created on the host side"
    );
}
