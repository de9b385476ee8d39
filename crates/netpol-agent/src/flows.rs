//! The agent's flow log and self-check: every new connection (and drop) through the node is traced by the kernel
//! (`netpol_nft::observe`: a table of the agent's, `netpol_trace`, marks `ct state new` packets for `nft monitor
//! trace`), each trace becomes one record with the rules that decided it on this node — the walk of every tier
//! ([`tier_walk`]: each matched rule's comment and verdict, named through the programmed model's [`Names`]) —,
//! written as JSON Lines in netpol's neutral flow schema (`tiers`) or as Hubble-compatible JSON (`{"flow": {...}}`,
//! `*_allowed_by`/`*_denied_by` and `netpol_tiers`), and, for one in N of the flows judged here ([`Sampler`]),
//! compared with the engine's verdict of the same flow on this node's sides: a disagreement is counted and logged
//! with both explanations.
//!
//! Both formats are what `netpol flows replay` and `netpol generate` read (tested by reading them back).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use netpol_core::compile::{Endpoint, Engine, FlowInfo};
use netpol_core::model::{Direction, PolicyId};
use netpol_core::portset::Protocol;
use netpol_nft::apply::{nft_table_rules, System};
use netpol_nft::observe::{renamed, stale_for, trace_on_script, traced_handle, FlowRecord, TraceParser};
use serde_json::{json, Value};

use crate::Programmer;

/// The flow log's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// netpol's neutral flow record (what `netpol flows replay` documents).
    Netpol,
    /// Hubble's `hubble observe -o json` lines.
    Hubble,
}

/// The kernel's verdict of a traced flow on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Allowed,
    Denied,
    /// Audit mode: accepted, but a rule that would drop it logged it.
    WouldDeny,
}

/// What the kernel did, from the record (in audit mode a `np-drop` comment on an accepting rule is a would-be drop).
pub fn kernel_verdict(r: &FlowRecord) -> Kernel {
    if r.verdict == "deny" {
        Kernel::Denied
    } else if r.allowed_by.iter().any(|c| c.starts_with("np-drop")) || r.matched.iter().any(|m| m.audit) {
        Kernel::WouldDeny
    } else {
        Kernel::Allowed
    }
}

/// UTC time as RFC 3339 with microseconds, from the system clock.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Whether the flow is judged on this node: it has a port, and a side here (a source or a destination among
/// `local`, the node's pod addresses).
pub fn judged_here(local: &BTreeSet<IpAddr>, r: &FlowRecord) -> bool {
    let has_port = Protocol::parse_loose(&r.protocol).is_some_and(|p| p.has_ports()) && r.port.is_some();
    let here = |a: &str| a.parse().is_ok_and(|ip| local.contains(&ip));
    has_port && (here(&r.src) || here(&r.dst))
}

/// The engine's verdict of the flow on this node's sides (the egress of a local source, the ingress of a local
/// destination: `local`, the node's pod addresses), and the explanation; `None` when the flow is not judged here
/// (no local side, no port: [`judged_here`]).
pub fn engine_verdict(engine: &Engine, local: &BTreeSet<IpAddr>, r: &FlowRecord) -> Option<(bool, String)> {
    let proto = Protocol::parse_loose(&r.protocol).filter(|p| p.has_ports())?;
    let port = r.port?;
    let (src_ip, dst_ip) = (r.src.parse().ok()?, r.dst.parse().ok()?);
    let (src_local, dst_local) = (local.contains(&src_ip), local.contains(&dst_ip));
    if !src_local && !dst_local {
        return None;
    }
    let (s, d) = (engine.endpoint_for_ip(src_ip), engine.endpoint_for_ip(dst_ip));
    let side = |dir| engine.allowed_direction(&s, &d, FlowInfo::default(), proto, port, dir);
    let allowed = (!src_local || side(Direction::Egress)) && (!dst_local || side(Direction::Ingress));
    Some((allowed, engine.explain(&s, &d, proto, port).render()))
}

/// Which new flows the self-check compares (`netpol agent --self-check-sample N`): one in `every` of the flows
/// judged on this node, counted in the order they are traced — the first, the `every + 1`th, ... (deterministic:
/// no clock, no randomness). `every` 1 (or 0) checks every flow.
#[derive(Clone, Debug)]
pub struct Sampler {
    every: u64,
    seen: u64,
}

impl Sampler {
    pub fn new(every: u64) -> Sampler {
        Sampler { every: every.max(1), seen: 0 }
    }

    /// Counts one flow; whether it is checked.
    pub fn sample(&mut self) -> bool {
        let take = self.seen.is_multiple_of(self.every);
        self.seen = self.seen.wrapping_add(1);
        take
    }
}

/// Replaces the shortened comments of a record (`np:#hash`) by their full text (`Ruleset::long_comments`).
pub fn expand_comments(r: &mut FlowRecord, long: &BTreeMap<String, String>) {
    if long.is_empty() {
        return;
    }
    let expand = |c: &mut String| {
        if let Some(full) = long.get(c.as_str()) {
            *c = full.clone();
        }
    };
    r.allowed_by.iter_mut().for_each(expand);
    r.dropped_by.iter_mut().for_each(expand);
    r.matched.iter_mut().for_each(|m| expand(&mut m.comment));
}

impl Programmer {
    /// The shortened comments of the ruleset the kernel holds, and their full text.
    pub fn long_comments(&self) -> BTreeMap<String, String> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().map(|s| s.long_comments.clone()).unwrap_or_default()
    }
}

fn end(engine: Option<&Engine>, ip: &str, hubble: bool) -> Value {
    let pod = engine.and_then(|e| ip.parse().ok().map(|a| (e, e.endpoint_for_ip(a))));
    match pod {
        Some((e, Endpoint::Pod { pod, .. })) => {
            let p = e.cluster().pod(pod);
            let ns = &e.cluster().ns(p.ns).name;
            if hubble {
                let mut labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("k8s:{k}={v}")).collect();
                labels.push(format!("k8s:io.kubernetes.pod.namespace={ns}"));
                json!({"namespace": ns, "pod_name": p.name, "labels": labels})
            } else {
                json!({"namespace": ns, "pod": p.name, "ip": ip, "labels": p.labels.to_map()})
            }
        }
        _ if hubble => json!({"identity": 2, "labels": ["reserved:world"]}),
        _ => json!(ip),
    }
}

/// A policy a flow-log record names: as the ruleset's comments name it (`ns/name`, `cnp/name`,
/// `caliconetworkpolicy/ns/name`: [`netpol_core::model::PolicyKey`]'s text), with its kind and namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyName {
    /// The reference the comments carry (`n/allow-web`, `cnp/guard`).
    pub reference: String,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
    /// The kind (`NetworkPolicy`, `ClusterNetworkPolicy`, `CiliumNetworkPolicy`, ...), `None` when no model names
    /// it and the reference does not tell.
    pub kind: Option<String>,
}

