//! The node agents of a multi-node lab, changed through the lab's API server the way a cluster is changed (root,
//! nftables): `netpol lab up --nodes 2 --agent --kubeconfig-out` starts the API server and one `netpol agent`
//! process per node; every check is a real connection between the nodes' pods.
//!
//! - Changes through the API (HTTP writes, as kubectl sends them): a policy created, a pod relabelled, deleted and
//!   created again; revocation of an established connection timed from the API server's answer to the write.
//! - A new pod before and after its node's agent learns it (closed, then open), and the delay metric.
//! - An agent killed (SIGKILL) at different points of an update: the kernel keeps its last ruleset, closed stays
//!   closed, a restarted agent keeps it until its first full list replaces it, then catches up.
//! - The API server's history compacted and its watches dropped (SIGUSR1 to the lab's API server): the agents get
//!   `410 Gone`, relist, and enforce the changes made meanwhile; watches dropped alone (SIGUSR2).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::dataplane::{connect, echo_server, prefix, skip_reason, LabGuard};

macro_rules! require_root {
    () => {
        if let Some(why) = skip_reason() {
            panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
        }
    };
}

/// A process the test started itself (a restarted agent): killed when dropped.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running multi-node lab with its API server and agents, removed when dropped.
pub(crate) struct LiveLab {
    pub(crate) prefix: String,
    /// The manifests the lab's API server serves (read again on SIGHUP).
    pub(crate) file: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
    server: String,
    pub(crate) api_pid: u32,
    /// (node, pid, metrics address) of each agent, in node order.
    pub(crate) agents: Vec<(String, u32, SocketAddr)>,
    pub(crate) lab: netpol_lab::lab::Lab,
    _dir: tempfile::TempDir,
    _guard: LabGuard,
}

