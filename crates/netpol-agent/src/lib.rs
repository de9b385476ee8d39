//! netpol's node agent: one per node (a DaemonSet), each enforcing its node's share of the cluster's policies in
//! that node's kernel.
//!
//! The agent lists and watches the cluster through `netpol-kube` (the same live source `netpol serve` uses, every
//! dialect the engine reads), and every model the live source publishes is programmed ([`Programmer::program`]):
//! the node's ruleset ([`netpol_nft::ruleset::generate_for_node`]: the egress checks of the pods on the node, the
//! ingress checks of the pods on the node, with peer sets from the whole cluster) replaces the agent's own
//! `table inet netpol` in one nft transaction. Nothing else is touched: no other table, no interface, no route.
//!
//! What the kernel holds stays until the next program replaces it: a restarted agent leaves the last ruleset in
//! place until its first full list is programmed, and an agent that dies never opens what was closed.
//!
//! In audit mode ([`Mode::Audit`], [`netpol_nft::ruleset::Ruleset::audit`]) the same checks count and log what
//! they would drop, and drop nothing.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use netpol_core::compile::Engine;
use netpol_nft::apply::{nft_apply, ApplyError, Runner};
use netpol_nft::ruleset::{generate_for_node_with, NodeOptions};

/// What the agent does with what the policies deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Drop it (and reject where a rule says Reject).
    Enforce,
    /// Count and log it (prefix `netpol-audit`), drop nothing.
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// The agent's counters and gauges, as Prometheus exposes them ([`Metrics::write`]).
#[derive(Default)]
pub struct Metrics {
    /// Rulesets programmed (each one nft transaction).
    pub generation: AtomicU64,
    /// Models received (programmed or found unchanged).
    pub models: AtomicU64,
    pub program_errors: AtomicU64,
    /// Microseconds the last program took (ruleset generation and the nft transaction).
    pub last_program_micros: AtomicU64,
    /// Sum of every program's microseconds.
    pub program_micros_total: AtomicU64,
    /// Unix time of the last successful program (0: none yet).
    pub last_success_unix: AtomicU64,
    /// Size of the programmed ruleset.
    pub rules: AtomicU64,
    pub set_elements: AtomicU64,
    /// Pods of this node with an address, in the programmed model.
    pub local_pods: AtomicU64,
}

fn metric(s: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

impl Metrics {
    /// Appends the metrics in Prometheus's text format.
    pub fn write(&self, node: &str, mode: Mode, s: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "# HELP netpol_agent_info The agent's node and mode.\n# TYPE netpol_agent_info gauge\nnetpol_agent_info{{node=\"{}\",mode=\"{}\"}} 1",
            node.replace(['"', '\\', '\n'], "_"),
            mode.as_str()
        );
        metric(
            s,
            "netpol_agent_ruleset_generation",
            "counter",
            "Rulesets programmed (nft transactions).",
            get(&self.generation),
        );
        metric(s, "netpol_agent_models_total", "counter", "Models of the cluster received.", get(&self.models));
        metric(
            s,
            "netpol_agent_program_errors_total",
            "counter",
            "Programs the kernel refused.",
            get(&self.program_errors),
        );
        metric(
            s,
            "netpol_agent_program_duration_seconds",
            "gauge",
            "Seconds the last program took (ruleset and nft transaction).",
            get(&self.last_program_micros) as f64 / 1e6,
        );
        metric(
            s,
            "netpol_agent_program_seconds_total",
            "counter",
            "Seconds spent programming.",
            get(&self.program_micros_total) as f64 / 1e6,
        );
        metric(
            s,
            "netpol_agent_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful program (0: none yet).",
            get(&self.last_success_unix),
        );
        metric(s, "netpol_agent_ruleset_rules", "gauge", "Rules in the programmed ruleset.", get(&self.rules));
        metric(
            s,
            "netpol_agent_ruleset_set_elements",
            "gauge",
            "Set and map elements in the programmed ruleset.",
            get(&self.set_elements),
        );
        metric(
            s,
            "netpol_agent_local_pods",
            "gauge",
            "Pods of this node with an address in the model.",
            get(&self.local_pods),
        );
    }
}

/// What one program did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Programmed {
    /// A new ruleset was committed.
    Applied,
    /// The node's ruleset is the one already programmed: no transaction.
    Unchanged,
}

/// Programs one node's ruleset into the kernel.
pub struct Programmer {
    node: String,
    mode: Mode,
    /// What the node's ruleset knows beyond the model (the pods' interfaces, to fail closed).
    options: NodeOptions,
    runner: Box<dyn Runner + Send + Sync>,
    /// The network namespace to program (`None`: the agent's own, the host's on a real node).
    netns: Option<String>,
    /// The last script committed.
    last: Mutex<Option<String>>,
    pub metrics: Metrics,
}

impl Programmer {
    pub fn new(node: &str, mode: Mode, runner: Box<dyn Runner + Send + Sync>, netns: Option<String>) -> Programmer {
        Programmer {
            node: node.to_string(),
            mode,
            options: NodeOptions::default(),
            runner,
            netns,
            last: Mutex::new(None),
            metrics: Metrics::default(),
        }
    }

