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

pub mod counters;
pub mod flows;

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
    /// Tracked connections deleted because a new program denies them.
    pub revoked: AtomicU64,
    /// Microseconds the last revocation pass took (listing, judging, deleting).
    pub last_revoke_micros: AtomicU64,
    pub revoke_errors: AtomicU64,
    /// 1 when same-node pod traffic bypasses netfilter ([`bridge_bypass`]).
    pub bridge_bypass: AtomicU64,
    /// Traced flows compared with the engine ([`flows`]), and those on which the kernel and the engine disagree.
    pub self_checked: AtomicU64,
    pub self_check_disagreements: AtomicU64,
    /// Microseconds from the watch event that started the last programmed batch to its commit (0: not from a
    /// watch).
    pub last_event_to_kernel_micros: AtomicU64,
    /// Pods of this node with an address in the last model received that the kernel's ruleset does not have yet
    /// (their traffic is dropped by the fail-closed rule meanwhile): non-zero while a program fails.
    pub local_pods_unprogrammed: AtomicU64,
    /// The highest resourceVersion (over the kinds watched: of the objects listed and the events watched) the
    /// kernel's ruleset reflects: an object written at revision N, or a deletion watched at N, is enforced on this
    /// node once this is at least N (a deletion found by a relist leaves no revision behind).
    pub synced_resource_version: AtomicU64,
    /// For each pod address of this node that a program added (after the first program): seconds from the watch
    /// event that brought it to the commit that opened it.
    pub new_pod_delay: Histogram,
}

/// A Prometheus histogram of seconds, with fixed buckets.
pub struct Histogram {
    /// Observations at most [`Histogram::BOUNDS`]`[i]` seconds (not cumulative; summed when written).
    buckets: [AtomicU64; 11],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: Default::default(), count: AtomicU64::new(0), sum_micros: AtomicU64::new(0) }
    }
}

