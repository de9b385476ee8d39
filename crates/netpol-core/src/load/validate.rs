//! The API server's validation rules for what netpol reads, from the lean objects to model pieces. Errors are
//! collected per object as (field path, message) pairs.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::node::Node;
use super::objects::{self as obj, IntOrString};
use super::{Item, NodeItem, PodItem};
use crate::model::*;
use crate::portset::Protocol;
use crate::selector::{self, Atom, Labels, Requirement, Selector};

/// Field-level validation errors of one object (which is then not loaded), and warnings (for an object that
/// loads: what the API server accepts but upstream documents as unsupported or undefined).
#[derive(Default)]
pub(crate) struct Errors {
    pub(crate) errors: Vec<(String, String)>,
    pub(crate) warnings: Vec<(String, String)>,
}

impl Errors {
    pub(crate) fn add(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push((path.into(), msg.into()));
    }

    pub(crate) fn warn(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.warnings.push((path.into(), msg.into()));
    }
}

/// `parent.field[index]`: a field path written out only when an error names it.
pub(crate) struct Indexed<'a, P>(pub &'a P, pub &'a str, pub usize);

impl<P: fmt::Display> fmt::Display for Indexed<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}[{}]", self.0, self.1, self.2)
    }
}

/// `Kind namespace/name`, or `Kind name` for a cluster-scoped kind (whose `metadata.namespace`, if any, the API
/// server ignores).
pub(crate) fn object_label(kind: &str, cluster_scoped: bool, meta: Option<&Node<'_>>) -> String {
    let name = meta.and_then(|m| m.get("name")).and_then(Node::as_str);
    let ns = meta.and_then(|m| m.get("namespace")).and_then(Node::as_str);
    // Written piece by piece: every object gets a label, and `format!` was a measurable share of loading.
    let mut label = String::with_capacity(kind.len() + 2 + ns.map_or(7, str::len) + name.map_or(0, str::len));
    label.push_str(kind);
    if let Some(n) = name {
        label.push(' ');
        if !cluster_scoped {
            label.push_str(ns.unwrap_or("default"));
            label.push('/');
        }
        label.push_str(n);
    }
    label
}

pub(crate) fn meta_name(meta: &Option<String>, errs: &mut Errors) -> Option<String> {
    meta_name_checked(meta, errs, selector::check_dns_subdomain)
}

pub(crate) fn meta_name_checked(
    name: &Option<String>,
    errs: &mut Errors,
    check: fn(&str) -> Result<(), String>,
) -> Option<String> {
    match name {
        None => {
            errs.add("metadata.name", "name is required");
            None
        }
        Some(n) => {
            if let Err(e) = check(n) {
                errs.add("metadata.name", e);
            }
            Some(n.clone())
        }
    }
}

pub(crate) fn meta_namespace(namespace: &Option<String>, errs: &mut Errors) -> Option<String> {
    let ns = namespace.clone().unwrap_or_else(|| "default".to_string());
    if let Err(e) = selector::check_dns_label(&ns) {
        errs.add("metadata.namespace", e);
        return None;
    }
    Some(ns)
}

/// Validated labels; `path` names the field in errors (built only when there is one).
pub(crate) fn check_labels(
    labels: Option<BTreeMap<String, String>>,
    path: impl Fn() -> String,
    errs: &mut Errors,
) -> Labels {
    let mut out = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        let mut ok = true;
        if let Err(e) = selector::check_label_key(&k) {
            errs.add(path(), e);
            ok = false;
        }
        if let Err(e) = selector::check_label_value(&v) {
            errs.add(format!("{}.{k}", path()), e);
            ok = false;
        }
        if ok {
            out.push((k, v));
        }
    }
    out.into_iter().collect()
}

pub(crate) fn check_protocol(p: Option<&str>, path: impl fmt::Display, errs: &mut Errors) -> Option<Protocol> {
    match p {
        None => Some(Protocol::Tcp),
        Some(s) => match Protocol::parse_exact(s) {
            Some(p) => Some(p),
            None => {
                errs.add(
                    path.to_string(),
                    format!("unsupported value `{s}`: supported values: \"SCTP\", \"TCP\", \"UDP\""),
                );
                None
            }
        },
    }
}