    /// Fails closed for pods of the node the model does not have yet: forwarded traffic from or to an interface
    /// matching one of `patterns` (`veth*`, `cali*`; nft's trailing `*`) with an address that is no known pod of
    /// the node is dropped until a program includes it.
    pub fn with_pod_interfaces(mut self, patterns: Vec<String>) -> Programmer {
        self.options.pod_interfaces = patterns;
        self
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The script that programs `engine`'s policies for this node (replacing the agent's table in one
    /// transaction).
    pub fn script(&self, engine: &Engine) -> (String, (usize, usize)) {
        let mut rs = generate_for_node_with(engine, &self.node, &self.options);
        if self.mode == Mode::Audit {
            rs = rs.audit();
        }
        let size = rs.size();
        (rs.replace_script(), size)
    }

    /// Programs `engine`'s policies for this node, unless the kernel already holds them.
    pub fn program(&self, engine: &Engine) -> Result<Programmed, ApplyError> {
        let t = Instant::now();
        self.metrics.models.fetch_add(1, Ordering::Relaxed);
        let local = engine
            .cluster()
            .pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(self.node.as_str()) && !p.ips.is_empty())
            .count();
        let (script, (rules, elements)) = self.script(engine);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() == Some(script.as_str()) {
            return Ok(Programmed::Unchanged);
        }
        if let Err(e) = nft_apply(self.runner.as_ref(), self.netns.as_deref(), &script) {
            self.metrics.program_errors.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        *last = Some(script);
        let micros = t.elapsed().as_micros() as u64;
        let m = &self.metrics;
        m.generation.fetch_add(1, Ordering::Relaxed);
        m.last_program_micros.store(micros, Ordering::Relaxed);
        m.program_micros_total.fetch_add(micros, Ordering::Relaxed);
        m.rules.store(rules as u64, Ordering::Relaxed);
        m.set_elements.store(elements as u64, Ordering::Relaxed);
        m.local_pods.store(local as u64, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        m.last_success_unix.store(now, Ordering::Relaxed);
        tracing::info!(node = %self.node, rules, elements, local_pods = local, micros, "programmed");
        Ok(Programmed::Applied)
    }

    /// Whether a ruleset was programmed since the agent started (readiness).
    pub fn ready(&self) -> bool {
        self.metrics.generation.load(Ordering::Relaxed) > 0
    }
}

/// The live source's sink: every published model is programmed.
struct Sink {
    programmer: Arc<Programmer>,
    revision: AtomicU64,
}

impl netpol_kube::Publish for Sink {
    fn publish(&self, update: netpol_kube::Update) -> u64 {
        if let Err(e) = self.programmer.program(&update.engine) {
            // The last ruleset stays in place; the next model tries again.
            tracing::error!(node = %self.programmer.node, "cannot program the ruleset: {e}");
        }
        self.revision.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn advance(&self, _resource_versions: String) {}
}

/// Watches the cluster and programs every model, until the task is dropped.
pub async fn run_live(
    source: &netpol_kube::Source,
    programmer: Arc<Programmer>,
    cni: Option<netpol_core::cni::Cni>,
    live: Arc<netpol_kube::LiveMetrics>,
) -> anyhow::Result<()> {
    let (client, server) = source.client().await?;
    tracing::info!(node = %programmer.node, %server, mode = programmer.mode.as_str(), "watching the cluster");
    let sink = Sink { programmer, revision: AtomicU64::new(0) };
    netpol_kube::run_with_cni(sink, client, live, cni).await;
    Ok(())
}

/// The answer to one metrics-endpoint request: `GET /metrics` (Prometheus text: the agent's metrics and the live
/// source's), `GET /healthz` (200 once a ruleset is programmed, else 503), anything else 404.
pub fn http_answer(request_line: &str, programmer: &Programmer, live: Option<&netpol_kube::LiveMetrics>) -> String {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("GET", "/metrics") => {
            let mut s = String::new();
            programmer.metrics.write(&programmer.node, programmer.mode, &mut s);
            if let Some(l) = live {
                l.write(&mut s);
            }
            ("200 OK", s)
        }
        ("GET", "/healthz") if programmer.ready() => ("200 OK", "ok\n".to_string()),
        ("GET", "/healthz") => ("503 Service Unavailable", "not programmed yet\n".to_string()),
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Serves [`http_answer`] on `listener`: one request per connection, headers read for at most 5 s and 8 KiB.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    programmer: Arc<Programmer>,
    live: Option<Arc<netpol_kube::LiveMetrics>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        let (programmer, live) = (programmer.clone(), live.clone());
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let read = async {
                let mut chunk = [0u8; 1024];
                while buf.len() < 8192 && !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                    }
                }
            };
            if tokio::time::timeout(std::time::Duration::from_secs(5), read).await.is_err() {
                return;
            }
            let text = String::from_utf8_lossy(&buf);
            let line = text.lines().next().unwrap_or("");
            let answer = http_answer(line, &programmer, live.as_deref());
            let _ = sock.write_all(answer.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Binds `addr` now (an error names it) and serves the metrics endpoint from a thread of its own.
pub fn spawn_metrics(
    addr: std::net::SocketAddr,
    programmer: Arc<Programmer>,
    live: Option<Arc<netpol_kube::LiveMetrics>>,
) -> anyhow::Result<()> {
    let std_listener =
        std::net::TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("cannot listen on {addr} for metrics: {e}"))?;
    std_listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("metrics endpoint: {e}");
                return;
            }
        };
        rt.block_on(async move {
            match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => serve_metrics(l, programmer, live).await,
                Err(e) => tracing::error!("metrics endpoint: {e}"),
            }
        });
    })?;
    Ok(())
}

