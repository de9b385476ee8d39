//! Calico's policy semantics as data: `tests/conformance/calico/`, one YAML file per case (format and provenance in
//! its README.md). A case is a cluster (Namespaces, Pods, ServiceAccounts, Calico `projectcalico.org/v3`
//! NetworkPolicy, GlobalNetworkPolicy, Tier, NetworkSet, GlobalNetworkSet, Kubernetes NetworkPolicy) and probes,
//! each with the verdict Calico gives and where upstream says so (projectcalico/calico at `CALICO_COMMIT`, or a
//! docs.tigera.io page).
//!
//! `every_calico_probe` loads each case with the core loader (`netpol_core::load::load_str`, no error diagnostic
//! and no skipped kind allowed), compiles it (`Engine::new`) and checks every probe with `Engine::allowed`, and
//! that `Engine::explain` gives the same verdict. It is ignored until the Calico loader and engine land (issue 13);
//! the structure of the data is checked now, by the tests that are not ignored.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use netpol_core::compile::Engine;
use netpol_core::load::{load_str, Severity};
use netpol_core::portset::Protocol;
use netpol_core::verdict::Verdict;
use serde::Deserialize;

/// What the data holds (README.md of the data directory): at least this many cases and probes.
const CASES: usize = 49;
pub(crate) const PROBES: usize = 302;
/// The projectcalico/calico commit every `path:line` reference points into (README.md has the full hash).
const CALICO_COMMIT: &str = "87c15906f2";

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/calico")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Case {
    pub(crate) name: String,
    /// Where upstream states the rules the case checks: `calico@<commit> path:line; ...; https://...#section`.
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
    pub(crate) port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub(crate) protocol: String,
    /// `allow` or `deny`.
    pub(crate) expect: String,
    /// Where upstream states this verdict: `path:line` (at `CALICO_COMMIT`) or a URL, `; `-separated.
    source: String,
    /// Why, in a few words (printed on failure).
    #[serde(default)]
    note: Option<String>,
}

impl Probe {
    pub(crate) fn describe(&self) -> String {
        format!("{} -> {} {}/{}", self.from, self.to, self.port, self.protocol)
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

#[test]
fn every_calico_probe() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (file, case) in cases() {
        let loaded = load_str(&format!("tests/conformance/calico/{file}.yaml (manifests)"), &case.manifests);
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
            let proto = Protocol::parse_exact(&p.protocol).unwrap();
            let want = p.expect == "allow";
            let got = engine.allowed(&src, &dst, proto, p.port);
            let explanation = engine.explain(&src, &dst, proto, p.port);
            let reference = netpol_core::reference::allowed(engine.cluster(), &src, &dst, proto, p.port);
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
    assert!(
        failures.is_empty(),
        "{} Calico conformance failures ({checked} probes run):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= PROBES, "probes checked: {checked}, fewer than the {PROBES} the data holds");
}

#[test]
fn calico_suite_size_and_sources() {
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

/// A source is `; `-separated references, each a URL (`https://...`) or `path:line[-line]` in projectcalico/calico,
/// optionally followed by words. A case's source names the commit first (`calico@<commit> `) when it cites a path.
fn check_source(source: &str, case_level: bool) -> Result<(), String> {
    let prefix = format!("calico@{CALICO_COMMIT} ");
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
            && [".go", ".md", ".yaml"].iter().any(|ext| path.ends_with(ext));
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
    ("v1", "Pod", true),
    ("v1", "ServiceAccount", true),
    ("networking.k8s.io/v1", "NetworkPolicy", true),
    ("projectcalico.org/v3", "NetworkPolicy", true),
    ("projectcalico.org/v3", "GlobalNetworkPolicy", false),
    ("projectcalico.org/v3", "Tier", false),
    ("projectcalico.org/v3", "NetworkSet", true),
    ("projectcalico.org/v3", "GlobalNetworkSet", false),
    ("projectcalico.org/v3", "HostEndpoint", false),
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

/// Structure only, no loader: every file parses into a case named after it, every manifest document is an object
/// of a known kind with a name (and a namespace when namespaced, declared as a Namespace of the case), pod addresses
/// are in the allowed ranges, Calico policies name a declared tier, and every probe names a pod of the case or an
/// allowed address, a protocol netpol models, a port and a verdict.
#[test]
fn calico_cases_are_well_formed() {
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
        let mut pods = BTreeSet::new();
        let mut tiers: BTreeSet<String> = ["default".to_string()].into();
        let mut tier_refs = Vec::new();
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
            match kind {
                "Namespace" => {
                    namespaces.insert(name.to_string());
                }
                "Tier" => {
                    tiers.insert(name.to_string());
                }
                "Pod" => {
                    let mut ips = Vec::new();
                    ips.extend(str_at(&v, &["status", "podIP"]));
                    if let Some(list) = v.get("status").and_then(|s| s.get("podIPs")).and_then(|l| l.as_sequence()) {
                        ips.extend(list.iter().filter_map(|e| str_at(e, &["ip"])));
                    }
                    if ips.is_empty() {
                        err(format!("Pod {name}: no status.podIP"));
                    }
                    for ip in ips {
                        if !ip.parse::<IpAddr>().is_ok_and(allowed_address) {
                            err(format!("Pod {name}: address {ip} outside 10.0.0.0/8 and fd00::/8"));
                        }
                    }
                    pods.insert(format!("{}/{name}", ns.unwrap_or("")));
                }
                "NetworkPolicy" | "GlobalNetworkPolicy" if api == "projectcalico.org/v3" => {
                    if let Some(t) = str_at(&v, &["spec", "tier"]) {
                        tier_refs.push((name.to_string(), t.to_string()));
                    }
                }
                _ => {}
            }
            used_namespaces.extend(ns.map(str::to_string));
        }
        for ns in &used_namespaces {
            if !namespaces.contains(ns) {
                err(format!("namespace `{ns}` is used but not declared"));
            }
        }
        for (policy, tier) in &tier_refs {
            if !tiers.contains(tier) {
                err(format!("policy {policy}: tier `{tier}` is not declared"));
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
            if p.port == 0 {
                err(format!("{}: port 0", p.describe()));
            }
            if Protocol::parse_exact(&p.protocol).is_none() {
                err(format!("{}: protocol must be TCP, UDP or SCTP", p.describe()));
            }
            if p.expect != "allow" && p.expect != "deny" {
                err(format!("{}: expect must be allow or deny", p.describe()));
            }
            if p.note.as_deref().is_some_and(|n| n.trim().is_empty()) {
                err(format!("{}: empty note", p.describe()));
            }
        }
    }
    assert!(bad.is_empty(), "malformed Calico conformance data:\n{}", bad.join("\n"));
}
