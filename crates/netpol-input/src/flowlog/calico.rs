//! Calico's flow records: aggregated per workload and interval, names and labels but no pod addresses.
//!
//! Three renderings are read:
//!
//! - Goldmane's `Flow` (projectcalico/calico `goldmane/proto/api.proto`: `Flow{Key, start_time, end_time,
//!   source_labels, dest_labels, packets_in, packets_out, num_connections_started}`, `FlowKey{source_name,
//!   source_namespace, source_type, dest_name, dest_namespace, dest_type, dest_port, proto, reporter, action,
//!   policies}`, `PolicyTrace{enforced_policies, pending_policies}`, `PolicyHit{kind, namespace, name, tier,
//!   action, trigger}`), as protobuf's JSON writes it (`Key` or `key`, proto or camelCase names, 64-bit integers as
//!   strings, enums as names or numbers), bare or in a `FlowResult` (`{"id": ..., "flow": {...}}`).
//! - Whisker's flat `FlowResponse` (`whisker-backend/pkg/apis/v1/flows.go`: `start_time`, `end_time` as RFC 3339,
//!   `action`, `source_name`, `source_namespace`, `source_labels` joined by ` | `, `dest_*`, `protocol`,
//!   `dest_port`, `reporter`, `policies{enforced, pending}`, `packets_in`, `packets_out`).
//! - Calico's flow-log JSON (Felix's flow logs: `source_type` `wep`/`hep`/`ns`/`net`, `source_name_aggr`,
//!   `source_ip`, `source_port`, `dest_ip`, `proto`, `action` `allow`/`deny`, `reporter` `src`/`dst`,
//!   `num_flows_started`, `source_labels{labels}`, `policies{all_policies}` as `index|tier|name|action|rule`).
//!
//! Mapping: a workload's name with a `*` (`web-7d9f8b-*`) is `End::aggregated`, without one `End::pod`; an end
//! that is no workload has `kind` `hep`, `ns` (a network set) or `net`, or `pub`/`pvt` for the public and private
//! networks Calico names so (its name is not kept: netpol resolves such ends by kind and address only). `action`
//! Allow/Deny is the verdict (Pass, or none, is no verdict); `reporter` Src is the source's egress
//! (`Side::Egress`), Dst the destination's ingress (`Side::Ingress`). Policies are the enforced hits' names,
//! `namespace/name` (an end-of-tier hit names the policy that triggered it); pending (staged) hits are left out.
//! `events` is the packets counted (in and out; at least 1), `connections` the connections started when the
//! record counts them. `time` is `start_time`.

use serde::Deserialize;

use super::common::{
    enum_is, ip, json_error, port as parse_port, protocol as parse_protocol, some_str, sort_labels, time, LabelList,
    Scalar, Text,
};
use super::{End, FlowFormat, Observed, Side, Verdict};

