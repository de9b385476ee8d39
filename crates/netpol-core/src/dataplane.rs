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

use crate::compile::{CPeer, CRule, Endpoint, Engine, IdentityId, NsScope, RuleId};
use crate::eval::{Action, ProfileStep, TierEnd};
use crate::host::{HostPath, Place, Stage};
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
    /// Calico host endpoint checks (empty without host endpoints).
    pub hosts: HostTable,
    /// Whether a pod's ingress check first lets through traffic from its own node ([`Table::own_node`]): Cilium's
    /// allow-localhost, on when the cluster has Cilium policies (see [`Engine::from_own_node`]).
    pub own_node_check: bool,
    /// With [`Table::own_node_check`]: (node address, pod address) of every pod whose ingress is governed, for each
    /// address of the node it runs on in the pod address's family. Traffic from the first to the second passes the
    /// pod's ingress check whatever its profile says (its egress check and host checks still apply).
    pub own_node: Vec<(IpAddr, IpAddr)>,
    /// The policy references (`namespace/name`) that name more than one policy governing some pod with an address
    /// (an object lowered to several policies): the same in the whole table and in a node's share
    /// ([`Engine::dataplane_for`]), so that what is named after them is too.
    pub shared_refs: std::collections::BTreeSet<String>,
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
    /// The Node its addresses' pods run on, when its rules depend on it (Cilium's `host` and `remote-node`: their
    /// address sets are then that Node's, or the other Nodes', addresses).
    pub node: Option<String>,
    pub steps: Vec<TableStep>,
}

#[derive(Clone, Debug)]
pub enum TableStep {
    Rule(TableRule),
    /// The end of a tier: with `deny`, what no rule decided is denied here. With `hold` (Antrea: see
    /// [`crate::eval::Tier::hold`]), what a `Pass` rule of the tier passed skips the steps up to the end of the
    /// next tier, and on up to the first end without `hold`.
    TierEnd {
        deny: bool,
        hold: bool,
    },
}

/// Where traffic a `Pass` rule at step `k` of `steps` passes goes on: the step after the end of its tier, or,
/// past ends that hold it ([`TableStep::TierEnd::hold`]), after the first end that does not (`steps.len()`:
/// nothing is left).
pub fn pass_target(steps: &[TableStep], k: usize) -> usize {
    steps[k..]
        .iter()
        .position(|s| matches!(s, TableStep::TierEnd { hold: false, .. }))
        .map_or(steps.len(), |i| k + i + 1)
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
    /// In a host endpoint stage ([`HostStage`]): every destination address's resolution, whatever the peers (the
    /// peers are matched beside it), with a rule's named `notPorts` in `except`.
    pub named: Option<Vec<(IpAddr, Protocol, u16)>>,
    /// Host endpoint stages only: (destination address, protocol, port) the rule does not match (its named
    /// `notPorts` resolved per destination). Empty elsewhere.
    pub except: Vec<(IpAddr, Protocol, u16)>,
    /// Host endpoint stages only: the rule's own-side criteria (Calico's `destination` of an ingress rule, `source`
    /// of an egress rule), as the addresses they match. `None`: no criteria (and always `None` in profiles,
    /// whose own side is decided per address: see [`Profile::masked`]).
    pub own: Option<SetId>,
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

/// Calico host endpoint checks, by address: where each address is (an address in no class is outside the
/// cluster), which checks a flow between two places meets (`Engine::host_checks`), and each check's stages.
/// A flow is allowed when its pods' profiles allow it and every check of its pair of places passes.
#[derive(Clone, Debug, Default)]
pub struct HostTable {
    pub classes: Vec<HostClass>,
    /// (source class, destination class; `None`: outside the cluster) and the checks (indexes in `checks`) a flow
    /// between them meets, in packet order. Pairs without checks are left out.
    pub pairs: Vec<(Option<usize>, Option<usize>, Vec<usize>)>,
    pub checks: Vec<HostCheckTable>,
}

/// Addresses in one place: the pods (off the host network) of one node, one host endpoint (its addresses, and a
/// node's whose all-interfaces endpoint it is), or a node no host endpoint guards.
#[derive(Clone, Debug)]
pub struct HostClass {
    /// What the addresses are (unique in the table): `pods on node n1`, `host endpoint h1`, `node n1`, ...
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// One host endpoint check: its stages in Felix's order.
#[derive(Clone, Debug)]
pub struct HostCheckTable {
    pub host_endpoint: String,
    pub node: String,
    pub path: HostPath,
    /// Felix's failsafe ports of the check's direction (protocol, port).
    pub failsafe: Vec<(Protocol, u16)>,
    /// Whether a failsafe port passes the whole check (to and from the host); else (forwarded paths) it skips
    /// the stages marked [`HostStage::skipped_by_failsafe`].
    pub failsafe_passes: bool,
    pub stages: Vec<HostStage>,
}

/// One stage of a check: the fold of the stage's policies (an empty `steps`: no policy, undecided).
#[derive(Clone, Debug)]
pub struct HostStage {
    pub stage: Stage,
    pub skipped_by_failsafe: bool,
    /// The stage's rules and tier ends (a tier end denies only in the normal and forward stages; untracked and
    /// pre-DNAT tiers pass what they leave). Rules carry their own side and named ports (see [`TableRule`]).
    pub steps: Vec<TableStep>,
    /// What a rule's Allow does: pass the check (`true`), or nothing lasting, on to the next stage (`false`: an
    /// untracked Allow of traffic forwarded in to a pod).
    pub allow_passes: bool,
    /// What happens to traffic no rule and no tier end decided.
    pub end: StageEnd,
}

/// The end of a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageEnd {
    /// On to the next stage.
    Next,
    /// The check passes (forward stage; normal stage with an allowing profile).
    Allow,
    /// Dropped (normal stage without an allowing profile).
    Deny,
}

impl AddressSet {
    /// Whether the set has this address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match self {
            AddressSet::Pods { addresses, .. } => addresses.contains(&ip),
            AddressSet::Block { ranges, .. } | AddressSet::Ranges { ranges, .. } => {
                ranges.iter().any(|&(lo, hi)| lo <= ip && ip <= hi && lo.is_ipv4() == ip.is_ipv4())
            }
        }
    }
}

