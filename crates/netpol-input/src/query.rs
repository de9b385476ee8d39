//! `netpol query`: the machine contract. JSON Lines in, JSON Lines out, one output line per input line, in order.
//!
//! Input line: `{"src":"ns/pod"|"IP","dst":"ns/pod"|"IP","protocol":"TCP","port":80}` (protocol defaults to
//! TCP; other fields are kept). An optional `"dst_fqdn":"api.example.com"` says the source resolved that name
//! (through cluster DNS) and got `dst`: what `domainNames` peers match. Output line: the input object byte for byte, with `"verdict":"allow"|"deny"`
//! appended (and `"explain":{...}` with `--explain`), or `"error":"<message>"` when the line cannot be answered.
//! A line that is not a JSON object is answered `{"input":"<the line>","error":"..."}`, and a line that is not
//! valid UTF-8 `{"line":N,"input":"<the line, invalid bytes replaced>","error":"..."}`. Lines are read as bytes:
//! one bad line never ends the stream. A UTF-8 byte-order mark at the start of the input is ignored.
//!
//! When the cluster has Calico staged policies ([`run_with_staged`]), each `explain` object also carries the
//! verdict the staged policies would give (`staged`, as `netpol explain` gives it); `verdict` stays the enforced one.

use std::borrow::Cow;
use std::io::{BufRead, Write};

use netpol_core::compile::{Endpoint, Engine, FlowInfo};
use netpol_core::l7::{HttpRequest, Request};
use netpol_core::model::PodId;
use netpol_core::portset::{icmp_port, Protocol};
use rustc_hash::FxHashMap;
use serde::Deserialize;

#[derive(Deserialize)]
struct FlowIn<'a> {
    #[serde(borrow, default)]
    src: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dst: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    protocol: Option<Cow<'a, str>>,
    #[serde(default)]
    port: Option<serde_json::Value>,
    #[serde(borrow, default)]
    dst_fqdn: Option<Cow<'a, str>>,
    #[serde(default)]
    icmp: Option<serde_json::Value>,
    #[serde(default)]
    http: Option<serde_json::Value>,
    #[serde(default)]
    dns: Option<serde_json::Value>,
}

/// A flow's `http` member: one request on the connection.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpIn {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    host: Option<String>,
}

/// A flow's `dns` member: one DNS query on the connection.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsIn {
    query: String,
}

/// The request a flow line carries (`http` or `dns`), checked.
fn parse_request(
    http: &Option<serde_json::Value>,
    dns: &Option<serde_json::Value>,
    protocol: Protocol,
) -> Result<Option<Request>, String> {
    match (http, dns) {
        (Some(_), Some(_)) => Err("invalid flow: give `http` or `dns`, not both (one request per flow)".to_string()),
        (Some(v), None) => {
            if protocol != Protocol::Tcp {
                return Err(format!("invalid flow: `http` needs protocol TCP, not {protocol}"));
            }
            let h: HttpIn = serde_json::from_value(v.clone()).map_err(|e| {
                format!("invalid flow: `http` must be an object with `method`, `path`, `headers` (an object of strings) and `host`: {e}")
            })?;
            Ok(Some(Request::Http(http_request(
                h.method.as_deref(),
                h.path.as_deref(),
                h.host.as_deref(),
                &h.headers,
            )?)))
        }
        (None, Some(v)) => {
            let d: DnsIn = serde_json::from_value(v.clone())
                .map_err(|e| format!("invalid flow: `dns` must be an object with `query` (a DNS name): {e}"))?;
            Ok(Some(Request::Dns(parse_dns_query(&d.query)?)))
        }
        (None, None) => Ok(None),
    }
}

/// An HTTP request from its parts (method `GET` and path `/` when absent), checked: a method is a token, a path
/// starts with `/` (or is `*`), and header names are tokens.
pub fn http_request(
    method: Option<&str>,
    path: Option<&str>,
    host: Option<&str>,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<HttpRequest, String> {
    let token =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    let method = method.unwrap_or("GET");
    if !token(method) {
        return Err(format!("invalid HTTP method `{method}`"));
    }
    let path = path.unwrap_or("/");
    if !(path.starts_with('/') || path == "*") || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(format!("invalid HTTP path `{path}`: it starts with `/` and has no spaces"));
    }
    let mut req = HttpRequest::new(method, path);
    if let Some(h) = host {
        req = req.with_host(h);
    }
    for (name, value) in headers {
        if !token(name) {
            return Err(format!("invalid HTTP header name `{name}`"));
        }
        req = req.with_header(name, value);
    }
    Ok(req)
}

