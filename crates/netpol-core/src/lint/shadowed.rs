//! NP016 shadowed-rule.
//!
//! **What it finds**: a rule of an admin tier (ClusterNetworkPolicy, AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy) or of a Calico policy (NetworkPolicy or GlobalNetworkPolicy of
//! `projectcalico.org/v3`, in any tier) that no current flow reaches: for every pod it applies to and every peer
//! it matches, rules of higher precedence (earlier rules of the policy, policies of lower priority or order,
//! earlier tiers: for the Baseline tier the NetworkPolicies that isolate the pod, for a Calico tier the
//! `defaultAction: Deny` of an earlier one) have already decided everything it matches. The finding names
//! those rules. A Calico policy none of whose rules is reached is reported once, as a whole.
//! **Why it is bad**: the rule looks like it does something; it does not. Usually the order is wrong (an
//! exception written after the catch-all it was meant to carve out of), or a priority (a Calico `order`) is.
//! **Instead**: move the rule before the rules that decide first (or give its policy a lower priority or order),
//! narrow those, or delete the rule.
//!
//! Antrea's rules (ClusterNetworkPolicy, NetworkPolicy of `crd.antrea.io`) are judged as Calico's are (on pods and
//! outside addresses, whatever their peers), each
//! over all the policies its object lowers it to (one per `appliedTo` entry): shadowed when no flow reaches any of
//! them, one finding per object rule (`spec.ingress[1]`). A rule decided first only by rules it ties with (NP015's:
//! the same tier, priority and index in another object) is left to NP015.
//!
//! Judged by the evaluator: a rule is reached for a (subject, peer) pair when making it allow and making it deny
//! give different outcomes for some port. Admin-tier rules are checked on pods only: those with address peers
//! (`networks`, `nodes`, `domainNames`) are not judged. Calico rules are checked on every peer they can match:
//! pods (at each of their addresses) and outside addresses, one per segment of the address space cut at the
//! engine's blocks (all addresses of a segment are decided alike). Rules whose ports resolve on no peer (NP005's
//! finding), rules netpol cannot evaluate, and rules with more than 200,000 subject × peer pairs are not judged.

use std::collections::BTreeSet;

use super::calico;
use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{CPeer, CRule, Endpoint, IdentityId, RuleId};
use crate::eval::{Action, TierEnd, TierId, Variant};
use crate::model::{Direction, PolicyId, PolicyTier};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP016",
    name: "shadowed-rule",
    severity: Severity::Warning,
    explanation: "This rule of an admin tier, of a Calico policy or of an Antrea policy is never reached: for every pod it applies to \
                  and every peer it matches, rules that come first (earlier rules, policies of lower priority or \
                  order, or earlier tiers: the NetworkPolicies that isolate the pod before the Baseline tier, a \
                  Calico tier's defaultAction Deny) have already decided everything it matches. The rule reads as if \
                  it mattered; usually an exception was written after the rule it was meant to carve out of, or a \
                  priority or order is wrong. Move it up, narrow the rules that decide first, or delete it.",
    check,
};

const BUDGET: usize = 200_000;

/// What the evaluator says of one rule.
pub(super) enum Reach {
    /// Not judged: not an admin-tier or Calico rule, address peers (admin tiers), nothing to apply to, too large.
    NotJudged,
    /// Some flow reaches it.
    Reached,
    /// Nothing reaches it; what decides first, in words.
    Shadowed(Vec<String>),
}

/// The other end of a flow a rule may match.
#[derive(Clone, Copy)]
enum Other {
    /// The pods of an identity, at their primary address.
    Ident(IdentityId),
    /// A pod of an identity at another of its addresses.
    At(IdentityId, Endpoint),
    /// An address no pod has.
    Outside(Endpoint),
}

