//! Generation: the plan, each dialect read back by the engine, and every guarantee's check shown able to fail.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use super::*;
use crate::flowlog::{Counts, End, FlowFormat};

pub(crate) const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops}
---
apiVersion: v1
kind: Pod
metadata: {name: web-7d9f8b-aaaaa, namespace: shop, labels: {app: web, tier: front, pod-template-hash: 7d9f8b}}
status: {podIP: 10.1.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web-7d9f8b-bbbbb, namespace: shop, labels: {app: web, tier: front, pod-template-hash: 7d9f8b}}
status: {podIP: 10.1.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: web-55c4d-ddddd, namespace: shop, labels: {app: web, tier: front, pod-template-hash: 55c4d}}
status: {podIP: 10.1.0.7}
---
apiVersion: v1
kind: Pod
metadata: {name: web-canary-ccccc, namespace: shop, labels: {app: web, tier: front, track: canary}}
status: {podIP: 10.1.0.6}
---
apiVersion: v1
kind: Pod
metadata:
  name: db-0
  namespace: shop
  labels: {app: db, statefulset.kubernetes.io/pod-name: db-0, controller-revision-hash: db-5f4}
status: {podIP: 10.1.0.3}
---
apiVersion: v1
kind: Pod
metadata:
  name: db-1
  namespace: shop
  labels: {app: db, statefulset.kubernetes.io/pod-name: db-1, controller-revision-hash: db-5f4}
status: {podIP: 10.1.0.4}
---
apiVersion: v1
kind: Pod
metadata: {name: cache, namespace: shop, labels: {app: cache}}
status: {podIP: 10.1.0.5}
---
apiVersion: v1
kind: Pod
metadata: {name: prometheus-0, namespace: ops, labels: {app: prometheus}}
status: {podIP: 10.2.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns-5d78c-xyz12, namespace: kube-system, labels: {k8s-app: kube-dns, pod-template-hash: 5d78c}}
status: {podIP: 10.3.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns-5d78c-xyz34, namespace: kube-system, labels: {k8s-app: kube-dns, pod-template-hash: 5d78c}}
status: {podIP: 10.3.0.11}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system}
spec: {selector: {k8s-app: kube-dns}, ports: [{port: 53, protocol: UDP}]}
"#;

pub(crate) fn engine(text: &str) -> Engine {
    let loaded = netpol_core::load::load_str("cluster.yaml", text);
    let errors: Vec<_> =
        loaded.diagnostics.iter().filter(|d| d.severity == netpol_core::load::Severity::Error).collect();
    assert!(errors.is_empty(), "{errors:?}");
    Engine::new(loaded.cluster)
}

pub(crate) fn pod(ns: &str, name: &str) -> End {
    End { namespace: Some(ns.into()), pod: Some(name.into()), ..End::default() }
}

pub(crate) fn ip(a: &str) -> End {
    End { ip: Some(a.parse().unwrap()), ..End::default() }
}

pub(crate) fn flow(src: End, dst: End, protocol: Protocol, port: u16, counts: Counts) -> Folded {
    Folded {
        src,
        dst,
        protocol,
        port: Some(port),
        connections: 2,
        events: 4,
        counts,
        policies: vec![],
        file: "flows.json".into(),
        line: 1,
        first_time: None,
        last_time: None,
        format: FlowFormat::Netpol,
    }
}

pub(crate) fn allowed() -> Counts {
    Counts { allowed: 1, ..Counts::default() }
}

fn flows() -> Vec<Folded> {
    use Protocol::*;
    vec![
        flow(pod("shop", "web-7d9f8b-aaaaa"), pod("shop", "db-0"), Tcp, 5432, allowed()),
        flow(pod("ops", "prometheus-0"), pod("shop", "web-7d9f8b-bbbbb"), Tcp, 9090, allowed()),
        flow(pod("shop", "web-7d9f8b-aaaaa"), ip("203.0.113.9"), Tcp, 443, allowed()),
        flow(pod("shop", "web-7d9f8b-aaaaa"), ip("2001:db8::7"), Tcp, 443, Counts::default()),
        flow(pod("shop", "cache"), pod("shop", "db-1"), Tcp, 22, Counts { denied: 1, ..Counts::default() }),
    ]
}

