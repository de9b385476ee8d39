//! Lint: the classic NetworkPolicy mistakes, as findings with a stable code, a severity, the object and field
//! they are about, and a fix hint. One file per rule; [`RULES`] is the catalogue.
//!
//! Rules read the compiled [`Engine`] (and through it the model); they never do I/O. Rendering (text, JSON,
//! SARIF with line numbers) happens at the edge.
//!
//! Calico's kinds (`projectcalico.org/v3` NetworkPolicy and GlobalNetworkPolicy, Tiers) are judged by what they
//! mean: the rules written for NetworkPolicy skip them or read their fields (`spec.selector`, `source`,
//! `destination`, `nets`), and the tier rules (NP016–NP018) follow Calico's tiers; `calico.rs` holds what the
//! Calico-aware rules share. NP022 compares the cluster with its staged view (Calico's staged policies enforced).
//!
//! Cilium's kinds (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy) have rules of their own (NP023–NP027:
//! `toFQDNs` without DNS rules, L7 rules wildcarded by L4-only rules, peer selectors limited to the own namespace,
//! broad entities, deprecated requirements); NP010 leaves them to NP026. `cilium.rs` holds what they share.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::compile::{CRule, Endpoint, Engine, IdentityId};
use crate::model::{Action, Direction, Origin, Peer, PodId, Policy, PolicyId, PolicyKind};

mod admin_dns;
mod antrea;
mod broad_allow;
mod calico;
mod cilium;
mod cilium_entity;
mod cilium_fqdn;
mod cilium_l4_l7;
mod cilium_ns_peer;
mod cilium_requires;
mod dns_egress;
mod empty_rule;
mod host_failsafe;
mod host_network;
mod icmp;
mod ip_block_pods;
mod named_port;
mod no_default_deny;
mod ns_label;
mod one_family;
mod pass_nothing;
mod peer_nothing;
mod port_not_served;
mod priority_tie;
mod redundant;
mod selects_nothing;
mod shadowed;
mod staged_cuts;
mod tier_empty;
mod tier_nothing;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "info" | "note" => Some(Severity::Info),
            "warning" | "warn" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub rule: &'static str,
    pub severity: Severity,
    /// `NetworkPolicy ns/name`, `AdminNetworkPolicy name` (a cluster-scoped kind and its name),
    /// `NetworkPolicy.projectcalico.org ns/name`, `Namespace name` or `Tier name`.
    pub object: String,
    pub origin: Option<Origin>,
    /// Field path inside the object (`spec.ingress[0].from[1]`), when the finding is about a field.
    pub field: Option<String>,
    pub message: String,
    pub help: String,
}

/// A rule of the catalogue.
pub struct RuleInfo {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    /// One paragraph: what it finds and why it is a problem.
    pub explanation: &'static str,
    pub check: fn(&Ctx, &mut Vec<Finding>),
}

/// Settings from `.netpol.yaml` (`lint:` section).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Codes to skip.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Per-code severity overrides.
    #[serde(default)]
    pub severity: BTreeMap<String, Severity>,
    /// Where cluster DNS lives, for NP003 and NP018 (default: namespace `kube-system`, pods `k8s-app=kube-dns`).
    #[serde(default)]
    pub dns: Option<DnsConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    pub namespace: String,
    pub pod_labels: BTreeMap<String, String>,
}

/// A peer of a rule of a policy, with its position (see [`Ctx::peers`]).
pub struct PeerAt<'a> {
    pub policy: PolicyId,
    pub pol: &'a Policy,
    pub dir: Direction,
    pub rule: usize,
    pub peer: usize,
    pub value: &'a Peer,
}

/// What rules get to read.
pub struct Ctx<'e> {
    pub engine: &'e Engine,
    pub config: &'e Config,
    /// Identities each policy selects (hostNetwork pods excluded, as for enforcement).
    pub selected: Vec<Vec<IdentityId>>,
    /// hostNetwork pods each policy's podSelector matches in its namespace (policies are not enforced on them).
    pub host_network: Vec<Vec<PodId>>,
    /// The addresses that stand for all others (computed on first use): see [`Addresses`].
    addresses: std::cell::OnceCell<Addresses>,
}

