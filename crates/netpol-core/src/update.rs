//! Update: applies object changes (add, replace, delete of namespaces, pods, nodes, policies and Calico's Tiers,
//! network sets, host endpoints, service accounts and staged policies, Services and their endpoints, Antrea's
//! objects) to a compiled [`Engine`], for live clusters where objects change one event at a time.
//!
//! Objects are named by namespace and name, as the Kubernetes API names them; the `ns` field of a given
//! [`Pod`] or [`Policy`] is ignored. A namespace that is deleted while pods or policies still refer to it stays
//! as a referenced, undeclared namespace with only its automatic label, as the loader treats it.
//!
//! Afterwards the engine answers (verdicts, explanations, matrices and their classes, lint, diff) exactly as
//! `Engine::new` of its changed cluster would. What is done in place, and what recompiles:
//!
//! - **Pods** (put, replace, delete): always in place. A pod joins the identity with its key (namespace,
//!   labels, hostNetwork, ip class, ports); a missing identity is created with its policies, flattened rules,
//!   named ports and selector-peer memberships (a new IP may intern a new ip class). An identity left without
//!   pods is removed (the last identity takes its id), so no consumer ever sees an empty identity. A deleted
//!   pod's slot is taken by the last pod (its `PodId` changes; `apply_to_cluster` instead shifts every later
//!   pod). `ip_index` keeps the lowest pod id of an address, as a fresh compile does.
//! - **Policies** (put, replace, delete): in place when the set of distinct ipBlocks stays the same. The rules
//!   are spliced at the policy's position, so rule ids are those of a fresh compile; new selector peers are
//!   evaluated against the identities; peers no rule uses any more are dropped. A change that adds an ipBlock
//!   no other policy has, or removes the last use of one, recompiles: it changes the ip classes, and so the
//!   identities.
//! - **Namespaces**: a new namespace, a relabelled one and the deletion of one still in use (it keeps only its
//!   automatic label) are in place: namespaceSelector peers are re-evaluated for that namespace's identities.
//!   Deleting an unused namespace recompiles (namespace ids shift).
//! - **Calico and Cilium**: an engine with objects of Calico's kinds or Cilium policies, or a batch with changes to
//!   Calico's kinds, is recompiled whole (Calico's and Cilium's selectors see namespaces, service accounts and network sets through every endpoint's labels; host
//!   endpoints bring their addresses, GlobalNetworkPolicies per stage and the checks flows meet there). So is an
//!   engine for the CNI Cilium ([`crate::cni`]: each ipBlock is a CIDR peer compiled with the Calico peers); a
//!   recompile keeps the CNI given, or chooses it again when it was auto.
//!   [`apply_to_cluster`] keeps what the loader derives across objects: a policy's tier is found by name (a tier
//!   no Tier object declares is assumed as the loader assumes it, and dropped once no policy is in it), every
//!   pod's service account exists (undeclared ones without labels, as the loader adds them), and the built-in
//!   tiers carry Calico's names exactly when the cluster has Calico objects. A service account change on an engine
//!   without Calico objects only changes the cluster (nothing else reads service accounts).
//!   Cilium's entities (`host`, `remote-node`, `kube-apiserver`, `cluster`) and `toServices` are resolved again
//!   from the changed Nodes, pods, Services and endpoints before that recompile (`load/cilium_refs.rs`).
//! - **Antrea**: Antrea's objects are kept as decoded ([`Cluster::antrea`]): a policy is lowered to one policy per
//!   rule and `appliedTo` entry, with its groups inlined and `Self`/`sameLabels` rules split over the namespaces,
//!   so [`apply_to_cluster`] admits and lowers them all again ([`crate::load::relower_antrea`]) whenever what they
//!   read changes (their objects, namespaces — a pod in a new namespace brings it —, Services, Calico's tiers), and
//!   an engine with them, or a batch changing them, is recompiled whole.
//! - **Services and their endpoints** (Service, EndpointSlice, Endpoints): only the resolution of Cilium's
//!   references reads them. A batch of nothing else changes only the cluster when every Cilium policy resolves as
//!   before (always on an engine without Cilium references: a live cluster's endpoints change all the time), and
//!   recompiles otherwise.
//! - **Staged policies** (Calico's staged kinds): only [`Cluster::staged`] changes; the engine is neither updated
//!   nor recompiled (they enforce nothing; the staged view is compiled from the cluster when needed). They name
//!   their namespace and a tier that is not built in by name, so that namespace and tier changes leave them right.
//! - **Batches**: changes apply in order, in place, until one needs a recompile; from there on they only go to
//!   the cluster, and the engine is recompiled once at the end. A batch of more than [`BULK_CHANGES`] changes
//!   that also exceeds an eighth of the cluster's objects is recompiled directly.
//!
//! Internal numbering (identity, label-set, selector-peer and ip-class ids) may differ from a fresh compile,
//! and interned label sets and ip classes no identity uses any more are kept.

use rustc_hash::FxHashMap;

use crate::compile::{BlockId, CPeer, Engine, IdSet, IdentityId, IdentityKey, NsScope, RuleId, SelPeerId, SelPeerKey};
use crate::load::NAMESPACE_NAME_LABEL;
use crate::model::{
    Action, AntreaObject, Cluster, Direction, HostEndpoint, Namespace, NetworkSet, Node, NsId, Origin, Pod, PodId,
    Policy, PolicyId, PolicyKind, PolicyTier, Scope, Service, ServiceAccount, ServiceEndpoints, StagedPolicy, TierDef,
};
use crate::selector::{Labels, Selector};

/// Above this many changes (and an eighth of the cluster's pods and policies), a batch is recompiled at once.
pub const BULK_CHANGES: usize = 256;

/// One object change.
#[derive(Clone, Debug)]
pub enum Change {
    /// Adds the pod, or replaces the pod with the same namespace and name.
    PutPod {
        namespace: String,
        pod: Pod,
    },
    DeletePod {
        namespace: String,
        name: String,
    },
    /// Adds the policy, or replaces the policy with the same kind, namespace and name. `namespace` is that of
    /// a NetworkPolicy; it is ignored for cluster-scoped kinds. The policy's `tier` is taken as it is: Calico's
    /// policies, whose tiers go by name, are [`Change::PutCalicoPolicy`].
    PutPolicy {
        namespace: String,
        policy: Policy,
    },
    /// Deletes a NetworkPolicy (`networking.k8s.io`).
    DeletePolicy {
        namespace: String,
        name: String,
    },
    /// Deletes a cluster-scoped policy (ClusterNetworkPolicy, AdminNetworkPolicy, ...).
    DeleteClusterPolicy {
        kind: PolicyKind,
        name: String,
    },
    /// Adds or replaces a node (by name).
    PutNode(Node),
    DeleteNode {
        name: String,
    },
    /// Adds or replaces a namespace (its labels should include the automatic `kubernetes.io/metadata.name`).
    PutNamespace(Namespace),
    DeleteNamespace {
        name: String,
    },
    /// Adds or replaces a Calico policy: a `projectcalico.org` NetworkPolicy of `namespace`, or a
    /// GlobalNetworkPolicy (`namespace` ignored). `tier` names its tier as Calico does (`default`, `kube-admin`,
    /// `kube-baseline`, or a Tier's name); the policy's own `tier` is ignored. A tier that no Tier object declares
    /// is assumed as the loader assumes it (no order, default action Deny).
    PutCalicoPolicy {
        namespace: String,
        policy: Policy,
        tier: String,
    },
    /// Deletes a Calico NetworkPolicy (a GlobalNetworkPolicy is a [`Change::DeleteClusterPolicy`]).
    DeleteCalicoPolicy {
        namespace: String,
        name: String,
    },
    /// Adds or replaces a Calico Tier (by name). The Tier objects of the built-in tiers (`kube-admin`, `default`,
    /// `kube-baseline`) declare those tiers. A `TierDef` without an origin is taken as declared all the same.
    PutTier(TierDef),
    /// Deletes a Tier object. A tier some policy is still in stays, as an undeclared tier (as the loader assumes
    /// it); a built-in tier stays built in.
    DeleteTier {
        name: String,
    },
    /// Adds or replaces a Calico NetworkSet of `namespace`, or a GlobalNetworkSet (`namespace: None`); the set's
    /// own `ns` is ignored.
    PutNetworkSet {
        namespace: Option<String>,
        set: NetworkSet,
    },
    DeleteNetworkSet {
        namespace: Option<String>,
        name: String,
    },
    /// Adds or replaces a Calico HostEndpoint (cluster-scoped, by name).
    PutHostEndpoint(HostEndpoint),
    DeleteHostEndpoint {
        name: String,
    },
    /// Adds or replaces a ServiceAccount of `namespace` (what Calico's `serviceAccounts` selectors match); the
    /// account's own `ns` is ignored. An account without an origin is taken as declared all the same.
    PutServiceAccount {
        namespace: String,
        account: ServiceAccount,
    },
    /// Deletes a ServiceAccount. One that pods still run as stays, undeclared and without labels (as the loader
    /// adds the accounts pods name).
    DeleteServiceAccount {
        namespace: String,
        name: String,
    },
    /// Adds or replaces a Service (by namespace and name): what Cilium's `toServices` peers resolve against. Only
    /// the cluster changes, unless it has Cilium policies (which recompile, resolving them again).
    PutService(Service),
    DeleteService {
        namespace: String,
        name: String,
    },
    /// Adds or replaces an EndpointSlice or Endpoints object (by kind, namespace and name): the addresses of its
    /// Service's endpoints, which Cilium's `toServices` and `kube-apiserver` (Service `default/kubernetes`) resolve
    /// to. As [`Change::PutService`].
    PutServiceEndpoints(ServiceEndpoints),
    /// Deletes an EndpointSlice or Endpoints object: `kind` is `EndpointSlice` or `Endpoints`.
    DeleteServiceEndpoints {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// Adds or replaces a Calico staged policy (StagedNetworkPolicy, StagedGlobalNetworkPolicy or
    /// StagedKubernetesNetworkPolicy; the same staged kind, namespace and name), as the loader reads the object
    /// alone. Staged policies enforce nothing: only [`Cluster::staged`] changes, the compiled engine stays as it
    /// is. Its namespace goes by name (`StagedPolicy::namespace`), and so does a tier that is not built in
    /// (`StagedPolicy::implicit_tier`; the staged view finds it among the cluster's tiers then).
    PutStagedPolicy(StagedPolicy),
    /// Deletes a staged policy: its staged kind (`StagedNetworkPolicy`, `StagedGlobalNetworkPolicy`,
    /// `StagedKubernetesNetworkPolicy`, as `StagedPolicy::staged_kind` names it), namespace (`None` for the
    /// global kind) and name.
    DeleteStagedPolicy {
        kind: &'static str,
        namespace: Option<String>,
        name: String,
    },
    /// Adds or replaces one of Antrea's objects (a Tier, ClusterGroup, Group, ClusterNetworkPolicy or
    /// NetworkPolicy: the same kind, namespace and name), as the loader decodes it alone (`Cluster::antrea`; see
    /// [`crate::load::Loader::defer_antrea`]). Every Antrea object is then lowered again on the cluster
    /// ([`crate::load::relower_antrea`]) and the engine recompiled. A new object goes after the others of its rank
    /// (Tiers, then groups, then policies), as admission needs a policy's Tier first.
    PutAntrea(AntreaObject),
    /// Deletes one of Antrea's objects: `kind` as [`AntreaObject::kind`] names it (`Tier`, `ClusterGroup`,
    /// `Group`, `ClusterNetworkPolicy`, `NetworkPolicy`), its namespace (`None` for the cluster-scoped kinds).
    DeleteAntrea {
        kind: &'static str,
        namespace: Option<String>,
        name: String,
    },
}

impl Change {
    /// Whether the change is to an object of a Calico kind, or to what only Calico reads (service accounts).
    pub fn is_calico(&self) -> bool {
        match self {
            // Cilium's kinds compile to the same expression selectors over endpoints' labels: recompiled alike.
            Change::PutPolicy { policy, .. } => {
                matches!(policy.kind, PolicyKind::CalicoNetworkPolicy | PolicyKind::GlobalNetworkPolicy)
                    || policy.kind.is_cilium()
            }
            Change::DeleteClusterPolicy { kind, .. } => *kind == PolicyKind::GlobalNetworkPolicy,
            Change::PutCalicoPolicy { .. }
            | Change::DeleteCalicoPolicy { .. }
            | Change::PutTier(_)
            | Change::DeleteTier { .. }
            | Change::PutNetworkSet { .. }
            | Change::DeleteNetworkSet { .. }
            | Change::PutHostEndpoint(_)
            | Change::DeleteHostEndpoint { .. }
            | Change::PutServiceAccount { .. }
            | Change::DeleteServiceAccount { .. } => true,
            Change::PutPod { .. }
            | Change::PutAntrea(_)
            | Change::DeleteAntrea { .. }
            | Change::DeletePod { .. }
            | Change::DeletePolicy { .. }
            | Change::PutNode(_)
            | Change::DeleteNode { .. }
            | Change::PutNamespace(_)
            | Change::DeleteNamespace { .. }
            | Change::PutStagedPolicy(_)
            | Change::DeleteStagedPolicy { .. }
            | Change::PutService(_)
            | Change::DeleteService { .. }
            | Change::PutServiceEndpoints(_)
            | Change::DeleteServiceEndpoints { .. } => false,
        }
    }

