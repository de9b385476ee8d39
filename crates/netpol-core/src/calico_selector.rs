//! Calico's selector language (`projectcalico.org/v3` `selector`, `namespaceSelector`, …): parse, match, print.
//!
//! A pure module: the loader parses every Calico selector with it (`load/calico.rs` combines them as libcalico-go
//! does), and the engine matches them (`calico_peer.rs`).
//!
//! # What it follows
//!
//! The rules are those of libcalico-go's selector package in the projectcalico/calico repository at commit
//! `87c15906f20c4ca1fda55af92295e7678b0cc0b2` (the last commit touching the package there is
//! `69a90ed878d5c1f617214977593b9b85d89bfdbd`): `libcalico-go/lib/selector/tokenizer/tokenizer.go` (tokens,
//! label keys, whitespace), `libcalico-go/lib/selector/parser/parser.go` (grammar),
//! `libcalico-go/lib/selector/parser/ast.go` (evaluation and the canonical `String()` form) and `stringset.go`
//! (set literals). The tests below are translated from `parser/parser_test.go` and `tokenizer/tokenizer_test.go`.
//! This is a reimplementation from those rules, not a port of the code.
//!
//! # The language
//!
//! - Whitespace is only space and tab (a newline is an error). An empty or blank selector means `all()`.
//! - Terms: `all()`, `global()`, `has(k)`, `k == "v"`, `k != "v"`, `k contains "v"`, `k starts with "v"`,
//!   `k ends with "v"`, `k in {"a", "b"}`, `k not in {...}`. Strings are in double or single quotes, without
//!   escapes (a string runs to the next quote of its kind). `startswith`, `endswith` and `notin` are accepted
//!   as one word, as upstream does. Inside `has(`, `all(` and `global(` spaces may surround the key, but
//!   `has (k)` is not a term (upstream needs `has(` written together).
//! - Operators: `!` (binds to the one term or parenthesised expression after it; repeated `!` collapse), `&&`
//!   (binds tighter than `||`), `||`, parentheses.
//! - Label keys are 1 to 512 bytes of `a-z A-Z 0-9 _ . / -` (no further structure is checked, as upstream).
//! - A set literal may be empty (`{}`) and may end with a comma (`{"a",}`); it is sorted and deduplicated.
//!
//! # Meaning
//!
//! On a missing key, `==`, `contains`, `starts with`, `ends with` and `in` are false, while `!=` and `not in` are
//! **true** (upstream's `LabelNeValueNode` and `LabelNotInSetNode`): `a != "x"` selects endpoints without `a`.
//! `all()` and `global()` match every label set (what `global()` means about non-namespaced endpoints is the
//! caller's business, as upstream leaves it to the caller too).
//!
//! # Canonical form
//!
//! [`Expr`]'s `Display` writes upstream's `String()` form: `&&` and `||` groups in parentheses
//! (`(a == "b" && has(c))`), `!` directly before its operand, values in double quotes unless they contain one
//! (then single quotes), set members sorted, `, `-separated. One difference: upstream writes a negation of a
//! negation (from `!(!x)`) as `!!x`, which it re-reads as `x`; here it is written `!(!x)` so that
//! `parse(&e.to_string()) == Ok(e)` holds for every parsed `e`.
//!
//! # Limits and what is not implemented
//!
//! - Parentheses nest at most [`MAX_DEPTH`] deep, both as written and in the canonical form (which adds a
//!   level for each `&&`/`||` group and for a negated negation); deeper input is an error (upstream has no
//!   limit), so the canonical form of whatever parses parses again. Parsing is linear in the input, except for
//!   sorting set literals, and recursion is bounded by the limit.
//! - Error messages and offsets are this module's own (upstream's messages carry no position); which inputs are
//!   errors is upstream's.
//! - Not implemented: upstream's label restrictions (`LabelRestrictions`), visitors (`PrefixVisitor`), the
//!   unique id (hash of the canonical form), and `Validate`. A hand-built [`Expr`] whose value contains both
//!   quote characters has no textual form (its `Display` output does not parse); parsing never builds one.

use std::fmt;

use crate::labels::Labels;

/// How deep parentheses may nest.
pub const MAX_DEPTH: usize = 128;

/// Longest label key, in bytes (upstream's `MaxLabelLength`).
pub const MAX_KEY_LEN: usize = 512;

/// A parsed selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `all()`, or the empty selector.
    All,
    /// `global()`.
    Global,
    /// `has(key)`.
    Has(String),
    /// `key == "value"`.
    Eq { key: String, value: String },
    /// `key != "value"` (true when `key` is missing).
    Ne { key: String, value: String },
    /// `key contains "value"`.
    Contains { key: String, value: String },
    /// `key starts with "value"`.
    StartsWith { key: String, value: String },
    /// `key ends with "value"`.
    EndsWith { key: String, value: String },
    /// `key in {...}`; `values` sorted and without duplicates.
    In { key: String, values: Vec<String> },
    /// `key not in {...}` (true when `key` is missing); `values` sorted and without duplicates.
    NotIn { key: String, values: Vec<String> },
    /// `!operand`.
    Not(Box<Expr>),
    /// `a && b && ...` (two or more operands).
    And(Vec<Expr>),
    /// `a || b || ...` (two or more operands).
    Or(Vec<Expr>),
}

