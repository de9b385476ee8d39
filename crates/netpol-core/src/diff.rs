//! Connectivity diff of two policy sets: which pod pairs gain or lose which ports ("what does this change open
//! or close?"), and which pods gain or lose which addresses outside the cluster (see [`OutsideGroup`]; per
//! identity and address segment, from `outside`).
//!
//! Pods are matched by `namespace/name`; only pods present on both sides are compared. Work is done per class,
//! never per pod pair: the old and the new [`Matrix`] each group pods into source and destination classes; the
//! pods are refined into *joint* classes (old class, new class) per role, and each pair of joint classes is
//! compared once (old cell vs new cell). The changed cells are then merged into [`DeltaGroup`]s: first, per
//! joint source class, every joint destination class with the same change and the same ports; then every source
//! class with the same destination list. Each group gets a cause, from [`Engine::explain`] of one representative
//! flow before and after.
//!
//! Both matrices are streamed column by column (never stored by default); the old columns are kept only at the
//! compared source classes, deduplicated and sparse (10k synthetic pods: 665 distinct columns, 174k entries for
//! 9.6 M cells), so a diff costs about two matrix computations.

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;

use rustc_hash::{FxBuildHasher, FxHashMap};
use serde::{Serialize, Serializer};

use crate::compile::{Endpoint, Engine, IdentityId};
use crate::matrix::{Matrix, PortSets, PsId, MAX_STORED_CELLS};
use crate::model::{Direction, HostEndpoint, PodId, PolicyId, PolicyKey};
use crate::outside::{allowed_port_runs, push_ranges, Segments, EXAMPLE_ADDRESSES};
use crate::portset::{PortSet, Protocol, MIN_PORT};
use crate::verdict::{DecidedBy, Explanation, SideExplanation};

/// What to compare.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// Only pods of this namespace (pairs inside it), like `matrix -n`.
    pub namespace: Option<String>,
}

/// The direction of a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Denied before, allowed now.
    NewlyAllowed,
    /// Allowed before, denied now.
    NewlyDenied,
}

/// Pod pairs whose verdict changed the same way on the same ports.
#[derive(Clone, Debug, Serialize)]
pub struct DeltaGroup {
    pub change: Change,
    /// Pods (`ns/pod`), sorted.
    pub sources: Vec<String>,
    /// Pods (`ns/pod`), sorted.
    pub destinations: Vec<String>,
    /// The ports whose verdict changed, for every pair of the group (every source to every other destination).
    #[serde(serialize_with = "ports_text")]
    pub ports: PortSet,
    /// Ordered pairs of distinct pods in the group.
    pub pairs: u64,
    /// Why, for a representative flow: the rule that now allows it, or what now denies it.
    pub cause: String,
    /// `{"old": Explanation, "new": Explanation}` of the representative flow.
    pub cause_detail: serde_json::Value,
}

/// Compared pods whose traffic with addresses outside the cluster changed the same way, on the same addresses
/// and ports.
#[derive(Clone, Debug, Serialize)]
pub struct OutsideGroup {
    pub change: Change,
    /// `egress`: from the pods to the addresses; `ingress`: from the addresses to the pods.
    pub direction: Direction,
    /// Pods (`ns/pod`), sorted.
    pub pods: Vec<String>,
    /// The addresses (CIDRs, or `FIRST-LAST` ranges), merged and sorted by address; addresses that are pods' IPs
    /// are compared as pods, in `groups`.
    pub addresses: Vec<String>,
    #[serde(serialize_with = "ports_text")]
    pub ports: PortSet,
    /// Why, for a representative flow (first pod, an address of the group, a port of the group).
    pub cause: String,
    /// `{"old": Explanation, "new": Explanation}` of the representative flow.
    pub cause_detail: serde_json::Value,
}

/// The connectivity delta between two policy sets.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Diff {
    /// Newly allowed groups first, then newly denied; each sorted by first source, first destination.
    pub groups: Vec<DeltaGroup>,
    /// Changes of traffic between compared pods and addresses outside the cluster (no policy applies on the
    /// address's side): newly allowed first, egress before ingress, then by first pod and address.
    pub outside: Vec<OutsideGroup>,
    /// Pods only in the new set (not compared), sorted.
    pub pods_added: Vec<String>,
    /// Pods only in the old set (not compared), sorted.
    pub pods_removed: Vec<String>,
    /// Ordered pairs of distinct compared pods whose verdict did not change on any port.
    pub unchanged_pairs: u64,
    /// Ordered pairs whose verdict changed on at least one port (a pair with ports opened and others closed
    /// counts once).
    pub changed_pairs: u64,
    /// Calico host endpoints whose object or policies differ: the diff computes no host endpoint flows (see
    /// [`HostEndpointChange`]), so it names what changed for them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_endpoints: Vec<HostEndpointChange>,
    /// Cilium rules whose L7 rules (HTTP, DNS) differ: connectivity (the cells above) is L3/L4, so a change of
    /// what requests a port lets through is listed here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub l7: Vec<L7Change>,
}

/// A Cilium rule (by policy and field path) whose L7 rules differ between the two sides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct L7Change {
    /// The policy, as explanations name it.
    pub policy: String,
    /// The rule's field path (`spec.ingress[0].toPorts[1]`).
    pub rule: String,
    /// `added`, `removed` or `changed`.
    pub what: &'static str,
    /// The rule's L7 rules before and after (absent on the side without the rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