impl PolicyName {
    /// `namespace/name`, or `name` for a cluster-scoped policy.
    pub fn display(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    fn json(&self) -> Value {
        let mut v = json!({"policy": self.display(), "ref": self.reference, "name": self.name});
        if !self.namespace.is_empty() {
            v["namespace"] = json!(self.namespace);
        }
        if let Some(k) = &self.kind {
            v["kind"] = json!(k);
        }
        v
    }

    /// Hubble's `Policy` (`name`, `namespace`, `kind`, and the labels Cilium gives a policy's rules).
    fn hubble(&self) -> Value {
        let kind = self.kind.as_deref().unwrap_or("NetworkPolicy");
        let mut labels = vec![
            format!("k8s:io.cilium.k8s.policy.derived-from={kind}"),
            format!("k8s:io.cilium.k8s.policy.name={}", self.name),
        ];
        if !self.namespace.is_empty() {
            labels.push(format!("k8s:io.cilium.k8s.policy.namespace={}", self.namespace));
        }
        json!({"name": self.name, "namespace": self.namespace, "kind": kind, "labels": labels})
    }
}

/// The short kind names of the cluster-scoped kinds in policy references (`PolicyKind::short`).
const CLUSTER_KINDS: [(&str, &str); 6] = [
    ("cnp", "ClusterNetworkPolicy"),
    ("anp", "AdminNetworkPolicy"),
    ("banp", "BaselineAdminNetworkPolicy"),
    ("gnp", "GlobalNetworkPolicy"),
    ("ccnp", "CiliumClusterwideNetworkPolicy"),
    ("acnp", "ClusterNetworkPolicy.crd.antrea.io"),
];

/// The short kind names of the namespaced kinds written before the namespace (`kind/ns/name`).
const NAMESPACED_KINDS: [(&str, &str); 3] = [
    ("caliconetworkpolicy", "NetworkPolicy.projectcalico.org"),
    ("ciliumnetworkpolicy", "CiliumNetworkPolicy"),
    ("annp", "NetworkPolicy.crd.antrea.io"),
];

/// A policy reference as the comments write it, read without a model: `ns/name` (a NetworkPolicy),
/// `short/name` (a cluster-scoped kind), `short/ns/name`.
pub fn parse_reference(reference: &str) -> PolicyName {
    let parts: Vec<&str> = reference.split('/').collect();
    let (namespace, name, kind) = match parts.as_slice() {
        [short, ns, name] => {
            let kind = NAMESPACED_KINDS.iter().find(|(s, _)| s == short).map(|(_, k)| k.to_string());
            (ns.to_string(), name.to_string(), kind)
        }
        [first, name] => match CLUSTER_KINDS.iter().find(|(s, _)| s == first) {
            Some((_, k)) => (String::new(), name.to_string(), Some(k.to_string())),
            None => (first.to_string(), name.to_string(), Some("NetworkPolicy".to_string())),
        },
        _ => (String::new(), reference.to_string(), None),
    };
    PolicyName { reference: reference.to_string(), namespace, name, kind }
}

/// `np:<policy_ref>/<direction>/<index> <tag>` → (policy_ref, direction, index).
pub fn parse_rule_comment(comment: &str) -> Option<(&str, Direction, u32)> {
    let (path, _) = netpol_nft::ruleset::parse_comment(comment)?;
    let (rest, index) = path.rsplit_once('/')?;
    let (reference, dir) = rest.rsplit_once('/')?;
    let dir = match dir {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        _ => return None,
    };
    Some((reference, dir, index.parse().ok()?))
}

/// The engine's names for what the comments reference: policies by reference, tiers in evaluation order. Built
/// once per programmed model ([`Names::new`]), asked for every record.
pub struct Names {
    engine: Arc<Engine>,
    by_ref: HashMap<String, Vec<PolicyId>>,
    /// Per tier of `Cluster::tiers` (the built-in ones when it has none): its position in evaluation order, its
    /// name, and whether it ends in deny.
    tiers: Vec<(usize, String, bool)>,
}

/// What the model says of a rule a comment names.
struct RuleInfo {
    policy: PolicyName,
    tier: (usize, String),
    /// Its index in the object (an Antrea object's rule: the policy's position).
    rule: usize,
    field: String,
    action: netpol_core::model::Action,
}

impl Names {
    pub fn new(engine: Arc<Engine>) -> Names {
        let c = engine.cluster();
        let mut by_ref: HashMap<String, Vec<PolicyId>> = HashMap::new();
        for i in 0..c.policies.len() {
            let id = PolicyId::new(i);
            by_ref.entry(c.policy_ref(id)).or_default().push(id);
        }
        let (evaluated, positions) = netpol_core::eval::tiers(&c.tiers);
        let tiers = positions
            .iter()
            .filter_map(|t| {
                let tier = evaluated.get(t.index())?;
                Some((t.index(), tier.name.to_string(), tier.end == netpol_core::eval::TierEnd::Deny))
            })
            .collect();
        Names { engine, by_ref, tiers }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn policy_name(&self, id: PolicyId) -> PolicyName {
        let c = self.engine.cluster();
        let p = c.policy(id);
        PolicyName {
            reference: c.policy_ref(id),
            namespace: p.ns().map(|ns| c.ns_name(ns).to_string()).unwrap_or_default(),
            name: p.name.clone(),
            kind: Some(p.kind.as_str().to_string()),
        }
    }

    fn tier_of(&self, id: PolicyId) -> Option<&(usize, String, bool)> {
        self.tiers.get(self.engine.cluster().policy(id).tier.index())
    }

    /// The rule `reference`/`dir`/`index` names. A reference may name several policies (a Cilium object's parts
    /// in their tiers, an Antrea object's rules): the one whose rule's action is `seen` (what the trace shows
    /// the rule did) is taken first.
    fn rule(&self, reference: &str, dir: Direction, index: u32, seen: Option<&str>) -> Option<RuleInfo> {
        use netpol_core::model::Action;
        let c = self.engine.cluster();
        let ids = self.by_ref.get(reference)?;
        let with_rule = || ids.iter().copied().filter(|&id| c.policy(id).rules(dir).len() > index as usize);
        let agrees = |id: PolicyId| {
            let a = c.policy(id).rules(dir)[index as usize].action;
            seen.is_some_and(|s| s == a.as_str() || (s == "deny" && a == Action::Reject))
        };
        let id = with_rule().find(|&id| agrees(id)).or_else(|| with_rule().next())?;
        let p = c.policy(id);
        let ri = index as usize;
        let r = &p.rules(dir)[ri];
        let in_object = if p.kind.is_antrea() { p.position as usize } else { ri };
        let d = dir.as_str();
        // As explanations name it (`verdict.rs`): a Cilium rule's name is its field path, its deny rules are its
        // `ingressDeny`/`egressDeny`.
        let field = match r.name.as_deref() {
            Some(n) if p.kind.is_cilium() => n.to_string(),
            _ if p.kind.is_cilium() && r.action == Action::Deny => format!("spec.{d}Deny[{ri}]"),
            _ => format!("spec.{d}[{in_object}]"),
        };
        let (pos, name, _) = self.tier_of(id)?.clone();
        Some(RuleInfo { policy: self.policy_name(id), tier: (pos, name), rule: in_object, field, action: r.action })
    }
}

/// One step of a direction's walk of the tiers, as the kernel's trace shows it: the rule of a tier that matched
/// (and passed, logged, allowed or denied), or a tier's default deny (`default`: the tier's policies select the
/// subject and none of its rules decided), or a check of the node's own (`reason`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierStep {
    /// `None` for the node's own checks (an unknown local pod, encapsulation, an invalid packet).
    pub direction: Option<Direction>,
    /// The tier's name (`Admin`, `NetworkPolicy`, `Baseline`, Calico's, Antrea's and Cilium's tiers); `None` when
    /// neither the model nor the comment tells.
    pub tier: Option<String>,
    /// The rule's policy (for a tier's default deny: the tier's policies that select the subject).
    pub policies: Vec<PolicyName>,
    /// The rule's index in its policy's rules of the direction (`None` for a default deny).
    pub rule: Option<usize>,
    /// The rule's field path in its object (`spec.ingress[0]`), when the model has it.
    pub field: Option<String>,
    /// allow, deny, pass, log or reject.
    pub action: String,
    /// A tier's default deny.
    pub default: bool,
    /// Audit mode: the rule (or the tier's end) would have dropped the packet, and accepted it.
    pub audit: bool,
    /// What a check of the node's own is (`unknown-local-pod`, `encapsulation`, `invalid`, `own-node`, a host
    /// endpoint's check).
    pub reason: Option<String>,
}

impl TierStep {
    pub fn json(&self) -> Value {
        let mut v = json!({"action": self.action});
        if let Some(d) = self.direction {
            v["direction"] = json!(d.as_str());
        }
        if let Some(t) = &self.tier {
            v["tier"] = json!(t);
        }
        if let [one] = self.policies.as_slice() {
            if let Value::Object(m) = one.json() {
                for (k, x) in m {
                    v[k] = x;
                }
            }
        } else if !self.policies.is_empty() {
            v["policies"] = Value::Array(self.policies.iter().map(PolicyName::json).collect());
        }
        if let Some(r) = self.rule {
            v["rule"] = json!(r);
        }
        if let Some(f) = &self.field {
            v["field"] = json!(f);
        }
        if self.default {
            v["default"] = json!(true);
        }
        if self.audit {
            v["audit"] = json!(true);
        }
        if let Some(r) = &self.reason {
            v["reason"] = json!(r);
        }
        v
    }
}

/// What a rule did, from the trace's verdict: `return` and `accept` allow, `drop` denies, a `goto` to the reject
/// chain rejects, any other `goto`/`jump` passes to the later tiers' chain, `continue` logs; an audit rule's
/// accept is a deny that was not enforced.
fn traced_action(verdict: &str, audit: bool) -> &'static str {
    if audit {
        return "deny";
    }
    let mut words = verdict.split_whitespace();
    match (words.next(), words.next()) {
        (Some("return" | "accept"), _) => "allow",
        (Some("drop"), _) => "deny",
        (Some("goto"), Some(netpol_nft::ruleset::REJECT_CHAIN)) => "reject",
        (Some("goto" | "jump"), _) => "pass",
        _ => "log",
    }
}

