//! A fast reader for the block-style YAML that Kubernetes manifests are written in (what kubectl, Helm and people
//! write): block mappings and sequences, compact mappings in sequence items, plain and single-line quoted
//! scalars, literal block scalars (`|`, `|-`, `|+`: kubectl's `last-applied-configuration`, ConfigMap data),
//! single-line flow collections, comments. It reads one document (a piece of the stream cut at `---`)
//! into a [`Node`] tree borrowing from the input, with no per-token allocation.
//!
//! It never guesses: anything outside that subset (anchors, aliases, tags, folded scalars `>`, multi-line
//! scalars or flow collections, complex keys, tabs, control characters, and every syntax error) is
//! [`Error::Unsupported`], and the caller reads the document with libyaml instead, which gives the same tree for
//! everything this reader accepts (differential tests below) and reports errors with their position. The reason
//! it exists: libyaml reads ~40 MB/s, most of netpol's load time; this reads the common case many times faster.

use std::borrow::Cow;

use super::node::Node;
use super::MAX_DEPTH;

#[derive(Debug, PartialEq)]
pub(crate) enum Error {
    /// Not in the subset (or not valid YAML): read the document with libyaml.
    Unsupported,
    /// Collections nested deeper than [`MAX_DEPTH`], at this 0-based line of the piece.
    TooDeep(usize),
}

type R<T> = Result<T, Error>;
use Error::Unsupported;

#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    text: &'a str,
    no: usize,
}

struct Reader<'a> {
    /// The lines that are not blank or comments.
    lines: Vec<Line<'a>>,
    pos: usize,
    /// Every line of the piece (`\r` stripped), for literal block scalars, whose blank and `#` lines are content.
    raw: Vec<&'a str>,
}

/// Every character is one libyaml accepts unquoted in a stream (printable, no tab, no byte-order mark).
fn plain_text(s: &str) -> bool {
    let ascii_ok = |b: u8| (0x20..0x7f).contains(&b) || b == b'\n' || b == b'\r';
    if s.bytes().all(ascii_ok) {
        return true;
    }
    s.chars().all(|c| match c as u32 {
        0..=0x7f => ascii_ok(c as u8),
        0x85 | 0xa0..=0xd7ff | 0xe000..=0xfefe | 0xff00..=0xfffd | 0x10000.. => true,
        _ => false,
    })
}

/// Reads one document. `Err(Unsupported)` sends it to libyaml.
pub(crate) fn parse(piece: &str) -> R<Node<'_>> {
    if !plain_text(piece) {
        return Err(Unsupported);
    }
    let mut lines = Vec::with_capacity(piece.len() / 24);
    let mut raws = Vec::with_capacity(piece.len() / 24);
    for (no, raw) in piece.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        raws.push(raw);
        if raw.contains('\r') {
            return Err(Unsupported);
        }
        let text = raw.trim_start_matches(' ');
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        lines.push(Line { indent: raw.len() - text.len(), text, no });
    }
    // The text after the last line break is no line.
    if piece.ends_with('\n') {
        raws.pop();
    }
    let mut r = Reader { lines, pos: 0, raw: raws };
    // The document start marker, alone or with a comment.
    if let Some(first) = r.lines.first() {
        if first.indent == 0 && first.text.starts_with("---") {
            let rest = first.text[3..].trim_start_matches(' ');
            if !(rest.is_empty() || rest.starts_with('#'))
                || !(first.text.len() == 3 || first.text[3..].starts_with(' '))
            {
                return Err(Unsupported);
            }
            r.pos = 1;
        }
    }
    let Some(first) = r.lines.get(r.pos).copied() else { return Ok(Node::Null) };
    if first.indent != 0 {
        return Err(Unsupported);
    }
    let node = r.block(0, 0)?;
    if r.pos != r.lines.len() {
        return Err(Unsupported);
    }
    Ok(node)
}

fn is_seq_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// The position of `a` followed by `b` in `s`.
fn find_pair(s: &str, a: u8, b: u8) -> Option<usize> {
    let bytes = s.as_bytes();
    bytes.windows(2).position(|w| w[0] == a && w[1] == b)
}

