//! NP013 icmp-not-governed.
//!
//! **What it finds**: policies whose name suggests they are meant to control ICMP/ping (`allow-ping`, `deny-icmp`).
//! **Why it is bad**: NetworkPolicy has no ICMP protocol (only TCP, UDP, SCTP). Whether ping passes an isolated
//! pod depends on the CNI, so such a policy does not do what its name says.
//! **Instead**: test reachability with TCP/UDP, or use CNI-specific policies (Calico, Cilium) for ICMP.
//!
//! Calico's policies are not judged: their rules do govern ICMP (`protocol: ICMP`, `icmp: {type: 8}`).

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::PolicyId;

pub static RULE: RuleInfo = RuleInfo {
    code: "NP013",
    name: "icmp-not-governed",
    severity: Severity::Info,
    explanation: "The policy's name suggests it controls ICMP (ping), but NetworkPolicy only knows TCP, UDP and \
                  SCTP. Whether ICMP passes an isolated pod is up to the CNI, so the policy cannot do what its name \
                  says.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for (pid, pol) in c.policies.iter().enumerate() {
        // The admin kinds do govern ICMP: rules without `protocols` and `networks` peers match it; so do Calico's.
        if pol.ns().is_none() || super::calico::is_calico(pol) {
            continue;
        }
        let n = pol.name.to_ascii_lowercase();
        if n.contains("icmp") || n.contains("ping") {
            let msg = format!("`{}` looks meant for ICMP/ping, which NetworkPolicy does not define", pol.name);
            out.push(ctx.policy_finding(
                &RULE,
                PolicyId::new(pid),
                Some("metadata.name".into()),
                msg,
                "use TCP/UDP checks, or your CNI's own policy kinds for ICMP",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    #[test]
    fn flags_icmp_names() {
        assert_eq!(run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-ping, namespace: a}\nspec: {podSelector: {}}\n")).len(), 1);
        assert!(run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-web, namespace: a}\nspec: {podSelector: {}}\n")).is_empty());
    }

    /// Calico rules govern ICMP: a Calico policy named for ping does what its name says.
    #[test]
    fn calico_policies_govern_icmp() {
        let yaml = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: allow-ping, namespace: a}\nspec:\n  selector: all()\n  ingress: [{action: Allow, protocol: ICMP, icmp: {type: 8}}]\n";
        assert!(run(&RULE, &with(yaml)).is_empty());
    }
}
