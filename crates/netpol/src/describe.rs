//! `netpol describe`: which policies select each pod and whether it is isolated per direction.

use std::io::Write;

use netpol_core::compile::Engine;
use netpol_core::model::{Direction, PodId};
use netpol_core::selector::format_labels;
use serde::Serialize;

use crate::TableOrJson;

#[derive(Serialize)]
struct Side {
    isolated: bool,
    policies: Vec<String>,
}

#[derive(Serialize)]
struct PodInfo {
    pod: String,
    source: String,
    labels: String,
    ips: Vec<String>,
    ports: Vec<String>,
    #[serde(rename = "hostNetwork")]
    host_network: bool,
    ingress: Side,
    egress: Side,
}

fn info(e: &Engine, pod: PodId) -> PodInfo {
    let p = e.cluster.pod(pod);
    let ident = e.identity_of(pod);
    let side = |dir: Direction| Side {
        isolated: ident.isolated(dir),
        policies: ident.policies(dir).iter().map(|&x| e.cluster.policy_ref(x)).collect(),
    };
    PodInfo {
        pod: e.cluster.pod_ref(pod),
        source: p.source.kind.clone(),
        labels: format_labels(&p.labels),
        ips: p.ips.iter().map(|i| i.to_string()).collect(),
        ports: p.ports.iter().map(|c| c.to_string()).collect(),
        host_network: p.host_network,
        ingress: side(Direction::Ingress),
        egress: side(Direction::Egress),
    }
}

fn side_text(s: &Side, host_network: bool) -> String {
    if host_network {
        "not subject (hostNetwork)".to_string()
    } else if s.isolated {
        format!("isolated by {}", s.policies.join(", "))
    } else {
        "not isolated".to_string()
    }
}

pub fn run(
    e: &Engine,
    pod: Option<&str>,
    ns: Option<&str>,
    output: TableOrJson,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let pods: Vec<PodId> = match pod {
        Some(name) => {
            let (pns, pname) = name.split_once('/').unwrap_or((ns.unwrap_or("default"), name));
            let id = e.cluster.find_pod(pns, pname).ok_or_else(|| anyhow::anyhow!("unknown pod `{pns}/{pname}`"))?;
            vec![id]
        }
        None => e
            .sorted_pods()
            .into_iter()
            .filter(|&p| ns.is_none_or(|n| e.cluster.ns_name(e.cluster.pod(p).ns) == n))
            .collect(),
    };
    let infos: Vec<PodInfo> = pods.iter().map(|&p| info(e, p)).collect();
    match output {
        TableOrJson::Json => writeln!(out, "{}", serde_json::to_string_pretty(&infos)?)?,
        TableOrJson::Table if pod.is_some() => {
            for i in &infos {
                writeln!(out, "Pod:      {} ({})", i.pod, i.source)?;
                writeln!(out, "Labels:   {}", i.labels)?;
                writeln!(out, "IPs:      {}", if i.ips.is_empty() { "<none>".into() } else { i.ips.join(", ") })?;
                writeln!(out, "Ports:    {}", if i.ports.is_empty() { "<none>".into() } else { i.ports.join(", ") })?;
                writeln!(out, "Ingress:  {}", side_text(&i.ingress, i.host_network))?;
                writeln!(out, "Egress:   {}", side_text(&i.egress, i.host_network))?;
            }
        }
        TableOrJson::Table => {
            let w = infos.iter().map(|i| i.pod.len()).max().unwrap_or(3).max(3);
            writeln!(out, "{:<w$}  {:<40}  EGRESS", "POD", "INGRESS")?;
            for i in &infos {
                writeln!(
                    out,
                    "{:<w$}  {:<40}  {}",
                    i.pod,
                    side_text(&i.ingress, i.host_network),
                    side_text(&i.egress, i.host_network)
                )?;
            }
        }
    }
    Ok(())
}