/// The walk of every tier the traced packet took on this node, per direction, from the rules it matched
/// (`FlowRecord::matched`, comments already expanded): each `np:` rule named by the model (`names`: kind, tier,
/// field path, action) or, without one, by what its comment and the trace's verdict say; each tier's default
/// deny (`np-drop:<direction> policies`) placed in the first deny-ending tier of those policies past the last
/// tier the walk passed from.
pub fn tier_walk(r: &FlowRecord, names: Option<&Names>) -> Vec<TierStep> {
    let mut out: Vec<TierStep> = Vec::new();
    // Per direction, the evaluation position of the tier of the last pass.
    let mut passed: [Option<usize>; 2] = [None, None];
    let slot = |d: Direction| usize::from(d == Direction::Egress);
    for m in &r.matched {
        let c = m.comment.as_str();
        let traced = traced_action(&m.verdict, m.audit);
        if let Some((reference, dir, index)) = parse_rule_comment(c) {
            let info = names.and_then(|n| n.rule(reference, dir, index, Some(traced)));
            let step = match info {
                Some(i) => {
                    if traced == "pass" {
                        passed[slot(dir)] = Some(i.tier.0);
                    }
                    TierStep {
                        direction: Some(dir),
                        tier: Some(i.tier.1),
                        policies: vec![i.policy],
                        rule: Some(i.rule),
                        field: Some(i.field),
                        action: if m.audit { "deny".to_string() } else { i.action.as_str().to_string() },
                        audit: m.audit,
                        ..TierStep::default()
                    }
                }
                None => {
                    let policy = parse_reference(reference);
                    let tier = match policy.kind.as_deref() {
                        Some("NetworkPolicy") => Some("NetworkPolicy".to_string()),
                        Some("AdminNetworkPolicy") => Some("Admin".to_string()),
                        Some("BaselineAdminNetworkPolicy") => Some("Baseline".to_string()),
                        _ => None,
                    };
                    TierStep {
                        direction: Some(dir),
                        tier,
                        policies: vec![policy],
                        rule: Some(index as usize),
                        action: traced.to_string(),
                        audit: m.audit,
                        ..TierStep::default()
                    }
                }
            };
            out.push(step);
            continue;
        }
        if let Some(rest) = c.strip_prefix("np-drop:") {
            let (first, list) = rest.split_once(' ').unwrap_or((rest, ""));
            let dir = match first {
                "ingress" => Some(Direction::Ingress),
                "egress" => Some(Direction::Egress),
                _ => None,
            };
            let Some(dir) = dir else {
                out.push(TierStep {
                    action: "deny".into(),
                    audit: m.audit,
                    reason: Some(rest.to_string()),
                    ..TierStep::default()
                });
                continue;
            };
            let refs: Vec<&str> = list.split(',').filter(|n| !n.is_empty()).collect();
            let (tier, policies) = match names {
                Some(n) => {
                    // The policies' tiers that end in deny, in evaluation order; the first one past the last pass.
                    let mut tiers: Vec<(usize, String, Vec<PolicyName>)> = Vec::new();
                    for reference in &refs {
                        for &id in n.by_ref.get(*reference).into_iter().flatten() {
                            let Some((pos, name, deny)) = n.tier_of(id) else { continue };
                            if !*deny {
                                continue;
                            }
                            let pn = n.policy_name(id);
                            match tiers.iter_mut().find(|t| t.0 == *pos) {
                                Some(t) if !t.2.contains(&pn) => t.2.push(pn),
                                Some(_) => {}
                                None => tiers.push((*pos, name.clone(), vec![pn])),
                            }
                        }
                    }
                    tiers.sort_by_key(|t| t.0);
                    let after = passed[slot(dir)];
                    let pick = tiers.iter().position(|t| after.is_none_or(|p| t.0 > p)).unwrap_or(0);
                    match tiers.into_iter().nth(pick) {
                        Some((_, name, pols)) => (Some(name), pols),
                        None => (None, refs.iter().map(|r| parse_reference(r)).collect()),
                    }
                }
                None => {
                    let pols: Vec<PolicyName> = refs.iter().map(|r| parse_reference(r)).collect();
                    let np = !pols.is_empty() && pols.iter().all(|p| p.kind.as_deref() == Some("NetworkPolicy"));
                    (np.then(|| "NetworkPolicy".to_string()), pols)
                }
            };
            out.push(TierStep {
                direction: Some(dir),
                tier,
                policies,
                action: "deny".into(),
                default: true,
                audit: m.audit,
                ..TierStep::default()
            });
            continue;
        }
        if let Some(dir) = c.strip_prefix("np-own-node:") {
            out.push(TierStep {
                direction: if dir == "egress" { Some(Direction::Egress) } else { Some(Direction::Ingress) },
                action: traced.to_string(),
                reason: Some("own-node".into()),
                ..TierStep::default()
            });
            continue;
        }
        if let Some(what) = c.strip_prefix("np-host:") {
            // The dispatch to a host endpoint's checks is no decision.
            if traced != "pass" {
                out.push(TierStep {
                    action: traced.to_string(),
                    audit: m.audit,
                    reason: Some(format!("host {what}")),
                    ..TierStep::default()
                });
            }
        }
    }
    out
}

