//! Cilium's L3/L4 answer in the kernel: clusters with CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy
//! through `netpol connectivity-test`, with real connections between the lab's network namespaces. Every flow
//! must be observed as the engine decides (`Engine::allowed`), and the engine must decide what Cilium does (the
//! expectation written beside each flow, or the conformance case's `expect`).
//!
//! - `cilium_scenario_in_the_kernel`: pods on two nodes, a CNP allowing a port and a port range (`endPort`), an
//!   `ingressDeny` beating both a CNP allow and a NetworkPolicy v1 allow, egress `toCIDRSet` with an `except` to
//!   an address outside the cluster (emulated by the lab), a CCNP with `enableDefaultDeny: false`, a CCNP deny,
//!   `icmps`, and Cilium's allow-localhost (a hostNetwork pod reaches a pod of its own node whatever the policies
//!   say; the other node's does not).
//! - `cilium_conformance_in_the_kernel`: the L3/L4 cases of `tests/conformance/cilium/` (those the engine answers
//!   whole, `cilium_conformance::L3L4_CASES`), replayed in reused labs as `calico_dataplane.rs` does.
//! - `allow_localhost_follows_incremental_updates`: the own-node rule through `lab apply` (a pod moving to another
//!   node, a cluster losing its Cilium policy).
//! - `l7_ports_are_allowed_at_l4_and_said_so`: a port with HTTP rules is open at L4 in the kernel, and the lab's
//!   commands say, naming the policy, that the requests are not judged (the data plane has no L7 proxy).
//!
//! ICMP flows are probed as echo requests; other ICMP messages are not probed by the lab (it says so:
//! `untestable`), and their verdicts are still checked against Cilium's. Root, `nft` and `ip` are needed.

use std::process::{Command, Output};

use crate::cilium_conformance::{cases, Case, L3L4_CASES};
use crate::dataplane::{prefix, run_case_in_lab, run_cases_in_labs, skip_reason, LabCase, LabGuard};

const TIMEOUT_MS: &str = "700";
const NO_SCTP: &str = "no raw SCTP socket";
const NO_ICMP: &str = "only echo requests are probed by the lab";

/// Runs `connectivity-test` on `manifests` and `flows` (JSON Lines) in lab `prefix`, kept for the next run.
fn run(prefix: &str, manifests: &str, flows: &str, dir: &std::path::Path) -> Output {
    let case = LabCase { manifests: manifests.to_string(), flows: flows.to_string() };
    run_case_in_lab(prefix, TIMEOUT_MS, &case, dir)
}

/// A flow line of the query contract, with its protocol and port (ICMP: the type, code 0).
fn flow_line(from: &str, to: &str, protocol: &str, port: u16) -> String {
    let v = if protocol.to_ascii_lowercase().starts_with("icmp") {
        serde_json::json!({"src": from, "dst": to, "protocol": protocol, "icmp": {"type": port, "code": 0}})
    } else {
        serde_json::json!({"src": from, "dst": to, "protocol": protocol, "port": port})
    };
    v.to_string() + "\n"
}

/// Tallies of a run.
#[derive(Default, Debug)]
struct Tally {
    probes: usize,
    agree: usize,
    untestable_icmp: usize,
    untestable_sctp: usize,
    problems: Vec<String>,
}

