//! The validated model: namespaces, pods and NetworkPolicies as the rest of the engine sees them.
//!
//! Everything here has passed the API server's validation rules (see [`crate::load`]); later stages never
//! re-check syntax. Objects remember where they came from ([`Origin`]) so answers can point back at files.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::calico_selector::Expr as CalicoExpr;
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
    /// `spec.serviceAccountName` (`default` when unset, as the API server's admission sets it).
    pub service_account: crate::labels::Atom,
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
    /// `domainNames` (admin kinds, egress) and Antrea's `fqdn`: the destination was resolved from one of these
    /// names (lowercase; a leading `*.` matches one or more labels, any other `*` any run of characters:
    /// [`crate::compile::domain_matches`]).
    DomainNames(Vec<String>),
    /// A Calico rule's `source` or `destination` (every criterion but ports): see [`CalicoPeer`].
    Calico(Box<CalicoPeer>),
    /// Cilium's `toFQDNs` (egress): an address outside the cluster that the source resolved from a name matching
    /// one of these, through Cilium's DNS proxy — which sees the source's queries only when a `rules.dns` rule of
    /// the source's own egress policy allows the name (otherwise Cilium never learns the address).
    Fqdns(Vec<crate::l7::DnsSelector>),
    /// Cilium's entities `host` (`own`) and `remote-node` (`others`), relative to the subject (the policy's
    /// selected pod): the addresses of the Node it runs on, and so the hostNetwork pods there; the addresses of
    /// every other Node. A subject whose Node is not in the input has no `host`, and every Node is its
    /// `remote-node`.
    SubjectNodes {
        own: bool,
        others: bool,
    },
    /// Cilium's `fromNodes`/`toNodes` entry: the addresses of the Nodes whose labels the selector matches (and so
    /// the hostNetwork pods there), except the subject's own Node (Cilium adds `reserved:remote-node` to the
    /// selector: `pkg/k8s/apis/cilium.io/utils/utils.go`), relative to the subject as [`Peer::SubjectNodes`] is.
    NodeSelector(CalicoExpr),
}

/// The endpoint part of a Calico entity rule (`source` or `destination` without `ports`/`notPorts`). Every
/// criterion present must hold (AND). An address matches a selector when it is the address of an endpoint the
/// selector matches — a pod (workload endpoint) by its labels, or a network set by its labels when the address
/// is in one of its nets — as Felix matches selectors through IP sets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CalicoPeer {
    /// The combined selector Calico builds from `selector`, `namespaceSelector` (keys prefixed `pcns.`),
    /// `serviceAccounts` (`pcsa.` and `projectcalico.org/serviceaccount`) and, in a namespaced policy, its own
    /// namespace (`projectcalico.org/namespace == ns`) — libcalico-go's `getEndpointSelector`. `None`: no
    /// endpoint criterion.
    pub selector: Option<CalicoExpr>,
    /// `notSelector` as written (not limited to a namespace): endpoints it matches are excluded.
    pub not_selector: Option<CalicoExpr>,
    /// `nets` (host bits masked off): the address is in one of them. Empty: no criterion.
    pub nets: Vec<IpNet>,
    /// `notNets`: the address is in none of them, and (as Felix renders rules per IP family) one of them is of
    /// its family.
    pub not_nets: Vec<IpNet>,
    /// The rule's `ipVersion` (4 or 6): only addresses of that family.
    pub ip_version: Option<u8>,
    /// Cilium's CIDR peers and `world`: only addresses that are no pod's and no node's (those carry their own
    /// identity in Cilium, and a CIDR never selects them). Never set for Calico.
    pub outside_only: bool,
    /// Cilium: made by the resolution of an entity or `toServices` placeholder from the cluster's Nodes, Services
    /// and endpoints (`load/cilium_refs.rs`): a peer (or a node rule's own side) that each resolution drops and
    /// makes again, so that it follows those objects. Never set for Calico; no criterion of its own.
    pub generated: bool,
}

impl CalicoPeer {
    /// Whether the peer has no criterion at all (it matches every address).
    pub fn is_any(&self) -> bool {
        self.selector.is_none()
            && self.not_selector.is_none()
            && self.nets.is_empty()
            && self.not_nets.is_empty()
            && self.ip_version.is_none()
            && !self.outside_only
    }
}

/// `selector (…), notSelector (…), nets a, b, notNets c, ipVersion 4`: the criteria present; `any address`
/// when there are none.
impl fmt::Display for CalicoPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |v: &[IpNet]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ");
        // A Cilium placeholder: what it stands for is in the peers and rules resolving it made.
        if let Some(CalicoExpr::And(terms)) = &self.selector {
            if let (Some(CalicoExpr::Eq { key, value }), Some(CalicoExpr::Eq { key: k2, value: path })) =
                (terms.first(), terms.get(1))
            {
                if key == cilium_keys::REF && k2 == cilium_keys::REF_PATH {
                    let what = match value.as_str() {
                        "service" | "service-selector" => "the `toServices` entry".to_string(),
                        "cluster-apiserver" => "the API server part of entity `cluster`".to_string(),
                        "nodes" => "the node selector".to_string(),
                        entity => format!("entity `{entity}`"),
                    };
                    return write!(f, "{what} at {path}, as written (resolved from the cluster's objects)");
                }
            }
        }
        let mut parts = Vec::new();
        if let Some(s) = &self.selector {
            parts.push(format!("selector {s}"));
        }
        if let Some(s) = &self.not_selector {
            parts.push(format!("notSelector {s}"));
        }
        if !self.nets.is_empty() {
            parts.push(format!("nets {}", join(&self.nets)));
        }
        if !self.not_nets.is_empty() {
            parts.push(format!("notNets {}", join(&self.not_nets)));
        }
        if self.outside_only {
            parts.push("outside the cluster".to_string());
        }
        if let Some(v) = self.ip_version {
            parts.push(format!("ipVersion {v}"));
        }
        if parts.is_empty() {
            return f.write_str("any address");
        }
        f.write_str(&parts.join(", "))
    }
}

