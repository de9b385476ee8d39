//! Connectivity matrices: for every ordered pair of pods, the set of (protocol, port) ranges allowed.
//!
//! Work is done per behaviour class, never per pod pair. A source class is the set of identities with the
//! same egress policies and the same "peer signature" (which peers of all rules match them); a destination
//! class adds the container ports and the ingress policies. The allowed ports of a (source class,
//! destination class) cell are `egress(src profile → dst signature) ∩ ingress(dst profile ← src signature)`,
//! each side computed once per profile from sparse rows and materialised densely one destination at a time.
//! Port sets are interned, so a cell is a `u32` and intersections are memoised.
//!
//! A stored matrix is column-major (a destination class's column is what is computed, and what consumers read).
//! A matrix too large to store is streamed; its pair counts are counted column by column from the rows alone: the
//! sources a column does not override (neither their egress profile's row at the column's tsig nor the column's
//! ingress row at their msig) all get the cell of two bases, so they are counted by egress base in one step, and
//! only the overridden sources are visited (at 100k pods, about 650 of 27,000 per column). Ingress rows of many
//! profiles are built in two halves on two cores, each half's port sets taken into the first's by content.

use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::compile::{CPeer, CPorts, CRule, Engine, IdentityId, RuleId};
use crate::eval::{Action, ProfileStep, Side, TierEnd, TierId};
use crate::model::Direction;
use crate::model::{ContainerPort, PodId, PolicyId};
use crate::portset::{PortSet, Protocol};

crate::typed_id!(
    /// An interned port set of a [`PortSets`]: its index there.
    PsId
);
pub const EMPTY: PsId = PsId(0);
pub const ALL: PsId = PsId(1);

/// Port sets with ids below this have their intersections memoised in a dense table (a matrix cell is one
/// intersection; clusters have tens of distinct port sets, so the hot path is one array read).
const DENSE: usize = 64;
const UNKNOWN: PsId = PsId(u32::MAX);

/// Interned port sets with memoised set operations.
#[derive(Clone)]
pub struct PortSets {
    sets: Vec<PortSet>,
    index: FxHashMap<PortSet, PsId>,
    inter_dense: Vec<PsId>,
    inter_memo: FxHashMap<(PsId, PsId), PsId>,
    union_memo: FxHashMap<(PsId, PsId), PsId>,
    minus_memo: FxHashMap<(PsId, PsId), PsId>,
}

impl Default for PortSets {
    fn default() -> Self {
        let mut p = PortSets {
            sets: Vec::new(),
            index: FxHashMap::default(),
            inter_dense: vec![UNKNOWN; DENSE * DENSE],
            inter_memo: FxHashMap::default(),
            union_memo: FxHashMap::default(),
            minus_memo: FxHashMap::default(),
        };
        p.intern(PortSet::empty());
        p.intern(PortSet::all());
        p
    }
}

impl PortSets {
    pub fn intern(&mut self, s: PortSet) -> PsId {
        if let Some(&id) = self.index.get(&s) {
            return id;
        }
        let id = PsId::new(self.sets.len());
        self.sets.push(s.clone());
        self.index.insert(s, id);
        id
    }

    pub fn get(&self, id: PsId) -> &PortSet {
        &self.sets[id.index()]
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    #[inline]
    pub fn inter(&mut self, a: PsId, b: PsId) -> PsId {
        if a == ALL || a == b {
            return b;
        }
        if b == ALL {
            return a;
        }
        if a == EMPTY || b == EMPTY {
            return EMPTY;
        }
        let dense = (a.index() < DENSE && b.index() < DENSE).then(|| a.index() * DENSE + b.index());
        if let Some(r) = dense.and_then(|i| self.inter_dense.get(i)).filter(|&&r| r != UNKNOWN) {
            return *r;
        }
        let key = if a < b { (a, b) } else { (b, a) };
        let r = match self.inter_memo.get(&key) {
            Some(&r) => r,
            None => {
                let s = self.get(a).intersect(self.get(b));
                let r = self.intern(s);
                self.inter_memo.insert(key, r);
                r
            }
        };
        if let Some(slot) = dense.and_then(|i| self.inter_dense.get_mut(i)) {
            *slot = r;
        }
        r
    }

    pub fn union(&mut self, a: PsId, b: PsId) -> PsId {
        if a == EMPTY || a == b {
            return b;
        }
        if b == EMPTY {
            return a;
        }
        if a == ALL || b == ALL {
            return ALL;
        }
        let key = if a < b { (a, b) } else { (b, a) };
        if let Some(&r) = self.union_memo.get(&key) {
            return r;
        }
        let s = self.get(a).union(self.get(b));
        let r = self.intern(s);
        self.union_memo.insert(key, r);
        r
    }
    /// The ports of `a` not in `b`.
    pub fn minus(&mut self, a: PsId, b: PsId) -> PsId {
        if a == EMPTY || b == EMPTY {
            return a;
        }
        if b == ALL || a == b {
            return EMPTY;
        }
        if let Some(&r) = self.minus_memo.get(&(a, b)) {
            return r;
        }
        let s = self.get(a).difference(self.get(b));
        let r = self.intern(s);
        self.minus_memo.insert((a, b), r);
        r
    }
}

struct Interner<K> {
    index: FxHashMap<K, u32>,
    items: Vec<K>,
}

impl<K: std::hash::Hash + Eq + Clone> Interner<K> {
    fn new() -> Self {
        Interner { index: FxHashMap::default(), items: Vec::new() }
    }
    fn id(&mut self, k: &K) -> u32 {
        if let Some(&i) = self.index.get(k) {
            return i;
        }
        let i = self.items.len() as u32;
        self.items.push(k.clone());
        self.index.insert(k.clone(), i);
        i
    }
}

/// At least this many ingress profiles: their rows are built on two cores ([`Engine::plan`]).
const PARALLEL_ROWS: usize = 4096;

#[cfg(not(test))]
fn parallel_rows() -> usize {
    PARALLEL_ROWS
}

#[cfg(test)]
thread_local! {
    /// Tests: [`PARALLEL_ROWS`] on this thread.
    static TEST_PARALLEL_ROWS: std::cell::Cell<usize> = const { std::cell::Cell::new(PARALLEL_ROWS) };
}

#[cfg(test)]
fn parallel_rows() -> usize {
    TEST_PARALLEL_ROWS.with(std::cell::Cell::get)
}

/// What building ingress rows reads: the profiles (policies, port profile, masked rules), the port profiles'
/// container ports, and the msigs each peer matches.
struct IngressInputs<'a> {
    profiles: &'a [(Vec<PolicyId>, u32, Vec<RuleId>)],
    pps: &'a [Vec<ContainerPort>],
    peer_msigs: &'a FxHashMap<CPeer, Vec<u32>>,
    n_msig: usize,
}

/// Coverages (in msig or tsig space) memoised per peer, per rule, and per distinct list of peers (the union of its
/// peers'): profiles share rules, and rules share peers (at 100k pods, 38,000 rules would otherwise hold 17 M keys,
/// mostly copies of one peer's).
#[derive(Default)]
struct CoverMemo {
    peer: FxHashMap<CPeer, Rc<Coverage>>,
    rule: FxHashMap<RuleId, Rc<Coverage>>,
    peers: FxHashMap<Box<[CPeer]>, Rc<Coverage>>,
}

impl CoverMemo {
    /// Rule `r`'s coverage; `of_peer` computes a peer's.
    fn get(&mut self, r: RuleId, rule: &CRule, of_peer: impl Fn(&CPeer) -> Coverage) -> Rc<Coverage> {
        if let Some(c) = self.rule.get(&r) {
            return c.clone();
        }
        let peer = &mut self.peer;
        let c = self
            .peers
            .entry(rule.peers.clone())
            .or_insert_with(|| {
                Coverage::of_rule(rule, |p| peer.entry(*p).or_insert_with(|| Rc::new(of_peer(p))).clone())
            })
            .clone();
        self.rule.insert(r, c.clone());
        c
    }
}

/// A rule's ports resolved against a destination's container ports, once per (rule, port profile) when the rule
/// names ports, else once per rule.
#[derive(Default)]
struct ResolveMemo(FxHashMap<(RuleId, u32), PsId>);

impl ResolveMemo {
    fn get(&mut self, ps: &mut PortSets, rule: RuleId, ports: &CPorts, pp: u32, cps: &[ContainerPort]) -> PsId {
        let key = if ports.has_named() { (rule, pp) } else { (rule, u32::MAX) };
        *self.0.entry(key).or_insert_with(|| ps.intern(ports.resolve(Some(cps))))
    }
}