fn opts(dialect: Dialect) -> Options {
    Options { dialect, namespace: None, allow_observed_denials: false }
}

#[test]
fn networkpolicies_allow_what_was_observed_and_pass_every_check() {
    let e = engine(CLUSTER);
    let g = generate(&e, &flows(), &opts(Dialect::NetworkPolicy)).unwrap();
    let r = &g.report;
    assert!(r.ok, "{r:#?}");
    let names: Vec<&str> = r.policies.iter().map(|p| p.name.as_str()).collect();
    // One per workload and direction: db and web (ingress), web (egress); prometheus (egress) in ops.
    assert_eq!(names, ["prometheus-egress", "db-ingress", "web-ingress", "web-egress"], "{names:?}");
    let yaml = render::stream(&g.rendered);
    assert!(yaml.contains("kubernetes.io/metadata.name: ops"), "{yaml}");
    assert!(yaml.contains("cidr: 203.0.113.9/32") && yaml.contains("cidr: 2001:db8::7/128"), "{yaml}");
    // DNS from the real DNS pods' labels and namespace.
    assert!(yaml.contains("kubernetes.io/metadata.name: kube-system") && yaml.contains("k8s-app: kube-dns"), "{yaml}");
    let dns = r.dns.as_ref().unwrap();
    assert_eq!((dns.namespace.as_str(), dns.pods), ("kube-system", 2));
    assert!(!yaml.contains("pod-template-hash") && !yaml.contains("statefulset.kubernetes.io"), "{yaml}");
    // Coverage: the 4 observed connections (2 each) that were allowed or seen.
    assert_eq!(r.verification.coverage.checked, 8);
    assert!(r.verification.collateral.ok && r.verification.churn.ok && r.verification.churn.checked > 0);
    // The logged denial (cache -> db-1:22) was allowed by the policies in force (nothing isolated db): not the
    // generated set's to keep; but the generated db ingress now denies it too.
    assert!(!g.plan.denied.is_empty());
}

#[test]
fn over_allow_by_identity_equals_the_count_pair_by_pair() {
    let e = engine(CLUSTER);
    for d in [Dialect::NetworkPolicy, Dialect::Cilium, Dialect::Calico, Dialect::ClusterNetworkPolicy] {
        let g = generate(&e, &flows(), &opts(d)).unwrap();
        let after = Engine::new(verify::apply_rendered(e.cluster(), &g.rendered).unwrap());
        let brute = verify::over_allow_per_pod(&g.plan, &after);
        assert_eq!(g.report.verification.over_allow, brute, "{d:?}");
    }
    let g = generate(&e, &flows(), &opts(Dialect::NetworkPolicy)).unwrap();
    let o = g.report.verification.over_allow;
    // web-7d9f8b-aaaaa -> db-0 observed: the other web replica(s) and db-1 are replicas of observed workloads.
    assert!(o.replicas > 0, "{o:?}");
    assert!(o.dns > 0, "{o:?}");
    assert_eq!(o.observed, 4, "{o:?}");
}

