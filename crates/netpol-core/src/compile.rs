//! Compile: a [`Cluster`] → an [`Engine`] that answers flows without re-matching selectors.
//!
//! Owns identities (pods grouped by namespace, labels, container ports, hostNetwork and the ipBlock class of
//! their primary IP), the selector cache (each distinct peer selector → the bitset of identities it selects),
//! the policies selecting each identity per direction, and rules compiled to peer ids and port sets.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rustc_hash::FxHashMap;

use crate::model::*;
use crate::portset::{PortSet, Protocol};
use crate::selector::{Labels, Selector};

pub type IdentityId = u32;
pub type SelPeerId = u32;
pub type BlockId = u32;
pub type RuleId = u32;
pub type IpClassId = u32;

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
}

/// Pods that the engine cannot tell apart: same namespace, labels, container ports, hostNetwork, and the same
/// set of ipBlocks containing their primary IP.
#[derive(Clone, Debug)]
pub struct Identity {
    pub ns: NsId,
    pub labels: u32,
    pub host_network: bool,
    pub ip_class: IpClassId,
    /// Container ports (sorted), shared by every pod of the identity.
    pub ports: Vec<ContainerPort>,
    pub pods: Vec<PodId>,
    /// Policies selecting these pods that affect ingress / egress (sorted). Empty = not isolated.
    pub ingress_policies: Vec<PolicyId>,
    pub egress_policies: Vec<PolicyId>,
}

impl Identity {
    pub fn named_port(&self, name: &str, proto: Protocol) -> Option<u16> {
        self.ports.iter().find(|p| p.protocol == proto && p.name.as_deref() == Some(name)).map(|p| p.port)
    }
    pub fn isolated(&self, dir: Direction) -> bool {
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
    Sel(SelPeerId),
    Block(BlockId),
}

/// Compiled ports of a rule: numeric part plus named ports (resolved per destination).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CPorts {
    pub numeric: PortSet,
    pub named: Vec<(Protocol, String)>,
}

impl CPorts {
    /// Ports this rule allows towards a destination with the given container ports (`None`: not a pod).
    pub fn resolve(&self, dst_ports: Option<&[ContainerPort]>) -> PortSet {
        let mut s = self.numeric.clone();
        if let Some(cps) = dst_ports {
            for (proto, name) in &self.named {
                if let Some(cp) = cps.iter().find(|c| c.protocol == *proto && c.name.as_deref() == Some(name)) {
                    s.union_with(&PortSet::single(*proto, cp.port));
                }
            }
        }
        s
    }

