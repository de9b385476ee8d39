//! The one evaluator: how the rules that match some traffic decide it.
//!
//! Every dialect lowers to the same compiled form (see [`crate::compile`]): tiers in evaluation order, and for
//! each subject and direction its rules in order, each with an [`Action`]. One direction of one flow is decided
//! by walking them: the first rule whose peer and ports match decides the traffic it matches (allow, deny, or
//! pass it on to the next tier; log rules only observe), and at the end of a tier the traffic nothing decided is
//! denied if a policy of that tier selected the subject and the tier says so ([`TierEnd::Deny`]). What is still
//! undecided after the last tier is allowed: Kubernetes' default. NetworkPolicy v1 is one tier of allow rules
//! that ends in "deny if isolated".
//!
//! [`Side`] is that fold, written once, over any port domain ([`Ports`]): one port (a `bool`: the verdict and
//! `explain`), port sets (the outside-address analysis) or interned port sets (the matrix, whose rows fold the
//! rules of a policy profile for many peers at once). The walks that feed it differ only in how they find the
//! rules whose peers match.

use serde::Serialize;

use crate::compile::{CRule, Endpoint, Engine, EpInfo, IdentityId, RuleId};
use crate::matrix::{PortSets, PsId};
use crate::model::{Direction, PolicyId, PolicyTier, TierDef};
use crate::portset::{PortSet, Protocol};

pub use crate::model::Action;

/// What happens at the end of a tier to traffic no rule of it decided, when a policy of the tier selects the
/// subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TierEnd {
    /// Denied (NetworkPolicy v1: a pod selected by some policy is isolated).
    Deny,
    /// On to the next tier.
    Continue,
}

crate::typed_id!(
    /// A tier: its index in the engine's tiers, in evaluation order.
    TierId
);

/// A tier: policies evaluated together, before those of later tiers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tier {
    pub name: std::sync::Arc<str>,
    pub end: TierEnd,
    /// Antrea: traffic a `Pass` rule of this tier passes is held past its end, undecided by the next tier's
    /// rules, and released at the end of the last of a run of tiers with
    /// [`TierDef::pass_to_network_policy`] (the next tier is then the NetworkPolicy tier, or one without the
    /// flag). Set when this tier has the flag and so has the next in evaluation order, which is not the
    /// NetworkPolicy tier. False for every tier without Antrea's tiers (a pass goes on to the next tier).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hold: bool,
}

/// The tier of NetworkPolicy v1 (Calico's `default` tier) in an engine without tiers of Calico's own (whose
/// tiers are the three built-in ones: see [`Engine::np_tier`] for any engine).
pub const NETWORK_POLICY_TIER: TierId = TierId(1);

/// The engine's tiers in evaluation order (by order, none last, equal orders by name), and for each tier of
/// `defs` (a cluster's: built-in ones first) its engine tier.
pub fn tiers(defs: &[TierDef]) -> (Vec<Tier>, Vec<TierId>) {
    let defs: Vec<TierDef> = if defs.len() < 3 { TierDef::builtin() } else { defs.to_vec() };
    let mut idx: Vec<usize> = (0..defs.len()).collect();
    idx.sort_by(|&a, &b| {
        let key = |d: &TierDef| d.order.unwrap_or(f64::INFINITY);
        key(&defs[a]).total_cmp(&key(&defs[b])).then_with(|| defs[a].name.cmp(&defs[b].name))
    });
    let mut map = vec![TierId(0); defs.len()];
    let np = PolicyTier::NetworkPolicy.index();
    let flagged = |i: usize| defs[i].pass_to_network_policy && i != np;
    let tiers = idx
        .iter()
        .enumerate()
        .map(|(t, &i)| {
            map[i] = TierId::new(t);
            let end = if defs[i].default_action == Action::Deny { TierEnd::Deny } else { TierEnd::Continue };
            let hold = flagged(i) && idx.get(t + 1).is_some_and(|&n| flagged(n));
            Tier { name: defs[i].name.as_str().into(), end, hold }
        })
        .collect();
    (tiers, map)
}

/// Set operations of a port domain.
pub trait Ports {
    type Set: Clone;
    fn none(&mut self) -> Self::Set;
    fn is_none(&self, s: &Self::Set) -> bool;
    fn inter(&mut self, a: &Self::Set, b: &Self::Set) -> Self::Set;
    fn union(&mut self, a: &Self::Set, b: &Self::Set) -> Self::Set;
    fn minus(&mut self, a: &Self::Set, b: &Self::Set) -> Self::Set;
}

/// One (protocol, port): a set is "the port, or nothing".
pub struct OnePort;

impl Ports for OnePort {
    type Set = bool;
    fn none(&mut self) -> bool {
        false
    }
    fn is_none(&self, s: &bool) -> bool {
        !*s
    }
    fn inter(&mut self, a: &bool, b: &bool) -> bool {
        *a && *b
    }
    fn union(&mut self, a: &bool, b: &bool) -> bool {
        *a || *b
    }
    fn minus(&mut self, a: &bool, b: &bool) -> bool {
        *a && !*b
    }
}

/// Port sets.
pub struct Sets;

impl Ports for Sets {
    type Set = PortSet;
    fn none(&mut self) -> PortSet {
        PortSet::empty()
    }
    fn is_none(&self, s: &PortSet) -> bool {
        s.is_empty()
    }
    fn inter(&mut self, a: &PortSet, b: &PortSet) -> PortSet {
        a.intersect(b)
    }
    fn union(&mut self, a: &PortSet, b: &PortSet) -> PortSet {
        a.union(b)
    }
    fn minus(&mut self, a: &PortSet, b: &PortSet) -> PortSet {
        a.difference(b)
    }
}

/// Interned port sets, operations memoised.
impl Ports for PortSets {
    type Set = PsId;
    fn none(&mut self) -> PsId {
        crate::matrix::EMPTY
    }
    fn is_none(&self, s: &PsId) -> bool {
        *s == crate::matrix::EMPTY
    }
    fn inter(&mut self, a: &PsId, b: &PsId) -> PsId {
        PortSets::inter(self, *a, *b)
    }
    fn union(&mut self, a: &PsId, b: &PsId) -> PsId {
        PortSets::union(self, *a, *b)
    }
    fn minus(&mut self, a: &PsId, b: &PsId) -> PsId {
        PortSets::minus(self, *a, *b)
    }
}

