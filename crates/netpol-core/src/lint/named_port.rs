//! NP005 named-port-undefined.
//!
//! **What it finds**: a named port (`port: http`) in a rule that no destination pod defines with that protocol:
//! for ingress, the pods the policy selects; for egress, the pods the rule's peers select.
//! **Why it is bad**: a named port resolves per destination pod; when no pod defines it the rule allows nothing.
//! **Instead**: name the container port in the pod template, fix the name/protocol, or use the number.

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{CPeer, IdentityId};
use crate::model::{Direction, PolicyId, PortMatch};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP005",
    name: "named-port-undefined",
    severity: Severity::Warning,
    explanation: "A rule uses a named port that no destination pod defines with that protocol (for ingress: the pods \
                  the policy selects; for egress: the pods its peers select). Named ports resolve against the \
                  destination pod's container ports, so the entry allows nothing.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    let splits = super::antrea::Splits::new(c);
    for (pid, pol) in c.policies.iter().enumerate() {
        let (ing, eg) = &e.policy_rules[pid];
        for (dir, rids) in [(Direction::Ingress, ing), (Direction::Egress, eg)] {
            for (ri, &rid) in rids.iter().enumerate() {
                let crule = &e.rules[rid.index()];
                let model_rule = &pol.rules(dir)[ri];
                // Destination identities.
                // Ingress of a policy that selects only hostNetwork pods: NP008 reports the policy, which is not
                // enforced; "no destination pod" would contradict it.
                if dir == Direction::Ingress && ctx.selects_only_host_network(PolicyId::new(pid)) {
                    continue;
                }
                let dsts: Vec<usize> = match dir {
                    // An Antrea rule's destinations are the pods of all its appliedTo entries.
                    Direction::Ingress => splits.selected(ctx, PolicyId::new(pid)).iter().map(|&i| i.index()).collect(),
                    Direction::Egress => (0..e.identities.len())
                        .filter(|&i| {
                            crule.peers.is_empty()
                                || crule.peers.iter().any(|p| match *p {
                                    CPeer::Sel(s) => e.sel_peers[s.index()].1.contains(IdentityId::new(i)),
                                    CPeer::Block(b) => e.identities[i]
                                        .pods
                                        .iter()
                                        .any(|&pod| c.pod(pod).ips.iter().any(|ip| e.block_contains(b, *ip))),
                                    CPeer::Domains(_)
                                    | CPeer::Nothing
                                    | CPeer::OwnNode
                                    | CPeer::OtherNodes
                                    | CPeer::NodeSet(_) => false,
                                    CPeer::Calico(c) => e.calico_peer_of(c).pods.contains(IdentityId::new(i)),
                                })
                        })
                        .collect(),
                };
                // The admin kinds' named ports have no protocol, nor have a Calico rule's without a `protocol`:
                // the loader writes one entry per protocol, and the port resolves if a container port of that name
                // has any of them.
                let any_protocol = if super::calico::is_calico(pol) {
                    model_rule.calico.as_ref().is_none_or(|c| c.protocol.is_none())
                } else {
                    pol.ns().is_none() && !pol.kind.is_antrea()
                };
                let mut seen: Vec<&str> = Vec::new();
                for (ki, pp) in model_rule.ports.iter().enumerate() {
                    let PortMatch::Named(name) = &pp.port else { continue };
                    if any_protocol {
                        if seen.contains(&name.as_str()) {
                            continue;
                        }
                        seen.push(name);
                        let defined =
                            |i: usize| e.identities[i].ports.iter().any(|cp| cp.name.as_deref() == Some(name));
                        if dsts.iter().any(|&i| defined(i)) {
                            continue;
                        }
                    } else if dsts.iter().any(|&i| e.identities[i].named_port(name, pp.protocol).is_some()) {
                        continue;
                    }
                    let other_proto = dsts
                        .iter()
                        .any(|&i| e.identities[i].ports.iter().any(|cp| cp.name.as_deref() == Some(name.as_str())));
                    let help = if other_proto {
                        format!(
                            "`{name}` is defined with another protocol; set `protocol:` to match the container port"
                        )
                    } else {
                        format!("name the container port `{name}` in the destination pods, or use the port number")
                    };
                    let whom = if dsts.is_empty() {
                        "no pod is a destination of this rule".to_string()
                    } else {
                        format!(
                            "none of {} defines it",
                            ctx.pod_list(&dsts.iter().map(|&i| IdentityId::new(i)).collect::<Vec<_>>(), 3)
                        )
                    };
                    let port = if any_protocol { name.clone() } else { format!("{name}/{}", pp.protocol) };
                    let msg = format!("named port `{port}` resolves on no destination pod: {whom}");
                    let path = Ctx::port_path(pol, dir, ri, ki);
                    out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), Some(path), msg, help));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    #[test]
    fn ingress_named_port_missing_on_selected_pods() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{ports: [{port: http}]}]\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].ports[0]"));
    }

    #[test]
    fn quiet_on_ingress_of_a_policy_selecting_only_host_network_pods() {
        let yaml = with("apiVersion: v1\nkind: Pod\nmetadata: {name: agent, namespace: a, labels: {app: agent}}\nspec: {hostNetwork: true, containers: [{name: c}]}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {matchLabels: {app: agent}}\n  ingress: [{ports: [{port: http}]}]\n");
        let f = run(&RULE, &yaml);
        assert!(f.is_empty(), "{f:?}");
        // NP008 reports the policy instead.
        let host = run(&super::super::host_network::RULE, &yaml);
        assert_eq!(host.len(), 1, "{host:?}");
    }

    #[test]
    fn wrong_protocol_is_explained() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{ports: [{port: http, protocol: UDP}]}]\n"));
        assert_eq!(f.len(), 1);
        assert!(f[0].help.contains("another protocol"));
    }

    #[test]
    fn egress_named_port_resolved_on_peers() {
        let ok = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: b}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}], ports: [{port: http}]}]\n"));
        assert!(ok.is_empty(), "{ok:?}");
        let bad = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: b}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}], ports: [{port: http}]}]\n"));
        assert_eq!(bad.len(), 1);
    }

    /// A Calico rule's named port without a `protocol` resolves with any protocol; with one, with that one.
    #[test]
    fn calico_named_ports() {
        let np = |rule: &str| {
            with(&format!(
                "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: a}}\nspec:\n  selector: app == 'web'\n  ingress:\n  - {rule}\n"
            ))
        };
        assert!(run(&RULE, &np("{action: Allow, destination: {ports: [http]}}")).is_empty());
        assert!(run(&RULE, &np("{action: Allow, protocol: TCP, destination: {ports: [http]}}")).is_empty());
        let f = run(&RULE, &np("{action: Allow, destination: {ports: [80, metrics]}}".replace("80, ", "").as_str()));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].destination.ports[0]"));
        assert!(f[0].message.starts_with("named port `metrics` resolves on no destination pod"), "{}", f[0].message);
        let f = run(&RULE, &np("{action: Allow, protocol: UDP, destination: {ports: [8000, http]}}"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].destination.ports[1]"));
        assert!(f[0].help.contains("another protocol"), "{}", f[0].help);
    }

    /// An admin kind's named port has no protocol: it resolves if a container port of that name has any, and an
    /// undefined one is reported once, at its manifest entry.
    #[test]
    fn admin_named_ports_have_no_protocol() {
        let f = run(
            &RULE,
            &with(
                "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\nspec:\n  \
                 tier: Admin\n  priority: 1\n  subject: {namespaces: {matchLabels: {team: a}}}\n  ingress:\n  - {action: \
                 Accept, from: [{namespaces: {}}], protocols: [{destinationNamedPort: http}, {destinationNamedPort: \
                 metrics}, {udp: {destinationPort: {number: 53}}}]}\n",
            ),
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].protocols[1]"));
        assert!(f[0].message.starts_with("named port `metrics` resolves on no destination pod"), "{}", f[0].message);
    }

    /// Antrea: an ingress named port is resolved on the pods of every appliedTo entry of its rule (each entry is a
    /// policy of its own): `http` is a/web's, which only the second entry selects; `pg2` nobody's, said once.
    #[test]
    fn antrea_ingress_named_ports_on_all_entries() {
        let f = run(&RULE, &with("apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\nspec:\n  priority: 1\n  appliedTo: [{podSelector: {matchLabels: {app: db}}}, {podSelector: {matchLabels: {app: web}}}]\n  ingress:\n  - {action: Allow, ports: [{protocol: TCP, port: http}]}\n  - {action: Allow, ports: [{protocol: TCP, port: pg2}]}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy.crd.antrea.io p");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[1].ports[0]"));
        assert!(f[0].message.contains("pg2/TCP"), "{f:?}");
        assert!(f[0].message.contains("a/db, a/web"), "{f:?}");
    }
}
