//! `netpol serve` on Calico clusters (`projectcalico.org/v3`): policies, pods and tiers with Calico's tier names,
//! orders and rule criteria; explanations that walk Calico's tiers; what-if with Calico's kinds (Tiers, network
//! sets, policies in tiers of the cluster or new ones; deleting `gnp/name`); manifests in Calico's own shape that
//! load back into the same policy; the graph (edges against the per-pod matrix, outside addresses against the
//! engine's verdicts); every answer against its OpenAPI schema. On a fixture with every feature (`CALICO`), on
//! `tests/data/calico/`, and on every case of `tests/conformance/calico/` (each probe explained as upstream
//! expects).

use std::collections::BTreeMap;
use std::path::Path;

use axum::http::{Method, StatusCode};
use netpol_core::model::{Cluster, Policy, PolicyId, Scope};
use netpol_server::{router, AppState};
use serde_json::{json, Value};

use crate::common::{assert_declared, call, get, post, Res};
use crate::graph::{check_outside_against_query, edges_from_matrix, enc, graph_edges};

/// Every Calico feature netpol reads, in one cluster: two Tiers of its own (Pass and Deny defaults), a namespaced
/// policy and GlobalNetworkPolicies (subject `selector`, `namespaceSelector`, `serviceAccountSelector`), rules with
/// every action, protocols by name and number, `notProtocol`, `ipVersion`, `icmp`, ports, ranges, named ports with
/// and without a protocol, `notPorts`, `nets`, `notNets`, `selector`, `notSelector`, `namespaceSelector` (`all()`,
/// `global()`, a selector), `serviceAccounts`, the subject's own side; network sets; a Kubernetes NetworkPolicy in
/// Calico's `default` tier and a ClusterNetworkPolicy in `kube-admin`.
pub const CALICO: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: web}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops, labels: {team: ops}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: api, namespace: shop, labels: {trust: high}}
---
apiVersion: v1
kind: Pod
metadata: {name: api-0, namespace: shop, labels: {app: api}}
spec:
  serviceAccountName: api
  containers: [{name: c, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]}]
status: {podIP: 10.0.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
spec: {containers: [{name: c, ports: [{name: pg, containerPort: 5432}]}]}
status: {podIP: 10.0.1.20}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 80}]}]}
status: {podIP: 10.0.1.30}
---
apiVersion: v1
kind: Pod
metadata: {name: prom-0, namespace: ops, labels: {app: prometheus}}
spec: {containers: [{name: c, ports: [{name: metrics, containerPort: 9090}]}]}
status: {podIP: 10.0.2.10}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: platform}
spec: {order: 200}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: security.db-ingress, namespace: shop}
spec:
  tier: security
  order: 10
  selector: app == 'db'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {serviceAccounts: {names: [api]}}
    destination: {ports: [5432]}
  - action: Log
  - action: Pass
    source: {namespaceSelector: team == 'ops'}
  - action: Deny
    protocol: UDP
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: platform.web-egress}
spec:
  tier: platform
  order: 20
  namespaceSelector: team == 'web'
  types: [Egress]
  egress:
  - action: Deny
    destination: {selector: role == 'blocked', namespaceSelector: global()}
  - action: Allow
    protocol: UDP
    destination: {ports: [53, dns]}
  - action: Allow
    protocol: 6
    ipVersion: 4
    destination: {nets: [192.0.2.0/24], notNets: [192.0.2.128/25], ports: ["8000:8100", http], notPorts: [8050]}
  - action: Allow
    destination: {selector: app == 'db', namespaceSelector: all(), ports: [pg]}
  - action: Pass
    source: {selector: app == 'web'}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-ops}
spec:
  order: 100
  selector: app == 'prometheus'
  serviceAccountSelector: all()
  ingress:
  - action: Allow
    notProtocol: UDP
    source: {notSelector: app == 'web', nets: [10.0.0.0/8]}
  - action: Allow
    protocol: ICMP
    icmp: {type: 8, code: 0}
  egress:
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: ops-default, namespace: ops}
spec:
  ingress:
  - action: Allow
    source: {selector: app == 'prometheus'}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-ops, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}}], ports: [{port: 80}]}]
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {matchLabels: {team: web}}}
  ingress: [{name: ops, action: Pass, from: [{namespaces: {matchLabels: {team: ops}}}]}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: blocked, labels: {role: blocked}}
spec: {nets: [198.51.100.0/24]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: shop, labels: {role: partner}}
spec: {nets: [192.0.2.0/25]}
"#;

pub fn calico_state() -> (tempfile::TempDir, AppState) {
    state_of("calico.yaml", CALICO)
}

/// A server on one manifest text (written to a scratch file), which must load without diagnostics.
fn state_of(name: &str, text: &str) -> (tempfile::TempDir, AppState) {
    let dir = crate::common::tempdir();
    let file = dir.path().join(name);
    std::fs::write(&file, text).expect("write the fixture");
    let st = AppState::from_files(&[file.display().to_string()]).expect("the fixture loads");
    let m = st.model();
    let errors: Vec<_> = m.diagnostics.iter().filter(|d| d.severity == netpol_core::load::Severity::Error).collect();
    assert!(errors.is_empty(), "{name}: {errors:?}");
    (dir, st)
}

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn assert_error(r: &Res, status: StatusCode, field: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text());
    let j = r.json();
    assert_eq!(j["field"], field, "{j}");
    j["error"].as_str().filter(|e| !e.is_empty()).unwrap_or_else(|| panic!("no error message: {j}")).to_string()
}

fn by_ref<'a>(list: &'a Value, r: &str) -> &'a Value {
    list.as_array().unwrap().iter().find(|p| p["ref"] == r).unwrap_or_else(|| panic!("no {r}: {list}"))
}

/// The walk of one side as `tier policy order rule action` lines.
fn walk(side: &Value) -> Vec<String> {
    side["walk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {} {} {} {}",
                m["tier"].as_str().unwrap(),
                m["policy"].as_str().unwrap(),
                m["priority"],
                m["rule"],
                m["action"].as_str().unwrap()
            )
        })
        .collect()
}

// ---- policies, tiers, pods ----

