//! End-to-end tests of the `netpol` binary on the bundled example and small fixtures.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example() -> String {
    root().join("examples/three-tier").display().to_string()
}

/// `netpol ARGS` with piped stdin, stdout and stderr, no colour.
fn spawn_netpol(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn netpol(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = spawn_netpol(args);
    if let Some(s) = stdin {
        // A command may exit before it reads its input (a usage error): a closed pipe is not a failure.
        match child.stdin.take().unwrap().write_all(s.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r.unwrap(),
        }
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn query_keeps_input_fields_and_appends_verdicts_in_order() {
    let ex = example();
    let input = concat!(
        r#"{"id":1,"src":"frontend/web","dst":"backend/api","port":8080,"note":{"a":[1,2]}}"#,
        "\n",
        r#"{"src":"frontend/web","dst":"database/postgres","protocol":"TCP","port":5432}"#,
        "\n",
        r#"{"src":"backend/api","dst":"kube-system/coredns","protocol":"UDP","port":53}"#,
        "\n",
        r#"{"src":"10.244.2.21","dst":"93.184.216.34","port":443}"#,
        "\n",
    );
    let o = netpol(&["query", "-f", &ex], Some(input));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
    assert_eq!(
        lines,
        vec![
            r#"{"id":1,"src":"frontend/web","dst":"backend/api","port":8080,"note":{"a":[1,2]},"verdict":"allow"}"#,
            r#"{"src":"frontend/web","dst":"database/postgres","protocol":"TCP","port":5432,"verdict":"deny"}"#,
            r#"{"src":"backend/api","dst":"kube-system/coredns","protocol":"UDP","port":53,"verdict":"allow"}"#,
            r#"{"src":"10.244.2.21","dst":"93.184.216.34","port":443,"verdict":"allow"}"#,
        ]
    );
}

#[test]
fn query_errors_are_per_line_and_processing_continues() {
    let ex = example();
    let input = "not json\n{\"src\":\"nope/x\",\"dst\":\"backend/api\",\"port\":80}\n{\"src\":\"frontend/web\",\"dst\":\"backend/api\",\"port\":70000}\n{\"src\":\"frontend/web\",\"dst\":\"backend/api\",\"port\":8080,\"protocol\":\"ICMP\"}\n{\"src\":\"frontend/web\",\"dst\":\"backend/api\",\"port\":8080}\n";
    let o = netpol(&["query", "-f", &ex], Some(input));
    assert_eq!(o.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["input"], "not json");
    assert!(lines[0]["error"].as_str().unwrap().contains("invalid flow"));
    assert!(lines[1]["error"].as_str().unwrap().contains("unknown pod `nope/x`"));
    assert_eq!(lines[1]["src"], "nope/x");
    assert!(lines[2]["error"].as_str().unwrap().contains("invalid port 70000"));
    assert!(lines[3]["error"].as_str().unwrap().contains("ICMP has no port"), "{}", lines[3]);
    assert_eq!(lines[4]["verdict"], "allow");
    assert!(lines[..4].iter().all(|l| l.get("verdict").is_none()));
}

/// ICMP flows: `protocol` ICMP/ICMPv6 with an optional `icmp` message (default: an echo request); NetworkPolicy
/// does not define ICMP, and explain says what the answer assumes.
#[test]
fn query_answers_icmp_flows() {
    let ex = example();
    let input = concat!(
        r#"{"src":"frontend/web","dst":"backend/api","protocol":"ICMP"}"#,
        "\n",
        r#"{"src":"frontend/web","dst":"backend/api","protocol":"icmp","icmp":{"type":3,"code":4}}"#,
        "\n",
        r#"{"src":"frontend/web","dst":"backend/api","protocol":"ICMP","icmp":{"type":300}}"#,
        "\n",
        r#"{"src":"frontend/web","dst":"backend/api","protocol":"TCP","port":80,"icmp":{"type":8}}"#,
        "\n",
    );
    let o = netpol(&["query", "-f", &ex], Some(input));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // backend/api is isolated by rules with ports: no ICMP message is allowed to it.
    assert_eq!(lines[0]["verdict"], "deny", "{}", lines[0]);
    assert_eq!(lines[1]["verdict"], "deny", "{}", lines[1]);
    assert!(lines[2]["error"].as_str().unwrap().contains("icmp.type 300"), "{}", lines[2]);
    assert!(lines[3]["error"].as_str().unwrap().contains("not TCP"), "{}", lines[3]);
    let o = netpol(&["explain", "-f", &ex, "frontend/web", "backend/api", "icmp:8:0"], None);
    let text = stdout(&o);
    assert!(text.contains("ICMP type 8 code 0"), "{text}");
    assert!(text.contains("do not define ICMP"), "{text}");
    let o = netpol(&["explain", "-f", &ex, "frontend/web", "backend/api", "icmp", "-o", "json"], None);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["icmp"], serde_json::json!({"type": 8, "code": 0}));
    assert_eq!(v["protocol"], "ICMP");
}

#[test]
fn query_explain_adds_the_explanation() {
    let ex = example();
    let o = netpol(
        &["query", "-f", &ex, "--explain"],
        Some("{\"src\":\"frontend/web\",\"dst\":\"backend/api\",\"port\":9100}\n"),
    );
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["explain"]["egress"]["allowed"], false);
    assert_eq!(v["explain"]["ingress"]["isolated"], true);
}

#[test]
fn query_reads_flows_from_a_file() {
    let dir = crate::common::tempdir();
    let flows = dir.path().join("flows.jsonl");
    std::fs::write(&flows, "{\"src\":\"monitoring/prometheus\",\"dst\":\"backend/api\",\"port\":9100}\n").unwrap();
    let o = netpol(&["query", "-f", &example(), "--flows", flows.to_str().unwrap()], None);
    assert!(stdout(&o).contains("\"verdict\":\"allow\""));
}

#[test]
fn explain_text_for_the_example() {
    let ex = example();
    let mut all = String::new();
    for args in [
        ["frontend/web", "backend/api", "8080"],
        ["backend/worker", "database/postgres", "5432"],
        ["frontend/web", "database/postgres", "5432"],
        ["backend/api", "10.20.30.40", "443"],
        ["203.0.113.7", "frontend/web", "22/tcp"],
        ["backend/api", "kube-system/coredns", "53/UDP"],
    ] {
        let o = netpol(&["explain", "-f", &ex, args[0], args[1], args[2]], None);
        assert_eq!(o.status.code(), Some(0));
        all.push_str(&stdout(&o));
        all.push('\n');
    }
    insta::assert_snapshot!("explain_example", all);
}

#[test]
fn explain_json() {
    let o = netpol(&["explain", "-f", &example(), "backend/worker", "database/postgres", "5432", "-o", "json"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["ingress"]["allowed_by"][0]["policy"], "database/allow-postgres-from-backend");
    assert_eq!(v["ingress"]["allowed_by"][0]["peer"], 0);
}

#[test]
fn explain_rejects_unknown_pods_with_status_2() {
    let o = netpol(&["explain", "-f", &example(), "frontend/nope", "backend/api", "80"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown pod `frontend/nope`"));
}

/// `::ffff:10.244.1.11` is frontend/web-7c9f8d6b5-k2x9p (Go's `net` package, and so Kubernetes, treats IPv4-mapped IPv6
/// addresses as IPv4); a zoned or malformed address is an address error, not "unknown pod".
#[test]
fn mapped_zoned_and_malformed_addresses_in_query_and_explain() {
    let ex = example();
    let input = concat!(
        r#"{"src":"::ffff:10.244.1.11","dst":"backend/api","port":8080}"#,
        "\n",
        r#"{"src":"fe80::1%eth0","dst":"backend/api","port":8080}"#,
        "\n",
        r#"{"src":"frontend/web","dst":"10.244.2.300","port":8080}"#,
        "\n",
    );
    let o = netpol(&["query", "-f", &ex, "--explain"], Some(input));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{}", stdout(&o));
    assert_eq!(lines[0]["verdict"], "allow", "{}", lines[0]);
    assert_eq!(lines[0]["explain"]["src"], "frontend/web-7c9f8d6b5-k2x9p", "{}", lines[0]);
    let zoned = lines[1]["error"].as_str().unwrap();
    assert!(
        zoned.contains("zoned IPv6 addresses (`%eth0`) are not supported: give the address without the zone"),
        "{zoned}"
    );
    let bad = lines[2]["error"].as_str().unwrap();
    assert!(bad.contains("`10.244.2.300` is not a valid IP address") && !bad.contains("unknown pod"), "{bad}");

    let o = netpol(&["explain", "-f", &ex, "::ffff:10.244.1.11", "backend/api", "8080"], None);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    // The first line names the CNI whose reading the answer follows; the verdict comes next.
    assert!(
        stdout(&o).starts_with(
            "cni: generic (auto: no Cilium, Calico or Antrea objects or agents)\nALLOW frontend/web-7c9f8d6b5-k2x9p -> backend/api 8080/TCP"
        ),
        "{}",
        stdout(&o)
    );
    // Outside the cluster, the mapped address is the IPv4 address.
    let o = netpol(&["explain", "-f", &ex, "backend/api", "::ffff:10.20.30.40", "443"], None);
    assert!(stdout(&o).contains("backend/api -> 10.20.30.40 443/TCP"), "{}", stdout(&o));
    let o = netpol(&["explain", "-f", &ex, "fe80::1%eth0", "backend/api", "8080"], None);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("zoned IPv6 addresses (`%eth0`) are not supported") && !err.contains("unknown pod"), "{err}");
}

#[test]
fn matrix_outputs() {
    let ex = example();
    let table = netpol(&["matrix", "-f", &ex, "--port", "8080", "--port", "5432/TCP"], None);
    let summary = netpol(&["matrix", "-f", &ex, "-o", "summary"], None);
    let whole = netpol(&["matrix", "-f", &ex], None);
    insta::assert_snapshot!("matrix_table_ports", stdout(&table));
    insta::assert_snapshot!("matrix_summary", stdout(&summary));
    insta::assert_snapshot!("matrix_table_whole_port_space", stdout(&whole));

    let csv = netpol(&["matrix", "-f", &ex, "-o", "csv", "--port", "5432"], None);
    let csv = stdout(&csv);
    assert!(csv.starts_with("source,destination,5432/TCP\n"));
    assert!(csv.contains("backend/worker,database/postgres,allow\n"));
    assert!(csv.contains("frontend/web,database/postgres,deny\n"));

    let json = netpol(&["matrix", "-f", &ex, "-o", "json", "--port", "5432"], None);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let pods: Vec<&str> = v["pods"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    let i = pods.iter().position(|p| *p == "backend/worker").unwrap();
    let j = pods.iter().position(|p| *p == "database/postgres").unwrap();
    assert_eq!(v["ports"][0]["rows"][i][j], true);
    assert_eq!(v["ports"][0]["rows"][j][i], false);
}

#[test]
fn describe_outputs() {
    let ex = example();
    insta::assert_snapshot!("describe_all", stdout(&netpol(&["describe", "-f", &ex], None)));
    insta::assert_snapshot!(
        "describe_pod",
        stdout(&netpol(&["describe", "-f", &ex, "backend/api-6b8d7f5c4-m4n7r"], None))
    );
    // JSON: outside traffic per pod; web takes 8080 from anywhere, kube-dns is not isolated at all.
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&netpol(&["describe", "-f", &ex, "-o", "json"], None))).unwrap();
    assert_eq!(
        v["cni"],
        serde_json::json!({"name": "generic", "auto": "no Cilium, Calico or Antrea objects or agents"})
    );
    let pod = |name: &str| v["pods"].as_array().unwrap().iter().find(|p| p["pod"] == name).unwrap().clone();
    let web = pod("frontend/web");
    assert_eq!(web["outside"]["egress"], serde_json::json!([]));
    assert_eq!(
        web["outside"]["ingress"],
        serde_json::json!([{"ports": "TCP 8080", "addresses": ["0.0.0.0/0", "::/0"]}])
    );
    let dns = pod("kube-system/coredns");
    assert_eq!(dns["outside"]["egress"], serde_json::json!([{"ports": "all", "addresses": ["0.0.0.0/0", "::/0"]}]));
    // Labels as an object, as in a manifest (before: the string `app=web,tier=frontend`).
    assert_eq!(web["labels"], serde_json::json!({"app": "web"}));
    assert!(v["pods"].as_array().unwrap().iter().all(|p| p["labels"].is_object()), "{v}");
    insta::assert_snapshot!(
        "describe_pod_json",
        stdout(&netpol(&["describe", "-f", &ex, "backend/api-6b8d7f5c4-m4n7r", "-o", "json"], None))
    );
}

/// Antrea: an object lowers to one policy per rule and appliedTo entry; describe shows each object once (in the
/// sides, and with its tier, priority, appliedTo and rules in the pod view), the rules that apply marked.
#[test]
fn describe_shows_each_antrea_object_once() {
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {team: a}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: a, labels: {app: web}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: a, labels: {app: db}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.0.0.2}\n---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: guard}\nspec:\n  priority: 5\n  tier: securityops\n  ingress:\n  - {name: no-db, action: Drop, from: [{podSelector: {matchLabels: {app: db}}}], appliedTo: [{namespaceSelector: {matchLabels: {team: a}}}, {podSelector: {matchLabels: {app: web}}}]}\n  - {action: Allow, appliedTo: [{podSelector: {matchLabels: {app: db}}}]}\n  egress:\n  - {action: Pass, appliedTo: [{podSelector: {matchLabels: {app: web}}}]}\n";
    let o = netpol(&["describe", "-f", "-"], Some(yaml));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    let web = out.lines().find(|l| l.starts_with("a/web")).unwrap();
    assert_eq!(web.matches("acnp/guard").count(), 2, "once per direction: {out}");
    let o = netpol(&["describe", "-f", "-", "a/web"], Some(yaml));
    let out = stdout(&o);
    assert!(out.contains("Ingress:  [securityops] acnp/guard (priority 5); no NetworkPolicy selects it\n"), "{out}");
    let want = "Antrea policies (in evaluation order; * the rules that apply to this pod):\n  acnp/guard (tier \
                securityops, priority 5)\n    appliedTo: spec.ingress[0].appliedTo[0]: namespaceSelector `team=a`; \
                spec.ingress[0].appliedTo[1]: podSelector `app=web`; spec.ingress[1].appliedTo[0]: podSelector \
                `app=db`; spec.egress[0].appliedTo[0]: podSelector `app=web`\n    * spec.ingress[0] \"no-db\": Drop, from \
                podSelector `app=db` (any namespace), any port\n      spec.ingress[1]: Allow, from any peer, any port\n    \
                * spec.egress[0]: Pass, to any peer, any port\n";
    assert!(out.contains(want), "{out}");
    let o = netpol(&["describe", "-f", "-", "a/web", "-o", "json"], Some(yaml));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let a = &v["pods"][0]["antrea"];
    assert_eq!(a.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(a[0]["policy"], "acnp/guard");
    assert_eq!(a[0]["tier"], "securityops");
    assert_eq!(
        a[0]["rules"][1],
        serde_json::json!({"rule": "spec.ingress[1]", "action": "Allow", "applies": false, "peers": [], "ports": []})
    );
    assert_eq!(a[0]["rules"][0]["peers"], serde_json::json!(["podSelector `app=db` (any namespace)"]));
    assert_eq!(v["pods"][0]["ingress"]["policies"], serde_json::json!(["acnp/guard"]));
    // A service account and a group, each entry as written.
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {app: a}}\nspec: {serviceAccountName: sa1, containers: [{name: c}]}\nstatus: {podIP: 10.0.1.1}\n---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterGroup\nmetadata: {name: g}\nspec: {podSelector: {matchLabels: {app: a}}}\n---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\nspec:\n  priority: 1\n  appliedTo:\n  - serviceAccount: {name: sa1, namespace: x}\n  - group: g\n  ingress:\n  - action: Drop\n";
    let out = stdout(&netpol(&["describe", "-f", "-", "x/a"], Some(yaml)));
    assert!(
        out.contains("    appliedTo: spec.appliedTo[0]: serviceAccount x/sa1; spec.appliedTo[1]: group g (podSelector `app=a`)\n"),
        "{out}"
    );
}

