//! A Calico (`projectcalico.org/v3`) variant of the synthetic cluster: what a platform running Calico layers over
//! the tenants of [`crate::generate_yaml`].
//!
//! [`generate_calico_yaml`] writes the cluster of [`crate::generate_yaml`] (same namespaces, pods, labels, IPs and
//! NetworkPolicies; the NetworkPolicies are in Calico's `default` tier at order 1000) with two differences: about
//! 60% of the workloads, and the system pods, run as their own service account (`spec.serviceAccountName`, the
//! app's name; `coredns`, `prometheus-k8s`, `node-exporter`), and then, in this order:
//!
//! * a v1 ServiceAccount per such account, labelled `app.kubernetes.io/name`, `team`, `role` (the app's tier) and
//!   `trust` (`high`, `medium`, `low`);
//! * the 5 Tiers of [`CALICO_TIERS`]: `security` (order 100, defaultAction Pass), `compliance` (200, Deny),
//!   `platform` (200, Pass: the tie is decided by name), `app` (500, defaultAction omitted: Deny),
//!   `observability` (no order: after every ordered tier, `default` and `kube-baseline` included; Deny);
//! * network sets holding exactly `cidrs` CIDRs: ~60% in GlobalNetworkSets of threat feeds (`feed: threat`,
//!   `feed-name: <feed>`, public /32s and /24s, 500 per set), ~10% in `internal-networks` (`role: internal`, the
//!   RFC 1918 ranges, so every pod address is in a set) and per-vendor GlobalNetworkSets (`role: saas`,
//!   `vendor: <vendor>`, /24s and IPv6 /48s), ~30% in namespaced NetworkSets of partner networks (`role: partner`,
//!   /28s) in about 30% of the tenant namespaces;
//! * exactly `policies` Calico policies, ~15% GlobalNetworkPolicies and ~85% namespaced NetworkPolicies, split
//!   4 : 5 : 5 : 3 : 1 : 2 : 15 : 65 into security GNPs (threat feeds, metadata service, remote access,
//!   quarantine, dev → prod, protocols), compliance GNPs (strict namespaces), platform GNPs (DNS, scraping, kube-dns,
//!   egress gateway, node ports, `serviceAccountSelector`), compliance NetworkPolicies (in `tier-policy: strict`
//!   namespaces), observability GNPs (Log then Allow), `default`-tier GNPs (tier omitted or `default`), `default`-tier
//!   NetworkPolicies and `app`-tier NetworkPolicies (12 kinds in rotation per namespace: frontend ingress, backend
//!   from frontend, database access, workers' statsd, partner and SaaS egress, cross-team, service-account clients,
//!   SCTP diameter, IPv6 egress, namespace lockdown, canary, name patterns). Namespaced policies go to about 75%
//!   of the tenant namespaces, unevenly.
//!
//! Selectors use the whole grammar (`==`, `!=`, `in`, `not in`, `has()`, `!has()`, `starts with`, `ends with`,
//! `contains`, `&&`, `||`, `!`, parentheses, `all()`; rule `namespaceSelector`s with `global()` and `all()`,
//! `serviceAccounts` names and selectors, `projectcalico.org/namespace`, `projectcalico.org/serviceaccount`,
//! `projectcalico.org/name`, `projectcalico.org/orchestrator`), rules every action (Allow, Deny, Pass, Log),
//! `ports` and `notPorts` (numbers, `"lo:hi"` ranges, named ports), protocols by name and by number, `notProtocol`,
//! `ipVersion`, `icmp`, `nets` and `notNets`, `notSelector`; policy orders include ties and absent ones. Every
//! object is one Calico's API server accepts: the output loads with no diagnostic at all.
//!
//! Like everything in this crate, the output is a pure function of its arguments.

use std::fmt::{self, Write};

use crate::accounts::{write_service_accounts, SA_PROMETHEUS};
use crate::plan::{apportion, Plan, Tenant, Tier, ENVS};
use crate::rng::{mix, Rng, S_CALICO, S_CALICO_NETS};
use crate::{write_cluster, ClusterOpts, Params};

/// The Tiers written, in order of evaluation.
pub const CALICO_TIERS: [&str; 5] = ["security", "compliance", "platform", "app", "observability"];

/// Threat-feed and partner network sets are cut into sets of at most this many CIDRs.
const SET_CHUNK: usize = 500;

/// The cluster of [`crate::generate_yaml`] for `p`, with service accounts, plus 5 Tiers, network sets holding
/// `cidrs` CIDRs in all and `policies` Calico NetworkPolicies and GlobalNetworkPolicies (see the module
/// documentation). The benchmark: the `10k` preset, 2,000 policies, 10,000 CIDRs.
pub fn generate_calico_yaml(p: &Params, policies: usize, cidrs: usize) -> String {
    let plan = Plan::new(p);
    let mut o = String::with_capacity(
        p.pods * 740 + p.policies * 640 + p.namespaces * 420 + policies * 1200 + cidrs * 22 + 4096,
    );
    // Writing into a String cannot fail.
    let _ = write_cluster(&mut o, p, &plan, ClusterOpts { service_accounts: true, nodes: 0 })
        .and_then(|()| write_calico(&mut o, p.seed, &plan, policies, cidrs));
    o
}

fn write_calico(o: &mut String, seed: u64, plan: &Plan, policies: usize, cidrs: usize) -> fmt::Result {
    write_service_accounts(o, seed, plan)?;
    write_tiers(o)?;
    // Namespaced objects need a namespace: without tenants, they go to `monitoring`.
    let fallback;
    let tenants: &[Tenant] = if plan.tenants.is_empty() {
        fallback = [Tenant::monitoring(0)];
        &fallback
    } else {
        &plan.tenants
    };
    write_network_sets(o, seed, tenants, cidrs)?;
    write_policies(o, seed, tenants, policies)
}

