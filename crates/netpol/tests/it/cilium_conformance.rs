//! Cilium's policy semantics as data: `tests/conformance/cilium/`, one YAML file per case (format and provenance in
//! its README.md). A case is a cluster (Nodes, Namespaces, Pods, ServiceAccounts, Services and EndpointSlices,
//! `cilium.io/v2` CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy, Kubernetes NetworkPolicy) and probes, each
//! with the verdict Cilium gives and where upstream says so (cilium/cilium at `CILIUM_COMMIT`, or a docs.cilium.io
//! page).
//!
//! `every_cilium_probe` loads each case with the core loader (`netpol_core::load::load_str`, no error diagnostic
//! and no skipped kind allowed), compiles it (`Engine::new`) and checks every probe with `Engine::allowed_flow`
//! (its `dst_fqdn`, and its HTTP request or DNS query, as the flow's), against the reference evaluator, and that
//! `explain` gives the same verdict (every case passes now);
//! `cilium_l3l4_cases` runs the same checks on the cases netpol answers whole today, and the structure of the data
//! is checked by the other tests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use netpol_core::compile::{Engine, FlowInfo};
use netpol_core::l7::{HttpRequest, Request};
use netpol_core::load::{load_str, Severity};
use netpol_core::portset::{icmp_port, Protocol};
use netpol_core::verdict::Verdict;
use serde::Deserialize;

/// What the data holds (README.md of the data directory): at least this many cases and probes.
const CASES: usize = 45;
const PROBES: usize = 387;
/// The cilium/cilium commit every `path:line` reference points into (README.md says how it was read).
const CILIUM_COMMIT: &str = "2efb257c85";

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/cilium")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    pub(crate) name: String,
    /// Where upstream states the rules the case checks: `cilium@<commit> path:line; ...; https://...#section`.
    source: String,
    description: String,
    /// A multi-document YAML stream.
    pub(crate) manifests: String,
    pub(crate) probes: Vec<Probe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Probe {
    /// `namespace/pod` or an IP address.
    pub(crate) from: String,
    pub(crate) to: String,
    /// The destination port; for ICMP, the ICMP type (code 0).
    pub(crate) port: u16,
    /// `TCP`, `UDP`, `SCTP` or `ICMP`.
    pub(crate) protocol: String,
    /// One HTTP request on the connection: the verdict is then the request's.
    #[serde(default)]
    pub(crate) http: Option<Http>,
    /// One DNS query on the connection: the verdict is then the query's.
    #[serde(default)]
    pub(crate) dns: Option<Dns>,
    /// The DNS name the destination address was resolved from (what `toFQDNs` matches).
    #[serde(default)]
    pub(crate) dst_fqdn: Option<String>,
    /// `allow` or `deny`.
    pub(crate) expect: String,
    /// Where upstream states this verdict: `path:line` (at `CILIUM_COMMIT`) or a URL, `; `-separated.
    source: String,
    /// Why, in a few words (printed on failure).
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Http {
    /// Defaults to `GET`.
    #[serde(default)]
    method: Option<String>,
    /// Defaults to `/`.
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    host: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Dns {
    query: String,
}

impl Probe {
    pub(crate) fn describe(&self) -> String {
        let mut s = format!("{} -> {} {}/{}", self.from, self.to, self.port, self.protocol);
        if let Some(h) = &self.http {
            s.push_str(&format!(" HTTP {} {}", h.method.as_deref().unwrap_or("GET"), h.path.as_deref().unwrap_or("/")));
            if let Some(host) = &h.host {
                s.push_str(&format!(" Host: {host}"));
            }
            for (k, v) in &h.headers {
                s.push_str(&format!(" {k}: {v}"));
            }
        }
        if let Some(d) = &self.dns {
            s.push_str(&format!(" DNS {}", d.query));
        }
        if let Some(n) = &self.dst_fqdn {
            s.push_str(&format!(" ({n})"));
        }
        s
    }

    /// The request the probe carries, as the engine takes it.
    fn request(&self) -> Option<Request> {
        if let Some(h) = &self.http {
            let mut r = HttpRequest::new(h.method.as_deref().unwrap_or("GET"), h.path.as_deref().unwrap_or("/"));
            if let Some(host) = &h.host {
                r = r.with_host(host);
            }
            for (k, v) in &h.headers {
                r = r.with_header(k, v);
            }
            return Some(Request::Http(r));
        }
        self.dns.as_ref().map(|d| Request::Dns(d.query.clone()))
    }

    /// The protocol and the engine's port number (ICMP: type << 8 | code).
    fn proto_port(&self) -> Option<(Protocol, u16)> {
        if self.protocol == "ICMP" {
            let icmp_type = u8::try_from(self.port).ok()?;
            return Some((Protocol::Icmp, icmp_port(icmp_type, 0)));
        }
        Protocol::parse_exact(&self.protocol).map(|p| (p, self.port))
    }
}

/// Every case file, in name order, parsed (a file that does not parse fails here, naming it).
pub(crate) fn cases() -> Vec<(String, Case)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
            let text = std::fs::read_to_string(&p).unwrap();
            let case: Case =
                serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: not a case: {e}", p.display()));
            (stem, case)
        })
        .collect()
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

