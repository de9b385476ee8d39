//! Calico's objects as manifests in their own API's shape (`projectcalico.org/v3`): NetworkPolicy and
//! GlobalNetworkPolicy (`spec.tier`, `order`, `selector`, `types`, `ingress`/`egress` rules with `action`,
//! `protocol`, `source` and `destination`), and Tier, for `GET /api/v1/manifest` and the what-if editor.
//!
//! The model keeps each selector as Calico combines it (libcalico-go's update processors, see
//! `netpol_core::load::calico`): a policy's `selector` with its own namespace, `namespaceSelector` and
//! `serviceAccountSelector`; a rule side's `selector` with `namespaceSelector`, `serviceAccounts` and the policy's
//! namespace. Written back, each combined selector is split into the fields the loader combines again — the
//! readable split when combining it gives the same selector back, else the combined selector as `selector`, which
//! the loader reads unchanged — so that loading the manifest gives the same policy (tested field by field).
//! `serviceAccounts` of a rule stay in `selector`, in the words Calico combines them into (`pcsa.` keys,
//! `projectcalico.org/serviceaccount in {...}`).

use netpol_core::calico_selector::Expr;
use netpol_core::model::{
    calico_keys, Action, CalicoPeer, Cluster, Direction, Order, Policy, PolicyKind, PolicyPort, PortMatch, Rule, Scope,
    TierDef,
};
use netpol_core::portset::Protocol;
use serde::Serialize;
use serde_yaml_ng::Value;

#[derive(Serialize)]
struct Doc<S> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    metadata: Meta,
    spec: S,
}

#[derive(Serialize)]
struct Meta {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
}

#[derive(Serialize)]
struct PolicySpec {
    tier: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<Order>,
    #[serde(skip_serializing_if = "Option::is_none")]
    selector: Option<String>,
    #[serde(rename = "namespaceSelector", skip_serializing_if = "Option::is_none")]
    namespace_selector: Option<String>,
    #[serde(rename = "serviceAccountSelector", skip_serializing_if = "Option::is_none")]
    service_account_selector: Option<String>,
    types: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ingress: Vec<RuleDoc>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    egress: Vec<RuleDoc>,
}

#[derive(Serialize)]
struct RuleDoc {
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<Value>,
    #[serde(rename = "notProtocol", skip_serializing_if = "Option::is_none")]
    not_protocol: Option<Value>,
    #[serde(rename = "ipVersion", skip_serializing_if = "Option::is_none")]
    ip_version: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp: Option<IcmpDoc>,
    #[serde(rename = "notICMP", skip_serializing_if = "Option::is_none")]
    not_icmp: Option<IcmpDoc>,
    #[serde(skip_serializing_if = "EntityDoc::is_empty")]
    source: EntityDoc,
    #[serde(skip_serializing_if = "EntityDoc::is_empty")]
    destination: EntityDoc,
}

#[derive(Serialize)]
struct IcmpDoc {
    #[serde(rename = "type")]
    type_: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u8>,
}

#[derive(Serialize, Default)]
struct EntityDoc {
    #[serde(skip_serializing_if = "Option::is_none")]
    selector: Option<String>,
    #[serde(rename = "namespaceSelector", skip_serializing_if = "Option::is_none")]
    namespace_selector: Option<String>,
    #[serde(rename = "notSelector", skip_serializing_if = "Option::is_none")]
    not_selector: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nets: Vec<String>,
    #[serde(rename = "notNets", skip_serializing_if = "Vec::is_empty")]
    not_nets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<Value>,
    #[serde(rename = "notPorts", skip_serializing_if = "Vec::is_empty")]
    not_ports: Vec<Value>,
}

impl EntityDoc {
    fn is_empty(&self) -> bool {
        self.selector.is_none()
            && self.namespace_selector.is_none()
            && self.not_selector.is_none()
            && self.nets.is_empty()
            && self.not_nets.is_empty()
            && self.ports.is_empty()
            && self.not_ports.is_empty()
    }
}

#[derive(Serialize)]
struct TierSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<Order>,
    #[serde(rename = "defaultAction")]
    default_action: &'static str,
}

/// Calico's names of the three built-in tiers, in their order in `Cluster::tiers`.
pub const BUILTIN_TIER_NAMES: [&str; 3] = ["kube-admin", "default", "kube-baseline"];