/// The address space cut at every block of the engine (each block holds all of a segment or none of it, so
/// every address of a segment is decided alike): what a judgement over addresses needs to try.
pub struct Addresses {
    /// An address no pod has, in each segment that has one.
    pub outside: Vec<std::net::IpAddr>,
    /// The pods' addresses other than their primary one: one (identity, pod, address) per identity and segment.
    pub secondary: Vec<(IdentityId, PodId, std::net::IpAddr)>,
}

impl<'e> Ctx<'e> {
    pub fn new(engine: &'e Engine, config: &'e Config) -> Self {
        let mut selected = vec![Vec::new(); engine.cluster.policies.len()];
        for (i, ident) in engine.identities.iter().enumerate() {
            let mut pols: Vec<PolicyId> =
                ident.ingress_policies.iter().chain(&ident.egress_policies).copied().collect();
            pols.sort_unstable();
            pols.dedup();
            for p in pols {
                selected[p.index()].push(IdentityId::new(i));
            }
        }
        let mut host_network = vec![Vec::new(); engine.cluster.policies.len()];
        let c = &engine.cluster;
        for (pod, p) in c.pods.iter().enumerate().filter(|(_, p)| p.host_network) {
            // Cilium's host policies select Nodes (the hostNetwork pods there with them), never a pod.
            for (pid, pol) in c.policies.iter().enumerate().filter(|(_, pol)| !pol.host.cilium_host) {
                if pol.selects(p.ns, &c.ns(p.ns).labels, &p.labels, || c.pod_calico_labels(p)) {
                    host_network[pid].push(PodId::new(pod));
                }
            }
        }
        Ctx { engine, config, selected, host_network, addresses: std::cell::OnceCell::new() }
    }

    /// The addresses that stand for all others: what a rule decides for one of them it decides for its whole
    /// segment (of outside addresses, or of an identity's second addresses).
    pub fn addresses(&self) -> &Addresses {
        self.addresses.get_or_init(|| {
            let e = [self.engine];
            let segs = crate::outside::Segments::new(&e);
            let outside = (0..segs.len()).filter_map(|i| segs.outside_address(i, &e)).collect();
            let c = &self.engine.cluster;
            let mut seen = std::collections::HashSet::new();
            let mut secondary = Vec::new();
            for (p, pod) in c.pods.iter().enumerate() {
                for &ip in pod.ips.iter().skip(1) {
                    let ip = ip.to_canonical();
                    let n = crate::ipranges::num(ip);
                    let seg = segs.ranges.partition_point(|r| crate::ipranges::num(r.0) <= n);
                    let ident = self.engine.pod_identity(PodId::new(p));
                    if seen.insert((ident, seg)) {
                        secondary.push((ident, PodId::new(p), ip));
                    }
                }
            }
            Addresses { outside, secondary }
        })
    }

    /// Whether compiled rule `rule` applies to a flow between a pod of identity `subject` (at its primary address)
    /// and `peer`: the subject's own side (Calico) and one of its peers match, as the evaluator decides them.
    pub fn rule_applies(&self, rule: &CRule, subject: IdentityId, peer: &Endpoint) -> bool {
        let e = self.engine;
        let me = e.ident_info(subject);
        rule.local.is_none_or(|l| e.calico_matches(l, &me))
            && (rule.peers.is_empty() || {
                let ep = e.ep_info(peer);
                rule.peers.iter().any(|&p| e.peer_matches(p, &me, &ep))
            })
    }

    /// Whether the policy's podSelector matches hostNetwork pods only (NP008 reports it; "selects no pod" and
    /// "no destination pod" would contradict it).
    pub fn selects_only_host_network(&self, pol: PolicyId) -> bool {
        self.selected[pol.index()].is_empty() && !self.host_network[pol.index()].is_empty()
    }

