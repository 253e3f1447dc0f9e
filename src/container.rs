//! [`Container`]: run a command as PID 1 of fresh namespaces over a throwaway rootfs.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::{ExitStatus, Output};
use std::time::Duration;

use crate::error::Error;
use crate::parent::{self, Launch, Out, StdioSetup};
use crate::protocol::RunSpec;
use crate::spec::{
    parse_bytes, parse_env, validate_workdir, Bind, Limits, Net, RootfsSource, SpecError,
    DEFAULT_HOSTNAME,
};

/// Where a container's standard stream goes.
///
/// ```no_run
/// nstest::Container::new("sh").stdin(nstest::Stdio::Inherit).stdout(nstest::Stdio::Inherit).status()?;
/// # Ok::<(), nstest::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio {
    /// The caller's own stream (a terminal stays a terminal: interactive shells work).
    Inherit,
    /// `/dev/null`.
    Null,
    /// Captured into [`Output`] (stdout and stderr only).
    Piped,
}

/// A command to run in a fresh container: new UTS, PID, mount, IPC and network namespaces, a
/// copy-on-write view of a rootfs, a fresh `/proc`, `/dev`, `/tmp`, its own hostname. The
/// command is PID 1 of its PID namespace; when it exits, everything it started dies with it.
///
/// This is what the test harness itself uses for every test. It works in any binary that links
/// nstest: the container is entered by re-executing the current binary, which nstest
/// intercepts before `main`.
///
/// ```no_run
/// fn main() -> Result<(), nstest::Error> {
///     nstest::init();
///     let out = nstest::Container::new("hostname").hostname("box").output()?;
///     assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "box");
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Container {
    argv: Vec<OsString>,
    rootfs: Option<String>,
    hostname: String,
    net: Net,
    limits: Limits,
    memory: Option<String>,
    binds: Vec<String>,
    env: Vec<(String, String)>,
    workdir: Option<String>,
    timeout: Option<Duration>,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
}