#[test]
fn invalid_objects_are_reported_and_skipped_or_fatal_with_strict() {
    let dir = crate::common::tempdir();
    let f = dir.path().join("bad.yaml");
    std::fs::write(
        &f,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: x}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 80, endPort: 70}]}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\nspec: {containers: [{name: c}]}\n",
    )
    .unwrap();
    let path = f.to_str().unwrap();
    let o = netpol(&["describe", "-f", path], None);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("bad.yaml (document 0): NetworkPolicy x/bad: spec.ingress[0].ports[0].endPort"), "{err}");
    assert!(stdout(&o).contains("x/p"), "the valid pod is still loaded");
    assert!(stdout(&o).contains("not isolated"), "the invalid policy is not applied");
    let strict = netpol(&["--strict", "describe", "-f", path], None);
    assert_eq!(strict.status.code(), Some(2));
    // One object with two invalid fields is one invalid object (before: "2 invalid object(s)").
    std::fs::write(
        &f,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: x}\nspec:\n  podSelector: {matchExpressions: [{key: a, operator: Equals}]}\n  ingress: [{ports: [{port: 80, endPort: 70}]}]\n",
    )
    .unwrap();
    let o = netpol(&["describe", "-f", path], None);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(err.lines().filter(|l| l.starts_with("error: ")).count(), 2, "{err}");
    assert!(err.contains("warning: 1 invalid object(s) were skipped"), "{err}");
}

