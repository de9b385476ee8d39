//! NP014 catch-all-one-family.
//!
//! **What it finds**: a rule whose "any address" ipBlock covers one IP family only (`0.0.0.0/0` while no rule of
//! the policy in that direction has `::/0`, or the reverse) and pods the policy selects have addresses of the
//! other family.
//! **Why it is bad**: `0.0.0.0/0` reads as "anywhere" but holds no IPv6 address: on a dual-stack cluster the
//! selected pods can reach (or be reached from) the Internet over IPv4 only, and IPv6 connections time out.
//! **Instead**: add an `ipBlock` peer for the other family (`::/0`, with matching `except`s) to the same rule, or
//! keep the family blocked on purpose (and disable the rule for that policy).

use std::net::IpAddr;

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::{Direction, Peer, PolicyId};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP014",
    name: "catch-all-one-family",
    severity: Severity::Warning,
    explanation: "An ipBlock meant as \"any address\" covers one IP family only (0.0.0.0/0 without ::/0, or the \
                  reverse), while pods the policy selects have addresses of the other family. On a dual-stack \
                  cluster those pods then reach (or are reached from) outside addresses over one family only: \
                  connections over the other one time out.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for (pid, pol) in c.policies.iter().enumerate() {
        for dir in [Direction::Ingress, Direction::Egress] {
            let catch_all = |peers: &[Peer], v6: bool| {
                peers.iter().position(
                    |p| matches!(p, Peer::IpBlock(b) if b.cidr.prefix_len() == 0 && b.cidr.addr().is_ipv6() == v6),
                )
            };
            // A catch-all of the other family anywhere in the policy's rules of this direction counts: the two
            // families are often written as two rules.
            let has = |v6: bool| pol.rules(dir).iter().any(|r| catch_all(&r.peers, v6).is_some());
            for (ri, rule) in pol.rules(dir).iter().enumerate() {
                let (peer, missing_v6) = match (catch_all(&rule.peers, false), catch_all(&rule.peers, true)) {
                    (Some(p), None) if !has(true) => (p, true),
                    (None, Some(p)) if !has(false) => (p, false),
                    _ => continue,
                };
                let family = |ip: &IpAddr| ip.is_ipv6() == missing_v6;
                let pods: Vec<String> = ctx.selected[pid]
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

    #[test]
    fn flags_an_ipv6_catch_all_on_pods_with_ipv4() {
        let f = run(&RULE, &policy("dual", "{ipBlock: {cidr: '::/0'}}"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("over IPv6 only"), "{}", f[0].message);
    }
}
