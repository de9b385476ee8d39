//! Live clusters: Namespaces, Pods, NetworkPolicies, Nodes, the admin network policy CRDs
//! (`policy.networking.k8s.io`: ClusterNetworkPolicy `v1alpha2`, AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy `v1alpha1`), Calico's objects (Tier, NetworkPolicy, GlobalNetworkPolicy,
//! NetworkSet, GlobalNetworkSet, HostEndpoint, the staged policies StagedNetworkPolicy, StagedGlobalNetworkPolicy
//! and StagedKubernetesNetworkPolicy, and the ServiceAccounts its selectors see) and Cilium's policies
//! (CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy, `cilium.io/v2`), its CiliumCIDRGroups (`cilium.io/v2`,
//! or `v2alpha1` before Cilium 1.18) and the Services, EndpointSlices (`discovery.k8s.io/v1`) and Endpoints its
//! policies name, read from a Kubernetes API server with kube-rs, instead of manifest files. The kinds are one
//! table, [`Kind`]; the CRD kinds are read through kube's dynamic API ([`DynamicObject`]), the others through
//! k8s-openapi's types.
//!
//! Calico's kinds are read from its API server's group `projectcalico.org/v3` when the cluster serves it (the
//! objects as users wrote them), else from its CRDs' group `crd.projectcalico.org/v1` ([`CalicoApi`], found once
//! by discovery, `GET /apis`). Where neither group is served, neither Calico's kinds nor ServiceAccounts (which only
//! Calico's selectors read) are asked for: they are absent, logged at debug level. Cilium's kinds are read where
//! the same discovery finds `cilium.io/v2` ([`Apis`]), and so are Services, EndpointSlices and Endpoints (only
//! Cilium's policies read them, and they are the busiest kinds of a cluster); without it they are absent alike.
//! CiliumCIDRGroups are read from the first of `cilium.io/v2` and `cilium.io/v2alpha1` whose resources list them
//! (`GET /apis/cilium.io/VERSION`); where neither does, their CRD is not installed and they are absent. Antrea's
//! kinds (Tier, ClusterGroup, Group, ClusterNetworkPolicy, NetworkPolicy of `crd.antrea.io/v1beta1`) are read where
//! the same discovery finds that group, and Services then too (`serviceReference` groups stand for their Pods).
//!
//! - One-shot commands (`query`, `explain`, `matrix`, `lint`, `describe` with `--kubeconfig`, `--context` or
//!   `--in-cluster`): [`snapshot`] lists every kind (paginated, one consistent list per kind) and loads them.
//! - `netpol serve`: [`run`] lists and watches every kind with kube-runtime's watcher (bookmarks, a relist
//!   after `410 Gone`, retries with backoff after errors) and keeps one working [`Engine`] current with
//!   [`Engine::update`]. Events are applied in batches (whatever arrives within [`BATCH_WINDOW`] of the first);
//!   each batch that changes the model is handed to a [`Publish`] (the server's state, in `netpol-server`) as
//!   the next immutable model revision. This crate knows nothing of the server.
//!
//! A cluster without a CRD (the API server answers `404` to its list) is normal: that kind is absent, which is
//! logged once (at info level for the admin policy kinds, at debug level for Calico's); it is neither an error nor
//! watched (a CRD installed later is seen after a restart). Any other error (`403 Forbidden`: RBAC does not grant
//! the kind) is an error for a one-shot command and retried with backoff by the watch.
//!
//! Every object goes through the file loader's validation ([`Loader::add_value`]) with an origin naming it,
//! `cluster:pods/NAMESPACE/NAME` or `cluster:adminnetworkpolicies/NAME` (document 0; Calico's NetworkPolicies are
//! `cluster:networkpolicies.projectcalico.org/NAMESPACE/NAME`, whichever group they came from), so an invalid
//! object is reported and left out exactly as in a file. Pods in phase `Succeeded` or `Failed` are left out: they have no network any more, and their IP may
//! already belong to another pod. Pods without an IP yet (`Pending`) are loaded as a manifest pod without
//! `status.podIP` is: selectors match them, they cannot be named by address.
//!
//! [`Store`] is the pure part: it turns watch events into [`Change`]s and drops events that do not change the
//! model (most pod updates only touch status conditions; a relist finds most objects at the resourceVersion
//! already applied), so the engine sees only real changes. Objects are decoded one at a time there, so what the
//! loader derives across objects is kept by [`Change`]s and the store: a Calico policy's tier goes by name
//! ([`Change::PutCalicoPolicy`]), and its warning that no Tier object declares its tier is reported exactly while no
//! valid Tier of that name is held (staged policies alike). A Cilium object is lowered to several policies: its
//! changes are [`CiliumChange`]s, applied to the cluster by [`apply_cilium`] (the core's update has no change for
//! them), and the loader's warning on Cilium policies is reported once, at the first one held. A Cilium object's
//! entities (`host`, `remote-node`, `kube-apiserver`, `cluster`) and `toServices` depend on the whole cluster: the
//! store loads Cilium objects with them unresolved ([`Loader::defer_cilium_refs`]), and the applier resolves them
//! on the live cluster whenever it changes ([`netpol_core::load::resolve_cilium_refs`]: after the first list, and
//! for any batch once they exist, Node and Pod changes included), reporting that resolution's warnings with the
//! store's diagnostics. Services, EndpointSlices and Endpoints are [`Change::PutService`] and
//! [`Change::PutServiceEndpoints`] (and their deletions): `toServices` and `kube-apiserver` (the endpoints of
//! Service `default/kubernetes`) are resolved again on the cluster with them, and a batch of nothing else
//! recompiles only when a Cilium policy then resolves differently ([`Engine::update`]: endpoints change all the
//! time). A CiliumCIDRGroup is a network set of its own kind, its changes [`CidrGroupChange`]s applied by
//! [`apply_cidr_group`] (the core's network set changes would take a GlobalNetworkSet of the same name for it);
//! `cidrGroupRef` and `cidrGroupSelector` select it when the engine is compiled again. Staged policies go to
//! `Cluster::staged` ([`Change::PutStagedPolicy`]): they never change the enforced engine; each published
//! [`Update`] carries their staged view compiled (`Update::staged`). The loader's warning that a staged `Delete` names
//! no loaded policy depends on the enforced policies of the moment and is not reported by the watch (a one-shot list
//! reports it). Antrea's objects are lowered across objects (a policy's Tier and groups, `Self` rules split per
//! namespace): the store decodes each one alone ([`Loader::defer_antrea`]) into a [`Change::PutAntrea`], the core
//! admits and lowers them all again on the changed cluster (`netpol_core::load::relower_antrea`, from
//! `Engine::update` and `apply_to_cluster`), and the applier reports what admitting them together says
//! (`netpol_core::load::antrea_diagnostics`: a policy whose Tier does not exist, ...) with the store's diagnostics.

#![forbid(unsafe_code)]

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::Hasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints as K8sEndpoints, Node as K8sNode, Service as K8sService};
use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod, ServiceAccount as K8sServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice as K8sEndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy as K8sNetworkPolicy;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Config;
use netpol_core::compile::Engine;
use netpol_core::load::{Diagnostic, Loaded, Loader, Severity};
use netpol_core::model::{Origin, PolicyKind, PolicyTier, Scope};
use netpol_core::update::{Change, UpdateStats};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

/// The client type of [`Source::client`] (kube-rs's), for [`run`].
pub use kube::Client;

/// How long the applier keeps collecting events after the first one of a batch.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Most events applied in one batch.
const MAX_BATCH: usize = 20_000;
/// Page size of list calls.
const PAGE_SIZE: u32 = 500;

/// Where to find the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A kubeconfig: `paths` (merged in order, as `KUBECONFIG=a:b` is; empty: `$KUBECONFIG` or
    /// `~/.kube/config`) and a context (default: its current context).
    Kubeconfig { paths: Vec<PathBuf>, context: Option<String> },
    /// The service account of the pod this runs in (`KUBERNETES_SERVICE_HOST`, the mounted token and CA).
    InCluster,
}

impl Source {
    /// The client, and the API server's URL (for messages).
    pub async fn client(&self) -> anyhow::Result<(Client, String)> {
        let config = match self {
            Source::InCluster => Config::incluster().context(
                "cannot use the in-cluster configuration (is this running in a pod with a service account?)",
            )?,
            Source::Kubeconfig { paths, context } => {
                let opts = KubeConfigOptions { context: context.clone(), ..Default::default() };
                let mut merged: Option<Kubeconfig> = None;
                for p in paths {
                    let kc = Kubeconfig::read_from(p)
                        .with_context(|| format!("cannot read the kubeconfig `{}`", p.display()))?;
                    merged = Some(match merged {
                        None => kc,
                        Some(m) => m.merge(kc).with_context(|| format!("cannot merge `{}`", p.display()))?,
                    });
                }
                match merged {
                    Some(kc) => Config::from_custom_kubeconfig(kc, &opts).await,
                    None => Config::from_kubeconfig(&opts).await,
                }
                .context("invalid kubeconfig")?
            }
        };
        let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
        let client = Client::try_from(config).context("cannot create the Kubernetes client")?;
        Ok((client, server))
    }
}

/// The kinds netpol reads from a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    NetworkPolicy,
    Namespace,
    Node,
    ClusterNetworkPolicy,
    AdminNetworkPolicy,
    BaselineAdminNetworkPolicy,
    /// Calico's Tier.
    Tier,
    /// Calico's (namespaced) NetworkPolicy.
    CalicoNetworkPolicy,
    GlobalNetworkPolicy,
    NetworkSet,
    GlobalNetworkSet,
    /// Read only where Calico is: only its selectors see service accounts.
    ServiceAccount,
    /// Calico's StagedNetworkPolicy (namespaced): never enforced, kept in `Cluster::staged`.
    StagedNetworkPolicy,
    /// Calico's StagedGlobalNetworkPolicy: never enforced, kept in `Cluster::staged`.
    StagedGlobalNetworkPolicy,
    /// Calico's StagedKubernetesNetworkPolicy (namespaced): never enforced, kept in `Cluster::staged`.
    StagedKubernetesNetworkPolicy,
    /// Calico's HostEndpoint: a node's interfaces, which GlobalNetworkPolicies guard.
    HostEndpoint,
    /// Cilium's CiliumNetworkPolicy (`cilium.io/v2`, namespaced).
    CiliumNetworkPolicy,
    /// Cilium's CiliumClusterwideNetworkPolicy (`cilium.io/v2`).
    CiliumClusterwideNetworkPolicy,
    /// Cilium's CiliumCIDRGroup (`cilium.io/v2`, or `cilium.io/v2alpha1` before Cilium 1.18: [`Apis::cidr_groups`]):
    /// a network set that only CIDR rules' `cidrGroupRef`/`cidrGroupSelector` select.
    CiliumCidrGroup,
    /// Read only where Cilium or Antrea is: what Cilium's `toServices` and Antrea's `serviceReference` groups name.
    Service,
    /// `discovery.k8s.io/v1`, read only where Cilium is: the addresses behind a Service (`toServices`, and the
    /// `kube-apiserver` entity: Service `default/kubernetes`).
    EndpointSlice,
    /// `v1`, read only where Cilium is: as [`Kind::EndpointSlice`], the older API.
    Endpoints,
    /// Antrea's Tier (`crd.antrea.io/v1beta1`, cluster-scoped).
    AntreaTier,
    /// Antrea's ClusterGroup (`crd.antrea.io/v1beta1`, cluster-scoped).
    AntreaClusterGroup,
    /// Antrea's Group (`crd.antrea.io/v1beta1`, namespaced).
    AntreaGroup,
    /// Antrea's ClusterNetworkPolicy (ACNP, `crd.antrea.io/v1beta1`, cluster-scoped).
    AntreaClusterNetworkPolicy,
    /// Antrea's NetworkPolicy (ANNP, `crd.antrea.io/v1beta1`, namespaced).
    AntreaNetworkPolicy,
}

/// What serves a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Served {
    /// The API server itself: a `404` is an error.
    BuiltIn,
    /// A CRD a cluster may not have (`policy.networking.k8s.io`): a `404` for its list means "none".
    Crd,
    /// Calico: its API server's group or its CRDs' ([`CalicoApi`]); a `404` means "none".
    Calico,
    /// The API server, but read only where Calico is ([`Kind::ServiceAccount`]).
    WithCalico,
    /// Cilium's CRDs (`cilium.io/v2`): read where discovery finds the group; a `404` means "none".
    Cilium,
    /// The API server, but read only where Cilium is (Services and their endpoints, which only Cilium's policies
    /// read).
    WithCilium,
    /// Antrea's CRDs (`crd.antrea.io/v1beta1`): read where discovery finds the group; a `404` means "none".
    Antrea,
}

/// What netpol needs to know of a kind.
struct KindInfo {
    kind: Kind,
    /// The `kind` field.
    name: &'static str,
    /// The `apiVersion` field: `GROUP/VERSION`, or `VERSION` for the core group (Calico's kinds: its CRDs', or
    /// its API server's: [`CalicoApi`]).
    api_version: &'static str,
    /// The resource name in URLs.
    resource_name: &'static str,
    /// How netpol names the kind in resourceVersions, metrics and object origins: the resource name, with
    /// Calico's group where Kubernetes has a kind of the same name (`networkpolicies.projectcalico.org`).
    plural: &'static str,
    namespaced: bool,
    served: Served,
    /// Loading order: namespaces, nodes, pods, then the policies.
    load_rank: u8,
}

const CALICO_CRD_GROUP: &str = "crd.projectcalico.org";
const CALICO_API_GROUP: &str = "projectcalico.org";
const CILIUM_GROUP: &str = "cilium.io";
const CILIUM_API_VERSION: &str = "cilium.io/v2";
/// Where CiliumCIDRGroup was served before Cilium 1.18 (which serves it at [`CILIUM_API_VERSION`] too).
const CILIUM_V2ALPHA1: &str = "cilium.io/v2alpha1";
const ANTREA_GROUP: &str = "crd.antrea.io";
const ANTREA_API_VERSION: &str = "crd.antrea.io/v1beta1";

const fn antrea_kind(
    kind: Kind,
    name: &'static str,
    resource_name: &'static str,
    plural: &'static str,
    namespaced: bool,
    load_rank: u8,
) -> KindInfo {
    KindInfo {
        kind,
        name,
        api_version: ANTREA_API_VERSION,
        resource_name,
        plural,
        namespaced,
        served: Served::Antrea,
        load_rank,
    }
}

const fn calico_kind(
    kind: Kind,
    name: &'static str,
    resource_name: &'static str,
    plural: &'static str,
    namespaced: bool,
    load_rank: u8,
) -> KindInfo {
    KindInfo {
        kind,
        name,
        api_version: "crd.projectcalico.org/v1",
        resource_name,
        plural,
        namespaced,
        served: Served::Calico,
        load_rank,
    }
}

