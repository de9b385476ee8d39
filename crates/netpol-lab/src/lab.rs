//! A network-namespace lab: "node" namespaces routing between one netns per pod (Calico-style routed topology),
//! one node or several joined by a routed fabric.
//!
//! Layout of a single-node lab (prefix `P`, its node named `node`):
//! - node netns `P-node`: `lo` up with `169.254.1.1/32`, IPv4 and IPv6 forwarding on (inside that netns only),
//!   one veth per pod named `v<id>` carrying `fe80::1/64` (nodad), and one `/32` / `/128` route per pod IP to it;
//! - pod netns `P-<id>` (`<id>` = 8 hex chars of the 32-bit FNV-1a hash of the pod key `ns/name`): `lo` up, `eth0`
//!   with the pod's `/32` and `/128` (nodad), default routes via `169.254.1.1` (scope-link route to it) and via
//!   `fe80::1`.
//!
//! A multi-node lab ([`Lab::up_nodes`] with two nodes or more) has one such node netns per node, `P-<node name>`
//! (`P-node0`, `P-node1`, ... or named after the cluster's Nodes), each with its own pods behind it exactly as
//! above, joined like a routed CNI without encapsulation (Calico's BGP-learned routes, kube-router, flannel
//! host-gw):
//! - fabric netns `P-fabric`: the underlay, a bridge `br0` with one port `n<i>` per node (a veth whose other end
//!   is the node's `eth0`), and the underlay router on `br0`: [`FABRIC_V4`] and [`FABRIC_V6`];
//! - node `i` has [`underlay_address`]`(i)` on `eth0`: `10.254.0.<i+1>/24` and `fd00:254::<i+1>/64` (this
//!   range, [`UNDERLAY_V4`] and [`UNDERLAY_V6`], is reserved: no pod of a multi-node lab may use it);
//! - every node holds one route per address living on another node (its pods', and its host-network addresses)
//!   via that node's underlay address, and default routes via the fabric router;
//! - addresses outside the cluster (`external/` pods) live behind the fabric, which is wired to them as a node is
//!   to its pods, and holds a route to every other address via its node's underlay address: traffic between a
//!   pod and them passes one node, traffic between pods on two nodes passes both (each node's `forward` hook).
//!
//! Hooks a flow passes (each node enforcing a ruleset that dispatches on addresses, as netpol's does): between
//! pods on two nodes, the `forward` hook of both (the source's node drops what it denies: the destination's never
//! sees it); between a pod and a host-network address (a host-network pod, a Node's address) on another node, the
//! pod's node's `forward` and the other node's `input` (towards it) or `output` (from it); between a pod and an
//! address behind the fabric, its node's `forward` only (the fabric has no ruleset). Each node tracks the
//! connections it forwards in its own conntrack table.
//!
//! Pods go to the node their [`LabPod::node`] names when the lab has a node of that name, else they are spread
//! evenly over the nodes in key order (a pod already running keeps its node); host-network pods sharing an
//! address share a node.
//!
//! Pods whose key starts with `external/` get the same wiring; they stand for addresses outside the cluster.
//! Host-network pods ([`LabPod::host_network`]) get no netns of their own: like on a real node they live in their
//! node's netns, whose `lo` carries their addresses (their node's, `/32` and `/128`); several host-network pods may
//! share an address. In a single-node lab that node holds the addresses of every Node that has a host-network pod,
//! so traffic between a pod and a host-network pod is traffic between a pod and its own node (the node's `input`
//! and `output` hooks, not `forward`).
//! Pod addresses must lie in `10.0.0.0/8` or `fd00::/8`: the lab never uses any other address.
//!
//! All commands go through [`netpol_nft::apply`]. [`Lab::up`] and [`Lab::apply`] record the lab (its nodes, and
//! each pod's node) in `/run/netpol-lab/<prefix>.json`, which [`Lab::attach`] reads back; [`Lab::down`] needs no
//! state at all (it deletes every netns named `<prefix>-*`), so it also cleans up after a crash.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use netpol_nft::apply::{ip_batch, netns_list, sysctl_in_netns, ApplyError, Runner};

/// Directory of the lab state files.
pub const STATE_DIR: &str = "/run/netpol-lab";
/// The pods' IPv4 gateway, owned by the node netns (on `lo`).
pub const GATEWAY_V4: &str = "169.254.1.1";
/// The pods' IPv6 gateway, on every node-side veth.
pub const GATEWAY_V6: &str = "fe80::1";
/// Key prefix of pseudo-pods that emulate addresses outside the cluster.
pub const EXTERNAL_PREFIX: &str = "external/";
/// Name of the node of a single-node lab (its netns is `<prefix>-node`).
pub const SINGLE_NODE: &str = "node";
/// The fabric netns of a multi-node lab is `<prefix>-fabric`.
pub const FABRIC: &str = "fabric";
/// The IPv4 underlay of multi-node labs (reserved: no pod of such a lab may use it).
pub const UNDERLAY_V4: &str = "10.254.0.0/24";
/// The IPv6 underlay of multi-node labs (reserved: no pod of such a lab may use it).
pub const UNDERLAY_V6: &str = "fd00:254::/64";
/// The fabric router's IPv4 address on the underlay (the nodes' default gateway).
pub const FABRIC_V4: Ipv4Addr = Ipv4Addr::new(10, 254, 0, 254);
/// The fabric router's IPv6 address on the underlay (the nodes' default gateway).
pub const FABRIC_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x254, 0, 0, 0, 0, 0, 0xfe);
/// Most nodes a lab can have (underlay addresses `.1` to `.253`).
pub const MAX_NODES: usize = 253;

/// A pod the lab should contain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabPod {
    /// `namespace/name`; `external/<anything>` for an address outside the cluster.
    pub key: String,
    /// One or two addresses: at most one IPv4 (in 10.0.0.0/8) and one IPv6 (in fd00::/8).
    pub ips: Vec<IpAddr>,
    /// A host-network pod: it lives in the node netns, and its addresses (its node's) are the node's.
    #[serde(default)]
    pub host_network: bool,
    /// The node the pod runs on (`spec.nodeName`): honoured when the lab has a node of that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl LabPod {
    pub fn new(key: impl Into<String>, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        LabPod { key: key.into(), ips: ips.into_iter().collect(), host_network: false, node: None }
    }
    /// A host-network pod with its node's addresses.
    pub fn host_network(key: impl Into<String>, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        LabPod { host_network: true, ..LabPod::new(key, ips) }
    }
    /// The same pod, asking for node `node`.
    pub fn on_node(self, node: impl Into<String>) -> Self {
        LabPod { node: Some(node.into()), ..self }
    }
    /// Whether this is an `external/` pseudo-pod.
    pub fn is_external(&self) -> bool {
        self.key.starts_with(EXTERNAL_PREFIX)
    }
}

/// A node of a lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabNode {
    /// `node` in a single-node lab; `node0`, `node1`, ... or a Node's name in a multi-node lab.
    pub name: String,
    /// `<prefix>-<name>`: load the node's ruleset here.
    pub netns: String,
    /// Its addresses on the underlay (`eth0`), IPv4 first; none in a single-node lab.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub underlay: Vec<IpAddr>,
}

/// What [`Lab::apply`] changed (pod keys, sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LabDelta {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Pods whose addresses (or node) changed.
    pub changed: Vec<String>,
}

impl LabDelta {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[derive(thiserror::Error, Debug)]
pub enum LabError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("invalid lab prefix {0:?}: use 1-64 characters [A-Za-z0-9_-], starting with a letter or digit")]
    InvalidPrefix(String),
    #[error("invalid lab nodes: {0}")]
    InvalidNodes(String),
    #[error("pod {key:?}: {reason}")]
    InvalidPod { key: String, reason: String },
    #[error("lab prefix {prefix:?} is in use ({} namespaces, e.g. {:?}); run `down` first", netns.len(), netns.first())]
    InUse { prefix: String, netns: Vec<String> },
    #[error("lab state file {path}: {source}")]
    StateIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lab state file {path}: {reason}")]
    BadState { path: PathBuf, reason: String },
}

/// One pod's namespace in a running lab (a host-network pod's is its node's netns, and it has no veth).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PodNs {
    netns: String,
    #[serde(default)]
    host_veth: String,
    ips: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    host_network: bool,
    /// Its node's name; none for an address outside the cluster behind a multi-node lab's fabric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
}

/// What [`validate_pods`] makes of a [`LabPod`]: its addresses sorted (IPv4 first), whether it is a host-network
/// pod, the node it asks for, and (set by [`place`]) where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Want {
    ips: Vec<IpAddr>,
    host_network: bool,
    node: Option<String>,
    /// Its node; `None` behind the fabric.
    at: Option<String>,
}

