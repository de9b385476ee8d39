//! NP027 cilium-deprecated-requires.
//!
//! **What it finds**: `fromRequires`/`toRequires` in a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy
//! rule, one finding per required selector (`spec.ingress[0].fromRequires[1]`).
//! **Why it is bad**: the fields are deprecated and the API server of current Cilium refuses them. Where they are
//! still evaluated they do not allow anything: each required selector is a condition on every peer of the
//! selected pods in that direction, whichever policy allows the peer — a deny of every peer it does not match,
//! which is how netpol evaluates it (the loader also warns).
//! **Instead**: write the condition as an `ingressDeny`/`egressDeny` rule (a `fromEndpoints`/`toEndpoints` with
//! a `NotIn` or `DoesNotExist` expression), or narrow the allow rules' own selectors.

use super::cilium::is_cilium;
use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::{Direction, Peer, PolicyId};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP027",
    name: "cilium-deprecated-requires",
    severity: Severity::Warning,
    explanation: "A Cilium policy rule uses fromRequires or toRequires. Both are deprecated and refused by the API \
                  server of current Cilium; where evaluated, each required selector denies every peer of the \
                  selected pods (in that direction, whichever policy allows it) that does not match it. Write the \
                  condition as an ingressDeny/egressDeny rule instead.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for (pid, pol) in c.policies.iter().enumerate().filter(|(_, p)| is_cilium(p)) {
        for dir in [Direction::Ingress, Direction::Egress] {
            let field = if dir == Direction::Ingress { ".fromRequires[" } else { ".toRequires[" };
            for rule in pol.rules(dir) {
                let Some(name) = rule.name.as_deref().filter(|n| n.contains(field)) else { continue };
                let required = rule.peers.iter().find_map(|p| match p {
                    Peer::Calico(cp) => cp.not_selector.as_ref().map(|s| format!(" `{s}`")),
                    _ => None,
                });
                let peers = if dir == Direction::Ingress { "source" } else { "destination" };
                let msg = format!(
                    "{} is deprecated (the API server of current Cilium refuses it): evaluated as a deny of every \
                     {dir} {peers} of the selected pods that does not match{}, whichever policy allows it",
                    &field[1..field.len() - 1],
                    required.unwrap_or_default()
                );
                out.push(ctx.policy_finding(
                    &RULE,
                    PolicyId::new(pid),
                    Some(name.to_string()),
                    msg,
                    "write the condition as an ingressDeny/egressDeny rule (fromEndpoints/toEndpoints with a NotIn or \
                     DoesNotExist expression), or narrow the allow rules' selectors",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cilium::cnp;
    use super::super::testutil::{run, run_warned, with};
    use super::RULE;

    #[test]
    fn each_requirement_is_named_by_its_field() {
        let yaml = with(&cnp(
            "a",
            "req",
            "  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: db}}]\n  - fromRequires: [{matchLabels: {env: prod}}, {matchLabels: {zone: x}}]\n  egress:\n  - toRequires: [{matchLabels: {env: prod}}]\n",
        ));
        let f = run_warned(&RULE, &yaml);
        let fields: Vec<_> = f.iter().map(|f| f.field.as_deref().unwrap_or_default()).collect();
        assert_eq!(
            fields,
            ["spec.ingress[1].fromRequires[0]", "spec.ingress[1].fromRequires[1]", "spec.egress[0].toRequires[0]"],
            "{f:?}"
        );
        assert_eq!(f[0].object, "CiliumNetworkPolicy a/req");
        assert!(f[0].message.starts_with("fromRequires is deprecated"), "{}", f[0].message);
        assert!(f[0].message.contains("env"), "{}", f[0].message);
        assert!(f[2].message.starts_with("toRequires is deprecated"), "{}", f[2].message);
    }

    #[test]
    fn quiet_without_requirements() {
        let yaml = with(&cnp(
            "a",
            "plain",
            "  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: db}}]\n  ingressDeny:\n  - fromEndpoints: [{matchExpressions: [{key: env, operator: NotIn, values: [prod]}]}]\n",
        ));
        assert!(run(&RULE, &yaml).is_empty());
    }
}
