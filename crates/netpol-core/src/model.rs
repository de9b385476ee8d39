//! The validated model: namespaces, pods and NetworkPolicies as the rest of the engine sees them.
//!
//! Everything here has passed the API server's validation rules (see [`crate::load`]); later stages never
//! re-check syntax. Objects remember where they came from ([`Origin`]) so answers can point back at files.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::portset::Protocol;
use crate::selector::{Labels, Selector};

/// Declares an id type: an index into one vector, a type of its own so that ids of different things cannot be
/// mixed up. `new` and `index` convert from and to the position.
#[macro_export]
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(u32);

        impl $name {
            pub fn new(index: usize) -> $name {
                $name(index as u32)
            }
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

typed_id!(
    /// A policy of a [`Cluster`]: its index in `Cluster::policies`.
    PolicyId
);
typed_id!(
    /// A namespace of a [`Cluster`]: its index in `Cluster::namespaces`.
    NsId
);
typed_id!(
    /// A pod of a [`Cluster`] (a Pod object, or a workload's representative pod): its index in `Cluster::pods`.
    PodId
);

/// Where an object was read from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// File path, or `-` for stdin, or a synthetic name (shared by every object of the file).
    pub file: std::sync::Arc<str>,
    /// 0-based index of the YAML/JSON document in the file.
    pub document: usize,
    /// Index inside a `kind: List`, if any.
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {}", self.file, self.document)?;
        if let Some(i) = self.item {
            write!(f, ", items[{i}]")?;
        }
        f.write_str(")")
    }
}

#[derive(Clone, Debug)]
pub struct Namespace {
    pub name: String,
    /// Includes the automatic `kubernetes.io/metadata.name` label.
    pub labels: Labels,
    /// `None` when the namespace was only referenced, not declared.
    pub origin: Option<Origin>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ContainerPort {
    pub name: Option<crate::labels::Atom>,
    pub port: u16,
    pub protocol: Protocol,
}

/// `name:port/PROTOCOL`, or `port/PROTOCOL` for an unnamed port.
impl fmt::Display for ContainerPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.name {
            write!(f, "{n}:")?;
        }
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// What produced a pod: a Pod object, or a workload's template (one representative pod).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSource {
    /// `Pod`, `Deployment`, `StatefulSet`, ...
    pub kind: &'static str,
    pub origin: Origin,
}

#[derive(Clone, Debug)]
pub struct Pod {
    pub ns: NsId,
    pub name: String,
    pub labels: Labels,
    /// Shared by the pods whose containers declare the same ports.
    pub ports: std::sync::Arc<[ContainerPort]>,
    /// Primary IP first (`status.podIP`), then the others of `status.podIPs`.
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
    /// `spec.nodeName`, if the pod is scheduled.
    pub node: Option<String>,
    pub source: PodSource,
}

impl Pod {
    /// Resolves a named port against this pod's container ports with the same protocol.
    pub fn named_port(&self, name: &str, proto: Protocol) -> Option<u16> {
        self.ports.iter().find(|p| p.protocol == proto && p.name.as_deref() == Some(name)).map(|p| p.port)
    }

    pub fn primary_ip(&self) -> Option<IpAddr> {
        self.ips.first().copied()
    }
}

/// An `ipBlock`: `cidr` minus every `except`. Host bits are masked off at load time.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpBlock {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

impl IpBlock {
    /// Naive membership, O(k) for k exceptions (the engine uses [`crate::ipranges::BlockRanges`]). An
    /// IPv4-mapped IPv6 address is its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.cidr.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cidr)?;
        if !self.except.is_empty() {
            let ex: Vec<String> = self.except.iter().map(|e| e.to_string()).collect();
            write!(f, " except {}", ex.join(","))?;
        }
        Ok(())
    }
}

