//! NP022 staged-cuts-allowed-traffic.
//!
//! **What it finds**: Calico staged policies (StagedNetworkPolicy, StagedGlobalNetworkPolicy,
//! StagedKubernetesNetworkPolicy) that, once enforced, would deny traffic between pods that is allowed today.
//! **Why it is bad**: staging a policy is how a change is reviewed before it is enforced; traffic it would cut is
//! what breaks when it is. Sometimes that is the point (a new deny), often it is a selector or a tier order that
//! reaches further than meant.
//! **Instead**: check the flows the finding names (`netpol diff --staged` lists them all, `netpol explain` shows
//! each one's staged verdict); narrow the staged policy, or enforce it knowing what it cuts.
//!
//! How: the enforced cluster against its staged view (`Cluster::with_staged`, what `netpol diff --staged`
//! compares), pod pair by pod pair through [`crate::diff`] (per class, never per pod pair). Each newly denied
//! group is attributed per joint identity of its sources and destinations (pods with the same identity in both
//! views are decided alike): one flow of each is explained in both views, and the staged policies responsible
//! are those of the policies selecting a side the staged view turns from allowed to denied (a `Set` whose policy
//! now selects it, a `Delete` whose policy did). A flow here is a (pod pair, port) with the port one the
//! destination pod declares; pairs cut only on ports no pod declares are counted as pairs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::{Endpoint, Engine, IdentityId};
use crate::diff::{diff, Change, DiffOptions};
use crate::model::{PodId, StagedAction};
use crate::portset::{PortSet, Protocol, MIN_PORT};
use crate::verdict::{Explanation, SideExplanation};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP022",
    name: "staged-cuts-allowed-traffic",
    severity: Severity::Warning,
    explanation: "Enforcing the cluster's Calico staged policies would deny traffic between pods that is allowed \
                  today. Staging is how a change is reviewed before it is enforced; what it cuts is what breaks \
                  when it is. Check the flows (`netpol diff --staged` lists them, `netpol explain` shows each \
                  one's staged verdict), then narrow the staged policy or enforce it knowing what it cuts.",
    check,
};

/// Examples kept per finding.
const EXAMPLES: usize = 3;

/// What one staged policy (or the cluster, when no staged policy can be named) would cut.
#[derive(Default)]
struct Cut {
    /// Ordered pod pairs with at least one port newly denied.
    pairs: u64,
    /// (pod pair, declared port) flows newly denied.
    flows: u64,
    /// Pairs also attributed to other staged policies.
    shared: bool,
    /// `src -> dst port`, sorted, deduplicated.
    examples: BTreeSet<String>,
}

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let enforced = ctx.engine;
    let c = &enforced.cluster;
    if c.staged.is_empty() {
        return;
    }
    let staged = Engine::new(c.with_staged());
    let d = diff(enforced, &staged, &DiffOptions::default());
    // By staged policy index; `None`: not attributable.
    let mut cuts: BTreeMap<Option<usize>, Cut> = BTreeMap::new();
    for g in d.groups.iter().filter(|g| g.change == Change::NewlyDenied) {
        let srcs = by_identities(enforced, &staged, &g.sources);
        let dsts = by_identities(enforced, &staged, &g.destinations);
        for (sk, spods) in &srcs {
            for (dk, dpods) in &dsts {
                // Pairs of distinct pods: a pod is in both lists only when both keys are the same.
                let same = if sk == dk { spods.iter().filter(|p| dpods.contains(p)).count() as u64 } else { 0 };
                let pairs = spods.len() as u64 * dpods.len() as u64 - same;
                if pairs == 0 {
                    continue;
                }
                let Some((s, t)) = spods.iter().find_map(|&s| dpods.iter().find(|&&t| t != s).map(|&t| (s, t))) else {
                    continue;
                };
                // Pods of one identity declare the same ports.
                let served = served_ports(enforced, t, &g.ports);
                let flows = pairs * served.len() as u64;
                let (proto, port) = served
                    .first()
                    .copied()
                    .or_else(|| g.ports.iter().next().map(|r| (r.0, r.1)))
                    .unwrap_or((Protocol::Tcp, MIN_PORT));
                let (se, te) = (Endpoint::Pod { pod: s, ip: None }, Endpoint::Pod { pod: t, ip: None });
                let old = enforced.explain(&se, &te, proto, port);
                let new = staged.explain(&se, &te, proto, port);
                let example = match served.first() {
                    Some(_) => format!("{} -> {} {port}/{proto}", c.pod_ref(s), c.pod_ref(t)),
                    None => format!("{} -> {} {}", c.pod_ref(s), c.pod_ref(t), g.ports),
                };
                let responsible = responsible(c, &old, &new);
                let keys: Vec<Option<usize>> =
                    if responsible.is_empty() { vec![None] } else { responsible.into_iter().map(Some).collect() };
                let shared = keys.len() > 1;
                for k in keys {
                    let cut = cuts.entry(k).or_default();
                    cut.pairs += pairs;
                    cut.flows += flows;
                    cut.shared |= shared;
                    cut.examples.insert(example.clone());
                }
            }
        }
    }
    for (k, cut) in cuts {
        let mut examples: Vec<String> = cut.examples.into_iter().collect();
        let more = examples.len().saturating_sub(EXAMPLES);
        examples.truncate(EXAMPLES);
        let mut e = examples.join(", ");
        if more > 0 {
            e.push_str(&format!(" (+{more} more)"));
        }
        let what = match (cut.flows, cut.pairs) {
            (0, p) => format!("traffic on {p} currently allowed pod pair(s), on ports no destination pod declares"),
            (f, p) => format!("{f} currently allowed flow(s) (pod pair, declared port) on {p} pod pair(s)"),
        };
        let (object, origin, message, help) = match k.and_then(|i| c.staged.get(i)) {
            Some(s) => {
                let verb = if s.action == StagedAction::Delete { "deleting" } else { "enforcing" };
                let together = if cut.shared { ", some together with other staged policies" } else { "" };
                (
                    s.object_ref(),
                    Some(s.policy.origin.clone()),
                    format!("{verb} this staged policy would deny {what}{together}, e.g. {e}"),
                    "review the flows it cuts (`netpol diff --staged`, `netpol explain SRC DST PORT`); narrow its \
                     selectors or rules if they are not meant to be cut",
                )
            }
            None => (
                "staged policies".to_string(),
                None,
                format!("enforcing the staged policies would deny {what}, e.g. {e}"),
                "review the flows they cut with `netpol diff --staged`",
            ),
        };
        out.push(Finding {
            code: RULE.code,
            rule: RULE.name,
            severity: RULE.severity,
            object,
            origin,
            field: None,
            message,
            help: help.to_string(),
        });
    }
}

