//! Observed traffic against the model: each folded connection class of a flow log ([`crate::flowlog::Folded`])
//! resolved to the cluster's pods and addresses, judged by the current policies and, when a change is proposed, by
//! the changed ones, and compared with what the data plane logged.
//!
//! Resolution never guesses: an end is a pod by its logged name; else by its address (a pod's, or an address
//! outside the cluster); else, for logs that aggregate (Calico's), by namespace and labels, when every pod they
//! match has one identity (one label set, one verdict). A pod the log names that the cluster no longer has is
//! matched by its labels only; per-replica labels (`pod-template-hash`, ...; [`is_unstable_label`]) are left out
//! of that match. What cannot be resolved is counted and listed with the reason.

use std::net::IpAddr;

use netpol_core::compile::{Endpoint, Engine, FlowInfo};
use netpol_core::model::{Direction, PodId};
use netpol_core::portset::{icmp_port, Protocol};
use netpol_core::verdict::{Explanation, Verdict};
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::flowlog::{End, Folded, Side};

/// Label keys whose values differ between replicas of one workload, or between its revisions: a selector must
/// never use them (its pods would stop matching when they are replaced), and resolving a logged pod by its labels
/// leaves them out.
pub const UNSTABLE_LABEL_KEYS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "batch.kubernetes.io/job-completion-index",
    "batch.kubernetes.io/controller-uid",
    "controller-uid",
];

/// Whether a label key is one of [`UNSTABLE_LABEL_KEYS`].
pub fn is_unstable_label(key: &str) -> bool {
    UNSTABLE_LABEL_KEYS.contains(&key)
}

/// How an end was resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// By its pod's namespace and name.
    Name,
    /// By its address: a pod's, or one outside the cluster.
    Address,
    /// By namespace and labels (an aggregated log, or a pod the cluster no longer has).
    Labels,
}

/// Resolves logged ends to the cluster's endpoints.
pub struct EndResolver<'e> {
    engine: &'e Engine,
    /// Namespace -> pod name -> pod (looked up by `&str`, no key built per lookup).
    pods: FxHashMap<String, FxHashMap<String, PodId>>,
    /// Pods per namespace, for label matches.
    by_ns: FxHashMap<String, Vec<PodId>>,
}

impl<'e> EndResolver<'e> {
    pub fn new(engine: &'e Engine) -> Self {
        let c = engine.cluster();
        let mut pods: FxHashMap<String, FxHashMap<String, PodId>> = FxHashMap::default();
        let mut by_ns: FxHashMap<String, Vec<PodId>> = FxHashMap::default();
        for (i, p) in c.pods.iter().enumerate() {
            let id = PodId::new(i);
            let ns = &c.ns(p.ns).name;
            pods.entry(ns.clone()).or_default().insert(p.name.clone(), id);
            by_ns.entry(ns.clone()).or_default().push(id);
        }
        EndResolver { engine, pods, by_ns }
    }

