//! The container side: PID 1 of its new namespaces, a clone of the fork server or a re-executed
//! binary.
//!
//! `entry` dispatches here before `main`: the fork server serves ([`serve_fork_requests`]) and
//! its clones enter the container side with their spec; a re-executed container child enters it
//! too ([`enter`]): sets the container up, says so on the report fd, runs the one test (or execs
//! the command), reports the outcome and exits. Neither returns.

mod ahead;
mod copy;
mod forkserver;
mod init;
mod root;
mod run;
mod setup;

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;

use crate::protocol::{ChildSpec, Message, RunSpec, Step};
use crate::reexec::{CONTAINER_ENV, REPORT_FD};
use crate::sys;

/// Where a test over a directory base shows it, read-only, to the containers it starts (in
/// nstest's own `/dev` tmpfs: no write to the rootfs).
pub(crate) const INHERITED_ROOTFS: &str = "/dev/.nstest-rootfs";

static INHERITED: std::sync::OnceLock<crate::spec::RootfsSource> = std::sync::OnceLock::new();

/// The rootfs the containers a test starts get by default: the test's own (its base, as it was
/// before the test wrote anything). `None` outside a test.
pub(crate) fn inherited() -> Option<crate::spec::RootfsSource> {
    INHERITED.get().cloned()
}

/// The report fd, written frame by frame.
struct Reporter(File);

impl Reporter {
    fn send(&mut self, m: &Message) {
        // A parent that went away cannot be told; PID 1's exit then ends the container.
        let _ = self.0.write_all(&m.encode());
    }
}

pub(crate) use ahead::NO_SPEC;

/// The container of a process that runs one test, cloned before `main` (`parent::prefork`):
/// never returns.
pub(crate) fn run_ahead(cpus: Option<nix::sched::CpuSet>) -> ! {
    ahead::run(cpus)
}

/// The fork server (`entry` dispatches here): never returns. `preforked`: forked before `main`
/// (`parent::prefork`), not re-executed.
pub(crate) fn serve_fork_requests(preforked: bool) -> ! {
    forkserver::serve(!preforked)
}

/// The container side, for the spec `hex` (from `reexec::CONTAINER_ENV`, or from the fork
/// server).
pub(crate) fn enter(hex: &std::ffi::OsStr) -> ! {
    let mut reporter = reporter();
    let spec = match hex.to_str().map(ChildSpec::decode) {
        Some(Ok(spec)) => spec,
        _ => fail(
            &mut reporter,
            Step::ReadSpec,
            format!("decode {CONTAINER_ENV}"),
            libc::EINVAL,
        ),
    };
    let set_up = set_up(spec, &mut |m| reporter.send(&m));
    go_on(set_up, reporter)
}

