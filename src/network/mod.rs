//! [`Network`]: a virtual switch inside a test, and the containers on it.
//!
//! The switch is a bridge (`nst0`, `nst1`, …) made in the caller's own network namespace (a
//! test's: nothing of it reaches the host's), with the caller's address on it (`10.88.<n>.1/24`).
//! A container on it gets a veth pair: one end on the bridge, named after the network and the
//! host's address (`nst0h2`), the other made directly in the container's namespace as `eth0`
//! while the container is held before its set-up, which gives it its address and brings it up.
//!
//! Names: the caller's `/etc/hosts` lists every host of every network of the process, and each
//! container sees that same file, bound read-only: it is rewritten in place (same inode) when a
//! host joins, so one started later is reachable by name from those started before.
//!
//! A partition gives each host of one group a permanent neighbour entry for each host of the
//! other with a hardware address nobody has: frames between them go nowhere, as on a cut cable
//! (a connection times out; nothing is refused). Healing deletes those entries, and the next
//! packet resolves the real address again.

mod error;
mod faults;

pub use error::NetworkError;
pub use faults::LinkFaults;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::protocol::InterfaceSpec;
use crate::sys::{self, Rtnl};

/// The hardware address a partition points hosts at: locally administered, never assigned.
const NOWHERE: [u8; 6] = [0x02, 0x6e, 0x73, 0x74, 0x00, 0x00];

/// Networks made by this process: the `n` of `nst<n>` and `10.88.<n>.0/24`.
static MADE: AtomicU8 = AtomicU8::new(0);

/// Whether this process has written its first host into `/etc/hosts` (which replaced the
/// file's text); the lock keeps the writes of concurrent joins apart.
static HOSTS_WRITTEN: Mutex<bool> = Mutex::new(false);

/// A virtual switch with an IPv4 subnet, inside the caller's network namespace (in a test: the
/// test's own; it goes away with it). The caller has an address on it ([`Network::ip`]);
/// containers join with [`crate::Container::network`] and reach each other, and the caller, by
/// hostname.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Inside an #[nstest::test]:
/// let net = nstest::Network::new()?;
/// let web = nstest::Container::new("httpd")
///     .args(["-f", "-p", "80", "-h", "/etc"])
///     .hostname("web")
///     .network(&net)
///     .spawn()?;
/// let page = nstest::Container::new("wget")
///     .args(["-q", "-O", "-", "http://web/hostname"])
///     .network(&net)
///     .output()?;
/// assert_eq!(page.stdout, b"web\n");
/// net.partition(&["web"], &[&nstest::hostname()])?; // the caller is cut off from web
/// net.heal()?;
/// # drop(web); Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Network(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    bridge: String,
    index: u32,
    /// The first three octets of the /24.
    subnet: [u8; 3],
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    members: Vec<Member>,
    /// The last octet the next host gets.
    next: u8,
    /// Neighbour entries a partition set: `(member, address)`.
    cuts: Vec<(usize, Ipv4Addr)>,
}

impl State {
    /// The index of the member named `name` that is on the network now (the caller, or a
    /// container that has joined).
    fn member(&self, name: &str) -> Result<usize, NetworkError> {
        self.members
            .iter()
            .position(|m| m.name == name && matches!(m.at, Place::Caller | Place::Host(_)))
            .ok_or_else(|| NetworkError::UnknownHost(name.to_string()))
    }
}

#[derive(Debug)]
struct Member {
    name: String,
    ip: Ipv4Addr,
    at: Place,
}

#[derive(Debug)]
enum Place {
    /// The caller: its side of the switch is the bridge itself.
    Caller,
    /// Reserved for a container that is being started.
    Joining,
    /// A container: an fd of its network namespace, whose `eth0` is its link.
    Host(OwnedFd),
    /// A container that never joined (its start failed).
    Gone,
}