    /// The endpoint a logged end is, and how it was found; or why it cannot be told.
    pub fn resolve(&self, end: &End) -> Result<(Endpoint, How), String> {
        let ip = end.ip.map(|ip| ip.to_canonical());
        if end.kind.as_deref() == Some("service") {
            // Policies judge the backend pod the connection was translated to, which such a record does not name.
            return Err(format!(
                "a Service's address{} (traced before translation): the log does not name the backend pod",
                ip.map(|ip| format!(" {ip}")).unwrap_or_default()
            ));
        }
        if let (Some(ns), Some(pod)) = (&end.namespace, &end.pod) {
            if let Some(&id) = self.pods.get(ns.as_str()).and_then(|m| m.get(pod.as_str())) {
                return Ok((Endpoint::Pod { pod: id, ip: ip.filter(|ip| self.pod_has(id, *ip)) }, How::Name));
            }
            // Gone (replaced, or the log is older than the manifests): its labels may still tell its workload.
            if !end.labels.is_empty() {
                return self.by_labels(ns, end).map_err(|e| format!("pod `{ns}/{pod}` is not in the cluster; {e}"));
            }
            return Err(format!("pod `{ns}/{pod}` is not in the cluster (and the log gives no labels)"));
        }
        if let Some(ip) = ip {
            let e = self.engine.endpoint_for_ip(ip);
            if let (Endpoint::External(_), Some(ns)) = (&e, &end.namespace) {
                // The log says it is a pod of `ns`; the cluster has no pod with that address.
                if end.kind.is_none() {
                    return Err(format!("no pod of namespace `{ns}` has address {ip}"));
                }
            }
            return Ok((e, How::Address));
        }
        if let Some(ns) = &end.namespace {
            if !end.labels.is_empty() || end.aggregated.is_some() || end.pod.is_some() {
                return self.by_labels(ns, end);
            }
            return Err(format!("the log names namespace `{ns}` but no pod, address or labels"));
        }
        match &end.kind {
            Some(k) => Err(format!("the log gives no address for this end ({k})")),
            None => Err("the log gives no pod, address or labels for this end".to_string()),
        }
    }

    fn pod_has(&self, pod: PodId, ip: IpAddr) -> bool {
        self.engine.cluster().pod(pod).ips.contains(&ip)
    }

    /// The pods of `ns` whose labels include the logged ones (per-replica labels left out) and, for an aggregated
    /// name (`web-7d9f8b-*`), whose names start with its prefix when any does (a workload's template has a name
    /// of its own); resolved when they all have one identity.
    fn by_labels(&self, ns: &str, end: &End) -> Result<(Endpoint, How), String> {
        let c = self.engine.cluster();
        let Some(pods) = self.by_ns.get(ns) else {
            return Err(format!("namespace `{ns}` has no pods in the cluster"));
        };
        let wanted: Vec<&(String, String)> = end.labels.iter().filter(|(k, _)| !is_unstable_label(k)).collect();
        let mut matching: Vec<PodId> = pods
            .iter()
            .copied()
            .filter(|&p| wanted.iter().all(|(k, v)| c.pod(p).labels.get(k) == Some(v.as_str())))
            .collect();
        let prefix = end
            .aggregated
            .as_deref()
            .or(end.pod.as_deref())
            .map(|n| n.split('*').next().unwrap_or(n))
            .filter(|p| !p.is_empty());
        if let Some(prefix) = prefix {
            let named: Vec<PodId> = matching.iter().copied().filter(|&p| c.pod(p).name.starts_with(prefix)).collect();
            if !named.is_empty() || wanted.is_empty() {
                matching = named;
            }
        }
        let Some(&first) = matching.first() else {
            let what = match (wanted.is_empty(), prefix) {
                (false, _) => format!("labels {}", label_text(&wanted)),
                (true, Some(p)) => format!("a name starting with `{p}`"),
                (true, None) => "anything".to_string(),
            };
            return Err(format!("no pod of namespace `{ns}` has {what}"));
        };
        let identity = self.engine.pod_identity(first);
        let others = matching.iter().filter(|&&p| self.engine.pod_identity(p) != identity).count();
        if others > 0 {
            return Err(format!(
                "ambiguous: {} pods of namespace `{ns}` match, with different labels (e.g. `{}` and `{}`)",
                matching.len(),
                c.pod(first).name,
                matching
                    .iter()
                    .find(|&&p| self.engine.pod_identity(p) != identity)
                    .map(|&p| c.pod(p).name.as_str())
                    .unwrap_or_default()
            ));
        }
        Ok((Endpoint::Pod { pod: first, ip: None }, How::Labels))
    }
}

