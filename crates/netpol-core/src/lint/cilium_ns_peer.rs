//! NP025 cilium-namespace-labels-peer-selects-nothing.
//!
//! **What it finds**: a `fromEndpoints`/`toEndpoints` selector of a (namespaced) CiliumNetworkPolicy that selects no
//! pod because Cilium limits it to the policy's own namespace, while it was meant for pods elsewhere: pods of other
//! namespaces match its labels, or it names a label that other namespaces carry (a namespace's label written as a
//! pod label: `kubernetes.io/metadata.name: b` instead of `io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name`
//! or `io.kubernetes.pod.namespace: b`).
//! **Why it is bad**: the rule allows (or denies) nothing from those peers: the traffic the author meant is dropped
//! (or let through).
//! **Instead**: name the namespace (`k8s:io.kubernetes.pod.namespace: b`) or its labels
//! (`k8s:io.cilium.k8s.namespace.labels.team: b`), or use a CiliumClusterwideNetworkPolicy.
//!
//! Upstream semantics (cilium/cilium, `pkg/k8s/apis/cilium.io/utils/utils.go`, `getEndpointSelector`, used by
//! `ParseToCiliumRule` for every endpoint selector of a rule): in a namespaced policy a peer selector gets
//! `k8s:io.kubernetes.pod.namespace=<the policy's namespace>` added unless it already has the namespace key
//! (source `k8s:` or `any:`, which an unprefixed key is) or some key starting with
//! `io.cilium.k8s.namespace.labels.` (either source); `reserved:` selectors are left alone, and clusterwide policies
//! only require some namespace. So a selector that names a namespace's labels with the right prefix is never
//! limited (a wrong value there is "selects nothing" in general, not this rule's), and the mistake this rule finds
//! is a selector without such keys, limited to the own namespace, whose pods live elsewhere. The loader applies the
//! same rule (`load/cilium.rs`); this rule reads the compiled selector (its last conjunct the own namespace).

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::calico_selector::Expr;
use crate::model::{cilium_keys, Direction, NsId, Peer, PolicyId, PolicyKind};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP025",
    name: "cilium-namespace-labels-peer-selects-nothing",
    severity: Severity::Warning,
    explanation: "A fromEndpoints/toEndpoints selector of a CiliumNetworkPolicy selects no pod: Cilium limits a \
                  namespaced policy's peer selectors to the policy's own namespace unless they name \
                  io.kubernetes.pod.namespace or io.cilium.k8s.namespace.labels.* keys, and the pods (or namespace \
                  labels) it names are in other namespaces. The rule applies to no peer.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    // The labels Cilium's selectors see on each pod (hostNetwork pods have no endpoint of their own).
    let pods: Vec<(NsId, crate::labels::Labels)> =
        c.pods.iter().filter(|p| !p.host_network).map(|p| (p.ns, c.pod_calico_labels(p))).collect();
    for (pid, pol) in c.policies.iter().enumerate() {
        let (PolicyKind::CiliumNetworkPolicy, Some(own)) = (pol.kind, pol.ns()) else { continue };
        let own_name = c.ns_name(own);
        let mut seen = std::collections::HashSet::new();
        for dir in [Direction::Ingress, Direction::Egress] {
            let field = if dir == Direction::Ingress { "fromEndpoints" } else { "toEndpoints" };
            for rule in pol.rules(dir) {
                let Some(base) = super::cilium::rule_field(rule) else { continue };
                if rule.name.as_deref().is_some_and(|n| n.contains("Requires[")) {
                    continue;
                }
                for (k, peer) in rule.peers.iter().enumerate() {
                    let Peer::Calico(cp) = peer else { continue };
                    let Some(expr) = &cp.selector else { continue };
                    let Some(rest) = limited(expr, own_name) else { continue };
                    let path = format!("{base}.{field}[{k}]");
                    if !seen.insert(path.clone()) || pods.iter().any(|(_, l)| expr.matches(l)) {
                        continue;
                    }
                    let mut elsewhere: Vec<&str> =
                        pods.iter().filter(|(_, l)| rest.matches(l)).map(|(ns, _)| c.ns_name(*ns)).collect();
                    elsewhere.sort_unstable();
                    elsewhere.dedup();
                    // Keys of the selector that are other namespaces' labels (and no pod's).
                    let mut ns_keys: Vec<(String, Vec<&str>)> = Vec::new();
                    for key in keys(&rest) {
                        let carriers: Vec<&str> = c
                            .namespaces
                            .iter()
                            .filter(|n| n.name != own_name && n.labels.get(&key).is_some())
                            .map(|n| n.name.as_str())
                            .collect();
                        if !carriers.is_empty() && !pods.iter().any(|(_, l)| l.get(&key).is_some()) {
                            ns_keys.push((key, carriers));
                        }
                    }
                    if elsewhere.is_empty() && ns_keys.is_empty() {
                        continue;
                    }
                    let why = if elsewhere.is_empty() {
                        let (key, nss) = &ns_keys[0];
                        format!(
                            "`{key}` is a label of namespace {} (a namespace's labels are \
                             `{}{key}` on its pods)",
                            nss.join(", "),
                            cilium_keys::NS_LABELS
                        )
                    } else {
                        format!("pods it matches exist only in {}", elsewhere.join(", "))
                    };
                    let msg = format!(
                        "{field} selector `{rest}` selects no pod: in a CiliumNetworkPolicy it only looks in the \
                         policy's namespace {own_name} (it names neither {} nor {}* keys), and {why}",
                        cilium_keys::NAMESPACE,
                        cilium_keys::NS_LABELS
                    );
                    let help = match (ns_keys.first(), elsewhere.first()) {
                        (Some((key, _)), _) => format!(
                            "select the namespace by its labels (`k8s:{}{key}`) or name (`k8s:{}`)",
                            cilium_keys::NS_LABELS,
                            cilium_keys::NAMESPACE
                        ),
                        (None, Some(ns)) => format!(
                            "add `k8s:{}: {ns}` (or `k8s:{}<label>` of that namespace) to the selector, or use a \
                             CiliumClusterwideNetworkPolicy",
                            cilium_keys::NAMESPACE,
                            cilium_keys::NS_LABELS
                        ),
                        (None, None) => String::new(),
                    };
                    out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), Some(path), msg, help));
                }
            }
        }
    }
}