/// The computed matrix at class granularity.
pub struct Matrix {
    /// Identities included (all, or those of one namespace).
    pub identities: Vec<IdentityId>,
    pub src_class_of: FxHashMap<IdentityId, u32>,
    pub dst_class_of: FxHashMap<IdentityId, u32>,
    /// Identities of each class.
    pub src_classes: Vec<Vec<IdentityId>>,
    pub dst_classes: Vec<Vec<IdentityId>>,
    pub port_sets: PortSets,
    /// Column-major `dst_class * src_classes.len() + src_class` → port set id, when stored: a column (what the
    /// matrix computes, and what consumers read) is contiguous.
    cells: Option<Vec<PsId>>,
    /// Kept when cells are not stored, to stream columns.
    plan: Option<Plan>,
}

/// Above this many class pairs the cells are not stored; consumers stream columns instead.
pub const MAX_STORED_CELLS: usize = 64 << 20;

/// Everything needed to compute any column of the matrix.
struct Plan {
    src_classes: Vec<Vec<IdentityId>>,
    dst_classes: Vec<Vec<IdentityId>>,
    src_key: Vec<(u32, u32)>,
    /// (tsig, iprof) of each dst class.
    dst_key: Vec<(u32, u32)>,
    /// Egress: base per egress profile and, per tsig, overrides (eprof, ps).
    e_base: Vec<PsId>,
    e_over: Vec<Vec<(u32, PsId)>>,
    /// Ingress: per ingress profile, (base, overrides msig → ps).
    i_rows: Vec<Row>,
    n_msig: usize,
}

impl Engine {
    /// Computes the matrix over all pods, or the pods of one namespace.
    pub fn matrix(&self, namespace: Option<&str>) -> Result<Matrix, String> {
        self.matrix_with_limit(namespace, MAX_STORED_CELLS)
    }

    /// Like [`Engine::matrix`], storing cells only when there are at most `max_stored_cells` class pairs
    /// (otherwise columns are recomputed on demand by [`Matrix::for_each_column`]).
    pub fn matrix_with_limit(&self, namespace: Option<&str>, max_stored_cells: usize) -> Result<Matrix, String> {
        let identities: Vec<IdentityId> = match namespace {
            None => (0..self.identities.len()).map(IdentityId::new).collect(),
            Some(ns) => {
                let nsid = self.cluster.namespace_id(ns).ok_or_else(|| format!("unknown namespace `{ns}`"))?;
                (0..self.identities.len())
                    .map(IdentityId::new)
                    .filter(|&i| self.identities[i.index()].ns == nsid)
                    .collect()
            }
        };
        let mut ps = PortSets::default();
        let plan = self.plan(&identities, &mut ps);
        let n_src = plan.src_classes.len();
        let n_dst = plan.dst_classes.len();
        let store = n_src.saturating_mul(n_dst) <= max_stored_cells;
        let mut cells = if store { Some(vec![EMPTY; n_src * n_dst]) } else { None };
        if let Some(cells) = cells.as_mut() {
            let mut col = Vec::new();
            let mut scratch = Scratch::default();
            for (d, out) in cells.chunks_exact_mut(n_src.max(1)).enumerate().take(n_dst) {
                self.column(&plan, d, &mut ps, &mut scratch, &mut col);
                out.copy_from_slice(&col);
            }
        }
        let mut m = Matrix {
            identities,
            src_class_of: FxHashMap::default(),
            dst_class_of: FxHashMap::default(),
            src_classes: plan.src_classes.clone(),
            dst_classes: plan.dst_classes.clone(),
            port_sets: ps,
            cells,
            plan: None,
        };
        for (c, ids) in m.src_classes.iter().enumerate() {
            for &i in ids {
                m.src_class_of.insert(i, c as u32);
            }
        }
        for (c, ids) in m.dst_classes.iter().enumerate() {
            for &i in ids {
                m.dst_class_of.insert(i, c as u32);
            }
        }
        if m.cells.is_none() {
            m.plan = Some(plan);
        }
        Ok(m)
    }

