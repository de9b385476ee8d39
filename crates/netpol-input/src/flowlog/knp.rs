//! kube-network-policies' packet log, in klog's JSON (`--logging-format=json`, at `-v=2`): netfilter queues the
//! first packet of each new connection to the controller, which logs the packet when it evaluates it and the
//! verdict when it is done, in two lines joined by the packet's queue id.
//!
//! Follows kubernetes-sigs/kube-network-policies `pkg/networkpolicy/controller.go` (the `"Evaluating packet"`
//! line: `srcPod`, `dstPod` as `namespace/name` or `none`, `packet`, and in later versions `id` and `direction`;
//! the `"Finished syncing packet"` line: `id`, `verdict` `accept`/`drop`), `pkg/network/packet.go` and
//! `pkg/networkpolicy/packet.go` (`Packet.MarshalLog`: `ID`, `Family`, `SrcIP`, `DstIP`, `Proto`, `SrcPort`,
//! `DstPort`; `String`: `[id] srcIP:srcPort dstIP:dstPort PROTO`, read too when `packet` is a string), and klog's
//! JSON lines (`ts`, `caller`, `msg`, `v`).
//!
//! Mapping: a packet line waits (skipped, counted) for the verdict line with its id; the joined record has the
//! packet line's number. Pending packets are kept in a bounded map ([`PENDING`], the oldest evicted); a verdict
//! whose packet is unknown is skipped. `accept` is allowed, `drop` denied, for the whole path (`Side::Both`: the
//! controller evaluates the source's egress and the destination's ingress together), or for the `direction`'s side
//! when the line gives one. Each queued packet opens a connection (`opens: Some(true)`). No policy names are
//! logged. Packets without a transport protocol (ICMP: the controller leaves `Proto` empty) are skipped.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::common::{end_from_str, ip, json_error, port, protocol, time, Scalar, Text};
use super::{End, FlowFormat, Observed, Side, Verdict};

/// How many packets may wait for their verdict.
pub(crate) const PENDING: usize = 65_536;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Line<'a> {
    #[serde(borrow)]
    ts: Option<Scalar<'a>>,
    #[serde(borrow)]
    id: Option<Scalar<'a>>,
    #[serde(borrow, rename = "srcPod")]
    src_pod: Option<Text<'a>>,
    #[serde(borrow, rename = "dstPod")]
    dst_pod: Option<Text<'a>>,
    #[serde(borrow)]
    direction: Option<Text<'a>>,
    packet: Option<serde_json::Value>,
    #[serde(borrow)]
    verdict: Option<Scalar<'a>>,
}

/// Packets waiting for their verdict line, by id, the oldest evicted first.
#[derive(Default)]
pub(crate) struct Joiner {
    pending: FxHashMap<u64, (u64, Observed)>,
    order: VecDeque<(u64, u64)>,
    seq: u64,
}

impl Joiner {
    /// How many packets wait for their verdict.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.pending.len()
    }

    fn insert(&mut self, id: u64, o: Observed) {
        self.seq += 1;
        self.pending.insert(id, (self.seq, o));
        self.order.push_back((id, self.seq));
        while self.pending.len() > PENDING || self.order.len() > 2 * PENDING {
            let Some((old, seq)) = self.order.pop_front() else { break };
            if self.pending.get(&old).is_some_and(|(s, _)| *s == seq) {
                self.pending.remove(&old);
            }
        }
    }

    fn take(&mut self, id: u64) -> Option<Observed> {
        self.pending.remove(&id).map(|(_, o)| o)
    }

    /// Parses one line: `Ok(Some)` when it completes a record (a verdict line joined to its packet, or a line with
    /// both), `Ok(None)` for a packet line (now waiting) and every other line.
    pub(crate) fn parse(&mut self, line: &str, n: u64) -> Result<Option<Observed>, String> {
        let l: Line =
            serde_json::from_str(line).map_err(|e| json_error("invalid kube-network-policies log line", &e))?;
        let verdict = l.verdict.as_ref().and_then(|v| match v.as_str()?.to_ascii_lowercase().as_str() {
            "accept" => Some(Verdict::Allowed),
            "drop" => Some(Verdict::Denied),
            _ => None,
        });
        let id = l.id.as_ref().and_then(Scalar::as_u64);
        let Some(packet) = &l.packet else {
            return Ok(match (id, verdict) {
                (Some(id), Some(v)) => self.take(id).map(|mut o| {
                    o.verdict = Some(v);
                    o
                }),
                _ => None,
            });
        };
        let Some(p) = packet_fields(packet)? else { return Ok(None) };
        let id = id.or(p.id);
        let pod = |field: &str, s: Option<&Text>| -> Result<End, String> {
            match s.map(|s| s.trim()) {
                Some(s) if s.contains('/') => end_from_str(field, s),
                _ => Ok(End::default()),
            }
        };
        let mut src = pod("srcPod", l.src_pod.as_ref())?;
        let mut dst = pod("dstPod", l.dst_pod.as_ref())?;
        src.ip = p.src_ip;
        dst.ip = p.dst_ip;
        let side = match l.direction.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("egress") => Side::Egress,
            Some("ingress") => Side::Ingress,
            _ => Side::Both,
        };
        let o = Observed {
            line: n,
            time: l.ts.as_ref().and_then(time),
            src,
            dst,
            src_port: p.src_port,
            protocol: p.protocol,
            port: p.dst_port,
            verdict,
            side,
            policies: Vec::new(),
            reply: false,
            opens: Some(true),
            events: 1,
            connections: None,
            format: FlowFormat::KubeNetworkPolicies,
        };
        if verdict.is_some() {
            return Ok(Some(o));
        }
        if let Some(id) = id {
            self.insert(id, o);
        }
        Ok(None)
    }
}