/// The text before a ` #` comment, trimmed at the end.
fn strip_comment(s: &str) -> &str {
    let cut = find_pair(s, b' ', b'#').map_or(s, |i| &s[..i]);
    cut.trim_end_matches(' ')
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<Line<'a>> {
        self.lines.get(self.pos).copied()
    }

    /// The block node whose first line is the current one, at indentation `indent`.
    fn block(&mut self, indent: usize, depth: usize) -> R<Node<'a>> {
        let Some(line) = self.peek() else { return Ok(Node::Null) };
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep(line.no));
        }
        if is_seq_item(line.text) {
            self.seq(indent, depth)
        } else if mapping_key(line.text)?.is_some() {
            self.map(indent, depth)
        } else {
            Err(Unsupported)
        }
    }

    fn map(&mut self, indent: usize, depth: usize) -> R<Node<'a>> {
        let mut entries = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent != indent || is_seq_item(line.text) {
                break;
            }
            let Some((key, rest)) = mapping_key(line.text)? else { return Err(Unsupported) };
            self.pos += 1;
            let value = self.value_after(rest, indent, line.no, depth, true)?;
            entries.push((key, value));
        }
        // A line indented deeper than the mapping that belongs to no entry: a continuation or an error.
        if self.peek().is_some_and(|l| l.indent > indent) {
            return Err(Unsupported);
        }
        Ok(Node::Map(entries))
    }

    fn seq(&mut self, indent: usize, depth: usize) -> R<Node<'a>> {
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent != indent || !is_seq_item(line.text) {
                break;
            }
            let after = line.text.get(1..).unwrap_or("");
            let content = after.trim_start_matches(' ');
            if content.is_empty() || content.starts_with('#') {
                self.pos += 1;
                items.push(self.nested(indent, depth, false)?);
                continue;
            }
            if is_seq_item(content) {
                return Err(Unsupported);
            }
            if mapping_key(content)?.is_some() {
                // A compact mapping: its keys sit at the column of the first one.
                let column = indent + 1 + (after.len() - content.len());
                self.lines[self.pos] = Line { indent: column, text: content, no: line.no };
                items.push(self.map(column, depth + 1)?);
                continue;
            }
            self.pos += 1;
            items.push(self.value_after(content, indent, line.no, depth, false)?);
        }
        if self.peek().is_some_and(|l| l.indent > indent) {
            return Err(Unsupported);
        }
        Ok(Node::Seq(items))
    }

    /// The block nested under an entry with no inline value, or null.
    fn nested(&mut self, indent: usize, depth: usize, in_map: bool) -> R<Node<'a>> {
        match self.peek() {
            Some(l) if l.indent > indent => self.block(l.indent, depth + 1),
            // `key:` followed by `- item` at the key's own indentation.
            Some(l) if in_map && l.indent == indent && is_seq_item(l.text) => self.seq(indent, depth + 1),
            _ => Ok(Node::Null),
        }
    }

    /// The value of an entry whose inline text (after `key:` or `- `) is `rest`.
    fn value_after(&mut self, rest: &'a str, indent: usize, no: usize, depth: usize, in_map: bool) -> R<Node<'a>> {
        let rest = rest.trim_start_matches(' ');
        if rest.is_empty() || rest.starts_with('#') {
            return self.nested(indent, depth, in_map);
        }
        if let Some(header) = rest.strip_prefix('|') {
            return self.literal(header, indent, no);
        }
        let node = inline(rest, no, depth + 1)?;
        // More lines indented under a scalar: a multi-line scalar (or an error) for libyaml.
        if self.peek().is_some_and(|l| l.indent > indent) {
            return Err(Unsupported);
        }
        Ok(node)
    }
}

