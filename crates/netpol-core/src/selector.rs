//! Label selectors: validation of label keys/values (as the API server does) and matching.
//!
//! A [`Selector`] is built once from k8s-openapi's `LabelSelector` at the load boundary and is always valid
//! afterwards. Its `Display` prints kubectl syntax (`app=web,tier in (api,db),!legacy`).

use std::fmt;
use std::sync::Arc;

pub use crate::labels::{Atom, Labels};

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requirement {
    /// `key in (values)`; `matchLabels` entries become `In` with one value.
    In(Atom, Vec<Atom>),
    NotIn(Atom, Vec<Atom>),
    Exists(Atom),
    DoesNotExist(Atom),
}

impl Requirement {
    pub fn key(&self) -> &str {
        match self {
            Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::DoesNotExist(k) => k,
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.iter().any(|x| &**x == v)),
            // Upstream: NotIn matches when the key is absent too.
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| vs.iter().all(|x| &**x != v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::In(k, vs) if vs.len() == 1 => write!(f, "{k}={}", vs[0]),
            Requirement::In(k, vs) => write!(f, "{k} in ({})", vs.join(",")),
            Requirement::NotIn(k, vs) => write!(f, "{k} notin ({})", vs.join(",")),
            Requirement::Exists(k) => write!(f, "{k}"),
            Requirement::DoesNotExist(k) => write!(f, "!{k}"),
        }
    }
}

/// A validated label selector. No requirements = selects everything (`{}`). Cloning is a reference-count
/// increment.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    reqs: Arc<[Requirement]>,
}

impl Default for Selector {
    fn default() -> Self {
        Selector::everything()
    }
}

impl Selector {
    /// The empty selector `{}`, which selects everything.
    pub fn everything() -> Self {
        Selector { reqs: Arc::from([]) }
    }

    /// Builds a selector from requirements; they are sorted and de-duplicated so that equal selectors compare
    /// equal.
    pub fn from_requirements(mut reqs: Vec<Requirement>) -> Self {
        for r in &mut reqs {
            if let Requirement::In(_, vs) | Requirement::NotIn(_, vs) = r {
                vs.sort();
                vs.dedup();
            }
        }
        reqs.sort();
        reqs.dedup();
        Selector { reqs: reqs.into() }
    }

    /// The shared copy of this selector, its strings interned.
    pub(crate) fn interned(self, i: &mut crate::labels::Interner) -> Selector {
        if let Some(s) = i.selectors.get(&self) {
            return s.clone();
        }
        let atoms = |i: &mut crate::labels::Interner, vs: &[Atom]| vs.iter().map(|v| i.atom(v)).collect();
        let reqs: Arc<[Requirement]> = self
            .reqs
            .iter()
            .map(|r| match r {
                Requirement::In(k, vs) => Requirement::In(i.atom(k), atoms(i, vs)),
                Requirement::NotIn(k, vs) => Requirement::NotIn(i.atom(k), atoms(i, vs)),
                Requirement::Exists(k) => Requirement::Exists(i.atom(k)),
                Requirement::DoesNotExist(k) => Requirement::DoesNotExist(i.atom(k)),
            })
            .collect();
        let s = Selector { reqs };
        i.selectors.insert(s.clone());
        s
    }

    /// Convenience: `matchLabels` only.
    pub fn from_labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::from_requirements(pairs.into_iter().map(|(k, v)| Requirement::In(k.into(), vec![v.into()])).collect())
    }

    pub fn is_everything(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether both are the same shared copy (selectors interned by one load are).
    pub fn same_allocation(&self, other: &Selector) -> bool {
        Arc::ptr_eq(&self.reqs, &other.reqs)
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.reqs
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.reqs.iter().all(|r| r.matches(labels))
    }

    /// The requirements that `labels` fails, for explanations.
    pub fn failed_requirements<'a>(&'a self, labels: &'a Labels) -> impl Iterator<Item = &'a Requirement> + 'a {
        self.reqs.iter().filter(move |r| !r.matches(labels))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reqs.is_empty() {
            return f.write_str("{}");
        }
        for (i, r) in self.reqs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Prints labels as `k=v,k2=v2` (or `<none>`).
pub fn format_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return "<none>".to_string();
    }
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

// ---- validation (apimachinery's validation rules) ----

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// A "name" part of a qualified name, or a label value when non-empty: `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, ≤ 63.
fn check_name_part(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    let ok_chars = s.chars().all(|c| is_alnum(c) || c == '-' || c == '_' || c == '.');
    let first_last = s.chars().next().is_some_and(is_alnum) && s.chars().last().is_some_and(is_alnum);
    if !ok_chars || !first_last {
        return Err("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
                    alphanumeric character"
            .into());
    }
    Ok(())
}

