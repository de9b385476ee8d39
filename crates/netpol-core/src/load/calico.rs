//! Calico's policy dialect (`projectcalico.org/v3`, and `crd.projectcalico.org/v1` with the same spec):
//! NetworkPolicy (namespaced) and GlobalNetworkPolicy, Tier, NetworkSet and GlobalNetworkSet; and the v1
//! ServiceAccounts whose labels Calico's `serviceAccounts` selectors match. From the lean objects to the model.
//!
//! The rules are upstream Calico's (projectcalico/calico): what the API server refuses is the API types' CRD
//! schemas (enums, limits, CEL rules) and libcalico-go's `validator/v3`; an object it refuses is an error here.
//! How a v3 object becomes what Felix evaluates is libcalico-go's update processors
//! (`syncersv1/updateprocessors`): the policy's subject selector and each rule side's selector are combined there
//! as selector strings, and here, the same way, on the parsed [`Expr`]s, so that each combined selector is what
//! Felix parses from upstream's string. What upstream accepts but netpol does not evaluate (a `services` or `http`
//! match, a source port, policies only host endpoints see) is loaded with a warning saying what netpol does
//! instead.
//!
//! The staged kinds (StagedNetworkPolicy, StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy) are the same
//! specs with a `stagedAction`: `Set` (the default), `Learn` and `Ignore` are converted as the enforced kind is
//! (the staged Kubernetes kind by the v1 loader), `Delete` must name the policy and nothing more.
//!
//! The two policy kinds differ in a few facts (name pattern, the GlobalNetworkPolicy's own `namespaceSelector`,
//! `doNotTrack`/`preDNAT`, `services` needing a namespace): one [`Dialect`] each, and one path through the rules.
//! Tier names are resolved by the loader at `finish` (a Tier object may come after the policies in it).

use std::net::IpAddr;

use ipnet::IpNet;

use super::objects::{self as obj, NumOrStr};
use super::validate::{self, check_labels, meta_name, meta_name_checked, meta_namespace, Errors};
use super::Item;
use crate::calico_selector::{self, Expr};
use crate::model::{
    calico_keys, Action, CalicoPeer, CalicoRule, ContainerPort, Direction, HostEndpoint, HostFlags, NetworkSet, Order,
    Peer, Policy, PolicyKind, PolicyPort, PolicyTier, PortMatch, Rule, Scope, StagedAction, TierDef,
};
use crate::portset::Protocol;
use crate::selector::{self, Selector};

/// What differs between the two policy kinds.
struct Dialect {
    kind: PolicyKind,
    /// `metadata.name`: a DNS subdomain (ObjectMeta) that also matches the kind's own pattern.
    check_name: fn(&str) -> Result<(), String>,
    /// A GlobalNetworkPolicy's `services` match must name its Service's namespace (a NetworkPolicy's defaults to
    /// its own).
    services_need_namespace: bool,
    /// The validator's message for an `http` match in an egress rule.
    http_in_egress: &'static str,
}

const NP: Dialect = Dialect {
    kind: PolicyKind::CalicoNetworkPolicy,
    check_name: check_network_policy_name,
    services_need_namespace: false,
    http_in_egress: "not allowed in egress rule",
};

const GNP: Dialect = Dialect {
    kind: PolicyKind::GlobalNetworkPolicy,
    check_name: check_global_network_policy_name,
    services_need_namespace: true,
    http_in_egress: "not allowed in egress rules",
};

/// The rule actions and what they do.
const ACTIONS: [(&str, Action); 4] =
    [("Allow", Action::Allow), ("Deny", Action::Deny), ("Log", Action::Log), ("Pass", Action::Pass)];

/// Calico's protocol names (`numorstring`), case-sensitive, with their IANA numbers.
const PROTOCOLS: [(&str, u8); 6] =
    [("TCP", 6), ("UDP", 17), ("ICMP", 1), ("ICMPv6", 58), ("SCTP", 132), ("UDPLite", 136)];

/// Longest selector the CRD schemas accept (`maxLength`, in characters).
const MAX_SELECTOR: usize = 1024;
/// `maxItems` of `ingress` and `egress`, of `nets`/`notNets`, of `ports`/`notPorts`, of `http` lists.
const MAX_RULES: usize = 1024;
const MAX_NETS: usize = 256;
const MAX_PORTS: usize = 50;
const MAX_HTTP: usize = 20;

const PORTS_NEED_PROTOCOL: &str = "rules with numeric port or port range must set protocol to TCP or UDP or SCTP";
const PROTOCOL_HAS_NO_PORTS: &str = "rules that specify ports must set protocol to TCP or UDP or SCTP";
const GLOBAL_ONLY_IN_NAMESPACE_SELECTOR: &str = "global() can only be used in an EntityRule namespaceSelector";
const NO_TRAFFIC: &str = "netpol treats this rule as matching no traffic";

/// The policy spec fields both kinds have, borrowed from either object.
struct SpecView<'a> {
    tier: Option<&'a str>,
    order: Option<f64>,
    ingress: &'a [obj::CalicoRuleObj],
    egress: &'a [obj::CalicoRuleObj],
    selector: Option<&'a str>,
    types: Option<&'a [String]>,
    service_account_selector: Option<&'a str>,
    /// GlobalNetworkPolicy only.
    namespace_selector: Option<&'a str>,
    performance_hints: Option<&'a [String]>,
}

pub(crate) fn network_policy(o: obj::CalicoNetworkPolicyObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name_checked(&o.metadata.name, errs, NP.check_name);
    let ns_name = meta_namespace(&o.metadata.namespace, errs);
    check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    let spec = o.spec.unwrap_or_default();
    let view = SpecView {
        tier: spec.tier.as_deref(),
        order: spec.order,
        ingress: spec.ingress.as_deref().unwrap_or_default(),
        egress: spec.egress.as_deref().unwrap_or_default(),
        selector: spec.selector.as_deref(),
        types: spec.types.as_deref(),
        service_account_selector: spec.service_account_selector.as_deref(),
        namespace_selector: None,
        performance_hints: spec.performance_hints.as_deref(),
    };
    // An invalid namespace is already an error; the rules are still checked (against a stand-in).
    let ns = ns_name.as_deref().unwrap_or("default");
    let (policy, tier) = policy(&NP, Some(ns), name, &view, errs)?;
    Some(Item::CalicoPolicy { ns_name: Some(ns_name?), policy: Box::new(policy), tier })
}

pub(crate) fn global_network_policy(o: obj::GlobalNetworkPolicyObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name_checked(&o.metadata.name, errs, GNP.check_name);
    check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    let spec = o.spec.unwrap_or_default();
    let view = SpecView {
        tier: spec.tier.as_deref(),
        order: spec.order,
        ingress: spec.ingress.as_deref().unwrap_or_default(),
        egress: spec.egress.as_deref().unwrap_or_default(),
        selector: spec.selector.as_deref(),
        types: spec.types.as_deref(),
        service_account_selector: spec.service_account_selector.as_deref(),
        namespace_selector: spec.namespace_selector.as_deref(),
        performance_hints: spec.performance_hints.as_deref(),
    };
    let do_not_track = spec.do_not_track.unwrap_or(false);
    let pre_dnat = spec.pre_dnat.unwrap_or(false);
    // The spec's CEL rules.
    if do_not_track && pre_dnat {
        errs.add("spec.preDNAT", "preDNAT and doNotTrack cannot both be true");
    }
    if pre_dnat && !view.egress.is_empty() {
        errs.add("spec.egress", "preDNAT policy cannot have any egress rules");
    }
    if pre_dnat && view.types.is_some_and(|t| t.iter().any(|t| t == "Egress")) {
        errs.add("spec.types", "preDNAT policy cannot have 'Egress' type");
    }
    if (do_not_track || pre_dnat) && !spec.apply_on_forward.unwrap_or(false) {
        errs.add("spec.applyOnForward", "applyOnForward must be true if either preDNAT or doNotTrack is true");
    }
    let (mut policy, tier) = policy(&GNP, None, name, &view, errs)?;
    policy.host = HostFlags {
        do_not_track,
        pre_dnat,
        apply_on_forward: spec.apply_on_forward.unwrap_or(false),
        cilium_host: false,
    };
    Some(Item::CalicoPolicy { ns_name: None, policy: Box::new(policy), tier })
}