/// One direction's evaluation in progress: which of the traffic is allowed so far, still undecided, or passed
/// on to the next tier (or, past the end of a tier that holds it, to the tier after a run of Antrea's tiers:
/// see [`Tier::hold`]; held traffic is neither undecided nor allowed, and no rule decides it until released).
///
/// While only allow rules have matched, "undecided" is simply the traffic not allowed yet and is not computed:
/// an allow rule then costs one union, as in a tier of NetworkPolicy allow rules, where the fold is the union of
/// the matching rules' ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side<S> {
    traffic: S,
    allowed: S,
    /// `None`: `traffic − allowed`.
    undecided: Option<S>,
    passed: S,
}

impl<S: Clone> Side<S> {
    /// Nothing decided yet about `traffic`.
    pub fn new<P: Ports<Set = S>>(p: &mut P, traffic: S) -> Self {
        Side { allowed: p.none(), undecided: None, passed: p.none(), traffic }
    }

    fn undecided<P: Ports<Set = S>>(&mut self, p: &mut P) -> S {
        match &self.undecided {
            Some(u) => u.clone(),
            None => {
                let u = p.minus(&self.traffic, &self.allowed);
                self.undecided = Some(u.clone());
                u
            }
        }
    }

    /// A rule with `action` whose peer matches, on `ports`: decides what of the undecided traffic those ports
    /// cover.
    pub fn rule<P: Ports<Set = S>>(&mut self, p: &mut P, action: Action, ports: &S) {
        if p.is_none(ports) {
            return;
        }
        if action == Action::Allow && self.undecided.is_none() {
            let hit = p.inter(&self.traffic, ports);
            self.allowed = p.union(&self.allowed, &hit);
            return;
        }
        let undecided = self.undecided(p);
        let hit = p.inter(&undecided, ports);
        if p.is_none(&hit) {
            return;
        }
        match action {
            Action::Allow => {
                self.allowed = p.union(&self.allowed, &hit);
                self.undecided = Some(p.minus(&undecided, &hit));
            }
            Action::Deny | Action::Reject => self.undecided = Some(p.minus(&undecided, &hit)),
            Action::Pass => {
                self.passed = p.union(&self.passed, &hit);
                self.undecided = Some(p.minus(&undecided, &hit));
            }
            Action::Log => {}
        }
    }

    /// The end of a tier. `selected`: a policy of the tier selects the subject in this direction. `hold`: the
    /// traffic passed so far stays passed past this end ([`Tier::hold`]); otherwise it is undecided again, for
    /// the next tier.
    pub fn end_tier<P: Ports<Set = S>>(&mut self, p: &mut P, selected: bool, end: TierEnd, hold: bool) {
        if selected && end == TierEnd::Deny {
            self.undecided = Some(p.none());
        }
        if !hold && !p.is_none(&self.passed) {
            let passed = std::mem::replace(&mut self.passed, p.none());
            let undecided = self.undecided(p);
            self.undecided = Some(p.union(&undecided, &passed));
        }
    }

    /// Whether a later rule of this tier can still change the outcome.
    pub fn open<P: Ports<Set = S>>(&mut self, p: &mut P) -> bool {
        let u = self.undecided(p);
        !p.is_none(&u)
    }

    /// Whether a later tier can still change the outcome: some traffic is undecided, or held passed (after a
    /// tier's end, passed traffic is either released, and undecided, or held).
    pub fn settled<P: Ports<Set = S>>(&mut self, p: &mut P) -> bool {
        !self.open(p) && p.is_none(&self.passed)
    }

    /// Whether some traffic is passed (within a tier) or held passed (past a tier's end).
    pub fn holds<P: Ports<Set = S>>(&self, p: &P) -> bool {
        !p.is_none(&self.passed)
    }

    /// The traffic allowed so far, and the traffic still undecided (after a tier end, passed traffic is
    /// undecided; traffic still held is counted undecided too). Later tiers decide only the undecided part,
    /// port by port, so what they allow of it is what they would allow of all traffic, intersected with it.
    pub fn parts<P: Ports<Set = S>>(mut self, p: &mut P) -> (S, S) {
        let u = self.undecided(p);
        let u = if p.is_none(&self.passed) { u } else { p.union(&u, &self.passed) };
        (self.allowed, u)
    }

    /// The traffic allowed so far, still undecided, and held passed (see [`Tier::hold`]).
    pub fn parts3<P: Ports<Set = S>>(mut self, p: &mut P) -> (S, S, S) {
        let u = self.undecided(p);
        (self.allowed, u, self.passed)
    }

    /// After the last tier: the allowed traffic (what no tier decided is allowed; so is traffic still held,
    /// which only a fold that stops inside a run of Antrea's tiers leaves).
    pub fn finish<P: Ports<Set = S>>(self, p: &mut P) -> S {
        let out = match &self.undecided {
            None => self.traffic,
            Some(u) => p.union(&self.allowed, u),
        };
        if p.is_none(&self.passed) {
            out
        } else {
            p.union(&out, &self.passed)
        }
    }
}

/// What the tiers of a fold do at their ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ends {
    /// Each tier's own end (its default action).
    AsTiers,
    /// Every tier passes what it leaves undecided: Felix's untracked and pre-DNAT policies, whose tiers end in
    /// Pass so that the policies of later stages still apply.
    Pass,
}

/// How a fold departs from the compiled rules (lint's what-ifs; see [`Engine::fold_side_variant`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Variant {
    /// The rules as compiled.
    #[default]
    AsIs,
    /// The rules of these two policies of one tier take each other's place: the other order of a tie.
    Swap(PolicyId, PolicyId),
    /// This rule does this instead of its own action.
    Action(RuleId, Action),
    /// This tier alone, as if it selected the subject and ended with this end; the other tiers' rules are not
    /// consulted and their ends do nothing. With [`TierEnd::Deny`] the outcome is what the tier allows, with
    /// [`TierEnd::Continue`] all but what it denies: what one tier decides, whatever the others say.
    Tier(TierId, TierEnd),
    /// Rules with L7 rules (Cilium) match nothing: what is allowed without a proxy's say.
    NoL7,
}

