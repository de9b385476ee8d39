//! `netpol lint` end to end: every rule on a positive fixture (snapshot of the human output), a clean fixture,
//! exit codes, `--disable`, the config file, JSON, and SARIF validated against the SARIF 2.1.0 schema.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> String {
    format!("tests/data/lint/{name}")
}

/// Runs netpol from the repository root (so that file names in the output are relative and stable).
fn netpol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netpol")).args(args).current_dir(root()).env("NO_COLOR", "1").output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn every_rule_fires_on_the_positive_fixture() {
    let o = netpol(&["lint", "-f", &fixture("all-rules.yaml")]);
    let text = stdout(&o);
    for code in [
        "NP001", "NP002", "NP003", "NP004", "NP005", "NP006", "NP007", "NP008", "NP009", "NP010", "NP011", "NP012",
        "NP013", "NP014", "NP015", "NP016", "NP017", "NP018",
    ] {
        assert!(text.contains(&format!("[{code}]")), "{code} missing:\n{text}");
    }
    // NP003 is an error: default --fail-on error exits 1.
    assert_eq!(o.status.code(), Some(1));
    insta::assert_snapshot!("lint_all_rules", text);
}

#[test]
fn clean_fixture_has_no_findings() {
    let o = netpol(&["lint", "-f", &fixture("clean.yaml"), "--fail-on", "info"]);
    assert_eq!(
        stdout(&o),
        "cni: generic (auto: no Cilium, Calico or Antrea objects or agents)\n0 error(s), 0 warning(s), 0 info\n"
    );
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn example_cluster_flags_the_mis_indent() {
    let o = netpol(&["lint", "-f", "examples/three-tier"]);
    let text = stdout(&o);
    assert!(text.contains("[NP002]") && text.contains("allow-postgres-from-backend"), "{text}");
    assert_eq!(o.status.code(), Some(0), "only warnings and infos");
    insta::assert_snapshot!("lint_example", text);
}

#[test]
fn fail_on_disable_and_config() {
    let f = fixture("all-rules.yaml");
    assert_eq!(netpol(&["lint", "-f", &f, "--fail-on", "never"]).status.code(), Some(0));
    let o = netpol(&["lint", "-f", &f, "--disable", "NP003"]);
    assert!(!stdout(&o).contains("[NP003]"));
    assert_eq!(o.status.code(), Some(0), "no error left");
    assert_eq!(netpol(&["lint", "-f", &f, "--disable", "NP003", "--fail-on", "warning"]).status.code(), Some(1));
    let dir = crate::common::tempdir();
    let cfg = dir.path().join("netpol.yaml");
    std::fs::write(&cfg, "lint:\n  disable: [NP009, redundant-rule]\n  severity: {NP003: warning}\n").unwrap();
    let o = netpol(&["lint", "-f", &f, "--config", cfg.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(!text.contains("[NP009]") && !text.contains("[NP011]"), "{text}");
    assert!(text.contains("warning[NP003]"), "{text}");
    assert_eq!(o.status.code(), Some(0));
    std::fs::write(&cfg, "lint:\n  disabled: [NP009]\n").unwrap();
    let bad = netpol(&["lint", "-f", &f, "--config", cfg.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid config file"));
}

#[test]
fn json_output() {
    let o = netpol(&["lint", "-f", &fixture("all-rules.yaml"), "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cni"]["name"], "generic", "{v}");
    let np5 = v["findings"].as_array().unwrap().iter().find(|f| f["code"] == "NP005").unwrap();
    assert_eq!(np5["field"], "spec.ingress[0].ports[0]");
    assert_eq!(np5["object"], "NetworkPolicy shop/db-ingress");
    assert_eq!(np5["origin"]["file"], "tests/data/lint/all-rules.yaml");
    let line = np5["line"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(root().join("tests/data/lint/all-rules.yaml")).unwrap();
    assert_eq!(text.lines().nth(line - 1).unwrap().trim(), "- port: postgres");
}

/// The SARIF 2.1.0 schema: `.ci/run` downloads it (from the npm package `@microsoft/jest-sarif`, which ships it)
/// to `<target dir>/sarif/sarif-schema-2.1.0.json`, whose path `build.rs` passes here; the test never fetches it.
fn sarif_schema() -> serde_json::Value {
    let path = env!("NETPOL_SARIF_SCHEMA");
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!("the SARIF 2.1.0 schema is missing at {path} ({e}): `.ci/run` downloads it (the test is ignored without it)")
    });
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

#[test]
fn sarif_is_valid_and_points_at_lines() {
    let o = netpol(&["lint", "-f", &fixture("all-rules.yaml"), "-o", "sarif"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    // The CNI the rules followed, in the run's property bag; `--cni` names it there too.
    assert_eq!(v["runs"][0]["properties"]["cni"]["name"], "generic", "{v}");
    let given = netpol(&["--cni", "calico", "lint", "-f", &fixture("all-rules.yaml"), "-o", "sarif"]);
    let g: serde_json::Value = serde_json::from_slice(&given.stdout).unwrap();
    assert_eq!(g["runs"][0]["properties"]["cni"], serde_json::json!({"name": "calico", "auto": null}));
    let results = v["runs"][0]["results"].as_array().unwrap();
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), netpol_core::lint::RULES.len());
    assert_eq!(rules.len(), 27);
    for r in results {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        let phys = &r["locations"][0]["physicalLocation"];
        assert_eq!(phys["artifactLocation"]["uri"], "tests/data/lint/all-rules.yaml");
        assert!(phys["region"]["startLine"].as_u64().unwrap() >= 1);
    }
    let np7 = results.iter().find(|r| r["ruleId"] == "NP007").unwrap();
    let line = np7["locations"][0]["physicalLocation"]["region"]["startLine"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(root().join("tests/data/lint/all-rules.yaml")).unwrap();
    assert!(text.lines().nth(line - 1).unwrap().contains("ipBlock: {cidr: 10.1.0.0/16}"));
}

#[test]
#[cfg_attr(not(netpol_sarif_schema), ignore = "needs the SARIF 2.1.0 schema in target/sarif/ (.ci/run downloads it)")]
fn sarif_validates_against_the_sarif_2_1_0_schema() {
    let o = netpol(&["lint", "-f", &fixture("all-rules.yaml"), "-o", "sarif"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut schema = sarif_schema();
    // The published schema's `language` patterns are not valid regexes for strict validators (a stray `]`);
    // netpol never emits `language`, so replace them with the intended pattern.
    fn fix(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if m.get("pattern").and_then(|p| p.as_str()).is_some_and(|p| p.ends_with("]?$")) {
                    m.insert("pattern".into(), serde_json::json!("^[a-zA-Z]{2}(-[a-zA-Z]{2})?$"));
                }
                m.values_mut().for_each(fix);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(fix),
            _ => {}
        }
    }
    fix(&mut schema);
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "SARIF does not validate: {errors:#?}");
    // The Calico findings too (objects that are Tiers, findings without a field).
    let dir = crate::common::tempdir();
    std::fs::write(dir.path().join("calico.yaml"), CALICO).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["lint", "-f", "calico.yaml", "-o", "sarif", "--fail-on", "never"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "SARIF of the Calico findings does not validate: {errors:#?}");
}

#[test]
fn unknown_rule_codes_are_errors_naming_the_closest_and_the_known_codes() {
    let f = fixture("all-rules.yaml");
    let o = netpol(&["lint", "-f", &f, "--disable", "NP999"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(o.stdout.is_empty());
    assert!(err.contains("unknown lint rule `NP999` in --disable: did you mean `NP009` (no-default-deny)?"), "{err}");
    assert!(err.contains("known codes: NP001, NP002, NP003"), "{err}");
    let o = netpol(&["lint", "-f", &f, "--disable", "redundant-rul"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("did you mean `NP011` (redundant-rule)?"));
    // Codes in any case and names are fine, on the command line and in the config file (severity keys too).
    let o = netpol(&["lint", "-f", &f, "--disable", "np003", "--disable", "port-not-served"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!stdout(&o).contains("[NP003]") && !stdout(&o).contains("[NP006]"));
    let dir = crate::common::tempdir();
    let cfg = dir.path().join("netpol.yaml");
    // A byte-order mark at the start, a lowercase code and a name as severity keys.
    std::fs::write(&cfg, "\u{feff}lint:\n  disable: [np009]\n  severity: {np003: warning, port-not-served: error}\n")
        .unwrap();
    let o = netpol(&["lint", "-f", &f, "--config", cfg.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(!text.contains("[NP009]") && text.contains("warning[NP003]") && text.contains("error[NP006]"), "{text}");
    for (body, want) in [
        ("lint:\n  disable: [NP009, NP0099]\n", "unknown lint rule `NP0099` in lint.disable: did you mean `NP009`"),
        ("lint:\n  severity: {NP066: info}\n", "unknown lint rule `NP066` in lint.severity: did you mean `NP006`"),
    ] {
        std::fs::write(&cfg, body).unwrap();
        let o = netpol(&["lint", "-f", &f, "--config", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("invalid config file") && err.contains(want), "{err}");
    }
}

#[test]
fn config_errors_name_no_rust_types() {
    let f = fixture("clean.yaml");
    let dir = crate::common::tempdir();
    let cfg = dir.path().join("netpol.yaml");
    for (body, want) in [
        ("[]\n", "expected a mapping with a `lint:` section"),
        ("lint: []\n", "lint: invalid type: sequence, expected a mapping with `disable`, `severity` or `dns`"),
        (
            "lint: {dns: x}\n",
            "lint.dns: invalid type: string \"x\", expected a mapping with `namespace` and `pod_labels`",
        ),
    ] {
        std::fs::write(&cfg, body).unwrap();
        let o = netpol(&["lint", "-f", &f, "--config", cfg.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "want `{want}` in {err}");
        assert!(!err.contains("struct"), "{err}");
    }
}

/// The SARIF result's `artifactLocation.uri` of each finding.
fn sarif_uris(o: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert!(!results.is_empty());
    results
        .iter()
        .map(|r| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sarif_uris_are_relative_to_the_current_directory_and_percent_encoded() {
    // An absolute path inside the current directory: relative (before, the absolute path without a scheme).
    let abs = root().join("tests/data/lint/all-rules.yaml").canonicalize().unwrap();
    let o = netpol(&["lint", "-f", abs.to_str().unwrap(), "-o", "sarif", "--fail-on", "never"]);
    assert!(sarif_uris(&o).iter().all(|u| u == "tests/data/lint/all-rules.yaml"), "{:?}", sarif_uris(&o));
    // `./` and a name with a space, from another directory.
    let dir = crate::common::tempdir();
    std::fs::create_dir(dir.path().join("k8s manifests")).unwrap();
    std::fs::copy(&abs, dir.path().join("k8s manifests/all rules.yaml")).unwrap();
    let run_in = |cwd: &std::path::Path, f: &str| {
        Command::new(env!("CARGO_BIN_EXE_netpol"))
            .args(["lint", "-f", f, "-o", "sarif", "--fail-on", "never"])
            .current_dir(cwd)
            .output()
            .unwrap()
    };
    let o = run_in(dir.path(), "./k8s manifests/all rules.yaml");
    assert!(sarif_uris(&o).iter().all(|u| u == "k8s%20manifests/all%20rules.yaml"), "{:?}", sarif_uris(&o));
    // Outside the current directory: a file:// URI.
    let o = run_in(&dir.path().join("k8s manifests"), abs.to_str().unwrap());
    let want = format!("file://{}", abs.display());
    assert!(sarif_uris(&o).iter().all(|u| *u == want), "{:?}", sarif_uris(&o));
}

/// Calico's policies, each with a mistake a lint rule finds in it.
const CALICO: &str = r#"# Calico's policies, each mistake the lint rules find in them.
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    team: shop
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  containers:
  - name: c
    ports:
    - name: http
      containerPort: 8080
status:
  podIPs:
  - ip: 10.0.0.1
  - ip: fd00::1
---
apiVersion: v1
kind: Pod
metadata:
  name: db
  namespace: shop
  labels:
    app: db
spec:
  containers:
  - name: c
status:
  podIP: 10.0.0.2
---
apiVersion: v1
kind: Pod
metadata:
  name: coredns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  containers:
  - name: c
status:
  podIP: 10.0.9.10
---
# NP020: a tier without policies.
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: unused
spec:
  order: 50
---
# NP019: a tier whose only policy selects no pod (NP001: a misspelt label key).
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: platform
spec:
  order: 100
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: platform.web
spec:
  tier: platform
  selector: ap == 'web'
  types:
  - Ingress
---
# NP018: tier strict ends in Deny and its policy allows no DNS. NP014: notNets of IPv4 only, for a dual-stack pod.
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: strict
spec:
  order: 200
  defaultAction: Deny
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: strict.egress
spec:
  tier: strict
  selector: app == 'web'
  types:
  - Egress
  egress:
  - action: Allow
    destination:
      notNets:
      - 10.0.0.0/8
---
# NP002: a misspelt label value. NP017: a Pass with no later tier for shop/db.
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: security
spec:
  order: 300
  defaultAction: Pass
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: security.db
  namespace: shop
spec:
  tier: security
  order: 10
  selector: app == 'db'
  ingress:
  - action: Deny
    source:
      selector: app == 'wbe'
  - action: Pass
---
# NP016: an Allow after the Deny of everything from namespace shop.
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: security.lockdown
  namespace: shop
spec:
  tier: security
  order: 20
  selector: app == 'web'
  ingress:
  - action: Deny
    source:
      namespaceSelector: team == 'shop'
  - action: Allow
    source:
      selector: app == 'db'
---
# NP021: a Deny of a failsafe port on host endpoints.
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: node1-eth0
  labels:
    role: node
spec:
  node: node1
  interfaceName: eth0
  expectedIPs:
  - 10.0.5.1
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: no-ssh
spec:
  selector: role == 'node'
  ingress:
  - action: Deny
    protocol: TCP
    destination:
      ports:
      - 22
  - action: Allow
"#;

/// `netpol lint` on Calico policies: the rules extended to Calico (NP001, NP002, NP014, NP016, NP017, NP018) and
/// the tier rules (NP019, NP020) and the host endpoint rule (NP021) fire, each on the line of its field (or of its object), in text and in SARIF.
#[test]
fn calico_policies() {
    let dir = crate::common::tempdir();
    std::fs::write(dir.path().join("calico.yaml"), CALICO).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_netpol"))
            .args(["lint", "-f", "calico.yaml", "--fail-on", "never"])
            .args(args)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    for code in ["NP001", "NP002", "NP014", "NP016", "NP017", "NP018", "NP019", "NP020", "NP021"] {
        assert!(text.contains(&format!("[{code}]")), "{code} missing:\n{text}");
    }
    insta::assert_snapshot!("lint_calico", text);
    let o = run(&["-o", "sarif"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    let lines: Vec<&str> = CALICO.lines().collect();
    let mut seen = Vec::new();
    for r in v["runs"][0]["results"].as_array().unwrap() {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        let phys = &r["locations"][0]["physicalLocation"];
        assert_eq!(phys["artifactLocation"]["uri"], "calico.yaml");
        let line = phys["region"]["startLine"].as_u64().unwrap() as usize;
        seen.push((r["ruleId"].as_str().unwrap().to_string(), lines[line - 1].trim().to_string()));
    }
    let want = [
        ("NP020", "apiVersion: projectcalico.org/v3"),
        ("NP019", "apiVersion: projectcalico.org/v3"),
        ("NP001", "selector: ap == 'web'"),
        ("NP018", "defaultAction: Deny"),
        ("NP014", "notNets:"),
        ("NP002", "selector: app == 'wbe'"),
        ("NP017", "- action: Pass"),
        ("NP016", "- action: Allow"),
        ("NP021", "- action: Deny"),
    ];
    for (code, line) in want {
        assert!(seen.iter().any(|(c, l)| c == code && l == line), "{code} not on `{line}`: {seen:?}");
    }
}

/// Cilium's rules (NP023–NP027) in SARIF: each result points at the line of the Cilium field it names.
#[test]
fn cilium_rules_point_at_their_fields() {
    let o = netpol(&["lint", "-f", &fixture("cilium.yaml"), "-o", "sarif"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    let text = std::fs::read_to_string(root().join("tests/data/lint/cilium.yaml")).unwrap();
    for (code, want) in [
        ("NP023", "- matchName: api.example.com"),
        ("NP024", "- ports: [{port: \"8080\", protocol: TCP}]"),
        ("NP025", "- matchLabels: {app: client}"),
        ("NP026", "- fromEntities: [world]"),
        ("NP027", "- matchLabels: {env: prod}"),
    ] {
        let found: Vec<_> = results.iter().filter(|r| r["ruleId"] == code).collect();
        assert_eq!(found.len(), 1, "{code}: {results:#?}");
        let line = found[0]["locations"][0]["physicalLocation"]["region"]["startLine"].as_u64().unwrap() as usize;
        let at = text.lines().nth(line - 1).unwrap();
        assert!(at.contains(want), "{code} points at line {line} `{at}`, not `{want}`");
    }
}

/// Antrea's policies: each mistake of the fixture is one finding (though the loader splits each object into one
/// policy per rule and appliedTo entry), on the Antrea object, pointing at the line of the field it names.
#[test]
fn antrea_rules_point_at_their_fields_once() {
    let o = netpol(&["lint", "-f", &fixture("antrea.yaml"), "--disable", "NP009", "-o", "sarif"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    let text = std::fs::read_to_string(root().join("tests/data/lint/antrea.yaml")).unwrap();
    let codes: Vec<&str> = results.iter().map(|r| r["ruleId"].as_str().unwrap()).collect();
    assert_eq!(codes.len(), 6, "{codes:?}");
    for (code, want, line_no) in [
        ("NP016", "- action: Allow", 66),
        ("NP002", "- group: nobody", 85),
        ("NP015", "- action: Allow", 80),
        ("NP018", "- action: Drop", 97),
        ("NP017", "- action: Pass", 109),
        ("NP001", "- podSelector: {matchLabels: {app: ghost}}", 120),
    ] {
        let found: Vec<_> = results.iter().filter(|r| r["ruleId"] == code).collect();
        assert_eq!(found.len(), 1, "{code}: {results:#?}");
        let line = found[0]["locations"][0]["physicalLocation"]["region"]["startLine"].as_u64().unwrap() as usize;
        let at = text.lines().nth(line - 1).unwrap();
        assert!(at.contains(want) && line == line_no, "{code} points at line {line} `{at}`, not {line_no} `{want}`");
    }
    let o = netpol(&["lint", "-f", &fixture("antrea.yaml"), "--disable", "NP009", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let objects: Vec<&str> = v["findings"].as_array().unwrap().iter().map(|f| f["object"].as_str().unwrap()).collect();
    assert_eq!(
        objects,
        [
            "ClusterNetworkPolicy.crd.antrea.io deny-b",
            "ClusterNetworkPolicy.crd.antrea.io allow-client",
            "ClusterNetworkPolicy.crd.antrea.io allow-client",
            "ClusterNetworkPolicy.crd.antrea.io b-egress",
            "NetworkPolicy.crd.antrea.io a/pass",
            "NetworkPolicy.crd.antrea.io a/ghost",
        ]
    );
}
