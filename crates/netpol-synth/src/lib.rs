//! Synthetic multi-tenant Kubernetes clusters, as manifest text, for netpol benchmarks and tests.
//!
//! [`generate_yaml`] writes a multi-document YAML stream (`---` separated) of Namespaces, Pods (with
//! `status.podIP`) and NetworkPolicies. The output is a pure function of [`Params`]: the same parameters (seed
//! included) always give byte-identical output, on every platform.
//!
//! # Counts
//!
//! * exactly [`Params::namespaces`] tenant namespaces, plus `kube-system` and `monitoring` (so
//!   `namespaces + 2` Namespace objects);
//! * exactly [`Params::pods`] Pods in total, system pods included;
//! * exactly [`Params::policies`] NetworkPolicies, all in tenant namespaces (in `monitoring` when
//!   `namespaces == 0`).
//!
//! # Shape
//!
//! * `kube-system` runs `2 + pods/10000` CoreDNS pods (`k8s-app: kube-dns`, ports `dns` 53/UDP, `dns-tcp`
//!   53/TCP, `metrics` 9153/TCP); `monitoring` runs `1 + pods/50000` Prometheus pods (`app: prometheus`) and
//!   `pods/250` node-exporter pods with `hostNetwork: true` (port `metrics` 9100/TCP). System pods are taken
//!   from the pod budget first; with no tenant namespaces every remaining pod is a Prometheus replica.
//! * Tenant namespace `k` is `team-NNNN-<env>` with `NNNN = k/3` and env `prod`, `staging`, `dev` in turn,
//!   labelled `team: team-NNNN`, `env: <env>`, `kubernetes.io/metadata.name`, and ~20% `tier-policy: strict`.
//! * Pods are spread unevenly over tenant namespaces (weights vary 1:20). A namespace runs up to 8 apps
//!   (`app: <name>`, `tier: frontend|backend|db|worker`, about half of the non-db apps with `version: v1`, or v1 and v2 groups, `app.kubernetes.io/part-of`);
//!   the replicas of an app share their labels (plus `pod-template-hash`, or `statefulset.kubernetes.io/pod-name`
//!   for the db tier, which runs as a StatefulSet with a metrics exporter sidecar).
//! * Container ports: `http` 8080/TCP, `grpc` 9090/TCP, `metrics` 9100/TCP, `postgres` 5432/TCP, `statsd`
//!   8125/UDP, `diameter` 3868/SCTP, and unnamed 8081/TCP and 7000/TCP.
//! * Pod `i` (in output order) has `status.podIP` `10.a.b.c`, the `i`-th address of 10.0.0.0/8 that does not
//!   end in `.0` or `.255` (so all pod IPs are unique up to [`MAX_UNIQUE_IPS`] pods); ~5% of pods are
//!   dual-stack with a second address in fd00::/64 (`status.podIPs` lists the IPv4 address first).
//! * Policies are spread over tenant namespaces (roughly `policies/namespaces` each, ±40%). A namespace's
//!   policies start with `default-deny-ingress` (~85% of namespaces), `default-deny-egress` (~40%) and
//!   `allow-dns-egress` (~70%; to `kube-system` AND `k8s-app: kube-dns` on 53 UDP+TCP, numbered or named), then
//!   take the following in rotation, from a per-namespace starting point: frontend→backend on `http`/8080,
//!   backend→db on 5432, Prometheus scrape on named port `metrics` (protocol omitted), cross-namespace AND
//!   peers (`team`+`env` namespaceSelector with a podSelector), OR peers, In/NotIn/Exists/DoesNotExist
//!   expressions, egress `ipBlock` 0.0.0.0/0 except 10.0.0.0/8 and 169.254.0.0/16 on 443, ingress from
//!   192.168.0.0/16 except 192.168.1.0/24, port ranges 30000–32767 (TCP and UDP), UDP-only egress to statsd,
//!   SCTP rules, policies without `policyTypes`, IPv6 ipBlocks, allow-same-namespace, `egress: [{}]`,
//!   `namespaceSelector: {}`, `egress: []`, and expression-selected pods. Beyond those, per-app policies
//!   `allow-<app>-<n>` with randomised peers and ports.
//!
//! # Presets
//!
//! | preset | pods    | tenant namespaces | policies |
//! |--------|---------|-------------------|----------|
//! | `1k`   | 1 000   | 100               | 400      |
//! | `10k`  | 10 000  | 1 000             | 8 000    |
//! | `50k`  | 50 000  | 5 000             | 40 000   |
//! | `100k` | 100 000 | 10 000            | 80 000   |
//!
//! See [`Params::preset`]. The `netpol-synth` binary writes the YAML to stdout:
//! `netpol-synth --namespaces 100 --pods 1000 --policies 400 --seed 1` (or `--preset 1k`).
//!
//! # Variants
//!
//! * [`generate_admin_yaml`]: Admin- and Baseline-tier ClusterNetworkPolicies to append (`--admin N --baseline N`).
//! * [`generate_calico_yaml`]: the same cluster with service accounts, plus 5 Calico Tiers, network sets and
//!   Calico NetworkPolicies and GlobalNetworkPolicies over the whole selector grammar (`--calico N
//!   [--calico-cidrs N]`; the benchmark's `10k+calico` is the `10k` preset with 2,000 policies and 10,000 CIDRs).
//! * [`generate_cilium_yaml`]: the same cluster with service accounts and `spec.nodeName`, plus Nodes, the
//!   `default/kubernetes` Service and EndpointSlice (the `kube-apiserver` entity), CiliumNetworkPolicies and
//!   CiliumClusterwideNetworkPolicies (`cilium.io/v2`) over the whole rule language: endpoint selectors with every
//!   operator and label source, entities, CIDRs with exceptions, ports, ranges and protocols, deny rules,
//!   `enableDefaultDeny`, HTTP rules, DNS rules and `toFQDNs` (`--cilium N [--ccnp N] [--http-rules N]`, defaults
//!   50 and 200; the benchmark's `10k+cilium` is the `10k` preset with 2,000 CNPs).
//! * [`generate_antrea_yaml`]: the same cluster with service accounts and `spec.nodeName`, plus Nodes, 2 custom
//!   Tiers, ClusterGroups, Groups, Antrea ClusterNetworkPolicies and NetworkPolicies (`crd.antrea.io/v1beta1`)
//!   over every tier and action (`--antrea N [--antrea-groups N]`, default 200 groups; the benchmark's
//!   `10k+antrea` is the `10k` preset with 1,000 policies and 200 ClusterGroups).

