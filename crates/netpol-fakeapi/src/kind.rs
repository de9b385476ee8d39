//! The kinds the fake server stores, and everything the wire protocol needs to know about each: one table.

use std::fmt;

/// A kind of object the server stores.
///
/// The order (Namespace, Pod, NetworkPolicy, Node, then the policy CRDs) is the order of the store's keys; it
/// has no meaning on the wire.
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
}

/// What the wire protocol knows of a kind.
struct Info {
    kind: Kind,
    /// The `kind` field.
    name: &'static str,
    /// The `kind` of a list response.
    list_name: &'static str,
    /// The resource name in URLs.
    plural: &'static str,
    /// The singular resource name of discovery.
    singular: &'static str,
    /// The API group, `""` for the core group.
    group: &'static str,
    version: &'static str,
    /// The `apiVersion` field.
    api_version: &'static str,
    namespaced: bool,
    /// Served by a CustomResourceDefinition, which a cluster may not have installed.
    crd: bool,
}

const POLICY_GROUP: &str = "policy.networking.k8s.io";

/// Every kind, in the order of [`Kind`]'s variants.
const TABLE: [Info; 7] = [
    Info {
        kind: Kind::Namespace,
        name: "Namespace",
        list_name: "NamespaceList",
        plural: "namespaces",
        singular: "namespace",
        group: "",
        version: "v1",
        api_version: "v1",
        namespaced: false,
        crd: false,
    },
    Info {
        kind: Kind::Pod,
        name: "Pod",
        list_name: "PodList",
        plural: "pods",
        singular: "pod",
        group: "",
        version: "v1",
        api_version: "v1",
        namespaced: true,
        crd: false,
    },
    Info {
        kind: Kind::NetworkPolicy,
        name: "NetworkPolicy",
        list_name: "NetworkPolicyList",
        plural: "networkpolicies",
        singular: "networkpolicy",
        group: "networking.k8s.io",
        version: "v1",
        api_version: "networking.k8s.io/v1",
        namespaced: true,
        crd: false,
    },
    Info {
        kind: Kind::Node,
        name: "Node",
        list_name: "NodeList",
        plural: "nodes",
        singular: "node",
        group: "",
        version: "v1",
        api_version: "v1",
        namespaced: false,
        crd: false,
    },
    Info {
        kind: Kind::ClusterNetworkPolicy,
        name: "ClusterNetworkPolicy",
        list_name: "ClusterNetworkPolicyList",
        plural: "clusternetworkpolicies",
        singular: "clusternetworkpolicy",
        group: POLICY_GROUP,
        version: "v1alpha2",
        api_version: "policy.networking.k8s.io/v1alpha2",
        namespaced: false,
        crd: true,
    },
    Info {
        kind: Kind::AdminNetworkPolicy,
        name: "AdminNetworkPolicy",
        list_name: "AdminNetworkPolicyList",
        plural: "adminnetworkpolicies",
        singular: "adminnetworkpolicy",
        group: POLICY_GROUP,
        version: "v1alpha1",
        api_version: "policy.networking.k8s.io/v1alpha1",
        namespaced: false,
        crd: true,
    },
    Info {
        kind: Kind::BaselineAdminNetworkPolicy,
        name: "BaselineAdminNetworkPolicy",
        list_name: "BaselineAdminNetworkPolicyList",
        plural: "baselineadminnetworkpolicies",
        singular: "baselineadminnetworkpolicy",
        group: POLICY_GROUP,
        version: "v1alpha1",
        api_version: "policy.networking.k8s.io/v1alpha1",
        namespaced: false,
        crd: true,
    },
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
    /// Every kind, in store order.
    pub const ALL: [Kind; 7] = [
        Kind::Namespace,
        Kind::Pod,
        Kind::NetworkPolicy,
        Kind::Node,
        Kind::ClusterNetworkPolicy,
        Kind::AdminNetworkPolicy,
        Kind::BaselineAdminNetworkPolicy,
    ];

    fn info(self) -> &'static Info {
        &TABLE[self as usize]
    }

    /// Parses the `kind` field of an object (exact, case-sensitive, as on the wire).
    pub fn from_kind_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == kind)
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
    pub(crate) fn list_name(self) -> &'static str {
        self.info().list_name
    }

    /// The resource name in URLs: `pods`.
    pub fn plural(self) -> &'static str {
        self.info().plural
    }

    /// The singular resource name used by discovery: `pod`.
    pub(crate) fn singular(self) -> &'static str {
        self.info().singular
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

    /// Whether a CustomResourceDefinition serves this kind (the `policy.networking.k8s.io` kinds): see
    /// [`FakeApiServer::set_crds_installed`](crate::FakeApiServer::set_crds_installed).
    pub fn is_crd(self) -> bool {
        self.info().crd
    }

    /// The collection's path for all namespaces: `/api/v1/pods`, `/apis/networking.k8s.io/v1/networkpolicies`.
    pub fn path(self) -> String {
        match self.group() {
            "" => format!("/api/{}/{}", self.version(), self.plural()),
            group => format!("/apis/{group}/{}/{}", self.version(), self.plural()),
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
    }
}