fn label_text(labels: &[&(String, String)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

/// What the log recorded for a class, folded over its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Observation {
    Allowed,
    Denied,
    /// Both allowed and denied events: the policies changed while the log was taken, or nodes disagree.
    Mixed,
    /// Seen, with no verdict (a tracer's log, or drops that were not a policy's).
    Seen,
}

/// The observation of a folded class, and the side it covers.
pub fn observation(f: &Folded) -> (Observation, Side) {
    let c = &f.counts;
    let denied = c.denied + c.egress_denied + c.ingress_denied;
    let allowed = c.allowed + c.egress_allowed + c.ingress_allowed;
    let side = |both: u64, egress: u64, ingress: u64| {
        if both > 0 || (egress > 0 && ingress > 0) {
            Side::Both
        } else if egress > 0 {
            Side::Egress
        } else {
            Side::Ingress
        }
    };
    match (allowed > 0, denied > 0) {
        (true, true) => (Observation::Mixed, Side::Both),
        (false, true) => (Observation::Denied, side(c.denied, c.egress_denied, c.ingress_denied)),
        // Delivered (allowed on ingress) means the source's egress let it out too.
        (true, false) if c.allowed > 0 || c.ingress_allowed > 0 => (Observation::Allowed, Side::Both),
        (true, false) => (Observation::Allowed, Side::Egress),
        (false, false) => (Observation::Seen, Side::Both),
    }
}

/// How the proposed change treats an observed class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Allowed now, denied after the change: observed traffic the change would cut.
    NewlyDenied,
    NewlyAllowed,
}

/// Where the data plane's log and the current model disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disagreement {
    /// Logged as allowed, the model denies it: a CNI that does not enforce (or enforces less), a policy missing
    /// from the manifests, a stale log.
    ObservedAllowedModelDenies,
    /// Logged as denied, the model allows it: a policy the manifests lack, a CNI that enforces more, a CNI bug.
    ObservedDeniedModelAllows,
}

/// One observed class, judged.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The resolved ends: `namespace/pod` or an address.
    pub src: String,
    pub dst: String,
    pub protocol: Protocol,
    pub port: u16,
    pub connections: u64,
    pub events: u64,
    pub observed: Observation,
    /// Which side's policies the observed verdict covers.
    pub observed_side: Side,
    /// Policy names the log gave.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observed_policies: Vec<String>,
    /// The current model's verdict (of `observed_side`'s policies).
    pub current: Verdict,
    /// The proposed model's verdict, when a change is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disagreement: Option<Disagreement>,
    /// How each end was resolved.
    pub resolved: [How; 2],
    /// The explanations (given for changed and disagreeing rows, or for every row when asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain_current: Option<Box<Explanation>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain_proposed: Option<Box<Explanation>>,
    /// Where the log first shows it.
    pub file: String,
    pub line: u64,
}

/// An observed class that could not be judged.
#[derive(Clone, Debug, Serialize)]
pub struct Unresolved {
    pub src: End,
    pub dst: End,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub connections: u64,
    pub reason: String,
    pub file: String,
    pub line: u64,
}

/// Classes and the connections they hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub classes: u64,
    pub connections: u64,
}

impl Tally {
    fn add(&mut self, connections: u64) {
        self.classes += 1;
        self.connections += connections;
    }
}

/// The replay's totals.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Every class read (judged and unresolved).
    pub observed: Tally,
    pub judged: Tally,
    pub unresolved: Tally,
    /// Observed traffic the change would cut (allowed by the current model, denied by the proposed one).
    pub newly_denied: Tally,
    pub newly_allowed: Tally,
    pub observed_allowed_model_denies: Tally,
    pub observed_denied_model_allows: Tally,
    /// Classes the log shows both allowed and denied.
    pub mixed: Tally,
    /// Ends resolved by name, by address, by labels.
    pub resolved_by_name: u64,
    pub resolved_by_address: u64,
    pub resolved_by_labels: u64,
    /// Whether a change was replayed (else only the current model is compared with the log).
    pub proposed: bool,
}

