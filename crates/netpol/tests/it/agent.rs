//! `netpol agent` in a network namespace standing for a node (root, nftables): what it programs is its node's
//! share, in its own table only; it follows the manifests; its death leaves the ruleset in place.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dataplane::{prefix, skip_reason, LabGuard};

macro_rules! require_root {
    () => {
        if let Some(why) = skip_reason() {
            panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
        }
    };
}

const CLUSTER: &str = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n, labels: {app: a}}
spec: {nodeName: node-1}
status: {podIP: 10.77.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n, labels: {app: b}}
spec: {nodeName: node-2}
status: {podIP: 10.77.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-b, namespace: n}
spec: {podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {app: b}}}]}]}
";

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().unwrap();
    assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A network namespace standing for a node (`<prefix>-node0`), removed with the guard.
fn node_namespace(name: &str) -> (LabGuard, String) {
    let p = prefix(name);
    let guard = LabGuard(p.clone());
    let ns = format!("{p}-node0");
    ip(&["netns", "add", &ns]);
    (guard, ns)
}

/// `nft -j list ruleset` in `ns`.
fn ruleset(ns: &str) -> serde_json::Value {
    let o = Command::new("ip").args(["netns", "exec", ns, "nft", "-j", "list", "ruleset"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The keys of map `name` of table inet netpol.
fn map_keys(rs: &serde_json::Value, name: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for item in rs["nftables"].as_array().unwrap() {
        let m = &item["map"];
        if m["name"] == name && m["table"] == "netpol" {
            for e in m["elem"].as_array().into_iter().flatten() {
                keys.push(e[0].as_str().unwrap_or_default().to_string());
            }
        }
    }
    keys
}

/// Pods a, b and c (labelled `app: a`, `b`, `c`) of namespace n on node-1, at NET.1, NET.2 and NET.3.
fn three_pods(net: &str) -> String {
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: n, labels: {{app: {name}}}}}\nspec: {{nodeName: node-1}}\nstatus: {{podIP: {net}.{}}}\n",
                i + 1
            )
        })
        .collect()
}

/// b takes connections from c only.
const B_FROM_C: &str = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b-from-c, namespace: n}\nspec: {podSelector: {matchLabels: {app: b}}, ingress: [{from: [{podSelector: {matchLabels: {app: c}}}]}]}\n";

/// `netpol agent --node node-1 -f CLUSTER --once EXTRA...` inside `netns`, `yaml` written to a scratch file.
fn agent_once(netns: &str, yaml: &str, extra: &[&str]) -> std::process::Output {
    let dir = crate::common::tempdir();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, yaml).unwrap();
    Command::new("ip")
        .args(["netns", "exec", netns, env!("CARGO_BIN_EXE_netpol"), "agent", "--node", "node-1", "-f"])
        .arg(&file)
        .arg("--once")
        .args(extra)
        .output()
        .unwrap()
}

