//! Compile: a [`Cluster`] → an [`Engine`] that answers flows without re-matching selectors.
//!
//! Owns identities (pods grouped by namespace, labels, container ports, hostNetwork and the ipBlock class of
//! their primary IP), the selector cache (each distinct peer selector → the bitset of identities it selects),
//! the policies selecting each identity per direction, and rules compiled to peer ids and port sets. The
//! indexes kept beside them (label sets, identity keys, selector peers and their reference counts, duplicate
//! IPs) let [`crate::update`] change an engine in place.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rustc_hash::FxHashMap;

use crate::calico_peer::{CCalico, CalicoId, Intervals, Lookup, SelMatch};
use crate::calico_selector::Expr;
use crate::eval::{ProfileStep, Query, Quiet, TierId};
use crate::ipranges::BlockRanges;
use crate::label_bits::LabelBits;
use crate::model::*;
use crate::par::join;
use crate::portset::{InlinePorts, PortSet, Protocol};
use crate::selector::{Atom, Labels, Requirement, Selector};

crate::typed_id!(
    /// A distinct label set of the engine's pods: its index in `label_sets`.
    LabelSetId
);
crate::typed_id!(
    /// An identity of the engine (pods it cannot tell apart): its index in `identities`.
    IdentityId
);
crate::typed_id!(
    /// A distinct selector peer of the engine: its index in `sel_peers`.
    SelPeerId
);
crate::typed_id!(
    /// A distinct ipBlock of the engine: its index in `blocks`.
    BlockId
);
crate::typed_id!(
    /// A compiled rule: its index in the engine's rules.
    RuleId
);
crate::typed_id!(
    /// An ip class (the set of ipBlocks containing an address): its index in `ip_classes`.
    IpClassId
);
crate::typed_id!(
    /// A distinct `domainNames` list of the engine: its index in `domains`.
    DomainsId
);

/// A fixed-size bitset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    pub fn new(len: usize) -> Self {
        BitSet { words: vec![0; len.div_ceil(64)] }
    }
    pub fn insert(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
    pub fn contains(&self, i: usize) -> bool {
        self.words.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    pub fn remove(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }
    /// Makes room for bits `0..len` (never shrinks).
    pub fn grow(&mut self, len: usize) {
        if self.words.len() < len.div_ceil(64) {
            self.words.resize(len.div_ceil(64), 0);
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(wi * 64 + b)
            })
        })
    }
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// Keeps the bits also in `other`.
    pub fn and_with(&mut self, other: &BitSet) {
        for (i, w) in self.words.iter_mut().enumerate() {
            *w &= other.words.get(i).copied().unwrap_or(0);
        }
    }
    /// Adds the bits of `other` (within this set's size).
    pub fn or_with(&mut self, other: &BitSet) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
    }
    /// Flips bits `0..len` (the set must hold `len` bits); no bit at or past `len` is set afterwards.
    pub fn complement(&mut self, len: usize) {
        self.grow(len);
        for w in &mut self.words {
            *w = !*w;
        }
        let full = len / 64;
        if let Some(w) = self.words.get_mut(full) {
            *w &= (1u64 << (len % 64)) - 1;
        }
        for w in self.words.iter_mut().skip(full + 1) {
            *w = 0;
        }
    }
}

/// A set of identity ids: a sorted vector when small, a bitset when dense. Most selector peers select a few
/// identities of one namespace; a dense bitset for each would cost O(peers × identities) memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdSet {
    Sparse(Vec<IdentityId>),
    Dense(BitSet, usize),
}

impl IdSet {
    /// From sorted, de-duplicated ids out of `universe` ids.
    pub fn from_sorted(ids: Vec<IdentityId>, universe: usize) -> Self {
        if ids.len() * 32 > universe {
            let len = ids.last().map_or(universe, |&m| universe.max(m.index() + 1));
            let mut b = BitSet::new(len);
            for &i in &ids {
                b.insert(i.index());
            }
            IdSet::Dense(b, ids.len())
        } else {
            IdSet::Sparse(ids)
        }
    }
    #[inline]
    pub fn contains(&self, i: IdentityId) -> bool {
        match self {
            IdSet::Sparse(v) => v.binary_search(&i).is_ok(),
            IdSet::Dense(b, _) => b.contains(i.index()),
        }
    }
    pub fn len(&self) -> usize {
        match self {
            IdSet::Sparse(v) => v.len(),
            IdSet::Dense(_, n) => *n,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn iter(&self) -> Box<dyn Iterator<Item = IdentityId> + '_> {
        match self {
            IdSet::Sparse(v) => Box::new(v.iter().copied()),
            IdSet::Dense(b, _) => Box::new(b.iter().map(IdentityId::new)),
        }
    }
    /// Adds `i` (the set now draws from `universe` ids); returns whether it was absent. A sparse set that
    /// becomes dense is converted, as [`IdSet::from_sorted`] would build it.
    pub fn insert(&mut self, i: IdentityId, universe: usize) -> bool {
        match self {
            IdSet::Sparse(v) => {
                let Err(at) = v.binary_search(&i) else { return false };
                v.insert(at, i);
                if v.len() * 32 > universe {
                    *self = IdSet::from_sorted(std::mem::take(v), universe);
                }
                true
            }
            IdSet::Dense(b, n) => {
                if b.contains(i.index()) {
                    return false;
                }
                b.grow(i.index() + 1);
                b.insert(i.index());
                *n += 1;
                true
            }
        }
    }
    /// Removes `i`; returns whether it was present.
    pub fn remove(&mut self, i: IdentityId) -> bool {
        match self {
            // Removing an identity asks every selector peer's set to forget it and the last id: most sparse sets
            // hold one namespace's ids, so a look at their ends answers without a search.
            IdSet::Sparse(v) => {
                let (Some(&lo), Some(&hi)) = (v.first(), v.last()) else { return false };
                if i == hi {
                    v.pop();
                    true
                } else if i < lo || i > hi {
                    false
                } else if let Ok(at) = v.binary_search(&i) {
                    v.remove(at);
                    true
                } else {
                    false
                }
            }
            IdSet::Dense(b, n) => {
                if !b.contains(i.index()) {
                    return false;
                }
                b.remove(i.index());
                *n -= 1;
                true
            }
        }
    }
}

/// Pods that the engine cannot tell apart: same namespace, labels, container ports, hostNetwork, the same
/// set of ipBlocks containing their primary IP, and the same family of that IP (or none).
#[derive(Clone, Debug)]
pub struct Identity {
    pub ns: NsId,
    pub labels: LabelSetId,
    pub host_network: bool,
    pub ip_class: IpClassId,
    /// In an engine with Calico policies, whether the pods' primary IP is IPv6 (`None`: they have none yet; always
    /// `None` elsewhere). Calico's rules read the family (`ipVersion`, and a rule is dropped for a family its
    /// `notNets` has no CIDR of), so there it is the identity's; other dialects see addresses through blocks only.
    pub family: Option<bool>,
    /// Container ports (sorted), shared by every pod of the identity.
    pub ports: Vec<ContainerPort>,
    /// The pods' service account, when the engine has Calico policies (whose selectors see it); else empty.
    pub service_account: Atom,
    /// Never empty; sorted.
    pub pods: Vec<PodId>,
    /// Policies selecting these pods that affect ingress / egress (sorted). Empty = not isolated.
    pub ingress_policies: Vec<PolicyId>,
    pub egress_policies: Vec<PolicyId>,
    /// Rules of those policies, flattened, per direction.
    pub ingress_rules: Vec<RuleId>,
    pub egress_rules: Vec<RuleId>,
    /// Named container ports as (interned name, protocol, port), for the hot path.
    pub named_ports: Vec<(u32, Protocol, u16)>,
    /// Per direction (ingress, egress), bit `t` set when a policy of tier `t` (below 64) selects these pods:
    /// what a walk asks at each tier's end. Kept with the flattened rules ([`Engine::refresh_rules`]).
    pub(crate) tier_bits: [u64; 2],
}

impl Identity {
    /// An identity with no pods, no policies and no rules yet.
    pub(crate) fn empty(key: &IdentityKey) -> Identity {
        Identity {
            ns: key.0,
            labels: key.1,
            host_network: key.2,
            ip_class: key.3,
            ports: key.4.clone(),
            service_account: key.5.clone(),
            family: key.6,
            pods: Vec::new(),
            ingress_policies: Vec::new(),
            egress_policies: Vec::new(),
            ingress_rules: Vec::new(),
            egress_rules: Vec::new(),
            named_ports: Vec::new(),
            tier_bits: [0; 2],
        }
    }
    pub(crate) fn key(&self) -> IdentityKey {
        (
            self.ns,
            self.labels,
            self.host_network,
            self.ip_class,
            self.ports.clone(),
            self.service_account.clone(),
            self.family,
        )
    }
    pub fn named_port(&self, name: &str, proto: Protocol) -> Option<u16> {
        self.ports.iter().find(|p| p.protocol == proto && p.name.as_deref() == Some(name)).map(|p| p.port)
    }
    /// Whether a policy of any tier applies to these pods in `dir` (see [`Engine::isolated`] for
    /// NetworkPolicy isolation).
    pub fn governed(&self, dir: Direction) -> bool {
        match dir {
            Direction::Ingress => !self.ingress_policies.is_empty(),
            Direction::Egress => !self.egress_policies.is_empty(),
        }
    }
    pub fn policies(&self, dir: Direction) -> &[PolicyId] {
        match dir {
            Direction::Ingress => &self.ingress_policies,
            Direction::Egress => &self.egress_policies,
        }
    }
}

/// A compiled peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CPeer {
    /// Pods by selectors.
    Sel(SelPeerId),
    /// Addresses: an ipBlock, a CIDR of `networks`, or one address of a node a `nodes` peer selects.
    Block(BlockId),
    /// A destination resolved from one of these domain names: matches no pod and no bare address.
    Domains(DomainsId),
    /// A peer that matches nothing now (a `nodes` selector that selects no node with an address).
    Nothing,
    /// A Calico entity rule's endpoint criteria.
    Calico(CalicoId),
    /// Cilium's `host`: an address of the Node the subject runs on ([`crate::model::Peer::SubjectNodes`]).
    OwnNode,
    /// Cilium's `remote-node`: an address of any other Node.
    OtherNodes,
    /// Cilium's `fromNodes`/`toNodes`: an address of a Node of the set (its index in the engine's node sets) other
    /// than the one the subject runs on.
    NodeSet(u32),
}

impl CPeer {
    /// Sort key: selector peers, blocks, domains, nothing.
    pub(crate) fn order(self) -> (u8, usize) {
        match self {
            CPeer::Sel(i) => (0, i.index()),
            CPeer::Block(i) => (1, i.index()),
            CPeer::Domains(i) => (2, i.index()),
            CPeer::Nothing => (3, 0),
            CPeer::Calico(i) => (4, i.index()),
            CPeer::OwnNode => (5, 0),
            CPeer::OtherNodes => (5, 1),
            CPeer::NodeSet(i) => (6, i as usize),
        }
    }
}

/// The address blocks a model peer compiles to: an ipBlock itself, each CIDR of `networks`, each address of
/// the nodes a `nodes` selector selects (a host block).
pub fn peer_blocks(nodes: &[Node], peer: &Peer) -> Vec<IpBlock> {
    match peer {
        Peer::IpBlock(b) => vec![b.clone()],
        Peer::Networks(nets) => nets.iter().map(|n| IpBlock { cidr: *n, except: Vec::new() }).collect(),
        Peer::Nodes(sel) => nodes
            .iter()
            .filter(|n| sel.matches(&n.labels))
            .flat_map(|n| n.ips.iter())
            .map(|ip| IpBlock { cidr: ipnet::IpNet::from(ip.to_canonical()), except: Vec::new() })
            .collect(),
        Peer::Selectors { .. }
        | Peer::DomainNames(_)
        | Peer::Calico(_)
        | Peer::Fqdns(_)
        | Peer::SubjectNodes { .. }
        | Peer::NodeSelector(_) => Vec::new(),
    }
}

/// Whether `name` (a DNS name, any case, with or without the final dot) is matched by a `domainNames` entry:
/// the same name, or for `*.suffix` a name with one or more labels before `suffix`. Any other `*` (Antrea's
/// `fqdn` patterns such as `*github.com` or `api*.example.com`) stands for any run of characters, dots included,
/// the empty run too, with the whole name matched (Antrea turns `*` into the regular expression `.*`, anchored).
pub fn domain_matches(pattern: &str, name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    match pattern.strip_prefix("*.") {
        Some(suffix) if !suffix.contains('*') => {
            name.len() > suffix.len() + 1
                && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
        }
        _ if pattern.contains('*') => glob_matches(pattern.as_bytes(), name.as_bytes()),
        _ => name.eq_ignore_ascii_case(pattern),
    }
}

/// `*` as any run of bytes, the rest compared ASCII case-insensitively, the whole of `name` matched. Greedy with
/// one backtrack point (the last `*`): O(pattern × name) at worst, which is bounded by DNS names' 253 bytes.
fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p].eq_ignore_ascii_case(&name[n]) {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            // The last `*` takes one more byte.
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Compiled ports of a rule: numeric part plus named ports (resolved per destination).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CPorts {
    pub numeric: PortSet,
    pub named: Vec<(Protocol, String)>,
    /// `named` with interned names (same order).
    pub named_ids: Vec<(Protocol, u32)>,
    /// Calico's `notPorts`, when the rule has them (out of line: most rules have none, and a compiled rule is
    /// smaller without them).
    pub not: Option<Box<NotPorts>>,
}

/// Calico's `notPorts`: ports taken out whatever else matched (the rule's `numeric` is already without them; named
/// ports resolved per destination may fall in them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NotPorts {
    pub numeric: PortSet,
    pub named: Vec<(Protocol, String)>,
    /// `named` with interned names (same order).
    pub named_ids: Vec<(Protocol, u32)>,
}

static NO_PORTS: PortSet = PortSet::empty();

impl CPorts {
    /// The numeric ports of Calico's `notPorts` (empty when it has none).
    pub fn not_numeric(&self) -> &PortSet {
        self.not.as_ref().map_or(&NO_PORTS, |n| &n.numeric)
    }

