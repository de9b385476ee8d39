//! Lint: the classic NetworkPolicy mistakes, as findings with a stable code, a severity, the object and field
//! they are about, and a fix hint. One file per rule; [`RULES`] is the catalogue.
//!
//! Rules read the compiled [`Engine`] (and through it the model); they never do I/O. Rendering (text, JSON,
//! SARIF with line numbers) happens at the edge.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::compile::{Engine, IdentityId};
use crate::model::{Direction, Origin, Peer, PodId, Policy, PolicyId};

mod broad_allow;
mod dns_egress;
mod empty_rule;
mod host_network;
mod icmp;
mod ip_block_pods;
mod named_port;
mod no_default_deny;
mod ns_label;
mod one_family;
mod peer_nothing;
mod port_not_served;
mod redundant;
mod selects_nothing;

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
    /// `NetworkPolicy ns/name` or `Namespace name`.
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
    /// Where cluster DNS lives, for NP003 (default: namespace `kube-system`, pods `k8s-app=kube-dns`).
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
            for (pid, pol) in c.policies.iter().enumerate() {
                if pol.selects(p.ns, &c.ns(p.ns).labels, &p.labels) {
                    host_network[pid].push(PodId::new(pod));
                }
            }
        }
        Ctx { engine, config, selected, host_network }
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

    /// Field path of a rule, peer or port: `spec.ingress[1]`, `spec.egress[0].to[2]`.
    pub fn rule_path(dir: Direction, rule: usize) -> String {
        format!("spec.{}[{rule}]", dir.as_str())
    }
    pub fn peer_path(dir: Direction, rule: usize, peer: usize) -> String {
        let f = if dir == Direction::Ingress { "from" } else { "to" };
        format!("spec.{}[{rule}].{f}[{peer}]", dir.as_str())
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
        Finding {
            code: info.code,
            rule: info.name,
            severity: info.severity,
            object: format!("NetworkPolicy {}", c.policy_ref(pol)),
            origin: Some(c.policy(pol).origin.clone()),
            field,
            message,
            help: help.into(),
        }
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
];

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