/// Every member of every rendering: the key's members may be inside `Key`, the flow inside `flow`.
#[derive(Deserialize, Default)]
#[serde(default)]
#[allow(non_snake_case)]
struct Record<'a> {
    #[serde(borrow)]
    flow: Option<Box<Record<'a>>>,
    #[serde(borrow, alias = "key")]
    Key: Option<Box<Record<'a>>>,
    #[serde(borrow, alias = "startTime")]
    start_time: Option<Scalar<'a>>,
    #[serde(alias = "sourceLabels")]
    source_labels: Option<LabelList>,
    #[serde(alias = "destLabels")]
    dest_labels: Option<LabelList>,
    #[serde(borrow, alias = "packetsIn")]
    packets_in: Option<Scalar<'a>>,
    #[serde(borrow, alias = "packetsOut")]
    packets_out: Option<Scalar<'a>>,
    #[serde(borrow, alias = "numConnectionsStarted")]
    num_connections_started: Option<Scalar<'a>>,
    #[serde(borrow)]
    num_flows_started: Option<Scalar<'a>>,
    #[serde(borrow, alias = "sourceName")]
    source_name: Option<Text<'a>>,
    #[serde(borrow)]
    source_name_aggr: Option<Text<'a>>,
    #[serde(borrow, alias = "sourceNamespace")]
    source_namespace: Option<Text<'a>>,
    #[serde(borrow, alias = "sourceType")]
    source_type: Option<Scalar<'a>>,
    #[serde(borrow)]
    source_ip: Option<Text<'a>>,
    #[serde(borrow)]
    source_port: Option<Scalar<'a>>,
    #[serde(borrow, alias = "destName")]
    dest_name: Option<Text<'a>>,
    #[serde(borrow)]
    dest_name_aggr: Option<Text<'a>>,
    #[serde(borrow, alias = "destNamespace")]
    dest_namespace: Option<Text<'a>>,
    #[serde(borrow, alias = "destType")]
    dest_type: Option<Scalar<'a>>,
    #[serde(borrow)]
    dest_ip: Option<Text<'a>>,
    #[serde(borrow, alias = "destPort")]
    dest_port: Option<Scalar<'a>>,
    #[serde(borrow)]
    proto: Option<Scalar<'a>>,
    #[serde(borrow)]
    protocol: Option<Scalar<'a>>,
    #[serde(borrow)]
    reporter: Option<Scalar<'a>>,
    #[serde(borrow)]
    action: Option<Scalar<'a>>,
    policies: Option<serde_json::Value>,
}

/// Parses one Calico line.
pub(super) fn parse(line: &str, n: u64) -> Result<Option<Observed>, String> {
    let r: Record = serde_json::from_str(line).map_err(|e| json_error("invalid Calico flow", &e))?;
    let r = match r.flow {
        Some(inner) => *inner,
        None => r,
    };
    let k = r.Key.as_deref();
    // A member of the key: in `Key` when there is one, else flat.
    macro_rules! key {
        ($f:ident) => {
            k.and_then(|k| k.$f.as_ref()).or(r.$f.as_ref())
        };
    }
    let proto = key!(proto).or(key!(protocol)).ok_or("not a Calico flow: no `proto`")?;
    let protocol = parse_protocol("proto", proto)?;
    let port = if protocol.has_ports() { parse_port("dest_port", key!(dest_port))? } else { None };
    let src = end(
        key!(source_name),
        key!(source_name_aggr),
        key!(source_namespace),
        key!(source_type),
        r.source_labels.as_ref(),
        key!(source_ip),
        "source_ip",
    )?;
    let dst = end(
        key!(dest_name),
        key!(dest_name_aggr),
        key!(dest_namespace),
        key!(dest_type),
        r.dest_labels.as_ref(),
        key!(dest_ip),
        "dest_ip",
    )?;
    let action = key!(action);
    let verdict = if enum_is(action, "allow", 1) {
        Some(Verdict::Allowed)
    } else if enum_is(action, "deny", 2) {
        Some(Verdict::Denied)
    } else {
        None
    };
    let reporter = key!(reporter);
    let side = if enum_is(reporter, "src", 1) {
        Side::Egress
    } else if enum_is(reporter, "dst", 2) {
        Side::Ingress
    } else {
        Side::Both
    };
    let count = |s: Option<&Scalar>| s.and_then(Scalar::as_u64).unwrap_or(0);
    let packets = count(r.packets_in.as_ref()).saturating_add(count(r.packets_out.as_ref()));
    let connections = r.num_connections_started.as_ref().or(r.num_flows_started.as_ref()).and_then(Scalar::as_u64);
    Ok(Some(Observed {
        line: n,
        time: r.start_time.as_ref().and_then(time),
        src,
        dst,
        src_port: if protocol.has_ports() { parse_port("source_port", key!(source_port))? } else { None },
        protocol,
        port,
        verdict,
        side,
        policies: key!(policies).map(policy_names).unwrap_or_default(),
        reply: false,
        opens: None,
        events: packets.max(1),
        connections,
        format: FlowFormat::Calico,
    }))
}

