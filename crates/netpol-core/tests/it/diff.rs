//! `diff`: the connectivity delta between two policy sets, on constructed before/after pairs, and a property
//! test against `Engine::allowed` on random clusters and random changes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use netpol_core::compile::{Endpoint, Engine, IdentityId};
use netpol_core::diff::{complement, diff, diff_with_limits, difference, Change, DeltaGroup, Diff, DiffOptions};
use netpol_core::load::load_str;
use netpol_core::model::*;
use netpol_core::outside::{allowed_groups, allowed_port_runs, allowed_ports, Segments};
use netpol_core::portset::{PortSet, Protocol};
use proptest::prelude::*;

fn engine(yaml: &str) -> Engine {
    let loaded = load_str("test.yaml", yaml);
    assert!(loaded.diagnostics.is_empty(), "unexpected diagnostics: {:#?}", loaded.diagnostics);
    Engine::new(loaded.cluster)
}

fn run(old: &str, new: &str) -> Diff {
    run_ns(old, new, None)
}

fn run_ns(old: &str, new: &str, ns: Option<&str>) -> Diff {
    let (o, n) = (engine(old), engine(new));
    let opts = DiffOptions { namespace: ns.map(str::to_string) };
    let d = diff(&o, &n, &opts);
    // One old destination class per pass, the matrices streamed or stored: the same answer.
    for stored in [0, usize::MAX] {
        let s = diff_with_limits(&o, &n, &opts, stored, 1);
        assert_eq!(serde_json::to_value(&d).unwrap(), serde_json::to_value(&s).unwrap());
    }
    d
}

fn tcp(ports: &[u16]) -> PortSet {
    let mut s = PortSet::empty();
    for &p in ports {
        s.union_with(&PortSet::single(Protocol::Tcp, p));
    }
    s
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn only(d: &Diff, change: Change) -> Vec<&DeltaGroup> {
    d.groups.iter().filter(|g| g.change == change).collect()
}

const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: b}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.0.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {containers: [{name: c, ports: [{name: sql, containerPort: 5432}]}]}
status: {podIP: 10.0.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: b, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.2.1}
"#;

const DENY_A: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: a}
spec: {podSelector: {}, policyTypes: [Ingress]}
"#;

fn allow_web_to_db(port: &str) -> String {
    format!(
        r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allow-web, namespace: a}}
spec:
  podSelector: {{matchLabels: {{app: db}}}}
  ingress:
  - from: [{{podSelector: {{matchLabels: {{app: web}}}}}}]
    ports: [{{port: {port}}}]
"#
    )
}

#[test]
fn no_change_is_an_empty_diff() {
    let c = format!("{BASE}{DENY_A}");
    let d = run(&c, &c);
    assert!(d.is_empty(), "{d:#?}");
    assert_eq!(d.unchanged_pairs, 6);
    assert_eq!(d.changed_pairs, 0);
    assert_eq!(d.compared_pairs(), 6);
}

#[test]
fn adding_an_allow_rule_is_newly_allowed_and_names_the_rule() {
    let old = format!("{BASE}{DENY_A}");
    let new = format!("{BASE}{DENY_A}{}", allow_web_to_db("5432"));
    let d = run(&old, &new);
    assert_eq!(d.groups.len(), 1, "{d:#?}");
    let g = &d.groups[0];
    assert_eq!(g.change, Change::NewlyAllowed);
    assert_eq!(g.sources, strs(&["a/web"]));
    assert_eq!(g.destinations, strs(&["a/db"]));
    assert_eq!(g.ports, tcp(&[5432]));
    assert_eq!(g.pairs, 1);
    assert_eq!(g.cause, "ingress to a/db now allowed by a/allow-web rule 0 peer 0 port 5432/TCP");
    assert_eq!(g.cause_detail["old"]["verdict"], "deny");
    assert_eq!(g.cause_detail["new"]["verdict"], "allow");
    assert_eq!(g.cause_detail["new"]["port"], 5432);
    assert_eq!((d.changed_pairs, d.unchanged_pairs), (1, 5));
}

#[test]
fn deleting_an_isolating_policy_allows_everything_to_its_pods() {
    let old = format!("{BASE}{DENY_A}");
    let d = run(&old, BASE);
    assert_eq!(d.groups.len(), 1, "{d:#?}");
    let g = &d.groups[0];
    assert_eq!(g.change, Change::NewlyAllowed);
    assert_eq!(g.sources, strs(&["a/db", "a/web", "b/client"]));
    assert_eq!(g.destinations, strs(&["a/db", "a/web"]));
    assert!(g.ports.is_all());
    // 3 sources × 2 destinations, minus the two pods to themselves.
    assert_eq!(g.pairs, 4);
    assert!(g.cause.ends_with("is not isolated anymore (a/default-deny was removed)"), "{}", g.cause);
    assert!(g.cause.starts_with("ingress to a/"), "{}", g.cause);
}

