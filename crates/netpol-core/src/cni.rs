//! The CNI whose reading of NetworkPolicy v1 the answers follow, where implementations differ.
//!
//! - [`Cni::Generic`]: the Kubernetes API's own reading (an `ipBlock` matches any address in it, pods' and
//!   nodes' included; nothing lets a node into its pods but the policies).
//! - [`Cni::Cilium`]: pods, nodes and hostNetwork pods carry identities, and a CIDR selects only addresses
//!   outside the cluster: traffic between two ends that Cilium manages or that use a node's address (hostNetwork
//!   pods included) is never matched by CIDR rules (cilium/cilium `Documentation/security/policy/layer3.rst`,
//!   section "IP/CIDR based", commit 90ba5de5);
//!   NetworkPolicy v1's ipBlock is translated into the same CIDR rules as a CiliumNetworkPolicy's
//!   (`pkg/k8s/network_policy.go`, `ipBlockToCIDRRule`: `cidr` and `except` become a `CIDRRule`). A node's own
//!   addresses (the `host` identity: the node and its hostNetwork pods) reach its pods whatever their policies
//!   say (allow-localhost, already [`crate::compile::Engine::from_own_node`]). So a v1 ipBlock compiles like Cilium's own CIDR peers
//!   (`CalicoPeer::outside_only`).
//! - [`Cni::Calico`]: an ipBlock is a CIDR match of Felix's rules and IP sets, pods' addresses included
//!   (`libcalico-go/lib/backend/k8s/conversion`, `k8sPeerToCalicoFields`: `ipBlock` → `nets`/`notNets`). Felix
//!   leaves traffic from the host to a local workload unpoliced: in projectcalico/calico `felix/rules/static.go`
//!   (commit 6e74ff80), `filterOutputChain` returns packets leaving through a workload interface before any
//!   policy (its comment calls this a pragmatic choice; IPVS connections are the exception, which netpol does not
//!   model). So a node (or a hostNetwork pod on it) reaches its own pods whatever their ingress policies say, as
//!   with Cilium.
//!
//! [`Cni::auto`] picks the CNI from the cluster's objects: Cilium's policies → Cilium, Calico's objects →
//! Calico, else the CNI's own agent among the cluster's pods and workloads ([`agent`]: Cilium's, then Calico's),
//! else generic (today's answers, unchanged).

use std::fmt;

use crate::model::{CalicoPeer, Cluster, IpBlock};

/// A CNI's reading of the corners of NetworkPolicy v1 (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cni {
    #[default]
    Generic,
    Cilium,
    Calico,
    Antrea,
    /// netpol's own node agent (`netpol agent`): NetworkPolicy v1 as the generic reading, and a node's own traffic
    /// to its pods (kubelet probes) exempt by source address.
    Netpol,
}

impl Cni {
    /// The CNIs whose readings `cni-diff` and `cni_dependence` compare (the external ones, and the generic reading;
    /// netpol's own agent reads NetworkPolicy as the generic reading does, but for its node exemption).
    pub const ALL: [Cni; 4] = [Cni::Generic, Cni::Cilium, Cni::Calico, Cni::Antrea];