pub(crate) fn check_container_port(
    p: &obj::ContainerPort,
    path: impl Fn() -> String,
    errs: &mut Errors,
) -> Option<ContainerPort> {
    let protocol = match p.protocol.as_deref() {
        None | Some("TCP") => Some(Protocol::Tcp),
        other => check_protocol(other, format_args!("{}.protocol", path()), errs),
    };
    let port = match u16::try_from(p.container_port) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            errs.add(
                format!("{}.containerPort", path()),
                format!("must be between 1 and 65535, inclusive (got {})", p.container_port),
            );
            None
        }
    };
    if let Some(n) = &p.name {
        if let Err(e) = selector::check_port_name(n) {
            errs.add(format!("{}.name", path()), e);
            return None;
        }
    }
    Some(ContainerPort { name: p.name.as_deref().map(Atom::from), port: port?, protocol: protocol? })
}

/// Converts and validates a `LabelSelector` (apimachinery's ValidateLabelSelector rules). `path` is written out
/// only for an error.
pub(crate) fn convert_selector(s: &obj::LabelSelector, path: impl fmt::Display, errs: &mut Errors) -> Selector {
    let mut reqs = Vec::new();
    for (k, v) in s.match_labels.iter().flatten() {
        let mut ok = true;
        if let Err(e) = selector::check_label_key(k) {
            errs.add(format!("{path}.matchLabels"), e);
            ok = false;
        }
        if let Err(e) = selector::check_label_value(v) {
            errs.add(format!("{path}.matchLabels.{k}"), e);
            ok = false;
        }
        if ok {
            reqs.push(Requirement::In(k.as_str().into(), vec![v.as_str().into()]));
        }
    }
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let epath = Indexed(&path, "matchExpressions", i);
        if let Err(msg) = selector::check_label_key(&e.key) {
            errs.add(format!("{epath}.key"), msg);
            continue;
        }
        let values: Vec<Atom> = e.values.iter().flatten().map(|v| Atom::from(v.as_str())).collect();
        for (j, v) in values.iter().enumerate() {
            if let Err(msg) = selector::check_label_value(v) {
                errs.add(format!("{epath}.values[{j}]"), msg);
            }
        }
        let key = Atom::from(e.key.as_str());
        match e.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.add(format!("{epath}.values"), format!("must be specified when `operator` is '{}'", e.operator));
                    continue;
                }
                reqs.push(if e.operator == "In" { Requirement::In(key, values) } else { Requirement::NotIn(key, values) });
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.add(format!("{epath}.values"), format!("may not be specified when `operator` is '{}'", e.operator));
                    continue;
                }
                reqs.push(if e.operator == "Exists" { Requirement::Exists(key) } else { Requirement::DoesNotExist(key) });
            }
            other => errs.add(
                format!("{epath}.operator"),
                format!("not a valid selector operator `{other}`: supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\""),
            ),
        }
    }
    Selector::from_requirements(reqs)
}

