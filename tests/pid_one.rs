//! PID 1's init duties where a test starts containers of its own: the test's own children —
//! `Container`s, each PID 1 of a namespace nested in the test's — keep their exact exit status
//! while every orphan around them is reaped.

use std::process::Command;

/// The processes of this container other than PID 1 and the nested containers' fork server.
fn others() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.bytes().all(|b| b.is_ascii_digit()).then_some(n)
        })
        .filter(|p| p != "1")
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter(|stat| !stat.contains("(nstest-forksrv)"))
        .collect()
}

#[nstest::test(timeout = "30s")]
fn containers_started_by_a_test_keep_their_status_and_orphans_are_reaped() {
    // Three, so that the second and third are clones of a fork server the test started.
    for code in 3..6 {
        let st = nstest::Container::new("sh")
            .args(["-c", &format!("(sleep 0.05 &); exit {code}")])
            .status()
            .unwrap();
        assert_eq!(st.code(), Some(code));
    }
    for _ in 0..50 {
        Command::new("sh")
            .args(["-c", "(true &)"])
            .status()
            .unwrap();
    }
    let start = std::time::Instant::now();
    while !others().is_empty() && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(others(), Vec::<String>::new(), "every orphan reaped");
}

/// Run by `tests/e2e` (`forkserver::a_passed_tests_leftovers_end_before_its_verdict`): it
/// passes, and leaves behind a process that prints as fast as it can.
#[nstest::test]
#[ignore = "run by tests/e2e, which reads the harness's output"]
// Left behind on purpose: the container's end is what takes it down.
#[allow(clippy::zombie_processes)]
fn passes_and_leaves_a_printer_behind() {
    Command::new("sh")
        .args(["-c", "while :; do echo left-behind; done"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
}

nstest::main!();
