//! End-to-end: run the real nstest test binary `tests/fixtures/e2e-fixture.rs` (built by
//! `cargo test` as the example `e2e-fixture`) and check each reported outcome, the host around
//! every run, and what a killed harness leaves behind. Needs root, like nstest itself.
//!
//! One test target, `cargo test --test e2e`, with a module per topic:
//!
//! - `outcomes`: every outcome for its reason, libtest's flags, JSON output, `NSTEST_TIMEOUT`;
//! - `roots`: other kinds of rootfs, their /etc, and rootfs that try to steer a mount;
//! - `interrupts`: the harness interrupted or killed, inherited fds and signal dispositions;
//! - `forkserver`: who clones the containers, a fork server killed or stopped mid-run;
//! - `debugging`: the rerun line, `NSTEST_KEEP`, `NSTEST_SHELL`;
//! - `unavailable`: no user namespaces, no cgroup delegation, `NSTEST_UNAVAILABLE=skip`;
//! - `container`: the `Container` API and the `run` example;
//! - `load`: the 500 tests of `e2e-load`, round after round;
//! - `network`: several hosts per test (`tests/network.rs`) rootless, their output, what is left;
//! - `rootless`: the suite as an unprivileged user;
//! - `vm`: the limits on a kernel with only cgroup v2, in a VM.
//!
//! `runs` runs the fixture and reads its output; `host` holds the lock that keeps runs apart
//! and checks the host is left clean.

#[path = "../common/mod.rs"]
mod common;
mod host;
mod runs;

mod container;
mod debugging;
mod forkserver;
mod interrupts;
mod load;
mod network;
mod outcomes;
mod rootless;
mod roots;
mod unavailable;
mod vm;
