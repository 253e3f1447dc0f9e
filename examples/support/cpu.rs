//! What the benchmarks (`overhead`, `user_build`) read of the CPUs' time.

/// Jiffies of all CPUs so far, from the first line of `/proc/stat`.
#[derive(Clone, Copy, Debug)]
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

/// The share of the CPUs' time, in percent, that the hypervisor gave other guests between two
/// readings.
pub fn steal_percent(before: Jiffies, after: Jiffies) -> f64 {
    100.0 * (after.steal - before.steal) as f64 / (after.total - before.total).max(1) as f64
}

/// The benchmark's last line: the steal during its timed runs, with a warning when it was high.
pub fn print_steal(percent: f64) {
    println!("\nsteal: {percent:.1}% of the CPUs' time went to other guests of the hypervisor");
    if percent > 3.0 {
        println!(
            "  (a busy host: these numbers measure the neighbours too; rerun when it is quiet)"
        );
    }
}