#[test]
fn a_policy_that_no_longer_selects_a_pod_says_so() {
    let old = format!("{BASE}{DENY_A}");
    let new = format!("{BASE}{}", DENY_A.replace("podSelector: {}", "podSelector: {matchLabels: {app: db}}"));
    let d = run(&old, &new);
    assert_eq!(d.groups.len(), 1, "{d:#?}");
    let g = &d.groups[0];
    assert_eq!(g.destinations, strs(&["a/web"]));
    assert_eq!(g.cause, "ingress to a/web is not isolated anymore (a/default-deny no longer applies to it)");
}

#[test]
fn adding_default_deny_is_newly_denied_because_of_the_isolation() {
    let new = format!("{BASE}{DENY_A}");
    let d = run(BASE, &new);
    assert_eq!(d.groups.len(), 1, "{d:#?}");
    let g = &d.groups[0];
    assert_eq!(g.change, Change::NewlyDenied);
    assert_eq!(g.sources, strs(&["a/db", "a/web", "b/client"]));
    assert_eq!(g.destinations, strs(&["a/db", "a/web"]));
    assert!(g.ports.is_all());
    assert_eq!(g.pairs, 4);
    assert_eq!(g.cause, "ingress to a/web is now isolated by a/default-deny, and no rule allows 8080/TCP");
    assert_eq!(g.cause_detail["old"]["verdict"], "allow");
    assert_eq!(g.cause_detail["new"]["verdict"], "deny");
}

#[test]
fn removing_the_allowing_policy_names_it() {
    let old = format!("{BASE}{DENY_A}{}", allow_web_to_db("5432"));
    let new = format!("{BASE}{DENY_A}");
    let d = run(&old, &new);
    assert_eq!(d.groups.len(), 1, "{d:#?}");
    let g = &d.groups[0];
    assert_eq!(g.change, Change::NewlyDenied);
    assert_eq!(
        g.cause,
        "ingress to a/db no longer allowed by a/allow-web rule 0 peer 0 port 5432/TCP: the policy was removed"
    );
}

#[test]
fn a_pod_label_change_moves_the_pod_between_classes() {
    let worker = r#"
---
apiVersion: v1
kind: Pod
metadata: {name: worker, namespace: a, labels: {app: worker}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.1.3}
"#;
    let policies = format!("{DENY_A}{}", allow_web_to_db("5432"));
    let old = format!("{BASE}{worker}{policies}");
    let new = format!("{BASE}{}{policies}", worker.replace("app: worker", "app: web"));
    let d = run(&old, &new);
    assert_eq!(d.groups.len(), 1, "{d:#?}");
    let g = &d.groups[0];
    assert_eq!(g.change, Change::NewlyAllowed);
    assert_eq!(g.sources, strs(&["a/worker"]));
    assert_eq!(g.destinations, strs(&["a/db"]));
    assert_eq!(g.ports, tcp(&[5432]));
    assert_eq!(g.cause, "ingress to a/db now allowed by a/allow-web rule 0 peer 0 port 5432/TCP");
    // The old explanation says why the rule did not match then.
    let old_text = g.cause_detail["old"].to_string();
    assert!(old_text.contains("requires pod labels app=web"), "{old_text}");
}

#[test]
fn a_port_change_opens_one_port_and_closes_another() {
    let old = format!("{BASE}{DENY_A}{}", allow_web_to_db("8080"));
    let new = format!("{BASE}{DENY_A}{}", allow_web_to_db("8081"));
    let d = run(&old, &new);
    assert_eq!(d.groups.len(), 2, "{d:#?}");
    let (a, l) = (&only(&d, Change::NewlyAllowed)[0], &only(&d, Change::NewlyDenied)[0]);
    assert_eq!((a.sources.clone(), a.destinations.clone()), (strs(&["a/web"]), strs(&["a/db"])));
    assert_eq!(a.ports, tcp(&[8081]));
    assert_eq!(l.ports, tcp(&[8080]));
    assert_eq!((a.pairs, l.pairs), (1, 1));
    // One pair changed (both ways), five did not.
    assert_eq!((d.changed_pairs, d.unchanged_pairs), (1, 5));
    assert_eq!(a.cause, "ingress to a/db now allowed by a/allow-web rule 0 peer 0 port 8081/TCP");
    assert_eq!(
        l.cause,
        "ingress to a/db no longer allowed by a/allow-web rule 0 peer 0 port 8080/TCP: it no longer matches: 8080/TCP \
         is not among the rule's ports (8081/TCP)"
    );
}

