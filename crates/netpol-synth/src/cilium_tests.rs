//! Tests of the Cilium variant: counts, determinism, the plain cluster inside it, and every policy checked against
//! Cilium's CRD schema and rule sanitizer (cilium/cilium at 2efb257c8533, `pkg/policy/api`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::IpNet;
use netpol_core::load::Severity;
use netpol_core::model::PolicyKind;
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::*;

/// The documents of a multi-document YAML stream, parsed as one stream.
fn docs(y: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(y).map(|d| Value::deserialize(d).unwrap()).filter(|v| !v.is_null()).collect()
}

fn kind(d: &Value) -> &str {
    d["kind"].as_str().unwrap_or("")
}

/// Feature counts of the Cilium policies (what the module documentation promises).
type Stats = BTreeMap<String, usize>;

fn bump(s: &mut Stats, what: impl Into<String>) {
    *s.entry(what.into()).or_default() += 1;
}

fn map<'a>(v: &'a Value, at: &str) -> Result<&'a Mapping, String> {
    v.as_mapping().ok_or_else(|| format!("{at}: not a mapping: {v:?}"))
}

fn seq<'a>(v: &'a Value, at: &str) -> Result<&'a Vec<Value>, String> {
    v.as_sequence().ok_or_else(|| format!("{at}: not a list: {v:?}"))
}

fn string<'a>(v: &'a Value, at: &str) -> Result<&'a str, String> {
    v.as_str().ok_or_else(|| format!("{at}: not a string: {v:?}"))
}

/// The keys of a mapping, all strings, each one of `allowed`.
fn keys<'a>(m: &'a Mapping, allowed: &[&str], at: &str) -> Result<Vec<&'a str>, String> {
    m.keys()
        .map(|k| {
            let k = string(k, at)?;
            if allowed.contains(&k) {
                Ok(k)
            } else {
                Err(format!("{at}: unexpected field `{k}`"))
            }
        })
        .collect()
}

/// A DNS-1123 label or subdomain (as object names must be).
fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A Kubernetes label value (possibly empty).
fn label_value(v: &str) -> bool {
    v.len() <= 63
        && (v.is_empty()
            || (v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && v.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
                && v.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric)))
}

/// Cilium's label key: an optional alphanumeric source and `:`, then a Kubernetes label key.
fn label_key(key: &str, s: &mut Stats) -> bool {
    let (source, k) = match key.split_once(':') {
        Some((src, k)) => (Some(src), k),
        None => (None, key),
    };
    if let Some(src) = source {
        bump(s, format!("label source {src}:"));
        if src.is_empty() || !src.bytes().all(|b| b.is_ascii_alphanumeric()) || k.contains(':') {
            return false;
        }
    }
    for special in
        ["io.kubernetes.pod.namespace", "io.cilium.k8s.namespace.labels.", "io.cilium.k8s.policy.serviceaccount"]
    {
        if k.starts_with(special) {
            bump(s, format!("label {special}"));
        }
    }
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(dns_name) && !name.is_empty() && name.len() <= 63 && label_value(name)
}

fn check_selector(v: &Value, at: &str, s: &mut Stats) -> Result<(), String> {
    let m = map(v, at)?;
    for k in keys(m, &["matchLabels", "matchExpressions"], at)? {
        bump(s, format!("selector {k}"));
    }
    if m.is_empty() {
        bump(s, "selector {}");
    }
    if let Some(ls) = m.get("matchLabels") {
        for (k, v) in map(ls, at)? {
            let (k, v) = (string(k, at)?, string(v, at)?);
            if !label_key(k, s) || !label_value(v) {
                return Err(format!("{at}: invalid label {k}: {v}"));
            }
        }
    }
    if let Some(es) = m.get("matchExpressions") {
        for e in seq(es, at)? {
            let em = map(e, at)?;
            keys(em, &["key", "operator", "values"], at)?;
            let key = string(&em["key"], at)?;
            let op = string(&em["operator"], at)?;
            bump(s, format!("operator {op}"));
            let values = match em.get("values") {
                Some(v) => seq(v, at)?.iter().map(|v| string(v, at)).collect::<Result<Vec<_>, _>>()?,
                None => Vec::new(),
            };
            let ok = match op {
                "In" | "NotIn" => !values.is_empty(),
                "Exists" | "DoesNotExist" => values.is_empty(),
                _ => false,
            };
            if !ok || !label_key(key, s) || !values.iter().all(|v| label_value(v)) {
                return Err(format!("{at}: invalid expression {e:?}"));
            }
        }
    }
    Ok(())
}