/// The method and path of a request line as users write it (`explain --http`, the API's `http=`): `METHOD PATH`,
/// `PATH` (a GET) or `METHOD` (of `/`).
pub fn http_request_line(line: &str) -> (Option<&str>, Option<&str>) {
    let line = line.trim();
    match line.split_once(' ') {
        Some((m, p)) => (Some(m), Some(p.trim())),
        None if line.starts_with('/') => (None, Some(line)),
        None => (Some(line), None),
    }
}

/// A DNS query's name (letters, digits, `-`, `_` labels; a final dot is allowed), lowercase without the dot.
pub fn parse_dns_query(s: &str) -> Result<String, String> {
    parse_fqdn(s).map_err(|e| format!("dns.query: {e}"))
}

/// Resolves endpoint strings quickly: `ns/pod` through a hash map, IPs through the engine's index.
pub struct Resolver<'e> {
    engine: &'e Engine,
    pods: FxHashMap<String, PodId>,
    default_ns: String,
}

impl<'e> Resolver<'e> {
    pub fn new(engine: &'e Engine, default_ns: &str) -> Self {
        let pods = (0..engine.cluster().pods.len()).map(PodId::new).map(|p| (engine.cluster().pod_ref(p), p)).collect();
        Resolver { engine, pods, default_ns: default_ns.to_string() }
    }

    pub fn endpoint(&self, s: &str) -> Result<Endpoint, String> {
        if let Some(&pod) = self.pods.get(s) {
            return Ok(Endpoint::Pod { pod, ip: None });
        }
        // Canonical (`::ffff:10.0.0.1` is 10.0.0.1); a zoned or malformed address is an address error.
        let address = netpol_core::compile::parse_address(s);
        if let Ok(Some(ip)) = address {
            return Ok(self.engine.endpoint_for_ip(ip));
        }
        if !s.contains('/') {
            if let Some(&pod) = self.pods.get(&format!("{}/{s}", self.default_ns)) {
                return Ok(Endpoint::Pod { pod, ip: None });
            }
        }
        address?;
        Err(format!("unknown pod `{s}` (expected `namespace/pod` or an IP address)"))
    }
}

/// The ICMP message a flow without `icmp` means: an echo request (ping).
pub fn echo_request(proto: Protocol) -> u16 {
    match proto {
        Protocol::Icmpv6 => icmp_port(128, 0),
        _ => icmp_port(8, 0),
    }
}

/// Parses `80`, `80/TCP`, `53/udp`, and for ICMP `icmp` (an echo request), `icmp:3` (code 0), `icmpv6:1:4`
/// (type and code): the "port" of an ICMP message is `type << 8 | code`.
pub fn parse_port_proto(s: &str) -> Result<(u16, Protocol), String> {
    let head = s.split(':').next().unwrap_or(s);
    if let Some(proto) = Protocol::parse_loose(head).filter(|p| !p.has_ports()) {
        let mut parts = s.split(':').skip(1);
        let num = |x: Option<&str>, what: &str| -> Result<Option<u8>, String> {
            x.map(|v| v.parse::<u8>().map_err(|_| format!("invalid ICMP {what} `{v}`: an integer from 0 to 255")))
                .transpose()
        };
        let t = num(parts.next(), "type")?;
        let c = num(parts.next(), "code")?;
        if parts.next().is_some() {
            return Err(format!("`{s}`: expected `{proto}`, `{proto}:TYPE` or `{proto}:TYPE:CODE`"));
        }
        return Ok((t.map_or_else(|| echo_request(proto), |t| icmp_port(t, c.unwrap_or(0))), proto));
    }
    let (p, proto) = match s.split_once('/') {
        Some((p, proto)) => (
            p,
            Protocol::parse_loose(proto).filter(|p| p.has_ports()).ok_or_else(|| {
                format!("unknown protocol `{proto}` (TCP, UDP or SCTP; for ICMP write `icmp:TYPE:CODE`)")
            })?,
        ),
        None => (s, Protocol::Tcp),
    };
    match p.parse::<u16>() {
        Ok(n) if n >= 1 => Ok((n, proto)),
        _ => Err(format!("invalid port `{p}`: must be an integer between 1 and 65535")),
    }
}

struct Answer {
    verdict: bool,
    explain: Option<String>,
}