#[test]
fn every_dialect_reads_back_and_covers_the_observed_traffic() {
    let e = engine(CLUSTER);
    for d in [Dialect::NetworkPolicy, Dialect::Cilium, Dialect::Calico, Dialect::ClusterNetworkPolicy] {
        let g = generate(&e, &flows(), &opts(d)).unwrap();
        let v = &g.report.verification;
        assert!(v.coverage.ok, "{d:?}: {:#?}\n{}", v.coverage, render::stream(&g.rendered));
        assert!(v.collateral.ok, "{d:?}: {:#?}", v.collateral);
        assert!(v.churn.ok, "{d:?}: {:#?}", v.churn);
        assert!(g.report.ok, "{d:?}");
        let yaml = render::stream(&g.rendered);
        let kind = match d {
            Dialect::NetworkPolicy => "kind: NetworkPolicy\n",
            Dialect::Cilium => "kind: CiliumNetworkPolicy\n",
            Dialect::Calico => "apiVersion: projectcalico.org/v3\n",
            Dialect::ClusterNetworkPolicy => "kind: ClusterNetworkPolicy\n",
        };
        assert!(yaml.contains(kind), "{d:?}: {yaml}");
    }
}

#[test]
fn the_same_input_gives_the_same_bytes_in_any_order() {
    let e = engine(CLUSTER);
    let a = render::stream(&generate(&e, &flows(), &opts(Dialect::NetworkPolicy)).unwrap().rendered);
    let mut rev = flows();
    rev.reverse();
    let b = render::stream(&generate(&e, &rev, &opts(Dialect::NetworkPolicy)).unwrap().rendered);
    assert_eq!(a, b);
}

#[test]
fn selectors_use_the_fewest_stable_labels_that_select_the_workload() {
    let e = engine(CLUSTER);
    let (ws, of) = workloads(&e);
    let web = &ws[of[0]];
    assert_eq!(web.name, "web");
    // {app: web, tier: front} selects the canary too (it has them and `track`): so does {app: web}, the fewest;
    // `track` must be absent to leave the canary out.
    assert_eq!(web.selector, vec![("app".to_string(), "web".to_string())]);
    assert_eq!(web.absent, vec!["track".to_string()]);
    assert_eq!(web.pods.len(), 3, "both revisions of the Deployment");
    let canary = ws.iter().find(|w| w.stable.iter().any(|(k, _)| k == "track")).unwrap();
    assert_eq!(canary.selector, vec![("track".to_string(), "canary".to_string())]);
    let db = ws.iter().find(|w| w.name == "db").unwrap();
    assert_eq!(db.pods.len(), 2, "the StatefulSet's pods are one workload");
    assert_eq!(db.selector, vec![("app".to_string(), "db".to_string())]);
}

#[test]
fn a_namespace_limits_the_subjects() {
    let e = engine(CLUSTER);
    let o = Options { namespace: Some("ops".into()), ..opts(Dialect::NetworkPolicy) };
    let g = generate(&e, &flows(), &o).unwrap();
    let names: Vec<&str> = g.report.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["prometheus-egress"]);
}

#[test]
fn coverage_fails_when_a_higher_tier_denies_observed_traffic() {
    let deny = r#"
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-db}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: shop}}}
  ingress:
  - name: block
    action: Deny
    from: [{namespaces: {}}]
    protocols: [{tcp: {destinationPort: {number: 5432}}}]
"#;
    let e = engine(&format!("{CLUSTER}{deny}"));
    let g = generate(&e, &flows(), &opts(Dialect::NetworkPolicy)).unwrap();
    let c = &g.report.verification.coverage;
    assert!(!c.ok && !g.report.ok);
    assert_eq!(c.failures.len(), 1, "{c:#?}");
    assert!(c.failures[0].flow.contains("db-0") && c.failures[0].reason.contains("no-db"), "{c:#?}");
}

#[test]
fn a_denial_the_generated_set_would_open_fails_unless_allowed() {
    // db takes 5432 only from web's 7d9f8b revision; the new revision's pod was logged denied. Both revisions are
    // one workload (the same stable labels): allowing web opens it.
    let only_stable = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod-template-hash: 7d9f8b}}}]