#[test]
fn directories_and_stdin_manifests() {
    let yaml = std::fs::read_to_string(root().join("examples/three-tier/workloads.yaml")).unwrap();
    let o = netpol(&["describe", "-f", "-"], Some(&yaml));
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("frontend/web"));
    assert!(stdout(&o).contains("not isolated"));
}

/// Every row of the example README's flow table is checked with `netpol query`.
#[test]
fn example_readme_flow_table_matches_the_engine() {
    let readme = std::fs::read_to_string(root().join("examples/three-tier/README.md")).unwrap();
    let clean = |s: &str| s.replace('`', "").split_whitespace().next().unwrap_or("").to_string();
    let mut input = String::new();
    let mut want = Vec::new();
    for line in readme.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        // | # | from | to | port | verdict | why |
        if cols.len() < 7 || cols[1].parse::<u32>().is_err() {
            continue;
        }
        let (src, dst) = (clean(cols[2]), clean(cols[3]));
        let port = clean(cols[4]);
        let (port, proto) = port.split_once('/').unwrap_or((&port, "TCP"));
        let verdict = if cols[5].contains("allowed") { "allow" } else { "deny" };
        input.push_str(&format!("{{\"src\":\"{src}\",\"dst\":\"{dst}\",\"port\":{port},\"protocol\":\"{proto}\"}}\n"));
        want.push(verdict);
    }
    assert!(want.len() >= 15, "expected the flow table, found {} rows", want.len());
    let o = netpol(&["query", "-f", &example()], Some(&input));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let got: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g["verdict"], *w, "{g}");
    }
    assert_eq!(got.len(), want.len());
}

