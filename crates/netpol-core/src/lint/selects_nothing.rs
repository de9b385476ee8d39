//! NP001 policy-selects-no-pod.
//!
//! **What it finds**: a NetworkPolicy whose `podSelector` matches no pod of its namespace.
//! **Why it is bad**: the policy does nothing; usually a label typo or the wrong namespace, so the pods it was
//! written for are not protected.
//! **Instead**: fix the labels (`kubectl get pods -n NS --show-labels`) or the namespace, or delete the policy.

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::PolicyId;

pub static RULE: RuleInfo = RuleInfo {
    code: "NP001",
    name: "policy-selects-no-pod",
    severity: Severity::Warning,
    explanation: "The policy's podSelector matches no pod in its namespace, so it isolates and allows nothing. \
                  This is usually a label typo or a policy applied to the wrong namespace: the pods it was meant \
                  for are not protected.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for (pid, pol) in c.policies.iter().enumerate() {
        let Some(ns) = pol.ns() else { continue };
        // Selecting only hostNetwork pods is NP008's finding, not "selects no pod".
        if !ctx.selected[pid].is_empty() || ctx.selects_only_host_network(PolicyId::new(pid)) {
            continue;
        }
        let msg = format!("podSelector `{}` selects no pod in namespace {}", pol.pod_selector, c.ns_name(ns));
        out.push(ctx.policy_finding(
            &RULE,
            PolicyId::new(pid),
            Some("spec.podSelector".into()),
            msg,
            "check the pod labels (`kubectl get pods -n NAMESPACE --show-labels`) and the policy's namespace",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    #[test]
    fn flags_a_selector_that_matches_nothing() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {podSelector: {matchLabels: {app: wbe}}}\n"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].code, "NP001");
        assert!(f[0].message.contains("app=wbe"));
        assert_eq!(f[0].field.as_deref(), Some("spec.podSelector"));
    }

    #[test]
    fn quiet_when_only_host_network_pods_are_selected() {
        // NP008 reports this policy; "selects no pod" would contradict it.
        let f = run(&RULE, &with("apiVersion: v1\nkind: Pod\nmetadata: {name: agent, namespace: a, labels: {app: agent}}\nspec: {hostNetwork: true, containers: [{name: c}]}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {podSelector: {matchLabels: {app: agent}}}\n"));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn quiet_when_pods_are_selected() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {podSelector: {matchLabels: {app: web}}}\n"));
        assert!(f.is_empty(), "{f:?}");
    }
}