/// The cases whose every probe the engine answers already (endpoint selectors with Cilium's namespace rules,
/// CIDRs, every entity, `reserved:` selectors, `toServices`, ports, deny, default deny, a node's access to its own
/// pods, HTTP and DNS rules, `toFQDNs`, host policies, node selectors, cloud groups), which `cilium_dataplane.rs`
/// replays in the kernel.
pub(crate) const L3L4_CASES: [&str; 45] = [
    "ccnp-empty-peer-means-all-pods",
    "ccnp-namespace-selection",
    "cidr-never-selects-cluster-addresses",
    "cidr-rules-and-except",
    "cnp-and-ccnp-union",
    "deny-only-policy-default-denies",
    "deny-wins-over-allow",
    "deny-wins-over-networkpolicy",
    "dns-rules",
    "egress-deny-cidr-except",
    "empty-peer-selector",
    "empty-rule-denies-direction",
    "enable-default-deny-false",
    "endpoint-selector-default-deny",
    "entity-all-and-none",
    "entity-cluster",
    "entity-host-and-remote-node",
    "entity-kube-apiserver",
    "entity-world",
    "from-requires",
    "host-reaches-local-pods",
    "icmp-rules",
    "l7-http-egress-connectivity-test",
    "l7-http-headers-and-host",
    "l7-http-method-and-path",
    "l7-l4-only-rule-wildcards-l7",
    "label-source-prefixes",
    "named-port-deny",
    "named-ports",
    "namespace-labels-in-cnp-peer",
    "networkpolicy-and-cnp-union",
    "peer-selector-limited-to-policy-namespace",
    "peer-selector-names-namespace",
    "port-ranges",
    "ports-and-protocols",
    "service-account-label",
    "to-fqdns",
    "to-fqdns-needs-dns-proxy",
    "to-services",
    "from-nodes-and-to-nodes",
    "host-policy-egress-connectivity-test",
    "host-policy-ingress-connectivity-test",
    "host-policy-node-selection-and-deny",
    "host-policy-dns-rules",
    "to-groups",
];

