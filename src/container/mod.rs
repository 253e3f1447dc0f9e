//! [`Container`]: run a command as PID 1 of fresh namespaces over a throwaway rootfs.

mod launch;

use std::ffi::{OsStr, OsString};
use std::process::{ExitStatus, Output};
use std::time::Duration;

use crate::error::Error;
use crate::network::Network;
use crate::spec::{Limits, Net};

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
    /// A function of this binary to run instead of `argv` ([`Container::from_fn`]): its
    /// offset, or `None` for one outside the executable.
    function: Option<Option<i64>>,
    rootfs: Option<String>,
    hostname: Option<String>,
    network: Option<Network>,
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
            function: None,
            rootfs: None,
            hostname: None,
            network: None,
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

    /// A container whose PID 1 runs `f`, a plain function of this binary (not a closure: the
    /// container is this binary started again, and finds `f` there), e.g. a Rust server on one
    /// host of a [`Network`] while the test is its client. It exits 0 when `f` returns and 101
    /// when it panics (the panic printed to its stderr), as a Rust program does. Arguments do
    /// not apply. `f` runs on PID 1's main thread, entered before Rust's `main` (as every nstest
    /// container is): the thread has no name (a panic says `'<unnamed>'`), a stack overflow
    /// is a plain SIGSEGV, and nothing reaps orphans (a host that starts processes waits for
    /// them). A function outside the executable (a shared library's) is refused when the
    /// container starts ([`crate::spec::SpecError::FunctionOutsideBinary`]).
    ///
    /// ```no_run
    /// fn serve() {
    ///     let listener = std::net::TcpListener::bind("0.0.0.0:7000").unwrap();
    ///     for conn in listener.incoming() {
    ///         std::io::Write::write_all(&mut conn.unwrap(), b"hello\n").unwrap();
    ///     }
    /// }
    /// # fn main() -> Result<(), nstest::Error> {
    /// let net = nstest::Network::new()?;
    /// let server = nstest::Container::from_fn(serve).hostname("server").network(&net).spawn()?;
    /// # drop(server); Ok(()) }
    /// ```
    pub fn from_fn(f: fn()) -> Self {
        let mut c = Self::new("");
        c.argv.clear();
        // `None` in it: a function outside the executable, refused when it is started.
        c.function = Some(crate::sys::fn_offset(f));
        c
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
    /// Default: inside a test, the test's rootfs (its base, without the test's writes);
    /// elsewhere `NSTEST_ROOTFS`, else the busybox fixture, else `builtin:host`.
    pub fn rootfs(&mut self, rootfs: impl Into<String>) -> &mut Self {
        self.rootfs = Some(rootfs.into());
        self
    }

    /// The container's hostname (default `nstest`; on a [`Network`], `host<n>` after the last
    /// octet of its address).
    ///
    /// ```no_run
    /// let out = nstest::Container::new("hostname").hostname("db-1").output()?;
    /// assert_eq!(out.stdout, b"db-1\n");
    /// # Ok::<(), nstest::Error>(())
    /// ```
    pub fn hostname(&mut self, hostname: impl Into<String>) -> &mut Self {
        self.hostname = Some(hostname.into());
        self
    }

    /// Puts the container on `network`: its own network namespace with `lo` and `eth0`, an
    /// address of the network's subnet on the switch. Every host on the network, and the
    /// caller, reach it by its hostname (see [`Network`]).
    pub fn network(&mut self, network: &Network) -> &mut Self {
        self.network = Some(network.clone());
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
}
