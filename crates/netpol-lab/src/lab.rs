//! A network-namespace lab: one "node" netns routing between one netns per pod (Calico-style routed topology).
//!
//! Layout for prefix `P`:
//! - node netns `P-node`: `lo` up with `169.254.1.1/32`, IPv4 and IPv6 forwarding on (inside that netns only),
//!   one veth per pod named `v<id>` carrying `fe80::1/64` (nodad), and one `/32` / `/128` route per pod IP to it;
//! - pod netns `P-<id>` (`<id>` = 8 hex chars of the 32-bit FNV-1a hash of the pod key `ns/name`): `lo` up, `eth0`
//!   with the pod's `/32` and `/128` (nodad), default routes via `169.254.1.1` (scope-link route to it) and via
//!   `fe80::1`.
//!
//! Pods whose key starts with `external/` get the same wiring; they stand for addresses outside the cluster.
//! Host-network pods ([`LabPod::host_network`]) get no netns of their own: like on a real node they live in the
//! node netns, whose `lo` carries their addresses (their node's, `/32` and `/128`); several host-network pods may
//! share an address. The lab has one node: it holds the addresses of every Node that has a host-network pod, so
//! traffic between a pod and a host-network pod is traffic between a pod and its own node (the node's `input` and
//! `output` hooks, not `forward`).
//! Pod addresses must lie in `10.0.0.0/8` or `fd00::/8`: the lab never uses any other address.
//!
//! All commands go through [`netpol_nft::apply`]. [`Lab::up`] and [`Lab::apply`] record the lab in
//! `/run/netpol-lab/<prefix>.json`, which [`Lab::attach`] reads back; [`Lab::down`] needs no state at all (it
//! deletes every netns named `<prefix>-*`), so it also cleans up after a crash.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
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
}

impl LabPod {
    pub fn new(key: impl Into<String>, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        LabPod { key: key.into(), ips: ips.into_iter().collect(), host_network: false }
    }
    /// A host-network pod with its node's addresses.
    pub fn host_network(key: impl Into<String>, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        LabPod { host_network: true, ..LabPod::new(key, ips) }
    }
    /// Whether this is an `external/` pseudo-pod.
    pub fn is_external(&self) -> bool {
        self.key.starts_with(EXTERNAL_PREFIX)
    }
}

/// What [`Lab::apply`] changed (pod keys, sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LabDelta {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Pods whose addresses changed.
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

/// One pod's namespace in a running lab (a host-network pod's is the node netns, and it has no veth).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PodNs {
    netns: String,
    #[serde(default)]
    host_veth: String,
    ips: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    host_network: bool,
}

/// What [`validate_pods`] makes of a [`LabPod`]: its addresses sorted (IPv4 first), and whether it is a
/// host-network pod.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Want {
    ips: Vec<IpAddr>,
    host_network: bool,
}

/// The addresses the node netns carries for host-network pods.
fn node_addresses<'a>(pods: impl IntoIterator<Item = (&'a Vec<IpAddr>, bool)>) -> BTreeSet<IpAddr> {
    pods.into_iter().filter(|(_, host)| *host).flat_map(|(ips, _)| ips.iter().copied()).collect()
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

/// What the state file holds.
#[derive(Serialize, Deserialize)]
struct State {
    version: u32,
    prefix: String,
    node_netns: String,
    pods: BTreeMap<String, PodNs>,
}

const STATE_VERSION: u32 = 1;

/// A running lab (see the module docs). Dropping it does NOT tear it down: call [`Lab::down`].
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    node: String,
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

/// Name of the node netns of lab `prefix`.
pub fn node_netns_name(prefix: &str) -> String {
    format!("{prefix}-node")
}

/// Name of the netns of pod `key` in lab `prefix`.
pub fn pod_netns_name(prefix: &str, key: &str) -> String {
    format!("{prefix}-{}", pod_id(key))
}

/// Name of the node-side veth of pod `key` (`v` + 8 hex digits: 9 characters).
pub fn host_veth_name(key: &str) -> String {
    format!("v{}", pod_id(key))
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

/// Whether `ip` may be used inside a lab: 10.0.0.0/8 or fd00::/8 only.
pub fn allowed_lab_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 10,
        IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
    }
}