#[test]
fn cilium_l3l4_cases() {
    let all = cases();
    let chosen: Vec<(String, Case)> = all.into_iter().filter(|(f, _)| L3L4_CASES.contains(&f.as_str())).collect();
    assert_eq!(chosen.len(), L3L4_CASES.len(), "a case of L3L4_CASES is missing from the data");
    let (failures, checked) = run(chosen);
    assert!(
        failures.is_empty(),
        "{} Cilium conformance failures ({checked} probes run):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 150, "only {checked} probes checked");
}

#[test]
fn every_cilium_probe() {
    let (failures, checked) = run(cases());
    assert!(
        failures.is_empty(),
        "{} Cilium conformance failures ({checked} probes run):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= PROBES, "probes checked: {checked}, fewer than the {PROBES} the data holds");
}

/// Runs the probes of `cases`: the failures (each a message) and the number of probes run.
fn run(cases: Vec<(String, Case)>) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (file, case) in cases {
        let loaded = load_str(&format!("tests/conformance/cilium/{file}.yaml (manifests)"), &case.manifests);
        let errors: Vec<String> =
            loaded.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(|d| d.to_string()).collect();
        let skipped: Vec<String> = loaded.skipped_kinds.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        if !errors.is_empty() || !skipped.is_empty() {
            let mut msg =
                format!("{}: the manifests do not load cleanly ({} probes not run)\n", case.name, case.probes.len());
            for e in &errors {
                msg.push_str(&format!("    {e}\n"));
            }
            if !skipped.is_empty() {
                msg.push_str(&format!("    kinds skipped as not modelled: {}\n", skipped.join(", ")));
            }
            failures.push(msg);
            continue;
        }
        let engine = Engine::new(loaded.cluster);
        for p in &case.probes {
            checked += 1;
            let ends = (engine.parse_endpoint(&p.from, "default"), engine.parse_endpoint(&p.to, "default"));
            let (Ok(src), Ok(dst)) = ends else {
                failures.push(format!("{}: {}: endpoint not resolved: {:?}\n", case.name, p.describe(), ends));
                continue;
            };
            let (proto, port) = p.proto_port().unwrap();
            let request = p.request();
            let info = FlowInfo { dst_name: p.dst_fqdn.as_deref(), request: request.as_ref() };
            let want = p.expect == "allow";
            let got = engine.allowed_flow(&src, &dst, info, proto, port);
            let explanation = engine.explain_flow(&src, &dst, info, proto, port);
            let reference = netpol_core::reference::allowed_flow(engine.cluster(), &src, &dst, info, proto, port);
            let mut wrong = Vec::new();
            if reference != want {
                wrong.push(format!("the reference evaluator says {}", Verdict::from_bool(reference).as_str()));
            }
            if got != want {
                wrong.push(format!("expected {}, got {}", p.expect, Verdict::from_bool(got).as_str()));
            }
            if explanation.verdict != Verdict::from_bool(got) {
                wrong.push(format!(
                    "explain says {} where allowed() says {}",
                    explanation.verdict.as_str(),
                    Verdict::from_bool(got).as_str()
                ));
            }
            if !wrong.is_empty() {
                let mut msg =
                    format!("{}: {}: {}\n    source: {}\n", case.name, p.describe(), wrong.join("; "), p.source);
                if let Some(n) = &p.note {
                    msg.push_str(&format!("    why: {n}\n"));
                }
                msg.push_str("    explain:\n");
                msg.push_str(&indent(&explanation.render(), "      "));
                failures.push(msg);
            }
        }
    }
    (failures, checked)
}

#[test]
fn cilium_suite_size_and_sources() {
    let cases = cases();
    assert!(cases.len() >= CASES, "{} cases in {}, expected at least {CASES}", cases.len(), data().display());
    let probes: usize = cases.iter().map(|(_, c)| c.probes.len()).sum();
    assert!(probes >= PROBES, "{probes} probes, expected at least {PROBES}");
    let mut bad = Vec::new();
    for (file, case) in &cases {
        if let Err(e) = check_source(&case.source, true) {
            bad.push(format!("{file}: source: {e}"));
        }
        for p in &case.probes {
            if let Err(e) = check_source(&p.source, false) {
                bad.push(format!("{file}: {}: source: {e}", p.describe()));
            }
        }
    }
    assert!(bad.is_empty(), "cases or probes without a usable source:\n{}", bad.join("\n"));
}

/// A source is `; `-separated references, each a URL (`https://...`) or `path:line[-line]` in cilium/cilium,
/// optionally followed by words. A case's source names the commit first (`cilium@<commit> `) when it cites a path.
fn check_source(source: &str, case_level: bool) -> Result<(), String> {
    let prefix = format!("cilium@{CILIUM_COMMIT} ");
    let (pinned, refs) = match source.strip_prefix(&prefix) {
        Some(rest) => (true, rest),
        None => (false, source),
    };
    if refs.trim().is_empty() {
        return Err("empty".to_string());
    }
    for r in refs.split("; ") {
        if let Some(url) = r.strip_prefix("https://") {
            if url.is_empty() || url.contains(char::is_whitespace) {
                return Err(format!("bad URL `{r}`"));
            }
            continue;
        }
        let (path, rest) = r.split_once(':').ok_or_else(|| format!("`{r}` is neither a URL nor path:line"))?;
        let path_ok = path.contains('/')
            && !path.contains(char::is_whitespace)
            && [".go", ".md", ".rst", ".yaml"].iter().any(|ext| path.ends_with(ext));
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '-').collect();
        let lines_ok = match digits.split_once('-') {
            Some((a, b)) => a.parse::<u32>().is_ok_and(|a| b.parse::<u32>().is_ok_and(|b| 0 < a && a <= b)),
            None => digits.parse::<u32>().is_ok_and(|a| a > 0),
        };
        if !path_ok || !lines_ok {
            return Err(format!("`{r}` is not path:line[-line]"));
        }
        if case_level && !pinned {
            return Err(format!("cites `{path}` without naming the commit first (`{prefix}...`)"));
        }
    }
    Ok(())
}