    fn plan(&self, identities: &[IdentityId], ps: &mut PortSets) -> Plan {
        // Peer signatures: which compiled peers match each identity.
        let mut matches: FxHashMap<IdentityId, Vec<CPeer>> = FxHashMap::default();
        for &i in identities {
            let ident = &self.identities[i.index()];
            let v: Vec<CPeer> = self.ip_classes[ident.ip_class.index()].iter().map(|&b| CPeer::Block(b)).collect();
            matches.insert(i, v);
        }
        for (s, (_, set)) in self.sel_peers.iter().enumerate() {
            for i in set.iter() {
                if let Some(v) = matches.get_mut(&(i as IdentityId)) {
                    v.push(CPeer::Sel(crate::compile::SelPeerId::new(s)));
                }
            }
        }
        for (c, peer) in self.calico_peers.iter().enumerate() {
            for i in peer.pods.iter() {
                if let Some(v) = matches.get_mut(&i) {
                    v.push(CPeer::Calico(crate::calico_peer::CalicoId::new(c)));
                }
            }
        }
        let mut msigs: Interner<Vec<CPeer>> = Interner::new();
        let mut pps: Interner<Vec<ContainerPort>> = Interner::new();
        let mut tsigs: Interner<(u32, u32)> = Interner::new();
        // A profile: the policies, and the Calico rules among theirs whose own-side criteria the subject fails
        // (they do not apply to it; almost always none).
        let mut eprofs: Interner<(Vec<PolicyId>, Vec<RuleId>)> = Interner::new();
        let mut iprofs: Interner<(Vec<PolicyId>, u32, Vec<RuleId>)> = Interner::new();
        eprofs.id(&(Vec::new(), Vec::new())); // 0 = not isolated
        iprofs.id(&(Vec::new(), u32::MAX, Vec::new())); // 0 = not isolated
        let mut src_index: FxHashMap<(u32, u32), u32> = FxHashMap::default();
        let mut dst_index: FxHashMap<(u32, u32), u32> = FxHashMap::default();
        let mut src_classes: Vec<Vec<IdentityId>> = Vec::new();
        let mut dst_classes: Vec<Vec<IdentityId>> = Vec::new();
        let mut src_key = Vec::new();
        let mut dst_key = Vec::new();
        for &i in identities {
            let ident = &self.identities[i.index()];
            let mut sig = matches.remove(&i).unwrap_or_default();
            sig.sort_unstable_by_key(peer_key);
            let m = msigs.id(&sig);
            let pp = pps.id(&ident.ports);
            let t = tsigs.id(&(m, pp));
            let e = if ident.egress_policies.is_empty() {
                0
            } else {
                eprofs
                    .id(&(ident.egress_policies.clone(), self.masked_rules(i, Direction::Egress, &self.ident_info(i))))
            };
            let n = if ident.ingress_policies.is_empty() {
                0
            } else {
                iprofs.id(&(
                    ident.ingress_policies.clone(),
                    pp,
                    self.masked_rules(i, Direction::Ingress, &self.ident_info(i)),
                ))
            };
            let sc = *src_index.entry((e, m)).or_insert_with(|| {
                src_classes.push(Vec::new());
                src_key.push((e, m));
                (src_classes.len() - 1) as u32
            });
            src_classes[sc as usize].push(i);
            let dc = *dst_index.entry((t, n)).or_insert_with(|| {
                dst_classes.push(Vec::new());
                dst_key.push((t, n));
                (dst_classes.len() - 1) as u32
            });
            dst_classes[dc as usize].push(i);
        }
        // Destination classes sorted by ingress profile, so the dense ingress row changes rarely.
        let mut order: Vec<usize> = (0..dst_classes.len()).collect();
        order.sort_by_key(|&i| (dst_key[i].1, dst_key[i].0));
        let dst_classes: Vec<Vec<IdentityId>> = order.iter().map(|&i| std::mem::take(&mut dst_classes[i])).collect();
        let dst_key: Vec<(u32, u32)> = order.iter().map(|&i| dst_key[i]).collect();

        // Inverse indexes: peer → msigs containing it; msig → tsigs; (protocol, port name) → tsigs whose port
        // profile defines it.
        let mut peer_msigs: FxHashMap<CPeer, Vec<u32>> = FxHashMap::default();
        for (m, sig) in msigs.items.iter().enumerate() {
            for p in sig {
                peer_msigs.entry(*p).or_default().push(m as u32);
            }
        }
        let n_msig = msigs.items.len();
        let n_tsig = tsigs.items.len();
        let mut msig_tsigs: Vec<Vec<u32>> = vec![Vec::new(); n_msig];
        let mut named_tsigs: FxHashMap<(Protocol, &str), Vec<u32>> = FxHashMap::default();
        for (t, &(m, pp)) in tsigs.items.iter().enumerate() {
            msig_tsigs[m as usize].push(t as u32);
            for cp in &pps.items[pp as usize] {
                if let Some(n) = &cp.name {
                    named_tsigs.entry((cp.protocol, &**n)).or_default().push(t as u32);
                }
            }
        }
        // Coverage of each peer and rule, in tsig space here (egress) and msig space in `ingress_rows`.
        let mut tsig_cov = CoverMemo::default();
        let mut cover_t = |r: RuleId, rule: &CRule| -> Rc<Coverage> {
            tsig_cov.get(r, rule, |p| {
                let mut v: Vec<u32> = peer_msigs
                    .get(p)
                    .into_iter()
                    .flatten()
                    .flat_map(|&m| msig_tsigs[m as usize].iter().copied())
                    .collect();
                v.sort_unstable();
                v.dedup();
                Coverage::from_list(v, n_tsig)
            })
        };
        let mut resolve_memo = ResolveMemo::default();
        let mut resolve = |ps: &mut PortSets, rule: RuleId, ports: &CPorts, pp: u32, cps: &[ContainerPort]| -> PsId {
            resolve_memo.get(ps, rule, ports, pp, cps)
        };
        let numeric_only = |ps: &mut PortSets, ports: &CPorts| -> PsId { ps.intern(ports.numeric.clone()) };

        // Egress rows: per egress profile, a base (for every tsig not listed) + overrides per tsig.
        let mut e_base = vec![EMPTY; eprofs.items.len()];
        if let Some(b) = e_base.first_mut() {
            *b = ALL;
        }
        let mut e_over: Vec<Vec<(u32, PsId)>> = vec![Vec::new(); n_tsig];
        let mut memo = RowMemo::default();
        let mask: std::cell::RefCell<Vec<RuleId>> = std::cell::RefCell::new(Vec::new());
        let mut e_rule = |row: &mut RowBuilder, ps: &mut PortSets, r: RuleId, rule: &CRule| {
            if mask.borrow().binary_search(&r).is_ok() {
                return;
            }
            let cov = cover_t(r, rule);
            if cov.complement {
                // Broad rule: its numeric ports for every tsig it covers, its named ports resolved for the
                // tsigs whose pods define them.
                let p = numeric_only(ps, &rule.ports);
                let mut keys = Vec::new();
                for (proto, name) in rule.ports.named.iter().chain(rule.ports.not_named()) {
                    for &t in named_tsigs.get(&(*proto, name.as_str())).into_iter().flatten() {
                        if cov.contains(t) {
                            let pp = tsigs.items[t as usize].1;
                            keys.push((t, resolve(ps, r, &rule.ports, pp, &pps.items[pp as usize])));
                        }
                    }
                }
                keys.sort_unstable();
                keys.dedup_by_key(|k| k.0);
                row.rule(rule.action, keys, Some((p, cov.list.clone())));
            } else {
                let keys: Vec<(u32, PsId)> = cov
                    .list
                    .iter()
                    .map(|&t| {
                        let pp = tsigs.items[t as usize].1;
                        (t, resolve(ps, r, &rule.ports, pp, &pps.items[pp as usize]))
                    })
                    .collect();
                row.rule(rule.action, keys, None);
            }
        };
        for (e, (pols, masked)) in eprofs.items.iter().enumerate().skip(1) {
            *mask.borrow_mut() = masked.clone();
            let (base, over) = if self.calico || self.tiers.len() > 3 {
                self.tier_parts_row(pols, masked, None, Direction::Egress, ps, &mut memo, &mut e_rule)
            } else {
                // A profile with rules masked is its own row (keyed by the profile).
                let key = if masked.is_empty() { u32::MAX } else { e as u32 };
                self.tiered_row(pols, key, Direction::Egress, ps, &mut memo, &mut e_rule)
            };
            e_base[e] = base;
            for &(t, p) in over.iter() {
                e_over[t as usize].push((e as u32, p));
            }
        }

        // Ingress rows: per ingress profile, a base (for every msig not listed) + overrides per msig. Many
        // profiles' rows (each of hundreds of msigs at 100k pods) are built in two halves on two cores, each with
        // its own port sets and memos; the second half's port sets are then taken into the first's by content.
        let profiles = &iprofs.items;
        let parallel = profiles.len() >= parallel_rows();
        let mid = if parallel { 1 + (profiles.len() - 1) / 2 } else { profiles.len() };
        let shared = ps.len();
        let mut ps2 = if parallel { ps.clone() } else { PortSets::default() };
        let inputs = IngressInputs { profiles, pps: &pps.items, peer_msigs: &peer_msigs, n_msig };
        let (first, second) = crate::par::join(
            parallel,
            || self.ingress_rows(&inputs, 1..mid, ps),
            || self.ingress_rows(&inputs, mid..profiles.len(), &mut ps2),
        );
        let mut i_rows: Vec<Row> = vec![(ALL, Arc::from([]))];
        i_rows.extend(first);
        if ps2.len() <= shared {
            // Only port sets both halves had: the ids agree.
            i_rows.extend(second);
        } else {
            let map: Vec<PsId> = (0..ps2.len())
                .map(|i| if i < shared { PsId::new(i) } else { ps.intern(ps2.get(PsId::new(i)).clone()) })
                .collect();
            // Rows shared between profiles stay shared.
            let mut mapped: FxHashMap<usize, Arc<[(u32, PsId)]>> = FxHashMap::default();
            for (base, over) in second {
                let key = Arc::as_ptr(&over) as *const (u32, PsId) as usize;
                let over = mapped
                    .entry(key)
                    .or_insert_with(|| over.iter().map(|&(m, p)| (m, map[p.index()])).collect())
                    .clone();
                i_rows.push((map[base.index()], over));
            }
        }
        Plan { src_classes, dst_classes, src_key, dst_key, e_base, e_over, i_rows, n_msig }
    }

    /// The rows of ingress profiles `range` (see [`Engine::plan`]), with port sets interned in `ps`.
    fn ingress_rows(&self, inp: &IngressInputs<'_>, range: std::ops::Range<usize>, ps: &mut PortSets) -> Vec<Row> {
        let mut msig_cov = CoverMemo::default();
        let mut cover_m = |r: RuleId, rule: &CRule| -> Rc<Coverage> {
            msig_cov
                .get(r, rule, |p| Coverage::from_list(inp.peer_msigs.get(p).cloned().unwrap_or_default(), inp.n_msig))
        };
        let mut resolve = ResolveMemo::default();
        let mut memo = RowMemo::default();
        let mut rows = Vec::with_capacity(range.len());
        for n in range {
            let (pols, pp, masked) = &inp.profiles[n];
            let cps = &inp.pps[*pp as usize];
            let mut i_rule = |row: &mut RowBuilder, ps: &mut PortSets, r: RuleId, rule: &CRule| {
                if masked.binary_search(&r).is_ok() {
                    return;
                }
                let p = resolve.get(ps, r, &rule.ports, *pp, cps);
                let cov = cover_m(r, rule);
                if cov.complement {
                    row.rule(rule.action, [], Some((p, cov.list.clone())));
                } else {
                    row.rule(rule.action, cov.list.iter().map(|&m| (m, p)), None);
                }
            };
            rows.push(if self.calico || self.tiers.len() > 3 {
                self.tier_parts_row(pols, masked, Some(*pp), Direction::Ingress, ps, &mut memo, &mut i_rule)
            } else {
                let key = if masked.is_empty() { *pp } else { 0x8000_0000 | n as u32 };
                self.tiered_row(pols, key, Direction::Ingress, ps, &mut memo, &mut i_rule)
            });
        }
        rows
    }

    /// A profile's row: `rule(row, ps, id, rule)` adds each of its rules, in evaluation order; tier ends come
    /// between.
    fn profile_row<F>(&self, pols: &[PolicyId], dir: Direction, ps: &mut PortSets, rule: &mut F) -> RowBuilder
    where
        F: FnMut(&mut RowBuilder, &mut PortSets, RuleId, &CRule),
    {
        let mut row = RowBuilder::new();
        for step in self.profile_steps(pols, dir) {
            match step {
                ProfileStep::TierEnd { selected, end, hold } => row.tier_end(selected, end, hold),
                ProfileStep::Rule(r) => rule(&mut row, ps, r, &self.rules[r.index()]),
            }
        }
        row
    }

