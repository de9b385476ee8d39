//! Kubernetes objects as JSON for the tests that drive a [`FakeApiServer`], and the small cluster several of them
//! share: namespaces `frontend` (`tier=frontend`) and `backend` (`tier=backend`), a pod in each (`web`
//! 10.0.1.1, `api` 10.0.2.1, both with the named container port `http` = 8080).
//!
//! The admin policy kinds (`policy.networking.k8s.io`, shapes as upstream's CRDs define them) and Nodes for that
//! cluster: [`anp_deny_frontend`], [`banp_default`], [`cnp_accept_web`], [`cnp_deny_nodes`] and [`worker_node`].
//!
//! Calico's kinds (under its CRDs' group [`CALICO_CRD`] or its API server's [`CALICO_V3`]) and ServiceAccounts
//! for that cluster: [`calico_objects`] (what [`seed_calico`] puts) and [`calico_deny_web`]; host endpoints:
//! [`calico_worker_endpoint`] (on [`worker_node`]) and [`calico_host_kubelet`].
//!
//! Cilium's policies (`cilium.io/v2`, [`CILIUM`]) for that cluster: [`cilium_objects`] (what [`seed_cilium`]
//! puts: a CiliumNetworkPolicy with an `ingressDeny` rule and a CiliumClusterwideNetworkPolicy) and
//! [`cilium_deny_web`]; CIDR groups: [`cilium_cidr_group`] (under [`CILIUM`] or [`CILIUM_V2ALPHA1`]).
//!
//! Services and their endpoints (what Cilium's `toServices` and `kube-apiserver` entity resolve to): [`service`],
//! [`endpoint_slice`] and [`endpoints`].
//!
//! Antrea's kinds (`crd.antrea.io/v1beta1`, [`ANTREA`]) for that cluster: [`antrea_objects`] (what [`seed_antrea`]
//! puts: a Tier, a ClusterGroup, an ACNP and an ANNP) and [`antrea_drop_web`].

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

/// The shared small cluster: two namespaces, a pod in each.
pub fn two_namespaces() -> Vec<Value> {
    vec![
        namespace("frontend", json!({"tier": "frontend"})),
        namespace("backend", json!({"tier": "backend"})),
        pod("frontend", "web", json!({"app": "web"}), "10.0.1.1"),
        pod("backend", "api", json!({"app": "api"}), "10.0.2.1"),
    ]
}

/// Puts the shared small cluster ([`two_namespaces`]) into `server`.
pub fn seed_two_namespaces(server: &FakeApiServer) {
    for obj in two_namespaces() {
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

// ---- Calico ----

/// The apiVersion of Calico's CRDs.
pub const CALICO_CRD: &str = "crd.projectcalico.org/v1";
/// The apiVersion of Calico's API server.
pub const CALICO_V3: &str = "projectcalico.org/v3";

pub fn service_account(ns: &str, name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns, "labels": labels}})
}

/// [`pod`], running as the service account `account`.
pub fn pod_as(ns: &str, name: &str, labels: Value, ip: &str, account: &str) -> Value {
    let mut p = pod(ns, name, labels, ip);
    p["spec"]["serviceAccountName"] = json!(account);
    p
}

/// A Calico Tier of `api` ([`CALICO_CRD`] or [`CALICO_V3`]).
pub fn calico_tier(api: &str, name: &str, order: f64) -> Value {
    json!({"apiVersion": api, "kind": "Tier", "metadata": {"name": name}, "spec": {"order": order}})
}

/// A Calico GlobalNetworkPolicy of `api`.
pub fn calico_global_policy(api: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": api, "kind": "GlobalNetworkPolicy", "metadata": {"name": name}, "spec": spec})
}

