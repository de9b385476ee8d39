//! NP002 peer-matches-nothing.
//!
//! **What it finds**: a `from`/`to` peer whose selectors can match no pod: a namespaceSelector matching no
//! namespace, a podSelector matching no pod of the policy's namespace, or a namespaceSelector + podSelector in one
//! peer (AND) whose combination is empty although each selector alone matches pods.
//! **Why it is bad**: the rule allows nothing the author intended; the AND/OR confusion comes from YAML dash
//! placement (`- namespaceSelector: ... podSelector: ...` is one peer; two dashes are two peers).
//! **Instead**: fix the labels, or split the peer in two (`- podSelector:` on its own dash) if OR was meant.

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::{NsId, Peer, PolicyId};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP002",
    name: "peer-matches-nothing",
    severity: Severity::Warning,
    explanation: "A peer of a rule can match no pod: its namespaceSelector matches no namespace, its podSelector \
                  matches no pod of the namespaces it looks in, or the namespaceSelector and podSelector of one peer \
                  (which are ANDed) have no pod in common. The rule then allows nothing from that peer; with both \
                  selectors in one peer this is often a dash-placement mistake where two peers (OR) were meant.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for at in ctx.peers() {
        let (pid, pol, dir, ri, pi, peer) = (at.policy.index(), at.pol, at.dir, at.rule, at.peer, at.value);
        let Peer::Selectors { namespaces, pods } = peer else { continue };
        let nss: Vec<NsId> = match namespaces {
            None => pol.ns().into_iter().collect(),
            Some(sel) => (0..c.namespaces.len()).map(NsId::new).filter(|&n| sel.matches(&c.ns(n).labels)).collect(),
        };
        let path = Some(Ctx::peer_path(dir, ri, pi));
        if nss.is_empty() {
            // A selector that only names namespaces absent from the input says nothing about the
            // cluster (the input may be one team's manifests).
            let only_names = namespaces.as_ref().is_some_and(|s| {
                !s.requirements().is_empty()
                    && s.requirements().iter().all(|r| r.key() == crate::load::NAMESPACE_NAME_LABEL)
            });
            if only_names {
                continue;
            }
            let sel = namespaces.as_ref().map(|s| s.to_string()).unwrap_or_default();
            let msg = format!("{} `{sel}` matches no namespace", ns_field(pol, peer));
            out.push(ctx.policy_finding(
                &RULE,
                PolicyId::new(pid),
                path,
                msg,
                "check the namespace labels (`kubectl get ns --show-labels`)",
            ));
            continue;
        }
        let pod_ok = |p: &crate::model::Pod| !p.host_network && pods.as_ref().is_none_or(|s| s.matches(&p.labels));
        let matched = c.pods.iter().any(|p| nss.contains(&p.ns) && pod_ok(p));
        // Without any pod of those namespaces in the input there is nothing to judge.
        let visible = c.pods.iter().any(|p| nss.contains(&p.ns));
        if matched || !visible {
            continue;
        }
        let Some(psel) = pods else { continue };
        let elsewhere: Vec<String> = c
            .pods
            .iter()
            .filter(|p| !nss.contains(&p.ns) && pod_ok(p))
            .map(|p| c.ns_name(p.ns).to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let (msg, help) = match namespaces {
            // The admin kinds' `pods` peer: both selectors in one object, ANDed by definition.
            Some(nsel) if pol.ns().is_none() => (
                format!("no pod matches this `pods` peer (namespaceSelector `{nsel}`, podSelector `{psel}`)"),
                "check the labels of the pods in the selected namespaces".to_string(),
            ),
            Some(nsel) => {
                let ns_has_pods = c.pods.iter().any(|p| nss.contains(&p.ns) && !p.host_network);
                let help = if ns_has_pods && !elsewhere.is_empty() {
                    format!(
                        "did you mean two peers? (dash placement) `namespaceSelector` and `podSelector` in \
                                     one peer are ANDed; pods with `{psel}` exist only in {}",
                        elsewhere.join(", ")
                    )
                } else {
                    "check the labels of the pods in the selected namespaces".to_string()
                };
                (format!("no pod matches podSelector `{psel}` AND namespaceSelector `{nsel}` (one peer)"), help)
            }
            None => {
                let help = if elsewhere.is_empty() {
                    "check the pod labels".to_string()
                } else {
                    format!(
                        "pods with these labels exist in {}; a podSelector alone only looks in the policy's \
                                     namespace — add a namespaceSelector",
                        elsewhere.join(", ")
                    )
                };
                (
                    format!(
                        "podSelector `{psel}` matches no pod in namespace {}",
                        pol.ns().map_or("", |ns| c.ns_name(ns))
                    ),
                    help,
                )
            }
        };
        out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), path, msg, help));
    }
}

/// What the finding calls a peer's namespace selector: `namespaceSelector`, or an admin kind's `namespaces` peer.
fn ns_field(pol: &crate::model::Policy, peer: &Peer) -> &'static str {
    match peer {
        Peer::Selectors { pods: None, .. } if pol.ns().is_none() => "`namespaces` peer",
        _ => "namespaceSelector",
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    const AND_MISTAKE: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: a}}
      podSelector: {matchLabels: {app: client}}
"#;

    #[test]
    fn and_peer_with_empty_combination_suggests_two_peers() {
        let f = run(&RULE, &with(AND_MISTAKE));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].help.contains("did you mean two peers? (dash placement)"), "{}", f[0].help);
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].from[0]"));
    }

    #[test]
    fn namespace_selector_matching_no_namespace() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: zz}}}]}]\n"));
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("matches no namespace"));
    }

    #[test]
    fn pod_selector_alone_looks_in_own_namespace() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]\n"));
        assert_eq!(f.len(), 1);
        assert!(f[0].help.contains("exist in b"), "{}", f[0].help);
    }

    #[test]
    fn quiet_when_the_input_does_not_show_those_namespaces() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: elsewhere}}, podSelector: {matchLabels: {app: x}}}]}]\n"));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn quiet_for_peers_that_match() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: client}}}, {podSelector: {matchLabels: {app: web}}}]}]\n"));
        assert!(f.is_empty(), "{f:?}");
    }
}