    /// The named ports of Calico's `notPorts`.
    pub fn not_named(&self) -> &[(Protocol, String)] {
        self.not.as_ref().map_or(&[], |n| &n.named)
    }

    /// [`CPorts::not_named`] with interned names.
    pub fn not_named_ids(&self) -> &[(Protocol, u32)] {
        self.not.as_ref().map_or(&[], |n| &n.named_ids)
    }

    /// Ports this rule allows towards a destination with the given container ports (`None`: not a pod).
    pub fn resolve(&self, dst_ports: Option<&[ContainerPort]>) -> PortSet {
        let mut s = self.numeric.clone();
        let find = |cps: &[ContainerPort], proto: Protocol, name: &str| {
            cps.iter().find(|c| c.protocol == proto && c.name.as_deref() == Some(name)).map(|c| c.port)
        };
        if let Some(cps) = dst_ports {
            for (proto, name) in &self.named {
                if let Some(port) = find(cps, *proto, name) {
                    s.union_with(&PortSet::single(*proto, port));
                }
            }
            if !self.named.is_empty() && !self.not_numeric().is_empty() {
                s = s.difference(self.not_numeric());
            }
            for (proto, name) in self.not_named() {
                if let Some(port) = find(cps, *proto, name) {
                    s = s.difference(&PortSet::single(*proto, port));
                }
            }
        }
        s
    }

    /// Whether the ports depend on the destination's named ports.
    pub fn has_named(&self) -> bool {
        !self.named.is_empty() || !self.not_named().is_empty()
    }

    /// Whether the rule's ports include `port`; `dst_named` are the destination pod's interned named ports
    /// (`None`: the destination is not a pod).
    #[inline]
    pub fn matches(&self, proto: Protocol, port: u16, dst_named: Option<&[(u32, Protocol, u16)]>) -> bool {
        let named = |ids: &[(Protocol, u32)]| match dst_named {
            None => false,
            Some(cps) => ids
                .iter()
                .any(|&(p, id)| p == proto && cps.iter().any(|&(i, pp, n)| i == id && pp == proto && n == port)),
        };
        let Some(not) = &self.not else {
            return self.numeric.contains(proto, port) || named(&self.named_ids);
        };
        if self.numeric.contains(proto, port) {
            return not.named_ids.is_empty() || !named(&not.named_ids);
        }
        named(&self.named_ids) && !not.numeric.contains(proto, port) && !named(&not.named_ids)
    }
}

/// A compiled rule: where it came from, what it does, to which peers and ports.
#[derive(Clone, Debug)]
pub struct CRule {
    pub policy: PolicyId,
    pub dir: Direction,
    /// Index of the rule in its policy's `ingress` or `egress` list.
    pub index: u32,
    pub tier: TierId,
    pub action: Action,
    /// Empty = every peer. Sorted and de-duplicated.
    pub peers: Box<[CPeer]>,
    /// For each of `peers`, the index of the first peer of the source rule it was compiled from.
    pub peer_src: Box<[u32]>,
    pub ports: CPorts,
    /// Calico: the subject's own side must match this (the rule applies only to those of its addresses).
    pub local: Option<CalicoId>,
    /// `ports` inline when they name no port and have few ranges (see [`CRule::ports_match`]).
    pub(crate) inline_ports: Option<InlinePorts>,
    /// Cilium: the rule's L7 rules (an index into the engine's, [`Engine::l7_rules`]). A request the flow
    /// carries must pass them for the rule to match it.
    pub l7: Option<u32>,
}

impl CRule {
    /// Whether the rule's ports include the flow's: [`CPorts::matches`], from the inline copy when there is one.
    #[inline]
    pub fn ports_match(&self, proto: Protocol, port: u16, dst_named: Option<&[(u32, Protocol, u16)]>) -> bool {
        match &self.inline_ports {
            Some(p) => p.contains(proto, port),
            None => self.ports.matches(proto, port, dst_named),
        }
    }
}

/// An endpoint of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A pod, optionally with the IP the flow uses (`None` = its primary IP).
    Pod { pod: PodId, ip: Option<IpAddr> },
    /// An address that belongs to no pod: outside the cluster.
    External(IpAddr),
}

/// Inverted indexes used to evaluate selector peers without scanning every identity.
struct SelectIndex {
    ns_idents: Vec<Vec<IdentityId>>,
    /// Identities (hostNetwork ones left out) by label.
    idents: LabelIndex,
    /// Namespaces by label: a namespace selector is checked against the namespaces that carry its most
    /// selective label, not against every namespace.
    namespaces: LabelIndex,
}

/// Ids (sorted) by (label key, value) and by label key.
#[derive(Default)]
struct LabelIndex {
    by_label: FxHashMap<(Atom, Atom), Vec<u32>>,
    by_key: FxHashMap<Atom, Vec<u32>>,
}

impl LabelIndex {
    fn new<'l>(items: impl Iterator<Item = (u32, &'l Labels)>) -> Self {
        let mut idx = LabelIndex::default();
        for (i, labels) in items {
            for (k, v) in labels.atoms() {
                idx.by_label.entry((k.clone(), v.clone())).or_default().push(i);
                idx.by_key.entry(k.clone()).or_default().push(i);
            }
        }
        idx
    }

    /// A superset (sorted) of the ids a selector can match, from its most selective `In`/`Exists` requirement,
    /// if that is smaller than `limit`; `None` otherwise.
    fn candidates(&self, sel: &Selector, limit: usize) -> Option<Vec<u32>> {
        let size = |r: &Requirement| -> Option<usize> {
            match r {
                Requirement::In(k, vs) => {
                    Some(vs.iter().map(|v| self.by_label.get(&(k.clone(), v.clone())).map_or(0, Vec::len)).sum())
                }
                Requirement::Exists(k) => Some(self.by_key.get(k).map_or(0, Vec::len)),
                _ => None,
            }
        };
        let best = sel.requirements().iter().filter_map(|r| size(r).map(|n| (n, r))).min_by_key(|(n, _)| *n)?;
        if best.0 >= limit {
            return None;
        }
        let mut c: Vec<u32> = match best.1 {
            Requirement::In(k, vs) => vs
                .iter()
                .flat_map(|v| self.by_label.get(&(k.clone(), v.clone())).into_iter().flatten().copied())
                .collect(),
            Requirement::Exists(k) => self.by_key.get(k).cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        c.sort_unstable();
        Some(c)
    }
}

/// Calico selectors over identities, without a scan per selector: the identities' distinct Calico label sets
/// (hostNetwork identities left out: Calico has no workload endpoint for them), evaluated as bitsets.
pub(crate) struct CalicoSelectIndex {
    /// Identities per label set (sorted).
    idents: Vec<Vec<IdentityId>>,
    bits: LabelBits,
    /// The same for the network sets' labels and the host endpoints' labels.
    net_sets: LabelBits,
    heps: LabelBits,
}

impl CalicoSelectIndex {
    fn new(eng: &Engine, net_sets: &[Labels], heps: &[crate::model::HostEndpoint]) -> Self {
        let mut sets: Vec<&Labels> = Vec::new();
        let mut by_labels: FxHashMap<&Labels, u32> = FxHashMap::default();
        let mut idents: Vec<Vec<IdentityId>> = Vec::new();
        for (i, ident) in eng.identities.iter().enumerate() {
            let Some(l) = eng.ident_calico.get(i).filter(|_| !ident.host_network) else { continue };
            let k = *by_labels.entry(l).or_insert_with(|| {
                sets.push(l);
                idents.push(Vec::new());
                (sets.len() - 1) as u32
            });
            idents[k as usize].push(IdentityId::new(i));
        }
        CalicoSelectIndex {
            idents,
            bits: LabelBits::new(sets),
            net_sets: LabelBits::new(net_sets),
            heps: LabelBits::new(heps.iter().map(|h| &h.labels)),
        }
    }

    /// The identities (sorted) whose Calico labels `e` matches.
    fn select(&self, e: &Expr) -> Vec<IdentityId> {
        let mut ids: Vec<IdentityId> = self.bits.eval(e).iter().flat_map(|k| self.idents[k].iter().copied()).collect();
        ids.sort_unstable();
        ids
    }

    /// The network sets (indexes) `e` matches.
    fn select_net_sets(&self, e: &Expr) -> Vec<usize> {
        self.net_sets.eval(e).iter().collect()
    }

    /// The host endpoints (indexes) `e` matches.
    fn select_heps(&self, e: &Expr) -> Vec<usize> {
        self.heps.eval(e).iter().collect()
    }
}

/// The identities grouped by what a Calico entity rule's address criteria see of their primary address: its ip
/// class, its family (or none) and whether it is a hostNetwork pod's (matched by address only). A rule is decided
/// once per group and per outcome of its selectors, not once per identity.
#[derive(Default)]
struct AddrGroups {
    /// (ip class, an address of the group's family, hostNetwork, members sorted).
    groups: Vec<(IpClassId, Option<IpAddr>, bool, Vec<IdentityId>)>,
    /// The group of each identity.
    of: Vec<u32>,
}

impl AddrGroups {
    fn new(eng: &Engine) -> Self {
        let mut index: FxHashMap<(IpClassId, Option<bool>, bool), u32> = FxHashMap::default();
        let mut g = AddrGroups::default();
        for (i, ident) in eng.identities.iter().enumerate() {
            let ip = ident.pods.first().and_then(|p| eng.primary_ips.get(p.index()).copied().flatten());
            let key = (ident.ip_class, ip.map(|ip| ip.is_ipv6()), ident.host_network);
            let k = *index.entry(key).or_insert_with(|| {
                g.groups.push((ident.ip_class, ip, ident.host_network, Vec::new()));
                (g.groups.len() - 1) as u32
            });
            g.groups[k as usize].3.push(IdentityId::new(i));
            g.of.push(k);
        }
        g
    }