/// A tier's name as Calico spells it (the built-in tiers by their Calico names whatever the cluster calls them).
fn calico_tier_name(c: &Cluster, index: usize) -> String {
    match BUILTIN_TIER_NAMES.get(index) {
        Some(n) => n.to_string(),
        None => c.tiers.get(index).map(|t| t.name.clone()).unwrap_or_default(),
    }
}

/// `ns == "x"` on Calico's namespace label: what a namespaced policy adds for its own namespace.
fn own_namespace(ns: &str) -> Expr {
    Expr::Eq { key: calico_keys::NAMESPACE.to_string(), value: ns.to_string() }
}

fn has(key: &str) -> Expr {
    Expr::Has(key.to_string())
}

/// `(a) && b`, as the loader combines two selectors.
fn and(a: Expr, b: Expr) -> Expr {
    Expr::And(vec![a, b])
}

/// Every label key prefixed (the loader's `prefixed`, libcalico-go's `PrefixVisitor`).
fn prefixed(e: &Expr, prefix: &str) -> Expr {
    map_keys(e, &mut |k| Some(format!("{prefix}{k}"))).unwrap_or(Expr::All)
}

/// The expression with every label key mapped (`None` from `f`: no such expression).
fn map_keys(e: &Expr, f: &mut dyn FnMut(&str) -> Option<String>) -> Option<Expr> {
    Some(match e {
        Expr::All => Expr::All,
        Expr::Global => Expr::Global,
        Expr::Has(k) => Expr::Has(f(k)?),
        Expr::Eq { key, value } => Expr::Eq { key: f(key)?, value: value.clone() },
        Expr::Ne { key, value } => Expr::Ne { key: f(key)?, value: value.clone() },
        Expr::Contains { key, value } => Expr::Contains { key: f(key)?, value: value.clone() },
        Expr::StartsWith { key, value } => Expr::StartsWith { key: f(key)?, value: value.clone() },
        Expr::EndsWith { key, value } => Expr::EndsWith { key: f(key)?, value: value.clone() },
        Expr::In { key, values } => Expr::In { key: f(key)?, values: values.clone() },
        Expr::NotIn { key, values } => Expr::NotIn { key: f(key)?, values: values.clone() },
        Expr::Not(x) => Expr::Not(Box::new(map_keys(x, f)?)),
        Expr::And(xs) => Expr::And(xs.iter().map(|x| map_keys(x, f)).collect::<Option<_>>()?),
        Expr::Or(xs) => Expr::Or(xs.iter().map(|x| map_keys(x, f)).collect::<Option<_>>()?),
    })
}

/// Every `from` term replaced by `to` (the loader's `replace`: upstream's string replacement, on the tree).
fn replace(e: &Expr, from: &Expr, to: &Expr) -> Expr {
    match e {
        e if e == from => to.clone(),
        Expr::Not(x) => Expr::Not(Box::new(replace(x, from, to))),
        Expr::And(xs) => Expr::And(xs.iter().map(|x| replace(x, from, to)).collect()),
        Expr::Or(xs) => Expr::Or(xs.iter().map(|x| replace(x, from, to)).collect()),
        e => e.clone(),
    }
}

/// A selector combined from fields written with `prefix` (`pcns.`, `pcsa.`), where the loader replaced `all()`
/// by `has(<all_is>)` (and, for an entity's `namespaceSelector`, `global()` by `!has(projectcalico.org/namespace)`),
/// back to the field's text: keys unprefixed, the replaced terms restored. `None` when some key lacks the prefix.
fn unprefixed(e: &Expr, prefix: &str, all_is: Option<&str>, global: bool) -> Option<Expr> {
    let not_ns = Expr::Not(Box::new(has(calico_keys::NAMESPACE)));
    if global && *e == not_ns {
        return Some(Expr::Global);
    }
    let e = match all_is {
        Some(k) => replace(e, &has(k), &Expr::All),
        None => e.clone(),
    };
    map_keys(&e, &mut |k| k.strip_prefix(prefix).map(str::to_string))
}