impl Variant {
    /// The action of `rule` (id `r`) under this variant.
    #[inline]
    pub(crate) fn action(self, r: RuleId, rule: &CRule) -> Action {
        match self {
            Variant::Action(v, a) if v == r => a,
            Variant::NoL7 if rule.l7.is_some() => Action::Log,
            _ => rule.action,
        }
    }
}

/// One step of a fold over a policy profile.
#[derive(Clone, Copy, Debug)]
pub enum ProfileStep {
    Rule(RuleId),
    /// `hold`: see [`Tier::hold`].
    TierEnd {
        selected: bool,
        end: TierEnd,
        hold: bool,
    },
}

/// The traffic of one flow: protocol, port, and the destination's named container ports (interned name,
/// protocol, port; `None`: the destination is not a pod).
pub(crate) struct Query<'a> {
    pub proto: Protocol,
    pub port: u16,
    pub dst_named: Option<&'a [(u32, Protocol, u16)]>,
    /// One request on the connection, which rules with L7 rules must let through.
    pub request: Option<&'a crate::l7::Request>,
}

/// One rule consulted by a walk.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub rule: RuleId,
    /// The rule's ports include the flow's.
    pub ports: bool,
    /// The peer that matches: `Some(None)` when the rule has no peers (every peer), `Some(Some(i))` the first
    /// matching peer of the source rule, `None` when no peer matches.
    pub peer: Option<Option<usize>>,
    /// The subject's own side matches the rule's (always, but for Calico rules with criteria there).
    pub local: bool,
    /// The rule's L7 rules let the flow's request through (always without either).
    pub l7: bool,
}

/// What a walk records. The verdict's walk records nothing, and stops as soon as the outcome is known;
/// `explain`'s records every rule, and consults them all.
pub(crate) trait Trace {
    const EVERY_RULE: bool;
    fn step(&mut self, _step: Step) {}
}

pub(crate) struct Quiet;

impl Trace for Quiet {
    const EVERY_RULE: bool = false;
}

/// Every rule consulted, in evaluation order.
#[derive(Default)]
pub(crate) struct Record(pub Vec<Step>);

impl Trace for Record {
    const EVERY_RULE: bool = true;
    fn step(&mut self, step: Step) {
        self.0.push(step);
    }
}

impl Engine {
    /// The tier of a policy.
    pub fn policy_tier(&self, p: PolicyId) -> TierId {
        self.tier_id(self.cluster.policy(p).tier)
    }

    /// The engine tier of a model tier.
    pub fn tier_id(&self, t: PolicyTier) -> TierId {
        self.tier_map.get(t.index()).copied().unwrap_or(NETWORK_POLICY_TIER)
    }

    /// The tiers whose rules traffic a `Pass` rule of tier `t` passes skips: none unless `t` holds passed
    /// traffic ([`Tier::hold`]), else the following tiers up to the one whose end releases it.
    pub fn pass_skips(&self, t: TierId) -> Vec<TierId> {
        let mut out = Vec::new();
        let mut u = t.index();
        while self.tiers.get(u).is_some_and(|x| x.hold) && u + 1 < self.tiers.len() {
            u += 1;
            out.push(TierId::new(u));
        }
        out
    }

    /// The tier of NetworkPolicy v1 (Calico's `default` tier).
    pub fn np_tier(&self) -> TierId {
        self.tier_id(PolicyTier::NetworkPolicy)
    }

    /// The engine's tiers, in evaluation order.
    pub fn tier_list(&self) -> &[Tier] {
        &self.tiers
    }

    /// The policies of `pols` in evaluation order: by tier, then by order (priority; lower first, none last), then
    /// by position (an Antrea object's rule index: see [`crate::model::Policy::position`]).
    /// Equal orders go by name, namespace and Calico's kind name, as Felix sorts them (the admin kinds' API
    /// leaves their order undefined: explain and lint say where that matters). Kubernetes NetworkPolicies alone,
    /// whose rules only allow, keep their input order.
    pub fn evaluation_order(&self, pols: &[PolicyId]) -> Vec<PolicyId> {
        let mut v = pols.to_vec();
        if v.iter().all(|&p| self.cluster.policy(p).kind == crate::model::PolicyKind::NetworkPolicy) {
            return v;
        }
        v.sort_by_cached_key(|&p| {
            let pol = self.cluster.policy(p);
            let ns = pol.ns().map_or("", |n| self.cluster.ns_name(n));
            (self.policy_tier(p), pol.order, pol.position, &*pol.name, ns, pol.kind.calico_kind(), p)
        });
        v
    }

    /// The one walk: folds the rules of `subject` in direction `dir` over `traffic`, tier by tier.
    /// `consult(rule id, rule)` gives the part of the rule's ports that applies to the peer in question (none
    /// when its peer does not match). With `settle`, rules are no longer consulted once the outcome is known.
    pub(crate) fn fold_side<P: Ports>(
        &self,
        subject: IdentityId,
        dir: Direction,
        p: &mut P,
        traffic: P::Set,
        settle: bool,
        consult: impl FnMut(RuleId, &CRule) -> P::Set,
    ) -> P::Set {
        self.fold_side_variant(subject, dir, p, traffic, settle, Variant::AsIs, consult)
    }