    /// The identities (sorted) `c` matches at their primary address: the members of `c.sel` whose group admits
    /// selector members, and every member of the groups whose addresses match without the selector's labels.
    fn select(&self, eng: &Engine, c: &CCalico) -> Vec<IdentityId> {
        if c.peer.outside_only {
            // No pod is outside the cluster.
            return Vec::new();
        }
        let labelled = |m: &Option<SelMatch>, i: IdentityId| m.as_ref().is_some_and(|m| m.idents.contains(i));
        // Per group: whether it matches for each outcome of (selector, notSelector) on the labels.
        let table: Vec<[[bool; 2]; 2]> = self
            .groups
            .iter()
            .map(|(class, ip, host_network, _)| {
                let class = Lookup::Class(&eng.ip_classes[class.index()]);
                let f = |s: bool, n: bool| c.matches_labelled(class, [s && !host_network, n && !host_network], *ip);
                [[f(false, false), f(false, true)], [f(true, false), f(true, true)]]
            })
            .collect();
        let mut out: Vec<IdentityId> = Vec::new();
        for (g, (_, _, _, members)) in self.groups.iter().enumerate() {
            let t = table[g];
            if t[0][0] || t[0][1] {
                out.extend(members.iter().copied().filter(|&i| {
                    let in_sel = labelled(&c.sel, i);
                    t[usize::from(in_sel)][usize::from(labelled(&c.not_sel, i))]
                }));
            }
        }
        if let Some(sel) = &c.sel {
            for i in sel.idents.iter() {
                let Some(&g) = self.of.get(i.index()) else { continue };
                let t = table[g as usize];
                if !(t[0][0] || t[0][1]) && t[1][usize::from(labelled(&c.not_sel, i))] {
                    out.push(i);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl SelectIndex {
    /// The index over the engine's identities, with `namespaces` from [`SelectIndex::namespaces`].
    fn new(eng: &Engine, namespaces: LabelIndex, ns_idents: Vec<Vec<IdentityId>>) -> Self {
        let idents = LabelIndex::new(
            eng.identities
                .iter()
                .enumerate()
                .filter(|(_, ident)| !ident.host_network)
                .map(|(i, ident)| (i as u32, &eng.label_sets[ident.labels.index()])),
        );
        SelectIndex { ns_idents, idents, namespaces }
    }

    /// The namespaces by label.
    fn namespaces(cluster: &Cluster) -> LabelIndex {
        LabelIndex::new(cluster.namespaces.iter().enumerate().map(|(i, n)| (i as u32, &n.labels)))
    }
}

/// Per-flow facts about an endpoint used by the fast path.
pub(crate) struct EpInfo<'a> {
    pub(crate) ident: Option<IdentityId>,
    pub(crate) ip: Option<IpAddr>,
    /// The ip class when the flow uses the pod's primary IP (precomputed).
    pub(crate) ip_class: Option<IpClassId>,
    /// The DNS name the address was resolved from (a flow's `dst_fqdn`).
    pub(crate) name: Option<&'a str>,
    /// `name` when Cilium learnt the address from it: the flow's source sent the query through its DNS proxy,
    /// which allowed it (what `toFQDNs` peers match; see [`Engine::dns_learns`]).
    pub(crate) fqdn: Option<&'a str>,
    /// The Node (index) the endpoint runs on: a pod's `spec.nodeName`, a Node's own address. Known only in an
    /// engine with node-relative peers ([`Engine::node_rel`]); `None` at identity level (the matrix, lint).
    pub(crate) node: Option<u32>,
    /// The Node whose address the endpoint uses (a Node's address, a hostNetwork pod there): what `host` and
    /// `remote-node` match. As `node`, known only in an engine with node-relative peers.
    pub(crate) addr_node: Option<u32>,
}

impl EpInfo<'static> {
    /// An endpoint nothing is known of: the subject of a question asked of no pod in particular (node-relative
    /// peers then match any Node's address as `remote-node`).
    pub(crate) fn unknown() -> Self {
        EpInfo { ident: None, ip: None, ip_class: None, name: None, fqdn: None, node: None, addr_node: None }
    }
}

/// What makes pods one identity: namespace, interned label set, hostNetwork, ip class, sorted container ports,
/// service account, family of the primary IP.
pub(crate) type IdentityKey = (NsId, LabelSetId, bool, IpClassId, Vec<ContainerPort>, Atom, Option<bool>);

/// The service account of every identity key outside Calico's engines (only Calico's selectors read it): one
/// shared empty string, not an allocation per pod.
static NO_ACCOUNT: std::sync::LazyLock<Atom> = std::sync::LazyLock::new(|| Atom::from(""));

/// The compiled engine. Owns the cluster it was built from.
///
/// [`Engine::update`] keeps it equal, answer for answer, to `Engine::new` of its changed cluster; internal
/// numbering (identities, label sets, selector peers, ip classes) may then differ from a fresh compile.
#[derive(Clone)]
pub struct Engine {
    pub(crate) cluster: Cluster,
    pub(crate) label_sets: Vec<Labels>,
    pub(crate) identities: Vec<Identity>,
    pub(crate) pod_identity: Vec<IdentityId>,
    /// Primary IP of each pod (a compact copy for the hot path).
    pub(crate) primary_ips: Vec<Option<IpAddr>>,
    /// Distinct selector peers: (namespace selector or the policy's namespace, pod selector).
    pub(crate) sel_peers: Vec<(SelPeerKey, IdSet)>,
    pub(crate) blocks: Vec<IpBlock>,
    /// Each block as sorted address intervals (`blocks[i]` minus its exceptions): O(log k) membership.
    pub(crate) block_ranges: Vec<BlockRanges>,
    /// The blocks by the prefix of their CIDR: (IPv6, prefix length, network number → blocks), so that the
    /// blocks containing an address are found with one lookup per prefix length in use.
    block_prefixes: Vec<BlockPrefixes>,
    /// Sorted block ids containing an address, per ip class.
    pub(crate) ip_classes: Vec<Vec<BlockId>>,
    /// Rules of every policy, in policy order, each policy's ingress rules then its egress rules.
    /// Tiers in evaluation order.
    pub(crate) tiers: Vec<crate::eval::Tier>,
    pub(crate) rules: Vec<CRule>,
    /// Rule ids of each policy, per direction: `policy_rules[p] = (ingress, egress)`.
    pub(crate) policy_rules: Vec<(Vec<RuleId>, Vec<RuleId>)>,
    /// Each policy's namespace (`None`: cluster-scoped), a compact copy of the cluster's policies' scopes:
    /// `Engine::update`'s scans over every policy (a new identity's policies, a policy by name) skip the
    /// policies of other namespaces without reading them.
    pub(crate) policy_ns: Vec<Option<NsId>>,
    /// Namespaces by name (`Engine::update`: in place, namespaces are only ever appended).
    pub(crate) ns_names: FxHashMap<String, NsId>,
    /// Each IP → the first pod (lowest id) that has it.
    pub(crate) ip_index: FxHashMap<IpAddr, PodId>,
    /// IPs that several pods have → all of them (sorted), so that `ip_index` can be kept when pods change.
    pub(crate) ip_dups: FxHashMap<IpAddr, Vec<PodId>>,
    pub(crate) ip_class_index: FxHashMap<Vec<BlockId>, IpClassId>,
    /// Scratch room for an address's blocks while its ip class is looked up.
    sig_buf: Vec<BlockId>,
    /// Interned named-port names.
    pub(crate) port_names: FxHashMap<String, u32>,
    pub(crate) label_index: FxHashMap<Labels, LabelSetId>,
    pub(crate) id_index: FxHashMap<IdentityKey, IdentityId>,
    pub(crate) peer_index: FxHashMap<SelPeerKey, SelPeerId>,
    /// Number of compiled rules referencing each selector peer / each block.
    pub(crate) sel_refs: Vec<u32>,
    pub(crate) block_index: FxHashMap<IpBlock, BlockId>,
    pub(crate) block_refs: Vec<u32>,
    /// Distinct `domainNames` lists (lowercase).
    pub(crate) domains: Vec<Vec<String>>,
    pub(crate) domain_index: FxHashMap<Vec<String>, DomainsId>,
    /// For each entry of `domains`: `None` for `domainNames`; Cilium's compiled `toFQDNs` selectors (the entry
    /// then holds their texts, `matchName x`).
    pub(crate) domain_cilium: Vec<Option<Box<[crate::l7::DnsPattern]>>>,
    /// Distinct L7 rules of Cilium's `toPorts` entries, compiled ([`CRule::l7`] indexes them).
    pub(crate) l7: Vec<crate::l7::CompiledL7>,
    pub(crate) l7_index: FxHashMap<std::sync::Arc<crate::l7::L7Rules>, u32>,
    /// For each tier of the cluster (`Cluster::tiers`), its engine tier.
    pub(crate) tier_map: Vec<TierId>,
    /// Whether the cluster has Calico policies: identities then tell service accounts apart and carry Calico's
    /// labels.
    pub(crate) calico: bool,
    /// Per identity, the labels Calico's selectors see (empty without Calico policies).
    pub(crate) ident_calico: Vec<Labels>,
    pub(crate) calico_peers: Vec<CCalico>,
    pub(crate) calico_index: FxHashMap<CalicoPeer, CalicoId>,
    /// Calico host endpoints, compiled (see [`crate::host`]): in the cluster's order.
    pub(crate) heps: Vec<crate::host::CHep>,
    /// Each host-endpoint address → its host endpoint (the first one that has it).
    pub(crate) hep_by_ip: FxHashMap<IpAddr, usize>,
    /// Each node with host endpoints → the one that forwarded traffic crosses (its `*` endpoint, else the first
    /// by name).
    pub(crate) node_hep: FxHashMap<String, usize>,
    /// Whether the cluster has Cilium policies: identities then carry Cilium's labels.
    pub(crate) cilium: bool,
    /// Whether the cluster has Calico objects ([`Cluster::has_calico`]), as compiled: [`Engine::update`]
    /// recompiles every batch while it is true, so it stays exact without a scan of the cluster per batch.
    pub(crate) calico_objects: bool,
    /// Pods by namespace and name hash (`Engine::update`'s lookups): see [`PodNames`].
    pub(crate) pod_names: PodNames,
    /// How many pods of each namespace run as each service account (`Engine::update` forgets an undeclared
    /// account when its last pod goes).
    pub(crate) sa_pods: FxHashMap<(NsId, crate::labels::Atom), u32>,
    /// Whether a rule depends on its subject's node (Cilium's `host` and `remote-node`: [`CPeer::OwnNode`],
    /// [`CPeer::OtherNodes`]): flows' ends then carry their nodes ([`EpInfo::node`], [`EpInfo::addr_node`]).
    pub(crate) node_rel: bool,
    /// Each pod's Node (its index in the cluster's nodes), when `node_rel`.
    pub(crate) pod_node: Vec<Option<u32>>,
    /// Each Node's addresses (canonical) → the Node (its index), when `node_rel`.
    pub(crate) node_by_ip: FxHashMap<IpAddr, u32>,
    /// The Node sets of Cilium's `fromNodes`/`toNodes` peers ([`CPeer::NodeSet`]): sorted Node indexes.
    pub(crate) node_sets: Vec<Vec<u32>>,
    /// The CNI whose reading the answers follow ([`crate::cni`]), and how it was chosen.
    pub(crate) cni: crate::cni::Cni,
    pub(crate) cni_source: crate::cni::CniSource,
}

/// The address blocks Calico's criteria need as blocks (see [`crate::calico_peer`]): every `nets`/`notNets`
/// CIDR, every network set's nets, and each family's whole space when a rule has `ipVersion`.
fn calico_blocks(cluster: &Cluster) -> Vec<IpBlock> {
    let mut out = Vec::new();
    let mut family = false;
    let mut peer = |p: &CalicoPeer, out: &mut Vec<IpBlock>| {
        for n in p.nets.iter().chain(&p.not_nets) {
            out.push(IpBlock { cidr: *n, except: Vec::new() });
        }
        family |= p.ip_version.is_some();
    };
    for pol in &cluster.policies {
        for r in pol.ingress.iter().chain(&pol.egress) {
            for p in &r.peers {
                if let Peer::Calico(c) = p {
                    peer(c, &mut out);
                }
            }
            if let Some(l) = r.calico.as_ref().and_then(|c| c.local.as_ref()) {
                peer(l, &mut out);
            }
        }
    }
    if out.is_empty() && !family && !cluster.policies.iter().any(|p| p.calico_selector.is_some()) {
        return out;
    }
    for s in &cluster.network_sets {
        out.extend(s.nets.iter().map(|n| IpBlock { cidr: *n, except: Vec::new() }));
    }
    for h in &cluster.host_endpoints {
        out.extend(h.expected_ips.iter().map(|ip| IpBlock { cidr: ipnet::IpNet::from(*ip), except: Vec::new() }));
    }
    if family {
        for all in ["0.0.0.0/0", "::/0"] {
            if let Ok(cidr) = all.parse() {
                out.push(IpBlock { cidr, except: Vec::new() });
            }
        }
    }
    out
}

/// Whether the cluster has policies of Calico's kinds (or Calico rules).
/// The blocks of one family whose CIDRs have one prefix length, by network number.
#[derive(Clone, Debug)]
struct BlockPrefixes {
    v6: bool,
    len: u8,
    nets: FxHashMap<u128, Vec<BlockId>>,
}

fn block_prefixes(blocks: &[IpBlock]) -> Vec<BlockPrefixes> {
    let mut groups: Vec<BlockPrefixes> = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let (v6, lo, _) = crate::ipranges::net_range(&b.cidr);
        let len = b.cidr.prefix_len();
        let at = match groups.iter().position(|g| g.v6 == v6 && g.len == len) {
            Some(at) => at,
            None => {
                groups.push(BlockPrefixes { v6, len, nets: FxHashMap::default() });
                groups.len() - 1
            }
        };
        groups[at].nets.entry(lo & prefix_mask(v6, len)).or_default().push(BlockId::new(i));
    }
    groups
}

/// The blocks containing `ip` (canonical), sorted. A block contains only addresses of its CIDR: the
/// candidates are the blocks whose CIDR is the address's network at some prefix length in use.
#[cfg(test)]
fn blocks_containing(prefixes: &[BlockPrefixes], ranges: &[BlockRanges], ip: IpAddr) -> Vec<BlockId> {
    let mut v = Vec::new();
    blocks_containing_into(prefixes, ranges, ip, &mut v);
    v
}

/// [`blocks_containing`] written into `v` (cleared first): no allocation once `v` has room.
fn blocks_containing_into(prefixes: &[BlockPrefixes], ranges: &[BlockRanges], ip: IpAddr, v: &mut Vec<BlockId>) {
    let (v6, n) = crate::ipranges::num(ip);
    v.clear();
    v.extend(
        prefixes
            .iter()
            .filter(|g| g.v6 == v6)
            .filter_map(|g| g.nets.get(&(n & prefix_mask(v6, g.len))))
            .flatten()
            .copied()
            .filter(|b| ranges.get(b.index()).is_some_and(|r| r.contains(ip))),
    );
    v.sort_unstable();
}

/// The network part of an address number of family `v6` for a prefix of `len` bits.
fn prefix_mask(v6: bool, len: u8) -> u128 {
    let bits: u32 = if v6 { 128 } else { 32 };
    let len = u32::from(len).min(bits);
    if len == 0 {
        0
    } else {
        (u128::MAX << (bits - len)) & crate::ipranges::family_max(v6)
    }
}

fn has_calico_policies(cluster: &Cluster) -> bool {
    cluster
        .policies
        .iter()
        .any(|p| p.calico_selector.is_some() || p.ingress.iter().chain(&p.egress).any(|r| r.calico.is_some()))
}

/// Clusters at least this large (pods and policies) are compiled on two cores where the steps allow.
const PARALLEL_COMPILE: usize = 4096;

/// Records that pod `pid` has `ip`: `ip_index` keeps the lowest pod id, `ip_dups` every pod of an address that
/// several pods have (sorted).
fn index_ip(
    ip_index: &mut FxHashMap<IpAddr, PodId>,
    ip_dups: &mut FxHashMap<IpAddr, Vec<PodId>>,
    ip: IpAddr,
    pid: PodId,
) {
    let owner = *ip_index.entry(ip).or_insert(pid);
    if owner == pid {
        return;
    }
    let all = ip_dups.entry(ip).or_insert_with(|| vec![owner]);
    if let Err(at) = all.binary_search(&pid) {
        all.insert(at, pid);
    }
    if let Some(&first) = all.first() {
        ip_index.insert(ip, first);
    }
}

/// The per-pod indexes of an engine other than identities: pods by address and by name, and how many pods run as
/// each service account.
#[derive(Default)]
struct PodIndexes {
    ip_index: FxHashMap<IpAddr, PodId>,
    ip_dups: FxHashMap<IpAddr, Vec<PodId>>,
    pod_names: PodNames,
    sa_pods: FxHashMap<(NsId, Atom), u32>,
}

impl PodIndexes {
    fn new(pods: &[Pod]) -> Self {
        let mut idx = PodIndexes {
            // One entry per pod (per address: nearly always one).
            ip_index: FxHashMap::with_capacity_and_hasher(pods.len(), Default::default()),
            ip_dups: FxHashMap::default(),
            pod_names: PodNames::with_capacity(pods.len()),
            sa_pods: FxHashMap::default(),
        };
        for (pid, pod) in pods.iter().enumerate() {
            let pid = PodId::new(pid);
            for ip in &pod.ips {
                index_ip(&mut idx.ip_index, &mut idx.ip_dups, *ip, pid);
            }
            idx.pod_names.insert(pod.ns, &pod.name, pid);
            *idx.sa_pods.entry((pod.ns, pod.service_account.clone())).or_default() += 1;
        }
        idx
    }
}

/// Pods by (namespace, hash of the name): a lookup is one probe, and the name is compared to be sure. A name
/// whose hash another pod of its namespace already holds is not indexed; from then on lookups scan the pods
/// (exact either way; with 64-bit hashes, never seen in practice).
#[derive(Clone, Default)]
pub(crate) struct PodNames {
    by_hash: FxHashMap<(NsId, u64), PodId>,
    collided: bool,
}

impl PodNames {
    pub(crate) fn with_capacity(pods: usize) -> Self {
        PodNames { by_hash: FxHashMap::with_capacity_and_hasher(pods, Default::default()), collided: false }
    }

    fn key(ns: NsId, name: &str) -> (NsId, u64) {
        use std::hash::{BuildHasher, Hasher};
        let mut h = rustc_hash::FxBuildHasher.build_hasher();
        h.write(name.as_bytes());
        (ns, h.finish())
    }

    pub(crate) fn insert(&mut self, ns: NsId, name: &str, pod: PodId) {
        match self.by_hash.entry(Self::key(ns, name)) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(pod);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.collided = true,
        }
    }

    /// Forgets `pod` (named `name` in `ns`) if it is the one indexed under its key.
    pub(crate) fn remove(&mut self, ns: NsId, name: &str, pod: PodId) {
        let key = Self::key(ns, name);
        if self.by_hash.get(&key) == Some(&pod) {
            self.by_hash.remove(&key);
        }
    }

    /// The pod `from` (named `name` in `ns`) is now `to`: its entry, if it is the one indexed under its key,
    /// points to `to` (one lookup; as [`PodNames::remove`] then [`PodNames::insert`]).
    pub(crate) fn renumber(&mut self, ns: NsId, name: &str, from: PodId, to: PodId) {
        match self.by_hash.get_mut(&Self::key(ns, name)) {
            Some(id) if *id == from => *id = to,
            // Another pod holds the key: `from` was never indexed (a collision, which `collided` says already).
            Some(_) => self.collided = true,
            None => self.insert(ns, name, to),
        }
    }

    /// The pod named `name` in `ns`, among `pods`, forgotten by the index (one lookup: as [`PodNames::find`]
    /// then [`PodNames::remove`]).
    pub(crate) fn take(&mut self, pods: &[crate::model::Pod], ns: NsId, name: &str) -> Option<PodId> {
        if self.collided {
            let id = PodId::new(pods.iter().position(|p| p.ns == ns && p.name == name)?);
            self.remove(ns, name, id);
            return Some(id);
        }
        match self.by_hash.entry(Self::key(ns, name)) {
            std::collections::hash_map::Entry::Occupied(e)
                if pods.get(e.get().index()).is_some_and(|p| p.ns == ns && p.name == name) =>
            {
                Some(e.remove())
            }
            _ => None,
        }
    }

    /// The pod named `name` in `ns`, among `pods`.
    pub(crate) fn find(&self, pods: &[crate::model::Pod], ns: NsId, name: &str) -> Option<PodId> {
        if self.collided {
            return pods.iter().position(|p| p.ns == ns && p.name == name).map(PodId::new);
        }
        let id = *self.by_hash.get(&Self::key(ns, name))?;
        pods.get(id.index()).is_some_and(|p| p.ns == ns && p.name == name).then_some(id)
    }
}

/// Which namespaces a selector peer looks in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NsScope {
    /// No namespaceSelector: the policy's own namespace.
    Own(NsId),
    Selector(Selector),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SelPeerKey {
    pub namespaces: NsScope,
    /// `None`: every pod of the namespaces.
    pub pods: Option<Selector>,
}

impl SelPeerKey {
    /// Whether the pod selector part matches these pod labels (no pod selector: every pod).
    pub fn pods_match(&self, pod_labels: &Labels) -> bool {
        self.pods.as_ref().is_none_or(|s| s.matches(pod_labels))
    }

