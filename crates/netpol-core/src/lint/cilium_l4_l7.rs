//! NP024 cilium-l4-wildcards-l7.
//!
//! **What it finds**: a Cilium `toPorts` entry with L7 rules (`rules.http`, `rules.dns`) whose filtering another
//! allow rule switches off: an L4-only rule (no L7 rules; of any policy selecting the same pods, NetworkPolicy v1
//! included) that applies to the same pods, allows some of the same ports and matches some of the same peers.
//! One finding per (L7 entry, L4 rule), naming both, the ports and the peers affected.
//! **Why it is bad**: Cilium merges the rules of a port: an L4-only allow of a peer on a port adds a wildcard L7
//! rule there, so every request of that peer passes the proxy (`pkg/policy/l4.go`, documented as L7 rules being
//! wildcarded by L4-only rules). The HTTP paths or DNS names the L7 rule lists restrict nothing for those peers.
//! **Instead**: narrow the L4-only rule (other ports, or peers the L7 rule does not select), or give it the same
//! L7 rules.
//!
//! Judged per identity, by the evaluator: for each pod identity with L7 rules and each peer (a pod identity, one
//! outside address per segment of the address space), the ports the L7 entry allows to that peer that stay allowed
//! when rules with L7 rules match nothing ([`crate::eval::Variant::NoL7`], deny rules first as always), and the
//! L4-only allow rules that match that peer on those ports.

use std::collections::{BTreeMap, BTreeSet};

use super::cilium::is_cilium;
use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{Endpoint, IdentityId, RuleId};
use crate::eval::Variant;
use crate::model::{Action, Direction, PolicyKind};
use crate::portset::PortSet;

pub static RULE: RuleInfo = RuleInfo {
    code: "NP024",
    name: "cilium-l4-wildcards-l7",
    severity: Severity::Warning,
    explanation: "An allow rule without L7 rules applies to the same pods as a Cilium rule with HTTP or DNS rules, \
                  on some of the same ports and for some of the same peers. Cilium then wildcards the L7 rules for \
                  those peers and ports: every request passes, and the L7 rule filters nothing there.",
    check,
};

/// What one (L7 rule, L4 rule) pair switches off.
#[derive(Default)]
struct Hit {
    ports: PortSet,
    peers: Vec<IdentityId>,
    outside: BTreeSet<std::net::IpAddr>,
    subjects: Vec<IdentityId>,
}

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    if !e.cluster.has_cilium() {
        return;
    }
    let mut hits: BTreeMap<(RuleId, RuleId), Hit> = BTreeMap::new();
    let outside: Vec<Endpoint> = ctx.addresses().outside.iter().map(|&ip| Endpoint::External(ip)).collect();
    for (i, ident) in e.identities.iter().enumerate() {
        let i = IdentityId::new(i);
        if ident.host_network {
            continue;
        }
        for dir in [Direction::Ingress, Direction::Egress] {
            if !e.has_l7_rules(i, dir) {
                continue;
            }
            let rules = if dir == Direction::Ingress { &ident.ingress_rules } else { &ident.egress_rules };
            let allow = |l7: bool| {
                rules.iter().copied().filter(move |r| {
                    let rule = &e.rules[r.index()];
                    rule.action == Action::Allow && rule.l7.is_some() == l7
                })
            };
            let peers = (0..e.identities.len())
                .filter_map(|j| ctx.peer_endpoint(i, IdentityId::new(j)).map(|ep| (Some(IdentityId::new(j)), ep)))
                .chain(outside.iter().map(|ep| (None, *ep)));
            for (j, ep) in peers {
                let dst_ports = match (dir, j) {
                    (Direction::Ingress, _) => Some(ident.ports.as_slice()),
                    (Direction::Egress, Some(j)) => Some(e.identities[j.index()].ports.as_slice()),
                    (Direction::Egress, None) => None,
                };
                let mut open: Option<PortSet> = None;
                for r in allow(true) {
                    let l7 = &e.rules[r.index()];
                    if !ctx.rule_applies(l7, i, &ep) {
                        continue;
                    }
                    let open = open.get_or_insert_with(|| e.side_ports(i, dir, &ep, Variant::NoL7));
                    let affected = l7.ports.resolve(dst_ports).intersect(open);
                    if affected.is_empty() {
                        continue;
                    }
                    for l in allow(false) {
                        let l4 = &e.rules[l.index()];
                        if !ctx.rule_applies(l4, i, &ep) {
                            continue;
                        }
                        let ports = l4.ports.resolve(dst_ports).intersect(&affected);
                        if ports.is_empty() {
                            continue;
                        }
                        let hit = hits.entry((r, l)).or_default();
                        hit.ports.union_with(&ports);
                        match (j, &ep) {
                            (Some(j), _) => hit.peers.push(j),
                            (None, Endpoint::External(ip)) => {
                                hit.outside.insert(*ip);
                            }
                            _ => {}
                        }
                        hit.subjects.push(i);
                    }
                }
            }
        }
    }
    let c = &e.cluster;
    for ((r, l), mut hit) in hits {
        let (l7, l4) = (&e.rules[r.index()], &e.rules[l.index()]);
        let dir = l7.dir;
        let pol = c.policy(l7.policy);
        let Some(field) = pol.rules(dir).get(l7.index as usize).and_then(|r| r.name.clone()) else { continue };
        let parser = pol.rules(dir).get(l7.index as usize).and_then(|r| r.l7.as_ref()).map_or("L7", |r| r.parser());
        hit.subjects.sort_unstable();
        hit.subjects.dedup();
        hit.peers.sort_unstable();
        hit.peers.dedup();
        let mut peers = Vec::new();
        if !hit.peers.is_empty() {
            peers.push(ctx.pod_list(&hit.peers, 3));
        }
        if let Some(ip) = hit.outside.first() {
            peers.push(format!("outside addresses (such as {ip})"));
        }
        let (from, what) = if dir == Direction::Ingress { ("from", "request") } else { ("to", "request") };
        let msg = format!(
            "{} allows {dir} {from} {} on {} without L7 rules, for {}: Cilium wildcards the {parser} rules of this \
             entry there, and every {what} passes",
            rule_ref(ctx, l4.policy, dir, l4.index as usize),
            peers.join(" and "),
            hit.ports,
            ctx.pod_list(&hit.subjects, 3),
        );
        out.push(ctx.policy_finding(
            &RULE,
            l7.policy,
            Some(field),
            msg,
            "narrow the L4-only rule (other ports, or peers the L7 rule does not select), or give it the same L7 rules",
        ));
    }
}

