//! Sets of (protocol, port) as sorted, disjoint, inclusive intervals over one key space
//! (`protocol << 16 | port`). Union, intersection and membership are linear merges; `Display` prints
//! `TCP 80,8000-8080; UDP 53`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Transport protocols NetworkPolicy knows about. ICMP is not one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// Parses `TCP`/`UDP`/`SCTP` exactly as the API server does (case-sensitive).
    pub fn parse_exact(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Lenient parse for command-line input (`tcp`, `Udp`).
    pub fn parse_loose(s: &str) -> Option<Protocol> {
        Self::parse_exact(&s.to_ascii_uppercase())
    }

    fn index(self) -> u32 {
        match self {
            Protocol::Tcp => 0,
            Protocol::Udp => 1,
            Protocol::Sctp => 2,
        }
    }

    fn from_index(i: u32) -> Protocol {
        match i {
            0 => Protocol::Tcp,
            1 => Protocol::Udp,
            _ => Protocol::Sctp,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const MIN_PORT: u16 = 1;
pub const MAX_PORT: u16 = 65535;

fn key(proto: Protocol, port: u16) -> u32 {
    (proto.index() << 16) | u32::from(port)
}

/// A set of (protocol, port) pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSet {
    /// Sorted, disjoint, non-adjacent inclusive ranges of keys.
    ranges: Vec<(u32, u32)>,
}

impl PortSet {
    pub fn empty() -> Self {
        PortSet { ranges: Vec::new() }
    }

    /// Every port of every protocol.
    pub fn all() -> Self {
        let mut s = PortSet::empty();
        for p in Protocol::ALL {
            s.ranges.push((key(p, MIN_PORT), key(p, MAX_PORT)));
        }
        s
    }

    /// All ports of one protocol.
    pub fn protocol(proto: Protocol) -> Self {
        Self::range(proto, MIN_PORT, MAX_PORT)
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
                // at port 0 of every protocol, so MAX_PORT+1 of one protocol is never MIN_PORT of the next).
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
            (Protocol::from_index(lo >> 16), (lo & 0xffff) as u16, (hi & 0xffff) as u16)
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
        (Protocol::from_index(lo >> 16), (lo & 0xffff) as u16, (hi & 0xffff) as u16)
    }

    /// The full key range of the port space, per protocol: used to enumerate atoms.
    pub fn protocol_key_ranges() -> impl Iterator<Item = (u32, u32)> {
        Protocol::ALL.into_iter().map(|p| (key(p, MIN_PORT), key(p, MAX_PORT)))
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
                .map(|(_, lo, hi)| match (lo, hi) {
                    (MIN_PORT, MAX_PORT) => "all".to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        prop::collection::vec((0u32..3, 1u16..200, 0u16..20), 0..5).prop_map(|v| {
            let mut s = PortSet::empty();
            for (p, lo, len) in v {
                s.union_with(&PortSet::range(Protocol::from_index(p), lo, lo.saturating_add(len)));
            }
            s
        })
    }

    proptest! {
        #[test]
        fn union_and_intersection_agree_with_membership(a in arb_set(), b in arb_set(), p in 0u32..3, port in 1u16..250) {
            let proto = Protocol::from_index(p);
            prop_assert_eq!(a.union(&b).contains(proto, port), a.contains(proto, port) || b.contains(proto, port));
            prop_assert_eq!(a.intersect(&b).contains(proto, port), a.contains(proto, port) && b.contains(proto, port));
            prop_assert_eq!(a.difference(&b).contains(proto, port), a.contains(proto, port) && !b.contains(proto, port));
            // Normalised: equal sets compare equal.
            prop_assert_eq!(a.difference(&b).union(&a.intersect(&b)), a.clone());
        }
    }
}
