//! NP018 admin-deny-dns.
//!
//! **What it finds**: a Deny rule of an admin tier that blocks cluster DNS (53/UDP or 53/TCP to the DNS pods:
//! kube-dns in kube-system, or the `lint.dns` setting, as for NP003) for pods it applies to: an Admin-tier Deny,
//! or a Baseline-tier Deny when nothing before it allows. The rule is the one `explain` finds deciding the
//! denial (egress at the pod, or ingress at the DNS pods); one finding per rule, with the pods whose lookups it
//! blocks.
//! **Why it is bad**: a cluster-wide Deny (`networks: 0.0.0.0/0`, `namespaces: {}`) easily catches DNS too; then
//! every name lookup times out, which looks like a network outage, and no NetworkPolicy can allow it back.
//! **Instead**: allow 53/UDP and 53/TCP to the DNS pods in a rule that comes first (earlier in the policy, or in
//! a policy of lower priority), or leave the DNS pods out of the Deny's peers.
//!
//! Judged on the DNS pods of the input (with none, nothing is reported); NP003 leaves these pods to this rule.

use std::collections::{BTreeMap, BTreeSet};

use super::dns_egress::{dns, Dns};
use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{Endpoint, Engine, IdentityId, RuleId};
use crate::model::{Action, Direction, PodId, PolicyId, PolicyTier};
use crate::portset::Protocol;
use crate::verdict::DecidedBy;

pub static RULE: RuleInfo = RuleInfo {
    code: "NP018",
    name: "admin-deny-dns",
    severity: Severity::Warning,
    explanation: "This Deny rule of an admin tier blocks cluster DNS (53/UDP or 53/TCP to the DNS pods) for the \
                  pods listed. Every name lookup of theirs times out, which looks like a network outage, and no \
                  NetworkPolicy can allow it back: the Admin tier decides first. Allow DNS in a rule that comes \
                  before it, or leave the DNS pods out of its peers.",
    check,
};

/// The admin-tier Deny rules that decide the denial of `proto`/53 from pod `src` to DNS pod `dns`, on either
/// side: the last rule of `explain`'s walk of a side that a rule decided. Empty when the flow is allowed or a
/// NetworkPolicy denies it.
pub(super) fn blocking_rules(e: &Engine, src: PodId, dns: PodId, proto: Protocol) -> Vec<RuleId> {
    let c = &e.cluster;
    let admin = |pod: PodId, dir: Direction| {
        e.identity_of(pod).policies(dir).iter().any(|&p| c.policy(p).tier != PolicyTier::NetworkPolicy)
    };
    // Without an admin policy on either side there is no admin rule to find (and no `explain` to pay for).
    if !admin(src, Direction::Egress) && !admin(dns, Direction::Ingress) {
        return Vec::new();
    }
    let (s, d) = (Endpoint::Pod { pod: src, ip: None }, Endpoint::Pod { pod: dns, ip: None });
    if src == dns || e.allowed(&s, &d, proto, 53) {
        return Vec::new();
    }
    let x = e.explain(&s, &d, proto, 53);
    [&x.egress, &x.ingress]
        .into_iter()
        .filter(|side| !side.allowed && side.decided_by == DecidedBy::Rule)
        .filter_map(|side| {
            let m = side.walk.last().filter(|m| m.action == Action::Deny)?;
            let pol = (0..c.policies.len()).map(PolicyId::new).find(|&p| c.policy_key(p) == m.key.policy)?;
            e.policy_rules(pol, side.direction).iter().copied().find(|&r| e.rules[r.index()].index as usize == m.rule)
        })
        .collect()
}

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    let Dns { ns, labels, pods: dns_pods } = dns(ctx);
    if dns_pods.is_empty() || c.policies.iter().all(|p| p.tier == PolicyTier::NetworkPolicy) {
        return;
    }
    let mut by_rule: BTreeMap<RuleId, (Vec<IdentityId>, BTreeSet<Protocol>)> = BTreeMap::new();
    for (i, ident) in e.identities.iter().enumerate() {
        let Some(&rep) = ident.pods.first() else { continue };
        if ident.host_network || dns_pods.contains(&rep) {
            continue;
        }
        for proto in [Protocol::Udp, Protocol::Tcp] {
            // DNS works if one of its pods answers; blocked only when every pod is denied.
            let src = Endpoint::Pod { pod: rep, ip: None };
            if dns_pods.iter().any(|&d| e.allowed(&src, &Endpoint::Pod { pod: d, ip: None }, proto, 53)) {
                continue;
            }
            for r in dns_pods.iter().flat_map(|&d| blocking_rules(e, rep, d, proto)) {
                let entry = by_rule.entry(r).or_default();
                if entry.0.last() != Some(&IdentityId::new(i)) {
                    entry.0.push(IdentityId::new(i));
                }
                entry.1.insert(proto);
            }
        }
    }
    let dns_names: Vec<String> = dns_pods.iter().map(|&p| c.pod_ref(p)).collect();
    let target = Ctx::name_list(dns_names, 2);
    for (rid, (ids, protos)) in by_rule {
        let rule = &e.rules[rid.index()];
        let pol = c.policy(rule.policy);
        let ri = rule.index as usize;
        let protos: Vec<String> = protos.iter().rev().map(|p| format!("53/{p}")).collect();
        let msg = format!(
            "{} blocks cluster DNS ({} to {target}) for {}",
            Ctx::rule_words(pol, rule.dir, ri),
            protos.join(" and "),
            ctx.pod_list(&ids, 5)
        );
        let help = format!(
            "allow 53/UDP and 53/TCP to the DNS pods (namespace {ns}, pods {}) in a rule that comes before it (earlier \
             in this policy, or in a policy of lower priority), or leave the DNS pods out of its peers",
            crate::selector::format_labels(&labels)
        );
        out.push(ctx.policy_finding(&RULE, rule.policy, Some(Ctx::rule_path(rule.dir, ri)), msg, help));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    /// Deny everything to every address for namespace a: DNS too.
    const DENY_ALL_EGRESS: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: lockdown}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  egress:
  - {name: deny-rest, action: Deny, to: [{networks: ["0.0.0.0/0", "::/0"]}]}