    /// Whether this peer selects a pod with `pod_labels` in namespace `ns` labelled `ns_labels`. Callers exclude
    /// hostNetwork pods, which selectors never match.
    pub fn selects(&self, ns: NsId, ns_labels: &Labels, pod_labels: &Labels) -> bool {
        let in_scope = match &self.namespaces {
            NsScope::Own(n) => *n == ns,
            NsScope::Selector(s) => s.matches(ns_labels),
        };
        in_scope && self.pods_match(pod_labels)
    }
}

/// Read access to the compiled form, for answers outside the core (renderers, the server). Ids are those of
/// this engine.
impl Engine {
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }
    pub fn identity(&self, id: IdentityId) -> &Identity {
        &self.identities[id.index()]
    }
    /// The identity of a pod.
    pub fn pod_identity(&self, pod: PodId) -> IdentityId {
        self.pod_identity[pod.index()]
    }
    /// The labels of an identity (`Identity::labels` is the id of its label set).
    pub fn label_set(&self, id: LabelSetId) -> &Labels {
        &self.label_sets[id.index()]
    }
    /// Distinct selector peers with the identities each selects.
    pub fn sel_peers(&self) -> &[(SelPeerKey, IdSet)] {
        &self.sel_peers
    }
    /// Distinct ipBlocks of the policies (with each CIDR of `networks` and each address of a selected node).
    pub fn blocks(&self) -> &[IpBlock] {
        &self.blocks
    }
    /// A distinct `domainNames` list (or Cilium `toFQDNs` selectors, as text).
    pub fn domains(&self, d: DomainsId) -> &[String] {
        &self.domains[d.index()]
    }
    /// The compiled L7 rules a rule carries ([`CRule::l7`]).
    pub fn l7_rules(&self, i: u32) -> &crate::l7::CompiledL7 {
        &self.l7[i as usize]
    }
    /// The ipBlocks containing the addresses of an ip class (sorted).
    pub fn ip_class(&self, c: IpClassId) -> &[BlockId] {
        &self.ip_classes[c.index()]
    }
    pub fn rules(&self) -> &[CRule] {
        &self.rules
    }
    pub fn rule(&self, r: RuleId) -> &CRule {
        &self.rules[r.index()]
    }
    /// The compiled rules of a policy in one direction, in order.
    pub fn policy_rules(&self, p: PolicyId, dir: Direction) -> &[RuleId] {
        let (ing, eg) = &self.policy_rules[p.index()];
        match dir {
            Direction::Ingress => ing,
            Direction::Egress => eg,
        }
    }
    /// Whether a NetworkPolicy selects the pods of identity `i` in `dir`: they are isolated, and what no
    /// NetworkPolicy (or admin rule) allows is denied.
    pub fn isolated(&self, i: IdentityId, dir: Direction) -> bool {
        let tier = self.np_tier();
        self.identities[i.index()].policies(dir).iter().any(|&p| self.policy_tier(p) == tier)
    }
    /// The pod that has an address (the lowest id when several do).
    pub fn pod_with_ip(&self, ip: IpAddr) -> Option<PodId> {
        self.ip_index.get(&ip.to_canonical()).copied()
    }
    /// Whether an endpoint (at `ip`) is a pod or a node's address: what Cilium gives an identity of its own.
    pub fn in_cluster(&self, ep: &Endpoint, ip: IpAddr) -> bool {
        matches!(ep, Endpoint::Pod { .. })
            || self.cluster.nodes.iter().any(|n| n.ips.iter().any(|a| a.to_canonical() == ip.to_canonical()))
    }

    /// The CNI whose reading the answers follow ([`crate::cni`]).
    pub fn cni(&self) -> crate::cni::Cni {
        self.cni
    }

    /// How the CNI was chosen.
    pub fn cni_source(&self) -> crate::cni::CniSource {
        self.cni_source.clone()
    }

    /// The CNI to compile a changed cluster for: the one given, or auto again.
    pub fn cni_choice(&self) -> Option<crate::cni::Cni> {
        match self.cni_source {
            crate::cni::CniSource::Given => Some(self.cni),
            crate::cni::CniSource::Auto(_) => None,
        }
    }

    /// Sets the action of a compiled rule. Only tests of answers and data planes use it, until a dialect
    /// produces actions other than allow.
    #[doc(hidden)]
    pub fn set_rule_action(&mut self, r: RuleId, action: Action) {
        if let Some(rule) = self.rules.get_mut(r.index()) {
            rule.action = action;
        }
    }
}

impl Engine {
    /// The engine for the CNI the cluster's objects say it runs ([`crate::cni::Cni::auto`]).
    pub fn new(cluster: Cluster) -> Engine {
        Engine::with_cni(cluster, None)
    }

    /// The engine for a CNI (`None`: [`crate::cni::Cni::auto`]).
    pub fn with_cni(cluster: Cluster, cni: Option<crate::cni::Cni>) -> Engine {
        let parallel = cluster.pods.len() + cluster.policies.len() >= PARALLEL_COMPILE;
        Self::compile(cluster, cni, parallel)
    }

