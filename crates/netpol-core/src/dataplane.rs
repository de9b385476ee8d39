//! What a data plane has to enforce, in terms any data plane can take: the addresses of the pods policies
//! govern, each with its profile per direction; per profile the evaluator's steps ([`Engine::profile_steps`]),
//! each rule with its action, its peers as address sets and its ports; and the address sets. Nothing here is
//! specific to nftables: `netpol-nft` renders this table.
//!
//! Built per profile (the policies isolating a pod, plus for ingress the pod's container ports, which resolve
//! named ports), so the table grows with the policies, not with the pods times the policies.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rustc_hash::FxHashMap;

use crate::compile::{CPeer, CRule, Engine, IdentityId, NsScope, RuleId};
use crate::eval::{Action, ProfileStep, TierEnd};
use crate::ipranges::addr;
use crate::model::{ContainerPort, Direction, PolicyId};
use crate::portset::{PortSet, Protocol};

crate::typed_id!(
    /// A profile of a [`Table`]: its index in `profiles`.
    ProfileId
);
crate::typed_id!(
    /// An address set of a [`Table`]: its index in `sets`.
    SetId
);

/// The whole table.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Addresses of the pods policies govern (hostNetwork pods are left out), in pod order per identity, with
    /// the profile checking them in each direction (absent: not isolated in that direction).
    pub addresses: Vec<(IpAddr, Direction, ProfileId)>,
    pub profiles: Vec<Profile>,
    pub sets: Vec<AddressSet>,
    /// Whether any pod policies can govern has an IPv6 address, or any ipBlock is IPv6.
    pub has_ipv6: bool,
}

/// A subject's checks in one direction.
#[derive(Clone, Debug)]
pub struct Profile {
    pub dir: Direction,
    /// The policies selecting the subject (sorted), and their `namespace/name`.
    pub policies: Vec<PolicyId>,
    pub policy_refs: Vec<String>,
    /// The subject's container ports (ingress: named ports are resolved against them; empty for egress).
    pub ports: Vec<ContainerPort>,
    /// Calico rules of these policies that do not apply to the addresses of this profile (their own side does not
    /// match them), as `policy/direction/index`: left out of `steps`.
    pub masked: Vec<String>,
    pub steps: Vec<TableStep>,
}

#[derive(Clone, Debug)]
pub enum TableStep {
    Rule(TableRule),
    /// The end of a tier: with `deny`, what no rule decided is denied here.
    TierEnd {
        deny: bool,
    },
}

/// One rule of a profile.
#[derive(Clone, Debug)]
pub struct TableRule {
    pub rule: RuleId,
    /// Where the rule comes from: its policy's `namespace/name`, direction and index.
    pub policy_ref: String,
    pub dir: Direction,
    pub index: u32,
    pub action: Action,
    /// The peers, as (index of the first source peer, address set), by source index. Empty: every peer.
    pub peers: Vec<(usize, SetId)>,
    /// `None`: every port. Otherwise the numeric ports (for ingress with the named ports resolved against the
    /// subject; for egress named ports are in `named`).
    pub ports: Option<PortSet>,
    /// Egress rules with named ports: (destination address, protocol, port) for every destination pod the peers
    /// select, resolved against that pod (possibly none). `None` for ingress rules and rules without named ports.
    pub named: Option<Vec<(IpAddr, Protocol, u16)>>,
}

/// Addresses a peer matches. `key` describes the content (the same peer gives the same key in any engine).
#[derive(Clone, Debug)]
pub enum AddressSet {
    /// The addresses of the pods a selector peer selects; key `own:<namespace> pods:<selector>` or
    /// `ns:<selector> pods:<selector>` (`*`: every pod).
    Pods { key: String, addresses: Vec<IpAddr> },
    /// An ipBlock, as disjoint inclusive address ranges (its exceptions removed); key: the block as written.
    Block { key: String, v6: bool, ranges: Vec<(IpAddr, IpAddr)> },
    /// A Calico entity rule: every address it matches (pods' by their labels and address, others by network
    /// sets and nets), as disjoint inclusive ranges of both families, sorted; key: the criteria as written.
    Ranges { key: String, ranges: Vec<(IpAddr, IpAddr)> },
}