impl Expr {
    /// Whether an endpoint with these labels is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(key) => labels.contains_key(key),
            Expr::Eq { key, value } => labels.get(key) == Some(value.as_str()),
            Expr::Ne { key, value } => labels.get(key) != Some(value.as_str()),
            Expr::Contains { key, value } => labels.get(key).is_some_and(|v| v.contains(value.as_str())),
            Expr::StartsWith { key, value } => labels.get(key).is_some_and(|v| v.starts_with(value.as_str())),
            Expr::EndsWith { key, value } => labels.get(key).is_some_and(|v| v.ends_with(value.as_str())),
            Expr::In { key, values } => labels.get(key).is_some_and(|v| contains_sorted(values, v)),
            Expr::NotIn { key, values } => labels.get(key).is_none_or(|v| !contains_sorted(values, v)),
            Expr::Not(e) => !e.matches(labels),
            Expr::And(es) => es.iter().all(|e| e.matches(labels)),
            Expr::Or(es) => es.iter().any(|e| e.matches(labels)),
        }
    }
}

fn contains_sorted(values: &[String], v: &str) -> bool {
    values.binary_search_by(|x| x.as_str().cmp(v)).is_ok()
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    let q = if s.contains('"') { '\'' } else { '"' };
    write!(f, "{q}{s}{q}")
}

fn write_set(f: &mut fmt::Formatter<'_>, key: &str, op: &str, values: &[String]) -> fmt::Result {
    write!(f, "{key} {op} {{")?;
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_quoted(f, v)?;
    }
    f.write_str("}")
}

fn write_joined(f: &mut fmt::Formatter<'_>, es: &[Expr], sep: &str) -> fmt::Result {
    f.write_str("(")?;
    for (i, e) in es.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{e}")?;
    }
    f.write_str(")")
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (key, op, value) = match self {
            Expr::All => return f.write_str("all()"),
            Expr::Global => return f.write_str("global()"),
            Expr::Has(key) => return write!(f, "has({key})"),
            Expr::In { key, values } => return write_set(f, key, "in", values),
            Expr::NotIn { key, values } => return write_set(f, key, "not in", values),
            // `!!x` would read back as `x`: keep the inner negation in parentheses.
            Expr::Not(e) if matches!(**e, Expr::Not(_)) => return write!(f, "!({e})"),
            Expr::Not(e) => return write!(f, "!{e}"),
            Expr::And(es) => return write_joined(f, es, " && "),
            Expr::Or(es) => return write_joined(f, es, " || "),
            Expr::Eq { key, value } => (key, "==", value),
            Expr::Ne { key, value } => (key, "!=", value),
            Expr::Contains { key, value } => (key, "contains", value),
            Expr::StartsWith { key, value } => (key, "starts with", value),
            Expr::EndsWith { key, value } => (key, "ends with", value),
        };
        write!(f, "{key} {op} ")?;
        write_quoted(f, value)
    }
}

/// Why a selector does not parse: a message and the byte offset in the input where the problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.message, self.offset)
    }
}

impl std::error::Error for ParseError {}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { offset, message: message.into() })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Label,
    Str,
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    Not,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    All,
    Global,
    Has,
    LParen,
    RParen,
    And,
    Or,
    Eof,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Label => "a label key",
            Kind::Str => "a string",
            Kind::LBrace => "'{'",
            Kind::RBrace => "'}'",
            Kind::Comma => "','",
            Kind::Eq => "'=='",
            Kind::Ne => "'!='",
            Kind::Not => "'!'",
            Kind::In => "'in'",
            Kind::NotIn => "'not in'",
            Kind::Contains => "'contains'",
            Kind::StartsWith => "'starts with'",
            Kind::EndsWith => "'ends with'",
            Kind::All => "'all()'",
            Kind::Global => "'global()'",
            Kind::Has => "'has()'",
            Kind::LParen => "'('",
            Kind::RParen => "')'",
            Kind::And => "'&&'",
            Kind::Or => "'||'",
            Kind::Eof => "the end",
        }
    }
}

/// A token: its kind, its text (the key of a label or `has()`, the content of a string), where it starts.
#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    kind: Kind,
    text: &'a str,
    at: usize,
}

fn is_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-')
}

/// Whether `s` is a label key the selector language accepts (as upstream's `ValidLabel`).
pub fn valid_key(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_KEY_LEN && s.bytes().all(is_key_byte)
}

fn skip_blank(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t') {
        i += 1;
    }
    i
}

/// A word boundary at `i`: the end, or a byte that cannot continue a key.
fn boundary(s: &[u8], i: usize) -> bool {
    i >= s.len() || !is_key_byte(s[i])
}