/// A canonical CIDR (no host bits).
fn cidr(v: &Value, at: &str) -> Result<IpNet, String> {
    let c = string(v, at)?;
    let net: IpNet = c.parse().map_err(|e| format!("{at}: CIDR {c}: {e}"))?;
    if net.trunc() != net {
        return Err(format!("{at}: CIDR {c} has host bits"));
    }
    Ok(net)
}

/// `matchName` (`^([-a-zA-Z0-9_]+[.]?)+$`) or `matchPattern` (the same with `*`), exactly one.
fn check_fqdn(v: &Value, at: &str, s: &mut Stats, what: &str) -> Result<(), String> {
    let m = map(v, at)?;
    let ks = keys(m, &["matchName", "matchPattern"], at)?;
    let [k] = ks[..] else { return Err(format!("{at}: one of matchName, matchPattern: {v:?}")) };
    let name = string(&m[k], at)?;
    let wild = k == "matchPattern";
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains("..")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b) || (wild && b == b'*'));
    if !ok {
        return Err(format!("{at}: invalid {k} {name}"));
    }
    bump(s, format!("{what} {k}"));
    Ok(())
}

const PROTOCOLS: [&str; 4] = ["TCP", "UDP", "SCTP", "ANY"];

/// `toPorts` of a rule. `l7`: `Some(egress)` when L7 rules may appear (not in deny rules).
fn check_ports(v: &Value, at: &str, l7: Option<bool>, s: &mut Stats) -> Result<(), String> {
    for pr in seq(v, at)? {
        let m = map(pr, at)?;
        let allowed: &[&str] = if l7.is_some() { &["ports", "rules"] } else { &["ports"] };
        keys(m, allowed, at)?;
        let ports = seq(&m["ports"], at)?;
        if ports.is_empty() || ports.len() > 40 {
            return Err(format!("{at}: {} ports", ports.len()));
        }
        let mut protos = Vec::new();
        let mut ranges = false;
        let mut numbers = Vec::new();
        for p in ports {
            let pm = map(p, at)?;
            keys(pm, &["port", "endPort", "protocol"], at)?;
            // Port numbers are strings in this CRD.
            let port = string(&pm["port"], at)?;
            let number = if port.bytes().all(|b| b.is_ascii_digit()) {
                let n: u16 = port.parse().map_err(|e| format!("{at}: port {port}: {e}"))?;
                bump(s, "port number");
                Some(n)
            } else {
                // An IANA service name: 1-15 lowercase letters, digits and single inner dashes, one letter at least.
                let ok = port.len() <= 15
                    && port.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && port.bytes().any(|b| b.is_ascii_lowercase())
                    && !port.starts_with('-')
                    && !port.ends_with('-')
                    && !port.contains("--");
                if !ok {
                    return Err(format!("{at}: invalid port name {port}"));
                }
                bump(s, "port name");
                None
            };
            numbers.push(number);
            if let Some(e) = pm.get("endPort") {
                let e = e.as_u64().ok_or_else(|| format!("{at}: endPort {e:?} is not an integer"))?;
                match number {
                    Some(n) if e > u64::from(n) && e <= 65535 => {}
                    _ => return Err(format!("{at}: endPort {e} after port {port}")),
                }
                ranges = true;
                bump(s, "endPort range");
            }
            match pm.get("protocol") {
                Some(p) => {
                    let p = string(p, at)?;
                    if !PROTOCOLS.contains(&p) {
                        return Err(format!("{at}: protocol {p}"));
                    }
                    bump(s, format!("protocol {p}"));
                    protos.push(p);
                }
                None => {
                    bump(s, "protocol omitted");
                    protos.push("");
                }
            }
        }
        let Some(rules) = m.get("rules") else { continue };
        let Some(egress) = l7 else { return Err(format!("{at}: L7 rules in a deny rule")) };
        let rm = map(rules, at)?;
        let ks = keys(rm, &["http", "dns"], at)?;
        match ks[..] {
            ["http"] => {
                if protos != ["TCP"] {
                    return Err(format!("{at}: HTTP rules need a single TCP port, not {protos:?}"));
                }
                let rules = seq(&rm["http"], at)?;
                if rules.is_empty() {
                    return Err(format!("{at}: empty http rules"));
                }
                bump(s, "port rules with HTTP rules");
                let mut seen = BTreeSet::new();
                for h in rules {
                    let hm = map(h, at)?;
                    keys(hm, &["method", "path", "headers"], at)?;
                    let path = string(&hm["path"], at)?;
                    if !path.starts_with('/') || path.matches('(').count() != path.matches(')').count() {
                        return Err(format!("{at}: path {path}"));
                    }
                    if let Some(m) = hm.get("method") {
                        let m = string(m, at)?;
                        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase() || b == b'|') {
                            return Err(format!("{at}: method {m}"));
                        }
                        bump(s, "HTTP rule with method");
                    }
                    if let Some(hs) = hm.get("headers") {
                        for x in seq(hs, at)? {
                            string(x, at)?;
                        }
                        bump(s, "HTTP rule with headers");
                    }
                    if !seen.insert(format!("{h:?}")) {
                        return Err(format!("{at}: duplicate HTTP rule {h:?}"));
                    }
                    bump(s, "HTTP rules");
                }
            }
            ["dns"] => {
                if !egress
                    || ranges
                    || numbers != [Some(53)]
                    || !protos.iter().all(|p| ["TCP", "UDP", "ANY"].contains(p))
                {
                    return Err(format!("{at}: DNS rules need egress and port 53 alone"));
                }
                for f in seq(&rm["dns"], at)? {
                    check_fqdn(f, at, s, "DNS rule")?;
                    bump(s, "DNS rules");
                }
            }
            _ => return Err(format!("{at}: one L7 kind per port rule: {ks:?}")),
        }
    }
    Ok(())
}

