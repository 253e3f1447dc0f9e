//! The `greet` binary and the fixtures, tested as `cargo test` runs integration tests: from the
//! package root, with `CARGO_*` set and the crate's binaries built.

use std::path::Path;
use std::process::Command;

#[nstest::test]
fn reads_its_fixture_relative_to_the_package_root() {
    let list = std::fs::read_to_string("tests/data/names.txt").unwrap();
    assert_eq!(nstest_dropin::names(&list), ["Ada", "Grace"]);
}

#[nstest::test]
fn reads_its_fixture_through_the_manifest_dir() {
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/names.txt");
    assert!(compiled.is_file(), "{compiled:?}");
    let at_run_time = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    assert!(Path::new(&at_run_time)
        .join("tests/data/names.txt")
        .is_file());
}

#[nstest::test]
fn cargo_says_which_package_this_is() {
    assert_eq!(std::env::var("CARGO_PKG_NAME").unwrap(), "nstest-dropin");
    assert_eq!(
        std::env::var("CARGO_PKG_VERSION").unwrap(),
        env!("CARGO_PKG_VERSION")
    );
}

#[nstest::test]
fn runs_its_own_binary() {
    let out = Command::new(env!("CARGO_BIN_EXE_greet"))
        .args(["--file", "tests/data/names.txt"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello, Ada!\nHello, Grace!\n"
    );
    let usage = Command::new(env!("CARGO_BIN_EXE_greet")).output().unwrap();
    assert_eq!(usage.status.code(), Some(64));
}

#[nstest::test]
fn writes_its_scratch_files_in_the_target_tmpdir() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-scratch");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("list.txt"), "Linus\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_greet"))
        .arg("--file")
        .arg(dir.join("list.txt"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello, Linus!\n");
}

#[nstest::test]
#[ignore = "needs the greeting service"]
fn talks_to_the_greeting_service() {
    panic!("not run without --ignored");
}
