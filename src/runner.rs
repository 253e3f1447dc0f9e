//! One test, run in its container, judged, and — when it fails — explained: which container
//! settings applied and the exact command that re-runs just this test.

use std::path::Path;
use std::time::Duration;

use crate::parent::{self, Launch, Out, StdioSetup, Verdict};
use crate::protocol::{Message, Outcome, RunSpec};
use crate::registry::TestDesc;
use crate::spec::{
    self, format_bytes, format_duration, Limits, Net, RootfsSource, DEFAULT_TIMEOUT,
};

/// How much of a test's output is kept (from the start, and again from the end).
const CAPTURE_LIMIT: usize = 1 << 20;

/// A test that did not pass.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Its output and the reason, as the user reads them.
    pub message: String,
    /// It could not run here at all (a resource limit this machine cannot apply).
    pub unavailable: bool,
    /// nstest could not make its container (not the test failing): the probe may know why.
    pub setup: bool,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self {
            message,
            unavailable: false,
            setup: false,
        }
    }
}

/// A test's container settings, resolved from its attribute and the environment.
struct Settings {
    rootfs: RootfsSource,
    timeout: Duration,
    limits: Limits,
    hostname: String,
    binds: Vec<spec::Bind>,
    env: Vec<(String, String)>,
    workdir: Option<std::path::PathBuf>,
    /// The package, shown read-only (unless `package = false` or `NSTEST_PACKAGE=off`).
    package: Option<parent::package::PackageView>,
}

impl Settings {
    fn of(desc: &TestDesc) -> Result<Self, crate::Error> {
        let base_dir = Path::new(desc.manifest_dir);
        Ok(Self {
            rootfs: match desc.rootfs {
                Some(s) => RootfsSource::parse(s, base_dir)?,
                None => RootfsSource::Default,
            },
            timeout: match desc.timeout_ms {
                Some(ms) => Duration::from_millis(ms),
                None => RUN_ENV.timeout.clone()?.unwrap_or(DEFAULT_TIMEOUT),
            },
            limits: {
                let defaults = RUN_ENV.limits.clone()?;
                Limits {
                    memory: desc.memory.or(defaults.memory),
                    pids: desc.pids.or(defaults.pids),
                    cpus: desc.cpus,
                }
            },
            hostname: desc
                .hostname
                .map(str::to_string)
                .unwrap_or_else(|| spec::hostname_for_test(desc.fn_name)),
            binds: desc
                .bind
                .iter()
                .map(|b| spec::Bind::parse(b, base_dir))
                .collect::<Result<_, _>>()?,
            env: desc
                .env
                .iter()
                .map(|e| spec::parse_env(e))
                .collect::<Result<_, _>>()?,
            workdir: desc.workdir.map(spec::validate_workdir).transpose()?,
            package: desc
                .package
                .or(RUN_ENV.package)
                .unwrap_or(true)
                .then(|| parent::package::view(desc.manifest_dir, desc.target_tmpdir))
                .flatten(),
        })
    }

    /// One line: what the container was.
    fn describe(&self, desc: &TestDesc) -> String {
        let rootfs = match &self.rootfs {
            RootfsSource::Default => {
                crate::rootfs::default_source_cached(Path::new(desc.manifest_dir))
                    .map(|s| s.to_string())
                    .unwrap_or_else(|_| "default".into())
            }
            s => s.to_string(),
        };
        let mut parts = vec![
            format!(
                "rootfs {rootfs} ({})",
                match (parent::overlay_enabled(), parent::layer_on_disk()) {
                    (true, false) => "overlay",
                    (true, true) => "overlay, writable layer on disk",
                    (false, _) => "private copy",
                }
            ),
            format!("hostname {}", self.hostname),
            format!(
                "net {}",
                if desc.net == Net::Host {
                    "host"
                } else {
                    "loopback"
                }
            ),
            format!("timeout {}", format_duration(self.timeout)),
        ];
        if let Some(m) = self.limits.memory {
            parts.push(format!("memory {}", format_bytes(m)));
        }
        if let Some(p) = self.limits.pids {
            parts.push(format!("pids {p}"));
        }
        if let Some(c) = self.limits.cpus {
            parts.push(format!("cpus {c}"));
        }
        for b in &self.binds {
            parts.push(format!(
                "bind {}:{}{}",
                b.host.display(),
                b.target.display(),
                if b.read_only { "" } else { ":rw" }
            ));
        }
        if let Some(p) = &self.package {
            let trees: Vec<String> = p
                .trees
                .iter()
                .map(|(_, t)| t.display().to_string())
                .collect();
            parts.push(format!("package {} (read-only)", trees.join(" ")));
        }
        if let Some(w) = &self.workdir {
            parts.push(format!("workdir {}", w.display()));
        }
        if parent::rootless() {
            parts.push("rootless".into());
        }
        parts.join(", ")
    }
}

