//! The fork server: who clones the containers, a server killed or stopped mid-run, and every
//! outcome the same without it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::host::{serial, wait_until, HostGuard};
use crate::load::load_command;
use crate::outcomes::check_every_outcome;
use crate::runs::{
    e2e_cache, fixture, in_dirs, run_fixture, run_fixture_in, scratch, succeeded, Run, AS_NOBODY,
};

/// The pids and names of `pid`'s children.
fn children_of(pid: u32) -> Vec<(u32, String)> {
    let mut kids = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for kid in list
            .split_whitespace()
            .filter_map(|k| k.parse::<u32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{kid}/comm")).unwrap_or_default();
            kids.push((kid, comm.trim().to_string()));
        }
    }
    kids
}

#[test]
fn containers_are_cloned_by_one_fork_server_as_the_harness_children() {
    // By default a run's containers, from its second on, are cloned by one fork server with
    // CLONE_PARENT: they are the harness's own children and the server keeps none. With
    // NSTEST_FORK_SERVER=0 (as `off`: the switches take both) there is no server. Both runs
    // sample the harness's children.
    let _serial = serial();
    let cache = e2e_cache();
    for server in [true, false] {
        let tmp = scratch("forksrv-tree-tmp");
        let mut cmd = load_command("2", &cache, &tmp);
        cmd.arg("-q").stdout(Stdio::null()).stderr(Stdio::null());
        cmd.env("NSTEST_FORK_SERVER", if server { "on" } else { "0" });
        let mut child = cmd.spawn().unwrap();
        let depth = |pid: u32| {
            ns_depth(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default())
        };
        let harness = depth(child.id()).unwrap();
        let (mut servers, mut containers, mut theirs) =
            (BTreeSet::new(), BTreeSet::new(), Vec::new());
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            for (pid, comm) in children_of(child.id()) {
                // A container is PID 1 of a PID namespace of its own (just cloned, it still has
                // the server's name); the server is in the harness's.
                match depth(pid) {
                    Some(d) if d == harness + 1 => {
                        containers.insert(pid);
                    }
                    Some(d) if d == harness && comm == "nstest-forksrv" => {
                        servers.insert(pid);
                        theirs.extend(children_of(pid));
                    }
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        assert!(status.success());
        // The first is the harness's own clone either way; with the server, the others are its.
        assert!(
            containers.len() >= 2,
            "containers seen as the harness's children: {containers:?}"
        );
        if server {
            assert_eq!(servers.len(), 1, "one fork server per run: {servers:?}");
            assert!(
                theirs.is_empty(),
                "the server keeps no children: {theirs:?}"
            );
        } else {
            assert!(servers.is_empty(), "NSTEST_FORK_SERVER=0: {servers:?}");
        }
        wait_until(
            "the fork server to end with the harness",
            Duration::from_secs(5),
            || {
                servers
                    .iter()
                    .all(|s| !Path::new(&format!("/proc/{s}")).exists())
            },
        );
    }
}

#[test]
fn a_fork_server_killed_mid_run_costs_no_test() {
    fork_server_signalled_mid_run(nix::sys::signal::Signal::SIGKILL, "forksrv-kill-tmp");
}

#[test]
fn a_fork_server_stopped_mid_run_costs_no_test() {
    // Alive but silent (as under a debugger, or stuck): the harness waits for its answer 10 s at
    // most, then kills it and clones by itself, the held request's test included.
    let text = fork_server_signalled_mid_run(nix::sys::signal::Signal::SIGSTOP, "forksrv-stop-tmp");
    assert!(text.contains("none within 10s"), "{text}");
}

/// Runs the 500 tests of `e2e-load` on 2 threads, sends their fork server `sig` 100 ms in,
/// and checks that the run still ends, within a minute, with every test passed (the test whose
/// request the server held is started again without it), the run told once, and the host
/// clean. Returns the output.
fn fork_server_signalled_mid_run(sig: nix::sys::signal::Signal, tmp_name: &str) -> String {
    let (_host, tmp, cache) = HostGuard::for_run(tmp_name);
    let child = load_command("2", &cache, &tmp)
        .env_remove("NSTEST_FORK_SERVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let harness = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut server = None;
    wait_until("the fork server", Duration::from_secs(20), || {
        server = children_of(child.id())
            .into_iter()
            .find(|(_, comm)| comm == "nstest-forksrv");
        server.is_some()
    });
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.unwrap().0 as i32), sig).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    let Ok(out) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = nix::sys::signal::kill(harness, nix::sys::signal::Signal::SIGKILL);
        panic!("the run did not end within a minute of the fork server's {sig}");
    };
    let run = Run::parse(out);
    let text = run.text();
    let count = |outcome: &str| run.outcomes.values().filter(|o| *o == outcome).count();
    let (passed, failed) = (count("ok"), count("FAILED"));
    assert_eq!((passed, failed), (500, 0), "{text}");
    let note = "nstest: note: the fork server failed";
    assert_eq!(text.matches(note).count(), 1, "{text}");
    text
}