#[test]
fn test_command_runs_the_example_assertions() {
    let ex = example();
    let assertions = root().join("examples/three-tier/assertions.yaml").display().to_string();
    let o = netpol(&["test", "-f", &ex, &assertions], None);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).ends_with("12 passed, 0 failed\n"), "{}", stdout(&o));
    let junit = netpol(&["test", "-f", &ex, &assertions, "-o", "junit"], None);
    assert!(stdout(&junit).contains("<testsuite name=\"netpol\" tests=\"12\" failures=\"0\""));
}

#[test]
fn diff_command_reports_new_allows() {
    let old = root().join("tests/data/diff/old").display().to_string();
    let new = root().join("tests/data/diff/new").display().to_string();
    let o = netpol(&["diff", "-f", &old, "--against", &new], None);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("+ ALLOW  shop/web-1, shop/web-2 -> shop/db  TCP 5432"), "{}", stdout(&o));
    let strict = netpol(&["diff", "-f", &old, "--against", &new, "--fail-on-new-allows", "-o", "markdown"], None);
    assert_eq!(strict.status.code(), Some(1));
    assert!(stdout(&strict).contains('|'));
}

/// `netpol` with a deadline: a hang is a failure, not a stuck test run.
fn netpol_within(args: &[&str], stdin: Option<&[u8]>, secs: u64) -> Output {
    let mut child = spawn_netpol(args);
    let input = stdin.map(<[u8]>::to_vec);
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        if let Some(b) = input {
            let _ = pipe.write_all(&b);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`netpol {}` did not finish within {secs} s", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    writer.join().unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn stdin_is_read_once_manifests_and_flows_cannot_share_it() {
    let yaml = std::fs::read_to_string(root().join("examples/three-tier/workloads.yaml")).unwrap();
    // `cat m.yaml | netpol query -f -`: the flows would be read from the same stdin.
    let o = netpol(&["query", "-f", "-"], Some(&yaml));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("stdin cannot carry both the manifests (`-f -`) and the flows"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    // With --flows FILE, `-f -` is fine.
    let dir = crate::common::tempdir();
    let flows = dir.path().join("flows.jsonl");
    std::fs::write(&flows, "{\"src\":\"frontend/web\",\"dst\":\"backend/api\",\"port\":8080}\n").unwrap();
    let o = netpol(&["query", "-f", "-", "--flows", flows.to_str().unwrap()], Some(&yaml));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // `-f -` twice, in every command that reads manifests.
    for args in [
        &["describe", "-f", "-", "-f", "-"][..],
        &["query", "-f", "-", "-f", "-", "--flows", flows.to_str().unwrap()],
        &["lint", "-f", "-", "-f", "-"],
        &["diff", "-f", "-", "-f", "-", "--against", &example()],
    ] {
        let o = netpol(args, Some(&yaml));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("`-f -` is given more than once: stdin can be read only once"), "{}", stderr(&o));
    }
    // `netpol test -f - -`: manifests and assertions on one stdin.
    let o = netpol(&["test", "-f", "-", "-"], Some(&yaml));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("stdin cannot carry both the manifests (`-f -`) and the assertions"), "{}", stderr(&o));
}

