//! Watching a running container: drain its output and report pipes while it runs (so a test
//! that prints 100 MB never blocks), kill it with its whole PID namespace at the deadline, reap
//! it, and hand back everything it said.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::spawn::Running;
use crate::error::Error;
use crate::protocol::{Decoder, Message, ProtocolError};
use crate::sys::{self, SysError};

/// How long output may still arrive after PID 1 is gone (its namespace is dead by then; this
/// only bounds a pathological case).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Captured output, bounded: the first and the last `limit` bytes are kept.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: u64,
    limit: Option<usize>,
}

impl Captured {
    fn new(limit: Option<usize>) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        let Some(limit) = self.limit else {
            self.head.extend_from_slice(bytes);
            return;
        };
        let room = limit.saturating_sub(self.head.len());
        let n = room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        self.tail.extend(bytes);
        if self.tail.len() > limit {
            let extra = self.tail.len() - limit;
            self.tail.drain(..extra);
            self.dropped += extra as u64;
        }
    }

    /// Everything kept, with a marker where bytes were left out.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        let mut v = self.head;
        if self.dropped > 0 {
            v.extend_from_slice(
                format!(
                    "\n[... nstest left out {} bytes of output ...]\n",
                    self.dropped
                )
                .as_bytes(),
            );
        }
        v.extend(self.tail);
        v
    }
}

/// What a finished container left.
#[derive(Debug)]
pub(crate) struct Finished {
    /// `None`: the container had passed its test and closed its pipes, and was left to end on
    /// its own (see `parent::reap`); [`Finished::exit_status`] says how it ends.
    pub status: Option<ExitStatus>,
    pub messages: Vec<Message>,
    pub protocol_error: Option<ProtocolError>,
    pub stdout: Captured,
    pub stderr: Captured,
    pub timed_out: bool,
    /// What the resource limits did, if anything ("killed: out of memory (limit 64M)").
    pub limits: Option<String>,
    /// Where the container's writes were kept (`NSTEST_KEEP=1`).
    pub kept: Option<std::path::PathBuf>,
}

impl Finished {
    /// How the container ended. One left to end on its own exits 0: its PID 1 closes its fds
    /// and exits 0 right after it reports a passed test (`child::init`).
    pub(crate) fn exit_status(&self) -> ExitStatus {
        self.status.unwrap_or(ExitStatus::from_raw(0))
    }

    pub(crate) fn setup_done(&self) -> bool {
        self.messages
            .iter()
            .any(|m| matches!(m, Message::SetupDone))
    }
}

struct Stream {
    file: Option<File>,
    sink: Sink,
}

enum Sink {
    Report(Decoder),
    Out(Captured, Option<Echo>),
}

/// The longest line [`Echo`] holds back before it shows it.
const ECHO_LINE_MAX: usize = 64 * 1024;

/// Writes each complete line to this process's stderr after a prefix (`web | `), the rest when
/// the stream ends.
struct Echo {
    prefix: String,
    partial: Vec<u8>,
}

impl Echo {
    fn push(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        if let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') {
            let lines: Vec<u8> = self.partial.drain(..=end).collect();
            self.write(&lines);
        }
        // Output without newlines is shown in lines of at most this much.
        if self.partial.len() >= ECHO_LINE_MAX {
            self.finish();
        }
    }

    fn finish(&mut self) {
        if !self.partial.is_empty() {
            let mut rest = std::mem::take(&mut self.partial);
            rest.push(b'\n');
            self.write(&rest);
        }
    }

    fn write(&self, lines: &[u8]) {
        use std::io::Write;
        let mut text = Vec::with_capacity(lines.len() + 16);
        for line in lines.split_inclusive(|&b| b == b'\n') {
            text.extend_from_slice(self.prefix.as_bytes());
            text.extend_from_slice(line);
        }
        // One write per chunk, so that lines of several hosts do not interleave mid-line.
        let _ = std::io::stderr().lock().write_all(&text);
    }
}

fn echo_after(prefix: &str) -> Echo {
    Echo {
        prefix: prefix.to_string(),
        partial: Vec::new(),
    }
}

/// On a host-side failure while watching: the container is killed (its whole PID namespace
/// with PID 1) and reaped, so that no error leaves it running; then `e` is returned.
fn abandon(cloned: &crate::sys::Cloned, e: Error) -> Error {
    cloned.kill_and_reap();
    e
}

