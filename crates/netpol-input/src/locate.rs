//! Finding the line of a field in a manifest's text, for SARIF and human output: document index (and List item)
//! plus a field path such as `spec.ingress[0].from[1].namespaceSelector` → a 1-based line number.
//!
//! Walks block-style YAML by indentation (and `- ` list entries). Flow-style YAML and JSON fall back to the
//! closest enclosing key found, then to the document's first line. Never panics.

fn indent(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

fn is_blank(l: &str) -> bool {
    let t = l.trim();
    t.is_empty() || t.starts_with('#')
}

/// (indent, content) of a line, treating `- key: v` as the mapping `key: v` two columns further in.
fn norm(l: &str) -> (usize, &str) {
    let i = indent(l);
    let rest = &l[i..];
    match rest.strip_prefix("- ") {
        Some(r) => (i + 2 + (r.len() - r.trim_start().len()), r.trim_start()),
        None => (i, rest),
    }
}

/// Line ranges `[start, end)` of the documents of a multi-document YAML text.
fn documents(lines: &[&str]) -> Vec<(usize, usize)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut content = false;
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("---") {
            if content || !docs.is_empty() {
                docs.push((start, i));
            }
            start = i + 1;
            content = false;
        } else if !is_blank(l) {
            content = true;
        }
    }
    if content || docs.is_empty() || start < lines.len() {
        docs.push((start, lines.len()));
    }
    docs
}

enum Tok<'a> {
    Key(&'a str),
    Index(usize),
}

fn tokens(path: &str) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Tok::Key(key));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(n) = idx.trim_end_matches(']').parse() {
                out.push(Tok::Index(n));
            }
        }
    }
    out
}

/// End of the block of the key on line `at` whose text starts at column `key_ind`: it holds the following lines
/// indented further, and list entries (`- `) at the key's own column, which YAML allows.
fn block_end(lines: &[&str], at: usize, end: usize, key_ind: usize) -> usize {
    for (i, l) in lines.iter().enumerate().take(end).skip(at + 1) {
        if is_blank(l) {
            continue;
        }
        let ind = indent(l);
        if ind > key_ind || (ind == key_ind && (l.trim_start().starts_with("- ") || l.trim() == "-")) {
            continue;
        }
        return i;
    }
    end
}

/// 1-based line of `field` in document `document` (and List item `item`) of `text`.
pub fn find_line(text: &str, document: usize, item: Option<usize>, field: Option<&str>) -> Option<usize> {
    Source::new(text).find_line(document, item, field)
}

/// A manifest's lines and document ranges, computed once for any number of look-ups.
pub struct Source<'t> {
    lines: Vec<&'t str>,
    docs: Vec<(usize, usize)>,
}

impl<'t> Source<'t> {
    pub fn new(text: &'t str) -> Self {
        // A byte-order mark is not part of the first line's first key.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines: Vec<&str> = text.lines().collect();
        let docs = documents(&lines);
        Source { lines, docs }
    }

    /// Like [`find_line`], on the pre-split text.
    pub fn find_line(&self, document: usize, item: Option<usize>, field: Option<&str>) -> Option<usize> {
        locate_in(&self.lines, *self.docs.get(document)?, item, field)
    }
}