/// Writes a one-pod manifest.
fn pod_yaml(ns: &str, name: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}\nspec: {{containers: [{{name: c}}]}}\n")
}

#[test]
fn directory_symlinks_are_followed_once_loops_end_and_dangling_links_warn() {
    use std::os::unix::fs::symlink;
    let dir = crate::common::tempdir();
    let top = dir.path().join("top");
    std::fs::create_dir_all(top.join("sub")).unwrap();
    std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
    std::fs::write(top.join("a.yaml"), pod_yaml("x", "a")).unwrap();
    std::fs::write(top.join("sub/b.yaml"), pod_yaml("x", "b")).unwrap();
    std::fs::write(dir.path().join("elsewhere/c.yaml"), pod_yaml("y", "c")).unwrap();
    // Loops: a self-link, two links to the parent (a walk without loop detection branches 2^40 times), and a
    // link from sub back to top.
    symlink(".", top.join("self")).unwrap();
    symlink("..", top.join("sub/up1")).unwrap();
    symlink("..", top.join("sub/up2")).unwrap();
    // A directory outside the tree, linked: followed (once).
    symlink("../elsewhere", top.join("linked")).unwrap();
    symlink("../elsewhere", top.join("sub/linked-again")).unwrap();
    // A file linked under another name: read once.
    symlink("a.yaml", top.join("a-link.yaml")).unwrap();
    // Dangling links: a file and a directory.
    symlink("gone.yaml", top.join("dangling.yaml")).unwrap();
    symlink("no-such-dir", top.join("dangling-dir")).unwrap();
    let o = netpol_within(&["describe", "-f", top.to_str().unwrap(), "-o", "json"], None, 60);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pods: Vec<&str> = v["pods"].as_array().unwrap().iter().map(|p| p["pod"].as_str().unwrap()).collect();
    assert_eq!(pods, ["x/a", "x/b", "y/c"], "{err}");
    assert!(!err.contains("duplicate"), "each file is read once: {err}");
    assert!(!err.contains("invalid object"), "{err}");
    for name in ["dangling.yaml", "dangling-dir"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("warning: skipped `") && l.contains(name) && l.contains("cannot be read")),
            "a warning for {name}: {err}"
        );
    }
    assert!(err.contains("which is already read (a symlink loop"), "{err}");
    // A dangling link given directly is still an error.
    let o = netpol(&["describe", "-f", top.join("dangling.yaml").to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
    // The same directory twice on the command line, and a file inside it: every object once.
    let t = top.to_str().unwrap();
    let a = top.join("a.yaml");
    let o = netpol_within(&["describe", "-f", t, "-f", t, "-f", a.to_str().unwrap()], None, 60);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("duplicate"), "{}", stderr(&o));
}

