//! NP015 priority-tie.
//!
//! **What it finds**: two policies of one admin tier (or two rules of Antrea policies, below) (Admin: ClusterNetworkPolicy tier Admin and
//! AdminNetworkPolicy; Baseline: ClusterNetworkPolicy tier Baseline and BaselineAdminNetworkPolicy) with the same
//! priority, selecting the same pods, whose rules match the same traffic with different actions: the outcome of
//! that traffic depends on which of the two is applied first, which the API leaves undefined. One finding per
//! pair, on the policy netpol applies first (by kind, then name), with a witness flow whose outcome differs
//! between the two orders.
//! **Why it is bad**: two implementations (or one, after a restart) may decide the same traffic differently;
//! which one is "right" is nowhere written down. Upstream asks administrators to use distinct priorities
//! wherever it matters (network-policy-api issue #222).
//! **Instead**: give the policy that should win the lower priority number, or make the rules agree.
//!
//! Antrea's ClusterNetworkPolicies and NetworkPolicies (one model policy per rule and `appliedTo` entry) tie
//! rule by rule: Antrea orders the rules of equal-priority policies of a tier by their index in their object, and
//! leaves rules of equal index in different objects in no defined order (OVS then picks one). Such two rules of
//! different objects that disagree are one finding per pair of object rules, whichever splits meet.
//!
//! Judged by the evaluator: the witness is found by folding the subject's rules in both orders
//! ([`crate::eval::Variant::Swap`]). Peers are pods first, then addresses in both policies' `networks` or `nodes`
//! peers; at most 200,000 subject × peer evaluations per pair (a conflict beyond that goes unreported).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{CPeer, Endpoint, IdentityId, RuleId};
use crate::eval::{Action, Variant};
use crate::ipranges;
use crate::model::{Direction, PolicyId, PolicyKind, PolicyTier};
use crate::portset::{PortSet, Protocol};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP015",
    name: "priority-tie",
    severity: Severity::Warning,
    explanation: "Two policies of the same admin tier share a priority, select the same pods, and have rules that \
                  match the same traffic with different actions. The API leaves the order of equal priorities \
                  undefined, so whether that traffic is allowed depends on the implementation (netpol applies them \
                  by kind, then name). Antrea's policies tie rule by rule: two rules of the same index in policies \
                  of the same tier and priority have no defined order. The finding gives a flow whose outcome differs between the two orders. Give \
                  the policy that should win the lower priority number, or make the rules agree.",
    check,
};

const BUDGET: usize = 200_000;

/// A flow whose outcome on one side differs between the two orders of a tie.
struct Witness {
    dir: Direction,
    subject: IdentityId,
    peer: Endpoint,
    proto: Protocol,
    port: u16,
    /// (allowed, deciding rule) with the policies in netpol's order, then swapped.
    as_is: (bool, Option<RuleId>),
    swapped: (bool, Option<RuleId>),
}

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    // Antrea's policies tie per rule index (their position); the admin kinds per policy (position 0).
    let mut groups: BTreeMap<(PolicyTier, crate::model::Order, u32), Vec<PolicyId>> = BTreeMap::new();
    for (pid, pol) in c.policies.iter().enumerate() {
        // Only the admin kinds and Antrea's leave equal priorities undefined: Calico orders equal orders by name, as
        // netpol does.
        let admin = matches!(
            pol.kind,
            PolicyKind::ClusterNetworkPolicy | PolicyKind::AdminNetworkPolicy | PolicyKind::BaselineAdminNetworkPolicy
        ) || pol.kind.is_antrea();
        if admin && pol.tier != PolicyTier::NetworkPolicy {
            groups.entry((pol.tier, pol.order, pol.position)).or_default().push(PolicyId::new(pid));
        }
    }
    // Antrea: the pairs of object rules already reported (their splits would say it again).
    let mut reported = BTreeSet::new();
    for pols in groups.values().filter(|g| g.len() > 1) {
        let ordered = e.evaluation_order(pols);
        let keys: Vec<crate::model::PolicyKey> = ordered.iter().map(|&p| c.policy_key(p)).collect();
        for (i, &a) in ordered.iter().enumerate() {
            for (j, &b) in ordered.iter().enumerate().skip(i + 1) {
                let (ka, kb) = (keys[i].clone(), keys[j].clone());
                // The splits of one Antrea object are one policy: their order is the object's. Policies that
                // select no common pod never meet (Antrea's namespaced policies of one priority, many of them).
                if ka == kb || !meet(&ctx.selected[a.index()], &ctx.selected[b.index()]) {
                    continue;
                }
                let dir = |p: PolicyId| c.policy(p).affects_ingress;
                let pair = (ka, kb, dir(a), dir(b));
                if c.policy(a).kind.is_antrea() && reported.contains(&pair) {
                    continue;
                }
                // Each pair has a budget of its own: one large pair does not hide the others.
                let mut budget = BUDGET;
                if let Some(w) = witness(ctx, a, b, &mut budget) {
                    out.push(finding(ctx, a, b, &w));
                    reported.insert(pair);
                }
            }
        }
    }
}

