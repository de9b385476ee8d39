//! The web UI's endpoints and assets (`crates/netpol-server/src/ui.rs`) through `router(...)`: the graph against the
//! per-pod matrix on every port of the example and on a 1,000-pod synthetic cluster, filters and grouping, the
//! what-if graph (edges and located errors), policy manifests that round-trip, and the embedded assets.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::http::{Method, StatusCode};
use netpol_server::{router, AppState};
use serde_json::Value;

use crate::common::{call, example, get, Res};

fn app() -> axum::Router {
    router(AppState::from_files(&[example()]).expect("three-tier loads"))
}

async fn whatif(app: &axum::Router, query: &str, text: &str) -> Res {
    call(
        app,
        Method::POST,
        &format!("/api/v1/graph/whatif{query}"),
        &[("content-type", "application/yaml")],
        text.into(),
    )
    .await
}

pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn assert_error(r: &Res, status: StatusCode, field: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let j = r.json();
    assert_eq!(j["field"], field, "{j}");
    assert!(j["error"].as_str().is_some_and(|e| !e.is_empty()), "{j}");
}

/// Edges (src, dst) → (pairs, total) computed here from the per-pod matrix and the graph's pod lists.
pub(crate) async fn edges_from_matrix(
    app: &axum::Router,
    graph: &Value,
    port: &str,
) -> BTreeMap<(String, String), (u64, u64)> {
    let m = get(app, &format!("/api/v1/matrix?port={}", enc(port))).await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.text());
    let m = m.json();
    let mut node_of: HashMap<String, String> = HashMap::new();
    let mut count: HashMap<String, u64> = HashMap::new();
    for n in graph["nodes"].as_array().unwrap() {
        let (id, ns) = (n["id"].as_str().unwrap(), n["namespace"].as_str().unwrap());
        let pods = n["pods"].as_array().unwrap();
        assert_eq!(pods.len() as u64, n["count"].as_u64().unwrap(), "{n}: every pod listed");
        for p in pods {
            assert!(node_of.insert(format!("{ns}/{}", p.as_str().unwrap()), id.to_string()).is_none(), "{p} twice");
        }
        count.insert(id.to_string(), n["count"].as_u64().unwrap());
    }
    let pods: Vec<&str> = m["pods"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    let rows = m["ports"][0]["rows"].as_array().unwrap();
    let mut out: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for (i, a) in pods.iter().enumerate() {
        let row = rows[i].as_array().unwrap();
        for (j, b) in pods.iter().enumerate() {
            if i == j || !row[j].as_bool().unwrap() {
                continue;
            }
            let (na, nb) = (node_of[*a].clone(), node_of[*b].clone());
            let total = if na == nb { count[&na] * (count[&na] - 1) } else { count[&na] * count[&nb] };
            out.entry((na, nb)).or_insert((0, total)).0 += 1;
        }
    }
    out
}

pub(crate) fn graph_edges(graph: &Value) -> BTreeMap<(String, String), (u64, u64)> {
    graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let key = (e["src"].as_str().unwrap().to_string(), e["dst"].as_str().unwrap().to_string());
            (key, (e["pairs"].as_u64().unwrap(), e["total"].as_u64().unwrap()))
        })
        .collect()
}

