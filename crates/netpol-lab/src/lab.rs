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
}

impl LabPod {
    pub fn new(key: impl Into<String>, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        LabPod { key: key.into(), ips: ips.into_iter().collect() }
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

/// One pod's namespace in a running lab.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PodNs {
    netns: String,
    host_veth: String,
    ips: Vec<IpAddr>,
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

/// Check a desired pod list; returns it keyed by pod key with addresses sorted (v4 first).
fn validate_pods(pods: &[LabPod]) -> Result<BTreeMap<String, Vec<IpAddr>>, LabError> {
    let bad = |key: &str, reason: String| LabError::InvalidPod { key: key.to_string(), reason };
    let mut out = BTreeMap::new();
    let mut ids: BTreeMap<String, &str> = BTreeMap::new();
    let mut ips_seen: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for p in pods {
        let key = p.key.as_str();
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(key, "key must be non-empty without whitespace".into()));
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
            if let Some(other) = ips_seen.insert(*ip, key) {
                return Err(bad(key, format!("address {ip} is also used by pod {other:?}")));
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
        out.insert(key.to_string(), ips);
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
            let new: Vec<(String, Vec<IpAddr>)> = want.into_iter().collect();
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
        want: &BTreeMap<String, Vec<IpAddr>>,
        delta: &mut LabDelta,
    ) -> Result<(), LabError> {
        // 1. pods that vanished
        let gone: Vec<String> = self.pods.keys().filter(|k| !want.contains_key(*k)).cloned().collect();
        if !gone.is_empty() {
            self.remove_pods(r, &gone)?;
            delta.removed = gone;
        }
        // 2. changed addresses: first drop every stale address/route (an address may move between pods), then add.
        let changed: Vec<(String, Vec<IpAddr>, Vec<IpAddr>)> = want
            .iter()
            .filter_map(|(k, ips)| {
                let cur = self.pods.get(k)?;
                (cur.ips != *ips).then(|| (k.clone(), cur.ips.clone(), ips.clone()))
            })
            .collect();
        let mut node_del = String::new();
        let mut node_add = String::new();
        for (key, old, new) in &changed {
            let Some(p) = self.pods.get(key) else { continue };
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
        delta.changed = changed.into_iter().map(|(k, _, _)| k).collect();
        // 3. new pods
        let new: Vec<(String, Vec<IpAddr>)> =
            want.iter().filter(|(k, _)| !self.pods.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
        if !new.is_empty() {
            self.add_pods(r, &new)?;
            delta.added = new.into_iter().map(|(k, _)| k).collect();
        }
        Ok(())
    }

    /// Create and wire the netns of each new pod; on failure, remove what was created for them.
    fn add_pods(&mut self, r: &dyn Runner, new: &[(String, Vec<IpAddr>)]) -> Result<(), LabError> {
        if new.is_empty() {
            return Ok(());
        }
        let entries: Vec<(String, PodNs)> = new
            .iter()
            .map(|(key, ips)| {
                (
                    key.clone(),
                    PodNs {
                        netns: pod_netns_name(&self.prefix, key),
                        host_veth: host_veth_name(key),
                        ips: ips.clone(),
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
        let doomed: Vec<(&String, &PodNs)> = keys.iter().filter_map(|k| Some((k, self.pods.get(k)?))).collect();
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

    /// The node-side veth of pod `key` (what `oifname` / `iifname` see in the node netns).
    pub fn host_veth(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|p| p.host_veth.as_str())
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
        self.pods.iter().map(|(k, p)| LabPod { key: k.clone(), ips: p.ips.clone() }).collect()
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
        assert_eq!(ok["a/x"], vec![ip("10.0.0.1"), ip("fd00::1")]);
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

    #[test]
    fn up_refuses_a_prefix_in_use() {
        let r = Rec { calls: Default::default(), netns: "unittest-lab-8-node\n" };
        assert!(matches!(Lab::up(&r, "unittest-lab-8", &[]), Err(LabError::InUse { .. })));
        assert_eq!(r.calls.borrow().len(), 1); // only the listing
    }
}