/// [`agent_once`], which must succeed.
fn program_once(netns: &str, yaml: &str, extra: &[&str]) {
    let o = agent_once(netns, yaml, extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn tables(rs: &serde_json::Value) -> Vec<String> {
    rs["nftables"].as_array().unwrap().iter().filter_map(|i| i["table"]["name"].as_str().map(str::to_string)).collect()
}

/// The agent's nft session (`nft -i`, one transaction per script): a script commits whole, with set and chain
/// declarations and quoted `#`; a script the kernel refuses commits nothing and is an error naming nft's complaint;
/// one with a comment is refused before nft sees it.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn an_nft_session_commits_each_script_as_one_transaction() {
    require_root!();
    let (_guard, ns) = node_namespace("session");
    let mut s = netpol_nft::apply::NftSession::start(Some(&ns)).unwrap();
    let timeout = Duration::from_secs(10);
    s.apply(
        "add table inet netpol\nadd set inet netpol s { type ipv4_addr; flags interval; }\n\
         add map inet netpol ingress_v4 { type ipv4_addr : verdict; }\nadd chain inet netpol c\n\
         add rule inet netpol c ip saddr @s counter drop comment \"np:#0123\"\n\
         add element inet netpol ingress_v4 { 10.77.0.1 : jump c }\n",
        timeout,
    )
    .unwrap();
    assert_eq!(map_keys(&ruleset(&ns), "ingress_v4"), ["10.77.0.1"]);
    // The second element's chain does not exist: nothing of the script is committed.
    let e = s
        .apply(
            "add element inet netpol ingress_v4 { 10.77.0.2 : jump c }\n\
             add element inet netpol ingress_v4 { 10.77.0.3 : jump missing }\n",
            timeout,
        )
        .unwrap_err();
    assert!(e.stderr().contains("Error:"), "{e}");
    assert!(netpol_nft::apply::NftSession::refused(&e), "{e}");
    assert_eq!(map_keys(&ruleset(&ns), "ingress_v4"), ["10.77.0.1"]);
    // A refused script leaves the session usable.
    s.apply("add element inet netpol ingress_v4 { 10.77.0.4 : jump c }\n", timeout).unwrap();
    s.apply("delete element inet netpol ingress_v4 { 10.77.0.4 }\n", timeout).unwrap();
    // A new session.
    assert!(s.apply("add element inet netpol ingress_v4 { 10.77.0.2 : jump c } # two\n", timeout).is_err());
    s.apply("delete element inet netpol ingress_v4 { 10.77.0.1 }\nflush chain inet netpol c\n", timeout).unwrap();
    assert!(map_keys(&ruleset(&ns), "ingress_v4").is_empty());
}

/// An nft without its interactive mode: the agent's session fails, each difference goes to `nft -f -` instead, and
/// after three failures the agent stops trying sessions. Every change is still programmed.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn differences_reach_the_kernel_when_nft_has_no_interactive_mode() {
    require_root!();
    let (_guard, ns) = node_namespace("nosession");
    let dir = crate::common::tempdir();
    let real = String::from_utf8(Command::new("sh").args(["-c", "command -v nft"]).output().unwrap().stdout).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = format!(
        "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -i ] && {{ echo 'no interactive mode' >&2; exit 1; }}; done\nexec {} \"$@\"\n",
        real.trim()
    );
    std::fs::write(bin.join("nft"), wrapper).unwrap();
    Command::new("chmod").args(["+x", &bin.join("nft").display().to_string()]).status().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, CLUSTER).unwrap();
    let log = dir.path().join("agent.log");
    let exe = env!("CARGO_BIN_EXE_netpol");
    let mut agent = Command::new("ip")
        .args(["netns", "exec", &ns, exe, "agent", "--node", "node-1", "-f", &file.display().to_string()])
        .env("PATH", &path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let wait_for = |keys: &[&str]| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            let mut k = map_keys(&ruleset(&ns), "ingress_v4");
            k.sort();
            if k == keys {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{keys:?} not programmed within 15 s: {}", ruleset(&ns));
    };
    wait_for(&["10.77.0.1"]);
    // Four differences: b moves to node-1 and back, twice.
    for i in 0..4 {
        let moved = i % 2 == 0;
        let text = if moved { CLUSTER.replace("nodeName: node-2", "nodeName: node-1") } else { CLUSTER.to_string() };
        std::fs::write(&file, text).unwrap();
        wait_for(if moved { &["10.77.0.1", "10.77.0.2"] } else { &["10.77.0.1"] });
    }
    agent.kill().unwrap();
    agent.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.matches("the nft session failed").count(), 3, "{log}");
    assert_eq!(log.matches("differences go to `nft -f -` from now on").count(), 1, "{log}");
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn the_agent_programs_its_nodes_share_follows_changes_and_leaves_it_in_place_when_it_dies() {
    require_root!();
    let (_guard, ns) = node_namespace("agent");
    // Another table of the node's: the agent never touches it.
    let o = Command::new("ip").args(["netns", "exec", &ns, "nft", "add", "table", "inet", "other"]).output().unwrap();
    assert!(o.status.success());
    let dir = crate::common::tempdir();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, CLUSTER).unwrap();
    let f = file.display().to_string();
    let exe = env!("CARGO_BIN_EXE_netpol");
    // Once: node-1's pod `a` only (isolated for ingress); b (node-2) is not node-1's to check.
    let o = Command::new("ip")
        .args(["netns", "exec", &ns, exe, "agent", "--node", "node-1", "-f", &f, "--once"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rs = ruleset(&ns);
    assert_eq!(map_keys(&rs, "ingress_v4"), ["10.77.0.1"], "{rs}");
    assert!(tables(&rs).contains(&"other".to_string()));
    // Watching: a change of the manifests is programmed within seconds.
    let mut agent = Command::new("ip")
        .args(["netns", "exec", &ns, exe, "agent", "--node", "node-1", "-f", &f, "--mode", "audit"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |what: &str, check: &dyn Fn(&serde_json::Value) -> bool| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if check(&ruleset(&ns)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{what}: not programmed within 15 s: {}", ruleset(&ns));
    };
    // Audit mode: the same checks, no drop verdict.
    wait_for("audit", &|rs| !rs.to_string().contains("\"drop\"") && rs.to_string().contains("netpol-audit"));
    std::fs::write(&file, CLUSTER.replace("nodeName: node-2", "nodeName: node-1")).unwrap();
    wait_for("b moved to node-1", &|rs| {
        let mut k = map_keys(rs, "ingress_v4");
        k.sort();
        k == ["10.77.0.1", "10.77.0.2"]
    });
    // The agent dies: what it programmed stays.
    agent.kill().unwrap();
    agent.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let rs = ruleset(&ns);
    assert_eq!(map_keys(&rs, "ingress_v4").len(), 2, "{rs}");
    assert!(tables(&rs).contains(&"other".to_string()));
}

/// Fail closed: a pod on the node that the agent's model does not have yet gets no forwarded traffic (to or from
/// it) until a program includes it; then the same connection goes through.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn a_pod_the_agent_does_not_know_yet_is_closed_until_programmed() {
    use crate::dataplane::{connect, echo_server};
    require_root!();
    let p = prefix("agentfc");
    let _guard = LabGuard(p.clone());
    let both = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n}
spec: {nodeName: node-1}
status: {podIP: 10.78.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n}
spec: {nodeName: node-1}
status: {podIP: 10.78.0.2}
";
    let cluster = netpol_core::load::load_str("both.yaml", both).cluster;
    let (lab, _) = netpol::lab_cmd::up(&cluster, &p, Vec::new()).unwrap();
    let (a_ns, b_ns) = (lab.pod_netns("n/a").unwrap().to_string(), lab.pod_netns("n/b").unwrap().to_string());
    let b_ip: std::net::IpAddr = "10.78.0.2".parse().unwrap();
    let listener = echo_server(&b_ns, b_ip, 8086);
    std::thread::spawn(move || for _ in listener.incoming() {});
    let program = |yaml: &str| program_once(lab.node_netns(), yaml, &["--pod-interface", "v*"]);
    // The agent knows only `a`: b's traffic is dropped at the node, both ways.
    program(&both[..both.find("---").unwrap()]);
    assert!(connect(&a_ns, b_ip, 8086).is_err(), "a reached b, which the agent does not know yet");
    // Then b is in the model: the same connection goes through.
    program(both);
    assert!(connect(&a_ns, b_ip, 8086).is_ok(), "a cannot reach b once programmed");
}

/// Revocation: a program that denies an established connection cuts it (its conntrack entry is deleted, so its
/// next segment meets the new ruleset); an established connection still allowed keeps flowing.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn a_program_cuts_the_established_connections_it_denies_and_keeps_the_others() {
    use crate::dataplane::{connect, echo_server};
    use std::io::{Read, Write};
    require_root!();
    let p = prefix("agentrv");
    let _guard = LabGuard(p.clone());
    let pods: &str = &three_pods("10.79.0");
    let only_c = B_FROM_C;
    let cluster = netpol_core::load::load_str("pods.yaml", pods).cluster;
    let (lab, _) = netpol::lab_cmd::up(&cluster, &p, Vec::new()).unwrap();
    let ns = |k: &str| lab.pod_netns(k).unwrap().to_string();
    let b_ip: std::net::IpAddr = "10.79.0.2".parse().unwrap();
    let listener = echo_server(&ns("n/b"), b_ip, 8087);
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut x = [0u8; 1];
                while let Ok(1) = conn.read(&mut x) {
                    if conn.write_all(&x).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let roundtrip = |s: &mut std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
        let mut x = [0u8; 1];
        s.write_all(b"x").is_ok() && matches!(s.read(&mut x), Ok(1))
    };
    let program = |yaml: &str| -> Duration {
        let t = Instant::now();
        program_once(lab.node_netns(), yaml, &[]);
        t.elapsed()
    };
    program(pods);
    let mut from_a = connect(&ns("n/a"), b_ip, 8087).expect("a reaches b");
    let mut from_c = connect(&ns("n/c"), b_ip, 8087).expect("c reaches b");
    assert!(roundtrip(&mut from_a) && roundtrip(&mut from_c));
    // b now takes only c: a's established connection is cut by the program itself, c's goes on.
    let took = program(&format!("{pods}{only_c}"));
    assert!(!roundtrip(&mut from_a), "a's connection outlived the program that denies it");
    assert!(roundtrip(&mut from_c), "c's allowed connection was cut");
    assert!(connect(&ns("n/a"), b_ip, 8087).is_err());
    // The whole program (process start, reading, ruleset, transaction, revocation) in well under a second here.
    assert!(took < Duration::from_secs(3), "{took:?}");
}

