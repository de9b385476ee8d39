//! A Cilium (`cilium.io/v2`) variant of the synthetic cluster: what a platform running Cilium layers over the
//! tenants of [`crate::generate_yaml`].
//!
//! [`generate_cilium_yaml`] writes the cluster of [`crate::generate_yaml`] (same namespaces, pods, labels, IPs and
//! NetworkPolicies) with two additions to the pods: the service accounts of the Calico variant
//! (`spec.serviceAccountName` for about 60% of the workloads and the system pods) and a `spec.nodeName`. Then, in
//! this order:
//!
//! * the Nodes: `max(2, pods/250)` of them, node exporter `k` on node `k` with the node's InternalIP as its address,
//!   the other pods spread at random;
//! * the `default` Namespace, the Service `default/kubernetes` and its EndpointSlice naming 3 API server addresses
//!   (172.20.{0,1,2}.10:6443, outside the pod network), what Cilium derives the `kube-apiserver` entity from;
//! * the v1 ServiceAccounts of the pods that name one;
//! * exactly `ccnps` CiliumClusterwideNetworkPolicies, 9 kinds in rotation (each for one team or env of the
//!   tenants): clusterwide DNS with a DNS rule (`enableDefaultDeny` off), instance-metadata `egressDeny` (`toCIDR`,
//!   IPv6 `toCIDRSet`), team isolation (`ingressDeny` on namespace labels), Prometheus scraping, databases closed to
//!   `world` (deny both ways, `toCIDRSet` with `except`), kube-system's access to `kube-apiserver`, `world`,
//!   `cluster`, `host` and `remote-node`, SMTP `egressDeny` by port only, an L7 API gateway (HTTP rules), and
//!   quarantine (`all` denied both ways);
//! * exactly `cnps` CiliumNetworkPolicies, over about 75% of the tenant namespaces (weights 1 to 4), 17 kinds in
//!   rotation from a per-namespace start: public frontends (`world`, HTTP), API from frontends (by label and by
//!   `io.cilium.k8s.policy.serviceaccount`, HTTP), database access (`any:` prefix, Prometheus by
//!   `k8s:io.kubernetes.pod.namespace`), DNS and `toFQDNs` egress (`matchName`, `matchPattern`), internet egress
//!   (`toCIDRSet` with `except`, IPv4 and IPv6, and `toCIDR`), office ingress (`fromCIDRSet` with `except`, `fromCIDR`,
//!   an `endPort` range), cross-team ingress (`io.cilium.k8s.namespace.labels.team`, a namespace `In` expression),
//!   Prometheus scraping (HTTP; a quarter with `enableDefaultDeny.ingress: false`), node health and API server egress
//!   (`host`, `remote-node`, `kube-apiserver`, default deny off both ways), statsd (UDP) and SCTP signalling (named
//!   port and range), node ports (`world` and `cluster`, TCP and UDP ranges), database guards (`ingressDeny` on a
//!   `NotIn` namespace label, `egressDeny` to `world`), canaries (`In`, `NotIn`, `DoesNotExist`, `egressDeny` to
//!   endpoints), same-namespace (`[{}]` peers, DNS on 53/ANY), worker egress (`ANY` and omitted protocols, `world` on
//!   587), L7 egress to another team's API (HTTP), and public health checks (`all`, HTTP).
//!
//! HTTP rules (`toPorts[].rules.http[]`, each with a `path` regular expression, most with a `method`, some with
//! `headers`) number exactly `http_rules` in all when there is at least one policy: they go to the policies of
//! the kinds marked HTTP above (1 to 6 each, in random order, then evenly); those left without any keep the rule's
//! port as an L4-only rule. A port rule with L7 rules has one port, numbered or named, protocol TCP; DNS rules are
//! only on egress, on port 53 (`ANY`) with `matchPattern: "*"`, in the rule that allows the DNS servers.
//!
//! Counts: `namespaces + 3` Namespaces (`default` added), exactly `pods` Pods and `policies` NetworkPolicies,
//! `max(2, pods/250)` Nodes, one Service and one EndpointSlice, 3 ServiceAccounts plus one per workload that runs
//! as its own, exactly `cnps` CNPs and `ccnps` CCNPs. On the `10k` preset with 2,000 CNPs, 50 CCNPs and 200 HTTP
//! rules: 40 Nodes, 2,201 ServiceAccounts, CNPs in 745 namespaces, 65 port rules carrying the 200 HTTP rules, 117
//! DNS rules (111 CNPs with `toFQDNs`), about 11 MB written in about 20 ms (release build).
//!
//! Every object is valid against Cilium's CRD schema and its rule sanitizer (cilium/cilium at 2efb257c8533,
//! `pkg/policy/api`): port numbers are strings, `endPort` an integer above the port, protocols `TCP`, `UDP`,
//! `SCTP` or `ANY`, one kind of peer per rule, `toFQDNs` only on egress, CIDRs canonical with every `except` inside
//! its CIDR, label keys and values valid (with `k8s:` and `any:` sources), and every policy has rules.
//!
//! netpol-core's loader reads all of it with no error but what it does not model yet: the CNPs of the DNS/`toFQDNs`
//! and node-health kinds and the `kube-dns` CCNPs (236 of the 2,050 policies above) are reported and not loaded.
//!
//! Like everything in this crate, the output is a pure function of its arguments.

use std::fmt::{self, Write};