/// A flow line, parsed and resolved.
pub struct Flow {
    pub src: Endpoint,
    pub dst: Endpoint,
    /// The DNS name `dst` was resolved from (lowercase, without the final dot).
    pub dst_fqdn: Option<String>,
    /// One request on the connection (`http`, `dns`).
    pub request: Option<Request>,
    pub protocol: Protocol,
    pub port: u16,
}

/// Checks a destination name (`dst_fqdn`, `--dst-fqdn`): a DNS name of letters, digits, `-` and `_` labels
/// separated by dots (a final dot is allowed); returns it lowercase, without the final dot.
pub fn parse_fqdn(s: &str) -> Result<String, String> {
    let name = s.strip_suffix('.').unwrap_or(s);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("`{s}` is not a DNS name (labels of letters, digits and `-`, separated by dots)"));
    }
    Ok(name.to_ascii_lowercase())
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Why a line is not a flow, in the user's terms (serde's own messages name Rust types).
fn flow_shape_error(line: &str, e: &serde_json::Error) -> String {
    const SHAPE: &str = "a JSON object with `src`, `dst`, `port` and optionally `protocol`";
    let v: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return format!("invalid flow: not JSON: {e}"),
    };
    let serde_json::Value::Object(m) = &v else {
        return format!("invalid flow: expected {SHAPE}, found {}", json_kind(&v));
    };
    for (field, what) in [
        ("src", "`namespace/pod`, `pod` or an IP address"),
        ("dst", "`namespace/pod`, `pod` or an IP address"),
        ("protocol", "TCP, UDP, SCTP, ICMP or ICMPv6"),
        ("dst_fqdn", "the DNS name `dst` was resolved from"),
    ] {
        match m.get(field) {
            None | Some(serde_json::Value::String(_)) => {}
            Some(serde_json::Value::Null) if field == "protocol" || field == "dst_fqdn" => {}
            Some(x) => return format!("invalid flow: `{field}` must be a string ({what}), found {}", json_kind(x)),
        }
    }
    // Left: duplicate fields and the like, whose messages name no type.
    format!("invalid flow: {e}")
}

/// Parses and resolves one flow line (the `query` contract; protocol names in any case).
pub fn parse_flow(r: &Resolver, line: &str) -> Result<Flow, String> {
    let f: FlowIn = match fast_flow_in(line) {
        Some(f) => f,
        None => serde_json::from_str(line).map_err(|e| flow_shape_error(line, &e))?,
    };
    let src = f.src.ok_or("missing field `src`")?;
    let dst = f.dst.ok_or("missing field `dst`")?;
    let protocol = match f.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(p) => Protocol::parse_loose(p)
            .ok_or_else(|| format!("unsupported protocol `{p}`: TCP, UDP, SCTP, ICMP or ICMPv6"))?,
    };
    let src_dst = |r: &Resolver| -> Result<(Endpoint, Endpoint, Option<String>), String> {
        let src = r.endpoint(&src).map_err(|e| format!("src: {e}"))?;
        let dst = r.endpoint(&dst).map_err(|e| format!("dst: {e}"))?;
        let dst_fqdn = f.dst_fqdn.as_deref().map(parse_fqdn).transpose().map_err(|e| format!("dst_fqdn: {e}"))?;
        Ok((src, dst, dst_fqdn))
    };
    let request = parse_request(&f.http, &f.dns, protocol)?;
    if !protocol.has_ports() {
        if f.port.is_some() {
            return Err(format!(
                "{protocol} has no port: give the message as `\"icmp\": {{\"type\": 8, \"code\": 0}}`"
            ));
        }
        let port = match &f.icmp {
            None => echo_request(protocol),
            Some(v) => parse_icmp(v)?,
        };
        let (src, dst, dst_fqdn) = src_dst(r)?;
        return Ok(Flow { src, dst, dst_fqdn, request, protocol, port });
    }
    if f.icmp.is_some() {
        return Err(format!("`icmp` is for ICMP and ICMPv6 flows, not {protocol}"));
    }
    let port = match &f.port {
        Some(serde_json::Value::Number(n)) => n.as_u64().filter(|&n| (1..=65535).contains(&n)).map(|n| n as u16),
        _ => None,
    }
    .ok_or_else(|| match &f.port {
        None => "missing field `port`".to_string(),
        Some(v) => format!("invalid port {v}: must be an integer between 1 and 65535"),
    })?;
    let (src, dst, dst_fqdn) = src_dst(r)?;
    Ok(Flow { src, dst, dst_fqdn, request, protocol, port })
}

