//! Antrea's native policy kinds (`crd.antrea.io/v1beta1` ClusterNetworkPolicy (ACNP), NetworkPolicy (ANNP), Tier,
//! ClusterGroup, Group), lowered onto the tiered core.
//!
//! Antrea decides one direction of a Pod by its rules in order of (tier priority, policy priority, rule index),
//! first match: Allow allows (NetworkPolicies and the baseline tier included), Drop and Reject deny, Pass skips the
//! remaining regular tiers (`pkg/agent/types/networkpolicy.go`, `Priority.Less`;
//! `pkg/agent/openflow/network_policy.go`). Then Kubernetes NetworkPolicies decide for the Pods they isolate, then
//! the baseline tier (253), then allow: an Antrea policy never isolates. On tiers:
//!
//! - every Antrea tier is a [`TierDef`] with default action [`Action::Pass`] (it never isolates). The regular tiers
//!   (the static emergency 50, securityops 100, networkops 150, platform 200, application 250 — a policy's tier
//!   when it names none — and custom Tiers) have order = their priority and
//!   [`TierDef::pass_to_network_policy`]; Antrea's baseline tier (253) comes after the NetworkPolicy tier (order
//!   [`BASELINE_ORDER`]). When Antrea objects are loaded the built-in Admin tier (the upstream
//!   ClusterNetworkPolicy's) moves among them at priority 220, as Antrea places it
//!   (`pkg/controller/networkpolicy/clusternetworkpolicy.go`), and the upstream Baseline stays last (254).
//! - every rule of an ACNP or ANNP is a [`Policy`] of its own (kind, name and manifest of the object; `order` the
//!   policy's `priority`; [`Policy::position`] the rule's index among the object's rules of its direction, so that
//!   rules of policies of equal priority interleave by index, as their OVS priorities do), whose subject is the
//!   rule's `appliedTo` or the policy's (one policy per `appliedTo` entry: their union).
//!
//! Peers: `podSelector` (cluster-wide in an ACNP, the policy's namespace in an ANNP), `namespaceSelector`, both
//! (AND), `ipBlock` with `except` (with a selector in the same peer, only the ipBlock counts, as the controller
//! does), `nodeSelector` (Node addresses), `serviceAccount`, `namespaces` (`match: Self` and `sameLabels`: the rule
//! is split per namespace, or per value of the labels, once every Namespace is loaded), ClusterGroup/Group references
//! (their selectors, ipBlocks, serviceReference's Pods and childGroups, inlined once every group is loaded; a group
//! that does not exist matches nothing). An empty peer list matches everything, outside addresses included.
//!
//! Admission (`pkg/controller/networkpolicy/validate.go`, the CRD schemas) is checked with file, document, object
//! and field: tier names and priorities, `appliedTo` in exactly one place, one peer kind per peer, rule names, Pass
//! in the baseline tier, group members. Objects are admitted in input order (a Tier or group may depend on an
//! earlier one).
//!
//! `toServices` matches connections to the Services' ClusterIPs, before load balancing; netpol's flows name the
//! backends, so such a rule matches nothing here (the loader warns).
//!
//! HTTP rules (`l7Protocols`, Allow only) carry their entries as [`crate::l7::L7Rules`] (method exact, path and
//! host exact or with a leading or trailing `*`, as anchored regular expressions), followed in the same policy by
//! their L3/L4 part with Reject: the L7 engine rejects the requests no entry allows, and later rules never see them.
//!
//! What netpol does not model yet is an error naming the field (the object is then not loaded), never a silent
//! drop: `appliedTo` `service` and `nodeSelector` (Node NetworkPolicy),
//! `externalEntitySelector`, `scope: ClusterSet`, `sourcePort`, IGMP.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::objects::{self as obj, IntOrString, LabelSelector, StrictMeta};
use super::validate::{check_labels, convert_rule, convert_selector, meta_name, meta_namespace, Errors};
use super::{Item, Loader, NAMESPACE_NAME_LABEL};
use crate::calico_selector::Expr;
use crate::model::{
    calico_keys, Action, AntreaObject, CalicoPeer, Cluster, Direction, IpBlock, Order, Origin, Peer, Policy,
    PolicyKind, PolicyPort, PolicyTier, PortMatch, Rule, Scope, TierDef,
};
use crate::portset::{icmp_port, icmp_type_range, Protocol};
use crate::selector::{Labels, Selector};

/// Antrea's API group and version.
pub(crate) const API_VERSIONS: &[&str] = &["crd.antrea.io/v1beta1"];

/// The static Tiers the controller creates at start (`pkg/controller/networkpolicy/tier.go`): name, the
/// capitalized spelling admission also accepts, priority.
pub(crate) const STATIC_TIERS: [(&str, &str, u32); 6] = [
    ("emergency", "Emergency", 50),
    ("securityops", "SecurityOps", 100),
    ("networkops", "NetworkOps", 150),
    ("platform", "Platform", 200),
    ("application", "Application", 250),
    ("baseline", "Baseline", 253),
];

/// The priority of Antrea's baseline tier.
const BASELINE_PRIORITY: u32 = 253;
/// The model order of Antrea's baseline tier: after the NetworkPolicy tier (1,000,000), before the upstream
/// Baseline tier (10,000,000).
pub(crate) const BASELINE_ORDER: f64 = 1_000_253.0;
/// Where Antrea puts the upstream ClusterNetworkPolicy's Admin tier among its own.
pub(crate) const ADMIN_PRIORITY: f64 = 220.0;

const NOT_YET: &str = "not modelled by netpol yet: the object is not loaded";

