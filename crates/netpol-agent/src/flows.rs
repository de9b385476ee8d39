//! The agent's flow log and self-check: every new connection (and drop) through the node is traced by the kernel
//! (`netpol_nft::observe`: a table of the agent's, `netpol_trace`, marks `ct state new` packets for `nft monitor
//! trace`), each trace becomes one record with the rules that decided it on this node, written as JSON Lines in
//! netpol's neutral flow schema or as Hubble-compatible JSON (`{"flow": {...}}`), and compared with the engine's
//! verdict of the same flow on this node's sides: a disagreement is counted and logged with both explanations.
//!
//! Both formats are what `netpol flows replay` and `netpol generate` read (tested by reading them back).

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use netpol_core::compile::{Endpoint, Engine, FlowInfo};
use netpol_core::model::Direction;
use netpol_core::portset::Protocol;
use netpol_nft::observe::{trace_on_script, FlowRecord, TraceParser};
use serde_json::{json, Value};

use crate::Programmer;

/// The flow log's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// netpol's neutral flow record (what `netpol flows replay` documents).
    Netpol,
    /// Hubble's `hubble observe -o json` lines.
    Hubble,
}

/// The kernel's verdict of a traced flow on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Allowed,
    Denied,
    /// Audit mode: accepted, but a rule that would drop it logged it.
    WouldDeny,
}

/// What the kernel did, from the record (in audit mode a `np-drop` comment on an accepting rule is a would-be drop).
pub fn kernel_verdict(r: &FlowRecord) -> Kernel {
    if r.verdict == "deny" {
        Kernel::Denied
    } else if r.allowed_by.iter().any(|c| c.starts_with("np-drop")) {
        Kernel::WouldDeny
    } else {
        Kernel::Allowed
    }
}

/// UTC time as RFC 3339 with microseconds, from the system clock.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// The engine's verdict of the flow on this node's sides (the egress of a local source, the ingress of a local
/// destination: `local`, the node's pod addresses), and the explanation; `None` when the flow is not judged here (no local side, no port).
pub fn engine_verdict(engine: &Engine, local: &BTreeSet<IpAddr>, r: &FlowRecord) -> Option<(bool, String)> {
    let proto = Protocol::parse_loose(&r.protocol).filter(|p| p.has_ports())?;
    let port = r.port?;
    let (src_ip, dst_ip) = (r.src.parse().ok()?, r.dst.parse().ok()?);
    let (src_local, dst_local) = (local.contains(&src_ip), local.contains(&dst_ip));
    if !src_local && !dst_local {
        return None;
    }
    let (s, d) = (engine.endpoint_for_ip(src_ip), engine.endpoint_for_ip(dst_ip));
    let side = |dir| engine.allowed_direction(&s, &d, FlowInfo::default(), proto, port, dir);
    let allowed = (!src_local || side(Direction::Egress)) && (!dst_local || side(Direction::Ingress));
    Some((allowed, engine.explain(&s, &d, proto, port).render()))
}

fn end(engine: Option<&Engine>, ip: &str, hubble: bool) -> Value {
    let pod = engine.and_then(|e| ip.parse().ok().map(|a| (e, e.endpoint_for_ip(a))));
    match pod {
        Some((e, Endpoint::Pod { pod, .. })) => {
            let p = e.cluster().pod(pod);
            let ns = &e.cluster().ns(p.ns).name;
            if hubble {
                let mut labels: Vec<String> = p.labels.iter().map(|(k, v)| format!("k8s:{k}={v}")).collect();
                labels.push(format!("k8s:io.kubernetes.pod.namespace={ns}"));
                json!({"namespace": ns, "pod_name": p.name, "labels": labels})
            } else {
                json!({"namespace": ns, "pod": p.name, "ip": ip, "labels": p.labels.to_map()})
            }
        }
        _ if hubble => json!({"identity": 2, "labels": ["reserved:world"]}),
        _ => json!(ip),
    }
}

/// `np:ns/policy/direction/rule peer-N` and `np-drop:ingress ns/a,ns/b` comments → (direction, [(namespace, name)]).
fn policies_of(comment: &str) -> Option<(&str, Vec<(String, String)>)> {
    if let Some(rest) = comment.strip_prefix("np-drop:") {
        let (dir, list) = rest.split_once(' ')?;
        let names = list
            .split(',')
            .filter(|n| !n.is_empty())
            .map(|n| match n.split_once('/') {
                Some((ns, name)) => (ns.to_string(), name.to_string()),
                None => (String::new(), n.to_string()),
            })
            .collect();
        return Some((dir, names));
    }
    let rest = comment.strip_prefix("np:")?;
    let path = rest.split(' ').next()?;
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [ns, name, dir, ..] if *dir == "ingress" || *dir == "egress" => {
            Some((dir, vec![(ns.to_string(), name.to_string())]))
        }
        [name, dir, ..] if *dir == "ingress" || *dir == "egress" => {
            Some((dir, vec![(String::new(), name.to_string())]))
        }
        _ => None,
    }
}