/// For the fuzzer (`fuzz/fuzz_targets/flow_line.rs`): whether the fast reader of flow lines agrees with serde_json
/// on `line` (it takes no line serde_json rejects or reads differently). Panics on nothing.
#[doc(hidden)]
pub fn fast_path_agrees(line: &str) -> bool {
    let Some(f) = fast_flow_in(line) else { return true };
    let Ok(g) = serde_json::from_str::<FlowIn>(line) else { return false };
    let fields = |f: &FlowIn<'_>| {
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            f.src, f.dst, f.protocol, f.port, f.dst_fqdn, f.icmp, f.http, f.dns
        )
    };
    fields(&f) == fields(&g)
}

/// The common flow line, read without serde: one object whose members are only `src`, `dst` and `protocol` (strings
/// without escapes or control characters) and `port` (an integer without sign, fraction or exponent), each at most
/// once, with JSON whitespace anywhere between tokens. Anything else (`null`, other members, escapes, duplicates,
/// invalid JSON) is `None`, and serde_json reads the line with its own error messages: so this path only takes
/// lines serde_json reads to the same `FlowIn` (a test compares the two on generated lines).
fn fast_flow_in(line: &str) -> Option<FlowIn<'_>> {
    let b = line.as_bytes();
    let mut i = 0;
    let ws = |i: &mut usize| {
        while matches!(b.get(*i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            *i += 1;
        }
    };
    // A string without escapes or control characters: its text.
    let string = |i: &mut usize| -> Option<&str> {
        if b.get(*i) != Some(&b'"') {
            return None;
        }
        let start = *i + 1;
        let len = b.get(start..)?.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if b.get(start + len) != Some(&b'"') {
            return None;
        }
        *i = start + len + 1;
        line.get(start..start + len)
    };
    let mut f =
        FlowIn { src: None, dst: None, protocol: None, port: None, dst_fqdn: None, icmp: None, http: None, dns: None };
    ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    ws(&mut i);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            ws(&mut i);
            let key = string(&mut i)?;
            ws(&mut i);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i += 1;
            ws(&mut i);
            match key {
                "src" | "dst" | "protocol" => {
                    let slot = match key {
                        "src" => &mut f.src,
                        "dst" => &mut f.dst,
                        _ => &mut f.protocol,
                    };
                    if slot.is_some() {
                        return None;
                    }
                    *slot = Some(Cow::Borrowed(string(&mut i)?));
                }
                "port" => {
                    let digits = b.get(i..)?.iter().take_while(|c| c.is_ascii_digit()).count();
                    let text = line.get(i..i + digits)?;
                    if f.port.is_some() || digits == 0 || digits > 5 || (digits > 1 && text.starts_with('0')) {
                        return None;
                    }
                    i += digits;
                    f.port = Some(serde_json::Value::from(text.parse::<u64>().ok()?));
                }
                _ => return None,
            }
            ws(&mut i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    ws(&mut i);
    (i == b.len()).then_some(f)
}

/// `{"type": 8, "code": 0}` (code optional, 0) → `type << 8 | code`.
fn parse_icmp(v: &serde_json::Value) -> Result<u16, String> {
    let serde_json::Value::Object(m) = v else {
        return Err(format!("invalid flow: `icmp` must be an object with `type` and `code`, found {}", json_kind(v)));
    };
    if let Some(k) = m.keys().find(|k| *k != "type" && *k != "code") {
        return Err(format!("invalid flow: unknown field `icmp.{k}` (`type`, `code`)"));
    }
    let field = |name: &str| -> Result<Option<u8>, String> {
        match m.get(name) {
            None => Ok(None),
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("invalid icmp.{name} {n}: an integer from 0 to 255")),
            Some(x) => Err(format!("invalid flow: `icmp.{name}` must be a number, found {}", json_kind(x))),
        }
    };
    let t = field("type")?.ok_or("invalid flow: `icmp` needs a `type`")?;
    Ok(icmp_port(t, field("code")?.unwrap_or(0)))
}

