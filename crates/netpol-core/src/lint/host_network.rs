//! NP008 selects-host-network-pods.
//!
//! **What it finds**: a policy whose podSelector matches hostNetwork pods.
//! **Why it is bad**: hostNetwork pods share the node's network namespace; CNIs do not enforce NetworkPolicies on
//! them, so the policy gives a false sense of protection.
//! **Instead**: protect host-network workloads with node firewalls (or host policies of your CNI).

use super::{Ctx, Finding, RuleInfo, Severity};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP008",
    name: "selects-host-network-pods",
    severity: Severity::Warning,
    explanation: "The policy selects hostNetwork pods. They share the node's network namespace and CNIs do not \
                  enforce NetworkPolicies on them, so the policy protects nothing there.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for (pid, pol) in c.policies.iter().enumerate() {
        let mut pods: Vec<String> = c
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| p.host_network && p.ns == pol.ns && pol.pod_selector.matches(&p.labels))
            .map(|(i, _)| c.pod_ref(i as u32))
            .collect();
        if pods.is_empty() {
            continue;
        }
        pods.sort();
        let msg = format!(
            "podSelector `{}` selects hostNetwork pod(s) {}; policies are not enforced on them",
            pol.pod_selector,
            pods.join(", ")
        );
        out.push(ctx.policy_finding(
            &RULE,
            pid as u32,
            Some("spec.podSelector".into()),
            msg,
            "use node-level firewalling for host-network workloads, or narrow the podSelector",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    #[test]
    fn flags_host_network_pods() {
        let f = run(&RULE, &with("apiVersion: v1\nkind: Pod\nmetadata: {name: agent, namespace: a, labels: {app: agent}}\nspec: {hostNetwork: true, containers: [{name: c}]}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {podSelector: {}}\n"));
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("a/agent"));
    }

    #[test]
    fn quiet_without_host_network_pods() {
        assert!(run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {podSelector: {}}\n")).is_empty());
    }
}
