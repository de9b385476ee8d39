//! Connectivity tests: bring the engine's model into a lab, enforce it with the generated ruleset, and compare
//! every flow's verdict with what a real connection observes.
//!
//! Lab addressing: pods keep their manifest IPs when those are lab-safe (10.0.0.0/8, fd00::/8); pods without an IP
//! get one from 10.250.0.0/16; pods whose IPs are outside the lab ranges are not created and their flows are
//! `untestable`. The engine used for verdicts is compiled from the same re-addressed cluster, so verdicts and the
//! data plane see the same addresses. hostNetwork pods live in the lab's node netns with their addresses (their
//! node's, which the loader gives them), and so do the Nodes' own addresses ([`node_pods`]): a flow from a Node's
//! address is a flow from the node itself (the node's `output` hook), not from an emulated outside address.
//! Every lab pod carries its pod's `spec.nodeName` (a Node's address and a host endpoint's: their Node's name),
//! which a multi-node lab whose nodes are the cluster's Nodes honours.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use netpol_core::compile::{Endpoint, Engine};
use netpol_core::model::{Cluster, PodId};
use netpol_core::portset::Protocol;

use crate::lab::LabPod;
use crate::probe::{Observed, Probe, L4};

/// Whether an address may be configured inside lab namespaces.
pub fn lab_safe(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.octets()[0] == 10,
        IpAddr::V6(a) => a.segments()[0] & 0xff00 == 0xfd00,
    }
}

/// The lab's view of a cluster.
pub struct LabPlan {
    /// The cluster with lab addresses assigned.
    pub cluster: Cluster,
    /// Pods created in the lab (key `ns/name`).
    pub pods: Vec<LabPod>,
    /// Pods not created, with the reason.
    pub untestable: BTreeMap<PodId, String>,
}

/// Assigns lab addresses (see the module doc).
pub fn plan(cluster: &Cluster) -> LabPlan {
    let mut c = cluster.clone();
    let used: HashSet<IpAddr> = c.pods.iter().flat_map(|p| p.ips.iter().copied()).collect();
    let mut next: u32 = u32::from(Ipv4Addr::new(10, 250, 0, 1));
    let mut untestable = BTreeMap::new();
    let mut pods = Vec::new();
    for (i, p) in c.pods.iter_mut().enumerate() {
        if p.ips.is_empty() {
            loop {
                let ip = IpAddr::V4(Ipv4Addr::from(next));
                next += 1;
                if next & 0xff == 0 || next & 0xff == 255 {
                    next += 1;
                }
                if !used.contains(&ip) {
                    p.ips.push(ip);
                    break;
                }
            }
        }
        if let Some(bad) = p.ips.iter().find(|ip| !lab_safe(ip)) {
            untestable.insert(
                PodId::new(i),
                format!("pod IP {bad} is outside the lab's address ranges (10.0.0.0/8, fd00::/8)"),
            );
            continue;
        }
        pods.push(LabPod {
            key: String::new(),
            ips: p.ips.clone(),
            host_network: p.host_network,
            node: p.node.clone(),
        });
    }
    // Keys need namespace names, which live in the cluster.
    let mut k = 0;
    for (i, p) in c.pods.iter().enumerate() {
        if untestable.contains_key(&PodId::new(i)) {
            continue;
        }
        pods[k].key = format!("{}/{}", c.ns_name(p.ns), p.name);
        k += 1;
    }
    LabPlan { cluster: c, pods, untestable }
}

/// Key of the pseudo-pod standing for a Calico host endpoint's address.
pub fn host_key(ip: &IpAddr) -> String {
    format!("host/{ip}")
}

/// The addresses of Calico host endpoints that no pod has, as host-network pseudo-pods: like a hostNetwork pod
/// they live in the node netns (on its `lo`), so traffic to them passes the node's `input` hook and traffic
/// from them its `output` hook (addresses outside the lab's ranges are left out: flows with them are untestable).
pub fn host_endpoint_pods(e: &Engine, pods: &[LabPod]) -> Vec<LabPod> {
    let used: HashSet<IpAddr> = pods.iter().flat_map(|p| p.ips.iter().copied()).collect();
    // Address → the node of its (first) host endpoint.
    let mut ips: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for h in &e.cluster().host_endpoints {
        for ip in e.host_endpoint_addresses(h).into_iter().filter(|ip| lab_safe(ip) && !used.contains(ip)) {
            ips.entry(ip).or_insert(h.node.as_str());
        }
    }
    ips.into_iter().map(|(ip, node)| LabPod::host_network(host_key(&ip), [ip]).on_node(node)).collect()
}

