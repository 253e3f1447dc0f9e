//! # nstest: each test as PID 1 of fresh Linux namespaces, over a throwaway root filesystem
//!
//! ## Quick start
//!
//! ```toml
//! [dev-dependencies]
//! nstest = "0.1"
//!
//! [[test]]
//! name = "system"
//! harness = false
//! ```
//!
//! ```no_run
//! // tests/system.rs
//! #[nstest::test(hostname = "box", timeout = "10s")]
//! fn hostname_is_the_containers() {
//!     assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim(), "box");
//! }
//!
//! #[nstest::test]
//! fn runs_as_pid_one() {
//!     assert_eq!(std::process::id(), 1);
//! }
//!
//! #[nstest::test]
//! #[should_panic(expected = "boom")]
//! fn panics() {
//!     panic!("boom")
//! }
//!
//! nstest::main!();
//! ```
//!
//! `cargo test` (as root) then runs every test in its own container; the usual libtest flags
//! (`--exact`, `--skip`, `--list`, `--ignored`, `--nocapture`, `--test-threads`, …) and
//! `cargo nextest run` work.
//!
//! ## Attribute options
//!
//! - `hostname = "box"`: the container's hostname (default: the function name, made a valid
//!   hostname).
//! - `rootfs = "path"`: a `.tar` (`.tar.gz`, `.tgz`, `.tar.zst`, `.tar.xz`; a `docker save`
//!   archive or an OCI layout packed as a tar is recognised and its image used), a directory,
//!   `oci:dir[:tag]` or `docker-archive:path`, relative to the package's `CARGO_MANIFEST_DIR`;
//!   `docker://[registry/]repo[:tag][@sha256:…]`, an image by name, pulled once into the cache
//!   and kept (`docs/guide.md`); or `builtin:busybox` / `builtin:host`.
//! - `bind = ["host:/container", "…:rw"]`, `env = ["KEY=value"]`, `workdir = "/path"`. The
//!   environment is otherwise clean: `PATH` for the rootfs, `HOME`, `HOSTNAME`; `TERM`,
//!   `RUST_BACKTRACE`, `RUST_LIB_BACKTRACE`, `RUST_MIN_STACK`, `RUST_LOG`, `OUT_DIR` and what
//!   cargo and nextest set for a test run (`CARGO_*`, `NEXTEST*`, not cargo's credentials)
//!   passed through. `/proc/self/environ` shows the same.
//! - `package = false`: the package is not shown. By default, as `cargo test` gives it to a
//!   test, the package directory and the build outputs (the test binary, `CARGO_BIN_EXE_*`)
//!   are there at their own paths, read-only, the test starts in the package root, and
//!   `CARGO_TARGET_TMPDIR` is a private writable tmpfs; over a rootfs without one, the host's
//!   dynamic loader lets the package's binaries start.
//! - `timeout = "500ms" | "10s" | "2m"` (default 60 s, or `NSTEST_TIMEOUT`), set-up included: a
//!   timeout before the container is set up is nstest's error, not the test's failure.
//! - `net = "loopback"` (default: a new network namespace with only `lo`, up) or `net = "host"`
//!   (the host's network, shared).
//! - `memory = "64M"`, `pids = 64`, `cpus = 0.5`: cgroup limits (v2, or v1 on hybrid machines);
//!   a test the OOM killer ends fails with "killed: out of memory (limit 64M)".
//!
//! `#[should_panic]`, `#[should_panic(expected = "…")]`, `#[ignore]`, `#[ignore = "…"]` and
//! `-> Result<(), E>` behave as with `#[test]`. With the `tokio` feature, `async fn` tests run on a runtime built
//! inside the container (`flavor = "current_thread"`, the default, or `"multi_thread"`).
//!
//! ## Environment
//!
//! - `NSTEST_ROOTFS`: the rootfs of every test without a `rootfs` option.
//! - `NSTEST_TIMEOUT`: the default timeout.
//! - `NSTEST_MEMORY`, `NSTEST_PIDS`: default limits for tests without the option.
//! - `NSTEST_OVERLAY=off`: give each container a private copy of the rootfs instead of an overlay.
//! - `NSTEST_CACHE_DIR`: where unpacked rootfs bases are kept (default `$XDG_CACHE_HOME/nstest`
//!   or `~/.cache/nstest`).
//! - `NSTEST_SHELL=1` (with a terminal): a shell inside a failed test's container.
//! - `NSTEST_KEEP=1`: keep a failed test's writes on disk; its failure gives the path.
//! - `NSTEST_ROOTLESS=1`: use a user namespace even as root (it is always used for other uids).
//! - `NSTEST_SUBIDS=off`: rootless, map only your own id even where `/etc/subuid` gives a range.
//! - `NSTEST_UPPER=disk`: each test's writable layer in the cache (on disk), not in memory.
//! - `NSTEST_NETNS_POOL=off`: as root, no pool of network namespaces made ahead of need.
//! - `NSTEST_FORK_SERVER=off`: clone and re-execute the binary for each container, instead of
//!   cloning each from one fork server started once per run (the default, from a process's
//!   second container on; in a process that runs one test, its container is cloned before
//!   `main`).
//! - `NSTEST_PACKAGE=off`: tests without a `package` option do not see their package.
//! - `NSTEST_PULL=always`: an image by name's tag is resolved again at the registry.
//! - `NSTEST_INSECURE_REGISTRIES`: registries (`host:port`, comma-separated) spoken to in plain
//!   HTTP, beside loopback ones.
//! - `NSTEST_UNAVAILABLE=skip`: where containers cannot be made, report the tests as ignored
//!   (with the reason) instead of failed.
//!
//! ## Several hosts in one test
//!
//! [`Network::new`] makes a virtual switch inside the test; [`Container::network`] puts a
//! container on it, [`Container::spawn`] starts it in the background ([`Child`]), and
//! [`Container::from_fn`] makes a host of a plain function of the test binary. Hosts reach each
//! other and the test by hostname; [`Network::partition`] cuts groups of them apart until
//! [`Network::heal`], and [`Network::set_link`] gives one host's link a delay, a loss or a rate
//! ([`LinkFaults`]). See the guide's "Several hosts in one test".
//!
//! ## How it works, in brief
//!
//! For each test the harness `clone(2)`s into new UTS, PID, mount, IPC and network namespaces
//! and re-executes the test binary from `/proc/self/exe` (from a run's second container on, a
//! fork server started once per run clones itself instead). The child, PID 1 of its namespace,
//! makes every mount private, mounts an overlay of the (once unpacked, shared read-only) rootfs
//! with its writable layer on a tmpfs, mounts `/proc`, `/sys` (read-only), `/tmp` and a minimal
//! `/dev`, `pivot_root`s into it, sets the hostname, brings up `lo`, runs the one test, and
//! reports the outcome on a dedicated pipe. See `docs/how-it-works.md`.
//!
//! ## Known limitations
//!
//! - Rootless mode without `/etc/subuid` ranges and `newuidmap` maps one id (the caller's, to
//!   root): files owned by other ids in a tarball all belong to root inside (recorded, see
//!   `docs/privileges.md`).
//! - Rootless on Linux before 6.6 (tmpfs without `user.*` xattrs): each test's writable layer is
//!   on disk in the cache (a private copy of the rootfs if the cache's filesystem has no user
//!   xattrs either).
//! - Linux only (x86_64 and aarch64: the raw `clone` call assumes their argument order).
//! - The test runs in PID 1, on a thread named after it (its tid is 2; its first child is
//!   PID 3), while PID 1's main thread reaps every orphan. For that, `SIGCHLD` has a handler
//!   (`SA_RESTART`): as in any process with one, a blocking call that `SA_RESTART` does not
//!   restart (`poll`, `nanosleep`) may return `EINTR` when one of the test's children ends. A
//!   test that replaces the handler keeps its orphans reaped, within 50 ms.
//! - The container child enters before Rust's `main`, so Rust's runtime set-up never ran there:
//!   nstest arms its stack-overflow message for the test's thread only; a thread the test
//!   starts that overflows its stack dies of SIGSEGV without the message.
//! - From a process's second container on, each container is a clone of the fork server,
//!   started at that second container: its argv is `argv[0]` alone, and its umask, resource
//!   limits and inherited stdio are the harness's when the server started. A process started to
//!   run one isolated test (`<binary> <name> --exact`, as nextest runs each) clones that test's
//!   container before `main` (as root, for a test with a network namespace of its own; else it
//!   forks its server then, and the server clones it): that test sees the harness's argv, as
//!   an in-process test does, and its container is set up while the harness starts. A program
//!   that has
//!   run two [`Container`]s keeps the server (`nstest-forksrv`, idle, about 3 MB) until it
//!   exits. The server is used with glibc only (its clones need glibc's thread id rewritten,
//!   as glibc's fork does). While it was opt-in, the cgroup-v2 VM test hung with it in 2 of 6
//!   runs, and not in the 126 runs since; the cause was not found. A server that dies or stops
//!   answering now costs no test: the harness waits 10 s at most, says so once, and clones the
//!   containers itself from then on. `NSTEST_FORK_SERVER=off` turns it off.
//! - After a timeout's SIGKILL the harness waits for the container's PID 1 to end without a
//!   limit: a container that SIGKILL cannot end (a task stuck in the kernel, e.g. frozen by a
//!   cgroup v1 freezer) keeps its test's thread waiting.
//! - A harness started with SIGCHLD ignored (inherited across exec) has it set back to the
//!   default action when it starts a container: nstest needs the exit status of its containers
//!   and helpers, which the kernel drops while SIGCHLD is ignored. Code in the same process
//!   that counted on the kernel reaping its own children has to reap them.
//! - In-container backtraces are symbolized only where the package is shown (the default; not
//!   with `package = false`), since the binary must be readable at its own path.
//! - In `harness = false` targets, an ignore reason reads as libtest prints it (`ignored,
//!   reason`) in libtest's pretty format only: libtest-mimic's JSON drops it and its terse
//!   format has no room for it. A run given `--logfile` keeps libtest-mimic's own form,
//!   `ignored (reason)`, in that file.
//! - cgroup v2 limits need a cgroup the harness may write whose controllers reach its children
//!   (as root: the slice above the session scope; rootless: a delegated subtree), else the
//!   limited test fails saying so (v1 is used on hybrid machines).
//! - Only the first and last MiB of a test's captured output are kept.
//! - A container from [`Container::spawn`] is killed when the thread that spawned it ends (its
//!   parent-death signal follows that thread): spawn hosts from the test's own thread, or one
//!   that outlives them. A host re-executes the test binary inside its container: over a root
//!   without the binary's C library it needs the host's loader, which the package view gives.
//! - Inside a test, a `Container` given a rootfs of its own (`.rootfs(...)`) prepares it in the
//!   test's own cache (its `/root/.cache`, on the test's tmpfs): once per test, not once per
//!   machine. By default it inherits the test's, already prepared (one read-only bind per
//!   test shows it).
//! - Isolation protects the host from a test's accidents and mistakes; root code in a test that
//!   sets out to escape is not contained without a user namespace.

