//! Loading: bytes of YAML/JSON manifests → validated [`Cluster`] plus [`Diagnostic`]s.
//!
//! The pipeline, one document at a time: text split into documents (YAML at its `---` lines, JSON streams, the
//! items of a `kind: List`) → a light tree borrowing from the input (`node::Node`, read by the fast YAML reader
//! `yaml`, by libyaml for the YAML it does not take, or by serde_json) → the lean typed objects of `objects`
//! (with the field path of any type error or unknown field) → the API server's validation rules (`validate`;
//! `admin` for the admin policy kinds) → cross-object checks (duplicates, implicit namespaces, shared IPs, the
//! addresses of hostNetwork pods) → [`Cluster`]. Every stage before the last is pure, so documents are decoded on
//! every core while the loader registers the ones already decoded, in order.
//!
//! Input kinds are one table (`KINDS`): a kind, its apiVersions and how it is lowered. A policy dialect is a set
//! of entries: NetworkPolicy (`networking.k8s.io/v1`, the NetworkPolicy tier); ClusterNetworkPolicy
//! (`policy.networking.k8s.io/v1alpha2`, tier Admin or Baseline); AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy (`policy.networking.k8s.io/v1alpha1`, tiers Admin and Baseline); Calico's
//! NetworkPolicy and GlobalNetworkPolicy, Tier, NetworkSet and GlobalNetworkSet (`projectcalico.org/v3` or
//! `crd.projectcalico.org/v1`: `calico`), with the ServiceAccounts their selectors see, and Calico's staged policies
//! (kept apart from the enforced ones, in `Cluster::staged`). Beside them: Namespaces,
//! Pods, the workloads (one representative pod each) and Nodes (labels and addresses, for `nodes` peers and for
//! hostNetwork pods, which get their node's addresses). An object is decoded into a kind's typed object only when
//! its `kind` and `apiVersion` are that entry's (two kinds named NetworkPolicy are told apart by their
//! apiVersion). Calico kinds netpol does not evaluate yet (HostEndpoints) are recognised and reported with a
//! warning; the other kinds of Calico's API groups are skipped like any unmodelled kind.
//!
//! Nothing is dropped silently: a document that cannot be read is reported and the next one is read; an invalid
//! object is reported with file, document, List item, object and field path, and every valid object still loads.
//! The caller (the CLI) does the file I/O and hands bytes in with a name.

mod admin;
pub(crate) mod antrea;
mod calico;
mod cilium;
mod cilium_nodes;
mod cilium_refs;
mod fast_yaml;
mod json;
mod node;
mod objects;
mod services;
mod validate;
mod yaml;

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::Value;

use crate::labels::Interner;
use crate::model::*;
use crate::selector::{Labels, Selector};
pub use antrea::{antrea_diagnostics, relower_antrea, rule_words as antrea_rule_words};
pub(crate) use calico::builtin_tier_names;
use node::{Node, NodeDe};
use validate::Errors;

/// Kinds netpol reads, with their apiVersion; everything else is skipped (and counted).
/// What netpol does with an object of a registered kind: which typed object it is decoded into, and how that
/// is validated and lowered into the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lower {
    Namespace,
    NetworkPolicy,
    Pod,
    /// A workload: its pod template becomes one representative pod.
    Workload,
    CronJob,
    ClusterNetworkPolicy,
    AdminNetworkPolicy,
    BaselineAdminNetworkPolicy,
    Node,
    CalicoNetworkPolicy,
    GlobalNetworkPolicy,
    Tier,
    NetworkSet,
    GlobalNetworkSet,
    ServiceAccount,
    StagedNetworkPolicy,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    HostEndpoint,
    CiliumNetworkPolicy,
    CiliumClusterwideNetworkPolicy,
    CiliumCidrGroup,
    Service,
    EndpointSlice,
    Endpoints,
    AntreaClusterNetworkPolicy,
    AntreaNetworkPolicy,
    AntreaTier,
    AntreaClusterGroup,
    AntreaGroup,
}