struct Packet {
    id: Option<u64>,
    src_ip: Option<std::net::IpAddr>,
    dst_ip: Option<std::net::IpAddr>,
    protocol: netpol_core::portset::Protocol,
    src_port: Option<u16>,
    dst_port: Option<u16>,
}

/// The packet of a line: its JSON object, or its text (`[id] srcIP:srcPort dstIP:dstPort PROTO`); `None` when it
/// has no transport protocol.
fn packet_fields(v: &serde_json::Value) -> Result<Option<Packet>, String> {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
            let scalar = |k: &str| -> Option<Scalar<'static>> {
                match m.get(k)? {
                    Value::Number(n) => n.as_i64().map(Scalar::Int),
                    Value::String(s) => Some(Scalar::Str(s.clone().into())),
                    _ => None,
                }
            };
            let Some(proto) = s("Proto") else { return Ok(None) };
            Ok(Some(Packet {
                id: scalar("ID").as_ref().and_then(Scalar::as_u64),
                src_ip: s("SrcIP").map(|a| ip("packet.SrcIP", a)).transpose()?.flatten(),
                dst_ip: s("DstIP").map(|a| ip("packet.DstIP", a)).transpose()?.flatten(),
                protocol: protocol("packet.Proto", &Scalar::Str(proto.into()))?,
                src_port: port("packet.SrcPort", scalar("SrcPort").as_ref())?,
                dst_port: port("packet.DstPort", scalar("DstPort").as_ref())?,
            }))
        }
        Value::String(text) => {
            let first = text.lines().next().unwrap_or("");
            let mut parts = first.split_whitespace();
            let bad = || format!("packet: expected `[id] srcIP:srcPort dstIP:dstPort PROTO`, found `{first}`");
            let id = parts.next().and_then(|p| p.strip_prefix('[')?.strip_suffix(']')?.parse::<u64>().ok());
            let addr = |p: Option<&str>, field: &str| -> Result<(Option<std::net::IpAddr>, Option<u16>), String> {
                let (a, port) = p.and_then(|p| p.rsplit_once(':')).ok_or_else(bad)?;
                let port = port.parse::<u16>().map_err(|_| bad())?;
                Ok((ip(field, a.trim_start_matches('[').trim_end_matches(']'))?, (port != 0).then_some(port)))
            };
            let (src_ip, src_port) = addr(parts.next(), "packet source")?;
            let (dst_ip, dst_port) = addr(parts.next(), "packet destination")?;
            let Some(proto) = parts.next() else { return Ok(None) };
            Ok(Some(Packet {
                id,
                src_ip,
                dst_ip,
                protocol: protocol("packet protocol", &Scalar::Str(proto.into()))?,
                src_port,
                dst_port,
            }))
        }
        _ => Err("packet: expected an object or a string".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Joiner, PENDING};

    fn packet(id: u64) -> String {
        format!(
            r#"{{"ts":1,"msg":"Evaluating packet","srcPod":"a/b","dstPod":"none","packet":{{"ID":{id},"SrcIP":"10.0.0.1","DstIP":"10.0.0.2","Proto":"TCP","SrcPort":1000,"DstPort":80}}}}"#
        )
    }

    fn verdict(id: u64) -> String {
        format!(r#"{{"ts":2,"msg":"Finished syncing packet","id":{id},"verdict":"drop"}}"#)
    }

    #[test]
    fn pending_packets_are_bounded() {
        let mut j = Joiner::default();
        for id in 0..=PENDING as u64 {
            assert_eq!(j.parse(&packet(id), id + 1), Ok(None));
        }
        assert_eq!(j.waiting(), PENDING);
        // The oldest was evicted; the newest waits.
        assert_eq!(j.parse(&verdict(0), 1), Ok(None));
        let joined = j.parse(&verdict(PENDING as u64), 2).ok().flatten();
        assert_eq!(joined.map(|o| o.line), Some(PENDING as u64 + 1));
        assert_eq!(j.waiting(), PENDING - 1);
        // A packet logged again (the same id) replaces the one waiting.
        assert_eq!(j.parse(&packet(5), 10), Ok(None));
        assert_eq!(j.parse(&verdict(5), 11).ok().flatten().map(|o| o.line), Some(10));
    }
}
