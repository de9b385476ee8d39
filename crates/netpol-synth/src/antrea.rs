//! An Antrea (`crd.antrea.io/v1beta1`) variant of the synthetic cluster: what a platform running Antrea layers over
//! the tenants of [`crate::generate_yaml`].
//!
//! [`generate_antrea_yaml`] writes the cluster of [`crate::generate_yaml`] (same namespaces, pods, labels, IPs and
//! NetworkPolicies) with the service accounts and `spec.nodeName`s of the Cilium variant, then, in this order:
//!
//! * the Nodes (`max(2, pods/250)`) and the v1 ServiceAccounts;
//! * 2 custom Tiers, [`ANTREA_TIERS`]: `compliance` (priority 120, between securityops and networkops) and
//!   `team-guard` (230, between platform and application);
//! * exactly `groups` ClusterGroups, 5 kinds in rotation: a team's namespaces (`namespaceSelector`), a team's
//!   databases (`podSelector` and `namespaceSelector`), external networks (`ipBlocks`, public /24s), a team's
//!   guarded set (`childGroups`: the two groups before it), and apps by expression (`matchExpressions` with `In` on
//!   pod and namespace labels);
//! * exactly `policies` Antrea policies, a fifth ClusterNetworkPolicies (ACNP), the rest NetworkPolicies (ANNP)
//!   in about 75% of the tenant namespaces (weights 1 to 4). ACNPs, 10 kinds in rotation over every tier: threat
//!   networks dropped both ways (emergency, groups as `appliedTo` and peers), metadata and SMTP egress closed
//!   (securityops, Drop and Reject, `ipBlock` with `except`), DNS to kube-dns (networkops), dev namespaces kept
//!   out of prod (compliance, with an ICMP echo allowance), scraping and node health checks (platform, per-rule
//!   `appliedTo`, a named port, `nodeSelector`), a team's own traffic passed on to its NetworkPolicies (platform,
//!   Pass, `namespaces.match: Self`; the first of them `sameLabels: [team]`), SaaS egress by `fqdn` (application,
//!   `*.example.com` and `api*.stripe.com`), the guarded databases (team-guard: Allow from the team's group, Reject
//!   the rest), Prometheus by `serviceAccount` (application), and per-namespace isolation (baseline: `Self`
//!   allowed, the rest dropped). ANNPs, 10 kinds in rotation from a per-namespace start: frontends open on `http`,
//!   backends from frontends (per-rule `appliedTo`, Drop the rest), databases (Allow backends, Reject the rest),
//!   namespaced Groups (`appliedTo` and peer, written just before the policy), SMTP egress rejected (`ipBlock` with
//!   `except`), node ports from an env (`endPort`), ICMP echo from the team, egress to the team passed on
//!   (securityops, Pass), HTTP rules on the frontends (`l7Protocols`), and workers' statsd (UDP, Drop of prod from
//!   dev). Priorities are integers and halves, with ties.
//!
//! Every object is one Antrea's admission accepts (antrea-io/antrea `pkg/controller/networkpolicy/validate.go`):
//! the output loads with no diagnostic at all. Like everything in this crate, the output is a pure function of its
//! arguments.

use std::fmt::{self, Write};

use crate::accounts::{write_service_accounts, SA_PROMETHEUS};
use crate::nodes;
use crate::plan::{apportion, team_of, Plan, Tenant, ENVS};
use crate::rng::{Rng, S_ANTREA};
use crate::{write_cluster, ClusterOpts, Params};

/// The custom Tiers written: (name, priority).
pub const ANTREA_TIERS: [(&str, u32); 2] = [("compliance", 120), ("team-guard", 230)];

const API: &str = "apiVersion: crd.antrea.io/v1beta1";
const NS_NAME: &str = "kubernetes.io/metadata.name";
const GROUP_KINDS: usize = 5;
const ACNP_KINDS: usize = 10;
const ANNP_KINDS: usize = 10;

