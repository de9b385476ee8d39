//! Traffic between pods and addresses outside the cluster (addresses that no pod has). Nothing outside enforces
//! policies, so only the pod's side decides: per identity and direction, which address segments and ports its
//! rules allow. Owns the address segmentation that `diff` and `describe` use, and the per-port view of the UI.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::Range;

use rustc_hash::FxHashMap;

use crate::calico_peer::CalicoId;
use crate::compile::{BlockId, CPeer, Endpoint, Engine, IdentityId, RuleId};
use crate::eval::Sets;
use crate::ipranges::{addr, family_max, net_range, num};
use crate::model::{Direction, PodId};
use crate::portset::{PortSet, Protocol};

/// Documentation addresses (RFC 5737, RFC 3849), tried first when an example outside address is needed.
pub const EXAMPLE_ADDRESSES: [&str; 4] = ["203.0.113.10", "198.51.100.10", "2001:db8::10", "192.0.2.10"];

/// The address space of both families cut at every ipBlock boundary (CIDRs and their exceptions) of some
/// engines: each of their blocks contains either all of a segment or none of it.
#[derive(Clone, Debug)]
pub struct Segments {
    /// (first, last) of each segment: IPv4 segments, then IPv6, in address order, covering both families.
    pub ranges: Vec<(IpAddr, IpAddr)>,
}