impl Table {
    /// Whether traffic from `src` into the pod address `dst` passes `dst`'s ingress check as traffic from the pod's
    /// own node (Cilium's allow-localhost): what a data plane reads from [`Table::own_node`].
    pub fn from_own_node(&self, src: IpAddr, dst: IpAddr) -> bool {
        self.own_node_check && self.own_node.binary_search(&(src.to_canonical(), dst.to_canonical())).is_ok()
    }

    /// Whether the host endpoint checks of this table let a flow between two addresses through: a plain reading
    /// of [`HostTable`], what a data plane implements (tests compare it with [`Engine::host_checks_allow`]).
    pub fn host_allows(&self, src: IpAddr, dst: IpAddr, proto: Protocol, port: u16) -> bool {
        let (src, dst) = (src.to_canonical(), dst.to_canonical());
        let h = &self.hosts;
        let class = |ip: IpAddr| h.classes.iter().position(|c| c.addresses.contains(&ip));
        let (a, b) = (class(src), class(dst));
        let Some((_, _, checks)) = h.pairs.iter().find(|p| p.0 == a && p.1 == b) else { return true };
        checks.iter().all(|&c| self.host_check_allows(&h.checks[c], src, dst, proto, port))
    }

    fn host_check_allows(&self, c: &HostCheckTable, src: IpAddr, dst: IpAddr, proto: Protocol, port: u16) -> bool {
        let fs = c.failsafe.contains(&(proto, port));
        if fs && c.failsafe_passes {
            return true;
        }
        for st in &c.stages {
            if fs && st.skipped_by_failsafe {
                continue;
            }
            match self.stage_outcome(&st.steps, src, dst, proto, port) {
                Some(true) if st.allow_passes => return true,
                Some(true) => {}
                Some(false) => return false,
                None => match st.end {
                    StageEnd::Next => {}
                    StageEnd::Allow => return true,
                    StageEnd::Deny => return false,
                },
            }
        }
        true
    }

    /// A stage's rules in order: `Some(allowed)` when a rule or a tier end decides, `None` when nothing does.
    fn stage_outcome(&self, steps: &[TableStep], src: IpAddr, dst: IpAddr, proto: Protocol, port: u16) -> Option<bool> {
        let mut k = 0;
        while k < steps.len() {
            match &steps[k] {
                TableStep::TierEnd { deny: true, .. } => return Some(false),
                TableStep::TierEnd { deny: false, .. } => {}
                TableStep::Rule(r) if self.host_rule_matches(r, src, dst, proto, port) => match r.action {
                    Action::Allow => return Some(true),
                    Action::Deny | Action::Reject => return Some(false),
                    Action::Log => {}
                    Action::Pass => {
                        // The rest of the tier and its end are skipped (and the tiers its end holds it past).
                        k = pass_target(steps, k);
                        continue;
                    }
                },
                TableStep::Rule(_) => {}
            }
            k += 1;
        }
        None
    }

