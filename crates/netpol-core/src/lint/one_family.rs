//! NP014 catch-all-one-family.
//!
//! **What it finds**: a rule whose "any address" ipBlock covers one IP family only (`0.0.0.0/0` while no rule of
//! the policy in that direction has `::/0`, or the reverse) and pods the policy selects have addresses of the
//! other family.
//! **Why it is bad**: `0.0.0.0/0` reads as "anywhere" but holds no IPv6 address: on a dual-stack cluster the
//! selected pods can reach (or be reached from) the Internet over IPv4 only, and IPv6 connections time out.
//! **Instead**: add an `ipBlock` peer for the other family (`::/0`, with matching `except`s) to the same rule, or
//! keep the family blocked on purpose (and disable the rule for that policy).
//!
//! Calico rules hold CIDRs of one family only (its validator refuses both), and Felix renders a rule once per
//! family, dropping it for a family its `nets` or `notNets` have no CIDR of. So, when no other rule of the policy
//! in that direction is about the other family (its own `nets` or `notNets`, or no address criteria), this
//! finds: `nets` with a catch-all (`0.0.0.0/0`) and no selector while the selected pods have addresses of the
//! other family; `notNets` without a selector ("everything but these", which matches no address of the other
//! family at all) while the selected pods have such addresses; and `nets` or `notNets` with a selector whose
//! pods have addresses of the other family, which the rule never matches. Rules with an explicit `ipVersion` are
//! left alone.

use std::net::IpAddr;

use super::calico;
use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{CPeer, IdentityId};
use crate::model::{CalicoPeer, Direction, Peer, PolicyId};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP014",
    name: "catch-all-one-family",
    severity: Severity::Warning,
    explanation: "An ipBlock meant as \"any address\" covers one IP family only (0.0.0.0/0 without ::/0, or the \
                  reverse), while pods the policy selects have addresses of the other family; or a Calico rule's \
                  nets or notNets (one family each) leave out the other family of dual-stack pods it selects or \
                  matches. On a dual-stack cluster that traffic then goes over one family only: connections over \
                  the other one time out.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    calico_rules(ctx, out);
    let c = &ctx.engine.cluster;
    let splits = super::antrea::Splits::new(c);
    for (pid, pol) in c.policies.iter().enumerate() {
        for dir in [Direction::Ingress, Direction::Egress] {
            // An Antrea object's rules of a direction are its policies of that direction (one per rule and entry).
            let object = splits.of_object(PolicyId::new(pid), dir);
            let catch_all = |peers: &[Peer], v6: bool| {
                peers.iter().position(
                    |p| matches!(p, Peer::IpBlock(b) if b.cidr.prefix_len() == 0 && b.cidr.addr().is_ipv6() == v6),
                )
            };
            // A catch-all of the other family anywhere in the policy's rules of this direction counts: the two
            // families are often written as two rules.
            let has = |v6: bool| {
                object.iter().any(|&q| c.policy(q).rules(dir).iter().any(|r| catch_all(&r.peers, v6).is_some()))
            };
            for (ri, rule) in pol.rules(dir).iter().enumerate() {
                // An Antrea rule names its action: only what allows is judged.
                if pol.kind.is_antrea() && rule.action != crate::model::Action::Allow {
                    continue;
                }
                let (peer, missing_v6) = match (catch_all(&rule.peers, false), catch_all(&rule.peers, true)) {
                    (Some(p), None) if !has(true) => (p, true),
                    (None, Some(p)) if !has(false) => (p, false),
                    _ => continue,
                };
                let family = |ip: &IpAddr| ip.is_ipv6() == missing_v6;
                let pods: Vec<String> = splits
                    .selected(ctx, PolicyId::new(pid))
                    .iter()
                    .flat_map(|&i| ctx.engine.identities[i.index()].pods.iter().copied())
                    .filter(|&p| c.pod(p).ips.iter().any(family))
                    .map(|p| c.pod_ref(p))
                    .collect();
                if pods.is_empty() {
                    continue;
                }
                let (has, lacks, other) =
                    if missing_v6 { ("IPv4", "IPv6", "::/0") } else { ("IPv6", "IPv4", "0.0.0.0/0") };
                let what = if dir == Direction::Ingress { "from" } else { "to" };
                let msg = format!(
                    "this rule allows {dir} {what} outside addresses over {has} only, but selected pods have {lacks} \
                     addresses: {}",
                    Ctx::name_list(pods, 3)
                );
                out.push(ctx.policy_finding(
                    &RULE,
                    PolicyId::new(pid),
                    Some(Ctx::peer_path(dir, ri, peer)),
                    msg,
                    format!("add a peer `ipBlock: {{cidr: {other}}}` (with matching `except`s) to the same rule, or keep {lacks} blocked on purpose"),
                ));
            }
        }
    }
}

