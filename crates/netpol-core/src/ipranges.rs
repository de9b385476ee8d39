//! Addresses as numbers and ipBlocks as sorted interval sets: what makes `except` lists of any length cost
//! O(k log k) once (sort and merge) and O(log k) per address, instead of O(k) per address and segment.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::model::IpBlock;

/// An address as (is IPv6, number). IPv4-mapped IPv6 addresses are not converted here: addresses are
/// canonicalised where they enter the engine.
pub fn num(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

/// The address of family `v6` with number `n` (an IPv4 number above `u32::MAX` saturates).
pub fn addr(v6: bool, n: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX)))
    }
}

/// The highest address number of a family.
pub fn family_max(v6: bool) -> u128 {
    if v6 {
        u128::MAX
    } else {
        u128::from(u32::MAX)
    }
}

/// First and last address numbers of a network, with its family.
pub fn net_range(net: &IpNet) -> (bool, u128, u128) {
    let (v6, lo) = num(net.network());
    let (_, hi) = num(net.broadcast());
    (v6, lo, hi)
}

/// The addresses of one family an ipBlock contains (`cidr` minus every `except`), as sorted, disjoint,
/// non-adjacent inclusive intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockRanges {
    pub v6: bool,
    /// `(first, last)` address numbers, sorted; consecutive intervals are separated by at least one address.
    pub ranges: Vec<(u128, u128)>,
}

impl BlockRanges {
    /// O(k log k) for k exceptions: sort the exceptions, merge the overlapping and adjacent ones, and keep the
    /// gaps between them inside the CIDR. Exceptions of the other family (rejected by validation) are ignored.
    pub fn new(b: &IpBlock) -> BlockRanges {
        let (v6, lo, hi) = net_range(&b.cidr);
        let mut ex: Vec<(u128, u128)> = b
            .except
            .iter()
            .map(net_range)
            .filter(|&(f, _, _)| f == v6)
            .map(|(_, l, h)| (l.max(lo), h.min(hi)))
            .filter(|&(l, h)| l <= h)
            .collect();
        ex.sort_unstable();
        let mut ranges = Vec::with_capacity(ex.len() + 1);
        // `next`: the first address not yet covered by an exception or emitted; `None` once past `hi`.
        let mut next = Some(lo);
        for (l, h) in ex {
            let Some(n) = next else { break };
            if l > n {
                ranges.push((n, l - 1));
            }
            if h >= n {
                next = if h >= hi { None } else { Some(h + 1) };
            }
        }
        if let Some(n) = next {
            ranges.push((n, hi));
        }
        BlockRanges { v6, ranges }
    }

    /// Whether the block contains the address number `n` of family `v6`: O(log k).
    pub fn contains_num(&self, v6: bool, n: u128) -> bool {
        if v6 != self.v6 {
            return false;
        }
        let i = self.ranges.partition_point(|&(_, hi)| hi < n);
        self.ranges.get(i).is_some_and(|&(lo, _)| lo <= n)
    }

    /// Whether the block contains `ip` (compared as given: canonicalise mapped addresses first).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, n) = num(ip);
        self.contains_num(v6, n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn block(cidr: &str, except: &[&str]) -> IpBlock {
        IpBlock { cidr: cidr.parse().unwrap(), except: except.iter().map(|e| e.parse().unwrap()).collect() }
    }

    fn n(s: &str) -> u128 {
        num(s.parse().unwrap()).1
    }

    #[test]
    fn merges_overlapping_nested_and_adjacent_exceptions() {
        let b = block(
            "10.0.0.0/8",
            &["10.1.2.0/24", "10.1.0.0/16", "10.1.2.3/32", "10.2.0.0/16", "10.0.0.0/16", "10.255.255.255/32"],
        );
        let r = BlockRanges::new(&b);
        assert!(!r.v6);
        assert_eq!(r.ranges, vec![(n("10.3.0.0"), n("10.255.255.254"))]);
    }

    #[test]
    fn gaps_between_exceptions_are_kept() {
        let b = block("10.0.0.0/24", &["10.0.0.1/32", "10.0.0.3/32", "10.0.0.128/25"]);
        let r = BlockRanges::new(&b);
        assert_eq!(
            r.ranges,
            vec![(n("10.0.0.0"), n("10.0.0.0")), (n("10.0.0.2"), n("10.0.0.2")), (n("10.0.0.4"), n("10.0.0.127"))]
        );
    }

    #[test]
    fn whole_families_and_no_exceptions() {
        let all4 = BlockRanges::new(&block("0.0.0.0/0", &[]));
        assert_eq!(all4.ranges, vec![(0, family_max(false))]);
        let all6 = BlockRanges::new(&block("::/0", &["::/1"]));
        assert_eq!(all6.ranges, vec![(1 << 127, u128::MAX)]);
        let top = BlockRanges::new(&block("::/0", &["8000::/1"]));
        assert_eq!(top.ranges, vec![(0, (1 << 127) - 1)]);
        assert!(top.contains("::1".parse().unwrap()));
        assert!(!top.contains("8000::1".parse().unwrap()));
        assert!(!top.contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn contains_agrees_with_the_model_on_every_address_of_a_small_block() {
        let b = block(
            "10.0.0.0/24",
            &["10.0.0.0/28", "10.0.0.8/29", "10.0.0.20/30", "10.0.0.21/32", "10.0.0.64/26", "10.0.0.255/32"],
        );
        let r = BlockRanges::new(&b);
        for x in 0u32..1024 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 - 256 + x));
            assert_eq!(r.contains(ip), b.contains(ip), "{ip}");
        }
    }
}
