//! Kubernetes objects as JSON for the tests that drive a [`FakeApiServer`], and the small cluster several of them
//! share: namespaces `frontend` (`tier=frontend`) and `backend` (`tier=backend`), a pod in each (`web`
//! 10.0.1.1, `api` 10.0.2.1, both with the named container port `http` = 8080).

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
