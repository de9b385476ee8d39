//! Inspektor Gadget's `trace_tcp` events (`kubectl gadget run trace_tcp -o json`, `ig run trace_tcp -o json`, and
//! the older built-in `trace tcp`): TCP connections a pod's processes opened (`connect`), accepted (`accept`) or
//! closed (`close`). A tracer: no verdict, no policy.
//!
//! Follows inspektor-gadget/inspektor-gadget `gadgets/trace_tcp` (the image-based gadget: `src` and `dst`
//! `L4Endpoint{addr, port, proto, version, k8s{kind, name, namespace, labels}}`, `type`, `timestamp`, and the
//! common data's `k8s{node, namespace, podName, containerName, podLabels}`; its test
//! `test/integration/trace_tcp_test.go`; the eBPF `accept.h`/`common.h`, which fill `src` with the socket's local
//! end, so that an accepted connection's `src` is the server) and `pkg/gadgets/trace/tcp/types/types.go` (the
//! older event: `operation` accept/connect/close, `saddr`, `daddr`, `sport`, `dport`, `ipversion`, with
//! `pkg/types` common data: `k8s{namespace, podName|pod, containerName}` or, older still, top-level `namespace`
//! and `pod`; its `type` is the message type, `normal`).
//!
//! Mapping: the traced pod (the common data's `k8s`) is the socket's local end, the event's `src`. A `connect`
//! is its pod connecting out: `src` is the pod. An `accept` is turned around: `src` is the remote client, `dst`
//! the traced pod and `port` its local port. Both open a connection (`opens: Some(true)`). `close` events, and
//! events that are no connection (messages, `unknown`), are skipped. An endpoint's own Kubernetes enrichment
//! (`src.k8s`, `dst.k8s` of kind `pod`) names it; a `svc` endpoint (a service's address, before translation) has
//! `kind` `service`.

use netpol_core::portset::Protocol;
use serde::Deserialize;

use super::common::{ip, json_error, port, protocol, some_str, sort_labels, time, LabelList, Scalar, Text};
use super::{End, FlowFormat, Observed, Side};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Event<'a> {
    #[serde(borrow, rename = "type")]
    event_type: Option<Scalar<'a>>,
    #[serde(borrow)]
    operation: Option<Text<'a>>,
    #[serde(borrow)]
    timestamp: Option<Scalar<'a>>,
    #[serde(borrow)]
    saddr: Option<Text<'a>>,
    #[serde(borrow)]
    daddr: Option<Text<'a>>,
    #[serde(borrow)]
    sport: Option<Scalar<'a>>,
    #[serde(borrow)]
    dport: Option<Scalar<'a>>,
    #[serde(borrow)]
    src: Option<L4Endpoint<'a>>,
    #[serde(borrow)]
    dst: Option<L4Endpoint<'a>>,
    #[serde(borrow, alias = "k8sMetadata")]
    k8s: Option<K8s<'a>>,
    #[serde(borrow)]
    namespace: Option<Text<'a>>,
    #[serde(borrow, alias = "podName")]
    pod: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct L4Endpoint<'a> {
    #[serde(borrow)]
    addr: Option<Text<'a>>,
    #[serde(borrow)]
    port: Option<Scalar<'a>>,
    #[serde(borrow)]
    proto: Option<Scalar<'a>>,
    #[serde(borrow)]
    k8s: Option<EndpointK8s<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EndpointK8s<'a> {
    #[serde(borrow)]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    namespace: Option<Text<'a>>,
    labels: Option<LabelList>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct K8s<'a> {
    #[serde(borrow)]
    namespace: Option<Text<'a>>,
    #[serde(borrow, alias = "pod")]
    #[serde(rename = "podName")]
    pod_name: Option<Text<'a>>,
    #[serde(rename = "podLabels")]
    pod_labels: Option<LabelList>,
}

fn endpoint_end(ep: Option<&L4Endpoint>, addr: Option<&Text>, field: &str) -> Result<End, String> {
    let addr = ep.and_then(|e| e.addr.as_ref()).or(addr);
    let mut e = End { ip: addr.map(|a| ip(field, a)).transpose()?.flatten(), ..End::default() };
    if let Some(k) = ep.and_then(|e| e.k8s.as_ref()) {
        match k.kind.as_deref() {
            Some("pod") => {
                e.namespace = some_str(k.namespace.as_deref());
                e.pod = some_str(k.name.as_deref());
                e.labels = sort_labels(k.labels.as_ref().map(|l| l.0.clone()).unwrap_or_default());
            }
            Some("svc") => {
                e.namespace = some_str(k.namespace.as_deref());
                e.kind = Some("service".to_string());
            }
            _ => {}
        }
    }
    Ok(e)
}

/// Parses one `trace_tcp` event: `Ok(None)` for events that open no connection.
pub(super) fn parse(line: &str, n: u64) -> Result<Option<Observed>, String> {
    let ev: Event = serde_json::from_str(line).map_err(|e| json_error("invalid Inspektor Gadget event", &e))?;
    let op = ev.operation.as_deref().or(ev.event_type.as_ref().and_then(Scalar::as_str)).unwrap_or("");
    let accept = match op.to_ascii_lowercase().as_str() {
        "connect" => false,
        "accept" => true,
        _ => return Ok(None),
    };
    let mut local = endpoint_end(ev.src.as_ref(), ev.saddr.as_ref(), "src")?;
    let remote = endpoint_end(ev.dst.as_ref(), ev.daddr.as_ref(), "dst")?;
    if local.pod.is_none() {
        // The traced pod is the socket's local end.
        let k = ev.k8s.as_ref();
        local.namespace = some_str(k.and_then(|k| k.namespace.as_deref()).or(ev.namespace.as_deref()));
        local.pod = some_str(k.and_then(|k| k.pod_name.as_deref()).or(ev.pod.as_deref()));
        if local.pod.is_some() {
            local.labels = sort_labels(k.and_then(|k| k.pod_labels.as_ref()).map(|l| l.0.clone()).unwrap_or_default());
        }
    }
    let local_port = port("sport", ev.src.as_ref().and_then(|e| e.port.as_ref()).or(ev.sport.as_ref()))?;
    let remote_port = port("dport", ev.dst.as_ref().and_then(|e| e.port.as_ref()).or(ev.dport.as_ref()))?;
    let proto = ev.src.as_ref().and_then(|e| e.proto.as_ref());
    let protocol = match proto {
        Some(p) if !p.is_null() => protocol("src.proto", p)?,
        _ => Protocol::Tcp,
    };
    let (src, dst, src_port, port) =
        if accept { (remote, local, remote_port, local_port) } else { (local, remote, local_port, remote_port) };
    Ok(Some(Observed {
        line: n,
        time: ev.timestamp.as_ref().and_then(time),
        src,
        dst,
        src_port,
        protocol,
        port,
        verdict: None,
        side: Side::Both,
        policies: Vec::new(),
        reply: false,
        opens: Some(true),
        events: 1,
        connections: None,
        format: FlowFormat::Gadget,
    }))
}