/// What both kinds share. Returns the policy and the name of its tier when that is not a built-in tier (resolved
/// by the loader at `finish`; the policy's `tier` is then a placeholder). `ns` is a NetworkPolicy's namespace.
fn policy(
    d: &Dialect,
    ns: Option<&str>,
    name: Option<String>,
    v: &SpecView<'_>,
    errs: &mut Errors,
) -> Option<(Policy, Option<String>)> {
    // `tier`: omitted or empty is `default` (the CRD's default, and `tierOrDefault`).
    let tier_name = v.tier.filter(|t| !t.is_empty()).unwrap_or("default");
    if let Err(e) = selector::check_dns_subdomain(tier_name) {
        errs.add("spec.tier", e);
    }
    let (tier, pending) = match tier_name {
        "default" => (PolicyTier::NetworkPolicy, None),
        "kube-admin" => (PolicyTier::Admin, None),
        "kube-baseline" => (PolicyTier::Baseline, None),
        other => (PolicyTier::NetworkPolicy, Some(other.to_string())),
    };
    let order = match v.order {
        Some(o) if !o.is_finite() => {
            errs.add("spec.order", format!("must be a finite number (got {o})"));
            None
        }
        o => o,
    };
    if let Some(hints) = v.performance_hints {
        for (i, h) in hints.iter().enumerate() {
            let path = format!("spec.performanceHints[{i}]");
            if h != "AssumeNeededOnEveryNode" {
                errs.add(path, unsupported(h, &["AssumeNeededOnEveryNode"]));
            } else if hints[..i].contains(h) {
                errs.add(path, format!("duplicate value `{h}`"));
            }
        }
    }
    let selector = subject(d, ns, v, errs);
    let (affects_ingress, affects_egress) = types(v, errs);
    let ingress = rules(d, ns, Direction::Ingress, v.ingress, errs);
    let egress = rules(d, ns, Direction::Egress, v.egress, errs);
    let scope = Scope::Cluster(Selector::everything());
    let policy = Policy {
        host: Default::default(),
        position: 0,
        manifest: None,
        kind: d.kind,
        tier,
        order: Order(order),
        // A NetworkPolicy's scope is set to its namespace by the loader.
        scope,
        name: name?,
        pod_selector: Selector::everything(),
        calico_selector: Some(selector),
        ingress,
        egress,
        affects_ingress,
        affects_egress,
        origin: Default::default(),
    };
    Some((policy, pending))
}

/// The subject selector as the update processors combine it. A NetworkPolicy: `(selector) && <own namespace>`,
/// then `&& <pcsa. serviceAccountSelector>`. A GlobalNetworkPolicy: `selector`, `&& <pcns. namespaceSelector>`
/// with every `all()` then meaning "in a namespace", `&& <pcsa. serviceAccountSelector>` with every `all()` then
/// meaning "with a service account" (upstream replaces `all()` in the whole combined string). An absent or empty
/// field takes no part; nothing at all is `all()`.
fn subject(d: &Dialect, ns: Option<&str>, v: &SpecView<'_>, errs: &mut Errors) -> Expr {
    let sel = selector_field(v.selector, "spec.selector", Global::Refused, errs);
    let mut combined = match ns {
        Some(ns) => {
            let own = own_namespace(ns);
            Some(match sel {
                Some(s) => and(s, own),
                None => own,
            })
        }
        None => sel,
    };
    if d.kind == PolicyKind::GlobalNetworkPolicy {
        if let Some(nss) = selector_field(v.namespace_selector, "spec.namespaceSelector", Global::Refused, errs) {
            let nss = prefixed(nss, calico_keys::NS_PREFIX);
            let all = match combined {
                Some(c) => and(c, nss),
                None => nss,
            };
            combined = Some(replace(all, &Expr::All, &Expr::Has(calico_keys::NAMESPACE.to_string())));
        }
    }
    let sas = selector_field(v.service_account_selector, "spec.serviceAccountSelector", Global::Refused, errs);
    if let Some(sas) = sas {
        let sas = prefixed(sas, calico_keys::SA_PREFIX);
        let all = match combined {
            Some(c) => and(c, sas),
            None => sas,
        };
        combined = Some(if d.kind == PolicyKind::GlobalNetworkPolicy {
            replace(all, &Expr::All, &Expr::Has(calico_keys::SERVICE_ACCOUNT.to_string()))
        } else {
            all
        });
    }
    combined.unwrap_or(Expr::All)
}

/// `types`, or its defaulting: egress rules and no ingress rules → Egress; both → both; else Ingress.
fn types(v: &SpecView<'_>, errs: &mut Errors) -> (bool, bool) {
    let Some(types) = v.types else {
        return match (v.ingress.is_empty(), v.egress.is_empty()) {
            (_, true) => (true, false),
            (true, false) => (false, true),
            (false, false) => (true, true),
        };
    };
    if types.is_empty() {
        errs.add("spec.types", "must have at least 1 item (omit `types` for the default)");
    }
    let (mut ingress, mut egress) = (false, false);
    for (i, t) in types.iter().enumerate() {
        let path = format!("spec.types[{i}]");
        match t.as_str() {
            _ if types[..i].contains(t) => errs.add(path, format!("'{t}' type specified more than once")),
            "Ingress" => ingress = true,
            "Egress" => egress = true,
            other => errs.add(path, unsupported(other, &["Ingress", "Egress"])),
        }
    }
    (ingress, egress)
}

fn rules(d: &Dialect, ns: Option<&str>, dir: Direction, list: &[obj::CalicoRuleObj], errs: &mut Errors) -> Vec<Rule> {
    let path = format!("spec.{dir}");
    if list.len() > MAX_RULES {
        errs.add(&path, format!("must have at most {MAX_RULES} items (got {})", list.len()));
    }
    list.iter().enumerate().map(|(i, r)| rule(d, ns, dir, r, &format!("{path}[{i}]"), errs)).collect()
}

/// A parsed `protocol` or `notProtocol`: its number, and how it was written (CEL rules compare the value as
/// written: `'ICMP'` or `1`, never the string `"1"`).
#[derive(Clone, Copy)]
struct Proto {
    number: u8,
    written: Written,
}

#[derive(Clone, Copy, PartialEq)]
enum Written {
    Name,
    Number,
    /// A number in a string (`"6"`): upstream reads it as the number, CEL sees a string.
    NumericString,
}

impl Proto {
    /// Whether CEL's `self.protocol == '<name>' || self.protocol == <number>` holds.
    fn cel_is(self, number: u8) -> bool {
        self.number == number && self.written != Written::NumericString
    }

