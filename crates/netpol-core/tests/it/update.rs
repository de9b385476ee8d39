//! Property test of `Engine::update`: on random clusters, random sequences of object changes (one at a time
//! and in batches) leave the engine answering exactly as a fresh `Engine::new` of the changed cluster, and as
//! the reference evaluator: verdicts, isolation, explanations, the matrix (cells, classes, pair counts), lint
//! findings and diffs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use netpol_core::compile::{CPeer, Endpoint, Engine, IdSet, IdentityId, RuleId};
use netpol_core::diff::{diff, DiffOptions};
use netpol_core::lint::{lint, Config};
use netpol_core::matrix::summarize;
use netpol_core::model::*;
use netpol_core::portset::Protocol;
use netpol_core::reference;
use netpol_core::selector::{Labels, Requirement, Selector};
use netpol_core::update::{apply_to_cluster, Change, UpdateStats};
use proptest::prelude::*;

use crate::common::{
    admin_policy, cluster, endpoints, labels, pod_ports, policy_with_rules, rule, selector, Rng, NS_KEYS, POD_KEYS,
    PROTOS,
};

const VERDICT_PORTS: [u16; 8] = [1, 53, 70, 80, 81, 90, 100, 124];

// ---- random changes ----

fn ns_name(r: &mut Rng, c: &Cluster) -> String {
    if c.namespaces.is_empty() || r.chance(12) {
        format!("ns{}", c.namespaces.len() + r.below(2))
    } else {
        r.pick(&c.namespaces).name.clone()
    }
}

fn v4(r: &mut Rng) -> IpAddr {
    format!("10.0.0.{}", 1 + r.below(254)).parse().unwrap()
}

fn v6(r: &mut Rng) -> IpAddr {
    format!("fd00::{:x}", 1 + r.below(300)).parse().unwrap()
}

/// A pod, often like an existing one (same labels, ports, IP class or even the same IP).
fn random_pod(r: &mut Rng, c: &Cluster, name: String) -> Pod {
    let like = (!c.pods.is_empty() && r.chance(50)).then(|| r.pick(&c.pods).clone());
    let labels = match &like {
        Some(p) if r.chance(70) => p.labels.clone(),
        _ => labels(r, POD_KEYS),
    };
    let ports = match &like {
        Some(p) if r.chance(70) => p.ports.clone(),
        _ => pod_ports(r).into(),
    };
    let ips = match r.below(9) {
        0 => Vec::new(),
        1 | 2 => match &like {
            // The same addresses as another pod (duplicates), or the same first address.
            Some(p) if r.chance(50) => p.ips.clone(),
            Some(p) => p.ips.iter().take(1).copied().collect(),
            None => vec![v4(r)],
        },
        3 => vec![v6(r)],
        4 => vec![v4(r), v6(r)],
        _ => vec![v4(r)],
    };
    let host_network = match &like {
        Some(p) if r.chance(80) => p.host_network,
        _ => r.chance(10),
    };
    Pod {
        ns: NsId::new(0),
        name,
        labels,
        ports,
        ips,
        host_network,
        node: None,
        // Pods come and go per account: an undeclared account lasts as long as a pod runs as it.
        service_account: ["default", "default", "api", "batch"][r.below(4)].into(),
        source: PodSource { kind: "Pod", origin: Origin::default() },
    }
}

fn random_policy(r: &mut Rng, c: &Cluster, name: String) -> Policy {
    let nps: Vec<&Policy> = c.policies.iter().filter(|p| p.kind == PolicyKind::NetworkPolicy).collect();
    let like = (!nps.is_empty() && r.chance(30)).then(|| (*r.pick(&nps)).clone());
    let (ingress, egress) = match &like {
        // Same rules (so the same ipBlocks), new selector.
        Some(p) => (p.ingress.clone(), p.egress.clone()),
        None => ((0..r.below(3)).map(|_| rule(r)).collect(), (0..r.below(3)).map(|_| rule(r)).collect()),
    };
    policy_with_rules(r, NsId::new(0), name, ingress, egress)
}

fn shard_selector(r: &mut Rng) -> Selector {
    Selector::from_requirements(vec![Requirement::In("shard".into(), vec![r.below(30).to_string().into()])])
}

/// A policy about one `shard` of pods, allowing another shard: its selector peers select few identities.
fn shard_policy(r: &mut Rng, name: String) -> Policy {
    let peer = |r: &mut Rng| Peer::Selectors {
        namespaces: r.chance(50).then(|| selector(r, NS_KEYS)),
        pods: Some(shard_selector(r)),
    };
    let ingress = vec![Rule { peers: vec![peer(r)], ports: Vec::new(), ..Default::default() }];
    let egress = vec![Rule {
        peers: vec![peer(r), peer(r)],
        ports: vec![PolicyPort { protocol: Protocol::Tcp, port: PortMatch::Range(80, 80) }],
        ..Default::default()
    }];
    Policy {
        host: Default::default(),
        position: 0,
        manifest: None,
        kind: PolicyKind::NetworkPolicy,
        tier: PolicyTier::NetworkPolicy,
        order: 1000.into(),
        calico_selector: None,
        scope: Scope::Namespace(NsId::new(0)),
        name,
        pod_selector: shard_selector(r),
        ingress,
        egress,
        affects_ingress: true,
        affects_egress: r.chance(50),
        origin: Origin::default(),
    }
}

fn ns_labels(r: &mut Rng, name: &str) -> Labels {
    let mut l = labels(r, NS_KEYS);
    l.insert("kubernetes.io/metadata.name", name.to_string());
    l
}

fn random_change(r: &mut Rng, c: &Cluster) -> Change {
    match r.below(100) {
        0..=34 => {
            let namespace = ns_name(r, c);
            let name = format!("p{}", r.below(12));
            let pod = random_pod(r, c, name);
            Change::PutPod { namespace, pod }
        }
        35..=54 => match (c.pods.is_empty() || r.chance(10), r.below(c.pods.len().max(1))) {
            (false, i) => {
                Change::DeletePod { namespace: c.ns_name(c.pods[i].ns).to_string(), name: c.pods[i].name.clone() }
            }
            (true, _) => Change::DeletePod { namespace: ns_name(r, c), name: "nope".into() },
        },
        55..=74 => {
            let namespace = ns_name(r, c);
            let name = format!("pol{}", r.below(8));
            let admin = format!("adm{}", r.below(4));
            let policy = if r.chance(30) { admin_policy(r, admin) } else { random_policy(r, c, name) };
            Change::PutPolicy { namespace, policy }
        }
        75..=84 => match (c.policies.is_empty() || r.chance(10), r.below(c.policies.len().max(1))) {
            (false, i) => match c.policies[i].ns() {
                Some(ns) => {
                    Change::DeletePolicy { namespace: c.ns_name(ns).to_string(), name: c.policies[i].name.clone() }
                }
                None => Change::DeleteClusterPolicy { kind: c.policies[i].kind, name: c.policies[i].name.clone() },
            },
            (true, _) => Change::DeletePolicy { namespace: ns_name(r, c), name: "nope".into() },
        },
        85..=92 => {
            let name = ns_name(r, c);
            let labels = ns_labels(r, &name);
            Change::PutNamespace(Namespace { name, labels, origin: None })
        }
        93..=96 => Change::DeleteNamespace { name: ns_name(r, c) },
        97 | 98 => {
            let i = r.below(3);
            let mut labels = labels(r, crate::common::NODE_KEYS);
            labels.insert("kubernetes.io/hostname", format!("node{i}"));
            let ips = vec![format!("10.0.0.{}", 240 + r.below(3)).parse().unwrap()];
            Change::PutNode(Node { name: format!("node{i}"), labels, ips, origin: Origin::default() })
        }
        _ => Change::DeleteNode { name: format!("node{}", r.below(3)) },
    }
}