/// A rule side's `namespaceSelector` as the loader reads it (`pcns.` keys, `all()` as "in a namespace",
/// `global()` as "in none").
fn entity_namespaces(n: &Expr) -> Expr {
    let n = replace(&prefixed(n, calico_keys::NS_PREFIX), &Expr::All, &has(calico_keys::NAMESPACE));
    replace(&n, &Expr::Global, &Expr::Not(Box::new(has(calico_keys::NAMESPACE))))
}

/// What the loader makes of a rule side's `selector` (with `serviceAccounts` in it), `namespaceSelector` and
/// `notSelector` (present or not) in a policy of namespace `ns` (`None`: a GlobalNetworkPolicy).
fn entity_selector(sel: Option<&Expr>, namespaces: Option<&Expr>, has_not: bool, ns: Option<&str>) -> Option<Expr> {
    let nss = match namespaces {
        Some(n) => Some(entity_namespaces(n)),
        None => ns.map(own_namespace),
    };
    match nss {
        Some(nss) if sel.is_some() || has_not || namespaces.is_some() => Some(match sel {
            Some(s) => and(nss, s.clone()),
            None => nss,
        }),
        _ => sel.cloned(),
    }
}

/// A rule side's `selector` and `namespaceSelector` that the loader combines into `target` (the model's).
fn entity_fields(target: Option<&Expr>, has_not: bool, ns: Option<&str>) -> (Option<Expr>, Option<Expr>) {
    let Some(t) = target else { return (None, None) };
    let mut candidates: Vec<(Option<Expr>, Option<Expr>)> = Vec::new();
    if let Some(ns) = ns {
        let own = own_namespace(ns);
        if *t == own {
            candidates.push((None, None));
        }
        if let Expr::And(xs) = t {
            if let [first, rest] = xs.as_slice() {
                if *first == own {
                    candidates.push((Some(rest.clone()), None));
                }
            }
        }
    }
    let inverse = |e: &Expr| unprefixed(e, calico_keys::NS_PREFIX, Some(calico_keys::NAMESPACE), true);
    if let Expr::And(xs) = t {
        if let [a, b] = xs.as_slice() {
            if let Some(n) = inverse(a) {
                candidates.push((Some(b.clone()), Some(n)));
            }
        }
    }
    if let Some(n) = inverse(t) {
        candidates.push((None, Some(n)));
    }
    candidates.push((Some(t.clone()), None));
    let fits = |(s, n): &(Option<Expr>, Option<Expr>)| {
        entity_selector(s.as_ref(), n.as_ref(), has_not, ns).as_ref() == Some(t) && n.as_ref().is_none_or(valid_ns)
    };
    let last = candidates.last().cloned().unwrap_or((Some(t.clone()), None));
    candidates.into_iter().find(fits).unwrap_or(last)
}

/// A `namespaceSelector` the loader accepts: `global()` only alone.
fn valid_ns(e: &Expr) -> bool {
    fn has_global(e: &Expr) -> bool {
        match e {
            Expr::Global => true,
            Expr::Not(x) => has_global(x),
            Expr::And(xs) | Expr::Or(xs) => xs.iter().any(has_global),
            _ => false,
        }
    }
    *e == Expr::Global || !has_global(e)
}

/// What the loader makes of a policy's `selector`, `namespaceSelector` (GlobalNetworkPolicy) and
/// `serviceAccountSelector` (the loader's `subject`).
fn subject_selector(ns: Option<&str>, sel: Option<&Expr>, nss: Option<&Expr>, sas: Option<&Expr>) -> Expr {
    let mut combined = match ns {
        Some(ns) => Some(match sel {
            Some(s) => and(s.clone(), own_namespace(ns)),
            None => own_namespace(ns),
        }),
        None => sel.cloned(),
    };
    if ns.is_none() {
        if let Some(n) = nss {
            let n = prefixed(n, calico_keys::NS_PREFIX);
            let all = match combined {
                Some(c) => and(c, n),
                None => n,
            };
            combined = Some(replace(&all, &Expr::All, &has(calico_keys::NAMESPACE)));
        }
    }
    if let Some(sa) = sas {
        let sa = prefixed(sa, calico_keys::SA_PREFIX);
        let all = match combined {
            Some(c) => and(c, sa),
            None => sa,
        };
        combined = Some(match ns {
            None => replace(&all, &Expr::All, &has(calico_keys::SERVICE_ACCOUNT)),
            Some(_) => all,
        });
    }
    combined.unwrap_or(Expr::All)
}