impl<'a> Reader<'a> {
    /// A literal block scalar (`|`, `|-`, `|+`) whose header is on raw line `no`, under an entry at `indent`: its
    /// lines are the raw lines after it indented like its first line (blank lines included), less that
    /// indentation, each ending in a line break; the last line break and trailing blank lines are clipped, stripped
    /// (`-`) or kept (`+`). Explicit indentation, leading blank lines and an empty block go to libyaml.
    fn literal(&mut self, header: &str, indent: usize, no: usize) -> R<Node<'a>> {
        let (chomp, rest) = match header.as_bytes().first() {
            Some(b'-') => (Chomp::Strip, &header[1..]),
            Some(b'+') => (Chomp::Keep, &header[1..]),
            _ => (Chomp::Clip, header),
        };
        let rest = rest.trim_start_matches(' ');
        if !(rest.is_empty() || (rest.starts_with('#') && header.len() > rest.len())) {
            return Err(Unsupported);
        }
        let lines = self.raw.get(no + 1..).unwrap_or_default();
        let first = lines.first().ok_or(Unsupported)?;
        let m = first.len() - first.trim_start_matches(' ').len();
        if m <= indent || first.trim_start_matches(' ').is_empty() {
            return Err(Unsupported);
        }
        let mut text = String::new();
        let mut used = 0;
        for line in lines {
            let body = line.trim_start_matches(' ');
            let ind = line.len() - body.len();
            if body.is_empty() {
                // A blank line: a line break, and the spaces beyond the block's indentation.
                text.push_str(line.get(m..).unwrap_or(""));
                text.push('\n');
            } else if ind >= m {
                text.push_str(&line[m..]);
                text.push('\n');
            } else if ind > indent {
                // Less indented than the block but inside the entry: an error or a comment for libyaml to judge.
                return Err(Unsupported);
            } else {
                break;
            }
            used += 1;
        }
        // Blank lines at the end of the piece (before the next `---`) are not the block's: libyaml decides.
        if no + 1 + used >= self.raw.len()
            && lines.get(..used).is_some_and(|l| l.last().is_some_and(|l| l.trim().is_empty()))
        {
            return Err(Unsupported);
        }
        let content = text.trim_end_matches('\n').len();
        match chomp {
            Chomp::Strip => text.truncate(content),
            Chomp::Clip => text.truncate((content + 1).min(text.len())),
            Chomp::Keep => {}
        }
        // Skip the lines the block used.
        let last = no + used;
        while self.peek().is_some_and(|l| l.no <= last) {
            self.pos += 1;
        }
        Ok(Node::Str(Cow::Owned(text)))
    }
}

#[derive(Clone, Copy)]
enum Chomp {
    Clip,
    Strip,
    Keep,
}

/// `key: rest` or `key:` at the start of a line: the key and the text after the colon. `None` when the line is
/// not a mapping entry.
fn mapping_key(text: &str) -> R<Option<(Cow<'_, str>, &str)>> {
    let first = text.as_bytes().first().copied().unwrap_or(b' ');
    if first == b'"' || first == b'\'' {
        let (key, end) = quoted(text)?;
        let after = &text[end..];
        return Ok(match after.strip_prefix(':') {
            Some(rest) if rest.is_empty() || rest.starts_with(' ') => Some((key, rest)),
            _ => None,
        });
    }
    if b"-?:,[]{}#&*!|>%@`".contains(&first) {
        return Ok(None);
    }
    let colon = text.match_indices(':').find(|(i, _)| matches!(text.as_bytes().get(i + 1), None | Some(b' ')));
    let Some((i, _)) = colon else { return Ok(None) };
    let key = &text[..i];
    if find_pair(key, b' ', b'#').is_some() || key.ends_with(' ') {
        return Err(Unsupported);
    }
    // Keys that are null, or that a YAML 1.1 reader would read differently, go to libyaml.
    if key.is_empty() || matches!(key, "~" | "null" | "Null" | "NULL" | "<<") {
        return Err(Unsupported);
    }
    Ok(Some((Cow::Borrowed(key), &text[i + 1..])))
}