/// The pods named (`ns/pod`), grouped by their identity in each view, in order of first appearance.
fn by_identities(enforced: &Engine, staged: &Engine, names: &[String]) -> Vec<((IdentityId, IdentityId), Vec<PodId>)> {
    let c = &enforced.cluster;
    let mut at: HashMap<(IdentityId, IdentityId), usize> = HashMap::new();
    let mut out: Vec<((IdentityId, IdentityId), Vec<PodId>)> = Vec::new();
    for name in names {
        let Some((ns, pod)) = name.split_once('/') else { continue };
        let Some(p) = c.find_pod(ns, pod) else { continue };
        let key = (enforced.pod_identity(p), staged.pod_identity(p));
        let i = *at.entry(key).or_insert_with(|| {
            out.push((key, Vec::new()));
            out.len() - 1
        });
        out[i].1.push(p);
    }
    out
}

/// The distinct ports pod `t` declares among `ports`, sorted.
fn served_ports(e: &Engine, t: PodId, ports: &PortSet) -> Vec<(Protocol, u16)> {
    let mut v: Vec<(Protocol, u16)> = e
        .cluster
        .pod(t)
        .ports
        .iter()
        .filter(|p| ports.contains(p.protocol, p.port))
        .map(|p| (p.protocol, p.port))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The staged policies (indexes into `Cluster::staged`) responsible for a flow the staged view denies: for each
/// side it turns from allowed to denied, those whose policy selects that side in either view.
fn responsible(c: &crate::model::Cluster, old: &Explanation, new: &Explanation) -> Vec<usize> {
    let flipped = |o: &SideExplanation, n: &SideExplanation| o.allowed && !n.allowed;
    let mut keys = Vec::new();
    for (o, n) in [(&old.egress, &new.egress), (&old.ingress, &new.ingress)] {
        if flipped(o, n) {
            keys.extend(o.policy_keys.iter().chain(&n.policy_keys));
        }
    }
    c.staged.iter().enumerate().filter(|(_, s)| keys.contains(&&s.key())).map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::with;
    use super::RULE;
    use crate::lint::{Config, Ctx, Finding};

    /// Runs the rule on input that may have warnings (a staged Delete of nothing is one).
    fn lint(yaml: &str) -> Vec<Finding> {
        let loaded = crate::load::load_str("lint.yaml", yaml);
        assert!(
            loaded.diagnostics.iter().all(|d| d.severity == crate::load::Severity::Warning),
            "{:?}",
            loaded.diagnostics
        );
        let e = crate::compile::Engine::new(loaded.cluster);
        let config = Config::default();
        let ctx = Ctx::new(&e, &config);
        let mut out = Vec::new();
        (RULE.check)(&ctx, &mut out);
        out
    }

    /// Ingress of namespace a: web takes client on 8080, db takes web on 5432 (a default deny for ingress).
    const ENFORCED: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: b}}}]
    ports: [{port: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
"#;

    fn cluster(staged: &str) -> String {
        with(&format!("{ENFORCED}---\n{staged}"))
    }

    #[test]
    fn a_staged_deny_is_reported_with_the_flows_it_cuts() {
        let f = lint(&cluster(
            r#"
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: no-b, namespace: a}
spec:
  order: 10
  selector: all()
  types: [Ingress]
  ingress:
  - {action: Deny, source: {namespaceSelector: team == 'b'}}
"#,
        ));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].code, "NP022");
        assert_eq!(f[0].object, "StagedNetworkPolicy a/no-b");
        assert_eq!(f[0].origin.as_ref().map(|o| o.document), Some(8));
        // b/client -> a/web on 8080 is allowed today (a/db is isolated and does not take b/client).
        assert_eq!(
            f[0].message,
            "enforcing this staged policy would deny 1 currently allowed flow(s) (pod pair, declared port) on 1 pod \
             pair(s), e.g. b/client -> a/web 8080/TCP"
        );
    }

    #[test]
    fn a_staged_delete_of_an_allow_is_reported_and_a_staged_replacement_once_per_policy() {
        let f = lint(&cluster(
            r#"
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: db, namespace: a}
spec:
  stagedAction: Set
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: web, namespace: a}
spec:
  stagedAction: Delete
"#,
        ));
        // The replacement of a/db takes nothing any more: a/web -> a/db 5432 is cut, and a/web -> a/db on every
        // other port (no declared port). Deleting a/web's policy opens a/web: nothing is cut by it.
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "StagedKubernetesNetworkPolicy a/db");
        assert!(
            f[0].message.starts_with(
                "enforcing this staged policy would deny 1 currently allowed flow(s) (pod pair, declared port) on 1 \
                 pod pair(s), e.g. a/web -> a/db 5432/TCP"
            ),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn a_staged_delete_that_leaves_a_pod_isolated_is_reported() {
        // Two policies select a/web; deleting the one that allows b/client leaves it isolated by the other.
        let f = lint(&cluster(
            r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-db, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: db}}}]
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: web, namespace: a}
spec:
  stagedAction: Delete