/// The IP family of a Calico side's `nets` or `notNets` (IPv6: `true`); `None` without any.
fn family(nets: &[ipnet::IpNet]) -> Option<bool> {
    nets.first().map(|n| n.addr().is_ipv6())
}

/// Calico rules whose `nets` or `notNets` leave out the other family of dual-stack pods.
fn calico_rules(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    let name = |v6: bool| if v6 { "IPv6" } else { "IPv4" };
    for (pid, pol) in c.policies.iter().enumerate().filter(|(_, p)| calico::is_calico(p)) {
        let pid = PolicyId::new(pid);
        for dir in [Direction::Ingress, Direction::Egress] {
            let remote = |ri: usize| -> Option<&CalicoPeer> {
                pol.rules(dir)
                    .get(ri)?
                    .peers
                    .iter()
                    .find_map(|p| if let Peer::Calico(cp) = p { Some(&**cp) } else { None })
            };
            // Whether a rule of this direction is about addresses of family `v6`: its own nets or notNets, or no
            // address criteria at all (it matches both families).
            let covered = |v6: bool| {
                (0..pol.rules(dir).len()).any(|ri| match remote(ri) {
                    None => true,
                    Some(cp) => {
                        cp.ip_version.is_none()
                            && (family(&cp.nets) == Some(v6)
                                || family(&cp.not_nets) == Some(v6)
                                || (cp.nets.is_empty() && cp.not_nets.is_empty() && cp.selector.is_none()))
                    }
                })
            };
            for (ri, &rid) in e.policy_rules(pid, dir).iter().enumerate() {
                let Some(cp) = remote(ri) else { continue };
                if cp.ip_version.is_some() {
                    continue;
                }
                let (field, v6) = match (family(&cp.nets), family(&cp.not_nets)) {
                    (Some(v6), _) => ("nets", v6),
                    (None, Some(v6)) => ("notNets", v6),
                    (None, None) => continue,
                };
                let catch_all = cp.nets.iter().any(|n| n.prefix_len() == 0);
                let other = !v6;
                if covered(other) {
                    continue;
                }
                let has_other = |i: IdentityId| {
                    e.identities[i.index()].pods.iter().any(|&p| c.pod(p).ips.iter().any(|ip| ip.is_ipv6() == other))
                };
                let pods_with =
                    |ids: &[IdentityId]| -> Vec<IdentityId> { ids.iter().copied().filter(|&i| has_other(i)).collect() };
                let (fam, lacks) = (name(v6), name(other));
                let what = if dir == Direction::Ingress { "from" } else { "to" };
                let (ids, msg, help) = if cp.selector.is_some() {
                    // The pods the selector matches are matched at their addresses of one family only.
                    let rule = &e.rules[rid.index()];
                    let matched: Vec<IdentityId> = rule
                        .peers
                        .iter()
                        .filter_map(
                            |p| if let CPeer::Calico(id) = *p { e.calico_peer_of(id).sel.as_ref() } else { None },
                        )
                        .flat_map(|m| m.idents.iter())
                        .collect();
                    let ids = pods_with(&matched);
                    let msg = format!(
                        "this rule's {field} are {fam} only, so it matches the pods of its selector at their {fam} \
                         addresses only, but some have {lacks} addresses: {}",
                        ctx.pod_list(&ids, 3)
                    );
                    let help = format!(
                        "add the same rule with `{field}` of {lacks} CIDRs (a Calico rule holds one family), or \
                         drop `{field}` to match these pods at every address"
                    );
                    (ids, msg, help)
                } else if catch_all || field == "notNets" {
                    let ids = pods_with(&ctx.selected[pid.index()]);
                    let reads = if catch_all { "\"any address\"" } else { "\"any address but these\"" };
                    let action = pol.rules(dir).get(ri).map_or(crate::model::Action::Allow, |r| r.action);
                    let (verb, on_purpose) = match action {
                        crate::model::Action::Allow => ("allows", format!("keep {lacks} blocked on purpose")),
                        crate::model::Action::Deny => ("denies", format!("leave {lacks} open on purpose")),
                        crate::model::Action::Reject => ("rejects", format!("leave {lacks} open on purpose")),
                        crate::model::Action::Pass => ("passes on", format!("leave {lacks} to this tier on purpose")),
                        crate::model::Action::Log => ("logs", format!("leave {lacks} unlogged on purpose")),
                    };
                    let msg = format!(
                        "this rule's {field} read as {reads} but are {fam} only: it {verb} {dir} {what} {fam} \
                         addresses only, while selected pods have {lacks} addresses: {}",
                        ctx.pod_list(&ids, 3)
                    );
                    let help = if catch_all {
                        format!(
                            "add a rule for {lacks} (`{field}: ['{}']`; a Calico rule holds one family), or \
                             {on_purpose}",
                            if other { "::/0" } else { "0.0.0.0/0" }
                        )
                    } else {
                        format!(
                            "add the same rule with `notNets` of {lacks} CIDRs (Felix drops a rule for a family its \
                             notNets have no CIDR of), or {on_purpose}"
                        )
                    };
                    (ids, msg, help)
                } else {
                    continue;
                };
                if ids.is_empty() {
                    continue;
                }
                let path = format!("{}.{field}", calico::side_path(dir, ri, true));
                out.push(ctx.policy_finding(&RULE, pid, Some(path), msg, help));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::run;
    use super::RULE;

    const PODS: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: dual, namespace: a, labels: {app: dual}}\nspec: {containers: [{name: c}]}\nstatus: {podIPs: [{ip: 10.0.0.1}, {ip: 'fd00::1'}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: v4, namespace: a, labels: {app: v4}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.0.0.2}\n";

    fn policy(app: &str, peers: &str) -> String {
        format!("{PODS}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: a}}\nspec:\n  podSelector: {{matchLabels: {{app: {app}}}}}\n  policyTypes: [Egress]\n  egress: [{{to: [{peers}], ports: [{{port: 443}}]}}]\n")
    }

    #[test]
    fn flags_an_ipv4_catch_all_on_dual_stack_pods() {
        let f = run(&RULE, &policy("dual", "{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0].to[0]"));
        assert!(f[0].message.contains("over IPv4 only") && f[0].message.contains("a/dual"), "{}", f[0].message);
        assert!(f[0].help.contains("::/0"), "{}", f[0].help);
    }

    #[test]
    fn quiet_with_both_families_or_single_stack_pods() {
        let both = "{ipBlock: {cidr: 0.0.0.0/0}}, {ipBlock: {cidr: '::/0'}}";
        assert!(run(&RULE, &policy("dual", both)).is_empty());
        assert!(run(&RULE, &policy("v4", "{ipBlock: {cidr: 0.0.0.0/0}}")).is_empty());
        // The other family in another rule of the same policy and direction.
        let two_rules = policy("dual", "{ipBlock: {cidr: 0.0.0.0/0}}").replace(
            "ports: [{port: 443}]}]",
            "ports: [{port: 443}]}, {to: [{ipBlock: {cidr: '::/0'}}], ports: [{port: 443}]}]",
        );
        assert!(two_rules.contains("'::/0'"));
        assert!(run(&RULE, &two_rules).is_empty());
        // Not a catch-all: a narrower block is about those addresses only.
        assert!(run(&RULE, &policy("dual", "{ipBlock: {cidr: 192.0.2.0/24}}")).is_empty());
    }

    fn calico(egress: &str) -> String {
        format!("{PODS}---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: a}}\nspec:\n  selector: app == 'dual'\n  types: [Egress]\n  egress:\n{egress}")
    }

    /// Calico: a catch-all of one family, notNets of one family, nets of one family with a selector of
    /// dual-stack pods.
    #[test]
    fn calico_nets_of_one_family() {
        let f = run(&RULE, &calico("  - {action: Allow, destination: {nets: [0.0.0.0/0]}}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "NetworkPolicy.projectcalico.org a/p");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0].destination.nets"));
        assert!(
            f[0].message
                .contains("allows egress to IPv4 addresses only, while selected pods have IPv6 addresses: a/dual"),
            "{}",
            f[0].message
        );
        assert!(f[0].help.contains("`nets: ['::/0']`"), "{}", f[0].help);
        let f = run(&RULE, &calico("  - {action: Allow, destination: {notNets: [10.0.0.0/8]}}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0].destination.notNets"));
        assert!(
            f[0].message.starts_with("this rule's notNets read as \"any address but these\" but are IPv4 only"),
            "{}",
            f[0].message
        );
        // A Deny of everything but the cluster's IPv4 range denies nothing over IPv6.
        let f = run(&RULE, &calico("  - {action: Deny, destination: {notNets: [10.0.0.0/8]}}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("it denies egress to IPv4 addresses only"), "{}", f[0].message);
        assert!(f[0].help.ends_with("or leave IPv6 open on purpose"), "{}", f[0].help);
        // A selector of dual-stack pods with IPv4 nets: they are matched over IPv4 only.
        let f =
            run(&RULE, &calico("  - {action: Allow, destination: {selector: app == 'dual', nets: [10.0.0.0/8]}}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.ends_with("but some have IPv6 addresses: a/dual"), "{}", f[0].message);
    }

    /// Calico rules for both families, an explicit ipVersion, narrow nets without a selector, single-stack pods.
    #[test]
    fn quiet_for_calico_rules_of_both_families_or_on_purpose() {
        let both = "  - {action: Allow, destination: {nets: [0.0.0.0/0]}}\n  - {action: Allow, destination: {nets: ['::/0']}}\n";
        assert!(run(&RULE, &calico(both)).is_empty());
        let not_both = "  - {action: Allow, destination: {notNets: [10.0.0.0/8]}}\n  - {action: Allow, destination: {notNets: ['fd00::/8']}}\n";
        assert!(run(&RULE, &calico(not_both)).is_empty());
        let any = "  - {action: Allow, destination: {notNets: [10.0.0.0/8]}}\n  - {action: Allow, protocol: TCP, destination: {ports: [443]}}\n";
        assert!(run(&RULE, &calico(any)).is_empty());
        assert!(run(&RULE, &calico("  - {action: Allow, ipVersion: 4, destination: {nets: [0.0.0.0/0]}}\n")).is_empty());
        assert!(run(&RULE, &calico("  - {action: Allow, destination: {nets: [192.0.2.0/24]}}\n")).is_empty());
        let v4 = calico("  - {action: Allow, destination: {nets: [0.0.0.0/0]}}\n")
            .replace("selector: app == 'dual'", "selector: app == 'v4'");
        assert!(run(&RULE, &v4).is_empty());
        let v4_peer = "  - {action: Allow, destination: {selector: app == 'v4', nets: [10.0.0.0/8]}}\n";
        assert!(run(&RULE, &calico(v4_peer)).is_empty());
    }

    #[test]
    fn flags_an_ipv6_catch_all_on_pods_with_ipv4() {
        let f = run(&RULE, &policy("dual", "{ipBlock: {cidr: '::/0'}}"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("over IPv6 only"), "{}", f[0].message);
    }

    /// Antrea: the other family in another rule of the object counts (each rule is a policy of its own), a Drop is
    /// not judged, and an Allow of one family alone for dual-stack pods is one finding at its rule.
    #[test]
    fn antrea_rules_of_one_object() {
        let acnp = |rules: &str| {
            format!(
                "{PODS}---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {{name: p}}\nspec:\n  \
                 priority: 1\n  appliedTo: [{{podSelector: {{matchLabels: {{app: dual}}}}}}, {{podSelector: {{}}}}]\n  \
                 egress:\n{rules}"
            )
        };
        let v4 = "  - {action: Allow, to: [{ipBlock: {cidr: 0.0.0.0/0}}]}\n";
        let v6 = "  - {action: Allow, to: [{ipBlock: {cidr: '::/0'}}]}\n";
        let f = run(&RULE, &acnp(&format!("{v4}{v6}")));
        assert!(f.is_empty(), "{f:?}");
        let f = run(&RULE, &acnp(&v4.replace("Allow", "Drop")));
        assert!(f.is_empty(), "{f:?}");
        let f = run(&RULE, &acnp(v4));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0].to"));
        assert!(f[0].message.ends_with("selected pods have IPv6 addresses: a/dual"), "{f:?}");
    }
}
