//! `netpol generate`: the policies observed traffic needs, written in one dialect and checked, every run, with the
//! engine itself.
//!
//! The plan: pods are grouped into workloads (namespace and workload-stable labels: [`crate::replay::is_unstable_label`]
//! keys left out, so replicas and revisions of one Deployment are one workload). Every observed connection that was
//! allowed (or logged with no verdict) makes a requirement on its source's workload (egress) and on its
//! destination's (ingress): one policy per workload and direction, whose rules allow exactly the observed peers and
//! ports, peers with the same ports sharing a rule. A peer workload is selected by the smallest set of its stable
//! labels that selects the same workloads of its namespace as all of them; an address outside the cluster is one
//! `/32` or `/128`. Egress policies also allow DNS to the cluster's own DNS pods (the `kube-system/kube-dns`
//! Service's backends, else pods labelled `k8s-app=kube-dns`), selected by their real labels.
//!
//! The check ([`verify`]) loads the rendered YAML over the cluster and asks the engine: coverage, observed denials,
//! no collateral change, over-allow on the connectivity of the granted region, and stability under churn.

pub mod render;
pub mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use netpol_core::compile::{Endpoint, Engine};
use netpol_core::model::{Direction, NsId, PodId};
use netpol_core::portset::Protocol;
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::flowlog::Folded;
use crate::replay::{is_unstable_label, observation, EndResolver, Observation, Unresolved};

/// The policy dialect to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Kubernetes NetworkPolicy (`networking.k8s.io/v1`).
    NetworkPolicy,
    /// ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`), in the Baseline tier: each accepts the observed
    /// traffic of its subject and denies the rest, below every NetworkPolicy.
    ClusterNetworkPolicy,
    /// CiliumNetworkPolicy (`cilium.io/v2`).
    Cilium,
    /// Calico NetworkPolicy (`projectcalico.org/v3`), in the default tier.
    Calico,
}

impl Dialect {
    pub fn parse(s: &str) -> Result<Dialect, String> {
        match s.to_ascii_lowercase().as_str() {
            "networkpolicy" => Ok(Dialect::NetworkPolicy),
            "clusternetworkpolicy" | "cnp" => Ok(Dialect::ClusterNetworkPolicy),
            "cilium" | "ciliumnetworkpolicy" => Ok(Dialect::Cilium),
            "calico" => Ok(Dialect::Calico),
            _ => Err(format!("unknown dialect `{s}`: networkpolicy, clusternetworkpolicy, cilium or calico")),
        }
    }

    /// Whether the dialect can allow an ICMP message without allowing every protocol.
    pub fn expresses_icmp(self) -> bool {
        matches!(self, Dialect::Cilium | Dialect::Calico)
    }

    /// Whether an ingress rule can name addresses outside the cluster.
    pub fn ingress_from_addresses(self) -> bool {
        !matches!(self, Dialect::ClusterNetworkPolicy)
    }
}

/// Options of a generation.
#[derive(Clone, Debug)]
pub struct Options {
    pub dialect: Dialect,
    /// Only workloads of this namespace become subjects (their peers may be anywhere).
    pub namespace: Option<String>,
    /// Do not fail when a generated policy allows a connection the log shows denied.
    pub allow_observed_denials: bool,
}

/// A workload: the pods of one namespace with the same stable labels.
#[derive(Clone, Debug)]
pub struct Workload {
    pub ns: NsId,
    pub namespace: String,
    /// Its name in policy names (from `app.kubernetes.io/name`, `app`, `k8s-app`, or its pods' names).
    pub name: String,
    /// The stable labels, sorted.
    pub stable: Vec<(String, String)>,
    /// What selects it: the fewest stable labels that select the same workloads of its namespace...
    pub selector: Vec<(String, String)>,
    /// ... and the keys that must be absent (`DoesNotExist`) to leave out the workloads with more labels.
    pub absent: Vec<String>,
    pub pods: Vec<PodId>,
    pub host_network: bool,
}