    /// Whether the change is to one of Antrea's objects.
    pub fn is_antrea(&self) -> bool {
        matches!(self, Change::PutAntrea(_) | Change::DeleteAntrea { .. })
    }

    /// Whether lowering Antrea's objects reads what the change changes: Antrea's objects, namespaces (`Self` and
    /// `sameLabels` split rules per namespace), Services (`serviceReference` groups), and Calico's tiers (which
    /// share the cluster's list of tiers).
    fn antrea_reads(&self) -> bool {
        self.is_antrea()
            || self.is_calico()
            || matches!(
                self,
                Change::PutNamespace(_)
                    | Change::DeleteNamespace { .. }
                    | Change::PutService(_)
                    | Change::DeleteService { .. }
            )
    }

    /// Whether the change is to a staged policy: only the cluster's staged policies change, never the engine.
    pub fn is_staged(&self) -> bool {
        matches!(self, Change::PutStagedPolicy(_) | Change::DeleteStagedPolicy { .. })
    }

    /// Whether the change is to a ServiceAccount: only Calico's selectors read them, so an engine without Calico
    /// objects takes it without recompiling.
    fn is_service_account(&self) -> bool {
        matches!(self, Change::PutServiceAccount { .. } | Change::DeleteServiceAccount { .. })
    }

    /// Whether the change is to a Service or its endpoints: only the resolution of Cilium's references reads them.
    pub fn is_service(&self) -> bool {
        matches!(
            self,
            Change::PutService(_)
                | Change::DeleteService { .. }
                | Change::PutServiceEndpoints(_)
                | Change::DeleteServiceEndpoints { .. }
        )
    }
}

/// What [`Engine::update`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateStats {
    /// Changes applied to the compiled engine in place (also counted when a later change of the same batch
    /// needed a recompile).
    pub in_place: usize,
    /// Whether the engine was recompiled from its cluster (changes that cannot be applied in place).
    pub recompiled: bool,
    /// Why it was recompiled (the first change that could not be applied in place, or a large batch).
    pub recompile_cause: Option<&'static str>,
}

/// The namespace id of `name`, creating an undeclared namespace when it does not exist.
fn ns_or_insert(c: &mut Cluster, name: &str) -> NsId {
    if let Some(id) = c.namespace_id(name) {
        return id;
    }
    let mut labels = Labels::new();
    labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
    c.namespaces.push(Namespace { name: name.to_string(), labels, origin: None });
    NsId::new(c.namespaces.len() - 1)
}

/// Applies one change to a cluster (no compiled state involved). Returns whether anything changed.
pub fn apply_to_cluster(c: &mut Cluster, change: Change) -> bool {
    let (changed, relower) = apply_leaving_antrea(c, change);
    if relower {
        // Their diagnostics are the loader's (and the live source's) to report.
        let _ = crate::load::relower_antrea(c);
    }
    changed
}

/// [`apply_to_cluster`] but for lowering Antrea's objects again: whether the cluster changed, and whether they must
/// be lowered again (a batch lowers them once, at its end).
fn apply_leaving_antrea(c: &mut Cluster, change: Change) -> (bool, bool) {
    let calico = change.is_calico();
    let antrea = change.antrea_reads() && (change.is_antrea() || !c.antrea.is_empty());
    let namespaces = c.namespaces.len();
    let changed = apply_change(c, change);
    if calico && changed {
        tidy_tiers(c);
    }
    // A pod (or policy) in a namespace nothing declared brings it: `Self` rules are split over it too.
    let antrea = antrea || (!c.antrea.is_empty() && c.namespaces.len() != namespaces);
    (changed, antrea && changed)
}

/// Removes namespace `name` if nothing refers to it (ids renumbered); one still in use stays.
pub(crate) fn remove_unused_namespace(c: &mut Cluster, name: &str) {
    if c.namespace_id(name).is_some_and(|id| !namespace_used(c, id)) {
        apply_change(c, Change::DeleteNamespace { name: name.to_string() });
    }
}

fn apply_change(c: &mut Cluster, change: Change) -> bool {
    match change {
        Change::PutPod { namespace, mut pod } => {
            let ns = ns_or_insert(c, &namespace);
            pod.ns = ns;
            let account = pod.service_account.clone();
            match c.pods.iter().position(|p| p.ns == ns && p.name == pod.name) {
                Some(i) => {
                    let old = std::mem::replace(&mut c.pods[i], pod);
                    forget_service_account(c, ns, &old.service_account);
                }
                None => c.pods.push(pod),
            }
            note_service_account(c, ns, &account);
            true
        }
        Change::DeletePod { namespace, name } => {
            let Some(ns) = c.namespace_id(&namespace) else { return false };
            let Some(i) = c.pods.iter().position(|p| p.ns == ns && p.name == name) else { return false };
            let old = c.pods.remove(i);
            forget_service_account(c, ns, &old.service_account);
            true
        }
        Change::PutPolicy { namespace, mut policy } => {
            if policy.kind == PolicyKind::NetworkPolicy {
                policy.scope = Scope::Namespace(ns_or_insert(c, &namespace));
            }
            put_policy(c, policy);
            true
        }
        Change::DeletePolicy { namespace, name } => {
            delete_namespaced_policy(c, PolicyKind::NetworkPolicy, &namespace, &name)
        }
        Change::DeleteClusterPolicy { kind, name } => {
            let before = c.policies.len();
            c.policies.retain(|p| !(p.kind == kind && p.name == name));
            before != c.policies.len()
        }
        Change::PutNode(n) => {
            match c.nodes.iter().position(|m| m.name == n.name) {
                Some(i) => c.nodes[i] = n,
                None => c.nodes.push(n),
            }
            true
        }
        Change::DeleteNode { name } => {
            let before = c.nodes.len();
            c.nodes.retain(|n| n.name != name);
            before != c.nodes.len()
        }
        Change::PutNamespace(n) => {
            match c.namespace_id(&n.name) {
                Some(id) => c.namespaces[id.index()] = n,
                None => c.namespaces.push(n),
            }
            true
        }
        Change::DeleteNamespace { name } => {
            let Some(id) = c.namespace_id(&name) else { return false };
            if namespace_used(c, id) {
                let mut labels = Labels::new();
                labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
                c.namespaces[id.index()] = Namespace { name, labels, origin: None };
            } else {
                c.namespaces.remove(id.index());
                let fix = |ns: &mut NsId| {
                    if *ns > id {
                        *ns = NsId::new(ns.index() - 1);
                    }
                };
                c.pods.iter_mut().for_each(|p| fix(&mut p.ns));
                c.policies.iter_mut().for_each(|p| {
                    if let Scope::Namespace(ns) = &mut p.scope {
                        fix(ns)
                    }
                });
                c.network_sets.iter_mut().for_each(|s| s.ns.iter_mut().for_each(fix));
                c.service_accounts.iter_mut().for_each(|s| fix(&mut s.ns));
                // Staged policies go by namespace name: the one gone gets the loader's placeholder scope.
                for s in &mut c.staged {
                    if let Scope::Namespace(ns) = &mut s.policy.scope {
                        if *ns == id {
                            s.policy.scope = staged_scope(None, &name);
                        } else {
                            fix(ns);
                        }
                    }
                }
            }
            true
        }
        Change::PutCalicoPolicy { namespace, mut policy, tier } => {
            if policy.kind == PolicyKind::CalicoNetworkPolicy {
                policy.scope = Scope::Namespace(ns_or_insert(c, &namespace));
            }
            policy.tier = tier_or_insert(c, &tier);
            put_policy(c, policy);
            true
        }
        Change::DeleteCalicoPolicy { namespace, name } => {
            delete_namespaced_policy(c, PolicyKind::CalicoNetworkPolicy, &namespace, &name)
        }
        Change::PutTier(mut tier) => {
            if tier.origin.is_none() {
                tier.origin = Some(Origin::default());
            }
            match CALICO_BUILTIN_TIERS.iter().position(|&b| b == tier.name) {
                Some(i) => {
                    c.tiers[i].default_action = tier.default_action;
                    c.tiers[i].origin = tier.origin;
                }
                None => match custom_tier(c, &tier.name) {
                    Some(i) => c.tiers[i] = tier,
                    None => c.tiers.push(tier),
                },
            }
            true
        }
        Change::DeleteTier { name } => {
            if let Some(i) = CALICO_BUILTIN_TIERS.iter().position(|&b| b == name) {
                if c.tiers[i].origin.is_none() {
                    return false;
                }
                c.tiers[i].origin = None;
                c.tiers[i].default_action = TierDef::builtin()[i].default_action;
                return true;
            }
            let Some(i) = custom_tier(c, &name) else { return false };
            if c.tiers[i].origin.is_none() {
                return false;
            }
            // Still named by policies: the loader would assume it; otherwise `tidy_tiers` drops it.
            c.tiers[i] = implicit_tier(&name);
            true
        }
        Change::PutNetworkSet { namespace, mut set } => {
            set.ns = namespace.map(|n| ns_or_insert(c, &n));
            match c.network_sets.iter().position(|s| s.ns == set.ns && s.name == set.name) {
                Some(i) => c.network_sets[i] = set,
                None => c.network_sets.push(set),
            }
            true
        }
        Change::DeleteNetworkSet { namespace, name } => {
            let ns = match namespace {
                Some(n) => match c.namespace_id(&n) {
                    Some(id) => Some(id),
                    None => return false,
                },
                None => None,
            };
            let before = c.network_sets.len();
            c.network_sets.retain(|s| !(s.ns == ns && s.name == name));
            before != c.network_sets.len()
        }
        Change::PutHostEndpoint(h) => {
            match c.host_endpoints.iter().position(|x| x.name == h.name) {
                Some(i) => c.host_endpoints[i] = h,
                None => c.host_endpoints.push(h),
            }
            true
        }
        Change::DeleteHostEndpoint { name } => {
            let before = c.host_endpoints.len();
            c.host_endpoints.retain(|h| h.name != name);
            before != c.host_endpoints.len()
        }
        Change::PutServiceAccount { namespace, mut account } => {
            let ns = ns_or_insert(c, &namespace);
            account.ns = ns;
            if account.origin.is_none() {
                account.origin = Some(Origin::default());
            }
            match c.service_accounts.iter().position(|s| s.ns == ns && s.name == account.name) {
                Some(i) => c.service_accounts[i] = account,
                None => c.service_accounts.push(account),
            }
            true
        }
        Change::PutStagedPolicy(mut staged) => {
            if let Some(ns) = &staged.namespace {
                staged.policy.scope = staged_scope(c.namespace_id(ns), ns);
            }
            staged_tier_by_name(c, &mut staged);
            let key = (staged.staged_kind(), staged.namespace.clone(), staged.policy.name.clone());
            match c
                .staged
                .iter()
                .position(|s| (s.staged_kind(), &s.namespace, &s.policy.name) == (key.0, &key.1, &key.2))
            {
                Some(i) => c.staged[i] = staged,
                None => c.staged.push(staged),
            }
            true
        }
        Change::DeleteStagedPolicy { kind, namespace, name } => {
            let before = c.staged.len();
            c.staged.retain(|s| !(s.staged_kind() == kind && s.namespace == namespace && s.policy.name == name));
            before != c.staged.len()
        }
        Change::PutService(svc) => {
            match c.services.iter().position(|s| s.namespace == svc.namespace && s.name == svc.name) {
                Some(i) => c.services[i] = svc,
                None => c.services.push(svc),
            }
            true
        }
        Change::DeleteService { namespace, name } => {
            let before = c.services.len();
            c.services.retain(|s| !(s.namespace == namespace && s.name == name));
            before != c.services.len()
        }
        Change::PutServiceEndpoints(eps) => {
            let same = |e: &ServiceEndpoints| e.kind == eps.kind && e.namespace == eps.namespace && e.name == eps.name;
            match c.service_endpoints.iter().position(same) {
                Some(i) => c.service_endpoints[i] = eps,
                None => c.service_endpoints.push(eps),
            }
            true
        }
        Change::DeleteServiceEndpoints { kind, namespace, name } => {
            let before = c.service_endpoints.len();
            c.service_endpoints.retain(|e| !(e.kind == kind && e.namespace == namespace && e.name == name));
            before != c.service_endpoints.len()
        }
        Change::PutAntrea(object) => {
            let same = |o: &AntreaObject| {
                o.kind() == object.kind() && o.namespace() == object.namespace() && o.name() == object.name()
            };
            match c.antrea.iter().position(same) {
                Some(i) => c.antrea[i] = object,
                None => {
                    let at = c.antrea.iter().rposition(|o| o.rank() <= object.rank()).map_or(0, |i| i + 1);
                    c.antrea.insert(at, object);
                }
            }
            true
        }
        Change::DeleteAntrea { kind, namespace, name } => {
            let before = c.antrea.len();
            c.antrea.retain(|o| !(o.kind() == kind && o.namespace() == namespace.as_deref() && o.name() == name));
            before != c.antrea.len()
        }
        Change::DeleteServiceAccount { namespace, name } => {
            let Some(ns) = c.namespace_id(&namespace) else { return false };
            let Some(i) = c.service_accounts.iter().position(|s| s.ns == ns && s.name == name) else { return false };
            if c.service_accounts[i].origin.is_none() {
                return false;
            }
            if c.pods.iter().any(|p| p.ns == ns && *p.service_account == *name) {
                c.service_accounts[i] = ServiceAccount { ns, name, labels: Labels::default(), origin: None };
            } else {
                c.service_accounts.remove(i);
            }
            true
        }
    }
}

