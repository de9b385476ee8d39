//! Service accounts of the cluster's workloads, shared by the variants that name them (Calico, Cilium): about 60%
//! of the workloads, and the system pods, run as their own service account (`spec.serviceAccountName`, the app's
//! name; `coredns`, `prometheus-k8s`, `node-exporter`), each written as a v1 ServiceAccount labelled
//! `app.kubernetes.io/name`, `team`, `role` (the app's tier) and `trust` (`high`, `medium`, `low`).

use std::fmt::{self, Write};

use crate::plan::{Plan, Tenant, Tier};
use crate::rng::{Rng, S_SERVICE_ACCOUNTS};

pub(crate) const SA_COREDNS: &str = "coredns";
pub(crate) const SA_PROMETHEUS: &str = "prometheus-k8s";
pub(crate) const SA_NODE_EXPORTER: &str = "node-exporter";

/// Whether app `app` (its index in `t.apps`) runs as its own service account, and that account's `trust` label.
fn service_account(seed: u64, t: &Tenant, app: usize) -> Option<&'static str> {
    let mut r = Rng::new(seed, S_SERVICE_ACCOUNTS, (t.index * 16 + app) as u64);
    if !r.chance(60) {
        return None;
    }
    let tier = t.apps.get(app).map_or(Tier::Worker, |a| a.tier);
    let x = r.below(100);
    Some(match tier {
        Tier::Db | Tier::Backend if x < 70 => "high",
        Tier::Db | Tier::Backend => "medium",
        Tier::Frontend if x < 50 => "medium",
        Tier::Frontend => "low",
        Tier::Worker if x < 40 => "high",
        Tier::Worker if x < 70 => "medium",
        Tier::Worker => "low",
    })
}

pub(crate) fn has_service_account(seed: u64, t: &Tenant, app: usize) -> bool {
    service_account(seed, t, app).is_some()
}

pub(crate) fn write_service_accounts(o: &mut String, seed: u64, plan: &Plan) -> fmt::Result {
    let head = "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n";
    writeln!(o, "{head}  name: {SA_COREDNS}\n  namespace: kube-system\n  labels:\n    k8s-app: kube-dns")?;
    for name in [SA_PROMETHEUS, SA_NODE_EXPORTER] {
        let app = name.trim_end_matches("-k8s");
        writeln!(o, "{head}  name: {name}\n  namespace: monitoring\n  labels:\n    app: {app}\n    trust: high")?;
    }
    for t in &plan.tenants {
        for (i, a) in t.apps.iter().enumerate() {
            let Some(trust) = service_account(seed, t, i) else { continue };
            writeln!(
                o,
                "{head}  name: {}\n  namespace: {}\n  labels:\n    app.kubernetes.io/name: {}\n    team: {}\n    role: {}\n    trust: {trust}",
                a.name,
                t.name,
                a.name,
                t.team,
                a.tier.as_str()
            )?;
        }
    }
    Ok(())
}