/// An inline value in block context: a flow collection, a quoted scalar or a plain scalar, then at most a comment.
fn inline(text: &str, no: usize, depth: usize) -> R<Node<'_>> {
    let first = text.as_bytes().first().copied().unwrap_or(b' ');
    match first {
        b'[' | b'{' => {
            let mut i = 0;
            let node = flow(text, &mut i, no, depth)?;
            end_of_line(&text[i..])?;
            Ok(node)
        }
        b'"' | b'\'' => {
            let (s, end) = quoted(text)?;
            end_of_line(&text[end..])?;
            Ok(Node::Str(s))
        }
        _ => {
            if b"&*!|>%@`,]}#".contains(&first)
                || (matches!(first, b'-' | b'?' | b':') && text.len() == 1)
                || (matches!(first, b'-' | b'?' | b':') && text.as_bytes().get(1) == Some(&b' '))
            {
                return Err(Unsupported);
            }
            let value = strip_comment(text);
            // `a: b: c` is an error; `key: value:` too.
            if find_pair(value, b':', b' ').is_some() || value.ends_with(':') {
                return Err(Unsupported);
            }
            Ok(Node::Plain(Cow::Borrowed(value)))
        }
    }
}

/// Only spaces and a comment may follow a value on its line.
fn end_of_line(rest: &str) -> R<()> {
    let rest = rest.trim_start_matches(' ');
    if rest.is_empty() || (rest.starts_with('#') && rest.len() < usize::MAX) {
        // A comment needs a space before it: `"a"#x` is an error.
        Ok(())
    } else {
        Err(Unsupported)
    }
}

/// A single-line quoted scalar at the start of `text`: its value and the index after the closing quote.
fn quoted(text: &str) -> R<(Cow<'_, str>, usize)> {
    let b = text.as_bytes();
    let q = b.first().copied().ok_or(Unsupported)?;
    let mut i = 1;
    let mut owned: Option<String> = None;
    let mut start = 1;
    while let Some(&c) = b.get(i) {
        if c == q {
            if q == b'\'' && b.get(i + 1) == Some(&b'\'') {
                let o = owned.get_or_insert_with(String::new);
                o.push_str(&text[start..=i]);
                i += 2;
                start = i;
                continue;
            }
            let value = match owned {
                Some(mut o) => {
                    o.push_str(&text[start..i]);
                    Cow::Owned(o)
                }
                None => Cow::Borrowed(&text[start..i]),
            };
            return Ok((value, i + 1));
        }
        if q == b'"' && c == b'\\' {
            let o = owned.get_or_insert_with(String::new);
            o.push_str(&text[start..i]);
            let (ch, len) = escape(&text[i + 1..])?;
            o.push(ch);
            i += 1 + len;
            start = i;
            continue;
        }
        i += 1;
    }
    // No closing quote on this line: a multi-line scalar.
    Err(Unsupported)
}

/// A double-quoted escape after the backslash: the character and the length of the escape.
fn escape(s: &str) -> R<(char, usize)> {
    let c = s.as_bytes().first().copied().ok_or(Unsupported)?;
    let simple = match c {
        b'0' => '\0',
        b'a' => '\u{7}',
        b'b' => '\u{8}',
        b't' => '\t',
        b'n' => '\n',
        b'v' => '\u{b}',
        b'f' => '\u{c}',
        b'r' => '\r',
        b'e' => '\u{1b}',
        b' ' => ' ',
        b'"' => '"',
        b'/' => '/',
        b'\\' => '\\',
        b'N' => '\u{85}',
        b'_' => '\u{a0}',
        b'L' => '\u{2028}',
        b'P' => '\u{2029}',
        b'x' | b'u' | b'U' => {
            let n = match c {
                b'x' => 2,
                b'u' => 4,
                _ => 8,
            };
            let hex = s.get(1..1 + n).ok_or(Unsupported)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Unsupported);
            }
            let v = u32::from_str_radix(hex, 16).map_err(|_| Unsupported)?;
            return char::from_u32(v).map(|ch| (ch, 1 + n)).ok_or(Unsupported);
        }
        _ => return Err(Unsupported),
    };
    Ok((simple, 1))
}

fn skip_spaces(b: &[u8], i: &mut usize) {
    while b.get(*i) == Some(&b' ') {
        *i += 1;
    }
}