    /// [`Engine::fold_side`] under a [`Variant`]: the same walk over the same rules, two tied policies' rules
    /// taken in the other order, or one rule's action replaced. Lint's what-ifs, so that they are decided by
    /// the one evaluator too.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fold_side_variant<P: Ports>(
        &self,
        subject: IdentityId,
        dir: Direction,
        p: &mut P,
        traffic: P::Set,
        settle: bool,
        variant: Variant,
        consult: impl FnMut(RuleId, &CRule) -> P::Set,
    ) -> P::Set {
        let ident = &self.identities[subject.index()];
        let (pols, rules, tier_bits) = match dir {
            Direction::Ingress => (&ident.ingress_policies, &ident.ingress_rules, ident.tier_bits[0]),
            Direction::Egress => (&ident.egress_policies, &ident.egress_rules, ident.tier_bits[1]),
        };
        if pols.is_empty() {
            // No policy of any tier selects the subject: no rule applies.
            return traffic;
        }
        let swapped;
        let rules: &[RuleId] = match variant {
            Variant::Swap(a, b) => {
                swapped = self.swap_policies(rules, a, b);
                &swapped
            }
            Variant::AsIs | Variant::Action(..) | Variant::Tier(..) | Variant::NoL7 => rules,
        };
        self.fold_rules(pols, rules, Some(tier_bits), Ends::AsTiers, p, traffic, settle, variant, consult).finish(p)
    }

    /// The tier walk itself, over any subject's policies `pols` (sorted) and their rules `rules` (in evaluation
    /// order): a pod's (above) or a host endpoint's on one of its paths ([`crate::host`]). `tier_bits`: which
    /// tiers `pols` has policies in (bit `t`, tiers below 64), when the caller keeps them; otherwise `pols` is
    /// scanned. Returns the fold before its end, so that a caller can tell allowed from undecided traffic.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fold_rules<P: Ports>(
        &self,
        pols: &[PolicyId],
        rules: &[RuleId],
        tier_bits: Option<u64>,
        ends: Ends,
        p: &mut P,
        traffic: P::Set,
        settle: bool,
        variant: Variant,
        mut consult: impl FnMut(RuleId, &CRule) -> P::Set,
    ) -> Side<P::Set> {
        let mut side = Side::new(p, traffic);
        let mut next = 0;
        for (t, tier) in self.tiers.iter().enumerate() {
            let t = TierId::new(t);
            // With `settle`, a tier is skipped when nothing is undecided as it starts: traffic a pass holds
            // past the previous tier's end (see `Tier::hold`) is not this tier's to decide.
            let skip = matches!(variant, Variant::Tier(only, _) if only != t) || (settle && !side.open(p));
            while let Some(&r) = rules.get(next) {
                let rule = &self.rules[r.index()];
                if rule.tier != t {
                    break;
                }
                next += 1;
                if skip {
                    continue;
                }
                let ports = consult(r, rule);
                side.rule(p, variant.action(r, rule), &ports);
                if settle && !side.open(p) {
                    // Settled: the tier's other rules cannot change the outcome (its end still may: passed
                    // traffic goes on). Rules are in tier order, so its last one is found by bisection.
                    next += rules[next..].partition_point(|r| self.rules[r.index()].tier == t);
                    break;
                }
            }
            let tier_end = match ends {
                Ends::AsTiers => tier.end,
                Ends::Pass => TierEnd::Continue,
            };
            let (selected, end) = match variant {
                Variant::Tier(only, end) => (only == t, end),
                // Only a tier that ends in "deny" asks whether it selects the subject.
                _ => {
                    let selected = tier_end == TierEnd::Deny
                        && match tier_bits {
                            Some(bits) if t.index() < 64 => bits & 1 << t.index() != 0,
                            _ => pols.iter().any(|&pol| self.policy_tier(pol) == t),
                        };
                    (selected, tier_end)
                }
            };
            side.end_tier(p, selected, end, tier.hold && ends == Ends::AsTiers);
            if settle && side.settled(p) {
                break;
            }
        }
        side
    }

    /// `rules` (a subject's, in evaluation order) with the rules of policies `a` and `b` in each other's place.
    /// Each policy's rules are consecutive; policies of different tiers are not swapped (the tiers' order is
    /// defined).
    fn swap_policies(&self, rules: &[RuleId], a: PolicyId, b: PolicyId) -> Vec<RuleId> {
        let span = |pol: PolicyId| {
            let first = rules.iter().position(|r| self.rules[r.index()].policy == pol)?;
            let len = rules[first..].iter().take_while(|r| self.rules[r.index()].policy == pol).count();
            Some((first, first + len))
        };
        let (Some(sa), Some(sb)) = (span(a), span(b)) else { return rules.to_vec() };
        if self.policy_tier(a) != self.policy_tier(b) || sa == sb {
            return rules.to_vec();
        }
        let (x, y) = if sa.0 < sb.0 { (sa, sb) } else { (sb, sa) };
        let mut out = Vec::with_capacity(rules.len());
        out.extend_from_slice(&rules[..x.0]);
        out.extend_from_slice(&rules[y.0..y.1]);
        out.extend_from_slice(&rules[x.1..y.0]);
        out.extend_from_slice(&rules[x.0..x.1]);
        out.extend_from_slice(&rules[y.1..]);
        out
    }

    /// What one direction allows between the pods of identity `subject` and `peer` (a pod at its primary
    /// address, or an address), on every port, under `variant`: lint's what-if questions, answered by
    /// [`Engine::fold_side_variant`]. Named ports resolve against the destination pod.
    pub(crate) fn side_ports(&self, subject: IdentityId, dir: Direction, peer: &Endpoint, variant: Variant) -> PortSet {
        let ep = self.ep_info(peer);
        let dst = match dir {
            Direction::Ingress => Some(subject),
            Direction::Egress => ep.ident,
        };
        let dst_ports = dst.map(|i| self.identities[i.index()].ports.as_slice());
        let me = self.ident_info(subject);
        self.fold_side_variant(subject, dir, &mut Sets, PortSet::all(), false, variant, |_, rule| {
            let local = rule.local.is_none_or(|l| self.calico_matches(l, &me));
            if local && (rule.peers.is_empty() || rule.peers.iter().any(|&p| self.peer_matches(p, &me, &ep))) {
                rule.ports.resolve(dst_ports)
            } else {
                PortSet::empty()
            }
        })
    }

    /// The ports between the pods of identities `src` and `dst` (at their primary addresses) that are allowed at
    /// L3/L4 and whose requests Cilium's L7 proxies filter: on one side or both, only rules with L7 rules allow
    /// them (no L4-only rule wildcards them). Empty without L7 rules.
    pub fn l7_filtered_ports(&self, src: IdentityId, dst: IdentityId) -> PortSet {
        let mut filtered = PortSet::empty();
        if self.l7.is_empty()
            || (!self.has_l7_rules(src, Direction::Egress) && !self.has_l7_rules(dst, Direction::Ingress))
        {
            return filtered;
        }
        let ep = |i: IdentityId| {
            let pod = self.identities[i.index()].pods[0];
            Endpoint::Pod { pod, ip: None }
        };
        let mut allowed = PortSet::all();
        for (subject, dir, peer) in [(src, Direction::Egress, dst), (dst, Direction::Ingress, src)] {
            let with = self.side_ports(subject, dir, &ep(peer), Variant::AsIs);
            if self.has_l7_rules(subject, dir) {
                let without = self.side_ports(subject, dir, &ep(peer), Variant::NoL7);
                filtered.union_with(&with.difference(&without));
            }
            allowed = allowed.intersect(&with);
        }
        filtered.intersect(&allowed)
    }

    /// Whether any rule of identity `i`'s policies in `dir` carries L7 rules.
    pub fn has_l7_rules(&self, i: IdentityId, dir: Direction) -> bool {
        let ident = &self.identities[i.index()];
        let rules = match dir {
            Direction::Ingress => &ident.ingress_rules,
            Direction::Egress => &ident.egress_rules,
        };
        !self.l7.is_empty() && rules.iter().any(|r| self.rules[r.index()].l7.is_some())
    }

    /// The rule that decides one direction of one flow under `variant` (an allow or deny rule, of any tier),
    /// with the verdict; `None` when no rule does (a NetworkPolicy's isolation, or Kubernetes' default).
    pub(crate) fn side_decider(
        &self,
        subject: IdentityId,
        dir: Direction,
        peer: &Endpoint,
        proto: Protocol,
        port: u16,
        variant: Variant,
    ) -> (bool, Option<RuleId>) {
        let ep = self.ep_info(peer);
        let dst = match dir {
            Direction::Ingress => Some(subject),
            Direction::Egress => ep.ident,
        };
        let dst_named = dst.map(|i| self.identities[i.index()].named_ports.as_slice());
        // With `settle`, nothing is consulted after the rule that decides: the last rule hit decides, unless it
        // passes (or only logs) and what follows is a tier's end.
        let mut last = None;
        let me = self.ident_info(subject);
        let allowed = self.fold_side_variant(subject, dir, &mut OnePort, true, true, variant, |r, rule| {
            let hit = rule.ports_match(proto, port, dst_named)
                && rule.local.is_none_or(|l| self.calico_matches(l, &me))
                && (rule.peers.is_empty() || rule.peers.iter().any(|&p| self.peer_matches(p, &me, &ep)));
            if hit && variant.action(r, rule) != Action::Log {
                last = Some(r);
            }
            hit
        });
        let decider = last.filter(|&r| {
            matches!(variant.action(r, &self.rules[r.index()]), Action::Allow | Action::Deny | Action::Reject)
        });
        (allowed, decider)
    }

    /// Decides one direction of one flow at `subject` (verdict and `explain`). `peer` is the other end.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn walk_side<T: Trace>(
        &self,
        subject: IdentityId,
        me: &EpInfo<'_>,
        dir: Direction,
        peer: &EpInfo<'_>,
        q: &Query<'_>,
        trace: &mut T,
    ) -> bool {
        self.fold_side(subject, dir, &mut OnePort, true, !T::EVERY_RULE, |r, rule| {
            self.consult_rule(r, rule, me, peer, q, trace)
        })
    }

    /// Whether one rule matches a flow (`me`: the flow's end on the subject's side, `peer` the other end), as
    /// every walk of one flow consults it; the step is recorded in `trace`.
    #[inline]
    pub(crate) fn consult_rule<T: Trace>(
        &self,
        r: RuleId,
        rule: &CRule,
        me: &EpInfo<'_>,
        peer: &EpInfo<'_>,
        q: &Query<'_>,
        trace: &mut T,
    ) -> bool {
        let ports = rule.ports_match(q.proto, q.port, q.dst_named);
        let local = rule.local.is_none_or(|l| self.calico_matches(l, me));
        let l7 = rule.l7.is_none_or(|i| self.l7_rules(i).allows(q.request));
        let peer = if (ports && local && l7) || T::EVERY_RULE { self.rule_peer::<T>(rule, me, peer) } else { None };
        trace.step(Step { rule: r, ports, peer, local, l7 });
        ports && local && l7 && peer.is_some()
    }

    /// The policies that apply to the pods of identity `i` in `dir`, per tier (tiers with none left out), each
    /// tier's in evaluation order.
    pub fn policies_by_tier(&self, i: IdentityId, dir: Direction) -> Vec<(std::sync::Arc<str>, Vec<PolicyId>)> {
        let ordered = self.evaluation_order(self.identities[i.index()].policies(dir));
        let mut out: Vec<(std::sync::Arc<str>, Vec<PolicyId>)> = Vec::new();
        for (t, tier) in self.tiers.iter().enumerate() {
            let pols: Vec<PolicyId> =
                ordered.iter().copied().filter(|&p| self.policy_tier(p) == TierId::new(t)).collect();
            if !pols.is_empty() {
                out.push((tier.name.clone(), pols));
            }
        }
        out
    }

    /// The rules of the policies `pols` (a subject's, sorted) in direction `dir`, in evaluation order, with
    /// the end of each tier: what a fold over a policy profile walks (the matrix folds profiles, not pods).
    pub fn profile_steps(&self, pols: &[PolicyId], dir: Direction) -> Vec<ProfileStep> {
        let mut out = Vec::new();
        let ordered = self.evaluation_order(pols);
        for (t, tier) in self.tiers.iter().enumerate() {
            let t = TierId::new(t);
            let mut selected = false;
            for &p in ordered.iter().filter(|&&p| self.policy_tier(p) == t) {
                selected = true;
                let (ing, eg) = &self.policy_rules[p.index()];
                let rules = match dir {
                    Direction::Ingress => ing,
                    Direction::Egress => eg,
                };
                out.extend(rules.iter().map(|&r| ProfileStep::Rule(r)));
            }
            out.push(ProfileStep::TierEnd { selected, end: tier.end, hold: tier.hold });
        }
        out
    }

    /// Whether a rule's peers match the pods of identity `i` (at their primary addresses): what a fold over the
    /// pods of a cluster (lint, the matrix's peer signatures) asks of each rule.
    /// The Calico rules of identity `i`'s policies in `dir` whose own-side criteria its pod at `me` (the matrix:
    /// its primary address; the data plane: each address) fails: they do not apply there. Sorted; empty without
    /// such rules.
    pub(crate) fn masked_rules(&self, i: IdentityId, dir: Direction, me: &EpInfo<'_>) -> Vec<RuleId> {
        if !self.calico {
            return Vec::new();
        }
        let ident = &self.identities[i.index()];
        let rules = match dir {
            Direction::Ingress => &ident.ingress_rules,
            Direction::Egress => &ident.egress_rules,
        };
        let mut v: Vec<RuleId> = rules
            .iter()
            .copied()
            .filter(|r| self.rules[r.index()].local.is_some_and(|l| !self.calico_matches(l, me)))
            .collect();
        v.sort_unstable();
        v
    }

    pub(crate) fn rule_matches_identity(&self, rule: &CRule, i: IdentityId) -> bool {
        rule.peers.is_empty()
            || rule.peers.iter().any(|p| match *p {
                crate::compile::CPeer::Sel(s) => self.sel_peers[s.index()].1.contains(i),
                crate::compile::CPeer::Block(b) => {
                    self.ip_classes[(self.identities[i.index()].ip_class).index()].binary_search(&b).is_ok()
                }
                // Node-relative peers are decided per flow (see `Engine::matrix_caveat`).
                crate::compile::CPeer::Domains(_)
                | crate::compile::CPeer::Nothing
                | crate::compile::CPeer::OwnNode
                | crate::compile::CPeer::OtherNodes
                | crate::compile::CPeer::NodeSet(_) => false,
                crate::compile::CPeer::Calico(c) => self.calico_peer_of(c).pods.contains(i),
            })
    }

    /// Which peer of `rule` matches the endpoint (see [`Step::peer`]); without a trace, any matching peer.
    #[inline]
    fn rule_peer<T: Trace>(&self, rule: &CRule, me: &EpInfo<'_>, ep: &EpInfo<'_>) -> Option<Option<usize>> {
        if rule.peers.is_empty() {
            return Some(None);
        }
        if !T::EVERY_RULE {
            return rule.peers.iter().any(|&p| self.peer_matches(p, me, ep)).then_some(Some(0));
        }
        rule.peers
            .iter()
            .zip(&rule.peer_src)
            .filter(|(&p, _)| self.peer_matches(p, me, ep))
            .map(|(_, &src)| src as usize)
            .min()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portset::Protocol;

    fn tcp(lo: u16, hi: u16) -> PortSet {
        PortSet::range(Protocol::Tcp, lo, hi)
    }

    #[test]
    fn allow_rules_of_an_isolating_tier_are_a_union_and_the_rest_is_denied() {
        let mut s = Side::new(&mut Sets, PortSet::all());
        s.rule(&mut Sets, Action::Allow, &tcp(80, 80));
        s.rule(&mut Sets, Action::Allow, &tcp(443, 443));
        s.end_tier(&mut Sets, true, TierEnd::Deny, false);
        assert_eq!(s.finish(&mut Sets), tcp(80, 80).union(&tcp(443, 443)));
    }

    #[test]
    fn a_tier_that_selects_nothing_leaves_everything_allowed() {
        let mut s = Side::new(&mut Sets, PortSet::all());
        s.end_tier(&mut Sets, false, TierEnd::Deny, false);
        assert_eq!(s.finish(&mut Sets), PortSet::all());
    }

    #[test]
    fn the_first_matching_rule_decides() {
        // deny 80, then allow 1-1000: 80 stays denied; the tier continues; the rest is allowed by default.
        let mut s = Side::new(&mut Sets, PortSet::all());
        s.rule(&mut Sets, Action::Deny, &tcp(80, 80));
        s.rule(&mut Sets, Action::Allow, &tcp(1, 1000));
        s.end_tier(&mut Sets, true, TierEnd::Continue, false);
        let allowed = s.finish(&mut Sets);
        assert!(!allowed.contains(Protocol::Tcp, 80));
        assert!(allowed.contains(Protocol::Tcp, 81) && allowed.contains(Protocol::Udp, 80));
    }

    #[test]
    fn passed_traffic_skips_the_tier_default_and_is_decided_by_the_next_tier() {
        let mut s = Side::new(&mut Sets, PortSet::all());
        s.rule(&mut Sets, Action::Pass, &tcp(53, 53));
        s.rule(&mut Sets, Action::Allow, &tcp(1, 100)); // 53 already passed on: not allowed here
        s.end_tier(&mut Sets, true, TierEnd::Deny, false); // everything else undecided is denied
        s.rule(&mut Sets, Action::Deny, &tcp(53, 53));
        s.end_tier(&mut Sets, true, TierEnd::Deny, false);
        assert_eq!(s.finish(&mut Sets), tcp(1, 52).union(&tcp(54, 100)));
    }

    #[test]
    fn log_rules_only_observe() {
        let mut s = Side::new(&mut OnePort, true);
        s.rule(&mut OnePort, Action::Log, &true);
        assert!(s.open(&mut OnePort));
        s.end_tier(&mut OnePort, true, TierEnd::Deny, false);
        assert!(!s.finish(&mut OnePort));
    }

    #[test]
    fn every_domain_folds_alike() {
        // The same rule sequences over one port, port sets and interned port sets: one that starts by passing,
        // one that allows before it denies (the lazy "undecided" becomes explicit), one of allows only.
        let sequences = [
            vec![
                (Action::Pass, tcp(10, 20)),
                (Action::Deny, tcp(15, 30)),
                (Action::Allow, tcp(1, 100)),
                (Action::Log, tcp(1, 5)),
            ],
            vec![
                (Action::Allow, tcp(10, 20)),
                (Action::Deny, tcp(15, 30)),
                (Action::Allow, tcp(25, 40)),
                (Action::Pass, tcp(1, 9)),
            ],
            vec![(Action::Allow, tcp(10, 20)), (Action::Allow, tcp(15, 30))],
        ];
        for (k, steps) in sequences.iter().enumerate() {
            for end in [TierEnd::Deny, TierEnd::Continue] {
                let mut a = Side::new(&mut Sets, PortSet::all());
                let mut ps = PortSets::default();
                let all = ps.intern(PortSet::all());
                let mut b = Side::new(&mut ps, all);
                for (act, ports) in steps {
                    a.rule(&mut Sets, *act, ports);
                    let id = ps.intern(ports.clone());
                    b.rule(&mut ps, *act, &id);
                }
                a.end_tier(&mut Sets, true, end, false);
                b.end_tier(&mut ps, true, end, false);
                let (a, b) = (a.finish(&mut Sets), b.finish(&mut ps));
                assert_eq!(&a, ps.get(b), "sequence {k}");
                for port in 1..=101 {
                    let mut one = Side::new(&mut OnePort, true);
                    for (act, ports) in steps {
                        one.rule(&mut OnePort, *act, &ports.contains(Protocol::Tcp, port));
                    }
                    one.end_tier(&mut OnePort, true, end, false);
                    assert_eq!(one.finish(&mut OnePort), a.contains(Protocol::Tcp, port), "sequence {k} port {port}");
                    // The first matching rule decides a port.
                    let first = steps.iter().find(|(act, p)| *act != Action::Log && p.contains(Protocol::Tcp, port));
                    let expected = match first.map(|(act, _)| *act) {
                        Some(Action::Allow) => true,
                        Some(Action::Deny) => false,
                        _ => end == TierEnd::Continue || first.is_some(),
                    };
                    assert_eq!(a.contains(Protocol::Tcp, port), expected, "sequence {k} port {port} {end:?}");
                }
            }
        }
    }

    /// One tier of a hand-made fold: its rules, its end, and whether it holds passed traffic past its end.
    type TierSteps = (Vec<(Action, PortSet)>, TierEnd, bool);

    /// Antrea's walk of one port, written plainly: the first matching rule decides; a pass skips the rest of its
    /// tier, and the tiers after it while the tier it is in holds it.
    fn naive(tiers: &[TierSteps], port: u16) -> bool {
        let mut passed = false;
        for (rules, end, hold) in tiers {
            if !passed {
                match rules.iter().find(|(a, p)| *a != Action::Log && p.contains(Protocol::Tcp, port)) {
                    Some((Action::Allow, _)) => return true,
                    Some((Action::Deny | Action::Reject, _)) => return false,
                    Some((Action::Pass, _)) => passed = true,
                    _ if *end == TierEnd::Deny => return false,
                    _ => {}
                }
            }
            passed &= *hold;
        }
        true
    }

    /// Folds `tiers` over every domain (port sets, interned port sets, one port at a time), checks they agree
    /// with each other and with [`naive`] on ports 1-120, and returns what the port sets allow.
    fn fold_every_domain(tiers: &[TierSteps]) -> PortSet {
        let mut a = Side::new(&mut Sets, PortSet::all());
        let mut ps = PortSets::default();
        let all = ps.intern(PortSet::all());
        let mut b = Side::new(&mut ps, all);
        for (rules, end, hold) in tiers {
            for (act, ports) in rules {
                a.rule(&mut Sets, *act, ports);
                let id = ps.intern(ports.clone());
                b.rule(&mut ps, *act, &id);
            }
            a.end_tier(&mut Sets, true, *end, *hold);
            b.end_tier(&mut ps, true, *end, *hold);
        }
        let (a, b) = (a.finish(&mut Sets), b.finish(&mut ps));
        assert_eq!(&a, ps.get(b));
        for port in 1..=120 {
            let mut one = Side::new(&mut OnePort, true);
            for (rules, end, hold) in tiers {
                for (act, ports) in rules {
                    one.rule(&mut OnePort, *act, &ports.contains(Protocol::Tcp, port));
                }
                one.end_tier(&mut OnePort, true, *end, *hold);
            }
            let want = naive(tiers, port);
            assert_eq!(one.finish(&mut OnePort), want, "one port {port}");
            assert_eq!(a.contains(Protocol::Tcp, port), want, "port sets {port}");
        }
        a
    }

    #[test]
    fn a_pass_held_across_antrea_tiers_is_decided_by_the_network_policy_tier() {
        let tiers: Vec<TierSteps> = vec![
            // Antrea tier 1 (holds): pass 10-20, reject 30-40, allow 50-60.
            (
                vec![(Action::Pass, tcp(10, 20)), (Action::Reject, tcp(30, 40)), (Action::Allow, tcp(50, 60))],
                TierEnd::Continue,
                true,
            ),
            // Antrea tier 2 (holds): its allow and its deny end do not reach the held 10-20.
            (vec![(Action::Allow, tcp(1, 100)), (Action::Deny, tcp(70, 80))], TierEnd::Deny, true),
            // The last Antrea tier (releases at its end): its deny does not reach the held 10-20 either.
            (vec![(Action::Deny, tcp(1, 200))], TierEnd::Continue, false),
            // The NetworkPolicy tier: allows 10-15 and isolates.
            (vec![(Action::Allow, tcp(10, 15))], TierEnd::Deny, false),
        ];
        let allowed = fold_every_domain(&tiers);
        assert!(allowed.contains(Protocol::Tcp, 10) && allowed.contains(Protocol::Tcp, 15));
        assert!(!allowed.contains(Protocol::Tcp, 16) && !allowed.contains(Protocol::Tcp, 35));
        assert!(allowed.contains(Protocol::Tcp, 55) && allowed.contains(Protocol::Tcp, 75));
        assert!(!allowed.contains(Protocol::Tcp, 101));
        // Held traffic keeps a fold open although nothing is undecided.
        let mut s = Side::new(&mut OnePort, true);
        s.rule(&mut OnePort, Action::Pass, &true);
        s.end_tier(&mut OnePort, true, TierEnd::Deny, true);
        assert!(!s.open(&mut OnePort) && !s.settled(&mut OnePort) && s.holds(&OnePort));
        s.rule(&mut OnePort, Action::Deny, &true); // a later Antrea tier's rule: not for held traffic
        s.end_tier(&mut OnePort, true, TierEnd::Deny, false);
        assert!(s.open(&mut OnePort) && !s.holds(&OnePort));
        assert!(s.finish(&mut OnePort), "released to Kubernetes' default");
    }

    #[test]
    fn a_pass_not_held_goes_on_to_the_next_tier() {
        // Released at the end of its own tier (the next tier has no flag, or is the NetworkPolicy tier).
        let tiers: Vec<TierSteps> = vec![
            (vec![(Action::Pass, tcp(10, 20)), (Action::Deny, tcp(1, 30))], TierEnd::Deny, false),
            (vec![(Action::Reject, tcp(10, 12)), (Action::Allow, tcp(13, 14))], TierEnd::Continue, false),
            (vec![(Action::Allow, tcp(19, 19))], TierEnd::Deny, false),
        ];
        let allowed = fold_every_domain(&tiers);
        assert_eq!(allowed, tcp(13, 14).union(&tcp(19, 19)));
        // Held by the first tier, then released before the last: the second tier's rules are skipped.
        let mut held = tiers.clone();
        held[0].2 = true;
        let allowed = fold_every_domain(&held);
        assert_eq!(allowed, tcp(19, 19));
    }

    #[test]
    fn tiers_hold_passes_only_within_a_run_of_antrea_tiers_before_network_policy() {
        let def = |name: &str, order: f64, flag: bool| TierDef {
            name: name.into(),
            order: Some(order),
            default_action: Action::Pass,
            origin: None,
            pass_to_network_policy: flag,
        };
        let mut defs = TierDef::builtin();
        defs[0].pass_to_network_policy = true; // Admin (order 1,000)
        defs[1].pass_to_network_policy = true; // NetworkPolicy itself: never holds
        defs.push(def("emergency", 50.0, true));
        defs.push(def("securityops", 100.0, true));
        defs.push(def("calico", 500.0, false));
        defs.push(def("application", 2_000.0, true));
        defs.push(def("baseline", 5e6, true));
        let (tiers, _) = tiers(&defs);
        let holds: Vec<(&str, bool)> = tiers.iter().map(|t| (&*t.name, t.hold)).collect();
        assert_eq!(
            holds,
            [
                ("emergency", true),
                ("securityops", false), // the next tier has no flag
                ("calico", false),
                ("Admin", true),
                ("application", false), // the next tier is NetworkPolicy
                ("NetworkPolicy", false),
                ("baseline", false),
                ("Baseline", false),
            ]
        );
        // Without the flag no tier holds: Calico's and the admin tiers' passes go on to the next tier.
        assert!(crate::eval::tiers(&TierDef::builtin()).0.iter().all(|t| !t.hold));
    }

    /// Two AdminNetworkPolicies of equal priority for b/client's egress to a/web: `allow-web` (Allow 8080) and
    /// `deny-a` (Deny everything). netpol applies `allow-web` first (by name).
    fn tied() -> Engine {
        let yaml = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: a}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {containers: [{name: c, ports: [{containerPort: 8080}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: b}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.1.1}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: deny-a}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: b}}}
  egress: [{action: Deny, to: [{namespaces: {matchLabels: {team: a}}}]}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: allow-web}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: b}}}
  egress: [{action: Allow, to: [{namespaces: {matchLabels: {team: a}}}], ports: [{portNumber: {port: 8080}}]}]