/// Calico's names of the built-in tiers, in their order in [`Cluster::tiers`] (the loader names them so when the
/// input has Calico objects).
const CALICO_BUILTIN_TIERS: [&str; 3] = ["kube-admin", "default", "kube-baseline"];

/// The tier a policy names when no Tier object declares it, as the loader assumes it.
fn implicit_tier(name: &str) -> TierDef {
    TierDef {
        name: name.to_string(),
        order: None,
        default_action: Action::Deny,
        origin: None,
        pass_to_network_policy: false,
    }
}

/// The index of Calico's own tier `name` in [`Cluster::tiers`].
fn custom_tier(c: &Cluster, name: &str) -> Option<usize> {
    c.tiers.iter().skip(3).position(|t| t.name == name).map(|i| i + 3)
}

/// The tier Calico names `name`, assumed (undeclared) when the cluster has none of that name.
fn tier_or_insert(c: &mut Cluster, name: &str) -> PolicyTier {
    if let Some(i) = CALICO_BUILTIN_TIERS.iter().position(|&b| b == name) {
        return PolicyTier::from_index(i);
    }
    let i = custom_tier(c, name).unwrap_or_else(|| {
        c.tiers.push(implicit_tier(name));
        c.tiers.len() - 1
    });
    PolicyTier::from_index(i)
}

/// A staged policy's scope: its namespace when the cluster has it, else (as the loader leaves it) the cluster-wide
/// selector of that namespace's name label; the staged view resolves it by name.
fn staged_scope(id: Option<NsId>, name: &str) -> Scope {
    match id {
        Some(id) => Scope::Namespace(id),
        None => Scope::Cluster(Selector::from_labels([(NAMESPACE_NAME_LABEL, name)])),
    }
}

/// A staged policy in a tier that is not built in names it by name (`implicit_tier`), so that it stays right
/// whatever becomes of the tiers' indexes; the staged view finds the tier by that name.
fn staged_tier_by_name(c: &Cluster, s: &mut StagedPolicy) {
    if s.implicit_tier.is_none() && s.policy.tier.index() >= 3 {
        s.implicit_tier = c.tiers.get(s.policy.tier.index()).map(|t| t.name.clone());
    }
}

/// What the loader derives about tiers from the whole input: undeclared tiers exist only while a policy is in
/// them, and the built-in tiers carry Calico's names exactly when the cluster has Calico objects.
fn tidy_tiers(c: &mut Cluster) {
    // Tier indexes may change below: staged policies go by tier name.
    let mut staged = std::mem::take(&mut c.staged);
    staged.iter_mut().for_each(|s| staged_tier_by_name(c, s));
    c.staged = staged;
    let used: Vec<bool> = {
        let mut used = vec![false; c.tiers.len()];
        for p in &c.policies {
            if let Some(u) = used.get_mut(p.tier.index()) {
                *u = true;
            }
        }
        used
    };
    if (3..c.tiers.len()).any(|i| c.tiers[i].origin.is_none() && !used[i]) {
        // The new index of each tier; dropped ones keep none.
        let mut remap: Vec<Option<usize>> = Vec::with_capacity(c.tiers.len());
        let mut next = 0;
        for (i, t) in c.tiers.iter().enumerate() {
            if i >= 3 && t.origin.is_none() && !used[i] {
                remap.push(None);
            } else {
                remap.push(Some(next));
                next += 1;
            }
        }
        let mut i = 0;
        c.tiers.retain(|_| {
            i += 1;
            remap[i - 1].is_some()
        });
        for p in &mut c.policies {
            if let Some(Some(new)) = remap.get(p.tier.index()) {
                p.tier = PolicyTier::from_index(*new);
            }
        }
    }
    let calico = c.has_calico();
    for (i, (t, kubernetes)) in c.tiers.iter_mut().zip(TierDef::builtin()).enumerate() {
        t.name = if calico { CALICO_BUILTIN_TIERS[i].to_string() } else { kubernetes.name };
    }
}

/// Adds or replaces a policy (same kind, namespace and name).
fn put_policy(c: &mut Cluster, policy: Policy) {
    match c.policies.iter().position(|p| same_policy(p, &policy)) {
        Some(i) => c.policies[i] = policy,
        None => c.policies.push(policy),
    }
}

fn delete_namespaced_policy(c: &mut Cluster, kind: PolicyKind, namespace: &str, name: &str) -> bool {
    let Some(ns) = c.namespace_id(namespace) else { return false };
    let before = c.policies.len();
    c.policies.retain(|p| !(p.kind == kind && p.ns() == Some(ns) && p.name == name));
    before != c.policies.len()
}

/// Whether objects refer to namespace `id`: deleting it then leaves it undeclared rather than gone.
fn namespace_used(c: &Cluster, id: NsId) -> bool {
    c.pods.iter().any(|p| p.ns == id)
        || c.policies.iter().any(|p| p.ns() == Some(id))
        || c.network_sets.iter().any(|s| s.ns == Some(id))
        || c.service_accounts.iter().any(|s| s.ns == id)
}

/// A pod of namespace `ns` runs as `account`: the account exists (undeclared, without labels, if no
/// ServiceAccount object declares it), as the loader adds it.
fn note_service_account(c: &mut Cluster, ns: NsId, account: &str) {
    if !c.service_accounts.iter().any(|s| s.ns == ns && s.name == account) {
        let name = account.to_string();
        c.service_accounts.push(ServiceAccount { ns, name, labels: Labels::default(), origin: None });
    }
}

/// A pod of namespace `ns` no longer runs as `account`: an undeclared account no pod runs as any more is gone.
fn forget_service_account(c: &mut Cluster, ns: NsId, account: &str) {
    let undeclared = c.service_accounts.iter().any(|s| s.ns == ns && s.name == account && s.origin.is_none());
    if undeclared && !c.pods.iter().any(|p| p.ns == ns && *p.service_account == *account) {
        drop_undeclared_account(c, ns, account);
    }
}

/// Removes the service account `account` of `ns` if no ServiceAccount object declares it.
fn drop_undeclared_account(c: &mut Cluster, ns: NsId, account: &str) {
    if let Some(i) = c.service_accounts.iter().position(|s| s.ns == ns && s.name == account) {
        if c.service_accounts[i].origin.is_none() {
            c.service_accounts.remove(i);
        }
    }
}

/// Whether the Cilium and Antrea policies of two clusters are the same, generated peers and rules included (what
/// resolving Cilium's references, and lowering Antrea's `serviceReference` groups, write from Services; the other
/// policies they do not touch).
fn cilium_policies_alike(a: &Cluster, b: &Cluster) -> bool {
    let derived = |k: PolicyKind| k.is_cilium() || k.is_antrea();
    a.policies.len() == b.policies.len()
        && a.policies
            .iter()
            .zip(&b.policies)
            .all(|(x, y)| x.kind == y.kind && (!derived(x.kind) || format!("{x:?}") == format!("{y:?}")))
}

/// Whether two policies are the same object: kind, namespace and name.
fn same_policy(a: &Policy, b: &Policy) -> bool {
    a.kind == b.kind && a.ns() == b.ns() && a.name == b.name
}

