//! Flow logs in: what data planes and tracers logged about real connections, read into one record
//! ([`Observed`]) and folded into one record per connection class ([`Folded`]).
//!
//! Formats are detected per line ([`FlowFormat::detect`]) or forced (`--flow-format`). Reading streams: memory
//! grows with the distinct connection classes seen (and a bounded window of recent connections, for folding
//! repeated events), never with the size of the log. A line that cannot be read is a [`LineError`] naming its
//! line, and reading goes on.
//!
//! What a record says is only what the log said: endpoints are names, addresses and labels as logged, resolved
//! against a cluster later (`crate::observed`).

use std::net::IpAddr;

use netpol_core::portset::Protocol;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

mod calico;
mod common;
mod fold;
mod gadget;
mod hubble;
mod knp;
mod netpol;
mod read;

pub use fold::{Folder, WINDOW};
pub use read::{decompressed, open, Reader};

/// The flow-log formats netpol reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlowFormat {
    /// Cilium Hubble's flow JSON (`hubble observe -o json`), wrapped in `{"flow": ...}` or bare, with proto
    /// field names or camelCase.
    Hubble,
    /// Calico's flow logs as Goldmane and Whisker serve them: aggregated by workload, no addresses.
    Calico,
    /// kube-network-policies' JSON packet log: a verdict line joined to its packet line.
    KubeNetworkPolicies,
    /// Inspektor Gadget's `trace_tcp` JSON: connections seen, no verdict.
    Gadget,
    /// netpol's own lines (`query` output, `observe`) and the documented vendor-neutral record.
    Netpol,
}

/// A verdict a log recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allowed,
    Denied,
}

/// Which side's policies a logged verdict covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The whole path: delivered, or dropped by either side.
    Both,
    /// Only the source's egress policies (the destination's ingress was not judged where this was logged).
    Egress,
    /// Only the destination's ingress policies.
    Ingress,
}

/// One end of a logged flow, as the log names it. Fields a log does not give stay empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct End {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The exact pod name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// An aggregated name (Calico's `web-7d9f8b-*`): the pods whose names start with what precedes the `*`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregated: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Labels the log gave, sorted by key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
    /// What the log says this end is when it is not a pod (`world`, `host`, `net`, `hep`, a Hubble reserved
    /// identity, ...); `None` for pods and when the log does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// One event of a flow log, read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// The line it was read from (1-based).
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    pub src: End,
    pub dst: End,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    pub protocol: Protocol,
    /// The destination port; for ICMP the message, as `type << 8 | code` (`netpol_core::portset::icmp_port`).
    /// `None` when the log does not give it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `None`: the log records no verdict (a tracer, or a drop that is not a policy's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    pub side: Side,
    /// Policy names the log gave for the verdict, as it gave them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// This event is of the reply direction (already turned around: `src` is the connection's client).
    pub reply: bool,
    /// `Some(true)`: this event opens a connection (a SYN, a connect); `Some(false)`: it does not; `None`: the
    /// log cannot tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens: Option<bool>,
    /// How many events this record stands for (an aggregated log's count; 1 otherwise).
    pub events: u64,
    /// How many connections it stands for when the log counts them (an aggregated log); `None` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    pub format: FlowFormat,
}

/// A line that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineError {
    /// The file (`-` for stdin).
    pub file: String,
    pub line: u64,
    pub message: String,
}

/// The observed verdict counts of a folded record, per side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub allowed: u64,
    pub denied: u64,
    pub egress_allowed: u64,
    pub egress_denied: u64,
    pub ingress_allowed: u64,
    pub ingress_denied: u64,
    /// Events with no verdict.
    pub unknown: u64,
}

/// One connection class: every event between the same two ends (as logged), protocol and port, folded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Folded {
    pub src: End,
    pub dst: End,
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub connections: u64,
    pub events: u64,
    pub counts: Counts,
    /// Policy names logged, deduplicated, sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Where it was first seen: file and line.
    pub file: String,
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time: Option<String>,
    pub format: FlowFormat,
}

impl FlowFormat {
    /// Every format, in the order detection tries them.
    pub const ALL: [FlowFormat; 5] = [
        FlowFormat::Hubble,
        FlowFormat::Calico,
        FlowFormat::KubeNetworkPolicies,
        FlowFormat::Gadget,
        FlowFormat::Netpol,
    ];

    /// The `--flow-format` name.
    pub fn name(self) -> &'static str {
        match self {
            FlowFormat::Hubble => "hubble",
            FlowFormat::Calico => "calico",
            FlowFormat::KubeNetworkPolicies => "kube-network-policies",
            FlowFormat::Gadget => "gadget",
            FlowFormat::Netpol => "netpol",
        }
    }

    /// Parses a `--flow-format` name (any case; `knp` for kube-network-policies).
    pub fn parse(name: &str) -> Result<FlowFormat, String> {
        let lower = name.trim().to_ascii_lowercase();
        if lower == "knp" {
            return Ok(FlowFormat::KubeNetworkPolicies);
        }
        FlowFormat::ALL.into_iter().find(|f| f.name() == lower).ok_or_else(|| {
            let names: Vec<&str> = FlowFormat::ALL.iter().map(|f| f.name()).collect();
            format!("unknown flow format `{name}` (one of {})", names.join(", "))
        })
    }

    /// The format of one line, from the JSON keys it has (`None`: not JSON, or no format's keys). What each format
    /// is known by:
    ///
    /// - Hubble: `flow` (an object without `Key`), a non-flow event of `hubble observe` (`node_status`,
    ///   `lost_events`, `agent_event`, `debug_event`, or camelCase), or a bare flow: `verdict` with `IP`, `l4`,
    ///   `source`, `destination`, `Type`, `traffic_direction` or `event_type` (or `IP` and `l4`, for a flow without
    ///   a verdict, which protobuf's JSON leaves out).
    /// - Calico: `Key`/`key` (Goldmane's flow, also inside `flow`), or `source_name`/`dest_name`/`reporter`
    ///   (Whisker, flow logs).
    /// - kube-network-policies: `msg` with `ts`, `caller` or `packet` (klog's JSON).
    /// - Inspektor Gadget: `saddr`, `daddr` or `operation`, or `src` and `dst` with `comm`, `pid`, `mntns_id`,
    ///   `netns_id`, `mountnsid` or `type`.
    /// - netpol: `src` and `dst`.
    pub fn detect(line: &str) -> Option<FlowFormat> {
        serde_json::from_str::<Probe>(line).ok().and_then(|p| p.format())
    }
}