#[test]
fn a_named_port_change_in_a_pod_moves_the_allowed_port() {
    let old = format!("{BASE}{DENY_A}{}", allow_web_to_db("sql"));
    let new_base = BASE.replace("{name: sql, containerPort: 5432}", "{name: sql, containerPort: 5433}");
    let new = format!("{new_base}{DENY_A}{}", allow_web_to_db("sql"));
    let d = run(&old, &new);
    assert_eq!(d.groups.len(), 2, "{d:#?}");
    let (a, l) = (&only(&d, Change::NewlyAllowed)[0], &only(&d, Change::NewlyDenied)[0]);
    assert_eq!(a.ports, tcp(&[5433]));
    assert_eq!(l.ports, tcp(&[5432]));
    assert_eq!(a.destinations, strs(&["a/db"]));
    assert!(a.cause.contains("a/allow-web rule 0 peer 0 port sql/TCP (named port = 5433)"), "{}", a.cause);
    assert!(l.cause.contains("sql/TCP = 5433"), "{}", l.cause);
}

#[test]
fn namespace_filter_compares_pairs_inside_the_namespace_only() {
    let deny_b = DENY_A.replace("namespace: a", "namespace: b");
    let client2 = r#"
---
apiVersion: v1
kind: Pod
metadata: {name: client2, namespace: b, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.2.2}
"#;
    let old = format!("{BASE}{client2}");
    let new = format!("{BASE}{client2}{DENY_A}{deny_b}");
    let all = run(&old, &new);
    // Every pod is isolated for ingress now: every ordered pair is newly denied.
    assert_eq!(all.changed_pairs, 12);
    let a = run_ns(&old, &new, Some("a"));
    assert_eq!(a.groups.len(), 1, "{a:#?}");
    assert_eq!(a.groups[0].sources, strs(&["a/db", "a/web"]));
    assert_eq!(a.groups[0].destinations, strs(&["a/db", "a/web"]));
    assert_eq!(a.groups[0].pairs, 2);
    assert_eq!((a.changed_pairs, a.unchanged_pairs), (2, 0));
    let b = run_ns(&old, &new, Some("b"));
    assert_eq!(b.groups[0].sources, strs(&["b/client", "b/client2"]));
    assert_eq!(b.changed_pairs, 2);
    // A namespace on neither side: nothing to compare.
    assert!(run_ns(&old, &new, Some("zzz")).is_empty());
}

#[test]
fn pods_added_and_removed_are_listed_not_compared() {
    let extra = r#"
---
apiVersion: v1
kind: Pod
metadata: {name: new-one, namespace: b}
spec: {containers: [{name: c}]}
"#;
    let old = format!("{BASE}{DENY_A}");
    let new = format!("{}{extra}{DENY_A}", BASE.replace("name: client,", "name: client-2,"));
    let d = run(&old, &new);
    assert_eq!(d.pods_added, strs(&["b/client-2", "b/new-one"]));
    assert_eq!(d.pods_removed, strs(&["b/client"]));
    assert!(d.groups.is_empty(), "{d:#?}");
    assert_eq!(d.unchanged_pairs, 2);
}

#[test]
fn destinations_with_the_same_change_are_grouped_per_source() {
    // Three destinations in a with different container ports (three classes); one policy opens TCP 80 to all.
    let mut pods = String::new();
    for (i, port) in [7000, 7001, 7002].iter().enumerate() {
        pods.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: d{i}, namespace: a, labels: {{role: dst}}}}\n\
             spec: {{containers: [{{name: c, ports: [{{containerPort: {port}}}]}}]}}\n"
        ));
    }
    for i in 0..4 {
        pods.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: s{i}, namespace: b, labels: {{n: s{i}}}}}\n\
             spec: {{containers: [{{name: c}}]}}\n"
        ));
    }
    let deny = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: a}\n\
                spec: {podSelector: {}, policyTypes: [Ingress]}\n";
    let allow = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: open80, namespace: a}\n\
                 spec: {podSelector: {matchLabels: {role: dst}}, ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 80}]}]}\n";
    let old = format!("{pods}{deny}");
    let new = format!("{pods}{deny}{allow}");
    let d = run(&old, &new);
    assert_eq!(d.groups.len(), 1, "{d:#?}");
    let g = &d.groups[0];
    assert_eq!(g.sources, strs(&["a/d0", "a/d1", "a/d2", "b/s0", "b/s1", "b/s2", "b/s3"]));
    assert_eq!(g.destinations, strs(&["a/d0", "a/d1", "a/d2"]));
    assert_eq!(g.pairs, 7 * 3 - 3);
}

