//! What can go wrong with a [`crate::Network`].

use std::fmt;

use nix::errno::Errno;

use crate::sys::SysError;

/// Why a network, or a host's place on it, could not be made or changed.
///
/// ```no_run
/// // Outside an nstest container (here: a plain `main`), no switch is made on the host.
/// assert!(matches!(nstest::Network::new(), Err(nstest::NetworkError::NotInContainer)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum NetworkError {
    /// `Network::new()` was called outside an nstest container, or in one that shares the
    /// host's network (`net = "host"`): its switch would be made in the host's network
    /// namespace.
    NotInContainer,
    /// The switch (a bridge, with the caller's address) could not be made.
    Bridge(SysError),
    /// A host's link to the switch (a veth pair) could not be made or attached.
    Link(SysError),
    /// A partition or heal could not change a host's neighbour table.
    Neighbour(SysError),
    /// `/etc/hosts` (the caller's, which every host on the network sees) could not be written.
    Hosts(std::io::Error),
    /// A link's faults could not be set.
    Faults(SysError),
    /// The kernel has no queueing discipline `kind` (built without `option`), which the link
    /// faults asked for need.
    MissingQdisc {
        /// `netem` or `tbf`.
        kind: &'static str,
        /// The kernel option that provides it.
        option: &'static str,
    },
    /// Link faults that make no sense (a loss over 100%, a rate of 0).
    BadFaults(String),
    /// Link faults are set on a container's link; this name is the caller's.
    NotAContainer(String),
    /// No host of this name is on the network.
    UnknownHost(String),
    /// A host of this name is already on the network.
    DuplicateHost(String),
    /// The subnet (a /24) has no address left.
    Full,
    /// A container on a network cannot also share the host's (`Net::Host`).
    HostNet,
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sys = |f: &mut fmt::Formatter<'_>, what: &str, e: &SysError| {
            write!(f, "cannot {what}: {e}")?;
            if matches!(e.errno, Errno::EPERM | Errno::EACCES) {
                f.write_str(
                    ": this needs CAP_NET_ADMIN in the caller's network namespace (inside an \
                     nstest test it has it: root, or root of the test's user namespace)",
                )?;
            }
            if e.errno == Errno::EOPNOTSUPP {
                f.write_str(
                    ": this kernel lacks bridge or veth support (CONFIG_BRIDGE, CONFIG_VETH)",
                )?;
            }
            Ok(())
        };
        match self {
            Self::NotInContainer => f.write_str(
                "nstest::Network::new() makes its switch in the caller's own network namespace, \
                 and this process has none of nstest's (it is not in an nstest container, or \
                 its container shares the host's network with net = \"host\"): the switch \
                 would change the host's network; call it inside an #[nstest::test] without \
                 net = \"host\"",
            ),
            Self::Bridge(e) => sys(f, "make the network's switch (a bridge)", e),
            Self::Link(e) => sys(f, "link the host to the network (a veth pair)", e),
            Self::Neighbour(e) => sys(f, "change a host's neighbour table (partition or heal)", e),
            Self::Hosts(e) => write!(f, "cannot write /etc/hosts with the network's hosts: {e}"),
            Self::Faults(e) => sys(f, "set the link's faults (a queueing discipline)", e),
            Self::MissingQdisc { kind, option } => write!(
                f,
                "this kernel has no `{kind}` queueing discipline ({option} is not set, and no \
                 sch_{kind} module was loaded): the link faults asked for need it; run this \
                 test on a kernel with it (`modprobe sch_{kind}`, or a distribution kernel)"
            ),
            Self::BadFaults(what) => write!(f, "bad link faults: {what}"),
            Self::NotAContainer(name) => write!(
                f,
                "{name:?} is the caller, whose side of the switch is the switch itself: set \
                 faults on the link of a container instead"
            ),
            Self::UnknownHost(name) => write!(f, "no host named {name:?} is on this network"),
            Self::DuplicateHost(name) => write!(
                f,
                "a host named {name:?} is already on this network: give each its own hostname"
            ),
            Self::Full => f.write_str("the network's subnet has no address left (253 hosts)"),
            Self::HostNet => f.write_str(
                "a container on a Network has its own network namespace: drop .net(Net::Host)",
            ),
        }
    }
}

impl std::error::Error for NetworkError {}
