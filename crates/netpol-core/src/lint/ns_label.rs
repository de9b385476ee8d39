//! NP004 namespace-label-unknown.
//!
//! **What it finds**: a namespaceSelector requiring a label key that no namespace carries, e.g. `name: monitoring`
//! when namespaces only have the automatic `kubernetes.io/metadata.name`.
//! **Why it is bad**: the selector matches nothing (or, with `NotIn`/`DoesNotExist`, everything), which is rarely
//! what was meant.
//! **Instead**: select on `kubernetes.io/metadata.name: <namespace>` (set by the API server on every namespace) or
//! label the namespaces.

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::load::NAMESPACE_NAME_LABEL;
use crate::model::{Peer, PolicyId};
use crate::selector::{Atom, Requirement};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP004",
    name: "namespace-label-unknown",
    severity: Severity::Warning,
    explanation: "A namespaceSelector uses a label key that no namespace carries (a common case is `name: <ns>` \
                  where only the automatic `kubernetes.io/metadata.name` label exists). The selector then matches no \
                  namespace (or every namespace, for NotIn/DoesNotExist), rarely what was meant.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for at in ctx.peers() {
        let (pid, pol, dir, ri, pi, peer) = (at.policy.index(), at.pol, at.dir, at.rule, at.peer, at.value);
        let Peer::Selectors { namespaces: Some(sel), .. } = peer else { continue };
        for req in sel.requirements() {
            let key = req.key();
            if c.namespaces.iter().any(|n| n.labels.contains_key(key)) {
                continue;
            }
            let values: Vec<&Atom> = match req {
                Requirement::In(_, v) | Requirement::NotIn(_, v) => v.iter().collect(),
                _ => Vec::new(),
            };
            let existing: Vec<&Atom> = values.iter().copied().filter(|v| c.namespace_id(v).is_some()).collect();
            let help = if let Some(v) = existing.first() {
                format!("no namespace has the label `{key}`; did you mean `{NAMESPACE_NAME_LABEL}: {v}`?")
            } else {
                format!(
                    "no namespace has the label `{key}`; label the namespaces or select on `{NAMESPACE_NAME_LABEL}`"
                )
            };
            let msg = format!("namespaceSelector `{sel}` uses label key `{key}`, which no namespace carries");
            let path = Ctx::ns_selector_path(pol, dir, ri, pi);
            out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), Some(path), msg, help));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    #[test]
    fn suggests_the_automatic_label() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {name: b}}}]}]\n"));
        assert_eq!(f.len(), 1);
        assert!(f[0].help.contains("did you mean `kubernetes.io/metadata.name: b`"), "{}", f[0].help);
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].from[0].namespaceSelector"));
    }

    #[test]
    fn quiet_for_known_keys() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}, {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: b}}}]}]\n"));
        assert!(f.is_empty(), "{f:?}");
    }

    /// The admin kinds' namespace selectors are a `namespaces` peer or a `pods` peer's `namespaceSelector`.
    #[test]
    fn admin_peer_paths() {
        let f = run(
            &RULE,
            &with(
                "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\nspec:\n  \
                 tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - {action: Deny, from: \
                 [{namespaces: {matchLabels: {name: b}}}, {pods: {namespaceSelector: {matchLabels: {name: b}}, \
                 podSelector: {}}}]}\n",
            ),
        );
        let fields: Vec<_> = f.iter().map(|f| f.field.as_deref().unwrap_or_default()).collect();
        assert_eq!(fields, ["spec.ingress[0].from[0].namespaces", "spec.ingress[0].from[1].pods.namespaceSelector"]);
    }
}
