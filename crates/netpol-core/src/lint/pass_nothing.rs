//! NP017 pass-to-nothing.
//!
//! **What it finds**: a Pass rule after which nothing decides, for the pods (named in the finding) it applies
//! to: no policy of a later tier applies to them in that direction. For a Pass in the Admin tier: no
//! NetworkPolicy isolates them and no Baseline-tier policy applies to them (a Pass in the Baseline tier skips the
//! rest of the last tier). For a Calico policy's Pass: no policy of a later Calico tier (the `default` tier
//! included) selects them. For an Antrea Pass (ClusterNetworkPolicy, NetworkPolicy of `crd.antrea.io`): no
//! NetworkPolicy isolates them and no policy of Antrea's baseline tier applies to them (the Pass skips the remaining
//! regular tiers); one finding per object rule. Pods for which the rule is never reached (NP016) are left out.
//! **Why it is bad**: for those pods Pass means allow (Kubernetes' default; Calico's namespace profile), but it
//! does not say so: a reader expects "someone else decides", and nobody does. If a deny was meant, the traffic
//! is open.
//! **Instead**: write Accept (Allow) if allowing is intended, Deny if denying is; otherwise add the policy of a
//! later tier that should decide.

use super::calico;
use super::shadowed::reaching;
use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{CPeer, IdentityId};
use crate::model::{Action, Direction, PolicyId, PolicyKind, PolicyTier};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP017",
    name: "pass-to-nothing",
    severity: Severity::Info,
    explanation: "A Pass rule hands traffic on to the next tiers, but for these pods nothing there decides: no \
                  policy of a later tier applies to them in that direction (no NetworkPolicy isolates them and no \
                  Baseline policy applies; for Calico, no policy of a later tier selects them, or the Pass is in the \
                  last tier; for Antrea, whose Pass skips the remaining regular tiers, no NetworkPolicy and no \
                  baseline-tier policy). What it passes is allowed (Kubernetes' default, Calico's namespace profile), though the \
                  rule reads as if someone else decided, and if a deny was meant the traffic is open. Write Accept \
                  (Allow) if allowing is meant, Deny if denying is; otherwise add the policy that should decide.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    let mut antrea: std::collections::BTreeMap<_, (PolicyId, Vec<IdentityId>)> = Default::default();
    for (pid, pol) in c.policies.iter().enumerate() {
        // NetworkPolicies never pass.
        if pol.kind == PolicyKind::NetworkPolicy {
            continue;
        }
        let pid = PolicyId::new(pid);
        let calico = calico::is_calico(pol);
        for dir in [Direction::Ingress, Direction::Egress] {
            for &rid in e.policy_rules(pid, dir) {
                let rule = &e.rules[rid.index()];
                // A rule whose peers match nothing passes nothing (NP002 reports the peers).
                let matches_nothing = rule.peers.iter().all(|p| match *p {
                    CPeer::Sel(s) => e.sel_peers[s.index()].1.is_empty(),
                    CPeer::Nothing => true,
                    CPeer::Calico(id) => {
                        let cc = e.calico_peer_of(id);
                        cc.sel.as_ref().is_some_and(|m| m.idents.is_empty() && m.sets.is_empty() && m.heps.is_empty())
                    }
                    CPeer::Block(_) | CPeer::Domains(_) | CPeer::OwnNode | CPeer::OtherNodes | CPeer::NodeSet(_) => {
                        false
                    }
                });
                if rule.action != Action::Pass || (!rule.peers.is_empty() && matches_nothing) {
                    continue;
                }
                let subjects = ctx.subjects_of(pid, dir, rid);
                // Pods for which no policy of a later tier applies in this direction. A Pass of Antrea's regular
                // tiers (held) skips the tiers up to the NetworkPolicy tier: only that tier and later ones decide.
                let first_after = match e.tier_list()[rule.tier.index()].hold {
                    true => e.np_tier(),
                    false => crate::eval::TierId::new(rule.tier.index() + 1),
                };
                let alone: Vec<IdentityId> = subjects
                    .iter()
                    .copied()
                    .filter(|&i| {
                        !e.identities[i.index()].policies(dir).iter().any(|&p| e.policy_tier(p) >= first_after)
                    })
                    .collect();
                // Of those, the ones a flow of which reaches the rule (a Baseline Pass is never reached for pods a
                // NetworkPolicy isolates: that tier decides everything for them).
                let alone = reaching(ctx, pid, dir, rid, &alone).unwrap_or(alone);
                if alone.is_empty() {
                    continue;
                }
                if pol.kind.is_antrea() {
                    // One finding per object rule, for the pods of all its splits.
                    let entry = antrea.entry((c.policy_key(pid), dir, pol.position)).or_insert((pid, Vec::new()));
                    entry.1.extend(alone);
                    continue;
                }
                let ri = rule.index as usize;
                let words = Ctx::rule_words(pol, dir, ri);
                let pods = ctx.pod_list(&alone, 5);
                let last = !e.tier_list().iter().enumerate().any(|(t, _)| t > rule.tier.index());
                let tier_name = &e.tier_list()[rule.tier.index()].name;
                let msg = if calico {
                    let after = if last {
                        "it is the last tier".to_string()
                    } else {
                        format!("no policy of a later tier selects them for {dir}")
                    };
                    format!(
                        "{words} passes traffic on from tier `{tier_name}`, but nothing decides after it for {pods}: \
                         {after}, so what it matches is allowed (the namespace profile's default)"
                    )
                } else if pol.tier == PolicyTier::Baseline {
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
                let help = if calico {
                    "write `action: Allow` if allowing is intended, `action: Deny` if denying is; otherwise add a \
                     policy of a later tier (or of the default tier) that selects these pods and decides"
                        .to_string()
                } else {
                    format!(
                        "write `action: {accept}` if allowing is intended; otherwise add the NetworkPolicy or \
                         Baseline policy that should decide"
                    )
                };
                out.push(ctx.policy_finding(&RULE, pid, Some(Ctx::rule_path(dir, ri)), msg, help));
            }
        }
    }
    for ((_, dir, _), (pid, mut alone)) in antrea {
        alone.sort_unstable();
        alone.dedup();
        let pol = c.policy(pid);
        let msg = format!(
            "{} passes traffic on to the NetworkPolicy tier (skipping the remaining Antrea tiers), but nothing decides \
             after it for {}: no NetworkPolicy isolates their {dir} and no policy of the baseline tier applies to \
             them, so what it matches is allowed (Kubernetes' default)",
            Ctx::rule_words(pol, dir, 0),
            ctx.pod_list(&alone, 5)
        );
        out.push(ctx.policy_finding(
            &RULE,
            pid,
            Some(Ctx::rule_field(pol, dir, 0)),
            msg,
            "write `action: Allow` if allowing is intended, `action: Drop` if dropping is; otherwise add the \
             NetworkPolicy or the baseline-tier policy that should decide",
        ));
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

    const CALICO_PASS: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.quarantine}
spec:
  tier: security
  selector: projectcalico.org/namespace == 'a'
  ingress:
  - {action: Pass, source: {namespaceSelector: team == 'b'}}
"#;

    /// A Calico Pass with no later tier selecting the pods: allowed by the profile.
    #[test]
    fn a_calico_pass_with_no_later_tier_for_the_pods() {
        let f = run(&RULE, &with(CALICO_PASS));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "GlobalNetworkPolicy security.quarantine");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0]"));
        assert_eq!(
            f[0].message,
            "ingress rule 0 (Pass) passes traffic on from tier `security`, but nothing decides after it for a/db, \
             a/web: no policy of a later tier selects them for ingress, so what it matches is allowed (the namespace \
             profile's default)"
        );
        assert!(
            f[0].help.starts_with("write `action: Allow` if allowing is intended, `action: Deny`"),
            "{}",
            f[0].help
        );
    }

    /// A policy of the default tier (Calico's or Kubernetes') for some pods decides after the Pass: not them.
    #[test]
    fn a_later_tier_decides_after_a_calico_pass() {
        let np = "---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: db, namespace: a}\nspec:\n  selector: app == 'db'\n  ingress: [{action: Allow, source: {selector: app == 'web'}}]\n";
        let f = run(&RULE, &with(&format!("{CALICO_PASS}{np}")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("for a/web:"), "{}", f[0].message);
        let k8s = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: all, namespace: a}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n";
        assert!(run(&RULE, &with(&format!("{CALICO_PASS}{k8s}"))).is_empty());
        // A Pass of a tier that ends in Deny for pods its Deny decides first: never reached, not this rule's.
        let deny_first = CALICO_PASS.replace("  - {action: Pass", "  - {action: Deny}\n  - {action: Pass");
        assert!(run(&RULE, &with(&deny_first)).is_empty());
    }

    #[test]
    fn deny_and_accept_rules_are_not_passes() {
        let f = run(&RULE, &with(&PASS_FROM_B.replace("Pass", "Deny")));
        assert!(f.is_empty(), "{f:?}");
    }

    const ANTREA_PASS: &str = r#"