    /// [`Engine::with_cni`], on two cores where the steps allow when `parallel`: the engine is the same either
    /// way.
    fn compile(cluster: Cluster, cni: Option<crate::cni::Cni>, parallel: bool) -> Engine {
        use crate::cni::{Cni, CniSource};
        let (cni, cni_source) = match cni {
            Some(c) => (c, CniSource::Given),
            None => {
                let (c, why) = Cni::auto(&cluster);
                (c, CniSource::Auto(why))
            }
        };
        // Distinct ipBlocks.
        let mut block_index: FxHashMap<IpBlock, BlockId> = FxHashMap::default();
        let mut blocks: Vec<IpBlock> = Vec::new();
        // Looked up by reference: most are already interned (no copy of the block to look it up).
        let mut add_block = |b: &IpBlock| {
            if !block_index.contains_key(b) {
                blocks.push(b.clone());
                block_index.insert(b.clone(), BlockId::new(blocks.len() - 1));
            }
        };
        // The rules of every policy, counted on the way: the compiled rules' vector is sized once.
        let mut rule_count = 0;
        for pol in &cluster.policies {
            rule_count += pol.ingress.len() + pol.egress.len();
            for r in pol.ingress.iter().chain(&pol.egress) {
                for p in &r.peers {
                    match p {
                        Peer::IpBlock(b) => add_block(b),
                        _ => peer_blocks(&cluster.nodes, p).iter().for_each(&mut add_block),
                    }
                    // Cilium's reading of an ipBlock: a CIDR peer, its CIDR and exceptions as blocks of their own.
                    if let (Peer::IpBlock(b), true) = (p, cni.ip_block_outside_only()) {
                        let c = crate::cni::cilium_cidr_peer(b);
                        for n in c.nets.iter().chain(&c.not_nets) {
                            add_block(&IpBlock { cidr: *n, except: Vec::new() });
                        }
                    }
                }
            }
        }
        calico_blocks(&cluster).iter().for_each(&mut add_block);
        let (tiers, tier_map) = crate::eval::tiers(&cluster.tiers);
        let calico = has_calico_policies(&cluster);

        let mut eng = Engine {
            cluster: Cluster::default(),
            label_sets: Vec::new(),
            identities: Vec::new(),
            pod_identity: Vec::with_capacity(cluster.pods.len()),
            primary_ips: cluster.pods.iter().map(|p| p.primary_ip()).collect(),
            sel_peers: Vec::new(),
            block_refs: vec![0; blocks.len()],
            block_ranges: blocks.iter().map(BlockRanges::new).collect(),
            block_prefixes: block_prefixes(&blocks),
            blocks,
            ip_classes: vec![Vec::new()],
            tiers,
            rules: Vec::with_capacity(rule_count),
            policy_rules: Vec::with_capacity(cluster.policies.len()),
            policy_ns: cluster.policies.iter().map(Policy::ns).collect(),
            ns_names: cluster.namespaces.iter().enumerate().map(|(i, n)| (n.name.clone(), NsId::new(i))).collect(),
            ip_index: FxHashMap::default(),
            ip_dups: FxHashMap::default(),
            ip_class_index: FxHashMap::default(),
            sig_buf: Vec::new(),
            port_names: FxHashMap::default(),
            label_index: FxHashMap::default(),
            id_index: FxHashMap::default(),
            peer_index: FxHashMap::default(),
            sel_refs: Vec::new(),
            block_index,
            domains: Vec::new(),
            domain_index: FxHashMap::default(),
            domain_cilium: Vec::new(),
            l7: Vec::new(),
            l7_index: FxHashMap::default(),
            tier_map,
            calico,
            ident_calico: Vec::new(),
            calico_peers: Vec::new(),
            calico_index: FxHashMap::default(),
            heps: Vec::new(),
            hep_by_ip: FxHashMap::default(),
            node_hep: FxHashMap::default(),
            cilium: cluster.has_cilium(),
            calico_objects: cluster.has_calico(),
            pod_names: PodNames::default(),
            sa_pods: FxHashMap::default(),
            node_rel: cluster.has_cilium_node_rules(),
            pod_node: Vec::new(),
            node_by_ip: FxHashMap::default(),
            node_sets: Vec::new(),
            cni,
            cni_source,
        };
        eng.ip_class_index.insert(Vec::new(), IpClassId::new(0));
        if eng.node_rel {
            let by_name: FxHashMap<&str, u32> =
                cluster.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i as u32)).collect();
            eng.pod_node =
                cluster.pods.iter().map(|p| p.node.as_deref().and_then(|n| by_name.get(n).copied())).collect();
            for (i, n) in cluster.nodes.iter().enumerate() {
                for ip in &n.ips {
                    eng.node_by_ip.entry(ip.to_canonical()).or_insert(i as u32);
                }
            }
        }

        // Identities.
        // Addresses, names, service accounts and namespaces' labels are indexed apart from identities (on another
        // core for large clusters: neither reads the other).
        let ((), (pod_idx, ns_index)) = join(
            parallel,
            || {
                // A pod with the very same (interned) labels, ports and account as an earlier pod of its namespace,
                // ip class and family has that pod's identity: found by address, without hashing their contents.
                // (Cilium's labels are built per pod, so there every pod takes the general way.)
                type ByAddress = (NsId, usize, bool, IpClassId, usize, usize, Option<bool>);
                let mut by_address: FxHashMap<ByAddress, IdentityId> = FxHashMap::default();
                for (pid, pod) in cluster.pods.iter().enumerate() {
                    let ip_class = eng.pod_ip_class(pod);
                    let address = (!eng.cilium).then(|| {
                        let sa = if eng.calico {
                            std::sync::Arc::as_ptr(&pod.service_account) as *const u8 as usize
                        } else {
                            0
                        };
                        let ports = std::sync::Arc::as_ptr(&pod.ports) as *const u8 as usize;
                        (pod.ns, pod.labels.address(), pod.host_network, ip_class, ports, sa, eng.pod_family(pod))
                    });
                    let id = match address.and_then(|a| by_address.get(&a)) {
                        Some(&id) => id,
                        None => {
                            let key = eng.identity_key_of_class(pod, cluster.ns(pod.ns), ip_class);
                            let next = IdentityId::new(eng.identities.len());
                            let id = *eng.id_index.entry(key).or_insert_with_key(|key| {
                                eng.identities.push(Identity::empty(key));
                                next
                            });
                            if let Some(a) = address {
                                by_address.insert(a, id);
                            }
                            id
                        }
                    };
                    if let Some(ident) = eng.identities.get_mut(id.index()) {
                        ident.pods.push(PodId::new(pid));
                    }
                    eng.pod_identity.push(id);
                }
            },
            || (PodIndexes::new(&cluster.pods), SelectIndex::namespaces(&cluster)),
        );
        (eng.ip_index, eng.ip_dups, eng.pod_names, eng.sa_pods) =
            (pod_idx.ip_index, pod_idx.ip_dups, pod_idx.pod_names, pod_idx.sa_pods);

        // Identities per namespace.
        let mut ns_idents: Vec<Vec<IdentityId>> = vec![Vec::new(); cluster.namespaces.len()];
        for (i, ident) in eng.identities.iter().enumerate() {
            if let Some(v) = ns_idents.get_mut(ident.ns.index()) {
                v.push(IdentityId::new(i));
            }
        }

        if eng.calico {
            let views = cluster.label_views();
            let sas: FxHashMap<(NsId, &str), &crate::model::ServiceAccount> =
                cluster.service_accounts.iter().map(|s| ((s.ns, s.name.as_str()), s)).collect();
            eng.ident_calico = eng
                .identities
                .iter()
                .map(|ident| {
                    let sa = sas.get(&(ident.ns, &*ident.service_account)).copied();
                    let labels = &eng.label_sets[ident.labels.index()];
                    cluster.endpoint_labels(labels, ident.ns, sa, &ident.service_account, views)
                })
                .collect();
        }
        let netset_labels: Vec<Labels> = cluster
            .network_sets
            .iter()
            .map(|s| crate::model::network_set_labels(s, s.ns.map(|n| cluster.ns(n))))
            .collect();
        let calico_index = eng.calico.then(|| CalicoSelectIndex::new(&eng, &netset_labels, &cluster.host_endpoints));
        let sel_index = SelectIndex::new(&eng, ns_index, ns_idents.clone());
        // The policies selecting each identity are found (on another core for large clusters) while the rules are
        // compiled: neither reads what the other writes.
        let idents: Vec<(NsId, bool, LabelSetId)> =
            eng.identities.iter().map(|i| (i.ns, i.host_network, i.labels)).collect();
        let label_sets = eng.label_sets.clone();
        let groups = if eng.calico { AddrGroups::new(&eng) } else { AddrGroups::default() };
        let ((), selected) = join(
            parallel,
            || eng.compile_rules(&cluster, &sel_index, calico_index.as_ref(), &groups),
            || Engine::selected_by(&idents, &label_sets, &cluster, &ns_idents, calico_index.as_ref()),
        );
        for (ident, (ingress, egress)) in eng.identities.iter_mut().zip(selected) {
            (ident.ingress_policies, ident.egress_policies) = (ingress, egress);
        }
        // Flattened rules (in the order of the policies' tiers and priorities) and interned named ports per
        // identity.
        eng.cluster = cluster;
        let flat = {
            let (eng, half) = (&eng, eng.identities.len() / 2);
            let flat = |ids: std::ops::Range<usize>| ids.map(|i| eng.flat_pair(IdentityId::new(i))).collect::<Vec<_>>();
            let (mut first, second) = join(parallel, || flat(0..half), || flat(half..eng.identities.len()));
            first.extend(second);
            first
        };
        for (i, flat) in flat.into_iter().enumerate() {
            eng.set_flat_rules(IdentityId::new(i), flat);
            eng.intern_named_ports(IdentityId::new(i));
        }
        eng.compile_host_endpoints();
        eng
    }

    /// Compiles the rules of every policy, in order, with their selector peers, Calico peers and ports.
    fn compile_rules(
        &mut self,
        cluster: &Cluster,
        sel_index: &SelectIndex,
        calico_index: Option<&CalicoSelectIndex>,
        groups: &AddrGroups,
    ) {
        let eng = self;
        let mut calico_sel: FxHashMap<Expr, SelMatch> = FxHashMap::default();
        let mut ns_sel_cache: FxHashMap<Selector, Vec<NsId>> = FxHashMap::default();
        let mut select = |eng: &Engine, key: &SelPeerKey| eng.select_peer(cluster, key, sel_index, &mut ns_sel_cache);
        for (polid, pol) in cluster.policies.iter().enumerate() {
            let mut ids = (Vec::new(), Vec::new());
            for dir in [Direction::Ingress, Direction::Egress] {
                for (ri, r) in pol.rules(dir).iter().enumerate() {
                    let peers = r.peers.iter().filter_map(|p| if let Peer::Calico(c) = p { Some(&**c) } else { None });
                    let local = r.calico.as_ref().and_then(|c| c.local.as_ref());
                    for c in peers.chain(local) {
                        eng.calico_peer(cluster, &mut calico_sel, calico_index, groups, c);
                    }
                    if eng.cni.ip_block_outside_only() {
                        for p in &r.peers {
                            if let Peer::IpBlock(b) = p {
                                let c = crate::cni::cilium_cidr_peer(b);
                                eng.calico_peer(cluster, &mut calico_sel, calico_index, groups, &c);
                            }
                        }
                    }
                    // Every ipBlock of the cluster was interned above, so the rule always compiles.
                    let tier = eng.tier_id(pol.tier);
                    let polid = PolicyId::new(polid);
                    let Some(rule) = eng.compile_rule(polid, pol.ns(), tier, &cluster.nodes, dir, ri, r, &mut select)
                    else {
                        continue;
                    };
                    let rid = RuleId::new(eng.rules.len());
                    eng.rules.push(rule);
                    match dir {
                        Direction::Ingress => ids.0.push(rid),
                        Direction::Egress => ids.1.push(rid),
                    }
                }
            }
            eng.policy_rules.push(ids);
        }
    }

    /// The policies selecting each identity (in policy order), affecting its ingress and its egress. hostNetwork
    /// pods are not subject to policies.
    fn selected_by(
        idents: &[(NsId, bool, LabelSetId)],
        label_sets: &[Labels],
        cluster: &Cluster,
        ns_idents: &[Vec<IdentityId>],
        calico_index: Option<&CalicoSelectIndex>,
    ) -> Vec<(Vec<PolicyId>, Vec<PolicyId>)> {
        let mut selected = vec![(Vec::new(), Vec::new()); idents.len()];
        // The identities each Calico policy's subject selector matches.
        let mut subjects: FxHashMap<&Expr, Vec<IdentityId>> = FxHashMap::default();
        let mut sel_cache: FxHashMap<(&Selector, LabelSetId), bool> = FxHashMap::default();
        for (polid, pol) in cluster.policies.iter().enumerate() {
            if !pol.host.applies_to_workloads() {
                continue;
            }
            let namespaces: Vec<NsId> = match &pol.scope {
                Scope::Namespace(ns) => vec![*ns],
                Scope::Cluster(sel) => (0..cluster.namespaces.len())
                    .filter(|&i| sel.matches(&cluster.namespaces[i].labels))
                    .map(NsId::new)
                    .collect(),
            };
            let mut select = |iid: IdentityId| {
                let (ingress, egress) = &mut selected[iid.index()];
                if pol.affects_ingress {
                    ingress.push(PolicyId::new(polid));
                }
                if pol.affects_egress {
                    egress.push(PolicyId::new(polid));
                }
            };
            match (&pol.calico_selector, calico_index) {
                // A Calico policy: the identities its selector matches (the index leaves hostNetwork ones out),
                // kept when in the policy's namespaces.
                (Some(expr), Some(idx)) => {
                    let mut in_scope = vec![false; cluster.namespaces.len()];
                    for ns in &namespaces {
                        if let Some(b) = in_scope.get_mut(ns.index()) {
                            *b = true;
                        }
                    }
                    let subj = subjects.entry(expr).or_insert_with(|| idx.select(expr));
                    for &iid in subj.iter() {
                        if in_scope.get(idents[iid.index()].0.index()).copied().unwrap_or(false) {
                            select(iid);
                        }
                    }
                }
                (Some(_), None) => {}
                (None, _) => {
                    for &iid in namespaces.iter().flat_map(|ns| ns_idents.get(ns.index()).into_iter().flatten()) {
                        let (_, host_network, ls) = idents[iid.index()];
                        if host_network {
                            continue;
                        }
                        let m = *sel_cache
                            .entry((&pol.pod_selector, ls))
                            .or_insert_with(|| pol.pod_selector.matches(&label_sets[ls.index()]));
                        if m {
                            select(iid);
                        }
                    }
                }
            }
        }
        selected
    }

    /// The identity key of a pod of namespace `ns`, interning its label set and ip class. In a cluster with
    /// Cilium policies the label set is Cilium's labels of the pod ([`crate::model::cilium_labels`]): what every
    /// label selector, NetworkPolicy v1 included, is matched against there.
    pub(crate) fn identity_key(&mut self, pod: &Pod, ns: &crate::model::Namespace) -> IdentityKey {
        let ip_class = self.pod_ip_class(pod);
        self.identity_key_of_class(pod, ns, ip_class)
    }

    /// [`Engine::identity_key`] for a pod whose ip class is known.
    fn identity_key_of_class(&mut self, pod: &Pod, ns: &crate::model::Namespace, ip_class: IpClassId) -> IdentityKey {
        let cilium;
        let labels = if self.cilium {
            cilium = crate::model::cilium_labels(&pod.labels, ns, &pod.service_account);
            &cilium
        } else {
            &pod.labels
        };
        let ls = match self.label_index.get(labels) {
            Some(&ls) => ls,
            None => {
                let ls = LabelSetId::new(self.label_sets.len());
                self.label_sets.push(labels.clone());
                self.label_index.insert(labels.clone(), ls);
                ls
            }
        };
        let mut ports = pod.ports.to_vec();
        ports.sort();
        let sa = if self.calico { pod.service_account.clone() } else { NO_ACCOUNT.clone() };
        (pod.ns, ls, pod.host_network, ip_class, ports, sa, self.pod_family(pod))
    }

    /// The ip class of a pod's primary address (class 0 when it has none).
    fn pod_ip_class(&mut self, pod: &Pod) -> IpClassId {
        match pod.primary_ip() {
            Some(ip) => self.ip_class_of(ip),
            None => IpClassId::new(0),
        }
    }

    /// The family of a pod's primary address as part of its identity ([`Identity::family`]).
    fn pod_family(&self, pod: &Pod) -> Option<bool> {
        if self.calico {
            pod.primary_ip().map(|ip| ip.to_canonical().is_ipv6())
        } else {
            None
        }
    }

    /// Records that pod `pid` has `ip` (`ip_index` keeps the lowest pod id).
    pub(crate) fn index_ip(&mut self, ip: IpAddr, pid: PodId) {
        index_ip(&mut self.ip_index, &mut self.ip_dups, ip, pid);
    }

    /// Flattens the rules of an identity's policies, per direction.
    pub(crate) fn refresh_rules(&mut self, i: IdentityId) {
        let flat = self.flat_pair(i);
        self.set_flat_rules(i, flat);
    }

    /// The flattened rules of identity `i` with their tier bits, ingress then egress ([`Engine::flat_rules`]).
    fn flat_pair(&self, i: IdentityId) -> [(Vec<RuleId>, u64); 2] {
        let ident = &self.identities[i.index()];
        [
            self.flat_rules(&ident.ingress_policies, Direction::Ingress),
            self.flat_rules(&ident.egress_policies, Direction::Egress),
        ]
    }

    fn set_flat_rules(&mut self, i: IdentityId, [(ing, ing_bits), (eg, eg_bits)]: [(Vec<RuleId>, u64); 2]) {
        let ident = &mut self.identities[i.index()];
        ident.ingress_rules = ing;
        ident.egress_rules = eg;
        ident.tier_bits = [ing_bits, eg_bits];
    }

    /// The rules of policies `pols` in `dir` in evaluation order (the rules of [`Engine::profile_steps`], without
    /// its tier ends), and the tiers of the policies as bits (tiers below 64). Each policy is read once; when
    /// they are NetworkPolicies only (whose evaluation order is the given one) in tier order, the rules are their
    /// rules in that order, without the steps.
    fn flat_rules(&self, pols: &[PolicyId], dir: Direction) -> (Vec<RuleId>, u64) {
        let mut bits = 0u64;
        let mut in_order = true;
        let mut last = 0;
        let mut len = 0;
        for &p in pols {
            let pol = self.cluster.policy(p);
            let t = self.tier_id(pol.tier).index();
            if t < 64 {
                bits |= 1 << t;
            }
            in_order &= pol.kind == crate::model::PolicyKind::NetworkPolicy && t >= last && t < self.tiers.len();
            last = t;
            let (ing, eg) = &self.policy_rules[p.index()];
            len += match dir {
                Direction::Ingress => ing.len(),
                Direction::Egress => eg.len(),
            };
        }
        if !in_order {
            let steps = self.profile_steps(pols, dir);
            let rules = steps.into_iter().filter_map(|s| if let ProfileStep::Rule(r) = s { Some(r) } else { None });
            return (rules.collect(), bits);
        }
        let mut rules = Vec::with_capacity(len);
        for &p in pols {
            let (ing, eg) = &self.policy_rules[p.index()];
            rules.extend_from_slice(match dir {
                Direction::Ingress => ing,
                Direction::Egress => eg,
            });
        }
        (rules, bits)
    }

    /// Interns the names of an identity's named container ports.
    pub(crate) fn intern_named_ports(&mut self, i: IdentityId) {
        let ports = std::mem::take(&mut self.identities[i.index()].ports);
        let named: Vec<(u32, Protocol, u16)> = ports
            .iter()
            .filter_map(|c| c.name.as_deref().map(|n| (self.port_name_id(n), c.protocol, c.port)))
            .collect();
        let ident = &mut self.identities[i.index()];
        (ident.ports, ident.named_ports) = (ports, named);
    }

    /// Compiles one rule of policy `polid` (a NetworkPolicy of namespace `ns`, or a cluster-scoped policy:
    /// `None`) in `tier`: selector peers are looked up, or created with the identities `select` computes;
    /// reference counts of the peers used are incremented. `None` if the rule has an address block that is not
    /// interned (a new block changes every ip class: the caller must recompile).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn compile_rule(
        &mut self,
        polid: PolicyId,
        ns: Option<NsId>,
        tier: TierId,
        nodes: &[Node],
        dir: Direction,
        index: usize,
        r: &Rule,
        select: &mut dyn FnMut(&Engine, &SelPeerKey) -> IdSet,
    ) -> Option<CRule> {
        let mut peers = Vec::with_capacity(r.peers.len());
        for (src, p) in r.peers.iter().enumerate() {
            match p {
                // Cilium: a CIDR peer, interned with the rule's other Calico peers.
                Peer::IpBlock(b) if self.cni.ip_block_outside_only() => {
                    let c = crate::cni::cilium_cidr_peer(b);
                    peers.push((CPeer::Calico(*self.calico_index.get(&c)?), src as u32));
                }
                Peer::IpBlock(b) => peers.push((CPeer::Block(*self.block_index.get(b)?), src as u32)),
                Peer::Networks(_) | Peer::Nodes(_) => {
                    let blocks = peer_blocks(nodes, p);
                    if blocks.is_empty() {
                        peers.push((CPeer::Nothing, src as u32));
                    }
                    for b in &blocks {
                        peers.push((CPeer::Block(*self.block_index.get(b)?), src as u32));
                    }
                }
                Peer::Calico(c) => peers.push((CPeer::Calico(*self.calico_index.get(&**c)?), src as u32)),
                Peer::SubjectNodes { own, others } => {
                    if *own {
                        peers.push((CPeer::OwnNode, src as u32));
                    }
                    if *others {
                        peers.push((CPeer::OtherNodes, src as u32));
                    }
                }
                Peer::NodeSelector(sel) => {
                    let set: Vec<u32> =
                        (0..nodes.len()).filter(|&i| sel.matches(&nodes[i].labels)).map(|i| i as u32).collect();
                    let k = match self.node_sets.iter().position(|s| *s == set) {
                        Some(k) => k,
                        None => {
                            self.node_sets.push(set);
                            self.node_sets.len() - 1
                        }
                    };
                    peers.push((CPeer::NodeSet(k as u32), src as u32));
                }
                Peer::DomainNames(names) => {
                    let next = DomainsId::new(self.domains.len());
                    let id = *self.domain_index.entry(names.clone()).or_insert(next);
                    if id == next {
                        self.domains.push(names.clone());
                        self.domain_cilium.push(None);
                    }
                    peers.push((CPeer::Domains(id), src as u32));
                }
                Peer::Fqdns(sels) => {
                    // Keyed by the selectors' texts, which hold a space (no domain name does).
                    let texts: Vec<String> = sels.iter().map(|d| d.to_string()).collect();
                    let next = DomainsId::new(self.domains.len());
                    let id = *self.domain_index.entry(texts.clone()).or_insert(next);
                    if id == next {
                        self.domains.push(texts);
                        let pats = sels
                            .iter()
                            .filter_map(|d| crate::l7::DnsPattern::from_selector(&d.match_name, &d.match_pattern).ok());
                        self.domain_cilium.push(Some(pats.collect()));
                    }
                    peers.push((CPeer::Domains(id), src as u32));
                }
                Peer::Selectors { namespaces, pods } => {
                    let key = SelPeerKey {
                        namespaces: match (namespaces, ns) {
                            (None, Some(ns)) => NsScope::Own(ns),
                            // A cluster-scoped policy always names its namespaces; none would mean all.
                            (None, None) => NsScope::Selector(Selector::everything()),
                            (Some(s), _) => NsScope::Selector(s.clone()),
                        },
                        pods: pods.clone(),
                    };
                    let id = match self.peer_index.get(&key) {
                        Some(&id) => id,
                        None => {
                            let set = select(self, &key);
                            let id = SelPeerId::new(self.sel_peers.len());
                            self.sel_peers.push((key.clone(), set));
                            self.sel_refs.push(0);
                            self.peer_index.insert(key, id);
                            id
                        }
                    };
                    peers.push((CPeer::Sel(id), src as u32));
                }
            }
        }
        // Sorted by peer, then source index: the first of equal peers keeps the lowest source index.
        peers.sort_unstable_by_key(|&(p, src)| (p.order(), src));
        peers.dedup_by_key(|&mut (p, _)| p);
        let (peers, peer_src): (Vec<CPeer>, Vec<u32>) = peers.into_iter().unzip();
        for &p in &peers {
            if let Some(c) = self.peer_refs(p) {
                *c += 1;
            }
        }
        let mut ports = match &r.calico {
            Some(c) => compile_calico_ports(&r.ports, c),
            None => compile_ports(&r.ports),
        };
        ports.named_ids = ports.named.iter().map(|(p, n)| (*p, self.port_name_id(n))).collect();
        if let Some(not) = &mut ports.not {
            not.named_ids = not.named.iter().map(|(p, n)| (*p, self.port_name_id(n))).collect();
        }
        let local = match r.calico.as_ref().and_then(|c| c.local.as_ref()) {
            Some(l) => Some(*self.calico_index.get(l)?),
            None => None,
        };
        let action = r.action;
        let l7 = r.l7.as_ref().map(|rules| match self.l7_index.get(rules) {
            Some(&i) => i,
            None => {
                let i = self.l7.len() as u32;
                self.l7.push(crate::l7::CompiledL7::new(rules));
                self.l7_index.insert(rules.clone(), i);
                i
            }
        });
        let inline_ports = (ports.named_ids.is_empty() && ports.not_named_ids().is_empty())
            .then(|| InlinePorts::of(&ports.numeric))
            .flatten();
        Some(CRule {
            policy: polid,
            dir,
            index: index as u32,
            tier,
            action,
            peers: peers.into(),
            peer_src: peer_src.into(),
            ports,
            local,
            inline_ports,
            l7,
        })
    }
    /// Compiles a Calico entity rule once (see [`crate::calico_peer`]).
    fn calico_peer(
        &mut self,
        cluster: &Cluster,
        cache: &mut FxHashMap<Expr, SelMatch>,
        index: Option<&CalicoSelectIndex>,
        groups: &AddrGroups,
        peer: &CalicoPeer,
    ) -> CalicoId {
        if let Some(&id) = self.calico_index.get(peer) {
            return id;
        }
        let mut select = |eng: &Engine, expr: &Expr| -> SelMatch {
            if let Some(m) = cache.get(expr) {
                return m.clone();
            }
            let ids: Vec<IdentityId> = index.map(|x| x.select(expr)).unwrap_or_default();
            let sets: Vec<usize> = index.map(|x| x.select_net_sets(expr)).unwrap_or_default();
            // Host endpoints are matched by their labels and their expected addresses, as network sets are.
            let heps: Vec<usize> = index.map(|x| x.select_heps(expr)).unwrap_or_default();
            let hep_nets: Vec<ipnet::IpNet> = heps
                .iter()
                .flat_map(|&h| cluster.host_endpoints[h].expected_ips.iter().map(|ip| ipnet::IpNet::from(*ip)))
                .collect();
            let mut blocks: Vec<BlockId> = sets
                .iter()
                .flat_map(|&s| cluster.network_sets[s].nets.iter())
                .chain(&hep_nets)
                .filter_map(|n| eng.block_index.get(&IpBlock { cidr: *n, except: Vec::new() }).copied())
                .collect();
            blocks.sort_unstable();
            blocks.dedup();
            let intervals = Intervals::of(&eng.block_ranges, &blocks);
            let m = SelMatch { idents: IdSet::from_sorted(ids, eng.identities.len()), blocks, intervals, sets, heps };
            cache.insert(expr.clone(), m.clone());
            m
        };
        let sel = peer.selector.as_ref().map(|e| select(self, e));
        let not_sel = peer.not_selector.as_ref().map(|e| select(self, e));
        let as_blocks = |eng: &Engine, nets: &[ipnet::IpNet]| -> Vec<BlockId> {
            let mut v: Vec<BlockId> = nets
                .iter()
                .filter_map(|n| eng.block_index.get(&IpBlock { cidr: *n, except: Vec::new() }).copied())
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let nets = (!peer.nets.is_empty()).then(|| as_blocks(self, &peer.nets));
        let not_nets = as_blocks(self, &peer.not_nets);
        let nets_intervals = Intervals::of(&self.block_ranges, nets.as_deref().unwrap_or_default());
        let not_nets_intervals = Intervals::of(&self.block_ranges, &not_nets);
        let mut c = CCalico {
            peer: peer.clone(),
            sel,
            not_sel,
            nets,
            nets_intervals,
            not_nets,
            not_nets_intervals,
            not_nets_families: (
                peer.not_nets.iter().any(|n| matches!(n, ipnet::IpNet::V4(_))),
                peer.not_nets.iter().any(|n| matches!(n, ipnet::IpNet::V6(_))),
            ),
            v6: peer.ip_version.map(|v| v == 6),
            pods: IdSet::Sparse(Vec::new()),
            node_ips: Vec::new(),
        };
        if peer.outside_only {
            let mut ips: Vec<IpAddr> =
                cluster.nodes.iter().flat_map(|n| n.ips.iter().map(|ip| ip.to_canonical())).collect();
            ips.sort_unstable();
            ips.dedup();
            c.node_ips = ips;
        }
        c.pods = IdSet::from_sorted(groups.select(self, &c), self.identities.len());
        let id = CalicoId::new(self.calico_peers.len());
        self.calico_peers.push(c);
        self.calico_index.insert(peer.clone(), id);
        id
    }

    /// The compiled Calico entity rule.
    pub fn calico_peer_of(&self, c: CalicoId) -> &CCalico {
        &self.calico_peers[c.index()]
    }

    /// Whether a Calico entity rule matches an endpoint of a flow.
    #[inline]
    pub(crate) fn calico_matches(&self, c: CalicoId, ep: &EpInfo<'_>) -> bool {
        let label_ident = ep.ident.filter(|i| !self.identities[i.index()].host_network);
        self.calico_peers[c.index()].matches(ep, label_ident)
    }

    /// The reference count of a peer that is counted (selector peers and blocks: what an update may drop).
    pub(crate) fn peer_refs(&mut self, p: CPeer) -> Option<&mut u32> {
        match p {
            CPeer::Sel(s) => self.sel_refs.get_mut(s.index()),
            CPeer::Block(b) => self.block_refs.get_mut(b.index()),
            CPeer::Domains(_)
            | CPeer::Nothing
            | CPeer::Calico(_)
            | CPeer::OwnNode
            | CPeer::OtherNodes
            | CPeer::NodeSet(_) => None,
        }
    }

    /// The endpoint information of a pod of identity `i` at address `ip`.
    pub(crate) fn ip_info(&self, i: IdentityId, ip: IpAddr) -> EpInfo<'static> {
        let ident = &self.identities[i.index()];
        let primary = ident.pods.iter().any(|p| self.primary_ips.get(p.index()).copied().flatten() == Some(ip));
        EpInfo {
            ident: Some(i),
            ip: Some(ip),
            ip_class: primary.then_some(ident.ip_class),
            name: None,
            fqdn: None,
            node: None,
            addr_node: self.node_at(ip),
        }
    }

    /// The Node (index) whose address `ip` (canonical) is, in an engine with node-relative peers.
    #[inline]
    pub(crate) fn node_at(&self, ip: IpAddr) -> Option<u32> {
        if !self.node_rel {
            return None;
        }
        self.node_by_ip.get(&ip.to_canonical()).copied()
    }

    /// The endpoint information of a pod of identity `i` at its primary address.
    pub(crate) fn ident_info(&self, i: IdentityId) -> EpInfo<'static> {
        let ident = &self.identities[i.index()];
        let ip = ident.pods.first().and_then(|p| self.primary_ips.get(p.index()).copied().flatten());
        EpInfo {
            ident: Some(i),
            ip,
            ip_class: Some(ident.ip_class),
            name: None,
            fqdn: None,
            node: None,
            addr_node: ip.and_then(|ip| self.node_at(ip)),
        }
    }

    pub(crate) fn port_name_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.port_names.get(name) {
            return id;
        }
        let id = self.port_names.len() as u32;
        self.port_names.insert(name.to_string(), id);
        id
    }

    fn select_peer(
        &self,
        cluster: &Cluster,
        key: &SelPeerKey,
        idx: &SelectIndex,
        ns_sel_cache: &mut FxHashMap<Selector, Vec<NsId>>,
    ) -> IdSet {
        let namespaces: Vec<NsId> = match &key.namespaces {
            NsScope::Own(ns) => vec![*ns],
            NsScope::Selector(s) => ns_sel_cache
                .entry(s.clone())
                .or_insert_with(|| {
                    let all = cluster.namespaces.len();
                    match idx.namespaces.candidates(s, all) {
                        Some(c) => c
                            .into_iter()
                            .filter(|&i| cluster.namespaces.get(i as usize).is_some_and(|n| s.matches(&n.labels)))
                            .map(|i| NsId::new(i as usize))
                            .collect(),
                        None => (0..all).filter(|&i| s.matches(&cluster.namespaces[i].labels)).map(NsId::new).collect(),
                    }
                })
                .clone(),
        };
        let pod_matches = |iid: IdentityId| -> bool {
            let ident = &self.identities[iid.index()];
            // Pod and namespace selectors never match hostNetwork pods (their traffic is the node's).
            !ident.host_network && key.pods_match(&self.label_sets[ident.labels.index()])
        };
        let scan_cost: usize = namespaces.iter().map(|&ns| idx.ns_idents.get(ns.index()).map_or(0, Vec::len)).sum();
        let candidates =
            if scan_cost > 64 { key.pods.as_ref().and_then(|s| idx.idents.candidates(s, scan_cost)) } else { None };
        let mut ids: Vec<IdentityId> = match candidates {
            // Few pods carry the selector's labels: start from the label index.
            Some(c) => {
                let mut in_ns = vec![false; cluster.namespaces.len()];
                for &ns in &namespaces {
                    if let Some(f) = in_ns.get_mut(ns.index()) {
                        *f = true;
                    }
                }
                c.into_iter()
                    .map(|i| IdentityId::new(i as usize))
                    .filter(|&i| in_ns.get(self.identities[i.index()].ns.index()).copied().unwrap_or(false))
                    .filter(|&i| pod_matches(i))
                    .collect()
            }
            None => namespaces
                .iter()
                .flat_map(|&ns| idx.ns_idents.get(ns.index()).into_iter().flatten().copied())
                .filter(|&i| pod_matches(i))
                .collect(),
        };
        ids.sort_unstable();
        ids.dedup();
        IdSet::from_sorted(ids, self.identities.len())
    }

    /// The ip class (set of ipBlocks containing it) of an address, interning a new class if needed.
    pub(crate) fn ip_class_of(&mut self, ip: IpAddr) -> IpClassId {
        let ip = ip.to_canonical();
        let mut sig = std::mem::take(&mut self.sig_buf);
        blocks_containing_into(&self.block_prefixes, &self.block_ranges, ip, &mut sig);
        if let Some(&c) = self.ip_class_index.get(&sig[..]) {
            self.sig_buf = sig;
            return c;
        }
        let c = IpClassId::new(self.ip_classes.len());
        self.ip_classes.push(sig.clone());
        self.ip_class_index.insert(sig, c);
        c
    }

    pub fn identity_of(&self, pod: PodId) -> &Identity {
        &self.identities[(self.pod_identity[pod.index()]).index()]
    }

    /// Whether block `b` contains `ip` (an IPv4-mapped IPv6 address is its IPv4 address): O(log k) for k
    /// exceptions.
    pub fn block_contains(&self, b: BlockId, ip: IpAddr) -> bool {
        self.block_ranges.get(b.index()).is_some_and(|r| r.contains(ip.to_canonical()))
    }

    /// Resolves an IP to an endpoint: a pod's IP is that pod; any other address is external. IPv4-mapped IPv6
    /// addresses (`::ffff:10.0.0.1`) are their IPv4 address, as in Kubernetes (Go's `net` package).
    pub fn endpoint_for_ip(&self, ip: IpAddr) -> Endpoint {
        let ip = ip.to_canonical();
        match self.ip_index.get(&ip) {
            Some(&pod) => Endpoint::Pod { pod, ip: Some(ip) },
            None => Endpoint::External(ip),
        }
    }

    /// The IP a flow uses for an endpoint (canonical: an IPv4-mapped address is its IPv4 address).
    pub fn endpoint_ip(&self, ep: &Endpoint) -> Option<IpAddr> {
        match *ep {
            Endpoint::Pod { pod, ip } => ip.or_else(|| self.cluster.pod(pod).primary_ip()),
            Endpoint::External(ip) => Some(ip),
        }
        .map(|ip| ip.to_canonical())
    }

    /// What the hot path needs to know about an endpoint, computed once per flow.
    #[inline]
    pub(crate) fn ep_info(&self, ep: &Endpoint) -> EpInfo<'_> {
        match *ep {
            Endpoint::Pod { pod, ip } => {
                let ip = ip.map(|ip| ip.to_canonical());
                let ident = self.pod_identity[pod.index()];
                // The identity's ip class is that of the pod's primary IP; another IP of the pod (the other
                // family) is matched against the blocks directly.
                let primary = ip.is_none() || ip == self.primary_ips[pod.index()];
                let ip_class = primary.then(|| self.identities[ident.index()].ip_class);
                let (node, addr_node) = if self.node_rel {
                    let addr = ip.or(self.primary_ips[pod.index()]).and_then(|ip| self.node_at(ip));
                    (self.pod_node.get(pod.index()).copied().flatten().or(addr), addr)
                } else {
                    (None, None)
                };
                EpInfo { ident: Some(ident), ip, ip_class, name: None, fqdn: None, node, addr_node }
            }
            Endpoint::External(ip) => {
                let ip = ip.to_canonical();
                let node = self.node_at(ip);
                EpInfo { ident: None, ip: Some(ip), ip_class: None, name: None, fqdn: None, node, addr_node: node }
            }
        }
    }

    #[inline]
    pub(crate) fn peer_matches(&self, peer: CPeer, me: &EpInfo, ep: &EpInfo) -> bool {
        match peer {
            // Relative to the subject: unknown at identity level (`me.node` is `None` there, and so is `addr_node`
            // of every pod off the host network).
            CPeer::OwnNode => ep.addr_node.is_some() && ep.addr_node == me.node,
            CPeer::OtherNodes => ep.addr_node.is_some_and(|n| me.node != Some(n)),
            CPeer::NodeSet(k) => {
                ep.addr_node.is_some_and(|n| me.node != Some(n) && self.node_sets[k as usize].binary_search(&n).is_ok())
            }
            CPeer::Sel(s) => ep.ident.is_some_and(|i| self.sel_peers[s.index()].1.contains(i)),
            CPeer::Block(b) => match (ep.ip_class, ep.ip) {
                // Fast path: a pod's primary IP has a precomputed class.
                (Some(c), _) => self.ip_classes[c.index()].binary_search(&b).is_ok(),
                (None, Some(ip)) => self.block_ranges[b.index()].contains(ip),
                (None, None) => false,
            },
            CPeer::Domains(d) => match &self.domain_cilium[d.index()] {
                None => ep.name.is_some_and(|name| self.domains[d.index()].iter().any(|pat| domain_matches(pat, name))),
                // Cilium's `toFQDNs`: an address outside the cluster, learnt from the name by the DNS proxy.
                Some(pats) => ep.ident.is_none() && ep.fqdn.is_some_and(|n| pats.iter().any(|p| p.matches(n))),
            },
            CPeer::Nothing => false,
            CPeer::Calico(c) => self.calico_matches(c, ep),
        }
    }

    /// The fast verdict of one flow.
    pub fn allowed(&self, src: &Endpoint, dst: &Endpoint, proto: Protocol, port: u16) -> bool {
        self.allowed_named(src, dst, None, proto, port)
    }

    /// The fast verdict of one flow whose destination address was resolved from the DNS name `dst_name`
    /// (what `domainNames` peers match).
    pub fn allowed_named(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        dst_name: Option<&str>,
        proto: Protocol,
        port: u16,
    ) -> bool {
        self.allowed_flow(src, dst, FlowInfo { dst_name, request: None }, proto, port)
    }

    /// The fast verdict of one flow with what it says beyond its ends and port: the name its destination was
    /// resolved from, and one request on the connection (Cilium's L7 rules then judge the request).
    pub fn allowed_flow(&self, src: &Endpoint, dst: &Endpoint, info: FlowInfo<'_>, proto: Protocol, port: u16) -> bool {
        if let (Endpoint::Pod { pod: a, .. }, Endpoint::Pod { pod: b, .. }) = (src, dst) {
            if a == b {
                return true;
            }
        }
        let s = self.ep_info(src);
        let mut d = self.ep_info(dst);
        d.name = info.dst_name;
        d.fqdn = self.learnt_name(src, &s, info.dst_name);
        if !self.heps.is_empty() {
            return self.allowed_with_hosts(src, &s, dst, &d, (proto, port), info.request);
        }
        let dst_named = d.ident.map(|i| self.identities[i.index()].named_ports.as_slice());
        let q = Query { proto, port, dst_named, request: info.request };
        s.ident.is_none_or(|i| self.walk_side(i, &s, Direction::Egress, &d, &q, &mut Quiet))
            && d.ident.is_none_or(|i| {
                self.walk_side(i, &d, Direction::Ingress, &s, &q, &mut Quiet) || self.from_own_node(src, dst).is_some()
            })
    }

    /// One direction of [`Engine::allowed_flow`]: whether the source's egress policies let the flow out
    /// (`Direction::Egress`), or the destination's ingress policies let it in (`Direction::Ingress`), whatever the
    /// other side says. What a log that records one side's verdict is compared with. With Calico host endpoints,
    /// the explanation's side (which walks them) answers.
    pub fn allowed_direction(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        info: FlowInfo<'_>,
        proto: Protocol,
        port: u16,
        direction: Direction,
    ) -> bool {
        if let (Endpoint::Pod { pod: a, .. }, Endpoint::Pod { pod: b, .. }) = (src, dst) {
            if a == b {
                return true;
            }
        }
        if !self.heps.is_empty() {
            let ex = self.explain_flow(src, dst, info, proto, port);
            return if direction == Direction::Egress { ex.egress.allowed } else { ex.ingress.allowed };
        }
        let s = self.ep_info(src);
        let mut d = self.ep_info(dst);
        d.name = info.dst_name;
        d.fqdn = self.learnt_name(src, &s, info.dst_name);
        let dst_named = d.ident.map(|i| self.identities[i.index()].named_ports.as_slice());
        let q = Query { proto, port, dst_named, request: info.request };
        match direction {
            Direction::Egress => s.ident.is_none_or(|i| self.walk_side(i, &s, Direction::Egress, &d, &q, &mut Quiet)),
            Direction::Ingress => d.ident.is_none_or(|i| {
                self.walk_side(i, &d, Direction::Ingress, &s, &q, &mut Quiet) || self.from_own_node(src, dst).is_some()
            }),
        }
    }

    /// `name` when Cilium learns the address from it for the source `src` (`s` its information): for a pod off the
    /// host network, when its identity's egress rules let the DNS proxy answer the name ([`Engine::dns_learns`]);
    /// for a node's host namespace (a hostNetwork pod, or a Node's address), when the egress host policies of
    /// that Node do (the docs' *Host Policies*: host policies may carry DNS rules, and the host's queries then go
    /// through the DNS proxy).
    pub(crate) fn learnt_name<'a>(&self, src: &Endpoint, s: &EpInfo<'_>, name: Option<&'a str>) -> Option<&'a str> {
        let n = name?;
        if self.l7.is_empty() {
            return None;
        }
        let pod = if let Endpoint::Pod { pod, .. } = *src { Some(pod) } else { None };
        let learns = match self.place(s, pod) {
            crate::host::Place::Workload(_) => s.ident.is_some_and(|i| self.dns_learns(i, n)),
            crate::host::Place::Host(h) if self.heps[h].cilium.is_some() => {
                self.rules_learn(&self.heps[h].stage(crate::host::Stage::Normal, Direction::Egress).rules, n)
            }
            _ => false,
        };
        learns.then_some(n)
    }

    /// Whether Cilium learns the addresses of `name` for the pods of identity `i`: their DNS queries go through
    /// Cilium's DNS proxy, which sees them only on ports where one of their egress allow rules has `rules.dns`,
    /// and answers the query only if one of those rules allows the name (`toFQDNs` needs both). Whether the DNS
    /// server itself is reachable is the DNS flow's own question.
    pub fn dns_learns(&self, i: IdentityId, name: &str) -> bool {
        !self.l7.is_empty() && self.rules_learn(&self.identities[i.index()].egress_rules, name)
    }

    /// Whether one of `rules` is an allow rule whose DNS rules allow `name`.
    pub(crate) fn rules_learn(&self, rules: &[RuleId], name: &str) -> bool {
        rules.iter().any(|r| {
            let rule = &self.rules[r.index()];
            rule.action == Action::Allow
                && rule.l7.is_some_and(|l| {
                    let l7 = &self.l7[l as usize];
                    l7.dns.iter().any(|p| p.matches(name))
                })
        })
    }

    /// Cilium's allow-localhost (`always` on Kubernetes), and Felix's unpoliced host → local workload traffic
    /// (see [`crate::cni`]): with the CNI Cilium or Calico, traffic into a pod (off the host network) from an
    /// address of the node it runs on — the node itself, or a hostNetwork pod there — is allowed whatever the
    /// policies say. The node's address and name, when that is the case.
    pub fn from_own_node(&self, src: &Endpoint, dst: &Endpoint) -> Option<(IpAddr, &str)> {
        if !self.cni.node_reaches_own_pods() {
            return None;
        }
        let Endpoint::Pod { pod, .. } = *dst else { return None };
        let p = self.cluster.pods.get(pod.index())?;
        if p.host_network {
            return None;
        }
        let node = self.cluster.nodes.iter().find(|n| Some(n.name.as_str()) == p.node.as_deref())?;
        let ip = match *src {
            Endpoint::External(ip) => ip,
            // Only the node's host network has its addresses (a pod off it with one is no node's).
            Endpoint::Pod { pod, ip } => {
                let p = self.cluster.pods.get(pod.index())?;
                if !p.host_network {
                    return None;
                }
                ip.or_else(|| p.primary_ip())?
            }
        };
        let ip = ip.to_canonical();
        node.ips.iter().any(|a| a.to_canonical() == ip).then_some((ip, node.name.as_str()))
    }

    /// [`Engine::allowed_named`] in a cluster with host endpoints: the pods' sides and the host checks.
    fn allowed_with_hosts(
        &self,
        src: &Endpoint,
        s: &EpInfo<'_>,
        dst: &Endpoint,
        d: &EpInfo<'_>,
        (proto, port): (Protocol, u16),
        request: Option<&crate::l7::Request>,
    ) -> bool {
        let dst_named = match self.host_named_ports(dst) {
            Some(n) => Some(n),
            None => d.ident.map(|i| self.identities[i.index()].named_ports.as_slice()),
        };
        let q = Query { proto, port, dst_named, request };
        s.ident.is_none_or(|i| self.walk_side(i, s, Direction::Egress, d, &q, &mut Quiet))
            && d.ident.is_none_or(|i| {
                self.walk_side(i, d, Direction::Ingress, s, &q, &mut Quiet) || self.from_own_node(src, dst).is_some()
            })
            && self.host_allows(src, s, dst, d, &q)
    }

    /// Parses `ns/pod`, `pod` (in `default_ns`) or an IP address (see [`parse_address`]). A string that looks
    /// like an address but is not a valid one is an address error, unless a pod has that name.
    pub fn parse_endpoint(&self, s: &str, default_ns: &str) -> Result<Endpoint, String> {
        let address = parse_address(s);
        if let Ok(Some(ip)) = address {
            return Ok(self.endpoint_for_ip(ip));
        }
        let (ns, name) = s.split_once('/').unwrap_or((default_ns, s));
        match (self.cluster.find_pod(ns, name), address) {
            (Some(pod), _) => Ok(Endpoint::Pod { pod, ip: None }),
            (None, Err(e)) => Err(e),
            (None, Ok(_)) => Err(format!("unknown pod `{ns}/{name}` (and not an IP address)")),
        }
    }

    /// Human name of an endpoint: `ns/pod` or the IP.
    pub fn endpoint_name(&self, ep: &Endpoint) -> String {
        match ep {
            Endpoint::Pod { pod, .. } => self.cluster.pod_ref(*pod),
            Endpoint::External(ip) => match self.host_endpoint_at(*ip) {
                Some(h) => format!("{ip} (host endpoint {} on node {})", h.name, h.node),
                None => ip.to_string(),
            },
        }
    }

    /// Pods of a namespace-wide ordering used by outputs: by namespace name then pod name.
    pub fn sorted_pods(&self) -> Vec<PodId> {
        let mut v: Vec<PodId> = (0..self.cluster.pods.len()).map(PodId::new).collect();
        v.sort_by(|&a, &b| {
            let (pa, pb) = (self.cluster.pod(a), self.cluster.pod(b));
            (self.cluster.ns_name(pa.ns), &pa.name).cmp(&(self.cluster.ns_name(pb.ns), &pb.name))
        });
        v
    }

    /// Statistics for logs and benchmarks.
    pub fn stats(&self) -> BTreeMap<&'static str, usize> {
        BTreeMap::from([
            ("namespaces", self.cluster.namespaces.len()),
            ("pods", self.cluster.pods.len()),
            ("policies", self.cluster.policies.len()),
            ("identities", self.identities.len()),
            ("label_sets", self.label_sets.len()),
            ("selector_peers", self.sel_peers.len()),
            ("ip_blocks", self.blocks.len()),
            ("ip_classes", self.ip_classes.len()),
            ("rules", self.rules.len()),
        ])
    }
}