    pub fn as_str(self) -> &'static str {
        match self {
            Cni::Generic => "generic",
            Cni::Cilium => "cilium",
            Cni::Calico => "calico",
            Cni::Antrea => "antrea",
            Cni::Netpol => "netpol",
        }
    }

    /// The CNI the cluster's objects say it runs, and why: Cilium's policies, else Calico's objects, else Antrea's
    /// policies, else the agent of a CNI among its pods ([`agent`]), else generic. The reason names what was found
    /// (`Cilium policies present`, `DaemonSet kube-system/cilium (k8s-app=cilium)`).
    pub fn auto(cluster: &Cluster) -> (Cni, String) {
        if cluster.has_cilium() {
            (Cni::Cilium, "Cilium policies present".into())
        } else if cluster.has_calico() || !cluster.staged.is_empty() {
            (Cni::Calico, "Calico objects present".into())
        } else if cluster.policies.iter().any(|p| p.kind.is_antrea()) {
            (Cni::Antrea, "Antrea policies present".into())
        } else if let Some((cni, why)) = agent(cluster) {
            (cni, why)
        } else {
            (Cni::Generic, "no Cilium, Calico or Antrea objects or agents".into())
        }
    }

    /// Whether an ipBlock of a NetworkPolicy v1 selects only addresses outside the cluster (no pod's, no node's).
    pub fn ip_block_outside_only(self) -> bool {
        self == Cni::Cilium
    }

    /// Whether a node's own addresses (the node, its hostNetwork pods) reach its pods whatever their ingress
    /// policies say. Antrea: its OVS pipeline lets the Node's gateway traffic into local Pods before any policy
    /// (antrea-io/antrea `pkg/agent/openflow/pipeline.go`, the local probe flows; conformance case
    /// `node-selector-peer`).
    pub fn node_reaches_own_pods(self) -> bool {
        matches!(self, Cni::Cilium | Cni::Calico | Cni::Antrea | Cni::Netpol)
    }
}

impl fmt::Display for Cni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Cni {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "generic" => Ok(Cni::Generic),
            "cilium" => Ok(Cni::Cilium),
            "calico" => Ok(Cni::Calico),
            "antrea" => Ok(Cni::Antrea),
            "netpol" => Ok(Cni::Netpol),
            _ => Err(format!("unknown CNI `{s}` (expected generic, cilium, calico, antrea or netpol)")),
        }
    }
}

/// How an engine's CNI was chosen: given, or found by [`Cni::auto`] (with the reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CniSource {
    Given,
    Auto(String),
}

/// The label key (and values) by which a CNI's node agent is known: every install method of each CNI puts it on
/// the agent's pod template (it is also the DaemonSet's selector).
///
/// - Cilium: the agent is the DaemonSet `cilium` in the Helm release's namespace (kube-system in the usual
///   install), its pod template labelled `k8s-app: cilium` (and `app.kubernetes.io/name: cilium-agent`):
///   cilium/cilium `install/kubernetes/cilium/templates/cilium-agent/daemonset.yaml`.
/// - Calico: the agent (Felix, with BIRD and confd) is the DaemonSet `calico-node`, its pod template labelled
///   `k8s-app: calico-node`: in kube-system with the manifests (projectcalico/calico
///   `charts/calico/templates/calico-node.yaml`, which `manifests/calico.yaml` is rendered from), in
///   calico-system with the Tigera operator (tigera/operator `pkg/render/node.go`, `nodeDaemonset`).
/// - Antrea: the agent is the DaemonSet `antrea-agent` (kube-system), its pod template labelled
///   `component: antrea-agent` (and `app: antrea`): antrea-io/antrea
///   `build/charts/antrea/templates/agent/daemonset.yaml`, which `build/yamls/antrea.yml` is rendered from.
/// - netpol: its own agent, the DaemonSet `netpol-agent` of `deploy/agent.yaml`, labelled
///   `app.kubernetes.io/name: netpol-agent`.
pub const AGENT_LABELS: [(Cni, &str, &str); 4] = [
    (Cni::Cilium, "k8s-app", "cilium"),
    (Cni::Calico, "k8s-app", "calico-node"),
    (Cni::Antrea, "component", "antrea-agent"),
    (Cni::Netpol, "app.kubernetes.io/name", "netpol-agent"),
];

/// Whether a pod with these labels is a CNI's node agent (see [`agent`]).
pub fn is_agent(labels: &crate::labels::Labels) -> bool {
    agents_of(labels) != 0
}

/// The agents of [`AGENT_LABELS`] whose label these labels carry, as bits (bit `k`: entry `k`). One pass over
/// the labels with equality tests (a length test first), cheaper than an ordered lookup per agent key.
fn agents_of(labels: &crate::labels::Labels) -> u8 {
    let mut found = 0;
    for (key, value) in labels.iter() {
        for (k, &(_, agent_key, agent_value)) in AGENT_LABELS.iter().enumerate() {
            if key == agent_key && value == agent_value {
                found |= 1 << k;
            }
        }
    }
    found
}

