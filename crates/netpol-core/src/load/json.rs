//! JSON inputs: one value or a stream of values (each a document). A `kind: List` is read item by item: the
//! items are kept as raw text slices while the list is scanned, then each is parsed and decoded on its own (on
//! every core for large inputs), so a 50 MB `kubectl get -o json` list never becomes one tree in memory.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::node::{Node, NodeVisitor};
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

/// Reads a value of the top level (an object's `items` arrays kept raw) or of its `items` key (an array kept as
/// its elements' raw texts, one scan); everything else is an ordinary tree.
#[derive(Clone, Copy, PartialEq)]
enum Level {
    Top,
    Items,
}

/// What [`Level`] reads: one of the two shapes, or a tree.
enum Read<'a> {
    Tree(Node<'a>),
    Object(Vec<(Cow<'a, str>, Entry<'a>)>),
    Items(Vec<&'a RawValue>),
}

impl<'de> serde::de::DeserializeSeed<'de> for Level {
    type Value = Read<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Read<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level {
    type Value = Read<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Read<'de>, A::Error> {
        if self == Level::Items {
            return NodeVisitor.visit_map(map).map(Read::Tree);
        }
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            let e = if k == "items" {
                match map.next_value_seed(Level::Items)? {
                    Read::Items(items) => Entry::Items(items),
                    Read::Tree(n) => Entry::Node(n),
                    Read::Object(_) => return Err(serde::de::Error::custom("unexpected object")),
                }
            } else {
                Entry::Node(map.next_value()?)
            };
            entries.push((k, e));
        }
        Ok(Read::Object(entries))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Read<'de>, A::Error> {
        if self == Level::Top {
            return NodeVisitor.visit_seq(seq).map(Read::Tree);
        }
        let mut items = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            items.push(raw);
        }
        Ok(Read::Items(items))
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Read<'de>, E> {
        NodeVisitor.visit_borrowed_str(v).map(Read::Tree)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Read<'de>, E> {
        NodeVisitor.visit_str(v).map(Read::Tree)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Read<'de>, E> {
        NodeVisitor.visit_u64(v).map(Read::Tree)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Read<'de>, E> {
        NodeVisitor.visit_i64(v).map(Read::Tree)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Read<'de>, E> {
        NodeVisitor.visit_f64(v).map(Read::Tree)
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Read<'de>, E> {
        NodeVisitor.visit_bool(v).map(Read::Tree)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Read<'de>, E> {
        NodeVisitor.visit_unit().map(Read::Tree)
    }
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match d.deserialize_any(Level::Top)? {
            Read::Object(entries) => Top::Object(entries),
            Read::Tree(n) => Top::Other(n),
            // The top level reads arrays as trees; an array document is "not an object" either way.
            Read::Items(_) => Top::Other(Node::Seq(Vec::new())),
        })
    }
}

/// Reads `text` as JSON; false when its first value is not JSON (a YAML flow mapping also starts with `{`), in
/// which case nothing was loaded and the caller reads it as YAML.
pub(super) fn add_json(loader: &mut Loader, name: &str, text: &str) -> bool {
    let file: std::sync::Arc<str> = name.into();
    let origin = |document| Origin { file: file.clone(), document, item: None };
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
                    decode_item(raw.get(), item_origin, item_kind, &mut out);
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
                    let items: Result<Vec<Node<'_>>, _> = raw_items
                        .next()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|r| serde_json::from_str(r.get()))
                        .collect();
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

/// What decides how a List item is decoded, read without building its tree.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "apiVersion", borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    metadata: Option<EnvelopeMeta<'a>>,
    spec: Option<EnvelopeSpec>,
    items: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct EnvelopeMeta<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    namespace: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EnvelopeSpec {
    template: Option<serde::de::IgnoredAny>,
    #[serde(rename = "jobTemplate")]
    job_template: Option<EnvelopeJob>,
}

#[derive(Deserialize)]
struct EnvelopeJob {
    spec: Option<EnvelopeJobSpec>,
}

#[derive(Deserialize)]
struct EnvelopeJobSpec {
    template: Option<serde::de::IgnoredAny>,
}

/// The envelope of an item, read from the start of its text alone when it begins as `kubectl` writes objects:
/// `apiVersion` and `kind` (in either order, plain strings), then `metadata`. Only for a kind that needs nothing
/// else (no pod template to look for, not a list); `None` sends the item the general way (the envelope read from
/// the whole text), which gives the same outcome, only slower.
fn quick_head(raw: &str) -> Option<Envelope<'_>> {
    let mut p = Prefix { b: raw.as_bytes(), at: 0 };
    p.byte(b'{')?;
    let (k1, v1) = (p.string()?, p.colon_string()?);
    p.byte(b',')?;
    let (k2, v2) = (p.string()?, p.colon_string()?);
    let (kind, api_version) = match (k1, k2) {
        ("kind", "apiVersion") => (v1, v2),
        ("apiVersion", "kind") => (v2, v1),
        _ => return None,
    };
    let entry = super::KINDS.iter().find(|k| k.kind == kind && k.api_versions.contains(&api_version))?;
    if entry.template.is_some() || kind.ends_with("List") {
        return None;
    }
    p.byte(b',')?;
    if p.string()? != "metadata" {
        return None;
    }
    p.byte(b':')?;
    let rest = raw.get(p.at..)?;
    let meta = EnvelopeMeta::deserialize(&mut serde_json::Deserializer::from_str(rest)).ok()?;
    Some(Envelope {
        kind: Some(Cow::Borrowed(kind)),
        api_version: Some(Cow::Borrowed(api_version)),
        metadata: Some(meta),
        spec: None,
        items: None,
    })
}