/// What a flow says beyond its ends and port.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowInfo<'a> {
    /// The DNS name the destination address was resolved from (`dst_fqdn`): what `domainNames` and `toFQDNs`
    /// peers match.
    pub dst_name: Option<&'a str>,
    /// One request on the connection (`http`, `dns`): the verdict is then the request's (Cilium's L7 rules).
    pub request: Option<&'a crate::l7::Request>,
}

/// Parses an address given by a user (an endpoint of `query`, `explain`, `netpol test`, the HTTP API):
/// `Ok(Some(ip))` for an IP address, canonical (an IPv4-mapped IPv6 address such as `::ffff:10.0.0.1` is its
/// IPv4 address, as Go's `net` package and so Kubernetes treat it); `Err` for a string that looks like an
/// address but is not a valid one (a zoned IPv6 address `fe80::1%eth0`, `10.0.0.256`, `10.0.0.1:80`, a CIDR);
/// `Ok(None)` for anything else (a pod reference).
///
/// "Looks like an address": it contains `:` or `%` (never in `namespace/pod`), it is only digits and dots
/// with at least one dot, or the part before a `/` is an address. Only the last two can also be a pod's
/// name: callers look the pod up before reporting the error.
pub fn parse_address(s: &str) -> Result<Option<IpAddr>, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Some(ip.to_canonical()));
    }
    if let Some((host, zone)) = s.split_once('%') {
        if host.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(format!(
                "`{s}`: zoned IPv6 addresses (`%{zone}`) are not supported: give the address without the zone"
            ));
        }
        return Err(format!("`{s}` is not a valid IP address"));
    }
    if let Some((net, bits)) = s.split_once('/') {
        if net.parse::<IpAddr>().is_ok() {
            return Err(format!("`{s}` is a CIDR (`/{bits}`), not an address: give a single IP address"));
        }
    }
    let dotted = s.contains('.') && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if s.contains(':') || dotted {
        return Err(format!("`{s}` is not a valid IP address"));
    }
    Ok(None)
}

