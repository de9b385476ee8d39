//! `netpol serve` and the policy tiers, on examples/admin-tiers and on a fixture with every admin kind and feature
//! (`ALL_KINDS`): what-if with ClusterNetworkPolicy, AdminNetworkPolicy and BaselineAdminNetworkPolicy objects
//! (apply replacing by kind and name, delete by `cnp/name`, errors naming the field), the policies listing (kind,
//! tier, priority, subject, rules with actions), the pods' policies tier by tier, manifests of cluster-scoped
//! policies in their own API's shape that load back into the same model, and the tiered answers against their
//! OpenAPI schemas.

use axum::http::{Method, StatusCode};
use netpol_core::model::{Cluster, Policy, Scope};
use netpol_server::{router, AppState};
use serde_json::{json, Value};

use crate::common::{admin_example, assert_declared, call, get, post, Res};

fn state() -> AppState {
    AppState::from_files(&[admin_example()]).expect("admin-tiers loads")
}

fn assert_error(r: &Res, status: StatusCode, field: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text());
    let j = r.json();
    assert_eq!(j["field"], field, "{j}");
    j["error"].as_str().filter(|e| !e.is_empty()).unwrap_or_else(|| panic!("no error message: {j}")).to_string()
}

async fn whatif(app: &axum::Router, body: &str) -> Res {
    post(app, "/api/v1/whatif", "application/yaml", body).await
}

async fn graph_whatif(app: &axum::Router, query: &str, text: &str) -> Res {
    post(app, &format!("/api/v1/graph/whatif{query}"), "application/yaml", text).await
}

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

/// Every admin kind and the fields the loader reads: subjects of both shapes, every peer, every port form
/// (numbers, ranges, named ports), every action, rule names and none, both tiers of ClusterNetworkPolicy.
const ALL_KINDS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {env: dev}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: b, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {role: infra}}
status: {addresses: [{type: InternalIP, address: 192.168.0.1}]}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: anp-all}
spec:
  priority: 5
  subject:
    pods:
      namespaceSelector: {matchLabels: {env: prod}}
      podSelector: {matchExpressions: [{key: app, operator: In, values: [web, api]}]}
  ingress:
  - name: from-dev
    action: Deny
    from:
    - namespaces: {matchLabels: {env: dev}}
    - pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}
    ports:
    - portNumber: {protocol: TCP, port: 80}
    - portRange: {protocol: UDP, start: 1000, end: 2000}
    - namedPort: http
  - action: Pass
    from: [{namespaces: {}}]
  egress:
  - name: infra
    action: Allow
    to:
    - nodes: {matchExpressions: [{key: role, operator: Exists}]}
    - networks: [10.0.0.0/8, "fd00::/8"]
    ports: [{portNumber: {protocol: SCTP, port: 9}}]
  - name: apis
    action: Allow
    to: [{domainNames: ["*.example.com", example.org]}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {matchLabels: {env: prod}}}
  ingress:
  - name: rest
    action: Deny
    from: [{namespaces: {}}]
  egress:
  - action: Allow
    to: [{pods: {namespaceSelector: {matchLabels: {env: prod}}, podSelector: {}}}]
    ports: [{namedPort: dns}]
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: cnp-baseline}
spec:
  tier: Baseline
  priority: 3
  subject: {pods: {podSelector: {matchLabels: {app: web}}}}
  ingress:
  - name: r1
    action: Accept
    from: [{pods: {podSelector: {matchLabels: {app: client}}}}]
    protocols:
    - tcp: {destinationPort: {number: 80}}
    - udp: {destinationPort: {range: {start: 53, end: 54}}}
    - sctp: {destinationPort: {number: 7}}
    - destinationNamedPort: http
  egress:
  - action: Deny
    to: [{networks: [169.254.0.0/16]}]
  - action: Pass
    to: [{nodes: {}}]
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: cnp-admin}
spec:
  tier: Admin
  priority: 0
  subject: {namespaces: {matchExpressions: [{key: env, operator: NotIn, values: [test]}]}}
  egress:
  - name: apis
    action: Accept
    to: [{domainNames: [api.example.com]}]
    protocols: [{tcp: {destinationPort: {range: {start: 443, end: 444}}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: a}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: http}]}]