/// [`run_live`] on a runtime of its own, with the metrics endpoint on `metrics` when given: what `netpol agent`
/// runs against a cluster. Returns only on an error connecting to it.
pub fn run_live_blocking(
    source: &netpol_kube::Source,
    programmer: Arc<Programmer>,
    cni: Option<netpol_core::cni::Cni>,
    metrics: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let (_, server) = source.client().await?;
        let live = Arc::new(netpol_kube::LiveMetrics::new(&server));
        if let Some(addr) = metrics {
            spawn_metrics(addr, programmer.clone(), Some(live.clone()))?;
        }
        run_live(source, programmer, cni, live).await
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A command run: its argv and its standard input.
    type Call = (Vec<String>, String);

    /// Records the scripts instead of running nft.
    #[derive(Default, Clone)]
    struct Record(Arc<Mutex<Vec<Call>>>);

    impl Runner for Record {
        fn run(&self, argv: &[&str], stdin: Option<&str>) -> Result<String, ApplyError> {
            self.0
                .lock()
                .unwrap()
                .push((argv.iter().map(|s| s.to_string()).collect(), stdin.unwrap_or("").to_string()));
            Ok(String::new())
        }
    }

    const CLUSTER: &str = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n, labels: {app: a}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n, labels: {app: b}}
spec: {nodeName: n2}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: n}
spec: {podSelector: {}, policyTypes: [Ingress]}
";

    fn engine(text: &str) -> Engine {
        Engine::new(netpol_core::load::load_str("c.yaml", text).cluster)
    }

    #[test]
    fn a_model_is_programmed_once_in_one_transaction_for_this_node() {
        let rec = Record::default();
        let p = Programmer::new("n1", Mode::Enforce, Box::new(rec.clone()), Some("lab-node0".into()));
        assert!(!p.ready());
        let e = engine(CLUSTER);
        assert_eq!(p.program(&e).unwrap(), Programmed::Applied);
        assert_eq!(p.program(&e).unwrap(), Programmed::Unchanged, "the same ruleset is not committed again");
        let calls = rec.0.lock().unwrap().clone();
        assert_eq!(calls.len(), 1);
        let (argv, script) = &calls[0];
        assert!(argv.join(" ").contains("lab-node0"), "{argv:?}");
        // One transaction that replaces the agent's own table, with this node's pod only.
        assert!(script.starts_with("table inet netpol\ndelete table inet netpol\n"), "{script}");
        assert!(script.contains("10.0.0.1") && !script.contains("10.0.0.2 :"), "{script}");
        assert!(p.ready());
        assert_eq!(p.metrics.generation.load(Ordering::Relaxed), 1);
        assert_eq!(p.metrics.models.load(Ordering::Relaxed), 2);
        assert_eq!(p.metrics.local_pods.load(Ordering::Relaxed), 1);
        // A change of the cluster: a new program.
        let e2 = engine(&CLUSTER.replace("10.0.0.1", "10.0.0.9"));
        assert_eq!(p.program(&e2).unwrap(), Programmed::Applied);
        assert_eq!(rec.0.lock().unwrap().len(), 2);
    }

    #[test]
    fn audit_mode_programs_no_drop() {
        let rec = Record::default();
        let p = Programmer::new("n1", Mode::Audit, Box::new(rec.clone()), None);
        p.program(&engine(CLUSTER)).unwrap();
        let script = rec.0.lock().unwrap()[0].1.clone();
        assert!(!script.contains(" drop\n") && script.contains("netpol-audit"), "{script}");
    }

    #[test]
    fn metrics_and_health_answer_over_http() {
        let p = Programmer::new("n1", Mode::Enforce, Box::new(Record::default()), None);
        let a = http_answer("GET /healthz HTTP/1.1", &p, None);
        assert!(a.starts_with("HTTP/1.1 503"), "{a}");
        p.program(&engine(CLUSTER)).unwrap();
        assert!(http_answer("GET /healthz HTTP/1.1", &p, None).starts_with("HTTP/1.1 200"));
        let m = http_answer("GET /metrics HTTP/1.1", &p, None);
        assert!(
            m.contains("netpol_agent_ruleset_generation 1")
                && m.contains("netpol_agent_info{node=\"n1\",mode=\"enforce\"} 1"),
            "{m}"
        );
        assert!(http_answer("POST /metrics HTTP/1.1", &p, None).starts_with("HTTP/1.1 404"));
    }
}
