//! The shape of the cluster: how many pods and policies each namespace gets, and which apps run where.

use crate::rng::{push_safe, Rng, S_APPS, S_NAMESPACE, S_POD_WEIGHTS, S_POLICY_WEIGHTS};
use crate::yaml::CPort;
use crate::Params;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tier {
    Frontend,
    Backend,
    Db,
    Worker,
}

impl Tier {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Tier::Frontend => "frontend",
            Tier::Backend => "backend",
            Tier::Db => "db",
            Tier::Worker => "worker",
        }
    }

    fn catalog(self) -> &'static [&'static str] {
        match self {
            Tier::Frontend => &["web", "storefront", "admin-ui", "portal"],
            Tier::Backend => &["api", "auth", "billing", "search", "cart", "catalog", "payments"],
            Tier::Db => &["postgres", "orders-db", "users-db"],
            Tier::Worker => &["worker", "ingest", "mailer", "scheduler"],
        }
    }

    /// Relative replica weight.
    fn weight(self) -> u64 {
        match self {
            Tier::Frontend => 3,
            Tier::Backend => 4,
            Tier::Db => 1,
            Tier::Worker => 2,
        }
    }
}

/// The tiers of a namespace's apps, in the order apps are added as the namespace grows.
const TIER_SEQ: [Tier; 8] =
    [Tier::Frontend, Tier::Backend, Tier::Db, Tier::Worker, Tier::Backend, Tier::Frontend, Tier::Worker, Tier::Backend];

pub(crate) const ENVS: [&str; 3] = ["prod", "staging", "dev"];

pub(crate) const HTTP: CPort = CPort { name: Some("http"), port: 8080, proto: "TCP" };
pub(crate) const GRPC: CPort = CPort { name: Some("grpc"), port: 9090, proto: "TCP" };
pub(crate) const METRICS: CPort = CPort { name: Some("metrics"), port: 9100, proto: "TCP" };
pub(crate) const POSTGRES: CPort = CPort { name: Some("postgres"), port: 5432, proto: "TCP" };
pub(crate) const STATSD: CPort = CPort { name: Some("statsd"), port: 8125, proto: "UDP" };
pub(crate) const DIAMETER: CPort = CPort { name: Some("diameter"), port: 3868, proto: "SCTP" };
pub(crate) const HEALTH: CPort = CPort { name: None, port: 8081, proto: "TCP" };
pub(crate) const WORKER_ADMIN: CPort = CPort { name: None, port: 7000, proto: "TCP" };

/// One app (a Deployment, or a StatefulSet for the db tier) of a tenant namespace.
pub(crate) struct App {
    pub name: &'static str,
    pub tier: Tier,
    pub replicas: usize,
    /// 0: no `version` label; 1: all `version: v1`; 2: a v1 and a v2 group.
    pub versions: u8,
    /// pod-template-hash of the v1 (or only) group and of the v2 group.
    pub hashes: [String; 2],
    /// Image of the v1 (or only) group and of the v2 group.
    pub images: [String; 2],
    /// Ports of the main container.
    pub ports: Vec<CPort>,
}

impl App {
    pub(crate) fn main_port_name(&self) -> &'static str {
        match self.tier {
            Tier::Frontend => "http",
            Tier::Backend => "grpc",
            Tier::Db => "postgres",
            Tier::Worker => "metrics",
        }
    }
}

/// A policy weight per tenant for the variants that spread namespaced policies over namespaces: about a quarter
/// of the namespaces get none, the others 1 to 4 (drawn from `stream`, so each variant has its own spread).
pub(crate) fn tenant_weights(tenants: &[Tenant], seed: u64, stream: u64) -> Vec<u64> {
    tenants
        .iter()
        .map(|t| {
            let mut r = crate::rng::Rng::new(seed, stream, (t.index * 4) as u64);
            if r.chance(25) {
                0
            } else {
                1 + r.below(4) as u64
            }
        })
        .collect()
}

pub(crate) struct Tenant {
    pub index: usize,
    pub name: String,
    pub team: String,
    pub env: &'static str,
    pub strict: bool,
    pub deny_ingress: bool,
    pub deny_egress: bool,
    pub dns: bool,
    pub apps: Vec<App>,
    pub policies: usize,
}

impl Tenant {
    /// The first app of `tier`, or a catalog name (which then selects no pods) when the namespace has none.
    pub(crate) fn app_of(&self, tier: Tier) -> &'static str {
        self.apps
            .iter()
            .find(|a| a.tier == tier)
            .map_or_else(|| tier.catalog().first().copied().unwrap_or("app"), |a| a.name)
    }
}

pub(crate) fn team_of(k: usize) -> String {
    format!("team-{:04}", k / 3)
}

pub(crate) fn env_of(k: usize) -> &'static str {
    ENVS.get(k % 3).copied().unwrap_or("prod")
}

/// Splits `total` exactly over `weights` (largest remainder method).
pub(crate) fn apportion(total: usize, weights: &[u64]) -> Vec<usize> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if weights.is_empty() {
        return Vec::new();
    }
    if sum == 0 {
        return apportion(total, &vec![1; weights.len()]);
    }
    let mut out = Vec::with_capacity(weights.len());
    let mut rems = Vec::with_capacity(weights.len());
    let mut given = 0usize;
    for (i, &w) in weights.iter().enumerate() {
        let x = total as u128 * u128::from(w);
        let q = (x / sum) as usize;
        given += q;
        out.push(q);
        rems.push((x % sum, i));
    }
    rems.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in rems.iter().take(total - given) {
        if let Some(x) = out.get_mut(i) {
            *x += 1;
        }
    }
    out
}

