//! Verdicts with explanations: for one flow, which policies isolate each side, which rule (policy, rule
//! index, peer index, port) allows it, or why each candidate rule does not.
//!
//! An [`Explanation`] is data; rendering to text is [`Explanation::render`], to JSON is serde.

use std::fmt::Write as _;

use serde::Serialize;

use crate::compile::{Endpoint, Engine};
use crate::eval::{Query, Record};
use crate::model::*;
use crate::portset::Protocol;
use crate::selector::{format_labels, Requirement, Selector};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    pub fn from_bool(b: bool) -> Verdict {
        if b {
            Verdict::Allow
        } else {
            Verdict::Deny
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// A rule that allows the flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    pub policy: String,
    pub rule: usize,
    /// Index of the matching peer (`None`: the rule has no peers, so it allows every peer).
    pub peer: Option<usize>,
    /// The matching `ports` entry, as text (`None`: the rule has no ports, so it allows every port).
    pub port: Option<String>,
    /// The rule, for comparisons (`policy` and `rule` are its words).
    #[serde(skip)]
    pub key: RuleKey,
}

/// A rule of an isolating policy that does not allow the flow, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub policy: String,
    /// `None` when the policy has no rules for this direction.
    pub rule: Option<usize>,
    pub reason: String,
    /// The policy, for comparisons.
    #[serde(skip)]
    pub policy_key: PolicyKey,
}

/// One direction (egress at the source, ingress at the destination).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SideExplanation {
    pub direction: Direction,
    /// The pod (or address) whose policies are checked.
    pub subject: String,
    pub allowed: bool,
    pub isolated: bool,
    /// Why no policy applies (external address, hostNetwork pod), when that is the case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Policies that select the subject for this direction.
    pub policies: Vec<String>,
    /// The same policies, for comparisons.
    #[serde(skip)]
    pub policy_keys: Vec<PolicyKey>,
    pub allowed_by: Vec<RuleMatch>,
    /// Why each rule of the isolating policies does not allow the flow (only when denied).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<Rejection>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub src: String,
    pub dst: String,
    pub protocol: Protocol,
    pub port: u16,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub egress: SideExplanation,
    pub ingress: SideExplanation,
}

fn reqs_text<'a>(reqs: impl Iterator<Item = &'a Requirement>) -> String {
    reqs.map(|r| r.to_string()).collect::<Vec<_>>().join(",")
}

impl Engine {
    /// Explains the verdict of one flow. Agrees with [`Engine::allowed`] (property-tested).
    pub fn explain(&self, src: &Endpoint, dst: &Endpoint, proto: Protocol, port: u16) -> Explanation {
        let src_name = self.endpoint_name(src);
        let dst_name = self.endpoint_name(dst);
        let mut note = None;
        let same_pod = matches!((src, dst), (Endpoint::Pod { pod: a, .. }, Endpoint::Pod { pod: b, .. }) if a == b);
        if same_pod {
            note = Some(
                "source and destination are the same pod: the traffic never leaves the pod's network namespace, so \
                 NetworkPolicies do not govern it"
                    .to_string(),
            );
        }
        let egress = self.explain_side(src, dst, dst, Direction::Egress, proto, port, same_pod);
        let ingress = self.explain_side(dst, src, dst, Direction::Ingress, proto, port, same_pod);
        let verdict = Verdict::from_bool(same_pod || (egress.allowed && ingress.allowed));
        Explanation { src: src_name, dst: dst_name, protocol: proto, port, verdict, note, egress, ingress }
    }