use crate::accounts::{has_service_account, write_service_accounts, SA_PROMETHEUS};
use crate::nodes;
use crate::plan::{apportion, env_of, team_of, Plan, Tenant, Tier};
use crate::rng::{Rng, S_CILIUM};
use crate::yaml::{write_sel, write_sel_item, Expr, Sel};
use crate::{write_cluster, ClusterOpts, Params};

/// The cluster of [`crate::generate_yaml`] for `p`, with service accounts, nodes and the API server, plus `cnps`
/// CiliumNetworkPolicies and `ccnps` CiliumClusterwideNetworkPolicies holding `http_rules` HTTP rules in all (see
/// the module documentation). The benchmark's `10k+cilium`: the `10k` preset, 2,000 CNPs, 50 CCNPs, 200 HTTP rules.
pub fn generate_cilium_yaml(p: &Params, cnps: usize, ccnps: usize, http_rules: usize) -> String {
    let plan = Plan::new(p);
    let nodes = nodes::count(&plan);
    let mut o = String::with_capacity(
        p.pods * 780
            + p.policies * 640
            + p.namespaces * 420
            + (cnps + ccnps) * 1000
            + http_rules * 100
            + nodes * 330
            + 4096,
    );
    let opts = ClusterOpts { service_accounts: true, nodes };
    // Writing into a String cannot fail.
    let _ = write_cluster(&mut o, p, &plan, opts)
        .and_then(|()| write_cilium(&mut o, p.seed, &plan, nodes, [cnps, ccnps, http_rules]));
    o
}

fn write_cilium(o: &mut String, seed: u64, plan: &Plan, nodes: usize, counts: [usize; 3]) -> fmt::Result {
    let [cnps, ccnps, http_rules] = counts;
    nodes::write_nodes(o, plan, nodes)?;
    nodes::write_api_server(o)?;
    write_service_accounts(o, seed, plan)?;
    // Namespaced objects need a namespace: without tenants, they go to `monitoring`.
    let fallback;
    let tenants: &[Tenant] = if plan.tenants.is_empty() {
        fallback = [Tenant::monitoring(0)];
        &fallback
    } else {
        &plan.tenants
    };

    // What is written, in order: the CCNPs' kinds, then each CNP's (tenant, kind, ordinal in its namespace).
    let mut ccnp_kinds: Vec<usize> = (0..ccnps).map(|i| i % CCNP_KINDS).collect();
    let weights = crate::plan::tenant_weights(tenants, seed, S_CILIUM);
    let mut cnp_plan: Vec<(usize, usize, usize)> = Vec::with_capacity(cnps);
    for (ti, (t, n)) in tenants.iter().zip(apportion(cnps, &weights)).enumerate() {
        let start = Rng::new(seed, S_CILIUM, (t.index * 4 + 1) as u64).below(CNP_KINDS);
        cnp_plan.extend((0..n).map(|k| (ti, (start + k) % CNP_KINDS, k)));
    }
    // HTTP rules need a policy of a kind that has them: make the first policy one if none is.
    let slots = ccnp_kinds.iter().filter(|&&k| k == CCNP_HTTP).count()
        + cnp_plan.iter().filter(|c| CNP_HTTP.contains(&c.1)).count();
    if slots == 0 && http_rules > 0 {
        if let Some(c) = ccnp_kinds.first_mut() {
            *c = CCNP_HTTP;
        } else if let Some(c) = cnp_plan.first_mut() {
            c.1 = CNP_HTTP[0];
        }
    }
    let slots = ccnp_kinds.iter().filter(|&&k| k == CCNP_HTTP).count()
        + cnp_plan.iter().filter(|c| CNP_HTTP.contains(&c.1)).count();
    let mut http = spread_http(seed, slots, http_rules).into_iter();

    let teams = tenants.len().div_ceil(3).max(1);
    let mut name = String::with_capacity(64);
    for (i, &kind) in ccnp_kinds.iter().enumerate() {
        let n = if kind == CCNP_HTTP { http.next().unwrap_or(0) } else { 0 };
        let mut r = Rng::new(seed, S_CILIUM, (1u64 << 40) | i as u64);
        write_ccnp(o, &mut name, &mut r, i, kind, teams, n)?;
    }
    let namespaces = plan.tenants.len();
    for &(ti, kind, k) in &cnp_plan {
        let Some(t) = tenants.get(ti) else { continue };
        let n = if CNP_HTTP.contains(&kind) { http.next().unwrap_or(0) } else { 0 };
        let mut r = Rng::new(seed, S_CILIUM, ((t.index as u64) << 24) | (k as u64 + 2));
        write_cnp_kind(o, &mut name, &mut r, Ctx { seed, t, namespaces }, kind, k, n)?;
    }
    Ok(())
}