/// A Calico NetworkPolicy of `api`.
pub fn calico_policy(api: &str, ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": api, "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// A Calico NetworkSet of `api` in `ns`, or a GlobalNetworkSet (`ns: None`).
pub fn calico_network_set(api: &str, ns: Option<&str>, name: &str, labels: Value, nets: &[&str]) -> Value {
    let mut set = json!({"apiVersion": api, "kind": "GlobalNetworkSet",
        "metadata": {"name": name, "labels": labels}, "spec": {"nets": nets}});
    if let Some(ns) = ns {
        set["kind"] = json!("NetworkSet");
        set["metadata"]["namespace"] = json!(ns);
    }
    set
}

/// Calico's objects for the shared cluster (under `api`), with the ServiceAccount `frontend/web-sa`
/// (`role=web`) that `frontend/web` now runs as:
///
/// - Tier `security` (order 100), before the `default` tier of NetworkPolicies.
/// - GlobalNetworkPolicy `security.allow-web` (order 10): ingress to `app == 'api'` on its named port `http` (TCP)
///   from the endpoints of `role == 'web'` service accounts is allowed; everything else is passed on.
/// - GlobalNetworkPolicy `security.deny-blocked` (order 20): ingress to every endpoint from the
///   `kind == 'blocked'` network sets is denied; everything else is passed on.
/// - GlobalNetworkSet `blocked` (`kind=blocked`): 198.51.100.0/24.
/// - NetworkSet `backend/partners` (`kind=partner`): 192.0.2.0/24.
/// - NetworkPolicy `backend/allow-partners` (the `default` tier): ingress to `app == 'api'` on TCP 8080 from the
///   `kind == 'partner'` network sets; the tier then denies the rest to `backend/api`.
///
/// So: `frontend/web` → `backend/api` 8080 is allowed and 9090 denied; 192.0.2.7 → `backend/api` 8080 allowed,
/// 198.51.100.7 → `backend/api` 8080 denied, 198.51.100.7 → `frontend/web` denied; `backend/api` →
/// `frontend/web` allowed.
pub fn calico_objects(api: &str) -> Vec<Value> {
    vec![
        service_account("frontend", "web-sa", json!({"role": "web"})),
        pod_as("frontend", "web", json!({"app": "web"}), "10.0.1.1", "web-sa"),
        calico_tier(api, "security", 100.0),
        calico_global_policy(
            api,
            "security.allow-web",
            json!({
                "tier": "security",
                "order": 10,
                "selector": "app == 'api'",
                "types": ["Ingress"],
                "ingress": [
                    {"action": "Allow", "protocol": "TCP",
                     "source": {"serviceAccounts": {"selector": "role == 'web'"}},
                     "destination": {"ports": ["http"]}},
                    {"action": "Pass"},
                ],
            }),
        ),
        calico_global_policy(
            api,
            "security.deny-blocked",
            json!({
                "tier": "security",
                "order": 20,
                "selector": "all()",
                "types": ["Ingress"],
                "ingress": [
                    {"action": "Deny", "source": {"selector": "kind == 'blocked'"}},
                    {"action": "Pass"},
                ],
            }),
        ),
        calico_network_set(api, None, "blocked", json!({"kind": "blocked"}), &["198.51.100.0/24"]),
        calico_network_set(api, Some("backend"), "partners", json!({"kind": "partner"}), &["192.0.2.0/24"]),
        calico_policy(
            api,
            "backend",
            "allow-partners",
            json!({
                "selector": "app == 'api'",
                "types": ["Ingress"],
                "ingress": [{"action": "Allow", "protocol": "TCP",
                    "source": {"selector": "kind == 'partner'"}, "destination": {"ports": [8080]}}],
            }),
        ),
    ]
}

/// Puts [`calico_objects`] of `api` into `server` (whose Calico APIs must serve `api`).
pub fn seed_calico(server: &FakeApiServer, api: &str) {
    for obj in calico_objects(api) {
        server.put(obj);
    }
}

/// A Calico staged policy of `api`: `kind` is `StagedNetworkPolicy`, `StagedKubernetesNetworkPolicy` (in `ns`) or
/// `StagedGlobalNetworkPolicy` (`ns: None`).
pub fn calico_staged(api: &str, kind: &str, ns: Option<&str>, name: &str, spec: Value) -> Value {
    let mut o = json!({"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec});
    if let Some(ns) = ns {
        o["metadata"]["namespace"] = json!(ns);
    }
    o
}

/// StagedGlobalNetworkPolicy `security.staged-deny-web`: [`calico_deny_web`]'s spec, staged (never enforced; the
/// staged view denies `frontend/web` → `backend/api`).
pub fn calico_staged_deny_web(api: &str) -> Value {
    let spec = calico_deny_web(api)["spec"].clone();
    calico_staged(api, "StagedGlobalNetworkPolicy", None, "security.staged-deny-web", spec)
}

/// StagedNetworkPolicy `backend/allow-partners` with `stagedAction: Delete`: the staged view has no
/// `backend/allow-partners`, so nothing of the default tier selects `backend/api` (192.0.2.7 and
/// `frontend/web` on 9090 are allowed there).
pub fn calico_staged_delete_partners(api: &str) -> Value {
    calico_staged(api, "StagedNetworkPolicy", Some("backend"), "allow-partners", json!({"stagedAction": "Delete"}))
}

/// StagedKubernetesNetworkPolicy `frontend/isolate-web`: a NetworkPolicy that, enforced, would isolate
/// `frontend/web` for ingress with no rule (`backend/api` → `frontend/web` denied in the staged view).
pub fn calico_staged_isolate_web(api: &str) -> Value {
    let spec = json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]});
    calico_staged(api, "StagedKubernetesNetworkPolicy", Some("frontend"), "isolate-web", spec)
}

