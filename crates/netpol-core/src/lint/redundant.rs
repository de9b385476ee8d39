//! NP011 redundant-rule.
//!
//! **What it finds**: a rule whose allowed flows are all allowed by other rules of its tier (of the same or other
//! policies selecting the same pods); the finding names those rules. Judged by the evaluator: for every pod it
//! applies to and every peer it selects, what the rule's tier decides with the rule and without it is the same.
//! Only the rule's own tier counts: a NetworkPolicy rule that an admin rule makes redundant today matters as soon
//! as the admin policy changes, and an Admin Deny that a Baseline Deny repeats is still the one no
//! NetworkPolicy can override.
//! **Why it is bad**: redundant rules hide intent and survive refactors: deleting the "other" rule later silently
//! changes nothing or opens less than expected. Removing them makes reviews honest.
//! **Instead**: delete the rule, or narrow the broader one if the redundancy was not intended.
//!
//! Checked on pods only: rules with ipBlock peers or without peers (which also cover addresses outside the
//! cluster) are not judged, and very large rules (more than 200,000 subject × peer identity pairs) are skipped.
//! Rules of the admin tiers and of Calico policies are judged the same way, whatever their action ("changes
//! nothing"), but for Log rules (which decide nothing by design), Pass rules and rules whose traffic a Pass of
//! their tier also matches (what a Pass changes is decided by the next tiers); those that no flow reaches at all are left to NP016 (shadowed-rule), and those of an admin policy
//! whose priority another policy of its tier shares for the same pods are not judged (their order is undefined:
//! NP015; Calico orders equal orders by name; an Antrea rule tied with the rule of the same index of another
//! object). An Antrea object's rule is judged over all its splits (one per appliedTo entry), once. Calico rules whose peers can match addresses (`nets`, network
//! sets, no selector) are not judged.

use std::collections::{BTreeMap, BTreeSet};

use super::calico;
use super::shadowed::Reach;
use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{CPeer, CRule, IdentityId, RuleId};
use crate::eval::{Action, Sets, TierEnd, Variant};
use crate::model::{Direction, PolicyId, PolicyKey, PolicyKind, PolicyTier};
use crate::portset::PortSet;

pub static RULE: RuleInfo = RuleInfo {
    code: "NP011",
    name: "redundant-rule",
    severity: Severity::Info,
    explanation: "Everything this rule decides is decided the same by other rules of its tier selecting the same \
                  pods, which the finding lists. Redundant rules hide intent: removing the other rules later \
                  changes less than it seems. Delete the rule, or narrow the broader one if the overlap was not \
                  intended.",
    check,
};

const BUDGET: usize = 200_000;