/// Splits `total` HTTP rules over `slots` policies: in random order, each takes 1 to 6 while they last; what is
/// left after every slot had its share is spread evenly.
fn spread_http(seed: u64, slots: usize, total: usize) -> Vec<usize> {
    let mut out = vec![0; slots];
    if slots == 0 {
        return out;
    }
    let mut r = Rng::new(seed, S_CILIUM, u64::MAX);
    let mut order: Vec<usize> = (0..slots).collect();
    for i in (1..slots).rev() {
        order.swap(i, r.below(i + 1));
    }
    let mut left = total;
    for &s in &order {
        let w = (1 + r.below(6)).min(left);
        out[s] = w;
        left -= w;
    }
    let (base, extra) = (left / slots, left % slots);
    for (j, &s) in order.iter().enumerate() {
        out[s] += base + usize::from(j < extra);
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// The model of a policy, and its writer.

/// One `toPorts[].ports[]` entry: `port` a number or a name.
struct Pp<'a> {
    port: &'a str,
    end: Option<u16>,
    /// `None`: omitted (any protocol with ports).
    proto: Option<&'a str>,
}

const fn pp<'a>(proto: &'a str, port: &'a str) -> Pp<'a> {
    Pp { port, end: None, proto: Some(proto) }
}

const fn range<'a>(proto: &'a str, port: &'a str, end: u16) -> Pp<'a> {
    Pp { port, end: Some(end), proto: Some(proto) }
}

enum Fqdn<'a> {
    Name(&'a str),
    Pattern(&'a str),
}

/// One HTTP rule.
struct Http {
    method: Option<&'static str>,
    path: String,
    headers: Vec<String>,
}

/// The L7 rules of a port rule.
enum L7<'a> {
    None,
    /// No rules at all (an L4-only port rule) when empty.
    Http(&'a [Http]),
    Dns(&'a [Fqdn<'a>]),
}

struct PortRule<'a> {
    ports: &'a [Pp<'a>],
    l7: L7<'a>,
}

/// An L4-only port rule (a macro, so that the ports' array lives as long as the binding it is assigned to).
macro_rules! l4 {
    ($($p:expr),* $(,)?) => {
        PortRule { ports: &[$($p),*], l7: L7::None }
    };
}

struct CidrRule<'a> {
    cidr: &'a str,
    except: &'a [&'a str],
}

/// The peer of a rule (at most one kind per rule).
enum Peer<'a> {
    /// No peer field (with `toPorts`: any peer).
    None,
    Endpoints(&'a [Sel<'a>]),
    Entities(&'a [&'a str]),
    Cidr(&'a [&'a str]),
    CidrSet(&'a [CidrRule<'a>]),
    /// Egress only.
    Fqdns(&'a [Fqdn<'a>]),
}

struct Rule<'a> {
    peer: Peer<'a>,
    ports: &'a [PortRule<'a>],
}

const fn rule<'a>(peer: Peer<'a>, ports: &'a [PortRule<'a>]) -> Rule<'a> {
    Rule { peer, ports }
}

/// A CiliumNetworkPolicy (`ns` given) or CiliumClusterwideNetworkPolicy.
struct Cnp<'a> {
    ns: Option<&'a str>,
    name: &'a str,
    description: Option<&'a str>,
    sel: Sel<'a>,
    /// `enableDefaultDeny`: ingress, egress (`None`: omitted).
    default_deny: [Option<bool>; 2],
    ingress: &'a [Rule<'a>],
    ingress_deny: &'a [Rule<'a>],
    egress: &'a [Rule<'a>],
    egress_deny: &'a [Rule<'a>],
}

impl<'a> Cnp<'a> {
    fn new(ns: Option<&'a str>, name: &'a str, sel: Sel<'a>) -> Self {
        Cnp {
            ns,
            name,
            description: None,
            sel,
            default_deny: [None, None],
            ingress: &[],
            ingress_deny: &[],
            egress: &[],
            egress_deny: &[],
        }
    }
}

fn write_fqdn(o: &mut String, lead: &str, f: &Fqdn<'_>) -> fmt::Result {
    match f {
        Fqdn::Name(n) => writeln!(o, "{lead}matchName: {n}"),
        Fqdn::Pattern(p) => writeln!(o, "{lead}matchPattern: \"{p}\""),
    }
}