/// `ip -batch` lines adding (or deleting) node addresses on the node's `lo`.
fn node_addr_script(ips: &BTreeSet<IpAddr>, add: bool) -> String {
    ips.iter()
        .map(|ip| match (add, ip) {
            (true, IpAddr::V4(_)) => format!("addr add {} dev lo\n", host_cidr(ip)),
            (true, IpAddr::V6(_)) => format!("addr add {} dev lo nodad\n", host_cidr(ip)),
            (false, _) => format!("addr del {} dev lo\n", host_cidr(ip)),
        })
        .collect()
}

/// What the state file holds (version 1: single-node labs, without `nodes`, `fabric` and the pods' `node`).
#[derive(Serialize, Deserialize)]
struct State {
    version: u32,
    prefix: String,
    /// The first node's netns.
    node_netns: String,
    #[serde(default)]
    nodes: Vec<LabNode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fabric: Option<String>,
    pods: BTreeMap<String, PodNs>,
}

const STATE_VERSION: u32 = 2;

impl State {
    /// Reads a state file's text (`path` for messages) for lab `prefix`: a version 1 file (a single-node lab) gets
    /// its node and every pod's; a file not written for this prefix, or inconsistent, is refused.
    fn parse(prefix: &str, path: &std::path::Path, text: &str) -> Result<State, LabError> {
        let mut state: State = serde_json::from_str(text)
            .map_err(|e| LabError::BadState { path: path.to_path_buf(), reason: e.to_string() })?;
        if state.version == 1 && state.nodes.is_empty() {
            // Before multi-node labs: one node, every pod on it.
            let node = LabNode { name: SINGLE_NODE.into(), netns: state.node_netns.clone(), underlay: Vec::new() };
            for p in state.pods.values_mut() {
                p.node = Some(node.name.clone());
            }
            state.nodes.push(node);
        }
        let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
        let consistent = matches!(state.version, 1 | STATE_VERSION)
            && state.prefix == prefix
            && validate_nodes(&names).is_ok()
            && state.nodes.iter().all(|n| n.netns == node_netns_of(prefix, &n.name))
            && state.nodes.first().is_some_and(|n| n.netns == state.node_netns)
            && state.fabric == (state.nodes.len() > 1).then(|| fabric_netns_name(prefix));
        if !consistent {
            return Err(LabError::BadState {
                path: path.to_path_buf(),
                reason: format!("written for prefix {:?} (version {})", state.prefix, state.version),
            });
        }
        Ok(state)
    }
}

/// A running lab (see the module docs). Dropping it does NOT tear it down: call [`Lab::down`].
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    /// At least one.
    nodes: Vec<LabNode>,
    /// The fabric netns (multi-node labs).
    fabric: Option<String>,
    pods: BTreeMap<String, PodNs>,
}

/// 32-bit FNV-1a of `key`, as 8 lowercase hex digits: the stable id in a pod's netns and veth names.
pub fn pod_id(key: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Name of the node netns of single-node lab `prefix` (the first node's of a lab started before multi-node labs).
pub fn node_netns_name(prefix: &str) -> String {
    node_netns_of(prefix, SINGLE_NODE)
}

/// Name of the netns of node `node` of lab `prefix`: `<prefix>-<node>`.
pub fn node_netns_of(prefix: &str, node: &str) -> String {
    format!("{prefix}-{node}")
}

/// Name of the fabric netns of multi-node lab `prefix`.
pub fn fabric_netns_name(prefix: &str) -> String {
    format!("{prefix}-{FABRIC}")
}

/// The underlay addresses of node `i` (0-based) of a multi-node lab: `10.254.0.<i+1>` and `fd00:254::<i+1>`.
pub fn underlay_address(i: usize) -> [IpAddr; 2] {
    let host = u8::try_from(i + 1).unwrap_or(u8::MAX);
    [IpAddr::V4(Ipv4Addr::new(10, 254, 0, host)), IpAddr::V6(Ipv6Addr::new(0xfd00, 0x254, 0, 0, 0, 0, 0, host.into()))]
}

/// Whether `ip` lies in the reserved underlay ([`UNDERLAY_V4`], [`UNDERLAY_V6`]).
pub fn is_underlay(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == [10, 254, 0],
        IpAddr::V6(v6) => v6.segments()[..4] == [0xfd00, 0x254, 0, 0],
    }
}

/// The names of `n` anonymous nodes: `node` for one, else `node0`, `node1`, ...
pub fn anonymous_nodes(n: usize) -> Vec<String> {
    if n <= 1 {
        vec![SINGLE_NODE.to_string()]
    } else {
        (0..n).map(|i| format!("node{i}")).collect()
    }
}

/// Name of the netns of pod `key` in lab `prefix`.
pub fn pod_netns_name(prefix: &str, key: &str) -> String {
    format!("{prefix}-{}", pod_id(key))
}

/// Name of the node-side veth of pod `key` (`v` + 8 hex digits: 9 characters).
pub fn host_veth_name(key: &str) -> String {
    format!("v{}", pod_id(key))
}

/// Name of node `i`'s port on the fabric bridge.
fn fabric_port_name(i: usize) -> String {
    format!("n{i}")
}

/// Path of the state file of lab `prefix`.
pub fn state_path(prefix: &str) -> PathBuf {
    PathBuf::from(STATE_DIR).join(format!("{prefix}.json"))
}

fn validate_prefix(prefix: &str) -> Result<(), LabError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && prefix.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidPrefix(prefix.to_string()))
    }
}

/// Whether `name` can name a node of a lab: 1-63 characters `[a-z0-9.-]` starting and ending with a letter or
/// digit (a Kubernetes Node name fits), and not a name the lab's other namespaces use (`fabric`, 8 hex digits).
pub fn valid_node_name(name: &str) -> bool {
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && alnum(name.bytes().next())
        && alnum(name.bytes().last())
        && name != FABRIC
        && !(name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Check a list of node names.
fn validate_nodes(nodes: &[String]) -> Result<(), LabError> {
    if nodes.is_empty() || nodes.len() > MAX_NODES {
        return Err(LabError::InvalidNodes(format!("a lab has 1 to {MAX_NODES} nodes (got {})", nodes.len())));
    }
    let mut seen = BTreeSet::new();
    for n in nodes {
        if !valid_node_name(n) {
            return Err(LabError::InvalidNodes(format!(
                "{n:?}: use 1-63 characters [a-z0-9.-], starting and ending with a letter or digit, not `{FABRIC}` or 8 \
                 hex digits"
            )));
        }
        if !seen.insert(n) {
            return Err(LabError::InvalidNodes(format!("{n:?} is listed twice")));
        }
    }
    Ok(())
}

/// Whether `ip` may be used inside a lab: 10.0.0.0/8 or fd00::/8 only.
pub fn allowed_lab_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 10,
        IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
    }
}

/// Check a desired pod list; returns it keyed by pod key with addresses sorted (v4 first). Only host-network pods
/// may share an address (they share their node's). In a multi-node lab the underlay is reserved.
fn validate_pods(pods: &[LabPod], multi_node: bool) -> Result<BTreeMap<String, Want>, LabError> {
    let bad = |key: &str, reason: String| LabError::InvalidPod { key: key.to_string(), reason };
    let mut out = BTreeMap::new();
    let mut ids: BTreeMap<String, &str> = BTreeMap::new();
    let mut ips_seen: BTreeMap<IpAddr, (&str, bool)> = BTreeMap::new();
    for p in pods {
        let key = p.key.as_str();
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(key, "key must be non-empty without whitespace".into()));
        }
        if p.host_network && p.is_external() {
            return Err(bad(key, "an address outside the cluster cannot be a host-network pod".into()));
        }
        let v4 = p.ips.iter().filter(|ip| ip.is_ipv4()).count();
        let v6 = p.ips.len() - v4;
        if p.ips.is_empty() || v4 > 1 || v6 > 1 {
            return Err(bad(key, format!("needs 1 or 2 addresses, at most one per family (got {:?})", p.ips)));
        }
        for ip in &p.ips {
            if !allowed_lab_ip(*ip) {
                return Err(bad(key, format!("address {ip} is outside 10.0.0.0/8 and fd00::/8")));
            }
            if multi_node && is_underlay(*ip) {
                return Err(bad(
                    key,
                    format!("address {ip} is in the multi-node lab's underlay ({UNDERLAY_V4}, {UNDERLAY_V6})"),
                ));
            }
            match ips_seen.insert(*ip, (key, p.host_network)) {
                Some((other, true)) if p.host_network && other != key => {}
                Some((other, _)) => return Err(bad(key, format!("address {ip} is also used by pod {other:?}"))),
                None => {}
            }
        }
        let id = pod_id(key);
        if let Some(other) = ids.insert(id.clone(), key) {
            if other == key {
                return Err(bad(key, "listed twice".into()));
            }
            return Err(bad(key, format!("hash id {id} collides with pod {other:?}; rename one")));
        }
        let mut ips = p.ips.clone();
        ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
        out.insert(key.to_string(), Want { ips, host_network: p.host_network, node: p.node.clone(), at: None });
    }
    Ok(out)
}