/// The other ends of the flows rule `r` of policy `pid` may match (every identity, second address and outside
/// address its peers match), or `None` when the rule is not judged.
fn others(ctx: &Ctx, pid: PolicyId, r: &CRule) -> Option<Vec<Other>> {
    let e = ctx.engine;
    let pol = e.cluster.policy(pid);
    // Antrea's rules are judged on addresses too, as Calico's are: a rule without peers, or with ipBlocks, is
    // common there (a catch-all Drop last, an exception before it).
    if !calico::is_calico(pol) && !pol.kind.is_antrea() {
        if pol.tier == PolicyTier::NetworkPolicy
            || r.peers.is_empty()
            || r.peers.iter().any(|p| !matches!(p, CPeer::Sel(_)))
        {
            return None;
        }
        return Some(ctx.selected_peers(r).into_iter().map(Other::Ident).collect());
    }
    let matches = |ep: &Endpoint| {
        r.peers.is_empty() || {
            let info = e.ep_info(ep);
            r.peers.iter().any(|&p| e.peer_matches(p, &crate::compile::EpInfo::unknown(), &info))
        }
    };
    let mut out: Vec<Other> = (0..e.identities.len())
        .map(IdentityId::new)
        .filter(|&y| e.rule_matches_identity(r, y))
        .map(Other::Ident)
        .collect();
    let addrs = ctx.addresses();
    for &(y, pod, ip) in &addrs.secondary {
        let ep = Endpoint::Pod { pod, ip: Some(ip) };
        if matches(&ep) {
            out.push(Other::At(y, ep));
        }
    }
    for &ip in &addrs.outside {
        let ep = Endpoint::External(ip);
        if matches(&ep) {
            out.push(Other::Outside(ep));
        }
    }
    Some(out)
}

/// Whether any current flow reaches rule `rid` (rule `ri` of policy `pid` in `dir`).
pub(super) fn judge(ctx: &Ctx, pid: PolicyId, dir: Direction, rid: RuleId) -> Reach {
    let subjects = ctx.subjects_of(pid, dir, rid);
    judge_for(ctx, pid, dir, rid, &subjects)
}

/// Whether a flow between the pods of identity `x` and one of `others` reaches rule `rid` (in `dir`): `None` when
/// the rule's ports apply to none of them. The rules before it that match what it matches are added to
/// `deciders` (for the message).
fn subject_reach(
    ctx: &Ctx,
    dir: Direction,
    rid: RuleId,
    x: IdentityId,
    others: &[Other],
    deciders: &mut BTreeSet<RuleId>,
) -> Option<bool> {
    let e = ctx.engine;
    let r = &e.rules[rid.index()];
    let ident = &e.identities[x.index()];
    let rules = if dir == Direction::Ingress { &ident.ingress_rules } else { &ident.egress_rules };
    let before = &rules[..rules.iter().position(|&r2| r2 == rid).unwrap_or(0)];
    let mut judged = false;
    for &other in others {
        let (peer, peer_ident) = match other {
            Other::Ident(y) => match ctx.peer_endpoint(x, y) {
                Some(p) => (p, Some(y)),
                None => continue,
            },
            // A pod's traffic to itself is not governed.
            Other::At(y, _) if y == x && ident.pods.len() == 1 => continue,
            Other::At(y, p) => (p, Some(y)),
            Other::Outside(p) => (p, None),
        };
        let dst = if dir == Direction::Ingress { Some(x) } else { peer_ident };
        let dst_ports = dst.map(|d| e.identities[d.index()].ports.as_slice());
        let mine = r.ports.resolve(dst_ports);
        if mine.is_empty() {
            continue;
        }
        judged = true;
        let allow = e.side_ports(x, dir, &peer, Variant::Action(rid, Action::Allow));
        let deny = e.side_ports(x, dir, &peer, Variant::Action(rid, Action::Deny));
        if allow != deny {
            return Some(true);
        }
        for &r2 in before {
            let rule2 = &e.rules[r2.index()];
            if rule2.action != Action::Log
                && ctx.rule_applies(rule2, x, &peer)
                && !rule2.ports.resolve(dst_ports).intersect(&mine).is_empty()
            {
                deciders.insert(r2);
            }
        }
    }
    judged.then_some(false)
}

/// The pods of `subjects` (some the rule applies to) a flow of which reaches rule `rid` of policy `pid`; `None`
/// when the rule is not judged (any of them may reach it).
pub(super) fn reaching(
    ctx: &Ctx,
    pid: PolicyId,
    dir: Direction,
    rid: RuleId,
    subjects: &[IdentityId],
) -> Option<Vec<IdentityId>> {
    let r = &ctx.engine.rules[rid.index()];
    let others = others(ctx, pid, r)?;
    if others.is_empty() || subjects.len() * others.len() > BUDGET {
        return None;
    }
    let mut unused = BTreeSet::new();
    Some(
        subjects
            .iter()
            .copied()
            .filter(|&x| subject_reach(ctx, dir, rid, x, &others, &mut unused) != Some(false))
            .collect(),
    )
}