/// A bridged node whose bridge does not hand frames to netfilter (br_netfilter's sysctls off in its namespace):
/// the agent programs what it can and says it does not enforce same-node pod traffic (exit 1); with the sysctls on,
/// it does.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn a_bridge_that_bypasses_netfilter_is_refused() {
    require_root!();
    let (_guard, ns) = node_namespace("agentbr");
    ip(&["-n", &ns, "link", "add", "cni0", "type", "bridge"]);
    ip(&["-n", &ns, "link", "add", "veth1", "type", "veth", "peer", "name", "veth1p"]);
    ip(&["-n", &ns, "link", "set", "veth1", "master", "cni0"]);
    let sysctl = |v: &str| {
        for k in ["net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"] {
            let o =
                Command::new("ip").args(["netns", "exec", &ns, "sysctl", "-qw", &format!("{k}={v}")]).output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
    };
    let run = || agent_once(&ns, CLUSTER, &[]);
    // Without br_netfilter loaded the sysctls do not exist: the bridge bypasses netfilter all the same.
    let loaded = std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists();
    if loaded {
        sysctl("0");
    }
    let o = run();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("bridge cni0 has ports (veth1)") && err.contains("bypasses netfilter"), "{err}");
    // It still programmed what it can.
    assert_eq!(map_keys(&ruleset(&ns), "ingress_v4"), ["10.77.0.1"]);
    if !loaded {
        eprintln!("br_netfilter is not loaded on this machine: the enforced case is not checked");
        return;
    }
    sysctl("1");
    let o = run();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The flow log and the self-check: new connections and drops are logged with the rules that decided them, in