#[tokio::test]
async fn graph_equals_the_per_pod_matrix_on_every_port_and_grouping() {
    let app = app();
    for port in ["8080/TCP", "8080", "5432/TCP", "53/UDP", "53/TCP", "9100/TCP", "9090/TCP", "443/TCP", "1/SCTP"] {
        for group in ["labels", "app", "namespace"] {
            let r = get(&app, &format!("/api/v1/graph?port={}&group={group}", enc(port))).await;
            assert_eq!(r.status, StatusCode::OK, "{port} {group}: {}", r.text());
            let g = r.json();
            assert_eq!(g["grouping"], group);
            assert_eq!(g["totalPods"], 12);
            let want = edges_from_matrix(&app, &g, port).await;
            assert_eq!(graph_edges(&g), want, "{port} by {group}");
            // Every example is an allowed pair of distinct pods of the edge's nodes.
            for e in g["edges"].as_array().unwrap() {
                let ex = e["example"].as_array().unwrap();
                assert_ne!(ex[0], ex[1], "{e}");
                let x = get(
                    &app,
                    &format!(
                        "/api/v1/explain?src={}&dst={}&port={}",
                        ex[0].as_str().unwrap(),
                        ex[1].as_str().unwrap(),
                        enc(port)
                    ),
                )
                .await;
                assert_eq!(x.json()["verdict"], "allow", "{e}");
            }
        }
    }
    // The example's shape on its main port, by labels.
    let g = get(&app, "/api/v1/graph?port=8080/TCP").await.json();
    assert_eq!(g["grouping"], "labels");
    let ids: Vec<&str> = g["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "backend/{app=api}",
            "backend/{app=worker}",
            "database/{app=postgres}",
            "frontend/{app=web}",
            "kube-system/{k8s-app=kube-dns}",
            "monitoring/{app=prometheus}"
        ]
    );
    let web = &g["nodes"][3];
    assert_eq!(web["name"], "web");
    assert_eq!(web["count"], 2);
    assert_eq!(web["ingress"]["isolatedPods"], 2);
    assert_eq!(web["ingress"]["policies"], serde_json::json!(["frontend/allow-web-ingress", "frontend/default-deny"]));
    assert_eq!(g["nodes"][4]["egress"]["isolatedPods"], 0);
    assert!(graph_edges(&g).contains_key(&("frontend/{app=web}".into(), "backend/{app=api}".into())));
    // Ports offered: container ports, most declared first.
    assert_eq!(g["ports"][0]["port"], "8080/TCP");
    assert_eq!(g["ports"][0]["names"], serde_json::json!(["http"]));
    // Without a port: the most declared one.
    let d = get(&app, "/api/v1/graph").await.json();
    assert_eq!((d["port"].as_u64(), d["protocol"].as_str()), (Some(8080), Some("TCP")));
}

#[tokio::test]
async fn graph_focus_and_auto_grouping() {
    let app = app();
    // A namespace: its nodes, plus the nodes they connect with (not focus); every edge touches a focus node.
    let g = get(&app, "/api/v1/graph?port=8080&namespace=backend").await.json();
    let nodes = g["nodes"].as_array().unwrap();
    let focus: BTreeSet<&str> =
        nodes.iter().filter(|n| n["focus"] == true).map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(focus, BTreeSet::from(["backend/{app=api}", "backend/{app=worker}"]));
    assert!(nodes.iter().any(|n| n["id"] == "frontend/{app=web}" && n["focus"] == false), "{g}");
    assert_eq!(g["focusPods"], 4);
    for e in g["edges"].as_array().unwrap() {
        assert!(focus.contains(e["src"].as_str().unwrap()) || focus.contains(e["dst"].as_str().unwrap()), "{e}");
    }
    // Focus edges are the full graph's edges that touch a focus node.
    let all = graph_edges(&get(&app, "/api/v1/graph?port=8080").await.json());
    let touching: BTreeMap<_, _> =
        all.into_iter().filter(|((a, b), _)| focus.contains(a.as_str()) || focus.contains(b.as_str())).collect();
    assert_eq!(graph_edges(&g), touching);
    // A selector, in kubectl syntax.
    let g = get(&app, &format!("/api/v1/graph?port=8080&selector={}", enc("app in (web,postgres)"))).await.json();
    let focus: Vec<&str> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["focus"] == true)
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(focus, ["database/{app=postgres}", "frontend/{app=web}"]);
    // Nothing matches: nothing to show.
    let g = get(&app, "/api/v1/graph?port=8080&selector=app%3Dnope").await.json();
    assert_eq!((g["nodes"].as_array().unwrap().len(), g["edges"].as_array().unwrap().len()), (0, 0));
    assert_eq!(g["focusPods"], 0);
    // Auto grouping: the finest with at most max_nodes nodes.
    for (max, want, nodes) in [("6", "labels", 6), ("5", "namespace", 5), ("1", "namespace", 5)] {
        let g = get(&app, &format!("/api/v1/graph?port=8080&max_nodes={max}")).await.json();
        assert_eq!(g["grouping"], want, "max_nodes={max}");
        assert_eq!(g["nodes"].as_array().unwrap().len(), nodes, "max_nodes={max}");
    }
}