    #[allow(clippy::too_many_arguments)]
    fn explain_side(
        &self,
        subject: &Endpoint,
        other: &Endpoint,
        dst: &Endpoint,
        dir: Direction,
        proto: Protocol,
        port: u16,
        same_pod: bool,
    ) -> SideExplanation {
        let mut side = SideExplanation {
            direction: dir,
            subject: self.endpoint_name(subject),
            allowed: true,
            isolated: false,
            note: None,
            policies: Vec::new(),
            policy_keys: Vec::new(),
            allowed_by: Vec::new(),
            rejections: Vec::new(),
        };
        let pod_id = match subject {
            Endpoint::External(_) => {
                side.note = Some(format!(
                    "{} belongs to no pod: it is outside the cluster, so no NetworkPolicy applies on its side",
                    side.subject
                ));
                return side;
            }
            Endpoint::Pod { pod, .. } => *pod,
        };
        let pod = self.cluster.pod(pod_id);
        if pod.host_network {
            side.note = Some(format!(
                "{} uses hostNetwork: NetworkPolicies do not apply to host-network pods (their traffic is the node's)",
                side.subject
            ));
            return side;
        }
        let ident = self.identity_of(pod_id);
        let pols = ident.policies(dir);
        side.policies = pols.iter().map(|&p| self.cluster.policy_ref(p)).collect();
        side.policy_keys = pols.iter().map(|&p| self.cluster.policy_key(p)).collect();
        if pols.is_empty() {
            side.note = Some(format!("no policy selects {} for {dir}: not isolated, everything allowed", side.subject));
            return side;
        }
        side.isolated = true;
        if same_pod {
            side.note = Some("same pod: not governed by policies".to_string());
            return side;
        }
        let dst_pod = match dst {
            Endpoint::Pod { pod, .. } => Some(self.cluster.pod(*pod)),
            Endpoint::External(_) => None,
        };
        // The evaluator's own walk, recorded: what it decides is the verdict, and each rule it consulted is
        // reported with the outcome the walk saw. The model only supplies the words.
        let other_info = self.ep_info(other);
        let dst_named = self.ep_info(dst).ident.map(|i| self.identities[i.index()].named_ports.as_slice());
        let mut record = Record::default();
        let subject_ident = self.pod_identity[pod_id.index()];
        let q = Query { proto, port, dst_named };
        side.allowed = self.walk_side(subject_ident, dir, &other_info, &q, &mut record);
        let mut steps = record.0.into_iter().peekable();
        for &polid in pols {
            let pol = self.cluster.policy(polid);
            let pref = self.cluster.policy_ref(polid);
            let pkey = self.cluster.policy_key(polid);
            if pol.rules(dir).is_empty() {
                side.rejections.push(Rejection {
                    policy: pref.clone(),
                    rule: None,
                    reason: format!("has no {dir} rules: it only isolates"),
                    policy_key: pkey.clone(),
                });
            }
            while let Some(step) = steps.next_if(|s| self.rules[s.rule.index()].policy == polid) {
                let ri = self.rules[step.rule.index()].index as usize;
                let Some(rule) = pol.rules(dir).get(ri) else { continue };
                let port_text = || port_entry_match(rule, proto, port, dst_pod);
                let peer_text = || {
                    rule.peers
                        .iter()
                        .enumerate()
                        .map(|(i, p)| format!("peer {i} {}", self.peer_mismatch(pol, p, other)))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                let reason = match (step.ports, step.peer) {
                    (true, Some(peer)) => {
                        let port = port_text().ok().flatten();
                        let key = RuleKey { policy: pkey.clone(), index: ri };
                        side.allowed_by.push(RuleMatch { policy: pref.clone(), rule: ri, peer, port, key });
                        continue;
                    }
                    (false, Some(_)) => port_text().err().unwrap_or_default(),
                    (true, None) => peer_text(),
                    (false, None) => format!("{}; and {}", port_text().err().unwrap_or_default(), peer_text()),
                };
                side.rejections.push(Rejection {
                    policy: pref.clone(),
                    rule: Some(ri),
                    reason,
                    policy_key: pkey.clone(),
                });
            }
        }
        if side.allowed {
            side.rejections.clear();
        }
        side
    }

    fn peer_mismatch(&self, pol: &Policy, peer: &Peer, ep: &Endpoint) -> String {
        self.peer_mismatch_opt(pol, peer, ep).unwrap_or_default()
    }

    /// `None` if the peer matches the endpoint; otherwise why not.
    fn peer_mismatch_opt(&self, pol: &Policy, peer: &Peer, ep: &Endpoint) -> Option<String> {
        let c = &self.cluster;
        match peer {
            Peer::IpBlock(b) => match self.endpoint_ip(ep) {
                None => Some(format!("(ipBlock {b}) needs an IP; {} has none", self.endpoint_name(ep))),
                Some(ip) if !b.cidr.contains(&ip) => Some(format!("(ipBlock {b}): {ip} is not in {}", b.cidr)),
                Some(ip) => b
                    .except
                    .iter()
                    .find(|e| e.contains(&ip))
                    .map(|e| format!("(ipBlock {b}): {ip} is in the exception {e}")),
            },
            Peer::Selectors { namespaces, pods } => {
                let Endpoint::Pod { pod, .. } = *ep else {
                    return Some(format!(
                        "selects pods; {} is not a pod's IP (only ipBlock peers match addresses outside the cluster)",
                        self.endpoint_name(ep)
                    ));
                };
                let p = c.pod(pod);
                if p.host_network {
                    return Some(format!(
                        "selects pods; {} uses hostNetwork, and pod/namespace selectors do not match host-network pods",
                        c.pod_ref(pod)
                    ));
                }
                let ns = c.ns(p.ns);
                match namespaces {
                    None if p.ns != pol.ns => {
                        return Some(format!(
                            "has no namespaceSelector, so it selects pods in namespace {} only; {} is in namespace {}",
                            c.ns_name(pol.ns),
                            c.pod_ref(pod),
                            ns.name
                        ))
                    }
                    Some(sel) if !sel.matches(&ns.labels) => {
                        return Some(format!(
                            "requires namespace labels {}; namespace {} has {}",
                            reqs_text(sel.failed_requirements(&ns.labels)),
                            ns.name,
                            format_labels(&ns.labels)
                        ))
                    }
                    _ => {}
                }
                match pods {
                    Some(sel) if !sel.matches(&p.labels) => Some(format!(
                        "requires pod labels {}{}; pod {} has {}",
                        reqs_text(sel.failed_requirements(&p.labels)),
                        and_text(namespaces),
                        c.pod_ref(pod),
                        format_labels(&p.labels)
                    )),
                    _ => None,
                }
            }
        }
    }
}

fn and_text(ns: &Option<Selector>) -> &'static str {
    if ns.is_some() {
        " (in the same peer as the namespaceSelector: both must match)"
    } else {
        ""
    }
}

