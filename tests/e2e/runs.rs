//! Running the fixture binaries and reading what they report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;
use crate::host::{serial, HostGuard};

pub const ORPHAN_MARK: &str = "987654";

pub fn fixture() -> PathBuf {
    common::example("e2e-fixture")
}

/// The newest binary of the test target `name` (`tests/<name>.rs`) that cargo built beside
/// this one.
pub fn test_binary(name: &str) -> PathBuf {
    let me = std::env::current_exe().unwrap();
    let prefix = format!("{name}-");
    std::fs::read_dir(me.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let file = p.file_name().unwrap().to_string_lossy();
            file.starts_with(&prefix) && !file.ends_with(".d")
        })
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| panic!("cargo test builds tests/{name}.rs"))
}

/// The cache the fixture runs share.
pub fn e2e_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-cache")
}

pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Run {
    pub output: Output,
    pub outcomes: BTreeMap<String, String>,
    pub messages: BTreeMap<String, String>,
}

impl Run {
    pub fn text(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        )
    }
    pub fn outcome(&self, test: &str) -> &str {
        self.outcomes
            .get(test)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no outcome for {test}:\n{}", self.text()))
    }
    pub fn message(&self, test: &str) -> &str {
        self.messages
            .get(test)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no failure message for {test}"))
    }
}

impl Run {
    /// libtest's outcome lines and failure sections of a fixture run's output.
    pub fn parse(output: Output) -> Run {
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut outcomes = BTreeMap::new();
        // Only libtest's own lines, before the failure section (where a test's output may say anything).
        for line in stdout.lines().take_while(|l| *l != "failures:") {
            if let Some(rest) = line.strip_prefix("test ") {
                if let Some((test, outcome)) = rest.split_once(" ... ") {
                    outcomes.insert(test.trim().to_string(), outcome.trim().to_string());
                }
            }
        }
        let mut messages = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        for line in stdout.lines() {
            if let Some(test) = line
                .strip_prefix("---- ")
                .and_then(|l| l.strip_suffix(" ----"))
            {
                if let Some((t, m)) = current.take() {
                    messages.insert(t, m);
                }
                current = Some((test.to_string(), String::new()));
            } else if line == "failures:" {
                if let Some((t, m)) = current.take() {
                    messages.insert(t, m);
                }
            } else if let Some((_, m)) = current.as_mut() {
                m.push_str(line);
                m.push('\n');
            }
        }
        Run {
            output,
            outcomes,
            messages,
        }
    }
}

/// Runs the fixture with `args` and `env` in a fresh TMPDIR and cache, and checks the host
/// is clean afterwards.
pub fn run_fixture(name: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    run_fixture_in(name, &[], "e2e-cache", args, env)
}

/// Where an unprivileged run keeps its copy of the fixture, its TMPDIR and its cache (per test
/// process, so two checkouts tested at once do not meet).
pub fn nobody_dir() -> PathBuf {
    Path::new("/tmp").join(format!("nstest-e2e-nobody-{}", std::process::id()))
}

/// Runs as the unprivileged uid/gid 65534: rootless mode.
pub const AS_NOBODY: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--",
];

/// `exe` run under the `wrapper` command (its program and first arguments), if any.
pub fn wrapped(wrapper: &[&str], exe: &Path) -> Command {
    match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    }
}

/// [`run_fixture`] under a `wrapper` command, with the named cache directory.
pub fn run_fixture_in(
    name: &str,
    wrapper: &[&str],
    cache: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let lock = serial();
    // An unprivileged uid may not reach this checkout (under /root, say): it gets a copy of
    // the fixture, its TMPDIR and its cache in a world-readable place.
    let nobody = wrapper.iter().any(|a| a.contains("setpriv"));
    let base = if nobody {
        nobody_dir()
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
    };
    let tmp = base.join(format!("{name}-tmp"));
    let cache = base.join(cache);
    let _ = std::fs::remove_dir_all(&tmp);
    for d in [&base, &tmp, &cache] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    }
    let exe = if nobody {
        let copy = base.join("e2e-fixture");
        std::fs::copy(fixture(), &copy).unwrap();
        copy
    } else {
        fixture()
    };
    let host = HostGuard::new(&lock, &tmp, &cache);
    let binary = std::fs::read(&exe).unwrap();
    let output = in_dirs(&mut wrapped(wrapper, &exe), &tmp, &cache)
        .args(args)
        // Failures read the same whatever the caller's own setting.
        .env("RUST_BACKTRACE", "0")
        // Secrets of the harness's environment, which no test may see (`demo_env_is_clean`).
        .env("E2E_SECRET", "hunter2")
        .env("CARGO_REGISTRY_TOKEN", "hunter2")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    host.finish();
    assert!(
        std::fs::read(&exe).unwrap() == binary,
        "the test binary was modified"
    );
    if nobody {
        let _ = std::fs::remove_dir_all(&base);
    }
    Run::parse(output)
}

/// `cmd` with nstest's temporary files under `tmp` and its cache at `cache`, as every fixture
/// run here has them (a `HostGuard` then checks that `tmp` is left empty).
pub fn in_dirs<'a>(cmd: &'a mut Command, tmp: &Path, cache: &Path) -> &'a mut Command {
    cmd.env("TMPDIR", tmp).env("NSTEST_CACHE_DIR", cache)
}

/// Runs `cmd` (an example, or a fixture) with the e2e cache; its stdout, once it has succeeded.
pub fn succeeded(cmd: &mut Command) -> String {
    let out = cmd.env("NSTEST_CACHE_DIR", e2e_cache()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A copy of the busybox base at `root` (`cp -a`), for a test to alter as its rootfs.
pub fn busybox_copy(root: &Path) {
    assert!(Command::new("cp")
        .arg("-a")
        .arg(busybox_base())
        .arg(root)
        .status()
        .unwrap()
        .success());
}

/// The busybox base in the e2e cache, built by a first run if need be.
pub fn busybox_base() -> PathBuf {
    let run = run_fixture("warm", &["demo_pid_one"], &[]);
    assert!(run.output.status.success(), "{}", run.text());
    let bases = e2e_cache().join("bases");
    std::fs::read_dir(&bases)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("busybox-"))
        .unwrap()
        .path()
}