/// What a Calico rule has beyond a v1 rule's peers and ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CalicoRule {
    /// The subject's own side (`destination` of an ingress rule, `source` of an egress rule) when it has endpoint
    /// criteria: the rule applies only when the subject's address matches them.
    pub local: Option<CalicoPeer>,
    /// `protocol`, as an IANA number (`TCP` 6, `UDP` 17, `ICMP` 1, `ICMPv6` 58, `SCTP` 132, `UDPLite` 136).
    pub protocol: Option<u8>,
    /// `notProtocol`, as an IANA number.
    pub not_protocol: Option<u8>,
    /// The destination's `notPorts` (with the rule's protocol).
    pub not_ports: Vec<PolicyPort>,
    /// `icmp`: the ICMP (or ICMPv6) type and, if given, code the packet must have (`protocol` is then ICMP or
    /// ICMPv6). `None`: no ICMP criterion (also for an `icmp` with neither field).
    pub icmp: Option<(u8, Option<u8>)>,
    /// `notICMP`: packets of this ICMP type (and code, if given) do not match.
    pub not_icmp: Option<(u8, Option<u8>)>,
    /// The source's `ports` (with the rule's protocol; a named port without a protocol once per protocol),
    /// whichever side the source is: the source port must be one of them. netpol's flows have no source port, so
    /// a rule with `src_ports` or `not_src_ports` matches no traffic in netpol's answers (the loader warns).
    pub src_ports: Vec<PolicyPort>,
    /// The source's `notPorts`: the source port must be none of them.
    pub not_src_ports: Vec<PolicyPort>,
    /// Why netpol cannot evaluate this rule (a `services` match, an `http` match), if it cannot: the rule then
    /// matches no traffic in netpol's answers, and explain says why (the loader warns).
    pub unsupported: Option<String>,
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
    /// Antrea's `Reject`: denied, and the sender is answered (a TCP reset, or ICMP "administratively
    /// prohibited") instead of left to time out. Every verdict treats it as [`Action::Deny`].
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Pass => "pass",
            Action::Log => "log",
            Action::Reject => "reject",
        }
    }

    /// What the action decides: [`Action::Reject`] decides as [`Action::Deny`] does.
    pub fn decision(self) -> Action {
        match self {
            Action::Reject => Action::Deny,
            a => a,
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
    /// `projectcalico.org/v3` (or `crd.projectcalico.org/v1`) NetworkPolicy: namespaced, in a Calico tier.
    CalicoNetworkPolicy,
    /// `projectcalico.org/v3` GlobalNetworkPolicy: cluster-scoped, in a Calico tier.
    GlobalNetworkPolicy,
    /// `cilium.io/v2` CiliumNetworkPolicy: namespaced. One object becomes up to three policies (see
    /// [`crate::load`]'s Cilium frontend): its deny rules in the Cilium deny tier, its allow rules where they
    /// isolate (the NetworkPolicy tier), and those of a direction with `enableDefaultDeny: false` in the Cilium
    /// allow tier.
    CiliumNetworkPolicy,
    /// `cilium.io/v2` CiliumClusterwideNetworkPolicy: cluster-scoped, split as a CiliumNetworkPolicy is.
    CiliumClusterwideNetworkPolicy,
    /// `crd.antrea.io/v1beta1` ClusterNetworkPolicy (ACNP): cluster-scoped, in an Antrea tier. One object lowers
    /// to one policy per rule (see [`Policy::position`]), so that rules with their own `appliedTo` and policies of
    /// equal priority are ordered as Antrea orders them.
    AntreaClusterNetworkPolicy,
    /// `crd.antrea.io/v1beta1` NetworkPolicy (ANNP): namespaced, in an Antrea tier, lowered as an ACNP is.
    AntreaNetworkPolicy,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            PolicyKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            PolicyKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
            PolicyKind::CalicoNetworkPolicy => "NetworkPolicy.projectcalico.org",
            PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            PolicyKind::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            PolicyKind::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
            PolicyKind::AntreaClusterNetworkPolicy => "ClusterNetworkPolicy.crd.antrea.io",
            PolicyKind::AntreaNetworkPolicy => "NetworkPolicy.crd.antrea.io",
        }
    }
    /// Whether this is one of Antrea's kinds.
    pub fn is_antrea(self) -> bool {
        matches!(self, PolicyKind::AntreaClusterNetworkPolicy | PolicyKind::AntreaNetworkPolicy)
    }
    /// Whether this is one of Cilium's kinds.
    pub fn is_cilium(self) -> bool {
        matches!(self, PolicyKind::CiliumNetworkPolicy | PolicyKind::CiliumClusterwideNetworkPolicy)
    }
    /// kubectl's short name, used in references to cluster-scoped policies (`anp/name`).
    pub fn short(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "netpol",
            PolicyKind::ClusterNetworkPolicy => "cnp",
            PolicyKind::AdminNetworkPolicy => "anp",
            PolicyKind::BaselineAdminNetworkPolicy => "banp",
            PolicyKind::CalicoNetworkPolicy => "caliconetworkpolicy",
            PolicyKind::GlobalNetworkPolicy => "gnp",
            PolicyKind::CiliumNetworkPolicy => "ciliumnetworkpolicy",
            PolicyKind::CiliumClusterwideNetworkPolicy => "ccnp",
            PolicyKind::AntreaClusterNetworkPolicy => "acnp",
            PolicyKind::AntreaNetworkPolicy => "annp",
        }
    }
    /// Whether policies of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(
            self,
            PolicyKind::NetworkPolicy
                | PolicyKind::CalicoNetworkPolicy
                | PolicyKind::CiliumNetworkPolicy
                | PolicyKind::AntreaNetworkPolicy
        )
    }
    /// Calico's kind name, used to break ties between equal orders (Felix compares `name/namespace/kind`).
    pub fn calico_kind(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "KubernetesNetworkPolicy",
            PolicyKind::ClusterNetworkPolicy
            | PolicyKind::AdminNetworkPolicy
            | PolicyKind::BaselineAdminNetworkPolicy => "KubernetesClusterNetworkPolicy",
            PolicyKind::CalicoNetworkPolicy => "NetworkPolicy",
            PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            PolicyKind::CiliumNetworkPolicy => "CiliumNetworkPolicy",
            PolicyKind::CiliumClusterwideNetworkPolicy => "CiliumClusterwideNetworkPolicy",
            PolicyKind::AntreaClusterNetworkPolicy => "AntreaClusterNetworkPolicy",
            PolicyKind::AntreaNetworkPolicy => "AntreaNetworkPolicy",
        }
    }
}