type SubjectFields = (Option<Expr>, Option<Expr>, Option<Expr>);

/// A policy's `selector`, `namespaceSelector` and `serviceAccountSelector` that the loader combines into `target`.
fn subject_fields(target: &Expr, ns: Option<&str>) -> SubjectFields {
    let mut candidates: Vec<SubjectFields> = Vec::new();
    // The service accounts' part: the last operand, `pcsa.` keys (a GlobalNetworkPolicy's `all()` made
    // "with a service account").
    let sa_all = if ns.is_none() { Some(calico_keys::SERVICE_ACCOUNT) } else { None };
    let (rest, sas) = match target {
        Expr::And(xs) => match xs.as_slice() {
            [c, y] => match unprefixed(y, calico_keys::SA_PREFIX, sa_all, false) {
                Some(sa) => (Some(c.clone()), Some(sa)),
                None => (Some(target.clone()), None),
            },
            _ => (Some(target.clone()), None),
        },
        e => match unprefixed(e, calico_keys::SA_PREFIX, sa_all, false) {
            Some(sa) if ns.is_none() => (None, Some(sa)),
            _ => (Some(e.clone()), None),
        },
    };
    let mut rest_fields: Vec<(Option<Expr>, Option<Expr>)> = Vec::new();
    match (ns, &rest) {
        (Some(ns), Some(r)) => {
            let own = own_namespace(ns);
            if *r == own {
                rest_fields.push((None, None));
            }
            if let Expr::And(xs) = r {
                if let [s, o] = xs.as_slice() {
                    if *o == own {
                        rest_fields.push((Some(s.clone()), None));
                    }
                }
            }
        }
        (None, Some(r)) => {
            let inverse = |e: &Expr| unprefixed(e, calico_keys::NS_PREFIX, Some(calico_keys::NAMESPACE), false);
            if let Expr::And(xs) = r {
                if let [s, n] = xs.as_slice() {
                    if let Some(n) = inverse(n) {
                        rest_fields.push((Some(s.clone()), Some(n)));
                    }
                }
            }
            if let Some(n) = inverse(r) {
                rest_fields.push((None, Some(n)));
            }
            rest_fields.push((Some(r.clone()), None));
        }
        (_, None) => rest_fields.push((None, None)),
    }
    for (s, n) in rest_fields {
        candidates.push((s, n, sas.clone()));
    }
    // The combined selector as `selector`: exact for a GlobalNetworkPolicy; for a NetworkPolicy the loader adds its
    // namespace again, which selects the same endpoints (the selector holds it already).
    let fallback = (Some(target.clone()), None, None);
    candidates.push(fallback.clone());
    candidates
        .into_iter()
        .find(|(s, n, sa)| subject_selector(ns, s.as_ref(), n.as_ref(), sa.as_ref()) == *target)
        .unwrap_or(fallback)
}

/// A protocol number in Calico's words: its name (`numorstring`'s names) or the number.
fn protocol_value(n: u8) -> Value {
    match n {
        6 | 17 | 1 | 58 | 132 | 136 => Value::from(crate::calico_protocol_name(n)),
        n => Value::Number(n.into()),
    }
}

/// `ports`/`notPorts` entries: a number, `"lo:hi"`, or a name (one entry for a named port the model holds once
/// per protocol, as the loader expands a named port without a protocol).
fn ports_value(ports: &[PolicyPort]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = ports.get(i) {
        i += 1;
        match &p.port {
            PortMatch::Named(n) => {
                if crate::named_for_every_protocol(ports, i - 1) {
                    i += Protocol::TRANSPORT.len() - 1;
                }
                out.push(Value::from(n.as_str()));
            }
            PortMatch::Range(lo, hi) if lo == hi => out.push(Value::Number((*lo).into())),
            PortMatch::Range(lo, hi) => out.push(Value::from(format!("{lo}:{hi}"))),
            // Not made by the loader for Calico rules: every port.
            PortMatch::Any => out.push(Value::from("1:65535")),
        }
    }
    out
}

fn action_word(a: Action) -> &'static str {
    match a {
        Action::Allow => "Allow",
        Action::Deny => "Deny",
        Action::Reject => "Reject",
        Action::Pass => "Pass",
        Action::Log => "Log",
    }
}

