//! The container of a process that runs one test, cloned by the harness before `main` (see
//! `parent::prefork`) and set up while the harness starts: it makes its network namespace, and
//! meanwhile the harness works out the test's spec (`runner::spec_ahead`) and sends it on
//! `AHEAD_FD` when it can be known that early; the container sets itself up for it, then waits
//! for the harness's request there. The harness sends its request there only if the spec it
//! then has is the same (else it ends this container and makes the test's as any other).

use std::os::fd::AsFd;

use crate::protocol::{ChildSpec, ForkRequest, Step, MAX_FORK_REQUEST};
use crate::reexec::AHEAD_FD;
use crate::sys;

/// What the harness sends first instead of a spec when it has none to send (the container then
/// sets itself up for the spec that comes with the request).
pub(crate) const NO_SPEC: &[u8] = b"-";

/// The container side of a container cloned ahead, `cpus` the harness's CPUs (it may be started
/// on others). Never returns; ends if the harness goes without a request.
pub(crate) fn run(cpus: Option<nix::sched::CpuSet>) -> ! {
    let Some(channel) = sys::inherited_fd(AHEAD_FD) else {
        sys::exit_now(1)
    };
    // Cloned before Rust's runtime ignored SIGPIPE in the harness.
    sys::ignore_sigpipe();
    // Its network namespace before any thread (a namespace is each thread's own), while the
    // harness works out the spec.
    if sys::unshare_net().is_err() {
        sys::exit_now(1) // the harness's request finds no one: it makes the container itself
    }
    let spec = match sys::recv_message(channel.as_fd(), MAX_FORK_REQUEST) {
        Ok((first, _)) if !first.is_empty() && first != NO_SPEC => {
            let Ok(hex) = String::from_utf8(first) else {
                sys::exit_now(1)
            };
            match ChildSpec::decode(&hex) {
                Ok(spec) => Some((spec, hex)),
                Err(_) => sys::exit_now(1),
            }
        }
        Ok((first, _)) if !first.is_empty() => None,
        _ => sys::exit_now(0),
    };
    // The harness's CPUs again, before any thread (the harness started this process on its
    // other CPUs, and has done so by the time it sends the spec).
    if let Some(cpus) = &cpus {
        let _ = sys::set_cpu_mask(cpus);
    }
    // Set up before its request, it starts its test's thread before that: its cgroup namespace
    // (the harness's cgroup, which is this one's, as its root) is made now, before the thread.
    let spec = spec.filter(|_| sys::unshare_cgroup().is_ok());
    // What the set-up has to tell waits for the report fd, which comes with the request.
    let mut told = Vec::new();
    let set_up = spec.map(|(spec, hex)| (super::set_up(spec, &mut |m| told.push(m)), hex));
    let (buf, fds) = match sys::recv_message(channel.as_fd(), MAX_FORK_REQUEST) {
        Ok((buf, fds)) if !buf.is_empty() => (buf, fds),
        _ => sys::exit_now(0),
    };
    let req = match ForkRequest::decode(&buf) {
        Ok(req) if req.fd_count() == fds.len() => req,
        _ => sys::exit_now(1),
    };
    let mut plan = super::forkserver::plan(&req, &fds);
    if set_up.is_some() {
        plan.cgroup_ns = None; // made above
    }
    // The preparation closes every fd but the container's own, these among them.
    std::mem::forget((channel, fds));
    sys::prepare_ahead(&plan);
    match set_up {
        Some((set_up, hex)) if hex == req.spec => super::enter_set_up(set_up, told),
        // The harness sends its request here only for the spec it sent first.
        Some(_) => super::refuse(
            Step::ReadSpec,
            "the spec of the container set up ahead is not the harness's".into(),
            libc::EINVAL,
        ),
        None => super::forkserver::run_container(req.spec),
    }
}
