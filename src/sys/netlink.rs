//! The few rtnetlink requests a network of containers needs: a bridge, a veth pair whose peer is
//! made in another process's network namespace, a link's master and state, an IPv4 address, and
//! permanent neighbour entries (how a partition drops traffic). Each request is sent on a
//! `NETLINK_ROUTE` socket of the namespace it acts in and waits for the kernel's acknowledgement,
//! so a failure comes back as the request's errno.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;

use super::{open_fd, Result, SysError};

// From <linux/if_link.h>, <linux/veth.h>, <linux/neighbour.h> (libc lacks some).
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
const NUD_PERMANENT: u16 = 0x80;
const NLA_F_NESTED: u16 = 0x8000;
// From <linux/rtnetlink.h> and <linux/pkt_sched.h>.
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TC_H_ROOT: u32 = 0xffff_ffff;
const TCA_NETEM_LATENCY64: u16 = 10;
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
const TC_LINKLAYER_ETHERNET: u8 = 1;

/// A request being built: the header, then the family's fixed part, then attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16) -> Self {
        let mut b = vec![0u8; 16];
        b[4..6].copy_from_slice(&kind.to_ne_bytes());
        let flags = flags | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16;
        b[6..8].copy_from_slice(&flags.to_ne_bytes());
        Self(b)
    }

    /// `struct ifinfomsg`: family, type, index, flags, change mask.
    fn ifinfo(mut self, index: u32, flags: u32, change: u32) -> Self {
        self.0.extend_from_slice(&ifinfo(index, flags, change));
        self
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.pad();
    }

    fn name(&mut self, kind: u16, name: &str) {
        let mut z = name.as_bytes().to_vec();
        z.push(0);
        self.attr(kind, &z);
    }

    /// Starts a nested attribute; [`Msg::end`] fills in its length.
    fn begin(&mut self, kind: u16) -> usize {
        self.begin_raw(kind | NLA_F_NESTED)
    }

    /// Starts an attribute whose payload is written piece by piece (netem's options: a struct
    /// followed by attributes, not flagged nested).
    fn begin_raw(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.0.extend_from_slice(&[0, 0]);
        self.0.extend_from_slice(&kind.to_ne_bytes());
        at
    }

    /// `struct tcmsg`: family, interface, handle, parent.
    fn tcmsg(mut self, index: u32, handle: u32, parent: u32) -> Self {
        self.0.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        for v in [index, handle, parent, 0] {
            self.0.extend_from_slice(&v.to_ne_bytes());
        }
        self
    }

    fn end(&mut self, at: usize) {
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.0
    }
}