/// Kinds a case may hold: (apiVersion, kind, namespaced).
const KINDS: &[(&str, &str, bool)] = &[
    ("v1", "Namespace", false),
    ("v1", "Node", false),
    ("v1", "Pod", true),
    ("v1", "ServiceAccount", true),
    ("v1", "Service", true),
    ("discovery.k8s.io/v1", "EndpointSlice", true),
    ("networking.k8s.io/v1", "NetworkPolicy", true),
    ("cilium.io/v2", "CiliumNetworkPolicy", true),
    ("cilium.io/v2", "CiliumClusterwideNetworkPolicy", false),
];

/// The addresses the data may use: 10.0.0.0/8 and fd00::/8.
fn allowed_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 10,
        IpAddr::V6(v6) => v6.segments()[0] & 0xff00 == 0xfd00,
    }
}

fn str_at<'a>(v: &'a serde_yaml_ng::Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn seq_at<'a>(v: &'a serde_yaml_ng::Value, path: &[&str]) -> &'a [serde_yaml_ng::Value] {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(|s| s.as_sequence()).map(Vec::as_slice).unwrap_or_default()
}

/// Structure only, no loader: every file parses into a case named after it, every manifest document is an object
/// of a known kind with a name (and a namespace when namespaced, declared as a Namespace of the case), every address
/// (pods, nodes, Services, EndpointSlices, probes) is in the allowed ranges, every pod runs on a declared Node, and
/// every probe names a pod of the case or an allowed address, a protocol, a port and a verdict, with its L7 fields
/// only where they make sense.
#[test]
fn cilium_cases_are_well_formed() {
    let mut bad = Vec::new();
    let mut names = BTreeSet::new();
    for (file, case) in cases() {
        let mut err = |m: String| bad.push(format!("{file}: {m}"));
        if case.name != file {
            err(format!("name `{}` differs from the file name", case.name));
        }
        if !names.insert(case.name.clone()) {
            err("duplicate name".to_string());
        }
        if case.description.trim().is_empty() {
            err("empty description".to_string());
        }
        if case.manifests.trim().is_empty() {
            err("empty manifests".to_string());
        }
        let mut objects = BTreeSet::new();
        let mut namespaces = BTreeSet::new();
        let mut used_namespaces = BTreeSet::new();
        let mut nodes = BTreeSet::new();
        let mut pod_nodes = Vec::new();
        let mut pods = BTreeSet::new();
        let mut addresses: Vec<(String, String)> = Vec::new();
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(&case.manifests).enumerate() {
            let v = match serde_yaml_ng::Value::deserialize(doc) {
                Ok(v) => v,
                Err(e) => {
                    err(format!("manifest document {i}: not YAML: {e}"));
                    continue;
                }
            };
            let (api, kind) = (str_at(&v, &["apiVersion"]).unwrap_or(""), str_at(&v, &["kind"]).unwrap_or(""));
            let Some(&(_, _, namespaced)) = KINDS.iter().find(|(a, k, _)| *a == api && *k == kind) else {
                err(format!("manifest document {i}: unexpected kind `{api}` `{kind}`"));
                continue;
            };
            let name = str_at(&v, &["metadata", "name"]).unwrap_or("");
            let ns = str_at(&v, &["metadata", "namespace"]);
            if name.is_empty() {
                err(format!("manifest document {i} ({kind}): no metadata.name"));
            }
            if namespaced != ns.is_some() {
                err(format!(
                    "{kind} {name}: metadata.namespace {}",
                    if namespaced { "missing" } else { "on a cluster-scoped kind" }
                ));
            }
            if !objects.insert((api.to_string(), kind.to_string(), ns.map(str::to_string), name.to_string())) {
                err(format!("{kind} {name}: declared twice"));
            }
            let what = format!("{kind} {name}");
            match kind {
                "Namespace" => {
                    namespaces.insert(name.to_string());
                }
                "Node" => {
                    nodes.insert(name.to_string());
                    let internal: Vec<&str> = seq_at(&v, &["status", "addresses"])
                        .iter()
                        .filter(|a| str_at(a, &["type"]) == Some("InternalIP"))
                        .filter_map(|a| str_at(a, &["address"]))
                        .collect();
                    if internal.is_empty() {
                        err(format!("{what}: no InternalIP address"));
                    }
                    addresses.extend(internal.into_iter().map(|a| (what.clone(), a.to_string())));
                }
                "Pod" => {
                    let mut ips = Vec::new();
                    ips.extend(str_at(&v, &["status", "podIP"]));
                    ips.extend(seq_at(&v, &["status", "podIPs"]).iter().filter_map(|e| str_at(e, &["ip"])));
                    if ips.is_empty() {
                        err(format!("{what}: no status.podIP"));
                    }
                    addresses.extend(ips.into_iter().map(|a| (what.clone(), a.to_string())));
                    match str_at(&v, &["spec", "nodeName"]) {
                        Some(n) => pod_nodes.push((name.to_string(), n.to_string())),
                        None => err(format!("{what}: no spec.nodeName")),
                    }
                    pods.insert(format!("{}/{name}", ns.unwrap_or("")));
                }
                "Service" => {
                    addresses.extend(str_at(&v, &["spec", "clusterIP"]).map(|a| (what.clone(), a.to_string())));
                }
                "EndpointSlice" => {
                    for e in seq_at(&v, &["endpoints"]) {
                        for a in seq_at(e, &["addresses"]) {
                            addresses.extend(a.as_str().map(|a| (what.clone(), a.to_string())));
                        }
                    }
                }
                _ => {}
            }
            used_namespaces.extend(ns.map(str::to_string));
        }
        for (what, a) in &addresses {
            if !a.parse::<IpAddr>().is_ok_and(allowed_address) {
                err(format!("{what}: address {a} outside 10.0.0.0/8 and fd00::/8"));
            }
        }
        for ns in &used_namespaces {
            if !namespaces.contains(ns) {
                err(format!("namespace `{ns}` is used but not declared"));
            }
        }
        for (p, n) in &pod_nodes {
            if !nodes.contains(n) {
                err(format!("Pod {p}: node `{n}` is not declared"));
            }
        }
        if case.probes.is_empty() {
            err("no probes".to_string());
        }
        for p in &case.probes {
            for end in [&p.from, &p.to] {
                match end.parse::<IpAddr>() {
                    Ok(ip) if !allowed_address(ip) => {
                        err(format!("{}: {end} outside 10.0.0.0/8 and fd00::/8", p.describe()))
                    }
                    Ok(_) => {}
                    Err(_) if !pods.contains(end.as_str()) => {
                        err(format!("{}: `{end}` is no pod of the case", p.describe()))
                    }
                    Err(_) => {}
                }
            }
            match p.protocol.as_str() {
                "ICMP" if p.port > 255 => err(format!("{}: an ICMP type is at most 255", p.describe())),
                "ICMP" => {}
                _ if Protocol::parse_exact(&p.protocol).is_none() => {
                    err(format!("{}: protocol must be TCP, UDP, SCTP or ICMP", p.describe()))
                }
                _ if p.port == 0 => err(format!("{}: port 0", p.describe())),
                _ => {}
            }
            if p.http.is_some() && p.protocol != "TCP" {
                err(format!("{}: an HTTP request needs TCP", p.describe()));
            }
            if let Some(h) = &p.http {
                if h.path.as_deref().is_some_and(|path| !path.starts_with('/')) {
                    err(format!("{}: an HTTP path starts with /", p.describe()));
                }
            }
            if p.http.is_some() && p.dns.is_some() {
                err(format!("{}: an HTTP request and a DNS query on one connection", p.describe()));
            }
            if p.dns.as_ref().is_some_and(|d| d.query.is_empty() || d.query.ends_with('.'))
                || (p.dns.is_some() && p.protocol != "UDP" && p.protocol != "TCP")
            {
                err(format!("{}: a DNS query is a name without the final dot, over UDP or TCP", p.describe()));
            }
            if p.dst_fqdn.is_some() && p.to.parse::<IpAddr>().is_err() {
                err(format!("{}: dst_fqdn needs an address as destination", p.describe()));
            }
            if p.expect != "allow" && p.expect != "deny" {
                err(format!("{}: expect must be allow or deny", p.describe()));
            }
            if p.note.as_deref().is_some_and(|n| n.trim().is_empty()) {
                err(format!("{}: empty note", p.describe()));
            }
        }
    }
    assert!(bad.is_empty(), "malformed Cilium conformance data:\n{}", bad.join("\n"));
}
