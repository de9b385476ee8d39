//! NP010 overly-broad-allow.
//!
//! **What it finds**: ingress from every pod of every namespace (`namespaceSelector: {}` without a narrowing
//! podSelector), and egress to `0.0.0.0/0` or `::/0` without `except`.
//! **Why it is bad**: such rules undo most of the isolation: any compromised pod anywhere gets in, or any pod can
//! reach every address including the cluster's own pods and the cloud metadata endpoint.
//! **Instead**: select the namespaces/pods that need access; `except` the cluster and metadata ranges.
//!
//! Calico Allow rules alike: a side that is `namespaceSelector: all()` and nothing else (every pod of every
//! namespace), and egress to `nets` with `0.0.0.0/0` or `::/0` without a selector or `notNets`. As for
//! NetworkPolicy, a rule without a peer (no `source`/`destination` criteria) is not reported, nor is one of
//! ICMP only (ping from everywhere opens no service). Cilium's kinds are NP026's (cilium-broad-entity).

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::{Action, Direction, Peer, PolicyId, PolicyTier};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP010",
    name: "overly-broad-allow",
    severity: Severity::Warning,
    explanation: "The rule allows ingress from every pod of every namespace, or egress to 0.0.0.0/0 or ::/0 \
                  without exceptions. That undoes most of the isolation: any pod anywhere gets in, or a pod can reach \
                  every address, including other pods and cloud metadata endpoints.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    for at in ctx.peers() {
        let (pid, pol, dir, ri, pi, peer) = (at.policy.index(), at.pol, at.dir, at.rule, at.peer, at.value);
        // Cilium's kinds: NP026 (cilium-broad-entity).
        if pol.kind.is_cilium() {
            continue;
        }
        // Only what allows is broad: an admin Deny or Pass of everything is not.
        if pol.rules(dir).get(ri).is_none_or(|r| r.action != Action::Allow) {
            continue;
        }
        let path = Some(Ctx::peer_path(dir, ri, pi));
        let cluster = pol.ns().is_none();
        match peer {
            Peer::Selectors { namespaces: Some(ns), pods }
                if ns.is_everything() && pods.as_ref().is_none_or(|p| p.is_everything()) =>
            {
                let what = if dir == Direction::Ingress { "from" } else { "to" };
                let msg = if pol.kind.is_antrea() {
                    // An ACNP's podSelector alone, or an empty namespaceSelector; an Antrea Allow is final.
                    let field =
                        if cluster { "podSelector or namespaceSelector `{}`" } else { "namespaceSelector `{}`" };
                    format!(
                        "allows {dir} {what} every pod of every namespace ({field}), and no NetworkPolicy or \
                         baseline-tier policy is consulted for it"
                    )
                } else if cluster {
                    format!("allows {dir} {what} every pod of every namespace (namespaces: {{}}){}", when(pol.tier))
                } else {
                    format!("allows {dir} {what} every pod of every namespace (namespaceSelector: {{}})")
                };
                out.push(ctx.policy_finding(
                    &RULE,
                    PolicyId::new(pid),
                    path,
                    msg,
                    "select the namespaces and pods that need access",
                ));
            }
            Peer::IpBlock(b) if dir == Direction::Egress && b.cidr.prefix_len() == 0 && b.except.is_empty() => {
                let msg = format!(
                    "allows egress to every address ({} without except), including pods and metadata endpoints",
                    b.cidr
                );
                out.push(ctx.policy_finding(
                    &RULE,
                    PolicyId::new(pid),
                    path,
                    msg,
                    "add `except` for the pod/service CIDRs and 169.254.169.254/32, or narrow the CIDR",
                ));
            }
            Peer::Networks(nets) if dir == Direction::Egress => {
                let Some(all) = nets.iter().find(|n| n.prefix_len() == 0) else { continue };
                let msg = format!(
                    "allows egress to every address ({all}), including pods and metadata endpoints{}",
                    when(pol.tier)
                );
                out.push(ctx.policy_finding(
                    &RULE,
                    PolicyId::new(pid),
                    path,
                    msg,
                    "narrow the CIDR, or Deny the pod ranges and 169.254.169.254/32 in a rule before it",
                ));
            }
            Peer::Calico(cp) => {
                let icmp = pol.rules(dir).get(ri).and_then(|r| r.calico.as_ref()).and_then(|c| c.protocol);
                if matches!(icmp, Some(1 | 58)) {
                    continue;
                }
                let side = super::calico::side_path(dir, ri, true);
                let only = cp.not_selector.is_none() && cp.not_nets.is_empty() && cp.ip_version.is_none();
                let every_namespace = matches!(&cp.selector, Some(crate::calico_selector::Expr::Has(k)) if k == crate::model::calico_keys::NAMESPACE);
                if only && every_namespace && cp.nets.is_empty() {
                    let what = if dir == Direction::Ingress { "from" } else { "to" };
                    let msg = format!(
                        "allows {dir} {what} every pod of every namespace (namespaceSelector: all()){}",
                        when(pol.tier)
                    );
                    out.push(ctx.policy_finding(
                        &RULE,
                        PolicyId::new(pid),
                        Some(format!("{side}.namespaceSelector")),
                        msg,
                        "select the namespaces and pods that need access",
                    ));
                }
                let all = cp.nets.iter().find(|n| n.prefix_len() == 0);
                if let (Some(all), true, None, Direction::Egress) = (all, only, &cp.selector, dir) {
                    let msg = format!(
                        "allows egress to every address ({all}), including pods and metadata endpoints{}",
                        when(pol.tier)
                    );
                    out.push(ctx.policy_finding(
                        &RULE,
                        PolicyId::new(pid),
                        Some(format!("{side}.nets")),
                        msg,
                        "narrow the nets (or add `notNets` for the pod ranges and 169.254.169.254/32), or Deny those \
                         in a rule before it",
                    ));
                }
            }
            _ => {}
        }
    }
}