/// Places pods on nodes (sets [`Want::at`]): in a single-node lab everything on its node; in a multi-node lab
/// addresses outside the cluster behind the fabric, pods asking for a node of the lab on it, host-network pods
/// sharing an address with one already placed beside it, running pods (`current`) on their node, and the others
/// on the node with the fewest pods (the first of them), in key order. Fails when host-network pods sharing an
/// address ask for different nodes.
fn place(
    nodes: &[String],
    multi_node: bool,
    want: &mut BTreeMap<String, Want>,
    current: &BTreeMap<String, PodNs>,
) -> Result<(), LabError> {
    if !multi_node {
        let node = nodes.first().cloned();
        for w in want.values_mut() {
            w.at.clone_from(&node);
        }
        return Ok(());
    }
    let known = |n: Option<&String>| n.filter(|n| nodes.contains(n)).cloned();
    let mut p = Placer {
        load: nodes.iter().map(|n| (n.clone(), 0)).collect(),
        host_at: BTreeMap::new(),
        placed: BTreeSet::new(),
    };
    // 1. addresses outside the cluster; pods asking for a node of the lab
    for (key, w) in want.iter_mut() {
        if key.starts_with(EXTERNAL_PREFIX) {
            w.at = None;
            p.placed.insert(key.clone());
        } else if let Some(n) = known(w.node.as_ref()) {
            p.put(key, w, n)?;
        }
    }
    // 2. host-network pods beside those sharing their address, running pods where they are; 3. the others, on
    // the node with the fewest pods
    for pass in [2, 3] {
        for (key, w) in want.iter_mut() {
            if p.placed.contains(key) {
                continue;
            }
            let beside =
                w.ips.iter().find_map(|ip| p.host_at.get(ip).map(|(n, _)| n.clone())).filter(|_| w.host_network);
            let running =
                current.get(key).filter(|c| c.host_network == w.host_network).and_then(|c| known(c.node.as_ref()));
            let node = match (pass, beside, running) {
                (_, Some(n), _) | (2, None, Some(n)) => n,
                (2, None, None) => continue,
                _ => match nodes.iter().min_by_key(|n| p.load.get(*n).copied().unwrap_or(0)) {
                    Some(n) => n.clone(),
                    None => continue,
                },
            };
            p.put(key, w, node)?;
        }
    }
    Ok(())
}

/// The state of [`place`].
struct Placer {
    /// Pods per node.
    load: BTreeMap<String, usize>,
    /// Address of a placed host-network pod → (its node, the pod).
    host_at: BTreeMap<IpAddr, (String, String)>,
    placed: BTreeSet<String>,
}

impl Placer {
    fn put(&mut self, key: &str, w: &mut Want, node: String) -> Result<(), LabError> {
        if w.host_network {
            for ip in &w.ips {
                match self.host_at.get(ip) {
                    Some((n, other)) if *n != node => {
                        return Err(LabError::InvalidPod {
                            key: key.to_string(),
                            reason: format!(
                                "host-network address {ip} is also host-network pod {other:?}'s, on node {n:?}, not \
                                 {node:?}"
                            ),
                        })
                    }
                    Some(_) => {}
                    None => {
                        self.host_at.insert(*ip, (node.clone(), key.to_string()));
                    }
                }
            }
        }
        *self.load.entry(node.clone()).or_default() += 1;
        w.at = Some(node);
        self.placed.insert(key.to_string());
        Ok(())
    }
}

/// The routes of every pod netns (both families, whatever addresses the pod has), as `ip -batch` lines.
const POD_ROUTES: &str = "route replace 169.254.1.1/32 dev eth0 scope link
route replace default via 169.254.1.1 dev eth0
route replace ::/0 via fe80::1 dev eth0
";

/// `10.1.2.3/32` or `fd00::1/128`.
fn host_cidr(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

/// `addr add` line for a pod address (IPv6 without duplicate address detection, so it is usable at once).
fn pod_addr_add(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("addr add {} dev eth0\n", host_cidr(ip)),
        IpAddr::V6(_) => format!("addr add {} dev eth0 nodad\n", host_cidr(ip)),
    }
}

