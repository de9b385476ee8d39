//! The NetworkPolicy mix of a namespace.

use std::fmt::{self, Write};

use crate::plan::{env_of, team_of, Tenant, Tier};
use crate::rng::{Rng, S_POLICIES};
use crate::yaml::{write_policy, Expr, Peer, Policy, Port, PortV, Rule, Sel};

/// Policies every namespace may start with (subject to the namespace's flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    DenyIngress,
    DenyEgress,
    Dns,
    FrontendToBackend,
    BackendToDb,
    Monitoring,
    CrossTeam,
    OrPeers,
    Expressions,
    Internet,
    Office,
    NodePorts,
    StatsdUdp,
    Sctp,
    LegacyNoTypes,
    LegacyIngressOnly,
    Ipv6,
    SameNamespace,
    AllEgressWorkers,
    MetricsAnyNamespace,
    Canary,
    DbNoEgress,
}

/// Policies after the first ones, in rotation (each namespace starts at a different place).
const ROTATION: [Kind; 19] = [
    Kind::FrontendToBackend,
    Kind::BackendToDb,
    Kind::Monitoring,
    Kind::CrossTeam,
    Kind::OrPeers,
    Kind::Expressions,
    Kind::Internet,
    Kind::Office,
    Kind::NodePorts,
    Kind::StatsdUdp,
    Kind::Sctp,
    Kind::LegacyNoTypes,
    Kind::LegacyIngressOnly,
    Kind::Ipv6,
    Kind::SameNamespace,
    Kind::AllEgressWorkers,
    Kind::MetricsAnyNamespace,
    Kind::Canary,
    Kind::DbNoEgress,
];

/// Every base policy name (for tests).
#[cfg(test)]
pub(crate) const BASE_NAMES: [&str; 22] = [
    "default-deny-ingress",
    "default-deny-egress",
    "allow-dns-egress",
    "allow-frontend-to-backend",
    "allow-backend-to-db",
    "allow-prometheus-scrape",
    "allow-partner-frontends",
    "allow-team-or-web",
    "allow-prod-like-namespaces",
    "allow-internet-https",
    "allow-office-ingress",
    "allow-nodeport-range",
    "allow-statsd-egress",
    "allow-sctp-signaling",
    "legacy-api-access",
    "legacy-ingress-only",
    "allow-ipv6-egress",
    "allow-same-namespace",
    "allow-all-egress-workers",
    "allow-metrics-any-namespace",
    "canary-isolation",
    "deny-db-egress",
];

const INGRESS: &[&str] = &["Ingress"];
const EGRESS: &[&str] = &["Egress"];
const BOTH: &[&str] = &["Ingress", "Egress"];
const NS_NAME: &str = "kubernetes.io/metadata.name";

/// Writes exactly `t.policies` policies for namespace `t`; `namespaces` is the number of tenant namespaces
/// (for cross-namespace peers).
pub(crate) fn write_policies(o: &mut String, seed: u64, t: &Tenant, namespaces: usize) -> fmt::Result {
    let mut r = Rng::new(seed, S_POLICIES, t.index as u64);
    let mut kinds: Vec<Kind> = Vec::with_capacity(3 + ROTATION.len());
    if t.deny_ingress {
        kinds.push(Kind::DenyIngress);
    }
    if t.deny_egress {
        kinds.push(Kind::DenyEgress);
    }
    if t.dns {
        kinds.push(Kind::Dns);
    }
    let start = r.below(ROTATION.len());
    kinds.extend(ROTATION.iter().cycle().skip(start).take(ROTATION.len()));
    for &k in kinds.iter().take(t.policies) {
        write_kind(o, &mut r, t, namespaces, k)?;
    }
    let mut name = String::new();
    for n in 1..=t.policies.saturating_sub(kinds.len()) {
        write_extra(o, &mut r, t, namespaces, n, &mut name)?;
    }
    Ok(())
}

/// Team and env labels of a random tenant namespace.
fn other_ns(r: &mut Rng, t: &Tenant, namespaces: usize) -> (String, &'static str) {
    if namespaces == 0 {
        return (t.team.clone(), t.env);
    }
    let k = r.below(namespaces);
    (team_of(k), env_of(k))
}