fn entity_doc(
    peer: Option<&CalicoPeer>,
    ns: Option<&str>,
    ports: &[PolicyPort],
    not_ports: &[PolicyPort],
) -> EntityDoc {
    let mut d = EntityDoc { ports: ports_value(ports), not_ports: ports_value(not_ports), ..EntityDoc::default() };
    if let Some(p) = peer {
        let has_not = p.not_selector.is_some();
        let (sel, nss) = entity_fields(p.selector.as_ref(), has_not, ns);
        d.selector = sel.map(|s| s.to_string());
        d.namespace_selector = nss.map(|s| s.to_string());
        d.not_selector = p.not_selector.as_ref().map(|s| s.to_string());
        d.nets = texts(&p.nets);
        d.not_nets = texts(&p.not_nets);
    }
    d
}

/// Nets (or anything else) as text.
fn texts<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(|n| n.to_string()).collect()
}

fn rule_doc(r: &Rule, dir: Direction, ns: Option<&str>) -> RuleDoc {
    let remote = r.peers.iter().find_map(|p| match p {
        netpol_core::model::Peer::Calico(c) => Some(&**c),
        _ => None,
    });
    let c = r.calico.as_deref().cloned().unwrap_or_default();
    let icmp = |m: (u8, Option<u8>)| IcmpDoc { type_: m.0, code: m.1 };
    let local = c.local.as_ref();
    let (source, destination) = match dir {
        Direction::Ingress => {
            (entity_doc(remote, ns, &c.src_ports, &c.not_src_ports), entity_doc(local, ns, &r.ports, &c.not_ports))
        }
        Direction::Egress => {
            (entity_doc(local, ns, &c.src_ports, &c.not_src_ports), entity_doc(remote, ns, &r.ports, &c.not_ports))
        }
    };
    RuleDoc {
        action: action_word(r.action),
        protocol: c.protocol.map(protocol_value),
        not_protocol: c.not_protocol.map(protocol_value),
        ip_version: remote.and_then(|p| p.ip_version),
        icmp: c.icmp.map(icmp),
        not_icmp: c.not_icmp.map(icmp),
        source,
        destination,
    }
}

/// A Calico NetworkPolicy or GlobalNetworkPolicy as a `projectcalico.org/v3` manifest. Rules netpol cannot
/// evaluate (a `services` or `http` match, which the model does not keep) are written without that match, and a
/// comment at the top says which: loaded back, such a rule would match traffic that netpol's answers say it does
/// not.
pub fn policy_yaml(c: &Cluster, pol: &Policy) -> Result<String, String> {
    let ns = match pol.scope {
        Scope::Namespace(id) if pol.kind == PolicyKind::CalicoNetworkPolicy => Some(c.ns_name(id)),
        _ => None,
    };
    let (selector, namespace_selector, service_account_selector) = match &pol.calico_selector {
        Some(t) => subject_fields(t, ns),
        None => (None, None, None),
    };
    let mut types = Vec::new();
    if pol.affects_ingress {
        types.push("Ingress");
    }
    if pol.affects_egress {
        types.push("Egress");
    }
    let text = |e: Option<Expr>| e.map(|e| e.to_string());
    let doc = Doc {
        api_version: "projectcalico.org/v3",
        kind: match pol.kind {
            PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            _ => "NetworkPolicy",
        },
        metadata: Meta { name: pol.name.clone(), namespace: ns.map(str::to_string) },
        spec: PolicySpec {
            tier: calico_tier_name(c, pol.tier.index()),
            order: pol.order.0.is_some().then_some(pol.order),
            selector: text(selector),
            namespace_selector: text(namespace_selector),
            service_account_selector: text(service_account_selector),
            types,
            ingress: pol.ingress.iter().map(|r| rule_doc(r, Direction::Ingress, ns)).collect(),
            egress: pol.egress.iter().map(|r| rule_doc(r, Direction::Egress, ns)).collect(),
        },
    };
    let yaml = quote_port_ranges(&serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?);
    let mut notes = String::new();
    for (dir, rules) in [("ingress", &pol.ingress), ("egress", &pol.egress)] {
        for (i, r) in rules.iter().enumerate() {
            if let Some(why) = r.calico.as_ref().and_then(|c| c.unsupported.as_deref()) {
                notes.push_str(&format!(
                    "# spec.{dir}[{i}]: {why}; the match is not written here (netpol treats the rule as matching no \
                     traffic)\n"
                ));
            }
        }
    }
    Ok(notes + &yaml)
}

