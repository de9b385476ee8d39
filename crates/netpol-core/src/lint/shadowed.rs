//! NP016 shadowed-rule.
//!
//! **What it finds**: a rule of an admin tier (ClusterNetworkPolicy, AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy) that no current flow reaches: for every pod it applies to and every pod it selects
//! as a peer, rules of higher precedence (earlier rules of the policy, policies of lower priority, and for the
//! Baseline tier the NetworkPolicies that isolate the pod) have already decided everything it matches. The
//! finding names those rules.
//! **Why it is bad**: the rule looks like it does something; it does not. Usually the order is wrong (an
//! exception written after the catch-all it was meant to carve out of), or a priority is.
//! **Instead**: move the rule before the rules that decide first (or give its policy a lower priority), narrow
//! those, or delete the rule.
//!
//! Judged by the evaluator: a rule is reached for a (subject, peer) pair when making it allow and making it deny
//! give different outcomes for some port. Checked on pods only: rules with address peers (`networks`, `nodes`,
//! `domainNames`) are not judged, nor rules whose ports resolve on no peer (NP005's finding), and rules with more
//! than 200,000 subject × peer identity pairs are skipped.

use std::collections::BTreeSet;

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{CPeer, RuleId};
use crate::eval::{Action, Variant};
use crate::model::{Direction, PolicyId, PolicyTier};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP016",
    name: "shadowed-rule",
    severity: Severity::Warning,
    explanation: "This rule of an admin tier is never reached: for every pod it applies to and every pod it selects, \
                  rules that come first (earlier rules, policies of lower priority, or for the Baseline tier the \
                  NetworkPolicies that isolate the pod) have already decided everything it matches. The rule reads \
                  as if it mattered; usually an exception was written after the rule it was meant to carve out \
                  of, or a priority is wrong. Move it up, narrow the rules that decide first, or delete it.",
    check,
};

const BUDGET: usize = 200_000;

/// What the evaluator says of one rule.
pub(super) enum Reach {
    /// Not judged: not an admin-tier rule, address peers, nothing to apply to, too large.
    NotJudged,
    /// Some flow reaches it.
    Reached,
    /// Nothing reaches it; what decides first, in words.
    Shadowed(Vec<String>),
}

/// Whether any current flow between pods reaches rule `rid` (rule `ri` of policy `pid` in `dir`).
pub(super) fn judge(ctx: &Ctx, pid: PolicyId, dir: Direction, rid: RuleId) -> Reach {
    let e = ctx.engine;
    let c = &e.cluster;
    let r = &e.rules[rid.index()];
    if c.policy(pid).tier == PolicyTier::NetworkPolicy
        || r.peers.is_empty()
        || r.peers.iter().any(|p| !matches!(p, CPeer::Sel(_)))
    {
        return Reach::NotJudged;
    }
    let subjects = ctx.subjects_of(pid, dir, rid);
    let peers = ctx.selected_peers(r);
    if subjects.is_empty() || peers.is_empty() || subjects.len() * peers.len() > BUDGET {
        return Reach::NotJudged;
    }
    let mut deciders: BTreeSet<RuleId> = BTreeSet::new();
    let mut isolating: BTreeSet<PolicyId> = BTreeSet::new();
    let mut judged = false;
    for &x in &subjects {
        let ident = &e.identities[x.index()];
        let rules = if dir == Direction::Ingress { &ident.ingress_rules } else { &ident.egress_rules };
        let before = &rules[..rules.iter().position(|&r2| r2 == rid).unwrap_or(0)];
        for &y in &peers {
            let Some(peer) = ctx.peer_endpoint(x, y) else { continue };
            let dst = if dir == Direction::Ingress { x } else { y };
            let dst_ports = Some(e.identities[dst.index()].ports.as_slice());
            let mine = r.ports.resolve(dst_ports);
            if mine.is_empty() {
                continue;
            }
            judged = true;
            let allow = e.side_ports(x, dir, &peer, Variant::Action(rid, Action::Allow));
            let deny = e.side_ports(x, dir, &peer, Variant::Action(rid, Action::Deny));
            if allow != deny {
                return Reach::Reached;
            }
            // For the message: the rules before it that match this peer on some of the same ports.
            for &r2 in before {
                let rule2 = &e.rules[r2.index()];
                if rule2.action != Action::Log
                    && e.rule_matches_identity(rule2, y)
                    && !rule2.ports.resolve(dst_ports).intersect(&mine).is_empty()
                {
                    deciders.insert(r2);
                }
            }
            if c.policy(pid).tier == PolicyTier::Baseline && e.isolated(x, dir) {
                let np = ident.policies(dir).iter().filter(|&&p| c.policy(p).tier == PolicyTier::NetworkPolicy);
                isolating.extend(np);
            }
        }
    }
    if !judged {
        return Reach::NotJudged;
    }
    // In evaluation order (tier, priority, kind, name), whatever the engine's numbering.
    let mut deciders: Vec<RuleId> = deciders.into_iter().collect();
    deciders.sort_by_cached_key(|&d| {
        let rule = &e.rules[d.index()];
        let p = c.policy(rule.policy);
        (p.tier, p.order, p.kind, c.policy_ref(rule.policy), rule.index)
    });
    let mut words: Vec<String> = deciders
        .iter()
        .map(|&d| {
            let dr = &e.rules[d.index()];
            format!("{} {}", c.policy_ref(dr.policy), Ctx::rule_words(c.policy(dr.policy), dr.dir, dr.index as usize))
        })
        .collect();
    if !isolating.is_empty() {
        let names: Vec<String> = isolating.iter().map(|&p| c.policy_ref(p)).collect();
        words.push(format!("the isolation of NetworkPolicy {}", names.join(", ")));
    }
    Reach::Shadowed(words)
}

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
                let ri = e.rules[rid.index()].index as usize;
                let Reach::Shadowed(by) = judge(ctx, pid, dir, rid) else { continue };
                let by = if by.is_empty() { String::new() } else { format!(": {}", by.join(", ")) };
                let msg = format!(
                    "{} is never reached: for every pod it applies to and every pod it selects, what it matches is \
                     decided before it{by}",
                    Ctx::rule_words(pol, dir, ri)
                );
                out.push(ctx.policy_finding(
                    &RULE,
                    pid,
                    Some(Ctx::rule_path(dir, ri)),
                    msg,
                    "move the rule before the rules that decide first (or give its policy a lower priority), narrow \
                     those rules, or delete it",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    /// A deny of everything from namespace b, then an exception for b/client on 8080: the exception comes too
    /// late.
    const LATE_EXCEPTION: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  ingress:
  - name: deny-b
    action: Deny
    from: [{namespaces: {matchLabels: {team: b}}}]
  - name: allow-client
    action: Accept
    from: [{pods: {namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: client}}}}]
    protocols: [{tcp: {destinationPort: {number: 8080}}}]
