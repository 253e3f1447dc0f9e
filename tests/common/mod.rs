//! Helpers shared by the integration tests that run the fixture binaries.

use std::path::PathBuf;

/// A fixture binary built by `cargo test` as an example (`e2e-fixture`, `e2e-load`, `run`, …).
pub fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let exe = deps.parent().unwrap().join("examples").join(name);
    assert!(
        exe.exists(),
        "{} not built (cargo test builds it)",
        exe.display()
    );
    exe
}