    /// The model's protocol of a protocol with ports (`SupportsPorts`: TCP, UDP, SCTP).
    fn with_ports(self) -> Option<Protocol> {
        match self.number {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

fn protocol(p: &NumOrStr, path: &str, errs: &mut Errors) -> Option<Proto> {
    let names = || PROTOCOLS.iter().map(|p| p.0).collect::<Vec<_>>();
    let (n, written) = match p {
        NumOrStr::Num(n) => (*n, Written::Number),
        NumOrStr::Str(s) => match s.parse::<u8>() {
            // Go's ParseUint: ASCII digits only (no sign).
            Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => (i64::from(n), Written::NumericString),
            _ => match PROTOCOLS.iter().find(|(name, _)| name == s) {
                Some(&(_, number)) => return Some(Proto { number, written: Written::Name }),
                None => {
                    errs.add(path, format!("protocol name invalid: {}", unsupported(s, &names())));
                    return None;
                }
            },
        },
    };
    match u8::try_from(n) {
        Ok(0) => {
            errs.add(path, "protocol number invalid: must be between 1 and 255, inclusive (got 0)");
            None
        }
        Ok(number) => Some(Proto { number, written }),
        Err(_) => {
            errs.add(path, format!("must be a protocol name or a number between 1 and 255, inclusive (got {n})"));
            None
        }
    }
}

/// `icmp`/`notICMP`: type 0–254, code 0–255, a code only with a type.
fn icmp(f: &obj::IcmpFields, path: &str, errs: &mut Errors) -> Option<(u8, Option<u8>)> {
    let ty = f.type_.and_then(|t| match u8::try_from(t) {
        Ok(t) if t <= 254 => Some(t),
        _ => {
            errs.add(format!("{path}.type"), format!("must be between 0 and 254, inclusive (got {t})"));
            None
        }
    });
    let code = f.code.and_then(|c| match u8::try_from(c) {
        Ok(c) => Some(c),
        Err(_) => {
            errs.add(format!("{path}.code"), format!("must be between 0 and 255, inclusive (got {c})"));
            None
        }
    });
    if f.code.is_some() && f.type_.is_none() {
        errs.add(format!("{path}.code"), "ICMP code specified without an ICMP type");
    }
    Some((ty?, code))
}

/// A parsed entry of `ports` or `notPorts`.
#[derive(Clone, Debug)]
enum CPort {
    Range(u16, u16),
    Named(String),
}

/// `numorstring.Port`: a number, `"lo:hi"`, digits, or a name; then the validator's checks (1–65535, an IANA
/// service name).
fn port(p: &NumOrStr, path: &str, errs: &mut Errors) -> Option<CPort> {
    let range_msg = |n| format!("port range invalid, port number must be between 1 and 65535 (got {n})");
    let number = |n: u64| match u16::try_from(n) {
        Ok(0) => Err(range_msg(0)),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("invalid port `{n}`: must be between 1 and 65535, inclusive")),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parsed = match p {
        NumOrStr::Num(n) => match u64::try_from(*n) {
            Ok(n) => number(n).map(|v| CPort::Range(v, v)),
            Err(_) => Err(format!("invalid port `{n}`: must be between 1 and 65535, inclusive")),
        },
        NumOrStr::Str(s) if digits(s) => match s.parse::<u16>() {
            Ok(0) => Err(range_msg(0)),
            Ok(v) => Ok(CPort::Range(v, v)),
            Err(_) => Err(format!("invalid port format ({s})")),
        },
        NumOrStr::Str(s) if s.split_once(':').is_some_and(|(a, b)| digits(a) && digits(b)) => {
            let (a, b) = s.split_once(':').unwrap_or_default();
            match (a.parse::<u16>(), b.parse::<u16>()) {
                (Err(_), _) => Err(format!("invalid minimum port number in range ({s})")),
                (_, Err(_)) => Err(format!("invalid maximum port number in range ({s})")),
                (Ok(lo), Ok(hi)) if lo > hi => {
                    Err(format!("minimum port number ({lo}) is greater than maximum port number ({hi}) in port range"))
                }
                (Ok(0), _) => Err(range_msg(0)),
                (Ok(lo), Ok(hi)) => Ok(CPort::Range(lo, hi)),
            }
        }
        NumOrStr::Str(s) => {
            let name_ok = (1..=128).contains(&s.len())
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !name_ok {
                Err(format!("invalid name for named port ({s})"))
            } else {
                selector::check_port_name(s).map(|()| CPort::Named(s.clone()))
            }
        }
    };
    parsed.map_err(|e| errs.add(path, e)).ok()
}

/// The model's ports of parsed entries with the rule's protocol. A named port without a protocol matches the
/// endpoint's port of that name whatever its protocol (Felix's `ProtocolAny`): one entry per protocol.
fn policy_ports(ports: &[CPort], proto: Option<Protocol>) -> Vec<PolicyPort> {
    let mut out = Vec::with_capacity(ports.len());
    for p in ports {
        match (p, proto) {
            (CPort::Range(lo, hi), Some(protocol)) => {
                out.push(PolicyPort { protocol, port: PortMatch::Range(*lo, *hi) });
            }
            (CPort::Named(n), Some(protocol)) => out.push(PolicyPort { protocol, port: PortMatch::Named(n.clone()) }),
            (CPort::Named(n), None) => out
                .extend(Protocol::TRANSPORT.map(|protocol| PolicyPort { protocol, port: PortMatch::Named(n.clone()) })),
            // Refused by validation: numeric ports need a protocol with ports.
            (CPort::Range(..), None) => {}
        }
    }
    out
}

/// One side of a rule, validated.
#[derive(Default)]
struct Entity {
    /// The combined selector (`getEndpointSelector`).
    selector: Option<Expr>,
    not_selector: Option<Expr>,
    nets: Vec<IpNet>,
    not_nets: Vec<IpNet>,
    /// Which address families `nets` and `notNets` have: (IPv4, IPv6).
    nets_family: (bool, bool),
    not_nets_family: (bool, bool),
    ports: Vec<CPort>,
    not_ports: Vec<CPort>,
    has_ports: bool,
    has_not_ports: bool,
    /// `ports` or `notPorts` holds a number or a range (not only names).
    numeric_ports: (bool, bool),
    services: Option<(Option<String>, Option<String>)>,
}

impl Entity {
    fn peer(&self) -> CalicoPeer {
        CalicoPeer {
            selector: self.selector.clone(),
            not_selector: self.not_selector.clone(),
            nets: self.nets.clone(),
            not_nets: self.not_nets.clone(),
            ip_version: None,
            outside_only: false,
            generated: false,
        }
    }
}

fn rule(d: &Dialect, ns: Option<&str>, dir: Direction, r: &obj::CalicoRuleObj, path: &str, errs: &mut Errors) -> Rule {
    let mut rule = Rule::default();
    let mut calico = CalicoRule::default();
    let action_names: Vec<&str> = ACTIONS.iter().map(|a| a.0).collect();
    match r.action.as_deref() {
        None => errs.add(format!("{path}.action"), format!("required: {}", quoted(&action_names))),
        Some(a) => match ACTIONS.iter().find(|(name, _)| *name == a) {
            Some((_, action)) => rule.action = *action,
            None => errs.add(format!("{path}.action"), unsupported(a, &action_names)),
        },
    }
    let ip_version = match r.ip_version {
        None => None,
        Some(v @ (4 | 6)) => Some(v as u8),
        Some(v) => {
            errs.add(format!("{path}.ipVersion"), unsupported(&v.to_string(), &["4", "6"]));
            None
        }
    };
    let protocol = r.protocol.as_ref().map(|p| self::protocol(p, &format!("{path}.protocol"), errs));
    let not_protocol = r.not_protocol.as_ref().map(|p| self::protocol(p, &format!("{path}.notProtocol"), errs));
    calico.protocol = protocol.flatten().map(|p| p.number);
    calico.not_protocol = not_protocol.flatten().map(|p| p.number);
    // The rule's CEL rules on protocols (a protocol refused above is not judged again).
    if r.icmp.is_some() && protocol.is_none_or(|p| p.is_some_and(|p| !p.cel_is(1) && !p.cel_is(58))) {
        errs.add(format!("{path}.icmp"), "ICMP fields require protocol to be ICMP or ICMPv6");
    }
    if let Some(v) = ip_version {
        for p in [protocol, not_protocol].into_iter().flatten().flatten() {
            if p.cel_is(1) && v != 4 {
                errs.add(format!("{path}.ipVersion"), "protocol ICMP requires ipVersion 4");
            }
            if p.cel_is(58) && v != 6 {
                errs.add(format!("{path}.ipVersion"), "protocol ICMPv6 requires ipVersion 6");
            }
        }
    }
    calico.icmp = r.icmp.as_ref().and_then(|f| icmp(f, &format!("{path}.icmp"), errs));
    calico.not_icmp = r.not_icmp.as_ref().and_then(|f| icmp(f, &format!("{path}.notICMP"), errs));

    let none = obj::EntityRuleObj::default();
    let source = entity(ns, r.source.as_ref().unwrap_or(&none), &format!("{path}.source"), errs);
    let destination = entity(ns, r.destination.as_ref().unwrap_or(&none), &format!("{path}.destination"), errs);

    // Ports need a protocol with ports (`validateRule`); without a protocol, named ports are allowed.
    let proto = protocol.flatten();
    if protocol.is_none_or(|p| p.is_some()) {
        let sides = [("source", &source), ("destination", &destination)];
        for (side, e) in sides {
            for (field, present, numeric) in
                [("ports", e.has_ports, e.numeric_ports.0), ("notPorts", e.has_not_ports, e.numeric_ports.1)]
            {
                match proto {
                    None if numeric => errs.add(format!("{path}.{side}.{field}"), PORTS_NEED_PROTOCOL),
                    Some(p) if present && p.with_ports().is_none() => {
                        errs.add(format!("{path}.{side}.{field}"), PROTOCOL_HAS_NO_PORTS)
                    }
                    _ => {}
                }
            }
        }
    }

    // Address families: each nets field agrees with `ipVersion` and with the ones before it.
    let mut seen = (false, false);
    let fields = [
        ("source.nets", source.nets_family),
        ("source.notNets", source.not_nets_family),
        ("destination.nets", destination.nets_family),
        ("destination.notNets", destination.not_nets_family),
    ];
    for (field, (v4, v6)) in fields {
        if ip_version.is_some_and(|v| (v4 && v != 4) || (v6 && v != 6)) {
            errs.add(format!("{path}.{field}"), "rule IP version doesn't match CIDR version");
        }
        if (v4 && seen.1) || (v6 && seen.0) || (v4 && v6) {
            errs.add(format!("{path}.{field}"), "rule contains both IPv4 and IPv6 CIDRs");
        }
        seen = (seen.0 || v4, seen.1 || v6);
    }

    // `services`: where each direction allows it, and what it cannot be combined with.
    let mut unsupported = Vec::new();
    for (side, e) in [("source", &source), ("destination", &destination)] {
        let Some((name, namespace)) = &e.services else { continue };
        let spath = format!("{path}.{side}.services");
        match (dir, side) {
            (Direction::Egress, "source") => errs.add(&spath, "not allowed in egress rule source"),
            (Direction::Ingress, "destination") => errs.add(&spath, "not allowed in ingress rule destination"),
            _ => {}
        }
        if d.services_need_namespace && namespace.as_deref().is_none_or(str::is_empty) {
            errs.add(format!("{spath}.namespace"), "must specify a namespace");
        }
        if side == "destination" && (e.has_ports || e.has_not_ports) {
            errs.add(format!("{path}.destination.ports"), "ports and notPorts cannot be specified with services");
        }
        let service = match (namespace.as_deref().filter(|n| !n.is_empty()), ns) {
            (Some(n), _) | (None, Some(n)) => format!("{n}/{}", name.as_deref().unwrap_or_default()),
            (None, None) => name.clone().unwrap_or_default(),
        };
        errs.warn(
            &spath,
            format!(
                "a `services` match selects the endpoints of Kubernetes Service {service}, which netpol does not \
                 model: {NO_TRAFFIC}"
            ),
        );
        unsupported.push(format!("`{side}.services`: Kubernetes Services are not modelled"));
    }

    if let Some(h) = &r.http {
        let hpath = format!("{path}.http");
        if dir == Direction::Egress {
            errs.add(&hpath, d.http_in_egress);
        }
        if proto.is_some_and(|p| !p.cel_is(6)) {
            errs.add(&hpath, "rules with HTTP match must have protocol TCP or unset");
        }
        if r.action.as_deref() != Some("Allow") {
            errs.add(&hpath, "HTTP match is only valid on Allow rules");
        }
        http(h, &hpath, errs);
        errs.warn(
            &hpath,
            format!(
                "an `http` match is enforced by Calico's application layer, which netpol does not model: {NO_TRAFFIC}"
            ),
        );
        unsupported.push("`http`: HTTP matches are not modelled".to_string());
    }

    for (field, present) in [("ports", source.has_ports), ("notPorts", source.has_not_ports)] {
        if present {
            errs.warn(format!("{path}.source.{field}"), format!("netpol's flows have no source port: {NO_TRAFFIC}"));
        }
    }

    let port_proto = proto.and_then(Proto::with_ports);
    rule.ports = policy_ports(&destination.ports, port_proto);
    calico.not_ports = policy_ports(&destination.not_ports, port_proto);
    calico.src_ports = policy_ports(&source.ports, port_proto);
    calico.not_src_ports = policy_ports(&source.not_ports, port_proto);

    let (remote, local) = match dir {
        Direction::Ingress => (&source, &destination),
        Direction::Egress => (&destination, &source),
    };
    let mut peer = remote.peer();
    peer.ip_version = ip_version;
    if !peer.is_any() {
        rule.peers.push(Peer::Calico(Box::new(peer)));
    }
    let local = local.peer();
    calico.local = (!local.is_any()).then_some(local);
    calico.unsupported = (!unsupported.is_empty()).then(|| unsupported.join("; "));
    rule.calico = Some(Box::new(calico));
    rule
}

/// `http`: methods without duplicates, paths each one of `exact` and `prefix`, an absolute path without `?`, `#`
/// or a space.
fn http(h: &obj::HttpMatch, path: &str, errs: &mut Errors) {
    let methods = h.methods.as_deref().unwrap_or_default();
    check_max(methods.len(), MAX_HTTP, &format!("{path}.methods"), errs);
    if methods.iter().enumerate().any(|(i, m)| methods[..i].contains(m)) {
        errs.add(format!("{path}.methods"), format!("Invalid methods (duplicates): {methods:?}"));
    }
    let paths = h.paths.as_deref().unwrap_or_default();
    check_max(paths.len(), MAX_HTTP, &format!("{path}.paths"), errs);
    for (i, p) in paths.iter().enumerate() {
        let ppath = format!("{path}.paths[{i}]");
        let exact = p.exact.as_deref().filter(|s| !s.is_empty());
        let prefix = p.prefix.as_deref().filter(|s| !s.is_empty());
        let v = match (exact, prefix) {
            (Some(_), Some(_)) => {
                errs.add(ppath, "Invalid path match. Both 'exact' and 'prefix' are set");
                continue;
            }
            (None, None) => {
                errs.add(ppath, "Invalid path match. Either 'exact' or 'prefix' must be set");
                continue;
            }
            (Some(v), None) | (None, Some(v)) => v,
        };
        if v.chars().count() > 1024 {
            errs.add(&ppath, format!("may not be longer than 1024 characters (got {})", v.chars().count()));
        }
        if !v.starts_with('/') || v.contains(['?', ' ', '#']) {
            errs.add(ppath, format!("Invalid path {v}. (must start with `/` and not contain `?` or `#`"));
        }
    }
}

/// Whether and how a selector field may use `global()`.
#[derive(Clone, Copy, PartialEq)]
enum Global {
    /// Not at all (the CEL rules on every selector but an EntityRule's `namespaceSelector`).
    Refused,
    /// As the whole selector only (an EntityRule's `namespaceSelector`).
    Alone,
    /// Unchecked (`notSelector`, `serviceAccounts.selector`).
    Unchecked,
    /// Unchecked, and the field has no length limit (`serviceAccounts.selector`).
    UncheckedUnlimited,
}

/// A selector field: `None` when absent or empty (upstream tests the string), else parsed and checked.
fn selector_field(s: Option<&str>, path: &str, global: Global, errs: &mut Errors) -> Option<Expr> {
    let s = s.filter(|s| !s.is_empty())?;
    if global != Global::UncheckedUnlimited && s.chars().count() > MAX_SELECTOR {
        errs.add(path, format!("may not be longer than {MAX_SELECTOR} characters (got {})", s.chars().count()));
        return None;
    }
    match global {
        Global::Refused if s.contains("global(") => {
            errs.add(path, GLOBAL_ONLY_IN_NAMESPACE_SELECTOR);
            return None;
        }
        // The validator tokenizes such a selector: `global()` and the end, nothing else.
        Global::Alone if s.contains("global(") && !global_alone(s) => {
            errs.add(path, "global() cannot be combined with other selectors");
            return None;
        }
        _ => {}
    }
    match calico_selector::parse(s) {
        Ok(e) => Some(e),
        Err(e) => {
            errs.add(path, format!("invalid selector `{s}`: {e}"));
            None
        }
    }
}

/// `global()` with only blanks around and inside it (one token before the end).
fn global_alone(s: &str) -> bool {
    let blank = |c: char| c == ' ' || c == '\t';
    s.trim_matches(blank).strip_prefix("global(").is_some_and(|rest| rest.trim_start_matches(blank) == ")")
}

/// One side of a rule: its selectors combined as `getEndpointSelector` does, its nets, its ports (parsed, not yet
/// given the rule's protocol), its `services`.
fn entity(ns: Option<&str>, e: &obj::EntityRuleObj, path: &str, errs: &mut Errors) -> Entity {
    let mut out = Entity::default();
    let sel = selector_field(e.selector.as_deref(), &format!("{path}.selector"), Global::Refused, errs);
    let ns_sel =
        selector_field(e.namespace_selector.as_deref(), &format!("{path}.namespaceSelector"), Global::Alone, errs);
    out.not_selector =
        selector_field(e.not_selector.as_deref(), &format!("{path}.notSelector"), Global::Unchecked, errs);
    let sa = e.service_accounts.as_ref().and_then(|m| service_accounts(m, &format!("{path}.serviceAccounts"), errs));
    // Which namespaces: the selected ones, else a namespaced policy's own.
    let ns_given = e.namespace_selector.as_deref().is_some_and(|s| !s.is_empty());
    let namespaces = if ns_given {
        ns_sel.map(|s| {
            let s = prefixed(s, calico_keys::NS_PREFIX);
            let s = replace(s, &Expr::All, &Expr::Has(calico_keys::NAMESPACE.to_string()));
            replace(s, &Expr::Global, &Expr::Not(Box::new(Expr::Has(calico_keys::NAMESPACE.to_string()))))
        })
    } else {
        ns.map(own_namespace)
    };
    let mut selector = match (sa, sel) {
        (Some(sa), Some(sel)) => Some(and(sa, sel)),
        (sa, sel) => sa.or(sel),
    };
    // Limited to those namespaces as soon as any selector field is used, `notSelector` included.
    let not_given = e.not_selector.as_deref().is_some_and(|s| !s.is_empty());
    if let Some(nss) = namespaces {
        if selector.is_some() || not_given || ns_given {
            selector = Some(match selector {
                Some(s) => and(nss, s),
                None => nss,
            });
        }
    }
    out.selector = selector;

    (out.nets, out.nets_family) = nets(e.nets.as_deref(), &format!("{path}.nets"), false, errs);
    (out.not_nets, out.not_nets_family) = nets(e.not_nets.as_deref(), &format!("{path}.notNets"), true, errs);

    for (field, list, into, numeric, present) in [
        ("ports", e.ports.as_deref(), &mut out.ports, &mut out.numeric_ports.0, &mut out.has_ports),
        ("notPorts", e.not_ports.as_deref(), &mut out.not_ports, &mut out.numeric_ports.1, &mut out.has_not_ports),
    ] {
        let list = list.unwrap_or_default();
        *present = !list.is_empty();
        check_max(list.len(), MAX_PORTS, &format!("{path}.{field}"), errs);
        for (i, p) in list.iter().enumerate() {
            let parsed = port(p, &format!("{path}.{field}[{i}]"), errs);
            // An entry that does not parse is no name either (the validator's check sees a number or a name).
            *numeric |= !matches!(parsed, Some(CPort::Named(_)));
            into.extend(parsed);
        }
    }

    if let Some(svc) = &e.services {
        let spath = format!("{path}.services");
        // The EntityRule's CEL rules.
        if ns_given {
            errs.add(
                format!("{path}.namespaceSelector"),
                "cannot specify NamespaceSelector and Services on the same rule",
            );
        }
        if e.service_accounts.is_some() {
            errs.add(format!("{path}.serviceAccounts"), "cannot specify ServiceAccounts and Services on the same rule");
        }
        for (field, v) in [("selector", &e.selector), ("notSelector", &e.not_selector)] {
            if v.as_deref().is_some_and(|s| !s.is_empty()) {
                errs.add(
                    format!("{path}.{field}"),
                    "cannot specify Selector/NotSelector and Services on the same rule",
                );
            }
        }
        for (field, v) in [("nets", &e.nets), ("notNets", &e.not_nets)] {
            if v.as_deref().is_some_and(|v| !v.is_empty()) {
                errs.add(format!("{path}.{field}"), "cannot specify Nets/NotNets and Services on the same rule");
            }
        }
        match svc.name.as_deref() {
            None | Some("") => errs.add(format!("{spath}.name"), "services must specify a service name"),
            Some(n) => {
                if let Err(msg) = selector::check_dns_subdomain(n) {
                    errs.add(format!("{spath}.name"), msg);
                }
            }
        }
        if let Some(n) = svc.namespace.as_deref().filter(|n| !n.is_empty()) {
            if let Err(msg) = selector::check_dns_subdomain(n) {
                errs.add(format!("{spath}.namespace"), msg);
            }
        }
        out.services = Some((svc.name.clone(), svc.namespace.clone()));
    }
    out
}

/// `serviceAccounts` as `parseServiceAccounts` reads it: `selector` with `pcsa.` keys, `&&` the names as
/// `projectcalico.org/serviceaccount in {...}`. `None` when it has neither.
fn service_accounts(m: &obj::ServiceAccountMatch, path: &str, errs: &mut Errors) -> Option<Expr> {
    let sel = selector_field(m.selector.as_deref(), &format!("{path}.selector"), Global::UncheckedUnlimited, errs)
        .map(|s| prefixed(s, calico_keys::SA_PREFIX));
    let names = m.names.as_deref().unwrap_or_default();
    for (i, n) in names.iter().enumerate() {
        let npath = format!("{path}.names[{i}]");
        if names[..i].contains(n) {
            errs.add(npath, format!("duplicate value `{n}`"));
        } else if let Err(e) = selector::check_dns_subdomain(n) {
            // Upstream does not check the names; no service account has such a name.
            errs.warn(npath, format!("{e}: no service account has this name, so it matches no pod"));
        }
    }
    if names.is_empty() {
        return sel;
    }
    let mut values = names.to_vec();
    values.sort_unstable();
    values.dedup();
    let names = Expr::In { key: calico_keys::SERVICE_ACCOUNT.to_string(), values };
    Some(match sel {
        Some(s) => and(s, names),
        None => names,
    })
}

/// `nets`/`notNets`: CIDRs (host bits masked off) or addresses, at most 256, no duplicates; and the families
/// they have (IPv4, IPv6). `negated`: a catch-all CIDR is refused (it would match nothing).
fn nets(list: Option<&[String]>, path: &str, negated: bool, errs: &mut Errors) -> (Vec<IpNet>, (bool, bool)) {
    let list = list.unwrap_or_default();
    check_max(list.len(), MAX_NETS, path, errs);
    let mut out: Vec<IpNet> = Vec::with_capacity(list.len());
    let mut family = (false, false);
    for (i, s) in list.iter().enumerate() {
        let epath = format!("{path}[{i}]");
        if list[..i].contains(s) {
            errs.add(epath, format!("duplicate value `{s}`"));
            continue;
        }
        let Some((net, bare)) = parse_cidr_or_ip(s) else {
            errs.add(epath, format!("invalid CIDR `{s}` (e.g. 10.0.0.0/8, fd00::/8, or an address)"));
            continue;
        };
        match net {
            IpNet::V4(_) => family.0 = true,
            IpNet::V6(_) => family.1 = true,
        }
        if negated && ((net.addr().is_ipv4() && s == "0.0.0.0/0") || (net.addr().is_ipv6() && net.prefix_len() == 0)) {
            errs.add(epath, "catch-all CIDR in negation creates logical contradiction (matches no traffic)");
            continue;
        }
        let masked = net.trunc();
        if bare {
            errs.warn(
                epath,
                format!(
                    "`{s}` is an address, not a CIDR: Calico's API server refuses it in a rule; netpol reads it as \
                     `{masked}`, as Felix would"
                ),
            );
        } else if masked != net {
            errs.warn(
                epath,
                format!(
                    "`{s}` has host bits set: Calico's API server refuses it in a rule; netpol reads it as `{masked}`, \
                     as Felix would"
                ),
            );
        }
        if !out.contains(&masked) {
            out.push(masked);
        }
    }
    (out, family)
}

/// libcalico-go's `ParseCIDROrIP`: `addr/len` (host bits kept), or an address (a full-length prefix, `true`).
fn parse_cidr_or_ip(s: &str) -> Option<(IpNet, bool)> {
    if let Some((addr, len)) = s.split_once('/') {
        let ip: IpAddr = addr.parse().ok()?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return IpNet::new(ip, len.parse().ok()?).ok().map(|n| (n, false));
    }
    let ip: IpAddr = s.parse().ok()?;
    Some((IpNet::from(ip), true))
}

/// `projectcalico.org/namespace == '<ns>'`.
fn own_namespace(ns: &str) -> Expr {
    Expr::Eq { key: calico_keys::NAMESPACE.to_string(), value: ns.to_string() }
}

/// `(a) && b`: two operands, each kept whole (as upstream's string `(%s) && %s` parses).
fn and(a: Expr, b: Expr) -> Expr {
    Expr::And(vec![a, b])
}

/// Every label key prefixed (`PrefixVisitor`).
fn prefixed(e: Expr, prefix: &str) -> Expr {
    let p = |key: String| format!("{prefix}{key}");
    match e {
        Expr::All | Expr::Global => e,
        Expr::Has(key) => Expr::Has(p(key)),
        Expr::Eq { key, value } => Expr::Eq { key: p(key), value },
        Expr::Ne { key, value } => Expr::Ne { key: p(key), value },
        Expr::Contains { key, value } => Expr::Contains { key: p(key), value },
        Expr::StartsWith { key, value } => Expr::StartsWith { key: p(key), value },
        Expr::EndsWith { key, value } => Expr::EndsWith { key: p(key), value },
        Expr::In { key, values } => Expr::In { key: p(key), values },
        Expr::NotIn { key, values } => Expr::NotIn { key: p(key), values },
        Expr::Not(e) => Expr::Not(Box::new(prefixed(*e, prefix))),
        Expr::And(es) => Expr::And(es.into_iter().map(|e| prefixed(e, prefix)).collect()),
        Expr::Or(es) => Expr::Or(es.into_iter().map(|e| prefixed(e, prefix)).collect()),
    }
}

/// Every `from` term (`all()` or `global()`) replaced by `to`: upstream's string replacement, on the tree.
fn replace(e: Expr, from: &Expr, to: &Expr) -> Expr {
    match e {
        e if e == *from => to.clone(),
        Expr::Not(e) => Expr::Not(Box::new(replace(*e, from, to))),
        Expr::And(es) => Expr::And(es.into_iter().map(|e| replace(e, from, to)).collect()),
        Expr::Or(es) => Expr::Or(es.into_iter().map(|e| replace(e, from, to)).collect()),
        e => e,
    }
}

/// Calico policy names: a DNS subdomain (ObjectMeta) of one label or two (`tier.name`), or a Kubernetes
/// NetworkPolicy's or an OpenShift one's (`knp.default.`/`ossg.default.` then a subdomain).
fn check_network_policy_name(s: &str) -> Result<(), String> {
    selector::check_dns_subdomain(s)?;
    if s.split('.').count() <= 2 || s.starts_with("knp.default.") || s.starts_with("ossg.default.") {
        return Ok(());
    }
    Err("must be a lowercase RFC 1123 label, or two joined by a '.' (regex: \
         [a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)?)"
        .into())
}

/// GlobalNetworkPolicy names: one DNS label or two joined by a `.`.
fn check_global_network_policy_name(s: &str) -> Result<(), String> {
    selector::check_dns_subdomain(s)?;
    if s.split('.').count() <= 2 {
        return Ok(());
    }
    Err("must be a lowercase RFC 1123 label, or two joined by a '.' (regex: \
         ([a-z0-9]([-a-z0-9]*[a-z0-9])?\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
        .into())
}

/// The built-in tiers and what a Tier object of that name must say (the Tier's CEL rules).
const BUILTIN_TIERS: [(&str, f64, Action); 3] = [
    ("kube-admin", 1_000.0, Action::Pass),
    ("default", 1_000_000.0, Action::Deny),
    ("kube-baseline", 10_000_000.0, Action::Pass),
];

/// The index in `Cluster::tiers` of a built-in tier's Calico name.
pub(crate) fn builtin_tier(name: &str) -> Option<usize> {
    BUILTIN_TIERS.iter().position(|t| t.0 == name)
}

/// The built-in tiers' Calico names, in their order in `Cluster::tiers`.
pub(crate) fn builtin_tier_names() -> [&'static str; 3] {
    BUILTIN_TIERS.map(|t| t.0)
}

// ---- staged policies ----

/// `stagedAction`'s values (the CRD's enum, case-sensitive).
const STAGED_ACTIONS: [(&str, StagedAction); 4] = [
    ("Set", StagedAction::Set),
    ("Delete", StagedAction::Delete),
    ("Learn", StagedAction::Learn),
    ("Ignore", StagedAction::Ignore),
];

/// The message of a spec field set in a staged Delete of a Calico kind (libcalico-go's validator: "Spec fields,
/// except Tier, should all be zero-value if stagedAction is Delete"; the client clears `types` first).
const DELETE_NOT_ZERO: &str = "must not be set when stagedAction is Delete: a staged Delete only names the policy \
                               to delete (spec fields other than `stagedAction`, `tier` and `types` must have their \
                               zero value)";

/// The same for a StagedKubernetesNetworkPolicy ("Spec fields should all be zero-value if stagedAction is Delete").
const K8S_DELETE_NOT_ZERO: &str = "must not be set when stagedAction is Delete: a staged Delete only names the \
                                   policy to delete (spec fields other than `stagedAction` must have their zero \
                                   value)";

/// `spec.stagedAction`: omitted, `Set` (the CRD's default); else one of the enum's values. `None` when refused.
fn staged_action(v: Option<&str>, errs: &mut Errors) -> Option<StagedAction> {
    let Some(v) = v else { return Some(StagedAction::Set) };
    match STAGED_ACTIONS.iter().find(|(name, _)| *name == v) {
        Some(&(_, a)) => Some(a),
        None => {
            errs.add("spec.stagedAction", unsupported(v, &STAGED_ACTIONS.map(|a| a.0)));
            None
        }
    }
}

/// The policy a staged Delete names: its kind and name, selecting nothing, with no rules.
fn delete_target(kind: PolicyKind, name: String) -> Policy {
    Policy {
        host: Default::default(),
        position: 0,
        manifest: None,
        kind,
        tier: PolicyTier::NetworkPolicy,
        order: if kind == PolicyKind::NetworkPolicy { 1000.into() } else { Order(None) },
        scope: Scope::Cluster(Selector::everything()),
        name,
        pod_selector: Selector::everything(),
        calico_selector: Some(Expr::Not(Box::new(Expr::All))),
        ingress: Vec::new(),
        egress: Vec::new(),
        affects_ingress: false,
        affects_egress: false,
        origin: Default::default(),
    }
}

/// What a staged Delete of a Calico kind may still say: a tier (a DNS subdomain) and `types` (checked against the
/// CRD schema, then cleared by upstream's client); each other field given is an error.
fn calico_delete_fields(tier: Option<&str>, types: Option<&[String]>, set: &[(&str, bool)], errs: &mut Errors) {
    if let Some(t) = tier.filter(|t| !t.is_empty()) {
        if let Err(e) = selector::check_dns_subdomain(t) {
            errs.add("spec.tier", e);
        }
    }
    let view = SpecView {
        tier: None,
        order: None,
        ingress: &[],
        egress: &[],
        selector: None,
        types,
        service_account_selector: None,
        namespace_selector: None,
        performance_hints: None,
    };
    self::types(&view, errs);
    for (field, present) in set {
        if *present {
            errs.add(format!("spec.{field}"), DELETE_NOT_ZERO);
        }
    }
}

/// A `StagedNetworkPolicy`: with `Set`, `Learn` or `Ignore`, the NetworkPolicy it stands for, validated and
/// converted as a Calico NetworkPolicy is (libcalico-go's `ConvertStagedPolicyToEnforced` copies the spec over);
/// with `Delete`, the name of the NetworkPolicy to delete.
pub(crate) fn staged_network_policy(o: obj::StagedNetworkPolicyObj, errs: &mut Errors) -> Option<Item> {
    let spec = o.spec.unwrap_or_default();
    let action = staged_action(spec.staged_action.as_deref(), errs);
    if action == Some(StagedAction::Delete) {
        let name = meta_name_checked(&o.metadata.name, errs, NP.check_name);
        let ns_name = meta_namespace(&o.metadata.namespace, errs);
        check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
        let set = [
            ("order", spec.order.is_some()),
            ("ingress", spec.ingress.is_some()),
            ("egress", spec.egress.is_some()),
            ("selector", spec.selector.as_deref().is_some_and(|s| !s.is_empty())),
            ("serviceAccountSelector", spec.service_account_selector.as_deref().is_some_and(|s| !s.is_empty())),
            ("performanceHints", spec.performance_hints.is_some()),
        ];
        calico_delete_fields(spec.tier.as_deref(), spec.types.as_deref(), &set, errs);
        let policy = Box::new(delete_target(PolicyKind::CalicoNetworkPolicy, name?));
        return Some(Item::Staged { action: StagedAction::Delete, ns_name: Some(ns_name?), policy, tier: None });
    }
    let enforced = obj::CalicoNetworkPolicyObj {
        _api_version: None,
        _kind: None,
        metadata: o.metadata,
        spec: Some(obj::CalicoNetworkPolicySpec {
            tier: spec.tier,
            order: spec.order,
            ingress: spec.ingress,
            egress: spec.egress,
            selector: spec.selector,
            types: spec.types,
            service_account_selector: spec.service_account_selector,
            performance_hints: spec.performance_hints,
        }),
    };
    let Item::CalicoPolicy { ns_name, policy, tier } = network_policy(enforced, errs)? else { return None };
    Some(Item::Staged { action: action.unwrap_or_default(), ns_name, policy, tier })
}

/// A `StagedGlobalNetworkPolicy`: as [`staged_network_policy`], for a GlobalNetworkPolicy.
pub(crate) fn staged_global_network_policy(o: obj::StagedGlobalNetworkPolicyObj, errs: &mut Errors) -> Option<Item> {
    let spec = o.spec.unwrap_or_default();
    let action = staged_action(spec.staged_action.as_deref(), errs);
    if action == Some(StagedAction::Delete) {
        let name = meta_name_checked(&o.metadata.name, errs, GNP.check_name);
        check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
        let non_empty = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        let set = [
            ("order", spec.order.is_some()),
            ("ingress", spec.ingress.is_some()),
            ("egress", spec.egress.is_some()),
            ("selector", non_empty(&spec.selector)),
            ("doNotTrack", spec.do_not_track == Some(true)),
            ("preDNAT", spec.pre_dnat == Some(true)),
            ("applyOnForward", spec.apply_on_forward == Some(true)),
            ("serviceAccountSelector", non_empty(&spec.service_account_selector)),
            ("namespaceSelector", non_empty(&spec.namespace_selector)),
            ("performanceHints", spec.performance_hints.is_some()),
        ];
        calico_delete_fields(spec.tier.as_deref(), spec.types.as_deref(), &set, errs);
        let policy = Box::new(delete_target(PolicyKind::GlobalNetworkPolicy, name?));
        return Some(Item::Staged { action: StagedAction::Delete, ns_name: None, policy, tier: None });
    }
    let enforced = obj::GlobalNetworkPolicyObj {
        _api_version: None,
        _kind: None,
        metadata: o.metadata,
        spec: Some(obj::GlobalNetworkPolicySpec {
            tier: spec.tier,
            order: spec.order,
            ingress: spec.ingress,
            egress: spec.egress,
            selector: spec.selector,
            types: spec.types,
            do_not_track: spec.do_not_track,
            pre_dnat: spec.pre_dnat,
            apply_on_forward: spec.apply_on_forward,
            service_account_selector: spec.service_account_selector,
            namespace_selector: spec.namespace_selector,
            performance_hints: spec.performance_hints,
        }),
    };
    let Item::CalicoPolicy { ns_name, policy, tier } = global_network_policy(enforced, errs)? else { return None };
    Some(Item::Staged { action: action.unwrap_or_default(), ns_name, policy, tier })
}

/// A `StagedKubernetesNetworkPolicy`: with `Set`, `Learn` or `Ignore`, the `networking.k8s.io/v1` NetworkPolicy
/// it stands for (`ConvertStagedKubernetesPolicyToK8SEnforced`), validated and converted exactly as the v1 loader
/// does, after the staged CRD's own schema rule (`policyTypes`: 1 or 2 distinct items); with `Delete`, the name of
/// the NetworkPolicy to delete (every other spec field must have its zero value).
pub(crate) fn staged_kubernetes_network_policy(
    o: obj::StagedKubernetesNetworkPolicyObj,
    errs: &mut Errors,
) -> Option<Item> {
    let spec = o.spec.unwrap_or_default();
    let action = staged_action(spec.staged_action.as_deref(), errs);
    if action == Some(StagedAction::Delete) {
        let name = meta_name(&o.metadata.name, errs);
        let ns_name = meta_namespace(&o.metadata.namespace, errs);
        // `podSelector: {}` is the zero LabelSelector; an empty `matchLabels: {}` is not (a non-nil map).
        let selector_set =
            spec.pod_selector.as_ref().is_some_and(|s| s.match_labels.is_some() || s.match_expressions.is_some());
        let set = [
            ("podSelector", selector_set),
            ("ingress", spec.ingress.is_some()),
            ("egress", spec.egress.is_some()),
            ("policyTypes", spec.policy_types.is_some()),
        ];
        for (field, present) in set {
            if present {
                errs.add(format!("spec.{field}"), K8S_DELETE_NOT_ZERO);
            }
        }
        let policy = Box::new(delete_target(PolicyKind::NetworkPolicy, name?));
        return Some(Item::Staged { action: StagedAction::Delete, ns_name: Some(ns_name?), policy, tier: None });
    }
    if let Some(types) = &spec.policy_types {
        if types.is_empty() {
            errs.add("spec.policyTypes", "must have at least 1 item (omit `policyTypes` for the default)");
        }
        for (i, t) in types.iter().enumerate() {
            if types[..i].contains(t) {
                errs.add(format!("spec.policyTypes[{i}]"), format!("duplicate value `{t}`"));
            }
        }
    }
    let enforced = obj::NetworkPolicyObj {
        _api_version: None,
        _kind: None,
        metadata: o.metadata,
        spec: Some(obj::NetworkPolicySpec {
            pod_selector: spec.pod_selector,
            ingress: spec.ingress,
            egress: spec.egress,
            policy_types: spec.policy_types,
        }),
        _status: None,
    };
    let Item::Policy { ns_name, policy } = validate::policy(enforced, errs)? else { return None };
    Some(Item::Staged {
        action: action.unwrap_or_default(),
        ns_name: Some(ns_name),
        policy: Box::new(policy),
        tier: None,
    })
}

/// A `Tier`: a DNS label name, `order` (none: after every ordered tier), `defaultAction` Deny (the default) or
/// Pass. The built-in tiers' Tier objects must keep their order and default action.
pub(crate) fn tier(o: obj::TierObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name_checked(&o.metadata.name, errs, selector::check_dns_label);
    check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    let spec = o.spec.unwrap_or_default();
    let order = match spec.order {
        Some(v) if !v.is_finite() => {
            errs.add("spec.order", format!("must be a finite number (got {v})"));
            None
        }
        v => v,
    };
    let default_action = match spec.default_action.as_deref() {
        None | Some("Deny") => Action::Deny,
        Some("Pass") => Action::Pass,
        Some(other) => {
            errs.add("spec.defaultAction", unsupported(other, &["Pass", "Deny"]));
            Action::Deny
        }
    };
    let builtin = name.as_deref().and_then(builtin_tier).and_then(|i| BUILTIN_TIERS.get(i));
    if let Some(&(tier, must_order, must_action)) = builtin {
        if spec.default_action.is_some_and(|a| a != "Deny" && a != "Pass") {
            // Already reported.
        } else if default_action != must_action {
            let a = if must_action == Action::Pass { "Pass" } else { "Deny" };
            errs.add("spec.defaultAction", format!("The '{tier}' tier must have default action '{a}'"));
        }
        if order != Some(must_order) {
            errs.add("spec.order", format!("{tier} tier order must be {must_order}"));
        }
    }
    Some(Item::Tier(TierDef { name: name?, order, default_action, origin: None, pass_to_network_policy: false }))
}

/// A `NetworkSet` (namespaced) or `GlobalNetworkSet`: Kubernetes labels (not `projectcalico.org/namespace`,
/// which Calico adds itself), and `spec.nets` of CIDRs (host bits masked off) or addresses.
pub(crate) fn network_set(o: obj::NetworkSetObj, global: bool, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let ns_name = if global { None } else { Some(meta_namespace(&o.metadata.namespace, errs)) };
    let labels = check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    if labels.contains_key(calico_keys::NAMESPACE) {
        errs.add("metadata.labels", format!("{} is not a valid label name", calico_keys::NAMESPACE));
    }
    let list = o.spec.and_then(|s| s.nets).unwrap_or_default();
    let mut nets: Vec<IpNet> = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let path = format!("spec.nets[{i}]");
        if list[..i].contains(s) {
            errs.add(path, format!("duplicate value `{s}`"));
            continue;
        }
        match parse_cidr_or_ip(s) {
            None => errs.add(path, format!("invalid CIDR `{s}` (e.g. 10.0.0.0/8, fd00::/8, or an address)")),
            Some((net, _)) => {
                let net = net.trunc();
                if !nets.contains(&net) {
                    nets.push(net);
                }
            }
        }
    }
    let set = NetworkSet { ns: None, name: name?, labels, nets, origin: Default::default() };
    let ns_name = match ns_name {
        Some(n) => Some(n?),
        None => None,
    };
    Some(Item::NetworkSet { ns_name, set })
}

/// A HostEndpoint: `node` required, `interfaceName` or `expectedIPs` (the CRD's rules), addresses, profile names and
/// named ports as the validator checks them.
pub(crate) fn host_endpoint(o: obj::HostEndpointObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let labels = check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    let spec = o.spec.unwrap_or_default();
    let node = spec.node.filter(|n| !n.is_empty());
    match &node {
        None => errs.add("spec.node", "node must be specified"),
        Some(n) => {
            if let Err(e) = selector::check_dns_subdomain(n) {
                errs.add("spec.node", e);
            }
        }
    }
    let interface = spec.interface_name.filter(|i| !i.is_empty());
    if let Some(i) = &interface {
        // Linux interface names: at most 15 characters, no `/`, whitespace or `:` (the validator's `interface`).
        if i != "*" && (i.len() > 15 || i.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())) {
            errs.add("spec.interfaceName", format!("invalid interface name `{i}` (at most 15 characters, or `*`)"));
        }
    }
    let list = spec.expected_ips.unwrap_or_default();
    if interface.is_none() && list.is_empty() {
        errs.add("spec", "at least one of interfaceName or expectedIPs must be specified");
    }
    let mut expected_ips: Vec<IpAddr> = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        match s.parse::<IpAddr>() {
            Ok(ip) if !expected_ips.contains(&ip.to_canonical()) => expected_ips.push(ip.to_canonical()),
            Ok(_) => errs.add(format!("spec.expectedIPs[{i}]"), format!("duplicate value `{s}`")),
            Err(_) => errs.add(format!("spec.expectedIPs[{i}]"), format!("invalid IP address `{s}`")),
        }
    }
    let profiles = spec.profiles.unwrap_or_default();
    for (i, p) in profiles.iter().enumerate() {
        if let Err(e) = selector::check_dns_subdomain(p) {
            errs.add(format!("spec.profiles[{i}]"), e);
        }
    }
    let mut ports = Vec::new();
    for (i, p) in spec.ports.unwrap_or_default().iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let pname = match p.name.as_deref() {
            Some(n) => match selector::check_port_name(n) {
                Ok(()) => Some(n),
                Err(e) => {
                    errs.add(format!("{path}.name"), e);
                    None
                }
            },
            None => {
                errs.add(format!("{path}.name"), "Required value");
                None
            }
        };
        let proto = match &p.protocol {
            None => {
                errs.add(format!("{path}.protocol"), "Required value");
                None
            }
            Some(v) => protocol(v, &format!("{path}.protocol"), errs).and_then(|pr| {
                let named = Protocol::from_number(pr.number).filter(|p| p.has_ports());
                if named.is_none() {
                    errs.add(format!("{path}.protocol"), "a named port's protocol must be TCP, UDP or SCTP");
                }
                named
            }),
        };
        let port = match p.port {
            Some(n) => match u16::try_from(n) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    errs.add(format!("{path}.port"), format!("must be between 1 and 65535, inclusive (got {n})"));
                    None
                }
            },
            None => {
                errs.add(format!("{path}.port"), "Required value");
                None
            }
        };
        if let (Some(n), Some(protocol), Some(port)) = (pname, proto, port) {
            ports.push(ContainerPort { name: Some(n.into()), port, protocol });
        }
    }
    Some(Item::HostEndpoint(HostEndpoint {
        name: name?,
        node: node?,
        interface,
        expected_ips,
        labels,
        profiles,
        ports,
        origin: Default::default(),
    }))
}