/// The tier a policy belongs to. The three built-in tiers are Calico's `kube-admin` (order 1,000),
/// `default` (1,000,000) and `kube-baseline` (10,000,000); Calico's own tiers go between, by their order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PolicyTier {
    /// ClusterNetworkPolicy tier Admin, AdminNetworkPolicy; Calico's `kube-admin`.
    Admin,
    /// NetworkPolicies; Calico's `default` tier.
    #[default]
    NetworkPolicy,
    /// ClusterNetworkPolicy tier Baseline, BaselineAdminNetworkPolicy; Calico's `kube-baseline`.
    Baseline,
    /// A Calico tier of its own: its index in [`Cluster::tiers`].
    Custom(u32),
}

impl PolicyTier {
    /// The built-in tiers' names in the upstream Kubernetes vocabulary.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyTier::Admin => "Admin",
            PolicyTier::NetworkPolicy => "NetworkPolicy",
            PolicyTier::Baseline => "Baseline",
            PolicyTier::Custom(_) => "Custom",
        }
    }
    /// Index of this tier in [`Cluster::tiers`] (the built-in tiers are the first three).
    pub fn index(self) -> usize {
        match self {
            PolicyTier::Admin => 0,
            PolicyTier::NetworkPolicy => 1,
            PolicyTier::Baseline => 2,
            PolicyTier::Custom(i) => i as usize,
        }
    }
    /// The tier at `index` of [`Cluster::tiers`].
    pub fn from_index(index: usize) -> PolicyTier {
        match index {
            0 => PolicyTier::Admin,
            1 => PolicyTier::NetworkPolicy,
            2 => PolicyTier::Baseline,
            i => PolicyTier::Custom(i as u32),
        }
    }
}

/// A tier: a Calico `Tier` object, or one of the three built-in tiers.
#[derive(Clone, Debug, PartialEq)]
pub struct TierDef {
    /// Shown in answers: `Admin`, `NetworkPolicy`, `Baseline` for the built-in tiers (`kube-admin`, `default`,
    /// `kube-baseline` when the input has Calico objects), else the Tier's name.
    pub name: String,
    /// `spec.order`: lower first; `None` is after every ordered tier. Equal orders go by name.
    pub order: Option<f64>,
    /// `spec.defaultAction`: what happens to traffic of an endpoint some policy of the tier selects when no rule
    /// decides: [`Action::Deny`] or [`Action::Pass`] (to the next tier).
    pub default_action: Action,
    /// The Tier object, if one was read.
    pub origin: Option<Origin>,
    /// Antrea's regular tiers (and the Admin tier among them when Antrea's tiers are present): traffic a `Pass`
    /// rule passes skips every later tier up to the NetworkPolicy tier, instead of going on to the next tier.
    pub pass_to_network_policy: bool,
}

impl TierDef {
    /// The three built-in tiers, in the upstream Kubernetes vocabulary.
    pub fn builtin() -> Vec<TierDef> {
        let t = |name: &str, order: f64, default_action| TierDef {
            name: name.to_string(),
            order: Some(order),
            default_action,
            origin: None,
            pass_to_network_policy: false,
        };
        vec![
            t("Admin", 1_000.0, Action::Pass),
            t("NetworkPolicy", 1_000_000.0, Action::Deny),
            t("Baseline", 10_000_000.0, Action::Pass),
        ]
    }
}

/// A policy's order within its tier (Calico's `order`, the admin kinds' `priority`): lower first; `None` (no
/// order) after every ordered policy. Totally ordered; equal orders go by name, namespace and kind.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Order(pub Option<f64>);

