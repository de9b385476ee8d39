//! Policy changes laid over a loaded cluster, as `kubectl apply` and `kubectl delete` of policy objects would
//! make them: what `serve`'s what-if answers and what `netpol flows replay --against` and `--git` evaluate.

use netpol_core::load::Severity;
use netpol_core::model::PolicyKind;

/// Why a change cannot be laid over the cluster; `field` names where, in the request's terms (`apply[2].spec...`,
/// `delete[0]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayError {
    pub kind: OverlayErrorKind,
    pub field: String,
    pub message: String,
}

/// What is wrong: the HTTP API answers 400, 404 and 422 for these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayErrorKind {
    /// A reference or an object of a kind that cannot be applied.
    Malformed,
    /// A policy to delete that is not loaded.
    NotFound,
    /// An applied object is invalid.
    Invalid,
}

impl OverlayError {
    fn new(kind: OverlayErrorKind, field: &str, message: impl Into<String>) -> Self {
        OverlayError { kind, field: field.to_string(), message: message.into() }
    }
    fn malformed(field: &str, message: impl Into<String>) -> Self {
        Self::new(OverlayErrorKind::Malformed, field, message)
    }
    fn not_found(field: &str, message: impl Into<String>) -> Self {
        Self::new(OverlayErrorKind::NotFound, field, message)
    }
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(OverlayErrorKind::Invalid, field, message)
    }
}

impl std::fmt::Display for OverlayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for OverlayError {}

/// What a what-if may apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applicable {
    /// A policy of any tier.
    Policy(PolicyKind),
    /// A Calico `Tier`: it replaces the loaded Tier of its name (order, default action) or adds one.
    Tier,
    /// A Calico `NetworkSet` (namespaced) or `GlobalNetworkSet`: labelled addresses Calico selectors match.
    NetworkSet { global: bool },
    /// One of Antrea's `Tier`, `ClusterGroup` or `Group` (`crd.antrea.io`): it replaces the loaded one of its
    /// kind, namespace and name, or is added; every Antrea object is then lowered again.
    AntreaObject,
}

/// The kinds a what-if applies, for messages.
pub const APPLICABLE_KINDS_TEXT: &str = "NetworkPolicy, ClusterNetworkPolicy, AdminNetworkPolicy and \
     BaselineAdminNetworkPolicy objects, Calico's (projectcalico.org/v3) NetworkPolicy, GlobalNetworkPolicy, \
     Tier, NetworkSet and GlobalNetworkSet, Cilium's (cilium.io/v2) CiliumNetworkPolicy and \
     CiliumClusterwideNetworkPolicy, and Antrea's (crd.antrea.io/v1beta1) Tier, ClusterGroup, Group, \
     ClusterNetworkPolicy and NetworkPolicy";

/// What an object is, by its `kind` and `apiVersion`, if a what-if may apply it. The version is the loader's to
/// check (a kind's other version gets 422 naming `apiVersion`); the API group tells a Calico NetworkPolicy
/// (`projectcalico.org`, `crd.projectcalico.org`) from a Kubernetes one.
pub fn applicable(o: &serde_json::Value) -> Option<Applicable> {
    let kind = o.get("kind")?.as_str()?;
    let group = o.get("apiVersion").and_then(|v| v.as_str()).and_then(|v| v.split_once('/')).map(|(g, _)| g);
    let calico = matches!(group, Some("projectcalico.org" | "crd.projectcalico.org"));
    if group == Some("crd.antrea.io") {
        return Some(match kind {
            "ClusterNetworkPolicy" => Applicable::Policy(PolicyKind::AntreaClusterNetworkPolicy),
            "NetworkPolicy" => Applicable::Policy(PolicyKind::AntreaNetworkPolicy),
            "Tier" | "ClusterGroup" | "Group" => Applicable::AntreaObject,
            _ => return None,
        });
    }
    Some(match kind {
        "NetworkPolicy" if calico => Applicable::Policy(PolicyKind::CalicoNetworkPolicy),
        "NetworkPolicy" => Applicable::Policy(PolicyKind::NetworkPolicy),
        "ClusterNetworkPolicy" => Applicable::Policy(PolicyKind::ClusterNetworkPolicy),
        "AdminNetworkPolicy" => Applicable::Policy(PolicyKind::AdminNetworkPolicy),
        "BaselineAdminNetworkPolicy" => Applicable::Policy(PolicyKind::BaselineAdminNetworkPolicy),
        "GlobalNetworkPolicy" => Applicable::Policy(PolicyKind::GlobalNetworkPolicy),
        "Tier" => Applicable::Tier,
        "NetworkSet" => Applicable::NetworkSet { global: false },
        "GlobalNetworkSet" => Applicable::NetworkSet { global: true },
        "CiliumNetworkPolicy" => Applicable::Policy(PolicyKind::CiliumNetworkPolicy),
        "CiliumClusterwideNetworkPolicy" => Applicable::Policy(PolicyKind::CiliumClusterwideNetworkPolicy),
        _ => return None,
    })
}

