//! Plain string building of the manifests (block-style YAML as `kubectl get -o yaml` writes it).
//!
//! Writing to a `String` never fails, so the `fmt::Result`s here are always `Ok`; they are propagated only so
//! that `?` can be used instead of ignoring results.

use std::fmt::{self, Write};

/// A label selector.
pub(crate) enum Sel<'a> {
    /// `{}`: selects everything.
    All,
    Labels(&'a [(&'a str, &'a str)]),
    Exprs(&'a [Expr<'a>]),
    /// `matchLabels` and `matchExpressions` (both non-empty).
    Both(&'a [(&'a str, &'a str)], &'a [Expr<'a>]),
}

/// One `matchExpressions` entry.
pub(crate) struct Expr<'a> {
    pub key: &'a str,
    pub op: &'a str,
    pub values: &'a [&'a str],
}

/// A NetworkPolicy peer.
pub(crate) enum Peer<'a> {
    Pods(Sel<'a>),
    Ns(Sel<'a>),
    /// namespaceSelector AND podSelector in one peer.
    NsPods(Sel<'a>, Sel<'a>),
    Ip {
        cidr: &'a str,
        except: &'a [&'a str],
    },
}

pub(crate) enum PortV<'a> {
    Num(u16),
    Name(&'a str),
}

pub(crate) struct Port<'a> {
    /// `None`: field omitted (defaults to TCP).
    pub proto: Option<&'a str>,
    pub port: Option<PortV<'a>>,
    pub end: Option<u16>,
}

impl<'a> Port<'a> {
    pub(crate) const fn num(proto: &'a str, port: u16) -> Self {
        Port { proto: Some(proto), port: Some(PortV::Num(port)), end: None }
    }
    pub(crate) const fn named(proto: &'a str, name: &'a str) -> Self {
        Port { proto: Some(proto), port: Some(PortV::Name(name)), end: None }
    }
    pub(crate) const fn range(proto: &'a str, lo: u16, hi: u16) -> Self {
        Port { proto: Some(proto), port: Some(PortV::Num(lo)), end: Some(hi) }
    }
}

/// An ingress or egress rule; `None` omits the field (all peers / all ports).
pub(crate) struct Rule<'a> {
    pub peers: Option<&'a [Peer<'a>]>,
    pub ports: Option<&'a [Port<'a>]>,
}

pub(crate) struct Policy<'a> {
    pub ns: &'a str,
    pub name: &'a str,
    pub pod_sel: Sel<'a>,
    /// `None`: `policyTypes` omitted.
    pub types: Option<&'a [&'a str]>,
    /// `None`: field omitted; `Some(&[])`: `ingress: []`.
    pub ingress: Option<&'a [Rule<'a>]>,
    pub egress: Option<&'a [Rule<'a>]>,
}

pub(crate) fn spaces(o: &mut String, n: usize) {
    for _ in 0..n {
        o.push(' ');
    }
}

/// Writes `key: <selector>`. The first line starts with `lead` (already indented, possibly `- `); the
/// selector's own lines are indented relative to column `ind` (the column of `key`).
pub(crate) fn write_sel(o: &mut String, lead: &str, ind: usize, key: &str, s: &Sel<'_>) -> fmt::Result {
    o.push_str(lead);
    o.push_str(key);
    if let Sel::All = s {
        o.push_str(": {}\n");
        return Ok(());
    }
    o.push_str(":\n");
    write_sel_fields(o, None, ind + 2, s)
}

/// Writes a selector as a list item: `lead` ends in `- ` and the dash is at column `ind - 2`.
pub(crate) fn write_sel_item(o: &mut String, lead: &str, ind: usize, s: &Sel<'_>) -> fmt::Result {
    if let Sel::All = s {
        o.push_str(lead);
        o.push_str("{}\n");
        return Ok(());
    }
    write_sel_fields(o, Some(lead), ind, s)
}

