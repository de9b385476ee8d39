//! NP026 cilium-broad-entity.
//!
//! **What it finds**: a Cilium allow rule whose peer is the entity `all` (every address: pods, nodes and the
//! outside world) or `world` (every address outside the cluster), in either direction: `fromEntities` of an
//! ingress rule (from anywhere) or `toEntities` of an egress rule. A `world-ipv4`/`world-ipv6` entity or a CIDR
//! peer of `0.0.0.0/0` or `::/0` without `except` is the same thing for one family (netpol's model does not tell
//! them apart, so the finding names the rule).
//! **Why it is bad**: as with NP010 (overly-broad-allow), which reports NetworkPolicy's ipBlock `0.0.0.0/0`, such a
//! rule undoes the isolation the policy sets up: anything anywhere gets in, or the pods can reach any address,
//! cloud metadata endpoints included.
//! **Instead**: allow the CIDRs, FQDNs (`toFQDNs`) or endpoints that need access; `cluster` for in-cluster peers.
//!
//! As NP010 does, only allow rules are judged (a deny of `world` is fine), and rules of ICMP only are not reported
//! (ping from everywhere opens no service). NP010 leaves Cilium's kinds to this rule.

use std::collections::HashSet;

use super::cilium::{is_cilium, rule_field};
use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::{Action, Direction, Peer, PolicyId};
use crate::portset::Protocol;

pub static RULE: RuleInfo = RuleInfo {
    code: "NP026",
    name: "cilium-broad-entity",
    severity: Severity::Warning,
    explanation: "A Cilium allow rule's peer is the entity `all` (every address, pods and nodes included) or `world` \
                  (every address outside the cluster), or a CIDR of 0.0.0.0/0 or ::/0 without except: ingress from \
                  anywhere, or egress to any address including cloud metadata endpoints. That undoes most of the \
                  isolation the policy sets up.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for (pid, pol) in c.policies.iter().enumerate().filter(|(_, p)| is_cilium(p)) {
        // A rule with L7 rules is lowered to several model rules with the same peers: report its field once.
        let mut seen = HashSet::new();
        for dir in [Direction::Ingress, Direction::Egress] {
            let (what, field) = match dir {
                Direction::Ingress => ("from", "fromEntities"),
                Direction::Egress => ("to", "toEntities"),
            };
            for rule in pol.rules(dir) {
                if rule.action != Action::Allow {
                    continue;
                }
                let icmp_only = !rule.ports.is_empty()
                    && rule.ports.iter().all(|p| matches!(p.protocol, Protocol::Icmp | Protocol::Icmpv6));
                let Some(base) = rule_field(rule) else { continue };
                if icmp_only {
                    continue;
                }
                for peer in &rule.peers {
                    let Peer::Calico(cp) = peer else { continue };
                    let all_nets: Vec<_> = cp.nets.iter().filter(|n| n.prefix_len() == 0).collect();
                    let (path, msg) = if cp.is_any() {
                        (
                            format!("{base}.{field}"),
                            format!("allows {dir} {what} every address, pods and nodes included (entity `all`)"),
                        )
                    } else if cp.outside_only && cp.not_nets.is_empty() && all_nets.len() == 2 {
                        (
                            format!("{base}.{field}"),
                            format!(
                                "allows {dir} {what} every address outside the cluster (entity `world`){}",
                                if dir == Direction::Egress { ", cloud metadata endpoints included" } else { "" }
                            ),
                        )
                    } else if cp.outside_only && cp.not_nets.is_empty() && !all_nets.is_empty() {
                        (
                            base.to_string(),
                            format!(
                                "allows {dir} {what} every {} address outside the cluster (`world-ipv{}` or a CIDR \
                                 {} without except)",
                                if all_nets[0].addr().is_ipv4() { "IPv4" } else { "IPv6" },
                                if all_nets[0].addr().is_ipv4() { 4 } else { 6 },
                                all_nets[0]
                            ),
                        )
                    } else {
                        continue;
                    };
                    if !seen.insert((path.clone(), msg.clone())) {
                        continue;
                    }
                    out.push(ctx.policy_finding(
                        &RULE,
                        PolicyId::new(pid),
                        Some(path),
                        msg,
                        "allow the CIDRs, FQDNs (toFQDNs) or endpoints that need access (entity `cluster` for \
                         in-cluster peers)",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cilium::cnp;
    use super::super::testutil::{run, with};
    use super::RULE;

    #[test]
    fn world_and_all_in_either_direction() {
        let yaml = with(&cnp(
            "a",
            "open",
            "  endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEntities: [world]\n    toPorts: [{ports: [{port: '8080', protocol: TCP}]}]\n  egress:\n  - toEntities: [all]\n  - toCIDR: [0.0.0.0/0]\n",
        ));
        let f = run(&RULE, &yaml);
        let fields: Vec<_> = f.iter().map(|f| f.field.as_deref().unwrap_or_default()).collect();
        assert_eq!(fields, ["spec.ingress[0].fromEntities", "spec.egress[0].toEntities", "spec.egress[1]"], "{f:?}");
        assert_eq!(f[0].object, "CiliumNetworkPolicy a/open");
        assert_eq!(f[0].message, "allows ingress from every address outside the cluster (entity `world`)");
        assert_eq!(f[1].message, "allows egress to every address, pods and nodes included (entity `all`)");
        assert!(f[2].message.contains("every IPv4 address outside the cluster"), "{}", f[2].message);
        let ccnp = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: c}\nspec:\n  endpointSelector: {}\n  ingress:\n  - fromEntities: [all]\n";
        let f = run(&RULE, &with(ccnp));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "CiliumClusterwideNetworkPolicy c");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].fromEntities"));
    }

    /// A rule with HTTP rules is reported once, at the rule; NP010 leaves Cilium to this rule.
    #[test]
    fn l7_rules_once_and_np010_quiet() {
        let yaml = with(&cnp(
            "a",
            "open",
            "  endpointSelector: {}\n  egress:\n  - toEntities: [world]\n    toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n      rules: {http: [{method: GET}]}\n    - ports: [{port: '443', protocol: TCP}]\n",
        ));
        let f = run(&RULE, &yaml);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0].toEntities"));
        assert!(run(&super::super::broad_allow::RULE, &yaml).is_empty());
    }

    #[test]
    fn quiet_for_denies_narrow_peers_and_icmp() {
        for body in [
            "  endpointSelector: {}\n  egressDeny:\n  - toEntities: [world]\n",
            "  endpointSelector: {}\n  egress:\n  - toEntities: [cluster]\n",
            "  endpointSelector: {}\n  egress:\n  - toCIDRSet: [{cidr: 0.0.0.0/0, except: [169.254.169.254/32]}]\n",
            "  endpointSelector: {}\n  egress:\n  - toCIDR: [192.0.2.0/24]\n",
            "  endpointSelector: {}\n  ingress:\n  - fromEntities: [world]\n    icmps: [{fields: [{type: 8}]}]\n",
        ] {
            let f = run(&RULE, &with(&cnp("a", "p", body)));
            assert!(f.is_empty(), "{body}: {f:?}");
        }
    }
}