    /// Pod names of identities, sorted, at most `n` then "(+k more)".
    pub fn pod_list(&self, ids: &[IdentityId], n: usize) -> String {
        let names: Vec<String> = ids
            .iter()
            .flat_map(|&i| self.engine.identities[i.index()].pods.iter().map(|&p| self.engine.cluster.pod_ref(p)))
            .collect();
        Ctx::name_list(names, n)
    }

    /// Names sorted, at most `n` then "(+k more)".
    pub fn name_list(mut names: Vec<String>, n: usize) -> String {
        names.sort();
        let total = names.len();
        names.truncate(n);
        let mut s = names.join(", ");
        if total > n {
            s.push_str(&format!(" (+{} more)", total - n));
        }
        s
    }

    /// Every peer of every rule of every policy, with its position.
    pub fn peers(&self) -> impl Iterator<Item = PeerAt<'e>> + '_ {
        let c = &self.engine.cluster;
        c.policies.iter().enumerate().flat_map(|(pid, pol)| {
            [Direction::Ingress, Direction::Egress].into_iter().flat_map(move |dir| {
                pol.rules(dir).iter().enumerate().flat_map(move |(ri, rule)| {
                    rule.peers.iter().enumerate().map(move |(pi, value)| PeerAt {
                        policy: PolicyId::new(pid),
                        pol,
                        dir,
                        rule: ri,
                        peer: pi,
                        value,
                    })
                })
            })
        })
    }

    /// How findings name a policy: `NetworkPolicy ns/name`, the kind and name of a cluster-scoped policy
    /// (`AdminNetworkPolicy name`), or a Calico NetworkPolicy's kind, namespace and name
    /// (`NetworkPolicy.projectcalico.org ns/name`).
    pub fn object_name(c: &crate::model::Cluster, pol: PolicyId) -> String {
        let p = c.policy(pol);
        match p.ns() {
            Some(ns)
                if matches!(
                    p.kind,
                    PolicyKind::CalicoNetworkPolicy | PolicyKind::CiliumNetworkPolicy | PolicyKind::AntreaNetworkPolicy
                ) =>
            {
                format!("{} {}/{}", p.kind.as_str(), c.ns_name(ns), p.name)
            }
            Some(_) => format!("NetworkPolicy {}", c.policy_ref(pol)),
            None => format!("{} {}", p.kind.as_str(), p.name),
        }
    }

    /// A rule in words: `egress rule 1 "deny-rest" (Deny)`; the action for every kind but NetworkPolicy (whose
    /// rules only allow). An Antrea policy holds one rule of its object (and, for an HTTP rule, the L7 engine's
    /// Reject after it): named by its index in the object ([`Policy::position`]) and the object's action.
    pub fn rule_words(pol: &Policy, dir: Direction, rule: usize) -> String {
        let (r, rule) = match pol.kind.is_antrea() {
            true => (pol.rules(dir).first(), pol.position as usize),
            false => (pol.rules(dir).get(rule), rule),
        };
        let name = r.and_then(|r| r.name.as_ref()).map(|n| format!(" \"{n}\"")).unwrap_or_default();
        let action = match r {
            Some(r) if pol.kind != PolicyKind::NetworkPolicy => format!(" ({})", action_word(pol.kind, r.action)),
            _ => String::new(),
        };
        format!("{dir} rule {rule}{name}{action}")
    }

    /// A pod of identity `peer` as the other end of a flow whose subject is a pod of identity `subject`: its
    /// first pod, or its second when both are one identity (a pod's traffic to itself is not governed); `None`
    /// when there is no such pod.
    pub fn peer_endpoint(&self, subject: IdentityId, peer: IdentityId) -> Option<crate::compile::Endpoint> {
        let pods = &self.engine.identities[peer.index()].pods;
        let pod = if subject == peer { pods.get(1) } else { pods.first() };
        pod.map(|&pod| crate::compile::Endpoint::Pod { pod, ip: None })
    }

    /// The first pod of identity `i` (every identity has one).
    pub fn rep_pod(&self, i: IdentityId) -> Option<PodId> {
        self.engine.identities[i.index()].pods.first().copied()
    }

