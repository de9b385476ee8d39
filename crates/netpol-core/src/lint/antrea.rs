//! What the Antrea-aware rules share: how a finding names an Antrea object, and whether an `appliedTo` entry or a
//! group peer (as the loader recorded them in [`crate::model::Cluster::antrea_refs`], resolved) matches anything.
//!
//! An Antrea object lowers to one model policy per rule and `appliedTo` entry, with its groups inlined: the rules
//! about entries and groups read the loader's record instead of the split policies, so that each entry is judged
//! once, where the object has it.

use super::{Finding, RuleInfo};
use crate::model::{AntreaRef, Cluster, NsId, Peer, PolicyKey};

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