const ENTITIES: [&str; 12] = [
    "all",
    "world",
    "cluster",
    "cluster-mesh",
    "host",
    "init",
    "ingress",
    "unmanaged",
    "remote-node",
    "health",
    "none",
    "kube-apiserver",
];

fn check_rules(v: &Value, section: &str, at: &str, s: &mut Stats) -> Result<usize, String> {
    let rules = seq(v, at)?;
    let egress = section.starts_with("egress");
    let deny = section.ends_with("Deny");
    let dir = if egress { "to" } else { "from" };
    for r in rules {
        let m = map(r, at)?;
        let mut allowed: Vec<String> =
            ["Endpoints", "CIDR", "CIDRSet", "Entities"].iter().map(|p| format!("{dir}{p}")).collect();
        allowed.push("toPorts".into());
        if egress && !deny {
            allowed.push("toFQDNs".into());
        }
        let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
        let ks = keys(m, &allowed, at)?;
        let peers: Vec<&str> = ks.iter().copied().filter(|k| *k != "toPorts").collect();
        if peers.len() > 1 {
            return Err(format!("{at}: more than one peer kind: {peers:?}"));
        }
        for &k in &peers {
            bump(s, format!("{section}.{k}"));
            let items = seq(&m[k], at)?;
            if items.is_empty() {
                return Err(format!("{at}: empty {k}"));
            }
            for item in items {
                match k.trim_start_matches(dir) {
                    "Endpoints" => check_selector(item, at, s)?,
                    "Entities" => {
                        let e = string(item, at)?;
                        if !ENTITIES.contains(&e) {
                            return Err(format!("{at}: entity {e}"));
                        }
                        bump(s, format!("entity {e}"));
                    }
                    "CIDR" => {
                        cidr(item, at)?;
                    }
                    "CIDRSet" => {
                        let cm = map(item, at)?;
                        keys(cm, &["cidr", "except"], at)?;
                        let net = cidr(&cm["cidr"], at)?;
                        if let Some(ex) = cm.get("except") {
                            for e in seq(ex, at)? {
                                let e = cidr(e, at)?;
                                if !net.contains(&e) || e.prefix_len() < net.prefix_len() {
                                    return Err(format!("{at}: except {e} outside {net}"));
                                }
                                bump(s, "CIDRSet except");
                            }
                        }
                    }
                    _ => check_fqdn(item, at, s, "toFQDNs")?,
                }
            }
        }
        if let Some(p) = m.get("toPorts") {
            bump(s, format!("{section} rule with toPorts"));
            check_ports(p, at, (!deny).then_some(egress), s)?;
        }
    }
    Ok(rules.len())
}