/// Port ranges (`- 8000:8100`) in double quotes: YAML 1.1 readers would take the plain scalar for a base-60 number.
fn quote_port_ranges(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 16);
    for line in yaml.lines() {
        let item = line.trim_start().strip_prefix("- ");
        let range = item.and_then(|i| i.split_once(':')).is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
        match (range, item) {
            (true, Some(item)) => {
                out.push_str(&line[..line.len() - item.len()]);
                out.push('"');
                out.push_str(item);
                out.push('"');
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A tier as a `projectcalico.org/v3` Tier (the built-in tiers by their Calico names).
pub fn tier_yaml(c: &Cluster, index: usize, t: &TierDef) -> Result<String, String> {
    let doc = Doc {
        api_version: "projectcalico.org/v3",
        kind: "Tier",
        metadata: Meta { name: calico_tier_name(c, index), namespace: None },
        spec: TierSpec {
            order: t.order.map(|o| Order(Some(o))),
            default_action: if t.default_action == Action::Pass { "Pass" } else { "Deny" },
        },
    };
    serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use netpol_core::calico_selector::parse;

    #[test]
    fn subject_fields_combine_back() {
        for (ns, sel, nss, sas) in [
            (Some("a"), None, None, None),
            (Some("a"), Some("app == 'x'"), None, None),
            (Some("a"), None, None, Some("role == 'r'")),
            (Some("a"), Some("app == 'x' || all()"), None, Some("all()")),
            (None, None, None, None),
            (None, Some("app == 'x'"), None, None),
            (None, Some("app == 'x' && !has(b)"), Some("env in {'p', 'q'}"), None),
            (None, None, Some("all()"), None),
            (None, Some("all()"), Some("env == 'p'"), Some("all()")),
            (None, None, None, Some("x == 'y'")),
        ] {
            let p = |s: Option<&str>| s.map(|s| parse(s).unwrap());
            let target = subject_selector(ns, p(sel).as_ref(), p(nss).as_ref(), p(sas).as_ref());
            let (s, n, sa) = subject_fields(&target, ns);
            let again = |e: Option<Expr>| e.map(|e| parse(&e.to_string()).unwrap());
            let back =
                subject_selector(ns, again(s.clone()).as_ref(), again(n.clone()).as_ref(), again(sa.clone()).as_ref());
            assert_eq!(back, target, "{ns:?} {sel:?} {nss:?} {sas:?} -> {s:?} {n:?} {sa:?}");
            // The readable split is found where the fields were given.
            assert_eq!(n.is_some(), nss.is_some() && ns.is_none(), "{sel:?} {nss:?}");
            assert_eq!(sa.is_some(), sas.is_some(), "{sel:?} {sas:?}");
        }
    }

    #[test]
    fn entity_fields_combine_back() {
        for (ns, sel, nss, has_not) in [
            (Some("a"), Some("app == 'x'"), None, false),
            (Some("a"), None, None, true),
            (Some("a"), None, Some("env == 'p'"), false),
            (Some("a"), Some("app == 'x'"), Some("all()"), false),
            (Some("a"), None, Some("global()"), false),
            (None, Some("app == 'x'"), None, false),
            (None, Some("app == 'x'"), Some("env == 'p' || all()"), true),
            (None, None, Some("global()"), false),
            (None, Some("pcns.x == 'y'"), None, false),
        ] {
            let p = |s: Option<&str>| s.map(|s| parse(s).unwrap());
            let target = entity_selector(p(sel).as_ref(), p(nss).as_ref(), has_not, ns);
            let (s, n) = entity_fields(target.as_ref(), has_not, ns);
            let again = |e: Option<Expr>| e.map(|e| parse(&e.to_string()).unwrap());
            let back = entity_selector(again(s.clone()).as_ref(), again(n.clone()).as_ref(), has_not, ns);
            assert_eq!(back, target, "{ns:?} {sel:?} {nss:?} -> {s:?} {n:?}");
            if nss.is_some() {
                assert!(n.is_some(), "{sel:?} {nss:?}: {s:?}");
            }
        }
    }
}