impl LiveLab {
    pub(crate) fn up(tag: &str, cluster: &str, nodes: usize) -> LiveLab {
        let prefix = prefix(tag);
        let guard = LabGuard(prefix.clone());
        let dir = crate::common::tempdir();
        let file = dir.path().join("cluster.yaml");
        std::fs::write(&file, cluster).unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let o = Command::new(env!("CARGO_BIN_EXE_netpol"))
            .args(["lab", "up", "--nodes", &nodes.to_string(), "--agent", "--prefix", &prefix, "-f"])
            .arg(&file)
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
        let pid_of = |l: &str| -> u32 {
            let rest = l.split("(pid ").nth(1).unwrap();
            rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
        };
        let api_pid = out.lines().find(|l| l.starts_with("API server started")).map(pid_of).expect(&out);
        let agents: Vec<(String, u32, SocketAddr)> = out
            .lines()
            .filter_map(|l| {
                let node = l.strip_prefix("agent of node ")?.split(' ').next()?.to_string();
                let addr = l.split("metrics http://").nth(1)?.trim_end_matches(')').trim_end_matches("/metrics");
                Some((node, pid_of(l), addr.parse().unwrap()))
            })
            .collect();
        assert_eq!(agents.len(), nodes, "{out}");
        let config: serde_json::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&kubeconfig).unwrap()).unwrap();
        let server = config["clusters"][0]["cluster"]["server"].as_str().unwrap().trim_start_matches("http://").into();
        let lab = netpol_lab::lab::Lab::attach(&netpol_nft::apply::System, &prefix).unwrap().unwrap();
        let live = LiveLab { prefix, file, kubeconfig, server, api_pid, agents, lab, _dir: dir, _guard: guard };
        for (node, _, addr) in &live.agents {
            wait(&format!("agent of {node} ready"), Duration::from_secs(30), || {
                get(*addr, "/healthz").is_some_and(|(code, _)| code == 200)
            });
        }
        live
    }

    pub(crate) fn netns(&self, pod: &str) -> String {
        self.lab.pod_netns(pod).unwrap().to_string()
    }

    pub(crate) fn node_netns(&self, node: &str) -> String {
        self.lab.nodes().iter().find(|n| n.name == node).unwrap().netns.clone()
    }

    /// One request to the lab's API server: (status, body as JSON or null).
    pub(crate) fn api(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, serde_json::Value) {
        let (code, text) = http(self.server.parse().unwrap(), method, path, content_type, body);
        (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// A write that must succeed; its resourceVersion.
    pub(crate) fn write(&self, method: &str, path: &str, content_type: &str, body: &str) -> u64 {
        let (code, v) = self.api(method, path, content_type, body);
        assert!((200..300).contains(&code), "{method} {path}: {code} {v}");
        v["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
    }

    /// Waits until every agent's kernel reflects revision `rv` (`netpol_agent_synced_resource_version`).
    pub(crate) fn wait_synced(&self, rv: u64) {
        for (node, _, addr) in &self.agents {
            self.wait_agent_synced(node, *addr, rv);
        }
    }

    fn wait_agent_synced(&self, node: &str, addr: SocketAddr, rv: u64) {
        wait(&format!("agent of {node} synced to {rv}"), Duration::from_secs(30), || {
            metric(addr, "netpol_agent_synced_resource_version").is_some_and(|v| v >= rv as f64)
        });
    }

    /// The agent command line `lab up` uses for `node`, metrics on `metrics`.
    fn agent_command(&self, node: &str, metrics: SocketAddr) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_netpol"));
        cmd.args(["agent", "--node", node, "--netns", &self.node_netns(node), "--pod-interface", "v*", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args(["--metrics-listen", &metrics.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    }
}

pub(crate) fn wait(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !check() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    t.elapsed()
}

/// A plain HTTP/1.1 request: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let code = answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    // The fake API server answers with chunked bodies: keep the JSON between the chunk sizes.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if a < b => body[a..=b].to_string(),
        _ => body,
    };
    (code, body)
}

fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    Some(http(addr, "GET", path, "text/plain", ""))
}

/// The sum of a metric's samples (every label set) on an agent's `/metrics`; `None` when it cannot be read.
fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let (code, text) = get(addr, "/metrics")?;
    if code != 200 {
        return None;
    }
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ') || r.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// An echo server (one byte at a time) on `ip:port` in `netns`.
fn byte_echo(netns: &str, ip: IpAddr, port: u16) {
    let listener = echo_server(netns, ip, port);
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
}

/// One byte there and back within `timeout`.
fn roundtrip(s: &mut TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut x = [0u8; 1];
    s.write_all(b"x").is_ok() && matches!(s.read(&mut x), Ok(1))
}

fn pod_json(name: &str, node: &str, ip: &str, app: &str) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "n", "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}]}})
    .to_string()
}

fn ingress_policy(name: &str, to: &str, from: &str) -> String {
    serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "n"},
        "spec": {"podSelector": {"matchLabels": {"app": to}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": from}}}]}]}})
    .to_string()
}

const NP: &str = "/apis/networking.k8s.io/v1/namespaces/n/networkpolicies";
const PODS: &str = "/api/v1/namespaces/n/pods";
pub(crate) const JSON: &str = "application/json";

/// Namespace n, Nodes n1 and n2, and `pods` (name, node, address, app).
pub(crate) fn cluster(pods: &[(&str, &str, &str, &str)], extra: &str) -> String {
    let mut s = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: n, labels: {kubernetes.io/metadata.name: n}}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n2}\n",
    );
    for (name, node, ip, app) in pods {
        s += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: n, labels: {{app: {app}}}}}\n\
             spec: {{nodeName: {node}, containers: [{{name: c, image: x}}]}}\nstatus: {{podIP: {ip}}}\n"
        );
    }
    s + extra
}