/// The cluster of [`crate::generate_yaml`] for `p`, with service accounts and nodes, plus 2 custom Tiers, `groups`
/// ClusterGroups and `policies` Antrea policies (see the module documentation). The benchmark's `10k+antrea`: the
/// `10k` preset, 1,000 policies, 200 ClusterGroups.
pub fn generate_antrea_yaml(p: &Params, policies: usize, groups: usize) -> String {
    let plan = Plan::new(p);
    let nodes = nodes::count(&plan);
    let mut o = String::with_capacity(
        p.pods * 780 + p.policies * 640 + p.namespaces * 420 + policies * 900 + groups * 250 + nodes * 330 + 4096,
    );
    let opts = ClusterOpts { service_accounts: true, nodes };
    // Writing into a String cannot fail.
    let _ = write_cluster(&mut o, p, &plan, opts)
        .and_then(|()| write_antrea(&mut o, p.seed, &plan, nodes, policies, groups));
    o
}

fn write_antrea(o: &mut String, seed: u64, plan: &Plan, nodes: usize, policies: usize, groups: usize) -> fmt::Result {
    nodes::write_nodes(o, plan, nodes)?;
    write_service_accounts(o, seed, plan)?;
    for (name, priority) in ANTREA_TIERS {
        writeln!(o, "---\n{API}\nkind: Tier\nmetadata:\n  name: {name}\nspec:\n  priority: {priority}")?;
    }
    let fallback;
    let tenants: &[Tenant] = if plan.tenants.is_empty() {
        fallback = [Tenant::monitoring(0)];
        &fallback
    } else {
        &plan.tenants
    };
    let teams = tenants.len().div_ceil(3).max(1);
    for g in 0..groups {
        write_cluster_group(o, g, teams)?;
    }
    let acnps = policies / 5;
    let g = Groups { count: groups };
    for i in 0..acnps {
        let mut r = Rng::new(seed, S_ANTREA, (1u64 << 40) | i as u64);
        write_acnp(o, &mut r, i, teams, g)?;
    }
    let weights = crate::plan::tenant_weights(tenants, seed, S_ANTREA);
    for (t, n) in tenants.iter().zip(apportion(policies - acnps, &weights)) {
        let start = Rng::new(seed, S_ANTREA, (t.index * 4 + 1) as u64).below(ANNP_KINDS);
        for k in 0..n {
            let mut r = Rng::new(seed, S_ANTREA, ((t.index as u64) << 24) | (k as u64 + 2));
            write_annp(o, &mut r, t, (start + k) % ANNP_KINDS, k)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// ClusterGroups.

/// The ClusterGroups written, to pick references of a kind from.
#[derive(Clone, Copy)]
struct Groups {
    count: usize,
}

impl Groups {
    /// The name of a ClusterGroup of `kind` (near `i`), if any was written.
    fn of_kind(self, kind: usize, i: usize) -> Option<String> {
        let rounds = self.count / GROUP_KINDS + usize::from(self.count % GROUP_KINDS > kind);
        (rounds > 0).then(|| group_name(kind + GROUP_KINDS * (i % rounds)))
    }
}

fn group_name(g: usize) -> String {
    let kind = ["team", "team-dbs", "external", "guarded", "apps"][g % GROUP_KINDS];
    format!("cg-{g:04}-{kind}")
}

fn write_cluster_group(o: &mut String, g: usize, teams: usize) -> fmt::Result {
    let team = team_of((g / GROUP_KINDS % teams) * 3);
    writeln!(o, "---\n{API}\nkind: ClusterGroup\nmetadata:\n  name: {}\nspec:", group_name(g))?;
    match g % GROUP_KINDS {
        0 => writeln!(o, "  namespaceSelector:\n    matchLabels:\n      team: {team}"),
        1 => writeln!(
            o,
            "  podSelector:\n    matchLabels:\n      tier: db\n  namespaceSelector:\n    matchLabels:\n      team: {team}"
        ),
        2 => {
            o.push_str("  ipBlocks:\n");
            for j in 0..2 + g % 3 {
                let x = (g * 7 + j * 13) % 250;
                writeln!(o, "  - cidr: {}.{}.{x}.0/24", 11 + (g + j) % 80, (g / 3 + j) % 250)?;
            }
            Ok(())
        }
        // The team group and the databases group written just before.
        3 => writeln!(o, "  childGroups:\n  - {}\n  - {}", group_name(g - 3), group_name(g - 2)),
        _ => writeln!(
            o,
            "  podSelector:\n    matchExpressions:\n    - key: app\n      operator: In\n      values: [api, auth, billing]\n  \
             namespaceSelector:\n    matchExpressions:\n    - key: env\n      operator: In\n      values: [{}, {}]",
            ENVS[g % 3],
            ENVS[(g + 1) % 3]
        ),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Policies.

fn head(o: &mut String, kind: &str, name: &str, ns: Option<&str>, tier: &str, priority: &str) -> fmt::Result {
    writeln!(o, "---\n{API}\nkind: {kind}\nmetadata:\n  name: {name}")?;
    if let Some(ns) = ns {
        writeln!(o, "  namespace: {ns}")?;
    }
    writeln!(o, "spec:\n  tier: {tier}\n  priority: {priority}")
}

/// A priority: an integer from 1 to `n`, or one time in four that plus a half.
fn priority(r: &mut Rng, n: usize) -> String {
    let p = 1 + r.below(n);
    if r.chance(25) {
        format!("{p}.5")
    } else {
        p.to_string()
    }
}

/// A `namespaceSelector` of `team`'s namespaces, after a `- ` already written; `ind` indents the lines after.
fn team_ns(o: &mut String, ind: &str, team: &str) -> fmt::Result {
    writeln!(o, "namespaceSelector:\n{ind}  matchLabels:\n{ind}    team: {team}")
}

fn write_acnp(o: &mut String, r: &mut Rng, i: usize, teams: usize, g: Groups) -> fmt::Result {
    let kind = i % ACNP_KINDS;
    let team = team_of(r.below(teams) * 3);
    let name = format!("acnp-{i:04}-{kind}");
    let prio = priority(r, 20);
    match kind {
        0 => {
            head(o, "ClusterNetworkPolicy", &name, None, "emergency", &prio)?;
            let (Some(subject), Some(bad)) = (g.of_kind(0, i), g.of_kind(2, i)) else {
                // Without groups: the same by selector and CIDR.
                o.push_str("  appliedTo:\n  - podSelector: {}\n");
                return writeln!(
                    o,
                    "  ingress:\n  - action: Drop\n    from:\n    - ipBlock:\n        cidr: 45.{}.0.0/16",
                    i % 250
                );
            };
            writeln!(
                o,
                "  appliedTo:\n  - group: {subject}\n  ingress:\n  - action: Drop\n    name: threats-in\n    from:\n    \
                 - group: {bad}\n  egress:\n  - action: Drop\n    name: threats-out\n    to:\n    - group: {bad}"
            )
        }
        1 => {
            head(o, "ClusterNetworkPolicy", &name, None, "securityops", &prio)?;
            o.push_str(
                "  appliedTo:\n  - podSelector: {}\n  egress:\n  - action: Drop\n    to:\n    - ipBlock:\n        \
                 cidr: 169.254.169.254/32\n  - action: Reject\n    to:\n    - ipBlock:\n        cidr: 0.0.0.0/0\n        \
                 except:\n        - 10.0.0.0/8\n        - 172.16.0.0/12\n    ports:\n    - protocol: TCP\n      port: 25\n",
            );
            Ok(())
        }
        2 => {
            head(o, "ClusterNetworkPolicy", &name, None, "networkops", &prio)?;
            o.push_str("  appliedTo:\n  - ");
            team_ns(o, "    ", &team)?;
            writeln!(
                o,
                "  egress:\n  - action: Allow\n    to:\n    - podSelector:\n        matchLabels:\n          k8s-app: \
                 kube-dns\n      namespaceSelector:\n        matchLabels:\n          {NS_NAME}: kube-system\n    ports:\n    \
                 - protocol: UDP\n      port: 53\n    - protocol: TCP\n      port: 53"
            )
        }
        3 => {
            head(o, "ClusterNetworkPolicy", &name, None, "compliance", &prio)?;
            writeln!(
                o,
                "  appliedTo:\n  - namespaceSelector:\n      matchLabels:\n        env: prod\n        team: {team}\n  \
                 ingress:\n  - action: Allow\n    name: echo\n    protocols:\n    - icmp:\n        icmpType: 8\n        \
                 icmpCode: 0\n    from:\n    - namespaceSelector: {{}}\n  - action: Drop\n    name: no-dev\n    from:\n    \
                 - namespaceSelector:\n        matchLabels:\n          env: dev"
            )
        }
        4 => {
            head(o, "ClusterNetworkPolicy", &name, None, "platform", &prio)?;
            o.push_str("  ingress:\n  - action: Allow\n    appliedTo:\n    - ");
            team_ns(o, "      ", &team)?;
            o.push_str(
                "    from:\n    - podSelector:\n        matchLabels:\n          app: prometheus\n      namespaceSelector:\n        \
                 matchLabels:\n          purpose: monitoring\n    ports:\n    - protocol: TCP\n      port: metrics\n  \
                 - action: Allow\n    appliedTo:\n    - ",
            );
            team_ns(o, "      ", &team)?;
            o.push_str("    from:\n    - nodeSelector: {}\n    ports:\n    - protocol: TCP\n      port: 8081\n");
            Ok(())
        }
        5 => {
            head(o, "ClusterNetworkPolicy", &name, None, "platform", &prio)?;
            o.push_str("  appliedTo:\n  - ");
            team_ns(o, "    ", &team)?;
            let peer = if i == 5 { "sameLabels: [team]" } else { "match: Self" };
            writeln!(
                o,
                "  ingress:\n  - action: Pass\n    from:\n    - namespaces:\n        {peer}\n  egress:\n  - action: Pass\n    \
                 to:\n    - namespaces:\n        {peer}"
            )
        }
        6 => {
            head(o, "ClusterNetworkPolicy", &name, None, "application", &prio)?;
            writeln!(
                o,
                "  appliedTo:\n  - podSelector:\n      matchLabels:\n        tier: frontend\n    namespaceSelector:\n      \
                 matchLabels:\n        team: {team}\n  egress:\n  - action: Allow\n    to:\n    - fqdn: \"*.example.com\"\n    \
                 - fqdn: \"api*.stripe.com\"\n    ports:\n    - protocol: TCP\n      port: 443"
            )
        }
        7 => {
            head(o, "ClusterNetworkPolicy", &name, None, "team-guard", &prio)?;
            let (Some(guarded), Some(team_group)) = (g.of_kind(3, i), g.of_kind(0, i)) else {
                return writeln!(
                    o,
                    "  appliedTo:\n  - podSelector:\n      matchLabels:\n        tier: db\n  ingress:\n  - action: Reject\n    \
                     from:\n    - namespaceSelector:\n        matchLabels:\n          env: dev"
                );
            };
            writeln!(
                o,
                "  appliedTo:\n  - group: {guarded}\n  ingress:\n  - action: Allow\n    from:\n    - group: {team_group}\n  \
                 - action: Reject\n    from:\n    - namespaceSelector: {{}}\n    ports:\n    - protocol: TCP\n      port: 5432"
            )
        }
        8 => {
            head(o, "ClusterNetworkPolicy", &name, None, "application", &prio)?;
            o.push_str("  appliedTo:\n  - ");
            team_ns(o, "    ", &team)?;
            writeln!(
                o,
                "  ingress:\n  - action: Allow\n    from:\n    - serviceAccount:\n        name: {SA_PROMETHEUS}\n        \
                 namespace: monitoring\n    ports:\n    - protocol: TCP\n      port: 9100"
            )
        }
        _ => {
            head(o, "ClusterNetworkPolicy", &name, None, "baseline", &prio)?;
            writeln!(
                o,
                "  appliedTo:\n  - namespaceSelector:\n      matchLabels:\n        team: {team}\n        env: prod\n  \
                 ingress:\n  - action: Allow\n    from:\n    - namespaces:\n        match: Self\n  - action: Drop\n    \
                 from:\n    - namespaceSelector: {{}}"
            )
        }
    }
}

/// A `podSelector` of `key: value`, after a `- ` already written (or an indentation: see [`team_ns`]).
fn pods_of(o: &mut String, ind: &str, key: &str, value: &str) -> fmt::Result {
    writeln!(o, "podSelector:\n{ind}  matchLabels:\n{ind}    {key}: {value}")
}

fn write_annp(o: &mut String, r: &mut Rng, t: &Tenant, kind: usize, k: usize) -> fmt::Result {
    let name = format!("annp-{k:03}-{kind}");
    let ns = Some(t.name.as_str());
    let prio = priority(r, 10);
    let kind_name = "NetworkPolicy";
    match kind {
        0 => {
            head(o, kind_name, &name, ns, "application", &prio)?;
            o.push_str("  appliedTo:\n  - ");
            pods_of(o, "    ", "tier", "frontend")?;
            o.push_str("  ingress:\n  - action: Allow\n    ports:\n    - protocol: TCP\n      port: http\n");
            Ok(())
        }
        1 => {
            head(o, kind_name, &name, ns, "application", &prio)?;
            o.push_str("  ingress:\n  - action: Allow\n    appliedTo:\n    - ");
            pods_of(o, "      ", "tier", "backend")?;
            o.push_str("    from:\n    - ");
            pods_of(o, "      ", "tier", "frontend")?;
            o.push_str("    ports:\n    - protocol: TCP\n      port: grpc\n  - action: Drop\n    appliedTo:\n    - ");
            pods_of(o, "      ", "tier", "backend")?;
            o.push_str("    from:\n    - namespaceSelector: {}\n");
            Ok(())
        }
        2 => {
            head(o, kind_name, &name, ns, "application", &prio)?;
            o.push_str("  appliedTo:\n  - ");
            pods_of(o, "    ", "tier", "db")?;
            o.push_str("  ingress:\n  - action: Allow\n    from:\n    - ");
            pods_of(o, "      ", "tier", "backend")?;
            o.push_str(
                "    ports:\n    - protocol: TCP\n      port: 5432\n  - action: Reject\n    from:\n    - namespaceSelector: {}\n",
            );
            Ok(())
        }
        3 => {
            for (g, tier) in [("backends", "backend"), ("frontends", "frontend")] {
                write!(o, "---\n{API}\nkind: Group\nmetadata:\n  name: {g}-{k}\n  namespace: {}\nspec:\n  ", t.name)?;
                pods_of(o, "  ", "tier", tier)?;
            }
            head(o, kind_name, &name, ns, "application", &prio)?;
            writeln!(
                o,
                "  appliedTo:\n  - group: backends-{k}\n  ingress:\n  - action: Allow\n    from:\n    - group: frontends-{k}\n    \
                 ports:\n    - protocol: TCP\n      port: 9090"
            )
        }
        4 => {
            head(o, kind_name, &name, ns, "securityops", &prio)?;
            o.push_str(
                "  appliedTo:\n  - podSelector: {}\n  egress:\n  - action: Allow\n    to:\n    - ipBlock:\n        \
                 cidr: 10.0.0.0/8\n  - action: Reject\n    to:\n    - ipBlock:\n        cidr: 0.0.0.0/0\n        except:\n        \
                 - 192.168.0.0/16\n    ports:\n    - protocol: TCP\n      port: 25\n",
            );
            Ok(())
        }
        5 => {
            head(o, kind_name, &name, ns, "application", &prio)?;
            writeln!(
                o,
                "  appliedTo:\n  - podSelector: {{}}\n  ingress:\n  - action: Allow\n    from:\n    - namespaceSelector:\n        \
                 matchLabels:\n          env: {}\n    ports:\n    - protocol: TCP\n      port: 30000\n      endPort: {}",
                ENVS[k % 3],
                30000 + 100 * (1 + k % 5)
            )
        }
        6 => {
            head(o, kind_name, &name, ns, "application", &prio)?;
            o.push_str(
                "  appliedTo:\n  - podSelector: {}\n  ingress:\n  - action: Allow\n    protocols:\n    - icmp:\n        \
                 icmpType: 8\n    from:\n    - ",
            );
            team_ns(o, "      ", &t.team)
        }
        7 => {
            head(o, kind_name, &name, ns, "securityops", &prio)?;
            o.push_str("  appliedTo:\n  - podSelector: {}\n  egress:\n  - action: Pass\n    to:\n    - ");
            team_ns(o, "      ", &t.team)
        }
        8 => {
            head(o, kind_name, &name, ns, "application", &prio)?;
            o.push_str("  appliedTo:\n  - ");
            pods_of(o, "    ", "tier", "frontend")?;
            o.push_str(
                "  ingress:\n  - action: Allow\n    ports:\n    - protocol: TCP\n      port: 8080\n    l7Protocols:\n    \
                 - http:\n        method: GET\n        path: /api/*\n    - http:\n        path: /healthz\n",
            );
            Ok(())
        }
        _ => {
            head(o, kind_name, &name, ns, "application", &prio)?;
            o.push_str("  appliedTo:\n  - ");
            pods_of(o, "    ", "tier", "worker")?;
            o.push_str("  egress:\n  - action: Allow\n    to:\n    - ");
            pods_of(o, "      ", "tier", "worker")?;
            o.push_str("    ports:\n    - protocol: UDP\n      port: 8125\n");
            if t.env == "dev" {
                o.push_str(
                    "  - action: Drop\n    to:\n    - namespaceSelector:\n        matchLabels:\n          env: prod\n",
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use netpol_core::model::PolicyKind;

    fn count(y: &str, needle: &str) -> usize {
        y.matches(needle).count()
    }

    /// Loads `generate_antrea_yaml(p, policies, groups)`: no diagnostic at all, every Antrea object there.
    fn check(p: &Params, policies: usize, groups: usize) -> String {
        let y = generate_antrea_yaml(p, policies, groups);
        let loaded = netpol_core::load::load_str("antrea.yaml", &y);
        assert!(loaded.diagnostics.is_empty(), "{:?}", &loaded.diagnostics[..loaded.diagnostics.len().min(5)]);
        assert_eq!(count(&y, "kind: ClusterNetworkPolicy"), policies / 5);
        assert_eq!(count(&y, "kind: ClusterNetworkPolicy") + count(&y, "kind: NetworkPolicy\n"), policies + p.policies);
        assert_eq!(count(&y, "kind: ClusterGroup"), groups);
        let c = &loaded.cluster;
        let objects: std::collections::BTreeSet<(Option<_>, &str)> =
            c.policies.iter().filter(|p| p.kind.is_antrea()).map(|p| (p.ns(), p.name.as_str())).collect();
        assert!(objects.len() <= policies);
        assert_eq!(c.policies.iter().filter(|p| p.kind == PolicyKind::NetworkPolicy).count(), p.policies);
        for (name, _) in ANTREA_TIERS {
            assert!(c.tiers.iter().any(|t| t.name == name), "tier {name}");
        }
        let e = netpol_core::compile::Engine::new(loaded.cluster);
        assert!(e.identities().len() > 1 || p.pods < 2);
        y
    }

    #[test]
    fn deterministic() {
        let p = Params::new(20, 200, 80);
        let y = generate_antrea_yaml(&p, 100, 20);
        assert_eq!(y, generate_antrea_yaml(&p, 100, 20));
        assert_ne!(y, generate_antrea_yaml(&Params { seed: 2, ..p.clone() }, 100, 20));
    }

    #[test]
    fn loads_cleanly_small_and_degenerate() {
        check(&Params::new(20, 200, 80), 300, 40);
        check(&Params { seed: 7, ..Params::new(3, 40, 90) }, 50, 7);
        check(&Params::new(0, 10, 30), 40, 3);
        check(&Params::new(5, 0, 0), 10, 0);
        check(&Params::new(1, 1, 1), 0, 2);
    }

    /// The policy and group counts on the 1k preset, with every feature named in the module documentation.
    #[test]
    fn loads_cleanly_1000_policies_200_groups() {
        let y = check(&Params::preset("1k").unwrap(), 1_000, 200);
        for needle in [
            "tier: emergency",
            "tier: securityops",
            "tier: networkops",
            "tier: compliance",
            "tier: platform",
            "tier: team-guard",
            "tier: application",
            "tier: baseline",
            "action: Allow",
            "action: Drop",
            "action: Reject",
            "action: Pass",
            "childGroups:",
            "ipBlocks:",
            "except:",
            "operator: In",
            "- group: cg-",
            "kind: Group\n",
            "sameLabels: [team]",
            "match: Self",
            "serviceAccount:",
            "nodeSelector: {}",
            "fqdn: \"api*.stripe.com\"",
            "endPort:",
            "icmpType: 8",
            "l7Protocols:",
            "port: metrics",
            "    appliedTo:\n",
            "priority: 1.5",
        ] {
            assert!(y.contains(needle), "`{needle}` missing");
        }
    }
}