/// A container set up, or the step where that failed, before it runs anything.
struct SetUp {
    spec: ChildSpec,
    /// The test and its thread, started before the set-up and waiting for the go.
    test: Option<(&'static crate::registry::TestDesc, init::TestThread)>,
    /// The step that failed (said already): the container ends.
    failed: Option<Step>,
}

/// The container side up to its wait for the go: the test's thread started, the root set up.
/// `tell` receives what the harness is to hear (notes, a copied rootfs, a failure).
fn set_up(spec: ChildSpec, tell: &mut dyn FnMut(Message)) -> SetUp {
    let failure = |tell: &mut dyn FnMut(Message), step, detail, errno| {
        tell(Message::SetupFailed {
            step,
            detail,
            errno,
        });
        Some(step)
    };
    // A test's thread is started first, so that its start overlaps the set-up; it waits for
    // the go after it.
    let test = match &spec.run {
        RunSpec::Test(name) => match crate::registry::find(name) {
            Some(desc) => Some((
                desc,
                init::TestThread::spawn(desc, name, spec.hold_on_failure),
            )),
            None => {
                let detail = format!("no test named {name:?} in this binary");
                let failed = failure(tell, Step::FindTest, detail, libc::ENOENT);
                return SetUp {
                    spec,
                    test: None,
                    failed,
                };
            }
        },
        _ => None,
    };
    let failed = match setup::setup(&spec, &mut |n| tell(Message::Note(n))) {
        Ok(true) => {
            tell(Message::RootfsCopied);
            None
        }
        Ok(false) => None,
        Err(e) => failure(tell, e.step, e.detail, e.errno as i32),
    };
    SetUp { spec, test, failed }
}

/// A container [`set_up`] ahead of its request (`ahead`), its report fd in place now:
/// tells what it has to tell, then goes on as [`enter`] does.
fn enter_set_up(set_up: SetUp, told: Vec<Message>) -> ! {
    let mut reporter = reporter();
    for m in &told {
        reporter.send(m);
    }
    go_on(set_up, reporter)
}

/// A container that cannot go on, its report fd in place: says why and ends.
fn refuse(step: Step, detail: String, errno: i32) -> ! {
    fail(&mut reporter(), step, detail, errno)
}

/// The report fd's writer, the process named after the test binary, and a `SIGABRT` reported
/// on the report fd: the start of the container side once its fds are in place.
fn reporter() -> Reporter {
    let _ = sys::set_cloexec(REPORT_FD);
    name_after_the_binary();
    let reporter = Reporter(sys::report_file(REPORT_FD));
    let mut header = [0u8; 10];
    header.copy_from_slice(&crate::protocol::fatal_signal_frame(0)[..10]);
    let _ = sys::report_sigabrt(REPORT_FD, header);
    reporter
}

/// The container side after its set-up: waits for the go when held, then runs.
fn go_on(set_up: SetUp, mut reporter: Reporter) -> ! {
    let SetUp { spec, test, failed } = set_up;
    if let Some(step) = failed {
        sys::exit_now(exit_code(step))
    }
    if spec.held_before_run && !released() {
        sys::exit_now(1); // the harness never learnt of this container: nothing runs
    }
    if !spec.host_net {
        // A network namespace of its own: `Network::new` may make its switch here.
        crate::reexec::mark_inside();
    }
    if spec.expose_base {
        let _ = INHERITED.set(match &spec.base {
            crate::protocol::BaseSpec::Lower(_) => {
                crate::spec::RootfsSource::Dir(INHERITED_ROOTFS.into())
            }
            crate::protocol::BaseSpec::Host => crate::spec::RootfsSource::Host,
        });
    }
    clean_env(&spec);
    match spec.run {
        RunSpec::Test(_) => {
            let (desc, thread) = test.expect("found before the set-up");
            // Its own session and process group, as an init has (both 1), not the harness's.
            let _ = sys::setsid();
            reporter.send(&Message::SetupDone);
            init::run_test(desc, thread, reporter, spec.hold_on_failure)
        }
        RunSpec::Probe => {
            reporter.send(&Message::SetupDone);
            sys::exit_now(0)
        }
        RunSpec::Function(offset) => {
            let _ = sys::setsid();
            reporter.send(&Message::SetupDone);
            drop(reporter);
            let Some(f) = sys::fn_at(offset) else {
                eprintln!("nstest: Container::from_fn: no function of this executable there");
                sys::exit_now(127)
            };
            // As a Rust program's `main` ends: a panic is printed by the hook and exits 101.
            let ended = std::panic::catch_unwind(f);
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            sys::exit_now(if ended.is_ok() { 0 } else { 101 })
        }
        RunSpec::Command(argv) => {
            reporter.send(&Message::SetupDone);
            let err = std::process::Command::new(&argv[0]).args(&argv[1..]).exec();
            let errno = err.raw_os_error().unwrap_or(libc::ENOEXEC);
            fail(
                &mut reporter,
                Step::Exec,
                format!("execvp({:?})", argv[0]),
                errno,
            )
        }
    }
}

/// Whether the harness let this container go on (a byte on the hold pipe); `false` when the
/// pipe closed without one. The pipe is closed either way.
fn released() -> bool {
    let Some(hold) = sys::inherited_fd(crate::reexec::HOLD_FD) else {
        return false;
    };
    let mut byte = [0u8; 1];
    std::fs::File::from(hold).read_exact(&mut byte).is_ok()
}

/// The variables passed through from the harness into the otherwise clean environment.
const PASS_THROUGH: [&str; 6] = [
    "TERM",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "RUST_MIN_STACK",
    "RUST_LOG",
    "OUT_DIR",
];

/// Whether the harness's variable `key` goes into the container: the pass-through variables,
/// and what cargo and nextest set for a test run (`CARGO`, `CARGO_MANIFEST_DIR`, `CARGO_PKG_*`,
/// `CARGO_BIN_EXE_*`, …, `NEXTEST*`), but none of cargo's credentials or network settings.
fn passed_through(key: &str) -> bool {
    // The first byte first: this runs for each of the harness's variables in every container,
    // in the user's unoptimised build, and turns most of them away here.
    if !matches!(
        key.as_bytes().first(),
        Some(b'C' | b'N' | b'O' | b'R' | b'T')
    ) {
        return false;
    }
    if PASS_THROUGH.contains(&key) || key == "CARGO" || key.starts_with("NEXTEST") {
        return true;
    }
    let Some(rest) = key.strip_prefix("CARGO_") else {
        return false;
    };
    let secret = ["TOKEN", "CREDENTIAL", "SECRET", "PASSWORD"]
        .iter()
        .any(|w| rest.contains(w));
    let config = ["REGISTRY", "REGISTRIES_", "HTTP_", "NET_", "SOURCE_"]
        .iter()
        .any(|p| rest.starts_with(p));
    !secret && !config
}

/// A clean environment: `PATH` for the rootfs, `HOME`, `HOSTNAME`, the variables
/// [`passed_through`] and the test's own `env`; the kernel's record of it (`/proc/self/environ`)
/// says the same, not what the harness had. Runs while the process is still single-threaded.
fn clean_env(spec: &ChildSpec) {
    // What `set_var` one by one would leave: a variable set again keeps its place.
    fn put<'a>(vars: &mut Vec<(&'a [u8], &'a [u8])>, key: &'a [u8], value: &'a [u8]) {
        match vars.iter_mut().find(|(k, _)| *k == key) {
            Some(var) => var.1 = value,
            None => vars.push((key, value)),
        }
    }
    let mut vars = Vec::with_capacity(64);
    put(&mut vars, b"PATH", crate::spec::CONTAINER_PATH.as_bytes());
    put(&mut vars, b"HOME", b"/root");
    put(&mut vars, b"HOSTNAME", spec.hostname.as_bytes());
    for entry in sys::env_entries() {
        // As `std::env::vars_os` reads it: the name ends at the first `=` after its first byte.
        let Some(eq) = entry
            .get(1..)
            .and_then(|e| e.iter().position(|b| *b == b'='))
        else {
            continue;
        };
        let (key, value) = (&entry[..eq + 1], &entry[eq + 2..]);
        // None of the three above is passed through, and the harness has each variable once:
        // no search for one set already.
        if std::str::from_utf8(key).is_ok_and(passed_through) {
            vars.push((key, value));
        }
    }
    for (k, v) in &spec.env {
        put(&mut vars, k.as_bytes(), v.as_bytes());
    }
    let mut region = Vec::with_capacity(vars.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (k, v) in vars {
        region.extend_from_slice(k);
        region.push(b'=');
        region.extend_from_slice(v);
        region.push(0);
    }
    // Without CONFIG_CHECKPOINT_RESTORE the kernel keeps the harness's: said in the docs.
    let _ = sys::replace_env(region);
}

fn fail(reporter: &mut Reporter, step: Step, detail: String, errno: i32) -> ! {
    reporter.send(&Message::SetupFailed {
        step,
        detail,
        errno,
    });
    sys::exit_now(exit_code(step))
}

/// A container's exit status when `step` failed: 127 for the command's `execve`, as a shell
/// says a command could not run; 125 for the set-up.
fn exit_code(step: Step) -> i32 {
    if step == Step::Exec {
        127
    } else {
        125
    }
}

/// Re-executed from `/proc/self/exe`, the process would be called `exe`: it takes the test
/// binary's file name again (from argv[0], which the parent passes on), as `ps` shows it outside.
fn name_after_the_binary() {
    use std::os::unix::ffi::OsStrExt;
    if let Some(name) = std::env::args_os()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
    {
        let _ = sys::set_name(name.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::{passed_through, PASS_THROUGH};

    #[test]
    fn what_cargo_and_nextest_set_passes_through_and_credentials_do_not() {
        for key in PASS_THROUGH
            .into_iter()
            .chain([
                "CARGO",
                "CARGO_MANIFEST_DIR",
                "CARGO_PKG_NAME",
                "CARGO_BIN_EXE_app",
            ])
            .chain(["NEXTEST", "NEXTEST_RUN_ID", "CARGO_TARGET_TMPDIR"])
        {
            assert!(passed_through(key), "{key}");
        }
        for key in [
            "CARGO_REGISTRY_TOKEN",
            "CARGO_REGISTRIES_MINE_TOKEN",
            "CARGO_REGISTRIES_MINE_CREDENTIAL_PROVIDER",
            "CARGO_HTTP_PROXY",
            "CARGO_NET_OFFLINE",
            "CARGO_SOURCE_CRATES_IO_REPLACE_WITH",
            "CARGO_MY_SECRET",
            "CARGO_DB_PASSWORD",
            "AWS_SECRET_ACCESS_KEY",
            "SSH_AUTH_SOCK",
            "",
        ] {
            assert!(!passed_through(key), "{key}");
        }
        // The container sets these itself, and takes none of them from the harness.
        for key in ["PATH", "HOME", "HOSTNAME"] {
            assert!(!passed_through(key), "{key}");
        }
    }
}