/// [`judge`] for some of the pods the rule applies to: whether a flow of theirs reaches it.
fn judge_for(ctx: &Ctx, pid: PolicyId, dir: Direction, rid: RuleId, subjects: &[IdentityId]) -> Reach {
    let e = ctx.engine;
    let c = &e.cluster;
    let r = &e.rules[rid.index()];
    let Some(others) = others(ctx, pid, r) else { return Reach::NotJudged };
    if subjects.is_empty() || others.is_empty() || subjects.len() * others.len() > BUDGET {
        return Reach::NotJudged;
    }
    let mut deciders: BTreeSet<RuleId> = BTreeSet::new();
    let mut earlier: BTreeSet<(TierId, Option<PolicyId>)> = BTreeSet::new();
    let mut judged = false;
    for &x in subjects {
        match subject_reach(ctx, dir, rid, x, &others, &mut deciders) {
            Some(true) => return Reach::Reached,
            Some(false) => judged = true,
            None => continue,
        }
        // For the message: the earlier tiers that end in a deny for these pods.
        for &p in e.identities[x.index()].policies(dir) {
            let t = e.policy_tier(p);
            if t < r.tier && e.tier_list()[t.index()].end == TierEnd::Deny {
                let np = t == e.np_tier() && c.policy(p).tier == PolicyTier::NetworkPolicy;
                earlier.insert((t, np.then_some(p)));
            }
        }
    }
    if !judged {
        return Reach::NotJudged;
    }
    // In evaluation order (tier, priority, kind, name), whatever the engine's numbering.
    let mut deciders: Vec<RuleId> = deciders.into_iter().collect();
    deciders.sort_by_cached_key(|&d| {
        let rule = &e.rules[d.index()];
        let p = c.policy(rule.policy);
        (e.policy_tier(rule.policy), p.order, p.kind, c.policy_ref(rule.policy), rule.index)
    });
    let mut words: Vec<String> = deciders
        .iter()
        .map(|&d| {
            let dr = &e.rules[d.index()];
            format!("{} {}", c.policy_ref(dr.policy), Ctx::rule_words(c.policy(dr.policy), dr.dir, dr.index as usize))
        })
        .collect();
    let isolating: Vec<String> = earlier.iter().filter_map(|&(_, p)| p).map(|p| c.policy_ref(p)).collect();
    let tiers: BTreeSet<TierId> = earlier.iter().filter(|(_, p)| p.is_none()).map(|&(t, _)| t).collect();
    if !isolating.is_empty() {
        let kinds = if c.has_calico() { "the default tier's policies" } else { "NetworkPolicy" };
        words.push(format!("the isolation of {kinds} {}", isolating.join(", ")));
    }
    for t in tiers {
        words.push(format!("the defaultAction Deny of tier `{}`", e.tier_list()[t.index()].name));
    }
    Reach::Shadowed(words)
}