"#,
        ));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "StagedKubernetesNetworkPolicy a/web");
        assert!(
            f[0].message.starts_with("deleting this staged policy would deny 1 currently allowed flow(s)"),
            "{f:?}"
        );
        assert!(f[0].message.ends_with("e.g. b/client -> a/web 8080/TCP"), "{f:?}");
    }

    #[test]
    fn staged_policies_that_cut_nothing_are_not_reported() {
        // No staged policy.
        assert!(lint(&cluster("apiVersion: v1\nkind: Namespace\nmetadata: {name: c}\n")).is_empty());
        // A staged policy that allows more, one that only logs, and a Delete of a policy that is not there.
        let f = lint(&cluster(
            r#"
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: more, namespace: a}
spec:
  order: 10
  selector: all()
  types: [Ingress]
  ingress:
  - {action: Allow, source: {namespaceSelector: team == 'b'}}
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: log}
spec:
  stagedAction: Learn
  selector: all()
  ingress:
  - {action: Log}
  - {action: Pass}
  egress:
  - {action: Log}
  - {action: Pass}
---
apiVersion: projectcalico.org/v3
kind: StagedKubernetesNetworkPolicy
metadata: {name: nothing, namespace: a}
spec:
  stagedAction: Delete
"#,
        ));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn examples_are_bounded_and_counts_cover_every_pair() {
        // A staged default deny for namespace a's ingress and egress in the default tier: everything of a/web
        // and a/db is cut, including a/web -> a/db.
        let f = lint(&cluster(
            r#"
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: lockdown}
spec:
  order: 1
  namespaceSelector: team == 'a'
  selector: all()
  types: [Ingress, Egress]
"#,
        ));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "StagedGlobalNetworkPolicy lockdown");
        assert!(f[0].origin.is_some());
        // Cut: b/client -> a/web (8080), a/web -> a/db (5432), and every egress of a/web and a/db to pods
        // outside a/web -> a/db (to b/client, kube-system/coredns: no declared port but coredns' 53).
        assert!(
            f[0].message.starts_with(
                "enforcing this staged policy would deny 5 currently allowed flow(s) (pod pair, declared port) on 5 \
                 pod pair(s), e.g. "
            ),
            "{}",
            f[0].message
        );
        assert!(f[0].message.ends_with(" (+2 more)"), "{}", f[0].message);
        assert_eq!(f[0].message.matches(" -> ").count(), 3, "{}", f[0].message);
    }
}
