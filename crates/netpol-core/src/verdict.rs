//! Verdicts with explanations: for one flow, which policies isolate each side, which rule (policy, rule
//! index, peer index, port) allows it, or why each candidate rule does not.
//!
//! An [`Explanation`] is data; rendering to text is [`Explanation::render`], to JSON is serde.

use std::fmt::Write as _;

use serde::Serialize;

use crate::compile::{CRule, Endpoint, Engine};
use crate::eval::{Ends, Query, Record, TierEnd, TierId};
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

/// A rule that matches the flow and takes part in the decision: an allow rule of NetworkPolicy, or the rule of
/// an admin tier that decides (allow, deny) or passes the flow to the next tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    /// `Admin`, `NetworkPolicy` or `Baseline`.
    pub tier: String,
    pub policy: String,
    /// The policy's priority (admin tiers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<crate::model::Order>,
    pub rule: usize,
    /// The rule's `name` (admin kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: Action,
    /// Index of the matching peer (`None`: the rule has no peers, so it matches every peer).
    pub peer: Option<usize>,
    /// The matching `ports` entry, as text (`None`: the rule has no ports, so it matches every port).
    pub port: Option<String>,
    /// Where the rule is: its field path in the object (`spec.ingress[0]`) and the object's file and document.
    pub field: String,
    pub source: String,
    /// Cilium: what the rule's L7 rules do with the flow's request (which rule lets it through), or, for a flow
    /// without one, that requests on the connection are filtered and by which rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l7: Option<String>,
    /// Admin tiers: the other policies of the same tier and priority that select the subject in this
    /// direction. The API leaves the order of equal priorities undefined (netpol orders them by kind, then
    /// name), so another implementation may apply one of them first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tie: Vec<String>,
    /// A `Pass` rule of an Antrea tier: the later tiers the passed flow skips (their rules are not consulted
    /// for it), up to the NetworkPolicy tier (see [`crate::eval::Tier::hold`]). Empty when a pass goes on to
    /// the next tier.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_tiers: Vec<String>,
    /// The rule, for comparisons (`policy` and `rule` are its words).
    #[serde(skip)]
    pub key: RuleKey,
}

/// A rule that could have allowed the flow but does not match it, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub policy: String,
    /// `None` when the policy has no rules for this direction.
    pub rule: Option<usize>,
    pub reason: String,
    /// The rule matches the connection but its L7 rules refuse the request (Cilium).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub l7: bool,
    /// Cilium: the rule's field path (`spec.ingress[0].toPorts[1]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The policy, for comparisons.
    #[serde(skip)]
    pub policy_key: PolicyKey,
}

/// What decided one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// No policy of any tier applies to the subject.
    NotGoverned,
    /// A rule of an admin tier (the last entry of `walk`).
    Rule,
    /// NetworkPolicy: a rule allows it (see `allowed_by`), or the pod is isolated and none does.
    NetworkPolicy,
    /// A tier whose `defaultAction` is Deny (Calico's `default` tier and Tiers of Calico's own): one of its
    /// policies selects the subject and none of its rules decided (see `tier_default`).
    TierDefault,
    /// No tier decided: allowed by default.
    Default,
    /// A host endpoint's normal policies decided nothing: its profiles decide (none: deny).
    Profile,
    /// Cilium: the traffic comes from the pod's own node, which Cilium lets in whatever the policies say
    /// (`note` names the node; the walk shows what the policies alone would do).
    OwnNode,
}

/// One direction (egress at the source, ingress at the destination).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SideExplanation {
    pub direction: Direction,
    /// The pod (or address) whose policies are checked.
    pub subject: String,
    pub allowed: bool,
    /// Whether a NetworkPolicy selects the subject for this direction.
    pub isolated: bool,
    /// Why no policy applies (external address, hostNetwork pod), when that is the case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Policies of every tier that select the subject for this direction, in evaluation order.
    pub policies: Vec<String>,
    /// The same policies, for comparisons.
    #[serde(skip)]
    pub policy_keys: Vec<PolicyKey>,
    /// The rules that decided, tier by tier, in evaluation order: admin rules that pass the flow on or decide
    /// it, then the NetworkPolicy rules that allow it, then the Baseline rule that decides it.
    pub walk: Vec<RuleMatch>,
    pub decided_by: DecidedBy,
    /// The tier whose default action denied it (`decided_by: tier_default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier_default: Option<String>,
    /// The allowing rules of `walk`.
    pub allowed_by: Vec<RuleMatch>,
    /// Why each rule that could have allowed the flow does not (only when denied).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<Rejection>,
    /// Rules of these policies that netpol does not model, and what it does with them (Antrea's `toServices`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_modelled: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub src: String,
    pub dst: String,
    /// The DNS name the destination address was resolved from, if the flow gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_fqdn: Option<String>,
    /// The request the flow carries (`HTTP GET /x`, `DNS query name`): the verdict is the request's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    pub protocol: Protocol,
    /// The port; for ICMP `type << 8 | code` (see `icmp`).
    pub port: u16,
    /// ICMP and ICMPv6: the message's type and code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpMessage>,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What the answer assumes where the policies' own API is silent (ICMP under NetworkPolicy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caveat: Option<String>,
    pub egress: SideExplanation,
    pub ingress: SideExplanation,
    /// Calico host endpoints the flow crosses, in packet order (see [`crate::host`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostExplanation>,
    /// What the host endpoint answer assumes where netpol cannot know (routes, encapsulation, DNAT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_note: Option<String>,
    /// When the cluster has staged policies: the flow as the staged view (the cluster as if they were enforced)
    /// decides it, beside the enforced answer above (see `staged::explain_with_staged`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged: Option<Box<StagedExplanation>>,
}

/// One check of a flow at a host endpoint (Calico's, or a Node under Cilium's host policies).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostExplanation {
    pub host_endpoint: String,
    pub node: String,
    pub path: crate::host::HostPath,
    pub direction: Direction,
    pub allowed: bool,
    /// When the flow's port is one of Felix's default failsafe ports for this direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failsafe: Option<String>,
    /// Each stage of the path (untracked, pre-DNAT, normal or forward policies), as a side of its own.
    pub stages: Vec<SideExplanation>,
    /// The HostEndpoint object's file and document (a Cilium host endpoint: the Node's).
    pub source: String,
    /// A Cilium host endpoint: a Node that Cilium's host policies select (see [`crate::host`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cilium: bool,
}

