//! Data-plane tests (root, nftables, iproute2): labs of network-namespace pods enforce the generated ruleset, and
//! real connections must match the engine on every flow. Each test uses its own lab prefix and removes its
//! namespaces even when it fails.
//!
//! Without root, `nft` or `ip` on `PATH` at build time (`build.rs` sets `cfg(netpol_root_tools)`), the tests are
//! ignored with that reason. A test that runs (built with the tools, or `--include-ignored`) and finds them
//! missing fails: it never passes without running.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub(crate) fn skip_reason() -> Option<String> {
    if netpol_lab::euid() != 0 {
        return Some("not root".into());
    }
    for tool in ["nft", "ip"] {
        let ok = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !ok {
            return Some(format!("`{tool}` not installed"));
        }
    }
    None
}

macro_rules! require_root {
    () => {
        if let Some(why) = skip_reason() {
            panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
        }
    };
}

/// Removes the lab when dropped (also when the test panics).
pub(crate) struct LabGuard(pub(crate) String);
impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = netpol::lab_cmd::down(&self.0);
    }
}

pub(crate) fn prefix(name: &str) -> String {
    format!("npt{}-{}", std::process::id() % 10000, name)
}

fn write_cluster(yaml: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile_in(crate::common::scratch()).unwrap();
    f.write_all(yaml.as_bytes()).unwrap();
    f
}

fn netpol(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(args)
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

/// Runs `connectivity-test` and returns the answer lines; asserts that verdicts and observations agree.
fn connectivity(yaml: &str, flows: Option<&str>, name: &str) -> Vec<serde_json::Value> {
    let p = prefix(name);
    let _guard = LabGuard(p.clone());
    let cluster = write_cluster(yaml);
    let flows_file = flows.map(|f| {
        let mut t = tempfile::NamedTempFile::new_in(crate::common::scratch()).unwrap();
        t.write_all(f.as_bytes()).unwrap();
        t
    });
    let mut args =
        vec!["connectivity-test", "-f", cluster.path().to_str().unwrap(), "--prefix", &p, "--timeout-ms", "700"];
    let fpath;
    if let Some(f) = &flows_file {
        fpath = f.path().to_str().unwrap().to_string();
        args.push("--flows");
        args.push(&fpath);
    }
    let o = netpol(&args, None);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for l in &lines {
        if l["observed"] != "untestable" {
            assert_eq!(l["verdict"], l["observed"], "verdict and data plane disagree: {l}\n{stderr}");
        }
    }
    assert_eq!(o.status.code(), Some(0), "connectivity-test failed:\n{stderr}");
    assert!(!lines.is_empty(), "{stderr}");
    // The lab created by the command is gone.
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&ns.stdout).contains(&p), "leftover namespaces for {p}");
    lines
}

fn verdict_of<'a>(lines: &'a [serde_json::Value], src: &str, dst: &str, port: u64) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["src"] == src && l["dst"] == dst && l["port"] == port)
        .unwrap_or_else(|| panic!("no flow {src} -> {dst}:{port}"))
}

const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: b}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}, {containerPort: 9000}]}]}
status: {podIP: 10.77.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 9090}, {containerPort: 8085}]}]}
status: {podIP: 10.77.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: b, labels: {app: client}}
spec: {containers: [{name: c, ports: [{containerPort: 7000}]}]}
status: {podIP: 10.77.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: b, labels: {app: other}}
spec: {containers: [{name: c, ports: [{containerPort: 7000}]}]}
status: {podIP: 10.77.1.2}
"#;