/// The keys detection looks at; values are skipped.
#[derive(Deserialize, Default)]
#[serde(default)]
#[allow(non_snake_case)]
struct Probe {
    flow: Option<InnerProbe>,
    node_status: Option<IgnoredAny>,
    #[serde(rename = "nodeStatus")]
    node_status_camel: Option<IgnoredAny>,
    lost_events: Option<IgnoredAny>,
    #[serde(rename = "lostEvents")]
    lost_events_camel: Option<IgnoredAny>,
    agent_event: Option<IgnoredAny>,
    #[serde(rename = "agentEvent")]
    agent_event_camel: Option<IgnoredAny>,
    debug_event: Option<IgnoredAny>,
    #[serde(rename = "debugEvent")]
    debug_event_camel: Option<IgnoredAny>,
    verdict: Option<IgnoredAny>,
    IP: Option<IgnoredAny>,
    l4: Option<IgnoredAny>,
    source: Option<IgnoredAny>,
    destination: Option<IgnoredAny>,
    Type: Option<IgnoredAny>,
    traffic_direction: Option<IgnoredAny>,
    #[serde(rename = "trafficDirection")]
    traffic_direction_camel: Option<IgnoredAny>,
    event_type: Option<IgnoredAny>,
    #[serde(rename = "eventType")]
    event_type_camel: Option<IgnoredAny>,
    Key: Option<IgnoredAny>,
    key: Option<IgnoredAny>,
    source_name: Option<IgnoredAny>,
    dest_name: Option<IgnoredAny>,
    reporter: Option<IgnoredAny>,
    msg: Option<IgnoredAny>,
    ts: Option<IgnoredAny>,
    caller: Option<IgnoredAny>,
    packet: Option<IgnoredAny>,
    saddr: Option<IgnoredAny>,
    daddr: Option<IgnoredAny>,
    operation: Option<IgnoredAny>,
    comm: Option<IgnoredAny>,
    pid: Option<IgnoredAny>,
    mntns_id: Option<IgnoredAny>,
    netns_id: Option<IgnoredAny>,
    mountnsid: Option<IgnoredAny>,
    #[serde(rename = "type")]
    type_: Option<IgnoredAny>,
    src: Option<IgnoredAny>,
    dst: Option<IgnoredAny>,
}

/// The keys of a `flow` member that tell Goldmane's flow (`Key`) from Hubble's.
#[derive(Deserialize, Default)]
#[serde(default)]
#[allow(non_snake_case)]
struct InnerProbe {
    Key: Option<IgnoredAny>,
    key: Option<IgnoredAny>,
}

impl Probe {
    fn format(&self) -> Option<FlowFormat> {
        let has = |o: &Option<IgnoredAny>| o.is_some();
        if let Some(inner) = &self.flow {
            return Some(if has(&inner.Key) || has(&inner.key) { FlowFormat::Calico } else { FlowFormat::Hubble });
        }
        let hubble_event = [
            &self.node_status,
            &self.node_status_camel,
            &self.lost_events,
            &self.lost_events_camel,
            &self.agent_event,
            &self.agent_event_camel,
            &self.debug_event,
            &self.debug_event_camel,
        ];
        if hubble_event.into_iter().any(has) {
            return Some(FlowFormat::Hubble);
        }
        if has(&self.Key) || has(&self.key) || has(&self.source_name) || has(&self.dest_name) || has(&self.reporter) {
            return Some(FlowFormat::Calico);
        }
        if has(&self.msg) && (has(&self.ts) || has(&self.caller) || has(&self.packet)) {
            return Some(FlowFormat::KubeNetworkPolicies);
        }
        let process = [&self.comm, &self.pid, &self.mntns_id, &self.netns_id, &self.mountnsid, &self.type_];
        if has(&self.saddr)
            || has(&self.daddr)
            || has(&self.operation)
            || (has(&self.src) && has(&self.dst) && process.into_iter().any(has))
        {
            return Some(FlowFormat::Gadget);
        }
        if has(&self.src) && has(&self.dst) {
            return Some(FlowFormat::Netpol);
        }
        let bare = [
            &self.IP,
            &self.l4,
            &self.source,
            &self.destination,
            &self.Type,
            &self.traffic_direction,
            &self.traffic_direction_camel,
            &self.event_type,
            &self.event_type_camel,
        ];
        if (has(&self.verdict) && bare.into_iter().any(has)) || (has(&self.IP) && has(&self.l4)) {
            return Some(FlowFormat::Hubble);
        }
        None
    }
}