/// The flow in the staged view: the cluster as if its staged policies were enforced (Calico's "pending" verdict).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StagedExplanation {
    pub verdict: Verdict,
    /// Whether it differs from the enforced verdict.
    pub changed: bool,
    /// The staged policies that bear on the flow: those whose policy, in either view, selects the source for
    /// egress or the destination for ingress (a `Delete`: the policy it deletes selects it now).
    pub policies: Vec<StagedPolicyRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Each direction in the staged view, as in the enforced explanation (`walk`, `decided_by`, ...).
    pub egress: SideExplanation,
    pub ingress: SideExplanation,
}

/// A staged policy, as explanations name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StagedPolicyRef {
    /// `StagedNetworkPolicy`, `StagedGlobalNetworkPolicy` or `StagedKubernetesNetworkPolicy`.
    pub kind: &'static str,
    /// `namespace/name`, or `name` for a StagedGlobalNetworkPolicy.
    pub name: String,
    /// `Set`, `Delete`, `Learn` or `Ignore`.
    pub action: StagedAction,
    /// The enforced policy it sets or deletes, as explanations name policies.
    pub policy: String,
    /// The staged object's file and document.
    pub source: String,
}

/// An ICMP message: type and code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IcmpMessage {
    #[serde(rename = "type")]
    pub icmp_type: u8,
    pub code: u8,
}

/// `80/TCP`, or `ICMP type 8 code 0`.
pub fn flow_port_text(proto: Protocol, port: u16) -> String {
    if proto.has_ports() {
        format!("{port}/{proto}")
    } else {
        format!("{proto} type {} code {}", port >> 8, port & 0xff)
    }
}

fn reqs_text<'a>(reqs: impl Iterator<Item = &'a Requirement>) -> String {
    reqs.map(|r| r.to_string()).collect::<Vec<_>>().join(",")
}

impl Engine {
    /// Explains the verdict of one flow. Agrees with [`Engine::allowed`] (property-tested).
    pub fn explain(&self, src: &Endpoint, dst: &Endpoint, proto: Protocol, port: u16) -> Explanation {
        self.explain_named(src, dst, None, proto, port)
    }

    /// Explains the verdict of one flow whose destination address was resolved from the DNS name `dst_name`.
    /// Agrees with [`Engine::allowed_named`] (property-tested).
    pub fn explain_named(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        dst_name: Option<&str>,
        proto: Protocol,
        port: u16,
    ) -> Explanation {
        self.explain_flow(src, dst, crate::compile::FlowInfo { dst_name, request: None }, proto, port)
    }

    /// Explains the verdict of a flow with what it says beyond its ends and port. Agrees with
    /// [`Engine::allowed_flow`] (property-tested).
    pub fn explain_flow(
        &self,
        src: &Endpoint,
        dst: &Endpoint,
        info: crate::compile::FlowInfo<'_>,
        proto: Protocol,
        port: u16,
    ) -> Explanation {
        let dst_name = info.dst_name;
        let src_name = self.endpoint_name(src);
        let dst_label = self.endpoint_name(dst);
        let mut note = None;
        let same_pod = matches!((src, dst), (Endpoint::Pod { pod: a, .. }, Endpoint::Pod { pod: b, .. }) if a == b);
        if same_pod {
            note = Some(
                "source and destination are the same pod: the traffic never leaves the pod's network namespace, so \
                 NetworkPolicies do not govern it"
                    .to_string(),
            );
        }
        let (s_info, mut d_info) = (self.ep_info(src), self.ep_info(dst));
        d_info.name = dst_name;
        let places = (!self.heps.is_empty()).then(|| self.flow_places(src, &s_info, dst, &d_info));
        let host_named = places.and_then(|_| self.host_named_ports(dst));
        let fqdn = self.learnt_name(src, &s_info, dst_name);
        let flow = ExplainFlow { dst, proto, port, same_pod, host_named, request: info.request, fqdn };
        let egress = self.explain_side(src, dst, dst_name, Direction::Egress, &flow);
        let mut ingress = self.explain_side(dst, src, None, Direction::Ingress, &flow);
        if let Some((ip, node)) = self.from_own_node(src, dst) {
            let policies = if ingress.allowed { "" } else { " (its policies alone would deny it)" };
            let why = match self.cni {
                crate::cni::Cni::Antrea => {
                    "Antrea lets traffic from a pod's own node in before any policy (its OVS pipeline's local probe \
                     flows)"
                }
                crate::cni::Cni::Calico => {
                    "Calico lets traffic from a host into its local workloads unpoliced (Felix's host-to-workload \
                     path)"
                }
                crate::cni::Cni::Netpol => {
                    "the netpol agent exempts a node's own traffic to its pods (kubelet probes) by its source address"
                }
                _ => {
                    "Cilium lets traffic from a pod's own node in whatever the policies say (the agent's \
                     allow-localhost, `always` on Kubernetes)"
                }
            };
            ingress.note = Some(format!("allowed: {ip} is its own node {node}, and {why}{policies}"));
            ingress.allowed = true;
            ingress.decided_by = DecidedBy::OwnNode;
        }
        let (hosts, host_note) = match places {
            Some((sp, dp)) if !same_pod => {
                let hosts: Vec<HostExplanation> =
                    self.host_checks(sp, dp).map(|c| self.explain_host_check(c, src, dst, dst_name, &flow)).collect();
                (hosts, self.host_assumption(sp, dp))
            }
            _ => (Vec::new(), None),
        };
        let verdict =
            Verdict::from_bool(same_pod || (egress.allowed && ingress.allowed && hosts.iter().all(|h| h.allowed)));
        let icmp =
            (!proto.has_ports()).then_some(IcmpMessage { icmp_type: (port >> 8) as u8, code: (port & 0xff) as u8 });
        let calico_decides = |s: &SideExplanation| {
            s.policy_keys
                .iter()
                .any(|k| matches!(k.kind, PolicyKind::CalicoNetworkPolicy | PolicyKind::GlobalNetworkPolicy))
        };
        let caveat = (icmp.is_some() && !calico_decides(&egress) && !calico_decides(&ingress) && !same_pod).then(|| {
            "NetworkPolicy and the admin kinds do not define ICMP: this answer is what Calico and Cilium do (a rule \
             without ports or protocols allows it, isolation denies it); another CNI may differ"
                .to_string()
        });
        Explanation {
            src: src_name,
            dst: dst_label,
            dst_fqdn: dst_name.map(str::to_string),
            request: info.request.map(|r| r.to_string()),
            protocol: proto,
            port,
            icmp,
            verdict,
            note,
            caveat,
            egress,
            ingress,
            hosts,
            host_note,
            staged: None,
        }
    }