#[tokio::test]
async fn graph_bad_input() {
    let app = app();
    let cases = [
        ("/api/v1/graph?port=0", StatusCode::BAD_REQUEST, "port"),
        ("/api/v1/graph?port=http", StatusCode::BAD_REQUEST, "port"),
        ("/api/v1/graph?port=80/ICMP", StatusCode::BAD_REQUEST, "port"),
        ("/api/v1/graph?port=", StatusCode::BAD_REQUEST, "port"),
        ("/api/v1/graph?port=80&namespace=nope", StatusCode::NOT_FOUND, "namespace"),
        ("/api/v1/graph?port=80&selector=a%20b", StatusCode::BAD_REQUEST, "selector"),
        ("/api/v1/graph?port=80&selector=%3Dx", StatusCode::BAD_REQUEST, "selector"),
        ("/api/v1/graph?port=80&selector=a%20in%20(b", StatusCode::BAD_REQUEST, "selector"),
        ("/api/v1/graph?port=80&group=pods", StatusCode::BAD_REQUEST, "group"),
        ("/api/v1/graph?port=80&max_nodes=0", StatusCode::BAD_REQUEST, "max_nodes"),
        ("/api/v1/graph?port=80&max_nodes=many", StatusCode::BAD_REQUEST, "max_nodes"),
        ("/api/v1/graph?port=80&max_nodes=100000", StatusCode::BAD_REQUEST, "max_nodes"),
        ("/api/v1/manifest", StatusCode::BAD_REQUEST, "policy"),
        ("/api/v1/manifest?policy=nons", StatusCode::BAD_REQUEST, "policy"),
        ("/api/v1/manifest?policy=backend/nope", StatusCode::NOT_FOUND, "policy"),
    ];
    for (uri, status, field) in cases {
        assert_error(&get(&app, uri).await, status, field);
    }
}

/// The mis-indent fixed, and a new policy: worker loses postgres, prometheus gains it.
const FIX_AND_ADD: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-postgres-from-backend, namespace: database}
spec:
  podSelector: {matchLabels: {app: postgres}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {tier: backend}}
      podSelector: {matchLabels: {app: api}}
    ports: [{port: 5432}]
---
---
kind: List
apiVersion: v1
items:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: allow-postgres-from-monitoring, namespace: database}
  spec:
    podSelector: {matchLabels: {app: postgres}}
    ingress:
    - from: [{namespaceSelector: {matchLabels: {tier: monitoring}}}]
      ports: [{port: 5432}]
";