fn answer(
    r: &Resolver,
    staged: Option<&Engine>,
    by_cni: Option<&netpol_core::cni::ByCni<'_>>,
    line: &str,
    explain: bool,
) -> Result<Answer, String> {
    let Flow { src: s, dst: d, dst_fqdn, request, protocol: proto, port } = parse_flow(r, line)?;
    let info = FlowInfo { dst_name: dst_fqdn.as_deref(), request: request.as_ref() };
    let verdict = r.engine.allowed_flow(&s, &d, info, proto, port);
    let explain = if explain {
        let ex = match staged {
            Some(st) => netpol_core::staged::explain_flow_with_staged(r.engine, st, &s, &d, info, proto, port),
            None => r.engine.explain_flow(&s, &d, info, proto, port),
        };
        let mut v = serde_json::to_value(&ex).map_err(|e| e.to_string())?;
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("cni".into(), crate::cni_json(r.engine));
            if let Some(d) = by_cni.and_then(|b| b.dependence(&s, &d, info, proto, port)) {
                m.insert("cni_dependence".into(), serde_json::to_value(&d).map_err(|e| e.to_string())?);
            }
        }
        Some(serde_json::to_string(&v).map_err(|e| e.to_string())?)
    } else {
        None
    };
    Ok(Answer { verdict, explain })
}

/// Writes `line` (a JSON object) with extra members appended before its closing brace.
fn append_members(out: &mut (impl Write + ?Sized), line: &str, members: &str) -> std::io::Result<()> {
    let body = line.trim_end();
    let inner = body.strip_suffix('}').unwrap_or(body);
    let empty = inner.trim_start().strip_prefix('{').is_some_and(|r| r.trim().is_empty());
    out.write_all(inner.as_bytes())?;
    if !empty {
        out.write_all(b",")?;
    }
    out.write_all(members.as_bytes())?;
    out.write_all(b"}\n")
}

/// Writes the answer of a line that cannot be answered: the line (a JSON object) with `"error"` appended, or
/// `{"input":"<line>","error":...}` when it is not a JSON object.
pub fn write_error_line(out: &mut dyn Write, line: &str, msg: &str) -> std::io::Result<()> {
    let msg = serde_json::to_string(msg).unwrap_or_else(|_| "\"error\"".into());
    let is_object = line.trim_start().starts_with('{') && line.trim_end().ends_with('}');
    if is_object && serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok() {
        append_members(out, line, &format!("\"error\":{msg}"))
    } else {
        let input = serde_json::to_string(line).unwrap_or_else(|_| "\"\"".into());
        writeln!(out, "{{\"input\":{input},\"error\":{msg}}}")
    }
}

/// Reads one line as bytes into `buf` (cleared first), without its line ending, and without a UTF-8 byte-order
/// mark when it is the first line (`n` = 1); `None` at the end of the input. Reading bytes, not `String`s, lets
/// a line that is not UTF-8 be answered instead of ending the stream.
pub fn read_line<'b>(input: &mut dyn BufRead, buf: &'b mut Vec<u8>, n: u64) -> std::io::Result<Option<&'b [u8]>> {
    buf.clear();
    if input.read_until(b'\n', buf)? == 0 {
        return Ok(None);
    }
    let mut bytes = buf.as_slice();
    while let Some(b) = bytes.strip_suffix(b"\n").or_else(|| bytes.strip_suffix(b"\r")) {
        bytes = b;
    }
    if n == 1 {
        // A UTF-8 byte-order mark (editors on Windows write one) is not part of the first flow.
        bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    }
    Ok(Some(bytes))
}

/// The message for line `n` that is not valid UTF-8.
pub fn not_utf8(n: u64, e: &std::str::Utf8Error) -> String {
    format!("line {n} is not valid UTF-8 (at byte {})", e.valid_up_to() + 1)
}

/// Runs the query loop; returns the number of lines that got an error.
pub fn run(
    engine: &Engine,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    explain: bool,
    default_ns: &str,
) -> std::io::Result<u64> {
    run_with_staged(engine, None, input, out, explain, default_ns)
}

