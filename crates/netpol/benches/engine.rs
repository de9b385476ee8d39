//! `cargo bench -p netpol --bench engine`: end-to-end figures on synthetic clusters (netpol-synth).
//!
//! For each size it reports parse, compile, full-matrix (whole port space, class-grouped, with pair counts),
//! query throughput (the real `netpol query` loop: JSON parse, resolve, verdict, JSON write, in memory) and the
//! peak resident memory of a process that did only that size. Sizes: `NETPOL_BENCH_SIZES=1k,10k,50k,100k`
//! (default `1k,10k,50k`), each optionally with a variant: `10k+admin` (220 admin-tier ClusterNetworkPolicies
//! added), `10k+calico` (`netpol_synth::generate_calico_yaml`: service accounts, 5 Calico tiers, 2,000 Calico
//! policies, network sets holding 10,000 CIDRs), `10k+cilium` (`netpol_synth::generate_cilium_yaml`: 2,000
//! CiliumNetworkPolicies and 50 CiliumClusterwideNetworkPolicies with deny rules, entities, CIDR sets and 200 HTTP
//! rules; every query flow line of this variant carries an HTTP request, so L7 rules judge it where they apply),
//! `10k+antrea` (`netpol_synth::generate_antrea_yaml`: 1,000 Antrea ClusterNetworkPolicies and NetworkPolicies over
//! every tier, 200 ClusterGroups; its flow lines are the plain ones of NetworkPolicy, so that the two compare);
//! query flow count: `NETPOL_BENCH_FLOWS` (default 2,000,000).
//!
//! A second line per size compares single watch events applied with `Engine::update` (in place, on a clone;
//! median of 5) with recompiling the changed cluster with `Engine::new`.
//!
//! Flow logs (issue 16): `NETPOL_BENCH_FLOWLOG=10k` (and `NETPOL_BENCH_FLOWLOG_N`, default 1,000,000) writes a
//! Hubble JSON log of that many connections on the synthetic cluster (each source pod talks to pods of its own
//! namespace, to a few shared namespaces, to DNS and to outside addresses; FORWARDED or DROPPED as the cluster's
//! policies decide), then times reading it (records/s, one core), `flows replay` against a change (every 40th
//! policy removed: read, fold, compile the change, judge every class), and `generate` (read, fold, plan, render,
//! read back, verify every guarantee).
//!
//! A third line (1k only) adds an egress policy with an ipBlock of 45,000 `except` entries to the cluster and
//! times compile, what `describe` computes for outside addresses (segments, and allowed ports per identity,
//! direction and segment; then the same grouped by ports from runs) and the what-if diff against the cluster
//! without it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

// Linked for its global allocator (mimalloc): the benchmark measures the allocator the `netpol` binary runs with.
extern crate netpol;

use std::fmt::Write as _;
use std::time::Instant;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netpol_core::compile::{Engine, IdentityId};
use netpol_core::diff::{diff, DiffOptions};
use netpol_core::load::Loader;
use netpol_core::model::{
    Direction, IpBlock, Origin, Peer, PodId, Policy, PolicyKind, PolicyPort, PolicyTier, PortMatch, Rule, Scope,
};
use netpol_core::outside::{allowed_groups, allowed_ports, Segments};
use netpol_core::portset::Protocol;
use netpol_core::selector::{Requirement, Selector};
use netpol_core::update::Change;
use netpol_synth::Params;

