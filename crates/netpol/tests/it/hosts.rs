//! Calico host endpoints through the CLI: explain names the failsafe port, each stage and the assumptions; JSON
//! carries `hosts`; the matrix warns about what it leaves out; query answers host flows as explain does.

use std::process::{Command, Output, Stdio};

fn data() -> String {
    format!("{}/../../tests/data/calico/hosts.yaml", env!("CARGO_MANIFEST_DIR"))
}

fn netpol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netpol")).args(args).env("NO_COLOR", "1").stdin(Stdio::null()).output().unwrap()
}

fn explain(args: &[&str]) -> String {
    let f = data();
    let mut all = vec!["explain", "-f", &f];
    all.extend_from_slice(args);
    let o = netpol(&all);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let t = String::from_utf8(o.stdout).unwrap();
    if args.contains(&"json") {
        return t;
    }
    // The CNI header first (Calico's host endpoints: auto picks calico), then the explanation.
    let rest = t.strip_prefix("cni: calico (auto: Calico objects present)\n");
    assert!(rest.is_some(), "{t}");
    rest.unwrap_or_default().to_string()
}

#[test]
fn explain_names_the_failsafe_port_and_each_stage() {
    let t = explain(&["10.66.1.1", "10.0.0.1", "22"]);
    assert!(t.starts_with("ALLOW 10.66.1.1 -> shop/node-exporter 22/TCP"), "{t}");
    assert!(t.contains("22/TCP is one of Felix's default failsafe inbound ports"), "{t}");
    let t = explain(&["10.66.1.1", "10.0.0.1", "9100"]);
    assert!(t.starts_with("DENY"), "{t}");
    assert!(t.contains("host endpoint node1-eth0 (node node1), traffic to the host: DENIED"), "{t}");
    assert!(t.contains("(pre-DNAT policies): DENIED"), "{t}");
    assert!(t.contains("gnp/edge-block"), "{t}");
    let t = explain(&["10.9.1.1", "10.0.0.1", "9100"]);
    assert!(t.starts_with("ALLOW"), "{t}");
    assert!(t.contains("(normal policies): allowed"), "{t}");
    assert!(t.contains("gnp/node-ingress (order 100) ingress rule 0: Allow"), "{t}");
    // Not allowed by the normal policy and no profile: dropped.
    let t = explain(&["10.9.1.1", "10.0.0.1", "8080"]);
    assert!(t.starts_with("DENY"), "{t}");
    // Forwarded to a pod: the pre-DNAT Deny applies, and the assumptions are said.
    let t = explain(&["10.66.3.3", "shop/web", "8080"]);
    assert!(t.starts_with("DENY"), "{t}");
    assert!(t.contains("traffic forwarded in through the host: DENIED"), "{t}");
    assert!(t.contains("netpol does not know routes"), "{t}");
}