/// How the answers name a policy of this kind: `namespace/name` for a NetworkPolicy, `cnp/name` (kubectl's short
/// kind) for a cluster-scoped one, `caliconetworkpolicy/namespace/name` for a Calico NetworkPolicy; what
/// [`netpol_core::model::Cluster::find_policy`] reads.
pub fn policy_reference(kind: PolicyKind, namespace: &str, name: &str) -> String {
    netpol_core::model::PolicyKey { kind, namespace: namespace.to_string(), name: name.to_string() }.to_string()
}

/// How the answers name an object a what-if applies, and what it is: a policy's reference
/// ([`policy_reference`]), `tier/name`, `networkset/namespace/name` or `globalnetworkset/name`.
pub fn applied_reference(o: &serde_json::Value) -> Option<(String, Applicable)> {
    let what = applicable(o)?;
    let meta = o.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    let ns = meta.get("namespace").and_then(|n| n.as_str()).unwrap_or("default");
    let reference = match what {
        Applicable::Policy(kind) => policy_reference(kind, ns, name),
        Applicable::Tier => format!("tier/{name}"),
        Applicable::NetworkSet { global: false } => format!("networkset/{ns}/{name}"),
        Applicable::NetworkSet { global: true } => format!("globalnetworkset/{name}"),
        Applicable::AntreaObject => match o.get("kind")?.as_str()? {
            "Tier" => format!("antreatier/{name}"),
            "ClusterGroup" => format!("clustergroup/{name}"),
            _ => format!("group/{ns}/{name}"),
        },
    };
    Some((reference, what))
}

/// The forms of a reference to delete, for messages.
const DELETE_FORMS: &str = "`namespace/name` (or `cnp/name`, `anp/name`, `banp/name`, `gnp/name`, \
     `caliconetworkpolicy/namespace/name`, Cilium's `ciliumnetworkpolicy/...` and `ccnp/name`, Antrea's \
     `acnp/name` and `annp/namespace/name`: the `ref` of `GET /api/v1/policies`)";