#[tokio::test]
async fn policies_show_calico_kind_tier_order_selector_and_rule_criteria() {
    let (_dir, st) = calico_state();
    let app = router(st);
    let pols = get(&app, "/api/v1/policies").await.json();
    let refs: Vec<(&str, &str)> =
        pols.as_array().unwrap().iter().map(|p| (p["tier"].as_str().unwrap(), p["ref"].as_str().unwrap())).collect();
    assert_eq!(
        refs,
        [
            ("security", "caliconetworkpolicy/shop/security.db-ingress"),
            ("platform", "gnp/platform.web-egress"),
            ("kube-admin", "cnp/guard"),
            ("default", "gnp/allow-ops"),
            ("default", "shop/web-from-ops"),
            ("default", "caliconetworkpolicy/ops/ops-default"),
        ],
        "in evaluation order: Calico's tiers by order (security 100, platform 200, kube-admin 1000, default), each \
         tier's policies by order (none last)"
    );
    let db = by_ref(&pols, "caliconetworkpolicy/shop/security.db-ingress");
    assert_eq!(
        (&db["kind"], &db["order"], &db["namespace"], &db["selector"]),
        (
            &json!("NetworkPolicy.projectcalico.org"),
            &json!(10),
            &json!("shop"),
            &json!("(app == \"db\" && projectcalico.org/namespace == \"shop\")")
        )
    );
    assert!(
        db.get("priority").is_none() && db.get("podSelector").is_none() && db.get("namespaceSelector").is_none(),
        "{db}"
    );
    assert_eq!(
        db["ingressRules"][0],
        json!({
            "index": 0, "action": "allow", "apiAction": "Allow", "protocol": "TCP",
            "peers": ["selector (projectcalico.org/namespace == \"shop\" && projectcalico.org/serviceaccount in {\"api\"})"],
            "ports": ["5432/TCP"],
            "source": {"side": "peer", "selector": "(projectcalico.org/namespace == \"shop\" && projectcalico.org/serviceaccount in {\"api\"})"},
            "destination": {"side": "subject", "ports": ["5432/TCP"]},
        })
    );
    let actions: Vec<&str> =
        db["ingressRules"].as_array().unwrap().iter().map(|r| r["apiAction"].as_str().unwrap()).collect();
    assert_eq!(actions, ["Allow", "Log", "Pass", "Deny"]);
    assert_eq!(db["ingressRules"][2]["source"]["selector"], "pcns.team == \"ops\"");
    assert_eq!(db["ingressRules"][3]["protocol"], "UDP");

    let gnp = by_ref(&pols, "gnp/platform.web-egress");
    assert_eq!(
        (&gnp["kind"], &gnp["namespace"], &gnp["selector"]),
        (&json!("GlobalNetworkPolicy"), &json!(""), &json!("pcns.team == \"web\""))
    );
    assert_eq!(gnp["selectedPods"], json!(["shop/api-0", "shop/db-0", "shop/web-0"]));
    let eg = &gnp["egressRules"];
    assert_eq!(
        eg[0]["destination"],
        json!({"side": "peer", "selector": "(!has(projectcalico.org/namespace) && role == \"blocked\")"})
    );
    assert_eq!(eg[1]["ports"], json!(["53/UDP", "dns/UDP (named)"]));
    assert_eq!(
        eg[2],
        json!({
            "index": 2, "action": "allow", "apiAction": "Allow", "protocol": "TCP", "ipVersion": 4,
            "peers": ["nets 192.0.2.0/24, notNets 192.0.2.128/25, ipVersion 4"],
            "ports": ["8000-8100/TCP", "http/TCP (named)"], "notPorts": ["8050/TCP"],
            "source": {"side": "subject"},
            "destination": {"side": "peer", "nets": ["192.0.2.0/24"], "notNets": ["192.0.2.128/25"],
                            "ports": ["8000-8100/TCP", "http/TCP (named)"], "notPorts": ["8050/TCP"]},
        })
    );
    assert_eq!(eg[3]["ports"], json!(["pg (named port)"]), "a named port without protocol: once");
    assert_eq!(eg[3]["destination"]["selector"], "(has(projectcalico.org/namespace) && app == \"db\")");
    assert_eq!(eg[4]["source"], json!({"side": "subject", "selector": "app == \"web\""}), "the subject's own side");

    let ops = by_ref(&pols, "gnp/allow-ops");
    assert_eq!((&ops["tier"], &ops["order"]), (&json!("default"), &json!(100)));
    assert_eq!(ops["selector"], "(app == \"prometheus\" && has(projectcalico.org/serviceaccount))");
    assert_eq!(ops["ingressRules"][0]["notProtocol"], "UDP");
    assert_eq!(
        ops["ingressRules"][0]["source"],
        json!({"side": "peer", "notSelector": "app == \"web\"", "nets": ["10.0.0.0/8"]})
    );
    assert_eq!(
        (&ops["ingressRules"][1]["protocol"], &ops["ingressRules"][1]["icmp"]),
        (&json!("ICMP"), &json!({"type": 8, "code": 0}))
    );
    assert_eq!(ops["policyTypes"], json!(["Ingress", "Egress"]));
    // No order: `null`, last in its tier.
    let none = by_ref(&pols, "caliconetworkpolicy/ops/ops-default");
    assert_eq!((&none["order"], &none["selector"]), (&json!(null), &json!("projectcalico.org/namespace == \"ops\"")));
    // A Kubernetes NetworkPolicy in Calico's default tier, at order 1000; the admin kinds keep their priority.
    let np = by_ref(&pols, "shop/web-from-ops");
    assert_eq!((&np["tier"], &np["order"], &np["podSelector"]), (&json!("default"), &json!(1000), &json!("app=web")));
    assert!(np.get("source").is_none() && np["ingressRules"][0].get("source").is_none(), "{np}");
    let cnp = by_ref(&pols, "cnp/guard");
    assert_eq!((&cnp["tier"], &cnp["priority"]), (&json!("kube-admin"), &json!(5)));
    assert!(cnp.get("order").is_none(), "{cnp}");
}

#[tokio::test]
async fn tiers_list_calicos_tiers_in_evaluation_order() {
    let (_dir, st) = calico_state();
    let app = router(st);
    let tiers = get(&app, "/api/v1/tiers").await.json();
    let short: Vec<String> = tiers
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let pols: Vec<String> = t["policies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| format!("{}@{}", p["policy"].as_str().unwrap(), p.get("order").or(p.get("priority")).unwrap()))
                .collect();
            format!(
                "{} {} {} {} [{}]",
                t["name"].as_str().unwrap(),
                t["order"],
                t["defaultAction"].as_str().unwrap(),
                t["builtIn"],
                pols.join(" ")
            )
        })
        .collect();
    assert_eq!(
        short,
        [
            "security 100 Pass false [caliconetworkpolicy/shop/security.db-ingress@10]",
            "platform 200 Deny false [gnp/platform.web-egress@20]",
            "kube-admin 1000 Pass true [cnp/guard@5]",
            "default 1000000 Deny true [gnp/allow-ops@100 shop/web-from-ops@1000 caliconetworkpolicy/ops/ops-default@null]",
            "kube-baseline 10000000 Pass true []",
        ]
    );
    assert_eq!(tiers[1]["policies"][0]["pods"], 3);
    assert!(tiers[0]["source"].as_str().unwrap().ends_with("calico.yaml (document 7)"), "{}", tiers[0]);
    assert!(tiers[2].get("source").is_none());

    // Without Calico objects: the three tiers in Kubernetes' words.
    let app = router(AppState::from_files(&[crate::common::admin_example()]).unwrap());
    let tiers = get(&app, "/api/v1/tiers").await.json();
    let names: Vec<String> = tiers
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{} {} {}",
                t["name"].as_str().unwrap(),
                t["defaultAction"].as_str().unwrap(),
                t["policies"].as_array().unwrap().len()
            )
        })
        .collect();
    assert_eq!(names, ["Admin Pass 2", "NetworkPolicy Deny 1", "Baseline Pass 1"]);
}

