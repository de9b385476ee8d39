//! `netpol test`: policy assertion tests for CI.
//!
//! An assertions file (YAML or JSON) lists flows with the verdict they must have:
//!
//! ```yaml
//! apiVersion: netpol/v1alpha1   # optional
//! kind: Assertions               # optional
//! assertions:
//!   - name: web reaches the api on http
//!     from: frontend/web          # "ns/pod", "pod" (namespace default), an IP address, or a selector object
//!     to: backend/api
//!     port: 8080                  # or "8080/TCP"
//!     protocol: TCP               # TCP (default), UDP, SCTP
//!     expect: allow               # allow | deny
//! ```
//!
//! A selector endpoint (`{namespace, namespaceSelector, podSelector}`) expands to every matching pod; an assertion
//! passes iff every expanded (source, destination) pair of distinct pods has the expected verdict. The file is
//! validated as a whole before anything is checked (exit 2 on any error, naming file and field); what depends on
//! the cluster (an unknown pod, a selector that matches no pod) fails that assertion only (exit 1).
//!
//! Pods of one engine identity get the same verdict, so pairs are checked per (source identity, destination
//! identity), not per pod pair: an assertion over every pod of a 10k-pod cluster costs identities², not pods².

use std::fmt;
use std::io::{Read, Write};
use std::net::IpAddr;

use netpol_core::compile::{parse_address, Endpoint, Engine, FlowInfo, IdentityId};
use netpol_core::l7::Request;
use netpol_core::load::parse_selector;
use netpol_core::model::PodId;
use netpol_core::portset::Protocol;
use netpol_core::selector::{check_dns_label, check_dns_subdomain, Selector};
use netpol_core::verdict::{Explanation, Verdict};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::{Map, Value};

/// `apiVersion` of an assertions file (optional in the file).
pub const API_VERSION: &str = "netpol/v1alpha1";
/// `kind` of an assertions file (optional in the file).
pub const KIND: &str = "Assertions";
/// Failing pairs reported per assertion; the rest are counted (`and N more`).
pub const MAX_FAILURES_SHOWN: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AssertFormat {
    Text,
    Junit,
    Json,
}

/// One side of an assertion, as written in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointSpec {
    /// `ns/pod`, or `pod` in namespace `default`.
    Pod { namespace: String, name: String },
    /// An address: a pod's IP is that pod, any other address is outside the cluster.
    Ip(IpAddr),
    /// Every pod matching all the given conditions (none given: every pod).
    Select { namespace: Option<String>, namespace_selector: Option<Selector>, pod_selector: Option<Selector> },
}

impl fmt::Display for EndpointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointSpec::Pod { namespace, name } => write!(f, "{namespace}/{name}"),
            EndpointSpec::Ip(ip) => write!(f, "{ip}"),
            EndpointSpec::Select { namespace, namespace_selector, pod_selector } => {
                let mut parts = Vec::new();
                if let Some(n) = namespace {
                    parts.push(format!("namespace: {n}"));
                }
                if let Some(s) = namespace_selector {
                    parts.push(format!("namespaceSelector: {s}"));
                }
                if let Some(s) = pod_selector {
                    parts.push(format!("podSelector: {s}"));
                }
                if parts.is_empty() {
                    f.write_str("{every pod}")
                } else {
                    write!(f, "{{{}}}", parts.join(", "))
                }
            }
        }
    }
}

/// A validated assertion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assertion {
    pub name: String,
    pub from: EndpointSpec,
    pub to: EndpointSpec,
    pub port: u16,
    pub protocol: Protocol,
    /// One request on the connection (`http`, `dns`): Cilium's L7 rules judge it.
    pub request: Option<Request>,
    pub expect: Verdict,
}

/// One problem of an assertions file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    /// Field path (`assertions[2].from.podSelector.matchExpressions[0].operator`); empty for the file as a whole.
    pub field: String,
    /// 1-based line of the field (or of its closest enclosing field), when found.
    pub line: Option<usize>,
    pub message: String,
}

/// Why an assertions file was rejected: every problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidAssertions {
    pub file: String,
    pub errors: Vec<FileError>,
}