/// The Cilium rules with L7 rules whose L7 rules differ from `old` to `new` (by policy and field path), sorted.
pub fn l7_changes(old: &Engine, new: &Engine) -> Vec<L7Change> {
    let rules = |e: &Engine| -> BTreeMap<(String, String), String> {
        let c = e.cluster();
        let mut out = BTreeMap::new();
        for (i, p) in c.policies.iter().enumerate() {
            for r in p.ingress.iter().chain(&p.egress) {
                if let (Some(l7), Some(name)) = (&r.l7, &r.name) {
                    out.insert((c.policy_ref(PolicyId::new(i)), name.clone()), l7.to_string());
                }
            }
        }
        out
    };
    let (a, b) = (rules(old), rules(new));
    let keys: std::collections::BTreeSet<&(String, String)> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let (o, n) = (a.get(k), b.get(k));
        let what = match (o, n) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(x), Some(y)) if x != y => "changed",
            _ => continue,
        };
        out.push(L7Change { policy: k.0.clone(), rule: k.1.clone(), what, old: o.cloned(), new: n.cloned() });
    }
    out
}

/// A Calico host endpoint whose object or policies differ between the two sides, by name. `explain` and `query`
/// answer its flows on either side; the diff lists what changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostEndpointChange {
    pub host_endpoint: String,
    /// `added`, `removed` or `changed`.
    pub what: &'static str,
    /// What differs: its own fields (`addresses`, `labels`, `profiles`, `ports`, `node`, `interface`), and per
    /// stage and direction the policies that apply: `normal ingress: +gnp/a -gnp/b ~gnp/c` (`~`: the policy
    /// applies on both sides but its spec changed).
    pub changes: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.outside.is_empty()
            && self.pods_added.is_empty()
            && self.pods_removed.is_empty()
            && self.host_endpoints.is_empty()
            && self.l7.is_empty()
    }

    /// Whether anything (between pods, or with outside addresses) is newly allowed.
    pub fn opens_anything(&self) -> bool {
        self.groups.iter().any(|g| g.change == Change::NewlyAllowed)
            || self.outside.iter().any(|g| g.change == Change::NewlyAllowed)
    }

    /// Ordered pairs of distinct compared pods (changed or not).
    pub fn compared_pairs(&self) -> u64 {
        self.unchanged_pairs + self.changed_pairs
    }

    /// Ordered pairs with at least one port newly allowed (`NewlyAllowed`) or newly denied (`NewlyDenied`).
    pub fn pairs(&self, change: Change) -> u64 {
        self.groups.iter().filter(|g| g.change == change).map(|g| g.pairs).sum()
    }
}

