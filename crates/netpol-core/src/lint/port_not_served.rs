//! NP006 port-not-served.
//!
//! **What it finds**: an ingress rule's numeric port (or range) and protocol that none of the selected pods
//! declares as a container port, when those pods declare ports at all.
//! **Why it is bad**: often a typo (8008 for 8080) or a protocol mistake (UDP for a TCP service), leaving the real
//! port closed. Containers may listen on undeclared ports, so this is informational.
//! **Instead**: match the container port, or declare it in the pod template.

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::{Action, Direction, PolicyId, PortMatch};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP006",
    name: "port-not-served",
    severity: Severity::Info,
    explanation: "An ingress rule allows a port/protocol that none of the selected pods declares as a container \
                  port (and they do declare ports). Often a typo or the wrong protocol, which leaves the real port \
                  closed; containers can listen on undeclared ports, so this is informational.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    // Antrea: the pods an object's rule applies to are those of all its splits (one per appliedTo entry).
    let mut antrea: std::collections::HashMap<_, Vec<crate::compile::IdentityId>> = Default::default();
    for (pid, pol) in c.policies.iter().enumerate().filter(|(_, p)| p.kind.is_antrea() && p.affects_ingress) {
        let key = (c.policy_key(PolicyId::new(pid)), pol.position);
        antrea.entry(key).or_default().extend(&ctx.selected[pid]);
    }
    for (pid, pol) in c.policies.iter().enumerate() {
        let sel = match pol.kind.is_antrea() {
            true => antrea.get(&(c.policy_key(PolicyId::new(pid)), pol.position)).unwrap_or(&ctx.selected[pid]),
            false => &ctx.selected[pid],
        };
        let declared: Vec<_> = sel.iter().flat_map(|&i| e.identities[i.index()].ports.iter()).collect();
        if declared.is_empty() {
            continue;
        }
        for (ri, rule) in pol.rules(Direction::Ingress).iter().enumerate() {
            // An admin Deny or Pass of a port nobody serves is harmless (often deliberate hardening): only what
            // allows is judged.
            if rule.action != Action::Allow {
                continue;
            }
            for (ki, pp) in rule.ports.iter().enumerate() {
                let PortMatch::Range(lo, hi) = pp.port else { continue };
                if declared.iter().any(|cp| cp.protocol == pp.protocol && lo <= cp.port && cp.port <= hi) {
                    continue;
                }
                let mut served: Vec<String> =
                    declared.iter().map(|cp| format!("{}/{}", cp.port, cp.protocol)).collect();
                served.sort();
                served.dedup();
                let msg = format!("no selected pod declares {pp}; they declare {}", served.join(", "));
                let path = Ctx::port_path(pol, Direction::Ingress, ri, ki);
                out.push(ctx.policy_finding(
                    &RULE,
                    PolicyId::new(pid),
                    Some(path),
                    msg,
                    "check the port number and protocol against the container ports",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    #[test]
    fn flags_a_port_nobody_serves() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress: [{ports: [{port: 8008}, {port: 8080, protocol: UDP}, {port: 8080}]}]\n"));
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[0].message.contains("8008/TCP"));
        assert!(f[1].message.contains("8080/UDP"));
    }

    #[test]
    fn quiet_for_served_ports_and_ranges() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 8000, endPort: 9000}, {port: 5432}]}]\n"));
        assert!(f.is_empty(), "{f:?}");
    }

    /// A Calico Allow's destination ports, at their field; a Deny of a port nobody serves is not reported.
    #[test]
    fn calico_destination_ports() {
        let np = |rules: &str| {
            with(&format!(
                "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: a}}\nspec:\n  selector: app == 'web'\n  ingress:\n{rules}"
            ))
        };
        let f = run(&RULE, &np("  - {action: Allow, protocol: TCP, destination: {ports: [8080, 8008]}}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "NetworkPolicy.projectcalico.org a/p");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].destination.ports[1]"));
        assert!(f[0].message.contains("8008/TCP"), "{}", f[0].message);
        assert!(run(&RULE, &np("  - {action: Deny, protocol: TCP, destination: {ports: [23]}}\n")).is_empty());
        assert!(run(&RULE, &np("  - {action: Allow, protocol: TCP, destination: {ports: ['8000:9000']}}\n")).is_empty());
    }

    /// Antrea: a port is judged against the pods of every appliedTo entry of the rule (each entry is a policy of
    /// its own): 5432 is served by a/db, which only the first entry selects; 9999 by nobody, said once.
    #[test]
    fn antrea_rules_are_judged_on_all_their_entries() {
        let f = run(&RULE, &with("apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\nspec:\n  priority: 1\n  appliedTo: [{namespaceSelector: {matchLabels: {team: a}}}, {podSelector: {matchLabels: {app: web}}}]\n  ingress:\n  - {action: Allow, ports: [{protocol: TCP, port: 5432}]}\n  - {action: Allow, ports: [{protocol: TCP, port: 9999}]}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy.crd.antrea.io p");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[1].ports[0]"));
        assert_eq!(f[0].message, "no selected pod declares 9999/TCP; they declare 5432/TCP, 8080/TCP");
        // Ports are counted entry for entry (a named UDP port first).
        let f = run(&RULE, &with("apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\nspec:\n  priority: 1\n  appliedTo: [{podSelector: {matchLabels: {app: web}}}]\n  ingress:\n  - {action: Allow, ports: [{protocol: UDP, port: dns}, {protocol: TCP, port: 9999}]}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].ports[1]"));
    }
}
