//! Real connections from inside network namespaces, in-process.
//!
//! A thread can enter a netns with `setns(2)` (`/run/netns/<name>`, `CLONE_NEWNET`); a socket created while the
//! thread is in that netns stays in it for its whole life, whichever thread later uses it. So one dedicated thread
//! can hop between namespaces creating non-blocking sockets and then wait on all of them with one `ppoll`:
//! hundreds of probes finish in about one timeout.
//!
//! Verdicts: TCP/SCTP connected, or refused (the SYN reached the pod and an RST came back) = [`Observed::Allow`];
//! timeout or ICMP unreachable = [`Observed::Deny`]. UDP: a reply (or an ICMP port unreachable) = Allow, nothing
//! within the timeout = Deny. Anything that says nothing about the policy (no such netns, cannot bind the source
//! address, ...) = [`Observed::Untestable`] with the reason in `detail`.
//!
//! SCTP on a kernel without SCTP sockets (`CONFIG_IP_SCTP` unset; netfilter still tracks SCTP): probes and
//! listeners exchange the first two packets of an association over raw sockets (see [`raw_sctp`]): the probe
//! sends an INIT, the listener answers INIT-ACK, and the INIT-ACK coming back is "connected", as it is what a
//! connecting SCTP socket waits for first. Only when raw sockets fail too is SCTP untestable.
//!
//! ICMP: echo requests only ([`L4::IcmpEcho`], over raw sockets; the destination's kernel answers, no listener):
//! the echo reply = Allow, a destination unreachable quoting the request (a `reject`) or nothing within the
//! timeout = Deny.
//!
//! Note: if a ruleset *rejects* with a TCP reset instead of dropping, the probe sees "refused" and reports Allow.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What a probe saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Observed {
    Allow,
    Deny,
    Untestable,
}

/// Transport protocol of a listener or probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum L4 {
    Tcp,
    Udp,
    Sctp,
    /// An ICMP (or, to an IPv6 address, ICMPv6) echo request; the port is not used.
    #[serde(rename = "ICMP-ECHO")]
    IcmpEcho,
}

#[derive(thiserror::Error, Debug)]
pub enum ProbeError {
    #[error("invalid network namespace name {0:?}")]
    BadNetnsName(String),
    #[error("network namespace {netns:?}: {source}")]
    Netns {
        netns: String,
        #[source]
        source: io::Error,
    },
    #[error("{l4:?} listener on [{addr}]:{port} in {netns}: {source}")]
    Listen {
        netns: String,
        addr: IpAddr,
        l4: L4,
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("cannot start a thread: {0}")]
    Thread(#[source] io::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// One connection attempt from `netns` to `dst:port`, from source address `src` when given.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Probe {
    pub netns: String,
    pub src: Option<IpAddr>,
    pub dst: IpAddr,
    pub l4: L4,
    pub port: u16,
}

/// Outcome of one [`Probe`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub observed: Observed,
    /// `connected`, `refused`, `reply`, `timeout`, `unreachable`, `no SCTP sockets in this kernel`, ...
    pub detail: String,
    /// Time from starting the attempt to its verdict.
    pub micros: u64,
}

impl ProbeResult {
    fn new(observed: Observed, detail: impl Into<String>, started: Instant) -> Self {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        ProbeResult { observed, detail: detail.into(), micros }
    }
}

const NO_SCTP: &str = "no SCTP sockets in this kernel";
/// The detail of an echo request answered by a destination unreachable: a ruleset's `reject`.
pub const REJECTED_ICMP: &str = "rejected (ICMP destination unreachable)";
const UDP_PAYLOAD: &[u8] = b"netpol-probe\n";
const TCP_REPLY: &[u8] = b"k";

// ---------------------------------------------------------------------------------------------------------------
// netns plumbing

fn netns_path(netns: &str) -> Result<PathBuf, ProbeError> {
    if netns.is_empty() || netns.contains('/') || netns == "." || netns == ".." || netns.contains('\0') {
        return Err(ProbeError::BadNetnsName(netns.to_string()));
    }
    Ok(PathBuf::from("/run/netns").join(netns))
}

fn open_netns(netns: &str) -> Result<OwnedFd, ProbeError> {
    let path = netns_path(netns)?;
    let file = std::fs::File::open(&path).map_err(|source| ProbeError::Netns { netns: netns.to_string(), source })?;
    Ok(OwnedFd::from(file))
}

/// Move the calling thread into the netns behind `fd`.
fn enter(fd: &OwnedFd, netns: &str) -> Result<(), ProbeError> {
    // SAFETY: plain syscall on a valid fd; affects only the calling thread's network namespace.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(ProbeError::Netns { netns: netns.to_string(), source: io::Error::last_os_error() })
    }
}

/// Hops the current (dedicated) thread between namespaces, caching their fds.
#[derive(Default)]
struct Hopper {
    fds: HashMap<String, OwnedFd>,
    current: Option<String>,
}

impl Hopper {
    fn go(&mut self, netns: &str) -> Result<(), ProbeError> {
        if self.current.as_deref() == Some(netns) {
            return Ok(());
        }
        if !self.fds.contains_key(netns) {
            let fd = open_netns(netns)?;
            self.fds.insert(netns.to_string(), fd);
        }
        if let Some(fd) = self.fds.get(netns) {
            enter(fd, netns)?;
        }
        self.current = Some(netns.to_string());
        Ok(())
    }
}