impl Engine {
    /// The data-plane table of this engine.
    pub fn dataplane(&self) -> Table {
        Builder::new(self).build()
    }
}

type ProfileKey = (Direction, Vec<PolicyId>, Vec<ContainerPort>, Vec<RuleId>);

struct Builder<'e> {
    e: &'e Engine,
    t: Table,
    /// Addresses of each identity's pods (none for hostNetwork identities).
    ident_ips: Vec<Vec<IpAddr>>,
    sets: FxHashMap<CPeer, SetId>,
    /// Profiles by direction, policies, container ports and the Calico rules that do not apply to the address
    /// (their own-side criteria fail there).
    profiles: BTreeMap<ProfileKey, ProfileId>,
    /// The address space cut at every block boundary (for Calico entity rules), made on first use.
    segments: Option<crate::outside::Segments>,
    named: BTreeMap<RuleId, Vec<(IpAddr, Protocol, u16)>>,
}

impl<'e> Builder<'e> {
    fn new(e: &'e Engine) -> Self {
        let mut ident_ips: Vec<Vec<IpAddr>> = vec![Vec::new(); e.identities.len()];
        for (pid, pod) in e.cluster.pods.iter().enumerate() {
            if !pod.host_network {
                ident_ips[e.pod_identity[pid].index()].extend(pod.ips.iter().copied());
            }
        }
        Builder {
            e,
            t: Table::default(),
            ident_ips,
            sets: FxHashMap::default(),
            profiles: BTreeMap::new(),
            segments: None,
            named: BTreeMap::new(),
        }
    }

    fn build(mut self) -> Table {
        self.t.has_ipv6 =
            self.ident_ips.iter().flatten().any(IpAddr::is_ipv6) || self.e.block_ranges.iter().any(|b| b.v6);
        for (i, ident) in self.e.identities.iter().enumerate() {
            let iid = IdentityId::new(i);
            if ident.host_network {
                continue;
            }
            for dir in [Direction::Ingress, Direction::Egress] {
                if !ident.governed(dir) {
                    continue;
                }
                let ports = if dir == Direction::Ingress { ident.ports.clone() } else { Vec::new() };
                for &pod in &ident.pods {
                    for &ip in &self.e.cluster.pod(pod).ips {
                        let masked = self.e.masked_rules(iid, dir, &self.e.ip_info(iid, ip));
                        let profile = self.profile(dir, ident.policies(dir), ports.clone(), masked);
                        self.t.addresses.push((ip, dir, profile));
                    }
                }
            }
        }
        self.t
    }

    fn profile(
        &mut self,
        dir: Direction,
        policies: &[PolicyId],
        ports: Vec<ContainerPort>,
        masked: Vec<RuleId>,
    ) -> ProfileId {
        let key = (dir, policies.to_vec(), ports, masked);
        if let Some(&p) = self.profiles.get(&key) {
            return p;
        }
        let mut steps = Vec::new();
        for step in self.e.profile_steps(policies, dir) {
            match step {
                ProfileStep::TierEnd { selected, end } => {
                    steps.push(TableStep::TierEnd { deny: selected && end == TierEnd::Deny });
                }
                ProfileStep::Rule(r) if key.3.binary_search(&r).is_ok() => {}
                ProfileStep::Rule(r) => {
                    let rule = &self.e.rules[r.index()];
                    let numeric_all = rule.ports.numeric.is_all() && rule.ports.named.is_empty();
                    let ports = match dir {
                        _ if numeric_all => None,
                        Direction::Ingress => Some(rule.ports.resolve(Some(&key.2))),
                        Direction::Egress => Some(rule.ports.numeric.clone()),
                    };
                    let named = (dir == Direction::Egress && !rule.ports.named.is_empty()).then(|| self.named(r, rule));
                    let mut peers: Vec<(usize, SetId)> =
                        rule.peers.iter().zip(&rule.peer_src).map(|(&p, &src)| (src as usize, self.set(p))).collect();
                    peers.sort_unstable();
                    steps.push(TableStep::Rule(TableRule {
                        rule: r,
                        policy_ref: self.e.cluster.policy_ref(rule.policy),
                        dir,
                        index: rule.index,
                        action: rule.action,
                        peers,
                        ports,
                        named,
                    }));
                }
            }
        }
        let id = ProfileId::new(self.t.profiles.len());
        let policy_refs = key.1.iter().map(|&p| self.e.cluster.policy_ref(p)).collect();
        let masked = key
            .3
            .iter()
            .map(|&r| {
                let rule = &self.e.rules[r.index()];
                format!("{}/{}/{}", self.e.cluster.policy_ref(rule.policy), rule.dir, rule.index)
            })
            .collect();
        let ports = key.2.clone();
        self.t.profiles.push(Profile { dir, policies: key.1.clone(), policy_refs, ports, masked, steps });
        self.profiles.insert(key, id);
        id
    }

