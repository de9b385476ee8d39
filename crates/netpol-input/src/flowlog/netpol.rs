//! netpol's own lines, and the vendor-neutral record any tool can write to have its flows read.
//!
//! Read: `netpol query` output lines (`{"src": "ns/pod", "dst": "10.0.0.1", "protocol": "TCP", "port": 80,
//! "verdict": "allow"}`: the query contract's flow with the verdict netpol gave; a line answered with `error`
//! carries no flow and is skipped), `netpol observe` lines (the same, with `allowed_by` and `dropped_by`: policy
//! names, or objects with `name` and `namespace`, whose names become `policies`), and the neutral record.
//!
//! # The neutral flow record
//!
//! One JSON object a line; every member but `src` and `dst` is optional:
//!
//! ```json
//! {"time": "2024-05-01T10:00:00Z",
//!  "src": "shop/web-1",
//!  "dst": {"namespace": "shop", "pod": "db-0", "ip": "10.0.0.7", "labels": {"app": "db"}},
//!  "src_port": 43512, "protocol": "TCP", "port": 5432,
//!  "verdict": "allowed", "side": "both", "policies": ["shop/allow-web"],
//!  "events": 3, "connections": 1, "reply": false}
//! ```
//!
//! - `src`, `dst`: a string, `namespace/pod`, an IP address, or a bare `pod` (namespace unknown); or an object of
//!   `namespace`, `pod`, `ip`, `labels` (an object of strings, or a list of `key=value`), `aggregated` (a name
//!   prefix ending in `*`: the pods whose names start with it) and `kind` (what a non-pod end is: `world`,
//!   `host`, ...). IPv4-mapped IPv6 addresses are read as IPv4.
//! - `time`: RFC 3339, or seconds since the Unix epoch.
//! - `protocol`: TCP (the default), UDP, SCTP, ICMP, ICMPv6 in any case, or its IANA number.
//! - `port`: the destination port (1-65535); for ICMP give `icmp: {"type": 8, "code": 0}` instead (without it,
//!   an echo request, as `query` reads it). `src_port`: the source port, which tells connections apart.
//! - `verdict`: `allowed`/`allow`, `denied`/`deny`, or `null` (not known).
//! - `side`: whose policies the verdict covers: `both` (the default: delivered, or dropped by either side),
//!   `egress` (the source's only) or `ingress` (the destination's only).
//! - `policies`: the names of the policies the log gave for the verdict.
//! - `events`: how many events the record stands for (default 1); `connections`: how many connections, when the
//!   writer counted them.
//! - `reply`: this is the reply direction, already written client-to-server; `opens`: `true` when the event opens
//!   a connection (a SYN, a connect), `false` when it does not.
//! - Other members are ignored: `netpol agent`'s flow log adds `node`, `rules`, `tiers` (every tier's deciding
//!   rule), `audit`, `engine_verdict` and `self_check`.