/// netpol's neutral schema and as Hubble JSON (both read back by netpol's own flow-log reader), and a rule that is
/// not the engine's (inserted by hand) is caught: the kernel drops what the engine allows.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn the_flow_log_reads_back_and_the_self_check_catches_a_wrong_rule() {
    use crate::dataplane::{connect, echo_server};
    require_root!();
    let p = prefix("agentfl");
    let _guard = LabGuard(p.clone());
    let yaml: &str = &format!("{}{B_FROM_C}", three_pods("10.80.0"));
    let cluster = netpol_core::load::load_str("c.yaml", yaml).cluster;
    let (lab, _) = netpol::lab_cmd::up(&cluster, &p, Vec::new()).unwrap();
    let node = lab.node_netns().to_string();
    let ns = |k: &str| lab.pod_netns(k).unwrap().to_string();
    let b_ip: std::net::IpAddr = "10.80.0.2".parse().unwrap();
    let listener = echo_server(&ns("n/b"), b_ip, 8088);
    std::thread::spawn(move || for _ in listener.incoming() {});
    let dir = crate::common::tempdir();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, yaml).unwrap();
    let f = file.display().to_string();
    for format in ["netpol", "hubble"] {
        let log = dir.path().join(format!("flows-{format}.jsonl"));
        let l = log.display().to_string();
        let mut agent = Command::new("ip")
            .args(["netns", "exec", &node, env!("CARGO_BIN_EXE_netpol"), "agent", "--node", "node-1", "-f", &f])
            .args(["--flow-log", &l, "--flow-log-format", format, "--self-check"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Programmed and tracing.
        let t = Instant::now();
        while !tables(&ruleset(&node)).contains(&"netpol_trace".to_string()) && t.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        assert!(connect(&ns("n/a"), b_ip, 8088).is_err(), "a -> b is denied");
        assert!(connect(&ns("n/c"), b_ip, 8088).is_ok(), "c -> b is allowed");
        // A wrong rule: the kernel now drops c -> b, which the engine allows.
        if format == "netpol" {
            let o = Command::new("ip")
                .args(["netns", "exec", &node, "nft", "insert", "rule", "inet", "netpol", "forward"])
                .args(["ip", "saddr", "10.80.0.3", "ip", "daddr", "10.80.0.2", "tcp", "dport", "8088", "drop"])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            assert!(connect(&ns("n/c"), b_ip, 8088).is_err());
        }
        std::thread::sleep(Duration::from_millis(700));
        agent.kill().unwrap();
        agent.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        // Read back as `netpol flows replay` reads logs.
        let reader = netpol_input::flowlog::Reader::new(&l, std::io::Cursor::new(text.clone().into_bytes()), None);
        let records: Vec<_> = reader.collect::<Result<Vec<_>, _>>().unwrap();
        let to_b: Vec<_> = records.iter().filter(|o| o.port == Some(8088)).collect();
        let verdict_from = |ip: &str| {
            to_b.iter()
                .filter(|o| o.src.ip.map(|a| a.to_string()).as_deref() == Some(ip))
                .map(|o| o.verdict)
                .collect::<Vec<_>>()
        };
        use netpol_input::flowlog::Verdict::{Allowed, Denied};
        assert!(
            verdict_from("10.80.0.1").iter().all(|v| *v == Some(Denied)) && !verdict_from("10.80.0.1").is_empty(),
            "{text}"
        );
        assert!(verdict_from("10.80.0.3").contains(&Some(Allowed)), "{text}");
        if format == "netpol" {
            // The first c -> b agrees; the one the hand-made rule dropped is the self-check's disagreement.
            let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            let c_to_b: Vec<&serde_json::Value> =
                lines.iter().filter(|v| v["src"]["pod"] == "c" && v["port"] == 8088).collect();
            let checks: Vec<&str> = c_to_b.iter().map(|v| v["self_check"].as_str().unwrap_or("")).collect();
            assert_eq!(checks, ["agree", "disagree"], "{text}");
            assert_eq!(c_to_b[1]["verdict"], "denied");
            assert_eq!(c_to_b[1]["engine_verdict"], "allowed");
            assert!(text.contains("n/b-from-c") && text.contains("\"pod\":\"a\""), "{text}");
        } else {
            assert!(
                text.contains("\"drop_reason_desc\":\"POLICY_DENIED\"") && text.contains("\"FORWARDED\""),
                "{text}"
            );
            assert!(text.contains("\"ingress_allowed_by\"") && text.contains("\"ingress_denied_by\""), "{text}");
        }
    }
}

/// Pods a, b, c of `three_pods`: an Admin-tier ClusterNetworkPolicy passes c -> b on to the NetworkPolicy tier,
/// where b-from-c allows it (and isolates b); a Baseline-tier ClusterNetworkPolicy denies every ingress of c.
const TIERED: &str = "---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: admin-pass}
spec:
  tier: Admin
  priority: 10
  subject: {pods: {podSelector: {matchLabels: {app: b}}}}
  ingress:
  - {name: pass-c, action: Pass, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: c}}}}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: baseline-deny}
spec:
  tier: Baseline
  priority: 0
  subject: {pods: {podSelector: {matchLabels: {app: c}}}}
  ingress:
  - {action: Deny, from: [{namespaces: {}}]}
";