fn ports_text<S: Serializer>(p: &PortSet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

/// The ports of `s`'s complement, over the whole port space (ICMP messages included).
pub fn complement(s: &PortSet) -> PortSet {
    PortSet::all().difference(s)
}

/// `a − b`.
pub fn difference(a: &PortSet, b: &PortSet) -> PortSet {
    a.difference(b)
}

/// The host endpoints whose object or policies differ from `old` to `new`, by name, sorted.
pub fn host_endpoint_changes(old: &Engine, new: &Engine) -> Vec<HostEndpointChange> {
    let names: std::collections::BTreeSet<&str> =
        old.cluster.host_endpoints.iter().chain(&new.cluster.host_endpoints).map(|h| h.name.as_str()).collect();
    let mut out = Vec::new();
    for name in names {
        let (o, n) = (old.host_endpoint_named(name), new.host_endpoint_named(name));
        let mut c = HostEndpointChange { host_endpoint: name.to_string(), ..Default::default() };
        match (o, n) {
            (None, Some(_)) => c.what = "added",
            (Some(_), None) => c.what = "removed",
            _ => c.what = "changed",
        }
        if let (Some((_, a)), Some((_, b))) = (o, n) {
            let fields: [(&str, bool); 6] = [
                ("node", a.node != b.node),
                ("interface", a.interface != b.interface),
                ("addresses", old.host_endpoint_addresses(a) != new.host_endpoint_addresses(b)),
                ("labels", a.labels != b.labels),
                ("profiles", a.profiles != b.profiles),
                ("ports", a.ports != b.ports),
            ];
            c.changes.extend(fields.iter().filter(|f| f.1).map(|f| format!("{} changed", f.0)));
        }
        for stage in crate::host::Stage::ALL {
            for dir in [Direction::Ingress, Direction::Egress] {
                let pols = |e: &Engine, h: Option<(usize, &HostEndpoint)>| -> Vec<(String, String)> {
                    h.map(|(i, _)| e.host_stage_policies(i, stage, dir)).unwrap_or_default()
                };
                let (before, after) = (pols(old, o), pols(new, n));
                let mut words = Vec::new();
                for (k, spec) in &after {
                    match before.iter().find(|(bk, _)| bk == k) {
                        None => words.push(format!("+{k}")),
                        Some((_, bs)) if bs != spec => words.push(format!("~{k}")),
                        Some(_) => {}
                    }
                }
                words.extend(
                    before.iter().filter(|(k, _)| !after.iter().any(|(ak, _)| ak == k)).map(|(k, _)| format!("-{k}")),
                );
                if !words.is_empty() {
                    c.changes.push(format!("{} {dir}: {}", stage.as_str(), words.join(" ")));
                }
            }
        }
        if c.what != "changed" || !c.changes.is_empty() {
            out.push(c);
        }
    }
    out
}

/// Computes the connectivity delta from `old` to `new`.
pub fn diff(old: &Engine, new: &Engine, opts: &DiffOptions) -> Diff {
    diff_with_limits(old, new, opts, MAX_STORED_CELLS, DEFAULT_CHUNK_CELLS)
}

/// Old-matrix entries (8 bytes each: 256 MiB) kept per pass.
pub const DEFAULT_CHUNK_CELLS: usize = 32 << 20;

/// [`diff`] with the number of old-matrix entries kept per pass (`chunk_cells`: distinct old columns, sparse), and
/// the matrices' storage limit (see [`Engine::matrix_with_limit`]). One pass streams both matrices column by
/// column. When the old columns exceed `chunk_cells`, the rest wait for further passes; the matrices are then
/// stored if they have at most `max_stored_cells` cells, so that passes do not recompute them. Exposed so that
/// tests can force every path.
pub fn diff_with_limits(
    old: &Engine,
    new: &Engine,
    opts: &DiffOptions,
    max_stored_cells: usize,
    chunk_cells: usize,
) -> Diff {
    let ns = opts.namespace.as_deref();
    let pods = match_pods(old, new, ns);
    let mut d = Diff {
        pods_added: pods.added,
        pods_removed: pods.removed,
        host_endpoints: host_endpoint_changes(old, new),
        l7: l7_changes(old, new),
        ..Diff::default()
    };
    let n = pods.common.len() as u64;
    if n == 0 {
        return d;
    }
    // Matrices are streamed: one pass over each reads every column once, cheaper than storing the cells first.
    // (Both sides have the namespace: a compared pod is in it.)
    let (Ok(mut om), Ok(mut nm)) = (old.matrix_with_limit(ns, 0), new.matrix_with_limit(ns, 0)) else {
        return d;
    };
    let joint = Joint::new(old, new, &om, &nm, &pods.common);
    let mut sets = CommonSets::default();
    let sides = Sides { old, new, ns, max_stored_cells, chunk_cells };
    let cells = compare(&sides, &mut om, &mut nm, &joint, &mut sets);
    d.changed_pairs = cells.changed_pairs;
    d.unchanged_pairs = n * (n - 1) - cells.changed_pairs;

    // Merge source classes with the same (change, ports, destination classes).
    let mut merged: Merged = FxHashMap::default();
    for (js, row) in cells.per_js.into_iter().enumerate() {
        for ((change, ps), (mut jds, pairs)) in row {
            jds.sort_unstable();
            let e = merged.entry((change, ps, jds)).or_default();
            e.0.push(js as u32);
            e.1 += pairs;
        }
    }
    let names: Vec<String> = pods.common.iter().map(|&(_, np)| new.cluster.pod_ref(np)).collect();
    let mut ctx = CauseCtx::new(new);
    let mut groups: Vec<DeltaGroup> = Vec::with_capacity(merged.len());
    for ((change, ps, jds), (jss, pairs)) in merged {
        let members = |classes: &[u32], of: &[Vec<u32>]| -> Vec<u32> {
            let mut v: Vec<u32> = classes.iter().flat_map(|&c| of[c as usize].iter().copied()).collect();
            v.sort_unstable_by(|&a, &b| names[a as usize].cmp(&names[b as usize]));
            v
        };
        let srcs = members(&jss, &joint.js_pods);
        let dsts = members(&jds, &joint.jd_pods);
        let ports = sets.get(ps).clone();
        // The representative flow: the first pair of distinct pods (a group has at least one), preferring a
        // destination that declares a container port among the changed ports, and that port.
        let declares = |t: u32| {
            let p = new.cluster.pod(pods.common[t as usize].1);
            p.ports.iter().find(|c| ports.contains(c.protocol, c.port)).map(|c| (c.protocol, c.port))
        };
        let rep = srcs
            .first()
            .and_then(|&s0| dsts.iter().find(|&&t| t != s0 && declares(t).is_some()).map(|&t| (s0, t)))
            .or_else(|| srcs.iter().find_map(|&s| dsts.iter().find(|&&t| t != s).map(|&t| (s, t))));
        let (cause, cause_detail) = match rep {
            Some((s, t)) => {
                let (os, ns_) = pods.common[s as usize];
                let (ot, nt) = pods.common[t as usize];
                let (proto, port) = declares(t)
                    .or_else(|| ports.iter().next().map(|r| (r.0, r.1)))
                    .unwrap_or((Protocol::Tcp, MIN_PORT));
                let oex = old.explain(&pod_ep(os), &pod_ep(ot), proto, port);
                let nex = new.explain(&pod_ep(ns_), &pod_ep(nt), proto, port);
                ctx.cause_with_detail(change, &oex, &nex)
            }
            _ => (String::new(), serde_json::Value::Null),
        };
        groups.push(DeltaGroup {
            change,
            sources: srcs.iter().map(|&i| names[i as usize].clone()).collect(),
            destinations: dsts.iter().map(|&i| names[i as usize].clone()).collect(),
            ports,
            pairs,
            cause,
            cause_detail,
        });
    }
    groups.sort_by(|a, b| {
        (a.change, a.sources.first(), a.destinations.first(), &a.ports).cmp(&(
            b.change,
            b.sources.first(),
            b.destinations.first(),
            &b.ports,
        ))
    });
    d.groups = groups;
    d.outside = outside_groups(old, new, &pods.common, &names, &mut ctx);
    d
}

/// The outside part of the diff: per joint identity (old identity, new identity) of the compared pods and per
/// direction, the ports gained and lost on each address segment; then merged across pods with the same change.
fn outside_groups(
    old: &Engine,
    new: &Engine,
    common: &[(PodId, PodId)],
    names: &[String],
    ctx: &mut CauseCtx,
) -> Vec<OutsideGroup> {
    let engines = [old, new];
    let segs = Segments::new(&engines);
    let reps: Vec<Option<IpAddr>> = (0..segs.len()).map(|i| segs.outside_address(i, &engines)).collect();
    // Segments that only pods' addresses fill: left out of the groups.
    let no_rep: Vec<usize> = (0..segs.len()).filter(|&i| reps[i].is_none()).collect();
    let examples: Vec<IpAddr> = EXAMPLE_ADDRESSES.iter().filter_map(|a| a.parse().ok()).collect();
    let mut joint: FxHashMap<(IdentityId, IdentityId), Vec<u32>> = FxHashMap::default();
    for (i, &(op, np)) in common.iter().enumerate() {
        joint.entry((old.pod_identity[op.index()], new.pod_identity[np.index()])).or_default().push(i as u32);
    }
    // Allowed ports as runs of segments (one run for identities whose rules use no ipBlock): the comparison of a
    // joint class costs the number of runs, not of segments.
    type Runs = Vec<(usize, PortSet)>;
    let mut old_ports: FxHashMap<(IdentityId, Direction), Runs> = FxHashMap::default();
    let mut new_ports: FxHashMap<(IdentityId, Direction), Runs> = FxHashMap::default();
    // (direction, change, ports, segment ranges) → compared pods.
    type SegRanges = Vec<(usize, usize)>;
    let mut merged: BTreeMap<(Direction, Change, PortSet, SegRanges), Vec<u32>> = BTreeMap::new();
    for ((oi, ni), members) in joint {
        for dir in [Direction::Egress, Direction::Ingress] {
            // An identity is in several joint classes when its pods change differently: compute it once.
            let o = old_ports.entry((oi, dir)).or_insert_with(|| allowed_port_runs(old, oi, dir, &segs));
            let n = new_ports.entry((ni, dir)).or_insert_with(|| allowed_port_runs(new, ni, dir, &segs));
            let (o, n) = (&*o, &*n);
            let mut per: BTreeMap<(Change, PortSet), SegRanges> = BTreeMap::new();
            // Sweep both run lists: on each stretch where both are constant and differ, the ports gained and lost.
            let (mut i, mut j, mut at) = (0, 0, 0);
            while at < segs.len() && i < o.len() && j < n.len() {
                let end = o.get(i + 1).map_or(segs.len(), |r| r.0).min(n.get(j + 1).map_or(segs.len(), |r| r.0));
                if o[i].1 != n[j].1 {
                    for (change, ports) in [
                        (Change::NewlyAllowed, difference(&n[j].1, &o[i].1)),
                        (Change::NewlyDenied, difference(&o[i].1, &n[j].1)),
                    ] {
                        if !ports.is_empty() {
                            push_ranges(per.entry((change, ports)).or_default(), at, end, &no_rep);
                        }
                    }
                }
                at = end;
                if o.get(i + 1).is_some_and(|r| r.0 == at) {
                    i += 1;
                }
                if n.get(j + 1).is_some_and(|r| r.0 == at) {
                    j += 1;
                }
            }
            for ((change, ports), ranges) in per {
                if !ranges.is_empty() {
                    merged.entry((dir, change, ports, ranges)).or_default().extend(&members);
                }
            }
        }
    }
    let mut out: Vec<OutsideGroup> = merged
        .into_iter()
        .map(|((direction, change, ports, ranges), mut members)| {
            let seg_list: Vec<usize> = ranges.iter().flat_map(|&(a, b)| a..b).collect();
            members.sort_unstable_by(|&a, &b| names[a as usize].cmp(&names[b as usize]));
            // The representative flow: the first pod, a documentation address of the group if there is one, a
            // port the pod declares among the changed ones (ingress), else the first changed port.
            let first = members[0] as usize;
            let (op, np) = common[first];
            let doc = seg_list.iter().filter_map(|&i| reps[i]).find(|a| examples.contains(a));
            let address = doc.or_else(|| seg_list.iter().find_map(|&i| reps[i]));
            let declared = new.cluster.pod(np).ports.iter().find(|c| ports.contains(c.protocol, c.port));
            let (proto, port) = match (direction, declared) {
                (Direction::Ingress, Some(c)) => (c.protocol, c.port),
                _ => ports.iter().next().map_or((Protocol::Tcp, MIN_PORT), |r| (r.0, r.1)),
            };
            let (cause, cause_detail) = match address {
                Some(a) => {
                    let x = Endpoint::External(a);
                    let flow = |e: &Engine, p: PodId| match direction {
                        Direction::Egress => e.explain(&pod_ep(p), &x, proto, port),
                        Direction::Ingress => e.explain(&x, &pod_ep(p), proto, port),
                    };
                    let (oex, nex) = (flow(old, op), flow(new, np));
                    ctx.cause_with_detail(change, &oex, &nex)
                }
                None => (String::new(), serde_json::Value::Null),
            };
            OutsideGroup {
                change,
                direction,
                pods: members.iter().map(|&i| names[i as usize].clone()).collect(),
                addresses: segs.text(&seg_list),
                ports,
                cause,
                cause_detail,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let dir = |d: Direction| d == Direction::Ingress;
        (a.change, dir(a.direction), a.pods.first(), a.addresses.first(), &a.ports).cmp(&(
            b.change,
            dir(b.direction),
            b.pods.first(),
            b.addresses.first(),
            &b.ports,
        ))
    });
    out
}

fn pod_ep(pod: PodId) -> Endpoint {
    Endpoint::Pod { pod, ip: None }
}

struct MatchedPods {
    /// (old pod, new pod), in old pod order.
    common: Vec<(PodId, PodId)>,
    added: Vec<String>,
    removed: Vec<String>,
}

fn match_pods(old: &Engine, new: &Engine, ns: Option<&str>) -> MatchedPods {
    let in_scope = |e: &Engine, p: PodId| ns.is_none_or(|n| e.cluster.ns_name(e.cluster.pod(p).ns) == n);
    let mut index: FxHashMap<(&str, &str), PodId> = FxHashMap::default();
    for (i, p) in new.cluster.pods.iter().enumerate() {
        if in_scope(new, PodId::new(i)) {
            index.entry((new.cluster.ns_name(p.ns), p.name.as_str())).or_insert(PodId::new(i));
        }
    }
    let mut matched = vec![false; new.cluster.pods.len()];
    let mut common = Vec::new();
    let mut removed = Vec::new();
    for (i, p) in old.cluster.pods.iter().enumerate() {
        if !in_scope(old, PodId::new(i)) {
            continue;
        }
        match index.get(&(old.cluster.ns_name(p.ns), p.name.as_str())) {
            Some(&np) if !matched[np.index()] => {
                matched[np.index()] = true;
                common.push((PodId::new(i), np));
            }
            _ => removed.push(old.cluster.pod_ref(PodId::new(i))),
        }
    }
    let mut added: Vec<String> = (0..new.cluster.pods.len())
        .map(PodId::new)
        .filter(|&i| in_scope(new, i) && !matched[i.index()])
        .map(|i| new.cluster.pod_ref(i))
        .collect();
    added.sort();
    removed.sort();
    MatchedPods { common, added, removed }
}

/// Joint classes: compared pods with the same (old class, new class), per role.
struct Joint {
    /// (old src class, new src class) of each joint source class.
    js_key: Vec<(u32, u32)>,
    jd_key: Vec<(u32, u32)>,
    /// Compared pods (indexes into the common list) of each joint class.
    js_pods: Vec<Vec<u32>>,
    jd_pods: Vec<Vec<u32>>,
    /// Pods that are in both joint class `js` and `jd`: their self pairs are not pairs.
    self_pairs: FxHashMap<(u32, u32), u64>,
}

impl Joint {
    fn new(old: &Engine, new: &Engine, om: &Matrix, nm: &Matrix, common: &[(PodId, PodId)]) -> Joint {
        let mut j = Joint {
            js_key: Vec::new(),
            jd_key: Vec::new(),
            js_pods: Vec::new(),
            jd_pods: Vec::new(),
            self_pairs: FxHashMap::default(),
        };
        let mut js_index: FxHashMap<(u32, u32), u32> = FxHashMap::default();
        let mut jd_index: FxHashMap<(u32, u32), u32> = FxHashMap::default();
        for (i, &(op, np)) in common.iter().enumerate() {
            let (oi, ni) = (old.pod_identity[op.index()], new.pod_identity[np.index()]);
            let (Some(&os), Some(&ns), Some(&od), Some(&nd)) = (
                om.src_class_of.get(&oi),
                nm.src_class_of.get(&ni),
                om.dst_class_of.get(&oi),
                nm.dst_class_of.get(&ni),
            ) else {
                continue; // every identity in scope is in its matrix
            };
            let js = intern(&mut js_index, &mut j.js_key, &mut j.js_pods, (os, ns));
            let jd = intern(&mut jd_index, &mut j.jd_key, &mut j.jd_pods, (od, nd));
            j.js_pods[js as usize].push(i as u32);
            j.jd_pods[jd as usize].push(i as u32);
            *j.self_pairs.entry((js, jd)).or_default() += 1;
        }
        j
    }
}

fn intern(
    index: &mut FxHashMap<(u32, u32), u32>,
    keys: &mut Vec<(u32, u32)>,
    pods: &mut Vec<Vec<u32>>,
    k: (u32, u32),
) -> u32 {
    *index.entry(k).or_insert_with(|| {
        keys.push(k);
        pods.push(Vec::new());
        (keys.len() - 1) as u32
    })
}

/// Port sets of both matrices in one id space, with memoised deltas.
#[derive(Default)]
struct CommonSets {
    sets: Vec<PortSet>,
    index: FxHashMap<PortSet, u32>,
    /// Matrix port-set id → common id (`u32::MAX`: not mapped yet), per side.
    old_map: Vec<u32>,
    new_map: Vec<u32>,
    /// (old, new) → (gained, lost).
    delta_memo: FxHashMap<(u32, u32), (Option<u32>, Option<u32>)>,
}

impl CommonSets {
    fn intern(&mut self, s: &PortSet) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.sets.len() as u32;
        self.sets.push(s.clone());
        self.index.insert(s.clone(), i);
        i
    }

    fn get(&self, i: u32) -> &PortSet {
        &self.sets[i as usize]
    }

    #[inline]
    fn map(&mut self, new_side: bool, ps: &PortSets, id: PsId) -> u32 {
        let map = if new_side { &mut self.new_map } else { &mut self.old_map };
        if let Some(&c) = map.get(id.index()) {
            if c != u32::MAX {
                return c;
            }
        }
        let c = self.intern(ps.get(id));
        let map = if new_side { &mut self.new_map } else { &mut self.old_map };
        if map.len() <= id.index() {
            map.resize(id.index() + 1, u32::MAX);
        }
        map[id.index()] = c;
        c
    }

    /// Drops one side's id mapping (its matrix was replaced).
    fn forget(&mut self, new_side: bool) {
        if new_side {
            self.new_map.clear();
        } else {
            self.old_map.clear();
        }
    }

    /// (gained = new − old, lost = old − new), `None` when empty.
    fn delta(&mut self, o: u32, n: u32) -> (Option<u32>, Option<u32>) {
        if let Some(&r) = self.delta_memo.get(&(o, n)) {
            return r;
        }
        let (a, b) = (self.get(o).clone(), self.get(n).clone());
        let gained = difference(&b, &a);
        let lost = difference(&a, &b);
        let g = (!gained.is_empty()).then(|| self.intern(&gained));
        let l = (!lost.is_empty()).then(|| self.intern(&lost));
        self.delta_memo.insert((o, n), (g, l));
        (g, l)
    }
}

/// (change, ports, joint destination classes) → (joint source classes, pairs).
type Merged = FxHashMap<(Change, u32, Vec<u32>), (Vec<u32>, u64)>;

/// Per joint source class: (change, ports) → (joint destination classes, pairs).
type Row = FxHashMap<(Change, u32), (Vec<u32>, u64)>;

struct Cells {
    per_js: Vec<Row>,
    changed_pairs: u64,
}

/// Both sides of a comparison and how to compute their matrices.
struct Sides<'a> {
    old: &'a Engine,
    new: &'a Engine,
    ns: Option<&'a str>,
    max_stored_cells: usize,
    chunk_cells: usize,
}