/// A Calico rule's ports: the destination's `ports` (or every port) of the rule's `protocol`, without
/// `notProtocol` and the destination's `notPorts`. A rule netpol cannot evaluate (source ports, `services`,
/// `http`: see [`CalicoRule`]) matches no traffic.
pub fn compile_calico_ports(ports: &[PolicyPort], c: &CalicoRule) -> CPorts {
    if calico_unevaluable(c) {
        return CPorts::default();
    }
    let mut out = compile_ports(ports);
    let proto = Protocol::from_number;
    if let Some(p) = c.protocol {
        let only = proto(p).map_or_else(PortSet::empty, PortSet::protocol);
        out.numeric = out.numeric.intersect(&only);
        out.named.retain(|(np, _)| Some(*np) == proto(p));
    }
    if let Some(p) = c.not_protocol.and_then(proto) {
        out.numeric = out.numeric.difference(&PortSet::protocol(p));
        out.named.retain(|(np, _)| *np != p);
    }
    // ICMP type and code: the messages of the rule's protocol (ICMP or ICMPv6) with them.
    let icmp = |(t, code): (u8, Option<u8>)| {
        let (lo, hi) = match code {
            Some(c) => (crate::portset::icmp_port(t, c), crate::portset::icmp_port(t, c)),
            None => crate::portset::icmp_type_range(t),
        };
        let mut s = PortSet::empty();
        for p in [Protocol::Icmp, Protocol::Icmpv6] {
            s.union_with(&PortSet::range(p, lo, hi));
        }
        s
    };
    if let Some(m) = c.icmp {
        out.numeric = out.numeric.intersect(&icmp(m));
    }
    if let Some(m) = c.not_icmp {
        out.numeric = out.numeric.difference(&icmp(m));
    }
    if !c.not_ports.is_empty() {
        let not = compile_ports(&c.not_ports);
        out.numeric = out.numeric.difference(&not.numeric);
        out.not = Some(Box::new(NotPorts { numeric: not.numeric, named: not.named, named_ids: Vec::new() }));
    }
    out
}