/// The whole answer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub rows: Vec<Row>,
    pub unresolved: Vec<Unresolved>,
}

impl Report {
    /// Whether observed traffic would be cut.
    pub fn breaks_traffic(&self) -> bool {
        self.summary.newly_denied.classes > 0
    }
}

/// Options of a replay.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Explanations for every row, not only the changed and disagreeing ones.
    pub explain_all: bool,
    /// No explanations at all, whatever `explain_all` says: the verdicts only, for callers that count (the web
    /// UI's flow overlay), which would otherwise pay for an explanation per disagreeing row.
    pub no_explanations: bool,
}

/// The verdict of `side`'s policies (both: the flow's).
fn side_verdict(e: &Engine, s: &Endpoint, d: &Endpoint, proto: Protocol, port: u16, side: Side) -> bool {
    match side {
        Side::Both => e.allowed_flow(s, d, FlowInfo::default(), proto, port),
        Side::Egress => e.allowed_direction(s, d, FlowInfo::default(), proto, port, Direction::Egress),
        Side::Ingress => e.allowed_direction(s, d, FlowInfo::default(), proto, port, Direction::Ingress),
    }
}

/// The port to judge a class on: its logged port, an ICMP echo request when an ICMP log gives none.
fn judged_port(f: &Folded) -> Result<u16, String> {
    match (f.port, f.protocol) {
        (Some(p), _) => Ok(p),
        (None, Protocol::Icmp) => Ok(icmp_port(8, 0)),
        (None, Protocol::Icmpv6) => Ok(icmp_port(128, 0)),
        (None, p) => Err(format!("the log gives no destination port for this {p} flow")),
    }
}

/// A folded class whose ends and port are known.
pub struct Resolved {
    pub src: Endpoint,
    pub dst: Endpoint,
    /// How each end was resolved.
    pub how: [How; 2],
    pub port: u16,
}

impl EndResolver<'_> {
    /// The class's ends and port, or what could not be told, as the list of unresolved classes shows it.
    pub fn resolve_folded(&self, f: &Folded) -> Result<Resolved, Box<Unresolved>> {
        let resolved = judged_port(f).and_then(|port| {
            let (src, hs) = self.resolve(&f.src).map_err(|e| format!("src: {e}"))?;
            let (dst, hd) = self.resolve(&f.dst).map_err(|e| format!("dst: {e}"))?;
            Ok(Resolved { src, dst, how: [hs, hd], port })
        });
        resolved.map_err(|reason| {
            Box::new(Unresolved {
                src: f.src.clone(),
                dst: f.dst.clone(),
                protocol: f.protocol,
                port: f.port,
                connections: f.connections,
                reason,
                file: f.file.clone(),
                line: f.line,
            })
        })
    }
}