/// Checks one run's answers against the expectations: the engine says what Cilium does, and the kernel what
/// the engine says (ICMP, and SCTP without raw sockets, are the only untestable flows allowed).
fn check(t: &mut Tally, what: &str, o: &Output, probes: &[(String, &str, &str)]) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{what}: connectivity-test failed:\n{stderr}");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), probes.len(), "{what}: one answer per flow\n{stderr}");
    for (l, (desc, protocol, expect)) in lines.iter().zip(probes) {
        t.probes += 1;
        let what = format!("{what}: {desc}");
        if let Some(err) = l.get("error") {
            t.problems.push(format!("{what}: not taken as a flow: {err}"));
            continue;
        }
        if l["verdict"] != *expect {
            t.problems.push(format!("{what}: Cilium says {expect}, the engine {}", l["verdict"]));
        }
        let detail = l["detail"].as_str().unwrap_or("");
        match l["observed"].as_str().unwrap() {
            "untestable" if protocol.to_ascii_lowercase().starts_with("icmp") && detail.contains(NO_ICMP) => {
                t.untestable_icmp += 1
            }
            "untestable" if *protocol == "SCTP" && detail.contains(NO_SCTP) => t.untestable_sctp += 1,
            "untestable" => t.problems.push(format!("{what}: untestable: {detail}")),
            o if l["verdict"] == o => t.agree += 1,
            o => t.problems.push(format!("{what}: the engine says {}, the kernel {o} ({detail})", l["verdict"])),
        }
    }
}

const SCENARIO: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.31.0.1}, {type: InternalIP, address: "fd00:31::1"}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 10.31.0.2}, {type: InternalIP, address: "fd00:31::2"}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops, labels: {team: ops}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 8080}]}]}
status: {podIP: 10.32.0.10, podIPs: [{ip: 10.32.0.10}, {ip: "fd00:32::10"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {nodeName: n2, containers: [{name: c}]}
status: {podIP: 10.32.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: bad, namespace: shop, labels: {app: client, role: bad}}
spec: {nodeName: n2, containers: [{name: c}]}
status: {podIP: 10.32.0.12}
---
apiVersion: v1
kind: Pod
metadata: {name: tools, namespace: ops, labels: {app: tools}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.32.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: agent-1, namespace: ops, labels: {app: agent}}
spec: {nodeName: n1, hostNetwork: true, containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent-2, namespace: ops, labels: {app: agent}}
spec: {nodeName: n2, hostNetwork: true, containers: [{name: c}]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-in, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "9000", endPort: 9002, protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {role: bad}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np-8080, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: 8080}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client-out, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "80"}, {port: "8080"}, {port: "9000", endPort: 9010}]}]
  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: ops}}]
  - toCIDRSet: [{cidr: 10.99.0.0/16, except: [10.99.1.0/24]}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: ops}}]
    icmps: [{fields: [{type: EchoRequest}]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: ops-open}
spec:
  endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: ops}}
  enableDefaultDeny: {ingress: false}
  ingress:
  - fromEntities: [cluster]
    toPorts: [{ports: [{port: "7000", protocol: TCP}]}]
  - fromEntities: [cluster]
    icmps: [{fields: [{type: 8}]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: ops-guard}
spec:
  endpointSelector: {matchLabels: {k8s:io.kubernetes.pod.namespace: ops}}
  enableDefaultDeny: {ingress: false}
  ingressDeny:
  - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: shop}}]
    toPorts: [{ports: [{port: "7001", protocol: TCP}]}]
"#;

