//! Layer-7 matching in Cilium's policy language: the HTTP rules and the DNS names of
//! `toPorts[].rules.http[]`, `toPorts[].rules.dns[]` and `toFQDNs[]`, as pure data and functions.
//!
//! Sources: cilium/cilium at commit 2efb257c8533 (as vendored by cilium/cilium-cli e694be34c478 under
//! `vendor/github.com/cilium/cilium/`); `path:line` below are in that tree.
//!
//! # HTTP
//!
//! A rule ([`PortRuleHttp`], Cilium's `PortRuleHTTP`, `pkg/policy/api/http.go:66`) has `method`, `path` and `host`
//! regular expressions, `headers` and `headerMatches`. Empty fields impose nothing, so the empty rule allows every
//! request (`http.go:57-59`). Every non-empty field must hold: the agent turns the rule into one Envoy route
//! `HeaderMatcher` per field and the proxy accepts the rule only if all of them match
//! (`pkg/envoy/policy/envoy_l7_rules_translator.go:62-249`). A request is allowed on a port if any of the port's
//! rules matches it; no rules at all means no L7 restriction (`pkg/policy/api/l4.go:298-300`).
//!
//! * `path`, `method` and `host` are matched by Envoy `safe_regex` matchers against the `:path`, `:method` and
//!   `:authority` pseudo-headers (`envoy_l7_rules_translator.go:76-117`). Envoy's regex matcher is a *full* match,
//!   so each pattern is anchored at both ends here: `/public` does not match `/public/x`, and `GET|PUT` means
//!   `^(?:GET|PUT)$`. Cilium's documentation calls the fields POSIX extended regular expressions (`http.go:61-62`),
//!   but the agent validates them with Go's RE2 `regexp` (`http.go:121-134`) and Envoy evaluates them with Google
//!   RE2. This module uses the `regex` crate, whose syntax and semantics are RE2's (no backreferences, no
//!   look-around). Because a full match is a yes/no question, leftmost-first (RE2) versus leftmost-longest (POSIX)
//!   never changes an answer. Not modelled: Envoy's limit on a compiled regex's program size.
//! * `:path` is the request target as sent, *including* any `?query`, so `path: /a` does not match `/a?x=1`.
//! * `headers` entries are split at the first space (`envoy_l7_rules_translator.go:118-141`): `"Name value"` or
//!   `"Name: value"` (all trailing colons are stripped from the name) require the header with exactly that value
//!   (the value is everything after the first space, verbatim); an entry without a space, e.g. `"X-Token"`,
//!   requires only that the header be present (a colon is then *not* stripped: `"X-Token:"` names a header
//!   `x-token:`, which never exists).
//! * `headerMatches` entries ([`HeaderMatchSpec`]) are checked like the agent does (`http.go:139-151`: a name is
//!   required; `mismatch` is empty or one of `LOG`, `ADD`, `DELETE`, `REPLACE`). With `mismatch` empty (fail on
//!   mismatch) a non-empty `value` requires the header with exactly that value and an empty `value` requires only
//!   presence (`envoy_l7_rules_translator.go:175-213`). Any other `mismatch` action never denies: cilium-envoy logs
//!   the mismatch and adds, deletes or replaces the header, and the rule still matches. Such rules are reported by
//!   [`HttpRule::has_side_effects`]. An entry with a `secret` depends on a Kubernetes Secret's contents and is
//!   refused with [`L7Error::SecretNotModelled`].
//! * Envoy's header names are case-insensitive (it stores them lowercased); values are compared exactly and
//!   case-sensitively. A header sent several times is matched as its values joined with `,` in order (Envoy's
//!   behaviour since its fix for CVE-2020-25017). The names `:method`, `:path`, `:authority` and `host` in
//!   `headers`/`headerMatches` refer to the request's method, path and authority (Envoy keeps a request's Host
//!   header as `:authority` and looks `host` up there too).
//! * An exact value that is empty (`"X-Key "`, with the trailing space) requires the header with an empty value,
//!   as Envoy's exact `StringMatcher` does. (A comment at `envoy_l7_rules_translator.go:162` says Envoy treats an
//!   empty exact value as matching any value; that describes Envoy's older `exact_match` field.)
//!
//! # DNS names
//!
//! `matchName` and `matchPattern` ([`DnsPattern`]) follow `pkg/policy/api/fqdn.go` and
//! `pkg/fqdn/matchpattern/matchpattern.go`:
//!
//! * Names are compared in lowercase and fully qualified: a missing trailing `.` is added to both the selector and
//!   the queried name (`pkg/fqdn/dns/dns.go:43-48`; the DNS proxy does the same to the query name in
//!   `pkg/fqdn/dnsproxy/proxy.go` `CheckAllowed`).
//! * `matchName` is an exact name. Allowed characters: `[-a-zA-Z0-9_.]` (`fqdn.go:18`, `fqdn.go:104-106`).
//! * `matchPattern` allows `[-a-zA-Z0-9_.*]` (`matchpattern.go:33`, `matchpattern.go:79-81`). A `*` (or a run of
//!   them) matches zero or more of `[-a-zA-Z0-9_]` *within one label*, never a `.` (`matchpattern.go:139-141`):
//!   `*.cilium.io` matches `www.cilium.io` but neither `cilium.io` nor `a.b.cilium.io`; `*cilium.io` matches
//!   `cilium.io` and `subcilium.io`, not `www.cilium.io` (`fqdn.go:53-55`; the prose at `fqdn.go:44-46` says a
//!   leading `*` without a dot also matches subdomains, which the code does not do). A pattern made only of stars, with or without one trailing dot (`*`, `**`,
//!   `*.`, `**.`), matches every name made of such labels, and the root `.` (`matchpattern.go:29`,
//!   `matchpattern.go:104-106`). Two or more stars and a dot at the *start* of a pattern (`**.cilium.io`) match one
//!   or more whole labels (`matchpattern.go:19-23`, `matchpattern.go:37`, `matchpattern.go:135-137`):
//!   `a.cilium.io` and `a.b.cilium.io`, not `cilium.io`. Elsewhere `**` is just `*`.
//! * Both are at most 255 characters (`fqdn.go:37`, `fqdn.go:62`), also after the trailing dot is added
//!   (`matchpattern.go:76-78` runs on the canonical form), and, as the CRD schema requires
//!   (`fqdn.go:38`, `fqdn.go:63`), made of non-empty labels: no leading dot and no `..`.
//! * Specifying both in one `toFQDNs` selector is an error (`fqdn.go:101-103`).

use std::borrow::Cow;

use std::fmt;

use regex_automata::meta::Regex;

/// Compiles a regular expression with the lazy DFA and no full DFA: a full DFA costs milliseconds to build per
/// Unicode-aware pattern, and a rule's handful of matches per flow never pays that back.
fn build_regex(pattern: &str) -> Result<Regex, String> {
    Regex::builder().configure(Regex::config().dfa(false)).build(pattern).map_err(|e| match e.syntax_error() {
        Some(syntax) => syntax.to_string(),
        None => e.to_string(),
    })
}
use serde::{Deserialize, Serialize};