    /// A profile's row, computed in parts that many profiles share: the Admin tier's rules (allowed and still
    /// undecided per key: a handful of distinct admin policy sets, whose rules often cover much of the
    /// cluster) and the later tiers' (`rest`): the NetworkPolicies' (per namespace, covering few keys) when
    /// some select the subject — their isolation then decides everything left, and the Baseline tier is never
    /// reached — or else the Baseline tier's (a handful of sets again). Later tiers decide only what the Admin
    /// tier left undecided, port by port, so for every key `row = admin.allowed ∪ (admin.undecided ∩ rest)`.
    /// `key` tells profiles with the same policies apart (ingress: the destination's container ports).
    fn tiered_row<F>(
        &self,
        pols: &[PolicyId],
        key: u32,
        dir: Direction,
        ps: &mut PortSets,
        memo: &mut RowMemo,
        rule: &mut F,
    ) -> Row
    where
        F: FnMut(&mut RowBuilder, &mut PortSets, RuleId, &CRule),
    {
        let admin_tier = self.tier_id(crate::model::PolicyTier::Admin);
        let (admin, rest): (Vec<PolicyId>, Vec<PolicyId>) =
            pols.iter().partition(|&&p| self.policy_tier(p) == admin_tier);
        let np: Vec<PolicyId> = rest.iter().copied().filter(|&p| self.policy_tier(p) == self.np_tier()).collect();
        let rest = if np.is_empty() { rest } else { np };
        let rest_row = match memo.rest.get(&(rest.clone(), key)) {
            Some(r) => r.clone(),
            None => {
                let r = if rest.is_empty() {
                    (ALL, Arc::from([]))
                } else {
                    let (base, over) = self.profile_row(&rest, dir, ps, rule).finish_with(ps, |s, ps| s.finish(ps));
                    (base, Arc::from(over))
                };
                memo.rest.insert((rest, key), r.clone());
                r
            }
        };
        if admin.is_empty() {
            return rest_row;
        }
        let (a_base, a_over) = match memo.admin.get(&(admin.clone(), key)) {
            Some(a) => a.clone(),
            None => {
                let a = self.profile_row(&admin, dir, ps, rule).finish_with(ps, |s, ps| s.parts(ps));
                memo.admin.insert((admin, key), a.clone());
                a
            }
        };
        combine_rows(ps, a_base, &a_over, &rest_row)
    }

    /// A profile's row when any tier may pass to the next (Calico's tiers, or more than the three built-in
    /// ones): folded tier by tier, each tier's part (allowed and still undecided per key, as if that tier were
    /// the first) computed once per (tier, the profile's policies of that tier, the masked rules among theirs,
    /// and for ingress the destination's container ports when those rules name ports) and shared by every
    /// profile with the same part; then, from the last tier to the first, `row = allowed ∪ (undecided ∩ row of
    /// the later tiers)` per key, memoised per (part, later row). A tier decides only what earlier tiers left
    /// undecided, port by port, so this is the fold of the whole profile. A part that leaves nothing undecided
    /// (a tier ending in "deny" that selects the subject) makes the later tiers irrelevant. In a run of Antrea's
    /// tiers (`eval::Tier::hold`) a part also has what its passes hold past its end, which goes on after the run:
    /// `row = allowed ∪ (held ∩ row after the run) ∪ (undecided ∩ row of the later tiers)`.
    #[allow(clippy::too_many_arguments)]
    fn tier_parts_row<F>(
        &self,
        pols: &[PolicyId],
        masked: &[RuleId],
        pp: Option<u32>,
        dir: Direction,
        ps: &mut PortSets,
        memo: &mut RowMemo,
        rule: &mut F,
    ) -> Row
    where
        F: FnMut(&mut RowBuilder, &mut PortSets, RuleId, &CRule),
    {
        let mut by_tier: Vec<(TierId, PolicyId)> = pols.iter().map(|&p| (self.policy_tier(p), p)).collect();
        by_tier.sort_unstable();
        let tm = &mut memo.tiers;
        if tm.rows.is_empty() {
            tm.rows.push((ALL, Arc::from([])));
        }
        let mut later = 0u32; // the row of no tier: everything allowed
                              // (tier, row of that tier and the later ones), from the last tier down: where a held pass goes on.
        let mut from: Vec<(TierId, u32)> = Vec::new();
        let mut end = by_tier.len();
        while end > 0 {
            let t = by_tier[end - 1].0;
            let start = by_tier[..end].iter().rposition(|&(u, _)| u != t).map_or(0, |i| i + 1);
            let tier_pols: Vec<PolicyId> = by_tier[start..end].iter().map(|&(_, p)| p).collect();
            end = start;
            let rules_of = |p: PolicyId| self.policy_rules(p, dir);
            let named = pp.filter(|_| {
                tier_pols.iter().any(|&p| rules_of(p).iter().any(|r| self.rules[r.index()].ports.has_named()))
            });
            let tier_masked: Vec<RuleId> = masked.iter().copied().filter(|r| self.rules[r.index()].tier == t).collect();
            let key = (t, tier_pols, named.unwrap_or(u32::MAX), tier_masked);
            let part = match tm.part_ids.get(&key) {
                Some(&id) => id,
                None => {
                    let mut row = RowBuilder::new();
                    for p in self.evaluation_order(&key.1) {
                        for &r in rules_of(p) {
                            rule(&mut row, ps, r, &self.rules[r.index()]);
                        }
                    }
                    row.tier_end(true, self.tiers[t.index()].end, self.tiers[t.index()].hold);
                    let part = row.finish_with(ps, |s, ps| s.parts3(ps));
                    let decisive = part.0 .1 == EMPTY
                        && part.0 .2 == EMPTY
                        && part.1.iter().all(|&(_, (_, u, h))| u == EMPTY && h == EMPTY);
                    let id = tm.parts.len() as u32;
                    tm.parts.push((part, decisive));
                    tm.part_ids.insert(key, id);
                    id
                }
            };
            let (part_row, decisive) = &tm.parts[part as usize];
            if *decisive {
                later = 0;
            }
            // Antrea: what the tier's passes hold goes on after the run of tiers that hold it (`Tier::hold`):
            // to the row of the first tier with policies after the tier that releases it.
            let holds = part_row.0 .2 != EMPTY || part_row.1.iter().any(|&(_, (_, _, h))| h != EMPTY);
            let after_run = if holds {
                let release = (t.index()..self.tiers.len()).find(|&u| !self.tiers[u].hold).unwrap_or(t.index());
                from.iter().rev().find(|&&(u, _)| u.index() > release).map_or(0, |&(_, r)| r)
            } else {
                u32::MAX
            };
            later = match tm.combined.get(&(part, later, after_run)) {
                Some(&id) => id,
                None => {
                    let (base, over) = part_row;
                    let two = |&(a, u, _): &Parts3| (a, u);
                    let row = if holds {
                        // allowed ∪ (held ∩ after the run), then ∪ (undecided ∩ later): the three are disjoint.
                        let held_over: Vec<(u32, (PsId, PsId))> =
                            over.iter().map(|&(k, (a, _, h))| (k, (a, h))).collect();
                        let first = combine_rows(ps, (base.0, base.2), &held_over, &tm.rows[after_run as usize]);
                        let (zb, zo) = zip_undecided(&first, (base.1, over));
                        combine_rows(ps, zb, &zo, &tm.rows[later as usize])
                    } else {
                        let over2: Vec<(u32, (PsId, PsId))> = over.iter().map(|(k, p)| (*k, two(p))).collect();
                        combine_rows(ps, two(base), &over2, &tm.rows[later as usize])
                    };
                    let id = tm.rows.len() as u32;
                    tm.rows.push(row);
                    tm.combined.insert((part, later, after_run), id);
                    id
                }
            };
            from.push((t, later));
        }
        tm.rows[later as usize].clone()
    }

    /// Fills `out` with the cells of destination class `d`, one per source class.
    fn column(&self, plan: &Plan, d: usize, ps: &mut PortSets, scratch: &mut Scratch, out: &mut Vec<PsId>) {
        let over = Self::prepare_column(plan, d, scratch);
        out.clear();
        out.extend(plan.src_key.iter().map(|&(e, m)| {
            let a = scratch.ecol[e as usize];
            let b = scratch.irow[m as usize];
            ps.inter(a, b)
        }));
        Self::finish_column(plan, over, scratch);
    }