/// One flow-log line (without the newline) for a traced record.
pub fn line(
    r: &FlowRecord,
    engine: Option<&Engine>,
    local: &BTreeSet<IpAddr>,
    node: &str,
    format: Format,
    check: Option<&(bool, String)>,
) -> String {
    let kernel = kernel_verdict(r);
    let time = now_rfc3339();
    let comments: Vec<&str> = r.allowed_by.iter().map(String::as_str).chain(r.dropped_by.as_deref()).collect();
    let is_local = |ip: &str| ip.parse().is_ok_and(|a| local.contains(&a));
    match format {
        Format::Netpol => {
            let side = match (is_local(&r.src), is_local(&r.dst)) {
                (true, false) => "egress",
                (false, true) => "ingress",
                _ => "both",
            };
            let mut policies: Vec<String> = Vec::new();
            for c in &comments {
                if let Some((_, names)) = policies_of(c) {
                    for (ns, n) in names {
                        let full = if ns.is_empty() { n } else { format!("{ns}/{n}") };
                        if !policies.contains(&full) {
                            policies.push(full);
                        }
                    }
                }
            }
            let mut v = json!({
                "time": time,
                "src": end(engine, &r.src, false),
                "dst": end(engine, &r.dst, false),
                "protocol": r.protocol,
                "verdict": if kernel == Kernel::Allowed { "allowed" } else { "denied" },
                "side": side,
                "policies": policies,
                "node": node,
                "rules": comments,
            });
            if let Some(p) = r.port {
                v["port"] = json!(p);
            }
            if kernel == Kernel::WouldDeny {
                v["audit"] = json!(true);
            }
            if let Some((allowed, _)) = check {
                v["engine_verdict"] = json!(if *allowed { "allowed" } else { "denied" });
                v["self_check"] = json!(if *allowed == (kernel == Kernel::Allowed) { "agree" } else { "disagree" });
            }
            v.to_string()
        }
        Format::Hubble => {
            let v6 = r.src.contains(':');
            let mut flow = json!({
                "time": time,
                "verdict": match kernel { Kernel::Allowed => "FORWARDED", Kernel::Denied => "DROPPED", Kernel::WouldDeny => "AUDIT" },
                "IP": {"source": r.src, "destination": r.dst, "ipVersion": if v6 { "IPv6" } else { "IPv4" }},
                "source": end(engine, &r.src, true),
                "destination": end(engine, &r.dst, true),
                "Type": "L3_L4",
                "node_name": node,
                "traffic_direction": if is_local(&r.dst) { "INGRESS" } else { "EGRESS" },
                "is_reply": false,
            });
            if let Some(p) = r.port {
                let l4 = match r.protocol.as_str() {
                    "UDP" => "UDP",
                    "SCTP" => "SCTP",
                    _ => "TCP",
                };
                let mut ports = json!({"destination_port": p});
                if l4 == "TCP" {
                    ports["flags"] = json!({"SYN": true});
                }
                flow["l4"] = json!({ l4: ports });
            }
            if kernel != Kernel::Allowed {
                flow["drop_reason_desc"] = json!("POLICY_DENIED");
            }
            for c in &comments {
                if let Some((dir, names)) = policies_of(c) {
                    let key = format!("{dir}_{}_by", if c.starts_with("np-drop") { "denied" } else { "allowed" });
                    let mut list = flow[&key].as_array().cloned().unwrap_or_default();
                    for (ns, name) in names {
                        list.push(json!({"name": name, "namespace": ns, "kind": "NetworkPolicy"}));
                    }
                    flow[key] = Value::Array(list);
                }
            }
            json!({"flow": flow, "node_name": node, "time": time}).to_string()
        }
    }
}

/// `N` of a trace line's `unknown rule handle N`.
fn unknown_handle(line: &str) -> Option<u64> {
    let at = line.find("unknown rule handle ")?;
    line.get(at + 20..)?.split_whitespace().next()?.parse().ok()
}

/// The comments of the agent's table's rules, by handle (`nft -a -j list table inet netpol`).
fn rule_comments(netns: Option<&str>) -> std::collections::HashMap<u64, String> {
    use netpol_nft::apply::Runner;
    let mut argv: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        argv.extend(["ip", "netns", "exec", ns]);
    }
    argv.extend(["nft", "-a", "-j", "list", "table", "inet", netpol_nft::ruleset::TABLE]);
    let Ok(out) = netpol_nft::apply::System.run(&argv, None) else { return Default::default() };
    let Ok(v) = serde_json::from_str::<Value>(&out) else { return Default::default() };
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let r = item.get("rule")?;
            Some((r.get("handle")?.as_u64()?, r.get("comment")?.as_str()?.to_string()))
        })
        .collect()
}