/// Checks a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy against the schema and the sanitizer.
fn check_cilium_policy(d: &Value, s: &mut Stats) -> Result<(), String> {
    let top = map(d, "policy")?;
    keys(top, &["apiVersion", "kind", "metadata", "spec"], "policy")?;
    if d["apiVersion"].as_str() != Some("cilium.io/v2") {
        return Err(format!("apiVersion {:?}", d["apiVersion"]));
    }
    let namespaced = match kind(d) {
        "CiliumNetworkPolicy" => true,
        "CiliumClusterwideNetworkPolicy" => false,
        k => return Err(format!("kind {k}")),
    };
    let meta = map(&d["metadata"], "metadata")?;
    keys(meta, if namespaced { &["name", "namespace"] } else { &["name"] }, "metadata")?;
    let name = string(&meta["name"], "metadata.name")?;
    let at = match meta.get("namespace") {
        Some(ns) => format!("{}/{name}", string(ns, "metadata.namespace")?),
        None if namespaced => return Err(format!("{name}: no namespace")),
        None => name.to_string(),
    };
    if !dns_name(name) {
        return Err(format!("{at}: invalid name"));
    }
    let spec = map(&d["spec"], &at)?;
    let sections = ["ingress", "ingressDeny", "egress", "egressDeny"];
    let mut allowed = vec!["description", "endpointSelector", "enableDefaultDeny"];
    allowed.extend(sections);
    keys(spec, &allowed, &at)?;
    let sel = spec.get("endpointSelector").ok_or_else(|| format!("{at}: no endpointSelector"))?;
    check_selector(sel, &at, s)?;
    if let Some(dd) = spec.get("enableDefaultDeny") {
        let m = map(dd, &at)?;
        for k in keys(m, &["ingress", "egress"], &at)? {
            m[k].as_bool().ok_or_else(|| format!("{at}: enableDefaultDeny.{k} not a bool"))?;
            bump(s, format!("enableDefaultDeny.{k}"));
        }
    }
    if let Some(x) = spec.get("description") {
        string(x, &at)?;
    }
    let mut rules = 0;
    for section in sections {
        if let Some(v) = spec.get(section) {
            rules += check_rules(v, section, &at, s)?;
            bump(s, format!("policies with {section}"));
        }
    }
    if rules == 0 {
        return Err(format!("{at}: no rules"));
    }
    Ok(())
}