#![warn(missing_docs)]
// `unsafe` lives in `sys` only (each block with a `// SAFETY:` comment).
#![deny(unsafe_code)]
// The examples of `init` and `Container` show `main` on purpose: that is where `init` goes.
#![allow(clippy::needless_doctest_main)]

// Generated code says `::nstest::…`; this makes it resolve inside nstest's own unit tests too.
extern crate self as nstest;

mod cgroup;
mod child;
mod container;
mod entry;
mod error;
mod harness;
mod idmap;
mod network;
mod parent;
mod protocol;
mod reexec;
mod registry;
pub mod rootfs;
mod runner;
mod settings;
mod spawned;
pub mod spec;
#[allow(unsafe_code)]
mod sys;

pub use cgroup::CgroupError;
pub use container::{Container, Stdio};
pub use error::Error;
pub use idmap::{IdMapError, IdMapStep};
pub use network::{hostname, LinkFaults, Network, NetworkError};
pub use nstest_macros::test;
pub use protocol::{ProtocolError, Step};
pub use spawned::Child;
pub use spec::Net;
pub use sys::SysError;

/// Enters nstest if this process is a container child (then it never returns); otherwise
/// returns at once.
///
/// ```no_run
/// fn main() {
///     nstest::init();
///     let status = nstest::Container::new("hostname").status().unwrap();
///     assert!(status.success());
/// }
/// ```
/// nstest does this itself before `main` in every binary that links it, so a
/// call is only a belt-and-braces first line of `main`.
pub fn init() {
    entry::dispatch();
}