/// The fields of a selector (`matchLabels`, `matchExpressions`) at column `ind`; the first starts with `lead`
/// instead of the indentation when given. `Sel::All` writes nothing.
fn write_sel_fields(o: &mut String, lead: Option<&str>, ind: usize, s: &Sel<'_>) -> fmt::Result {
    let (labels, exprs): (&[(&str, &str)], &[Expr<'_>]) = match s {
        Sel::All => (&[], &[]),
        Sel::Labels(ls) => (ls, &[]),
        Sel::Exprs(es) => (&[], es),
        Sel::Both(ls, es) => (ls, es),
    };
    let mut lead = lead;
    let mut field = |o: &mut String, name: &str| {
        match lead.take() {
            Some(l) => o.push_str(l),
            None => spaces(o, ind),
        }
        o.push_str(name);
    };
    if !labels.is_empty() {
        field(o, "matchLabels:\n");
        for (k, v) in labels {
            spaces(o, ind + 2);
            writeln!(o, "{k}: {v}")?;
        }
    }
    if !exprs.is_empty() {
        field(o, "matchExpressions:\n");
        for e in exprs {
            spaces(o, ind);
            writeln!(o, "- key: {}", e.key)?;
            spaces(o, ind + 2);
            writeln!(o, "operator: {}", e.op)?;
            if !e.values.is_empty() {
                spaces(o, ind + 2);
                o.push_str("values:\n");
                for v in e.values {
                    spaces(o, ind + 2);
                    writeln!(o, "- {v}")?;
                }
            }
        }
    }
    Ok(())
}

/// A peer as a list item whose dash is at column 4.
fn write_peer(o: &mut String, p: &Peer<'_>) -> fmt::Result {
    const LEAD: &str = "    - ";
    const IND: usize = 6;
    match p {
        Peer::Pods(s) => write_sel(o, LEAD, IND, "podSelector", s),
        Peer::Ns(s) => write_sel(o, LEAD, IND, "namespaceSelector", s),
        Peer::NsPods(n, s) => {
            write_sel(o, LEAD, IND, "namespaceSelector", n)?;
            write_sel(o, "      ", IND, "podSelector", s)
        }
        Peer::Ip { cidr, except } => {
            writeln!(o, "{LEAD}ipBlock:\n        cidr: \"{cidr}\"")?;
            if !except.is_empty() {
                o.push_str("        except:\n");
                for e in except.iter() {
                    writeln!(o, "        - \"{e}\"")?;
                }
            }
            Ok(())
        }
    }
}

fn write_rules(o: &mut String, key: &str, peer_key: &str, rules: Option<&[Rule<'_>]>) -> fmt::Result {
    let Some(rules) = rules else { return Ok(()) };
    if rules.is_empty() {
        return writeln!(o, "  {key}: []");
    }
    writeln!(o, "  {key}:")?;
    for r in rules {
        let mut lead = "  - ";
        if let Some(peers) = r.peers.filter(|p| !p.is_empty()) {
            writeln!(o, "{lead}{peer_key}:")?;
            lead = "    ";
            for p in peers {
                write_peer(o, p)?;
            }
        }
        if let Some(ports) = r.ports.filter(|p| !p.is_empty()) {
            writeln!(o, "{lead}ports:")?;
            lead = "    ";
            for p in ports {
                let mut plead = "    - ";
                if let Some(proto) = p.proto {
                    writeln!(o, "{plead}protocol: {proto}")?;
                    plead = "      ";
                }
                match &p.port {
                    Some(PortV::Num(n)) => writeln!(o, "{plead}port: {n}")?,
                    Some(PortV::Name(n)) => writeln!(o, "{plead}port: {n}")?,
                    None => {}
                }
                if p.port.is_some() {
                    plead = "      ";
                }
                if let Some(e) = p.end {
                    writeln!(o, "{plead}endPort: {e}")?;
                    plead = "      ";
                }
                if plead == "    - " {
                    o.push_str("    - {}\n");
                }
            }
        }
        if lead == "  - " {
            o.push_str("  - {}\n");
        }
    }
    Ok(())
}

pub(crate) fn write_policy(o: &mut String, p: &Policy<'_>) -> fmt::Result {
    writeln!(
        o,
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {}\n  namespace: {}\nspec:",
        p.name, p.ns
    )?;
    write_sel(o, "  ", 2, "podSelector", &p.pod_sel)?;
    if let Some(types) = p.types {
        o.push_str("  policyTypes:\n");
        for t in types {
            writeln!(o, "  - {t}")?;
        }
    }
    write_rules(o, "ingress", "from", p.ingress)?;
    write_rules(o, "egress", "to", p.egress)
}

/// A container port.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CPort {
    pub name: Option<&'static str>,
    pub port: u16,
    pub proto: &'static str,
}

pub(crate) struct Container<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub ports: &'a [CPort],
}