/// (from, to, protocol, port, Cilium's verdict, why).
const SCENARIO_FLOWS: &[(&str, &str, &str, u16, &str, &str)] = &[
    ("shop/client", "shop/web", "TCP", 80, "allow", "CNP ingress allow on 80, across nodes"),
    ("shop/client", "shop/web", "UDP", 80, "deny", "the allow is TCP only"),
    ("shop/client", "shop/web", "TCP", 8080, "allow", "NetworkPolicy v1 allow, unioned with the CNP's"),
    ("shop/bad", "shop/web", "TCP", 80, "deny", "ingressDeny beats the CNP allow"),
    ("shop/bad", "shop/web", "TCP", 8080, "deny", "ingressDeny beats the NetworkPolicy v1 allow"),
    ("shop/client", "shop/web", "TCP", 9000, "allow", "endPort range, first port"),
    ("shop/client", "shop/web", "TCP", 9002, "allow", "endPort range, last port"),
    ("shop/client", "shop/web", "TCP", 9003, "deny", "after the range (egress allows it, ingress does not)"),
    ("shop/client", "10.99.0.5", "TCP", 443, "allow", "toCIDRSet"),
    ("shop/client", "10.99.1.5", "TCP", 443, "deny", "toCIDRSet except"),
    ("shop/client", "10.99.0.5", "TCP", 80, "deny", "toCIDRSet port"),
    ("shop/client", "ops/tools", "TCP", 7000, "allow", "CCNP allow (and client's egress to ops)"),
    ("shop/client", "ops/tools", "TCP", 7001, "deny", "CCNP ingressDeny"),
    ("shop/client", "ops/tools", "TCP", 7002, "allow", "enableDefaultDeny ingress false: not isolated"),
    ("shop/web", "ops/tools", "TCP", 7001, "deny", "CCNP ingressDeny from the whole namespace"),
    ("shop/web", "ops/tools", "TCP", 7002, "allow", "web's egress is not isolated"),
    ("shop/client", "ops/tools", "ICMP", 8, "allow", "icmps EchoRequest, both sides"),
    ("shop/client", "shop/web", "ICMP", 8, "deny", "client's egress allows no ICMP to web"),
    ("ops/agent-1", "shop/web", "TCP", 9500, "allow", "allow-localhost: web's own node"),
    ("ops/agent-1", "shop/web", "TCP", 80, "allow", "allow-localhost"),
    ("ops/agent-2", "shop/web", "TCP", 9500, "deny", "another node: the policies decide"),
    ("ops/agent-2", "shop/client", "TCP", 9500, "allow", "client's own node; client's ingress is not isolated"),
    ("ops/agent-2", "shop/bad", "TCP", 9500, "allow", "bad's own node"),
    ("ops/agent-1", "ops/tools", "TCP", 7001, "allow", "not from shop"),
    ("shop/client", "10.31.0.2", "TCP", 22, "deny", "client's egress to its node: no rule allows it"),
    ("fd00:31::1", "fd00:32::10", "TCP", 9500, "allow", "allow-localhost over IPv6"),
    ("fd00:31::2", "fd00:32::10", "TCP", 9500, "deny", "another node, over IPv6"),
    ("fd00:31::1", "fd00:32::10", "ICMPv6", 128, "allow", "allow-localhost: an ICMPv6 echo request"),
    ("fd00:31::2", "fd00:32::10", "ICMPv6", 128, "deny", "another node: an ICMPv6 echo request"),
    ("shop/web", "10.31.0.1", "TCP", 22, "allow", "web's egress is not isolated"),
];

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn cilium_scenario_in_the_kernel() {
    if let Some(why) = skip_reason() {
        panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
    }
    let p = prefix("cilsc");
    let guard = LabGuard(p.clone());
    let tmp = tempfile::tempdir().unwrap();
    let flows: String = SCENARIO_FLOWS.iter().map(|f| flow_line(f.0, f.1, f.2, f.3)).collect();
    let o = run(&p, SCENARIO, &flows, tmp.path());
    drop(guard);
    let probes: Vec<(String, &str, &str)> =
        SCENARIO_FLOWS.iter().map(|f| (format!("{} -> {} {}/{} ({})", f.0, f.1, f.3, f.2, f.5), f.2, f.4)).collect();
    let mut t = Tally::default();
    check(&mut t, "scenario", &o, &probes);
    eprintln!("Cilium scenario in the kernel: {t:?}");
    assert!(t.problems.is_empty(), "{} problems:\n{}", t.problems.len(), t.problems.join("\n"));
    assert_eq!(t.agree + t.untestable_icmp, SCENARIO_FLOWS.len());
    assert_eq!(t.untestable_icmp, 0, "ICMP echo requests are probed");
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&left.stdout).lines().any(|l| l.starts_with(&format!("{p}-"))));
}

/// Labs run in parallel (the machine has 2 cores).
const LABS: usize = 2;

