//! The quick start of the README, as a real test target: every test here passes, each in its
//! own container.

use std::process::Command;

#[nstest::test(hostname = "box", timeout = "10s")]
fn hostname_is_the_containers() {
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "box"
    );
}

#[nstest::test]
fn runs_as_pid_one() {
    assert_eq!(std::process::id(), 1);
}

#[nstest::test]
#[should_panic(expected = "boom")]
fn panics() {
    panic!("boom")
}

#[nstest::test]
#[ignore]
fn slow() {}

#[nstest::test]
fn fallible() -> Result<(), Box<dyn std::error::Error>> {
    std::fs::write("/etc/motd", "written in a container\n")?;
    Ok(())
}

#[nstest::test]
fn default_hostname_comes_from_the_test_name() {
    let out = Command::new("hostname").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "default-hostname-comes-from-the-test-name"
    );
    let etc = std::fs::read_to_string("/etc/hostname").unwrap();
    assert_eq!(etc.trim(), "default-hostname-comes-from-the-test-name");
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(
        hosts.contains("default-hostname-comes-from-the-test-name"),
        "{hosts}"
    );
}

#[nstest::test]
fn ps_shows_only_the_container() {
    let out = Command::new("ps").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // Only the test (PID 1) and ps itself (whose pid follows the test's threads).
    assert_eq!(pids.len(), 2, "{text}");
    assert_eq!(pids[0], "1", "{text}");
}

#[nstest::test]
fn the_default_root_says_what_it_is_as_an_alpine_root_does() {
    let os = std::fs::read_to_string("/etc/os-release").unwrap();
    for field in ["ID=", "VERSION_ID=", "PRETTY_NAME="] {
        assert!(os.lines().any(|l| l.starts_with(field)), "{field} in {os}");
    }
}

#[nstest::test]
fn the_root_is_a_fresh_throwaway_view() {
    assert!(std::path::Path::new("/bin/sh").exists());
    std::fs::write("/tmp/x", "y").unwrap();
    std::fs::write("/bin/new-file", "y").unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    for m in [
        " / overlay ",
        " /proc proc ",
        " /tmp tmpfs ",
        " /dev tmpfs ",
        " /sys sysfs ro,",
    ] {
        assert!(mounts.contains(m), "{m:?} missing from\n{mounts}");
    }
}

/// As `cargo test` gives it: the package at its own path, the test starting in its root; and
/// read-only, so that nothing a test does reaches the host's files.
#[nstest::test]
fn the_package_is_there_read_only_and_the_test_starts_in_its_root() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(
        std::env::current_dir().unwrap(),
        root.canonicalize().unwrap()
    );
    let manifest = std::fs::read_to_string("Cargo.toml").unwrap();
    assert!(manifest.contains("name = \"nstest\""), "{manifest}");
    // The test binary and the rest of the build outputs are there too.
    assert!(std::env::current_exe().unwrap().is_file());
    for attempt in [
        std::fs::write("Cargo.toml", "").err(),
        std::fs::remove_file("Cargo.toml").err(),
        std::fs::create_dir(root.join("new-dir")).err(),
        std::fs::remove_file(std::env::current_exe().unwrap()).err(),
    ] {
        let e = attempt.expect("a write into the package succeeded");
        assert_eq!(e.raw_os_error(), Some(30), "EROFS, not {e}"); // EROFS
    }
    let _ = Command::new("rm").args(["-rf", "src"]).status();
    assert!(
        root.join("src/lib.rs").is_file(),
        "rm -rf reached the package"
    );
    // `mount -o remount,rw` is what root code that sets out to write would try: refused in a
    // user namespace, possible for a root test (see docs/security.md).
}

#[nstest::test(package = false)]
fn with_package_false_the_package_is_not_there() {
    assert_eq!(std::env::current_dir().unwrap(), std::path::Path::new("/"));
    assert!(!std::path::Path::new(env!("CARGO_MANIFEST_DIR")).exists());
    assert!(!std::env::current_exe().unwrap().exists());
}

nstest::main!();
