//! Calico host endpoints: the checks a flow meets on a host's own interfaces, beside the pods' policies.
//!
//! Felix (projectcalico/calico: `felix/rules/endpoints.go`, `static.go`, `felix/calc/event_sequencer.go`) gives a
//! host endpoint four lists of GlobalNetworkPolicies that select it, in tiers like a pod's:
//! - **untracked** (`doNotTrack`) and **pre-DNAT** (`preDNAT`, ingress only): their tiers end in Pass whatever the
//!   tier's default action, so that later stages still apply; an Allow skips the later stages of that host
//!   endpoint, a Deny drops;
//! - **normal** (the rest): traffic to and from the host's own processes; each tier ends in its default action,
//!   and what no tier decides goes to the endpoint's profiles, and is dropped if none allows it;
//! - **forward** (normal policies with `applyOnForward`): traffic forwarded through the host; each tier ends in
//!   its default action, what no tier decides is allowed, and with no such policy forwarded traffic is allowed.
//!
//! Felix's default failsafe ports (`FailsafeInboundHostPorts`, `FailsafeOutboundHostPorts`) are accepted ahead
//! of the untracked, pre-DNAT and normal chains, whatever the policies say; forwarded traffic has no failsafe in
//! its forward chain.
//!
//! Where a flow meets them (netpol's flows are addresses after DNAT, see `Engine::host_checks`):
//! - a flow to a host endpoint's address from elsewhere: the endpoint's ingress (failsafe, untracked, pre-DNAT,
//!   normal); a flow from it to elsewhere: its egress (failsafe, untracked, normal);
//! - from outside the cluster to a pod, and from a pod to outside the cluster or to another node's host: the
//!   forward policies of the host endpoint of the pod's node (in: untracked Deny, pre-DNAT and forward policies,
//!   then the pod's ingress; out: the pod's egress, then forward policies);
//! - a pod and its own node: only an all-interfaces (`interfaceName: "*"`) endpoint governs that traffic (the API
//!   says it governs traffic from and to local workloads); with named interfaces the traffic never crosses them
//!   and Felix's `DefaultEndpointToHostAction` decides, which Calico's manifests set to ACCEPT.
//!
//! A hostNetwork pod is the host endpoint at its address, else its node's all-interfaces endpoint, else its node.
//!
//! **Cilium's host firewall** reuses this machinery: each Node that a host policy (a CiliumClusterwideNetworkPolicy
//! rule with `nodeSelector`, [`crate::model::HostFlags::cilium_host`]) selects by its labels is a host endpoint of
//! all its interfaces at the Node's addresses (hostNetwork pods there included), with only the normal stage — its
//! host policies in Cilium's tiers, as a pod's policies are — no failsafe ports, no forward stage (a host policy
//! governs the host's own traffic only, `pkg/policy/rule.go`, `matchesSubject`) and no profile: what no policy
//! decides is allowed, and a direction no host policy of the node has is not policed
//! (`pkg/policy/repository.go`, `computePolicyEnforcementAndRules`). Traffic between the node and its own pods
//! crosses it both ways (cilium-cli's `host-firewall-ingress` and `host-firewall-egress` connectivity tests); a
//! pod still takes what comes from its own node ([`Engine::from_own_node`]).
//!
//! Not modelled, and said so in explain and the README: routes (a node's forwarded traffic is taken to cross its
//! `*` endpoint, else its first by name), traffic from other nodes to pods (taken to be encapsulated, so that the
//! interfaces of the pod's node do not see it), Service DNAT (pre-DNAT policies see the flow's own destination),
//! failsafe ports other than Felix's defaults, and Profile objects (a profile is taken to allow everything only
//! for `projectcalico-default-allow` and the `kns.` namespace profiles).

use std::net::IpAddr;

use serde::Serialize;

use crate::compile::{Endpoint, Engine, EpInfo, RuleId};
use crate::eval::{Ends, OnePort, Query, Trace, Variant};
use crate::model::{Direction, HostEndpoint, PolicyId, PolicyKind};
use crate::portset::Protocol;

/// Felix's default `FailsafeInboundHostPorts`.
pub const FAILSAFE_IN: [(Protocol, u16); 9] = [
    (Protocol::Tcp, 22),
    (Protocol::Udp, 68),
    (Protocol::Tcp, 179),
    (Protocol::Tcp, 2379),
    (Protocol::Tcp, 2380),
    (Protocol::Tcp, 5473),
    (Protocol::Tcp, 6443),
    (Protocol::Tcp, 6666),
    (Protocol::Tcp, 6667),
];

/// Felix's default `FailsafeOutboundHostPorts`.
pub const FAILSAFE_OUT: [(Protocol, u16); 9] = [
    (Protocol::Udp, 53),
    (Protocol::Udp, 67),
    (Protocol::Tcp, 179),
    (Protocol::Tcp, 2379),
    (Protocol::Tcp, 2380),
    (Protocol::Tcp, 5473),
    (Protocol::Tcp, 6443),
    (Protocol::Tcp, 6666),
    (Protocol::Tcp, 6667),
];

/// Whether a flow's destination protocol and port is one of Felix's default failsafe ports for `dir` (ingress:
/// inbound, egress: outbound).
pub fn failsafe(dir: Direction, proto: Protocol, port: u16) -> bool {
    let list = match dir {
        Direction::Ingress => &FAILSAFE_IN,
        Direction::Egress => &FAILSAFE_OUT,
    };
    list.contains(&(proto, port))
}

