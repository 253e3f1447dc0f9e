//! `nstest::main!()` lands here: the registered tests become libtest-mimic trials (so the usual
//! `cargo test` / `cargo nextest` flags work), each run in its own container.

use std::path::Path;
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::parent::{self, Launch, Out, StdioSetup, Verdict};
use crate::protocol::RunSpec;
use crate::registry::{self, TestDesc};
use crate::spec::{self, RootfsSource, DEFAULT_TIMEOUT};

/// How much of a test's output is kept (from the start, and again from the end).
const CAPTURE_LIMIT: usize = 1 << 20;

/// The whole `main` of a test binary.
pub fn main() -> ! {
    crate::init();
    let args = Arguments::from_args();
    let tests = registry::tests();
    if !args.list {
        if let Some(first) = tests.first() {
            eprintln!(
                "nstest: rootfs {}; namespaces uts, pid, mount, ipc, net",
                crate::rootfs::describe_default(Path::new(first.manifest_dir))
            );
        }
    }
    let nocapture = args.nocapture;
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
            None => Trial::test(desc.name(), move || run_test(desc, nocapture))
                .with_ignored_flag(desc.ignore),
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

/// Runs one test in its container and turns the outcome into libtest-mimic's terms.
fn run_test(desc: &'static TestDesc, nocapture: bool) -> Result<(), Failed> {
    let error = |e: crate::Error| Failed::from(format!("nstest could not run this test: {e}"));
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
    let hostname = desc
        .hostname
        .map(str::to_string)
        .unwrap_or_else(|| spec::hostname_for_test(desc.fn_name));
    let (stdout, stderr) = if nocapture {
        (Out::Inherit, Out::Inherit)
    } else {
        (Out::Pipe, Out::SameAsStdout)
    };
    let finished = Launch {
        rootfs: &rootfs,
        base_dir,
        hostname: &hostname,
        net: desc.net,
        run: RunSpec::Test(desc.name()),
        stdio: StdioSetup {
            stdin_null: true,
            stdout,
            stderr,
        },
        timeout: Some(timeout),
        capture_limit: Some(CAPTURE_LIMIT),
    }
    .run()
    .map_err(error)?;
    let verdict = parent::judge_test(&finished, timeout);
    let output = finished.stdout.into_bytes();
    let with_output = |msg: String| {
        let out = String::from_utf8_lossy(&output);
        if out.is_empty() {
            Failed::from(msg)
        } else {
            Failed::from(format!(
                "{}{}{msg}",
                out,
                if out.ends_with('\n') { "" } else { "\n" }
            ))
        }
    };
    match verdict {
        Verdict::Passed => Ok(()),
        Verdict::Failed(reason) => Err(with_output(reason)),
        Verdict::Error(e) => Err(with_output(format!("nstest could not run this test: {e}"))),
    }
}
