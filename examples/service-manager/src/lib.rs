//! Starts a daemon, finds it by its pidfile, reloads it (SIGHUP) and stops it (SIGTERM, then
//! SIGKILL): code that spawns and kills processes, whose tests belong in a container.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A daemon known by its pidfile.
#[derive(Debug, Clone)]
pub struct Service {
    /// The command line that starts it (it must write its pidfile and detach).
    pub command: Vec<String>,
    /// Where it writes its pid.
    pub pidfile: PathBuf,
}

fn err(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl Service {
    /// The running daemon's pid, from the pidfile, if that process is alive.
    pub fn pid(&self) -> io::Result<Option<Pid>> {
        let text = match std::fs::read_to_string(&self.pidfile) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let pid: i32 = text
            .trim()
            .parse()
            .map_err(|_| err(format!("garbage in {}: {text:?}", self.pidfile.display())))?;
        let pid = Pid::from_raw(pid);
        Ok(kill(pid, None).is_ok().then_some(pid))
    }

    /// Starts the daemon and waits (up to `wait`) for its pidfile.
    pub fn start(&self, wait: Duration) -> io::Result<Pid> {
        if let Some(pid) = self.pid()? {
            return Err(err(format!("already running as {pid}")));
        }
        let (program, args) = self
            .command
            .split_first()
            .ok_or_else(|| err("empty command".into()))?;
        let status = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(err(format!("{program} exited with {status}")));
        }
        wait_for(wait, || self.pid().ok().flatten()).ok_or_else(|| {
            err(format!(
                "no live pid in {} after {wait:?}",
                self.pidfile.display()
            ))
        })
    }

    /// Asks the daemon to reload (SIGHUP).
    pub fn reload(&self) -> io::Result<()> {
        let pid = self.pid()?.ok_or_else(|| err("not running".into()))?;
        kill(pid, Signal::SIGHUP).map_err(io::Error::from)
    }

    /// Stops the daemon: SIGTERM, then SIGKILL if it is still there after `grace`.
    pub fn stop(&self, grace: Duration) -> io::Result<()> {
        let Some(pid) = self.pid()? else {
            return Ok(());
        };
        kill(pid, Signal::SIGTERM).map_err(io::Error::from)?;
        if wait_for(grace, || kill(pid, None).is_err().then_some(())).is_none() {
            kill(pid, Signal::SIGKILL).map_err(io::Error::from)?;
            wait_for(Duration::from_secs(5), || {
                kill(pid, None).is_err().then_some(())
            })
            .ok_or_else(|| err(format!("{pid} survived SIGKILL")))?;
        }
        let _ = std::fs::remove_file(&self.pidfile);
        Ok(())
    }
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Where a service's files go by default.
pub fn run_dir() -> &'static Path {
    Path::new("/run")
}