/// The outcome of one change tried in place.
enum InPlace {
    /// Applied in place; whether anything changed.
    Done(bool),
    /// Not applicable in place: the change (not applied to the cluster yet) and why.
    Recompile(Box<Change>, &'static str),
}

impl Engine {
    /// Applies `changes` in order, in place where possible (see the module documentation). The engine answers
    /// afterwards exactly as `Engine::new` on the changed cluster would.
    pub fn update(&mut self, changes: Vec<Change>) -> UpdateStats {
        let mut stats = UpdateStats::default();
        // Services and their endpoints are read only by the resolution of Cilium's references: a batch of nothing
        // else that leaves every Cilium policy's resolved rules as they are changes the cluster alone.
        if !changes.is_empty() && changes.iter().all(Change::is_service) {
            let mut c = self.cluster.clone();
            for ch in changes {
                stats.in_place += usize::from(apply_to_cluster(&mut c, ch));
            }
            if crate::load::has_cilium_refs(&c) {
                crate::load::resolve_cilium_refs(&mut c);
            }
            if cilium_policies_alike(&c, &self.cluster) {
                self.cluster = c;
                return stats;
            }
            let cni = self.cni_choice();
            *self = Engine::with_cni(c, cni);
            return UpdateStats {
                in_place: 0,
                recompiled: true,
                recompile_cause: Some("a Service's resolution changes"),
            };
        }
        let objects = self.cluster.pods.len() + self.cluster.policies.len();
        let mut cause = (changes.len() > BULK_CHANGES && changes.len() * 8 > objects).then_some("a large batch");
        // Calico's selectors see namespaces, service accounts and network sets through every endpoint's labels:
        // an engine with Calico objects is recompiled whole.
        let calico_change = |c: &Change| c.is_calico() && !c.is_service_account();
        if cause.is_none() && (self.calico_objects || changes.iter().any(calico_change)) {
            cause = Some("Calico objects");
        }
        // Cilium's policies likewise (their selectors see Cilium's labels of every endpoint).
        if cause.is_none() && self.cilium {
            cause = Some("Cilium objects");
        }
        // Antrea's objects are lowered again on the changed cluster (their rules split per namespace, groups
        // inlined): an engine with them, or a batch changing them, is recompiled whole.
        if cause.is_none() && (!self.cluster.antrea.is_empty() || changes.iter().any(Change::is_antrea)) {
            cause = Some("Antrea objects");
        }
        // Cilium's reading of ipBlocks (a CIDR peer per ipBlock, compiled with the rule's other Calico peers).
        if cause.is_none() && self.cni.ip_block_outside_only() {
            cause = Some("the CNI Cilium");
        }
        // A pod change may bring or take away a CNI's agent, which auto-detection reads (`Cni::auto`): a pod put
        // with an agent's label, or any pod change while an agent is what chose the CNI (no scan of every pod on
        // every other batch).
        let by_agent = || matches!(&self.cni_source, crate::cni::CniSource::Auto(why) if crate::cni::by_agent(why));
        let pods_changed = changes.iter().any(|c| match c {
            Change::PutPod { pod, .. } => crate::cni::is_agent(&pod.labels) || by_agent(),
            Change::DeletePod { .. } | Change::DeleteNamespace { .. } => by_agent(),
            _ => false,
        });
        // Whether the cluster changed since a recompile became necessary.
        let mut dirty = false;
        // Whether Antrea's objects must be lowered again (once for the batch, before the recompile).
        let mut relower = false;
        for ch in changes {
            // Staged policies enforce nothing: the cluster keeps them, the engine does not read them.
            if ch.is_staged() {
                stats.in_place += usize::from(apply_to_cluster(&mut self.cluster, ch));
                self.index_new_namespaces();
                continue;
            }
            if cause.is_some() {
                let (changed, again) = apply_leaving_antrea(&mut self.cluster, ch);
                dirty |= changed;
                relower |= again;
                continue;
            }
            let done = self.apply_in_place(ch);
            self.index_new_namespaces();
            match done {
                InPlace::Done(changed) => stats.in_place += usize::from(changed),
                InPlace::Recompile(ch, why) => {
                    let (changed, again) = apply_leaving_antrea(&mut self.cluster, *ch);
                    relower |= again;
                    if changed {
                        cause = Some(why);
                        dirty = true;
                    }
                }
            }
        }
        if !dirty && pods_changed && matches!(self.cni_source, crate::cni::CniSource::Auto(_)) {
            let (cni, why) = crate::cni::Cni::auto(&self.cluster);
            if cni == self.cni {
                self.cni_source = crate::cni::CniSource::Auto(why);
            } else {
                cause = Some("the CNI found anew");
                dirty = true;
            }
        }
        if dirty {
            let mut c = std::mem::take(&mut self.cluster);
            if relower {
                let _ = crate::load::relower_antrea(&mut c);
            }
            // Cilium's entities and `toServices` follow the Nodes, pods' nodes, Services and endpoints as they are
            // now (their warnings are the loader's to report).
            if crate::load::has_cilium_refs(&c) {
                crate::load::resolve_cilium_refs(&mut c);
            }
            let cni = self.cni_choice();
            *self = Engine::with_cni(c, cni);
            stats.recompiled = true;
            stats.recompile_cause = cause;
        }
        stats
    }

    fn apply_in_place(&mut self, change: Change) -> InPlace {
        match change {
            Change::PutPod { namespace, pod } => {
                self.put_pod(&namespace, pod);
                InPlace::Done(true)
            }
            Change::DeletePod { namespace, name } => InPlace::Done(self.delete_pod(&namespace, &name)),
            Change::PutPolicy { namespace, policy } => self.put_policy(namespace, policy),
            Change::DeletePolicy { namespace, name } => {
                let Some(ns) = self.ns_names.get(&namespace).copied() else { return InPlace::Done(false) };
                let pos = self.find_policy(Some(ns), |p| p.kind == PolicyKind::NetworkPolicy && p.name == name);
                self.delete_policy(pos, Change::DeletePolicy { namespace, name })
            }
            Change::DeleteClusterPolicy { kind, name } => {
                let pos = self.find_policy(None, |p| p.kind == kind && p.name == name);
                self.delete_policy(pos, Change::DeleteClusterPolicy { kind, name })
            }
            // A node's addresses are blocks: every ip class may change.
            ch @ (Change::PutNode(_) | Change::DeleteNode { .. }) => InPlace::Recompile(Box::new(ch), "a node changes"),
            Change::PutNamespace(n) => {
                self.put_namespace(n);
                InPlace::Done(true)
            }
            Change::DeleteNamespace { name } => self.delete_namespace(name),
            // Only Calico's selectors read service accounts, and this engine has no Calico objects.
            ch @ (Change::PutServiceAccount { .. } | Change::DeleteServiceAccount { .. }) => {
                InPlace::Done(apply_to_cluster(&mut self.cluster, ch))
            }
            // Only Cilium's policies read Services and their endpoints (resolved when loading or recompiling), and
            // an engine with Cilium policies is recompiled: here, only the cluster keeps them.
            ch @ (Change::PutService(_)
            | Change::DeleteService { .. }
            | Change::PutServiceEndpoints(_)
            | Change::DeleteServiceEndpoints { .. }) => InPlace::Done(apply_to_cluster(&mut self.cluster, ch)),
            // Never enforced: only the cluster keeps them (`update` applies them before this).
            ch @ (Change::PutStagedPolicy(_) | Change::DeleteStagedPolicy { .. }) => {
                InPlace::Done(apply_to_cluster(&mut self.cluster, ch))
            }
            // `update` recompiles every batch with one of these.
            ch @ (Change::PutCalicoPolicy { .. }
            | Change::DeleteCalicoPolicy { .. }
            | Change::PutTier(_)
            | Change::DeleteTier { .. }
            | Change::PutNetworkSet { .. }
            | Change::DeleteNetworkSet { .. }
            | Change::PutHostEndpoint(_)
            | Change::DeleteHostEndpoint { .. }) => InPlace::Recompile(Box::new(ch), "Calico objects"),
            ch @ (Change::PutAntrea(_) | Change::DeleteAntrea { .. }) => {
                InPlace::Recompile(Box::new(ch), "Antrea objects")
            }
        }
    }

    // ---- pods ----

    fn put_pod(&mut self, namespace: &str, mut pod: Pod) {
        let ns = self.ns_or_insert(namespace);
        pod.ns = ns;
        let account = pod.service_account.clone();
        match self.pod_names.find(&self.cluster.pods, ns, &pod.name) {
            Some(pid) => {
                let i = pid.index();
                let old = self.detach_pod(pid);
                let old_pod = std::mem::replace(&mut self.cluster.pods[i], pod);
                self.forget_service_account(ns, &old_pod.service_account);
                self.attach_pod(pid);
                self.drop_identity_if_empty(old);
            }
            None => {
                let pid = PodId::new(self.cluster.pods.len());
                self.pod_names.insert(ns, &pod.name, pid);
                self.cluster.pods.push(pod);
                self.pod_identity.push(IdentityId::new(0));
                self.primary_ips.push(None);
                self.attach_pod(pid);
            }
        }
        note_service_account(&mut self.cluster, ns, &account);
        *self.sa_pods.entry((ns, account)).or_default() += 1;
    }

    /// A pod of `ns` no longer runs as `account`: an undeclared account no pod runs as any more is gone (as
    /// [`forget_service_account`] does, with the pods counted instead of scanned).
    fn forget_service_account(&mut self, ns: NsId, account: &crate::labels::Atom) {
        let key = (ns, account.clone());
        let Some(uses) = self.sa_pods.get_mut(&key) else { return };
        *uses = uses.saturating_sub(1);
        if *uses == 0 {
            self.sa_pods.remove(&key);
            drop_undeclared_account(&mut self.cluster, ns, account);
        }
    }

    fn delete_pod(&mut self, namespace: &str, name: &str) -> bool {
        let Some(ns) = self.ns_names.get(namespace).copied() else { return false };
        let Some(pid) = self.pod_names.take(&self.cluster.pods, ns, name) else { return false };
        let i = pid.index();
        let old = self.detach_pod(pid);
        let last = self.cluster.pods.len() - 1;
        let gone = self.cluster.pods.swap_remove(i);
        self.forget_service_account(ns, &gone.service_account);
        self.pod_identity.swap_remove(i);
        self.primary_ips.swap_remove(i);
        if i != last {
            let moved = &self.cluster.pods[i];
            self.pod_names.renumber(moved.ns, &moved.name, PodId::new(last), pid);
            self.renumber_pod(PodId::new(last), pid);
        }
        self.drop_identity_if_empty(old);
        true
    }

    /// The IPs of a pod, taken out of it for a moment (so that the indexes may change meanwhile; no copy):
    /// `f` sees each distinct IP once.
    fn for_pod_ips(&mut self, pid: PodId, mut f: impl FnMut(&mut Self, std::net::IpAddr)) {
        let ips = std::mem::take(&mut self.cluster.pods[pid.index()].ips);
        for (k, &ip) in ips.iter().enumerate() {
            if !ips[..k].contains(&ip) {
                f(self, ip);
            }
        }
        self.cluster.pods[pid.index()].ips = ips;
    }

    /// Puts pod `pid` (already in `cluster.pods`) in its identity, creating the identity if needed, and indexes
    /// its IPs.
    fn attach_pod(&mut self, pid: PodId) {
        let cluster = std::mem::take(&mut self.cluster);
        let pod = &cluster.pods[pid.index()];
        let key = self.identity_key(pod, cluster.ns(pod.ns));
        let primary = pod.primary_ip();
        self.cluster = cluster;
        let iid = match self.id_index.get(&key) {
            Some(&iid) => iid,
            None => self.create_identity(key),
        };
        let pods = &mut self.identities[iid.index()].pods;
        if let Err(at) = pods.binary_search(&pid) {
            pods.insert(at, pid);
        }
        self.pod_identity[pid.index()] = iid;
        self.primary_ips[pid.index()] = primary;
        self.for_pod_ips(pid, |e, ip| e.index_ip(ip, pid));
    }