pub(crate) fn convert_rule(
    peers: Option<&[obj::PolicyPeer]>,
    ports: Option<&[obj::PolicyPort]>,
    path: impl fmt::Display,
    peer_field: &str,
    errs: &mut Errors,
) -> Rule {
    let mut rule = Rule::default();
    for (i, p) in peers.into_iter().flatten().enumerate() {
        let ppath = Indexed(&path, peer_field, i);
        let has_sel = p.pod_selector.is_some() || p.namespace_selector.is_some();
        match (&p.ip_block, has_sel) {
            (None, false) => {
                errs.add(ppath.to_string(), "must specify a peer (podSelector, namespaceSelector or ipBlock)")
            }
            (Some(_), true) => errs.add(ppath.to_string(), "may not specify both ipBlock and another peer"),
            (Some(b), false) => {
                if let Some(b) = convert_ip_block(b, format_args!("{ppath}.ipBlock"), errs) {
                    rule.peers.push(Peer::IpBlock(b));
                }
            }
            (None, true) => {
                let namespaces = p
                    .namespace_selector
                    .as_ref()
                    .map(|s| convert_selector(s, format_args!("{ppath}.namespaceSelector"), errs));
                let pods =
                    p.pod_selector.as_ref().map(|s| convert_selector(s, format_args!("{ppath}.podSelector"), errs));
                rule.peers.push(Peer::Selectors { namespaces, pods });
            }
        }
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let ppath = Indexed(&path, "ports", i);
        let protocol = check_protocol(p.protocol.as_deref(), format_args!("{ppath}.protocol"), errs);
        let port = match (&p.port, p.end_port) {
            (None, Some(_)) => {
                errs.add(format!("{ppath}.endPort"), "may not be specified when `port` is not specified");
                None
            }
            (None, None) => Some(PortMatch::Any),
            (Some(IntOrString::String(name)), end) => {
                if end.is_some() {
                    errs.add(format!("{ppath}.endPort"), "may not be specified when `port` is non-numeric");
                    None
                } else if let Err(e) = selector::check_port_name(name) {
                    errs.add(format!("{ppath}.port"), e);
                    None
                } else {
                    Some(PortMatch::Named(name.clone()))
                }
            }
            (Some(IntOrString::Int(n)), end) => {
                let lo = match u16::try_from(*n) {
                    Ok(v) if v >= 1 => Some(v),
                    _ => {
                        errs.add(format!("{ppath}.port"), format!("must be between 1 and 65535, inclusive (got {n})"));
                        None
                    }
                };
                let hi = match end {
                    None => lo,
                    Some(e) => match (u16::try_from(e), lo) {
                        (Ok(e16), Some(l)) if e16 >= l => Some(e16),
                        // `port` is already reported; a valid endPort adds no second error.
                        (Ok(e16), None) if e16 >= 1 => None,
                        (Ok(_), Some(l)) if e <= 65535 => {
                            errs.add(
                                format!("{ppath}.endPort"),
                                format!("must be greater than or equal to `port` ({l}) (got {e})"),
                            );
                            None
                        }
                        _ => {
                            errs.add(
                                format!("{ppath}.endPort"),
                                format!("must be between 1 and 65535, inclusive (got {e})"),
                            );
                            None
                        }
                    },
                };
                match (lo, hi) {
                    (Some(l), Some(h)) => Some(PortMatch::Range(l, h)),
                    _ => None,
                }
            }
        };
        if let (Some(protocol), Some(port)) = (protocol, port) {
            rule.ports.push(PolicyPort { protocol, port });
        }
    }
    rule
}

pub(crate) fn parse_cidr(s: &str) -> Option<IpNet> {
    // Go's net.ParseCIDR: address/prefix, no surrounding spaces. Host bits are allowed and masked.
    let (addr, len) = s.split_once('/')?;
    let ip: IpAddr = addr.parse().ok()?;
    if len.is_empty() || !len.chars().all(|c| c.is_ascii_digit()) || len.len() > 3 {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    IpNet::new(ip, len).ok().map(|n| n.trunc())
}

pub(crate) fn convert_ip_block(b: &obj::IpBlock, path: impl fmt::Display, errs: &mut Errors) -> Option<IpBlock> {
    let Some(cidr) = parse_cidr(&b.cidr) else {
        errs.add(
            format!("{path}.cidr"),
            format!("must be a valid CIDR (e.g. 10.0.0.0/8 or fd00::/8), got `{}`", b.cidr),
        );
        return None;
    };
    let mut except = Vec::new();
    let mut ok = true;
    for (i, e) in b.except.iter().flatten().enumerate() {
        let epath = Indexed(&path, "except", i);
        match parse_cidr(e) {
            None => {
                errs.add(epath.to_string(), format!("must be a valid CIDR, got `{e}`"));
                ok = false;
            }
            Some(n) => {
                // API server: the except network address must be in cidr, with a strictly longer prefix.
                if !cidr.contains(&n.network()) || n.prefix_len() <= cidr.prefix_len() || !same_family(&cidr, &n) {
                    errs.add(epath.to_string(), format!("`{e}` must be a strict subset of `cidr` ({})", b.cidr));
                    ok = false;
                } else {
                    except.push(n);
                }
            }
        }
    }
    except.sort();
    except.dedup();
    ok.then_some(IpBlock { cidr, except })
}

fn same_family(a: &IpNet, b: &IpNet) -> bool {
    matches!((a, b), (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)))
}

pub(crate) fn namespace(o: obj::NamespaceObj, errs: &mut Errors) -> Option<Item> {
    // Namespace names are DNS labels (stricter than the subdomains of other objects).
    let name = meta_name_checked(&o.metadata.name, errs, selector::check_dns_label);
    let labels = check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    Some(Item::Namespace { name: name?, labels })
}

