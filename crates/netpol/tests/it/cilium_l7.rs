//! Cilium's L7 rules through the CLI, on `examples/cilium-l7`: `query` with `http`/`dns` flow members, `explain
//! --http`/`--dns`, `test` assertions that carry a request, `matrix` marking the cells whose requests L7 rules
//! filter, `describe` listing a pod's L7 rules, and `diff` naming a change of an HTTP allow-list.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn example() -> String {
    format!("{}/../../examples/cilium-l7", env!("CARGO_MANIFEST_DIR"))
}

fn netpol(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `explain`'s text without its `cni:` header line.
fn verdict_text(b: &[u8]) -> String {
    let t = text(b);
    match t.strip_prefix("cni: ") {
        Some(rest) => rest.split_once('\n').map_or(String::new(), |(_, r)| r.to_string()),
        None => t,
    }
}

#[test]
fn query_judges_the_request_a_flow_carries() {
    let ex = example();
    let lines = [
        (r#"{"src":"shop/web","dst":"shop/api","port":8080,"http":{"method":"GET","path":"/items/42"}}"#, "allow"),
        (r#"{"src":"shop/web","dst":"shop/api","port":8080,"http":{"method":"GET","path":"/items/42/x"}}"#, "deny"),
        (r#"{"src":"shop/web","dst":"shop/api","port":8080,"http":{"method":"DELETE","path":"/items"}}"#, "deny"),
        // Without a request: the connection, which Cilium accepts and hands to its proxy.
        (r#"{"src":"shop/web","dst":"shop/api","port":8080}"#, "allow"),
        (
            r#"{"src":"shop/admin","dst":"shop/api","port":8080,"http":{"method":"POST","path":"/items","headers":{"X-Admin-Token":"t"}}}"#,
            "allow",
        ),
        (r#"{"src":"shop/admin","dst":"shop/api","port":8080,"http":{"method":"POST","path":"/items"}}"#, "deny"),
        // The deny wins over every allow.
        (r#"{"src":"shop/client","dst":"shop/api","port":8080,"http":{"path":"/items"}}"#, "deny"),
        // DNS through the proxy, and toFQDNs for the names it lets through.
        (
            r#"{"src":"shop/client","dst":"kube-system/coredns","protocol":"UDP","port":53,"dns":{"query":"api.example.com"}}"#,
            "allow",
        ),
        (
            r#"{"src":"shop/client","dst":"kube-system/coredns","protocol":"UDP","port":53,"dns":{"query":"api.other.org"}}"#,
            "deny",
        ),
        (r#"{"src":"shop/client","dst":"192.0.2.7","port":443,"dst_fqdn":"api.example.com"}"#, "allow"),
        (r#"{"src":"shop/client","dst":"192.0.2.7","port":443,"dst_fqdn":"api.other.org"}"#, "deny"),
        (r#"{"src":"shop/client","dst":"192.0.2.7","port":443}"#, "deny"),
    ];
    let input: String = lines.iter().map(|(l, _)| format!("{l}\n")).collect();
    let o = netpol(&["query", "-f", &ex], &input);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for (line, (flow, want)) in out.lines().zip(lines) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["verdict"], want, "{flow}");
    }
    // A bad request is an error on its line, the rest answered.
    let bad = concat!(
        r#"{"src":"shop/web","dst":"shop/api","port":8080,"http":{"method":"GET","path":"no-slash"}}"#,
        "\n",
        r#"{"src":"shop/web","dst":"shop/api","protocol":"UDP","port":8080,"http":{}}"#,
        "\n",
        r#"{"src":"shop/web","dst":"shop/api","port":8080,"http":{"verb":"GET"}}"#,
        "\n",
        r#"{"src":"shop/web","dst":"shop/api","port":8080,"http":{},"dns":{"query":"a.b"}}"#,
        "\n",
        r#"{"src":"shop/web","dst":"shop/api","port":8080}"#,
        "\n"
    );
    let o = netpol(&["query", "-f", &ex], bad);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out: Vec<Value> = text(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(out[0]["error"].as_str().unwrap().contains("invalid HTTP path"), "{:?}", out[0]);
    assert!(out[1]["error"].as_str().unwrap().contains("needs protocol TCP"), "{:?}", out[1]);
    assert!(out[2]["error"].as_str().unwrap().contains("verb"), "{:?}", out[2]);
    assert!(out[3]["error"].as_str().unwrap().contains("not both"), "{:?}", out[3]);
    assert_eq!(out[4]["verdict"], "allow");
}

#[test]
fn explain_names_the_l7_rule_that_allows_or_refuses_a_request() {
    let ex = example();
    let o = netpol(&["explain", "-f", &ex, "shop/web", "shop/api", "8080", "--http", "GET /items/1"], "");
    let out = verdict_text(&o.stdout);
    assert!(text(&o.stdout).starts_with("cni: cilium (auto"), "{}", text(&o.stdout));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(out.starts_with("ALLOW shop/web -> shop/api 8080/TCP, HTTP GET /items/1"), "{out}");
    assert!(out.contains("spec.ingress[0].toPorts[0]") && out.contains("allowed by its L7 rule 0"), "{out}");
    let o = netpol(&["explain", "-f", &ex, "shop/web", "shop/api", "8080", "--http", "POST /items"], "");
    let out = verdict_text(&o.stdout);
    assert!(out.starts_with("DENY"), "{out}");
    assert!(out.contains("its L7 rules refuse HTTP POST /items"), "{out}");
    // Without a request: the connection, and the rules its requests will meet.
    let o = netpol(&["explain", "-f", &ex, "shop/web", "shop/api", "8080", "-o", "json"], "");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "allow");
    let l7 = v["ingress"]["allowed_by"][0]["l7"].as_str().unwrap();
    assert!(l7.contains("requests on it are then filtered by HTTP method `GET`"), "{l7}");
    // A header, and a DNS query.
    let args = ["explain", "-f", &ex, "shop/admin", "shop/api", "8080", "--http", "PUT /items/3"];
    let with = [&args[..], &["--http-header", "X-Admin-Token: x"]].concat();
    assert!(verdict_text(&netpol(&with, "").stdout).starts_with("ALLOW"));
    assert!(verdict_text(&netpol(&args, "").stdout).starts_with("DENY"));
    let dns = ["explain", "-f", &ex, "shop/client", "kube-system/coredns", "53/UDP", "--dns", "www.example.com"];
    assert!(verdict_text(&netpol(&dns, "").stdout).starts_with("ALLOW"));
    let o = netpol(&["explain", "-f", &ex, "shop/web", "shop/api", "53/UDP", "--http", "GET /"], "");
    assert_eq!(o.status.code(), Some(2), "an HTTP request on UDP is a usage error: {}", text(&o.stderr));
}

#[test]
fn test_assertions_carry_requests() {
    let ex = example();
    let o = netpol(&["test", "-f", &ex, &format!("{ex}/assertions.yaml")], "");
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(text(&o.stdout).contains("4 passed, 0 failed"), "{}", text(&o.stdout));
    let o = netpol(&["test", "-f", &ex, &format!("{ex}/assertions.yaml"), "-o", "json"], "");
    let out = text(&o.stdout);
    assert!(out.contains("HTTP GET /items/42"), "{out}");
    // A failing expectation names the request and the refusing rule.
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(
        &a,
        "assertions:\n- name: web writes\n  from: shop/web\n  to: shop/api\n  port: 8080\n  http: {method: POST, path: /items}\n  expect: allow\n",
    )
    .unwrap();
    let o = netpol(&["test", "-f", &ex, a.to_str().unwrap(), "-o", "json"], "");
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(out.contains("HTTP POST /items") && out.contains("its L7 rules refuse"), "{out}");
    // A bad request is a file error (exit 2) naming the field.
    std::fs::write(
        &a,
        "assertions:\n- name: bad\n  from: shop/web\n  to: shop/api\n  port: 8080\n  http: {verb: GET}\n  expect: allow\n",
    )
    .unwrap();
    let o = netpol(&["test", "-f", &ex, a.to_str().unwrap()], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("assertions[0].http"), "{}", text(&o.stderr));
}

#[test]
fn matrix_marks_cells_whose_requests_l7_rules_filter() {
    let ex = example();
    let o = netpol(&["matrix", "-f", &ex, "-o", "json"], "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let l7 = v["l7_filtered"].as_array().unwrap();
    let pairs: Vec<(String, String, String)> = l7
        .iter()
        .map(|x| {
            (x["src"].as_str().unwrap().into(), x["dst"].as_str().unwrap().into(), x["ports"].as_str().unwrap().into())
        })
        .collect();
    assert!(pairs.contains(&("shop/web".into(), "shop/api".into(), "TCP 8080".into())), "{pairs:?}");
    assert!(pairs.contains(&("shop/admin".into(), "shop/api".into(), "TCP 8080".into())), "{pairs:?}");
    assert!(!pairs.iter().any(|p| p.0 == "shop/client" && p.1 == "shop/api"), "denied: nothing to filter {pairs:?}");
    let o = netpol(&["matrix", "-f", &ex], "");
    let out = text(&o.stdout);
    assert!(out.contains("L7 (Cilium's proxies filter the requests"), "{out}");
    let o = netpol(&["matrix", "-f", &ex, "-o", "summary"], "");
    assert!(text(&o.stdout).contains("Cilium's HTTP/DNS rules further filter"), "{}", text(&o.stdout));
}

#[test]
fn describe_and_diff_show_l7_rules() {
    let ex = example();
    let o = netpol(&["describe", "-f", &ex, "shop/api"], "");
    let out = text(&o.stdout);
    assert!(out.contains("L7 (Cilium's proxies filter"), "{out}");
    assert!(out.contains("spec.ingress[0].toPorts[0] (ports 8080/TCP): HTTP method `GET`"), "{out}");
    // Widening web's HTTP allow-list changes no L3/L4 cell, and the diff says what changed.
    let dir = tempfile::tempdir().unwrap();
    let cluster = std::fs::read_to_string(format!("{ex}/cluster.yaml")).unwrap();
    let wider = cluster
        .replace("- {method: GET, path: \"/items(/[0-9]+)?\"}", "- {method: \"GET|DELETE\", path: \"/items.*\"}");
    assert_ne!(cluster, wider);
    let (a, b) = (dir.path().join("old.yaml"), dir.path().join("new.yaml"));
    std::fs::write(&a, &cluster).unwrap();
    std::fs::write(&b, &wider).unwrap();
    let o = netpol(&["diff", "-f", a.to_str().unwrap(), "--against", b.to_str().unwrap()], "");
    let out = text(&o.stdout);
    assert!(out.contains("L7 rules changed (1"), "{out}{}", text(&o.stderr));
    assert!(out.contains("ciliumnetworkpolicy/shop/api-http spec.ingress[0].toPorts[0] changed"), "{out}");
    assert!(out.contains("method `GET|DELETE`"), "{out}");
}
