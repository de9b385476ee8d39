//! NP018 admin-deny-dns.
//!
//! **What it finds**: a Deny that blocks cluster DNS (53/UDP or 53/TCP to the DNS pods: kube-dns in
//! kube-system, or the `lint.dns` setting, as for NP003) for pods it applies to: a Deny rule of an admin tier (an
//! Admin-tier Deny, or a Baseline-tier Deny when nothing before it allows) or of a Calico policy (any tier), or
//! the `defaultAction: Deny` of a Calico tier whose policies select the pods and allow no DNS; an Antrea Drop or
//! Reject (one finding per object rule, whatever its splits). What decides is
//! what `explain` finds deciding the denial (egress at the pod, or ingress at the DNS pods); a Pass that hands
//! DNS on to it is named too. One finding per rule (or tier) with the pods whose lookups it blocks.
//! **Why it is bad**: a cluster-wide Deny (`networks: 0.0.0.0/0`, `namespaces: {}`, a Calico `action: Deny`
//! with no criteria, a strict tier) easily catches DNS too; then every name lookup times out, which looks like a
//! network outage, and no NetworkPolicy can allow it back.
//! **Instead**: allow 53/UDP and 53/TCP to the DNS pods in a rule that comes first (earlier in the policy, in a
//! policy of lower priority or order, in an earlier tier), or leave the DNS pods out of the Deny's peers.
//!
//! Judged on the DNS pods of the input (with none, nothing is reported); NP003 leaves these pods to this rule,
//! and this rule leaves the isolation of the NetworkPolicy tier (Calico's `default`) to NP003.

use std::collections::{BTreeMap, BTreeSet};

use super::calico;
use super::dns_egress::{dns, Dns};
use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{Endpoint, Engine, IdentityId, RuleId};
use crate::eval::TierId;
use crate::model::{Action, Direction, PodId, PolicyId, PolicyKind, PolicyTier};
use crate::portset::Protocol;
use crate::verdict::{DecidedBy, RuleMatch};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP018",
    name: "admin-deny-dns",
    severity: Severity::Warning,
    explanation: "This Deny of an admin tier, of a Calico policy (a Deny rule, or a Calico tier's defaultAction \
                  Deny) or of an Antrea policy (Drop, Reject) blocks cluster DNS (53/UDP or 53/TCP to the DNS pods) for the pods listed. Every name lookup \
                  of theirs times out, which looks like a network outage, and no NetworkPolicy can allow it back: \
                  the tier decides first. Allow DNS in a rule that comes before it, or leave the DNS pods out of its \
                  peers.",
    check,
};

/// What denies one side of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Blocker {
    /// A Deny rule: of an admin tier, or of a Calico policy in any tier.
    Rule(RuleId),
    /// The defaultAction Deny of a tier other than the NetworkPolicy tier (whose isolation is NP003's), at the
    /// subject of this direction.
    Tier(TierId, Direction),
}

