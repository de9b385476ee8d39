//! NP009 no-default-deny.
//!
//! **What it finds**: a namespace with pods and no default-deny baseline for a direction: no policy with
//! `podSelector: {}` that isolates that direction.
//! **Why it is bad**: pods no policy selects accept (send) everything; a new workload is open until someone writes
//! its policy (a zero-trust gap).
//! **Instead**: add `podSelector: {}` with `policyTypes: [Ingress]` (and `[Egress]`, with a DNS allow) per namespace.

use super::{Finding, RuleInfo, Severity};
use crate::model::{Action, Direction, Peer, Policy, Scope};
use crate::selector::Labels;

pub static RULE: RuleInfo = RuleInfo {
    code: "NP009",
    name: "no-default-deny",
    severity: Severity::Info,
    explanation: "A namespace with pods has no default-deny baseline for a direction (a policy with `podSelector: \
                  {}` isolating it). Pods that no policy selects are open, so every new workload starts open until \
                  its own policy is written: a zero-trust gap.",
    check,
};

use crate::model::NsId;

fn check(ctx: &super::Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for (nsid, ns) in c.namespaces.iter().enumerate() {
        let has_pods = c.pods.iter().any(|p| p.ns == NsId::new(nsid) && !p.host_network);
        if !has_pods {
            continue;
        }
        for dir in [Direction::Ingress, Direction::Egress] {
            let baseline = c.policies.iter().any(|p| {
                (p.ns() == Some(NsId::new(nsid)) && p.affects(dir) && p.pod_selector.is_everything())
                    || cluster_deny_all(p, &ns.labels, dir)
            });
            if baseline {
                continue;
            }
            let kind = if dir == Direction::Ingress { "Ingress" } else { "Egress" };
            out.push(Finding {
                code: RULE.code,
                rule: RULE.name,
                severity: RULE.severity,
                object: format!("Namespace {}", ns.name),
                // An implicit namespace has no object of its own: point at its first pod.
                origin: ns
                    .origin
                    .clone()
                    .or_else(|| c.pods.iter().find(|p| p.ns == NsId::new(nsid)).map(|p| p.source.origin.clone())),
                field: None,
                message: format!(
                    "namespace {} has no default-deny {} policy (podSelector: {{}}, policyTypes: [{kind}])",
                    ns.name,
                    dir.as_str()
                ),
                help: format!(
                    "add a policy with `podSelector: {{}}` and `policyTypes: [{kind}]` to namespace {}",
                    ns.name
                ),
            });
        }
    }
}

/// Whether `pol` is a cluster-scoped policy whose subject is every pod of a namespace labelled `ns_labels` and
/// that denies all of `dir` to them: a rule with no ports that denies every pod (`namespaces: {}`) for ingress,
/// every address of a family (`networks: [0.0.0.0/0]`) for egress. A deny-all of the Admin or the Baseline tier
/// is a default deny too.
fn cluster_deny_all(pol: &Policy, ns_labels: &Labels, dir: Direction) -> bool {
    let Scope::Cluster(sel) = &pol.scope else { return false };
    let everyone = |p: &Peer| match p {
        Peer::Selectors { namespaces: Some(n), pods } => {
            dir == Direction::Ingress && n.is_everything() && pods.as_ref().is_none_or(|s| s.is_everything())
        }
        Peer::Networks(nets) => nets.iter().any(|n| n.prefix_len() == 0),
        _ => false,
    };
    sel.matches(ns_labels)
        && pol.pod_selector.is_everything()
        && pol.rules(dir).iter().any(|r| r.action == Action::Deny && r.ports.is_empty() && r.peers.iter().any(everyone))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    #[test]
    fn flags_each_missing_direction() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: a}\nspec: {podSelector: {}}\n"));
        let msgs: Vec<&str> = f.iter().map(|x| x.message.as_str()).collect();
        assert!(msgs.iter().any(|m| m.contains("namespace a has no default-deny egress")), "{msgs:?}");
        assert!(!msgs.iter().any(|m| m.contains("namespace a has no default-deny ingress")), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.contains("namespace b has no default-deny ingress")), "{msgs:?}");
    }
}
