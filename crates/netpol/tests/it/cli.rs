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

fn netpol(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
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
    assert!(lines[3]["error"].as_str().unwrap().contains("unsupported protocol `ICMP`"));
    assert_eq!(lines[4]["verdict"], "allow");
    assert!(lines[..4].iter().all(|l| l.get("verdict").is_none()));
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
    let dir = tempfile::tempdir().unwrap();
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
    assert!(stdout(&o).starts_with("ALLOW frontend/web-7c9f8d6b5-k2x9p -> backend/api 8080/TCP"), "{}", stdout(&o));
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
    let pod = |name: &str| v.as_array().unwrap().iter().find(|p| p["pod"] == name).unwrap().clone();
    let web = pod("frontend/web");
    assert_eq!(web["outside"]["egress"], serde_json::json!([]));
    assert_eq!(
        web["outside"]["ingress"],
        serde_json::json!([{"ports": "TCP 8080", "addresses": ["0.0.0.0/0", "::/0"]}])
    );
    let dns = pod("kube-system/coredns");
    assert_eq!(dns["outside"]["egress"], serde_json::json!([{"ports": "all", "addresses": ["0.0.0.0/0", "::/0"]}]));
}

#[test]
fn invalid_objects_are_reported_and_skipped_or_fatal_with_strict() {
    let dir = tempfile::tempdir().unwrap();
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