/// Key of the pseudo-pod standing for a Node's address.
pub fn node_key(ip: &IpAddr) -> String {
    format!("node/{ip}")
}

/// Whether `ip` is an address of a Node of the cluster.
fn is_node_address(e: &Engine, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    e.cluster().nodes.iter().any(|n| n.ips.iter().any(|a| a.to_canonical() == ip))
}

/// The Nodes' addresses that no pod (and no pseudo-pod of `pods`) has, as host-network pseudo-pods: the node
/// itself, on the lab node's `lo`, so that flows from a node to a pod leave through the node's `output` hook
/// and flows to it arrive through its `input` hook, as on a real node (addresses outside the lab's ranges are
/// left out: flows with them are untestable).
pub fn node_pods(e: &Engine, pods: &[LabPod]) -> Vec<LabPod> {
    let used: HashSet<IpAddr> = pods.iter().flat_map(|p| p.ips.iter().copied()).collect();
    // Address → its (first) Node.
    let mut ips: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for n in &e.cluster().nodes {
        for ip in n.ips.iter().map(|a| a.to_canonical()).filter(|ip| lab_safe(ip) && !used.contains(ip)) {
            ips.entry(ip).or_insert(n.name.as_str());
        }
    }
    ips.into_iter().map(|(ip, node)| LabPod::host_network(node_key(&ip), [ip]).on_node(node)).collect()
}

/// Key of the pseudo-pod standing for an address outside the cluster.
pub fn external_key(ip: &IpAddr) -> String {
    format!("external/{ip}")
}

/// The lab's transport for a protocol; `None` for ICMP, which the lab does not probe.
pub fn l4(p: Protocol) -> Option<L4> {
    match p {
        Protocol::Tcp => Some(L4::Tcp),
        Protocol::Udp => Some(L4::Udp),
        Protocol::Sctp => Some(L4::Sctp),
        Protocol::Icmp | Protocol::Icmpv6 => None,
    }
}

/// How the lab probes a flow of `protocol` and `port` (for ICMP, `type << 8 | code`) to `dst`: its transport and
/// port, or why it cannot. ICMP: echo requests only (type 8 code 0, ICMPv6 type 128 code 0), to an address of the
/// protocol's family (the destination's kernel answers them; other messages have no answer to observe).
pub fn probe_of(protocol: Protocol, port: u16, dst: IpAddr) -> Result<(L4, u16), String> {
    let echo = match protocol {
        Protocol::Icmp => netpol_core::portset::icmp_port(8, 0),
        Protocol::Icmpv6 => netpol_core::portset::icmp_port(128, 0),
        p => return l4(p).map(|l| (l, port)).ok_or_else(|| format!("{p} flows are not probed by the lab")),
    };
    if port != echo {
        return Err(format!(
            "{protocol} type {} code {}: only echo requests are probed by the lab",
            port >> 8,
            port & 0xff
        ));
    }
    if (protocol == Protocol::Icmp) != dst.is_ipv4() {
        return Err(format!("{protocol} to {dst}: not a message of that address's family"));
    }
    Ok((L4::IcmpEcho, 0))
}

/// One flow to test.
#[derive(Clone, Debug)]
pub struct Case {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub protocol: Protocol,
    pub port: u16,
}

/// Every ordered pair of distinct pods on every container port the destination declares.
pub fn default_cases(e: &Engine, untestable: &BTreeMap<PodId, String>) -> Vec<Case> {
    let n = e.cluster().pods.len();
    let mut v = Vec::new();
    for d in (0..n).map(PodId::new) {
        if untestable.contains_key(&d) {
            continue;
        }
        let ports: BTreeSet<(Protocol, u16)> = e.cluster().pod(d).ports.iter().map(|c| (c.protocol, c.port)).collect();
        for s in (0..n).map(PodId::new) {
            if s == d || untestable.contains_key(&s) {
                continue;
            }
            for &(protocol, port) in &ports {
                v.push(Case {
                    src: Endpoint::Pod { pod: s, ip: None },
                    dst: Endpoint::Pod { pod: d, ip: None },
                    protocol,
                    port,
                });
            }
        }
    }
    v
}

/// Addresses outside the cluster that the cases use and the lab can emulate.
pub fn external_pods(e: &Engine, cases: &[Case]) -> Vec<LabPod> {
    let mut ips = BTreeSet::new();
    for c in cases {
        for ep in [&c.src, &c.dst] {
            if let Endpoint::External(ip) = ep {
                if lab_safe(ip) && e.host_endpoint_at(*ip).is_none() && !is_node_address(e, *ip) {
                    ips.insert(*ip);
                }
            }
        }
    }
    ips.into_iter().map(|ip| LabPod::new(external_key(&ip), [ip])).collect()
}