impl Histogram {
    /// Upper bounds of the buckets, in seconds (then `+Inf`).
    pub const BOUNDS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = Self::BOUNDS.iter().position(|b| secs <= *b) {
            if let Some(b) = self.buckets.get(i) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn write(&self, s: &mut String, name: &str, help: &str) {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, b) in Self::BOUNDS.iter().zip(&self.buckets) {
            cumulative += b.load(Ordering::Relaxed);
            let _ = writeln!(s, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(s, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(s, "{name}_count {count}");
    }
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
        metric(
            s,
            "netpol_agent_revoked_connections_total",
            "counter",
            "Tracked connections deleted because a new program denies them.",
            get(&self.revoked),
        );
        metric(
            s,
            "netpol_agent_revoke_duration_seconds",
            "gauge",
            "Seconds the last revocation pass took (list, judge, delete).",
            get(&self.last_revoke_micros) as f64 / 1e6,
        );
        metric(
            s,
            "netpol_agent_revoke_errors_total",
            "counter",
            "Revocation passes that failed.",
            get(&self.revoke_errors),
        );
        metric(
            s,
            "netpol_agent_self_checked_flows_total",
            "counter",
            "Traced new flows whose kernel verdict was compared with the engine's.",
            get(&self.self_checked),
        );
        metric(
            s,
            "netpol_agent_self_check_disagreements_total",
            "counter",
            "Traced flows on which the kernel and the engine disagree.",
            get(&self.self_check_disagreements),
        );
        metric(
            s,
            "netpol_agent_event_to_kernel_seconds",
            "gauge",
            "Seconds from the watch event that started the last programmed batch to its commit in the kernel.",
            get(&self.last_event_to_kernel_micros) as f64 / 1e6,
        );
        metric(
            s,
            "netpol_agent_synced_resource_version",
            "gauge",
            "Highest resourceVersion of the watched kinds that the kernel's ruleset reflects.",
            get(&self.synced_resource_version),
        );
        metric(
            s,
            "netpol_agent_local_pods_unprogrammed",
            "gauge",
            "Pods of this node with an address in the cluster that the kernel's ruleset does not have yet (closed).",
            get(&self.local_pods_unprogrammed),
        );
        self.new_pod_delay.write(
            s,
            "netpol_agent_new_pod_delay_seconds",
            "Seconds a new pod of this node waited, from the watch event with its address to the program that opened it.",
        );
        metric(
            s,
            "netpol_agent_bridge_bypass",
            "gauge",
            "1 when traffic between pods of this node bypasses netfilter (a bridge without br_netfilter).",
            get(&self.bridge_bypass),
        );
    }
}

/// The agent's default batch window: short, because a change waits for it before it reaches the kernel (`netpol
/// serve` uses `netpol_kube::BATCH_WINDOW`, 50 ms); bursts are still batched, since whatever queued while the
/// previous program ran is taken at once.
pub const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

/// How often the live agent tries again to cut the connections its ruleset denies after a failed pass
/// ([`Programmer::retry_revoke`]), when no new model comes first.
pub const REVOKE_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a difference may take in an nft session before the session is given up.
const SESSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Failures in a row after which the agent stops using nft sessions (an nft built without its interactive mode).
const SESSION_TRIES: u32 = 3;

/// The agent's nft session: started on first use, replaced when worn or after a failure of its own (the difference
/// it failed then goes to `nft -f -`). A difference nft refuses is the program's error, as with `nft -f -` (the
/// whole table is then replaced), and the session goes on.
#[derive(Default)]
struct Session {
    live: Option<netpol_nft::apply::NftSession>,
    failures: u32,
}

impl Session {
    /// Commits `script` through the session of `node`'s agent, inside `netns` when given; `None` when the session failed (or failed
    /// too often: [`SESSION_TRIES`]) and the caller is to use `nft -f -`.
    fn apply(&mut self, node: &str, netns: Option<&str>, script: &str) -> Option<Result<(), ApplyError>> {
        use netpol_nft::apply::NftSession;
        if self.failures >= SESSION_TRIES {
            return None;
        }
        let live = match self.live.take().filter(|l| !l.worn()) {
            Some(live) => Ok(live),
            None => NftSession::start(netns),
        };
        let committed = live.and_then(|mut live| {
            let r = live.apply(script, SESSION_TIMEOUT);
            if r.as_ref().is_ok() || r.as_ref().is_err_and(NftSession::refused) {
                self.live = Some(live);
            }
            r
        });
        match committed {
            Err(e) if !NftSession::refused(&e) => {
                self.failures += 1;
                let more =
                    if self.failures < SESSION_TRIES { "" } else { "; differences go to `nft -f -` from now on" };
                tracing::warn!(%node, "the nft session failed ({e}): trying `nft -f -`{more}");
                None
            }
            done => {
                self.failures = 0;
                Some(done)
            }
        }
    }
}

/// A programmed model and the addresses of its node's pods.
pub type Current = (Arc<Engine>, Arc<std::collections::BTreeSet<std::net::IpAddr>>);

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
    /// What the kernel holds: the last ruleset committed, as a snapshot the next one is diffed against.
    last: Mutex<Option<netpol_nft::ruleset::Snapshot>>,
    /// Why the node's same-node pod traffic is not enforced, when it is not ([`bridge_bypass`]).
    bypass: Mutex<Option<String>>,
    /// The model last programmed (what the flow log names pods by and the self-check asks), with its node's pod
    /// addresses.
    current: Mutex<Option<Current>>,
    /// Whether [`Programmer::program_shared`] keeps the model as `current` (for the flow log and the self-check);
    /// without, a model is freed once programmed (the live source keeps its own copy).
    keep_model: std::sync::atomic::AtomicBool,
    /// Bumped before and after every transaction on the agent's table: what names traced rules by their handle
    /// reads the table again when it changed ([`Programmer::table_epoch`]).
    epoch: AtomicU64,
    /// The last reading of the drop rules' counters, and when it was made ([`counters::write_drops`]).
    drops_read: Mutex<Option<(Instant, Vec<counters::DropCount>)>>,
    /// The node's pod addresses in the ruleset the kernel holds.
    opened: Mutex<std::collections::BTreeSet<std::net::IpAddr>>,
    /// Whether the last pass cutting the connections the kernel's ruleset denies failed: the next program, even of
    /// an unchanged model, and [`Programmer::retry_revoke`] try again.
    revoke_pending: std::sync::atomic::AtomicBool,
    /// Held by a program (until its model is kept) and by the retry timer's pass: revocation passes run one at a
    /// time, and a retried pass reads the model whose pass failed.
    revoking: Mutex<()>,
    /// How long the live source collects events after the first of a batch ([`Programmer::with_batch_window`]).
    batch_window: std::time::Duration,
    /// The sysfs and procfs roots [`bridge_bypass`] looks at (`None`: not looked at, when another namespace is
    /// programmed).
    bridge_roots: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// With [`Programmer::with_session`]: the `nft -i` process that commits differences.
    session: Option<Mutex<Session>>,
    pub metrics: Metrics,
}

impl Programmer {
    pub fn new(node: &str, mode: Mode, runner: Box<dyn Runner + Send + Sync>, netns: Option<String>) -> Programmer {
        Programmer {
            node: node.to_string(),
            mode,
            // Isolated pods may not send their own tunnels past the checks.
            options: NodeOptions { block_pod_encapsulation: true, ..NodeOptions::default() },
            runner,
            bridge_roots: netns.is_none().then(|| ("/sys".into(), "/proc".into())),
            netns,
            last: Mutex::new(None),
            bypass: Mutex::new(None),
            current: Mutex::new(None),
            keep_model: std::sync::atomic::AtomicBool::new(true),
            epoch: AtomicU64::new(0),
            drops_read: Mutex::new(None),
            opened: Mutex::new(Default::default()),
            revoke_pending: std::sync::atomic::AtomicBool::new(false),
            revoking: Mutex::new(()),
            batch_window: BATCH_WINDOW,
            session: None,
            metrics: Metrics::default(),
        }
    }

    /// Commits differences through a long-lived `nft -i` ([`netpol_nft::apply::NftSession`]) instead of the
    /// runner's `nft -f -`: a change is in force 5–17 ms sooner. Whole tables still go through the runner.
    pub fn with_session(mut self) -> Programmer {
        self.session = Some(Mutex::new(Session::default()));
        self
    }

    /// Commits a difference: through the session when there is one, else with the runner.
    fn apply_difference(&self, script: &str) -> Result<(), ApplyError> {
        let ns = self.netns.as_deref();
        if let Some(session) = &self.session {
            let mut s = session.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(committed) = s.apply(&self.node, ns, script) {
                return committed;
            }
        }
        nft_apply(self.runner.as_ref(), ns, script)
    }

    /// Records whether same-node pod traffic bypasses netfilter ([`bridge_bypass`]): readiness is false, and the
    /// reason is logged (once per change) and served by `/healthz`, while it does.
    pub fn set_bypass(&self, reason: Option<String>) -> bool {
        let mut b = self.bypass.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *b != reason;
        if changed {
            match &reason {
                Some(r) => tracing::error!(node = %self.node, "not enforcing same-node pod traffic: {r}"),
                None if b.is_some() => {
                    tracing::info!(node = %self.node, "same-node pod traffic reaches netfilter again")
                }
                None => {}
            }
        }
        self.metrics.bridge_bypass.store(u64::from(reason.is_some()), Ordering::Relaxed);
        *b = reason;
        changed
    }