#[tokio::test]
async fn whatif_graph_before_and_after() {
    let app = app();
    let r = whatif(&app, "?port=5432/TCP", FIX_AND_ADD).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let w = r.json();
    let changes: BTreeMap<(String, String), (String, u64, u64)> = w["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (e["src"].as_str().unwrap().to_string(), e["dst"].as_str().unwrap().to_string()),
                (
                    e["change"].as_str().unwrap().to_string(),
                    e["before"].as_u64().unwrap(),
                    e["after"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let worker = ("backend/{app=worker}".to_string(), "database/{app=postgres}".to_string());
    let prom = ("monitoring/{app=prometheus}".to_string(), "database/{app=postgres}".to_string());
    let api = ("backend/{app=api}".to_string(), "database/{app=postgres}".to_string());
    assert_eq!(changes[&worker], ("removed".to_string(), 4, 0));
    assert_eq!(changes[&prom], ("added".to_string(), 0, 4));
    assert_eq!(changes[&api], ("unchanged".to_string(), 4, 4));
    assert_eq!(changes.values().filter(|c| c.0 != "unchanged").count(), 2, "{w}");
    // Before = the graph now; after = the graph of the changed manifests, by the same grouping.
    let now = graph_edges(&get(&app, "/api/v1/graph?port=5432/TCP").await.json());
    let before: BTreeMap<_, _> = changes.iter().filter(|(_, c)| c.1 > 0).map(|(k, c)| (k.clone(), c.1)).collect();
    assert_eq!(before, now.iter().map(|(k, v)| (k.clone(), v.0)).collect::<BTreeMap<_, _>>());
    let applied: Vec<(&str, bool, u64)> = w["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["policy"].as_str().unwrap(), a["replaces"].as_bool().unwrap(), a["selectedPods"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        applied,
        [("database/allow-postgres-from-backend", true, 2), ("database/allow-postgres-from-monitoring", false, 2)]
    );
    // The diff agrees with POST /api/v1/whatif's.
    assert!(w["diff"]["groups"].as_array().unwrap().iter().any(|g| g["change"] == "newly_denied"
        && g["sources"].to_string().contains("backend/worker")
        && g["destinations"].to_string().contains("database/postgres")));
    // Nothing was applied.
    let x = get(&app, "/api/v1/explain?src=backend/worker&dst=database/postgres&port=5432").await;
    assert_eq!(x.json()["verdict"], "allow");
    // Deleting: web loses the api.
    let r = whatif(&app, "?port=8080&delete=backend/allow-api-from-frontend", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let w = r.json();
    let web_api = w["edges"].as_array().unwrap().iter().find(|e| e["src"] == "frontend/{app=web}").unwrap();
    assert_eq!((web_api["dst"].as_str(), web_api["change"].as_str()), (Some("backend/{app=api}"), Some("removed")));
    assert_eq!(w["deleted"], serde_json::json!(["backend/allow-api-from-frontend"]));
}

#[tokio::test]
async fn whatif_graph_errors_name_the_field_and_line() {
    let app = app();
    // An invalid port on line 12 of the second document.
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ok, namespace: backend}\nspec: {podSelector: {}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: broken, namespace: backend}\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: 0\n";
    let r = whatif(&app, "?port=80", text).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "spec.ingress[0].ports[0].port");
    let j = r.json();
    assert_eq!((j["document"].as_u64(), j["line"].as_u64()), (Some(1), Some(13)), "{j}");
    // A bad selector operator, inside a List item.
    let text = "kind: List\napiVersion: v1\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: x, namespace: backend}\n  spec:\n    podSelector:\n      matchExpressions:\n      - {key: app, operator: Near, values: [a]}\n";
    let r = whatif(&app, "", text).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let j = r.json();
    assert!(j["field"].as_str().unwrap().starts_with("spec.podSelector.matchExpressions[0]"), "{j}");
    assert_eq!(j["line"].as_u64(), Some(10), "{j}");
    // YAML that does not parse: the line of the error.
    let r = whatif(&app, "", "kind: NetworkPolicy\nmetadata: {name: [x\n").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "body");
    assert!(r.json()["line"].as_u64().is_some(), "{}", r.text());
    // Not a NetworkPolicy.
    let r = whatif(&app, "", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "kind");
    // Deleting a policy that does not exist; bad parameters.
    assert_error(&whatif(&app, "?delete=backend/nope", "").await, StatusCode::NOT_FOUND, "delete[0]");
    assert_error(&whatif(&app, "?delete=nope", "").await, StatusCode::BAD_REQUEST, "delete[0]");
    assert_error(&whatif(&app, "?port=0", "").await, StatusCode::BAD_REQUEST, "port");
    assert_error(&whatif(&app, "?namespace=nope", "").await, StatusCode::NOT_FOUND, "namespace");
}

#[tokio::test]
async fn manifests_round_trip_through_whatif() {
    let app = app();
    let policies = get(&app, "/api/v1/policies").await.json();
    for p in policies.as_array().unwrap() {
        let r = p["ref"].as_str().unwrap();
        let m = get(&app, &format!("/api/v1/manifest?policy={r}")).await;
        assert_eq!(m.status, StatusCode::OK, "{r}: {}", m.text());
        assert!(m.header("content-type").starts_with("application/yaml"));
        // Applying the manifest in place of the policy changes nothing, on any port.
        let w = whatif(&app, "?port=8080", &m.text()).await;
        assert_eq!(w.status, StatusCode::OK, "{r}: {}\n{}", m.text(), w.text());
        let w = w.json();
        assert_eq!(w["diff"]["groups"].as_array().unwrap().len(), 0, "{r}: {}\n{w}", m.text());
        assert_eq!(w["applied"][0]["replaces"], true);
    }
    let m = get(&app, "/api/v1/manifest?policy=backend/allow-api-egress-external").await.text();
    assert!(m.contains("ipBlock:\n        cidr: 0.0.0.0/0\n        except:\n        - 10.0.0.0/8"), "{m}");
    let m = get(&app, "/api/v1/manifest?policy=frontend/allow-web-ingress").await.text();
    assert!(m.contains("- protocol: TCP\n      port: http"), "{m}");
}

#[tokio::test]
async fn a_1000_pod_cluster_groups_and_matches_the_matrix() {
    let dir = crate::common::tempdir();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, netpol_synth::generate_yaml(&netpol_synth::Params::preset("1k").unwrap())).unwrap();
    let app = router(AppState::from_files(&[file.display().to_string()]).unwrap());
    let g = get(&app, "/api/v1/graph?port=8080").await.json();
    assert_eq!(g["totalPods"], 1000);
    let n = g["nodes"].as_array().unwrap().len();
    assert!(n <= netpol_server::ui::DEFAULT_MAX_NODES, "{n} nodes by {}", g["grouping"]);
    for group in ["namespace", "labels"] {
        let g = get(&app, &format!("/api/v1/graph?port=8080&group={group}")).await.json();
        assert_eq!(graph_edges(&g), edges_from_matrix(&app, &g, "8080").await, "by {group}");
    }
    // Every policy's manifest round-trips on this cluster too (named ports, endPort, ipBlock except, ...).
    let policies = get(&app, "/api/v1/policies").await.json();
    for p in policies.as_array().unwrap().iter().step_by(7) {
        let r = p["ref"].as_str().unwrap();
        let m = get(&app, &format!("/api/v1/manifest?policy={r}")).await.text();
        let w = whatif(&app, "?port=8080&group=namespace", &m).await.json();
        assert_eq!(w["diff"]["changed_pairs"], 0, "{r}: {m}");
    }
}