"#;
        let loaded = crate::load::load_str("tied.yaml", yaml);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        Engine::new(loaded.cluster)
    }

    #[test]
    fn variants_swap_a_tie_and_override_an_action() {
        let e = tied();
        let c = e.cluster();
        let pod = |ns: &str, name: &str| c.find_pod(ns, name).unwrap_or_default();
        let (client, web) = (pod("b", "client"), pod("a", "web"));
        let subject = e.pod_identity(client);
        let peer = Endpoint::Pod { pod: web, ip: None };
        let (deny, allow) = (PolicyId::new(0), PolicyId::new(1));
        let dir = Direction::Egress;
        // As compiled: 8080 allowed, everything else denied; the Allow rule decides 8080.
        let as_is = e.side_ports(subject, dir, &peer, Variant::AsIs);
        assert_eq!(as_is, tcp(8080, 8080));
        let allow_rule = e.policy_rules(allow, dir)[0];
        let deny_rule = e.policy_rules(deny, dir)[0];
        assert_eq!(e.side_decider(subject, dir, &peer, Protocol::Tcp, 8080, Variant::AsIs), (true, Some(allow_rule)));
        // The other order of the tie: the Deny comes first and decides everything.
        let swapped = Variant::Swap(deny, allow);
        assert!(e.side_ports(subject, dir, &peer, swapped).is_empty());
        assert_eq!(e.side_decider(subject, dir, &peer, Protocol::Tcp, 8080, swapped), (false, Some(deny_rule)));
        // Swapping is symmetric and a no-op on a policy with itself.
        assert!(e.side_ports(subject, dir, &peer, Variant::Swap(allow, deny)).is_empty());
        assert_eq!(e.side_ports(subject, dir, &peer, Variant::Swap(allow, allow)), as_is);
        // The Deny made a Pass: what the Allow leaves undecided goes on, to Kubernetes' default.
        let pass = Variant::Action(deny_rule, Action::Pass);
        assert_eq!(e.side_ports(subject, dir, &peer, pass), PortSet::all());
        assert_eq!(e.side_decider(subject, dir, &peer, Protocol::Udp, 53, pass), (true, None));
        // The Allow made a Deny.
        assert!(e.side_ports(subject, dir, &peer, Variant::Action(allow_rule, Action::Deny)).is_empty());
        // The Admin tier alone: what it allows (Deny end), and all but what it denies (Continue end); the
        // NetworkPolicy tier alone decides nothing here.
        assert_eq!(e.side_ports(subject, dir, &peer, Variant::Tier(TierId(0), TierEnd::Deny)), tcp(8080, 8080));
        assert_eq!(e.side_ports(subject, dir, &peer, Variant::Tier(TierId(0), TierEnd::Continue)), tcp(8080, 8080));
        let np = Variant::Tier(NETWORK_POLICY_TIER, TierEnd::Continue);
        assert_eq!(e.side_ports(subject, dir, &peer, np), PortSet::all());
        // Every variant agrees with the verdict where it changes nothing.
        for port in [1, 8080, 9000] {
            let verdict = e.allowed(&Endpoint::Pod { pod: client, ip: None }, &peer, Protocol::Tcp, port);
            assert_eq!(as_is.contains(Protocol::Tcp, port), verdict, "{port}");
            let (allowed, _) = e.side_decider(subject, dir, &peer, Protocol::Tcp, port, Variant::AsIs);
            assert_eq!(allowed, verdict, "{port}");
        }
    }
}
