//! The guarantees of a generated set, checked by the engine on the rendered YAML laid over the cluster.

use std::collections::BTreeSet;
use std::net::IpAddr;

use netpol_core::compile::{Endpoint, Engine, FlowInfo};
use netpol_core::model::{Cluster, Direction, PodId};
use netpol_core::portset::Protocol;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use super::render::Rendered;
use super::{Dialect, Needed, Peer, Plan};
use crate::replay::{cause, is_unstable_label};

/// One guarantee's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Check {
    pub ok: bool,
    /// What was checked (connections, pairs).
    pub checked: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
}

/// A counterexample.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub flow: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

/// What the generated rules allow beyond the observed connections: (source pod or address, destination pod or
/// address, protocol, port) tuples that a generated rule grants and the cluster then allows, and that were not
/// observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OverAllow {
    /// Between other replicas of workloads whose traffic was observed on that port (expected).
    pub replicas: u64,
    /// Genuinely new reachability: workload pairs (or ports) never observed together.
    pub new: u64,
    /// Granted by the DNS rules only (DNS to the cluster's DNS pods, by design).
    pub dns: u64,
    /// The observed tuples themselves (granted and allowed).
    pub observed: u64,
}

/// The connectivity change against the policies in force.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delta {
    pub changed_pairs: u64,
    pub groups_newly_allowed: usize,
    pub groups_newly_denied: usize,
    pub outside_groups: usize,
}

/// Every guarantee.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verification {
    /// 1. Every observed allowed (or verdict-less) connection is allowed.
    pub coverage: Check,
    /// 2. Observed denials the current policies deny stay denied.
    pub observed_denials: Check,
    /// 3. No change between pods that are not subjects of the generated policies.
    pub collateral: Check,
    /// 4. Over-allow.
    pub over_allow: OverAllow,
    /// 5. Every observed connection keeps its verdict with every pod replaced by new replicas (twice as many).
    pub churn: Check,
    /// Against the policies in force.
    pub delta: Delta,
}

impl Verification {
    /// Whether every guarantee that fails a run holds (observed denials only when they are enforced).
    pub fn ok(&self, allow_observed_denials: bool) -> bool {
        self.coverage.ok && (self.observed_denials.ok || allow_observed_denials) && self.collateral.ok && self.churn.ok
    }
}

/// The rendered policies laid over `base` (as `kubectl apply` would), or why they cannot be.
pub fn apply_rendered(base: &Cluster, rendered: &[Rendered]) -> Result<Cluster, String> {
    let mut values = Vec::with_capacity(rendered.len());
    for r in rendered {
        for d in netpol_core::load::yaml_documents(&r.yaml) {
            match d {
                Ok(serde_json::Value::Null) => {}
                Ok(v) => values.push(v),
                Err(e) => return Err(format!("generated `{}` does not read back: {}", r.name, e.message)),
            }
        }
    }
    crate::overlay::apply(base, values, &[]).map_err(|e| format!("a generated policy is refused: {e}"))
}

fn name(e: &Engine, x: &Endpoint) -> String {
    match x {
        Endpoint::Pod { pod, .. } => e.cluster().pod_ref(*pod),
        Endpoint::External(ip) => ip.to_string(),
    }
}

fn flow_name(e: &Engine, n: &Needed) -> String {
    format!("{} -> {} {}", name(e, &n.src), name(e, &n.dst), netpol_core::verdict::flow_port_text(n.protocol, n.port))
}

/// Whether the dialect writes a rule for this observed connection (else it is listed as not expressible).
fn expressible(dialect: Dialect, plan: &Plan, n: &Needed) -> bool {
    if !n.protocol.has_ports() && !dialect.expresses_icmp() {
        return false;
    }
    if !dialect.ingress_from_addresses() {
        // Only an egress rule can carry it: the source must be a selectable pod.
        let from_address = match n.src {
            Endpoint::External(_) => true,
            Endpoint::Pod { pod, .. } => {
                plan.workload_of.get(pod.index()).and_then(|&w| plan.workloads.get(w)).is_some_and(|w| w.host_network)
            }
        };
        if from_address {
            return false;
        }
    }
    true
}

/// Pods a generated policy selects as its subject, per direction; the workloads a workload's selector selects.
struct Selection {
    /// Workload index -> the workloads its selector selects (its namespace, selectable ones).
    selects: Vec<Vec<usize>>,
}