fn ifinfo(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = libc::AF_UNSPEC as u8;
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// An rtnetlink socket of one network namespace.
pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    /// A socket of the caller's network namespace.
    pub fn open() -> Result<Self> {
        // SAFETY: socket(2) with constant arguments; the fd is owned right after.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(SysError::new(
                "socket(AF_NETLINK, NETLINK_ROUTE)",
                Errno::last(),
            ));
        }
        // SAFETY: `fd` is a new fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, seq: 0 })
    }

    /// Sends `msg` and waits for its acknowledgement; `call` names it in an error.
    fn request(&mut self, call: impl FnOnce() -> String, msg: Msg) -> Result<()> {
        self.seq += 1;
        let bytes = msg.finish(self.seq);
        // SAFETY: sends `bytes.len()` bytes from a live buffer on an fd this owns; a netlink
        // socket's default destination is the kernel.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if n < 0 {
            return Err(SysError::new(call(), Errno::last()));
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: receives into a live buffer of the given length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = Errno::last();
                if e == Errno::EINTR {
                    continue;
                }
                return Err(SysError::new(call(), e));
            }
            let mut rest = &buf[..n as usize];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
                let kind = u16::from_ne_bytes(rest[4..6].try_into().expect("2 bytes"));
                let seq = u32::from_ne_bytes(rest[8..12].try_into().expect("4 bytes"));
                if len < 16 || len > rest.len() {
                    return Err(SysError::new(call(), Errno::EBADMSG));
                }
                if kind == libc::NLMSG_ERROR as u16 && seq == self.seq && len >= 20 {
                    let code = i32::from_ne_bytes(rest[16..20].try_into().expect("4 bytes"));
                    return match code {
                        0 => Ok(()),
                        c => Err(SysError::new(call(), Errno::from_raw(-c))),
                    };
                }
                rest = &rest[((len + 3) & !3).min(rest.len())..];
            }
        }
    }

    /// `ip link add <name> type bridge`.
    pub fn add_bridge(&mut self, name: &str) -> Result<()> {
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut m = Msg::new(libc::RTM_NEWLINK, flags).ifinfo(0, 0, 0);
        m.name(IFLA_IFNAME, name);
        let info = m.begin(IFLA_LINKINFO);
        m.name(IFLA_INFO_KIND, "bridge");
        m.end(info);
        self.request(|| format!("RTM_NEWLINK({name:?}, bridge)"), m)
    }

    /// `ip link add <name> type veth peer name <peer> netns <pid>`: the peer is made in the
    /// network namespace of `pid` (as this process's PID namespace numbers it).
    pub fn add_veth(&mut self, name: &str, peer: &str, pid: i32) -> Result<()> {
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut m = Msg::new(libc::RTM_NEWLINK, flags).ifinfo(0, 0, 0);
        m.name(IFLA_IFNAME, name);
        let info = m.begin(IFLA_LINKINFO);
        m.name(IFLA_INFO_KIND, "veth");
        let data = m.begin(IFLA_INFO_DATA);
        let p = m.begin(VETH_INFO_PEER);
        m.0.extend_from_slice(&ifinfo(0, 0, 0));
        m.name(IFLA_IFNAME, peer);
        m.attr(IFLA_NET_NS_PID, &(pid as u32).to_ne_bytes());
        m.end(p);
        m.end(data);
        m.end(info);
        self.request(
            || format!("RTM_NEWLINK({name:?}, veth peer {peer:?} in the netns of pid {pid})"),
            m,
        )
    }

    /// `ip link set <index> [master <bridge>] up`.
    pub fn link_up(&mut self, index: u32, master: Option<u32>) -> Result<()> {
        let up = libc::IFF_UP as u32;
        let mut m = Msg::new(libc::RTM_NEWLINK, 0).ifinfo(index, up, up);
        if let Some(b) = master {
            m.attr(IFLA_MASTER, &b.to_ne_bytes());
        }
        self.request(
            || format!("RTM_NEWLINK(index {index}, master {master:?}, up)"),
            m,
        )
    }

    /// `ip addr add <addr>/<prefix> dev <index>`.
    pub fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut m = Msg::new(libc::RTM_NEWADDR, flags);
        m.0.extend_from_slice(&[libc::AF_INET as u8, prefix, 0, 0]);
        m.0.extend_from_slice(&index.to_ne_bytes());
        m.attr(IFA_LOCAL, &addr.octets());
        m.attr(IFA_ADDRESS, &addr.octets());
        self.request(|| format!("RTM_NEWADDR({addr}/{prefix}, index {index})"), m)
    }

    /// `ip route add default via <gateway> dev <index>`.
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<()> {
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut m = Msg::new(libc::RTM_NEWROUTE, flags);
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type; flags.
        m.0.extend_from_slice(&[
            libc::AF_INET as u8,
            0,
            0,
            0,
            libc::RT_TABLE_MAIN,
            libc::RTPROT_BOOT,
            libc::RT_SCOPE_UNIVERSE,
            libc::RTN_UNICAST,
        ]);
        m.0.extend_from_slice(&0u32.to_ne_bytes());
        m.attr(libc::RTA_GATEWAY, &gateway.octets());
        m.attr(libc::RTA_OIF, &index.to_ne_bytes());
        self.request(
            || format!("RTM_NEWROUTE(default via {gateway}, index {index})"),
            m,
        )
    }

    /// `ip neigh replace <ip> lladdr <mac> dev <index> nud permanent`, or with `mac` `None`,
    /// `ip neigh del <ip> dev <index>` (a missing entry is no error).
    pub fn set_neighbour(&mut self, index: u32, ip: Ipv4Addr, mac: Option<[u8; 6]>) -> Result<()> {
        let (kind, flags) = match mac {
            Some(_) => (
                libc::RTM_NEWNEIGH,
                (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16,
            ),
            None => (libc::RTM_DELNEIGH, 0),
        };
        let mut m = Msg::new(kind, flags);
        m.0.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
        m.0.extend_from_slice(&index.to_ne_bytes());
        m.0.extend_from_slice(&NUD_PERMANENT.to_ne_bytes());
        m.0.extend_from_slice(&[0, 0]);
        m.attr(NDA_DST, &ip.octets());
        if let Some(mac) = mac {
            m.attr(NDA_LLADDR, &mac);
        }
        match self.request(
            || {
                format!(
                    "RTM_{}NEIGH({ip}, index {index})",
                    if mac.is_some() { "NEW" } else { "DEL" }
                )
            },
            m,
        ) {
            Err(e) if mac.is_none() && e.errno == Errno::ENOENT => Ok(()),
            r => r,
        }
    }
}

impl Rtnl {
    /// `tc qdisc del dev <index> root` (none there is no error).
    pub fn del_root_qdisc(&mut self, index: u32) -> Result<()> {
        let m = Msg::new(libc::RTM_DELQDISC, 0).tcmsg(index, 0, TC_H_ROOT);
        match self.request(|| format!("RTM_DELQDISC(index {index}, root)"), m) {
            Err(e) if matches!(e.errno, Errno::ENOENT | Errno::EINVAL) => Ok(()),
            r => r,
        }
    }