/// One flow-log line (without the newline) for a traced record whose comments are expanded; `names` is the
/// programmed model's ([`Names`]), `local` its node's pod addresses.
pub fn line(
    r: &FlowRecord,
    names: Option<&Names>,
    local: &BTreeSet<IpAddr>,
    node: &str,
    format: Format,
    check: Option<&(bool, String)>,
) -> String {
    let engine = names.map(Names::engine);
    let kernel = kernel_verdict(r);
    let time = now_rfc3339();
    let comments: Vec<&str> = r.allowed_by.iter().map(String::as_str).chain(r.dropped_by.as_deref()).collect();
    let is_local = |ip: &str| ip.parse().is_ok_and(|a| local.contains(&a));
    let walk = tier_walk(r, names);
    let tiers: Vec<Value> = walk.iter().map(TierStep::json).collect();
    match format {
        Format::Netpol => {
            let side = match (is_local(&r.src), is_local(&r.dst)) {
                (true, false) => "egress",
                (false, true) => "ingress",
                _ => "both",
            };
            // The policies that decided (allowed, denied, or isolated and allowed nothing), on either side.
            let mut policies: Vec<String> = Vec::new();
            for step in walk.iter().filter(|s| matches!(s.action.as_str(), "allow" | "deny" | "reject")) {
                for p in &step.policies {
                    let name = p.display();
                    if !policies.contains(&name) {
                        policies.push(name);
                    }
                }
            }
            let mut v = json!({
                "time": time,
                "src": end(engine, &r.src, false),
                "dst": end(engine, &r.dst, false),
                "protocol": r.protocol,
                "verdict": if kernel == Kernel::Allowed { "allowed" } else { "denied" },
                "side": side,
                "policies": policies,
                "node": node,
                "rules": comments,
                "tiers": tiers,
            });
            if let Some(p) = r.port {
                v["port"] = json!(p);
            }
            if kernel == Kernel::WouldDeny {
                v["audit"] = json!(true);
            }
            if let Some((allowed, _)) = check {
                v["engine_verdict"] = json!(if *allowed { "allowed" } else { "denied" });
                v["self_check"] = json!(if *allowed == (kernel == Kernel::Allowed) { "agree" } else { "disagree" });
            }
            v.to_string()
        }
        Format::Hubble => {
            let v6 = r.src.contains(':');
            let mut flow = json!({
                "time": time,
                "verdict": match kernel { Kernel::Allowed => "FORWARDED", Kernel::Denied => "DROPPED", Kernel::WouldDeny => "AUDIT" },
                "IP": {"source": r.src, "destination": r.dst, "ipVersion": if v6 { "IPv6" } else { "IPv4" }},
                "source": end(engine, &r.src, true),
                "destination": end(engine, &r.dst, true),
                "Type": "L3_L4",
                "node_name": node,
                "traffic_direction": if is_local(&r.dst) { "INGRESS" } else { "EGRESS" },
                "is_reply": false,
            });
            if let Some(p) = r.port {
                let l4 = match r.protocol.as_str() {
                    "UDP" => "UDP",
                    "SCTP" => "SCTP",
                    _ => "TCP",
                };
                let mut ports = json!({"destination_port": p});
                if l4 == "TCP" {
                    ports["flags"] = json!({"SYN": true});
                }
                flow["l4"] = json!({ l4: ports });
            }
            if kernel != Kernel::Allowed {
                flow["drop_reason_desc"] = json!("POLICY_DENIED");
            }
            // Hubble's policy lists: the policies whose rule allowed each direction, and those whose rule denied it
            // or that isolated it with nothing allowing. A pass or a log decides nothing: it is in `netpol_tiers`.
            for step in &walk {
                let Some(dir) = step.direction else { continue };
                let outcome = match step.action.as_str() {
                    "allow" => "allowed",
                    "deny" | "reject" => "denied",
                    _ => continue,
                };
                let key = format!("{}_{outcome}_by", dir.as_str());
                let mut list = flow[&key].as_array().cloned().unwrap_or_default();
                for p in &step.policies {
                    let h = p.hubble();
                    if !list.contains(&h) {
                        list.push(h);
                    }
                }
                if !list.is_empty() {
                    flow[key] = Value::Array(list);
                }
            }
            // Hubble has no field for tiers: netpol's walk of them, as in the neutral record's `tiers`.
            flow["netpol_tiers"] = Value::Array(tiers);
            json!({"flow": flow, "node_name": node, "time": time}).to_string()
        }
    }
}

