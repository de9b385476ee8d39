//! NP010 overly-broad-allow.
//!
//! **What it finds**: ingress from every pod of every namespace (`namespaceSelector: {}` without a narrowing
//! podSelector), and egress to `0.0.0.0/0` or `::/0` without `except`.
//! **Why it is bad**: such rules undo most of the isolation: any compromised pod anywhere gets in, or any pod can
//! reach every address including the cluster's own pods and the cloud metadata endpoint.
//! **Instead**: select the namespaces/pods that need access; `except` the cluster and metadata ranges.

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::{Direction, Peer, PolicyId};

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
        let (pid, dir, ri, pi, peer) = (at.policy.index(), at.dir, at.rule, at.peer, at.value);
        let path = Some(Ctx::peer_path(dir, ri, pi));
        match peer {
            Peer::Selectors { namespaces: Some(ns), pods }
                if ns.is_everything() && pods.as_ref().is_none_or(|p| p.is_everything()) =>
            {
                let what = if dir == Direction::Ingress { "from" } else { "to" };
                let msg = format!("allows {dir} {what} every pod of every namespace (namespaceSelector: {{}})");
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
            _ => {}
        }
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
}