/// Whether a profile named `name` allows everything: Calico's `projectcalico-default-allow` and the namespace
/// profiles (`kns.`) do; netpol does not read Profile objects, so it takes any other profile to allow nothing.
pub fn profile_allows_all(name: &str) -> bool {
    name == "projectcalico-default-allow" || name.starts_with("kns.")
}

/// Which of a host endpoint's policy lists a check uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Untracked,
    PreDnat,
    Normal,
    Forward,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Untracked, Stage::PreDnat, Stage::Normal, Stage::Forward];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Untracked => "untracked",
            Stage::PreDnat => "pre-DNAT",
            Stage::Normal => "normal",
            Stage::Forward => "forward",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// What the stage's tiers do at their ends: untracked and pre-DNAT tiers pass what they leave (Felix gives them
    /// a Pass default action, so that later stages still apply); the others end in their own default action.
    pub(crate) fn ends(self) -> Ends {
        match self {
            Stage::Untracked | Stage::PreDnat => Ends::Pass,
            Stage::Normal | Stage::Forward => Ends::AsTiers,
        }
    }
}

/// One host endpoint's policies for one stage and direction.
#[derive(Clone, Debug, Default)]
pub(crate) struct StagePolicies {
    /// Sorted by id.
    pub pols: Vec<PolicyId>,
    /// Their rules, in evaluation order.
    pub rules: Vec<RuleId>,
}

/// A compiled host endpoint.
#[derive(Clone, Debug)]
pub(crate) struct CHep {
    /// Its index in the cluster's host endpoints.
    pub index: usize,
    /// The addresses flows reach it by.
    pub addrs: Vec<IpAddr>,
    /// Named ports (interned name, protocol, port).
    pub named_ports: Vec<(u32, Protocol, u16)>,
    /// Per stage (see [`Stage`]), per direction (ingress, egress).
    pub stages: [[StagePolicies; 2]; 4],
    /// Whether its profiles allow what no tier decides (normal stage).
    pub profile_allows: bool,
    /// A Cilium host endpoint (a Node that Cilium's host policies select): the Node as a host endpoint of all its
    /// interfaces, named after it, with no failsafe ports and no forward stage; what no policy decides is allowed.
    pub cilium: Option<Box<HostEndpoint>>,
}

impl CHep {
    /// Whether Felix's failsafe ports apply (Calico's host endpoints; Cilium has none).
    pub(crate) fn has_failsafe(&self) -> bool {
        self.cilium.is_none()
    }

    pub(crate) fn stage(&self, s: Stage, dir: Direction) -> &StagePolicies {
        &self.stages[s.index()][usize::from(dir == Direction::Egress)]
    }
}

/// Where an endpoint of a flow is, as far as host endpoints go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place<'a> {
    /// A pod (not on the host network), on this node if known.
    Workload(Option<&'a str>),
    /// A host endpoint's address (a host process, or a hostNetwork pod at it), or any hostNetwork pod of a node
    /// with an all-interfaces host endpoint.
    Host(usize),
    /// A node's host namespace (the node, if known) that no host endpoint guards here: a hostNetwork pod, or a
    /// Node's address.
    NodeHost(Option<&'a str>),
    /// An address outside the cluster.
    Other,
}

/// Where on a host endpoint a check happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostPath {
    /// Into the host's own processes: failsafe, untracked, pre-DNAT, normal ingress.
    ToHost,
    /// Out of the host's own processes: failsafe, untracked, normal egress.
    FromHost,
    /// Forwarded in through the host to a pod on it: untracked Deny, pre-DNAT and forward ingress.
    ForwardedIn,
    /// Forwarded out through the host from a pod on it: forward egress.
    ForwardedOut,
}

impl HostPath {
    pub fn direction(self) -> Direction {
        match self {
            HostPath::ToHost | HostPath::ForwardedIn => Direction::Ingress,
            HostPath::FromHost | HostPath::ForwardedOut => Direction::Egress,
        }
    }

    /// The stages of this path, in Felix's order.
    pub fn stages(self) -> &'static [Stage] {
        match self {
            HostPath::ToHost => &[Stage::Untracked, Stage::PreDnat, Stage::Normal],
            HostPath::FromHost => &[Stage::Untracked, Stage::Normal],
            HostPath::ForwardedIn => &[Stage::Untracked, Stage::PreDnat, Stage::Forward],
            HostPath::ForwardedOut => &[Stage::Forward],
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            HostPath::ToHost => "traffic to the host",
            HostPath::FromHost => "traffic from the host",
            HostPath::ForwardedIn => "traffic forwarded in through the host",
            HostPath::ForwardedOut => "traffic forwarded out through the host",
        }
    }
}

/// One check of a flow at a host endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HostCheck {
    pub hep: usize,
    pub path: HostPath,
}

/// What one stage of a check decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StageOutcome {
    Allow,
    Deny,
    /// No rule decided and no tier end denied: on to the next stage (or the end of the path).
    Undecided,
}