    /// Whether a host stage's rule matches a flow: own side, peers, ports (numeric, or named resolved at the
    /// destination), minus its excepted destinations.
    fn host_rule_matches(&self, r: &TableRule, src: IpAddr, dst: IpAddr, proto: Protocol, port: u16) -> bool {
        let (me, peer) = match r.dir {
            Direction::Ingress => (dst, src),
            Direction::Egress => (src, dst),
        };
        if r.own.is_some_and(|s| !self.sets[s.index()].contains(me)) {
            return false;
        }
        if !r.peers.is_empty() && !r.peers.iter().any(|&(_, s)| self.sets[s.index()].contains(peer)) {
            return false;
        }
        if r.except.contains(&(dst, proto, port)) {
            return false;
        }
        r.ports.as_ref().is_none_or(|p| p.contains(proto, port))
            || r.named.as_ref().is_some_and(|n| n.contains(&(dst, proto, port)))
    }
}

impl Engine {
    /// The data-plane table of this engine.
    pub fn dataplane(&self) -> Table {
        Builder::new(self).build()
    }

    /// The data-plane table of the pods with the `local` addresses (a node's share): their addresses, the profiles
    /// of their checks and the address sets those need, as [`Engine::dataplane`] has them; the other pods'
    /// profiles are not computed. The host checks and own-node pairs are the whole table's.
    pub fn dataplane_for(&self, local: &std::collections::BTreeSet<IpAddr>) -> Table {
        let mut b = Builder::new(self);
        b.local = Some(local.clone());
        b.build()
    }
}

/// A destination address and the named ports (interned name, protocol, port) rules resolve there.
type DstNamed = (IpAddr, Vec<(u32, Protocol, u16)>);

type ProfileKey = (Direction, Vec<PolicyId>, Vec<ContainerPort>, Vec<RuleId>, Option<u32>);

