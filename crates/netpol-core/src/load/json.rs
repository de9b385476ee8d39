//! JSON inputs: one value or a stream of values (each a document). A `kind: List` is read item by item: the
//! items are kept as raw text slices while the list is scanned, then each is parsed and decoded on its own (on
//! every core for large inputs), so a 50 MB `kubectl get -o json` list never becomes one tree in memory.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::node::Node;
use super::{decode, error, parallel_ordered, threads, Decoded, Loader, PARALLEL_BYTES};
use crate::model::Origin;

/// A top-level JSON value: a tree, except that a top-level `items` array is kept as raw item texts.
enum Top<'a> {
    Other(Node<'a>),
    Object(Vec<(Cow<'a, str>, Entry<'a>)>),
}

enum Entry<'a> {
    Node(Node<'a>),
    Items(Vec<&'a RawValue>),
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    if k == "items" {
                        // An array of anything is kept raw; anything else is an ordinary value.
                        let raw: &'de RawValue = map.next_value()?;
                        match serde_json::from_str::<Vec<&'de RawValue>>(raw.get()) {
                            Ok(items) => entries.push((k, Entry::Items(items))),
                            Err(_) => {
                                let n = serde_json::from_str::<Node<'de>>(raw.get()).map_err(serde::de::Error::custom)?;
                                entries.push((k, Entry::Node(n)));
                            }
                        }
                    } else {
                        entries.push((k, Entry::Node(map.next_value()?)));
                    }
                }
                Ok(Top::Object(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Top<'de>, A::Error> {
                Node::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Top::Other)
            }
            fn visit_str<E>(self, v: &str) -> Result<Top<'de>, E> {
                Ok(Top::Other(Node::Str(Cow::Owned(v.to_string()))))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Top<'de>, E> {
                Ok(Top::Other(Node::Str(Cow::Borrowed(v))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Top<'de>, E> {
                Ok(Top::Other(Node::U64(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Top<'de>, E> {
                Ok(Top::Other(Node::I64(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Top<'de>, E> {
                Ok(Top::Other(Node::F64(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Top<'de>, E> {
                Ok(Top::Other(Node::Bool(v)))
            }
            fn visit_unit<E>(self) -> Result<Top<'de>, E> {
                Ok(Top::Other(Node::Null))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads `text` as JSON; false when its first value is not JSON (a YAML flow mapping also starts with `{`), in
/// which case nothing was loaded and the caller reads it as YAML.
pub(super) fn add_json(loader: &mut Loader, name: &str, text: &str) -> bool {
    let origin = |document| Origin { file: name.to_string(), document, item: None };
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Top<'_>>();
    let mut doc = 0;
    loop {
        match stream.next() {
            None => return true,
            Some(Ok(top)) => add_top(loader, top, origin(doc), text.len()),
            Some(Err(_)) if doc == 0 => return false,
            Some(Err(e)) => {
                // A JSON stream cannot be resynchronised after a syntax error.
                let msg = format!("invalid JSON: {e}; the rest of this input is not read");
                loader.accept(Decoded::Diagnostic(error(origin(doc), None, None, msg)));
                return true;
            }
        }
        doc += 1;
    }
}

fn add_top(loader: &mut Loader, top: Top<'_>, origin: Origin, input_len: usize) {
    let mut out = Vec::new();
    let entries = match top {
        Top::Other(node) => {
            decode(&node, origin, &mut out);
            out.into_iter().for_each(|d| loader.accept(d));
            return;
        }
        Top::Object(entries) => entries,
    };
    // The object with an empty `items` decides whether it is a List and of which kind its items are.
    let mut raw_items: Vec<Vec<&RawValue>> = Vec::new();
    let head = Node::Map(
        entries
            .into_iter()
            .map(|(k, e)| match e {
                Entry::Node(n) => (k, n),
                Entry::Items(items) => {
                    raw_items.push(items);
                    (k, Node::Seq(Vec::new()))
                }
            })
            .collect(),
    );
    match (super::list_kind(&head), raw_items.len()) {
        (Some(item_kind), 1) => {
            let raw_items = raw_items.pop().unwrap_or_default();
            let threads = if input_len >= PARALLEL_BYTES { threads() } else { 1 };
            parallel_ordered(
                &raw_items,
                threads,
                |i, raw| {
                    let mut out = Vec::new();
                    let item_origin = Origin { item: Some(i), ..origin.clone() };
                    match serde_json::from_str::<Node<'_>>(raw.get()) {
                        Ok(item) => super::decode_with_kind(&item, item_origin, item_kind, &mut out),
                        Err(e) => out.push(Decoded::Diagnostic(error(item_origin, None, None, format!("invalid JSON: {e}")))),
                    }
                    out
                },
                |out| out.into_iter().for_each(|d| loader.accept(d)),
            );
        }
        _ => {
            // Not a List: the object is decoded whole, its `items` parsed back.
            let Node::Map(mut entries) = head else { return };
            let mut raw_items = raw_items.into_iter();
            for (k, v) in entries.iter_mut() {
                if k == "items" && matches!(v, Node::Seq(s) if s.is_empty()) {
                    let items: Result<Vec<Node<'_>>, _> =
                        raw_items.next().unwrap_or_default().into_iter().map(|r| serde_json::from_str(r.get())).collect();
                    match items {
                        Ok(items) => *v = Node::Seq(items),
                        Err(e) => {
                            loader.accept(Decoded::Diagnostic(error(origin, None, None, format!("invalid JSON: {e}"))));
                            return;
                        }
                    }
                }
            }
            decode(&Node::Map(entries), origin, &mut out);
            out.into_iter().for_each(|d| loader.accept(d));
        }
    }
}