"#;
    let e = engine(&format!("{CLUSTER}{only_stable}"));
    let mut f = flows();
    f.push(flow(
        pod("shop", "web-55c4d-ddddd"),
        pod("shop", "db-0"),
        Protocol::Tcp,
        5432,
        Counts { ingress_denied: 1, ..Counts::default() },
    ));
    let g = generate(&e, &f, &opts(Dialect::NetworkPolicy)).unwrap();
    let d = &g.report.verification.observed_denials;
    assert!(!d.ok && !g.report.ok, "{d:#?}");
    assert!(d.failures[0].flow.contains("web-55c4d-ddddd"), "{d:#?}");
    let g = generate(&e, &f, &Options { allow_observed_denials: true, ..opts(Dialect::NetworkPolicy) }).unwrap();
    assert!(g.report.ok && !g.report.verification.observed_denials.ok);
    // The existing policy selects by a per-revision label: with the pods replaced, web's traffic to db changes
    // verdict... except that the generated db-ingress allows web by stable labels, so the churn check holds.
    assert!(g.report.verification.churn.ok, "{:#?}", g.report.verification.churn);
}

#[test]
fn the_churn_check_catches_a_verdict_that_hangs_on_a_replica_label() {
    // A policy in force (not generated) on web's egress keyed to the revision: replaced pods lose it.
    let by_revision = r#"
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cache-only-from-this-revision, namespace: shop}
spec:
  podSelector: {matchLabels: {app: cache}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod-template-hash: 7d9f8b}}}]
"#;
    let e = engine(&format!("{CLUSTER}{by_revision}"));
    let f = vec![flow(pod("shop", "web-7d9f8b-aaaaa"), pod("shop", "cache"), Protocol::Tcp, 6379, allowed())];
    // Only web's egress is generated (cache is out of scope), so cache's ingress stays the revision-keyed one.
    let o = Options { namespace: Some("shop".into()), ..opts(Dialect::NetworkPolicy) };
    let mut g = plan(&e, &f, &o);
    g.policies.retain(|p| p.direction == Direction::Egress);
    let rendered = render::render(&g, Dialect::NetworkPolicy);
    let after = Engine::new(verify::apply_rendered(e.cluster(), &rendered).unwrap());
    let v = verify::verify(&e, &after, &g, &rendered, Dialect::NetworkPolicy);
    assert!(v.coverage.ok);
    assert!(!v.churn.ok, "{:#?}", v.churn);
    assert!(v.churn.failures[0].reason.contains("denied with the replaced pods"), "{:#?}", v.churn);
}

#[test]
fn the_collateral_check_catches_a_change_outside_the_subjects() {
    let e = engine(CLUSTER);
    let mut p = plan(&e, &flows(), &opts(Dialect::NetworkPolicy));
    let rendered = render::render(&p, Dialect::NetworkPolicy);
    let after = Engine::new(verify::apply_rendered(e.cluster(), &rendered).unwrap());
    // Forget that db is a subject: its new isolation is now a change between non-subjects.
    p.policies.retain(|x| !x.name.starts_with("db-"));
    let v = verify::verify(&e, &after, &p, &rendered, Dialect::NetworkPolicy);
    assert!(!v.collateral.ok);
    assert!(v.collateral.failures.iter().any(|f| f.flow.contains("shop/db-")), "{:#?}", v.collateral);
}

#[test]
fn unresolvable_flows_are_listed_not_guessed() {
    let e = engine(CLUSTER);
    let f = vec![flow(pod("shop", "gone"), pod("shop", "db-0"), Protocol::Tcp, 5432, allowed())];
    let g = generate(&e, &f, &opts(Dialect::NetworkPolicy)).unwrap();
    assert_eq!(g.report.unresolved.len(), 1);
    assert!(g.report.policies.is_empty());
}