fn locate_in(lines: &[&str], doc: (usize, usize), item: Option<usize>, field: Option<&str>) -> Option<usize> {
    let (mut s, mut e) = doc;
    // First non-blank line of the document: the fallback.
    let first = (s..e).find(|&i| lines.get(i).is_some_and(|l| !is_blank(l)))?;
    let mut best = first;
    let mut toks = Vec::new();
    if let Some(k) = item {
        toks.push(Tok::Key("items"));
        toks.push(Tok::Index(k));
    }
    if let Some(f) = field {
        toks.extend(tokens(f));
    }
    for t in toks {
        match t {
            Tok::Key(k) => {
                let found = (s..e).find(|&i| {
                    let l = lines.get(i).copied().unwrap_or("");
                    if is_blank(l) {
                        return false;
                    }
                    let (_, c) = norm(l);
                    c.strip_prefix(k).is_some_and(|r| r.starts_with(':'))
                        || c.strip_prefix(&format!("\"{k}\"")).is_some_and(|r| r.trim_start().starts_with(':'))
                });
                let Some(i) = found else { break };
                best = i;
                let (ind, _) = norm(lines.get(i).copied().unwrap_or(""));
                s = i + 1;
                e = block_end(lines, i, e, ind).max(s);
            }
            Tok::Index(n) => {
                let entries: Vec<usize> = (s..e)
                    .filter(|&i| lines.get(i).is_some_and(|l| l.trim_start().starts_with("- ") || l.trim() == "-"))
                    .collect();
                let Some(&first_entry) = entries.first() else { break };
                let list_ind = indent(lines.get(first_entry).copied().unwrap_or(""));
                let at_level: Vec<usize> =
                    entries.into_iter().filter(|&i| indent(lines.get(i).copied().unwrap_or("")) == list_ind).collect();
                let Some(&i) = at_level.get(n) else { break };
                best = i;
                let next = at_level.get(n + 1).copied().unwrap_or(e);
                s = i;
                e = next;
                // Keys of this entry are looked up from its own line (`- key:`) on.
                let _ = list_ind;
            }
        }
    }
    Some(best + 1)
}

#[cfg(test)]
mod tests {
    use super::find_line;

    const DOC: &str = "# header\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: a\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels: {app: x}\n    - namespaceSelector:\n        matchLabels:\n          name: b\n    ports:\n    - port: 80\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8}\n";

    #[test]
    fn a_byte_order_mark_changes_no_line() {
        let with_bom = format!("\u{feff}{}", DOC.trim_start_matches("# header\n---\n"));
        assert_eq!(find_line(&with_bom, 0, None, Some("kind")), Some(2));
        assert_eq!(find_line(&with_bom, 1, None, Some("spec.podSelector")), Some(12));
        let first_key = "\u{feff}assertions:\n  - name: a\n    expect: x\n";
        assert_eq!(find_line(first_key, 0, None, Some("assertions[0].expect")), Some(3));
    }

    #[test]
    fn finds_nested_fields() {
        assert_eq!(find_line(DOC, 0, None, None), Some(3));
        assert_eq!(find_line(DOC, 1, None, None), Some(8));
        assert_eq!(find_line(DOC, 1, None, Some("spec.podSelector")), Some(14));
        assert_eq!(find_line(DOC, 1, None, Some("spec.ingress[0]")), Some(16));
        assert_eq!(find_line(DOC, 1, None, Some("spec.ingress[0].from[1]")), Some(19));
        assert_eq!(find_line(DOC, 1, None, Some("spec.ingress[0].from[1].namespaceSelector")), Some(19));
        assert_eq!(find_line(DOC, 1, None, Some("spec.ingress[0].ports[0]")), Some(23));
        assert_eq!(find_line(DOC, 1, None, Some("spec.ingress[1].from[0].ipBlock")), Some(25));
    }

    #[test]
    fn falls_back_and_never_panics() {
        assert_eq!(find_line(DOC, 1, None, Some("spec.egress[3]")), Some(13));
        assert_eq!(find_line(DOC, 5, None, None), None);
        assert_eq!(find_line("", 0, None, Some("a.b[1]")), None);
        assert_eq!(find_line("{\"kind\": \"Pod\"}", 0, None, Some("spec")), Some(1));
        let list = "apiVersion: v1\nkind: List\nitems:\n- kind: Pod\n  metadata: {name: a}\n- kind: NetworkPolicy\n  spec:\n    podSelector: {}\n";
        assert_eq!(find_line(list, 0, Some(1), Some("spec.podSelector")), Some(8));
    }
}
