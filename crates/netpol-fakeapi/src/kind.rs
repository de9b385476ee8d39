//! The three kinds the fake server stores, and everything the wire protocol needs to know about each.

use std::fmt;

/// A kind of object the server stores.
///
/// The order (Namespace, Pod, NetworkPolicy) is the order of the store's keys; it has no meaning on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `v1` Namespace, cluster-scoped.
    Namespace,
    /// `v1` Pod, namespaced.
    Pod,
    /// `networking.k8s.io/v1` NetworkPolicy, namespaced.
    NetworkPolicy,
}

impl Kind {
    /// Every kind, in store order.
    pub const ALL: [Kind; 3] = [Kind::Namespace, Kind::Pod, Kind::NetworkPolicy];

    /// Parses the `kind` field of an object (exact, case-sensitive, as on the wire).
    pub fn from_kind_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == kind)
    }

    /// Finds the kind served at `/{api prefix}/{group_version}/{plural}`; `group` is `""` for the core group.
    pub(crate) fn from_plural(group: &str, plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.group() == group && k.plural() == plural)
    }

    /// The `kind` field: `Pod`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::NetworkPolicy => "NetworkPolicy",
        }
    }

    /// The `kind` of a list response: `PodList`.
    pub(crate) fn list_name(self) -> &'static str {
        match self {
            Kind::Namespace => "NamespaceList",
            Kind::Pod => "PodList",
            Kind::NetworkPolicy => "NetworkPolicyList",
        }
    }

    /// The resource name in URLs: `pods`.
    pub(crate) fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Pod => "pods",
            Kind::NetworkPolicy => "networkpolicies",
        }
    }

    /// The singular resource name used by discovery: `pod`.
    pub(crate) fn singular(self) -> &'static str {
        match self {
            Kind::Namespace => "namespace",
            Kind::Pod => "pod",
            Kind::NetworkPolicy => "networkpolicy",
        }
    }

    /// The API group, `""` for the core group.
    pub(crate) fn group(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Pod => "",
            Kind::NetworkPolicy => "networking.k8s.io",
        }
    }

    /// The `apiVersion` field: `v1` or `networking.k8s.io/v1`.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Pod => "v1",
            Kind::NetworkPolicy => "networking.k8s.io/v1",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        !matches!(self, Kind::Namespace)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
