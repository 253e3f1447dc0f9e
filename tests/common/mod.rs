//! Helpers shared by the integration tests that run the fixture binaries.

pub mod images;

use std::path::{Path, PathBuf};
use std::sync::Once;

/// A fixture binary built by `cargo test` as an example (`e2e-fixture`, `e2e-load`, `run`, …).
#[allow(dead_code)] // not every test crate runs one
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

/// `<CARGO_TARGET_TMPDIR>/<prefix>-<pid>`: this test process's scratch directory. On first use
/// the ones of processes that have ended (earlier runs of this test binary) are removed: each
/// run would otherwise leave its own behind.
#[allow(dead_code)] // not every test crate has one
pub fn process_dir(prefix: &str) -> PathBuf {
    static SWEPT: Once = Once::new();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    SWEPT.call_once(|| {
        for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| {
                n.strip_prefix(prefix)?
                    .strip_prefix('-')?
                    .parse::<u32>()
                    .ok()
            });
            if let Some(pid) = pid {
                if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    });
    tmp.join(format!("{prefix}-{}", std::process::id()))
}