#[tokio::test]
async fn pods_and_graph_nodes_list_policies_by_calico_tier_with_orders() {
    let (_dir, st) = calico_state();
    let app = router(st);
    let pods = get(&app, "/api/v1/pods").await.json();
    let pod = |ns: &str, name: &str| {
        pods.as_array().unwrap().iter().find(|p| p["namespace"] == ns && p["name"] == name).unwrap().clone()
    };
    let web = pod("shop", "web-0");
    assert_eq!(
        web["ingress"]["tiers"],
        json!([
            {"tier": "kube-admin", "policies": [{"policy": "cnp/guard", "kind": "ClusterNetworkPolicy", "priority": 5}]},
            {"tier": "default", "policies": [{"policy": "shop/web-from-ops", "kind": "NetworkPolicy", "order": 1000}]},
        ])
    );
    assert_eq!(
        web["egress"]["tiers"],
        json!([{"tier": "platform", "policies": [{"policy": "gnp/platform.web-egress", "kind": "GlobalNetworkPolicy", "order": 20}]}])
    );
    let db = pod("shop", "db-0");
    assert_eq!(db["ingress"]["policies"], json!(["caliconetworkpolicy/shop/security.db-ingress", "cnp/guard"]));
    assert_eq!(db["ingress"]["tiers"][0]["tier"], "security");
    let ops = pod("ops", "prom-0");
    assert_eq!(
        ops["ingress"]["tiers"],
        json!([{"tier": "default", "policies": [
            {"policy": "gnp/allow-ops", "kind": "GlobalNetworkPolicy", "order": 100},
            {"policy": "caliconetworkpolicy/ops/ops-default", "kind": "NetworkPolicy.projectcalico.org", "order": null},
        ]}])
    );

    let g = get(&app, "/api/v1/graph?port=5432&group=labels").await.json();
    let node = |id: &str| {
        g["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("{id}: {g}")).clone()
    };
    let db = node("shop/{app=db}");
    assert_eq!(
        db["ingress"]["tiers"],
        json!([
            {"tier": "security", "policies": [{"policy": "caliconetworkpolicy/shop/security.db-ingress", "kind": "NetworkPolicy.projectcalico.org", "order": 10, "pods": 1}]},
            {"tier": "kube-admin", "policies": [{"policy": "cnp/guard", "kind": "ClusterNetworkPolicy", "priority": 5, "pods": 1}]},
        ])
    );
    assert_eq!((&db["ingress"]["isolatedPods"], &db["ingress"]["networkPolicyPods"]), (&json!(1), &json!(0)));
    let g = get(&app, "/api/v1/graph?port=5432&group=namespace").await.json();
    let shop = g["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "shop").unwrap();
    let tiers: Vec<&str> =
        shop["egress"]["tiers"].as_array().unwrap().iter().map(|t| t["tier"].as_str().unwrap()).collect();
    assert_eq!(tiers, ["platform"]);
    assert_eq!(shop["egress"]["tiers"][0]["policies"][0]["pods"], 3);
}

#[tokio::test]
async fn the_graph_of_a_calico_cluster_is_the_engines() {
    let (_dir, st) = calico_state();
    let app = router(st);
    for port in ["5432/TCP", "8080/TCP", "53/UDP", "80/TCP", "9090/TCP", "8050/TCP", "8001/TCP"] {
        for group in ["labels", "namespace"] {
            let g = get(&app, &format!("/api/v1/graph?port={}&group={group}", enc(port))).await;
            assert_eq!(g.status, StatusCode::OK, "{}", g.text());
            let g = g.json();
            assert_eq!(graph_edges(&g), edges_from_matrix(&app, &g, port).await, "{port} by {group}");
        }
    }
    // Outside addresses: nets, notNets, network sets (198.51.100.0/24 blocked, 192.0.2.0/25 a partner set) and
    // ports decided by Calico's rules, tier by tier.
    check_outside_against_query(&app, &["8001/TCP", "8050/TCP", "53/UDP", "80/TCP", "443/TCP"]).await;
    let g = get(&app, "/api/v1/graph?port=8001/TCP&group=labels").await.json();
    let api = g["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "shop/{app=api}").unwrap();
    assert_eq!(api["toOutside"]["anyPods"], 0, "{api}");
    assert_eq!(api["toOutside"]["blocks"], json!(["192.0.2.0/25"]), "nets minus notNets: {api}");
}

// ---- explanations ----

#[tokio::test]
async fn explain_walks_calicos_tiers() {
    let (_dir, st) = calico_state();
    let app = router(st);
    // Ingress at db: security passes prometheus (its namespace), kube-admin passes it too; no later tier selects
    // db: the namespace profile allows.
    let j = get(&app, "/api/v1/explain?src=ops/prom-0&dst=shop/db-0&port=5432").await.json();
    assert_eq!(j["verdict"], "allow");
    assert_eq!(
        walk(&j["ingress"]),
        ["security caliconetworkpolicy/shop/security.db-ingress 10 2 pass", "kube-admin cnp/guard 5 0 pass"]
    );
    assert_eq!(j["ingress"]["decided_by"], "default");
    assert_eq!(walk(&j["egress"]), ["default gnp/allow-ops 100 0 allow"]);
    // The API's service account: allowed by the first rule of the first tier.
    let j = get(&app, "/api/v1/explain?src=shop/api-0&dst=shop/db-0&port=5432").await.json();
    assert_eq!(walk(&j["ingress"]), ["security caliconetworkpolicy/shop/security.db-ingress 10 0 allow"]);
    assert_eq!((&j["ingress"]["decided_by"], &j["verdict"]), (&json!("rule"), &json!("allow")));
    // The API's egress to db on 5432: the named port `pg` of the platform tier allows it.
    assert_eq!(walk(&j["egress"]), ["platform gnp/platform.web-egress 20 3 allow"]);
    // A blocked address: denied by a rule; an address no rule of the platform tier matches: its default action.
    let j = get(&app, "/api/v1/explain?src=shop/web-0&dst=198.51.100.7&port=80").await.json();
    assert_eq!(
        (&j["verdict"], walk(&j["egress"])),
        (&json!("deny"), vec!["platform gnp/platform.web-egress 20 0 deny".to_string()])
    );
    let j = get(&app, "/api/v1/explain?src=shop/api-0&dst=8.8.8.8&port=443").await.json();
    assert_eq!(j["verdict"], "deny");
    assert_eq!(
        (&j["egress"]["decided_by"], &j["egress"]["tier_default"]),
        (&json!("tier_default"), &json!("platform"))
    );
    assert!(j["egress"]["walk"].as_array().unwrap().is_empty(), "{j}");
    // web passes out of the platform tier (its own side, `source.selector`); no later tier selects it.
    let j = get(&app, "/api/v1/explain?src=shop/web-0&dst=8.8.8.8&port=443").await.json();
    assert_eq!(
        (&j["verdict"], walk(&j["egress"])),
        (&json!("allow"), vec!["platform gnp/platform.web-egress 20 4 pass".to_string()])
    );
    // A Kubernetes NetworkPolicy in the default tier, after the admin tier passes.
    let j = get(&app, "/api/v1/explain?src=ops/prom-0&dst=shop/web-0&port=80").await.json();
    assert_eq!(walk(&j["ingress"]), ["kube-admin cnp/guard 5 0 pass", "default shop/web-from-ops null 0 allow"]);
}

// ---- what-if ----

/// The diff's pod groups as `change src -> dst` lines, one per pair.
fn pairs(diff: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for g in diff["groups"].as_array().expect("groups") {
        for s in g["sources"].as_array().expect("sources") {
            for d in g["destinations"].as_array().expect("destinations") {
                out.push(format!(
                    "{} {} -> {}",
                    g["change"].as_str().unwrap(),
                    s.as_str().unwrap(),
                    d.as_str().unwrap()
                ));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn whatif_applies_calico_policies_tiers_and_network_sets() {
    let (_dir, st) = calico_state();
    let app = router(st);
    // A new tier before every other, with a GlobalNetworkPolicy that denies prometheus into shop: the diff's
    // cause shows the walk through it.
    let body = r#"
apply:
- apiVersion: projectcalico.org/v3
  kind: Tier
  metadata: {name: first}
  spec: {order: 1, defaultAction: Pass}
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkPolicy
  metadata: {name: first.no-ops}
  spec:
    tier: first
    selector: projectcalico.org/namespace == 'shop'
    ingress: [{action: Deny, source: {namespaceSelector: team == 'ops'}}]
"#;
    let r = post(&app, "/api/v1/whatif", "application/yaml", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let d = r.json();
    assert_eq!(
        pairs(&d),
        [
            "newly_denied ops/prom-0 -> shop/api-0",
            "newly_denied ops/prom-0 -> shop/db-0",
            "newly_denied ops/prom-0 -> shop/web-0"
        ]
    );
    let detail = &d["groups"][0]["cause_detail"]["new"]["ingress"];
    assert_eq!(walk(detail), ["first gnp/first.no-ops null 0 deny"], "{detail}");
    assert!(d["groups"][0]["cause"].as_str().unwrap().contains("gnp/first.no-ops"), "{}", d["groups"][0]["cause"]);

    // A policy in a tier of the cluster (named, not declared in the request): the cluster's tier, with its order.
    let body = r#"
apply:
- apiVersion: projectcalico.org/v3
  kind: NetworkPolicy
  metadata: {name: security.db-ingress, namespace: shop}
  spec:
    tier: security
    order: 10
    selector: app == 'db'
    ingress: [{action: Allow}]
"#;
    let r = post(&app, "/api/v1/whatif", "application/yaml", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let d = r.json();
    // Replaced, not added: what its rules denied (UDP from the API, web's ports but 5432) is allowed now.
    assert_eq!(pairs(&d), ["newly_allowed shop/api-0 -> shop/db-0", "newly_allowed shop/web-0 -> shop/db-0"], "{d}");
    for g in d["groups"].as_array().unwrap() {
        assert_eq!(
            walk(&g["cause_detail"]["new"]["ingress"]),
            ["security caliconetworkpolicy/shop/security.db-ingress 10 0 allow"]
        );
        assert_eq!(
            walk(&g["cause_detail"]["old"]["ingress"]),
            ["security caliconetworkpolicy/shop/security.db-ingress 10 3 deny"]
        );
    }

    // A Tier replacing the cluster's: platform passes what it does not decide, so web's and api's egress to the
    // outside is no longer denied at its end.
    let r = post(&app, "/api/v1/whatif", "application/yaml", "apply: [{apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: platform}, spec: {order: 200, defaultAction: Pass}}]").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let d = r.json();
    let out: Vec<String> = d["outside"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| format!("{} {} {}", g["change"].as_str().unwrap(), g["direction"].as_str().unwrap(), g["pods"]))
        .collect();
    assert!(out.iter().any(|o| o.starts_with("newly_allowed egress") && o.contains("shop/api-0")), "{out:?}");

    // A GlobalNetworkSet: its nets join the blocked addresses.
    let r = post(&app, "/api/v1/whatif", "application/yaml", "apply: [{apiVersion: projectcalico.org/v3, kind: GlobalNetworkSet, metadata: {name: more, labels: {role: blocked}}, spec: {nets: [192.0.2.0/24]}}]").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let d = r.json();
    let out: Vec<String> = d["outside"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| format!("{} {} {}", g["change"].as_str().unwrap(), g["direction"].as_str().unwrap(), g["addresses"]))
        .collect();
    assert!(
        !out.is_empty() && out.iter().all(|o| o.starts_with("newly_denied egress") && o.contains("192.0.2.")),
        "{out:?}"
    );

    // Deleting Calico policies by their references.
    let r = post(
        &app,
        "/api/v1/whatif",
        "application/json",
        json!({"delete": ["gnp/platform.web-egress", "caliconetworkpolicy/shop/security.db-ingress"]}).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(pairs(&r.json()).contains(&"newly_allowed shop/web-0 -> shop/db-0".to_string()), "{}", r.text());
    for (i, missing) in
        ["gnp/nope", "caliconetworkpolicy/ops/security.db-ingress", "shop/security.db-ingress"].iter().enumerate()
    {
        let r = post(&app, "/api/v1/whatif", "application/json", json!({"delete": [missing]}).to_string()).await;
        assert_error(&r, StatusCode::NOT_FOUND, "delete[0]");
        let _ = i;
    }
    let msg = assert_error(
        &post(&app, "/api/v1/whatif", "application/yaml", "delete: [nope]").await,
        StatusCode::BAD_REQUEST,
        "delete[0]",
    );
    assert!(msg.contains("gnp/name") && msg.contains("caliconetworkpolicy/namespace/name"), "{msg}");
}

#[tokio::test]
async fn whatif_errors_in_calico_objects_name_the_field() {
    let (_dir, st) = calico_state();
    let app = router(st);
    let gnp = |spec: &str| {
        format!("apply: [{{apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {{name: x}}, spec: {spec}}}]")
    };
    let r = post(&app, "/api/v1/whatif", "application/yaml", gnp("{ingress: [{action: Accept}]}")).await;
    let msg = assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[0].spec.ingress[0].action");
    assert!(msg.contains("Allow"), "{msg}");
    let r =
        post(&app, "/api/v1/whatif", "application/yaml", gnp("{selector: 'app ==', ingress: [{action: Allow}]}")).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[0].spec.selector");
    let r = post(
        &app,
        "/api/v1/whatif",
        "application/yaml",
        gnp("{egress: [{action: Allow, destination: {ports: [80]}}]}"),
    )
    .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[0].spec.egress[0].destination.ports");
    let r = post(
        &app,
        "/api/v1/whatif",
        "application/yaml",
        "apply: [{apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: t}, spec: {defaultAction: Allow}}]",
    )
    .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[0].spec.defaultAction");
    // A kind of another group.
    let r = post(
        &app,
        "/api/v1/whatif",
        "application/yaml",
        "apply: [{apiVersion: networking.k8s.io/v1, kind: GlobalNetworkPolicy, metadata: {name: x}, spec: {}}]",
    )
    .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[0].apiVersion");
    let msg = assert_error(
        &post(&app, "/api/v1/whatif", "application/yaml", "apply: [{kind: HostEndpoint}]").await,
        StatusCode::BAD_REQUEST,
        "apply[0].kind",
    );
    assert!(msg.contains("GlobalNetworkPolicy") && msg.contains("Tier"), "{msg}");

    // The graph what-if locates the field in the pasted text.
    let text = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {order: 5}\n---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: x, namespace: shop}\nspec:\n  tier: t\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [0]\n";
    let r = post(&app, "/api/v1/graph/whatif?port=80", "application/yaml", text).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let e = r.json();
    assert_eq!(
        (&e["field"], &e["document"], &e["line"]),
        (&json!("spec.ingress[0].destination.ports[0]"), &json!(1), &json!(15)),
        "{e}"
    );
}

#[tokio::test]
async fn graph_whatif_takes_calico_kinds() {
    let (_dir, st) = calico_state();
    let app = router(st);
    let text = "apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: first}
spec: {order: 1}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: first.db}
spec:
  tier: first
  selector: app == 'db'
  ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'web'}, destination: {ports: [5432]}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: shop, labels: {role: partner}}
spec: {nets: [192.0.2.0/24]}
";
    let r = post(
        &app,
        "/api/v1/graph/whatif?port=5432&group=labels&delete=caliconetworkpolicy/ops/ops-default",
        "application/yaml",
        text,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(
        j["applied"],
        json!([
            {"policy": "tier/first", "kind": "Tier", "tier": "first", "replaces": false, "selectedPods": 1},
            {"policy": "gnp/first.db", "kind": "GlobalNetworkPolicy", "tier": "first", "replaces": false, "selectedPods": 1},
            {"policy": "networkset/shop/partners", "kind": "NetworkSet", "tier": "", "replaces": true, "selectedPods": 0},
        ])
    );
    assert_eq!(j["deleted"], json!(["caliconetworkpolicy/ops/ops-default"]));
    // The first tier lets only web into db on 5432; its end denies the rest (the API's service account, prometheus).
    let changed: Vec<String> = j["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["change"] != "unchanged")
        .map(|e| {
            format!(
                "{} {} -> {}",
                e["change"].as_str().unwrap(),
                e["src"].as_str().unwrap(),
                e["dst"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(changed, ["removed ops/{app=prometheus} -> shop/{app=db}", "removed shop/{app=api} -> shop/{app=db}"]);
    let db = j["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "shop/{app=db}").unwrap();
    assert_eq!(db["ingress"]["tiers"][0]["tier"], "first", "the nodes after the change: {db}");
}

#[tokio::test]
async fn whatif_with_calico_kinds_on_a_cluster_without_them() {
    // The bundled admin-tiers example has no Calico objects; a Calico policy makes the built-in tiers Calico's.
    let app = router(AppState::from_files(&[crate::common::admin_example()]).unwrap());
    let text = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: quarantine}
spec:
  tier: quarantine
  selector: app == 'web'
  types: [Ingress]
";
    let r = post(&app, "/api/v1/graph/whatif?port=8080&group=labels", "application/yaml", text).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["applied"][0]["tier"], "quarantine", "a tier no Tier object declares: assumed (Deny, last)");
    let removed: Vec<&str> = j["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["change"] == "removed")
        .map(|e| e["dst"].as_str().unwrap())
        .collect();
    assert!(!removed.is_empty() && removed.iter().all(|d| d.ends_with("{app=web}")), "{removed:?}");
    let web = j["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "prod/{app=web}").unwrap();
    let tiers: Vec<&str> =
        web["ingress"]["tiers"].as_array().unwrap().iter().map(|t| t["tier"].as_str().unwrap()).collect();
    assert_eq!(tiers, ["kube-admin", "kube-baseline", "quarantine"], "Calico's names; no order: last");
}

// ---- manifests ----

/// Loading a manifest gives back the loaded policy: kind, tier (by name), order, scope, selectors (Calico's
/// combined ones included), rules (peers, ports, actions, Calico criteria) and directions.
fn assert_same_policy(what: &str, (a, ac): (&Policy, &Cluster), (b, bc): (&Policy, &Cluster)) {
    assert_eq!((a.kind, a.order, &a.name), (b.kind, b.order, &b.name), "{what}");
    // The built-in tiers by place (their names depend on whether the input has Calico objects), the others by name.
    if a.tier.index() < 3 {
        assert_eq!(a.tier, b.tier, "{what}: tier");
    }
    assert_eq!(ac.tiers[a.tier.index()].order, bc.tiers[b.tier.index()].order, "{what}: tier order");
    assert_eq!(
        ac.tiers[a.tier.index()].default_action,
        bc.tiers[b.tier.index()].default_action,
        "{what}: tier default"
    );
    match (&a.scope, &b.scope) {
        (Scope::Cluster(x), Scope::Cluster(y)) => assert_eq!(x, y, "{what}: subject namespaces"),
        (Scope::Namespace(x), Scope::Namespace(y)) => assert_eq!(ac.ns_name(*x), bc.ns_name(*y), "{what}: namespace"),
        _ => panic!("{what}: scope {:?} vs {:?}", a.scope, b.scope),
    }
    assert_eq!(a.pod_selector, b.pod_selector, "{what}: pod selector");
    assert_eq!(a.calico_selector, b.calico_selector, "{what}: Calico selector");
    assert_eq!(a.ingress, b.ingress, "{what}: ingress");
    assert_eq!(a.egress, b.egress, "{what}: egress");
    assert_eq!((a.affects_ingress, a.affects_egress), (b.affects_ingress, b.affects_egress), "{what}: directions");
}

/// Every policy's manifest (with its tier's, for a tier of Calico's own), loaded again, is the same policy;
/// pasted alone into a what-if it replaces the policy and changes nothing. Returns the manifests by reference.
async fn calico_manifests_round_trip(what: &str, st: &AppState) -> BTreeMap<String, String> {
    let model = st.model();
    let c = model.engine.cluster();
    let app = router(st.clone());
    let warned: Vec<String> = model.diagnostics.iter().filter_map(|d| d.object.clone()).collect();
    let mut texts = BTreeMap::new();
    for (i, pol) in c.policies.iter().enumerate() {
        let r = c.policy_ref(PolicyId::new(i));
        if pol.ingress.iter().chain(&pol.egress).any(|r| r.calico.as_ref().is_some_and(|c| c.unsupported.is_some())) {
            continue;
        }
        let m = get(&app, &format!("/api/v1/manifest?policy={}", enc(&r))).await;
        assert_eq!(m.status, StatusCode::OK, "{what} {r}: {}", m.text());
        assert!(m.content_type.starts_with("application/yaml"), "{}", m.content_type);
        let text = m.text();
        let tier = &c.tiers[pol.tier.index()];
        let mut full = text.clone();
        if pol.tier.index() >= 3 {
            let t = get(&app, &format!("/api/v1/manifest?tier={}", enc(&tier.name))).await;
            assert_eq!(t.status, StatusCode::OK, "{what} {r}: {}", t.text());
            full = format!("{}---\n{text}", t.text());
        }
        let back = netpol_core::load::load_str("manifest", &full);
        let ctx = format!("{what} {r}:\n{full}");
        let errors: Vec<_> =
            back.diagnostics.iter().filter(|d| d.severity == netpol_core::load::Severity::Error).collect();
        assert!(errors.is_empty(), "{ctx}\n{errors:?}");
        // Warnings only where loading the cluster warned about the policy too (source ports, unchecked names).
        if !back.diagnostics.is_empty() {
            assert!(warned.iter().any(|w| w.contains(&pol.name)), "{ctx}\n{:?}", back.diagnostics);
        }
        assert_eq!(back.cluster.policies.len(), 1, "{ctx}");
        assert_same_policy(&ctx, (pol, c), (&back.cluster.policies[0], &back.cluster));
        let w = post(&app, "/api/v1/graph/whatif", "application/yaml", text.clone()).await;
        assert_eq!(w.status, StatusCode::OK, "{ctx}\n{}", w.text());
        let w = w.json();
        assert_eq!(w["diff"]["groups"], json!([]), "{ctx}\n{w}");
        assert_eq!(w["diff"]["outside"].as_array().map_or(0, |o| o.len()), 0, "{ctx}\n{w}");
        assert_eq!(w["applied"][0]["replaces"], true, "{ctx}");
        texts.insert(r, text);
    }
    texts
}

#[tokio::test]
async fn manifests_of_calico_policies_round_trip_in_their_own_shape() {
    let (_dir, st) = calico_state();
    let texts = calico_manifests_round_trip("fixture", &st).await;
    assert_eq!(texts.len(), 6);
    let t = &texts["caliconetworkpolicy/shop/security.db-ingress"];
    assert!(t.starts_with("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: security.db-ingress\n  namespace: shop\nspec:\n  tier: security\n  order: 10\n  selector: app == \"db\"\n  types:\n  - Ingress\n"), "{t}");
    assert!(t.contains("  - action: Allow\n    protocol: TCP\n    source:\n      selector: projectcalico.org/serviceaccount in {\"api\"}\n    destination:\n      ports:\n      - 5432\n"), "{t}");
    assert!(t.contains("  - action: Pass\n    source:\n      namespaceSelector: team == \"ops\"\n"), "{t}");
    let t = &texts["gnp/platform.web-egress"];
    assert!(t.starts_with("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: platform.web-egress\nspec:\n  tier: platform\n  order: 20\n  namespaceSelector: team == \"web\"\n"), "{t}");
    assert!(
        t.contains("    destination:\n      selector: role == \"blocked\"\n      namespaceSelector: global()\n"),
        "{t}"
    );
    assert!(t.contains("    protocol: TCP\n    ipVersion: 4\n    destination:\n      nets:\n      - 192.0.2.0/24\n      notNets:\n      - 192.0.2.128/25\n      ports:\n      - \"8000:8100\"\n      - http\n      notPorts:\n      - 8050\n"), "{t}");
    assert!(
        t.contains("      selector: app == \"db\"\n      namespaceSelector: all()\n      ports:\n      - pg\n"),
        "{t}"
    );
    assert!(t.contains("  - action: Pass\n    source:\n      selector: app == \"web\"\n"), "{t}");
    let t = &texts["gnp/allow-ops"];
    assert!(
        t.contains(
            "  tier: default\n  order: 100\n  selector: app == \"prometheus\"\n  serviceAccountSelector: all()\n"
        ),
        "{t}"
    );
    assert!(
        t.contains(
            "    notProtocol: UDP\n    source:\n      notSelector: app == \"web\"\n      nets:\n      - 10.0.0.0/8\n"
        ),
        "{t}"
    );
    assert!(t.contains("    protocol: ICMP\n    icmp:\n      type: 8\n      code: 0\n"), "{t}");
    let t = &texts["caliconetworkpolicy/ops/ops-default"];
    assert!(
        !t.contains("order") && !t.contains("\n  selector:") && t.contains("      selector: app == \"prometheus\"\n"),
        "{t}"
    );
    assert!(texts["shop/web-from-ops"].starts_with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"));
    assert!(texts["cnp/guard"].contains("  tier: Admin\n"), "the admin kinds keep their own tier names");

    // Tiers, by the names the answers give them.
    let app = router(st);
    let t = get(&app, "/api/v1/manifest?tier=security").await.text();
    assert_eq!(t, "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  order: 100\n  defaultAction: Pass\n");
    let t = get(&app, "/api/v1/manifest?tier=kube-baseline").await.text();
    assert!(t.contains("  name: kube-baseline\nspec:\n  order: 10000000\n  defaultAction: Pass\n"), "{t}");
    assert_error(&get(&app, "/api/v1/manifest?tier=nope").await, StatusCode::NOT_FOUND, "tier");
    assert_error(&get(&app, "/api/v1/manifest?policy=gnp/nope").await, StatusCode::NOT_FOUND, "policy");
    let msg = assert_error(&get(&app, "/api/v1/manifest?policy=allow-ops").await, StatusCode::BAD_REQUEST, "policy");
    assert!(msg.contains("gnp/name"), "{msg}");
}

#[tokio::test]
async fn manifests_of_the_calico_fixtures_round_trip() {
    for f in ["cluster.yaml", "crd-v1.yaml", "calicoctl-list.yaml", "gnp-list.json"] {
        let text = std::fs::read_to_string(root().join("tests/data/calico").join(f)).unwrap();
        let (_dir, st) = state_of(f, &text);
        let texts = calico_manifests_round_trip(f, &st).await;
        assert!(!texts.is_empty(), "{f}");
    }
    // Rules netpol does not evaluate (`services`, `http`): the manifest says so in a comment, and leaves the match
    // out.
    let text = format!(
        "{CALICO}---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: unmodelled, namespace: shop}}
spec:
  selector: app == 'api'
  ingress:
  - action: Allow
    http: {{methods: [GET]}}
  - action: Allow
    source: {{selector: app == 'web'}}
  egress:
  - action: Allow
    destination: {{services: {{name: db}}}}
"
    );
    let (_dir, st) = state_of("unmodelled.yaml", &text);
    let app = router(st);
    let t = get(&app, "/api/v1/manifest?policy=caliconetworkpolicy/shop/unmodelled").await.text();
    assert!(
        t.starts_with("# spec.ingress[0]: `http`: HTTP matches are not modelled; the match is not written here"),
        "{t}"
    );
    assert!(t.contains("# spec.egress[0]: `destination.services`: Kubernetes Services are not modelled;"), "{t}");
    assert!(!t.contains("http:") && !t.contains("services:"), "{t}");
    let back = netpol_core::load::load_str("m", &t);
    assert!(back.diagnostics.is_empty(), "{:?}", back.diagnostics);
    let pols = get(&app, "/api/v1/policies").await.json();
    let p = by_ref(&pols, "caliconetworkpolicy/shop/unmodelled");
    assert_eq!(p["ingressRules"][0]["unsupported"], "`http`: HTTP matches are not modelled");
    assert!(p["ingressRules"][1].get("unsupported").is_none());
}

// ---- the conformance cases, every endpoint ----

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    manifests: String,
    probes: Vec<Probe>,
}

#[derive(serde::Deserialize)]
struct Probe {
    from: String,
    to: String,
    port: u16,
    protocol: String,
    expect: String,
}

/// Every case of `tests/conformance/calico/`: the policies, pods, tiers and graph answer (and match their schemas),
/// each probe is explained as upstream expects (tier by tier, matching the schema), and every policy's manifest
/// round-trips.
#[tokio::test]
async fn every_calico_conformance_case_through_the_api() {
    let dir = root().join("tests/conformance/calico");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "{} cases", files.len());
    let mut probes = 0;
    for f in files {
        let case: Case = serde_yaml_ng::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let (_dir, st) = state_of(&format!("{}.yaml", case.name), &case.manifests);
        let app = router(st.clone());
        let doc = get(&app, "/api/v1/openapi.json").await.json();
        for (method, path, query) in [
            (Method::GET, "/api/v1/policies", ""),
            (Method::GET, "/api/v1/pods", ""),
            (Method::GET, "/api/v1/tiers", ""),
            (Method::GET, "/api/v1/graph", "?group=labels"),
        ] {
            let r = call(&app, method.clone(), &format!("{path}{query}"), &[], vec![]).await;
            assert_eq!(r.status, StatusCode::OK, "{}: {path}: {}", case.name, r.text());
            assert_declared(&doc, &method, path, &r);
        }
        let tiers = get(&app, "/api/v1/tiers").await.json();
        let names: Vec<&str> = tiers.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        for builtin in ["kube-admin", "default", "kube-baseline"] {
            assert!(names.contains(&builtin), "{}: {names:?}", case.name);
        }
        for p in &case.probes {
            let q = format!("?src={}&dst={}&port={}/{}", enc(&p.from), enc(&p.to), p.port, p.protocol);
            let r = get(&app, &format!("/api/v1/explain{q}")).await;
            assert_eq!(r.status, StatusCode::OK, "{}: {q}: {}", case.name, r.text());
            assert_declared(&doc, &Method::GET, "/api/v1/explain", &r);
            let j = r.json();
            assert_eq!(j["verdict"], p.expect, "{}: {} -> {} {}/{}: {j}", case.name, p.from, p.to, p.port, p.protocol);
            for side in ["egress", "ingress"] {
                let s = &j[side];
                for m in s["walk"].as_array().unwrap() {
                    assert!(names.contains(&m["tier"].as_str().unwrap()), "{}: {m}", case.name);
                }
                if s["decided_by"] == "tier_default" {
                    assert!(
                        names.contains(&s["tier_default"].as_str().unwrap()) && s["allowed"] == false,
                        "{}: {s}",
                        case.name
                    );
                }
            }
            probes += 1;
        }
        calico_manifests_round_trip(&case.name, &st).await;
    }
    assert!(probes >= 250, "{probes} probes");
}

// ---- the OpenAPI schemas ----

#[tokio::test]
async fn calico_answers_match_their_openapi_schemas() {
    let (_dir, st) = calico_state();
    let app = router(st);
    let doc = get(&app, "/api/v1/openapi.json").await.json();
    let gnp = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: x}\nspec: {tier: platform, ingress: [{action: Deny}]}\n";
    let flows = json!([
        {"src": "shop/api-0", "dst": "8.8.8.8", "port": 443},
        {"src": "ops/prom-0", "dst": "shop/db-0", "port": 5432},
        {"src": "shop/web-0", "dst": "198.51.100.7", "port": 53, "protocol": "UDP"},
    ]);
    let cases: Vec<(Method, &str, String, Vec<u8>)> = vec![
        (Method::GET, "/api/v1/explain", "?src=shop/api-0&dst=8.8.8.8&port=443".into(), vec![]),
        (Method::GET, "/api/v1/explain", "?src=ops/prom-0&dst=shop/db-0&port=5432".into(), vec![]),
        (Method::GET, "/api/v1/explain", "?src=ops/prom-0&dst=ops/prom-0&port=9090".into(), vec![]),
        (Method::POST, "/api/v1/query", "?explain=true".into(), flows.to_string().into_bytes()),
        (Method::GET, "/api/v1/pods", String::new(), vec![]),
        (Method::GET, "/api/v1/policies", String::new(), vec![]),
        (Method::GET, "/api/v1/tiers", String::new(), vec![]),
        (Method::GET, "/api/v1/graph", "?port=5432".into(), vec![]),
        (Method::POST, "/api/v1/graph/whatif", "?port=5432".into(), gnp.as_bytes().to_vec()),
        (
            Method::POST,
            "/api/v1/whatif",
            String::new(),
            format!("apply:\n- {}", gnp.replace('\n', "\n  ")).into_bytes(),
        ),
        (Method::GET, "/api/v1/manifest", "?policy=gnp/allow-ops".into(), vec![]),
        (Method::GET, "/api/v1/manifest", "?tier=platform".into(), vec![]),
        (Method::GET, "/api/v1/manifest", "?tier=nope".into(), vec![]),
    ];
    for (method, path, query, body) in cases {
        let ct = if path.contains("whatif") { "application/yaml" } else { "application/json" };
        let r = call(&app, method.clone(), &format!("{path}{query}"), &[("content-type", ct)], body).await;
        if r.status != StatusCode::OK && r.status != StatusCode::NOT_FOUND {
            panic!("{method} {path}{query}: {} {}", r.status, r.text());
        }
        assert_declared(&doc, &method, path, &r);
    }
    // The new fields are in the schemas.
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [
        ("PolicyInfo", "order"),
        ("PolicyInfo", "selector"),
        ("PolicyRule", "notProtocol"),
        ("PolicyRule", "source"),
        ("PolicyRule", "notPorts"),
        ("PolicyRule", "ipVersion"),
        ("CalicoEntity", "notNets"),
        ("TierPolicy", "order"),
        ("TierInfo", "defaultAction"),
        ("SideExplanation", "tier_default"),
    ] {
        assert!(schemas[schema]["properties"][field].is_object(), "{schema}.{field}: {}", schemas[schema]);
    }
    assert!(doc["paths"]["/api/v1/tiers"]["get"].is_object());
    let decided = schemas["DecidedBy"].to_string();
    assert!(decided.contains("tier_default"), "{decided}");
}

// ---- staged policies ----

/// Calico's staged policies (tests/data/calico/staged): `GET /api/v1/explain` and `POST /api/v1/query?explain=true`
/// carry the staged verdict (`staged`) as `netpol explain` does, verdicts stay the enforced ones, the staged view is
/// compiled with the model (and again on reload), the answers match their schemas, and the UI renders it.
#[tokio::test]
async fn explain_and_query_carry_the_staged_verdict() {
    let dir = crate::common::tempdir();
    let staged_dir = root().join("tests/data/calico/staged");
    for f in ["cluster.yaml", "deny.yaml"] {
        std::fs::copy(staged_dir.join(f), dir.path().join(f)).unwrap();
    }
    let st = AppState::from_files(&[dir.path().display().to_string()]).unwrap();
    assert!(st.model().staged.is_some(), "the staged view is compiled with the model");
    let app = router(st.clone());
    let doc = get(&app, "/api/v1/openapi.json").await.json();
    let r = get(&app, "/api/v1/explain?src=ops/monitor-1&dst=shop/api&port=8080").await;
    assert_declared(&doc, &Method::GET, "/api/v1/explain", &r);
    let j = r.json();
    assert_eq!(
        (&j["verdict"], &j["staged"]["verdict"], &j["staged"]["changed"]),
        (&json!("allow"), &json!("deny"), &json!(true))
    );
    assert_eq!(j["staged"]["policies"][0]["kind"], "StagedNetworkPolicy");
    assert_eq!(j["staged"]["policies"][0]["name"], "shop/deny-ops");
    assert_eq!(j["staged"]["policies"][0]["action"], "Set");
    assert_eq!(walk(&j["staged"]["ingress"]), ["security caliconetworkpolicy/shop/deny-ops 10 0 deny"]);
    // The same object as the CLI's (one engine, the same code).
    let engine = netpol_core::compile::Engine::new(
        netpol_input::files::load(&[dir.path().display().to_string()]).unwrap().0.cluster,
    );
    let staged = netpol_core::staged::staged_engine(&engine).unwrap();
    let r = netpol_input::query::Resolver::new(&engine, "default");
    let (s, d) = (r.endpoint("ops/monitor-1").unwrap(), r.endpoint("shop/api").unwrap());
    let ex = netpol_core::staged::explain_with_staged(
        &engine,
        &staged,
        &s,
        &d,
        None,
        netpol_core::portset::Protocol::Tcp,
        8080,
    );
    let mut want = serde_json::to_value(&ex).unwrap();
    want["cni"] = netpol_input::cni_json(&engine);
    assert_eq!(j, want);
    // Query with explanations: each carries `staged`; the verdict is the enforced one.
    let flows = json!([{"src": "ops/monitor-1", "dst": "shop/api", "port": 8080}, {"src": "shop/web", "dst": "shop/api", "port": 8080}]);
    let r = post(&app, "/api/v1/query?explain=true", "application/json", flows.to_string()).await;
    assert_declared(&doc, &Method::POST, "/api/v1/query", &r);
    let a = r.json();
    assert_eq!((&a[0]["verdict"], &a[0]["explain"]["staged"]["verdict"]), (&json!("allow"), &json!("deny")));
    // The same object as `GET /api/v1/explain`, its `cni` included.
    assert_eq!(a[0]["explain"], j);
    assert_eq!(
        (&a[1]["explain"]["staged"]["verdict"], &a[1]["explain"]["staged"]["changed"]),
        (&json!("allow"), &json!(false))
    );
    // The schema names the staged part.
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["Explanation"]["properties"]["staged"].is_object(), "{}", schemas["Explanation"]);
    assert!(schemas["StagedExplanation"]["properties"]["changed"].is_object());
    // The staged policy gone: a reload compiles no staged view, and `staged` is absent.
    std::fs::remove_file(dir.path().join("deny.yaml")).unwrap();
    st.reload().unwrap();
    assert!(st.model().staged.is_none());
    let j = get(&app, "/api/v1/explain?src=ops/monitor-1&dst=shop/api&port=8080").await.json();
    assert!(j.get("staged").is_none(), "{j}");
    // The UI renders it: "staged: would allow/deny".
    let js = get(&app, "/ui/panels.js").await.text();
    assert!(
        js.contains("x.staged ? stagedPart(x, side) : null") && js.contains("`staged: would ${st.verdict}`"),
        "{js}"
    );
}

// ---- host endpoints ----

/// Calico host endpoints (tests/data/calico/hosts.yaml): `GET /api/v1/hostendpoints` lists each with its
/// addresses and the policies of each stage; explanations through `GET /api/v1/explain` and
/// `POST /api/v1/query?explain=true` carry each host check (`hosts`, `host_note`) as `netpol explain` does, and
/// match their schemas; the UI renders them.
#[tokio::test]
async fn host_endpoints_and_their_checks_through_the_api() {
    let text = std::fs::read_to_string(root().join("tests/data/calico/hosts.yaml")).unwrap();
    let (dir, st) = state_of("hosts.yaml", &text);
    let app = router(st.clone());
    let doc = get(&app, "/api/v1/openapi.json").await.json();

    let r = get(&app, "/api/v1/hostendpoints").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_declared(&doc, &Method::GET, "/api/v1/hostendpoints", &r);
    let j = r.json();
    let file = dir.path().join("hosts.yaml").display().to_string();
    assert_eq!(
        j,
        json!([{
            "name": "node1-eth0",
            "node": "node1",
            "interface": "eth0",
            "expectedIPs": ["10.0.0.1"],
            "addresses": ["10.0.0.1"],
            "labels": {"role": "node"},
            "profiles": [],
            "ports": [],
            "stages": [
                {"stage": "pre-DNAT", "ingress": ["gnp/edge-block"], "egress": []},
                {"stage": "normal", "ingress": ["gnp/node-ingress"], "egress": []},
            ],
            "source": format!("{file} (document 3)"),
        }])
    );

    // To the host: the normal policy allows the monitoring network on 9100; the rest is denied (no profile).
    let explain = |q: &str| format!("/api/v1/explain?{q}");
    let r = get(&app, &explain("src=10.9.1.1&dst=10.0.0.1&port=9100")).await;
    assert_declared(&doc, &Method::GET, "/api/v1/explain", &r);
    let x = r.json();
    assert_eq!(x["verdict"], "allow", "{x}");
    let c = &x["hosts"][0];
    assert_eq!(
        (&c["host_endpoint"], &c["node"], &c["path"]),
        (&json!("node1-eth0"), &json!("node1"), &json!("to-host"))
    );
    let stages: Vec<&str> = c["stages"].as_array().unwrap().iter().map(|s| s["subject"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        [
            "host endpoint node1-eth0 (untracked policies)",
            "host endpoint node1-eth0 (pre-DNAT policies)",
            "host endpoint node1-eth0 (normal policies)"
        ]
    );
    assert_eq!(walk(&c["stages"][2]), ["default gnp/node-ingress 100 0 allow"]);
    let x = get(&app, &explain("src=10.9.1.1&dst=10.0.0.1&port=9200")).await.json();
    assert_eq!((&x["verdict"], &x["hosts"][0]["allowed"]), (&json!("deny"), &json!(false)), "{x}");
    // A failsafe port: accepted ahead of every policy of the host endpoint.
    let r = get(&app, &explain("src=10.66.1.1&dst=10.0.0.1&port=22")).await;
    assert_declared(&doc, &Method::GET, "/api/v1/explain", &r);
    let x = r.json();
    assert_eq!(x["verdict"], "allow", "{x}");
    assert!(x["hosts"][0]["failsafe"].as_str().is_some_and(|f| f.contains("FailsafeInboundHostPorts")), "{x}");
    // Forwarded in to a pod of node1: the pre-DNAT policy denies the blocked network before the pod's policies.
    let r = get(&app, &explain("src=10.66.1.1&dst=shop/web&port=8080")).await;
    assert_declared(&doc, &Method::GET, "/api/v1/explain", &r);
    let x = r.json();
    assert_eq!((&x["verdict"], &x["hosts"][0]["path"]), (&json!("deny"), &json!("forwarded-in")), "{x}");
    assert!(x["host_note"].as_str().is_some_and(|n| n.contains("netpol does not know routes")), "{x}");

    // The same object as the CLI's.
    let engine =
        netpol_core::compile::Engine::new(netpol_input::files::load(std::slice::from_ref(&file)).unwrap().0.cluster);
    let r = netpol_input::query::Resolver::new(&engine, "default");
    let (s, d) = (r.endpoint("10.66.1.1").unwrap(), r.endpoint("shop/web").unwrap());
    let ex = engine.explain(&s, &d, netpol_core::portset::Protocol::Tcp, 8080);
    let mut want = serde_json::to_value(&ex).unwrap();
    want["cni"] = netpol_input::cni_json(&engine);
    assert_eq!(x, want);
    // Query with explanations: each carries its host checks.
    let flows = json!([{"src": "10.66.1.1", "dst": "shop/web", "port": 8080}, {"src": "10.9.1.1", "dst": "10.0.0.1", "port": 9100}]);
    let r = post(&app, "/api/v1/query?explain=true", "application/json", flows.to_string()).await;
    assert_declared(&doc, &Method::POST, "/api/v1/query", &r);
    let a = r.json();
    // The same object as `GET /api/v1/explain`, with the CNI the answer follows (`cni`).
    assert_eq!(a[0]["explain"], x);
    assert_eq!(x["cni"]["name"], "calico", "{x}");
    assert_eq!((&a[1]["verdict"], &a[1]["explain"]["hosts"][0]["path"]), (&json!("allow"), &json!("to-host")));

    // The schemas name them.
    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [
        ("Explanation", "hosts"),
        ("Explanation", "host_note"),
        ("HostExplanation", "failsafe"),
        ("HostExplanation", "stages"),
        ("HostEndpointInfo", "addresses"),
        ("HostEndpointInfo", "stages"),
        ("HostStagePolicies", "ingress"),
    ] {
        assert!(schemas[schema]["properties"][field].is_object(), "{schema}.{field}: {}", schemas[schema]);
    }
    assert!(schemas["DecidedBy"].to_string().contains("profile"));
    assert!(schemas["HostPath"].to_string().contains("forwarded-in"));

    // Without host endpoints: an empty list.
    let (_dir, plain) = calico_state();
    assert_eq!(get(&router(plain), "/api/v1/hostendpoints").await.json(), json!([]));

    // The UI renders each check: host endpoint, path, verdict, failsafe line, and each stage as a side.
    let js = get(&app, "/ui/panels.js").await.text();
    assert!(
        js.contains("x.hosts && x.hosts.length ? hostsPart(x, side) : null")
            && js.contains("c.stages.map((s) => side(s,")
            && js.contains("c.failsafe ? h('div', { class: 'note failsafe' }, c.failsafe)"),
        "{js}"
    );
}
