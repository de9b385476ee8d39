//! NP012 empty-rule-allows-all.
//!
//! **What it finds**: a rule with neither peers nor ports (`ingress: [{}]`, `egress: [{}]`).
//! **Why it is bad**: an empty rule matches every peer on every port: it allows everything. It is often written
//! believing it denies.
//! **Instead**: to deny everything, list the direction in `policyTypes` and give no rules (`ingress: []` or none).
//!
//! Calico and Antrea rules are not judged: each names its action (`- action: Allow` is their way to allow
//! everything, and reads as such; an Antrea `Drop` with no peers drops everything).

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::{Direction, PolicyId};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP012",
    name: "empty-rule-allows-all",
    severity: Severity::Warning,
    explanation: "A rule with no peers and no ports (`ingress: [{}]`) matches every source or destination on every \
                  port: it allows all traffic in that direction. It is often mistaken for a deny; a deny-all is \
                  the direction in policyTypes with no rules.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for (pid, pol) in c.policies.iter().enumerate() {
        for dir in [Direction::Ingress, Direction::Egress] {
            for (ri, rule) in pol.rules(dir).iter().enumerate() {
                if rule.peers.is_empty() && rule.ports.is_empty() && rule.calico.is_none() && !pol.kind.is_antrea() {
                    let msg = format!("{dir} rule {ri} is empty ({{}}): it allows all {dir} traffic, from/to everywhere, on every port");
                    let kind = if dir == Direction::Ingress { "Ingress" } else { "Egress" };
                    let help = format!(
                        "if you meant deny-all, remove the rule (keep `policyTypes: [{kind}]` with `{}: []`)",
                        dir.as_str()
                    );
                    out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), Some(Ctx::rule_path(dir, ri)), msg, help));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    #[test]
    fn flags_empty_rules_only() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{}, {ports: [{port: 80}]}]\n"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0]"));
        assert!(run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {podSelector: {}, ingress: []}\n")).is_empty());
    }

    /// A Calico rule names its action: `- action: Allow` (or Deny, Log, Pass) with no criteria says what it does.
    #[test]
    fn calico_rules_name_their_action() {
        for action in ["Allow", "Deny", "Log", "Pass"] {
            let yaml = format!("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: a}}\nspec:\n  selector: all()\n  ingress: [{{action: {action}}}]\n  egress: [{{action: {action}}}]\n");
            assert!(run(&RULE, &with(&yaml)).is_empty(), "{action}");
        }
    }

    /// An Antrea rule names its action too: a `Drop` with no peers drops everything, as written.
    #[test]
    fn antrea_rules_name_their_action() {
        for action in ["Allow", "Drop", "Reject", "Pass"] {
            let yaml = format!("apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  priority: 1\n  appliedTo: [{{podSelector: {{}}}}]\n  ingress: [{{action: {action}}}]\n");
            let text = with(&yaml);
            let loaded = crate::load::load_str("t.yaml", &text);
            assert!(loaded.cluster.policies.iter().any(|p| p.kind.is_antrea()), "{action}: {:?}", loaded.diagnostics);
            assert!(run(&RULE, &text).is_empty(), "{action}");
        }
    }
}
