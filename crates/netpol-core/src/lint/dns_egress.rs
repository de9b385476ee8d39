//! NP003 egress-without-dns.
//!
//! **What it finds**: pods a NetworkPolicy isolates for egress that cannot reach cluster DNS (kube-dns in
//! kube-system, or the `lint.dns` setting) on UDP 53 and TCP 53. The admin tiers isolate nothing; where one of
//! their Deny rules is what blocks DNS, NP018 (admin-deny-dns) reports the rule and this rule stays quiet.
//! **Why it is bad**: once egress is isolated, DNS must be allowed explicitly; without it every name lookup times
//! out, which looks like a network outage. TCP 53 is needed for large answers (truncation falls back to TCP).
//! **Instead**: add an egress rule to `namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}`
//! + `podSelector: {matchLabels: {k8s-app: kube-dns}}` on 53/UDP and 53/TCP.

use std::collections::{BTreeMap, BTreeSet};

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{Endpoint, IdentityId};
use crate::load::NAMESPACE_NAME_LABEL;
use crate::model::{Action, Direction, Peer, PodId, PolicyId, PolicyTier, PortMatch};
use crate::portset::Protocol;
use crate::selector::Labels;

pub static RULE: RuleInfo = RuleInfo {
    code: "NP003",
    name: "egress-without-dns",
    severity: Severity::Error,
    explanation: "These pods are isolated for egress but cannot reach cluster DNS on UDP 53 and TCP 53. Once a \
                  policy isolates egress, DNS must be allowed explicitly; without it every name lookup times out, \
                  which looks like a network outage. TCP 53 is needed for answers too large for UDP.",
    check,
};

const HELP: &str = "add an egress rule to namespaceSelector {kubernetes.io/metadata.name: kube-system} + podSelector \
                    {k8s-app: kube-dns} on ports 53/UDP and 53/TCP (one peer, both selectors)";

/// Where cluster DNS lives (the `lint.dns` setting, or namespace kube-system, pods k8s-app=kube-dns) and its pods
/// in the input.
pub(super) struct Dns {
    pub ns: String,
    pub labels: Labels,
    pub pods: Vec<PodId>,
}

pub(super) fn dns(ctx: &Ctx) -> Dns {
    let c = &ctx.engine.cluster;
    let (ns, labels): (String, Labels) = match &ctx.config.dns {
        Some(d) => (d.namespace.clone(), d.pod_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()),
        None => ("kube-system".into(), Labels::from_iter([("k8s-app", "kube-dns")])),
    };
    let pods: Vec<PodId> = (0..c.pods.len())
        .map(PodId::new)
        .filter(|&p| {
            let pod = c.pod(p);
            c.ns_name(pod.ns) == ns && labels.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
        })
        .collect();
    Dns { ns, labels, pods }
}

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    let Dns { ns: dns_ns, labels: dns_labels, pods: dns_pods } = dns(ctx);
    // Group by egress profile: one finding per distinct set of isolating NetworkPolicies.
    let mut groups: BTreeMap<Vec<PolicyId>, (Vec<IdentityId>, BTreeSet<&'static str>)> = BTreeMap::new();
    for (i, ident) in e.identities.iter().enumerate() {
        // Isolation is NetworkPolicy's: the admin tiers isolate nothing (NP018 reports their Deny rules).
        if ident.host_network || !e.isolated(IdentityId::new(i), Direction::Egress) {
            continue;
        }
        let nps: Vec<PolicyId> =
            ident.egress_policies.iter().copied().filter(|&p| c.policy(p).tier == PolicyTier::NetworkPolicy).collect();
        let Some(&rep) = ident.pods.first() else { continue };
        let src = Endpoint::Pod { pod: rep, ip: None };
        let ok = |proto: Protocol| -> bool {
            if dns_pods.is_empty() {
                return hypothetical_allows(ctx, &nps, &dns_ns, &dns_labels, proto);
            }
            let to = |d: PodId| Endpoint::Pod { pod: d, ip: None };
            dns_pods.iter().any(|&d| e.allowed(&src, &to(d), proto, 53))
                // An admin rule's Deny is NP018's finding, not this one's.
                || dns_pods.iter().any(|&d| !super::admin_dns::blockers(e, rep, d, proto).is_empty())
        };
        let mut missing = BTreeSet::new();
        if !ok(Protocol::Udp) {
            missing.insert("53/UDP");
        }
        if !ok(Protocol::Tcp) {
            missing.insert("53/TCP");
        }
        if missing.is_empty() {
            continue;
        }
        let g = groups.entry(nps).or_default();
        g.0.push(IdentityId::new(i));
        g.1.extend(missing);
    }
    for (pols, (ids, missing)) in groups {
        let Some(&first) = pols.first() else { continue };
        let pol_names: Vec<String> = pols.iter().map(|&p| c.policy_ref(p)).collect();
        let missing: Vec<&str> = ["53/UDP", "53/TCP"].into_iter().filter(|m| missing.contains(m)).collect();
        let target = if dns_pods.is_empty() {
            format!(
                "pods {} in namespace {dns_ns} (none in the input; checked against the labels)",
                crate::selector::format_labels(&dns_labels)
            )
        } else {
            format!("cluster DNS ({} pod(s) in {dns_ns})", dns_pods.len())
        };
        let msg = format!(
            "egress of {} is isolated by {} but {} to {target} is not allowed",
            ctx.pod_list(&ids, 3),
            pol_names.join(", "),
            missing.join(" and ")
        );
        // Calico writes the policy types as `types`.
        let field = if super::calico::is_calico(c.policy(first)) { "spec.types" } else { "spec.policyTypes" };
        out.push(ctx.policy_finding(&RULE, first, Some(field.into()), msg, HELP));
    }
}