/// An Antrea object's rule, judged over the policies it lowers to (one per `appliedTo` entry, and per namespace for
/// `namespaces` peers): shadowed when some split is and none is reached.
struct AntreaRule {
    pid: PolicyId,
    dir: Direction,
    reached: bool,
    shadowed: bool,
    by: Vec<String>,
}

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    let mut antrea: std::collections::BTreeMap<(crate::model::PolicyKey, Direction, u32), AntreaRule> =
        Default::default();
    for (pid, pol) in c.policies.iter().enumerate() {
        let calico = calico::is_calico(pol);
        if pol.tier == PolicyTier::NetworkPolicy && !calico {
            continue;
        }
        let pid = PolicyId::new(pid);
        if pol.kind.is_antrea() {
            let dir = if pol.affects_ingress { Direction::Ingress } else { Direction::Egress };
            // The object's rule is the policy's first (an HTTP rule's second is the L7 engine's Reject).
            let Some(&rid) = e.policy_rules(pid, dir).first() else { continue };
            let key = (c.policy_key(pid), dir, pol.position);
            let entry =
                antrea.entry(key).or_insert(AntreaRule { pid, dir, reached: false, shadowed: false, by: Vec::new() });
            match judge(ctx, pid, dir, rid) {
                Reach::Shadowed(by) => {
                    entry.shadowed = true;
                    for w in by {
                        if !entry.by.contains(&w) {
                            entry.by.push(w);
                        }
                    }
                }
                Reach::Reached => entry.reached = true,
                Reach::NotJudged => {}
            }
            continue;
        }
        let mut found: Vec<(Direction, usize, Vec<String>)> = Vec::new();
        let mut all = true;
        for dir in [Direction::Ingress, Direction::Egress] {
            for &rid in e.policy_rules(pid, dir) {
                let ri = e.rules[rid.index()].index as usize;
                match judge(ctx, pid, dir, rid) {
                    Reach::Shadowed(by) => found.push((dir, ri, by)),
                    Reach::Reached | Reach::NotJudged => all = false,
                }
            }
        }
        let by_words = |by: &[String]| if by.is_empty() { String::new() } else { format!(": {}", by.join(", ")) };
        // A Calico policy none of whose rules is reached: one finding.
        if calico && all && found.len() > 1 {
            let mut by: Vec<String> = Vec::new();
            let own = format!("{} ", c.policy_ref(pid));
            for w in found.iter().flat_map(|f| f.2.iter()) {
                if !by.contains(w) && !w.starts_with(&own) {
                    by.push(w.clone());
                }
            }
            let msg = format!(
                "none of this policy's {} rules is ever reached: for every pod it applies to and every peer they \
                 match, what they match is decided before them{}",
                found.len(),
                by_words(&by)
            );
            out.push(ctx.policy_finding(
                &RULE,
                pid,
                None,
                msg,
                "give the policy a lower order (or move it to an earlier tier), narrow the rules that decide first, \
                 or delete the policy",
            ));
            continue;
        }
        for (dir, ri, by) in found {
            let msg = format!(
                "{} is never reached: for every pod it applies to and every {}, what it matches is decided \
                 before it{}",
                Ctx::rule_words(pol, dir, ri),
                if calico { "peer it matches" } else { "pod it selects" },
                by_words(&by)
            );
            let help = if calico {
                "move the rule before the rules that decide first (or give its policy a lower order), narrow those \
                 rules, or delete it"
            } else {
                "move the rule before the rules that decide first (or give its policy a lower priority), narrow \
                 those rules, or delete it"
            };
            out.push(ctx.policy_finding(&RULE, pid, Some(Ctx::rule_path(dir, ri)), msg, help));
        }
    }
    for r in antrea.into_values().filter(|r| r.shadowed && !r.reached) {
        let pol = c.policy(r.pid);
        let words = Ctx::rule_words(pol, r.dir, 0);
        // Its own other splits are the same rule.
        let own = format!("{} {words}", c.policy_ref(r.pid));
        let by: Vec<String> = r.by.into_iter().filter(|w| *w != own).collect();
        // Decided first only by rules it ties with (same tier, priority and index, another object): their order
        // is undefined, which NP015 reports.
        let key = c.policy_key(r.pid);
        let tied = |w: &String| {
            c.policies.iter().enumerate().any(|(q, p)| {
                let q = PolicyId::new(q);
                p.kind.is_antrea()
                    && (p.tier, p.order, p.position) == (pol.tier, pol.order, pol.position)
                    && c.policy_key(q) != key
                    && *w == format!("{} {}", c.policy_ref(q), Ctx::rule_words(p, r.dir, 0))
            })
        };
        if !by.is_empty() && by.iter().all(tied) {
            continue;
        }
        let by = if by.is_empty() { String::new() } else { format!(": {}", by.join(", ")) };
        let msg = format!(
            "{words} is never reached: for every pod its appliedTo selects and every peer it matches, what it matches \
             is decided before it{by}"
        );
        out.push(ctx.policy_finding(
            &RULE,
            r.pid,
            Some(Ctx::rule_field(pol, r.dir, 0)),
            msg,
            "move the rule before the rules that decide first (an earlier index, or its policy a lower priority or an \
             earlier tier), narrow those rules, or delete it",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    /// A deny of everything from namespace b, then an exception for b/client on 8080: the exception comes too
    /// late.
    const LATE_EXCEPTION: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  ingress:
  - name: deny-b
    action: Deny
    from: [{namespaces: {matchLabels: {team: b}}}]
  - name: allow-client
    action: Accept
    from: [{pods: {namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: client}}}}]
    protocols: [{tcp: {destinationPort: {number: 8080}}}]
"#;

    #[test]
    fn an_exception_after_the_rule_it_carves_out_of_is_never_reached() {
        let f = run(&RULE, &with(LATE_EXCEPTION));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy guard");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[1]"));
        assert!(
            f[0].message.starts_with("ingress rule 1 \"allow-client\" (Accept) is never reached"),
            "{}",
            f[0].message
        );
        assert!(f[0].message.contains("cnp/guard ingress rule 0 \"deny-b\" (Deny)"), "{}", f[0].message);
    }

    #[test]
    fn the_exception_first_is_reached() {
        let yaml = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  ingress:
  - name: allow-client
    action: Accept
    from: [{pods: {namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: client}}}}]
    protocols: [{tcp: {destinationPort: {number: 8080}}}]
  - name: deny-b
    action: Deny
    from: [{namespaces: {matchLabels: {team: b}}}]
