//! nstest's `docker run`: run a command in a fresh container over the default rootfs (or
//! `NSTEST_ROOTFS`), with the terminal passed through.
//!
//! ```text
//! cargo run --example run -- sh -c 'hostname; ps; ls /'
//! cargo run --example run -- /bin/sh        # an interactive shell inside the container
//! cargo run --example run -- --rootfs alpine.tar.gz --hostname web --bind ./site:/srv --net host sh
//! ```
//!
//! Options before the command: `--rootfs <rootfs>` (as the `rootfs` option: a tarball, a
//! directory, `oci:dir[:tag]`, `docker-archive:path`, `builtin:busybox`, `builtin:host`),
//! `--hostname <name>`, `--bind <host:/path[:rw]>` (repeatable), `--net host|loopback`,
//! `--env KEY=value` (repeatable), `--workdir /path`.

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo run --example run -- [--rootfs R] [--hostname H] [--bind host:/path[:rw]]... \\
         [--net host|loopback] [--env K=V]... [--workdir /path] <command> [args...]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    nstest::init();
    let mut args = std::env::args().skip(1).peekable();
    let mut container = None::<nstest::Container>;
    let mut options: Vec<(String, String)> = Vec::new();
    while let Some(a) = args.next() {
        let flag = a.as_str();
        if !flag.starts_with("--") {
            let mut c = nstest::Container::new(&a);
            c.args(args.by_ref());
            container = Some(c);
            break;
        }
        if flag == "--" {
            continue;
        }
        let Some(value) = args.next() else {
            return usage();
        };
        options.push((a, value));
    }
    let Some(mut c) = container else {
        return usage();
    };
    c.hostname("container");
    for (flag, value) in options {
        match flag.as_str() {
            "--rootfs" => c.rootfs(value),
            "--hostname" => c.hostname(value),
            "--bind" => c.bind(value),
            "--net" if value == "host" => c.net(nstest::Net::Host),
            "--net" if value == "loopback" => c.net(nstest::Net::Loopback),
            "--env" => match value.split_once('=') {
                Some((k, v)) => c.env(k, v),
                None => return usage(),
            },
            "--workdir" => c.workdir(value),
            _ => return usage(),
        };
    }
    match c.status() {
        Ok(status) => match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => ExitCode::from(code as u8),
            (None, sig) => {
                eprintln!("run: the command was killed by signal {}", sig.unwrap_or(0));
                ExitCode::from(128 + sig.unwrap_or(0) as u8)
            }
        },
        Err(e) => {
            eprintln!("run: {e}");
            ExitCode::from(125)
        }
    }
}
