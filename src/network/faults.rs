//! Link faults: delay, loss and rate on one host's link to the switch, both ways, with the
//! kernel's queueing disciplines (`netem` for delay and loss, `tbf` for rate), set through
//! rtnetlink: no `tc` binary needed.

use std::time::Duration;

use nix::errno::Errno;

use super::NetworkError;
use crate::sys::{self, Rtnl, QDISC_CHILD, QDISC_ROOT};

/// What a host's link does to its packets, each way: see [`super::Network::set_link`].
///
/// ```
/// use std::time::Duration;
/// let slow = nstest::LinkFaults::new().delay(Duration::from_millis(50)).loss(1.0).rate(1_000_000);
/// assert_ne!(slow, nstest::LinkFaults::new());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFaults {
    delay: Option<Duration>,
    loss: Option<f64>,
    rate: Option<u64>,
}

impl LinkFaults {
    /// No fault: a healthy link (what [`super::Network::set_link`] restores with it).
    pub fn new() -> Self {
        Self::default()
    }

    /// Every packet waits this long before it goes on (each way: a round trip takes twice).
    /// Needs the kernel's `netem` (`CONFIG_NET_SCH_NETEM`).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// This percentage of packets (0 to 100) is dropped, each way, at random. Needs `netem`.
    pub fn loss(mut self, percent: f64) -> Self {
        self.loss = Some(percent);
        self
    }

    /// At most this many bits per second go through, each way (`1_000_000`: 1 Mbit/s); more
    /// waits in a queue of 200 ms, and what does not fit is dropped. Needs the kernel's `tbf`
    /// (`CONFIG_NET_SCH_TBF`).
    pub fn rate(mut self, bits_per_second: u64) -> Self {
        self.rate = Some(bits_per_second);
        self
    }

    pub(super) fn check(&self) -> Result<(), NetworkError> {
        match (self.loss, self.rate) {
            (Some(l), _) if !(0.0..=100.0).contains(&l) => Err(NetworkError::BadFaults(format!(
                "loss({l}): a percentage from 0 to 100"
            ))),
            (_, Some(0)) => Err(NetworkError::BadFaults(
                "rate(0): at least one bit per second".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Replaces the faults of the interface `index` of the caller's network namespace.
    pub(super) fn apply(&self, index: u32) -> Result<(), NetworkError> {
        let mut rtnl = Rtnl::open().map_err(NetworkError::Faults)?;
        rtnl.del_root_qdisc(index).map_err(NetworkError::Faults)?;
        let netem = self.delay.is_some() || self.loss.is_some();
        let missing = |kind: &'static str, option: &'static str| {
            move |e: sys::SysError| match e.errno {
                Errno::ENOENT => NetworkError::MissingQdisc { kind, option },
                _ => NetworkError::Faults(e),
            }
        };
        if netem {
            let delay = self
                .delay
                .unwrap_or_default()
                .as_nanos()
                .min(i64::MAX as u128) as u64;
            let (handle, parent) = QDISC_ROOT;
            rtnl.add_netem((index, handle, parent), delay, self.loss.unwrap_or(0.0))
                .map_err(missing("netem", "CONFIG_NET_SCH_NETEM"))?;
        }
        if let Some(rate) = self.rate {
            let (handle, parent) = if netem { QDISC_CHILD } else { QDISC_ROOT };
            rtnl.add_tbf((index, handle, parent), rate)
                .map_err(missing("tbf", "CONFIG_NET_SCH_TBF"))?;
        }
        Ok(())
    }
}