impl fmt::Display for InvalidAssertions {
    /// One line per problem: `FILE[:LINE]: FIELD: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&self.file)?;
            if let Some(l) = e.line {
                write!(f, ":{l}")?;
            }
            if !e.field.is_empty() {
                write!(f, ": {}", e.field)?;
            }
            write!(f, ": {}", e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidAssertions {}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestResult {
    Pass,
    Fail,
}

/// A pair whose verdict is not the expected one.
#[derive(Clone, Debug, Serialize)]
pub struct PairFailure {
    pub src: String,
    pub dst: String,
    pub port: u16,
    pub protocol: Protocol,
    pub expected: Verdict,
    pub actual: Verdict,
    /// The explanation of the actual verdict.
    pub explain: Explanation,
}

/// The result of one assertion.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub name: String,
    pub result: TestResult,
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: Protocol,
    /// The request the assertion carries (`HTTP GET /x`, `DNS query name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    pub expect: Verdict,
    /// Expanded (source, destination) pairs checked (pairs of a pod with itself are not counted).
    pub pairs: u64,
    /// Pairs whose verdict is not `expect`.
    pub failing_pairs: u64,
    /// Why the assertion could not be checked (unknown pod, selector matching no pod, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// The first [`MAX_FAILURES_SHOWN`] failing pairs.
    pub failures: Vec<PairFailure>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.result == TestResult::Pass
    }
}

/// Loads the assertions file, expands and checks every assertion, writes the report; returns the exit code:
/// 0 all pass, 1 any failure, 2 the assertions file itself is invalid (with a clear error naming file and field,
/// on stderr). `-` reads the assertions from stdin.
pub fn run(engine: &Engine, assertions_path: &str, format: AssertFormat, out: &mut dyn Write) -> anyhow::Result<u8> {
    let stderr = std::io::stderr();
    run_with_errors(engine, assertions_path, format, out, &mut stderr.lock())
}

/// [`run`], with file errors written to `err` instead of stderr.
pub fn run_with_errors(
    engine: &Engine,
    assertions_path: &str,
    format: AssertFormat,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u8> {
    let assertions = match load(assertions_path) {
        Ok(a) => a,
        Err(e) => {
            for line in e.to_string().lines() {
                writeln!(err, "error: {line}")?;
            }
            return Ok(2);
        }
    };
    let outcomes = check(engine, &assertions);
    write_report(engine, &outcomes, assertions_path, format, out)?;
    out.flush()?;
    Ok(if outcomes.iter().all(Outcome::passed) { 0 } else { 1 })
}

/// Reads and validates an assertions file (`-`: stdin).
pub fn load(path: &str) -> Result<Vec<Assertion>, InvalidAssertions> {
    let mut text = String::new();
    let read = if path == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    if let Err(e) = read {
        return Err(InvalidAssertions {
            file: path.to_string(),
            errors: vec![FileError { field: String::new(), line: None, message: format!("cannot read: {e}") }],
        });
    }
    parse(path, &text)
}

/// Validates the text of an assertions file; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Vec<Assertion>, InvalidAssertions> {
    let invalid = |errors| InvalidAssertions { file: file.to_string(), errors };
    let doc = parse_document(file, text)
        .map_err(|message| invalid(vec![FileError { field: String::new(), line: None, message }]))?;
    let mut errs = Errs::default();
    let assertions = parse_root(&doc, &mut errs);
    if errs.0.is_empty() {
        return Ok(assertions);
    }
    let errors = errs
        .0
        .into_iter()
        .map(|(field, message)| {
            let line =
                if field.is_empty() { None } else { netpol_input::locate::find_line(text, 0, None, Some(&field)) };
            FileError { field, line, message }
        })
        .collect();
    Err(invalid(errors))
}

fn parse_document(file: &str, text: &str) -> Result<Value, String> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let json = file.ends_with(".json");
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match serde_json::from_str::<Value>(trimmed) {
            Ok(v) => return Ok(v),
            // A YAML flow mapping also starts with `{`.
            Err(e) if json => return Err(format!("invalid JSON: {e}")),
            Err(_) => {}
        }
    }
    serde_yaml_ng::from_str::<Value>(text).map_err(|e| format!("invalid YAML: {e}"))
}

#[derive(Default)]
struct Errs(Vec<(String, String)>);