/// The operator words after a label: each word in turn, blanks between (and after) them, then a word boundary.
/// Returns the offset after the operator.
fn operator_words(s: &[u8], start: usize, words: &[&str]) -> Option<usize> {
    let mut i = start;
    for w in words {
        if !s[i..].starts_with(w.as_bytes()) {
            return None;
        }
        i = skip_blank(s, i + w.len());
    }
    // One word is a prefix match with a boundary right after it; several words also skip trailing blanks
    // before the boundary check (the difference never changes which selectors parse).
    if words.len() == 1 {
        i = start + words[0].len();
    }
    boundary(s, i).then_some(i)
}

/// A label key at `i`: its end, or an error.
fn key_end(input: &str, i: usize) -> Result<usize, ParseError> {
    let s = input.as_bytes();
    let mut j = i;
    while j < s.len() && is_key_byte(s[j]) {
        j += 1;
    }
    if j == i {
        return match input[i..].chars().next() {
            Some(c) => err(i, format!("expected a label key, found {c:?}")),
            None => err(i, "expected a label key"),
        };
    }
    if j - i > MAX_KEY_LEN {
        return err(i, format!("label key longer than {MAX_KEY_LEN} bytes"));
    }
    Ok(j)
}

/// After `name(` (at `i`, past the parenthesis): optional blanks, then `)`. Returns the offset after it.
fn close_call(s: &[u8], i: usize, name: &str) -> Result<usize, ParseError> {
    let i = skip_blank(s, i);
    if s.get(i) == Some(&b')') {
        Ok(i + 1)
    } else {
        err(i, format!("expected ')' to close {name}("))
    }
}

fn tokenize(input: &str) -> Result<Vec<Token<'_>>, ParseError> {
    let s = input.as_bytes();
    let mut out: Vec<Token<'_>> = Vec::new();
    let mut i = 0;
    loop {
        i = skip_blank(s, i);
        let at = i;
        let Some(&c) = s.get(i) else {
            out.push(Token { kind: Kind::Eof, text: "", at });
            return Ok(out);
        };
        let after_label = out.last().is_some_and(|t| t.kind == Kind::Label);
        let mut text = "";
        let kind = match c {
            b'(' => {
                i += 1;
                Kind::LParen
            }
            b')' => {
                i += 1;
                Kind::RParen
            }
            b'{' => {
                i += 1;
                Kind::LBrace
            }
            b'}' => {
                i += 1;
                Kind::RBrace
            }
            b',' => {
                i += 1;
                Kind::Comma
            }
            b'"' | b'\'' => {
                let Some(len) = s[i + 1..].iter().position(|&b| b == c) else {
                    return err(at, "unterminated string");
                };
                text = &input[i + 1..i + 1 + len];
                i += len + 2;
                Kind::Str
            }
            b'=' if s[i..].starts_with(b"==") => {
                i += 2;
                Kind::Eq
            }
            b'=' => return err(at, "expected '=='"),
            b'!' if s[i..].starts_with(b"!=") => {
                i += 2;
                Kind::Ne
            }
            b'!' => {
                i += 1;
                Kind::Not
            }
            b'&' if s[i..].starts_with(b"&&") => {
                i += 2;
                Kind::And
            }
            b'&' => return err(at, "expected '&&'"),
            b'|' if s[i..].starts_with(b"||") => {
                i += 2;
                Kind::Or
            }
            b'|' => return err(at, "expected '||'"),
            _ if after_label => {
                const OPS: [(&[&str], Kind); 5] = [
                    (&["contains"], Kind::Contains),
                    (&["starts", "with"], Kind::StartsWith),
                    (&["ends", "with"], Kind::EndsWith),
                    (&["not", "in"], Kind::NotIn),
                    (&["in"], Kind::In),
                ];
                let Some((end, kind)) = OPS.iter().find_map(|(w, k)| operator_words(s, i, w).map(|e| (e, *k))) else {
                    let label = out.last().map_or("", |t| t.text);
                    return err(at, format!("expected an operator after label {label:?}"));
                };
                i = end;
                kind
            }
            _ if s[i..].starts_with(b"has(") => {
                let k = skip_blank(s, i + 4);
                let end = key_end(input, k)?;
                text = &input[k..end];
                i = close_call(s, end, "has")?;
                Kind::Has
            }
            _ if s[i..].starts_with(b"all(") => {
                i = close_call(s, i + 4, "all")?;
                Kind::All
            }
            _ if s[i..].starts_with(b"global(") => {
                i = close_call(s, i + 7, "global")?;
                Kind::Global
            }
            _ => {
                let end = key_end(input, i)?;
                text = &input[i..end];
                i = end;
                Kind::Label
            }
        };
        out.push(Token { kind, text, at });
    }
}