fn write_kind(o: &mut String, r: &mut Rng, t: &Tenant, namespaces: usize, k: Kind) -> fmt::Result {
    let ns = t.name.as_str();
    let tier = |x: Tier| [("tier", x.as_str())];
    let fe = tier(Tier::Frontend);
    let be = tier(Tier::Backend);
    let db = tier(Tier::Db);
    let wk = tier(Tier::Worker);
    let p = |name, pod_sel, types, ingress, egress| Policy { ns, name, pod_sel, types, ingress, egress };
    match k {
        Kind::DenyIngress => write_policy(o, &p("default-deny-ingress", Sel::All, Some(INGRESS), None, None)),
        Kind::DenyEgress => write_policy(o, &p("default-deny-egress", Sel::All, Some(EGRESS), None, None)),
        Kind::Dns => {
            let ports_num = [Port::num("UDP", 53), Port::num("TCP", 53)];
            let ports_named = [Port::named("UDP", "dns"), Port::named("TCP", "dns-tcp")];
            let ports: &[Port<'_>] = if r.chance(30) { &ports_named } else { &ports_num };
            let peers =
                [Peer::NsPods(Sel::Labels(&[(NS_NAME, "kube-system")]), Sel::Labels(&[("k8s-app", "kube-dns")]))];
            let rules = [Rule { peers: Some(&peers), ports: Some(ports) }];
            write_policy(o, &p("allow-dns-egress", Sel::All, Some(EGRESS), None, Some(&rules)))
        }
        Kind::FrontendToBackend => {
            let port = if r.chance(50) { Port::named("TCP", "http") } else { Port::num("TCP", 8080) };
            let peers = [Peer::Pods(Sel::Labels(&fe))];
            let rules = [Rule { peers: Some(&peers), ports: Some(&[port]) }];
            write_policy(o, &p("allow-frontend-to-backend", Sel::Labels(&be), Some(INGRESS), Some(&rules), None))
        }
        Kind::BackendToDb => {
            let peers = [Peer::Pods(Sel::Labels(&be))];
            let rules = [Rule { peers: Some(&peers), ports: Some(&[Port::num("TCP", 5432)]) }];
            write_policy(o, &p("allow-backend-to-db", Sel::Labels(&db), Some(INGRESS), Some(&rules), None))
        }
        Kind::Monitoring => {
            let peers = [Peer::NsPods(Sel::Labels(&[(NS_NAME, "monitoring")]), Sel::Labels(&[("app", "prometheus")]))];
            // Protocol omitted: defaults to TCP.
            let ports = [Port { proto: None, port: Some(PortV::Name("metrics")), end: None }];
            let rules = [Rule { peers: Some(&peers), ports: Some(&ports) }];
            write_policy(o, &p("allow-prometheus-scrape", Sel::All, Some(INGRESS), Some(&rules), None))
        }
        Kind::CrossTeam => {
            let (team, env) = other_ns(r, t, namespaces);
            let nsl = [("team", team.as_str()), ("env", env)];
            let peers = [Peer::NsPods(Sel::Labels(&nsl), Sel::Labels(&fe))];
            let rules = [Rule { peers: Some(&peers), ports: Some(&[Port::named("TCP", "grpc")]) }];
            let sel = [("app", t.app_of(Tier::Backend))];
            write_policy(o, &p("allow-partner-frontends", Sel::Labels(&sel), Some(INGRESS), Some(&rules), None))
        }
        Kind::OrPeers => {
            let web = [("app", t.app_of(Tier::Frontend))];
            let team = [("team", t.team.as_str())];
            let peers = [Peer::Ns(Sel::Labels(&team)), Peer::Pods(Sel::Labels(&web))];
            let rules = [Rule { peers: Some(&peers), ports: Some(&[Port::num("TCP", 8080)]) }];
            write_policy(o, &p("allow-team-or-web", Sel::Labels(&be), Some(INGRESS), Some(&rules), None))
        }
        Kind::Expressions => {
            let sel = [
                Expr { key: "tier", op: "In", values: &["backend", "worker"] },
                Expr { key: "version", op: "NotIn", values: &["v1"] },
            ];
            let nss = [
                Expr { key: "env", op: "In", values: &["prod", "staging"] },
                Expr { key: "tier-policy", op: "DoesNotExist", values: &[] },
            ];
            let pods = [Expr { key: "app", op: "Exists", values: &[] }];
            let peers = [Peer::NsPods(Sel::Exprs(&nss), Sel::Exprs(&pods))];
            let rules = [Rule { peers: Some(&peers), ports: Some(&[Port::named("TCP", "http")]) }];
            write_policy(o, &p("allow-prod-like-namespaces", Sel::Exprs(&sel), Some(INGRESS), Some(&rules), None))
        }
        Kind::Internet => {
            let peers = [Peer::Ip { cidr: "0.0.0.0/0", except: &["10.0.0.0/8", "169.254.0.0/16"] }];
            let rules = [Rule { peers: Some(&peers), ports: Some(&[Port::num("TCP", 443)]) }];
            write_policy(o, &p("allow-internet-https", Sel::Labels(&fe), Some(EGRESS), None, Some(&rules)))
        }
        Kind::Office => {
            let peers = [Peer::Ip { cidr: "192.168.0.0/16", except: &["192.168.1.0/24"] }];
            let ports = [Port::num("TCP", 8080), Port::num("TCP", 443)];
            let rules = [Rule { peers: Some(&peers), ports: Some(&ports) }];
            write_policy(o, &p("allow-office-ingress", Sel::Labels(&fe), Some(INGRESS), Some(&rules), None))
        }
        Kind::NodePorts => {
            let peers = [Peer::Ip { cidr: "10.0.0.0/8", except: &[] }];
            let tcp = [Port::range("TCP", 30000, 32767)];
            let udp = [Port::range("UDP", 30000, 32767)];
            // The second rule has no `from`: any source.
            let rules = [Rule { peers: Some(&peers), ports: Some(&tcp) }, Rule { peers: None, ports: Some(&udp) }];
            let sel = [("app", t.app_of(Tier::Frontend))];
            write_policy(o, &p("allow-nodeport-range", Sel::Labels(&sel), Some(INGRESS), Some(&rules), None))
        }
        Kind::StatsdUdp => {
            let peers = [Peer::Ns(Sel::Labels(&[(NS_NAME, "monitoring")]))];
            let rules = [Rule { peers: Some(&peers), ports: Some(&[Port::num("UDP", 8125)]) }];
            write_policy(o, &p("allow-statsd-egress", Sel::Labels(&wk), Some(EGRESS), None, Some(&rules)))
        }
        Kind::Sctp => {
            let team = [("team", t.team.as_str())];
            let peers = [Peer::Ns(Sel::Labels(&team))];
            let ports = [Port::named("SCTP", "diameter"), Port::range("SCTP", 38412, 38422)];
            let rules = [Rule { peers: Some(&peers), ports: Some(&ports) }];
            let sel = [("app", t.app_of(Tier::Backend))];
            write_policy(o, &p("allow-sctp-signaling", Sel::Labels(&sel), Some(INGRESS), Some(&rules), None))
        }
        Kind::LegacyNoTypes => {
            // No policyTypes: Ingress, plus Egress because there are egress rules.
            let from = [Peer::Pods(Sel::All)];
            let to = [Peer::Pods(Sel::Labels(&db))];
            let ing = [Rule { peers: Some(&from), ports: Some(&[Port::num("TCP", 8080)]) }];
            let eg = [Rule { peers: Some(&to), ports: Some(&[Port::num("TCP", 5432)]) }];
            let sel = [("app", t.app_of(Tier::Backend))];
            write_policy(o, &p("legacy-api-access", Sel::Labels(&sel), None, Some(&ing), Some(&eg)))
        }
        Kind::LegacyIngressOnly => {
            let from = [Peer::Pods(Sel::Labels(&be))];
            let ing = [Rule { peers: Some(&from), ports: None }];
            let sel = [("app", t.app_of(Tier::Worker))];
            write_policy(o, &p("legacy-ingress-only", Sel::Labels(&sel), None, Some(&ing), None))
        }
        Kind::Ipv6 => {
            let peers = [
                Peer::Ip { cidr: "::/0", except: &["fd00::/8"] },
                Peer::Ip { cidr: "fd00::/64", except: &["fd00::/96"] },
            ];
            let rules = [Rule { peers: Some(&peers), ports: Some(&[Port::num("TCP", 443)]) }];
            write_policy(o, &p("allow-ipv6-egress", Sel::Labels(&be), Some(EGRESS), None, Some(&rules)))
        }
        Kind::SameNamespace => {
            let peers = [Peer::Pods(Sel::All)];
            let rules = [Rule { peers: Some(&peers), ports: None }];
            write_policy(o, &p("allow-same-namespace", Sel::All, Some(INGRESS), Some(&rules), None))
        }
        Kind::AllEgressWorkers => {
            // `egress: [{}]`: everything.
            let rules = [Rule { peers: None, ports: None }];
            write_policy(o, &p("allow-all-egress-workers", Sel::Labels(&wk), Some(EGRESS), None, Some(&rules)))
        }
        Kind::MetricsAnyNamespace => {
            let peers = [Peer::Ns(Sel::All)];
            let rules = [Rule { peers: Some(&peers), ports: Some(&[Port::range("TCP", 9100, 9110)]) }];
            write_policy(o, &p("allow-metrics-any-namespace", Sel::All, Some(INGRESS), Some(&rules), None))
        }
        Kind::Canary => {
            let sel = [
                Expr { key: "version", op: "Exists", values: &[] },
                Expr { key: "tier", op: "NotIn", values: &["db"] },
            ];
            let from = [Expr { key: "tier", op: "In", values: &["frontend", "backend"] }];
            let peers = [Peer::Pods(Sel::Exprs(&from))];
            let ports = [Port::named("TCP", "grpc"), Port::named("TCP", "http")];
            let ing = [Rule { peers: Some(&peers), ports: Some(&ports) }];
            // `egress: []` with Egress in policyTypes: no egress at all.
            write_policy(o, &p("canary-isolation", Sel::Exprs(&sel), Some(BOTH), Some(&ing), Some(&[])))
        }
        Kind::DbNoEgress => write_policy(o, &p("deny-db-egress", Sel::Labels(&db), Some(EGRESS), None, None)),
    }
}

/// A per-app policy `allow-<app>-<n>` with randomised peers and ports.
fn write_extra(o: &mut String, r: &mut Rng, t: &Tenant, namespaces: usize, n: usize, name: &mut String) -> fmt::Result {
    let (app, port, versioned) = match t.apps.get(n % t.apps.len().max(1)) {
        Some(a) => (a.name, a.main_port_name(), a.versions > 0),
        None => ("web", "http", false),
    };
    let src = t.apps.get(r.below(t.apps.len())).map_or("api", |a| a.name);
    name.clear();
    write!(name, "allow-{app}-{n}")?;
    let version = if r.chance(50) { "v1" } else { "v2" };
    let sel_v = [("app", app), ("version", version)];
    let sel_a = [("app", app)];
    let pod_sel = if versioned && r.chance(40) { Sel::Labels(&sel_v) } else { Sel::Labels(&sel_a) };
    let types = match r.below(10) {
        0..=5 => Some(INGRESS),
        6..=7 => Some(BOTH),
        _ => None,
    };

    let (team, env) = other_ns(r, t, namespaces);
    let src_l = [("app", src)];
    let nsl = [("team", team.as_str()), ("env", env)];
    let envl = [("env", env)];
    let a = r.below(256);
    let b = r.below(256);
    let cidr = format!("10.{a}.{b}.0/24");
    let exprs = [Expr { key: "tier", op: "In", values: &["frontend", "backend"] }];
    let mk = |v: usize| match v {
        0 => Peer::Pods(Sel::Labels(&src_l)),
        1 => Peer::NsPods(Sel::Labels(&nsl), Sel::Labels(&src_l)),
        2 => Peer::Ns(Sel::Labels(&envl)),
        3 => Peer::Ip { cidr: cidr.as_str(), except: &[] },
        _ => Peer::Pods(Sel::Exprs(&exprs)),
    };
    // Same-namespace app peers are the most common; a second peer (OR) is always of another variant.
    let first = [0, 0, 1, 2, 3, 4].get(r.below(6)).copied().unwrap_or(0);
    let mut peers = vec![mk(first)];
    if r.chance(30) {
        peers.push(mk((first + 1 + r.below(4)) % 5));
    }
    let ports = match r.below(6) {
        0..=2 => vec![Port::named("TCP", port)],
        3 => vec![Port::num("TCP", 8080), Port::num("TCP", 9090)],
        4 => vec![Port::named("UDP", "statsd"), Port::named("TCP", "metrics")],
        _ => vec![Port::range("TCP", 8000, 8100)],
    };
    let ing = [Rule { peers: Some(&peers), ports: Some(&ports) }];
    let db = [("tier", "db")];
    let to = [Peer::Pods(Sel::Labels(&db))];
    let eg = [Rule { peers: Some(&to), ports: Some(&[Port::num("TCP", 5432)]) }];
    let egress = match types {
        Some(ts) if ts.len() == 2 => Some(&eg[..]),
        None if r.chance(50) => Some(&eg[..]),
        _ => None,
    };
    let pol = Policy { ns: &t.name, name, pod_sel, types, ingress: Some(&ing), egress };
    write_policy(o, &pol)
}