/// A whole number as an integer (`10`, not `10.0`), else the float; `null` for no order.
impl Serialize for Order {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => s.serialize_i64(v as i64),
            Some(v) => s.serialize_f64(v),
            None => s.serialize_none(),
        }
    }
}

impl Order {
    fn key(self) -> f64 {
        self.0.unwrap_or(f64::INFINITY)
    }
}

impl Eq for Order {}

impl PartialOrd for Order {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Order {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().total_cmp(&other.key())
    }
}

impl std::hash::Hash for Order {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.key().to_bits().hash(h)
    }
}

impl From<u32> for Order {
    fn from(v: u32) -> Order {
        Order(Some(f64::from(v)))
    }
}

/// The number as written (`10`, `10.5`), or `none`.
impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("none"),
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
    /// Calico rules: protocol filters, `notPorts` and the subject's own side. `peers` then holds at most one
    /// [`Peer::Calico`] (the other side), and `ports` the destination's `ports` with the rule's protocol.
    pub calico: Option<Box<CalicoRule>>,
    /// Cilium: the L7 rules of the rule's `toPorts` entry. The connection is accepted at L3/L4 and handed to a
    /// proxy, which lets through only the requests the rules allow.
    pub l7: Option<std::sync::Arc<crate::l7::L7Rules>>,
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
    /// Admin kinds: `priority`. Calico kinds: `order`. NetworkPolicies: 1000 (where Calico puts them).
    pub order: Order,
    pub scope: Scope,
    pub name: String,
    /// The subject's pods (in the namespaces of `scope`).
    pub pod_selector: Selector,
    /// Calico kinds: the subject selector as Calico combines it (`selector`, `namespaceSelector` with `pcns.`
    /// keys, `serviceAccountSelector` with `pcsa.` keys, and the own namespace of a namespaced policy), matched
    /// against an endpoint's Calico labels (see [`calico_labels`]); `pod_selector` then selects everything.
    pub calico_selector: Option<CalicoExpr>,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    /// Effective policyTypes after defaulting.
    pub affects_ingress: bool,
    pub affects_egress: bool,
    /// A GlobalNetworkPolicy's host-endpoint flags (all false for every other kind).
    pub host: HostFlags,
    pub origin: Origin,
    /// Antrea's kinds: the index of the object's rule this policy holds among the object's rules of its direction
    /// (`spec.ingress[i]` or `spec.egress[i]`: a direction is decided by its own rules only), so that within a tier
    /// and a priority the rules of policies of equal priority interleave by rule index, as Antrea's OVS priorities
    /// order them. 0 for every other kind.
    pub position: u32,
    /// The object as its author wrote it (YAML), for kinds that cannot be written back from the model: a Cilium
    /// object lowers to several policies (up to three per rule), and each keeps the whole object's text, shared.
    /// `None` for every other kind (their manifests are rendered from the model).
    pub manifest: Option<std::sync::Arc<str>>,
}

/// A GlobalNetworkPolicy's `doNotTrack`, `preDNAT` and `applyOnForward`: where on a host endpoint's paths it
/// applies (see [`crate::host`]). An untracked or pre-DNAT policy applies to host endpoints only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostFlags {
    pub do_not_track: bool,
    pub pre_dnat: bool,
    pub apply_on_forward: bool,
    /// A Cilium host policy (a CiliumClusterwideNetworkPolicy rule with `nodeSelector`): `calico_selector` selects
    /// Nodes by their labels, and the policy governs those nodes' host endpoints (see [`crate::host`]), never a pod.
    pub cilium_host: bool,
}

impl HostFlags {
    /// Whether the policy applies to workload endpoints (pods) at all: untracked and pre-DNAT policies and Cilium's
    /// host policies do not.
    pub fn applies_to_workloads(self) -> bool {
        !self.do_not_track && !self.pre_dnat && !self.cilium_host
    }
}

impl Peer {
    /// Cilium's entities a [`Peer::SubjectNodes`] stands for (`entity host`, `entity remote-node`, or both).
    pub fn subject_nodes_text(own: bool, others: bool) -> String {
        match (own, others) {
            (true, true) => "entities host, remote-node".to_string(),
            (true, false) => "entity host (the subject's node)".to_string(),
            (false, true) => "entity remote-node (every other node)".to_string(),
            (false, false) => "no entity".to_string(),
        }
    }
}

impl Policy {
    /// A NetworkPolicy's namespace; `None` for cluster-scoped policies.
    pub fn ns(&self) -> Option<NsId> {
        match self.scope {
            Scope::Namespace(ns) => Some(ns),
            Scope::Cluster(_) => None,
        }
    }

