//! The daemon's whole life — start, pidfile, reload, stop, a stubborn daemon killed — in a
//! container each: its pids are small and its own, and nothing outlives the test.

use std::path::Path;
use std::time::Duration;

use service_manager::Service;

/// A small daemon in shell: writes its pidfile, logs a reload on SIGHUP, and on SIGTERM removes
/// its pidfile and exits (unless told to ignore SIGTERM).
fn daemon(name: &str, stubborn: bool) -> Service {
    let pidfile = format!("/run/{name}.pid");
    let log = format!("/var/log/{name}.log");
    let on_term = if stubborn {
        "echo ignoring-term >> $LOG".to_string()
    } else {
        "rm -f $PIDFILE; exit 0".to_string()
    };
    let script = format!(
        "PIDFILE={pidfile}; LOG={log}; trap 'echo reloaded >> $LOG' HUP; trap '{on_term}' TERM; \
         echo $$ > $PIDFILE; echo started >> $LOG; while :; do sleep 1 & wait; done"
    );
    std::fs::create_dir_all("/var/log").unwrap();
    let path = format!("/usr/local/bin/{name}");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    Service {
        // Detached: setsid, in the background, its output away.
        command: vec![
            "sh".into(),
            "-c".into(),
            format!("setsid {path} >/dev/null 2>&1 &"),
        ],
        pidfile: pidfile.into(),
    }
}

fn log(name: &str) -> String {
    std::fs::read_to_string(format!("/var/log/{name}.log")).unwrap_or_default()
}

#[nstest::test(timeout = "20s")]
fn starts_reloads_and_stops_a_daemon() {
    let svc = daemon("webd", false);
    let pid = svc.start(Duration::from_secs(5)).unwrap();
    assert!(
        pid.as_raw() < 100,
        "a pid of the container's own PID namespace: {pid}"
    );
    assert_eq!(svc.pid().unwrap(), Some(pid));
    assert!(
        svc.start(Duration::from_secs(1)).is_err(),
        "a second start is refused"
    );

    svc.reload().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(log("webd").contains("reloaded"), "{}", log("webd"));

    svc.stop(Duration::from_secs(5)).unwrap();
    assert!(!Path::new("/run/webd.pid").exists());
    assert_eq!(svc.pid().unwrap(), None);
}

#[nstest::test(timeout = "20s")]
fn a_daemon_that_ignores_sigterm_is_killed() {
    let svc = daemon("stubbornd", true);
    let pid = svc.start(Duration::from_secs(5)).unwrap();
    svc.stop(Duration::from_millis(1500)).unwrap();
    assert!(
        nix::sys::signal::kill(pid, None).is_err(),
        "gone after SIGKILL"
    );
    assert!(
        log("stubbornd").contains("ignoring-term"),
        "{}",
        log("stubbornd")
    );
}

#[nstest::test]
fn no_daemon_from_another_test_is_here() {
    assert!(!Path::new("/run/webd.pid").exists());
    let procs = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .parse::<u32>()
                .is_ok()
        })
        .count();
    assert_eq!(procs, 1, "only this test");
}

#[nstest::test(timeout = "20s")]
fn a_garbage_pidfile_is_an_error_not_a_kill() {
    std::fs::write("/run/garbage.pid", "not a pid\n").unwrap();
    let svc = Service {
        command: vec!["true".into()],
        pidfile: "/run/garbage.pid".into(),
    };
    assert!(svc.pid().is_err());
    assert!(svc.stop(Duration::from_secs(1)).is_err());
}

nstest::main!();
