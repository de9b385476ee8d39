//! What the flow-log parsers share: JSON scalars that logs write as strings or numbers, addresses, protocols,
//! endpoint strings, labels and times.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use netpol_core::portset::Protocol;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::End;

/// A JSON scalar as logs write enums and integers: a string or a number (protobuf's JSON writes 64-bit integers as
/// strings, and enums as names or, with some options, numbers). Objects and lists are not scalars (an error).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    #[default]
    Null,
}

impl<'a> Scalar<'a> {
    /// The string, when it is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A non-negative integer, written as a number or a decimal string.
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Scalar::Int(i) => u64::try_from(*i).ok(),
            Scalar::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19 => Some(*f as u64),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A number of seconds (maybe fractional), written as a number or a decimal string.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Scalar::Null)
    }
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => write!(f, "`{s}`"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Null => f.write_str("null"),
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// A string, borrowed from the line when it has no escapes (also inside lists, where serde's `Cow` always copies).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v)))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

/// Whether an enum a log wrote (as its name, any case, or its number) is `name` (`num`).
pub(crate) fn enum_is(s: Option<&Scalar>, name: &str, num: i64) -> bool {
    match s {
        Some(Scalar::Str(v)) => v.eq_ignore_ascii_case(name),
        Some(Scalar::Int(v)) => *v == num,
        _ => false,
    }
}

/// A boolean as protobuf's JSON writes a `google.protobuf.BoolValue`: `true`, or wrapped, `{"value": true}` (and
/// `{}` for false). `null` is absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BoolValue(pub(crate) bool);

struct BoolValueVisitor;

impl<'de> Visitor<'de> for BoolValueVisitor {
    type Value = BoolValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean or {\"value\": boolean}")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(BoolValue(v))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut value = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "value" {
                value = map.next_value::<Option<bool>>()?.unwrap_or(false);
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(BoolValue(value))
    }
}

impl<'de> Deserialize<'de> for BoolValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BoolValueVisitor)
    }
}

/// Labels as logs write them: a list of `key=value` strings, one string of them joined by ` | ` or `,` (Whisker,
/// Inspektor Gadget), an object of strings, or an object with such a list under `labels` (Calico's flow logs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelList(pub(crate) Vec<(String, String)>);

struct LabelListVisitor;

fn push_label(out: &mut Vec<(String, String)>, s: &str) {
    let s = s.trim();
    if s.is_empty() {
        return;
    }
    match s.split_once('=') {
        Some((k, v)) => out.push((k.trim().to_string(), v.trim().to_string())),
        None => out.push((s.to_string(), String::new())),
    }
}

impl<'de> Visitor<'de> for LabelListVisitor {
    type Value = LabelList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("labels: a list of `key=value` strings, such a string, or an object")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let mut out = Vec::new();
        let sep = if v.contains(" | ") { " | " } else { "," };
        for part in v.split(sep) {
            push_label(&mut out, part);
        }
        Ok(LabelList(out))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(LabelList::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(LabelList::default())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(s) = seq.next_element::<Cow<'de, str>>()? {
            push_label(&mut out, &s);
        }
        Ok(LabelList(out))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match map.next_value::<LabelValue>()? {
                LabelValue::One(v) => out.push((key.into_owned(), v)),
                LabelValue::Many(l) if key == "labels" => out.extend(l.0),
                LabelValue::Many(_) => return Err(de::Error::custom(format!("label `{key}`: expected a string"))),
            }
        }
        Ok(LabelList(out))
    }
}

/// A value in an object of labels: a label's value, or (under `labels`) a list of labels.
enum LabelValue {
    One(String),
    Many(LabelList),
}

impl<'de> Deserialize<'de> for LabelValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LabelValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a label value (a string)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LabelValue::One(v.to_string()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                LabelListVisitor.visit_seq(seq).map(LabelValue::Many)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for LabelList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LabelListVisitor)
    }
}

/// Sorts labels by key and drops repeated keys (the first stays).
pub(crate) fn sort_labels(mut labels: Vec<(String, String)>) -> Vec<(String, String)> {
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    labels.dedup_by(|a, b| a.0 == b.0);
    labels
}

/// A line's JSON error: `what`, serde's message, and the column (serde's own "line 1" would be read as the file's
/// line).
pub(crate) fn json_error(what: &str, e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match msg.strip_suffix(&position) {
        Some(m) => format!("{what}: {m} (column {})", e.column()),
        None => format!("{what}: {msg}"),
    }
}

/// An address field: empty is absent; IPv4-mapped IPv6 addresses are canonical (`::ffff:10.0.0.1` is 10.0.0.1).
pub(crate) fn ip(field: &str, s: &str) -> Result<Option<IpAddr>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match netpol_core::compile::parse_address(s) {
        Ok(Some(ip)) => Ok(Some(ip)),
        Ok(None) => Err(format!("{field}: `{s}` is not an IP address")),
        Err(e) => Err(format!("{field}: {e}")),
    }
}

/// A protocol as a name in any case (`TCP`, `udp`, `ICMPv6`) or its IANA number (6, 17, 132, 1, 58), as a
/// number or a string.
pub(crate) fn protocol(field: &str, s: &Scalar) -> Result<Protocol, String> {
    let unknown = || format!("{field}: unsupported protocol {s} (TCP, UDP, SCTP, ICMP, ICMPv6 or their numbers)");
    match s {
        Scalar::Str(name) => {
            let name = name.trim();
            if let Some(p) = Protocol::parse_loose(name) {
                return Ok(p);
            }
            if name.eq_ignore_ascii_case("icmp6") || name.eq_ignore_ascii_case("ipv6-icmp") {
                return Ok(Protocol::Icmpv6);
            }
            name.parse::<u8>().ok().and_then(Protocol::from_number).ok_or_else(unknown)
        }
        Scalar::Int(n) => u8::try_from(*n).ok().and_then(Protocol::from_number).ok_or_else(unknown),
        _ => Err(unknown()),
    }
}