#[tokio::test]
async fn assets_are_embedded_with_types_and_csp() {
    let app = app();
    let index = get(&app, "/").await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(index.header("content-type").starts_with("text/html"));
    let csp = index.header("content-security-policy");
    for directive in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(index.header("x-content-type-options"), "nosniff");
    let html = index.text();
    // Every asset the page or a module references is served, with its type.
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for (path, file) in netpol_server::ui::ASSETS {
        let r = get(&app, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(!r.body.is_empty(), "{path}");
        let want = match file.rsplit('.').next() {
            Some("html") => "text/html",
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset type {other:?}"),
        };
        assert!(r.header("content-type").starts_with(want), "{path}: {}", r.header("content-type"));
        assert!(r.header("content-security-policy").contains("default-src 'none'"), "{path}");
        // Revalidation: the ETag gives a 304.
        let etag = r.header("etag");
        let again = call(&app, Method::GET, path, &[("if-none-match", &etag)], Vec::new()).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{path}");
        if file.ends_with(".js") {
            let js = r.text();
            for part in js.split("from './").skip(1) {
                referenced.insert(format!("/ui/{}", part.split('\'').next().unwrap()));
            }
            assert!(!js.contains("innerHTML"), "{path}: build DOM with textContent");
            assert!(!js.contains("eval("), "{path}");
        }
    }
    for part in html.split("=\"/ui/").skip(1) {
        referenced.insert(format!("/ui/{}", part.split('"').next().unwrap()));
    }
    let served: BTreeSet<String> = netpol_server::ui::ASSETS.iter().map(|(p, _)| p.to_string()).collect();
    assert!(referenced.len() >= 5, "{referenced:?}");
    assert!(referenced.is_subset(&served), "referenced {referenced:?}, served {served:?}");
    // No inline script or style: the CSP would block them.
    assert!(!html.contains("<script>") && !html.contains("style=") && !html.contains("<style"), "inline code");
    assert_error(&get(&app, "/ui/nope.js").await, StatusCode::NOT_FOUND, "path");
}

/// Verdicts of flows `[src, dst]` on `port` through `POST /api/v1/query`.
async fn verdicts(app: &axum::Router, flows: &[[String; 2]], port: &str) -> Vec<bool> {
    let (num, proto) = port.split_once('/').unwrap();
    let body: Vec<Value> = flows
        .iter()
        .map(|[s, d]| serde_json::json!({"src": s, "dst": d, "port": num.parse::<u16>().unwrap(), "protocol": proto}))
        .collect();
    let r = call(
        app,
        Method::POST,
        "/api/v1/query",
        &[("content-type", "application/json")],
        Value::from(body).to_string().into(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json().as_array().unwrap().iter().map(|v| v["verdict"] == "allow").collect()
}

/// An address as (IPv6, number).
fn ip_num(s: &str) -> (bool, u128) {
    match s.parse::<std::net::IpAddr>().unwrap_or_else(|e| panic!("{s}: {e}")) {
        std::net::IpAddr::V4(a) => (false, u32::from(a) as u128),
        std::net::IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn cidr_contains(cidr: &str, ip: (bool, u128)) -> bool {
    let (net, len) = cidr.split_once('/').unwrap_or_else(|| panic!("not a CIDR: {cidr}"));
    let (v6, n) = ip_num(net);
    let bits = if v6 { 128 } else { 32 };
    let host = bits - len.parse::<u32>().unwrap();
    v6 == ip.0 && (host == 128 || (n >> host) == (ip.1 >> host))
}

/// Whether an address is in one of the texts of an `OutsideAccess`'s `blocks`: `CIDR`, `CIDR except A,B`
/// (NetworkPolicy's ipBlocks) or `FIRST-LAST` (the address ranges an admin tier leaves allowed).
fn in_blocks(blocks: &Value, ip: &str) -> bool {
    let ip = ip_num(ip);
    blocks.as_array().unwrap().iter().map(|b| b.as_str().unwrap()).any(|b| match b.split_once(" except ") {
        Some((cidr, except)) => cidr_contains(cidr, ip) && !except.split(',').any(|x| cidr_contains(x.trim(), ip)),
        None => match b.split_once('-').filter(|_| !b.contains('/')) {
            Some((lo, hi)) => {
                let (lo, hi) = (ip_num(lo), ip_num(hi));
                lo.0 == ip.0 && lo.1 <= ip.1 && ip.1 <= hi.1
            }
            None => cidr_contains(b, ip),
        },
    })
}

/// Each node's `toOutside`/`fromOutside` against the engine's verdicts for probe addresses that no pod has: a
/// pod is counted iff some probe is allowed (the probes include an allowed address of every block in these
/// clusters), an `any` pod allows every probe, the example flow is allowed, and when every pod of the node is
/// limited to `blocks`, a probe every pod allows is in them and a probe no pod allows is not.
pub(crate) async fn check_outside_against_query(app: &axum::Router, ports: &[&str]) {
    let pods = get(app, "/api/v1/pods").await.json();
    let pod_ips: BTreeSet<String> = pods
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["ips"].as_array().unwrap().clone())
        .map(|i| i.as_str().unwrap().to_string())
        .collect();
    let probes: Vec<String> = [
        "203.0.113.10",
        "8.8.8.8",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.0.1",
        "2001:db8::10",
        "100.64.0.1",
        "169.254.169.254",
        "169.254.169.255",
        // In Calico network sets' and rules' nets (tests/it/calico.rs).
        "198.51.100.7",
        "192.0.2.5",
        "192.0.2.200",
    ]
    .iter()
    .map(|s| s.to_string())
    .filter(|ip| !pod_ips.contains(ip))
    .collect();
    for port in ports {
        let g = get(app, &format!("/api/v1/graph?port={}&group=labels", enc(port))).await.json();
        for n in g["nodes"].as_array().unwrap() {
            let ns = n["namespace"].as_str().unwrap();
            for (field, out) in [("toOutside", true), ("fromOutside", false)] {
                let acc = &n[field];
                let (mut some, mut all) = (0, 0);
                // Per probe: allowed for every pod, for none.
                let (mut every, mut none) = (vec![true; probes.len()], vec![true; probes.len()]);
                for p in n["pods"].as_array().unwrap() {
                    let pod = format!("{ns}/{}", p.as_str().unwrap());
                    let flows: Vec<[String; 2]> = probes
                        .iter()
                        .map(|ip| if out { [pod.clone(), ip.clone()] } else { [ip.clone(), pod.clone()] })
                        .collect();
                    let v = verdicts(app, &flows, port).await;
                    some += v.iter().any(|&b| b) as u64;
                    all += v.iter().all(|&b| b) as u64;
                    for (k, &b) in v.iter().enumerate() {
                        every[k] &= b;
                        none[k] &= !b;
                    }
                }
                let what = format!("{port} {ns}/{} {field}: {acc}", n["name"]);
                if acc["anyPods"] == 0 && acc["pods"] == n["count"] {
                    for (k, ip) in probes.iter().enumerate() {
                        if every[k] {
                            assert!(in_blocks(&acc["blocks"], ip), "{what}: {ip} is allowed, not listed");
                        }
                        if none[k] {
                            assert!(!in_blocks(&acc["blocks"], ip), "{what}: {ip} is denied, but listed");
                        }
                    }
                }
                assert_eq!(acc["pods"].as_u64().unwrap(), some, "{what}");
                assert!(acc["anyPods"].as_u64().unwrap() <= all, "{what}");
                if acc["blocks"].as_array().unwrap().is_empty() {
                    assert_eq!(acc["anyPods"], acc["pods"], "{what}");
                }
                match acc.get("example") {
                    Some(ex) => {
                        let ex = [ex[0].as_str().unwrap().to_string(), ex[1].as_str().unwrap().to_string()];
                        assert_eq!(verdicts(app, std::slice::from_ref(&ex), port).await, [true], "{what}");
                    }
                    None => assert_eq!(some, 0, "{what}"),
                }
            }
        }
    }
}

const OUTSIDE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.9.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: job-0, namespace: shop, labels: {app: job}}
spec: {containers: [{name: c}]}
status: {podIP: 10.9.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: open-0, namespace: shop, labels: {app: open}}
spec: {containers: [{name: c}]}
status: {podIP: 10.9.0.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: shop}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [web, job]}]}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  egress:
    - to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]
      ports: [{port: 443}]
    - to: [{ipBlock: {cidr: 172.16.0.0/12}}]
  ingress:
    - from: [{ipBlock: {cidr: 192.168.0.0/16}}]
      ports: [{port: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: job, namespace: shop}
spec:
  podSelector: {matchLabels: {app: job}}
  egress:
    - to: [{podSelector: {matchLabels: {app: web}}}]
"#;

fn node<'a>(g: &'a Value, name: &str) -> &'a Value {
    g["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("no node {name}: {g}"))
}

