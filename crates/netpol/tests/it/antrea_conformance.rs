//! Antrea's native policy semantics as data: `tests/conformance/antrea/`, one YAML file per case (format and
//! provenance in its README.md). A case is a cluster (Nodes, Namespaces, ServiceAccounts, Pods, Services, Tiers,
//! ClusterGroups, Groups, ACNPs, ANNPs, Kubernetes NetworkPolicies, upstream ClusterNetworkPolicies), the objects
//! Antrea's admission refuses (`invalid`), and probes, each with Antrea's verdict and where upstream says so
//! (antrea-io/antrea at `ANTREA_COMMIT`).
//!
//! `every_antrea_probe` loads each case with the core loader
//! (`netpol_core::load::load_str`): exactly the objects of `invalid` get error diagnostics (naming the object and
//! its field), no other error and no skipped kind; it compiles the cluster (`Engine::new`) and checks every probe
//! with `Engine::allowed_flow` (its `dst_fqdn` and HTTP request as the flow's) against the reference evaluator and
//! `explain`, and a probe's `action` (reject or drop) against the rule explain says decided. The structure of the data is
//! checked by the other tests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use netpol_core::compile::{Engine, FlowInfo};
use netpol_core::l7::{HttpRequest, Request};
use netpol_core::load::{load_str, Severity};
use netpol_core::model::Action;
use netpol_core::portset::{icmp_port, Protocol};
use netpol_core::verdict::{DecidedBy, Explanation, Verdict};
use serde::Deserialize;

/// What the data holds (README.md of the data directory): at least this many cases, probes and refused objects.
pub(crate) const CASES: usize = 46;
pub(crate) const PROBES: usize = 439;
const INVALID: usize = 49;
/// The antrea-io/antrea commit every `path:line` reference points into.
const ANTREA_COMMIT: &str = "fc70f2bb70";

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/antrea")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    pub(crate) name: String,
    source: String,
    description: String,
    pub(crate) manifests: String,
    #[serde(default)]
    pub(crate) invalid: Vec<Invalid>,
    pub(crate) probes: Vec<Probe>,
}

/// An object of the manifests that admission refuses.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Invalid {
    /// `tier/<name>`, `acnp/<name>`, `annp/<ns>/<name>`, `clustergroup/<name>`, `group/<ns>/<name>`.
    object: String,
    /// The field path in that object.
    field: String,
    reason: String,
    source: String,
}