/// Generates, checks every object, and returns the output and the policies' feature counts.
fn check(p: &Params, cnps: usize, ccnps: usize, http_rules: usize) -> (String, Stats) {
    let y = generate_cilium_yaml(p, cnps, ccnps, http_rules);
    let ds = docs(&y);
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &ds {
        *kinds.entry(kind(d)).or_default() += 1;
    }
    let plan = Plan::new(p);
    let nodes = nodes::count(&plan);
    let at = format!("{p:?} {cnps} {ccnps} {http_rules}");
    assert_eq!(kinds.get("Namespace"), Some(&(p.namespaces + 3)), "{at}");
    assert_eq!(kinds.get("Pod").copied().unwrap_or(0), p.pods, "{at}");
    assert_eq!(kinds.get("NetworkPolicy").copied().unwrap_or(0), p.policies, "{at}");
    assert_eq!(kinds.get("CiliumNetworkPolicy").copied().unwrap_or(0), cnps, "{at}");
    assert_eq!(kinds.get("CiliumClusterwideNetworkPolicy").copied().unwrap_or(0), ccnps, "{at}");
    assert_eq!(kinds.get("Node"), Some(&nodes), "{at}");
    assert_eq!(kinds.get("Service"), Some(&1), "{at}");
    assert_eq!(kinds.get("EndpointSlice"), Some(&1), "{at}");
    assert!(kinds.get("ServiceAccount").copied().unwrap_or(0) >= 3, "{at}");
    let known = [
        "Namespace",
        "Pod",
        "NetworkPolicy",
        "Node",
        "Service",
        "EndpointSlice",
        "ServiceAccount",
        "CiliumNetworkPolicy",
        "CiliumClusterwideNetworkPolicy",
    ];
    assert!(kinds.keys().all(|k| known.contains(k)), "{at}: {kinds:?}");

    // Nodes: InternalIPs in 10/8, every pod on one, host-network pods at their node's address.
    let mut node_ip: HashMap<&str, &str> = HashMap::new();
    for d in ds.iter().filter(|d| kind(d) == "Node") {
        let addrs = d["status"]["addresses"].as_sequence().unwrap();
        let ip = addrs.iter().find(|a| a["type"] == "InternalIP").unwrap()["address"].as_str().unwrap();
        assert_eq!(ip.parse::<std::net::Ipv4Addr>().unwrap().octets()[0], 10, "{ip}");
        node_ip.insert(d["metadata"]["name"].as_str().unwrap(), ip);
    }
    let ips: BTreeSet<&str> = node_ip.values().copied().collect();
    assert_eq!(ips.len(), nodes, "node addresses are distinct");
    for pod in ds.iter().filter(|d| kind(d) == "Pod") {
        let node = pod["spec"]["nodeName"].as_str().unwrap();
        let ip = node_ip.get(node).unwrap_or_else(|| panic!("{at}: no node {node}"));
        if pod["spec"]["hostNetwork"].as_bool() == Some(true) {
            assert_eq!(pod["status"]["podIP"].as_str(), Some(*ip), "{at}: host network pod");
        }
    }
    // The API server: the EndpointSlice of default/kubernetes.
    let slice = ds.iter().find(|d| kind(d) == "EndpointSlice").unwrap();
    assert_eq!(slice["apiVersion"], "discovery.k8s.io/v1");
    assert_eq!(slice["metadata"]["labels"]["kubernetes.io/service-name"], "kubernetes");
    assert_eq!(slice["metadata"]["namespace"], "default");
    let api: Vec<&str> =
        slice["endpoints"].as_sequence().unwrap().iter().map(|e| e["addresses"][0].as_str().unwrap()).collect();
    assert_eq!(api, nodes::API_SERVERS);

    let mut s = Stats::new();
    let mut names = BTreeSet::new();
    for d in ds.iter().filter(|d| kind(d).starts_with("Cilium")) {
        if let Err(e) = check_cilium_policy(d, &mut s) {
            panic!("{at}: {e}\n{}", serde_yaml_ng::to_string(d).unwrap_or_default());
        }
        let key = (kind(d), d["metadata"]["namespace"].as_str(), d["metadata"]["name"].as_str());
        assert!(names.insert(key), "{at}: duplicate {key:?}");
    }
    let http = s.get("HTTP rules").copied().unwrap_or(0);
    assert_eq!(http, if cnps + ccnps > 0 { http_rules } else { 0 }, "{at}: HTTP rules");

    // The core loader reads every Kubernetes object with no diagnostic. On the Cilium objects, it says only what
    // it does not model yet (such a policy is not loaded): nothing is invalid.
    let loaded = netpol_core::load::load_str("cilium.yaml", &y);
    let mut not_loaded = BTreeSet::new();
    for d in &loaded.diagnostics {
        let cilium = d.object.as_deref().is_some_and(|o| o.starts_with("Cilium"));
        let not_yet = d.severity == Severity::Error && d.message.contains("not modelled by netpol yet");
        assert!(cilium && not_yet, "{at}: {d}");
        if not_yet {
            not_loaded.insert(d.origin.to_string());
        }
    }
    let c = &loaded.cluster;
    assert_eq!(c.pods.len(), p.pods, "{at}");
    assert_eq!(c.namespaces.len(), p.namespaces + 3, "{at}");
    assert_eq!(c.policies.iter().filter(|q| q.kind == PolicyKind::NetworkPolicy).count(), p.policies, "{at}");
    let cilium: BTreeSet<String> =
        c.policies.iter().filter(|q| q.kind.is_cilium()).map(|q| q.origin.to_string()).collect();
    assert!(cilium.is_disjoint(&not_loaded), "{at}");
    assert_eq!(cilium.len() + not_loaded.len(), cnps + ccnps, "{at}");
    // Every one of them loads (entities, toServices, toFQDNs and L7 rules included).
    assert!(not_loaded.is_empty(), "{at}: {} not loaded", not_loaded.len());
    s.insert("netpol-core: Cilium policies loaded".into(), cilium.len());
    s.insert("netpol-core: Cilium policies not modelled yet".into(), not_loaded.len());
    for k in loaded.skipped_kinds.keys() {
        assert!(["Service", "EndpointSlice"].iter().any(|x| k.contains(x)), "{at}: skipped {k}");
    }
    // The engine takes it.
    let e = netpol_core::compile::Engine::new(loaded.cluster);
    assert!(e.identities().len() > 1 || p.pods < 2, "{at}");
    (y, s)
}

