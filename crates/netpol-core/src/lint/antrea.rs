//! What the Antrea-aware rules share: how a finding names an Antrea object, and whether an `appliedTo` entry or a
//! group peer (as the loader recorded them in [`crate::model::Cluster::antrea_refs`], resolved) matches anything.
//!
//! An Antrea object lowers to one model policy per rule and `appliedTo` entry, with its groups inlined: the rules
//! about entries and groups read the loader's record instead of the split policies, so that each entry is judged
//! once, where the object has it.

use std::collections::HashMap;

use super::{Ctx, Finding, RuleInfo};
use crate::compile::IdentityId;
use crate::model::{AntreaRef, Cluster, Direction, NsId, Peer, PolicyId, PolicyKey};

/// An Antrea object's rule: the object, the direction, the rule's index in it.
pub type RuleKey = (PolicyKey, Direction, u32);

/// The policies each Antrea object's rule lowers to (one per appliedTo entry, and per namespace for `namespaces`
/// peers), by object rule; and each Antrea policy's object rule.
pub struct Splits {
    pub by_rule: HashMap<RuleKey, Vec<PolicyId>>,
    pub key: HashMap<PolicyId, RuleKey>,
}

impl Splits {
    pub fn new(c: &Cluster) -> Splits {
        let mut s = Splits { by_rule: HashMap::new(), key: HashMap::new() };
        for (pid, pol) in c.policies.iter().enumerate().filter(|(_, p)| p.kind.is_antrea()) {
            let pid = PolicyId::new(pid);
            let dir = if pol.affects_ingress { Direction::Ingress } else { Direction::Egress };
            let key = (c.policy_key(pid), dir, pol.position);
            s.by_rule.entry(key.clone()).or_default().push(pid);
            s.key.insert(pid, key);
        }
        s
    }

    /// The policies of `pid`'s object rule (`pid` alone for every other kind).
    pub fn of_rule(&self, pid: PolicyId) -> Vec<PolicyId> {
        self.key.get(&pid).and_then(|k| self.by_rule.get(k)).cloned().unwrap_or_else(|| vec![pid])
    }

    /// The policies of `pid`'s object in direction `dir` (`pid` alone for every other kind).
    pub fn of_object(&self, pid: PolicyId, dir: Direction) -> Vec<PolicyId> {
        match self.key.get(&pid) {
            Some((key, _, _)) => self
                .by_rule
                .iter()
                .filter(|((k, d, _), _)| k == key && *d == dir)
                .flat_map(|(_, v)| v)
                .copied()
                .collect(),
            None => vec![pid],
        }
    }

    /// The identities the rule of `pid` applies to: those of all its object rule's policies (sorted).
    pub fn selected(&self, ctx: &Ctx, pid: PolicyId) -> Vec<IdentityId> {
        let mut ids: Vec<IdentityId> =
            self.of_rule(pid).iter().flat_map(|p| ctx.selected[p.index()].iter().copied()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// `ClusterNetworkPolicy.crd.antrea.io name`, `NetworkPolicy.crd.antrea.io ns/name`: as [`super::Ctx::object_name`]
/// names the object's policies.
pub fn object_name(key: &PolicyKey) -> String {
    match key.namespace.is_empty() {
        true => format!("{} {}", key.kind.as_str(), key.name),
        false => format!("{} {}/{}", key.kind.as_str(), key.namespace, key.name),
    }
}

/// Whether an entry's members match something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matches {
    Something,
    Nothing,
    /// The input cannot tell: the namespaces are named only by name and absent, or have no pod in the input (it
    /// may be one team's manifests).
    Unknown,
}

/// Whether `members` match a pod (hostNetwork pods left out, as selectors leave them) or an address.
pub fn members_match(c: &Cluster, members: &[Peer]) -> Matches {
    let mut unknown = false;
    for m in members {
        let one = match m {
            Peer::Selectors { namespaces, pods } => {
                let nss: Vec<NsId> = (0..c.namespaces.len())
                    .map(NsId::new)
                    .filter(|&n| namespaces.as_ref().is_none_or(|s| s.matches(&c.ns(n).labels)))
                    .collect();
                let by_name = namespaces.as_ref().is_some_and(|s| {
                    !s.requirements().is_empty()
                        && s.requirements().iter().all(|r| r.key() == crate::load::NAMESPACE_NAME_LABEL)
                });
                let visible = c.pods.iter().any(|p| nss.contains(&p.ns));
                let selected =
                    |p: &&crate::model::Pod| nss.contains(&p.ns) && pods.as_ref().is_none_or(|s| s.matches(&p.labels));
                let matched = c.pods.iter().filter(selected).any(|p| !p.host_network);
                // Only hostNetwork pods: NP008's finding, not "nothing".
                let host_only = !matched && c.pods.iter().any(|p| selected(&p));
                match (matched, nss.is_empty()) {
                    (true, _) => Matches::Something,
                    _ if host_only => Matches::Unknown,
                    (false, true) if by_name => Matches::Unknown,
                    (false, false) if !visible => Matches::Unknown,
                    _ => Matches::Nothing,
                }
            }
            Peer::Nodes(sel) => match c.nodes.iter().any(|n| !n.ips.is_empty() && sel.matches(&n.labels)) {
                true => Matches::Something,
                false if c.nodes.is_empty() => Matches::Unknown,
                false => Matches::Nothing,
            },
            Peer::Networks(nets) if nets.is_empty() => Matches::Nothing,
            _ => Matches::Something,
        };
        match one {
            Matches::Something => return Matches::Something,
            Matches::Unknown => unknown = true,
            Matches::Nothing => {}
        }
    }
    if unknown {
        Matches::Unknown
    } else {
        Matches::Nothing
    }
}

/// The kind of group an object references: `ClusterGroup` from an ACNP, `Group` from an ANNP.
pub fn group_kind(r: &AntreaRef) -> &'static str {
    if r.policy.namespace.is_empty() {
        "ClusterGroup"
    } else {
        "Group"
    }
}

/// A finding on an entry of an Antrea object.
pub fn finding(info: &RuleInfo, r: &AntreaRef, message: String, help: impl Into<String>) -> Finding {
    Finding {
        code: info.code,
        rule: info.name,
        severity: info.severity,
        object: object_name(&r.policy),
        origin: Some(r.origin.clone()),
        field: Some(r.field.clone()),
        message,
        help: help.into(),
    }
}