/// Starts tracing on the node and a thread that writes the flow log to `out` and, with `self_check` (`Some(N)`),
/// self-checks one in N of the flows judged here ([`Sampler`]). Returns the `nft monitor trace` child (kill it to
/// stop).
pub fn start(
    programmer: Arc<Programmer>,
    netns: Option<String>,
    format: Format,
    self_check: Option<u64>,
    mut out: Box<dyn Write + Send>,
) -> anyhow::Result<std::process::Child> {
    let mut child = netpol_nft::apply::spawn_trace_monitor_with_handles_in(netns.as_deref())?;
    netpol_nft::apply::nft_apply(&netpol_nft::apply::System, netns.as_deref(), &trace_on_script())?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no output from nft monitor trace"))?;
    std::thread::Builder::new().name("flow-log".into()).spawn(move || {
        let mut parser = TraceParser::default();
        let mut sampler = self_check.map(Sampler::new);
        // The names of the model last programmed (made again when a new model is), and the shortened comments of
        // the ruleset last programmed (read again when the generation changes).
        let mut names: Option<Names> = None;
        let mut long: (Option<u64>, BTreeMap<String, String>) = (None, BTreeMap::new());
        // `nft monitor trace` prints a rule as it was in the ruleset it read when it started: once the agent has
        // replaced or changed its table, a handle is unknown to it (`unknown rule handle N`) or, the table replaced
        // whole (its rules numbered from 1 again), names another rule than it did. Every rule of the table is named
        // here from the table as it is (by the handle `-a` prints), read again when a handle is not known or the
        // agent programmed since.
        // The generation first: a program committed while the table is read makes the next traced rule read it again.
        let mut rules_generation = programmer.table_epoch();
        let mut rules = nft_table_rules(&System, netns.as_deref());
        for l in std::io::BufReader::new(stdout).lines() {
            let Ok(mut l) = l else { break };
            let generation = programmer.table_epoch();
            if traced_handle(&l).is_some() && (stale_for(&rules, &l) || generation != rules_generation) {
                rules = nft_table_rules(&System, netns.as_deref());
                rules_generation = generation;
            }
            if let Some(named) = renamed(&l, &rules) {
                l = named;
            }
            let Some(mut rec) = parser.feed(&l) else { continue };
            // The model last programmed and its node's pod addresses (computed once per program, not per record).
            let current = programmer.current();
            if let Some((e, _)) = &current {
                if names.as_ref().is_none_or(|n| !Arc::ptr_eq(&n.engine, e)) {
                    names = Some(Names::new(e.clone()));
                }
            }
            let generation = programmer.metrics.generation.load(Ordering::Relaxed);
            if long.0 != Some(generation) {
                long = (Some(generation), programmer.long_comments());
            }
            expand_comments(&mut rec, &long.1);
            let engine = current.as_ref().map(|(e, _)| e.as_ref());
            let empty = BTreeSet::new();
            let local = current.as_ref().map_or(&empty, |(_, l)| l.as_ref());
            let sampled = match sampler.as_mut() {
                Some(s) if engine.is_some() && judged_here(local, &rec) => s.sample(),
                _ => false,
            };
            let check = engine.filter(|_| sampled).and_then(|e| engine_verdict(e, local, &rec));
            if let Some((allowed, explanation)) = &check {
                let kernel = kernel_verdict(&rec);
                let m = &programmer.metrics;
                m.self_checked.fetch_add(1, Ordering::Relaxed);
                if *allowed != (kernel == Kernel::Allowed) {
                    m.self_check_disagreements.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        node = programmer.node(),
                        flow = %format!("{} -> {} {}/{}", rec.src, rec.dst, rec.port.unwrap_or(0), rec.protocol),
                        kernel = ?kernel,
                        kernel_rules = ?rec.allowed_by.iter().chain(&rec.dropped_by).collect::<Vec<_>>(),
                        engine = if *allowed { "allowed" } else { "denied" },
                        "self-check: the kernel and the engine disagree\n{explanation}"
                    );
                }
            }
            let named = names.as_ref().filter(|_| current.is_some());
            let text = line(&rec, named, local, programmer.node(), format, check.as_ref());
            if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    })?;
    Ok(child)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_traced_drop_names_its_rule_and_policy_in_both_formats() {
        let mut p = TraceParser::default();
        let lines = [
            r#"trace id 86e254ba inet netpol_trace pre packet: iif "v1" ip saddr 10.80.0.1 ip daddr 10.80.0.2 ip protocol tcp tcp sport 36536 tcp dport 8088 tcp flags == syn"#,
            r#"trace id 86e254ba inet netpol_trace pre rule iifname != "lo" ct state new meta nftrace set 1 (verdict continue)"#,
            r#"trace id 86e254ba inet netpol_trace pre policy accept "#,
            r#"trace id 86e254ba inet netpol forward packet: iif "v1" oif "v2" ip saddr 10.80.0.1 ip daddr 10.80.0.2 tcp dport 8088"#,
            r#"trace id 86e254ba inet netpol forward rule ip daddr vmap @ingress_v4 (verdict jump in_x)"#,
            r#"trace id 86e254ba inet netpol in_x rule counter packets 0 bytes 0 drop comment "np-drop:ingress n/b-from-c" (verdict drop)"#,
        ];
        let rec: Vec<FlowRecord> = lines.iter().filter_map(|l| p.feed(l)).collect();
        assert_eq!(rec.len(), 1);
        assert_eq!(rec[0].dropped_by.as_deref(), Some("np-drop:ingress n/b-from-c"));
        let v: Value =
            serde_json::from_str(&line(&rec[0], None, &BTreeSet::new(), "n1", Format::Netpol, None)).unwrap();
        assert_eq!(v["policies"], json!(["n/b-from-c"]));
        assert_eq!(v["rules"], json!(["np-drop:ingress n/b-from-c"]));
        assert_eq!(v["verdict"], "denied");
        let h: Value =
            serde_json::from_str(&line(&rec[0], None, &BTreeSet::new(), "n1", Format::Hubble, None)).unwrap();
        assert_eq!(h["flow"]["verdict"], "DROPPED");
        assert_eq!(
            h["flow"]["ingress_denied_by"],
            json!([{"name": "b-from-c", "namespace": "n", "kind": "NetworkPolicy", "labels": [
                "k8s:io.cilium.k8s.policy.derived-from=NetworkPolicy",
                "k8s:io.cilium.k8s.policy.name=b-from-c",
                "k8s:io.cilium.k8s.policy.namespace=n"
            ]}])
        );
        // Without a model, the comment alone: a NetworkPolicy's isolation is the NetworkPolicy tier's default deny.
        assert_eq!(
            v["tiers"],
            json!([{"direction": "ingress", "tier": "NetworkPolicy", "action": "deny", "default": true,
                    "policy": "n/b-from-c", "ref": "n/b-from-c", "namespace": "n", "name": "b-from-c",
                    "kind": "NetworkPolicy"}])
        );
        assert_eq!(h["flow"]["l4"]["TCP"]["destination_port"], 8088);
    }

    /// A renamed audit rule (`netpol_nft::observe::renamed`) reads as a would-be drop naming its rule.
    #[test]
    fn a_renamed_audit_rule_is_a_would_be_drop() {
        let r = trace(
            "6",
            "10.0.0.1",
            "10.0.0.3",
            &[(
                "in_c",
                "handle 7 log prefix \"netpol-audit \" accept comment \"np:cnp/baseline-deny/ingress/0 peer-0\"",
                "accept",
            )],
            false,
        );
        assert_eq!(kernel_verdict(&r[0]), Kernel::WouldDeny);
        assert_eq!(r[0].matched[0].comment, "np:cnp/baseline-deny/ingress/0 peer-0");
    }

    #[test]
    fn rfc3339_time() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 27, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }

    /// Pods a, b, c of namespace n on node n1; an Admin-tier ClusterNetworkPolicy passes c -> b on to the
    /// NetworkPolicy tier, where b-from-c allows it (and isolates b: a -> b is that tier's default deny); a
    /// Baseline-tier ClusterNetworkPolicy denies every ingress of c.
    const TIERED: &str = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n, labels: {app: a}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n, labels: {app: b}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: n, labels: {app: c}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.3}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: admin-pass}