pub(crate) struct PodOut<'a> {
    pub ns: &'a str,
    pub name: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
    pub containers: &'a [Container<'a>],
    pub host_network: bool,
    /// Global pod index: determines the IPs.
    pub index: usize,
    /// Also give the pod an IPv6 address (dual-stack).
    pub dual_stack: bool,
    /// `spec.serviceAccountName`; `None`: omitted (the pod runs as `default`).
    pub service_account: Option<&'a str>,
    /// `spec.nodeName`; `None`: omitted.
    pub node: Option<&'a str>,
}

/// Writes the IPv4 address of pod `i`: 10.0.0.0/8 without .0 and .255 host octets, so pod 0 is 10.0.0.1 and
/// pod 254 is 10.0.1.1. Unique for the first [`crate::MAX_UNIQUE_IPS`] pods.
pub(crate) fn write_ipv4(o: &mut String, i: usize) -> fmt::Result {
    let j = (i / 254) * 256 + (i % 254) + 1;
    write!(o, "10.{}.{}.{}", (j >> 16) & 255, (j >> 8) & 255, j & 255)
}

/// Writes the IPv6 address of pod `i` in fd00::/64.
pub(crate) fn write_ipv6(o: &mut String, i: usize) -> fmt::Result {
    let v = i as u64 + 1;
    write!(o, "fd00::{:x}:{:x}:{:x}", (v >> 32) & 0xffff, (v >> 16) & 0xffff, v & 0xffff)
}

pub(crate) fn write_pod(o: &mut String, p: &PodOut<'_>) -> fmt::Result {
    writeln!(o, "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {}\n  namespace: {}\n  labels:", p.name, p.ns)?;
    for (k, v) in p.labels {
        writeln!(o, "    {k}: {v}")?;
    }
    o.push_str("spec:\n");
    if let Some(sa) = p.service_account {
        writeln!(o, "  serviceAccountName: {sa}")?;
    }
    if let Some(node) = p.node {
        writeln!(o, "  nodeName: {node}")?;
    }
    if p.host_network {
        o.push_str("  hostNetwork: true\n");
    }
    o.push_str("  containers:\n");
    for c in p.containers {
        writeln!(o, "  - name: {}\n    image: {}", c.name, c.image)?;
        if !c.ports.is_empty() {
            o.push_str("    ports:\n");
            for cp in c.ports {
                let lead = match cp.name {
                    Some(n) => {
                        writeln!(o, "    - name: {n}")?;
                        "      "
                    }
                    None => "    - ",
                };
                writeln!(o, "{lead}containerPort: {}\n      protocol: {}", cp.port, cp.proto)?;
            }
        }
    }
    o.push_str("status:\n  phase: Running\n  podIP: \"");
    write_ipv4(o, p.index)?;
    o.push_str("\"\n  podIPs:\n  - ip: \"");
    write_ipv4(o, p.index)?;
    o.push_str("\"\n");
    if p.dual_stack {
        o.push_str("  - ip: \"");
        write_ipv6(o, p.index)?;
        o.push_str("\"\n");
    }
    Ok(())
}
