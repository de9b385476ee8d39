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
use serde::Serialize;

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