"#;
        let f = run(&RULE, &with(yaml));
        assert!(f.is_empty(), "{f:?}");
    }

    /// A policy of lower priority that decides first shadows a rule of another policy; a policy of higher
    /// priority number does not shadow one of lower.
    #[test]
    fn priorities_count() {
        let yaml = r#"
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: first}
spec:
  priority: 5
  subject: {namespaces: {matchLabels: {team: b}}}
  egress:
  - {name: allow-a, action: Allow, to: [{namespaces: {matchLabels: {team: a}}}]}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: later}
spec:
  priority: 20
  subject: {namespaces: {matchLabels: {team: b}}}
  egress:
  - {name: deny-db, action: Deny, to: [{pods: {namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: db}}}}]}
"#;
        let f = run(&RULE, &with(yaml));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "AdminNetworkPolicy later");
        assert!(f[0].message.contains("anp/first egress rule 0 \"allow-a\" (Allow)"), "{}", f[0].message);
    }

    /// A Baseline rule for pods a NetworkPolicy isolates in that direction is never consulted: the
    /// NetworkPolicy tier decides everything for them.
    #[test]
    fn baseline_rules_for_isolated_pods_are_shadowed_by_the_isolation() {
        let yaml = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: base}
spec:
  tier: Baseline
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  ingress:
  - {name: deny-b, action: Deny, from: [{namespaces: {matchLabels: {team: b}}}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate, namespace: a}
spec: {podSelector: {}, policyTypes: [Ingress]}
"#;
        let f = run(&RULE, &with(yaml));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("the isolation of NetworkPolicy a/isolate"), "{}", f[0].message);
        // Without the NetworkPolicy, the Baseline rule decides.
        let f = run(&RULE, &with(yaml.split("---").next().unwrap_or_default()));
        assert!(f.is_empty(), "{f:?}");
    }

    /// A Calico NetworkPolicy of lower order that denies namespace b decides before an Allow of b/client.
    const CALICO_LATE_EXCEPTION: &str = r#"
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-b, namespace: a}
spec:
  order: 10
  selector: all()
  ingress:
  - action: Deny
    source: {namespaceSelector: team == 'b'}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-client, namespace: a}
spec:
  order: 20
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    source: {namespaceSelector: team == 'b', selector: app == 'client'}
    destination: {ports: [8080]}
  - action: Allow
    source: {namespaceSelector: team == 'b'}
