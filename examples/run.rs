//! nstest's `docker run`: run a command in a fresh container over the default rootfs (or
//! `NSTEST_ROOTFS`), with the terminal passed through.
//!
//! ```text
//! cargo run --example run -- sh -c 'hostname; ps; ls /'
//! cargo run --example run -- /bin/sh        # an interactive shell inside the container
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    nstest::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: cargo run --example run -- <command> [args...]");
        return ExitCode::from(2);
    };
    match nstest::Container::new(program)
        .args(rest)
        .hostname("container")
        .status()
    {
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
