//! The kinds the fake server stores, and everything the wire protocol needs to know about each: one table.

use std::fmt;

/// A kind of object the server stores.
///
/// The order (Namespace, Pod, NetworkPolicy, Node, the policy CRDs, ServiceAccount, then Calico's kinds under its
/// CRDs' group and under its API server's, then Cilium's policies, Services and their endpoints, and Cilium's CIDR
/// groups) is the order of the store's keys; it has no meaning on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1` Namespace, cluster-scoped.
    Namespace,
    /// `v1` Pod, namespaced.
    Pod,
    /// `networking.k8s.io/v1` NetworkPolicy, namespaced.
    NetworkPolicy,
    /// `v1` Node, cluster-scoped.
    Node,
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy, cluster-scoped; a CRD.
    ClusterNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy, cluster-scoped; a CRD.
    AdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` BaselineAdminNetworkPolicy, cluster-scoped; a CRD.
    BaselineAdminNetworkPolicy,
    /// `v1` ServiceAccount, namespaced.
    ServiceAccount,
    /// `crd.projectcalico.org/v1` NetworkPolicy (Calico's), namespaced; a CRD.
    CalicoNetworkPolicy,
    /// `crd.projectcalico.org/v1` GlobalNetworkPolicy, cluster-scoped; a CRD.
    CalicoGlobalNetworkPolicy,
    /// `crd.projectcalico.org/v1` Tier, cluster-scoped; a CRD.
    CalicoTier,
    /// `crd.projectcalico.org/v1` NetworkSet, namespaced; a CRD.
    CalicoNetworkSet,
    /// `crd.projectcalico.org/v1` GlobalNetworkSet, cluster-scoped; a CRD.
    CalicoGlobalNetworkSet,
    /// `crd.projectcalico.org/v1` StagedNetworkPolicy, namespaced; a CRD.
    CalicoStagedNetworkPolicy,
    /// `crd.projectcalico.org/v1` StagedGlobalNetworkPolicy, cluster-scoped; a CRD.
    CalicoStagedGlobalNetworkPolicy,
    /// `crd.projectcalico.org/v1` StagedKubernetesNetworkPolicy, namespaced; a CRD.
    CalicoStagedKubernetesNetworkPolicy,
    /// `crd.projectcalico.org/v1` HostEndpoint, cluster-scoped; a CRD.
    CalicoHostEndpoint,
    /// `projectcalico.org/v3` NetworkPolicy, namespaced; served by Calico's API server.
    CalicoV3NetworkPolicy,
    /// `projectcalico.org/v3` GlobalNetworkPolicy, cluster-scoped; served by Calico's API server.
    CalicoV3GlobalNetworkPolicy,
    /// `projectcalico.org/v3` Tier, cluster-scoped; served by Calico's API server.
    CalicoV3Tier,
    /// `projectcalico.org/v3` NetworkSet, namespaced; served by Calico's API server.
    CalicoV3NetworkSet,
    /// `projectcalico.org/v3` GlobalNetworkSet, cluster-scoped; served by Calico's API server.
    CalicoV3GlobalNetworkSet,
    /// `projectcalico.org/v3` StagedNetworkPolicy, namespaced; served by Calico's API server.
    CalicoV3StagedNetworkPolicy,
    /// `projectcalico.org/v3` StagedGlobalNetworkPolicy, cluster-scoped; served by Calico's API server.
    CalicoV3StagedGlobalNetworkPolicy,
    /// `projectcalico.org/v3` StagedKubernetesNetworkPolicy, namespaced; served by Calico's API server.
    CalicoV3StagedKubernetesNetworkPolicy,
    /// `projectcalico.org/v3` HostEndpoint, cluster-scoped; served by Calico's API server.
    CalicoV3HostEndpoint,
    /// `cilium.io/v2` CiliumNetworkPolicy, namespaced; one of Cilium's CRDs.
    CiliumNetworkPolicy,
    /// `cilium.io/v2` CiliumClusterwideNetworkPolicy, cluster-scoped; one of Cilium's CRDs.
    CiliumClusterwideNetworkPolicy,
    /// `v1` Service, namespaced.
    Service,
    /// `v1` Endpoints, namespaced.
    Endpoints,
    /// `discovery.k8s.io/v1` EndpointSlice, namespaced.
    EndpointSlice,
    /// `cilium.io/v2` CiliumCIDRGroup, cluster-scoped; one of Cilium's CRDs (served at `v2` since Cilium 1.18).
    CiliumCidrGroup,
    /// `cilium.io/v2alpha1` CiliumCIDRGroup, cluster-scoped; one of Cilium's CRDs (the only version before Cilium
    /// 1.18). Stored apart from [`Kind::CiliumCidrGroup`]: take that one out ([`FakeApiServer::set_served`]) to
    /// be an older Cilium.
    ///
    /// [`FakeApiServer::set_served`]: crate::FakeApiServer::set_served
    CiliumCidrGroupV2Alpha1,
    /// `crd.antrea.io/v1beta1` Tier, cluster-scoped; one of Antrea's CRDs.
    AntreaTier,
    /// `crd.antrea.io/v1beta1` ClusterGroup, cluster-scoped; one of Antrea's CRDs.
    AntreaClusterGroup,
    /// `crd.antrea.io/v1beta1` Group, namespaced; one of Antrea's CRDs.
    AntreaGroup,
    /// `crd.antrea.io/v1beta1` ClusterNetworkPolicy (ACNP), cluster-scoped; one of Antrea's CRDs.
    AntreaClusterNetworkPolicy,
    /// `crd.antrea.io/v1beta1` NetworkPolicy (ANNP), namespaced; one of Antrea's CRDs.
    AntreaNetworkPolicy,
    /// `v1` Event, namespaced: what the agents report (a node whose pod traffic bypasses netfilter).
    Event,
}

/// What serves a kind, which decides when the server serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// The apiserver itself: always served.
    BuiltIn,
    /// A CustomResourceDefinition of `policy.networking.k8s.io`: see
    /// [`FakeApiServer::set_crds_installed`](crate::FakeApiServer::set_crds_installed).
    PolicyCrd,
    /// One of Calico's CustomResourceDefinitions (`crd.projectcalico.org`): see
    /// [`FakeApiServer::set_calico`](crate::FakeApiServer::set_calico).
    CalicoCrd,
    /// Calico's API server (`projectcalico.org/v3`, an aggregated API): see
    /// [`FakeApiServer::set_calico`](crate::FakeApiServer::set_calico).
    CalicoApiServer,
    /// One of Cilium's CustomResourceDefinitions (`cilium.io`): see
    /// [`FakeApiServer::set_cilium`](crate::FakeApiServer::set_cilium).
    CiliumCrd,
    /// One of Antrea's CustomResourceDefinitions (`crd.antrea.io`): see
    /// [`FakeApiServer::set_antrea`](crate::FakeApiServer::set_antrea).
    AntreaCrd,
}

/// What the wire protocol knows of a kind.
struct Info {
    kind: Kind,
    /// The `kind` field.
    name: &'static str,
    /// The resource name in URLs.
    plural: &'static str,
    /// The API group, `""` for the core group.
    group: &'static str,
    version: &'static str,
    /// The `apiVersion` field.
    api_version: &'static str,
    namespaced: bool,
    api: Api,
}

const POLICY_GROUP: &str = "policy.networking.k8s.io";
const CALICO_CRD: &str = "crd.projectcalico.org";
const CALICO_V3: &str = "projectcalico.org";
const CILIUM: &str = "cilium.io";

const fn info(
    kind: Kind,
    name: &'static str,
    plural: &'static str,
    (group, version, api_version): (&'static str, &'static str, &'static str),
    namespaced: bool,
    api: Api,
) -> Info {
    Info { kind, name, plural, group, version, api_version, namespaced, api }
}

const CORE: (&str, &str, &str) = ("", "v1", "v1");
const POLICY_V1ALPHA1: (&str, &str, &str) = (POLICY_GROUP, "v1alpha1", "policy.networking.k8s.io/v1alpha1");
const CALICO_V1: (&str, &str, &str) = (CALICO_CRD, "v1", "crd.projectcalico.org/v1");
const CALICO_API_V3: (&str, &str, &str) = (CALICO_V3, "v3", "projectcalico.org/v3");
const CILIUM_V2: (&str, &str, &str) = (CILIUM, "v2", "cilium.io/v2");
const CILIUM_V2ALPHA1: (&str, &str, &str) = (CILIUM, "v2alpha1", "cilium.io/v2alpha1");
const ANTREA_V1BETA1: (&str, &str, &str) = ("crd.antrea.io", "v1beta1", "crd.antrea.io/v1beta1");

/// Every kind, in the order of [`Kind`]'s variants.
const TABLE: [Info; Kind::COUNT] = [
    info(Kind::Namespace, "Namespace", "namespaces", CORE, false, Api::BuiltIn),
    info(Kind::Pod, "Pod", "pods", CORE, true, Api::BuiltIn),
    info(
        Kind::NetworkPolicy,
        "NetworkPolicy",
        "networkpolicies",
        ("networking.k8s.io", "v1", "networking.k8s.io/v1"),
        true,
        Api::BuiltIn,
    ),
    info(Kind::Node, "Node", "nodes", CORE, false, Api::BuiltIn),
    info(
        Kind::ClusterNetworkPolicy,
        "ClusterNetworkPolicy",
        "clusternetworkpolicies",
        (POLICY_GROUP, "v1alpha2", "policy.networking.k8s.io/v1alpha2"),
        false,
        Api::PolicyCrd,
    ),
    info(
        Kind::AdminNetworkPolicy,
        "AdminNetworkPolicy",
        "adminnetworkpolicies",
        POLICY_V1ALPHA1,
        false,
        Api::PolicyCrd,
    ),
    info(
        Kind::BaselineAdminNetworkPolicy,
        "BaselineAdminNetworkPolicy",
        "baselineadminnetworkpolicies",
        POLICY_V1ALPHA1,
        false,
        Api::PolicyCrd,
    ),
    info(Kind::ServiceAccount, "ServiceAccount", "serviceaccounts", CORE, true, Api::BuiltIn),
    info(Kind::CalicoNetworkPolicy, "NetworkPolicy", "networkpolicies", CALICO_V1, true, Api::CalicoCrd),
    info(
        Kind::CalicoGlobalNetworkPolicy,
        "GlobalNetworkPolicy",
        "globalnetworkpolicies",
        CALICO_V1,
        false,
        Api::CalicoCrd,
    ),
    info(Kind::CalicoTier, "Tier", "tiers", CALICO_V1, false, Api::CalicoCrd),
    info(Kind::CalicoNetworkSet, "NetworkSet", "networksets", CALICO_V1, true, Api::CalicoCrd),
    info(Kind::CalicoGlobalNetworkSet, "GlobalNetworkSet", "globalnetworksets", CALICO_V1, false, Api::CalicoCrd),
    info(
        Kind::CalicoStagedNetworkPolicy,
        "StagedNetworkPolicy",
        "stagednetworkpolicies",
        CALICO_V1,
        true,
        Api::CalicoCrd,
    ),
    info(
        Kind::CalicoStagedGlobalNetworkPolicy,
        "StagedGlobalNetworkPolicy",
        "stagedglobalnetworkpolicies",
        CALICO_V1,
        false,
        Api::CalicoCrd,
    ),
    info(
        Kind::CalicoStagedKubernetesNetworkPolicy,
        "StagedKubernetesNetworkPolicy",
        "stagedkubernetesnetworkpolicies",
        CALICO_V1,
        true,
        Api::CalicoCrd,
    ),
    info(Kind::CalicoHostEndpoint, "HostEndpoint", "hostendpoints", CALICO_V1, false, Api::CalicoCrd),
    info(Kind::CalicoV3NetworkPolicy, "NetworkPolicy", "networkpolicies", CALICO_API_V3, true, Api::CalicoApiServer),
    info(
        Kind::CalicoV3GlobalNetworkPolicy,
        "GlobalNetworkPolicy",
        "globalnetworkpolicies",
        CALICO_API_V3,
        false,
        Api::CalicoApiServer,
    ),
    info(Kind::CalicoV3Tier, "Tier", "tiers", CALICO_API_V3, false, Api::CalicoApiServer),
    info(Kind::CalicoV3NetworkSet, "NetworkSet", "networksets", CALICO_API_V3, true, Api::CalicoApiServer),
    info(
        Kind::CalicoV3GlobalNetworkSet,
        "GlobalNetworkSet",
        "globalnetworksets",
        CALICO_API_V3,
        false,
        Api::CalicoApiServer,
    ),
    info(
        Kind::CalicoV3StagedNetworkPolicy,
        "StagedNetworkPolicy",
        "stagednetworkpolicies",
        CALICO_API_V3,
        true,
        Api::CalicoApiServer,
    ),
    info(
        Kind::CalicoV3StagedGlobalNetworkPolicy,
        "StagedGlobalNetworkPolicy",
        "stagedglobalnetworkpolicies",
        CALICO_API_V3,
        false,
        Api::CalicoApiServer,
    ),
    info(
        Kind::CalicoV3StagedKubernetesNetworkPolicy,
        "StagedKubernetesNetworkPolicy",
        "stagedkubernetesnetworkpolicies",
        CALICO_API_V3,
        true,
        Api::CalicoApiServer,
    ),
    info(Kind::CalicoV3HostEndpoint, "HostEndpoint", "hostendpoints", CALICO_API_V3, false, Api::CalicoApiServer),
    info(Kind::CiliumNetworkPolicy, "CiliumNetworkPolicy", "ciliumnetworkpolicies", CILIUM_V2, true, Api::CiliumCrd),
    info(
        Kind::CiliumClusterwideNetworkPolicy,
        "CiliumClusterwideNetworkPolicy",
        "ciliumclusterwidenetworkpolicies",
        CILIUM_V2,
        false,
        Api::CiliumCrd,
    ),
    info(Kind::Service, "Service", "services", CORE, true, Api::BuiltIn),
    info(Kind::Endpoints, "Endpoints", "endpoints", CORE, true, Api::BuiltIn),
    info(
        Kind::EndpointSlice,
        "EndpointSlice",
        "endpointslices",
        ("discovery.k8s.io", "v1", "discovery.k8s.io/v1"),
        true,
        Api::BuiltIn,
    ),
    info(Kind::CiliumCidrGroup, "CiliumCIDRGroup", "ciliumcidrgroups", CILIUM_V2, false, Api::CiliumCrd),
    info(Kind::CiliumCidrGroupV2Alpha1, "CiliumCIDRGroup", "ciliumcidrgroups", CILIUM_V2ALPHA1, false, Api::CiliumCrd),
    info(Kind::AntreaTier, "Tier", "tiers", ANTREA_V1BETA1, false, Api::AntreaCrd),
    info(Kind::AntreaClusterGroup, "ClusterGroup", "clustergroups", ANTREA_V1BETA1, false, Api::AntreaCrd),
    info(Kind::AntreaGroup, "Group", "groups", ANTREA_V1BETA1, true, Api::AntreaCrd),
    info(
        Kind::AntreaClusterNetworkPolicy,
        "ClusterNetworkPolicy",
        "clusternetworkpolicies",
        ANTREA_V1BETA1,
        false,
        Api::AntreaCrd,
    ),
    info(Kind::AntreaNetworkPolicy, "NetworkPolicy", "networkpolicies", ANTREA_V1BETA1, true, Api::AntreaCrd),
    info(Kind::Event, "Event", "events", CORE, true, Api::BuiltIn),
];

// Every entry is at the index of its kind.
const _: () = {
    let mut i = 0;
    while i < TABLE.len() {
        assert!(TABLE[i].kind as usize == i, "the kind table is out of order");
        i += 1;
    }
};

impl Kind {
    /// How many kinds there are.
    pub const COUNT: usize = 39;

    /// Every kind, in store order.
    pub const ALL: [Kind; Kind::COUNT] = [
        Kind::Namespace,
        Kind::Pod,
        Kind::NetworkPolicy,
        Kind::Node,
        Kind::ClusterNetworkPolicy,
        Kind::AdminNetworkPolicy,
        Kind::BaselineAdminNetworkPolicy,
        Kind::ServiceAccount,
        Kind::CalicoNetworkPolicy,
        Kind::CalicoGlobalNetworkPolicy,
        Kind::CalicoTier,
        Kind::CalicoNetworkSet,
        Kind::CalicoGlobalNetworkSet,
        Kind::CalicoStagedNetworkPolicy,
        Kind::CalicoStagedGlobalNetworkPolicy,
        Kind::CalicoStagedKubernetesNetworkPolicy,
        Kind::CalicoHostEndpoint,
        Kind::CalicoV3NetworkPolicy,
        Kind::CalicoV3GlobalNetworkPolicy,
        Kind::CalicoV3Tier,
        Kind::CalicoV3NetworkSet,
        Kind::CalicoV3GlobalNetworkSet,
        Kind::CalicoV3StagedNetworkPolicy,
        Kind::CalicoV3StagedGlobalNetworkPolicy,
        Kind::CalicoV3StagedKubernetesNetworkPolicy,
        Kind::CalicoV3HostEndpoint,
        Kind::CiliumNetworkPolicy,
        Kind::CiliumClusterwideNetworkPolicy,
        Kind::Service,
        Kind::Endpoints,
        Kind::EndpointSlice,
        Kind::CiliumCidrGroup,
        Kind::CiliumCidrGroupV2Alpha1,
        Kind::AntreaTier,
        Kind::AntreaClusterGroup,
        Kind::AntreaGroup,
        Kind::AntreaClusterNetworkPolicy,
        Kind::AntreaNetworkPolicy,
        Kind::Event,
    ];

    fn info(self) -> &'static Info {
        &TABLE[self as usize]
    }

    /// Parses the `kind` field of an object (exact, case-sensitive, as on the wire). A name several groups have
    /// (`NetworkPolicy`, Calico's kinds) is the first of them in [`Kind::ALL`]: `networking.k8s.io`'s
    /// NetworkPolicy, Calico's kinds under `crd.projectcalico.org/v1`; [`Kind::from_api_version`] tells them apart.
    pub fn from_kind_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == kind)
    }

    /// The kind of an object's `apiVersion` and `kind` fields (exact, case-sensitive).
    pub fn from_api_version(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.api_version() == api_version && k.name() == kind)
    }

    /// Finds the kind served at `/{api prefix}/{group}/{version}/{plural}`; `group` is `""` for the core group.
    pub(crate) fn from_plural(group: &str, version: &str, plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.group() == group && k.version() == version && k.plural() == plural)
    }

    /// The `kind` field: `Pod`.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The `kind` of a list response: `PodList`.
    pub(crate) fn list_name(self) -> String {
        format!("{}List", self.name())
    }

    /// The resource name in URLs: `pods`.
    pub fn plural(self) -> &'static str {
        self.info().plural
    }

    /// The singular resource name used by discovery: `pod`.
    pub(crate) fn singular(self) -> String {
        self.name().to_ascii_lowercase()
    }

    /// The API group, `""` for the core group.
    pub fn group(self) -> &'static str {
        self.info().group
    }

    /// The version within the group: `v1`, `v1alpha1`.
    pub fn version(self) -> &'static str {
        self.info().version
    }

    /// The `apiVersion` field: `v1` or `networking.k8s.io/v1`.
    pub fn api_version(self) -> &'static str {
        self.info().api_version
    }

    /// Whether objects of this kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        self.info().namespaced
    }

    /// What serves the kind.
    pub fn api(self) -> Api {
        self.info().api
    }

    /// Whether a CustomResourceDefinition serves this kind (the `policy.networking.k8s.io` kinds, Calico's
    /// `crd.projectcalico.org` kinds, Cilium's `cilium.io` kinds).
    pub fn is_crd(self) -> bool {
        matches!(self.api(), Api::PolicyCrd | Api::CalicoCrd | Api::CiliumCrd | Api::AntreaCrd)
    }

    /// The collection's path for all namespaces: `/api/v1/pods`, `/apis/networking.k8s.io/v1/networkpolicies`.
    pub fn path(self) -> String {
        match self.group() {
            "" => format!("/api/{}/{}", self.version(), self.plural()),
            group => format!("/apis/{group}/{}/{}", self.version(), self.plural()),
        }
    }

    /// The resource in messages, as kubectl names it: `pods`, `tiers.crd.projectcalico.org`.
    pub(crate) fn resource(self) -> String {
        match self.group() {
            "" => self.plural().to_owned(),
            group => format!("{}.{group}", self.plural()),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_variant_order() {
        for (i, k) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(TABLE[i].kind, k);
            assert_eq!(k as usize, i);
            assert_eq!(k.list_name(), format!("{}List", k.name()));
            let group_version =
                if k.group().is_empty() { k.version().to_owned() } else { format!("{}/{}", k.group(), k.version()) };
            assert_eq!(k.api_version(), group_version);
        }
        assert_eq!(Kind::AdminNetworkPolicy.path(), "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies");
        assert_eq!(Kind::Node.path(), "/api/v1/nodes");
        assert_eq!(Kind::CalicoTier.path(), "/apis/crd.projectcalico.org/v1/tiers");
        assert_eq!(Kind::CalicoV3NetworkPolicy.path(), "/apis/projectcalico.org/v3/networkpolicies");
        assert_eq!(Kind::ServiceAccount.path(), "/api/v1/serviceaccounts");
    }

    #[test]
    fn kinds_of_the_same_name_are_told_apart_by_api_version() {
        assert_eq!(Kind::from_kind_name("NetworkPolicy"), Some(Kind::NetworkPolicy));
        assert_eq!(Kind::from_kind_name("Tier"), Some(Kind::CalicoTier));
        assert_eq!(
            Kind::from_api_version("crd.projectcalico.org/v1", "NetworkPolicy"),
            Some(Kind::CalicoNetworkPolicy)
        );
        assert_eq!(Kind::from_api_version("projectcalico.org/v3", "NetworkPolicy"), Some(Kind::CalicoV3NetworkPolicy));
        assert_eq!(Kind::from_api_version("projectcalico.org/v3", "Pod"), None);
        for k in Kind::ALL {
            assert_eq!(Kind::from_api_version(k.api_version(), k.name()), Some(k));
            assert_eq!(Kind::from_plural(k.group(), k.version(), k.plural()), Some(k));
        }
        assert_eq!(Kind::CalicoNetworkPolicy.resource(), "networkpolicies.crd.projectcalico.org");
        assert_eq!(
            Kind::from_api_version("projectcalico.org/v3", "StagedKubernetesNetworkPolicy"),
            Some(Kind::CalicoV3StagedKubernetesNetworkPolicy)
        );
        assert_eq!(Kind::CalicoStagedNetworkPolicy.path(), "/apis/crd.projectcalico.org/v1/stagednetworkpolicies");
        assert_eq!(Kind::from_kind_name("HostEndpoint"), Some(Kind::CalicoHostEndpoint));
        assert_eq!(Kind::from_api_version("projectcalico.org/v3", "HostEndpoint"), Some(Kind::CalicoV3HostEndpoint));
        assert_eq!(Kind::CalicoV3HostEndpoint.path(), "/apis/projectcalico.org/v3/hostendpoints");
        assert!(!Kind::CalicoHostEndpoint.is_namespaced());
        assert_eq!(Kind::from_kind_name("CiliumNetworkPolicy"), Some(Kind::CiliumNetworkPolicy));
        assert_eq!(Kind::CiliumNetworkPolicy.path(), "/apis/cilium.io/v2/ciliumnetworkpolicies");
        assert_eq!(Kind::CiliumClusterwideNetworkPolicy.resource(), "ciliumclusterwidenetworkpolicies.cilium.io");
        assert!(Kind::CiliumNetworkPolicy.is_namespaced() && !Kind::CiliumClusterwideNetworkPolicy.is_namespaced());
        assert!(Kind::CiliumClusterwideNetworkPolicy.is_crd());
        assert_eq!(Kind::from_kind_name("CiliumCIDRGroup"), Some(Kind::CiliumCidrGroup));
        assert_eq!(
            Kind::from_api_version("cilium.io/v2alpha1", "CiliumCIDRGroup"),
            Some(Kind::CiliumCidrGroupV2Alpha1)
        );
        assert_eq!(Kind::CiliumCidrGroupV2Alpha1.path(), "/apis/cilium.io/v2alpha1/ciliumcidrgroups");
        assert_eq!(Kind::EndpointSlice.path(), "/apis/discovery.k8s.io/v1/endpointslices");
        assert_eq!(Kind::Endpoints.path(), "/api/v1/endpoints");
        assert_eq!(Kind::Endpoints.list_name(), "EndpointsList");
        assert_eq!(Kind::Endpoints.singular(), "endpoints");
        assert!(Kind::Service.is_namespaced() && !Kind::Service.is_crd() && !Kind::CiliumCidrGroup.is_namespaced());
        assert_eq!(Kind::from_api_version("crd.antrea.io/v1beta1", "NetworkPolicy"), Some(Kind::AntreaNetworkPolicy));
        assert_eq!(Kind::from_api_version("crd.antrea.io/v1beta1", "Tier"), Some(Kind::AntreaTier));
        assert_eq!(Kind::AntreaClusterNetworkPolicy.path(), "/apis/crd.antrea.io/v1beta1/clusternetworkpolicies");
        assert!(Kind::AntreaGroup.is_namespaced() && !Kind::AntreaClusterGroup.is_namespaced());
        assert_eq!(Kind::AntreaNetworkPolicy.resource(), "networkpolicies.crd.antrea.io");
    }
}