/// A workload's pod template becomes one representative pod named after the workload, in the workload's
/// namespace, with the template's labels and ports.
pub(crate) fn workload(
    meta: obj::Meta,
    template: Option<obj::PodTemplate>,
    kind: &'static str,
    prefix: &str,
    errs: &mut Errors,
) -> Option<Item> {
    let Some(t) = template else {
        errs.add(prefix.trim_end_matches('.'), format!("{kind} has no pod template"));
        return None;
    };
    let labels = t.metadata.and_then(|m| m.labels);
    let pod_meta = obj::Meta { name: meta.name, namespace: meta.namespace, labels };
    pod(pod_meta, t.spec, None, kind, prefix, errs)
}

pub(crate) fn pod(
    meta: obj::Meta,
    spec: Option<obj::PodSpec>,
    status: Option<obj::PodStatus>,
    kind: &'static str,
    prefix: &str,
    errs: &mut Errors,
) -> Option<Item> {
    let name = meta_name(&meta.name, errs);
    let ns_name = meta_namespace(&meta.namespace, errs);
    let labels = check_labels(meta.labels, || format!("{prefix}metadata.labels"), errs);
    let mut ports = Vec::new();
    let mut host_network = false;
    let mut node = None;
    let mut service_account = None;
    if let Some(spec) = &spec {
        if let Some(sa) = spec.service_account_name.as_deref().filter(|n| !n.is_empty()) {
            match selector::check_dns_subdomain(sa) {
                Ok(()) => service_account = Some(sa.to_string()),
                Err(e) => errs.add(format!("{prefix}spec.serviceAccountName"), e),
            }
        }
        host_network = spec.host_network.unwrap_or(false);
        // An empty `nodeName` is an unscheduled pod.
        if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
            match selector::check_dns_subdomain(n) {
                Ok(()) => node = Some(n.to_string()),
                Err(e) => errs.add(format!("{prefix}spec.nodeName"), e),
            }
        }
        let mut names: HashMap<&str, (&str, usize, usize)> = HashMap::new();
        // Sidecars (init containers with restartPolicy Always) serve ports too.
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, c)| c.restart_policy.as_deref() == Some("Always"))
            .map(|(i, c)| ("initContainers", i, c));
        let containers = spec.containers.iter().enumerate().map(|(i, c)| ("containers", i, c));
        for (field, i, c) in containers.chain(sidecars) {
            for (j, p) in c.ports.iter().flatten().enumerate() {
                let path = || format!("{prefix}spec.{field}[{i}].ports[{j}]");
                if let Some(cp) = check_container_port(p, path, errs) {
                    if let Some(n) = p.name.as_deref() {
                        if let Some(prev) = names.insert(n, (field, i, j)) {
                            let prev = format!("{prefix}spec.{}[{}].ports[{}]", prev.0, prev.1, prev.2);
                            errs.add(format!("{}.name", path()), format!("duplicate port name `{n}` (also at {prev})"));
                        }
                    }
                    ports.push(cp);
                }
            }
        }
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Some(st) = &status {
        if let Some(ip) = &st.pod_ip {
            match parse_ip(ip) {
                Ok(a) => ips.push(a),
                Err(e) => errs.add("status.podIP", e),
            }
        }
        for (i, pip) in st.pod_ips.iter().flatten().enumerate() {
            match parse_ip(&pip.ip) {
                Ok(a) if !ips.contains(&a) => ips.push(a),
                Ok(_) => {}
                Err(e) => errs.add(format!("status.podIPs[{i}].ip"), e),
            }
        }
        if ips.len() > 2 || (ips.len() == 2 && ips.first().map(IpAddr::is_ipv4) == ips.get(1).map(IpAddr::is_ipv4)) {
            errs.add("status.podIPs", "at most one IPv4 and one IPv6 address");
        }
    }
    Some(Item::Pod(PodItem {
        ns_name: ns_name?,
        name: name?,
        labels,
        ports,
        ips,
        host_network,
        node,
        service_account,
        kind,
    }))
}