/// Every kind, in the order of [`Kind`]'s variants (and of [`Kind::ALL`]).
const KINDS: [KindInfo; Kind::COUNT] = [
    KindInfo {
        kind: Kind::Pod,
        name: "Pod",
        api_version: "v1",
        resource_name: "pods",
        plural: "pods",
        namespaced: true,
        served: Served::BuiltIn,
        load_rank: 2,
    },
    KindInfo {
        kind: Kind::NetworkPolicy,
        name: "NetworkPolicy",
        api_version: "networking.k8s.io/v1",
        resource_name: "networkpolicies",
        plural: "networkpolicies",
        namespaced: true,
        served: Served::BuiltIn,
        load_rank: 3,
    },
    KindInfo {
        kind: Kind::Namespace,
        name: "Namespace",
        api_version: "v1",
        resource_name: "namespaces",
        plural: "namespaces",
        namespaced: false,
        served: Served::BuiltIn,
        load_rank: 0,
    },
    KindInfo {
        kind: Kind::Node,
        name: "Node",
        api_version: "v1",
        resource_name: "nodes",
        plural: "nodes",
        namespaced: false,
        served: Served::BuiltIn,
        load_rank: 1,
    },
    KindInfo {
        kind: Kind::ClusterNetworkPolicy,
        name: "ClusterNetworkPolicy",
        api_version: "policy.networking.k8s.io/v1alpha2",
        resource_name: "clusternetworkpolicies",
        plural: "clusternetworkpolicies",
        namespaced: false,
        served: Served::Crd,
        load_rank: 4,
    },
    KindInfo {
        kind: Kind::AdminNetworkPolicy,
        name: "AdminNetworkPolicy",
        api_version: "policy.networking.k8s.io/v1alpha1",
        resource_name: "adminnetworkpolicies",
        plural: "adminnetworkpolicies",
        namespaced: false,
        served: Served::Crd,
        load_rank: 5,
    },
    KindInfo {
        kind: Kind::BaselineAdminNetworkPolicy,
        name: "BaselineAdminNetworkPolicy",
        api_version: "policy.networking.k8s.io/v1alpha1",
        resource_name: "baselineadminnetworkpolicies",
        plural: "baselineadminnetworkpolicies",
        namespaced: false,
        served: Served::Crd,
        load_rank: 6,
    },
    calico_kind(Kind::Tier, "Tier", "tiers", "tiers", false, 8),
    calico_kind(
        Kind::CalicoNetworkPolicy,
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicies.projectcalico.org",
        true,
        11,
    ),
    calico_kind(
        Kind::GlobalNetworkPolicy,
        "GlobalNetworkPolicy",
        "globalnetworkpolicies",
        "globalnetworkpolicies",
        false,
        12,
    ),
    calico_kind(Kind::NetworkSet, "NetworkSet", "networksets", "networksets", true, 9),
    calico_kind(Kind::GlobalNetworkSet, "GlobalNetworkSet", "globalnetworksets", "globalnetworksets", false, 10),
    KindInfo {
        kind: Kind::ServiceAccount,
        name: "ServiceAccount",
        api_version: "v1",
        resource_name: "serviceaccounts",
        plural: "serviceaccounts",
        namespaced: true,
        served: Served::WithCalico,
        load_rank: 7,
    },
    calico_kind(
        Kind::StagedNetworkPolicy,
        "StagedNetworkPolicy",
        "stagednetworkpolicies",
        "stagednetworkpolicies",
        true,
        13,
    ),
    calico_kind(
        Kind::StagedGlobalNetworkPolicy,
        "StagedGlobalNetworkPolicy",
        "stagedglobalnetworkpolicies",
        "stagedglobalnetworkpolicies",
        false,
        14,
    ),
    calico_kind(
        Kind::StagedKubernetesNetworkPolicy,
        "StagedKubernetesNetworkPolicy",
        "stagedkubernetesnetworkpolicies",
        "stagedkubernetesnetworkpolicies",
        true,
        15,
    ),
    calico_kind(Kind::HostEndpoint, "HostEndpoint", "hostendpoints", "hostendpoints", false, 16),
    KindInfo {
        kind: Kind::CiliumNetworkPolicy,
        name: "CiliumNetworkPolicy",
        api_version: CILIUM_API_VERSION,
        resource_name: "ciliumnetworkpolicies",
        plural: "ciliumnetworkpolicies",
        namespaced: true,
        served: Served::Cilium,
        load_rank: 17,
    },
    KindInfo {
        kind: Kind::CiliumClusterwideNetworkPolicy,
        name: "CiliumClusterwideNetworkPolicy",
        api_version: CILIUM_API_VERSION,
        resource_name: "ciliumclusterwidenetworkpolicies",
        plural: "ciliumclusterwidenetworkpolicies",
        namespaced: false,
        served: Served::Cilium,
        load_rank: 18,
    },
    KindInfo {
        kind: Kind::CiliumCidrGroup,
        name: "CiliumCIDRGroup",
        api_version: CILIUM_API_VERSION,
        resource_name: "ciliumcidrgroups",
        plural: "ciliumcidrgroups",
        namespaced: false,
        served: Served::Cilium,
        load_rank: 19,
    },
    KindInfo {
        kind: Kind::Service,
        name: "Service",
        api_version: "v1",
        resource_name: "services",
        plural: "services",
        namespaced: true,
        served: Served::WithCilium,
        load_rank: 20,
    },
    KindInfo {
        kind: Kind::EndpointSlice,
        name: "EndpointSlice",
        api_version: "discovery.k8s.io/v1",
        resource_name: "endpointslices",
        plural: "endpointslices",
        namespaced: true,
        served: Served::WithCilium,
        load_rank: 21,
    },
    KindInfo {
        kind: Kind::Endpoints,
        name: "Endpoints",
        api_version: "v1",
        resource_name: "endpoints",
        plural: "endpoints",
        namespaced: true,
        served: Served::WithCilium,
        load_rank: 22,
    },
    // Tiers before groups before policies: admission takes a policy's Tier (and a group's children) first.
    antrea_kind(Kind::AntreaTier, "Tier", "tiers", "tiers.crd.antrea.io", false, 23),
    antrea_kind(Kind::AntreaClusterGroup, "ClusterGroup", "clustergroups", "clustergroups", false, 24),
    antrea_kind(Kind::AntreaGroup, "Group", "groups", "groups", true, 25),
    antrea_kind(
        Kind::AntreaClusterNetworkPolicy,
        "ClusterNetworkPolicy",
        "clusternetworkpolicies",
        "clusternetworkpolicies.crd.antrea.io",
        false,
        26,
    ),
    antrea_kind(
        Kind::AntreaNetworkPolicy,
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicies.crd.antrea.io",
        true,
        27,
    ),
];

// Every entry is at the index of its kind.
const _: () = {
    let mut i = 0;
    while i < KINDS.len() {
        assert!(KINDS[i].kind as usize == i, "the kind table is out of order");
        i += 1;
    }
};

impl Kind {
    /// How many kinds there are.
    pub const COUNT: usize = 28;

    /// In the order of revision reports.
    pub const ALL: [Kind; Kind::COUNT] = [
        Kind::Pod,
        Kind::NetworkPolicy,
        Kind::Namespace,
        Kind::Node,
        Kind::ClusterNetworkPolicy,
        Kind::AdminNetworkPolicy,
        Kind::BaselineAdminNetworkPolicy,
        Kind::Tier,
        Kind::CalicoNetworkPolicy,
        Kind::GlobalNetworkPolicy,
        Kind::NetworkSet,
        Kind::GlobalNetworkSet,
        Kind::ServiceAccount,
        Kind::StagedNetworkPolicy,
        Kind::StagedGlobalNetworkPolicy,
        Kind::StagedKubernetesNetworkPolicy,
        Kind::HostEndpoint,
        Kind::CiliumNetworkPolicy,
        Kind::CiliumClusterwideNetworkPolicy,
        Kind::CiliumCidrGroup,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Endpoints,
        Kind::AntreaTier,
        Kind::AntreaClusterGroup,
        Kind::AntreaGroup,
        Kind::AntreaClusterNetworkPolicy,
        Kind::AntreaNetworkPolicy,
    ];

    fn info(self) -> &'static KindInfo {
        &KINDS[self.index()]
    }

    /// How netpol names the kind in resourceVersions, metrics and object origins: `pods`, `networkpolicies`,
    /// `adminnetworkpolicies`, `tiers`, ...; Calico's NetworkPolicies are `networkpolicies.projectcalico.org`
    /// (whichever of Calico's groups they are read from).
    pub fn plural(self) -> &'static str {
        self.info().plural
    }

    /// The resource name in URLs: `pods`, `networkpolicies` (Kubernetes' and Calico's), ...
    pub fn resource_name(self) -> &'static str {
        self.info().resource_name
    }

    /// The `kind` field: `Pod`, `AdminNetworkPolicy`, ...
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The `apiVersion` field: `v1`, `policy.networking.k8s.io/v1alpha1`, ...; Calico's kinds:
    /// `crd.projectcalico.org/v1` (see [`Kind::api_version_in`]).
    pub fn api_version(self) -> &'static str {
        self.info().api_version
    }

    /// The `apiVersion` of the kind where Calico's API is `calico`: Calico's kinds are served by its API server
    /// (`projectcalico.org/v3`) or its CRDs (`crd.projectcalico.org/v1`).
    pub fn api_version_in(self, calico: Option<CalicoApi>) -> &'static str {
        match (self.info().served, calico) {
            (Served::Calico, Some(CalicoApi::ApiServer)) => "projectcalico.org/v3",
            _ => self.api_version(),
        }
    }

    /// The `apiVersion` the kind is read under on a cluster that serves `apis`: Calico's kinds as
    /// [`Kind::api_version_in`] says, CiliumCIDRGroups where discovery found them ([`Apis::cidr_groups`]).
    pub fn api_version_for(self, apis: Apis) -> &'static str {
        match (self, apis.cidr_groups) {
            (Kind::CiliumCidrGroup, Some(v)) => v,
            _ => self.api_version_in(apis.calico),
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        self.info().namespaced
    }

    /// Whether a CRD serves this kind (the admin policy kinds, Calico's, Cilium's), so that a cluster may not have
    /// it (a `404` for its list).
    pub fn is_optional(self) -> bool {
        matches!(self.info().served, Served::Crd | Served::Calico | Served::Cilium | Served::Antrea)
    }

    /// Whether the kind is one of Antrea's (read where the cluster serves `crd.antrea.io/v1beta1`).
    pub fn is_antrea(self) -> bool {
        self.info().served == Served::Antrea
    }

    /// Whether the kind is read only where the cluster serves `cilium.io/v2`: Cilium's kinds, and Services,
    /// EndpointSlices and Endpoints (which only Cilium's policies read).
    pub fn is_cilium(self) -> bool {
        matches!(self.info().served, Served::Cilium | Served::WithCilium)
    }

    /// Whether the kind is one of Cilium's policies (an object lowered to several policies: [`CiliumChange`]).
    fn is_cilium_policy(self) -> bool {
        matches!(self, Kind::CiliumNetworkPolicy | Kind::CiliumClusterwideNetworkPolicy)
    }

    /// Whether the kind is read only where the cluster serves one of Calico's API groups: Calico's kinds, and
    /// ServiceAccounts (which only Calico's selectors see).
    pub fn is_calico(self) -> bool {
        matches!(self.info().served, Served::Calico | Served::WithCalico)
    }

    /// The kind for kube's dynamic API, on a cluster that serves `apis`.
    fn api_resource(self, apis: Apis) -> ApiResource {
        let i = self.info();
        let api_version = self.api_version_for(apis);
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        ApiResource {
            group: group.to_string(),
            version: version.to_string(),
            api_version: api_version.to_string(),
            kind: i.name.to_string(),
            plural: i.resource_name.to_string(),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which of Calico's API groups netpol reads Calico's kinds from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalicoApi {
    /// Calico's API server (`projectcalico.org/v3`, an aggregated API): the objects as users wrote them. Read
    /// whenever the cluster serves it.
    ApiServer,
    /// Calico's CRDs (`crd.projectcalico.org/v1`), where there is no API server.
    Crds,
}

impl CalicoApi {
    /// `projectcalico.org/v3` or `crd.projectcalico.org/v1`.
    pub fn api_version(self) -> &'static str {
        match self {
            CalicoApi::ApiServer => "projectcalico.org/v3",
            CalicoApi::Crds => "crd.projectcalico.org/v1",
        }
    }
}

/// Which optional API groups the cluster serves, found once by discovery (`GET /apis`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Apis {
    /// Where Calico's kinds are read from; `None`: the cluster serves none of Calico's groups.
    pub calico: Option<CalicoApi>,
    /// Whether the cluster serves Cilium's `cilium.io/v2` (its CRDs are installed).
    pub cilium: bool,
    /// Where the cluster serves CiliumCIDRGroups: `cilium.io/v2` (Cilium 1.18 on), else `cilium.io/v2alpha1`;
    /// `None` where neither has them (no Cilium, or its CIDR group CRD is not installed).
    pub cidr_groups: Option<&'static str>,
    /// Whether the cluster serves Antrea's `crd.antrea.io/v1beta1` (its CRDs are installed).
    pub antrea: bool,
}

impl Apis {
    /// Whether `kind` is asked for: the kinds of a group discovery did not find are not.
    pub fn reads(self, kind: Kind) -> bool {
        match kind.info().served {
            Served::Calico | Served::WithCalico => self.calico.is_some(),
            Served::Cilium if kind == Kind::CiliumCidrGroup => self.cilium && self.cidr_groups.is_some(),
            // Antrea's `serviceReference` groups stand for the Pods their Service selects.
            Served::WithCilium if kind == Kind::Service => self.cilium || self.antrea,
            Served::Cilium | Served::WithCilium => self.cilium,
            Served::Antrea => self.antrea,
            Served::BuiltIn | Served::Crd => true,
        }
    }
}

/// Which optional API groups the cluster serves (discovery: `GET /apis`). Calico: its API server's group when it
/// has one, else its CRDs'; `None` without Calico. Cilium: `cilium.io/v2`, and where its CiliumCIDRGroups are
/// (`GET /apis/cilium.io/v2`, then `v2alpha1`: [`cidr_group_version`]). Should the API server refuse discovery
/// (an error status, which RBAC's default `system:discovery` makes unlikely), Calico's CRDs and Cilium's are tried
/// (each list then says whether its kind is served); an error reaching it is returned.
async fn discover(client: &Client) -> Result<Apis, kube::Error> {
    let serves = |groups: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList, name: &str, version: &str| {
        groups.groups.iter().any(|g| g.name == name && g.versions.iter().any(|v| v.version == version))
    };
    match client.list_api_groups().await {
        Ok(groups) => {
            let calico = if serves(&groups, CALICO_API_GROUP, "v3") {
                Some(CalicoApi::ApiServer)
            } else if serves(&groups, CALICO_CRD_GROUP, "v1") {
                Some(CalicoApi::Crds)
            } else {
                tracing::debug!(
                    "the cluster serves none of Calico's API groups ({CALICO_API_GROUP}, {CALICO_CRD_GROUP}): \
                     Calico's kinds and service accounts are not read"
                );
                None
            };
            let cilium = serves(&groups, CILIUM_GROUP, "v2");
            let cidr_groups = if cilium {
                let versions = [CILIUM_API_VERSION, CILIUM_V2ALPHA1]
                    .into_iter()
                    .filter(|v| v.split_once('/').is_some_and(|(_, version)| serves(&groups, CILIUM_GROUP, version)));
                cidr_group_version(client, versions).await?
            } else {
                tracing::debug!(
                    "the cluster does not serve {CILIUM_API_VERSION}: Cilium's policies and CIDR groups, and the \
                     Services, EndpointSlices and Endpoints they name, are not read"
                );
                None
            };
            let antrea = serves(&groups, ANTREA_GROUP, "v1beta1");
            if !antrea {
                tracing::debug!("the cluster does not serve {ANTREA_API_VERSION}: Antrea's objects are not read");
            }
            Ok(Apis { calico, cilium, cidr_groups, antrea })
        }
        Err(kube::Error::Api(status)) => {
            tracing::info!(
                code = status.code,
                "the cluster refused to list its API groups ({}): trying Calico's and Cilium's CRDs",
                status.message
            );
            Ok(Apis {
                calico: Some(CalicoApi::Crds),
                cilium: true,
                cidr_groups: Some(CILIUM_API_VERSION),
                antrea: true,
            })
        }
        Err(e) => Err(e),
    }
}

/// The first of `versions` (of `cilium.io`, which the cluster serves) whose resources include CiliumCIDRGroups
/// (`GET /apis/cilium.io/VERSION`); `None` when none does (the CRD is not installed). A version whose discovery
/// the API server refuses (an error status) is passed over; an error reaching it is returned.
async fn cidr_group_version(
    client: &Client,
    versions: impl Iterator<Item = &'static str>,
) -> Result<Option<&'static str>, kube::Error> {
    let plural = Kind::CiliumCidrGroup.resource_name();
    for version in versions {
        match client.list_api_group_resources(version).await {
            Ok(list) if list.resources.iter().any(|r| r.name == plural) => return Ok(Some(version)),
            Ok(_) => {}
            Err(kube::Error::Api(status)) => {
                tracing::info!(code = status.code, "the cluster refused to list {version}: {}", status.message);
            }
            Err(e) => return Err(e),
        }
    }
    tracing::debug!("the cluster serves no {plural} ({CILIUM_API_VERSION}, {CILIUM_V2ALPHA1}): there are none");
    Ok(None)
}

/// One object read from the API server, as JSON for the loader.
#[derive(Clone, Debug)]
pub struct Object {
    pub kind: Kind,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
    pub resource_version: String,
    /// The object; `None` when it is left out of the model (a pod in phase `Succeeded` or `Failed`).
    pub value: Option<Value>,
}

type Key = (Kind, String, String);

impl Object {
    /// From the JSON of an object. Without `kind` and `apiVersion` (as the API server sends the items of a list
    /// and kube's dynamic objects keep them), they are those of `kind` ([`Kind::api_version`]).
    pub fn from_value(kind: Kind, value: Value) -> Object {
        Object::read(kind, kind.api_version(), value)
    }

    /// [`Object::from_value`], read under `api_version` (where Calico's kinds come from its API server).
    fn read(kind: Kind, api_version: &str, mut value: Value) -> Object {
        if let Some(map) = value.as_object_mut() {
            map.entry("apiVersion").or_insert_with(|| api_version.into());
            map.entry("kind").or_insert_with(|| kind.name().into());
        }
        let meta = |f: &str| value.pointer(&format!("/metadata/{f}")).and_then(Value::as_str).unwrap_or("").to_string();
        let (namespace, name, resource_version) = (meta("namespace"), meta("name"), meta("resourceVersion"));
        let terminated = kind == Kind::Pod
            && matches!(value.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
        let namespace = if kind.is_namespaced() { namespace } else { String::new() };
        Object { kind, namespace, name, resource_version, value: (!terminated).then_some(value) }
    }

    fn new<K: Serialize>(kind: Kind, api_version: &str, o: &K) -> Result<Object, serde_json::Error> {
        Ok(Object::read(kind, api_version, serde_json::to_value(o)?))
    }

    /// `cluster:pods/NAMESPACE/NAME`, `cluster:namespaces/NAME`, `cluster:adminnetworkpolicies/NAME`,
    /// `cluster:networkpolicies.projectcalico.org/NAMESPACE/NAME`: the "file" of the object's origin.
    pub fn source_name(&self) -> String {
        source_name(self.kind, &self.namespace, &self.name)
    }

    fn key(&self) -> Key {
        (self.kind, self.namespace.clone(), self.name.clone())
    }
}

fn source_name(kind: Kind, namespace: &str, name: &str) -> String {
    if !kind.is_namespaced() {
        format!("cluster:{}/{name}", kind.plural())
    } else {
        format!("cluster:{}/{namespace}/{name}", kind.plural())
    }
}

fn origin(name: String) -> Origin {
    Origin { file: name.into(), document: 0, item: None }
}

/// Loads objects through the file loader (namespaces, then nodes, pods, and the policies kind by kind, each
/// sorted by namespace and name).
pub fn load_objects(objects: impl IntoIterator<Item = Object>) -> Loaded {
    load_objects_with(objects, Loader::new())
}

/// [`load_objects`] with `loader`'s settings (the watch's store defers Cilium's placeholders: the applier resolves
/// them on the live cluster).
fn load_objects_with(objects: impl IntoIterator<Item = Object>, loader: Loader) -> Loaded {
    let objects: Vec<Object> = objects.into_iter().filter(|o| o.value.is_some()).collect();
    load_sorted(objects, |o| (o.kind, &o.namespace, &o.name), |o| o.value, loader)
}

/// Loads `objects` in the loader's order (namespaces, then nodes, pods, and the policies kind by kind, each sorted
/// by namespace and name), each one's JSON value made by `value` only when its turn comes.
fn load_sorted<T>(
    mut objects: Vec<T>,
    key: impl Fn(&T) -> (Kind, &str, &str),
    value: impl Fn(T) -> Option<Value>,
    mut loader: Loader,
) -> Loaded {
    objects.sort_by(|a, b| {
        let ((ka, na, ma), (kb, nb, mb)) = (key(a), key(b));
        (ka.info().load_rank, na, ma).cmp(&(kb.info().load_rank, nb, mb))
    });
    for o in objects {
        let (kind, namespace, name) = key(&o);
        let name = source_name(kind, namespace, name);
        if let Some(v) = value(o) {
            loader.add_value(v, origin(name));
        }
    }
    loader.finish()
}

/// An object held while the first lists come in: its JSON kept as compact text (a pod's parsed JSON value takes
/// several kilobytes, its text a few hundred bytes), parsed again when its turn comes to be loaded. Until every
/// kind's first list is complete the store holds them all.
struct Listed {
    kind: Kind,
    namespace: String,
    name: String,
    resource_version: String,
    /// `None`: left out of the model (as [`Object::value`]).
    json: Option<Box<str>>,
}

impl Listed {
    fn new(o: Object) -> Listed {
        let json = o.value.map(|v| v.to_string().into_boxed_str());
        Listed { kind: o.kind, namespace: o.namespace, name: o.name, resource_version: o.resource_version, json }
    }

