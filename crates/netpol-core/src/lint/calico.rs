//! What the Calico-aware rules share: which policies are Calico's, the field paths of a Calico rule's sides, and
//! the reading of a Calico selector for "did you mean": which of its terms can never hold on the endpoints of
//! the input (a label key no endpoint carries, a value no endpoint has), and which field of the manifest each term
//! came from (the loader combines `selector`, `namespaceSelector` and `serviceAccounts` into one selector, with
//! `pcns.`/`pcsa.` keys: the prefix tells the field back).
//!
//! Whether a selector matches anything is the engine's answer (its compiled entity rules, and the policies each
//! identity has); this module only explains why not.

use std::collections::{BTreeMap, BTreeSet};

use crate::calico_peer::CCalico;
use crate::calico_selector::Expr;
use crate::model::{calico_keys, Direction, NsId, Policy, PolicyKind};

use super::Ctx;

/// Whether a policy is one of Calico's kinds (NetworkPolicy or GlobalNetworkPolicy of `projectcalico.org/v3`).
pub fn is_calico(pol: &Policy) -> bool {
    matches!(pol.kind, PolicyKind::CalicoNetworkPolicy | PolicyKind::GlobalNetworkPolicy)
}

/// The name of a Calico rule's side: the peer's (`remote`: `source` of an ingress rule, `destination` of an
/// egress rule), or the subject's own.
pub fn side_name(dir: Direction, remote: bool) -> &'static str {
    match (dir, remote) {
        (Direction::Ingress, true) | (Direction::Egress, false) => "source",
        (Direction::Ingress, false) | (Direction::Egress, true) => "destination",
    }
}

/// Field path of a Calico rule's side: `spec.ingress[0].source`.
pub fn side_path(dir: Direction, rule: usize, remote: bool) -> String {
    format!("{}.{}", Ctx::rule_path(dir, rule), side_name(dir, remote))
}

/// Whether a compiled Calico entity rule matches pods only (a selector that matches no network set, no `nets`):
/// what a judgement over the pods of the input covers entirely.
pub fn pods_only(c: &CCalico) -> bool {
    c.sel.as_ref().is_some_and(|s| s.blocks.is_empty() && s.sets.is_empty()) && c.nets.is_none()
}

/// The terms of a conjunction, nested `&&` flattened.
pub fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::And(es) => es.iter().flat_map(conjuncts).collect(),
        e => vec![e],
    }
}

/// The label keys a selector reads.
fn keys(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::All | Expr::Global => {}
        Expr::Has(k)
        | Expr::Eq { key: k, .. }
        | Expr::Ne { key: k, .. }
        | Expr::Contains { key: k, .. }
        | Expr::StartsWith { key: k, .. }
        | Expr::EndsWith { key: k, .. }
        | Expr::In { key: k, .. }
        | Expr::NotIn { key: k, .. } => out.push(k.clone()),
        Expr::Not(e) => keys(e, out),
        Expr::And(es) | Expr::Or(es) => es.iter().for_each(|e| keys(e, out)),
    }
}

/// Whether a term is about namespaces only (its keys are `projectcalico.org/namespace` or namespace profile
/// labels): a `namespaceSelector`, or the own namespace a namespaced policy adds.
pub fn is_namespace_term(e: &Expr) -> bool {
    let mut k = Vec::new();
    keys(e, &mut k);
    !k.is_empty() && k.iter().all(|k| k == calico_keys::NAMESPACE || k.starts_with(calico_keys::NS_PREFIX))
}

/// Whether a namespace term only names namespaces (by `projectcalico.org/namespace`, or the name labels of the
/// namespace profile): one that matches no namespace of the input is about namespaces the input does not show.
pub fn names_namespaces(e: &Expr) -> bool {
    let name_key = |k: &str| {
        k == calico_keys::NAMESPACE
            || k.strip_prefix(calico_keys::NS_PREFIX)
                .is_some_and(|k| k == calico_keys::NAME || k == crate::load::NAMESPACE_NAME_LABEL)
    };
    match e {
        Expr::Eq { key, .. } | Expr::In { key, .. } => name_key(key),
        Expr::And(es) | Expr::Or(es) => es.iter().all(names_namespaces),
        _ => false,
    }
}

/// Whether a term is `global()` as a rule's `namespaceSelector` becomes (`!has(projectcalico.org/namespace)`).
pub fn is_global_term(e: &Expr) -> bool {
    matches!(e, Expr::Not(inner) if matches!(&**inner, Expr::Has(k) if k == calico_keys::NAMESPACE))
}

/// Terms joined by `&&` (one term alone, `all()` for none).
pub fn joined(terms: &[&Expr]) -> Expr {
    match terms {
        [] => Expr::All,
        [t] => (*t).clone(),
        ts => Expr::And(ts.iter().map(|t| (*t).clone()).collect()),
    }
}