impl Errs {
    /// Adds a problem; the same message on the same field is reported once.
    fn add(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        let e = (field.into(), msg.into());
        if !self.0.contains(&e) {
            self.0.push(e);
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn quoted(keys: &[&str]) -> String {
    keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

fn unknown_fields(m: &Map<String, Value>, allowed: &[&str], path: &str, errs: &mut Errs) {
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            let field = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            let hint = netpol_core::suggest::closest(k, allowed.iter().copied())
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            errs.add(field, format!("unknown field ({hint}expected one of {})", quoted(allowed)));
        }
    }
}

fn parse_root(doc: &Value, errs: &mut Errs) -> Vec<Assertion> {
    let Value::Object(root) = doc else {
        errs.add("", format!("expected a mapping with an `assertions` list, found {}", type_name(doc)));
        return Vec::new();
    };
    unknown_fields(root, &["apiVersion", "kind", "assertions"], "", errs);
    if let Some(v) = root.get("apiVersion") {
        if v.as_str() != Some(API_VERSION) {
            errs.add("apiVersion", format!("unsupported apiVersion {v}: expected `{API_VERSION}`"));
        }
    }
    if let Some(v) = root.get("kind") {
        if v.as_str() != Some(KIND) {
            errs.add("kind", format!("unsupported kind {v}: expected `{KIND}`"));
        }
    }
    let items = match root.get("assertions") {
        None => {
            errs.add("assertions", "missing field: the list of assertions");
            return Vec::new();
        }
        Some(Value::Array(items)) => items,
        Some(v) => {
            errs.add("assertions", format!("must be a list, found {}", type_name(v)));
            return Vec::new();
        }
    };
    if items.is_empty() {
        errs.add("assertions", "the list is empty: nothing to test");
    }
    let mut names: FxHashMap<String, usize> = FxHashMap::default();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("assertions[{i}]");
        let (name, a) = parse_assertion(item, &path, errs);
        if let Some(name) = name {
            if let Some(first) = names.get(&name) {
                errs.add(
                    format!("{path}.name"),
                    format!("duplicate name `{name}`: already used by assertions[{first}]"),
                );
            } else {
                names.insert(name, i);
            }
        }
        out.extend(a);
    }
    out
}

const ASSERTION_FIELDS: [&str; 8] = ["name", "from", "to", "port", "protocol", "http", "dns", "expect"];

/// An assertion's `http`: one request on the connection.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSpec {
    method: Option<String>,
    path: Option<String>,
    host: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

/// An assertion's `dns`: one DNS query on the connection.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsSpec {
    query: String,
}

/// The request an assertion carries (`http` or `dns`), if valid.
fn parse_request(m: &Map<String, Value>, path: &str, errs: &mut Errs) -> Result<Option<Request>, ()> {
    match (m.get("http"), m.get("dns")) {
        (Some(_), Some(_)) => {
            errs.add(format!("{path}.dns"), "give `http` or `dns`, not both (one request per assertion)");
            Err(())
        }
        (Some(v), None) => {
            let spec: HttpSpec = serde_json::from_value(v.clone()).map_err(|e| {
                errs.add(format!("{path}.http"), format!("expected `method`, `path`, `host`, `headers`: {e}"));
            })?;
            netpol_input::query::http_request(
                spec.method.as_deref(),
                spec.path.as_deref(),
                spec.host.as_deref(),
                &spec.headers,
            )
            .map(|r| Some(Request::Http(r)))
            .map_err(|e| errs.add(format!("{path}.http"), e))
        }
        (None, Some(v)) => {
            let spec: DnsSpec = serde_json::from_value(v.clone())
                .map_err(|e| errs.add(format!("{path}.dns"), format!("expected `query`: {e}")))?;
            netpol_input::query::parse_dns_query(&spec.query)
                .map(|n| Some(Request::Dns(n)))
                .map_err(|e| errs.add(format!("{path}.dns"), e))
        }
        (None, None) => Ok(None),
    }
}