fn kind(ch: &Change) -> &'static str {
    match ch {
        Change::PutPod { .. } => "put-pod",
        Change::DeletePod { .. } => "delete-pod",
        Change::PutPolicy { .. } => "put-policy",
        Change::DeletePolicy { .. } => "delete-policy",
        Change::PutNamespace(_) => "put-namespace",
        Change::DeleteNamespace { .. } => "delete-namespace",
        Change::DeleteClusterPolicy { .. } => "delete-cluster-policy",
        Change::PutNode(_) => "put-node",
        Change::DeleteNode { .. } => "delete-node",
        // Not generated here: Calico's changes always recompile (tested against loads of the same objects in
        // `update.rs`'s unit tests and by netpol-kube's live tests; host endpoints also by
        // `host_endpoint_changes_answer_as_a_fresh_compile` below).
        Change::PutCalicoPolicy { .. } => "put-calico-policy",
        Change::DeleteCalicoPolicy { .. } => "delete-calico-policy",
        Change::PutTier(_) => "put-tier",
        Change::DeleteTier { .. } => "delete-tier",
        Change::PutNetworkSet { .. } => "put-network-set",
        Change::DeleteNetworkSet { .. } => "delete-network-set",
        Change::PutHostEndpoint(_) => "put-host-endpoint",
        Change::DeleteHostEndpoint { .. } => "delete-host-endpoint",
        Change::PutServiceAccount { .. } => "put-service-account",
        Change::DeleteServiceAccount { .. } => "delete-service-account",
        // Not generated here either: they change only `Cluster::staged` (`update.rs`'s unit tests).
        Change::PutStagedPolicy(_) => "put-staged-policy",
        Change::DeleteStagedPolicy { .. } => "delete-staged-policy",
        // Not generated here: only Cilium's policies read them (`cilium_entities_and_services_follow_changes`).
        Change::PutService(_) => "put-service",
        Change::DeleteService { .. } => "delete-service",
        Change::PutServiceEndpoints(_) => "put-service-endpoints",
        Change::DeleteServiceEndpoints { .. } => "delete-service-endpoints",
        // Not generated here: Antrea's objects are lowered again and recompile
        // (`antrea_objects_namespaces_and_groups_follow_changes`).
        Change::PutAntrea(_) => "put-antrea",
        Change::DeleteAntrea { .. } => "delete-antrea",
    }
}

// ---- comparison with a fresh compile ----

/// Everything about an identity that does not depend on internal ids.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct IdentityView {
    ns: NsId,
    labels: Labels,
    host_network: bool,
    blocks: Vec<String>,
    ports: Vec<ContainerPort>,
    pods: Vec<PodId>,
    policies: (Vec<PolicyId>, Vec<PolicyId>),
    rules: (Vec<RuleId>, Vec<RuleId>),
    named_ports: Vec<(Protocol, u16)>,
}

fn identity_view(e: &Engine, i: IdentityId) -> IdentityView {
    let ident = &e.identity(i);
    let mut blocks: Vec<String> =
        e.ip_class(ident.ip_class).iter().map(|&b| e.blocks()[b.index()].to_string()).collect();
    blocks.sort();
    let mut named_ports: Vec<(Protocol, u16)> = ident.named_ports.iter().map(|&(_, p, n)| (p, n)).collect();
    named_ports.sort();
    IdentityView {
        ns: ident.ns,
        labels: e.label_set(ident.labels).clone(),
        host_network: ident.host_network,
        blocks,
        ports: ident.ports.clone(),
        pods: ident.pods.clone(),
        policies: (ident.ingress_policies.clone(), ident.egress_policies.clone()),
        rules: (ident.ingress_rules.clone(), ident.egress_rules.clone()),
        named_ports,
    }
}

fn peer_text(e: &Engine, p: &CPeer) -> String {
    match *p {
        CPeer::Sel(s) => format!("{:?}", e.sel_peers()[s.index()].0),
        CPeer::Block(b) => e.blocks()[b.index()].to_string(),
        CPeer::Domains(d) => e.domains(d).join(","),
        CPeer::Nothing => "nothing".to_string(),
        CPeer::Calico(c) => e.calico_peer_of(c).peer.to_string(),
        CPeer::OwnNode => "host".to_string(),
        CPeer::OtherNodes => "remote-node".to_string(),
        CPeer::NodeSet(k) => format!("node set {k}"),
    }
}