// --- The objects, as Antrea's CRDs define them (`pkg/apis/crd/v1beta1/types.go`). ---

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AntreaPolicyObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<AntreaPolicySpec>,
    #[serde(rename = "status")]
    pub _status: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AntreaPolicySpec {
    pub tier: Option<String>,
    pub priority: Option<f64>,
    pub applied_to: Option<Vec<AppliedTo>>,
    pub ingress: Option<Vec<AntreaRule>>,
    pub egress: Option<Vec<AntreaRule>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppliedTo {
    pub pod_selector: Option<LabelSelector>,
    pub namespace_selector: Option<LabelSelector>,
    pub group: Option<String>,
    pub service_account: Option<NamespacedName>,
    pub service: Option<NamespacedName>,
    pub node_selector: Option<LabelSelector>,
    pub external_entity_selector: Option<IgnoredAny>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct NamespacedName {
    pub name: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // `enableLogging` and `logLabel` are decoded for their type check only
pub struct AntreaRule {
    pub action: Option<String>,
    pub ports: Option<Vec<AntreaPort>>,
    pub protocols: Option<Vec<AntreaProtocol>>,
    pub l7_protocols: Option<Vec<L7Protocol>>,
    pub from: Option<Vec<AntreaPeer>>,
    pub to: Option<Vec<AntreaPeer>>,
    pub to_services: Option<Vec<NamespacedName>>,
    pub name: Option<String>,
    pub enable_logging: Option<bool>,
    pub log_label: Option<String>,
    pub applied_to: Option<Vec<AppliedTo>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AntreaPeer {
    pub pod_selector: Option<LabelSelector>,
    pub namespace_selector: Option<LabelSelector>,
    pub namespaces: Option<PeerNamespaces>,
    pub ip_block: Option<obj::IpBlock>,
    pub group: Option<String>,
    pub fqdn: Option<String>,
    pub service_account: Option<NamespacedName>,
    pub node_selector: Option<LabelSelector>,
    pub scope: Option<String>,
    pub external_entity_selector: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerNamespaces {
    #[serde(rename = "match")]
    pub match_: Option<String>,
    pub same_labels: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AntreaPort {
    pub protocol: Option<String>,
    pub port: Option<IntOrString>,
    pub end_port: Option<i32>,
    pub source_port: Option<i32>,
    pub source_end_port: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AntreaProtocol {
    pub icmp: Option<IcmpProtocol>,
    pub igmp: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IcmpProtocol {
    pub icmp_type: Option<i32>,
    pub icmp_code: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // refused as not modelled; decoded for the field names
pub struct L7Protocol {
    pub http: Option<HttpProtocol>,
    pub tls: Option<TlsProtocol>,
}

/// `TLSProtocol`: the SNI to match (every TLS handshake without it).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsProtocol {
    pub sni: Option<String>,
}

/// `HTTPProtocol`: every field optional; a leading or trailing `*` is a suffix or prefix match.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpProtocol {
    pub host: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AntreaTierObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<AntreaTierSpec>,
    #[serde(rename = "status")]
    pub _status: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // `description` is decoded for its type check only
pub struct AntreaTierSpec {
    pub priority: Option<i64>,
    pub description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupObj {
    #[serde(rename = "apiVersion")]
    pub _api_version: Option<IgnoredAny>,
    #[serde(rename = "kind")]
    pub _kind: Option<IgnoredAny>,
    #[serde(default)]
    pub metadata: StrictMeta,
    pub spec: Option<GroupSpec>,
    #[serde(rename = "status")]
    pub _status: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupSpec {
    pub pod_selector: Option<LabelSelector>,
    pub namespace_selector: Option<LabelSelector>,
    pub node_selector: Option<LabelSelector>,
    pub external_entity_selector: Option<IgnoredAny>,
    pub ip_blocks: Option<Vec<obj::IpBlock>>,
    pub service_reference: Option<NamespacedName>,
    pub child_groups: Option<Vec<String>>,
}

// --- What decoding yields (pure), registered in input order and lowered when every object is loaded. ---

/// One Antrea object, decoded and validated on its own.
#[derive(Debug, Clone)]
pub(crate) enum AntreaItem {
    Tier { name: String, priority: u32 },
    Group(GroupDef),
    Policy(Box<AntreaPolicy>),
}

/// A ClusterGroup (`ns: None`) or Group.
#[derive(Debug, Clone)]
pub(crate) struct GroupDef {
    ns: Option<String>,
    name: String,
    members: Members,
}

#[derive(Debug, Clone)]
enum Members {
    /// `podSelector` and/or `namespaceSelector` (neither: a group without members).
    Selectors {
        pods: Option<Selector>,
        namespaces: Option<Selector>,
    },
    Nodes(Selector),
    IpBlocks(Vec<IpBlock>),
    /// `serviceReference`: the Pods the Service selects.
    Service {
        ns: String,
        name: String,
    },
    Children(Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) struct AntreaPolicy {
    kind: PolicyKind,
    ns: Option<String>,
    name: String,
    /// The tier as written (default `application`).
    tier: String,
    priority: f64,
    applied_to: Vec<Subject>,
    rules: Vec<RuleDef>,
    manifest: Option<std::sync::Arc<str>>,
}

#[derive(Debug, Clone)]
struct RuleDef {
    dir: Direction,
    index: u32,
    /// Peers and ports lowered already; `refs` adds the peers only the whole input resolves.
    rule: Rule,
    refs: Vec<PeerRef>,
    /// The field path of each group reference of `refs`, in order (`spec.ingress[0].from[1]`).
    group_paths: Vec<String>,
    applied_to: Vec<Subject>,
    /// `toServices` entries (`namespace/name`): what netpol does not model (the rule matches nothing).
    to_services: Vec<String>,
}

#[derive(Debug, Clone)]
enum PeerRef {
    Group(String),
    /// `namespaces.match: Self`, with the peer's podSelector.
    SelfNs(Option<Selector>),
    /// `namespaces.sameLabels`, with the peer's podSelector.
    SameLabels(Vec<String>, Option<Selector>),
}

#[derive(Debug, Clone)]
enum Subject {
    Selectors { namespaces: Option<Selector>, pods: Selector },
    Group(String),
    ServiceAccount { ns: String, name: String },
}

impl Subject {
    /// Whether the subject may select pods of `ns` (an ACNP's: an ANNP has no `namespaces` peers to split).
    fn may_select(&self, ns: &crate::model::Namespace) -> bool {
        match self {
            Subject::Selectors { namespaces, .. } => namespaces.as_ref().is_none_or(|s| s.matches(&ns.labels)),
            Subject::ServiceAccount { ns: n, .. } => *n == ns.name,
            Subject::Group(_) => false,
        }
    }
}

/// What the loader keeps of Antrea objects until [`Loader::finish`].
#[derive(Default)]
pub(crate) struct AntreaState {
    /// Custom Tiers admitted: name, priority.
    tiers: Vec<(String, u32)>,
    /// Where each admitted custom Tier, group and policy is, by (kind, namespace, name): for duplicates.
    seen: std::collections::HashMap<(&'static str, Option<String>, String), Origin>,
    groups: BTreeMap<(Option<String>, String), GroupDef>,
    policies: Vec<(AntreaPolicy, Origin)>,
    /// The policies' `appliedTo` entries and group peers, resolved (see [`crate::model::AntreaRef`]).
    pub(crate) refs: Vec<crate::model::AntreaRef>,
    /// Whether any Antrea object was read.
    present: bool,
    /// Every object decoded, in input order (admitted or not): `Cluster::antrea`, what [`relower_antrea`] lowers
    /// again.
    pub(super) sources: Vec<AntreaObject>,
    /// [`Loader::defer_antrea`]: objects are only kept in `sources`, neither admitted nor lowered.
    pub(super) defer: bool,
}

impl AntreaObject {
    /// `Tier`, `ClusterGroup`, `Group`, `ClusterNetworkPolicy` (ACNP) or `NetworkPolicy` (ANNP).
    pub fn kind(&self) -> &'static str {
        match &*self.item {
            AntreaItem::Tier { .. } => "Tier",
            AntreaItem::Group(g) if g.ns.is_some() => "Group",
            AntreaItem::Group(_) => "ClusterGroup",
            AntreaItem::Policy(p) if p.kind == PolicyKind::AntreaNetworkPolicy => "NetworkPolicy",
            AntreaItem::Policy(_) => "ClusterNetworkPolicy",
        }
    }

    /// The namespace of a Group or ANNP; `None` for the cluster-scoped kinds.
    pub fn namespace(&self) -> Option<&str> {
        match &*self.item {
            AntreaItem::Tier { .. } => None,
            AntreaItem::Group(g) => g.ns.as_deref(),
            AntreaItem::Policy(p) => p.ns.as_deref(),
        }
    }

    pub fn name(&self) -> &str {
        match &*self.item {
            AntreaItem::Tier { name, .. } => name,
            AntreaItem::Group(g) => &g.name,
            AntreaItem::Policy(p) => &p.name,
        }
    }

    /// Everything lowering reads of the object (not its origin, nor the text kept for showing it: a cluster's
    /// object changes its `resourceVersion` and `status` there), for comparisons: its `Debug` form.
    pub fn content(&self) -> String {
        match &*self.item {
            AntreaItem::Policy(p) if p.manifest.is_some() => {
                let mut p = p.clone();
                p.manifest = None;
                format!("{:?}", AntreaItem::Policy(p))
            }
            item => format!("{item:?}"),
        }
    }

    /// Where objects of this kind go among the others: Tiers, then groups, then policies (a policy names its
    /// Tier, and admission takes objects in order).
    pub fn rank(&self) -> u8 {
        match &*self.item {
            AntreaItem::Tier { .. } => 0,
            AntreaItem::Group(_) => 1,
            AntreaItem::Policy(_) => 2,
        }
    }
}

/// Whether `t` is one of the tiers [`Loader::finish_antrea`] adds (never declared by an object of the model, never
/// isolating, and either one of Antrea's regular tiers or its baseline tier).
fn is_antrea_tier(t: &TierDef) -> bool {
    t.origin.is_none()
        && t.default_action == Action::Pass
        && (t.pass_to_network_policy || t.order == Some(BASELINE_ORDER))
}

/// Takes out of `c` what lowering Antrea's objects put there: their policies, Antrea's tiers (the Admin tier back
/// at its own place) and the namespaces only their policies named.
fn strip_antrea(c: &mut Cluster) {
    let named: Vec<String> = {
        let mut v: Vec<String> = c
            .policies
            .iter()
            .filter(|p| p.kind.is_antrea())
            .filter_map(|p| p.ns())
            .map(|id| c.namespaces[id.index()].name.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    c.policies.retain(|p| !p.kind.is_antrea());
    c.antrea_refs.clear();
    let keep: Vec<bool> = c.tiers.iter().enumerate().map(|(i, t)| i < 3 || !is_antrea_tier(t)).collect();
    if keep.iter().any(|k| !k) {
        c.retain_tiers(&keep);
    }
    if let (Some(admin), Some(builtin)) = (c.tiers.get_mut(0), TierDef::builtin().into_iter().next()) {
        admin.order = builtin.order;
        admin.pass_to_network_policy = builtin.pass_to_network_policy;
    }
    for name in named {
        let undeclared = c.namespace_id(&name).is_some_and(|id| c.namespaces[id.index()].origin.is_none());
        if undeclared {
            crate::update::remove_unused_namespace(c, &name);
        }
    }
}

/// Lowers `objects` against the namespaces and Services of `c`, which it keeps: the policies, tiers and namespaces
/// lowering adds, the objects as admitted, and the diagnostics.
fn lower_into(c: &mut Cluster, objects: Vec<AntreaObject>) -> Vec<super::Diagnostic> {
    let mut loader = Loader::new();
    loader.seed_namespaces(std::mem::take(&mut c.namespaces));
    loader.services = std::mem::take(&mut c.services);
    for o in objects {
        let item = std::sync::Arc::try_unwrap(o.item).unwrap_or_else(|a| (*a).clone());
        loader.register_antrea(item, o.origin, o.label);
    }
    let mut tiers = std::mem::take(&mut c.tiers);
    loader.finish_antrea(&mut tiers);
    c.tiers = tiers;
    c.namespaces = std::mem::take(&mut loader.namespaces);
    c.services = std::mem::take(&mut loader.services);
    c.policies.append(&mut loader.policies);
    c.antrea = std::mem::take(&mut loader.antrea.sources);
    c.antrea_refs = std::mem::take(&mut loader.antrea.refs);
    std::mem::take(&mut loader.diagnostics)
}

/// The peers and ports of rule `index` of direction `dir` of the Antrea policy `key`, in words, as the object
/// has them (groups by name, `namespaces` peers as written; `describe` shows them): `None` when there is no such
/// rule. No peers is every peer; no ports, every port.
pub fn rule_words(
    c: &Cluster,
    key: &crate::model::PolicyKey,
    dir: Direction,
    index: u32,
) -> Option<(Vec<String>, Vec<String>)> {
    let ns = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
    let p = c.antrea.iter().find_map(|o| match &*o.item {
        AntreaItem::Policy(p) if p.kind == key.kind && p.name == key.name && p.ns.as_deref() == ns => Some(p),
        _ => None,
    })?;
    let r = p.rules.iter().find(|r| r.dir == dir && r.index == index)?;
    let sel = |s: &Option<Selector>| s.as_ref().map(|s| format!(", podSelector `{s}`")).unwrap_or_default();
    let mut peers: Vec<String> = r.rule.peers.iter().map(peer_words).collect();
    peers.extend(r.refs.iter().map(|rf| match rf {
        PeerRef::Group(g) => format!("group {g}"),
        PeerRef::SelfNs(pods) => format!("namespaces: Self{}", sel(pods)),
        PeerRef::SameLabels(keys, pods) => format!("namespaces: sameLabels [{}]{}", keys.join(", "), sel(pods)),
    }));
    if !r.to_services.is_empty() {
        // Its only peer, `Networks([])`, says nothing: name the Services instead.
        peers = vec![format!("toServices {} (not modelled)", r.to_services.join(", "))];
    }
    Some((peers, r.rule.ports.iter().map(ToString::to_string).collect()))
}

/// A peer of an Antrea rule, in words.
fn peer_words(p: &Peer) -> String {
    match p {
        Peer::Selectors { namespaces, pods } => match (namespaces, pods) {
            (Some(n), Some(s)) if n.requirements().is_empty() => format!("podSelector `{s}` (any namespace)"),
            (Some(n), Some(s)) => format!("namespaceSelector `{n}`, podSelector `{s}`"),
            (Some(n), None) => format!("namespaceSelector `{n}`"),
            (None, Some(s)) => format!("podSelector `{s}`"),
            (None, None) => "every pod".to_string(),
        },
        Peer::IpBlock(b) if b.except.is_empty() => format!("ipBlock {}", b.cidr),
        Peer::IpBlock(b) => {
            let except: Vec<String> = b.except.iter().map(ToString::to_string).collect();
            format!("ipBlock {} except {}", b.cidr, except.join(", "))
        }
        Peer::Networks(nets) => {
            let nets: Vec<String> = nets.iter().map(ToString::to_string).collect();
            format!("networks {}", nets.join(", "))
        }
        Peer::Nodes(s) => format!("nodeSelector `{s}`"),
        Peer::DomainNames(names) => format!("fqdn {}", names.join(", ")),
        Peer::Calico(c) => match &c.selector {
            Some(e) => format!("serviceAccount (selector `{e}`)"),
            None => "every endpoint".to_string(),
        },
        other => format!("{other:?}"),
    }
}

/// What netpol does not model in the rules of direction `dir` of the Antrea policy `key`, in words for `explain`
/// (its `toServices` rules, which match nothing in netpol's answers).
pub(crate) fn unmodelled_rules(c: &Cluster, key: &crate::model::PolicyKey, dir: Direction) -> Vec<String> {
    let ns = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
    let Some(p) = c.antrea.iter().find_map(|o| match &*o.item {
        AntreaItem::Policy(p) if p.kind == key.kind && p.name == key.name && p.ns.as_deref() == ns => Some(p),
        _ => None,
    }) else {
        return Vec::new();
    };
    p.rules
        .iter()
        .filter(|r| r.dir == dir && !r.to_services.is_empty())
        .map(|r| {
            format!(
                "{key} spec.{}[{}] ({}): toServices {} matches connections to the Services' ClusterIPs, which \
                 flows never name (they name the backends): not modelled, the rule matches nothing here",
                r.dir.as_str(),
                r.index,
                crate::lint::action_word(key.kind, r.rule.action),
                r.to_services.join(", ")
            )
        })
        .collect()
}

/// Lowers the cluster's Antrea objects (`Cluster::antrea`) again, on its namespaces and Services as they are now:
/// what it lowered before is taken out first. The cluster is then what loading the same objects from files gives
/// (Antrea's objects after the others). Returns the diagnostics of their admission and lowering (a policy whose
/// Tier does not exist, duplicates, groups of Nodes applied to, ...), which depend on the other objects.
pub fn relower_antrea(c: &mut Cluster) -> Vec<super::Diagnostic> {
    let objects = std::mem::take(&mut c.antrea);
    let lowered = c.policies.iter().any(|p| p.kind.is_antrea()) || c.tiers.iter().skip(3).any(is_antrea_tier);
    if objects.is_empty() && !lowered {
        // Nothing of Antrea's, before or now: the cluster is left as it is.
        return Vec::new();
    }
    strip_antrea(c);
    if objects.is_empty() {
        return Vec::new();
    }
    lower_into(c, objects)
}

/// The diagnostics [`relower_antrea`] would give on `c`, without changing it.
pub fn antrea_diagnostics(c: &Cluster) -> Vec<super::Diagnostic> {
    if c.antrea.is_empty() {
        return Vec::new();
    }
    let mut scratch = Cluster {
        namespaces: c.namespaces.clone(),
        services: c.services.clone(),
        tiers: TierDef::builtin(),
        ..Cluster::default()
    };
    lower_into(&mut scratch, c.antrea.clone())
}

// --- Decoding and validation of one object. ---

fn label_kind(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::AntreaNetworkPolicy => "ANNP",
        _ => "ACNP",
    }
}

/// An ACNP or ANNP (`kind` says which); `manifest` the object as written.
pub(crate) fn policy(
    o: AntreaPolicyObj,
    kind: PolicyKind,
    manifest: Option<std::sync::Arc<str>>,
    errs: &mut Errors,
) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let namespaced = kind == PolicyKind::AntreaNetworkPolicy;
    let ns = if namespaced { meta_namespace(&o.metadata.namespace, errs) } else { None };
    check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    let spec = o.spec.unwrap_or_default();
    let priority = match spec.priority {
        None => {
            errs.add("spec.priority", "a policy priority is required");
            None
        }
        Some(p) if !(1.0..=10000.0).contains(&p) => {
            errs.add("spec.priority", format!("must be between 1 and 10000 (got {p})"));
            None
        }
        Some(p) => Some(p),
    };
    let tier = spec.tier.clone().unwrap_or_else(|| "application".to_string());
    let baseline = tier == "baseline" || tier == "Baseline";
    let kind_word = label_kind(kind);
    // appliedTo: in spec or in every rule, never both (validate.go `validateAppliedTo`).
    let rules_all: Vec<(Direction, usize, &AntreaRule)> = spec
        .ingress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| (Direction::Ingress, i, r))
        .chain(spec.egress.iter().flatten().enumerate().map(|(i, r)| (Direction::Egress, i, r)))
        .collect();
    let rule_path = |dir: Direction, i: usize| format!("spec.{}[{i}]", dir.as_str());
    let spec_at = spec.applied_to.as_ref().is_some_and(|a| !a.is_empty());
    let with_at = rules_all.iter().filter(|(_, _, r)| r.applied_to.as_ref().is_some_and(|a| !a.is_empty()));
    if spec_at {
        if let Some((d, i, _)) = with_at.clone().next() {
            errs.add(format!("{}.appliedTo", rule_path(*d, *i)), "appliedTo is set both in spec and in a rule");
        }
    } else if with_at.clone().next().is_none() {
        errs.add("spec.appliedTo", "appliedTo must be set in spec or in every rule");
    } else if let Some((d, i, _)) =
        rules_all.iter().find(|(_, _, r)| r.applied_to.as_ref().is_none_or(|a| a.is_empty()))
    {
        errs.add(
            format!("{}.appliedTo", rule_path(*d, *i)),
            "appliedTo is set in some rules but not in this one: set per rule, it must be set in every rule",
        );
    }
    let has_egress = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
    let applied_to = subjects(spec.applied_to.as_deref(), kind, "spec.appliedTo", has_egress, errs);
    let mut rules = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for (dir, i, r) in &rules_all {
        let path = rule_path(*dir, *i);
        let action = match r.action.as_deref() {
            None => {
                errs.add(format!("{path}.action"), "every rule needs an action (Allow, Drop, Reject or Pass)");
                None
            }
            Some("Allow") => Some(Action::Allow),
            Some("Drop") => Some(Action::Deny),
            Some("Reject") => Some(Action::Reject),
            Some("Pass") => Some(Action::Pass),
            Some(other) => {
                errs.add(
                    format!("{path}.action"),
                    format!("unsupported value `{other}`: supported values: \"Allow\", \"Drop\", \"Reject\", \"Pass\""),
                );
                None
            }
        };
        if action == Some(Action::Pass) && baseline {
            errs.add(format!("{path}.action"), format!("Pass is not allowed in the baseline tier ({kind_word})"));
        }
        let (peers, peer_field) = match dir {
            Direction::Ingress => (r.from.as_deref(), "from"),
            Direction::Egress => (r.to.as_deref(), "to"),
        };
        if *dir == Direction::Ingress && r.to.is_some() {
            errs.add(format!("{path}.to"), "an ingress rule has `from`, not `to`");
        }
        if *dir == Direction::Egress && r.from.is_some() {
            errs.add(format!("{path}.from"), "an egress rule has `to`, not `from`");
        }
        // Ports and protocols.
        let ports: Vec<obj::PolicyPort> = r
            .ports
            .iter()
            .flatten()
            .map(|p| obj::PolicyPort { protocol: p.protocol.clone(), port: p.port.clone(), end_port: p.end_port })
            .collect();
        for (j, p) in r.ports.iter().flatten().enumerate() {
            if p.source_port.is_some() || p.source_end_port.is_some() {
                errs.add(format!("{path}.ports[{j}].sourcePort"), NOT_YET);
            }
        }
        let mut rule = convert_rule(None, Some(&ports), &path, peer_field, errs);
        for (j, p) in r.protocols.iter().flatten().enumerate() {
            let ppath = format!("{path}.protocols[{j}]");
            match (&p.icmp, &p.igmp) {
                (Some(icmp), None) => {
                    if let Some(port) = icmp_port_match(icmp, &format!("{ppath}.icmp"), errs) {
                        rule.ports.push(PolicyPort { protocol: Protocol::Icmp, port });
                    }
                }
                (None, Some(_)) => errs.add(format!("{ppath}.igmp"), NOT_YET),
                _ => errs.add(ppath, "exactly one of icmp and igmp"),
            }
        }
        // L7 (HTTP) rules; toServices.
        let mut l7_rules = None;
        let mut to_services: Vec<String> = Vec::new();
        if let Some(l7) = &r.l7_protocols {
            if action.is_some_and(|a| a != Action::Allow) {
                errs.add(format!("{path}.action"), "l7Protocols need action Allow");
            }
            for (j, p) in r.ports.iter().flatten().enumerate() {
                if p.protocol.as_deref().is_some_and(|p| p != "TCP") {
                    errs.add(format!("{path}.ports[{j}].protocol"), "L7 rules (HTTP, TLS) need protocol TCP (or none)");
                }
            }
            let mut http = Vec::new();
            // TLS rules (the SNI of the handshake): netpol's flows carry no handshake, so they are read, validated
            // and named as not judged (`L7Rules::other`), as Cilium's Kafka rules are; with them in a rule, its
            // HTTP entries are not judged either.
            let mut tls = Vec::new();
            for (j, p) in l7.iter().enumerate() {
                match (&p.http, &p.tls) {
                    (Some(h), None) => http.push(crate::l7::PortRuleHttp {
                        path: glob_regex(h.path.as_deref()),
                        method: h.method.as_deref().map(regex::escape).unwrap_or_default(),
                        host: glob_regex(h.host.as_deref()),
                        ..Default::default()
                    }),
                    (None, Some(t)) => match t.sni.as_deref() {
                        Some(sni)
                            if sni.is_empty()
                                || !sni.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*')) =>
                        {
                            errs.add(
                                format!("{path}.l7Protocols[{j}].tls.sni"),
                                "an SNI may hold letters, digits, '-', '.' and '*' only",
                            );
                        }
                        Some(sni) => tls.push(format!("SNI {sni}")),
                        None => tls.push("any SNI".to_string()),
                    },
                    _ => errs.add(format!("{path}.l7Protocols[{j}]"), "exactly one of http and tls"),
                }
            }
            if !tls.is_empty() {
                let other = Some(format!("TLS ({})", tls.join(", ")));
                l7_rules = Some(std::sync::Arc::new(crate::l7::L7Rules { http, other, ..Default::default() }));
            } else if !http.is_empty() {
                l7_rules = Some(std::sync::Arc::new(crate::l7::L7Rules { http, ..Default::default() }));
            }
        }
        if let Some(ts) = &r.to_services {
            if r.to.is_some() || r.ports.is_some() || r.protocols.is_some() {
                errs.add(path.clone(), "toServices cannot be used with to, ports or protocols");
            } else if !ts.is_empty() {
                for (j, t) in ts.iter().enumerate() {
                    if t.name.is_none() || t.namespace.is_none() {
                        errs.add(format!("{path}.toServices[{j}]"), "toServices entries need name and namespace");
                    }
                }
                errs.warn(
                    format!("{path}.toServices"),
                    "toServices matches connections to the Services' ClusterIPs (before load balancing), which \
                     netpol's flows never name (they name the backends): in netpol's answers this rule matches \
                     nothing",
                );
                to_services = ts
                    .iter()
                    .map(|t| format!("{}/{}", t.namespace.as_deref().unwrap_or(""), t.name.as_deref().unwrap_or("")))
                    .collect();
            }
        }
        let mut refs = Vec::new();
        if !to_services.is_empty() {
            // Only ClusterIPs: no address netpol's flows name.
            rule.peers.push(Peer::Networks(Vec::new()));
        }
        let mut group_paths = Vec::new();
        for (j, p) in peers.into_iter().flatten().enumerate() {
            let ppath = format!("{path}.{peer_field}[{j}]");
            let before = refs.len();
            peer(p, kind, *dir, &ppath, &mut rule.peers, &mut refs, errs);
            if refs.len() > before && matches!(refs.last(), Some(PeerRef::Group(_))) {
                group_paths.push(ppath);
            }
        }
        // Rule names: unique in the policy; an unnamed rule is named after its content (mutate.go), so identical
        // unnamed rules clash.
        let key = match &r.name {
            Some(n) => n.clone(),
            None => format!("{dir}:{:?}:{:?}:{:?}", rule, refs, action),
        };
        let name_path = format!("{path}.name");
        if let Some(first) = names.get(&key) {
            let msg = match &r.name {
                Some(n) => format!("rule name `{n}` is also the name of {first}: rule names must be unique"),
                None => format!("this unnamed rule is identical to {first}: they get the same generated name"),
            };
            errs.add(name_path, msg);
        } else {
            names.insert(key, path.clone());
        }
        let rule_at =
            subjects(r.applied_to.as_deref(), kind, &format!("{path}.appliedTo"), *dir == Direction::Egress, errs);
        rule.action = action.unwrap_or(Action::Deny);
        rule.name.clone_from(&r.name);
        rule.l7 = l7_rules;
        rules.push(RuleDef { dir: *dir, index: *i as u32, rule, refs, group_paths, applied_to: rule_at, to_services });
    }
    Some(Item::Antrea(AntreaItem::Policy(Box::new(AntreaPolicy {
        kind,
        ns: if namespaced { Some(ns?) } else { None },
        name: name?,
        tier,
        priority: priority?,
        applied_to,
        rules,
        manifest,
    }))))
}

/// An HTTP rule's `path` or `host` as the anchored regular expression of [`crate::l7::PortRuleHttp`]: exact, a
/// prefix with a trailing `*`, a suffix with a leading `*` (`l7engine/reconciler.go`); absent or `*`: any.
fn glob_regex(v: Option<&str>) -> String {
    let Some(v) = v.filter(|v| !v.is_empty() && *v != "*") else { return String::new() };
    let (lead, rest) = match v.strip_prefix('*') {
        Some(r) => (".*", r),
        None => ("", v),
    };
    let (rest, trail) = match rest.strip_suffix('*') {
        Some(r) => (r, ".*"),
        None => (rest, ""),
    };
    format!("{lead}{}{trail}", regex::escape(rest))
}

fn icmp_port_match(icmp: &IcmpProtocol, path: &str, errs: &mut Errors) -> Option<PortMatch> {
    let byte = |v: i32, field: &str, errs: &mut Errors| match u8::try_from(v) {
        Ok(b) => Some(b),
        Err(_) => {
            errs.add(format!("{path}.{field}"), format!("must be between 0 and 255 (got {v})"));
            None
        }
    };
    match (icmp.icmp_type, icmp.icmp_code) {
        (None, None) => Some(PortMatch::Any),
        (None, Some(_)) => {
            errs.add(format!("{path}.icmpCode"), "icmpCode needs icmpType");
            None
        }
        (Some(t), None) => {
            let t = byte(t, "icmpType", errs)?;
            let (lo, hi) = icmp_type_range(t);
            Some(PortMatch::Range(lo, hi))
        }
        (Some(t), Some(c)) => {
            let t = byte(t, "icmpType", errs);
            let c = byte(c, "icmpCode", errs);
            let p = icmp_port(t?, c?);
            Some(PortMatch::Range(p, p))
        }
    }
}

/// The `appliedTo` entries at `path`.
fn subjects(
    list: Option<&[AppliedTo]>,
    kind: PolicyKind,
    path: &str,
    has_egress: bool,
    errs: &mut Errors,
) -> Vec<Subject> {
    let mut out = Vec::new();
    let annp = kind == PolicyKind::AntreaNetworkPolicy;
    for (i, a) in list.into_iter().flatten().enumerate() {
        let p = format!("{path}[{i}]");
        let selectors = a.pod_selector.is_some() || a.namespace_selector.is_some();
        let others = [a.group.is_some(), a.service_account.is_some(), a.service.is_some(), a.node_selector.is_some()];
        let n_others = others.iter().filter(|b| **b).count();
        if a.group.is_some() && (selectors || n_others > 1) {
            errs.add(p, "group cannot be set with another field of the appliedTo entry");
            continue;
        }
        if a.node_selector.is_some() && (selectors || n_others > 1) {
            errs.add(p, "nodeSelector cannot be set with another field of the appliedTo entry");
            continue;
        }
        if a.service_account.is_some() && (selectors || n_others > 1) {
            errs.add(p, "serviceAccount cannot be set with another field of the appliedTo entry");
            continue;
        }
        if a.service.is_some() && (selectors || n_others > 1) {
            errs.add(p, "service cannot be set with another field of the appliedTo entry");
            continue;
        }
        if annp && a.namespace_selector.is_some() {
            errs.add(
                format!("{p}.namespaceSelector"),
                "unknown field `namespaceSelector`: an Antrea NetworkPolicy's appliedTo has no namespaceSelector",
            );
            continue;
        }
        if a.external_entity_selector.is_some() {
            errs.add(format!("{p}.externalEntitySelector"), NOT_YET);
            continue;
        }
        if let Some(g) = &a.group {
            out.push(Subject::Group(g.clone()));
        } else if let Some(sa) = &a.service_account {
            match (&sa.name, &sa.namespace) {
                (Some(name), Some(ns)) if !annp => {
                    out.push(Subject::ServiceAccount { ns: ns.clone(), name: name.clone() })
                }
                _ if annp => errs.add(format!("{p}.serviceAccount"), "an Antrea NetworkPolicy has no serviceAccount"),
                _ => errs.add(format!("{p}.serviceAccount"), "serviceAccount needs name and namespace"),
            }
        } else if a.service.is_some() {
            if has_egress {
                errs.add(format!("{p}.service"), "a policy applied to a Service may only have ingress rules");
            } else {
                errs.add(format!("{p}.service"), NOT_YET);
            }
        } else if a.node_selector.is_some() {
            errs.add(format!("{p}.nodeSelector"), format!("{NOT_YET} (Node NetworkPolicy)"));
        } else {
            let namespaces =
                a.namespace_selector.as_ref().map(|s| convert_selector(s, format_args!("{p}.namespaceSelector"), errs));
            let pods = a
                .pod_selector
                .as_ref()
                .map(|s| convert_selector(s, format_args!("{p}.podSelector"), errs))
                .unwrap_or_default();
            if !selectors {
                errs.add(p, "an appliedTo entry needs podSelector, namespaceSelector, group or serviceAccount");
                continue;
            }
            out.push(Subject::Selectors { namespaces, pods });
        }
    }
    out
}

/// One `from`/`to` entry, lowered into `peers` (or `refs`, for what the whole input resolves).
fn peer(
    p: &AntreaPeer,
    kind: PolicyKind,
    dir: Direction,
    path: &str,
    peers: &mut Vec<Peer>,
    refs: &mut Vec<PeerRef>,
    errs: &mut Errors,
) {
    let annp = kind == PolicyKind::AntreaNetworkPolicy;
    let selectors = p.pod_selector.is_some() || p.namespace_selector.is_some() || p.namespaces.is_some();
    let count = [
        selectors || p.ip_block.is_some(),
        p.group.is_some(),
        p.fqdn.is_some(),
        p.service_account.is_some(),
        p.node_selector.is_some(),
        p.external_entity_selector.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    for (set, what) in [
        (p.group.is_some(), "group"),
        (p.service_account.is_some(), "serviceAccount"),
        (p.node_selector.is_some(), "nodeSelector"),
        (p.fqdn.is_some(), "fqdn"),
    ] {
        if set && count > 1 {
            errs.add(path, format!("{what} cannot be set with another field of the peer"));
            return;
        }
    }
    if annp && p.namespaces.is_some() {
        errs.add(format!("{path}.namespaces"), "unknown field `namespaces`: an Antrea NetworkPolicy peer has none");
        return;
    }
    if annp && p.service_account.is_some() {
        errs.add(
            format!("{path}.serviceAccount"),
            "unknown field `serviceAccount`: an Antrea NetworkPolicy peer has none",
        );
        return;
    }
    if p.namespaces.is_some() && p.namespace_selector.is_some() {
        errs.add(path, "namespaces and namespaceSelector cannot both be set");
        return;
    }
    if let Some(s) = &p.scope {
        if s != "Cluster" {
            errs.add(format!("{path}.scope"), NOT_YET);
            return;
        }
    }
    if p.external_entity_selector.is_some() {
        errs.add(format!("{path}.externalEntitySelector"), NOT_YET);
        return;
    }
    if let Some(f) = &p.fqdn {
        if dir == Direction::Ingress {
            errs.add(format!("{path}.fqdn"), "fqdn peers are for egress rules only");
        } else if f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*')) {
            errs.add(format!("{path}.fqdn"), "an fqdn may hold letters, digits, '-', '.' and '*' only");
        } else {
            // Matched case-insensitively, `*` as any run of characters over the whole name: Antrea's agent turns
            // the pattern into an anchored regular expression, `*` into `.*` (`pkg/agent/controller/networkpolicy/
            // fqdn.go`), so `*github.com` matches `github.com` and `notgithub.com` too ([`domain_matches`]).
            peers.push(Peer::DomainNames(vec![f.to_ascii_lowercase()]));
        }
        return;
    }
    if let Some(g) = &p.group {
        refs.push(PeerRef::Group(g.clone()));
        return;
    }
    if let Some(sa) = &p.service_account {
        match (&sa.name, &sa.namespace) {
            (Some(name), Some(ns)) => peers.push(service_account_peer(ns, name)),
            _ => errs.add(format!("{path}.serviceAccount"), "serviceAccount needs name and namespace"),
        }
        return;
    }
    if let Some(sel) = &p.node_selector {
        peers.push(Peer::Nodes(convert_selector(sel, format_args!("{path}.nodeSelector"), errs)));
        return;
    }
    if let Some(b) = &p.ip_block {
        // With a selector in the same peer, the controller uses only the ipBlock (crd_utils.go).
        if let Some(b) = super::validate::convert_ip_block(b, format_args!("{path}.ipBlock"), errs) {
            peers.push(Peer::IpBlock(b));
        }
        return;
    }
    let pods = p.pod_selector.as_ref().map(|s| convert_selector(s, format_args!("{path}.podSelector"), errs));
    if let Some(n) = &p.namespaces {
        match (&n.match_, &n.same_labels) {
            (Some(m), None) if m == "Self" => refs.push(PeerRef::SelfNs(pods)),
            (Some(m), None) => {
                errs.add(format!("{path}.namespaces.match"), format!("unsupported value `{m}`: supported: \"Self\""))
            }
            (None, Some(keys)) if !keys.is_empty() => refs.push(PeerRef::SameLabels(keys.clone(), pods)),
            _ => errs.add(format!("{path}.namespaces"), "namespaces takes exactly one of match and sameLabels"),
        }
        return;
    }
    let namespaces =
        p.namespace_selector.as_ref().map(|s| convert_selector(s, format_args!("{path}.namespaceSelector"), errs));
    match (namespaces, pods) {
        (None, None) => {
            errs.add(path, "a peer needs podSelector, namespaceSelector, ipBlock, group, ... (it is empty)")
        }
        // A podSelector alone: every namespace in an ACNP, the policy's own in an ANNP.
        (None, Some(pods)) if !annp => {
            peers.push(Peer::Selectors { namespaces: Some(Selector::everything()), pods: Some(pods) })
        }
        (namespaces, pods) => peers.push(Peer::Selectors { namespaces, pods }),
    }
}

/// The Pods running as a service account: Calico's expression selector over the labels every endpoint carries.
fn service_account_peer(ns: &str, name: &str) -> Peer {
    Peer::Calico(Box::new(CalicoPeer { selector: Some(service_account_expr(ns, name)), ..Default::default() }))
}

fn service_account_expr(ns: &str, name: &str) -> Expr {
    Expr::And(vec![
        Expr::Eq { key: calico_keys::NAMESPACE.to_string(), value: ns.to_string() },
        Expr::Eq { key: calico_keys::SERVICE_ACCOUNT.to_string(), value: name.to_string() },
    ])
}

/// A Tier.
pub(crate) fn tier(o: AntreaTierObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    let priority = match o.spec.unwrap_or_default().priority {
        None => {
            errs.add("spec.priority", "a Tier priority is required");
            None
        }
        Some(p) if !(0..=255).contains(&p) => {
            errs.add("spec.priority", format!("a Tier priority is between 0 and 255 (got {p})"));
            None
        }
        Some(p @ (251 | 252 | 254 | 255)) => {
            errs.add("spec.priority", format!("priority {p} is reserved (251, 252, 254 and 255 are)"));
            None
        }
        Some(220) => {
            errs.add(
                "spec.priority",
                "priority 220 is reserved for the upstream ClusterNetworkPolicy's Admin tier (feature gate \
                 ClusterNetworkPolicy)",
            );
            None
        }
        Some(p) => Some(p as u32),
    };
    Some(Item::Antrea(AntreaItem::Tier { name: name?, priority: priority? }))
}

/// A ClusterGroup (`namespaced` false) or Group.
pub(crate) fn group(o: GroupObj, namespaced: bool, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let ns = if namespaced { meta_namespace(&o.metadata.namespace, errs) } else { None };
    check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    let s = o.spec.unwrap_or_default();
    let word = if namespaced { "Group" } else { "ClusterGroup" };
    if namespaced && s.node_selector.is_some() {
        errs.add("spec.nodeSelector", "unknown field `nodeSelector`: a Group has no nodeSelector");
        return None;
    }
    if s.external_entity_selector.is_some() {
        errs.add("spec.externalEntitySelector", NOT_YET);
        return None;
    }
    let selectors = s.pod_selector.is_some() || s.namespace_selector.is_some();
    if s.service_reference.is_some() && (selectors || s.node_selector.is_some()) {
        errs.add("spec", "serviceReference cannot be set with a selector");
        return None;
    }
    let kinds = [
        selectors,
        s.node_selector.is_some(),
        s.service_reference.is_some(),
        s.ip_blocks.is_some(),
        s.child_groups.is_some(),
    ];
    if kinds.iter().filter(|b| **b).count() > 1 {
        errs.add(
            "spec",
            format!(
                "a {word} has at most one of podSelector (with namespaceSelector), {}serviceReference, ipBlocks, \
                 childGroups",
                if namespaced { "" } else { "nodeSelector, " }
            ),
        );
        return None;
    }
    let name = name?;
    let members = if let Some(children) = &s.child_groups {
        for (i, c) in children.iter().enumerate() {
            if *c == name {
                errs.add(format!("spec.childGroups[{i}]"), format!("a {word} cannot be its own childGroup"));
            }
        }
        Members::Children(children.clone())
    } else if let Some(blocks) = &s.ip_blocks {
        let mut out = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            out.extend(super::validate::convert_ip_block(b, format_args!("spec.ipBlocks[{i}]"), errs));
        }
        Members::IpBlocks(out)
    } else if let Some(svc) = &s.service_reference {
        let svc_ns = svc.namespace.clone().or_else(|| ns.clone());
        match (&svc.name, svc_ns) {
            (Some(n), Some(sns)) => Members::Service { ns: sns, name: n.clone() },
            _ => {
                errs.add("spec.serviceReference", "serviceReference needs name and namespace");
                return None;
            }
        }
    } else if let Some(sel) = &s.node_selector {
        Members::Nodes(convert_selector(sel, "spec.nodeSelector", errs))
    } else {
        Members::Selectors {
            pods: s.pod_selector.as_ref().map(|p| convert_selector(p, "spec.podSelector", errs)),
            namespaces: s.namespace_selector.as_ref().map(|p| convert_selector(p, "spec.namespaceSelector", errs)),
        }
    };
    let ns = if namespaced { Some(ns?) } else { None };
    Some(Item::Antrea(AntreaItem::Group(GroupDef { ns, name, members })))
}

// --- Registration (input order: admission's cross-object checks) and lowering. ---

fn static_tier(name: &str) -> Option<(&'static str, u32)> {
    STATIC_TIERS.iter().find(|(n, cap, _)| *n == name || *cap == name).map(|(n, _, p)| (*n, *p))
}

impl Loader {
    fn antrea_error(&mut self, origin: &Origin, label: &str, field: &str, message: String) {
        self.diagnostics.push(super::error(origin.clone(), Some(label.to_string()), Some(field), message));
    }

    /// Whether an object of this kind, namespace and name was admitted already (then an error says so).
    fn antrea_duplicate(
        &mut self,
        kind: &'static str,
        ns: Option<String>,
        name: &str,
        origin: &Origin,
        label: &str,
    ) -> bool {
        let Some(first) = self.antrea.seen.get(&(kind, ns, name.to_string())) else { return false };
        let msg = format!("duplicate object: already defined at {first}; this one is ignored");
        self.antrea_error(origin, label, "metadata.name", msg);
        true
    }

    pub(crate) fn register_antrea(&mut self, item: AntreaItem, origin: Origin, label: String) {
        self.antrea.present = true;
        let source =
            AntreaObject { item: std::sync::Arc::new(item.clone()), origin: origin.clone(), label: label.clone() };
        self.antrea.sources.push(source);
        if self.antrea.defer {
            return;
        }
        match item {
            AntreaItem::Tier { name, priority } => {
                if static_tier(&name).is_some_and(|(n, _)| n == name) {
                    let msg = format!("the static Tier {name} exists already; this one is ignored");
                    return self.antrea_error(&origin, &label, "metadata.name", msg);
                }
                if self.antrea_duplicate("Tier", None, &name, &origin, &label) {
                    return;
                }
                let taken = STATIC_TIERS
                    .iter()
                    .map(|(n, _, p)| (n.to_string(), *p))
                    .chain(self.antrea.tiers.iter().cloned())
                    .find(|(_, p)| *p == priority);
                if let Some((other, _)) = taken {
                    let msg = format!("another Tier ({other}) has priority {priority}");
                    return self.antrea_error(&origin, &label, "spec.priority", msg);
                }
                self.antrea.seen.insert(("Tier", None, name.clone()), origin);
                self.antrea.tiers.push((name, priority));
            }
            AntreaItem::Group(g) => {
                let key = (g.ns.clone(), g.name.clone());
                let kind = if g.ns.is_some() { "Group" } else { "ClusterGroup" };
                if self.antrea_duplicate(kind, g.ns.clone(), &g.name, &origin, &label) {
                    return;
                }
                if let Members::Children(children) = &g.members {
                    for (i, c) in children.iter().enumerate() {
                        let child = self.antrea.groups.get(&(g.ns.clone(), c.clone()));
                        if child.is_some_and(|c| matches!(c.members, Members::Children(_))) {
                            let msg = format!("childGroup {c} has childGroups itself: groups nest one level only");
                            return self.antrea_error(&origin, &label, &format!("spec.childGroups[{i}]"), msg);
                        }
                    }
                }
                self.antrea.seen.insert((kind, key.0.clone(), key.1.clone()), origin);
                self.antrea.groups.insert(key, g);
            }
            AntreaItem::Policy(p) => {
                let known = static_tier(&p.tier).is_some() || self.antrea.tiers.iter().any(|(n, _)| *n == p.tier);
                if !known {
                    let msg = format!(
                        "no Tier {} (a policy's Tier must exist when the policy is created: put Tier objects \
                         before the policies that name them); the policy is refused",
                        p.tier
                    );
                    return self.antrea_error(&origin, &label, "spec.tier", msg);
                }
                let kind = p.kind.as_str();
                if self.antrea_duplicate(kind, p.ns.clone(), &p.name, &origin, &label) {
                    return;
                }
                self.antrea.seen.insert((kind, p.ns.clone(), p.name.clone()), origin.clone());
                self.antrea.policies.push((*p, origin));
            }
        }
    }

    /// Adds Antrea's tiers to `tiers` and lowers every admitted ACNP and ANNP (see the module documentation).
    pub(crate) fn finish_antrea(&mut self, tiers: &mut Vec<TierDef>) {
        if !self.antrea.present || self.antrea.defer {
            return;
        }
        let policies = std::mem::take(&mut self.antrea.policies);
        if let Some(admin) = tiers.get_mut(0) {
            admin.order = Some(ADMIN_PRIORITY);
            admin.pass_to_network_policy = true;
        }
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let all = STATIC_TIERS.iter().map(|(n, _, p)| (n.to_string(), *p)).chain(self.antrea.tiers.clone());
        for (name, priority) in all {
            let baseline = priority == BASELINE_PRIORITY;
            tiers.push(TierDef {
                name: name.clone(),
                order: Some(if baseline { BASELINE_ORDER } else { f64::from(priority) }),
                default_action: Action::Pass,
                origin: None,
                pass_to_network_policy: !baseline,
            });
            index.insert(name, tiers.len() - 1);
        }
        for (p, origin) in policies {
            let tier_name = static_tier(&p.tier).map_or(p.tier.clone(), |(n, _)| n.to_string());
            let Some(&tier) = index.get(&tier_name) else { continue };
            self.record_refs(&p, &origin);
            let own_ns = p.ns.as_ref().map(|n| self.ns_id(n));
            for r in &p.rules {
                let subjects = if r.applied_to.is_empty() { &p.applied_to } else { &r.applied_to };
                let subjects: Vec<Subject> =
                    subjects.iter().flat_map(|s| self.resolve_subject(s, p.ns.as_deref(), 0)).collect();
                self.warn_node_groups(&p, r, &origin);
                // The peers of the rule: resolved groups; `namespaces` peers split the rule per namespace.
                let mut peers = r.rule.peers.clone();
                let mut split: Option<(Vec<String>, Option<Selector>)> = None;
                let written = !r.rule.peers.is_empty() || !r.refs.is_empty();
                for rf in &r.refs {
                    match rf {
                        PeerRef::Group(g) => peers.extend(self.group_peers(g, p.ns.as_deref(), 0)),
                        PeerRef::SelfNs(pods) => split = Some((Vec::new(), pods.clone())),
                        PeerRef::SameLabels(keys, pods) => split = Some((keys.clone(), pods.clone())),
                    }
                }
                if written && peers.is_empty() && split.is_none() {
                    // Only missing (or empty) groups: the rule matches nothing, never everything.
                    peers.push(Peer::Networks(Vec::new()));
                }
                for subject in &subjects {
                    // Variants: (namespace restriction of the subject, extra peer). A `namespaces` peer splits
                    // the rule per namespace (Self) or per combination of the keys' values (sameLabels), among the
                    // namespaces the subject may select: the others would give policies that select no pod.
                    let mut variants: Vec<(Option<Selector>, Option<Peer>)> = Vec::new();
                    match &split {
                        None => variants.push((None, None)),
                        Some((keys, pods)) => {
                            let mut seen = std::collections::BTreeSet::new();
                            for ns in self.namespaces.iter().filter(|ns| subject.may_select(ns)) {
                                let pairs: Option<Vec<(String, String)>> = if keys.is_empty() {
                                    Some(vec![(NAMESPACE_NAME_LABEL.to_string(), ns.name.clone())])
                                } else {
                                    keys.iter().map(|k| ns.labels.get(k).map(|v| (k.clone(), v.to_string()))).collect()
                                };
                                let Some(pairs) = pairs else { continue };
                                if !seen.insert(pairs.clone()) {
                                    continue;
                                }
                                let sel = Selector::from_labels(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                                let peer = Peer::Selectors { namespaces: Some(sel.clone()), pods: pods.clone() };
                                variants.push((Some(sel), Some(peer)));
                            }
                        }
                    }
                    for (restrict, extra) in &variants {
                        let mut rule = r.rule.clone();
                        rule.peers.clone_from(&peers);
                        rule.peers.extend(extra.clone());
                        let (scope, pod_selector, calico_selector) = match subject {
                            Subject::Selectors { namespaces, pods } => {
                                let scope = match own_ns {
                                    Some(ns) => Scope::Namespace(ns),
                                    None => Scope::Cluster(namespaces.clone().unwrap_or_default()),
                                };
                                (scope, pods.clone(), None)
                            }
                            Subject::ServiceAccount { ns, name } => (
                                Scope::Cluster(Selector::everything()),
                                Selector::everything(),
                                Some(service_account_expr(ns, name)),
                            ),
                            Subject::Group(_) => continue,
                        };
                        let scope = match (scope, restrict) {
                            (Scope::Cluster(s), Some(r)) => Scope::Cluster(and(&s, r)),
                            // An ANNP has no `namespaces` peers (refused).
                            (scope, _) => scope,
                        };
                        // An HTTP rule hands what its L3/L4 part matches to the L7 engine, which rejects the
                        // requests no entry allows: the same L3/L4 part with Reject comes right after it.
                        let mut rules = vec![rule];
                        if rules[0].l7.is_some() {
                            let engine = Rule { l7: None, action: Action::Reject, ..rules[0].clone() };
                            rules.push(engine);
                        }
                        let (ingress, egress) = match r.dir {
                            Direction::Ingress => (rules, Vec::new()),
                            Direction::Egress => (Vec::new(), rules),
                        };
                        // A serviceAccount peer is an expression over the labels the expression selectors see;
                        // the engine gives endpoints their service account there when some policy selects its
                        // subject by such an expression: this one does.
                        let sa_peer =
                            ingress.iter().chain(&egress).any(|r| r.peers.iter().any(|q| matches!(q, Peer::Calico(_))));
                        let (pod_selector, calico_selector) = match calico_selector {
                            None if sa_peer => (Selector::everything(), Some(selector_expr(&pod_selector))),
                            c => (pod_selector, c),
                        };
                        let mut policy = Policy {
                            kind: p.kind,
                            tier: PolicyTier::from_index(tier),
                            order: Order(Some(p.priority)),
                            scope,
                            name: p.name.clone(),
                            pod_selector,
                            calico_selector,
                            ingress,
                            egress,
                            affects_ingress: r.dir == Direction::Ingress,
                            affects_egress: r.dir == Direction::Egress,
                            host: Default::default(),
                            origin: origin.clone(),
                            position: r.index,
                            manifest: p.manifest.clone(),
                        };
                        self.intern_selectors(&mut policy);
                        self.policies.push(policy);
                    }
                }
            }
        }
    }

    /// Records the policy's `appliedTo` entries (the policy's and its rules') and group peers, each with what it
    /// resolves to, for lint.
    fn record_refs(&mut self, p: &AntreaPolicy, origin: &Origin) {
        use crate::model::AntreaRef;
        let key =
            crate::model::PolicyKey { kind: p.kind, namespace: p.ns.clone().unwrap_or_default(), name: p.name.clone() };
        let exists = |name: &str| self.antrea.groups.contains_key(&(p.ns.clone(), name.to_string()));
        let applied = |list: &[Subject], path: String, refs: &mut Vec<AntreaRef>| {
            for (i, s) in list.iter().enumerate() {
                let group = match s {
                    Subject::Group(name) => Some(name.clone()),
                    Subject::Selectors { .. } => None,
                    Subject::ServiceAccount { ns, name } => {
                        // The service account's pods, as the expression selectors see them.
                        refs.push(AntreaRef {
                            policy: key.clone(),
                            origin: origin.clone(),
                            field: format!("{path}[{i}]"),
                            group: None,
                            exists: true,
                            applied_to: true,
                            members: vec![service_account_peer(ns, name)],
                        });
                        continue;
                    }
                };
                let members = self
                    .resolve_subject(s, p.ns.as_deref(), 0)
                    .into_iter()
                    .filter_map(|s| match s {
                        Subject::Selectors { namespaces, pods } => Some(Peer::Selectors {
                            namespaces: match &p.ns {
                                Some(own) => Some(Selector::from_labels([(NAMESPACE_NAME_LABEL, own.as_str())])),
                                None => Some(namespaces.unwrap_or_else(Selector::everything)),
                            },
                            pods: Some(pods),
                        }),
                        _ => None,
                    })
                    .collect();
                refs.push(AntreaRef {
                    policy: key.clone(),
                    origin: origin.clone(),
                    field: format!("{path}[{i}]"),
                    exists: group.as_deref().is_none_or(exists),
                    group,
                    applied_to: true,
                    members,
                });
            }
        };
        let mut refs = Vec::new();
        applied(&p.applied_to, "spec.appliedTo".to_string(), &mut refs);
        for r in &p.rules {
            let path = format!("spec.{}[{}]", r.dir.as_str(), r.index);
            applied(&r.applied_to, format!("{path}.appliedTo"), &mut refs);
            let groups = r.refs.iter().filter_map(|rf| if let PeerRef::Group(g) = rf { Some(g) } else { None });
            for (g, field) in groups.zip(&r.group_paths) {
                refs.push(AntreaRef {
                    policy: key.clone(),
                    origin: origin.clone(),
                    field: field.clone(),
                    group: Some(g.clone()),
                    exists: exists(g),
                    applied_to: false,
                    members: self.group_peers(g, p.ns.as_deref(), 0),
                });
            }
        }
        self.antrea.refs.extend(refs);
    }

    /// A warning for each `appliedTo` group of the rule that selects Nodes: a Node NetworkPolicy, which netpol does
    /// not model yet (the rule applies to no Pod through it).
    fn warn_node_groups(&mut self, p: &AntreaPolicy, r: &RuleDef, origin: &Origin) {
        let (list, field) = match r.applied_to.is_empty() {
            // The policy's appliedTo: said once, at its first rule.
            true if !p.rules.first().is_some_and(|f| std::ptr::eq(f, r)) => return,
            true => (&p.applied_to, "spec.appliedTo".to_string()),
            false => (&r.applied_to, format!("spec.{}[{}].appliedTo", r.dir.as_str(), r.index)),
        };
        for s in list {
            let Subject::Group(name) = s else { continue };
            let g = self.antrea.groups.get(&(p.ns.clone(), name.clone()));
            if g.is_some_and(|g| matches!(g.members, Members::Nodes(_))) {
                let object = match &p.ns {
                    Some(ns) => format!("{} {ns}/{}", p.kind.as_str(), p.name),
                    None => format!("{} {}", p.kind.as_str(), p.name),
                };
                self.diagnostics.push(super::Diagnostic {
                    severity: super::Severity::Warning,
                    origin: origin.clone(),
                    object: Some(object),
                    field: Some(field.clone()),
                    message: format!(
                        "group {name} selects Nodes: a Node NetworkPolicy, not modelled by netpol yet (the rule \
                         applies to no Pod through it)"
                    ),
                });
            }
        }
    }

    /// The subjects an `appliedTo` entry stands for: a group's members (a missing group, an ipBlocks group: none).
    fn resolve_subject(&self, s: &Subject, ns: Option<&str>, depth: usize) -> Vec<Subject> {
        let Subject::Group(name) = s else { return vec![s.clone()] };
        match self.antrea.groups.get(&(ns.map(str::to_string), name.clone())) {
            Some(g) => self.group_subjects(g, depth),
            None => Vec::new(),
        }
    }

    fn group_subjects(&self, g: &GroupDef, depth: usize) -> Vec<Subject> {
        match &g.members {
            // A group without selectors has no members.
            Members::Selectors { pods: None, namespaces: None } => Vec::new(),
            Members::Selectors { pods, namespaces } => {
                let namespaces = match (&g.ns, namespaces) {
                    (_, Some(n)) => Some(n.clone()),
                    (Some(own), None) => Some(Selector::from_labels([(NAMESPACE_NAME_LABEL, own.as_str())])),
                    (None, None) => None,
                };
                vec![Subject::Selectors { namespaces, pods: pods.clone().unwrap_or_default() }]
            }
            Members::Children(children) if depth == 0 => children
                .iter()
                .flat_map(|c| self.resolve_subject(&Subject::Group(c.clone()), g.ns.as_deref(), depth + 1))
                .collect(),
            Members::Service { ns, name } => self
                .services
                .iter()
                .filter(|s| s.namespace == *ns && s.name == *name && s.has_selector())
                .map(|s| Subject::Selectors {
                    namespaces: Some(Selector::from_labels([(NAMESPACE_NAME_LABEL, ns.as_str())])),
                    pods: selector_of(s.selector.as_ref()),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The peers a group reference stands for (a missing group: none).
    fn group_peers(&self, name: &str, ns: Option<&str>, depth: usize) -> Vec<Peer> {
        let Some(g) = self.antrea.groups.get(&(ns.map(str::to_string), name.to_string())) else {
            return Vec::new();
        };
        match &g.members {
            // A group without selectors has no members.
            Members::Selectors { pods: None, namespaces: None } => Vec::new(),
            Members::Selectors { pods, namespaces } => {
                let namespaces = match (&g.ns, namespaces) {
                    (_, Some(n)) => Some(n.clone()),
                    (Some(own), None) => Some(Selector::from_labels([(NAMESPACE_NAME_LABEL, own.as_str())])),
                    (None, None) => Some(Selector::everything()),
                };
                vec![Peer::Selectors { namespaces, pods: pods.clone() }]
            }
            Members::Nodes(sel) => vec![Peer::Nodes(sel.clone())],
            Members::IpBlocks(blocks) => blocks.iter().cloned().map(Peer::IpBlock).collect(),
            Members::Service { ns, name } => self
                .services
                .iter()
                .filter(|s| s.namespace == *ns && s.name == *name && s.has_selector())
                .map(|s| Peer::Selectors {
                    namespaces: Some(Selector::from_labels([(NAMESPACE_NAME_LABEL, ns.as_str())])),
                    pods: Some(selector_of(s.selector.as_ref())),
                })
                .collect(),
            Members::Children(children) if depth == 0 => {
                children.iter().flat_map(|c| self.group_peers(c, g.ns.as_deref(), depth + 1)).collect()
            }
            Members::Children(_) => Vec::new(),
        }
    }
}

fn selector_of(labels: Option<&Labels>) -> Selector {
    labels.map_or_else(Selector::everything, |l| Selector::from_labels(l.iter()))
}

/// A label selector as an expression over a pod's labels (which the expression selectors see unprefixed).
fn selector_expr(sel: &Selector) -> Expr {
    use crate::selector::Requirement;
    let mut terms: Vec<Expr> = sel
        .requirements()
        .iter()
        .map(|r| {
            let values = |vs: &[crate::selector::Atom]| vs.iter().map(|v| v.to_string()).collect::<Vec<_>>();
            match r {
                Requirement::In(k, vs) if vs.len() == 1 => Expr::Eq { key: k.to_string(), value: vs[0].to_string() },
                Requirement::In(k, vs) => Expr::In { key: k.to_string(), values: values(vs) },
                Requirement::NotIn(k, vs) => Expr::NotIn { key: k.to_string(), values: values(vs) },
                Requirement::Exists(k) => Expr::Has(k.to_string()),
                Requirement::DoesNotExist(k) => Expr::Not(Box::new(Expr::Has(k.to_string()))),
            }
        })
        .collect();
    match terms.len() {
        0 => Expr::All,
        1 => terms.remove(0),
        _ => Expr::And(terms),
    }
}

fn and(a: &Selector, b: &Selector) -> Selector {
    Selector::from_requirements(a.requirements().iter().chain(b.requirements()).cloned().collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::load::{load_str, Severity};
    use crate::model::{Action, Peer, PolicyKind};

    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n";

    fn errors(text: &str) -> Vec<String> {
        let l = load_str("t.yaml", text);
        l.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(|d| d.to_string()).collect()
    }

    /// `namespaces.match: Self` and `sameLabels` split a rule only over the namespaces its subject may select: the
    /// others would add policies that select no pod (60,000 of them on the benchmark's 10k cluster).
    #[test]
    fn namespace_peers_split_over_the_subjects_namespaces_only() {
        let ns = |n: &str, team: &str| {
            format!("---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n  labels:\n    team: {team}\n")
        };
        let acnp = |name: &str, peer: &str| {
            format!(
                "---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n  \
                 priority: 1\n  appliedTo:\n  - namespaceSelector:\n      matchLabels:\n        team: a\n  ingress:\n  \
                 - action: Allow\n    from:\n    - namespaces:\n        {peer}\n"
            )
        };
        let text = [
            ns("x", "a"),
            ns("y", "a"),
            ns("z", "b"),
            ns("w", "c"),
            acnp("self", "match: Self"),
            acnp("same", "sameLabels: [team]"),
        ]
        .concat();
        let l = load_str("t.yaml", &text);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let lowered = |name: &str| l.cluster.policies.iter().filter(|p| p.name == name).count();
        assert_eq!(lowered("self"), 2, "x and y, not z or w");
        assert_eq!(lowered("same"), 1, "team a only");
    }

    #[test]
    fn one_policy_per_rule_in_its_tier_with_its_index() {
        let text = format!(
            "{NS}---\napiVersion: crd.antrea.io/v1beta1\nkind: Tier\nmetadata:\n  name: team\nspec:\n  priority: 120\n\
             ---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata:\n  name: p\nspec:\n  \
             tier: team\n  priority: 2.5\n  appliedTo:\n  - podSelector: {{}}\n  ingress:\n  - action: Allow\n    \
             from:\n    - podSelector: {{}}\n  - action: Reject\n    name: r\n  egress:\n  - action: Pass\n"
        );
        let l = load_str("t.yaml", &text);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let c = &l.cluster;
        let pols: Vec<_> = c.policies.iter().filter(|p| p.kind == PolicyKind::AntreaClusterNetworkPolicy).collect();
        assert_eq!(pols.len(), 3);
        assert_eq!((pols[0].position, pols[1].position, pols[2].position), (0, 1, 0));
        assert_eq!(pols[1].ingress[0].action, Action::Reject);
        assert_eq!(pols[1].ingress[0].name.as_deref(), Some("r"));
        assert!(pols[2].affects_egress && !pols[2].affects_ingress);
        assert_eq!(pols[0].order.0, Some(2.5));
        // A podSelector alone is cluster-wide in an ACNP.
        assert!(
            matches!(&pols[0].ingress[0].peers[0], Peer::Selectors { namespaces: Some(n), .. } if n.is_everything())
        );
        let tier = &c.tiers[pols[0].tier.index()];
        assert_eq!((tier.name.as_str(), tier.order, tier.default_action), ("team", Some(120.0), Action::Pass));
        assert!(tier.pass_to_network_policy);
        assert_eq!(c.tiers[0].order, Some(220.0), "the Admin tier moves among Antrea's tiers");
        let baseline = c.tiers.iter().find(|t| t.name == "baseline").unwrap();
        assert_eq!(baseline.order, Some(super::BASELINE_ORDER));
        assert!(!baseline.pass_to_network_policy);
    }

    #[test]
    fn unknown_fields_and_admission_errors_name_the_field() {
        let text = "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata:\n  name: p\nspec:\n  \
                    priority: 1\n  appliedTo:\n  - podSelector: {}\n  ingress:\n  - action: Allow\n    form: []\n";
        let e = errors(text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("spec.ingress[0]") && e[0].contains("did you mean `from`?"), "{e:?}");
        let text = "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata:\n  name: p\nspec:\n  \
                    priority: 1\n  ingress:\n  - action: Allow\n";
        let e = errors(text);
        assert!(e.len() == 1 && e[0].contains("spec.appliedTo"), "{e:?}");
        let p = "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata:\n  name: p\nspec:\n  \
                 tier: late\n  priority: 1\n  appliedTo:\n  - podSelector: {}\n  ingress:\n  - action: Allow\n";
        let tier = "apiVersion: crd.antrea.io/v1beta1\nkind: Tier\nmetadata:\n  name: late\nspec:\n  priority: 10\n";
        let e = errors(&format!("{tier}---\n{p}---\n{p}"));
        assert!(e.len() == 1 && e[0].contains("already defined at t.yaml (document 1)"), "{e:?}");
        let e = errors(&format!("{p}---\n{tier}"));
        assert!(e.len() == 1 && e[0].contains("spec.tier") && e[0].contains("put Tier objects before"), "{e:?}");
    }

    #[test]
    fn a_service_account_peer_alone_selects_by_service_account() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: \
                    {name: a, namespace: x, labels: {app: a}}\nspec: {serviceAccountName: sa1, containers: [{name: c, \
                    image: i}]}\nstatus: {podIP: 10.0.1.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, \
                    namespace: x, labels: {app: b}}\nspec: {containers: [{name: c, image: i}]}\nstatus: {podIP: \
                    10.0.1.2}\n---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: \
                    p}\nspec:\n  priority: 1\n  appliedTo:\n  - podSelector: {matchLabels: {app: b}}\n  ingress:\n  \
                    - action: Drop\n    from:\n    - serviceAccount: {name: sa1, namespace: x}\n";
        let l = load_str("t.yaml", text);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let e = crate::compile::Engine::new(l.cluster);
        let (a, b) = (e.parse_endpoint("x/a", "x").unwrap(), e.parse_endpoint("x/b", "x").unwrap());
        let tcp = crate::portset::Protocol::Tcp;
        assert!(!e.allowed(&a, &b, tcp, 80), "sa1 is dropped at b");
        assert!(e.allowed(&b, &a, tcp, 80), "a is no subject");
        assert!(!crate::reference::allowed(e.cluster(), &a, &b, tcp, 80));
    }

    /// TLS rules (`l7Protocols[].tls.sni`) are read and validated; netpol's flows carry no TLS handshake, so the
    /// rule's connections are accepted as the L7 engine would accept them, and explain says the SNI is not judged.
    #[test]
    fn tls_rules_are_read_and_named_as_not_judged() {
        let pods = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: \
                    {name: a, namespace: x, labels: {app: a}}\nspec: {containers: [{name: c, image: i}]}\nstatus: \
                    {podIP: 10.0.1.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x, labels: \
                    {app: b}}\nspec: {containers: [{name: c, image: i}]}\nstatus: {podIP: 10.0.1.2}\n";
        let policy = |tls: &str| {
            format!(
                "{pods}---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  \
                 priority: 1\n  appliedTo:\n  - podSelector: {{matchLabels: {{app: b}}}}\n  ingress:\n  - action: Allow\n    \
                 ports: [{{protocol: TCP, port: 443}}]\n    l7Protocols: [{{tls: {tls}}}]\n  - action: Drop\n"
            )
        };
        let l = load_str("t.yaml", &policy("{sni: \"*.example.com\"}"));
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let e = crate::compile::Engine::new(l.cluster);
        let (a, b) = (e.parse_endpoint("x/a", "x").unwrap(), e.parse_endpoint("x/b", "x").unwrap());
        let tcp = crate::portset::Protocol::Tcp;
        assert!(e.allowed(&a, &b, tcp, 443));
        assert!(crate::reference::allowed(e.cluster(), &a, &b, tcp, 443));
        assert!(!e.allowed(&a, &b, tcp, 80), "the Drop after it");
        let text = e.explain(&a, &b, tcp, 443).render();
        assert!(text.contains("TLS (SNI *.example.com)") && text.contains("not judged"), "{text}");
        assert!(text.contains("Antrea's L7 engine"), "{text}");
        assert!(load_str("t.yaml", &policy("{}")).diagnostics.is_empty(), "no SNI: every handshake");
        let e = errors(&policy("{sni: \"a b\"}"));
        assert!(e.len() == 1 && e[0].contains("spec.ingress[0].l7Protocols[0].tls.sni"), "{e:?}");
    }

    /// A `toServices` rule matches nothing in netpol's answers (flows name backends, not ClusterIPs): a warning at
    /// load, and `explain` names the rule as not modelled for the pods it applies to.
    #[test]
    fn to_services_rules_are_named_in_explain_as_not_modelled() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: \
                    {name: a, namespace: x, labels: {app: a}}\nspec: {containers: [{name: c, image: i}]}\nstatus: \
                    {podIP: 10.0.1.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x, labels: \
                    {app: b}}\nspec: {containers: [{name: c, image: i}]}\nstatus: {podIP: 10.0.1.2}\n---\n\
                    apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: svc}\nspec:\n  \
                    priority: 1\n  appliedTo: [{podSelector: {matchLabels: {app: a}}}]\n  egress:\n  - action: Drop\n    \
                    toServices: [{name: web, namespace: x}]\n";
        let l = load_str("t.yaml", text);
        assert_eq!(l.diagnostics.len(), 1, "{:?}", l.diagnostics);
        assert!(l.diagnostics[0].to_string().contains("spec.egress[0].toServices"));
        let e = crate::compile::Engine::new(l.cluster);
        let (a, b) = (e.parse_endpoint("x/a", "x").unwrap(), e.parse_endpoint("x/b", "x").unwrap());
        let tcp = crate::portset::Protocol::Tcp;
        assert!(e.allowed(&a, &b, tcp, 80), "the rule matches nothing");
        let ex = e.explain(&a, &b, tcp, 80);
        assert_eq!(ex.egress.not_modelled.len(), 1, "{:?}", ex.egress);
        let text = ex.render();
        assert!(text.contains("not modelled: acnp/svc spec.egress[0] (Drop): toServices x/web"), "{text}");
        assert!(ex.ingress.not_modelled.is_empty(), "b is no subject");
        assert!(e.explain(&b, &a, tcp, 80).egress.not_modelled.is_empty(), "nor for b's egress");
    }

    #[test]
    fn fqdn_patterns_match_as_antrea_agent_regexes() {
        use crate::compile::domain_matches;
        for (pattern, name, hit) in [
            ("docs.github.com", "Docs.GitHub.com", true),
            ("docs.github.com", "docs.github.com.", true),
            ("docs.github.com", "api.github.com", false),
            ("*.github.com", "api.github.com", true),
            ("*.github.com", "a.b.github.com", true),
            ("*.github.com", "github.com", false),
            ("*github.com", "github.com", true),
            ("*github.com", "notgithub.com", true),
            ("*github.com", "api.github.com", true),
            ("*github.com", "github.com.evil.org", false),
            ("api*.example.com", "api.example.com", true),
            ("api*.example.com", "api-eu.example.com", true),
            ("api*.example.com", "www.api.example.com", false),
            ("*", "anything.at.all", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYc.d", false),
        ] {
            assert_eq!(domain_matches(pattern, name), hit, "{pattern} ~ {name}");
        }
        let text = format!(
            "{NS}---\napiVersion: crd.antrea.io/v1beta1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: x\n\
             spec:\n  priority: 1\n  appliedTo:\n  - podSelector: {{}}\n  egress:\n  - action: Drop\n    to:\n    \
             - fqdn: \"*Foo.com\"\n"
        );
        assert!(errors(&text).is_empty());
        let loaded = load_str("t.yaml", &text);
        let pol = loaded.cluster.policies.iter().find(|p| p.kind.is_antrea()).unwrap();
        assert_eq!(pol.egress[0].peers, vec![Peer::DomainNames(vec!["*foo.com".to_string()])]);
    }
}