/// Judges every folded class against `current` and, when given, `proposed` (the same cluster with the change: its
/// pods are `current`'s).
pub fn replay(current: &Engine, proposed: Option<&Engine>, flows: &[Folded], opts: Options) -> Report {
    let r = EndResolver::new(current);
    let mut report =
        Report { summary: Summary { proposed: proposed.is_some(), ..Summary::default() }, ..Report::default() };
    for f in flows {
        let s = &mut report.summary;
        s.observed.add(f.connections);
        let Resolved { src, dst, how: [hs, hd], port } = match r.resolve_folded(f) {
            Ok(x) => x,
            Err(u) => {
                s.unresolved.add(f.connections);
                report.unresolved.push(*u);
                continue;
            }
        };
        s.judged.add(f.connections);
        for h in [hs, hd] {
            match h {
                How::Name => s.resolved_by_name += 1,
                How::Address => s.resolved_by_address += 1,
                How::Labels => s.resolved_by_labels += 1,
            }
        }
        let (observed, side) = observation(f);
        let now = side_verdict(current, &src, &dst, f.protocol, port, side);
        let after = proposed.map(|p| side_verdict(p, &src, &dst, f.protocol, port, side));
        let change = match after {
            Some(a) if now && !a => Some(Change::NewlyDenied),
            Some(a) if !now && a => Some(Change::NewlyAllowed),
            _ => None,
        };
        let disagreement = match observed {
            Observation::Allowed if !now => Some(Disagreement::ObservedAllowedModelDenies),
            Observation::Denied if now => Some(Disagreement::ObservedDeniedModelAllows),
            _ => None,
        };
        match change {
            Some(Change::NewlyDenied) => s.newly_denied.add(f.connections),
            Some(Change::NewlyAllowed) => s.newly_allowed.add(f.connections),
            None => {}
        }
        match disagreement {
            Some(Disagreement::ObservedAllowedModelDenies) => s.observed_allowed_model_denies.add(f.connections),
            Some(Disagreement::ObservedDeniedModelAllows) => s.observed_denied_model_allows.add(f.connections),
            None => {}
        }
        if observed == Observation::Mixed {
            s.mixed.add(f.connections);
        }
        let explain = !opts.no_explanations
            && (opts.explain_all || change.is_some() || disagreement.is_some() || observed == Observation::Mixed);
        let c = current.cluster();
        let name = |e: &Endpoint| match e {
            Endpoint::Pod { pod, .. } => c.pod_ref(*pod),
            Endpoint::External(ip) => ip.to_string(),
        };
        report.rows.push(Row {
            src: name(&src),
            dst: name(&dst),
            protocol: f.protocol,
            port,
            connections: f.connections,
            events: f.events,
            observed,
            observed_side: side,
            observed_policies: f.policies.clone(),
            current: Verdict::from_bool(now),
            proposed: after.map(Verdict::from_bool),
            change,
            disagreement,
            resolved: [hs, hd],
            explain_current: explain.then(|| Box::new(current.explain(&src, &dst, f.protocol, port))),
            explain_proposed: explain
                .then(|| proposed.map(|p| Box::new(p.explain(&src, &dst, f.protocol, port))))
                .flatten(),
            file: f.file.clone(),
            line: f.line,
        });
    }
    report
}

/// One line on why a flow has its verdict: the rules that allowed it, or what denied it on which side.
pub fn cause(ex: &Explanation) -> String {
    let side_text = |s: &netpol_core::verdict::SideExplanation| -> String {
        use netpol_core::verdict::DecidedBy;
        let dir = s.direction.to_string().to_lowercase();
        if s.allowed {
            let rules: Vec<String> = s.allowed_by.iter().map(|m| format!("{} rule {}", m.policy, m.rule)).collect();
            return match s.decided_by {
                DecidedBy::NotGoverned => format!("{dir}: no policy selects {}", s.subject),
                _ if !rules.is_empty() => format!("{dir}: allowed by {}", rules.join(", ")),
                _ => format!("{dir}: allowed"),
            };
        }
        match s.decided_by {
            DecidedBy::Rule => match s.walk.last() {
                Some(m) => format!("{dir}: denied by {} rule {} ({})", m.policy, m.rule, m.action),
                None => format!("{dir}: denied"),
            },
            DecidedBy::TierDefault => {
                format!("{dir}: denied by tier {}'s default action", s.tier_default.as_deref().unwrap_or("?"))
            }
            _ if !s.policies.is_empty() => {
                format!("{dir}: {} isolated by {}, no rule allows", s.subject, s.policies.join(", "))
            }
            _ => format!("{dir}: denied"),
        }
    };
    match (ex.egress.allowed, ex.ingress.allowed) {
        (true, true) => format!("{}; {}", side_text(&ex.egress), side_text(&ex.ingress)),
        (false, _) => side_text(&ex.egress),
        (true, false) => side_text(&ex.ingress),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::flowlog::{Counts, FlowFormat};

    const CLUSTER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-7d9f8b-x1, namespace: shop, labels: {app: web, pod-template-hash: 7d9f8b}}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web-7d9f8b-x2, namespace: shop, labels: {app: web, pod-template-hash: 7d9f8b}}