/// An Antrea object's rule: the object, the direction, the rule's index in it.
type AntreaRuleKey = (PolicyKey, Direction, u32);

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    // Whether a rule applies between the pods of identities `x` (the subject, whose own side a Calico rule may
    // restrict) and `y`, at their primary addresses.
    let applies = |rule: &CRule, x: IdentityId, y: IdentityId| {
        rule.local.is_none_or(|l| e.calico_peer_of(l).pods.contains(x)) && e.rule_matches_identity(rule, y)
    };
    // Antrea: an object's rule is one policy per appliedTo entry; it changes nothing when every split that is
    // judged changes nothing given rules other than itself. By (object, direction, index): the rules that decide
    // the same (in words, with the split's finding), and the object rules some split of which does change things.
    let mut antrea: BTreeMap<AntreaRuleKey, (Vec<String>, Option<Finding>)> = BTreeMap::new();
    let mut antrea_needed: BTreeSet<AntreaRuleKey> = BTreeSet::new();
    for (pid, _) in c.policies.iter().enumerate() {
        let (ing, eg) = &e.policy_rules[pid];
        for (dir, rids) in [(Direction::Ingress, ing), (Direction::Egress, eg)] {
            for (ri, &rid) in rids.iter().enumerate() {
                let r = &e.rules[rid.index()];
                let addresses = |p: &CPeer| match *p {
                    CPeer::Block(_) => true,
                    CPeer::Calico(id) => !calico::pods_only(e.calico_peer_of(id)),
                    CPeer::OwnNode | CPeer::OtherNodes | CPeer::NodeSet(_) => true,
                    CPeer::Sel(_) | CPeer::Domains(_) | CPeer::Nothing => false,
                };
                // A Log rule decides nothing by design; a Pass is judged by what the next tiers do, which one tier
                // alone does not say.
                if r.peers.is_empty() || r.peers.iter().any(addresses) || matches!(r.action, Action::Log | Action::Pass)
                {
                    continue;
                }
                // An admin or Calico rule that nothing reaches is NP016's finding (it changes nothing, a fortiori).
                if (c.policies[pid].tier != PolicyTier::NetworkPolicy || calico::is_calico(&c.policies[pid]))
                    && matches!(super::shadowed::judge(ctx, PolicyId::new(pid), dir, rid), Reach::Shadowed(_))
                {
                    continue;
                }
                let subjects: Vec<usize> =
                    ctx.subjects_of(PolicyId::new(pid), dir, rid).iter().map(|i| i.index()).collect();
                let peers = ctx.selected_peers(r);
                if subjects.is_empty() || peers.is_empty() || subjects.len() * peers.len() > BUDGET {
                    continue;
                }
                // A policy that shares its priority with another policy of its tier for these pods has no defined
                // place in the order (NP015 says whether it matters): "changes nothing" would hold in netpol's
                // order only.
                let pol = &c.policies[pid];
                let admin = |k: PolicyKind| {
                    matches!(
                        k,
                        PolicyKind::ClusterNetworkPolicy
                            | PolicyKind::AdminNetworkPolicy
                            | PolicyKind::BaselineAdminNetworkPolicy
                    )
                };
                // Antrea's rules tie rule by rule: the same index in another object of the same tier and priority.
                let antrea_key = pol.kind.is_antrea().then(|| (c.policy_key(PolicyId::new(pid)), dir, pol.position));
                let tied = (admin(pol.kind) || pol.kind.is_antrea())
                    && subjects.iter().any(|&x| {
                        e.identities[x].policies(dir).iter().any(|&q| {
                            let other = c.policy(q);
                            let kinds = match &antrea_key {
                                Some((key, _, position)) => {
                                    other.kind.is_antrea() && other.position == *position && c.policy_key(q) != *key
                                }
                                None => admin(other.kind),
                            };
                            q.index() != pid && kinds && other.tier == pol.tier && other.order == pol.order
                        })
                    });
                if tied {
                    continue;
                }
                let mut helpers: BTreeSet<RuleId> = BTreeSet::new();
                let mut redundant = true;
                'outer: for &x in &subjects {
                    let ident = &e.identities[x];
                    let rules = if dir == Direction::Ingress { &ident.ingress_rules } else { &ident.egress_rules };
                    for &y in &peers {
                        let dst = if dir == Direction::Ingress { x } else { y.index() };
                        let dst_ports = Some(e.identities[dst].ports.as_slice());
                        let mine = r.ports.resolve(dst_ports);
                        if mine.is_empty() {
                            continue;
                        }
                        // A Pass of the tier that matches the same traffic hands it on: one tier alone cannot tell
                        // whether the rule changes the outcome (the tier's fold counts passed traffic as allowed).
                        let passes = rules.iter().any(|&r2| {
                            let rule2 = &e.rules[r2.index()];
                            r2 != rid
                                && rule2.tier == r.tier
                                && rule2.action == Action::Pass
                                && applies(rule2, IdentityId::new(x), y)
                                && !rule2.ports.resolve(dst_ports).intersect(&mine).is_empty()
                        });
                        if passes {
                            redundant = false;
                            break 'outer;
                        }
                        // What the evaluator decides between x and y in the rule's tier, with and without this
                        // rule: what it allows (the rest denied), and what it does not deny (the rest allowed).
                        let decided = |without: Option<RuleId>, end: TierEnd| {
                            let variant = Variant::Tier(r.tier, end);
                            let x = IdentityId::new(x);
                            e.fold_side_variant(x, dir, &mut Sets, PortSet::all(), false, variant, |r2, rule2| {
                                if Some(r2) == without || !applies(rule2, x, y) {
                                    return PortSet::empty();
                                }
                                rule2.ports.resolve(dst_ports)
                            })
                        };
                        // NetworkPolicy rules only allow: what their tier does not deny is everything, with or
                        // without the rule (Calico's policies in that tier may deny).
                        let ends: &[TierEnd] = if r.tier == e.np_tier() && !e.calico {
                            &[TierEnd::Deny]
                        } else {
                            &[TierEnd::Deny, TierEnd::Continue]
                        };
                        if ends.iter().any(|&end| decided(Some(rid), end) != decided(None, end)) {
                            redundant = false;
                            break 'outer;
                        }
                        // For the message: the other rules of the tier that match this peer on some of the same
                        // ports.
                        for &r2 in rules.iter().filter(|&&r2| r2 != rid && e.rules[r2.index()].tier == r.tier) {
                            let rule2 = &e.rules[r2.index()];
                            if applies(rule2, IdentityId::new(x), y)
                                && !rule2.ports.resolve(dst_ports).intersect(&mine).is_empty()
                            {
                                helpers.insert(r2);
                            }
                        }
                    }
                }
                let mut by: Vec<String> = Vec::new();
                for &h in &helpers {
                    let hr = &e.rules[h.index()];
                    let hp = c.policy(hr.policy);
                    let index = if hp.kind.is_antrea() { hp.position } else { hr.index };
                    // The other splits of an Antrea object's rule are the rule itself.
                    if antrea_key.as_ref().is_some_and(|(key, _, position)| {
                        hp.kind.is_antrea() && c.policy_key(hr.policy) == *key && hp.position == *position
                    }) {
                        continue;
                    }
                    let words = format!("{} {} rule {index}", c.policy_ref(hr.policy), hr.dir);
                    if !by.contains(&words) {
                        by.push(words);
                    }
                }
                if let Some(key) = &antrea_key {
                    if !redundant || by.is_empty() {
                        antrea_needed.insert(key.clone());
                        continue;
                    }
                }
                if !redundant || helpers.is_empty() {
                    continue;
                }
                let msg = match r.action {
                    Action::Allow if pol.kind == PolicyKind::NetworkPolicy => {
                        format!("{dir} rule {ri} allows nothing that is not already allowed by {}", by.join(", "))
                    }
                    _ => format!(
                        "{} changes nothing: without it, every flow it matches is decided the same, given {}",
                        Ctx::rule_words(pol, dir, ri),
                        by.join(", ")
                    ),
                };
                let finding = ctx.policy_finding(
                    &RULE,
                    PolicyId::new(pid),
                    Some(Ctx::rule_path(dir, ri)),
                    msg,
                    "delete the rule, or narrow the broader rule if the overlap was not intended",
                );
                match antrea_key {
                    Some(key) => {
                        let entry = antrea.entry(key).or_default();
                        for w in by {
                            if !entry.0.contains(&w) {
                                entry.0.push(w);
                            }
                        }
                        entry.1.get_or_insert(finding);
                    }
                    None => out.push(finding),
                }
            }
        }
    }
    for (key, (by, finding)) in antrea {
        let Some(mut f) = finding.filter(|_| !antrea_needed.contains(&key)) else { continue };
        // The words of all its splits' helpers.
        if let Some((head, _)) = f.message.split_once(", given ") {
            f.message = format!("{head}, given {}", by.join(", "));
        }
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    #[test]
    fn narrower_rule_covered_by_a_broader_one() {
        let f = run(
            &RULE,
            &with(
                r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: narrow, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broad, namespace: a}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {}}]}]