/// Whether two sorted identity lists share one.
fn meet(a: &[IdentityId], b: &[IdentityId]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// A flow whose outcome depends on the order of `a` and `b`, if there is one.
fn witness(ctx: &Ctx, a: PolicyId, b: PolicyId, budget: &mut usize) -> Option<Witness> {
    let e = ctx.engine;
    for dir in [Direction::Egress, Direction::Ingress] {
        let (ra, rb) = (e.policy_rules(a, dir), e.policy_rules(b, dir));
        let actions: BTreeSet<Action> = ra.iter().chain(rb).map(|r| e.rules[r.index()].action).collect();
        if ra.is_empty() || rb.is_empty() || actions.len() < 2 {
            continue;
        }
        // Identities by their first pod: the witness does not depend on the engine's numbering.
        let by_pod = |ids: &mut Vec<IdentityId>| ids.sort_by_key(|i| e.identities[i.index()].pods.first().copied());
        let mut subjects: Vec<IdentityId> = (0..e.identities.len())
            .map(IdentityId::new)
            .filter(|&i| {
                let pols = e.identities[i.index()].policies(dir);
                pols.contains(&a) && pols.contains(&b)
            })
            .collect();
        by_pod(&mut subjects);
        if subjects.is_empty() {
            continue;
        }
        // Only traffic that a rule of each policy matches can depend on their order.
        let matched =
            |rules: &[RuleId], y: IdentityId| rules.iter().any(|r| e.rule_matches_identity(&e.rules[r.index()], y));
        let mut peers: Vec<IdentityId> =
            (0..e.identities.len()).map(IdentityId::new).filter(|&y| matched(ra, y) && matched(rb, y)).collect();
        by_pod(&mut peers);
        for &x in &subjects {
            for &y in &peers {
                if *budget == 0 {
                    return None;
                }
                *budget -= 1;
                let Some(peer) = ctx.peer_endpoint(x, y) else { continue };
                if let Some(w) = differs(ctx, a, b, dir, x, peer) {
                    return Some(w);
                }
            }
        }
        // Addresses that a block of each policy contains.
        for ip in shared_addresses(ctx, ra, rb) {
            let peer = e.endpoint_for_ip(ip);
            for &x in &subjects {
                if *budget == 0 {
                    return None;
                }
                *budget -= 1;
                if let Some(w) = differs(ctx, a, b, dir, x, peer) {
                    return Some(w);
                }
            }
        }
    }
    None
}

/// The witness for subject `x` and `peer`, if the two orders decide some port differently.
fn differs(ctx: &Ctx, a: PolicyId, b: PolicyId, dir: Direction, x: IdentityId, peer: Endpoint) -> Option<Witness> {
    let e = ctx.engine;
    let as_is = e.side_ports(x, dir, &peer, Variant::AsIs);
    let swapped = e.side_ports(x, dir, &peer, Variant::Swap(a, b));
    if as_is == swapped {
        return None;
    }
    let diff = as_is.difference(&swapped).union(&swapped.difference(&as_is));
    let dst_ports = match (dir, peer) {
        (Direction::Ingress, _) => e.identities[x.index()].ports.clone(),
        (Direction::Egress, Endpoint::Pod { pod, .. }) => e.identity_of(pod).ports.clone(),
        (Direction::Egress, Endpoint::External(_)) => Vec::new(),
    };
    let (proto, port) = pick_port(&diff, dst_ports.iter().map(|cp| (cp.protocol, cp.port)))?;
    Some(Witness {
        dir,
        subject: x,
        peer,
        proto,
        port,
        as_is: e.side_decider(x, dir, &peer, proto, port, Variant::AsIs),
        swapped: e.side_decider(x, dir, &peer, proto, port, Variant::Swap(a, b)),
    })
}

/// A port of `set` to show: one the destination serves, a common one, or the first.
fn pick_port(set: &PortSet, served: impl Iterator<Item = (Protocol, u16)>) -> Option<(Protocol, u16)> {
    let common = [(Protocol::Tcp, 80), (Protocol::Tcp, 443), (Protocol::Udp, 53), (Protocol::Tcp, 53)];
    served.chain(common).find(|&(p, n)| set.contains(p, n)).or_else(|| set.iter().next().map(|(p, lo, _)| (p, lo)))
}

/// Addresses outside the pods' that a `networks`/`nodes` block of a rule of each policy contains: for each pair
/// of blocks, the documentation address of the family if both contain it, else the second address of their
/// first common interval (the first is usually a network address).
fn shared_addresses(ctx: &Ctx, ra: &[RuleId], rb: &[RuleId]) -> Vec<IpAddr> {
    let e = ctx.engine;
    let blocks = |rules: &[RuleId]| -> BTreeSet<usize> {
        rules
            .iter()
            .flat_map(|r| e.rules[r.index()].peers.iter())
            .filter_map(|p| if let CPeer::Block(b) = *p { Some(b.index()) } else { None })
            .collect()
    };
    let (ba, bb) = (blocks(ra), blocks(rb));
    let doc: [IpAddr; 2] = [[203, 0, 113, 10].into(), [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10].into()];
    let mut out = Vec::new();
    for &x in &ba {
        for &y in &bb {
            let (rx, ry) = (&e.block_ranges[x], &e.block_ranges[y]);
            if rx.v6 != ry.v6 {
                continue;
            }
            if let Some(&ip) = doc.iter().find(|&&ip| rx.contains(ip) && ry.contains(ip)) {
                out.push(ip);
                continue;
            }
            let overlap = rx.ranges.iter().find_map(|&(l1, h1)| {
                ry.ranges.iter().find_map(|&(l2, h2)| {
                    let (lo, hi) = (l1.max(l2), h1.min(h2));
                    (lo <= hi).then_some((lo, hi))
                })
            });
            if let Some((lo, hi)) = overlap {
                out.push(ipranges::addr(rx.v6, if hi - lo >= 2 { lo + 1 } else { lo }));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn finding(ctx: &Ctx, a: PolicyId, b: PolicyId, w: &Witness) -> Finding {
    let e = ctx.engine;
    let c = &e.cluster;
    let pa = c.policy(a);
    let (na, nb) = (c.policy_ref(a), c.policy_ref(b));
    let subject = ctx.rep_pod(w.subject).map(|p| c.pod_ref(p)).unwrap_or_default();
    let peer = e.endpoint_name(&w.peer);
    let (src, dst) = if w.dir == Direction::Egress { (subject, peer) } else { (peer, subject) };
    let outcome = |(allowed, decider): (bool, Option<RuleId>)| {
        let verdict = if allowed { "allowed" } else { "denied" };
        match decider {
            Some(r) => {
                let rule = &e.rules[r.index()];
                let words = Ctx::rule_words(c.policy(rule.policy), rule.dir, rule.index as usize);
                format!("{verdict} by {} {words}", c.policy_ref(rule.policy))
            }
            None if allowed => format!("{verdict} (no rule decides)"),
            None => format!("{verdict} (NetworkPolicy isolation)"),
        }
    };
    let msg = if pa.kind.is_antrea() {
        let rule = Ctx::rule_field(pa, w.dir, 0);
        format!(
            "{na} {rule} and {nb} {rule} are both in tier `{}` with priority {} and rule index {}, apply to the same \
             pods and disagree: the {} of {src} -> {dst} {}/{} is {} if {na} goes first, {} if {nb} does; Antrea \
             orders rules of equal priority by their index, and leaves equal indexes in no defined order",
            e.tier_list()[e.policy_tier(a).index()].name,
            pa.order,
            pa.position,
            w.dir,
            w.port,
            w.proto,
            outcome(w.as_is),
            outcome(w.swapped)
        )
    } else {
        format!(
            "{na} and {nb} are both {} tier with priority {}, select the same pods and disagree: the {} of {src} -> \
             {dst} {}/{} is {} if {na} is applied first, {} if {nb} is; the API leaves their order undefined",
            pa.tier.as_str(),
            pa.order,
            w.dir,
            w.port,
            w.proto,
            outcome(w.as_is),
            outcome(w.swapped)
        )
    };
    // Point at the rule of the first policy that decides in one of the orders.
    let field = [w.as_is.1, w.swapped.1]
        .into_iter()
        .flatten()
        .map(|r| &e.rules[r.index()])
        .find(|r| r.policy == a)
        .map(|r| Ctx::rule_path(r.dir, r.index as usize))
        .or_else(|| (pa.kind != PolicyKind::BaselineAdminNetworkPolicy).then(|| "spec.priority".to_string()));
    ctx.policy_finding(
        &RULE,
        a,
        field,
        msg,
        format!(
            "give the policy that should win a lower priority number than the other ({nb}), or make their rules agree"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    fn anp(name: &str, priority: u32, action: &str, to: &str, extra: &str) -> String {
        format!(
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {{name: {name}}}\n\
             spec:\n  priority: {priority}\n  subject: {{namespaces: {{matchLabels: {{team: b}}}}}}\n  egress:\n  \
             - {{name: r, action: {action}, to: [{to}]{extra}}}\n"
        )
    }

    const TO_A: &str = "{namespaces: {matchLabels: {team: a}}}";
    const TO_WEB: &str =
        "{pods: {namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: web}}}}";

    #[test]
    fn equal_priorities_that_disagree_give_a_witness_both_ways() {
        let yaml = format!(
            "{}---\n{}",
            anp("deny-a", 10, "Deny", TO_A, ""),
            anp("allow-web", 10, "Allow", TO_WEB, ", ports: [{portNumber: {port: 8080}}]")
        );
        let f = run(&RULE, &with(&yaml));
        assert_eq!(f.len(), 1, "{f:?}");
        // netpol applies allow-web first (same kind: by name): the finding is on it, naming deny-a.
        assert_eq!(f[0].object, "AdminNetworkPolicy allow-web");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0]"));
        let m = &f[0].message;
        assert!(m.starts_with("anp/allow-web and anp/deny-a are both Admin tier with priority 10"), "{m}");
        assert!(m.contains("the egress of b/client -> a/web 8080/TCP"), "{m}");
        assert!(
            m.contains("allowed by anp/allow-web egress rule 0 \"r\" (Allow) if anp/allow-web is applied first"),
            "{m}"
        );
        assert!(m.contains("denied by anp/deny-a egress rule 0 \"r\" (Deny) if anp/deny-a is"), "{m}");
    }

    #[test]
    fn distinct_priorities_agreeing_actions_or_disjoint_traffic_are_not_ties() {
        let cases = [
            // The priorities differ: the order is defined.
            (anp("deny-a", 10, "Deny", TO_A, ""), anp("allow-web", 11, "Allow", TO_WEB, "")),
            // Both deny.
            (anp("deny-a", 10, "Deny", TO_A, ""), anp("deny-web", 10, "Deny", TO_WEB, "")),
            // Different actions on different ports: no traffic is matched by both.
            (
                anp("deny-a", 10, "Deny", TO_A, ", ports: [{portNumber: {port: 5432}}]"),
                anp("allow-web", 10, "Allow", TO_WEB, ", ports: [{portNumber: {port: 8080}}]"),
            ),
        ];
        for (one, two) in cases {
            let f = run(&RULE, &with(&format!("{one}---\n{two}")));
            assert!(f.is_empty(), "{one}{two}: {f:?}");
        }
    }

    /// The two policies must select common pods: equal priorities for different subjects never meet.
    #[test]
    fn different_subjects_never_meet() {
        let one = anp("deny-a", 10, "Deny", TO_A, "");
        let two = anp("allow-web", 10, "Allow", TO_WEB, "").replace("team: b", "team: a");
        let f = run(&RULE, &with(&format!("{one}---\n{two}")));
        assert!(f.is_empty(), "{f:?}");
    }

    /// Baseline-tier ties count too, and `networks` peers give an address witness when no pod is one.
    #[test]
    fn baseline_ties_with_addresses() {
        let yaml = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: deny-internet}
spec:
  tier: Baseline
  priority: 3
  subject: {namespaces: {}}
  egress:
  - {action: Deny, to: [{networks: ["0.0.0.0/0"]}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: allow-partner}
spec:
  tier: Baseline
  priority: 3
  subject: {namespaces: {matchLabels: {team: a}}}
  egress:
  - {action: Accept, to: [{networks: ["198.51.100.0/24"]}], protocols: [{tcp: {destinationPort: {number: 443}}}]}
"#;
        let f = run(&RULE, &with(yaml));
        assert_eq!(f.len(), 1, "{f:?}");
        let m = &f[0].message;
        assert!(m.contains("are both Baseline tier with priority 3"), "{m}");
        assert!(m.contains("-> 198.51.100.1 443/TCP"), "{m}");
    }

    /// Calico orders equal orders by name (as netpol does): two Calico policies of one tier with the same order
    /// that disagree are not a tie, nor is a Calico policy of the Admin tier beside an admin policy.
    #[test]
    fn calico_orders_are_defined() {
        let gnp = |name: &str, action: &str| {
            format!(
                "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: security.{name}}}\n\
                 spec:\n  tier: security\n  order: 10\n  selector: app == 'client'\n  egress: [{{action: {action}, \
                 destination: {{selector: app == 'web', namespaceSelector: all()}}}}]\n---\n"
            )
        };
        let tier =
            "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n---\n";
        let f = run(&RULE, &with(&format!("{tier}{}{}", gnp("allow", "Allow"), gnp("deny", "Deny"))));
        assert!(f.is_empty(), "{f:?}");
        let admin = format!(
            "{}---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: kube-admin.deny}}\nspec:\n  \
             tier: kube-admin\n  order: 10\n  selector: all()\n  egress: [{{action: Deny}}]\n",
            anp("allow-web", 10, "Allow", TO_WEB, "")
        );
        let f = run(&RULE, &with(&admin));
        assert!(f.is_empty(), "{f:?}");
    }

    fn acnp(name: &str, rules: &str) -> String {
        format!(
            "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  \
             priority: 5\n  tier: securityops\n  appliedTo: [{{namespaceSelector: {{matchLabels: {{team: a}}}}}}, \
             {{podSelector: {{matchLabels: {{app: web}}}}}}]\n  ingress:\n{rules}---\n"
        )
    }
    const DROP_B: &str = "  - {action: Drop, from: [{namespaceSelector: {matchLabels: {team: b}}}]}\n";
    const ALLOW_CLIENT: &str = "  - {action: Allow, from: [{podSelector: {matchLabels: {app: client}}}]}\n";
    const ALLOW_DB: &str = "  - {action: Allow, from: [{podSelector: {matchLabels: {app: db}}}]}\n";

    /// Two Antrea policies of one tier and priority whose rules of equal index disagree: one finding per pair of
    /// object rules (each object is split per `appliedTo` entry: the splits do not repeat it), naming the rules as
    /// the objects have them.
    #[test]
    fn antrea_rules_of_equal_index_that_disagree_tie() {
        let yaml = format!("{}{}", acnp("deny-b", DROP_B), acnp("allow-client", ALLOW_CLIENT));
        let f = run(&RULE, &with(&yaml));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy.crd.antrea.io allow-client");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0]"));
        let m = &f[0].message;
        assert!(
            m.starts_with(
                "acnp/allow-client spec.ingress[0] and acnp/deny-b spec.ingress[0] are both in tier `securityops` \
                 with priority 5 and rule index 0"
            ),
            "{m}"
        );
        assert!(m.contains("the ingress of b/client -> a/"), "{m}");
        assert!(
            m.contains("allowed by acnp/allow-client ingress rule 0 (Allow) if acnp/allow-client goes first"),
            "{m}"
        );
        assert!(m.contains("denied by acnp/deny-b ingress rule 0 (Drop) if acnp/deny-b does"), "{m}");

        // The second rule of an object ties with the second rule of the other.
        let yaml = format!(
            "{}{}",
            acnp("deny-b", &format!("{ALLOW_DB}{DROP_B}")),
            acnp("allow-client", &format!("{ALLOW_DB}{ALLOW_CLIENT}"))
        );
        let f = run(&RULE, &with(&yaml));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[1]"), "{f:?}");
        assert!(f[0].message.contains("rule index 1"), "{f:?}");
    }

    /// Rules of different indexes are ordered (the lower index first), as are different priorities; rules of one
    /// object never tie with each other; agreeing actions do not tie.
    #[test]
    fn antrea_ordered_rules_are_not_ties() {
        let cases = [
            // Index 0 against index 1: the Drop comes first.
            format!("{}{}", acnp("deny-b", DROP_B), acnp("allow-client", &format!("{ALLOW_DB}{ALLOW_CLIENT}"))),
            // Another priority.
            format!(
                "{}{}",
                acnp("deny-b", DROP_B),
                acnp("allow-client", ALLOW_CLIENT).replace("priority: 5", "priority: 6")
            ),
            // One object.
            acnp("both", &format!("{DROP_B}{ALLOW_CLIENT}")),
            // Both allow.
            format!("{}{}", acnp("allow-db", ALLOW_DB), acnp("allow-client", ALLOW_CLIENT)),
        ];
        for yaml in cases {
            let f = run(&RULE, &with(&yaml));
            assert!(f.is_empty(), "{yaml}: {f:?}");
        }
    }
}
