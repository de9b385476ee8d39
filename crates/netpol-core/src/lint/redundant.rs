//! NP011 redundant-rule.
//!
//! **What it finds**: a rule whose allowed flows are all allowed by other rules (of the same or other policies
//! selecting the same pods); the finding names those rules. Judged by the evaluator: for every pod it applies to
//! and every peer it selects, what is allowed with the rule and without it is the same.
//! **Why it is bad**: redundant rules hide intent and survive refactors: deleting the "other" rule later silently
//! changes nothing or opens less than expected. Removing them makes reviews honest.
//! **Instead**: delete the rule, or narrow the broader one if the redundancy was not intended.
//!
//! Checked on pods only: rules with ipBlock peers or without peers (which also cover addresses outside the
//! cluster) are not judged, and very large rules (more than 200,000 subject × peer identity pairs) are skipped.

use std::collections::BTreeSet;

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{CPeer, IdentityId, RuleId};
use crate::eval::Sets;
use crate::model::{Direction, PolicyId};
use crate::portset::PortSet;

pub static RULE: RuleInfo = RuleInfo {
    code: "NP011",
    name: "redundant-rule",
    severity: Severity::Info,
    explanation: "Everything this rule allows is also allowed by other rules selecting the same pods, which the \
                  finding lists. Redundant rules hide intent: removing the other rules later changes less than it \
                  seems. Delete the rule, or narrow the broader one if the overlap was not intended.",
    check,
};

const BUDGET: usize = 200_000;

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    for (pid, _) in c.policies.iter().enumerate() {
        let (ing, eg) = &e.policy_rules[pid];
        for (dir, rids) in [(Direction::Ingress, ing), (Direction::Egress, eg)] {
            for (ri, &rid) in rids.iter().enumerate() {
                let r = &e.rules[rid.index()];
                if r.peers.is_empty() || r.peers.iter().any(|p| matches!(p, CPeer::Block(_))) {
                    continue;
                }
                let subjects: Vec<usize> = ctx.selected[pid]
                    .iter()
                    .map(|&i| i.index())
                    .filter(|&i| {
                        let ident = &e.identities[i];
                        let rules = if dir == Direction::Ingress { &ident.ingress_rules } else { &ident.egress_rules };
                        rules.contains(&rid)
                    })
                    .collect();
                let mut peers: Vec<IdentityId> = r
                    .peers
                    .iter()
                    .flat_map(|p| match *p {
                        CPeer::Sel(s) => e.sel_peers[s.index()].1.iter().collect::<Vec<_>>(),
                        CPeer::Block(_) | CPeer::Domains(_) | CPeer::Nothing => Vec::new(),
                    })
                    .collect();
                peers.sort_unstable();
                peers.dedup();
                if subjects.is_empty() || peers.is_empty() || subjects.len() * peers.len() > BUDGET {
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
                        // What the evaluator allows between x and y, with and without this rule.
                        let allowed = |without: Option<RuleId>| {
                            e.fold_side(IdentityId::new(x), dir, &mut Sets, PortSet::all(), false, |r2, rule2| {
                                if Some(r2) == without || !e.rule_matches_identity(rule2, y) {
                                    return PortSet::empty();
                                }
                                rule2.ports.resolve(dst_ports)
                            })
                        };
                        if allowed(Some(rid)) != allowed(None) {
                            redundant = false;
                            break 'outer;
                        }
                        // For the message: the other rules that match this peer on some of the same ports.
                        for &r2 in rules.iter().filter(|&&r2| r2 != rid) {
                            let rule2 = &e.rules[r2.index()];
                            if e.rule_matches_identity(rule2, y)
                                && !rule2.ports.resolve(dst_ports).intersect(&mine).is_empty()
                            {
                                helpers.insert(r2);
                            }
                        }
                    }
                }
                if !redundant || helpers.is_empty() {
                    continue;
                }
                let by: Vec<String> = helpers
                    .iter()
                    .map(|&h| {
                        let hr = &e.rules[h.index()];
                        format!("{} {} rule {}", c.policy_ref(hr.policy), hr.dir, hr.index)
                    })
                    .collect();
                let msg = format!("{dir} rule {ri} allows nothing that is not already allowed by {}", by.join(", "));
                out.push(ctx.policy_finding(
                    &RULE,
                    PolicyId::new(pid),
                    Some(Ctx::rule_path(dir, ri)),
                    msg,
                    "delete the rule, or narrow the broader rule if the overlap was not intended",
                ));
            }
        }
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
}