impl Segments {
    pub fn new(engines: &[&Engine]) -> Segments {
        let mut starts: [BTreeSet<u128>; 2] = [BTreeSet::from([0]), BTreeSet::from([0])];
        for e in engines {
            for b in &e.blocks {
                for net in std::iter::once(&b.cidr).chain(&b.except) {
                    let (v6, lo, hi) = net_range(net);
                    starts[usize::from(v6)].insert(lo);
                    if hi < family_max(v6) {
                        starts[usize::from(v6)].insert(hi + 1);
                    }
                }
            }
        }
        let mut ranges = Vec::new();
        for (v6, s) in [(false, &starts[0]), (true, &starts[1])] {
            let s: Vec<u128> = s.iter().copied().collect();
            for (i, &lo) in s.iter().enumerate() {
                let hi = s.get(i + 1).map_or(family_max(v6), |next| next - 1);
                ranges.push((addr(v6, lo), addr(v6, hi)));
            }
        }
        Segments { ranges }
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The segments whose first address is in `lo..=hi` of family `v6`: those inside the range when it is a
    /// union of segments (a range of a block of one of the engines). O(log segments).
    fn within(&self, v6: bool, lo: u128, hi: u128) -> Range<usize> {
        let a = self.ranges.partition_point(|r| num(r.0) < (v6, lo));
        let b = self.ranges.partition_point(|r| num(r.0) <= (v6, hi));
        a..b
    }

    /// An address of segment `i` that no pod of `engines` has: a documentation address if the segment holds one,
    /// else the lowest such address after the segment's first (then the first itself). `None`: every address
    /// of the segment is a pod's.
    pub fn outside_address(&self, i: usize, engines: &[&Engine]) -> Option<IpAddr> {
        let (lo, hi) = self.ranges[i];
        let ((v6, l), (_, h)) = (num(lo), num(hi));
        let free = |ip: IpAddr| engines.iter().all(|e| !e.ip_index.contains_key(&ip));
        let doc = EXAMPLE_ADDRESSES.iter().filter_map(|a| a.parse::<IpAddr>().ok()).find(|&a| {
            let (f, n) = num(a);
            f == v6 && (l..=h).contains(&n) && free(a)
        });
        if doc.is_some() {
            return doc;
        }
        // At most (pods + 1) addresses are tried before a free one.
        let pods: usize = engines.iter().map(|e| e.ip_index.len()).sum();
        let start = if l < h { l + 1 } else { l };
        let tries = u128::try_from(pods).unwrap_or(u128::MAX).saturating_add(1);
        let last = h.min(start.saturating_add(tries));
        (start..=last).map(|n| addr(v6, n)).find(|&a| free(a)).or_else(|| free(lo).then_some(lo))
    }

    /// Segment ranges merged where adjacent, each written as a CIDR when it is one, else `FIRST-LAST`.
    pub fn text(&self, segments: &[usize]) -> Vec<String> {
        let mut merged: Vec<((bool, u128), u128)> = Vec::new();
        for &i in segments {
            let ((v6, lo), (_, hi)) = (num(self.ranges[i].0), num(self.ranges[i].1));
            match merged.last_mut() {
                Some(((f, _), h)) if *f == v6 && h.checked_add(1) == Some(lo) => *h = hi,
                _ => merged.push(((v6, lo), hi)),
            }
        }
        merged.into_iter().map(|((v6, lo), hi)| range_text(v6, lo, hi)).collect()
    }

    /// [`Segments::text`] of the segments of sorted, disjoint index ranges `a..b`: O(ranges).
    pub fn text_ranges(&self, ranges: &[(usize, usize)]) -> Vec<String> {
        let first_v6 = self.ranges.partition_point(|r| r.0.is_ipv4());
        let mut merged: Vec<((bool, u128), u128)> = Vec::new();
        for &(a, b) in ranges {
            let b = b.min(self.ranges.len());
            // A range crossing from the IPv4 segments to the IPv6 ones is two ranges.
            let pieces = if a < first_v6 && first_v6 < b { [(a, first_v6), (first_v6, b)] } else { [(a, b), (b, b)] };
            for (a, b) in pieces.into_iter().filter(|(a, b)| a < b) {
                let ((v6, lo), (_, hi)) = (num(self.ranges[a].0), num(self.ranges[b - 1].1));
                match merged.last_mut() {
                    Some(((f, _), h)) if *f == v6 && h.checked_add(1) == Some(lo) => *h = hi,
                    _ => merged.push(((v6, lo), hi)),
                }
            }
        }
        merged.into_iter().map(|((v6, lo), hi)| range_text(v6, lo, hi)).collect()
    }
}

/// Appends the segments `a..b` to sorted, disjoint index `ranges`, without the segments of `skip` (sorted),
/// merging with the last range when adjacent.
pub(crate) fn push_ranges(ranges: &mut Vec<(usize, usize)>, a: usize, b: usize, skip: &[usize]) {
    let mut start = a;
    let first = skip.partition_point(|&x| x < a);
    for &x in skip[first..].iter().take_while(|&&x| x < b).chain(std::iter::once(&b)) {
        if start < x {
            match ranges.last_mut() {
                Some(last) if last.1 == start => last.1 = x,
                _ => ranges.push((start, x)),
            }
        }
        start = x + 1;
    }
}

fn range_text(v6: bool, lo: u128, hi: u128) -> String {
    let bits = if v6 { 128 } else { 32 };
    let size = hi - lo;
    // A CIDR: size + 1 is a power of two and `lo` is aligned to it.
    if size == family_max(v6) && lo == 0 {
        return format!("{}/0", addr(v6, 0));
    }
    if (size.wrapping_add(1)).is_power_of_two() && lo & size == 0 {
        let host_bits = (size + 1).trailing_zeros();
        return format!("{}/{}", addr(v6, lo), bits - host_bits);
    }
    format!("{}-{}", addr(v6, lo), addr(v6, hi))
}

/// What one rule of an identity allows with outside addresses: the ports (named ports resolved against the
/// destination: the identity's own for ingress, none outside) and the ipBlocks (`None`: every address).
struct OutsideRule {
    ports: PortSet,
    blocks: Option<Vec<BlockId>>,
    /// Calico entity rules among the peers (their outside addresses are whole segments).
    calico: Vec<CalicoId>,
}

/// The identity's rules in `dir` as [`OutsideRule`]s; `None` when it is not isolated in `dir` (every address,
/// every port). Rules with selector peers only allow no outside address and are left out.
fn outside_rules(e: &Engine, ident: IdentityId, dir: Direction) -> Option<Vec<(RuleId, OutsideRule)>> {
    let id = &e.identities[ident.index()];
    if !id.governed(dir) {
        return None;
    }
    let rules = match dir {
        Direction::Egress => &id.egress_rules,
        Direction::Ingress => &id.ingress_rules,
    };
    let out = rules
        .iter()
        .map(|&r| (r, &e.rules[r.index()]))
        .filter(|(_, rule)| rule.local.is_none_or(|l| e.calico_peer_of(l).pods.contains(ident)))
        .filter_map(|(r, rule)| {
            let ports = match dir {
                Direction::Egress => rule.ports.resolve(None),
                Direction::Ingress => rule.ports.resolve(Some(id.ports.as_slice())),
            };
            let blocks = (!rule.peers.is_empty()).then(|| {
                rule.peers
                    .iter()
                    .filter_map(|p| match p {
                        CPeer::Block(b) => Some(*b),
                        CPeer::Sel(_)
                        | CPeer::Domains(_)
                        | CPeer::Nothing
                        | CPeer::Calico(_)
                        | CPeer::OwnNode
                        | CPeer::OtherNodes
                        | CPeer::NodeSet(_) => None,
                    })
                    .collect::<Vec<_>>()
            });
            let calico: Vec<CalicoId> =
                rule.peers.iter().filter_map(|p| if let CPeer::Calico(c) = p { Some(*c) } else { None }).collect();
            let useless = ports.is_empty() || (blocks.as_ref().is_some_and(Vec::is_empty) && calico.is_empty());
            (!useless).then_some((r, OutsideRule { ports, blocks, calico }))
        })
        .collect();
    Some(out)
}

/// Ports that identity `ident` allows with each segment in `dir` (egress: to addresses of the segment; ingress:
/// from them). Dense: O(segments); [`allowed_port_runs`] is the compact form.
pub fn allowed_ports(e: &Engine, ident: IdentityId, dir: Direction, segs: &Segments) -> Vec<PortSet> {
    let runs = allowed_port_runs(e, ident, dir, segs);
    let mut out = Vec::with_capacity(segs.len());
    for (k, (start, ports)) in runs.iter().enumerate() {
        let end = runs.get(k + 1).map_or(segs.len(), |r| r.0);
        out.extend(std::iter::repeat_n(ports, end.saturating_sub(*start)).cloned());
    }
    out
}

/// [`allowed_ports`] as runs: `(first segment, ports)` for maximal runs of consecutive segments with the same
/// ports, by increasing first segment, the first at segment 0, each run lasting until the next one (the last
/// until `segs.len()`). One run for an identity whose rules use no ipBlock; otherwise O(intervals of its
/// blocks × log segments), whatever the number of segments the other identities' blocks made.
pub fn allowed_port_runs(e: &Engine, ident: IdentityId, dir: Direction, segs: &Segments) -> Vec<(usize, PortSet)> {
    let Some(rules) = outside_rules(e, ident, dir) else {
        return vec![(0, PortSet::all())];
    };
    // The segment ranges of each rule's blocks (exceptions removed: each block interval covers whole segments).
    let mut events: Vec<(usize, bool, usize)> = Vec::new(); // (segment, is start, rule)
    let mut calico_runs: FxHashMap<CalicoId, Vec<(usize, usize)>> = FxHashMap::default();
    for (ri, (_, rule)) in rules.iter().enumerate() {
        for &b in rule.blocks.iter().flatten() {
            let r = &e.block_ranges[b.index()];
            for &(lo, hi) in &r.ranges {
                let w = segs.within(r.v6, lo, hi);
                if !w.is_empty() {
                    events.push((w.start, true, ri));
                    events.push((w.end, false, ri));
                }
            }
        }
        for &c in &rule.calico {
            let runs = calico_runs.entry(c).or_insert_with(|| calico_segments(e, c, segs));
            for &(a, b) in runs.iter() {
                events.push((a, true, ri));
                events.push((b, false, ri));
            }
        }
    }
    let index: FxHashMap<RuleId, usize> = rules.iter().enumerate().map(|(k, (r, _))| (*r, k)).collect();
    // The evaluator's fold, with the rules whose blocks contain the segment (and those for every address).
    let fold = |active: &[u32]| {
        e.fold_side(ident, dir, &mut Sets, PortSet::all(), false, |r, _| match index.get(&r) {
            Some(&k) if rules[k].1.blocks.is_none() || active[k] > 0 => rules[k].1.ports.clone(),
            _ => PortSet::empty(),
        })
    };
    // Sweep: at each boundary, the ports of the rules with an active range.
    events.sort_unstable();
    let mut active = vec![0u32; rules.len()];
    let mut runs: Vec<(usize, PortSet)> = vec![(0, fold(&active))];
    let mut k = 0;
    while k < events.len() {
        let at = events[k].0;
        while let Some(&(_, start, ri)) = events.get(k).filter(|ev| ev.0 == at) {
            if start {
                active[ri] += 1;
            } else {
                active[ri] = active[ri].saturating_sub(1);
            }
            k += 1;
        }
        if at >= segs.len() {
            break;
        }
        let ports = fold(&active);
        match runs.last_mut() {
            Some(last) if last.1 == ports => {}
            Some(last) if last.0 == at => last.1 = ports,
            _ => runs.push((at, ports)),
        }
    }
    // A run replaced at its start may now equal the one before it.
    runs.dedup_by(|b, a| a.1 == b.1);
    runs
}

/// The runs `a..b` of segments whose addresses (no pod's) a Calico entity rule matches: its criteria are a
/// boolean combination of engine blocks, so each segment is all in or all out. O(segments).
fn calico_segments(e: &Engine, c: CalicoId, segs: &Segments) -> Vec<(usize, usize)> {
    let peer = e.calico_peer_of(c);
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, &(first, _)) in segs.ranges.iter().enumerate() {
        if peer.matches_parts(crate::calico_peer::Lookup::Exact, None, Some(first)) {
            match out.last_mut() {
                Some(last) if last.1 == i => last.1 = i + 1,
                _ => out.push((i, i + 1)),
            }
        }
    }
    out
}