    /// Takes pod `pid` out of its identity (which may be left empty) and out of the IP index; returns the
    /// identity.
    fn detach_pod(&mut self, pid: PodId) -> IdentityId {
        let iid = self.pod_identity[pid.index()];
        let pods = &mut self.identities[iid.index()].pods;
        if let Ok(at) = pods.binary_search(&pid) {
            pods.remove(at);
        }
        self.for_pod_ips(pid, |e, ip| match e.ip_dups.get_mut(&ip) {
            Some(all) => {
                if let Ok(at) = all.binary_search(&pid) {
                    all.remove(at);
                }
                if let Some(&first) = all.first() {
                    e.ip_index.insert(ip, first);
                }
                if all.len() < 2 {
                    e.ip_dups.remove(&ip);
                }
            }
            None => {
                if e.ip_index.get(&ip) == Some(&pid) {
                    e.ip_index.remove(&ip);
                }
            }
        });
        iid
    }

    /// The pod that was `from` is now `to` (`to` < `from`, after a `swap_remove`).
    fn renumber_pod(&mut self, from: PodId, to: PodId) {
        let pods = &mut self.identities[(self.pod_identity[to.index()]).index()].pods;
        if let Ok(at) = pods.binary_search(&from) {
            pods.remove(at);
        }
        if let Err(at) = pods.binary_search(&to) {
            pods.insert(at, to);
        }
        self.for_pod_ips(to, |e, ip| match e.ip_dups.get_mut(&ip) {
            Some(all) => {
                if let Ok(at) = all.binary_search(&from) {
                    all.remove(at);
                }
                if let Err(at) = all.binary_search(&to) {
                    all.insert(at, to);
                }
                if let Some(&first) = all.first() {
                    e.ip_index.insert(ip, first);
                }
            }
            None => {
                e.ip_index.insert(ip, to);
            }
        });
    }

    /// Creates the identity of `key` (without pods): its policies, flattened rules, named ports, and its
    /// membership in every selector peer that selects it.
    fn create_identity(&mut self, key: IdentityKey) -> IdentityId {
        let iid = IdentityId::new(self.identities.len());
        let mut ident = crate::compile::Identity::empty(&key);
        let (ns, labels, host_network) = (key.0, key.1, key.2);
        (ident.ingress_policies, ident.egress_policies) = self.selecting_policies(ns, labels, host_network);
        self.identities.push(ident);
        self.refresh_rules(iid);
        self.intern_named_ports(iid);
        self.id_index.insert(key, iid);
        if !host_network {
            let universe = self.identities.len();
            let ls = &self.label_sets[labels.index()];
            let ns_labels = &self.cluster.ns(ns).labels;
            for (k, set) in &mut self.sel_peers {
                if k.selects(ns, ns_labels, ls) {
                    set.insert(iid, universe);
                }
            }
        }
        iid
    }

    fn drop_identity_if_empty(&mut self, iid: IdentityId) {
        if self.identities[iid.index()].pods.is_empty() {
            self.remove_identity(iid);
        }
    }

    /// Removes an identity (without pods); the last identity takes its id.
    fn remove_identity(&mut self, iid: IdentityId) {
        let last = IdentityId::new(self.identities.len() - 1);
        let gone = self.identities.swap_remove(iid.index());
        self.id_index.remove(&gone.key());
        if iid != last {
            let moved = &self.identities[iid.index()];
            self.id_index.insert(moved.key(), iid);
            for &p in &moved.pods {
                self.pod_identity[p.index()] = iid;
            }
        }
        let universe = self.identities.len();
        for (_, set) in &mut self.sel_peers {
            set.remove(iid);
            if iid != last && set.remove(last) {
                set.insert(iid, universe);
            }
        }
    }

    // ---- policies ----

    /// Whether replacing policy `old` by `new` (either may be absent) keeps the set of distinct ipBlocks: every
    /// block of `new` is interned, and every block of `old` is still used afterwards.
    fn blocks_stay(&self, old: Option<PolicyId>, new: Option<&Policy>) -> bool {
        let mut delta: FxHashMap<BlockId, i64> = FxHashMap::default();
        for r in new.into_iter().flat_map(|p| p.ingress.iter().chain(&p.egress)) {
            let mut ids = Vec::new();
            for peer in &r.peers {
                for b in crate::compile::peer_blocks(&self.cluster.nodes, peer) {
                    let Some(&id) = self.block_index.get(&b) else { return false };
                    ids.push(id);
                }
            }
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                *delta.entry(id).or_default() += 1;
            }
        }
        if let Some(p) = old {
            let (ing, eg) = &self.policy_rules[p.index()];
            for &r in ing.iter().chain(eg) {
                for peer in &self.rules[r.index()].peers {
                    if let CPeer::Block(b) = *peer {
                        *delta.entry(b).or_default() -= 1;
                    }
                }
            }
        }
        delta.iter().all(|(&b, &d)| i64::from(self.block_refs[b.index()]) + d > 0)
    }

    /// First rule id of policy `p` (rules are stored in policy order).
    fn rule_start(&self, p: PolicyId) -> usize {
        self.policy_rules[..p.index()].iter().map(|(i, e)| i.len() + e.len()).sum()
    }

    /// The policies selecting pods of namespace `ns` with label set `labels`, per direction (sorted).
    /// hostNetwork pods are not subject to policies.
    fn selecting_policies(&self, ns: NsId, labels: crate::compile::LabelSetId, host_network: bool) -> PolicyLists {
        let mut lists = (Vec::new(), Vec::new());
        if host_network {
            return lists;
        }
        let ls = &self.label_sets[labels.index()];
        let ns_labels = &self.cluster.ns(ns).labels;
        for (polid, &pol_ns) in self.policy_ns.iter().enumerate() {
            if pol_ns.is_some_and(|p| p != ns) {
                continue;
            }
            let pol = &self.cluster.policies[polid];
            if pol.selects(ns, ns_labels, ls, Labels::new) {
                if pol.affects_ingress {
                    lists.0.push(PolicyId::new(polid));
                }
                if pol.affects_egress {
                    lists.1.push(PolicyId::new(polid));
                }
            }
        }
        lists
    }

    /// Releases the peers of the rules of policy `p` (decrements their reference counts).
    fn release_rules(&mut self, p: PolicyId) {
        let (ing, eg) = &self.policy_rules[p.index()];
        let peers: Vec<CPeer> =
            ing.iter().chain(eg).flat_map(|r| self.rules[r.index()].peers.iter().copied()).collect();
        for peer in peers {
            if let Some(c) = self.peer_refs(peer) {
                *c = c.saturating_sub(1);
            }
        }
    }

    fn put_policy(&mut self, namespace: String, mut policy: Policy) -> InPlace {
        if policy.kind == PolicyKind::NetworkPolicy {
            policy.scope = Scope::Namespace(self.ns_or_insert(&namespace));
        }
        let ns = policy.ns();
        let pos = self.find_policy(ns, |p| same_policy(p, &policy));
        let p = PolicyId::new(pos.unwrap_or(self.cluster.policies.len()));
        if !self.blocks_stay(pos.map(|_| p), Some(&policy)) {
            return InPlace::Recompile(
                Box::new(Change::PutPolicy { namespace, policy }),
                "a policy adds or drops an ipBlock",
            );
        }
        // New rules first, so that peers shared with the old rules are kept.
        let mut select = select_scan;
        let mut new_rules = Vec::new();
        let mut n_ingress = 0;
        let tier = self.tier_id(policy.tier);
        let nodes = std::mem::take(&mut self.cluster.nodes);
        for dir in [Direction::Ingress, Direction::Egress] {
            for (ri, r) in policy.rules(dir).iter().enumerate() {
                let rule = self.compile_rule(p, ns, tier, &nodes, dir, ri, r, &mut select);
                let Some(rule) = rule else {
                    self.cluster.nodes = nodes;
                    return InPlace::Recompile(
                        Box::new(Change::PutPolicy { namespace, policy }),
                        "a policy adds an ipBlock",
                    );
                };
                new_rules.push(rule);
                if dir == Direction::Ingress {
                    n_ingress += 1;
                }
            }
        }
        self.cluster.nodes = nodes;
        let start = self.rule_start(p);
        let old_n = match pos {
            Some(_) => {
                self.release_rules(p);
                let (i, e) = &self.policy_rules[p.index()];
                i.len() + e.len()
            }
            None => 0,
        };
        let new_n = new_rules.len();
        self.rules.splice(start..start + old_n, new_rules);
        let ids = |a: usize, b: usize| (a..b).map(RuleId::new).collect::<Vec<RuleId>>();
        let entry = (ids(start, start + n_ingress), ids(start + n_ingress, start + new_n));
        match pos {
            Some(i) => {
                self.policy_rules[i] = entry;
                self.policy_ns[i] = policy.ns();
                self.cluster.policies[i] = policy;
            }
            None => {
                self.policy_rules.push(entry);
                self.policy_ns.push(policy.ns());
                self.cluster.policies.push(policy);
            }
        }
        // Rule ids of the later policies move when the number of rules changes.
        let shifted = new_n != old_n && p.index() + 1 < self.policy_rules.len();
        if shifted {
            shift_rule_ids(&mut self.policy_rules[p.index() + 1..], start + old_n, new_n as i64 - old_n as i64);
        }
        let mut affected = if pos.is_some() { self.unselect_policy(p) } else { Vec::new() };
        affected.extend(self.select_policy(p));
        self.refresh_after_rule_change(shifted, affected);
        self.drop_unused_peers();
        InPlace::Done(true)
    }

    /// Deletes the policy at `pos` (`None`: there is none); `change` is the change, if it must be recompiled.
    fn delete_policy(&mut self, pos: Option<usize>, change: Change) -> InPlace {
        let Some(pos) = pos else {
            return InPlace::Done(false);
        };
        let p = PolicyId::new(pos);
        if !self.blocks_stay(Some(p), None) {
            return InPlace::Recompile(Box::new(change), "a policy drops an ipBlock");
        }
        self.release_rules(p);
        let affected = self.unselect_policy(p);
        let start = self.rule_start(p);
        let (i, e) = self.policy_rules.remove(pos);
        let old_n = i.len() + e.len();
        self.rules.drain(start..start + old_n);
        for r in &mut self.rules {
            if r.policy > p {
                r.policy = PolicyId::new(r.policy.index() - 1);
            }
        }
        shift_rule_ids(&mut self.policy_rules[pos..], start + old_n, -(old_n as i64));
        self.cluster.policies.remove(pos);
        self.policy_ns.remove(pos);
        for ident in &mut self.identities {
            for list in [&mut ident.ingress_policies, &mut ident.egress_policies] {
                for q in list.iter_mut().filter(|q| **q > p) {
                    *q = PolicyId::new(q.index() - 1);
                }
            }
        }
        // Flattened rules follow rule ids, which moved if the policy had rules and later policies exist; policy
        // ids in the lists were renumbered above.
        self.refresh_after_rule_change(old_n > 0 && pos < self.policy_rules.len(), affected);
        self.drop_unused_peers();
        InPlace::Done(true)
    }

    /// The first policy of namespace `ns` (`None`: a cluster-scoped one) for which `is` holds.
    fn find_policy(&self, ns: Option<NsId>, is: impl Fn(&Policy) -> bool) -> Option<usize> {
        self.policy_ns.iter().enumerate().find(|&(i, &p)| p == ns && is(&self.cluster.policies[i])).map(|(i, _)| i)
    }