    /// Programs `engine` ([`Programmer::program`]) and keeps it as the current model. `received`: when the watch
    /// event that brought this model arrived (the new-pod delay and event-to-kernel metrics count from it).
    pub fn program_shared(&self, engine: Arc<Engine>, received: Option<Instant>) -> Result<Programmed, ApplyError> {
        let local = Arc::new(netpol_nft::ruleset::node_pod_addresses(&engine, &self.node));
        // Held until the model is kept: a retried revocation pass reads the model whose pass failed.
        let one = self.one_revocation();
        let r = self.program_local(&engine, &local, received, &one);
        if self.keep_model.load(Ordering::Relaxed) {
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((engine, local));
        }
        r
    }

    /// The right to make a revocation pass: programs and the retry timer take it in turn.
    fn one_revocation(&self) -> std::sync::MutexGuard<'_, ()> {
        self.revoking.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes whenever a transaction on the agent's table starts or ends: a reader of the table that saw the same
    /// epoch before and after reading it read a table no program was changing.
    pub fn table_epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether to keep the last model programmed for [`Programmer::current`] (default: yes). The flow log and the
    /// self-check read it; an agent without them need not hold a second copy of the model.
    pub fn keep_model(&self, keep: bool) {
        self.keep_model.store(keep, Ordering::Relaxed);
        if !keep {
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// The model last given to [`Programmer::program_shared`], and its node's pod addresses.
    pub fn current(&self) -> Option<Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Why same-node pod traffic is not enforced, if it is not.
    pub fn bypass(&self) -> Option<String> {
        self.bypass.lock().unwrap_or_else(|e| e.into_inner()).clone()
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

    /// Events arriving within `window` of a batch's first one are programmed together (default
    /// [`BATCH_WINDOW`]); events that queued while a program ran are always taken together.
    pub fn with_batch_window(mut self, window: std::time::Duration) -> Programmer {
        self.batch_window = window;
        self
    }

    /// Why same-node pod traffic bypasses netfilter where this agent programs ([`bridge_bypass`] on its own
    /// namespace's `/sys` and `/proc`); not looked at when it programs another namespace.
    pub fn check_bridges(&self) -> Option<String> {
        let (sys, proc) = self.bridge_roots.as_ref()?;
        bridge_bypass(sys, proc)
    }

    /// Looks for bridges that bypass netfilter under these sysfs and procfs roots instead (a node's, mounted
    /// elsewhere; tests).
    pub fn with_bridge_roots(mut self, sys: std::path::PathBuf, proc: std::path::PathBuf) -> Programmer {
        self.bridge_roots = Some((sys, proc));
        self
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The node's ruleset for `engine`'s policies.
    pub fn ruleset(&self, engine: &Engine) -> netpol_nft::ruleset::Ruleset {
        let rs = generate_for_node_with(engine, &self.node, &self.options);
        if self.mode == Mode::Audit {
            rs.audit()
        } else {
            rs
        }
    }

    /// Programs `engine`'s policies for this node, unless the kernel already holds them.
    pub fn program(&self, engine: &Engine) -> Result<Programmed, ApplyError> {
        let one = self.one_revocation();
        self.program_local(engine, &netpol_nft::ruleset::node_pod_addresses(engine, &self.node), None, &one)
    }

    /// [`Programmer::program`], `local` being the addresses of the node's pods in `engine`.
    fn program_local(
        &self,
        engine: &Engine,
        local: &std::collections::BTreeSet<std::net::IpAddr>,
        received: Option<Instant>,
        one: &std::sync::MutexGuard<'_, ()>,
    ) -> Result<Programmed, ApplyError> {
        let t = Instant::now();
        self.metrics.models.fetch_add(1, Ordering::Relaxed);
        let local_pods = engine
            .cluster()
            .pods
            .iter()
            .filter(|p| p.node.as_deref() == Some(self.node.as_str()) && !p.ips.is_empty())
            .count();
        let rs = self.ruleset(engine);
        let (rules, elements) = rs.size();
        let snap = rs.snapshot();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        let unprogrammed = |opened: &std::collections::BTreeSet<std::net::IpAddr>| {
            local.iter().filter(|a| !opened.contains(a)).count() as u64
        };
        if last.as_ref() == Some(&snap) {
            // The kernel's ruleset is this model's: every pod of it is as open as the policies say.
            opened.clone_from(local);
            self.metrics.local_pods_unprogrammed.store(0, Ordering::Relaxed);
            drop((opened, last));
            if self.revoke_pending.load(Ordering::Relaxed) {
                self.revoke_now(engine, local, one);
            }
            return Ok(Programmed::Unchanged);
        }
        // One transaction: the difference from what the kernel holds (sets and maps updated element by element, the
        // chains that changed replaced), or, the first time and when the kernel refuses the difference, the whole
        // table replaced.
        let ns = self.netns.as_deref();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let applied = match last.as_ref() {
            Some(old) => self.apply_difference(&snap.update_script(old)).or_else(|e| {
                tracing::warn!(node = %self.node, "incremental program refused ({e}); replacing the whole table");
                nft_apply(self.runner.as_ref(), ns, &rs.replace_script())
            }),
            None => nft_apply(self.runner.as_ref(), ns, &rs.replace_script()),
        };
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = applied {
            self.metrics.program_errors.fetch_add(1, Ordering::Relaxed);
            self.metrics.local_pods_unprogrammed.store(unprogrammed(&opened), Ordering::Relaxed);
            // The kernel may hold either: the next program replaces the whole table.
            *last = None;
            return Err(e);
        }
        let first = last.is_none() && self.metrics.generation.load(Ordering::Relaxed) == 0;
        *last = Some(snap);
        let micros = t.elapsed().as_micros() as u64;
        let m = &self.metrics;
        if let Some(r) = received {
            let waited = r.elapsed();
            m.last_event_to_kernel_micros.store(waited.as_micros() as u64, Ordering::Relaxed);
            // The pods this program opens (not counted at the agent's first program: every pod is new to it then).
            if !first {
                for _ in local.iter().filter(|a| !opened.contains(a)) {
                    m.new_pod_delay.observe(waited);
                }
            }
        }
        opened.clone_from(local);
        m.local_pods_unprogrammed.store(0, Ordering::Relaxed);
        drop(opened);
        let local_count = local_pods;
        m.generation.fetch_add(1, Ordering::Relaxed);
        m.last_program_micros.store(micros, Ordering::Relaxed);
        m.program_micros_total.fetch_add(micros, Ordering::Relaxed);
        m.rules.store(rules as u64, Ordering::Relaxed);
        m.set_elements.store(elements as u64, Ordering::Relaxed);
        m.local_pods.store(local_count as u64, Ordering::Relaxed);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        m.last_success_unix.store(now, Ordering::Relaxed);
        tracing::info!(node = %self.node, rules, elements, local_pods = local_count, micros, "programmed");
        drop(last);
        if self.mode == Mode::Enforce {
            self.revoke_now(engine, local, one);
        }
        Ok(Programmed::Applied)
    }

    /// Cuts the connections `engine`'s ruleset denies on this node ([`Programmer::revoke`]), counting them and the
    /// failures in the metrics; a failed pass is tried again by the next program or [`Programmer::retry_revoke`].
    /// `_one`: passes run one at a time ([`Programmer::one_revocation`]).
    fn revoke_now(
        &self,
        engine: &Engine,
        local: &std::collections::BTreeSet<std::net::IpAddr>,
        _one: &std::sync::MutexGuard<'_, ()>,
    ) {
        let m = &self.metrics;
        let t = Instant::now();
        let (n, failed) = self.revoke_each(engine, local);
        m.revoked.fetch_add(n as u64, Ordering::Relaxed);
        if n > 0 {
            tracing::info!(node = %self.node, revoked = n, "connections the new ruleset denies were cut");
        }
        self.revoke_pending.store(failed.is_some(), Ordering::Relaxed);
        if let Some(e) = failed {
            m.revoke_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = %self.node, "cannot revoke denied connections (tried again later): {e}");
        }
        m.last_revoke_micros.store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// Tries again to cut the connections the last programmed model denies, if the last pass failed (it needs the
    /// kept model, [`Programmer::keep_model`]). Returns whether a pass was made.
    pub fn retry_revoke(&self) -> bool {
        let one = self.one_revocation();
        if self.mode != Mode::Enforce || !self.revoke_pending.load(Ordering::Relaxed) {
            return false;
        }
        let Some((engine, local)) = self.current() else { return false };
        self.revoke_now(&engine, &local, &one);
        true
    }

    /// Whether the last pass cutting denied connections failed and waits to be tried again.
    pub fn revoke_pending(&self) -> bool {
        self.revoke_pending.load(Ordering::Relaxed)
    }

    /// `argv` in the agent's network namespace.
    fn in_ns<'a>(&'a self, argv: &[&'a str]) -> Vec<&'a str> {
        match &self.netns {
            Some(ns) => ["ip", "netns", "exec", ns.as_str()].into_iter().chain(argv.iter().copied()).collect(),
            None => argv.to_vec(),
        }
    }

    /// Deletes the tracked connections `engine` denies on this node's side (the egress of a local source, the
    /// ingress of a local destination): a connection opened under an older program does not outlive it. Returns
    /// how many were deleted.
    pub fn revoke(&self, engine: &Engine) -> Result<usize, ApplyError> {
        match self.revoke_each(engine, &netpol_nft::ruleset::node_pod_addresses(engine, &self.node)) {
            (n, None) => Ok(n),
            (_, Some(e)) => Err(e),
        }
    }

    /// [`Programmer::revoke`], `local` being the addresses of the node's pods in `engine`: how many connections
    /// were cut, and the first failure. A connection that cannot be cut does not keep the others from being cut.
    fn revoke_each(
        &self,
        engine: &Engine,
        local: &std::collections::BTreeSet<std::net::IpAddr>,
    ) -> (usize, Option<ApplyError>) {
        if local.is_empty() {
            return (0, None);
        }
        let listing = match self.runner.run(&self.in_ns(&["conntrack", "-L", "-o", "extended"]), None) {
            Ok(l) => l,
            Err(e) => return (0, Some(e)),
        };
        let mut revoked = 0;
        let mut failed = None;
        for line in listing.lines() {
            let Some(c) = parse_conntrack(line) else { continue };
            if !(local.contains(&c.src) || local.contains(&c.dst)) {
                continue;
            }
            let (src, dst) = (engine.endpoint_for_ip(c.src), engine.endpoint_for_ip(c.dst));
            let info = netpol_core::compile::FlowInfo::default();
            let judge = |d| engine.allowed_direction(&src, &dst, info, c.proto, c.dport, d);
            let denied = (local.contains(&c.src) && !judge(netpol_core::model::Direction::Egress))
                || (local.contains(&c.dst) && !judge(netpol_core::model::Direction::Ingress));
            if !denied {
                continue;
            }
            let (s, d, sp, dp) = (c.src.to_string(), c.dst.to_string(), c.sport.to_string(), c.dport.to_string());
            let proto = c.proto.to_string().to_ascii_lowercase();
            let argv = ["conntrack", "-D", "-p", &proto, "-s", &s, "-d", &d, "--sport", &sp, "--dport", &dp];
            match self.runner.run(&self.in_ns(&argv), None) {
                Ok(_) => revoked += 1,
                // Gone meanwhile (closed, or deleted by another pass): nothing to cut.
                Err(e) if e.stderr().contains("0 flow entries") => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        (revoked, failed)
    }

    /// Whether a ruleset was programmed since the agent started and all of the node's pod traffic reaches it
    /// (readiness).
    pub fn ready(&self) -> bool {
        self.metrics.generation.load(Ordering::Relaxed) > 0 && self.bypass().is_none()
    }
}

/// Why same-node pod traffic bypasses netfilter on this node, if it does: a Linux bridge with ports (a bridged
/// CNI: flannel's `cni0`, kindnet's bridge plugin, docker's `docker0`) while `net.bridge.bridge-nf-call-iptables`
/// (IPv4) or `bridge-nf-call-ip6tables` (IPv6) is off or absent (`br_netfilter` not loaded): frames between two
/// ports of the bridge never reach the `inet` hooks, so no policy is enforced between pods of the same node.
/// `sys` and `proc` are the roots of sysfs and procfs (`/sys`, `/proc`; in a network namespace, its own).
pub fn bridge_bypass(sys: &std::path::Path, proc: &std::path::Path) -> Option<String> {
    let mut bridges: Vec<(String, Vec<String>)> = Vec::new();
    for e in std::fs::read_dir(sys.join("class/net")).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ports: Vec<String> = match std::fs::read_dir(e.path().join("brif")) {
            Ok(d) => d.flatten().map(|p| p.file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => continue,
        };
        if !ports.is_empty() {
            bridges.push((name, ports));
        }
    }
    bridges.sort();
    let (bridge, mut ports) = bridges.into_iter().next()?;
    ports.sort();
    let off: Vec<&str> = ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"]
        .into_iter()
        .filter(|k| {
            std::fs::read_to_string(proc.join("sys/net/bridge").join(k)).map(|v| v.trim() != "1").unwrap_or(true)
        })
        .collect();
    if off.is_empty() {
        return None;
    }
    Some(format!(
        "bridge {bridge} has ports ({}) and net.bridge.{} is off or absent (br_netfilter not loaded): traffic between \
         pods of this node on that bridge bypasses netfilter, and this agent does not enforce it (load br_netfilter \
         and set it to 1)",
        ports.join(", "),
        off.join(" and net.bridge.")
    ))
}

/// A tracked connection's original direction (TCP, UDP and SCTP: those with ports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackedConn {
    pub proto: netpol_core::portset::Protocol,
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub sport: u16,
    pub dport: u16,
}

/// One line of `conntrack -L -o extended` (`ipv4 2 tcp 6 431999 ESTABLISHED src=… dst=… sport=… dport=… src=…`):
/// its original direction, the first `src`/`dst`/`sport`/`dport`; `None` for other protocols and other lines.
pub fn parse_conntrack(line: &str) -> Option<TrackedConn> {
    use netpol_core::portset::Protocol;
    let mut tokens = line.split_whitespace();
    let proto = match tokens.nth(2)? {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        _ => return None,
    };
    let (mut src, mut dst, mut sport, mut dport) = (None, None, None, None);
    for t in tokens {
        let Some((k, v)) = t.split_once('=') else { continue };
        match k {
            "src" if src.is_none() => src = v.parse().ok(),
            "dst" if dst.is_none() => dst = v.parse().ok(),
            "sport" if sport.is_none() => sport = v.parse().ok(),
            "dport" if dport.is_none() => dport = v.parse().ok(),
            _ => {}
        }
    }
    Some(TrackedConn { proto, src: src?, dst: dst?, sport: sport?, dport: dport? })
}

/// The live source's sink: every published model is programmed.
struct Sink {
    programmer: Arc<Programmer>,
    revision: AtomicU64,
    /// Where the agent reports what an operator must see on its Node (an Event).
    client: netpol_kube::Client,
}

/// The reason of the Warning Event on a Node whose same-node pod traffic bypasses netfilter.
pub const BYPASS_REASON: &str = "PodTrafficBypassesNetfilter";

/// The highest resourceVersion in the live source's `kind=N,kind=N` list.
fn highest_resource_version(versions: &str) -> u64 {
    versions.split(',').filter_map(|kv| kv.split_once('=')?.1.parse::<u64>().ok()).max().unwrap_or(0)
}

impl netpol_kube::Publish for Sink {
    fn publish(&self, update: netpol_kube::Update) -> u64 {
        let bypass = self.programmer.check_bridges();
        if self.programmer.set_bypass(bypass.clone()) {
            if let Some(reason) = bypass {
                // A Warning Event on the Node (kubectl describe node), besides the log line and readiness.
                let (client, node) = (self.client.clone(), self.programmer.node.clone());
                tokio::spawn(async move {
                    let message = format!("netpol-agent does not enforce policies between pods of this node: {reason}");
                    if let Err(e) =
                        netpol_kube::node_warning(&client, &node, "netpol-agent", BYPASS_REASON, &message).await
                    {
                        tracing::warn!(%node, "cannot report the Event on the Node: {e}");
                    }
                });
            }
        }
        match self.programmer.program_shared(update.engine, update.received) {
            Ok(_) => self.advance(update.resource_versions),
            // The last ruleset stays in place; the next model tries again.
            Err(e) => tracing::error!(node = %self.programmer.node, "cannot program the ruleset: {e}"),
        }
        self.revision.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn advance(&self, resource_versions: String) {
        let rv = highest_resource_version(&resource_versions);
        self.programmer.metrics.synced_resource_version.fetch_max(rv, Ordering::Relaxed);
    }
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
    let window = programmer.batch_window;
    // A failed pass cutting denied connections is tried again, also when no event comes (until this task ends or
    // is dropped).
    let _retry = AbortOnDrop({
        let p = programmer.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REVOKE_RETRY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if p.revoke_pending() {
                    let p = p.clone();
                    let _ = tokio::task::spawn_blocking(move || p.retry_revoke()).await;
                }
            }
        })
    });
    let sink = Sink { programmer, revision: AtomicU64::new(0), client: client.clone() };
    netpol_kube::run_with_window(sink, client, live, cni, window).await;
    Ok(())
}

/// A spawned task that ends when this handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
            counters::write_drops(programmer, &mut s);
            if let Some(l) = live {
                l.write(&mut s);
            }
            ("200 OK", s)
        }
        ("GET", "/healthz") if programmer.ready() => ("200 OK", "ok\n".to_string()),
        ("GET", "/healthz") => match programmer.bypass() {
            Some(reason) => ("503 Service Unavailable", format!("{reason}\n")),
            None => ("503 Service Unavailable", "not programmed yet\n".to_string()),
        },
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
        // The nft transactions (a program also lists the tracked connections to cut the denied ones).
        let nft = |rec: &Record| -> Vec<Call> {
            rec.0.lock().unwrap().iter().filter(|(argv, _)| argv.contains(&"nft".to_string())).cloned().collect()
        };
        let calls = nft(&rec);
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
        let calls = nft(&rec);
        assert_eq!(calls.len(), 2);
        // The second program is the difference: the map's element replaced, the table kept.
        let update = &calls[1].1;
        assert!(!update.contains("delete table inet netpol\n") && update.contains("10.0.0.9"), "{update}");
        assert!(update.contains("delete element inet netpol ingress_v4 { 10.0.0.1 }"), "{update}");
    }

    #[test]
    fn a_bridge_without_br_netfilter_is_a_bypass() {
        let dir = std::env::temp_dir().join(format!("netpol-agent-bridge-{}", std::process::id()));
        let (sys, proc) = (dir.join("sys"), dir.join("proc"));
        std::fs::create_dir_all(sys.join("class/net/eth0")).unwrap();
        // A routed node: no bridge.
        assert_eq!(bridge_bypass(&sys, &proc), None);
        // A bridge with pod ports, br_netfilter not loaded.
        std::fs::create_dir_all(sys.join("class/net/cni0/brif/veth1")).unwrap();
        std::fs::create_dir_all(sys.join("class/net/cni0/brif/veth2")).unwrap();
        let why = bridge_bypass(&sys, &proc).unwrap();
        assert!(
            why.contains("bridge cni0 has ports (veth1, veth2)") && why.contains("bridge-nf-call-iptables"),
            "{why}"
        );
        // Loaded, IPv4 on, IPv6 off.
        std::fs::create_dir_all(proc.join("sys/net/bridge")).unwrap();
        std::fs::write(proc.join("sys/net/bridge/bridge-nf-call-iptables"), "1\n").unwrap();
        std::fs::write(proc.join("sys/net/bridge/bridge-nf-call-ip6tables"), "0\n").unwrap();
        let why = bridge_bypass(&sys, &proc).unwrap();
        assert!(why.contains("net.bridge.bridge-nf-call-ip6tables is off") && !why.contains("iptables and"), "{why}");
        std::fs::write(proc.join("sys/net/bridge/bridge-nf-call-ip6tables"), "1").unwrap();
        assert_eq!(bridge_bypass(&sys, &proc), None);
        // Readiness follows it.
        let p = Programmer::new("n1", Mode::Enforce, Box::new(Record::default()), None);
        p.program(&engine(CLUSTER)).unwrap();
        assert!(p.ready());
        p.set_bypass(Some("bridge cni0 ...".into()));
        assert!(!p.ready());
        let h = http_answer("GET /healthz HTTP/1.1", &p, None);
        assert!(h.starts_with("HTTP/1.1 503") && h.contains("bridge cni0"), "{h}");
        assert!(http_answer("GET /metrics HTTP/1.1", &p, None).contains("netpol_agent_bridge_bypass 1"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_synced_resource_version_is_the_highest_of_the_kinds() {
        assert_eq!(highest_resource_version("pods=12,networkpolicies=15,namespaces=3"), 15);
        assert_eq!(highest_resource_version(""), 0);
        assert_eq!(highest_resource_version("pods=x,nodes=4"), 4);
    }

    /// A node whose bridge bypasses netfilter: the agent watching a cluster reports a Warning Event on its Node
    /// (what `kubectl describe node` shows), besides readiness false.
    #[test]
    fn a_bridged_node_gets_a_warning_event() {
        let dir = std::env::temp_dir().join(format!("netpol-agent-event-{}", std::process::id()));
        let (sys, proc) = (dir.join("sys"), dir.join("proc"));
        std::fs::create_dir_all(sys.join("class/net/cni0/brif/veth1")).unwrap();
        let server = netpol_fakeapi::FakeApiServer::start().unwrap();
        let kubeconfig = dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        server.put(serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}));
        let p = Arc::new(
            Programmer::new("n1", Mode::Enforce, Box::new(Record::default()), None).with_bridge_roots(sys, proc),
        );
        let source = netpol_kube::Source::Kubeconfig { paths: vec![kubeconfig], context: None };
        let pr = p.clone();
        std::thread::spawn(move || {
            let _ = run_live_blocking(&source, pr, None, None);
        });
        let name = format!("n1.netpol.{}", BYPASS_REASON.to_ascii_lowercase());
        let t = Instant::now();
        let event = loop {
            if let Some(e) = server.get("Event", Some("default"), &name) {
                break e;
            }
            assert!(t.elapsed() < std::time::Duration::from_secs(20), "no Event on the Node");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(event["involvedObject"]["kind"], "Node");
        assert_eq!(event["involvedObject"]["name"], "n1");
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], BYPASS_REASON);
        assert_eq!(event["source"]["component"], "netpol-agent");
        assert_eq!(event["count"], 1);
        let message = event["message"].as_str().unwrap();
        assert!(message.contains("bridge cni0 has ports (veth1)"), "{message}");
        assert!(!p.ready());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn conntrack_lines_give_the_original_direction() {
        let l = "ipv4     2 tcp      6 431996 ESTABLISHED src=10.78.0.1 dst=10.78.0.2 sport=41234 dport=8086 src=10.78.0.2 dst=10.78.0.1 sport=8086 dport=41234 [ASSURED] mark=0 use=1";
        let c = parse_conntrack(l).unwrap();
        assert_eq!(
            (c.src.to_string(), c.dst.to_string(), c.sport, c.dport),
            ("10.78.0.1".into(), "10.78.0.2".into(), 41234, 8086)
        );
        let l6 = "ipv6     10 udp      17 29 src=fd00::1 dst=fd00::2 sport=5353 dport=53 src=fd00::2 dst=fd00::1 sport=53 dport=5353 mark=0 use=1";
        assert_eq!(parse_conntrack(l6).unwrap().proto, netpol_core::portset::Protocol::Udp);
        assert!(parse_conntrack("ipv4 2 icmp 1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=1").is_none());
        assert!(parse_conntrack("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.").is_none());
    }

    /// After a program, the tracked connections the new ruleset denies on this node's side are deleted; the
    /// allowed ones, and the other nodes' pods' connections, are left.
    #[test]
    fn a_program_cuts_the_connections_it_denies() {
        #[derive(Clone, Default)]
        struct Conntrack(Record);
        impl Runner for Conntrack {
            fn run(&self, argv: &[&str], stdin: Option<&str>) -> Result<String, ApplyError> {
                self.0.run(argv, stdin)?;
                if argv.contains(&"-L") {
                    // a -> b:80 (now denied: b isolated), b -> a:80 (b's egress is not isolated; a not isolated).
                    return Ok("ipv4 2 tcp 6 400 ESTABLISHED src=10.0.0.9 dst=10.0.0.1 sport=1000 dport=80 src=10.0.0.1 dst=10.0.0.9 sport=80 dport=1000\n\
                               ipv4 2 tcp 6 400 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1001 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1001\n"
                        .to_string());
                }
                Ok(String::new())
            }
        }
        let rec = Conntrack::default();
        let p = Programmer::new("n1", Mode::Enforce, Box::new(rec.clone()), None);
        // n1 holds a (10.0.0.1), isolated for ingress by `deny`; 10.0.0.9 is outside; b (10.0.0.2) is on n2.
        p.program(&engine(CLUSTER)).unwrap();
        let calls = rec.0 .0.lock().unwrap().clone();
        let deletes: Vec<String> =
            calls.iter().filter(|(a, _)| a.contains(&"-D".to_string())).map(|(a, _)| a.join(" ")).collect();
        assert_eq!(deletes, ["conntrack -D -p tcp -s 10.0.0.9 -d 10.0.0.1 --sport 1000 --dport 80"]);
        assert_eq!(p.metrics.revoked.load(Ordering::Relaxed), 1);
    }

    /// A pass that cannot cut a denied connection is tried again, by the next program of the same model and by
    /// `retry_revoke`, until it succeeds; a connection that cannot be cut does not keep the others from being cut.
    #[test]
    fn a_failed_revocation_is_tried_again() {
        /// Two denied connections to a (10.0.0.1:80, isolated by `deny`); cutting the one from 10.0.0.9 fails while
        /// `fail` is above zero.
        #[derive(Clone, Default)]
        struct Flaky {
            calls: Record,
            fail: Arc<AtomicU64>,
            cut: Arc<Mutex<Vec<String>>>,
        }
        impl Runner for Flaky {
            fn run(&self, argv: &[&str], stdin: Option<&str>) -> Result<String, ApplyError> {
                self.calls.run(argv, stdin)?;
                let cut = self.cut.lock().unwrap().clone();
                if argv.contains(&"-L") {
                    let line = |src: &str, sport: u16| {
                        format!("ipv4 2 tcp 6 400 ESTABLISHED src={src} dst=10.0.0.1 sport={sport} dport=80 src=10.0.0.1 dst={src} sport=80 dport={sport}\n")
                    };
                    let all = [("10.0.0.9", 1000), ("10.0.0.8", 1001)];
                    return Ok(all
                        .iter()
                        .filter(|(s, _)| !cut.contains(&s.to_string()))
                        .map(|&(s, p)| line(s, p))
                        .collect());
                }
                if let Some(at) = argv.iter().position(|a| *a == "-s").filter(|_| argv.contains(&"-D")) {
                    let src = argv[at + 1].to_string();
                    if src == "10.0.0.9" && self.fail.load(Ordering::Relaxed) > 0 {
                        self.fail.fetch_sub(1, Ordering::Relaxed);
                        return Err(ApplyError::Failed {
                            argv: argv.join(" "),
                            status: "exit status: 1".into(),
                            code: Some(1),
                            stderr: "conntrack v1.4.7 (conntrack-tools): Operation failed: Device or resource busy"
                                .into(),
                        });
                    }
                    self.cut.lock().unwrap().push(src);
                }
                Ok(String::new())
            }
        }
        let listings =
            |f: &Flaky| f.calls.0.lock().unwrap().iter().filter(|(a, _)| a.contains(&"-L".to_string())).count();
        let counts = |p: &Programmer| {
            let m = &p.metrics;
            (m.revoked.load(Ordering::Relaxed), m.revoke_errors.load(Ordering::Relaxed), p.revoke_pending())
        };

        let f = Flaky { fail: Arc::new(AtomicU64::new(1)), ..Flaky::default() };
        let p = Programmer::new("n1", Mode::Enforce, Box::new(f.clone()), None);
        let e = engine(CLUSTER);
        assert_eq!(p.program(&e).unwrap(), Programmed::Applied);
        // 10.0.0.8's connection is cut although 10.0.0.9's could not be.
        assert_eq!(*f.cut.lock().unwrap(), ["10.0.0.8"]);
        assert_eq!(counts(&p), (1, 1, true));
        // The same model again: the kernel's ruleset is unchanged, the failed pass is made again.
        assert_eq!(p.program(&e).unwrap(), Programmed::Unchanged);
        assert_eq!(*f.cut.lock().unwrap(), ["10.0.0.8", "10.0.0.9"]);
        assert_eq!(counts(&p), (2, 1, false));
        // Nothing pending: an unchanged model lists no connection.
        assert_eq!(p.program(&e).unwrap(), Programmed::Unchanged);
        assert_eq!(listings(&f), 2);

        // Without a new model: `retry_revoke` (the live agent's timer) makes the pass with the kept model.
        let f = Flaky { fail: Arc::new(AtomicU64::new(2)), ..Flaky::default() };
        let p = Programmer::new("n1", Mode::Enforce, Box::new(f.clone()), None);
        assert!(!p.retry_revoke(), "nothing programmed, nothing pending");
        p.program_shared(Arc::new(engine(CLUSTER)), None).unwrap();
        assert!(p.retry_revoke() && p.revoke_pending(), "the second pass fails too");
        assert!(p.retry_revoke() && !p.revoke_pending());
        assert!(!p.retry_revoke());
        assert_eq!(*f.cut.lock().unwrap(), ["10.0.0.8", "10.0.0.9"]);
        assert_eq!((counts(&p), listings(&f)), ((2, 2, false), 3));
    }

    #[test]
    fn audit_mode_programs_no_drop() {
        let rec = Record::default();
        let p = Programmer::new("n1", Mode::Audit, Box::new(rec.clone()), None);
        p.program(&engine(CLUSTER)).unwrap();
        let calls = rec.0.lock().unwrap().clone();
        assert_eq!(calls.len(), 1, "audit mode cuts no connection: {calls:?}");
        let script = calls[0].1.clone();
        assert!(!script.contains(" drop\n") && script.contains("netpol-audit"), "{script}");
    }

    /// A new pod of the node: the delay from the watch event to the program that opens it is observed; while
    /// programs fail, the pod is counted as not programmed.
    #[test]
    fn a_new_pods_delay_and_the_unprogrammed_pods_are_metrics() {
        #[derive(Clone, Default)]
        struct Failing(Arc<std::sync::atomic::AtomicBool>);
        impl Runner for Failing {
            fn run(&self, argv: &[&str], _stdin: Option<&str>) -> Result<String, ApplyError> {
                if self.0.load(Ordering::Relaxed) && argv.contains(&"nft") {
                    return Err(ApplyError::EmptyCommand);
                }
                Ok(String::new())
            }
        }
        let fail = Failing::default();
        let p = Programmer::new("n1", Mode::Enforce, Box::new(fail.clone()), None);
        let before = Instant::now() - std::time::Duration::from_millis(40);
        p.program_shared(Arc::new(engine(CLUSTER)), Some(before)).unwrap();
        // The first program opens every pod: no delay observed.
        assert_eq!(p.metrics.new_pod_delay.count(), 0);
        assert!(p.metrics.last_event_to_kernel_micros.load(Ordering::Relaxed) >= 40_000);
        let with_c = format!(
            "{CLUSTER}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: c, namespace: n}}\nspec: {{nodeName: n1}}\nstatus: {{podIP: 10.0.0.3}}\n"
        );
        fail.0.store(true, Ordering::Relaxed);
        assert!(p.program_shared(Arc::new(engine(&with_c)), Some(Instant::now())).is_err());
        assert_eq!(p.metrics.local_pods_unprogrammed.load(Ordering::Relaxed), 1);
        fail.0.store(false, Ordering::Relaxed);
        let event = Instant::now() - std::time::Duration::from_millis(30);
        p.program_shared(Arc::new(engine(&with_c)), Some(event)).unwrap();
        assert_eq!(p.metrics.local_pods_unprogrammed.load(Ordering::Relaxed), 0);
        assert_eq!(p.metrics.new_pod_delay.count(), 1);
        let m = http_answer("GET /metrics HTTP/1.1", &p, None);
        assert!(m.contains("netpol_agent_new_pod_delay_seconds_bucket{le=\"0.025\"} 0"), "{m}");
        assert!(m.contains("netpol_agent_new_pod_delay_seconds_bucket{le=\"0.05\"} 1"), "{m}");
        assert!(m.contains("netpol_agent_new_pod_delay_seconds_count 1"), "{m}");
        assert!(m.contains("netpol_agent_local_pods_unprogrammed 0"), "{m}");
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
        for name in [
            "netpol_agent_revoked_connections_total 0",
            "netpol_agent_revoke_duration_seconds",
            "netpol_agent_bridge_bypass 0",
            "netpol_agent_local_pods 1",
            "netpol_agent_program_duration_seconds",
            "netpol_agent_last_success_timestamp_seconds",
        ] {
            assert!(m.contains(name), "{name}: {m}");
        }
        assert!(http_answer("POST /metrics HTTP/1.1", &p, None).starts_with("HTTP/1.1 404"));
    }
}