#![forbid(unsafe_code)]

use std::fmt::{self, Write};

mod accounts;
mod admin;
mod antrea;
mod calico;
mod cilium;
mod nodes;
mod plan;
mod policies;
mod rng;
mod yaml;

pub use admin::generate_admin_yaml;
pub use antrea::{generate_antrea_yaml, ANTREA_TIERS};
pub use calico::{generate_calico_yaml, CALICO_TIERS};
pub use cilium::generate_cilium_yaml;
use plan::{App, Plan, Tenant, Tier, METRICS};
use rng::{push_safe, Rng, S_POD, S_SYSTEM};
use yaml::{write_pod, CPort, Container, PodOut};

/// How many pods get distinct IPv4 addresses (254 per /24 of 10.0.0.0/8); beyond this, addresses repeat.
pub const MAX_UNIQUE_IPS: usize = 254 * 65536;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Tenant namespaces (`kube-system` and `monitoring` come on top).
    pub namespaces: usize,
    /// Pods in total, system pods included.
    pub pods: usize,
    /// NetworkPolicies in total.
    pub policies: usize,
    pub seed: u64,
}

impl Params {
    /// Parameters with seed 1.
    pub fn new(namespaces: usize, pods: usize, policies: usize) -> Self {
        Params { namespaces, pods, policies, seed: 1 }
    }

    /// The documented presets: `1k`, `10k`, `50k`, `100k` (seed 1).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "1k" => Some(Params::new(100, 1_000, 400)),
            "10k" => Some(Params::new(1_000, 10_000, 8_000)),
            "50k" => Some(Params::new(5_000, 50_000, 40_000)),
            "100k" => Some(Params::new(10_000, 100_000, 80_000)),
            _ => None,
        }
    }
}

/// Multi-document YAML ("---" separated) with Namespaces, Pods (with status.podIP) and NetworkPolicies.
pub fn generate_yaml(p: &Params) -> String {
    let mut o = String::with_capacity(p.pods * 720 + p.policies * 640 + p.namespaces * 220 + 1024);
    // Writing into a String cannot fail.
    let _ = write_cluster(&mut o, p, &Plan::new(p), ClusterOpts::default());
    o
}

/// What a variant adds to the pods of the cluster of [`generate_yaml`].
#[derive(Clone, Copy, Debug, Default)]
struct ClusterOpts {
    /// Pods of some workloads (and the system pods) get a `spec.serviceAccountName` (see [`accounts`]).
    service_accounts: bool,
    /// Pods get a `spec.nodeName` over this many nodes (see [`nodes`]); 0: no `nodeName`.
    nodes: usize,
}