/// A kind netpol reads: its apiVersion, whether it is cluster-scoped, the pod template the API server requires of
/// it (field path, keys), and how it is lowered. Every input kind is one entry; a policy dialect is a set of
/// entries.
struct KindEntry {
    kind: &'static str,
    /// The apiVersions it is read under (the first is the one error messages suggest first).
    api_versions: &'static [&'static str],
    cluster_scoped: bool,
    template: Option<(&'static str, &'static [&'static str])>,
    lower: Lower,
}

const TEMPLATE: Option<(&str, &[&str])> = Some(("spec.template", &["spec", "template"]));

/// The registered input kinds, searched in order: the kinds of every input first, then Nodes, the admin policy
/// dialects and Calico's.
const KINDS: &[KindEntry] = &[
    KindEntry { kind: "Namespace", api_versions: V1, cluster_scoped: true, template: None, lower: Lower::Namespace },
    KindEntry { kind: "Pod", api_versions: V1, cluster_scoped: false, template: None, lower: Lower::Pod },
    KindEntry {
        kind: "NetworkPolicy",
        api_versions: &["networking.k8s.io/v1"],
        cluster_scoped: false,
        template: None,
        lower: Lower::NetworkPolicy,
    },
    workload("Deployment", &["apps/v1"]),
    workload("ReplicaSet", &["apps/v1"]),
    workload("StatefulSet", &["apps/v1"]),
    workload("DaemonSet", &["apps/v1"]),
    workload("Job", &["batch/v1"]),
    KindEntry {
        kind: "CronJob",
        api_versions: &["batch/v1"],
        cluster_scoped: false,
        template: Some(("spec.jobTemplate.spec.template", &["spec", "jobTemplate", "spec", "template"])),
        lower: Lower::CronJob,
    },
    KindEntry { kind: "Node", api_versions: V1, cluster_scoped: true, template: None, lower: Lower::Node },
    // The admin policy dialects: v1alpha2 (one kind, two tiers), v1alpha1 (a kind per tier).
    admin("ClusterNetworkPolicy", &["policy.networking.k8s.io/v1alpha2"], Lower::ClusterNetworkPolicy),
    admin("AdminNetworkPolicy", &["policy.networking.k8s.io/v1alpha1"], Lower::AdminNetworkPolicy),
    admin("BaselineAdminNetworkPolicy", &["policy.networking.k8s.io/v1alpha1"], Lower::BaselineAdminNetworkPolicy),
    // Calico: the same spec under its API server's group and its CRDs' group.
    calico("NetworkPolicy", false, Lower::CalicoNetworkPolicy),
    calico("GlobalNetworkPolicy", true, Lower::GlobalNetworkPolicy),
    calico("Tier", true, Lower::Tier),
    calico("NetworkSet", false, Lower::NetworkSet),
    calico("GlobalNetworkSet", true, Lower::GlobalNetworkSet),
    KindEntry {
        kind: "ServiceAccount",
        api_versions: V1,
        cluster_scoped: false,
        template: None,
        lower: Lower::ServiceAccount,
    },
    calico("StagedNetworkPolicy", false, Lower::StagedNetworkPolicy),
    calico("StagedGlobalNetworkPolicy", true, Lower::StagedGlobalNetworkPolicy),
    calico("StagedKubernetesNetworkPolicy", false, Lower::StagedKubernetesNetworkPolicy),
    calico("HostEndpoint", true, Lower::HostEndpoint),
    // Cilium.
    KindEntry {
        kind: "CiliumNetworkPolicy",
        api_versions: &["cilium.io/v2"],
        cluster_scoped: false,
        template: None,
        lower: Lower::CiliumNetworkPolicy,
    },
    KindEntry {
        kind: "CiliumClusterwideNetworkPolicy",
        api_versions: &["cilium.io/v2"],
        cluster_scoped: true,
        template: None,
        lower: Lower::CiliumClusterwideNetworkPolicy,
    },
    KindEntry {
        kind: "CiliumCIDRGroup",
        api_versions: &["cilium.io/v2", "cilium.io/v2alpha1"],
        cluster_scoped: true,
        template: None,
        lower: Lower::CiliumCidrGroup,
    },
    // Services and their endpoints (what Cilium's `toServices` and `kube-apiserver` entity resolve to).
    KindEntry { kind: "Service", api_versions: V1, cluster_scoped: false, template: None, lower: Lower::Service },
    KindEntry {
        kind: "EndpointSlice",
        api_versions: &["discovery.k8s.io/v1"],
        cluster_scoped: false,
        template: None,
        lower: Lower::EndpointSlice,
    },
    KindEntry { kind: "Endpoints", api_versions: V1, cluster_scoped: false, template: None, lower: Lower::Endpoints },
    // Antrea (`load/antrea.rs`).
    antrea("ClusterNetworkPolicy", true, Lower::AntreaClusterNetworkPolicy),
    antrea("NetworkPolicy", false, Lower::AntreaNetworkPolicy),
    antrea("Tier", true, Lower::AntreaTier),
    antrea("ClusterGroup", true, Lower::AntreaClusterGroup),
    antrea("Group", false, Lower::AntreaGroup),
];

const V1: &[&str] = &["v1"];

/// Calico's API groups: its API server's, and its CRDs' (the same spec).
const CALICO: &[&str] = &["projectcalico.org/v3", "crd.projectcalico.org/v1"];

const fn workload(kind: &'static str, api_versions: &'static [&'static str]) -> KindEntry {
    KindEntry { kind, api_versions, cluster_scoped: false, template: TEMPLATE, lower: Lower::Workload }
}

const fn admin(kind: &'static str, api_versions: &'static [&'static str], lower: Lower) -> KindEntry {
    KindEntry { kind, api_versions, cluster_scoped: true, template: None, lower }
}

const fn antrea(kind: &'static str, cluster_scoped: bool, lower: Lower) -> KindEntry {
    KindEntry { kind, api_versions: antrea::API_VERSIONS, cluster_scoped, template: None, lower }
}

const fn calico(kind: &'static str, cluster_scoped: bool, lower: Lower) -> KindEntry {
    KindEntry { kind, api_versions: CALICO, cluster_scoped, template: None, lower }
}

/// Whether an apiVersion is of one of Calico's API groups.
fn is_calico_group(api_version: &str) -> bool {
    api_version.starts_with("projectcalico.org/") || api_version.starts_with("crd.projectcalico.org/")
}

/// The label the API server puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Deepest nesting of collections a document may have (serde_json's and serde_yaml_ng's own limit).
pub(crate) const MAX_DEPTH: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A problem found while loading, pointing at file, document, object and field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub origin: Origin,
    /// `Kind namespace/name` when known.
    pub object: Option<String>,
    /// JSON-path-like field path (`spec.ingress[0].ports[1].endPort`) when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{sev}: {}", self.origin)?;
        if let Some(o) = &self.object {
            write!(f, ": {o}")?;
        }
        if let Some(fp) = &self.field {
            write!(f, ": {fp}")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn error(origin: Origin, object: Option<String>, field: Option<&str>, message: impl Into<String>) -> Diagnostic {
    Diagnostic { severity: Severity::Error, origin, object, field: field.map(str::to_string), message: message.into() }
}

/// A decoded and validated pod, before the loader's cross-object checks.
#[derive(Debug)]
pub(crate) struct PodItem {
    ns_name: String,
    name: String,
    labels: Labels,
    ports: Vec<ContainerPort>,
    ips: Vec<IpAddr>,
    host_network: bool,
    /// `spec.nodeName`.
    node: Option<String>,
    /// `spec.serviceAccountName`, if set.
    service_account: Option<String>,
    kind: &'static str,
}

/// A decoded and validated Node.
#[derive(Debug)]
pub(crate) struct NodeItem {
    name: String,
    labels: Labels,
    /// `InternalIP` and `ExternalIP` addresses, in order.
    ips: Vec<IpAddr>,
    /// What a hostNetwork pod on this node has as its IPs.
    host_ips: Vec<IpAddr>,
}

/// One object of a document, decoded and validated on its own.
#[derive(Debug)]
pub(crate) enum Item {
    Namespace {
        name: String,
        labels: Labels,
    },
    Pod(PodItem),
    Policy {
        ns_name: String,
        policy: Policy,
    },
    /// A policy of a cluster-scoped kind (ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy).
    ClusterPolicy(Policy),
    Node(NodeItem),
    /// A Calico NetworkPolicy (with its namespace) or GlobalNetworkPolicy (`ns_name: None`). `tier`: the name of
    /// its tier when that is not a built-in tier (resolved in `finish`).
    CalicoPolicy {
        ns_name: Option<String>,
        policy: Box<Policy>,
        tier: Option<String>,
    },
    Tier(TierDef),
    /// A Calico HostEndpoint.
    HostEndpoint(HostEndpoint),
    /// A CiliumNetworkPolicy (with its namespace) or CiliumClusterwideNetworkPolicy (`ns_name: None`): the
    /// policies it becomes, each with its tier (see [`cilium`]).
    CiliumPolicy {
        ns_name: Option<String>,
        name: String,
        parts: Vec<(Policy, cilium::CiliumTier)>,
    },
    /// An Antrea Tier, ClusterGroup, Group, ACNP or ANNP (see [`antrea`]).
    Antrea(antrea::AntreaItem),
    /// A Service (`v1`).
    Service {
        ns_name: String,
        name: String,
        labels: Labels,
        selector: Option<Labels>,
    },
    /// The addresses of a Service's endpoints from an EndpointSlice or an Endpoints object (`kind`) named `name`.
    ServiceEndpoints {
        kind: &'static str,
        ns_name: String,
        name: String,
        service: String,
        addresses: Vec<IpAddr>,
    },
    /// A NetworkSet (with its namespace) or GlobalNetworkSet.
    NetworkSet {
        ns_name: Option<String>,
        set: NetworkSet,
    },
    ServiceAccount {
        ns_name: String,
        name: String,
        labels: Labels,
    },
    /// A staged policy: the policy it would enforce (or, for `Delete`, name), its namespace for the namespaced
    /// kinds, and the name of its tier when that is not a built-in tier (resolved in `finish`).
    Staged {
        action: StagedAction,
        ns_name: Option<String>,
        policy: Box<Policy>,
        tier: Option<String>,
    },
}

/// What decoding one document produced, in document order. Nearly every document is an object, so its item is
/// kept inline (boxing it would cost an allocation per object for the rare diagnostics' sake).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Decoded {
    Object { origin: Origin, label: String, item: Item },
    Diagnostic(Diagnostic),
    Skipped(String),
}

/// Accumulates objects from any number of inputs; [`Loader::finish`] yields the cluster.
#[derive(Default)]
pub struct Loader {
    namespaces: Vec<Namespace>,
    ns_index: HashMap<String, NsId>,
    pods: Vec<Pod>,
    policies: Vec<Policy>,
    /// Objects loaded, by (kind, namespace, hash of the name) → pod or policy ids, for duplicate checks without a
    /// copy of every name (objects of different kinds may share a name). Namespaces are found by `ns_index`.
    seen: HashMap<(&'static str, NsId, u64), smallvec::SmallVec<[u32; 1]>>,
    /// Cluster-scoped objects loaded (other than namespaces), by (kind, hash of the name) → policy or node ids.
    seen_cluster: HashMap<(&'static str, u64), smallvec::SmallVec<[u32; 1]>>,
    nodes: Vec<crate::model::Node>,
    /// Per node, the IPs of a hostNetwork pod on it.
    node_host_ips: Vec<Vec<IpAddr>>,
    /// Pod IPs seen so far, to report addresses used by two pods.
    ip_owner: HashMap<IpAddr, PodId>,
    diagnostics: Vec<Diagnostic>,
    skipped_kinds: BTreeMap<String, usize>,
    /// Equal label sets, selectors and their strings become one allocation each.
    intern: Interner,
    /// Calico Tier objects of other than the built-in tiers, in input order.
    tiers: Vec<TierDef>,
    /// Tier objects of the built-in tiers (`kube-admin`, `default`, `kube-baseline`).
    builtin_tiers: [Option<TierDef>; 3],
    /// Calico policies in a tier that is not built in: (policy index, tier name, object label).
    pending_tiers: Vec<(usize, String, String)>,
    /// Parts of Cilium policies in Cilium's own tiers: (policy index, (tier name, order)).
    pending_cilium: Vec<(usize, (&'static str, f64))>,
    network_sets: Vec<NetworkSet>,
    host_endpoints: Vec<HostEndpoint>,
    service_accounts: Vec<ServiceAccount>,
    services: Vec<Service>,
    service_endpoints: Vec<ServiceEndpoints>,
    /// Services, EndpointSlices and Endpoints loaded, by (kind, namespace, name), for duplicate checks.
    seen_services: HashMap<(&'static str, String, String), Origin>,
    /// Tiers, network sets and service accounts loaded, by (kind, namespace, name), for duplicate checks.
    seen_other: HashMap<(&'static str, Option<NsId>, String), Origin>,
    /// Staged policies, with the name of a tier that is not built in and their object's label.
    staged: Vec<(StagedPolicy, Option<String>, String)>,
    /// Staged policies loaded, by (kind, namespace, name), for duplicate checks (their namespace is no `NsId`: a
    /// staged policy does not create its namespace in the enforced cluster).
    seen_staged: HashMap<(&'static str, Option<String>, String), Origin>,
    /// [`Loader::defer_cilium_refs`]: `finish` leaves Cilium's placeholders unresolved.
    defer_cilium_refs: bool,
    /// Antrea's objects, admitted in input order and lowered by `finish`.
    antrea: antrea::AntreaState,
}

/// Result of loading.
pub struct Loaded {
    pub cluster: Cluster,
    pub diagnostics: Vec<Diagnostic>,
    /// Objects of kinds netpol does not model, by kind (skipped, logged at debug level).
    pub skipped_kinds: BTreeMap<String, usize>,
}

/// Inputs at least this large are decoded on several threads.
const PARALLEL_BYTES: usize = 256 << 10;

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

/// The most units a worker of [`parallel_ordered`] takes at once. Small, so that what waits for the sink stays
/// small (at 10k pods, 256 kept about 2 MiB more resident at the peak).
const MAX_CHUNK: usize = 64;

/// Runs `work` on every unit (in small chunks handed out in turn, on `threads` threads) and calls `sink` with the
/// results in unit order as soon as they are ready, so the caller's work on early units overlaps the decoding of
/// later ones. A worker starts a chunk only when it is at most a few chunks ahead of the sink, so however slow the
/// sink, at most that many chunks' results wait in memory.
pub(crate) fn parallel_ordered<U: Sync, R: Send>(
    units: &[U],
    threads: usize,
    work: impl Fn(usize, &U) -> R + Sync,
    mut sink: impl FnMut(R),
) {
    use std::sync::{Condvar, Mutex};
    if threads <= 1 || units.len() < 2 {
        for (i, u) in units.iter().enumerate() {
            sink(work(i, u));
        }
        return;
    }
    let chunk = units.len().div_ceil(threads * 16).clamp(1, MAX_CHUNK);
    let window = threads * 4;
    let chunks: Vec<(usize, &[U])> = units.chunks(chunk).enumerate().map(|(i, c)| (i * chunk, c)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    // Chunks the sink has taken, and a wake-up for workers waiting to get ahead of it.
    let taken = (Mutex::new(0usize), Condvar::new());
    let all_done = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<R>)>();
        let mut started = 0;
        for _ in 0..threads {
            let (tx, chunks, next, work, taken) = (tx.clone(), &chunks, &next, &work, &taken);
            // A thread the system does not give is one worker fewer (with none, the units are done below).
            let worker = crate::par::spawn_scoped(scope, move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((start, units)) = chunks.get(i) else { break };
                {
                    let mut done = taken.0.lock().unwrap_or_else(|e| e.into_inner());
                    while i >= *done + window {
                        done = taken.1.wait(done).unwrap_or_else(|e| e.into_inner());
                    }
                }
                let out: Vec<R> = units.iter().enumerate().map(|(j, u)| work(start + j, u)).collect();
                if tx.send((i, out)).is_err() {
                    break;
                }
            });
            started += usize::from(worker.is_ok());
        }
        drop(tx);
        let mut pending: BTreeMap<usize, Vec<R>> = BTreeMap::new();
        let mut want = 0;
        for (i, out) in rx {
            pending.insert(i, out);
            while let Some(out) = pending.remove(&want) {
                want += 1;
                *taken.0.lock().unwrap_or_else(|e| e.into_inner()) = want;
                taken.1.notify_all();
                out.into_iter().for_each(&mut sink);
            }
        }
        started > 0
    });
    if !all_done {
        for (i, u) in units.iter().enumerate() {
            sink(work(i, u));
        }
    }
}

impl Loader {
    pub fn new() -> Self {
        Self::default()
    }

    /// [`Loader::finish`] leaves Cilium's entity and `toServices` peers as placeholders (they match nothing), with
    /// no warning about them: for an object loaded alone, whose cluster is assembled elsewhere and then resolved
    /// whole with [`resolve_cilium_refs`].
    pub fn defer_cilium_refs(&mut self) {
        self.defer_cilium_refs = true;
    }

    /// [`Loader::finish`] neither admits nor lowers Antrea's objects: they are only kept (`Cluster::antrea`), for
    /// an object loaded alone, whose cluster is assembled elsewhere and then lowered whole with
    /// [`relower_antrea`].
    pub fn defer_antrea(&mut self) {
        self.antrea.defer = true;
    }

    /// Starts from these namespaces (for [`relower_antrea`]).
    fn seed_namespaces(&mut self, namespaces: Vec<Namespace>) {
        self.ns_index = namespaces.iter().enumerate().map(|(i, n)| (n.name.clone(), NsId::new(i))).collect();
        self.namespaces = namespaces;
    }

    /// Loads every document of one input. `name` is used in diagnostics.
    pub fn add_bytes(&mut self, name: &str, bytes: &[u8]) {
        let file: std::sync::Arc<str> = name.into();
        let origin = |document| Origin { file: file.clone(), document, item: None };
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                // YAML: the documents that are text still load. JSON has no document markers to resume at.
                let json = bytes.trim_ascii_start().first().is_some_and(|b| matches!(b, b'{' | b'['));
                if json || !yaml::add_yaml_bytes(self, name, bytes) {
                    self.diagnostics.push(error(origin(0), None, None, format!("input is not UTF-8: {e}")));
                }
                return;
            }
        };
        // A byte-order mark is not content (editors on Windows write one).
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let trimmed = text.trim_start();
        if (trimmed.starts_with('{') || trimmed.starts_with('[')) && json::add_json(self, name, trimmed) {
            return;
        }
        yaml::add_yaml(self, name, text);
    }

    /// Registers what decoding produced, in order.
    pub(crate) fn accept(&mut self, d: Decoded) {
        match d {
            Decoded::Diagnostic(d) => self.diagnostics.push(d),
            Decoded::Skipped(kind) => {
                tracing::debug!(%kind, "skipping object of a kind netpol does not model");
                *self.skipped_kinds.entry(kind).or_default() += 1;
            }
            Decoded::Object { origin, label, item } => self.register(item, origin, label),
        }
    }

    /// Adds one decoded document (or List item).
    pub fn add_value(&mut self, v: Value, origin: Origin) {
        match Node::deserialize_from_value(&v) {
            Ok(node) => {
                let mut out = Vec::new();
                decode(&node, origin, &mut out);
                out.into_iter().for_each(|d| self.accept(d));
            }
            Err(e) => self.diagnostics.push(error(origin, None, None, e.to_string())),
        }
    }

    /// The origin of an earlier object of the same kind, namespace and name, if there is one (`ns` is the
    /// namespace's id, `None` for a namespace itself).
    fn earlier(&self, kind: &'static str, ns: Option<NsId>, name: &str) -> Option<&Origin> {
        let Some(ns) = ns else {
            let id = *self.ns_index.get(name)?;
            return self.namespaces[id.index()].origin.as_ref();
        };
        let ids = self.seen.get(&(kind, ns, name_hash(name)))?;
        let is_policy = kind == "NetworkPolicy" || kind == PolicyKind::CalicoNetworkPolicy.as_str();
        ids.iter().find_map(|&id| {
            let (obj_ns, obj_name, origin) = if is_policy {
                let p = &self.policies[id as usize];
                (p.ns().unwrap_or_default(), &p.name, &p.origin)
            } else {
                let p = &self.pods[id as usize];
                (p.ns, &p.name, &p.source.origin)
            };
            (obj_ns == ns && obj_name == name).then_some(origin)
        })
    }

    /// Checks for a duplicate object; reports it and returns false if this one is a duplicate.
    fn first_of(&mut self, kind: &'static str, ns: Option<NsId>, name: &str, origin: &Origin, label: &str) -> bool {
        if let Some(first) = self.earlier(kind, ns, name) {
            let msg = format!("duplicate object: already defined at {first}; this one is ignored");
            self.diagnostics.push(error(origin.clone(), Some(label.to_string()), Some("metadata.name"), msg));
            return false;
        }
        true
    }

    fn remember(&mut self, kind: &'static str, ns: NsId, name: &str, id: u32) {
        self.seen.entry((kind, ns, name_hash(name))).or_default().push(id);
    }

    /// [`Loader::first_of`] for the cluster-scoped kinds other than Namespace (policies and nodes).
    fn first_in_cluster(&mut self, kind: &'static str, name: &str, origin: &Origin, label: &str) -> bool {
        let ids = self.seen_cluster.get(&(kind, name_hash(name)));
        let first = ids.into_iter().flatten().find_map(|&id| {
            let (obj_name, origin) = if kind == "Node" {
                let n = &self.nodes[id as usize];
                (&n.name, &n.origin)
            } else {
                let p = &self.policies[id as usize];
                (&p.name, &p.origin)
            };
            (obj_name == name).then_some(origin)
        });
        if let Some(first) = first {
            let msg = format!("duplicate object: already defined at {first}; this one is ignored");
            self.diagnostics.push(error(origin.clone(), Some(label.to_string()), Some("metadata.name"), msg));
            return false;
        }
        true
    }

    /// [`Loader::first_of`] for Tiers, network sets and service accounts: remembers this one if it is the first.
    fn first_other(&mut self, kind: &'static str, ns: Option<NsId>, name: &str, origin: &Origin, label: &str) -> bool {
        match self.seen_other.entry((kind, ns, name.to_string())) {
            std::collections::hash_map::Entry::Occupied(first) => {
                let msg = format!("duplicate object: already defined at {}; this one is ignored", first.get());
                self.diagnostics.push(error(origin.clone(), Some(label.to_string()), Some("metadata.name"), msg));
                false
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(origin.clone());
                true
            }
        }
    }

    /// Whether a Service, EndpointSlice or Endpoints object is the first of its kind, namespace and name (else an
    /// error says it is a duplicate).
    fn first_service(&mut self, key: (&'static str, String, String), origin: &Origin, label: &str) -> bool {
        match self.seen_services.entry(key) {
            std::collections::hash_map::Entry::Occupied(first) => {
                let msg = format!("duplicate object: already defined at {}; this one is ignored", first.get());
                self.diagnostics.push(error(origin.clone(), Some(label.to_string()), Some("metadata.name"), msg));
                false
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(origin.clone());
                true
            }
        }
    }

    fn ns_id(&mut self, name: &str) -> NsId {
        if let Some(&id) = self.ns_index.get(name) {
            return id;
        }
        let id = NsId::new(self.namespaces.len());
        let labels = self.intern.labels(Labels::from_iter([(NAMESPACE_NAME_LABEL, name)]));
        self.namespaces.push(Namespace { name: name.to_string(), labels, origin: None });
        self.ns_index.insert(name.to_string(), id);
        id
    }

    fn intern_selectors(&mut self, policy: &mut Policy) {
        let i = &mut self.intern;
        policy.pod_selector = std::mem::take(&mut policy.pod_selector).interned(i);
        if let Scope::Cluster(s) = &mut policy.scope {
            *s = std::mem::take(s).interned(i);
        }
        for rule in policy.ingress.iter_mut().chain(&mut policy.egress) {
            for peer in &mut rule.peers {
                match peer {
                    Peer::Selectors { namespaces, pods } => {
                        for s in [namespaces, pods].into_iter().flatten() {
                            *s = std::mem::take(s).interned(i);
                        }
                    }
                    Peer::Nodes(s) => *s = std::mem::take(s).interned(i),
                    Peer::IpBlock(_)
                    | Peer::Networks(_)
                    | Peer::DomainNames(_)
                    | Peer::Calico(_)
                    | Peer::Fqdns(_)
                    | Peer::SubjectNodes { .. }
                    | Peer::NodeSelector(_) => {}
                }
            }
        }
    }

    fn register(&mut self, item: Item, origin: Origin, label: String) {
        match item {
            Item::Antrea(a) => self.register_antrea(a, origin, label),
            Item::Namespace { name, mut labels } => {
                if !self.first_of("Namespace", None, &name, &origin, &label) {
                    return;
                }
                let id = self.ns_id(&name);
                // The API server always sets this label to the namespace's name.
                labels.insert(NAMESPACE_NAME_LABEL, name);
                let ns = &mut self.namespaces[id.index()];
                ns.labels = self.intern.labels(labels);
                ns.origin = Some(origin);
            }
            Item::Policy { ns_name, policy } => {
                let ns = self.ns_id(&ns_name);
                if !self.first_of("NetworkPolicy", Some(ns), &policy.name, &origin, &label) {
                    return;
                }
                // A copy made here, on the registering thread: what the model keeps is then not scattered among
                // a decoding thread's short-lived allocations, which would keep their memory pages alive.
                #[allow(clippy::redundant_clone)]
                let mut policy = policy.clone();
                policy.scope = Scope::Namespace(ns);
                policy.origin = origin;
                self.intern_selectors(&mut policy);
                self.remember("NetworkPolicy", ns, &policy.name, self.policies.len() as u32);
                self.policies.push(policy);
            }
            Item::ClusterPolicy(policy) => {
                let kind = policy.kind.as_str();
                if !self.first_in_cluster(kind, &policy.name, &origin, &label) {
                    return;
                }
                // Copied on this thread, as a NetworkPolicy is (above).
                #[allow(clippy::redundant_clone)]
                let mut policy = policy.clone();
                policy.origin = origin;
                self.intern_selectors(&mut policy);
                let id = self.policies.len() as u32;
                self.seen_cluster.entry((kind, name_hash(&policy.name))).or_default().push(id);
                self.policies.push(policy);
            }
            Item::CalicoPolicy { ns_name, policy, tier } => {
                let kind = policy.kind.as_str();
                let ns = ns_name.map(|n| self.ns_id(&n));
                let first = match ns {
                    Some(ns) => self.first_of(kind, Some(ns), &policy.name, &origin, &label),
                    None => self.first_in_cluster(kind, &policy.name, &origin, &label),
                };
                if !first {
                    return;
                }
                // Copied on this thread, as a NetworkPolicy is (above).
                #[allow(clippy::redundant_clone)]
                let mut policy = Policy::clone(&policy);
                if let Some(ns) = ns {
                    policy.scope = Scope::Namespace(ns);
                }
                policy.origin = origin;
                self.intern_selectors(&mut policy);
                let id = self.policies.len();
                match ns {
                    Some(ns) => self.remember(kind, ns, &policy.name, id as u32),
                    None => self.seen_cluster.entry((kind, name_hash(&policy.name))).or_default().push(id as u32),
                }
                if let Some(tier) = tier {
                    self.pending_tiers.push((id, tier, label));
                }
                self.policies.push(policy);
            }
            Item::CiliumPolicy { ns_name, name, parts } => {
                let kind = if ns_name.is_some() { "CiliumNetworkPolicy" } else { "CiliumClusterwideNetworkPolicy" };
                let ns = ns_name.map(|n| self.ns_id(&n));
                if !self.first_other(kind, ns, &name, &origin, &label) {
                    return;
                }
                for (policy, tier) in parts {
                    let mut policy = policy;
                    policy.name = name.clone();
                    if let Some(ns) = ns {
                        policy.scope = Scope::Namespace(ns);
                    }
                    policy.origin = origin.clone();
                    self.intern_selectors(&mut policy);
                    let id = self.policies.len();
                    match tier {
                        cilium::CiliumTier::NetworkPolicy => policy.tier = PolicyTier::NetworkPolicy,
                        cilium::CiliumTier::Deny => self.pending_cilium.push((id, cilium::DENY_TIER)),
                        cilium::CiliumTier::Allow => self.pending_cilium.push((id, cilium::ALLOW_TIER)),
                    }
                    self.policies.push(policy);
                }
            }
            Item::Tier(mut tier) => {
                if !self.first_other("Tier", None, &tier.name, &origin, &label) {
                    return;
                }
                tier.origin = Some(origin);
                match calico::builtin_tier(&tier.name) {
                    Some(i) => self.builtin_tiers[i] = Some(tier),
                    None => self.tiers.push(tier),
                }
            }
            Item::NetworkSet { ns_name, mut set } => {
                let ns = ns_name.map(|n| self.ns_id(&n));
                let kind = match ns {
                    Some(_) => "NetworkSet",
                    // A CiliumCIDRGroup is a network set of its own kind (see `cilium::cidr_group`).
                    None if set.is_cidr_group() => "CiliumCIDRGroup",
                    None => "GlobalNetworkSet",
                };
                if !self.first_other(kind, ns, &set.name, &origin, &label) {
                    return;
                }
                set.ns = ns;
                set.labels = self.intern.labels(set.labels);
                set.origin = origin;
                self.network_sets.push(set);
            }
            Item::HostEndpoint(mut hep) => {
                if !self.first_other("HostEndpoint", None, &hep.name, &origin, &label) {
                    return;
                }
                hep.labels = self.intern.labels(hep.labels);
                hep.origin = origin;
                self.host_endpoints.push(hep);
            }
            Item::Service { ns_name, name, labels, selector } => {
                // Kept by namespace name: a Service does not create its namespace.
                if !self.first_service(("Service", ns_name.clone(), name.clone()), &origin, &label) {
                    return;
                }
                let labels = self.intern.labels(labels);
                self.services.push(Service { namespace: ns_name, name, labels, selector, origin });
            }
            Item::ServiceEndpoints { kind, ns_name, name, service, addresses } => {
                if !self.first_service((kind, ns_name.clone(), name.clone()), &origin, &label) {
                    return;
                }
                self.service_endpoints.push(ServiceEndpoints {
                    kind,
                    namespace: ns_name,
                    name,
                    service,
                    addresses,
                    origin,
                });
            }
            Item::ServiceAccount { ns_name, name, labels } => {
                let ns = self.ns_id(&ns_name);
                if !self.first_other("ServiceAccount", Some(ns), &name, &origin, &label) {
                    return;
                }
                let labels = self.intern.labels(labels);
                self.service_accounts.push(ServiceAccount { ns, name, labels, origin: Some(origin) });
            }
            Item::Staged { action, ns_name, policy, tier } => {
                let mut staged = StagedPolicy { action, namespace: ns_name, policy: *policy, implicit_tier: None };
                let kind = staged.staged_kind();
                let key = (kind, staged.namespace.clone(), staged.policy.name.clone());
                match self.seen_staged.entry(key) {
                    std::collections::hash_map::Entry::Occupied(first) => {
                        let msg = format!("duplicate object: already defined at {}; this one is ignored", first.get());
                        self.diagnostics.push(error(origin, Some(label), Some("metadata.name"), msg));
                        return;
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(origin.clone());
                    }
                }
                staged.policy.origin = origin;
                self.intern_selectors(&mut staged.policy);
                self.staged.push((staged, tier, label));
            }
            Item::Node(n) => {
                if !self.first_in_cluster("Node", &n.name, &origin, &label) {
                    return;
                }
                let id = self.nodes.len() as u32;
                self.seen_cluster.entry(("Node", name_hash(&n.name))).or_default().push(id);
                self.nodes.push(crate::model::Node {
                    name: n.name.as_str().into(),
                    labels: self.intern.labels(n.labels),
                    ips: n.ips.to_vec(),
                    origin,
                });
                self.node_host_ips.push(n.host_ips.to_vec());
            }
            Item::Pod(p) => {
                let ns = self.ns_id(&p.ns_name);
                if !self.first_of(p.kind, Some(ns), &p.name, &origin, &label) {
                    return;
                }
                for ip in &p.ips {
                    let id = PodId::new(self.pods.len());
                    if let Some(&other) = self.ip_owner.get(ip) {
                        let other = &self.pods[other.index()];
                        // hostNetwork pods share their node's IP: expected, not worth a warning.
                        if p.host_network || other.host_network {
                            continue;
                        }
                        let msg = format!(
                            "IP {ip} is also the IP of pod {}/{}",
                            self.namespaces[other.ns.index()].name,
                            other.name
                        );
                        self.diagnostics.push(Diagnostic {
                            severity: Severity::Warning,
                            origin: origin.clone(),
                            object: Some(label.clone()),
                            field: Some("status.podIP".into()),
                            message: msg,
                        });
                    } else {
                        self.ip_owner.insert(*ip, id);
                    }
                }
                let source = PodSource { kind: p.kind, origin };
                let pod = Pod {
                    ns,
                    // Copied on this thread, as a policy is (above).
                    name: p.name.as_str().into(),
                    labels: self.intern.labels(p.labels),
                    ports: self.intern.ports(p.ports),
                    ips: p.ips.to_vec(),
                    host_network: p.host_network,
                    node: p.node.as_deref().map(str::to_string),
                    service_account: self.intern.atom(p.service_account.as_deref().unwrap_or("default")),
                    source,
                };
                self.remember(p.kind, ns, &pod.name, self.pods.len() as u32);
                self.pods.push(pod);
            }
        }
    }

    /// Ends loading. Namespaces referenced by a selector-free reference (a pod's or policy's namespace) exist
    /// implicitly with their automatic label. A workload whose representative pod has the name of another pod of
    /// its namespace (Pod `web` and StatefulSet `web`) is named `statefulset/web`, so every pod keeps one name. A
    /// hostNetwork pod with no IP in its status, on a node netpol knows (nodes may come after pods), has the node's
    /// host IPs. Calico policies get their tiers (a tier no Tier object declares is assumed, with a warning); every
    /// service account a pod runs as exists (implicitly, without labels, when no ServiceAccount declares it); and
    /// when the input has Calico objects, the built-in tiers go by their Calico names.
    pub fn finish(mut self) -> Loaded {
        // The tables for duplicate checks and interning are done with: freed first, so that what `finish` builds
        // reuses their memory instead of raising the peak.
        self.seen = HashMap::default();
        self.seen_cluster = HashMap::default();
        self.ip_owner = HashMap::default();
        self.intern = Interner::default();
        let mut by_name: HashMap<(NsId, &str), Vec<usize>> = HashMap::default();
        for (i, p) in self.pods.iter().enumerate() {
            by_name.entry((p.ns, p.name.as_str())).or_default().push(i);
        }
        let mut rename: Vec<usize> = by_name
            .into_values()
            .filter(|v| v.len() > 1)
            .flatten()
            .filter(|&i| self.pods[i].source.kind != "Pod")
            .collect();
        rename.sort_unstable();
        for i in rename {
            let p = &mut self.pods[i];
            p.name = format!("{}/{}", p.source.kind.to_ascii_lowercase(), p.name);
        }
        if !self.nodes.is_empty() {
            let node: HashMap<&str, usize> = self.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
            for p in self.pods.iter_mut().filter(|p| p.host_network && p.ips.is_empty()) {
                if let Some(ips) = p.node.as_deref().and_then(|n| node.get(n)).and_then(|&i| self.node_host_ips.get(i))
                {
                    p.ips = ips.clone();
                }
            }
        }
        let mut tiers = self.calico_tiers();
        self.finish_antrea(&mut tiers);
        let staged = self.staged_policies(&tiers);
        let mut service_accounts = std::mem::take(&mut self.service_accounts);
        let mut known: std::collections::HashSet<(NsId, crate::labels::Atom)> =
            service_accounts.iter().map(|s| (s.ns, s.name.as_str().into())).collect();
        for p in &self.pods {
            if known.insert((p.ns, p.service_account.clone())) {
                let name = p.service_account.to_string();
                service_accounts.push(ServiceAccount { ns: p.ns, name, labels: Labels::default(), origin: None });
            }
        }
        let mut cluster = Cluster {
            namespaces: self.namespaces,
            pods: self.pods,
            policies: self.policies,
            nodes: self.nodes,
            tiers,
            network_sets: self.network_sets,
            service_accounts,
            staged,
            host_endpoints: self.host_endpoints,
            services: self.services,
            service_endpoints: self.service_endpoints,
            antrea_refs: std::mem::take(&mut self.antrea.refs),
            antrea: std::mem::take(&mut self.antrea.sources),
        };
        if !self.defer_cilium_refs {
            cilium_refs::resolve(&mut cluster, &mut self.diagnostics);
            cilium_nodes::resolve(&cluster, &mut self.diagnostics);
        }
        if cluster.has_calico() {
            for (t, name) in cluster.tiers.iter_mut().zip(calico::builtin_tier_names()) {
                t.name = name.to_string();
            }
        }
        Loaded { cluster, diagnostics: self.diagnostics, skipped_kinds: self.skipped_kinds }
    }

    /// The tiers: the built-in ones (with what their Tier objects say), then the declared ones in input order,
    /// then the ones policies name without a Tier object (each such policy warned about); each Calico policy gets
    /// its tier's index.
    fn calico_tiers(&mut self) -> Vec<TierDef> {
        let mut tiers = TierDef::builtin();
        for (t, declared) in tiers.iter_mut().zip(std::mem::take(&mut self.builtin_tiers)) {
            if let Some(d) = declared {
                t.default_action = d.default_action;
                t.origin = d.origin;
            }
        }
        let declared = tiers.len() + self.tiers.len();
        tiers.append(&mut self.tiers);
        // Cilium's tiers, when its policies need them (before the pending Calico tiers, which name theirs).
        for (id, (name, order)) in std::mem::take(&mut self.pending_cilium) {
            let i = match tiers.iter().position(|t| t.name == name && t.origin.is_none()) {
                Some(i) => i,
                None => {
                    tiers.push(TierDef {
                        name: name.to_string(),
                        order: Some(order),
                        default_action: Action::Pass,
                        origin: None,
                        pass_to_network_policy: false,
                    });
                    tiers.len() - 1
                }
            };
            if let Some(policy) = self.policies.get_mut(id) {
                policy.tier = PolicyTier::from_index(i);
            }
        }
        let mut index: HashMap<String, usize> =
            tiers.iter().enumerate().skip(3).map(|(i, t)| (t.name.clone(), i)).collect();
        for (id, name, label) in std::mem::take(&mut self.pending_tiers) {
            let i = *index.entry(name.clone()).or_insert_with(|| {
                tiers.push(calico::implicit_tier(&name));
                tiers.len() - 1
            });
            let Some(policy) = self.policies.get_mut(id) else { continue };
            policy.tier = PolicyTier::from_index(i);
            if i >= declared {
                self.diagnostics.push(Diagnostic {
                    severity: Severity::Warning,
                    origin: policy.origin.clone(),
                    object: Some(label),
                    field: Some("spec.tier".to_string()),
                    message: calico::implicit_tier_message(&name),
                });
            }
        }
        tiers
    }
}

impl Loader {
    /// The staged policies, resolved against the enforced cluster: a namespaced one gets its namespace if the
    /// cluster has it (else a placeholder, see [`StagedPolicy::policy`]); a Calico one gets its tier if a Tier
    /// object declares it or an enforced policy is in it, else the tier is the staged view's to add (warned about
    /// as for enforced policies). A `Delete` naming no loaded policy is warned about: it changes nothing.
    fn staged_policies(&mut self, tiers: &[TierDef]) -> Vec<StagedPolicy> {
        let staged = std::mem::take(&mut self.staged);
        let mut out = Vec::with_capacity(staged.len());
        let warn = |object: &str, origin: &Origin, field: &str, message: String| Diagnostic {
            severity: Severity::Warning,
            origin: origin.clone(),
            object: Some(object.to_string()),
            field: Some(field.to_string()),
            message,
        };
        // The enforced policies by (kind, namespace, name), when a Delete needs them.
        let mut enforced: std::collections::HashSet<(PolicyKind, &str, &str)> = Default::default();
        if staged.iter().any(|s| s.0.action == StagedAction::Delete) {
            for p in &self.policies {
                let ns = p.ns().map_or("", |id| self.namespaces[id.index()].name.as_str());
                enforced.insert((p.kind, ns, p.name.as_str()));
            }
        }
        for (mut s, tier, label) in staged {
            if let Some(ns) = &s.namespace {
                s.policy.scope = match self.ns_index.get(ns) {
                    Some(&id) => Scope::Namespace(id),
                    None => Scope::Cluster(Selector::from_labels([(NAMESPACE_NAME_LABEL, ns.as_str())])),
                };
            }
            if let Some(name) = tier {
                match tiers.iter().enumerate().skip(3).find(|(_, t)| t.name == name) {
                    Some((i, t)) => {
                        s.policy.tier = PolicyTier::from_index(i);
                        // An implicit tier: only enforced policies name it (the loader warned about them).
                        if t.origin.is_none() {
                            let msg = calico::implicit_tier_message(&name);
                            self.diagnostics.push(warn(&label, &s.policy.origin, "spec.tier", msg));
                        }
                    }
                    None => {
                        let msg = calico::implicit_tier_message(&name);
                        self.diagnostics.push(warn(&label, &s.policy.origin, "spec.tier", msg));
                        s.implicit_tier = Some(name);
                    }
                }
            }
            if s.action == StagedAction::Delete {
                let target = s.key();
                let ns = target.namespace.as_str();
                if !enforced.contains(&(target.kind, ns, target.name.as_str())) {
                    let name = if ns.is_empty() { target.name.clone() } else { format!("{ns}/{}", target.name) };
                    let msg = format!(
                        "stagedAction Delete: no {} {name} is loaded, so enforcing this staged policy would delete \
                         nothing",
                        target.kind.as_str()
                    );
                    self.diagnostics.push(warn(&label, &s.policy.origin, "metadata.name", msg));
                }
            }
            out.push(s);
        }
        out
    }
}

fn name_hash(name: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(name)
}

/// Decodes one document (or List item) into `out`. Pure: runs on any thread.
pub(crate) fn decode(node: &Node<'_>, origin: Origin, out: &mut Vec<Decoded>) {
    decode_with_kind(node, origin, None, out)
}

/// Whether `node` is a List (`kind: List`, or a typed list such as `PodList` with an `items` array), and the
/// kind and apiVersion its items default to (typed lists from the API may omit them on items).
pub(crate) fn list_kind<'n>(node: &'n Node<'_>) -> Option<Option<(&'n str, &'n str)>> {
    let kind = node.get("kind").and_then(Node::as_str)?;
    let item_kind = kind.strip_suffix("List");
    let typed_list = item_kind.is_some_and(|k| KINDS.iter().any(|m| m.kind == k));
    if kind == "List" || typed_list && node.get("items").is_some_and(|i| matches!(i, Node::Seq(_))) {
        let api_version = node.get("apiVersion").and_then(Node::as_str).unwrap_or("");
        Some(item_kind.filter(|k| !k.is_empty()).map(|k| (k, api_version)))
    } else {
        None
    }
}

pub(crate) fn decode_with_kind(
    node: &Node<'_>,
    origin: Origin,
    default_kind: Option<(&str, &str)>,
    out: &mut Vec<Decoded>,
) {
    decode_from(node, node, origin, default_kind, out)
}

/// Where the typed objects are decoded from: the document's tree, or the raw JSON text of a List item.
pub(crate) trait Source {
    fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, (Option<String>, String)>;

    /// The object's YAML text as written, when the source has it (a YAML document that is one object).
    fn raw_yaml(&self) -> Option<&str> {
        None
    }
}

/// A YAML document that is one object: its tree, and its text (what the object's manifest is kept as).
pub(crate) struct YamlDoc<'a, 'n> {
    pub node: &'a Node<'n>,
    pub text: &'a str,
}

impl Source for YamlDoc<'_, '_> {
    fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, (Option<String>, String)> {
        typed(self.node)
    }

    fn raw_yaml(&self) -> Option<&str> {
        Some(self.text)
    }
}

/// Decodes one YAML document whose text is `text` (see [`decode`]); an object's manifest is then its text.
pub(crate) fn decode_document(node: &Node<'_>, text: &str, origin: Origin, out: &mut Vec<Decoded>) {
    decode_from(node, &YamlDoc { node, text }, origin, None, out)
}

impl Source for Node<'_> {
    fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, (Option<String>, String)> {
        typed(self)
    }
}

/// Decodes one object: `node` holds at least what decides how (kind, apiVersion, metadata name and namespace, the
/// pod template's presence, `items`); the typed object is read from `source`.
pub(crate) fn decode_from<S: Source>(
    node: &Node<'_>,
    source: &S,
    origin: Origin,
    default_kind: Option<(&str, &str)>,
    out: &mut Vec<Decoded>,
) {
    let Node::Map(_) = node else {
        if !node.is_null() {
            out.push(Decoded::Diagnostic(error(origin, None, None, "document is not an object")));
        }
        return;
    };
    let meta = node.get("metadata");
    // Typed lists (`PodList` from the API) may omit kind/apiVersion on their items.
    let kind = match (node.get("kind"), default_kind) {
        (Some(k), _) => k.as_str().unwrap_or(""),
        (None, Some((k, _))) => k,
        (None, None) => "",
    };
    let api_version = match (node.get("apiVersion"), default_kind) {
        (Some(a), _) => a.as_str().unwrap_or(""),
        (None, Some((_, a))) => a,
        (None, None) => "",
    };
    if kind.is_empty() {
        out.push(Decoded::Diagnostic(error(origin, None, Some("kind"), "missing `kind`")));
        return;
    }
    let of_kind = || KINDS.iter().filter(|k| k.kind == kind);
    let entry = of_kind().find(|k| k.api_versions.contains(&api_version)).or_else(|| of_kind().next());
    // Calico's NetworkPolicy is told apart from Kubernetes' in messages.
    let label_kind = match entry.map(|e| e.lower) {
        Some(Lower::CalicoNetworkPolicy) => PolicyKind::CalicoNetworkPolicy.as_str(),
        Some(Lower::AntreaClusterNetworkPolicy) => PolicyKind::AntreaClusterNetworkPolicy.as_str(),
        Some(Lower::AntreaNetworkPolicy) => PolicyKind::AntreaNetworkPolicy.as_str(),
        Some(Lower::AntreaTier) => "Tier.crd.antrea.io",
        _ => kind,
    };
    let label = validate::object_label(label_kind, entry.is_some_and(|e| e.cluster_scoped), meta);
    if let Some(item_kind) = list_kind(node) {
        if origin.item.is_some() {
            out.push(Decoded::Diagnostic(error(origin, Some(label), None, "nested lists are not supported")));
            return;
        }
        let Some(Node::Seq(items)) = node.get("items") else {
            out.push(Decoded::Diagnostic(error(origin, Some(label), Some("items"), "a List needs `items`")));
            return;
        };
        for (i, item) in items.iter().enumerate() {
            decode_with_kind(item, Origin { item: Some(i), ..origin.clone() }, item_kind, out);
        }
        return;
    }
    let Some(entry) = entry else {
        // `networkpolicy` or `PODLIST` is a typo of a kind netpol reads, not a kind to skip.
        let known = KINDS.iter().map(|k| k.kind).chain(["List"]);
        let typo = known.flat_map(|k| [k.to_string(), format!("{k}List")]).find(|k| k.eq_ignore_ascii_case(kind));
        match typo {
            Some(k) => {
                let msg = format!("unknown kind `{kind}`: kinds are case-sensitive; did you mean `{k}`?");
                let scoped = KINDS.iter().any(|e| e.cluster_scoped && k.strip_suffix("List").unwrap_or(&k) == e.kind);
                let label = if scoped { validate::object_label(kind, true, meta) } else { label };
                out.push(Decoded::Diagnostic(error(origin, Some(label), Some("kind"), msg)));
            }
            None => out.push(Decoded::Skipped(kind.to_string())),
        }
        return;
    };
    let kind = entry.kind;
    if !entry.api_versions.contains(&api_version) {
        let expected: Vec<&str> = of_kind().flat_map(|e| e.api_versions.iter().copied()).collect();
        // Calico's own kinds of the same name (its Node) are kinds netpol does not model.
        if is_calico_group(api_version) && !expected.iter().any(|a| is_calico_group(a)) {
            let group = api_version.split('/').next().unwrap_or_default();
            out.push(Decoded::Skipped(format!("{kind}.{group}")));
            return;
        }
        let expected = match &expected[..] {
            [one] => format!("`{one}`"),
            more => format!("one of {}", more.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")),
        };
        let msg = format!("unsupported apiVersion `{api_version}` for {kind}; expected {expected}");
        out.push(Decoded::Diagnostic(error(origin, Some(label), Some("apiVersion"), msg)));
        return;
    }
    // The API server requires a workload's pod template.
    if let Some((path, keys)) = entry.template {
        let mut n = Some(node);
        for k in keys {
            n = n.and_then(|n| n.get(k));
        }
        if n.is_none_or(Node::is_null) {
            let msg = format!("{kind} has no pod template");
            out.push(Decoded::Diagnostic(error(origin, Some(label), Some(path), msg)));
            return;
        }
    }
    let mut errs = Errors::default();
    let item = match entry.lower {
        Lower::Namespace => source.typed::<objects::NamespaceObj>().map(|o| validate::namespace(o, &mut errs)),
        Lower::NetworkPolicy => source.typed::<objects::NetworkPolicyObj>().map(|o| validate::policy(o, &mut errs)),
        Lower::Pod => {
            source.typed::<objects::PodObj>().map(|o| validate::pod(o.metadata, o.spec, o.status, kind, "", &mut errs))
        }
        Lower::CronJob => source.typed::<objects::CronJobObj>().map(|o| {
            let t = o.spec.and_then(|s| s.job_template).and_then(|j| j.spec).and_then(|s| s.template);
            validate::workload(o.metadata, t, kind, "spec.jobTemplate.spec.template.", &mut errs)
        }),
        Lower::Workload => source.typed::<objects::WorkloadObj>().map(|o| {
            let t = o.spec.and_then(|s| s.template);
            validate::workload(o.metadata, t, kind, "spec.template.", &mut errs)
        }),
        Lower::Node => source.typed::<objects::NodeObj>().map(|o| validate::node(o, &mut errs)),
        Lower::ClusterNetworkPolicy => {
            source.typed::<objects::ClusterNetworkPolicyObj>().map(|o| admin::cluster_network_policy(o, &mut errs))
        }
        Lower::AdminNetworkPolicy => {
            source.typed::<objects::AdminNetworkPolicyObj>().map(|o| admin::admin_network_policy(o, &mut errs))
        }
        Lower::BaselineAdminNetworkPolicy => source
            .typed::<objects::BaselineAdminNetworkPolicyObj>()
            .map(|o| admin::baseline_admin_network_policy(o, &mut errs)),
        Lower::CalicoNetworkPolicy => {
            source.typed::<objects::CalicoNetworkPolicyObj>().map(|o| calico::network_policy(o, &mut errs))
        }
        Lower::GlobalNetworkPolicy => {
            source.typed::<objects::GlobalNetworkPolicyObj>().map(|o| calico::global_network_policy(o, &mut errs))
        }
        Lower::Tier => source.typed::<objects::TierObj>().map(|o| calico::tier(o, &mut errs)),
        Lower::NetworkSet => source.typed::<objects::NetworkSetObj>().map(|o| calico::network_set(o, false, &mut errs)),
        Lower::GlobalNetworkSet => {
            source.typed::<objects::NetworkSetObj>().map(|o| calico::network_set(o, true, &mut errs))
        }
        Lower::ServiceAccount => {
            source.typed::<objects::ServiceAccountObj>().map(|o| calico::service_account(o, &mut errs))
        }
        Lower::StagedNetworkPolicy => {
            source.typed::<objects::StagedNetworkPolicyObj>().map(|o| calico::staged_network_policy(o, &mut errs))
        }
        Lower::StagedGlobalNetworkPolicy => source
            .typed::<objects::StagedGlobalNetworkPolicyObj>()
            .map(|o| calico::staged_global_network_policy(o, &mut errs)),
        Lower::StagedKubernetesNetworkPolicy => source
            .typed::<objects::StagedKubernetesNetworkPolicyObj>()
            .map(|o| calico::staged_kubernetes_network_policy(o, &mut errs)),
        Lower::HostEndpoint => source.typed::<objects::HostEndpointObj>().map(|o| calico::host_endpoint(o, &mut errs)),
        Lower::CiliumNetworkPolicy => {
            source.typed::<objects::CiliumPolicyObj>().map(|o| cilium::network_policy(o, as_written(source), &mut errs))
        }
        Lower::CiliumClusterwideNetworkPolicy => source
            .typed::<objects::CiliumPolicyObj>()
            .map(|o| cilium::clusterwide_network_policy(o, as_written(source), &mut errs)),
        Lower::CiliumCidrGroup => {
            source.typed::<objects::CiliumCidrGroupObj>().map(|o| cilium::cidr_group(o, &mut errs))
        }
        Lower::Service => source.typed::<objects::ServiceObj>().map(|o| services::service(o, &mut errs)),
        Lower::EndpointSlice => {
            source.typed::<objects::EndpointSliceObj>().map(|o| services::endpoint_slice(o, &mut errs))
        }
        Lower::Endpoints => source.typed::<objects::EndpointsObj>().map(|o| services::endpoints(o, &mut errs)),
        Lower::AntreaClusterNetworkPolicy => source
            .typed::<antrea::AntreaPolicyObj>()
            .map(|o| antrea::policy(o, PolicyKind::AntreaClusterNetworkPolicy, as_written(source), &mut errs)),
        Lower::AntreaNetworkPolicy => source
            .typed::<antrea::AntreaPolicyObj>()
            .map(|o| antrea::policy(o, PolicyKind::AntreaNetworkPolicy, as_written(source), &mut errs)),
        Lower::AntreaTier => source.typed::<antrea::AntreaTierObj>().map(|o| antrea::tier(o, &mut errs)),
        Lower::AntreaClusterGroup => source.typed::<antrea::GroupObj>().map(|o| antrea::group(o, false, &mut errs)),
        Lower::AntreaGroup => source.typed::<antrea::GroupObj>().map(|o| antrea::group(o, true, &mut errs)),
    };
    match item {
        Err((field, message)) => out.push(Decoded::Diagnostic(error(origin, Some(label), field.as_deref(), message))),
        Ok(item) => {
            if !errs.errors.is_empty() {
                for (path, msg) in errs.errors {
                    out.push(Decoded::Diagnostic(error(origin.clone(), Some(label.clone()), Some(&path), msg)));
                }
                return;
            }
            for (path, message) in errs.warnings {
                let (object, field) = (Some(label.clone()), Some(path));
                out.push(Decoded::Diagnostic(Diagnostic {
                    severity: Severity::Warning,
                    origin: origin.clone(),
                    object,
                    field,
                    message,
                }));
            }
            if let Some(item) = item {
                out.push(Decoded::Object { origin, label, item });
            }
        }
    }
}

/// The object as its author wrote it, as YAML (`Policy::manifest`): a YAML document's own text, comments included;
/// otherwise (a List item, JSON) the object read again as a generic value and written back in its own order of keys
/// (comments and quoting style are then not kept). Only the kinds that the model cannot give back keep it.
fn as_written<S: Source>(source: &S) -> Option<std::sync::Arc<str>> {
    // A YAML document's own text (comments included) costs a copy; anything else is written back.
    if let Some(text) = source.raw_yaml() {
        // Without its `---` line: the manifest is the one document.
        let text = match text.strip_prefix("---") {
            Some(rest) if rest.is_empty() || rest.starts_with(['\n', '\r', ' ', '\t']) => {
                rest.split_once('\n').map_or("", |(_, after)| after)
            }
            _ => text,
        };
        let text = text.trim_matches(|c| c == '\n' || c == '\r');
        return Some(std::sync::Arc::from(format!("{text}\n")));
    }
    let v = source.typed::<serde_yaml_ng::Value>().ok()?;
    serde_yaml_ng::to_string(&v).ok().map(std::sync::Arc::from)
}

/// Decodes a typed object from the tree: `Err((field path, message))` on a type error or an unknown field. The
/// path is tracked only when there is an error (a second, tracked pass).
fn typed<T: serde::de::DeserializeOwned>(node: &Node<'_>) -> Result<T, (Option<String>, String)> {
    if let Ok(t) = T::deserialize(NodeDe(node)) {
        return Ok(t);
    }
    serde_path_to_error::deserialize::<_, T>(NodeDe(node)).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        let msg = e.into_inner().0;
        (field, objects::unknown_field_message(&msg).unwrap_or(msg))
    })
}

/// Loads a single input (convenience for tests and tools).
/// Resolves (again) Cilium's entity and `toServices` peers of every Cilium policy of `c` against its current
/// Nodes, Services and endpoints, as [`Loader::finish`] does (see `load/cilium_refs.rs`): what an earlier resolution
/// made is dropped first, so the cluster is then as a fresh load of the same objects. Returns the warnings of this
/// resolution (what the cluster lacks: no Node, no API server endpoints, no such Service), in place of earlier ones.
pub fn resolve_cilium_refs(c: &mut Cluster) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    cilium_refs::resolve(c, &mut diags);
    cilium_nodes::resolve(c, &mut diags);
    diags
}

/// Whether a Cilium policy of `c` has an entity or `toServices` peer that depends on the cluster's Nodes, Services
/// or endpoints ([`resolve_cilium_refs`] then has work to do).
pub fn has_cilium_refs(c: &Cluster) -> bool {
    cilium_refs::has_refs(c)
}

pub fn load_str(name: &str, text: &str) -> Loaded {
    let mut l = Loader::new();
    l.add_bytes(name, text.as_bytes());
    l.finish()
}

/// Parses and validates a label selector given as JSON/YAML value (`{matchLabels: ..., matchExpressions: ...}`),
/// for tools outside manifests (assertion files, what-if requests). Errors are `(field path, message)` pairs, the
/// path starting with `path`.
pub fn parse_selector(v: &Value, path: &str) -> Result<Selector, Vec<(String, String)>> {
    let node = Node::deserialize_from_value(v).map_err(|e| vec![(path.to_string(), e.to_string())])?;
    let ls: objects::LabelSelector = typed(&node).map_err(|(field, msg)| {
        let field = field.map_or_else(|| path.to_string(), |f| format!("{path}.{f}"));
        vec![(field, msg)]
    })?;
    let mut errs = Errors::default();
    let sel = validate::convert_selector(&ls, path, &mut errs);
    if errs.errors.is_empty() {
        Ok(sel)
    } else {
        Err(errs.errors)
    }
}

/// A document of [`yaml_documents`] that could not be read: the message, and the 1-based line when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentError {
    pub line: Option<usize>,
    pub message: String,
}

/// The documents of a YAML text as JSON values, for tools that read YAML outside manifests (what-if requests).
/// Each document is read as manifests are: in linear time, nesting limited to 128 levels, a broken document
/// costing only itself. A document that is empty or only comments is `null`.
pub fn yaml_documents(text: &str) -> Vec<Result<Value, DocumentError>> {
    use serde::Deserialize;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let line_of = |msg: &str| {
        let at = msg.rfind("at line ")?;
        msg[at + 8..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let to_value = |node: &Node<'_>| {
        Value::deserialize(NodeDe(node)).map_err(|e| DocumentError { line: None, message: e.to_string() })
    };
    let read = |d: Result<Node<'_>, String>| match d {
        Ok(node) => to_value(&node),
        Err(message) => Err(DocumentError { line: line_of(&message), message }),
    };
    match yaml::split_yaml_documents(text) {
        Some(pieces) => {
            pieces.iter().map(|(first_line, piece)| read(yaml::parse_document(piece, *first_line))).collect()
        }
        // Directives or `...` markers.
        None => yaml::stream_documents(text).into_iter().map(read).collect(),
    }
}

/// The YAML files of the repository's fixtures and examples (tests of the readers).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn fixture_yaml_files() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    let mut dirs = vec![root.join("tests/data"), root.join("examples")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use super::parallel_ordered;

    #[test]
    fn parallel_results_arrive_in_order_and_wait_for_a_slow_sink() {
        let units: Vec<usize> = (0..20_000).collect();
        let made = AtomicUsize::new(0);
        let mut seen = Vec::new();
        let mut most_waiting = 0;
        parallel_ordered(
            &units,
            3,
            |i, &u| {
                made.fetch_add(1, SeqCst);
                (i, u * 2)
            },
            |r| {
                seen.push(r);
                most_waiting = most_waiting.max(made.load(SeqCst) - seen.len());
                if seen.len() % 1000 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            },
        );
        assert!(seen.iter().enumerate().all(|(k, &(i, v))| k == i && v == 2 * i));
        assert_eq!(seen.len(), units.len());
        // Chunks of at most MAX_CHUNK, workers at most 4 chunks per thread ahead of the sink, plus one chunk each
        // in hand.
        assert!(most_waiting <= (3 * 4 + 3) * super::MAX_CHUNK, "{most_waiting} results waited");
    }

    #[test]
    fn equal_labels_selectors_and_ports_are_stored_once() {
        let pod = |name: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: a, labels: {{app: web, tier: fe}}}}\n\
                 spec: {{containers: [{{name: c, ports: [{{name: http, containerPort: 80}}]}}]}}\n"
            )
        };
        let policy = |name: &str| {
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: a}}\n\
                 spec: {{podSelector: {{matchLabels: {{app: web}}}}, ingress: [{{from: [{{podSelector: {{matchLabels: {{app: web}}}}}}]}}]}}\n"
            )
        };
        let text = [pod("p1"), pod("p2"), policy("n1"), policy("n2")].join("---\n");
        let mut l = super::Loader::new();
        l.add_bytes("x.yaml", text.as_bytes());
        let loaded = l.finish();
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let [p1, p2] = &loaded.cluster.pods[..] else { panic!("two pods") };
        assert!(p1.labels.same_allocation(&p2.labels));
        assert!(std::sync::Arc::ptr_eq(&p1.ports, &p2.ports));
        let [n1, n2] = &loaded.cluster.policies[..] else { panic!("two policies") };
        assert_eq!(n1.pod_selector, n2.pod_selector);
        assert!(n1.pod_selector.same_allocation(&n2.pod_selector));
        let crate::model::Peer::Selectors { pods: Some(peer), .. } = &n1.ingress[0].peers[0] else { panic!() };
        assert!(peer.same_allocation(&n1.pod_selector), "an equal selector anywhere is the same copy");
        assert!(std::sync::Arc::ptr_eq(&loaded.cluster.pods[0].source.origin.file, &n2.origin.file));
    }
}