/// Whether the egress rules of `pols` allow DNS to a pod with `labels` in namespace `ns`, on `proto`/53. A Calico
/// rule counts unless it plainly cannot: another action, another protocol, ports without 53, a selector the pod's
/// labels (as Calico sees them, without a service account) fail; its `nets` may hold the pod's address.
fn hypothetical_allows(ctx: &Ctx, pols: &[PolicyId], ns: &str, labels: &Labels, proto: Protocol) -> bool {
    let c = &ctx.engine.cluster;
    let ns_labels: Labels = match c.namespace_id(ns) {
        Some(id) => c.ns(id).labels.clone(),
        None => Labels::from_iter([(NAMESPACE_NAME_LABEL, ns)]),
    };
    let namespace = crate::model::Namespace { name: ns.to_string(), labels: ns_labels.clone(), origin: None };
    let calico_labels = crate::model::calico_labels(labels, &namespace, None, "");
    let proto_number = proto.number();
    pols.iter().any(|&p| {
        let pol = c.policy(p);
        pol.rules(Direction::Egress).iter().any(|r| {
            let port_ok = r.ports.is_empty()
                || r.ports.iter().any(|pp| {
                    pp.protocol == proto
                        && match &pp.port {
                            PortMatch::Any => true,
                            PortMatch::Range(lo, hi) => *lo <= 53 && 53 <= *hi,
                            PortMatch::Named(n) => n == "dns" || n == "dns-tcp",
                        }
                });
            let calico_ok = r.calico.as_ref().is_none_or(|cr| {
                r.action == Action::Allow
                    && cr.protocol.is_none_or(|n| n == proto_number)
                    && cr.not_protocol != Some(proto_number)
            });
            let peer_ok = r.peers.is_empty()
                || r.peers.iter().any(|peer| match peer {
                    Peer::IpBlock(_)
                    | Peer::Networks(_)
                    | Peer::Nodes(_)
                    | Peer::DomainNames(_)
                    | Peer::Fqdns(_)
                    | Peer::SubjectNodes { .. }
                    | Peer::NodeSelector(_) => false,
                    Peer::Calico(cp) => {
                        cp.selector.as_ref().is_none_or(|s| s.matches(&calico_labels))
                            && cp.not_selector.as_ref().is_none_or(|s| !s.matches(&calico_labels))
                    }
                    Peer::Selectors { namespaces, pods } => {
                        let ns_ok = match namespaces {
                            None => pol.ns().is_some_and(|own| c.ns_name(own) == ns),
                            Some(s) => s.matches(&ns_labels),
                        };
                        ns_ok && pods.as_ref().is_none_or(|s| s.matches(labels))
                    }
                });
            port_ok && calico_ok && peer_ok
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    const DENY_EGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: a}\nspec: {podSelector: {}, policyTypes: [Egress]}\n";

    #[test]
    fn isolated_egress_without_dns() {
        let f = run(&RULE, &with(DENY_EGRESS));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("53/UDP and 53/TCP"), "{}", f[0].message);
        assert!(f[0].message.contains("a/db, a/web"), "{}", f[0].message);
    }

    #[test]
    fn udp_only_dns_still_flags_tcp() {
        let f = run(&RULE, &with(&format!("{DENY_EGRESS}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: dns, namespace: a}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress: [{{to: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kube-system}}}}, podSelector: {{matchLabels: {{k8s-app: kube-dns}}}}}}], ports: [{{port: 53, protocol: UDP}}]}}]\n")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("53/TCP"));
        assert!(!f[0].message.contains("53/UDP"));
    }

    #[test]
    fn quiet_with_dns_allowed() {
        let f = run(&RULE, &with(&format!("{DENY_EGRESS}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: dns, namespace: a}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress: [{{to: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kube-system}}}}, podSelector: {{matchLabels: {{k8s-app: kube-dns}}}}}}], ports: [{{port: 53, protocol: UDP}}, {{port: 53, protocol: TCP}}]}}]\n")));
        assert!(f.is_empty(), "{f:?}");
    }

    const ADMIN_DENY: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: lockdown}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  egress:
  - {name: deny-rest, action: Deny, to: [{networks: ["0.0.0.0/0"]}]}
"#;

    /// The admin kinds isolate nothing: pods they select but no NetworkPolicy isolates are not this rule's.
    #[test]
    fn admin_policies_do_not_isolate() {
        assert!(run(&RULE, &with(ADMIN_DENY)).is_empty());
        let pass = ADMIN_DENY.replace("action: Deny", "action: Pass");
        assert!(run(&RULE, &with(&pass)).is_empty());
    }

    /// DNS blocked by an admin Deny before the NetworkPolicy tier is NP018's finding, not NP003's.
    #[test]
    fn dns_blocked_by_an_admin_rule_is_left_to_np018() {
        let yaml = with(&format!("{DENY_EGRESS}---\n{ADMIN_DENY}"));
        assert!(run(&RULE, &yaml).is_empty());
        let f = run(&super::super::admin_dns::RULE, &yaml);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("for a/db, a/web"), "{}", f[0].message);
    }

    /// Without DNS pods in the input, a Calico policy's rules are read against the DNS pods' labels as Calico
    /// sees them: an Allow to `k8s-app == 'kube-dns'` in kube-system on 53 counts, one to other pods does not.
    #[test]
    fn calico_rules_against_the_dns_labels() {
        let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: a, labels: {app: web}}\nspec: {containers: [{name: c}]}\n---\n";
        let np = |dest: &str| {
            format!("{pods}apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: a}}\nspec:\n  selector: all()\n  types: [Egress]\n  egress:\n  - {{action: Allow, protocol: UDP, destination: {{{dest}, ports: [53]}}}}\n  - {{action: Allow, protocol: TCP, destination: {{{dest}, ports: [53]}}}}\n")
        };
        let ok = np("namespaceSelector: projectcalico.org/name == 'kube-system', selector: k8s-app == 'kube-dns'");
        assert!(run(&RULE, &ok).is_empty());
        let f = run(
            &RULE,
            &np("namespaceSelector: projectcalico.org/name == 'kube-system', selector: k8s-app == 'metrics'"),
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("none in the input"), "{}", f[0].message);
    }

    /// A Pass hands DNS to the NetworkPolicy tier, which denies it: this rule's finding, naming the
    /// NetworkPolicy only.
    #[test]
    fn passed_to_an_isolating_networkpolicy() {
        let pass = ADMIN_DENY.replace("action: Deny", "action: Pass");
        let f = run(&RULE, &with(&format!("{DENY_EGRESS}---\n{pass}")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "NetworkPolicy a/deny");
        assert!(f[0].message.contains("is isolated by a/deny but"), "{}", f[0].message);
    }
}
