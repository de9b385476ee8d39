//! One parsed document as a light tree that borrows from the input, and a serde `Deserializer` over it.
//!
//! Every input path ends here: the fast YAML reader ([`super::yaml`]), libyaml (serde_yaml_ng) for the YAML it does
//! not take, serde_json for JSON, and `serde_json::Value`s handed in by callers. The typed objects of
//! [`super::objects`] are then decoded from the tree with the field path of any error.
//!
//! YAML plain scalars keep their text and are resolved when read, with the YAML 1.2 core schema as serde_yaml_ng
//! applies it (`null`/`~`/empty, `true`/`false` in three casings, decimal/`0x`/`0o`/`0b` integers, floats with
//! `.inf`/`.nan`, leading-zero digit strings stay strings): a document means the same whichever reader read it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

#[derive(Clone, Debug, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    /// Integers beyond 64 bits (YAML): a field error where a number is expected, never a lost document.
    U128(u128),
    I128(i128),
    /// A quoted YAML scalar or a JSON string.
    Str(Cow<'a, str>),
    /// A YAML plain scalar, resolved when read.
    Plain(Cow<'a, str>),
    Seq(Vec<Node<'a>>),
    /// Keys in document order; duplicates are kept (typed decoding reports them).
    Map(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a string scalar (quoted or plain that resolves to a string).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            Node::Plain(s) => match resolve_plain(s) {
                Resolved::Str => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        match self {
            Node::Null => true,
            Node::Plain(s) => matches!(resolve_plain(s), Resolved::Null),
            _ => false,
        }
    }

    /// The tree of a `serde_json::Value` (borrowing its strings).
    pub fn deserialize_from_value(v: &'a serde_json::Value) -> Result<Node<'a>, serde_json::Error> {
        Node::deserialize(v)
    }

    /// Converts borrowed text into owned text (for documents that outlive their input).
    pub fn into_owned(self) -> Node<'static> {
        match self {
            Node::Null => Node::Null,
            Node::Bool(b) => Node::Bool(b),
            Node::U64(n) => Node::U64(n),
            Node::I64(n) => Node::I64(n),
            Node::F64(n) => Node::F64(n),
            Node::U128(n) => Node::U128(n),
            Node::I128(n) => Node::I128(n),
            Node::Str(s) => Node::Str(Cow::Owned(s.into_owned())),
            Node::Plain(s) => Node::Plain(Cow::Owned(s.into_owned())),
            Node::Seq(v) => Node::Seq(v.into_iter().map(Node::into_owned).collect()),
            Node::Map(m) => {
                Node::Map(m.into_iter().map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned())).collect())
            }
        }
    }
}

/// What a plain scalar means.
#[derive(Debug, PartialEq)]
pub(crate) enum Resolved {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    U128(u128),
    I128(i128),
    F64(f64),
    Str,
}

fn radix_int<T>(s: &str, parse: fn(&str, u32) -> Result<T, std::num::ParseIntError>) -> Option<T> {
    // An optional `+`, then decimal digits, or 0x/0o/0b and digits of that base (no second sign).
    let body = s.strip_prefix('+').unwrap_or(s);
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = body.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(n) = parse(rest, radix) {
                return Some(n);
            }
        }
    }
    if body.starts_with(['+', '-']) || leading_zero_digits(s) {
        return None;
    }
    parse(body, 10).ok()
}

fn negative_int<T>(s: &str, parse: fn(&str, u32) -> Result<T, std::num::ParseIntError>) -> Option<T> {
    let rest = s.strip_prefix('-')?;
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = rest.strip_prefix(prefix) {
            if digits.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(n) = parse(&format!("-{digits}"), radix) {
                return Some(n);
            }
        }
    }
    if rest.starts_with(['+', '-']) || leading_zero_digits(s) {
        return None;
    }
    parse(s, 10).ok()
}

/// `0123`, `-007`: digit strings with a leading zero are strings in YAML 1.2.
fn leading_zero_digits(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    s.len() > 1 && s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
}