impl Network {
    /// Makes the switch and gives the caller the subnet's first address, under its hostname.
    /// Only inside an nstest container (a test), so that nothing reaches the host's network:
    /// elsewhere it is [`NetworkError::NotInContainer`].
    pub fn new() -> Result<Self, NetworkError> {
        if !crate::reexec::inside_container() {
            return Err(NetworkError::NotInContainer);
        }
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let bridge = format!("nst{n}");
        let subnet = [10, 88, n];
        let ip = Ipv4Addr::new(10, 88, n, 1);
        let made = (|| {
            let mut rtnl = Rtnl::open()?;
            rtnl.add_bridge(&bridge)?;
            let index = sys::if_index(&bridge)?;
            rtnl.add_addr(index, ip, 24)?;
            rtnl.link_up(index, None)?;
            Ok(index)
        })();
        let index = made.map_err(NetworkError::Bridge)?;
        let name = hostname();
        add_host(&name, ip)?;
        Ok(Self(Arc::new(Shared {
            bridge,
            index,
            subnet,
            state: Mutex::new(State {
                members: vec![Member {
                    name,
                    ip,
                    at: Place::Caller,
                }],
                next: 2,
                cuts: Vec::new(),
            }),
        })))
    }

    /// The caller's address on the network.
    pub fn ip(&self) -> IpAddr {
        let [a, b, c] = self.0.subnet;
        IpAddr::V4(Ipv4Addr::new(a, b, c, 1))
    }

    /// Drops all traffic between the hosts named in `a` and those named in `b` (hostnames of
    /// containers on this network, or the caller's, [`crate::hostname`]), both ways, until
    /// [`Network::heal`]. Traffic within each group, and with hosts in neither, still flows.
    /// A packet to the other side goes nowhere, as on a cut cable: a connection attempt times
    /// out, one open stalls.
    pub fn partition(&self, a: &[&str], b: &[&str]) -> Result<(), NetworkError> {
        let mut state = self.state();
        let a = a
            .iter()
            .map(|n| state.member(n))
            .collect::<Result<Vec<_>, _>>()?;
        let b = b
            .iter()
            .map(|n| state.member(n))
            .collect::<Result<Vec<_>, _>>()?;
        for &x in &a {
            for &y in &b {
                if x == y {
                    continue;
                }
                for (from, to) in [(x, y), (y, x)] {
                    let ip = state.members[to].ip;
                    self.neighbour(&state.members[from], ip, Some(NOWHERE))?;
                    state.cuts.push((from, ip));
                }
            }
        }
        Ok(())
    }