    /// The identities (hostNetwork pods left out) whose walk in `dir` includes compiled rule `rid` of policy
    /// `pol`: the pods the rule applies to.
    pub fn subjects_of(&self, pol: PolicyId, dir: Direction, rid: crate::compile::RuleId) -> Vec<IdentityId> {
        self.selected[pol.index()]
            .iter()
            .copied()
            .filter(|&i| {
                let ident = &self.engine.identities[i.index()];
                let rules = if dir == Direction::Ingress { &ident.ingress_rules } else { &ident.egress_rules };
                rules.contains(&rid)
            })
            .collect()
    }

    /// The identities a rule's selector peers select, and its Calico peers match at their primary address
    /// (sorted; address, domain and empty peers select none).
    pub fn selected_peers(&self, rule: &crate::compile::CRule) -> Vec<IdentityId> {
        let e = self.engine;
        let mut peers: Vec<IdentityId> = rule
            .peers
            .iter()
            .flat_map(|p| match *p {
                crate::compile::CPeer::Sel(s) => e.sel_peers[s.index()].1.iter().collect::<Vec<_>>(),
                crate::compile::CPeer::Calico(c) => e.calico_peer_of(c).pods.iter().collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }

    /// Field path of a peer's namespace selector: `spec.ingress[0].from[1].namespaceSelector` for a
    /// NetworkPolicy; for the admin kinds the `namespaces` peer itself, or a `pods` peer's `namespaceSelector`.
    pub fn ns_selector_path(pol: &Policy, dir: Direction, rule: usize, peer: usize) -> String {
        let base = Ctx::peer_path(dir, rule, peer);
        if pol.ns().is_some() {
            return format!("{base}.namespaceSelector");
        }
        match pol.rules(dir).get(rule).and_then(|r| r.peers.get(peer)) {
            Some(Peer::Selectors { pods: Some(_), .. }) => format!("{base}.pods.namespaceSelector"),
            _ => format!("{base}.namespaces"),
        }
    }

    /// Field path of the `ports` entry of the model's rule at index `entry`: `spec.ingress[0].ports[2]`. The
    /// admin kinds write `protocols` (v1alpha2) or `ports` (v1alpha1), and their named ports become one model
    /// entry per protocol (see the loader): counted back to the manifest's entry. Calico's are the destination's
    /// `ports` (`spec.ingress[0].destination.ports[1]`); without a `protocol` they are named ports, one model
    /// entry per protocol too.
    pub fn port_path(pol: &Policy, dir: Direction, rule: usize, entry: usize) -> String {
        let base = Ctx::rule_path(dir, rule);
        if calico::is_calico(pol) {
            let r = pol.rules(dir).get(rule);
            let per_protocol = r.and_then(|r| r.calico.as_ref()).is_none_or(|c| c.protocol.is_none());
            let ports = r.map_or(&[][..], |r| r.ports.as_slice());
            // Without a protocol, each (named) port is one model entry per protocol, the first TCP.
            let index = if per_protocol {
                let starts = ports.iter().take(entry + 1).filter(|p| p.protocol == crate::portset::Protocol::Tcp);
                starts.count().saturating_sub(1)
            } else {
                entry
            };
            return format!("{base}.destination.ports[{index}]");
        }
        // Antrea's `ports` are NetworkPolicy's, entry for entry.
        if pol.ns().is_some() || pol.kind.is_antrea() {
            return format!("{base}.ports[{entry}]");
        }
        let field = if pol.kind == PolicyKind::ClusterNetworkPolicy { "protocols" } else { "ports" };
        let ports = pol.rules(dir).get(rule).map_or(&[][..], |r| r.ports.as_slice());
        // A named port is three model entries (TCP, UDP, SCTP): only its TCP entry starts a manifest entry.
        let starts = |p: &crate::model::PolicyPort| {
            !matches!(p.port, crate::model::PortMatch::Named(_)) || p.protocol == crate::portset::Protocol::Tcp
        };
        let index = ports.iter().take(entry + 1).filter(|p| starts(p)).count().saturating_sub(1);
        format!("{base}.{field}[{index}]")
    }

    /// Field path of a rule, peer or port: `spec.ingress[1]`, `spec.egress[0].to[2]`.
    pub fn rule_path(dir: Direction, rule: usize) -> String {
        format!("spec.{}[{rule}]", dir.as_str())
    }
    pub fn peer_path(dir: Direction, rule: usize, peer: usize) -> String {
        let f = if dir == Direction::Ingress { "from" } else { "to" };
        format!("spec.{}[{rule}].{f}[{peer}]", dir.as_str())
    }

    /// Field path of rule `rule` of policy `pol` in its manifest: [`Ctx::rule_path`], but an Antrea policy holds one
    /// rule of its object, at index [`Policy::position`] there.
    pub fn rule_field(pol: &Policy, dir: Direction, rule: usize) -> String {
        Ctx::rule_path(dir, if pol.kind.is_antrea() { pol.position as usize } else { rule })
    }

    /// A field path of an Antrea policy (one rule of its object, written by a rule that reads the model) as the
    /// object has it: the rule's index is its index in the object, the subject is `appliedTo` (the policy's, or
    /// the rule's), and a peer's index is left out (groups and `namespaces` peers are inlined and split by the
    /// loader, so the model's peers are not the manifest's).
    pub fn antrea_field(pol: &Policy, field: &str) -> String {
        let mut out = String::new();
        let mut rest = field;
        if let Some(tail) = rest.strip_prefix("spec.podSelector").or_else(|| rest.strip_prefix("spec.subject")) {
            return format!("spec.appliedTo{tail}");
        }
        for dir in [Direction::Ingress, Direction::Egress] {
            let head = format!("spec.{}[", dir.as_str());
            if let Some(after) = rest.strip_prefix(head.as_str()) {
                if let Some(close) = after.find(']') {
                    out = Ctx::rule_path(dir, pol.position as usize);
                    rest = &after[close + 1..];
                    for peers in [".from[", ".to["] {
                        if let Some(after) = rest.strip_prefix(peers) {
                            if let Some(close) = after.find(']') {
                                out.push_str(&peers[..peers.len() - 1]);
                                rest = &after[close + 1..];
                            }
                        }
                    }
                }
            }
        }
        out.push_str(rest);
        out
    }

    pub fn policy_finding(
        &self,
        info: &RuleInfo,
        pol: PolicyId,
        field: Option<String>,
        message: String,
        help: impl Into<String>,
    ) -> Finding {
        let c = &self.engine.cluster;
        let p = c.policy(pol);
        let field = match field {
            Some(f) if p.kind.is_antrea() => Some(Ctx::antrea_field(p, &f)),
            f => f,
        };
        Finding {
            code: info.code,
            rule: info.name,
            severity: info.severity,
            object: Ctx::object_name(c, pol),
            origin: Some(c.policy(pol).origin.clone()),
            field,
            message,
            help: help.into(),
        }
    }
}

/// An action as the policy's kind spells it (`Accept` in v1alpha2, `Allow` in v1alpha1).
pub fn action_word(kind: PolicyKind, action: Action) -> &'static str {
    match action {
        Action::Allow if kind == PolicyKind::ClusterNetworkPolicy => "Accept",
        Action::Allow => "Allow",
        Action::Deny if kind.is_antrea() => "Drop",
        Action::Deny => "Deny",
        Action::Reject => "Reject",
        Action::Pass => "Pass",
        Action::Log => "Log",
    }
}

/// The catalogue, in code order.
pub const RULES: &[&RuleInfo] = &[
    &selects_nothing::RULE,
    &peer_nothing::RULE,
    &dns_egress::RULE,
    &ns_label::RULE,
    &named_port::RULE,
    &port_not_served::RULE,
    &ip_block_pods::RULE,
    &host_network::RULE,
    &no_default_deny::RULE,
    &broad_allow::RULE,
    &redundant::RULE,
    &empty_rule::RULE,
    &icmp::RULE,
    &one_family::RULE,
    &priority_tie::RULE,
    &shadowed::RULE,
    &pass_nothing::RULE,
    &admin_dns::RULE,
    &tier_nothing::RULE,
    &tier_empty::RULE,
    &host_failsafe::RULE,
    &staged_cuts::RULE,
    &cilium_fqdn::RULE,
    &cilium_l4_l7::RULE,
    &cilium_ns_peer::RULE,
    &cilium_entity::RULE,
    &cilium_requires::RULE,
];

/// Drops repeated findings, keeping the first: an Antrea object lowers to one policy per rule and `appliedTo`
/// entry (and per namespace for `namespaces` peers), and a rule that judges them one by one says the same thing
/// of the object's rule once per split.
pub fn dedupe(found: &mut Vec<Finding>) {
    let mut seen = std::collections::HashSet::new();
    found.retain(|f| seen.insert((f.code, f.object.clone(), f.field.clone(), f.message.clone())));
}

/// Runs every enabled rule; findings are sorted by file, document, code.
pub fn lint(engine: &Engine, config: &Config) -> Vec<Finding> {
    let ctx = Ctx::new(engine, config);
    let mut out = Vec::new();
    for rule in RULES {
        if config.disable.iter().any(|d| d.eq_ignore_ascii_case(rule.code) || d == rule.name) {
            continue;
        }
        let mut found = Vec::new();
        (rule.check)(&ctx, &mut found);
        dedupe(&mut found);
        if let Some(sev) = config.severity.get(rule.code) {
            for f in &mut found {
                f.severity = *sev;
            }
        }
        out.extend(found);
    }
    out.sort_by(|a, b| {
        let key = |f: &Finding| {
            (f.origin.as_ref().map(|o| (o.file.clone(), o.document, o.item)), f.object.clone(), f.code, f.field.clone())
        };
        key(a).cmp(&key(b))
    });
    out
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use crate::load::load_str;

    pub fn run(rule: &RuleInfo, yaml: &str) -> Vec<Finding> {
        let loaded = load_str("lint.yaml", yaml);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let e = Engine::new(loaded.cluster);
        let config = Config::default();
        let ctx = Ctx::new(&e, &config);
        let mut out = Vec::new();
        (rule.check)(&ctx, &mut out);
        dedupe(&mut out);
        out
    }

    /// [`run`] for inputs the loader warns about (deprecated Cilium fields): errors still fail the test.
    pub fn run_warned(rule: &RuleInfo, yaml: &str) -> Vec<Finding> {
        let loaded = load_str("lint.yaml", yaml);
        let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.severity == crate::load::Severity::Error).collect();
        assert!(errors.is_empty(), "{errors:?}");
        let e = Engine::new(loaded.cluster);
        let config = Config::default();
        let ctx = Ctx::new(&e, &config);
        let mut out = Vec::new();
        (rule.check)(&ctx, &mut out);
        out
    }