/// Why an L7 rule or DNS selector could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum L7Error {
    /// An HTTP rule's `method`, `path` or `host` is not a valid regular expression.
    #[error("invalid regular expression in HTTP rule field `{field}`: {message}")]
    InvalidRegex {
        /// `method`, `path` or `host`.
        field: &'static str,
        /// The regex parser's explanation.
        message: String,
    },
    /// A `headerMatches` entry without a name (`http.go:140-142`).
    #[error("HTTP rule `headerMatches` entry has no `name`")]
    HeaderNameMissing,
    /// A `headerMatches` entry whose `mismatch` is not one of the four actions (`http.go:143-147`).
    #[error("HTTP rule `headerMatches` entry `{name}` has invalid `mismatch` action {action:?} (expected LOG, ADD, DELETE or REPLACE)")]
    InvalidMismatchAction {
        /// The header name.
        name: String,
        /// The action as written.
        action: String,
    },
    /// A `headerMatches` entry whose `secret` has no name (`http.go:148-150`).
    #[error("HTTP rule `headerMatches` entry `{name}` has a `secret` without a name")]
    SecretNameMissing {
        /// The header name.
        name: String,
    },
    /// A `headerMatches` entry that takes its value from a Kubernetes Secret: what it matches depends on the
    /// Secret's contents, which this engine does not read.
    #[error("HTTP rule `headerMatches` entry `{name}` takes its value from a Secret, which is not modelled")]
    SecretNotModelled {
        /// The header name.
        name: String,
    },
    /// An invalid `matchName` or `matchPattern`.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidDnsName {
        /// `matchName` or `matchPattern`.
        field: &'static str,
        /// The selector as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A DNS selector with both `matchName` and `matchPattern` (`fqdn.go:101-103`).
    #[error("only one of matchName or matchPattern is allowed in a DNS selector")]
    BothNameAndPattern,
    /// A DNS selector with neither `matchName` nor `matchPattern`.
    #[error("a DNS selector needs matchName or matchPattern")]
    NeitherNameNorPattern,
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------------------------

/// One `toPorts[].rules.http[]` entry as written in a CiliumNetworkPolicy (Cilium's `PortRuleHTTP`). Empty
/// strings and lists mean the field is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PortRuleHttp {
    /// Regular expression for the whole request path (`:path`, query included).
    pub path: String,
    /// Regular expression for the whole method.
    pub method: String,
    /// Regular expression for the whole authority (`Host` header; includes a port if the client sent one).
    pub host: String,
    /// `"Name"` (present) or `"Name value"` / `"Name: value"` (exact value).
    pub headers: Vec<String>,
    /// Named header requirements with a mismatch action.
    pub header_matches: Vec<HeaderMatchSpec>,
}

/// One `headerMatches` entry (Cilium's `HeaderMatch`, `http.go:28-55`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HeaderMatchSpec {
    /// Empty (deny on mismatch), `LOG`, `ADD`, `DELETE` or `REPLACE`.
    pub mismatch: String,
    /// The header name (case-insensitive).
    pub name: String,
    /// A Secret holding the value; not modelled.
    pub secret: Option<SecretRef>,
    /// The exact value; empty means presence only.
    pub value: String,
}

/// A reference to a Kubernetes Secret (Cilium's `Secret`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SecretRef {
    /// The Secret's namespace (empty: the policy's).
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
}

/// What a `headerMatches` entry does when the header does not match (`http.go:11-22`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MismatchAction {
    /// `mismatch` empty: the rule does not match.
    Fail,
    /// `LOG`: log, the rule still matches.
    Log,
    /// `ADD`: add the expected value, the rule still matches.
    Add,
    /// `DELETE`: remove the mismatching header, the rule still matches.
    Delete,
    /// `REPLACE`: set the header to the expected value, the rule still matches.
    Replace,
}

impl MismatchAction {
    fn parse(header: &str, action: &str) -> Result<Self, L7Error> {
        match action {
            "" => Ok(MismatchAction::Fail),
            "LOG" => Ok(MismatchAction::Log),
            "ADD" => Ok(MismatchAction::Add),
            "DELETE" => Ok(MismatchAction::Delete),
            "REPLACE" => Ok(MismatchAction::Replace),
            other => Err(L7Error::InvalidMismatchAction { name: header.to_string(), action: other.to_string() }),
        }
    }
}

/// A compiled header requirement: the header (lowercased name) must be present, or present with exactly `value`.
#[derive(Debug, Clone)]
struct HeaderCheck {
    name: String,
    value: Option<String>,
}

impl HeaderCheck {
    fn new(name: &str, value: Option<&str>) -> Self {
        HeaderCheck { name: name.to_ascii_lowercase(), value: value.map(str::to_string) }
    }

    fn holds(&self, req: &HttpRequest) -> bool {
        match (req.header(&self.name), &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(got), Some(want)) => got.as_ref() == want.as_str(),
        }
    }
}

/// A compiled HTTP rule: regexes built once, header requirements parsed.
#[derive(Debug, Clone)]
pub struct HttpRule {
    spec: PortRuleHttp,
    method: Option<Regex>,
    path: Option<Regex>,
    host: Option<Regex>,
    checks: Vec<HeaderCheck>,
    side_effects: bool,
}

/// Compiles a non-empty rule field as a whole-value (anchored) regular expression.
fn anchored(field: &'static str, pattern: &str) -> Result<Option<Regex>, L7Error> {
    if pattern.is_empty() {
        return Ok(None);
    }
    // Validate the pattern alone first, so that an unbalanced `)` cannot close the wrapping group.
    build_regex(pattern).map_err(|message| L7Error::InvalidRegex { field, message })?;
    build_regex(&format!(r"\A(?:{pattern})\z")).map(Some).map_err(|message| L7Error::InvalidRegex { field, message })
}

impl HttpRule {
    /// Validates and compiles one rule as the agent and the proxy would.
    pub fn compile(spec: &PortRuleHttp) -> Result<Self, L7Error> {
        let path = anchored("path", &spec.path)?;
        let method = anchored("method", &spec.method)?;
        let host = anchored("host", &spec.host)?;

        let mut checks = Vec::with_capacity(spec.headers.len() + spec.header_matches.len());
        for entry in &spec.headers {
            checks.push(match entry.split_once(' ') {
                Some((name, value)) => HeaderCheck::new(name.trim_end_matches(':'), Some(value)),
                None => HeaderCheck::new(entry, None),
            });
        }

        let mut side_effects = false;
        for hm in &spec.header_matches {
            if hm.name.is_empty() {
                return Err(L7Error::HeaderNameMissing);
            }
            let action = MismatchAction::parse(&hm.name, &hm.mismatch)?;
            if let Some(secret) = &hm.secret {
                if secret.name.is_empty() {
                    return Err(L7Error::SecretNameMissing { name: hm.name.clone() });
                }
                return Err(L7Error::SecretNotModelled { name: hm.name.clone() });
            }
            if action == MismatchAction::Fail {
                let value = (!hm.value.is_empty()).then_some(hm.value.as_str());
                checks.push(HeaderCheck::new(&hm.name, value));
            } else {
                side_effects = true;
            }
        }

        Ok(HttpRule { spec: spec.clone(), method, path, host, checks, side_effects })
    }

    /// The rule as written.
    pub fn spec(&self) -> &PortRuleHttp {
        &self.spec
    }

    /// Whether the request satisfies every field of the rule.
    pub fn matches(&self, req: &HttpRequest) -> bool {
        let full = |re: &Option<Regex>, value: Option<&str>| match (re, value) {
            (None, _) => true,
            (Some(re), Some(v)) => re.is_match(v),
            (Some(_), None) => false,
        };
        full(&self.method, Some(req.method_or_default()))
            && full(&self.path, Some(req.path_or_default()))
            && full(&self.host, req.authority())
            && self.checks.iter().all(|c| c.holds(req))
    }