/// Names of all existing netns of lab `prefix` (`<prefix>-*`).
/// The processes running in network namespace `netns` (`ip netns pids`).
pub fn processes_in(r: &dyn Runner, netns: &str) -> Vec<u32> {
    r.run(&["ip", "netns", "pids", netns], None)
        .map(|out| out.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// Stops every process in `names` (SIGTERM, then SIGKILL after up to a second): best effort.
fn stop_processes_in(r: &dyn Runner, names: &[String]) {
    let pids = |r: &dyn Runner| -> Vec<u32> { names.iter().flat_map(|n| processes_in(r, n)).collect() };
    let first = pids(r);
    if first.is_empty() {
        return;
    }
    let term: Vec<String> = first.iter().map(u32::to_string).collect();
    let mut argv = vec!["kill", "-TERM"];
    argv.extend(term.iter().map(String::as_str));
    let _ = r.run(&argv, None);
    for _ in 0..20 {
        if pids(r).is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let left: Vec<String> = pids(r).iter().map(u32::to_string).collect();
    if !left.is_empty() {
        let mut argv = vec!["kill", "-KILL"];
        argv.extend(left.iter().map(String::as_str));
        let _ = r.run(&argv, None);
    }
}

fn lab_netns(r: &dyn Runner, prefix: &str) -> Result<Vec<String>, LabError> {
    let dash = format!("{prefix}-");
    Ok(netns_list(r)?.into_iter().filter(|n| n.starts_with(&dash)).collect())
}

/// The sysctls of every routing netns (a node's, the fabric's): forwarding on, no duplicate address detection, no
/// reverse-path filter (replies may come back another way than requests left).
const ROUTER_SYSCTLS: [(&str, &str); 5] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
    ("net.ipv6.conf.default.accept_dad", "0"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
];

/// Routes per netns to addresses living elsewhere: netns → (address → next hop).
type Routes = BTreeMap<String, BTreeMap<IpAddr, IpAddr>>;

impl Lab {
    /// Create a single-node lab with the given pods. Fails with [`LabError::InUse`] if any netns `<prefix>-*`
    /// already exists. On failure everything created so far is removed again.
    pub fn up(r: &dyn Runner, prefix: &str, pods: &[LabPod]) -> Result<Lab, LabError> {
        Lab::up_nodes(r, prefix, &anonymous_nodes(1), pods)
    }

    /// Create a lab with the given nodes (see [`anonymous_nodes`]; one node gives the single-node layout) and pods.
    /// Fails with [`LabError::InUse`] if any netns `<prefix>-*` already exists. On failure everything created so
    /// far is removed again.
    pub fn up_nodes(r: &dyn Runner, prefix: &str, nodes: &[String], pods: &[LabPod]) -> Result<Lab, LabError> {
        validate_prefix(prefix)?;
        validate_nodes(nodes)?;
        let multi = nodes.len() > 1;
        let mut want = validate_pods(pods, multi)?;
        place(nodes, multi, &mut want, &BTreeMap::new())?;
        let existing = lab_netns(r, prefix)?;
        if !existing.is_empty() {
            return Err(LabError::InUse { prefix: prefix.to_string(), netns: existing });
        }
        let mut lab = Lab::unwired(prefix, nodes);
        let built = (|| -> Result<(), LabError> {
            lab.wire_nodes(r)?;
            lab.apply_inner(r, &want, &mut LabDelta::default())?;
            lab.save()
        })();
        match built {
            Ok(()) => Ok(lab),
            Err(e) => {
                if let Err(e2) = Lab::down(r, prefix) {
                    tracing::warn!(prefix, error = %e2, "cleanup after failed lab up failed");
                }
                Err(e)
            }
        }
    }

    /// The lab with these nodes and no pods, before [`Lab::wire_nodes`].
    fn unwired(prefix: &str, nodes: &[String]) -> Lab {
        let multi = nodes.len() > 1;
        Lab {
            prefix: prefix.to_string(),
            nodes: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| LabNode {
                    name: n.clone(),
                    netns: node_netns_of(prefix, n),
                    underlay: if multi { underlay_address(i).to_vec() } else { Vec::new() },
                })
                .collect(),
            fabric: multi.then(|| fabric_netns_name(prefix)),
            pods: BTreeMap::new(),
        }
    }

    /// Create the node namespaces (and the fabric), without pods.
    fn wire_nodes(&self, r: &dyn Runner) -> Result<(), LabError> {
        let routers: Vec<&str> = self.nodes.iter().map(|n| n.netns.as_str()).chain(self.fabric.as_deref()).collect();
        let add: String = routers.iter().map(|n| format!("netns add {n}\n")).collect();
        ip_batch(r, None, &add, false)?;
        for ns in &routers {
            sysctl_in_netns(r, ns, &ROUTER_SYSCTLS)?;
            ip_batch(r, Some(ns), &format!("link set lo up\naddr add {GATEWAY_V4}/32 dev lo\n"), false)?;
        }
        let Some(fabric) = &self.fabric else { return Ok(()) };
        // Bridged frames need no netfilter in the fabric (its own routing still has the inet hooks, unused).
        let no_br_nf = [("net.bridge.bridge-nf-call-iptables", "0"), ("net.bridge.bridge-nf-call-ip6tables", "0")];
        if let Err(e) = sysctl_in_netns(r, fabric, &no_br_nf) {
            tracing::debug!(error = %e, "bridge netfilter sysctls not set in the fabric");
        }
        let mut script = format!(
            "link add br0 type bridge\nlink set br0 up\naddr add {FABRIC_V4}/24 dev br0\naddr add {FABRIC_V6}/64 dev br0 nodad\n"
        );
        for (i, n) in self.nodes.iter().enumerate() {
            let port = fabric_port_name(i);
            script.push_str(&format!("link add {port} type veth peer name eth0 netns {}\n", n.netns));
            script.push_str(&format!("link set {port} master br0 up\n"));
        }
        ip_batch(r, Some(fabric), &script, false)?;
        for n in &self.nodes {
            let mut script = String::new();
            for ip in &n.underlay {
                match ip {
                    IpAddr::V4(_) => script.push_str(&format!("addr add {ip}/24 dev eth0\n")),
                    IpAddr::V6(_) => script.push_str(&format!("addr add {ip}/64 dev eth0 nodad\n")),
                }
            }
            script.push_str(&format!(
                "link set eth0 up\nroute replace default via {FABRIC_V4} dev eth0\nroute replace ::/0 via {FABRIC_V6} dev eth0\n"
            ));
            ip_batch(r, Some(&n.netns), &script, false)?;
        }
        Ok(())
    }

    /// Rediscover a running lab from its state file. `Ok(None)` when there is no state file or one of its node
    /// namespaces (or its fabric) is gone. Pods whose netns has disappeared are left out (a later [`Lab::apply`]
    /// recreates them).
    pub fn attach(r: &dyn Runner, prefix: &str) -> Result<Option<Lab>, LabError> {
        validate_prefix(prefix)?;
        let path = state_path(prefix);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LabError::StateIo { path, source }),
        };
        let state = State::parse(prefix, &path, &text)?;
        let existing: HashSet<String> = netns_list(r)?.into_iter().collect();
        let routers = state.nodes.iter().map(|n| &n.netns).chain(&state.fabric);
        if let Some(gone) = routers.into_iter().find(|n| !existing.contains(*n)) {
            tracing::warn!(prefix, netns = %gone, "lab state file found but a node netns is gone");
            return Ok(None);
        }
        let mut pods = state.pods;
        pods.retain(|key, p| {
            let present = existing.contains(&p.netns);
            if !present {
                tracing::warn!(prefix, key, netns = %p.netns, "pod netns vanished; apply will recreate it");
            }
            present
        });
        Ok(Some(Lab { prefix: prefix.to_string(), nodes: state.nodes, fabric: state.fabric, pods }))
    }

    /// Make the lab contain exactly `pods`: create new ones, delete vanished ones, fix changed addresses, move pods
    /// whose node changed. The state file is rewritten (also after a partial failure, to match what exists).
    pub fn apply(&mut self, r: &dyn Runner, pods: &[LabPod]) -> Result<LabDelta, LabError> {
        let mut want = validate_pods(pods, self.is_multi_node())?;
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        place(&names, self.is_multi_node(), &mut want, &self.pods)?;
        let mut delta = LabDelta::default();
        let result = self.apply_inner(r, &want, &mut delta);
        let saved = self.save();
        result?;
        saved?;
        Ok(delta)
    }

    /// The netns a pod placed at `at` hangs off: its node's, or the fabric (`None`).
    fn router_of(&self, at: Option<&str>) -> &str {
        match (at, &self.fabric) {
            (None, Some(f)) => f,
            (at, _) => {
                let node = at.and_then(|a| self.nodes.iter().find(|n| n.name == a));
                node.or(self.nodes.first()).map_or("", |n| n.netns.as_str())
            }
        }
    }

    /// The addresses each node netns carries for host-network pods.
    fn node_addresses<'a>(
        &self,
        pods: impl IntoIterator<Item = (&'a [IpAddr], bool, Option<&'a str>)>,
    ) -> BTreeMap<String, BTreeSet<IpAddr>> {
        let mut out: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        for (ips, host, at) in pods {
            if host {
                out.entry(self.router_of(at).to_string()).or_default().extend(ips.iter().copied());
            }
        }
        out
    }

    /// The routes every node and the fabric of a multi-node lab need to addresses on other nodes: via the
    /// underlay address (of the address's family) of the node holding it. Addresses behind the fabric are reached
    /// by the nodes' default routes.
    fn remote_routes<'a>(&self, pods: impl IntoIterator<Item = (&'a [IpAddr], Option<&'a str>)>) -> Routes {
        let mut out = Routes::new();
        let Some(fabric) = &self.fabric else { return out };
        for (ips, at) in pods {
            let Some(home) = at.and_then(|a| self.nodes.iter().find(|n| n.name == a)) else { continue };
            for ip in ips {
                let Some(hop) = home.underlay.iter().find(|u| u.is_ipv4() == ip.is_ipv4()) else { continue };
                for ns in self.nodes.iter().filter(|n| n.name != home.name).map(|n| &n.netns).chain([fabric]) {
                    out.entry(ns.clone()).or_default().insert(*ip, *hop);
                }
            }
        }
        out
    }

    /// `route replace` lines for the routes of `to` that `from` lacks (or has with another next hop), and
    /// `route del` lines for the routes of `from` that `to` lacks, per netns.
    fn route_scripts(&self, from: &Routes, to: &Routes) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let mut add: BTreeMap<String, String> = BTreeMap::new();
        let mut del: BTreeMap<String, String> = BTreeMap::new();
        let dev = |ns: &str| if self.fabric.as_deref() == Some(ns) { "br0" } else { "eth0" };
        let empty = BTreeMap::new();
        for (ns, routes) in to {
            let old = from.get(ns).unwrap_or(&empty);
            for (ip, hop) in routes.iter().filter(|(ip, hop)| old.get(*ip) != Some(*hop)) {
                let line = format!("route replace {} via {hop} dev {}\n", host_cidr(ip), dev(ns));
                add.entry(ns.clone()).or_default().push_str(&line);
            }
        }
        for (ns, routes) in from {
            let new = to.get(ns).unwrap_or(&empty);
            for (ip, hop) in routes.iter().filter(|(ip, _)| !new.contains_key(*ip)) {
                let line = format!("route del {} via {hop} dev {}\n", host_cidr(ip), dev(ns));
                del.entry(ns.clone()).or_default().push_str(&line);
            }
        }
        (add, del)
    }

    fn apply_inner(
        &mut self,
        r: &dyn Runner,
        want: &BTreeMap<String, Want>,
        delta: &mut LabDelta,
    ) -> Result<(), LabError> {
        let node_before =
            self.node_addresses(self.pods.values().map(|p| (p.ips.as_slice(), p.host_network, p.node.as_deref())));
        let node_after =
            self.node_addresses(want.values().map(|w| (w.ips.as_slice(), w.host_network, w.at.as_deref())));
        let routes_before = self.remote_routes(self.pods.values().map(|p| (p.ips.as_slice(), p.node.as_deref())));
        let routes_after = self.remote_routes(want.values().map(|w| (w.ips.as_slice(), w.at.as_deref())));
        let (routes_add, routes_del) = self.route_scripts(&routes_before, &routes_after);
        // 0. routes to addresses on other nodes that are gone or now local (before a local route may take them)
        for (ns, script) in &routes_del {
            if let Err(e) = ip_batch(r, Some(ns), script, true) {
                tracing::debug!(netns = %ns, error = %e, "some routes were already gone");
            }
        }
        // 1. pods that vanished, and pods that move between a netns of their own and the node's, or between nodes
        // (re-added below)
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(k, p)| want.get(*k).is_none_or(|w| w.host_network != p.host_network || w.at != p.node))
            .map(|(k, _)| k.clone())
            .collect();
        if !gone.is_empty() {
            self.remove_pods(r, &gone)?;
            delta.removed = gone.iter().filter(|k| !want.contains_key(*k)).cloned().collect();
            delta.changed = gone.iter().filter(|k| want.contains_key(*k)).cloned().collect();
        }
        // 2. node addresses no host-network pod has any more (before a pod netns may take one of them)
        let empty = BTreeSet::new();
        for (ns, before) in &node_before {
            let del: BTreeSet<IpAddr> = before.difference(node_after.get(ns).unwrap_or(&empty)).copied().collect();
            ip_batch(r, Some(ns), &node_addr_script(&del, false), false)?;
        }
        // 3. changed addresses: first drop every stale address/route (an address may move between pods), then add.
        let changed: Vec<(String, Vec<IpAddr>, Vec<IpAddr>)> = want
            .iter()
            .filter_map(|(k, w)| {
                let cur = self.pods.get(k)?;
                (cur.ips != w.ips).then(|| (k.clone(), cur.ips.clone(), w.ips.clone()))
            })
            .collect();
        let mut router_del: BTreeMap<String, String> = BTreeMap::new();
        let mut router_add: BTreeMap<String, String> = BTreeMap::new();
        for (key, old, new) in &changed {
            let Some(p) = self.pods.get(key) else { continue };
            if p.host_network {
                continue; // its addresses are the node's (steps 2 and 4)
            }
            let router = self.router_of(p.node.as_deref()).to_string();
            // Add before deleting, and restore the routes afterwards: deleting the last IPv4 address of eth0
            // makes the kernel flush every IPv4 route through it (the default route included).
            let mut pod_script = String::new();
            for ip in new.iter().filter(|ip| !old.contains(ip)) {
                let line = format!("route replace {} dev {}\n", host_cidr(ip), p.host_veth);
                router_add.entry(router.clone()).or_default().push_str(&line);
                pod_script.push_str(&pod_addr_add(ip));
            }
            for ip in old.iter().filter(|ip| !new.contains(ip)) {
                let line = format!("route del {} dev {}\n", host_cidr(ip), p.host_veth);
                router_del.entry(router.clone()).or_default().push_str(&line);
                pod_script.push_str(&format!("addr del {} dev eth0\n", host_cidr(ip)));
            }
            pod_script.push_str(POD_ROUTES);
            ip_batch(r, Some(&p.netns), &pod_script, false)?;
        }
        for (ns, script) in &router_del {
            ip_batch(r, Some(ns), script, false)?;
        }
        for (ns, script) in &router_add {
            ip_batch(r, Some(ns), script, false)?;
        }
        for (key, _, new) in &changed {
            if let Some(p) = self.pods.get_mut(key) {
                p.ips.clone_from(new);
            }
        }
        delta.changed.extend(changed.into_iter().map(|(k, _, _)| k));
        delta.changed.sort();
        // 4. node addresses of new host-network pods (after any pod netns gave them up)
        for (ns, after) in &node_after {
            let add: BTreeSet<IpAddr> = after.difference(node_before.get(ns).unwrap_or(&empty)).copied().collect();
            ip_batch(r, Some(ns), &node_addr_script(&add, true), false)?;
        }
        // 5. new pods
        let new: Vec<(String, Want)> =
            want.iter().filter(|(k, _)| !self.pods.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        if !new.is_empty() {
            self.add_pods(r, &new)?;
            delta.added = new.into_iter().map(|(k, _)| k).filter(|k| !delta.changed.contains(k)).collect();
        }
        // 6. routes to addresses on other nodes
        for (ns, script) in &routes_add {
            ip_batch(r, Some(ns), script, false)?;
        }
        Ok(())
    }

    /// Create and wire the netns of each new pod (a host-network pod only joins its node's netns: its addresses
    /// are the caller's business); on failure, remove what was created for them.
    fn add_pods(&mut self, r: &dyn Runner, new: &[(String, Want)]) -> Result<(), LabError> {
        if new.is_empty() {
            return Ok(());
        }
        type Entries<'a> = Vec<&'a (String, Want)>;
        let (hosts, new): (Entries, Entries) = new.iter().partition(|(_, w)| w.host_network);
        for (key, w) in hosts {
            let p = PodNs {
                netns: self.router_of(w.at.as_deref()).to_string(),
                host_veth: String::new(),
                ips: w.ips.clone(),
                host_network: true,
                node: w.at.clone(),
            };
            self.pods.insert(key.clone(), p);
        }
        if new.is_empty() {
            return Ok(());
        }
        let entries: Vec<(String, PodNs)> = new
            .iter()
            .map(|(key, w)| {
                (
                    key.clone(),
                    PodNs {
                        netns: pod_netns_name(&self.prefix, key),
                        host_veth: host_veth_name(key),
                        ips: w.ips.clone(),
                        host_network: false,
                        node: w.at.clone(),
                    },
                )
            })
            .collect();
        let created = (|| -> Result<(), LabError> {
            let mut add_ns = String::new();
            let mut routers: BTreeMap<String, String> = BTreeMap::new();
            for (_, p) in &entries {
                add_ns.push_str(&format!("netns add {}\n", p.netns));
                let v = &p.host_veth;
                let node = routers.entry(self.router_of(p.node.as_deref()).to_string()).or_default();
                node.push_str(&format!("link add {v} type veth peer name eth0 netns {}\n", p.netns));
                node.push_str(&format!("link set {v} up\n"));
                node.push_str(&format!("addr add {GATEWAY_V6}/64 dev {v} nodad\n"));
                for ip in &p.ips {
                    node.push_str(&format!("route replace {} dev {v}\n", host_cidr(ip)));
                }
            }
            ip_batch(r, None, &add_ns, false)?;
            for (ns, script) in &routers {
                ip_batch(r, Some(ns), script, false)?;
            }
            for (_, p) in &entries {
                let mut pod = String::from("link set lo up\n");
                for ip in &p.ips {
                    pod.push_str(&pod_addr_add(ip));
                }
                pod.push_str("link set eth0 up\n");
                pod.push_str(POD_ROUTES);
                ip_batch(r, Some(&p.netns), &pod, false)?;
            }
            Ok(())
        })();
        match created {
            Ok(()) => {
                self.pods.extend(entries);
                Ok(())
            }
            Err(e) => {
                let mut links: BTreeMap<&str, String> = BTreeMap::new();
                for (_, p) in &entries {
                    let ns = self.router_of(p.node.as_deref());
                    links.entry(ns).or_default().push_str(&format!("link del {}\n", p.host_veth));
                }
                for (ns, script) in &links {
                    let _ = ip_batch(r, Some(ns), script, true);
                }
                let existing: HashSet<String> = netns_list(r).map(|v| v.into_iter().collect()).unwrap_or_default();
                let del: String = entries
                    .iter()
                    .filter(|(_, p)| existing.contains(&p.netns))
                    .map(|(_, p)| format!("netns del {}\n", p.netns))
                    .collect();
                if let Err(e2) = ip_batch(r, None, &del, true) {
                    tracing::warn!(error = %e2, "cleanup after failed pod creation failed");
                }
                Err(e)
            }
        }
    }

    /// Delete the netns (and veth) of each listed pod.
    fn remove_pods(&mut self, r: &dyn Runner, keys: &[String]) -> Result<(), LabError> {
        // A host-network pod has no netns or veth of its own (its addresses are the node's: see `apply_inner`).
        let doomed: Vec<(&String, &PodNs)> =
            keys.iter().filter_map(|k| Some((k, self.pods.get(k)?))).filter(|(_, p)| !p.host_network).collect();
        if doomed.is_empty() {
            for k in keys {
                self.pods.remove(k);
            }
            return Ok(());
        }
        // Deleting the veth first makes its removal (and its routes') synchronous; netns teardown is asynchronous.
        let mut links: BTreeMap<&str, String> = BTreeMap::new();
        for (_, p) in &doomed {
            links
                .entry(self.router_of(p.node.as_deref()))
                .or_default()
                .push_str(&format!("link del {}\n", p.host_veth));
        }
        for (ns, script) in &links {
            if let Err(e) = ip_batch(r, Some(ns), script, true) {
                tracing::debug!(error = %e, "some pod veths were already gone");
            }
        }
        let existing: HashSet<String> = netns_list(r)?.into_iter().collect();
        let del: String = doomed
            .iter()
            .filter(|(_, p)| existing.contains(&p.netns))
            .map(|(_, p)| format!("netns del {}\n", p.netns))
            .collect();
        ip_batch(r, None, &del, true)?;
        for k in keys {
            self.pods.remove(k);
        }
        Ok(())
    }

    /// Delete every netns whose name starts with `<prefix>-` (whether this lab made it or not) and the state file.
    /// Needs no state: works after a crash. Returns how many namespaces were deleted.
    pub fn down(r: &dyn Runner, prefix: &str) -> Result<usize, LabError> {
        validate_prefix(prefix)?;
        let names = lab_netns(r, prefix)?;
        // Processes running in the lab's namespaces (node agents, listeners) would keep a deleted namespace
        // alive: they are stopped first, politely, then for good.
        stop_processes_in(r, &names);
        let script: String = names.iter().map(|n| format!("netns del {n}\n")).collect();
        ip_batch(r, None, &script, true)?;
        let path = state_path(prefix);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(LabError::StateIo { path, source }),
        }
        Ok(names.len())
    }

    fn save(&self) -> Result<(), LabError> {
        let path = state_path(&self.prefix);
        let io = |source| LabError::StateIo { path: path.clone(), source };
        std::fs::create_dir_all(STATE_DIR).map_err(io)?;
        let state = State {
            version: STATE_VERSION,
            prefix: self.prefix.clone(),
            node_netns: self.node_netns().to_string(),
            nodes: self.nodes.clone(),
            fabric: self.fabric.clone(),
            pods: self.pods.clone(),
        };
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| LabError::BadState { path: path.clone(), reason: e.to_string() })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// The lab's prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The (first) node's netns (`<prefix>-node` in a single-node lab): load the ruleset here. A multi-node lab
    /// needs it in every node's ([`Lab::nodes`]).
    pub fn node_netns(&self) -> &str {
        self.nodes.first().map_or("", |n| n.netns.as_str())
    }

    /// The nodes, in order (node `i` has underlay address [`underlay_address`]`(i)` in a multi-node lab).
    pub fn nodes(&self) -> &[LabNode] {
        &self.nodes
    }

    /// Whether the lab has more than one node (and a fabric).
    pub fn is_multi_node(&self) -> bool {
        self.fabric.is_some()
    }

    /// The fabric netns of a multi-node lab.
    pub fn fabric_netns(&self) -> Option<&str> {
        self.fabric.as_deref()
    }

    /// The node pod `key` runs on; `None` for an unknown pod, or an address outside the cluster behind the fabric.
    pub fn pod_node(&self, key: &str) -> Option<&str> {
        self.pods.get(key).and_then(|p| p.node.as_deref())
    }

    /// The netns of pod `key`.
    pub fn pod_netns(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|p| p.netns.as_str())
    }

    /// The node-side veth of pod `key` (what `oifname` / `iifname` see in its node netns); `None` for a
    /// host-network pod.
    pub fn host_veth(&self, key: &str) -> Option<&str> {
        self.pods.get(key).filter(|p| !p.host_network).map(|p| p.host_veth.as_str())
    }

    /// Whether pod `key` is a host-network pod (it lives in its node's netns).
    pub fn is_host_network(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.host_network)
    }

    /// The addresses of pod `key` (IPv4 first).
    pub fn pod_ips(&self, key: &str) -> Option<&[IpAddr]> {
        self.pods.get(key).map(|p| p.ips.as_slice())
    }

    /// The pod whose address is `ip`.
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<&str> {
        self.pods.iter().find(|(_, p)| p.ips.contains(&ip)).map(|(k, _)| k.as_str())
    }

    /// `(key, netns, addresses)` of every pod, sorted by key.
    pub fn pods(&self) -> impl Iterator<Item = (&str, &str, &[IpAddr])> {
        self.pods.iter().map(|(k, p)| (k.as_str(), p.netns.as_str(), p.ips.as_slice()))
    }

    /// The pods as [`LabPod`]s (for diffing or re-applying), each asking for the node it is on.
    pub fn lab_pods(&self) -> Vec<LabPod> {
        self.pods
            .iter()
            .map(|(k, p)| LabPod {
                key: k.clone(),
                ips: p.ips.clone(),
                host_network: p.host_network,
                node: p.node.clone(),
            })
            .collect()
    }

    /// Pod keys, sorted.
    pub fn keys(&self) -> BTreeSet<&str> {
        self.pods.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn fnv1a_known_values() {
        // Reference values of 32-bit FNV-1a.
        assert_eq!(pod_id(""), "811c9dc5");
        assert_eq!(pod_id("a"), "e40c292c");
        assert_eq!(pod_id("foobar"), "bf9cf968");
        assert_eq!(host_veth_name("default/web").len(), 9);
        assert_eq!(pod_netns_name("lab", "a"), "lab-e40c292c");
        assert_eq!(node_netns_name("lab"), "lab-node");
        assert!(POD_ROUTES.contains(GATEWAY_V4) && POD_ROUTES.contains(GATEWAY_V6));
    }

    #[test]
    fn prefix_rules() {
        assert!(validate_prefix("nptest-x-12").is_ok());
        for bad in ["", "-x", "a b", "a/b", "a.b", &"x".repeat(65)] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pod_rules() {
        let ok = validate_pods(
            &[LabPod::new("a/x", [ip("fd00::1"), ip("10.0.0.1")]), LabPod::new("external/x", [ip("10.99.0.1")])],
            false,
        )
        .unwrap();
        assert_eq!(ok["a/x"].ips, vec![ip("10.0.0.1"), ip("fd00::1")]);
        let cases = [
            vec![LabPod::new("a/x", [])],
            vec![LabPod::new("a/x", [ip("10.0.0.1"), ip("10.0.0.2")])],
            vec![LabPod::new("a/x", [ip("192.168.1.1")])],
            vec![LabPod::new("a/x", [ip("2001:db8::1")])],
            vec![LabPod::new("a/x", [ip("10.0.0.1")]), LabPod::new("a/y", [ip("10.0.0.1")])],
            vec![LabPod::new("a/x", [ip("10.0.0.1")]), LabPod::new("a/x", [ip("10.0.0.2")])],
            vec![LabPod::new("a x", [ip("10.0.0.1")])],
        ];
        for c in cases {
            assert!(validate_pods(&c, false).is_err(), "{c:?}");
        }
        assert!(LabPod::new("external/x", [ip("10.0.0.1")]).is_external());
        // Host-network pods share their node's address, with each other only.
        let hosts = validate_pods(
            &[
                LabPod::host_network("ns/a", [ip("10.1.0.1")]),
                LabPod::host_network("ns/b", [ip("10.1.0.1"), ip("fd00:1::1")]),
                LabPod::new("ns/c", [ip("10.2.0.1")]),
            ],
            false,
        )
        .unwrap();
        assert!(hosts["ns/b"].host_network && !hosts["ns/c"].host_network);
        for bad in [
            vec![LabPod::host_network("ns/a", [ip("10.1.0.1")]), LabPod::new("ns/b", [ip("10.1.0.1")])],
            vec![LabPod::new("ns/a", [ip("10.1.0.1")]), LabPod::host_network("ns/b", [ip("10.1.0.1")])],
            vec![LabPod::host_network("ns/a", [ip("10.1.0.1")]), LabPod::host_network("ns/a", [ip("10.1.0.1")])],
            vec![LabPod::host_network("external/x", [ip("10.1.0.1")])],
        ] {
            assert!(validate_pods(&bad, false).is_err(), "{bad:?}");
        }
        assert!(allowed_lab_ip(ip("fd12::1")) && !allowed_lab_ip(ip("fe80::1")) && !allowed_lab_ip(ip("11.0.0.1")));
    }

    /// A fake runner that records commands and simulates `ip netns list`.
    struct Rec {
        calls: std::cell::RefCell<Vec<String>>,
        netns: &'static str,
    }
    impl Runner for Rec {
        fn run(&self, argv: &[&str], stdin: Option<&str>) -> Result<String, ApplyError> {
            self.calls.borrow_mut().push(format!("{} <<{}", argv.join(" "), stdin.unwrap_or("")));
            Ok(if argv == ["ip", "netns", "list"] { self.netns.to_string() } else { String::new() })
        }
    }

    #[test]
    fn down_deletes_only_prefixed() {
        let r = Rec {
            calls: Default::default(),
            netns: "unittest-lab-7-node (id: 1)\nunittest-lab-7-0000abcd\nunittest-lab-70-node\nother\n",
        };
        assert_eq!(Lab::down(&r, "unittest-lab-7").unwrap(), 2);
        let calls = r.calls.borrow();
        // The processes of the two namespaces are looked for first (none here), then both are deleted at once.
        assert_eq!(calls[1], "ip netns pids unittest-lab-7-node <<");
        assert_eq!(calls[2], "ip netns pids unittest-lab-7-0000abcd <<");
        assert_eq!(calls[3], "ip -force -batch - <<netns del unittest-lab-7-node\nnetns del unittest-lab-7-0000abcd\n");
    }

    /// Host-network pods get no netns: their addresses go on the node's `lo`, once however many pods share
    /// them, and leave it with the last of those pods; a pod that becomes a host-network pod leaves its netns.
    #[test]
    fn host_network_pods_live_in_the_node_netns() {
        let r = Rec { calls: Default::default(), netns: "" };
        let mut lab = Lab::unwired("unittest-lab-9", &anonymous_nodes(1));
        let apply = |lab: &mut Lab, pods: &[LabPod]| -> (LabDelta, Vec<String>) {
            r.calls.borrow_mut().clear();
            let mut delta = LabDelta::default();
            let mut want = validate_pods(pods, false).unwrap();
            place(&anonymous_nodes(1), false, &mut want, &lab.pods).unwrap();
            lab.apply_inner(&r, &want, &mut delta).unwrap();
            (delta, r.calls.borrow().clone())
        };
        let a = LabPod::host_network("ns/a", [ip("10.1.0.1")]);
        let b = LabPod::host_network("ns/b", [ip("10.1.0.1")]);
        let c = LabPod::new("ns/c", [ip("10.2.0.1")]);
        let (delta, calls) = apply(&mut lab, &[a, b.clone(), c.clone()]);
        assert_eq!(delta.added, ["ns/a", "ns/b", "ns/c"]);
        let node_lo: Vec<&String> = calls.iter().filter(|c| c.contains("dev lo")).collect();
        assert_eq!(node_lo, ["ip -n unittest-lab-9-node -batch - <<addr add 10.1.0.1/32 dev lo\n"]);
        assert_eq!(calls.iter().filter(|c| c.contains("netns add")).count(), 1, "{calls:?}");
        assert!(calls.iter().any(|c| c.contains("netns add unittest-lab-9-") && c.contains(&pod_id("ns/c"))));
        assert_eq!(lab.pod_netns("ns/a"), Some("unittest-lab-9-node"));
        assert_eq!(lab.host_veth("ns/a"), None);
        assert!(lab.is_host_network("ns/b") && !lab.is_host_network("ns/c"));
        // ns/a goes: ns/b still has the address.
        let (delta, calls) = apply(&mut lab, &[b, c]);
        assert_eq!(delta.removed, ["ns/a"]);
        assert!(calls.is_empty(), "{calls:?}");
        // ns/b goes, ns/c becomes a host-network pod on another node: its netns goes, the node takes its address.
        let c_host = LabPod::host_network("ns/c", [ip("10.1.0.2")]);
        let (delta, calls) = apply(&mut lab, &[c_host]);
        assert_eq!((delta.removed, delta.changed), (vec!["ns/b".to_string()], vec!["ns/c".to_string()]));
        let lo: Vec<&str> =
            calls.iter().filter(|c| c.contains("dev lo")).map(|c| &c[c.find("<<").unwrap()..]).collect();
        assert_eq!(lo, ["<<addr del 10.1.0.1/32 dev lo\n", "<<addr add 10.1.0.2/32 dev lo\n"]);
        assert!(calls.iter().any(|c| c.contains(&format!("link del v{}", pod_id("ns/c")))), "{calls:?}");
        assert_eq!(lab.lab_pods(), vec![LabPod::host_network("ns/c", [ip("10.1.0.2")]).on_node("node")]);
    }

    #[test]
    fn up_refuses_a_prefix_in_use() {
        let r = Rec { calls: Default::default(), netns: "unittest-lab-8-node\n" };
        assert!(matches!(Lab::up(&r, "unittest-lab-8", &[]), Err(LabError::InUse { .. })));
        assert_eq!(r.calls.borrow().len(), 1); // only the listing
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn node_names_and_underlay_addresses() {
        assert_eq!(anonymous_nodes(1), ["node"]);
        assert_eq!(anonymous_nodes(3), ["node0", "node1", "node2"]);
        assert_eq!(node_netns_of("lab", "node1"), "lab-node1");
        assert_eq!(node_netns_of("lab", SINGLE_NODE), node_netns_name("lab"));
        assert_eq!(fabric_netns_name("lab"), "lab-fabric");
        assert_eq!(underlay_address(0), [ip("10.254.0.1"), ip("fd00:254::1")]);
        assert_eq!(underlay_address(252), [ip("10.254.0.253"), ip("fd00:254::fd")]);
        assert!(is_underlay(IpAddr::V4(FABRIC_V4)) && is_underlay(IpAddr::V6(FABRIC_V6)));
        assert!(is_underlay(ip("10.254.0.7")) && is_underlay(ip("fd00:254::1:2")));
        assert!(!is_underlay(ip("10.254.1.1")) && !is_underlay(ip("fd00:254:0:1::1")) && !is_underlay(ip("10.0.0.1")));
        for n in ["n1", "worker-1", "ip-10-0-0-1.ec2.internal", "node0", "kind-control-plane"] {
            assert!(valid_node_name(n), "{n}");
        }
        for n in ["", "fabric", "deadbeef", "Node1", "-x", "x-", "a_b", "a b", &"x".repeat(64)] {
            assert!(!valid_node_name(n), "{n:?}");
        }
        assert!(validate_nodes(&names(&["a", "b"])).is_ok());
        assert!(validate_nodes(&[]).is_err());
        assert!(validate_nodes(&names(&["a", "a"])).is_err());
        assert!(validate_nodes(&anonymous_nodes(MAX_NODES)).is_ok());
        assert!(validate_nodes(&anonymous_nodes(MAX_NODES + 1)).is_err());
        // The underlay is reserved in multi-node labs only.
        let p = [LabPod::new("a/x", [ip("10.254.0.9")])];
        assert!(validate_pods(&p, false).is_ok());
        assert!(matches!(validate_pods(&p, true), Err(LabError::InvalidPod { .. })));
    }

    fn placed(nodes: &[String], pods: &[LabPod], current: &BTreeMap<String, PodNs>) -> Vec<(String, Option<String>)> {
        let mut want = validate_pods(pods, nodes.len() > 1).unwrap();
        place(nodes, nodes.len() > 1, &mut want, current).unwrap();
        want.into_iter().map(|(k, w)| (k, w.at)).collect()
    }

    fn at<'a>(v: &'a [(String, Option<String>)], key: &str) -> Option<&'a str> {
        v.iter().find(|(k, _)| k == key).and_then(|(_, n)| n.as_deref())
    }

    /// Pods go to the node they ask for when the lab has it, else evenly over the nodes in key order; addresses
    /// outside the cluster behind the fabric; host-network pods sharing an address together; running pods stay.
    #[test]
    fn placement_honours_node_names_else_spreads_evenly() {
        let nodes = names(&["n1", "n2", "n3"]);
        let pod = |k: &str, i: u8| LabPod::new(k, [IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))]);
        // Spread: round robin in key order, deterministic.
        let pods: Vec<LabPod> = (1..=7).map(|i| pod(&format!("ns/p{i}"), i)).collect();
        let v = placed(&nodes, &pods, &BTreeMap::new());
        let got: Vec<&str> = v.iter().filter_map(|(_, n)| n.as_deref()).collect();
        assert_eq!(got, ["n1", "n2", "n3", "n1", "n2", "n3", "n1"]);
        assert_eq!(placed(&nodes, &pods, &BTreeMap::new()), v);
        // By name; an unknown node spreads; the asked-for pods count in the load.
        let pods = vec![
            pod("ns/a", 1).on_node("n3"),
            pod("ns/b", 2).on_node("n3"),
            pod("ns/c", 3).on_node("elsewhere"),
            pod("ns/d", 4),
            LabPod::new("external/10.9.0.1", [ip("10.9.0.1")]).on_node("n1"),
            LabPod::host_network("sys/h1", [ip("10.8.0.1")]).on_node("n2"),
            LabPod::host_network("node/10.8.0.1", [ip("10.8.0.1")]),
            LabPod::host_network("sys/h2", [ip("10.8.0.2")]),
            LabPod::host_network("sys/h3", [ip("10.8.0.2")]),
        ];
        let v = placed(&nodes, &pods, &BTreeMap::new());
        assert_eq!((at(&v, "ns/a"), at(&v, "ns/b")), (Some("n3"), Some("n3")));
        assert_eq!(at(&v, "external/10.9.0.1"), None);
        assert_eq!(at(&v, "sys/h1"), Some("n2"));
        assert_eq!(at(&v, "node/10.8.0.1"), Some("n2"), "beside the host-network pod with its address");
        // Loads after step 1: n1 0, n2 1, n3 2; then in key order: node/10.8.0.1 beside sys/h1 (n2: 2),
        // ns/c (n1: 1), ns/d (n1: 2), sys/h2 (n1 and n2 at 2: n1), sys/h3 beside sys/h2.
        assert_eq!((at(&v, "ns/c"), at(&v, "ns/d")), (Some("n1"), Some("n1")));
        assert_eq!((at(&v, "sys/h2"), at(&v, "sys/h3")), (Some("n1"), Some("n1")));
        // Host-network pods sharing an address cannot ask for two nodes.
        let clash = [
            LabPod::host_network("sys/a", [ip("10.8.0.1")]).on_node("n1"),
            LabPod::host_network("sys/b", [ip("10.8.0.1")]).on_node("n2"),
        ];
        let mut want = validate_pods(&clash, true).unwrap();
        assert!(matches!(place(&nodes, true, &mut want, &BTreeMap::new()), Err(LabError::InvalidPod { .. })));
        // Running pods stay where they are when pods are added before them in key order.
        let mut current = BTreeMap::new();
        for (key, node) in [("ns/m", "n3"), ("ns/n", "n3")] {
            let p = PodNs {
                netns: String::new(),
                host_veth: String::new(),
                ips: vec![],
                host_network: false,
                node: Some(node.into()),
            };
            current.insert(key.to_string(), p);
        }
        let v = placed(&nodes, &[pod("ns/a", 1), pod("ns/b", 2), pod("ns/m", 3), pod("ns/n", 4)], &current);
        let got: Vec<&str> = v.iter().filter_map(|(_, n)| n.as_deref()).collect();
        assert_eq!(got, ["n1", "n2", "n3", "n3"]);
        // A single-node lab puts everything, external addresses included, on its node.
        let v = placed(&anonymous_nodes(1), &[pod("ns/a", 1).on_node("n1"), pod("external/x", 2)], &BTreeMap::new());
        assert!(v.iter().all(|(_, n)| n.as_deref() == Some("node")), "{v:?}");
    }

    /// The commands building a multi-node lab: the fabric's bridge with a port per node, the nodes' underlay
    /// addresses and default routes, each pod behind its node, and every node (and the fabric) routing each
    /// address on another node via that node's underlay address; a pod moving between nodes moves its routes.
    #[test]
    fn multi_node_wiring() {
        let r = Rec { calls: Default::default(), netns: "" };
        let mut lab = Lab::unwired("unittest-lab-6", &anonymous_nodes(3));
        lab.wire_nodes(&r).unwrap();
        let calls = r.calls.borrow().join("\n");
        assert!(calls.contains(
            "ip -batch - <<netns add unittest-lab-6-node0\nnetns add unittest-lab-6-node1\nnetns add unittest-lab-6-node2\nnetns add unittest-lab-6-fabric\n"
        ));
        assert!(calls.contains("ip -n unittest-lab-6-fabric -batch - <<link add br0 type bridge\nlink set br0 up\naddr add 10.254.0.254/24 dev br0\naddr add fd00:254::fe/64 dev br0 nodad\nlink add n0 type veth peer name eth0 netns unittest-lab-6-node0\nlink set n0 master br0 up\n"), "{calls}");
        assert!(calls.contains("ip -n unittest-lab-6-node2 -batch - <<addr add 10.254.0.3/24 dev eth0\naddr add fd00:254::3/64 dev eth0 nodad\nlink set eth0 up\nroute replace default via 10.254.0.254 dev eth0\nroute replace ::/0 via fd00:254::fe dev eth0\n"), "{calls}");
        let apply = |lab: &mut Lab, pods: &[LabPod]| -> Vec<String> {
            r.calls.borrow_mut().clear();
            let mut want = validate_pods(pods, true).unwrap();
            let nodes: Vec<String> = lab.nodes.iter().map(|n| n.name.clone()).collect();
            place(&nodes, true, &mut want, &lab.pods).unwrap();
            lab.apply_inner(&r, &want, &mut LabDelta::default()).unwrap();
            r.calls.borrow().clone()
        };
        let a = LabPod::new("ns/a", [ip("10.1.0.1"), ip("fd00:1::1")]).on_node("node0");
        let b = LabPod::new("ns/b", [ip("10.1.0.2")]).on_node("node1");
        let h = LabPod::host_network("sys/h", [ip("10.9.9.2")]).on_node("node1");
        let x = LabPod::new("external/10.99.0.1", [ip("10.99.0.1")]);
        let calls = apply(&mut lab, &[a.clone(), b, h.clone(), x]);
        let ns = |n: &str| format!("ip -n unittest-lab-6-{n} -batch - <<");
        let script =
            |n: &str| -> String { calls.iter().filter_map(|c| c.strip_prefix(&ns(n))).collect::<Vec<&str>>().concat() };
        let va = host_veth_name("ns/a");
        assert!(script("node0").contains(&format!("link add {va} type veth peer name eth0 netns unittest-lab-6-")));
        assert!(script("node0").contains(&format!("route replace 10.1.0.1/32 dev {va}\n")));
        assert!(script("node0").contains("route replace 10.1.0.2/32 via 10.254.0.2 dev eth0\n"));
        assert!(script("node0").contains("route replace 10.9.9.2/32 via 10.254.0.2 dev eth0\n"));
        assert!(!script("node0").contains("10.99.0.1"), "external addresses: by the default route");
        assert!(script("node1").contains("addr add 10.9.9.2/32 dev lo\n"));
        assert!(script("node1").contains("route replace fd00:1::1/128 via fd00:254::1 dev eth0\n"));
        assert!(script("node2").contains("route replace 10.1.0.1/32 via 10.254.0.1 dev eth0\n"));
        assert!(script("node2").contains("route replace 10.1.0.2/32 via 10.254.0.2 dev eth0\n"));
        assert!(script("fabric").contains("route replace 10.1.0.1/32 via 10.254.0.1 dev br0\n"));
        assert!(script("fabric")
            .contains(&format!("route replace 10.99.0.1/32 dev {}\n", host_veth_name("external/10.99.0.1"))));
        assert_eq!(lab.pod_node("ns/a"), Some("node0"));
        assert_eq!(lab.pod_node("external/10.99.0.1"), None);
        assert_eq!(lab.pod_netns("sys/h"), Some("unittest-lab-6-node1"));
        // ns/a moves to node2 (b goes): node2 drops its route to a before a's veth takes the address, node0 routes
        // to a via node2 after a's veth there is gone.
        let calls = apply(&mut lab, &[a.on_node("node2"), h]);
        let pos = |needle: &str| {
            calls.iter().position(|c| c.contains(needle)).unwrap_or_else(|| panic!("{needle}: {calls:?}"))
        };
        let del_route = pos("route del 10.1.0.1/32 via 10.254.0.1 dev eth0");
        assert!(calls[del_route].starts_with("ip -n unittest-lab-6-node2 -force -batch"), "{calls:?}");
        let veth_del = pos(&format!("link del {va}"));
        assert!(calls[veth_del].starts_with("ip -n unittest-lab-6-node0 -force -batch"), "{calls:?}");
        let new_veth = pos(&format!("link add {va}"));
        assert!(calls[new_veth].starts_with(&ns("node2")) && del_route < new_veth);
        let via_node2 = pos("route replace 10.1.0.1/32 via 10.254.0.3 dev eth0");
        assert!(calls[via_node2].starts_with(&ns("node0")) && veth_del < via_node2);
        assert!(calls
            .iter()
            .any(|c| c.starts_with(&ns("fabric")) && c.contains("route replace 10.1.0.1/32 via 10.254.0.3 dev br0")));
        assert!(calls.iter().any(|c| c.starts_with("ip -n unittest-lab-6-node0 -force")
            && c.contains("route del 10.1.0.2/32 via 10.254.0.2 dev eth0")));
        assert_eq!(lab.pod_node("ns/a"), Some("node2"));
    }

    /// A state file of a single-node lab from before multi-node labs (version 1) reads as one node `node` holding
    /// every pod; a file for another prefix, or whose nodes or fabric do not match it, is refused.
    #[test]
    fn state_files_old_and_new() {
        let path = std::path::Path::new("/x.json");
        let v1 = r#"{"version":1,"prefix":"p","node_netns":"p-node","pods":{"a/b":{"netns":"p-0000abcd","host_veth":"v0000abcd","ips":["10.0.0.1"]}}}"#;
        let s = State::parse("p", path, v1).unwrap();
        assert_eq!(s.nodes, vec![LabNode { name: "node".into(), netns: "p-node".into(), underlay: vec![] }]);
        assert_eq!(s.pods["a/b"].node.as_deref(), Some("node"));
        assert!(matches!(State::parse("q", path, v1), Err(LabError::BadState { .. })));
        let lab = Lab::unwired("p", &anonymous_nodes(2));
        let v2 = |fabric: &str| {
            serde_json::json!({
                "version": 2, "prefix": "p", "node_netns": "p-node0", "nodes": lab.nodes, "fabric": fabric, "pods": {},
            })
            .to_string()
        };
        let s = State::parse("p", path, &v2("p-fabric")).unwrap();
        assert_eq!((s.nodes, s.fabric.as_deref()), (lab.nodes.clone(), Some("p-fabric")));
        assert!(State::parse("p", path, &v2("p-other")).is_err());
        assert!(State::parse("p", path, &v2("p-fabric").replace("p-node1", "x-node1")).is_err());
        assert!(State::parse("p", path, &v2("p-fabric").replace("\"version\":2", "\"version\":3")).is_err());
    }
}