/// `GET path` on the agent's metrics endpoint, from inside the node's namespace.
fn http_get(netns: &str, port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = crate::dataplane::connect(netns, "127.0.0.1".parse().unwrap(), port).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the metric line starting with `series` (`name{labels}`), if there is one.
fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// With real traffic through the kernel: the flow log names the deciding rule of every tier (an Admin pass then a
/// NetworkPolicy allow, the NetworkPolicy tier's default deny, a Baseline deny), the self-check compares one in
/// two of the flows judged on the node (`--self-check-sample 2`), and `/metrics` counts the drops per rule from
/// the table's counters.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn the_flow_log_names_every_tier_and_the_drops_are_counted_per_rule() {
    use crate::dataplane::{connect, echo_server};
    require_root!();
    let p = prefix("agenttier");
    let _guard = LabGuard(p.clone());
    let yaml: &str = &format!("{}{B_FROM_C}{TIERED}", three_pods("10.81.0"));
    let cluster = netpol_core::load::load_str("c.yaml", yaml).cluster;
    let (lab, _) = netpol::lab_cmd::up(&cluster, &p, Vec::new()).unwrap();
    let node = lab.node_netns().to_string();
    let ns = |k: &str| lab.pod_netns(k).unwrap().to_string();
    let (b_ip, c_ip): (std::net::IpAddr, std::net::IpAddr) =
        ("10.81.0.2".parse().unwrap(), "10.81.0.3".parse().unwrap());
    for (pod, ip) in [("n/b", b_ip), ("n/c", c_ip)] {
        let listener = echo_server(&ns(pod), ip, 8088);
        std::thread::spawn(move || for _ in listener.incoming() {});
    }
    let dir = crate::common::tempdir();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, yaml).unwrap();
    let log = dir.path().join("flows.jsonl");
    let (f, l) = (file.display().to_string(), log.display().to_string());
    let mut agent = Command::new("ip")
        .args(["netns", "exec", &node, env!("CARGO_BIN_EXE_netpol"), "agent", "--node", "node-1", "-f", &f])
        .args(["--flow-log", &l, "--self-check", "--self-check-sample", "2", "--metrics-listen", "127.0.0.1:9464"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !tables(&ruleset(&node)).contains(&"netpol_trace".to_string()) && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(connect(&ns("n/c"), b_ip, 8088).is_ok(), "c -> b: passed by the Admin tier, allowed by b-from-c");
    assert!(connect(&ns("n/a"), b_ip, 8088).is_err(), "a -> b: b is isolated");
    assert!(connect(&ns("n/a"), c_ip, 8088).is_err(), "a -> c: the Baseline tier denies");
    std::thread::sleep(Duration::from_millis(700));
    let metrics = http_get(&node, 9464, "/metrics");
    agent.kill().unwrap();
    agent.wait().unwrap();

    // Drops per rule, from the kernel's counters.
    let baseline = "netpol_agent_drops_total{policy=\"cnp/baseline-deny\",direction=\"ingress\",rule=\"0\"}";
    assert!(metric_value(&metrics, baseline).is_some_and(|v| v >= 1.0), "{metrics}");
    let isolated =
        "netpol_agent_drops_total{policy=\"n/b-from-c,cnp/admin-pass\",direction=\"ingress\",rule=\"default\"}";
    assert!(metric_value(&metrics, isolated).is_some_and(|v| v >= 1.0), "{metrics}");
    assert!(metrics.contains("# TYPE netpol_agent_audit_drops_total counter"), "{metrics}");

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let record = |src: &str, dst: &str| -> &serde_json::Value {
        lines
            .iter()
            .find(|v| v["src"]["pod"] == src && v["dst"]["pod"] == dst && v["port"] == 8088)
            .unwrap_or_else(|| panic!("no {src} -> {dst}: {text}"))
    };
    let steps = |v: &serde_json::Value| -> Vec<(String, String, String)> {
        v["tiers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let policy = s["policy"].as_str().map(str::to_string).unwrap_or_else(|| s["policies"].to_string());
                (s["tier"].as_str().unwrap_or("?").to_string(), policy, s["action"].as_str().unwrap().to_string())
            })
            .collect()
    };
    let own = |v: &[(&str, &str, &str)]| -> Vec<(String, String, String)> {
        v.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect()
    };
    let c_b = record("c", "b");
    assert_eq!(steps(c_b), own(&[("Admin", "admin-pass", "pass"), ("NetworkPolicy", "n/b-from-c", "allow")]), "{text}");
    assert_eq!(c_b["tiers"][0]["kind"], "ClusterNetworkPolicy");
    assert_eq!(c_b["tiers"][0]["field"], "spec.ingress[0]");
    assert_eq!(c_b["verdict"], "allowed");
    assert_eq!(steps(record("a", "b")), own(&[("NetworkPolicy", "n/b-from-c", "deny")]), "{text}");
    assert_eq!(record("a", "b")["tiers"][0]["default"], true);
    assert_eq!(steps(record("a", "c")), own(&[("Baseline", "baseline-deny", "deny")]), "{text}");
    // One in two of the flows judged here is self-checked: the 1st, the 3rd, ...
    let judged: Vec<bool> = lines.iter().filter(|v| v["port"] == 8088).map(|v| v.get("self_check").is_some()).collect();
    assert!(judged.len() >= 3, "{text}");
    for (i, checked) in judged.iter().enumerate() {
        assert_eq!(*checked, i % 2 == 0, "record {i}: {text}");
    }
    assert!(lines.iter().filter_map(|v| v["self_check"].as_str()).all(|c| c == "agree"), "{text}");
    // Read back as `netpol flows replay` reads logs.
    let reader = netpol_input::flowlog::Reader::new(&l, std::io::Cursor::new(text.clone().into_bytes()), None);
    let records: Vec<_> = reader.collect::<Result<Vec<_>, _>>().unwrap();
    assert!(records.iter().any(|o| o.policies == ["baseline-deny"]), "{text}");

    // Audit mode: the Baseline rule logs and accepts; the flow log says what it would have done, and the would-be
    // drops are counted apart.
    let log = dir.path().join("flows-audit.jsonl");
    let l = log.display().to_string();
    let mut agent = Command::new("ip")
        .args(["netns", "exec", &node, env!("CARGO_BIN_EXE_netpol"), "agent", "--node", "node-1", "-f", &f])
        .args(["--mode", "audit", "--flow-log", &l, "--metrics-listen", "127.0.0.1:9464"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !log.exists() && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let audited = || {
        let rs = Command::new("ip").args(["netns", "exec", &node, "nft", "list", "table", "inet", "netpol"]).output();
        rs.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("netpol-audit"))
    };
    while !audited() && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(connect(&ns("n/a"), c_ip, 8088).is_ok(), "audit mode drops nothing");
    std::thread::sleep(Duration::from_millis(700));
    let metrics = http_get(&node, 9464, "/metrics");
    agent.kill().unwrap();
    agent.wait().unwrap();
    let series = "netpol_agent_audit_drops_total{policy=\"cnp/baseline-deny\",direction=\"ingress\",rule=\"0\"}";
    assert!(metric_value(&metrics, series).is_some_and(|v| v >= 1.0), "{metrics}");
    assert!(!metrics.contains("netpol_agent_drops_total{policy=\"cnp/baseline-deny\""), "{metrics}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let a_c = lines
        .iter()
        .find(|v| v["src"]["pod"] == "a" && v["dst"]["pod"] == "c" && v["port"] == 8088)
        .unwrap_or_else(|| panic!("no a -> c: {text}"));
    assert_eq!(a_c["audit"], true, "{text}");
    assert_eq!(steps(a_c), own(&[("Baseline", "baseline-deny", "deny")]), "{text}");
    assert_eq!(a_c["tiers"][0]["audit"], true, "{text}");
}

/// `--self-check-sample N` goes with `--self-check`, and N is at least 1: anything else is a usage error (exit 2).
#[test]
fn the_self_check_sample_needs_the_self_check_and_a_positive_n() {
    for extra in [&["--self-check-sample", "2"][..], &["--self-check", "--self-check-sample", "0"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_netpol"))
            .args(["agent", "--node", "node-1", "-f", "cluster.yaml", "--once"])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains("--self-check"), "{err}");
    }
}

/// `lab up --nodes 2 --agent`: one agent per node, each programming its node's share from the manifests; an edit of
/// the manifests reaches the kernels through the agents alone (across nodes and on one node), and `lab down` stops
/// them.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn a_multi_node_lab_runs_one_agent_per_node() {
    use crate::dataplane::{connect, echo_server};
    require_root!();
    let p = prefix("agentml");
    let _guard = LabGuard(p.clone());
    let cluster = "
apiVersion: v1
kind: Node
metadata: {name: n1}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n, labels: {app: a}}
spec: {nodeName: n1}
status: {podIP: 10.83.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n, labels: {app: b}}
spec: {nodeName: n2}
status: {podIP: 10.83.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: n, labels: {app: c}}
spec: {nodeName: n2}
status: {podIP: 10.83.0.3}
";
    let policy = "
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-c, namespace: n}
spec: {podSelector: {matchLabels: {app: b}}, ingress: [{from: [{podSelector: {matchLabels: {app: c}}}]}]}
";
    let dir = crate::common::tempdir();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, cluster).unwrap();
    let f = file.display().to_string();
    let exe = env!("CARGO_BIN_EXE_netpol");
    let o =
        Command::new(exe).args(["lab", "up", "-f", &f, "--nodes", "2", "--agent", "--prefix", &p]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    let pids: Vec<u32> = out
        .lines()
        .filter_map(|l| l.split("(pid ").nth(1)?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "{out}");
    let lab = netpol_lab::lab::Lab::attach(&netpol_nft::apply::System, &p).unwrap().unwrap();
    let ns = |k: &str| lab.pod_netns(k).unwrap().to_string();
    let b_ip: std::net::IpAddr = "10.83.0.2".parse().unwrap();
    let listener = echo_server(&ns("n/b"), b_ip, 8089);
    std::thread::spawn(move || for _ in listener.incoming() {});
    assert!(connect(&ns("n/a"), b_ip, 8089).is_ok(), "no policy yet: a (n1) reaches b (n2)");
    // The policy arrives in the manifests: only the agents program it.
    std::fs::write(&file, format!("{cluster}{policy}")).unwrap();
    let t = Instant::now();
    while connect(&ns("n/a"), b_ip, 8089).is_ok() {
        assert!(t.elapsed() < Duration::from_secs(15), "the agents did not program the new policy");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(connect(&ns("n/c"), b_ip, 8089).is_ok(), "c (on b's node) is allowed");
    // n1's agent checks a's egress only; n2's holds b's ingress rule.
    let n2 = lab.nodes().iter().find(|n| n.name == "n2").unwrap().netns.clone();
    assert!(ruleset(&n2).to_string().contains("b-from-c"));
    let n1 = lab.nodes().iter().find(|n| n.name == "n1").unwrap().netns.clone();
    assert!(!ruleset(&n1).to_string().contains("b-from-c"), "n1 holds no pod b-from-c selects");
    let o = Command::new(exe).args(["lab", "down", "--prefix", &p]).output().unwrap();
    assert!(o.status.success());
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z "), "agent {pid} still runs: {stat}");
    }
}