    /// Ends every partition of this network: each host resolves the others' addresses again
    /// with its next packet.
    pub fn heal(&self) -> Result<(), NetworkError> {
        let mut state = self.state();
        // Every cut is tried; one that could not be undone stays listed for the next `heal`.
        let mut first_error = None;
        for (from, ip) in std::mem::take(&mut state.cuts) {
            if let Err(e) = self.neighbour(&state.members[from], ip, None) {
                state.cuts.push((from, ip));
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Gives the link of the container named `host` these faults, each way (towards it, on the
    /// switch's end; from it, on its `eth0`), in place of any it had; `LinkFaults::new()`
    /// makes it healthy again.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let net = nstest::Network::new()?;
    /// use std::time::Duration;
    /// net.set_link("db", nstest::LinkFaults::new().delay(Duration::from_millis(200)))?;
    /// net.set_link("db", nstest::LinkFaults::new().rate(1_000_000).loss(5.0))?;
    /// net.set_link("db", nstest::LinkFaults::new())?;
    /// # Ok(()) }
    /// ```
    ///
    /// A kernel without the queueing discipline a fault needs (`netem` for delay and loss, `tbf`
    /// for rate) is [`NetworkError::MissingQdisc`], which names the kernel option.
    pub fn set_link(&self, host: &str, faults: LinkFaults) -> Result<(), NetworkError> {
        faults.check()?;
        let state = self.state();
        let member = &state.members[state.member(host)?];
        let Place::Host(netns) = &member.at else {
            return Err(NetworkError::NotAContainer(host.to_string()));
        };
        let end = format!("{}h{}", self.0.bridge, member.ip.octets()[3]);
        faults.apply(sys::if_index(&end).map_err(NetworkError::Faults)?)?;
        sys::in_netns(netns, || {
            Ok(sys::if_index("eth0")
                .map_err(NetworkError::Faults)
                .and_then(|index| faults.apply(index)))
        })
        .map_err(NetworkError::Faults)?
    }

    /// Sets (or, with `None`, deletes) `member`'s neighbour entry for `ip`.
    fn neighbour(
        &self,
        member: &Member,
        ip: Ipv4Addr,
        mac: Option<[u8; 6]>,
    ) -> Result<(), NetworkError> {
        let r = match &member.at {
            Place::Caller => Rtnl::open().and_then(|mut r| r.set_neighbour(self.0.index, ip, mac)),
            Place::Host(netns) => sys::in_netns(netns, || {
                let index = sys::if_index("eth0")?;
                Rtnl::open()?.set_neighbour(index, ip, mac)
            }),
            Place::Joining | Place::Gone => Ok(()),
        };
        r.map_err(NetworkError::Neighbour)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves a place for a container named `name` (or, with `None`, `host<n>` after its
    /// address's last octet).
    pub(crate) fn reserve(&self, name: Option<&str>) -> Result<Attachment, NetworkError> {
        let mut state = self.state();
        if state.next == 255 {
            return Err(NetworkError::Full);
        }
        let octet = state.next;
        let name = name.map_or_else(|| format!("host{octet}"), str::to_string);
        if state
            .members
            .iter()
            .any(|m| m.name == name && !matches!(m.at, Place::Gone))
        {
            return Err(NetworkError::DuplicateHost(name));
        }
        state.next += 1;
        let [a, b, c] = self.0.subnet;
        let ip = Ipv4Addr::new(a, b, c, octet);
        state.members.push(Member {
            name: name.clone(),
            ip,
            at: Place::Joining,
        });
        Ok(Attachment {
            net: self.clone(),
            slot: state.members.len() - 1,
            name,
            ip,
            joined: AtomicBool::new(false),
        })
    }
}

/// A container's reserved place on a network, until it has joined.
#[derive(Debug)]
pub(crate) struct Attachment {
    net: Network,
    slot: usize,
    name: String,
    ip: Ipv4Addr,
    joined: AtomicBool,
}

impl Attachment {
    /// The container's hostname on the network.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The container's address.
    pub(crate) fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// What the child configures: `eth0`'s address.
    pub(crate) fn interface(&self) -> InterfaceSpec {
        InterfaceSpec {
            addr: self.ip,
            prefix: 24,
        }
    }

    /// Links the held container `pid` to the switch: a veth pair whose `eth0` end is made in
    /// its network namespace.
    pub(crate) fn attach(&self, pid: i32) -> Result<(), NetworkError> {
        let shared = &self.net.0;
        let end = format!("{}h{}", shared.bridge, self.ip.octets()[3]);
        let linked = (|| {
            let mut rtnl = Rtnl::open()?;
            rtnl.add_veth(&end, "eth0", pid)?;
            rtnl.link_up(sys::if_index(&end)?, Some(shared.index))?;
            sys::netns_of(pid)
        })();
        let netns = linked.map_err(NetworkError::Link)?;
        self.net.state().members[self.slot].at = Place::Host(netns);
        self.joined.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Puts the container's name into `/etc/hosts`: once its set-up is done, so that a name
    /// that resolves has its address up (a packet sent before would wait for ARP, seconds).
    pub(crate) fn publish(&self) -> Result<(), NetworkError> {
        add_host(&self.name, self.ip)
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if !self.joined.load(Ordering::Relaxed) {
            self.net.state().members[self.slot].at = Place::Gone;
        }
    }
}

/// This process's hostname (in a test: the test's, which is its name on a [`Network`]).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Adds a host to `/etc/hosts`, in place (same inode: the containers
/// have it bound). The first host replaces the file's text (the caller's `127.0.1.1` line must
/// go: the file is every host's); later ones are appended, one line in one write, so that a
/// reader never sees the file shorter than it was.
fn add_host(name: &str, ip: Ipv4Addr) -> Result<(), NetworkError> {
    use std::io::Write;
    let mut written = HOSTS_WRITTEN.lock().unwrap_or_else(|e| e.into_inner());
    let line = format!("{ip}\t{name}\n");
    let mut file = std::fs::OpenOptions::new();
    let text = if !*written {
        file.write(true).create(true).truncate(true);
        format!(
            "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost ip6-localhost ip6-loopback\n{line}"
        )
    } else {
        file.append(true);
        line
    };
    file.open("/etc/hosts")
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(NetworkError::Hosts)?;
    *written = true;
    Ok(())
}