fn with(policies: &str) -> String {
    format!("{PODS}\n---\n{policies}")
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn default_deny_and_named_ports() {
    require_root!();
    let lines = connectivity(
        &with(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: a}
spec: {podSelector: {}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: http, namespace: a}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}], ports: [{port: http}]}]
"#,
        ),
        None,
        "deny",
    );
    assert_eq!(verdict_of(&lines, "b/client", "a/web", 8080)["observed"], "allow");
    assert_eq!(verdict_of(&lines, "b/client", "a/db", 9090)["observed"], "allow");
    assert_eq!(verdict_of(&lines, "b/client", "a/web", 9000)["observed"], "deny");
    assert_eq!(verdict_of(&lines, "b/client", "a/db", 8085)["observed"], "deny");
    assert_eq!(verdict_of(&lines, "a/web", "a/db", 9090)["observed"], "deny");
    assert_eq!(verdict_of(&lines, "a/web", "b/client", 7000)["observed"], "allow");
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn and_versus_or_peers() {
    require_root!();
    let and = connectivity(
        &with(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: b}}
      podSelector: {matchLabels: {app: client}}
"#,
        ),
        None,
        "and",
    );
    assert_eq!(verdict_of(&and, "b/client", "a/db", 9090)["observed"], "allow");
    assert_eq!(verdict_of(&and, "b/other", "a/db", 9090)["observed"], "deny");
    let or = connectivity(
        &with(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: b}}
    - podSelector: {matchLabels: {app: client}}
"#,
        ),
        None,
        "or",
    );
    assert_eq!(verdict_of(&or, "b/other", "a/db", 9090)["observed"], "allow");
    assert_eq!(verdict_of(&or, "a/web", "a/db", 9090)["observed"], "deny");
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn end_port_udp_only_and_egress_denied_at_the_client() {
    require_root!();
    let flows = [
        (r#"{"src":"b/client","dst":"a/db","port":8085}"#, "allow"),
        (r#"{"src":"b/client","dst":"a/db","port":9090}"#, "allow"),
        (r#"{"src":"b/client","dst":"a/web","port":53,"protocol":"UDP"}"#, "allow"),
        (r#"{"src":"b/client","dst":"a/web","port":53,"protocol":"TCP"}"#, "deny"),
        (r#"{"src":"b/other","dst":"a/db","port":8085}"#, "deny"),
    ];
    let input: String = flows.iter().map(|(f, _)| format!("{f}\n")).collect();
    let lines = connectivity(
        &with(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: b}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{ports: [{port: 8000, endPort: 9999}, {port: 53, protocol: UDP}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: other-egress, namespace: b}
spec: {podSelector: {matchLabels: {app: other}}, policyTypes: [Egress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-udp, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 53, protocol: UDP}]}]
"#,
        ),
        Some(&input),
        "ports",
    );
    for ((_, want), got) in flows.iter().zip(&lines) {
        assert_eq!(got["observed"], *want, "{got}");
    }
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn ip_block_except_and_external_addresses() {
    require_root!();
    let flows = [
        (r#"{"src":"a/web","dst":"10.99.1.5","port":443}"#, "allow"),
        (r#"{"src":"a/web","dst":"10.99.2.5","port":443}"#, "deny"),
        (r#"{"src":"a/web","dst":"10.99.1.5","port":80}"#, "deny"),
        (r#"{"src":"10.99.2.5","dst":"a/db","port":9090}"#, "allow"),
        (r#"{"src":"10.99.1.5","dst":"a/db","port":9090}"#, "deny"),
        (r#"{"src":"a/web","dst":"a/db","port":9090}"#, "deny"),
    ];
    let input: String = flows.iter().map(|(f, _)| format!("{f}\n")).collect();
    let lines = connectivity(
        &with(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.99.0.0/16, except: [10.99.2.0/24]}}], ports: [{port: 443}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{ipBlock: {cidr: 10.99.2.0/24}}]}]
"#,
        ),
        Some(&input),
        "ipblock",
    );
    for ((_, want), got) in flows.iter().zip(&lines) {
        assert_eq!(got["observed"], *want, "{got}");
    }
}

// ---- live update with an established connection ----

pub(crate) fn echo_server(netns: &str, ip: IpAddr, port: u16) -> TcpListener {
    netpol_lab::probe::in_netns(netns, move || TcpListener::bind(SocketAddr::new(ip, port))).unwrap().unwrap()
}

pub(crate) fn connect(netns: &str, ip: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    netpol_lab::probe::in_netns(netns, move || {
        TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_millis(700))
    })
    .unwrap()
}

fn roundtrip(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    if s.write_all(b"x").is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(1))
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn label_change_applied_live_keeps_allowed_established_connections() {
    require_root!();
    let p = prefix("live");
    let _guard = LabGuard(p.clone());
    let policy = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}]
  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: reader}}}]