/// What an endpoint type says the end is: `None` for a workload (or unknown), else its kind.
fn kind(t: Option<&Scalar>, name: Option<&str>) -> Option<String> {
    let k = if enum_is(t, "hep", 2) || enum_is(t, "HostEndpoint", 2) {
        "hep"
    } else if enum_is(t, "ns", 3) || enum_is(t, "NetworkSet", 3) {
        "ns"
    } else if enum_is(t, "net", 4) || enum_is(t, "Network", 4) || matches!(name, Some("pub" | "pvt")) {
        if name == Some("pub") {
            "pub"
        } else if name == Some("pvt") {
            "pvt"
        } else {
            "net"
        }
    } else {
        return None;
    };
    Some(k.to_string())
}

#[allow(clippy::too_many_arguments)]
fn end(
    name: Option<&Text>,
    aggr: Option<&Text>,
    namespace: Option<&Text>,
    t: Option<&Scalar>,
    labels: Option<&LabelList>,
    addr: Option<&Text>,
    ip_field: &str,
) -> Result<End, String> {
    let name = some_str(name.map(|s| &**s)).filter(|s| s != "-");
    let aggr = some_str(aggr.map(|s| &**s)).filter(|s| s != "-");
    let mut e = End {
        namespace: some_str(namespace.map(|s| &**s)).filter(|s| s != "-"),
        labels: sort_labels(labels.map(|l| l.0.clone()).unwrap_or_default()),
        ip: match addr {
            Some(a) => ip(ip_field, a)?,
            None => None,
        },
        kind: kind(t, name.as_deref().or(aggr.as_deref())),
        ..End::default()
    };
    if e.kind.is_none() {
        match name.or(aggr) {
            Some(n) if n.contains('*') => e.aggregated = Some(n),
            Some(n) => e.pod = Some(n),
            None => {}
        }
    }
    Ok(e)
}

/// The enforced policies' names: hits (objects with `name`, `namespace`, `kind`, `trigger`) or strings (flow logs'
/// `index|tier|name|action|rule`).
fn policy_names(v: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    let hit_name = |h: &Value| -> Option<String> {
        let mut h = h;
        if h.get("kind").and_then(Value::as_str) == Some("EndOfTier")
            || h.get("kind").and_then(Value::as_i64) == Some(10)
        {
            h = h.get("trigger").filter(|t| t.is_object())?;
        }
        match h {
            Value::String(s) => {
                let parts: Vec<&str> = s.split('|').collect();
                some_str(Some(parts.get(2).copied().unwrap_or(s)))
            }
            Value::Object(_) => {
                let name = some_str(h.get("name").and_then(Value::as_str))?;
                Some(match some_str(h.get("namespace").and_then(Value::as_str)) {
                    Some(ns) => format!("{ns}/{name}"),
                    None => name,
                })
            }
            _ => None,
        }
    };
    let lists = match v {
        Value::Array(_) => vec![v],
        Value::Object(m) => ["enforced_policies", "enforcedPolicies", "enforced", "all_policies", "enforced_policies"]
            .iter()
            .filter_map(|k| m.get(*k))
            .take(1)
            .collect(),
        _ => vec![],
    };
    lists.into_iter().filter_map(Value::as_array).flatten().filter_map(hit_name).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn policy_name_shapes() {
        let v = serde_json::json!({"enforced": [
            {"kind": "CalicoNetworkPolicy", "namespace": "shop", "name": "allow-web", "tier": "default"},
            {"kind": "EndOfTier", "tier": "sec", "trigger": {"kind": "GlobalNetworkPolicy", "name": "sec.base"}},
            {"kind": "Profile", "name": "kns.shop"}
        ], "pending": [{"name": "staged"}]});
        assert_eq!(super::policy_names(&v), ["shop/allow-web", "sec.base", "kns.shop"]);
        let v = serde_json::json!({"all_policies": ["0|default|shop/default.allow-web|allow|0"]});
        assert_eq!(super::policy_names(&v), ["shop/default.allow-web"]);
    }
}