#[test]
fn icmp_is_written_only_where_the_dialect_can() {
    let e = engine(CLUSTER);
    let f = vec![flow(
        pod("shop", "cache"),
        pod("shop", "db-0"),
        Protocol::Icmp,
        netpol_core::portset::icmp_port(8, 0),
        allowed(),
    )];
    let g = generate(&e, &f, &opts(Dialect::NetworkPolicy)).unwrap();
    assert!(g.report.policies.is_empty() && g.report.not_expressible.len() == 1);
    for d in [Dialect::Calico, Dialect::Cilium] {
        let g = generate(&e, &f, &opts(d)).unwrap();
        assert!(g.report.ok && g.report.verification.coverage.checked == 2, "{d:?} {:#?}", g.report);
        assert!(render::stream(&g.rendered).contains("type: 8"));
    }
}

#[test]
fn every_egress_policy_allows_dns_to_the_real_dns_pods() {
    let e = engine(CLUSTER);
    let g = generate(&e, &flows(), &opts(Dialect::NetworkPolicy)).unwrap();
    for (p, r) in g.plan.policies.iter().zip(&g.rendered) {
        let has_dns = p.rules.iter().any(|r| r.dns);
        assert_eq!(has_dns, p.direction == Direction::Egress, "{}", r.yaml);
        if has_dns {
            assert!(r.yaml.contains("k8s-app: kube-dns") && r.yaml.contains("port: 53"), "{}", r.yaml);
        }
    }
}