/// A Node: name, labels, and its `InternalIP` and `ExternalIP` addresses (other address types are names, not
/// IPs). The API server does not check that they are IPs: one that is not is reported and left out, and the node
/// still loads.
pub(crate) fn node(o: obj::NodeObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let labels = check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    // (InternalIP first, address) for the host IPs.
    let mut typed: Vec<(bool, IpAddr)> = Vec::new();
    for (i, a) in o.status.and_then(|s| s.addresses).into_iter().flatten().enumerate() {
        let internal = match a.type_.as_str() {
            "InternalIP" => true,
            "ExternalIP" => false,
            _ => continue,
        };
        match parse_ip(&a.address) {
            Ok(ip) => typed.push((internal, ip)),
            Err(e) => errs.warn(format!("status.addresses[{i}].address"), format!("{e}: the address is left out")),
        }
    }
    let mut ips: Vec<IpAddr> = Vec::with_capacity(typed.len());
    for (_, ip) in &typed {
        if !ips.contains(ip) {
            ips.push(*ip);
        }
    }
    // The kubelet's host IPs (`GetNodeHostIPs`): the InternalIPs then the ExternalIPs, the first of them and then
    // the first of the other IP family. A hostNetwork pod has these as its pod IPs.
    typed.sort_by_key(|(internal, _)| !internal);
    let mut host_ips: Vec<IpAddr> = typed.first().map(|t| t.1).into_iter().collect();
    if let Some(other) =
        typed.iter().map(|t| t.1).find(|ip| host_ips.first().is_some_and(|f| f.is_ipv4() != ip.is_ipv4()))
    {
        host_ips.push(other);
    }
    Some(Item::Node(NodeItem { name: name?, labels, ips, host_ips }))
}

/// A pod IP as Kubernetes reads it: an IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) is the IPv4 address (Go's
/// `net` package), and a zone (`fe80::1%eth0`) is not an address.
pub(crate) fn parse_ip(s: &str) -> Result<IpAddr, String> {
    if s.contains('%') {
        return Err(format!("invalid IP address `{s}`: zoned addresses (`%zone`) are not pod addresses"));
    }
    s.parse::<IpAddr>().map(|a| a.to_canonical()).map_err(|_| format!("invalid IP address `{s}`"))
}

pub(crate) fn policy(o: obj::NetworkPolicyObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let ns_name = meta_namespace(&o.metadata.namespace, errs);
    let spec = o.spec.unwrap_or_default();
    let pod_selector = match &spec.pod_selector {
        Some(s) => convert_selector(s, "spec.podSelector", errs),
        None => Selector::everything(),
    };
    let ingress: Vec<Rule> = spec
        .ingress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| convert_rule(r.from.as_deref(), r.ports.as_deref(), Indexed(&"spec", "ingress", i), "from", errs))
        .collect();
    let egress: Vec<Rule> = spec
        .egress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| convert_rule(r.to.as_deref(), r.ports.as_deref(), Indexed(&"spec", "egress", i), "to", errs))
        .collect();
    let (mut affects_ingress, mut affects_egress) = (false, false);
    match spec.policy_types.as_deref() {
        // Upstream defaulting: Ingress always; Egress iff there is at least one egress rule
        // (`len(spec.Egress) != 0`: an empty `egress: []` does not count).
        None | Some([]) => {
            affects_ingress = true;
            affects_egress = !egress.is_empty();
        }
        Some(types) => {
            if types.len() > 2 {
                errs.add("spec.policyTypes", "may not have more than 2 entries");
            }
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => affects_ingress = true,
                    "Egress" => affects_egress = true,
                    other => errs.add(
                        format!("spec.policyTypes[{i}]"),
                        format!("unsupported value `{other}`: supported values: \"Ingress\", \"Egress\""),
                    ),
                }
            }
        }
    }
    let policy = Policy {
        host: Default::default(),
        position: 0,
        manifest: None,
        kind: PolicyKind::NetworkPolicy,
        tier: PolicyTier::NetworkPolicy,
        order: 1000.into(),
        calico_selector: None,
        scope: Scope::Namespace(NsId::new(0)),
        name: name?,
        pod_selector,
        ingress,
        egress,
        affects_ingress,
        affects_egress,
        origin: Origin::default(),
    };
    Some(Item::Policy { ns_name: ns_name?, policy })
}
