//! YAML inputs: the stream is cut before every document start marker (`---` at the start of a line, which YAML
//! forbids inside any content), and each document is read on its own, so a syntax error or an unreadable value
//! costs that document only and reading resumes at the next marker. Documents are read by the fast reader of
//! [`super::fast_yaml`] when they stay within the block-style subset it accepts, by libyaml (serde_yaml_ng)
//! otherwise; both give the same tree (differential tests). Large inputs are read on every core.

use super::node::Node;
use super::{decode, error, fast_yaml, parallel_ordered, threads, Decoded, Loader, MAX_DEPTH, PARALLEL_BYTES};
use crate::model::Origin;

/// The text cut before each document start marker: a line that begins with `---` followed by a space, a tab or
/// the line end. `None` when the text has directives (`%...`) or document end markers (`...`), whose effect
/// across pieces this does not model. Each piece comes with the number of lines before it.
pub(crate) fn split_yaml_documents(text: &str) -> Option<Vec<(usize, &str)>> {
    // The cuts are at line starts, which are character boundaries.
    let ranges = split_documents(text.as_bytes())?;
    Some(ranges.into_iter().filter_map(|(line, r)| text.get(r).map(|p| (line, p))).collect())
}

/// [`split_yaml_documents`] on bytes (the markers are ASCII): byte ranges of the pieces, with the number of lines
/// before each.
pub(crate) fn split_documents(text: &[u8]) -> Option<Vec<(usize, std::ops::Range<usize>)>> {
    let is_marker = |line: &[u8], m: &[u8]| {
        line.starts_with(m) && line.get(m.len()).is_none_or(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
    };
    let mut pieces = Vec::new();
    let (mut start, mut pos, mut line_no, mut start_line) = (0, 0, 0, 0);
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"%") || is_marker(line, b"...") {
            return None;
        }
        if is_marker(line, b"---") && pos > start {
            pieces.push((start_line, start..pos));
            start = pos;
            start_line = line_no;
        }
        pos += line.len();
        line_no += 1;
    }
    if pos > start {
        pieces.push((start_line, start..pos));
    }
    // Comments and blank lines before the first marker of a longer stream are no document.
    let blank = |p: &[u8]| p.split(|&b| b == b'\n').all(|l| matches!(l.trim_ascii().first(), None | Some(b'#')));
    if pieces.len() > 1 && pieces.first().is_some_and(|(_, r)| text.get(r.clone()).is_some_and(blank)) {
        pieces.remove(0);
    }
    Some(pieces)
}

/// A YAML input that is not valid UTF-8: each document is checked on its own, so the bytes that are not text cost
/// only their document.
pub(super) fn add_yaml_bytes(loader: &mut Loader, name: &str, bytes: &[u8]) -> bool {
    let Some(pieces) = split_documents(bytes) else { return false };
    let file: std::sync::Arc<str> = name.into();
    for (doc, (first_line, range)) in pieces.into_iter().enumerate() {
        let origin = Origin { file: file.clone(), document: doc, item: None };
        let mut out = Vec::new();
        match std::str::from_utf8(bytes.get(range).unwrap_or_default()) {
            Ok(piece) => match parse_document(piece, first_line) {
                Ok(node) => super::decode_document(&node, piece, origin, &mut out),
                Err(msg) => out.push(Decoded::Diagnostic(error(origin, None, None, format!("invalid YAML: {msg}")))),
            },
            Err(e) => {
                let msg = format!("document is not UTF-8: {e} (from line {})", first_line + 1);
                out.push(Decoded::Diagnostic(error(origin, None, None, msg)));
            }
        }
        out.into_iter().for_each(|d| loader.accept(d));
    }
    true
}