impl Engine {
    /// Compiles the cluster's host endpoints: their addresses, the GlobalNetworkPolicies of each stage that
    /// select them, and the node index.
    pub(crate) fn compile_host_endpoints(&mut self) {
        let mut heps = Vec::with_capacity(self.cluster.host_endpoints.len());
        for (index, h) in self.cluster.host_endpoints.iter().enumerate() {
            let addrs = self.host_endpoint_addresses(h);
            let mut stages: [[StagePolicies; 2]; 4] = Default::default();
            for (pid, pol) in self.cluster.policies.iter().enumerate() {
                if pol.kind != PolicyKind::GlobalNetworkPolicy {
                    continue;
                }
                let Some(expr) = &pol.calico_selector else { continue };
                if !expr.matches(&h.labels) {
                    continue;
                }
                let mut add = |s: Stage| {
                    for (d, dir) in [Direction::Ingress, Direction::Egress].into_iter().enumerate() {
                        if pol.affects(dir) && !(s == Stage::PreDnat && dir == Direction::Egress) {
                            stages[s.index()][d].pols.push(PolicyId::new(pid));
                        }
                    }
                };
                if pol.host.do_not_track {
                    add(Stage::Untracked);
                } else if pol.host.pre_dnat {
                    add(Stage::PreDnat);
                } else {
                    add(Stage::Normal);
                    if pol.host.apply_on_forward {
                        add(Stage::Forward);
                    }
                }
            }
            for per_dir in stages.iter_mut() {
                for (d, sp) in per_dir.iter_mut().enumerate() {
                    let dir = if d == 0 { Direction::Ingress } else { Direction::Egress };
                    sp.rules = self
                        .profile_steps(&sp.pols, dir)
                        .into_iter()
                        .filter_map(|s| if let crate::eval::ProfileStep::Rule(r) = s { Some(r) } else { None })
                        .collect();
                }
            }
            let named: Vec<(String, Protocol, u16)> =
                h.ports.iter().filter_map(|p| p.name.as_ref().map(|n| (n.to_string(), p.protocol, p.port))).collect();
            let profile_allows = h.profiles.iter().any(|p| profile_allows_all(p));
            heps.push((index, addrs, named, stages, profile_allows));
        }
        self.heps = heps
            .into_iter()
            .map(|(index, addrs, named, stages, profile_allows)| CHep {
                index,
                addrs,
                named_ports: named.into_iter().map(|(n, p, port)| (self.port_name_id(&n), p, port)).collect(),
                stages,
                profile_allows,
                cilium: None,
            })
            .collect();
        self.compile_cilium_hosts();
        self.hep_by_ip.clear();
        self.node_hep.clear();
        for (i, h) in self.heps.iter().enumerate() {
            for a in &h.addrs {
                self.hep_by_ip.entry(*a).or_insert(i);
            }
        }
        let mut by_node: Vec<(String, bool, String, usize)> = self
            .cluster
            .host_endpoints
            .iter()
            .enumerate()
            .map(|(i, h)| (h.node.clone(), !h.all_interfaces(), h.name.clone(), i))
            .collect();
        by_node.sort();
        // Cilium's host endpoints come after Calico's (a cluster has one CNI; Calico's win).
        let calico = by_node.len();
        by_node.extend(
            self.heps[calico..]
                .iter()
                .enumerate()
                .filter_map(|(k, h)| h.cilium.as_ref().map(|m| (m.node.clone(), false, m.name.clone(), calico + k))),
        );
        for (node, _, _, i) in by_node {
            self.node_hep.entry(node).or_insert(i);
        }
    }

    /// Cilium's host endpoints: one per Node that a host policy (`nodeSelector`) selects, after Calico's, as an
    /// all-interfaces host endpoint at the Node's addresses whose normal stage holds the host policies selecting
    /// it (`pkg/policy/api/rule.go`: `NodeSelector`; the docs' *Host Policies*). A Node no host policy selects has
    /// none: its traffic is not policed (Cilium's host firewall enforces only on selected hosts, per direction:
    /// `pkg/policy/repository.go`, `computePolicyEnforcementAndRules`, which the empty stage of a direction gives).
    fn compile_cilium_hosts(&mut self) {
        let hosts: Vec<usize> = (0..self.cluster.policies.len())
            .filter(|&p| self.cluster.policies[p].host.cilium_host && self.cluster.policies[p].kind.is_cilium())
            .collect();
        if hosts.is_empty() {
            return;
        }
        let mut made = Vec::new();
        for node in &self.cluster.nodes {
            let mut stages: [[StagePolicies; 2]; 4] = Default::default();
            for &pid in &hosts {
                let pol = &self.cluster.policies[pid];
                if !pol.calico_selector.as_ref().is_some_and(|e| e.matches(&node.labels)) {
                    continue;
                }
                for (d, dir) in [Direction::Ingress, Direction::Egress].into_iter().enumerate() {
                    if pol.affects(dir) {
                        stages[Stage::Normal.index()][d].pols.push(PolicyId::new(pid));
                    }
                }
            }
            if stages.iter().flatten().all(|sp| sp.pols.is_empty()) {
                continue;
            }
            let addrs: Vec<IpAddr> = node.ips.iter().map(|ip| ip.to_canonical()).collect();
            let model = HostEndpoint {
                name: node.name.clone(),
                node: node.name.clone(),
                interface: Some("*".to_string()),
                expected_ips: addrs.clone(),
                labels: node.labels.clone(),
                profiles: Vec::new(),
                ports: Vec::new(),
                origin: node.origin.clone(),
            };
            made.push((addrs, stages, model));
        }
        for (addrs, mut stages, model) in made {
            for (d, sp) in stages[Stage::Normal.index()].iter_mut().enumerate() {
                let dir = if d == 0 { Direction::Ingress } else { Direction::Egress };
                sp.rules = self
                    .profile_steps(&sp.pols, dir)
                    .into_iter()
                    .filter_map(|s| if let crate::eval::ProfileStep::Rule(r) = s { Some(r) } else { None })
                    .collect();
            }
            self.heps.push(CHep {
                index: usize::MAX,
                addrs,
                named_ports: Vec::new(),
                stages,
                profile_allows: true,
                cilium: Some(Box::new(model)),
            });
        }
    }

