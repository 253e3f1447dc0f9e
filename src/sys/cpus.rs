//! Which CPUs a process runs on: a container cloned before `main` is started on another CPU
//! than its parent's ([`Elsewhere`]), then takes its parent's CPUs back.

use nix::sched::CpuSet;
use nix::unistd::Pid;

use super::{Result, SysError};

/// The CPUs this thread may run on.
pub fn cpu_mask() -> Option<CpuSet> {
    nix::sched::sched_getaffinity(Pid::from_raw(0)).ok()
}

/// Where a process about to be cloned is to start: off the CPU its parent runs on, on the other
/// CPUs the parent may use. Cloned, a child is often woken on its parent's CPU: there it either
/// waits while the parent goes on, or takes the CPU from the parent until it blocks, though
/// another CPU is idle. Both sides move it: the parent once the clone returns ([`Self::send`]),
/// the child first thing ([`Self::leave`]), whichever runs first. (Measured in a process that
/// runs one test: in two runs of three the container took its parent's CPU for about 0.6 ms.)
#[derive(Clone, Copy, Debug)]
pub struct Elsewhere {
    parent_cpu: i32,
    others: CpuSet,
}

impl Elsewhere {
    /// Before the clone, in the parent: `None` where `mask` (the parent's CPUs) has no other
    /// CPU than the one it runs on.
    pub fn before_clone(mask: &CpuSet) -> Option<Self> {
        // SAFETY: sched_getcpu takes nothing and returns a CPU number or -1.
        let here = unsafe { libc::sched_getcpu() };
        let mut others = *mask;
        if here < 0 || others.unset(here as usize).is_err() {
            return None;
        }
        let any = (0..CpuSet::count()).any(|c| others.is_set(c).unwrap_or(false));
        any.then_some(Self {
            parent_cpu: here,
            others,
        })
    }

    /// In the parent: moves `pid`, just cloned, to the other CPUs (`sched_setaffinity`). Whether
    /// it was moved (it then takes the parent's CPUs back itself: [`set_cpu_mask`]).
    pub fn send(&self, pid: Pid) -> bool {
        nix::sched::sched_setaffinity(pid, &self.others).is_ok()
    }

    /// In the child, first thing: moves itself to the other CPUs if it runs on its parent's
    /// (it takes the parent's CPUs back itself later: [`set_cpu_mask`]).
    pub fn leave(&self) {
        // SAFETY: sched_getcpu takes nothing and returns a CPU number or -1.
        if unsafe { libc::sched_getcpu() } == self.parent_cpu {
            let _ = nix::sched::sched_setaffinity(Pid::from_raw(0), &self.others);
        }
    }
}

/// Sets the CPUs this thread may run on.
pub fn set_cpu_mask(mask: &CpuSet) -> Result<()> {
    nix::sched::sched_setaffinity(Pid::from_raw(0), mask)
        .map_err(|e| SysError::new("sched_setaffinity(0)", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the calling thread to `cpu` and waits until it runs there.
    fn pin_to(cpu: usize) {
        let mut one = CpuSet::new();
        one.set(cpu).unwrap();
        set_cpu_mask(&one).unwrap();
        // SAFETY: sched_getcpu takes nothing.
        while unsafe { libc::sched_getcpu() } != cpu as i32 {
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_clone_that_runs_on_its_parents_cpu_leaves_it_for_the_others() {
        let mask = cpu_mask().unwrap();
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|c| mask.is_set(*c).unwrap_or(false))
            .collect();
        // On a thread of its own: the test moves the thread it runs on.
        std::thread::spawn(move || {
            pin_to(cpus[0]);
            let mut one = CpuSet::new();
            one.set(cpus[0]).unwrap();
            assert!(
                Elsewhere::before_clone(&one).is_none(),
                "no other CPU in the mask"
            );
            if cpus.len() < 2 {
                return; // one CPU: nowhere else to go
            }
            let elsewhere = Elsewhere::before_clone(&mask).unwrap();
            // As the clone would, on its parent's CPU: it leaves it.
            elsewhere.leave();
            // SAFETY: sched_getcpu takes nothing.
            let now = unsafe { libc::sched_getcpu() };
            assert_ne!(now, cpus[0] as i32, "still on the parent's CPU");
            let after = cpu_mask().unwrap();
            assert!(!after.is_set(cpus[0]).unwrap());
            assert!(after.is_set(cpus[1]).unwrap());
            // Elsewhere already: it stays where it is, with the same mask.
            elsewhere.leave();
            assert_eq!(cpu_mask().unwrap(), after);
        })
        .join()
        .unwrap();
    }
}