"#;

fn fixture_state() -> (tempfile::TempDir, AppState) {
    let dir = crate::common::tempdir();
    let file = dir.path().join("all-kinds.yaml");
    std::fs::write(&file, ALL_KINDS).expect("write the fixture");
    let st = AppState::from_files(&[file.display().to_string()]).expect("the fixture loads");
    let m = st.model();
    assert!(m.diagnostics.iter().all(|d| d.severity != netpol_core::load::Severity::Error), "{:?}", m.diagnostics);
    assert_eq!(m.engine.cluster().policies.len(), 5);
    (dir, st)
}

// ---- what-if ----

#[tokio::test]
async fn whatif_applies_policies_of_every_tier() {
    let app = router(state());
    // A ClusterNetworkPolicy replaces the loaded one of the same kind and name: prod's baseline now accepts what
    // the Admin tier passes (monitoring) and what no tier decides (kube-system). Were it added beside the loaded
    // one, the loaded one (same priority and name, first) would still deny: nothing would change.
    let r = whatif(
        &app,
        r#"
apply:
- apiVersion: policy.networking.k8s.io/v1alpha2
  kind: ClusterNetworkPolicy
  metadata: {name: prod-baseline}
  spec:
    tier: Baseline
    priority: 10
    subject: {namespaces: {matchLabels: {env: prod}}}
    ingress: [{name: everything-else, action: Accept, from: [{namespaces: {}}]}]
"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        pairs(&r.json()),
        ["newly_allowed kube-system/coredns -> prod/web", "newly_allowed monitoring/prometheus -> prod/web"],
        "dev stays denied by the Admin tier, prod/db by its NetworkPolicy"
    );

    // An AdminNetworkPolicy before env-guard (priority 5 < 10) lets dev in: its Allow decides in the Admin tier,
    // over prod/db's NetworkPolicy and the Baseline.
    let r = whatif(
        &app,
        r#"
apply:
- apiVersion: policy.networking.k8s.io/v1alpha1
  kind: AdminNetworkPolicy
  metadata: {name: dev-in}
  spec:
    priority: 5
    subject: {namespaces: {matchLabels: {env: prod}}}
    ingress: [{name: dev, action: Allow, from: [{namespaces: {matchLabels: {env: dev}}}]}]
"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(pairs(&r.json()), ["newly_allowed dev/web -> prod/db", "newly_allowed dev/web -> prod/web"]);

    // A BaselineAdminNetworkPolicy (in JSON): in the Baseline tier, it comes before prod-baseline (no priority:
    // 0 < 10) and allows monitoring into prod/web; prod/db's NetworkPolicy decides before the Baseline.
    let r = post(
        &app,
        "/api/v1/whatif",
        "application/json",
        json!({"apply": [{
            "apiVersion": "policy.networking.k8s.io/v1alpha1",
            "kind": "BaselineAdminNetworkPolicy",
            "metadata": {"name": "default"},
            "spec": {
                "subject": {"namespaces": {"matchLabels": {"env": "prod"}}},
                "ingress": [{"action": "Allow", "from": [{"namespaces": {"matchLabels": {"purpose": "monitoring"}}}]}],
            },
        }]})
        .to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(pairs(&r.json()), ["newly_allowed monitoring/prometheus -> prod/web"]);

    // A NetworkPolicy still replaces by namespace and name.
    let r = whatif(
        &app,
        "apply: [{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: db-from-web, namespace: \
         prod}, spec: {podSelector: {matchLabels: {app: db}}, ingress: [{}]}}]",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let p = pairs(&r.json());
    assert!(p.contains(&"newly_allowed monitoring/prometheus -> prod/db".to_string()), "{p:?}");
    assert!(!p.iter().any(|x| x.starts_with("newly_allowed dev/")), "the Admin tier still denies dev: {p:?}");

    // Nothing was applied.
    let e = get(&app, "/api/v1/explain?src=monitoring/prometheus&dst=prod/web&port=8080").await.json();
    assert_eq!(e["verdict"], "deny", "{e}");
}

#[tokio::test]
async fn whatif_deletes_cluster_scoped_policies() {
    let app = router(state());
    let del = |refs: &[&str]| json!({ "delete": refs }).to_string();
    let r = post(&app, "/api/v1/whatif", "application/json", del(&["cnp/prod-baseline"])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        pairs(&r.json()),
        ["newly_allowed kube-system/coredns -> prod/web", "newly_allowed monitoring/prometheus -> prod/web"]
    );
    // The metadata service: a change with an address outside the cluster, for every pod.
    let r = post(&app, "/api/v1/whatif", "application/json", del(&["cnp/no-metadata-service"])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert!(j["groups"].as_array().unwrap().is_empty(), "{j}");
    let out = &j["outside"][0];
    assert_eq!(out["change"], "newly_allowed", "{j}");
    assert_eq!(out["direction"], "egress");
    assert_eq!(out["addresses"], json!(["169.254.169.254/32"]));
    assert_eq!(out["pods"].as_array().unwrap().len(), 5, "{out}");
    assert!(out["cause"].as_str().unwrap().contains("cnp/no-metadata-service"), "{out}");
    // Both at once, and a NetworkPolicy.
    let r = post(&app, "/api/v1/whatif", "application/json", del(&["cnp/env-guard", "prod/db-from-web"])).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // The names of other kinds, or policies that are not loaded, are not found.
    for (i, missing) in
        ["anp/env-guard", "banp/default", "cnp/nope", "netpol/env-guard", "prod/env-guard"].iter().enumerate()
    {
        let mut refs =
            ["cnp/env-guard", "prod/db-from-web", "cnp/prod-baseline", "cnp/no-metadata-service"][..i].to_vec();
        refs.push(missing);
        let r = post(&app, "/api/v1/whatif", "application/json", del(&refs)).await;
        assert_error(&r, StatusCode::NOT_FOUND, &format!("delete[{i}]"));
    }
    let msg = assert_error(&whatif(&app, "delete: [env-guard]").await, StatusCode::BAD_REQUEST, "delete[0]");
    assert!(msg.contains("cnp/name") && msg.contains("banp/name"), "{msg}");
}

#[tokio::test]
async fn whatif_errors_name_the_field() {
    let app = router(state());
    let cnp = |spec: &str| {
        format!(
            "apply: [{{apiVersion: policy.networking.k8s.io/v1alpha2, kind: ClusterNetworkPolicy, metadata: {{name: \
             x}}, spec: {spec}}}]"
        )
    };
    let r = whatif(&app, &cnp("{tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Allow, from: [{namespaces: {}}]}]}")).await;
    let msg = assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[0].spec.ingress[0].action");
    assert!(msg.contains("Accept"), "{msg}");
    let r = whatif(&app, &cnp("{tier: Middle, priority: 1, subject: {namespaces: {}}}")).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[0].spec.tier");
    let r = whatif(
        &app,
        &cnp(
            "{tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{networks: [nope]}]}]}",
        ),
    )
    .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[0].spec.egress[0].to[0].networks[0]");
    // The second object is at fault.
    let r = whatif(
        &app,
        "apply:\n- {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: ok, namespace: prod}, spec: \
         {podSelector: {}}}\n- {apiVersion: policy.networking.k8s.io/v1alpha1, kind: AdminNetworkPolicy, metadata: \
         {name: a}, spec: {priority: 1001, subject: {namespaces: {}}}}",
    )
    .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[1].spec.priority");
    let r = whatif(&app, "apply: [{apiVersion: policy.networking.k8s.io/v1alpha1, kind: BaselineAdminNetworkPolicy, metadata: {name: other}, spec: {subject: {namespaces: {}}}}]").await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[0].metadata.name");
    // A kind's other version.
    let r = whatif(&app, "apply: [{apiVersion: policy.networking.k8s.io/v1alpha1, kind: ClusterNetworkPolicy, metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}}}}]").await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[0].apiVersion");
    // Kinds that are no policy.
    for body in ["apply: [{kind: Service}]", "apply: [{metadata: {name: x}}]", "apply: [{kind: Namespace}]"] {
        let msg = assert_error(&whatif(&app, body).await, StatusCode::BAD_REQUEST, "apply[0].kind");
        assert!(msg.contains("ClusterNetworkPolicy") && msg.contains("BaselineAdminNetworkPolicy"), "{msg}");
    }
}

#[tokio::test]
async fn graph_whatif_takes_the_admin_kinds() {
    let app = router(state());
    let text = "# prod's baseline accepts everyone
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: prod-baseline}
spec:
  tier: Baseline
  priority: 10
  subject: {namespaces: {matchLabels: {env: prod}}}
  ingress: [{action: Accept, from: [{namespaces: {}}]}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: new-admin}
spec:
  priority: 50
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: prometheus}}}}
  egress: [{action: Allow, to: [{networks: [10.0.0.0/8]}]}]