impl Container {
    /// A container that will run `program` (looked up in the container's `PATH` unless it
    /// contains a `/`).
    ///
    /// ```no_run
    /// let out = nstest::Container::new("uname").arg("-n").output()?;
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            argv: vec![program.as_ref().to_owned()],
            rootfs: None,
            hostname: DEFAULT_HOSTNAME.to_string(),
            net: Net::Loopback,
            limits: Limits::default(),
            memory: None,
            binds: Vec::new(),
            env: Vec::new(),
            workdir: None,
            timeout: None,
            stdin: None,
            stdout: None,
            stderr: None,
        }
    }

    /// Adds an argument.
    ///
    /// ```no_run
    /// nstest::Container::new("ls").arg("-l").arg("/etc").status()?;
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.argv.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    ///
    /// ```no_run
    /// nstest::Container::new("sh").args(["-c", "echo $$"]).status()?;
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.argv
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// The root filesystem, spelled as the `rootfs` option (relative paths start at the current
    /// directory).
    ///
    /// ```no_run
    /// let status = nstest::Container::new("cat").arg("/etc/alpine-release").rootfs("alpine.tar.gz").status()?;
    /// # Ok::<(), nstest::Error>(())
    /// ```
    ///
    /// Default: `NSTEST_ROOTFS`, else the busybox fixture, else `builtin:host`.
    pub fn rootfs(&mut self, rootfs: impl Into<String>) -> &mut Self {
        self.rootfs = Some(rootfs.into());
        self
    }

    /// The container's hostname (default `nstest`).
    ///
    /// ```no_run
    /// let out = nstest::Container::new("hostname").hostname("db-1").output()?;
    /// assert_eq!(out.stdout, b"db-1\n");
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn hostname(&mut self, hostname: impl Into<String>) -> &mut Self {
        self.hostname = hostname.into();
        self
    }

    /// The network: [`Net::Loopback`] (default: a new network namespace with only `lo`, up) or
    /// [`Net::Host`] (the host's network namespace, shared).
    ///
    /// ```no_run
    /// // The host's network, e.g. to reach a service on the host.
    /// nstest::Container::new("ip").arg("addr").net(nstest::Net::Host).status()?;
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn net(&mut self, net: Net) -> &mut Self {
        self.net = net;
        self
    }

    /// Limit the container's memory (`"64M"`, `"1G"`): past it, the kernel's OOM killer ends it.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let status = nstest::Container::new("sh")
    ///     .args(["-c", "yes > /dev/null"])
    ///     .memory("64M")
    ///     .pids(32)
    ///     .cpus(0.5)
    ///     .timeout(Duration::from_secs(1))
    ///     .status();
    /// assert!(matches!(status, Err(nstest::Error::TimedOut(_))));
    /// ```
    pub fn memory(&mut self, size: impl Into<String>) -> &mut Self {
        self.memory = Some(size.into());
        self
    }

    /// Limit the container's number of processes and threads.
    ///
    /// ```no_run
    /// nstest::Container::new("sh").args(["-c", "sleep 1 & sleep 1 & wait"]).pids(8).status()?;
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn pids(&mut self, max: u64) -> &mut Self {
        self.limits.pids = Some(max);
        self
    }

    /// Limit the container's CPU time, in CPUs (`0.5`: half of one CPU).
    ///
    /// ```no_run
    /// nstest::Container::new("sh").args(["-c", "echo spin"]).cpus(0.25).status()?;
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn cpus(&mut self, cpus: f64) -> &mut Self {
        self.limits.cpus = Some(cpus);
        self
    }

    /// Binds a host path into the container: `"host/path:/container/path"` (read-only) or
    /// `"…:rw"`; a relative host path starts at the current directory.
    ///
    /// ```no_run
    /// let out = nstest::Container::new("ls")
    ///     .arg("/data")
    ///     .bind("fixtures:/data")
    ///     .env("LANG", "C")
    ///     .workdir("/data")
    ///     .output()?;
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn bind(&mut self, bind: impl Into<String>) -> &mut Self {
        self.binds.push(bind.into());
        self
    }

    /// Sets a variable in the container's environment. The environment is otherwise clean:
    /// `PATH` for the rootfs, `HOME=/root`, `HOSTNAME`, and the variables a test also gets passed
    /// through when set (`TERM`, `RUST_BACKTRACE`, `RUST_LOG`, cargo's and nextest's, …; see the
    /// `env` option).
    ///
    /// ```no_run
    /// let out = nstest::Container::new("sh").args(["-c", "echo $GREETING"]).env("GREETING", "hi").output()?;
    /// assert_eq!(out.stdout, b"hi\n");
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn env(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The working directory inside the container (created if missing; default `/`).
    ///
    /// ```no_run
    /// let out = nstest::Container::new("pwd").workdir("/srv/app").output()?;
    /// assert_eq!(out.stdout, b"/srv/app\n");
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn workdir(&mut self, dir: impl Into<String>) -> &mut Self {
        self.workdir = Some(dir.into());
        self
    }

    /// Kill the container (its whole PID namespace) after this long, counted from its start; the
    /// call then returns [`Error::TimedOut`], or [`Error::SetupTimedOut`] if the command had not
    /// started yet. Default: no limit.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let r = nstest::Container::new("sleep").arg("60").timeout(Duration::from_millis(200)).status();
    /// assert!(matches!(r, Err(nstest::Error::TimedOut(_))));
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = Some(timeout);
        self
    }

    /// Standard input: [`Stdio::Inherit`] or [`Stdio::Null`] (default: inherit for `status`, null
    /// for `output`, as with `std::process::Command`).
    ///
    /// ```no_run
    /// nstest::Container::new("cat").stdin(nstest::Stdio::Null).status()?;
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn stdin(&mut self, s: Stdio) -> &mut Self {
        self.stdin = Some(s);
        self
    }

    /// Standard output (default: inherit for `status`, piped for `output`).
    ///
    /// ```no_run
    /// nstest::Container::new("ls").stdout(nstest::Stdio::Null).status()?;
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn stdout(&mut self, s: Stdio) -> &mut Self {
        self.stdout = Some(s);
        self
    }

    /// Standard error (default: inherit for `status`, piped for `output`).
    ///
    /// ```no_run
    /// nstest::Container::new("ls").arg("/nope").stderr(nstest::Stdio::Null).status()?;
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn stderr(&mut self, s: Stdio) -> &mut Self {
        self.stderr = Some(s);
        self
    }

    /// Runs the command and waits for it.
    ///
    /// ```no_run
    /// let status = nstest::Container::new("true").status()?;
    /// assert!(status.success());
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn status(&mut self) -> Result<ExitStatus, Error> {
        self.run(Stdio::Inherit, Stdio::Inherit).map(|o| o.status)
    }

    /// Runs the command and collects its output.
    ///
    /// ```no_run
    /// let out = nstest::Container::new("sh").args(["-c", "echo out; echo err >&2"]).output()?;
    /// assert_eq!((out.stdout, out.stderr), (b"out\n".to_vec(), b"err\n".to_vec()));
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn output(&mut self) -> Result<Output, Error> {
        self.run(Stdio::Null, Stdio::Piped)
    }

    fn run(&self, default_in: Stdio, default_out: Stdio) -> Result<Output, Error> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let rootfs = match &self.rootfs {
            Some(s) => RootfsSource::parse(s, &cwd)?,
            None => RootfsSource::Default,
        };
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
        let finished = Launch {
            rootfs: &rootfs,
            base_dir: &cwd,
            hostname: &self.hostname,
            net: self.net,
            run: RunSpec::Command(self.argv.clone()),
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
            binds: self
                .binds
                .iter()
                .map(|b| Bind::parse(b, &cwd))
                .collect::<Result<_, _>>()?,
            env: self
                .env
                .iter()
                .map(|(k, v)| parse_env(&format!("{k}={v}")))
                .collect::<Result<_, _>>()?,
            workdir: self.workdir.as_deref().map(validate_workdir).transpose()?,
            keep: None,
            shell_on_failure: false,
        }
        .run()?;
        if let Some(e) = parent::setup_failure(&finished, self.timeout) {
            return Err(e);
        }
        if finished.timed_out {
            return Err(Error::TimedOut(self.timeout.unwrap_or_default()));
        }
        Ok(Output {
            status: finished.status,
            stdout: finished.stdout.into_bytes(),
            stderr: finished.stderr.into_bytes(),
        })
    }
}