/// Whether an auto-detection reason is [`agent`]'s (an agent pod chose the CNI).
pub fn by_agent(why: &str) -> bool {
    // `why` ends with `({key}={value})`, read without writing it (no allocation: every pod event asks).
    let Some(label) = why.strip_suffix(')') else { return false };
    AGENT_LABELS.iter().any(|&(_, key, value)| {
        let rest = label.strip_suffix(value).and_then(|r| r.strip_suffix('='));
        rest.and_then(|r| r.strip_suffix(key)).is_some_and(|r| r.ends_with('('))
    })
}

/// The CNI whose node agent runs in the cluster, and what says so: a pod (a live cluster's pods, or a DaemonSet's
/// representative pod in manifests) with the agent's label of [`AGENT_LABELS`], in any namespace (Cilium's Helm
/// release may live outside kube-system). Cilium's agent first, then Calico's; among pods, the first loaded.
/// The reason is `DaemonSet kube-system/cilium (k8s-app=cilium)` (the workload's kind, or `pod` for a Pod).
pub fn agent(cluster: &Cluster) -> Option<(Cni, String)> {
    // One pass over the pods (not one per agent): the first pod of each agent, a pod whose label set is the one
    // of the pod before it (replicas share an interned set) not read again. Cilium's agent, the first choice,
    // ends the pass.
    let mut first: [Option<usize>; AGENT_LABELS.len()] = [None; AGENT_LABELS.len()];
    let mut before: Option<&crate::labels::Labels> = None;
    for (i, p) in cluster.pods.iter().enumerate() {
        if before.is_some_and(|b| b.same_allocation(&p.labels)) {
            continue;
        }
        before = Some(&p.labels);
        let found = agents_of(&p.labels);
        if found == 0 {
            continue;
        }
        for (k, first) in first.iter_mut().enumerate() {
            if first.is_none() && found & (1 << k) != 0 {
                *first = Some(i);
            }
        }
        if first[0].is_some() {
            break;
        }
    }
    AGENT_LABELS.iter().zip(first).find_map(|(&(cni, key, value), first)| {
        let p = cluster.pods.get(first?)?;
        let kind = match p.source.kind {
            "Pod" => "pod",
            k => k,
        };
        let ns = cluster.namespaces.get(p.ns.index()).map_or("?", |n| n.name.as_str());
        // A workload renamed beside a Pod of the same name (`daemonset/cilium`) is named once.
        let name = p.name.split_once('/').map_or(p.name.as_str(), |(_, n)| n);
        Some((cni, format!("{kind} {ns}/{name} ({key}={value})")))
    })
}

/// An ipBlock as Cilium reads it: Cilium's own CIDR peer (its addresses but its exceptions, none a pod's or a
/// node's).
pub fn cilium_cidr_peer(b: &IpBlock) -> CalicoPeer {
    CalicoPeer { nets: vec![b.cidr], not_nets: b.except.clone(), outside_only: true, ..Default::default() }
}

/// `cni: cilium (auto: Cilium policies present)` or `cni: calico (--cni)`: the header line of text outputs.
pub fn header(cni: Cni, source: &CniSource) -> String {
    match source {
        CniSource::Given => format!("cni: {cni} (--cni)"),
        CniSource::Auto(why) => format!("cni: {cni} (auto: {why})"),
    }
}

/// An engine and, built on first use, the same cluster's engines for the other CNIs: what `explain`'s note and
/// `cni-diff` compare.
pub struct ByCni<'e> {
    base: &'e crate::compile::Engine,
    others: [std::sync::OnceLock<crate::compile::Engine>; Cni::ALL.len()],
}

/// How a flow's verdict depends on the CNI: each CNI's verdict, and why they differ.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CniDependence {
    /// (CNI, allowed) for generic, cilium, calico, antrea.
    pub verdicts: Vec<(Cni, bool)>,
    pub reason: String,
}