#[test]
fn every_outcome_is_the_same_without_the_fork_server() {
    // NSTEST_FORK_SERVER=off: each container is cloned and re-executed by the harness.
    let env = [("NSTEST_FORK_SERVER", "off")];
    let run = run_fixture("no-fork-server", &["--test-threads", "2"], &env);
    check_every_outcome(&run, false);
    let nobody = run_fixture_in(
        "nobody-no-fork-server",
        AS_NOBODY,
        "e2e-cache-nobody",
        &["--test-threads", "2"],
        &env,
    );
    check_every_outcome(&nobody, true);
}

/// With `--nocapture` (as `cargo test -- --nocapture`, and as nextest runs every test, in a
/// process of its own, where the server is forked before `main`), a test's own output reaches
/// the harness's stdout and stderr whoever cloned its container: the harness's first container,
/// or the fork server's, whose own stdio is `/dev/null`.
#[test]
fn nocapture_output_reaches_the_harness_from_every_container() {
    let run = run_fixture(
        "nocapture-all",
        &["panic", "--nocapture", "--test-threads", "1"],
        &[],
    );
    let text = run.text();
    assert_eq!(run.outcomes.len(), 3, "{text}");
    for test in ["fail_panic", "fail_should_panic_mismatch"] {
        assert!(
            text.contains(&format!("thread '{test}' (2) panicked at")),
            "{test}'s own panic is missing:\n{text}"
        );
    }
    // One test per process, as nextest runs it: the preforked server clones its container.
    let run = run_fixture(
        "nocapture-one",
        &["fail_panic", "--exact", "--nocapture"],
        &[],
    );
    let text = run.text();
    assert!(
        text.contains("thread 'fail_panic' (2) panicked at"),
        "the test's own panic is missing:\n{text}"
    );
}

/// A passing test's container is judged as soon as it has said so and closed its pipes, while
/// the kernel still takes it down (`parent::reap`); yet none outlives its harness: the moment
/// the harness has exited, none of its containers is left, not even as a zombie. In a process
/// that runs one test (whose container was cloned before `main`), one that leaves that test out,
/// and a run of many.
#[test]
fn no_container_outlives_its_harness() {
    let (host, tmp, cache) = HostGuard::for_run("outlive-tmp");
    let runs: [&[&str]; 3] = [
        &["demo_pid_one", "--exact", "--nocapture"],
        // Its container is cloned before `main`, and never used: the run leaves its test out.
        &["demo_pid_one", "--exact", "--skip", "demo_pid_one"],
        &["demo_", "--test-threads", "2"],
    ];
    for args in runs {
        for _ in 0..3 {
            let out = in_dirs(&mut std::process::Command::new(fixture()), &tmp, &cache)
                .args(args)
                .env("RUST_BACKTRACE", "0")
                .output()
                .unwrap();
            let left = fixture_containers();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{args:?}:\n{text}");
            assert!(left.is_empty(), "{args:?}: left behind: {left:?}");
        }
    }
    host.finish();
}