    /// `tc qdisc add dev <index> parent <parent> handle <handle> netem delay <delay_ns>ns
    /// loss <loss>%`.
    pub fn add_netem(&mut self, at: (u32, u32, u32), delay_ns: u64, loss: f64) -> Result<()> {
        let (index, handle, parent) = at;
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut m = Msg::new(libc::RTM_NEWQDISC, flags).tcmsg(index, handle, parent);
        m.name(TCA_KIND, "netem");
        let opts = m.begin_raw(TCA_OPTIONS);
        // struct tc_netem_qopt: latency (ticks; LATENCY64 below instead), limit (packets),
        // loss (of u32::MAX), gap, duplicate, jitter.
        let loss = (loss / 100.0 * u32::MAX as f64) as u32;
        for v in [0u32, 1000, loss, 0, 0, 0] {
            m.0.extend_from_slice(&v.to_ne_bytes());
        }
        m.attr(TCA_NETEM_LATENCY64, &(delay_ns as i64).to_ne_bytes());
        m.end(opts);
        self.request(
            || format!("RTM_NEWQDISC(index {index}, netem delay {delay_ns}ns loss {loss})"),
            m,
        )
    }

    /// `tc qdisc add dev <index> parent <parent> handle <handle> tbf rate <rate>bit`, with a
    /// burst of 10 ms of it (at least 3200 bytes) and a queue of 200 ms (at least 64 KiB).
    pub fn add_tbf(&mut self, at: (u32, u32, u32), bits_per_second: u64) -> Result<()> {
        let (index, handle, parent) = at;
        let bytes = (bits_per_second / 8).max(1);
        let burst = (bytes / 100).clamp(3200, u32::MAX as u64) as u32;
        let limit = (bytes / 5).clamp(64 * 1024, u32::MAX as u64) as u32;
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut m = Msg::new(libc::RTM_NEWQDISC, flags).tcmsg(index, handle, parent);
        m.name(TCA_KIND, "tbf");
        let opts = m.begin(TCA_OPTIONS);
        // struct tc_tbf_qopt: rate and peak rate (struct tc_ratespec: cell_log, linklayer,
        // overhead, cell_align, mpu, rate), limit, buffer, mtu.
        let mut q = vec![0u8; 36];
        q[1] = TC_LINKLAYER_ETHERNET;
        q[8..12].copy_from_slice(&(bytes.min(u32::MAX as u64) as u32).to_ne_bytes());
        q[13] = TC_LINKLAYER_ETHERNET;
        q[24..28].copy_from_slice(&limit.to_ne_bytes());
        m.attr(TCA_TBF_PARMS, &q);
        if bytes > u32::MAX as u64 {
            m.attr(TCA_TBF_RATE64, &bytes.to_ne_bytes());
        }
        m.attr(TCA_TBF_BURST, &burst.to_ne_bytes());
        m.end(opts);
        self.request(
            || format!("RTM_NEWQDISC(index {index}, tbf rate {bits_per_second}bit)"),
            m,
        )
    }
}

/// The root handle of a link's faults, and its one class (`1:`, `1:1`).
pub const QDISC_ROOT: (u32, u32) = (0x0001_0000, TC_H_ROOT);
/// Below netem (`2:` at `1:1`).
pub const QDISC_CHILD: (u32, u32) = (0x0002_0000, 0x0001_0001);

/// Runs `f` on a thread that has entered the network namespace `netns` (an open
/// `/proc/<pid>/ns/net`), so the caller's threads stay where they are; a netlink socket `f`
/// makes acts there.
pub fn in_netns<T: Send>(netns: &OwnedFd, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .spawn_scoped(s, || {
                nix::sched::setns(netns, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| SysError::new("setns(CLONE_NEWNET)", e))?;
                f()
            })
            .map_err(|e| {
                let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN));
                SysError::new("a thread to enter another network namespace", errno)
            })?
            .join()
            .unwrap_or_else(|_| {
                Err(SysError::new(
                    "a thread in another network namespace",
                    Errno::EIO,
                ))
            })
    })
}

/// The index of the interface `name` in the caller's network namespace.
pub fn if_index(name: &str) -> Result<u32> {
    let c = CString::new(name).map_err(|_| SysError::new("if_nametoindex", Errno::EINVAL))?;
    // SAFETY: a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(SysError::new(
            format!("if_nametoindex({name:?})"),
            Errno::last(),
        )),
        i => Ok(i),
    }
}

/// An fd that keeps the network namespace of `pid` (as this PID namespace numbers it).
pub fn netns_of(pid: i32) -> Result<OwnedFd> {
    open_fd(&format!("/proc/{pid}/ns/net"), false)
}
