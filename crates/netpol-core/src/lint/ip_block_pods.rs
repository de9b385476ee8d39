//! NP007 ipblock-covers-pods.
//!
//! **What it finds**: an `ipBlock` whose range (minus `except`) contains pod IPs.
//! **Why it is bad**: pod IPs are ephemeral: a pod restarted elsewhere gets another address, so an ipBlock that
//! happens to cover pods allows (or stops allowing) them by accident. Kubernetes recommends ipBlock for traffic
//! outside the cluster only.
//! **Instead**: select pods with podSelector/namespaceSelector, and `except` the pod CIDR from wide blocks.

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::{Peer, PodId, PolicyId};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP007",
    name: "ipblock-covers-pods",
    severity: Severity::Warning,
    explanation: "An ipBlock covers pod IPs. Pod IPs are ephemeral, so an ipBlock that matches pods allows or stops \
                  allowing them by accident when they are rescheduled; ipBlock is meant for addresses outside the \
                  cluster. Select pods with selectors and except the pod CIDR from wide blocks.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for at in ctx.peers() {
        let (pid, dir, ri, pi, peer) = (at.policy.index(), at.dir, at.rule, at.peer, at.value);
        let Peer::IpBlock(b) = peer else { continue };
        // Every ipBlock of the cluster is interned by the engine; its interval form costs O(log k) per address.
        let Some(&id) = ctx.engine.block_index.get(b) else { continue };
        let mut pods: Vec<String> = c
            .pods
            .iter()
            .enumerate()
            .filter(|(_, p)| p.ips.iter().any(|ip| ctx.engine.block_contains(id, *ip)))
            .map(|(i, _)| c.pod_ref(PodId::new(i)))
            .collect();
        if pods.is_empty() {
            continue;
        }
        pods.sort();
        let n = pods.len();
        pods.truncate(3);
        let more = if n > 3 { format!(" (+{} more)", n - 3) } else { String::new() };
        let msg = format!("ipBlock {b} covers the IPs of {n} pod(s): {}{more}", pods.join(", "));
        let path = format!("{}.ipBlock", Ctx::peer_path(dir, ri, pi));
        out.push(ctx.policy_finding(
            &RULE,
            PolicyId::new(pid),
            Some(path),
            msg,
            "select pods with podSelector/namespaceSelector; add the pod CIDR to `except`",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    #[test]
    fn flags_blocks_covering_pods_but_not_excepted_ones() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/24}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/16]}}, {ipBlock: {cidr: 192.168.0.0/16}}]}]\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("2 pod(s): a/db, a/web"), "{}", f[0].message);
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].from[0].ipBlock"));
    }
}