/// When an admin kind's allow applies, in words.
fn when(tier: PolicyTier) -> &'static str {
    match tier {
        PolicyTier::Admin => ", before any NetworkPolicy is consulted",
        PolicyTier::NetworkPolicy | PolicyTier::Baseline | PolicyTier::Custom(_) => "",
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    #[test]
    fn flags_all_namespaces_and_open_internet() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  ingress: [{from: [{namespaceSelector: {}}]}]\n  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}, {ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]}]\n"));
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].from[0]"));
        assert_eq!(f[1].field.as_deref(), Some("spec.egress[0].to[0]"));
    }

    #[test]
    fn quiet_for_narrow_peers() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}]}]\n"));
        assert!(f.is_empty(), "{f:?}");
    }

    /// Calico Allow rules of every namespace or every address are broad; narrower ones, Deny rules and rules
    /// without a peer are not reported.
    #[test]
    fn calico_allows_of_everything() {
        let np = |rules: &str| {
            with(&format!(
                "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: a}}\nspec:\n  selector: all()\n{rules}"
            ))
        };
        let f = run(&RULE, &np("  ingress: [{action: Allow, source: {namespaceSelector: all()}}]\n  egress: [{action: Allow, destination: {nets: [0.0.0.0/0]}}]\n"));
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].object, "NetworkPolicy.projectcalico.org a/p");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].source.namespaceSelector"));
        assert_eq!(f[0].message, "allows ingress from every pod of every namespace (namespaceSelector: all())");
        assert_eq!(f[1].field.as_deref(), Some("spec.egress[0].destination.nets"));
        assert!(f[1].message.starts_with("allows egress to every address (0.0.0.0/0)"), "{}", f[1].message);
        for quiet in [
            "  ingress: [{action: Deny, source: {namespaceSelector: all()}}]\n",
            "  ingress: [{action: Allow, source: {namespaceSelector: all(), selector: app == 'client'}}]\n",
            "  ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]\n",
            "  ingress: [{action: Allow, protocol: ICMP, source: {namespaceSelector: all()}}]\n",
            "  egress: [{action: Allow, destination: {nets: [0.0.0.0/0], notNets: [10.0.0.0/8, 169.254.169.254/32]}}]\n",
            "  egress: [{action: Allow, destination: {nets: [192.0.2.0/24]}}]\n",
        ] {
            assert!(run(&RULE, &np(quiet)).is_empty(), "{quiet}");
        }
    }

    /// An admin Accept of every pod is broad (and comes before any NetworkPolicy); a Deny of every pod is not.
    #[test]
    fn admin_accepts_are_broad_and_denies_are_not() {
        let cnp = |action: &str| {
            format!(
                "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: open}}\n\
                 spec:\n  tier: Admin\n  priority: 1\n  subject: {{namespaces: {{}}}}\n  ingress:\n  - {{action: \
                 {action}, from: [{{namespaces: {{}}}}]}}\n  egress:\n  - {{action: {action}, to: [{{networks: \
                 [\"0.0.0.0/0\"]}}]}}\n"
            )
        };
        let f = run(&RULE, &with(&cnp("Accept")));
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy open");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].from[0]"));
        assert!(f[0].message.contains("(namespaces: {}), before any NetworkPolicy is consulted"), "{}", f[0].message);
        assert!(f[1].message.starts_with("allows egress to every address (0.0.0.0/0)"), "{}", f[1].message);
        assert!(run(&RULE, &with(&cnp("Deny"))).is_empty());
        assert!(run(&RULE, &with(&cnp("Pass"))).is_empty());
    }

    /// Antrea: an ACNP's empty podSelector alone selects every pod of every namespace; said in Antrea's words, once
    /// for the object's rule; a Drop of everything is not broad.
    #[test]
    fn antrea_allow_from_every_namespace() {
        let acnp = |action: &str| {
            format!(
                "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {{name: open}}\nspec:\n  \
                 priority: 1\n  appliedTo: [{{podSelector: {{matchLabels: {{app: web}}}}}}, {{podSelector: \
                 {{matchLabels: {{app: db}}}}}}]\n  ingress:\n  - {{action: {action}, from: [{{podSelector: {{}}}}]}}\n"
            )
        };
        let f = run(&RULE, &with(&acnp("Allow")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy.crd.antrea.io open");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].from"));
        assert_eq!(
            f[0].message,
            "allows ingress from every pod of every namespace (podSelector or namespaceSelector `{}`), and no \
             NetworkPolicy or baseline-tier policy is consulted for it"
        );
        assert!(run(&RULE, &with(&acnp("Drop"))).is_empty());
    }
}