apiVersion: crd.antrea.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: delegate}
spec:
  priority: 1
  tier: securityops
  appliedTo: [{namespaceSelector: {matchLabels: {team: a}}}, {podSelector: {matchLabels: {app: web}}}]
  ingress:
  - {action: Drop, from: [{podSelector: {matchLabels: {app: db}}}]}
  - {action: Pass, from: [{namespaceSelector: {matchLabels: {team: b}}}]}
---
apiVersion: crd.antrea.io/v1beta1
kind: NetworkPolicy
metadata: {name: app, namespace: a}
spec:
  priority: 1
  appliedTo: [{podSelector: {}}]
  ingress:
  - {action: Drop, from: [{namespaceSelector: {matchLabels: {team: b}}}]}
"#;

    /// An Antrea Pass skips the later regular tiers (the application tier's Drop here): with no NetworkPolicy and
    /// no baseline-tier policy for the pods, what it passes is allowed. One finding for the object's rule, whatever
    /// its splits.
    #[test]
    fn an_antrea_pass_skips_the_regular_tiers_to_nothing() {
        let f = run(&RULE, &with(ANTREA_PASS));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy.crd.antrea.io delegate");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[1]"));
        assert_eq!(
            f[0].message,
            "ingress rule 1 (Pass) passes traffic on to the NetworkPolicy tier (skipping the remaining Antrea tiers), \
             but nothing decides after it for a/db, a/web: no NetworkPolicy isolates their ingress and no policy of \
             the baseline tier applies to them, so what it matches is allowed (Kubernetes' default)"
        );
        assert!(f[0].help.starts_with("write `action: Allow`"), "{}", f[0].help);
    }

    /// A NetworkPolicy isolating a pod, or a baseline-tier policy applied to it, decides after the Pass.
    #[test]
    fn a_networkpolicy_or_antreas_baseline_tier_decides_after_an_antrea_pass() {
        let np = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: a}\nspec: {podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress]}\n";
        let f = run(&RULE, &with(&format!("{ANTREA_PASS}{np}")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("for a/web:"), "{}", f[0].message);
        let baseline = "---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: base}\nspec:\n  priority: 1\n  tier: baseline\n  appliedTo: [{podSelector: {matchLabels: {app: web}}}]\n  ingress: [{action: Drop}]\n";
        let f = run(&RULE, &with(&format!("{ANTREA_PASS}{np}{baseline}")));
        assert!(f.is_empty(), "{f:?}");
    }
}
