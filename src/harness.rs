//! The two ways a `#[nstest::test]` runs, one runner underneath:
//!
//! - `harness = false` targets: `nstest::main!()` lands in [`main`], which turns the registered
//!   tests into libtest-mimic trials (so the usual `cargo test` / `cargo nextest` flags work).
//! - ordinary libtest targets (unit tests in `src/`, `tests/*.rs`): the attribute also emits a
//!   `#[test]` wrapper that calls [`run_in_libtest`].
//!
//! Either way [`run_desc`] runs the test in its own container and judges the outcome.

use std::path::Path;
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::parent::{self, Launch, Out, StdioSetup, Verdict};
use crate::protocol::RunSpec;
use crate::registry::{self, TestDesc};
use crate::spec::{self, RootfsSource, DEFAULT_TIMEOUT};

/// How much of a test's output is kept (from the start, and again from the end).
const CAPTURE_LIMIT: usize = 1 << 20;

/// The whole `main` of a `harness = false` test binary.
pub fn main() -> ! {
    crate::init();
    let args = Arguments::from_args();
    let tests = registry::tests();
    if !args.list {
        if let Some(first) = tests.first() {
            eprintln!(
                "nstest: rootfs {}; namespaces uts, pid, mount, ipc, net{}",
                crate::rootfs::describe_default(Path::new(first.manifest_dir)),
                if parent::rootless() {
                    ", user (rootless)"
                } else {
                    ""
                }
            );
        }
    }
    let nocapture = args.nocapture;
    // Like libtest: the output of a passing test is shown only with --show-output.
    let show_output = args.show_output;
    let unavailable = match parent::probe::check() {
        Ok(()) => None,
        Err(reason) => Some(reason.as_str()),
    };
    let skip = matches!(std::env::var("NSTEST_UNAVAILABLE").as_deref(), Ok("skip"));
    if let (Some(reason), false) = (unavailable, args.list) {
        let what = if skip {
            "every test is skipped (NSTEST_UNAVAILABLE=skip)"
        } else {
            "every test fails"
        };
        eprintln!("nstest: {what}: {reason}");
    }
    let trials = tests
        .into_iter()
        .map(|desc| match unavailable {
            None => {
                Trial::ignorable_test(desc.name(), move || match run_desc(desc, !nocapture, &[]) {
                    Ok(output) => {
                        if show_output {
                            print_output(output);
                        }
                        Ok(Completion::Completed)
                    }
                    // A limit that cannot be applied here: skipped like the whole run would be.
                    Err(f) if f.unavailable && skip => Ok(Completion::ignored_with(f.message)),
                    Err(f) => Err(Failed::from(f.message)),
                })
                .with_ignored_flag(desc.ignore)
            }
            Some(reason) if skip => {
                Trial::ignorable_test(desc.name(), move || Ok(Completion::ignored_with(reason)))
                    .with_ignored_flag(true)
            }
            Some(reason) => Trial::test(desc.name(), move || Err(Failed::from(reason)))
                .with_ignored_flag(desc.ignore),
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}

/// What the `#[test]` wrapper of a `#[nstest::test]` calls in an ordinary libtest target: runs
/// the test in its container, prints its output (libtest captures it as usual), and panics with
/// the reason if it failed.
pub fn run_in_libtest(desc: &'static TestDesc) {
    if let Err(reason) = parent::probe::check() {
        panic!("{reason}");
    }
    let name = desc.name();
    // The child never reaches libtest's main (nstest enters the container before it); were it
    // to, these make it run this one test and nothing else.
    let args = [
        "--exact",
        name.as_str(),
        "--nocapture",
        "--include-ignored",
        "--test-threads=1",
    ];
    match run_desc(desc, true, &args) {
        Ok(output) => print_output(output),
        Err(failure) => panic!("{}", failure.message),
    }
}

fn print_output(output: String) {
    if !output.is_empty() {
        print!("{output}");
    }
}

/// A test that did not pass.
#[derive(Debug)]
pub(crate) struct Failure {
    /// Its output and the reason, as the user reads them.
    pub message: String,
    /// It could not run here at all (a resource limit this machine cannot apply).
    pub unavailable: bool,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self {
            message,
            unavailable: false,
        }
    }
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
    };
    let base_dir = Path::new(desc.manifest_dir);
    let rootfs = match desc.rootfs {
        Some(s) => RootfsSource::parse(s, base_dir).map_err(|e| error(e.into()))?,
        None => RootfsSource::Default,
    };
    let timeout = match desc.timeout_ms {
        Some(ms) => Duration::from_millis(ms),
        None => spec::env_timeout()
            .map_err(|e| error(e.into()))?
            .unwrap_or(DEFAULT_TIMEOUT),
    };
    let limits = crate::spec::Limits {
        memory: desc.memory,
        pids: desc.pids,
        cpus: desc.cpus,
    }
    .with_env_defaults()
    .map_err(|e| error(e.into()))?;
    let hostname = desc
        .hostname
        .map(str::to_string)
        .unwrap_or_else(|| spec::hostname_for_test(desc.fn_name));
    let (stdout, stderr) = if capture {
        (Out::Pipe, Out::SameAsStdout)
    } else {
        (Out::Inherit, Out::Inherit)
    };
    let finished = Launch {
        rootfs: &rootfs,
        base_dir,
        hostname: &hostname,
        net: desc.net,
        run: RunSpec::Test(desc.name()),
        args: args.iter().map(|a| a.to_string()).collect(),
        stdio: StdioSetup {
            stdin_null: true,
            stdout,
            stderr,
        },
        timeout: Some(timeout),
        capture_limit: Some(CAPTURE_LIMIT),
        limits,
        binds: desc
            .bind
            .iter()
            .map(|b| spec::Bind::parse(b, base_dir))
            .collect::<Result<_, _>>()
            .map_err(|e| error(e.into()))?,
        env: desc
            .env
            .iter()
            .map(|e| spec::parse_env(e))
            .collect::<Result<_, _>>()
            .map_err(|e| error(e.into()))?,
        workdir: desc
            .workdir
            .map(spec::validate_workdir)
            .transpose()
            .map_err(|e| error(e.into()))?,
    }
    .run()
    .map_err(error)?;
    let verdict = parent::judge_test(&finished, timeout);
    let mut output = String::from_utf8_lossy(&finished.stdout.into_bytes()).into_owned();
    let mut fail = |reason: String| {
        if !output.is_empty() && !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str(&reason);
        Err(Failure::from(output.clone()))
    };
    match verdict {
        Verdict::Passed => Ok(output),
        Verdict::Failed(reason) => fail(reason),
        Verdict::Error(e) => fail(error(e).message),
    }
}