/// A rule's peer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// A workload (index into [`Plan::workloads`]).
    Workload(usize),
    /// An address: outside the cluster, or a hostNetwork pod's (selectors do not select those).
    Address(IpAddr),
}

/// One rule: these peers, on these ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub peers: Vec<Peer>,
    /// (protocol, port); for ICMP the message (`type << 8 | code`).
    pub ports: Vec<(Protocol, u16)>,
    /// The DNS rule every egress policy gets (not from observed traffic).
    pub dns: bool,
}

/// One generated policy: a workload's allowed traffic in one direction.
#[derive(Clone, Debug)]
pub struct PlannedPolicy {
    pub subject: usize,
    pub direction: Direction,
    pub name: String,
    pub rules: Vec<Rule>,
    /// Observed connections it allows.
    pub connections: u64,
}

/// The cluster's DNS pods, as egress rules allow them.
#[derive(Clone, Debug, Serialize)]
pub struct Dns {
    pub namespace: String,
    /// The labels the rule selects them by.
    pub labels: BTreeMap<String, String>,
    pub pods: usize,
    /// How they were found.
    pub found_by: String,
}

/// An observed connection, resolved, with what the plan does with it.
#[derive(Clone, Debug)]
pub struct Needed {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub protocol: Protocol,
    pub port: u16,
    pub observation: Observation,
    pub connections: u64,
    pub file: String,
    pub line: u64,
}

/// The plan, before rendering.
#[derive(Clone, Debug)]
pub struct Plan {
    pub workloads: Vec<Workload>,
    /// Workload of each pod.
    pub workload_of: Vec<usize>,
    pub policies: Vec<PlannedPolicy>,
    /// Observed connections that were allowed or seen (what coverage checks).
    pub needed: Vec<Needed>,
    /// Observed connections that were denied (what must stay denied).
    pub denied: Vec<Needed>,
    pub unresolved: Vec<Unresolved>,
    /// What the dialect cannot express, and what the plan therefore leaves out.
    pub not_expressible: Vec<String>,
    pub notes: Vec<String>,
    pub dns: Option<Dns>,
}

/// Label keys that name a workload best, in order.
const NAME_KEYS: &[&str] =
    &["app.kubernetes.io/name", "app", "k8s-app", "app.kubernetes.io/instance", "name", "component"];

/// A DNS-1123 label from `s` (lowercase letters, digits and `-`), at most `max` long.
fn dns_label(s: &str, max: usize) -> String {
    let mut out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    out.truncate(max);
    let t = out.trim_matches('-').to_string();
    if t.is_empty() {
        "workload".to_string()
    } else {
        t
    }
}

/// A workload's name: a naming label's value, else its first pod's name without the replica suffixes.
fn workload_name(stable: &[(String, String)], pod_name: &str, had_hash: bool, ordinal: bool) -> String {
    for k in NAME_KEYS {
        if let Some((_, v)) = stable.iter().find(|(key, _)| key == k) {
            return dns_label(v, 40);
        }
    }
    let mut name = pod_name;
    let strip = |n: &str| n.rsplit_once('-').map_or(n, |(head, _)| head).to_string();
    let owned;
    if had_hash {
        // Deployment pods: NAME-HASH-SUFFIX.
        owned = strip(&strip(name));
        name = &owned;
    } else if ordinal {
        owned = strip(name);
        name = &owned;
    }
    dns_label(name, 40)
}