    fn set(&mut self, p: CPeer) -> SetId {
        if let Some(&s) = self.sets.get(&p) {
            return s;
        }
        let set = match p {
            CPeer::Sel(s) => {
                let (key, ids) = &self.e.sel_peers[s.index()];
                let scope = match &key.namespaces {
                    NsScope::Own(ns) => format!("own:{}", self.e.cluster.ns_name(*ns)),
                    NsScope::Selector(s) => format!("ns:{s}"),
                };
                let pods = key.pods.as_ref().map_or("*".to_string(), |s| s.to_string());
                AddressSet::Pods {
                    key: format!("{scope} pods:{pods}"),
                    addresses: ids.iter().flat_map(|i: IdentityId| self.ident_ips[i.index()].iter().copied()).collect(),
                }
            }
            CPeer::Block(b) => {
                let r = &self.e.block_ranges[b.index()];
                AddressSet::Block {
                    key: self.e.blocks[b.index()].to_string(),
                    v6: r.v6,
                    ranges: r.ranges.iter().map(|&(lo, hi)| (addr(r.v6, lo), addr(r.v6, hi))).collect(),
                }
            }
            // The kernel sees no DNS names: a domainNames peer matches no address here (see the README).
            CPeer::Domains(d) => AddressSet::Pods {
                key: format!("domains:{}", self.e.domains[d.index()].join(",")),
                addresses: Vec::new(),
            },
            CPeer::Nothing => AddressSet::Pods { key: "nothing".to_string(), addresses: Vec::new() },
            CPeer::Calico(c) => AddressSet::Ranges {
                key: format!("calico:{}", self.e.calico_peer_of(c).peer),
                ranges: self.calico_ranges(c),
            },
        };
        let id = SetId::new(self.t.sets.len());
        self.t.sets.push(set);
        self.sets.insert(p, id);
        id
    }