"#;

    /// A Calico policy whose rules all come too late: one finding for the policy; one rule alone: the rule.
    #[test]
    fn calico_rules_after_a_lower_order_deny() {
        let f = run(&RULE, &with(CALICO_LATE_EXCEPTION));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "NetworkPolicy.projectcalico.org a/allow-client");
        assert_eq!(f[0].field, None);
        assert_eq!(
            f[0].message,
            "none of this policy's 2 rules is ever reached: for every pod it applies to and every peer they match, \
             what they match is decided before them: caliconetworkpolicy/a/deny-b ingress rule 0 (Deny)"
        );
        // An Allow from a/db as well: that one is reached, the other two are reported one by one.
        let yaml = CALICO_LATE_EXCEPTION.replace(
            "  - action: Allow\n    source: {namespaceSelector: team == 'b'}\n",
            "  - action: Allow\n    source: {namespaceSelector: team == 'b'}\n  - action: Allow\n    source: {selector: app == 'db'}\n",
        );
        let f = run(&RULE, &with(&yaml));
        let fields: Vec<_> = f.iter().map(|f| f.field.as_deref().unwrap_or_default()).collect();
        assert_eq!(fields, ["spec.ingress[0]", "spec.ingress[1]"], "{f:?}");
        assert!(f[0].message.starts_with("ingress rule 0 (Allow) is never reached"), "{}", f[0].message);
        // The Deny with the higher order: the Allow rules decide first.
        let swapped = CALICO_LATE_EXCEPTION.replace("order: 10", "order: 30");
        // (It is reached for a/db, which the Allow policy does not select.)
        assert!(run(&RULE, &with(&swapped)).is_empty());
        let swapped = swapped.replace("selector: all()", "selector: app == 'web'");
        let f = run(&RULE, &with(&swapped));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "NetworkPolicy.projectcalico.org a/deny-b");
        assert!(
            f[0].message.ends_with(
                "decided before it: caliconetworkpolicy/a/allow-client ingress rule 0 (Allow), \
                 caliconetworkpolicy/a/allow-client ingress rule 1 (Allow)"
            ),
            "{}",
            f[0].message
        );
        // Without the Allow policy's pods, the Deny decides.
        let reached = swapped.replace("order: 20\n  selector: app == 'web'", "order: 20\n  selector: has(nothing)");
        assert!(run(&RULE, &with(&reached)).is_empty());
    }

    /// Calico rules with nets are judged on the outside addresses: a Deny of every IPv4 address shadows an Allow
    /// of some; a Deny of other addresses does not.
    #[test]
    fn calico_nets_are_judged_on_outside_addresses() {
        let gnp = |deny: &str| {
            format!(
                "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: egress}}\nspec:\n  \
                 selector: app == 'web'\n  egress:\n  - {{action: Deny, destination: {{nets: [{deny}]}}}}\n  - \
                 {{action: Allow, destination: {{nets: [192.0.2.0/24]}}}}\n"
            )
        };
        let f = run(&RULE, &with(&gnp("0.0.0.0/0")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "GlobalNetworkPolicy egress");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[1]"));
        assert!(f[0].message.ends_with("decided before it: gnp/egress egress rule 0 (Deny)"), "{}", f[0].message);
        assert!(run(&RULE, &with(&gnp("10.0.0.0/8"))).is_empty());
    }

    /// A Calico tier that ends in Deny decides everything its rules leave for the pods it selects: a later tier's
    /// rule for them is never reached.
    #[test]
    fn calico_earlier_tier_default_deny() {
        let yaml = r#"
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: first}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: second}
spec: {order: 200}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: first.web}
spec:
  tier: first
  selector: app == 'web'
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: second.web}
spec:
  tier: second
  selector: app == 'web'
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'client'}, destination: {ports: [443]}}
"#;
        let f = run(&RULE, &with(yaml));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "GlobalNetworkPolicy second.web");
        assert!(
            f[0].message.ends_with("decided before it: the defaultAction Deny of tier `first`"),
            "{}",
            f[0].message
        );
        // With a Pass, the first tier hands 443 on.
        let pass = yaml.replace(
            "  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}",
            "  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}\n  - {action: Pass}",
        );
        assert!(run(&RULE, &with(&pass)).is_empty());
    }

    /// Rules with address peers are not judged, whatever precedes them.
    #[test]
    fn address_peers_are_not_judged() {
        let yaml = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: a}}}
  egress:
  - {action: Deny, to: [{namespaces: {}}]}
  - {action: Deny, to: [{networks: ["10.0.0.0/8"]}]}
