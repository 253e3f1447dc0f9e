//! The messages that cross the container boundary, as bytes.
//!
//! - **Parent → child**: a [`ChildSpec`] (what to set up and what to run), hex-encoded: sent to
//!   the fork server inside a `ForkRequest` (with the fds to place), or, without the server, in
//!   the environment variable `reexec::CONTAINER_ENV` of the re-executed binary.
//! - **Child → parent**: a stream of [`Message`] frames on a dedicated pipe (`reexec::REPORT_FD` in the
//!   child), never on stdout/stderr, so nothing a test prints can forge a result.
//!
//! A frame is `MAGIC (4) | VERSION (1) | kind (1) | payload length (u32 LE) | payload`. Strings
//! are `u32 LE length | UTF-8 bytes`. The decoder is incremental and refuses anything it does
//! not understand rather than guessing.
//!
//! By format: `report` (the child's frames), `child_spec` (what the child sets up and runs),
//! `fork_request` (a request to the fork server); `wire` holds the encoding they share.

mod child_spec;
mod fork_request;
mod report;
mod wire;

pub(crate) use child_spec::hex;
pub use child_spec::{BaseSpec, ChildSpec, InterfaceSpec, RunSpec};
pub(crate) use fork_request::{ForkRequest, MAX_FORK_REQUEST};
pub use report::{fatal_signal_frame, Decoder, Message, Outcome, ProtocolError, Step, VERSION};