"#,
            ),
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].object.contains("a/narrow"));
        assert!(f[0].message.contains("a/broad ingress rule 0"), "{}", f[0].message);
    }

    #[test]
    fn partial_overlap_is_not_redundant() {
        let f = run(
            &RULE,
            &with(
                r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: one, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}, {port: 9000}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: two, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {}}], ports: [{port: 5432}]}]
"#,
            ),
        );
        assert!(f.is_empty(), "{f:?}");
    }

    /// Redundancy is judged by the evaluator: with a deny rule first (set by hand: no dialect produces one yet),
    /// the allow rule after it on the same port decides nothing and is the redundant one, and the deny rule,
    /// whose port the allow rule also covers, is not.
    #[test]
    fn order_and_actions_count() {
        use crate::compile::Engine;
        use crate::eval::Action;
        let yaml = with(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - {from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}
  - {from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}
"#,
        );
        let loaded = crate::load::load_str("lint.yaml", &yaml);
        let mut e = Engine::new(loaded.cluster);
        let config = super::super::Config::default();
        let run = |e: &Engine| {
            let mut out = Vec::new();
            (RULE.check)(&super::super::Ctx::new(e, &config), &mut out);
            out
        };
        // Two equal allow rules: each is redundant given the other.
        assert_eq!(run(&e).len(), 2);
        let first = e.policy_rules(crate::model::PolicyId::new(0), crate::model::Direction::Ingress)[0];
        e.set_rule_action(first, Action::Deny);
        let f = run(&e);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.starts_with("ingress rule 1 "), "{}", f[0].message);
    }

    const GUARD: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  ingress:
  - {name: no-pg, action: Deny, from: [{namespaces: {matchLabels: {team: b}}}], protocols: [{tcp: {destinationPort: {number: 5432}}}]}
  - {name: no-b, action: Deny, from: [{namespaces: {matchLabels: {team: b}}}]}