pub(crate) fn case_flows(case: &Case) -> (String, Vec<(String, &str, &str)>) {
    // A connection is what the kernel sees: a probe's HTTP request or DNS query is a proxy's to judge, and the
    // name an address was resolved from is the DNS proxy's to learn; neither is in the data plane.
    let l3l4 = || case.probes.iter().filter(|p| p.http.is_none() && p.dns.is_none() && p.dst_fqdn.is_none());
    let flows = l3l4().map(|p| flow_line(&p.from, &p.to, &p.protocol, p.port)).collect();
    let probes = l3l4().map(|p| (p.describe(), p.protocol.as_str(), p.expect.as_str())).collect();
    (flows, probes)
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn cilium_conformance_in_the_kernel() {
    if let Some(why) = skip_reason() {
        panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
    }
    let cases: Vec<(String, Case)> = cases()
        .into_iter()
        .filter(|(f, _)| L3L4_CASES.contains(&f.as_str()))
        .filter(|(_, c)| !case_flows(c).1.is_empty())
        .collect();
    assert!(cases.len() >= 27, "{} cases with connections to probe", cases.len());
    let lab_cases: Vec<LabCase> = cases
        .iter()
        .map(|(_, case)| LabCase { manifests: case.manifests.clone(), flows: case_flows(case).0 })
        .collect();
    let runs = run_cases_in_labs("cil", LABS, TIMEOUT_MS, &lab_cases);
    let mut t = Tally::default();
    for ((file, case), o) in cases.iter().zip(&runs) {
        let (_, probes) = case_flows(case);
        check(&mut t, &format!("{file} ({})", case.name), o, &probes);
    }
    eprintln!("Cilium data-plane conformance: {} cases: {t:?}", runs.len());
    assert!(t.problems.is_empty(), "{} problems:\n{}", t.problems.len(), t.problems.join("\n"));
    assert_eq!(t.agree + t.untestable_icmp + t.untestable_sctp, t.probes);
}

const L7: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
status: {podIP: 10.33.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, labels: {app: client}}
status: {podIP: 10.33.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: a, labels: {app: other}}
status: {podIP: 10.33.0.3}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: http-only, namespace: a}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET, path: "/public"}]}}]
"#;

/// A port with L7 rules (`rules.http`) is allowed at L4 in the kernel (the connection; Cilium would hand it to its
/// proxy, which netpol's data plane does not have), and `lab up`, `lab apply` and `connectivity-test` say, naming
/// the policy and the field, that the requests themselves are not judged.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn l7_ports_are_allowed_at_l4_and_said_so() {
    if let Some(why) = skip_reason() {
        panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
    }
    let p = prefix("cill7");
    let guard = LabGuard(p.clone());
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("cluster.yaml");
    std::fs::write(&m, L7).unwrap();
    let says_so = |what: &str, o: &Output| {
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.lines().any(|l| l.contains("CiliumNetworkPolicy a/http-only")
                && l.contains("spec.ingress[0].toPorts[0]")
                && l.contains("requests themselves are not filtered")),
            "{what} does not say that the HTTP requests are not judged:\n{stderr}"
        );
    };
    for action in ["up", "apply"] {
        let o = Command::new(env!("CARGO_BIN_EXE_netpol"))
            .args(["lab", action, "--prefix", &p, "-f"])
            .arg(&m)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "lab {action}: {}", String::from_utf8_lossy(&o.stderr));
        says_so(&format!("lab {action}"), &o);
    }
    let flows: &[(&str, &str, &str, u16, &str, &str)] = &[
        ("a/client", "a/web", "TCP", 80, "allow", "the L7 port, allowed at L4"),
        ("a/client", "a/web", "TCP", 81, "deny", "another port"),
        ("a/other", "a/web", "TCP", 80, "deny", "another peer"),
    ];
    let lines: String = flows.iter().map(|f| flow_line(f.0, f.1, f.2, f.3)).collect();
    let o = run(&p, L7, &lines, tmp.path());
    drop(guard);
    says_so("connectivity-test", &o);
    let probes: Vec<(String, &str, &str)> =
        flows.iter().map(|f| (format!("{} -> {} {}/{} ({})", f.0, f.1, f.3, f.2, f.5), f.2, f.4)).collect();
    let mut t = Tally::default();
    check(&mut t, "L7 ports", &o, &probes);
    assert!(t.problems.is_empty(), "{} problems:\n{}", t.problems.len(), t.problems.join("\n"));
    assert_eq!(t.agree, flows.len());
}

