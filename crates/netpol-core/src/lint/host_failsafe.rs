//! NP021: a GlobalNetworkPolicy on host endpoints that denies, or isolates, Felix's failsafe ports. Felix accepts
//! them ahead of the untracked, pre-DNAT and normal policies of every host endpoint (`crate::host`), so such a
//! policy does not close them.

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::host::{FAILSAFE_IN, FAILSAFE_OUT};
use crate::model::{Action, Direction, PolicyId, PolicyKind, PolicyPort, PortMatch, Rule};
use crate::portset::Protocol;

pub static RULE: RuleInfo = RuleInfo {
    code: "NP021",
    name: "host-policy-vs-failsafe-ports",
    severity: Severity::Warning,
    explanation: "Felix keeps its failsafe ports open on every host endpoint, ahead of the untracked, pre-DNAT and \
                  normal policies: inbound TCP 22, UDP 68, TCP 179, 2379, 2380, 5473, 6443, 6666 and 6667; outbound \
                  UDP 53, UDP 67, TCP 179, 2379, 2380, 5473, 6443, 6666 and 6667 (the defaults of \
                  FailsafeInboundHostPorts and FailsafeOutboundHostPorts). A GlobalNetworkPolicy on host endpoints \
                  that denies one of them, or that isolates host endpoints without a rule, does not close them. Such \
                  a policy was written without the failsafe ports in mind: narrow the failsafe lists in the \
                  FelixConfiguration if they must close, or accept that they stay open.",
    check,
};

/// The failsafe ports of `dir` a rule's protocol and port criteria cover (named ports: none, they name pods'
/// or host endpoints' ports case by case).
fn covered(rule: &Rule, dir: Direction) -> Vec<(Protocol, u16)> {
    let list: &[(Protocol, u16)] = match dir {
        Direction::Ingress => &FAILSAFE_IN,
        Direction::Egress => &FAILSAFE_OUT,
    };
    let calico = rule.calico.as_deref();
    list.iter()
        .copied()
        .filter(|&(proto, port)| {
            let hits = |p: &PolicyPort| {
                p.protocol == proto
                    && match p.port {
                        PortMatch::Any => true,
                        PortMatch::Range(lo, hi) => lo <= port && port <= hi,
                        PortMatch::Named(_) => false,
                    }
            };
            let by_ports = if rule.ports.is_empty() {
                calico.and_then(|c| c.protocol).is_none_or(|n| n == proto.number())
            } else {
                rule.ports.iter().any(hits)
            };
            let excluded =
                calico.is_some_and(|c| c.not_protocol == Some(proto.number()) || c.not_ports.iter().any(hits));
            by_ports && !excluded
        })
        .collect()
}

fn port_list(v: &[(Protocol, u16)]) -> String {
    v.iter().map(|(p, n)| format!("{n}/{p}")).collect::<Vec<_>>().join(", ")
}

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    for (pid, pol) in c.policies.iter().enumerate() {
        if pol.kind != PolicyKind::GlobalNetworkPolicy {
            continue;
        }
        let heps = e.policy_host_endpoints(PolicyId::new(pid));
        if heps.is_empty() {
            continue;
        }
        let names = Ctx::name_list(heps.iter().map(|&h| c.host_endpoints[h].name.clone()).collect(), 3);
        for dir in [Direction::Ingress, Direction::Egress] {
            if !pol.affects(dir) {
                continue;
            }
            let what = if dir == Direction::Ingress { "inbound" } else { "outbound" };
            let rules = pol.rules(dir);
            if rules.is_empty() {
                let list = match dir {
                    Direction::Ingress => &FAILSAFE_IN[..],
                    Direction::Egress => &FAILSAFE_OUT[..],
                };
                let msg = format!(
                    "denies all {dir} of host endpoint(s) {names}, but Felix's failsafe {what} ports stay open: {}",
                    port_list(list)
                );
                let help = "allow what the hosts need explicitly, and narrow the failsafe ports in the \
                            FelixConfiguration if they must close"
                    .to_string();
                out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), Some(format!("spec.{dir}")), msg, help));
                continue;
            }
            for (i, r) in rules.iter().enumerate() {
                if r.action != Action::Deny {
                    continue;
                }
                let hit = covered(r, dir);
                if hit.is_empty() {
                    continue;
                }
                let msg = format!(
                    "{} denies {} to host endpoint(s) {names}, but Felix's failsafe {what} ports stay open: this \
                     rule does not close {}",
                    Ctx::rule_words(pol, dir, i),
                    port_list(&hit),
                    if hit.len() == 1 { "it" } else { "them" }
                );
                let help = "narrow FailsafeInboundHostPorts/FailsafeOutboundHostPorts in the FelixConfiguration, or \
                            leave these ports out of the rule"
                    .to_string();
                out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), Some(Ctx::rule_path(dir, i)), msg, help));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::run;
    use super::RULE;

    const HEP: &str = "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: n1-eth0, labels: \
                       {role: node}}\nspec: {node: n1, interfaceName: eth0, expectedIPs: [10.0.0.1]}\n";

    fn gnp(spec: &str) -> String {
        format!("{HEP}---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: h}}\nspec: {spec}\n")
    }

    #[test]
    fn a_deny_of_failsafe_ports_on_host_endpoints() {
        let f = run(
            &RULE,
            &gnp("{selector: role == 'node', ingress: [{action: Deny, protocol: TCP, destination: {ports: [22, 80]}}, {action: Allow}]}"),
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0]"));
        assert!(f[0].message.contains("denies 22/TCP to host endpoint(s) n1-eth0"), "{}", f[0].message);
        // A Deny of every port names them all; egress has its own list.
        let f = run(&RULE, &gnp("{selector: role == 'node', types: [Egress], egress: [{action: Deny}]}"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("53/UDP, 67/UDP, 179/TCP"), "{}", f[0].message);
        assert!(f[0].message.contains("outbound"), "{}", f[0].message);
    }

    #[test]
    fn an_isolating_policy_on_host_endpoints() {
        let f = run(&RULE, &gnp("{selector: role == 'node', types: [Ingress]}"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress"));
        assert!(f[0].message.starts_with("denies all ingress of host endpoint(s) n1-eth0"), "{}", f[0].message);
    }

    #[test]
    fn quiet_without_host_endpoints_or_failsafe_ports() {
        // Denies of other ports, allows of failsafe ports, protocols and notPorts that leave them out.
        let specs = [
            "{selector: role == 'node', ingress: [{action: Deny, protocol: TCP, destination: {ports: [80]}}, {action: Allow}]}",
            "{selector: role == 'node', ingress: [{action: Allow, protocol: TCP, destination: {ports: [22]}}]}",
            "{selector: role == 'node', ingress: [{action: Deny, protocol: ICMP}, {action: Allow}]}",
            "{selector: role == 'node', ingress: [{action: Deny, protocol: TCP, destination: {notPorts: [22, 179, '2379:2380', 5473, 6443, '6666:6667']}}, {action: Allow}]}",
            // Selects no host endpoint.
            "{selector: role == 'db', ingress: [{action: Deny}]}",
        ];
        for spec in specs {
            let f = run(&RULE, &gnp(spec));
            assert!(f.is_empty(), "{spec}: {f:?}");
        }
    }
}