"#;

    /// An admin Deny repeated by a later Deny of its tier changes nothing.
    #[test]
    fn an_admin_rule_repeated_in_its_tier() {
        let f = run(&RULE, &with(GUARD));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0]"));
        assert_eq!(
            f[0].message,
            "ingress rule 0 \"no-pg\" (Deny) changes nothing: without it, every flow it matches is decided the same, \
             given cnp/guard ingress rule 1"
        );
    }

    /// Only the rule's tier counts: an Admin Deny that a Baseline Deny repeats still cannot be overridden by a
    /// NetworkPolicy, and a NetworkPolicy allow that an admin Accept repeats matters once the admin policy goes.
    #[test]
    fn other_tiers_do_not_make_a_rule_redundant() {
        let admin_then_baseline = format!(
            "{}---\n{}",
            GUARD.replace("  - {name: no-b, action: Deny, from: [{namespaces: {matchLabels: {team: b}}}]}\n", ""),
            GUARD.replace("tier: Admin", "tier: Baseline").replace("name: guard", "name: base")
        );
        let f = run(&RULE, &with(&admin_then_baseline));
        assert!(f.iter().all(|f| f.object != "ClusterNetworkPolicy guard"), "{f:?}");
        let accept_and_np = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: open}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  ingress:
  - {action: Accept, from: [{namespaces: {matchLabels: {team: b}}}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}], ports: [{port: 5432}]}]
"#;
        let f = run(&RULE, &with(accept_and_np));
        assert!(f.is_empty(), "{f:?}");
    }

    const CALICO: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  selector: all()
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'web'}, destination: {ports: [5432]}}
  - {action: Allow, source: {selector: app == 'web'}}