#[tokio::test]
async fn outside_access_per_node() {
    let dir = crate::common::tempdir();
    let file = dir.path().join("outside.yaml");
    std::fs::write(&file, OUTSIDE).unwrap();
    let app = router(AppState::from_files(&[file.display().to_string()]).unwrap());

    let g = get(&app, "/api/v1/graph?port=443/TCP&group=labels").await.json();
    let web = node(&g, "web");
    assert_eq!(web["toOutside"]["pods"], 1);
    assert_eq!(web["toOutside"]["anyPods"], 0);
    assert_eq!(web["toOutside"]["blocks"], serde_json::json!(["0.0.0.0/0 except 10.0.0.0/8", "172.16.0.0/12"]));
    assert_eq!(web["toOutside"]["example"], serde_json::json!(["shop/web-0", "203.0.113.10"]));
    // The ingress rule is on the named port http (8080), not on 443.
    assert_eq!(web["fromOutside"]["pods"], 0);
    assert!(web["fromOutside"].get("example").is_none());
    // job's only egress peer is a pod selector: nothing outside.
    assert_eq!(node(&g, "job")["toOutside"]["pods"], 0);
    let open = node(&g, "open");
    for f in ["toOutside", "fromOutside"] {
        assert_eq!(open[f]["anyPods"], 1, "{open}");
        assert_eq!(open[f]["blocks"], serde_json::json!([]), "{open}");
    }

    let g = get(&app, "/api/v1/graph?port=8080/TCP&group=labels").await.json();
    let web = node(&g, "web");
    assert_eq!(web["fromOutside"]["blocks"], serde_json::json!(["192.168.0.0/16"]));
    assert_eq!(web["fromOutside"]["example"], serde_json::json!(["192.168.0.1", "shop/web-0"]));
    assert_eq!(web["toOutside"]["blocks"], serde_json::json!(["172.16.0.0/12"]));
    assert_eq!(web["toOutside"]["example"], serde_json::json!(["shop/web-0", "172.16.0.1"]));

    check_outside_against_query(&app, &["443/TCP", "8080/TCP", "53/UDP"]).await;
}

