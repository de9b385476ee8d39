//! What the Cilium rules (NP023–NP027) share.
//!
//! The loader lowers each rule of a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy to model rules named by
//! their field path (`spec.egress[0]`, `specs[1].ingress[2]`), one more per `toPorts` entry with L7 rules
//! (`spec.egress[0].toPorts[1]`) and one per label requirement (`spec.ingress[0].fromRequires[0]`). Findings
//! point at those paths.

use crate::model::{Policy, Rule};

/// Whether the policy is one of Cilium's kinds (or a part of one).
pub fn is_cilium(pol: &Policy) -> bool {
    pol.kind.is_cilium()
}

/// The field path of the manifest rule a model rule comes from: `spec.egress[0]` for `spec.egress[0]`,
/// `spec.egress[0].toPorts[1]` and `spec.egress[0].fromRequires[0]`.
pub fn rule_field(rule: &Rule) -> Option<&str> {
    let name = rule.name.as_deref()?;
    Some(match name.rfind("].") {
        Some(i) => &name[..=i],
        None => name,
    })
}

/// A CiliumNetworkPolicy with `body` (indented two spaces, under `spec:`) in namespace `ns`, for tests.
#[cfg(test)]
pub fn cnp(ns: &str, name: &str, body: &str) -> String {
    format!("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}")
}

#[cfg(test)]
mod tests {
    use crate::model::{Action, Rule};

    #[test]
    fn rule_field_cuts_entries_off() {
        let r = |n: &str| Rule {
            peers: Vec::new(),
            ports: Vec::new(),
            action: Action::Allow,
            name: Some(n.to_string()),
            calico: None,
            l7: None,
        };
        assert_eq!(super::rule_field(&r("spec.egress[0]")), Some("spec.egress[0]"));
        assert_eq!(super::rule_field(&r("specs[1].egress[0].toPorts[2]")), Some("specs[1].egress[0]"));
        assert_eq!(super::rule_field(&r("spec.ingress[3].fromRequires[0]")), Some("spec.ingress[3]"));
    }

    /// What the Cilium rules find in Cilium's kinds, written in NetworkPolicy and Calico terms (a podSelector of
    /// pods in another namespace, egress to every address, an L4 rule beside nothing with L7 rules) is not theirs.
    #[test]
    fn the_cilium_rules_are_quiet_on_other_kinds() {
        let yaml = crate::lint::testutil::with(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  \
             podSelector: {}\n  policyTypes: [Ingress, Egress]\n  ingress:\n  - from: [{podSelector: {matchLabels: \
             {app: client}}}, {podSelector: {matchLabels: {team: b}}}]\n    ports: [{port: 8080}]\n  egress:\n  - to: \
             [{ipBlock: {cidr: 0.0.0.0/0}}]\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
             metadata: {name: g}\nspec:\n  selector: all()\n  ingress: [{action: Allow, source: {nets: [0.0.0.0/0]}}]\n  \
             egress: [{action: Allow, destination: {nets: [0.0.0.0/0]}}]\n",
        );
        for rule in crate::lint::RULES.iter().filter(|r| r.name.starts_with("cilium-")) {
            let f = crate::lint::testutil::run(rule, &yaml);
            assert!(f.is_empty(), "{}: {f:?}", rule.code);
        }
    }
}
