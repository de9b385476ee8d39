//! NP009 no-default-deny.
//!
//! **What it finds**: a namespace with pods and no default-deny baseline for a direction: no policy with
//! `podSelector: {}` that isolates that direction.
//! **Why it is bad**: pods no policy selects accept (send) everything; a new workload is open until someone writes
//! its policy (a zero-trust gap).
//! **Instead**: add `podSelector: {}` with `policyTypes: [Ingress]` (and `[Egress]`, with a DNS allow) per namespace.
//!
//! A Calico policy is a default deny for a namespace when it selects every pod of it (those of the input, and a
//! new pod without labels running as `default`), affects the direction, allows or passes nothing without
//! criteria, and denies what its rules leave: its tier's `defaultAction` is Deny (the `default` tier's is), or
//! it has a Deny rule without criteria.

use super::{Finding, RuleInfo, Severity};
use crate::compile::IdentityId;
use crate::model::{Action, Direction, Peer, Policy, Rule, Scope};
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
    // The identities of each namespace (hostNetwork ones left out: no policy applies to them).
    let mut ns_idents: Vec<Vec<IdentityId>> = vec![Vec::new(); c.namespaces.len()];
    for (i, ident) in ctx.engine.identities.iter().enumerate().filter(|(_, i)| !i.host_network) {
        if let Some(v) = ns_idents.get_mut(ident.ns.index()) {
            v.push(IdentityId::new(i));
        }
    }
    for (nsid, ns) in c.namespaces.iter().enumerate() {
        let has_pods = c.pods.iter().any(|p| p.ns == NsId::new(nsid) && !p.host_network);
        if !has_pods {
            continue;
        }
        for dir in [Direction::Ingress, Direction::Egress] {
            let baseline = c.policies.iter().enumerate().any(|(pid, p)| {
                if super::calico::is_calico(p) {
                    let idents = ns_idents.get(nsid).map_or(&[][..], Vec::as_slice);
                    return calico_deny_all(ctx, pid, NsId::new(nsid), dir, idents);
                }
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
                help: if c.has_calico() {
                    format!(
                        "add a policy with `podSelector: {{}}` and `policyTypes: [{kind}]` to namespace {} (or a Calico \
                         NetworkPolicy there with `selector: all()` and `types: [{kind}]`)",
                        ns.name
                    )
                } else {
                    format!("add a policy with `podSelector: {{}}` and `policyTypes: [{kind}]` to namespace {}", ns.name)
                },
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

/// Whether a Calico rule has no criteria: it matches every flow of its direction.
fn matches_all(r: &Rule) -> bool {
    r.peers.is_empty()
        && r.ports.is_empty()
        && r.calico.as_ref().is_none_or(|c| {
            c.local.is_none()
                && c.protocol.is_none()
                && c.not_protocol.is_none()
                && c.not_ports.is_empty()
                && c.icmp.is_none()
                && c.not_icmp.is_none()
                && !crate::compile::calico_unevaluable(c)
        })
}

/// Whether Calico policy `pid` is a default deny of `dir` for namespace `ns`, whose identities are `idents` (see
/// the module's doc).
fn calico_deny_all(ctx: &super::Ctx, pid: usize, ns: NsId, dir: Direction, idents: &[IdentityId]) -> bool {
    let c = &ctx.engine.cluster;
    let pol = c.policy(crate::model::PolicyId::new(pid));
    let rules = pol.rules(dir);
    let tier_denies = c.tiers.get(pol.tier.index()).is_some_and(|t| t.default_action == Action::Deny);
    let denies = tier_denies || rules.iter().any(|r| r.action == Action::Deny && matches_all(r));
    let opens = rules.iter().any(|r| matches!(r.action, Action::Allow | Action::Pass) && matches_all(r));
    if !pol.affects(dir) || !denies || opens {
        return false;
    }
    let namespace = c.ns(ns);
    let sa = c.service_accounts.iter().find(|s| s.ns == ns && s.name == "default");
    let none = Labels::default();
    let new_pod =
        pol.selects(ns, &namespace.labels, &none, || crate::model::calico_labels(&none, namespace, sa, "default"));
    // The pods of the input: what the engine found the policy selects.
    new_pod && idents.iter().all(|i| ctx.selected[pid].binary_search(i).is_ok())
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

    fn namespaces(f: &[super::Finding], dir: &str) -> Vec<String> {
        f.iter().filter(|f| f.message.contains(&format!("default-deny {dir}"))).map(|f| f.object.clone()).collect()
    }

    /// Calico: a policy selecting every pod of the namespace in the default tier (which ends in Deny) is a
    /// default deny; a GlobalNetworkPolicy too, for the namespaces it covers, or one with a Deny rule in a tier
    /// that passes.
    #[test]
    fn calico_default_denies() {
        let np = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: a}\nspec:\n  selector: all()\n  types: [Ingress]\n";
        let f = run(&RULE, &with(np));
        assert_eq!(namespaces(&f, "ingress"), ["Namespace b", "Namespace kube-system"], "{f:?}");
        let gnp = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: deny}\nspec:\n  namespaceSelector: has(team)\n  types: [Egress]\n";
        let f = run(&RULE, &with(gnp));
        assert_eq!(namespaces(&f, "egress"), ["Namespace kube-system"], "{f:?}");
        let tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {order: 10, defaultAction: Pass}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: t.deny}\nspec:\n  tier: t\n  selector: all()\n  egress: [{action: Deny}]\n";
        let f = run(&RULE, &with(tier));
        assert!(namespaces(&f, "egress").is_empty(), "{f:?}");
    }

    /// Calico policies that are not a default deny: one selecting some pods only, one in a tier that passes
    /// without a Deny rule, one that allows everything.
    #[test]
    fn calico_policies_that_are_not_default_denies() {
        for spec in [
            "  selector: app == 'web'\n  types: [Ingress]\n",
            "  selector: all()\n  types: [Ingress]\n  ingress: [{action: Allow}]\n",
            "  selector: has(app)\n  types: [Ingress]\n",
            "  tier: t\n  selector: all()\n  types: [Ingress]\n",
        ] {
            let yaml = format!("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: t}}\nspec: {{order: 10, defaultAction: Pass}}\n---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: t.p, namespace: a}}\nspec:\n{spec}");
            let f = run(&RULE, &with(&yaml));
            assert!(namespaces(&f, "ingress").contains(&"Namespace a".to_string()), "{spec}: {f:?}");
        }
    }
}