/// The compiled structures of `e` match those of the fresh compile `f`, up to internal numbering.
fn assert_same_structure(e: &Engine, f: &Engine) {
    for key in ["namespaces", "pods", "policies", "identities", "selector_peers", "ip_blocks", "rules"] {
        assert_eq!(e.stats()[key], f.stats()[key], "stat {key}");
    }
    for i in (0..e.identities().len()).map(IdentityId::new) {
        let ident = &e.identity(i);
        assert!(!ident.pods.is_empty(), "identity {i} has no pods");
        assert!(ident.pods.windows(2).all(|w| w[0] < w[1]), "pods of identity {i} not sorted");
        assert!(ident.pods.iter().all(|&p| e.pod_identity(p) == i), "pod_identity of identity {i}");
    }
    for p in (0..e.cluster().pods.len()).map(PodId::new) {
        assert_eq!(identity_view(e, e.pod_identity(p)), identity_view(f, f.pod_identity(p)));
    }
    let mut ev: Vec<IdentityView> = (0..e.identities().len()).map(|i| identity_view(e, IdentityId::new(i))).collect();
    let mut fv: Vec<IdentityView> = (0..f.identities().len()).map(|i| identity_view(f, IdentityId::new(i))).collect();
    ev.sort();
    fv.sort();
    assert_eq!(ev, fv, "identities");
    // Selector peers: the same keys, selecting the same identities (named by their pods).
    let peers = |e: &Engine| -> BTreeMap<String, Vec<Vec<PodId>>> {
        e.sel_peers()
            .iter()
            .map(|(k, set)| {
                let mut ids: Vec<Vec<PodId>> = set.iter().map(|i| e.identity(i).pods.clone()).collect();
                ids.sort();
                (format!("{k:?}"), ids)
            })
            .collect()
    };
    assert_eq!(peers(e), peers(f), "selector peers");
    for (k, set) in e.sel_peers() {
        match set {
            IdSet::Sparse(v) => assert!(v.windows(2).all(|w| w[0] < w[1]), "sparse set of {k:?} not sorted"),
            IdSet::Dense(b, n) => assert_eq!(b.count(), *n, "dense set count of {k:?}"),
        }
        assert!(set.iter().all(|i| i.index() < e.identities().len()), "set of {k:?} out of range");
    }
    // Rules: same ids as a fresh compile, same contents.
    let policy_rules = |e: &Engine| -> Vec<(Vec<RuleId>, Vec<RuleId>)> {
        (0..e.cluster().policies.len())
            .map(PolicyId::new)
            .map(|p| (e.policy_rules(p, Direction::Ingress).to_vec(), e.policy_rules(p, Direction::Egress).to_vec()))
            .collect()
    };
    assert_eq!(policy_rules(e), policy_rules(f), "policy_rules");
    for (i, (a, b)) in e.rules().iter().zip(f.rules()).enumerate() {
        assert_eq!((a.policy, a.dir, a.index), (b.policy, b.dir, b.index), "rule {i}");
        assert_eq!((&a.ports.numeric, &a.ports.named), (&b.ports.numeric, &b.ports.named), "rule {i} ports");
        let mut pa: Vec<String> = a.peers.iter().map(|p| peer_text(e, p)).collect();
        let mut pb: Vec<String> = b.peers.iter().map(|p| peer_text(f, p)).collect();
        pa.sort();
        pb.sort();
        assert_eq!(pa, pb, "rule {i} peers");
    }
    let blocks = |e: &Engine| e.blocks().iter().map(|b| b.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(blocks(e), blocks(f), "blocks");
    let ips = |e: &Engine| -> BTreeMap<std::net::IpAddr, PodId> {
        e.cluster()
            .pods
            .iter()
            .flat_map(|p| p.ips.iter().map(|&ip| (ip, e.pod_with_ip(ip).unwrap_or(PodId::new(u32::MAX as usize)))))
            .collect()
    };
    assert_eq!(ips(e), ips(f), "ip_index");
}

/// Verdicts, isolation and explanations agree with the fresh compile and the reference evaluator, on one
/// endpoint pair out of `stride`.
fn assert_same_answers(e: &Engine, f: &Engine, stride: usize) {
    let eps = endpoints(e);
    assert_eq!(eps, endpoints(f));
    for p in (0..e.cluster().pods.len()).map(PodId::new) {
        for dir in [Direction::Ingress, Direction::Egress] {
            assert_eq!(
                e.isolated(e.pod_identity(p), dir),
                f.isolated(f.pod_identity(p), dir),
                "isolation of {p} {dir}"
            );
        }
    }
    for (i, s) in eps.iter().enumerate() {
        for (j, d) in eps.iter().enumerate() {
            if (i * 31 + j).checked_rem(stride) != Some(0) {
                continue;
            }
            for proto in PROTOS {
                for port in VERDICT_PORTS {
                    let want = reference::allowed(e.cluster(), s, d, proto, port);
                    assert_eq!(e.allowed(s, d, proto, port), want, "updated {s:?} -> {d:?} {port}/{proto}");
                    assert_eq!(f.allowed(s, d, proto, port), want, "fresh {s:?} -> {d:?} {port}/{proto}");
                }
            }
            for (proto, port) in [(Protocol::Tcp, 80), (Protocol::Udp, 53), (Protocol::Tcp, 90), (Protocol::Sctp, 70)] {
                assert_eq!(e.explain(s, d, proto, port), f.explain(s, d, proto, port), "explain {s:?} -> {d:?}");
            }
        }
    }
    for ip in e.cluster().pods.iter().flat_map(|p| p.ips.iter()) {
        assert_eq!(e.endpoint_for_ip(*ip), f.endpoint_for_ip(*ip), "endpoint_for_ip {ip}");
    }
    assert_eq!(e.sorted_pods(), f.sorted_pods());
}

/// Classes as sets of pods.
fn class_pods(e: &Engine, classes: &[Vec<IdentityId>]) -> BTreeSet<Vec<PodId>> {
    classes
        .iter()
        .map(|c| {
            let mut pods: Vec<PodId> = c.iter().flat_map(|&i| e.identity(i).pods.iter().copied()).collect();
            pods.sort();
            pods
        })
        .collect()
}

/// The matrix agrees with the fresh compile on every pod pair, and with the reference evaluator on one pair out
/// of `stride`.
fn assert_same_matrix(e: &Engine, f: &Engine, stride: usize) {
    let mut em = e.matrix(None).unwrap();
    let mut fm = f.matrix(None).unwrap();
    let n = e.cluster().pods.len();
    for a in (0..n).map(PodId::new) {
        for b in (0..n).map(PodId::new) {
            let es = em.port_sets.get(em.pod_cell(e, a, b).unwrap()).clone();
            let fs = fm.port_sets.get(fm.pod_cell(f, a, b).unwrap()).clone();
            assert_eq!(es, fs, "matrix {a} -> {b}");
            if (a.index() * 31 + b.index()).checked_rem(stride) != Some(0) {
                continue;
            }
            for proto in PROTOS {
                for port in VERDICT_PORTS {
                    let want = reference::allowed(
                        e.cluster(),
                        &Endpoint::Pod { pod: a, ip: None },
                        &Endpoint::Pod { pod: b, ip: None },
                        proto,
                        port,
                    );
                    assert_eq!(es.contains(proto, port), want, "matrix {a} -> {b} {port}/{proto}: {es}");
                }
            }
        }
    }
    assert_eq!(class_pods(e, &em.src_classes), class_pods(f, &fm.src_classes), "source classes");
    assert_eq!(class_pods(e, &em.dst_classes), class_pods(f, &fm.dst_classes), "destination classes");
    let ec = em.pair_counts(e);
    let fc = fm.pair_counts(f);
    let by_set = |c: &rustc_hash::FxHashMap<netpol_core::matrix::PsId, u64>, ps: &netpol_core::matrix::PortSets| {
        c.iter().map(|(&k, &v)| (ps.get(k).to_string(), v)).collect::<BTreeMap<String, u64>>()
    };
    assert_eq!(by_set(&ec, &em.port_sets), by_set(&fc, &fm.port_sets), "pair counts");
    assert_eq!(summarize(&ec, &em.port_sets, None), summarize(&fc, &fm.port_sets, None), "summary");
}

/// The cluster the engine holds is the one `apply_to_cluster` builds, up to the order of pods.
fn assert_same_cluster(c: &Cluster, shadow: &Cluster) {
    let ns = |c: &Cluster| -> Vec<String> { c.namespaces.iter().map(|n| format!("{n:?}")).collect() };
    assert_eq!(ns(c), ns(shadow), "namespaces");
    let pols = |c: &Cluster| -> Vec<String> { c.policies.iter().map(|p| format!("{p:?}")).collect() };
    assert_eq!(pols(c), pols(shadow), "policies");
    let pods = |c: &Cluster| -> Vec<String> {
        let mut v: Vec<String> = c.pods.iter().map(|p| format!("{p:?}")).collect();
        v.sort();
        v
    };
    assert_eq!(pods(c), pods(shadow), "pods");
    let accounts = |c: &Cluster| -> Vec<String> {
        let mut v: Vec<String> = c.service_accounts.iter().map(|s| format!("{s:?}")).collect();
        v.sort();
        v
    };
    assert_eq!(accounts(c), accounts(shadow), "service accounts");
}

fn check(e: &Engine, shadow: &Cluster) {
    check_sampled(e, shadow, 1);
}

fn check_sampled(e: &Engine, shadow: &Cluster, stride: usize) {
    assert_same_cluster(e.cluster(), shadow);
    let f = Engine::new(e.cluster().clone());
    assert_same_structure(e, &f);
    assert_same_answers(e, &f, stride);
    assert_same_matrix(e, &f, stride);
    assert_eq!(lint(e, &Config::default()), lint(&f, &Config::default()), "lint");
}

/// What one scenario did: per change kind, (applied in place, recompiled) for single-change steps.
type Tally = BTreeMap<&'static str, (usize, usize)>;

/// A random cluster (with `extra_pods` more random pods), then `steps` random steps (single changes and
/// batches), checked after each (verdicts and explanations on one endpoint pair out of `stride`).
fn scenario(seed: u64, extra_pods: usize, steps: usize, stride: usize, tally: &mut Tally) {
    scenario_from(cluster(seed), seed, extra_pods, steps, stride, tally)
}

/// [`scenario`] from cluster `c`.
fn scenario_from(mut c: Cluster, seed: u64, extra_pods: usize, steps: usize, stride: usize, tally: &mut Tally) {
    let mut r = Rng(seed ^ 0x5eed);
    // Extra pods spread over up to 10 namespaces, with a label of many values: many small identities.
    for i in 0..extra_pods {
        let namespace = format!("ns{}", r.below(10));
        let mut pod = random_pod(&mut r, &c, format!("x{i}"));
        if r.chance(50) {
            pod.labels.insert("shard", r.below(30).to_string());
        }
        apply_to_cluster(&mut c, Change::PutPod { namespace, pod });
    }
    if extra_pods > 0 {
        for n in &mut c.namespaces {
            n.labels = ns_labels(&mut r, &n.name);
        }
        for i in 0..extra_pods / 4 {
            let namespace = format!("ns{}", r.below(10));
            let policy = shard_policy(&mut r, format!("shard{i}"));
            apply_to_cluster(&mut c, Change::PutPolicy { namespace, policy });
        }
    }
    let mut e = Engine::new(c);
    let mut shadow = e.cluster().clone();
    for _ in 0..steps {
        let n = if r.chance(60) { 1 } else { 2 + r.below(5) };
        let mut changes = Vec::new();
        let mut planned = shadow.clone();
        for _ in (0..n).map(PodId::new) {
            let ch = random_change(&mut r, &planned);
            apply_to_cluster(&mut planned, ch.clone());
            changes.push(ch);
        }
        let before = e.clone();
        let single = (n == 1).then(|| kind(&changes[0]));
        let mut changed = false;
        for ch in &changes {
            changed |= apply_to_cluster(&mut shadow, ch.clone());
        }
        let st = e.update(changes);
        assert!(st.in_place <= n);
        assert_eq!(st.recompiled, st.recompile_cause.is_some());
        if !changed {
            assert_eq!(st, UpdateStats::default(), "nothing changed");
        }
        if let Some(k) = single {
            let t = tally.entry(k).or_default();
            t.0 += st.in_place;
            t.1 += usize::from(st.recompiled);
        }
        check_sampled(&e, &shadow, stride);
        // A diff from the previous state is the same as between fresh compiles.
        let d = diff(&before, &e, &DiffOptions::default());
        let fd =
            diff(&Engine::new(before.cluster().clone()), &Engine::new(e.cluster().clone()), &DiffOptions::default());
        assert_eq!(serde_json::to_value(&d).unwrap(), serde_json::to_value(&fd).unwrap(), "diff");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn updated_engine_answers_as_a_fresh_compile(seed in any::<u64>()) {
        scenario(seed, 0, 12, 1, &mut Tally::new());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Antrea-like clusters (a pass held across Antrea's tiers, Reject): updates answer as a fresh compile and
    /// as the reference evaluator, the matrix included.
    #[test]
    fn updated_antrea_engine_answers_as_a_fresh_compile(seed in any::<u64>()) {
        scenario_from(crate::common::antrea_like_cluster(seed), seed, 0, 8, 1, &mut Tally::new());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Larger clusters: many identities, so selector peers' sets are sparse as well as dense.
    #[test]
    fn updated_large_engine_answers_as_a_fresh_compile(seed in any::<u64>()) {
        scenario(seed, 160, 8, 23, &mut Tally::new());
    }
}

/// Every in-place path and the recompile fallback are exercised by the scenarios above.
#[test]
fn scenarios_exercise_in_place_and_recompile_paths() {
    let mut tally = Tally::new();
    for seed in 0..24 {
        scenario(seed, 0, 10, 1, &mut tally);
    }
    for k in ["put-pod", "delete-pod", "put-policy", "delete-policy", "put-namespace", "delete-namespace"] {
        let (in_place, _) = tally.get(k).copied().unwrap_or_default();
        assert!(in_place > 0, "{k} never applied in place: {tally:?}");
    }
    assert!(tally.values().any(|t| t.1 > 0), "never recompiled: {tally:?}");
    assert_eq!(tally["put-pod"].1 + tally["delete-pod"].1, 0, "pod changes recompiled: {tally:?}");
}

// ---- Calico host endpoints ----

/// A random host endpoint change on a Calico cluster: a host endpoint put (new, or replacing one of the same name
/// with other labels, interface, addresses or profiles), deleted, or a Node an all-interfaces endpoint takes its
/// addresses from put or deleted.
fn host_change(r: &mut Rng, c: &Cluster) -> Change {
    let addrs = ["10.0.0.240", "10.0.0.241", "fd00::99", "10.0.0.200", "10.0.0.3"];
    match r.below(10) {
        0..=5 => {
            let i = r.below(4);
            let all = r.chance(50);
            let expected_ips: Vec<IpAddr> = if all && r.chance(40) {
                Vec::new()
            } else {
                let picked: BTreeSet<IpAddr> = (0..1 + r.below(2)).map(|_| r.pick(&addrs).parse().unwrap()).collect();
                picked.into_iter().collect()
            };
            let mut labels = Labels::new();
            labels.insert("role", *r.pick(&["db", "ext", "node"]));
            Change::PutHostEndpoint(HostEndpoint {
                name: format!("hep{i}"),
                node: r.pick(&["n0", "n1"]).to_string(),
                interface: Some(if all { "*".into() } else { format!("eth{i}") }),
                expected_ips,
                labels,
                profiles: if r.chance(40) { vec!["projectcalico-default-allow".into()] } else { Vec::new() },
                ports: vec![ContainerPort { name: Some("web".into()), port: 80, protocol: Protocol::Tcp }],
                origin: Origin::default(),
            })
        }
        6 | 7 => match (c.host_endpoints.is_empty(), r.below(c.host_endpoints.len().max(1))) {
            (false, i) => Change::DeleteHostEndpoint { name: c.host_endpoints[i].name.clone() },
            (true, _) => Change::DeleteHostEndpoint { name: "nope".into() },
        },
        8 => {
            let name = r.pick(&["n0", "n1"]).to_string();
            let ips = vec![r.pick(&["10.0.0.3", "10.0.0.241"]).parse().unwrap()];
            Change::PutNode(Node { name, labels: Labels::new(), ips, origin: Origin::default() })
        }
        _ => Change::DeleteNode { name: r.pick(&["n0", "n1"]).to_string() },
    }
}

/// Random Calico clusters with host endpoints (untracked, pre-DNAT, normal and forward policies), then host
/// endpoint changes one at a time and in batches: each recompiles when it changes the cluster, and the engine
/// answers as a fresh compile of the changed cluster and as the reference evaluator (verdicts with every host
/// endpoint check, explanations with each check's stages).
fn host_scenario(seed: u64, steps: usize) {
    let mut r = Rng(seed ^ 0x4e9);
    let mut e = Engine::new(crate::common::calico_cluster(seed));
    let mut shadow = e.cluster().clone();
    for _ in 0..steps {
        let n = if r.chance(70) { 1 } else { 2 + r.below(3) };
        let mut changes = Vec::new();
        let mut changed = false;
        for _ in 0..n {
            let ch = host_change(&mut r, &shadow);
            changed |= apply_to_cluster(&mut shadow, ch.clone());
            changes.push(ch);
        }
        let st = e.update(changes);
        assert_eq!(st.recompiled, changed, "{st:?}");
        assert_eq!(st.in_place, 0);
        let heps = |c: &Cluster| -> Vec<String> { c.host_endpoints.iter().map(|h| format!("{h:?}")).collect() };
        assert_eq!(heps(e.cluster()), heps(&shadow), "host endpoints");
        assert_same_cluster(e.cluster(), &shadow);
        let f = Engine::new(shadow.clone());
        assert_same_answers(&e, &f, 1);
        for h in 0..e.cluster().host_endpoints.len() {
            let p = |e: &Engine| {
                (0..e.cluster().policies.len())
                    .map(PolicyId::new)
                    .filter(|&p| e.policy_host_endpoints(p).contains(&h))
                    .collect::<Vec<_>>()
            };
            assert_eq!(p(&e), p(&f), "the policies of host endpoint {h}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn host_endpoint_changes_answer_as_a_fresh_compile(seed in any::<u64>()) {
        host_scenario(seed, 8);
    }
}

/// A pod that shares an IP with an earlier pod: the earlier one owns the address, and keeps it until deleted.
#[test]
fn duplicate_ip_belongs_to_the_lowest_pod() {
    let mut r = Rng(7);
    let mut c = Cluster::default();
    c.namespaces.push(Namespace { name: "a".into(), labels: ns_labels(&mut r, "a"), origin: None });
    let mut e = Engine::new(c);
    let ip: IpAddr = "10.0.0.5".parse().unwrap();
    for name in ["x", "y", "z"] {
        let mut pod = random_pod(&mut r, e.cluster(), name.into());
        pod.ips = vec![ip];
        e.update(vec![Change::PutPod { namespace: "a".into(), pod }]);
    }
    let owner = |e: &Engine| match e.endpoint_for_ip(ip) {
        Endpoint::Pod { pod, .. } => e.cluster().pod(pod).name.clone(),
        Endpoint::External(_) => "-".into(),
    };
    assert_eq!(owner(&e), "x");
    // Deleting x moves z into its slot: z is now the lowest pod id with the address, as Engine::new would say.
    let st = e.update(vec![Change::DeletePod { namespace: "a".into(), name: "x".into() }]);
    assert_eq!((st.in_place, st.recompiled), (1, false));
    assert_eq!(owner(&e), owner(&Engine::new(e.cluster().clone())));
    e.update(vec![Change::DeletePod { namespace: "a".into(), name: "y".into() }]);
    assert_eq!(owner(&e), "z");
    e.update(vec![Change::DeletePod { namespace: "a".into(), name: "z".into() }]);
    assert_eq!(owner(&e), "-");
    assert!(e.identities().is_empty());
}

/// A new ipBlock changes ip classes: the policy change recompiles, once per batch.
#[test]
fn new_ip_block_recompiles_once_per_batch() {
    let mut r = Rng(11);
    let mut e = Engine::new(cluster(3));
    let mut pol = random_policy(&mut r, e.cluster(), "blk".into());
    pol.ingress = vec![Rule {
        peers: vec![Peer::IpBlock(IpBlock { cidr: "192.0.2.0/24".parse().unwrap(), except: vec![] })],
        ports: vec![],
        ..Default::default()
    }];
    let ns = e.cluster().namespaces[0].name.clone();
    let pod = random_pod(&mut r, e.cluster(), "late".into());
    let st = e.update(vec![
        Change::PutPolicy { namespace: ns.clone(), policy: pol },
        Change::PutPod { namespace: ns.clone(), pod },
    ]);
    assert!(st.recompiled, "{st:?}");
    assert_eq!(st.recompile_cause, Some("a policy adds or drops an ipBlock"));
    check(&e, &e.cluster().clone());
    // Deleting it drops the block: recompiles again.
    let st = e.update(vec![Change::DeletePolicy { namespace: ns, name: "blk".into() }]);
    assert!(st.recompiled, "{st:?}");
    assert!(!e.blocks().iter().any(|b| b.to_string() == "192.0.2.0/24"));
}

/// A batch much larger than the cluster is recompiled at once, and only when it changes something.
#[test]
fn large_batch_recompiles_once() {
    let mut r = Rng(5);
    let mut e = Engine::new(cluster(5));
    let mut shadow = e.cluster().clone();
    let ns = e.cluster().namespaces[0].name.clone();
    let changes: Vec<Change> = (0..300)
        .map(|i| Change::PutPod { namespace: ns.clone(), pod: random_pod(&mut r, &shadow, format!("bulk{i}")) })
        .collect();
    for ch in &changes {
        apply_to_cluster(&mut shadow, ch.clone());
    }
    let st = e.update(changes);
    assert_eq!((st.in_place, st.recompiled, st.recompile_cause), (0, true, Some("a large batch")));
    check(&e, &shadow);
    let nothing: Vec<Change> =
        (0..300).map(|i| Change::DeletePod { namespace: ns.clone(), name: format!("missing{i}") }).collect();
    assert_eq!(e.update(nothing), UpdateStats::default());
}
/// A seed that once found a pod whose address is also a host endpoint's: its named ports stay its own.
#[test]
fn host_scenario_pod_at_a_host_endpoint_address() {
    host_scenario(13642382807933992941, 8);
}

// ---- Cilium's entities and toServices ----

/// The objects of a cluster as manifests, by a key, in order: what a fresh load of the same objects reads.
struct Manifests(Vec<(&'static str, String)>);

impl Manifests {
    fn put(&mut self, key: &'static str, text: &str) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = text.to_string(),
            None => self.0.push((key, text.to_string())),
        }
    }

    fn delete(&mut self, key: &str) {
        self.0.retain(|(k, _)| *k != key);
    }

    fn load(&self) -> netpol_core::load::Loaded {
        let text: Vec<&str> = self.0.iter().map(|(_, t)| t.as_str()).collect();
        let l = netpol_core::load::load_str("cluster.yaml", &text.join("\n---\n"));
        let errors: Vec<String> = l
            .diagnostics
            .iter()
            .filter(|d| d.severity == netpol_core::load::Severity::Error)
            .map(|d| d.to_string())
            .collect();
        assert_eq!(errors, Vec::<String>::new());
        l
    }
}

/// The one object of a manifest, loaded alone.
fn alone(text: &str) -> Cluster {
    netpol_core::load::load_str("object.yaml", text).cluster
}

fn node_doc(name: &str, ip: &str) -> String {
    format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nstatus: {{addresses: [{{type: InternalIP, address: {ip}}}]}}")
}

fn pod_doc(name: &str, app: &str, node: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: ns, labels: {{app: {app}}}}}\nspec: \
         {{nodeName: {node}}}\nstatus: {{podIP: {ip}}}"
    )
}

fn slice_doc(ns: &str, name: &str, service: &str, ips: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: {ns}, labels: \
         {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [{ips}]}}]"
    )
}

const CILIUM_REF_POLICIES: &str = r#"apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: refs, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEntities: [host]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - toEntities: [remote-node]
    toPorts: [{ports: [{port: "81", protocol: TCP}]}]
  - toEntities: [kube-apiserver]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  - toServices: [{k8sService: {serviceName: db, namespace: ns}}]
    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
  - toServices: [{k8sServiceSelector: {selector: {matchLabels: {tier: web}}, namespace: ns}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: from-nodes, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: b}}
  ingress:
  - fromEntities: [remote-node, host]
    toPorts: [{ports: [{port: "90", protocol: TCP}]}]
"#;

/// After each step, the updated engine answers (verdicts on every pair of endpoints, explanations, the matrix)
/// and holds the same policies as `Engine::new` of a fresh load of the same objects.
fn assert_as_fresh(e: &Engine, m: &Manifests, extra: &[&str]) {
    let f = Engine::new(m.load().cluster);
    let pols = |e: &Engine| -> Vec<String> {
        e.cluster().policies.iter().map(|p| format!("{:?} {:?}", p.ingress, p.egress)).collect()
    };
    assert_eq!(pols(e), pols(&f), "policies");
    let names = |e: &Engine| -> Vec<String> {
        let mut v: Vec<String> = e.cluster().pods.iter().map(|p| format!("ns/{}", p.name)).collect();
        v.extend(e.cluster().nodes.iter().flat_map(|n| n.ips.iter().map(|ip| ip.to_string())));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let eps = names(&f);
    assert_eq!(names(e), eps);
    for s in &eps {
        for d in &eps {
            let (es, ed) = (e.parse_endpoint(s, "ns").unwrap(), e.parse_endpoint(d, "ns").unwrap());
            let (fs, fd) = (f.parse_endpoint(s, "ns").unwrap(), f.parse_endpoint(d, "ns").unwrap());
            for port in [80, 81, 90, 443, 5432, 8080, 22] {
                let want = f.allowed(&fs, &fd, Protocol::Tcp, port);
                assert_eq!(e.allowed(&es, &ed, Protocol::Tcp, port), want, "{s} -> {d}:{port}");
                assert_eq!(reference::allowed(e.cluster(), &es, &ed, Protocol::Tcp, port), want, "reference");
                assert_eq!(
                    format!("{:?}", e.explain(&es, &ed, Protocol::Tcp, port)),
                    format!("{:?}", f.explain(&fs, &fd, Protocol::Tcp, port)),
                    "explain {s} -> {d}:{port}"
                );
            }
        }
    }
    assert_same_matrix(e, &f, 1);
}

#[test]
fn cilium_entities_and_services_follow_changes() {
    let mut m = Manifests(Vec::new());
    // First: the policies' origins (document indexes) stay those of a fresh load.
    m.put("policies", CILIUM_REF_POLICIES);
    m.put("ns", "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}");
    m.put("node-1", &node_doc("node-1", "10.1.0.1"));
    m.put("node-2", &node_doc("node-2", "10.1.0.2"));
    m.put("a", &pod_doc("a", "a", "node-1", "10.0.0.1"));
    m.put("b", &pod_doc("b", "b", "node-1", "10.0.0.2"));
    m.put("c", &pod_doc("c", "a", "node-2", "10.0.0.3"));
    m.put("w", &pod_doc("w", "w", "node-2", "10.0.0.4"));
    m.put("api-svc", "apiVersion: v1\nkind: Service\nmetadata: {name: kubernetes, namespace: default}");
    m.put("api", &slice_doc("default", "kubernetes", "kubernetes", "192.168.5.5"));
    m.put("db-svc", "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: ns}");
    m.put("db", &slice_doc("ns", "db-1", "db", "192.168.7.7"));
    let extra = ["192.168.5.5", "192.168.5.6", "192.168.7.7", "192.168.7.8", "10.1.0.3", "10.1.0.22"];
    let mut e = Engine::new(m.load().cluster);
    assert_as_fresh(&e, &m, &extra);

    // A new node, and a pod moving onto it.
    let n3 = node_doc("node-3", "10.1.0.3");
    m.put("node-3", &n3);
    let moved = pod_doc("c", "a", "node-3", "10.0.0.3");
    m.put("c", &moved);
    let mut pod = alone(&moved).pods.pop().unwrap();
    pod.ns = NsId::new(0);
    let stats = e
        .update(vec![Change::PutNode(alone(&n3).nodes.pop().unwrap()), Change::PutPod { namespace: "ns".into(), pod }]);
    assert!(stats.recompiled);
    assert_as_fresh(&e, &m, &extra);

    // A node's address changes.
    let n2 = node_doc("node-2", "10.1.0.22");
    m.put("node-2", &n2);
    e.update(vec![Change::PutNode(alone(&n2).nodes.pop().unwrap())]);
    assert_as_fresh(&e, &m, &extra);

    // A new pod on another node.
    let d = pod_doc("d", "a", "node-2", "10.0.0.5");
    m.put("d", &d);
    e.update(vec![Change::PutPod { namespace: "ns".into(), pod: alone(&d).pods.pop().unwrap() }]);
    assert_as_fresh(&e, &m, &extra);

    // The API server and the Service's endpoints move; a Service with a selector comes.
    let api = slice_doc("default", "kubernetes", "kubernetes", "192.168.5.6");
    m.put("api", &api);
    let db = slice_doc("ns", "db-1", "db", "192.168.7.8");
    m.put("db", &db);
    let web = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns, labels: {tier: web}}\nspec: \
               {selector: {app: b}}";
    m.put("web-svc", web);
    let stats = e.update(vec![
        Change::PutServiceEndpoints(alone(&api).service_endpoints.pop().unwrap()),
        Change::PutServiceEndpoints(alone(&db).service_endpoints.pop().unwrap()),
        Change::PutService(alone(web).services.pop().unwrap()),
    ]);
    assert!(stats.recompiled, "{stats:?}");
    assert_as_fresh(&e, &m, &extra);

    // A Service no policy names, and its endpoints (a live cluster's change all the time): every Cilium policy
    // resolves as before, so only the cluster changes.
    let other = "apiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: ns}";
    m.put("other-svc", other);
    let other_eps = slice_doc("ns", "other-1", "other", "192.168.9.9");
    m.put("other", &other_eps);
    let stats = e.update(vec![
        Change::PutService(alone(other).services.pop().unwrap()),
        Change::PutServiceEndpoints(alone(&other_eps).service_endpoints.pop().unwrap()),
    ]);
    assert!(!stats.recompiled, "{stats:?}");
    assert_eq!(stats.in_place, 2);
    assert_eq!(e.cluster().services.len(), 4);
    assert_as_fresh(&e, &m, &extra);

    // Deletions: a node, the API server's endpoints, a Service.
    m.delete("node-1");
    m.delete("api");
    m.delete("db-svc");
    e.update(vec![
        Change::DeleteNode { name: "node-1".into() },
        Change::DeleteServiceEndpoints {
            kind: "EndpointSlice",
            namespace: "default".into(),
            name: "kubernetes".into(),
        },
        Change::DeleteService { namespace: "ns".into(), name: "db".into() },
    ]);
    assert_as_fresh(&e, &m, &extra);
}

/// [`assert_as_fresh`] with explanations compared as rendered: a Cilium host's explanation names its Node's file and
/// document, which here differ (the harness loads a changed Node alone).
fn assert_hosts_as_fresh(e: &Engine, m: &Manifests, extra: &[&str]) {
    let f = Engine::new(m.load().cluster);
    let pols = |e: &Engine| -> Vec<String> {
        e.cluster().policies.iter().map(|p| format!("{:?} {:?}", p.ingress, p.egress)).collect()
    };
    assert_eq!(pols(e), pols(&f), "policies");
    let mut eps: Vec<String> = f.cluster().pods.iter().map(|p| format!("ns/{}", p.name)).collect();
    eps.extend(f.cluster().nodes.iter().flat_map(|n| n.ips.iter().map(|ip| ip.to_string())));
    eps.extend(extra.iter().map(|s| s.to_string()));
    for s in &eps {
        for d in &eps {
            let (es, ed) = (e.parse_endpoint(s, "ns").unwrap(), e.parse_endpoint(d, "ns").unwrap());
            let (fs, fd) = (f.parse_endpoint(s, "ns").unwrap(), f.parse_endpoint(d, "ns").unwrap());
            for port in [22, 80, 81, 443] {
                let want = f.allowed(&fs, &fd, Protocol::Tcp, port);
                assert_eq!(e.allowed(&es, &ed, Protocol::Tcp, port), want, "{s} -> {d}:{port}");
                assert_eq!(reference::allowed(e.cluster(), &es, &ed, Protocol::Tcp, port), want, "reference");
                assert_eq!(
                    e.explain(&es, &ed, Protocol::Tcp, port).render(),
                    f.explain(&fs, &fd, Protocol::Tcp, port).render(),
                    "explain {s} -> {d}:{port}"
                );
            }
        }
    }
    assert_same_matrix(e, &f, 1);
}

/// Cilium's host policies (`nodeSelector`) and node selectors (`fromNodes`/`toNodes`) follow the Nodes' labels and
/// addresses (`load/cilium_nodes.rs`): after each change the updated engine answers as a fresh load.
#[test]
fn cilium_host_policies_and_node_selectors_follow_node_changes() {
    let node = |name: &str, ip: &str, role: &str| {
        format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{role: {role}}}}}\nstatus: {{addresses: \
             [{{type: InternalIP, address: {ip}}}]}}"
        )
    };
    let policies = r#"apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: edge-hosts}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  ingress:
  - fromNodes: [{matchLabels: {role: web}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
  - fromEntities: [remote-node]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  egress:
  - toEntities: [host, world]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-web-nodes, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toNodes: [{matchLabels: {role: web}}]
    toPorts: [{ports: [{port: "81", protocol: TCP}]}]
"#;
    let mut m = Manifests(Vec::new());
    m.put("policies", policies);
    m.put("ns", "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}");
    m.put("node-1", &node("node-1", "10.1.0.1", "edge"));
    m.put("node-2", &node("node-2", "10.1.0.2", "web"));
    m.put("a", &pod_doc("a", "a", "node-1", "10.0.0.1"));
    m.put("b", &pod_doc("b", "b", "node-2", "10.0.0.2"));
    let extra = ["10.9.9.9", "10.1.0.3"];
    let mut e = Engine::new(m.load().cluster);
    assert!(e.has_cilium_hosts());
    assert_hosts_as_fresh(&e, &m, &extra);

    // A node's labels change: node-2 becomes an edge node too, and no node is a web node.
    let n2 = node("node-2", "10.1.0.2", "edge");
    m.put("node-2", &n2);
    let stats = e.update(vec![Change::PutNode(alone(&n2).nodes.pop().unwrap())]);
    assert!(stats.recompiled);
    assert_hosts_as_fresh(&e, &m, &extra);

    // A new web node, and an edge node's address changes.
    let n3 = node("node-3", "10.1.0.3", "web");
    m.put("node-3", &n3);
    let n1 = node("node-1", "10.1.0.11", "edge");
    m.put("node-1", &n1);
    e.update(vec![Change::PutNode(alone(&n3).nodes.pop().unwrap()), Change::PutNode(alone(&n1).nodes.pop().unwrap())]);
    assert_hosts_as_fresh(&e, &m, &extra);

    // A node goes away.
    m.delete("node-2");
    e.update(vec![Change::DeleteNode { name: "node-2".into() }]);
    assert_hosts_as_fresh(&e, &m, &extra);
}

// ---- Antrea: every object lowered again on the changed cluster ----

const ANTREA_TIER: &str = "apiVersion: crd.antrea.io/v1beta1\nkind: Tier\nmetadata: {name: sec}\nspec: {priority: 10}";

const ANTREA_GROUP: &str = "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterGroup\nmetadata: {name: dbs}\nspec: \
                            {podSelector: {matchLabels: {app: db}}}";

/// An ACNP allowing what comes from the subject's own namespace (`namespaces.match: Self`), then dropping the rest.
const ANTREA_SELF: &str = r#"apiVersion: crd.antrea.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: self-only}
spec:
  tier: securityops
  priority: 5
  appliedTo: [{podSelector: {}}]
  ingress:
  - action: Allow
    from: [{namespaces: {match: Self}}]
  - action: Drop
    from: [{namespaceSelector: {}}]
"#;

/// An ACNP in the custom Tier, dropping clients' traffic to the group's pods on 5432.
const ANTREA_GUARD: &str = r#"apiVersion: crd.antrea.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: guard-db}
spec:
  tier: sec
  priority: 1
  appliedTo: [{group: dbs}]
  ingress:
  - action: Drop
    from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{protocol: TCP, port: 5432}]