    /// The object's JSON value again (its own text: it parses).
    fn value(&self) -> Option<Value> {
        self.json.as_deref().map(|j| serde_json::from_str(j).unwrap_or(Value::Null))
    }

    fn object(self) -> Object {
        let value = self.value();
        Object {
            kind: self.kind,
            namespace: self.namespace,
            name: self.name,
            resource_version: self.resource_version,
            value,
        }
    }

    fn key(&self) -> Key {
        (self.kind, self.namespace.clone(), self.name.clone())
    }
}

/// Whether a resourceVersion is newer than another: numerically when both are numbers (etcd's revisions),
/// otherwise the later one seen wins (resourceVersions are opaque to clients).
fn newer(new: &str, old: &str) -> bool {
    match (new.parse::<u64>(), old.parse::<u64>()) {
        (Ok(n), Ok(o)) => n > o,
        _ => true,
    }
}

fn bump(slot: &mut Option<String>, rv: &str) {
    if rv.is_empty() {
        return;
    }
    if slot.as_deref().is_none_or(|old| newer(rv, old)) {
        *slot = Some(rv.to_string());
    }
}

/// `pods=…,networkpolicies=…,namespaces=…,nodes=…,…` (`-` for a kind without any resourceVersion yet); kinds the
/// cluster does not serve (`absent`) are left out.
fn versions_text(v: &[Option<String>; Kind::COUNT], absent: &[bool; Kind::COUNT]) -> String {
    let mut s = String::new();
    for k in Kind::ALL.into_iter().filter(|k| !absent[k.index()]) {
        let sep = if s.is_empty() { "" } else { "," };
        let _ = write!(s, "{sep}{}={}", k.plural(), v[k.index()].as_deref().unwrap_or("-"));
    }
    s
}

// ---- one-shot ----

/// One consistent list of each kind.
pub struct Snapshot {
    pub server: String,
    pub objects: Vec<Object>,
    /// Where Calico's kinds were read from; `None`: the cluster serves none of Calico's groups.
    pub calico: Option<CalicoApi>,
    /// Whether the cluster serves Cilium's `cilium.io/v2` (without it, Cilium's kinds, and the Services,
    /// EndpointSlices and Endpoints only they read, are [`Snapshot::absent`]).
    pub cilium: bool,
    /// Where CiliumCIDRGroups were read from ([`Apis::cidr_groups`]); `None`: they are [`Snapshot::absent`].
    pub cidr_groups: Option<&'static str>,
    /// The list resourceVersion of each kind, by [`Kind::index`].
    versions: [Option<String>; Kind::COUNT],
    /// The kinds the cluster does not serve (CRDs not installed), by [`Kind::index`].
    absent: [bool; Kind::COUNT],
}

impl Snapshot {
    /// `pods=…,networkpolicies=…,namespaces=…,nodes=…,…`: the list resourceVersions (kinds the cluster does not
    /// serve left out).
    pub fn resource_versions(&self) -> String {
        versions_text(&self.versions, &self.absent)
    }

    /// The kinds the cluster does not serve: CRDs that are not installed (Calico's and Cilium's where discovery
    /// does not find their groups, and ServiceAccounts, not read where the cluster serves none of Calico's groups,
    /// and Services, EndpointSlices and Endpoints, not read where it does not serve Cilium's).
    pub fn absent(&self) -> Vec<Kind> {
        Kind::ALL.into_iter().filter(|k| self.absent[k.index()]).collect()
    }
}

fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 410)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a watcher error says that the API server does not serve the kind (`404`).
fn watch_not_found(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) => is_not_found(e),
        watcher::Error::WatchError(s) => s.code == 404,
        watcher::Error::WatchFailed(_) | watcher::Error::NoResourceVersion => false,
    }
}

/// Logs once that the cluster does not serve `kind` (the optional groups it serves are `apis`): at info level for
/// the admin policy kinds, at debug level for Calico's and Cilium's (most clusters have neither).
fn log_absent(kind: Kind, apis: Apis) {
    let api_version = kind.api_version_for(apis);
    match (kind.info().served, apis.calico) {
        (Served::Cilium | Served::WithCilium, _) if !apis.cilium => tracing::debug!(
            kind = kind.plural(),
            "the cluster does not serve {CILIUM_API_VERSION}: {} are not read",
            kind.plural()
        ),
        (Served::Cilium, _) if kind == Kind::CiliumCidrGroup && apis.cidr_groups.is_none() => tracing::debug!(
            kind = kind.plural(),
            "the cluster serves no {} ({CILIUM_API_VERSION}, {CILIUM_V2ALPHA1}; not installed): there are none",
            kind.resource_name()
        ),
        (Served::Antrea, _) if !apis.antrea => tracing::debug!(
            kind = kind.plural(),
            "the cluster does not serve {ANTREA_API_VERSION}: {} are not read",
            kind.plural()
        ),
        (Served::Crd, _) => tracing::info!(
            kind = kind.plural(),
            api_version,
            "the cluster does not serve {} (its CustomResourceDefinition is not installed): there are none",
            kind.plural()
        ),
        (Served::WithCalico, None) | (Served::Calico, None) => tracing::debug!(
            kind = kind.plural(),
            "the cluster serves none of Calico's API groups: {} are not read",
            kind.plural()
        ),
        _ => tracing::debug!(
            kind = kind.plural(),
            api_version,
            "the cluster does not serve {} of {api_version} (not installed): there are none",
            kind.resource_name()
        ),
    }
}

/// Lists every object of one kind, page by page; a list whose continue token expired (410) starts over. `None`
/// when the cluster does not serve an optional kind (a CRD that is not installed). Calico's kinds are read where
/// `apis` says.
async fn list_all<K>(api: &Api<K>, kind: Kind, apis: Apis) -> anyhow::Result<Option<(Vec<Object>, Option<String>)>>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let mut attempts = 0;
    'again: loop {
        attempts += 1;
        let mut objects = Vec::new();
        let mut version = None;
        let mut lp = ListParams::default().limit(PAGE_SIZE);
        loop {
            let page = match api.list(&lp).await {
                Ok(p) => p,
                Err(e) if is_gone(&e) && attempts < 3 => {
                    tracing::info!(kind = kind.plural(), "list expired (410 Gone): listing again");
                    continue 'again;
                }
                Err(e) if is_not_found(&e) && kind.is_optional() => {
                    log_absent(kind, apis);
                    return Ok(None);
                }
                Err(e) => {
                    let what = format!("{} ({})", kind.plural(), kind.api_version_for(apis));
                    return Err(e).with_context(|| format!("cannot list {what}"));
                }
            };
            if version.is_none() {
                version = page.metadata.resource_version.clone().filter(|s| !s.is_empty());
            }
            let api_version = kind.api_version_for(apis);
            for item in &page.items {
                let o = Object::new(kind, api_version, item).with_context(|| format!("cannot convert a {kind:?}"))?;
                objects.push(o);
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => return Ok(Some((objects, version))),
            }
        }
    }
}

/// [`list_all`] of one kind: k8s-openapi's types for the built-in kinds, kube's dynamic API for the CRDs. `None`
/// also for the kinds of a group discovery did not find (`apis`).
async fn list_kind(client: &Client, kind: Kind, apis: Apis) -> anyhow::Result<Option<(Vec<Object>, Option<String>)>> {
    if !apis.reads(kind) {
        log_absent(kind, apis);
        return Ok(None);
    }
    let c = client.clone();
    match kind {
        Kind::Pod => list_all(&Api::<K8sPod>::all(c), kind, apis).await,
        Kind::NetworkPolicy => list_all(&Api::<K8sNetworkPolicy>::all(c), kind, apis).await,
        Kind::Namespace => list_all(&Api::<K8sNamespace>::all(c), kind, apis).await,
        Kind::Node => list_all(&Api::<K8sNode>::all(c), kind, apis).await,
        Kind::ServiceAccount => list_all(&Api::<K8sServiceAccount>::all(c), kind, apis).await,
        Kind::Service => list_all(&Api::<K8sService>::all(c), kind, apis).await,
        Kind::EndpointSlice => list_all(&Api::<K8sEndpointSlice>::all(c), kind, apis).await,
        Kind::Endpoints => list_all(&Api::<K8sEndpoints>::all(c), kind, apis).await,
        Kind::ClusterNetworkPolicy
        | Kind::AdminNetworkPolicy
        | Kind::BaselineAdminNetworkPolicy
        | Kind::Tier
        | Kind::CalicoNetworkPolicy
        | Kind::GlobalNetworkPolicy
        | Kind::NetworkSet
        | Kind::GlobalNetworkSet
        | Kind::StagedNetworkPolicy
        | Kind::StagedGlobalNetworkPolicy
        | Kind::StagedKubernetesNetworkPolicy
        | Kind::HostEndpoint
        | Kind::CiliumNetworkPolicy
        | Kind::CiliumClusterwideNetworkPolicy
        | Kind::CiliumCidrGroup
        | Kind::AntreaTier
        | Kind::AntreaClusterGroup
        | Kind::AntreaGroup
        | Kind::AntreaClusterNetworkPolicy
        | Kind::AntreaNetworkPolicy => {
            list_all(&Api::<DynamicObject>::all_with(c, &kind.api_resource(apis)), kind, apis).await
        }
    }
}

/// Lists every kind of the cluster; the CRD kinds it does not serve are [`Snapshot::absent`].
pub async fn snapshot(source: &Source) -> anyhow::Result<Snapshot> {
    let (client, server) = source.client().await?;
    let apis = discover(&client)
        .await
        .context("cannot list the API groups")
        .with_context(|| format!("reading the cluster at {server}"))?;
    let lists = futures::future::try_join_all(Kind::ALL.map(|k| list_kind(&client, k, apis)))
        .await
        .with_context(|| format!("reading the cluster at {server}"))?;
    let mut versions: [Option<String>; Kind::COUNT] = Default::default();
    let mut absent = [false; Kind::COUNT];
    let mut objects = Vec::new();
    for (kind, list) in Kind::ALL.into_iter().zip(lists) {
        match list {
            Some((list, version)) => {
                versions[kind.index()] = version;
                objects.extend(list);
            }
            None => absent[kind.index()] = true,
        }
    }
    Ok(Snapshot {
        server,
        objects,
        calico: apis.calico,
        cilium: apis.cilium,
        cidr_groups: apis.cidr_groups,
        versions,
        absent,
    })
}

/// [`snapshot`] on a new single-threaded runtime, for the synchronous commands. Returns the loaded cluster and
/// the line to print on stderr (`answered from SERVER at resourceVersion pods=… networkpolicies=… namespaces=…
/// nodes=… …`, without the kinds the cluster does not serve, then where Calico's objects were read from if the
/// cluster has Calico).
pub fn snapshot_blocking(source: &Source) -> anyhow::Result<(Loaded, String)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    let snap = rt.block_on(snapshot(source))?;
    let terminated = snap.objects.iter().filter(|o| o.value.is_none()).count();
    let line = format!(
        "answered from {} at resourceVersion {}{}{}",
        snap.server,
        snap.resource_versions().replace(',', " "),
        match snap.calico {
            Some(api) => format!(" (Calico's objects from {})", api.api_version()),
            None => String::new(),
        },
        if terminated > 0 { format!(" ({terminated} terminated pod(s) left out)") } else { String::new() }
    );
    Ok((load_objects(snap.objects), line))
}

// ---- the store: watch events -> changes ----

/// One watch event of one kind (kube-runtime's `watcher::Event`, with the object converted).
#[derive(Clone, Debug)]
pub enum Event {
    /// A (re)list starts.
    Init,
    /// An object of the list.
    InitApply(Object),
    /// The list is complete: objects not in it are gone.
    InitDone,
    /// The cluster does not serve the kind (its CRD is not installed): as an empty list, and the kind is left out
    /// of the resourceVersions.
    Absent,
    /// An object was added or modified.
    Apply(Object),
    Delete(Object),
}

/// What a batch of events amounts to.
#[derive(Default)]
pub struct Batch {
    /// Set by the event that completed the first full list of every kind: the whole cluster.
    pub initial: Option<Loaded>,
    /// Changes to apply after `initial` (or to the current engine), in order.
    pub changes: Vec<Change>,
    /// Changes to Cilium's policies, applied after `changes` ([`apply_cilium`]).
    pub cilium: Vec<CiliumChange>,
    /// Changes to Cilium's CIDR groups, applied after `changes` ([`apply_cidr_group`]).
    pub cidr_groups: Vec<CidrGroupChange>,
    /// Events that did not change the model.
    pub unchanged: u64,
    /// Whether the set of diagnostics (invalid objects) changed.
    pub diagnostics_changed: bool,
}

struct Entry {
    resource_version: String,
    /// A fingerprint of the model object; `None` when the object is invalid (left out of the model).
    model: Option<u64>,
    diagnostics: Vec<Diagnostic>,
    /// A Calico policy in a tier that is not built in: the tier's name and the loader's warning that no Tier
    /// object declares it, reported while the store holds no valid Tier of that name.
    tier_warning: Option<(String, Diagnostic)>,
}

/// One Cilium policy object (CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy) added, modified or deleted:
/// the policies the loader lowers it to (up to three per rule, in Cilium's tiers and the NetworkPolicy tier, with
/// the same kind and name: see `netpol_core::load`'s Cilium frontend), replaced together. `netpol_core::update` has
/// no change of its own for them ([`Change::PutPolicy`] holds one policy per kind, namespace and name), so the
/// applier applies these to the cluster itself and recompiles ([`apply_cilium`]), as the core does for any change
/// once the cluster has Cilium policies.
#[derive(Clone, Debug)]
pub struct CiliumChange {
    pub kind: PolicyKind,
    /// The namespace of a CiliumNetworkPolicy; `None` for a CiliumClusterwideNetworkPolicy.
    pub namespace: Option<String>,
    pub name: String,
    /// The object's policies as the loader reads the object alone, each with its tier when that is one of
    /// Cilium's own (`None`: the built-in tier its index names). Empty: the object is deleted, or now invalid.
    pub parts: Vec<(netpol_core::model::Policy, Option<netpol_core::model::TierDef>)>,
    /// The object's namespace as the loader declares it when no Namespace object does.
    pub implicit_namespace: Option<netpol_core::model::Namespace>,
}

impl CiliumChange {
    /// The change that takes every policy of the object `key` out.
    fn delete(key: &Key) -> CiliumChange {
        let kind = match key.0 {
            Kind::CiliumClusterwideNetworkPolicy => PolicyKind::CiliumClusterwideNetworkPolicy,
            _ => PolicyKind::CiliumNetworkPolicy,
        };
        let namespace = key.0.is_namespaced().then(|| key.1.clone());
        CiliumChange { kind, namespace, name: key.2.clone(), parts: Vec::new(), implicit_namespace: None }
    }

    /// The object's policies out of what loading it alone gave (`c`: that cluster).
    fn put(key: &Key, c: &mut netpol_core::model::Cluster) -> CiliumChange {
        let mut change = CiliumChange::delete(key);
        let tiers = &c.tiers;
        change.parts = std::mem::take(&mut c.policies)
            .into_iter()
            .filter(|p| p.kind.is_cilium())
            .map(|p| {
                let own = (p.tier.index() >= 3).then(|| tiers.get(p.tier.index()).cloned()).flatten();
                (p, own)
            })
            .collect();
        change.implicit_namespace = change
            .namespace
            .as_ref()
            .and_then(|n| c.namespaces.iter().find(|ns| ns.name == *n && ns.origin.is_none()).cloned());
        change
    }

    /// A fingerprint of everything the engine reads of the object's policies.
    fn fingerprint(&self) -> u64 {
        let parts: Vec<u64> =
            self.parts.iter().map(|(p, own)| cilium_part_fp(p, own.as_ref().map(|t| &*t.name))).collect();
        fingerprint(&parts)
    }
}