#[test]
fn port_set_difference_and_complement() {
    let a = tcp(&[80, 81, 82]).union(&PortSet::single(Protocol::Udp, 53));
    let b = tcp(&[81]);
    assert_eq!(difference(&a, &b).to_string(), "TCP 80,82; UDP 53");
    assert_eq!(difference(&b, &a), PortSet::empty());
    assert_eq!(complement(&PortSet::all()), PortSet::empty());
    assert!(complement(&PortSet::empty()).is_all());
    assert_eq!(complement(&PortSet::protocol(Protocol::Tcp)).to_string(), "UDP all; SCTP all; ICMP all; ICMPv6 all");
    let c = complement(&tcp(&[1, 65535]));
    assert_eq!(c.to_string(), "TCP 2-65534; UDP all; SCTP all; ICMP all; ICMPv6 all");
    assert!(difference(&PortSet::all(), &a).union(&a).is_all());
}

// ---------------------------------------------------------------------------------------------------------
// Property test: random clusters (generator ideas from properties.rs) and random changes to them.

use crate::common::{
    admin_policy, admin_rule, labels, pod_ports, policy_with_rules, rule, Rng, NS_KEYS, POD_KEYS, PROTOS,
};

fn ip(r: &mut Rng, i: usize) -> Option<IpAddr> {
    match r.below(6) {
        0 => None,
        1 => Some(format!("fd00::{}", i + 1).parse().unwrap()),
        _ => Some(format!("10.0.0.{}", (i % 15) * 16 + 1 + r.below(15)).parse().unwrap()),
    }
}

fn pod(r: &mut Rng, i: usize, n_ns: usize) -> Pod {
    let ports = pod_ports(r);
    Pod {
        ns: NsId::new(r.below(n_ns)),
        name: format!("p{i}"),
        labels: labels(r, POD_KEYS),
        ports: ports.into(),
        ips: ip(r, i).into_iter().collect(),
        host_network: r.chance(8),
        node: None,
        service_account: "default".into(),
        source: PodSource { kind: "Pod", origin: Origin::default() },
    }
}

fn policy(r: &mut Rng, name: String, n_ns: usize) -> Policy {
    let ingress: Vec<Rule> = (0..r.below(3)).map(|_| rule(r)).collect();
    let egress: Vec<Rule> = (0..r.below(3)).map(|_| rule(r)).collect();
    let ns = NsId::new(r.below(n_ns));
    policy_with_rules(r, ns, name, ingress, egress)
}

fn cluster(seed: u64) -> Cluster {
    let mut r = Rng(seed);
    let mut c = Cluster::default();
    for i in 0..1 + r.below(3) {
        let mut l = labels(&mut r, NS_KEYS);
        l.insert("kubernetes.io/metadata.name", format!("ns{i}"));
        c.namespaces.push(Namespace { name: format!("ns{i}"), labels: l, origin: None });
    }
    let n_ns = c.namespaces.len();
    for i in 0..2 + r.below(8) {
        let p = pod(&mut r, i, n_ns);
        c.pods.push(p);
    }
    for i in 0..1 + r.below(7) {
        let p = policy(&mut r, format!("pol{i}"), n_ns);
        c.policies.push(p);
    }
    // Policies of the admin tiers too, now and then.
    for i in 0..r.below(3) {
        let p = admin_policy(&mut r, format!("adm{i}"));
        if !c.policies.iter().any(|q| q.kind == p.kind && q.name == p.name) {
            c.policies.push(p);
        }
    }
    c
}