    /// Explains one direction: `subject`'s policies, `other` the peer (resolved from `other_name`).
    fn explain_side(
        &self,
        subject: &Endpoint,
        other: &Endpoint,
        other_name: Option<&str>,
        dir: Direction,
        flow: &ExplainFlow<'_>,
    ) -> SideExplanation {
        let (proto, port) = (flow.proto, flow.port);
        let mut side = SideExplanation {
            direction: dir,
            subject: self.endpoint_name(subject),
            allowed: true,
            isolated: false,
            note: None,
            policies: Vec::new(),
            policy_keys: Vec::new(),
            walk: Vec::new(),
            decided_by: DecidedBy::NotGoverned,
            tier_default: None,
            allowed_by: Vec::new(),
            rejections: Vec::new(),
            not_modelled: Vec::new(),
        };
        let pod_id = match subject {
            Endpoint::External(ip) => {
                side.note = Some(match self.host_endpoint_at(*ip) {
                    Some(h) => format!(
                        "{ip} is an address of host endpoint {}: no pod's policy applies on its side; the host \
                         endpoint's checks follow",
                        h.name
                    ),
                    None => format!(
                        "{} belongs to no pod: it is outside the cluster, so no policy applies on its side",
                        side.subject
                    ),
                });
                return side;
            }
            Endpoint::Pod { pod, .. } => *pod,
        };
        let pod = self.cluster.pod(pod_id);
        if pod.host_network {
            let hep = pod.primary_ip().and_then(|ip| self.host_endpoint_at(ip));
            side.note = Some(match hep {
                Some(h) => format!(
                    "{} uses hostNetwork: no pod policy applies (its traffic is the node's); its address is host \
                     endpoint {}'s, whose checks follow",
                    side.subject, h.name
                ),
                None => format!(
                    "{} uses hostNetwork: policies do not apply to host-network pods (their traffic is the node's)",
                    side.subject
                ),
            });
            return side;
        }
        let subject_ident = self.pod_identity[pod_id.index()];
        let pols = self.evaluation_order(self.identities[subject_ident.index()].policies(dir));
        // An Antrea or Cilium object lowers to several policies: each object once, at its first place.
        for &p in &pols {
            let key = self.cluster.policy_key(p);
            if !side.policy_keys.contains(&key) {
                if key.kind.is_antrea() {
                    side.not_modelled.extend(crate::load::antrea::unmodelled_rules(&self.cluster, &key, dir));
                }
                side.policies.push(key.to_string());
                side.policy_keys.push(key);
            }
        }
        side.isolated = self.isolated(subject_ident, dir);
        if pols.is_empty() {
            side.note = Some(format!("no policy selects {} for {dir}: not isolated, everything allowed", side.subject));
            return side;
        }
        if flow.same_pod {
            side.note = Some("same pod: not governed by policies".to_string());
            return side;
        }
        // The evaluator's own walk, recorded: what it decides is the verdict, and each rule it consulted is
        // reported with the outcome the walk saw. The model only supplies the words.
        let mut other_info = self.ep_info(other);
        other_info.name = other_name;
        if dir == Direction::Egress {
            other_info.fqdn = flow.fqdn;
        }
        let dst_named = self.ep_info(flow.dst).ident.map(|i| self.identities[i.index()].named_ports.as_slice());
        let dst_named = flow.host_named.or(dst_named);
        let mut record = Record::default();
        let q = Query { proto, port, dst_named, request: flow.request };
        let me_info = self.ep_info(subject);
        side.allowed = self.walk_side(subject_ident, &me_info, dir, &other_info, &q, &mut record);
        self.replay(&mut side, &pols, record.0, dir, flow, subject, other, other_name, Ends::AsTiers);
        side
    }

