//! Each test edits the real `/etc/hosts` — of its own container.

use std::net::IpAddr;
use std::path::Path;

use hosts_editor::{lookup, set_host};

const HOSTS: &str = "/etc/hosts";

#[nstest::test(hostname = "web")]
fn adds_a_host_beside_the_containers_own_entries() {
    set_host(Path::new(HOSTS), "10.0.0.7".parse().unwrap(), "db.internal").unwrap();
    let text = std::fs::read_to_string(HOSTS).unwrap();
    assert!(text.contains("10.0.0.7\tdb.internal"), "{text}");
    assert!(
        text.contains("web"),
        "nstest's own entry for the hostname stays: {text}"
    );
    assert_eq!(
        lookup(Path::new(HOSTS), "localhost").unwrap(),
        Some("127.0.0.1".parse().unwrap())
    );
}

#[nstest::test]
fn replaces_instead_of_duplicating() {
    let hosts = Path::new(HOSTS);
    set_host(hosts, "10.0.0.1".parse().unwrap(), "api").unwrap();
    set_host(hosts, "10.0.0.2".parse().unwrap(), "api").unwrap();
    let ip: IpAddr = "10.0.0.2".parse().unwrap();
    assert_eq!(lookup(hosts, "api").unwrap(), Some(ip));
    assert_eq!(
        std::fs::read_to_string(HOSTS)
            .unwrap()
            .matches("api")
            .count(),
        1
    );
}

#[nstest::test]
fn another_test_never_sees_those_edits() {
    assert_eq!(lookup(Path::new(HOSTS), "api").unwrap(), None);
    assert_eq!(lookup(Path::new(HOSTS), "db.internal").unwrap(), None);
}

#[nstest::test]
fn refuses_a_name_with_spaces() {
    let err = set_host(Path::new(HOSTS), "10.0.0.3".parse().unwrap(), "two words").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[nstest::test]
fn reports_a_read_only_etc() {
    // Make /etc read-only inside this container only, as some images ship it.
    let st = std::process::Command::new("mount")
        .args(["-o", "remount,bind,ro", "/etc"])
        .status();
    let bound = std::process::Command::new("mount")
        .args(["--bind", "/etc", "/etc"])
        .status()
        .unwrap();
    assert!(bound.success());
    let st = st
        .and(
            std::process::Command::new("mount")
                .args(["-o", "remount,bind,ro", "/etc"])
                .status(),
        )
        .unwrap();
    assert!(st.success());
    let err = set_host(Path::new(HOSTS), "10.0.0.4".parse().unwrap(), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(30), "EROFS: {err}");
}

nstest::main!();