/// A flow node at `*i` (single line).
fn flow<'a>(text: &'a str, i: &mut usize, no: usize, depth: usize) -> R<Node<'a>> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(no));
    }
    let b = text.as_bytes();
    skip_spaces(b, i);
    match b.get(*i).copied() {
        Some(b'[') => {
            *i += 1;
            let mut items = Vec::new();
            loop {
                skip_spaces(b, i);
                if b.get(*i) == Some(&b']') {
                    *i += 1;
                    return Ok(Node::Seq(items));
                }
                let item = flow(text, i, no, depth + 1)?;
                skip_spaces(b, i);
                match b.get(*i) {
                    // `[a: b]` is a single-pair mapping: libyaml's.
                    Some(b',') => *i += 1,
                    Some(b']') => {}
                    _ => return Err(Unsupported),
                }
                items.push(item);
            }
        }
        Some(b'{') => {
            *i += 1;
            let mut entries = Vec::new();
            loop {
                skip_spaces(b, i);
                if b.get(*i) == Some(&b'}') {
                    *i += 1;
                    return Ok(Node::Map(entries));
                }
                let key = match flow(text, i, no, depth + 1)? {
                    Node::Plain(k) => {
                        if k.is_empty() || matches!(k.as_ref(), "~" | "null" | "Null" | "NULL" | "<<") {
                            return Err(Unsupported);
                        }
                        k
                    }
                    Node::Str(k) => k,
                    _ => return Err(Unsupported),
                };
                skip_spaces(b, i);
                if b.get(*i) != Some(&b':') {
                    return Err(Unsupported);
                }
                *i += 1;
                if !matches!(b.get(*i), Some(b' ' | b',' | b'}')) {
                    return Err(Unsupported);
                }
                skip_spaces(b, i);
                let value = match b.get(*i) {
                    Some(b',' | b'}') => Node::Null,
                    _ => flow(text, i, no, depth + 1)?,
                };
                skip_spaces(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(b'}') => {}
                    _ => return Err(Unsupported),
                }
                entries.push((key, value));
            }
        }
        Some(b'"' | b'\'') => {
            let (s, len) = quoted(&text[*i..])?;
            *i += len;
            Ok(Node::Str(s))
        }
        Some(c) if !b"&*!|>%@`,]}#-?:".contains(&c) => {
            // A plain scalar in flow context ends at `,`, brackets, `: ` or ` #`.
            let start = *i;
            while let Some(&c) = b.get(*i) {
                match c {
                    b',' | b'[' | b']' | b'{' | b'}' => break,
                    b':' if matches!(b.get(*i + 1), None | Some(b' ' | b',' | b']' | b'}')) => break,
                    b'#' if b.get(i.wrapping_sub(1)) == Some(&b' ') => return Err(Unsupported),
                    _ => *i += 1,
                }
            }
            let s = text[start..*i].trim_end_matches(' ');
            if s.is_empty() || matches!(b.get(*i), Some(b'[' | b'{')) {
                return Err(Unsupported);
            }
            Ok(Node::Plain(Cow::Borrowed(s)))
        }
        _ => Err(Unsupported),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::manual_is_multiple_of)]
mod tests {
    use super::*;
    use crate::load::node::NodeDe;
    use serde::Deserialize;

    /// A deterministic pseudo-random sequence for the generated documents.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// A tree as JSON, with plain scalars resolved (NaN and big integers as text).
    fn json(n: &Node<'_>) -> String {
        match serde_json::Value::deserialize(NodeDe(n)) {
            Ok(v) => v.to_string(),
            Err(e) => format!("error: {e}"),
        }
    }

    fn libyaml(text: &str) -> Option<String> {
        let de = serde_yaml_ng::Deserializer::from_str(text).next()?;
        Node::deserialize(de).ok().map(|n| json(&n))
    }

    /// Whenever the fast reader accepts a document, libyaml reads the same tree from it.
    fn agrees(text: &str) -> bool {
        if let Ok(n) = parse(text) {
            assert_eq!(Some(json(&n)), libyaml(text), "{text:?}");
            return true;
        }
        false
    }

