//! NP001 policy-selects-no-pod.
//!
//! **What it finds**: a NetworkPolicy whose `podSelector` matches no pod of its namespace; a Calico
//! NetworkPolicy or GlobalNetworkPolicy whose subject (`selector`, with its `namespaceSelector` and
//! `serviceAccountSelector`, as Calico combines them) matches no pod. For Calico, the term that can never hold is
//! named with the closest label key or value the input's pods do carry ("did you mean `app`?"), among the labels
//! Calico's selectors see (the pod's own, `projectcalico.org/namespace`, `projectcalico.org/serviceaccount`, and
//! the namespace's and service account's as `pcns.`/`pcsa.` labels).
//! A Cilium host policy (`nodeSelector`) whose selector matches no Node of the input is reported too.
//! **Why it is bad**: the policy does nothing; usually a label typo or the wrong namespace, so the pods it was
//! written for are not protected.
//! **Instead**: fix the labels (`kubectl get pods -n NS --show-labels`) or the namespace, or delete the policy.

use super::calico::{self, Seen, Universe};
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
    let mut universe: Option<Universe> = None;
    // Cilium host policies already reported (an object's rule is up to three policies of the model).
    let mut hosts_said = std::collections::HashSet::new();
    for (pid, pol) in c.policies.iter().enumerate() {
        if pol.host.cilium_host {
            // A Cilium host policy selects Nodes by their labels (`nodeSelector`), never a pod.
            let rule = pol.ingress.iter().chain(&pol.egress).find_map(|r| r.name.as_deref());
            let at =
                rule.map_or("spec", |n| n.split_once(".ingress").or(n.split_once(".egress")).map_or(n, |(a, _)| a));
            let field = format!("{at}.nodeSelector");
            if ctx.engine.policy_nodes(PolicyId::new(pid)).is_empty()
                && hosts_said.insert((pol.origin.to_string(), field.clone()))
            {
                let msg = format!(
                    "nodeSelector `{}` selects no Node of the input: this host policy applies to no node",
                    pol.calico_selector.as_ref().map_or_else(String::new, |e| e.to_string())
                );
                let help = "check the Nodes' labels (`kubectl get nodes --show-labels`)".to_string();
                out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), Some(field), msg, help));
            }
            continue;
        }
        if let Some(sel) = pol.calico_selector.as_ref().filter(|_| calico::is_calico(pol)) {
            // A policy that applies to host endpoints selects something; a doNotTrack or preDNAT one can select
            // nothing else.
            let heps = !ctx.engine.policy_host_endpoints(PolicyId::new(pid)).is_empty();
            if heps || !ctx.selected[pid].is_empty() || ctx.selects_only_host_network(PolicyId::new(pid)) {
                continue;
            }
            if !pol.host.applies_to_workloads() {
                let what = if pol.host.do_not_track { "doNotTrack" } else { "preDNAT" };
                let msg = format!(
                    "selector `{}` selects no host endpoint (a {what} policy applies to host endpoints only)",
                    calico::shown(sel, None)
                );
                let help = "check the HostEndpoint labels (`calicoctl get hostendpoints -o wide`)".to_string();
                out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), Some("spec.selector".into()), msg, help));
                continue;
            }
            let u = universe.get_or_insert_with(|| Universe::new(ctx, Seen::Subject));
            let own = pol.ns().map(|ns| c.ns_name(ns));
            let where_ = own.map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
            let msg = format!("selector `{}` selects no pod{where_}", calico::shown(sel, own));
            let (field, help) = match calico::blame(ctx, u, sel) {
                Some(b) => (calico::subject_field(&b.key), b.help),
                None => (
                    "spec.selector",
                    "check the pod labels (`kubectl get pods -n NAMESPACE --show-labels`) and the labels Calico adds \
                     (`projectcalico.org/namespace`, `projectcalico.org/serviceaccount`, `pcns.`/`pcsa.` labels)"
                        .to_string(),
                ),
            };
            out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), Some(field.into()), msg, help));
            continue;
        }
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

    /// Cilium: a host policy's nodeSelector that selects no Node (once per object), and none when it selects one.
    #[test]
    fn cilium_host_policies_that_select_no_node() {
        let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {role: edge}}\nstatus: {addresses: [{type: InternalIP, address: 10.1.0.1}]}\n---\n";
        let ccnp = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: h}\nspec:\n  nodeSelector: {matchLabels: {role: egde}}\n  ingress: [{fromEntities: [world]}]\n  egressDeny: [{toEntities: [world]}]\n";
        let f = run(&RULE, &with(&format!("{node}{ccnp}")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.nodeSelector"));
        assert!(f[0].message.contains("selects no Node"), "{}", f[0].message);
        let f = run(&RULE, &with(&format!("{node}{}", ccnp.replace("egde", "edge"))));
        assert!(f.is_empty(), "{f:?}");
    }

    /// Calico: the subject selector, with the closest label key or value the pods carry.
    #[test]
    fn calico_subject_selectors_that_match_nothing() {
        let np = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  selector: ap == 'web'\n  ingress: [{action: Allow}]\n";
        let f = run(&RULE, &with(np));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "NetworkPolicy.projectcalico.org a/p");
        assert_eq!(f[0].field.as_deref(), Some("spec.selector"));
        assert_eq!(f[0].message, "selector `ap == \"web\"` selects no pod in namespace a");
        assert_eq!(f[0].help, "no pod carries the label `ap`; did you mean `app`?");
        // A value no pod has.
        let f = run(&RULE, &with(&np.replace("ap == 'web'", "app in {'wbe', 'frontend'}")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].help, "no pod has `app` = `frontend` or `wbe`; did you mean `web`?");
        // A namespace selector of a GlobalNetworkPolicy: the namespace labels, without their `pcns.` prefix.
        let gnp = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  namespaceSelector: taem == 'a'\n  types: [Ingress]\n";
        let f = run(&RULE, &with(gnp));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "GlobalNetworkPolicy g");
        assert_eq!(f[0].field.as_deref(), Some("spec.namespaceSelector"));
        assert_eq!(f[0].help, "no namespace carries the label `taem`; did you mean `team`?");
        // `name == "b"`: namespaces are named by `projectcalico.org/name`.
        let f = run(&RULE, &with(&gnp.replace("taem == 'a'", "name == 'b'")));
        assert!(f[0].help.ends_with("did you mean `projectcalico.org/name == \"b\"`?"), "{}", f[0].help);
        // A service account selector.
        let sa = np.replace("selector: ap == 'web'", "serviceAccountSelector: role == 'x'");
        let f = run(&RULE, &with(&sa));
        assert_eq!(f[0].field.as_deref(), Some("spec.serviceAccountSelector"));
        assert_eq!(f[0].help, "no service account carries the label `role`");
    }

    /// Calico selectors that select pods, the labels Calico adds among them.
    #[test]
    fn quiet_for_calico_selectors_that_select_pods() {
        for sel in [
            "app == 'web'",
            "projectcalico.org/serviceaccount == 'default'",
            "pcns.team == 'a'",
            "all()",
            "has(projectcalico.org/orchestrator) && !has(nothing)",
        ] {
            let np = format!("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: a}}\nspec:\n  selector: \"{sel}\"\n  ingress: [{{action: Allow}}]\n");
            let f = run(&RULE, &with(&np));
            assert!(f.is_empty(), "{sel}: {f:?}");
        }
        let gnp = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  namespaceSelector: projectcalico.org/name == 'b'\n  types: [Ingress]\n";
        assert!(run(&RULE, &with(gnp)).is_empty());
    }

    #[test]
    fn quiet_when_pods_are_selected() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {podSelector: {matchLabels: {app: web}}}\n"));
        assert!(f.is_empty(), "{f:?}");
    }
}