fn params(size: &str) -> Params {
    match size {
        "1k" => Params::new(100, 1_000, 400),
        "10k" => Params::new(1_000, 10_000, 8_000),
        "50k" => Params::new(5_000, 50_000, 40_000),
        "100k" => Params::new(10_000, 100_000, 80_000),
        other => panic!("unknown size {other}"),
    }
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// A memory figure of this process from /proc/self/status, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn flows(e: &Engine, n: usize, http: bool) -> Vec<u8> {
    let names: Vec<String> = (0..e.cluster().pods.len()).map(|p| e.cluster().pod_ref(PodId::new(p))).collect();
    let ips: Vec<String> = e.cluster().pods.iter().filter_map(|p| p.primary_ip()).map(|ip| ip.to_string()).collect();
    let ports = [53u16, 80, 443, 5432, 8080, 9090, 9100, 30080];
    let mut s = String::with_capacity(n * 80);
    let mut x: u64 = 0x1234_5678;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..n {
        let r = next();
        let src = if r % 4 == 0 && !ips.is_empty() {
            &ips[(r >> 8) as usize % ips.len()]
        } else {
            &names[(r >> 8) as usize % names.len()]
        };
        let r2 = next();
        let dst = if r2 % 8 == 0 { "203.0.113.10" } else { &names[(r2 >> 8) as usize % names.len()] };
        let port = ports[(r2 >> 40) as usize % ports.len()];
        let proto = if port == 53 && r2 % 2 == 0 { "UDP" } else { "TCP" };
        if http && proto == "TCP" {
            // Requests the synthetic HTTP rules allow, and some they do not.
            const REQ: [(&str, &str); 6] = [
                ("GET", "/api/v1/orders/42"),
                ("GET", "/api/v1/products/7"),
                ("POST", "/api/v1/orders"),
                ("GET", "/metrics"),
                ("DELETE", "/api/v1/orders/9"),
                ("GET", "/nowhere"),
            ];
            let (m, path) = REQ[(r >> 40) as usize % REQ.len()];
            let _ = writeln!(
                s,
                r#"{{"src":"{src}","dst":"{dst}","protocol":"TCP","port":{port},"http":{{"method":"{m}","path":"{path}","headers":{{"X-Request-Id":"1"}}}}}}"#
            );
            continue;
        }
        let _ = writeln!(s, r#"{{"src":"{src}","dst":"{dst}","protocol":"{proto}","port":{port}}}"#);
    }
    s.into_bytes()
}

/// `10k+admin`: the preset with 200 Admin-tier and 20 Baseline-tier ClusterNetworkPolicies added.
const ADMIN_POLICIES: (usize, usize) = (200, 20);

/// `10k+calico`: the preset's cluster with service accounts, plus 2,000 Calico policies over 5 tiers and network
/// sets holding 10,000 CIDRs.
const CALICO: (usize, usize) = (2_000, 10_000);

/// `10k+cilium`: CNPs, CCNPs and HTTP rules (the issue's figures).
const CILIUM: (usize, usize, usize) = (2_000, 50, 200);

/// `10k+antrea`: Antrea policies and ClusterGroups (the issue's figures).
const ANTREA: (usize, usize) = (1_000, 200);

fn run_size(size: &str) {
    let (size, variant) = size.split_once('+').unwrap_or((size, ""));
    let (admin, calico, cilium) = match variant {
        "" | "antrea" => (false, false, false),
        "admin" => (true, false, false),
        "calico" => (false, true, false),
        "cilium" => (false, false, true),
        other => panic!("unknown variant +{other} (admin, calico, cilium, antrea)"),
    };
    let antrea = variant == "antrea";
    let p = params(size);
    let mut yaml = if calico {
        netpol_synth::generate_calico_yaml(&p, CALICO.0, CALICO.1)
    } else if cilium {
        netpol_synth::generate_cilium_yaml(&p, CILIUM.0, CILIUM.1, CILIUM.2)
    } else if antrea {
        netpol_synth::generate_antrea_yaml(&p, ANTREA.0, ANTREA.1)
    } else {
        netpol_synth::generate_yaml(&p)
    };
    if admin {
        yaml.push_str(&netpol_synth::generate_admin_yaml(p.namespaces / 3, ADMIN_POLICIES.0, ADMIN_POLICIES.1));
    }
    let label = if variant.is_empty() { size.to_string() } else { format!("{size}+{variant}") };
    let yaml_mib = yaml.len() as f64 / f64::from(1u32 << 20);
    let t = Instant::now();
    let mut loader = Loader::new();
    loader.add_bytes("synth.yaml", yaml.as_bytes());
    let loaded = loader.finish();
    let parse = t.elapsed();
    // Cilium: the policies using what netpol does not model yet are refused, each with an error (counted below).
    let refused = loaded.diagnostics.iter().filter(|d| d.message.contains("not modelled by netpol yet")).count();
    let unexpected: Vec<_> =
        loaded.diagnostics.iter().filter(|d| !(cilium && d.message.contains("not modelled by netpol yet"))).collect();
    assert!(unexpected.is_empty(), "{:?}", &unexpected[..unexpected.len().min(3)]);
    drop(yaml);
    let t = Instant::now();
    let engine = Engine::new(loaded.cluster);
    let compile = t.elapsed();
    let stats = engine.stats();

    let t = Instant::now();
    let mut m = engine.matrix(None).unwrap();
    let planned = t.elapsed();
    let counts = m.pair_counts(&engine);
    let matrix = t.elapsed();
    let allowed_sets = counts.len();
    // Peak memory of parse + compile + matrix (before the query input buffer is built).
    let peak = peak_rss_mib();

    let n_flows: usize = std::env::var("NETPOL_BENCH_FLOWS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let input = flows(&engine, n_flows, cilium);
    let mut out = std::io::sink();
    let t = Instant::now();
    let errors = netpol_input::query::run(&engine, &mut &input[..], &mut out, false, "default").unwrap();
    let query = t.elapsed();
    assert_eq!(errors, 0);

    println!(
        "{label:>5}: pods {:>6} ns {:>6} policies {:>6} | identities {:>6} src/dst classes {:>6}/{:>6} | parse {:>8.1} ms | compile {:>8.1} ms | load+compile {:>8.1} ms | matrix {:>9.1} ms (classes and plan {:.1} ms; {} distinct port sets) | query {:>5.2} M flows/s | peak RSS (load+compile+matrix) {:>7.1} MiB",
        stats["pods"],
        stats["namespaces"],
        stats["policies"],
        stats["identities"],
        m.src_classes.len(),
        m.dst_classes.len(),
        parse.as_secs_f64() * 1e3,
        compile.as_secs_f64() * 1e3,
        (parse + compile).as_secs_f64() * 1e3,
        matrix.as_secs_f64() * 1e3,
        planned.as_secs_f64() * 1e3,
        allowed_sets,
        n_flows as f64 / query.as_secs_f64() / 1e6,
        peak,
    );
    if admin {
        run_admin_update(&label, &engine);
        return;
    }
    if cilium {
        let c = engine.cluster();
        let cilium_objects: std::collections::BTreeSet<(Option<netpol_core::model::NsId>, &str)> =
            c.policies.iter().filter(|p| p.kind.is_cilium()).map(|p| (p.ns(), p.name.as_str())).collect();
        let l7 = c.policies.iter().flat_map(|p| p.ingress.iter().chain(&p.egress)).filter(|r| r.l7.is_some()).count();
        println!(
            "{label:>5}: {yaml_mib:.1} MiB of YAML | {} Cilium objects loaded ({refused} errors on objects refused as not modelled yet) | {l7} rules with L7 rules | ip blocks {}, ip classes {}, selector peers {}, rules {}",
            cilium_objects.len(),
            stats["ip_blocks"],
            stats["ip_classes"],
            stats["selector_peers"],
            stats["rules"],
        );
        return;
    }
    if antrea {
        let c = engine.cluster();
        let objects: std::collections::BTreeSet<(Option<netpol_core::model::NsId>, &str)> =
            c.policies.iter().filter(|p| p.kind.is_antrea()).map(|p| (p.ns(), p.name.as_str())).collect();
        println!(
            "{label:>5}: {yaml_mib:.1} MiB of YAML | {} Antrea policies ({} model policies: one per rule and appliedTo), {} tiers | ip blocks {}, ip classes {}, selector peers {}, rules {}",
            objects.len(),
            c.policies.iter().filter(|p| p.kind.is_antrea()).count(),
            c.tiers.len(),
            stats["ip_blocks"],
            stats["ip_classes"],
            stats["selector_peers"],
            stats["rules"],
        );
        return;
    }
    if calico {
        let c = engine.cluster();
        println!(
            "{label:>5}: {yaml_mib:.1} MiB of YAML | {} tiers, {} network sets ({} CIDRs), {} service accounts | ip blocks {}, ip classes {}, selector peers {}, rules {}",
            c.tiers.len(),
            c.network_sets.len(),
            c.network_sets.iter().map(|s| s.nets.len()).sum::<usize>(),
            c.service_accounts.len(),
            stats["ip_blocks"],
            stats["ip_classes"],
            stats["selector_peers"],
            stats["rules"],
        );
        return;
    }
    run_updates(size, &engine);
    if size == "1k" {
        run_long_except(size, &engine);
    }
}

/// Incremental update of one admin policy: its priority moved and its first rule's action changed, then put
/// back; median and max over 21 updates.
fn run_admin_update(label: &str, engine: &Engine) {
    use netpol_core::model::{Action, PolicyKind};
    let mut e = engine.clone();
    let Some(idx) = e.cluster().policies.iter().position(|p| p.kind == PolicyKind::ClusterNetworkPolicy) else {
        return;
    };
    let original = e.cluster().policies[idx].clone();
    let mut times = Vec::new();
    for k in 0..21 {
        let mut pol = original.clone();
        if k % 2 == 0 {
            pol.order = netpol_core::model::Order(pol.order.0.map(|o| o + 500.0));
            for r in pol.ingress.iter_mut().chain(pol.egress.iter_mut()).take(1) {
                r.action = if r.action == Action::Deny { Action::Allow } else { Action::Deny };
            }
        }
        let t = Instant::now();
        let st = e.update(vec![Change::PutPolicy { namespace: String::new(), policy: pol }]);
        times.push(t.elapsed());
        assert!(!st.recompiled, "{st:?}");
    }
    times.sort();
    println!(
        "{label:>5}: update one admin policy (cnp/{}): median {:.2} ms, max {:.2} ms (21 updates, in place)",
        original.name,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
}

/// 45,000 `except` entries in `0.0.0.0/0`: 39,000 spread /32s, 4,000 /24s, 1,000 /20s with a /32 nested in
/// each, and 10.0.0.0/8 (the synthetic pod addresses).
fn long_except() -> Vec<String> {
    let v4 = |n: u32, p: u8| format!("{}/{p}", std::net::Ipv4Addr::from(n));
    let mut ex: Vec<String> = (0..38_999u32).map(|i| v4(0x6440_0000 + i * 7, 32)).collect();
    ex.extend((0..4_000u32).map(|i| v4(0xac10_0000 + ((i * 2) << 8), 24)));
    ex.extend((0..1_000u32).map(|i| v4(0x0b00_0000 + ((i * 2) << 12), 20)));
    ex.extend((0..1_000u32).map(|i| v4(0x0b00_0000 + ((i * 2) << 12) + 77, 32)));
    ex.push(v4(0x0a00_0000, 8));
    ex
}

/// Compile, describe's outside computation and the what-if diff with a 45,000-entry except list.
fn run_long_except(size: &str, engine: &Engine) {
    // Pods of an app whose egress is not isolated yet (else the first ordinary pod's): the policy changes what
    // they may reach outside.
    let ordinary =
        |p: PodId| !engine.cluster().pod(p).host_network && engine.cluster().pod(p).labels.contains_key("app");
    let n = engine.cluster().pods.len();
    let pod = (0..n)
        .map(PodId::new)
        .find(|&p| ordinary(p) && !engine.isolated(engine.pod_identity(p), Direction::Egress))
        .or_else(|| (0..n).map(PodId::new).find(|&p| ordinary(p)))
        .unwrap();
    let mut cluster = engine.cluster().clone();
    let ns = cluster.pods[pod.index()].ns;
    let app = cluster.pods[pod.index()].labels.get("app").unwrap().to_string();
    cluster.policies.push(Policy {
        host: Default::default(),
        position: 0,
        manifest: None,
        kind: PolicyKind::NetworkPolicy,
        tier: PolicyTier::NetworkPolicy,
        order: 1000.into(),
        calico_selector: None,
        scope: Scope::Namespace(ns),
        name: "bench-long-except".into(),
        pod_selector: label_selector("app", &app),
        ingress: Vec::new(),
        egress: vec![Rule {
            peers: vec![Peer::IpBlock(IpBlock {
                cidr: "0.0.0.0/0".parse().unwrap(),
                except: long_except().iter().map(|e| e.parse().unwrap()).collect(),
            })],
            ports: vec![PolicyPort { protocol: Protocol::Tcp, port: PortMatch::Range(443, 443) }],
            ..Default::default()
        }],
        affects_ingress: false,
        affects_egress: true,
        origin: Origin::default(),
    });
    let t = Instant::now();
    let new = Engine::new(cluster);
    let compile = t.elapsed();
    let t = Instant::now();
    let segs = Segments::new(&[&new]);
    let mut nonempty = 0usize;
    for ident in (0..new.identities().len()).map(IdentityId::new) {
        for dir in [Direction::Egress, Direction::Ingress] {
            nonempty += allowed_ports(&new, ident, dir, &segs).iter().filter(|p| !p.is_empty()).count();
        }
    }
    let describe = t.elapsed();
    // The same grouped by ports as `describe` prints it, from the runs (outside::allowed_groups).
    let t = Instant::now();
    let skip: Vec<usize> = (0..segs.len()).filter(|&i| segs.outside_address(i, &[&new]).is_none()).collect();
    let mut groups = 0usize;
    for ident in (0..new.identities().len()).map(IdentityId::new) {
        for dir in [Direction::Egress, Direction::Ingress] {
            groups += allowed_groups(&new, ident, dir, &segs, &skip).len();
        }
    }
    let grouped = t.elapsed();
    let t = Instant::now();
    let d = diff(engine, &new, &DiffOptions::default());
    let what_if = t.elapsed();
    println!(
        "{size:>5}: + ipBlock with 45,000 excepts ({} segments, {} identities) | compile {:>7.1} ms | outside ports per segment (describe today) {:>7.1} ms ({nonempty} non-empty) | grouped from runs (allowed_groups) {:>7.1} ms ({groups} groups) | what-if diff {:>7.1} ms ({} outside groups)",
        segs.len(),
        new.identities().len(),
        compile.as_secs_f64() * 1e3,
        describe.as_secs_f64() * 1e3,
        grouped.as_secs_f64() * 1e3,
        what_if.as_secs_f64() * 1e3,
        d.outside.len(),
    );
}

/// Blocks containing an address: pods with the same blocks (and labels, ports) share an identity.
fn block_signature(e: &Engine, ip: IpAddr) -> Vec<usize> {
    e.blocks().iter().enumerate().filter(|(_, b)| b.contains(ip)).map(|(i, _)| i).collect()
}

/// An unused IPv4 address near `ip` in the same ipBlocks.
fn free_ip_like(e: &Engine, ip: IpAddr) -> IpAddr {
    let IpAddr::V4(v4) = ip else { return ip };
    let sig = block_signature(e, ip);
    (1..4096u32)
        .map(|k| IpAddr::V4((u32::from(v4).wrapping_add(k)).into()))
        .find(|c| e.pod_with_ip(*c).is_none() && block_signature(e, *c) == sig)
        .unwrap_or(ip)
}

fn label_selector(k: &str, v: &str) -> Selector {
    Selector::from_requirements(vec![Requirement::In(k.into(), vec![v.into()])])
}

/// Single watch events: `Engine::update` on a clone (median of 5, clone not timed) vs `Engine::new` of the
/// changed cluster.
fn run_updates(size: &str, engine: &Engine) {
    let c = &engine.cluster();
    let n = c.pods.len();
    let plain = |p: PodId| !c.pod(p).host_network && c.pod(p).primary_ip().is_some();
    // A pod sharing its identity with others, and one alone in its identity.
    let shared =
        (0..n).map(PodId::new).find(|&p| plain(p) && engine.identity_of(p).pods.len() > 1).expect("a shared identity");
    let alone = (0..n).map(PodId::new).find(|&p| plain(p) && engine.identity_of(p).pods.len() == 1).unwrap_or(shared);
    // The same, half-way through the pods: deleting one of the first pods is the best case of a scan from the first.
    let shared_mid =
        (n / 2..n).map(PodId::new).find(|&p| plain(p) && engine.identity_of(p).pods.len() > 1).unwrap_or(shared);
    let template = c.pod(shared).clone();
    let ns = c.ns_name(template.ns).to_string();
    let mut same = template.clone();
    same.name = "bench-added".into();
    same.ips = vec![free_ip_like(engine, template.ips[0])];
    let mut fresh = same.clone();
    fresh.labels.insert("bench", "new-identity");
    let app = template.labels.get("app").unwrap_or_default().to_string();
    let policy = Policy {
        host: Default::default(),
        position: 0,
        manifest: None,
        kind: PolicyKind::NetworkPolicy,
        tier: PolicyTier::NetworkPolicy,
        order: 1000.into(),
        calico_selector: None,
        scope: Scope::Namespace(netpol_core::model::NsId::new(0)),
        name: "bench-policy".into(),
        pod_selector: label_selector("app", &app),
        ingress: vec![Rule {
            peers: vec![Peer::Selectors {
                namespaces: Some(label_selector("kubernetes.io/metadata.name", &ns)),
                pods: Some(label_selector("app", "bench-client")),
            }],
            ports: vec![PolicyPort { protocol: Protocol::Tcp, port: PortMatch::Range(8080, 8080) }],
            ..Default::default()
        }],
        egress: Vec::new(),
        affects_ingress: true,
        affects_egress: false,
        origin: Origin::default(),
    };
    let del =
        |p: PodId| Change::DeletePod { namespace: c.ns_name(c.pod(p).ns).to_string(), name: c.pod(p).name.clone() };
    // (what, change, how the number of identities changes)
    let events = [
        ("add pod, known identity", Change::PutPod { namespace: ns.clone(), pod: same }, 0),
        ("add pod, new labels", Change::PutPod { namespace: ns.clone(), pod: fresh }, 1),
        ("delete pod", del(shared), 0),
        ("delete pod half-way through the list", del(shared_mid), 0),
        ("delete last pod of an identity", del(alone), -1),
        ("add policy", Change::PutPolicy { namespace: ns.clone(), policy: policy.clone() }, 0),
    ];
    // A long-lived engine's vectors have spare capacity; a clone's do not. Untimed pods (one of a new identity)
    // and a policy, added and deleted, give the clone the spare capacity of a live engine, so that a timing is not
    // one reallocation of the identity, label-set and index tables.
    let mut warm = template.clone();
    warm.name = "bench-warm-up".into();
    let mut warm_new = template.clone();
    warm_new.name = "bench-warm-up-new".into();
    warm_new.ips = vec![free_ip_like(engine, template.ips[0])];
    warm_new.labels.insert("bench", "warm-up-identity");
    let mut warm_policy = policy.clone();
    warm_policy.name = "bench-warm-up".into();
    let warm_up = vec![
        Change::PutPod { namespace: ns.clone(), pod: warm },
        Change::DeletePod { namespace: ns.clone(), name: "bench-warm-up".into() },
        Change::PutPod { namespace: ns.clone(), pod: warm_new },
        Change::DeletePod { namespace: ns.clone(), name: "bench-warm-up-new".into() },
        Change::PutPolicy { namespace: ns.clone(), policy: warm_policy },
        Change::DeletePolicy { namespace: ns.clone(), name: "bench-warm-up".into() },
    ];
    let mut line = format!("{size:>5}: update in place vs Engine::new");
    for (what, change, identities) in events {
        let mut times: Vec<Duration> = Vec::new();
        let mut after = None;
        for _ in 0..5 {
            let mut e = engine.clone();
            let st = e.update(warm_up.clone());
            assert!(!st.recompiled, "warm-up: {st:?}");
            let changes = vec![change.clone()];
            let t = Instant::now();
            let st = e.update(changes);
            times.push(t.elapsed());
            assert!(!st.recompiled && st.in_place == 1, "{what}: {st:?}");
            after = Some(e);
        }
        times.sort();
        let after = after.unwrap();
        assert_eq!(after.identities().len() as i64, engine.identities().len() as i64 + identities, "{what}");
        let cluster = after.cluster().clone();
        drop(after);
        let t = Instant::now();
        let recompiled = Engine::new(cluster);
        let full = t.elapsed();
        drop(recompiled);
        let _ =
            write!(line, " | {what} {:>7.1} µs vs {:>6.1} ms", times[2].as_secs_f64() * 1e6, full.as_secs_f64() * 1e3);
    }
    println!("{line}");
}

/// Reading only: one input file (written by the parent process) loaded in a fresh process, so that peak RSS is
/// the input's bytes plus what loading keeps and allocates. Best of `NETPOL_BENCH_LOAD_RUNS` (default 5) times.
fn run_load(path: &str) {
    // What the process holds before reading anything (code, allocator, runtime): reported apart, since it
    // dominates small inputs.
    let base = status_mib("VmRSS:");
    let bytes = std::fs::read(path).unwrap();
    let runs: usize = std::env::var("NETPOL_BENCH_LOAD_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut loader = Loader::new();
        loader.add_bytes(path, &bytes);
        let loaded = loader.finish();
        times.push(t.elapsed().as_secs_f64());
        assert!(loaded.diagnostics.is_empty(), "{:?}", &loaded.diagnostics[..loaded.diagnostics.len().min(3)]);
        let objects = loaded.cluster.pods.len() + loaded.cluster.policies.len() + loaded.cluster.namespaces.len();
        // The first run's peak is the one reported: later runs reuse freed memory.
        if times.len() == 1 {
            let peak = peak_rss_mib();
            let now = status_mib("VmRSS:");
            let mib = bytes.len() as f64 / (1 << 20) as f64;
            print!(
                "{:>40}: {:>7.1} MiB, {objects} objects | peak RSS {:>7.1} MiB = {:.2}x the input, {:.2}x over the \
                 process's {:.1} MiB before reading (after loading: {:.1} MiB)",
                path.rsplit('/').next().unwrap_or(path),
                mib,
                peak,
                peak / mib,
                (peak - base) / mib,
                base,
                now
            );
        }
    }
    times.sort_by(f64::total_cmp);
    let mb = bytes.len() as f64 / 1e6;
    println!(
        " | {:.1}-{:.1} ms = {:.0}-{:.0} MB/s over {runs} runs",
        times[0] * 1e3,
        times[times.len() - 1] * 1e3,
        mb / times[times.len() - 1],
        mb / times[0]
    );
}

/// Writes the size's cluster as multi-document YAML, as a `kubectl get -o json`-style List (indented) and as a
/// single-line JSON List, and loads each in a fresh process.
fn load_formats(size: &str) {
    let dir = std::env::var("CARGO_TARGET_TMPDIR")
        .or_else(|_| std::env::var("CARGO_TARGET_DIR").map(|d| format!("{d}/tmp")))
        .unwrap_or_else(|_| "target/tmp".to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = netpol_synth::generate_yaml(&params(size));
    let docs: Vec<serde_json::Value> = serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect();
    let list =
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs, "metadata": {"resourceVersion": ""}});
    let files = [
        (format!("{dir}/synth-{size}.yaml"), yaml.into_bytes()),
        (format!("{dir}/synth-{size}-list.json"), serde_json::to_vec_pretty(&list).unwrap()),
        (format!("{dir}/synth-{size}-list-one-line.json"), serde_json::to_vec(&list).unwrap()),
    ];
    drop(list);
    for (path, bytes) in &files {
        std::fs::write(path, bytes).unwrap();
    }
    for (path, _) in &files {
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new(exe).env("NETPOL_BENCH_LOAD_ONE", path).status().unwrap();
        assert!(status.success(), "loading {path} failed");
        // `NETPOL_BENCH_KEEP=1` keeps the inputs (for profiling a single load with `NETPOL_BENCH_LOAD_ONE=path`).
        if std::env::var_os("NETPOL_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A Hubble JSON log (`hubble observe -o json` lines) of `n` connections on `engine`'s cluster, each opening with
/// a SYN at the source's egress; verdicts as the policies decide.
fn hubble_log(engine: &Engine, n: usize) -> Vec<u8> {
    use netpol_core::compile::{Endpoint, FlowInfo};
    use std::io::Write as _;
    let c = engine.cluster();
    let pods: Vec<usize> =
        (0..c.pods.len()).filter(|&i| !c.pods[i].host_network && !c.pods[i].ips.is_empty()).collect();
    let mut by_ns: Vec<Vec<usize>> = vec![Vec::new(); c.namespaces.len()];
    for &i in &pods {
        by_ns[c.pods[i].ns.index()].push(i);
    }
    let dns: Vec<usize> =
        pods.iter().copied().filter(|&i| c.pods[i].labels.get("k8s-app") == Some("kube-dns")).collect();
    let shared: Vec<usize> = by_ns.iter().filter(|v| !v.is_empty()).take(10).flatten().copied().collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |k: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % k.max(1) as u64) as usize
    };
    let labels = |i: usize| -> String {
        let p = &c.pods[i];
        let mut v: Vec<String> = p.labels.iter().map(|(k, v)| format!("\"k8s:{k}={v}\"")).collect();
        v.push(format!("\"k8s:io.kubernetes.pod.namespace={}\"", c.ns(p.ns).name));
        v.join(",")
    };
    let end = |i: usize| -> String {
        let p = &c.pods[i];
        format!("{{\"namespace\":\"{}\",\"pod_name\":\"{}\",\"labels\":[{}]}}", c.ns(p.ns).name, p.name, labels(i))
    };
    let mut out = Vec::with_capacity(n * 600);
    for k in 0..n {
        let s = pods[next(pods.len())];
        let sp = &c.pods[s];
        let roll = next(100);
        let (dst_ip, dst_end, proto, port) = if roll < 15 && !dns.is_empty() {
            let d = dns[next(dns.len())];
            (c.pods[d].ips[0], end(d), Protocol::Udp, 53u16)
        } else if roll < 25 {
            let ip: IpAddr = format!("203.0.113.{}", 1 + next(50)).parse().unwrap();
            (ip, "{\"identity\":2,\"labels\":[\"reserved:world\"]}".to_string(), Protocol::Tcp, 443)
        } else {
            let pool = if roll < 35 { &shared } else { &by_ns[sp.ns.index()] };
            let d = pool[next(pool.len())];
            let dp = &c.pods[d];
            let port = dp.ports.iter().find(|p| p.protocol == Protocol::Tcp).map_or(8080, |p| p.port);
            (dp.ips[0], end(d), Protocol::Tcp, port)
        };
        let dst = engine.endpoint_for_ip(dst_ip);
        let allowed = engine.allowed_flow(
            &Endpoint::Pod { pod: netpol_core::model::PodId::new(s), ip: None },
            &dst,
            FlowInfo::default(),
            proto,
            port,
        );
        let verdict = if allowed { "FORWARDED" } else { "DROPPED\",\"drop_reason_desc\":\"POLICY_DENIED" };
        let sport = 32768 + (k % 28000);
        let l4 = match proto {
            Protocol::Udp => format!("{{\"UDP\":{{\"source_port\":{sport},\"destination_port\":{port}}}}}"),
            _ => format!(
                "{{\"TCP\":{{\"source_port\":{sport},\"destination_port\":{port},\"flags\":{{\"SYN\":true}}}}}}"
            ),
        };
        let t = format!("2026-12-01T10:{:02}:{:02}.{:06}Z", (k / 60_000_000) % 60, (k / 1_000_000) % 60, k % 1_000_000);
        writeln!(
            out,
            "{{\"flow\":{{\"time\":\"{t}\",\"verdict\":\"{verdict}\",\"IP\":{{\"source\":\"{}\",\"destination\":\"{dst_ip}\",\"ipVersion\":\"IPv4\"}},\"l4\":{l4},\"source\":{},\"destination\":{dst_end},\"Type\":\"L3_L4\",\"node_name\":\"node-1\",\"traffic_direction\":\"EGRESS\",\"is_reply\":false}},\"node_name\":\"node-1\",\"time\":\"{t}\"}}",
            sp.ips[0],
            end(s),
        )
        .unwrap();
    }
    out
}

/// Reads and folds a log held in memory: the folded classes, the records read and the unreadable lines.
fn read_fold(log: &[u8]) -> (Vec<netpol_input::flowlog::Folded>, u64, usize) {
    let mut folder = netpol_input::flowlog::Folder::new();
    let reader = netpol_input::flowlog::Reader::new("bench.jsonl", std::io::Cursor::new(log), None);
    let (mut records, mut errors) = (0u64, 0usize);
    for r in reader {
        match r {
            Ok(o) => {
                records += 1;
                folder.add("bench.jsonl", o);
            }
            Err(_) => errors += 1,
        }
    }
    (folder.finish(), records, errors)
}

fn run_flowlog(size: &str) {
    let n: usize = std::env::var("NETPOL_BENCH_FLOWLOG_N").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let p = params(size);
    let yaml = netpol_synth::generate_yaml(&p);
    let mut loader = Loader::new();
    loader.add_bytes("synth.yaml", yaml.as_bytes());
    let loaded = loader.finish();
    let engine = Engine::new(loaded.cluster.clone());
    let log = hubble_log(&engine, n);
    let mib = log.len() as f64 / f64::from(1u32 << 20);
    // Reading alone (parse every line into a record), one core.
    let t = Instant::now();
    let reader = netpol_input::flowlog::Reader::new("bench.jsonl", std::io::Cursor::new(&log[..]), None);
    let mut records = 0u64;
    for r in reader {
        r.unwrap();
        records += 1;
    }
    let read = t.elapsed();
    assert_eq!(records as usize, n);
    // Replay against a change: every 40th policy removed.
    let t = Instant::now();
    let (folded, _, errors) = read_fold(&log);
    assert_eq!(errors, 0);
    let fold = t.elapsed();
    let mut changed = loaded.cluster.clone();
    let mut k = 0;
    changed.policies.retain(|_| {
        k += 1;
        k % 40 != 0
    });
    let t2 = Instant::now();
    let proposed = Engine::new(changed);
    let rep = netpol_input::replay::replay(&engine, Some(&proposed), &folded, netpol_input::replay::Options::default());
    let judge = t2.elapsed();
    let replay = t.elapsed();
    // Generate (read and fold again: the command does).
    let t = Instant::now();
    let (folded, _, _) = read_fold(&log);
    let opts = netpol_input::generate::Options {
        dialect: netpol_input::generate::Dialect::NetworkPolicy,
        namespace: None,
        allow_observed_denials: true,
    };
    let g = netpol_input::generate::generate(&engine, &folded, &opts).unwrap();
    let generate = t.elapsed();
    let s = &rep.summary;
    println!(
        "{size:>5} flow log: {n} connections, {mib:.0} MiB of Hubble JSON | read {:.2} M records/s ({:.2} s) | replay against a change {:.2} s (read+fold {:.2} s, compile change + judge {} classes {:.2} s; {} newly denied, {} unresolved) | generate {:.2} s ({} policies, {} rules; ok {}; over-allow {} replicas / {} new / {} dns) | peak RSS {:.0} MiB",
        records as f64 / read.as_secs_f64() / 1e6,
        read.as_secs_f64(),
        replay.as_secs_f64(),
        fold.as_secs_f64(),
        folded.len(),
        judge.as_secs_f64(),
        s.newly_denied.classes,
        s.unresolved.classes,
        generate.as_secs_f64(),
        g.report.sizes.policies,
        g.report.sizes.rules,
        g.report.ok,
        g.report.verification.over_allow.replicas,
        g.report.verification.over_allow.new,
        g.report.verification.over_allow.dns,
        peak_rss_mib(),
    );
}

/// One node agent's share of the synthetic cluster spread over `NETPOL_BENCH_AGENT_NODES` nodes (default 50):
/// the node's ruleset generated (median of 5), its first program into a fresh network namespace and a program
/// after one policy is removed (when run as root with nft; else only the generation), and the process's peak memory.
fn run_agent(size: &str) {
    let nodes: usize = std::env::var("NETPOL_BENCH_AGENT_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let p = params(size);
    let yaml = netpol_synth::generate_yaml(&p);
    let mut loader = Loader::new();
    loader.add_bytes("synth.yaml", yaml.as_bytes());
    let mut cluster = loader.finish().cluster;
    drop(yaml);
    for (i, pod) in cluster.pods.iter_mut().enumerate() {
        pod.node = Some(format!("node{}", i % nodes));
    }
    let t = Instant::now();
    let engine = Engine::new(cluster.clone());
    let compile = t.elapsed();
    let mut gen = Vec::new();
    let mut rs = netpol_nft::ruleset::generate_for_node(&engine, "node0");
    for _ in 0..5 {
        let t = Instant::now();
        rs = netpol_nft::ruleset::generate_for_node(&engine, "node0");
        gen.push(t.elapsed());
    }
    gen.sort();
    let (rules, elements) = rs.size();
    let whole = netpol_nft::ruleset::generate(&engine).size();
    let script = rs.replace_script();
    let mut kernel = String::from("not programmed (not root, or no nft)");
    let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if root && netpol_nft::apply::nft_available() {
        let ns = format!("npbench-agent-{}", std::process::id());
        let r = netpol_nft::apply::System;
        let _ = netpol_nft::apply::ip_batch(&r, None, &format!("netns add {ns}\n"), false);
        let t = Instant::now();
        netpol_nft::apply::nft_apply(&r, Some(&ns), &script).unwrap();
        let first = t.elapsed();
        // One change: a policy removed, the node's ruleset regenerated and programmed again (whole table).
        let mut changed = cluster.clone();
        changed.policies.remove(0);
        let e2 = Engine::new(changed);
        // As the agent programs it: the difference from the ruleset the kernel holds, in one transaction.
        let t = Instant::now();
        let s2 = netpol_nft::ruleset::generate_for_node(&e2, "node0").snapshot().update_script(&rs.snapshot());
        let regen = t.elapsed();
        let t = Instant::now();
        netpol_nft::apply::nft_apply(&r, Some(&ns), &s2).unwrap();
        let second = t.elapsed();
        let _ = netpol_nft::apply::ip_batch(&r, None, &format!("netns del {ns}\n"), false);
        kernel = format!(
            "first program (nft -f, whole table) {:.0} ms | one policy removed: ruleset and difference {:.0} ms + program (the difference, one transaction) {:.0} ms",
            first.as_secs_f64() * 1e3,
            regen.as_secs_f64() * 1e3,
            second.as_secs_f64() * 1e3
        );
    }
    println!(
        "{size:>5} agent, node0 of {nodes}: {} local pods | compile {:.0} ms | node ruleset {:.1} ms (median of 5): {rules} rules, {elements} elements (whole cluster's: {} rules, {} elements), script {:.1} MiB | {kernel} | peak RSS {:.0} MiB",
        netpol_nft::ruleset::node_pod_addresses(&engine, "node0").len(),
        compile.as_secs_f64() * 1e3,
        gen[2].as_secs_f64() * 1e3,
        whole.0,
        whole.1,
        script.len() as f64 / f64::from(1u32 << 20),
        peak_rss_mib(),
    );
}

/// One HTTP/1.1 GET to the agent's metrics endpoint: the body, or `None`.
fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 200").then(|| text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()))?
}

/// A metric's value on the agent's `/metrics` (the first sample).
fn agent_metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let body = http_get(addr, "/metrics")?;
    body.lines().find(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ')))?.rsplit(' ').next()?.parse().ok()
}

/// A write to the fake API server over HTTP (as a client sends it): the answer's resourceVersion.
fn api_write(server: &str, method: &str, path: &str, body: &str) -> u64 {
    use std::io::{Read, Write};
    let addr = server.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if method == "PATCH" { "application/merge-patch+json" } else { "application/json" },
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 20"), "{method} {path}: {}", text.lines().next().unwrap_or(""));
    let at = text.find("\"resourceVersion\":\"").unwrap() + 19;
    text[at..].split('"').next().unwrap().parse().unwrap()
}

/// The node agent end to end: the synthetic cluster served by the fake API server (over HTTP, as a real one), the
/// real `netpol agent` process watching it and programming node0 of `NETPOL_BENCH_AGENT_NODES` (default 50) in a
/// network namespace of its own (root, nft). Measured: from the agent's start to its first program (list, compile,
/// ruleset, transaction); from the API server's answer to a write (a policy created or deleted, a pod relabelled)
/// until the agent's kernel reflects it (the agent's "model updated" log line, read as it comes), with
/// the agent's own figures (event to kernel, program); the agent process's peak memory (VmHWM).
fn run_agent_live(size: &str) {
    let nodes: usize = std::env::var("NETPOL_BENCH_AGENT_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let root = std::process::Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if !root || !netpol_nft::apply::nft_available() {
        println!("{size:>5} agent (live): not run (needs root and nft)");
        return;
    }
    let yaml = netpol_synth::generate_yaml(&params(size));
    let server = netpol_fakeapi::FakeApiServer::start().unwrap();
    let mut pods = 0;
    let mut node0_pod = None;
    for doc in serde_yaml_ng::Deserializer::from_str(&yaml) {
        let mut v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if v["kind"] == "Pod" {
            let node = format!("node{}", pods % nodes);
            if pods % nodes == 0 && node0_pod.is_none() {
                node0_pod = Some((
                    v["metadata"]["namespace"].as_str().unwrap().to_string(),
                    v["metadata"]["name"].as_str().unwrap().to_string(),
                ));
            }
            v["spec"]["nodeName"] = serde_json::json!(node);
            pods += 1;
        }
        server.try_put(v).unwrap();
    }
    drop(yaml);
    for n in 0..nodes {
        server.put(serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node{n}")}}));
    }
    let dir = std::env::temp_dir().join(format!("npbench-agent-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let ns = format!("npbench-live-{}", std::process::id());
    let r = netpol_nft::apply::System;
    let _ = netpol_nft::apply::ip_batch(&r, None, &format!("netns add {ns}\n"), false);
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let t = Instant::now();
    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["agent", "--node", "node0", "--netns", &ns, "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--metrics-listen", &metrics.to_string(), "-v"])
        .env("HOME", &dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // When the agent's log says a model is in place (its "model updated" line, after the program), with the highest
    // resourceVersion it reflects: read as the lines come, so that waiting for a change costs the agent nothing
    // (polling its metrics every millisecond would compete with it for the CPU).
    let synced: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    {
        let (synced, stderr) = (synced.clone(), agent.stderr.take().unwrap());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let Some(versions) = line.split("resource_versions=").nth(1) else { continue };
                if !line.contains("model updated") {
                    continue;
                }
                let rv = versions
                    .split([',', ' '])
                    .filter_map(|kv| kv.split_once('=')?.1.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0);
                synced.lock().unwrap().push((Instant::now(), rv));
            }
        });
    }
    // The agent's resident memory while it starts: (ms since start, MiB), to see where the peak is.
    let rss_of = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string);
        line.and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
    };
    let mut timeline: Vec<(u128, f64)> = Vec::new();
    while http_get(metrics, "/healthz").is_none() {
        assert!(t.elapsed() < Duration::from_secs(120), "the agent did not program within 120 s");
        timeline.push((t.elapsed().as_millis(), rss_of(agent.id())));
        std::thread::sleep(Duration::from_millis(2));
    }
    let first = t.elapsed();
    if std::env::var_os("NETPOL_BENCH_AGENT_RSS").is_some() {
        for (ms, mib) in timeline.iter().step_by(10) {
            println!("    agent RSS at {ms} ms: {mib:.0} MiB");
        }
        println!("    agent RSS after the first program: {:.0} MiB", rss_of(agent.id()));
    }
    let first_program = agent_metric(metrics, "netpol_agent_program_duration_seconds").unwrap_or(0.0);
    // Changes through the API, each timed from the server's answer until the agent's kernel reflects it.
    let (pns, pname) = node0_pod.unwrap();
    let mut e2e = Vec::new();
    let mut own = Vec::new();
    let mut programs = Vec::new();
    for i in 0..8 {
        let rv = match i % 4 {
            0 => api_write(
                &server.url(),
                "POST",
                &format!("/apis/networking.k8s.io/v1/namespaces/{pns}/networkpolicies"),
                &serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": format!("bench-{i}"), "namespace": pns},
                    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
                .to_string(),
            ),
            1 => api_write(
                &server.url(),
                "PATCH",
                &format!("/api/v1/namespaces/{pns}/pods/{pname}"),
                r#"{"metadata":{"labels":{"bench":"x"}}}"#,
            ),
            2 => api_write(
                &server.url(),
                "PATCH",
                &format!("/api/v1/namespaces/{pns}/pods/{pname}"),
                r#"{"metadata":{"labels":{"bench":null}}}"#,
            ),
            _ => api_write(
                &server.url(),
                "DELETE",
                &format!("/apis/networking.k8s.io/v1/namespaces/{pns}/networkpolicies/bench-{}", i - 3),
                "",
            ),
        };
        let t = Instant::now();
        let done = loop {
            let at = synced.lock().unwrap().iter().find(|&&(_, v)| v >= rv).map(|&(at, _)| at);
            if let Some(at) = at {
                break at;
            }
            // A batch the engine ignores is not logged: the metric says when it is reflected (polled seldom).
            if t.elapsed() > Duration::from_millis(500)
                && agent_metric(metrics, "netpol_agent_synced_resource_version").unwrap_or(0.0) >= rv as f64
            {
                break Instant::now();
            }
            assert!(t.elapsed() < Duration::from_secs(30), "change {i} not programmed within 30 s");
            std::thread::sleep(Duration::from_millis(1));
        };
        e2e.push(done.saturating_duration_since(t).as_secs_f64() * 1e3);
        own.push(agent_metric(metrics, "netpol_agent_event_to_kernel_seconds").unwrap_or(0.0) * 1e3);
        programs.push(agent_metric(metrics, "netpol_agent_program_duration_seconds").unwrap_or(0.0) * 1e3);
        std::thread::sleep(Duration::from_millis(200));
    }
    let revoke = agent_metric(metrics, "netpol_agent_revoke_duration_seconds").unwrap_or(0.0) * 1e3;
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.id())).unwrap_or_default();
    let kib = |key: &str| {
        let line = status.lines().find(|l| l.starts_with(key));
        line.and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()).unwrap_or(0.0)
    };
    let (hwm, rss) = (kib("VmHWM:"), kib("VmRSS:"));
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = netpol_nft::apply::ip_batch(&r, None, &format!("netns del {ns}\n"), false);
    let _ = std::fs::remove_dir_all(&dir);
    if std::env::var_os("NETPOL_BENCH_AGENT_RSS").is_some() {
        for (i, ((a, b), c)) in e2e.iter().zip(&own).zip(&programs).enumerate() {
            println!("    change {i}: API answer to kernel {a:.0} ms, event to kernel {b:.0} ms, program {c:.0} ms");
        }
    }
    let range = |v: &[f64]| {
        let (lo, hi) = v.iter().fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        format!("{lo:.0}–{hi:.0} ms")
    };
    println!(
        "{size:>5} agent (live), node0 of {nodes}: start to first program {:.0} ms (the program {:.0} ms) | API answer to kernel, 8 changes (a policy isolating node0's pods of a namespace created, a pod relabelled twice, the policy deleted; twice): {} (the agent's own event to kernel {}, program {}) | last revocation pass {revoke:.0} ms | agent peak RSS {:.0} MiB, RSS at the end {:.0} MiB",
        first.as_secs_f64() * 1e3,
        first_program * 1e3,
        range(&e2e),
        range(&own),
        range(&programs),
        hwm / 1024.0,
        rss / 1024.0,
    );
}