/// What denies `proto`/53 from pod `src` to DNS pod `dns`, on either side, with the Pass rules that handed it
/// on: the last rule of `explain`'s walk of a side that a Deny rule decided, or the tier whose default action
/// denied it. Empty when the flow is allowed or the NetworkPolicy tier denies it (isolation).
pub(super) fn blockers(e: &Engine, src: PodId, dns: PodId, proto: Protocol) -> Vec<(Blocker, Vec<RuleId>)> {
    let c = &e.cluster;
    let explicit = |pod: PodId, dir: Direction| {
        e.identity_of(pod).policies(dir).iter().any(|&p| {
            let pol = c.policy(p);
            pol.tier != PolicyTier::NetworkPolicy || calico::is_calico(pol)
        })
    };
    // Without an admin or Calico policy on either side there is nothing to find (and no `explain` to pay for).
    if !explicit(src, Direction::Egress) && !explicit(dns, Direction::Ingress) {
        return Vec::new();
    }
    let (s, d) = (Endpoint::Pod { pod: src, ip: None }, Endpoint::Pod { pod: dns, ip: None });
    if src == dns || e.allowed(&s, &d, proto, 53) {
        return Vec::new();
    }
    let x = e.explain(&s, &d, proto, 53);
    // An Antrea object's rule is a policy per appliedTo entry (its index in the object the policy's position):
    // the first of them stands for the rule, so that its splits are one blocker.
    let rule_of = |m: &RuleMatch, dir: Direction| {
        let antrea = m.key.policy.kind.is_antrea();
        (0..c.policies.len())
            .map(PolicyId::new)
            .filter(|&p| c.policy_key(p) == m.key.policy && (!antrea || c.policy(p).position as usize == m.rule))
            .find_map(|pol| {
                e.policy_rules(pol, dir)
                    .iter()
                    .copied()
                    .find(|&r| antrea || e.rules[r.index()].index as usize == m.rule)
            })
    };
    [&x.egress, &x.ingress]
        .into_iter()
        .filter(|side| !side.allowed)
        .filter_map(|side| {
            let dir = side.direction;
            let blocker = match side.decided_by {
                DecidedBy::Rule => {
                    let m = side.walk.last().filter(|m| matches!(m.action, Action::Deny | Action::Reject))?;
                    Blocker::Rule(rule_of(m, dir)?)
                }
                DecidedBy::TierDefault => {
                    let name = side.tier_default.as_deref()?;
                    let t = TierId::new(e.tier_list().iter().position(|t| &*t.name == name)?);
                    if t == e.np_tier() {
                        return None;
                    }
                    Blocker::Tier(t, dir)
                }
                _ => return None,
            };
            let passes =
                side.walk.iter().filter(|m| m.action == Action::Pass).filter_map(|m| rule_of(m, dir)).collect();
            Some((blocker, passes))
        })
        .collect()
}