struct Builder<'e> {
    e: &'e Engine,
    t: Table,
    /// Addresses of each identity's pods (none for hostNetwork identities).
    ident_ips: Vec<Vec<IpAddr>>,
    /// Address sets by peer, and for node-relative peers the subject's Node.
    sets: FxHashMap<(CPeer, Option<u32>), SetId>,
    /// Profiles by direction, policies, container ports and the Calico rules that do not apply to the address
    /// (their own-side criteria fail there).
    profiles: BTreeMap<ProfileKey, ProfileId>,
    /// The address space cut at every block boundary (for Calico entity rules), made on first use.
    segments: Option<crate::outside::Segments>,
    named: BTreeMap<RuleId, Vec<(IpAddr, Protocol, u16)>>,
    /// Only these addresses' checks ([`Engine::dataplane_for`]).
    local: Option<std::collections::BTreeSet<IpAddr>>,
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
            local: None,
        }
    }

    fn build(mut self) -> Table {
        self.t.has_ipv6 =
            self.ident_ips.iter().flatten().any(IpAddr::is_ipv6) || self.e.block_ranges.iter().any(|b| b.v6);
        // For one node's table, the identities with one of its pods (the others' checks are not computed).
        let with_local: Option<Vec<bool>> = self.local.as_ref().map(|local| {
            let mut w = vec![false; self.e.identities.len()];
            for (pid, pod) in self.e.cluster.pods.iter().enumerate() {
                if pod.ips.iter().any(|ip| local.contains(ip)) {
                    w[self.e.pod_identity[pid].index()] = true;
                }
            }
            w
        });
        for (i, ident) in self.e.identities.iter().enumerate() {
            let iid = IdentityId::new(i);
            if ident.host_network || with_local.as_ref().is_some_and(|w| !w[i]) {
                continue;
            }
            for dir in [Direction::Ingress, Direction::Egress] {
                if !ident.governed(dir) {
                    continue;
                }
                let ports = if dir == Direction::Ingress { ident.ports.clone() } else { Vec::new() };
                let rules = if dir == Direction::Ingress { &ident.ingress_rules } else { &ident.egress_rules };
                let node_rel = self.e.node_rel
                    && rules.iter().any(|r| {
                        self.e.rules[r.index()]
                            .peers
                            .iter()
                            .any(|p| matches!(p, CPeer::OwnNode | CPeer::OtherNodes | CPeer::NodeSet(_)))
                    });
                for &pod in &ident.pods {
                    let node = if node_rel { self.e.pod_node.get(pod.index()).copied().flatten() } else { None };
                    for &ip in &self.e.cluster.pod(pod).ips {
                        if self.local.as_ref().is_some_and(|l| !l.contains(&ip)) {
                            continue;
                        }
                        let masked = self.e.masked_rules(iid, dir, &self.e.ip_info(iid, ip));
                        let profile = self.profile(dir, ident.policies(dir), ports.clone(), masked, (node_rel, node));
                        self.t.addresses.push((ip, dir, profile));
                    }
                }
            }
        }
        self.hosts();
        self.own_node();
        self.shared_refs();
        self.t
    }

    /// [`Table::shared_refs`], over every identity (whatever the share): the policies governing some pod with an
    /// address, grouped by reference.
    fn shared_refs(&mut self) {
        let e = self.e;
        // The policies first (a policy governs many identities), then their references, each written once.
        let mut governing = vec![false; e.cluster.policies.len()];
        for (i, ident) in e.identities.iter().enumerate() {
            if ident.host_network || self.ident_ips.get(i).is_none_or(Vec::is_empty) {
                continue;
            }
            for dir in [Direction::Ingress, Direction::Egress] {
                for &p in ident.policies(dir) {
                    governing[p.index()] = true;
                }
            }
        }
        // A reference ends with the policy's name: only a name that several of them have (or one with a `/`, which
        // the API server refuses) can make a reference they share.
        let governing: Vec<usize> = (0..governing.len()).filter(|&i| governing[i]).collect();
        let mut by_name: FxHashMap<&str, u32> = FxHashMap::default();
        for &i in &governing {
            *by_name.entry(e.cluster.policies[i].name.as_str()).or_default() += 1;
        }
        let mut refs: BTreeMap<String, usize> = BTreeMap::new();
        for &i in &governing {
            let name = e.cluster.policies[i].name.as_str();
            if name.contains('/') || by_name.get(name).is_some_and(|&n| n > 1) {
                *refs.entry(e.cluster.policy_ref(PolicyId::new(i))).or_default() += 1;
            }
        }
        self.t.shared_refs = refs.into_iter().filter(|(_, n)| *n > 1).map(|(r, _)| r).collect();
    }

    /// Cilium's allow-localhost ([`Engine::from_own_node`]): the (node address, pod address) pairs of the pods whose
    /// ingress is governed (off the host network, on a node the cluster has).
    fn own_node(&mut self) {
        let e = self.e;
        if !e.cni.node_reaches_own_pods() {
            return;
        }
        self.t.own_node_check = true;
        for ident in &e.identities {
            if ident.host_network || !ident.governed(Direction::Ingress) {
                continue;
            }
            for &pod in &ident.pods {
                let p = e.cluster.pod(pod);
                let Some(node) = e.cluster.nodes.iter().find(|n| Some(n.name.as_str()) == p.node.as_deref()) else {
                    continue;
                };
                for &ip in &p.ips {
                    let ip = ip.to_canonical();
                    for n in node.ips.iter().map(|a| a.to_canonical()).filter(|a| a.is_ipv4() == ip.is_ipv4()) {
                        self.t.own_node.push((n, ip));
                    }
                }
            }
        }
        self.t.own_node.sort_unstable();
        self.t.own_node.dedup();
    }

    /// The host endpoint checks ([`HostTable`]): every address that is somewhere in the cluster placed as
    /// [`Engine::place`] places it, and for each pair of places the checks [`Engine::host_checks`] gives.
    fn hosts(&mut self) {
        let e = self.e;
        if e.heps.is_empty() {
            return;
        }
        let mut addrs: std::collections::BTreeSet<IpAddr> = std::collections::BTreeSet::new();
        for pod in &e.cluster.pods {
            addrs.extend(pod.ips.iter().map(|ip| ip.to_canonical()));
        }
        for h in &e.heps {
            addrs.extend(h.addrs.iter().copied());
        }
        for n in &e.cluster.nodes {
            addrs.extend(n.ips.iter().map(|ip| ip.to_canonical()));
        }
        let mut places: Vec<Place<'e>> = Vec::new();
        let mut classes: Vec<HostClass> = Vec::new();
        let mut dst_named: Vec<DstNamed> = Vec::new();
        for ip in addrs {
            self.t.has_ipv6 |= ip.is_ipv6();
            let ep = e.endpoint_for_ip(ip);
            let info = e.ep_info(&ep);
            let pod = if let Endpoint::Pod { pod, .. } = ep { Some(pod) } else { None };
            let place = e.place(&info, pod);
            // What a rule's named ports resolve against when the flow goes to this address (as in
            // `Engine::allowed`): a host endpoint's ports, else the pod's.
            let table =
                e.host_named_ports(&ep).or_else(|| info.ident.map(|i| e.identities[i.index()].named_ports.as_slice()));
            if let Some(t) = table.filter(|t| !t.is_empty()) {
                dst_named.push((ip, t.to_vec()));
            }
            if place == Place::Other {
                continue;
            }
            let k = match places.iter().position(|p| *p == place) {
                Some(k) => k,
                None => {
                    places.push(place);
                    classes.push(HostClass { name: self.place_name(place), addresses: Vec::new() });
                    places.len() - 1
                }
            };
            classes[k].addresses.push(ip);
        }
        let ends: Vec<Option<usize>> = (0..places.len()).map(Some).chain([None]).collect();
        let mut check_ids: BTreeMap<(usize, u8), usize> = BTreeMap::new();
        let mut pairs = Vec::new();
        for &a in &ends {
            for &b in &ends {
                let pa = a.map_or(Place::Other, |k| places[k]);
                let pb = b.map_or(Place::Other, |k| places[k]);
                let checks: Vec<_> = e.host_checks(pa, pb).collect();
                if checks.is_empty() {
                    continue;
                }
                let mut ids = Vec::new();
                for c in checks {
                    let key = (c.hep, c.path as u8);
                    let id = match check_ids.get(&key) {
                        Some(&id) => id,
                        None => {
                            let t = self.host_check(c.hep, c.path, &dst_named);
                            self.t.hosts.checks.push(t);
                            check_ids.insert(key, self.t.hosts.checks.len() - 1);
                            self.t.hosts.checks.len() - 1
                        }
                    };
                    ids.push(id);
                }
                pairs.push((a, b, ids));
            }
        }
        self.t.hosts.classes = classes;
        self.t.hosts.pairs = pairs;
    }

    fn place_name(&self, p: Place<'_>) -> String {
        match p {
            Place::Workload(Some(n)) => format!("pods on node {n}"),
            Place::Workload(None) => "pods without a node".into(),
            Place::Host(h) => format!("host endpoint {}", self.e.hep_model(h).name),
            Place::NodeHost(Some(n)) => format!("node {n}"),
            Place::NodeHost(None) => "hostNetwork pods without a node".into(),
            Place::Other => "outside the cluster".into(),
        }
    }

    /// One check of a host endpoint on a path: its stages as `Engine::host_check_walk` walks them.
    fn host_check(&mut self, hep: usize, path: HostPath, dst_named: &[DstNamed]) -> HostCheckTable {
        let e = self.e;
        let dir = path.direction();
        let h = e.hep_model(hep);
        let failsafe_passes = matches!(path, HostPath::ToHost | HostPath::FromHost);
        let failsafe = match dir {
            // Cilium's host endpoints have no failsafe ports.
            _ if !e.heps[hep].has_failsafe() => Vec::new(),
            Direction::Ingress => crate::host::FAILSAFE_IN.to_vec(),
            Direction::Egress => crate::host::FAILSAFE_OUT.to_vec(),
        };
        // A Cilium host's node-relative peers (`host`, `remote-node`, node selectors) are relative to its Node.
        let node = e.heps[hep]
            .cilium
            .as_ref()
            .map(|m| e.cluster.nodes.iter().position(|n| n.name == m.node).map_or(u32::MAX, |i| i as u32));
        let mut stages = Vec::new();
        for &stage in path.stages() {
            let sp = e.heps[hep].stage(stage, dir);
            let passes_on = matches!(stage, Stage::Untracked | Stage::PreDnat);
            let pols = sp.pols.clone();
            let steps =
                if pols.is_empty() { Vec::new() } else { self.host_steps(&pols, dir, passes_on, dst_named, node) };
            stages.push(HostStage {
                stage,
                skipped_by_failsafe: !failsafe_passes && passes_on,
                steps,
                allow_passes: !(stage == Stage::Untracked && path == HostPath::ForwardedIn),
                end: match stage {
                    Stage::Untracked | Stage::PreDnat => StageEnd::Next,
                    Stage::Normal if e.heps[hep].profile_allows => StageEnd::Allow,
                    Stage::Normal => StageEnd::Deny,
                    Stage::Forward => StageEnd::Allow,
                },
            });
        }
        HostCheckTable { host_endpoint: h.name.clone(), node: h.node.clone(), path, failsafe, failsafe_passes, stages }
    }

    /// A stage's steps: its policies' rules in evaluation order with their own side, ports and named ports
    /// resolved per destination address, and the tier ends (`passes_on`: every tier passes what it leaves).
    fn host_steps(
        &mut self,
        pols: &[PolicyId],
        dir: Direction,
        passes_on: bool,
        dst_named: &[DstNamed],
        node: Option<u32>,
    ) -> Vec<TableStep> {
        let mut steps = Vec::new();
        for step in self.e.profile_steps(pols, dir) {
            match step {
                ProfileStep::TierEnd { selected, end, hold } => {
                    let deny = !passes_on && selected && end == TierEnd::Deny;
                    steps.push(TableStep::TierEnd { deny, hold: hold && !passes_on });
                }
                ProfileStep::Rule(r) => {
                    let rule = &self.e.rules[r.index()];
                    let has_named = rule.ports.has_named();
                    let ports = (!rule.ports.numeric.is_all() || has_named).then(|| rule.ports.numeric.clone());
                    let (mut named, mut except) = (None, Vec::new());
                    if has_named {
                        let mut n = Vec::new();
                        for (ip, table) in dst_named {
                            for &(p, id) in &rule.ports.named_ids {
                                for &(i, pp, port) in table {
                                    if i == id && pp == p && !rule.ports.not_numeric().contains(p, port) {
                                        n.push((*ip, p, port));
                                    }
                                }
                            }
                            for &(p, id) in rule.ports.not_named_ids() {
                                for &(i, pp, port) in table {
                                    if i == id && pp == p {
                                        except.push((*ip, p, port));
                                    }
                                }
                            }
                        }
                        named = Some(n);
                    }
                    let own = rule.local.map(|l| self.set(CPeer::Calico(l)));
                    steps.push(self.rule_step(r, dir, ports, named, except, own, node));
                }
            }
        }
        steps
    }

    /// One rule of a chain: its peers' address sets (in source order) and the ports, named ports, exceptions and
    /// own-side set its caller resolved; `node`: the subject's Node, for node-relative peers.
    #[allow(clippy::too_many_arguments, reason = "one rule's parts, each resolved by the caller")]
    fn rule_step(
        &mut self,
        r: RuleId,
        dir: Direction,
        ports: Option<PortSet>,
        named: Option<Vec<(IpAddr, Protocol, u16)>>,
        except: Vec<(IpAddr, Protocol, u16)>,
        own: Option<SetId>,
        node: Option<u32>,
    ) -> TableStep {
        let rule = &self.e.rules[r.index()];
        let pairs: Vec<(u32, CPeer)> = rule.peer_src.iter().copied().zip(rule.peers.iter().copied()).collect();
        let (policy, index, action) = (rule.policy, rule.index, rule.action);
        let mut peers: Vec<(usize, SetId)> =
            pairs.into_iter().map(|(src, p)| (src as usize, self.set_at(p, node))).collect();
        peers.sort_unstable();
        TableStep::Rule(TableRule {
            rule: r,
            policy_ref: self.e.cluster.policy_ref(policy),
            dir,
            index,
            action,
            peers,
            ports,
            named,
            except,
            own,
        })
    }

    fn profile(
        &mut self,
        dir: Direction,
        policies: &[PolicyId],
        ports: Vec<ContainerPort>,
        masked: Vec<RuleId>,
        (node_rel, node): (bool, Option<u32>),
    ) -> ProfileId {
        // A node-relative profile of a pod on no known Node is keyed apart from the others (`u32::MAX`).
        let key = (dir, policies.to_vec(), ports, masked, node_rel.then(|| node.unwrap_or(u32::MAX)));
        if let Some(&p) = self.profiles.get(&key) {
            return p;
        }
        let mut steps = Vec::new();
        for step in self.e.profile_steps(policies, dir) {
            match step {
                ProfileStep::TierEnd { selected, end, hold } => {
                    steps.push(TableStep::TierEnd { deny: selected && end == TierEnd::Deny, hold });
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
                    steps.push(self.rule_step(r, dir, ports, named, Vec::new(), None, node));
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
        let node = key.4.map(|n| self.node_name(Some(n)));
        self.t.profiles.push(Profile { dir, policies: key.1.clone(), policy_refs, ports, masked, node, steps });
        self.profiles.insert(key, id);
        id
    }

    /// The name of Node `n` (an index), or `-` for none.
    fn node_name(&self, n: Option<u32>) -> String {
        n.and_then(|n| self.e.cluster.nodes.get(n as usize)).map_or("-".to_string(), |n| n.name.clone())
    }

    fn set(&mut self, p: CPeer) -> SetId {
        self.set_at(p, None)
    }

    /// The address set of peer `p`; for a node-relative peer, relative to a subject on Node `node` (`u32::MAX` or
    /// `None`: on no Node of the input).
    fn set_at(&mut self, p: CPeer, node: Option<u32>) -> SetId {
        let node =
            node.filter(|&n| n != u32::MAX && matches!(p, CPeer::OwnNode | CPeer::OtherNodes | CPeer::NodeSet(_)));
        if let Some(&s) = self.sets.get(&(p, node)) {
            return s;
        }
        let set = match p {
            CPeer::OwnNode | CPeer::OtherNodes => {
                let own = p == CPeer::OwnNode;
                let mut addresses: Vec<IpAddr> = self
                    .e
                    .cluster
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| (Some(i as u32) == node) == own)
                    .flat_map(|(_, n)| n.ips.iter().map(|a| a.to_canonical()))
                    .collect();
                addresses.sort_unstable();
                addresses.dedup();
                let which = if own { "host" } else { "remote-node" };
                AddressSet::Pods { key: format!("{which} of {}", self.node_name(node)), addresses }
            }
            CPeer::NodeSet(k) => {
                let set = &self.e.node_sets[k as usize];
                let mut addresses: Vec<IpAddr> = self
                    .e
                    .cluster
                    .nodes
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| Some(i as u32) != node && set.binary_search(&(i as u32)).is_ok())
                    .flat_map(|(_, n)| n.ips.iter().map(|a| a.to_canonical()))
                    .collect();
                addresses.sort_unstable();
                addresses.dedup();
                AddressSet::Pods { key: format!("node set {k} from {}", self.node_name(node)), addresses }
            }
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
        self.sets.insert((p, node), id);
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
        // Cilium's CIDR peers never match a node's address.
        pods.extend(peer.node_ips.iter().map(|&ip| (ip, false)));
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
                        // Any Node's address: the rule's address set (per subject Node) narrows it.
                        CPeer::OwnNode | CPeer::OtherNodes | CPeer::NodeSet(_) => self.e.node_at(ip).is_some(),
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

    /// Host endpoint stages: a rule's named ports resolve at each destination (the host endpoint's ports for
    /// traffic to it, a pod's for traffic forwarded to it), its named `notPorts` take their destinations out,
    /// and its own side (`destination.nets` of an ingress rule) is matched by address: the table decides every
    /// flow as the engine's host checks do.
    #[test]
    fn host_stage_named_ports_and_own_side_agree_with_the_engine() {
        let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a}
spec: {nodeName: n1, containers: [{name: c, ports: [{name: web, containerPort: 8080}, {name: admin, containerPort: 9090}]}]}
status: {podIP: 10.1.1.10}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h1, labels: {role: node}}
spec:
  node: n1
  interfaceName: eth0
  expectedIPs: [10.0.0.1, 10.0.0.2]
  ports: [{name: web, port: 80, protocol: TCP}, {name: admin, port: 81, protocol: TCP}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: fwd}
spec:
  selector: role == 'node'
  applyOnForward: true
  types: [Ingress]
  ingress:
  - {action: Deny, protocol: TCP, destination: {notPorts: [admin]}, source: {nets: [10.66.0.0/16]}}
  - {action: Allow, protocol: TCP, destination: {ports: [web, 22]}}
  - {action: Allow, protocol: TCP, destination: {nets: [10.0.0.2/32]}}
";
        let e = Engine::new(crate::load::load_str("t", yaml).cluster);
        let t = e.dataplane();
        let ips: Vec<IpAddr> =
            ["10.1.1.10", "10.0.0.1", "10.0.0.2", "10.66.0.5", "10.9.0.5"].iter().map(|a| a.parse().unwrap()).collect();
        let mut allowed = 0;
        for &a in &ips {
            for &b in &ips {
                for port in [22, 80, 81, 8080, 9090, 443] {
                    let (s, d) = (e.endpoint_for_ip(a), e.endpoint_for_ip(b));
                    let want = e.host_checks_allow(&s, &d, Protocol::Tcp, port);
                    assert_eq!(t.host_allows(a, b, Protocol::Tcp, port), want, "{a} -> {b} {port}\n{:#?}", t.hosts);
                    allowed += usize::from(want);
                }
            }
        }
        // Spot checks: the host's named port, the pod's, the notPorts exception, the own side.
        let x = |a: &str, b: &str, port| t.host_allows(a.parse().unwrap(), b.parse().unwrap(), Protocol::Tcp, port);
        assert!(x("10.9.0.5", "10.0.0.1", 80) && !x("10.9.0.5", "10.0.0.1", 8080));
        assert!(x("10.9.0.5", "10.1.1.10", 8080) && !x("10.9.0.5", "10.1.1.10", 443), "forwarded: the tier denies");
        assert!(x("10.66.0.5", "10.0.0.2", 81) && !x("10.66.0.5", "10.0.0.2", 443), "admin is not denied");
        assert!(x("10.9.0.5", "10.0.0.2", 443) && !x("10.9.0.5", "10.0.0.1", 443), "own side");
        assert!(allowed > 0);
    }

    /// Cilium's allow-localhost in the table: a pod whose ingress is governed lets its own node's addresses (the
    /// node, and so its hostNetwork pods) through, and only those; the table agrees with
    /// [`Engine::from_own_node`] on every pair of addresses, and without Cilium policies there is no such check.
    #[test]
    fn own_node_pairs_agree_with_the_engine() {
        let yaml = "
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.60.0.1}, {type: InternalIP, address: 'fd00::60:1'}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 10.60.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: sys}
spec: {nodeName: n1, hostNetwork: true}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {nodeName: n1}
status: {podIP: 10.61.0.1, podIPs: [{ip: 10.61.0.1}, {ip: 'fd00::61:1'}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {nodeName: n2}
status: {podIP: 10.61.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: free, namespace: a, labels: {app: free}}
spec: {nodeName: n2}
status: {podIP: 10.61.0.3}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: lock, namespace: a}
spec:
  endpointSelector: {matchExpressions: [{key: app, operator: In, values: [web, db]}]}
  ingressDeny: [{fromEntities: [all]}]
";
        let e = Engine::new(crate::load::load_str("t", yaml).cluster);
        let t = e.dataplane();
        assert!(t.own_node_check);
        let ips: Vec<IpAddr> =
            ["10.60.0.1", "fd00::60:1", "10.60.0.2", "10.61.0.1", "fd00::61:1", "10.61.0.2", "10.9.0.9"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        let governed: Vec<IpAddr> = t.addresses.iter().filter(|a| a.1 == Direction::Ingress).map(|a| a.0).collect();
        for &a in &ips {
            // A packet has one family (the engine, asked about endpoints, does not look at families).
            for &b in governed.iter().filter(|b| b.is_ipv4() == a.is_ipv4()) {
                let want = e.from_own_node(&e.endpoint_for_ip(a), &e.endpoint_for_ip(b)).is_some();
                assert_eq!(t.from_own_node(a, b), want, "{a} -> {b}: {:?}", t.own_node);
            }
        }
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            t.own_node,
            vec![
                (ip("10.60.0.1"), ip("10.61.0.1")),
                (ip("10.60.0.2"), ip("10.61.0.2")),
                (ip("fd00::60:1"), ip("fd00::61:1"))
            ]
        );
        // Without Cilium policies: no check.
        let plain =
            Engine::new(crate::load::load_str("t", yaml.split("apiVersion: cilium.io").next().unwrap()).cluster);
        let t = plain.dataplane();
        assert!(!t.own_node_check && t.own_node.is_empty());
    }

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