"#;
        let f = run(&RULE, &with(yaml));
        assert!(f.is_empty(), "{f:?}");
    }

    fn acnp(name: &str, priority: u32, rules: &str) -> String {
        format!(
            "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  \
             priority: {priority}\n  appliedTo: [{{namespaceSelector: {{matchLabels: {{team: a}}}}}}, \
             {{podSelector: {{matchLabels: {{app: web}}}}}}]\n  ingress:\n{rules}---\n"
        )
    }
    const DROP_B: &str = "  - {action: Drop, from: [{namespaceSelector: {matchLabels: {team: b}}}]}\n";
    const ALLOW_CLIENT: &str = "  - {action: Allow, from: [{podSelector: {matchLabels: {app: client}}}]}\n";
    const ALLOW_DB: &str = "  - {action: Allow, from: [{podSelector: {matchLabels: {app: db}}}]}\n";

    /// An Antrea rule after a rule of its object (or of a policy of lower priority) that drops all it matches: one
    /// finding per object rule, whatever the number of `appliedTo` entries, at the rule's index in the object.
    #[test]
    fn antrea_rule_after_a_broader_drop() {
        let f = run(&RULE, &with(&acnp("guard", 5, &format!("{DROP_B}{ALLOW_CLIENT}"))));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy.crd.antrea.io guard");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[1]"));
        assert_eq!(
            f[0].message,
            "ingress rule 1 (Allow) is never reached: for every pod its appliedTo selects and every peer it matches, \
             what it matches is decided before it: acnp/guard ingress rule 0 (Drop)"
        );

        let two = format!("{}{}", acnp("first", 1, DROP_B), acnp("late", 2, ALLOW_CLIENT));
        let f = run(&RULE, &with(&two));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "ClusterNetworkPolicy.crd.antrea.io late");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0]"));
        assert!(f[0].message.ends_with("decided before it: acnp/first ingress rule 0 (Drop)"), "{f:?}");
    }

    /// A rule reached for some pod (a peer the earlier drop leaves, a drop after an allow of one of its peers'
    /// pods) is not reported.
    #[test]
    fn antrea_rules_reached() {
        let other = "apiVersion: v1\nkind: Pod\nmetadata: {name: other, namespace: b, labels: {app: other}}\n\
                     spec: {containers: [{name: c}]}\nstatus: {podIP: 10.0.1.2}\n---\n";
        for yaml in [
            acnp("guard", 5, &format!("{DROP_B}{ALLOW_DB}")),
            acnp("guard", 5, &format!("{ALLOW_CLIENT}{DROP_B}")),
            format!("{}{}", acnp("first", 2, DROP_B), acnp("early", 1, ALLOW_CLIENT)),
        ] {
            let yaml = format!("{other}{yaml}");
            let f = run(&RULE, &with(&yaml));
            assert!(f.is_empty(), "{yaml}: {f:?}");
        }
    }

    /// A rule decided first only by the rule of another object it ties with (same tier, priority and index) is
    /// NP015's: their order is undefined, not "first".
    #[test]
    fn antrea_ties_are_not_shadowing() {
        let f = run(&RULE, &with(&format!("{}{}", acnp("allow-b", 5, ALLOW_CLIENT), acnp("deny-b", 5, DROP_B))));
        assert!(f.is_empty(), "{f:?}");
    }

    /// Antrea rules are judged on addresses too (as Calico's): an exception for a network after a Drop of
    /// everything is never reached; a Drop of everything after an Allow of some addresses is.
    #[test]
    fn antrea_rules_on_addresses() {
        let acnp = |dir: &str, rules: &str| {
            format!(
                "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {{name: edge}}\nspec:\n  \
                 priority: 5\n  appliedTo: [{{podSelector: {{matchLabels: {{app: web}}}}}}]\n  {dir}:\n{rules}"
            )
        };
        let late = "  - {action: Drop}\n  - {action: Allow, from: [{ipBlock: {cidr: 192.0.2.0/24}}]}\n";
        let f = run(&RULE, &with(&acnp("ingress", late)));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[1]"));
        assert!(f[0].message.ends_with("decided before it: acnp/edge ingress rule 0 (Drop)"), "{f:?}");
        let fine = "  - {action: Allow, to: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{protocol: TCP, port: 443}]}\n  - {action: Drop}\n";
        let f = run(&RULE, &with(&acnp("egress", fine)));
        assert!(f.is_empty(), "{f:?}");
    }
}
