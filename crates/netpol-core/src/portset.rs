//! Sets of (protocol, port) as sorted, disjoint, inclusive intervals over one key space
//! (`protocol << 17 | port`: a gap between protocols, so ranges never merge across them). Union, intersection and
//! membership are linear merges; `Display` prints `TCP 80,8000-8080; UDP 53; ICMP type 8`.
//!
//! ICMP and ICMPv6 have no ports: their "port" is `type << 8 | code` (0–65535), so a type is a range of 256 and
//! every answer about ports is one about ICMP messages too.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The protocols of a flow: the transport protocols NetworkPolicy knows (TCP, UDP, SCTP), and ICMP and ICMPv6
/// (which NetworkPolicy does not define; Calico's rules do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    #[serde(rename = "ICMPv6")]
    Icmpv6,
}

impl Protocol {
    /// Every protocol, in key order.
    pub const ALL: [Protocol; 5] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp, Protocol::Icmp, Protocol::Icmpv6];
    /// The protocols with ports (what NetworkPolicy `ports` name).
    pub const TRANSPORT: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
            Protocol::Icmp => "ICMP",
            Protocol::Icmpv6 => "ICMPv6",
        }
    }

    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Icmp => 1,
            Protocol::Icmpv6 => 58,
        }
    }

    /// The protocol with this IANA number, if netpol knows it.
    pub fn from_number(n: u8) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.number() == n)
    }

    /// Whether the protocol has ports (TCP, UDP, SCTP); ICMP's "port" is `type << 8 | code`.
    pub fn has_ports(self) -> bool {
        !matches!(self, Protocol::Icmp | Protocol::Icmpv6)
    }

    /// The lowest "port": 1 for the transport protocols, 0 (type 0, code 0) for ICMP.
    pub fn min_port(self) -> u16 {
        if self.has_ports() {
            MIN_PORT
        } else {
            0
        }
    }

    /// Parses `TCP`/`UDP`/`SCTP` exactly as the API server does (case-sensitive): NetworkPolicy's protocols.
    pub fn parse_exact(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Lenient parse for command-line and flow input (`tcp`, `Udp`, `icmp`, `ICMPv6`).
    pub fn parse_loose(s: &str) -> Option<Protocol> {
        match s.to_ascii_uppercase().as_str() {
            "ICMP" => Some(Protocol::Icmp),
            "ICMPV6" => Some(Protocol::Icmpv6),
            u => Self::parse_exact(u),
        }
    }

    fn index(self) -> u32 {
        match self {
            Protocol::Tcp => 0,
            Protocol::Udp => 1,
            Protocol::Sctp => 2,
            Protocol::Icmp => 3,
            Protocol::Icmpv6 => 4,
        }
    }

    fn from_index(i: u32) -> Protocol {
        match i {
            0 => Protocol::Tcp,
            1 => Protocol::Udp,
            2 => Protocol::Sctp,
            3 => Protocol::Icmp,
            _ => Protocol::Icmpv6,
        }
    }
}

/// An ICMP "port": `type << 8 | code`.
pub fn icmp_port(icmp_type: u8, code: u8) -> u16 {
    u16::from(icmp_type) << 8 | u16::from(code)
}

/// The ICMP messages of one type (every code), as a port range.
pub fn icmp_type_range(icmp_type: u8) -> (u16, u16) {
    (icmp_port(icmp_type, 0), icmp_port(icmp_type, 255))
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const MIN_PORT: u16 = 1;
pub const MAX_PORT: u16 = 65535;

/// Bits of a port in a key: one more than a port needs, so that protocols never touch.
const SHIFT: u32 = 17;

fn key(proto: Protocol, port: u16) -> u32 {
    (proto.index() << SHIFT) | u32::from(port)
}

/// A set of (protocol, port) pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSet {
    /// Sorted, disjoint, non-adjacent inclusive ranges of keys.
    ranges: Vec<(u32, u32)>,
}

/// A port set of at most [`InlinePorts::MAX`] ranges held inline, with no pointer to follow: the hot path's copy
/// of a rule's ports (every port of every protocol is five ranges).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InlinePorts {
    len: u8,
    ranges: [(u32, u32); InlinePorts::MAX],
}

impl InlinePorts {
    pub const MAX: usize = 5;