/// Starts tracing on the node and a thread that writes the flow log to `out` (and self-checks every record when
/// `self_check`). Returns the `nft monitor trace` child (kill it to stop).
pub fn start(
    programmer: Arc<Programmer>,
    netns: Option<String>,
    format: Format,
    self_check: bool,
    mut out: Box<dyn Write + Send>,
) -> anyhow::Result<std::process::Child> {
    let mut child = netpol_nft::apply::spawn_trace_monitor_in(netns.as_deref())?;
    netpol_nft::apply::nft_apply(&netpol_nft::apply::System, netns.as_deref(), &trace_on_script())?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no output from nft monitor trace"))?;
    std::thread::Builder::new().name("flow-log".into()).spawn(move || {
        let mut parser = TraceParser::default();
        // `nft monitor trace` names a rule from the ruleset it read when it started: once the agent has replaced
        // or changed its table, it prints `unknown rule handle N` instead. Those are named here from the table's
        // rules by handle, read again when a handle is not known.
        let mut handles = rule_comments(netns.as_deref());
        for l in std::io::BufReader::new(stdout).lines() {
            let Ok(mut l) = l else { break };
            if let Some(h) = unknown_handle(&l) {
                if !handles.contains_key(&h) {
                    handles = rule_comments(netns.as_deref());
                }
                if let Some(c) = handles.get(&h) {
                    l = l.replace(&format!("unknown rule handle {h}"), &format!("rule handle {h} comment \"{c}\""));
                }
            }
            let Some(rec) = parser.feed(&l) else { continue };
            // The model last programmed and its node's pod addresses (computed once per program, not per record).
            let current = programmer.current();
            let engine = current.as_ref().map(|(e, _)| e.as_ref());
            let empty = BTreeSet::new();
            let local = current.as_ref().map_or(&empty, |(_, l)| l.as_ref());
            let check = if self_check { engine.and_then(|e| engine_verdict(e, local, &rec)) } else { None };
            if let Some((allowed, explanation)) = &check {
                let kernel = kernel_verdict(&rec);
                let m = &programmer.metrics;
                m.self_checked.fetch_add(1, Ordering::Relaxed);
                if *allowed != (kernel == Kernel::Allowed) {
                    m.self_check_disagreements.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        node = programmer.node(),
                        flow = %format!("{} -> {} {}/{}", rec.src, rec.dst, rec.port.unwrap_or(0), rec.protocol),
                        kernel = ?kernel,
                        kernel_rules = ?rec.allowed_by.iter().chain(&rec.dropped_by).collect::<Vec<_>>(),
                        engine = if *allowed { "allowed" } else { "denied" },
                        "self-check: the kernel and the engine disagree\n{explanation}"
                    );
                }
            }
            let text = line(&rec, engine, local, programmer.node(), format, check.as_ref());
            if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    })?;
    Ok(child)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_traced_drop_names_its_rule_and_policy_in_both_formats() {
        let mut p = TraceParser::default();
        let lines = [
            r#"trace id 86e254ba inet netpol_trace pre packet: iif "v1" ip saddr 10.80.0.1 ip daddr 10.80.0.2 ip protocol tcp tcp sport 36536 tcp dport 8088 tcp flags == syn"#,
            r#"trace id 86e254ba inet netpol_trace pre rule iifname != "lo" ct state new meta nftrace set 1 (verdict continue)"#,
            r#"trace id 86e254ba inet netpol_trace pre policy accept "#,
            r#"trace id 86e254ba inet netpol forward packet: iif "v1" oif "v2" ip saddr 10.80.0.1 ip daddr 10.80.0.2 tcp dport 8088"#,
            r#"trace id 86e254ba inet netpol forward rule ip daddr vmap @ingress_v4 (verdict jump in_x)"#,
            r#"trace id 86e254ba inet netpol in_x rule counter packets 0 bytes 0 drop comment "np-drop:ingress n/b-from-c" (verdict drop)"#,
        ];
        let rec: Vec<FlowRecord> = lines.iter().filter_map(|l| p.feed(l)).collect();
        assert_eq!(rec.len(), 1);
        assert_eq!(rec[0].dropped_by.as_deref(), Some("np-drop:ingress n/b-from-c"));
        let v: Value =
            serde_json::from_str(&line(&rec[0], None, &BTreeSet::new(), "n1", Format::Netpol, None)).unwrap();
        assert_eq!(v["policies"], json!(["n/b-from-c"]));
        assert_eq!(v["rules"], json!(["np-drop:ingress n/b-from-c"]));
        assert_eq!(v["verdict"], "denied");
        let h: Value =
            serde_json::from_str(&line(&rec[0], None, &BTreeSet::new(), "n1", Format::Hubble, None)).unwrap();
        assert_eq!(h["flow"]["verdict"], "DROPPED");
        assert_eq!(
            h["flow"]["ingress_denied_by"],
            json!([{"name": "b-from-c", "namespace": "n", "kind": "NetworkPolicy"}])
        );
        assert_eq!(h["flow"]["l4"]["TCP"]["destination_port"], 8088);
    }

    #[test]
    fn a_trace_line_of_an_unknown_handle_is_read() {
        assert_eq!(unknown_handle("trace id 4b inet netpol in_f unknown rule handle 10 (verdict drop)"), Some(10));
        assert_eq!(unknown_handle("trace id 4b inet netpol in_f rule counter drop (verdict drop)"), None);
    }

    #[test]
    fn rfc3339_time() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 27, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && &t[10..11] == "T", "{t}");
    }
}
