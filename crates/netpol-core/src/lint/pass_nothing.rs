//! NP017 pass-to-nothing.
//!
//! **What it finds**: a Pass rule after which nothing decides, for the pods (named in the finding) it applies
//! to: pods that no NetworkPolicy isolates in that direction and, for a Pass in the Admin tier, that no
//! Baseline-tier policy applies to (a Pass in the Baseline tier skips the rest of the last tier).
//! **Why it is bad**: for those pods Pass means allow (Kubernetes' default), but it does not say so: a reader
//! expects "someone else decides", and nobody does.
//! **Instead**: write Accept (Allow) if allowing is intended; otherwise add the NetworkPolicy or Baseline policy
//! that should decide.

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{CPeer, IdentityId};
use crate::model::{Action, Direction, PolicyId, PolicyTier};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP017",
    name: "pass-to-nothing",
    severity: Severity::Info,
    explanation: "A Pass rule hands traffic on to the next tiers, but for these pods nothing there decides: no \
                  NetworkPolicy isolates them in that direction and no Baseline policy applies to them (or the Pass \
                  is in the Baseline tier, the last). What it passes is allowed by Kubernetes' default, though the \
                  rule reads as if someone else decided. Write Accept if allowing is meant; otherwise add the \
                  policy that should decide.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    for (pid, pol) in c.policies.iter().enumerate() {
        if pol.tier == PolicyTier::NetworkPolicy {
            continue;
        }
        let pid = PolicyId::new(pid);
        for dir in [Direction::Ingress, Direction::Egress] {
            for &rid in e.policy_rules(pid, dir) {
                let rule = &e.rules[rid.index()];
                // A rule whose peers match nothing passes nothing (NP002 reports the peers).
                let matches_nothing = rule.peers.iter().all(|p| match *p {
                    CPeer::Sel(s) => e.sel_peers[s.index()].1.is_empty(),
                    CPeer::Nothing => true,
                    CPeer::Block(_) | CPeer::Domains(_) | CPeer::Calico(_) => false,
                });
                if rule.action != Action::Pass || (!rule.peers.is_empty() && matches_nothing) {
                    continue;
                }
                let subjects = ctx.subjects_of(pid, dir, rid);
                let alone: Vec<IdentityId> = subjects
                    .iter()
                    .copied()
                    // Pods a NetworkPolicy isolates never reach the Baseline tier; in the Admin tier, a Baseline
                    // policy can still decide after the Pass.
                    .filter(|&i| {
                        !e.isolated(i, dir)
                            && (pol.tier == PolicyTier::Baseline
                                || !e.identities[i.index()]
                                    .policies(dir)
                                    .iter()
                                    .any(|&p| c.policy(p).tier == PolicyTier::Baseline))
                    })
                    .collect();
                if alone.is_empty() {
                    continue;
                }
                let ri = rule.index as usize;
                let words = Ctx::rule_words(pol, dir, ri);
                let pods = ctx.pod_list(&alone, 5);
                let msg = if pol.tier == PolicyTier::Baseline {
                    format!(
                        "{words} passes traffic on from the Baseline tier, the last: what it matches is allowed \
                         (Kubernetes' default) for {pods}"
                    )
                } else {
                    format!(
                        "{words} passes traffic on to the NetworkPolicy tier, but nothing decides after it for {pods}: \
                         no NetworkPolicy isolates their {dir} and no Baseline policy applies to them, so what it \
                         matches is allowed (Kubernetes' default)"
                    )
                };
                let accept = super::action_word(pol.kind, Action::Allow);
                out.push(ctx.policy_finding(
                    &RULE,
                    pid,
                    Some(Ctx::rule_path(dir, ri)),
                    msg,
                    format!(
                        "write `action: {accept}` if allowing is intended; otherwise add the NetworkPolicy or \
                         Baseline policy that should decide"
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    const PASS_FROM_B: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: delegate}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  ingress:
  - {name: to-owners, action: Pass, from: [{namespaces: {matchLabels: {team: b}}}]}
"#;

    #[test]
    fn a_pass_with_nothing_after_it_means_allow() {
        let f = run(&RULE, &with(PASS_FROM_B));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy delegate");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0]"));
        let m = &f[0].message;
        assert!(
            m.starts_with("ingress rule 0 \"to-owners\" (Pass) passes traffic on to the NetworkPolicy tier"),
            "{m}"
        );
        assert!(m.contains("for a/db, a/web:"), "{m}");
        assert!(f[0].help.contains("`action: Accept`"), "{}", f[0].help);
    }

    /// A NetworkPolicy isolating some of the pods, or a Baseline policy for the others, decides after the Pass:
    /// those pods are not reported.
    #[test]
    fn a_networkpolicy_or_a_baseline_policy_decides_after_the_pass() {
        let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: a}\nspec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress]}\n";
        let f = run(&RULE, &with(&format!("{PASS_FROM_B}---\n{np}")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("for a/web:"), "{}", f[0].message);
        let banp = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  ingress:
  - {action: Deny, from: [{namespaces: {}}]}
"#;
        let f = run(&RULE, &with(&format!("{PASS_FROM_B}---\n{np}---\n{banp}")));
        assert!(f.is_empty(), "{f:?}");
    }

    /// A Pass in the Baseline tier skips only the rest of the last tier: it always means allow.
    #[test]
    fn a_pass_in_the_baseline_tier_means_allow() {
        let yaml = PASS_FROM_B.replace("tier: Admin", "tier: Baseline");
        let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: a}\nspec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress]}\n";
        let f = run(&RULE, &with(&format!("{yaml}---\n{np}")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("from the Baseline tier, the last"), "{}", f[0].message);
        // Not for the pod a NetworkPolicy isolates: the Baseline tier is never consulted for it.
        assert!(f[0].message.ends_with("for a/web"), "{}", f[0].message);
    }

    #[test]
    fn deny_and_accept_rules_are_not_passes() {
        let f = run(&RULE, &with(&PASS_FROM_B.replace("Pass", "Deny")));
        assert!(f.is_empty(), "{f:?}");
    }
}
