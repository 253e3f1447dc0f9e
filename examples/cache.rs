//! Inspect and prune nstest's cache of unpacked rootfs bases.
//!
//! ```text
//! cargo run --example cache -- list     # each base: key, size, path
//! cargo run --example cache -- prune    # remove them all (refused while tests run)
//! ```
//!
//! The same as `nstest::rootfs::cache::Cache::{list, prune}`; the cache is `NSTEST_CACHE_DIR`,
//! else `$XDG_CACHE_HOME/nstest`, else `~/.cache/nstest`.

use nstest::rootfs::cache::Cache;

fn main() -> std::process::ExitCode {
    let root = Cache::default_root();
    let cache = match Cache::open(root.clone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cache: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match std::env::args().nth(1).as_deref() {
        Some("list") => cache.list().map(|entries| {
            println!("{} ({} bases)", root.display(), entries.len());
            for e in entries {
                println!(
                    "{:<48} {:>8.1} MB  {}",
                    e.key,
                    e.bytes as f64 / 1e6,
                    e.path.display()
                );
            }
        }),
        Some("prune") => cache.prune().map(|removed| {
            let bytes: u64 = removed.iter().map(|e| e.bytes).sum();
            println!(
                "removed {} bases, {:.1} MB, from {}",
                removed.len(),
                bytes as f64 / 1e6,
                root.display()
            );
        }),
        _ => {
            eprintln!("usage: cargo run --example cache -- list|prune");
            return std::process::ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cache: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