spec:
  tier: Admin
  priority: 10
  subject: {pods: {podSelector: {matchLabels: {app: b}}}}
  ingress:
  - {name: pass-c, action: Pass, from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: c}}}}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-c, namespace: n}
spec: {podSelector: {matchLabels: {app: b}}, ingress: [{from: [{podSelector: {matchLabels: {app: c}}}]}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: baseline-deny}
spec:
  tier: Baseline
  priority: 0
  subject: {pods: {podSelector: {matchLabels: {app: c}}}}
  ingress:
  - {action: Deny, from: [{namespaces: {}}]}
";

    /// The trace of a packet from `src` to `dst` port 80 through `rules` (chain, rule text, verdict) of table
    /// netpol, ending with `end` (the forward chain's policy, or nothing after a drop).
    fn trace(id: &str, src: &str, dst: &str, rules: &[(&str, &str, &str)], accepted: bool) -> Vec<FlowRecord> {
        let mut lines = vec![
            format!("trace id {id} inet netpol_trace pre packet: iif \"v1\" ip saddr {src} ip daddr {dst} ip protocol tcp tcp sport 40000 tcp dport 80 tcp flags == syn"),
            format!("trace id {id} inet netpol_trace pre rule iifname != \"lo\" ct state new meta nftrace set 1 (verdict continue)"),
            format!("trace id {id} inet netpol forward rule ip daddr vmap @ingress_v4 (verdict jump in_b)"),
        ];
        for (chain, rule, verdict) in rules {
            lines.push(format!("trace id {id} inet netpol {chain} rule {rule} (verdict {verdict})"));
        }
        if accepted {
            lines.push(format!("trace id {id} inet netpol forward policy accept"));
        }
        let mut p = TraceParser::default();
        lines.iter().filter_map(|l| p.feed(l)).collect()
    }

    fn names() -> Names {
        Names::new(Arc::new(Engine::new(netpol_core::load::load_str("c.yaml", TIERED).cluster)))
    }

    fn local() -> BTreeSet<IpAddr> {
        ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().map(|a| a.parse().unwrap()).collect()
    }

    const PASS: &str =
        "ip saddr @sel_c_v4 counter packets 0 bytes 0 goto in_b_t2 comment \"np:cnp/admin-pass/ingress/0 peer-0\"";
    const ALLOW: &str =
        "ip saddr @sel_c_v4 counter packets 0 bytes 0 return comment \"np:n/b-from-c/ingress/0 peer-0\"";
    const ISOLATED: &str = "counter packets 0 bytes 0 drop comment \"np-drop:ingress cnp/admin-pass,n/b-from-c\"";
    const BASELINE: &str =
        "ip saddr @sel_all_v4 counter packets 0 bytes 0 drop comment \"np:cnp/baseline-deny/ingress/0 peer-0\"";

    #[test]
    fn the_traced_comments_are_the_ones_the_node_s_ruleset_writes() {
        let n = names();
        let text = netpol_nft::ruleset::generate_for_node(n.engine(), "n1").to_nft();
        for c in [
            "np:cnp/admin-pass/ingress/0 peer-0",
            "np:n/b-from-c/ingress/0 peer-0",
            "np:cnp/baseline-deny/ingress/0 peer-0",
            "np-drop:ingress cnp/admin-pass,n/b-from-c",
        ] {
            assert!(text.contains(&format!("comment \"{c}\"")), "{c}:\n{text}");
        }
        // The pass goes on to the NetworkPolicy tier's rules, in a chain of their own.
        assert!(text.contains("goto in_") && text.contains("comment \"np:cnp/admin-pass/ingress/0 peer-0\""), "{text}");
    }

    /// The flow log names the deciding rule of every tier: an Admin pass then a NetworkPolicy allow, a
    /// NetworkPolicy tier's default deny, a Baseline deny; with the model (kind, tier, field) and without
    /// (what the comments tell); in both formats, read back by netpol's flow-log reader.
    #[test]
    fn every_tier_s_deciding_rule_is_in_the_record() {
        let n = names();
        let local = local();
        let c_to_b =
            trace("1", "10.0.0.3", "10.0.0.2", &[("in_b", PASS, "goto in_b_t2"), ("in_b_t2", ALLOW, "return")], true);
        let a_to_b = trace("2", "10.0.0.1", "10.0.0.2", &[("in_b", ISOLATED, "drop")], false);
        let a_to_c = trace("3", "10.0.0.1", "10.0.0.3", &[("in_c", BASELINE, "drop")], false);
        let rec = |r: &[FlowRecord]| r[0].clone();
        let netpol = |r: &FlowRecord, names: Option<&Names>| -> Value {
            serde_json::from_str(&line(r, names, &local, "n1", Format::Netpol, None)).unwrap()
        };
        let v = netpol(&rec(&c_to_b), Some(&n));
        assert_eq!(v["verdict"], "allowed");
        assert_eq!(
            v["tiers"],
            json!([
                {"direction": "ingress", "tier": "Admin", "policy": "admin-pass", "ref": "cnp/admin-pass",
                 "name": "admin-pass", "kind": "ClusterNetworkPolicy", "rule": 0, "field": "spec.ingress[0]",
                 "action": "pass"},
                {"direction": "ingress", "tier": "NetworkPolicy", "policy": "n/b-from-c", "ref": "n/b-from-c",
                 "namespace": "n", "name": "b-from-c", "kind": "NetworkPolicy", "rule": 0,
                 "field": "spec.ingress[0]", "action": "allow"}
            ])
        );
        // The policies that decided: the pass decides nothing.
        assert_eq!(v["policies"], json!(["n/b-from-c"]));
        assert_eq!(v["rules"], json!(["np:n/b-from-c/ingress/0 peer-0"]));
        let v = netpol(&rec(&a_to_b), Some(&n));
        assert_eq!(
            v["tiers"],
            json!([{"direction": "ingress", "tier": "NetworkPolicy", "action": "deny", "default": true,
                    "policy": "n/b-from-c", "ref": "n/b-from-c", "namespace": "n", "name": "b-from-c",
                    "kind": "NetworkPolicy"}])
        );
        let v = netpol(&rec(&a_to_c), Some(&n));
        assert_eq!(v["verdict"], "denied");
        assert_eq!(
            v["tiers"],
            json!([{"direction": "ingress", "tier": "Baseline", "policy": "baseline-deny", "ref": "cnp/baseline-deny",
                    "name": "baseline-deny", "kind": "ClusterNetworkPolicy", "rule": 0, "field": "spec.ingress[0]",
                    "action": "deny"}])
        );
        assert_eq!(v["policies"], json!(["baseline-deny"]));
        // Without a model: the kinds the references tell; a ClusterNetworkPolicy's tier is in its object only.
        let v = netpol(&rec(&c_to_b), None);
        assert_eq!(v["tiers"][0]["kind"], "ClusterNetworkPolicy");
        assert_eq!(v["tiers"][0]["action"], "pass");
        assert!(v["tiers"][0].get("tier").is_none(), "{v}");
        assert_eq!(v["tiers"][1]["tier"], "NetworkPolicy");
        assert_eq!(v["tiers"][1]["action"], "allow");
        let v = netpol(&rec(&a_to_b), None);
        assert_eq!(v["tiers"][0]["policies"].as_array().unwrap().len(), 2, "{v}");

        // Hubble: the allowing and the denying policies with their kind, the walk in `netpol_tiers`.
        let hubble = |r: &FlowRecord| -> Value {
            serde_json::from_str(&line(r, Some(&n), &local, "n1", Format::Hubble, None)).unwrap()
        };
        let h = hubble(&rec(&c_to_b));
        assert_eq!(h["flow"]["verdict"], "FORWARDED");
        assert_eq!(h["flow"]["ingress_allowed_by"][0]["name"], "b-from-c");
        assert_eq!(h["flow"]["ingress_allowed_by"][0]["kind"], "NetworkPolicy");
        assert_eq!(h["flow"]["ingress_allowed_by"].as_array().unwrap().len(), 1);
        assert_eq!(h["flow"]["netpol_tiers"][0]["tier"], "Admin");
        assert_eq!(h["flow"]["netpol_tiers"][0]["action"], "pass");
        assert!(h["flow"].get("ingress_denied_by").is_none());
        let h = hubble(&rec(&a_to_c));
        assert_eq!(h["flow"]["verdict"], "DROPPED");
        assert_eq!(
            h["flow"]["ingress_denied_by"],
            json!([{"name": "baseline-deny", "namespace": "", "kind": "ClusterNetworkPolicy", "labels": [
                "k8s:io.cilium.k8s.policy.derived-from=ClusterNetworkPolicy",
                "k8s:io.cilium.k8s.policy.name=baseline-deny"
            ]}])
        );

        // Read back as `netpol flows replay` reads logs.
        for format in [Format::Netpol, Format::Hubble] {
            let text: String = [&c_to_b, &a_to_b, &a_to_c]
                .iter()
                .map(|r| line(&r[0], Some(&n), &local, "n1", format, None) + "\n")
                .collect();
            let reader = netpol_input::flowlog::Reader::new("log", std::io::Cursor::new(text.clone()), None);
            let read: Vec<_> = reader.collect::<Result<Vec<_>, _>>().unwrap();
            use netpol_input::flowlog::Verdict::{Allowed, Denied};
            let got: Vec<_> = read.iter().map(|o| (o.verdict, o.policies.clone(), o.port)).collect();
            assert_eq!(
                got,
                [
                    (Some(Allowed), vec!["n/b-from-c".to_string()], Some(80)),
                    (Some(Denied), vec!["n/b-from-c".to_string()], Some(80)),
                    (Some(Denied), vec!["baseline-deny".to_string()], Some(80)),
                ],
                "{format:?}: {text}"
            );
        }
    }

    /// Audit mode: the rule that would have dropped logs and accepts; the record says so.
    #[test]
    fn an_audit_rule_is_a_deny_that_was_not_enforced() {
        let audit = "ip saddr @sel_all_v4 counter packets 0 bytes 0 log prefix \"netpol-audit np:cnp/baseline-deny/ingress/0 peer-0 \" accept comment \"np:cnp/baseline-deny/ingress/0 peer-0\"";
        let r = trace("4", "10.0.0.1", "10.0.0.3", &[("in_c", audit, "accept")], false);
        assert_eq!(kernel_verdict(&r[0]), Kernel::WouldDeny);
        let v: Value =
            serde_json::from_str(&line(&r[0], Some(&names()), &local(), "n1", Format::Netpol, None)).unwrap();
        assert_eq!(v["audit"], true);
        assert_eq!(v["tiers"][0]["action"], "deny");
        assert_eq!(v["tiers"][0]["audit"], true);
        assert_eq!(v["tiers"][0]["tier"], "Baseline");
    }

    #[test]
    fn a_shortened_comment_is_expanded() {
        let mut r = trace(
            "5",
            "10.0.0.1",
            "10.0.0.3",
            &[("in_c", "counter packets 0 bytes 0 drop comment \"np:#abc\"", "drop")],
            false,
        );
        let long: BTreeMap<String, String> =
            [("np:#abc".to_string(), "np:cnp/baseline-deny/ingress/0 peer-0".to_string())].into();
        expand_comments(&mut r[0], &long);
        assert_eq!(r[0].dropped_by.as_deref(), Some("np:cnp/baseline-deny/ingress/0 peer-0"));
        assert_eq!(tier_walk(&r[0], Some(&names()))[0].tier.as_deref(), Some("Baseline"));
    }

    #[test]
    fn references_and_rule_comments_are_read() {
        assert_eq!(parse_rule_comment("np:cnp/x/egress/3 peer-1"), Some(("cnp/x", Direction::Egress, 3)));
        assert_eq!(
            parse_rule_comment("np:caliconetworkpolicy/ns/p/ingress/0 any-peer"),
            Some(("caliconetworkpolicy/ns/p", Direction::Ingress, 0))
        );
        assert_eq!(parse_rule_comment("np-drop:ingress n/a"), None);
        let p = parse_reference("ciliumnetworkpolicy/ns/p");
        assert_eq!(
            (p.namespace.as_str(), p.name.as_str(), p.kind.as_deref()),
            ("ns", "p", Some("CiliumNetworkPolicy"))
        );
        let p = parse_reference("gnp/g");
        assert_eq!((p.display(), p.kind.as_deref()), ("g".to_string(), Some("GlobalNetworkPolicy")));
        assert_eq!(parse_reference("n/x").display(), "n/x");
    }

    /// `--self-check-sample N`: the 1st, the N+1th, ... of the flows judged here; 1 (and 0) every flow.
    #[test]
    fn the_sampler_takes_one_in_n_in_order() {
        let take = |every: u64| -> Vec<bool> {
            let mut s = Sampler::new(every);
            (0..7).map(|_| s.sample()).collect()
        };
        assert_eq!(take(1), [true; 7]);
        assert_eq!(take(0), [true; 7]);
        assert_eq!(take(3), [true, false, false, true, false, false, true]);
        // Only flows with a port and a side on this node are counted.
        let local = local();
        let r = |src: &str, dst: &str| FlowRecord {
            src: src.into(),
            dst: dst.into(),
            protocol: "TCP".into(),
            port: Some(80),
            ..FlowRecord::default()
        };
        assert!(judged_here(&local, &r("10.9.9.9", "10.0.0.2")));
        assert!(!judged_here(&local, &r("10.9.9.9", "10.9.9.8")));
        assert!(!judged_here(&local, &FlowRecord { protocol: "ICMP".into(), port: None, ..r("10.0.0.1", "10.0.0.2") }));
    }

    /// The kinds and tiers of the other dialects: a Cilium object's deny part (its own tier) and allow part share one
    /// reference and are told apart by what the rule did; a Calico GlobalNetworkPolicy in a Tier of its own. The
    /// traced rules are the node's ruleset's own (found by their comments).
    #[test]
    fn cilium_and_calico_rules_are_named_with_their_kind_and_tier() {
        let pods = TIERED.split("---\napiVersion: policy").next().unwrap();
        let yaml = format!(
            "{pods}---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: guard, namespace: n}}
spec:
  endpointSelector: {{matchLabels: {{app: b}}}}
  ingressDeny: [{{fromEndpoints: [{{matchLabels: {{app: a}}}}]}}]
  ingress: [{{fromEndpoints: [{{matchLabels: {{app: c}}}}]}}]
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {{name: security}}
spec: {{order: 100}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: security.no-a-to-c}}
spec:
  tier: security
  order: 1
  selector: app == 'c'
  types: [Ingress]
  ingress: [{{action: Deny, source: {{selector: app == 'a'}}}}, {{action: Pass}}]
"
        );
        let n = Names::new(Arc::new(Engine::new(netpol_core::load::load_str("c.yaml", &yaml).cluster)));
        let text = netpol_nft::ruleset::generate_for_node(n.engine(), "n1").to_nft();
        // The rule of `text` with this comment prefix, and the verdict the trace prints for it.
        let rule = |prefix: &str| -> (String, String) {
            let r = text
                .lines()
                .map(str::trim)
                .find(|l| l.contains(&format!("comment \"{prefix}")))
                .unwrap_or_else(|| panic!("{prefix}:\n{text}"))
                .to_string();
            let before = r.split(" comment ").next().unwrap();
            let verdict = before.split_whitespace().skip_while(|w| *w != "counter").skip(1).collect::<Vec<_>>();
            let verdict = match verdict.as_slice() {
                [.., "goto", c] => format!("goto {c}"),
                [.., v] => v.to_string(),
                [] => "continue".into(),
            };
            (r, verdict)
        };
        let walk = |rules: &[(String, String)], src: &str, dst: &str| -> Vec<TierStep> {
            let rules: Vec<(&str, &str, &str)> = rules.iter().map(|(r, v)| ("in_x", r.as_str(), v.as_str())).collect();
            let accepted = rules.last().is_some_and(|r| r.2 != "drop");
            tier_walk(&trace("9", src, dst, &rules, accepted)[0], Some(&n))
        };
        let deny = rule("np:ciliumnetworkpolicy/n/guard/ingress/0");
        assert_eq!(deny.1, "drop", "{text}");
        let steps = walk(&[deny], "10.0.0.1", "10.0.0.2");
        assert_eq!(steps[0].policies[0].kind.as_deref(), Some("CiliumNetworkPolicy"));
        assert_eq!(steps[0].field.as_deref(), Some("spec.ingressDeny[0]"));
        assert_eq!(steps[0].action, "deny");
        let deny_tier = steps[0].tier.clone().unwrap();
        assert_eq!(deny_tier, "CiliumDeny");
        // The allow rule of the same object (same reference and index, another part and tier).
        let allow = text
            .lines()
            .map(str::trim)
            .find(|l| l.contains("comment \"np:ciliumnetworkpolicy/n/guard/ingress/0") && l.contains(" return "))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string();
        let steps = walk(&[(allow, "return".into())], "10.0.0.3", "10.0.0.2");
        assert_eq!((steps[0].action.as_str(), steps[0].field.as_deref()), ("allow", Some("spec.ingress[0]")));
        // The NetworkPolicy tier, by Calico's name for it (the input has Calico objects).
        assert_eq!(steps[0].tier.as_deref(), Some("default"), "the allow part is in another tier");
        // Calico: the GlobalNetworkPolicy's deny in its Tier.
        let gnp = rule("np:gnp/security.no-a-to-c/ingress/0");
        let steps = walk(&[gnp], "10.0.0.1", "10.0.0.3");
        assert_eq!(steps[0].tier.as_deref(), Some("security"));
        assert_eq!(steps[0].policies[0].kind.as_deref(), Some("GlobalNetworkPolicy"));
        assert_eq!(steps[0].policies[0].display(), "security.no-a-to-c");
        assert_eq!(steps[0].action, "deny");
        let h: Value = serde_json::from_str(&line(
            &trace(
                "9",
                "10.0.0.1",
                "10.0.0.2",
                &[("in_x", &rule("np:ciliumnetworkpolicy/n/guard/ingress/0").0, "drop")],
                false,
            )[0],
            Some(&n),
            &local(),
            "n1",
            Format::Hubble,
            None,
        ))
        .unwrap();
        assert_eq!(h["flow"]["ingress_denied_by"][0]["kind"], "CiliumNetworkPolicy");
        assert_eq!(h["flow"]["ingress_denied_by"][0]["namespace"], "n");
        assert_eq!(h["flow"]["netpol_tiers"][0]["tier"], deny_tier.as_str());
    }
}