/// An old column at the compared source classes: its most common value and the exceptions (index, value).
#[derive(PartialEq, Eq, Hash)]
struct SparseCol {
    mode: u32,
    except: Vec<(u32, u32)>,
}

impl SparseCol {
    fn new(dense: &[u32], counts: &mut Vec<u32>) -> SparseCol {
        let mut mode = 0;
        for &v in dense {
            if counts.len() <= v as usize {
                counts.resize(v as usize + 1, 0);
            }
            counts[v as usize] += 1;
            if counts[v as usize] > counts[mode as usize] {
                mode = v;
            }
        }
        for &v in dense {
            counts[v as usize] = 0;
        }
        let except = dense.iter().enumerate().filter(|(_, &v)| v != mode).map(|(i, &v)| (i as u32, v)).collect();
        SparseCol { mode, except }
    }
}

/// Compares the old and new cells of every pair of joint classes.
///
/// Each pass streams the old matrix, keeping the columns of the old destination classes in use at the compared
/// source classes (deduplicated, sparse: typically a few percent of the cells), then streams the new matrix and
/// compares every joint destination class whose old column was kept. A column that does not fit `chunk_cells`
/// waits for the next pass; from the second pass on the matrices are stored, when small enough, so that passes
/// do not recompute them.
fn compare(sides: &Sides, om: &mut Matrix, nm: &mut Matrix, j: &Joint, sets: &mut CommonSets) -> Cells {
    let n_js = j.js_key.len();
    // Compact indexes of the old / new source classes that joint source classes use.
    let compact = |keys: Vec<u32>| -> (Vec<u32>, FxHashMap<u32, u32>) {
        let mut v = keys;
        v.sort_unstable();
        v.dedup();
        let idx = v.iter().enumerate().map(|(i, &c)| (c, i as u32)).collect();
        (v, idx)
    };
    let (old_srcs, old_src_idx) = compact(j.js_key.iter().map(|k| k.0).collect());
    let (new_srcs, new_src_idx) = compact(j.js_key.iter().map(|k| k.1).collect());
    let js_o: Vec<u32> = j.js_key.iter().map(|k| old_src_idx.get(&k.0).copied().unwrap_or(0)).collect();
    let js_n: Vec<u32> = j.js_key.iter().map(|k| new_src_idx.get(&k.1).copied().unwrap_or(0)).collect();
    let js_w: Vec<u64> = j.js_pods.iter().map(|p| p.len() as u64).collect();
    let jd_w: Vec<u64> = j.jd_pods.iter().map(|p| p.len() as u64).collect();
    // Joint destination classes by new destination class; the old destination classes still to compare.
    let mut by_nd: Vec<Vec<u32>> = vec![Vec::new(); nm.dst_classes.len()];
    for (jd, &(_, nd)) in j.jd_key.iter().enumerate() {
        if let Some(v) = by_nd.get_mut(nd as usize) {
            v.push(jd as u32);
        }
    }
    let mut pending = vec![false; om.dst_classes.len()];
    for &(od, _) in &j.jd_key {
        if let Some(p) = pending.get_mut(od as usize) {
            *p = true;
        }
    }
    let mut n_pending = pending.iter().filter(|&&p| p).count();

    let mut out = Cells { per_js: (0..n_js).map(|_| Row::default()).collect(), changed_pairs: 0 };
    let n_os = old_srcs.len();
    let mut new_col: Vec<u32> = vec![0; new_srcs.len()];
    let mut dense: Vec<u32> = Vec::with_capacity(n_os);
    let mut counts: Vec<u32> = Vec::new();
    let mut scratch: Vec<u32> = vec![0; n_os];
    let mut passes = 0;
    while n_pending > 0 {
        passes += 1;
        if passes == 2 {
            store_matrices(sides, om, nm, sets);
        }
        // Old columns kept in this pass: old destination class → unique column.
        let mut col_of: FxHashMap<u32, u32> = FxHashMap::default();
        let mut uniq: Vec<SparseCol> = Vec::new();
        // Hash → unique columns with that hash.
        let mut uniq_index: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
        let mut entries = 0usize;
        om.for_each_column(sides.old, |d, col, ps| {
            if !pending[d] {
                return;
            }
            dense.clear();
            dense.extend(old_srcs.iter().map(|&c| sets.map(false, ps, col[c as usize])));
            let sc = SparseCol::new(&dense, &mut counts);
            let h = FxBuildHasher.hash_one(&sc);
            if let Some(&u) = uniq_index.get(&h).and_then(|v| v.iter().find(|&&u| uniq[u as usize] == sc)) {
                col_of.insert(d as u32, u);
                return;
            }
            let cost = sc.except.len() + 1;
            if !uniq.is_empty() && entries + cost > sides.chunk_cells {
                return; // next pass
            }
            entries += cost;
            let u = uniq.len() as u32;
            uniq.push(sc);
            uniq_index.entry(h).or_default().push(u);
            col_of.insert(d as u32, u);
        });
        drop(uniq_index);
        tracing::debug!(pass = passes, columns = col_of.len(), unique = uniq.len(), entries, "diff: old columns kept");
        for &d in col_of.keys() {
            pending[d as usize] = false;
        }
        n_pending -= col_of.len();
        // The dense old column in `scratch`, and which unique column it is.
        let mut current: Option<u32> = None;
        nm.for_each_column(sides.new, |d, col, ps| {
            let jds = &by_nd[d];
            if !jds.iter().any(|&jd| col_of.contains_key(&j.jd_key[jd as usize].0)) {
                return;
            }
            for (k, &c) in new_srcs.iter().enumerate() {
                new_col[k] = sets.map(true, ps, col[c as usize]);
            }
            for &jd in jds {
                let Some(&u) = col_of.get(&j.jd_key[jd as usize].0) else { continue };
                if current != Some(u) {
                    let sc = &uniq[u as usize];
                    match current.map(|c| &uniq[c as usize]) {
                        Some(prev) if prev.mode == sc.mode => {
                            for &(i, _) in &prev.except {
                                scratch[i as usize] = sc.mode;
                            }
                        }
                        _ => scratch.fill(sc.mode),
                    }
                    for &(i, v) in &sc.except {
                        scratch[i as usize] = v;
                    }
                    current = Some(u);
                }
                for js in 0..n_js {
                    let (a, b) = (scratch[js_o[js] as usize], new_col[js_n[js] as usize]);
                    if a == b {
                        continue;
                    }
                    let w = js_w[js] * jd_w[jd as usize] - j.self_pairs.get(&(js as u32, jd)).copied().unwrap_or(0);
                    if w == 0 {
                        continue;
                    }
                    out.changed_pairs += w;
                    let (g, l) = sets.delta(a, b);
                    let row = &mut out.per_js[js];
                    for (change, ps) in [(Change::NewlyAllowed, g), (Change::NewlyDenied, l)] {
                        if let Some(ps) = ps {
                            let e = row.entry((change, ps)).or_default();
                            e.0.push(jd);
                            e.1 += w;
                        }
                    }
                }
            }
        });
    }
    tracing::debug!(passes, "diff: matrices compared");
    out
}