/// Every `k` of `n` indexes, in lexicographic order.
fn combinations(n: usize, k: usize, out: &mut Vec<Vec<usize>>) {
    fn go(start: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            go(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    go(0, n, k, &mut Vec::new(), out);
}

fn has_all(labels: &[(String, String)], wanted: &[&(String, String)]) -> bool {
    wanted.iter().all(|w| labels.binary_search(w).is_ok())
}

/// A selector: labels, and keys that must be absent.
type Chosen = (Vec<(String, String)>, Vec<String>);

/// The fewest of `w`'s stable labels (at most 3, preferring naming keys) that select the same workloads among
/// `others` (the namespace's workloads' stable labels) as all of them (else all of them); and the label keys that
/// must be absent to leave out the workloads that carry all of `w`'s labels and more (a canary with an extra
/// `track` label): one extra key of each, the smallest. Together they select `w`'s pods and no other workload's.
fn minimal_selector(
    stable: &[(String, String)],
    others: &[&[(String, String)]],
) -> (Vec<(String, String)>, Vec<String>) {
    let all: Vec<&(String, String)> = stable.iter().collect();
    let target: Vec<bool> = others.iter().map(|o| has_all(o, &all)).collect();
    let keys: BTreeSet<&str> = stable.iter().map(|(k, _)| k.as_str()).collect();
    let absent: BTreeSet<String> = others
        .iter()
        .zip(&target)
        .filter(|(o, &t)| t && **o != stable)
        .filter_map(|(o, _)| o.iter().map(|(k, _)| k.as_str()).find(|k| !keys.contains(k)).map(str::to_string))
        .collect();
    let absent: Vec<String> = absent.into_iter().collect();
    let mut order: Vec<&(String, String)> = stable.iter().collect();
    order
        .sort_by_key(|(k, v)| (NAME_KEYS.iter().position(|n| n == k).unwrap_or(NAME_KEYS.len()), k.clone(), v.clone()));
    for size in 1..=order.len().min(3) {
        let mut combos = Vec::new();
        combinations(order.len(), size, &mut combos);
        for c in combos {
            let pick: Vec<&(String, String)> = c.iter().filter_map(|&i| order.get(i).copied()).collect();
            if others.iter().zip(&target).all(|(o, &t)| has_all(o, &pick) == t) {
                let mut sel: Vec<(String, String)> = pick.into_iter().cloned().collect();
                sel.sort();
                return (sel, absent);
            }
        }
    }
    (stable.to_vec(), absent)
}

/// Whether a workload's stable labels are selected by `selector` and `absent`.
pub fn selects(selector: &[(String, String)], absent: &[String], stable: &[(String, String)]) -> bool {
    selector.iter().all(|l| stable.binary_search(l).is_ok()) && !stable.iter().any(|(k, _)| absent.contains(k))
}

/// Groups the cluster's pods into workloads (sorted by namespace, then stable labels: deterministic).
pub fn workloads(engine: &Engine) -> (Vec<Workload>, Vec<usize>) {
    let c = engine.cluster();
    // (namespace, stable labels, hostNetwork) -> pods.
    type Key = (String, Vec<(String, String)>, bool);
    let mut by_key: BTreeMap<Key, Vec<PodId>> = BTreeMap::new();
    for (i, p) in c.pods.iter().enumerate() {
        let stable: Vec<(String, String)> = p
            .labels
            .iter()
            .filter(|(k, _)| !is_unstable_label(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        by_key.entry((c.ns(p.ns).name.clone(), stable, p.host_network)).or_default().push(PodId::new(i));
    }
    let mut list: Vec<Workload> = Vec::with_capacity(by_key.len());
    for ((namespace, stable, host_network), pods) in by_key {
        let Some(&first) = pods.first() else { continue };
        let p = c.pod(first);
        let had_hash = p.labels.contains_key("pod-template-hash");
        let ordinal = p.labels.contains_key("statefulset.kubernetes.io/pod-name")
            || p.labels.contains_key("apps.kubernetes.io/pod-index");
        let name = workload_name(&stable, &p.name, had_hash, ordinal);
        list.push(Workload {
            ns: p.ns,
            namespace,
            name,
            selector: Vec::new(),
            absent: Vec::new(),
            stable,
            pods,
            host_network,
        });
    }
    // Selectors, per namespace, among the namespace's selectable workloads.
    let mut per_ns: FxHashMap<NsId, Vec<usize>> = FxHashMap::default();
    for (i, w) in list.iter().enumerate() {
        if !w.host_network {
            per_ns.entry(w.ns).or_default().push(i);
        }
    }
    for idx in per_ns.values() {
        let labels: Vec<&[(String, String)]> =
            idx.iter().filter_map(|&i| list.get(i)).map(|w| w.stable.as_slice()).collect();
        let sels: Vec<(usize, Chosen)> =
            idx.iter().filter_map(|&i| list.get(i).map(|w| (i, minimal_selector(&w.stable, &labels)))).collect();
        for (i, (sel, absent)) in sels {
            if let Some(w) = list.get_mut(i) {
                w.selector = sel;
                w.absent = absent;
            }
        }
    }
    // Names unique per namespace: later ones get `-2`, `-3`, ...
    let mut seen: FxHashMap<(String, String), usize> = FxHashMap::default();
    for w in &mut list {
        let n = seen.entry((w.namespace.clone(), w.name.clone())).or_insert(0);
        *n += 1;
        if *n > 1 {
            w.name = format!("{}-{n}", w.name);
        }
    }
    let mut of = vec![0usize; c.pods.len()];
    for (i, w) in list.iter().enumerate() {
        for p in &w.pods {
            if let Some(slot) = of.get_mut(p.index()) {
                *slot = i;
            }
        }
    }
    (list, of)
}

/// The cluster's DNS pods: the backends of Service `kube-system/kube-dns` (by its selector), else the pods
/// labelled `k8s-app=kube-dns`; `None` when there are none.
pub fn dns_pods(engine: &Engine) -> Option<(Vec<PodId>, String)> {
    let c = engine.cluster();
    let select = |ns: Option<&str>, sel: &[(String, String)]| -> Vec<PodId> {
        c.pods
            .iter()
            .enumerate()
            .filter(|(_, p)| ns.is_none_or(|n| c.ns(p.ns).name == n))
            .filter(|(_, p)| sel.iter().all(|(k, v)| p.labels.get(k) == Some(v.as_str())))
            .map(|(i, _)| PodId::new(i))
            .collect()
    };
    let svc = c.services.iter().find(|s| s.namespace == "kube-system" && s.name == "kube-dns");
    if let Some(sel) = svc.and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty()) {
        let sel: Vec<(String, String)> = sel.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let pods = select(Some("kube-system"), &sel);
        if !pods.is_empty() {
            return Some((pods, "the backends of Service kube-system/kube-dns".to_string()));
        }
    }
    let pods = select(None, &[("k8s-app".to_string(), "kube-dns".to_string())]);
    (!pods.is_empty()).then(|| (pods, "pods labelled k8s-app=kube-dns".to_string()))
}

/// Where a flow's end is in the plan.
enum At {
    Workload(usize),
    /// A hostNetwork pod (an address to the other side, no subject) or an address outside the cluster.
    Address(IpAddr),
    /// A hostNetwork pod with no address: cannot be a peer.
    Nowhere,
}

fn at(engine: &Engine, workload_of: &[usize], workloads: &[Workload], e: &Endpoint) -> At {
    match e {
        Endpoint::External(ip) => At::Address(*ip),
        Endpoint::Pod { pod, ip } => {
            let w = workload_of.get(pod.index()).copied().unwrap_or(0);
            if workloads.get(w).is_some_and(|w| w.host_network) {
                match ip.or_else(|| engine.cluster().pod(*pod).primary_ip()) {
                    Some(ip) => At::Address(ip),
                    None => At::Nowhere,
                }
            } else {
                At::Workload(w)
            }
        }
    }
}

/// The plan for the observed flows (folded and not yet resolved).
pub fn plan(engine: &Engine, flows: &[Folded], opts: &Options) -> Plan {
    let (workloads, workload_of) = workloads(engine);
    let r = EndResolver::new(engine);
    let mut plan = Plan {
        workloads: Vec::new(),
        workload_of: Vec::new(),
        policies: Vec::new(),
        needed: Vec::new(),
        denied: Vec::new(),
        unresolved: Vec::new(),
        not_expressible: Vec::new(),
        notes: Vec::new(),
        dns: None,
    };
    for f in flows {
        let (src, dst, port) = match r.resolve_folded(f) {
            Ok(x) => (x.src, x.dst, x.port),
            Err(u) => {
                plan.unresolved.push(*u);
                continue;
            }
        };
        let (obs, _) = observation(f);
        let n = Needed {
            src,
            dst,
            protocol: f.protocol,
            port,
            observation: obs,
            connections: f.connections,
            file: f.file.clone(),
            line: f.line,
        };
        if obs == Observation::Denied {
            plan.denied.push(n);
        } else {
            plan.needed.push(n);
        }
    }
    // Requirements: (subject workload, direction) -> peer -> ports, and connections.
    type Reqs = BTreeMap<(usize, u8), (BTreeMap<Peer, BTreeSet<(Protocol, u16)>>, u64)>;
    let mut reqs: Reqs = BTreeMap::new();
    let in_scope = |w: &Workload| opts.namespace.as_deref().is_none_or(|n| w.namespace == n);
    let mut icmp_left = 0u64;
    let mut ingress_addresses_left = 0u64;
    let mut host_subjects: BTreeSet<String> = BTreeSet::new();
    let mut own_traffic = 0u64;
    for n in &plan.needed {
        if matches!((&n.src, &n.dst), (Endpoint::Pod { pod: a, .. }, Endpoint::Pod { pod: b, .. }) if a == b) {
            // A pod's traffic to itself is never a policy's to allow or deny.
            own_traffic += n.connections;
            continue;
        }
        if !n.protocol.has_ports() && !opts.dialect.expresses_icmp() {
            icmp_left += 1;
            continue;
        }
        let (s, d) = (at(engine, &workload_of, &workloads, &n.src), at(engine, &workload_of, &workloads, &n.dst));
        let peer_of = |a: &At| match a {
            At::Workload(w) => Some(Peer::Workload(*w)),
            At::Address(ip) => Some(Peer::Address(*ip)),
            At::Nowhere => None,
        };
        // Egress of the source's workload.
        if let (At::Workload(w), Some(p)) = (&s, peer_of(&d)) {
            if workloads.get(*w).is_some_and(in_scope) {
                let e = reqs.entry((*w, 1)).or_default();
                e.0.entry(p).or_default().insert((n.protocol, n.port));
                e.1 += n.connections;
            }
        }
        if let At::Workload(w) = &d {
            if workloads.get(*w).is_some_and(in_scope) {
                match peer_of(&s) {
                    Some(Peer::Address(_)) if !opts.dialect.ingress_from_addresses() => ingress_addresses_left += 1,
                    Some(p) => {
                        let e = reqs.entry((*w, 0)).or_default();
                        e.0.entry(p).or_default().insert((n.protocol, n.port));
                        e.1 += n.connections;
                    }
                    None => {}
                }
            }
        }
        for (a, e) in [(&s, &n.src), (&d, &n.dst)] {
            if let (At::Address(_), Endpoint::Pod { pod, .. }) = (a, e) {
                host_subjects.insert(engine.cluster().pod_ref(*pod));
            }
        }
    }
    if own_traffic > 0 {
        plan.notes
            .push(format!("{own_traffic} observed connection(s) of a pod to itself: always allowed, no rule written"));
    }
    if icmp_left > 0 {
        plan.not_expressible.push(format!(
            "{icmp_left} observed ICMP flow(s): {} allows ICMP only with every other protocol, so no rule was written \
             for them (--dialect cilium or calico can)",
            render::dialect_name(opts.dialect)
        ));
    }
    if ingress_addresses_left > 0 {
        plan.not_expressible.push(format!(
            "{ingress_addresses_left} observed flow(s) from addresses outside the cluster: a ClusterNetworkPolicy's \
             ingress rules select pods and namespaces only, so no rule was written for them"
        ));
    }
    if !host_subjects.is_empty() {
        plan.notes.push(format!(
            "hostNetwork pods are never a policy's subject, and are peers by address: {}",
            host_subjects.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    // DNS: the real DNS pods, by the labels of their workload.
    let has_egress = reqs.keys().any(|(_, d)| *d == 1);
    let dns_workload = if has_egress {
        match dns_pods(engine) {
            Some((pods, how)) => {
                let ws: BTreeSet<usize> = pods.iter().filter_map(|p| workload_of.get(p.index()).copied()).collect();
                if ws.len() > 1 {
                    plan.notes.push(format!(
                        "the DNS pods ({how}) are {} workloads; egress policies allow DNS to each",
                        ws.len()
                    ));
                }
                if let Some(w) = ws.iter().next().and_then(|&w| workloads.get(w)) {
                    plan.dns = Some(Dns {
                        namespace: w.namespace.clone(),
                        labels: w.selector.iter().cloned().collect(),
                        pods: pods.len(),
                        found_by: how,
                    });
                }
                ws.into_iter().collect()
            }
            None => {
                plan.notes.push(
                    "no DNS pods in the cluster (no Service kube-system/kube-dns with backends, no pod labelled \
                     k8s-app=kube-dns): the egress policies allow no DNS beyond what was observed"
                        .to_string(),
                );
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    // Policies: one per (workload, direction); peers with the same ports share a rule.
    let mut names: BTreeSet<(String, String)> = engine
        .cluster()
        .policies
        .iter()
        .filter_map(|p| p.ns().map(|ns| (engine.cluster().ns(ns).name.clone(), p.name.clone())))
        .collect();
    for ((w, d), (peers, connections)) in reqs {
        let direction = if d == 0 { Direction::Ingress } else { Direction::Egress };
        let dns_rule = direction == Direction::Egress && !dns_workload.is_empty();
        let dns_ports = [(Protocol::Tcp, 53), (Protocol::Udp, 53)];
        let mut by_ports: BTreeMap<Vec<(Protocol, u16)>, Vec<Peer>> = BTreeMap::new();
        for (peer, ports) in peers {
            // Observed DNS to the DNS pods: the DNS rule below allows it.
            let to_dns = matches!(peer, Peer::Workload(w) if dns_workload.contains(&w));
            if dns_rule && to_dns && ports.iter().all(|p| dns_ports.contains(p)) {
                continue;
            }
            by_ports.entry(ports.into_iter().collect()).or_default().push(peer);
        }
        let mut rules: Vec<Rule> =
            by_ports.into_iter().map(|(ports, peers)| Rule { peers, ports, dns: false }).collect();
        if dns_rule {
            rules.push(Rule {
                peers: dns_workload.iter().map(|&w| Peer::Workload(w)).collect(),
                ports: dns_ports.to_vec(),
                dns: true,
            });
        }
        let Some(wl) = workloads.get(w) else { continue };
        let base = format!("{}-{}", wl.name, if d == 0 { "ingress" } else { "egress" });
        let mut name = base.clone();
        let mut k = 1;
        while names.contains(&(wl.namespace.clone(), name.clone())) {
            k += 1;
            name = format!("{base}-{k}");
        }
        names.insert((wl.namespace.clone(), name.clone()));
        plan.policies.push(PlannedPolicy { subject: w, direction, name, rules, connections });
    }
    let unlabelled: BTreeSet<String> = plan
        .policies
        .iter()
        .flat_map(|p| {
            std::iter::once(p.subject).chain(p.rules.iter().flat_map(|r| r.peers.iter()).filter_map(|x| match x {
                Peer::Workload(w) => Some(*w),
                Peer::Address(_) => None,
            }))
        })
        .filter_map(|w| workloads.get(w))
        .filter(|w| w.selector.is_empty() && w.absent.is_empty())
        .map(|w| format!("{}/{}", w.namespace, w.name))
        .collect();
    if !unlabelled.is_empty() {
        plan.notes.push(format!(
            "workloads whose pods have no stable labels are selected by an empty selector (every pod of their \
             namespace): {}",
            unlabelled.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    plan.workloads = workloads;
    plan.workload_of = workload_of;
    plan
}

/// One generated policy, as the report lists it.
#[derive(Clone, Debug, Serialize)]
pub struct PolicySummary {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// The workload it selects (`namespace/name`) and its selector (labels, and keys that must be absent).
    pub subject: String,
    pub selector: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub selector_absent: Vec<String>,
    pub direction: Direction,
    pub rules: usize,
    pub peers: usize,
    /// Observed connections it allows.
    pub connections: u64,
}

/// Sizes of the generated set.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Sizes {
    pub policies: usize,
    pub rules: usize,
    pub peers: usize,
    /// Labels in every selector written (subjects and peers).
    pub selector_labels: usize,
}

/// The report of a generation: what was written, and every guarantee's check.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Every guarantee that fails a run holds.
    pub ok: bool,
    pub dialect: Dialect,
    pub policies: Vec<PolicySummary>,
    pub sizes: Sizes,
    /// Observed connections that were allowed or seen, and that were denied.
    pub observed_needed: u64,
    pub observed_denied: u64,
    #[serde(flatten)]
    pub verification: verify::Verification,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<Unresolved>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_expressible: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What a generation gives: the policies (YAML, in plan order) and the report.
pub struct Generated {
    pub rendered: Vec<render::Rendered>,
    pub report: Report,
    pub plan: Plan,
}

/// Plans, renders and verifies. An error only when the rendered policies cannot be read back or applied (a bug:
/// the report's checks are for everything else).
pub fn generate(engine: &Engine, flows: &[Folded], opts: &Options) -> Result<Generated, String> {
    let plan = plan(engine, flows, opts);
    let rendered = render::render(&plan, opts.dialect);
    let after = Engine::with_cni(verify::apply_rendered(engine.cluster(), &rendered)?, engine.cni_choice());
    let verification = verify::verify(engine, &after, &plan, &rendered, opts.dialect);
    let mut sizes = Sizes { policies: plan.policies.len(), ..Sizes::default() };
    let mut policies = Vec::with_capacity(plan.policies.len());
    for (p, r) in plan.policies.iter().zip(&rendered) {
        let Some(w) = plan.workloads.get(p.subject) else { continue };
        let peers: usize = p.rules.iter().map(|r| r.peers.len()).sum();
        sizes.rules += p.rules.len();
        sizes.peers += peers;
        sizes.selector_labels += w.selector.len()
            + w.absent.len()
            + p.rules
                .iter()
                .flat_map(|r| &r.peers)
                .map(|x| match x {
                    Peer::Workload(k) => plan.workloads.get(*k).map_or(0, |o| o.selector.len() + o.absent.len()),
                    Peer::Address(_) => 0,
                })
                .sum::<usize>();
        policies.push(PolicySummary {
            kind: r.kind,
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            subject: format!("{}/{}", w.namespace, w.name),
            selector: w.selector.iter().cloned().collect(),
            selector_absent: w.absent.clone(),
            direction: p.direction,
            rules: p.rules.len(),
            peers,
            connections: p.connections,
        });
    }
    let report = Report {
        ok: verification.ok(opts.allow_observed_denials),
        dialect: opts.dialect,
        policies,
        sizes,
        observed_needed: plan.needed.iter().map(|n| n.connections).sum(),
        observed_denied: plan.denied.iter().map(|n| n.connections).sum(),
        verification,
        dns: plan.dns.clone(),
        unresolved: plan.unresolved.clone(),
        not_expressible: plan.not_expressible.clone(),
        notes: plan.notes.clone(),
    };
    Ok(Generated { rendered, report, plan })
}

#[cfg(test)]
mod tests;
