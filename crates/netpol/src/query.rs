//! `netpol query`: the machine contract. JSON Lines in, JSON Lines out, one output line per input line, in order.
//!
//! Input line: `{"src":"ns/pod"|"IP","dst":"ns/pod"|"IP","protocol":"TCP","port":80}` (protocol defaults to
//! TCP; other fields are kept). Output line: the input object byte for byte, with `"verdict":"allow"|"deny"`
//! appended (and `"explain":{...}` with `--explain`), or `"error":"<message>"` when the line cannot be answered.
//! A line that is not a JSON object is answered `{"input":"<the line>","error":"..."}`.

use std::borrow::Cow;
use std::io::{BufRead, Write};

use netpol_core::compile::{Endpoint, Engine};
use netpol_core::model::PodId;
use netpol_core::portset::Protocol;
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
}

/// Resolves endpoint strings quickly: `ns/pod` through a hash map, IPs through the engine's index.
pub struct Resolver<'e> {
    engine: &'e Engine,
    pods: FxHashMap<String, PodId>,
    default_ns: String,
}

impl<'e> Resolver<'e> {
    pub fn new(engine: &'e Engine, default_ns: &str) -> Self {
        let pods = (0..engine.cluster.pods.len() as PodId).map(|p| (engine.cluster.pod_ref(p), p)).collect();
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

/// Parses `80`, `80/TCP`, `53/udp`.
pub fn parse_port_proto(s: &str) -> Result<(u16, Protocol), String> {
    let (p, proto) = match s.split_once('/') {
        Some((p, proto)) => {
            (p, Protocol::parse_loose(proto).ok_or_else(|| format!("unknown protocol `{proto}` (TCP, UDP or SCTP)"))?)
        }
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

fn answer(r: &Resolver, line: &str, explain: bool) -> Result<Answer, String> {
    let f: FlowIn = serde_json::from_str(line).map_err(|e| format!("invalid flow: {e}"))?;
    let src = f.src.ok_or("missing field `src`")?;
    let dst = f.dst.ok_or("missing field `dst`")?;
    let proto = match f.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(p) => Protocol::parse_exact(p).ok_or_else(|| format!("unsupported protocol `{p}`: TCP, UDP or SCTP"))?,
    };
    let port = match &f.port {
        Some(serde_json::Value::Number(n)) => n.as_u64().filter(|&n| (1..=65535).contains(&n)).map(|n| n as u16),
        _ => None,
    }
    .ok_or_else(|| match &f.port {
        None => "missing field `port`".to_string(),
        Some(v) => format!("invalid port {v}: must be an integer between 1 and 65535"),
    })?;
    let s = r.endpoint(&src).map_err(|e| format!("src: {e}"))?;
    let d = r.endpoint(&dst).map_err(|e| format!("dst: {e}"))?;
    let verdict = r.engine.allowed(&s, &d, proto, port);
    let explain = if explain {
        let ex = r.engine.explain(&s, &d, proto, port);
        Some(serde_json::to_string(&ex).map_err(|e| e.to_string())?)
    } else {
        None
    };
    Ok(Answer { verdict, explain })
}

/// Writes `line` (a JSON object) with extra members appended before its closing brace.
fn append_members(out: &mut impl Write, line: &str, members: &str) -> std::io::Result<()> {
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

/// Runs the query loop; returns the number of lines that got an error.
pub fn run(
    engine: &Engine,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    explain: bool,
    default_ns: &str,
) -> std::io::Result<u64> {
    let r = Resolver::new(engine, default_ns);
    let mut errors = 0u64;
    let mut line = String::new();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end_matches(['\n', '\r']);
        let is_object = l.trim_start().starts_with('{') && l.trim_end().ends_with('}');
        match answer(&r, l, explain) {
            Ok(a) => {
                let v = if a.verdict { r#""verdict":"allow""# } else { r#""verdict":"deny""# };
                match a.explain {
                    None => append_members(&mut out, l, v)?,
                    Some(ex) => append_members(&mut out, l, &format!("{v},\"explain\":{ex}"))?,
                }
            }
            Err(msg) => {
                errors += 1;
                let msg = serde_json::to_string(&msg).unwrap_or_else(|_| "\"error\"".into());
                if is_object && serde_json::from_str::<serde::de::IgnoredAny>(l).is_ok() {
                    append_members(&mut out, l, &format!("\"error\":{msg}"))?;
                } else {
                    let input = serde_json::to_string(l).unwrap_or_else(|_| "\"\"".into());
                    writeln!(out, "{{\"input\":{input},\"error\":{msg}}}")?;
                }
            }
        }
    }
    out.flush()?;
    Ok(errors)
}