/// Replaces each matrix by its stored version when it has at most `max_stored_cells` cells (the classes are the
/// same: the plan is deterministic, and checked).
fn store_matrices(sides: &Sides, om: &mut Matrix, nm: &mut Matrix, sets: &mut CommonSets) {
    for (e, m, new_side) in [(sides.old, om, false), (sides.new, nm, true)] {
        if m.is_stored() || m.src_classes.len().saturating_mul(m.dst_classes.len()) > sides.max_stored_cells {
            continue;
        }
        if let Ok(stored) = e.matrix_with_limit(sides.ns, sides.max_stored_cells) {
            if stored.src_classes == m.src_classes && stored.dst_classes == m.dst_classes {
                *m = stored;
                // Port-set ids are the new matrix's own.
                sets.forget(new_side);
            }
        }
    }
}

/// Builds cause texts; caches the policies of the new side. Rules and policies are compared by their keys
/// (namespace, name, index), never by their display strings.
struct CauseCtx<'a> {
    new: &'a Engine,
    new_policies: Option<HashSet<PolicyKey>>,
}

impl<'a> CauseCtx<'a> {
    fn new(new: &'a Engine) -> Self {
        CauseCtx { new, new_policies: None }
    }

    fn in_new(&mut self, policy: &PolicyKey) -> bool {
        let new = self.new;
        self.new_policies
            .get_or_insert_with(|| {
                (0..new.cluster.policies.len()).map(|p| new.cluster.policy_key(PolicyId::new(p))).collect()
            })
            .contains(policy)
    }