/// The agent's reading (`--cni netpol`, its default): a kubelet-like probe from the node's own address reaches a pod
/// whose ingress is denied, in the kernel too; another pod does not.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn a_nodes_own_probe_reaches_its_pods_in_the_kernel() {
    require_root!();
    let p = prefix("agentkp");
    let _guard = LabGuard(p.clone());
    let yaml = "
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.86.255.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: kubelet, namespace: kube-system}
spec: {nodeName: n1, hostNetwork: true}
status: {podIP: 10.86.255.1}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n, labels: {app: a}}
spec: {nodeName: n1, containers: [{name: a, ports: [{containerPort: 8080}]}]}
status: {podIP: 10.86.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n, labels: {app: b}}
spec: {nodeName: n1}
status: {podIP: 10.86.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: n}
spec: {podSelector: {matchLabels: {app: a}}, policyTypes: [Ingress]}
";
    let dir = crate::common::tempdir();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, yaml).unwrap();
    let flows = dir.path().join("flows.jsonl");
    std::fs::write(
        &flows,
        "{\"src\":\"kube-system/kubelet\",\"dst\":\"n/a\",\"port\":8080}\n{\"src\":\"n/b\",\"dst\":\"n/a\",\"port\":8080}\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["--cni", "netpol", "connectivity-test", "--prefix", &p, "-f"])
        .arg(&file)
        .arg("--flows")
        .arg(&flows)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((lines[0]["verdict"].as_str(), lines[0]["observed"].as_str()), (Some("allow"), Some("allow")), "{out}");
    assert_eq!((lines[1]["verdict"].as_str(), lines[1]["observed"].as_str()), (Some("deny"), Some("deny")), "{out}");
}