    #[test]
    fn accepts_manifest_yaml_and_agrees_with_libyaml() {
        let cases = [
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\n",
            "---\na: 1\n",
            "--- # comment\na: 1\n",
            "a:\n- 1\n- two\n- '3'\nb: x\n",
            "a:\n  - 1\n  - x: 1\n    y: [1, 2]\n  -\n    z: 3\n",
            "spec:\n  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {app: web}}\n      namespaceSelector: {}\n    ports:\n    - {port: 80, protocol: TCP}\n",
            "a: \"esc \\\" \\\\ \\n \\t \\u00e9 \\x41\"\nb: 'it''s'\n",
            "a: b # comment\n# full line\nc: d#not-comment\n",
            "k: 'x' # c\n",
            "\"quoted key\": 1\n'single': 2\n",
            "a: {b: [1, {c: d}], e: 'f', \"g\": null}\n",
            "a: [ ]\nb: { }\nc: [a, b, ]\n",
            "n: ~\nt: true\nf: False\ni: 0x1F\no: 0o17\nz: 007\ne: 1e3\ninf: .inf\nneg: -12\n",
            "big: 18446744073709551616\n",
            "url: http://x.y/z?a=b\ntime: 10:00\nip: fd00::1\n",
            "a:\n  b:\n    c:\n      d: 1\n  e: 2\n",
            "- a\n- b\n",
            "- a: 1\n  b: 2\n- c: 3\n",
            "a: 1\r\nb: 2\r\n",
            "empty:\nnext: 1\n",
            "a: [1, 2]\n",
            "x: é ü 日本\n",
            "a: -1\nb: -x\nc: ':x'\n",
            "",
            "# only a comment\n",
            "---\n",
            "a: |\n  line 1\n  # not a comment\n\n    indented\nb: 2\n",
            "a: |-\n  x\n\nb: 2\n",
            "a: |+\n  x\n\nb: 2\n",
            "a: | # comment\n  x\n",
            "- |\n  in a sequence\n- b\n",
            "- k: |\n    in a compact mapping\n  j: 1\n",
            "metadata:\n  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: |\n      {\"apiVersion\":\"v1\",\"kind\":\"Pod\"}\n  name: x\n",
            // managedFields as kubectl prints them.
            "managedFields:\n- apiVersion: v1\n  fieldsType: FieldsV1\n  fieldsV1:\n    f:metadata:\n      f:labels:\n        .: {}\n        f:app: {}\n    f:spec:\n      f:containers:\n        k:{\"name\":\"nginx\"}:\n          .: {}\n          f:ports:\n            k:{\"containerPort\":80,\"protocol\":\"TCP\"}:\n              .: {}\n  manager: kubectl-client-side-apply\n  operation: Update\n  time: \"2024-01-01T00:00:00Z\"\n",
        ];
        for c in cases {
            let n = parse(c);
            assert!(n.is_ok(), "not accepted: {c:?}: {n:?}");
            agrees(c);
        }
    }

    #[test]
    fn leaves_everything_else_to_libyaml() {
        let cases = [
            "a: &x 1\nb: *x\n",
            "a: !tag 1\n",
            "a: |2\n   text\n",
            "a: |\n\n  leading blank\n",
            "a: |\nb: 1\n",
            "a: |\n    x\n  y\n",
            "a: |x\n  text\n",
            "a: >\n  text\n",
            "a: multi\n  line\n",
            "a: 'multi\n  line'\n",
            "a: [1,\n  2]\n",
            "? complex\n: key\n",
            "a: b: c\n",
            "a:\tb\n",
            "  a: 1\nb: 2\n",
            "a: 1\n  b: 2\n",
            "- - a\n",
            "a: \"bad \\q escape\"\n",
            "a: 'x'y\n",
            "--- a\n",
            "a: [b: c]\n",
            "{a: 1}\n",
            "a: {b}\n",
            "<<: {a: 1}\n",
            "a: \u{1}\n",
            "a: \u{feff}x\n",
            "a: -\n",
            "a: @x\n",
        ];
        for c in cases {
            assert_eq!(parse(c).err(), Some(Unsupported), "{c:?}");
        }
    }