pub(super) fn add_yaml(loader: &mut Loader, name: &str, text: &str) {
    let file: std::sync::Arc<str> = name.into();
    let origin = |document| Origin { file: file.clone(), document, item: None };
    let Some(pieces) = split_yaml_documents(text) else {
        for (doc, d) in stream_documents(text).into_iter().enumerate() {
            let mut out = Vec::new();
            match d {
                Ok(node) => decode(&node, origin(doc), &mut out),
                Err(msg) => {
                    out.push(Decoded::Diagnostic(error(origin(doc), None, None, format!("invalid YAML: {msg}"))))
                }
            }
            out.into_iter().for_each(|d| loader.accept(d));
        }
        return;
    };
    let threads = if text.len() >= PARALLEL_BYTES { threads() } else { 1 };
    parallel_ordered(
        &pieces,
        threads,
        |doc, (first_line, piece)| {
            let mut out = Vec::new();
            match parse_document(piece, *first_line) {
                Ok(node) => super::decode_document(&node, piece, origin(doc), &mut out),
                Err(msg) => {
                    out.push(Decoded::Diagnostic(error(origin(doc), None, None, format!("invalid YAML: {msg}"))))
                }
            }
            out
        },
        |out| out.into_iter().for_each(|d| loader.accept(d)),
    );
}

/// Reads one document (a piece of the stream with no other document start marker). Line numbers in messages
/// count from the start of the input (`first_line` lines precede the piece).
pub(crate) fn parse_document(piece: &str, first_line: usize) -> Result<Node<'_>, String> {
    match fast_yaml::parse(piece) {
        Ok(node) => return Ok(node),
        Err(fast_yaml::Error::TooDeep(line)) => {
            return Err(format!("nesting deeper than {MAX_DEPTH} levels at line {}", line + first_line + 1))
        }
        Err(fast_yaml::Error::Unsupported) => {}
    }
    // libyaml's scanner costs time proportional to the flow nesting depth for every token: refuse deep nesting
    // before it starts (linear scan).
    if let Some(line) = flow_depth_exceeds(piece, MAX_DEPTH) {
        return Err(format!("nesting deeper than {MAX_DEPTH} levels at line {}", line + first_line + 1));
    }
    let mut docs = serde_yaml_ng::Deserializer::from_str(piece);
    let Some(de) = docs.next() else { return Ok(Node::Null) };
    libyaml_document(de, piece.contains("<<")).map_err(|e| {
        let mut msg = e.to_string();
        if let Some(loc) = e.location() {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(stripped) = msg.strip_suffix(&suffix) {
                msg = format!("{stripped} at line {} column {}", loc.line() + first_line, loc.column());
            }
        }
        msg
    })
}

/// The documents of a stream that cannot be cut at its markers (it has directives or `...`): libyaml reads the
/// whole stream, after the linear nesting check, and cannot go on after a syntax error (the last entry then).
pub(crate) fn stream_documents(text: &str) -> Vec<Result<Node<'_>, String>> {
    if let Some(line) = flow_depth_exceeds(text, MAX_DEPTH) {
        return vec![Err(format!("nesting deeper than {MAX_DEPTH} levels at line {}", line + 1))];
    }
    let merge = text.contains("<<");
    let mut out = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        match libyaml_document(de, merge) {
            Ok(node) => out.push(Ok(node)),
            Err(e) => {
                out.push(Err(format!("{e}; the rest of this input is not read")));
                break;
            }
        }
    }
    out
}