/// What identity `ident` allows with outside addresses in `dir`, grouped by ports (what `describe` shows): each
/// distinct non-empty port set, in order, with the addresses ([`Segments::text`]) of the segments that allow
/// exactly those ports; the segments in `skip` (sorted: those without an outside address) are left out.
/// O(runs + skipped segments + output), not O(segments).
pub fn allowed_groups(
    e: &Engine,
    ident: IdentityId,
    dir: Direction,
    segs: &Segments,
    skip: &[usize],
) -> Vec<(PortSet, Vec<String>)> {
    let runs = allowed_port_runs(e, ident, dir, segs);
    let mut by_ports: BTreeMap<&PortSet, Vec<(usize, usize)>> = BTreeMap::new();
    for (k, (start, ports)) in runs.iter().enumerate().filter(|(_, r)| !r.1.is_empty()) {
        let end = runs.get(k + 1).map_or(segs.len(), |r| r.0);
        push_ranges(by_ports.entry(ports).or_default(), *start, end, skip);
    }
    by_ports.into_iter().filter(|(_, r)| !r.is_empty()).map(|(p, r)| (p.clone(), segs.text_ranges(&r))).collect()
}

/// Which outside addresses identity `ident` allows in `dir` on one port: every one (`None`), or those of these
/// blocks (empty: none). A hint for NetworkPolicy allow rules (their union): where an admin tier's deny or pass
/// rules apply, the exact answer is [`allowed_port_runs`] (the evaluator's fold), and callers verify any address
/// they take from here with the engine ([`example_address`] does).
pub fn allowing_blocks(
    e: &Engine,
    ident: IdentityId,
    dir: Direction,
    proto: Protocol,
    port: u16,
) -> Option<BTreeSet<BlockId>> {
    let mut blocks = BTreeSet::new();
    for (_, rule) in outside_rules(e, ident, dir)?.into_iter().filter(|(_, r)| r.ports.contains(proto, port)) {
        // A Calico entity rule: the blocks of its nets and of the network sets its selector matches (a hint
        // like the rest: callers check the address they take).
        for &c in &rule.calico {
            let p = e.calico_peer_of(c);
            blocks.extend(p.nets.iter().flatten().chain(p.sel.iter().flat_map(|m| m.blocks.iter())));
        }
        blocks.extend(rule.blocks?);
    }
    Some(blocks)
}