    /// Whether the rule has `headerMatches` with a `mismatch` action other than fail: these never deny, but the
    /// proxy logs or rewrites headers for them (Cilium then evaluates every rule instead of stopping at the first
    /// match, `envoy_l7_rules_translator.go:248`).
    pub fn has_side_effects(&self) -> bool {
        self.side_effects
    }
}

/// Whether one side's HTTP rules on a port allow the request: some rule matches it. An empty list is no L7
/// restriction at all (`l4.go:298-300`) and allows every request.
pub fn http_allowed(rules: &[HttpRule], req: &HttpRequest) -> bool {
    rules.is_empty() || rules.iter().any(|r| r.matches(req))
}

/// An HTTP request as the proxy sees it. [`Default`] is `GET /` with no authority and no headers; an empty
/// `method` or `path` is read as `GET` or `/` too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target as sent (`:path`): path and query, e.g. `/api/v1?x=1`.
    pub path: String,
    /// The authority (`:authority`, the `Host` header of HTTP/1.1). When absent, a `host` entry of `headers` is
    /// used.
    pub host: Option<String>,
    /// Other headers in order; names are case-insensitive and may repeat.
    pub headers: Vec<(String, String)>,
}

impl Default for HttpRequest {
    fn default() -> Self {
        HttpRequest { method: "GET".to_string(), path: "/".to_string(), host: None, headers: Vec::new() }
    }
}

impl HttpRequest {
    /// A request with this method and path and nothing else.
    pub fn new(method: &str, path: &str) -> Self {
        HttpRequest { method: method.to_string(), path: path.to_string(), ..HttpRequest::default() }
    }

    /// The request with this authority.
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = Some(host.to_string());
        self
    }

    /// The request with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    fn method_or_default(&self) -> &str {
        if self.method.is_empty() {
            "GET"
        } else {
            &self.method
        }
    }

    fn path_or_default(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }

    fn authority(&self) -> Option<&str> {
        match &self.host {
            Some(h) => Some(h),
            None => self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("host")).map(|(_, v)| v.as_str()),
        }
    }

    /// The value a header matcher sees for `name` (lowercase): pseudo-headers map to the request's fields, and a
    /// repeated header is its values joined by `,`.
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            ":method" => Some(Cow::Borrowed(self.method_or_default())),
            ":path" => Some(Cow::Borrowed(self.path_or_default())),
            ":authority" | "host" => self.authority().map(Cow::Borrowed),
            _ => {
                let mut values = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v);
                let first = values.next()?;
                match values.next() {
                    None => Some(Cow::Borrowed(first.as_str())),
                    Some(second) => {
                        let mut joined = format!("{first},{second}");
                        for v in values {
                            joined.push(',');
                            joined.push_str(v);
                        }
                        Some(Cow::Owned(joined))
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// DNS
// ---------------------------------------------------------------------------------------------------------------

/// The longest `matchName` / `matchPattern`, also once fully qualified (`matchpattern.go:55`).
const MAX_FQDN_LENGTH: usize = 255;

/// Characters of a DNS label in a pattern's regex (`matchpattern.go:17`).
const LABEL_CHARS: &str = "[-a-zA-Z0-9_]";

/// Whether a pattern is only stars with at most one trailing dot (`matchpattern.go:29`).
fn is_match_all(pattern: &str) -> bool {
    let stars = pattern.strip_suffix('.').unwrap_or(pattern);
    !stars.is_empty() && stars.bytes().all(|b| b == b'*')
}

/// Lowercases as Go's `strings.ToLower` does (simple case mapping, one character for one).
fn go_lower(s: &str) -> String {
    s.chars().map(|c| c.to_lowercase().next().unwrap_or(c)).collect()
}

/// Whether `s` ends with an unescaped `.` (`dns.go:17-39`).
fn is_fqdn(s: &str) -> bool {
    match s.strip_suffix('.') {
        None => false,
        Some(rest) => {
            let backslashes = rest.len() - rest.trim_end_matches('\\').len();
            backslashes % 2 == 0
        }
    }
}

/// Lowercased and fully qualified (`dns.go:43-48`).
fn fqdn(s: &str) -> String {
    let mut out = go_lower(s);
    if !is_fqdn(s) {
        out.push('.');
    }
    out
}

/// The canonical pattern (`Sanitize`, `matchpattern.go:87-93`): all-star patterns stay as they are, others are
/// lowercased and fully qualified.
fn sanitize_pattern(pattern: &str) -> String {
    if is_match_all(pattern) {
        pattern.to_string()
    } else {
        fqdn(pattern)
    }
}

/// The anchored regex for a (validated) pattern, in the form `ToAnchoredRegexp` gives (`matchpattern.go:99-112`).
fn anchored_pattern_regex(pattern: &str) -> String {
    let pattern = go_lower(pattern.trim());
    if is_match_all(&pattern) {
        return format!("(^({LABEL_CHARS}+[.])+$)|(^[.]$)");
    }
    let mut out = String::from("^");
    let mut rest = pattern.as_str();
    // Two or more leading stars and a dot: one or more whole labels.
    let unstarred = rest.trim_start_matches('*');
    if rest.len() - unstarred.len() >= 2 {
        if let Some(after) = unstarred.strip_prefix('.') {
            out.push_str(&format!("({LABEL_CHARS}+([.]{LABEL_CHARS}+){{0,}})[.]"));
            rest = after;
        }
    }
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => out.push_str("[.]"),
            '*' => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                out.push_str(LABEL_CHARS);
                out.push('*');
            }
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => out.push(c),
            c => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    out.push('$');
    out
}

#[derive(Debug, Clone)]
enum DnsMatcher {
    /// A `matchName`: the canonical name.
    Exact(String),
    /// A `matchPattern`.
    Pattern(Regex),
}

/// A compiled `matchName` or `matchPattern` (of `toFQDNs` or of DNS rules on a port).
#[derive(Debug, Clone)]
pub struct DnsPattern {
    source: String,
    is_pattern: bool,
    matcher: DnsMatcher,
}

fn dns_error(field: &'static str, value: &str, reason: impl Into<String>) -> L7Error {
    L7Error::InvalidDnsName { field, value: value.to_string(), reason: reason.into() }
}

/// The checks shared by `matchName` and `matchPattern`: non-empty, length, characters, non-empty labels.
fn validate_dns(field: &'static str, value: &str, allowed: &str, allowed_desc: &str) -> Result<(), L7Error> {
    if value.is_empty() {
        return Err(dns_error(field, value, "must not be empty"));
    }
    if value.len() > MAX_FQDN_LENGTH {
        return Err(dns_error(field, value, format!("must be at most {MAX_FQDN_LENGTH} characters long")));
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || allowed.contains(*c))) {
        return Err(dns_error(field, value, format!("character {bad:?} is not allowed; only {allowed_desc} are")));
    }
    // The CRD schema's `^([-a-zA-Z0-9_*]+[.]?)+$`: labels are non-empty.
    if value.starts_with('.') || value.contains("..") {
        return Err(dns_error(field, value, "labels must not be empty (no leading '.' and no '..')"));
    }
    Ok(())
}