    pub fn matches(&self, proto: Protocol, port: u16, dst_ports: Option<&[ContainerPort]>) -> bool {
        if self.numeric.contains(proto, port) {
            return true;
        }
        match dst_ports {
            None => false,
            Some(cps) => self.named.iter().any(|(p, name)| {
                *p == proto && cps.iter().any(|c| c.protocol == proto && c.port == port && c.name.as_deref() == Some(name))
            }),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CRule {
    pub policy: PolicyId,
    pub dir: Direction,
    pub index: u32,
    /// Empty = every peer.
    pub peers: Vec<CPeer>,
    pub ports: CPorts,
}

/// An endpoint of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A pod, optionally with the IP the flow uses (`None` = its primary IP).
    Pod { pod: PodId, ip: Option<IpAddr> },
    /// An address that belongs to no pod: outside the cluster.
    External(IpAddr),
}

/// The compiled engine. Owns the cluster it was built from.
pub struct Engine {
    pub cluster: Cluster,
    pub label_sets: Vec<Labels>,
    pub identities: Vec<Identity>,
    pub pod_identity: Vec<IdentityId>,
    /// Distinct selector peers: (namespace selector or the policy's namespace, pod selector).
    pub sel_peers: Vec<(SelPeerKey, BitSet)>,
    pub blocks: Vec<IpBlock>,
    /// Sorted block ids containing an address, per ip class.
    pub ip_classes: Vec<Vec<BlockId>>,
    pub rules: Vec<CRule>,
    /// Rule ids of each policy, per direction: `policy_rules[p] = (ingress, egress)`.
    pub policy_rules: Vec<(Vec<RuleId>, Vec<RuleId>)>,
    pub ip_index: FxHashMap<IpAddr, PodId>,
    ip_class_index: FxHashMap<Vec<BlockId>, IpClassId>,
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

impl Engine {
    pub fn new(cluster: Cluster) -> Engine {
        // Distinct ipBlocks.
        let mut block_index: FxHashMap<IpBlock, BlockId> = FxHashMap::default();
        let mut blocks: Vec<IpBlock> = Vec::new();
        for pol in &cluster.policies {
            for r in pol.ingress.iter().chain(&pol.egress) {
                for p in &r.peers {
                    if let Peer::IpBlock(b) = p {
                        block_index.entry(b.clone()).or_insert_with(|| {
                            blocks.push(b.clone());
                            (blocks.len() - 1) as BlockId
                        });
                    }
                }
            }
        }

        let mut eng = Engine {
            cluster: Cluster::default(),
            label_sets: Vec::new(),
            identities: Vec::new(),
            pod_identity: Vec::with_capacity(cluster.pods.len()),
            sel_peers: Vec::new(),
            blocks,
            ip_classes: vec![Vec::new()],
            rules: Vec::new(),
            policy_rules: Vec::new(),
            ip_index: FxHashMap::default(),
            ip_class_index: FxHashMap::default(),
        };
        eng.ip_class_index.insert(Vec::new(), 0);

        // Identities.
        let mut label_index: FxHashMap<&Labels, u32> = FxHashMap::default();
        let mut id_index: FxHashMap<(NsId, u32, bool, IpClassId, Vec<ContainerPort>), IdentityId> = FxHashMap::default();
        for (pid, pod) in cluster.pods.iter().enumerate() {
            let ls = *label_index.entry(&pod.labels).or_insert_with(|| {
                eng.label_sets.push(pod.labels.clone());
                (eng.label_sets.len() - 1) as u32
            });
            let ip_class = match pod.primary_ip() {
                Some(ip) => eng.ip_class_of(ip),
                None => 0,
            };
            let mut ports = pod.ports.clone();
            ports.sort();
            let key = (pod.ns, ls, pod.host_network, ip_class, ports);
            let next = eng.identities.len() as IdentityId;
            let id = *id_index.entry(key.clone()).or_insert_with(|| {
                eng.identities.push(Identity {
                    ns: key.0,
                    labels: key.1,
                    host_network: key.2,
                    ip_class: key.3,
                    ports: key.4,
                    pods: Vec::new(),
                    ingress_policies: Vec::new(),
                    egress_policies: Vec::new(),
                });
                next
            });
            if let Some(ident) = eng.identities.get_mut(id as usize) {
                ident.pods.push(pid as PodId);
            }
            eng.pod_identity.push(id);
            for ip in &pod.ips {
                eng.ip_index.entry(*ip).or_insert(pid as PodId);
            }
        }

        // Identities per namespace.
        let mut ns_idents: Vec<Vec<IdentityId>> = vec![Vec::new(); cluster.namespaces.len()];
        for (i, ident) in eng.identities.iter().enumerate() {
            if let Some(v) = ns_idents.get_mut(ident.ns as usize) {
                v.push(i as IdentityId);
            }
        }

        // Policies selecting each identity. hostNetwork pods are not subject to policies.
        let mut sel_cache: FxHashMap<(&Selector, u32), bool> = FxHashMap::default();
        for (polid, pol) in cluster.policies.iter().enumerate() {
            for &iid in ns_idents.get(pol.ns as usize).into_iter().flatten() {
                let ident = &eng.identities[iid as usize];
                if ident.host_network {
                    continue;
                }
                let ls = ident.labels;
                let m = *sel_cache
                    .entry((&pol.pod_selector, ls))
                    .or_insert_with(|| pol.pod_selector.matches(&eng.label_sets[ls as usize]));
                if m {
                    let ident = &mut eng.identities[iid as usize];
                    if pol.affects_ingress {
                        ident.ingress_policies.push(polid as PolicyId);
                    }
                    if pol.affects_egress {
                        ident.egress_policies.push(polid as PolicyId);
                    }
                }
            }
        }

        // Rules and selector peers.
        let mut peer_index: FxHashMap<SelPeerKey, SelPeerId> = FxHashMap::default();
        let mut ns_sel_cache: FxHashMap<Selector, Vec<NsId>> = FxHashMap::default();
        for (polid, pol) in cluster.policies.iter().enumerate() {
            let mut ids = (Vec::new(), Vec::new());
            for dir in [Direction::Ingress, Direction::Egress] {
                for (ri, r) in pol.rules(dir).iter().enumerate() {
                    let mut peers = Vec::with_capacity(r.peers.len());
                    for p in &r.peers {
                        match p {
                            Peer::IpBlock(b) => peers.push(CPeer::Block(block_index[b])),
                            Peer::Selectors { namespaces, pods } => {
                                let key = SelPeerKey {
                                    namespaces: match namespaces {
                                        None => NsScope::Own(pol.ns),
                                        Some(s) => NsScope::Selector(s.clone()),
                                    },
                                    pods: pods.clone(),
                                };
                                let id = match peer_index.get(&key) {
                                    Some(&id) => id,
                                    None => {
                                        let set = eng.select_peer(&cluster, &key, &ns_idents, &mut ns_sel_cache);
                                        let id = eng.sel_peers.len() as SelPeerId;
                                        eng.sel_peers.push((key.clone(), set));
                                        peer_index.insert(key, id);
                                        id
                                    }
                                };
                                peers.push(CPeer::Sel(id));
                            }
                        }
                    }
                    peers.sort_unstable_by_key(|p| match p {
                        CPeer::Sel(i) => (0, *i),
                        CPeer::Block(i) => (1, *i),
                    });
                    peers.dedup();
                    let ports = compile_ports(&r.ports);
                    let rid = eng.rules.len() as RuleId;
                    eng.rules.push(CRule { policy: polid as PolicyId, dir, index: ri as u32, peers, ports });
                    match dir {
                        Direction::Ingress => ids.0.push(rid),
                        Direction::Egress => ids.1.push(rid),
                    }
                }
            }
            eng.policy_rules.push(ids);
        }
        eng.cluster = cluster;
        eng
    }

    fn select_peer(
        &self,
        cluster: &Cluster,
        key: &SelPeerKey,
        ns_idents: &[Vec<IdentityId>],
        ns_sel_cache: &mut FxHashMap<Selector, Vec<NsId>>,
    ) -> BitSet {
        let mut set = BitSet::new(self.identities.len());
        let namespaces: Vec<NsId> = match &key.namespaces {
            NsScope::Own(ns) => vec![*ns],
            NsScope::Selector(s) => ns_sel_cache
                .entry(s.clone())
                .or_insert_with(|| {
                    cluster
                        .namespaces
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| s.matches(&n.labels))
                        .map(|(i, _)| i as NsId)
                        .collect()
                })
                .clone(),
        };
        for ns in namespaces {
            for &iid in ns_idents.get(ns as usize).into_iter().flatten() {
                let ident = &self.identities[iid as usize];
                // Pod and namespace selectors never match hostNetwork pods (their traffic is the node's).
                if ident.host_network {
                    continue;
                }
                if key.pods.as_ref().is_none_or(|s| s.matches(&self.label_sets[ident.labels as usize])) {
                    set.insert(iid as usize);
                }
            }
        }
        set
    }

    /// The ip class (set of ipBlocks containing it) of an address, interning a new class if needed.
    fn ip_class_of(&mut self, ip: IpAddr) -> IpClassId {
        let sig: Vec<BlockId> =
            self.blocks.iter().enumerate().filter(|(_, b)| b.contains(ip)).map(|(i, _)| i as BlockId).collect();
        if let Some(&c) = self.ip_class_index.get(&sig) {
            return c;
        }
        let c = self.ip_classes.len() as IpClassId;
        self.ip_classes.push(sig.clone());
        self.ip_class_index.insert(sig, c);
        c
    }

    pub fn identity_of(&self, pod: PodId) -> &Identity {
        &self.identities[self.pod_identity[pod as usize] as usize]
    }

    /// Resolves an IP to an endpoint: a pod's IP is that pod; any other address is external.
    pub fn endpoint_for_ip(&self, ip: IpAddr) -> Endpoint {
        match self.ip_index.get(&ip) {
            Some(&pod) => Endpoint::Pod { pod, ip: Some(ip) },
            None => Endpoint::External(ip),
        }
    }

    /// The IP a flow uses for an endpoint.
    pub fn endpoint_ip(&self, ep: &Endpoint) -> Option<IpAddr> {
        match *ep {
            Endpoint::Pod { pod, ip } => ip.or_else(|| self.cluster.pod(pod).primary_ip()),
            Endpoint::External(ip) => Some(ip),
        }
    }

    fn peer_matches(&self, peer: CPeer, ep: &Endpoint) -> bool {
        match peer {
            CPeer::Sel(s) => match ep {
                Endpoint::Pod { pod, .. } => self.sel_peers[s as usize].1.contains(self.pod_identity[*pod as usize] as usize),
                Endpoint::External(_) => false,
            },
            CPeer::Block(b) => match (ep, self.endpoint_ip(ep)) {
                // Fast path: the pod's primary IP has a precomputed class.
                (Endpoint::Pod { pod, ip: None }, _) => {
                    self.ip_classes[self.identity_of(*pod).ip_class as usize].binary_search(&b).is_ok()
                }
                (_, Some(ip)) => self.blocks[b as usize].contains(ip),
                (_, None) => false,
            },
        }
    }

    pub fn rule_matches(&self, rule: &CRule, peer: &Endpoint, proto: Protocol, port: u16, dst_ports: Option<&[ContainerPort]>) -> bool {
        rule.ports.matches(proto, port, dst_ports)
            && (rule.peers.is_empty() || rule.peers.iter().any(|&p| self.peer_matches(p, peer)))
    }

    /// Whether the side `subject` (a pod) allows the flow in direction `dir`. `peer` is the other end;
    /// `dst_ports` are the destination's container ports (for named ports).
    pub fn side_allows(
        &self,
        subject: PodId,
        dir: Direction,
        peer: &Endpoint,
        proto: Protocol,
        port: u16,
        dst_ports: Option<&[ContainerPort]>,
    ) -> bool {
        let ident = self.identity_of(subject);
        let pols = ident.policies(dir);
        if pols.is_empty() {
            return true;
        }
        pols.iter().any(|&pol| {
            let (ing, eg) = &self.policy_rules[pol as usize];
            let rules = if dir == Direction::Ingress { ing } else { eg };
            rules.iter().any(|&r| self.rule_matches(&self.rules[r as usize], peer, proto, port, dst_ports))
        })
    }

    /// The fast verdict of one flow.
    pub fn allowed(&self, src: &Endpoint, dst: &Endpoint, proto: Protocol, port: u16) -> bool {
        if let (Endpoint::Pod { pod: a, .. }, Endpoint::Pod { pod: b, .. }) = (src, dst) {
            if a == b {
                return true;
            }
        }
        let dst_ports = match dst {
            Endpoint::Pod { pod, .. } => Some(self.identity_of(*pod).ports.as_slice()),
            Endpoint::External(_) => None,
        };
        let egress_ok = match src {
            Endpoint::Pod { pod, .. } => self.side_allows(*pod, Direction::Egress, dst, proto, port, dst_ports),
            Endpoint::External(_) => true,
        };
        egress_ok
            && match dst {
                Endpoint::Pod { pod, .. } => self.side_allows(*pod, Direction::Ingress, src, proto, port, dst_ports),
                Endpoint::External(_) => true,
            }
    }

    /// Parses `ns/pod`, `pod` (in `default_ns`) or an IP address.
    pub fn parse_endpoint(&self, s: &str, default_ns: &str) -> Result<Endpoint, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(self.endpoint_for_ip(ip));
        }
        let (ns, name) = s.split_once('/').unwrap_or((default_ns, s));
        match self.cluster.find_pod(ns, name) {
            Some(pod) => Ok(Endpoint::Pod { pod, ip: None }),
            None => Err(format!("unknown pod `{ns}/{name}` (and not an IP address)")),
        }
    }

    /// Human name of an endpoint: `ns/pod` or the IP.
    pub fn endpoint_name(&self, ep: &Endpoint) -> String {
        match ep {
            Endpoint::Pod { pod, .. } => self.cluster.pod_ref(*pod),
            Endpoint::External(ip) => ip.to_string(),
        }
    }

    /// Pods of a namespace-wide ordering used by outputs: by namespace name then pod name.
    pub fn sorted_pods(&self) -> Vec<PodId> {
        let mut v: Vec<PodId> = (0..self.cluster.pods.len() as PodId).collect();
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

pub fn compile_ports(ports: &[PolicyPort]) -> CPorts {
    if ports.is_empty() {
        return CPorts { numeric: PortSet::all(), named: Vec::new() };
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