/// GlobalNetworkPolicy `security.deny-web` (tier `security`, order 5, before [`calico_objects`]' policies):
/// denies ingress to `app == 'api'` from `app == 'web'`.
pub fn calico_deny_web(api: &str) -> Value {
    calico_global_policy(
        api,
        "security.deny-web",
        json!({
            "tier": "security",
            "order": 5,
            "selector": "app == 'api'",
            "types": ["Ingress"],
            "ingress": [{"action": "Deny", "source": {"selector": "app == 'web'"}}],
        }),
    )
}

/// A Calico HostEndpoint of `api` on `node`: its interface (`*`: every interface of the node) and/or the addresses
/// it is expected at.
pub fn calico_host_endpoint(
    api: &str,
    name: &str,
    node: &str,
    labels: Value,
    interface: Option<&str>,
    expected_ips: &[&str],
) -> Value {
    let mut spec = json!({"node": node});
    if let Some(i) = interface {
        spec["interfaceName"] = json!(i);
    }
    if !expected_ips.is_empty() {
        spec["expectedIPs"] = json!(expected_ips);
    }
    json!({"apiVersion": api, "kind": "HostEndpoint", "metadata": {"name": name, "labels": labels}, "spec": spec})
}

/// HostEndpoint `worker-1-eth0` (`role=worker`): the eth0 of [`worker_node`], at its address 192.168.1.11. With no
/// policy and no profile, Felix drops what reaches it (but its failsafe ports: TCP 22, 179, 6443, ...).
pub fn calico_worker_endpoint(api: &str) -> Value {
    calico_host_endpoint(api, "worker-1-eth0", "worker-1", json!({"role": "worker"}), Some("eth0"), &["192.168.1.11"])
}

/// GlobalNetworkPolicy `host-kubelet` (the `default` tier): ingress to the `role == 'worker'` host endpoints on TCP
/// 10250 from `app == 'web'` is allowed; the tier denies the rest to them (their failsafe ports aside). So, with
/// [`calico_worker_endpoint`]: `frontend/web` → 192.168.1.11 10250 is allowed, `backend/api` → 192.168.1.11 10250
/// denied, anything → 192.168.1.11 22 allowed (failsafe).
pub fn calico_host_kubelet(api: &str) -> Value {
    calico_global_policy(
        api,
        "host-kubelet",
        json!({
            "selector": "role == 'worker'",
            "types": ["Ingress"],
            "ingress": [{"action": "Allow", "protocol": "TCP",
                "source": {"selector": "app == 'web'"}, "destination": {"ports": [10250]}}],
        }),
    )
}

// ---- Cilium ----

/// The apiVersion of Cilium's CRDs.
pub const CILIUM: &str = "cilium.io/v2";

/// A `cilium.io/v2` CiliumNetworkPolicy in `ns` (one rule: `spec`).
pub fn cilium_policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": CILIUM, "kind": "CiliumNetworkPolicy", "metadata": {"name": name, "namespace": ns},
        "spec": spec})
}