    /// Whether the policy's subject is a pod with `pod_labels` in namespace `ns` labelled `ns_labels`, whose
    /// Calico labels `calico` gives (asked only for Calico kinds; hostNetwork pods are never a subject: callers
    /// leave them out).
    pub fn selects(&self, ns: NsId, ns_labels: &Labels, pod_labels: &Labels, calico: impl FnOnce() -> Labels) -> bool {
        let in_scope = match &self.scope {
            Scope::Namespace(own) => *own == ns,
            Scope::Cluster(sel) => sel.matches(ns_labels),
        };
        in_scope
            && match &self.calico_selector {
                Some(expr) => expr.matches(&calico()),
                None => self.pod_selector.matches(pod_labels),
            }
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

/// `namespace/name` for a NetworkPolicy, `anp/name` (kubectl's short kind) for a cluster-scoped policy,
/// `caliconetworkpolicy/namespace/name` for a Calico NetworkPolicy (`annp/namespace/name` for Antrea's).
impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PolicyKind::NetworkPolicy => write!(f, "{}/{}", self.namespace, self.name),
            PolicyKind::CalicoNetworkPolicy | PolicyKind::CiliumNetworkPolicy | PolicyKind::AntreaNetworkPolicy => {
                write!(f, "{}/{}/{}", self.kind.short(), self.namespace, self.name)
            }
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

/// A Calico HostEndpoint: one or all of a node's interfaces, whose traffic to and from the host (and, for
/// `applyOnForward` policies, through it) Calico's GlobalNetworkPolicies govern (see [`crate::host`]).
#[derive(Clone, Debug)]
pub struct HostEndpoint {
    pub name: String,
    /// `spec.node`.
    pub node: String,
    /// `spec.interfaceName`: `*` (every interface of the host), an interface name, or `None`.
    pub interface: Option<String>,
    /// `spec.expectedIPs`: the addresses Calico's selectors match it by, and the addresses netpol takes as the
    /// host's for flows (see `Engine::host_endpoint_addresses`).
    pub expected_ips: Vec<IpAddr>,
    pub labels: Labels,
    /// `spec.profiles`, in order.
    pub profiles: Vec<String>,
    /// `spec.ports`: named ports that policy rules can refer to.
    pub ports: Vec<ContainerPort>,
    pub origin: Origin,
}

impl HostEndpoint {
    /// Whether it governs every interface of its node (`interfaceName: "*"`).
    pub fn all_interfaces(&self) -> bool {
        self.interface.as_deref() == Some("*")
    }
}

/// A Calico NetworkSet (namespaced) or GlobalNetworkSet: labelled addresses that Calico selectors match.
#[derive(Clone, Debug)]
pub struct NetworkSet {
    /// `None` for a GlobalNetworkSet.
    pub ns: Option<NsId>,
    pub name: String,
    /// The object's own labels.
    pub labels: Labels,
    /// `spec.nets` (host bits masked off; a bare address is a /32 or /128).
    pub nets: Vec<IpNet>,
    pub origin: Origin,
}

impl NetworkSet {
    /// Whether this is a CiliumCIDRGroup (see [`cilium_keys::CIDR_GROUP`]).
    pub fn is_cidr_group(&self) -> bool {
        self.ns.is_none() && self.labels.contains_key(cilium_keys::CIDR_GROUP)
    }
}

/// A ServiceAccount: its labels are what Calico's `serviceAccounts.selector` matches (`pcsa.` labels).
#[derive(Clone, Debug)]
pub struct ServiceAccount {
    pub ns: NsId,
    pub name: String,
    pub labels: Labels,
    /// `None` when the account was only referenced by a pod, not declared.
    pub origin: Option<Origin>,
}

/// A Service (`v1`): what Cilium's `toServices` select by (name, namespace, labels) and how it reaches its
/// backends (its pod selector, if any).
#[derive(Clone, Debug)]
pub struct Service {
    /// The namespace's name (a Service does not create its namespace in the model).
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// `spec.selector`: `None` (or empty) for a Service without a selector, whose endpoints are kept by hand.
    pub selector: Option<Labels>,
    pub origin: Origin,
}

impl Service {
    /// Whether the Service selects its backends by labels (Cilium calls a Service without one "external").
    pub fn has_selector(&self) -> bool {
        self.selector.as_ref().is_some_and(|s| !s.is_empty())
    }
}

/// The endpoint addresses of one Service from one EndpointSlice (`discovery.k8s.io/v1`, tied to its Service by
/// the `kubernetes.io/service-name` label) or Endpoints object (`v1`, named after its Service).
#[derive(Clone, Debug)]
pub struct ServiceEndpoints {
    /// `EndpointSlice` or `Endpoints`.
    pub kind: &'static str,
    pub namespace: String,
    /// The object's own name (an EndpointSlice's is not its Service's).
    pub name: String,
    /// The Service's name.
    pub service: String,
    /// The ready addresses (and the terminating ones still serving), in order.
    pub addresses: Vec<IpAddr>,
    pub origin: Origin,
}

/// A staged policy's `stagedAction`: what enforcing it would do to the enforced policy of the same kind,
/// namespace and name (Calico's `projectcalico.org/v3` staged kinds; omitted, it is `Set`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum StagedAction {
    /// Create the policy, or replace the one of that name.
    #[default]
    Set,
    /// Delete the policy of that name (the staged object then has no spec but, for the Calico kinds, a tier).
    Delete,
    /// Set by Calico Enterprise's policy recommendation while it learns; upstream treats it as `Set` (validated
    /// and sent to Felix as a whole policy, part of the pending verdict).
    Learn,
    /// As `Learn`, for a recommendation the user chose to ignore; upstream treats it as `Set` too.
    Ignore,
}

impl StagedAction {
    /// As written in manifests: `Set`, `Delete`, `Learn`, `Ignore`.
    pub fn as_str(self) -> &'static str {
        match self {
            StagedAction::Set => "Set",
            StagedAction::Delete => "Delete",
            StagedAction::Learn => "Learn",
            StagedAction::Ignore => "Ignore",
        }
    }
}