    /// The cause and `{"old": Explanation, "new": Explanation}` of a representative flow.
    fn cause_with_detail(&mut self, change: Change, o: &Explanation, n: &Explanation) -> (String, serde_json::Value) {
        let mut detail = serde_json::Map::new();
        detail.insert("old".into(), serde_json::to_value(o).unwrap_or_default());
        detail.insert("new".into(), serde_json::to_value(n).unwrap_or_default());
        (self.cause(change, o, n), serde_json::Value::Object(detail))
    }

    fn cause(&mut self, change: Change, o: &Explanation, n: &Explanation) -> String {
        let flow = format!("{}/{}", o.port, o.protocol);
        let parts: Vec<String> = [(&o.egress, &n.egress), (&o.ingress, &n.ingress)]
            .into_iter()
            .filter_map(|(os, ns)| match change {
                Change::NewlyAllowed if !os.allowed && ns.allowed => Some(self.allowed_now(os, ns)),
                Change::NewlyDenied if os.allowed && !ns.allowed => Some(self.denied_now(os, ns, &flow)),
                _ => None,
            })
            .collect();
        if parts.is_empty() {
            // Not expected: the verdict changed, so some side did.
            return format!("{flow}: {} before, {} now", o.verdict.as_str(), n.verdict.as_str());
        }
        parts.join("; ")
    }