/// The assertion's name (when valid, for the duplicate check) and the assertion (when entirely valid).
fn parse_assertion(v: &Value, path: &str, all: &mut Errs) -> (Option<String>, Option<Assertion>) {
    let Value::Object(m) = v else {
        all.add(path, format!("an assertion must be a mapping, found {}", type_name(v)));
        return (None, None);
    };
    let mut errs = Errs::default();
    unknown_fields(m, &ASSERTION_FIELDS, path, &mut errs);
    let name = match m.get("name") {
        None => {
            errs.add(format!("{path}.name"), "missing field: every assertion needs a unique name");
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            errs.add(format!("{path}.name"), "must not be empty");
            None
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            errs.add(format!("{path}.name"), "must be a single line of text (no control characters)");
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            errs.add(format!("{path}.name"), format!("must be a string, found {}", type_name(v)));
            None
        }
    };
    let from = parse_endpoint(m.get("from"), &format!("{path}.from"), &mut errs);
    let to = parse_endpoint(m.get("to"), &format!("{path}.to"), &mut errs);
    let port = parse_port(m.get("port"), &format!("{path}.port"), &mut errs);
    let protocol = match m.get("protocol") {
        None => None,
        Some(Value::String(s)) => match Protocol::parse_loose(s) {
            Some(p) => Some(p),
            None => {
                errs.add(format!("{path}.protocol"), format!("unknown protocol `{s}`: expected TCP, UDP or SCTP"));
                None
            }
        },
        Some(v) => {
            errs.add(format!("{path}.protocol"), format!("must be TCP, UDP or SCTP, found {}", type_name(v)));
            None
        }
    };
    let protocol = match (port.and_then(|(_, p)| p), protocol) {
        (Some(a), Some(b)) if a != b => {
            errs.add(format!("{path}.protocol"), format!("{b} conflicts with the protocol given in `port` ({a})"));
            None
        }
        (a, b) => Some(a.or(b).unwrap_or(Protocol::Tcp)),
    };
    let request = parse_request(m, path, &mut errs);
    if let (Ok(Some(Request::Http(_))), Some(p)) = (&request, protocol) {
        if p != Protocol::Tcp {
            errs.add(format!("{path}.http"), format!("an HTTP request needs protocol TCP, not {p}"));
        }
    }
    let expect = match m.get("expect") {
        None => {
            errs.add(format!("{path}.expect"), "missing field: `allow` or `deny`");
            None
        }
        Some(Value::String(s)) if s == "allow" => Some(Verdict::Allow),
        Some(Value::String(s)) if s == "deny" => Some(Verdict::Deny),
        Some(v) => {
            errs.add(format!("{path}.expect"), format!("must be `allow` or `deny`, found {v}"));
            None
        }
    };
    let context = name.as_ref().map(|n| format!(" (in assertion `{n}`)")).unwrap_or_default();
    let ok = errs.0.is_empty();
    all.0.extend(errs.0.into_iter().map(|(f, msg)| (f, format!("{msg}{context}"))));
    let assertion = match (ok, name.clone(), from, to, port, protocol, expect, request) {
        (true, Some(name), Some(from), Some(to), Some((port, _)), Some(protocol), Some(expect), Ok(request)) => {
            Some(Assertion { name, from, to, port, protocol, request, expect })
        }
        _ => None,
    };
    (name, assertion)
}

fn parse_port(v: Option<&Value>, path: &str, errs: &mut Errs) -> Option<(u16, Option<Protocol>)> {
    let bad = |what: &dyn fmt::Display| format!("invalid port {what}: expected an integer 1-65535 or `PORT/PROTOCOL`");
    let num = |s: &str| s.trim().parse::<u16>().ok().filter(|&n| n >= 1);
    let r = match v {
        None => {
            errs.add(path, "missing field: an integer 1-65535 (or `PORT/PROTOCOL`, e.g. `53/UDP`)");
            return None;
        }
        Some(Value::Number(n)) => n.as_u64().filter(|n| (1..=65535).contains(n)).map(|n| (n as u16, None)),
        Some(Value::String(s)) => match s.split_once('/') {
            None => num(s).map(|n| (n, None)),
            Some((p, proto)) => match Protocol::parse_loose(proto.trim()) {
                None => {
                    errs.add(path, format!("unknown protocol `{proto}` in `{s}`: expected TCP, UDP or SCTP"));
                    return None;
                }
                Some(proto) => num(p).map(|n| (n, Some(proto))),
            },
        },
        Some(_) => None,
    };
    if r.is_none() {
        if let Some(v) = v {
            let msg = match v {
                Value::String(s) if s.chars().any(|c| c.is_ascii_alphabetic()) && !s.contains('/') => {
                    format!("{} (named ports are not supported: give the number)", bad(v))
                }
                _ => bad(v),
            };
            errs.add(path, msg);
        }
    }
    r
}

const ENDPOINT_FIELDS: [&str; 4] = ["namespace", "namespaceSelector", "podSelector", "ip"];