/// The cluster with the request's changes, or a 4xx naming the field at fault.
///
/// The applied objects go through the core loader on their own; then each is placed in `base`: a policy replaces
/// the one of its kind, namespace and name, and its tier is the base's tier of that name; a Tier replaces the
/// base's Tier of its name (or is added, as is a tier a policy names that neither declares: no order, Deny); a
/// network set replaces the one of its namespace and name. When the applied objects are Calico's, the built-in
/// tiers take Calico's names, as loading them with the cluster would.
pub fn apply(
    base: &netpol_core::model::Cluster,
    apply: Vec<serde_json::Value>,
    delete: &[String],
) -> Result<netpol_core::model::Cluster, OverlayError> {
    use netpol_core::model::{Namespace, NsId, Origin};
    let mut c = base.clone();
    for (i, d) in delete.iter().enumerate() {
        if !d.contains('/') {
            return Err(OverlayError::malformed(
                &format!("delete[{i}]"),
                format!("expected {DELETE_FORMS}, got `{d}`"),
            ));
        }
        let Some(id) = c.find_policy(d) else {
            return Err(OverlayError::not_found(&format!("delete[{i}]"), format!("no policy `{d}`")));
        };
        let before = c.policies.len();
        // Every policy of the object: a Cilium policy is up to three per rule (same kind, namespace and name).
        let (kind, ns, name) = {
            let p = c.policy(id);
            (p.kind, p.ns(), p.name.clone())
        };
        if kind.is_antrea() {
            // Its object goes (Antrea's objects are lowered again without it).
            let kind = if kind == PolicyKind::AntreaNetworkPolicy { "NetworkPolicy" } else { "ClusterNetworkPolicy" };
            let namespace = ns.map(|id| c.ns(id).name.clone());
            netpol_core::update::apply_to_cluster(
                &mut c,
                netpol_core::update::Change::DeleteAntrea { kind, namespace, name },
            );
            continue;
        }
        c.policies.retain(|p| !(p.kind == kind && p.ns() == ns && p.name == name));
        if c.policies.len() == before {
            return Err(OverlayError::not_found(&format!("delete[{i}]"), format!("no policy `{d}`")));
        }
    }
    let mut loader = netpol_core::load::Loader::new();
    // Antrea's objects are decoded alone, then admitted and lowered with the cluster's (`Cluster::antrea`).
    let mut antrea = netpol_core::load::Loader::new();
    antrea.defer_antrea();
    for (i, v) in apply.into_iter().enumerate() {
        let is_antrea = match applicable(&v) {
            Some(Applicable::AntreaObject) => true,
            Some(Applicable::Policy(k)) => k.is_antrea(),
            _ => false,
        };
        if is_antrea {
            antrea.add_value(v, Origin { file: "whatif".into(), document: 0, item: Some(i) });
            continue;
        }
        if applicable(&v).is_none() {
            let got = match v.get("kind").and_then(|k| k.as_str()) {
                Some(k) => format!(" (got `{k}`)"),
                None => " (`kind` is missing)".to_string(),
            };
            return Err(OverlayError::malformed(
                &format!("apply[{i}].kind"),
                format!("only {APPLICABLE_KINDS_TEXT} can be applied{got}"),
            ));
        }
        loader.add_value(v, Origin { file: "whatif".into(), document: 0, item: Some(i) });
    }
    let loaded = loader.finish();
    let antrea = antrea.finish();
    let invalid = |d: &netpol_core::load::Diagnostic| {
        let field = format!(
            "apply[{}]{}",
            d.origin.item.unwrap_or(0),
            d.field.as_deref().map(|f| format!(".{f}")).unwrap_or_default()
        );
        OverlayError::invalid(&field, d.message.clone())
    };
    let mut errors: Vec<&netpol_core::load::Diagnostic> =
        loaded.diagnostics.iter().chain(&antrea.diagnostics).filter(|d| d.severity == Severity::Error).collect();
    errors.sort_by_key(|d| d.origin.item);
    if let Some(d) = errors.first() {
        return Err(invalid(d));
    }
    let applied = loaded.cluster;
    // The base's namespace of an applied object's (added, with its labels, when the base has none of that name).
    let ns_in_base = |c: &mut netpol_core::model::Cluster, own: NsId| -> NsId {
        let theirs = applied.ns(own);
        match c.namespace_id(&theirs.name) {
            Some(id) => id,
            None => {
                c.namespaces.push(Namespace { name: theirs.name.clone(), labels: theirs.labels.clone(), origin: None });
                NsId::new(c.namespaces.len() - 1)
            }
        }
    };
    // Tiers: the applied cluster's tier `i` is the base's `tier_at[i]`.
    let mut tier_at: Vec<usize> = Vec::with_capacity(applied.tiers.len());
    for (i, t) in applied.tiers.iter().enumerate() {
        if i < 3 {
            // A built-in tier's Tier object may only restate its order and default action (validated).
            if let (Some(origin), Some(own)) = (&t.origin, c.tiers.get_mut(i)) {
                own.default_action = t.default_action;
                own.origin = Some(origin.clone());
            }
            tier_at.push(i);
            continue;
        }
        let at = c.tiers.iter().enumerate().skip(3).find(|(_, d)| d.name == t.name).map(|(k, _)| k);
        let k = match at {
            Some(k) => {
                if t.origin.is_some() {
                    c.tiers[k] = t.clone();
                }
                k
            }
            None => {
                c.tiers.push(t.clone());
                c.tiers.len() - 1
            }
        };
        tier_at.push(k);
    }
    if applied.has_calico() {
        for (own, theirs) in c.tiers.iter_mut().zip(&applied.tiers).take(3) {
            own.name.clone_from(&theirs.name);
        }
    }
    let mut placed = Vec::with_capacity(applied.policies.len());
    for mut pol in applied.policies.iter().cloned() {
        if let Some(own) = pol.ns() {
            pol.scope = netpol_core::model::Scope::Namespace(ns_in_base(&mut c, own));
        }
        if let Some(&k) = tier_at.get(pol.tier.index()) {
            pol.tier = netpol_core::model::PolicyTier::from_index(k);
        }
        placed.push(pol);
    }
    // Replaced by kind and name (and namespace, for a namespaced kind; cluster-scoped policies have none): every
    // policy of the object (a Cilium policy is several) replaces every one the base has of it.
    c.policies.retain(|p| !placed.iter().any(|q| p.kind == q.kind && p.ns() == q.ns() && p.name == q.name));
    c.policies.extend(placed);
    for mut set in applied.network_sets.iter().cloned() {
        set.ns = set.ns.map(|own| ns_in_base(&mut c, own));
        c.network_sets.retain(|s| !(s.ns == set.ns && s.name == set.name));
        c.network_sets.push(set);
    }
    // Antrea's objects: each replaces the loaded one of its kind, namespace and name; then all are admitted and
    // lowered again on the changed cluster (namespaces the other objects brought included), as a load of the same
    // objects would. What admission refuses of the applied ones (a policy's Tier that does not exist, ...) is 422.
    for o in antrea.cluster.antrea {
        netpol_core::update::apply_to_cluster(&mut c, netpol_core::update::Change::PutAntrea(o));
    }
    if !c.antrea.is_empty() {
        let diagnostics = netpol_core::load::relower_antrea(&mut c);
        let refused = diagnostics.iter().find(|d| d.severity == Severity::Error && &*d.origin.file == "whatif");
        if let Some(d) = refused {
            return Err(invalid(d));
        }
    }
    Ok(c)
}