    /// Sets `scratch` up for destination class `d`: the egress column (each egress profile's port set towards
    /// the class's tsig) and the ingress row (the class's profile's port set from each msig). Returns the
    /// egress overrides, which [`Engine::finish_column`] undoes.
    fn prepare_column<'p>(plan: &'p Plan, d: usize, scratch: &mut Scratch) -> &'p [(u32, PsId)] {
        let (t, n) = plan.dst_key[d];
        // Egress column: the port set each egress profile allows towards this tsig (base + this tsig's
        // overrides, undone afterwards).
        if scratch.ecol.len() != plan.e_base.len() {
            scratch.ecol = plan.e_base.clone();
        }
        let over = &plan.e_over[t as usize];
        for &(e, p) in over {
            scratch.ecol[e as usize] = p;
        }
        // Ingress row: the port set this profile allows from each msig. Dense; switching profiles undoes the
        // previous overrides and refills only when the base changes.
        if scratch.irow_prof != Some(n) {
            let (base, sparse) = &plan.i_rows[n as usize];
            if scratch.irow.len() != plan.n_msig || scratch.irow_base != *base {
                scratch.irow.clear();
                scratch.irow.resize(plan.n_msig, *base);
                scratch.irow_base = *base;
            } else if let Some(prev) = scratch.irow_prof {
                for &(m, _) in plan.i_rows[prev as usize].1.iter() {
                    scratch.irow[m as usize] = *base;
                }
            }
            for &(m, p) in sparse.iter() {
                scratch.irow[m as usize] = p;
            }
            scratch.irow_prof = Some(n);
        }
        over
    }

    fn finish_column(plan: &Plan, over: &[(u32, PsId)], scratch: &mut Scratch) {
        for &(e, _) in over {
            scratch.ecol[e as usize] = plan.e_base[e as usize];
        }
    }

    /// Counts the pairs of the destination classes `cols`, without computing every cell when the
    /// column's overrides are few: the sources a column does not override (neither their egress profile towards
    /// its tsig nor its ingress profile from their msig) get the cell of their egress base and the ingress base,
    /// so they are counted by base value ([`SourceIndex::by_base`]); only the overridden ones are visited, each
    /// moving its weight from that default cell to its own. A column with as many overridden sources as there
    /// are sources is computed whole (`how` may ask for either way on every column).
    #[allow(clippy::too_many_arguments)]
    fn count_columns(
        &self,
        plan: &Plan,
        cols: std::ops::Range<usize>,
        ps: &mut PortSets,
        w: &Weights<'_>,
        index: &SourceIndex,
        how: Counting,
        mut done: impl FnMut(usize),
    ) -> ColumnCounter {
        let mut acc = ColumnCounter::default();
        let (mut scratch, mut col) = (Scratch::default(), Vec::new());
        let n_src = plan.src_key.len();
        let mut stamp = vec![0u32; n_src];
        for d in cols {
            let (t, n) = plan.dst_key[d];
            let (base, sparse) = &plan.i_rows[n as usize];
            let over = &plan.e_over[t as usize];
            let touched: usize = over.iter().map(|&(e, _)| index.by_e.get(e as usize).len()).sum::<usize>()
                + sparse.iter().map(|&(m, _)| index.by_m.get(m as usize).len()).sum::<usize>();
            let whole = match how {
                Counting::Cells => true,
                Counting::Cheaper => touched >= n_src,
                Counting::Overrides => false,
            };
            if whole {
                self.column(plan, d, ps, &mut scratch, &mut col);
                acc.add(d, &col, w);
                done(d);
                continue;
            }
            let over = Self::prepare_column(plan, d, &mut scratch);
            for &(v, weight) in &index.by_base {
                acc.put(ps.inter(v, *base), weight);
            }
            let mark = d as u32 + 1;
            for &(e, p) in over {
                let default = ps.inter(plan.e_base[e as usize], *base);
                for &s in index.by_e.get(e as usize) {
                    stamp[s as usize] = mark;
                    let m = plan.src_key[s as usize].1;
                    let c = ps.inter(p, scratch.irow[m as usize]);
                    acc.take(default, w.src[s as usize]);
                    acc.put(c, w.src[s as usize]);
                }
            }
            for &(m, p) in sparse.iter() {
                for &s in index.by_m.get(m as usize) {
                    if stamp[s as usize] == mark {
                        continue;
                    }
                    let v = plan.e_base[plan.src_key[s as usize].0 as usize];
                    let (default, c) = (ps.inter(v, *base), ps.inter(v, p));
                    acc.take(default, w.src[s as usize]);
                    acc.put(c, w.src[s as usize]);
                }
            }
            // Every self pair's cell was put above (its source is counted at its own or its default cell).
            let mut cell = |s: usize| {
                let (e, m) = plan.src_key[s];
                ps.inter(scratch.ecol[e as usize], scratch.irow[m as usize])
            };
            acc.finish(d, w.self_pairs[d].iter().map(|&(s, k)| (cell(s), k)), w);
            Self::finish_column(plan, over, &mut scratch);
            done(d);
        }
        acc
    }
}

/// How [`Engine::count_columns`] counts a column: computing its every cell, by its overrides, or whichever is
/// less work (what every caller but the tests asks).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Counting {
    Cells,
    Overrides,
    Cheaper,
}

/// The sources of a plan grouped for [`Engine::count_columns`]: by egress profile, by msig, and their summed
/// weights by egress base port set.
struct SourceIndex {
    by_e: Csr,
    by_m: Csr,
    by_base: Vec<(PsId, u64)>,
}

impl SourceIndex {
    fn new(plan: &Plan, src_w: &[u64]) -> Self {
        let by_e = Csr::new(plan.e_base.len(), plan.src_key.iter().map(|&(e, _)| e));
        let by_m = Csr::new(plan.n_msig, plan.src_key.iter().map(|&(_, m)| m));
        let mut base: FxHashMap<PsId, u64> = FxHashMap::default();
        for (s, &(e, _)) in plan.src_key.iter().enumerate() {
            *base.entry(plan.e_base[e as usize]).or_default() += src_w[s];
        }
        let mut by_base: Vec<(PsId, u64)> = base.into_iter().collect();
        by_base.sort_unstable();
        SourceIndex { by_e, by_m, by_base }
    }
}

/// Items (source class numbers) grouped by a key below `keys`, in item order.
struct Csr {
    starts: Vec<u32>,
    items: Vec<u32>,
}

impl Csr {
    fn new(keys: usize, key_of: impl Iterator<Item = u32> + Clone) -> Self {
        let mut starts = vec![0u32; keys + 1];
        for k in key_of.clone() {
            starts[k as usize + 1] += 1;
        }
        for i in 0..keys {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut items = vec![0u32; starts[keys] as usize];
        for (s, k) in key_of.enumerate() {
            items[next[k as usize] as usize] = s as u32;
            next[k as usize] += 1;
        }
        Csr { starts, items }
    }

    fn get(&self, k: usize) -> &[u32] {
        match (self.starts.get(k), self.starts.get(k + 1)) {
            (Some(&a), Some(&b)) => &self.items[a as usize..b as usize],
            _ => &[],
        }
    }
}

#[derive(Default)]
struct Scratch {
    ecol: Vec<PsId>,
    irow: Vec<PsId>,
    irow_base: PsId,
    irow_prof: Option<u32>,
}

/// Which keys (msigs or tsigs) a rule's peers cover: the listed ones, or (complement) all but the listed ones.
#[derive(Clone, Debug)]
struct Coverage {
    complement: bool,
    /// Sorted.
    list: Vec<u32>,
}

impl Coverage {
    fn all() -> Self {
        Coverage { complement: true, list: Vec::new() }
    }
    /// From a sorted list out of `n` keys; more than half covered becomes a complement.
    fn from_list(list: Vec<u32>, n: usize) -> Self {
        if list.len() * 2 <= n {
            return Coverage { complement: false, list };
        }
        let mut comp = Vec::with_capacity(n - list.len());
        let mut it = list.iter().peekable();
        for k in 0..n as u32 {
            if it.peek() == Some(&&k) {
                it.next();
            } else {
                comp.push(k);
            }
        }
        Coverage { complement: true, list: comp }
    }
    fn contains(&self, k: u32) -> bool {
        self.list.binary_search(&k).is_ok() != self.complement
    }
    /// What a rule's peers cover (everything without peers), from each peer's coverage (shared when it has one
    /// peer).
    fn of_rule(rule: &CRule, mut cover: impl FnMut(&CPeer) -> Rc<Coverage>) -> Rc<Coverage> {
        match &rule.peers[..] {
            [] => Rc::new(Coverage::all()),
            [one] => cover(one),
            peers => {
                let mut acc = Coverage::clone(&cover(&peers[0]));
                for p in &peers[1..] {
                    let c = cover(p);
                    acc = match (acc.complement, c.complement) {
                        (false, false) => Coverage { complement: false, list: merge(&acc.list, &c.list) },
                        (true, true) => Coverage { complement: true, list: intersect(&acc.list, &c.list) },
                        (true, false) => Coverage { complement: true, list: minus(&acc.list, &c.list) },
                        (false, true) => Coverage { complement: true, list: minus(&c.list, &acc.list) },
                    };
                }
                acc.list.shrink_to_fit();
                Rc::new(acc)
            }
        }
    }
}

/// The union of two sorted lists, sorted.
fn merge(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut v = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
        v.push(x.min(y));
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    v.extend_from_slice(a.get(i..).unwrap_or_default());
    v.extend_from_slice(b.get(j..).unwrap_or_default());
    v
}

fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    a.iter().copied().filter(|x| b.binary_search(x).is_ok()).collect()
}

fn minus(a: &[u32], b: &[u32]) -> Vec<u32> {
    a.iter().copied().filter(|x| b.binary_search(x).is_err()).collect()
}