/// Whether a Calico rule has a criterion netpol cannot evaluate (it then matches no traffic).
pub fn calico_unevaluable(c: &CalicoRule) -> bool {
    c.unsupported.is_some() || !c.src_ports.is_empty() || !c.not_src_ports.is_empty()
}

pub fn compile_ports(ports: &[PolicyPort]) -> CPorts {
    if ports.is_empty() {
        return CPorts { numeric: PortSet::all(), ..CPorts::default() };
    }
    let mut c = CPorts::default();
    for p in ports {
        match &p.port {
            PortMatch::Any => c.numeric.union_with(&PortSet::protocol(p.protocol)),
            PortMatch::Range(lo, hi) => c.numeric.union_with(&PortSet::range(p.protocol, *lo, *hi)),
            PortMatch::Named(n) => c.named.push((p.protocol, n.clone())),
        }
    }
    c.named.sort();
    c.named.dedup();
    c
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn compiling_on_two_cores_gives_the_engine_of_one() {
        let yaml = netpol_synth::generate_yaml(&netpol_synth::Params::preset("1k").unwrap());
        let mut loader = crate::load::Loader::new();
        loader.add_bytes("synth-1k.yaml", yaml.as_bytes());
        let cluster = loader.finish().cluster;
        let one = Engine::compile(cluster.clone(), None, false);
        // And when the system gives no thread: the same engine, on one.
        crate::par::NO_THREADS.with(|n| n.set(true));
        let alone = Engine::compile(cluster.clone(), None, true);
        crate::par::NO_THREADS.with(|n| n.set(false));
        let two = Engine::compile(cluster, None, true);
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let state = |e: &Engine| {
            [
                format!("{:?}", e.identities),
                format!("{:?}", e.pod_identity),
                format!("{:?}", e.label_sets),
                format!("{:?}", e.rules),
                format!("{:?}", e.policy_rules),
                format!("{:?}", e.sel_peers),
                format!("{:?}", e.sel_refs),
                format!("{:?}", e.ip_classes),
                format!("{:?}", sorted(e.ip_index.iter().map(|kv| format!("{kv:?}")).collect())),
                format!("{:?}", sorted(e.ip_dups.iter().map(|kv| format!("{kv:?}")).collect())),
                format!("{:?}", sorted(e.sa_pods.iter().map(|kv| format!("{kv:?}")).collect())),
                format!("{:?}", sorted(e.port_names.iter().map(|kv| format!("{kv:?}")).collect())),
                format!("{:?}", sorted(e.pod_names.by_hash.iter().map(|kv| format!("{kv:?}")).collect())),
            ]
        };
        assert!(one.identities.len() > 100 && one.rules.len() > 100, "a cluster worth the comparison");
        for other in [&two, &alone] {
            for (a, b) in state(&one).iter().zip(state(other).iter()) {
                assert!(a == b, "the engines differ:\n{}\n{}", &a[..a.len().min(300)], &b[..b.len().min(300)]);
            }
        }
    }

    fn ids(s: &IdSet) -> Vec<u32> {
        s.iter().map(|i| i.index() as u32).collect()
    }

    #[test]
    fn blocks_containing_an_address_are_found_by_prefix_as_by_scanning() {
        let block = |cidr: &str, except: &[&str]| IpBlock {
            cidr: cidr.parse().unwrap(),
            except: except.iter().map(|e| e.parse().unwrap()).collect(),
        };
        let blocks = vec![
            block("0.0.0.0/0", &["10.0.0.0/8"]),
            block("10.0.0.0/8", &["10.1.0.0/16"]),
            block("10.1.2.0/24", &[]),
            block("10.1.2.7/32", &[]),
            block("10.1.2.0/24", &["10.1.2.128/25"]),
            block("192.168.0.0/16", &[]),
            block("::/0", &[]),
            block("fd00::/8", &["fd00:1::/32"]),
            block("fd00:1::5/128", &[]),
            block("::ffff:0:0/96", &[]),
        ];
        let ranges: Vec<BlockRanges> = blocks.iter().map(BlockRanges::new).collect();
        let prefixes = block_prefixes(&blocks);
        for ip in [
            "10.1.2.7",
            "10.1.2.200",
            "10.1.3.1",
            "10.2.0.1",
            "11.0.0.1",
            "192.168.4.4",
            "0.0.0.0",
            "255.255.255.255",
            "fd00:1::5",
            "fd00:2::1",
            "fe80::1",
            "::",
            "::ffff:10.1.2.7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let ip = ip.to_canonical();
            let scan: Vec<BlockId> = (0..blocks.len()).filter(|&i| ranges[i].contains(ip)).map(BlockId::new).collect();
            assert_eq!(blocks_containing(&prefixes, &ranges, ip), scan, "{ip}");
        }
    }

    #[test]
    fn sparse_set_stays_sorted_and_becomes_dense_when_full() {
        let mut s = IdSet::from_sorted(vec![IdentityId::new(3), IdentityId::new(70)], 100);
        assert!(matches!(s, IdSet::Sparse(_)));
        assert!(s.insert(IdentityId::new(10), 100));
        assert!(!s.insert(IdentityId::new(10), 100));
        assert_eq!(ids(&s), vec![3, 10, 70]);
        assert!(s.remove(IdentityId::new(3)));
        assert!(!s.remove(IdentityId::new(3)));
        assert_eq!(ids(&s), vec![10, 70]);
        // 3 ids out of 64: 3 * 32 > 64, dense as `from_sorted` would build it.
        assert!(s.insert(IdentityId::new(1), 64));
        assert!(matches!(s, IdSet::Dense(_, 3)));
        assert_eq!(ids(&s), vec![1, 10, 70]);
        assert!(s.contains(IdentityId::new(70)) && !s.contains(IdentityId::new(3)));
    }

    #[test]
    fn sparse_removal_answers_at_the_ends_as_a_search_would() {
        let id = IdentityId::new;
        let mut s = IdSet::from_sorted(vec![id(20), id(30), id(40), id(50)], 10_000);
        // Outside the range, between members, the last member, a middle member, then nothing left.
        assert!(!s.remove(id(10)) && !s.remove(id(60)) && !s.remove(id(35)));
        assert!(s.remove(id(50)) && !s.remove(id(50)));
        assert_eq!(ids(&s), vec![20, 30, 40]);
        assert!(s.remove(id(30)) && s.remove(id(20)) && s.remove(id(40)));
        assert!(s.is_empty() && !s.remove(id(40)) && !s.remove(id(0)));
        assert!(s.insert(id(7), 10_000) && s.remove(id(7)) && s.is_empty());
    }

    #[test]
    fn user_addresses_are_canonical_and_near_misses_are_errors() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(parse_address("::ffff:10.244.1.11"), Ok(ip("10.244.1.11")));
        assert_eq!(parse_address("10.244.1.11"), Ok(ip("10.244.1.11")));
        assert_eq!(parse_address("fd00::1"), Ok(ip("fd00::1")));
        // IPv4-compatible (deprecated) addresses are not mapped ones: Go's To4 keeps them IPv6 too.
        assert_eq!(parse_address("::10.0.0.1"), Ok(ip("::a00:1")));
        let zoned = parse_address("fe80::1%eth0").unwrap_err();
        assert_eq!(
            zoned,
            "`fe80::1%eth0`: zoned IPv6 addresses (`%eth0`) are not supported: give the address without the zone"
        );
        for s in ["10.0.0.256", "10.0.0", "10.0.0.1:80", "[fd00::1]", "fd00::g", "web%1"] {
            assert!(parse_address(s).is_err_and(|e| e.contains("is not a valid IP address")), "{s}");
        }
        assert!(parse_address("10.0.0.0/8").is_err_and(|e| e.contains("is a CIDR")));
        for s in ["web", "a/web", "default/web-1.x", "123", "a/10"] {
            assert_eq!(parse_address(s), Ok(None), "{s}");
        }
    }

    #[test]
    fn dense_set_grows_for_new_ids_and_counts() {
        let mut s = IdSet::from_sorted(vec![IdentityId::new(0), IdentityId::new(1)], 2);
        assert!(matches!(s, IdSet::Dense(_, 2)));
        assert!(s.insert(IdentityId::new(200), 201));
        assert!(s.contains(IdentityId::new(200)));
        assert_eq!((s.len(), ids(&s)), (3, vec![0, 1, 200]));
        assert!(s.remove(IdentityId::new(0)) && !s.remove(IdentityId::new(0)));
        assert_eq!((s.len(), ids(&s)), (2, vec![1, 200]));
    }
}