    fn allowed_now(&mut self, o: &SideExplanation, n: &SideExplanation) -> String {
        let who = side_name(n);
        if n.decided_by == DecidedBy::Rule {
            if let Some(was) = same_rule_other_action(o, n) {
                return format!("{who} now allowed by {}, whose action was {was}", decider(n));
            }
            return format!("{who} now allowed by {}, which overrides {}", decider(n), decider(o));
        }
        if o.decided_by == DecidedBy::Rule {
            let why = self.gone_why(o, n);
            return format!("{who} no longer denied by {} ({why}); now {}", decider(o), decider(n));
        }
        if !n.isolated {
            let gone: Vec<String> =
                o.policy_keys
                    .iter()
                    .map(|p| {
                        if self.in_new(p) {
                            format!("{p} no longer applies to it")
                        } else {
                            format!("{p} was removed")
                        }
                    })
                    .collect();
            return format!("{who} is not isolated anymore ({})", gone.join(", "));
        }
        let mut s = format!("{who} now allowed by ");
        if let Some(m) = n.allowed_by.first() {
            s.push_str(&rule_text(&m.policy, m.rule, m.peer, m.port.as_deref()));
        }
        if n.allowed_by.len() > 1 {
            s.push_str(&format!(" (and {} more rule(s))", n.allowed_by.len() - 1));
        }
        s
    }