    /// Every address a Calico entity rule matches: the segments (cut at every block) whose addresses no pod has
    /// match by the criteria alone; each pod address (not hostNetwork: those are their node's) by the pod's.
    fn calico_ranges(&mut self, c: crate::calico_peer::CalicoId) -> Vec<(IpAddr, IpAddr)> {
        let e = self.e;
        let segs = self.segments.get_or_insert_with(|| crate::outside::Segments::new(&[e]));
        let peer = e.calico_peer_of(c);
        // Per family, (first, last) address numbers; then pod addresses added or taken out one by one.
        let mut set: [std::collections::BTreeSet<(u128, u128)>; 2] = Default::default();
        for &(first, last) in &segs.ranges {
            if peer.matches_parts(crate::calico_peer::Lookup::Exact, None, Some(first)) {
                let ((v6, lo), (_, hi)) = (crate::ipranges::num(first), crate::ipranges::num(last));
                set[usize::from(v6)].insert((lo, hi));
            }
        }
        let mut pods: Vec<(IpAddr, bool)> = Vec::new();
        for (i, ips) in self.ident_ips.iter().enumerate() {
            for &ip in ips {
                let ip = ip.to_canonical();
                pods.push((ip, e.calico_matches(c, &e.ip_info(IdentityId::new(i), ip))));
            }
        }
        for (ip, hit) in pods {
            let (v6, n) = crate::ipranges::num(ip);
            let s = &mut set[usize::from(v6)];
            let containing = s.range(..=(n, u128::MAX)).next_back().copied().filter(|&(lo, hi)| lo <= n && n <= hi);
            match (hit, containing) {
                (true, None) => {
                    s.insert((n, n));
                }
                (false, Some((lo, hi))) => {
                    s.remove(&(lo, hi));
                    if lo < n {
                        s.insert((lo, n - 1));
                    }
                    if n < hi {
                        s.insert((n + 1, hi));
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        for (v6, s) in [(false, &set[0]), (true, &set[1])] {
            let mut merged: Vec<(u128, u128)> = Vec::new();
            for &(lo, hi) in s {
                match merged.last_mut() {
                    Some(last) if last.1.checked_add(1) == Some(lo) => last.1 = hi,
                    _ => merged.push((lo, hi)),
                }
            }
            out.extend(merged.into_iter().map(|(lo, hi)| (addr(v6, lo), addr(v6, hi))));
        }
        out
    }

    /// Destinations of an egress rule's named ports: the pods its peers select (by selector, or by an address in
    /// an ipBlock; every pod without peers, hostNetwork pods included), each port resolved against the pod.
    fn named(&mut self, r: RuleId, rule: &CRule) -> Vec<(IpAddr, Protocol, u16)> {
        if let Some(n) = self.named.get(&r) {
            return n.clone();
        }
        let mut out = Vec::new();
        for (i, ident) in self.e.identities.iter().enumerate() {
            // Every pod's addresses, hostNetwork pods' (their node's) included: a named port resolves against the
            // destination pod, whatever its network (selector peers never select hostNetwork pods; ipBlock peers
            // and rules without peers reach them).
            let ips = ident.pods.iter().flat_map(|&p| self.e.cluster.pod(p).ips.iter().copied());
            for ip in ips {
                let matches = rule.peers.is_empty()
                    || rule.peers.iter().any(|p| match *p {
                        CPeer::Sel(s) => self.e.sel_peers[s.index()].1.contains(IdentityId::new(i)),
                        CPeer::Block(b) => self.e.block_contains(b, ip),
                        CPeer::Domains(_) | CPeer::Nothing => false,
                        CPeer::Calico(c) => self.e.calico_matches(c, &self.e.ip_info(IdentityId::new(i), ip)),
                    });
                if !matches {
                    continue;
                }
                for (proto, name) in &rule.ports.named {
                    if let Some(port) = ident.named_port(name, *proto) {
                        out.push((ip, *proto, port));
                    }
                }
            }
        }
        self.named.insert(r, out.clone());
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// A named port in an egress rule resolves against a hostNetwork destination too (the evaluator allows such
    /// a flow): its address (the node's) with the port it names is in the rule's destinations. The data plane
    /// once left hostNetwork pods out and dropped what the engine allowed.
    #[test]
    fn egress_named_ports_reach_host_network_pods() {
        let yaml = "
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.60.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: sys}
spec: {nodeName: n1, hostNetwork: true, containers: [{name: c, ports: [{name: web, containerPort: 34345}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: web, containerPort: 8080}]}]}
status: {podIP: 10.61.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, labels: {app: client}}
status: {podIP: 10.61.0.1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.60.0.0/16}}]
    ports: [{port: web}]
  - ports: [{port: web}]
";
        let e = Engine::new(crate::load::load_str("t", yaml).cluster);
        let client = crate::compile::Endpoint::Pod { pod: crate::model::PodId::new(2), ip: None };
        let agent = crate::compile::Endpoint::Pod { pod: crate::model::PodId::new(0), ip: None };
        assert_eq!(e.cluster().pod_ref(crate::model::PodId::new(0)), "sys/agent");
        assert!(e.allowed(&client, &agent, Protocol::Tcp, 34345), "the evaluator allows it");
        let t = e.dataplane();
        let named: Vec<&Vec<(IpAddr, Protocol, u16)>> = t
            .profiles
            .iter()
            .flat_map(|p| &p.steps)
            .filter_map(|s| match s {
                TableStep::Rule(r) => r.named.as_ref(),
                TableStep::TierEnd { .. } => None,
            })
            .collect();
        assert_eq!(named.len(), 2, "{named:?}");
        let node: IpAddr = "10.60.0.1".parse().unwrap();
        let web: IpAddr = "10.61.0.2".parse().unwrap();
        // The ipBlock rule reaches only the hostNetwork pod; the rule without peers reaches both pods.
        assert_eq!(*named[0], vec![(node, Protocol::Tcp, 34345)]);
        let mut every = named[1].clone();
        every.sort();
        assert_eq!(every, vec![(node, Protocol::Tcp, 34345), (web, Protocol::Tcp, 8080)]);
    }
}