";
    let r = graph_whatif(&app, "?port=8080/TCP&group=labels&delete=cnp/no-metadata-service", text).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(
        j["applied"],
        json!([
            {"policy": "cnp/prod-baseline", "kind": "ClusterNetworkPolicy", "tier": "Baseline", "replaces": true, "selectedPods": 2},
            {"policy": "anp/new-admin", "kind": "AdminNetworkPolicy", "tier": "Admin", "replaces": false, "selectedPods": 1},
        ])
    );
    assert_eq!(j["deleted"], json!(["cnp/no-metadata-service"]));
    let added: Vec<String> = j["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["change"] == "added")
        .map(|e| format!("{} -> {}", e["src"].as_str().unwrap(), e["dst"].as_str().unwrap()))
        .collect();
    assert_eq!(
        added,
        ["kube-system/{k8s-app=kube-dns} -> prod/{app=web}", "monitoring/{app=prometheus} -> prod/{app=web}"]
    );
    // The nodes after the change: prometheus' egress is governed by the new AdminNetworkPolicy.
    let prom = j["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "monitoring/{app=prometheus}").unwrap();
    assert_eq!(prom["egress"]["policies"], json!(["anp/new-admin"]), "{prom}");

    // An invalid admin policy is located in the text: field, document, line.
    let bad = text.replace("action: Accept", "action: Allow");
    let r = graph_whatif(&app, "?port=8080", &bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let e = r.json();
    assert_eq!(e["field"], "spec.ingress[0].action", "{e}");
    assert_eq!(e["document"], 0, "{e}");
    assert_eq!(e["line"], 9, "{e}");
    let bad = text.replace("priority: 50", "priority: -1");
    let e = graph_whatif(&app, "?port=8080", &bad).await.json();
    assert_eq!((&e["field"], &e["document"], &e["line"]), (&json!("spec.priority"), &json!(1), &json!(15)), "{e}");
    assert_error(&graph_whatif(&app, "?delete=anp/nope", "").await, StatusCode::NOT_FOUND, "delete[0]");
}

// ---- policies and pods ----

#[tokio::test]
async fn policies_show_kind_tier_priority_subject_and_rules() {
    let app = router(state());
    let r = get(&app, "/api/v1/policies").await;
    assert_eq!(r.status, StatusCode::OK);
    let pols = r.json();
    let refs: Vec<&str> = pols.as_array().unwrap().iter().map(|p| p["ref"].as_str().unwrap()).collect();
    assert_eq!(
        refs,
        ["cnp/env-guard", "cnp/no-metadata-service", "prod/db-from-web", "cnp/prod-baseline"],
        "in tier order, by priority"
    );
    assert_eq!(
        pols[0],
        json!({
            "ref": "cnp/env-guard", "kind": "ClusterNetworkPolicy", "tier": "Admin", "priority": 10,
            "namespace": "", "name": "env-guard", "namespaceSelector": "env=prod", "podSelector": "{}",
            "policyTypes": ["Ingress"], "rules": {"ingress": 2, "egress": 0},
            "ingressRules": [
                {"index": 0, "name": "no-dev", "action": "deny", "apiAction": "Deny", "peers": ["namespaces env=dev"], "ports": []},
                {"index": 1, "name": "monitoring-to-tenants", "action": "pass", "apiAction": "Pass",
                 "peers": ["namespaces purpose=monitoring"], "ports": []},
            ],
            "egressRules": [],
            "selectedPods": ["prod/db", "prod/web"],
        })
    );
    assert_eq!(
        pols[1]["egressRules"][1],
        json!({"index": 1, "name": "allow-example-apis", "action": "allow", "apiAction": "Accept",
               "peers": ["domainNames *.example.com"], "ports": ["443/TCP"]})
    );
    assert_eq!(pols[1]["selectedPods"].as_array().unwrap().len(), 5);
    let np = &pols[2];
    assert_eq!(
        (&np["kind"], &np["tier"], &np["namespace"]),
        (&json!("NetworkPolicy"), &json!("NetworkPolicy"), &json!("prod"))
    );
    assert!(np.get("priority").is_none() && np.get("namespaceSelector").is_none(), "{np}");
    assert_eq!(
        np["ingressRules"],
        json!([{"index": 0, "action": "allow", "apiAction": "Allow", "peers": ["podSelector app=web"], "ports": ["postgres/TCP (named)"]}])
    );
    assert_eq!((&pols[3]["tier"], &pols[3]["priority"]), (&json!("Baseline"), &json!(10)));

    // The v1alpha1 kinds: `Allow`, a BaselineAdminNetworkPolicy without priority, named ports once.
    let (_dir, st) = fixture_state();
    let app = router(st);
    let pols = get(&app, "/api/v1/policies").await.json();
    let refs: Vec<&str> = pols.as_array().unwrap().iter().map(|p| p["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["cnp/cnp-admin", "anp/anp-all", "a/np", "banp/default", "cnp/cnp-baseline"]);
    let anp = &pols[1];
    assert_eq!((&anp["kind"], &anp["priority"]), (&json!("AdminNetworkPolicy"), &json!(5)));
    assert_eq!((&anp["namespaceSelector"], &anp["podSelector"]), (&json!("env=prod"), &json!("app in (api,web)")));
    assert_eq!(
        anp["ingressRules"][0],
        json!({"index": 0, "name": "from-dev", "action": "deny", "apiAction": "Deny",
               "peers": ["namespaces env=dev", "pods app=client in namespaces {}"],
               "ports": ["80/TCP", "1000-2000/UDP", "http (named port)"]})
    );
    assert_eq!(anp["egressRules"][0]["peers"], json!(["nodes role", "networks 10.0.0.0/8, fd00::/8"]));
    assert_eq!(anp["egressRules"][1]["apiAction"], "Allow");
    assert_eq!(anp["selectedPods"], json!(["a/web"]));
    let banp = &pols[3];
    assert_eq!((&banp["kind"], &banp["tier"]), (&json!("BaselineAdminNetworkPolicy"), &json!("Baseline")));
    assert!(banp.get("priority").is_none(), "{banp}");
    assert_eq!(banp["egressRules"][0]["ports"], json!(["dns (named port)"]));
    let cnp = &pols[4];
    assert_eq!(cnp["namespaceSelector"], "{}");
    assert_eq!(cnp["ingressRules"][0]["ports"], json!(["80/TCP", "53-54/UDP", "7/SCTP", "http (named port)"]));
    assert_eq!(cnp["egressRules"][1]["action"], "pass");
}

#[tokio::test]
async fn pods_list_their_policies_tier_by_tier() {
    let app = router(state());
    let pods = get(&app, "/api/v1/pods").await.json();
    let pod = |ns: &str, name: &str| {
        pods.as_array().unwrap().iter().find(|p| p["namespace"] == ns && p["name"] == name).unwrap().clone()
    };
    let db = pod("prod", "db");
    assert_eq!(
        db["ingress"],
        json!({
            "isolated": true,
            "policies": ["cnp/env-guard", "prod/db-from-web", "cnp/prod-baseline"],
            "tiers": [
                {"tier": "Admin", "policies": [{"policy": "cnp/env-guard", "kind": "ClusterNetworkPolicy", "priority": 10}]},
                {"tier": "NetworkPolicy", "policies": [{"policy": "prod/db-from-web", "kind": "NetworkPolicy"}]},
                {"tier": "Baseline", "policies": [{"policy": "cnp/prod-baseline", "kind": "ClusterNetworkPolicy", "priority": 10}]},
            ],
        })
    );
    let egress = json!({
        "isolated": false,
        "policies": ["cnp/no-metadata-service"],
        "tiers": [{"tier": "Admin", "policies": [{"policy": "cnp/no-metadata-service", "kind": "ClusterNetworkPolicy", "priority": 20}]}],
    });
    assert_eq!(db["egress"], egress);
    // prod/web: governed by the admin tiers, not isolated by a NetworkPolicy.
    let web = pod("prod", "web");
    assert_eq!(web["ingress"]["isolated"], false);
    let tiers: Vec<&Value> = web["ingress"]["tiers"].as_array().unwrap().iter().map(|t| &t["tier"]).collect();
    assert_eq!(tiers, [&json!("Admin"), &json!("Baseline")]);
    let dev = pod("dev", "web");
    assert_eq!(dev["ingress"], json!({"isolated": false, "policies": [], "tiers": []}));
    assert_eq!(dev["egress"], egress);

    // The graph's nodes say the same, with how many of their pods each policy applies to.
    let g = get(&app, "/api/v1/graph?port=8080&group=labels").await.json();
    let node = |id: &str| g["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap().clone();
    let db = node("prod/{app=db}");
    assert_eq!((&db["ingress"]["isolatedPods"], &db["ingress"]["networkPolicyPods"]), (&json!(1), &json!(1)));
    assert_eq!(
        db["ingress"]["tiers"][1],
        json!({"tier": "NetworkPolicy", "policies": [{"policy": "prod/db-from-web", "kind": "NetworkPolicy", "pods": 1}]})
    );
    let web = node("prod/{app=web}");
    assert_eq!((&web["ingress"]["isolatedPods"], &web["ingress"]["networkPolicyPods"]), (&json!(1), &json!(0)));
    assert_eq!(
        web["ingress"]["tiers"],
        json!([
            {"tier": "Admin", "policies": [{"policy": "cnp/env-guard", "kind": "ClusterNetworkPolicy", "priority": 10, "pods": 1}]},
            {"tier": "Baseline", "policies": [{"policy": "cnp/prod-baseline", "kind": "ClusterNetworkPolicy", "priority": 10, "pods": 1}]},
        ])
    );
    // A namespace node adds up its pods.
    let g = get(&app, "/api/v1/graph?port=8080&group=namespace").await.json();
    let prod = g["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "prod").unwrap();
    assert_eq!(prod["ingress"]["tiers"][0]["policies"][0]["pods"], 2, "{prod}");
    assert_eq!(prod["ingress"]["tiers"][1]["policies"][0]["pods"], 1, "{prod}");
    assert_eq!(prod["ingress"]["networkPolicyPods"], 1);
}

// ---- manifests ----

/// The policy read back from a manifest is the loaded one: kind, tier, priority, scope, selectors, rules (peers,
/// ports, actions, names) and directions.
fn assert_same_policy(what: &str, (a, a_cluster): (&Policy, &Cluster), (b, b_cluster): (&Policy, &Cluster)) {
    assert_eq!((a.kind, a.tier, a.order, &a.name), (b.kind, b.tier, b.order, &b.name), "{what}");
    match (&a.scope, &b.scope) {
        (Scope::Cluster(x), Scope::Cluster(y)) => assert_eq!(x, y, "{what}: subject namespaces"),
        (Scope::Namespace(x), Scope::Namespace(y)) => {
            assert_eq!(a_cluster.ns_name(*x), b_cluster.ns_name(*y), "{what}: namespace")
        }
        _ => panic!("{what}: scope {:?} vs {:?}", a.scope, b.scope),
    }
    assert_eq!(a.pod_selector, b.pod_selector, "{what}: pod selector");
    assert_eq!(a.ingress, b.ingress, "{what}: ingress");
    assert_eq!(a.egress, b.egress, "{what}: egress");
    assert_eq!((a.affects_ingress, a.affects_egress), (b.affects_ingress, b.affects_egress), "{what}: directions");
}

/// Every policy's manifest, loaded again, is the same policy; pasted into a what-if it replaces the policy and
/// changes nothing.
async fn manifests_round_trip(st: AppState) -> Vec<(String, String)> {
    let model = st.model();
    let cluster = model.engine.cluster();
    let app = router(st.clone());
    let mut texts = Vec::new();
    for (i, pol) in cluster.policies.iter().enumerate() {
        let r = cluster.policy_ref(netpol_core::model::PolicyId::new(i));
        let m = get(&app, &format!("/api/v1/manifest?policy={r}")).await;
        assert_eq!(m.status, StatusCode::OK, "{r}: {}", m.text());
        assert!(m.content_type.starts_with("application/yaml"), "{}", m.content_type);
        let text = m.text();
        let back = netpol_core::load::load_str("manifest", &text);
        assert!(back.diagnostics.is_empty(), "{r}: {:?}\n{text}", back.diagnostics);
        assert_eq!(back.cluster.policies.len(), 1, "{r}:\n{text}");
        let again = &back.cluster.policies[0];
        let what = format!("{r}:\n{text}");
        assert_same_policy(&what, (pol, cluster), (again, &back.cluster));
        let w = graph_whatif(&app, "?port=8080", &text).await;
        assert_eq!(w.status, StatusCode::OK, "{what}\n{}", w.text());
        let w = w.json();
        assert_eq!(w["diff"]["groups"], json!([]), "{what}\n{w}");
        assert_eq!(w["diff"]["outside"].as_array().map_or(0, |o| o.len()), 0, "{what}\n{w}");
        assert_eq!(w["applied"][0]["replaces"], true, "{what}");
        texts.push((r, text));
    }
    texts
}

#[tokio::test]
async fn manifests_of_cluster_scoped_policies_round_trip_in_their_own_shape() {
    let texts = manifests_round_trip(state()).await;
    assert_eq!(texts.len(), 4);
    let (_dir, st) = fixture_state();
    let texts: std::collections::BTreeMap<String, String> =
        texts.into_iter().chain(manifests_round_trip(st).await).collect();
    let t = &texts["cnp/env-guard"];
    assert!(t.starts_with("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\n"), "{t}");
    assert!(
        t.contains(
            "  tier: Admin\n  priority: 10\n  subject:\n    namespaces:\n      matchLabels:\n        env: prod\n"
        ),
        "{t}"
    );
    assert!(t.contains("  - name: monitoring-to-tenants\n    action: Pass\n    from:\n    - namespaces:\n"), "{t}");
    assert!(!t.contains("namespace:") && !t.contains("podSelector") && !t.contains("policyTypes"), "{t}");
    let t = &texts["cnp/no-metadata-service"];
    assert!(t.contains("    action: Accept\n"), "{t}");
    assert!(t.contains("    protocols:\n    - tcp:\n        destinationPort:\n          number: 443\n"), "{t}");
    let t = &texts["cnp/cnp-baseline"];
    assert!(t.contains("  tier: Baseline\n  priority: 3\n"), "{t}");
    assert!(t.contains("  subject:\n    pods:\n      namespaceSelector: {}\n      podSelector:\n"), "{t}");
    assert!(t.contains("    - destinationNamedPort: http\n"), "{t}");
    assert!(
        t.contains(
            "    - udp:\n        destinationPort:\n          range:\n            start: 53\n            end: 54\n"
        ),
        "{t}"
    );
    let t = &texts["anp/anp-all"];
    assert!(t.starts_with("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"), "{t}");
    assert!(!t.contains("tier:") && t.contains("  priority: 5\n"), "{t}");
    assert!(t.contains("    - namedPort: http\n") && t.contains("    - portRange:\n        protocol: UDP\n"), "{t}");
    assert!(t.contains("    action: Allow\n") && !t.contains("Accept"), "{t}");
    assert_eq!(t.matches("namedPort").count(), 1, "one entry for the three protocols: {t}");
    let t = &texts["banp/default"];
    assert!(t.starts_with("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\n"), "{t}");
    assert!(!t.contains("priority") && !t.contains("tier"), "{t}");
    let t = &texts["a/np"];
    assert!(t.starts_with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"), "{t}");

    let app = router(state());
    let r = get(&app, "/api/v1/manifest?policy=anp/env-guard").await;
    assert_error(&r, StatusCode::NOT_FOUND, "policy");
    let msg = assert_error(&get(&app, "/api/v1/manifest?policy=env-guard").await, StatusCode::BAD_REQUEST, "policy");
    assert!(msg.contains("cnp/name"), "{msg}");
}

// ---- explanations and the OpenAPI document ----

#[tokio::test]
async fn explain_walks_the_tiers() {
    let app = router(state());
    let j = get(&app, "/api/v1/explain?src=monitoring/prometheus&dst=prod/web&port=8080").await.json();
    assert_eq!(j["verdict"], "deny");
    let ing = &j["ingress"];
    assert_eq!(ing["decided_by"], "rule");
    let walk: Vec<String> = ing["walk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{} {} {} {} {}", m["tier"], m["policy"], m["priority"], m["name"], m["action"]))
        .collect();
    assert_eq!(
        walk,
        [
            r#""Admin" "cnp/env-guard" 10 "monitoring-to-tenants" "pass""#,
            r#""Baseline" "cnp/prod-baseline" 10 "everything-else" "deny""#
        ]
    );
    assert_eq!(j["egress"]["decided_by"], "default");
    let j = get(&app, "/api/v1/explain?src=prod/web&dst=93.184.216.34&port=443&dst_fqdn=api.example.com").await.json();
    assert_eq!((&j["verdict"], &j["dst_fqdn"]), (&json!("allow"), &json!("api.example.com")), "{j}");
    assert_eq!(j["egress"]["walk"][0]["name"], "allow-example-apis", "{j}");
    let j = get(&app, "/api/v1/explain?src=prod/web&dst=93.184.216.34&port=443").await.json();
    assert!(j.get("dst_fqdn").is_none(), "{j}");
    assert_eq!(j["egress"]["decided_by"], "default", "{j}");
}

#[tokio::test]
async fn tiered_answers_match_their_openapi_schemas() {
    let (_dir, st) = fixture_state();
    for app in [router(state()), router(st)] {
        let doc = get(&app, "/api/v1/openapi.json").await.json();
        let cnp = "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: x}\n\
                   spec: {tier: Baseline, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}\n";
        let flows = json!([
            {"src": "prod/web", "dst": "93.184.216.34", "port": 443, "dst_fqdn": "api.example.com"},
            {"src": "monitoring/prometheus", "dst": "prod/web", "port": 8080},
            {"src": "a/web", "dst": "b/client", "port": 9, "protocol": "SCTP"},
        ]);
        let cases: Vec<(Method, &str, String, Vec<u8>)> = vec![
            (Method::GET, "/api/v1/explain", "?src=monitoring/prometheus&dst=prod/web&port=8080".into(), vec![]),
            (Method::GET, "/api/v1/explain", "?src=dev/web&dst=prod/db&port=5432".into(), vec![]),
            (
                Method::GET,
                "/api/v1/explain",
                "?src=prod/web&dst=1.2.3.4&port=443&dst_fqdn=a.example.com".into(),
                vec![],
            ),
            (Method::GET, "/api/v1/explain", "?src=b/client&dst=a/web&port=8080".into(), vec![]),
            (Method::GET, "/api/v1/explain", "?src=a/web&dst=192.168.0.1&port=9/SCTP".into(), vec![]),
            (Method::POST, "/api/v1/query", "?explain=true".into(), flows.to_string().into_bytes()),
            (Method::GET, "/api/v1/pods", String::new(), vec![]),
            (Method::GET, "/api/v1/policies", String::new(), vec![]),
            (Method::GET, "/api/v1/graph", "?port=8080".into(), vec![]),
            (Method::POST, "/api/v1/graph/whatif", "?port=8080".into(), cnp.as_bytes().to_vec()),
            (
                Method::POST,
                "/api/v1/whatif",
                String::new(),
                format!("apply:\n- {}", cnp.replace('\n', "\n  ")).into_bytes(),
            ),
            (Method::GET, "/api/v1/manifest", "?policy=cnp/env-guard".into(), vec![]),
        ];
        for (method, path, query, body) in cases {
            let ct = if path.contains("whatif") { "application/yaml" } else { "application/json" };
            let r = call(&app, method.clone(), &format!("{path}{query}"), &[("content-type", ct)], body).await;
            if r.status != StatusCode::OK && r.status != StatusCode::NOT_FOUND {
                panic!("{method} {path}{query}: {} {}", r.status, r.text());
            }
            assert_declared(&doc, &method, path, &r);
        }
    }
}