/// The next address (`None` after the last of the family).
pub fn next_ip(ip: IpAddr) -> Option<IpAddr> {
    let (v6, n) = num(ip);
    n.checked_add(1).filter(|&m| m <= family_max(v6)).map(|m| addr(v6, m))
}

/// An outside address the engine allows for `pod` in `dir` on a port: a documentation address, else the first
/// address of one of `blocks` or the one after an `except` (`blocks`: from [`allowing_blocks`]).
pub fn example_address(
    e: &Engine,
    pod: PodId,
    blocks: Option<&BTreeSet<BlockId>>,
    dir: Direction,
    proto: Protocol,
    port: u16,
) -> Option<IpAddr> {
    let mut candidates: Vec<IpAddr> = EXAMPLE_ADDRESSES.iter().filter_map(|a| a.parse().ok()).collect();
    for &b in blocks.into_iter().flatten() {
        let block = &e.blocks[b.index()];
        candidates.extend(next_ip(block.cidr.network()));
        candidates.extend(block.except.iter().filter_map(|x| next_ip(x.broadcast())));
    }
    let me = Endpoint::Pod { pod, ip: None };
    candidates.into_iter().find(|&ip| {
        let outside = e.endpoint_for_ip(ip);
        matches!(outside, Endpoint::External(_))
            && match dir {
                Direction::Egress => e.allowed(&me, &outside, proto, port),
                Direction::Ingress => e.allowed(&outside, &me, proto, port),
            }
    })
}

#[cfg(test)]
mod tests {
    use super::push_ranges;

    #[test]
    fn ranges_merge_when_adjacent_and_skip_segments_without_an_outside_address() {
        let mut r = Vec::new();
        push_ranges(&mut r, 0, 3, &[]);
        push_ranges(&mut r, 3, 5, &[]);
        assert_eq!(r, vec![(0, 5)]);
        push_ranges(&mut r, 7, 12, &[1, 7, 9, 10, 12]);
        assert_eq!(r, vec![(0, 5), (8, 9), (11, 12)]);
        push_ranges(&mut r, 12, 13, &[12]);
        assert_eq!(r, vec![(0, 5), (8, 9), (11, 12)]);
        push_ranges(&mut r, 13, 14, &[12]);
        assert_eq!(r, vec![(0, 5), (8, 9), (11, 12), (13, 14)]);
    }
}