/// What one blocker blocks: the pods, the protocols, the Pass rules that handed DNS on to it, and (for a tier)
/// the tier's policies that select the pods.
#[derive(Default)]
struct Blocked {
    ids: Vec<IdentityId>,
    protos: BTreeSet<Protocol>,
    passes: BTreeSet<RuleId>,
    tier_policies: BTreeSet<PolicyId>,
}

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    let Dns { ns, labels, pods: dns_pods } = dns(ctx);
    if dns_pods.is_empty() || c.policies.iter().all(|p| p.kind == PolicyKind::NetworkPolicy) {
        return;
    }
    let mut by: BTreeMap<Blocker, Blocked> = BTreeMap::new();
    for (i, ident) in e.identities.iter().enumerate() {
        let Some(&rep) = ident.pods.first() else { continue };
        if ident.host_network || dns_pods.contains(&rep) {
            continue;
        }
        for proto in [Protocol::Udp, Protocol::Tcp] {
            // DNS works if one of its pods answers; blocked only when every pod is denied.
            let src = Endpoint::Pod { pod: rep, ip: None };
            if dns_pods.iter().any(|&d| e.allowed(&src, &Endpoint::Pod { pod: d, ip: None }, proto, 53)) {
                continue;
            }
            for &d in &dns_pods {
                for (b, passes) in blockers(e, rep, d, proto) {
                    let entry = by.entry(b).or_default();
                    if entry.ids.last() != Some(&IdentityId::new(i)) {
                        entry.ids.push(IdentityId::new(i));
                    }
                    entry.protos.insert(proto);
                    entry.passes.extend(passes);
                    if let Blocker::Tier(t, dir) = b {
                        let subject = if dir == Direction::Egress { rep } else { d };
                        let pols = e.identity_of(subject).policies(dir).iter().filter(|&&p| e.policy_tier(p) == t);
                        entry.tier_policies.extend(pols);
                    }
                }
            }
        }
    }
    let dns_names: Vec<String> = dns_pods.iter().map(|&p| c.pod_ref(p)).collect();
    let target = Ctx::name_list(dns_names, 2);
    let dns_pods_words = format!("namespace {ns}, pods {}", crate::selector::format_labels(&labels));
    for (b, blocked) in by {
        let protos: Vec<String> = blocked.protos.iter().rev().map(|p| format!("53/{p}")).collect();
        let what = format!("cluster DNS ({} to {target})", protos.join(" and "));
        let pods = ctx.pod_list(&blocked.ids, 5);
        let passed = if blocked.passes.is_empty() {
            String::new()
        } else {
            let words: Vec<String> = blocked
                .passes
                .iter()
                .map(|&r| {
                    let rule = &e.rules[r.index()];
                    format!(
                        "{} {}",
                        c.policy_ref(rule.policy),
                        Ctx::rule_words(c.policy(rule.policy), rule.dir, rule.index as usize)
                    )
                })
                .collect();
            format!(" (after {} passed it on)", words.join(", "))
        };
        match b {
            Blocker::Rule(rid) => {
                let rule = &e.rules[rid.index()];
                let pol = c.policy(rule.policy);
                let ri = rule.index as usize;
                let msg = format!("{} blocks {what} for {pods}{passed}", Ctx::rule_words(pol, rule.dir, ri));
                let earlier = if calico::is_calico(pol) {
                    "earlier in this policy, in a policy of lower order, or in an earlier tier"
                } else {
                    "earlier in this policy, or in a policy of lower priority"
                };
                let help = format!(
                    "allow 53/UDP and 53/TCP to the DNS pods ({dns_pods_words}) in a rule that comes before it \
                     ({earlier}), or leave the DNS pods out of its peers"
                );
                out.push(ctx.policy_finding(&RULE, rule.policy, Some(Ctx::rule_path(rule.dir, ri)), msg, help));
            }
            Blocker::Tier(t, dir) => {
                let name = &e.tier_list()[t.index()].name;
                let pols: Vec<String> = blocked.tier_policies.iter().map(|&p| c.policy_ref(p)).collect();
                let msg = format!(
                    "tier `{name}` blocks {what} for {pods} with its defaultAction Deny{passed}: its policies \
                     {} select them for {dir} and none of their rules allows DNS",
                    Ctx::name_list(pols, 3)
                );
                let help = format!(
                    "allow 53/UDP and 53/TCP to the DNS pods ({dns_pods_words}) in a policy of tier `{name}` (or \
                     Pass DNS on to a later tier), or narrow the selectors of its policies"
                );
                let def = (0..c.tiers.len()).find(|&i| e.tier_id(PolicyTier::from_index(i)) == t);
                match def.and_then(|i| c.tiers[i].origin.as_ref()) {
                    Some(origin) => out.push(Finding {
                        code: RULE.code,
                        rule: RULE.name,
                        severity: RULE.severity,
                        object: format!("Tier {name}"),
                        origin: Some(origin.clone()),
                        field: Some("spec.defaultAction".into()),
                        message: msg,
                        help,
                    }),
                    // A tier no Tier object declares: the finding goes to its first policy.
                    None => {
                        let Some(&first) = blocked.tier_policies.iter().next() else { continue };
                        out.push(ctx.policy_finding(&RULE, first, Some("spec.tier".into()), msg, help));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    /// Deny everything to every address for namespace a: DNS too.
    const DENY_ALL_EGRESS: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: lockdown}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  egress:
  - {name: deny-rest, action: Deny, to: [{networks: ["0.0.0.0/0", "::/0"]}]}
"#;

    #[test]
    fn an_admin_deny_of_everything_blocks_dns() {
        let f = run(&RULE, &with(DENY_ALL_EGRESS));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "AdminNetworkPolicy lockdown");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0]"));
        assert_eq!(
            f[0].message,
            "egress rule 0 \"deny-rest\" (Deny) blocks cluster DNS (53/UDP and 53/TCP to kube-system/coredns) for \
             a/db, a/web"
        );
    }

    #[test]
    fn dns_allowed_first_is_not_blocked() {
        let yaml = DENY_ALL_EGRESS.replace(
            "  - {name: deny-rest",
            "  - {name: dns, action: Allow, to: [{pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app: kube-dns}}}}], ports: [{portNumber: {port: 53, protocol: UDP}}, {portNumber: {port: 53, protocol: TCP}}]}\n  - {name: deny-rest",
        );
        let f = run(&RULE, &with(&yaml));
        assert!(f.is_empty(), "{f:?}");
        // Only UDP allowed: TCP is still blocked.
        let udp_only = yaml.replace(", {portNumber: {port: 53, protocol: TCP}}", "");
        let f = run(&RULE, &with(&udp_only));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("(53/TCP to kube-system/coredns)"), "{}", f[0].message);
    }

    /// An ingress Deny at the DNS pods blocks the lookups of the pods it names; a Baseline Deny blocks only
    /// when nothing before it allows.
    #[test]
    fn ingress_deny_at_the_dns_pods_and_baseline_denies() {
        let yaml = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: dns-guard}
spec:
  tier: Baseline
  priority: 1
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}
  ingress:
  - {name: no-b, action: Deny, from: [{namespaces: {matchLabels: {team: b}}}]}