/// A word for the shell, quoted if it needs to be.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command that re-runs just this test with the same settings: the nstest variables of
/// this run, this binary, the test's name, `--exact`.
fn rerun_command(desc: &TestDesc) -> String {
    let mut words: Vec<String> = crate::settings::given()
        .into_iter()
        .map(|(k, v)| format!("{k}={}", quote(&v)))
        .collect();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "<test binary>".into());
    words.push(quote(&exe));
    words.push(quote(&desc.name()));
    words.push("--exact".into());
    if desc.ignore {
        words.push("--include-ignored".into());
    }
    words.join(" ")
}

/// What the environment says for every test of a run, read once (not on each test's path).
struct RunEnv {
    /// `NSTEST_TIMEOUT`.
    timeout: Result<Option<Duration>, spec::SpecError>,
    /// `NSTEST_MEMORY`, `NSTEST_PIDS`.
    limits: Result<Limits, spec::SpecError>,
    /// `NSTEST_KEEP=1`: keep a failed test's writes.
    keep: bool,
    /// `NSTEST_SHELL=1`, with a terminal.
    shell: bool,
    /// `NSTEST_PACKAGE=off` (or `on`): whether tests without a `package` option show it.
    package: Option<bool>,
}

static RUN_ENV: once_cell::sync::Lazy<RunEnv> = once_cell::sync::Lazy::new(|| RunEnv {
    timeout: spec::env_timeout(),
    limits: Limits::default().with_env_defaults(),
    keep: crate::settings::keep(),
    shell: parent::shell::wanted(),
    package: crate::settings::package(),
});

fn keep() -> bool {
    RUN_ENV.keep
}

/// The container `desc` runs in, with `settings`.
fn launch<'a>(
    desc: &'static TestDesc,
    settings: &'a Settings,
    capture: bool,
    args: &[&str],
) -> Launch<'a> {
    let (stdout, stderr) = if capture {
        (Out::Pipe, Out::SameAsStdout)
    } else {
        (Out::Inherit, Out::Inherit)
    };
    Launch {
        rootfs: &settings.rootfs,
        base_dir: Path::new(desc.manifest_dir),
        hostname: &settings.hostname,
        net: desc.net,
        run: RunSpec::Test(desc.name()),
        args: args.iter().map(|a| a.to_string()).collect(),
        stdio: StdioSetup {
            stdin_null: true,
            stdout,
            stderr,
        },
        timeout: Some(settings.timeout),
        capture_limit: Some(CAPTURE_LIMIT),
        limits: settings.limits.clone(),
        package: settings.package.clone(),
        binds: settings.binds.clone(),
        env: settings.env.clone(),
        workdir: settings.workdir.clone(),
        keep: keep().then(|| desc.name()),
        shell_on_failure: RUN_ENV.shell,
        network: None,
        echo: [None, None],
    }
}

/// The spec of `desc`'s container as [`run_desc`] will send it, when it can be known ahead
/// (see [`Launch::spec_ahead`]): worked out before `main` in a process that runs this one test,
/// whose container, cloned then, sets itself up for it while the harness starts
/// (`parent::prefork`).
pub(crate) fn spec_ahead(desc: &'static TestDesc) -> Option<crate::protocol::ChildSpec> {
    let settings = Settings::of(desc).ok()?;
    launch(desc, &settings, false, &[]).spec_ahead()
}