/// [`run`], with the staged view of `engine`'s cluster (compiled from `engine.cluster().with_staged()`, once for
/// the whole stream) when it has staged policies: each explanation then carries the staged verdict (`staged`),
/// as `netpol explain` gives it. Verdicts are the enforced ones either way; without `explain` (or with `staged`
/// `None`) this is [`run`].
pub fn run_with_staged(
    engine: &Engine,
    staged: Option<&Engine>,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    explain: bool,
    default_ns: &str,
) -> std::io::Result<u64> {
    let r = Resolver::new(engine, default_ns);
    // The other CNIs' engines, compiled when an explanation first needs them.
    let by_cni = explain.then(|| netpol_core::cni::ByCni::new(engine));
    let mut errors = 0u64;
    let mut buf: Vec<u8> = Vec::new();
    let mut n = 0u64;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    while let Some(bytes) = read_line(input, &mut buf, n + 1)? {
        n += 1;
        let l = match std::str::from_utf8(bytes) {
            Ok(l) => l,
            Err(e) => {
                // Read as bytes, so that one bad line does not end the stream: it gets its own error line.
                errors += 1;
                let input = serde_json::to_string(&String::from_utf8_lossy(bytes)).unwrap_or_else(|_| "\"\"".into());
                let msg = serde_json::to_string(&not_utf8(n, &e)).unwrap_or_else(|_| "\"error\"".into());
                writeln!(out, "{{\"line\":{n},\"input\":{input},\"error\":{msg}}}")?;
                continue;
            }
        };
        match answer(&r, staged, by_cni.as_ref(), l, explain) {
            Ok(a) => {
                let v = if a.verdict { r#""verdict":"allow""# } else { r#""verdict":"deny""# };
                match a.explain {
                    None => append_members(&mut out, l, v)?,
                    Some(ex) => append_members(&mut out, l, &format!("{v},\"explain\":{ex}"))?,
                }
            }
            Err(msg) => {
                errors += 1;
                write_error_line(&mut out, l, &msg)?;
            }
        }
    }
    out.flush()?;
    Ok(errors)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::fast_flow_in;

    /// Every line the fast path takes, serde_json reads to the same flow; the lines it leaves go to serde_json
    /// (whose errors the users see). Lines are generated from members, values, whitespace, duplicates, escapes,
    /// control characters, unknown members, trailing text and cuts.
    #[test]
    fn fast_path_agrees_with_serde_json() {
        let keys = ["src", "dst", "protocol", "port", "dst_fqdn", "http", "x", "sr\\u0063"];
        let strings = [
            "\"a/web\"",
            "\"10.0.0.1\"",
            "\"TCP\"",
            "\"\"",
            "\"caf\u{e9}/p\u{f8}d\"",
            "\"a\\\"b\"",
            "\"a\\nb\"",
            "\"tab\there\"",
            "\"80\"",
            "null",
            "true",
            "{}",
            "[1]",
        ];
        let numbers = [
            "80",
            "0",
            "1",
            "65535",
            "65536",
            "99999",
            "100000",
            "080",
            "-1",
            "1.5",
            "1e2",
            "80 ",
            "18446744073709551616",
        ];
        let spaces = ["", " ", "  ", "\t", "\r\n", "\u{a0}"];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let (mut fast, mut total) = (0, 0);
        for _ in 0..200_000 {
            let mut line = String::new();
            line.push_str(spaces[next(spaces.len())]);
            line.push('{');
            let members = next(6);
            for m in 0..members {
                if m > 0 {
                    line.push_str(if next(40) == 0 { ";" } else { "," });
                }
                line.push_str(spaces[next(spaces.len())]);
                let key = keys[next(keys.len())];
                line.push('"');
                line.push_str(key);
                line.push('"');
                line.push_str(spaces[next(spaces.len())]);
                line.push(':');
                line.push_str(spaces[next(spaces.len())]);
                let numeric = key == "port" && next(4) != 0;
                line.push_str(if numeric { numbers[next(numbers.len())] } else { strings[next(strings.len())] });
                line.push_str(spaces[next(spaces.len())]);
            }
            line.push('}');
            match next(20) {
                0 => line.push_str(" x"),
                1 => {
                    // A cut, at a character boundary (a `&str` line is valid UTF-8).
                    let mut at = next(line.len() + 1);
                    while !line.is_char_boundary(at) {
                        at -= 1;
                    }
                    line.truncate(at);
                }
                2 => line.push('\n'),
                _ => {}
            }
            total += 1;
            if fast_flow_in(&line).is_some() {
                fast += 1;
                assert!(super::fast_path_agrees(&line), "{line:?}");
            }
        }
        assert!(fast * 10 > total, "the fast path took {fast} of {total} lines");
        // The benchmark's and the README's lines.
        for line in [
            r#"{"src":"a/web","dst":"b/api","protocol":"TCP","port":8080}"#,
            r#"{"src": "prod/web", "dst": "203.0.113.9", "port": 443}"#,
        ] {
            assert!(fast_flow_in(line).is_some(), "{line}");
        }
    }
}
