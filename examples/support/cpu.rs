//! What the benchmarks (`overhead`, `user_build`) read of the CPUs' time.

/// Jiffies of all CPUs so far, from the first line of `/proc/stat`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Jiffies {
    /// Spent running this machine's work (user, system, interrupts), steal not counted.
    pub busy: u64,
    /// Everything, idle and steal included.
    pub total: u64,
    /// Taken by the hypervisor for others while this machine had work (a VM's "steal"): a
    /// benchmark run while it is high measures the neighbours too.
    pub steal: u64,
}

/// The jiffies counted so far.
pub fn cpu_jiffies() -> Jiffies {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let total: u64 = v.iter().take(8).sum();
    Jiffies {
        busy: total - at(3) - at(4) - at(7),
        total,
        steal: at(7),
    }
}