/// Applies a [`CiliumChange`] to a cluster: the object's policies replace those it had (none: they are gone),
/// in their tiers by name (Cilium's tiers are added as the loader adds them, and dropped, as the loader would not
/// have them, once no policy is in them); its namespace is created undeclared when no object declares it, and
/// goes again with its last policy when nothing else names it. The cluster then loads as the same objects from
/// files would (tested in `crates/netpol-kube/tests/it/cilium.rs`); an engine compiled from it answers as one.
pub fn apply_cilium(c: &mut netpol_core::model::Cluster, change: CiliumChange) {
    use netpol_core::model::{NsId, PolicyTier};
    let CiliumChange { kind, namespace, name, parts, implicit_namespace } = change;
    let ns = match &namespace {
        None => None,
        Some(n) => match c.namespace_id(n) {
            Some(id) => Some(id),
            // Nothing of it can be held in a namespace the cluster does not have.
            None if parts.is_empty() => return,
            None => {
                let declared = implicit_namespace.unwrap_or_else(|| {
                    let labels = netpol_core::selector::Labels::from_iter([(
                        netpol_core::load::NAMESPACE_NAME_LABEL,
                        n.as_str(),
                    )]);
                    netpol_core::model::Namespace { name: n.clone(), labels, origin: None }
                });
                c.namespaces.push(declared);
                Some(NsId::new(c.namespaces.len() - 1))
            }
        },
    };
    c.policies.retain(|p| !(p.kind == kind && p.name == name && p.ns() == ns));
    for (mut policy, own) in parts {
        if let Some(id) = ns {
            policy.scope = Scope::Namespace(id);
        }
        if let Some(tier) = own {
            let at = c.tiers.iter().skip(3).position(|t| t.name == tier.name && t.origin.is_none());
            let i = match at {
                Some(i) => i + 3,
                None => {
                    c.tiers.push(tier);
                    c.tiers.len() - 1
                }
            };
            policy.tier = PolicyTier::from_index(i);
        }
        c.policies.push(policy);
    }
    drop_unused_tiers(c);
    // A namespace only named (by this object): it stays while something is in it, as the loader would have it.
    if let Some(n) = namespace.filter(|n| c.namespace_id(n).is_some_and(|id| c.ns(id).origin.is_none())) {
        netpol_core::update::apply_to_cluster(c, Change::DeleteNamespace { name: n });
    }
}

/// One CiliumCIDRGroup added, modified or deleted. The loader reads it as a cluster-scoped network set labelled
/// with its name under `model::cilium_keys::CIDR_GROUP`, kept apart from Calico's GlobalNetworkSets of the same name
/// (another kind): `netpol_core::update`'s network set changes go by namespace and name alone, so the applier
/// applies these to the cluster itself ([`apply_cidr_group`]) and recompiles.
#[derive(Clone, Debug)]
pub struct CidrGroupChange {
    pub name: String,
    /// The group as the loader reads the object alone; `None`: deleted, or now invalid.
    pub set: Option<netpol_core::model::NetworkSet>,
}

/// Applies a [`CidrGroupChange`] to a cluster: the CIDR group of that name is replaced (or added, or deleted);
/// network sets of other kinds are left alone. The cluster then holds what loading the same objects from files
/// gives.
pub fn apply_cidr_group(c: &mut netpol_core::model::Cluster, change: CidrGroupChange) {
    let CidrGroupChange { name, set } = change;
    let at = c.network_sets.iter().position(|s| s.is_cidr_group() && s.name == name);
    match (at, set) {
        (Some(i), Some(set)) => c.network_sets[i] = set,
        (None, Some(set)) => c.network_sets.push(set),
        (Some(i), None) => {
            c.network_sets.remove(i);
        }
        (None, None) => {}
    }
}

/// Drops the undeclared tiers no policy is in (as the loader never has them), renumbering the policies' tiers.
fn drop_unused_tiers(c: &mut netpol_core::model::Cluster) {
    let mut used = vec![false; c.tiers.len()];
    for p in &c.policies {
        if let Some(u) = used.get_mut(p.tier.index()) {
            *u = true;
        }
    }
    let keep: Vec<bool> = c.tiers.iter().enumerate().map(|(i, t)| i < 3 || t.origin.is_some() || used[i]).collect();
    if keep.iter().all(|k| *k) {
        return;
    }
    c.retain_tiers(&keep);
}

/// A fingerprint of one policy of a Cilium object: its tier by name when it is one of Cilium's own (`own`), else
/// by index (a built-in tier, whatever Calico calls it).
fn cilium_part_fp(p: &netpol_core::model::Policy, own: Option<&str>) -> u64 {
    policy_fp_in(p, &own.map_or_else(|| format!("#{}", p.tier.index()), str::to_string))
}

impl Entry {
    fn new(resource_version: String) -> Entry {
        Entry { resource_version, model: None, diagnostics: Vec::new(), tier_warning: None }
    }
}

#[derive(Default)]
struct KindState {
    /// Between `Init` and `InitDone`: the objects listed so far.
    listing: Option<Vec<Listed>>,
    /// Until the first full list of every kind: this kind's objects.
    initial: Option<HashMap<(String, String), Listed>>,
    synced: bool,
    /// Highest resourceVersion applied.
    resource_version: Option<String>,
    /// The cluster does not serve the kind ([`Event::Absent`]).
    absent: bool,
}

/// The objects the model holds, by kind, namespace and name, with their resourceVersions: turns watch events
/// into [`Change`]s. Pure: no I/O.
#[derive(Default)]
pub struct Store {
    kinds: [KindState; Kind::COUNT],
    entries: HashMap<Key, Entry>,
    built: bool,
}

struct FingerprintWriter<'a>(&'a mut DefaultHasher);

impl std::fmt::Write for FingerprintWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// A hash of everything the engine reads from a model object (its `Debug` form, which prints every field).
fn fingerprint(parts: &dyn std::fmt::Debug) -> u64 {
    let mut h = DefaultHasher::new();
    let _ = write!(FingerprintWriter(&mut h), "{parts:?}");
    h.finish()
}

fn pod_fp(p: &netpol_core::model::Pod) -> u64 {
    // Its node too: Cilium's `host` and `remote-node` are relative to the node a pod runs on.
    fingerprint(&(&p.labels, &p.ports, &p.ips, p.host_network, &p.service_account, &p.node))
}

fn policy_fp(p: &netpol_core::model::Policy) -> u64 {
    policy_fp_in(p, &p.tier)
}

/// A Calico policy's fingerprint: its tier by name (the index is the loader's of the moment).
fn calico_policy_fp(p: &netpol_core::model::Policy, tier: &str) -> u64 {
    policy_fp_in(p, &tier)
}

fn policy_fp_in(p: &netpol_core::model::Policy, tier: &dyn std::fmt::Debug) -> u64 {
    // A NetworkPolicy's namespace is in its key; a cluster-scoped policy's namespace selector is part of it.
    let scope = match &p.scope {
        Scope::Cluster(selector) => Some(selector),
        Scope::Namespace(_) => None,
    };
    let what = (&p.pod_selector, &p.calico_selector, &p.ingress, &p.egress, p.affects_ingress, p.affects_egress);
    fingerprint(&(p.kind, tier, p.order, scope, what))
}

fn is_calico_policy(p: &netpol_core::model::Policy) -> bool {
    matches!(p.kind, PolicyKind::CalicoNetworkPolicy | PolicyKind::GlobalNetworkPolicy)
}

/// The name of the tier `t` of cluster `c`.
fn tier_name(c: &netpol_core::model::Cluster, t: PolicyTier) -> String {
    c.tiers.get(t.index()).map_or_else(|| "default".to_string(), |t| t.name.clone())
}

fn tier_fp(t: &netpol_core::model::TierDef) -> u64 {
    fingerprint(&(&t.name, t.order, t.default_action))
}

fn network_set_fp(s: &netpol_core::model::NetworkSet) -> u64 {
    fingerprint(&(&s.labels, &s.nets))
}

fn host_endpoint_fp(h: &netpol_core::model::HostEndpoint) -> u64 {
    fingerprint(&(&h.node, &h.interface, &h.expected_ips, &h.labels, &h.profiles, &h.ports))
}

fn service_account_fp(a: &netpol_core::model::ServiceAccount) -> u64 {
    fingerprint(&a.labels)
}

fn service_fp(s: &netpol_core::model::Service) -> u64 {
    fingerprint(&(&s.labels, &s.selector))
}

fn service_endpoints_fp(e: &netpol_core::model::ServiceEndpoints) -> u64 {
    fingerprint(&(&e.service, &e.addresses))
}

/// Takes, out of what loading one Calico policy (or staged policy) alone gave, the loader's warning that no Tier
/// object declares its tier (alone, a policy in a tier that is not built in always has it): the store reports it
/// while it holds no Tier of that name.
fn take_tier_warning(loaded: &mut Loaded) -> Option<(String, Diagnostic)> {
    let c = &loaded.cluster;
    let tier = match (c.policies.last(), c.staged.last()) {
        (Some(p), _) => (p.tier.index() >= 3).then(|| tier_name(c, p.tier))?,
        (None, Some(s)) => staged_tier(c, s)?,
        (None, None) => return None,
    };
    let at = loaded.diagnostics.iter().rposition(is_tier_warning)?;
    Some((tier, loaded.diagnostics.remove(at)))
}

/// The tier a staged policy is in when it is not built in, by name.
fn staged_tier(c: &netpol_core::model::Cluster, s: &netpol_core::model::StagedPolicy) -> Option<String> {
    s.implicit_tier.clone().or_else(|| (s.policy.tier.index() >= 3).then(|| tier_name(c, s.policy.tier)))
}

/// A staged policy's fingerprint: its tier by name (a built-in one by index) and its namespace by name (its
/// scope is a placeholder until the staged view resolves it, and depends on what else is loaded).
fn staged_fp(c: &netpol_core::model::Cluster, s: &netpol_core::model::StagedPolicy) -> u64 {
    let p = &s.policy;
    let tier = staged_tier(c, s).unwrap_or_else(|| format!("#{}", p.tier.index()));
    let scope = match (&s.namespace, &p.scope) {
        (None, Scope::Cluster(selector)) => Some(selector),
        _ => None,
    };
    let what = (&p.pod_selector, &p.calico_selector, &p.ingress, &p.egress, p.affects_ingress, p.affects_egress);
    fingerprint(&(s.action, &s.namespace, p.kind, tier, p.order, scope, what))
}

/// The loader's warning that a staged `Delete` names no loaded policy. It depends on the enforced policies of the
/// moment, which a live cluster changes one at a time: the store does not report it (a one-shot list does).
fn is_staged_delete_warning(d: &Diagnostic) -> bool {
    d.severity == Severity::Warning
        && d.field.as_deref() == Some("metadata.name")
        && d.message.starts_with("stagedAction Delete")
}

fn is_staged(kind: Kind) -> bool {
    matches!(kind, Kind::StagedNetworkPolicy | Kind::StagedGlobalNetworkPolicy | Kind::StagedKubernetesNetworkPolicy)
}

/// The loader's warning on a Calico policy whose tier no Tier object declares (what it warns about `spec.tier`;
/// what the validator finds wrong there is an error).
fn is_tier_warning(d: &Diagnostic) -> bool {
    d.severity == Severity::Warning && d.field.as_deref() == Some("spec.tier")
}

/// Everything lowering reads of an Antrea object (not its origin).
fn antrea_fp(o: &netpol_core::model::AntreaObject) -> u64 {
    fingerprint(&o.content())
}

fn node_fp(n: &netpol_core::model::Node) -> u64 {
    fingerprint(&(&n.labels, &n.ips))
}

fn namespace_fp(n: &netpol_core::model::Namespace) -> u64 {
    fingerprint(&n.labels)
}

/// What deleting the object `key` changes in the model.
fn delete_change(key: &Key) -> Pending {
    let (kind, namespace, name) = key.clone();
    let change = match kind {
        Kind::CiliumNetworkPolicy | Kind::CiliumClusterwideNetworkPolicy => {
            return Pending::Cilium(CiliumChange::delete(key));
        }
        Kind::CiliumCidrGroup => return Pending::CidrGroup(CidrGroupChange { name, set: None }),
        Kind::Service => Change::DeleteService { namespace, name },
        Kind::EndpointSlice | Kind::Endpoints => Change::DeleteServiceEndpoints { kind: kind.name(), namespace, name },
        Kind::Pod => Change::DeletePod { namespace, name },
        Kind::NetworkPolicy => Change::DeletePolicy { namespace, name },
        Kind::Namespace => Change::DeleteNamespace { name },
        Kind::Node => Change::DeleteNode { name },
        Kind::ClusterNetworkPolicy => Change::DeleteClusterPolicy { kind: PolicyKind::ClusterNetworkPolicy, name },
        Kind::AdminNetworkPolicy => Change::DeleteClusterPolicy { kind: PolicyKind::AdminNetworkPolicy, name },
        Kind::BaselineAdminNetworkPolicy => {
            Change::DeleteClusterPolicy { kind: PolicyKind::BaselineAdminNetworkPolicy, name }
        }
        Kind::Tier => Change::DeleteTier { name },
        Kind::CalicoNetworkPolicy => Change::DeleteCalicoPolicy { namespace, name },
        Kind::GlobalNetworkPolicy => Change::DeleteClusterPolicy { kind: PolicyKind::GlobalNetworkPolicy, name },
        Kind::NetworkSet => Change::DeleteNetworkSet { namespace: Some(namespace), name },
        Kind::GlobalNetworkSet => Change::DeleteNetworkSet { namespace: None, name },
        Kind::ServiceAccount => Change::DeleteServiceAccount { namespace, name },
        Kind::StagedNetworkPolicy | Kind::StagedGlobalNetworkPolicy | Kind::StagedKubernetesNetworkPolicy => {
            let namespace = kind.is_namespaced().then_some(namespace);
            Change::DeleteStagedPolicy { kind: kind.name(), namespace, name }
        }
        Kind::HostEndpoint => Change::DeleteHostEndpoint { name },
        Kind::AntreaTier
        | Kind::AntreaClusterGroup
        | Kind::AntreaGroup
        | Kind::AntreaClusterNetworkPolicy
        | Kind::AntreaNetworkPolicy => {
            let namespace = kind.is_namespaced().then_some(namespace);
            Change::DeleteAntrea { kind: kind.name(), namespace, name }
        }
    };
    Pending::Core(change)
}

/// A change to the model, for the engine's update, for [`apply_cilium`] or for [`apply_cidr_group`].
enum Pending {
    Core(Change),
    Cilium(CiliumChange),
    CidrGroup(CidrGroupChange),
}

impl Batch {
    fn push(&mut self, change: Pending) {
        match change {
            Pending::Core(c) => self.changes.push(c),
            Pending::Cilium(c) => self.cilium.push(c),
            Pending::CidrGroup(c) => self.cidr_groups.push(c),
        }
    }
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// Whether the first full list of every kind has been loaded.
    pub fn synced(&self) -> bool {
        self.built
    }

    /// The highest resourceVersion applied per kind: `pods=…,networkpolicies=…,namespaces=…,nodes=…,…` (kinds
    /// the cluster does not serve left out).
    pub fn resource_versions(&self) -> String {
        let v: [Option<String>; Kind::COUNT] = std::array::from_fn(|i| self.kinds[i].resource_version.clone());
        let absent: [bool; Kind::COUNT] = std::array::from_fn(|i| self.kinds[i].absent);
        versions_text(&v, &absent)
    }