/// A changed copy: relabelled pods, changed container ports, removed/added pods and policies, replaced rules,
/// namespace label changes.
fn mutate(c: &Cluster, seed: u64) -> Cluster {
    let mut r = Rng(seed ^ 0x5555_aaaa_1234_5678);
    let mut c = c.clone();
    let n_ns = c.namespaces.len();
    for _ in 0..2 + r.below(4) {
        match r.below(8) {
            0 if !c.pods.is_empty() => {
                let i = r.below(c.pods.len());
                c.pods[i].labels = labels(&mut r, POD_KEYS);
            }
            1 if !c.pods.is_empty() => {
                let i = r.below(c.pods.len());
                c.pods[i].ports = pod_ports(&mut r).into();
            }
            2 if !c.pods.is_empty() => {
                let i = r.below(c.pods.len());
                c.pods.remove(i);
            }
            3 => {
                let i = 100 + r.below(100);
                if !c.pods.iter().any(|p| p.name == format!("p{i}")) {
                    let p = pod(&mut r, i, n_ns);
                    c.pods.push(p);
                }
            }
            4 if !c.policies.is_empty() => {
                let i = r.below(c.policies.len());
                c.policies.remove(i);
            }
            5 => {
                let name = format!("new{}", r.below(1000));
                let p = if r.chance(30) { admin_policy(&mut r, name) } else { policy(&mut r, name, n_ns) };
                if !c.policies.iter().any(|q| q.kind == p.kind && q.name == p.name && q.ns() == p.ns()) {
                    c.policies.push(p);
                }
            }
            6 if !c.policies.is_empty() => {
                let i = r.below(c.policies.len());
                let (ingress, admin) = (r.chance(50), c.policies[i].kind != PolicyKind::NetworkPolicy);
                let baseline = c.policies[i].kind == PolicyKind::BaselineAdminNetworkPolicy;
                let rl = if admin { admin_rule(&mut r, !ingress, baseline) } else { rule(&mut r) };
                let p = &mut c.policies[i];
                let rules = if ingress { &mut p.ingress } else { &mut p.egress };
                if rules.is_empty() {
                    rules.push(rl);
                    // An admin policy affects a direction once it has rules in it.
                    if admin {
                        p.affects_ingress = !p.ingress.is_empty();
                        p.affects_egress = !p.egress.is_empty();
                    }
                } else {
                    let k = r.below(rules.len());
                    rules[k] = rl;
                }
            }
            _ => {
                let i = r.below(n_ns);
                let mut l = labels(&mut r, NS_KEYS);
                l.insert("kubernetes.io/metadata.name", format!("ns{i}"));
                c.namespaces[i].labels = l;
            }
        }
    }
    c
}

const CHECK_PORTS: [u16; 12] = [1, 53, 70, 80, 81, 90, 95, 100, 124, 125, 200, 65535];

/// Checks `d` against `Engine::allowed` (sampled ports) and the matrices (whole port space) on every pair.
fn check(old: &Engine, new: &Engine, d: &Diff, ns: Option<&str>) -> Result<(), TestCaseError> {
    let in_scope = |e: &Engine, p: PodId| ns.is_none_or(|n| e.cluster().ns_name(e.cluster().pod(p).ns) == n);
    let mut common: Vec<(String, PodId, PodId)> = Vec::new();
    for op in (0..old.cluster().pods.len()).map(PodId::new) {
        let name = old.cluster().pod_ref(op);
        if !in_scope(old, op) {
            continue;
        }
        if let Some(np) = (0..new.cluster().pods.len()).map(PodId::new).find(|&np| new.cluster().pod_ref(np) == name) {
            common.push((name, op, np));
        }
    }
    // Reported changes per (src, dst, change); a pair is in at most one group per change.
    let mut reported: BTreeMap<(String, String, Change), PortSet> = BTreeMap::new();
    for g in &d.groups {
        prop_assert!(!g.ports.is_empty());
        prop_assert!(!g.cause.is_empty());
        let (was, now) = match g.change {
            Change::NewlyAllowed => ("deny", "allow"),
            Change::NewlyDenied => ("allow", "deny"),
        };
        prop_assert_eq!(&g.cause_detail["old"]["verdict"], was, "{:#?}", g);
        prop_assert_eq!(&g.cause_detail["new"]["verdict"], now, "{:#?}", g);
        let mut pairs = 0;
        for s in &g.sources {
            for t in &g.destinations {
                if s != t {
                    pairs += 1;
                    let prev = reported.insert((s.clone(), t.clone(), g.change), g.ports.clone());
                    prop_assert!(prev.is_none(), "pair {} -> {} in two {:?} groups", s, t, g.change);
                }
            }
        }
        prop_assert_eq!(pairs, g.pairs);
    }
    let om = old.matrix(None).unwrap();
    let nm = new.matrix(None).unwrap();
    let mut changed = 0u64;
    for (sn, so, sn_new) in &common {
        for (tn, to, tn_new) in &common {
            if sn == tn {
                continue;
            }
            let gained = reported.get(&(sn.clone(), tn.clone(), Change::NewlyAllowed)).cloned().unwrap_or_default();
            let lost = reported.get(&(sn.clone(), tn.clone(), Change::NewlyDenied)).cloned().unwrap_or_default();
            let (s_old, t_old) = (Endpoint::Pod { pod: *so, ip: None }, Endpoint::Pod { pod: *to, ip: None });
            let (s_new, t_new) = (Endpoint::Pod { pod: *sn_new, ip: None }, Endpoint::Pod { pod: *tn_new, ip: None });
            for proto in PROTOS {
                for port in CHECK_PORTS {
                    let a = old.allowed(&s_old, &t_old, proto, port);
                    let b = new.allowed(&s_new, &t_new, proto, port);
                    prop_assert_eq!(
                        gained.contains(proto, port),
                        !a && b,
                        "{} -> {} {}/{} gained",
                        sn,
                        tn,
                        port,
                        proto
                    );
                    prop_assert_eq!(lost.contains(proto, port), a && !b, "{} -> {} {}/{} lost", sn, tn, port, proto);
                }
            }
            let o = om.port_sets.get(om.pod_cell(old, *so, *to).unwrap());
            let n = nm.port_sets.get(nm.pod_cell(new, *sn_new, *tn_new).unwrap());
            prop_assert_eq!(&gained, &difference(n, o));
            prop_assert_eq!(&lost, &difference(o, n));
            if o != n {
                changed += 1;
            }
        }
    }
    check_outside(old, new, d, &common)?;
    let n = common.len() as u64;
    prop_assert_eq!(d.changed_pairs, changed);
    prop_assert_eq!(d.unchanged_pairs, n * n.saturating_sub(1) - changed);
    let names = |e: &Engine, p: &dyn Fn(PodId) -> bool| -> BTreeSet<String> {
        (0..e.cluster().pods.len())
            .map(PodId::new)
            .filter(|&i| in_scope(e, i) && p(i))
            .map(|i| e.cluster().pod_ref(i))
            .collect()
    };
    let common_names: BTreeSet<String> = common.iter().map(|c| c.0.clone()).collect();
    let added = names(new, &|i| !common_names.contains(&new.cluster().pod_ref(i)));
    let removed = names(old, &|i| !common_names.contains(&old.cluster().pod_ref(i)));
    prop_assert_eq!(d.pods_added.iter().cloned().collect::<BTreeSet<_>>(), added);
    prop_assert_eq!(d.pods_removed.iter().cloned().collect::<BTreeSet<_>>(), removed);
    Ok(())
}