struct Parser<'a> {
    toks: Vec<Token<'a>>,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Token<'a> {
        self.toks[self.pos]
    }

    /// The current token, then move past it (never past the end token).
    fn next(&mut self) -> Token<'a> {
        let t = self.toks[self.pos];
        if t.kind != Kind::Eof {
            self.pos += 1;
        }
        t
    }

    /// A `||` group, with the nesting of its canonical form (how many parentheses deep it prints).
    fn or(&mut self) -> Result<(Expr, usize), ParseError> {
        let at = self.peek().at;
        let (first, mut depth) = self.and()?;
        let mut es = vec![first];
        while self.peek().kind == Kind::Or {
            self.next();
            let (e, d) = self.and()?;
            es.push(e);
            depth = depth.max(d);
        }
        self.group(es, depth, at, Expr::Or)
    }

    fn and(&mut self) -> Result<(Expr, usize), ParseError> {
        let at = self.peek().at;
        let (first, mut depth) = self.operation()?;
        let mut es = vec![first];
        while self.peek().kind == Kind::And {
            self.next();
            let (e, d) = self.operation()?;
            es.push(e);
            depth = depth.max(d);
        }
        self.group(es, depth, at, Expr::And)
    }

    /// One operand is itself; several are a group, printed in parentheses: one level deeper.
    fn group(
        &self,
        mut es: Vec<Expr>,
        depth: usize,
        at: usize,
        make: fn(Vec<Expr>) -> Expr,
    ) -> Result<(Expr, usize), ParseError> {
        if es.len() == 1 {
            return Ok((es.swap_remove(0), depth));
        }
        if depth == MAX_DEPTH {
            return err(at, format!("expression nested deeper than {MAX_DEPTH} in its canonical form"));
        }
        Ok((make(es), depth + 1))
    }

    fn operation(&mut self) -> Result<(Expr, usize), ParseError> {
        let mut negated = false;
        let at = self.peek().at;
        while self.peek().kind == Kind::Not {
            self.next();
            negated = !negated;
        }
        let t = self.next();
        let (e, depth) = match t.kind {
            Kind::Has => (Expr::Has(t.text.to_string()), 0),
            Kind::All => (Expr::All, 0),
            Kind::Global => (Expr::Global, 0),
            Kind::Label => (self.comparison(t.text)?, 0),
            Kind::LParen => {
                if self.depth == MAX_DEPTH {
                    return err(t.at, format!("parentheses nested deeper than {MAX_DEPTH}"));
                }
                self.depth += 1;
                let inner = self.or()?;
                self.depth -= 1;
                let close = self.next();
                if close.kind != Kind::RParen {
                    return err(close.at, format!("expected ')', found {}", close.kind.describe()));
                }
                inner
            }
            k => return err(t.at, format!("expected a selector term, found {}", k.describe())),
        };
        if !negated {
            return Ok((e, depth));
        }
        // A negated negation prints as `!(!x)`: one level deeper.
        let depth = if matches!(e, Expr::Not(_)) {
            if depth == MAX_DEPTH {
                return err(at, format!("expression nested deeper than {MAX_DEPTH} in its canonical form"));
            }
            depth + 1
        } else {
            depth
        };
        Ok((Expr::Not(Box::new(e)), depth))
    }

    /// After a label key: an operator and its operand.
    fn comparison(&mut self, key: &str) -> Result<Expr, ParseError> {
        let key = key.to_string();
        let op = self.next();
        match op.kind {
            Kind::Eq | Kind::Ne | Kind::Contains | Kind::StartsWith | Kind::EndsWith => {
                let v = self.next();
                if v.kind != Kind::Str {
                    return err(v.at, format!("expected a quoted string, found {}", v.kind.describe()));
                }
                let value = v.text.to_string();
                Ok(match op.kind {
                    Kind::Eq => Expr::Eq { key, value },
                    Kind::Ne => Expr::Ne { key, value },
                    Kind::Contains => Expr::Contains { key, value },
                    Kind::StartsWith => Expr::StartsWith { key, value },
                    _ => Expr::EndsWith { key, value },
                })
            }
            Kind::In | Kind::NotIn => {
                let open = self.next();
                if open.kind != Kind::LBrace {
                    return err(open.at, format!("expected a set literal '{{', found {}", open.kind.describe()));
                }
                let mut values = Vec::new();
                while self.peek().kind == Kind::Str {
                    values.push(self.next().text.to_string());
                    if self.peek().kind != Kind::Comma {
                        break;
                    }
                    self.next();
                }
                let close = self.next();
                if close.kind != Kind::RBrace {
                    return err(close.at, format!("expected '}}', found {}", close.kind.describe()));
                }
                values.sort_unstable();
                values.dedup();
                Ok(if op.kind == Kind::In { Expr::In { key, values } } else { Expr::NotIn { key, values } })
            }
            k => err(op.at, format!("expected an operator after label {key:?}, found {}", k.describe())),
        }
    }
}