impl fmt::Display for StagedAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A staged policy (StagedNetworkPolicy, StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy): never
/// enforced, kept apart from [`Cluster::policies`] so that it changes no enforced answer. `Cluster::with_staged`
/// gives the cluster as if the staged policies were enforced.
#[derive(Clone, Debug)]
pub struct StagedPolicy {
    pub action: StagedAction,
    /// The namespace of a StagedNetworkPolicy or StagedKubernetesNetworkPolicy, by name (it may be declared or
    /// referenced by nothing else: the enforced cluster does not get it; the staged view does).
    pub namespace: Option<String>,
    /// The would-be enforced policy, converted as the enforced kind is (a StagedKubernetesNetworkPolicy is a
    /// [`PolicyKind::NetworkPolicy`], the others a Calico NetworkPolicy or GlobalNetworkPolicy), with the staged
    /// object's origin. For `Delete` only its kind, namespace, name and origin count (no rules). A namespaced
    /// policy's `scope` is its namespace when the enforced cluster has it, else (a placeholder) the cluster-wide
    /// selector of that namespace's name label; `Cluster::with_staged` resolves it.
    pub policy: Policy,
    /// The tier the policy names when no Tier object declares it and no enforced policy is in it (the loader
    /// warns): the staged view adds it, as the loader adds such tiers for enforced policies (no order, default
    /// action Deny); `policy.tier` is then a placeholder.
    pub implicit_tier: Option<String>,
}

impl StagedPolicy {
    /// The staged object's kind.
    pub fn staged_kind(&self) -> &'static str {
        match self.policy.kind {
            PolicyKind::NetworkPolicy => "StagedKubernetesNetworkPolicy",
            PolicyKind::GlobalNetworkPolicy => "StagedGlobalNetworkPolicy",
            _ => "StagedNetworkPolicy",
        }
    }

    /// The enforced policy it sets or deletes (kind, namespace, name).
    pub fn key(&self) -> PolicyKey {
        PolicyKey {
            kind: self.policy.kind,
            namespace: self.namespace.clone().unwrap_or_default(),
            name: self.policy.name.clone(),
        }
    }

    /// `StagedNetworkPolicy shop/name`, `StagedGlobalNetworkPolicy name`: the object, as diagnostics name it.
    pub fn object_ref(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.staged_kind(), self.policy.name),
            None => format!("{} {}", self.staged_kind(), self.policy.name),
        }
    }
}

/// A loaded cluster: the input of every later stage.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub policies: Vec<Policy>,
    pub nodes: Vec<Node>,
    /// The built-in tiers (indexes 0, 1, 2: see [`PolicyTier::index`]), then Calico's own tiers.
    pub tiers: Vec<TierDef>,
    pub network_sets: Vec<NetworkSet>,
    pub service_accounts: Vec<ServiceAccount>,
    /// Staged policies, in input order: never part of the enforced answers (see [`StagedPolicy`]).
    pub staged: Vec<StagedPolicy>,
    /// Calico HostEndpoints, in input order.
    pub host_endpoints: Vec<HostEndpoint>,
    /// Services and their endpoints (EndpointSlices and Endpoints), in input order: what Cilium's `toServices`
    /// and `kube-apiserver` entity are resolved against when loading.
    pub services: Vec<Service>,
    pub service_endpoints: Vec<ServiceEndpoints>,
    /// Antrea: the policies' `appliedTo` entries and group peers, with what they resolved to (see [`AntreaRef`]).
    pub antrea_refs: Vec<AntreaRef>,
    /// Antrea's objects (Tier, ClusterGroup, Group, ACNP, ANNP) as decoded, in input order: their lowering (the
    /// policies of Antrea's kinds, Antrea's tiers) depends on the other objects and on the namespaces and Services,
    /// so they are kept to be lowered again on a changed cluster (`load::relower_antrea`, `Engine::update`).
    pub antrea: Vec<AntreaObject>,
}

/// An `appliedTo` entry of an Antrea policy (ACNP or ANNP), or a peer of it that references a ClusterGroup or
/// Group, with what it resolved to: the loader inlines groups and splits policies per entry, and lint reads these
/// to say which entry or group selects nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct AntreaRef {
    /// The referring policy.
    pub policy: PolicyKey,
    pub origin: Origin,
    /// The entry's field in the policy (`spec.appliedTo[0]`, `spec.ingress[1].appliedTo[0]`,
    /// `spec.ingress[1].from[0]`).
    pub field: String,
    /// The group it references (`ClusterGroup` from an ACNP, `Group` from an ANNP), if any.
    pub group: Option<String>,
    /// Whether that group exists in the input (a missing group is admitted, and matches nothing).
    pub exists: bool,
    /// An `appliedTo` entry (its members are the subject) rather than a peer.
    pub applied_to: bool,
    /// What the entry resolved to, as peers (an `appliedTo` entry's subjects: their namespaces and pods; a
    /// `serviceAccount` entry's, an expression selector over the pods' namespace and service account).
    pub members: Vec<Peer>,
}

/// One of Antrea's objects (Tier, ClusterGroup, Group, ClusterNetworkPolicy, NetworkPolicy), decoded and validated
/// on its own, before admission against the other objects and lowering (see `load::relower_antrea`).
#[derive(Clone, Debug)]
pub struct AntreaObject {
    pub(crate) item: std::sync::Arc<crate::load::antrea::AntreaItem>,
    pub origin: Origin,
    /// The object as diagnostics name it (`ACNP name`, ...).
    pub label: String,
}