/// Builds one profile's row by the evaluator's fold ([`Side`]) over the profile's rules in order, for every key
/// (msig or tsig) at once: a rule applies to the keys it lists, each with its port set, and a broad rule also
/// to every key but its exceptions. Keys no rule lists or excepts share one fold (the row's base); each of the
/// others is folded over the broad rules and its own entries only.
struct RowBuilder {
    entries: Vec<Entry>,
    /// (key, entry, ports) of every listed key; sorted when the row is finished.
    listed: Vec<(u32, u32, PsId)>,
    /// Entries that apply to unlisted keys (broad rules, tier ends), in order.
    broad: Vec<u32>,
    /// Keys some broad rule does not apply to.
    excepted: Vec<u32>,
}

enum Entry {
    Rule { action: Action, broad: Option<(PsId, Vec<u32>)> },
    TierEnd { selected: bool, end: TierEnd, hold: bool },
}

impl RowBuilder {
    fn new() -> Self {
        RowBuilder { entries: Vec::new(), listed: Vec::new(), broad: Vec::new(), excepted: Vec::new() }
    }

    /// A rule with `action`: the listed `keys` with their ports, and optionally broad ports for every other key
    /// except the (sorted) exceptions.
    fn rule(&mut self, action: Action, keys: impl IntoIterator<Item = (u32, PsId)>, broad: Option<(PsId, Vec<u32>)>) {
        // Broad ports that are empty change nothing for the keys the rule does not list.
        let broad = broad.filter(|&(p, _)| p != EMPTY);
        let e = self.entries.len() as u32;
        self.listed.extend(keys.into_iter().map(|(k, p)| (k, e, p)));
        if let Some((_, except)) = &broad {
            self.broad.push(e);
            self.excepted.extend_from_slice(except);
        }
        self.entries.push(Entry::Rule { action, broad });
    }

    fn tier_end(&mut self, selected: bool, end: TierEnd, hold: bool) {
        self.broad.push(self.entries.len() as u32);
        self.entries.push(Entry::TierEnd { selected, end, hold });
    }

    /// Entry `e` on one key's fold: with the key's own ports if it lists the key, else its broad ports unless the
    /// key is excepted.
    fn apply(&self, ps: &mut PortSets, side: &mut Side<PsId>, e: u32, listed: Option<PsId>, excepted: bool) {
        match &self.entries[e as usize] {
            Entry::TierEnd { selected, end, hold } => side.end_tier(ps, *selected, *end, *hold),
            Entry::Rule { action, broad } => {
                let ports = match (listed, broad) {
                    (Some(p), _) => p,
                    (None, Some((p, _))) if !excepted => *p,
                    _ => return,
                };
                side.rule(ps, *action, &ports);
            }
        }
    }

    /// (base for unlisted keys, overrides sorted by key).
    ///
    /// Keys with the same entries (with the same ports) and the same exceptions fold alike: each such signature
    /// is folded once. A rule that lists a third of the cluster with one port set (an admin tier's `namespaces`
    /// peer) then costs one fold, not one per key.
    fn finish_with<T: Copy + PartialEq>(
        mut self,
        ps: &mut PortSets,
        out: impl Fn(Side<PsId>, &mut PortSets) -> T,
    ) -> (T, Vec<(u32, T)>) {
        // Unlisted keys: every broad entry applies.
        let side = self.fold_excepting(ps, &[], &[]);
        let base = out(side, ps);
        // By key, each key's entries in entry order (they were pushed rule by rule): a stable counting sort,
        // linear in the entries and the key range.
        self.listed = sort_by_key_stable(std::mem::take(&mut self.listed));
        self.excepted.sort_unstable();
        self.excepted.dedup();
        // The broad entries excepting each key, by key.
        let mut except_of: Vec<(u32, u32)> = Vec::new();
        for (bi, &b) in self.broad.iter().enumerate() {
            if let Entry::Rule { broad: Some((_, except)), .. } = &self.entries[b as usize] {
                except_of.extend(except.iter().map(|&k| (k, bi as u32)));
            }
        }
        except_of.sort_unstable();
        // (own entries with their ports, broad entries excepting the key) → the key's fold. Signatures are
        // compared in place (slices of `listed` and `except_of`), by hash first: no allocation per key.
        let sig_hash = |own: &[(u32, u32, PsId)], exc: &[(u32, u32)]| {
            let mut h = rustc_hash::FxHasher::default();
            own.iter().for_each(|&(_, e, p)| (e, p).hash(&mut h));
            h.write_u32(u32::MAX);
            exc.iter().for_each(|e| e.1.hash(&mut h));
            h.finish()
        };
        let same = |a: &[(u32, u32, PsId)], ax: &[(u32, u32)], b: &[(u32, u32, PsId)], bx: &[(u32, u32)]| {
            a.len() == b.len()
                && ax.len() == bx.len()
                && a.iter().zip(b).all(|(x, y)| (x.1, x.2) == (y.1, y.2))
                && ax.iter().zip(bx).all(|(x, y)| x.1 == y.1)
        };
        // Per hash: (own range in `listed`, range in `except_of`, fold).
        type Known<T> = Vec<(usize, usize, usize, usize, T)>;
        let mut memo: FxHashMap<u64, Known<T>> = FxHashMap::default();
        let mut over = Vec::new();
        let (mut i, mut j, mut x) = (0, 0, 0);
        loop {
            let k = match (self.listed.get(i), self.excepted.get(j)) {
                (None, None) => break,
                (Some(l), Some(&x)) => l.0.min(x),
                (Some(l), None) => l.0,
                (None, Some(&x)) => x,
            };
            let start = i;
            while self.listed.get(i).is_some_and(|l| l.0 == k) {
                i += 1;
            }
            if self.excepted.get(j) == Some(&k) {
                j += 1;
            }
            let x0 = x;
            while except_of.get(x).is_some_and(|e| e.0 == k) {
                x += 1;
            }
            let own = &self.listed[start..i];
            let exc = &except_of[x0..x];
            let bucket = memo.entry(sig_hash(own, exc)).or_default();
            let known = bucket
                .iter()
                .find(|&&(s0, s1, e0, e1, _)| same(own, exc, &self.listed[s0..s1], &except_of[e0..e1]))
                .map(|b| b.4);
            let v = match known {
                Some(v) => v,
                None => {
                    let excepted: Vec<u32> = exc.iter().map(|e| e.1).collect();
                    let side = self.fold_excepting(ps, own, &excepted);
                    let v = out(side, ps);
                    bucket.push((start, i, x0, x, v));
                    v
                }
            };
            if v != base {
                over.push((k, v));
            }
        }
        (base, over)
    }

    /// The fold for one key, over the broad entries and `own` (its listed entries, by entry), except the broad
    /// entries `excepted` (their indexes in `broad`, sorted) that do not apply to it.
    fn fold_excepting(&self, ps: &mut PortSets, own: &[(u32, u32, PsId)], excepted: &[u32]) -> Side<PsId> {
        let mut side = Side::new(ps, ALL);
        let mut own = own.iter().peekable();
        for (bi, &b) in self.broad.iter().enumerate() {
            while let Some(&&(_, e, p)) = own.peek().filter(|o| o.1 < b) {
                self.apply(ps, &mut side, e, Some(p), false);
                own.next();
            }
            if let Some(&&(_, e, p)) = own.peek().filter(|o| o.1 == b) {
                self.apply(ps, &mut side, e, Some(p), false);
                own.next();
                continue;
            }
            self.apply(ps, &mut side, b, None, excepted.binary_search(&(bi as u32)).is_ok());
        }
        for &(_, e, p) in own {
            self.apply(ps, &mut side, e, Some(p), false);
        }
        side
    }
}