    /// Whether the engine has Cilium host endpoints (nodes that host policies select).
    pub fn has_cilium_hosts(&self) -> bool {
        self.heps.iter().any(|h| h.cilium.is_some())
    }

    /// Cilium's host endpoints: per Node that a host policy selects, its name, addresses and host policies per
    /// direction (ingress, egress), in evaluation order. What `describe` lists.
    pub fn cilium_hosts(&self) -> Vec<(String, Vec<IpAddr>, [Vec<PolicyId>; 2])> {
        self.heps
            .iter()
            .filter_map(|h| {
                let m = h.cilium.as_ref()?;
                let pols = |dir| self.evaluation_order(&h.stage(Stage::Normal, dir).pols);
                Some((m.node.clone(), h.addrs.clone(), [pols(Direction::Ingress), pols(Direction::Egress)]))
            })
            .collect()
    }

    /// The Nodes (names) whose host endpoint a Cilium host policy applies to, in either direction.
    pub fn policy_nodes(&self, p: PolicyId) -> Vec<String> {
        self.heps
            .iter()
            .filter_map(|h| {
                let m = h.cilium.as_ref()?;
                h.stages.iter().flatten().any(|sp| sp.pols.binary_search(&p).is_ok()).then(|| m.node.clone())
            })
            .collect()
    }

    /// The Nodes (names) whose Cilium host endpoint's egress host policies include `p`, each with
    /// those policies' rules there in evaluation order: the hosts a host policy's egress rules govern.
    pub(crate) fn cilium_egress_hosts(&self, p: PolicyId) -> Vec<(&str, &[RuleId])> {
        self.heps
            .iter()
            .filter_map(|h| {
                let m = h.cilium.as_ref()?;
                let sp = h.stage(Stage::Normal, Direction::Egress);
                sp.pols.binary_search(&p).is_ok().then_some((m.node.as_str(), sp.rules.as_slice()))
            })
            .collect()
    }

    /// The addresses flows reach a host endpoint by: its `expectedIPs`; for an all-interfaces endpoint without
    /// any, its node's addresses (Node objects).
    pub fn host_endpoint_addresses(&self, h: &HostEndpoint) -> Vec<IpAddr> {
        if !h.expected_ips.is_empty() || !h.all_interfaces() {
            return h.expected_ips.clone();
        }
        self.cluster
            .nodes
            .iter()
            .filter(|n| n.name == h.node)
            .flat_map(|n| n.ips.iter().map(|ip| ip.to_canonical()))
            .collect()
    }

    /// The pods whose traffic with other pods the matrix does not answer whole: the hostNetwork pods (their traffic
    /// is their node's), when the cluster has host endpoints (their checks), a CNI that lets a node into its own
    /// pods, or Cilium's `host`/`remote-node` entities (their meaning depends on both ends' nodes, which a cell of
    /// identities does not know; a pod off the host network is never either).
    pub fn pods_with_host_checks(&self) -> Vec<crate::model::PodId> {
        if self.heps.is_empty() && !self.cni.node_reaches_own_pods() && !self.node_rel {
            return Vec::new();
        }
        (0..self.cluster.pods.len())
            .map(crate::model::PodId::new)
            .filter(|&p| self.cluster.pod(p).host_network)
            .collect()
    }

    /// What the pod-to-pod matrix leaves out, if anything: the host endpoint checks of hostNetwork pods' traffic
    /// (the other pods' own policies are in it; `query` and `explain` answer with both).
    pub fn matrix_caveat(&self) -> Option<String> {
        let pods = self.pods_with_host_checks();
        (!pods.is_empty()).then(|| {
            let names: Vec<String> = pods.iter().take(5).map(|&p| self.cluster.pod_ref(p)).collect();
            let mut parts: Vec<&str> = Vec::new();
            if self.heps.iter().any(|h| h.cilium.is_none()) {
                parts.push("host endpoint policies");
            }
            if self.heps.iter().any(|h| h.cilium.is_some()) {
                parts.push("Cilium's host policies");
            }
            match self.cni {
                crate::cni::Cni::Cilium => parts.push("Cilium's access of a node to its own pods"),
                crate::cni::Cni::Calico => parts.push("Calico's unpoliced access of a node to its own pods"),
                crate::cni::Cni::Antrea => parts.push("Antrea's unpoliced access of a node to its own pods"),
                crate::cni::Cni::Netpol => {
                    parts.push("the netpol agent's exemption of a node's own traffic to its pods")
                }
                crate::cni::Cni::Generic => {}
            }
            if self.node_rel {
                parts.push("Cilium's entities `host` and `remote-node`");
            }
            let what = match parts.split_last() {
                Some((last, [])) => last.to_string(),
                Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                None => String::new(),
            };
            format!(
                "the matrix does not apply {what} to the traffic of {} hostNetwork pod(s) ({}{}); `netpol query` \
                 and `netpol explain` do",
                pods.len(),
                names.join(", "),
                if pods.len() > 5 { ", ..." } else { "" }
            )
        })
    }