impl Default for Cluster {
    fn default() -> Cluster {
        Cluster {
            namespaces: Vec::new(),
            pods: Vec::new(),
            policies: Vec::new(),
            nodes: Vec::new(),
            tiers: TierDef::builtin(),
            network_sets: Vec::new(),
            service_accounts: Vec::new(),
            staged: Vec::new(),
            host_endpoints: Vec::new(),
            services: Vec::new(),
            service_endpoints: Vec::new(),
            antrea_refs: Vec::new(),
            antrea: Vec::new(),
        }
    }
}

/// Calico's label keys and prefixes (api `v3/constants.go`, libcalico-go `conversion/constants.go`).
pub mod calico_keys {
    /// Added to workload endpoints and namespaced network sets: their namespace.
    pub const NAMESPACE: &str = "projectcalico.org/namespace";
    /// Added to workload endpoints: their pod's service account.
    pub const SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
    /// Added to workload endpoints: `k8s`.
    pub const ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
    /// Namespace labels, as the namespace's profile gives them to its endpoints.
    pub const NS_PREFIX: &str = "pcns.";
    /// Service-account labels, as the account's profile gives them to its pods' endpoints.
    pub const SA_PREFIX: &str = "pcsa.";
    /// A profile's name label (`pcns.projectcalico.org/name`, `pcsa.projectcalico.org/name`).
    pub const NAME: &str = "projectcalico.org/name";
}

/// The labels Calico's selectors see on a pod's workload endpoint: the pod's labels, its namespace, orchestrator
/// and service account, and those its namespace's and service account's profiles give it (`pcns.`/`pcsa.`
/// prefixed, with their `projectcalico.org/name`). The endpoint's own labels win over a profile's.
pub fn calico_labels(pod_labels: &Labels, ns: &Namespace, sa: Option<&ServiceAccount>, sa_name: &str) -> Labels {
    use calico_keys::*;
    let mut v: Vec<(String, String)> = Vec::new();
    for (k, val) in ns.labels.iter() {
        v.push((format!("{NS_PREFIX}{k}"), val.to_string()));
    }
    v.push((format!("{NS_PREFIX}{NAME}"), ns.name.clone()));
    if let Some(sa) = sa {
        for (k, val) in sa.labels.iter() {
            v.push((format!("{SA_PREFIX}{k}"), val.to_string()));
        }
        v.push((format!("{SA_PREFIX}{NAME}"), sa.name.clone()));
    }
    v.push((NAMESPACE.to_string(), ns.name.clone()));
    v.push((ORCHESTRATOR.to_string(), "k8s".to_string()));
    if !sa_name.is_empty() {
        v.push((SERVICE_ACCOUNT.to_string(), sa_name.to_string()));
    }
    for (k, val) in pod_labels.iter() {
        v.push((k.to_string(), val.to_string()));
    }
    v.into_iter().collect()
}

/// Keys of the labels Cilium gives a pod's endpoint besides its own (`pkg/k8s/apis/cilium.io/const.go`).
pub mod cilium_keys {
    /// The pod's namespace.
    pub const NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// Prefix of the namespace's labels.
    pub const NS_LABELS: &str = "io.cilium.k8s.namespace.labels.";
    /// The pod's service account (`default` when it names none).
    pub const SERVICE_ACCOUNT: &str = "io.cilium.k8s.policy.serviceaccount";
    /// The cluster's name.
    pub const CLUSTER: &str = "io.cilium.k8s.policy.cluster";
    /// The cluster name Cilium uses when none is configured.
    pub const DEFAULT_CLUSTER: &str = "default";
    /// netpol's own label of a CiliumCIDRGroup (a network set in the model): its name. Only CIDR rules'
    /// `cidrGroupRef`/`cidrGroupSelector` name it, so no other selector matches a CIDR group.
    pub const CIDR_GROUP: &str = "netpol:cidr-group";
    /// netpol's own keys of a placeholder peer (an entity or `toServices` entry that depends on the cluster's
    /// Nodes, Services and endpoints: see `load/cilium_refs.rs`): what it stands for, and the field it was written
    /// at. No label has them: it matches nothing, and stays beside the peers resolving it generates.
    pub const REF: &str = "netpol:ref";
    pub const REF_PATH: &str = "netpol:ref-path";
}

/// The labels Cilium's selectors see on a pod (its security identity's `k8s:` labels): the pod's own labels, its
/// namespace, the namespace's labels (`io.cilium.k8s.namespace.labels.*`), its service account and the cluster's
/// name. Label sources are dropped: every one of these has source `k8s`, and selectors of source `k8s`, `any` or
/// none match them alike.
pub fn cilium_labels(pod_labels: &Labels, ns: &Namespace, sa_name: &str) -> Labels {
    use cilium_keys::*;
    let mut v: Vec<(String, String)> = Vec::new();
    for (k, val) in ns.labels.iter() {
        v.push((format!("{NS_LABELS}{k}"), val.to_string()));
    }
    v.push((NAMESPACE.to_string(), ns.name.clone()));
    let sa = if sa_name.is_empty() { "default" } else { sa_name };
    v.push((SERVICE_ACCOUNT.to_string(), sa.to_string()));
    v.push((CLUSTER.to_string(), DEFAULT_CLUSTER.to_string()));
    for (k, val) in pod_labels.iter() {
        v.push((k.to_string(), val.to_string()));
    }
    v.into_iter().collect()
}

