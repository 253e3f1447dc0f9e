//! A suite written for `cargo test` (`tests/dropin/`: fixtures read relative to the package,
//! its own binary run through `CARGO_BIN_EXE_*`, `CARGO_*` read at run time, type-inference
//! patterns, `#[ignore = "…"]`) passes with only `#[test]` replaced by `#[nstest::test]`: under
//! `cargo test` and `cargo nextest run`, as root and rootless; and the same suite with `#[test]`
//! put back passes without nstest, so it is an ordinary one.
//!
//! (`cargo test --workspace` runs the crate as root itself; this drives the other runs, in a
//! target directory of their own: the outer cargo holds the workspace's.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("dropin-target")
}

/// `cargo <args>` on the drop-in crate, with `env`; its output, which must say it succeeded.
fn cargo(args: &[&str], env: &[(&str, &str)], dir: &Path) -> String {
    let out: Output = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUST_BACKTRACE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "cargo {args:?} {env:?}:\n{text}");
    text
}

/// What libtest prints for the crate's two test binaries.
fn assert_libtest_outcomes(text: &str) {
    for line in [
        "test tests::greets_by_name ... ok",
        "test tests::an_empty_list_has_no_lengths ... ok",
        "test tests::lengths_sum_up ... ok",
        "test runs_its_own_binary ... ok",
        "test reads_its_fixture_relative_to_the_package_root ... ok",
        "test reads_its_fixture_through_the_manifest_dir ... ok",
        "test cargo_says_which_package_this_is ... ok",
        "test writes_its_scratch_files_in_the_target_tmpdir ... ok",
        "test talks_to_the_greeting_service ... ignored, needs the greeting service",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
}

#[test]
fn a_cargo_test_suite_passes_with_only_the_attribute_changed() {
    let manifest = workspace().join("Cargo.toml");
    let manifest = manifest.to_str().unwrap();
    let pkg = ["--manifest-path", manifest, "-p", "nstest-dropin"];
    // cargo test, rootless (root's own run is `cargo test --workspace`'s).
    let args: Vec<&str> = ["test"].iter().chain(&pkg).copied().collect();
    let text = cargo(&args, &[("NSTEST_ROOTLESS", "1")], workspace());
    assert_libtest_outcomes(&text);
    // cargo nextest run (a process per test), as root and rootless.
    let args: Vec<&str> = ["nextest", "run"].iter().chain(&pkg).copied().collect();
    for env in [&[][..], &[("NSTEST_ROOTLESS", "1")][..]] {
        let text = cargo(&args, env, workspace());
        assert!(
            text.contains("8 tests run: 8 passed, 1 skipped"),
            "{env:?}:\n{text}"
        );
    }
}

#[test]
fn the_same_suite_with_test_put_back_is_an_ordinary_one() {
    let copy = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dropin-plain");
    let _ = std::fs::remove_dir_all(&copy);
    for dir in ["src", "tests/data"] {
        std::fs::create_dir_all(copy.join(dir)).unwrap();
    }
    let source = workspace().join("tests/dropin");
    for file in [
        "src/lib.rs",
        "src/main.rs",
        "tests/cli.rs",
        "tests/data/names.txt",
    ] {
        let text = std::fs::read_to_string(source.join(file)).unwrap();
        std::fs::write(copy.join(file), text.replace("#[nstest::test]", "#[test]")).unwrap();
    }
    let manifest = std::fs::read_to_string(source.join("Cargo.toml")).unwrap();
    let manifest: String = manifest
        .lines()
        .filter(|l| !l.starts_with("nstest ") && !l.starts_with("[dev-dependencies]"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        copy.join("Cargo.toml"),
        format!("{manifest}\n[workspace]\n"),
    )
    .unwrap();
    assert!(!manifest.contains("path = \"../..\""), "{manifest}");
    let text = cargo(&["test", "--offline"], &[], &copy);
    assert_libtest_outcomes(&text);
}

#[test]
fn nstest_package_off_hides_the_package_and_its_binaries() {
    let manifest = workspace().join("Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["test", "--manifest-path", manifest.to_str().unwrap()])
        .args([
            "-p",
            "nstest-dropin",
            "--test",
            "cli",
            "--",
            "--test-threads",
            "1",
        ])
        .env("CARGO_TARGET_DIR", target_dir())
        .env("NSTEST_PACKAGE", "off")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    // What needs the package fails, saying so; what does not, passes.
    for (test, outcome) in [
        ("reads_its_fixture_relative_to_the_package_root", "FAILED"),
        ("runs_its_own_binary", "FAILED"),
        ("cargo_says_which_package_this_is", "ok"),
    ] {
        assert!(
            text.contains(&format!("test {test} ... {outcome}")),
            "{test}: {text}"
        );
    }
    assert!(text.contains("No such file or directory"), "{text}");
}