    /// Literal block scalars in every position, with blank lines, deeper lines, `#` lines and each chomping:
    /// whenever the fast reader accepts one, libyaml reads the same string.
    #[test]
    fn literal_blocks_agree_with_libyaml() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let header = ["|", "|-", "|+", "| # c", "|-  "][(next() % 5) as usize];
            let (prefix, indent) = match next() % 3 {
                0 => ("a: ".to_string(), 0),
                1 => ("- ".to_string(), 0),
                _ => ("- k: ".to_string(), 2),
            };
            let m = indent + 1 + (next() % 3) as usize;
            let mut doc = format!("{prefix}{header}\n");
            for _ in 0..1 + next() % 5 {
                match next() % 5 {
                    0 => doc.push('\n'),
                    1 => doc.push_str(&format!("{}#x\n", " ".repeat(m))),
                    2 => doc.push_str(&format!("{}deeper: [1]\n", " ".repeat(m + 2))),
                    3 => doc.push_str(&format!("{}\n", " ".repeat(m + (next() % 4) as usize))),
                    _ => doc.push_str(&format!("{}text {}\n", " ".repeat(m), next() % 100)),
                }
            }
            match next() % 3 {
                0 => doc.push_str(if prefix == "- " {
                    "- next\n"
                } else if indent == 2 {
                    "  j: 1\n"
                } else {
                    "b: 1\n"
                }),
                1 => doc.push_str("# trailing comment\n"),
                _ => {}
            }
            accepted += usize::from(agrees(&doc));
        }
        assert!(accepted > 5_000, "{accepted}");
    }

    #[test]
    fn deep_nesting_is_refused_early() {
        let deep = format!("a: {}\n", "[".repeat(MAX_DEPTH + 10));
        assert!(matches!(parse(&deep), Err(Error::TooDeep(0))));
        let deep = format!("a: {}1{}\n", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        agrees(&deep);
    }

    /// Random documents built from manifest-like pieces, mutated byte by byte: whenever the fast reader
    /// accepts one, libyaml reads the same tree.
    #[test]
    fn random_documents_agree_with_libyaml() {
        let atoms = [
            "|\n  lit\n",
            "|-\n    lit\n\n",
            "|+\n  lit\n\n",
            "a",
            "b-c",
            "1",
            "-2",
            "0x10",
            "007",
            "1.5",
            "true",
            "null",
            "~",
            "'q'",
            "\"d\"",
            "''",
            "x y",
            "10.0.0.0/8",
            "{}",
            "[]",
            "{k: v}",
            "[1, x]",
            "'it''s'",
            "\"\\u00e9\"",
            ".inf",
            "1e400",
            "- ",
            ":",
            "#c",
            " #c",
            "[",
            "{a: [b, {c: d}]}",
        ];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for _ in 0..100_000 {
            let mut doc = String::new();
            let lines = 1 + next() % 6;
            for _ in 0..lines {
                let indent = (next() % 3) as usize * 2;
                doc.push_str(&" ".repeat(indent));
                if next() % 3 == 0 {
                    doc.push_str("- ");
                }
                let a = atoms[(next() % atoms.len() as u64) as usize];
                let b = atoms[(next() % atoms.len() as u64) as usize];
                match next() % 3 {
                    0 => doc.push_str(&format!("{a}: {b}")),
                    1 => doc.push_str(&format!("{a}:")),
                    _ => doc.push_str(b),
                }
                doc.push('\n');
            }
            if next() % 4 == 0 {
                let bytes: Vec<u8> = doc.bytes().collect();
                let at = (next() % bytes.len() as u64) as usize;
                let mut m = doc[..].to_string();
                if doc.is_char_boundary(at) {
                    m.insert(at, [' ', ':', '-', '#', '\'', '"', '[', '\n'][(next() % 8) as usize]);
                }
                doc = m;
            }
            accepted += usize::from(agrees(&doc));
        }
        // The comparison must have had something to compare.
        assert!(accepted > 4_000, "{accepted}");
    }
}