/// A cursor over the start of an item's text: JSON whitespace skipped before each token; strings only without
/// escapes or control characters (anything else ends the quick read).
struct Prefix<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Prefix<'a> {
    fn skip_ws(&mut self) {
        while matches!(self.b.get(self.at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn byte(&mut self, c: u8) -> Option<()> {
        self.skip_ws();
        (self.b.get(self.at) == Some(&c)).then(|| self.at += 1)
    }

    fn string(&mut self) -> Option<&'a str> {
        self.byte(b'"')?;
        let start = self.at;
        let len = self.b.get(start..)?.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        self.at = start + len;
        self.byte(b'"')?;
        std::str::from_utf8(self.b.get(start..start + len)?).ok()
    }

    fn colon_string(&mut self) -> Option<&'a str> {
        self.byte(b':')?;
        self.string()
    }
}

/// The raw text of a JSON object, decoded straight into the typed objects.
struct RawJson<'a>(&'a str);

impl super::Source for RawJson<'_> {
    fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, (Option<String>, String)> {
        if let Ok(t) = serde_json::from_str::<T>(self.0) {
            return Ok(t);
        }
        // On an error, the tree gives the field path and the same message as every other input path.
        match serde_json::from_str::<Node<'_>>(self.0) {
            Ok(node) => super::typed(&node),
            Err(e) => Err((None, format!("invalid JSON: {e}"))),
        }
    }
}

/// A string of the envelope as a tree node.
fn text<'n>(s: &'n Option<Cow<'_, str>>) -> Option<Node<'n>> {
    s.as_ref().map(|s| Node::Str(Cow::Borrowed(s.as_ref())))
}