fn main() {
    if let Ok(size) = std::env::var("NETPOL_BENCH_AGENT_LIVE") {
        run_agent_live(&size);
        return;
    }
    if let Ok(size) = std::env::var("NETPOL_BENCH_AGENT") {
        run_agent(&size);
        return;
    }
    if let Ok(size) = std::env::var("NETPOL_BENCH_FLOWLOG") {
        run_flowlog(&size);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it as a smoke test with `NETPOL_BENCH_SIZES=1k`.
    if let Ok(size) = std::env::var("NETPOL_BENCH_ONE") {
        run_size(&size);
        return;
    }
    if let Ok(path) = std::env::var("NETPOL_BENCH_LOAD_ONE") {
        run_load(&path);
        return;
    }
    if let Ok(sizes) = std::env::var("NETPOL_BENCH_LOAD") {
        println!("netpol load benchmark: reading and validating manifests (one process per file; inputs of 256 KiB or more are read on every core)");
        for size in sizes.split(',') {
            load_formats(size);
        }
        return;
    }
    let sizes = std::env::var("NETPOL_BENCH_SIZES").unwrap_or_else(|_| "1k,10k,50k".to_string());
    println!("netpol engine benchmark (one process per size; YAML inputs of 1 MiB or more are parsed on every core, the rest is single-threaded)");
    for size in sizes.split(',') {
        // A fresh process per size, so peak RSS is that size's own.
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new(exe).env("NETPOL_BENCH_ONE", size).status().unwrap();
        assert!(status.success(), "size {size} failed");
    }
}