    /// Namespaces `a` (team=a) and `b` (team=b), pods a/web (app=web, port http 8080), a/db (app=db, 5432),
    /// b/client (app=client), kube-system/coredns (k8s-app=kube-dns, 53 UDP/TCP).
    pub const BASE: &str = r#"
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
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {containers: [{name: c, ports: [{name: pg, containerPort: 5432}]}]}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: b, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec: {containers: [{name: c, ports: [{name: dns, containerPort: 53, protocol: UDP}, {name: dns-tcp, containerPort: 53}]}]}
status: {podIP: 10.0.9.10}
"#;

    pub fn with(policies: &str) -> String {
        format!("{BASE}\n---\n{policies}")
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{run, with};
    use super::RULES;

    /// Admin-tier and Baseline-tier policies of every kind, written the way they are meant: the rules written for
    /// NetworkPolicy (NP001 to NP014) find nothing wrong with them. Only NP009 speaks, for egress outside
    /// namespace a: the Baseline deny-all covers ingress everywhere, and ping-guard's deny of every address is
    /// namespace a's default deny for egress.
    #[test]
    fn admin_policies_give_the_networkpolicy_rules_nothing_to_say() {
        let yaml = with(
            r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: ping-guard}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {matchLabels: {team: a}}}
  ingress:
  - {name: web, action: Accept, from: [{namespaces: {matchLabels: {team: b}}}], protocols: [{destinationNamedPort: http}]}
  - {name: no-telnet, action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 23}}}]}
  egress:
  - {name: partner, action: Pass, to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}}]}
  - {name: no-internet, action: Deny, to: [{networks: ["0.0.0.0/0", "::/0"]}]}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: icmp-and-dns}