fn check_canonical_length(field: &'static str, value: &str, canonical: &str) -> Result<(), L7Error> {
    if canonical.len() > MAX_FQDN_LENGTH {
        return Err(dns_error(
            field,
            value,
            format!("is longer than {MAX_FQDN_LENGTH} characters once the trailing '.' is added"),
        ));
    }
    Ok(())
}

impl DnsPattern {
    /// Validates and compiles a `matchPattern`.
    pub fn parse(pattern: &str) -> Result<Self, L7Error> {
        const FIELD: &str = "matchPattern";
        validate_dns(FIELD, pattern, "-_.*", "0-9, a-z, A-Z, '-', '_', '.' and '*'")?;
        let canonical = sanitize_pattern(pattern);
        check_canonical_length(FIELD, pattern, &canonical)?;
        let regex = build_regex(&anchored_pattern_regex(&canonical))
            .map_err(|e| dns_error(FIELD, pattern, format!("does not compile: {e}")))?;
        Ok(DnsPattern { source: pattern.to_string(), is_pattern: true, matcher: DnsMatcher::Pattern(regex) })
    }

    /// Validates and compiles a `matchName`.
    pub fn parse_name(name: &str) -> Result<Self, L7Error> {
        const FIELD: &str = "matchName";
        validate_dns(FIELD, name, "-_.", "0-9, a-z, A-Z, '-', '_' and '.'")?;
        let canonical = fqdn(name);
        check_canonical_length(FIELD, name, &canonical)?;
        Ok(DnsPattern { source: name.to_string(), is_pattern: false, matcher: DnsMatcher::Exact(canonical) })
    }

    /// Compiles a selector with `matchName` and `matchPattern` fields (empty: absent); exactly one must be set.
    pub fn from_selector(match_name: &str, match_pattern: &str) -> Result<Self, L7Error> {
        match (match_name.is_empty(), match_pattern.is_empty()) {
            (false, false) => Err(L7Error::BothNameAndPattern),
            (true, true) => Err(L7Error::NeitherNameNorPattern),
            (false, true) => DnsPattern::parse_name(match_name),
            (true, false) => DnsPattern::parse(match_pattern),
        }
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether this is a `matchPattern` (otherwise a `matchName`).
    pub fn is_pattern(&self) -> bool {
        self.is_pattern
    }

    /// Whether a queried name matches. The name is lowercased and fully qualified first, as the DNS proxy does,
    /// so `WWW.Cilium.io` and `www.cilium.io.` are the same name.
    pub fn matches(&self, name: &str) -> bool {
        self.matches_canonical(&fqdn(name))
    }

    /// Matching without canonicalising the name (upstream's tests exercise the regex on raw strings).
    fn matches_canonical(&self, name: &str) -> bool {
        match &self.matcher {
            DnsMatcher::Exact(want) => name == want,
            DnsMatcher::Pattern(re) => re.is_match(name),
        }
    }
}

/// Whether one side's DNS rules on a port allow a query for `name`: some pattern matches it. An empty list is
/// no L7 restriction (`l4.go:298-300`) and allows every name. (For `toFQDNs`, where an empty list selects
/// nothing, use `patterns.iter().any(|p| p.matches(name))`.)
pub fn dns_allowed(patterns: &[DnsPattern], name: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| p.matches(name))
}

// ---------------------------------------------------------------------------------------------------------------
// A port's L7 rules, and the requests a flow may carry
// ---------------------------------------------------------------------------------------------------------------

/// One `matchName`/`matchPattern` selector as written (a `toFQDNs` entry, or a `rules.dns` entry): exactly one of
/// the two is set ([`DnsPattern::from_selector`] checks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DnsSelector {
    pub match_name: String,
    pub match_pattern: String,
}

impl fmt::Display for DnsSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.match_pattern.is_empty() {
            write!(f, "matchName {}", self.match_name)
        } else {
            write!(f, "matchPattern {}", self.match_pattern)
        }
    }
}

/// The L7 rules of one `toPorts` entry, as written (validated by the loader): requests on the entry's ports to
/// the rule's peers are filtered by them. At most one parser's rules are set (Cilium refuses a mix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct L7Rules {
    /// `rules.http`.
    pub http: Vec<PortRuleHttp>,
    /// `rules.dns`.
    pub dns: Vec<DnsSelector>,
    /// Another parser's rules (`kafka`, `l7proto`), which netpol does not judge: its name.
    pub other: Option<String>,
}

impl L7Rules {
    /// `HTTP`, `DNS` or the other parser's name.
    pub fn parser(&self) -> &str {
        match &self.other {
            Some(o) => o,
            None if !self.dns.is_empty() => "DNS",
            None => "HTTP",
        }
    }
}

impl fmt::Display for L7Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.other {
            return write!(f, "{o} rules (not judged by netpol)");
        }
        let mut parts: Vec<String> = self.http.iter().map(http_rule_text).collect();
        parts.extend(self.dns.iter().map(|d| format!("DNS {d}")));
        write!(f, "{}", parts.join("; "))
    }
}

/// `HTTP GET /public Host ^a$ headers [X-Token]`, the fields of a rule that are set (`HTTP any request` for the
/// empty rule).
pub fn http_rule_text(r: &PortRuleHttp) -> String {
    let mut s = String::from("HTTP");
    let mut any = true;
    for (field, v) in [("method", &r.method), ("path", &r.path), ("host", &r.host)] {
        if !v.is_empty() {
            s.push_str(&format!(" {field} `{v}`"));
            any = false;
        }
    }
    if !r.headers.is_empty() {
        s.push_str(&format!(" headers [{}]", r.headers.join(", ")));
        any = false;
    }
    for h in &r.header_matches {
        s.push_str(&format!(" header {} = `{}`", h.name, h.value));
        if !h.mismatch.is_empty() {
            s.push_str(&format!(" (mismatch: {})", h.mismatch));
        }
        any = false;
    }
    if any {
        s.push_str(" any request");
    }
    s
}

/// One request on a connection, as a flow may carry it (`http`, `dns` in the flow contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Http(HttpRequest),
    /// A DNS query for this name.
    Dns(String),
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Http(r) => {
                write!(f, "HTTP {} {}", r.method_or_default(), r.path_or_default())?;
                if let Some(h) = r.authority() {
                    write!(f, " (Host {h})")?;
                }
                Ok(())
            }
            Request::Dns(name) => write!(f, "DNS query {name}"),
        }
    }
}

/// [`L7Rules`] compiled: what the engine asks of a port's L7 rules.
#[derive(Debug, Clone)]
pub struct CompiledL7 {
    pub http: Vec<HttpRule>,
    pub dns: Vec<DnsPattern>,
    /// Another parser's rules: not judged (every request passes).
    pub other: bool,
}

impl CompiledL7 {
    /// Compiles rules the loader validated; a rule that does not compile (which the loader reported) is left out.
    pub fn new(rules: &L7Rules) -> CompiledL7 {
        CompiledL7 {
            http: rules.http.iter().filter_map(|r| HttpRule::compile(r).ok()).collect(),
            dns: rules
                .dns
                .iter()
                .filter_map(|d| DnsPattern::from_selector(&d.match_name, &d.match_pattern).ok())
                .collect(),
            other: rules.other.is_some(),
        }
    }