impl CniDependence {
    /// `depends on the CNI: generic allows, cilium denies, calico allows, antrea allows (reason)`.
    pub fn render(&self) -> String {
        let v: Vec<String> =
            self.verdicts.iter().map(|(c, a)| format!("{c} {}", if *a { "allows" } else { "denies" })).collect();
        format!("depends on the CNI: {} ({})", v.join(", "), self.reason)
    }
}

impl<'e> ByCni<'e> {
    pub fn new(base: &'e crate::compile::Engine) -> Self {
        ByCni { base, others: Default::default() }
    }

    /// The engine for `cni`: the base one, or one compiled from its cluster (once).
    pub fn engine(&self, cni: Cni) -> &crate::compile::Engine {
        if cni == self.base.cni() {
            return self.base;
        }
        let i = Cni::ALL.iter().position(|&c| c == cni).unwrap_or(0);
        self.others[i].get_or_init(|| crate::compile::Engine::with_cni(self.base.cluster().clone(), Some(cni)))
    }

    /// `None` when every CNI gives the flow the same verdict; else each one's and why.
    pub fn dependence(
        &self,
        src: &crate::compile::Endpoint,
        dst: &crate::compile::Endpoint,
        info: crate::compile::FlowInfo<'_>,
        proto: crate::portset::Protocol,
        port: u16,
    ) -> Option<CniDependence> {
        let verdicts: Vec<(Cni, bool)> =
            Cni::ALL.iter().map(|&c| (c, self.engine(c).allowed_flow(src, dst, info, proto, port))).collect();
        if verdicts.iter().all(|v| v.1 == verdicts[0].1) {
            return None;
        }
        Some(CniDependence { verdicts, reason: self.reason(src, dst) })
    }

    /// Why CNIs may differ on a flow: the node's access to its own pods, or an ipBlock over a cluster address.
    pub fn reason(&self, src: &crate::compile::Endpoint, dst: &crate::compile::Endpoint) -> String {
        let e = self.engine(Cni::Cilium);
        if let Some((ip, node)) = e.from_own_node(src, dst) {
            return format!(
                "{ip} is an address of node {node}, where {} runs: Cilium (allow-localhost), Calico (Felix leaves host \
                 to local workload traffic unpoliced) and Antrea (its local probe flows) let it in whatever the policies \
                 say",
                e.endpoint_name(dst)
            );
        }
        let cluster_end: Vec<String> = [src, dst]
            .into_iter()
            .filter(|ep| e.endpoint_ip(ep).is_some_and(|ip| e.in_cluster(ep, ip)))
            .map(|ep| e.endpoint_name(ep))
            .collect();
        format!(
            "an ipBlock covers the address of {}, which Cilium selects only by identity",
            if cluster_end.is_empty() { "an endpoint".to_string() } else { cluster_end.join(" or ") }
        )
    }
}

/// Traffic on which the CNIs disagree: a class of sources to a class of destinations (pods whose identities are
/// the same under every CNI and, for a node's traffic, on the same node), each CNI's allowed ports, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Disagreement {
    /// A pod (`ns/name`), or a node's address (`node n1 (10.1.0.1)`).
    pub src: String,
    pub dst: String,
    /// How many (source, destination) pairs the row stands for.
    pub pairs: usize,
    /// Each CNI's allowed ports: the matrix cell between pods; between a node's address and a pod, the probed
    /// ports (every port number the policies and pods name, and 1, 53, 80, 443, 8080, 65535) it allows.
    pub allowed: Vec<(Cni, String)>,
    pub reason: String,
}