    /// Removes policy `p` from the identities it selects; returns them.
    fn unselect_policy(&mut self, p: PolicyId) -> Vec<IdentityId> {
        let mut affected = Vec::new();
        for (i, ident) in self.identities.iter_mut().enumerate() {
            let mut hit = false;
            for list in [&mut ident.ingress_policies, &mut ident.egress_policies] {
                if let Ok(at) = list.binary_search(&p) {
                    list.remove(at);
                    hit = true;
                }
            }
            if hit {
                affected.push(IdentityId::new(i));
            }
        }
        affected
    }

    /// Adds policy `p` to the identities it selects; returns them.
    fn select_policy(&mut self, p: PolicyId) -> Vec<IdentityId> {
        let pol = &self.cluster.policies[p.index()];
        // A namespaced policy selects in its namespace only: the other namespaces' identities are passed over
        // without reading their labels.
        let own_ns = pol.ns();
        let mut affected = Vec::new();
        for (i, ident) in self.identities.iter_mut().enumerate() {
            if ident.host_network || own_ns.is_some_and(|ns| ns != ident.ns) {
                continue;
            }
            let ns_labels = &self.cluster.namespaces[ident.ns.index()].labels;
            if !pol.selects(ident.ns, ns_labels, &self.label_sets[ident.labels.index()], Labels::new) {
                continue;
            }
            for (affects, list) in
                [(pol.affects_ingress, &mut ident.ingress_policies), (pol.affects_egress, &mut ident.egress_policies)]
            {
                if let (true, Err(at)) = (affects, list.binary_search(&p)) {
                    list.insert(at, p);
                }
            }
            affected.push(IdentityId::new(i));
        }
        affected
    }

    /// Re-flattens the rules of every identity (rule ids moved) or of the `affected` ones.
    fn refresh_after_rule_change(&mut self, all: bool, mut affected: Vec<IdentityId>) {
        if all {
            affected = (0..self.identities.len()).map(IdentityId::new).collect();
        }
        affected.sort_unstable();
        affected.dedup();
        for i in affected {
            self.refresh_rules(i);
        }
    }

    /// Drops the selector peers that no rule uses any more, keeping the order of the others.
    fn drop_unused_peers(&mut self) {
        if self.sel_refs.iter().all(|&n| n > 0) {
            return;
        }
        // The new id of each selector peer; `None` for a dropped one.
        let mut remap: Vec<Option<SelPeerId>> = vec![None; self.sel_peers.len()];
        let mut next = 0;
        for (old, &n) in self.sel_refs.iter().enumerate() {
            if n > 0 {
                remap[old] = Some(SelPeerId::new(next));
                next += 1;
            }
        }
        let mut old = 0;
        self.sel_peers.retain(|_| {
            old += 1;
            remap[old - 1].is_some()
        });
        self.sel_refs.retain(|&n| n > 0);
        self.peer_index.retain(|_, id| match remap[id.index()] {
            Some(new) => {
                *id = new;
                true
            }
            None => false,
        });
        // Kept peers keep their relative order, so rules' peer lists stay sorted.
        for rule in &mut self.rules {
            for peer in &mut rule.peers {
                if let CPeer::Sel(s) = peer {
                    // A rule's peers are in use: never dropped.
                    *s = remap[s.index()].unwrap_or(*s);
                }
            }
        }
    }

    // ---- namespaces ----

    /// Indexes the namespaces a change applied to the cluster alone (a service account, a staged policy) may have
    /// added: in place, namespaces are only ever appended.
    fn index_new_namespaces(&mut self) {
        for i in self.ns_names.len()..self.cluster.namespaces.len() {
            self.ns_names.insert(self.cluster.namespaces[i].name.clone(), NsId::new(i));
        }
    }

    /// The namespace named `name`, created (with its automatic label) if there is none.
    fn ns_or_insert(&mut self, name: &str) -> NsId {
        if let Some(&id) = self.ns_names.get(name) {
            return id;
        }
        let id = ns_or_insert(&mut self.cluster, name);
        self.ns_names.insert(name.to_string(), id);
        id
    }

    fn put_namespace(&mut self, n: Namespace) {
        match self.ns_names.get(&n.name).copied() {
            None => {
                self.ns_names.insert(n.name.clone(), NsId::new(self.cluster.namespaces.len()));
                self.cluster.namespaces.push(n);
            }
            Some(id) => {
                let old = std::mem::replace(&mut self.cluster.namespaces[id.index()], n);
                self.relabel_namespace(id, &old.labels);
            }
        }
    }

    fn delete_namespace(&mut self, name: String) -> InPlace {
        let Some(id) = self.ns_names.get(&name).copied() else { return InPlace::Done(false) };
        if !namespace_used(&self.cluster, id) {
            return InPlace::Recompile(Box::new(Change::DeleteNamespace { name }), "an unused namespace is deleted");
        }
        let mut labels = Labels::new();
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
        let old = std::mem::replace(&mut self.cluster.namespaces[id.index()], Namespace { name, labels, origin: None });
        self.relabel_namespace(id, &old.labels);
        InPlace::Done(true)
    }

    /// Namespace `id` had `old` labels: re-evaluates namespaceSelector peers for its identities.
    fn relabel_namespace(&mut self, id: NsId, old: &Labels) {
        let new = &self.cluster.namespaces[id.index()].labels;
        if new == old {
            return;
        }
        let idents: Vec<IdentityId> = (0..self.identities.len())
            .map(IdentityId::new)
            .filter(|&i| {
                let ident = &self.identities[i.index()];
                ident.ns == id && !ident.host_network
            })
            .collect();
        if idents.is_empty() {
            return;
        }
        // Cluster-scoped policies select their subjects by namespace labels.
        if self.cluster.policies.iter().any(|p| p.ns().is_none()) {
            for &i in &idents {
                let ident = &self.identities[i.index()];
                let lists = self.selecting_policies(ident.ns, ident.labels, ident.host_network);
                let ident = &mut self.identities[i.index()];
                if (&ident.ingress_policies, &ident.egress_policies) != (&lists.0, &lists.1) {
                    (ident.ingress_policies, ident.egress_policies) = lists;
                    self.refresh_rules(i);
                }
            }
        }
        let new = &self.cluster.namespaces[id.index()].labels;
        let universe = self.identities.len();
        for (k, set) in &mut self.sel_peers {
            let NsScope::Selector(s) = &k.namespaces else { continue };
            let now = s.matches(new);
            if now == s.matches(old) {
                continue;
            }
            for &i in &idents {
                let ls = &self.label_sets[(self.identities[i.index()].labels).index()];
                if k.pods_match(ls) {
                    if now {
                        set.insert(i, universe);
                    } else {
                        set.remove(i);
                    }
                }
            }
        }
    }
}

/// Policy ids per direction (ingress, egress).
type PolicyLists = (Vec<PolicyId>, Vec<PolicyId>);

/// Adds `delta` to every rule id at or above `from` in these policies' rule lists.
fn shift_rule_ids(policy_rules: &mut [(Vec<RuleId>, Vec<RuleId>)], from: usize, delta: i64) {
    for (i, e) in policy_rules {
        for r in i.iter_mut().chain(e.iter_mut()) {
            if r.index() >= from {
                *r = RuleId::new((r.index() as i64 + delta) as usize);
            }
        }
    }
}

/// The identities a new selector peer selects, by scanning them (no index is kept between updates).
fn select_scan(eng: &Engine, key: &SelPeerKey) -> IdSet {
    // The namespace part once per namespace, not once per identity.
    let in_scope: Vec<bool> = match &key.namespaces {
        NsScope::Own(ns) => (0..eng.cluster.namespaces.len()).map(|n| n == (*ns).index()).collect(),
        NsScope::Selector(s) => eng.cluster.namespaces.iter().map(|n| s.matches(&n.labels)).collect(),
    };
    let ids: Vec<IdentityId> = eng
        .identities
        .iter()
        .enumerate()
        .filter(|(_, ident)| {
            !ident.host_network
                && in_scope.get(ident.ns.index()).copied().unwrap_or(false)
                && key.pods_match(&eng.label_sets[ident.labels.index()])
        })
        .map(|(i, _)| IdentityId::new(i))
        .collect();
    IdSet::from_sorted(ids, eng.identities.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::compile::Endpoint;
    use crate::load::load_str;
    use crate::portset::Protocol;

    const BASE: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: cli, namespace: prod, labels: {app: cli}}
status: {podIP: 10.0.0.2}
";

    const DENY: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: prod}
spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress]}
";

    fn allowed(e: &Engine, src: &str, dst: &str) -> bool {
        let s = e.cluster.find_pod("prod", src).unwrap();
        let d = e.cluster.find_pod("prod", dst).unwrap();
        e.allowed(&Endpoint::Pod { pod: s, ip: None }, &Endpoint::Pod { pod: d, ip: None }, Protocol::Tcp, 80)
    }

    #[test]
    fn put_and_delete_policy_change_verdicts() {
        let mut e = Engine::new(load_str("base", BASE).cluster);
        assert!(allowed(&e, "cli", "web"));
        let pol = load_str("deny", DENY).cluster.policies.remove(0);
        e.update(vec![Change::PutPolicy { namespace: "prod".into(), policy: pol }]);
        assert!(!allowed(&e, "cli", "web"));
        let st = e.update(vec![Change::DeletePolicy { namespace: "prod".into(), name: "deny".into() }]);
        assert!(st.recompiled || st.in_place > 0);
        assert!(allowed(&e, "cli", "web"));
    }

    #[test]
    fn deleting_a_missing_object_changes_nothing() {
        let mut e = Engine::new(load_str("base", BASE).cluster);
        let st = e.update(vec![Change::DeletePod { namespace: "prod".into(), name: "nope".into() }]);
        assert_eq!(st, UpdateStats::default());
        assert_eq!(e.cluster.pods.len(), 2);
    }

    #[test]
    fn deleted_namespace_still_referenced_stays_undeclared() {
        let mut e = Engine::new(load_str("base", BASE).cluster);
        e.update(vec![Change::DeleteNamespace { name: "prod".into() }]);
        let id = e.cluster.namespace_id("prod").unwrap();
        assert!(e.cluster.ns(id).origin.is_none());
        assert_eq!(e.cluster.ns(id).labels.get(NAMESPACE_NAME_LABEL), Some("prod"));
        e.update(vec![
            Change::DeletePod { namespace: "prod".into(), name: "web".into() },
            Change::DeletePod { namespace: "prod".into(), name: "cli".into() },
            Change::DeleteNamespace { name: "prod".into() },
        ]);
        assert!(e.cluster.namespace_id("prod").is_none());
    }

    // ---- Calico: changes from objects read one at a time give what a load of all of them gives ----

    /// The objects of the Calico scenario, by name (each its own input, so origins match either way).
    fn calico_objects() -> Vec<(&'static str, &'static str)> {
        vec![
            ("ns/prod", "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, labels: {env: prod}}\n"),
            ("ns/dev", "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev, labels: {env: dev}}\n"),
            (
                "pod/web",
                "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: prod, labels: {app: web}}\n\
                 spec:\n  nodeName: n1\n  serviceAccountName: web-sa\n  \
                 containers: [{name: c, ports: [{name: http, containerPort: 80}]}]\n\
                 status: {podIP: 10.0.0.1}\n",
            ),
            (
                "pod/cli",
                "apiVersion: v1\nkind: Pod\nmetadata: {name: cli, namespace: prod, labels: {app: cli}}\n\
                 status: {podIP: 10.0.0.2}\n",
            ),
            (
                "pod/tool",
                "apiVersion: v1\nkind: Pod\nmetadata: {name: tool, namespace: dev, labels: {app: tool}}\n\
                 spec: {serviceAccountName: ops}\nstatus: {podIP: 10.0.1.1}\n",
            ),
            (
                "sa/web-sa",
                "apiVersion: v1\nkind: ServiceAccount\n\
                 metadata: {name: web-sa, namespace: prod, labels: {role: frontend}}\n",
            ),
            (
                "tier/security",
                "apiVersion: crd.projectcalico.org/v1\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n",
            ),
            // Denies ingress from dev to the pods whose service account is labelled role=frontend.
            (
                "gnp/security.deny-dev",
                "apiVersion: crd.projectcalico.org/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: security.deny-dev}\n\
                 spec:\n  tier: security\n  order: 10\n  serviceAccountSelector: role == 'frontend'\n  \
                 types: [Ingress]\n  ingress:\n  - action: Deny\n    source: {namespaceSelector: env == 'dev'}\n  \
                 - action: Pass\n",
            ),
            (
                "netset/partners",
                "apiVersion: crd.projectcalico.org/v1\nkind: NetworkSet\n\
                 metadata: {name: partners, namespace: prod, labels: {kind: partner}}\n\
                 spec: {nets: [192.0.2.0/24]}\n",
            ),
            (
                "cnp/allow-partners",
                "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n\
                 metadata: {name: allow-partners, namespace: prod}\n\
                 spec:\n  selector: app == 'web'\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    \
                 source: {selector: kind == 'partner'}\n  - action: Allow\n    \
                 source: {serviceAccounts: {names: [default]}}\n",
            ),
            (
                "node/n1",
                "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n\
                 status: {addresses: [{type: InternalIP, address: 10.0.9.1}]}\n",
            ),
            // Every interface of n1, at its Node's address (none expected).
            (
                "hep/n1",
                "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: n1, labels: {role: node}}\n\
                 spec: {node: n1, interfaceName: '*'}\n",
            ),
            // The hosts take TCP 80 from the partners' addresses, also forwarded to their pods; nothing else.
            (
                "gnp/host-ingress",
                "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: host-ingress}\n\
                 spec:\n  selector: role == 'node'\n  applyOnForward: true\n  types: [Ingress]\n  ingress:\n  \
                 - action: Allow\n    protocol: TCP\n    source: {nets: [192.0.2.0/24]}\n    \
                 destination: {ports: [80]}\n",
            ),
        ]
    }

    /// `hep/n1` on its eth0 alone, at an address of its own.
    const HEP_ETH0: &str = "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\n\
                            metadata: {name: n1, labels: {role: node}}\n\
                            spec: {node: n1, interfaceName: eth0, expectedIPs: [10.0.9.2], profiles: [kns.prod]}\n";

    fn load_objects(objects: &[(&str, &str)]) -> crate::load::Loaded {
        let mut l = crate::load::Loader::new();
        for (name, text) in objects {
            l.add_bytes(name, text.as_bytes());
        }
        l.finish()
    }

    /// The change that puts `text`, read alone (as a live cluster's watch reads objects).
    fn put_change(name: &str, text: &str) -> Change {
        let loaded = load_objects(&[(name, text)]);
        assert!(loaded.diagnostics.iter().all(|d| d.field.as_deref() == Some("spec.tier")), "{:?}", loaded.diagnostics);
        let mut c = loaded.cluster;
        let ns_name = |c: &Cluster, ns: NsId| c.ns_name(ns).to_string();
        if let Some(pod) = c.pods.pop() {
            return Change::PutPod { namespace: ns_name(&c, pod.ns), pod };
        }
        if let Some(policy) = c.policies.pop() {
            let namespace = policy.ns().map(|ns| ns_name(&c, ns)).unwrap_or_default();
            let tier = c.tiers[policy.tier.index()].name.clone();
            return match policy.kind {
                PolicyKind::CalicoNetworkPolicy | PolicyKind::GlobalNetworkPolicy => {
                    Change::PutCalicoPolicy { namespace, policy, tier }
                }
                _ => Change::PutPolicy { namespace, policy },
            };
        }
        if let Some(h) = c.host_endpoints.pop() {
            return Change::PutHostEndpoint(h);
        }
        if let Some(n) = c.nodes.pop() {
            return Change::PutNode(n);
        }
        if let Some(set) = c.network_sets.pop() {
            return Change::PutNetworkSet { namespace: set.ns.map(|ns| ns_name(&c, ns)), set };
        }
        if let Some(t) = c.tiers.iter().find(|t| t.origin.is_some()) {
            return Change::PutTier(t.clone());
        }
        if let Some(i) = c.service_accounts.iter().position(|s| s.origin.is_some()) {
            let account = c.service_accounts.remove(i);
            return Change::PutServiceAccount { namespace: ns_name(&c, account.ns), account };
        }
        let n = c.namespaces.into_iter().find(|n| n.origin.is_some()).unwrap();
        Change::PutNamespace(n)
    }

    /// The change that deletes the object named `KIND/NAME` (`pod/`, `sa/`, `netset/`, `cnp/`: in their
    /// namespace of [`calico_objects`]).
    fn delete_change(name: &str) -> Change {
        let (kind, name) = name.split_once('/').unwrap();
        let (name, prod) = (name.to_string(), "prod".to_string());
        match kind {
            "ns" => Change::DeleteNamespace { name },
            "tier" => Change::DeleteTier { name },
            "gnp" => Change::DeleteClusterPolicy { kind: PolicyKind::GlobalNetworkPolicy, name },
            "sa" => Change::DeleteServiceAccount { namespace: prod, name },
            "netset" => Change::DeleteNetworkSet { namespace: Some(prod), name },
            "cnp" => Change::DeleteCalicoPolicy { namespace: prod, name },
            "hep" => Change::DeleteHostEndpoint { name },
            "node" => Change::DeleteNode { name },
            "pod" => {
                let namespace = if name == "tool" { "dev".to_string() } else { prod };
                Change::DeletePod { namespace, name }
            }
            _ => panic!("{kind}"),
        }
    }

    /// What answers depend on, from the model.
    fn model_view(c: &Cluster) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
        let mut tiers: Vec<String> =
            c.tiers.iter().map(|t| format!("{}:{:?}:{}", t.name, t.order, t.origin.is_some())).collect();
        tiers[3..].sort();
        let mut sas: Vec<String> = c
            .service_accounts
            .iter()
            .map(|s| format!("{}/{} {:?} {}", c.ns_name(s.ns), s.name, s.labels, s.origin.is_some()))
            .collect();
        sas.sort();
        let mut sets: Vec<String> = c
            .network_sets
            .iter()
            .map(|s| format!("{:?}/{} {:?}", s.ns.map(|n| c.ns_name(n)), s.name, s.nets))
            .collect();
        sets.sort();
        let mut heps: Vec<String> = c
            .host_endpoints
            .iter()
            .map(|h| {
                format!("{} {} {:?} {:?} {:?} {:?}", h.name, h.node, h.interface, h.expected_ips, h.labels, h.profiles)
            })
            .collect();
        heps.sort();
        (tiers, sas, sets, heps)
    }

    fn assert_same_answers(e: &Engine, f: &Engine, step: &str) {
        assert_eq!(model_view(&e.cluster), model_view(&f.cluster), "{step}: model");
        let mut ends: Vec<(String, Endpoint, Endpoint)> = Vec::new();
        for p in &f.cluster.pods {
            let ns = f.cluster.ns_name(p.ns);
            let fp = f.cluster.find_pod(ns, &p.name).unwrap();
            let ep = e.cluster.find_pod(ns, &p.name).unwrap();
            ends.push((
                format!("{ns}/{}", p.name),
                Endpoint::Pod { pod: ep, ip: None },
                Endpoint::Pod { pod: fp, ip: None },
            ));
        }
        for ip in ["192.0.2.7", "198.51.100.1", "10.0.9.1", "10.0.9.2"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            ends.push((ip.to_string(), e.endpoint_for_ip(ip), f.endpoint_for_ip(ip)));
        }
        for (sn, se, sf) in &ends {
            for (dn, de, df) in &ends {
                for port in [80, 443] {
                    let (a, b) = (e.explain(se, de, Protocol::Tcp, port), f.explain(sf, df, Protocol::Tcp, port));
                    assert_eq!(a.render(), b.render(), "{step}: {sn} -> {dn} {port}");
                    assert_eq!(e.allowed(se, de, Protocol::Tcp, port), f.allowed(sf, df, Protocol::Tcp, port));
                }
            }
        }
    }

    #[test]
    fn calico_changes_give_what_a_load_of_the_same_objects_gives() {
        let all = calico_objects();
        let base = ["ns/prod", "ns/dev", "pod/web", "pod/cli", "pod/tool"];
        let mut present: Vec<(&str, String)> =
            all.iter().filter(|(n, _)| base.contains(n)).map(|(n, t)| (*n, t.to_string())).collect();
        let objects = |present: &[(&str, String)]| -> Vec<(String, String)> {
            present.iter().map(|(n, t)| (n.to_string(), t.clone())).collect()
        };
        let fresh = |present: &[(&str, String)]| {
            let o = objects(present);
            let refs: Vec<(&str, &str)> = o.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
            Engine::new(load_objects(&refs).cluster)
        };
        let mut e = fresh(&present);
        let text = |name: &str| all.iter().find(|(n, _)| *n == name).unwrap().1.to_string();
        let cli_as_web_sa = "apiVersion: v1\nkind: Pod\nmetadata: {name: cli, namespace: prod, labels: {app: cli}}\n\
                             spec: {serviceAccountName: web-sa}\nstatus: {podIP: 10.0.0.2}\n";
        // (step, object put or deleted, its new text: None to delete)
        let steps: Vec<(&str, Option<String>)> = vec![
            ("sa/web-sa", Some(text("sa/web-sa"))),
            ("gnp/security.deny-dev", Some(text("gnp/security.deny-dev"))),
            ("tier/security", Some(text("tier/security"))),
            ("netset/partners", Some(text("netset/partners"))),
            ("cnp/allow-partners", Some(text("cnp/allow-partners"))),
            ("node/n1", Some(text("node/n1"))),
            ("hep/n1", Some(text("hep/n1"))),
            ("gnp/host-ingress", Some(text("gnp/host-ingress"))),
            ("hep/n1", Some(HEP_ETH0.to_string())),
            ("node/n1", None),
            ("hep/n1", Some(text("hep/n1"))),
            ("node/n1", Some(text("node/n1"))),
            ("pod/cli", Some(cli_as_web_sa.to_string())),
            ("tier/security", None),
            ("tier/security", Some(text("tier/security"))),
            ("sa/web-sa", None),
            ("sa/web-sa", Some(text("sa/web-sa"))),
            ("gnp/security.deny-dev", None),
            ("hep/n1", None),
            ("gnp/host-ingress", None),
            ("node/n1", None),
            ("pod/cli", None),
            ("netset/partners", None),
            ("tier/security", None),
            ("cnp/allow-partners", None),
            ("sa/web-sa", None),
            ("pod/web", None),
        ];
        let mut seen_calico = false;
        for (i, (name, new)) in steps.into_iter().enumerate() {
            let step = format!("step {i}: {name} {}", if new.is_some() { "put" } else { "deleted" });
            present.retain(|(n, _)| *n != name);
            let change = match new {
                Some(t) => {
                    let ch = put_change(name, &t);
                    present.push((name, t));
                    ch
                }
                None => delete_change(name),
            };
            let st = e.update(vec![change]);
            let f = fresh(&present);
            seen_calico |= f.cluster.has_calico();
            assert_eq!(e.cluster.has_calico(), f.cluster.has_calico(), "{step}");
            if e.cluster.has_calico() {
                assert!(st.recompiled, "{step}: {st:?}");
            }
            assert_same_answers(&e, &f, &step);
        }
        assert!(seen_calico);
        assert_eq!(e.cluster.tiers[1].name, "NetworkPolicy", "no Calico object left: Kubernetes' names");
        assert_eq!(e.cluster.tiers.len(), 3);
    }

    #[test]
    fn the_verdicts_follow_calico_changes() {
        let all = calico_objects();
        let objects: Vec<(&str, &str)> = all.iter().map(|(n, t)| (*n, *t)).collect();
        let mut e = Engine::new(load_objects(&objects).cluster);
        let pod =
            |e: &Engine, ns: &str, name: &str| Endpoint::Pod { pod: e.cluster.find_pod(ns, name).unwrap(), ip: None };
        let ok = |e: &Engine, src: Endpoint, dst: Endpoint| e.allowed(&src, &dst, Protocol::Tcp, 80);
        assert!(!ok(&e, pod(&e, "dev", "tool"), pod(&e, "prod", "web")), "the GlobalNetworkPolicy denies dev");
        assert!(ok(&e, pod(&e, "prod", "cli"), pod(&e, "prod", "web")), "passed on, then allowed by service account");
        let partner = e.endpoint_for_ip("192.0.2.7".parse().unwrap());
        assert!(ok(&e, partner, pod(&e, "prod", "web")), "the network set's address");
        // The service account's labels make web the GlobalNetworkPolicy's subject: without them, it is not.
        e.update(vec![Change::DeleteServiceAccount { namespace: "prod".into(), name: "web-sa".into() }]);
        let sa = e.cluster.service_accounts.iter().find(|s| s.name == "web-sa").unwrap();
        assert!(sa.origin.is_none() && sa.labels.is_empty(), "web still runs as it: undeclared");
        assert!(!ok(&e, pod(&e, "dev", "tool"), pod(&e, "prod", "web")), "dev is not the default service account");
        e.update(vec![Change::DeleteNetworkSet { namespace: Some("prod".into()), name: "partners".into() }]);
        let partner = e.endpoint_for_ip("192.0.2.7".parse().unwrap());
        assert!(!ok(&e, partner, pod(&e, "prod", "web")));
        // The host endpoint of n1 (every interface, at its Node's address) takes TCP 80 from the partners alone.
        let host = |e: &Engine| e.endpoint_for_ip("10.0.9.1".parse().unwrap());
        let outside = |e: &Engine| e.endpoint_for_ip("192.0.2.7".parse().unwrap());
        let to_host = |e: &Engine, port| e.allowed(&outside(e), &host(e), Protocol::Tcp, port);
        assert!(to_host(&e, 80) && !to_host(&e, 443), "host-ingress, then no profile");
        assert!(to_host(&e, 22), "a failsafe port");
        assert!(!ok(&e, pod(&e, "prod", "web"), host(&e)), "web to its own node: the all-interfaces endpoint");
        let st = e.update(vec![Change::PutHostEndpoint(HostEndpoint {
            profiles: vec!["projectcalico-default-allow".into()],
            ..e.cluster.host_endpoints[0].clone()
        })]);
        assert!(st.recompiled && !to_host(&e, 443), "the policy's tier still denies: {st:?}");
        e.update(vec![Change::DeleteClusterPolicy {
            kind: PolicyKind::GlobalNetworkPolicy,
            name: "host-ingress".into(),
        }]);
        assert!(to_host(&e, 443) && ok(&e, pod(&e, "prod", "web"), host(&e)), "no policy: the profile allows");
        let st = e.update(vec![Change::DeleteHostEndpoint { name: "n1".into() }]);
        assert!(st.recompiled && e.cluster.host_endpoints.is_empty());
        assert_eq!(e.update(vec![Change::DeleteHostEndpoint { name: "n1".into() }]), UpdateStats::default());
        // A NetworkPolicy of the same name is not the Calico one.
        let before = e.cluster.policies.len();
        assert_eq!(
            e.update(vec![Change::DeletePolicy { namespace: "prod".into(), name: "allow-partners".into() }]),
            UpdateStats::default()
        );
        assert_eq!(e.cluster.policies.len(), before);
        e.update(vec![Change::DeleteCalicoPolicy { namespace: "prod".into(), name: "allow-partners".into() }]);
        assert_eq!(e.cluster.policies.len(), before - 1);
    }

    /// Staged policies put and deleted one at a time (each read alone, as a live cluster reads objects) give the
    /// staged view of the same objects loaded together; they never touch the engine, and tier and namespace
    /// changes leave them right.
    #[test]
    fn staged_policies_change_the_staged_view_only() {
        let tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 10}\n";
        let deny =
            "apiVersion: projectcalico.org/v3\nkind: StagedNetworkPolicy\nmetadata: {name: deny, namespace: prod}\n\
                    spec: {tier: security, selector: app == 'web', types: [Ingress], ingress: [{action: Deny}]}\n";
        let isolate = "apiVersion: projectcalico.org/v3\nkind: StagedKubernetesNetworkPolicy\n\
                       metadata: {name: deny, namespace: prod}\nspec: {stagedAction: Delete}\n";
        let alone = |text: &str| load_str("s", text).cluster.staged.remove(0);
        let staged_view = |e: &Engine| Engine::new(e.cluster.with_staged());
        let base = format!("{BASE}---\n{DENY}---\n{tier}");
        let mut e = Engine::new(load_str("base", &base).cluster);
        assert!(!allowed(&e, "cli", "web"));
        let st = e.update(vec![Change::PutStagedPolicy(alone(deny)), Change::PutStagedPolicy(alone(isolate))]);
        assert_eq!((st.in_place, st.recompiled), (2, false));
        assert!(!allowed(&e, "cli", "web"), "the enforced answer does not change");
        // As the same objects loaded together: the staged Delete opens web, the staged Deny closes it again.
        let together = Engine::new(load_str("all", &format!("{base}---\n{deny}---\n{isolate}")).cluster);
        assert!(!allowed(&staged_view(&together), "cli", "web"));
        assert!(!allowed(&staged_view(&e), "cli", "web"));
        // The Tier deleted (policies no longer name it: `tidy_tiers` drops it): the staged Deny keeps its tier by
        // name, assumed by the staged view.
        e.update(vec![Change::DeleteTier { name: "security".into() }]);
        assert_eq!(e.cluster.tiers.len(), 3);
        assert_eq!(e.cluster.staged[0].implicit_tier.as_deref(), Some("security"));
        assert!(!allowed(&staged_view(&e), "cli", "web"));
        // The Deny replaced by an Allow of the same name; then deleted: only the staged Delete is left.
        let allow = deny.replace("action: Deny", "action: Allow");
        e.update(vec![Change::PutStagedPolicy(alone(&allow))]);
        assert_eq!(e.cluster.staged.len(), 2);
        assert!(allowed(&staged_view(&e), "cli", "web"));
        let st = e.update(vec![Change::DeleteStagedPolicy {
            kind: "StagedNetworkPolicy",
            namespace: Some("prod".into()),
            name: "deny".into(),
        }]);
        assert_eq!((st.in_place, st.recompiled), (1, false));
        assert_eq!(e.cluster.staged.len(), 1);
        assert!(allowed(&staged_view(&e), "cli", "web"), "the staged Delete of prod/deny opens web");
        // A namespace deleted and back: the staged Delete still names prod's policy.
        e.update(vec![Change::DeletePolicy { namespace: "prod".into(), name: "deny".into() }]);
        assert!(allowed(&e, "cli", "web"));
        assert!(allowed(&staged_view(&e), "cli", "web"));
        // Deleting what is not there changes nothing.
        let st = e.update(vec![Change::DeleteStagedPolicy {
            kind: "StagedGlobalNetworkPolicy",
            namespace: None,
            name: "deny".into(),
        }]);
        assert_eq!(st, UpdateStats::default());
    }

    #[test]
    fn service_accounts_follow_pods_in_place() {
        let mut e = Engine::new(load_str("base", BASE).cluster);
        let names = |e: &Engine| -> Vec<String> {
            let mut v: Vec<String> =
                e.cluster.service_accounts.iter().map(|s| format!("{}/{}", e.cluster.ns_name(s.ns), s.name)).collect();
            v.sort();
            v
        };
        assert_eq!(names(&e), ["prod/default"]);
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: prod, labels: {app: web}}\n\
                    spec: {serviceAccountName: api}\nstatus: {podIP: 10.0.0.1}\n";
        let pod = load_str("p", text).cluster.pods.remove(0);
        let st = e.update(vec![Change::PutPod { namespace: "prod".into(), pod }]);
        assert!(!st.recompiled);
        assert_eq!(names(&e), ["prod/api", "prod/default"]);
        let st = e.update(vec![Change::DeletePod { namespace: "prod".into(), name: "cli".into() }]);
        assert!(!st.recompiled);
        assert_eq!(names(&e), ["prod/api"]);
        // Declared accounts change the model only, in place, when no Calico object reads them.
        let account = ServiceAccount {
            ns: NsId::new(0),
            name: "api".into(),
            labels: Labels::from_iter([("a", "b")]),
            origin: None,
        };
        let st = e.update(vec![Change::PutServiceAccount { namespace: "prod".into(), account }]);
        assert_eq!((st.in_place, st.recompiled), (1, false));
        assert!(e.cluster.service_accounts[0].origin.is_some());
        let st = e.update(vec![Change::DeletePod { namespace: "prod".into(), name: "web".into() }]);
        assert!(!st.recompiled);
        assert_eq!(names(&e), ["prod/api"], "declared: stays");
        e.update(vec![Change::DeleteServiceAccount { namespace: "prod".into(), name: "api".into() }]);
        assert!(e.cluster.service_accounts.is_empty());
    }

    #[test]
    fn the_builtin_tier_names_are_the_loaders() {
        let c = load_str(
            "t",
            "apiVersion: crd.projectcalico.org/v1\nkind: Tier\nmetadata: {name: security}\nspec: {order: 1}\n",
        )
        .cluster;
        let names: Vec<&str> = c.tiers[..3].iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, CALICO_BUILTIN_TIERS);
        let kubernetes = load_str("base", BASE).cluster;
        let names: Vec<String> = kubernetes.tiers.iter().map(|t| t.name.clone()).collect();
        assert_eq!(names, TierDef::builtin().into_iter().map(|t| t.name).collect::<Vec<_>>());
    }

    #[test]
    fn built_in_and_implicit_tiers() {
        let mut c = Cluster::default();
        let declared = TierDef {
            name: "default".into(),
            order: Some(1_000_000.0),
            default_action: Action::Deny,
            origin: None,
            pass_to_network_policy: false,
        };
        assert!(apply_to_cluster(&mut c, Change::PutTier(declared)));
        assert_eq!(c.tiers.len(), 3);
        assert!(c.tiers[1].origin.is_some() && c.tiers[1].name == "default");
        assert!(apply_to_cluster(&mut c, Change::DeleteTier { name: "default".into() }));
        assert!(c.tiers[1].origin.is_none() && c.tiers[1].name == "NetworkPolicy");
        assert!(!apply_to_cluster(&mut c, Change::DeleteTier { name: "default".into() }));
        assert!(!apply_to_cluster(&mut c, Change::DeleteTier { name: "nope".into() }));
    }
}
