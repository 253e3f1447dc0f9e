//! Running a [`Container`]: to its end ([`Container::status`], [`Container::output`]) or in the
//! background ([`Container::spawn`]), and what it came to.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use super::{Container, Stdio};
use crate::error::Error;
use crate::network::{Attachment, NetworkError};
use crate::parent::{self, Launch, Out, StdioSetup};
use crate::protocol::{Message, RunSpec};
use crate::spawned::{Child, Slot};
use crate::spec::{
    parse_bytes, parse_env, validate_workdir, Bind, Net, RootfsSource, SpecError, DEFAULT_HOSTNAME,
};

impl Container {
    /// Starts the command and returns while it runs, once the container is set up (on a
    /// [`Network`](crate::Network): with its address up). Its output, unless set otherwise, is both kept (for
    /// [`Child::wait_with_output`]) and shown on the caller's stderr, each line after the
    /// container's hostname (`web | ...`); with [`Stdio::Piped`] it is only kept. When the test
    /// ends, every container it spawned that still runs is killed.
    ///
    /// ```no_run
    /// let mut child = nstest::Container::new("sleep").arg("10").spawn()?;
    /// child.kill()?;
    /// child.wait()?;
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn spawn(&mut self) -> Result<Child, Error> {
        let (rootfs, cwd, attachment) = self.prepare()?;
        let hostname = self.hostname_for(attachment.as_ref());
        // A stream the caller did not set is shown after the hostname, and kept.
        let prefix = format!("{hostname} | ");
        let echo = [self.stdout, self.stderr].map(|s| s.is_none().then(|| prefix.clone()));
        let ip = attachment.as_ref().map(|a| a.ip());
        let launch = self.launch(
            &rootfs,
            &cwd,
            &hostname,
            attachment,
            Stdio::Null,
            Stdio::Piped,
            echo,
        )?;
        let started = launch.start()?;
        let pid = started.pid();
        let pidfd = match started.pidfd() {
            Ok(fd) => fd,
            Err(e) => {
                started.abandon();
                return Err(e);
            }
        };
        let slot = std::sync::Arc::new(Slot::default());
        let (set_up, on_set_up) = std::sync::mpsc::sync_channel::<()>(1);
        let timeout = self.timeout;
        let watcher = {
            let slot = slot.clone();
            std::thread::Builder::new()
                .name(format!("nstest-{hostname}"))
                .spawn(move || {
                    let mut set_up = Some(set_up);
                    let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        started.finish(&mut |m| {
                            if matches!(m, Message::SetupDone) {
                                set_up.take().map(|s| s.send(()));
                            }
                        })
                    }));
                    drop(set_up);
                    // A watcher that panicked still leaves an answer: no `wait` waits forever.
                    let finished = finished.unwrap_or_else(|_| {
                        let e = nix::errno::Errno::EIO;
                        Err(Error::Host(crate::sys::SysError::new(
                            "watch the container",
                            e,
                        )))
                    });
                    slot.put(finished.and_then(|f| conclude(f, timeout)));
                })
        };
        if let Err(e) = watcher {
            let _ = crate::sys::pidfd_kill(std::os::fd::AsFd::as_fd(&pidfd), libc::SIGKILL);
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN));
            return Err(Error::Host(crate::sys::SysError::new(
                "spawn a watcher thread",
                errno,
            )));
        }
        let mut child = Child::new(pid, ip, hostname, pidfd, slot);
        if on_set_up.recv().is_err() {
            // It ended before its set-up was done: why.
            return Err(match child.wait() {
                Ok(status) => Error::DiedDuringSetup(status),
                Err(e) => e,
            });
        }
        Ok(child)
    }

    pub(super) fn run(&self, default_in: Stdio, default_out: Stdio) -> Result<Output, Error> {
        let (rootfs, cwd, attachment) = self.prepare()?;
        let hostname = self.hostname_for(attachment.as_ref());
        let launch = self.launch(
            &rootfs,
            &cwd,
            &hostname,
            attachment,
            default_in,
            default_out,
            [None, None],
        )?;
        conclude(launch.run()?, self.timeout)
    }

    /// The rootfs, the directory relative paths start at, and a place on the network.
    fn prepare(&self) -> Result<(RootfsSource, PathBuf, Option<Attachment>), Error> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let rootfs = match &self.rootfs {
            Some(s) => RootfsSource::parse(s, &cwd)?,
            // Inside a test: the test's own rootfs, where it is not the default.
            None => crate::child::inherited().unwrap_or(RootfsSource::Default),
        };
        let attachment = match &self.network {
            Some(_) if self.net == Net::Host => return Err(NetworkError::HostNet.into()),
            Some(n) => Some(n.reserve(self.hostname.as_deref())?),
            None => None,
        };
        Ok((rootfs, cwd, attachment))
    }

    fn hostname_for(&self, attachment: Option<&Attachment>) -> String {
        match (attachment, &self.hostname) {
            (Some(a), _) => a.name().to_string(),
            (None, Some(h)) => h.clone(),
            (None, None) => DEFAULT_HOSTNAME.to_string(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn launch<'a>(
        &self,
        rootfs: &'a RootfsSource,
        cwd: &'a std::path::Path,
        hostname: &'a str,
        network: Option<Attachment>,
        default_in: Stdio,
        default_out: Stdio,
        echo: [Option<String>; 2],
    ) -> Result<Launch<'a>, Error> {
        let mut limits = self.limits.clone();
        if let Some(m) = &self.memory {
            limits.memory = Some(parse_bytes(m)?);
        }
        if limits.cpus.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
            return Err(SpecError::BadCpus(limits.cpus.unwrap_or_default().to_string()).into());
        }
        let out = |s: Option<Stdio>| match s.unwrap_or(default_out) {
            Stdio::Inherit => Out::Inherit,
            Stdio::Null => Out::Null,
            Stdio::Piped => Out::Pipe,
        };
        let mut binds = self
            .binds
            .iter()
            .map(|b| Bind::parse(b, cwd))
            .collect::<Result<Vec<_>, _>>()?;
        if network.is_some() {
            // The network's hosts: the caller's own file, kept up to date in place.
            binds.push(Bind {
                host: "/etc/hosts".into(),
                target: "/etc/hosts".into(),
                read_only: true,
            });
        }
        Ok(Launch {
            rootfs,
            base_dir: cwd,
            hostname,
            net: self.net,
            run: match self.function {
                Some(Some(offset)) => RunSpec::Function(offset),
                Some(None) => return Err(SpecError::FunctionOutsideBinary.into()),
                None => RunSpec::Command(self.argv.clone()),
            },
            args: Vec::new(),
            stdio: StdioSetup {
                stdin_null: self.stdin.unwrap_or(default_in) == Stdio::Null,
                stdout: out(self.stdout),
                stderr: out(self.stderr),
            },
            timeout: self.timeout,
            capture_limit: None,
            limits,
            package: None,
            binds,
            env: self
                .env
                .iter()
                .map(|(k, v)| parse_env(&format!("{k}={v}")))
                .collect::<Result<_, _>>()?,
            workdir: self.workdir.as_deref().map(validate_workdir).transpose()?,
            keep: None,
            shell_on_failure: false,
            network,
            echo,
        })
    }
}

/// What a finished container comes to for its caller: its output, or why nstest could not run
/// it (its set-up failed; its timeout ended it).
fn conclude(finished: parent::Finished, timeout: Option<Duration>) -> Result<Output, Error> {
    if let Some(e) = parent::setup_failure(&finished, timeout) {
        return Err(e);
    }
    if finished.timed_out {
        return Err(Error::TimedOut(timeout.unwrap_or_default()));
    }
    Ok(Output {
        status: finished.exit_status(),
        stdout: finished.stdout.into_bytes(),
        stderr: finished.stderr.into_bytes(),
    })
}