/// Check a desired pod list; returns it keyed by pod key with addresses sorted (v4 first). Only host-network pods
/// may share an address (they share their node's).
fn validate_pods(pods: &[LabPod]) -> Result<BTreeMap<String, Want>, LabError> {
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
        out.insert(key.to_string(), Want { ips, host_network: p.host_network });
    }
    Ok(out)
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
fn lab_netns(r: &dyn Runner, prefix: &str) -> Result<Vec<String>, LabError> {
    let dash = format!("{prefix}-");
    Ok(netns_list(r)?.into_iter().filter(|n| n.starts_with(&dash)).collect())
}

impl Lab {
    /// Create a lab with the given pods. Fails with [`LabError::InUse`] if any netns `<prefix>-*` already exists.
    /// On failure everything created so far is removed again.
    pub fn up(r: &dyn Runner, prefix: &str, pods: &[LabPod]) -> Result<Lab, LabError> {
        validate_prefix(prefix)?;
        let want = validate_pods(pods)?;
        let existing = lab_netns(r, prefix)?;
        if !existing.is_empty() {
            return Err(LabError::InUse { prefix: prefix.to_string(), netns: existing });
        }
        let mut lab = Lab { prefix: prefix.to_string(), node: node_netns_name(prefix), pods: BTreeMap::new() };
        let built = (|| -> Result<(), LabError> {
            ip_batch(r, None, &format!("netns add {}\n", lab.node), false)?;
            sysctl_in_netns(
                r,
                &lab.node,
                &[
                    ("net.ipv4.ip_forward", "1"),
                    ("net.ipv6.conf.all.forwarding", "1"),
                    ("net.ipv6.conf.default.accept_dad", "0"),
                    ("net.ipv4.conf.all.rp_filter", "0"),
                    ("net.ipv4.conf.default.rp_filter", "0"),
                ],
            )?;
            ip_batch(r, Some(&lab.node), &format!("link set lo up\naddr add {GATEWAY_V4}/32 dev lo\n"), false)?;
            let node_addrs = node_addresses(want.values().map(|w| (&w.ips, w.host_network)));
            ip_batch(r, Some(&lab.node), &node_addr_script(&node_addrs, true), false)?;
            let new: Vec<(String, Want)> = want.into_iter().collect();
            lab.add_pods(r, &new)?;
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

    /// Rediscover a running lab from its state file. `Ok(None)` when there is no state file or its node netns is
    /// gone. Pods whose netns has disappeared are left out (a later [`Lab::apply`] recreates them).
    pub fn attach(r: &dyn Runner, prefix: &str) -> Result<Option<Lab>, LabError> {
        validate_prefix(prefix)?;
        let path = state_path(prefix);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LabError::StateIo { path, source }),
        };
        let state: State = serde_json::from_str(&text)
            .map_err(|e| LabError::BadState { path: path.clone(), reason: e.to_string() })?;
        if state.version != STATE_VERSION || state.prefix != prefix || state.node_netns != node_netns_name(prefix) {
            return Err(LabError::BadState {
                path,
                reason: format!("written for prefix {:?} (version {})", state.prefix, state.version),
            });
        }
        let existing: HashSet<String> = netns_list(r)?.into_iter().collect();
        if !existing.contains(&state.node_netns) {
            tracing::warn!(prefix, "lab state file found but its node netns is gone");
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
        Ok(Some(Lab { prefix: prefix.to_string(), node: state.node_netns, pods }))
    }

    /// Make the lab contain exactly `pods`: create new ones, delete vanished ones, fix changed addresses.
    /// The state file is rewritten (also after a partial failure, to match what exists).
    pub fn apply(&mut self, r: &dyn Runner, pods: &[LabPod]) -> Result<LabDelta, LabError> {
        let want = validate_pods(pods)?;
        let mut delta = LabDelta::default();
        let result = self.apply_inner(r, &want, &mut delta);
        let saved = self.save();
        result?;
        saved?;
        Ok(delta)
    }

    fn apply_inner(
        &mut self,
        r: &dyn Runner,
        want: &BTreeMap<String, Want>,
        delta: &mut LabDelta,
    ) -> Result<(), LabError> {
        let node_before = node_addresses(self.pods.values().map(|p| (&p.ips, p.host_network)));
        let node_after = node_addresses(want.values().map(|w| (&w.ips, w.host_network)));
        // 1. pods that vanished, and pods that move between a netns of their own and the node's (re-added below)
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(k, p)| want.get(*k).is_none_or(|w| w.host_network != p.host_network))
            .map(|(k, _)| k.clone())
            .collect();
        if !gone.is_empty() {
            self.remove_pods(r, &gone)?;
            delta.removed = gone.iter().filter(|k| !want.contains_key(*k)).cloned().collect();
            delta.changed = gone.iter().filter(|k| want.contains_key(*k)).cloned().collect();
        }
        // 2. node addresses no host-network pod has any more (before a pod netns may take one of them)
        let node_del: BTreeSet<IpAddr> = node_before.difference(&node_after).copied().collect();
        ip_batch(r, Some(&self.node), &node_addr_script(&node_del, false), false)?;
        // 3. changed addresses: first drop every stale address/route (an address may move between pods), then add.
        let changed: Vec<(String, Vec<IpAddr>, Vec<IpAddr>)> = want
            .iter()
            .filter_map(|(k, w)| {
                let cur = self.pods.get(k)?;
                (cur.ips != w.ips).then(|| (k.clone(), cur.ips.clone(), w.ips.clone()))
            })
            .collect();
        let mut node_del = String::new();
        let mut node_add = String::new();
        for (key, old, new) in &changed {
            let Some(p) = self.pods.get(key) else { continue };
            if p.host_network {
                continue; // its addresses are the node's (steps 2 and 4)
            }
            // Add before deleting, and restore the routes afterwards: deleting the last IPv4 address of eth0
            // makes the kernel flush every IPv4 route through it (the default route included).
            let mut pod_script = String::new();
            for ip in new.iter().filter(|ip| !old.contains(ip)) {
                node_add.push_str(&format!("route replace {} dev {}\n", host_cidr(ip), p.host_veth));
                pod_script.push_str(&pod_addr_add(ip));
            }
            for ip in old.iter().filter(|ip| !new.contains(ip)) {
                node_del.push_str(&format!("route del {} dev {}\n", host_cidr(ip), p.host_veth));
                pod_script.push_str(&format!("addr del {} dev eth0\n", host_cidr(ip)));
            }
            pod_script.push_str(POD_ROUTES);
            ip_batch(r, Some(&p.netns), &pod_script, false)?;
        }
        ip_batch(r, Some(&self.node), &node_del, false)?;
        ip_batch(r, Some(&self.node), &node_add, false)?;
        for (key, _, new) in &changed {
            if let Some(p) = self.pods.get_mut(key) {
                p.ips.clone_from(new);
            }
        }
        delta.changed.extend(changed.into_iter().map(|(k, _, _)| k));
        delta.changed.sort();
        // 4. node addresses of new host-network pods (after any pod netns gave them up)
        let node_new: BTreeSet<IpAddr> = node_after.difference(&node_before).copied().collect();
        ip_batch(r, Some(&self.node), &node_addr_script(&node_new, true), false)?;
        // 5. new pods
        let new: Vec<(String, Want)> =
            want.iter().filter(|(k, _)| !self.pods.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        if !new.is_empty() {
            self.add_pods(r, &new)?;
            delta.added = new.into_iter().map(|(k, _)| k).filter(|k| !delta.changed.contains(k)).collect();
        }
        Ok(())
    }

    /// Create and wire the netns of each new pod (a host-network pod only joins the node netns: its addresses are
    /// the caller's business); on failure, remove what was created for them.
    fn add_pods(&mut self, r: &dyn Runner, new: &[(String, Want)]) -> Result<(), LabError> {
        if new.is_empty() {
            return Ok(());
        }
        type Entries<'a> = Vec<&'a (String, Want)>;
        let (hosts, new): (Entries, Entries) = new.iter().partition(|(_, w)| w.host_network);
        for (key, w) in hosts {
            let p =
                PodNs { netns: self.node.clone(), host_veth: String::new(), ips: w.ips.clone(), host_network: true };
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
                    },
                )
            })
            .collect();
        let created = (|| -> Result<(), LabError> {
            let mut add_ns = String::new();
            let mut node = String::new();
            for (_, p) in &entries {
                add_ns.push_str(&format!("netns add {}\n", p.netns));
                let v = &p.host_veth;
                node.push_str(&format!("link add {v} type veth peer name eth0 netns {}\n", p.netns));
                node.push_str(&format!("link set {v} up\n"));
                node.push_str(&format!("addr add {GATEWAY_V6}/64 dev {v} nodad\n"));
                for ip in &p.ips {
                    node.push_str(&format!("route replace {} dev {v}\n", host_cidr(ip)));
                }
            }
            ip_batch(r, None, &add_ns, false)?;
            ip_batch(r, Some(&self.node), &node, false)?;
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
                let links: String = entries.iter().map(|(_, p)| format!("link del {}\n", p.host_veth)).collect();
                let _ = ip_batch(r, Some(&self.node), &links, true);
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
        let links: String = doomed.iter().map(|(_, p)| format!("link del {}\n", p.host_veth)).collect();
        if let Err(e) = ip_batch(r, Some(&self.node), &links, true) {
            tracing::debug!(error = %e, "some pod veths were already gone");
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
            node_netns: self.node.clone(),
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

    /// The node netns (`<prefix>-node`): load the ruleset here.
    pub fn node_netns(&self) -> &str {
        &self.node
    }

    /// The netns of pod `key`.
    pub fn pod_netns(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|p| p.netns.as_str())
    }

    /// The node-side veth of pod `key` (what `oifname` / `iifname` see in the node netns); `None` for a
    /// host-network pod.
    pub fn host_veth(&self, key: &str) -> Option<&str> {
        self.pods.get(key).filter(|p| !p.host_network).map(|p| p.host_veth.as_str())
    }

    /// Whether pod `key` is a host-network pod (it lives in the node netns).
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

    /// The pods as [`LabPod`]s (for diffing or re-applying).
    pub fn lab_pods(&self) -> Vec<LabPod> {
        self.pods
            .iter()
            .map(|(k, p)| LabPod { key: k.clone(), ips: p.ips.clone(), host_network: p.host_network })
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
        let ok = validate_pods(&[
            LabPod::new("a/x", [ip("fd00::1"), ip("10.0.0.1")]),
            LabPod::new("external/x", [ip("10.99.0.1")]),
        ])
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
            assert!(validate_pods(&c).is_err(), "{c:?}");
        }
        assert!(LabPod::new("external/x", [ip("10.0.0.1")]).is_external());
        // Host-network pods share their node's address, with each other only.
        let hosts = validate_pods(&[
            LabPod::host_network("ns/a", [ip("10.1.0.1")]),
            LabPod::host_network("ns/b", [ip("10.1.0.1"), ip("fd00:1::1")]),
            LabPod::new("ns/c", [ip("10.2.0.1")]),
        ])
        .unwrap();
        assert!(hosts["ns/b"].host_network && !hosts["ns/c"].host_network);
        for bad in [
            vec![LabPod::host_network("ns/a", [ip("10.1.0.1")]), LabPod::new("ns/b", [ip("10.1.0.1")])],
            vec![LabPod::new("ns/a", [ip("10.1.0.1")]), LabPod::host_network("ns/b", [ip("10.1.0.1")])],
            vec![LabPod::host_network("ns/a", [ip("10.1.0.1")]), LabPod::host_network("ns/a", [ip("10.1.0.1")])],
            vec![LabPod::host_network("external/x", [ip("10.1.0.1")])],
        ] {
            assert!(validate_pods(&bad).is_err(), "{bad:?}");
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
        assert_eq!(calls[1], "ip -force -batch - <<netns del unittest-lab-7-node\nnetns del unittest-lab-7-0000abcd\n");
    }

    /// Host-network pods get no netns: their addresses go on the node's `lo`, once however many pods share
    /// them, and leave it with the last of those pods; a pod that becomes a host-network pod leaves its netns.
    #[test]
    fn host_network_pods_live_in_the_node_netns() {
        let r = Rec { calls: Default::default(), netns: "" };
        let mut lab =
            Lab { prefix: "unittest-lab-9".into(), node: "unittest-lab-9-node".into(), pods: BTreeMap::new() };
        let apply = |lab: &mut Lab, pods: &[LabPod]| -> (LabDelta, Vec<String>) {
            r.calls.borrow_mut().clear();
            let mut delta = LabDelta::default();
            lab.apply_inner(&r, &validate_pods(pods).unwrap(), &mut delta).unwrap();
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
        assert_eq!(lab.lab_pods(), vec![LabPod::host_network("ns/c", [ip("10.1.0.2")])]);
    }

    #[test]
    fn up_refuses_a_prefix_in_use() {
        let r = Rec { calls: Default::default(), netns: "unittest-lab-8-node\n" };
        assert!(matches!(Lab::up(&r, "unittest-lab-8", &[]), Err(LabError::InUse { .. })));
        assert_eq!(r.calls.borrow().len(), 1); // only the listing
    }
}
