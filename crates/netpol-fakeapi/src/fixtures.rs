//! Kubernetes objects as JSON for the tests that drive a [`FakeApiServer`], and the small cluster several of them
//! share: namespaces `frontend` (`tier=frontend`) and `backend` (`tier=backend`), a pod in each (`web`
//! 10.0.1.1, `api` 10.0.2.1, both with the named container port `http` = 8080).
//!
//! The admin policy kinds (`policy.networking.k8s.io`, shapes as upstream's CRDs define them) and Nodes for that
//! cluster: [`anp_deny_frontend`], [`banp_default`], [`cnp_accept_web`], [`cnp_deny_nodes`] and [`worker_node`].

use serde_json::{json, Value};

use crate::FakeApiServer;

pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A running pod with one container exposing the named port `http` = 8080.
pub fn pod(ns: &str, name: &str, labels: Value, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "registry.example/app:1",
            "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

pub fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// Denies all ingress in `backend`.
pub fn default_deny() -> Value {
    policy("backend", "default-deny", json!({"podSelector": {}, "policyTypes": ["Ingress"]}))
}

/// Ingress to backend `app=api` on the named port `http` from `app=web` pods of `tier=frontend` namespaces.
pub fn allow_web() -> Value {
    policy(
        "backend",
        "allow-web",
        json!({
            "podSelector": {"matchLabels": {"app": "api"}},
            "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"tier": "frontend"}},
                          "podSelector": {"matchLabels": {"app": "web"}}}],
                "ports": [{"port": "http"}],
            }],
        }),
    )
}

/// Puts the shared small cluster (two namespaces, a pod in each) into `server`.
pub fn seed_two_namespaces(server: &FakeApiServer) {
    for obj in [
        namespace("frontend", json!({"tier": "frontend"})),
        namespace("backend", json!({"tier": "backend"})),
        pod("frontend", "web", json!({"app": "web"}), "10.0.1.1"),
        pod("backend", "api", json!({"app": "api"}), "10.0.2.1"),
    ] {
        server.put(obj);
    }
}

/// A Node with `status.addresses`: a `Hostname` and the `InternalIP` `ip`.
pub fn node(name: &str, labels: Value, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {
            "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}],
            "nodeInfo": {"kubeletVersion": "v1.37.0", "operatingSystem": "linux", "architecture": "amd64"},
        },
    })
}

/// `worker-1`, a Linux node at 192.168.1.11.
pub fn worker_node() -> Value {
    node("worker-1", json!({"kubernetes.io/os": "linux", "kubernetes.io/hostname": "worker-1"}), "192.168.1.11")
}

/// A `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy.
pub fn admin_network_policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": name}, "spec": spec})
}

/// The `policy.networking.k8s.io/v1alpha1` BaselineAdminNetworkPolicy (a singleton: always named `default`).
pub fn baseline_admin_network_policy(spec: Value) -> Value {
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"}, "spec": spec})
}

/// A `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy.
pub fn cluster_network_policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name}, "spec": spec})
}

/// AdminNetworkPolicy `deny-frontend` (priority 20): denies all ingress to `tier=backend` namespaces from
/// `tier=frontend` ones.
pub fn anp_deny_frontend() -> Value {
    admin_network_policy(
        "deny-frontend",
        json!({
            "priority": 20,
            "subject": {"namespaces": {"matchLabels": {"tier": "backend"}}},
            "ingress": [{
                "name": "deny-from-frontend",
                "action": "Deny",
                "from": [{"namespaces": {"matchLabels": {"tier": "frontend"}}}],
            }],
        }),
    )
}

/// BaselineAdminNetworkPolicy `default`: denies ingress to `tier=frontend` namespaces from every namespace
/// (what NetworkPolicies may still allow).
pub fn banp_default() -> Value {
    baseline_admin_network_policy(json!({
        "subject": {"namespaces": {"matchLabels": {"tier": "frontend"}}},
        "ingress": [{"name": "deny-all", "action": "Deny", "from": [{"namespaces": {}}]}],
    }))
}

/// ClusterNetworkPolicy `accept-web` (tier Admin, priority 10, before [`anp_deny_frontend`]): accepts TCP 8080
/// to `tier=backend` namespaces from `app=web` pods of `tier=frontend` namespaces.
pub fn cnp_accept_web() -> Value {
    cluster_network_policy(
        "accept-web",
        json!({
            "tier": "Admin",
            "priority": 10,
            "subject": {"namespaces": {"matchLabels": {"tier": "backend"}}},
            "ingress": [{
                "name": "accept-web-http",
                "action": "Accept",
                "from": [{"pods": {
                    "namespaceSelector": {"matchLabels": {"tier": "frontend"}},
                    "podSelector": {"matchLabels": {"app": "web"}},
                }}],
                "protocols": [{"tcp": {"destinationPort": {"number": 8080}}}],
            }],
        }),
    )
}

/// ClusterNetworkPolicy `deny-nodes` (tier Admin, priority 30): denies egress from `tier=frontend` namespaces
/// to the addresses of Linux nodes.
pub fn cnp_deny_nodes() -> Value {
    cluster_network_policy(
        "deny-nodes",
        json!({
            "tier": "Admin",
            "priority": 30,
            "subject": {"namespaces": {"matchLabels": {"tier": "frontend"}}},
            "egress": [{
                "name": "deny-to-nodes",
                "action": "Deny",
                "to": [{"nodes": {"matchLabels": {"kubernetes.io/os": "linux"}}}],
            }],
        }),
    )
}