/// A port field: 1 to 65535; 0 or absent is no port.
pub(crate) fn port(field: &str, s: Option<&Scalar>) -> Result<Option<u16>, String> {
    match s {
        None | Some(Scalar::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(0) => Ok(None),
            Some(n) => u16::try_from(n).map(Some).map_err(|_| format!("{field}: invalid port {v} (1 to 65535)")),
            None => Err(format!("{field}: invalid port {v} (1 to 65535)")),
        },
    }
}

/// An endpoint written as one string: `namespace/pod`, an IP address, or a bare pod name (no namespace).
pub(crate) fn end_from_str(field: &str, s: &str) -> Result<End, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("{field}: empty endpoint (`namespace/pod`, `pod` or an IP address)"));
    }
    if let Some((ns, pod)) = s.split_once('/') {
        if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') {
            return Ok(End { namespace: Some(ns.to_string()), pod: Some(pod.to_string()), ..End::default() });
        }
    }
    match netpol_core::compile::parse_address(s) {
        Ok(Some(ip)) => Ok(End { ip: Some(ip), ..End::default() }),
        Ok(None) if !s.contains('/') => Ok(End { pod: Some(s.to_string()), ..End::default() }),
        Ok(None) => Err(format!("{field}: `{s}` is not `namespace/pod`, `pod` or an IP address")),
        Err(e) => Err(format!("{field}: {e}")),
    }
}

/// A non-empty string, owned.
pub(crate) fn some_str(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` for a Unix time (seconds and nanoseconds, UTC).
pub(crate) fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if nanos == 0 {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        let frac = format!("{nanos:09}");
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{}Z", frac.trim_end_matches('0'))
    }
}

/// A time as a log writes it: an RFC 3339 string kept as written, or a number since the Unix epoch (as a number or
/// a decimal string), written as RFC 3339: seconds (maybe fractional; klog's JSON `ts`), or milliseconds,
/// microseconds or nanoseconds when it is too large to be seconds.
pub(crate) fn time(s: &Scalar) -> Option<String> {
    match s {
        Scalar::Str(t) if t.trim().parse::<f64>().is_err() => some_str(Some(t)),
        Scalar::Null | Scalar::Bool(_) => None,
        Scalar::Int(n) if *n >= 100_000_000_000_000_000 => {
            Some(rfc3339(n.div_euclid(1_000_000_000), n.rem_euclid(1_000_000_000) as u32))
        }
        Scalar::Str(t) if t.trim().parse::<i64>().is_ok_and(|n| n >= 100_000_000_000_000_000) => {
            time(&Scalar::Int(t.trim().parse().ok()?))
        }
        v => {
            let mut f = v.as_f64()?;
            if !f.is_finite() || f < 0.0 {
                return None;
            }
            for _ in 0..3 {
                if f >= 1e11 {
                    f /= 1000.0;
                }
            }
            if f >= 1e11 {
                return None;
            }
            let secs = f.floor();
            // Milliseconds are what logs with fractional seconds carry; more digits are float noise.
            let millis = (((f - secs) * 1e3).round() as u32).min(999);
            Some(rfc3339(secs as i64, millis * 1_000_000))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000, 0), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400, 500_000_000), "2000-02-29T00:00:00.5Z");
        assert_eq!(time(&Scalar::Float(1_700_000_000.25)).as_deref(), Some("2023-11-14T22:13:20.25Z"));
        assert_eq!(time(&Scalar::Int(1_700_000_000_000_000_000)).as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(time(&Scalar::Str("1700000000".into())).as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(time(&Scalar::Float(1_700_000_000_123.4)).as_deref(), Some("2023-11-14T22:13:20.123Z"));
        assert_eq!(time(&Scalar::Str("2024-01-02T03:04:05Z".into())).as_deref(), Some("2024-01-02T03:04:05Z"));
    }

    #[test]
    fn protocols_by_name_and_number() {
        assert_eq!(protocol("p", &Scalar::Str("tcp".into())), Ok(Protocol::Tcp));
        assert_eq!(protocol("p", &Scalar::Str("17".into())), Ok(Protocol::Udp));
        assert_eq!(protocol("p", &Scalar::Int(132)), Ok(Protocol::Sctp));
        assert_eq!(protocol("p", &Scalar::Int(58)), Ok(Protocol::Icmpv6));
        assert!(protocol("p", &Scalar::Int(47)).is_err());
    }

    #[test]
    fn ends_from_strings() {
        let e = end_from_str("src", "default/web-1").unwrap_or_default();
        assert_eq!((e.namespace.as_deref(), e.pod.as_deref()), (Some("default"), Some("web-1")));
        let e = end_from_str("src", "::ffff:10.0.0.1").unwrap_or_default();
        assert_eq!(e.ip, "10.0.0.1".parse().ok());
        let e = end_from_str("src", "web-1").unwrap_or_default();
        assert_eq!((e.namespace, e.pod.as_deref()), (None, Some("web-1")));
        assert!(end_from_str("src", "10.0.0.300").is_err());
    }
}