    /// The host endpoints (cluster indexes) a policy applies to, in any stage and direction.
    pub fn policy_host_endpoints(&self, p: PolicyId) -> Vec<usize> {
        self.heps
            .iter()
            .filter(|h| h.cilium.is_none() && h.stages.iter().flatten().any(|sp| sp.pols.binary_search(&p).is_ok()))
            .map(|h| h.index)
            .collect()
    }

    /// The host endpoint named `name`, with its index.
    pub fn host_endpoint_named(&self, name: &str) -> Option<(usize, &HostEndpoint)> {
        self.cluster.host_endpoints.iter().enumerate().find(|(_, h)| h.name == name)
    }

    /// The policies of host endpoint `h` (its index) for one stage and direction, in evaluation order: each as its
    /// reference (`gnp/name`) and its spec in words (what comparing two versions of it needs; its origin left out).
    pub fn host_stage_policies(&self, h: usize, stage: Stage, dir: Direction) -> Vec<(String, String)> {
        self.host_endpoint_policies(h, stage, dir)
            .into_iter()
            .map(|p| {
                let mut pol = self.cluster.policy(p).clone();
                pol.origin = Default::default();
                (self.cluster.policy_ref(p), format!("{pol:?}"))
            })
            .collect()
    }

    /// The policies of a host endpoint (its index in the cluster's host endpoints) for one stage and direction, in
    /// evaluation order (tier, then order); empty for an index out of range and for pre-DNAT egress.
    pub fn host_endpoint_policies(&self, h: usize, stage: Stage, dir: Direction) -> Vec<PolicyId> {
        match self.heps.iter().find(|c| c.index == h) {
            Some(c) => self.evaluation_order(&c.stage(stage, dir).pols),
            None => Vec::new(),
        }
    }

    /// Whether the engine has host endpoints (and so host checks for some flows).
    pub fn has_host_endpoints(&self) -> bool {
        !self.heps.is_empty()
    }

    /// The host endpoint at an address, if any.
    pub fn host_endpoint_at(&self, ip: IpAddr) -> Option<&HostEndpoint> {
        let h = self.hep_by_ip.get(&ip.to_canonical())?;
        self.cluster.host_endpoints.get(self.heps[*h].index)
    }

    pub(crate) fn hep_model(&self, h: usize) -> &HostEndpoint {
        match &self.heps[h].cilium {
            Some(m) => m,
            None => &self.cluster.host_endpoints[self.heps[h].index],
        }
    }

    /// Where an endpoint of a flow is (see [`Place`]): a pod off the host network is a workload on its node; a
    /// host endpoint's address is that host endpoint; a hostNetwork pod elsewhere is its node's all-interfaces
    /// host endpoint if it has one, else its node; a Node's address is that node.
    pub(crate) fn place(&self, ep: &EpInfo<'_>, pod: Option<crate::model::PodId>) -> Place<'_> {
        let mut ip = ep.ip;
        let mut node = None;
        if let Some(p) = pod {
            let pod = self.cluster.pod(p);
            if !pod.host_network {
                return Place::Workload(pod.node.as_deref());
            }
            ip = ip.or_else(|| pod.primary_ip().map(|a| a.to_canonical()));
            node = pod.node.as_deref();
        }
        if let Some(&h) = ip.and_then(|ip| self.hep_by_ip.get(&ip)) {
            return Place::Host(h);
        }
        let host_network = pod.is_some();
        let node = node.or_else(|| {
            let ip = ip?;
            self.cluster.nodes.iter().find(|n| n.ips.iter().any(|a| a.to_canonical() == ip)).map(|n| n.name.as_str())
        });
        match node {
            Some(n) => match self.node_hep.get(n) {
                Some(&h) if self.hep_model(h).all_interfaces() => Place::Host(h),
                _ => Place::NodeHost(Some(n)),
            },
            // A hostNetwork pod of an unknown node is still a host of the cluster.
            None if host_network => Place::NodeHost(None),
            None => Place::Other,
        }
    }

    /// The host endpoint checks of a flow from `src` to `dst`, in packet order (see the module's rules): at most
    /// one out of the source and one into the destination.
    pub(crate) fn host_checks<'a>(&'a self, src: Place<'a>, dst: Place<'a>) -> impl Iterator<Item = HostCheck> {
        let mut out: [Option<HostCheck>; 2] = [None, None];
        let node_of = |p: Place<'a>| -> Option<&'a str> {
            match p {
                Place::Workload(n) => n,
                Place::Host(h) => Some(self.hep_model(h).node.as_str()),
                Place::NodeHost(n) => n,
                Place::Other => None,
            }
        };
        let same_node = match (node_of(src), node_of(dst)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        let all_ifaces = |h: usize| self.hep_model(h).all_interfaces();
        // Cilium's host policies govern the host's own traffic only: forwarded traffic meets the pods' policies.
        let fwd = |node: Option<&str>| {
            node.and_then(|n| self.node_hep.get(n)).copied().filter(|&h| self.heps[h].cilium.is_none())
        };
        let host = |p: Place<'_>| matches!(p, Place::Host(_) | Place::NodeHost(_));
        // Out of the source.
        match src {
            Place::Host(h) => {
                let crosses = match dst {
                    Place::Host(_) | Place::NodeHost(_) => !same_node,
                    // To a pod: an all-interfaces endpoint governs it (on another node the traffic leaves
                    // through the tunnel device, which only such an endpoint covers).
                    Place::Workload(_) => all_ifaces(h),
                    Place::Other => true,
                };
                if crosses {
                    out[0] = Some(HostCheck { hep: h, path: HostPath::FromHost });
                }
            }
            Place::Workload(node) => {
                if matches!(dst, Place::Other) || host(dst) && !same_node {
                    if let Some(h) = fwd(node) {
                        out[0] = Some(HostCheck { hep: h, path: HostPath::ForwardedOut });
                    }
                }
            }
            Place::NodeHost(_) | Place::Other => {}
        }
        // Into the destination.
        match dst {
            Place::Host(h) => {
                let crosses = match src {
                    Place::Host(_) | Place::NodeHost(_) => !same_node,
                    Place::Workload(_) => !same_node || all_ifaces(h),
                    Place::Other => true,
                };
                if crosses {
                    out[1] = Some(HostCheck { hep: h, path: HostPath::ToHost });
                }
            }
            // Only traffic from outside the cluster arrives at a pod's node through its interfaces; pods and hosts
            // of other nodes reach it through the tunnel.
            Place::Workload(node) => {
                if matches!(src, Place::Other) {
                    if let Some(h) = fwd(node) {
                        out[1] = Some(HostCheck { hep: h, path: HostPath::ForwardedIn });
                    }
                }
            }
            Place::NodeHost(_) | Place::Other => {}
        }
        out.into_iter().flatten()
    }

    /// Where the two ends of a flow are.
    pub(crate) fn flow_places<'e>(
        &'e self,
        src: &Endpoint,
        s: &EpInfo<'_>,
        dst: &Endpoint,
        d: &EpInfo<'_>,
    ) -> (Place<'e>, Place<'e>) {
        let pod = |e: &Endpoint| if let Endpoint::Pod { pod, .. } = e { Some(*pod) } else { None };
        (self.place(s, pod(src)), self.place(d, pod(dst)))
    }