fn write_ports(o: &mut String, ports: &[PortRule<'_>]) -> fmt::Result {
    for pr in ports {
        o.push_str("    - ports:\n");
        for p in pr.ports {
            if p.port.bytes().all(|b| b.is_ascii_digit()) {
                writeln!(o, "      - port: \"{}\"", p.port)?;
            } else {
                writeln!(o, "      - port: {}", p.port)?;
            }
            if let Some(proto) = p.proto {
                writeln!(o, "        protocol: {proto}")?;
            }
            if let Some(e) = p.end {
                writeln!(o, "        endPort: {e}")?;
            }
        }
        match pr.l7 {
            L7::None | L7::Http([]) => {}
            L7::Http(rules) => {
                o.push_str("      rules:\n        http:\n");
                for h in rules {
                    let mut lead = "        - ";
                    if let Some(m) = h.method {
                        writeln!(o, "{lead}method: {m}")?;
                        lead = "          ";
                    }
                    writeln!(o, "{lead}path: '{}'", h.path)?;
                    if !h.headers.is_empty() {
                        o.push_str("          headers:\n");
                        for x in &h.headers {
                            writeln!(o, "          - '{x}'")?;
                        }
                    }
                }
            }
            L7::Dns(names) => {
                o.push_str("      rules:\n        dns:\n");
                for f in names {
                    write_fqdn(o, "        - ", f)?;
                }
            }
        }
    }
    Ok(())
}

fn write_rules(o: &mut String, key: &str, dir: &str, rules: &[Rule<'_>]) -> fmt::Result {
    if rules.is_empty() {
        return Ok(());
    }
    writeln!(o, "  {key}:")?;
    for r in rules {
        let mut lead = "  - ";
        match r.peer {
            Peer::None => {}
            Peer::Endpoints(sels) => {
                writeln!(o, "{lead}{dir}Endpoints:")?;
                for s in sels {
                    write_sel_item(o, "    - ", 6, s)?;
                }
            }
            Peer::Entities(es) => {
                writeln!(o, "{lead}{dir}Entities:")?;
                for e in es {
                    writeln!(o, "    - {e}")?;
                }
            }
            Peer::Cidr(cs) => {
                writeln!(o, "{lead}{dir}CIDR:")?;
                for c in cs {
                    writeln!(o, "    - \"{c}\"")?;
                }
            }
            Peer::CidrSet(rs) => {
                writeln!(o, "{lead}{dir}CIDRSet:")?;
                for c in rs {
                    writeln!(o, "    - cidr: \"{}\"", c.cidr)?;
                    if !c.except.is_empty() {
                        o.push_str("      except:\n");
                        for e in c.except {
                            writeln!(o, "      - \"{e}\"")?;
                        }
                    }
                }
            }
            Peer::Fqdns(fs) => {
                writeln!(o, "{lead}toFQDNs:")?;
                for f in fs {
                    write_fqdn(o, "    - ", f)?;
                }
            }
        }
        if !matches!(r.peer, Peer::None) {
            lead = "    ";
        }
        if !r.ports.is_empty() {
            writeln!(o, "{lead}toPorts:")?;
            lead = "    ";
            write_ports(o, r.ports)?;
        }
        if lead == "  - " {
            o.push_str("  - {}\n");
        }
    }
    Ok(())
}

fn write_cnp(o: &mut String, c: &Cnp<'_>) -> fmt::Result {
    let kind = if c.ns.is_some() { "CiliumNetworkPolicy" } else { "CiliumClusterwideNetworkPolicy" };
    writeln!(o, "---\napiVersion: cilium.io/v2\nkind: {kind}\nmetadata:\n  name: {}", c.name)?;
    if let Some(ns) = c.ns {
        writeln!(o, "  namespace: {ns}")?;
    }
    o.push_str("spec:\n");
    if let Some(d) = c.description {
        writeln!(o, "  description: \"{d}\"")?;
    }
    write_sel(o, "  ", 2, "endpointSelector", &c.sel)?;
    if c.default_deny.iter().any(Option::is_some) {
        o.push_str("  enableDefaultDeny:\n");
        for (dir, v) in ["ingress", "egress"].iter().zip(c.default_deny) {
            if let Some(v) = v {
                writeln!(o, "    {dir}: {v}")?;
            }
        }
    }
    write_rules(o, "ingress", "from", c.ingress)?;
    write_rules(o, "ingressDeny", "from", c.ingress_deny)?;
    write_rules(o, "egress", "to", c.egress)?;
    write_rules(o, "egressDeny", "to", c.egress_deny)
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP rules.

/// Which API an HTTP rule set describes.
#[derive(Clone, Copy)]
enum Api {
    /// A public web frontend.
    Web,
    /// A REST/GraphQL backend.
    Rest,
    /// Metrics and health endpoints.
    Ops,
}

/// (method, path regex, header): `{team}` in the header is the team's name.
type HttpEntry = (Option<&'static str>, &'static str, Option<&'static str>);

const WEB: [HttpEntry; 7] = [
    (Some("GET"), "/", None),
    (Some("GET|HEAD"), "/static/.*", None),
    (Some("GET"), "/assets/[a-z0-9-]+\\.(js|css|png|svg)", None),
    (Some("POST"), "/api/v1/login", Some("Content-Type: application/json")),
    (Some("GET"), "/api/v1/products(/[0-9]+)?", None),
    (Some("POST"), "/api/v1/cart/items", Some("X-Requested-With: XMLHttpRequest")),
    (None, "/public/.*", None),
];

const REST: [HttpEntry; 8] = [
    (Some("GET"), "/api/v1/orders(/[0-9]+)?", None),
    (Some("POST"), "/api/v1/orders", Some("X-Tenant-Id: {team}")),
    (Some("PUT"), "/api/v1/orders/[0-9]+", None),
    (Some("DELETE"), "/api/v1/orders/[0-9]+", Some("X-Admin-Token")),
    (Some("PATCH"), "/api/v2/users/[a-z0-9-]{1,36}", None),
    (Some("GET"), "/api/v2/users/[a-z0-9-]{1,36}/profile", Some("Authorization")),
    (None, "/internal/.*", Some("X-Request-Id")),
    (Some("POST"), "/graphql", Some("X-Requested-With: XMLHttpRequest")),
];

const OPS: [HttpEntry; 4] = [
    (Some("GET"), "/metrics", None),
    (Some("GET"), "/(healthz|readyz|livez)", None),
    (Some("GET"), "/metrics/[a-z_]+", None),
    (Some("GET"), "/debug/pprof/.*", Some("X-Debug-Token")),
];

/// `n` distinct HTTP rules of `api`, starting at a random entry.
fn http_rules(r: &mut Rng, api: Api, n: usize, team: &str) -> Vec<Http> {
    let cat: &[HttpEntry] = match api {
        Api::Web => &WEB,
        Api::Rest => &REST,
        Api::Ops => &OPS,
    };
    let start = r.below(cat.len());
    (0..n)
        .map(|j| {
            let (method, path, header) = cat[(start + j) % cat.len()];
            // Past the catalog, the same paths under a version prefix.
            let path = match j / cat.len() {
                0 => path.to_string(),
                v => format!("/v{}{path}", v + 1),
            };
            Http { method, path, headers: header.map(|h| h.replace("{team}", team)).into_iter().collect() }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// The policies.

const NS: &str = "k8s:io.kubernetes.pod.namespace";
const NS_LABEL_TEAM: &str = "io.cilium.k8s.namespace.labels.team";
const NS_LABEL_ENV: &str = "io.cilium.k8s.namespace.labels.env";
const SA: &str = "io.cilium.k8s.policy.serviceaccount";
const K8S_SA: &str = "k8s:io.cilium.k8s.policy.serviceaccount";
const DNS_SEL: [(&str, &str); 2] = [(NS, "kube-system"), ("k8s:k8s-app", "kube-dns")];
const DNS_ANY: [Pp<'static>; 1] = [pp("ANY", "53")];
const DNS_ALL: [Fqdn<'static>; 1] = [Fqdn::Pattern("*")];
const PRIVATE_V4: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];

const CCNP_KINDS: usize = 9;
/// The CCNP kind with HTTP rules.
const CCNP_HTTP: usize = 7;

fn write_ccnp(
    o: &mut String,
    name: &mut String,
    r: &mut Rng,
    i: usize,
    kind: usize,
    teams: usize,
    http: usize,
) -> fmt::Result {
    let team = format!("team-{:04}", (i * 7) % teams);
    let env = ENVS[(i / CCNP_KINDS) % ENVS.len()];
    let team_l = [(NS_LABEL_TEAM, team.as_str())];
    let env_l = [(NS_LABEL_ENV, env)];
    name.clear();
    let base = |name: &mut String, n: &str| -> fmt::Result { write!(name, "{n}-{i}") };
    match kind {
        0 => {
            base(name, &format!("platform-dns-{env}"))?;
            let to = [Sel::Labels(&DNS_SEL)];
            let ports = [PortRule { ports: &DNS_ANY, l7: L7::Dns(&DNS_ALL) }];
            let eg = [rule(Peer::Endpoints(&to), &ports)];
            write_cnp(
                o,
                &Cnp {
                    description: Some("Cluster DNS for every pod, through the DNS proxy"),
                    default_deny: [Some(false), Some(false)],
                    egress: &eg,
                    ..Cnp::new(None, name, Sel::Labels(&env_l))
                },
            )
        }
        1 => {
            base(name, &format!("deny-instance-metadata-{team}"))?;
            let exprs = [Expr { key: NS, op: "NotIn", values: &["kube-system", "monitoring"] }];
            let v6 = [CidrRule { cidr: "fd00:ec2::254/128", except: &[] }];
            let deny = [rule(Peer::Cidr(&["169.254.169.254/32"]), &[]), rule(Peer::CidrSet(&v6), &[])];
            write_cnp(o, &Cnp { egress_deny: &deny, ..Cnp::new(None, name, Sel::Both(&team_l, &exprs)) })
        }
        2 => {
            base(name, &format!("isolate-{team}"))?;
            let from = [
                Sel::Exprs(&[
                    Expr { key: NS_LABEL_TEAM, op: "NotIn", values: &[team.as_str()] },
                    Expr { key: "io.cilium.k8s.namespace.labels.tier-policy", op: "Exists", values: &[] },
                ]),
                Sel::Exprs(&[Expr { key: NS_LABEL_ENV, op: "In", values: &["dev"] }]),
            ];
            let deny = [rule(Peer::Endpoints(&from), &[])];
            write_cnp(
                o,
                &Cnp {
                    description: Some("No traffic from strict namespaces of other teams, nor from dev"),
                    default_deny: [Some(false), None],
                    ingress_deny: &deny,
                    ..Cnp::new(None, name, Sel::Labels(&team_l))
                },
            )
        }
        3 => {
            base(name, &format!("allow-monitoring-{team}"))?;
            let from = [Sel::Labels(&[(NS, "monitoring"), ("k8s:app", "prometheus")])];
            let ports = [l4![pp("TCP", "metrics"), range("TCP", "9100", 9110)]];
            let ing = [rule(Peer::Endpoints(&from), &ports)];
            write_cnp(
                o,
                &Cnp { default_deny: [Some(false), None], ingress: &ing, ..Cnp::new(None, name, Sel::Labels(&team_l)) },
            )
        }
        4 => {
            base(name, &format!("db-no-world-{env}"))?;
            let envs: &[&str] = match env {
                "prod" => &["prod", "staging"],
                "staging" => &["staging"],
                _ => &["dev", "sandbox"],
            };
            let exprs = [Expr { key: NS_LABEL_ENV, op: "In", values: envs }];
            let sel = Sel::Both(&[("tier", "db")], &exprs);
            let nets = [CidrRule { cidr: "0.0.0.0/0", except: &PRIVATE_V4 }];
            let pg = [l4![pp("TCP", "5432")]];
            let ing = [rule(Peer::Entities(&["world"]), &[])];
            let eg = [rule(Peer::Entities(&["world"]), &[]), rule(Peer::CidrSet(&nets), &pg)];
            write_cnp(o, &Cnp { ingress_deny: &ing, egress_deny: &eg, ..Cnp::new(None, name, sel) })
        }
        5 => {
            base(name, "kube-dns")?;
            let sel = Sel::Labels(&DNS_SEL);
            let api = [l4![pp("TCP", "443"), pp("TCP", "6443")]];
            let upstream = [l4![pp("UDP", "53"), pp("TCP", "53")]];
            let eg = [rule(Peer::Entities(&["kube-apiserver"]), &api), rule(Peer::Entities(&["world"]), &upstream)];
            let dns = [l4![pp("ANY", "53")]];
            let health = [l4![pp("TCP", "8080"), pp("TCP", "8181")]];
            let scrape = [l4![pp("TCP", "9153")]];
            let prom = [Sel::Labels(&[(NS, "monitoring"), (SA, SA_PROMETHEUS)])];
            let ing = [
                rule(Peer::Entities(&["cluster"]), &dns),
                rule(Peer::Entities(&["host", "remote-node"]), &health),
                rule(Peer::Endpoints(&prom), &scrape),
            ];
            write_cnp(o, &Cnp { ingress: &ing, egress: &eg, ..Cnp::new(None, name, sel) })
        }
        6 => {
            base(name, &format!("block-smtp-{env}"))?;
            let ports = [l4![pp("TCP", "25"), pp("TCP", "465")]];
            let deny = [rule(Peer::None, &ports)];
            write_cnp(
                o,
                &Cnp {
                    default_deny: [None, Some(false)],
                    egress_deny: &deny,
                    ..Cnp::new(None, name, Sel::Labels(&env_l))
                },
            )
        }
        CCNP_HTTP => {
            base(name, &format!("gateway-l7-{team}"))?;
            let sel = [("app", "api"), (NS_LABEL_TEAM, team.as_str())];
            let from = [Sel::Labels(&[("any:tier", "frontend"), (NS_LABEL_TEAM, team.as_str())])];
            let rules = http_rules(r, Api::Rest, http, &team);
            let ports = [PortRule { ports: &[pp("TCP", "8080")], l7: L7::Http(&rules) }];
            let ing = [rule(Peer::Endpoints(&from), &ports)];
            write_cnp(
                o,
                &Cnp {
                    description: Some("The API gateway's allowed calls into each team's api"),
                    ingress: &ing,
                    ..Cnp::new(None, name, Sel::Labels(&sel))
                },
            )
        }
        _ => {
            base(name, "quarantine")?;
            let sel = Sel::Exprs(&[Expr { key: "quarantine", op: "Exists", values: &[] }]);
            let all = [rule(Peer::Entities(&["all"]), &[])];
            write_cnp(o, &Cnp { ingress_deny: &all, egress_deny: &all, ..Cnp::new(None, name, sel) })
        }
    }
}

const CNP_KINDS: usize = 17;
/// The CNP kinds with HTTP rules.
const CNP_HTTP: [usize; 5] = [0, 1, 7, 15, 16];

/// External services reached by name.
const FQDNS: [(&str, bool); 8] = [
    ("api.stripe.com", false),
    ("*.github.com", true),
    ("hooks.slack.com", false),
    ("*.s3.amazonaws.com", true),
    ("api.twilio.com", false),
    ("**.datadoghq.com", true),
    ("sentry.io", false),
    ("*.googleapis.com", true),
];

/// Where a CNP is written.
struct Ctx<'a> {
    seed: u64,
    t: &'a Tenant,
    /// Tenant namespaces in the cluster (0: the policies are in `monitoring`).
    namespaces: usize,
}

/// The service account of the first app of `tier` in `t`, if it runs as its own.
fn service_account_of(seed: u64, t: &Tenant, tier: Tier) -> Option<&'static str> {
    let i = t.apps.iter().position(|a| a.tier == tier)?;
    has_service_account(seed, t, i).then(|| t.apps.get(i).map(|a| a.name)).flatten()
}

/// The `k`-th CNP of namespace `ctx.t`, of kind `kind`, with `http` HTTP rules if the kind has them.
fn write_cnp_kind(
    o: &mut String,
    name: &mut String,
    r: &mut Rng,
    ctx: Ctx<'_>,
    kind: usize,
    k: usize,
    http: usize,
) -> fmt::Result {
    let Ctx { seed, t, namespaces } = ctx;
    let ns = Some(t.name.as_str());
    let (fe, be, db, wk) =
        (t.app_of(Tier::Frontend), t.app_of(Tier::Backend), t.app_of(Tier::Db), t.app_of(Tier::Worker));
    let (other_team, other_ns) = if namespaces == 0 {
        (t.team.clone(), t.name.clone())
    } else {
        let j = r.below(namespaces);
        (team_of(j), format!("{}-{}", team_of(j), env_of(j)))
    };
    let dns = [Sel::Labels(&DNS_SEL)];
    let dns_ports = [PortRule { ports: &DNS_ANY, l7: L7::None }];
    name.clear();
    let mut base = |n: &str| -> fmt::Result { write!(name, "{n}-{k}") };
    match kind {
        0 => {
            base(&format!("{fe}-public"))?;
            let rules = http_rules(r, Api::Web, http, &t.team);
            let web = [PortRule { ports: &[pp("TCP", "8080")], l7: L7::Http(&rules) }];
            let http_named = [l4![pp("TCP", "http")]];
            let ing = [rule(Peer::Entities(&["world"]), &web), rule(Peer::Entities(&["cluster"]), &http_named)];
            write_cnp(o, &Cnp { ingress: &ing, ..Cnp::new(ns, name, Sel::Labels(&[("app", fe)])) })
        }
        1 => {
            base(&format!("{be}-from-frontend"))?;
            let rules = http_rules(r, Api::Rest, http, &t.team);
            let fe_sa = service_account_of(seed, t, Tier::Frontend).map(|sa| [(SA, sa)]);
            let by_label = Sel::Labels(&[("tier", "frontend")]);
            let from = match &fe_sa {
                Some(sa) => vec![by_label, Sel::Labels(sa)],
                None => vec![by_label],
            };
            let api = [PortRule { ports: &[pp("TCP", "http")], l7: L7::Http(&rules) }];
            let workers = [Sel::Labels(&[("k8s:tier", "worker")])];
            let grpc = [l4![Pp { port: "grpc", end: None, proto: None }]];
            let ing = [rule(Peer::Endpoints(&from), &api), rule(Peer::Endpoints(&workers), &grpc)];
            write_cnp(o, &Cnp { ingress: &ing, ..Cnp::new(ns, name, Sel::Labels(&[("app", be)])) })
        }
        2 => {
            base(&format!("{db}-access"))?;
            let be_sa = service_account_of(seed, t, Tier::Backend).map(|sa| [(K8S_SA, sa)]);
            let by_label = Sel::Labels(&[("any:tier", "backend")]);
            let from = match &be_sa {
                Some(sa) => vec![by_label, Sel::Labels(sa)],
                None => vec![by_label],
            };
            let pg = [l4![pp("TCP", "5432")]];
            let prom = [Sel::Labels(&[(NS, "monitoring"), ("k8s:app", "prometheus")])];
            let metrics = [l4![pp("TCP", "metrics")]];
            let ing = [rule(Peer::Endpoints(&from), &pg), rule(Peer::Endpoints(&prom), &metrics)];
            let dns53 = [l4![pp("UDP", "53"), pp("TCP", "53")]];
            let eg = [rule(Peer::Endpoints(&dns), &dns53)];
            write_cnp(o, &Cnp { ingress: &ing, egress: &eg, ..Cnp::new(ns, name, Sel::Labels(&[("tier", "db")])) })
        }
        3 => {
            base(&format!("{be}-fqdn-egress"))?;
            let a = r.below(FQDNS.len());
            let b = (a + 1 + r.below(FQDNS.len() - 1)) % FQDNS.len();
            let f = |(n, pattern): (&'static str, bool)| if pattern { Fqdn::Pattern(n) } else { Fqdn::Name(n) };
            let names = [f(FQDNS[a]), f(FQDNS[b])];
            let dns_l7 = [PortRule { ports: &DNS_ANY, l7: L7::Dns(&DNS_ALL) }];
            let https = [l4![pp("TCP", "443")]];
            let eg = [rule(Peer::Endpoints(&dns), &dns_l7), rule(Peer::Fqdns(&names), &https)];
            write_cnp(o, &Cnp { egress: &eg, ..Cnp::new(ns, name, Sel::Labels(&[("app", be)])) })
        }
        4 => {
            base("internet-egress")?;
            let nets =
                [CidrRule { cidr: "0.0.0.0/0", except: &PRIVATE_V4 }, CidrRule { cidr: "::/0", except: &["fd00::/8"] }];
            let web = [l4![pp("TCP", "443"), pp("TCP", "80")]];
            let c1 = format!("52.94.{}.0/24", r.below(256));
            let c2 = format!("35.{}.{}.{}/32", 160 + r.below(32), r.below(256), 1 + r.below(254));
            let cidrs = [c1.as_str(), c2.as_str()];
            let tls = [l4![pp("TCP", "443")]];
            let eg = [rule(Peer::CidrSet(&nets), &web), rule(Peer::Cidr(&cidrs), &tls)];
            write_cnp(o, &Cnp { egress: &eg, ..Cnp::new(ns, name, Sel::Labels(&[("tier", "frontend")])) })
        }
        5 => {
            base(&format!("{fe}-office"))?;
            let e1 = format!("192.168.{}.0/24", r.below(256));
            let e2 = format!("172.{}.{}.0/24", 16 + r.below(16), r.below(256));
            let (ex1, ex2) = ([e1.as_str()], [e2.as_str(), "172.31.255.0/24"]);
            let nets =
                [CidrRule { cidr: "192.168.0.0/16", except: &ex1 }, CidrRule { cidr: "172.16.0.0/12", except: &ex2 }];
            let tls = [l4![range("TCP", "8443", 8445)]];
            let vpn = format!("100.64.{}.0/24", r.below(256));
            let http8080 = [l4![pp("TCP", "8080")]];
            let vpn = [vpn.as_str()];
            let ing = [rule(Peer::CidrSet(&nets), &tls), rule(Peer::Cidr(&vpn), &http8080)];
            write_cnp(o, &Cnp { ingress: &ing, ..Cnp::new(ns, name, Sel::Labels(&[("app", fe)])) })
        }
        6 => {
            base("cross-team")?;
            let other = [(NS_LABEL_TEAM, other_team.as_str()), ("tier", "frontend")];
            let nss = [t.name.as_str(), other_ns.as_str()];
            let exprs =
                [Expr { key: NS, op: "In", values: &nss }, Expr { key: "tier", op: "In", values: &["frontend"] }];
            let from = [Sel::Labels(&other), Sel::Exprs(&exprs)];
            let ports = [l4![pp("TCP", "8080"), pp("TCP", "9090")]];
            let ing = [rule(Peer::Endpoints(&from), &ports)];
            write_cnp(o, &Cnp { ingress: &ing, ..Cnp::new(ns, name, Sel::Labels(&[("app", be)])) })
        }
        7 => {
            base("allow-scrape")?;
            let rules = http_rules(r, Api::Ops, http, &t.team);
            let from = [Sel::Labels(&[(NS, "monitoring"), ("app.kubernetes.io/name", "prometheus")])];
            let ports = [PortRule { ports: &[pp("TCP", "9100")], l7: L7::Http(&rules) }];
            let ing = [rule(Peer::Endpoints(&from), &ports)];
            let sel = Sel::Exprs(&[Expr { key: "app", op: "Exists", values: &[] }]);
            // Some teams keep scraping from isolating their pods.
            let default_deny = [r.chance(25).then_some(false), None];
            write_cnp(o, &Cnp { default_deny, ingress: &ing, ..Cnp::new(ns, name, sel) })
        }
        8 => {
            base("node-health")?;
            let health = [l4![pp("TCP", "8081")]];
            let ing = [rule(Peer::Entities(&["host", "remote-node"]), &health)];
            let api = [l4![pp("TCP", "443"), pp("TCP", "6443")]];
            let eg = [rule(Peer::Entities(&["kube-apiserver"]), &api)];
            write_cnp(
                o,
                &Cnp {
                    description: Some("Kubelet probes and API server access, without default deny"),
                    default_deny: [Some(false), Some(false)],
                    ingress: &ing,
                    egress: &eg,
                    ..Cnp::new(ns, name, Sel::All)
                },
            )
        }
        9 => {
            base("statsd-and-signaling")?;
            let mon = [Sel::Labels(&[(NS, "monitoring")])];
            let statsd = [l4![pp("UDP", "8125")]];
            let peers = [Sel::Labels(&[("app", be), ("tier", "backend")])];
            let sctp = [l4![pp("SCTP", "diameter"), range("SCTP", "38412", 38422)]];
            let eg = [rule(Peer::Endpoints(&mon), &statsd), rule(Peer::Endpoints(&peers), &sctp)];
            write_cnp(o, &Cnp { egress: &eg, ..Cnp::new(ns, name, Sel::Labels(&[("tier", "worker")])) })
        }
        10 => {
            base(&format!("{fe}-nodeports"))?;
            let ports = [l4![range("TCP", "30000", 32767), range("UDP", "30000", 32767)]];
            let ing = [rule(Peer::Entities(&["world", "cluster"]), &ports)];
            write_cnp(o, &Cnp { ingress: &ing, ..Cnp::new(ns, name, Sel::Labels(&[("app", fe)])) })
        }
        11 => {
            base("db-guard")?;
            let env = [Expr { key: NS_LABEL_ENV, op: "NotIn", values: &[t.env] }];
            let from = [Sel::Exprs(&env)];
            let pg = [l4![pp("TCP", "5432")]];
            let ing_deny = [rule(Peer::Endpoints(&from), &pg)];
            let eg_deny = [rule(Peer::Entities(&["world"]), &[])];
            let be_sel = [Sel::Labels(&[("tier", "backend")])];
            let ing = [rule(Peer::Endpoints(&be_sel), &[])];
            write_cnp(
                o,
                &Cnp {
                    ingress: &ing,
                    ingress_deny: &ing_deny,
                    egress_deny: &eg_deny,
                    ..Cnp::new(ns, name, Sel::Labels(&[("tier", "db")]))
                },
            )
        }
        12 => {
            base("canary")?;
            let sel = [
                Expr { key: "version", op: "In", values: &["v2"] },
                Expr { key: "tier", op: "NotIn", values: &["db"] },
            ];
            let from = [
                Sel::Exprs(&[Expr { key: "version", op: "DoesNotExist", values: &[] }]),
                Sel::Labels(&[("version", "v2")]),
            ];
            let ports = [l4![pp("TCP", "http"), pp("TCP", "grpc")]];
            let ing = [rule(Peer::Endpoints(&from), &ports)];
            let v1 = [Sel::Labels(&[("version", "v1")])];
            let deny = [rule(Peer::Endpoints(&v1), &[])];
            write_cnp(o, &Cnp { ingress: &ing, egress_deny: &deny, ..Cnp::new(ns, name, Sel::Exprs(&sel)) })
        }
        13 => {
            base("same-namespace")?;
            let all = [Sel::All];
            let ing = [rule(Peer::Endpoints(&all), &[])];
            let eg = [rule(Peer::Endpoints(&all), &[]), rule(Peer::Endpoints(&dns), &dns_ports)];
            write_cnp(o, &Cnp { ingress: &ing, egress: &eg, ..Cnp::new(ns, name, Sel::All) })
        }
        14 => {
            base(&format!("{wk}-egress"))?;
            let to = [Sel::Labels(&[("tier", "backend")])];
            let ports = [l4![pp("ANY", "9090"), Pp { port: "grpc", end: None, proto: None }]];
            let smtp = [l4![pp("TCP", "587")]];
            let eg = [rule(Peer::Endpoints(&to), &ports), rule(Peer::Entities(&["world"]), &smtp)];
            write_cnp(o, &Cnp { egress: &eg, ..Cnp::new(ns, name, Sel::Labels(&[("app", wk)])) })
        }
        15 => {
            base(&format!("{fe}-to-partner-api"))?;
            let rules = http_rules(r, Api::Rest, http, &t.team);
            let to = [Sel::Labels(&[(NS, other_ns.as_str()), ("app", "api")])];
            let ports = [PortRule { ports: &[pp("TCP", "8080")], l7: L7::Http(&rules) }];
            let eg = [rule(Peer::Endpoints(&to), &ports), rule(Peer::Endpoints(&dns), &dns_ports)];
            write_cnp(o, &Cnp { egress: &eg, ..Cnp::new(ns, name, Sel::Labels(&[("app", fe)])) })
        }
        _ => {
            base("public-health")?;
            let rules = http_rules(r, Api::Ops, http, &t.team);
            let ports = [PortRule { ports: &[pp("TCP", "8081")], l7: L7::Http(&rules) }];
            let ing = [rule(Peer::Entities(&["all"]), &ports)];
            write_cnp(o, &Cnp { ingress: &ing, ..Cnp::new(ns, name, Sel::Labels(&[("tier", "frontend")])) })
        }
    }
}

#[cfg(test)]
#[path = "cilium_tests.rs"]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests;