/// Runs one test in its container. `Ok` holds its captured output.
pub(crate) fn run_desc(
    desc: &'static TestDesc,
    capture: bool,
    args: &[&str],
) -> Result<String, Failure> {
    let error = |e: crate::Error| Failure {
        unavailable: matches!(e, crate::Error::Cgroup(_)),
        message: format!("nstest could not run this test: {e}"),
        setup: false,
    };
    let settings = Settings::of(desc).map_err(error)?;
    let explain = |reason: String| {
        let reason = if reason.is_empty() {
            reason
        } else {
            reason + "\n"
        };
        format!(
            "{reason}container: {}\nrerun: {}",
            settings.describe(desc),
            rerun_command(desc)
        )
    };
    let finished = launch(desc, &settings, capture, args).run().map_err(|e| {
        let mut f = error(e);
        f.message = explain(f.message);
        f.setup = true;
        f
    })?;
    let verdict = parent::judge_test(&finished, settings.timeout);
    let kept = match (&finished.kept, &verdict) {
        (Some(dir), Verdict::Passed) => {
            crate::rootfs::cache::remove_tree(dir);
            String::new()
        }
        (Some(dir), _) => format!(
            "\nkept: the container's writes (its overlay upper layer) are in {} (NSTEST_KEEP=1; removed by the next run)",
            dir.join("upper").display()
        ),
        (None, _) if keep() => "\nkept: nothing (NSTEST_KEEP=1 keeps an overlay's writes; this container had none)".into(),
        (None, _) => String::new(),
    };
    let mut output = String::from_utf8_lossy(&finished.stdout.into_bytes()).into_owned();
    // A panic the test's own output shows (Rust's `thread '…' panicked at` lines, as libtest
    // prints them) is not told twice.
    let shown_panic = finished.messages.iter().find_map(|m| match m {
        Message::Outcome(Outcome::Panicked {
            message,
            location: Some(l),
        }) if output.contains(&format!("panicked at {l}:\n{message}")) => {
            Some(format!("test panicked at {l}: {message}"))
        }
        _ => None,
    });
    let mut fail = |reason: String, setup: bool| {
        if !output.is_empty() && !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str(&explain(reason));
        output.push_str(&kept);
        Err(Failure {
            setup,
            ..Failure::from(output.clone())
        })
    };
    match verdict {
        Verdict::Passed => Ok(output),
        Verdict::Failed(reason) => {
            let reason = match shown_panic.as_deref().and_then(|l| reason.strip_prefix(l)) {
                Some(rest) => rest.trim_start_matches('\n').to_string(),
                None => reason,
            };
            fail(reason, false)
        }
        Verdict::Error(e) => fail(error(e).message, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ShouldPanic;

    const fn desc(rootfs: &'static str) -> TestDesc {
        TestDesc {
            module_path: "krate::m",
            fn_name: "t",
            run: || Ok(()),
            ignore: false,
            ignore_reason: None,
            should_panic: ShouldPanic::No,
            hostname: None,
            rootfs: Some(rootfs),
            net: Net::Loopback,
            memory: None,
            pids: None,
            cpus: None,
            timeout_ms: None,
            bind: &["/tmp:/mnt/host-tmp"],
            env: &["A=1"],
            workdir: Some("/work"),
            package: Some(true),
            manifest_dir: env!("CARGO_MANIFEST_DIR"),
            target_tmpdir: option_env!("CARGO_TARGET_TMPDIR"),
        }
    }

    static HOST: TestDesc = desc("builtin:host");
    static DIR: TestDesc = desc("rootfs-fixtures");
    // The default where a static busybox is installed (the CI installs it), built into the
    // cache by the harness's `prepare` first, as a first run does.
    static BUSYBOX: TestDesc = desc("builtin:busybox");
    static LIMITED: TestDesc = TestDesc {
        pids: Some(64),
        ..desc("builtin:host")
    };
    static HOST_NET: TestDesc = TestDesc {
        net: Net::Host,
        ..desc("builtin:host")
    };

    /// A container cloned before `main` sets itself up for the spec worked out then, and is sent
    /// the harness's request only for that very spec: the two must agree whenever the spec can
    /// be known ahead, or every such container would be ended unused.
    #[test]
    fn the_spec_worked_out_ahead_is_the_one_the_harness_sends() {
        if parent::rootless() {
            // A user namespace's maps are the harness's to make: nothing is worked out ahead.
            assert!(spec_ahead(&HOST).is_none());
            return;
        }
        for desc in [&HOST, &DIR, &BUSYBOX] {
            let settings = Settings::of(desc).unwrap();
            let (mut sent, _, _) = launch(desc, &settings, true, &[]).prepare().unwrap();
            let ahead = spec_ahead(desc).expect("known ahead");
            // As `spawn` decides for a container cloned ahead that nothing holds back.
            sent.held_before_run = parent::spawn::held_before_run(true, false, &sent);
            assert_eq!(ahead, sent, "{}", desc.rootfs.unwrap());
            assert_eq!(ahead.encode(), sent.encode());
        }
        // Not when the harness has something to do before the set-up (a cgroup to place it
        // in), nor for the host's network.
        assert!(spec_ahead(&LIMITED).is_none());
        assert!(spec_ahead(&HOST_NET).is_none());
    }
}