fn parse_endpoint(v: Option<&Value>, path: &str, errs: &mut Errs) -> Option<EndpointSpec> {
    let what = "`namespace/pod`, `pod`, an IP address, or a mapping with `namespace`, `namespaceSelector`, \
                `podSelector` or `ip`";
    match v {
        None => {
            errs.add(path, format!("missing field: {what}"));
            None
        }
        Some(Value::String(s)) => parse_endpoint_str(s, path, errs),
        Some(Value::Object(m)) => {
            let n = errs.0.len();
            unknown_fields(m, &ENDPOINT_FIELDS, path, errs);
            if let Some(ip) = m.get("ip") {
                if m.len() > 1 {
                    errs.add(path, "`ip` cannot be combined with `namespace`, `namespaceSelector` or `podSelector`");
                }
                return match ip.as_str().map(|s| parse_address(s.trim())) {
                    Some(Ok(Some(ip))) if errs.0.len() == n => Some(EndpointSpec::Ip(ip)),
                    Some(Ok(Some(_))) => None,
                    Some(Err(e)) => {
                        errs.add(format!("{path}.ip"), e);
                        None
                    }
                    _ => {
                        errs.add(format!("{path}.ip"), format!("not an IP address: {ip}"));
                        None
                    }
                };
            }
            let namespace = match m.get("namespace") {
                None => None,
                Some(Value::String(s)) => {
                    if let Err(e) = check_dns_label(s) {
                        errs.add(format!("{path}.namespace"), format!("invalid namespace name `{s}`: {e}"));
                    }
                    Some(s.clone())
                }
                Some(v) => {
                    errs.add(format!("{path}.namespace"), format!("must be a namespace name, found {}", type_name(v)));
                    None
                }
            };
            let namespace_selector =
                m.get("namespaceSelector").map(|v| parse_sel(v, &format!("{path}.namespaceSelector"), errs));
            let pod_selector = m.get("podSelector").map(|v| parse_sel(v, &format!("{path}.podSelector"), errs));
            if errs.0.len() > n {
                return None;
            }
            Some(EndpointSpec::Select {
                namespace,
                namespace_selector: namespace_selector.flatten(),
                pod_selector: pod_selector.flatten(),
            })
        }
        Some(v) => {
            errs.add(path, format!("expected {what}; found {}", type_name(v)));
            None
        }
    }
}

fn parse_endpoint_str(s: &str, path: &str, errs: &mut Errs) -> Option<EndpointSpec> {
    // Canonical (`::ffff:10.0.0.1` is 10.0.0.1); a zoned or malformed address is an address error.
    match parse_address(s.trim()) {
        Ok(Some(ip)) => return Some(EndpointSpec::Ip(ip)),
        Ok(None) => {}
        Err(e) => {
            errs.add(path, e);
            return None;
        }
    }
    let (namespace, name) = match s.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => ("default", s),
    };
    match (check_dns_label(namespace), check_dns_subdomain(name)) {
        (Ok(()), Ok(())) => Some(EndpointSpec::Pod { namespace: namespace.to_string(), name: name.to_string() }),
        (Err(e), _) | (_, Err(e)) => {
            errs.add(path, format!("`{s}` is not `namespace/pod`, `pod` or an IP address: {e}"));
            None
        }
    }
}

/// Validates a label selector; `k8s-openapi` ignores unknown fields, which would turn a typo (`matchLabel`)
/// into "every pod", so they are rejected first.
fn parse_sel(v: &Value, path: &str, errs: &mut Errs) -> Option<Selector> {
    let Value::Object(m) = v else {
        errs.add(path, format!("must be a label selector mapping (`{{}}` selects everything), found {}", type_name(v)));
        return None;
    };
    let n = errs.0.len();
    unknown_fields(m, &["matchLabels", "matchExpressions"], path, errs);
    // Fields and expressions already reported here (a typo in a field name, a missing field, not a mapping):
    // what the selector's own validation would say of them is the same mistake seen again (a misspelt
    // `operater` leaves `operator` empty), so it is not repeated.
    let mut reported: Vec<String> = m
        .keys()
        .filter(|k| !matches!(k.as_str(), "matchLabels" | "matchExpressions"))
        .map(|k| format!("{path}.{k}"))
        .collect();
    if let Some(Value::Array(exprs)) = m.get("matchExpressions") {
        for (i, e) in exprs.iter().enumerate() {
            let at = format!("{path}.matchExpressions[{i}]");
            let before = errs.0.len();
            match e {
                Value::Object(em) => {
                    unknown_fields(em, &["key", "operator", "values"], &at, errs);
                    if errs.0.len() == before {
                        for k in ["key", "operator"] {
                            if !em.contains_key(k) {
                                errs.add(format!("{at}.{k}"), "missing field");
                            }
                        }
                    }
                }
                _ => errs
                    .add(&at, format!("must be a mapping with `key`, `operator` and `values`, found {}", type_name(e))),
            }
            if errs.0.len() > before {
                reported.push(at);
            }
        }
    }
    match parse_selector(v, path) {
        Ok(s) if errs.0.len() == n => Some(s),
        Ok(_) => None,
        Err(es) => {
            for (f, msg) in es {
                let seen =
                    reported.iter().any(|r| f == *r || f.strip_prefix(r.as_str()).is_some_and(|t| t.starts_with('.')));
                if !seen {
                    // serde names the Rust type of an expression.
                    errs.add(
                        f,
                        msg.replace(
                            "expected LabelSelectorRequirement",
                            "expected a mapping with `key`, `operator` and `values`",
                        ),
                    );
                }
            }
            None
        }
    }
}