    /// Why the deciding rule of the old side `o` no longer decides in `n`.
    fn gone_why(&mut self, o: &SideExplanation, n: &SideExplanation) -> String {
        let Some(m) = o.walk.last() else { return String::new() };
        if !self.in_new(&m.key.policy) {
            "the policy was removed".to_string()
        } else if !n.policy_keys.contains(&m.key.policy) {
            format!("the policy no longer applies to {}", n.subject)
        } else if let Some(w) = n.walk.iter().find(|w| w.key == m.key && w.action != m.action) {
            format!("its action is now {}", action_text(w))
        } else if let Some(w) =
            n.walk.iter().find(|w| w.key.policy.kind.is_antrea() && w.skipped_tiers.contains(&m.tier))
        {
            // An Antrea Pass of an earlier tier skips the rule's tier now.
            let name = w.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
            format!(
                "the {} policy {} {}{name} (Pass) now passes the flow past tier {}",
                w.tier, w.policy, w.field, m.tier
            )
        } else if n.walk.iter().any(|w| w.key == m.key) {
            "a rule before it decides first".to_string()
        } else {
            "the rule no longer matches, or a rule before it decides first".to_string()
        }
    }

    fn denied_now(&mut self, o: &SideExplanation, n: &SideExplanation, flow: &str) -> String {
        let who = side_name(n);
        if n.decided_by == DecidedBy::Rule {
            if let Some(was) = same_rule_other_action(o, n) {
                return format!("{who} now denied by {}, whose action was {was}", decider(n));
            }
            return format!("{who} now denied by {}, which overrides {}", decider(n), decider(o));
        }
        if o.decided_by == DecidedBy::Rule {
            let why = self.gone_why(o, n);
            return format!("{who} no longer allowed by {} ({why}); now {}", decider(o), decider(n));
        }
        if !o.isolated {
            return format!("{who} is now isolated by {}, and no rule allows {flow}", n.policies.join(", "));
        }
        let reasons: Vec<String> = o
            .allowed_by
            .iter()
            .map(|m| {
                let rule = rule_text(&m.policy, m.rule, m.peer, m.port.as_deref());
                let why = if !self.in_new(&m.key.policy) {
                    "the policy was removed".to_string()
                } else if !n.policy_keys.contains(&m.key.policy) {
                    format!("the policy no longer applies to {}", n.subject)
                } else {
                    match n.rejections.iter().find(|r| r.policy_key == m.key.policy && r.rule == Some(m.key.index)) {
                        Some(r) => format!("it no longer matches: {}", r.reason),
                        None => "the rule was removed".to_string(),
                    }
                };
                format!("{rule}: {why}")
            })
            .collect();
        format!("{who} no longer allowed by {}", reasons.join("; "))
    }
}

/// When both sides were decided by the same rule (of the same policy, at the same index), whose action changed: the
/// old action, in words.
fn same_rule_other_action(o: &SideExplanation, n: &SideExplanation) -> Option<String> {
    let (om, nm) = (o.walk.last()?, n.walk.last()?);
    (o.decided_by == DecidedBy::Rule && om.key == nm.key && om.action != nm.action).then(|| action_text(om))
}

/// A rule's action as its policy's API spells it for Antrea (`Drop`), else as the explanations do (`deny`).
fn action_text(m: &crate::verdict::RuleMatch) -> String {
    if m.key.policy.kind.is_antrea() {
        crate::lint::action_word(m.key.policy.kind, m.action).to_string()
    } else {
        m.action.to_string()
    }
}

/// What decided a side, in words: `the Admin policy anp/x rule 1 "name" (deny)`, `NetworkPolicy ns/p rule 0`,
/// `NetworkPolicy isolation by ns/deny`, `the default (no rule of any tier matches)`; an Antrea rule by its field
/// in the object and its action as Antrea writes it (`the securityops policy acnp/x spec.ingress[1] (Drop)`).
fn decider(s: &SideExplanation) -> String {
    match s.decided_by {
        DecidedBy::NotGoverned => format!("no policy governing {}", s.subject),
        DecidedBy::Default => "the default (no rule of any tier decides: allowed)".to_string(),
        DecidedBy::Profile => format!("the profiles of {}", s.subject),
        DecidedBy::OwnNode => format!("Cilium's access of a pod's own node to {}", s.subject),
        DecidedBy::Rule => match s.walk.last() {
            Some(m) => {
                let name = m.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
                if m.key.policy.kind.is_antrea() {
                    format!("the {} policy {} {}{name} ({})", m.tier, m.policy, m.field, action_text(m))
                } else {
                    format!("the {} policy {} rule {}{name} ({})", m.tier, m.policy, m.rule, m.action)
                }
            }
            None => "a rule".to_string(),
        },
        DecidedBy::TierDefault => {
            format!("the default action (Deny) of tier {}", s.tier_default.as_deref().unwrap_or_default())
        }
        DecidedBy::NetworkPolicy => {
            match s.allowed_by.iter().find(|m| m.key.policy.kind == crate::model::PolicyKind::NetworkPolicy) {
                Some(m) => format!("NetworkPolicy {}", rule_text(&m.policy, m.rule, m.peer, m.port.as_deref())),
                None => {
                    let np: Vec<&str> = s
                        .policies
                        .iter()
                        .zip(&s.policy_keys)
                        .filter(|(_, k)| k.kind == crate::model::PolicyKind::NetworkPolicy)
                        .map(|(p, _)| p.as_str())
                        .collect();
                    format!("NetworkPolicy isolation by {}", np.join(", "))
                }
            }
        }
    }
}

fn side_name(s: &SideExplanation) -> String {
    match s.direction {
        Direction::Egress => format!("egress from {}", s.subject),
        Direction::Ingress => format!("ingress to {}", s.subject),
    }
}

/// `ns/policy rule 0 peer 1 port 8080/TCP`.
fn rule_text(policy: &str, rule: usize, peer: Option<usize>, port: Option<&str>) -> String {
    let peer = peer.map_or("any peer".to_string(), |p| format!("peer {p}"));
    let port = port.map_or("any port".to_string(), |p| format!("port {p}"));
    format!("{policy} rule {rule} {peer} {port}")
}