/// RFC 1123 subdomain: lowercase alphanumerics, '-' and '.', ≤ 253, labels start/end alphanumeric.
pub fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    for part in s.split('.') {
        if part.is_empty()
            || !part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || part.starts_with('-')
            || part.ends_with('-')
        {
            return Err("must be a lowercase RFC 1123 subdomain: lowercase alphanumeric characters, '-' or '.', \
                        starting and ending with an alphanumeric character"
                .into());
        }
    }
    Ok(())
}

/// RFC 1123 label (namespace names): lowercase alphanumerics and '-', ≤ 63.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || s.starts_with('-')
        || s.ends_with('-')
    {
        return Err("must be a lowercase RFC 1123 label: lowercase alphanumeric characters or '-', starting and \
                    ending with an alphanumeric character"
            .into());
    }
    Ok(())
}

/// A label key: `[prefix/]name`, prefix a DNS subdomain.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if name.contains('/') {
            return Err(format!("invalid label key `{key}`: at most one '/'"));
        }
        check_dns_subdomain(p).map_err(|e| format!("invalid label key `{key}`: prefix {e}"))?;
    }
    if name.is_empty() {
        return Err(format!("invalid label key `{key}`: name part must not be empty"));
    }
    check_name_part(name).map_err(|e| format!("invalid label key `{key}`: name part {e}"))
}

/// A label value: empty, or a name part.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name_part(value).map_err(|e| format!("invalid label value `{value}`: {e}"))
}

/// IANA service name (named ports): ≤ 15 chars, lowercase alphanumerics and '-', at least one letter, no leading,
/// trailing or double '-'.
pub fn check_port_name(s: &str) -> Result<(), String> {
    let bad = s.is_empty()
        || s.len() > 15
        || !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || !s.chars().any(|c| c.is_ascii_lowercase())
        || s.starts_with('-')
        || s.ends_with('-')
        || s.contains("--");
    if bad {
        return Err(format!(
            "invalid port name `{s}`: must be an IANA service name (at most 15 lowercase alphanumeric characters or \
             '-', with at least one letter, and no leading, trailing or double '-')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().copied().collect()
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(Selector::everything().matches(&Labels::new()));
        assert!(Selector::everything().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn operators() {
        let l = labels(&[("app", "web"), ("tier", "fe")]);
        assert!(Requirement::In("app".into(), vec!["web".into(), "x".into()]).matches(&l));
        assert!(!Requirement::In("app".into(), vec!["x".into()]).matches(&l));
        assert!(!Requirement::In("missing".into(), vec!["x".into()]).matches(&l));
        assert!(Requirement::NotIn("app".into(), vec!["x".into()]).matches(&l));
        assert!(!Requirement::NotIn("app".into(), vec!["web".into()]).matches(&l));
        // NotIn matches a missing key, as upstream.
        assert!(Requirement::NotIn("missing".into(), vec!["web".into()]).matches(&l));
        assert!(Requirement::Exists("tier".into()).matches(&l));
        assert!(!Requirement::Exists("nope".into()).matches(&l));
        assert!(Requirement::DoesNotExist("nope".into()).matches(&l));
        assert!(!Requirement::DoesNotExist("app".into()).matches(&l));
    }

    #[test]
    fn requirements_are_anded() {
        let s = Selector::from_labels([("app", "web"), ("tier", "fe")]);
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "fe"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
    }

    #[test]
    fn display_is_kubectl_syntax() {
        let s = Selector::from_requirements(vec![
            Requirement::In("app".into(), vec!["web".into()]),
            Requirement::In("tier".into(), vec!["db".into(), "api".into()]),
            Requirement::DoesNotExist("legacy".into()),
            Requirement::Exists("team".into()),
        ]);
        assert_eq!(s.to_string(), "app=web,tier in (api,db),team,!legacy");
        assert_eq!(Selector::everything().to_string(), "{}");
    }

    #[test]
    fn label_syntax() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("kubernetes.io/metadata.name").is_ok());
        assert!(check_label_key("app.kubernetes.io/part-of").is_ok());
        assert!(check_label_key("-app").is_err());
        assert!(check_label_key("a/b/c").is_err());
        assert!(check_label_key("Bad_Prefix/x").is_err());
        assert!(check_label_key("/x").is_err());
        assert!(check_label_key(&"a".repeat(64)).is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("v1.2_x-y").is_ok());
        assert!(check_label_value("has space").is_err());
        assert!(check_label_value("-x").is_err());
    }

    #[test]
    fn port_names() {
        assert!(check_port_name("http").is_ok());
        assert!(check_port_name("http-alt2").is_ok());
        assert!(check_port_name("8080").is_err());
        assert!(check_port_name("HTTP").is_err());
        assert!(check_port_name("a--b").is_err());
        assert!(check_port_name("averyveryverylongname").is_err());
    }
}