/// `Ok(matched entry text)` or `Err(reason)`.
fn port_entry_match(rule: &Rule, proto: Protocol, port: u16, dst_pod: Option<&Pod>) -> Result<Option<String>, String> {
    if rule.ports.is_empty() {
        return Ok(None);
    }
    for p in &rule.ports {
        if p.protocol != proto {
            continue;
        }
        let m = match &p.port {
            PortMatch::Any => true,
            PortMatch::Range(lo, hi) => *lo <= port && port <= *hi,
            PortMatch::Named(name) => dst_pod.and_then(|d| d.named_port(name, proto)) == Some(port),
        };
        if m {
            let text = match (&p.port, dst_pod) {
                (PortMatch::Named(name), Some(_)) => {
                    format!("{name}/{proto} (named port = {port})")
                }
                _ => p.to_string(),
            };
            return Ok(Some(text));
        }
    }
    let entries: Vec<String> = rule
        .ports
        .iter()
        .map(|p| match (&p.port, dst_pod) {
            (PortMatch::Named(name), Some(d)) => match d.named_port(name, p.protocol) {
                Some(n) => format!("{name}/{} = {n}", p.protocol),
                None => format!("{name}/{} (the destination has no such port)", p.protocol),
            },
            (PortMatch::Named(name), None) => {
                format!("{name}/{} (named ports never match a non-pod)", p.protocol)
            }
            _ => p.to_string(),
        })
        .collect();
    Err(format!("{port}/{proto} is not among the rule's ports ({})", entries.join(", ")))
}

impl Explanation {
    /// Human-readable rendering.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} -> {} {}/{}",
            self.verdict.as_str().to_uppercase(),
            self.src,
            self.dst,
            self.port,
            self.protocol
        );
        if let Some(n) = &self.note {
            let _ = writeln!(s, "  {n}");
            return s;
        }
        for side in [&self.egress, &self.ingress] {
            let what = match side.direction {
                Direction::Egress => format!("egress from {}", side.subject),
                Direction::Ingress => format!("ingress to {}", side.subject),
            };
            let status = if side.allowed { "allowed" } else { "DENIED" };
            if !side.isolated {
                let _ = writeln!(s, "  {what}: {status}: {}", side.note.as_deref().unwrap_or("not isolated"));
                continue;
            }
            let _ = writeln!(s, "  {what}: {status}; isolated by {}", side.policies.join(", "));
            for m in &side.allowed_by {
                let peer = m.peer.map_or("any peer (no from/to)".to_string(), |p| format!("peer {p}"));
                let port = m.port.clone().unwrap_or_else(|| "any port (no ports)".to_string());
                let _ = writeln!(s, "    allowed by {} rule {} {peer}, port {port}", m.policy, m.rule);
            }
            if !side.allowed {
                let _ = writeln!(s, "    no rule allows it:");
                for r in &side.rejections {
                    match r.rule {
                        Some(i) => {
                            let _ = writeln!(s, "    - {} rule {i}: {}", r.policy, r.reason);
                        }
                        None => {
                            let _ = writeln!(s, "    - {} {}", r.policy, r.reason);
                        }
                    }
                }
            }
        }
        s
    }
}