/// A ServiceAccount: its name, namespace and labels (what `serviceAccounts.selector` matches).
pub(crate) fn service_account(o: obj::ServiceAccountObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let ns_name = meta_namespace(&o.metadata.namespace, errs);
    let labels = check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    Some(Item::ServiceAccount { ns_name: ns_name?, name: name?, labels })
}

/// The tier a policy names but no Tier object declares: Calico refuses such a policy; netpol assumes the tier.
pub(crate) fn implicit_tier(name: &str) -> TierDef {
    TierDef {
        name: name.to_string(),
        order: None,
        default_action: Action::Deny,
        origin: None,
        pass_to_network_policy: false,
    }
}

pub(crate) fn implicit_tier_message(name: &str) -> String {
    format!(
        "tier `{name}` is not declared by any Tier object: Calico would have refused this policy (its tier must \
         exist); netpol assumes a tier `{name}` with no order (after every ordered tier) and default action Deny"
    )
}

fn check_max(n: usize, max: usize, path: &str, errs: &mut Errors) {
    if n > max {
        errs.add(path, format!("must have at most {max} items (got {n})"));
    }
}

/// `a`, `b`, `c`
fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The API server's enum message, with a hint when only the case differs.
fn unsupported(value: &str, supported: &[&str]) -> String {
    let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
    let mut msg = format!("unsupported value `{value}`: supported values: {}", list.join(", "));
    if let Some(s) = supported.iter().find(|s| s.eq_ignore_ascii_case(value)) {
        msg.push_str(&format!(" (values are case-sensitive: `{s}`)"));
    }
    msg
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn global_alone_is_one_token() {
        for ok in ["global()", " global() ", "global( )", "\tglobal(\t)"] {
            assert!(global_alone(ok), "{ok:?}");
        }
        for bad in ["!global()", "(global())", "global() && a == 'b'", "global()x", "global"] {
            assert!(!global_alone(bad), "{bad:?}");
        }
    }

    #[test]
    fn prefixing_and_replacing_follow_upstream_strings() {
        let e = calico_selector::parse("a == 'x' && (has(b) || all()) && !c in {'1'}").unwrap();
        let p = prefixed(e, "pcns.");
        let want = calico_selector::parse("pcns.a == 'x' && (has(pcns.b) || all()) && !pcns.c in {'1'}").unwrap();
        assert_eq!(p, want);
        let r = replace(p, &Expr::All, &Expr::Has("projectcalico.org/namespace".into()));
        let want = calico_selector::parse(
            "pcns.a == 'x' && (has(pcns.b) || has(projectcalico.org/namespace)) && !pcns.c in {'1'}",
        )
        .unwrap();
        assert_eq!(r, want);
    }

    #[test]
    fn ports_parse_as_numorstring_does() {
        let mut errs = Errors::default();
        let p = |v: NumOrStr, errs: &mut Errors| port(&v, "p", errs);
        assert!(matches!(p(NumOrStr::Num(80), &mut errs), Some(CPort::Range(80, 80))));
        assert!(matches!(p(NumOrStr::Str("0080".into()), &mut errs), Some(CPort::Range(80, 80))));
        assert!(matches!(p(NumOrStr::Str("80:90".into()), &mut errs), Some(CPort::Range(80, 90))));
        assert!(matches!(p(NumOrStr::Str("http".into()), &mut errs), Some(CPort::Named(_))));
        assert!(errs.errors.is_empty());
        for bad in [NumOrStr::Num(0), NumOrStr::Num(65536), NumOrStr::Num(-1), NumOrStr::Str("90:80".into())] {
            assert!(p(bad.clone(), &mut errs).is_none(), "{bad:?}");
        }
        for bad in ["0:10", "65536", "1:65536", "HTTP", "a b", "-x", ""] {
            assert!(p(NumOrStr::Str(bad.into()), &mut errs).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn cidrs_or_addresses_keep_host_bits_until_masked() {
        assert_eq!(parse_cidr_or_ip("10.0.0.1/8"), Some(("10.0.0.1/8".parse().unwrap(), false)));
        assert_eq!(parse_cidr_or_ip("10.0.0.1"), Some(("10.0.0.1/32".parse().unwrap(), true)));
        assert_eq!(parse_cidr_or_ip("fd00::1"), Some(("fd00::1/128".parse().unwrap(), true)));
        for bad in ["10.0.0.0/33", "10.0.0.0/", "x", "10.0.0.0/8/8", "fe80::1%eth0", "010.0.0.1"] {
            assert_eq!(parse_cidr_or_ip(bad), None, "{bad}");
        }
    }
}