fn write_tiers(o: &mut String) -> fmt::Result {
    // (name, order, defaultAction): one tie (compliance, platform), one without order, one without defaultAction.
    let tiers: [(&str, Option<u32>, Option<&str>); 5] = [
        ("security", Some(100), Some("Pass")),
        ("compliance", Some(200), Some("Deny")),
        ("platform", Some(200), Some("Pass")),
        ("app", Some(500), None),
        ("observability", None, Some("Deny")),
    ];
    for (name, order, action) in tiers {
        writeln!(o, "---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: {name}\nspec:")?;
        if let Some(order) = order {
            writeln!(o, "  order: {order}")?;
        }
        if let Some(a) = action {
            writeln!(o, "  defaultAction: {a}")?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Network sets.

const FEEDS: [&str; 4] = ["spamhaus-drop", "emerging-threats", "tor-exit", "botnet-c2"];
const VENDORS: [&str; 8] = ["github", "datadog", "stripe", "twilio", "sentry", "pagerduty", "aws-s3", "aws-rds"];
const PARTNERS: [&str; 5] = ["acme", "globex", "initech", "umbrella", "hooli"];
const RFC1918: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

/// First octets of public unicast IPv4 space (no private, loopback, link-local, CGNAT, benchmarking or
/// documentation ranges, and not 10/8 where the pods are).
fn public_octets() -> Vec<u32> {
    (1u32..=223).filter(|o| ![10, 100, 127, 169, 172, 192, 198, 203].contains(o)).collect()
}

/// A bijection on `bits`-bit numbers (multiplication by an odd number plus a salt, modulo 2^bits).
fn bij(x: usize, bits: u32, salt: u64) -> u32 {
    let mask = (1u64 << bits) - 1;
    ((x as u64).wrapping_mul(0x9E37_79B9).wrapping_add(salt) & mask) as u32
}

fn v4(o: &mut String, a: u32, rest24: u32, len: u8) -> fmt::Result {
    writeln!(o, "  - {a}.{}.{}.{}/{len}", (rest24 >> 16) & 255, (rest24 >> 8) & 255, rest24 & 255)
}

fn set_head(o: &mut String, ns: Option<&str>, name: &str, labels: &[(&str, &str)]) -> fmt::Result {
    let kind = if ns.is_some() { "NetworkSet" } else { "GlobalNetworkSet" };
    writeln!(o, "---\napiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata:\n  name: {name}")?;
    if let Some(ns) = ns {
        writeln!(o, "  namespace: {ns}")?;
    }
    o.push_str("  labels:\n");
    for (k, v) in labels {
        writeln!(o, "    {k}: {v}")?;
    }
    o.push_str("spec:\n  nets:\n");
    Ok(())
}

/// Exactly `cidrs` CIDRs, no two equal within a set (as the API server requires).
fn write_network_sets(o: &mut String, seed: u64, tenants: &[Tenant], cidrs: usize) -> fmt::Result {
    let public = public_octets();
    let np = public.len();
    let salt = mix(seed ^ 0x5EED_CA11);
    let split = apportion(cidrs, &[60, 10, 30]);
    let (threat, saas, partner) = (split[0], split[1], split[2]);

    // Threat feeds: public /32s, every fourth a /24. The bijections make the addresses distinct per length (for
    // fewer than 2^16 /24s and 2^24 /32s); the first octet only spreads them.
    let mut k = 0usize;
    for (feed, n) in FEEDS.iter().zip(apportion(threat, &[40, 30, 20, 10])) {
        for c in 0..n.div_ceil(SET_CHUNK) {
            set_head(o, None, &format!("threat-{feed}-{c}"), &[("feed", "threat"), ("feed-name", feed)])?;
            for _ in 0..SET_CHUNK.min(n - c * SET_CHUNK) {
                let a = public[(k * 31 + 3) % np];
                if k % 4 == 3 {
                    v4(o, a, bij(k / 4, 16, salt) << 8, 24)?;
                } else {
                    v4(o, a, bij(k, 24, salt), 32)?;
                }
                k += 1;
            }
        }
    }

    // Internal networks, then SaaS vendors: /24s, every fifth an IPv6 /48.
    let internal = saas.min(RFC1918.len());
    if internal > 0 {
        set_head(o, None, "internal-networks", &[("role", "internal")])?;
        for net in &RFC1918[..internal] {
            writeln!(o, "  - {net}")?;
        }
    }
    let weights: Vec<u64> = (0..VENDORS.len() as u64).map(|v| 3 + (v * 5) % 7).collect();
    for (v, (vendor, n)) in VENDORS.iter().zip(apportion(saas - internal, &weights)).enumerate() {
        if n == 0 {
            continue;
        }
        set_head(o, None, &format!("saas-{vendor}"), &[("role", "saas"), ("vendor", vendor)])?;
        for m in 0..n {
            if m % 5 == 4 {
                writeln!(o, "  - \"{:x}:{:x}:{:x}::/48\"", 0x2a00 + v, (m >> 16) & 0xffff, m & 0xffff)?;
            } else {
                let a = public[(v * 23 + 5 + m / 65536) % np];
                v4(o, a, ((m % 65536) as u32) << 8, 24)?;
            }
        }
    }

    // Partner networks: /28s in about 30% of the tenant namespaces (at least one), sizes 1:8.
    let mut chosen: Vec<(&Tenant, u64)> = tenants
        .iter()
        .filter_map(|t| {
            let mut r = Rng::new(seed, S_CALICO_NETS, t.index as u64);
            r.chance(30).then(|| (t, 1 + r.below(8) as u64))
        })
        .collect();
    if chosen.is_empty() {
        chosen.extend(tenants.first().map(|t| (t, 1)));
    }
    let weights: Vec<u64> = chosen.iter().map(|c| c.1).collect();
    let mut q = 0usize;
    for ((t, _), n) in chosen.iter().zip(apportion(partner, &weights)) {
        let partner = PARTNERS[t.index % PARTNERS.len()];
        for c in 0..n.div_ceil(SET_CHUNK) {
            set_head(o, Some(&t.name), &format!("partners-{c}"), &[("role", "partner"), ("partner", partner)])?;
            for _ in 0..SET_CHUNK.min(n - c * SET_CHUNK) {
                v4(o, public[(q * 17 + 7) % np], bij(q, 20, salt) << 4, 28)?;
                q += 1;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Policies: a small model of what is written, then the writer.

const INGRESS: &[&str] = &["Ingress"];
const EGRESS: &[&str] = &["Egress"];
const BOTH: &[&str] = &["Ingress", "Egress"];

/// A port of `ports` or `notPorts`.
#[derive(Clone, Copy)]
enum P {
    N(u16),
    R(u16, u16),
    Name(&'static str),
}

/// An entity rule (one side of a rule).
#[derive(Default)]
struct E {
    selector: Option<String>,
    not_selector: Option<String>,
    namespace_selector: Option<String>,
    sa_names: Vec<String>,
    sa_selector: Option<String>,
    nets: Vec<&'static str>,
    not_nets: Vec<&'static str>,
    ports: Vec<P>,
    not_ports: Vec<P>,
}

impl E {
    fn sel(s: impl Into<String>) -> E {
        E { selector: Some(s.into()), ..E::default() }
    }
    fn ns_only(s: impl Into<String>) -> E {
        E { namespace_selector: Some(s.into()), ..E::default() }
    }
    fn sa(names: &[&str]) -> E {
        E { sa_names: names.iter().map(|n| n.to_string()).collect(), ..E::default() }
    }
    fn sa_sel(s: impl Into<String>) -> E {
        E { sa_selector: Some(s.into()), ..E::default() }
    }
    fn nets(nets: &[&'static str]) -> E {
        E { nets: nets.to_vec(), ..E::default() }
    }
    fn not_nets_only(nets: &[&'static str]) -> E {
        E { not_nets: nets.to_vec(), ..E::default() }
    }
    fn ports(ports: &[P]) -> E {
        E { ports: ports.to_vec(), ..E::default() }
    }
    fn not_ports_only(ports: &[P]) -> E {
        E { not_ports: ports.to_vec(), ..E::default() }
    }
    fn ns(mut self, s: impl Into<String>) -> E {
        self.namespace_selector = Some(s.into());
        self
    }
    fn not_sel(mut self, s: impl Into<String>) -> E {
        self.not_selector = Some(s.into());
        self
    }
    fn not_nets(mut self, nets: &[&'static str]) -> E {
        self.not_nets = nets.to_vec();
        self
    }
    fn with_ports(mut self, ports: &[P]) -> E {
        self.ports = ports.to_vec();
        self
    }
    fn is_empty(&self) -> bool {
        self.selector.is_none()
            && self.not_selector.is_none()
            && self.namespace_selector.is_none()
            && self.sa_names.is_empty()
            && self.sa_selector.is_none()
            && self.nets.is_empty()
            && self.not_nets.is_empty()
            && self.ports.is_empty()
            && self.not_ports.is_empty()
    }
}

/// A rule.
#[derive(Default)]
struct R {
    action: &'static str,
    /// Written as is: a name (`TCP`) or a number (`6`).
    protocol: Option<&'static str>,
    not_protocol: Option<&'static str>,
    ip_version: Option<u8>,
    icmp_type: Option<u8>,
    src: E,
    dst: E,
}

impl R {
    fn new(action: &'static str) -> R {
        R { action, ..R::default() }
    }
    fn proto(mut self, p: &'static str) -> R {
        self.protocol = Some(p);
        self
    }
    fn not_proto(mut self, p: &'static str) -> R {
        self.not_protocol = Some(p);
        self
    }
    fn ipv(mut self, v: u8) -> R {
        self.ip_version = Some(v);
        self
    }
    fn icmp(mut self, t: u8) -> R {
        self.icmp_type = Some(t);
        self
    }
    fn src(mut self, e: E) -> R {
        self.src = e;
        self
    }
    fn dst(mut self, e: E) -> R {
        self.dst = e;
        self
    }
}

/// A NetworkPolicy (`ns` set) or GlobalNetworkPolicy.
#[derive(Default)]
struct Pol {
    ns: Option<String>,
    name: String,
    /// `None`: omitted (the `default` tier).
    tier: Option<&'static str>,
    order: Option<f64>,
    selector: Option<String>,
    /// GlobalNetworkPolicy only.
    namespace_selector: Option<String>,
    sa_selector: Option<String>,
    /// `None`: omitted (defaulted from the rules).
    types: Option<&'static [&'static str]>,
    ingress: Vec<R>,
    egress: Vec<R>,
}

impl Pol {
    fn gnp(tier: Option<&'static str>, name: String, order: Option<f64>, selector: impl Into<String>) -> Pol {
        Pol { name, tier, order, selector: Some(selector.into()), ..Pol::default() }
    }
    fn np(t: &Tenant, tier: Option<&'static str>, name: String, order: Option<f64>, sel: impl Into<String>) -> Pol {
        Pol { ns: Some(t.name.clone()), name, tier, order, selector: Some(sel.into()), ..Pol::default() }
    }
    fn nss(mut self, s: impl Into<String>) -> Pol {
        self.namespace_selector = Some(s.into());
        self
    }
    fn sas(mut self, s: impl Into<String>) -> Pol {
        self.sa_selector = Some(s.into());
        self
    }
    fn types(mut self, t: &'static [&'static str]) -> Pol {
        self.types = Some(t);
        self
    }
    fn ingress(mut self, rules: Vec<R>) -> Pol {
        self.ingress = rules;
        self
    }
    fn egress(mut self, rules: Vec<R>) -> Pol {
        self.egress = rules;
        self
    }
}

/// `key: "value"` (selectors are written in double quotes, with single quotes inside).
fn quoted(o: &mut String, indent: &str, key: &str, v: &str) -> fmt::Result {
    debug_assert!(!v.contains('"') && !v.contains('\\'), "{v}");
    writeln!(o, "{indent}{key}: \"{v}\"")
}

fn write_ports(o: &mut String, key: &str, ports: &[P]) -> fmt::Result {
    if ports.is_empty() {
        return Ok(());
    }
    writeln!(o, "      {key}:")?;
    for p in ports {
        match p {
            P::N(n) => writeln!(o, "      - {n}")?,
            P::R(lo, hi) => writeln!(o, "      - \"{lo}:{hi}\"")?,
            P::Name(n) => writeln!(o, "      - {n}")?,
        }
    }
    Ok(())
}

fn write_nets(o: &mut String, key: &str, nets: &[&str]) -> fmt::Result {
    if nets.is_empty() {
        return Ok(());
    }
    writeln!(o, "      {key}:")?;
    for n in nets {
        if n.contains(':') {
            writeln!(o, "      - \"{n}\"")?;
        } else {
            writeln!(o, "      - {n}")?;
        }
    }
    Ok(())
}

fn write_entity(o: &mut String, key: &str, e: &E) -> fmt::Result {
    if e.is_empty() {
        return Ok(());
    }
    writeln!(o, "    {key}:")?;
    const IND: &str = "      ";
    if let Some(s) = &e.selector {
        quoted(o, IND, "selector", s)?;
    }
    if let Some(s) = &e.not_selector {
        quoted(o, IND, "notSelector", s)?;
    }
    if let Some(s) = &e.namespace_selector {
        quoted(o, IND, "namespaceSelector", s)?;
    }
    if !e.sa_names.is_empty() || e.sa_selector.is_some() {
        o.push_str("      serviceAccounts:\n");
        if !e.sa_names.is_empty() {
            o.push_str("        names:\n");
            for n in &e.sa_names {
                writeln!(o, "        - {n}")?;
            }
        }
        if let Some(s) = &e.sa_selector {
            quoted(o, "        ", "selector", s)?;
        }
    }
    write_nets(o, "nets", &e.nets)?;
    write_nets(o, "notNets", &e.not_nets)?;
    write_ports(o, "ports", &e.ports)?;
    write_ports(o, "notPorts", &e.not_ports)
}

fn write_rules(o: &mut String, key: &str, rules: &[R]) -> fmt::Result {
    if rules.is_empty() {
        return Ok(());
    }
    writeln!(o, "  {key}:")?;
    for r in rules {
        writeln!(o, "  - action: {}", r.action)?;
        if let Some(p) = r.protocol {
            writeln!(o, "    protocol: {p}")?;
        }
        if let Some(p) = r.not_protocol {
            writeln!(o, "    notProtocol: {p}")?;
        }
        if let Some(v) = r.ip_version {
            writeln!(o, "    ipVersion: {v}")?;
        }
        if let Some(t) = r.icmp_type {
            writeln!(o, "    icmp:\n      type: {t}")?;
        }
        write_entity(o, "source", &r.src)?;
        write_entity(o, "destination", &r.dst)?;
    }
    Ok(())
}

fn write_pol(o: &mut String, p: &Pol) -> fmt::Result {
    let kind = if p.ns.is_some() { "NetworkPolicy" } else { "GlobalNetworkPolicy" };
    writeln!(o, "---\napiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata:\n  name: {}", p.name)?;
    if let Some(ns) = &p.ns {
        writeln!(o, "  namespace: {ns}")?;
    }
    o.push_str("spec:\n");
    if let Some(t) = p.tier {
        writeln!(o, "  tier: {t}")?;
    }
    if let Some(order) = p.order {
        writeln!(o, "  order: {order}")?;
    }
    if let Some(s) = &p.selector {
        quoted(o, "  ", "selector", s)?;
    }
    if let Some(s) = &p.namespace_selector {
        quoted(o, "  ", "namespaceSelector", s)?;
    }
    if let Some(s) = &p.sa_selector {
        quoted(o, "  ", "serviceAccountSelector", s)?;
    }
    if let Some(types) = p.types {
        o.push_str("  types:\n");
        for t in types {
            writeln!(o, "  - {t}")?;
        }
    }
    write_rules(o, "ingress", &p.ingress)?;
    write_rules(o, "egress", &p.egress)
}

// ---------------------------------------------------------------------------------------------------------------
// What the policies say.

/// Orders of namespaced policies: ties (100, 100) and absent ones (last in their tier) included.
const ORDERS: [Option<f64>; 8] =
    [Some(100.0), Some(100.0), Some(200.0), Some(250.5), None, Some(300.0), Some(1000.0), Some(50.0)];

fn order(r: &mut Rng) -> Option<f64> {
    ORDERS[r.below(ORDERS.len())]
}

/// Team `(i * 7) mod teams`, so that consecutive cluster-wide policies spread over the teams. (Envs go by
/// `i / kinds`, so that each kind of policy gets every env.)
fn team(i: usize, teams: usize) -> String {
    format!("team-{:04}", (i * 7) % teams.max(1))
}

const DNS_SEL: &str = "k8s-app == 'kube-dns'";
const MONITORING_NS: &str = "kubernetes.io/metadata.name == 'monitoring'";
const KUBE_SYSTEM_NS: &str = "kubernetes.io/metadata.name == 'kube-system'";

fn security(i: usize, teams: usize) -> Pol {
    let team = team(i, teams);
    let env = ENVS[(i / 6) % ENVS.len()];
    let t = Some("security");
    match i % 6 {
        0 => Pol::gnp(t, format!("security.threat-feeds-{env}-{i}"), Some(10.0), "all()")
            .nss(format!("env == '{env}'"))
            .types(BOTH)
            .ingress(vec![
                R::new("Log").src(E::sel("feed == 'threat'")),
                R::new("Deny").src(E::sel("feed == 'threat' && feed-name != 'tor-exit'")),
            ])
            .egress(vec![R::new("Deny").dst(E::sel("feed == 'threat'").ns("global()"))]),
        1 => Pol::gnp(t, format!("security.block-metadata-{i}"), None, "!has(k8s-app)")
            .nss(format!("has(team) && team != '{team}'"))
            .types(EGRESS)
            .egress(vec![
                R::new("Deny").proto("TCP").dst(E::nets(&["169.254.169.254/32"]).with_ports(&[P::N(80)])),
                R::new("Deny").ipv(6).dst(E::nets(&["fd00:ec2::254/128"])),
            ]),
        2 => Pol::gnp(t, format!("security.no-remote-access-{team}-{i}"), Some(20.0), part_of(&team))
            .types(BOTH)
            .ingress(vec![R::new("Deny").proto("TCP").dst(E::ports(&[P::N(22), P::N(23), P::N(3389)]))])
            .egress(vec![R::new("Deny").proto("TCP").dst(E::not_nets_only(&["10.0.0.0/8"]).with_ports(&[
                P::N(22),
                P::N(23),
                P::R(5900, 5910),
            ]))]),
        3 => Pol::gnp(
            t,
            format!("security.quarantine-{team}-{i}"),
            Some(10.0),
            format!("(version == 'v2' || has(quarantine)) && {}", part_of(&team)),
        )
        .types(BOTH)
        .ingress(vec![R::new("Pass").src(E::ns_only(format!("team == '{team}'"))), R::new("Deny")])
        .egress(vec![
            R::new("Allow")
                .proto("UDP")
                .dst(E::sel(DNS_SEL).ns("projectcalico.org/name == 'kube-system'").with_ports(&[P::N(53)])),
            R::new("Pass").dst(E::sel(part_of(&team))),
            R::new("Deny"),
        ]),
        4 => Pol::gnp(t, format!("security.no-dev-to-prod-{i}"), Some(30.0), "all()")
            .nss("env == 'prod'")
            .types(INGRESS)
            .ingress(vec![
                R::new("Pass").src(E::sa_sel("trust == 'high'")),
                R::new("Log").src(E::ns_only("env in {'dev', 'staging'}")),
                R::new("Deny")
                    .proto("TCP")
                    .src(E::ns_only("env in {'dev', 'staging'}"))
                    .dst(E::not_ports_only(&[P::N(53)])),
            ]),
        _ => Pol::gnp(t, format!("security.protocols-{team}-{i}"), Some(10.0), "has(app) && !has(k8s-app)")
            .nss(format!("team == '{team}'"))
            .types(EGRESS)
            .egress(vec![
                R::new("Allow").proto("ICMP").icmp(8),
                R::new("Deny").proto("47"),
                R::new("Deny").proto("UDPLite"),
                R::new("Deny").ipv(4).not_proto("TCP").dst(E::nets(&["0.0.0.0/0"]).not_nets(&RFC1918)),
            ]),
    }
}

fn part_of(team: &str) -> String {
    format!("app.kubernetes.io/part-of == '{team}'")
}

fn compliance_global(i: usize, teams: usize) -> Pol {
    let team = team(i, teams);
    let env = ENVS[(i / 3) % ENVS.len()];
    let t = Some("compliance");
    match i % 3 {
        0 => Pol::gnp(t, format!("compliance.strict-ingress-{team}-{i}"), Some(100.0), part_of(&team))
            .nss("tier-policy == 'strict'")
            .types(INGRESS)
            .ingress(vec![
                R::new("Allow").src(E::sa(&[SA_PROMETHEUS]).ns(MONITORING_NS)).dst(E::ports(&[P::Name("metrics")])),
                R::new("Log").src(E::ns_only("env == 'dev'")),
                R::new("Deny").src(E::ns_only("env == 'dev'")),
                R::new("Pass").src(E::ns_only("all()")),
            ]),
        1 => Pol::gnp(t, format!("compliance.pci-egress-{env}-{i}"), None, "tier in {'db', 'backend'}")
            .nss(format!("tier-policy == 'strict' && env == '{env}'"))
            .types(EGRESS)
            .egress(vec![
                R::new("Pass").dst(E::nets(&RFC1918)),
                R::new("Allow")
                    .proto("TCP")
                    .dst(E::sel("role == 'saas' && vendor in {'stripe', 'aws-s3'}").with_ports(&[P::N(443)])),
                R::new("Pass").dst(E::sel("role == 'internal'").ns("global()")),
            ]),
        _ => Pol::gnp(t, format!("compliance.audit-{team}-{i}"), Some(100.0), "has(tier)")
            .nss(format!("team == '{team}'"))
            .sas("trust != 'high'")
            .types(BOTH)
            .ingress(vec![R::new("Log").src(E::sel("tier == 'frontend'").ns("all()")), R::new("Pass")])
            .egress(vec![R::new("Log").dst(E::nets(&["0.0.0.0/0"]).not_nets(&["10.0.0.0/8"])), R::new("Pass")]),
    }
}

fn platform(i: usize, teams: usize) -> Pol {
    let team = team(i, teams);
    let env = ENVS[(i / 6) % ENVS.len()];
    let t = Some("platform");
    match i % 6 {
        0 => Pol::gnp(t, format!("platform.allow-dns-{env}-{i}"), Some(100.0), "all()")
            .nss(format!("env == '{env}'"))
            .types(EGRESS)
            .egress(vec![
                R::new("Allow")
                    .proto("UDP")
                    .dst(E::sel(DNS_SEL).ns("projectcalico.org/name == 'kube-system'").with_ports(&[P::N(53)])),
                R::new("Allow").proto("TCP").dst(E::sel(DNS_SEL).ns(KUBE_SYSTEM_NS).with_ports(&[P::Name("dns-tcp")])),
                R::new("Allow").proto("17").dst(
                    E::sel("projectcalico.org/namespace == 'kube-system' && k8s-app == 'kube-dns'")
                        .with_ports(&[P::N(53)]),
                ),
            ]),
        1 => Pol::gnp(t, format!("platform.allow-scrape-{team}-{i}"), Some(200.0), "has(app) && !has(k8s-app)")
            .nss(format!("team == '{team}'"))
            .types(INGRESS)
            .ingress(vec![
                R::new("Allow").src(E::sa(&[SA_PROMETHEUS]).ns(MONITORING_NS)).dst(E::ports(&[P::Name("metrics")])),
                R::new("Allow")
                    .proto("TCP")
                    .src(E::sel("app == 'prometheus'").ns("purpose == 'monitoring'"))
                    .dst(E::ports(&[P::N(9100), P::N(9153)])),
            ]),
        2 => Pol::gnp(t, format!("platform.kube-dns-from-{env}-{i}"), Some(100.0), DNS_SEL)
            .nss(KUBE_SYSTEM_NS)
            .types(INGRESS)
            .ingress(vec![
                R::new("Allow").proto("UDP").src(E::ns_only(format!("env == '{env}'"))).dst(E::ports(&[P::N(53)])),
                R::new("Allow")
                    .proto("TCP")
                    .src(E::ns_only(format!("env == '{env}'")))
                    .dst(E::ports(&[P::N(53), P::Name("dns-tcp")])),
                R::new("Allow").proto("TCP").src(E::sa(&[SA_PROMETHEUS])).dst(E::ports(&[P::N(9153)])),
            ]),
        3 => Pol::gnp(t, format!("platform.egress-gateway-{team}-{i}"), None, "tier in {'backend', 'worker'}")
            .nss(format!("team == '{team}'"))
            .types(EGRESS)
            .egress(vec![
                R::new("Allow").proto("TCP").dst(
                    E::sel("role == 'saas' && vendor in {'github', 'datadog', 'sentry'}").with_ports(&[P::N(443)]),
                ),
                R::new("Deny").proto("TCP").dst(E::not_nets_only(&["10.0.0.0/8"]).with_ports(&[
                    P::N(25),
                    P::N(465),
                    P::N(587),
                ])),
                R::new("Allow").ipv(6).proto("TCP").dst(E::sel("role == 'saas'").with_ports(&[P::N(443)])),
            ]),
        4 => Pol::gnp(t, format!("platform.nodeports-{env}-{i}"), Some(250.5), "all()")
            .nss(format!("env == '{env}' || has(tier-policy)"))
            .types(INGRESS)
            .ingress(
                ["TCP", "UDP"]
                    .into_iter()
                    .map(|proto| {
                        R::new("Deny")
                            .proto(proto)
                            .src(E::nets(&["0.0.0.0/0"]).not_nets(&["10.0.0.0/8", "192.168.0.0/16"]))
                            .dst(E::ports(&[P::R(30000, 32767)]))
                    })
                    .collect(),
            ),
        _ => Pol::gnp(t, format!("platform.trusted-db-{team}-{i}"), Some(300.0), "all()")
            .nss(format!("team == '{team}'"))
            .sas("trust == 'high'")
            .types(EGRESS)
            .egress(vec![R::new("Allow")
                .proto("TCP")
                .dst(E::sel("tier == 'db'").ns(format!("team == '{team}'")).with_ports(&[P::Name("postgres")]))]),
    }
}

fn observability(i: usize, teams: usize) -> Pol {
    let team = team(i, teams);
    let env = ENVS[(i / 2) % ENVS.len()];
    let t = Some("observability");
    if i.is_multiple_of(2) {
        Pol::gnp(
            t,
            format!("observability.flow-logs-{env}-{i}"),
            None,
            "has(app) && projectcalico.org/orchestrator == 'k8s'",
        )
        .nss(format!("env == '{env}'"))
        .types(BOTH)
        .ingress(vec![R::new("Log").src(E::nets(&["0.0.0.0/0"])), R::new("Allow")])
        .egress(vec![R::new("Log").dst(E::sel("feed == 'threat'")), R::new("Allow")])
    } else {
        Pol::gnp(t, format!("observability.metrics-scrapers-{team}-{i}"), Some(100.0), part_of(&team))
            .types(INGRESS)
            .ingress(vec![
                R::new("Allow").src(E::sa(&[SA_PROMETHEUS])).dst(E::ports(&[P::Name("metrics")])),
                R::new("Deny").proto("TCP").dst(E::ports(&[P::N(9100)])),
                R::new("Allow"),
            ])
    }
}

fn default_global(i: usize, teams: usize) -> Pol {
    let team = team(i, teams);
    if i.is_multiple_of(2) {
        Pol::gnp(None, format!("allow-monitoring-{i}"), Some(2000.0), "app == 'prometheus'")
            .nss("purpose == 'monitoring'")
            .types(EGRESS)
            .egress(vec![
                R::new("Allow").proto("TCP").dst(E::ports(&[P::Name("metrics"), P::N(9100), P::N(9153)])),
                R::new("Allow").proto("TCP").dst(E::sel("has(app)").ns("all()").with_ports(&[P::Name("http")])),
            ])
    } else {
        Pol::gnp(Some("default"), format!("default.team-isolation-{team}-{i}"), Some(900.0), "all()")
            .nss(format!("team == '{team}'"))
            .types(INGRESS)
            .ingress(vec![
                R::new("Allow").src(E::ns_only(format!("team == '{team}'"))),
                R::new("Allow").src(E::ns_only("kubernetes.io/metadata.name in {'monitoring', 'kube-system'}")),
            ])
    }
}

/// The app tier's kinds, in rotation per namespace.
const APP_KINDS: usize = 12;

fn app_policy(r: &mut Rng, t: &Tenant, k: usize, kind: usize, teams: usize) -> Pol {
    let (fe, be, db, wk) =
        (t.app_of(Tier::Frontend), t.app_of(Tier::Backend), t.app_of(Tier::Db), t.app_of(Tier::Worker));
    let team = &t.team;
    let tier = Some("app");
    let ord = order(r);
    match kind {
        0 => Pol::np(t, tier, format!("app.{fe}-ingress-{k}"), ord, format!("app == '{fe}'")).types(INGRESS).ingress(
            vec![
                R::new("Allow").proto("TCP").src(E::ns_only("all()")).dst(E::ports(&[P::Name("http"), P::N(8081)])),
                R::new("Allow")
                    .proto("TCP")
                    .src(E::nets(&["192.168.0.0/16"]).not_nets(&["192.168.1.0/24"]))
                    .dst(E::ports(&[P::N(8080)])),
            ],
        ),
        1 => Pol::np(t, tier, format!("app.backend-from-frontend-{k}"), ord, "tier == 'backend'")
            .types(INGRESS)
            .ingress(vec![
                R::new("Allow")
                    .proto("TCP")
                    .src(E::sel("tier == 'frontend'"))
                    .dst(E::ports(&[P::Name("grpc"), P::Name("http")])),
                R::new("Allow")
                    .proto("TCP")
                    .src(E::sel("tier in {'backend', 'worker'}"))
                    .dst(E::not_ports_only(&[P::R(8000, 8079)])),
                R::new("Pass").src(E::ns_only(format!("team == '{team}'"))),
            ]),
        2 => Pol::np(t, tier, format!("app.{db}-access-{k}"), ord, "tier == 'db'")
            .types(BOTH)
            .ingress(vec![
                R::new("Allow")
                    .proto("TCP")
                    .src(E::sel("tier == 'backend'").not_sel("app in {'search', 'catalog'}"))
                    .dst(E::ports(&[P::Name("postgres")])),
                R::new("Allow").proto("6").src(E::sa(&[be])).dst(E::ports(&[P::N(5432)])),
                R::new("Log"),
                R::new("Deny"),
            ])
            .egress(vec![R::new("Deny")]),
        // No `types`: egress rules only, so Egress.
        3 => Pol::np(t, tier, format!("app.workers-{k}"), ord, "tier == 'worker' || app starts with 'ingest'").egress(
            vec![
                R::new("Allow").proto("UDP").dst(E::sel("has(app)").with_ports(&[P::Name("statsd")])),
                R::new("Allow").proto("UDP").dst(E::sel(part_of(team)).with_ports(&[P::N(8125)])),
                R::new("Allow").proto("17").dst(E::sel(DNS_SEL).ns(KUBE_SYSTEM_NS).with_ports(&[P::N(53)])),
                R::new("Pass"),
            ],
        ),
        4 => Pol::np(t, tier, format!("app.partner-egress-{k}"), ord, "tier == 'backend' && has(version)")
            .types(EGRESS)
            .egress(vec![
                R::new("Allow")
                    .proto("TCP")
                    .dst(E::sel("role == 'partner'").with_ports(&[P::N(443), P::R(8443, 8444)])),
                R::new("Allow").proto("TCP").dst(
                    E::sel("role == 'saas' && vendor in {'stripe', 'twilio'}").ns("global()").with_ports(&[P::N(443)]),
                ),
                R::new("Allow")
                    .proto("TCP")
                    .dst(E::sel("vendor starts with 'aws-'").ns("global()").with_ports(&[P::N(443)])),
                R::new("Pass"),
            ]),
        5 => {
            let other = format!("team-{:04}", (t.index / 3 + 1 + r.below(5)) % teams.max(1));
            Pol::np(t, tier, format!("app.cross-team-{k}"), ord, "tier == 'frontend' || tier == 'backend'")
                .types(INGRESS)
                .ingress(vec![
                    R::new("Allow")
                        .proto("TCP")
                        .src(
                            E::sel("tier == 'frontend'").ns(format!("team in {{'{team}', '{other}'}} && env != 'dev'")),
                        )
                        .dst(E::ports(&[P::Name("http")])),
                    R::new("Log").src(E::ns_only("!has(team)")),
                    R::new("Pass"),
                ])
        }
        6 => Pol::np(t, tier, format!("app.{be}-clients-{k}"), ord, format!("app == '{be}'")).types(INGRESS).ingress(
            vec![
                R::new("Allow").proto("TCP").src(E::sa(&[fe, wk])).dst(E::ports(&[P::Name("grpc")])),
                R::new("Allow").src(E::sa_sel("role == 'frontend' && trust != 'low'").ns(format!("team == '{team}'"))),
                R::new("Pass").src(E::sel(format!("projectcalico.org/serviceaccount in {{'{fe}', '{wk}'}}"))),
            ],
        ),
        7 => Pol::np(
            t,
            tier,
            format!("app.diameter-{k}"),
            ord,
            "has(app) && app in {'api', 'auth', 'billing', 'payments'}",
        )
        .types(INGRESS)
        .ingress(vec![
            R::new("Allow")
                .proto("SCTP")
                .src(E::sel("tier == 'backend'"))
                .dst(E::ports(&[P::Name("diameter"), P::N(3868)])),
            R::new("Allow").proto("132").src(E::ns_only(format!("env == '{}'", t.env))).dst(E::ports(&[P::N(3868)])),
            R::new("Pass"),
        ]),
        8 => Pol::np(t, tier, format!("app.ipv6-egress-{k}"), ord, "version == 'v1' || version == 'v2'")
            .types(EGRESS)
            .egress(vec![
                R::new("Allow")
                    .ipv(6)
                    .proto("TCP")
                    .dst(E::nets(&["2001:db8::/32", "2606:4700::/32"]).with_ports(&[P::N(443)])),
                R::new("Deny").ipv(6).dst(E::not_nets_only(&["fd00::/8"])),
                R::new("Pass"),
            ]),
        9 => Pol::np(t, tier, format!("app.namespace-lockdown-{k}"), ord, "all()")
            .types(BOTH)
            .ingress(vec![
                R::new("Pass").src(E::sel("all()")),
                R::new("Allow")
                    .src(E::sa(&[SA_PROMETHEUS]).ns("projectcalico.org/name == 'monitoring'"))
                    .dst(E::ports(&[P::Name("metrics")])),
            ])
            .egress(vec![
                R::new("Pass").dst(E::sel("all()")),
                R::new("Allow")
                    .proto("UDP")
                    .dst(E::sel(DNS_SEL).ns("projectcalico.org/name == 'kube-system'").with_ports(&[P::N(53)])),
                R::new("Pass").dst(E::not_nets_only(&["10.0.0.0/8"])),
            ]),
        10 => Pol::np(
            t,
            tier,
            format!("app.canary-{k}"),
            ord,
            "version == 'v2' && !(tier == 'db' || app ends with '-db')",
        )
        .types(INGRESS)
        .ingress(vec![R::new("Deny").src(E::sel("version == 'v1'")), R::new("Pass")]),
        _ => Pol::np(
            t,
            tier,
            format!("app.web-names-{k}"),
            ord,
            "app.kubernetes.io/part-of contains '-0' && tier ends with 'end'",
        )
        .types(INGRESS)
        .ingress(vec![
            R::new("Allow")
                .proto("TCP")
                .src(E::sel("app ends with '-ui' || app starts with 'web'"))
                .dst(E::ports(&[P::Name("http")])),
            R::new("Pass"),
        ]),
    }
}

/// NetworkPolicies of the `default` tier (tier omitted, or `default`): the `k`-th of a namespace, of kind `kind`.
fn default_policy(t: &Tenant, k: usize, kind: usize) -> Pol {
    match kind % 4 {
        0 => Pol::np(t, None, format!("allow-lb-{k}"), Some(500.0), "tier == 'frontend'").types(INGRESS).ingress(vec![
            R::new("Allow").proto("TCP").src(E::nets(&["172.16.0.0/12"])).dst(E::ports(&[P::Name("http")])),
            R::new("Allow").proto("TCP").src(E::sel("all()").ns("all()")).dst(E::ports(&[P::N(8081)])),
        ]),
        1 => Pol::np(t, Some("default"), format!("default.deny-threats-{k}"), Some(100.0), "all()")
            .types(EGRESS)
            .egress(vec![R::new("Deny").dst(E::sel("feed == 'threat'").ns("global()")), R::new("Pass")]),
        2 => Pol::np(t, None, format!("allow-same-namespace-{k}"), None, "all()")
            .types(INGRESS)
            .ingress(vec![R::new("Allow").src(E::sel("all()"))]),
        _ => Pol::np(t, Some("default"), format!("default.egress-saas-{k}"), Some(1000.0), "tier not in {'db'}")
            .types(EGRESS)
            .egress(vec![
                R::new("Allow").proto("TCP").dst(E::sel("role == 'saas'").ns("global()").with_ports(&[P::N(443)])),
                R::new("Allow").proto("TCP").dst(E::sel("role == 'partner'").with_ports(&[P::R(1024, 65535)])),
            ]),
    }
}

/// NetworkPolicies of the compliance tier (in strict namespaces): the `k`-th of a namespace, of kind `kind`.
fn compliance_policy(t: &Tenant, k: usize, kind: usize) -> Pol {
    let tier = Some("compliance");
    if kind.is_multiple_of(2) {
        Pol::np(t, tier, format!("compliance.db-lockdown-{k}"), Some(10.0), "tier == 'db'")
            .types(BOTH)
            .ingress(vec![
                R::new("Allow")
                    .proto("TCP")
                    .src(E::sel("tier == 'backend'").not_sel("app in {'search', 'catalog'}"))
                    .dst(E::ports(&[P::Name("postgres"), P::N(5432)])),
                R::new("Deny"),
            ])
            .egress(vec![
                R::new("Allow").proto("UDP").dst(E::sel(DNS_SEL).ns(KUBE_SYSTEM_NS).with_ports(&[P::N(53)])),
                R::new("Deny"),
            ])
    } else {
        Pol::np(t, tier, format!("compliance.frontend-tls-{k}"), None, "tier == 'frontend'").types(INGRESS).ingress(
            vec![
                R::new("Deny")
                    .proto("TCP")
                    .src(E::not_nets_only(&["10.0.0.0/8"]))
                    .dst(E::ports(&[P::N(80), P::N(8080)])),
                R::new("Pass"),
            ],
        )
    }
}

fn write_policies(o: &mut String, seed: u64, tenants: &[Tenant], policies: usize) -> fmt::Result {
    let teams = tenants.len().div_ceil(3).max(1);
    // security, compliance GNPs, platform, compliance NPs, observability, default GNPs, default NPs, app NPs.
    let n = apportion(policies, &[4, 5, 5, 3, 1, 2, 15, 65]);
    for i in 0..n[0] {
        write_pol(o, &security(i, teams))?;
    }
    for i in 0..n[1] {
        write_pol(o, &compliance_global(i, teams))?;
    }
    for i in 0..n[2] {
        write_pol(o, &platform(i, teams))?;
    }
    for i in 0..n[4] {
        write_pol(o, &observability(i, teams))?;
    }
    for i in 0..n[5] {
        write_pol(o, &default_global(i, teams))?;
    }
    // Namespaced policies: about a quarter of the namespaces have none, the others weights 1 to 4.
    let weights = crate::plan::tenant_weights(tenants, seed, S_CALICO);
    let strict: Vec<u64> = tenants.iter().map(|t| u64::from(t.strict)).collect();
    let compliance = apportion(n[3], &strict);
    let defaults = apportion(n[6], &weights);
    let apps = apportion(n[7], &weights);
    for (i, t) in tenants.iter().enumerate() {
        // Each namespace starts its rotations at its own place (most have one or two policies of a kind).
        let mut r = Rng::new(seed, S_CALICO, (t.index * 4 + 1) as u64);
        let start = r.below(2);
        for k in 0..compliance[i] {
            write_pol(o, &compliance_policy(t, k, start + k))?;
        }
        let start = r.below(4);
        for k in 0..defaults[i] {
            write_pol(o, &default_policy(t, k, start + k))?;
        }
        let start = r.below(APP_KINDS);
        for k in 0..apps[i] {
            write_pol(o, &app_policy(&mut r, t, k, (start + k) % APP_KINDS, teams))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use netpol_core::model::PolicyKind;

    fn count(y: &str, line: &str) -> usize {
        y.lines().filter(|l| *l == line).count()
    }

    /// The output loads with no diagnostic (no error, no warning), and every count is what was asked for.
    fn check(p: &Params, policies: usize, cidrs: usize) -> String {
        let y = generate_calico_yaml(p, policies, cidrs);
        let loaded = netpol_core::load::load_str("calico.yaml", &y);
        for d in loaded.diagnostics.iter().take(20) {
            eprintln!("{d}");
        }
        assert!(loaded.diagnostics.is_empty(), "{} diagnostics", loaded.diagnostics.len());
        assert!(loaded.skipped_kinds.is_empty(), "{:?}", loaded.skipped_kinds);
        let c = &loaded.cluster;
        assert_eq!(c.pods.len(), p.pods);
        assert_eq!(c.namespaces.len(), p.namespaces + 2);
        let kind = |k: PolicyKind| c.policies.iter().filter(|p| p.kind == k).count();
        assert_eq!(kind(PolicyKind::NetworkPolicy), p.policies);
        let calico = kind(PolicyKind::CalicoNetworkPolicy) + kind(PolicyKind::GlobalNetworkPolicy);
        assert_eq!(calico, policies);
        assert_eq!(c.policies.len(), p.policies + policies);
        // The three built-in tiers, then ours.
        assert_eq!(c.tiers.len(), 3 + CALICO_TIERS.len());
        for name in CALICO_TIERS {
            assert!(c.tiers.iter().any(|t| t.name == name), "tier {name}");
        }
        assert_eq!(c.network_sets.iter().map(|s| s.nets.len()).sum::<usize>(), cidrs);
        assert_eq!(count(&y, "kind: Tier"), CALICO_TIERS.len());
        // Pods with their own service account, and every explicit ServiceAccount object.
        let own_sa = c.pods.iter().filter(|p| &*p.service_account != "default").count();
        assert!(own_sa * 4 > p.pods || p.pods < 100, "{own_sa} pods with a service account");
        assert!(c.service_accounts.len() >= count(&y, "kind: ServiceAccount"));
        // The engine takes it.
        let e = netpol_core::compile::Engine::new(loaded.cluster);
        assert!(e.identities().len() > 1 || p.pods < 2);
        y
    }

    #[test]
    fn deterministic() {
        let p = Params::new(20, 200, 80);
        let y = generate_calico_yaml(&p, 100, 500);
        assert_eq!(y, generate_calico_yaml(&p, 100, 500));
        assert_ne!(y, generate_calico_yaml(&Params { seed: 2, ..p.clone() }, 100, 500));
    }

    /// Everything but the service account lines is the cluster of `generate_yaml`, and it comes first.
    #[test]
    fn extends_the_plain_cluster() {
        let p = Params::new(20, 200, 80);
        let plain = crate::generate_yaml(&p);
        let y = generate_calico_yaml(&p, 100, 500);
        let end = y.find("---\napiVersion: v1\nkind: ServiceAccount\n").unwrap();
        let base: String =
            y[..end].lines().filter(|l| !l.starts_with("  serviceAccountName: ")).flat_map(|l| [l, "\n"]).collect();
        assert_eq!(base, plain);
        assert!(y[..end].contains("  serviceAccountName: "));
    }

    #[test]
    fn loads_cleanly_small_and_degenerate() {
        check(&Params::new(20, 200, 80), 300, 1_000);
        check(&Params { seed: 7, ..Params::new(3, 40, 90) }, 50, 7);
        check(&Params::new(0, 10, 30), 40, 100);
        check(&Params::new(5, 0, 0), 10, 0);
        check(&Params::new(1, 1, 1), 0, 2);
    }

    /// The policy and CIDR counts on the 1k preset, with every feature of the grammar.
    #[test]
    fn loads_cleanly_2000_policies_10k_cidrs() {
        let p = Params::preset("1k").unwrap();
        let y = check(&p, 2_000, 10_000);
        assert_eq!(count(&y, "kind: GlobalNetworkPolicy") + count(&y, "kind: NetworkPolicy"), 2_000 + p.policies);
        let gnp = count(&y, "kind: GlobalNetworkPolicy");
        assert!((200..=400).contains(&gnp), "{gnp} GlobalNetworkPolicies");
        for needle in [
            " == '",
            " != '",
            " in {'",
            " not in {'",
            "has(",
            "!has(",
            " starts with '",
            " ends with '",
            " contains '",
            " && ",
            " || ",
            "(version == 'v2' || has(quarantine)) && ",
            " && !(",
            "\"all()\"",
            "namespaceSelector: \"global()\"",
            "serviceAccounts:",
            "        names:",
            "        selector: \"",
            "serviceAccountSelector: \"",
            "projectcalico.org/namespace == '",
            "projectcalico.org/serviceaccount in {'",
            "projectcalico.org/name == '",
            "notSelector: \"",
            "action: Allow",
            "action: Deny",
            "action: Pass",
            "action: Log",
            "notPorts:",
            "- \"30000:32767\"",
            "- metrics",
            "protocol: TCP",
            "protocol: 6\n",
            "protocol: 17\n",
            "protocol: 132\n",
            "protocol: SCTP",
            "protocol: ICMP",
            "notProtocol: TCP",
            "ipVersion: 6",
            "notNets:",
            "  order: 250.5",
            "  tier: default",
            "defaultAction: Pass",
            "kind: NetworkSet",
            "kind: GlobalNetworkSet",
            "serviceAccountName: ",
        ] {
            assert!(y.contains(needle), "`{needle}` missing");
        }
        // Orders: some tied, some absent.
        let pols: Vec<&str> = y.split("\n---\n").filter(|d| d.contains("apiVersion: projectcalico.org/v3")).collect();
        assert!(pols.iter().any(|d| d.contains("kind: NetworkPolicy") && !d.contains("  order: ")));
        assert!(count(&y, "  order: 100") > 10);
    }

    /// Slow in debug builds: `cargo test -p netpol-synth --release -- --ignored`.
    #[test]
    #[ignore]
    fn loads_cleanly_10k_preset_with_calico() {
        check(&Params::preset("10k").unwrap(), 2_000, 10_000);
    }
}