#[test]
fn explain_json_has_the_host_checks() {
    let j: serde_json::Value = serde_json::from_str(&explain(&["10.9.1.1", "10.0.0.1", "8080", "-o", "json"])).unwrap();
    assert_eq!(j["verdict"], "deny");
    let h = &j["hosts"][0];
    assert_eq!(h["host_endpoint"], "node1-eth0");
    assert_eq!(h["path"], "to-host");
    assert_eq!(h["allowed"], false);
    let stages = h["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 3, "{stages:?}");
    assert_eq!(stages[2]["decided_by"], "tier_default");
    let j: serde_json::Value = serde_json::from_str(&explain(&["10.9.1.1", "10.0.0.1", "22", "-o", "json"])).unwrap();
    assert!(j["hosts"][0]["failsafe"].as_str().unwrap().contains("FailsafeInboundHostPorts"));
    // Without host endpoints on the flow's path, no `hosts`.
    let j: serde_json::Value =
        serde_json::from_str(&explain(&["shop/web", "shop/node-exporter", "80", "-o", "json"])).unwrap();
    assert!(j.get("hosts").is_none(), "{j}");
}

#[test]
fn query_agrees_and_the_matrix_says_what_it_leaves_out() {
    let f = data();
    let dir = crate::common::tempdir();
    let flows = dir.path().join("flows.jsonl");
    std::fs::write(
        &flows,
        "{\"src\":\"10.66.1.1\",\"dst\":\"10.0.0.1\",\"port\":9100}\n{\"src\":\"10.66.1.1\",\"dst\":\"10.0.0.1\",\"port\":22}\n{\"src\":\"10.9.1.1\",\"dst\":\"10.0.0.1\",\"port\":9100}\n",
    )
    .unwrap();
    let o = netpol(&["query", "-f", &f, "--flows", flows.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    let verdicts: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["verdict"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(verdicts, ["deny", "allow", "allow"], "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    let o = netpol(&["matrix", "-f", &f]);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the matrix does not apply host endpoint policies") && err.contains("shop/node-exporter"),
        "{err}"
    );
}

#[test]
fn diff_names_the_host_endpoint_changes() {
    let old = std::fs::read_to_string(data()).unwrap();
    // The new side: node-ingress allows one more port, the pre-DNAT policy is gone, the endpoint gets a profile.
    let mut new = old
        .replace("destination: {ports: [9100]}", "destination: {ports: [9100, 9101]}")
        .replace("expectedIPs: [10.0.0.1]}", "expectedIPs: [10.0.0.1], profiles: [projectcalico-default-allow]}");
    let a =
        new.find("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: edge-block}").unwrap();
    let b = a + new[a..].find("---\n").unwrap() + 4;
    new.replace_range(a..b, "");
    let dir = crate::common::tempdir();
    let (o, n) = (dir.path().join("old.yaml"), dir.path().join("new.yaml"));
    std::fs::write(&o, &old).unwrap();
    std::fs::write(&n, &new).unwrap();
    let out = netpol(&["diff", "-f", o.to_str().unwrap(), "--against", n.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "node1-eth0 changed: profiles changed; pre-DNAT ingress: -gnp/edge-block; normal ingress: ~gnp/node-ingress"
        ),
        "{text}"
    );
    let out = netpol(&["diff", "-f", o.to_str().unwrap(), "--against", n.to_str().unwrap(), "-o", "json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["host_endpoints"][0]["host_endpoint"], "node1-eth0");
    assert_eq!(j["host_endpoints"][0]["what"], "changed");
    // Nothing changed: no host endpoint entry.
    let out = netpol(&["diff", "-f", o.to_str().unwrap(), "--against", o.to_str().unwrap(), "-o", "json"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(j.get("host_endpoints").is_none(), "{j}");
}

#[test]
fn describe_lists_host_endpoints_and_the_pods_at_them() {
    let f = data();
    let o = netpol(&["describe", "-f", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let t = String::from_utf8(o.stdout).unwrap();
    // The hostNetwork pod at node1-eth0's address: that host endpoint's policies are what its traffic meets.
    let exporter = t.lines().find(|l| l.starts_with("shop/node-exporter")).unwrap_or_else(|| panic!("{t}"));
    assert!(exporter.contains("not subject (hostNetwork): host endpoint node1-eth0"), "{t}");
    // Every host endpoint: node (interface), addresses, and the policies of each stage.
    let head = t.lines().position(|l| l.starts_with("HOST ENDPOINT")).unwrap_or_else(|| panic!("{t}"));
    let row = t.lines().nth(head + 1).unwrap();
    assert!(row.starts_with("node1-eth0") && row.contains("node1 (eth0)") && row.contains("10.0.0.1"), "{row}");
    assert!(row.ends_with("pre-DNAT ingress: gnp/edge-block; normal ingress: gnp/node-ingress"), "{row}");
    // JSON: the pod names its host endpoint (the list of pods is unchanged otherwise).
    let o = netpol(&["describe", "-f", &f, "-o", "json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pods = j["pods"].as_array().unwrap();
    let exporter = pods.iter().find(|p| p["pod"] == "shop/node-exporter").unwrap();
    assert_eq!(exporter["hostEndpoint"], "node1-eth0");
    assert!(pods.iter().find(|p| p["pod"] == "shop/web").unwrap().get("hostEndpoint").is_none());
    // A namespace's pods only: no host endpoint table (host endpoints belong to no namespace).
    let o = netpol(&["describe", "-f", &f, "-n", "shop"]);
    assert_eq!(o.status.code(), Some(0));
    let t = String::from_utf8(o.stdout).unwrap();
    assert!(t.contains("shop/web") && !t.contains("HOST ENDPOINT"), "{t}");
}