impl Invalid {
    /// The object as the loader's diagnostics name it.
    fn label(&self) -> Option<String> {
        let parts: Vec<&str> = self.object.split('/').collect();
        Some(match parts[..] {
            ["tier", n] => format!("Tier.crd.antrea.io {n}"),
            ["acnp", n] => format!("ClusterNetworkPolicy.crd.antrea.io {n}"),
            ["annp", ns, n] => format!("NetworkPolicy.crd.antrea.io {ns}/{n}"),
            ["clustergroup", n] => format!("ClusterGroup {n}"),
            ["group", ns, n] => format!("Group {ns}/{n}"),
            _ => return None,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Probe {
    pub(crate) from: String,
    pub(crate) to: String,
    /// The destination port; for ICMP, the ICMP type (code 0).
    pub(crate) port: u16,
    pub(crate) protocol: String,
    #[serde(default)]
    pub(crate) http: Option<Http>,
    #[serde(default)]
    pub(crate) dst_fqdn: Option<String>,
    pub(crate) expect: String,
    /// `reject` or `drop` (only with `expect: deny`).
    #[serde(default)]
    pub(crate) action: Option<String>,
    source: String,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Http {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl Probe {
    pub(crate) fn describe(&self) -> String {
        let mut s = format!("{} -> {} {}/{}", self.from, self.to, self.port, self.protocol);
        if let Some(h) = &self.http {
            s.push_str(&format!(" HTTP {} {}", h.method.as_deref().unwrap_or("GET"), h.path.as_deref().unwrap_or("/")));
            if let Some(host) = &h.host {
                s.push_str(&format!(" Host: {host}"));
            }
        }
        if let Some(n) = &self.dst_fqdn {
            s.push_str(&format!(" ({n})"));
        }
        s
    }

    fn request(&self) -> Option<Request> {
        let h = self.http.as_ref()?;
        let mut r = HttpRequest::new(h.method.as_deref().unwrap_or("GET"), h.path.as_deref().unwrap_or("/"));
        if let Some(host) = &h.host {
            r = r.with_host(host);
        }
        for (k, v) in &h.headers {
            r = r.with_header(k, v);
        }
        Some(Request::Http(r))
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

/// Every case file, in name order, parsed.
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

#[test]
fn every_antrea_probe() {
    let (failures, checked) = run(cases());
    assert!(
        failures.is_empty(),
        "{} Antrea conformance failures ({checked} probes run):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= PROBES, "probes checked: {checked}, fewer than the {PROBES} the data holds");
}

/// Whether the denied side of `e` was decided by a Reject rule (`Some(true)`), or dropped (`Some(false)`).
fn rejected(e: &Explanation) -> Option<bool> {
    let side = [&e.egress, &e.ingress].into_iter().find(|s| !s.allowed)?;
    Some(side.decided_by == DecidedBy::Rule && side.walk.last().is_some_and(|r| r.action == Action::Reject))
}

/// Checks the load of one case: an error for each `invalid` object (naming its field), none for other objects, no
/// skipped kind. Returns the problems.
fn check_load(case: &Case, diagnostics: &[netpol_core::load::Diagnostic], skipped: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let errors: Vec<_> = diagnostics.iter().filter(|d| d.severity == Severity::Error).collect();
    let mut expected = BTreeSet::new();
    for inv in &case.invalid {
        let Some(label) = inv.label() else {
            problems.push(format!("invalid entry `{}`: not a known object form", inv.object));
            continue;
        };
        expected.insert(label.clone());
        let of_object: Vec<_> = errors.iter().filter(|d| d.object.as_deref() == Some(label.as_str())).collect();
        if of_object.is_empty() {
            problems.push(format!("{} is not refused ({}; {})", inv.object, inv.reason, inv.source));
        } else if !of_object.iter().any(|d| d.field.as_deref().is_some_and(|f| f.starts_with(&inv.field))) {
            let got: Vec<String> = of_object.iter().map(|d| d.to_string()).collect();
            problems.push(format!(
                "{} is refused, but not at {} ({}): {}",
                inv.object,
                inv.field,
                inv.reason,
                got.join("; ")
            ));
        }
    }
    for e in errors {
        if !e.object.as_ref().is_some_and(|o| expected.contains(o)) {
            problems.push(format!("unexpected error: {e}"));
        }
    }
    if !skipped.is_empty() {
        problems.push(format!("kinds skipped as not modelled: {}", skipped.join(", ")));
    }
    problems
}

/// Runs the probes of `cases`: the failures (each a message) and the number of probes run.
fn run(cases: Vec<(String, Case)>) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (file, case) in cases {
        let loaded = load_str(&format!("tests/conformance/antrea/{file}.yaml (manifests)"), &case.manifests);
        let skipped: Vec<String> = loaded.skipped_kinds.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        let problems = check_load(&case, &loaded.diagnostics, &skipped);
        if !problems.is_empty() {
            let mut msg = format!(
                "{}: the manifests do not load as admission would ({} probes not run)\n",
                case.name,
                case.probes.len()
            );
            for p in &problems {
                msg.push_str(&format!("    {p}\n"));
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
            if let (Some(action), false, false) = (&p.action, want, got) {
                let reject = rejected(&explanation);
                if reject != Some(action == "reject") {
                    let said = match reject {
                        Some(true) => "reject",
                        Some(false) => "drop",
                        None => "no denying side",
                    };
                    wrong.push(format!("expected the deny answered as {action}, explain says {said}"));
                }
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
fn antrea_suite_size_and_sources() {
    let cases = cases();
    assert!(cases.len() >= CASES, "{} cases in {}, expected at least {CASES}", cases.len(), data().display());
    let probes: usize = cases.iter().map(|(_, c)| c.probes.len()).sum();
    assert!(probes >= PROBES, "{probes} probes, expected at least {PROBES}");
    let invalid: usize = cases.iter().map(|(_, c)| c.invalid.len()).sum();
    assert!(invalid >= INVALID, "{invalid} invalid entries, expected at least {INVALID}");
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
        for i in &case.invalid {
            if let Err(e) = check_source(&i.source, false) {
                bad.push(format!("{file}: invalid {}: source: {e}", i.object));
            }
        }
    }
    assert!(bad.is_empty(), "cases, probes or invalid entries without a usable source:\n{}", bad.join("\n"));
}

/// A source is `; `-separated references, each `path:line[-line]` in antrea-io/antrea, optionally followed by words.
/// A case's source names the commit first (`antrea@<commit> `).
fn check_source(source: &str, case_level: bool) -> Result<(), String> {
    let prefix = format!("antrea@{ANTREA_COMMIT} ");
    let refs = match source.strip_prefix(&prefix) {
        Some(rest) => rest,
        None if case_level => return Err(format!("does not start with `{prefix}`")),
        None => source,
    };
    if refs.trim().is_empty() {
        return Err("empty".to_string());
    }
    for r in refs.split("; ") {
        let (path, rest) = r.split_once(':').ok_or_else(|| format!("`{r}` is not path:line"))?;
        let path_ok = path.contains('/')
            && !path.contains(char::is_whitespace)
            && [".go", ".md", ".yaml"].iter().any(|ext| path.ends_with(ext));
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '-').collect();
        let lines_ok = match digits.split_once('-') {
            Some((a, b)) => a.parse::<u32>().is_ok_and(|a| b.parse::<u32>().is_ok_and(|b| 0 < a && a <= b)),
            None => digits.parse::<u32>().is_ok_and(|a| a > 0),
        };
        if !path_ok || !lines_ok {
            return Err(format!("`{r}` is not path:line[-line]"));
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
    ("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy", false),
    ("crd.antrea.io/v1beta1", "ClusterNetworkPolicy", false),
    ("crd.antrea.io/v1beta1", "NetworkPolicy", true),
    ("crd.antrea.io/v1beta1", "Tier", false),
    ("crd.antrea.io/v1beta1", "ClusterGroup", false),
    ("crd.antrea.io/v1beta1", "Group", true),
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

/// Structure only, no loader: every file parses into a case named after it; every manifest document is an object of
/// a known kind with a name (and a declared namespace when namespaced); addresses are in the allowed ranges; every
/// Pod runs on a declared Node; every `invalid` entry names an object of the manifests; every probe names a Pod of
/// the case or an allowed address, a protocol, a port and a verdict, with `action` only on a deny.
#[test]
fn antrea_cases_are_well_formed() {
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
        let mut objects = BTreeSet::new();
        let mut short = BTreeSet::new();
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
            // The same name twice is only right when the second is refused (`invalid`).
            objects.insert((api.to_string(), kind.to_string(), ns.map(str::to_string), name.to_string()));
            if api == "crd.antrea.io/v1beta1" {
                short.insert(match (kind, ns) {
                    ("ClusterNetworkPolicy", _) => format!("acnp/{name}"),
                    ("NetworkPolicy", Some(ns)) => format!("annp/{ns}/{name}"),
                    ("Tier", _) => format!("tier/{name}"),
                    ("ClusterGroup", _) => format!("clustergroup/{name}"),
                    ("Group", Some(ns)) => format!("group/{ns}/{name}"),
                    _ => String::new(),
                });
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
        for inv in &case.invalid {
            if !short.contains(&inv.object) {
                err(format!("invalid `{}`: no such object in the manifests", inv.object));
            }
            if inv.field.is_empty() || inv.reason.trim().is_empty() {
                err(format!("invalid `{}`: empty field or reason", inv.object));
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
            if p.dst_fqdn.is_some() && p.to.parse::<IpAddr>().is_err() {
                err(format!("{}: dst_fqdn needs an address as destination", p.describe()));
            }
            if p.expect != "allow" && p.expect != "deny" {
                err(format!("{}: expect must be allow or deny", p.describe()));
            }
            match p.action.as_deref() {
                None => {}
                Some("reject" | "drop") if p.expect == "deny" => {}
                Some(a) => err(format!("{}: action `{a}` (reject or drop, only with deny)", p.describe())),
            }
            if p.note.as_deref().is_some_and(|n| n.trim().is_empty()) {
                err(format!("{}: empty note", p.describe()));
            }
        }
    }
    assert!(bad.is_empty(), "malformed Antrea conformance data:\n{}", bad.join("\n"));
}