"#;

    /// A Calico Allow whose flows a later Allow of its policy allows too.
    #[test]
    fn calico_rule_covered_by_a_broader_one() {
        let f = run(&RULE, &with(CALICO));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "NetworkPolicy.projectcalico.org a/p");
        assert_eq!(
            f[0].message,
            "ingress rule 0 (Allow) changes nothing: without it, every flow it matches is decided the same, given \
             caliconetworkpolicy/a/p ingress rule 1"
        );
    }

    /// Calico rules on the subject's own side apply to the pods it matches only: two rules for different
    /// destinations are not redundant; rules whose peers can be addresses are not judged.
    #[test]
    fn calico_rules_for_different_destinations_or_with_nets() {
        let yaml = CALICO
            .replace(
                "protocol: TCP, source: {selector: app == 'web'}, destination: {ports: [5432]}",
                "source: {selector: app == 'web'}, destination: {selector: app == 'db'}",
            )
            .replace(
                "  - {action: Allow, source: {selector: app == 'web'}}",
                "  - {action: Allow, source: {selector: app == 'web'}, destination: {selector: app == 'web'}}",
            );
        let f = run(&RULE, &with(&yaml));
        assert!(f.is_empty(), "{f:?}");
        let nets = CALICO
            .replace("source: {selector: app == 'web'}, destination", "source: {nets: [10.0.0.0/24]}, destination")
            .replace("source: {selector: app == 'web'}}", "source: {nets: [10.0.0.0/8]}}");
        let f = run(&RULE, &with(&nets));
        assert!(f.is_empty(), "{f:?}");
    }

    /// Log rules decide nothing by design; a Pass hands traffic to the next tiers, which one tier alone does not
    /// judge: an Allow before a catch-all Pass is not redundant (the next tier may deny what it passes).
    #[test]
    fn calico_log_and_pass_rules() {
        let log =
            CALICO.replace("  - {action: Allow, protocol: TCP, source", "  - {action: Log, protocol: TCP, source");
        assert!(run(&RULE, &with(&log)).is_empty());
        let pass = CALICO.replace("  - {action: Allow, source: {selector: app == 'web'}}", "  - {action: Pass}");
        assert!(run(&RULE, &with(&pass)).is_empty());
    }

    /// A rule that nothing reaches is NP016's finding, not this one's.
    #[test]
    fn shadowed_rules_are_left_to_np016() {
        // The catch-all first, the narrower Deny second: the second is never reached.
        let (first, second) = (
            "  - {name: no-pg, action: Deny, from: [{namespaces: {matchLabels: {team: b}}}], protocols: [{tcp: {destinationPort: {number: 5432}}}]}\n",
            "  - {name: no-b, action: Deny, from: [{namespaces: {matchLabels: {team: b}}}]}\n",
        );
        let late = GUARD.replace(&format!("{first}{second}"), &format!("{second}{first}"));
        assert_ne!(late, GUARD);
        assert!(run(&RULE, &with(&late)).is_empty());
        assert_eq!(run(&super::super::shadowed::RULE, &with(&late)).len(), 1);
    }

    /// A rule of a policy whose priority another policy shares for the same pods is not judged: whether it
    /// changes something depends on their undefined order. With distinct priorities it is.
    #[test]
    fn tied_policies_are_not_judged() {
        let anp = |name: &str, priority: u32, rule: &str| {
            format!(
                "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {{name: {name}}}\n\
                 spec:\n  priority: {priority}\n  subject: {{namespaces: {{matchLabels: {{team: b}}}}}}\n  egress:\n  \
                 - {rule}\n"
            )
        };
        let yaml = |p: u32| {
            with(&format!(
                "{}---\n{}---\n{}",
                anp("allow-web", 10, "{action: Allow, to: [{namespaces: {matchLabels: {team: a}}}], ports: [{portNumber: {port: 8080}}]}"),
                anp("deny-a", p, "{action: Deny, to: [{namespaces: {matchLabels: {team: a}}}]}"),
                anp("deny-all", 50, "{action: Deny, to: [{namespaces: {}}]}"),
            ))
        };
        // In netpol's order (allow-web first), deny-a changes nothing given allow-web and deny-all; the other
        // order of the tie would make it decide 8080.
        assert!(run(&RULE, &yaml(10)).is_empty());
        let f = run(&RULE, &yaml(11));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "AdminNetworkPolicy deny-a");
    }

    /// Antrea: a Drop that a later Drop of its object repeats changes nothing: one finding for the object's rule
    /// (split per appliedTo entry, the splits overlapping on a/web), naming the other rule by its index in the
    /// object; the splits of one rule never make each other redundant.
    #[test]
    fn antrea_rules_judged_per_object_rule() {
        let acnp = |rules: &str| {
            format!(
                "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {{name: guard}}\nspec:\n  \
                 priority: 5\n  appliedTo: [{{namespaceSelector: {{matchLabels: {{team: a}}}}}}, {{podSelector: \
                 {{matchLabels: {{app: web}}}}}}]\n  ingress:\n{rules}"
            )
        };
        let client = "  - {action: Drop, from: [{podSelector: {matchLabels: {app: client}}}]}\n";
        let ns_b = "  - {action: Drop, from: [{namespaceSelector: {matchLabels: {team: b}}}]}\n";
        let f = run(&RULE, &with(&acnp(&format!("{client}{ns_b}"))));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy.crd.antrea.io guard");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0]"));
        assert_eq!(
            f[0].message,
            "ingress rule 0 (Drop) changes nothing: without it, every flow it matches is decided the same, given \
             acnp/guard ingress rule 1"
        );
        // One rule alone, its appliedTo entries overlapping: nothing.
        let f = run(&RULE, &with(&acnp(client)));
        assert!(f.is_empty(), "{f:?}");
    }
}