/// The flows of the cluster on which generic, Cilium and Calico disagree: pod to pod (per class, through each
/// CNI's matrix) and from each node's addresses to pods (hostNetwork pods are their node's addresses).
pub fn disagreements(base: &crate::compile::Engine) -> Result<Vec<Disagreement>, String> {
    use crate::model::PodId;
    use crate::portset::{PortSet, Protocol};
    use std::collections::BTreeMap;
    let by = ByCni::new(base);
    let engines: Vec<&crate::compile::Engine> = Cni::ALL.iter().map(|&c| by.engine(c)).collect();
    let c = base.cluster();
    // Pods (off the host network) by their identity under each CNI, and their node.
    let mut classes: BTreeMap<(Vec<usize>, Option<&str>), Vec<PodId>> = BTreeMap::new();
    for (i, p) in c.pods.iter().enumerate() {
        if p.host_network {
            continue;
        }
        let id = PodId::new(i);
        let key: Vec<usize> = engines.iter().map(|e| e.pod_identity(id).index()).collect();
        classes.entry((key, p.node.as_deref())).or_default().push(id);
    }
    let classes: Vec<Vec<PodId>> = classes.into_values().collect();
    let name = |pods: &[PodId]| match pods.len() {
        1 => c.pod_ref(pods[0]),
        n => format!("{} (+{} like it)", c.pod_ref(pods[0]), n - 1),
    };
    let matrices: Vec<crate::matrix::Matrix> =
        engines.iter().map(|e| e.matrix(None)).collect::<Result<Vec<_>, String>>()?;
    let mut out = Vec::new();
    for a in &classes {
        for b in &classes {
            let (sa, sb) = (a[0], if a == b { a.get(1).copied().unwrap_or(a[0]) } else { b[0] });
            if sa == sb {
                continue;
            }
            let sets: Vec<PortSet> = matrices
                .iter()
                .zip(&engines)
                .map(|(m, e)| m.pod_cell(e, sa, sb).map(|ps| m.port_sets.get(ps).clone()).unwrap_or_default())
                .collect();
            if sets.iter().all(|s| *s == sets[0]) {
                continue;
            }
            let pairs = if a == b { a.len() * (a.len() - 1) } else { a.len() * b.len() };
            let (s, d) = (
                crate::compile::Endpoint::Pod { pod: sa, ip: None },
                crate::compile::Endpoint::Pod { pod: sb, ip: None },
            );
            out.push(Disagreement {
                src: name(a),
                dst: name(b),
                pairs,
                allowed: Cni::ALL.iter().copied().zip(sets.iter().map(|s| s.to_string())).collect(),
                reason: by.reason(&s, &d),
            });
        }
    }
    // A node's addresses to pods: probed ports.
    let mut ports: Vec<u16> = vec![1, 53, 80, 443, 8080, 65535];
    for pol in &c.policies {
        for r in pol.ingress.iter().chain(&pol.egress) {
            for p in &r.ports {
                if let crate::model::PortMatch::Range(lo, hi) = p.port {
                    ports.extend([lo, hi]);
                }
            }
        }
    }
    for p in &c.pods {
        ports.extend(p.ports.iter().map(|cp| cp.port));
    }
    ports.sort_unstable();
    ports.dedup();
    for node in &c.nodes {
        for &ip in &node.ips {
            let src = crate::compile::Endpoint::External(ip.to_canonical());
            for cl in &classes {
                let dst = crate::compile::Endpoint::Pod { pod: cl[0], ip: None };
                let sets: Vec<PortSet> = engines
                    .iter()
                    .map(|e| {
                        let mut s = PortSet::empty();
                        for proto in [Protocol::Tcp, Protocol::Udp] {
                            for &port in &ports {
                                if e.allowed(&src, &dst, proto, port) {
                                    s = s.union(&PortSet::single(proto, port));
                                }
                            }
                        }
                        s
                    })
                    .collect();
                if sets.iter().all(|s| *s == sets[0]) {
                    continue;
                }
                out.push(Disagreement {
                    src: format!("node {} ({ip})", node.name),
                    dst: name(cl),
                    pairs: cl.len(),
                    allowed: Cni::ALL.iter().copied().zip(sets.iter().map(|s| s.to_string())).collect(),
                    reason: by.reason(&src, &dst),
                });
            }
        }
    }
    Ok(out)
}