/// `CIDR` or `FIRST-LAST` (as `OutsideGroup::addresses` writes them) contains `ip`.
fn range_contains(text: &str, ip: IpAddr) -> bool {
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return net.contains(&ip);
    }
    let (a, b) = text.split_once('-').expect("FIRST-LAST");
    let (a, b): (IpAddr, IpAddr) = (a.parse().unwrap(), b.parse().unwrap());
    a.is_ipv4() == ip.is_ipv4() && a <= ip && ip <= b
}

/// Addresses around every block boundary of both engines and a few others, minus pods' IPs.
fn outside_probes(old: &Engine, new: &Engine) -> Vec<IpAddr> {
    let step = |ip: IpAddr, up: bool| -> Option<IpAddr> {
        match ip {
            IpAddr::V4(a) => {
                let n = u32::from(a);
                (if up { n.checked_add(1) } else { n.checked_sub(1) }).map(|n| IpAddr::V4(n.into()))
            }
            IpAddr::V6(a) => {
                let n = u128::from(a);
                (if up { n.checked_add(1) } else { n.checked_sub(1) }).map(|n| IpAddr::V6(n.into()))
            }
        }
    };
    let mut v: BTreeSet<IpAddr> = ["203.0.113.10", "192.0.2.1", "10.0.0.200", "fd00::99", "2001:db8::10"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    for e in [old, new] {
        for b in e.blocks() {
            for net in std::iter::once(&b.cidr).chain(&b.except) {
                for ip in [net.network(), net.broadcast()] {
                    v.insert(ip);
                    v.extend(step(ip, true));
                    v.extend(step(ip, false));
                }
            }
        }
    }
    v.into_iter().filter(|ip| old.pod_with_ip(*ip).is_none() && new.pod_with_ip(*ip).is_none()).collect()
}

/// `d.outside` against `Engine::allowed` for every compared pod, probe address, direction and sampled port.
fn check_outside(old: &Engine, new: &Engine, d: &Diff, common: &[(String, PodId, PodId)]) -> Result<(), TestCaseError> {
    for g in &d.outside {
        prop_assert!(!g.ports.is_empty() && !g.pods.is_empty() && !g.addresses.is_empty(), "{:#?}", g);
        prop_assert!(!g.cause.is_empty(), "{:#?}", g);
        let (was, now) = match g.change {
            Change::NewlyAllowed => ("deny", "allow"),
            Change::NewlyDenied => ("allow", "deny"),
        };
        prop_assert_eq!(&g.cause_detail["old"]["verdict"], was, "{:#?}", g);
        prop_assert_eq!(&g.cause_detail["new"]["verdict"], now, "{:#?}", g);
    }
    for ip in outside_probes(old, new) {
        let x = Endpoint::External(ip);
        for (name, op, np) in common {
            let (o, n) = (Endpoint::Pod { pod: *op, ip: None }, Endpoint::Pod { pod: *np, ip: None });
            for dir in [Direction::Egress, Direction::Ingress] {
                let reported = |change: Change, proto: Protocol, port: u16| {
                    d.outside.iter().any(|g| {
                        g.change == change
                            && g.direction == dir
                            && g.pods.contains(name)
                            && g.ports.contains(proto, port)
                            && g.addresses.iter().any(|a| range_contains(a, ip))
                    })
                };
                for proto in PROTOS {
                    for port in CHECK_PORTS {
                        let (a, b) = match dir {
                            Direction::Egress => (old.allowed(&o, &x, proto, port), new.allowed(&n, &x, proto, port)),
                            Direction::Ingress => (old.allowed(&x, &o, proto, port), new.allowed(&x, &n, proto, port)),
                        };
                        let what = format!("{name} {dir:?} {ip} {port}/{proto}: old {a}, new {b}");
                        prop_assert_eq!(
                            reported(Change::NewlyAllowed, proto, port),
                            !a && b,
                            "{} {:#?}",
                            what,
                            d.outside
                        );
                        prop_assert_eq!(
                            reported(Change::NewlyDenied, proto, port),
                            a && !b,
                            "{} {:#?}",
                            what,
                            d.outside
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// `outside::allowed_ports` of every identity equals `Engine::allowed` for each segment's outside address.
    #[test]
    fn outside_ports_equal_the_engine(seed in any::<u64>()) {
        outside_ports_match(&Engine::new(cluster(seed)))?;
    }

    /// The same on Antrea-like clusters (a pass held across Antrea's tiers, Reject).
    #[test]
    fn antrea_outside_ports_equal_the_engine(seed in any::<u64>()) {
        outside_ports_match(&Engine::new(crate::common::antrea_like_cluster(seed)))?;
    }
}

/// `outside::allowed_ports` of every identity of `e` equals `Engine::allowed` for each segment's outside address.
fn outside_ports_match(e: &Engine) -> Result<(), TestCaseError> {
    let segs = Segments::new(&[e]);
    for (ident, id) in e.identities().iter().enumerate() {
        let Some(&pod) = id.pods.first() else { continue };
        let me = Endpoint::Pod { pod, ip: None };
        for dir in [Direction::Egress, Direction::Ingress] {
            let ports = allowed_ports(e, IdentityId::new(ident), dir, &segs);
            // The runs are maximal, start at segment 0 and increase.
            let runs = allowed_port_runs(e, IdentityId::new(ident), dir, &segs);
            prop_assert_eq!(runs.first().map(|r| r.0), Some(0));
            prop_assert!(runs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 != w[1].1 && w[1].0 < segs.len()));
            // Grouped by ports without the segments that have no outside address (what `describe` shows):
            // the same as grouping the dense view.
            let skip: Vec<usize> = (0..segs.len()).filter(|&i| segs.outside_address(i, &[e]).is_none()).collect();
            let mut dense: BTreeMap<PortSet, Vec<usize>> = BTreeMap::new();
            for (i, p) in ports.iter().enumerate() {
                if !p.is_empty() && skip.binary_search(&i).is_err() {
                    dense.entry(p.clone()).or_default().push(i);
                }
            }
            let dense: Vec<(PortSet, Vec<String>)> = dense.into_iter().map(|(p, v)| (p, segs.text(&v))).collect();
            prop_assert_eq!(allowed_groups(e, IdentityId::new(ident), dir, &segs, &skip), dense);
            for (i, p) in ports.iter().enumerate() {
                let Some(ip) = segs.outside_address(i, &[e]) else { continue };
                prop_assert!(e.pod_with_ip(ip).is_none());
                let x = Endpoint::External(ip);
                for proto in PROTOS {
                    for port in CHECK_PORTS {
                        let want = match dir {
                            Direction::Egress => e.allowed(&me, &x, proto, port),
                            Direction::Ingress => e.allowed(&x, &me, proto, port),
                        };
                        prop_assert_eq!(p.contains(proto, port), want, "{:?} {} {}/{}", dir, ip, port, proto);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The property test is not vacuous: most random changes change some connectivity.
#[test]
fn random_changes_usually_change_connectivity() {
    let mut changed = 0;
    let mut outside = 0;
    for seed in 0..200u64 {
        let a = cluster(seed);
        let b = mutate(&a, seed);
        let d = diff(&Engine::new(a), &Engine::new(b), &DiffOptions::default());
        if !d.groups.is_empty() {
            changed += 1;
        }
        if !d.outside.is_empty() {
            outside += 1;
        }
    }
    eprintln!("{changed} of 200 random changes changed connectivity, {outside} with outside addresses");
    assert!(changed >= 70, "only {changed} of 200 random changes changed connectivity");
    assert!(outside >= 50, "only {outside} of 200 random changes changed traffic with outside addresses");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn diff_reports_exactly_the_ports_whose_verdict_changed(seed in any::<u64>()) {
        let a = cluster(seed);
        let b = mutate(&a, seed);
        let (old, new) = (Engine::new(a), Engine::new(b));
        for ns in [None, Some("ns0")] {
            let opts = DiffOptions { namespace: ns.map(str::to_string) };
            let d = diff(&old, &new, &opts);
            check(&old, &new, &d, ns)?;
            // Several passes (one old destination class each), matrices streamed or stored: the same result.
            for stored in [0, usize::MAX] {
                let s = diff_with_limits(&old, &new, &opts, stored, 1);
                prop_assert_eq!(serde_json::to_value(&d).unwrap(), serde_json::to_value(&s).unwrap());
            }
        }
        // Swapping old and new swaps the changes.
        let fwd = diff(&old, &new, &DiffOptions::default());
        let back = diff(&new, &old, &DiffOptions::default());
        prop_assert_eq!(fwd.pairs(Change::NewlyAllowed), back.pairs(Change::NewlyDenied));
        prop_assert_eq!(fwd.changed_pairs, back.changed_pairs);
    }
}

#[test]
fn outside_groups_name_pods_addresses_ports_and_cause() {
    let pods = "
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: job, namespace: shop, labels: {app: job}}
spec: {containers: [{name: c}]}
status: {podIP: 10.1.0.2}
";
    let old_pols = "
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{ipBlock: {cidr: 192.168.0.0/16}}], ports: [{port: http}]}]
";
    let new_pols = "
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{ipBlock: {cidr: 192.168.0.0/17}}], ports: [{port: http}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: job-out, namespace: shop}
spec:
  podSelector: {matchLabels: {app: job}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 172.16.0.0/12}}], ports: [{port: 443}]}]
";
    let old = engine(&format!("{pods}{old_pols}"));
    let new = engine(&format!("{pods}{new_pols}"));
    let d = diff(&old, &new, &DiffOptions::default());
    assert!(d.groups.is_empty(), "no pod pair changes: {:#?}", d.groups);
    type Row = (Change, Direction, Vec<String>, Vec<String>, String);
    let summary: Vec<Row> = d
        .outside
        .iter()
        .map(|g| (g.change, g.direction, g.pods.clone(), g.addresses.clone(), g.ports.to_string()))
        .collect();
    assert_eq!(
        summary,
        vec![
            // job lost everything outside but 172.16.0.0/12 on 443 (its egress is now isolated).
            (
                Change::NewlyDenied,
                Direction::Egress,
                vec!["shop/job".to_string()],
                vec![
                    "0.0.0.0-172.15.255.255".to_string(),
                    "172.32.0.0-255.255.255.255".to_string(),
                    "::/0".to_string()
                ],
                "all".to_string()
            ),
            (
                Change::NewlyDenied,
                Direction::Egress,
                vec!["shop/job".to_string()],
                vec!["172.16.0.0/12".to_string()],
                "TCP 1-442,444-65535; UDP all; SCTP all; ICMP all; ICMPv6 all".to_string()
            ),
            // web's ingress from 192.168.128.0/17 on its named port http (8080) is gone.
            (
                Change::NewlyDenied,
                Direction::Ingress,
                vec!["shop/web".to_string()],
                vec!["192.168.128.0/17".to_string()],
                "TCP 8080".to_string()
            ),
        ]
    );
    let web = &d.outside[2];
    assert_eq!(web.cause_detail["old"]["src"], "192.168.128.1");
    assert!(web.cause.contains("shop/web-in"), "{}", web.cause);
    assert_eq!(diff(&new, &old, &DiffOptions::default()).outside.len(), 3, "the reverse diff allows the same");
}
