//! NP008 selects-host-network-pods.
//!
//! **What it finds**: a policy whose podSelector matches hostNetwork pods: all it selects, or some of them with
//! a selector that names them. A namespace-wide `{}` selector (a default-deny baseline) that also selects
//! ordinary pods is not reported: covering the namespace's hostNetwork pods too is expected. NP001 and NP005
//! (ingress) stay quiet on a policy that selects only hostNetwork pods: this finding says what is wrong.
//! **Why it is bad**: hostNetwork pods share the node's network namespace; CNIs do not enforce NetworkPolicies on
//! them, so the policy gives a false sense of protection.
//! **Instead**: protect host-network workloads with node firewalls (or host policies of your CNI).
//!
//! Calico gives hostNetwork pods no workload endpoint (their traffic is the node's, which only host endpoints'
//! policies govern): a Calico policy's selector leaves them out by definition, and is reported only when that
//! leaves nothing (`spec.selector`).

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::PolicyId;

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
        let host = &ctx.host_network[pid];
        if host.is_empty() {
            continue;
        }
        let only = ctx.selects_only_host_network(PolicyId::new(pid));
        if let Some(sel) = pol.calico_selector.as_ref().filter(|_| super::calico::is_calico(pol)) {
            if only {
                let mut pods: Vec<String> = host.iter().map(|&p| c.pod_ref(p)).collect();
                pods.sort();
                let own = pol.ns().map(|ns| c.ns_name(ns));
                let msg = format!(
                    "selector `{}` matches only hostNetwork pod(s) {}, which have no workload endpoint (their traffic \
                     is the node's): this policy has no effect",
                    super::calico::shown(sel, own),
                    pods.join(", ")
                );
                out.push(ctx.policy_finding(
                    &RULE,
                    PolicyId::new(pid),
                    Some("spec.selector".into()),
                    msg,
                    "protect host-network workloads with host endpoints and their policies (or node firewalls), or \
                     fix the selector",
                ));
            }
            continue;
        }
        // The admin kinds' subjects leave hostNetwork pods out by definition: that is only worth saying when it
        // leaves nothing.
        if pol.ns().is_none() {
            if only {
                let mut pods: Vec<String> = host.iter().map(|&p| c.pod_ref(p)).collect();
                pods.sort();
                let msg = format!(
                    "the subject matches only hostNetwork pod(s) {}, which the API leaves out of every subject: this \
                     policy has no effect",
                    pods.join(", ")
                );
                out.push(ctx.policy_finding(
                    &RULE,
                    PolicyId::new(pid),
                    Some("spec.subject".into()),
                    msg,
                    "use node-level firewalling for host-network workloads, or fix the subject",
                ));
            }
            continue;
        }
        // A namespace-wide `{}` selector (typically a default-deny) that also selects ordinary pods is meant for
        // them: that it covers a hostNetwork pod of the namespace too is expected, not a mistake.
        if pol.pod_selector.is_everything() && !only {
            continue;
        }
        let mut pods: Vec<String> = host.iter().map(|&p| c.pod_ref(p)).collect();
        pods.sort();
        let msg = if only {
            format!(
                "podSelector `{}` selects only hostNetwork pod(s) {}; policies are not enforced on them, so this \
                 policy has no effect",
                pol.pod_selector,
                pods.join(", ")
            )
        } else {
            format!(
                "podSelector `{}` selects hostNetwork pod(s) {}; policies are not enforced on them",
                pol.pod_selector,
                pods.join(", ")
            )
        };
        out.push(ctx.policy_finding(
            &RULE,
            PolicyId::new(pid),
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

    const AGENT: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: agent, namespace: a, labels: {app: agent}}\nspec: {hostNetwork: true, containers: [{name: c}]}\n---\n";

    #[test]
    fn flags_a_selector_matching_host_network_pods() {
        // `app in (agent, web)`: one ordinary pod and the hostNetwork one.
        let f = run(&RULE, &with(&format!("{AGENT}apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: a}}\nspec: {{podSelector: {{matchExpressions: [{{key: app, operator: In, values: [agent, web]}}]}}}}\n")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("selects hostNetwork pod(s) a/agent"), "{}", f[0].message);
    }

    #[test]
    fn flags_a_policy_selecting_only_host_network_pods() {
        let f = run(&RULE, &with(&format!("{AGENT}apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: a}}\nspec: {{podSelector: {{matchLabels: {{app: agent}}}}}}\n")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("selects only hostNetwork pod(s) a/agent"), "{}", f[0].message);
        assert!(f[0].message.contains("no effect"), "{}", f[0].message);
    }

    #[test]
    fn quiet_for_a_namespace_wide_default_deny_that_covers_a_host_network_pod() {
        let f = run(&RULE, &with(&format!("{AGENT}apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: default-deny, namespace: a}}\nspec: {{podSelector: {{}}, policyTypes: [Ingress, Egress]}}\n")));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn flags_a_namespace_wide_selector_when_the_namespace_has_only_host_network_pods() {
        let f = run(&RULE, &with(&format!("{AGENT}apiVersion: v1\nkind: Pod\nmetadata: {{name: agent, namespace: nodes}}\nspec: {{hostNetwork: true, containers: [{{name: c}}]}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: nodes}}\nspec: {{podSelector: {{}}}}\n")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("selects only hostNetwork pod(s) nodes/agent"), "{}", f[0].message);
    }

    #[test]
    fn quiet_without_host_network_pods() {
        assert!(run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {podSelector: {}}\n")).is_empty());
    }

    /// A Calico selector leaves hostNetwork pods out by definition: reported only when that leaves nothing.
    #[test]
    fn calico_selectors_of_host_network_pods_only() {
        let np = |sel: &str| {
            format!("{AGENT}apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: a}}\nspec:\n  selector: \"{sel}\"\n  ingress: [{{action: Allow}}]\n")
        };
        let f = run(&RULE, &with(&np("app == 'agent'")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "NetworkPolicy.projectcalico.org a/p");
        assert_eq!(f[0].field.as_deref(), Some("spec.selector"));
        assert!(
            f[0].message.starts_with("selector `app == \"agent\"` matches only hostNetwork pod(s) a/agent"),
            "{}",
            f[0].message
        );
        assert!(run(&RULE, &with(&np("app in {'agent', 'web'}"))).is_empty());
        assert!(run(&RULE, &with(&np("all()"))).is_empty());
        // NP001 stays quiet: this finding says what is wrong.
        assert!(run(&super::super::selects_nothing::RULE, &with(&np("app == 'agent'"))).is_empty());
    }

    /// An admin subject leaves hostNetwork pods out by definition: reported only when that leaves nothing.
    #[test]
    fn admin_subjects_of_host_network_pods_only() {
        let agent = "apiVersion: v1\nkind: Pod\nmetadata: {name: agent, namespace: a, labels: {app: agent}}\nspec: {hostNetwork: true, containers: [{name: c}]}\n";
        let cnp = |pods: &str| {
            format!(
                "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: p}}\n\
                 spec:\n  tier: Admin\n  priority: 1\n  subject: {{pods: {{podSelector: {pods}}}}}\n  ingress:\n  - \
                 {{action: Deny, from: [{{namespaces: {{}}}}]}}\n"
            )
        };
        let f = run(&RULE, &with(&format!("{agent}---\n{}", cnp("{matchLabels: {app: agent}}"))));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.subject"));
        assert!(f[0].message.contains("only hostNetwork pod(s) a/agent"), "{}", f[0].message);
        let f = run(
            &RULE,
            &with(&format!(
                "{agent}---\n{}",
                cnp("{matchExpressions: [{key: app, operator: In, values: [agent, web]}]}")
            )),
        );
        assert!(f.is_empty(), "{f:?}");
    }
}