    /// The named ports of a flow's destination when it is at a host endpoint's address (an address no pod has, or
    /// a hostNetwork pod's): what rules' named ports resolve on there. A pod off the host network, or a hostNetwork
    /// pod elsewhere, keeps its container ports.
    pub(crate) fn host_named_ports(&self, dst: &Endpoint) -> Option<&[(u32, Protocol, u16)]> {
        if let Endpoint::Pod { pod, .. } = *dst {
            if !self.cluster.pod(pod).host_network {
                return None;
            }
        }
        let h = self.hep_by_ip.get(&self.endpoint_ip(dst)?)?;
        // A Cilium host endpoint has no ports of its own: a hostNetwork pod keeps its container ports.
        if self.heps[*h].cilium.is_some() {
            return None;
        }
        Some(&self.heps[*h].named_ports)
    }

    /// Whether every host endpoint check of a flow lets it through: the host endpoints' part of
    /// [`Engine::allowed`] (true without host endpoints). What the data plane's host checks
    /// ([`crate::dataplane::HostTable`]) are compared with.
    pub fn host_checks_allow(&self, src: &Endpoint, dst: &Endpoint, proto: Protocol, port: u16) -> bool {
        if self.heps.is_empty() {
            return true;
        }
        let (s, d) = (self.ep_info(src), self.ep_info(dst));
        let dst_named = match self.host_named_ports(dst) {
            Some(n) => Some(n),
            None => d.ident.map(|i| self.identities[i.index()].named_ports.as_slice()),
        };
        self.host_allows(src, &s, dst, &d, &Query { proto, port, dst_named, request: None })
    }

    /// Whether every host endpoint check of a flow lets it through (the fast verdict's part).
    pub(crate) fn host_allows(
        &self,
        src: &Endpoint,
        s: &EpInfo<'_>,
        dst: &Endpoint,
        d: &EpInfo<'_>,
        q: &Query<'_>,
    ) -> bool {
        let (sp, dp) = self.flow_places(src, s, dst, d);
        self.host_checks(sp, dp).all(|c| {
            let (me, peer) = match c.path.direction() {
                Direction::Ingress => (d, s),
                Direction::Egress => (s, d),
            };
            self.host_check(c, me, peer, q, &mut crate::eval::Quiet)
        })
    }