"#;

/// An ANNP rejecting 8080 to web pods of its namespace from everywhere.
const ANTREA_ANNP: &str = r#"apiVersion: crd.antrea.io/v1beta1
kind: NetworkPolicy
metadata: {name: web-8080, namespace: b}
spec:
  priority: 3
  appliedTo: [{podSelector: {matchLabels: {app: web}}}]
  ingress:
  - action: Reject
    from: [{namespaceSelector: {}}]
    ports: [{protocol: TCP, port: 8080}]
"#;

/// What a deleted object's document becomes (a kind netpol does not model: skipped).
const GONE: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: gone, namespace: default}";

fn antrea_pod(ns: &str, name: &str, app: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}\nstatus: \
         {{podIP: {ip}}}"
    )
}

fn antrea_ns(name: &str, env: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{env: {env}}}}}")
}

/// The Antrea object `kind`/`name` as a fresh load of `m` reads it (same origin): the change that puts it.
fn antrea_put(m: &Manifests, kind: &str, name: &str) -> Change {
    let c = m.load().cluster;
    let o = c.antrea.into_iter().find(|o| o.kind() == kind && o.name() == name).unwrap();
    Change::PutAntrea(o)
}

/// After each step the updated engine holds the same policies and tiers as a fresh load of the same objects and
/// answers alike for every pair of pods and outside address (verdicts, explanations, the matrix).
fn assert_antrea_as_fresh(e: &Engine, m: &Manifests) {
    let f = Engine::new(m.load().cluster);
    let pols = |e: &Engine| -> Vec<String> {
        let c = e.cluster();
        c.policies
            .iter()
            .map(|p| {
                let ns = p.ns().map(|id| c.ns(id).name.clone());
                let tier = &c.tiers[p.tier.index()];
                let scope = match &p.scope {
                    Scope::Cluster(s) => s.to_string(),
                    Scope::Namespace(_) => String::new(),
                };
                let what = (p.order, &p.pod_selector, &p.calico_selector, &p.ingress, &p.egress);
                format!("{:?} {} {ns:?} {} {:?} {scope} {what:?}", p.kind, p.name, tier.name, tier.order)
            })
            .collect()
    };
    assert_eq!(pols(e), pols(&f), "policies");
    let tiers = |e: &Engine| -> Vec<String> { e.cluster().tiers.iter().map(|t| format!("{t:?}")).collect() };
    assert_eq!(tiers(e), tiers(&f), "tiers");
    // What lint reads of the `appliedTo` entries and group peers follows too.
    let refs = |e: &Engine| -> Vec<String> {
        e.cluster()
            .antrea_refs
            .iter()
            .map(|r| format!("{:?} {} {:?} {} {:?}", r.policy, r.field, r.group, r.exists, r.members))
            .collect()
    };
    assert_eq!(refs(e), refs(&f), "antrea_refs");
    let mut eps: Vec<String> =
        f.cluster().pods.iter().map(|p| format!("{}/{}", f.cluster().ns(p.ns).name, p.name)).collect();
    eps.push("192.168.1.1".into());
    let names = |e: &Engine| -> Vec<String> {
        e.cluster().pods.iter().map(|p| format!("{}/{}", e.cluster().ns(p.ns).name, p.name)).collect()
    };
    assert_eq!(names(e), eps[..eps.len() - 1].to_vec());
    for s in &eps {
        for d in &eps {
            let (es, ed) = (e.parse_endpoint(s, "default").unwrap(), e.parse_endpoint(d, "default").unwrap());
            let (fs, fd) = (f.parse_endpoint(s, "default").unwrap(), f.parse_endpoint(d, "default").unwrap());
            for port in [80, 5432, 8080] {
                let want = f.allowed(&fs, &fd, Protocol::Tcp, port);
                assert_eq!(e.allowed(&es, &ed, Protocol::Tcp, port), want, "{s} -> {d}:{port}");
                assert_eq!(
                    e.explain(&es, &ed, Protocol::Tcp, port).render(),
                    f.explain(&fs, &fd, Protocol::Tcp, port).render(),
                    "explain {s} -> {d}:{port}"
                );
            }
        }
    }
    assert_same_matrix(e, &f, 1);
}

