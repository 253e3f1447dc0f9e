//! The `Container` API outside a test: the `container_api` example, and the `run` example
//! (nstest's `docker run`) built on it.

use std::process::Command;

use crate::host::{serial, HostGuard};
use crate::runs::{e2e_cache, fixture, succeeded};

#[test]
fn the_container_api_runs_commands_as_pid_one() {
    let lock = serial();
    let exe = fixture().parent().unwrap().join("container_api");
    let _host = HostGuard::state_only(&lock);
    let text = succeeded(Command::new(exe).env_remove("NSTEST_FORK_SERVER"));
    let expect = [
        "output.stdout: \"api-box\\n1\\n\"",
        "output.stderr: \"oops\\n\"",
        "output.code: Some(3)",
        "output.fork_server_running: false",
        "status.success: true",
        "timeout.error: timed out after 300ms",
        "timeout.fast: true",
        "missing.error: container setup failed at step Exec: execvp(\"no-such-command\") => ENOENT",
        "hostname.error: invalid hostname \"bad_name\"",
        "net.Host.same_as_host: true",
        "bind.stdout: \"/work/dir\\nhi\\n\"",
        "bind.rw_reached_host: true",
        "net.Loopback.same_as_host: false",
        "big_env.length: 40000",
        "big_env.fork_server_running: true",
    ];
    for line in expect {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

#[test]
fn the_run_example_takes_rootfs_hostname_bind_net_env_and_workdir() {
    let lock = serial();
    let exe = fixture().parent().unwrap().join("run");
    let cache = e2e_cache();
    let _host = HostGuard::state_only(&lock);
    let script = "hostname; pwd; echo $A; cat /srv/os-release | grep -c ^ID=; ls /sys/class/net | wc -l; echo pid $$";
    let mut cmd = Command::new(&exe);
    cmd.args([
        "--rootfs",
        "builtin:busybox",
        "--hostname",
        "web",
        "--bind",
        "/etc/os-release:/srv/os-release",
    ])
    .args([
        "--net",
        "host",
        "--env",
        "A=b",
        "--workdir",
        "/srv",
        "sh",
        "-c",
        script,
    ]);
    let text = succeeded(&mut cmd);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..4], ["web", "/srv", "b", "1"], "{text}");
    assert!(
        lines[4].trim().parse::<u32>().unwrap() > 1,
        "--net host shows the host's interfaces: {text}"
    );
    assert_eq!(lines[5], "pid 1");
    let out = Command::new(&exe)
        .args(["sh", "-c", "exit 7"])
        .env("NSTEST_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "the command's exit code is the example's"
    );
}