#[test]
fn deterministic() {
    let p = Params::new(20, 200, 80);
    let y = generate_cilium_yaml(&p, 100, 20, 50);
    assert_eq!(y, generate_cilium_yaml(&p, 100, 20, 50));
    assert_ne!(y, generate_cilium_yaml(&Params { seed: 2, ..p.clone() }, 100, 20, 50));
}

/// Everything but the service account and node lines, up to the Nodes, is the cluster of `generate_yaml`.
#[test]
fn extends_the_plain_cluster() {
    for p in [Params::new(20, 200, 80), Params::new(0, 10, 5), Params::preset("1k").unwrap()] {
        let plain = crate::generate_yaml(&p);
        let y = generate_cilium_yaml(&p, 50, 10, 30);
        let end = y.find("---\napiVersion: v1\nkind: Node\n").unwrap();
        let base: String = y[..end]
            .lines()
            .filter(|l| !l.starts_with("  serviceAccountName: ") && !l.starts_with("  nodeName: "))
            .flat_map(|l| [l, "\n"])
            .collect();
        assert_eq!(base, plain);
        // And as objects: the v1 part is generate_yaml's, apart from the pods' two new fields.
        let mut ours: Vec<Value> = docs(&y)
            .into_iter()
            .filter(|d| ["Namespace", "Pod", "NetworkPolicy"].contains(&kind(d)))
            .filter(|d| d["metadata"]["name"] != "default")
            .collect();
        for d in &mut ours {
            let is_pod = kind(d) == "Pod";
            if let Some(spec) = d.get_mut("spec").and_then(Value::as_mapping_mut).filter(|_| is_pod) {
                assert!(spec.remove("nodeName").is_some());
                spec.remove("serviceAccountName");
            }
        }
        assert_eq!(ours, docs(&plain));
    }
}

#[test]
fn counts_and_schema_small_and_degenerate() {
    check(&Params::new(20, 200, 80), 300, 40, 120);
    check(&Params { seed: 7, ..Params::new(3, 40, 90) }, 50, 9, 7);
    check(&Params::new(0, 10, 30), 40, 5, 100);
    check(&Params::new(5, 0, 0), 10, 0, 3);
    check(&Params::new(1, 1, 1), 0, 1, 5);
    check(&Params::new(1, 1, 1), 1, 0, 500);
    check(&Params::new(4, 30, 8), 0, 0, 10);
    check(&Params::new(4, 30, 8), 2, 2, 0);
}

fn check_features(s: &Stats) {
    for needle in [
        "selector matchLabels",
        "selector matchExpressions",
        "selector {}",
        "operator In",
        "operator NotIn",
        "operator Exists",
        "operator DoesNotExist",
        "label source k8s:",
        "label source any:",
        "label io.kubernetes.pod.namespace",
        "label io.cilium.k8s.namespace.labels.",
        "label io.cilium.k8s.policy.serviceaccount",
        "ingress.fromEndpoints",
        "egress.toEndpoints",
        "ingress.fromEntities",
        "egress.toEntities",
        "entity world",
        "entity cluster",
        "entity host",
        "entity remote-node",
        "entity kube-apiserver",
        "entity all",
        "egress.toCIDR",
        "egress.toCIDRSet",
        "ingress.fromCIDRSet",
        "ingress.fromCIDR",
        "egressDeny.toCIDR",
        "egressDeny.toCIDRSet",
        "CIDRSet except",
        "port number",
        "port name",
        "endPort range",
        "protocol TCP",
        "protocol UDP",
        "protocol SCTP",
        "protocol ANY",
        "protocol omitted",
        "policies with ingressDeny",
        "policies with egressDeny",
        "ingressDeny.fromEndpoints",
        "ingressDeny.fromEntities",
        "egressDeny.toEntities",
        "egressDeny.toEndpoints",
        "egressDeny rule with toPorts",
        "enableDefaultDeny.ingress",
        "enableDefaultDeny.egress",
        "HTTP rules",
        "HTTP rule with method",
        "HTTP rule with headers",
        "DNS rules",
        "DNS rule matchPattern",
        "egress.toFQDNs",
        "toFQDNs matchName",
        "toFQDNs matchPattern",
    ] {
        assert!(s.contains_key(needle), "{needle} missing: {s:#?}");
    }
}