/// Policy, label, delete and create through the API server; revocation timed from the API's answer to the write;
/// a new pod closed until its node's agent learns it, and the delay metric.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn api_changes_reach_every_node_revoke_in_time_and_new_pods_open_once_learned() {
    require_root!();
    let pods = [("a", "n1", "10.93.0.1", "a"), ("c", "n1", "10.93.0.3", "c"), ("b", "n2", "10.93.0.2", "b")];
    let live = LiveLab::up("agapi", &cluster(&pods, ""), 2);
    let b: IpAddr = "10.93.0.2".parse().unwrap();
    byte_echo(&live.netns("n/b"), b, 8093);
    let fast = Duration::from_millis(700);
    let mut from_a = connect(&live.netns("n/a"), b, 8093).expect("a reaches b across the nodes");
    let mut from_c = connect(&live.netns("n/c"), b, 8093).expect("c reaches b");
    assert!(roundtrip(&mut from_a, fast) && roundtrip(&mut from_c, fast));

    // b takes only c: a's established connection is cut, timed from the API server's answer to the write.
    let rv = live.write("POST", NP, JSON, &ingress_policy("b-from-c", "b", "c"));
    let t = Instant::now();
    let mut cut = None;
    while t.elapsed() < Duration::from_secs(10) {
        let at = t.elapsed();
        if !roundtrip(&mut from_a, Duration::from_millis(30)) {
            cut = Some(at);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let n2 = live.agents.iter().find(|a| a.0 == "n2").unwrap().2;
    let Some(cut) = cut else {
        // What n2's agent says of itself, to tell a missed event from a missed revocation.
        let said: Vec<String> = [
            "netpol_agent_synced_resource_version",
            "netpol_agent_ruleset_generation",
            "netpol_agent_program_errors_total",
            "netpol_agent_revoked_connections_total",
            "netpol_agent_revoke_errors_total",
        ]
        .iter()
        .map(|m| format!("{m} {:?}", metric(n2, m)))
        .collect();
        panic!("a's established connection outlived the policy that denies it (written at {rv}); n2: {said:?}");
    };
    live.wait_agent_synced("n2", n2, rv);
    eprintln!(
        "revocation of an established connection, from the API server's answer to the cut: {cut:?} (n2's agent: \
         event to kernel {:.1} ms, revocation pass {:.1} ms)",
        metric(n2, "netpol_agent_event_to_kernel_seconds").unwrap() * 1e3,
        metric(n2, "netpol_agent_revoke_duration_seconds").unwrap() * 1e3
    );
    assert!(metric(n2, "netpol_agent_revoked_connections_total").unwrap() >= 1.0);
    assert!(roundtrip(&mut from_c, fast), "c's allowed connection was cut");
    assert!(connect(&live.netns("n/a"), b, 8093).is_err(), "a still opens connections to b");

    // a relabelled `app: c` (a merge patch, as `kubectl label` sends): b takes it again.
    let rv = live.write(
        "PATCH",
        &format!("{PODS}/a"),
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"app":"c"}}}"#,
    );
    live.wait_synced(rv);
    assert!(connect(&live.netns("n/a"), b, 8093).is_ok(), "a, relabelled, cannot reach b");

    // c deleted from the API while its sandbox stays (as between a CNI ADD and the API showing the pod): n1's
    // agent no longer knows its address, and its traffic is dropped there (fail closed).
    let (code, _) = live.api("DELETE", &format!("{PODS}/c"), JSON, "");
    assert_eq!(code, 200);
    let rv: u64 = live.api("GET", "/api/v1/namespaces", JSON, "").1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    live.wait_synced(rv);
    let n1 = live.agents.iter().find(|a| a.0 == "n1").unwrap().2;
    let delays_before = metric(n1, "netpol_agent_new_pod_delay_seconds_count").unwrap();
    assert!(connect(&live.netns("n/c"), b, 8093).is_err(), "a pod its node's agent does not know got through");
    // Created again: open once n1's agent has programmed it.
    let created = Instant::now();
    live.write("POST", PODS, JSON, &pod_json("c", "n1", "10.93.0.3", "c"));
    let mut opened = None;
    while created.elapsed() < Duration::from_secs(10) {
        if connect(&live.netns("n/c"), b, 8093).is_ok() {
            opened = Some(created.elapsed());
            break;
        }
    }
    let opened = opened.expect("the new pod did not get through once its agent knew it");
    let delays = metric(n1, "netpol_agent_new_pod_delay_seconds_count").unwrap();
    assert_eq!(delays, delays_before + 1.0, "the new pod's delay is observed once");
    eprintln!(
        "new pod: open {opened:?} after the API's answer (includes probe timeouts); n1's delay metric: {:.1} ms",
        metric(n1, "netpol_agent_new_pod_delay_seconds_sum").unwrap() * 1e3
    );
}