"#;
    let before = with(policy);
    let cluster = netpol_core::load::load_str("before.yaml", &before).cluster;
    let (lab, _) = netpol::lab_cmd::up(&cluster, &p, Vec::new()).unwrap();
    let db_ns = lab.pod_netns("a/db").unwrap().to_string();
    let client_ns = lab.pod_netns("b/client").unwrap().to_string();
    let db_ip: IpAddr = "10.77.0.2".parse().unwrap();
    let listener = echo_server(&db_ns, db_ip, 8085);
    let server = std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut b = [0u8; 1];
                while let Ok(1) = conn.read(&mut b) {
                    if conn.write_all(&b).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let _ = server;
    let mut conn = connect(&client_ns, db_ip, 8085).expect("client reaches db before the change");
    assert!(roundtrip(&mut conn));
    // b/other cannot connect yet.
    let other_ns = lab.pod_netns("b/other").unwrap().to_string();
    assert!(connect(&other_ns, db_ip, 8085).is_err());

    // The client changes labels (app=client -> role=reader: still allowed by the second rule), and b/other
    // becomes a client. Apply live.
    let after = with(policy)
        .replace(
            "metadata: {name: client, namespace: b, labels: {app: client}}",
            "metadata: {name: client, namespace: b, labels: {role: reader}}",
        )
        .replace(
            "metadata: {name: other, namespace: b, labels: {app: other}}",
            "metadata: {name: other, namespace: b, labels: {app: client}}",
        );
    assert_ne!(after, before);
    let cluster2 = netpol_core::load::load_str("after.yaml", &after).cluster;
    let how = netpol::lab_cmd::apply_changes(&cluster2, &p).unwrap();
    assert_eq!(how, netpol::lab_cmd::Load::Incremental);
    // The established connection survives the update; new connections follow the new policy.
    assert!(roundtrip(&mut conn), "established connection was cut by the update");
    assert!(connect(&other_ns, db_ip, 8085).is_ok(), "b/other should now be allowed");
    let web_ns = lab.pod_netns("a/web").unwrap().to_string();
    assert!(connect(&web_ns, db_ip, 8085).is_err(), "a/web is still not allowed");

    // The incremental update leaves exactly the ruleset a full load gives.
    let list = || {
        let o = Command::new("ip")
            .args(["netns", "exec", lab.node_netns(), "nft", "list", "table", "inet", "netpol"])
            .output()
            .unwrap();
        let text = String::from_utf8(o.stdout).unwrap();
        let re_counter = |l: &str| match l.find("counter packets") {
            Some(i) => {
                let rest = &l[i..];
                let end = rest.find(" bytes ").map(|j| j + 7).unwrap_or(rest.len());
                let after = &rest[end..];
                let skip = after.find(' ').unwrap_or(after.len());
                format!("{}counter{}", &l[..i], &after[skip..])
            }
            None => l.to_string(),
        };
        let mut lines: Vec<String> = text.lines().map(re_counter).collect();
        lines.sort();
        lines
    };
    let incremental = list();
    netpol::lab_cmd::reload_full(&cluster2, &p).unwrap();
    assert_eq!(incremental, list());
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn observe_and_stats_report_the_deciding_rules() {
    require_root!();
    let p = prefix("obs");
    let _guard = LabGuard(p.clone());
    let yaml = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}], ports: [{port: 8085}]}]