    /// The set inline, if it has few enough ranges.
    pub fn of(s: &PortSet) -> Option<InlinePorts> {
        let mut ranges = [(0, 0); InlinePorts::MAX];
        ranges.get_mut(..s.ranges.len())?.copy_from_slice(&s.ranges);
        Some(InlinePorts { len: s.ranges.len() as u8, ranges })
    }

    /// Whether the set contains (`proto`, `port`): what [`PortSet::contains`] answers.
    #[inline]
    pub fn contains(&self, proto: Protocol, port: u16) -> bool {
        let k = key(proto, port);
        self.ranges.iter().take(usize::from(self.len)).any(|&(lo, hi)| lo <= k && k <= hi)
    }
}

impl PortSet {
    pub const fn empty() -> Self {
        PortSet { ranges: Vec::new() }
    }

    /// Every port of every protocol.
    pub fn all() -> Self {
        let mut s = PortSet::empty();
        for p in Protocol::ALL {
            s.ranges.push((key(p, p.min_port()), key(p, MAX_PORT)));
        }
        s
    }

    /// All ports of one protocol (every message of ICMP).
    pub fn protocol(proto: Protocol) -> Self {
        Self::range(proto, proto.min_port(), MAX_PORT)
    }

    /// `lo..=hi` of one protocol (empty if `lo > hi`).
    pub fn range(proto: Protocol, lo: u16, hi: u16) -> Self {
        if lo > hi {
            return PortSet::empty();
        }
        PortSet { ranges: vec![(key(proto, lo), key(proto, hi))] }
    }

    pub fn single(proto: Protocol, port: u16) -> Self {
        Self::range(proto, port, port)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn is_all(&self) -> bool {
        *self == PortSet::all()
    }

    pub fn contains(&self, proto: Protocol, port: u16) -> bool {
        let k = key(proto, port);
        // Binary search for the last range starting at or before k.
        let idx = self.ranges.partition_point(|&(lo, _)| lo <= k);
        idx > 0 && self.ranges.get(idx - 1).is_some_and(|&(_, hi)| k <= hi)
    }

    fn normalize(mut ranges: Vec<(u32, u32)>) -> Self {
        ranges.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match out.last_mut() {
                // Merge overlapping or adjacent ranges (but never across protocols: the key space has a gap
                // after every protocol, so MAX_PORT+1 of one protocol is never the first key of the next).
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        PortSet { ranges: out }
    }

    pub fn union(&self, other: &PortSet) -> PortSet {
        if other.ranges.is_empty() {
            return self.clone();
        }
        if self.ranges.is_empty() {
            return other.clone();
        }
        let mut v = Vec::with_capacity(self.ranges.len() + other.ranges.len());
        v.extend_from_slice(&self.ranges);
        v.extend_from_slice(&other.ranges);
        Self::normalize(v)
    }

    pub fn union_with(&mut self, other: &PortSet) {
        if !other.ranges.is_empty() {
            *self = self.union(other);
        }
    }

    pub fn intersect(&self, other: &PortSet) -> PortSet {
        let (a, b) = (&self.ranges, &other.ranges);
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while let (Some(&(alo, ahi)), Some(&(blo, bhi))) = (a.get(i), b.get(j)) {
            let lo = alo.max(blo);
            let hi = ahi.min(bhi);
            if lo <= hi {
                out.push((lo, hi));
            }
            if ahi < bhi {
                i += 1;
            } else {
                j += 1;
            }
        }
        PortSet { ranges: out }
    }

    /// The ports of `self` that are not in `other`.
    pub fn difference(&self, other: &PortSet) -> PortSet {
        if other.ranges.is_empty() || self.ranges.is_empty() {
            return self.clone();
        }
        let mut out = Vec::new();
        let mut j = 0;
        for &(lo, hi) in &self.ranges {
            let mut lo = lo;
            // Skip the ranges of `other` that end before this one starts.
            while other.ranges.get(j).is_some_and(|&(_, ohi)| ohi < lo) {
                j += 1;
            }
            let mut k = j;
            while let Some(&(olo, ohi)) = other.ranges.get(k) {
                if olo > hi {
                    break;
                }
                if olo > lo {
                    out.push((lo, olo - 1));
                }
                if ohi >= hi {
                    lo = hi + 1;
                    break;
                }
                lo = ohi + 1;
                k += 1;
            }
            if lo <= hi {
                out.push((lo, hi));
            }
        }
        PortSet { ranges: out }
    }

    /// Ranges as (protocol, lo, hi).
    pub fn iter(&self) -> impl Iterator<Item = (Protocol, u16, u16)> + '_ {
        self.ranges.iter().map(|&(lo, hi)| {
            // Ports fit in 16 bits by construction.
            (Protocol::from_index(lo >> SHIFT), (lo & 0xffff) as u16, (hi & 0xffff) as u16)
        })
    }

    /// Boundaries (range starts, and ends + 1) in key space, for building port-range atoms.
    pub fn boundaries(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|&(lo, hi)| [lo, hi + 1])
    }