    /// One stage of a check: the fold of the stage's policies (`me`: the flow's end on the host endpoint's side,
    /// `peer` the other end).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn host_stage<T: Trace>(
        &self,
        hep: usize,
        stage: Stage,
        dir: Direction,
        me: &EpInfo<'_>,
        peer: &EpInfo<'_>,
        q: &Query<'_>,
        trace: &mut T,
    ) -> StageOutcome {
        let sp = self.heps[hep].stage(stage, dir);
        if sp.pols.is_empty() {
            return StageOutcome::Undecided;
        }
        let side = self.fold_rules(
            &sp.pols,
            &sp.rules,
            None,
            stage.ends(),
            &mut OnePort,
            true,
            !T::EVERY_RULE,
            Variant::AsIs,
            |r, rule| self.consult_rule(r, rule, me, peer, q, trace),
        );
        let (allowed, undecided) = side.parts(&mut OnePort);
        if allowed {
            StageOutcome::Allow
        } else if undecided {
            StageOutcome::Undecided
        } else {
            StageOutcome::Deny
        }
    }

    /// Whether one check lets the flow through, and what decided it.
    pub(crate) fn host_check<T: Trace>(
        &self,
        c: HostCheck,
        me: &EpInfo<'_>,
        peer: &EpInfo<'_>,
        q: &Query<'_>,
        trace: &mut T,
    ) -> bool {
        self.host_check_walk(c, me, peer, q, trace, |_, _| {})
    }

    /// A check, stage by stage: whether it lets the flow through; `seen` is told each stage of its path in order
    /// with its outcome until one decides (`None`: skipped by a failsafe port or an earlier stage's Allow).
    pub(crate) fn host_check_walk<T: Trace>(
        &self,
        c: HostCheck,
        me: &EpInfo<'_>,
        peer: &EpInfo<'_>,
        q: &Query<'_>,
        trace: &mut T,
        mut seen: impl FnMut(Stage, Option<StageOutcome>),
    ) -> bool {
        let dir = c.path.direction();
        let fs = self.heps[c.hep].has_failsafe() && failsafe(dir, q.proto, q.port);
        // Failsafe ports: accepted ahead of the host's own chains; on a forwarded path they only skip the
        // untracked and pre-DNAT chains.
        if fs && matches!(c.path, HostPath::ToHost | HostPath::FromHost) {
            return true;
        }
        let mut skip = false;
        for &stage in c.path.stages() {
            if skip || (fs && matches!(stage, Stage::Untracked | Stage::PreDnat)) {
                seen(stage, None);
                continue;
            }
            let o = self.host_stage(c.hep, stage, dir, me, peer, q, trace);
            seen(stage, Some(o));
            match (stage, o) {
                (_, StageOutcome::Deny) => return false,
                // An untracked Allow of traffic forwarded to a pod has no lasting effect: the reply finds no
                // connection (Calico's documentation); the later stages decide.
                (Stage::Untracked, StageOutcome::Allow) if c.path == HostPath::ForwardedIn => {}
                (Stage::Normal | Stage::Forward, StageOutcome::Allow) => return true,
                (_, StageOutcome::Allow) => skip = true,
                (Stage::Normal, StageOutcome::Undecided) => return self.heps[c.hep].profile_allows,
                (_, StageOutcome::Undecided) => {}
            }
        }
        // Past every stage: allowed (an earlier Allow, or a forward path nothing denied).
        true
    }
}

impl Engine {
    /// Explains one host check: its failsafe port, and each stage as a side of its own.
    pub(crate) fn explain_host_check(
        &self,
        c: HostCheck,
        src: &Endpoint,
        dst: &Endpoint,
        dst_name: Option<&str>,
        flow: &crate::verdict::ExplainFlow<'_>,
    ) -> crate::verdict::HostExplanation {
        use crate::verdict::{DecidedBy, HostExplanation, SideExplanation};
        let h = self.hep_model(c.hep);
        let dir = c.path.direction();
        let (subject, other, other_name) = match dir {
            Direction::Ingress => (dst, src, None),
            Direction::Egress => (src, dst, dst_name),
        };
        let me = self.ep_info(subject);
        let mut peer = self.ep_info(other);
        peer.name = other_name;
        if dir == Direction::Egress {
            // The destination's learnt name, for a host policy's `toFQDNs` (its DNS rules teach it).
            peer.fqdn = flow.fqdn;
        }
        let dst_named = match flow.host_named {
            Some(n) => Some(n),
            None => self.ep_info(flow.dst).ident.map(|i| self.identities[i.index()].named_ports.as_slice()),
        };
        let q = Query { proto: flow.proto, port: flow.port, dst_named, request: flow.request };
        let cilium = self.heps[c.hep].cilium.is_some();
        let fs = !cilium && failsafe(dir, flow.proto, flow.port);
        let mut seen = Vec::new();
        let allowed = self.host_check_walk(c, &me, &peer, &q, &mut crate::eval::Quiet, |s, o| seen.push((s, o)));
        let failsafe = fs.then(|| {
            let (list, what) = match dir {
                Direction::Ingress => ("FailsafeInboundHostPorts", "inbound"),
                Direction::Egress => ("FailsafeOutboundHostPorts", "outbound"),
            };
            let effect = match c.path {
                HostPath::ToHost | HostPath::FromHost => "accepted ahead of every policy of the host endpoint",
                _ => "the untracked and pre-DNAT policies are skipped (forwarded traffic has no failsafe of its own)",
            };
            format!(
                "{} is one of Felix's default failsafe {what} ports ({list}): {effect}",
                crate::verdict::flow_port_text(flow.proto, flow.port)
            )
        });
        let mut stages = Vec::new();
        for (stage, outcome) in seen {
            if cilium && stage != Stage::Normal {
                // Cilium's host endpoints have only the one stage.
                continue;
            }
            let sp = self.heps[c.hep].stage(stage, dir);
            let pols = self.evaluation_order(&sp.pols);
            let mut side = SideExplanation {
                direction: dir,
                subject: if cilium {
                    format!("host of node {} (Cilium host policies)", h.node)
                } else {
                    format!("host endpoint {} ({} policies)", h.name, stage.as_str())
                },
                allowed: outcome != Some(StageOutcome::Deny),
                isolated: false,
                note: None,
                policies: pols.iter().map(|&p| self.cluster.policy_ref(p)).collect(),
                policy_keys: pols.iter().map(|&p| self.cluster.policy_key(p)).collect(),
                walk: Vec::new(),
                decided_by: DecidedBy::NotGoverned,
                tier_default: None,
                allowed_by: Vec::new(),
                rejections: Vec::new(),
                not_modelled: Vec::new(),
            };
            let Some(outcome) = outcome else {
                side.note =
                    Some(if fs { "skipped: failsafe port" } else { "skipped: an earlier stage allowed it" }.into());
                stages.push(side);
                continue;
            };
            if !pols.is_empty() {
                let mut record = crate::eval::Record::default();
                self.host_stage(c.hep, stage, dir, &me, &peer, &q, &mut record);
                self.replay(&mut side, &pols, record.0, dir, flow, subject, other, other_name, stage.ends());
            }
            if outcome == StageOutcome::Undecided {
                side.note = Some(match stage {
                    Stage::Normal if cilium && pols.is_empty() => {
                        format!("no host policy selects node {} for {dir}: not isolated, everything allowed", h.node)
                    }
                    Stage::Normal if cilium => {
                        side.decided_by = DecidedBy::NotGoverned;
                        "no host policy decides and none puts the node in default deny for this direction: allowed"
                            .into()
                    }
                    Stage::Normal => {
                        side.decided_by = DecidedBy::Profile;
                        side.allowed = self.heps[c.hep].profile_allows;
                        let verdict = if side.allowed { "allowed" } else { "denied" };
                        if h.profiles.is_empty() {
                            format!(
                                "no policy decides and the host endpoint has no profiles: {verdict} (Felix drops \
                                 traffic to and from a host endpoint that nothing allows)"
                            )
                        } else {
                            format!(
                                "no policy decides: its profiles ({}) decide: {verdict} (netpol takes only \
                                 projectcalico-default-allow and kns.* profiles to allow everything)",
                                h.profiles.join(", ")
                            )
                        }
                    }
                    Stage::Forward if pols.is_empty() => format!(
                        "no applyOnForward policy selects it for {dir}: forwarded traffic is allowed in that direction"
                    ),
                    Stage::Forward => "no policy decides: forwarded traffic is allowed".into(),
                    Stage::Untracked | Stage::PreDnat if pols.is_empty() => "no policy: on to the next stage".into(),
                    Stage::Untracked | Stage::PreDnat => {
                        "no rule decides (these tiers pass what they leave): on to the next stage".into()
                    }
                });
            } else if stage == Stage::Untracked && outcome == StageOutcome::Allow && c.path == HostPath::ForwardedIn {
                side.note = Some(
                    "an untracked Allow of traffic forwarded to a pod has no lasting effect (the reply finds no \
                     connection): the later stages decide"
                        .into(),
                );
            } else if outcome == StageOutcome::Allow && stage != Stage::Normal && stage != Stage::Forward {
                side.note = Some("allowed here: the later stages of this host endpoint are skipped".into());
            }
            stages.push(side);
        }
        HostExplanation {
            host_endpoint: h.name.clone(),
            node: h.node.clone(),
            path: c.path,
            direction: dir,
            allowed,
            failsafe,
            stages,
            source: h.origin.to_string(),
            cilium,
        }
    }

