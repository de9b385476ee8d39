//! NP019 tier-selects-no-pod.
//!
//! **What it finds**: a Calico Tier (declared by a `Tier` object) that has policies, none of which selects a pod
//! of the input. Judged only when the input has pods.
//! **Why it is bad**: a tier only acts on the endpoints its policies select (for the others it is skipped), so
//! this tier decides nothing, its `defaultAction` included: usually the policies' selectors are wrong (a typo, a
//! label Calico does not see), and the traffic the tier was written to govern goes on to the next tiers.
//! **Instead**: fix the policies' selectors (NP001 reports each one), or delete the tier and its policies.

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::{PolicyId, PolicyTier};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP019",
    name: "tier-selects-no-pod",
    severity: Severity::Warning,
    explanation: "None of the policies of this Calico tier selects a pod. A tier acts only on the endpoints its \
                  policies select and is skipped for the others, so this one decides nothing, its defaultAction \
                  included: the traffic it was written for goes on to the next tiers. Usually the policies' selectors \
                  are wrong (a typo, or a label Calico does not see). Fix them, or delete the tier.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    if !c.pods.iter().any(|p| !p.host_network) && c.host_endpoints.is_empty() {
        return;
    }
    for (ti, tier) in c.tiers.iter().enumerate().skip(3) {
        let Some(origin) = &tier.origin else { continue };
        let pols: Vec<PolicyId> = (0..c.policies.len())
            .map(PolicyId::new)
            .filter(|&p| c.policy(p).tier == PolicyTier::from_index(ti))
            .collect();
        let selects =
            |p: &PolicyId| !ctx.selected[p.index()].is_empty() || !ctx.engine.policy_host_endpoints(*p).is_empty();
        if pols.is_empty() || pols.iter().any(selects) {
            continue;
        }
        let names = Ctx::name_list(pols.iter().map(|&p| c.policy_ref(p)).collect(), 3);
        let n = pols.len();
        let what = if n == 1 {
            format!("its only policy ({names}) selects no pod")
        } else {
            format!("none of its {n} policies ({names}) selects a pod")
        };
        out.push(Finding {
            code: RULE.code,
            rule: RULE.name,
            severity: RULE.severity,
            object: format!("Tier {}", tier.name),
            origin: Some(origin.clone()),
            field: None,
            message: format!("tier `{}` decides nothing: {what}", tier.name),
            help: "fix the policies' selectors (NP001 names each one), or delete the tier and its policies".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    const TIER: &str = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n";

    fn gnp(name: &str, selector: &str) -> String {
        format!(
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: security.{name}}}\nspec:\n  tier: security\n  selector: \"{selector}\"\n  types: [Ingress]\n"
        )
    }

    #[test]
    fn a_tier_whose_policies_select_no_pod() {
        let f = run(&RULE, &with(&format!("{TIER}{}{}", gnp("one", "app == 'wbe'"), gnp("two", "app == 'bd'"))));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "Tier security");
        assert_eq!(
            f[0].message,
            "tier `security` decides nothing: none of its 2 policies (gnp/security.one, gnp/security.two) selects a pod"
        );
        let f = run(&RULE, &with(&format!("{TIER}{}", gnp("one", "app == 'wbe'"))));
        assert_eq!(f[0].message, "tier `security` decides nothing: its only policy (gnp/security.one) selects no pod");
    }

    #[test]
    fn quiet_when_a_policy_selects_a_pod_or_without_pods() {
        let f = run(&RULE, &with(&format!("{TIER}{}{}", gnp("one", "app == 'wbe'"), gnp("two", "app == 'db'"))));
        assert!(f.is_empty(), "{f:?}");
        // No pods in the input: nothing to judge.
        let f = run(&RULE, &format!("{TIER}{}", gnp("one", "app == 'wbe'")));
        assert!(f.is_empty(), "{f:?}");
        // A tier without policies is NP020's.
        assert!(run(&RULE, &with(TIER)).is_empty());
    }
}