/// Where a case's endpoint lives in the lab: (lab pod key, address used), or why it cannot be tested.
pub fn locate(e: &Engine, untestable: &BTreeMap<PodId, String>, ep: &Endpoint) -> Result<(String, IpAddr), String> {
    match *ep {
        Endpoint::Pod { pod, ip } => {
            if let Some(why) = untestable.get(&pod) {
                return Err(why.clone());
            }
            let addr = ip.or_else(|| e.cluster().pod(pod).primary_ip()).ok_or("the pod has no IP")?;
            Ok((e.cluster().pod_ref(pod), addr))
        }
        Endpoint::External(ip) if lab_safe(&ip) && e.host_endpoint_at(ip).is_some() => Ok((host_key(&ip), ip)),
        Endpoint::External(ip) if lab_safe(&ip) && is_node_address(e, ip) => Ok((node_key(&ip), ip)),
        Endpoint::External(ip) if lab_safe(&ip) => Ok((external_key(&ip), ip)),
        Endpoint::External(ip) => Err(format!("{ip} is outside the lab's address ranges (10.0.0.0/8, fd00::/8)")),
    }
}

/// A case placed in the lab: netns and addresses for the probe and the listener.
pub struct Placed {
    pub src_netns: String,
    pub src_ip: IpAddr,
    pub dst_netns: String,
    pub dst_ip: IpAddr,
}

/// Probes every placed case (with listeners on every destination) and returns what was observed, in order.
/// Cases that could not be placed come back `Untestable` with their reason.
pub fn observe(
    placed: &[Result<(Placed, L4, u16), String>],
    timeout: Duration,
) -> Result<Vec<(Observed, String)>, String> {
    let mut targets: BTreeSet<(String, IpAddr, u8, u16)> = BTreeSet::new();
    for (p, l, port) in placed.iter().flatten() {
        targets.insert((p.dst_netns.clone(), p.dst_ip, l4_code(*l), *port));
    }
    let targets: Vec<(String, IpAddr, L4, u16)> =
        targets.into_iter().map(|(n, ip, l, port)| (n, ip, l4_from_code(l), port)).collect();
    let listeners = crate::probe::Listeners::start(&targets).map_err(|e| format!("starting listeners: {e}"))?;
    // Targets without a listener (SCTP with neither SCTP nor raw sockets), with the reason.
    let skipped: BTreeMap<(&str, IpAddr, u8, u16), &str> = listeners
        .skipped()
        .iter()
        .map(|(netns, ip, l, port, why)| ((netns.as_str(), *ip, l4_code(*l), *port), why.as_str()))
        .collect();
    let mut probes = Vec::new();
    let mut index = Vec::new();
    let mut out: Vec<(Observed, String)> = Vec::with_capacity(placed.len());
    for (i, c) in placed.iter().enumerate() {
        let no_listener = c.as_ref().ok().and_then(|(p, l, port)| {
            skipped.get(&(p.dst_netns.as_str(), p.dst_ip, l4_code(*l), *port)).map(|why| why.to_string())
        });
        match c {
            Err(why) => out.push((Observed::Untestable, why.clone())),
            Ok(_) if no_listener.is_some() => out.push((Observed::Untestable, no_listener.unwrap_or_default())),
            Ok((p, l, port)) => {
                out.push((Observed::Untestable, String::new()));
                index.push(i);
                probes.push(Probe {
                    netns: p.src_netns.clone(),
                    src: Some(p.src_ip),
                    dst: p.dst_ip,
                    l4: *l,
                    port: *port,
                });
            }
        }
    }
    let results = crate::probe::run_probes(&probes, timeout, 64);
    for ((i, r), p) in index.into_iter().zip(results).zip(&probes) {
        out[i] = with_listener(p.l4, r.observed, r.detail);
    }
    drop(listeners);
    Ok(out)
}

/// The detail of a TCP probe refused although a listener was up on its destination: the reset came from the
/// ruleset (a `reject with tcp reset`, Antrea's Reject), not from the pod.
pub const REJECTED_TCP: &str = "rejected (TCP reset while a listener was up)";

/// What a probe's result means when a listener was up on its destination (as [`observe`] starts them): a TCP
/// connection refused or reset is not the pod's answer (nothing listening) but the ruleset's rejection, so it is a
/// deny, said as [`REJECTED_TCP`]. Other results are kept.
pub fn with_listener(l4: L4, observed: Observed, detail: String) -> (Observed, String) {
    match (l4, observed, detail.as_str()) {
        (L4::Tcp, Observed::Allow, "refused" | "reset") => (Observed::Deny, REJECTED_TCP.to_string()),
        _ => (observed, detail),
    }
}