    /// What a host endpoint answer assumes about this flow, if anything.
    pub(crate) fn host_assumption(&self, src: Place<'_>, dst: Place<'_>) -> Option<String> {
        if self.heps.iter().all(|h| h.cilium.is_some()) {
            // Cilium's host endpoints: no interfaces, routes or forward policies to assume anything about.
            return None;
        }
        let fwd_policies = |node: Option<&str>| {
            node.and_then(|n| self.node_hep.get(n)).is_some_and(|&h| {
                let c = &self.heps[h];
                [Direction::Ingress, Direction::Egress].iter().any(|&d| {
                    !c.stage(Stage::Forward, d).pols.is_empty() || !c.stage(Stage::PreDnat, d).pols.is_empty()
                })
            })
        };
        let src_node = match src {
            Place::Workload(n) => n,
            Place::Host(h) => Some(self.hep_model(h).node.as_str()),
            Place::NodeHost(n) => n,
            Place::Other => None,
        };
        let from_cluster = !matches!(src, Place::Other);
        if let Place::Workload(b) = dst {
            if from_cluster && (src_node.is_none() || src_node != b) && fwd_policies(b) {
                return Some(
                    "traffic from another node to a pod is taken to be encapsulated (IPIP or VXLAN), so the \
                     interfaces of the pod's node do not see it and their host endpoints' forward and pre-DNAT \
                     policies do not apply; without encapsulation Calico applies them"
                        .into(),
                );
            }
        }
        match (src, dst) {
            (Place::Workload(None), p) | (p, Place::Workload(None)) if !matches!(p, Place::Workload(_)) => {
                Some("the pod has no spec.nodeName: netpol cannot tell which host endpoint its traffic crosses".into())
            }
            (Place::Workload(Some(n)), Place::Host(h)) | (Place::Host(h), Place::Workload(Some(n)))
                if self.hep_model(h).node == n && !self.hep_model(h).all_interfaces() =>
            {
                Some(
                    "traffic between a pod and its own node does not cross a named-interface host endpoint: Felix's \
                     DefaultEndpointToHostAction decides it, taken as ACCEPT (Calico's manifests set it)"
                        .into(),
                )
            }
            (Place::Workload(Some(_)), Place::Other | Place::Host(_))
            | (Place::Other | Place::Host(_), Place::Workload(Some(_))) => Some(
                "forwarded traffic is taken to cross the node's all-interfaces host endpoint, else its first by \
                     name (netpol does not know routes); pre-DNAT policies see the flow's own destination (netpol \
                     does not model Service DNAT)"
                    .into(),
            )
            .filter(|_| {
                let node = match (src, dst) {
                    (Place::Workload(n), _) | (_, Place::Workload(n)) => n,
                    _ => None,
                };
                node.is_some_and(|n| self.node_hep.contains_key(n))
            }),
            _ => None,
        }
    }
}
