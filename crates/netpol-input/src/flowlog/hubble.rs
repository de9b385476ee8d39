//! Cilium Hubble's flows, as `hubble observe -o json` writes them (one `GetFlowsResponse` a line: `{"flow": {...},
//! "node_name": ..., "time": ...}`, or a non-flow message, `node_status`, `lost_events`, `agent_event`,
//! `debug_event`, which carries no flow) or as a bare `Flow` object.
//!
//! Follows cilium/cilium `api/v1/flow/flow.proto` (message `Flow`: `time`, `verdict`, `drop_reason`,
//! `drop_reason_desc`, `IP{source,destination}`, `l4{TCP,UDP,SCTP,ICMPv4,ICMPv6}` with `source_port`,
//! `destination_port`, TCP `flags{SYN,ACK,...}`, ICMP `type`/`code`, `source`/`destination` `Endpoint{identity,
//! namespace, labels, pod_name}`, `is_reply` (a `BoolValue`; the deprecated `reply`), `traffic_direction`,
//! `trace_observation_point`, `egress_allowed_by`/`ingress_allowed_by`/`egress_denied_by`/`ingress_denied_by`
//! (`Policy{name,namespace,kind}`); enums `Verdict`, `DropReason`, `TrafficDirection`) and
//! `api/v1/observer/observer.proto` (`GetFlowsResponse`). Protobuf's JSON field names (`pod_name`) and its
//! camelCase names (`podName`) are both read; enums as names or numbers.
//!
//! Mapping:
//!
//! - Ends: `IP.source` and `source` are `src`; `namespace`, `pod_name`; labels `k8s:key=value` (and labels
//!   without a source) without their `k8s:` prefix, the meta labels Cilium adds (`io.kubernetes.pod.namespace`,
//!   `io.cilium.*`: the namespace's labels, the service account, the cluster) left out; a `reserved:X` label is
//!   `kind` X (`world-ipv4`/`world-ipv6` are `world`), and without labels a reserved identity number (1 host,
//!   2 world, ...) is one when the end is no pod.
//! - Verdict and side: `FORWARDED` and `REDIRECTED` (to the L7 proxy, after the L3/L4 policy allowed it) are
//!   allowed: at `EGRESS` only the source's egress policies were passed (`Side::Egress`), at `INGRESS` the packet
//!   was delivered, past both sides (`Side::Both`); a trace without a direction is delivered (`Both`) when observed
//!   at `TO_ENDPOINT`, and otherwise says nothing of policies (no verdict). `DROPPED` for a policy reason
//!   (`POLICY_DENIED`, `POLICY_DENY`) is denied, on the direction's side (`Both` without one); dropped for any
//!   other reason is no verdict. `AUDIT` is a policy verdict in audit mode: the packet went through, but the
//!   policies would have dropped it, and netpol compares policies, so it is denied like a policy drop. `ERROR`,
//!   `TRACED`, `TRANSLATED` and unknown verdicts are no verdict.
//! - Replies (`is_reply`) are turned around (`src` is the connection's client, `src_port` its port, `port` the
//!   server's) and `reply: true`; their verdict covers the whole connection (`Side::Both`).
//! - Policies: the names of `*_allowed_by` for an allowed verdict, of `*_denied_by` for a denied one (all four
//!   without a verdict), as `namespace/name` (`name` when cluster-wide).
//! - `opens`: a TCP SYN without ACK opens a connection; other TCP segments do not; other protocols cannot tell.
//! - A flow without `l4` (not IP, or no transport header) carries no flow and is skipped.

use netpol_core::portset::{icmp_port, Protocol};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::common::{enum_is, ip, json_error, some_str, sort_labels, time, BoolValue, Scalar, Text};
use super::{End, FlowFormat, Observed, Side, Verdict};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Response<'a> {
    #[serde(borrow)]
    flow: Option<Flow<'a>>,
    #[serde(borrow)]
    time: Option<Scalar<'a>>,
    #[serde(alias = "nodeStatus")]
    node_status: Option<IgnoredAny>,
    #[serde(alias = "lostEvents")]
    lost_events: Option<IgnoredAny>,
    #[serde(alias = "agentEvent")]
    agent_event: Option<IgnoredAny>,
    #[serde(alias = "debugEvent")]
    debug_event: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