/// A rule as a finding names it: its object and field (`CiliumNetworkPolicy a/open spec.ingress[0]`,
/// `NetworkPolicy a/p spec.ingress[1]`).
fn rule_ref(ctx: &Ctx, pol: crate::model::PolicyId, dir: Direction, index: usize) -> String {
    let c = &ctx.engine.cluster;
    let p = c.policy(pol);
    let field = match p.rules(dir).get(index).and_then(|r| r.name.as_deref()) {
        Some(name) if is_cilium(p) => name.to_string(),
        _ if p.kind == PolicyKind::NetworkPolicy => Ctx::rule_path(dir, index),
        _ => Ctx::rule_words(p, dir, index),
    };
    format!("{} {field}", Ctx::object_name(c, pol))
}

#[cfg(test)]
mod tests {
    use super::super::cilium::cnp;
    use super::super::testutil::{run, with};
    use super::RULE;

    const HTTP: &str = "  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: db}}]\n    toPorts:\n    - ports: [{port: '8080', protocol: TCP}]\n      rules: {http: [{method: GET, path: /public}]}\n";

    #[test]
    fn an_l4_rule_of_another_policy_on_the_same_port_and_peer() {
        let open = "  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n    toPorts: [{ports: [{port: '8000', endPort: 9000, protocol: TCP}]}]\n";
        let f = run(&RULE, &with(&format!("{}\n---\n{}", cnp("a", "web", HTTP), cnp("a", "open", open))));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "CiliumNetworkPolicy a/web");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].toPorts[0]"));
        assert_eq!(
            f[0].message,
            "CiliumNetworkPolicy a/open spec.ingress[0] allows ingress from a/db on TCP 8080 without L7 rules, for \
             a/web: Cilium wildcards the HTTP rules of this entry there, and every request passes"
        );
    }

    /// A NetworkPolicy v1 rule wildcards too (Cilium enforces both); an outside address through a CIDR rule.
    #[test]
    fn networkpolicy_and_outside_addresses() {
        let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: db}}}]\n    ports: [{port: 8080}]\n";
        let f = run(&RULE, &with(&format!("{}\n---\n{np}", cnp("a", "web", HTTP))));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].message.starts_with("NetworkPolicy a/p spec.ingress[0] allows ingress from a/db"),
            "{}",
            f[0].message
        );
        let ext = "  endpointSelector: {matchLabels: {app: web}}\n  egress:\n  - toCIDR: [192.0.2.0/24]\n    toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n      rules: {http: [{method: GET}]}\n  - toEntities: [world]\n    toPorts: [{ports: [{port: '80', protocol: TCP}]}]\n";
        let f = run(&RULE, &with(&cnp("a", "ext", ext)));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0].toPorts[0]"));
        assert!(
            f[0].message.contains("spec.egress[1] allows egress to outside addresses (such as 192.0.2."),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn quiet_for_other_ports_other_peers_or_denied_traffic() {
        for other in [
            // Another port.
            "  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n    toPorts: [{ports: [{port: '5432', protocol: TCP}]}]\n",
            // Another peer.
            "  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: web}}]\n",
            // The same port and peer with L7 rules of its own.
            "  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n    toPorts:\n    - ports: [{port: '8080', protocol: TCP}]\n      rules: {http: [{method: POST}]}\n",
            // Denied first: nothing is allowed, nothing is wildcarded.
            "  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n  ingressDeny:\n  - fromEndpoints: [{matchLabels: {app: db}}]\n",
        ] {
            let f = run(&RULE, &with(&format!("{}\n---\n{}", cnp("a", "web", HTTP), cnp("a", "open", other))));
            assert!(f.is_empty(), "{other}: {f:?}");
        }
    }
}