fn float(s: &str) -> Option<f64> {
    let body = match s.strip_prefix('+') {
        Some(b) if b.starts_with(['+', '-']) => return None,
        Some(b) => b,
        None => s,
    };
    match body {
        ".inf" | ".Inf" | ".INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" if body.len() == s.len() => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" if body.len() == s.len() => return Some(f64::NAN),
        _ => {}
    }
    body.parse::<f64>().ok().filter(|f| f.is_finite())
}

pub(crate) fn resolve_plain(s: &str) -> Resolved {
    // Only text that starts like a number or a keyword can be anything but a string.
    let Some(&first) = s.as_bytes().first() else { return Resolved::Null };
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.' | b'n' | b'N' | b'~' | b't' | b'T' | b'f' | b'F'))
    {
        return Resolved::Str;
    }
    match s {
        "null" | "Null" | "NULL" | "~" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        _ => {}
    }
    if let Some(n) = radix_int(s, u64::from_str_radix) {
        return Resolved::U64(n);
    }
    if let Some(n) = negative_int(s, i64::from_str_radix) {
        return Resolved::I64(n);
    }
    if let Some(n) = radix_int(s, u128::from_str_radix) {
        return Resolved::U128(n);
    }
    if let Some(n) = negative_int(s, i128::from_str_radix) {
        return Resolved::I128(n);
    }
    if !leading_zero_digits(s) {
        if let Some(f) = float(s) {
            return Resolved::F64(f);
        }
    }
    Resolved::Str
}

/// Deserialization error: a message (the field path is added by serde_path_to_error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Reads a [`Node`] as a serde data source.
#[derive(Clone, Copy)]
pub struct NodeDe<'n, 'a>(pub &'n Node<'a>);