/// The whole `main` of a `harness = false` test target: `nstest::main!();` at the end of the file.
#[macro_export]
macro_rules! main {
    () => {
        fn main() {
            $crate::__private::harness_main()
        }
    };
}

/// `#[nstest::test]` in the crate's own unit tests: the standard libtest harness, side by side
/// with plain `#[test]`s. (The attribute registers each test in a `link_section` static, as
/// linkme does, which `unsafe_code` counts.)
#[cfg(test)]
#[allow(unsafe_code)]
mod isolated_unit_tests {
    #[nstest::test(hostname = "unit-box")]
    fn a_unit_test_runs_as_pid_one_of_its_container() {
        assert_eq!(std::process::id(), 1);
        assert_eq!(
            std::fs::read_to_string("/etc/hostname").unwrap(),
            "unit-box\n"
        );
        std::fs::write("/etc/unit-marker", "only here").unwrap();
    }

    #[nstest::test]
    fn another_unit_test_never_sees_its_writes() {
        assert!(!std::path::Path::new("/etc/unit-marker").exists());
    }

    #[test]
    fn a_plain_unit_test_stays_in_process() {
        assert_ne!(std::process::id(), 1);
    }
}

#[doc(hidden)]
pub mod __private {
    pub use crate::harness::{main as harness_main, run_in_libtest};

    /// Runs a registered test in its container with output captured and dropped; for the
    /// overhead benchmark. `Err` holds the output and the reason.
    pub fn run_isolated(desc: &'static TestDesc) -> Result<(), String> {
        crate::runner::run_desc(desc, true, &[])
            .map(drop)
            .map_err(|f| f.message)
    }
    pub use crate::registry::{ShouldPanic, TestDesc, TestResult, TESTS};
    pub use linkme;

    /// The runtime of an `async fn` test.
    #[derive(Clone, Copy, Debug)]
    pub enum Flavor {
        /// `flavor = "current_thread"` (the default).
        CurrentThread,
        /// `flavor = "multi_thread"`.
        MultiThread,
    }

    /// Runs an `async fn` test's body on a runtime built here, inside the container.
    #[cfg(feature = "tokio")]
    pub fn block_on<T, F: std::future::Future<Output = T>>(flavor: Flavor, fut: F) -> T {
        let mut builder = match flavor {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
        };
        builder
            .enable_all()
            .build()
            .expect("nstest: cannot build the tokio runtime")
            .block_on(fut)
    }
}