    /// Whether the rules let the request through: an HTTP request needs a matching HTTP rule, a DNS query a
    /// matching DNS rule (a proxy of one parser refuses the other's requests); another parser's rules are not
    /// judged. `None` is the connection itself, which the proxy accepts.
    pub fn allows(&self, req: Option<&Request>) -> bool {
        match req {
            None => true,
            Some(_) if self.other => true,
            Some(Request::Http(r)) => !self.http.is_empty() && self.http.iter().any(|h| h.matches(r)),
            Some(Request::Dns(name)) => !self.dns.is_empty() && self.dns.iter().any(|d| d.matches(name)),
        }
    }

    /// The index of the first rule that lets the request through, if any (explain's words).
    pub fn first_match(&self, req: &Request) -> Option<usize> {
        match req {
            Request::Http(r) => self.http.iter().position(|h| h.matches(r)),
            Request::Dns(name) => self.dns.iter().position(|d| d.matches(name)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    // Upstream test citations are cilium/cilium paths. The `*_test.go` files are not vendored at 2efb257c8533;
    // their line numbers are those of the copy in the code index, which could not be pinned to that commit.

    fn rule(spec: PortRuleHttp) -> HttpRule {
        match HttpRule::compile(&spec) {
            Ok(r) => r,
            Err(e) => panic!("rule {spec:?} did not compile: {e}"),
        }
    }

    fn path(p: &str) -> HttpRule {
        rule(PortRuleHttp { path: p.into(), ..Default::default() })
    }

    fn method(m: &str) -> HttpRule {
        rule(PortRuleHttp { method: m.into(), ..Default::default() })
    }

    fn headers(h: &[&str]) -> HttpRule {
        rule(PortRuleHttp { headers: h.iter().map(|s| s.to_string()).collect(), ..Default::default() })
    }

    fn header_match(name: &str, value: &str, mismatch: &str) -> HeaderMatchSpec {
        HeaderMatchSpec { name: name.into(), value: value.into(), mismatch: mismatch.into(), secret: None }
    }

    fn compile_err(spec: PortRuleHttp) -> L7Error {
        match HttpRule::compile(&spec) {
            Ok(_) => panic!("rule {spec:?} compiled"),
            Err(e) => e,
        }
    }

    fn pattern(p: &str) -> DnsPattern {
        match DnsPattern::parse(p) {
            Ok(d) => d,
            Err(e) => panic!("pattern {p:?} rejected: {e}"),
        }
    }

    fn name(n: &str) -> DnsPattern {
        match DnsPattern::parse_name(n) {
            Ok(d) => d,
            Err(e) => panic!("name {n:?} rejected: {e}"),
        }
    }

    fn dns_reason(r: Result<DnsPattern, L7Error>) -> String {
        match r {
            Ok(d) => panic!("{:?} accepted", d.as_str()),
            Err(L7Error::InvalidDnsName { reason, .. }) => reason,
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    // ---- HTTP ----

    // http.go:57-59: a rule with every field empty has no effect, i.e. allows everything.
    #[test]
    fn empty_rule_matches_every_request() {
        let r = rule(PortRuleHttp::default());
        assert!(r.matches(&HttpRequest::default()));
        assert!(r.matches(&HttpRequest::new("DELETE", "/x/y?z=1").with_host("h").with_header("A", "b")));
        assert!(!r.has_side_effects());
    }

    #[test]
    fn request_defaults_are_get_and_root() {
        let d = HttpRequest::default();
        assert_eq!((d.method.as_str(), d.path.as_str(), d.host.as_deref()), ("GET", "/", None));
        assert!(d.headers.is_empty());
        assert!(method("GET").matches(&d));
        assert!(!method("POST").matches(&d));
        assert!(path("/").matches(&d));
        assert!(!path("/index.html").matches(&d));
        // Empty fields read as the defaults too.
        let empty = HttpRequest { method: String::new(), path: String::new(), ..HttpRequest::default() };
        assert!(method("GET").matches(&empty));
        assert!(path("/").matches(&empty));
        // An empty rule field is no constraint.
        assert!(path("").matches(&HttpRequest::new("GET", "/a")));
        assert!(!method("G.*T").matches(&HttpRequest::new("POST", "")));
    }

    #[test]
    fn path_is_anchored_at_both_ends() {
        let r = path("/public");
        assert!(r.matches(&HttpRequest::new("GET", "/public")));
        assert!(!r.matches(&HttpRequest::new("GET", "/public/x")));
        assert!(!r.matches(&HttpRequest::new("GET", "/x/public")));
        assert!(path("/public/.*").matches(&HttpRequest::new("GET", "/public/x")));
        assert!(!path("/public/.*").matches(&HttpRequest::new("GET", "/public")));
        // Explicit anchors in the pattern are harmless.
        assert!(path("^/public$").matches(&HttpRequest::new("GET", "/public")));
    }

    #[test]
    fn alternation_is_anchored_as_a_whole() {
        // `GET|PUT` is `^(?:GET|PUT)$`, not `^GET|PUT$`.
        let r = method("GET|PUT");
        for m in ["GET", "PUT"] {
            assert!(r.matches(&HttpRequest::new(m, "/")), "{m}");
        }
        for m in ["GETX", "XPUT", "PUTGET", "GE", "get", "POST"] {
            assert!(!r.matches(&HttpRequest::new(m, "/")), "{m}");
        }
    }

    #[test]
    fn path_includes_the_query_string() {
        let q = HttpRequest::new("GET", "/a?x=1");
        assert!(!path("/a").matches(&q));
        assert!(path("/a.*").matches(&q));
        assert!(path(r"/a\?x=[0-9]+").matches(&q));
    }

    #[test]
    fn regex_syntax_shared_by_re2_and_posix_ere() {
        // Bracket expressions, POSIX character classes, repetition counts, grouping.
        let r = path("/api/v[0-9]{1,2}/[[:alpha:]]+(/[a-z_-]+)*");
        assert!(r.matches(&HttpRequest::new("GET", "/api/v1/users")));
        assert!(r.matches(&HttpRequest::new("GET", "/api/v12/users/by-name/x_y")));
        assert!(!r.matches(&HttpRequest::new("GET", "/api/v123/users")));
        assert!(!r.matches(&HttpRequest::new("GET", "/api/v1/users1")));
        assert!(!r.matches(&HttpRequest::new("GET", "/api/v1/")));
        // Envoy matches methods case-sensitively.
        assert!(!method("GET").matches(&HttpRequest::new("get", "/")));
    }

    #[test]
    fn invalid_regex_is_an_error_naming_the_field() {
        let cases = [
            (PortRuleHttp { path: "(".into(), ..Default::default() }, "path"),
            (PortRuleHttp { method: "[GET".into(), ..Default::default() }, "method"),
            // Would be valid once wrapped in `(?:…)`; must still be rejected.
            (PortRuleHttp { host: "a)|(b".into(), ..Default::default() }, "host"),
            // Backreferences are neither RE2 nor this crate.
            (PortRuleHttp { path: r"(a)\1".into(), ..Default::default() }, "path"),
        ];
        for (spec, field) in cases {
            match compile_err(spec) {
                L7Error::InvalidRegex { field: f, .. } => assert_eq!(f, field),
                e => panic!("unexpected {e}"),
            }
        }
        let msg = compile_err(PortRuleHttp { path: "(".into(), ..Default::default() }).to_string();
        assert!(msg.contains("`path`"), "{msg}");
    }

    // http.go:84-89: the documented host examples.
    #[test]
    fn host_regex_examples() {
        let loose = rule(PortRuleHttp { host: "foo.bar.com".into(), ..Default::default() });
        let strict = rule(PortRuleHttp { host: r"foo\.bar\.com".into(), ..Default::default() });
        for h in ["fooXbar.com", "foo-bar.com", "foo.bar.com"] {
            assert!(loose.matches(&HttpRequest::default().with_host(h)), "{h}");
        }
        assert!(strict.matches(&HttpRequest::default().with_host("foo.bar.com")));
        assert!(!strict.matches(&HttpRequest::default().with_host("fooXbar.com")));
        assert!(!strict.matches(&HttpRequest::default().with_host("foo.bar.com:8080")));
        assert!(!strict.matches(&HttpRequest::default().with_host("www.foo.bar.com")));
    }

    #[test]
    fn host_needs_an_authority_and_falls_back_to_the_host_header() {
        let r = rule(PortRuleHttp { host: r"api\.example".into(), ..Default::default() });
        assert!(!r.matches(&HttpRequest::default()));
        assert!(r.matches(&HttpRequest::default().with_header("HOST", "api.example")));
        // An explicit authority wins over a Host header.
        assert!(!r.matches(&HttpRequest::default().with_host("other").with_header("Host", "api.example")));
    }

    #[test]
    fn header_presence_with_case_insensitive_names() {
        let r = headers(&["X-Token"]);
        assert!(r.matches(&HttpRequest::default().with_header("x-token", "")));
        assert!(r.matches(&HttpRequest::default().with_header("X-TOKEN", "anything")));
        assert!(!r.matches(&HttpRequest::default().with_header("X-Tokens", "a")));
        assert!(!r.matches(&HttpRequest::default()));
    }

    // envoy_l7_rules_translator.go:118-141: split at the first space; trailing colons of the name are dropped.
    #[test]
    fn header_value_forms() {
        let ok = |r: &HttpRule, name: &str, value: &str| r.matches(&HttpRequest::default().with_header(name, value));
        for form in ["X-Key: true", "X-Key true", "X-Key:: true"] {
            let r = headers(&[form]);
            assert!(ok(&r, "x-key", "true"), "{form}");
            assert!(!ok(&r, "x-key", "True"), "{form}: values are case-sensitive");
            assert!(!ok(&r, "x-key", "true "), "{form}: values are exact");
            assert!(!r.matches(&HttpRequest::default()), "{form}: absent header");
        }
        // Everything after the first space is the value, spaces included.
        let r = headers(&["X-Key:  two words"]);
        assert!(ok(&r, "X-Key", " two words"));
        assert!(!ok(&r, "X-Key", "two words"));
        // A trailing space gives an empty exact value: the header must be present and empty.
        let r = headers(&["X-Key "]);
        assert!(ok(&r, "X-Key", ""));
        assert!(!ok(&r, "X-Key", "v"));
        assert!(!r.matches(&HttpRequest::default()));
        // Without a space nothing is stripped: the name keeps its colon and can never be present.
        let r = headers(&["X-Key:"]);
        assert!(!ok(&r, "X-Key", "true"));
        assert!(!ok(&r, "X-Key", ""));
    }

    #[test]
    fn every_header_requirement_must_hold() {
        let r = headers(&["A 1", "B"]);
        assert!(r.matches(&HttpRequest::default().with_header("a", "1").with_header("b", "")));
        assert!(!r.matches(&HttpRequest::default().with_header("a", "1")));
        assert!(!r.matches(&HttpRequest::default().with_header("b", "x")));
    }

    #[test]
    fn repeated_headers_match_as_comma_joined_value() {
        let r = headers(&["Accept a,b"]);
        let both = HttpRequest::default().with_header("Accept", "a").with_header("accept", "b");
        assert!(r.matches(&both));
        assert!(!r.matches(&HttpRequest::default().with_header("Accept", "a")));
        assert!(!headers(&["Accept a"]).matches(&both));
        let three =
            HttpRequest::default().with_header("Accept", "a").with_header("Accept", "b").with_header("Accept", "c");
        assert!(headers(&["Accept a,b,c"]).matches(&three));
        assert!(!headers(&["Accept a,b, c"]).matches(&three));
        assert!(headers(&["Accept a,b,c"]).matches(
            &HttpRequest::default().with_header("Accept", "a").with_header("X", "y").with_header("ACCEPT", "b,c")
        ));
    }

    #[test]
    fn pseudo_header_names_refer_to_request_fields() {
        assert!(headers(&[":method POST"]).matches(&HttpRequest::new("POST", "/")));
        assert!(!headers(&[":method POST"]).matches(&HttpRequest::new("GET", "/")));
        assert!(headers(&[":path /"]).matches(&HttpRequest::default()));
        assert!(headers(&[":authority"]).matches(&HttpRequest::default().with_host("h")));
        assert!(!headers(&[":authority"]).matches(&HttpRequest::default()));
        // Envoy keeps the Host header as `:authority`; `host` names the same entry.
        assert!(headers(&["Host api.example"]).matches(&HttpRequest::default().with_host("api.example")));
        assert!(!headers(&["Host api.example"]).matches(&HttpRequest::default().with_host("other")));
    }

    // envoy_l7_rules_translator_test.go:19-24 (PortRuleHTTP1) and :26 (ExpectedHeaders1), TestGetHTTPRule: the
    // rule becomes :authority/:method/:path regexes, presence of header1 and header2 == "value".
    #[test]
    fn upstream_port_rule_http1() {
        let r = rule(PortRuleHttp {
            path: "/foo".into(),
            method: "GET".into(),
            host: "foo.cilium.io".into(),
            headers: vec!["header2: value".into(), "header1".into()],
            header_matches: vec![],
        });
        let good = HttpRequest::new("GET", "/foo")
            .with_host("foo.cilium.io")
            .with_header("header1", "whatever")
            .with_header("header2", "value");
        assert!(r.matches(&good));
        assert!(!r.has_side_effects());
        let mut bad = vec![
            HttpRequest { path: "/foo/bar".into(), ..good.clone() },
            HttpRequest { method: "POST".into(), ..good.clone() },
            HttpRequest { host: Some("bar.cilium.io".into()), ..good.clone() },
            HttpRequest { host: None, ..good.clone() },
        ];
        bad.push(HttpRequest { headers: vec![("header2".into(), "value".into())], ..good.clone() });
        bad.push(HttpRequest { headers: vec![("header1".into(), "x".into())], ..good.clone() });
        bad.push(HttpRequest {
            headers: vec![("header1".into(), "x".into()), ("header2".into(), "other".into())],
            ..good.clone()
        });
        for req in bad {
            assert!(!r.matches(&req), "{req:?}");
        }
    }

    // envoy_l7_rules_translator.go:175-213: fail-on-mismatch entries become exact or presence matchers.
    #[test]
    fn header_matches_fail_on_mismatch() {
        let exact =
            rule(PortRuleHttp { header_matches: vec![header_match("X-Auth", "s3cret", "")], ..Default::default() });
        assert!(exact.matches(&HttpRequest::default().with_header("x-auth", "s3cret")));
        assert!(!exact.matches(&HttpRequest::default().with_header("x-auth", "S3CRET")));
        assert!(!exact.matches(&HttpRequest::default()));
        let present = rule(PortRuleHttp { header_matches: vec![header_match("X-Auth", "", "")], ..Default::default() });
        assert!(present.matches(&HttpRequest::default().with_header("X-AUTH", "anything")));
        assert!(!present.matches(&HttpRequest::default()));
        assert!(!exact.has_side_effects() && !present.has_side_effects());
    }

    // cilium-envoy: LOG/ADD/DELETE/REPLACE act on the request but never make the rule fail; the translator then
    // turns off short-circuiting (envoy_l7_rules_translator.go:248).
    #[test]
    fn header_matches_other_actions_never_deny() {
        for action in ["LOG", "ADD", "DELETE", "REPLACE"] {
            let r = rule(PortRuleHttp {
                path: "/x".into(),
                header_matches: vec![header_match("X-Auth", "v", action)],
                ..Default::default()
            });
            assert!(r.has_side_effects(), "{action}");
            assert!(r.matches(&HttpRequest::new("GET", "/x")), "{action}: header absent");
            assert!(r.matches(&HttpRequest::new("GET", "/x").with_header("X-Auth", "wrong")), "{action}");
            assert!(!r.matches(&HttpRequest::new("GET", "/y")), "{action}: other fields still apply");
        }
    }

    // http.go:139-151: the agent's checks of headerMatches.
    #[test]
    fn header_matches_validation() {
        let with = |hm: HeaderMatchSpec| compile_err(PortRuleHttp { header_matches: vec![hm], ..Default::default() });
        assert_eq!(with(header_match("", "v", "")), L7Error::HeaderNameMissing);
        assert_eq!(
            with(header_match("X", "v", "log")),
            L7Error::InvalidMismatchAction { name: "X".into(), action: "log".into() }
        );
        let secret = |name: &str| HeaderMatchSpec {
            secret: Some(SecretRef { namespace: "ns".into(), name: name.into() }),
            ..header_match("X", "fallback", "")
        };
        assert_eq!(with(secret("")), L7Error::SecretNameMissing { name: "X".into() });
        assert_eq!(with(secret("s")), L7Error::SecretNotModelled { name: "X".into() });
        assert!(with(secret("s")).to_string().contains("not modelled"));
    }

    #[test]
    fn allowed_if_any_rule_matches() {
        let rules = [path("/a"), method("POST")];
        assert!(http_allowed(&rules, &HttpRequest::new("GET", "/a")));
        assert!(http_allowed(&rules, &HttpRequest::new("POST", "/b")));
        assert!(!http_allowed(&rules, &HttpRequest::new("GET", "/b")));
        // l4.go:298-300: no rules, no L7 restriction.
        assert!(http_allowed(&[], &HttpRequest::new("DELETE", "/anything")));
    }

    #[test]
    fn rule_deserialises_from_policy_json() {
        let json = r#"{"method":"GET","path":"/v1/.*","headers":["X-A: 1"],
            "headerMatches":[{"name":"X-B","value":"2"},{"name":"X-C","mismatch":"LOG","value":"3"}]}"#;
        let spec: PortRuleHttp = match serde_json::from_str(json) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(spec.header_matches.len(), 2);
        assert_eq!(spec.header_matches[1].mismatch, "LOG");
        let r = rule(spec);
        let req = HttpRequest::new("GET", "/v1/x").with_header("x-a", "1").with_header("x-b", "2");
        assert!(r.matches(&req));
        assert!(!r.matches(&HttpRequest::new("GET", "/v1/x").with_header("x-a", "1")));
        assert!(r.has_side_effects());
        assert_eq!(r.spec().path, "/v1/.*");
    }

    // ---- DNS ----

    // matchpattern_test.go:19-31 TestAnchoredMatchPatternREConversion.
    #[test]
    fn upstream_anchored_regex_conversion() {
        let g = LABEL_CHARS;
        for (source, target) in [
            ("cilium.io.", "^cilium[.]io[.]$".to_string()),
            ("*.cilium.io.", format!("^{g}*[.]cilium[.]io[.]$")),
            ("*", format!("(^({g}+[.])+$)|(^[.]$)")),
            (".", "^[.]$".to_string()),
        ] {
            assert_eq!(anchored_pattern_regex(source), target, "{source}");
            assert!(Regex::new(&target).is_ok());
        }
    }

    // matchpattern.go:19-23, 135-137: `**.` at the start becomes the multi-label group; elsewhere `**` is `*`.
    #[test]
    fn multi_label_prefix_conversion() {
        let g = LABEL_CHARS;
        assert_eq!(anchored_pattern_regex("**.cilium.io."), format!("^({g}+([.]{g}+){{0,}})[.]cilium[.]io[.]$"));
        assert_eq!(anchored_pattern_regex("***.io."), format!("^({g}+([.]{g}+){{0,}})[.]io[.]$"));
        assert_eq!(anchored_pattern_regex("a.**.io."), format!("^a[.]{g}*[.]io[.]$"));
        assert_eq!(anchored_pattern_regex("**cilium.io."), format!("^{g}*cilium[.]io[.]$"));
        assert_eq!(anchored_pattern_regex("**"), format!("(^({g}+[.])+$)|(^[.]$)"));
        assert_eq!(anchored_pattern_regex("**."), format!("(^({g}+[.])+$)|(^[.]$)"));
        assert_eq!(anchored_pattern_regex(" Cilium.IO. "), "^cilium[.]io[.]$");
    }

    // matchpattern_test.go:52-106 TestAnchoredMatchPatternMatching: the regex on raw (already canonical) strings.
    #[test]
    fn upstream_anchored_pattern_matching() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("cilium.io.", &["cilium.io."], &["", "anysub.cilium.io.", "anysub.ci.io.", "anysub.ciliumandmore.io."]),
            ("*.cilium.io.", &["anysub.cilium.io."], &["", "cilium.io.", "anysub.ci.io.", "anysub.ciliumandmore.io."]),
            ("*.ci*.io.", &["anysub.cilium.io.", "anysub.ci.io.", "anysub.ciliumandmore.io."], &["", "cilium.io."]),
            (
                "*",
                &[
                    ".",
                    "io.",
                    "cilium.io.",
                    "svc.cluster.local.",
                    "service.namesace.svc.cluster.local.",
                    "_foobar._tcp.cilium.io.",
                ],
                &["", ".io.", ".cilium.io.", ".svc.cluster.local.", "cilium.io"],
            ),
            (".", &["."], &["", ".io.", ".cilium.io"]),
            ("_foobar._tcp.cilium.io.", &["_foobar._tcp.cilium.io."], &["", "_tcp.cilium.io.", "cilium.io."]),
            ("*.*.cilium.io.", &["_foobar._tcp.cilium.io."], &[""]),
        ];
        for (pat, accept, reject) in cases {
            let re = match Regex::new(&anchored_pattern_regex(pat)) {
                Ok(re) => re,
                Err(e) => panic!("{pat}: {e}"),
            };
            for a in *accept {
                assert!(re.is_match(a), "{pat} should accept {a:?}");
            }
            for r in *reject {
                assert!(!re.is_match(r), "{pat} should reject {r:?}");
            }
            // The compiled pattern agrees on the same raw strings (`.` alone is refused by the CRD schema).
            if *pat != "." {
                let p = pattern(pat);
                for a in *accept {
                    assert!(p.matches_canonical(a), "{pat} compiled should accept {a:?}");
                }
                for r in *reject {
                    assert!(!p.matches_canonical(r), "{pat} compiled should reject {r:?}");
                }
            }
        }
    }

    // matchpattern_test.go:109-117 TestMatchPatternSanitize.
    #[test]
    fn upstream_sanitize() {
        for (source, target) in [("*", "*"), ("*.", "*."), ("*.com", "*.com."), ("**", "**"), ("A.Com", "a.com.")] {
            assert_eq!(sanitize_pattern(source), target, "{source}");
        }
    }

    // fqdn.go:50-60: the documented examples.
    #[test]
    fn documented_pattern_examples() {
        let check = |p: &str, yes: &[&str], no: &[&str]| {
            let d = pattern(p);
            for n in yes {
                assert!(d.matches(n), "{p} should match {n}");
            }
            for n in no {
                assert!(!d.matches(n), "{p} should not match {n}");
            }
        };
        check("*.cilium.io", &["www.cilium.io", "blog.cilium.io"], &["cilium.io", "google.com", "a.b.cilium.io"]);
        check("*cilium.io", &["cilium.io", "subcilium.io", "sub-cilium.io"], &["www.cilium.io", "blog.cilium.io"]);
        check(
            "sub*.cilium.io",
            &["sub.cilium.io", "subdomain.cilium.io"],
            &["www.cilium.io", "blog.cilium.io", "cilium.io", "google.com"],
        );
        check(
            "**.cilium.io",
            &["app.cilium.io", "test.app.cilium.io", "a.b.c.d.cilium.io"],
            &["cilium.io", "xcilium.io"],
        );
        // `**` not at the start is one label, like `*`.
        check("a.**.io", &["a.b.io", "a..io"], &["a.b.c.io"]);
        check("***.io", &["x.io", "x.y.io"], &["io"]);
    }

    #[test]
    fn match_all_patterns() {
        for p in ["*", "**", "*.", "**.", "***"] {
            let d = pattern(p);
            for n in ["io", "cilium.io.", "a.b.c.d.example.com", "_srv._tcp.x", "."] {
                assert!(d.matches(n), "{p} should match {n}");
            }
            // Only names made of DNS label characters.
            for n in ["bad name.com", "a/b.com", "a..b", "é.com"] {
                assert!(!d.matches(n), "{p} should not match {n:?}");
            }
        }
    }

    #[test]
    fn names_compare_lowercased_and_fully_qualified() {
        let n = name("Cilium.IO");
        for q in ["cilium.io", "cilium.io.", "CILIUM.io", "cIlIuM.Io."] {
            assert!(n.matches(q), "{q}");
        }
        for q in ["www.cilium.io", "cilium.io..", "cilium.com", "cilium-io", "ciliumxio"] {
            assert!(!n.matches(q), "{q}");
        }
        assert!(!n.is_pattern());
        assert_eq!(n.as_str(), "Cilium.IO");
        // A matchName's `.` is literal (`matchpattern.go:133`).
        assert!(!name("a.b").matches("axb"));
        let p = pattern("*.Cilium.IO");
        assert!(p.is_pattern());
        assert!(p.matches("WWW.cilium.io"));
        assert!(p.matches("www.cilium.io."));
        assert!(!p.matches("cilium.io"));
        // Go's strings.ToLower maps KELVIN SIGN to `k`; so does this module.
        assert!(name("k8s.io").matches("\u{212A}8s.io"));
    }

    #[test]
    fn escaped_trailing_dot_is_not_fully_qualified() {
        assert!(is_fqdn("a."));
        assert!(is_fqdn("a\\\\."));
        assert!(!is_fqdn("a\\."));
        assert!(!is_fqdn("a"));
        assert!(!is_fqdn(""));
        assert_eq!(fqdn("A\\."), "a\\..");
        assert_eq!(fqdn("A."), "a.");
    }

    // fqdn_test.go:14-40 TestFQDNSelectorSanitize (and :44 TestPortRuleDNSSanitize, same cases).
    #[test]
    fn upstream_selector_sanitize() {
        for (n, p) in [
            ("cilium.io.", ""),
            ("get-cilium.io.", ""),
            ("foo.cilium.io.", ""),
            ("cilium.io", ""),
            ("_cilium.io", ""),
            ("", "*.cilium.io"),
            ("", "*._cilium.io"),
            ("", "*cilium.io"),
            ("", "cilium.io"),
        ] {
            assert!(DnsPattern::from_selector(n, p).is_ok(), "{n:?} {p:?}");
        }
        for (n, p) in [("a{1,2}.cilium.io.", ""), ("", "[a-z]*.cilium.io."), ("cilium.io", "*cilium.io")] {
            assert!(DnsPattern::from_selector(n, p).is_err(), "{n:?} {p:?}");
        }
        assert_eq!(DnsPattern::from_selector("cilium.io", "*cilium.io").err(), Some(L7Error::BothNameAndPattern));
        assert_eq!(DnsPattern::from_selector("", "").err(), Some(L7Error::NeitherNameNorPattern));
        assert!(DnsPattern::from_selector("x.io", "").is_ok_and(|d| !d.is_pattern()));
        assert!(DnsPattern::from_selector("", "x.io").is_ok_and(|d| d.is_pattern()));
    }

    #[test]
    fn dns_validation_errors() {
        assert!(dns_reason(DnsPattern::parse("")).contains("empty"));
        assert!(dns_reason(DnsPattern::parse_name("")).contains("empty"));
        // Characters (matchpattern.go:79-81, fqdn.go:104-106).
        assert!(dns_reason(DnsPattern::parse("a b.io")).contains("' '"));
        assert!(dns_reason(DnsPattern::parse("a/b.io")).contains("'/'"));
        assert!(dns_reason(DnsPattern::parse_name("*.io")).contains("'*'"));
        assert!(dns_reason(DnsPattern::parse_name("é.io")).contains("'é'"));
        // Empty labels (the CRD schema, fqdn.go:38 and :63).
        for bad in [".io", "a..io", "."] {
            assert!(dns_reason(DnsPattern::parse(bad)).contains("labels"), "{bad}");
            assert!(dns_reason(DnsPattern::parse_name(bad)).contains("labels"), "{bad}");
        }
        // Length: 255 at most, also once the trailing dot is added (matchpattern.go:76-78).
        let label = "a".repeat(63);
        let n253 = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(n253.len(), 253);
        assert!(DnsPattern::parse_name(&n253).is_ok());
        let n254 = format!("{n253}c");
        assert!(DnsPattern::parse_name(&n254).is_ok());
        assert!(DnsPattern::parse_name(&format!("{n254}.")).is_ok());
        assert!(dns_reason(DnsPattern::parse_name(&format!("{n254}d"))).contains("trailing"));
        assert!(dns_reason(DnsPattern::parse(&format!("{n254}d"))).contains("trailing"));
        assert!(dns_reason(DnsPattern::parse(&format!("{n254}de"))).contains("at most 255"));
        let msg = match DnsPattern::parse("a b") {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        assert!(msg.starts_with("invalid matchPattern \"a b\""), "{msg}");
    }

    #[test]
    fn dns_allowed_if_any_pattern_matches() {
        let rules = [name("api.example.com"), pattern("*.internal")];
        assert!(dns_allowed(&rules, "API.example.com."));
        assert!(dns_allowed(&rules, "db.internal"));
        assert!(!dns_allowed(&rules, "example.com"));
        assert!(!dns_allowed(&rules, "a.b.internal"));
        assert!(dns_allowed(&[], "anything.at.all"));
    }
}
