//! The `Container` API end to end: `output()`, `status()`, a timeout, a missing command, a
//! spec too big for the fork server.
//! Prints one `key: value` line per check; `tests/e2e/` runs it and reads them.

use std::time::{Duration, Instant};

use nstest::{Container, Error};

fn main() {
    nstest::init();

    let out = Container::new("sh")
        .args(["-c", "hostname; echo $$; echo oops >&2; exit 3"])
        .hostname("api-box")
        .output()
        .unwrap();
    println!("output.stdout: {:?}", String::from_utf8_lossy(&out.stdout));
    println!("output.stderr: {:?}", String::from_utf8_lossy(&out.stderr));
    println!("output.code: {:?}", out.status.code());
    // A process's first container is cloned by the harness: no fork server for it alone.
    println!("output.fork_server_running: {}", fork_server_running());

    let status = Container::new("true")
        .stdout(nstest::Stdio::Null)
        .status()
        .unwrap();
    println!("status.success: {}", status.success());

    let start = Instant::now();
    let err = Container::new("sleep")
        .arg("600")
        .timeout(Duration::from_millis(300))
        .output()
        .unwrap_err();
    println!("timeout.error: {err}");
    println!(
        "timeout.fast: {}",
        start.elapsed() < Duration::from_secs(10)
    );

    match Container::new("no-such-command").output() {
        Err(e @ Error::Setup { .. }) => println!("missing.error: {e}"),
        other => println!("missing.error: unexpected {other:?}"),
    }

    let host_netns = std::fs::read_link("/proc/self/ns/net").unwrap();
    for net in [nstest::Net::Host, nstest::Net::Loopback] {
        let out = Container::new("readlink")
            .arg("/proc/self/ns/net")
            .net(net)
            .output()
            .unwrap();
        let inside = String::from_utf8_lossy(&out.stdout).trim().to_string();
        println!(
            "net.{net:?}.same_as_host: {}",
            inside == host_netns.to_str().unwrap()
        );
    }

    // A writable bind, an environment variable, a working directory.
    let shared = std::env::temp_dir().join(format!("nstest-api-{}", std::process::id()));
    std::fs::create_dir_all(&shared).unwrap();
    let out = Container::new("sh")
        .args([
            "-c",
            "pwd; echo \"$GREETING\"; echo written > /shared/from-container",
        ])
        .bind(format!("{}:/shared:rw", shared.display()))
        .env("GREETING", "hi")
        .workdir("/work/dir")
        .output()
        .unwrap();
    println!("bind.stdout: {:?}", String::from_utf8_lossy(&out.stdout));
    let written = std::fs::read_to_string(shared.join("from-container")).unwrap_or_default();
    println!("bind.rw_reached_host: {}", written == "written\n");
    std::fs::remove_dir_all(&shared).unwrap();

    match Container::new("true").hostname("bad_name").output() {
        Err(e) => println!("hostname.error: {e}"),
        Ok(o) => println!("hostname.error: unexpected {o:?}"),
    }

    // 40 000 bytes of environment: over the fork server's 64 KiB request once hex-encoded, so
    // this container is cloned and re-executed here instead; the server stays for the others.
    let out = Container::new("sh")
        .args(["-c", "echo ${#BIG}"])
        .env("BIG", "x".repeat(40_000))
        .output()
        .unwrap();
    println!(
        "big_env.length: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    println!("big_env.fork_server_running: {}", fork_server_running());
}

/// Whether one of this process's children is nstest's fork server (it names itself).
fn fork_server_running() -> bool {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .any(|kid| {
            std::fs::read_to_string(format!("/proc/{kid}/comm"))
                .is_ok_and(|c| c.trim() == "nstest-forksrv")
        })
}
