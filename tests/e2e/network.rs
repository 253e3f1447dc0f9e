//! Several hosts per test (`tests/network.rs`, a test target of its own): the whole suite
//! rootless too, a failing test's hosts' output shown with its failure, and nothing of a network
//! left on the host, whether the test ends or its harness is killed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::host::{processes_with, serial, wait_until, HostGuard};
use crate::runs::{busybox_copy, scratch, test_binary};

/// The `network` test binary cargo built beside this one.
pub fn network_tests() -> PathBuf {
    test_binary("network")
}

/// The host's network interfaces: a network's bridge and veth ends never show up here.
fn interfaces() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn network_new_outside_a_container_is_refused_and_names_why() {
    let err = nstest::Network::new().unwrap_err();
    assert!(
        matches!(err, nstest::NetworkError::NotInContainer),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("inside an #[nstest::test]"),
        "{err}"
    );
}

/// The whole suite as root and rootless; the host's interfaces are the same after (a test with
/// `net = "host"` is refused a switch: as root it would have made one on the host).
#[test]
fn the_network_suite_passes_as_root_and_rootless_and_adds_no_interface_to_the_host() {
    let lock = serial();
    let _guard = HostGuard::state_only(&lock);
    let before = interfaces();
    for rootless in ["0", "1"] {
        let out = Command::new(network_tests())
            .env("NSTEST_ROOTLESS", rootless)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}{err}");
        assert!(text.contains("11 passed; 0 failed; 2 ignored"), "{text}");
        assert_eq!(interfaces(), before);
    }
}

#[test]
fn a_failing_tests_hosts_are_shown_with_its_failure_after_their_hostname() {
    let lock = serial();
    let _guard = HostGuard::state_only(&lock);
    let before = interfaces();
    let out = Command::new(network_tests())
        .args(["fails_with_hosts_on_purpose", "--exact", "--ignored"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    let failure = &text[text
        .find("---- fails_with_hosts_on_purpose")
        .expect("a failure")..];
    for line in [
        "\nweb | serving\n",
        "\nweb | a warning\n",
        "\nweb | no newline\n",
        "\ngreeter | listening\n",
        "the test failed with two hosts running",
    ] {
        assert!(failure.contains(line), "{line:?} in:\n{failure}");
    }
    assert_eq!(interfaces(), before);
    assert!(processes_with("sleep 1000").is_empty());
}

#[test]
fn a_killed_harness_leaves_no_host_and_no_interface_behind() {
    let lock = serial();
    let _guard = HostGuard::state_only(&lock);
    let before = interfaces();
    let mut harness = Command::new(network_tests())
        .args(["hangs_with_hosts", "--exact", "--ignored", "--nocapture"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(harness.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("hosts up"))),
        "the test never said its hosts were up"
    );
    // Set up, each host then execs its command: both are there a moment later.
    wait_until("both hosts running", Duration::from_secs(5), || {
        processes_with("nstest-e2e-network-host").len() == 2
    });
    harness.kill().unwrap();
    harness.wait().unwrap();
    wait_until("the hosts to be gone", Duration::from_secs(5), || {
        processes_with("nstest-e2e-network-host").is_empty()
    });
    assert_eq!(interfaces(), before);
}

#[test]
fn the_containers_a_test_starts_inherit_its_rootfs() {
    let dir = scratch("inherit");
    let root = dir.join("root");
    busybox_copy(&root);
    std::fs::write(root.join("etc/nstest-marker"), "the test's own rootfs\n").unwrap();
    let lock = serial();
    let _guard = HostGuard::state_only(&lock);
    for (rootfs, seen) in [
        (root.to_str().unwrap(), "the test's own rootfs"),
        ("builtin:host", "inherited: setpriv"),
    ] {
        let out = Command::new(network_tests())
            .args(["hosts_inherit_the_tests_rootfs", "--exact", "--nocapture"])
            .env("NSTEST_ROOTFS", rootfs)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{rootfs}: {text}");
        assert!(text.contains(seen), "{rootfs}: {text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