/// The verdict of `src` to `dst` on TCP `port`.
fn antrea_allowed(e: &Engine, src: &str, dst: &str, port: u16) -> bool {
    let (s, d) = (e.parse_endpoint(src, "default").unwrap(), e.parse_endpoint(dst, "default").unwrap());
    e.allowed(&s, &d, Protocol::Tcp, port)
}

#[test]
fn antrea_objects_namespaces_and_groups_follow_changes() {
    // A deleted object's document becomes one of a kind netpol skips, so that the others keep their origins.
    let mut m = Manifests(Vec::new());
    m.put("ns-a", &antrea_ns("a", "prod"));
    m.put("ns-b", &antrea_ns("b", "dev"));
    m.put("tier", ANTREA_TIER);
    m.put("group", ANTREA_GROUP);
    m.put("self", ANTREA_SELF);
    m.put("guard", ANTREA_GUARD);
    m.put("annp", ANTREA_ANNP);
    m.put("a-web", &antrea_pod("a", "web", "web", "10.0.0.1"));
    m.put("a-db", &antrea_pod("a", "db", "db", "10.0.0.2"));
    m.put("a-client", &antrea_pod("a", "client", "client", "10.0.0.3"));
    m.put("b-web", &antrea_pod("b", "web", "web", "10.0.0.4"));
    m.put("b-client", &antrea_pod("b", "client", "client", "10.0.0.5"));
    let mut e = Engine::new(m.load().cluster);
    assert_antrea_as_fresh(&e, &m);
    assert!(!antrea_allowed(&e, "a/client", "a/db", 5432), "the custom tier comes first");
    assert!(antrea_allowed(&e, "a/client", "a/db", 80));
    assert!(!antrea_allowed(&e, "b/web", "a/db", 80));

    // A namespace added, with a pod: the Self rule now covers it too.
    m.put("ns-c", &antrea_ns("c", "dev"));
    m.put("c-web", &antrea_pod("c", "web", "web", "10.0.0.6"));
    m.put("c-db", &antrea_pod("c", "other", "other", "10.0.0.7"));
    let fresh = m.load().cluster;
    let ns = fresh.namespaces.iter().find(|n| n.name == "c").unwrap().clone();
    let pods: Vec<Change> = fresh
        .pods
        .iter()
        .filter(|p| fresh.ns(p.ns).name == "c")
        .map(|p| Change::PutPod { namespace: "c".into(), pod: p.clone() })
        .collect();
    let mut changes = vec![Change::PutNamespace(ns)];
    changes.extend(pods);
    let stats = e.update(changes);
    assert!(stats.recompiled, "{stats:?}");
    assert_antrea_as_fresh(&e, &m);
    assert!(antrea_allowed(&e, "c/web", "c/other", 80), "Self covers the new namespace");
    assert!(!antrea_allowed(&e, "a/web", "c/other", 80));

    // Pods in a namespace nothing declares: it exists with them, and the Self rule covers it too.
    m.put("d-x", &antrea_pod("d", "x", "x", "10.0.0.8"));
    m.put("d-y", &antrea_pod("d", "y", "y", "10.0.0.9"));
    let fresh = m.load().cluster;
    let pods: Vec<Change> = fresh
        .pods
        .iter()
        .filter(|p| fresh.ns(p.ns).name == "d")
        .map(|p| Change::PutPod { namespace: "d".into(), pod: p.clone() })
        .collect();
    e.update(pods);
    assert_antrea_as_fresh(&e, &m);
    assert!(antrea_allowed(&e, "d/x", "d/y", 80), "Self covers the undeclared namespace");
    assert!(!antrea_allowed(&e, "a/web", "d/y", 80));

    // The group changes: web pods instead of databases.
    let group = ANTREA_GROUP.replace("app: db", "app: web");
    m.put("group", &group);
    let stats = e.update(vec![antrea_put(&m, "ClusterGroup", "dbs")]);
    assert!(stats.recompiled);
    assert_antrea_as_fresh(&e, &m);
    assert!(antrea_allowed(&e, "a/client", "a/db", 5432), "no longer in the group");
    assert!(!antrea_allowed(&e, "a/client", "a/web", 5432));

    // The Tier's priority changes: after the securityops tier, where the Self rule allows first.
    m.put("tier", &ANTREA_TIER.replace("priority: 10", "priority: 120"));
    e.update(vec![antrea_put(&m, "Tier", "sec")]);
    assert_antrea_as_fresh(&e, &m);
    assert!(antrea_allowed(&e, "a/client", "a/web", 5432));

    // A namespace relabelled, the ANNP changed, a pod deleted, in one batch.
    m.put("ns-b", &antrea_ns("b", "prod"));
    m.put("annp", &ANTREA_ANNP.replace("port: 8080", "port: 80"));
    m.put("b-client", GONE);
    let ns = m.load().cluster.namespaces.into_iter().find(|n| n.name == "b").unwrap();
    e.update(vec![
        Change::PutNamespace(ns),
        antrea_put(&m, "NetworkPolicy", "web-8080"),
        Change::DeletePod { namespace: "b".into(), name: "client".into() },
    ]);
    assert_antrea_as_fresh(&e, &m);

    // The ACNP deleted: nothing drops across namespaces any more.
    m.put("self", GONE);
    let stats = e.update(vec![Change::DeleteAntrea {
        kind: "ClusterNetworkPolicy",
        namespace: None,
        name: "self-only".into(),
    }]);
    assert!(stats.recompiled);
    assert_antrea_as_fresh(&e, &m);
    assert!(antrea_allowed(&e, "a/web", "c/other", 80));

    // The namespace added is deleted with its pods; then every Antrea object: what remains is NetworkPolicy alone.
    for key in ["ns-c", "c-web", "c-db"] {
        m.put(key, GONE);
    }
    e.update(vec![
        Change::DeletePod { namespace: "c".into(), name: "web".into() },
        Change::DeletePod { namespace: "c".into(), name: "other".into() },
        Change::DeleteNamespace { name: "c".into() },
    ]);
    assert_antrea_as_fresh(&e, &m);
    for key in ["tier", "group", "guard", "annp"] {
        m.put(key, GONE);
    }
    e.update(vec![
        Change::DeleteAntrea { kind: "ClusterNetworkPolicy", namespace: None, name: "guard-db".into() },
        Change::DeleteAntrea { kind: "NetworkPolicy", namespace: Some("b".into()), name: "web-8080".into() },
        Change::DeleteAntrea { kind: "ClusterGroup", namespace: None, name: "dbs".into() },
        Change::DeleteAntrea { kind: "Tier", namespace: None, name: "sec".into() },
    ]);
    assert!(e.cluster().antrea.is_empty());
    assert_antrea_as_fresh(&e, &m);
}