/// Run `f` on a fresh thread that has entered netns `netns`; sockets `f` creates stay in that netns. A panic in
/// `f` is resumed on the calling thread.
pub fn in_netns<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> Result<T, ProbeError> {
    let fd = open_netns(netns)?;
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name(format!("netns-{netns}"))
            .spawn_scoped(s, move || -> Result<T, ProbeError> {
                enter(&fd, netns)?;
                Ok(f())
            })
            .map_err(ProbeError::Thread)?;
        match handle.join() {
            Ok(r) => r,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// conntrack

/// Deletes every connection-tracking entry of netns `netns` (ctnetlink's flush: `IPCTNL_MSG_CT_DELETE` without a
/// tuple, both families), as `conntrack -F` run there would. A lab reused for another cluster state starts
/// afresh: an entry left by an earlier allowed flow would let a later probe with the same addresses and ports
/// pass as `established` whatever the new ruleset says (UDP source ports are random, so that happens by chance).
pub fn flush_conntrack(netns: &str) -> Result<(), ProbeError> {
    in_netns(netns, ctnetlink_flush)?.map_err(|source| ProbeError::Netns { netns: netns.to_string(), source })
}

fn ctnetlink_flush() -> io::Result<()> {
    const NFNL_SUBSYS_CTNETLINK: u16 = 1;
    const IPCTNL_MSG_CT_DELETE: u16 = 2;
    // SAFETY: plain syscall; the returned fd is owned by the OwnedFd below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_NETFILTER) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // nlmsghdr (len, type, flags, seq, pid) + nfgenmsg (family AF_UNSPEC, version 0, res_id 0): 20 bytes.
    let mut msg = Vec::with_capacity(20);
    msg.extend_from_slice(&20u32.to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    // SAFETY: msg is valid for msg.len() bytes; an unconnected netlink socket sends to the kernel.
    if unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // The acknowledgement: an NLMSG_ERROR message whose error is 0, or minus an errno.
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for writes of buf.len() bytes.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let word = |at: usize| buf.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok());
    let kind = buf.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    match (kind, word(16).map(i32::from_ne_bytes)) {
        (Some(t), Some(0)) if n >= 20 && t == libc::NLMSG_ERROR as u16 => Ok(()),
        (Some(t), Some(e)) if n >= 20 && t == libc::NLMSG_ERROR as u16 => Err(io::Error::from_raw_os_error(-e)),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected answer from ctnetlink")),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// SCTP without SCTP sockets

/// The first exchange of an SCTP association (INIT, then INIT-ACK back) over raw IP sockets, for kernels built
/// without SCTP sockets whose netfilter still tracks SCTP (`CONFIG_NF_CT_PROTO_SCTP`). The packets are well formed,
/// each with its CRC32c checksum, which conntrack verifies (a packet that fails is `invalid`, and the generated
/// ruleset drops it): to the node, the probe's INIT is a new SCTP connection on its way through the ruleset, and
/// the listener's INIT-ACK (verification tag = the INIT's initiate tag) is that connection's reply.
pub mod raw_sctp {
    use super::*;

    pub const CHUNK_INIT: u8 = 1;
    pub const CHUNK_INIT_ACK: u8 = 2;
    pub const CHUNK_ABORT: u8 = 6;

    /// CRC32c (Castagnoli, reflected polynomial 0x82F63B78), as SCTP's checksum (RFC 9260, appendix A).
    pub fn crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            }
        }
        !crc
    }

    /// An SCTP packet: the common header (ports, verification tag, checksum) and one chunk. The checksum is the
    /// CRC32c of the packet with a zero checksum field, stored least significant byte first, as Linux does.
    pub fn packet(sport: u16, dport: u16, vtag: u32, chunk: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + chunk.len());
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&vtag.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(chunk);
        let crc = crc32c(&p);
        p[8..12].copy_from_slice(&crc.to_le_bytes());
        p
    }

    /// An INIT or INIT-ACK chunk with initiate tag `tag` (one stream each way); an INIT-ACK carries the state
    /// cookie it must have.
    pub fn init_chunk(kind: u8, tag: u32) -> Vec<u8> {
        let cookie: &[u8] = if kind == CHUNK_INIT_ACK { &[0, 7, 0, 8, b'n', b'p', b'c', b'k'] } else { &[] };
        let len = u16::try_from(20 + cookie.len()).unwrap_or(20);
        let mut c = vec![kind, 0];
        c.extend_from_slice(&len.to_be_bytes());
        c.extend_from_slice(&tag.to_be_bytes()); // initiate tag
        c.extend_from_slice(&65_535u32.to_be_bytes()); // advertised receiver window
        c.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
        c.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
        c.extend_from_slice(&tag.to_be_bytes()); // initial TSN
        c.extend_from_slice(cookie);
        c
    }

    /// What netpol reads of an SCTP packet.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Header {
        pub sport: u16,
        pub dport: u16,
        pub vtag: u32,
        /// The type of the first chunk.
        pub chunk: u8,
        /// The initiate tag of an INIT or INIT-ACK.
        pub init_tag: Option<u32>,
    }

    /// Reads an SCTP packet; `None` if it is too short or its checksum is wrong.
    pub fn parse(p: &[u8]) -> Option<Header> {
        let be16 = |i: usize| Some(u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]));
        let be32 = |i: usize| Some(u32::from_be_bytes(p.get(i..i + 4)?.try_into().ok()?));
        let sum = u32::from_le_bytes(p.get(8..12)?.try_into().ok()?);
        let mut zeroed = p.to_vec();
        zeroed.get_mut(8..12)?.copy_from_slice(&[0; 4]);
        if crc32c(&zeroed) != sum {
            return None;
        }
        let chunk = *p.get(12)?;
        let init_tag = if matches!(chunk, CHUNK_INIT | CHUNK_INIT_ACK) { Some(be32(16)?) } else { None };
        Some(Header { sport: be16(0)?, dport: be16(2)?, vtag: be32(4)?, chunk, init_tag })
    }

    /// The SCTP packet in what a raw socket received: IPv4 raw sockets get the IP header too, IPv6 ones do not.
    pub fn payload(buf: &[u8], v4: bool) -> Option<&[u8]> {
        if v4 {
            buf.get(usize::from(buf.first()? & 0x0f) * 4..)
        } else {
            Some(buf)
        }
    }

    /// A raw SCTP socket (non-blocking) of `ip`'s family, bound to `ip` when given: it receives the SCTP packets
    /// for that address.
    pub(super) fn socket(family_ip: &IpAddr, bind_to: Option<IpAddr>) -> io::Result<OwnedFd> {
        // SAFETY: plain syscall; the returned fd is owned by the OwnedFd below.
        let fd = unsafe {
            libc::socket(
                family_of(family_ip),
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::IPPROTO_SCTP,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if let Some(ip) = bind_to {
            bind(&fd, SocketAddr::new(ip, 0))?;
        }
        Ok(fd)
    }

    pub(super) fn send_to(fd: &OwnedFd, packet: &[u8], dst: IpAddr) -> io::Result<()> {
        let (sa, len) = sockaddr(SocketAddr::new(dst, 0));
        // SAFETY: packet is valid for its length; sa is a valid sockaddr of length len.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                (&sa as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// One received packet and its source address.
    pub(super) fn recv_from(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, IpAddr)> {
        // SAFETY: sockaddr_storage is plain old data.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: buf and from are valid for writes of the given sizes.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut from as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        let ip = match i32::from(from.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel filled in a sockaddr_in (ss_family says so); storage is large enough.
                let sin: libc::sockaddr_in = unsafe { std::ptr::read((&from as *const libc::sockaddr_storage).cast()) };
                IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes())
            }
            libc::AF_INET6 => {
                // SAFETY: as above, a sockaddr_in6.
                let sin6: libc::sockaddr_in6 =
                    unsafe { std::ptr::read((&from as *const libc::sockaddr_storage).cast()) };
                IpAddr::from(sin6.sin6_addr.s6_addr)
            }
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "unknown address family")),
        };
        Ok((n, ip))
    }

    /// Random bits for ports and verification tags (the kernel's; the clock if that fails).
    pub(super) fn random_u64() -> u64 {
        let mut b = [0u8; 8];
        // SAFETY: b is valid for writes of 8 bytes.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), libc::GRND_NONBLOCK) };
        if n == 8 {
            u64::from_ne_bytes(b)
        } else {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            (t.as_nanos() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        }
    }

    /// A listener's raw socket on one address: it answers every INIT to one of `ports` with an INIT-ACK.
    pub(super) struct Listener {
        pub(super) fd: OwnedFd,
        pub(super) ip: IpAddr,
        pub(super) ports: BTreeSet<u16>,
    }

    impl Listener {
        pub(super) fn answer_all(&self, buf: &mut [u8]) {
            while let Ok((n, from)) = recv_from(&self.fd, buf) {
                let Some(h) = buf.get(..n).and_then(|b| payload(b, self.ip.is_ipv4())).and_then(parse) else {
                    continue;
                };
                if let (CHUNK_INIT, 0, Some(peer_tag)) = (h.chunk, h.vtag, h.init_tag) {
                    if self.ports.contains(&h.dport) {
                        let tag = (random_u64() as u32) | 1;
                        let ack = packet(h.dport, h.sport, peer_tag, &init_chunk(CHUNK_INIT_ACK, tag));
                        let _ = send_to(&self.fd, &ack, from);
                    }
                }
            }
        }
    }

    /// A probe in flight: the INIT it sent.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Sent {
        pub(super) dst: IpAddr,
        pub(super) sport: u16,
        pub(super) dport: u16,
        pub(super) tag: u32,
    }

    /// Sends the INIT of a probe from a fresh raw socket (bound to `src` when given).
    pub(super) fn start(src: Option<IpAddr>, dst: IpAddr, dport: u16) -> io::Result<(OwnedFd, Sent)> {
        let fd = socket(&dst, src)?;
        let r = random_u64();
        let sent = Sent { dst, sport: 49_152 + (r % 16_384) as u16, dport, tag: ((r >> 32) as u32) | 1 };
        send_to(&fd, &packet(sent.sport, dport, 0, &init_chunk(CHUNK_INIT, sent.tag)), dst)?;
        Ok((fd, sent))
    }

    /// The answer to `sent` among the packets waiting on `fd`: `Some("connected ...")` for its INIT-ACK,
    /// `Some("refused ...")` for an ABORT, `None` if neither has come yet.
    pub(super) fn answer(fd: &OwnedFd, sent: &Sent) -> Option<&'static str> {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = recv_from(fd, &mut buf) {
            let Some(h) = buf.get(..n).and_then(|b| payload(b, sent.dst.is_ipv4())).and_then(parse) else {
                continue;
            };
            if from != sent.dst || h.sport != sent.dport || h.dport != sent.sport {
                continue;
            }
            match h.chunk {
                CHUNK_INIT_ACK if h.vtag == sent.tag => return Some("connected (SCTP INIT-ACK over raw sockets)"),
                CHUNK_ABORT => return Some("refused (SCTP ABORT over raw sockets)"),
                _ => {}
            }
        }
        None
    }
}