/// The cluster of [`generate_yaml`], with what `opts` adds to its pods.
fn write_cluster(o: &mut String, p: &Params, plan: &Plan, opts: ClusterOpts) -> fmt::Result {
    write_namespaces(o, plan)?;
    let mut pods = PodWriter {
        seed: p.seed,
        index: 0,
        name: String::with_capacity(64),
        node: String::with_capacity(16),
        service_accounts: opts.service_accounts,
        nodes: opts.nodes,
        exporter: 0,
    };
    pods.system(o, plan)?;
    for t in &plan.tenants {
        for (i, a) in t.apps.iter().enumerate() {
            let sa = (opts.service_accounts && accounts::has_service_account(p.seed, t, i)).then_some(a.name);
            pods.app(o, t, a, sa)?;
        }
    }
    for t in &plan.tenants {
        policies::write_policies(o, p.seed, t, plan.tenants.len())?;
    }
    if plan.system.policies > 0 {
        policies::write_policies(o, p.seed, &Tenant::monitoring(plan.system.policies), 0)?;
    }
    Ok(())
}

const NS_NAME: &str = "kubernetes.io/metadata.name";

fn write_namespaces(o: &mut String, plan: &Plan) -> fmt::Result {
    let head = "---\napiVersion: v1\nkind: Namespace\nmetadata:\n";
    writeln!(o, "{head}  name: kube-system\n  labels:\n    {NS_NAME}: kube-system")?;
    writeln!(o, "{head}  name: monitoring\n  labels:\n    {NS_NAME}: monitoring\n    purpose: monitoring")?;
    for t in &plan.tenants {
        writeln!(
            o,
            "{head}  name: {n}\n  labels:\n    {NS_NAME}: {n}\n    team: {}\n    env: {}",
            t.team,
            t.env,
            n = t.name
        )?;
        if t.strict {
            o.push_str("    tier-policy: strict\n");
        }
    }
    Ok(())
}

const DNS_PORTS: [CPort; 3] = [
    CPort { name: Some("dns"), port: 53, proto: "UDP" },
    CPort { name: Some("dns-tcp"), port: 53, proto: "TCP" },
    CPort { name: Some("metrics"), port: 9153, proto: "TCP" },
];
const PROM_PORTS: [CPort; 1] = [CPort { name: Some("web"), port: 9090, proto: "TCP" }];
const NODE_EXPORTER_PORTS: [CPort; 1] = [METRICS];
const PG_EXPORTER_IMAGE: &str = "quay.io/prometheuscommunity/postgres-exporter:v0.15.0";

/// 27^5: the number of distinct 5-character pod name suffixes.
const SUFFIX_SPACE: u64 = 14_348_907;
const SUFFIX_MULT: u64 = 9_576_757;

struct PodWriter {
    seed: u64,
    /// Global index of the next pod.
    index: usize,
    name: String,
    /// The node of the next pod (when `nodes > 0`).
    node: String,
    /// System pods run as their own service accounts (`coredns`, `prometheus-k8s`, `node-exporter`).
    service_accounts: bool,
    /// Pods are placed on this many nodes (`spec.nodeName`); 0: not placed.
    nodes: usize,
    /// Node exporters written so far: node exporter `k` runs on node `k` (a DaemonSet).
    exporter: usize,
}

impl PodWriter {
    /// Starts the name of the next pod.
    fn name(&mut self) -> &mut String {
        self.name.clear();
        &mut self.name
    }

    /// Appends a 5-character suffix unique to the pod index (a bijection on `0..27^5`).
    fn push_suffix(&mut self) {
        // SUFFIX_MULT is coprime to 27^5, so this is a bijection that spreads consecutive indexes out.
        let v = (self.index as u64 % SUFFIX_SPACE * SUFFIX_MULT + self.seed % SUFFIX_SPACE) % SUFFIX_SPACE;
        push_safe(&mut self.name, v, 5);
    }