/// Live mode: the agent watches an API server (the fake one, through kube-rs) and programs its node: a policy
/// created through the API reaches the node's kernel, a deleted one leaves it; the time from the API write to the
/// program is printed.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn the_agent_follows_the_api_server() {
    use serde_json::json;
    use std::sync::atomic::Ordering;
    require_root!();
    let (_guard, ns) = node_namespace("agentlv");
    let server = netpol_fakeapi::FakeApiServer::start().unwrap();
    let dir = crate::common::tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n", "labels": {"kubernetes.io/metadata.name": "n"}}}));
    server.put(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}));
    for (name, ip, app) in [("a", "10.87.0.1", "a"), ("b", "10.87.0.2", "b")] {
        server.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "n", "labels": {"app": app}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}));
    }
    let programmer = std::sync::Arc::new(netpol_agent::Programmer::new(
        "n1",
        netpol_agent::Mode::Enforce,
        Box::new(netpol_nft::apply::System),
        Some(ns.clone()),
    ));
    let source = netpol_kube::Source::Kubeconfig { paths: vec![kubeconfig.clone()], context: None };
    let pr = programmer.clone();
    std::thread::spawn(move || {
        let _ = netpol_agent::run_live_blocking(&source, pr, None, None);
    });
    let generation = || programmer.metrics.generation.load(Ordering::Relaxed);
    let wait = |what: &str, check: &dyn Fn() -> bool| -> Duration {
        let t = Instant::now();
        while !check() {
            assert!(t.elapsed() < Duration::from_secs(20), "{what}: not programmed within 20 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        t.elapsed()
    };
    wait("the first list", &|| generation() >= 1);
    assert!(map_keys(&ruleset(&ns), "ingress_v4").is_empty());
    let before = generation();
    server.put(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "b-from-a", "namespace": "n"},
        "spec": {"podSelector": {"matchLabels": {"app": "b"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]}}));
    let took = wait("the new policy", &|| generation() > before);
    assert_eq!(map_keys(&ruleset(&ns), "ingress_v4"), ["10.87.0.2"]);
    eprintln!(
        "API write to programmed kernel: {took:?} (program {} µs)",
        programmer.metrics.last_program_micros.load(Ordering::Relaxed)
    );
    let before = generation();
    server.delete("NetworkPolicy", Some("n"), "b-from-a").unwrap();
    wait("the deleted policy", &|| generation() > before);
    assert!(map_keys(&ruleset(&ns), "ingress_v4").is_empty());
    // The way people change a cluster: kubectl, against the same API server.
    let kubectl_ok = Command::new("kubectl").arg("version").arg("--client").output().is_ok_and(|o| o.status.success());
    if !kubectl_ok {
        eprintln!("kubectl is not on PATH: the kubectl part is not checked");
        return;
    }
    let kubectl = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("KUBECACHEDIR", dir.path().join("kube-cache"))
            .env("HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    let before = generation();
    kubectl(
        &["apply", "-f", "-"],
        Some("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a-deny, namespace: \"n\"}\nspec: {podSelector: {matchLabels: {app: a}}, policyTypes: [Ingress]}\n"),
    );
    wait("kubectl apply", &|| generation() > before);
    assert_eq!(map_keys(&ruleset(&ns), "ingress_v4"), ["10.87.0.1"]);
    // Relabelled: a no longer matches the policy.
    let before = generation();
    kubectl(&["label", "pod", "a", "-n", "n", "app=other", "--overwrite"], None);
    wait("kubectl label", &|| generation() > before);
    assert!(map_keys(&ruleset(&ns), "ingress_v4").is_empty());
    kubectl(&["delete", "networkpolicy", "a-deny", "-n", "n"], None);
}

/// A Service in front of a pod, as kube-proxy's iptables and nftables modes make it (DNAT in the node's prerouting):
/// the agent's checks run after the translation, on the backend pod, so the backend's ingress policy decides
/// connections to the Service address.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn service_traffic_is_judged_on_the_backend_pod_after_dnat() {
    use crate::dataplane::{connect, echo_server};
    require_root!();
    let p = prefix("agentsv");
    let _guard = LabGuard(p.clone());
    let yaml: &str = &format!("{}{B_FROM_C}", three_pods("10.88.0"));
    let cluster = netpol_core::load::load_str("c.yaml", yaml).cluster;
    let (lab, _) = netpol::lab_cmd::up(&cluster, &p, Vec::new()).unwrap();
    let node = lab.node_netns().to_string();
    let ns = |k: &str| lab.pod_netns(k).unwrap().to_string();
    let listener = echo_server(&ns("n/b"), "10.88.0.2".parse().unwrap(), 8090);
    std::thread::spawn(move || for _ in listener.incoming() {});
    // kube-proxy's part: Service 10.96.88.10:80 -> b:8090, in the node's prerouting (its own table).
    let nat = "table ip kproxy {\n chain pre {\n  type nat hook prerouting priority dstnat; policy accept;\n  ip daddr 10.96.88.10 tcp dport 80 dnat to 10.88.0.2:8090\n }\n}\n";
    let mut child =
        Command::new("ip").args(["netns", "exec", &node, "nft", "-f", "-"]).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), nat.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    // The pods route the Service address to their node like any other.
    for k in ["n/a", "n/c"] {
        ip(&["-n", &ns(k), "route", "add", "10.96.88.10/32", "via", "169.254.1.1", "dev", "eth0", "onlink"]);
    }
    program_once(&node, yaml, &[]);
    let svc: std::net::IpAddr = "10.96.88.10".parse().unwrap();
    assert!(connect(&ns("n/c"), svc, 80).is_ok(), "c reaches b through the Service");
    assert!(connect(&ns("n/a"), svc, 80).is_err(), "b's ingress denies a, through the Service too");
}

/// A pod isolated for egress, even with a policy letting it send anything anywhere, may not send VXLAN (UDP 4789)
/// itself: the node drops it before the policy checks (the rule's counter shows it); ordinary UDP goes through.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn an_isolated_pod_cannot_send_its_own_vxlan() {
    require_root!();
    let p = prefix("agentvx");
    let _guard = LabGuard(p.clone());
    let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n, labels: {app: a}}
spec: {nodeName: node-1}
status: {podIP: 10.89.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n, labels: {app: b}}
spec: {nodeName: node-1}
status: {podIP: 10.89.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-anywhere, namespace: n}
spec: {podSelector: {matchLabels: {app: a}}, policyTypes: [Egress], egress: [{}]}
";
    let cluster = netpol_core::load::load_str("c.yaml", yaml).cluster;
    let (lab, _) = netpol::lab_cmd::up(&cluster, &p, Vec::new()).unwrap();
    let node = lab.node_netns().to_string();
    program_once(&node, yaml, &[]);
    let (a_ns, b_ns) = (lab.pod_netns("n/a").unwrap().to_string(), lab.pod_netns("n/b").unwrap().to_string());
    let b: std::net::SocketAddr = "10.89.0.2:0".parse().unwrap();
    let receive = |port: u16| -> bool {
        let rx = netpol_lab::probe::in_netns(&b_ns, move || {
            let s = std::net::UdpSocket::bind(std::net::SocketAddr::new(b.ip(), port)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
            s
        })
        .unwrap();
        netpol_lab::probe::in_netns(&a_ns, move || {
            let s = std::net::UdpSocket::bind("10.89.0.1:0").unwrap();
            s.send_to(b"x", std::net::SocketAddr::new(b.ip(), port)).unwrap();
        })
        .unwrap();
        let mut buf = [0u8; 4];
        rx.recv_from(&mut buf).is_ok()
    };
    assert!(receive(5000), "ordinary UDP is allowed (a may send anything)");
    assert!(!receive(4789), "a pod's own VXLAN is dropped");
    let o = Command::new("ip")
        .args(["netns", "exec", &node, "nft", "list", "chain", "inet", "netpol", "forward"])
        .output()
        .unwrap();
    let chain = String::from_utf8_lossy(&o.stdout);
    let rule = chain.lines().find(|l| l.contains("8472") && l.contains("encapsulation")).unwrap();
    assert!(rule.contains("counter packets 1 "), "{chain}");
}