    /// Replays a recorded walk over `pols` (in evaluation order) into `side`: the rules that decided, tier by
    /// tier, and why the rules that could have allowed the flow did not. `side.allowed` is the walk's outcome.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn replay(
        &self,
        side: &mut SideExplanation,
        pols: &[PolicyId],
        steps: Vec<crate::eval::Step>,
        dir: Direction,
        flow: &ExplainFlow<'_>,
        subject: &Endpoint,
        other: &Endpoint,
        other_name: Option<&str>,
        ends: Ends,
    ) {
        let (proto, port) = (flow.proto, flow.port);
        let dst_pod = match flow.dst {
            Endpoint::Pod { pod, .. } => Some(self.cluster.pod(*pod)),
            Endpoint::External(_) => None,
        };
        // Replays the walk tier by tier: in an admin tier the first matching rule decides (or passes the rest of
        // the tier); in NetworkPolicy every matching rule allows. Rules after a decision are not reported.
        let tier_end = |tier: &crate::eval::Tier| match ends {
            Ends::AsTiers => tier.end,
            Ends::Pass => TierEnd::Continue,
        };
        let mut decided = false;
        let mut np_selected = false;
        let mut k = 0;
        // A pass held past the end of the previous tier (Antrea: on to the NetworkPolicy tier).
        let mut held = false;
        for (t, tier) in self.tiers.iter().enumerate() {
            let t = TierId::new(t);
            let tier_pols: Vec<PolicyId> = pols.iter().copied().filter(|&p| self.policy_tier(p) == t).collect();
            let mut passed = held;
            // Kubernetes NetworkPolicies alone: every matching rule allows (all are reported). Anywhere else the
            // first matching rule decides.
            let is_np = t == self.np_tier()
                && tier_pols.iter().all(|&p| self.cluster.policy(p).kind == PolicyKind::NetworkPolicy);
            if is_np && !decided {
                np_selected = !tier_pols.is_empty();
                for &polid in &tier_pols {
                    if self.cluster.policy(polid).rules(dir).is_empty() {
                        side.rejections.push(Rejection {
                            policy: self.cluster.policy_ref(polid),
                            rule: None,
                            reason: format!("has no {dir} rules: it only isolates"),
                            l7: false,
                            field: None,
                            policy_key: self.cluster.policy_key(polid),
                        });
                    }
                }
            }
            while let Some(step) = steps.get(k) {
                let rule = &self.rules[step.rule.index()];
                if rule.tier != t {
                    break;
                }
                k += 1;
                if decided || passed || rule.action == Action::Log {
                    continue;
                }
                let pol = self.cluster.policy(rule.policy);
                let ri = rule.index as usize;
                let Some(src_rule) = pol.rules(dir).get(ri) else { continue };
                let port_text = || port_entry_match(src_rule, proto, port, dst_pod);
                let peer_text = || {
                    src_rule
                        .peers
                        .iter()
                        .enumerate()
                        .map(|(i, p)| format!("peer {i} {}", self.peer_mismatch(pol, p, subject, other, other_name)))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                if step.ports && !step.local {
                    if rule.action == Action::Allow {
                        let why =
                            src_rule.calico.as_ref().and_then(|c| c.local.as_ref()).map_or_else(String::new, |l| {
                                let side = if dir == Direction::Ingress { "destination" } else { "source" };
                                format!("{} does not match the rule's {side} ({l})", self.endpoint_name(subject))
                            });
                        side.rejections.push(Rejection {
                            policy: self.cluster.policy_ref(rule.policy),
                            rule: Some(ri),
                            reason: why,
                            l7: false,
                            field: self.cilium_field(rule),
                            policy_key: self.cluster.policy_key(rule.policy),
                        });
                    }
                    continue;
                }
                if let Some(why) = src_rule.calico.as_ref().and_then(|c| calico_unevaluable_reason(c)) {
                    if rule.action == Action::Allow {
                        side.rejections.push(Rejection {
                            policy: self.cluster.policy_ref(rule.policy),
                            rule: Some(ri),
                            reason: why,
                            l7: false,
                            field: self.cilium_field(rule),
                            policy_key: self.cluster.policy_key(rule.policy),
                        });
                    }
                    continue;
                }
                if step.ports && step.peer.is_some() && !step.l7 {
                    if rule.action == Action::Allow {
                        side.rejections.push(Rejection {
                            policy: self.cluster.policy_ref(rule.policy),
                            rule: Some(ri),
                            reason: self.l7_refusal(rule, flow.request),
                            l7: true,
                            field: self.cilium_field(rule),
                            policy_key: self.cluster.policy_key(rule.policy),
                        });
                    }
                    continue;
                }
                let reason = match (step.ports, step.peer) {
                    (true, Some(peer)) => {
                        let mut m = self.rule_match(rule, &tier.name, peer, port_text().ok().flatten());
                        m.l7 = self.l7_words(rule, flow.request);
                        if !is_np {
                            m.tie = self.ties(rule.policy, pols);
                        }
                        match rule.action {
                            Action::Allow => {
                                side.allowed_by.push(m.clone());
                                if !is_np {
                                    decided = true;
                                    side.decided_by = DecidedBy::Rule;
                                }
                            }
                            Action::Deny | Action::Reject => {
                                decided = true;
                                side.decided_by = DecidedBy::Rule;
                            }
                            Action::Pass => {
                                passed = true;
                                if ends == Ends::AsTiers {
                                    m.skipped_tiers = self
                                        .pass_skips(t)
                                        .iter()
                                        .map(|u| self.tiers[u.index()].name.to_string())
                                        .collect();
                                }
                            }
                            Action::Log => {}
                        }
                        side.walk.push(m);
                        continue;
                    }
                    (false, Some(_)) => port_text().err().unwrap_or_default(),
                    (true, None) => peer_text(),
                    (false, None) => format!("{}; and {}", port_text().err().unwrap_or_default(), peer_text()),
                };
                if rule.action == Action::Allow {
                    side.rejections.push(Rejection {
                        policy: self.cluster.policy_ref(rule.policy),
                        rule: Some(ri),
                        reason,
                        l7: false,
                        field: self.cilium_field(rule),
                        policy_key: self.cluster.policy_key(rule.policy),
                    });
                }
            }
            held = passed && tier.hold && ends == Ends::AsTiers;
            if is_np && !decided && np_selected {
                decided = true;
                side.decided_by = DecidedBy::NetworkPolicy;
            } else if !is_np && !decided && !passed && tier_end(tier) == TierEnd::Deny && !tier_pols.is_empty() {
                decided = true;
                side.decided_by = DecidedBy::TierDefault;
                side.tier_default = Some(tier.name.to_string());
            }
        }
        if !decided {
            side.decided_by = DecidedBy::Default;
        }
        if side.allowed {
            side.rejections.clear();
        }
    }

    /// The words of a matching rule.
    fn rule_match(&self, rule: &CRule, tier: &str, peer: Option<usize>, port: Option<String>) -> RuleMatch {
        let pol = self.cluster.policy(rule.policy);
        let ri = rule.index as usize;
        // An Antrea object's rule is a policy of its own (or two rules of one, with HTTP rules): its index in the
        // object is the policy's position.
        let in_object = if pol.kind.is_antrea() { pol.position as usize } else { ri };
        let key = RuleKey { policy: self.cluster.policy_key(rule.policy), index: in_object };
        let dir = rule.dir;
        RuleMatch {
            tier: tier.to_string(),
            policy: key.policy.to_string(),
            priority: (pol.kind != PolicyKind::NetworkPolicy && pol.order.0.is_some()).then_some(pol.order),
            rule: in_object,
            // A Cilium rule's name is its field path (below).
            name: pol.rules(dir).get(ri).and_then(|r| r.name.clone()).filter(|_| !pol.kind.is_cilium()),
            action: rule.action,
            peer,
            port,
            // A Cilium policy's deny rules are its `ingressDeny`/`egressDeny` (they are the rules of its deny part).
            // (A Cilium label requirement is a deny rule named after its own field.)
            field: match pol.rules(dir).get(ri).and_then(|r| r.name.as_deref()) {
                Some(n) if pol.kind.is_cilium() => n.to_string(),
                _ if pol.kind.is_cilium() && rule.action == Action::Deny => format!("spec.{dir}Deny[{ri}]"),
                _ => format!("spec.{dir}[{in_object}]"),
            },
            source: pol.origin.to_string(),
            l7: None,
            tie: Vec::new(),
            skipped_tiers: Vec::new(),
            key,
        }
    }

    /// What a matching rule's L7 rules do with the flow's request, in words (`None` without L7 rules).
    fn l7_words(&self, rule: &CRule, request: Option<&crate::l7::Request>) -> Option<String> {
        let spec = self.l7_spec(rule)?;
        let l7 = self.l7_rules(rule.l7?);
        Some(match request {
            None if self.cluster.policy(rule.policy).kind.is_antrea() => format!(
                "the connection is accepted and handed to Antrea's L7 engine ({}): requests on it are then filtered \
                 by {spec}",
                spec.parser()
            ),
            None => format!(
                "the connection is accepted and handed to Cilium's {} proxy: requests on it are then filtered by {spec}",
                spec.parser()
            ),
            Some(_) if l7.other => format!("{spec}: netpol does not judge these requests"),
            Some(req) => match l7.first_match(req) {
                Some(i) => {
                    let text = match req {
                        crate::l7::Request::Http(_) => crate::l7::http_rule_text(&spec.http[i]),
                        crate::l7::Request::Dns(_) => format!("DNS {}", spec.dns[i]),
                    };
                    format!("{req} allowed by its L7 rule {i} ({text})")
                }
                None => format!("{req}: no L7 rule matches"),
            },
        })
    }

    /// Why a rule that matches the connection refuses the flow's request.
    fn l7_refusal(&self, rule: &CRule, request: Option<&crate::l7::Request>) -> String {
        let spec = self.l7_spec(rule).map(|s| s.to_string()).unwrap_or_default();
        match request {
            Some(req @ crate::l7::Request::Http(_)) if self.l7_spec(rule).is_some_and(|s| s.http.is_empty()) => {
                format!("matches the connection, but its port carries DNS rules: the proxy refuses {req}")
            }
            Some(req @ crate::l7::Request::Dns(_)) if self.l7_spec(rule).is_some_and(|s| s.dns.is_empty()) => {
                format!("matches the connection, but its port carries HTTP rules: the proxy refuses the {req}")
            }
            Some(req) => format!("matches the connection, but its L7 rules refuse {req} (none matches: {spec})"),
            None => String::new(),
        }
    }

    /// A Cilium rule's field path (its name).
    fn cilium_field(&self, rule: &CRule) -> Option<String> {
        let pol = self.cluster.policy(rule.policy);
        if !pol.kind.is_cilium() {
            return None;
        }
        pol.rules(rule.dir).get(rule.index as usize)?.name.clone()
    }

    /// The L7 rules (as written) a compiled rule carries.
    fn l7_spec(&self, rule: &CRule) -> Option<&crate::l7::L7Rules> {
        rule.l7?;
        let pol = self.cluster.policy(rule.policy);
        pol.rules(rule.dir).get(rule.index as usize)?.l7.as_deref()
    }

    /// The policies of `pols` other than `pol` with its tier and priority (admin tiers): those whose order
    /// relative to `pol` the API leaves undefined.
    fn ties(&self, pol: PolicyId, pols: &[PolicyId]) -> Vec<String> {
        let p = self.cluster.policy(pol);
        if p.tier == PolicyTier::NetworkPolicy {
            return Vec::new();
        }
        // The other policies of the same object (an Antrea object's rules, a Cilium object's parts) are no tie.
        let same_object = |q: &Policy| q.kind == p.kind && q.ns() == p.ns() && q.name == p.name;
        let mut refs: Vec<String> = pols
            .iter()
            .filter(|&&o| o != pol)
            .filter(|&&o| {
                let q = self.cluster.policy(o);
                q.tier == p.tier && q.order == p.order && !same_object(q)
            })
            .map(|&o| self.cluster.policy_ref(o))
            .collect();
        let mut seen = std::collections::HashSet::new();
        refs.retain(|r| seen.insert(r.clone()));
        refs
    }

    fn peer_mismatch(&self, pol: &Policy, peer: &Peer, me: &Endpoint, ep: &Endpoint, name: Option<&str>) -> String {
        self.peer_mismatch_opt(pol, peer, me, ep, name).unwrap_or_default()
    }

    /// `None` if the peer matches the endpoint (resolved from the DNS name `name`); otherwise why not.
    fn peer_mismatch_opt(
        &self,
        pol: &Policy,
        peer: &Peer,
        me: &Endpoint,
        ep: &Endpoint,
        name: Option<&str>,
    ) -> Option<String> {
        let c = &self.cluster;
        match peer {
            Peer::SubjectNodes { own, others } => {
                let (mine, theirs) = (self.ep_info(me).node, self.ep_info(ep).addr_node);
                let node = |n: Option<u32>| n.and_then(|n| c.nodes.get(n as usize)).map(|n| n.name.as_str());
                let what = match (own, others) {
                    (true, true) => "host, remote-node",
                    (true, false) => "host",
                    _ => "remote-node",
                };
                let subject = self.endpoint_name(me);
                let on = match node(mine) {
                    Some(n) => format!("{subject} runs on node {n}"),
                    None => format!("{subject} runs on no node of the input"),
                };
                match node(theirs) {
                    None => Some(format!("(entity {what}): {} is no node's address", self.endpoint_name(ep))),
                    Some(t) if mine == theirs && !own => Some(format!(
                        "(entity {what}): {} is node {t}, the subject's own node ({on})",
                        self.endpoint_name(ep)
                    )),
                    Some(t) if mine != theirs && !others => Some(format!(
                        "(entity {what}): {} is node {t}, not the subject's node ({on})",
                        self.endpoint_name(ep)
                    )),
                    Some(_) => None,
                }
            }
            Peer::NodeSelector(sel) => {
                let (mine, theirs) = (self.ep_info(me).node, self.ep_info(ep).addr_node);
                let node = |n: Option<u32>| n.and_then(|n| c.nodes.get(n as usize));
                match node(theirs) {
                    None => Some(format!("(node selector {sel}): {} is no node's address", self.endpoint_name(ep))),
                    Some(t) if mine == theirs => Some(format!(
                        "(node selector {sel}): {} is node {}, the subject's own node, which a node selector never \
                         selects",
                        self.endpoint_name(ep),
                        t.name
                    )),
                    Some(t) if !sel.matches(&t.labels) => Some(format!(
                        "(node selector {sel}): {} is node {}, whose labels it does not match",
                        self.endpoint_name(ep),
                        t.name
                    )),
                    Some(_) => None,
                }
            }
            Peer::Calico(c) if pol.kind.is_cilium() => Some(format!("({c}) does not match {}", self.endpoint_name(ep))),
            Peer::Calico(_) => Some("(Calico peer)".to_string()),
            Peer::IpBlock(b) => match self.endpoint_ip(ep) {
                None => Some(format!("(ipBlock {b}) needs an IP; {} has none", self.endpoint_name(ep))),
                Some(ip) if self.cni.ip_block_outside_only() && b.contains(ip) && self.in_cluster(ep, ip) => {
                    Some(format!(
                        "(ipBlock {b}): {ip} is {}'s, which Cilium selects only by identity",
                        self.endpoint_name(ep)
                    ))
                }
                Some(ip) if !b.cidr.contains(&ip) => Some(format!("(ipBlock {b}): {ip} is not in {}", b.cidr)),
                Some(ip) => b
                    .except
                    .iter()
                    .find(|e| e.contains(&ip))
                    .map(|e| format!("(ipBlock {b}): {ip} is in the exception {e}")),
            },
            Peer::Networks(nets) => match self.endpoint_ip(ep) {
                None => Some(format!("(networks) needs an IP; {} has none", self.endpoint_name(ep))),
                Some(ip) if nets.iter().any(|n| n.contains(&ip)) => None,
                Some(ip) => Some(format!("(networks {}): {ip} is in none of them", join(nets))),
            },
            Peer::Nodes(sel) => {
                let ip = self.endpoint_ip(ep)?;
                let node = c.nodes.iter().find(|n| n.ips.iter().any(|a| a.to_canonical() == ip));
                match node {
                    Some(n) if sel.matches(&n.labels) => None,
                    Some(n) => Some(format!(
                        "(nodes) requires node labels {}; {ip} is node {}, which has {}",
                        reqs_text(sel.failed_requirements(&n.labels)),
                        n.name,
                        format_labels(&n.labels)
                    )),
                    None => Some(format!("(nodes `{sel}`): {ip} is not the address of any node")),
                }
            }
            Peer::Fqdns(sels) => {
                let list = sels.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
                match name {
                    None => Some(format!(
                        "(toFQDNs {list}) matches an address by the name it was resolved from; the flow names none \
                         (`dst_fqdn`)"
                    )),
                    Some(_) if matches!(ep, Endpoint::Pod { .. }) => {
                        Some(format!("(toFQDNs {list}) never selects a pod's address (pods carry their identity)"))
                    }
                    Some(n) => {
                        let pats: Vec<crate::l7::DnsPattern> = sels
                            .iter()
                            .filter_map(|d| crate::l7::DnsPattern::from_selector(&d.match_name, &d.match_pattern).ok())
                            .collect();
                        if !pats.iter().any(|p| p.matches(n)) {
                            Some(format!("(toFQDNs {list}): {n} matches none of them"))
                        } else {
                            // The name matches: the source's DNS did not go through a rule that allows it.
                            Some(format!(
                                "(toFQDNs {list}): {n} matches, but Cilium never learns its addresses for this source: \
                                 none of its egress rules sends DNS through the proxy with a `rules.dns` entry that \
                                 allows {n}"
                            ))
                        }
                    }
                }
            }
            Peer::DomainNames(names) => match name {
                None => Some(format!(
                    "(domainNames {}) matches a destination by the name it was resolved from; the flow names none \
                     (`dst_fqdn`)",
                    names.join(", ")
                )),
                Some(n) if names.iter().any(|d| crate::compile::domain_matches(d, n)) => None,
                Some(n) => Some(format!("(domainNames {}): {n} matches none of them", names.join(", "))),
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
                    None if pol.ns().is_some_and(|own| p.ns != own) => {
                        return Some(format!(
                            "has no namespaceSelector, so it selects pods in namespace {} only; {} is in namespace {}",
                            pol.ns().map_or("", |own| c.ns_name(own)),
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

/// One matching rule of an admin tier: `[Admin] anp/x (priority 10) ingress rule 2 "name": Pass, peer 0, port
/// 80/TCP (file (document 0), spec.ingress[2])`.
fn rule_line(m: &RuleMatch) -> String {
    // Calico calls it `order`; the admin kinds `priority`.
    let word = match m.key.policy.kind {
        PolicyKind::CalicoNetworkPolicy | PolicyKind::GlobalNetworkPolicy => "order",
        _ => "priority",
    };
    let prio = m.priority.map(|p| format!(" ({word} {p})")).unwrap_or_default();
    let name = m.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
    let dir = m.field.split(['.', '[']).nth(1).unwrap_or("");
    let peer = m.peer.map_or("any peer".to_string(), |p| format!("peer {p}"));
    let port = m.port.as_ref().map_or("any port".to_string(), |p| format!("port {p}"));
    // In the words of the policy's own API: ClusterNetworkPolicy accepts, the v1alpha1 kinds allow.
    let action = match m.action {
        Action::Allow if m.key.policy.kind == PolicyKind::ClusterNetworkPolicy => "Accept",
        Action::Allow => "Allow",
        Action::Deny if m.key.policy.kind.is_antrea() => "Drop",
        Action::Deny => "Deny",
        Action::Reject => "Reject",
        Action::Pass => "Pass",
        Action::Log => "Log",
    };
    format!(
        "[{}] {}{prio} {dir} rule {}{name}: {action}, {peer}, {port} ({}, {})",
        m.tier, m.policy, m.rule, m.source, m.field
    )
}

/// The NetworkPolicy part of a side: the allowing rules, or why none allows.
fn render_np(s: &mut String, side: &SideExplanation, indent: &str) {
    // Kubernetes NetworkPolicies' rules (their tier is `NetworkPolicy`, or Calico's `default`).
    for m in side.allowed_by.iter().filter(|m| m.key.policy.kind == PolicyKind::NetworkPolicy) {
        let peer = m.peer.map_or("any peer (no from/to)".to_string(), |p| format!("peer {p}"));
        let port = m.port.clone().unwrap_or_else(|| "any port (no ports)".to_string());
        let _ = writeln!(s, "{indent}allowed by {} rule {} {peer}, port {port}", m.policy, m.rule);
    }
    if !side.allowed && side.decided_by == DecidedBy::NetworkPolicy {
        let _ = writeln!(s, "{indent}no rule allows it:");
        for r in &side.rejections {
            match r.rule {
                Some(i) => {
                    let _ = writeln!(s, "{indent}- {} rule {i}: {}", r.policy, r.reason);
                }
                None => {
                    let _ = writeln!(s, "{indent}- {} {}", r.policy, r.reason);
                }
            }
        }
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
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

/// The flow an explanation is about.
pub(crate) struct ExplainFlow<'a> {
    pub(crate) dst: &'a Endpoint,
    pub(crate) proto: Protocol,
    pub(crate) port: u16,
    pub(crate) same_pod: bool,
    /// The destination's named ports when it is a host endpoint.
    pub(crate) host_named: Option<&'a [(u32, Protocol, u16)]>,
    /// The request on the connection.
    pub(crate) request: Option<&'a crate::l7::Request>,
    /// The destination's name when Cilium learnt the address from it (see [`Engine::dns_learns`]).
    pub(crate) fqdn: Option<&'a str>,
}

impl Explanation {
    /// Human-readable rendering: the enforced answer, then the staged view's when there is one.
    pub fn render(&self) -> String {
        let mut s = self.render_enforced();
        if let Some(staged) = &self.staged {
            self.render_staged(&mut s, staged);
        }
        s
    }

    /// `STAGED <verdict> <flow>: ...`, the staged policies on the flow, and each direction in the staged view
    /// (rendered as the enforced directions are).
    fn render_staged(&self, s: &mut String, st: &StagedExplanation) {
        let (verdict, enforced) = (st.verdict.as_str().to_uppercase(), self.verdict.as_str().to_uppercase());
        let _ = writeln!(
            s,
            "STAGED {verdict} {} -> {}{} {}/{}: the verdict if the staged policies were enforced ({} the enforced \
             {enforced})",
            self.src,
            self.dst,
            self.dst_fqdn.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
            self.port,
            self.protocol,
            if st.changed { "changes" } else { "keeps" },
        );
        if let Some(n) = &st.note {
            let _ = writeln!(s, "  {n}");
            return;
        }
        if st.policies.is_empty() {
            let _ = writeln!(
                s,
                "  no staged policy selects {} for egress or {} for ingress",
                st.egress.subject, st.ingress.subject
            );
            return;
        }
        let list: Vec<String> = st
            .policies
            .iter()
            .map(|p| format!("{} {} ({}: {}, {})", p.kind, p.name, p.action, p.policy, p.source))
            .collect();
        let _ = writeln!(s, "  staged policies on this flow: {}", list.join("; "));
        render_sides(s, [&st.egress, &st.ingress]);
    }

    /// The enforced answer.
    fn render_enforced(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} -> {}{} {}{}",
            self.verdict.as_str().to_uppercase(),
            self.src,
            self.dst,
            self.dst_fqdn.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
            flow_port_text(self.protocol, self.port),
            self.request.as_ref().map(|r| format!(", {r}")).unwrap_or_default(),
        );
        if let Some(c) = &self.caveat {
            let _ = writeln!(s, "  note: {c}");
        }
        if let Some(n) = &self.note {
            let _ = writeln!(s, "  {n}");
            return s;
        }
        render_sides(&mut s, [&self.egress, &self.ingress]);
        for h in &self.hosts {
            let status = if h.allowed { "allowed" } else { "DENIED" };
            let _ = if h.cilium {
                writeln!(s, "  host of node {} (Cilium host policies), {}: {status}", h.node, h.path.describe())
            } else {
                writeln!(s, "  host endpoint {} (node {}), {}: {status}", h.host_endpoint, h.node, h.path.describe())
            };
            if let Some(f) = &h.failsafe {
                let _ = writeln!(s, "    {f}");
            }
            for st in &h.stages {
                if st.policies.is_empty() || st.walk.is_empty() && st.decided_by != DecidedBy::TierDefault {
                    let _ = writeln!(s, "    {}: {}", st.subject, st.note.as_deref().unwrap_or("no policy"));
                    if !st.policies.is_empty() {
                        let _ = writeln!(s, "      policies: {}", st.policies.join(", "));
                    }
                    continue;
                }
                let mut inner = String::new();
                render_sides(&mut inner, [st]);
                if let Some(n) = &st.note {
                    let _ = writeln!(inner, "  {n}");
                }
                for line in inner.lines() {
                    let _ = writeln!(s, "  {line}");
                }
            }
        }
        if let Some(n) = &self.host_note {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }
}

/// Each direction of an explanation: not isolated, NetworkPolicy isolation and its rules, or the walk tier by tier.
fn render_sides<const N: usize>(s: &mut String, sides: [&SideExplanation; N]) {
    for side in sides {
        let what = match side.direction {
            Direction::Egress => format!("egress from {}", side.subject),
            Direction::Ingress => format!("ingress to {}", side.subject),
        };
        let status = if side.allowed { "allowed" } else { "DENIED" };
        if side.policies.is_empty() {
            let _ = writeln!(s, "  {what}: {status}: {}", side.note.as_deref().unwrap_or("not isolated"));
            continue;
        }
        let only_np = side.policy_keys.iter().all(|k| k.kind == PolicyKind::NetworkPolicy);
        if only_np {
            let _ = writeln!(s, "  {what}: {status}; isolated by {}", side.policies.join(", "));
            if side.decided_by == DecidedBy::OwnNode {
                let _ = writeln!(s, "    {}", side.note.as_deref().unwrap_or_default());
            }
            render_np(s, side, "    ");
            continue;
        }
        // Tier by tier.
        let _ = writeln!(s, "  {what}: {status}");
        for n in &side.not_modelled {
            let _ = writeln!(s, "    not modelled: {n}");
        }
        let verdict = if side.allowed { "ALLOW" } else { "DENY" };
        let np: Vec<&str> = side
            .policies
            .iter()
            .zip(&side.policy_keys)
            .filter(|(_, k)| k.kind == PolicyKind::NetworkPolicy)
            .map(|(p, _)| p.as_str())
            .collect();
        let mut np_done = false;
        for (i, m) in side.walk.iter().enumerate() {
            if m.key.policy.kind == PolicyKind::NetworkPolicy {
                if !np_done {
                    np_done = true;
                    let _ = writeln!(s, "    [{}] isolated by {} → {verdict}", m.tier, np.join(", "));
                    render_np(s, side, "      ");
                }
                continue;
            }
            let last = i + 1 == side.walk.len() && side.decided_by == DecidedBy::Rule;
            let outcome = match m.action {
                Action::Pass if !m.skipped_tiers.is_empty() => {
                    format!(" → past tiers {} (to the NetworkPolicy tier)", m.skipped_tiers.join(", "))
                }
                Action::Pass => " → next tier".to_string(),
                _ if last => format!(" → {verdict}"),
                _ => String::new(),
            };
            let _ = writeln!(s, "    {}{outcome}", rule_line(m));
            if let Some(l7) = &m.l7 {
                let _ = writeln!(s, "      {l7}");
            }
            if !m.tie.is_empty() {
                let _ = writeln!(
                    s,
                    "      priority {} is shared with {}: the API leaves their order undefined",
                    m.priority.unwrap_or_default(),
                    m.tie.join(", ")
                );
            }
        }
        // Why the rules that could have let it through do not: Cilium's (its users have no other trace).
        for r in side.rejections.iter().filter(|r| r.l7 || r.policy_key.kind.is_cilium()) {
            let at = r.field.clone().unwrap_or_else(|| format!("rule {}", r.rule.unwrap_or_default()));
            let _ = writeln!(s, "    {} {at}: {}", r.policy, r.reason);
        }
        match side.decided_by {
            DecidedBy::OwnNode => {
                let _ = writeln!(s, "    {}", side.note.as_deref().unwrap_or_default());
            }
            DecidedBy::NetworkPolicy if !np_done => {
                let _ = writeln!(s, "    [NetworkPolicy] isolated by {} → {verdict}", np.join(", "));
                render_np(s, side, "      ");
            }
            DecidedBy::Default => {
                let _ = writeln!(s, "    no tier decides → ALLOW (Kubernetes' default)");
            }
            DecidedBy::TierDefault if side.policy_keys.iter().any(|k| k.kind.is_cilium()) => {
                // Cilium's default deny: a policy with rules of this direction selects the endpoint.
                let tier = side.tier_default.as_deref().unwrap_or_default();
                let _ = writeln!(
                    s,
                    "    [{tier}] a policy with {} rules selects {} and none allows it: default deny → DENY",
                    side.direction.as_str(),
                    side.subject
                );
            }
            DecidedBy::TierDefault => {
                let tier = side.tier_default.as_deref().unwrap_or_default();
                let _ = writeln!(
                    s,
                    "    [{tier}] a policy of the tier selects {} and no rule decides: the tier's defaultAction \
                     is Deny → DENY",
                    side.subject
                );
            }
            _ => {}
        }
    }
}

/// Why a Calico rule matches no traffic in netpol, if it has a criterion netpol cannot evaluate.
fn calico_unevaluable_reason(c: &crate::model::CalicoRule) -> Option<String> {
    if let Some(u) = &c.unsupported {
        return Some(format!("netpol cannot evaluate this rule ({u}): it matches no traffic here"));
    }
    (!c.src_ports.is_empty() || !c.not_src_ports.is_empty())
        .then(|| "the rule matches source ports, which flows do not carry: it matches no traffic here".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// b/client's egress to a/web: `deny-a` (Deny) and `allow-web` (Allow 8080) of priority `p`, both selecting
    /// b/client, and `other` (priority 10, Deny everything) selecting pods of namespace a only.
    fn engine(p: u32) -> Engine {
        let yaml = format!(
            r#"
apiVersion: v1
kind: Namespace
metadata: {{name: a, labels: {{team: a}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: a, labels: {{app: web}}}}
spec: {{containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]}}
status: {{podIP: 10.0.0.1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: b}}
spec: {{containers: [{{name: c}}]}}
status: {{podIP: 10.0.1.1}}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: deny-a}}
spec:
  priority: 10
  subject: {{namespaces: {{matchLabels: {{kubernetes.io/metadata.name: b}}}}}}
  egress: [{{action: Deny, to: [{{namespaces: {{matchLabels: {{team: a}}}}}}]}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: allow-web}}
spec:
  priority: {p}
  subject: {{namespaces: {{matchLabels: {{kubernetes.io/metadata.name: b}}}}}}
  egress: [{{name: web, action: Allow, to: [{{namespaces: {{matchLabels: {{team: a}}}}}}], ports: [{{portNumber: {{port: 8080}}}}]}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: other}}
spec:
  priority: 10
  subject: {{namespaces: {{matchLabels: {{team: a}}}}}}
  egress: [{{action: Deny, to: [{{namespaces: {{}}}}]}}]
"#
        );
        let loaded = crate::load::load_str("tie.yaml", &yaml);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        Engine::new(loaded.cluster)
    }

    fn explain(e: &Engine, port: u16) -> Explanation {
        let pod =
            |ns: &str, name: &str| Endpoint::Pod { pod: e.cluster().find_pod(ns, name).unwrap_or_default(), ip: None };
        e.explain(&pod("b", "client"), &pod("a", "web"), Protocol::Tcp, port)
    }

    #[test]
    fn a_deciding_rule_whose_priority_is_shared_says_so() {
        let e = engine(10);
        let x = explain(&e, 8080);
        assert_eq!(x.verdict, Verdict::Allow);
        assert_eq!(x.egress.walk.len(), 1, "{x:?}");
        let m = &x.egress.walk[0];
        assert_eq!((m.policy.as_str(), m.action), ("anp/allow-web", Action::Allow));
        // `other` has the same priority but does not select the client: no tie for this flow.
        assert_eq!(m.tie, ["anp/deny-a"]);
        assert_eq!(x.egress.allowed_by[0].tie, ["anp/deny-a"]);
        let text = x.render();
        assert!(
            text.contains(
                "[Admin] anp/allow-web (priority 10) egress rule 0 \"web\": Allow, peer 0, port 8080/TCP (tie.yaml \
                 (document 4), spec.egress[0]) → ALLOW\n      priority 10 is shared with anp/deny-a: the API leaves \
                 their order undefined\n"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&x).unwrap_or_default();
        assert_eq!(json["egress"]["walk"][0]["tie"], serde_json::json!(["anp/deny-a"]));
        // The Deny decides the other ports, with the same tie.
        let x = explain(&e, 9000);
        assert_eq!(x.egress.walk.last().map(|m| m.tie.clone()), Some(vec!["anp/allow-web".to_string()]));
    }

    #[test]
    fn distinct_priorities_are_no_tie() {
        let x = explain(&engine(5), 8080);
        assert!(x.egress.walk.iter().all(|m| m.tie.is_empty()), "{x:?}");
        assert!(!x.render().contains("shared with"));
        let json = serde_json::to_value(&x).unwrap_or_default();
        assert!(json["egress"]["walk"][0].get("tie").is_none(), "{json}");
    }
}