/// A policy whose Tier comes later (as a watch may bring them) is admitted once the Tier is there: a new Tier goes
/// before the policies.
#[test]
fn antrea_tier_put_after_its_policy_goes_before_it() {
    let mut m = Manifests(Vec::new());
    m.put("ns-a", &antrea_ns("a", "prod"));
    m.put("a-db", &antrea_pod("a", "db", "db", "10.0.0.2"));
    m.put("a-client", &antrea_pod("a", "client", "client", "10.0.0.3"));
    m.put("group", ANTREA_GROUP);
    let mut e = Engine::new(m.load().cluster);
    let mut loader = netpol_core::load::Loader::new();
    loader.defer_antrea();
    loader.add_bytes("guard.yaml", ANTREA_GUARD.as_bytes());
    let guard = loader.finish().cluster.antrea.pop().unwrap();
    e.update(vec![Change::PutAntrea(guard)]);
    assert!(antrea_allowed(&e, "a/client", "a/db", 5432), "no Tier sec yet: refused");
    let mut loader = netpol_core::load::Loader::new();
    loader.defer_antrea();
    loader.add_bytes("tier.yaml", ANTREA_TIER.as_bytes());
    let tier = loader.finish().cluster.antrea.pop().unwrap();
    e.update(vec![Change::PutAntrea(tier)]);
    let kinds: Vec<&str> = e.cluster().antrea.iter().map(|o| o.kind()).collect();
    assert_eq!(kinds, ["Tier", "ClusterGroup", "ClusterNetworkPolicy"]);
    assert!(!antrea_allowed(&e, "a/client", "a/db", 5432));
}
