//! NP001 policy-selects-no-pod.
//!
//! **What it finds**: a NetworkPolicy whose `podSelector` matches no pod of its namespace; a Calico
//! NetworkPolicy or GlobalNetworkPolicy whose subject (`selector`, with its `namespaceSelector` and
//! `serviceAccountSelector`, as Calico combines them) matches no pod. For Calico, the term that can never hold is
//! named with the closest label key or value the input's pods do carry ("did you mean `app`?"), among the labels
//! Calico's selectors see (the pod's own, `projectcalico.org/namespace`, `projectcalico.org/serviceaccount`, and
//! the namespace's and service account's as `pcns.`/`pcsa.` labels).
//! A Cilium host policy (`nodeSelector`) whose selector matches no Node of the input is reported too. An Antrea
//! ClusterNetworkPolicy or NetworkPolicy: each `appliedTo` entry (the policy's, or a rule's) that selects no pod, a
//! ClusterGroup or Group there that has no pod or does not exist, once per entry (`spec.appliedTo[1]`).
//! **Why it is bad**: the policy does nothing; usually a label typo or the wrong namespace, so the pods it was
//! written for are not protected.
//! **Instead**: fix the labels (`kubectl get pods -n NS --show-labels`) or the namespace, or delete the policy.

use super::antrea;
use super::calico::{self, Seen, Universe};
use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::PolicyId;

pub static RULE: RuleInfo = RuleInfo {
    code: "NP001",
    name: "policy-selects-no-pod",
    severity: Severity::Warning,
    explanation: "The policy's podSelector matches no pod in its namespace, so it isolates and allows nothing. \
                  This is usually a label typo or a policy applied to the wrong namespace: the pods it was meant \
                  for are not protected. For Antrea: an appliedTo entry, or its ClusterGroup or Group, that selects \
                  no pod, or a group that does not exist.",
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
        // Antrea's objects are judged per appliedTo entry, below.
        let Some(ns) = pol.ns().filter(|_| !pol.kind.is_antrea()) else { continue };
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
    antrea_applied_to(ctx, out);
}

/// Antrea: an `appliedTo` entry (the policy's or a rule's) that selects no pod, a group that has none or does not
/// exist; once per entry of the object (its split policies are not judged one by one).
fn antrea_applied_to(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for r in c.antrea_refs.iter().filter(|r| r.applied_to) {
        if antrea::members_match(c, &r.members) != antrea::Matches::Nothing {
            continue;
        }
        let (msg, help) = match &r.group {
            Some(g) if !r.exists => (
                format!(
                    "{} `{g}` does not exist: this appliedTo entry applies the policy to no pod",
                    antrea::group_kind(r)
                ),
                "create the group (before the policy in the input), or fix its name",
            ),
            Some(g) if r.members.is_empty() => (
                format!(
                    "{} `{g}` has no pod members (its members are addresses or Nodes, or it has no selector): this \
                     appliedTo entry applies the policy to no pod",
                    antrea::group_kind(r)
                ),
                "apply the policy to a group of pods (podSelector, namespaceSelector, serviceReference)",
            ),
            Some(g) => (
                format!(
                    "{} `{g}` selects no pod{}: this appliedTo entry applies the policy to no pod",
                    antrea::group_kind(r),
                    selectors_words(r)
                ),
                "check the group's selectors against the pod and namespace labels (`kubectl get pods -A \
                 --show-labels`)",
            ),
            None => (
                format!("this appliedTo entry selects no pod{}", selectors_words(r)),
                "check the pod and namespace labels (`kubectl get pods -A --show-labels`)",
            ),
        };
        out.push(antrea::finding(&RULE, r, msg, help));
    }
}