/// Benchmark (ignored; run as root with `cargo test --release -p netpol --test it agent::new_connections_per_second
/// -- --ignored --nocapture`): new TCP connections per second from one pod to another through the node, with no
/// ruleset and with the agent's (the destination isolated, the source allowed by a selector), 3 s each.
#[test]
#[ignore = "a benchmark: prints new connections per second with and without the agent's ruleset"]
fn new_connections_per_second() {
    use crate::dataplane::{connect, echo_server};
    require_root!();
    let p = prefix("agentcps");
    let _guard = LabGuard(p.clone());
    let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n, labels: {app: a}}
spec: {nodeName: node-1}
status: {podIP: 10.90.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n, labels: {app: b}}
spec: {nodeName: node-1}
status: {podIP: 10.90.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-a, namespace: n}
spec: {podSelector: {matchLabels: {app: b}}, ingress: [{from: [{podSelector: {matchLabels: {app: a}}}], ports: [{port: 8091}]}]}
";
    let cluster = netpol_core::load::load_str("c.yaml", yaml).cluster;
    let (lab, _) = netpol::lab_cmd::up(&cluster, &p, Vec::new()).unwrap();
    let node = lab.node_netns().to_string();
    let (a_ns, b_ns) = (lab.pod_netns("n/a").unwrap().to_string(), lab.pod_netns("n/b").unwrap().to_string());
    let b: std::net::IpAddr = "10.90.0.2".parse().unwrap();
    let listener = echo_server(&b_ns, b, 8091);
    std::thread::spawn(move || {
        for c in listener.incoming() {
            drop(c)
        }
    });
    let rate = || -> f64 {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < Duration::from_secs(3) {
            drop(connect(&a_ns, b, 8091).expect("connect"));
            n += 1;
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    // No ruleset at all.
    let o =
        Command::new("ip").args(["netns", "exec", &node, "nft", "delete", "table", "inet", "netpol"]).output().unwrap();
    assert!(o.status.success());
    let none = rate();
    program_once(&node, yaml, &[]);
    let with = rate();
    println!(
        "new TCP connections per second, pod to pod through the node: {none:.0} without a ruleset, {with:.0} with the agent's ({:.0}%)",
        100.0 * with / none
    );
}

/// `--netns`: the agent stays in the host's namespace (where it reaches the API server) and programs a node's.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn the_agent_programs_another_namespace_from_the_api_server() {
    use serde_json::json;
    require_root!();
    let (_guard, ns) = node_namespace("agentnn");
    let server = netpol_fakeapi::FakeApiServer::start().unwrap();
    let dir = crate::common::tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}));
    server.put(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "n", "labels": {"app": "a"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]}, "status": {"podIP": "10.91.0.1"}}),
    );
    server.put(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": "n"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}));
    let o = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["agent", "--node", "n1", "--netns", &ns, "--once", "--kubeconfig"])
        .arg(&kubeconfig)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(map_keys(&ruleset(&ns), "ingress_v4"), ["10.91.0.1"]);
}

/// `lab up --nodes 2 --agent --kubeconfig-out`: the lab serves the cluster from an API server of its own, and one
/// agent per node watches it; a NetworkPolicy created through the API (a plain HTTP POST, as any client sends it)
/// reaches both nodes' kernels; `lab down` stops the server and the agents.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn a_lab_s_agents_watch_its_api_server() {
    use crate::agent_lab::{cluster, LiveLab, JSON};
    use crate::dataplane::{connect, echo_server};
    require_root!();
    let pods = [("a", "n1", "10.92.0.1", "a"), ("b", "n2", "10.92.0.2", "b")];
    let live = LiveLab::up("agentapi", &cluster(&pods, ""), 2);
    let p = live.prefix.clone();
    let pids: Vec<u32> = std::iter::once(live.api_pid).chain(live.agents.iter().map(|a| a.1)).collect();
    assert_eq!(pids.len(), 3, "the API server and two agents");
    let b_ip: std::net::IpAddr = "10.92.0.2".parse().unwrap();
    let listener = echo_server(&live.netns("n/b"), b_ip, 8092);
    std::thread::spawn(move || for _ in listener.incoming() {});
    assert!(connect(&live.netns("n/a"), b_ip, 8092).is_ok(), "no policy yet");
    // Create a NetworkPolicy through the API server.
    let body = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny-b","namespace":"n"},"spec":{"podSelector":{"matchLabels":{"app":"b"}},"policyTypes":["Ingress"]}}"#;
    let (code, answer) = live.api("POST", "/apis/networking.k8s.io/v1/namespaces/n/networkpolicies", JSON, body);
    assert_eq!(code, 201, "{answer}");
    let t = Instant::now();
    while connect(&live.netns("n/a"), b_ip, 8092).is_ok() {
        assert!(t.elapsed() < Duration::from_secs(20), "the agents did not program the policy created through the API");
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = Command::new(env!("CARGO_BIN_EXE_netpol")).args(["lab", "down", "--prefix", &p]).output().unwrap();
    assert!(o.status.success());
    // Nothing of the lab is left: no log, no pid file.
    let left: Vec<String> = std::fs::read_dir(netpol_lab::lab::STATE_DIR)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{p}.")))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::thread::sleep(Duration::from_millis(300));
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z "), "process {pid} still runs: {stat}");
    }
}