"#;

    #[test]
    fn an_admin_deny_of_everything_blocks_dns() {
        let f = run(&RULE, &with(DENY_ALL_EGRESS));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "AdminNetworkPolicy lockdown");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0]"));
        assert_eq!(
            f[0].message,
            "egress rule 0 \"deny-rest\" (Deny) blocks cluster DNS (53/UDP and 53/TCP to kube-system/coredns) for \
             a/db, a/web"
        );
    }

    #[test]
    fn dns_allowed_first_is_not_blocked() {
        let yaml = DENY_ALL_EGRESS.replace(
            "  - {name: deny-rest",
            "  - {name: dns, action: Allow, to: [{pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app: kube-dns}}}}], ports: [{portNumber: {port: 53, protocol: UDP}}, {portNumber: {port: 53, protocol: TCP}}]}\n  - {name: deny-rest",
        );
        let f = run(&RULE, &with(&yaml));
        assert!(f.is_empty(), "{f:?}");
        // Only UDP allowed: TCP is still blocked.
        let udp_only = yaml.replace(", {portNumber: {port: 53, protocol: TCP}}", "");
        let f = run(&RULE, &with(&udp_only));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("(53/TCP to kube-system/coredns)"), "{}", f[0].message);
    }

    /// An ingress Deny at the DNS pods blocks the lookups of the pods it names; a Baseline Deny blocks only
    /// when nothing before it allows.
    #[test]
    fn ingress_deny_at_the_dns_pods_and_baseline_denies() {
        let yaml = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: dns-guard}
spec:
  tier: Baseline
  priority: 1
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}
  ingress:
  - {name: no-b, action: Deny, from: [{namespaces: {matchLabels: {team: b}}}]}
"#;
        let f = run(&RULE, &with(yaml));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0]"));
        assert!(f[0].message.ends_with("for b/client"), "{}", f[0].message);
        // A NetworkPolicy of kube-system that allows DNS decides before the Baseline tier.
        let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: dns, namespace: kube-system}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]}]\n";
        let f = run(&RULE, &with(&format!("{yaml}---\n{np}")));
        assert!(f.is_empty(), "{f:?}");
    }

    /// A Deny that does not reach DNS (other ports) is not reported.
    #[test]
    fn denies_elsewhere_are_not_reported() {
        let yaml = DENY_ALL_EGRESS.replace("]}]}", "]}], ports: [{portNumber: {port: 443}}]}");
        let f = run(&RULE, &with(&yaml));
        assert!(f.is_empty(), "{f:?}");
    }
}