// ---- checking ----

/// Endpoints that get the same verdict against any other endpoint: pods of one identity (flows using their
/// primary IP), or a single endpoint.
struct Group {
    members: Vec<Endpoint>,
    /// Pods of `members`, sorted (none for an address outside the cluster).
    pods: Vec<PodId>,
}

fn pod_of(ep: &Endpoint) -> Option<PodId> {
    match ep {
        Endpoint::Pod { pod, .. } => Some(*pod),
        Endpoint::External(_) => None,
    }
}

fn group(engine: &Engine, eps: Vec<Endpoint>) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    let mut by_ident: FxHashMap<IdentityId, usize> = FxHashMap::default();
    for ep in eps {
        let gi = match ep {
            Endpoint::Pod { pod, ip: None } => {
                let id = engine.pod_identity(pod);
                *by_ident.entry(id).or_insert_with(|| {
                    out.push(Group { members: Vec::new(), pods: Vec::new() });
                    out.len() - 1
                })
            }
            _ => {
                out.push(Group { members: Vec::new(), pods: Vec::new() });
                out.len() - 1
            }
        };
        let g = &mut out[gi];
        g.pods.extend(pod_of(&ep));
        g.members.push(ep);
    }
    for g in &mut out {
        g.pods.sort_unstable();
    }
    out
}