/// System pods.
pub(crate) struct System {
    pub dns: usize,
    pub prometheus: usize,
    pub node_exporters: usize,
    /// Policies placed in `monitoring` (only when there are no tenant namespaces).
    pub policies: usize,
}

pub(crate) struct Plan {
    pub system: System,
    pub tenants: Vec<Tenant>,
}

impl Plan {
    pub(crate) fn new(p: &Params) -> Plan {
        let mut left = p.pods;
        let mut take = |n: usize| {
            let t = n.min(left);
            left -= t;
            t
        };
        let dns = take(2 + p.pods / 10_000);
        let mut prometheus = take(1 + p.pods / 50_000);
        let node_exporters = take(p.pods / 250);
        if p.namespaces == 0 {
            // Nowhere else to put them.
            prometheus += take(usize::MAX);
        }
        let tenant_pods = left;

        let n = p.namespaces;
        let pod_w: Vec<u64> = (0..n)
            .map(|k| {
                let r = Rng::new(p.seed, S_POD_WEIGHTS, k as u64).below(1000) as u64;
                200 + r * r / 250
            })
            .collect();
        let pol_w: Vec<u64> =
            (0..n).map(|k| 600 + Rng::new(p.seed, S_POLICY_WEIGHTS, k as u64).below(800) as u64).collect();
        let pods = apportion(tenant_pods, &pod_w);
        let pols = apportion(p.policies, &pol_w);
        let tenants: Vec<Tenant> = pods
            .iter()
            .zip(&pols)
            .enumerate()
            .map(|(k, (&pods, &policies))| Tenant::new(p.seed, k, pods, policies))
            .collect();
        let system = System { dns, prometheus, node_exporters, policies: if n == 0 { p.policies } else { 0 } };
        Plan { system, tenants }
    }
}

impl Tenant {
    fn new(seed: u64, k: usize, pods: usize, policies: usize) -> Tenant {
        let team = team_of(k);
        let env = env_of(k);
        let name = format!("{team}-{env}");
        let mut r = Rng::new(seed, S_NAMESPACE, k as u64);
        let strict = r.chance(20);
        let deny_ingress = strict || r.chance(80);
        let deny_egress = strict || r.chance(25);
        let dns = deny_egress || r.chance(50);
        let apps = make_apps(seed, k, &team, pods);
        Tenant { index: k, name, team, env, strict, deny_ingress, deny_egress, dns, apps, policies }
    }

    /// A tenant-like context for policies placed in `monitoring` when there are no tenant namespaces.
    pub(crate) fn monitoring(policies: usize) -> Tenant {
        Tenant {
            index: 0,
            name: "monitoring".into(),
            team: "platform".into(),
            env: "prod",
            strict: false,
            deny_ingress: true,
            deny_egress: false,
            dns: true,
            apps: Vec::new(),
            policies,
        }
    }
}

fn make_apps(seed: u64, k: usize, team: &str, pods: usize) -> Vec<App> {
    if pods == 0 {
        return Vec::new();
    }
    let mut r = Rng::new(seed, S_APPS, k as u64);
    let n = pods.div_ceil(3).clamp(1, TIER_SEQ.len()).min(pods);
    let tiers: Vec<Tier> = TIER_SEQ.iter().copied().take(n).collect();
    let weights: Vec<u64> = tiers.iter().map(|t| t.weight()).collect();
    let extra = apportion(pods - n, &weights);
    // Distinct names per tier: walk the catalog from a random start.
    let starts: Vec<usize> =
        [Tier::Frontend, Tier::Backend, Tier::Db, Tier::Worker].iter().map(|t| r.below(t.catalog().len())).collect();
    let mut seen = [0usize; 4];
    let mut apps = Vec::with_capacity(n);
    for (tier, extra) in tiers.into_iter().zip(extra) {
        let ti = tier as usize;
        let cat = tier.catalog();
        let occ = seen.get(ti).copied().unwrap_or(0);
        if let Some(s) = seen.get_mut(ti) {
            *s += 1;
        }
        let start = starts.get(ti).copied().unwrap_or(0);
        let name = cat.get((start + occ) % cat.len()).copied().unwrap_or("app");
        let replicas = 1 + extra;
        let versions = if tier == Tier::Db {
            0
        } else if replicas >= 4 && r.chance(35) {
            2
        } else if r.chance(40) {
            1
        } else {
            0
        };
        let mut hashes = [String::with_capacity(10), String::with_capacity(10)];
        for h in &mut hashes {
            push_safe(h, r.next_u64(), 10);
        }
        let minor = r.below(20);
        let images = [
            format!("registry.example.com/{team}/{name}:1.{minor}.0"),
            format!("registry.example.com/{team}/{name}:1.{}.0", minor + 1),
        ];
        let ports = match tier {
            Tier::Frontend => {
                let mut v = vec![HTTP, METRICS];
                if r.chance(50) {
                    v.push(HEALTH);
                }
                v
            }
            Tier::Backend => {
                let mut v = vec![HTTP, GRPC, METRICS];
                if r.chance(30) {
                    v.push(STATSD);
                }
                if r.chance(10) {
                    v.push(DIAMETER);
                }
                v
            }
            // The metrics port of a db pod is on its exporter sidecar.
            Tier::Db => vec![POSTGRES],
            Tier::Worker => vec![METRICS, STATSD, WORKER_ADMIN],
        };
        apps.push(App { name, tier, replicas, versions, hashes, images, ports });
    }
    apps
}