/// A passed test is judged before its container is gone, so whatever the test left running is
/// ended first: nothing of it prints after the test's `ok`.
#[test]
fn a_passed_tests_leftovers_end_before_its_verdict() {
    let (host, tmp, cache) = HostGuard::for_run("leftovers-tmp");
    let test = "passes_and_leaves_a_printer_behind";
    for _ in 0..3 {
        let mut cmd = std::process::Command::new(crate::runs::test_binary("pid_one"));
        let text = succeeded(in_dirs(&mut cmd, &tmp, &cache).args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
        ]));
        let verdict = text.rfind("ok\n").expect(&text);
        assert!(
            text[..verdict].contains("left-behind"),
            "it printed while it ran"
        );
        let after = &text[verdict..];
        assert!(
            !after.contains("left-behind"),
            "printed after its verdict: {after}"
        );
    }
    host.finish();
}

/// A process that runs one test (as `cargo nextest run` runs each) has the test's container
/// cloned before `main` and set up while the harness starts: there, every `demo_` test of the
/// fixture passes as it does in a run of many, the test runs on the harness's CPUs (the
/// container is started on another CPU than the harness's, and takes the harness's back), and
/// it is the container cloned then that runs it (with the harness's arguments), not one the
/// harness made again.
#[test]
fn every_demo_passes_in_a_process_of_its_own() {
    let (host, tmp, cache) = HostGuard::for_run("one-each-tmp");
    let run = |args: &[&str]| {
        succeeded(in_dirs(&mut std::process::Command::new(fixture()), &tmp, &cache).args(args))
    };
    let list = run(&["--list"]);
    let demos: Vec<&str> = list
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .filter(|t| t.starts_with("demo_"))
        .collect();
    assert!(demos.len() > 20, "{list}");
    for test in demos {
        let text = run(&[test, "--exact", "--nocapture"]);
        let ran = text.contains("test result: ok. 1 passed; 0 failed; 0 ignored");
        let ignored = text.contains("test result: ok. 0 passed; 0 failed; 1 ignored");
        assert!(ran || ignored, "{text}");
    }
    let mine = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    let cpus: Vec<String> = (0..nix::sched::CpuSet::count())
        .filter(|&c| mine.is_set(c).unwrap())
        .map(|c| c.to_string())
        .collect();
    let test = "demo_prints_how_it_runs";
    let text = run(&[test, "--exact", "--nocapture"]);
    assert!(
        text.contains(&format!("cpus: {}\n", cpus.join(","))),
        "the harness's CPUs are {cpus:?}:\n{text}"
    );
    // Cloned before `main` (it has the harness's arguments), not made again by the harness.
    assert!(
        text.contains(&format!(
            "args: [\"{test}\", \"--exact\", \"--nocapture\"]\n"
        )),
        "{text}"
    );
    host.finish();
}

/// The fixture's containers on this machine: processes named after it (a container's PID 1 is)
/// in a PID namespace below this one, zombies included.
fn fixture_containers() -> Vec<String> {
    let depth = |status: &str| ns_depth(status).unwrap_or(0);
    let mine = depth(&std::fs::read_to_string("/proc/self/status").unwrap());
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let name = status.lines().next().unwrap_or_default();
        if name.trim_start_matches("Name:").trim() == "e2e-fixture" && depth(&status) > mine {
            let state = status.lines().find(|l| l.starts_with("State:"));
            found.push(format!("{}: {state:?}", e.file_name().to_string_lossy()));
        }
    }
    found
}

/// How many PID namespaces deep a process is, as this test's /proc sees it, from its
/// `/proc/<pid>/status` (`None`: no such line, or no such process).
fn ns_depth(status: &str) -> Option<usize> {
    status.lines().find_map(|l| {
        l.strip_prefix("NSpid:")
            .map(|p| p.split_whitespace().count())
    })
}