#[allow(non_snake_case)]
struct Flow<'a> {
    #[serde(borrow)]
    time: Option<Scalar<'a>>,
    #[serde(borrow)]
    verdict: Option<Scalar<'a>>,
    #[serde(borrow, alias = "dropReason")]
    drop_reason: Option<Scalar<'a>>,
    #[serde(borrow, alias = "dropReasonDesc")]
    drop_reason_desc: Option<Scalar<'a>>,
    #[serde(borrow)]
    IP: Option<Ip<'a>>,
    l4: Option<Layer4>,
    #[serde(borrow)]
    source: Option<Endpoint<'a>>,
    #[serde(borrow)]
    destination: Option<Endpoint<'a>>,
    #[serde(alias = "isReply")]
    is_reply: Option<BoolValue>,
    reply: Option<bool>,
    #[serde(borrow, alias = "trafficDirection")]
    traffic_direction: Option<Scalar<'a>>,
    #[serde(borrow, alias = "traceObservationPoint")]
    trace_observation_point: Option<Scalar<'a>>,
    #[serde(borrow, alias = "egressAllowedBy")]
    egress_allowed_by: Option<Vec<Policy<'a>>>,
    #[serde(borrow, alias = "ingressAllowedBy")]
    ingress_allowed_by: Option<Vec<Policy<'a>>>,
    #[serde(borrow, alias = "egressDeniedBy")]
    egress_denied_by: Option<Vec<Policy<'a>>>,
    #[serde(borrow, alias = "ingressDeniedBy")]
    ingress_denied_by: Option<Vec<Policy<'a>>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Ip<'a> {
    #[serde(borrow)]
    source: Option<Text<'a>>,
    #[serde(borrow)]
    destination: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
#[allow(non_snake_case)]
struct Layer4 {
    TCP: Option<Tcp>,
    UDP: Option<Ports>,
    SCTP: Option<Ports>,
    ICMPv4: Option<Icmp>,
    ICMPv6: Option<Icmp>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Tcp {
    #[serde(alias = "sourcePort")]
    source_port: Option<u64>,
    #[serde(alias = "destinationPort")]
    destination_port: Option<u64>,
    flags: Option<Flags>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
#[allow(non_snake_case)]
struct Flags {
    SYN: bool,
    ACK: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Ports {
    #[serde(alias = "sourcePort")]
    source_port: Option<u64>,
    #[serde(alias = "destinationPort")]
    destination_port: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Icmp {
    #[serde(rename = "type")]
    icmp_type: Option<u64>,
    code: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Endpoint<'a> {
    identity: Option<u64>,
    #[serde(borrow)]
    namespace: Option<Text<'a>>,
    #[serde(borrow)]
    labels: Option<Vec<Text<'a>>>,
    #[serde(borrow, alias = "podName")]
    pod_name: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Policy<'a> {
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    namespace: Option<Text<'a>>,
}

/// Parses one Hubble line: `Ok(None)` for a message that carries no flow.
pub(super) fn parse(line: &str, n: u64) -> Result<Option<Observed>, String> {
    let r: Response = serde_json::from_str(line).map_err(|e| json_error("invalid Hubble flow", &e))?;
    let (flow, outer_time) = match r.flow {
        Some(f) => (f, r.time),
        None if r.node_status.is_some()
            || r.lost_events.is_some()
            || r.agent_event.is_some()
            || r.debug_event.is_some() =>
        {
            return Ok(None)
        }
        None => (serde_json::from_str(line).map_err(|e| json_error("invalid Hubble flow", &e))?, None),
    };
    if flow.IP.is_none() && flow.l4.is_none() && flow.source.is_none() && flow.destination.is_none() {
        return Err("not a Hubble flow: no `flow`, `IP`, `l4`, `source` or `destination`".to_string());
    }
    convert(flow, outer_time, n)
}

fn port16(field: &str, p: Option<u64>) -> Result<Option<u16>, String> {
    match p {
        None | Some(0) => Ok(None),
        Some(p) => u16::try_from(p).map(Some).map_err(|_| format!("{field}: invalid port {p}")),
    }
}

fn icmp(i: &Icmp) -> Result<u16, String> {
    let t = u8::try_from(i.icmp_type.unwrap_or(0)).map_err(|_| "l4: invalid ICMP type".to_string())?;
    let c = u8::try_from(i.code.unwrap_or(0)).map_err(|_| "l4: invalid ICMP code".to_string())?;
    Ok(icmp_port(t, c))
}

/// The kind of a reserved identity number (`pkg/identity` numbering).
fn reserved_identity(id: u64) -> Option<&'static str> {
    Some(match id {
        1 => "host",
        2 | 9 | 10 => "world",
        3 => "unmanaged",
        4 => "health",
        5 => "init",
        6 => "remote-node",
        7 => "kube-apiserver",
        8 => "ingress",
        _ => return None,
    })
}

/// Whether a label key is one of the meta labels Cilium adds to a pod's own.
fn meta_label(key: &str) -> bool {
    key.starts_with("io.kubernetes.pod.namespace") || key.starts_with("io.cilium.")
}

fn end(ep: Option<&Endpoint>, addr: Option<&Text>, field: &str) -> Result<End, String> {
    let mut e = End {
        ip: match addr {
            Some(a) => ip(field, a)?,
            None => None,
        },
        ..End::default()
    };
    let Some(ep) = ep else { return Ok(e) };
    e.namespace = some_str(ep.namespace.as_deref());
    e.pod = some_str(ep.pod_name.as_deref());
    let mut labels = Vec::new();
    let mut reserved: Option<&str> = None;
    for l in ep.labels.iter().flatten() {
        let l: &str = l;
        // `source:key=value`: the source ends at the first `:` before any `=`.
        let (source, kv) = match l.split_once(':') {
            Some((source, kv)) if !source.contains('=') => (source, kv),
            _ => ("", l),
        };
        match source {
            "k8s" | "" => {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                if !k.is_empty() && !meta_label(k) {
                    labels.push((k.to_string(), v.to_string()));
                }
            }
            // A host is also the API server on some clusters: the host is the kind.
            "reserved" if reserved.is_none() || reserved == Some("kube-apiserver") => reserved = Some(kv),
            _ => {}
        }
    }
    e.labels = sort_labels(labels);
    e.kind = match reserved {
        Some("world-ipv4" | "world-ipv6") => Some("world".to_string()),
        Some(k) => some_str(Some(k)),
        None if e.pod.is_none() => ep.identity.and_then(reserved_identity).map(str::to_string),
        None => None,
    };
    Ok(e)
}

fn policy_names(lists: &[&Option<Vec<Policy>>]) -> Vec<String> {
    let mut out = Vec::new();
    for p in lists.iter().copied().flatten().flatten() {
        let Some(name) = some_str(p.name.as_deref()) else { continue };
        out.push(match some_str(p.namespace.as_deref()) {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        });
    }
    out
}

fn convert(f: Flow, outer_time: Option<Scalar>, n: u64) -> Result<Option<Observed>, String> {
    let Some(l4) = &f.l4 else { return Ok(None) };
    let (protocol, mut src_port, mut port, opens) = if let Some(t) = &l4.TCP {
        let syn = t.flags.as_ref().is_some_and(|fl| fl.SYN && !fl.ACK);
        (Protocol::Tcp, port16("l4.TCP", t.source_port)?, port16("l4.TCP", t.destination_port)?, Some(syn))
    } else if let Some(u) = &l4.UDP {
        (Protocol::Udp, port16("l4.UDP", u.source_port)?, port16("l4.UDP", u.destination_port)?, None)
    } else if let Some(s) = &l4.SCTP {
        (Protocol::Sctp, port16("l4.SCTP", s.source_port)?, port16("l4.SCTP", s.destination_port)?, None)
    } else if let Some(i) = &l4.ICMPv4 {
        (Protocol::Icmp, None, Some(icmp(i)?), None)
    } else if let Some(i) = &l4.ICMPv6 {
        (Protocol::Icmpv6, None, Some(icmp(i)?), None)
    } else {
        return Ok(None);
    };
    let ipl = f.IP.as_ref();
    let mut src = end(f.source.as_ref(), ipl.and_then(|i| i.source.as_ref()), "IP.source")?;
    let mut dst = end(f.destination.as_ref(), ipl.and_then(|i| i.destination.as_ref()), "IP.destination")?;
    let reply = f.is_reply.map(|b| b.0).or(f.reply).unwrap_or(false);

    let v = f.verdict.as_ref();
    let dir = f.traffic_direction.as_ref();
    let (egress, ingress) = (enum_is(dir, "EGRESS", 2), enum_is(dir, "INGRESS", 1));
    let policy_drop = |s: Option<&Scalar>| enum_is(s, "POLICY_DENIED", 133) || enum_is(s, "POLICY_DENY", 181);
    let allowed = enum_is(v, "FORWARDED", 1) || enum_is(v, "REDIRECTED", 5);
    let denied = enum_is(v, "AUDIT", 4)
        || (enum_is(v, "DROPPED", 2)
            && (policy_drop(f.drop_reason_desc.as_ref())
                || (f.drop_reason_desc.as_ref().is_none_or(Scalar::is_null) && policy_drop(f.drop_reason.as_ref()))));
    let (verdict, side) = if allowed {
        if reply || ingress {
            (Some(Verdict::Allowed), Side::Both)
        } else if egress {
            (Some(Verdict::Allowed), Side::Egress)
        } else if enum_is(f.trace_observation_point.as_ref(), "TO_ENDPOINT", 101) {
            (Some(Verdict::Allowed), Side::Both)
        } else {
            (None, Side::Both)
        }
    } else if denied {
        let side = if reply {
            Side::Both
        } else if egress {
            Side::Egress
        } else if ingress {
            Side::Ingress
        } else {
            Side::Both
        };
        (Some(Verdict::Denied), side)
    } else {
        (None, Side::Both)
    };
    let policies = match verdict {
        Some(Verdict::Allowed) => policy_names(&[&f.egress_allowed_by, &f.ingress_allowed_by]),
        Some(Verdict::Denied) => policy_names(&[&f.egress_denied_by, &f.ingress_denied_by]),
        None => policy_names(&[&f.egress_allowed_by, &f.ingress_allowed_by, &f.egress_denied_by, &f.ingress_denied_by]),
    };
    if reply {
        std::mem::swap(&mut src, &mut dst);
        if protocol.has_ports() {
            std::mem::swap(&mut src_port, &mut port);
        }
    }
    Ok(Some(Observed {
        line: n,
        time: f.time.as_ref().or(outer_time.as_ref()).and_then(time),
        src,
        dst,
        src_port,
        protocol,
        port,
        verdict,
        side,
        policies,
        reply,
        opens,
        events: 1,
        connections: None,
        format: FlowFormat::Hubble,
    }))
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::flowlog::{Side, Verdict};

    /// The verdict, side, reply, opens and destination kind of a bare flow with these members added.
    fn read(extra: &str) -> (Option<Verdict>, Side, bool, Option<bool>, Option<String>) {
        let line = format!(
            r#"{{"IP":{{"source":"10.0.0.1","destination":"10.0.0.2"}},"l4":{{"TCP":{{"source_port":1000,"destination_port":80,"flags":{{"ACK":true}}}}}},{extra}}}"#
        );
        let o = parse(&line, 1).ok().flatten().unwrap_or_else(|| unreachable!("{line}"));
        (o.verdict, o.side, o.reply, o.opens, o.dst.kind)
    }

    #[test]
    fn verdicts_sides_and_kinds() {
        let allowed_egress = (Some(Verdict::Allowed), Side::Egress, false, Some(false), None);
        assert_eq!(read(r#""verdict":"REDIRECTED","traffic_direction":"EGRESS""#), allowed_egress);
        assert_eq!(read(r#""verdict":1,"traffic_direction":2"#), allowed_egress);
        // A trace without direction: delivered at the endpoint, or nothing said.
        let delivered = (Some(Verdict::Allowed), Side::Both, false, Some(false), None);
        assert_eq!(read(r#""verdict":"FORWARDED","trace_observation_point":"TO_ENDPOINT""#), delivered);
        assert_eq!(read(r#""verdict":"FORWARDED","trace_observation_point":"TO_STACK""#).0, None);
        assert_eq!(read(r#""verdict":"TRACED","traffic_direction":"INGRESS""#).0, None);
        // The deprecated numeric drop reason, when there is no description.
        let denied = (Some(Verdict::Denied), Side::Ingress, false, Some(false), None);
        assert_eq!(read(r#""verdict":"DROPPED","drop_reason":181,"traffic_direction":"INGRESS""#), denied);
        assert_eq!(read(r#""verdict":"DROPPED","drop_reason":133"#).1, Side::Both);
        assert_eq!(read(r#""verdict":"DROPPED","drop_reason":155"#).0, None);
        // The deprecated `reply`; `is_reply` wins.
        assert!(read(r#""verdict":"FORWARDED","reply":true"#).2);
        assert!(!read(r#""verdict":"FORWARDED","reply":true,"is_reply":false"#).2);
        // Kinds: labels first, then reserved identity numbers for ends that are no pods.
        let kind = |dst: &str| read(&format!(r#""verdict":"FORWARDED","destination":{dst}"#)).4;
        assert_eq!(kind(r#"{"labels":["reserved:world-ipv4"]}"#).as_deref(), Some("world"));
        assert_eq!(kind(r#"{"identity":6}"#).as_deref(), Some("remote-node"));
        assert_eq!(kind(r#"{"identity":6,"pod_name":"x"}"#), None);
        assert_eq!(kind(r#"{"identity":70000}"#), None);
    }

    #[test]
    fn policies_in_camel_case() {
        let line = r#"{"flow":{"verdict":"FORWARDED","trafficDirection":"INGRESS","l4":{"UDP":{"destinationPort":53}},"ingressAllowedBy":[{"name":"dns","namespace":"kube-system"}],"egressAllowedBy":[{"name":"all"}],"ingressDeniedBy":[{"name":"unused"}]}}"#;
        let o = parse(line, 1).ok().flatten().unwrap_or_else(|| unreachable!());
        assert_eq!(o.policies, ["all", "kube-system/dns"]);
        assert_eq!((o.src_port, o.port), (None, Some(53)));
    }
}
