//! The two ways a `#[nstest::test]` runs, one runner underneath:
//!
//! - `harness = false` targets: `nstest::main!()` lands in [`main`], which turns the registered
//!   tests into libtest-mimic trials (so the usual `cargo test` / `cargo nextest` flags work).
//! - ordinary libtest targets (unit tests in `src/`, `tests/*.rs`): the attribute also emits a
//!   `#[test]` wrapper that calls [`run_in_libtest`].
//!
//! Either way `runner::run_desc` runs the test in its own container and judges the outcome.

mod relay;

use std::path::Path;
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::parent;
use crate::registry::{self, TestDesc};
use crate::runner::{run_desc, Failure};

/// The whole `main` of a `harness = false` test binary.
pub fn main() -> ! {
    crate::init();
    let mut args = Arguments::from_args();
    if args.exact && args.filter.is_some() && args.test_threads.is_none() {
        // One test at most (`--exact name`: how nextest runs each test): no thread pool.
        args.test_threads = Some(1);
    }
    let tests = registry::tests();
    if !args.list {
        if let Some((_, first)) = tests.first() {
            eprintln!(
                "nstest: rootfs {} ({}); namespaces uts, pid, mount, ipc, net, cgroup{}",
                crate::rootfs::describe_default(Path::new(first.manifest_dir)),
                match (parent::overlay_enabled(), parent::layer_on_disk()) {
                    (true, false) => "overlay per test",
                    (true, true) => "overlay per test, its writable layer on disk",
                    (false, _) => "a private copy per test",
                },
                match (parent::rootless(), crate::idmap::ranges()) {
                    (true, Some(r)) => format!(
                        ", user (rootless; subordinate ids {}+{} of /etc/subuid)",
                        r.sub_uid.start, r.sub_uid.count
                    ),
                    (true, None) => ", user (rootless; your own id only)".to_string(),
                    (false, _) => String::new(),
                }
            );
        }
    }
    let nocapture = args.nocapture;
    // Like libtest: the output of a passing test is shown only with --show-output.
    let show_output = args.show_output;
    let skip = crate::settings::unavailable_skip();
    // With NSTEST_UNAVAILABLE=skip the probe runs first, since its answer decides what is
    // listed as ignored (nextest asks `--list` before it runs anything). Otherwise it runs only
    // when a test's container cannot be made, to say why (see `explained`): a process that
    // runs one test (nextest runs each in its own) does not pay for a container more.
    let unavailable = if skip {
        parent::probe::check().as_ref().err().map(String::as_str)
    } else {
        None
    };
    if let (Some(reason), false) = (unavailable, args.list) {
        eprintln!("nstest: every test is skipped (NSTEST_UNAVAILABLE=skip): {reason}");
    }
    // An ignored test with a reason, in a run that does not run ignored tests, is reported
    // ignored with its reason (libtest-mimic only shows a reason given at run time), in
    // libtest's words through the relay. A run that skips what it cannot bound may give one
    // at run time too.
    let runs_ignored = args.ignored || args.include_ignored;
    // (Not for one test without a reason, as nextest runs every test: no thread for nothing.)
    let chosen = |name: &str| !args.exact || args.filter.as_deref().map_or(true, |f| f == name);
    let reasons = skip
        || (!runs_ignored
            && tests
                .iter()
                .any(|(name, d)| d.ignore_reason.is_some() && chosen(name)));
    let relay = relay::Relay::start(&mut args, reasons).map(Arc::new);
    let trials = tests
        .into_iter()
        .map(|(name, desc)| match (unavailable, desc.ignore_reason) {
            (None, Some(reason)) if !runs_ignored => {
                Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
            }
            (None, _) => {
                let relay = relay.clone();
                Trial::ignorable_test(name, move || {
                    // The test's own output (`--nocapture`) after its `test name ... `.
                    if let Some(relay) = &relay {
                        relay.drain();
                    }
                    match run_desc(desc, !nocapture, &[]) {
                        Ok(output) => {
                            if show_output {
                                print_output(output);
                            }
                            Ok(Completion::Completed)
                        }
                        // A limit that cannot be applied here: skipped like the whole run would be.
                        Err(f) if f.unavailable && skip => Ok(Completion::ignored_with(f.message)),
                        Err(f) => Err(Failed::from(explained(f))),
                    }
                })
                .with_ignored_flag(desc.ignore)
            }
            (Some(reason), _) => {
                Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
                    .with_ignored_flag(true)
            }
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(relay) = relay {
        relay.finish();
    }
    conclusion.exit()
}

/// What the `#[test]` wrapper of a `#[nstest::test]` calls in an ordinary libtest target: runs
/// the test in its container and prints its output (libtest captures it as usual). If it failed,
/// it prints the reason too and unwinds without a panic message of its own, so that the test's
/// own panic (printed inside the container) is the first and only one the user reads.
pub fn run_in_libtest(desc: &'static TestDesc) {
    let name = desc.name();
    // The child never reaches libtest's main (nstest enters the container before it); were it
    // to, these make it run this one test and nothing else. (Re-executed children only: the
    // fork server's clones keep its argv.)
    let args = [
        "--exact",
        name.as_str(),
        "--nocapture",
        "--include-ignored",
        "--test-threads=1",
    ];
    match run_desc(desc, true, &args) {
        Ok(output) => print_output(output),
        Err(failure) => {
            println!("{}", explained(failure));
            std::panic::resume_unwind(Box::new(TestFailed))
        }
    }
}

/// What a failed test reports. When nstest could not make its container and no container of
/// this process has been made yet, the probe (one container over `builtin:host`, run once per
/// process, on the first such failure) tells whether containers can be made here at all; if
/// not, its one line naming the cause and the fix replaces the test's own error, and the run is
/// told once.
fn explained(failure: Failure) -> String {
    if failure.setup && !parent::probe::one_was_made() {
        if let Err(reason) = parent::probe::check() {
            static TOLD: std::sync::Once = std::sync::Once::new();
            TOLD.call_once(|| eprintln!("nstest: every test fails: {reason}"));
            return reason.clone();
        }
    }
    failure.message
}

/// The unwind payload of a failed test in a libtest target (libtest reports it as failed; no
/// panic hook runs for it).
#[derive(Debug)]
struct TestFailed;

fn print_output(output: String) {
    if !output.is_empty() {
        print!("{output}");
    }
}