#[test]
fn query_answers_a_line_that_is_not_utf8_and_goes_on() {
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"src\":\"frontend/web\",\"dst\":\"backend/api\",\"port\":8080}\n");
    input.extend_from_slice(b"{\"src\":\"frontend/w\xe9b\",\"dst\":\"backend/api\",\"port\":8080}\n");
    input.extend_from_slice(b"\xff\xfe\r\n");
    input.extend_from_slice(b"{\"src\":\"frontend/web\",\"dst\":\"database/postgres\",\"port\":5432}\n");
    let o = netpol_within(&["query", "-f", &example()], Some(&input), 60);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(o.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "one line out per line in: {lines:#?}");
    assert_eq!(lines[0]["verdict"], "allow");
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[1]["error"], "line 2 is not valid UTF-8 (at byte 19)");
    assert_eq!(lines[1]["input"], "{\"src\":\"frontend/w\u{fffd}b\",\"dst\":\"backend/api\",\"port\":8080}");
    assert_eq!(lines[2]["line"], 3);
    assert!(lines[2]["error"].as_str().unwrap().starts_with("line 3 is not valid UTF-8"));
    assert_eq!(lines[3]["verdict"], "deny");
}

#[test]
fn query_protocols_in_any_case_a_bom_and_messages_without_rust_types() {
    let input = concat!(
        "\u{feff}{\"src\":\"backend/api\",\"dst\":\"kube-system/coredns\",\"protocol\":\"udp\",\"port\":53}\n",
        "{\"src\":\"backend/api\",\"dst\":\"kube-system/coredns\",\"protocol\":\"Udp\",\"port\":53}\n",
        "{\"src\":\"frontend/web\",\"dst\":\"backend/api\",\"protocol\":\"tcp\",\"port\":8080}\n",
        "[1,2]\n",
        "{\"src\":5,\"dst\":\"backend/api\",\"port\":8080}\n",
        "{\"src\":\"frontend/web\",\"dst\":\"backend/api\",\"protocol\":6,\"port\":8080}\n",
        "\"frontend/web\"\n",
        "{\"src\":\"frontend/web\",\"src\":\"frontend/web\",\"dst\":\"backend/api\",\"port\":8080}\n",
    );
    let o = netpol(&["query", "-f", &example()], Some(input));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 8);
    // The BOM is not part of the first line, which is kept byte for byte.
    assert!(out.starts_with("{\"src\":\"backend/api\""), "{out}");
    for l in &lines[..3] {
        assert_eq!(l["verdict"], "allow", "{l}");
    }
    let errors: Vec<&str> = lines[3..].iter().map(|l| l["error"].as_str().unwrap()).collect();
    assert_eq!(
        errors,
        [
            "invalid flow: expected a JSON object with `src`, `dst`, `port` and optionally `protocol`, found a list",
            "invalid flow: `src` must be a string (`namespace/pod`, `pod` or an IP address), found a number",
            "invalid flow: `protocol` must be a string (TCP, UDP, SCTP, ICMP or ICMPv6), found a number",
            "invalid flow: expected a JSON object with `src`, `dst`, `port` and optionally `protocol`, found a string",
            "invalid flow: duplicate field `src` at line 1 column 27",
        ]
    );
    assert!(!out.contains("struct") && !out.contains("FlowIn"), "{out}");
    // `explain` takes the protocol in any case, as `query` does.
    let e = netpol(&["explain", "-f", &example(), "backend/api", "kube-system/coredns", "53/uDp", "-o", "json"], None);
    assert_eq!(e.status.code(), Some(0), "{}", stderr(&e));
    let v: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(v["protocol"], "UDP");
}

#[test]
#[cfg(feature = "server")]
fn serve_listen_takes_a_host_name() {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["serve", "-f", &example(), "--listen", "localhost:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    // localhost is resolved, IPv4 first (what clients try first).
    assert!(line.contains("on http://127.0.0.1:"), "{line}");
    for (arg, want) in [
        ("localhost", "`localhost` has no port"),
        ("localhost:http", "invalid port `http` in `localhost:http`"),
        (":8080", "`:8080` has no host"),
    ] {
        let o = netpol(&["serve", "-f", &example(), "--listen", arg], None);
        assert_eq!(o.status.code(), Some(2), "{arg}");
        let err = stderr(&o);
        assert!(err.contains(want) && err.contains("expected HOST:PORT, e.g. 127.0.0.1:8080, localhost:8080"), "{err}");
    }
}

/// The subcommands listed under `Commands:` in a help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_subcommand_describes_its_f_n_o_flags() {
    let mut todo: Vec<Vec<String>> =
        subcommands(&stdout(&netpol(&["-h"], None))).into_iter().map(|c| vec![c]).collect();
    // Built without some cargo features (`--no-default-features`), their commands are not listed.
    let all_features = cfg!(all(feature = "server", feature = "kube", feature = "lab"));
    assert!(todo.len() >= if all_features { 12 } else { 8 }, "{todo:?}");
    let mut checked = 0;
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("-h");
        let help = stdout(&netpol(&args, None));
        todo.extend(subcommands(&help).into_iter().map(|c| [path.clone(), vec![c]].concat()));
        for flag in ["-f, --filename <", "-n, --namespace <", "-o, --output <"] {
            let Some(line) = help.lines().find(|l| l.trim_start().starts_with(flag)) else { continue };
            // After `<VALUE>`: a description, not only `[default: ...]` / `[possible values: ...]`.
            let rest = line.split_once('>').map_or("", |(_, r)| r).trim();
            let text = rest.split(" [").next().unwrap_or("").trim();
            assert!(
                !text.is_empty() && !text.starts_with('['),
                "`netpol {}`: {flag}...> has no description: {line}",
                path.join(" ")
            );
            checked += 1;
        }
    }
    assert!(checked >= if all_features { 25 } else { 15 }, "{checked} flags checked");
}