/// Parses a selector. The empty (or blank) selector is [`Expr::All`].
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let toks = tokenize(input)?;
    if toks[0].kind == Kind::Eof {
        return Ok(Expr::All);
    }
    let mut p = Parser { toks, pos: 0, depth: 0 };
    let (e, _) = p.or()?;
    let end = p.peek();
    if end.kind != Kind::Eof {
        return err(end.at, format!("unexpected {} after the selector", end.kind.describe()));
    }
    Ok(e)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut l = Labels::new();
        for (k, v) in pairs {
            l.insert(*k, *v);
        }
        l
    }

    /// Parses, checks the matches, and checks the same on the canonical form, which must re-parse to the same
    /// expression and print the same.
    fn check(sel: &str, yes: &[&[(&str, &str)]], no: &[&[(&str, &str)]]) {
        let e = parse(sel).unwrap_or_else(|err| panic!("{sel:?}: {err}"));
        let canon = e.to_string();
        let again = parse(&canon).unwrap_or_else(|err| panic!("{sel:?} → {canon:?}: {err}"));
        assert_eq!(again, e, "{sel:?} → {canon:?}");
        assert_eq!(again.to_string(), canon);
        for l in yes {
            assert!(e.matches(&labels(l)), "{sel:?} should match {l:?}");
            assert!(again.matches(&labels(l)));
        }
        for l in no {
            assert!(!e.matches(&labels(l)), "{sel:?} should not match {l:?}");
            assert!(!again.matches(&labels(l)));
        }
    }

    // From libcalico-go/lib/selector/parser/parser_test.go, `selectorTests`.
    #[test]
    fn upstream_selector_tests() {
        check(r#"a == "b""#, &[&[("a", "b")], &[("a", "b"), ("c", "d")]], &[&[], &[("a", "c")], &[("c", "d")]]);
        check(
            r#"a == "b" && c == "d""#,
            &[&[("a", "b"), ("c", "d")]],
            &[&[], &[("a", "b"), ("c", "e")], &[("a", "c"), ("c", "d")], &[("c", "d")], &[("a", "b")]],
        );
        check(
            r#"a == "b" || c == "d""#,
            &[&[("a", "b"), ("c", "d")], &[("a", "b")], &[("c", "d")]],
            &[&[], &[("a", "e"), ("c", "e")], &[("c", "e")], &[("a", "e")]],
        );
        check(r#"a in {"'", '"', "c"}"#, &[&[("a", "c")], &[("a", "\"")], &[("a", "'")]], &[&[], &[("a", "e")]]);
        check(r#"a not in {"'", '"', "c"}"#, &[&[], &[("a", "e")]], &[&[("a", "c")], &[("a", "\"")], &[("a", "'")]]);
        check("a == 'a'", &[&[("a", "a")]], &[]);
        check(r#"a == "a""#, &[&[("a", "a")]], &[]);
        check(r#"a != "b""#, &[&[("a", "a")]], &[]);
        check(r#"a != "a""#, &[&[]], &[]);
        check(
            r#"a contains "a""#,
            &[&[("a", "a")], &[("a", "bab")], &[("a", "aaa"), ("b", "c")]],
            &[&[], &[("a", "b")], &[("b", "aaa")]],
        );
        check(
            r#"a starts with "a""#,
            &[&[("a", "a")], &[("a", "abb")], &[("a", "aaa"), ("b", "c")]],
            &[&[], &[("a", "b")], &[("a", "baa")], &[("b", "aaa")]],
        );
        check(
            r#"a ends with "a""#,
            &[&[("a", "a")], &[("a", "bba")], &[("a", "aaa"), ("b", "c")]],
            &[&[], &[("a", "b")], &[("a", "aab")], &[("b", "aaa")]],
        );
        check(r#"a in {"a"}"#, &[&[("a", "a")]], &[]);
        check(r#"!a in {"a"}"#, &[&[("a", "b")]], &[]);
        check(r#"a in {"a", "b"}"#, &[&[("a", "a")], &[("a", "b")]], &[]);
        check(r#"a not in {"d", "e"}"#, &[&[("a", "a")]], &[]);
        check("has(a)", &[&[("a", "b")]], &[]);
        check("!has(a)", &[&[("b", "b")]], &[]);
        check("", &[&[], &[("a", "b")]], &[]);
        check(" ", &[&[]], &[]);
        check("all()", &[&[]], &[]);
        check(" all()", &[&[], &[("a", "b")]], &[]);
        check("global()", &[&[]], &[]);
        check(" global()", &[&[], &[("a", "b")]], &[]);

        check("a == 'a'", &[], &[&[("a", "b")], &[]]);
        check(r#"a != "a""#, &[], &[&[("a", "a")]]);
        check("a != 'a'", &[], &[&[("a", "a")]]);
        check(r#"a in {"a"}"#, &[], &[&[("a", "b")]]);
        check(r#"a not in {"a"}"#, &[], &[&[("a", "a")]]);
        check(r#"a in {"a", "b"}"#, &[], &[&[("a", "c")]]);
        check("has(b)", &[], &[&[("a", "b")]]);
        check("!!has(b)", &[], &[&[("a", "b")]]);
        for s in ["! has(a)", "!has(a)", "!!! has(a)", "!!!has(a)", "!! ! has(a)", "! !!has(a)"] {
            check(s, &[], &[&[("a", "b")]]);
        }

        // Boolean expressions.
        let ab: &[(&str, &str)] = &[("a", "a1"), ("b", "b1")];
        check("a == 'a1' && b == 'b1'", &[ab], &[]);
        check("a == 'a1' && b != 'b1'", &[], &[ab]);
        check("a != 'a1' && b == 'b1'", &[], &[ab]);
        check("a != 'a1' && b != 'b1'", &[], &[ab]);
        check("a != 'a1' && !b == 'b1'", &[], &[ab]);
        check("!a == 'a1' && b == 'b1'", &[], &[ab]);
        check("has(a) && !has(b)", &[&[("a", "a")]], &[]);
        check("!has(b) && has(a)", &[&[("a", "a")]], &[]);
        check("!(!has(a) || has(b))", &[&[("a", "a")]], &[]);
        check("!(has(b) || !has(a))", &[&[("a", "a")]], &[]);
        check("a == 'a1' || b == 'b1'", &[ab], &[]);
        check("a == 'a1' || b != 'b1'", &[ab], &[]);
        check("a != 'a1' || b == 'b1'", &[ab], &[]);
        check("a != 'a1' || b != 'b1'", &[], &[ab]);
        check("! a == 'a1' || ! b == 'b1'", &[], &[ab]);
    }

    // Missing keys: `!=` and `not in` are true, every other comparison false (parser/ast.go).
    #[test]
    fn missing_key_semantics() {
        let none: &[(&str, &str)] = &[("other", "x")];
        check("a != 'x'", &[none], &[]);
        check("a not in {'x'}", &[none], &[]);
        check("a not in {}", &[none, &[("a", "x")]], &[]);
        check("a in {}", &[], &[none, &[("a", "x")]]);
        for s in ["a == 'x'", "a contains ''", "a starts with ''", "a ends with ''", "a in {'x'}", "has(a)"] {
            check(s, &[], &[none]);
        }
        // An empty pattern matches every present value.
        check("a contains '' && a starts with '' && a ends with ''", &[&[("a", "")], &[("a", "q")]], &[]);
    }

    // From libcalico-go/lib/selector/parser/parser_test.go, `badSelectors`.
    #[test]
    fn upstream_bad_selectors() {
        for s in [
            "b == b",
            "b contains b",
            "b starts with b",
            "b ends with b",
            "'b1' == b",
            "b",
            "a b",
            "!",
            r#"foo == "bar" &"#,
            r#"foo == "bar" |"#,
            "foo != ||",
            r#"foo in {"", ||"#,
            r#"foo in """#,
            r#""FOO"#,
            r#""FOO'"#,
            "'FOO",
            "(",
            r#"(a == "foo""#,
            ")",
            "()",
            "%",
            r#"a == "b" && %"#,
            r#"a == "b" || %"#,
            "a ",
            "has(foo) &&",
        ] {
            assert!(parse(s).is_err(), "{s:?} should not parse");
        }
    }

    // From libcalico-go/lib/selector/parser/parser_test.go, `canonicalisationTests` (the ids are not implemented).
    #[test]
    fn upstream_canonical_forms() {
        for (input, want) in [
            ("", "all()"),
            (" all() ", "all()"),
            (" (all() )", "all()"),
            ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
            (r#"! (a == "b"&&! c != "d")"#, r#"!(a == "b" && !c != "d")"#),
            (r#"a == "'""#, r#"a == "'""#),
            (r#"a == '"'"#, r#"a == '"'"#),
            (r#"a contains '"'"#, r#"a contains '"'"#),
            (r#"a contains "'""#, r#"a contains "'""#),
            (r#"a startswith '"'"#, r#"a starts with '"'"#),
            (r#"a endswith "'""#, r#"a ends with "'""#),
            (r#"a!='"'"#, r#"a != '"'"#),
            (r#"a in {"d"}"#, r#"a in {"d"}"#),
            (r#"a in {"a", "b"}"#, r#"a in {"a", "b"}"#),
            (r#"a in {"d", "a", "b"}"#, r#"a in {"a", "b", "d"}"#),
            (r#"a in {"z", "x", "y", "a"}"#, r#"a in {"a", "x", "y", "z"}"#),
            (r#"a in {"z", "z", "x", "y", "x", "a"}"#, r#"a in {"a", "x", "y", "z"}"#),
        ] {
            let e = parse(input).unwrap();
            assert_eq!(e.to_string(), want, "{input:?}");
            assert_eq!(parse(want).unwrap(), e);
        }
        // The visitor tests of the same file (without the prefix the visitor adds): nesting is kept as written.
        for (input, want) in [
            ("k == 'v' && x == 'y'", r#"(k == "v" && x == "y")"#),
            ("k == 'v' || has(x)", r#"(k == "v" || has(x))"#),
            ("!(k == 'v')", r#"!k == "v""#),
            ("k not in {'v'}", r#"k not in {"v"}"#),
            (
                "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
                r#"!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})"#,
            ),
        ] {
            assert_eq!(parse(input).unwrap().to_string(), want, "{input:?}");
        }
    }

    // The one canonical form differing from upstream: a double negation keeps its parentheses.
    #[test]
    fn double_negation_round_trips() {
        let e = parse("!(!has(a))").unwrap();
        assert_eq!(e, Expr::Not(Box::new(Expr::Not(Box::new(Expr::Has("a".into()))))));
        assert_eq!(e.to_string(), "!(!has(a))");
        check("!(!has(a))", &[&[("a", "")]], &[&[]]);
        check("!(!(a == 'x' && has(b)))", &[&[("a", "x"), ("b", "")]], &[&[("a", "x")]]);
        // Repeated `!` before one term collapse, as upstream.
        assert_eq!(parse("!!has(a)").unwrap(), Expr::Has("a".into()));
    }

    // From libcalico-go/lib/selector/tokenizer/tokenizer_test.go: inputs it tokenizes that also form a selector.
    #[test]
    fn upstream_tokenizer_valid() {
        let eq = |k: &str, v: &str| Expr::Eq { key: k.into(), value: v.into() };
        for (input, want) in [
            (r#"a=="b""#, eq("a", "b")),
            (r#"(a=="b")"#, eq("a", "b")),
            (r#"label == "value""#, eq("label", "value")),
            (r#"a!="b""#, Expr::Ne { key: "a".into(), value: "b".into() }),
            (r#"contains contains "contains""#, Expr::Contains { key: "contains".into(), value: "contains".into() }),
            ("contains contains 'contains'", Expr::Contains { key: "contains".into(), value: "contains".into() }),
            (r#"label contains"value""#, Expr::Contains { key: "label".into(), value: "value".into() }),
            (r#"label startswith "value""#, Expr::StartsWith { key: "label".into(), value: "value".into() }),
            (r#"startswith starts with "value""#, Expr::StartsWith { key: "startswith".into(), value: "value".into() }),
            (r#"label starts  with "value""#, Expr::StartsWith { key: "label".into(), value: "value".into() }),
            (r#"label endswith "value""#, Expr::EndsWith { key: "label".into(), value: "value".into() }),
            (r#"endswith ends with "value""#, Expr::EndsWith { key: "endswith".into(), value: "value".into() }),
            (r#"label ends  with "value""#, Expr::EndsWith { key: "label".into(), value: "value".into() }),
            ("has(calico/k8s_ns)", Expr::Has("calico/k8s_ns".into())),
            ("has(calico/k8s_ns/role)", Expr::Has("calico/k8s_ns/role".into())),
            ("has(calico/k8s_NS-.1/role)", Expr::Has("calico/k8s_NS-.1/role".into())),
            ("a not in {}", Expr::NotIn { key: "a".into(), values: vec![] }),
            (r#"a not in {"a","B"}"#, Expr::NotIn { key: "a".into(), values: vec!["B".into(), "a".into()] }),
            (r#"a notin{"a"}"#, Expr::NotIn { key: "a".into(), values: vec!["a".into()] }),
            ("a\tnot \t in {}", Expr::NotIn { key: "a".into(), values: vec![] }),
            ("global( )", Expr::Global),
            ("all( )", Expr::All),
            (
                r#"calico/k8s_ns == "kube-system" && k8s-app == "kube-dns""#,
                Expr::And(vec![eq("calico/k8s_ns", "kube-system"), eq("k8s-app", "kube-dns")]),
            ),
        ] {
            assert_eq!(parse(input), Ok(want), "{input:?}");
            check(input, &[], &[]);
        }
        let long = "a".repeat(MAX_KEY_LEN);
        assert_eq!(parse(&format!("{long} == \"value\"")), Ok(eq(&long, "value")));
        assert!(valid_key(&long) && !valid_key(&format!("{long}a")) && !valid_key("") && !valid_key("a b"));
    }

    // From libcalico-go/lib/selector/tokenizer/tokenizer_test.go: inputs it refuses; and inputs it tokenizes that
    // the parser refuses (`a not in "bar" ...`).
    #[test]
    fn upstream_tokenizer_invalid() {
        let long = format!("{} == \"value\"", "a".repeat(MAX_KEY_LEN + 1));
        for s in [
            long.as_str(),
            r#"label == "value"#,
            "label == 'value",
            r#"label = "value""#,
            "all(",
            "global(",
            "has()",
            "has(foo",
            "has( foo ",
            r#"a == "b" & has(foo)"#,
            r#"a == "b" | has(foo)"#,
            r#"label starts foo "value""#,
            r#"label inf "value""#,
            r#"label ends foo "value""#,
            r#"label ends withs "value""#,
            r#"label squiggles "value""#,
            r#"a not in "bar" && !has(foo) || b in c"#,
            r#"a notin"bar"&&!has(foo)||b in"c""#,
        ] {
            assert!(parse(s).is_err(), "{s:?} should not parse");
        }
    }

    // Rules read from tokenizer.go and parser.go that the upstream tests do not spell out.
    #[test]
    fn whitespace_keys_and_sets() {
        check("\ta == 'x'\t&&\thas(b) ", &[&[("a", "x"), ("b", "")]], &[&[("a", "x")]]);
        check("has( a )", &[&[("a", "")]], &[&[]]);
        check("a in {'x',}", &[&[("a", "x")]], &[&[("a", "y")]]);
        check("-._/9 == ''", &[&[("-._/9", "")]], &[]);
        check("has == 'x' && all == 'y' && global == 'z'", &[&[("has", "x"), ("all", "y"), ("global", "z")]], &[]);
        check("a == 'x y\nz'", &[&[("a", "x y\nz")]], &[]);
        check("a == 'é'", &[&[("a", "é")]], &[]);
        assert_eq!(parse("(((has(a))))"), Ok(Expr::Has("a".into())));
        // Nesting is kept as written (no flattening).
        assert_eq!(parse("(has(a) && has(b)) && has(c)").unwrap().to_string(), "((has(a) && has(b)) && has(c))");
        for s in [
            "a == 'x'\n",
            "\n",
            "\r",
            "has (a)",
            "has(a b)",
            "a in {,}",
            "a in {'x',,}",
            "a in {'x' 'y'}",
            "a in ('x')",
            "a == 'x' b == 'y'",
            "a == 'x' has(b)",
            "has(a) == 'x'",
            "a not {}",
            "a nothing {}",
            "a starts with x",
            "é == 'x'",
            "all() all()",
            "!!",
            "a ===",
            "a == 'x' &&& has(b)",
        ] {
            assert!(parse(s).is_err(), "{s:?} should not parse");
        }
    }

    #[test]
    fn errors_carry_offsets() {
        let e = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(e("(a == 'b' && c == 'd'"), "expected ')', found the end at 21");
        assert_eq!(e("a == 'b' && %"), "expected a label key, found '%' at 12");
        assert_eq!(e("a == b"), "expected a quoted string, found a label key at 5");
        assert_eq!(e("a = 'b'"), "expected '==' at 2");
        assert_eq!(e("a == 'b"), "unterminated string at 5");
        assert_eq!(e("a in 'b'"), "expected a set literal '{', found a string at 5");
        assert_eq!(e("a in {'b'"), "expected '}', found the end at 9");
        assert_eq!(e("a squiggles 'v'"), "expected an operator after label \"a\" at 2");
        assert_eq!(e("has(a"), "expected ')' to close has( at 5");
        assert_eq!(e("has(a) )"), "unexpected ')' after the selector at 7");
        assert_eq!(e("!"), "expected a selector term, found the end at 1");
        assert_eq!(e("a ("), "expected an operator after label \"a\", found '(' at 2");
    }

    #[test]
    fn deep_nesting_is_an_error() {
        let ok = format!("{}has(a){}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(parse(&ok), Ok(Expr::Has("a".into())));
        let deep = format!("{}has(a){}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
        let err = parse(&deep).unwrap_err();
        assert_eq!(err.offset, MAX_DEPTH);
        assert!(err.message.contains("nested deeper"));
        // Far deeper, with negations between: an error, not a stack overflow.
        assert!(parse(&"!(".repeat(1_000_000)).is_err());
        // Many negations in a row are no nesting at all.
        assert_eq!(parse(&format!("{}has(a)", "!".repeat(1_000_001))), Ok(Expr::Not(Box::new(Expr::Has("a".into())))));
        // Deepest accepted nesting of alternating negations round-trips.
        let mixed = format!("{}has(a){}", "!(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        check(&mixed, &[&[("a", "")]], &[&[]]);
    }

    // The canonical form may be deeper than the input (`a || b && (c || d)` prints as `(a || (b && (c || d)))`):
    // the limit applies to it too, so that whatever parses prints as something that parses.
    #[test]
    fn canonical_nesting_is_bounded() {
        let nested = |levels: usize| {
            let mut s = "has(a) || has(b)".to_string();
            for _ in 0..levels {
                s = format!("has(c) || ({s})");
            }
            s
        };
        let ok = nested(MAX_DEPTH - 1);
        check(&ok, &[&[("b", "")]], &[&[]]);
        assert!(parse(&nested(MAX_DEPTH)).unwrap_err().message.contains("canonical form"));
        let prec = format!("has(x) || has(y) && {}has(a) || has(b){}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        check(&prec, &[&[("x", "")], &[("y", ""), ("a", "")]], &[&[("y", "")]]);
        let negs = format!("{}has(a){}", "!(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
        assert!(parse(&negs).is_err());
    }

    #[test]
    fn long_flat_inputs_parse() {
        let many = vec!["has(a)"; 100_000].join(" && ");
        assert!(matches!(parse(&many), Ok(Expr::And(v)) if v.len() == 100_000));
        let set = format!("a in {{{}}}", (0..100_000).map(|i| format!("'{}'", i % 1000)).collect::<Vec<_>>().join(","));
        assert!(matches!(parse(&set), Ok(Expr::In { values, .. }) if values.len() == 1000));
    }
}
