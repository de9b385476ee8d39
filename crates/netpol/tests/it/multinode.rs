//! Multi-node labs (root, nftables, iproute2): `netpol lab up --nodes N` builds one netns per node joined by a
//! routed fabric, every node loaded with the ruleset; pods on different nodes connect across it, and
//! `connectivity-test` on the running lab observes the engine's verdicts for flows between nodes. Each test uses
//! its own prefix and removes its namespaces even when it fails (`LabGuard`); ignored like the other data-plane
//! tests without root or tools.

use std::process::{Command, Output};

use crate::dataplane::{prefix, skip_reason, LabGuard};
use netpol_lab::lab::Lab;
use netpol_nft::apply::System;

fn require_root() {
    if let Some(why) = skip_reason() {
        panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
    }
}

/// Three Nodes; pods placed by nodeName: a/web and b/other on n1, a/db and the hostNetwork sys/agent (n2's
/// address) on n2, b/client on n3.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.82.9.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 10.82.9.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: n3}
status: {addresses: [{type: InternalIP, address: 10.82.9.3}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: b}}
---
apiVersion: v1
kind: Namespace
metadata: {name: sys, labels: {team: sys}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 53, protocol: UDP}]}]}
status: {podIP: 10.82.0.1, podIPs: [{ip: 10.82.0.1}, {ip: "fd00:82::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {nodeName: n2, containers: [{name: c, ports: [{containerPort: 5432}, {containerPort: 53, protocol: UDP}]}]}
status: {podIP: 10.82.0.2, podIPs: [{ip: 10.82.0.2}, {ip: "fd00:82::2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: b, labels: {app: client}}
spec: {nodeName: n3, containers: [{name: c, ports: [{containerPort: 7000}]}]}
status: {podIP: 10.82.1.1, podIPs: [{ip: 10.82.1.1}, {ip: "fd00:82:1::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: b, labels: {app: other}}
spec: {nodeName: n1, containers: [{name: c, ports: [{containerPort: 7000}]}]}
status: {podIP: 10.82.1.2, podIPs: [{ip: 10.82.1.2}, {ip: "fd00:82:1::2"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: sys, labels: {app: agent}}
spec: {nodeName: n2, hostNetwork: true, containers: [{name: c, ports: [{containerPort: 9100}]}]}
"#;

/// a is default-deny ...
const DENY: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: a}
spec: {podSelector: {}}
"#;

/// ... and a/db lets namespace b in on TCP 5432 and UDP 53.
const ALLOW_DB: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-db, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}], ports: [{port: 5432}, {port: 53, protocol: UDP}]}]
"#;

fn netpol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netpol")).args(args).env("NO_COLOR", "1").output().unwrap()
}

fn ok(o: &Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{}\nstderr:\n{stderr}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `connectivity-test` against the running lab `p`: its answer lines (exit status 0 or 1).
fn probe_lab(p: &str, cluster: &str, flows: Option<&str>) -> (Vec<serde_json::Value>, Output) {
    let mut args = vec!["connectivity-test", "-f", cluster, "--prefix", p, "--timeout-ms", "700"];
    if let Some(f) = flows {
        args.extend(["--flows", f]);
    }
    let o = netpol(&args);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (lines, o)
}

/// Namespaces named `<p>-*`.
fn leftovers(p: &str) -> Vec<String> {
    let dash = format!("{p}-");
    netpol_nft::apply::netns_list(&System).unwrap().into_iter().filter(|n| n.starts_with(&dash)).collect()
}

/// Packets sent by `dev` in `netns`.
fn tx_packets(netns: &str, dev: &str) -> u64 {
    let o = Command::new("ip").args(["-n", netns, "-s", "-j", "link", "show", "dev", dev]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0]["stats64"]["tx"]["packets"].as_u64().unwrap()
}

/// Flows between pods on different nodes (and to the hostNetwork pod on n2), TCP and UDP, IPv4 and IPv6, with
/// their verdict under [`DENY`] and [`ALLOW_DB`].
const FLOWS: [(&str, &str); 12] = [
    (r#"{"src":"b/client","dst":"a/db","port":5432}"#, "allow"),
    (r#"{"src":"fd00:82:1::1","dst":"fd00:82::2","port":5432}"#, "allow"),
    (r#"{"src":"b/client","dst":"a/db","port":53,"protocol":"UDP"}"#, "allow"),
    (r#"{"src":"fd00:82:1::2","dst":"fd00:82::2","port":53,"protocol":"UDP"}"#, "allow"),
    (r#"{"src":"a/web","dst":"a/db","port":5432}"#, "deny"),
    (r#"{"src":"fd00:82::1","dst":"fd00:82::2","port":5432}"#, "deny"),
    (r#"{"src":"b/client","dst":"a/web","port":8080}"#, "deny"),
    (r#"{"src":"fd00:82:1::1","dst":"fd00:82::1","port":53,"protocol":"UDP"}"#, "deny"),
    (r#"{"src":"a/web","dst":"b/client","port":7000}"#, "allow"),
    (r#"{"src":"fd00:82::2","dst":"fd00:82:1::1","port":7000}"#, "allow"),
    (r#"{"src":"b/client","dst":"sys/agent","port":9100}"#, "allow"),
    (r#"{"src":"sys/agent","dst":"b/client","port":7000}"#, "allow"),
];

/// `lab up --nodes 3` on a cluster of three Nodes: one netns per Node plus the fabric, pods on their nodeName (the
/// hostNetwork pod in its node's netns), the state file recording nodes and placement; with no policy every flow
/// between nodes connects (TCP and UDP, IPv4 and IPv6) and really crosses the fabric; `lab down`, without the state
/// file, leaves nothing.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn three_nodes_connect_across_the_fabric() {
    require_root();
    let p = prefix("mn3");
    let guard = LabGuard(p.clone());
    let dir = tempfile::tempdir_in(crate::common::scratch()).unwrap();
    let cluster = write(dir.path(), "cluster.yaml", CLUSTER);
    let out = ok(&netpol(&["lab", "up", "-f", &cluster, "--nodes", "3", "--prefix", &p]));
    assert!(out.contains(&format!("3 node namespaces ({p}-n1, {p}-n2, {p}-n3), fabric {p}-fabric")), "{out}");
    let mut ns = leftovers(&p);
    ns.sort();
    assert_eq!(ns.len(), 3 + 1 + 4, "3 nodes, the fabric, 4 pods: {ns:?}");
    let lab = Lab::attach(&System, &p).unwrap().unwrap();
    let on = |key: &str| lab.pod_node(key).map(str::to_string);
    let placed: Vec<Option<String>> =
        ["a/web", "b/other", "a/db", "sys/agent", "b/client"].iter().map(|k| on(k)).collect();
    let want: Vec<Option<String>> = ["n1", "n1", "n2", "n2", "n3"].iter().map(|n| Some(n.to_string())).collect();
    assert_eq!(placed, want);
    assert_eq!(lab.pod_netns("sys/agent"), Some(format!("{p}-n2").as_str()));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(netpol_lab::lab::state_path(&p)).unwrap()).unwrap();
    assert_eq!(state["pods"]["a/db"]["node"], "n2", "{state}");
    assert_eq!(state["nodes"][2]["underlay"][0], "10.254.0.3", "{state}");
    // Every node holds the ruleset.
    for n in lab.nodes() {
        let o = Command::new("ip").args(["netns", "exec", &n.netns, "nft", "list", "table", "inet", "netpol"]).output();
        assert!(o.unwrap().status.success(), "no ruleset in {}", n.netns);
    }
    let uplinks = || -> Vec<u64> { lab.nodes().iter().map(|n| tx_packets(&n.netns, "eth0")).collect() };
    let before = uplinks();
    let flows: String = FLOWS.iter().map(|(f, _)| format!("{f}\n")).collect();
    let flows = write(dir.path(), "flows.jsonl", &flows);
    let (lines, o) = probe_lab(&p, &cluster, Some(&flows));
    assert_eq!(lines.len(), FLOWS.len());
    for l in &lines {
        assert_eq!((&l["verdict"], &l["observed"]), (&"allow".into(), &"allow".into()), "{l}");
    }
    assert_eq!(o.status.code(), Some(0));
    let after = uplinks();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(a > b, "node {i}'s uplink carried nothing: {before:?} -> {after:?}");
    }
    // The lab is still up (connectivity-test did not make it), until `lab down`, which needs no state (as after a
    // crash that lost it).
    assert_eq!(leftovers(&p).len(), 8);
    std::fs::remove_file(netpol_lab::lab::state_path(&p)).unwrap();
    let out = ok(&netpol(&["lab", "down", "--prefix", &p]));
    assert!(out.contains("removed 8 namespace(s)"), "{out}");
    assert_eq!(leftovers(&p), Vec::<String>::new());
    let files: Vec<String> = std::fs::read_dir(netpol_lab::lab::STATE_DIR)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(&format!("{p}.")))
        .collect();
    assert!(files.is_empty(), "state left behind: {files:?}");
    drop(guard);
}

/// With a default-deny and an allow policy loaded on every node, the verdicts of flows between nodes observed by
/// `connectivity-test` on the running 3-node lab equal the engine's, on the listed flows and on every pod pair;
/// after `lab apply` (the allow policy gone) they still do.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn three_nodes_enforce_the_engines_verdicts() {
    require_root();
    let p = prefix("mnp");
    let _guard = LabGuard(p.clone());
    let dir = tempfile::tempdir_in(crate::common::scratch()).unwrap();
    let cluster = write(dir.path(), "cluster.yaml", &format!("{CLUSTER}{DENY}{ALLOW_DB}"));
    ok(&netpol(&["lab", "up", "-f", &cluster, "--nodes", "3", "--prefix", &p]));
    let flows: String = FLOWS.iter().map(|(f, _)| format!("{f}\n")).collect();
    let flows = write(dir.path(), "flows.jsonl", &flows);
    let (lines, o) = probe_lab(&p, &cluster, Some(&flows));
    assert_eq!(lines.len(), FLOWS.len());
    for ((flow, want), l) in FLOWS.iter().zip(&lines) {
        assert_eq!((&l["verdict"], &l["observed"]), (&(*want).into(), &(*want).into()), "{flow}: {l}");
    }
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    // Every pod pair on every declared port.
    let (lines, o) = probe_lab(&p, &cluster, None);
    assert!(lines.len() >= 20, "{lines:?}");
    assert!(lines.iter().any(|l| l["observed"] == "deny") && lines.iter().any(|l| l["observed"] == "allow"));
    for l in &lines {
        assert_eq!(l["verdict"], l["observed"], "{l}");
    }
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    // The allow policy goes: `lab apply` updates every node.
    let denied = write(dir.path(), "denied.yaml", &format!("{CLUSTER}{DENY}"));
    let out = ok(&netpol(&["lab", "apply", "-f", &denied, "--prefix", &p]));
    assert!(out.contains("updated"), "{out}");
    let (lines, o) = probe_lab(&p, &denied, Some(&flows));
    for ((flow, _), l) in FLOWS.iter().zip(&lines) {
        assert_eq!(l["verdict"], l["observed"], "{flow}: {l}");
    }
    assert_eq!(lines[0]["observed"], "deny", "{}", lines[0]);
    assert_eq!(o.status.code(), Some(0));
}

/// `observe` started before a `lab apply` names the rules of the table as it is after it: here db's ingress chain
/// is replaced (allow-db goes), so the monitor, which read the table when it started, knows none of the new
/// rules; the drop of client's connection is still named as the isolation by `deny`.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn observe_names_the_rules_of_a_table_changed_while_it_runs() {
    use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;
    require_root();
    let p = prefix("mnr");
    let _guard = LabGuard(p.clone());
    let dir = tempfile::tempdir_in(crate::common::scratch()).unwrap();
    let cluster = netpol_core::load::load_str("c.yaml", &format!("{CLUSTER}{DENY}{ALLOW_DB}")).cluster;
    let (lab, _) = netpol::lab_cmd::up_nodes(&cluster, &p, Some(2), Vec::new()).unwrap();
    let db: IpAddr = "10.82.0.2".parse().unwrap();
    let in_ns = |key: &str| lab.pod_netns(key).unwrap().to_string();
    let _listener = netpol_lab::probe::in_netns(&in_ns("a/db"), move || TcpListener::bind(SocketAddr::new(db, 5432)))
        .unwrap()
        .unwrap();
    let denied = netpol_core::load::load_str("d.yaml", &format!("{CLUSTER}{DENY}")).cluster;
    let engine = netpol_core::compile::Engine::new(denied);
    let p2 = p.clone();
    let observer = std::thread::spawn(move || {
        let mut out = Vec::new();
        netpol::lab_cmd::observe(&p2, Some(&engine), Some(2), Some(Duration::from_secs(8)), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    });
    std::thread::sleep(Duration::from_millis(800));
    let file = write(dir.path(), "denied.yaml", &format!("{CLUSTER}{DENY}"));
    ok(&netpol(&["lab", "apply", "-f", &file, "--prefix", &p]));
    let connected = netpol_lab::probe::in_netns(&in_ns("b/client"), move || {
        TcpStream::connect_timeout(&SocketAddr::new(db, 5432), Duration::from_millis(700))
    })
    .unwrap();
    assert!(connected.is_err(), "allow-db is gone");
    let log = observer.join().unwrap();
    let recs: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let drop = recs.iter().find(|r| r["verdict"] == "deny").unwrap_or_else(|| panic!("no drop observed: {log}"));
    assert_eq!(drop["src"], "b/client", "{log}");
    assert_eq!(drop["dropped_by"], "np-drop:ingress a/deny", "{log}");
}

/// Without Node objects, `connectivity-test --nodes 2` makes a lab of `node0` and `node1`, spreads the pods evenly
/// over them, agrees with the engine on every pod pair, and removes the lab at the end.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn anonymous_nodes_spread_the_pods() {
    require_root();
    let p = prefix("mn2");
    let _guard = LabGuard(p.clone());
    let dir = tempfile::tempdir_in(crate::common::scratch()).unwrap();
    // The cluster without its Nodes (and without the hostNetwork pod, whose address is a Node's).
    let pods = CLUSTER.split("\n---\n").filter(|d| !d.contains("kind: Node") && !d.contains("hostNetwork"));
    let yaml = format!("{}{DENY}{ALLOW_DB}", pods.collect::<Vec<_>>().join("\n---\n"));
    let cluster_file = write(dir.path(), "cluster.yaml", &yaml);
    let cluster = netpol_core::load::load_str("c.yaml", &yaml).cluster;
    assert_eq!(netpol::lab_cmd::lab_nodes(&cluster, 2), ["node0", "node1"]);
    let (lab, _) = netpol::lab_cmd::up_nodes(&cluster, &p, Some(2), Vec::new()).unwrap();
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for (key, _, _) in lab.pods() {
        *per_node.entry(lab.pod_node(key).unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(per_node.into_iter().collect::<Vec<_>>(), [("node0".to_string(), 2), ("node1".to_string(), 2)]);
    netpol::lab_cmd::down(&p).unwrap();
    assert_eq!(leftovers(&p), Vec::<String>::new());
    let o = netpol(&["connectivity-test", "-f", &cluster_file, "--prefix", &p, "--nodes", "2", "--timeout-ms", "700"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.lines().count() >= 10, "{stdout}");
    assert_eq!(leftovers(&p), Vec::<String>::new(), "the lab connectivity-test made is gone");
}

/// A test that fails with a multi-node lab up leaves nothing behind: its `LabGuard` removes every namespace.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn a_failing_test_leaves_no_multi_node_lab() {
    require_root();
    let p = prefix("mnf");
    let p2 = p.clone();
    let failed = std::thread::spawn(move || {
        let _guard = LabGuard(p2.clone());
        let cluster = netpol_core::load::load_str("c.yaml", CLUSTER).cluster;
        netpol::lab_cmd::up_nodes(&cluster, &p2, Some(3), Vec::new()).unwrap();
        assert_eq!(leftovers(&p2).len(), 8);
        panic!("failing on purpose with the lab up");
    })
    .join();
    assert!(failed.is_err());
    assert_eq!(leftovers(&p), Vec::<String>::new());
    assert!(!netpol_lab::lab::state_path(&p).exists());
}

/// `observe` on a 3-node lab logs each flow on every node it passes, naming the node. Each node checks its own
/// pods (the egress of its sources, the ingress of its destinations): a flow to db (on n2) denied by db's ingress
/// passes its source's node (n1, where nothing isolates web's egress) and is dropped on n2; an allowed one is
/// forwarded by both nodes. `nft stats` sums the nodes: db's ingress rule counts on db's node only.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn observe_and_stats_see_every_node() {
    use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;
    require_root();
    let p = prefix("mno");
    let _guard = LabGuard(p.clone());
    let cluster = netpol_core::load::load_str("c.yaml", &format!("{CLUSTER}{DENY}{ALLOW_DB}")).cluster;
    let (lab, prepared) = netpol::lab_cmd::up_nodes(&cluster, &p, Some(3), Vec::new()).unwrap();
    let db: IpAddr = "10.82.0.2".parse().unwrap();
    let in_ns = |key: &str| lab.pod_netns(key).unwrap().to_string();
    let _listener = netpol_lab::probe::in_netns(&in_ns("a/db"), move || TcpListener::bind(SocketAddr::new(db, 5432)))
        .unwrap()
        .unwrap();
    let connect = |key: &str| {
        netpol_lab::probe::in_netns(&in_ns(key), move || {
            TcpStream::connect_timeout(&SocketAddr::new(db, 5432), Duration::from_millis(700))
        })
        .unwrap()
    };
    let p2 = p.clone();
    let observer = std::thread::spawn(move || {
        let mut out = Vec::new();
        netpol::lab_cmd::observe(&p2, Some(&prepared.engine), Some(4), Some(Duration::from_secs(8)), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    });
    std::thread::sleep(Duration::from_millis(800));
    assert!(connect("b/client").is_ok());
    assert!(connect("a/web").is_err());
    let log = observer.join().unwrap();
    let recs: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut seen: Vec<(String, String, String)> = recs
        .iter()
        .map(|r| {
            (
                r["src"].as_str().unwrap().into(),
                r["verdict"].as_str().unwrap().into(),
                r["node"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    let want =
        [("a/web", "allow", "n1"), ("a/web", "deny", "n2"), ("b/client", "allow", "n2"), ("b/client", "allow", "n3")];
    assert_eq!(seen, want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())), "{log}");
    let mut stats = Vec::new();
    netpol::lab_cmd::stats(&p, true, &mut stats).unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats["a/allow-db/ingress/0"]["packets"], 1, "one SYN, on db's node: {stats}");
}