use netpol_core::portset::{icmp_port, Protocol};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::common::{
    end_from_str, ip, json_error, port as parse_port, protocol, some_str, sort_labels, time, LabelList, Scalar, Text,
};
use super::{End, FlowFormat, Observed, Side, Verdict};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Record<'a> {
    #[serde(borrow)]
    time: Option<Scalar<'a>>,
    src: Option<serde_json::Value>,
    dst: Option<serde_json::Value>,
    #[serde(borrow)]
    src_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    protocol: Option<Scalar<'a>>,
    #[serde(borrow)]
    port: Option<Scalar<'a>>,
    icmp: Option<Icmp>,
    #[serde(borrow)]
    verdict: Option<Scalar<'a>>,
    #[serde(borrow)]
    side: Option<Text<'a>>,
    policies: Option<serde_json::Value>,
    allowed_by: Option<serde_json::Value>,
    dropped_by: Option<serde_json::Value>,
    #[serde(borrow)]
    events: Option<Scalar<'a>>,
    #[serde(borrow)]
    connections: Option<Scalar<'a>>,
    reply: Option<bool>,
    opens: Option<bool>,
    error: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Icmp {
    #[serde(rename = "type")]
    icmp_type: u8,
    #[serde(default)]
    code: u8,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct EndObj {
    namespace: Option<String>,
    pod: Option<String>,
    ip: Option<String>,
    labels: Option<LabelList>,
    aggregated: Option<String>,
    kind: Option<String>,
}

fn end(field: &str, v: &serde_json::Value) -> Result<End, String> {
    match v {
        serde_json::Value::String(s) => end_from_str(field, s),
        serde_json::Value::Object(_) => {
            let o = EndObj::deserialize(v).map_err(|e| format!("{field}: {e}"))?;
            let e = End {
                namespace: some_str(o.namespace.as_deref()),
                pod: some_str(o.pod.as_deref()),
                aggregated: some_str(o.aggregated.as_deref()),
                ip: match o.ip.as_deref() {
                    Some(a) => ip(&format!("{field}.ip"), a)?,
                    None => None,
                },
                labels: sort_labels(o.labels.map(|l| l.0).unwrap_or_default()),
                kind: some_str(o.kind.as_deref()),
            };
            if e == End::default() {
                return Err(format!(
                    "{field}: an empty endpoint (give `namespace`/`pod`, `ip`, `aggregated` or `kind`)"
                ));
            }
            Ok(e)
        }
        _ => Err(format!("{field}: expected `namespace/pod`, an IP address, or an object")),
    }
}

/// Policy names: a name, a list of names, or objects with `name` (and `namespace`).
fn names(field: &str, v: &serde_json::Value, out: &mut Vec<String>) -> Result<(), String> {
    use serde_json::Value;
    match v {
        Value::Null => {}
        Value::String(s) => out.extend(some_str(Some(s))),
        Value::Array(items) => {
            for i in items {
                names(field, i, out)?;
            }
        }
        Value::Object(m) => {
            let name = some_str(m.get("name").and_then(Value::as_str))
                .ok_or_else(|| format!("{field}: a policy object needs a `name`"))?;
            out.push(match some_str(m.get("namespace").and_then(Value::as_str)) {
                Some(ns) => format!("{ns}/{name}"),
                None => name,
            });
        }
        _ => return Err(format!("{field}: expected policy names")),
    }
    Ok(())
}

/// Parses one netpol line: `Ok(None)` for a `query` line answered with an error.
pub(super) fn parse(line: &str, n: u64) -> Result<Option<Observed>, String> {
    let r: Record = serde_json::from_str(line).map_err(|e| json_error("invalid netpol flow record", &e))?;
    if r.error.is_some() {
        return Ok(None);
    }
    let src = end("src", r.src.as_ref().ok_or("missing field `src`")?)?;
    let dst = end("dst", r.dst.as_ref().ok_or("missing field `dst`")?)?;
    let protocol = match r.protocol.as_ref().filter(|p| !p.is_null()) {
        Some(p) => protocol("protocol", p)?,
        None => Protocol::Tcp,
    };
    let port = if protocol.has_ports() {
        if r.icmp.is_some() {
            return Err(format!("`icmp` is for ICMP and ICMPv6 flows, not {protocol}"));
        }
        parse_port("port", r.port.as_ref())?
    } else {
        if r.port.as_ref().is_some_and(|p| !p.is_null()) {
            return Err(format!(
                "{protocol} has no port: give the message as `\"icmp\": {{\"type\": 8, \"code\": 0}}`"
            ));
        }
        Some(match &r.icmp {
            Some(i) => icmp_port(i.icmp_type, i.code),
            None => crate::query::echo_request(protocol),
        })
    };
    let verdict = match &r.verdict {
        None | Some(Scalar::Null) => None,
        Some(v) => match v.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("allowed" | "allow") => Some(Verdict::Allowed),
            Some("denied" | "deny") => Some(Verdict::Denied),
            _ => return Err(format!("verdict: unknown verdict {v} (`allowed`, `denied` or null)")),
        },
    };
    let side = match r.side.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("both") => Side::Both,
        Some("egress") => Side::Egress,
        Some("ingress") => Side::Ingress,
        Some(s) => return Err(format!("side: unknown side `{s}` (`both`, `egress` or `ingress`)")),
    };
    let mut policies = Vec::new();
    for (field, v) in [("policies", &r.policies), ("allowed_by", &r.allowed_by), ("dropped_by", &r.dropped_by)] {
        if let Some(v) = v {
            names(field, v, &mut policies)?;
        }
    }
    let count = |field: &str, v: &Option<Scalar>| -> Result<Option<u64>, String> {
        match v {
            None | Some(Scalar::Null) => Ok(None),
            Some(c) => c.as_u64().map(Some).ok_or_else(|| format!("{field}: expected a count, found {c}")),
        }
    };
    Ok(Some(Observed {
        line: n,
        time: r.time.as_ref().and_then(time),
        src,
        dst,
        src_port: if protocol.has_ports() { parse_port("src_port", r.src_port.as_ref())? } else { None },
        protocol,
        port,
        verdict,
        side,
        policies,
        reply: r.reply.unwrap_or(false),
        opens: r.opens,
        events: count("events", &r.events)?.unwrap_or(1).max(1),
        connections: count("connections", &r.connections)?,
        format: FlowFormat::Netpol,
    }))
}