    /// The diagnostics of the objects held (invalid objects, and warnings), sorted by object.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut d: Vec<Diagnostic> = self
            .entries
            .values()
            .flat_map(|e| {
                let undeclared = e.tier_warning.as_ref().filter(|(tier, _)| !self.declares_tier(tier));
                e.diagnostics.iter().chain(undeclared.map(|(_, d)| d)).cloned()
            })
            .collect();
        d.sort_by(|a, b| a.origin.file.cmp(&b.origin.file));
        d
    }

    /// Whether a valid Tier object named `name` is held.
    fn declares_tier(&self, name: &str) -> bool {
        self.entries.get(&(Kind::Tier, String::new(), name.to_string())).is_some_and(|e| e.model.is_some())
    }

    /// Takes one event into account; the changes it causes are appended to `out`.
    pub fn event(&mut self, kind: Kind, ev: Event, out: &mut Batch) {
        let i = kind.index();
        match ev {
            Event::Init => {
                self.kinds[i].listing = Some(Vec::new());
                self.kinds[i].absent = false;
            }
            Event::Absent => {
                self.event(kind, Event::Init, out);
                self.event(kind, Event::InitDone, out);
                self.kinds[i].absent = true;
            }
            Event::InitApply(o) => match &mut self.kinds[i].listing {
                Some(l) => l.push(Listed::new(o)),
                // Not in a list (kube-runtime never does this): an update.
                None => self.event(kind, Event::Apply(o), out),
            },
            Event::InitDone => {
                let listed = self.kinds[i].listing.take().unwrap_or_default();
                let ks = &mut self.kinds[i];
                ks.synced = true;
                for o in &listed {
                    bump(&mut ks.resource_version, &o.resource_version);
                }
                if self.built {
                    self.relisted(kind, listed.into_iter().map(Listed::object).collect(), out);
                } else {
                    ks.initial = Some(listed.into_iter().map(|o| ((o.namespace.clone(), o.name.clone()), o)).collect());
                    self.try_build(out);
                }
            }
            Event::Apply(o) => {
                bump(&mut self.kinds[i].resource_version, &o.resource_version);
                if self.built {
                    self.put(o, out);
                } else {
                    let m = self.kinds[i].initial.get_or_insert_with(HashMap::new);
                    m.insert((o.namespace.clone(), o.name.clone()), Listed::new(o));
                }
            }
            Event::Delete(o) => {
                bump(&mut self.kinds[i].resource_version, &o.resource_version);
                if self.built {
                    self.remove(&o.key(), out);
                } else if let Some(m) = &mut self.kinds[i].initial {
                    m.remove(&(o.namespace, o.name));
                }
            }
        }
    }

    /// Once every kind has been listed: loads everything with one loader.
    fn try_build(&mut self, out: &mut Batch) {
        if self.built || !self.kinds.iter().all(|k| k.synced) {
            return;
        }
        self.built = true;
        let objects: Vec<Listed> = self
            .kinds
            .iter_mut()
            .filter_map(|k| k.initial.take())
            .flat_map(HashMap::into_values)
            .filter(|o| o.json.is_some())
            .collect();
        let mut by_source: HashMap<String, Key> = HashMap::new();
        // Calico's policies, to find the warning each would get were its tier not declared.
        let mut calico_policies: HashMap<String, Value> = HashMap::new();
        for o in &objects {
            let source = source_name(o.kind, &o.namespace, &o.name);
            self.entries.insert(o.key(), Entry::new(o.resource_version.clone()));
            if matches!(o.kind, Kind::CalicoNetworkPolicy | Kind::GlobalNetworkPolicy) || is_staged(o.kind) {
                if let Some(v) = o.value() {
                    calico_policies.insert(source.clone(), v);
                }
            }
            by_source.insert(source, o.key());
        }
        // Cilium's entities and `toServices` depend on the whole cluster as it changes: the applier resolves them
        // (and reports their warnings) on the live cluster.
        let mut loader = Loader::new();
        loader.defer_cilium_refs();
        // Antrea's objects likewise: the applier lowers them on the live cluster (and reports what admitting them
        // together says).
        loader.defer_antrea();
        // Each object's JSON value made when its turn comes: never all of them at once.
        let loaded = load_sorted(objects, |o| (o.kind, &o.namespace, &o.name), |o| o.value(), loader);
        let c = &loaded.cluster;
        let fp_of_policy = |p: &netpol_core::model::Policy| {
            if is_calico_policy(p) {
                calico_policy_fp(p, &tier_name(c, p.tier))
            } else {
                policy_fp(p)
            }
        };
        let fps = c
            .pods
            .iter()
            .map(|p| (&p.source.origin.file, pod_fp(p)))
            .chain(c.policies.iter().filter(|p| !p.kind.is_cilium()).map(|p| (&p.origin.file, fp_of_policy(p))))
            .chain(c.nodes.iter().map(|n| (&n.origin.file, node_fp(n))))
            .chain(c.namespaces.iter().filter_map(|n| n.origin.as_ref().map(|o| (&o.file, namespace_fp(n)))))
            .chain(c.tiers.iter().filter_map(|t| t.origin.as_ref().map(|o| (&o.file, tier_fp(t)))))
            .chain(c.network_sets.iter().map(|s| (&s.origin.file, network_set_fp(s))))
            .chain(
                c.service_accounts.iter().filter_map(|a| a.origin.as_ref().map(|o| (&o.file, service_account_fp(a)))),
            )
            .chain(c.staged.iter().map(|s| (&s.policy.origin.file, staged_fp(c, s))))
            .chain(c.host_endpoints.iter().map(|h| (&h.origin.file, host_endpoint_fp(h))))
            .chain(c.services.iter().map(|s| (&s.origin.file, service_fp(s))))
            .chain(c.service_endpoints.iter().map(|e| (&e.origin.file, service_endpoints_fp(e))))
            .chain(c.antrea.iter().map(|o| (&o.origin.file, antrea_fp(o))));
        for (file, fp) in fps {
            if let Some(e) = by_source.get(&**file).and_then(|k| self.entries.get_mut(k)) {
                e.model = Some(fp);
            }
        }
        // A Cilium object is all its policies (each of its rules lowered to up to three).
        let mut cilium_parts: HashMap<&str, Vec<u64>> = HashMap::new();
        for p in c.policies.iter().filter(|p| p.kind.is_cilium()) {
            let own = (p.tier.index() >= 3).then(|| c.tiers.get(p.tier.index()).map(|t| &*t.name)).flatten();
            cilium_parts.entry(&p.origin.file).or_default().push(cilium_part_fp(p, own));
        }
        for (file, parts) in cilium_parts {
            if let Some(e) = by_source.get(file).and_then(|k| self.entries.get_mut(k)) {
                e.model = Some(fingerprint(&parts));
            }
        }
        // Calico's policies (and staged policies) in tiers that are not built in: the warning that no Tier
        // declares the tier is held apart, to be reported while that holds.
        let tiered: HashMap<&str, String> = c
            .policies
            .iter()
            .filter(|p| is_calico_policy(p) && p.tier.index() >= 3)
            .map(|p| (&*p.origin.file, tier_name(c, p.tier)))
            .chain(c.staged.iter().filter_map(|s| Some((&*s.policy.origin.file, staged_tier(c, s)?))))
            .collect();
        for d in loaded.diagnostics.iter().filter(|d| !is_staged_delete_warning(d)) {
            log_diagnostic(d);
            let file = &*d.origin.file;
            if let Some(e) = by_source.get(file).and_then(|k| self.entries.get_mut(k)) {
                match tiered.get(file) {
                    Some(tier) if is_tier_warning(d) => e.tier_warning = Some((tier.clone(), d.clone())),
                    _ => e.diagnostics.push(d.clone()),
                }
            }
        }
        for (file, tier) in &tiered {
            let Some(e) = by_source.get(*file).and_then(|k| self.entries.get_mut(k)) else { continue };
            if e.tier_warning.is_none() {
                // Its tier is declared: the warning it would get otherwise, from the policy alone.
                let Some(v) = calico_policies.remove(*file) else { continue };
                let mut loader = Loader::new();
                loader.add_value(v, origin(file.to_string()));
                let mut alone = loader.finish();
                e.tier_warning = take_tier_warning(&mut alone).map(|(_, d)| (tier.clone(), d));
            }
        }
        out.diagnostics_changed |= !loaded.diagnostics.is_empty();
        out.initial = Some(loaded);
    }

    /// After a relist of one kind: puts what changed, deletes what is gone.
    fn relisted(&mut self, kind: Kind, listed: Vec<Object>, out: &mut Batch) {
        let mut present: HashSet<(String, String)> = HashSet::with_capacity(listed.len());
        for o in listed {
            present.insert((o.namespace.clone(), o.name.clone()));
            self.put(o, out);
        }
        let gone: Vec<Key> = self
            .entries
            .keys()
            .filter(|k| k.0 == kind && !present.contains(&(k.1.clone(), k.2.clone())))
            .cloned()
            .collect();
        for k in gone {
            self.remove(&k, out);
        }
    }

    /// An object added, modified, or listed again.
    fn put(&mut self, o: Object, out: &mut Batch) {
        let key = o.key();
        let Some(value) = o.value else {
            // A pod that terminated: gone from the network.
            self.remove(&key, out);
            return;
        };
        let prev = self.entries.get(&key);
        if prev.is_some_and(|e| e.resource_version == o.resource_version) {
            out.unchanged += 1;
            return;
        }
        let prev_model = prev.and_then(|e| e.model);
        let mut loader = Loader::new();
        // Alone, a Cilium object sees no Node and no Service: its placeholders are resolved on the live cluster.
        loader.defer_cilium_refs();
        // Alone, an Antrea object is decoded and validated only: the applier lowers them all on the live cluster.
        loader.defer_antrea();
        loader.add_value(value, origin(source_name(key.0, &key.1, &key.2)));
        let mut loaded = loader.finish();
        let tier_warning = match key.0 {
            Kind::CalicoNetworkPolicy
            | Kind::GlobalNetworkPolicy
            | Kind::StagedNetworkPolicy
            | Kind::StagedGlobalNetworkPolicy => take_tier_warning(&mut loaded),
            _ => None,
        };
        if is_staged(key.0) {
            // Alone, a staged Delete never finds its policy: not a warning here.
            loaded.diagnostics.retain(|d| !is_staged_delete_warning(d));
        }
        let cilium = (key.0.is_cilium_policy() && !loaded.diagnostics.iter().any(|d| d.severity == Severity::Error))
            .then(|| CiliumChange::put(&key, &mut loaded.cluster))
            .map(|change| (change.fingerprint(), Pending::Cilium(change)));
        let next = match key.0 {
            Kind::Pod => {
                loaded.cluster.pods.pop().map(|pod| (pod_fp(&pod), Change::PutPod { namespace: key.1.clone(), pod }))
            }
            // The namespace of a cluster-scoped policy is empty (and ignored).
            Kind::NetworkPolicy
            | Kind::ClusterNetworkPolicy
            | Kind::AdminNetworkPolicy
            | Kind::BaselineAdminNetworkPolicy => loaded
                .cluster
                .policies
                .pop()
                .map(|policy| (policy_fp(&policy), Change::PutPolicy { namespace: key.1.clone(), policy })),
            Kind::Node => loaded.cluster.nodes.pop().map(|node| (node_fp(&node), Change::PutNode(node))),
            Kind::Namespace => std::mem::take(&mut loaded.cluster.namespaces)
                .into_iter()
                .find(|n| n.origin.is_some())
                .map(|n| (namespace_fp(&n), Change::PutNamespace(n))),
            Kind::CalicoNetworkPolicy | Kind::GlobalNetworkPolicy => {
                let c = &mut loaded.cluster;
                c.policies.pop().map(|policy| {
                    let tier = tier_name(c, policy.tier);
                    let fp = calico_policy_fp(&policy, &tier);
                    (fp, Change::PutCalicoPolicy { namespace: key.1.clone(), policy, tier })
                })
            }
            Kind::Tier => std::mem::take(&mut loaded.cluster.tiers)
                .into_iter()
                .find(|t| t.origin.is_some())
                .map(|t| (tier_fp(&t), Change::PutTier(t))),
            Kind::NetworkSet | Kind::GlobalNetworkSet => loaded.cluster.network_sets.pop().map(|set| {
                let namespace = (key.0 == Kind::NetworkSet).then(|| key.1.clone());
                (network_set_fp(&set), Change::PutNetworkSet { namespace, set })
            }),
            Kind::ServiceAccount => std::mem::take(&mut loaded.cluster.service_accounts)
                .into_iter()
                .find(|a| a.origin.is_some())
                .map(|account| {
                    (service_account_fp(&account), Change::PutServiceAccount { namespace: key.1.clone(), account })
                }),
            Kind::StagedNetworkPolicy | Kind::StagedGlobalNetworkPolicy | Kind::StagedKubernetesNetworkPolicy => {
                let c = &mut loaded.cluster;
                c.staged.pop().map(|staged| (staged_fp(c, &staged), Change::PutStagedPolicy(staged)))
            }
            Kind::HostEndpoint => {
                loaded.cluster.host_endpoints.pop().map(|h| (host_endpoint_fp(&h), Change::PutHostEndpoint(h)))
            }
            Kind::Service => loaded.cluster.services.pop().map(|svc| (service_fp(&svc), Change::PutService(svc))),
            Kind::EndpointSlice | Kind::Endpoints => loaded
                .cluster
                .service_endpoints
                .pop()
                .map(|eps| (service_endpoints_fp(&eps), Change::PutServiceEndpoints(eps))),
            Kind::AntreaTier
            | Kind::AntreaClusterGroup
            | Kind::AntreaGroup
            | Kind::AntreaClusterNetworkPolicy
            | Kind::AntreaNetworkPolicy => loaded.cluster.antrea.pop().map(|o| (antrea_fp(&o), Change::PutAntrea(o))),
            Kind::CiliumNetworkPolicy | Kind::CiliumClusterwideNetworkPolicy | Kind::CiliumCidrGroup => None,
        };
        let cidr_group =
            (key.0 == Kind::CiliumCidrGroup).then(|| loaded.cluster.network_sets.pop()).flatten().map(|set| {
                (network_set_fp(&set), Pending::CidrGroup(CidrGroupChange { name: key.2.clone(), set: Some(set) }))
            });
        let next = next.map(|(fp, change)| (fp, Pending::Core(change))).or(cilium).or(cidr_group);
        let no_diagnostics: &[Diagnostic] = &[];
        let prev_warning = prev.and_then(|e| e.tier_warning.as_ref());
        if prev.map_or(no_diagnostics, |e| &e.diagnostics) != loaded.diagnostics.as_slice()
            || prev_warning != tier_warning.as_ref()
        {
            out.diagnostics_changed = true;
            loaded.diagnostics.iter().for_each(log_diagnostic);
            if let Some((_, d)) = tier_warning.as_ref().filter(|(tier, _)| !self.declares_tier(tier)) {
                log_diagnostic(d);
            }
        }
        // A Tier declared or no longer: the warnings of the policies in it come or go. The warning on Cilium
        // policies is said at the first one held.
        if (key.0 == Kind::Tier || key.0.is_cilium_policy()) && prev_model.is_some() != next.is_some() {
            out.diagnostics_changed = true;
        }
        let model = match (prev_model, next) {
            (Some(a), Some((b, _))) if a == b => {
                out.unchanged += 1;
                Some(b)
            }
            (_, Some((b, change))) => {
                out.push(change);
                Some(b)
            }
            (Some(_), None) => {
                // Now invalid: left out, as the loader leaves invalid objects out of files.
                out.push(delete_change(&key));
                None
            }
            (None, None) => {
                out.unchanged += 1;
                None
            }
        };
        let entry =
            Entry { resource_version: o.resource_version, model, diagnostics: loaded.diagnostics, tier_warning };
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, key: &Key, out: &mut Batch) {
        match self.entries.remove(key) {
            Some(e) => {
                out.diagnostics_changed |= !e.diagnostics.is_empty() || e.tier_warning.is_some();
                // A Tier no longer declared: the warnings of the policies in it come back.
                out.diagnostics_changed |= (key.0 == Kind::Tier || key.0.is_cilium_policy()) && e.model.is_some();
                if e.model.is_some() {
                    out.push(delete_change(key));
                } else {
                    out.unchanged += 1;
                }
            }
            None => out.unchanged += 1,
        }
    }
}

fn log_diagnostic(d: &Diagnostic) {
    match d.severity {
        Severity::Error => tracing::warn!("invalid object left out of the model: {d}"),
        Severity::Warning => tracing::info!("{d}"),
    }
}

// ---- metrics ----

/// Counters of the live source, for `/metrics`.
pub struct LiveMetrics {
    server: String,
    synced: AtomicBool,
    /// By kind: apply, delete, list (objects of a list).
    events: [[AtomicU64; 3]; Kind::COUNT],
    lists: [AtomicU64; Kind::COUNT],
    errors: [AtomicU64; Kind::COUNT],
    observed: Mutex<[Option<String>; Kind::COUNT]>,
    updates: AtomicU64,
    changes: AtomicU64,
    in_place: AtomicU64,
    recompiles: AtomicU64,
    unchanged: AtomicU64,
    restarts: AtomicU64,
}