fn intersection_len(a: &[PodId], b: &[PodId]) -> u64 {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

fn same_pod(a: &Endpoint, b: &Endpoint) -> bool {
    matches!((pod_of(a), pod_of(b)), (Some(x), Some(y)) if x == y)
}

fn expand(engine: &Engine, spec: &EndpointSpec, order: &[PodId]) -> Result<Vec<Endpoint>, String> {
    match spec {
        EndpointSpec::Pod { namespace, name } => match engine.cluster().find_pod(namespace, name) {
            Some(pod) => Ok(vec![Endpoint::Pod { pod, ip: None }]),
            None => Err(format!("unknown pod `{namespace}/{name}`")),
        },
        EndpointSpec::Ip(ip) => Ok(vec![engine.endpoint_for_ip(*ip)]),
        EndpointSpec::Select { namespace, namespace_selector, pod_selector } => {
            let ns_ok: Vec<bool> = engine
                .cluster()
                .namespaces
                .iter()
                .map(|n| {
                    namespace.as_ref().is_none_or(|x| *x == n.name)
                        && namespace_selector.as_ref().is_none_or(|s| s.matches(&n.labels))
                })
                .collect();
            let eps: Vec<Endpoint> = order
                .iter()
                .filter(|&&p| {
                    let pod = engine.cluster().pod(p);
                    ns_ok.get(pod.ns.index()).copied().unwrap_or(false)
                        && pod_selector.as_ref().is_none_or(|s| s.matches(&pod.labels))
                })
                .map(|&pod| Endpoint::Pod { pod, ip: None })
                .collect();
            if eps.is_empty() {
                Err(format!("{spec} matches no pod"))
            } else {
                Ok(eps)
            }
        }
    }
}

fn endpoint_label(engine: &Engine, ep: &Endpoint) -> String {
    match ep {
        Endpoint::Pod { ip: Some(ip), .. } => format!("{} ({ip})", engine.endpoint_name(ep)),
        _ => engine.endpoint_name(ep),
    }
}

/// Checks every assertion against the engine.
pub fn check(engine: &Engine, assertions: &[Assertion]) -> Vec<Outcome> {
    let order = engine.sorted_pods();
    assertions.iter().map(|a| check_one(engine, a, &order)).collect()
}

fn check_one(engine: &Engine, a: &Assertion, order: &[PodId]) -> Outcome {
    let mut o = Outcome {
        name: a.name.clone(),
        result: TestResult::Fail,
        from: a.from.to_string(),
        to: a.to.to_string(),
        port: a.port,
        protocol: a.protocol,
        request: a.request.as_ref().map(|r| r.to_string()),
        expect: a.expect,
        pairs: 0,
        failing_pairs: 0,
        errors: Vec::new(),
        failures: Vec::new(),
    };
    let from = expand(engine, &a.from, order).map_err(|e| o.errors.push(format!("from: {e}")));
    let to = expand(engine, &a.to, order).map_err(|e| o.errors.push(format!("to: {e}")));
    let (Ok(from), Ok(to)) = (from, to) else {
        return o;
    };
    let (srcs, dsts) = (group(engine, from), group(engine, to));
    for sg in &srcs {
        for dg in &dsts {
            let n = (sg.members.len() * dg.members.len()) as u64 - intersection_len(&sg.pods, &dg.pods);
            if n == 0 {
                continue;
            }
            let pairs = || {
                sg.members.iter().flat_map(|s| dg.members.iter().map(move |d| (s, d))).filter(|(s, d)| !same_pod(s, d))
            };
            let Some((s, d)) = pairs().next() else { continue };
            o.pairs += n;
            let info = FlowInfo { dst_name: None, request: a.request.as_ref() };
            let actual = Verdict::from_bool(engine.allowed_flow(s, d, info, a.protocol, a.port));
            if actual == a.expect {
                continue;
            }
            o.failing_pairs += n;
            for (s, d) in pairs() {
                if o.failures.len() >= MAX_FAILURES_SHOWN {
                    break;
                }
                o.failures.push(PairFailure {
                    src: endpoint_label(engine, s),
                    dst: endpoint_label(engine, d),
                    port: a.port,
                    protocol: a.protocol,
                    expected: a.expect,
                    actual,
                    explain: engine.explain_flow(s, d, info, a.protocol, a.port),
                });
            }
        }
    }
    if o.pairs == 0 {
        o.errors.push(format!(
            "nothing to check: every pair of {} and {} is a pod with itself, which policies never govern",
            o.from, o.to
        ));
    } else if o.failing_pairs == 0 {
        o.result = TestResult::Pass;
    }
    o
}

// ---- reports ----

fn other(v: Verdict) -> Verdict {
    match v {
        Verdict::Allow => Verdict::Deny,
        Verdict::Deny => Verdict::Allow,
    }
}

/// One-line reason of a failure.
fn summary(o: &Outcome) -> String {
    if !o.errors.is_empty() {
        return o.errors.join("; ");
    }
    format!(
        "expected {}, got {} for {} of {} pair(s)",
        o.expect.as_str(),
        other(o.expect).as_str(),
        o.failing_pairs,
        o.pairs
    )
}

/// The details of a failing assertion, one line each, without indentation of their own.
fn details(o: &Outcome) -> Vec<String> {
    if !o.errors.is_empty() {
        return o.errors.clone();
    }
    let request = o.request.as_ref().map(|r| format!(", {r}")).unwrap_or_default();
    let mut v = vec![format!("{} -> {} {}/{}{request}: {}", o.from, o.to, o.port, o.protocol, summary(o))];
    for f in &o.failures {
        v.push(format!("- {} -> {}: {}", f.src, f.dst, f.actual.as_str()));
        // The first line of the rendering repeats the flow and verdict just printed.
        v.extend(f.explain.render().lines().skip(1).map(|l| format!("  {l}")));
    }
    let more = o.failing_pairs.saturating_sub(o.failures.len() as u64);
    if more > 0 {
        v.push(format!("and {more} more"));
    }
    v
}

/// Writes the report of checked assertions; `file` names the assertions file (JUnit `file` attribute). The
/// engine's CNI heads it (text), is its `cni` member (JSON) or a property of the test suite (JUnit: `cni`, and
/// `cni.auto` with auto-detection's reason).
pub fn write_report(
    engine: &Engine,
    outcomes: &[Outcome],
    file: &str,
    format: AssertFormat,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let passed = outcomes.len() - failed;
    match format {
        AssertFormat::Text => {
            writeln!(out, "{}", netpol_input::cni_header(engine))?;
            for o in outcomes {
                if o.passed() {
                    writeln!(out, "PASS {}", o.name)?;
                } else {
                    writeln!(out, "FAIL {}", o.name)?;
                    for l in details(o) {
                        writeln!(out, "  {l}")?;
                    }
                }
            }
            writeln!(out, "{passed} passed, {failed} failed")
        }
        AssertFormat::Json => {
            #[derive(Serialize)]
            struct Report<'a> {
                cni: serde_json::Value,
                passed: usize,
                failed: usize,
                assertions: &'a [Outcome],
            }
            let cni = netpol_input::cni_json(engine);
            serde_json::to_writer_pretty(&mut *out, &Report { cni, passed, failed, assertions: outcomes })?;
            writeln!(out)
        }
        AssertFormat::Junit => {
            writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
            writeln!(
                out,
                r#"<testsuite name="netpol" tests="{}" failures="{failed}" errors="0" skipped="0">"#,
                outcomes.len()
            )?;
            writeln!(out, "  <properties>")?;
            writeln!(out, r#"    <property name="cni" value="{}"/>"#, engine.cni())?;
            if let netpol_core::cni::CniSource::Auto(why) = engine.cni_source() {
                writeln!(out, r#"    <property name="cni.auto" value="{}"/>"#, xml_escape(&why, true))?;
            }
            writeln!(out, "  </properties>")?;
            let file_attr = if file == "-" { String::new() } else { format!(r#" file="{}""#, xml_escape(file, true)) };
            for o in outcomes {
                write!(
                    out,
                    r#"  <testcase classname="netpol.assertions" name="{}"{file_attr}"#,
                    xml_escape(&o.name, true)
                )?;
                if o.passed() {
                    writeln!(out, "/>")?;
                    continue;
                }
                let kind = if o.errors.is_empty() { "verdict-mismatch" } else { "unresolved-endpoint" };
                writeln!(out, ">")?;
                writeln!(
                    out,
                    r#"    <failure message="{}" type="{kind}">{}</failure>"#,
                    xml_escape(&summary(o), true),
                    xml_escape(&details(o).join("\n"), false)
                )?;
                writeln!(out, "  </testcase>")?;
            }
            writeln!(out, "</testsuite>")
        }
    }
}

/// Escapes text for XML 1.0 content (`attr`: for a double- or single-quoted attribute value, where newlines and
/// tabs are kept as character references). Characters XML 1.0 cannot carry at all become U+FFFD.
pub fn xml_escape(s: &str, attr: bool) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' if attr => o.push_str("&quot;"),
            '\'' if attr => o.push_str("&apos;"),
            '\n' if attr => o.push_str("&#10;"),
            '\r' => o.push_str("&#13;"),
            '\t' if attr => o.push_str("&#9;"),
            '\t' | '\n' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn xml_escape_covers_markup_and_invalid_characters() {
        assert_eq!(xml_escape(r#"a<b & "c" 'd'>"#, true), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
        assert_eq!(xml_escape("l1\nl2\t\u{1}", false), "l1\nl2\t\u{fffd}");
        assert_eq!(xml_escape("l1\nl2", true), "l1&#10;l2");
    }

    #[test]
    fn endpoint_strings() {
        let mut errs = Errs::default();
        assert_eq!(
            parse_endpoint_str("web", "p", &mut errs),
            Some(EndpointSpec::Pod { namespace: "default".into(), name: "web".into() })
        );
        assert_eq!(parse_endpoint_str("fd00::1", "p", &mut errs), Some(EndpointSpec::Ip("fd00::1".parse().unwrap())));
        assert!(errs.0.is_empty());
        assert_eq!(parse_endpoint_str("10.0.0.0/8", "p", &mut errs), None);
        assert_eq!(errs.0.len(), 1);
        // Mapped addresses are their IPv4 address; zoned ones are an address error.
        assert_eq!(
            parse_endpoint_str("::ffff:10.0.0.1", "p", &mut errs),
            Some(EndpointSpec::Ip("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(parse_endpoint_str("fe80::1%eth0", "p", &mut errs), None);
        assert!(errs.0[1].1.contains("zoned IPv6 addresses (`%eth0`) are not supported"), "{:?}", errs.0);
    }
}
