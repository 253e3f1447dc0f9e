//! libtest's form of an ignore reason in `harness = false` targets.
//!
//! libtest prints `test name ... ignored, reason`; libtest-mimic 0.8 prints the reason in
//! parentheses (`ignored (reason)`) and offers no hook to print it otherwise. When a run may
//! print a reason, the harness hands libtest-mimic the write end of a pipe as its `--logfile`
//! (its own option: everything it prints goes there, and nothing else does) and a thread relays
//! what arrives to stdout line by line, each line as it was except that one outcome.
//!
//! The start of a test's line (`test name ... `) is relayed as soon as it arrives, so a running
//! test shows as it does without the relay, and [`Relay::drain`] lets a test's own output (under
//! `--nocapture` it goes straight to stdout) come after it.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use libtest_mimic::{Arguments, ColorSetting, FormatSetting};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// libtest-mimic's output on its way to stdout.
pub(super) struct Relay {
    shared: Arc<Shared>,
    /// The pipe's write end as the harness made it; libtest-mimic opens its own through
    /// `/proc/self/fd`, so the relay sees the end of its output once both are closed.
    writer: Mutex<Option<OwnedFd>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    /// The pipe's read end, non-blocking: read only while `lines` is locked, so that whoever
    /// holds the lock and finds the pipe empty knows everything written so far is on stdout.
    reader: File,
    lines: Mutex<Lines>,
}