    /// Whether the set contains the whole key range `lo..=hi` (an atom), assuming the atom does not straddle a
    /// boundary of this set.
    pub fn contains_key(&self, k: u32) -> bool {
        let idx = self.ranges.partition_point(|&(lo, _)| lo <= k);
        idx > 0 && self.ranges.get(idx - 1).is_some_and(|&(_, hi)| k <= hi)
    }

    /// Splits a key range back into (protocol, lo, hi).
    pub fn key_range(lo: u32, hi: u32) -> (Protocol, u16, u16) {
        (Protocol::from_index(lo >> SHIFT), (lo & 0xffff) as u16, (hi & 0xffff) as u16)
    }

    /// The full key range of the port space, per protocol: used to enumerate atoms.
    pub fn protocol_key_ranges() -> impl Iterator<Item = (u32, u32)> {
        Protocol::ALL.into_iter().map(|p| (key(p, p.min_port()), key(p, MAX_PORT)))
    }
}

impl fmt::Display for PortSet {
    /// `all`, `none`, or `TCP 80,8000-8080; UDP 53` (a protocol with every port prints as `TCP all`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ranges.is_empty() {
            return f.write_str("none");
        }
        if self.is_all() {
            return f.write_str("all");
        }
        let mut first_proto = true;
        for proto in Protocol::ALL {
            let parts: Vec<String> = self
                .iter()
                .filter(|(p, _, _)| *p == proto)
                .map(|(p, lo, hi)| match (lo, hi) {
                    (lo, MAX_PORT) if lo == p.min_port() => "all".to_string(),
                    _ if !p.has_ports() => icmp_text(lo, hi),
                    (lo, hi) if lo == hi => lo.to_string(),
                    (lo, hi) => format!("{lo}-{hi}"),
                })
                .collect();
            if parts.is_empty() {
                continue;
            }
            if !first_proto {
                f.write_str("; ")?;
            }
            first_proto = false;
            write!(f, "{proto} {}", parts.join(","))?;
        }
        Ok(())
    }
}

