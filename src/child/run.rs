//! Running the one test inside the container and judging it as libtest would.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;

use crate::protocol::Outcome;
use crate::registry::{ShouldPanic, TestDesc};

static LAST_PANIC_LOCATION: Mutex<Option<String>> = Mutex::new(None);

/// Runs `desc` on this thread (the container's PID 1) and judges the result against
/// `#[should_panic]`.
pub fn run_test(desc: &TestDesc) -> Outcome {
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if let Some(l) = info.location() {
            *LAST_PANIC_LOCATION
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(l.to_string());
        }
        default_hook(info);
    }));
    let run = desc.run;
    let result = panic::catch_unwind(AssertUnwindSafe(|| __rust_begin_short_backtrace(run)));
    let location = LAST_PANIC_LOCATION
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    match (result, desc.should_panic) {
        (Ok(Ok(())), ShouldPanic::No) => Outcome::Passed,
        (Ok(Err(debug)), ShouldPanic::No) => Outcome::ReturnedErr { debug },
        (Ok(_), ShouldPanic::Yes) => Outcome::DidNotPanic { expected: None },
        (Ok(_), ShouldPanic::YesWithMessage(m)) => Outcome::DidNotPanic {
            expected: Some(m.to_string()),
        },
        (Err(payload), ShouldPanic::No) => Outcome::Panicked {
            message: payload_text(&*payload),
            location,
        },
        (Err(_), ShouldPanic::Yes) => Outcome::Passed,
        (Err(payload), ShouldPanic::YesWithMessage(expected)) => {
            let message = payload_text(&*payload);
            if message.contains(expected) {
                Outcome::Passed
            } else {
                Outcome::WrongPanic {
                    message,
                    expected: expected.to_string(),
                }
            }
        }
    }
}

/// Calls the test under the name Rust's short backtraces stop at (libtest's runner has a
/// function of the same name): with `RUST_BACKTRACE=1`, a panic's backtrace ends at the test
/// function, as in-process, without nstest's frames below it.
#[inline(never)]
fn __rust_begin_short_backtrace(run: fn() -> Result<(), String>) -> Result<(), String> {
    let result = run();
    // Keeps this frame from being a tail call, so that it stays on the stack.
    std::hint::black_box(());
    result
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}