/// `projectcalico.org/namespace == "<ns>"`: the own namespace the loader adds to a namespaced policy's selectors.
pub fn is_own_namespace(e: &Expr, ns: &str) -> bool {
    matches!(e, Expr::Eq { key, value } if key == calico_keys::NAMESPACE && value == ns)
}

/// A selector as its author wrote it, as near as the combined one tells: without the own-namespace term a
/// namespaced policy's selectors get.
pub fn shown(e: &Expr, own_ns: Option<&str>) -> String {
    let terms: Vec<Expr> =
        conjuncts(e).into_iter().filter(|t| own_ns.is_none_or(|ns| !is_own_namespace(t, ns))).cloned().collect();
    match terms.len() {
        0 => Expr::All.to_string(),
        1 => terms[0].to_string(),
        _ => Expr::And(terms).to_string(),
    }
}

/// The namespaces whose endpoints the namespace terms of a selector allow (every namespace without such terms).
pub fn namespaces_of(ctx: &Ctx, terms: &[&Expr]) -> Vec<NsId> {
    let c = &ctx.engine.cluster;
    (0..c.namespaces.len())
        .map(NsId::new)
        .filter(|&n| {
            let labels = crate::model::calico_labels(&Default::default(), c.ns(n), None, "");
            terms.iter().all(|t| t.matches(&labels))
        })
        .collect()
}

/// Which endpoints a selector is matched against: the subject's (pods), or a rule side's (pods and network sets).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Subject,
    RuleSide,
}

/// The labels the endpoints of the input carry, as Calico's selectors see them: key → values.
pub struct Universe {
    values: BTreeMap<String, BTreeSet<String>>,
    seen: Seen,
}

impl Universe {
    pub fn new(ctx: &Ctx, seen: Seen) -> Universe {
        let e = ctx.engine;
        let c = &e.cluster;
        let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut add = |labels: &crate::labels::Labels| {
            for (k, v) in labels.iter() {
                values.entry(k.to_string()).or_default().insert(v.to_string());
            }
        };
        for (i, ident) in e.identities.iter().enumerate() {
            if ident.host_network {
                continue;
            }
            match (e.ident_calico.get(i), ident.pods.first()) {
                (Some(l), _) => add(l),
                (None, Some(&p)) => add(&c.pod_calico_labels(c.pod(p))),
                (None, None) => {}
            }
        }
        if seen == Seen::RuleSide {
            for s in &c.network_sets {
                add(&crate::model::network_set_labels(s, s.ns.map(|n| c.ns(n))));
            }
        }
        Universe { values, seen }
    }

    /// What carries a key, in words: namespaces for `pcns.` keys, service accounts for `pcsa.` keys, else the
    /// endpoints.
    fn carrier(&self, key: &str) -> &'static str {
        if key.starts_with(calico_keys::NS_PREFIX) {
            "namespace"
        } else if key.starts_with(calico_keys::SA_PREFIX) {
            "service account"
        } else if self.seen == Seen::RuleSide {
            "pod or network set"
        } else {
            "pod"
        }
    }

    /// The closest known key of the same kind (namespace, service account or endpoint label), within two edits.
    fn closest_key(&self, key: &str) -> Option<String> {
        let (prefix, bare) = split(key);
        let candidates: Vec<&str> = self.values.keys().filter(|k| split(k).0 == prefix).map(|k| split(k).1).collect();
        closest(bare, candidates).map(|k| format!("{prefix}{k}"))
    }
}

/// The candidate closest to `given` within two edits ([`crate::suggest::distance`]); of equally close ones, one
/// with the same letters (a transposition: `wbe` is `web`, not `db`), then one of the same length.
fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let letters = |s: &str| {
        let mut v: Vec<char> = s.chars().collect();
        v.sort_unstable();
        v
    };
    let mine = letters(given);
    candidates
        .into_iter()
        .map(|c| (crate::suggest::distance(given, c), letters(c) != mine, c.len() != given.len(), c))
        .filter(|(d, ..)| *d <= 2)
        .min()
        .map(|(.., c)| c)
}

/// `pcns.`, `pcsa.` or no prefix, and the rest.
fn split(key: &str) -> (&'static str, &str) {
    for p in [calico_keys::NS_PREFIX, calico_keys::SA_PREFIX] {
        if let Some(rest) = key.strip_prefix(p) {
            return (p, rest);
        }
    }
    ("", key)
}

/// A term of a selector that can never hold on the endpoints of the input, and what to say about it.
pub struct Blame {
    /// The label key, as the combined selector has it (with its `pcns.`/`pcsa.` prefix).
    pub key: String,
    /// The finding's help: what no endpoint carries, and the closest that one does.
    pub help: String,
}

