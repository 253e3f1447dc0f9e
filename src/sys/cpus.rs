//! Which CPUs a process runs on: a container cloned before `main` is started on another CPU
//! than its parent's, then takes its parent's CPUs back.

use nix::sched::CpuSet;
use nix::unistd::Pid;

use super::{Result, SysError};

/// The CPUs this thread may run on.
pub fn cpu_mask() -> Option<CpuSet> {
    nix::sched::sched_getaffinity(Pid::from_raw(0)).ok()
}

/// Moves `pid`, just cloned and not yet run, to the CPUs of `mask` other than this thread's own
/// (`sched_setaffinity`), if there are any: a new process often waits for its first run on its
/// parent's CPU while the parent goes on, though another CPU is idle. Whether it was moved (it
/// then takes `mask` back itself: [`set_cpu_mask`]).
pub fn start_elsewhere(pid: Pid, mask: &CpuSet) -> bool {
    // SAFETY: sched_getcpu takes nothing and returns a CPU number or -1.
    let here = unsafe { libc::sched_getcpu() };
    let mut others = *mask;
    if here < 0 || others.unset(here as usize).is_err() {
        return false;
    }
    let any = (0..CpuSet::count()).any(|c| others.is_set(c).unwrap_or(false));
    any && nix::sched::sched_setaffinity(pid, &others).is_ok()
}

/// Sets the CPUs this thread may run on.
pub fn set_cpu_mask(mask: &CpuSet) -> Result<()> {
    nix::sched::sched_setaffinity(Pid::from_raw(0), mask)
        .map_err(|e| SysError::new("sched_setaffinity(0)", e))
}