"#;
        let f = run(&RULE, &with(yaml));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0]"));
        assert!(f[0].message.ends_with("for b/client"), "{}", f[0].message);
        // A NetworkPolicy of kube-system that allows DNS decides before the Baseline tier.
        let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: dns, namespace: kube-system}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]}]\n";
        let f = run(&RULE, &with(&format!("{yaml}---\n{np}")));
        assert!(f.is_empty(), "{f:?}");
    }

    /// A Calico Deny of everything for namespace a (in the default tier).
    const CALICO_DENY: &str = r#"
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: lockdown}
spec:
  order: 10
  selector: projectcalico.org/namespace == 'a'
  types: [Egress]
  egress:
  - action: Deny
"#;

    const CALICO_DNS: &str = "  - {action: Allow, protocol: UDP, destination: {namespaceSelector: projectcalico.org/name == 'kube-system', selector: k8s-app == 'kube-dns', ports: [53]}}\n  - {action: Allow, protocol: TCP, destination: {namespaceSelector: projectcalico.org/name == 'kube-system', selector: k8s-app == 'kube-dns', ports: [53]}}\n";

    #[test]
    fn a_calico_deny_blocks_dns() {
        let f = run(&RULE, &with(CALICO_DENY));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "GlobalNetworkPolicy lockdown");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0]"));
        assert_eq!(
            f[0].message,
            "egress rule 0 (Deny) blocks cluster DNS (53/UDP and 53/TCP to kube-system/coredns) for a/db, a/web"
        );
        assert!(f[0].help.contains("in a policy of lower order, or in an earlier tier"), "{}", f[0].help);
        // DNS allowed first.
        let yaml = CALICO_DENY.replace("  - action: Deny\n", &format!("{CALICO_DNS}  - action: Deny\n"));
        assert!(run(&RULE, &with(&yaml)).is_empty());
    }

    const STRICT: &str = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: strict}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: strict.egress}
spec:
  tier: strict
  selector: projectcalico.org/namespace == 'a'
  types: [Egress]
  egress:
  - {action: Allow, destination: {selector: app == 'db'}}
"#;

    /// A Calico tier whose policies select the pods and allow no DNS denies it with its defaultAction; a Pass
    /// that hands DNS on to it is named.
    #[test]
    fn a_calico_tier_default_deny_blocks_dns() {
        let f = run(&RULE, &with(STRICT));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "Tier strict");
        assert_eq!(f[0].field.as_deref(), Some("spec.defaultAction"));
        assert_eq!(
            f[0].message,
            "tier `strict` blocks cluster DNS (53/UDP and 53/TCP to kube-system/coredns) for a/db, a/web with its \
             defaultAction Deny: its policies gnp/strict.egress select them for egress and none of their rules \
             allows DNS"
        );
        let pass = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: first}