/// ICMP echo over raw sockets: a probe sends an echo request (ICMP type 8, or ICMPv6 type 128) with its own
/// identifier and sequence number from a raw socket bound to its source; the destination's kernel answers with an
/// echo reply, which conntrack sees as the reply of the request's connection. Every raw ICMP socket of a netns sees
/// every ICMP packet, so a probe takes only the reply from its destination with its identifier and sequence.
pub mod icmp_echo {
    use super::*;

    /// The Internet checksum (RFC 1071) of `data`.
    pub fn checksum(data: &[u8]) -> u16 {
        let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// An echo request (ICMPv4 with its checksum; ICMPv6's checksum is the kernel's, over the pseudo-header).
    pub fn request(v4: bool, id: u16, seq: u16) -> Vec<u8> {
        let mut p = vec![if v4 { 8 } else { 128 }, 0, 0, 0];
        p.extend(id.to_be_bytes());
        p.extend(seq.to_be_bytes());
        p.extend(b"netpol-probe");
        if v4 {
            let c = checksum(&p);
            p[2..4].copy_from_slice(&c.to_be_bytes());
        }
        p
    }

    /// The (identifier, sequence) of an echo reply in what a raw socket received (IPv4 raw sockets get the IP
    /// header too, IPv6 ones do not).
    pub fn reply(buf: &[u8], v4: bool) -> Option<(u16, u16)> {
        let icmp = raw_sctp::payload(buf, v4)?;
        let want = if v4 { 0 } else { 129 };
        if *icmp.first()? != want || *icmp.get(1)? != 0 {
            return None;
        }
        let be16 = |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*icmp.get(at)?, *icmp.get(at + 1)?])) };
        Some((be16(4)?, be16(6)?))
    }

    /// The (identifier, sequence) of the echo request quoted in a destination unreachable (ICMP type 3, ICMPv6
    /// type 1: how a ruleset's `reject` answers an echo request) in what a raw socket received: the message quotes
    /// the request's IP header (IPv6: without extension headers) and its first bytes.
    pub fn unreachable(buf: &[u8], v4: bool) -> Option<(u16, u16)> {
        let icmp = raw_sctp::payload(buf, v4)?;
        if *icmp.first()? != if v4 { 3 } else { 1 } {
            return None;
        }
        let quoted = icmp.get(8..)?;
        let echo = if v4 { raw_sctp::payload(quoted, true)? } else { quoted.get(40..)? };
        if *echo.first()? != if v4 { 8 } else { 128 } {
            return None;
        }
        let be16 = |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*echo.get(at)?, *echo.get(at + 1)?])) };
        Some((be16(4)?, be16(6)?))
    }

    /// A probe in flight: the request it sent.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Sent {
        pub(super) dst: IpAddr,
        pub(super) id: u16,
        pub(super) seq: u16,
    }

    /// Sends an echo request to `dst` from a fresh raw socket (bound to `src` when given).
    pub(super) fn start(src: Option<IpAddr>, dst: IpAddr) -> io::Result<(OwnedFd, Sent)> {
        let proto = if dst.is_ipv4() { libc::IPPROTO_ICMP } else { libc::IPPROTO_ICMPV6 };
        // SAFETY: plain syscall; the returned fd is owned by the OwnedFd below.
        let fd =
            unsafe { libc::socket(family_of(&dst), libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if let Some(ip) = src {
            bind(&fd, SocketAddr::new(ip, 0))?;
        }
        let r = raw_sctp::random_u64();
        let sent = Sent { dst, id: r as u16, seq: (r >> 16) as u16 };
        raw_sctp::send_to(&fd, &request(dst.is_ipv4(), sent.id, sent.seq), dst)?;
        Ok((fd, sent))
    }

    /// The answer to `sent` among the packets waiting on `fd`: its echo reply (allowed), or a destination
    /// unreachable quoting it (rejected on the way, from whichever address); `None` if neither has come yet.
    pub(super) fn answered(fd: &OwnedFd, sent: &Sent) -> Option<(Observed, &'static str)> {
        let mut buf = [0u8; 2048];
        let v4 = sent.dst.is_ipv4();
        while let Ok((n, from)) = raw_sctp::recv_from(fd, &mut buf) {
            let Some(b) = buf.get(..n) else { continue };
            if from == sent.dst && reply(b, v4) == Some((sent.id, sent.seq)) {
                return Some((Observed::Allow, "echo reply"));
            }
            if unreachable(b, v4) == Some((sent.id, sent.seq)) {
                return Some((Observed::Deny, REJECTED_ICMP));
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------------------------
// thin socket wrappers

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn sock_params(l4: L4) -> (libc::c_int, libc::c_int) {
    match l4 {
        L4::Tcp => (libc::SOCK_STREAM, libc::IPPROTO_TCP),
        L4::Udp => (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
        L4::Sctp => (libc::SOCK_STREAM, libc::IPPROTO_SCTP),
        L4::IcmpEcho => (libc::SOCK_RAW, libc::IPPROTO_ICMP),
    }
}

fn family_of(ip: &IpAddr) -> libc::c_int {
    if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

fn socket(ip: &IpAddr, l4: L4) -> io::Result<OwnedFd> {
    let (ty, proto) = sock_params(l4);
    // SAFETY: plain syscall; the returned fd is owned by the OwnedFd below.
    let fd = unsafe { libc::socket(family_of(ip), ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_no_protocol(errno: i32) -> bool {
    matches!(errno, libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT | libc::EPROTOTYPE | libc::EAFNOSUPPORT)
}

/// Whether the kernel can create SCTP sockets (`socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)`).
pub fn kernel_supports_sctp() -> bool {
    match socket(&IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), L4::Sctp) {
        Ok(_) => true,
        Err(e) => !is_no_protocol(errno_of(&e)),
    }
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn bind(fd: &OwnedFd, addr: SocketAddr) -> io::Result<()> {
    let (sa, len) = sockaddr(addr);
    // SAFETY: sa is a valid sockaddr of length len.
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_storage).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn connect(fd: &OwnedFd, addr: SocketAddr) -> io::Result<()> {
    let (sa, len) = sockaddr(addr);
    // SAFETY: sa is a valid sockaddr of length len.
    let rc = unsafe { libc::connect(fd.as_raw_fd(), (&sa as *const libc::sockaddr_storage).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_int_opt(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: value is a c_int that outlives the call; the length matches.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The pending error of a socket (`SO_ERROR`), 0 if none.
fn so_error(fd: &OwnedFd) -> i32 {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value/len are valid out-pointers of the right size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        value
    } else {
        errno_of(&io::Error::last_os_error())
    }
}

fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of buf.len() bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Wait for events on `fds` for at most `timeout`; EINTR counts as "no events".
fn ppoll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos() as libc::c_long, // < 1e9: fits any c_long
    };
    // SAFETY: fds is a valid slice of pollfd; ts is a valid timespec; no signal mask.
    let n = unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
    match usize::try_from(n) {
        Ok(n) => Ok(n),
        Err(_) => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            }
        }
    }
}

fn describe(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    text.split(" (os error").next().unwrap_or(&text).to_lowercase()
}

// ---------------------------------------------------------------------------------------------------------------
// listeners

/// Servers inside pod namespaces: TCP accepts and replies one byte then closes, UDP echoes, SCTP accepts (and
/// replies one byte), or without SCTP sockets answers INITs with INIT-ACKs on a raw socket ([`raw_sctp`]). One
/// thread serves all of them; dropping the value stops it and closes the sockets.
pub struct Listeners {
    stop_tx: Option<OwnedFd>,
    thread: Option<std::thread::JoinHandle<()>>,
    sctp_supported: bool,
    count: usize,
    skipped: Vec<(String, IpAddr, L4, u16, String)>,
}

/// A socket the listener thread serves.
enum Served {
    /// TCP or SCTP: accept, reply one byte, close.
    Stream(OwnedFd),
    /// UDP: echo.
    Datagram(OwnedFd),
    /// SCTP without SCTP sockets: answer INITs (see [`raw_sctp`]).
    RawSctp(raw_sctp::Listener),
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("count", &self.count)
            .field("sctp_supported", &self.sctp_supported)
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// Create one listening socket in the current netns.
fn listen_socket(ip: IpAddr, l4: L4, port: u16) -> io::Result<OwnedFd> {
    let fd = socket(&ip, l4)?;
    set_int_opt(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if ip.is_ipv6() {
        set_int_opt(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    }
    bind(&fd, SocketAddr::new(ip, port))?;
    if l4 != L4::Udp {
        // SAFETY: plain syscall on a valid socket.
        if unsafe { libc::listen(fd.as_raw_fd(), 4096) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

impl Listeners {
    /// Start listeners for `(netns, address, protocol, port)` targets. Without SCTP sockets in the kernel, SCTP
    /// targets get one raw socket per address that answers INITs ([`raw_sctp`]); where that fails too they are
    /// skipped (and recorded in [`Listeners::skipped`]). Any other failure is an error.
    pub fn start(targets: &[(String, IpAddr, L4, u16)]) -> Result<Listeners, ProbeError> {
        let sctp_supported = kernel_supports_sctp();
        let mut wanted = Vec::new();
        let mut raw: BTreeMap<(&str, IpAddr), BTreeSet<u16>> = BTreeMap::new();
        for (ns, ip, l4, port) in targets {
            if *l4 == L4::IcmpEcho {
                // The destination's kernel answers echo requests itself.
                continue;
            }
            if *l4 == L4::Sctp && !sctp_supported {
                raw.entry((ns.as_str(), *ip)).or_default().insert(*port);
            } else {
                wanted.push((ns.as_str(), *ip, *l4, *port));
            }
        }
        // Create the sockets on a thread that hops between namespaces.
        type Setup = (Vec<Served>, Vec<(String, IpAddr, L4, u16, String)>);
        let (sockets, skipped): Setup = std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name("netpol-listen-setup".into())
                .spawn_scoped(s, || -> Result<Setup, ProbeError> {
                    let mut hop = Hopper::default();
                    let mut out = Vec::with_capacity(wanted.len() + raw.len());
                    let mut skipped = Vec::new();
                    for (ns, ip, l4, port) in &wanted {
                        hop.go(ns)?;
                        let fd = listen_socket(*ip, *l4, *port).map_err(|source| ProbeError::Listen {
                            netns: ns.to_string(),
                            addr: *ip,
                            l4: *l4,
                            port: *port,
                            source,
                        })?;
                        out.push(if *l4 == L4::Udp { Served::Datagram(fd) } else { Served::Stream(fd) });
                    }
                    for ((ns, ip), ports) in raw {
                        hop.go(ns)?;
                        match raw_sctp::socket(&ip, Some(ip)) {
                            Ok(fd) => out.push(Served::RawSctp(raw_sctp::Listener { fd, ip, ports })),
                            Err(e) => {
                                let why = format!("{NO_SCTP}, and no raw SCTP socket: {}", describe(errno_of(&e)));
                                skipped
                                    .extend(ports.into_iter().map(|p| (ns.to_string(), ip, L4::Sctp, p, why.clone())));
                            }
                        }
                    }
                    Ok((out, skipped))
                })
                .map_err(ProbeError::Thread)?;
            match handle.join() {
                Ok(r) => r,
                Err(payload) => std::panic::resume_unwind(payload),
            }
        })?;
        let mut pipe = [0 as RawFd; 2];
        // SAFETY: pipe is a valid 2-element array.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error().into());
        }
        // SAFETY: both fds are fresh and owned by nothing else.
        let (stop_rx, stop_tx) = unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
        let count = sockets.len();
        let thread = std::thread::Builder::new()
            .name("netpol-listeners".into())
            .spawn(move || serve(stop_rx, sockets))
            .map_err(ProbeError::Thread)?;
        Ok(Listeners { stop_tx: Some(stop_tx), thread: Some(thread), sctp_supported, count, skipped })
    }

    /// Whether the kernel supports SCTP sockets (if not, SCTP targets are served over raw sockets, or skipped).
    pub fn sctp_supported(&self) -> bool {
        self.sctp_supported
    }

    /// How many sockets are being served.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Targets that were not started, with the reason.
    pub fn skipped(&self) -> &[(String, IpAddr, L4, u16, String)] {
        &self.skipped
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = send_pipe(&tx);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn send_pipe(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: writes one byte from a valid buffer.
    let n = unsafe { libc::write(fd.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    if n == 1 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn serve(stop_rx: OwnedFd, sockets: Vec<Served>) {
    let fd_of = |s: &Served| match s {
        Served::Stream(fd) | Served::Datagram(fd) => fd.as_raw_fd(),
        Served::RawSctp(l) => l.fd.as_raw_fd(),
    };
    let mut pollfds: Vec<libc::pollfd> = std::iter::once(stop_rx.as_raw_fd())
        .chain(sockets.iter().map(fd_of))
        .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
        .collect();
    let mut buf = vec![0u8; 65536];
    loop {
        for p in pollfds.iter_mut() {
            p.revents = 0;
        }
        match ppoll(&mut pollfds, Duration::from_secs(1)) {
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "listener poll failed; stopping listeners");
                return;
            }
        }
        if pollfds[0].revents != 0 {
            return;
        }
        for (i, served) in sockets.iter().enumerate() {
            if pollfds[i + 1].revents == 0 {
                continue;
            }
            match served {
                Served::Stream(fd) => accept_all(fd),
                Served::Datagram(fd) => echo_all(fd, &mut buf),
                Served::RawSctp(l) => l.answer_all(&mut buf),
            }
        }
    }
}

fn accept_all(fd: &OwnedFd) {
    loop {
        // SAFETY: accept4 with null address pointers is valid.
        let c = unsafe {
            libc::accept4(
                fd.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if c < 0 {
            return; // EAGAIN (drained) or a transient error (ECONNABORTED...): wait for the next event
        }
        // SAFETY: c is a fresh descriptor owned by nothing else; closed at the end of this iteration.
        let conn = unsafe { OwnedFd::from_raw_fd(c) };
        let _ = send(conn.as_raw_fd(), TCP_REPLY);
    }
}

fn echo_all(fd: &OwnedFd, buf: &mut [u8]) {
    loop {
        // SAFETY: sockaddr_storage is plain old data.
        let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: buf and from are valid for writes of the given sizes.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut from as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        let Ok(n) = usize::try_from(n) else { return };
        // SAFETY: replies to the address recvfrom filled in, with the bytes it received.
        unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                n,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                (&from as *const libc::sockaddr_storage).cast(),
                len,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// probes

/// Upper bound on sockets in flight at once (file descriptors).
fn max_inflight() -> usize {
    // SAFETY: rlimit is plain old data and getrlimit only writes it.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 { rl.rlim_cur } else { 1024 };
    usize::try_from(soft / 2).unwrap_or(512).clamp(16, 4096)
}

struct Flight {
    idx: usize,
    fd: OwnedFd,
    l4: L4,
    started: Instant,
    deadline: Instant,
    /// UDP: when to send the datagram once more (one retry halfway through the timeout).
    resend_at: Option<Instant>,
    /// SCTP over a raw socket: the INIT sent.
    raw_sctp: Option<raw_sctp::Sent>,
    /// ICMP: the echo request sent.
    icmp: Option<icmp_echo::Sent>,
}

enum Start {
    Pending(Flight),
    Done(ProbeResult),
}

fn untestable(detail: impl Into<String>, started: Instant) -> ProbeResult {
    ProbeResult::new(Observed::Untestable, detail, started)
}

fn start_probe(idx: usize, p: &Probe, hop: &mut Hopper, timeout: Duration) -> Start {
    let started = Instant::now();
    if let Some(src) = p.src {
        if src.is_ipv4() != p.dst.is_ipv4() {
            return Start::Done(untestable(
                format!("source {src} and destination {} differ in family", p.dst),
                started,
            ));
        }
    }
    if let Err(e) = hop.go(&p.netns) {
        return Start::Done(untestable(e.to_string(), started));
    }
    if p.l4 == L4::IcmpEcho {
        return match icmp_echo::start(p.src, p.dst) {
            Ok((fd, sent)) => Start::Pending(Flight {
                idx,
                fd,
                l4: L4::IcmpEcho,
                started,
                deadline: started + timeout,
                resend_at: None,
                raw_sctp: None,
                icmp: Some(sent),
            }),
            Err(e) if errno_of(&e) == libc::EADDRNOTAVAIL => Start::Done(untestable(
                format!(
                    "cannot bind source {}: {}",
                    p.src.map_or("?".into(), |s| s.to_string()),
                    describe(errno_of(&e))
                ),
                started,
            )),
            Err(e) => Start::Done(classify_error(errno_of(&e), started, true)),
        };
    }
    let fd = match socket(&p.dst, p.l4) {
        Ok(fd) => fd,
        Err(e) if p.l4 == L4::Sctp && is_no_protocol(errno_of(&e)) => return start_raw_sctp(idx, p, started, timeout),
        Err(e) => return Start::Done(untestable(format!("socket: {}", describe(errno_of(&e))), started)),
    };
    if let Some(src) = p.src {
        if let Err(e) = bind(&fd, SocketAddr::new(src, 0)) {
            return Start::Done(untestable(format!("cannot bind source {src}: {}", describe(errno_of(&e))), started));
        }
    }
    let dst = SocketAddr::new(p.dst, p.port);
    let deadline = started + timeout;
    match connect(&fd, dst) {
        Ok(()) if p.l4 != L4::Udp => return Start::Done(ProbeResult::new(Observed::Allow, "connected", started)),
        Ok(()) => {}
        Err(e) => {
            let errno = errno_of(&e);
            if errno != libc::EINPROGRESS {
                return Start::Done(classify_error(errno, started, true));
            }
        }
    }
    if p.l4 == L4::Udp {
        if let Err(e) = send(fd.as_raw_fd(), UDP_PAYLOAD) {
            return Start::Done(classify_error(errno_of(&e), started, true));
        }
    }
    let resend_at = (p.l4 == L4::Udp).then(|| started + timeout / 2);
    Start::Pending(Flight { idx, fd, l4: p.l4, started, deadline, resend_at, raw_sctp: None, icmp: None })
}

/// An SCTP probe without SCTP sockets: its INIT from a raw socket (see [`raw_sctp`]).
fn start_raw_sctp(idx: usize, p: &Probe, started: Instant, timeout: Duration) -> Start {
    match raw_sctp::start(p.src, p.dst, p.port) {
        Ok((fd, sent)) => Start::Pending(Flight {
            idx,
            fd,
            l4: L4::Sctp,
            started,
            deadline: started + timeout,
            resend_at: None,
            raw_sctp: Some(sent),
            icmp: None,
        }),
        Err(e) => {
            let errno = errno_of(&e);
            match errno {
                libc::EADDRNOTAVAIL => Start::Done(untestable(
                    format!("cannot bind source {}: {}", p.src.map_or("?".into(), |s| s.to_string()), describe(errno)),
                    started,
                )),
                libc::EPERM | libc::EACCES | libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT => {
                    Start::Done(untestable(format!("{NO_SCTP}, and no raw SCTP socket: {}", describe(errno)), started))
                }
                _ => Start::Done(classify_error(errno, started, true)),
            }
        }
    }
}

/// Verdict for a socket error. `immediate`: returned synchronously by connect/send in the client netns.
fn classify_error(errno: i32, started: Instant, immediate: bool) -> ProbeResult {
    match errno {
        // The packet reached the destination, which answered with an RST / ICMP port unreachable / ABORT.
        libc::ECONNREFUSED => ProbeResult::new(Observed::Allow, "refused", started),
        libc::ECONNRESET => ProbeResult::new(Observed::Allow, "reset", started),
        libc::ETIMEDOUT => ProbeResult::new(Observed::Deny, "timeout", started),
        // Dropped by a local (client netns) nft rule.
        libc::EPERM | libc::EACCES => ProbeResult::new(Observed::Deny, "blocked locally", started),
        // Asynchronously: ICMP host/net unreachable or admin-prohibited (e.g. an nft `reject`).
        libc::EHOSTUNREACH | libc::ENETUNREACH if !immediate => {
            ProbeResult::new(Observed::Deny, format!("unreachable ({})", describe(errno)), started)
        }
        _ => untestable(describe(errno), started),
    }
}

/// Check a flight that poll reported ready; `None` = keep waiting.
fn finish(f: &Flight, revents: libc::c_short) -> Option<ProbeResult> {
    if let Some(sent) = &f.raw_sctp {
        return raw_sctp::answer(&f.fd, sent).map(|detail| ProbeResult::new(Observed::Allow, detail, f.started));
    }
    if let Some(sent) = &f.icmp {
        return icmp_echo::answered(&f.fd, sent).map(|(o, detail)| ProbeResult::new(o, detail, f.started));
    }
    match f.l4 {
        L4::IcmpEcho => None,
        L4::Tcp | L4::Sctp => {
            if revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) == 0 {
                return None;
            }
            match so_error(&f.fd) {
                0 => Some(ProbeResult::new(Observed::Allow, "connected", f.started)),
                e => Some(classify_error(e, f.started, false)),
            }
        }
        L4::Udp => {
            let mut buf = [0u8; 512];
            match recv(f.fd.as_raw_fd(), &mut buf) {
                Ok(_) => Some(ProbeResult::new(Observed::Allow, "reply", f.started)),
                Err(e) => {
                    let errno = errno_of(&e);
                    if errno == libc::EAGAIN || errno == libc::EINTR {
                        None
                    } else if errno == libc::ECONNREFUSED {
                        Some(ProbeResult::new(Observed::Allow, "refused (icmp port unreachable)", f.started))
                    } else {
                        Some(classify_error(errno, f.started, false))
                    }
                }
            }
        }
    }
}

fn run_engine(probes: &[Probe], timeout: Duration, window: usize) -> Vec<ProbeResult> {
    let mut results: Vec<Option<ProbeResult>> = vec![None; probes.len()];
    let mut hop = Hopper::default();
    let mut inflight: Vec<Flight> = Vec::new();
    let mut next = 0;
    loop {
        while inflight.len() < window && next < probes.len() {
            match start_probe(next, &probes[next], &mut hop, timeout) {
                Start::Pending(f) => inflight.push(f),
                Start::Done(r) => results[next] = Some(r),
            }
            next += 1;
        }
        if inflight.is_empty() {
            if next >= probes.len() {
                break;
            }
            continue;
        }
        let now = Instant::now();
        let wake = inflight.iter().map(|f| f.resend_at.unwrap_or(f.deadline).min(f.deadline)).min().unwrap_or(now);
        let mut pollfds: Vec<libc::pollfd> = inflight
            .iter()
            .map(|f| libc::pollfd {
                fd: f.fd.as_raw_fd(),
                events: if f.l4 == L4::Udp || f.raw_sctp.is_some() || f.icmp.is_some() {
                    libc::POLLIN
                } else {
                    libc::POLLOUT
                },
                revents: 0,
            })
            .collect();
        if let Err(e) = ppoll(&mut pollfds, wake.saturating_duration_since(now)) {
            for f in inflight.drain(..) {
                results[f.idx] = Some(untestable(format!("poll: {e}"), f.started));
            }
            continue;
        }
        let now = Instant::now();
        let mut keep = Vec::with_capacity(inflight.len());
        for (mut f, p) in inflight.drain(..).zip(pollfds.iter()) {
            let done = if p.revents != 0 { finish(&f, p.revents) } else { None };
            if let Some(r) = done {
                results[f.idx] = Some(r);
            } else if now >= f.deadline {
                results[f.idx] = Some(ProbeResult::new(Observed::Deny, "timeout", f.started));
            } else {
                if f.resend_at.is_some_and(|t| now >= t) {
                    f.resend_at = None;
                    let _ = send(f.fd.as_raw_fd(), UDP_PAYLOAD);
                }
                keep.push(f);
            }
        }
        inflight = keep;
    }
    let fallback = Instant::now();
    results.into_iter().map(|r| r.unwrap_or_else(|| untestable("not run", fallback))).collect()
}

/// Run `probes` with at most `parallelism` connection attempts in flight, each given `timeout`; results come back
/// in input order. Runs on a dedicated thread (the caller's thread never changes netns).
pub fn run_probes(probes: &[Probe], timeout: Duration, parallelism: usize) -> Vec<ProbeResult> {
    if probes.is_empty() {
        return Vec::new();
    }
    let window = parallelism.clamp(1, max_inflight());
    let started = Instant::now();
    let outcome = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("netpol-probes".into())
            .spawn_scoped(s, || run_engine(probes, timeout, window))
            .map_err(|e| e.to_string())
            .and_then(|h| h.join().map_err(|_| "probe thread panicked".to_string()))
    });
    match outcome {
        Ok(v) => v,
        Err(msg) => probes.iter().map(|_| untestable(msg.clone(), started)).collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// An ICMP echo request carries its checksum (a packet with it sums to zero) and an echo reply's identifier and
    /// sequence are read behind the IPv4 header (IPv6 raw sockets get no header); requests and other types are
    /// not replies.
    #[test]
    fn icmp_echo_packets() {
        let req = icmp_echo::request(true, 0x1234, 0xbeef);
        assert_eq!(&req[..2], &[8, 0]);
        assert_eq!(icmp_echo::checksum(&req), 0, "a correct checksum sums to zero");
        assert_eq!(icmp_echo::checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2_u16);
        let mut reply = vec![0x45u8; 1];
        reply.extend([0u8; 19]);
        let mut icmp = req.clone();
        icmp[0] = 0;
        reply.extend(&icmp);
        assert_eq!(icmp_echo::reply(&reply, true), Some((0x1234, 0xbeef)));
        assert_eq!(icmp_echo::reply(&[&reply[..20], &req[..]].concat(), true), None, "a request is no reply");
        let v6 = icmp_echo::request(false, 7, 9);
        assert_eq!(v6[0], 128);
        let mut r6 = v6.clone();
        r6[0] = 129;
        assert_eq!(icmp_echo::reply(&r6, false), Some((7, 9)));
        assert_eq!(icmp_echo::reply(&[129, 0, 0], false), None, "too short");
        // A destination unreachable (admin prohibited) quoting the request: IP header, then the request.
        let mut unreach = vec![0x45u8];
        unreach.extend([0u8; 19]);
        unreach.extend([3, 13, 0, 0, 0, 0, 0, 0, 0x45]);
        unreach.extend([0u8; 19]);
        unreach.extend(&req);
        assert_eq!(icmp_echo::unreachable(&unreach, true), Some((0x1234, 0xbeef)));
        assert_eq!(icmp_echo::unreachable(&reply, true), None, "a reply is no unreachable");
        let mut u6 = vec![1u8, 1, 0, 0, 0, 0, 0, 0];
        u6.extend([0u8; 40]);
        u6.extend(&v6);
        assert_eq!(icmp_echo::unreachable(&u6, false), Some((7, 9)));
        assert_eq!(icmp_echo::unreachable(&u6[..50], false), None, "too short");
        assert_eq!(serde_json::to_string(&L4::IcmpEcho).unwrap(), "\"ICMP-ECHO\"");
    }

    #[test]
    fn serde_names() {
        assert_eq!(serde_json::to_string(&Observed::Untestable).unwrap(), "\"untestable\"");
        assert_eq!(serde_json::to_string(&L4::Sctp).unwrap(), "\"SCTP\"");
    }

    #[test]
    fn bad_netns_names() {
        for n in ["", "a/b", "..", "."] {
            assert!(matches!(in_netns(n, || ()), Err(ProbeError::BadNetnsName(_))));
        }
        assert!(matches!(in_netns("netpol-no-such-netns-xyz", || ()), Err(ProbeError::Netns { .. })));
    }

    #[test]
    fn probe_errors_without_netns() {
        let r = run_probes(
            &[
                Probe {
                    netns: "netpol-no-such-netns-xyz".into(),
                    src: None,
                    dst: "10.0.0.1".parse().unwrap(),
                    l4: L4::Tcp,
                    port: 1,
                },
                Probe {
                    netns: "x".into(),
                    src: Some("fd00::1".parse().unwrap()),
                    dst: "10.0.0.1".parse().unwrap(),
                    l4: L4::Udp,
                    port: 1,
                },
            ],
            Duration::from_millis(100),
            4,
        );
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.observed == Observed::Untestable), "{r:?}");
        assert!(r[1].detail.contains("family"));
    }

    #[test]
    fn sockaddr_layout() {
        let (sa, len) = sockaddr("10.1.2.3:8080".parse().unwrap());
        assert_eq!(len as usize, std::mem::size_of::<libc::sockaddr_in>());
        assert_eq!(sa.ss_family, libc::AF_INET as libc::sa_family_t);
        let (_, len6) = sockaddr("[fd00::1]:80".parse().unwrap());
        assert_eq!(len6 as usize, std::mem::size_of::<libc::sockaddr_in6>());
    }

    /// CRC32c check values (RFC 3720, B.4; the "123456789" value of every CRC catalogue), and SCTP packets that
    /// read back as written, whose checksum a changed byte breaks.
    #[test]
    fn raw_sctp_packets() {
        use raw_sctp::*;
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let init = packet(50_000, 9003, 0, &init_chunk(CHUNK_INIT, 0x1234_5678));
        assert_eq!(init.len(), 32);
        assert_eq!(&init[8..12], &crc32c(&[&init[..8], &[0; 4], &init[12..]].concat()).to_le_bytes());
        let h = parse(&init).unwrap();
        assert_eq!(h, Header { sport: 50_000, dport: 9003, vtag: 0, chunk: CHUNK_INIT, init_tag: Some(0x1234_5678) });
        let ack = packet(9003, 50_000, 0x1234_5678, &init_chunk(CHUNK_INIT_ACK, 7));
        assert_eq!(ack.len(), 40, "INIT-ACK with its state cookie");
        assert_eq!(parse(&ack).unwrap().init_tag, Some(7));
        let mut bad = ack.clone();
        bad[20] ^= 1;
        assert_eq!(parse(&bad), None);
        assert_eq!(parse(&ack[..10]), None);
        // An IPv4 raw socket receives the IP header (here 24 bytes: IHL 6) before the SCTP packet.
        let mut v4 = vec![0x46; 24];
        v4.extend_from_slice(&ack);
        assert_eq!(payload(&v4, true), Some(&ack[..]));
        assert_eq!(payload(&ack, false), Some(&ack[..]));
    }

    #[test]
    fn errno_text() {
        assert_eq!(describe(libc::ECONNREFUSED), "connection refused");
    }
}