impl Selection {
    fn new(plan: &Plan) -> Selection {
        let mut per_ns: FxHashMap<_, Vec<usize>> = FxHashMap::default();
        for (i, w) in plan.workloads.iter().enumerate() {
            if !w.host_network {
                per_ns.entry(w.ns).or_default().push(i);
            }
        }
        let selects = plan
            .workloads
            .iter()
            .map(|w| {
                if w.host_network {
                    return Vec::new();
                }
                per_ns
                    .get(&w.ns)
                    .map(|ids| {
                        ids.iter()
                            .copied()
                            .filter(|&o| {
                                plan.workloads.get(o).is_some_and(|o| super::selects(&w.selector, &w.absent, &o.stable))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        Selection { selects }
    }

    fn pods<'p>(&self, plan: &'p Plan, w: usize) -> impl Iterator<Item = PodId> + 'p {
        let ws: Vec<usize> = self.selects.get(w).cloned().unwrap_or_default();
        ws.into_iter().filter_map(|o| plan.workloads.get(o)).flat_map(|o| o.pods.iter().copied())
    }
}

/// Every tuple (source, destination, protocol, port) a generated rule grants, with whether only DNS rules grant
/// it. Per pod: the reference the identity-level count is checked against (tests), and what small plans use.
pub fn granted_pairs(plan: &Plan) -> FxHashMap<(PodOrAddr, PodOrAddr, Protocol, u16), bool> {
    let sel = Selection::new(plan);
    let mut out: FxHashMap<(PodOrAddr, PodOrAddr, Protocol, u16), bool> = FxHashMap::default();
    for p in &plan.policies {
        let subjects: Vec<PodId> = sel.pods(plan, p.subject).collect();
        for r in &p.rules {
            for peer in &r.peers {
                let peers: Vec<PodOrAddr> = match peer {
                    Peer::Workload(w) => sel.pods(plan, *w).map(PodOrAddr::Pod).collect(),
                    Peer::Address(ip) => vec![PodOrAddr::Address(*ip)],
                };
                for &(proto, port) in &r.ports {
                    for &s in &subjects {
                        for &x in &peers {
                            let (a, b) = match p.direction {
                                Direction::Ingress => (x, PodOrAddr::Pod(s)),
                                Direction::Egress => (PodOrAddr::Pod(s), x),
                            };
                            if a == b {
                                continue;
                            }
                            let e = out.entry((a, b, proto, port)).or_insert(true);
                            *e &= r.dns;
                        }
                    }
                }
            }
        }
    }
    out
}

/// A pod or an address (public form of an end of a granted tuple).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PodOrAddr {
    Pod(PodId),
    Address(IpAddr),
}

impl PodOrAddr {
    fn endpoint(self) -> Endpoint {
        match self {
            PodOrAddr::Pod(pod) => Endpoint::Pod { pod, ip: None },
            PodOrAddr::Address(ip) => Endpoint::External(ip),
        }
    }
}

/// The observed tuples, per pod (addresses for the ends outside the cluster and hostNetwork ends).
fn observed_tuples(plan: &Plan) -> FxHashSet<(PodOrAddr, PodOrAddr, Protocol, u16)> {
    let end = |e: &Endpoint| match e {
        Endpoint::Pod { pod, ip } => {
            let host =
                plan.workload_of.get(pod.index()).and_then(|&w| plan.workloads.get(w)).is_some_and(|w| w.host_network);
            match (host, ip) {
                (true, Some(ip)) => PodOrAddr::Address(*ip),
                _ => PodOrAddr::Pod(*pod),
            }
        }
        Endpoint::External(ip) => PodOrAddr::Address(*ip),
    };
    plan.needed.iter().map(|n| (end(&n.src), end(&n.dst), n.protocol, n.port)).collect()
}

/// The workload (or address) of an end, for "other replica" tests.
fn group_of(plan: &Plan, e: PodOrAddr) -> PodOrAddr {
    match e {
        PodOrAddr::Pod(p) => PodOrAddr::Pod(PodId::new(plan.workload_of.get(p.index()).copied().unwrap_or(0))),
        a => a,
    }
}

/// Over-allow counted tuple by tuple: the reference for [`over_allow`] (and what it computes for small plans).
pub fn over_allow_per_pod(plan: &Plan, after: &Engine) -> OverAllow {
    let observed = observed_tuples(plan);
    let observed_groups: FxHashSet<(PodOrAddr, PodOrAddr, Protocol, u16)> =
        observed.iter().map(|&(a, b, p, n)| (group_of(plan, a), group_of(plan, b), p, n)).collect();
    let mut o = OverAllow::default();
    for ((a, b, proto, port), dns_only) in granted_pairs(plan) {
        if !after.allowed_flow(&a.endpoint(), &b.endpoint(), FlowInfo::default(), proto, port) {
            continue;
        }
        if observed.contains(&(a, b, proto, port)) {
            o.observed += 1;
        } else if dns_only {
            o.dns += 1;
        } else if observed_groups.contains(&(group_of(plan, a), group_of(plan, b), proto, port)) {
            o.replicas += 1;
        } else {
            o.new += 1;
        }
    }
    o
}

/// Over-allow by identity: every granted (source identity or address, destination identity or address, port)
/// judged once on a representative pair and weighted by its pods; the observed tuples, judged one by one, are
/// taken out of their group.
pub fn over_allow(plan: &Plan, after: &Engine) -> OverAllow {
    let sel = Selection::new(plan);
    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    enum K {
        Id(u32),
        Addr(IpAddr),
    }
    // Identity of each pod in `after`, and its pod count.
    let id_of = |p: PodId| after.pod_identity(p).index() as u32;
    let mut region: FxHashMap<(K, K, Protocol, u16), bool> = FxHashMap::default();
    let mut reps: FxHashMap<u32, PodId> = FxHashMap::default();
    for p in &plan.policies {
        let subject_ids: BTreeSet<u32> = sel
            .pods(plan, p.subject)
            .map(|x| {
                let i = id_of(x);
                reps.entry(i).or_insert(x);
                i
            })
            .collect();
        for r in &p.rules {
            for peer in &r.peers {
                let peers: Vec<K> = match peer {
                    Peer::Workload(w) => {
                        let ids: BTreeSet<u32> = sel
                            .pods(plan, *w)
                            .map(|x| {
                                let i = id_of(x);
                                reps.entry(i).or_insert(x);
                                i
                            })
                            .collect();
                        ids.into_iter().map(K::Id).collect()
                    }
                    Peer::Address(ip) => vec![K::Addr(*ip)],
                };
                for &(proto, port) in &r.ports {
                    for &s in &subject_ids {
                        for &x in &peers {
                            let (a, b) = match p.direction {
                                Direction::Ingress => (x, K::Id(s)),
                                Direction::Egress => (K::Id(s), x),
                            };
                            let e = region.entry((a, b, proto, port)).or_insert(true);
                            *e &= r.dns;
                        }
                    }
                }
            }
        }
    }
    let count = |k: K| -> u64 {
        match k {
            K::Id(i) => after.identity(netpol_core::compile::IdentityId::new(i as usize)).pods.len() as u64,
            K::Addr(_) => 1,
        }
    };
    let endpoint = |k: K| -> Endpoint {
        match k {
            K::Id(i) => Endpoint::Pod { pod: reps.get(&i).copied().unwrap_or_default(), ip: None },
            K::Addr(ip) => Endpoint::External(ip),
        }
    };
    let workload = |k: K| -> PodOrAddr {
        match k {
            K::Id(i) => group_of(plan, PodOrAddr::Pod(reps.get(&i).copied().unwrap_or_default())),
            K::Addr(ip) => PodOrAddr::Address(ip),
        }
    };
    let observed = observed_tuples(plan);
    let observed_groups: FxHashSet<(PodOrAddr, PodOrAddr, Protocol, u16)> =
        observed.iter().map(|&(a, b, p, n)| (group_of(plan, a), group_of(plan, b), p, n)).collect();
    // Observed tuples per region key (each one granted and allowed is taken out of its key's count).
    let key_of = |e: PodOrAddr| match e {
        PodOrAddr::Pod(p) => K::Id(id_of(p)),
        PodOrAddr::Address(a) => K::Addr(a),
    };
    let mut observed_in: FxHashMap<(K, K, Protocol, u16), u64> = FxHashMap::default();
    for &(a, b, p, n) in &observed {
        if a != b {
            *observed_in.entry((key_of(a), key_of(b), p, n)).or_default() += 1;
        }
    }
    let mut o = OverAllow::default();
    for (&(a, b, proto, port), &dns_only) in &region {
        if !after.allowed_flow(&endpoint(a), &endpoint(b), FlowInfo::default(), proto, port) {
            continue;
        }
        let mut n = count(a) * count(b);
        if a == b {
            // A pod's traffic to itself is not a pair.
            n -= count(a);
        }
        let seen = observed_in.get(&(a, b, proto, port)).copied().unwrap_or(0).min(n);
        o.observed += seen;
        let rest = n - seen;
        if dns_only {
            o.dns += rest;
        } else if observed_groups.contains(&(workload(a), workload(b), proto, port)) {
            o.replicas += rest;
        } else {
            o.new += rest;
        }
    }
    o
}

/// The cluster with every pod replaced by two new replicas (hostNetwork pods by one, on the same node address):
/// new names, the per-replica labels changed, the first replica with the old addresses, the second with none.
/// Returns the cluster and, per old pod, its replicas.
pub fn churned(c: &Cluster) -> (Cluster, Vec<Vec<PodId>>) {
    let mut out = c.clone();
    out.pods = Vec::with_capacity(c.pods.len() * 2);
    let mut replicas = Vec::with_capacity(c.pods.len());
    for p in &c.pods {
        let mut ids = Vec::new();
        let copies = if p.host_network { 1 } else { 2 };
        for k in 0..copies {
            let mut q = p.clone();
            q.name = format!("{}-churn{}", p.name, k + 1);
            let mut labels = netpol_core::labels::Labels::new();
            for (key, v) in p.labels.iter() {
                if is_unstable_label(key) {
                    labels.insert(key, format!("{v}-churn{}", k + 1).as_str());
                } else {
                    labels.insert(key, v);
                }
            }
            q.labels = labels;
            if k > 0 {
                q.ips.clear();
            }
            ids.push(PodId::new(out.pods.len()));
            out.pods.push(q);
        }
        replicas.push(ids);
    }
    (out, replicas)
}

fn change_word(c: netpol_core::diff::Change) -> &'static str {
    match c {
        netpol_core::diff::Change::NewlyAllowed => "newly allowed",
        netpol_core::diff::Change::NewlyDenied => "newly denied",
    }
}

/// Runs every check. `after` is `current`'s cluster with the rendered policies.
pub fn verify(current: &Engine, after: &Engine, plan: &Plan, rendered: &[Rendered], dialect: Dialect) -> Verification {
    let mut v = Verification::default();
    // 1. Coverage.
    v.coverage.ok = true;
    for n in &plan.needed {
        if !expressible(dialect, plan, n) {
            continue;
        }
        v.coverage.checked += n.connections;
        if !after.allowed_flow(&n.src, &n.dst, FlowInfo::default(), n.protocol, n.port) {
            v.coverage.ok = false;
            v.coverage.failures.push(Failure {
                flow: flow_name(current, n),
                reason: cause(&after.explain(&n.src, &n.dst, n.protocol, n.port)),
                file: Some(n.file.clone()),
                line: Some(n.line),
            });
        }
    }
    // 2. Observed denials.
    v.observed_denials.ok = true;
    for n in &plan.denied {
        if current.allowed_flow(&n.src, &n.dst, FlowInfo::default(), n.protocol, n.port) {
            // The policies in force already allow it (the log and the model disagree): not the generated set's.
            continue;
        }
        v.observed_denials.checked += n.connections;
        if after.allowed_flow(&n.src, &n.dst, FlowInfo::default(), n.protocol, n.port) {
            v.observed_denials.ok = false;
            let ex = after.explain(&n.src, &n.dst, n.protocol, n.port);
            v.observed_denials.failures.push(Failure {
                flow: flow_name(current, n),
                reason: format!("logged denied, allowed with the generated policies: {}", cause(&ex)),
                file: Some(n.file.clone()),
                line: Some(n.line),
            });
        }
    }
    // 3. Collateral: every changed pair has its source an egress subject or its destination an ingress subject.
    let sel = Selection::new(plan);
    let mut subjects: [FxHashSet<String>; 2] = [FxHashSet::default(), FxHashSet::default()];
    for p in &plan.policies {
        let d = usize::from(p.direction == Direction::Egress);
        if let Some(set) = subjects.get_mut(d) {
            set.extend(sel.pods(plan, p.subject).map(|x| current.cluster().pod_ref(x)));
        }
    }
    let [ingress_subjects, egress_subjects] = &subjects;
    let d = netpol_core::diff::diff(current, after, &netpol_core::diff::DiffOptions::default());
    v.collateral.ok = true;
    v.collateral.checked = d.changed_pairs + d.unchanged_pairs;
    v.delta = Delta {
        changed_pairs: d.changed_pairs,
        groups_newly_allowed: d.groups.iter().filter(|g| g.change == netpol_core::diff::Change::NewlyAllowed).count(),
        groups_newly_denied: d.groups.iter().filter(|g| g.change == netpol_core::diff::Change::NewlyDenied).count(),
        outside_groups: d.outside.len(),
    };
    for g in &d.groups {
        let srcs: Vec<&String> = g.sources.iter().filter(|s| !egress_subjects.contains(*s)).collect();
        let dsts: Vec<&String> = g.destinations.iter().filter(|s| !ingress_subjects.contains(*s)).collect();
        let pair = srcs.iter().find_map(|s| dsts.iter().find(|d| d != &s).map(|d| (*s, *d)));
        if let Some((s, d)) = pair {
            v.collateral.ok = false;
            v.collateral.failures.push(Failure {
                flow: format!("{s} -> {d} {}", g.ports),
                reason: format!(
                    "changed ({}) between pods that no generated policy selects: {}",
                    change_word(g.change),
                    g.cause
                ),
                file: None,
                line: None,
            });
        }
    }
    for g in &d.outside {
        let subjects = if g.direction == Direction::Egress { egress_subjects } else { ingress_subjects };
        if let Some(p) = g.pods.iter().find(|p| !subjects.contains(*p)) {
            v.collateral.ok = false;
            v.collateral.failures.push(Failure {
                flow: format!("{p} {} {}", g.direction, g.addresses.join(",")),
                reason: format!("changed ({}) for a pod no generated policy selects", change_word(g.change)),
                file: None,
                line: None,
            });
        }
    }
    // 4. Over-allow.
    v.over_allow = over_allow(plan, after);
    // 5. Churn: the same verdicts with every pod replaced.
    v.churn.ok = true;
    let (churned_cluster, replicas) = churned(current.cluster());
    match apply_rendered(&churned_cluster, rendered) {
        Err(e) => {
            v.churn.ok = false;
            v.churn.failures.push(Failure { flow: String::new(), reason: e, file: None, line: None });
        }
        Ok(c) => {
            let churn = Engine::with_cni(c, current.cni_choice());
            let variants = |e: &Endpoint| -> Vec<Endpoint> {
                match e {
                    Endpoint::Pod { pod, ip } => replicas
                        .get(pod.index())
                        .map(|r| {
                            r.iter()
                                .enumerate()
                                .map(|(k, &q)| Endpoint::Pod { pod: q, ip: if k == 0 { *ip } else { None } })
                                .collect()
                        })
                        .unwrap_or_default(),
                    x => vec![*x],
                }
            };
            for n in plan.needed.iter().chain(&plan.denied) {
                let want = after.allowed_flow(&n.src, &n.dst, FlowInfo::default(), n.protocol, n.port);
                // A pod's traffic to itself stays a replica's traffic to itself.
                let own =
                    matches!((&n.src, &n.dst), (Endpoint::Pod { pod: a, .. }, Endpoint::Pod { pod: b, .. }) if a == b);
                for (i, s) in variants(&n.src).into_iter().enumerate() {
                    for (j, d) in variants(&n.dst).into_iter().enumerate() {
                        if own && i != j {
                            continue;
                        }
                        v.churn.checked += 1;
                        let got = churn.allowed_flow(&s, &d, FlowInfo::default(), n.protocol, n.port);
                        if got != want {
                            v.churn.ok = false;
                            v.churn.failures.push(Failure {
                                flow: format!(
                                    "{} -> {} {}",
                                    name(&churn, &s),
                                    name(&churn, &d),
                                    netpol_core::verdict::flow_port_text(n.protocol, n.port)
                                ),
                                reason: format!(
                                    "{} with the replaced pods, {} before: {}",
                                    if got { "allowed" } else { "denied" },
                                    if want { "allowed" } else { "denied" },
                                    cause(&churn.explain(&s, &d, n.protocol, n.port))
                                ),
                                file: Some(n.file.clone()),
                                line: Some(n.line),
                            });
                        }
                    }
                }
            }
        }
    }
    v
}