/// `(key, entry, ports)` triples sorted by key, keeping the order of equal keys.
fn sort_by_key_stable(v: Vec<(u32, u32, PsId)>) -> Vec<(u32, u32, PsId)> {
    let Some(max) = v.iter().map(|t| t.0 as usize).max() else { return v };
    let mut start = vec![0usize; max + 2];
    for t in &v {
        start[t.0 as usize + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut out = vec![(0, 0, EMPTY); v.len()];
    for t in v {
        let at = &mut start[t.0 as usize];
        if let Some(slot) = out.get_mut(*at) {
            *slot = t;
        }
        *at += 1;
    }
    out
}

/// A row: the base (every key not listed) and the overrides, sorted by key.
/// A row: the base and the overrides, sorted by key. The overrides are shared (and exactly sized): the same row
/// serves many profiles (at 100k pods, 34,000 ingress profiles have 13,000 distinct rows of 19 M overrides).
type Row = (PsId, Arc<[(u32, PsId)]>);

/// A row of (allowed, undecided) pairs: the base and the overrides, sorted by key.
type PartsRow = ((PsId, PsId), Vec<(u32, (PsId, PsId))>);

/// Rows of the Admin tier part (allowed, undecided) and of the later tiers' part, by policies and key.
#[derive(Default)]
struct RowMemo {
    admin: FxHashMap<(Vec<PolicyId>, u32), PartsRow>,
    rest: FxHashMap<(Vec<PolicyId>, u32), Row>,
    tiers: TierMemo,
}

/// Per-tier parts and their combinations (see [`Engine::tier_parts_row`]).
#[derive(Default)]
struct TierMemo {
    /// (tier, its policies, the destination's port profile if their rules name ports, masked rules) → part.
    part_ids: FxHashMap<(TierId, Vec<PolicyId>, u32, Vec<RuleId>), u32>,
    /// Each part (allowed, undecided, held past the tier's end per key), and whether it leaves nothing
    /// undecided or held.
    parts: Vec<(Parts3Row, bool)>,
    /// Combined rows; 0 is the row of no tier (everything allowed).
    rows: Vec<Row>,
    /// (part, row of the later tiers, row after the run of tiers that hold its passes or `u32::MAX`) → row.
    combined: FxHashMap<(u32, u32, u32), u32>,
}

/// A tier's part with what its passes hold (see [`crate::eval::Tier::hold`]): (allowed, undecided, held) base
/// and overrides.
type Parts3Row = (Parts3, Vec<(u32, Parts3)>);

/// (allowed, undecided, held) of one key.
type Parts3 = (PsId, PsId, PsId);

/// `row` (a combined row) beside the undecided share of a part (base and overrides): per key (either lists
/// it), (row's value, undecided), as a part to combine with the later tiers' row.
fn zip_undecided(row: &Row, (u_base, u_over): (PsId, &[(u32, Parts3)])) -> PartsRow {
    let (r_base, r_over) = (row.0, &row.1);
    let mut over = Vec::new();
    let (mut i, mut j) = (0, 0);
    loop {
        let (k, r, u) = match (r_over.get(i), u_over.get(j)) {
            (None, None) => break,
            (Some(&(kr, r)), Some(&(ku, (_, u, _)))) if kr == ku => {
                i += 1;
                j += 1;
                (kr, r, u)
            }
            (Some(&(kr, r)), Some(&(ku, _))) if kr < ku => {
                i += 1;
                (kr, r, u_base)
            }
            (Some(&(kr, r)), None) => {
                i += 1;
                (kr, r, u_base)
            }
            (_, Some(&(ku, (_, u, _)))) => {
                j += 1;
                (ku, r_base, u)
            }
        };
        over.push((k, (r, u)));
    }
    ((r_base, u_base), over)
}

/// `allowed ∪ (undecided ∩ later)` per key: a tier's part (`(allowed, undecided)` base and overrides) followed
/// by the row of the tiers after it. Overrides equal to the base are left out.
fn combine_rows(ps: &mut PortSets, a_base: (PsId, PsId), a_over: &[(u32, (PsId, PsId))], later: &Row) -> Row {
    let combine = |ps: &mut PortSets, (allowed, undecided): (PsId, PsId), r: PsId| {
        let passed = PortSets::inter(ps, undecided, r);
        PortSets::union(ps, allowed, passed)
    };
    let (r_base, r_over) = (later.0, &later.1);
    let base = combine(ps, a_base, r_base);
    let mut over = Vec::new();
    let (mut i, mut j) = (0, 0);
    loop {
        let (k, a, r) = match (a_over.get(i), r_over.get(j)) {
            (None, None) => break,
            (Some(&(ka, a)), Some(&(kr, r))) if ka == kr => {
                i += 1;
                j += 1;
                (ka, a, r)
            }
            (Some(&(ka, a)), Some(&(kr, _))) if ka < kr => {
                i += 1;
                (ka, a, r_base)
            }
            (Some(&(ka, a)), None) => {
                i += 1;
                (ka, a, r_base)
            }
            (_, Some(&(kr, r))) => {
                j += 1;
                (kr, a_base, r)
            }
        };
        let v = combine(ps, a, r);
        if v != base {
            over.push((k, v));
        }
    }
    (base, Arc::from(over))
}

fn peer_key(p: &CPeer) -> (u8, usize) {
    p.order()
}

impl Matrix {
    /// Port set id of the cell from identity `src` to identity `dst` (different pods).
    pub fn cell(&self, src: IdentityId, dst: IdentityId) -> Option<PsId> {
        let s = *self.src_class_of.get(&src)? as usize;
        let d = *self.dst_class_of.get(&dst)? as usize;
        self.cells.as_ref().map(|c| c[d * self.src_classes.len() + s])
    }

    /// Allowed ports between two pods (a pod to itself: everything).
    pub fn pod_cell(&self, engine: &Engine, src: PodId, dst: PodId) -> Option<PsId> {
        if src == dst {
            return Some(ALL);
        }
        self.cell(engine.pod_identity[src.index()], engine.pod_identity[dst.index()])
    }

    pub fn is_stored(&self) -> bool {
        self.cells.is_some()
    }

    /// Calls `f(dst_class, column)` for every destination class, `column[src_class]` being the cell.
    pub fn for_each_column(&mut self, engine: &Engine, mut f: impl FnMut(usize, &[PsId], &mut PortSets)) {
        let n_src = self.src_classes.len();
        let n_dst = self.dst_classes.len();
        if let Some(cells) = &self.cells {
            for d in 0..n_dst {
                f(d, &cells[d * n_src..(d + 1) * n_src], &mut self.port_sets);
            }
            return;
        }
        let Some(plan) = self.plan.take() else { return };
        let mut col = Vec::new();
        let mut scratch = Scratch::default();
        for d in 0..n_dst {
            engine.column(&plan, d, &mut self.port_sets, &mut scratch, &mut col);
            f(d, &col, &mut self.port_sets);
        }
        self.plan = Some(plan);
    }

    /// Number of pods in a list of identities.
    pub fn pod_count(engine: &Engine, ids: &[IdentityId]) -> u64 {
        ids.iter().map(|&i| engine.identities[i.index()].pods.len() as u64).sum()
    }

    /// For every port set id, the number of ordered pairs of distinct pods whose allowed ports are exactly it.
    pub fn pair_counts(&mut self, engine: &Engine) -> FxHashMap<PsId, u64> {
        self.pair_counts_with_progress(engine, &mut |_| {})
    }

    /// [`Matrix::pair_counts`], calling `tick(columns_done)` as destination classes are done. Large streamed
    /// matrices are counted on every core.
    pub fn pair_counts_with_progress(&mut self, engine: &Engine, tick: &mut dyn FnMut(usize)) -> FxHashMap<PsId, u64> {
        let cells = self.src_classes.len().saturating_mul(self.dst_classes.len());
        let threads =
            if cells >= 1 << 20 { std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) } else { 1 };
        self.pair_counts_threads(engine, threads, tick)
    }

    /// [`Matrix::pair_counts`] with the columns of a streamed matrix split among `threads` threads, each with its
    /// own port-set interner (merged by content at the end). Stored matrices are counted on one thread.
    pub fn pair_counts_threads(
        &mut self,
        engine: &Engine,
        threads: usize,
        tick: &mut dyn FnMut(usize),
    ) -> FxHashMap<PsId, u64> {
        self.pair_counts_how(engine, threads, Counting::Cheaper, tick)
    }

    /// [`Matrix::pair_counts_threads`] of a streamed matrix, every column computed cell by cell (`by_overrides`
    /// false) or counted by its overrides (true), whichever is less work: what tests compare the two ways with.
    #[doc(hidden)]
    pub fn pair_counts_one_way(&mut self, engine: &Engine, threads: usize, by_overrides: bool) -> FxHashMap<PsId, u64> {
        let how = if by_overrides { Counting::Overrides } else { Counting::Cells };
        self.pair_counts_how(engine, threads, how, &mut |_| {})
    }

    fn pair_counts_how(
        &mut self,
        engine: &Engine,
        threads: usize,
        how: Counting,
        tick: &mut dyn FnMut(usize),
    ) -> FxHashMap<PsId, u64> {
        let src_w: Vec<u64> = self.src_classes.iter().map(|c| Self::pod_count(engine, c)).collect();
        let dst_w: Vec<u64> = self.dst_classes.iter().map(|c| Self::pod_count(engine, c)).collect();
        // Self pairs to remove: identity in src class s and dst class d contributes |pods| pairs (p, p).
        let mut self_pairs: Vec<Vec<(usize, u64)>> = vec![Vec::new(); self.dst_classes.len()];
        for &i in &self.identities {
            let (s, d) = (self.src_class_of[&i] as usize, self.dst_class_of[&i] as usize);
            self_pairs[d].push((s, engine.identities[i.index()].pods.len() as u64));
        }
        let weights = Weights { src: &src_w, dst: &dst_w, self_pairs: &self_pairs };
        if let Some(plan) = self.plan.take() {
            // Streamed: counted column by column, the overridden sources only where that is less work.
            let index = SourceIndex::new(&plan, &src_w);
            let parallel = if threads > 1 {
                self.pair_counts_parallel(engine, &plan, &index, threads, &weights, how, tick)
            } else {
                None
            };
            let counts = match parallel {
                Some(counts) => counts,
                None => {
                    let cols = 0..self.dst_classes.len();
                    let acc =
                        engine.count_columns(&plan, cols, &mut self.port_sets, &weights, &index, how, |d| tick(d + 1));
                    acc.counts.into_iter().enumerate().filter(|(_, n)| *n > 0).map(|(c, n)| (PsId::new(c), n)).collect()
                }
            };
            self.plan = Some(plan);
            return counts;
        }
        let mut acc = ColumnCounter::default();
        self.for_each_column(engine, |d, col, _| {
            acc.add(d, col, &weights);
            tick(d + 1);
        });
        acc.counts.into_iter().enumerate().filter(|(_, n)| *n > 0).map(|(c, n)| (PsId::new(c), n)).collect()
    }

    /// The streamed columns in `threads` contiguous ranges; `None` if a worker failed (the caller counts again on
    /// one thread).
    #[allow(clippy::too_many_arguments)]
    fn pair_counts_parallel(
        &mut self,
        engine: &Engine,
        plan: &Plan,
        index: &SourceIndex,
        threads: usize,
        weights: &Weights<'_>,
        how: Counting,
        tick: &mut dyn FnMut(usize),
    ) -> Option<FxHashMap<PsId, u64>> {
        let n_dst = self.dst_classes.len();
        let chunk = n_dst.div_ceil(threads).max(1);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let results: Option<Vec<(PortSets, Vec<u64>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let done = &done;
                    let mut ps = self.port_sets.clone();
                    crate::par::spawn_scoped(scope, move || {
                        let cols = (t * chunk).min(n_dst)..((t + 1) * chunk).min(n_dst);
                        let acc = engine.count_columns(plan, cols, &mut ps, weights, index, how, |_| {
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        });
                        (ps, acc.counts)
                    })
                })
                .collect();
            // A thread the system does not give leaves its columns undone: the caller then counts on one thread.
            while !handles.iter().flatten().all(|h| h.is_finished()) {
                tick(done.load(std::sync::atomic::Ordering::Relaxed));
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            tick(n_dst);
            handles.into_iter().map(|h| h.ok()?.join().ok()).collect()
        });
        let mut total: FxHashMap<PsId, u64> = FxHashMap::default();
        for (ps, counts) in results? {
            for (local, n) in counts.into_iter().enumerate().filter(|(_, n)| *n > 0) {
                let id = self.port_sets.intern(ps.get(PsId::new(local)).clone());
                *total.entry(id).or_default() += n;
            }
        }
        Some(total)
    }
}