/// Decodes one List item from its raw text: the typed object straight from the text when the item is an ordinary
/// object, through its tree otherwise (nested lists, unusual shapes), with the same outcome.
fn decode_item(raw: &str, origin: Origin, item_kind: Option<(&str, &str)>, out: &mut Vec<Decoded>) {
    if let Some(env) = quick_head(raw).or_else(|| serde_json::from_str::<Envelope<'_>>(raw).ok()) {
        if env.items.is_none() {
            let mut head: Vec<(Cow<'_, str>, Node<'_>)> = Vec::new();
            if let Some(k) = text(&env.kind) {
                head.push((Cow::Borrowed("kind"), k));
            }
            if let Some(a) = text(&env.api_version) {
                head.push((Cow::Borrowed("apiVersion"), a));
            }
            if let Some(m) = &env.metadata {
                let mut meta = Vec::new();
                if let Some(n) = text(&m.name) {
                    meta.push((Cow::Borrowed("name"), n));
                }
                if let Some(n) = text(&m.namespace) {
                    meta.push((Cow::Borrowed("namespace"), n));
                }
                head.push((Cow::Borrowed("metadata"), Node::Map(meta)));
            }
            if let Some(s) = &env.spec {
                let present =
                    |t: &Option<serde::de::IgnoredAny>| if t.is_some() { Node::Bool(true) } else { Node::Null };
                let job = s.job_template.as_ref().and_then(|j| j.spec.as_ref()).map(|js| {
                    Node::Map(vec![(
                        Cow::Borrowed("spec"),
                        Node::Map(vec![(Cow::Borrowed("template"), present(&js.template))]),
                    )])
                });
                let mut spec = vec![(Cow::Borrowed("template"), present(&s.template))];
                if let Some(j) = job {
                    spec.push((Cow::Borrowed("jobTemplate"), j));
                }
                head.push((Cow::Borrowed("spec"), Node::Map(spec)));
            }
            super::decode_from(&Node::Map(head), &RawJson(raw), origin, item_kind, out);
            return;
        }
    }
    match serde_json::from_str::<Node<'_>>(raw) {
        Ok(item) => super::decode_with_kind(&item, origin, item_kind, out),
        Err(e) => out.push(Decoded::Diagnostic(error(origin, None, None, format!("invalid JSON: {e}")))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A List item decoded straight from its text gives exactly what its tree gives.
    fn same_both_ways(item: &serde_json::Value, kind: Option<(&str, &str)>) {
        same_both_ways_text(&serde_json::to_string(item).unwrap(), kind);
        same_both_ways_text(&serde_json::to_string_pretty(item).unwrap(), kind);
    }

    fn same_both_ways_text(raw: &str, kind: Option<(&str, &str)>) {
        let origin = Origin { file: "f".into(), document: 0, item: Some(3) };
        let mut direct = Vec::new();
        decode_item(raw, origin.clone(), kind, &mut direct);
        let mut via_tree = Vec::new();
        let node: Node<'_> = serde_json::from_str(raw).unwrap();
        super::super::decode_with_kind(&node, origin, kind, &mut via_tree);
        assert_eq!(format!("{direct:?}"), format!("{via_tree:?}"), "{raw}");
    }

    #[test]
    fn items_decode_the_same_straight_from_text() {
        let mut docs: Vec<serde_json::Value> = Vec::new();
        for f in crate::load::fixture_yaml_files() {
            let text = std::fs::read_to_string(&f).unwrap();
            for de in serde_yaml_ng::Deserializer::from_str(&text) {
                match serde_json::Value::deserialize(de) {
                    Ok(v) => docs.push(v),
                    Err(_) => break,
                }
            }
        }
        let extra = [
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"},"spec":{"containers":[{"ports":[{"containerPort":18446744073709551616}]}]}}"#,
            r#"{"kind":"NetworkPolicy","apiVersion":"networking.k8s.io/v1","metadata":{"name":"n"},"spec":{"ingress":[{"form":[]}]}}"#,
            r#"{"kind":"NetworkPolicy","apiVersion":"networking.k8s.io/v1","metadata":{"name":"n","lables":{}},"spec":{}}"#,
            r#"{"kind":"NetworkPolicy","apiVersion":"networking.k8s.io/v1","metadata":{"name":5},"spec":{}}"#,
            r#"{"kind":"networkpolicy","apiVersion":"networking.k8s.io/v1","metadata":{"name":"n"}}"#,
            r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"d"},"spec":{"template":null}}"#,
            r#"{"kind":"CronJob","apiVersion":"batch/v1","metadata":{"name":"c"},"spec":{"jobTemplate":{"spec":{}}}}"#,
            r#"{"kind":"CronJob","apiVersion":"batch/v1","metadata":{"name":"c"},"spec":{"jobTemplate":{"spec":{"template":{"metadata":{"labels":{"a":"b"}}}}}}}"#,
            r#"{"kind":"List","items":[]}"#,
            r#"{"kind":5}"#,
            r#"{"apiVersion":"v1","metadata":{"name":"implicit-kind"}}"#,
            r#"{"kind":"Pod","apiVersion":"v2","metadata":{"name":"p"}}"#,
            r#"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"n"},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}"#,
            r#"{"kind":"Pod","kind":"Pod","apiVersion":"v1","metadata":{"name":"dup"}}"#,
            r#"[1, 2]"#,
            r#"null"#,
        ];
        docs.extend(extra.iter().map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap()));
        assert!(docs.len() > 50, "{}", docs.len());
        for d in &docs {
            same_both_ways(d, None);
            same_both_ways(d, Some(("Pod", "v1")));
        }
    }

    /// Items that begin as `kubectl` writes them are read from their first keys alone; the outcome is the same as
    /// the general way's, also when what follows is odd (keys repeated, wrong types, escapes).
    #[test]
    fn quick_head_items_decode_the_same() {
        let texts = [
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"n"},"spec":{},"kind":"NetworkPolicy"}"#,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"metadata":{"name":"q"}}"#,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":5}"#,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":5}}"#,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","name":"q"}}"#,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p\u0041","labels":{"a":"b"}}}"#,
            r#"{"apiVersion":"v1","kind":"P\u006fd","metadata":{"name":"p"}}"#,
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p"},"apiVersion":"v2"}"#,
            r#"{"kind":"Pod","apiVersion":"v2","metadata":{"name":"p"}}"#,
            r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"d"}}"#,
            r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}"#,
            r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"n","lables":{}},"spec":{}}"#,
            r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"n"},"spec":{"ingress":[{"form":[]}]}}"#,
            r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":null,"spec":{}}"#,
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"n"},"metadata":{}}"#,
            "{ \"apiVersion\" :\t\"v1\" ,\r\n \"kind\" : \"Pod\" , \"metadata\" : { \"name\" : \"p\" } }",
        ];
        for t in texts {
            same_both_ways_text(t, None);
            same_both_ways_text(t, Some(("Pod", "v1")));
        }
        // The quick read is taken where it should be (and not elsewhere).
        let quick = quick_head(r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}"#);
        assert!(quick.is_some_and(|e| e.metadata.and_then(|m| m.name).as_deref() == Some("p")));
        assert!(quick_head(r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"d"}}"#).is_none());
        assert!(quick_head(r#"{"kind":"PodList","apiVersion":"v1","metadata":{}}"#).is_none());
        assert!(quick_head(r#"{"apiVersion":"v1","kind":"P\u006fd","metadata":{}}"#).is_none());
    }
}