/// The terms that need their key present (`has`, `==`, `in`, `contains`, …; `!=` and `not in` under a
/// negation), each with whether it needs a value.
fn presence_terms<'a>(e: &'a Expr, negated: bool, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::Not(inner) => presence_terms(inner, !negated, out),
        Expr::And(es) | Expr::Or(es) => es.iter().for_each(|e| presence_terms(e, negated, out)),
        Expr::Has(_)
        | Expr::Eq { .. }
        | Expr::In { .. }
        | Expr::Contains { .. }
        | Expr::StartsWith { .. }
        | Expr::EndsWith { .. }
            if !negated =>
        {
            out.push(e)
        }
        Expr::Ne { .. } | Expr::NotIn { .. } if negated => out.push(e),
        _ => {}
    }
}

/// The first term of `e` that no endpoint can satisfy: a key no endpoint carries (with the closest one that is
/// carried: "did you mean `app`?"), or a value of `==`/`in` no endpoint has for its key.
pub fn blame(ctx: &Ctx, u: &Universe, e: &Expr) -> Option<Blame> {
    let mut terms = Vec::new();
    presence_terms(e, false, &mut terms);
    for t in terms {
        let (key, wanted): (&str, Vec<&str>) = match t {
            Expr::Has(k) => (k, Vec::new()),
            Expr::Eq { key, value } | Expr::Ne { key, value } => (key, vec![value.as_str()]),
            Expr::In { key, values } | Expr::NotIn { key, values } => {
                (key, values.iter().map(String::as_str).collect())
            }
            Expr::Contains { key, .. } | Expr::StartsWith { key, .. } | Expr::EndsWith { key, .. } => (key, Vec::new()),
            _ => continue,
        };
        let (_, bare) = split(key);
        let carrier = u.carrier(key);
        match u.values.get(key) {
            None => {
                let mut help = format!("no {carrier} carries the label `{bare}`");
                if let Some(s) = u.closest_key(key) {
                    help.push_str(&format!("; did you mean `{}`?", split(&s).1));
                } else if key.starts_with(calico_keys::NS_PREFIX) {
                    // `name == "prod"` where only the automatic name labels exist.
                    let c = &ctx.engine.cluster;
                    if let Some(v) = wanted.iter().find(|v| c.namespace_id(v).is_some()) {
                        help.push_str(&format!("; did you mean `{} == \"{v}\"`?", calico_keys::NAME));
                    }
                }
                return Some(Blame { key: key.to_string(), help });
            }
            Some(have) if !wanted.is_empty() && !wanted.iter().any(|v| have.contains(*v)) => {
                let mut help = format!("no {carrier} has `{bare}` = `{}`", wanted.join("` or `"));
                let close = wanted.iter().find_map(|v| closest(v, have.iter().map(String::as_str)));
                match close {
                    Some(s) => help.push_str(&format!("; did you mean `{s}`?")),
                    None => {
                        let list: Vec<String> = have.iter().map(|v| format!("`{v}`")).collect();
                        help.push_str(&format!("; they have {}", Ctx::name_list(list, 5)));
                    }
                }
                return Some(Blame { key: key.to_string(), help });
            }
            Some(_) => {}
        }
    }
    None
}

/// The field of a policy's subject a key of its combined selector came from.
pub fn subject_field(key: &str) -> &'static str {
    if key.starts_with(calico_keys::NS_PREFIX) {
        "spec.namespaceSelector"
    } else if key.starts_with(calico_keys::SA_PREFIX) {
        "spec.serviceAccountSelector"
    } else {
        "spec.selector"
    }
}

/// The field of a rule side a key of its combined selector came from (relative to the side).
pub fn side_field(key: &str) -> &'static str {
    if key.starts_with(calico_keys::NS_PREFIX) {
        "namespaceSelector"
    } else if key.starts_with(calico_keys::SA_PREFIX) {
        "serviceAccounts.selector"
    } else if key == calico_keys::SERVICE_ACCOUNT {
        "serviceAccounts.names"
    } else {
        "selector"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calico_selector::parse;

    #[test]
    fn namespace_terms_and_names() {
        let p = |s: &str| parse(s).unwrap_or(Expr::All);
        assert!(is_namespace_term(&p("projectcalico.org/namespace == 'a'")));
        assert!(is_namespace_term(&p("pcns.team == 'x' || has(pcns.env)")));
        assert!(!is_namespace_term(&p("app == 'web'")));
        assert!(names_namespaces(&p("pcns.projectcalico.org/name in {'a', 'b'}")));
        assert!(names_namespaces(&p("pcns.kubernetes.io/metadata.name == 'a'")));
        assert!(!names_namespaces(&p("pcns.team == 'x'")));
        assert!(is_global_term(&p("!has(projectcalico.org/namespace)")));
        let e = p("app == 'web' && projectcalico.org/namespace == 'a'");
        assert_eq!(shown(&e, Some("a")), "app == \"web\"");
        assert_eq!(shown(&e, None), e.to_string());
    }
}