impl Relay {
    /// Starts the relay if this run prints in libtest's pretty format to stdout (not `--list`,
    /// not `--logfile`, not terse or JSON) and `may_give_reasons`; points `args` at it. `None`:
    /// the run prints as libtest-mimic does (no reason can show, or the pipe could not be made).
    pub(super) fn start(args: &mut Arguments, may_give_reasons: bool) -> Option<Relay> {
        let pretty = !args.quiet && matches!(args.format, None | Some(FormatSetting::Pretty));
        if !may_give_reasons || !pretty || args.list || args.logfile.is_some() {
            return None;
        }
        let (reader, writer) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ok()?;
        // A harness started with stdout closed would get it back as this pipe, and relay the
        // pipe into itself.
        if reader.as_raw_fd() <= 2 || writer.as_raw_fd() <= 2 {
            return None;
        }
        let path = format!("/proc/self/fd/{}", writer.as_raw_fd());
        if !std::path::Path::new(&path).exists() {
            return None;
        }
        let shared = Arc::new(Shared {
            reader: File::from(reader),
            lines: Mutex::new(Lines {
                early_start: one_at_a_time(args),
                ..Lines::default()
            }),
        });
        let relaying = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("nstest-relay".into())
            .spawn(move || relaying.relay())
            .ok()?;
        // Only now that the relay runs: libtest-mimic's output goes to it. With a logfile it
        // colours only when told `always`: decide as it would for stdout (a terminal,
        // `NO_COLOR`, `CLICOLOR_FORCE`, `TERM`), with the same crate.
        if matches!(args.color, None | Some(ColorSetting::Auto)) {
            let choice = anstream::AutoStream::choice(&std::io::stdout());
            args.color = Some(if choice == anstream::ColorChoice::Never {
                ColorSetting::Never
            } else {
                ColorSetting::Always
            });
        }
        args.logfile = Some(path);
        Some(Relay {
            shared,
            writer: Mutex::new(Some(writer)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Returns once everything libtest-mimic has printed so far is on stdout.
    pub(super) fn drain(&self) {
        self.shared.take();
    }

    /// After libtest-mimic's run: relays the rest of its output and stops.
    pub(super) fn finish(&self) {
        drop(lock(&self.writer).take());
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn relay(&self) {
        loop {
            let mut fds = [PollFd::new(self.reader.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
                Ok(_) => {}
            }
            if self.take() {
                return;
            }
        }
    }

    /// Moves what the pipe holds to stdout; `true` at its end.
    fn take(&self) -> bool {
        let mut lines = lock(&self.lines);
        let mut buf = [0u8; 16 * 1024];
        let mut out = Vec::new();
        let ended = loop {
            match (&self.reader).read(&mut buf) {
                Ok(0) => {
                    out.extend(lines.end());
                    break true;
                }
                Ok(n) => out.extend(lines.feed(&buf[..n])),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if !out.is_empty() {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&out);
            let _ = stdout.flush();
        }
        ended
    }
}

/// Whether libtest-mimic runs the tests one at a time (as it counts its threads).
fn one_at_a_time(args: &Arguments) -> bool {
    match args.test_threads {
        Some(n) => n == 1,
        None => std::thread::available_parallelism().map_or(true, |n| n.get() == 1),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The relay's line discipline: whole lines pass rewritten (see [`rewrite`]); of a line not yet
/// ended, with `early_start`, the start of a test's line (`test name ... `) passes at once, the
/// rest waits for its end (libtest-mimic writes an outcome and its newline together).
#[derive(Default)]
struct Lines {
    /// The current line so far.
    line: Vec<u8>,
    /// How much of `line` has been passed on.
    passed: usize,
    /// Whether a test's line starts before its outcome is known: tests run one at a time, and
    /// libtest-mimic prints the start before it runs each. (With more threads it prints a whole
    /// line when a test has ended: it passes as one write, which nothing else written to the
    /// terminal meanwhile can split.)
    early_start: bool,
}

impl Lines {
    fn feed(&mut self, mut chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&chunk[..=nl]);
            chunk = &chunk[nl + 1..];
            let whole = std::mem::take(&mut self.line);
            let rewritten = rewrite(&whole[..whole.len() - 1])
                .map(|mut l| {
                    l.push(b'\n');
                    l
                })
                .unwrap_or(whole);
            out.extend_from_slice(&rewritten[self.passed..]);
            self.passed = 0;
        }
        self.line.extend_from_slice(chunk);
        if self.early_start && self.passed == 0 && self.line.starts_with(b"test ") {
            if let Some(i) = find(&self.line, SEPARATOR) {
                self.passed = i + SEPARATOR.len();
                out.extend_from_slice(&self.line[..self.passed]);
            }
        }
        out
    }

    /// What is left when the output ends, as it is.
    fn end(&mut self) -> Vec<u8> {
        let rest = self.line[self.passed..].to_vec();
        self.line.clear();
        self.passed = 0;
        rest
    }
}

const SEPARATOR: &[u8] = b" ... ";

/// `test name ... ignored (reason)` as libtest prints it: `test name ... ignored, reason`, in
/// the outcome's colour as before. `None`: any other line, such as a line of a failed test's
/// output (it passes unchanged). Whatever
/// precedes the outcome is kept, so a line's start already passed on stays true.
fn rewrite(line: &[u8]) -> Option<Vec<u8>> {
    if !line.starts_with(b"test ") {
        return None;
    }
    let at = find(line, SEPARATOR)? + SEPARATOR.len();
    let outcome = &line[at..];
    let (style, rest) = split_style(outcome);
    let reason_and_reset = rest.strip_prefix(b"ignored (")?;
    let (reason_paren, reset) = match reason_and_reset.iter().rposition(|&b| b == 0x1b) {
        Some(esc) if !style.is_empty() => reason_and_reset.split_at(esc),
        _ => (reason_and_reset, &[][..]),
    };
    let reason = reason_paren.strip_suffix(b")")?;
    Some([&line[..at], style, b"ignored, ", reason, reset].concat())
}

/// An outcome's leading SGR escape (`ESC [ … m`), if it has one, and the rest.
fn split_style(s: &[u8]) -> (&[u8], &[u8]) {
    if s.starts_with(b"\x1b[") {
        if let Some(m) = s.iter().position(|&b| b == b'm') {
            return s.split_at(m + 1);
        }
    }
    (&[], s)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_at_a_time() -> Lines {
        Lines {
            early_start: true,
            ..Lines::default()
        }
    }

    fn feed_all(chunks: &[&str]) -> String {
        let mut lines = one_at_a_time();
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(lines.feed(chunk.as_bytes()));
        }
        out.extend(lines.end());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_ignore_reason_reads_as_libtest_prints_it() {
        assert_eq!(
            feed_all(&["test a ... ignored (needs a reason)\n"]),
            "test a ... ignored, needs a reason\n"
        );
        // Coloured: the whole outcome in its colour, as libtest does.
        assert_eq!(
            feed_all(&["test a   ... \x1b[33mignored (why (really))\x1b[0m\n"]),
            "test a   ... \x1b[33mignored, why (really)\x1b[0m\n"
        );
    }

    #[test]
    fn every_other_line_passes_unchanged() {
        let text = "\nrunning 3 tests\ntest a ... ok\ntest b ... ignored\n\
                    test c ... \x1b[31mFAILED\x1b[0m\n\nfailures:\n\n---- c ----\n\
                    a line ... ignored (in the test's own output)\n\n\
                    test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured\n";
        assert_eq!(feed_all(&[text]), text);
        // A reason without its closing parenthesis is not one.
        assert_eq!(
            feed_all(&["test a ... ignored (half\n"]),
            "test a ... ignored (half\n"
        );
    }

    #[test]
    fn a_test_line_passes_on_before_its_outcome_arrives() {
        let mut lines = one_at_a_time();
        assert_eq!(
            lines.feed(b"\nrunning 1 test\ntest a"),
            b"\nrunning 1 test\n"
        );
        assert_eq!(lines.feed(b"    ... "), b"test a    ... ");
        assert_eq!(lines.feed(b"\x1b[33mignored ("), b"");
        assert_eq!(lines.feed(b"why)\x1b[0m"), b"");
        assert_eq!(lines.feed(b"\n\ntest "), b"\x1b[33mignored, why\x1b[0m\n\n");
        assert_eq!(lines.end(), b"test ");
    }

    #[test]
    fn with_tests_in_parallel_a_line_passes_whole() {
        // libtest-mimic prints a test's line once the test has ended: one write keeps it whole.
        let mut lines = Lines::default();
        assert_eq!(lines.feed(b"test a ... "), b"");
        assert_eq!(lines.feed(b"\x1b[33mignored (r)"), b"");
        assert_eq!(
            lines.feed(b"\x1b[0m\ntest b ... "),
            b"test a ... \x1b[33mignored, r\x1b[0m\n"
        );
        assert_eq!(lines.feed(b"ok\n"), b"test b ... ok\n");
    }

    #[test]
    fn output_split_anywhere_comes_out_the_same() {
        let text = "test a ... ok\ntest long_name ... \x1b[33mignored (r)\x1b[0m\ndone\n";
        let want = "test a ... ok\ntest long_name ... \x1b[33mignored, r\x1b[0m\ndone\n";
        for at in 0..text.len() {
            for at2 in at..text.len() {
                assert_eq!(
                    feed_all(&[&text[..at], &text[at..at2], &text[at2..]]),
                    want,
                    "split at {at}, {at2}"
                );
            }
        }
    }
}