impl LiveMetrics {
    pub fn new(server: &str) -> LiveMetrics {
        LiveMetrics {
            server: server.to_string(),
            synced: AtomicBool::new(false),
            events: Default::default(),
            lists: Default::default(),
            errors: Default::default(),
            observed: Mutex::new(Default::default()),
            updates: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            in_place: AtomicU64::new(0),
            recompiles: AtomicU64::new(0),
            unchanged: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
        }
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn event(&self, kind: Kind, ev: &Event) {
        let k = kind.index();
        let (slot, obj) = match ev {
            Event::Apply(o) => (Some(0), Some(o)),
            Event::Delete(o) => (Some(1), Some(o)),
            Event::InitApply(o) => (Some(2), Some(o)),
            Event::Init => {
                self.lists[k].fetch_add(1, Ordering::Relaxed);
                (None, None)
            }
            Event::InitDone | Event::Absent => (None, None),
        };
        if let Some(s) = slot {
            self.events[k][s].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(o) = obj {
            bump(&mut self.observed.lock().unwrap_or_else(|e| e.into_inner())[k], &o.resource_version);
        }
    }

    fn error(&self, kind: Kind) {
        self.errors[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn update(&self, changes: usize, st: UpdateStats) {
        self.updates.fetch_add(1, Ordering::Relaxed);
        self.changes.fetch_add(changes as u64, Ordering::Relaxed);
        self.in_place.fetch_add(st.in_place as u64, Ordering::Relaxed);
        self.recompiles.fetch_add(u64::from(st.recompiled), Ordering::Relaxed);
    }

    /// Appends the Prometheus text of these metrics.
    pub fn write(&self, s: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        fn metric(s: &mut String, name: &str, kind: &str, help: &str) {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
        }
        metric(s, "netpol_live_synced", "gauge", "1 once the first full list of every kind is loaded.");
        let _ = writeln!(s, "netpol_live_synced{{server=\"{}\"}} {}", self.server, u8::from(self.synced()));
        metric(s, "netpol_watch_events_total", "counter", "Watch events received, by kind and type.");
        for k in Kind::ALL {
            for (j, t) in ["apply", "delete", "list"].iter().enumerate() {
                let n = get(&self.events[k.index()][j]);
                let _ = writeln!(s, "netpol_watch_events_total{{kind=\"{}\",type=\"{t}\"}} {n}", k.plural());
            }
        }
        metric(s, "netpol_watch_lists_total", "counter", "Full lists by kind: the first one and every relist.");
        for k in Kind::ALL {
            let _ = writeln!(s, "netpol_watch_lists_total{{kind=\"{}\"}} {}", k.plural(), get(&self.lists[k.index()]));
        }
        metric(s, "netpol_watch_errors_total", "counter", "Watch and list errors by kind (each retried with backoff).");
        for k in Kind::ALL {
            let _ =
                writeln!(s, "netpol_watch_errors_total{{kind=\"{}\"}} {}", k.plural(), get(&self.errors[k.index()]));
        }
        metric(s, "netpol_watch_resource_version", "gauge", "Highest resourceVersion received, by kind.");
        let observed = self.observed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for k in Kind::ALL {
            if let Some(n) = observed[k.index()].as_deref().and_then(|v| v.parse::<u64>().ok()) {
                let _ = writeln!(s, "netpol_watch_resource_version{{kind=\"{}\"}} {n}", k.plural());
            }
        }
        metric(s, "netpol_live_updates_total", "counter", "Batches of changes applied to the engine.");
        let _ = writeln!(s, "netpol_live_updates_total {}", get(&self.updates));
        metric(s, "netpol_live_changes_total", "counter", "Object changes applied to the engine.");
        let _ = writeln!(s, "netpol_live_changes_total {}", get(&self.changes));
        metric(s, "netpol_live_changes_in_place_total", "counter", "Changes the engine applied in place.");
        let _ = writeln!(s, "netpol_live_changes_in_place_total {}", get(&self.in_place));
        metric(s, "netpol_live_recompiles_total", "counter", "Batches that recompiled the engine.");
        let _ = writeln!(s, "netpol_live_recompiles_total {}", get(&self.recompiles));
        metric(s, "netpol_live_events_unchanged_total", "counter", "Events that did not change the model.");
        let _ = writeln!(s, "netpol_live_events_unchanged_total {}", get(&self.unchanged));
        metric(s, "netpol_live_restarts_total", "counter", "Times the live source started over from a full list.");
        let _ = writeln!(s, "netpol_live_restarts_total {}", get(&self.restarts));
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }
}

// ---- serve: watch and apply ----

/// A model the live source publishes: the working engine after a batch of changes.
pub struct Update {
    /// The model, shared with the live source: a sink that drops it once used lets the next batch update it in
    /// place instead of copying it.
    pub engine: Arc<Engine>,
    /// The staged view of the engine's cluster (as if its Calico staged policies were enforced), compiled with
    /// it when the cluster has staged policies (`netpol_core::staged::staged_engine`), on the applier's thread.
    pub staged: Option<Engine>,
    /// Seconds spent applying the batch (or compiling the first full list).
    pub compile_seconds: f64,
    /// The diagnostics of the objects held (invalid objects), as [`Store::diagnostics`].
    pub diagnostics: Vec<Diagnostic>,
    /// The resourceVersions the engine reflects: `pods=…,networkpolicies=…,namespaces=…,nodes=…,…`.
    pub resource_versions: String,
    /// When the batch's first event was received from its watch (what "from the API event" latencies count from).
    pub received: Option<Instant>,
}

/// Reports a Warning Event on Node `node` (in namespace `default`, where a node's events live, as the kubelet's),
/// from `component` on that node: `kubectl describe node NODE` and `kubectl get events` show it. The Event is named
/// after the node and `reason` (`NODE.netpol.REASON`, lowercased) and replaced when it exists, so a condition that
/// comes back is one Event whose count grows.
pub async fn node_warning(
    client: &Client,
    node: &str,
    component: &str,
    reason: &str,
    message: &str,
) -> kube::Result<()> {
    use k8s_openapi::api::core::v1::{Event as K8sEvent, EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
    let api: Api<K8sEvent> = Api::namespaced(client.clone(), "default");
    let name = format!("{node}.netpol.{}", reason.to_ascii_lowercase());
    let now = k8s_openapi::jiff::Timestamp::now();
    let existing = api.get_opt(&name).await?;
    let count = existing.as_ref().and_then(|e| e.count).unwrap_or(0) + 1;
    let first = existing.as_ref().and_then(|e| e.first_timestamp.clone()).unwrap_or(Time(now));
    let event = K8sEvent {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some("default".into()),
            resource_version: existing.as_ref().and_then(|e| e.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some("Warning".into()),
        source: Some(EventSource { component: Some(component.into()), host: Some(node.into()) }),
        reporting_component: Some(component.into()),
        reporting_instance: Some(node.into()),
        first_timestamp: Some(first),
        last_timestamp: Some(Time(now)),
        event_time: existing.is_none().then_some(MicroTime(now)),
        action: Some("Check".into()),
        count: Some(count),
        ..K8sEvent::default()
    };
    match existing {
        Some(_) => api.replace(&name, &kube::api::PostParams::default(), &event).await.map(drop),
        None => api.create(&kube::api::PostParams::default(), &event).await.map(drop),
    }
}

/// Where [`run`] publishes models: `netpol serve`'s state implements it.
pub trait Publish: Send + Sync + 'static {
    /// Publishes `update` as the next model revision (atomically for readers) and returns that revision.
    fn publish(&self, update: Update) -> u64;
    /// Nothing the engine reads changed: the current model is as current as `resource_versions`.
    fn advance(&self, resource_versions: String);
}

/// Watches one kind and forwards its events; errors are counted and retried with kube-runtime's default
/// backoff (0.8 s doubling to 30 s, with jitter). An optional kind the cluster does not serve (`404`: its CRD is
/// not installed) is [`Event::Absent`], logged once, and no longer watched. Calico's kinds are read where
/// `apis` says.
async fn watch_kind<K>(api: Api<K>, kind: Kind, apis: Apis, tx: mpsc::Sender<(Kind, Event)>, metrics: Arc<LiveMetrics>)
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug + Send + 'static,
{
    let stream = watcher(api, watcher::Config::default().page_size(PAGE_SIZE)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let api_version = kind.api_version_for(apis);
    while let Some(item) = stream.next().await {
        let convert = |o: &K| Object::new(kind, api_version, o);
        let ev = match item {
            Ok(watcher::Event::Init) => Ok(Event::Init),
            Ok(watcher::Event::InitDone) => Ok(Event::InitDone),
            Ok(watcher::Event::InitApply(o)) => convert(&o).map(Event::InitApply),
            Ok(watcher::Event::Apply(o)) => convert(&o).map(Event::Apply),
            Ok(watcher::Event::Delete(o)) => convert(&o).map(Event::Delete),
            Err(e) if kind.is_optional() && watch_not_found(&e) => {
                log_absent(kind, apis);
                let _ = tx.send((kind, Event::Absent)).await;
                return;
            }
            Err(e) => {
                metrics.error(kind);
                tracing::warn!(kind = kind.plural(), "watch error, retrying with backoff: {e}");
                continue;
            }
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                metrics.error(kind);
                tracing::error!(kind = kind.plural(), "cannot convert an object: {e}");
                continue;
            }
        };
        if tx.send((kind, ev)).await.is_err() {
            return;
        }
    }
}

/// Starts [`watch_kind`] of one kind: k8s-openapi's types for the built-in kinds, kube's dynamic API for the CRDs.
/// A kind of a group discovery did not find (Calico's on a cluster without Calico, Cilium's without Cilium) is
/// [`Event::Absent`] at once.
fn spawn_watch(
    client: &Client,
    kind: Kind,
    apis: Apis,
    tx: &mpsc::Sender<(Kind, Event)>,
    metrics: &Arc<LiveMetrics>,
) -> tokio::task::JoinHandle<()> {
    let (c, tx, m) = (client.clone(), tx.clone(), metrics.clone());
    if !apis.reads(kind) {
        log_absent(kind, apis);
        return tokio::spawn(async move {
            let _ = tx.send((kind, Event::Absent)).await;
        });
    }
    match kind {
        Kind::Pod => tokio::spawn(watch_kind(Api::<K8sPod>::all(c), kind, apis, tx, m)),
        Kind::NetworkPolicy => tokio::spawn(watch_kind(Api::<K8sNetworkPolicy>::all(c), kind, apis, tx, m)),
        Kind::Namespace => tokio::spawn(watch_kind(Api::<K8sNamespace>::all(c), kind, apis, tx, m)),
        Kind::Node => tokio::spawn(watch_kind(Api::<K8sNode>::all(c), kind, apis, tx, m)),
        Kind::ServiceAccount => tokio::spawn(watch_kind(Api::<K8sServiceAccount>::all(c), kind, apis, tx, m)),
        Kind::Service => tokio::spawn(watch_kind(Api::<K8sService>::all(c), kind, apis, tx, m)),
        Kind::EndpointSlice => tokio::spawn(watch_kind(Api::<K8sEndpointSlice>::all(c), kind, apis, tx, m)),
        Kind::Endpoints => tokio::spawn(watch_kind(Api::<K8sEndpoints>::all(c), kind, apis, tx, m)),
        Kind::ClusterNetworkPolicy
        | Kind::AdminNetworkPolicy
        | Kind::BaselineAdminNetworkPolicy
        | Kind::Tier
        | Kind::CalicoNetworkPolicy
        | Kind::GlobalNetworkPolicy
        | Kind::NetworkSet
        | Kind::GlobalNetworkSet
        | Kind::StagedNetworkPolicy
        | Kind::StagedGlobalNetworkPolicy
        | Kind::StagedKubernetesNetworkPolicy
        | Kind::HostEndpoint
        | Kind::CiliumNetworkPolicy
        | Kind::CiliumClusterwideNetworkPolicy
        | Kind::CiliumCidrGroup
        | Kind::AntreaTier
        | Kind::AntreaClusterGroup
        | Kind::AntreaGroup
        | Kind::AntreaClusterNetworkPolicy
        | Kind::AntreaNetworkPolicy => {
            let api = Api::<DynamicObject>::all_with(c, &kind.api_resource(apis));
            tokio::spawn(watch_kind(api, kind, apis, tx, m))
        }
    }
}

/// Keeps the model `sink` publishes current with the cluster: watches every kind and applies their events in
/// batches, counting them in `metrics`. Runs until the task is dropped. Should applying a batch fail (a bug), it
/// starts over from a full list, the last published model still answering meanwhile. Which of Calico's API
/// groups to read, and whether Cilium's is served, is found by discovery at each start.
pub async fn run(sink: impl Publish, client: Client, metrics: Arc<LiveMetrics>) {
    run_with_cni(sink, client, metrics, None).await
}

/// [`run`], with engines for a CNI (`None`: auto, from the cluster's objects; see `netpol_core::cni`).
pub async fn run_with_cni(
    sink: impl Publish,
    client: Client,
    metrics: Arc<LiveMetrics>,
    cni: Option<netpol_core::cni::Cni>,
) {
    run_with_window(sink, client, metrics, cni, BATCH_WINDOW).await
}

/// [`run_with_cni`], a batch being whatever arrives within `window` of its first event (events that queued while
/// the previous batch was applied are all taken at once, whatever the window).
pub async fn run_with_window(
    sink: impl Publish,
    client: Client,
    metrics: Arc<LiveMetrics>,
    cni: Option<netpol_core::cni::Cni>,
    window: Duration,
) {
    loop {
        let apis = discover_apis(&client).await;
        if let Some(api) = apis.calico {
            tracing::info!(api_version = api.api_version(), "reading Calico's objects from {}", api.api_version());
        }
        if apis.cilium {
            tracing::info!(api_version = CILIUM_API_VERSION, "reading Cilium's policies from {CILIUM_API_VERSION}");
        }
        let (tx, mut rx) = mpsc::channel(4096);
        let tasks = Kind::ALL.map(|kind| spawn_watch(&client, kind, apis, &tx, &metrics));
        drop(tx);
        let result = apply_events(&sink, &mut rx, &metrics, cni, window).await;
        for t in &tasks {
            t.abort();
        }
        match result {
            Ok(()) => return,
            Err(e) => {
                metrics.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::error!("applying cluster events failed, starting over from a full list: {e:#}");
            }
        }
    }
}

/// [`discover`], retried with kube-runtime's default backoff (0.8 s doubling to 30 s) while the API server cannot
/// be reached.
async fn discover_apis(client: &Client) -> Apis {
    let mut backoff = kube::runtime::watcher::DefaultBackoff::default();
    loop {
        match discover(client).await {
            Ok(apis) => return apis,
            Err(e) => {
                let wait = backoff.next().unwrap_or(Duration::from_secs(30));
                tracing::warn!("cannot list the cluster's API groups, retrying in {wait:?}: {e}");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The state of the applier between batches: the store and, after the first full list, the working engine.
#[derive(Default)]
struct Applier {
    store: Store,
    /// Shared with the last [`Update`]: updated in place (no copy) when the sink no longer holds it.
    engine: Option<Arc<Engine>>,
    /// The warnings of the last resolution of Cilium's entities and `toServices` on the live cluster.
    ref_warnings: Vec<Diagnostic>,
    /// What admitting and lowering Antrea's objects together on the live cluster says (a policy whose Tier does
    /// not exist, duplicates, ...): it depends on the other objects, so it is found on the whole cluster.
    antrea_diagnostics: Vec<Diagnostic>,
    /// The CNI given (`--cni`), or `None` for auto.
    cni: Option<netpol_core::cni::Cni>,
}

/// What applying one batch produced.
struct Applied {
    /// The new model to publish, when something the engine reads changed.
    update: Option<Update>,
    /// The resourceVersions the engine reflects after the batch.
    versions: String,
    changes: usize,
    stats: UpdateStats,
    unchanged: u64,
    seconds: f64,
}

impl Applier {
    /// Takes a batch of events into account and updates the engine (CPU work: runs on a blocking thread).
    /// `None` until the first full list of every kind is complete.
    fn apply(&mut self, events: Vec<(Kind, Event)>, metrics: &LiveMetrics) -> Option<Applied> {
        let mut batch = Batch::default();
        for (kind, ev) in events {
            metrics.event(kind, &ev);
            self.store.event(kind, ev, &mut batch);
        }
        let t = Instant::now();
        let ref_warnings = self.ref_warnings.clone();
        let antrea_diagnostics = self.antrea_diagnostics.clone();
        let cni = self.cni;
        let first = batch.initial.take().map(|loaded| {
            let mut c = loaded.cluster;
            // Antrea's objects were only decoded: lowered here, on the whole cluster.
            self.antrea_diagnostics = netpol_core::load::relower_antrea(&mut c);
            self.ref_warnings = netpol_core::load::resolve_cilium_refs(&mut c);
            Arc::new(Engine::with_cni(c, cni))
        });
        let first_sync = first.is_some();
        let Some(engine) = first.or_else(|| self.engine.take()) else {
            metrics.unchanged.fetch_add(batch.unchanged, Ordering::Relaxed);
            return None;
        };
        let engine = self.engine.insert(engine);
        let changes = std::mem::take(&mut batch.changes);
        let cilium = std::mem::take(&mut batch.cilium);
        let cidr_groups = std::mem::take(&mut batch.cidr_groups);
        let n = changes.len() + cilium.len() + cidr_groups.len();
        let refs = netpol_core::load::has_cilium_refs(engine.cluster());
        // Services and their endpoints alone (a live cluster's endpoints change all the time): `Engine::update`
        // recompiles only when Cilium's references resolve differently.
        let services_only = cilium.is_empty()
            && cidr_groups.is_empty()
            && !changes.is_empty()
            && changes.iter().all(Change::is_service);
        let stats = if services_only {
            let stats = Arc::make_mut(engine).update(changes);
            if refs {
                // The warnings of the resolution on the cluster as it is now (what it lacks may change alone).
                let mut c = engine.cluster().clone();
                self.ref_warnings = netpol_core::load::resolve_cilium_refs(&mut c);
            }
            stats
        } else if !cilium.is_empty() || !cidr_groups.is_empty() || (refs && !changes.is_empty()) {
            // Cilium's policies and CIDR groups change the cluster here, and the engine is compiled once for the
            // whole batch (as `Engine::update` recompiles any batch once the cluster has Cilium policies), after
            // their entities and `toServices` are resolved on the cluster as it is now (its Nodes, pods' nodes,
            // Services and their endpoints).
            let mut c = engine.cluster().clone();
            for change in changes {
                netpol_core::update::apply_to_cluster(&mut c, change);
            }
            for change in cilium {
                apply_cilium(&mut c, change);
            }
            for change in cidr_groups {
                apply_cidr_group(&mut c, change);
            }
            // Antrea's objects beside Cilium's: lowered again on the cluster as it is now (a Cilium object may bring
            // a namespace, and takes the tiers no policy is in).
            if !c.antrea.is_empty() {
                let _ = netpol_core::load::relower_antrea(&mut c);
            }
            self.ref_warnings = netpol_core::load::resolve_cilium_refs(&mut c);
            let cni = engine.cni_choice();
            *engine = Arc::new(Engine::with_cni(c, cni));
            UpdateStats { in_place: 0, recompiled: true, recompile_cause: Some("Cilium policies") }
        } else if changes.is_empty() {
            UpdateStats::default()
        } else {
            Arc::make_mut(engine).update(changes)
        };
        if ref_warnings != self.ref_warnings {
            self.ref_warnings.iter().for_each(log_diagnostic);
        }
        // Antrea's objects were lowered again with the batch (`Engine::update`, `apply_to_cluster`): what admitting
        // them together says now.
        if !first_sync && n > 0 {
            self.antrea_diagnostics = netpol_core::load::antrea_diagnostics(engine.cluster());
        }
        if antrea_diagnostics != self.antrea_diagnostics {
            self.antrea_diagnostics.iter().for_each(log_diagnostic);
        }
        let publish = first_sync
            || n > 0
            || batch.diagnostics_changed
            || ref_warnings != self.ref_warnings
            || antrea_diagnostics != self.antrea_diagnostics;
        let seconds = t.elapsed().as_secs_f64();
        let versions = self.store.resource_versions();
        let update = publish.then(|| Update {
            staged: netpol_core::staged::staged_engine(engine),
            engine: engine.clone(),
            compile_seconds: seconds,
            diagnostics: {
                let mut d = self.store.diagnostics();
                d.extend(self.ref_warnings.iter().cloned());
                d.extend(self.antrea_diagnostics.iter().cloned());
                d.sort_by(|a, b| a.origin.file.cmp(&b.origin.file));
                d
            },
            resource_versions: versions.clone(),
            received: None,
        });
        Some(Applied { update, versions, changes: n, stats, unchanged: batch.unchanged, seconds })
    }
}

/// Receives events until the channel closes, applying each batch to the engine and publishing the result.
async fn apply_events(
    sink: &impl Publish,
    rx: &mut mpsc::Receiver<(Kind, Event)>,
    metrics: &Arc<LiveMetrics>,
    cni: Option<netpol_core::cni::Cni>,
    window: Duration,
) -> anyhow::Result<()> {
    let mut applier = Applier { cni, ..Applier::default() };
    while let Some(first) = rx.recv().await {
        let received = Instant::now();
        let mut events = vec![first];
        let deadline = tokio::time::Instant::now() + window;
        while events.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(ev)) => events.push(ev),
                _ => break,
            }
        }
        let m = Arc::clone(metrics);
        let job = tokio::task::spawn_blocking(move || {
            let applied = applier.apply(events, &m);
            (applier, applied)
        });
        let (back, applied) = job.await.context("the engine update task failed")?;
        applier = back;
        let Some(a) = applied else { continue };
        match a.update {
            Some(update) => {
                let revision = sink.publish(Update { received: Some(received), ..update });
                metrics.synced.store(true, Ordering::Relaxed);
                tracing::info!(
                    revision,
                    changes = a.changes,
                    stats = ?a.stats,
                    seconds = a.seconds,
                    resource_versions = %a.versions,
                    "model updated"
                );
            }
            // Nothing the engine reads changed: the current model is as current as these events.
            None => sink.advance(a.versions),
        }
        // Counted once the model reflects the batch, so that a reader of the counters sees its effect.
        if a.changes > 0 {
            metrics.update(a.changes, a.stats);
        }
        metrics.unchanged.fetch_add(a.unchanged, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, rv: u64, app: &str, ip: &str) -> Object {
        Object::from_value(
            Kind::Pod,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": rv.to_string(), "labels": {"app": app}},
                "status": {"podIP": ip, "phase": "Running"}}),
        )
    }

    fn policy(ns: &str, name: &str, rv: u64) -> Object {
        Object::from_value(
            Kind::NetworkPolicy,
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": rv.to_string()},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        )
    }

    fn list(store: &mut Store, kind: Kind, objects: Vec<Object>, out: &mut Batch) {
        store.event(kind, Event::Init, out);
        for o in objects {
            store.event(kind, Event::InitApply(o), out);
        }
        store.event(kind, Event::InitDone, out);
    }

    /// Lists every kind but pods and network policies, empty.
    fn list_others(store: &mut Store, out: &mut Batch) {
        for kind in Kind::ALL.into_iter().filter(|k| !matches!(k, Kind::Pod | Kind::NetworkPolicy)) {
            list(store, kind, vec![], out);
        }
    }

    const NO_OTHER_VERSIONS: &str = "namespaces=-,nodes=-,clusternetworkpolicies=-,adminnetworkpolicies=-,\
                                     baselineadminnetworkpolicies=-,tiers=-,networkpolicies.projectcalico.org=-,\
                                     globalnetworkpolicies=-,networksets=-,globalnetworksets=-,serviceaccounts=-,\
                                     stagednetworkpolicies=-,stagedglobalnetworkpolicies=-,\
                                     stagedkubernetesnetworkpolicies=-,hostendpoints=-,ciliumnetworkpolicies=-,\
                                     ciliumclusterwidenetworkpolicies=-,ciliumcidrgroups=-,services=-,\
                                     endpointslices=-,endpoints=-,tiers.crd.antrea.io=-,clustergroups=-,groups=-,\
                                     clusternetworkpolicies.crd.antrea.io=-,networkpolicies.crd.antrea.io=-";

    fn synced_store() -> Store {
        let mut s = Store::new();
        let mut b = Batch::default();
        list_others(&mut s, &mut b);
        list(
            &mut s,
            Kind::Pod,
            vec![pod("a", "web", 5, "web", "10.0.0.1"), pod("a", "cli", 6, "cli", "10.0.0.2")],
            &mut b,
        );
        assert!(b.initial.is_none());
        list(&mut s, Kind::NetworkPolicy, vec![policy("a", "deny", 7)], &mut b);
        let initial = b.initial.unwrap();
        assert_eq!(initial.cluster.pods.len(), 2);
        assert_eq!(initial.cluster.policies.len(), 1);
        assert!(b.changes.is_empty());
        s
    }

    #[test]
    fn first_full_list_builds_once_every_kind_is_listed() {
        let s = synced_store();
        assert!(s.synced());
        assert_eq!(s.resource_versions(), format!("pods=6,networkpolicies=7,{NO_OTHER_VERSIONS}"));
    }

    #[test]
    fn status_only_updates_change_nothing() {
        let mut s = synced_store();
        let mut b = Batch::default();
        let mut p = pod("a", "web", 9, "web", "10.0.0.1");
        p.value.as_mut().unwrap()["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        s.event(Kind::Pod, Event::Apply(p), &mut b);
        assert!(b.changes.is_empty());
        assert_eq!(b.unchanged, 1);
        s.event(Kind::Pod, Event::Apply(pod("a", "web", 10, "other", "10.0.0.1")), &mut b);
        assert!(matches!(&b.changes[..], [Change::PutPod { pod, .. }] if pod.name == "web"));
        assert_eq!(s.resource_versions(), format!("pods=10,networkpolicies=7,{NO_OTHER_VERSIONS}"));
    }

    fn acnp(rv: u64, action: &str, status: Value) -> Object {
        Object::from_value(
            Kind::AntreaClusterNetworkPolicy,
            json!({"apiVersion": "crd.antrea.io/v1beta1", "kind": "ClusterNetworkPolicy",
                "metadata": {"name": "guard", "resourceVersion": rv.to_string()},
                "spec": {"priority": 1, "appliedTo": [{"podSelector": {}}],
                    "ingress": [{"action": action, "from": [{"podSelector": {"matchLabels": {"app": "cli"}}}]}]},
                "status": status}),
        )
    }

    /// Antrea's objects become `PutAntrea`/`DeleteAntrea` changes; an update of their status alone (Antrea's
    /// controller writes the realization there) changes nothing; one that no longer decodes is deleted.
    #[test]
    fn antrea_objects_become_changes_and_their_status_changes_nothing() {
        let mut s = synced_store();
        let mut b = Batch::default();
        s.event(Kind::AntreaClusterNetworkPolicy, Event::Apply(acnp(20, "Drop", json!({}))), &mut b);
        assert!(
            matches!(&b.changes[..], [Change::PutAntrea(o)] if o.name() == "guard" && o.kind() == "ClusterNetworkPolicy")
        );
        let mut b = Batch::default();
        let realized = json!({"phase": "Realized", "observedGeneration": 1, "currentNodesRealized": 3});
        s.event(Kind::AntreaClusterNetworkPolicy, Event::Apply(acnp(21, "Drop", realized)), &mut b);
        assert!(b.changes.is_empty(), "status only");
        assert_eq!(b.unchanged, 1);
        s.event(Kind::AntreaClusterNetworkPolicy, Event::Apply(acnp(22, "Allow", json!({}))), &mut b);
        assert_eq!(b.changes.len(), 1);
        let mut b = Batch::default();
        s.event(Kind::AntreaClusterNetworkPolicy, Event::Apply(acnp(23, "Sideways", json!({}))), &mut b);
        assert!(b.diagnostics_changed);
        assert!(
            matches!(&b.changes[..], [Change::DeleteAntrea { kind: "ClusterNetworkPolicy", namespace: None, name }] if name == "guard"),
            "now invalid: left out"
        );
        assert!(s.resource_versions().contains(",clusternetworkpolicies.crd.antrea.io=23,"));
    }

    #[test]
    fn relist_puts_only_what_changed_and_deletes_what_is_gone() {
        let mut s = synced_store();
        let mut b = Batch::default();
        // web unchanged (same resourceVersion), cli gone, db new.
        list(
            &mut s,
            Kind::Pod,
            vec![pod("a", "web", 5, "web", "10.0.0.1"), pod("a", "db", 12, "db", "10.0.0.3")],
            &mut b,
        );
        assert_eq!(b.changes.len(), 2, "{:?}", b.changes);
        assert!(b.changes.iter().any(|c| matches!(c, Change::PutPod { pod, .. } if pod.name == "db")));
        assert!(b.changes.iter().any(|c| matches!(c, Change::DeletePod { name, .. } if name == "cli")));
        assert_eq!(b.unchanged, 1);
    }

    #[test]
    fn terminated_pods_are_left_out() {
        let mut s = synced_store();
        let mut b = Batch::default();
        let mut p = pod("a", "web", 11, "web", "10.0.0.1");
        p = Object::from_value(Kind::Pod, {
            let mut v = p.value.take().unwrap();
            v["status"]["phase"] = json!("Succeeded");
            v
        });
        assert!(p.value.is_none());
        s.event(Kind::Pod, Event::Apply(p), &mut b);
        assert!(matches!(&b.changes[..], [Change::DeletePod { name, .. }] if name == "web"));
    }

    #[test]
    fn invalid_objects_are_reported_and_left_out() {
        let mut s = synced_store();
        let mut b = Batch::default();
        let mut bad = policy("a", "deny", 13);
        bad.value.as_mut().unwrap()["spec"]["policyTypes"] = json!(["Sideways"]);
        s.event(Kind::NetworkPolicy, Event::Apply(bad), &mut b);
        assert!(matches!(&b.changes[..], [Change::DeletePolicy { name, .. }] if name == "deny"));
        assert!(b.diagnostics_changed);
        let d = s.diagnostics();
        assert_eq!(d.len(), 1);
        assert_eq!(&*d[0].origin.file, "cluster:networkpolicies/a/deny");
        assert_eq!(d[0].field.as_deref(), Some("spec.policyTypes[0]"));
        let mut b = Batch::default();
        s.event(Kind::NetworkPolicy, Event::Apply(policy("a", "deny", 14)), &mut b);
        assert!(matches!(&b.changes[..], [Change::PutPolicy { .. }]));
        assert!(b.diagnostics_changed);
        assert!(s.diagnostics().is_empty());
    }

    #[test]
    fn events_before_the_first_full_list_are_folded_in() {
        let mut s = Store::new();
        let mut b = Batch::default();
        list(&mut s, Kind::Pod, vec![pod("a", "web", 5, "web", "10.0.0.1")], &mut b);
        s.event(Kind::Pod, Event::Apply(pod("a", "cli", 6, "cli", "10.0.0.2")), &mut b);
        s.event(Kind::Pod, Event::Delete(pod("a", "web", 7, "web", "10.0.0.1")), &mut b);
        list_others(&mut s, &mut b);
        assert!(b.initial.is_none());
        list(&mut s, Kind::NetworkPolicy, vec![], &mut b);
        let c = b.initial.unwrap().cluster;
        assert_eq!(c.pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["cli"]);
        assert_eq!(s.resource_versions(), format!("pods=7,networkpolicies=-,{NO_OTHER_VERSIONS}"));
    }

    fn anp(name: &str, rv: u64, priority: u32) -> Object {
        // As a list item of kube's dynamic API: no kind, no apiVersion.
        Object::from_value(
            Kind::AdminNetworkPolicy,
            json!({"metadata": {"name": name, "resourceVersion": rv.to_string()},
                "spec": {"priority": priority, "subject": {"namespaces": {"matchLabels": {"team": "b"}}},
                    "ingress": [{"name": "deny-a", "action": "Deny",
                        "from": [{"namespaces": {"matchLabels": {"team": "a"}}}]}]},
                "status": {"conditions": []}}),
        )
    }

    fn node(name: &str, rv: u64, ip: &str) -> Object {
        Object::from_value(
            Kind::Node,
            json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "resourceVersion": rv.to_string(), "labels": {"kubernetes.io/os": "linux"}},
                "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}),
        )
    }

    #[test]
    fn objects_of_the_new_kinds_are_cluster_scoped_and_typed() {
        let mut o = anp("guard", 3, 10);
        assert_eq!((o.namespace.as_str(), o.name.as_str(), o.resource_version.as_str()), ("", "guard", "3"));
        assert_eq!(o.source_name(), "cluster:adminnetworkpolicies/guard");
        let v = o.value.take().unwrap();
        assert_eq!(
            (v["kind"].as_str(), v["apiVersion"].as_str()),
            (Some("AdminNetworkPolicy"), Some("policy.networking.k8s.io/v1alpha1"))
        );
        // A namespace on a cluster-scoped object (the API server drops it) is not part of its key.
        let n = Object::from_value(Kind::Node, json!({"metadata": {"name": "n1", "namespace": "x"}}));
        assert_eq!((n.namespace.as_str(), n.source_name().as_str()), ("", "cluster:nodes/n1"));
        let key = |k: Kind| (k, String::new(), "x".to_string());
        assert!(matches!(delete_change(&key(Kind::Node)), Pending::Core(Change::DeleteNode { name }) if name == "x"));
        for (kind, policy_kind) in [
            (Kind::ClusterNetworkPolicy, PolicyKind::ClusterNetworkPolicy),
            (Kind::AdminNetworkPolicy, PolicyKind::AdminNetworkPolicy),
            (Kind::BaselineAdminNetworkPolicy, PolicyKind::BaselineAdminNetworkPolicy),
        ] {
            assert!(kind.is_optional() && !kind.is_namespaced());
            assert_eq!(kind.api_resource(Apis::default()).api_version, kind.api_version());
            assert!(
                matches!(delete_change(&key(kind)), Pending::Core(Change::DeleteClusterPolicy { kind: k, name }) if k == policy_kind && name == "x")
            );
        }
        assert!(!Kind::Node.is_optional());
    }

    #[test]
    fn absent_kinds_are_empty_and_left_out_of_the_resource_versions() {
        let mut s = Store::new();
        let mut b = Batch::default();
        for kind in [Kind::Namespace, Kind::Node, Kind::NetworkPolicy] {
            list(&mut s, kind, vec![], &mut b);
        }
        for kind in Kind::ALL.into_iter().filter(|k| k.is_optional() || k.is_calico() || k.is_cilium()) {
            s.event(kind, Event::Absent, &mut b);
        }
        assert!(b.initial.is_none());
        list(&mut s, Kind::Pod, vec![pod("a", "web", 5, "web", "10.0.0.1")], &mut b);
        assert_eq!(b.initial.unwrap().cluster.pods.len(), 1);
        assert_eq!(s.resource_versions(), "pods=5,networkpolicies=-,namespaces=-,nodes=-");
    }

    #[test]
    fn admin_policies_and_nodes_become_changes() {
        let mut s = synced_store();
        let mut b = Batch::default();
        s.event(Kind::AdminNetworkPolicy, Event::Apply(anp("guard", 20, 10)), &mut b);
        s.event(Kind::Node, Event::Apply(node("n1", 21, "192.0.2.1")), &mut b);
        assert!(
            matches!(&b.changes[..], [Change::PutPolicy { policy, .. }, Change::PutNode(n)]
                if policy.kind == PolicyKind::AdminNetworkPolicy && policy.name == "guard" && policy.order == 10.into()
                    && n.name == "n1"),
            "{:?}",
            b.changes
        );
        assert!(!b.diagnostics_changed);
        assert!(s.resource_versions().contains(",nodes=21,clusternetworkpolicies=-,adminnetworkpolicies=20,"));

        // The same model at a new resourceVersion (a status update): no change.
        let mut b = Batch::default();
        s.event(Kind::AdminNetworkPolicy, Event::Apply(anp("guard", 22, 10)), &mut b);
        assert!(b.changes.is_empty(), "{:?}", b.changes);
        assert_eq!(b.unchanged, 1);
        // A new priority is a change; deletions.
        s.event(Kind::AdminNetworkPolicy, Event::Apply(anp("guard", 23, 11)), &mut b);
        s.event(Kind::AdminNetworkPolicy, Event::Delete(anp("guard", 24, 11)), &mut b);
        s.event(Kind::Node, Event::Delete(node("n1", 25, "192.0.2.1")), &mut b);
        assert!(
            matches!(&b.changes[..], [
                Change::PutPolicy { policy, .. },
                Change::DeleteClusterPolicy { kind: PolicyKind::AdminNetworkPolicy, name },
                Change::DeleteNode { name: node },
            ] if policy.order == 11.into() && name == "guard" && node == "n1"),
            "{:?}",
            b.changes
        );

        // A relist of the kind that finds it gone deletes what the model has of it.
        let mut b = Batch::default();
        s.event(Kind::AdminNetworkPolicy, Event::Apply(anp("other", 26, 5)), &mut b);
        s.event(Kind::AdminNetworkPolicy, Event::Absent, &mut b);
        assert!(matches!(b.changes.last(), Some(Change::DeleteClusterPolicy { name, .. }) if name == "other"));
        assert!(!s.resource_versions().contains(",adminnetworkpolicies="), "{}", s.resource_versions());
    }

    #[test]
    fn the_first_full_list_loads_admin_policies_and_nodes() {
        let mut s = Store::new();
        let mut b = Batch::default();
        for kind in Kind::ALL.into_iter().filter(|k| !matches!(k, Kind::AdminNetworkPolicy | Kind::Node)) {
            list(&mut s, kind, vec![], &mut b);
        }
        list(&mut s, Kind::Node, vec![node("n1", 3, "192.0.2.1")], &mut b);
        list(&mut s, Kind::AdminNetworkPolicy, vec![anp("guard", 4, 10)], &mut b);
        let loaded = b.initial.unwrap();
        assert_eq!(loaded.cluster.policies.len(), 1);
        assert_eq!(&*loaded.cluster.policies[0].origin.file, "cluster:adminnetworkpolicies/guard");
        assert_eq!(loaded.cluster.nodes.len(), 1);
        assert_eq!(&*loaded.cluster.nodes[0].origin.file, "cluster:nodes/n1");
        // Fingerprinted at the first list: the same model again changes nothing.
        let mut b = Batch::default();
        s.event(Kind::AdminNetworkPolicy, Event::Apply(anp("guard", 5, 10)), &mut b);
        s.event(Kind::Node, Event::Apply(node("n1", 6, "192.0.2.1")), &mut b);
        assert!(b.changes.is_empty(), "{:?}", b.changes);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    }

    /// An object of one of Calico's kinds (`crd.projectcalico.org/v1`, as a list item: no kind, no apiVersion).
    fn calico(kind: Kind, ns: &str, name: &str, rv: u64, spec: Value) -> Object {
        let mut v = json!({"metadata": {"name": name, "resourceVersion": rv.to_string()}, "spec": spec});
        if kind.is_namespaced() {
            v["metadata"]["namespace"] = json!(ns);
        }
        Object::from_value(kind, v)
    }

    fn gnp(rv: u64) -> Object {
        calico(
            Kind::GlobalNetworkPolicy,
            "",
            "security.deny",
            rv,
            json!({"tier": "security", "selector": "app == 'web'", "ingress": [{"action": "Deny"}]}),
        )
    }

    fn tier(rv: u64) -> Object {
        calico(Kind::Tier, "", "security", rv, json!({"order": 100}))
    }

    #[test]
    fn calico_objects_become_changes_and_tier_warnings_follow_the_tiers() {
        let mut s = synced_store();
        let mut b = Batch::default();
        s.event(Kind::GlobalNetworkPolicy, Event::Apply(gnp(20)), &mut b);
        assert!(
            matches!(&b.changes[..], [Change::PutCalicoPolicy { policy, tier, .. }]
                if tier == "security" && policy.kind == PolicyKind::GlobalNetworkPolicy),
            "{:?}",
            b.changes
        );
        // Alone, the policy's tier is not declared: the loader's warning, reported while no Tier declares it.
        let d = s.diagnostics();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (&*d[0].origin.file, d[0].field.as_deref()),
            ("cluster:globalnetworkpolicies/security.deny", Some("spec.tier"))
        );
        assert_eq!(d[0].severity, Severity::Warning);
        assert!(b.diagnostics_changed);

        let mut b = Batch::default();
        s.event(Kind::Tier, Event::Apply(tier(21)), &mut b);
        assert!(matches!(&b.changes[..], [Change::PutTier(t)] if t.name == "security" && t.order == Some(100.0)));
        assert!(b.diagnostics_changed);
        assert!(s.diagnostics().is_empty(), "{:?}", s.diagnostics());
        // The same policy at a new resourceVersion changes nothing.
        let mut b = Batch::default();
        s.event(Kind::GlobalNetworkPolicy, Event::Apply(gnp(22)), &mut b);
        assert!(b.changes.is_empty() && !b.diagnostics_changed, "{:?}", b.changes);
        // The Tier deleted: the warning is back.
        s.event(Kind::Tier, Event::Delete(tier(23)), &mut b);
        assert!(matches!(&b.changes[..], [Change::DeleteTier { name }] if name == "security"));
        assert!(b.diagnostics_changed);
        assert_eq!(s.diagnostics().len(), 1);
        assert!(s
            .resource_versions()
            .contains(",tiers=23,networkpolicies.projectcalico.org=-,globalnetworkpolicies=22,"));

        // Network sets, service accounts and Calico's NetworkPolicy, put and deleted.
        let mut b = Batch::default();
        let set = |kind, ns, rv| calico(kind, ns, "partners", rv, json!({"nets": ["192.0.2.0/24"]}));
        let sa = |rv: u64| {
            Object::from_value(
                Kind::ServiceAccount,
                json!({"metadata": {"name": "web-sa", "namespace": "a", "resourceVersion": rv.to_string(),
                    "labels": {"role": "web"}}}),
            )
        };
        let np = |rv| calico(Kind::CalicoNetworkPolicy, "a", "allow", rv, json!({"selector": "all()"}));
        s.event(Kind::NetworkSet, Event::Apply(set(Kind::NetworkSet, "a", 30)), &mut b);
        s.event(Kind::GlobalNetworkSet, Event::Apply(set(Kind::GlobalNetworkSet, "", 31)), &mut b);
        s.event(Kind::ServiceAccount, Event::Apply(sa(32)), &mut b);
        s.event(Kind::CalicoNetworkPolicy, Event::Apply(np(33)), &mut b);
        assert!(
            matches!(&b.changes[..], [
                Change::PutNetworkSet { namespace: Some(a), set: s1 },
                Change::PutNetworkSet { namespace: None, set: s2 },
                Change::PutServiceAccount { namespace: sa_ns, account },
                Change::PutCalicoPolicy { namespace: np_ns, policy, tier },
            ] if a == "a" && s1.name == "partners" && s2.nets.len() == 1 && sa_ns == "a"
                && account.labels.get("role") == Some("web") && np_ns == "a" && tier == "default"
                && policy.kind == PolicyKind::CalicoNetworkPolicy),
            "{:?}",
            b.changes
        );
        let mut b = Batch::default();
        s.event(Kind::NetworkSet, Event::Delete(set(Kind::NetworkSet, "a", 34)), &mut b);
        s.event(Kind::GlobalNetworkSet, Event::Delete(set(Kind::GlobalNetworkSet, "", 35)), &mut b);
        s.event(Kind::ServiceAccount, Event::Delete(sa(36)), &mut b);
        s.event(Kind::CalicoNetworkPolicy, Event::Delete(np(37)), &mut b);
        s.event(Kind::GlobalNetworkPolicy, Event::Delete(gnp(38)), &mut b);
        assert!(
            matches!(&b.changes[..], [
                Change::DeleteNetworkSet { namespace: Some(a), name: n1 },
                Change::DeleteNetworkSet { namespace: None, name: n2 },
                Change::DeleteServiceAccount { namespace: sa_ns, name: sa_name },
                Change::DeleteCalicoPolicy { namespace: np_ns, name: np_name },
                Change::DeleteClusterPolicy { kind: PolicyKind::GlobalNetworkPolicy, name: gnp_name },
            ] if a == "a" && n1 == "partners" && n2 == "partners" && sa_ns == "a" && sa_name == "web-sa"
                && np_ns == "a" && np_name == "allow" && gnp_name == "security.deny"),
            "{:?}",
            b.changes
        );
        assert!(s.diagnostics().is_empty());
        assert_eq!(
            Object::from_value(Kind::CalicoNetworkPolicy, json!({"metadata": {"name": "x", "namespace": "a"}}))
                .source_name(),
            "cluster:networkpolicies.projectcalico.org/a/x"
        );
    }

    #[test]
    fn the_first_full_list_holds_tier_warnings_apart() {
        let mut s = Store::new();
        let mut b = Batch::default();
        for kind in Kind::ALL.into_iter().filter(|k| !matches!(k, Kind::Tier | Kind::GlobalNetworkPolicy)) {
            list(&mut s, kind, vec![], &mut b);
        }
        list(&mut s, Kind::Tier, vec![tier(3)], &mut b);
        list(&mut s, Kind::GlobalNetworkPolicy, vec![gnp(4)], &mut b);
        let loaded = b.initial.unwrap();
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        assert_eq!(loaded.cluster.tiers[loaded.cluster.policies[0].tier.index()].name, "security");
        assert!(s.diagnostics().is_empty());
        // Fingerprinted at the first list: the same objects again change nothing.
        let mut b = Batch::default();
        s.event(Kind::Tier, Event::Apply(tier(5)), &mut b);
        s.event(Kind::GlobalNetworkPolicy, Event::Apply(gnp(6)), &mut b);
        assert!(b.changes.is_empty(), "{:?}", b.changes);
        // The Tier deleted: the warning the loader gives the policy without it.
        s.event(Kind::Tier, Event::Delete(tier(7)), &mut b);
        let without = load_objects([gnp(4)]).diagnostics;
        assert_eq!(s.diagnostics(), without);
        assert_eq!(without.len(), 1);

        // Listed without its Tier: the warning, until the Tier comes.
        let mut s = Store::new();
        let mut b = Batch::default();
        for kind in Kind::ALL.into_iter().filter(|k| *k != Kind::GlobalNetworkPolicy) {
            list(&mut s, kind, vec![], &mut b);
        }
        list(&mut s, Kind::GlobalNetworkPolicy, vec![gnp(4)], &mut b);
        assert_eq!(b.initial.unwrap().diagnostics, without);
        assert_eq!(s.diagnostics(), without);
        let mut b = Batch::default();
        s.event(Kind::Tier, Event::Apply(tier(8)), &mut b);
        assert!(s.diagnostics().is_empty());
    }

    #[test]
    fn calico_kinds_are_read_where_calico_says() {
        assert_eq!(Kind::Tier.api_version_in(None), "crd.projectcalico.org/v1");
        assert_eq!(Kind::Tier.api_version_in(Some(CalicoApi::Crds)), "crd.projectcalico.org/v1");
        assert_eq!(Kind::Tier.api_version_in(Some(CalicoApi::ApiServer)), "projectcalico.org/v3");
        assert_eq!(Kind::ServiceAccount.api_version_in(Some(CalicoApi::ApiServer)), "v1");
        let r = Kind::CalicoNetworkPolicy.api_resource(Apis { calico: Some(CalicoApi::ApiServer), ..Apis::default() });
        assert_eq!(
            (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            ("projectcalico.org", "v3", "networkpolicies")
        );
        let r = Kind::ServiceAccount.api_resource(Apis::default());
        assert_eq!((r.group.as_str(), r.version.as_str(), r.plural.as_str()), ("", "v1", "serviceaccounts"));
        for k in Kind::ALL {
            assert_eq!(k.is_calico(), k.api_version().contains("projectcalico") || k == Kind::ServiceAccount, "{k:?}");
        }
        assert_eq!(Kind::CalicoNetworkPolicy.plural(), "networkpolicies.projectcalico.org");
        assert_eq!(Kind::CalicoNetworkPolicy.resource_name(), "networkpolicies");
        assert!(Kind::GlobalNetworkSet.is_optional() && !Kind::ServiceAccount.is_optional());
        // Read under the API server's group, a list item gets that apiVersion.
        let o = Object::read(Kind::Tier, "projectcalico.org/v3", json!({"metadata": {"name": "t"}}));
        assert_eq!(o.value.unwrap()["apiVersion"], "projectcalico.org/v3");
    }

    #[test]
    fn services_endpoints_and_cidr_groups_become_changes() {
        let mut s = synced_store();
        let mut b = Batch::default();
        let meta = |ns: &str, name: &str, rv: u64| {
            let mut m = json!({"name": name, "resourceVersion": rv.to_string()});
            if !ns.is_empty() {
                m["namespace"] = json!(ns);
            }
            m
        };
        let svc = |rv| Object::from_value(Kind::Service, json!({"metadata": meta("default", "kubernetes", rv)}));
        let slice = |rv, ip: &str| {
            let mut m = meta("default", "kubernetes", rv);
            m["labels"] = json!({"kubernetes.io/service-name": "kubernetes"});
            Object::from_value(
                Kind::EndpointSlice,
                json!({"metadata": m, "addressType": "IPv4", "endpoints": [{"addresses": [ip]}]}),
            )
        };
        let eps = |rv, ip: &str| {
            Object::from_value(
                Kind::Endpoints,
                json!({"metadata": meta("default", "kubernetes", rv), "subsets": [{"addresses": [{"ip": ip}]}]}),
            )
        };
        let group = |rv, cidr: &str| {
            Object::from_value(
                Kind::CiliumCidrGroup,
                json!({"metadata": meta("", "partners", rv), "spec": {"externalCIDRs": [cidr]}}),
            )
        };
        s.event(Kind::Service, Event::Apply(svc(30)), &mut b);
        s.event(Kind::EndpointSlice, Event::Apply(slice(31, "192.0.2.10")), &mut b);
        s.event(Kind::Endpoints, Event::Apply(eps(32, "192.0.2.10")), &mut b);
        s.event(Kind::CiliumCidrGroup, Event::Apply(group(33, "198.51.100.0/24")), &mut b);
        assert!(
            matches!(&b.changes[..], [
                Change::PutService(svc),
                Change::PutServiceEndpoints(slice),
                Change::PutServiceEndpoints(eps),
            ] if svc.name == "kubernetes" && svc.namespace == "default" && !svc.has_selector()
                && slice.kind == "EndpointSlice" && slice.service == "kubernetes"
                && slice.addresses == ["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]
                && eps.kind == "Endpoints" && eps.name == "kubernetes"),
            "{:?}",
            b.changes
        );
        assert!(
            matches!(&b.cidr_groups[..], [CidrGroupChange { name, set: Some(set) }]
                if name == "partners" && set.is_cidr_group() && set.nets.len() == 1
                    && &*set.origin.file == "cluster:ciliumcidrgroups/partners"),
            "{:?}",
            b.cidr_groups
        );
        assert!(s.diagnostics().is_empty(), "{:?}", s.diagnostics());
        assert!(s.resource_versions().contains(",ciliumcidrgroups=33,services=30,endpointslices=31,endpoints=32,"));

        // The same objects at new resourceVersions: no change; new addresses and CIDRs are.
        let mut b = Batch::default();
        s.event(Kind::Service, Event::Apply(svc(34)), &mut b);
        s.event(Kind::EndpointSlice, Event::Apply(slice(35, "192.0.2.10")), &mut b);
        s.event(Kind::CiliumCidrGroup, Event::Apply(group(36, "198.51.100.0/24")), &mut b);
        assert!(b.changes.is_empty() && b.cidr_groups.is_empty(), "{:?}", b.changes);
        assert_eq!(b.unchanged, 3);
        s.event(Kind::EndpointSlice, Event::Apply(slice(37, "192.0.2.11")), &mut b);
        s.event(Kind::CiliumCidrGroup, Event::Apply(group(38, "203.0.113.0/24")), &mut b);
        assert!(matches!(&b.changes[..], [Change::PutServiceEndpoints(e)] if e.addresses.len() == 1));
        assert_eq!(b.cidr_groups.len(), 1);

        // Deletions.
        let mut b = Batch::default();
        s.event(Kind::Service, Event::Delete(svc(39)), &mut b);
        s.event(Kind::EndpointSlice, Event::Delete(slice(40, "192.0.2.11")), &mut b);
        s.event(Kind::Endpoints, Event::Delete(eps(41, "192.0.2.10")), &mut b);
        s.event(Kind::CiliumCidrGroup, Event::Delete(group(42, "203.0.113.0/24")), &mut b);
        assert!(
            matches!(&b.changes[..], [
                Change::DeleteService { namespace: n1, name: s1 },
                Change::DeleteServiceEndpoints { kind: "EndpointSlice", namespace: n2, name: s2 },
                Change::DeleteServiceEndpoints { kind: "Endpoints", namespace: n3, name: s3 },
            ] if [n1, n2, n3].iter().all(|n| *n == "default") && [s1, s2, s3].iter().all(|n| *n == "kubernetes")),
            "{:?}",
            b.changes
        );
        assert!(matches!(&b.cidr_groups[..], [CidrGroupChange { name, set: None }] if name == "partners"));

        // An EndpointSlice without its Service's label: the loader's warning, left out as in a file.
        let mut b = Batch::default();
        let orphan = Object::from_value(
            Kind::EndpointSlice,
            json!({"metadata": meta("default", "orphan", 43), "addressType": "IPv4", "endpoints": []}),
        );
        s.event(Kind::EndpointSlice, Event::Apply(orphan), &mut b);
        assert!(b.changes.is_empty() && b.diagnostics_changed);
        let d = s.diagnostics();
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!((&*d[0].origin.file, d[0].severity), ("cluster:endpointslices/default/orphan", Severity::Warning));
    }

    #[test]
    fn a_cidr_group_and_a_global_network_set_of_the_same_name_are_apart() {
        let loaded = load_objects([
            Object::from_value(
                Kind::GlobalNetworkSet,
                json!({"metadata": {"name": "partners"}, "spec": {"nets": ["192.0.2.0/24"]}}),
            ),
            Object::from_value(
                Kind::CiliumCidrGroup,
                json!({"metadata": {"name": "partners"}, "spec": {"externalCIDRs": ["198.51.100.0/24"]}}),
            ),
        ]);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let mut c = loaded.cluster;
        assert_eq!(c.network_sets.len(), 2);
        let group = c.network_sets.iter().find(|s| s.is_cidr_group()).cloned().unwrap();
        // Replaced, then deleted: the GlobalNetworkSet stays as it is.
        let mut changed = group.clone();
        changed.nets.clear();
        apply_cidr_group(&mut c, CidrGroupChange { name: "partners".into(), set: Some(changed) });
        assert_eq!(c.network_sets.len(), 2);
        assert!(c.network_sets.iter().any(|s| s.is_cidr_group() && s.nets.is_empty()));
        apply_cidr_group(&mut c, CidrGroupChange { name: "partners".into(), set: None });
        assert_eq!(c.network_sets.len(), 1);
        assert!(!c.network_sets[0].is_cidr_group() && c.network_sets[0].nets.len() == 1);
        apply_cidr_group(&mut c, CidrGroupChange { name: "partners".into(), set: None });
        assert_eq!(c.network_sets.len(), 1);
        apply_cidr_group(&mut c, CidrGroupChange { name: "partners".into(), set: Some(group) });
        assert_eq!(c.network_sets.len(), 2);
    }

    #[test]
    fn cidr_groups_are_read_where_discovery_found_them() {
        let old = Apis { cilium: true, cidr_groups: Some(CILIUM_V2ALPHA1), ..Apis::default() };
        assert_eq!(Kind::CiliumCidrGroup.api_version_for(old), "cilium.io/v2alpha1");
        assert_eq!(Kind::CiliumCidrGroup.api_resource(old).version, "v2alpha1");
        assert_eq!(Kind::CiliumNetworkPolicy.api_version_for(old), "cilium.io/v2");
        assert!(old.reads(Kind::CiliumCidrGroup) && old.reads(Kind::Service));
        let none = Apis { cilium: true, ..Apis::default() };
        assert!(!none.reads(Kind::CiliumCidrGroup) && none.reads(Kind::EndpointSlice));
        assert!(!Apis::default().reads(Kind::Endpoints) && !Apis::default().reads(Kind::Service));
        for k in [Kind::Service, Kind::EndpointSlice, Kind::Endpoints] {
            assert!(k.is_cilium() && !k.is_optional() && k.is_namespaced() && !k.is_cilium_policy(), "{k:?}");
        }
        assert!(Kind::CiliumCidrGroup.is_optional() && !Kind::CiliumCidrGroup.is_namespaced());
        // Read under v2alpha1, a list item gets that apiVersion, and the loader reads it.
        let o = Object::read(
            Kind::CiliumCidrGroup,
            CILIUM_V2ALPHA1,
            json!({"metadata": {"name": "g"},
            "spec": {"externalCIDRs": ["192.0.2.0/24"]}}),
        );
        assert_eq!(o.value.as_ref().unwrap()["apiVersion"], "cilium.io/v2alpha1");
        let loaded = load_objects([o]);
        assert!(loaded.diagnostics.is_empty() && loaded.cluster.network_sets[0].is_cidr_group());
    }

    #[test]
    fn resource_versions_compare_numerically() {
        let mut slot = None;
        bump(&mut slot, "9");
        bump(&mut slot, "10");
        bump(&mut slot, "8");
        assert_eq!(slot.as_deref(), Some("10"));
        bump(&mut slot, "opaque");
        assert_eq!(slot.as_deref(), Some("opaque"));
    }
}