    fn emit(
        &mut self,
        o: &mut String,
        ns: &str,
        labels: &[(&str, &str)],
        c: &[Container<'_>],
        host: bool,
        service_account: Option<&str>,
    ) -> fmt::Result {
        let dual_stack = Rng::new(self.seed, S_POD, self.index as u64).chance(5);
        let node = if self.nodes == 0 {
            None
        } else {
            let k = if host { self.exporter } else { nodes::node_of(self.seed, self.index, self.nodes) };
            self.node.clear();
            nodes::push_name(&mut self.node, k)?;
            Some(self.node.as_str())
        };
        if host {
            self.exporter += 1;
        }
        let pod = PodOut {
            ns,
            name: &self.name,
            labels,
            containers: c,
            host_network: host,
            index: self.index,
            dual_stack,
            service_account,
            node,
        };
        write_pod(o, &pod)?;
        self.index += 1;
        Ok(())
    }

    fn system(&mut self, o: &mut String, plan: &Plan) -> fmt::Result {
        let mut r = Rng::new(self.seed, S_SYSTEM, 0);
        let mut hash = String::new();
        push_safe(&mut hash, r.next_u64(), 10);
        let dns = [Container { name: "coredns", image: "registry.k8s.io/coredns/coredns:v1.11.1", ports: &DNS_PORTS }];
        for _ in 0..plan.system.dns {
            write!(self.name(), "coredns-{hash}-")?;
            self.push_suffix();
            let labels = [("k8s-app", "kube-dns"), ("pod-template-hash", hash.as_str())];
            let sa = self.service_accounts.then_some(accounts::SA_COREDNS);
            self.emit(o, "kube-system", &labels, &dns, false, sa)?;
        }
        let prom =
            [Container { name: "prometheus", image: "quay.io/prometheus/prometheus:v2.53.0", ports: &PROM_PORTS }];
        for i in 0..plan.system.prometheus {
            write!(self.name(), "prometheus-k8s-{i}")?;
            let pod_name = self.name.clone();
            let labels = [
                ("app", "prometheus"),
                ("app.kubernetes.io/name", "prometheus"),
                ("statefulset.kubernetes.io/pod-name", pod_name.as_str()),
            ];
            let sa = self.service_accounts.then_some(accounts::SA_PROMETHEUS);
            self.emit(o, "monitoring", &labels, &prom, false, sa)?;
        }
        let ne = [Container {
            name: "node-exporter",
            image: "quay.io/prometheus/node-exporter:v1.8.1",
            ports: &NODE_EXPORTER_PORTS,
        }];
        for _ in 0..plan.system.node_exporters {
            self.name().push_str("node-exporter-");
            self.push_suffix();
            let labels = [("app", "node-exporter"), ("app.kubernetes.io/name", "node-exporter")];
            let sa = self.service_accounts.then_some(accounts::SA_NODE_EXPORTER);
            self.emit(o, "monitoring", &labels, &ne, true, sa)?;
        }
        Ok(())
    }

    fn app(&mut self, o: &mut String, t: &Tenant, a: &App, sa: Option<&str>) -> fmt::Result {
        let v1_count = if a.versions == 2 { (a.replicas * 2).div_ceil(3) } else { a.replicas };
        let exporter = [METRICS];
        for i in 0..a.replicas {
            let g = usize::from(i >= v1_count);
            let hash = a.hashes.get(g).map_or("", String::as_str);
            let image = a.images.get(g).map_or("", String::as_str);
            let version = if g == 0 { "v1" } else { "v2" };
            let main = Container { name: a.name, image, ports: &a.ports };
            if a.tier == Tier::Db {
                write!(self.name(), "{}-{i}", a.name)?;
                let pod_name = self.name.clone();
                let labels = [
                    ("app", a.name),
                    ("tier", a.tier.as_str()),
                    ("statefulset.kubernetes.io/pod-name", pod_name.as_str()),
                    ("app.kubernetes.io/part-of", t.team.as_str()),
                ];
                let cs = [main, Container { name: "exporter", image: PG_EXPORTER_IMAGE, ports: &exporter }];
                self.emit(o, &t.name, &labels, &cs, false, sa)?;
            } else {
                write!(self.name(), "{}-{hash}-", a.name)?;
                self.push_suffix();
                let labels = [
                    ("app", a.name),
                    ("tier", a.tier.as_str()),
                    ("pod-template-hash", hash),
                    ("app.kubernetes.io/part-of", t.team.as_str()),
                    ("version", version),
                ];
                let n = if a.versions > 0 { 5 } else { 4 };
                let labels = labels.get(..n).unwrap_or(&labels);
                self.emit(o, &t.name, labels, &[main], false, sa)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn count_kind(yaml: &str, kind: &str) -> usize {
        let line = format!("kind: {kind}");
        yaml.lines().filter(|l| *l == line).count()
    }

    #[test]
    fn deterministic_for_a_seed() {
        let p = Params::new(20, 200, 80);
        assert_eq!(generate_yaml(&p), generate_yaml(&p));
        let q = Params { seed: 2, ..p.clone() };
        assert_ne!(generate_yaml(&p), generate_yaml(&q));
    }

    #[test]
    fn exact_counts() {
        for (ns, pods, pols) in
            [(20, 200, 80), (100, 1000, 400), (3, 7, 100), (0, 10, 5), (5, 0, 0), (1, 1, 1), (7, 3, 0)]
        {
            let y = generate_yaml(&Params::new(ns, pods, pols));
            assert_eq!(count_kind(&y, "Namespace"), ns + 2, "{ns}/{pods}/{pols}");
            assert_eq!(count_kind(&y, "Pod"), pods, "{ns}/{pods}/{pols}");
            assert_eq!(count_kind(&y, "NetworkPolicy"), pols, "{ns}/{pods}/{pols}");
        }
    }

    #[test]
    fn apportion_is_exact() {
        for total in [0, 1, 7, 1000] {
            let v = plan::apportion(total, &[3, 0, 5, 1]);
            assert_eq!(v.iter().sum::<usize>(), total);
        }
        assert_eq!(plan::apportion(5, &[0, 0]).iter().sum::<usize>(), 5);
    }

    #[test]
    fn ips_are_unique_and_valid() {
        let mut seen = std::collections::HashSet::new();
        for i in (0..300_000).chain(MAX_UNIQUE_IPS - 1000..MAX_UNIQUE_IPS) {
            let mut s = String::new();
            yaml::write_ipv4(&mut s, i).unwrap();
            let ip: std::net::Ipv4Addr = s.parse().unwrap();
            let o = ip.octets();
            assert!(o[0] == 10 && o[3] != 0 && o[3] != 255, "{s}");
            assert!(seen.insert(ip), "{s}");
        }
        let mut s = String::new();
        yaml::write_ipv6(&mut s, 123_456_789).unwrap();
        let ip: std::net::Ipv6Addr = s.parse().unwrap();
        assert_eq!(ip.segments()[..4], [0xfd00, 0, 0, 0]);
    }

    fn check_loads(p: &Params) -> String {
        let yaml = generate_yaml(p);
        let loaded = netpol_core::load::load_str("synth.yaml", &yaml);
        for d in &loaded.diagnostics {
            eprintln!("{d}");
        }
        assert!(loaded.diagnostics.is_empty(), "{} diagnostics", loaded.diagnostics.len());
        assert!(loaded.skipped_kinds.is_empty());
        let c = &loaded.cluster;
        assert_eq!(c.pods.len(), p.pods);
        assert_eq!(c.policies.len(), p.policies);
        assert_eq!(c.namespaces.len(), p.namespaces + 2);
        assert!(c.pods.iter().all(|pod| !pod.ips.is_empty()));
        yaml
    }

    #[test]
    fn loads_cleanly_small() {
        check_loads(&Params::new(20, 200, 80));
        check_loads(&Params { seed: 7, ..Params::new(3, 40, 90) });
        check_loads(&Params::new(0, 10, 30));
    }

    /// Slow in debug builds (the loader checks IP uniqueness pairwise):
    /// `cargo test -p netpol-synth --release -- --ignored`.
    #[test]
    #[ignore]
    fn loads_cleanly_10k_preset() {
        check_loads(&Params::preset("10k").unwrap());
    }

    #[test]
    fn loads_cleanly_1k_preset_with_every_feature() {
        let p = Params::preset("1k").unwrap();
        let yaml = check_loads(&p);
        for name in policies::BASE_NAMES {
            assert!(yaml.contains(&format!("  name: {name}\n")), "policy {name} missing from the 1k preset");
        }
        for needle in [
            "hostNetwork: true",
            "fd00::",
            "endPort: 32767",
            "protocol: SCTP",
            "operator: DoesNotExist",
            "operator: NotIn",
            "tier-policy: strict",
            "version: v2",
            "  egress: []",
            "  - {}",
            "port: dns-tcp",
        ] {
            assert!(yaml.contains(needle), "{needle} missing from the 1k preset");
        }
        let loaded = netpol_core::load::load_str("synth.yaml", &yaml);
        let dual = loaded.cluster.pods.iter().filter(|p| p.ips.len() == 2).count();
        assert!((20..=90).contains(&dual), "{dual} dual-stack pods");
        let host = loaded.cluster.pods.iter().filter(|p| p.host_network).count();
        assert!(host > 0 && host * 100 < p.pods, "{host} hostNetwork pods");
    }
}