/// The labels Calico's selectors see on a network set: its own, and for a namespaced one its namespace and the
/// namespace profile's.
pub fn network_set_labels(set: &NetworkSet, ns: Option<&Namespace>) -> Labels {
    use calico_keys::*;
    let mut v: Vec<(String, String)> = Vec::new();
    if let Some(ns) = ns {
        for (k, val) in ns.labels.iter() {
            v.push((format!("{NS_PREFIX}{k}"), val.to_string()));
        }
        v.push((format!("{NS_PREFIX}{NAME}"), ns.name.clone()));
        v.push((NAMESPACE.to_string(), ns.name.clone()));
    }
    for (k, val) in set.labels.iter() {
        v.push((k.to_string(), val.to_string()));
    }
    v.into_iter().collect()
}

impl Cluster {
    /// Keeps the tiers whose `keep` is true (the built-in three must be kept), renumbering the policies' and the
    /// staged policies' tiers. A staged policy in a tier that goes remembers it by name (the staged view finds it
    /// so).
    pub fn retain_tiers(&mut self, keep: &[bool]) {
        for st in &mut self.staged {
            if st.implicit_tier.is_none() && st.policy.tier.index() >= 3 {
                st.implicit_tier = self.tiers.get(st.policy.tier.index()).map(|t| t.name.clone());
            }
        }
        let mut remap = Vec::with_capacity(keep.len());
        let mut next = 0;
        for k in keep {
            remap.push(next);
            next += usize::from(*k);
        }
        let mut i = 0;
        self.tiers.retain(|_| {
            i += 1;
            keep.get(i - 1).copied().unwrap_or(true)
        });
        for p in &mut self.policies {
            if let Some(new) = remap.get(p.tier.index()) {
                p.tier = PolicyTier::from_index(*new);
            }
        }
        for st in &mut self.staged {
            if let (Some(new), Some(true)) = (remap.get(st.policy.tier.index()), keep.get(st.policy.tier.index())) {
                st.policy.tier = PolicyTier::from_index(*new);
            }
        }
    }

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

    /// The labels the expression selectors (Calico's, and Cilium's as netpol compiles them) see on a pod: see
    /// [`Cluster::endpoint_labels`].
    pub fn pod_calico_labels(&self, pod: &Pod) -> Labels {
        let sa = self.service_accounts.iter().find(|s| s.ns == pod.ns && *s.name == *pod.service_account);
        let views = self.label_views();
        self.endpoint_labels(&pod.labels, pod.ns, sa, &pod.service_account, views)
    }

    /// Which label views endpoints carry: (Calico's, Cilium's). Calico's unless only Cilium objects were loaded.
    pub fn label_views(&self) -> (bool, bool) {
        let cilium = self.has_cilium();
        (self.has_calico() || !cilium, cilium)
    }

    /// A pod's labels as the expression selectors see them, in the views `views` (see
    /// [`Cluster::label_views`]): Calico's ([`calico_labels`]) and Cilium's ([`cilium_labels`]); their extra keys
    /// do not overlap.
    pub fn endpoint_labels(
        &self,
        labels: &Labels,
        ns: NsId,
        sa: Option<&ServiceAccount>,
        sa_name: &str,
        views: (bool, bool),
    ) -> Labels {
        let namespace = self.ns(ns);
        match views {
            (true, false) | (false, false) => calico_labels(labels, namespace, sa, sa_name),
            (false, true) => cilium_labels(labels, namespace, sa_name),
            (true, true) => {
                let calico = calico_labels(labels, namespace, sa, sa_name);
                let cilium = cilium_labels(labels, namespace, sa_name);
                calico.iter().chain(cilium.iter()).map(|(k, v)| (k.to_string(), v.to_string())).collect()
            }
        }
    }

    /// Whether any object of a Calico kind was loaded (answers then use Calico's tier names).
    pub fn has_calico(&self) -> bool {
        // Cilium's CIDR groups are network sets of the model, but no Calico object.
        self.network_sets.iter().any(|s| !s.is_cidr_group())
            || !self.host_endpoints.is_empty()
            || self.tiers.iter().any(|t| t.origin.is_some())
            || self
                .policies
                .iter()
                .any(|p| matches!(p.kind, PolicyKind::CalicoNetworkPolicy | PolicyKind::GlobalNetworkPolicy))
    }

    /// Whether the cluster has Cilium policies: endpoints then carry Cilium's labels too (see
    /// [`cilium_labels`]).
    pub fn has_cilium(&self) -> bool {
        self.policies.iter().any(|p| p.kind.is_cilium())
    }

    /// Whether a rule depends on its subject's node: Cilium's entities `host` and `remote-node`
    /// ([`Peer::SubjectNodes`]).
    pub fn has_cilium_node_rules(&self) -> bool {
        self.policies.iter().filter(|p| p.kind.is_cilium()).any(|p| {
            p.ingress
                .iter()
                .chain(&p.egress)
                .any(|r| r.peers.iter().any(|q| matches!(q, Peer::SubjectNodes { .. } | Peer::NodeSelector(_))))
        })
    }

    pub fn find_pod(&self, ns: &str, name: &str) -> Option<PodId> {
        let ns = self.namespace_id(ns)?;
        self.pods.iter().position(|p| p.ns == ns && p.name == name).map(PodId::new)
    }
}