/// Supervises `running` until it has exited and its pipes are drained; with `early`, only until
/// it has reported a passed test and closed its pipes (it is then reaped later, see
/// `parent::reap`).
/// `on_message` sees each report message as it arrives (the shell on failure starts there).
/// `on_timeout` runs when the deadline passes, after PID 1 is sent SIGKILL (the test's cgroup is
/// killed there).
pub(crate) fn supervise(
    running: Running,
    timeout: Option<Duration>,
    capture_limit: Option<usize>,
    echo: [Option<&str>; 2],
    early: bool,
    on_timeout: &dyn Fn(),
    on_message: &mut dyn FnMut(&Message, &crate::sys::Cloned),
) -> Result<Finished, Error> {
    let host = |call: &str| {
        let call = call.to_string();
        move |e| Error::Host(SysError::new(call.clone(), e))
    };
    let Running {
        cloned,
        stdout,
        stderr,
        report,
        ..
    } = running;
    let mut streams = [
        Stream {
            file: Some(report),
            sink: Sink::Report(Decoder::default()),
        },
        Stream {
            file: stdout,
            sink: Sink::Out(Captured::new(capture_limit), echo[0].map(echo_after)),
        },
        Stream {
            file: stderr,
            sink: Sink::Out(Captured::new(capture_limit), echo[1].map(echo_after)),
        },
    ];
    let mut messages = Vec::new();
    let mut protocol_error = None;
    let mut deadline = timeout.map(|t| Instant::now() + t);
    let mut timed_out = false;
    let mut status: Option<ExitStatus> = None;
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];

    loop {
        let open: Vec<usize> = (0..streams.len())
            .filter(|&i| streams[i].file.is_some())
            .collect();
        if status.is_some() && (open.is_empty() || drain_until.is_some_and(|d| Instant::now() >= d))
        {
            break;
        }
        if early && status.is_none() && open.is_empty() && passed(&messages) {
            break;
        }
        let wake = if status.is_some() {
            drain_until
        } else {
            deadline
        };
        let wait = match wake {
            Some(w) => PollTimeout::try_from(
                w.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(60_000) as i32
                    + 1,
            )
            .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let (n, revents) = {
            let mut pfds: Vec<PollFd> = open
                .iter()
                .map(|&i| PollFd::new(streams[i].file.as_ref().unwrap().as_fd(), PollFlags::POLLIN))
                .collect();
            if status.is_none() {
                pfds.push(PollFd::new(cloned.pidfd.as_fd(), PollFlags::POLLIN));
            }
            let n = match poll(&mut pfds, wait) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(abandon(&cloned, host("poll(container pipes, pidfd)")(e))),
            };
            (
                n,
                pfds.iter()
                    .map(|p| p.revents().unwrap_or(PollFlags::empty()))
                    .collect::<Vec<_>>(),
            )
        };
        if status.is_none() && deadline.is_some_and(|d| Instant::now() >= d) {
            // PID 1 ignores what it has no handler for; SIGKILL from outside always lands, and
            // the kernel then kills every process of its namespace.
            cloned.kill();
            on_timeout();
            timed_out = true;
            deadline = None;
        }
        if n == 0 {
            continue;
        }
        for (k, &i) in open.iter().enumerate() {
            if revents[k].is_empty() {
                continue;
            }
            let s = &mut streams[i];
            let r = s.file.as_mut().unwrap().read(&mut buf);
            match r {
                Ok(0) | Err(_) => s.file = None,
                Ok(len) => match &mut s.sink {
                    Sink::Out(c, echo) => {
                        c.push(&buf[..len]);
                        if let Some(e) = echo {
                            e.push(&buf[..len]);
                        }
                    }
                    Sink::Report(d) => {
                        d.push(&buf[..len]);
                        loop {
                            match d.next_message() {
                                Ok(Some(m)) => {
                                    on_message(&m, &cloned);
                                    messages.push(m)
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    protocol_error.get_or_insert(e);
                                    s.file = None;
                                    break;
                                }
                            }
                        }
                    }
                },
            }
            if s.file.is_none() {
                match &mut s.sink {
                    Sink::Report(d) => {
                        if let Err(e) = d.finish() {
                            protocol_error.get_or_insert(e);
                        }
                    }
                    Sink::Out(_, Some(echo)) => echo.finish(),
                    Sink::Out(_, None) => {}
                }
            }
        }
        if status.is_none() && revents.len() > open.len() && !revents[open.len()].is_empty() {
            let raw = sys::wait_raw(cloned.pid).map_err(|e| abandon(&cloned, Error::Host(e)))?;
            status = Some(ExitStatus::from_raw(raw));
            drain_until = Some(Instant::now() + DRAIN_GRACE);
        }
    }
    let [_, out, err] = streams;
    let take = |s: Stream| match s.sink {
        Sink::Out(c, echo) => {
            if let Some(mut e) = echo {
                e.finish();
            }
            c
        }
        Sink::Report(_) => unreachable!(),
    };
    if status.is_none() {
        super::reap::later(cloned);
    }
    Ok(Finished {
        status,
        messages,
        protocol_error,
        stdout: take(out),
        stderr: take(err),
        timed_out,
        limits: None,
        kept: None,
    })
}

fn passed(messages: &[Message]) -> bool {
    messages.contains(&Message::Outcome(crate::protocol::Outcome::Passed))
}

#[cfg(test)]
mod tests {
    use super::Captured;

    #[test]
    fn capture_keeps_head_and_tail() {
        let mut c = Captured::new(Some(4));
        c.push(b"abcdefgh");
        c.push(b"ijkl");
        let out = String::from_utf8(c.into_bytes()).unwrap();
        assert!(out.starts_with("abcd"), "{out}");
        assert!(out.ends_with("ijkl"), "{out}");
        assert!(out.contains("left out 4 bytes"), "{out}");

        let mut c = Captured::new(None);
        c.push(&[1; 100]);
        assert_eq!(c.into_bytes().len(), 100);
    }
}