/// Random clusters (namespaces, pods of a few workloads with replicas and per-replica labels, policies in force)
/// and random flow logs: the guarantees hold, and each check agrees with a brute-force recomputation that shares
/// none of the plan's selection logic (the manifests and the generated YAML loaded together from text; what a
/// generated rule grants read from the engine's own explanation of each flow).
#[test]
fn random_clusters_and_logs_keep_every_guarantee() {
    use std::fmt::Write as _;
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let ports = [80u16, 443, 5432];
    // What the rounds exercised, summed: each kind of over-allow, and denials opened and kept.
    let (mut seen, mut opened_rounds, mut kept_rounds) = (verify::OverAllow::default(), 0, 0);
    for round in 0..120 {
        let mut yaml = String::new();
        let nss = 1 + next(3);
        let mut pods: Vec<(String, String)> = Vec::new();
        let mut ip = 1;
        for n in 0..nss {
            let _ = writeln!(
                yaml,
                "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: ns{n}, labels: {{team: t{}}}}}",
                next(2)
            );
            for w in 0..(1 + next(3)) {
                // The third workload shares the first one's `app`: told apart by `tier` only, if at all.
                let app = ["a", "b", "a"][w as usize];
                let tier = if next(2) == 0 { ", tier: x".to_string() } else { String::new() };
                for r in 0..(1 + next(3)) {
                    let hash = ["h1", "h2"][next(2) as usize];
                    let name = format!("{app}{w}-{hash}-r{r}");
                    let _ = writeln!(
                        yaml,
                        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: ns{n}, labels: {{app: {app}{tier}, pod-template-hash: {hash}}}}}\nstatus: {{podIP: 10.9.0.{ip}}}"
                    );
                    ip += 1;
                    pods.push((format!("ns{n}"), name));
                }
            }
            if n == 0 && next(2) == 0 {
                let _ = writeln!(
                    yaml,
                    "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: coredns-1, namespace: kube-system, labels: {{k8s-app: kube-dns}}}}\nstatus: {{podIP: 10.9.1.1}}"
                );
            }
            // A policy in force, sometimes: isolates app=a for ingress, allowing app=b on 80.
            if next(2) == 0 {
                let _ = writeln!(
                    yaml,
                    "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{n}, namespace: ns{n}}}\nspec:\n  podSelector: {{matchLabels: {{app: a}}}}\n  ingress:\n  - from: [{{podSelector: {{matchLabels: {{app: b}}}}}}]\n    ports: [{{port: 80}}]"
                );
            }
        }
        let e = engine(&yaml);
        let mut flows = Vec::new();
        for _ in 0..(1 + next(8)) {
            let (sns, s) = pods[next(pods.len() as u64) as usize].clone();
            let dst = if next(6) == 0 {
                ip_end(next(2))
            } else {
                let (dns, d) = pods[next(pods.len() as u64) as usize].clone();
                pod(&dns, &d)
            };
            let counts = match next(4) {
                0 => Counts { denied: 1, ..Counts::default() },
                1 => Counts::default(),
                _ => allowed(),
            };
            flows.push(flow(pod(&sns, &s), dst, Protocol::Tcp, ports[next(3) as usize], counts));
        }
        let g = generate(&e, &flows, &opts(Dialect::NetworkPolicy)).unwrap();
        let v = &g.report.verification;
        let ctx = || format!("round {round}\n{yaml}\n---\n{}", render::stream(&g.rendered));
        // 1, 3, 5 hold for NetworkPolicy on these clusters.
        assert!(v.coverage.ok, "{:#?}\n{}", v.coverage, ctx());
        assert!(v.collateral.ok, "{:#?}\n{}", v.collateral, ctx());
        assert!(v.churn.ok, "{:#?}\n{}", v.churn, ctx());
        // The brute force: manifests and generated policies loaded together, from text.
        let together = engine(&format!("{yaml}\n---\n{}", render::stream(&g.rendered)));
        let generated: BTreeSet<String> =
            g.rendered.iter().map(|r| format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name)).collect();
        let c = e.cluster();
        let all: Vec<Endpoint> = (0..c.pods.len())
            .map(|i| Endpoint::Pod { pod: PodId::new(i), ip: None })
            .chain(["203.0.113.1", "2001:db8::1"].iter().map(|a| Endpoint::External(a.parse().unwrap())))
            .collect();
        let observed: BTreeSet<(String, String, u16)> =
            g.plan.needed.iter().map(|n| (ename(&e, &n.src), ename(&e, &n.dst), n.port)).collect();
        let group = |x: &Endpoint| match x {
            Endpoint::Pod { pod, .. } => format!("w{}", g.plan.workload_of[pod.index()]),
            Endpoint::External(ip) => ip.to_string(),
        };
        let observed_groups: BTreeSet<(String, String, u16)> =
            g.plan.needed.iter().map(|n| (group(&n.src), group(&n.dst), n.port)).collect();
        let subjects = |d: Direction| -> BTreeSet<String> {
            all.iter()
                .filter(|x| matches!(x, Endpoint::Pod { .. }))
                .filter(|x| {
                    let ex = together.explain(x, x, Protocol::Tcp, 1);
                    let side = if d == Direction::Ingress { &ex.ingress } else { &ex.egress };
                    side.policies.iter().any(|p| generated.contains(p))
                })
                .map(|x| ename(&e, x))
                .collect()
        };
        let (ingress_subjects, egress_subjects) = (subjects(Direction::Ingress), subjects(Direction::Egress));
        let mut brute = verify::OverAllow::default();
        for s in &all {
            for d in &all {
                if s == d || (matches!(s, Endpoint::External(_)) && matches!(d, Endpoint::External(_))) {
                    continue;
                }
                for &port in ports.iter().chain([53u16].iter()) {
                    for proto in [Protocol::Tcp, Protocol::Udp] {
                        if proto == Protocol::Udp && port != 53 {
                            continue;
                        }
                        let before = e.allowed(s, d, proto, port);
                        let after = together.allowed(s, d, proto, port);
                        let (sn, dn) = (ename(&e, s), ename(&e, d));
                        // 3. Collateral, pair by pair.
                        if before != after {
                            assert!(
                                egress_subjects.contains(&sn) || ingress_subjects.contains(&dn),
                                "{sn} -> {dn} {port} changed\n{}",
                                ctx()
                            );
                        }
                        if !after {
                            continue;
                        }
                        let ex = together.explain(s, d, proto, port);
                        let rules: Vec<&netpol_core::verdict::RuleMatch> = ex
                            .egress
                            .allowed_by
                            .iter()
                            .chain(&ex.ingress.allowed_by)
                            .filter(|m| generated.contains(&m.policy))
                            .collect();
                        if rules.is_empty() {
                            continue;
                        }
                        let dns_only = rules.iter().all(|m| {
                            g.plan.policies.iter().zip(&g.rendered).any(|(p, r)| {
                                format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name) == m.policy
                                    && p.rules.get(m.rule).is_some_and(|x| x.dns)
                            })
                        });
                        if observed.contains(&(sn.clone(), dn.clone(), port)) && proto == Protocol::Tcp {
                            brute.observed += 1;
                        } else if dns_only {
                            brute.dns += 1;
                        } else if proto == Protocol::Tcp && observed_groups.contains(&(group(s), group(d), port)) {
                            brute.replicas += 1;
                        } else {
                            brute.new += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(v.over_allow, brute, "{}", ctx());
        seen.replicas += brute.replicas;
        seen.new += brute.new;
        seen.dns += brute.dns;
        seen.observed += brute.observed;
        // 2. Observed denials, recomputed.
        let opened = g.plan.denied.iter().any(|n| {
            !e.allowed(&n.src, &n.dst, n.protocol, n.port) && together.allowed(&n.src, &n.dst, n.protocol, n.port)
        });
        assert_eq!(v.observed_denials.ok, !opened, "{:#?}\n{}", v.observed_denials, ctx());
        if v.observed_denials.checked > 0 {
            if opened {
                opened_rounds += 1;
            } else {
                kept_rounds += 1;
            }
        }
        // 7. Deterministic.
        let again = generate(&e, &flows, &opts(Dialect::NetworkPolicy)).unwrap();
        assert_eq!(render::stream(&again.rendered), render::stream(&g.rendered));
    }
    // Selectors are exact (the fewest labels, and absent keys for workloads with more): no genuinely new reach.
    assert!(seen.replicas > 0 && seen.new == 0 && seen.dns > 0 && seen.observed > 0, "{seen:?}");
    assert!(opened_rounds > 0 && kept_rounds > 0, "{opened_rounds} {kept_rounds}");
}

fn ip_end(k: u64) -> End {
    ip(["203.0.113.1", "2001:db8::1"][k as usize])
}

fn ename(e: &Engine, x: &Endpoint) -> String {
    match x {
        Endpoint::Pod { pod, .. } => e.cluster().pod_ref(*pod),
        Endpoint::External(ip) => ip.to_string(),
    }
}

#[test]
fn a_workload_whose_labels_another_carries_too_is_told_apart_by_an_absent_key() {
    let e = engine(CLUSTER);
    let f = vec![flow(pod("shop", "web-7d9f8b-aaaaa"), pod("shop", "db-0"), Protocol::Tcp, 5432, allowed())];
    assert_eq!(e.cluster().pod(PodId::new(3)).name, "web-canary-ccccc");
    let canary = Endpoint::Pod { pod: PodId::new(3), ip: None };
    let db = Endpoint::Pod { pod: PodId::new(4), ip: None };
    assert_eq!(e.cluster().pod(PodId::new(4)).name, "db-0");
    for (d, needle) in [
        (Dialect::NetworkPolicy, "operator: DoesNotExist"),
        (Dialect::Cilium, "operator: DoesNotExist"),
        (Dialect::Calico, "!has(track)"),
        (Dialect::ClusterNetworkPolicy, "operator: DoesNotExist"),
    ] {
        let g = generate(&e, &f, &opts(d)).unwrap();
        let yaml = render::stream(&g.rendered);
        assert!(yaml.contains(needle), "{d:?}: {yaml}");
        let after = Engine::new(verify::apply_rendered(e.cluster(), &g.rendered).unwrap());
        // The canary is no peer of db's ingress, nor a subject of web's egress.
        assert!(!after.allowed(&canary, &db, Protocol::Tcp, 5432), "{d:?}: {yaml}");
        assert_eq!(g.report.verification.over_allow.new, 0, "{d:?}");
    }
}