/// A `cilium.io/v2` CiliumClusterwideNetworkPolicy (one rule: `spec`).
pub fn cilium_clusterwide_policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": CILIUM, "kind": "CiliumClusterwideNetworkPolicy", "metadata": {"name": name}, "spec": spec})
}

/// Cilium's policies for the shared cluster:
///
/// - CiliumNetworkPolicy `backend/api-ingress`: ingress to `app=api` on TCP 8080 from `app=web` pods of the
///   `frontend` namespace is allowed; its `ingressDeny[0]` denies TCP 9090 from every pod of `frontend`.
/// - CiliumClusterwideNetworkPolicy `backend-not-to-frontend`: its `egressDeny[0]` denies the pods of `backend`
///   every connection to the pods of `frontend`.
///
/// So: `frontend/web` → `backend/api` 8080 is allowed, 9090 denied (by `spec.ingressDeny[0]`), 5432 denied (not
/// allowed); `backend/api` → `frontend/web` denied (by the clusterwide policy's `spec.egressDeny[0]`).
pub fn cilium_objects() -> Vec<Value> {
    vec![
        cilium_policy(
            "backend",
            "api-ingress",
            json!({
                "endpointSelector": {"matchLabels": {"app": "api"}},
                "ingress": [{
                    "fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "frontend", "app": "web"}}],
                    "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}],
                }],
                "ingressDeny": [{
                    "fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "frontend"}}],
                    "toPorts": [{"ports": [{"port": "9090", "protocol": "TCP"}]}],
                }],
            }),
        ),
        cilium_clusterwide_policy(
            "backend-not-to-frontend",
            json!({
                "endpointSelector": {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "backend"}},
                "egressDeny": [{"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "frontend"}}]}],
            }),
        ),
    ]
}

/// Puts [`cilium_objects`] into `server` (whose Cilium CRDs must be installed: [`FakeApiServer::set_cilium`]).
pub fn seed_cilium(server: &FakeApiServer) {
    for obj in cilium_objects() {
        server.put(obj);
    }
}

/// CiliumNetworkPolicy `backend/deny-web`: its `ingressDeny[0]` denies `app=api` every connection from `app=web`
/// pods of `frontend` (so `frontend/web` → `backend/api` 8080, allowed by [`cilium_objects`], is denied).
pub fn cilium_deny_web() -> Value {
    cilium_policy(
        "backend",
        "deny-web",
        json!({
            "endpointSelector": {"matchLabels": {"app": "api"}},
            "ingressDeny": [{
                "fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "frontend", "app": "web"}}],
            }],
        }),
    )
}

/// The apiVersion of CiliumCIDRGroup before Cilium 1.18 (which serves it at [`CILIUM`] too).
pub const CILIUM_V2ALPHA1: &str = "cilium.io/v2alpha1";

/// A CiliumCIDRGroup under `api` ([`CILIUM`] or [`CILIUM_V2ALPHA1`]) with `spec.externalCIDRs` = `cidrs`.
pub fn cilium_cidr_group(api: &str, name: &str, labels: Value, cidrs: &[&str]) -> Value {
    json!({"apiVersion": api, "kind": "CiliumCIDRGroup", "metadata": {"name": name, "labels": labels},
        "spec": {"externalCIDRs": cidrs}})
}

// ---- Services and their endpoints ----

/// A `v1` Service with one TCP port (443 to 6443); `selector`: `spec.selector`, or none (its endpoints are kept
/// by hand, as `default/kubernetes`' are).
pub fn service(ns: &str, name: &str, selector: Option<Value>) -> Value {
    let mut spec = json!({"type": "ClusterIP", "ports": [{"name": "https", "port": 443, "protocol": "TCP",
        "targetPort": 6443}]});
    if let Some(selector) = selector {
        spec["selector"] = selector;
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// A `discovery.k8s.io/v1` EndpointSlice of the Service `service` (its `kubernetes.io/service-name` label): one
/// ready IPv4 endpoint per address, port 6443.
pub fn endpoint_slice(ns: &str, name: &str, service: &str, addresses: &[&str]) -> Value {
    let endpoints: Vec<Value> =
        addresses.iter().map(|a| json!({"addresses": [a], "conditions": {"ready": true}})).collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns,
            "labels": {"kubernetes.io/service-name": service, "endpointslice.kubernetes.io/managed-by": "test"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
    })
}

/// A `v1` Endpoints object of the Service of the same name: one subset with `addresses`, port 6443.
pub fn endpoints(ns: &str, name: &str, addresses: &[&str]) -> Value {
    let addresses: Vec<Value> = addresses.iter().map(|a| json!({"ip": a})).collect();
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns},
        "subsets": [{"addresses": addresses, "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}],
    })
}

// ---- Antrea ----

/// The apiVersion of Antrea's CRDs.
pub const ANTREA: &str = "crd.antrea.io/v1beta1";

/// A `crd.antrea.io/v1beta1` Tier.
pub fn antrea_tier(name: &str, priority: u32) -> Value {
    json!({"apiVersion": ANTREA, "kind": "Tier", "metadata": {"name": name}, "spec": {"priority": priority}})
}

/// A `crd.antrea.io/v1beta1` ClusterGroup (`spec`: its selectors, ipBlocks, ...).
pub fn antrea_cluster_group(name: &str, spec: Value) -> Value {
    json!({"apiVersion": ANTREA, "kind": "ClusterGroup", "metadata": {"name": name}, "spec": spec})
}

/// A `crd.antrea.io/v1beta1` ClusterNetworkPolicy (ACNP).
pub fn antrea_cluster_policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": ANTREA, "kind": "ClusterNetworkPolicy", "metadata": {"name": name}, "spec": spec})
}

