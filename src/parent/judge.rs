//! Judging a finished container: did it get through its set-up, and what did its test come to.

use std::time::Duration;

use super::Finished;
use crate::error::{describe_status, Error};
use crate::protocol::{Message, Outcome};
use crate::spec::format_duration;

/// Why the container never got as far as its test or command, if it did not: the set-up
/// failure it reported, or, without a `SetupDone`, the timeout (`timeout`) that killed it, a
/// garbled report, or its death. Whatever a container does after `SetupDone` is judged apart.
pub(crate) fn setup_failure(f: &Finished, timeout: Option<Duration>) -> Option<Error> {
    if let Some(e) = reported_setup_error(f) {
        return Some(e);
    }
    if f.setup_done() {
        return None;
    }
    Some(match (&f.protocol_error, timeout) {
        (_, Some(t)) if f.timed_out => Error::SetupTimedOut(t),
        (Some(e), _) => Error::Protocol(e.clone()),
        (None, _) => Error::DiedDuringSetup(f.exit_status()),
    })
}

/// The set-up failure the child reported, if any.
fn reported_setup_error(f: &Finished) -> Option<Error> {
    f.messages.iter().find_map(|m| match m {
        Message::SetupFailed {
            step,
            detail,
            errno,
        } => Some(Error::Setup {
            step: *step,
            detail: detail.clone(),
            errno: nix::errno::Errno::from_raw(*errno),
        }),
        _ => None,
    })
}

/// What a test run came to.
#[derive(Debug)]
pub(crate) enum Verdict {
    Passed,
    /// The test failed; the reason, as the user reads it.
    Failed(String),
    /// nstest could not run the test.
    Error(Error),
}

/// Judges a finished test container; what the resource limits did is said with the reason.
pub(crate) fn judge_test(f: &Finished, timeout: Duration) -> Verdict {
    match (judge_outcome(f, timeout), &f.limits) {
        (Verdict::Failed(_), Some(note))
            if note.starts_with("killed: out of memory") && f.exit_status().code().is_none() =>
        {
            Verdict::Failed(note.clone())
        }
        (Verdict::Failed(reason), Some(note)) => Verdict::Failed(format!("{reason}\n{note}")),
        (v, _) => v,
    }
}

fn judge_outcome(f: &Finished, timeout: Duration) -> Verdict {
    if let Some(e) = setup_failure(f, Some(timeout)) {
        return Verdict::Error(e);
    }
    let outcome = f.messages.iter().find_map(|m| match m {
        Message::Outcome(o) => Some(o),
        _ => None,
    });
    if let Some(o) = outcome {
        return match o {
            Outcome::Passed => Verdict::Passed,
            Outcome::Panicked { message, location } => Verdict::Failed(match location {
                Some(l) => format!("test panicked at {l}: {message}"),
                None => format!("test panicked: {message}"),
            }),
            Outcome::ReturnedErr { debug } => Verdict::Failed(format!("test returned an error: {debug}")),
            Outcome::DidNotPanic { expected: None } => Verdict::Failed("test did not panic as expected".into()),
            Outcome::DidNotPanic { expected: Some(e) } => {
                Verdict::Failed(format!("test did not panic as expected (expected a panic containing {e:?})"))
            }
            Outcome::WrongPanic { message, expected } => Verdict::Failed(format!(
                "panic did not contain expected string\n      panic message: {message:?}\n expected substring: {expected:?}"
            )),
        };
    }
    if f.timed_out {
        return Verdict::Failed(format!(
            "timed out after {} (PID 1 and every process of the container were killed)",
            format_duration(timeout)
        ));
    }
    if let Some(sig) = f.messages.iter().find_map(|m| match m {
        Message::FatalSignal(s) => Some(*s),
        _ => None,
    }) {
        return Verdict::Failed(format!(
            "test killed by signal {}",
            crate::sys::signal_name(sig)
        ));
    }
    if let Some(e) = &f.protocol_error {
        return Verdict::Error(Error::Protocol(e.clone()));
    }
    Verdict::Failed(match f.exit_status().code() {
        Some(code) => format!(
            "test process exited with code {code} before reporting a result (std::process::exit or similar inside the test?)"
        ),
        None => format!("test {}", describe_status(f.exit_status())),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;
    use std::time::Duration;

    use super::{judge_test, Error, Finished, Verdict};
    use crate::protocol::{Message, Outcome};

    fn finished(messages: Vec<Message>, status: ExitStatus, timed_out: bool) -> Finished {
        Finished {
            status: Some(status),
            messages,
            protocol_error: None,
            stdout: Default::default(),
            stderr: Default::default(),
            timed_out,
            limits: None,
            kept: None,
        }
    }

    const SIGKILL: i32 = libc::SIGKILL;
    const SIGABRT: i32 = libc::SIGABRT;
    const TIMEOUT: Duration = Duration::from_millis(300);

    #[test]
    fn a_timeout_before_set_up_is_done_is_nstests_error_not_the_tests() {
        let f = finished(vec![], ExitStatus::from_raw(SIGKILL), true);
        match judge_test(&f, TIMEOUT) {
            Verdict::Error(e @ Error::SetupTimedOut(d)) => {
                assert_eq!(d, TIMEOUT);
                assert!(e
                    .to_string()
                    .contains("set-up did not finish within the timeout of 300ms"));
            }
            v => panic!("{v:?}"),
        }
        // Once set up, the same timeout is the test's.
        let f = finished(
            vec![Message::SetupDone],
            ExitStatus::from_raw(SIGKILL),
            true,
        );
        match judge_test(&f, TIMEOUT) {
            Verdict::Failed(reason) => {
                assert!(reason.contains("timed out after 300ms"), "{reason}")
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_fatal_signal_before_set_up_is_done_is_a_death_during_set_up() {
        let f = finished(
            vec![Message::FatalSignal(SIGABRT)],
            ExitStatus::from_raw(SIGABRT),
            false,
        );
        assert!(matches!(
            judge_test(&f, TIMEOUT),
            Verdict::Error(Error::DiedDuringSetup(_))
        ));
        let f = finished(
            vec![Message::SetupDone, Message::FatalSignal(SIGABRT)],
            ExitStatus::from_raw(SIGABRT),
            false,
        );
        match judge_test(&f, TIMEOUT) {
            Verdict::Failed(reason) => assert_eq!(reason, "test killed by signal SIGABRT"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn an_outcome_is_judged_after_set_up() {
        let f = finished(
            vec![Message::SetupDone, Message::Outcome(Outcome::Passed)],
            ExitStatus::from_raw(0),
            false,
        );
        assert!(matches!(judge_test(&f, TIMEOUT), Verdict::Passed));
    }
}