spec: {order: 50, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: first.pass}
spec:
  tier: first
  selector: app == 'web'
  types: [Egress]
  egress:
  - {action: Pass, protocol: UDP}
---
"#;
        let f = run(&RULE, &with(&format!("{pass}{STRICT}")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("(after gnp/first.pass egress rule 0 (Pass) passed it on)"), "{}", f[0].message);
        // DNS allowed in the tier.
        let allowed = STRICT.replace("  - {action: Allow, destination: {selector: app == 'db'}}\n", CALICO_DNS);
        assert!(run(&RULE, &with(&allowed)).is_empty());
    }

    /// A Calico policy of the default tier that isolates egress without DNS is NP003's finding (isolation), not
    /// this rule's.
    #[test]
    fn the_default_tier_isolation_is_left_to_np003() {
        let np = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: iso, namespace: a}\nspec:\n  selector: all()\n  types: [Egress]\n";
        assert!(run(&RULE, &with(np)).is_empty());
        let f = run(&super::super::dns_egress::RULE, &with(np));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "NetworkPolicy.projectcalico.org a/iso");
        assert_eq!(f[0].field.as_deref(), Some("spec.types"));
        assert!(
            f[0].message.contains("is isolated by caliconetworkpolicy/a/iso but 53/UDP and 53/TCP"),
            "{}",
            f[0].message
        );
        // Not with the Deny rule: that one is this rule's.
        assert!(run(&super::super::dns_egress::RULE, &with(CALICO_DENY)).is_empty());
    }

    /// A Deny that does not reach DNS (other ports) is not reported.
    #[test]
    fn denies_elsewhere_are_not_reported() {
        let yaml = DENY_ALL_EGRESS.replace("]}]}", "]}], ports: [{portNumber: {port: 443}}]}");
        let f = run(&RULE, &with(&yaml));
        assert!(f.is_empty(), "{f:?}");
    }

    /// Antrea: a Drop of everything blocks DNS; one finding for the object's rule (split per appliedTo entry),
    /// at its index in the object; an Allow of DNS before it leaves nothing to say.
    #[test]
    fn an_antrea_drop_that_blocks_dns() {
        let acnp = |rules: &str| {
            format!(
                "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {{name: lockdown}}\nspec:\n  \
                 priority: 5\n  appliedTo: [{{namespaceSelector: {{matchLabels: {{team: a}}}}}}, {{podSelector: \
                 {{matchLabels: {{app: web}}}}}}]\n  egress:\n{rules}  - {{action: Drop}}\n"
            )
        };
        let web = "  - {action: Allow, to: [{podSelector: {matchLabels: {app: web}}}]}\n";
        let reject = run(&RULE, &with(&acnp(web).replace("{action: Drop}", "{action: Reject}")));
        assert_eq!(reject.len(), 1, "{reject:?}");
        assert!(reject[0].message.starts_with("egress rule 1 (Reject) blocks cluster DNS"), "{reject:?}");
        let f = run(&RULE, &with(&acnp(web)));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy.crd.antrea.io lockdown");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[1]"));
        assert!(
            f[0].message.starts_with(
                "egress rule 1 (Drop) blocks cluster DNS (53/UDP and 53/TCP to kube-system/coredns) for a/db, a/web"
            ),
            "{f:?}"
        );
        let dns = "  - {action: Allow, to: [{podSelector: {matchLabels: {k8s-app: kube-dns}}}], ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]}\n";
        let f = run(&RULE, &with(&acnp(dns)));
        assert!(f.is_empty(), "{f:?}");
    }
}