/// One element of `from`/`to`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// `podSelector` and/or `namespaceSelector` in one peer (AND). `namespaces: None` means the policy's own
    /// namespace; `pods: None` means all pods of the selected namespaces. (The admin kinds' `namespaces` and
    /// `pods` peers are this with a namespace selector.)
    Selectors {
        namespaces: Option<Selector>,
        pods: Option<Selector>,
    },
    IpBlock(IpBlock),
    /// `networks` (admin kinds): addresses in any of these CIDRs (host bits masked off).
    Networks(Vec<IpNet>),
    /// `nodes` (admin kinds): the addresses of the Nodes whose labels match, and so the hostNetwork pods on
    /// them.
    Nodes(Selector),
    /// `domainNames` (admin kinds, egress): the destination was resolved from one of these names (lowercase;
    /// `*.` wildcards match one or more labels).
    DomainNames(Vec<String>),
}

/// What a rule does with the traffic it matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Allow,
    Deny,
    /// Skip the rest of this tier: the next tier decides.
    Pass,
    /// Observe only: evaluation continues with the next rule.
    Log,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Pass => "pass",
            Action::Log => "log",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of object a policy was read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PolicyKind {
    #[default]
    NetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha2`, tier Admin or Baseline.
    ClusterNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1`, the Admin tier.
    AdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1`, the Baseline tier (the singleton `default`).
    BaselineAdminNetworkPolicy,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            PolicyKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            PolicyKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
        }
    }
    /// kubectl's short name, used in references to cluster-scoped policies (`anp/name`).
    pub fn short(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "netpol",
            PolicyKind::ClusterNetworkPolicy => "cnp",
            PolicyKind::AdminNetworkPolicy => "anp",
            PolicyKind::BaselineAdminNetworkPolicy => "banp",
        }
    }
}

/// The tier a policy belongs to, in evaluation order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PolicyTier {
    /// ClusterNetworkPolicy tier Admin, AdminNetworkPolicy: before NetworkPolicies.
    Admin,
    #[default]
    NetworkPolicy,
    /// ClusterNetworkPolicy tier Baseline, BaselineAdminNetworkPolicy: after NetworkPolicies.
    Baseline,
}

impl PolicyTier {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyTier::Admin => "Admin",
            PolicyTier::NetworkPolicy => "NetworkPolicy",
            PolicyTier::Baseline => "Baseline",
        }
    }
}

/// Which namespaces a policy's subject is in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A NetworkPolicy: the pods of its own namespace.
    Namespace(NsId),
    /// A cluster-scoped policy: the pods of the namespaces this selector matches.
    Cluster(Selector),
}

/// The port part of a `ports` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortMatch {
    /// No `port`: every port of the protocol.
    Any,
    /// `port` (and optionally `endPort`): `lo..=hi`.
    Range(u16, u16),
    /// A named port, resolved against the destination pod.
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PolicyPort {
    pub protocol: Protocol,
    pub port: PortMatch,
}

impl fmt::Display for PolicyPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            PortMatch::Any => write!(f, "{} (all ports)", self.protocol),
            PortMatch::Range(lo, hi) if lo == hi => write!(f, "{lo}/{}", self.protocol),
            PortMatch::Range(lo, hi) => write!(f, "{lo}-{hi}/{}", self.protocol),
            PortMatch::Named(n) => write!(f, "{n}/{} (named)", self.protocol),
        }
    }
}

/// An ingress or egress rule. Empty `peers` = all peers; empty `ports` = all ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PolicyPort>,
    /// What the rule does (every NetworkPolicy rule allows).
    pub action: Action,
    /// The rule's `name`, if it has one (admin kinds).
    pub name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub kind: PolicyKind,
    pub tier: PolicyTier,
    /// Admin kinds: `priority` (lower first). NetworkPolicies: 0.
    pub priority: u32,
    pub scope: Scope,
    pub name: String,
    /// The subject's pods (in the namespaces of `scope`).
    pub pod_selector: Selector,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    /// Effective policyTypes after defaulting.
    pub affects_ingress: bool,
    pub affects_egress: bool,
    pub origin: Origin,
}

impl Policy {
    /// A NetworkPolicy's namespace; `None` for cluster-scoped policies.
    pub fn ns(&self) -> Option<NsId> {
        match self.scope {
            Scope::Namespace(ns) => Some(ns),
            Scope::Cluster(_) => None,
        }
    }

    /// Whether the policy's subject is a pod with `pod_labels` in namespace `ns` labelled `ns_labels`
    /// (hostNetwork pods are never a subject: callers leave them out).
    pub fn selects(&self, ns: NsId, ns_labels: &Labels, pod_labels: &Labels) -> bool {
        let in_scope = match &self.scope {
            Scope::Namespace(own) => *own == ns,
            Scope::Cluster(sel) => sel.matches(ns_labels),
        };
        in_scope && self.pod_selector.matches(pod_labels)
    }

    pub fn affects(&self, dir: Direction) -> bool {
        match dir {
            Direction::Ingress => self.affects_ingress,
            Direction::Egress => self.affects_egress,
        }
    }

    pub fn rules(&self, dir: Direction) -> &[Rule] {
        match dir {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// A policy by kind, namespace and name: comparable across clusters (answers that compare two engines, such as
/// diff causes, compare these, not ids or display strings).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    pub kind: PolicyKind,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
}

/// `namespace/name` for a NetworkPolicy, `anp/name` (kubectl's short kind) for a cluster-scoped policy.
impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PolicyKind::NetworkPolicy => write!(f, "{}/{}", self.namespace, self.name),
            k => write!(f, "{}/{}", k.short(), self.name),
        }
    }
}

/// A rule of a policy, comparable across clusters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    pub policy: PolicyKey,
    /// Index of the rule in the policy's rules of the explanation's direction.
    pub index: usize,
}

/// A Node: its labels and addresses (`status.addresses`), what `nodes` peers match.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub labels: Labels,
    /// The `InternalIP` and `ExternalIP` addresses, in order.
    pub ips: Vec<IpAddr>,
    pub origin: Origin,
}

/// A loaded cluster: the input of every later stage.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub policies: Vec<Policy>,
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn namespace_id(&self, name: &str) -> Option<NsId> {
        self.namespaces.iter().position(|n| n.name == name).map(NsId::new)
    }

    pub fn ns(&self, id: NsId) -> &Namespace {
        // Ids are only created by the loader, which keeps them in range.
        &self.namespaces[id.index()]
    }

    pub fn ns_name(&self, id: NsId) -> &str {
        &self.ns(id).name
    }

    pub fn pod(&self, id: PodId) -> &Pod {
        &self.pods[id.index()]
    }

    pub fn policy(&self, id: PolicyId) -> &Policy {
        &self.policies[id.index()]
    }

    /// `ns/name` of a pod.
    pub fn pod_ref(&self, id: PodId) -> String {
        let p = self.pod(id);
        format!("{}/{}", self.ns_name(p.ns), p.name)
    }

    /// `namespace/name` for a NetworkPolicy, `anp/name` for a cluster-scoped policy.
    pub fn policy_ref(&self, id: PolicyId) -> String {
        self.policy_key(id).to_string()
    }

    /// What names a policy in any cluster (ids differ between two engines; this does not).
    pub fn policy_key(&self, id: PolicyId) -> PolicyKey {
        let p = self.policy(id);
        let namespace = p.ns().map(|ns| self.ns_name(ns).to_string()).unwrap_or_default();
        PolicyKey { kind: p.kind, namespace, name: p.name.clone() }
    }

    /// The policy a reference names (`namespace/name`, or `anp/name` for a cluster-scoped policy: what
    /// [`Cluster::policy_ref`] writes).
    pub fn find_policy(&self, reference: &str) -> Option<PolicyId> {
        (0..self.policies.len()).map(PolicyId::new).find(|&p| self.policy_key(p).to_string() == reference)
    }

    pub fn find_pod(&self, ns: &str, name: &str) -> Option<PodId> {
        let ns = self.namespace_id(ns)?;
        self.pods.iter().position(|p| p.ns == ns && p.name == name).map(PodId::new)
    }
}