/// The selector without its limit to namespace `own`, when it is limited to it: its last conjunct is
/// `io.kubernetes.pod.namespace == own` and no other conjunct names the namespace or its labels. `None` for a
/// selector that is the limit alone (`{}`: every pod of the namespace).
fn limited(expr: &Expr, own: &str) -> Option<Expr> {
    let Expr::And(terms) = expr else { return None };
    let (last, rest) = terms.split_last()?;
    let is_limit = matches!(last, Expr::Eq { key, value } if key == cilium_keys::NAMESPACE && value == own);
    let names_ns = |k: &str| k == cilium_keys::NAMESPACE || k.starts_with(cilium_keys::NS_LABELS);
    if !is_limit || rest.iter().flat_map(keys).any(|k| names_ns(&k)) {
        return None;
    }
    Some(match rest {
        [one] => one.clone(),
        _ => Expr::And(rest.to_vec()),
    })
}

/// The label keys an expression names.
fn keys(e: &Expr) -> Vec<String> {
    match e {
        Expr::All | Expr::Global => Vec::new(),
        Expr::Has(k) => vec![k.clone()],
        Expr::Eq { key, .. }
        | Expr::Ne { key, .. }
        | Expr::Contains { key, .. }
        | Expr::StartsWith { key, .. }
        | Expr::EndsWith { key, .. }
        | Expr::In { key, .. }
        | Expr::NotIn { key, .. } => vec![key.clone()],
        Expr::Not(e) => keys(e),
        Expr::And(v) | Expr::Or(v) => v.iter().flat_map(keys).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::cilium::cnp;
    use super::super::testutil::{run, with};
    use super::RULE;

    /// Pods of app=client live in b only: a CiliumNetworkPolicy in a selecting them without a namespace key
    /// selects nothing.
    #[test]
    fn pods_of_another_namespace() {
        let body = "  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: db}}, {matchLabels: {app: client}}]\n  egress:\n  - toEndpoints: [{matchLabels: {app: client}}]\n    toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n      rules: {http: [{method: GET}]}\n";
        let f = run(&RULE, &with(&cnp("a", "web", body)));
        let fields: Vec<_> = f.iter().map(|f| f.field.as_deref().unwrap_or_default()).collect();
        assert_eq!(fields, ["spec.ingress[0].fromEndpoints[1]", "spec.egress[0].toEndpoints[0]"], "{f:?}");
        assert_eq!(f[0].object, "CiliumNetworkPolicy a/web");
        assert!(f[0].message.contains("only looks in the policy's namespace a"), "{}", f[0].message);
        assert!(f[0].message.ends_with("pods it matches exist only in b"), "{}", f[0].message);
        assert!(f[0].help.contains("k8s:io.kubernetes.pod.namespace: b"), "{}", f[0].help);
    }

    /// A namespace's label written as a pod label.
    #[test]
    fn a_namespace_label_as_a_pod_label() {
        let body = "  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{matchLabels: {team: b}}]\n";
        let f = run(&RULE, &with(&cnp("a", "p", body)));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("`team` is a label of namespace b"), "{}", f[0].message);
        assert!(f[0].help.contains("k8s:io.cilium.k8s.namespace.labels.team"), "{}", f[0].help);
    }

    #[test]
    fn quiet_when_the_namespace_is_named_or_pods_match() {
        for peer in [
            // Own pods.
            "{matchLabels: {app: db}}",
            // The namespace named: not limited.
            "{matchLabels: {app: client, 'k8s:io.kubernetes.pod.namespace': b}}",
            "{matchLabels: {app: client, io.cilium.k8s.namespace.labels.team: b}}",
            // Every pod of the namespace.
            "{}",
            // Nothing anywhere: not this rule's.
            "{matchLabels: {app: nowhere}}",
        ] {
            let body = format!("  endpointSelector: {{}}\n  ingress:\n  - fromEndpoints: [{peer}]\n");
            let f = run(&RULE, &with(&cnp("a", "p", &body)));
            assert!(f.is_empty(), "{peer}: {f:?}");
        }
        // Clusterwide policies are not limited to a namespace.
        let ccnp = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: c}\nspec:\n  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n";
        assert!(run(&RULE, &with(ccnp)).is_empty());
    }
}