/// Pod counts of the classes, and the self pairs (p, p) to leave out per destination class.
struct Weights<'a> {
    src: &'a [u64],
    dst: &'a [u64],
    self_pairs: &'a [Vec<(usize, u64)>],
}

/// Dense per port-set pair counters: per column, source weights summed per cell value, then scaled by the
/// column's weight.
#[derive(Default)]
struct ColumnCounter {
    counts: Vec<u64>,
    col_sum: Vec<u64>,
    touched: Vec<PsId>,
}

impl ColumnCounter {
    /// Counts column `d` whole: every source's cell in `col`.
    fn add(&mut self, d: usize, col: &[PsId], w: &Weights<'_>) {
        for (s, &c) in col.iter().enumerate() {
            self.put(c, w.src[s]);
        }
        self.finish(d, w.self_pairs[d].iter().map(|&(s, n)| (col[s], n)), w);
    }

    /// Adds source weight `w` to cell value `c` of the column being counted.
    #[inline]
    fn put(&mut self, c: PsId, w: u64) {
        if c.index() >= self.col_sum.len() {
            self.col_sum.resize(c.index() + 1, 0);
            self.counts.resize(c.index() + 1, 0);
        }
        let slot = &mut self.col_sum[c.index()];
        if *slot == 0 {
            self.touched.push(c);
        }
        *slot += w;
    }

    /// Takes back weight `w` put on `c` earlier in the same column.
    #[inline]
    fn take(&mut self, c: PsId, w: u64) {
        self.col_sum[c.index()] -= w;
    }

    /// Ends column `d`: scales what was put by the column's weight and leaves out its self pairs (`self_cells`:
    /// the cell and pod count of each, cells the column has).
    fn finish(&mut self, d: usize, self_cells: impl IntoIterator<Item = (PsId, u64)>, w: &Weights<'_>) {
        let wd = w.dst[d];
        for c in self.touched.drain(..) {
            self.counts[c.index()] += self.col_sum[c.index()] * wd;
            self.col_sum[c.index()] = 0;
        }
        for (c, n) in self_cells {
            self.counts[c.index()] -= n;
        }
    }
}

/// Per port (or port-range atom): allowed and denied ordered pairs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SummaryRow {
    pub protocol: Protocol,
    pub from: u16,
    pub to: u16,
    pub allowed: u64,
    pub denied: u64,
}

/// Summarises pair counts over the given ports, or over port-range atoms of the whole port space.
pub fn summarize(counts: &FxHashMap<PsId, u64>, ps: &PortSets, ports: Option<&[(u16, Protocol)]>) -> Vec<SummaryRow> {
    let total: u64 = counts.values().sum();
    let allowed_at = |proto: Protocol, port: u16| -> u64 {
        counts.iter().filter(|(&c, _)| ps.get(c).contains(proto, port)).map(|(_, &n)| n).sum()
    };
    match ports {
        Some(list) => list
            .iter()
            .map(|&(port, proto)| {
                let a = allowed_at(proto, port);
                SummaryRow { protocol: proto, from: port, to: port, allowed: a, denied: total - a }
            })
            .collect(),
        None => {
            // Atoms: maximal key ranges on which every port set in use is constant.
            let mut bounds: Vec<u32> = Vec::new();
            for (lo, hi) in PortSet::protocol_key_ranges() {
                bounds.push(lo);
                bounds.push(hi + 1);
            }
            for &c in counts.keys() {
                bounds.extend(ps.get(c).boundaries());
            }
            bounds.sort_unstable();
            bounds.dedup();
            let mut rows: Vec<SummaryRow> = Vec::new();
            for w in bounds.windows(2) {
                let (lo, hi) = (w[0], w[1] - 1);
                let (proto, plo, phi) = PortSet::key_range(lo, hi);
                if plo == 0 || PortSet::key_range(hi, hi).0 != proto {
                    continue; // the gap between protocols
                }
                let a: u64 = counts.iter().filter(|(&c, _)| ps.get(c).contains_key(lo)).map(|(_, &n)| n).sum();
                // Merge with the previous atom when counts are equal and ranges adjacent.
                if let Some(last) = rows.last_mut() {
                    if last.protocol == proto && last.allowed == a && u32::from(last.to) + 1 == u32::from(plo) {
                        last.to = phi;
                        continue;
                    }
                }
                rows.push(SummaryRow { protocol: proto, from: plo, to: phi, allowed: a, denied: total - a });
            }
            rows
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every cell of the matrix, by content, and the pair counts, by content.
    fn contents(e: &Engine, m: &mut Matrix) -> (Vec<PortSet>, Vec<(PortSet, u64)>) {
        let n = e.identities.len();
        let mut cells = Vec::new();
        for a in (0..n).map(IdentityId::new) {
            for b in (0..n).map(IdentityId::new) {
                cells.push(m.port_sets.get(m.cell(a, b).unwrap()).clone());
            }
        }
        let mut counts: Vec<(PortSet, u64)> =
            m.pair_counts(e).into_iter().map(|(c, k)| (m.port_sets.get(c).clone(), k)).collect();
        counts.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        (cells, counts)
    }

    #[test]
    fn ingress_rows_built_on_two_cores_give_the_matrix_of_one() {
        let yaml = netpol_synth::generate_yaml(&netpol_synth::Params::preset("1k").unwrap());
        let mut loader = crate::load::Loader::new();
        loader.add_bytes("synth-1k.yaml", yaml.as_bytes());
        let e = Engine::new(loader.finish().cluster);
        let one = contents(&e, &mut e.matrix(None).unwrap());
        TEST_PARALLEL_ROWS.with(|n| n.set(2));
        let two = contents(&e, &mut e.matrix(None).unwrap());
        // And when the system gives no thread: the second half on this one.
        crate::par::NO_THREADS.with(|n| n.set(true));
        let alone = contents(&e, &mut e.matrix(None).unwrap());
        crate::par::NO_THREADS.with(|n| n.set(false));
        TEST_PARALLEL_ROWS.with(|n| n.set(PARALLEL_ROWS));
        assert!(one.0.len() > 100_000 && one.1.len() > 1, "{} cells, {} port sets", one.0.len(), one.1.len());
        assert!(one == two, "two cores");
        assert!(one == alone, "no thread");
    }
}