status: {podIP: 10.1.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, namespace: shop, labels: {app: db}}
status: {podIP: 10.1.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: cache, namespace: shop, labels: {app: cache, tier: a}}
status: {podIP: 10.1.0.4}
---
apiVersion: v1
kind: Pod
metadata: {name: cache-b, namespace: shop, labels: {app: cache, tier: b}}
status: {podIP: 10.1.0.5}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5432}]
"#;

    /// The proposed change: the db accepts only 5433.
    const PROPOSED: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 5433}]
"#;

    fn engine(text: &str) -> Engine {
        let loaded = netpol_core::load::load_str("cluster.yaml", text);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        Engine::new(loaded.cluster)
    }

    fn proposed(current: &Engine) -> Engine {
        let docs: Vec<serde_json::Value> =
            netpol_core::load::yaml_documents(PROPOSED).into_iter().map(|d| d.unwrap()).collect();
        Engine::new(crate::overlay::apply(current.cluster(), docs, &[]).unwrap())
    }

    fn pod(ns: &str, name: &str) -> End {
        End { namespace: Some(ns.into()), pod: Some(name.into()), ..End::default() }
    }

    fn folded(src: End, dst: End, port: Option<u16>, counts: Counts) -> Folded {
        Folded {
            src,
            dst,
            protocol: Protocol::Tcp,
            port,
            connections: 3,
            events: 7,
            counts,
            policies: vec![],
            file: "log.json".into(),
            line: 1,
            first_time: None,
            last_time: None,
            format: FlowFormat::Netpol,
        }
    }

    fn allowed() -> Counts {
        Counts { allowed: 1, ..Counts::default() }
    }

    #[test]
    fn ends_resolve_by_name_then_address_then_labels() {
        let e = engine(CLUSTER);
        let r = EndResolver::new(&e);
        let id = |name: &str| {
            (0..e.cluster().pods.len()).map(PodId::new).find(|&p| e.cluster().pod(p).name == name).unwrap()
        };
        // By name; the logged address is kept when it is the pod's.
        let mut end = pod("shop", "db-0");
        end.ip = Some("10.1.0.3".parse().unwrap());
        let ip = Some("10.1.0.3".parse().unwrap());
        assert_eq!(r.resolve(&end).unwrap(), (Endpoint::Pod { pod: id("db-0"), ip }, How::Name));
        // By address: a pod's (IPv4-mapped written), and one outside the cluster.
        let end = End { ip: Some("::ffff:10.1.0.3".parse().unwrap()), ..End::default() };
        assert_eq!(r.resolve(&end).unwrap().1, How::Address);
        assert!(matches!(r.resolve(&end).unwrap().0, Endpoint::Pod { pod, .. } if pod == id("db-0")));
        let end = End { ip: Some("203.0.113.7".parse().unwrap()), kind: Some("world".into()), ..End::default() };
        assert_eq!(r.resolve(&end).unwrap(), (Endpoint::External("203.0.113.7".parse().unwrap()), How::Address));
        // Aggregated (Calico): by namespace, labels and name prefix.
        let end = End {
            namespace: Some("shop".into()),
            aggregated: Some("web-7d9f8b-*".into()),
            labels: vec![("app".into(), "web".into())],
            ..End::default()
        };
        assert_eq!(r.resolve(&end).unwrap(), (Endpoint::Pod { pod: id("web-7d9f8b-x1"), ip: None }, How::Labels));
        // A replica the cluster no longer has: its workload, by its labels without the per-replica ones.
        let mut end = pod("shop", "web-55c4d-zz");
        end.labels = vec![("app".into(), "web".into()), ("pod-template-hash".into(), "55c4d".into())];
        assert_eq!(r.resolve(&end).unwrap().1, How::Labels);
    }

    #[test]
    fn what_cannot_be_told_is_not_guessed() {
        let e = engine(CLUSTER);
        let r = EndResolver::new(&e);
        let err = |end: End| r.resolve(&end).unwrap_err();
        assert!(err(pod("shop", "gone")).contains("`shop/gone` is not in the cluster"));
        // Labels that match pods of two label sets.
        let end =
            End { namespace: Some("shop".into()), labels: vec![("app".into(), "cache".into())], ..End::default() };
        assert!(err(end).starts_with("ambiguous: 2 pods"), "{}", err(pod("x", "y")));
        let end = End { namespace: Some("shop".into()), labels: vec![("app".into(), "nope".into())], ..End::default() };
        assert!(err(end).contains("no pod of namespace `shop` has labels app=nope"));
        let end = End { namespace: Some("nowhere".into()), aggregated: Some("a-*".into()), ..End::default() };
        assert!(err(end).contains("namespace `nowhere` has no pods"));
        // The log says it is a pod of `shop`, but no pod has the address.
        let end = End { namespace: Some("shop".into()), ip: Some("10.9.9.9".parse().unwrap()), ..End::default() };
        assert!(err(end).contains("no pod of namespace `shop` has address 10.9.9.9"));
        let end = End { kind: Some("pub".into()), ..End::default() };
        assert!(err(end).contains("no address for this end (pub)"));
        // A Service's cluster IP, traced before translation: the backend is unknown.
        let end = End { ip: Some("10.96.0.10".parse().unwrap()), kind: Some("service".into()), ..End::default() };
        assert!(err(end).contains("a Service's address 10.96.0.10"));
        // A class with no port is unresolved, with the reason, and counted.
        let f = folded(pod("shop", "web-7d9f8b-x1"), pod("shop", "db-0"), None, allowed());
        let rep = replay(&e, None, &[f], Options::default());
        assert_eq!(rep.summary.unresolved, Tally { classes: 1, connections: 3 });
        assert!(rep.unresolved[0].reason.contains("no destination port"));
        assert!(rep.rows.is_empty());
    }

    #[test]
    fn a_change_that_cuts_observed_traffic_is_newly_denied() {
        let e = engine(CLUSTER);
        let p = proposed(&e);
        let flows = vec![
            // Observed, allowed now, cut by the change.
            folded(pod("shop", "web-7d9f8b-x1"), pod("shop", "db-0"), Some(5432), allowed()),
            // Denied now (isolated db, wrong port), allowed by the change.
            folded(
                pod("shop", "web-7d9f8b-x2"),
                pod("shop", "db-0"),
                Some(5433),
                Counts { denied: 2, ..Counts::default() },
            ),
            // Unaffected.
            folded(pod("shop", "db-0"), pod("shop", "cache"), Some(6379), allowed()),
        ];
        let rep = replay(&e, Some(&p), &flows, Options::default());
        let s = &rep.summary;
        assert_eq!(s.newly_denied, Tally { classes: 1, connections: 3 });
        assert_eq!(s.newly_allowed, Tally { classes: 1, connections: 3 });
        assert_eq!(s.judged.classes, 3);
        assert_eq!(s.observed_allowed_model_denies.classes + s.observed_denied_model_allows.classes, 0);
        assert!(rep.breaks_traffic());
        let cut = &rep.rows[0];
        assert_eq!(
            (cut.current, cut.proposed, cut.change),
            (Verdict::Allow, Some(Verdict::Deny), Some(Change::NewlyDenied))
        );
        assert_eq!(cut.src, "shop/web-7d9f8b-x1");
        // Explanations for the changed rows only, and the cause names the isolating policy.
        assert!(cut.explain_proposed.is_some() && rep.rows[2].explain_current.is_none());
        let why = cause(cut.explain_proposed.as_ref().unwrap());
        assert!(why.contains("ingress") && why.contains("shop/db"), "{why}");
        assert_eq!(rep.rows[1].change, Some(Change::NewlyAllowed));
        // Without a change: no change, the same verdicts.
        let rep = replay(&e, None, &flows, Options::default());
        assert!(!rep.breaks_traffic() && rep.rows.iter().all(|r| r.proposed.is_none()));
    }

    #[test]
    fn the_log_and_the_model_disagree() {
        let e = engine(CLUSTER);
        let flows = vec![
            // Logged allowed; the model denies (db isolated, port 80 not allowed): a CNI that does not enforce.
            folded(pod("shop", "cache"), pod("shop", "db-0"), Some(80), allowed()),
            // Logged denied; the model allows (no policy selects cache).
            folded(
                pod("shop", "db-0"),
                pod("shop", "cache"),
                Some(80),
                Counts { ingress_denied: 1, ..Counts::default() },
            ),
            // Both: mixed, no disagreement counted.
            folded(
                pod("shop", "db-0"),
                pod("shop", "cache-b"),
                Some(80),
                Counts { allowed: 1, denied: 1, ..Counts::default() },
            ),
            // Seen only (no verdict).
            folded(pod("shop", "cache"), pod("shop", "db-0"), Some(81), Counts { unknown: 4, ..Counts::default() }),
        ];
        let rep = replay(&e, None, &flows, Options::default());
        let s = &rep.summary;
        assert_eq!(s.observed_allowed_model_denies.classes, 1);
        assert_eq!(s.observed_denied_model_allows.classes, 1);
        assert_eq!(s.mixed.classes, 1);
        assert_eq!(rep.rows[0].disagreement, Some(Disagreement::ObservedAllowedModelDenies));
        assert_eq!((rep.rows[1].observed, rep.rows[1].observed_side), (Observation::Denied, Side::Ingress));
        assert_eq!(rep.rows[1].disagreement, Some(Disagreement::ObservedDeniedModelAllows));
        assert_eq!((rep.rows[2].observed, rep.rows[2].disagreement), (Observation::Mixed, None));
        assert_eq!((rep.rows[3].observed, rep.rows[3].disagreement), (Observation::Seen, None));
    }

    #[test]
    fn a_verdict_logged_on_one_side_is_compared_with_that_side() {
        let e = engine(CLUSTER);
        // Egress allowed at the source (logged there only); the destination's ingress denies it. The log's
        // egress verdict agrees with the model's egress side: no disagreement.
        let f = folded(
            pod("shop", "cache"),
            pod("shop", "db-0"),
            Some(80),
            Counts { egress_allowed: 1, ..Counts::default() },
        );
        let rep = replay(&e, None, &[f], Options::default());
        assert_eq!(rep.rows[0].observed_side, Side::Egress);
        assert_eq!((rep.rows[0].current, rep.rows[0].disagreement), (Verdict::Allow, None));
        // Egress and ingress both logged allowed: the whole path; the model denies: a disagreement.
        let f = folded(
            pod("shop", "cache"),
            pod("shop", "db-0"),
            Some(80),
            Counts { egress_allowed: 1, ingress_allowed: 1, ..Counts::default() },
        );
        let rep = replay(&e, None, std::slice::from_ref(&f), Options { explain_all: true, ..Options::default() });
        assert_eq!(rep.rows[0].observed_side, Side::Both);
        assert_eq!(rep.rows[0].disagreement, Some(Disagreement::ObservedAllowedModelDenies));
        assert!(rep.rows[0].explain_current.is_some());
        // The verdicts only: the same row, without its explanation.
        let quiet = replay(&e, None, &[f], Options { explain_all: true, no_explanations: true });
        assert_eq!(quiet.rows[0].disagreement, Some(Disagreement::ObservedAllowedModelDenies));
        assert!(quiet.rows[0].explain_current.is_none() && quiet.rows[0].explain_proposed.is_none());
    }
}