/// Built without some of the cargo features (`cargo test -p netpol --no-default-features`): the commands and flags
/// of a missing feature are refused with exit code 2 and a message naming it; the other commands work.
#[test]
#[cfg(not(all(feature = "server", feature = "kube", feature = "lab")))]
fn commands_of_a_missing_feature_name_it() {
    let mut refused: Vec<(Vec<&str>, &str)> = Vec::new();
    if cfg!(not(feature = "server")) {
        refused.push((vec!["serve", "-f", "x"], "`netpol serve` needs the `server` feature"));
        refused.push((vec!["serve", "--help"], "`netpol serve` needs the `server` feature"));
    }
    if cfg!(not(feature = "kube")) {
        refused.push((vec!["query", "--kubeconfig", "x"], "needs the `kube` feature"));
        refused.push((vec!["lint", "--in-cluster"], "needs the `kube` feature"));
        refused.push((vec!["describe", "--context", "x"], "needs the `kube` feature"));
    }
    if cfg!(not(feature = "lab")) {
        refused.push((vec!["lab", "up", "-f", "x"], "`netpol lab` needs the `lab` feature"));
        refused.push((vec!["observe"], "`netpol observe` needs the `lab` feature"));
        refused.push((vec!["connectivity-test", "-f", "x"], "`netpol connectivity-test` needs the `lab` feature"));
        refused.push((vec!["nft", "stats"], "`netpol nft stats` needs the `lab` feature"));
    }
    for (args, message) in refused {
        let o = netpol(&args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
    }
    let o = netpol(&["lint", "-f", &example(), "--fail-on", "never"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = netpol(&["nft", "-f", &example()], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("table inet netpol"), "{}", stdout(&o));
}

#[test]
fn cni_flag_header_note_and_cni_diff() {
    let f = root().join("tests/data/cni/ipblock-and-node.yaml").display().to_string();
    // auto: generic here; the ipBlock covers api's address, so generic allows, and explain notes Cilium denies.
    let o = netpol(&["explain", "-f", &f, "shop/api", "shop/db", "5432"], None);
    assert_eq!(o.status.code(), Some(0));
    let t = stdout(&o);
    assert!(
        t.starts_with("cni: generic (auto: no Cilium, Calico or Antrea objects or agents)\nALLOW shop/api -> shop/db"),
        "{t}"
    );
    assert!(t.contains("note: depends on the CNI: generic allows, cilium denies, calico allows"), "{t}");
    let o = netpol(&["explain", "--cni", "cilium", "-f", &f, "shop/api", "shop/db", "5432"], None);
    let t = stdout(&o);
    assert!(t.starts_with("cni: cilium (--cni)\nDENY shop/api -> shop/db"), "{t}");
    assert!(t.contains("10.0.0.1 is shop/api's, which Cilium selects only by identity"), "{t}");
    // The node's traffic to its own pod: only the policies with generic; let in with calico.
    let o = netpol(&["explain", "--cni", "calico", "-f", &f, "10.1.0.1", "shop/db", "5432", "-o", "json"], None);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["verdict"], "allow", "{v}");
    assert_eq!(v["cni"], serde_json::json!({"name": "calico", "auto": null}), "{v}");
    assert_eq!(v["cni_dependence"]["verdicts"][0], serde_json::json!(["generic", false]), "{v}");
    // query --explain carries the cni member; the flag comes before or after the command.
    let o = netpol(
        &["--cni", "cilium", "query", "--explain", "-f", &f],
        Some("{\"src\":\"shop/api\",\"dst\":\"shop/db\",\"port\":5432}\n"),
    );
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!((&v["verdict"], &v["explain"]["cni"]["name"]), (&"deny".into(), &"cilium".into()), "{v}");
    let o = netpol(&["explain", "--cni", "flannel", "-f", &f, "shop/api", "shop/db", "5432"], None);
    assert_eq!(o.status.code(), Some(2));
    // cni-diff: both corners, exit 1; the example cluster has none, exit 0.
    let o = netpol(&["cni-diff", "-f", &f], None);
    assert_eq!(o.status.code(), Some(1));
    let t = stdout(&o);
    assert!(t.contains("shop/api -> shop/db (1 pair(s))\n  generic  all\n  cilium   none\n  calico   all\n"), "{t}");
    assert!(t.contains("node n1 (10.1.0.1) -> shop/db (1 pair(s))\n  generic  none\n"), "{t}");
    let o = netpol(&["cni-diff", "-f", &f, "-o", "json"], None);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["disagreements"].as_array().unwrap().len(), 2, "{v}");
    let o = netpol(&["cni-diff", "-f", &example()], None);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

/// Every output of every command that depends on the CNI says which one it followed: a Cilium example gives
/// `cilium` (auto), `--cni calico` overrides it, and a Cilium agent's DaemonSet is found in manifests without
/// Cilium policies.
#[test]
fn every_output_names_the_cni() {
    let ex = root().join("examples/cilium-l7").display().to_string();
    let asserts = format!("{ex}/assertions.yaml");
    let auto = "cni: cilium (auto: Cilium policies present)";
    let json_auto = serde_json::json!({"name": "cilium", "auto": "Cilium policies present"});
    let json_given = serde_json::json!({"name": "calico", "auto": null});
    let first = |o: &Output| stdout(o).lines().next().unwrap_or_default().to_string();
    let json = |o: &Output| -> serde_json::Value {
        serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
    };
    // Text: the first line.
    for args in [
        vec!["matrix", "-f", &ex],
        vec!["matrix", "-f", &ex, "-o", "summary"],
        vec!["lint", "-f", &ex, "--fail-on", "never"],
        vec!["describe", "-f", &ex],
        vec!["describe", "-f", &ex, "shop/api"],
        vec!["diff", "-f", &ex, "--against", &ex],
        vec!["test", "-f", &ex, &asserts],
        vec!["cni-diff", "-f", &ex],
    ] {
        let o = netpol(&args, None);
        assert_eq!(first(&o), auto, "{args:?}: {}", stderr(&o));
        let mut given = vec!["--cni", "calico"];
        given.extend(&args);
        assert_eq!(first(&netpol(&given, None)), "cni: calico (--cni)", "{given:?}");
    }
    assert_eq!(first(&netpol(&["nft", "-f", &ex], None)), format!("# {auto}"));
    // JSON: a `cni` member.
    for args in [
        vec!["matrix", "-f", &ex, "-o", "json"],
        vec!["lint", "-f", &ex, "-o", "json", "--fail-on", "never"],
        vec!["describe", "-f", &ex, "-o", "json"],
        vec!["diff", "-f", &ex, "--against", &ex, "-o", "json"],
        vec!["test", "-f", &ex, &asserts, "-o", "json"],
        vec!["cni-diff", "-f", &ex, "-o", "json"],
    ] {
        assert_eq!(json(&netpol(&args, None))["cni"], json_auto, "{args:?}");
        let mut given = vec!["--cni", "calico"];
        given.extend(&args);
        assert_eq!(json(&netpol(&given, None))["cni"], json_given, "{given:?}");
    }
    // Markdown: under the title; JUnit: properties of the test suite.
    let md = stdout(&netpol(&["diff", "-f", &ex, "--against", &ex, "-o", "markdown"], None));
    assert!(md.starts_with(&format!("### NetworkPolicy connectivity diff\n\n_{auto}_\n\n")), "{md}");
    let junit = stdout(&netpol(&["test", "-f", &ex, &asserts, "-o", "junit"], None));
    assert!(
        junit.contains(
            "  <properties>\n    <property name=\"cni\" value=\"cilium\"/>\n    \
             <property name=\"cni.auto\" value=\"Cilium policies present\"/>\n  </properties>\n"
        ),
        "{junit}"
    );
    let junit = stdout(&netpol(&["--cni", "calico", "test", "-f", &ex, &asserts, "-o", "junit"], None));
    assert!(junit.contains("<property name=\"cni\" value=\"calico\"/>\n  </properties>"), "{junit}");
    assert!(!junit.contains("cni.auto"), "{junit}");

    // A diff whose sides auto-detect different CNIs names both.
    let three = example();
    let o = netpol(&["diff", "-f", &three, "--against", &ex], None);
    let t = stdout(&o);
    assert!(
        t.starts_with(&format!(
            "{auto}\ncni: generic (auto: no Cilium, Calico or Antrea objects or agents) on the old side\n"
        )),
        "{t}"
    );
    let v = json(&netpol(&["diff", "-f", &three, "--against", &ex, "-o", "json"], None));
    assert_eq!((&v["cni"]["name"], &v["cni_old"]["name"]), (&"cilium".into(), &"generic".into()), "{v}");

    // The agent's DaemonSet, in manifests without any Cilium policy.
    let dir = crate::common::tempdir();
    let agent = dir.path().join("agent.yaml");
    std::fs::write(
        &agent,
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: cilium, namespace: kube-system}\nspec:\n  \
         selector: {matchLabels: {k8s-app: cilium}}\n  template:\n    metadata: {labels: {k8s-app: cilium}}\n    \
         spec: {hostNetwork: true, containers: [{name: cilium-agent, image: cilium}]}\n",
    )
    .unwrap();
    let a = agent.display().to_string();
    let o = netpol(&["matrix", "-f", &three, "-f", &a], None);
    assert_eq!(first(&o), "cni: cilium (auto: DaemonSet kube-system/cilium (k8s-app=cilium))", "{}", stderr(&o));
}