/// ICMP messages `lo..=hi` (as `type << 8 | code`): `type 8`, `types 0-8`, `3/4` (type/code), `3/0-3/4`.
fn icmp_text(lo: u16, hi: u16) -> String {
    let (t1, c1, t2, c2) = (lo >> 8, lo & 0xff, hi >> 8, hi & 0xff);
    match (c1, c2) {
        (0, 255) if t1 == t2 => format!("type {t1}"),
        (0, 255) => format!("types {t1}-{t2}"),
        _ if lo == hi => format!("{t1}/{c1}"),
        _ => format!("{t1}/{c1}-{t2}/{c2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn inline_ports_answer_as_the_set_does() {
        let sets = [
            PortSet::empty(),
            PortSet::all(),
            PortSet::single(Protocol::Tcp, 80),
            PortSet::range(Protocol::Udp, 1, 100).union(&PortSet::protocol(Protocol::Icmp)),
            PortSet::all().difference(&PortSet::protocol(Protocol::Sctp)),
        ];
        for s in &sets {
            let inline = InlinePorts::of(s);
            assert!(inline.is_some(), "{s}: at most five ranges");
            let Some(inline) = inline else { continue };
            for proto in Protocol::ALL {
                for port in [0, 1, 8, 9, 10, 79, 80, 81, 100, 101, 65535] {
                    assert_eq!(inline.contains(proto, port), s.contains(proto, port), "{s} {proto} {port}");
                }
            }
        }
        let six = (1..=6).fold(PortSet::empty(), |s, p| s.union(&PortSet::single(Protocol::Tcp, p * 10)));
        assert_eq!(InlinePorts::of(&six), None);
        assert_eq!(InlinePorts::of(&PortSet::all().difference(&PortSet::single(Protocol::Sctp, 9))), None);
    }

    #[test]
    fn icmp_messages_are_ports_of_their_own_protocol() {
        let ping = PortSet::single(Protocol::Icmp, icmp_port(8, 0));
        assert!(ping.contains(Protocol::Icmp, icmp_port(8, 0)));
        assert!(!ping.contains(Protocol::Icmpv6, icmp_port(8, 0)) && !ping.contains(Protocol::Tcp, 2048));
        let (lo, hi) = icmp_type_range(3);
        let unreachable = PortSet::range(Protocol::Icmp, lo, hi);
        assert_eq!(unreachable.to_string(), "ICMP type 3");
        assert_eq!(ping.to_string(), "ICMP 8/0");
        assert_eq!(PortSet::protocol(Protocol::Icmpv6).to_string(), "ICMPv6 all");
        // Type 0 code 0 (echo reply) is a message like any other, and the last SCTP port never touches it.
        let edge = PortSet::single(Protocol::Sctp, MAX_PORT).union(&PortSet::single(Protocol::Icmp, 0));
        assert_eq!(edge.iter().count(), 2);
        assert!(PortSet::all().contains(Protocol::Icmp, 0) && PortSet::all().is_all());
        assert_eq!(Protocol::from_number(58), Some(Protocol::Icmpv6));
        assert_eq!(Protocol::parse_loose("icmpv6"), Some(Protocol::Icmpv6));
        assert_eq!(Protocol::parse_exact("ICMP"), None, "NetworkPolicy has no ICMP");
    }

    #[test]
    fn display() {
        let s = PortSet::single(Protocol::Tcp, 80)
            .union(&PortSet::range(Protocol::Tcp, 8000, 8080))
            .union(&PortSet::single(Protocol::Udp, 53));
        assert_eq!(s.to_string(), "TCP 80,8000-8080; UDP 53");
        assert_eq!(PortSet::all().to_string(), "all");
        assert_eq!(PortSet::empty().to_string(), "none");
        assert_eq!(PortSet::protocol(Protocol::Udp).to_string(), "UDP all");
    }

    #[test]
    fn adjacent_ranges_merge_but_not_across_protocols() {
        let s = PortSet::range(Protocol::Tcp, 1, 10).union(&PortSet::range(Protocol::Tcp, 11, 20));
        assert_eq!(s.to_string(), "TCP 1-20");
        let t = PortSet::protocol(Protocol::Tcp).union(&PortSet::protocol(Protocol::Udp));
        assert_eq!(t.iter().count(), 2);
        assert!(!t.contains(Protocol::Sctp, 1));
    }

    #[test]
    fn protocols_are_distinct() {
        let tcp = PortSet::single(Protocol::Tcp, 80);
        assert!(tcp.contains(Protocol::Tcp, 80));
        assert!(!tcp.contains(Protocol::Udp, 80));
        assert!(!tcp.contains(Protocol::Sctp, 80));
    }

    fn arb_set() -> impl Strategy<Value = PortSet> {
        prop::collection::vec((0u32..5, 1u16..200, 0u16..20), 0..5).prop_map(|v| {
            let mut s = PortSet::empty();
            for (p, lo, len) in v {
                s.union_with(&PortSet::range(Protocol::from_index(p), lo, lo.saturating_add(len)));
            }
            s
        })
    }

    proptest! {
        #[test]
        fn union_and_intersection_agree_with_membership(a in arb_set(), b in arb_set(), p in 0u32..5, port in 1u16..250) {
            let proto = Protocol::from_index(p);
            prop_assert_eq!(a.union(&b).contains(proto, port), a.contains(proto, port) || b.contains(proto, port));
            prop_assert_eq!(a.intersect(&b).contains(proto, port), a.contains(proto, port) && b.contains(proto, port));
            prop_assert_eq!(a.difference(&b).contains(proto, port), a.contains(proto, port) && !b.contains(proto, port));
            // Normalised: equal sets compare equal.
            prop_assert_eq!(a.difference(&b).union(&a.intersect(&b)), a.clone());
        }
    }
}