spec:
  priority: 1
  subject: {pods: {namespaceSelector: {}, podSelector: {}}}
  egress:
  - name: dns
    action: Allow
    to: [{pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app: kube-dns}}}}]
    ports: [{namedPort: dns}, {portNumber: {protocol: TCP, port: 53}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - {name: deny-all, action: Deny, from: [{namespaces: {}}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: a, labels: {app: agent}}
spec: {hostNetwork: true, containers: [{name: c}]}
status: {podIP: 192.168.1.10}
"#,
        );
        for rule in RULES.iter().filter(|r| r.code <= "NP014") {
            let f = run(rule, &yaml);
            if rule.code == "NP009" {
                let objects: Vec<&str> = f.iter().map(|f| f.object.as_str()).collect();
                assert_eq!(objects, ["Namespace b", "Namespace kube-system"], "{f:?}");
                assert!(f.iter().all(|f| f.message.contains("default-deny egress")), "{f:?}");
            } else {
                assert!(f.is_empty(), "{}: {f:?}", rule.code);
            }
        }
    }

    /// Calico policies written the way they are meant (a default deny per namespace in the default tier, a
    /// security tier that passes what it does not decide, DNS allowed, ICMP allowed by a policy named for it, a
    /// named port without a protocol, an egress Allow of the partners' network set): the rules written for
    /// NetworkPolicy (NP001 to NP014) find nothing wrong with them, and only NP009 speaks, for the namespaces the
    /// default deny does not cover.
    #[test]
    fn calico_policies_give_the_networkpolicy_rules_nothing_to_say() {
        let yaml = with(
            r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partners, labels: {role: partner}}
spec: {nets: [192.0.2.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.allow-ping}
spec:
  tier: security
  order: 10
  selector: all()
  namespaceSelector: team == 'a'
  ingress:
  - {action: Allow, protocol: ICMP, source: {namespaceSelector: all()}}
  - {action: Deny, protocol: TCP, destination: {ports: [23]}}
  - {action: Log}
  egress:
  - {action: Allow, protocol: UDP, destination: {namespaceSelector: projectcalico.org/name == 'kube-system', selector: k8s-app == 'kube-dns', ports: [53]}}
  - {action: Allow, protocol: TCP, destination: {namespaceSelector: projectcalico.org/name == 'kube-system', selector: k8s-app == 'kube-dns', ports: [53]}}
  - {action: Allow, destination: {selector: role == 'partner', namespaceSelector: global()}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: default-deny, namespace: a}
spec:
  selector: all()
  types: [Ingress, Egress]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: a}
spec:
  order: 100
  selector: app == 'web'
  ingress:
  - action: Allow
    source: {namespaceSelector: team == 'b', selector: app == 'client'}
    destination: {ports: [http]}
  - action: Allow
    protocol: TCP
    source: {selector: app == 'db'}
    destination: {ports: [8080]}
  egress:
  - {action: Allow, protocol: TCP, destination: {selector: app == 'db', ports: [pg]}}
"#,
        );
        for rule in RULES.iter().filter(|r| r.code <= "NP014") {
            let f = run(rule, &yaml);
            if rule.code == "NP009" {
                let objects: Vec<&str> = f.iter().map(|f| f.object.as_str()).collect();
                assert_eq!(
                    objects,
                    ["Namespace b", "Namespace b", "Namespace kube-system", "Namespace kube-system"],
                    "{f:?}"
                );
            } else {
                assert!(f.is_empty(), "{}: {f:?}", rule.code);
            }
        }
    }

    #[test]
    fn codes_are_unique_and_in_order() {
        let codes: Vec<&str> = RULES.iter().map(|r| r.code).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted);
    }
}