/// An agent killed at different points of an update leaves its node closed; restarted, it keeps the last
/// ruleset until its first full list replaces it; the API server's compaction (410 Gone) and dropped watches make
/// the agents relist or watch again, and they enforce what changed meanwhile.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn killed_agents_and_lost_watches_never_open_what_was_closed() {
    require_root!();
    let pods = [("a", "n1", "10.94.0.1", "a"), ("d", "n1", "10.94.0.4", "d"), ("b", "n2", "10.94.0.2", "b")];
    let policy = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b-from-a, namespace: n}\n\
                  spec: {podSelector: {matchLabels: {app: b}}, ingress: [{from: [{podSelector: {matchLabels: {app: a}}}]}]}\n";
    let live = LiveLab::up("agkill", &cluster(&pods, policy), 2);
    let b: IpAddr = "10.94.0.2".parse().unwrap();
    byte_echo(&live.netns("n/b"), b, 8094);
    let (a_ns, d_ns, n2_ns) = (live.netns("n/a"), live.netns("n/d"), live.node_netns("n2"));
    let closed = |why: &str| {
        assert!(connect(&d_ns, b, 8094).is_err(), "d reached b: {why}");
        assert!(connect(&a_ns, b, 8094).is_ok(), "a cannot reach b: {why}");
    };
    let table_there = || {
        Command::new("ip")
            .args(["netns", "exec", &n2_ns, "nft", "list", "table", "inet", "netpol"])
            .output()
            .unwrap()
            .status
            .success()
    };
    closed("before any fault");
    let mut restarted: Vec<Child> = Vec::new();
    let (_, mut n2_pid, mut n2_metrics) = live.agents.iter().find(|a| a.0 == "n2").cloned().unwrap();
    // Changes that rewrite n2's ruleset (a policy for an `x` nobody has, created and deleted) and n2's agent killed
    // 0, 5, 10, 20 ms after each was written: whatever it was doing, b stays closed to d and open to a.
    for (i, delay) in [0u64, 5, 10, 20].into_iter().enumerate() {
        let name = format!("b-from-x{i}");
        live.write("POST", NP, JSON, &ingress_policy(&name, "b", "x"));
        std::thread::sleep(Duration::from_millis(delay));
        let _ = Command::new("kill").args(["-KILL", &n2_pid.to_string()]).status();
        std::thread::sleep(Duration::from_millis(50));
        assert!(table_there(), "the agent's death removed its table");
        closed(&format!("n2's agent killed {delay} ms after a write"));
        live.api("DELETE", &format!("{NP}/{name}"), JSON, "");
        // Restarted: until its first full list is programmed, the last ruleset stays.
        n2_metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let child = live.agent_command("n2", n2_metrics).spawn().unwrap();
        n2_pid = child.id();
        // `lab down` stops it too, should this test fail before it does.
        let pids = format!("{}/{}.pids", netpol_lab::lab::STATE_DIR, live.prefix);
        let mut f = std::fs::OpenOptions::new().append(true).open(&pids).unwrap();
        writeln!(f, "{n2_pid}").unwrap();
        restarted.push(Child(child));
        assert!(table_there());
        closed("while the restarted agent lists the cluster");
        wait("the restarted agent's first program", Duration::from_secs(30), || {
            get(n2_metrics, "/healthz").is_some_and(|(code, _)| code == 200)
        });
        // Its first program is from a list made after the write and its deletion.
        closed("after the restarted agent's first program");
    }
    let agents: Vec<(String, SocketAddr)> = live
        .agents
        .iter()
        .map(|(node, _, addr)| (node.clone(), if node == "n2" { n2_metrics } else { *addr }))
        .collect();
    let synced = |rv: u64| {
        for (node, addr) in &agents {
            live.wait_agent_synced(node, *addr, rv);
        }
    };
    let lists = || -> f64 { agents.iter().map(|(_, a)| metric(*a, "netpol_watch_lists_total").unwrap()).sum() };
    // The restarted agent follows the API: b takes d too.
    let rv = live.write("POST", NP, JSON, &ingress_policy("b-from-d", "b", "d"));
    synced(rv);
    assert!(connect(&d_ns, b, 8094).is_ok(), "the restarted agent did not follow the API");

    // History compacted and watches dropped: every agent watches again from a revision the server no longer has,
    // gets 410 Gone, lists again, and enforces the change written meanwhile.
    let lists_before = lists();
    let _ = Command::new("kill").args(["-USR1", &live.api_pid.to_string()]).status();
    std::thread::sleep(Duration::from_millis(100));
    let (code, _) = live.api("DELETE", &format!("{NP}/b-from-d"), JSON, "");
    assert_eq!(code, 200);
    // A deletion found by a relist leaves no resourceVersion behind: watched in the kernel instead.
    wait("the deletion found by the relist", Duration::from_secs(30), || connect(&d_ns, b, 8094).is_err());
    closed("after the relist");
    wait("the agents' relists", Duration::from_secs(30), || lists() > lists_before);
    let log = std::fs::read_to_string(format!("{}/{}.api.log", netpol_lab::lab::STATE_DIR, live.prefix)).unwrap();
    assert!(log.contains("SIGUSR1: history compacted"), "{log}");

    // Watches dropped alone: the agents watch again from where they were.
    let _ = Command::new("kill").args(["-USR2", &live.api_pid.to_string()]).status();
    std::thread::sleep(Duration::from_millis(100));
    let rv = live.write("POST", NP, JSON, &ingress_policy("b-from-d", "b", "d"));
    synced(rv);
    assert!(connect(&d_ns, b, 8094).is_ok(), "a change after the dropped watches was not enforced");
}