/// A `crd.antrea.io/v1beta1` NetworkPolicy (ANNP) in `ns`.
pub fn antrea_policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": ANTREA, "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// Antrea's objects for the shared cluster:
///
/// - Tier `sec` (priority 20) and ClusterGroup `web-pods` (the `app=web` pods);
/// - ACNP `guard-api` in `sec`: drops TCP 9090 to `app=api` from the group;
/// - ANNP `backend/api-self`: allows `app=api` every connection from its own namespace (`namespaces.match: Self`
///   is an ACNP's; an ANNP's `podSelector` peer stays in its namespace), then drops TCP 5432 from everywhere.
///
/// So: `frontend/web` → `backend/api` 9090 is dropped (ACNP `guard-api`), 5432 dropped (ANNP `api-self`), 8080
/// left to the NetworkPolicies.
pub fn antrea_objects() -> Vec<Value> {
    vec![
        antrea_tier("sec", 20),
        antrea_cluster_group("web-pods", json!({"podSelector": {"matchLabels": {"app": "web"}}})),
        antrea_cluster_policy(
            "guard-api",
            json!({
                "tier": "sec", "priority": 1,
                "appliedTo": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                "ingress": [{"action": "Drop", "from": [{"group": "web-pods"}],
                    "ports": [{"protocol": "TCP", "port": 9090}]}],
            }),
        ),
        antrea_policy(
            "backend",
            "api-self",
            json!({
                "priority": 5,
                "appliedTo": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                "ingress": [
                    {"action": "Allow", "from": [{"podSelector": {}}]},
                    {"action": "Drop", "from": [{"namespaceSelector": {}}],
                        "ports": [{"protocol": "TCP", "port": 5432}]},
                ],
            }),
        ),
    ]
}

/// Puts [`antrea_objects`] into `server` (whose Antrea CRDs must be installed: [`FakeApiServer::set_antrea`]).
pub fn seed_antrea(server: &FakeApiServer) {
    for obj in antrea_objects() {
        server.put(obj);
    }
}

/// ACNP `drop-web` in the emergency tier: drops every connection from the `web-pods` group to `app=api` (so
/// `frontend/web` → `backend/api` 8080, which the NetworkPolicies allow, is dropped).
pub fn antrea_drop_web() -> Value {
    antrea_cluster_policy(
        "drop-web",
        json!({
            "tier": "emergency", "priority": 1,
            "appliedTo": [{"podSelector": {"matchLabels": {"app": "api"}}}],
            "ingress": [{"action": "Drop", "from": [{"group": "web-pods"}]}],
        }),
    )
}