"#;

    #[test]
    fn an_exception_after_the_rule_it_carves_out_of_is_never_reached() {
        let f = run(&RULE, &with(LATE_EXCEPTION));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy guard");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[1]"));
        assert!(
            f[0].message.starts_with("ingress rule 1 \"allow-client\" (Accept) is never reached"),
            "{}",
            f[0].message
        );
        assert!(f[0].message.contains("cnp/guard ingress rule 0 \"deny-b\" (Deny)"), "{}", f[0].message);
    }

    #[test]
    fn the_exception_first_is_reached() {
        let yaml = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  ingress:
  - name: allow-client
    action: Accept
    from: [{pods: {namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: client}}}}]
    protocols: [{tcp: {destinationPort: {number: 8080}}}]
  - name: deny-b
    action: Deny
    from: [{namespaces: {matchLabels: {team: b}}}]
"#;
        let f = run(&RULE, &with(yaml));
        assert!(f.is_empty(), "{f:?}");
    }

    /// A policy of lower priority that decides first shadows a rule of another policy; a policy of higher
    /// priority number does not shadow one of lower.
    #[test]
    fn priorities_count() {
        let yaml = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: first}
spec:
  priority: 5
  subject: {namespaces: {matchLabels: {team: b}}}
  egress:
  - {name: allow-a, action: Allow, to: [{namespaces: {matchLabels: {team: a}}}]}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: later}
spec:
  priority: 20
  subject: {namespaces: {matchLabels: {team: b}}}
  egress:
  - {name: deny-db, action: Deny, to: [{pods: {namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: db}}}}]}
"#;
        let f = run(&RULE, &with(yaml));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "AdminNetworkPolicy later");
        assert!(f[0].message.contains("anp/first egress rule 0 \"allow-a\" (Allow)"), "{}", f[0].message);
    }

    /// A Baseline rule for pods a NetworkPolicy isolates in that direction is never consulted: the
    /// NetworkPolicy tier decides everything for them.
    #[test]
    fn baseline_rules_for_isolated_pods_are_shadowed_by_the_isolation() {
        let yaml = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: base}
spec:
  tier: Baseline
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  ingress:
  - {name: deny-b, action: Deny, from: [{namespaces: {matchLabels: {team: b}}}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate, namespace: a}
spec: {podSelector: {}, policyTypes: [Ingress]}
"#;
        let f = run(&RULE, &with(yaml));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("the isolation of NetworkPolicy a/isolate"), "{}", f[0].message);
        // Without the NetworkPolicy, the Baseline rule decides.
        let f = run(&RULE, &with(yaml.split("---").next().unwrap_or_default()));
        assert!(f.is_empty(), "{f:?}");
    }

    /// Rules with address peers are not judged, whatever precedes them.
    #[test]
    fn address_peers_are_not_judged() {
        let yaml = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  egress:
  - {action: Deny, to: [{namespaces: {}}]}
  - {action: Deny, to: [{networks: ["10.0.0.0/8"]}]}
"#;
        let f = run(&RULE, &with(yaml));
        assert!(f.is_empty(), "{f:?}");
    }
}