/// Two nodes with a hostNetwork agent each, and `web` on node `NODE` (the policies come after).
fn moving_web(node: &str, policies: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Node
metadata: {{name: n1}}
status: {{addresses: [{{type: InternalIP, address: 10.34.0.1}}]}}
---
apiVersion: v1
kind: Node
metadata: {{name: n2}}
status: {{addresses: [{{type: InternalIP, address: 10.34.0.2}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: agent-1, namespace: ops}}
spec: {{nodeName: n1, hostNetwork: true}}
---
apiVersion: v1
kind: Pod
metadata: {{name: agent-2, namespace: ops}}
spec: {{nodeName: n2, hostNetwork: true}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: a, labels: {{app: web}}}}
spec: {{nodeName: {node}}}
status: {{podIP: 10.35.0.1}}
---
{policies}"#
    )
}

const LOCK_CNP: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: lock, namespace: a}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingressDeny: [{fromEntities: [all]}]
"#;

const LOCK_NP: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: lock, namespace: a}
spec: {podSelector: {}, policyTypes: [Ingress]}
"#;

/// Allow-localhost follows the cluster through incremental updates (`lab apply`, one nft transaction each): the
/// pod moves to the other node (the own-node pairs change), then the Cilium policy gives way to a NetworkPolicy
/// (no Cilium policy: no own-node rule, and the node's agent is denied like anyone else).
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn allow_localhost_follows_incremental_updates() {
    if let Some(why) = skip_reason() {
        panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
    }
    let p = prefix("cilup");
    let guard = LabGuard(p.clone());
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("cluster.yaml");
    let steps: [(&str, &str, &str, &str); 3] = [
        ("web on n2", "n2", LOCK_CNP, "deny allow"),
        ("web moved to n1", "n1", LOCK_CNP, "allow deny"),
        ("a NetworkPolicy instead", "n1", LOCK_NP, "deny deny"),
    ];
    for (i, (what, node, policy, want)) in steps.iter().enumerate() {
        let manifests = moving_web(node, policy);
        std::fs::write(&m, &manifests).unwrap();
        let action = if i == 0 { "up" } else { "apply" };
        let o = Command::new(env!("CARGO_BIN_EXE_netpol"))
            .args(["lab", action, "--prefix", &p, "-f"])
            .arg(&m)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{what}: lab {action}: {}", String::from_utf8_lossy(&o.stderr));
        if i > 0 {
            assert!(stdout.contains("incremental ruleset update"), "{what}: {stdout}");
        }
        let want: Vec<&str> = want.split(' ').collect();
        let flows = [
            ("ops/agent-1", "a/web", "TCP", 8080, want[0], "agent on n1"),
            ("ops/agent-2", "a/web", "TCP", 8080, want[1], "agent on n2"),
        ];
        let lines: String = flows.iter().map(|f| flow_line(f.0, f.1, f.2, f.3)).collect();
        let o = run(&p, &manifests, &lines, tmp.path());
        let probes: Vec<(String, &str, &str)> =
            flows.iter().map(|f| (format!("{} -> {} {}/{} ({})", f.0, f.1, f.3, f.2, f.5), f.2, f.4)).collect();
        let mut t = Tally::default();
        check(&mut t, what, &o, &probes);
        assert!(t.problems.is_empty(), "{} problems:\n{}", t.problems.len(), t.problems.join("\n"));
        assert_eq!(t.agree, flows.len());
    }
    drop(guard);
}
