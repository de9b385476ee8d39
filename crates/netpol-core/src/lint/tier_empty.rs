//! NP020 tier-without-policies.
//!
//! **What it finds**: a Calico Tier (declared by a `Tier` object) that no policy of the input names in
//! `spec.tier` (a tier that only staged policies are in is left alone: it gets policies when they are enforced).
//! **Why it is bad**: a tier without policies is skipped for every endpoint: it decides nothing, and its
//! `defaultAction` never applies. Often left over, or its policies name the tier with a typo (Calico refuses a
//! policy whose tier does not exist; netpol warns and assumes it).
//! **Instead**: add the policies meant for it (`spec.tier: <name>`), or delete the Tier.

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::model::PolicyTier;

pub static RULE: RuleInfo = RuleInfo {
    code: "NP020",
    name: "tier-without-policies",
    severity: Severity::Info,
    explanation: "No policy of the input is in this Calico tier. A tier without policies is skipped for every \
                  endpoint: it decides nothing and its defaultAction never applies. It is often left over, or its \
                  policies name it with a typo. Add the policies meant for it, or delete it.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for (ti, tier) in c.tiers.iter().enumerate().skip(3) {
        let Some(origin) = &tier.origin else { continue };
        if c.policies.iter().any(|p| p.tier == PolicyTier::from_index(ti)) {
            continue;
        }
        // Made for staged policies (Calico's staged kinds): it gets policies when they are enforced.
        let staged_in = |s: &&crate::model::StagedPolicy| {
            s.action != crate::model::StagedAction::Delete
                && s.implicit_tier.is_none()
                && s.policy.tier == PolicyTier::from_index(ti)
        };
        if c.staged.iter().any(|s| staged_in(&s)) {
            continue;
        }
        // A policy whose tier no Tier object declares may mean this one (the loader warned about it).
        let undeclared: Vec<&str> =
            c.tiers.iter().skip(3).filter(|t| t.origin.is_none()).map(|t| t.name.as_str()).collect();
        let help = match crate::suggest::closest(&tier.name, undeclared) {
            Some(t) => format!("policies name tier `{t}`, which no Tier declares: did you mean `{}`?", tier.name),
            None => format!("give policies `spec.tier: {}`, or delete the Tier", tier.name),
        };
        out.push(Finding {
            code: RULE.code,
            rule: RULE.name,
            severity: RULE.severity,
            object: format!("Tier {}", tier.name),
            origin: Some(origin.clone()),
            field: None,
            message: format!("tier `{}` has no policies: it decides nothing", tier.name),
            help,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::with;
    use super::RULE;

    const TIER: &str = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n";

    /// Runs the rule on input that may have diagnostics (a policy in an undeclared tier is warned about).
    fn lint(yaml: &str) -> Vec<super::Finding> {
        let loaded = crate::load::load_str("lint.yaml", yaml);
        let e = crate::compile::Engine::new(loaded.cluster);
        let config = super::super::Config::default();
        let ctx = super::super::Ctx::new(&e, &config);
        let mut out = Vec::new();
        (RULE.check)(&ctx, &mut out);
        out
    }

    #[test]
    fn a_tier_without_policies() {
        let f = lint(&with(TIER));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "Tier security");
        assert_eq!(f[0].message, "tier `security` has no policies: it decides nothing");
        assert_eq!(f[0].help, "give policies `spec.tier: security`, or delete the Tier");
        // Its policies name it with a typo.
        let gnp = "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: securty.p}\nspec: {tier: securty, selector: all()}\n";
        let f = lint(&with(&format!("{TIER}{gnp}")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].help.contains("policies name tier `securty`"), "{}", f[0].help);
    }

    #[test]
    fn quiet_for_a_tier_with_policies_and_for_the_built_in_tiers() {
        let gnp = "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: security.p}\nspec: {tier: security, selector: app == 'nothing'}\n";
        assert!(lint(&with(&format!("{TIER}{gnp}"))).is_empty());
        let default =
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: default}\nspec: {order: 1000000}\n";
        assert!(lint(&with(default)).is_empty());
        // Only a staged policy is in it: made for it.
        let staged = "---\napiVersion: projectcalico.org/v3\nkind: StagedGlobalNetworkPolicy\nmetadata: {name: p}\nspec: {tier: security, selector: all()}\n";
        assert!(lint(&with(&format!("{TIER}{staged}"))).is_empty());
    }
}