fn l4_code(l: L4) -> u8 {
    match l {
        L4::Tcp => 0,
        L4::Udp => 1,
        L4::Sctp => 2,
        L4::IcmpEcho => 3,
    }
}

fn l4_from_code(c: u8) -> L4 {
    match c {
        0 => L4::Tcp,
        1 => L4::Udp,
        2 => L4::Sctp,
        _ => L4::IcmpEcho,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// With a listener up, a TCP refusal is the ruleset's reject (deny); other answers keep their meaning.
    #[test]
    fn a_refusal_with_a_listener_up_is_a_rejection() {
        let d = |s: &str| s.to_string();
        assert_eq!(with_listener(L4::Tcp, Observed::Allow, d("refused")), (Observed::Deny, d(REJECTED_TCP)));
        assert_eq!(with_listener(L4::Tcp, Observed::Allow, d("reset")), (Observed::Deny, d(REJECTED_TCP)));
        assert_eq!(with_listener(L4::Tcp, Observed::Allow, d("connected")), (Observed::Allow, d("connected")));
        assert_eq!(with_listener(L4::Tcp, Observed::Deny, d("timeout")), (Observed::Deny, d("timeout")));
        let udp = d("refused (icmp port unreachable)");
        assert_eq!(with_listener(L4::Udp, Observed::Allow, udp.clone()), (Observed::Allow, udp));
    }

    /// ICMP flows are probed as echo requests of their family; other messages, and an ICMP flow to an address of
    /// the other family, are not probed (with the reason).
    #[test]
    fn icmp_flows_are_probed_as_echo_requests() {
        use netpol_core::portset::icmp_port;
        let (v4, v6): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap());
        assert_eq!(probe_of(Protocol::Icmp, icmp_port(8, 0), v4), Ok((L4::IcmpEcho, 0)));
        assert_eq!(probe_of(Protocol::Icmpv6, icmp_port(128, 0), v6), Ok((L4::IcmpEcho, 0)));
        assert_eq!(probe_of(Protocol::Tcp, 80, v4), Ok((L4::Tcp, 80)));
        let no = probe_of(Protocol::Icmp, icmp_port(13, 0), v4).unwrap_err();
        assert_eq!(no, "ICMP type 13 code 0: only echo requests are probed by the lab");
        assert!(probe_of(Protocol::Icmp, icmp_port(8, 0), v6).is_err());
        assert!(probe_of(Protocol::Icmpv6, icmp_port(128, 0), v4).is_err());
    }

    /// A Node's address that no pod has lives on the lab node's `lo` (a host-network pseudo-pod), and a flow from it
    /// is placed there, not in an emulated outside namespace; an address a hostNetwork pod has is that pod's, and
    /// addresses outside the lab's ranges are left out.
    #[test]
    fn node_addresses_live_in_the_node_namespace() {
        let yaml = "
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.1.0.1}, {type: ExternalIP, address: 192.0.2.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 10.1.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: sys}
spec: {nodeName: n2, hostNetwork: true}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a}
spec: {nodeName: n1}
status: {podIP: 10.2.0.1}
";
        let p = plan(&netpol_core::load::load_str("t", yaml).cluster);
        let e = Engine::new(p.cluster);
        let nodes = node_pods(&e, &p.pods);
        assert_eq!(nodes, vec![LabPod::host_network("node/10.1.0.1", ["10.1.0.1".parse().unwrap()]).on_node("n1")]);
        // Pods carry their nodeName (a multi-node lab named after the Nodes places them by it).
        let on = |key: &str| p.pods.iter().find(|l| l.key == key).and_then(|l| l.node.clone());
        assert_eq!((on("sys/agent"), on("a/web")), (Some("n2".to_string()), Some("n1".to_string())));
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let at = |s: &str| locate(&e, &p.untestable, &e.endpoint_for_ip(ip(s)));
        assert_eq!(at("10.1.0.1"), Ok(("node/10.1.0.1".to_string(), ip("10.1.0.1"))));
        assert_eq!(at("10.1.0.2"), Ok(("sys/agent".to_string(), ip("10.1.0.2"))));
        assert_eq!(at("10.9.0.1"), Ok(("external/10.9.0.1".to_string(), ip("10.9.0.1"))));
        let case = |s: &str| Case {
            src: e.endpoint_for_ip(ip(s)),
            dst: e.endpoint_for_ip(ip("10.2.0.1")),
            protocol: Protocol::Tcp,
            port: 80,
        };
        let ext = external_pods(&e, &[case("10.1.0.1"), case("10.9.0.1")]);
        assert_eq!(ext.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(), ["external/10.9.0.1"]);
    }
}