/// Every feature on the 1k preset, with the policy counts.
#[test]
fn every_feature_on_the_1k_preset() {
    let (_, s) = check(&Params::preset("1k").unwrap(), 2_000, 50, 200);
    check_features(&s);
}

/// The benchmark's shape, with its feature counts printed. Slow in debug builds:
/// `cargo test -p netpol-synth --release -- --ignored --nocapture cilium`.
#[test]
#[ignore]
fn counts_and_schema_10k_preset_with_cilium() {
    let p = Params::preset("10k").unwrap();
    let t = std::time::Instant::now();
    let y = generate_cilium_yaml(&p, 2_000, 50, 200);
    eprintln!("generated {} bytes in {:?}", y.len(), t.elapsed());
    let (_, s) = check(&p, 2_000, 50, 200);
    check_features(&s);
    for (k, v) in &s {
        eprintln!("{v:6}  {k}");
    }
}

/// The checker itself rejects what Cilium rejects.
#[test]
fn checker_rejects_invalid_policies() {
    let head = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: x\n  namespace: n\nspec:\n  endpointSelector: {}\n";
    let ok = "  ingress:\n  - fromEndpoints:\n    - {}\n    toPorts:\n    - ports:\n      - port: \"80\"\n        protocol: TCP\n";
    let d: Value = serde_yaml_ng::from_str(&format!("{head}{ok}")).unwrap();
    check_cilium_policy(&d, &mut Stats::new()).unwrap();
    for bad in [
        // A port number that is not a string.
        "  ingress:\n  - toPorts:\n    - ports:\n      - port: 80\n",
        // L7 rules on UDP.
        "  ingress:\n  - toPorts:\n    - ports:\n      - port: \"80\"\n        protocol: UDP\n      rules:\n        http:\n        - path: '/'\n",
        // DNS rules on ingress.
        "  ingress:\n  - toPorts:\n    - ports:\n      - port: \"53\"\n        protocol: ANY\n      rules:\n        dns:\n        - matchPattern: \"*\"\n",
        // An exception outside its CIDR.
        "  egress:\n  - toCIDRSet:\n    - cidr: \"10.0.0.0/8\"\n      except:\n      - \"11.0.0.0/16\"\n",
        // Host bits, a bad protocol, an unknown entity, two peer kinds, toFQDNs on ingress.
        "  egress:\n  - toCIDR:\n    - \"10.0.0.1/8\"\n",
        "  egress:\n  - toPorts:\n    - ports:\n      - port: \"1\"\n        protocol: ICMP\n",
        "  egress:\n  - toEntities:\n    - everything\n",
        "  egress:\n  - toEntities:\n    - world\n    toCIDR:\n    - \"1.0.0.0/8\"\n",
        "  ingress:\n  - toFQDNs:\n    - matchName: a.b\n",
        // endPort below the port, L7 in a deny rule, no rules at all, a bad operator.
        "  egress:\n  - toPorts:\n    - ports:\n      - port: \"100\"\n        endPort: 99\n",
        "  egressDeny:\n  - toPorts:\n    - ports:\n      - port: \"80\"\n        protocol: TCP\n      rules:\n        http:\n        - path: '/'\n",
        "  enableDefaultDeny:\n    ingress: false\n",
        "  ingress:\n  - fromEndpoints:\n    - matchExpressions:\n      - key: a\n        operator: Exists\n        values: [b]\n",
    ] {
        let d: Value = serde_yaml_ng::from_str(&format!("{head}{bad}")).unwrap();
        assert!(check_cilium_policy(&d, &mut Stats::new()).is_err(), "accepted:\n{bad}");
    }
}