/// ` (namespaceSelector `…`, podSelector `…`)` for the members' selectors (an ANNP's: `podSelector `…` in
/// namespace a`), or nothing.
fn selectors_words(r: &crate::model::AntreaRef) -> String {
    let own = !r.policy.namespace.is_empty();
    let words: Vec<String> = r
        .members
        .iter()
        .filter_map(|m| match m {
            crate::model::Peer::Selectors { namespaces, pods } => {
                let shown = |field: &str, s: &Option<crate::selector::Selector>| {
                    s.as_ref().filter(|s| !s.requirements().is_empty()).map(|s| format!("{field} `{s}`"))
                };
                let namespaces = if own { &None } else { namespaces };
                let both: Vec<String> = [shown("namespaceSelector", namespaces), shown("podSelector", pods)]
                    .into_iter()
                    .flatten()
                    .collect();
                let both = if both.is_empty() { "every pod".to_string() } else { both.join(", ") };
                Some(if own { format!("{both} in namespace {}", r.policy.namespace) } else { both })
            }
            _ => None,
        })
        .collect();
    if words.is_empty() {
        String::new()
    } else {
        format!(" ({})", words.join("; "))
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

    const GROUPS: &str = "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterGroup\nmetadata: {name: nets}\nspec: {ipBlocks: [{cidr: 192.0.2.0/24}]}\n---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterGroup\nmetadata: {name: nobody}\nspec: {podSelector: {matchLabels: {app: nothere}}}\n---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterGroup\nmetadata: {name: webs}\nspec: {podSelector: {matchLabels: {app: web}}, namespaceSelector: {matchLabels: {team: a}}}\n---\n";

    /// Antrea: an appliedTo entry that selects no pod is one finding at the entry, however many rules (and so
    /// split policies) it applies; a group there with no pod, or missing, is named.
    #[test]
    fn antrea_applied_to_entries_that_select_nothing() {
        let acnp = "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\nspec:\n  priority: 1\n  appliedTo: [{podSelector: {matchLabels: {app: web}}}, {podSelector: {matchLabels: {app: ghost}}}]\n  ingress: [{action: Drop, from: [{namespaceSelector: {}}]}, {action: Allow}]\n  egress:\n  - {action: Drop, appliedTo: [{group: nobody}, {group: webs}, {group: missing}]}\n";
        // With a rule-level appliedTo, every rule needs its own: give the ingress rules theirs.
        let acnp = acnp
            .replace("  appliedTo: [{podSelector: {matchLabels: {app: web}}}, {podSelector: {matchLabels: {app: ghost}}}]\n", "")
            .replace(
                "{action: Drop, from: [{namespaceSelector: {}}]}",
                "{action: Drop, from: [{namespaceSelector: {}}], appliedTo: [{podSelector: {matchLabels: {app: web}}}, {podSelector: {matchLabels: {app: ghost}}}]}",
            )
            .replace("{action: Allow}", "{action: Allow, appliedTo: [{group: webs}]}");
        let f = run(&RULE, &with(&format!("{GROUPS}{acnp}")));
        let got: Vec<(&str, &str)> = f.iter().map(|f| (f.field.as_deref().unwrap_or(""), f.message.as_str())).collect();
        assert_eq!(
            got,
            [
                ("spec.ingress[0].appliedTo[1]", "this appliedTo entry selects no pod (podSelector `app=ghost`)"),
                (
                    "spec.egress[0].appliedTo[0]",
                    "ClusterGroup `nobody` selects no pod (podSelector `app=nothere`): this \
                     appliedTo entry applies the policy to no pod"
                ),
                (
                    "spec.egress[0].appliedTo[2]",
                    "ClusterGroup `missing` does not exist: this appliedTo entry applies the policy to no pod"
                ),
            ],
            "{f:?}"
        );
        assert!(f.iter().all(|f| f.object == "ClusterNetworkPolicy.crd.antrea.io p"), "{f:?}");

        // A policy-level entry: once, whatever the number of rules.
        let annp = "apiVersion: crd.antrea.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: q, namespace: a}\nspec:\n  priority: 1\n  appliedTo: [{podSelector: {}}, {podSelector: {matchLabels: {app: wbe}}}]\n  ingress: [{action: Drop}, {action: Allow}]\n  egress: [{action: Drop}]\n";
        let f = run(&RULE, &with(annp));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "NetworkPolicy.crd.antrea.io a/q");
        assert_eq!(f[0].field.as_deref(), Some("spec.appliedTo[1]"));
        assert_eq!(f[0].message, "this appliedTo entry selects no pod (podSelector `app=wbe` in namespace a)");
    }

    /// Entries and groups that select a pod, or name namespaces absent from the input, are not reported.
    #[test]
    fn antrea_applied_to_entries_that_select_pods() {
        let acnp = "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\nspec:\n  priority: 1\n  appliedTo: [{group: webs}, {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: elsewhere}}}]\n  ingress: [{action: Drop}]\n";
        let f = run(&RULE, &with(&format!("{GROUPS}{acnp}")));
        assert!(f.is_empty(), "{f:?}");
        // An ipBlocks group has no pod members.
        let f = run(&RULE, &with(&format!("{GROUPS}{}", acnp.replace("{group: webs}", "{group: nets}"))));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.starts_with("ClusterGroup `nets` has no pod members"), "{f:?}");
    }
}