impl<'de, 'n, 'a> Deserializer<'de> for NodeDe<'n, 'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::U64(n) => visitor.visit_u64(*n),
            Node::I64(n) => visitor.visit_i64(*n),
            Node::F64(n) => visitor.visit_f64(*n),
            Node::U128(n) => visitor.visit_u128(*n),
            Node::I128(n) => visitor.visit_i128(*n),
            Node::Str(s) => visitor.visit_str(s),
            Node::Plain(s) => match resolve_plain(s) {
                Resolved::Null => visitor.visit_unit(),
                Resolved::Bool(b) => visitor.visit_bool(b),
                Resolved::U64(n) => visitor.visit_u64(n),
                Resolved::I64(n) => visitor.visit_i64(n),
                Resolved::U128(n) => visitor.visit_u128(n),
                Resolved::I128(n) => visitor.visit_i128(n),
                Resolved::F64(n) => visitor.visit_f64(n),
                Resolved::Str => visitor.visit_str(s),
            },
            Node::Seq(items) => visitor.visit_seq(SeqDe { items: items.iter() }),
            Node::Map(entries) => visitor.visit_map(MapDe { entries: entries.iter(), value: None }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.0.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0.as_str() {
            Some(s) => visitor.visit_enum(s.to_string().into_deserializer()),
            None => Err(de::Error::custom("expected a string")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit unit_struct seq
        tuple tuple_struct map struct identifier
    }
}

struct SeqDe<'n, 'a> {
    items: std::slice::Iter<'n, Node<'a>>,
}

impl<'de, 'n, 'a> SeqAccess<'de> for SeqDe<'n, 'a> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some(n) => seed.deserialize(NodeDe(n)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'n, 'a> {
    entries: std::slice::Iter<'n, (Cow<'a, str>, Node<'a>)>,
    value: Option<&'n Node<'a>>,
}

impl<'de, 'n, 'a> MapAccess<'de> for MapDe<'n, 'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(KeyDe(k)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(v) => seed.deserialize(NodeDe(v)),
            None => Err(de::Error::custom("value without a key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A mapping key: always text (YAML keys such as `80:` are read as the string `80`, as kubectl's YAML-to-JSON
/// conversion does).
struct KeyDe<'n>(&'n str);

impl<'de, 'n> Deserializer<'de> for KeyDe<'n> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str(self.0)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit unit_struct
        newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// Builds a [`Node`] from any serde data source: serde_json (borrowing unescaped strings), serde_yaml_ng (the
/// fallback YAML reader) or a `serde_json::Value`.
impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

pub(crate) struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::U64(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(if v >= 0 { Node::U64(v as u64) } else { Node::I64(v) })
    }
    fn visit_u128<E>(self, v: u128) -> Result<Node<'de>, E> {
        Ok(u64::try_from(v).map_or(Node::U128(v), Node::U64))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node<'de>, E> {
        Ok(match (u64::try_from(v), i64::try_from(v)) {
            (Ok(u), _) => Node::U64(u),
            (_, Ok(i)) => Node::I64(i),
            _ => Node::I128(v),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(Node::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(n) = seq.next_element()? {
            items.push(n);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(k) = map.next_key::<KeyText<'de>>()? {
            entries.push((k.0, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key read from another deserializer: strings, and scalars of other types as their text.
struct KeyText<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key that is a string or a number")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText<'de>, E> {
                Ok(KeyText(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The resolution agrees with serde_yaml_ng's on plain scalars of every kind.
    #[test]
    fn plain_scalars_resolve_as_libyaml_path_does() {
        let cases = [
            "",
            "~",
            "null",
            "Null",
            "NULL",
            "nULL",
            "true",
            "True",
            "TRUE",
            "tRue",
            "false",
            "yes",
            "no",
            "on",
            "0",
            "1",
            "-1",
            "+1",
            "++1",
            "+-1",
            "-+1",
            "0x1F",
            "-0x1F",
            "0o17",
            "0b101",
            "0x",
            "0xG",
            "007",
            "-007",
            "+007",
            "0.5",
            ".5",
            "5.",
            "1e3",
            "1E3",
            "-1.5e-3",
            ".inf",
            "-.inf",
            "+.inf",
            ".NaN",
            ".nan",
            "-.nan",
            "1_000",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "340282366920938463463374607431768211456",
            "1e400",
            "inf",
            "nan",
            "Infinity",
            "0.0.1",
            "1.2.3.4",
            "10:00",
            "fd00::1",
            "8080",
            "v1",
            "+",
            ".",
            "tcp",
            "TCP",
            "0o",
            "0b",
            "0x10_0",
            "١٢",
        ];
        for c in cases {
            let doc = format!("v: {c}\n");
            let via_yaml: serde_json::Value = serde_yaml_ng::from_str::<Option<serde_yaml_ng::Value>>(&doc)
                .ok()
                .flatten()
                .and_then(|v| serde_json::to_value(v).ok())
                .unwrap_or(serde_json::Value::Null);
            let ours = Node::Map(vec![(Cow::Borrowed("v"), Node::Plain(Cow::Borrowed(c)))]);
            let ours: Result<serde_json::Value, _> = serde_json::Value::deserialize(NodeDe(&ours));
            match ours {
                Ok(v) => {
                    // NaN never equals itself: compare the text.
                    assert_eq!(v.to_string(), via_yaml.to_string(), "`{c}`");
                }
                // Integers beyond 64 bits: serde_json::Value has no room for them (a field error downstream).
                Err(_) => assert!(matches!(resolve_plain(c), Resolved::U128(_) | Resolved::I128(_)), "`{c}`"),
            }
        }
    }

    #[test]
    fn big_integers_are_a_type_error_of_their_field() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct P {
            port: i32,
        }
        let n = Node::Map(vec![(Cow::Borrowed("port"), Node::Plain(Cow::Borrowed("18446744073709551616")))]);
        let e = serde_path_to_error::deserialize::<_, P>(NodeDe(&n)).unwrap_err();
        assert_eq!(e.path().to_string(), "port");
        assert!(e.inner().0.contains("18446744073709551616"), "{}", e.inner());
    }
}