/// One document through libyaml, with merge keys (`<<: *anchor`) applied when `merge`.
fn libyaml_document(de: serde_yaml_ng::Deserializer<'_>, merge: bool) -> Result<Node<'_>, serde_yaml_ng::Error> {
    use serde::Deserialize;
    if merge {
        let mut v = serde_yaml_ng::Value::deserialize(de)?;
        v.apply_merge()?;
        Node::deserialize(v).map(Node::into_owned)
    } else {
        Node::deserialize(de)
    }
}

/// The 0-based line where flow collections (`[`, `{`) nest deeper than `max`, if they do. Quoted scalars and
/// comments are skipped; a bracket inside a plain scalar may be counted, which can only make the answer
/// conservative.
pub(crate) fn flow_depth_exceeds(text: &str, max: usize) -> Option<usize> {
    let b = text.as_bytes();
    let (mut depth, mut line, mut i) = (0usize, 0usize, 0usize);
    // Whether the previous significant byte allows a token to start here.
    let mut token_start = true;
    while let Some(&c) = b.get(i) {
        match c {
            b'\n' => {
                line += 1;
                token_start = true;
            }
            b'#' if token_start || i == 0 || matches!(b.get(i.wrapping_sub(1)), Some(b' ' | b'\t')) => {
                while b.get(i).is_some_and(|&c| c != b'\n') {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' if token_start => {
                let q = c;
                i += 1;
                while let Some(&c) = b.get(i) {
                    if c == b'\n' {
                        line += 1;
                    }
                    if q == b'"' && c == b'\\' {
                        i += 2;
                        continue;
                    }
                    if c == q {
                        if q == b'\'' && b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                token_start = false;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(line);
                }
                token_start = true;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                token_start = false;
            }
            b',' | b':' | b'-' | b'?' => token_start = true,
            b' ' | b'\t' | b'\r' => {}
            _ => token_start = false,
        }
        i += 1;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::load::node::NodeDe;
    use serde::Deserialize;

    fn json(n: &Node<'_>) -> String {
        serde_json::Value::deserialize(NodeDe(n)).map_or_else(|e| format!("error: {e}"), |v| v.to_string())
    }

    /// Documents read piece by piece (fast reader or libyaml) are the documents of the whole stream as libyaml
    /// reads it, up to its first syntax error.
    fn same_as_stream(text: &str) -> usize {
        let mut stream = Vec::new();
        for de in serde_yaml_ng::Deserializer::from_str(text) {
            match libyaml_document(de, text.contains("<<")) {
                Ok(n) => stream.push(json(&n)),
                Err(_) => break,
            }
        }
        let Some(pieces) = split_yaml_documents(text) else { return 0 };
        let mut fast = 0;
        for (i, (first_line, piece)) in pieces.iter().enumerate() {
            fast += usize::from(fast_yaml::parse(piece).is_ok());
            match (parse_document(piece, *first_line), stream.get(i)) {
                (Ok(n), Some(s)) => assert_eq!(&json(&n), s, "document {i} of {text:?}"),
                (Ok(_), None) if i >= stream.len() => {}
                (Err(_), _) => assert!(i >= stream.len(), "document {i} of {text:?} failed alone"),
                (Ok(_), None) => {}
            }
        }
        fast
    }

    #[test]
    fn pieces_read_like_the_whole_stream() {
        let cases = [
            "a: 1\n---\nb: 2\n",
            "---\na: 1\n---\nb: 2\n",
            "# comment only\n---\na: 1\n",
            "---\n---\na: 1\n---\n",
            "--- |\n  text\n---\nb: 2\n",
            "--- {a: 1}\n--- [1, 2]\n",
            "a: |\n  ----\n  --- not at column 0\nb: 2\n",
            "a: 1\r\n--- \r\nb: 2\r\n",
            "base: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n---\nc: 3\n",
            "a: 'multi\n  line'\n---\nb: \"q\n  r\"\n",
            "kind: List\nitems:\n- a: 1\n---\nkind: Pod\n",
        ];
        for c in cases {
            same_as_stream(c);
        }
    }

    #[test]
    fn the_repository_fixtures_read_the_same_and_mostly_fast() {
        let files = crate::load::fixture_yaml_files();
        assert!(files.len() > 10, "{files:?}");
        let (mut fast, mut docs) = (0, 0);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            fast += same_as_stream(&text);
            docs += split_yaml_documents(&text).map_or(0, |p| p.len());
        }
        // The fixtures are hand-written manifests: most take the fast path.
        assert!(fast * 4 > docs * 3, "{fast} of {docs} documents read by the fast reader");
    }
}