#[tokio::test]
async fn outside_access_of_the_example_matches_the_engine() {
    check_outside_against_query(&app(), &["443/TCP", "8080/TCP", "5432/TCP", "53/UDP", "80/TCP"]).await;
}

/// With admin tiers, whose rules deny and pass as well as allow, the outside addresses a node may use are those
/// the evaluator leaves allowed: every pod may reach everything but the metadata service.
#[tokio::test]
async fn outside_access_with_admin_tiers_matches_the_engine() {
    let app = router(AppState::from_files(&[crate::common::admin_example()]).unwrap());
    let g = get(&app, "/api/v1/graph?port=8080/TCP&group=labels").await.json();
    let web = g["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "prod/{app=web}").unwrap();
    assert_eq!(
        web["toOutside"],
        serde_json::json!({
            "pods": 1, "anyPods": 0,
            "blocks": ["0.0.0.0-169.254.169.253", "169.254.169.255-255.255.255.255", "::/0"],
            "example": ["prod/web", "203.0.113.10"],
        })
    );
    // Ingress from outside: the Baseline denies only pods (`namespaces: {}`), so every address may connect.
    assert_eq!(web["fromOutside"]["anyPods"], 1, "{web}");
    check_outside_against_query(&app, &["443/TCP", "8080/TCP", "5432/TCP", "53/UDP"]).await;
}