"#,
    );
    let cluster = netpol_core::load::load_str("obs.yaml", &yaml).cluster;
    let (lab, prepared) = netpol::lab_cmd::up(&cluster, &p, Vec::new()).unwrap();
    let db_ip: IpAddr = "10.77.0.2".parse().unwrap();
    let _listener = echo_server(lab.pod_netns("a/db").unwrap(), db_ip, 8085);
    let p2 = p.clone();
    let observer = std::thread::spawn(move || {
        let mut out = Vec::new();
        netpol::lab_cmd::observe(&p2, Some(&prepared.engine), Some(2), Some(Duration::from_secs(8)), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    });
    std::thread::sleep(Duration::from_millis(800));
    assert!(connect(lab.pod_netns("b/client").unwrap(), db_ip, 8085).is_ok());
    assert!(connect(lab.pod_netns("b/other").unwrap(), db_ip, 8085).is_err());
    let log = observer.join().unwrap();
    let recs: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), 2, "{log}");
    let allowed = recs.iter().find(|r| r["src"] == "b/client").unwrap();
    assert_eq!(allowed["verdict"], "allow");
    assert_eq!(allowed["dst"], "a/db");
    assert_eq!(allowed["port"], 8085);
    assert!(allowed["allowed_by"].to_string().contains("np:a/db/ingress/0"), "{allowed}");
    let denied = recs.iter().find(|r| r["src"] == "b/other").unwrap();
    assert_eq!(denied["verdict"], "deny");
    assert!(denied["dropped_by"].as_str().unwrap().contains("np-drop:ingress a/db"), "{denied}");
    assert!(denied["time"].as_str().unwrap().ends_with('Z'));

    let mut stats = Vec::new();
    netpol::lab_cmd::stats(&p, true, &mut stats).unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["a/db/ingress/0"]["packets"], 1, "{stats}");
    assert!(stats["np-drop:ingress a/db"]["packets"].as_u64().unwrap() >= 1, "{stats}");
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn ipv6_and_sctp_flows() {
    require_root!();
    let yaml = r#"
apiVersion: v1
kind: Pod
metadata: {name: dual, namespace: x, labels: {app: dual}}
spec: {containers: [{name: c}]}
status: {podIP: 10.78.0.1, podIPs: [{ip: 10.78.0.1}, {ip: "fd00:78::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: x, labels: {app: server}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 9000, protocol: SCTP}]}]}
status: {podIP: 10.78.0.2, podIPs: [{ip: 10.78.0.2}, {ip: "fd00:78::2"}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: x}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{ipBlock: {cidr: "fd00:78::/64", except: ["fd00:78::1:0/112"]}}]
    ports: [{port: 8080}, {port: 9000, protocol: SCTP}]
"#;
    let flows = [
        (r#"{"src":"fd00:78::1","dst":"fd00:78::2","port":8080}"#, "allow", "allow"),
        (r#"{"src":"10.78.0.1","dst":"10.78.0.2","port":8080}"#, "deny", "deny"),
        (r#"{"src":"fd00:78::1","dst":"fd00:78::2","port":8081}"#, "deny", "deny"),
        // With SCTP sockets, or (a kernel without them, as this CI's) over raw sockets: INIT, INIT-ACK.
        (r#"{"src":"fd00:78::1","dst":"fd00:78::2","port":9000,"protocol":"SCTP"}"#, "allow", "allow"),
        (r#"{"src":"fd00:78::1","dst":"fd00:78::2","port":9001,"protocol":"SCTP"}"#, "deny", "deny"),
        (r#"{"src":"10.78.0.1","dst":"10.78.0.2","port":9000,"protocol":"SCTP"}"#, "deny", "deny"),
    ];
    let input: String = flows.iter().map(|(f, _, _)| format!("{f}\n")).collect();
    let lines = connectivity(yaml, Some(&input), "v6");
    for ((_, verdict, observed), got) in flows.iter().zip(&lines) {
        assert_eq!(got["verdict"], *verdict, "{got}");
        assert_eq!(got["observed"], *observed, "{got}");
    }
}

/// A hostNetwork pod lives in the node netns with its node's address: pods reach it through the node's input
/// path and it reaches pods through the output path, and both are checked like forwarded traffic — a pod's
/// egress to the node (by ipBlock, by named port: resolved against the hostNetwork pod's container ports) and a
/// pod's ingress from it. Both were once missed: the ruleset hooked only `forward` (the kernel allowed what the
/// engine denied), and the data-plane table left hostNetwork pods out of egress named ports (the kernel dropped
/// what the engine allowed).
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn host_network_pods_live_in_the_node() {
    require_root!();
    let yaml = r#"
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {kubernetes.io/os: linux}}
status: {addresses: [{type: InternalIP, address: 10.79.9.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: sys, labels: {app: agent}}
spec: {nodeName: n1, hostNetwork: true, containers: [{name: c, ports: [{name: web, containerPort: 34345}, {name: dns, containerPort: 5353, protocol: UDP}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: a, labels: {app: client}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.79.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: a, labels: {app: other}}
spec: {nodeName: n1, containers: [{name: c}]}
status: {podIP: 10.79.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {nodeName: n1, containers: [{name: c, ports: [{containerPort: 5432}]}]}
status: {podIP: 10.79.0.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: a}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.79.9.0/24}}], ports: [{port: web}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: other-egress, namespace: a}
spec:
  podSelector: {matchLabels: {app: other}}
  policyTypes: [Egress]
  egress: [{ports: [{port: dns, protocol: UDP}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{ipBlock: {cidr: 10.79.9.0/24}}], ports: [{port: 5432}]}]
"#;
    let flows = [
        (r#"{"src":"a/client","dst":"sys/agent","port":34345}"#, "allow"),
        (r#"{"src":"a/client","dst":"sys/agent","port":34346}"#, "deny"),
        (r#"{"src":"a/client","dst":"10.79.9.1","port":34345}"#, "allow"),
        (r#"{"src":"a/other","dst":"sys/agent","port":5353,"protocol":"UDP"}"#, "allow"),
        (r#"{"src":"a/other","dst":"sys/agent","port":5354,"protocol":"UDP"}"#, "deny"),
        (r#"{"src":"sys/agent","dst":"a/db","port":5432}"#, "allow"),
        (r#"{"src":"sys/agent","dst":"a/db","port":5433}"#, "deny"),
        (r#"{"src":"a/client","dst":"a/db","port":5432}"#, "deny"),
        (r#"{"src":"a/db","dst":"sys/agent","port":34346}"#, "allow"),
    ];
    let input: String = flows.iter().map(|(f, _)| format!("{f}\n")).collect();
    let lines = connectivity(yaml, Some(&input), "hostnet");
    for ((_, want), got) in flows.iter().zip(&lines) {
        assert_eq!((&got["verdict"], &got["observed"]), (&(*want).into(), &(*want).into()), "{got}");
    }
}

// ---- Antrea: a held pass and Reject, with real connections ----

/// An ACNP (built from the model: the `crd.antrea.io` loader is separate) in tier `tier` (index in
/// `Cluster::tiers`) for `a/db`'s ingress, one rule per (action, TCP port).
fn antrea_acnp(name: &str, tier: usize, rules: &[(netpol_core::model::Action, u16)]) -> netpol_core::model::Policy {
    use netpol_core::model::*;
    let ingress = rules
        .iter()
        .map(|&(action, port)| Rule {
            action,
            ports: vec![PolicyPort {
                protocol: netpol_core::portset::Protocol::Tcp,
                port: PortMatch::Range(port, port),
            }],
            ..Default::default()
        })
        .collect();
    Policy {
        host: Default::default(),
        position: 0,
        manifest: None,
        kind: PolicyKind::AntreaClusterNetworkPolicy,
        tier: PolicyTier::from_index(tier),
        order: Order(Some(1.0)),
        calico_selector: None,
        scope: Scope::Cluster(netpol_core::selector::Selector::everything()),
        name: name.into(),
        pod_selector: netpol_core::selector::Selector::from_labels([("app", "db")]),
        affects_ingress: true,
        affects_egress: false,
        ingress,
        egress: Vec::new(),
        origin: Origin::default(),
    }
}

/// Antrea's tiers `emergency` and `securityops` (a pass in the first skips the second, on to NetworkPolicy) over
/// a NetworkPolicy letting `a/db` in on 8081 only: `emergency` passes 8081 and 8082 and rejects 8083,
/// `securityops` allows 8081-8084. 8081 is allowed (by the NetworkPolicy), 8082 dropped (its isolation:
/// securityops's allow never sees it), 8083 refused at once (a TCP reset), 8084 allowed by securityops.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn antrea_held_pass_and_reject_with_real_connections() {
    use netpol_core::model::{Action, TierDef};
    require_root!();
    let p = prefix("antrea");
    let _guard = LabGuard(p.clone());
    let policy = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: a}
spec: {podSelector: {matchLabels: {app: db}}, ingress: [{ports: [{port: 8081}]}]}
"#;
    let mut cluster = netpol_core::load::load_str("antrea.yaml", &with(policy)).cluster;
    if cluster.tiers.len() < 3 {
        cluster.tiers = TierDef::builtin();
    }
    let t = cluster.tiers.len();
    for (name, order) in [("emergency", 50.0), ("securityops", 100.0)] {
        cluster.tiers.push(TierDef {
            name: name.into(),
            order: Some(order),
            default_action: Action::Pass,
            origin: None,
            pass_to_network_policy: true,
        });
    }
    cluster.policies.push(antrea_acnp(
        "first",
        t,
        &[(Action::Pass, 8081), (Action::Pass, 8082), (Action::Reject, 8083)],
    ));
    let allow: Vec<(Action, u16)> = (8081..=8084).map(|port| (Action::Allow, port)).collect();
    cluster.policies.push(antrea_acnp("second", t + 1, &allow));
    let e = netpol_core::compile::Engine::new(cluster.clone());
    let (lab, _) = netpol::lab_cmd::up(&cluster, &p, Vec::new()).unwrap();
    let db_ns = lab.pod_netns("a/db").unwrap().to_string();
    let client_ns = lab.pod_netns("b/client").unwrap().to_string();
    let db_ip: IpAddr = "10.77.0.2".parse().unwrap();
    let listeners: Vec<TcpListener> = (8081..=8084).map(|port| echo_server(&db_ns, db_ip, port)).collect();
    let (client, db) = (cluster.find_pod("b", "client").unwrap(), cluster.find_pod("a", "db").unwrap());
    for (port, want) in [(8081u16, Ok(())), (8082, Err(false)), (8083, Err(true)), (8084, Ok(()))] {
        let src = netpol_core::compile::Endpoint::Pod { pod: client, ip: None };
        let dst = netpol_core::compile::Endpoint::Pod { pod: db, ip: None };
        let engine = e.allowed(&src, &dst, netpol_core::portset::Protocol::Tcp, port);
        assert_eq!(engine, want.is_ok(), "engine, port {port}");
        let started = std::time::Instant::now();
        let got = connect(&client_ns, db_ip, port);
        match (want, got) {
            (Ok(()), Ok(_)) => {}
            // Rejected: refused at once, well before the connect timeout.
            (Err(true), Err(err)) => {
                assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "port {port}: {err}");
                assert!(started.elapsed() < Duration::from_millis(500), "port {port}: {:?}", started.elapsed());
            }
            // Dropped: the client times out.
            (Err(false), Err(err)) => {
                assert_ne!(err.kind(), std::io::ErrorKind::ConnectionRefused, "port {port}: {err}");
            }
            (want, got) => panic!("port {port}: want {want:?}, got {got:?}"),
        }
    }
    drop(listeners);
}

// ---- Conformance cases in reused labs (Calico's, Antrea's) ----

/// One case for [`run_cases_in_labs`]: its manifests and its flows (JSON Lines of the query contract).
pub(crate) struct LabCase {
    pub(crate) manifests: String,
    pub(crate) flows: String,
}

/// Runs every case through `netpol connectivity-test` (timeout `timeout_ms`) in `labs` labs reused in parallel
/// (prefixes `tag0`, `tag1`, ...; one thread each takes the cases in turn, the lab node's conntrack table flushed
/// between cases), removes the labs, asserts that none of their namespaces is left, and returns the outputs in the
/// cases' order.
pub(crate) fn run_cases_in_labs(tag: &str, labs: usize, timeout_ms: &str, cases: &[LabCase]) -> Vec<Output> {
    let prefixes: Vec<String> = (0..labs).map(|i| prefix(&format!("{tag}{i}"))).collect();
    let guards: Vec<LabGuard> = prefixes.iter().map(|p| LabGuard(p.clone())).collect();
    let tmp = tempfile::tempdir().unwrap();
    let mut runs: Vec<(usize, Output)> = std::thread::scope(|s| {
        let workers: Vec<_> = prefixes
            .iter()
            .enumerate()
            .map(|(w, p)| {
                let dir = tmp.path().join(format!("w{w}"));
                std::fs::create_dir_all(&dir).unwrap();
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (i, case) in cases.iter().enumerate().skip(w).step_by(labs) {
                        if !out.is_empty() {
                            netpol_lab::probe::flush_conntrack(&netpol_lab::lab::node_netns_name(p)).unwrap();
                        }
                        out.push((i, run_case_in_lab(p, timeout_ms, case, &dir)));
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    drop(guards);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    for p in &prefixes {
        assert!(!left.lines().any(|l| l.starts_with(&format!("{p}-"))), "leftover namespaces of {p}:\n{left}");
    }
    runs.sort_by_key(|r| r.0);
    runs.into_iter().map(|r| r.1).collect()
}

/// `connectivity-test` on one case in lab `prefix`, kept for the next case.
/// Runs one case through `netpol connectivity-test` in the lab `prefix` (kept), its files written to `dir`.
pub(crate) fn run_case_in_lab(prefix: &str, timeout_ms: &str, case: &LabCase, dir: &std::path::Path) -> Output {
    let manifests = dir.join("cluster.yaml");
    std::fs::write(&manifests, &case.manifests).unwrap();
    let flows_path = dir.join("flows.jsonl");
    std::fs::write(&flows_path, &case.flows).unwrap();
    let args = ["connectivity-test", "--prefix", prefix, "--keep", "--timeout-ms", timeout_ms, "-f"];
    Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(args)
        .arg(&manifests)
        .arg("--flows")
        .arg(&flows_path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// The answer lines of one `connectivity-test` run, asserted to have exited 0 or 1 and to hold one line per flow.
pub(crate) fn answer_lines(what: &str, o: &Output, flows: usize) -> Vec<serde_json::Value> {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{what}: connectivity-test failed:\n{stderr}");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), flows, "{what}: one answer per flow\n{stderr}");
    lines
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn generate_prove_enforces_the_generated_set_and_probes_every_observed_connection() {
    require_root!();
    let p = prefix("gen");
    let _guard = LabGuard(p.clone());
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ex = root.join("examples/three-tier").display().to_string();
    let log = root.join("examples/three-tier/flows.hubble.jsonl").display().to_string();
    let o = netpol(&["generate", "-f", &ex, "--from-flows", &log, "--prove", "--prefix", &p, "-o", "json"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&err[err.find('{').unwrap()..]).unwrap();
    let prove = &v["prove"];
    // 10 observed connections (9 allowed or seen, 1 denied): the 2 to addresses outside 10.0.0.0/8 cannot be
    // placed in a lab; the kernel agrees with the engine on the 8 others.
    assert_eq!((prove["probes"].as_u64(), prove["agree"].as_u64()), (Some(10), Some(8)), "{prove}");
    assert_eq!((prove["disagree"].as_u64(), prove["errors"].as_u64()), (Some(0), Some(0)), "{prove}");
}
