//! nftables ruleset generation: the compiled [`Engine`] → one `table inet netpol`, rendered as nft syntax or as
//! libnftables JSON. Pure: no kernel access.
//!
//! Shape (scale by sets and maps, not by rule count):
//! - `forward` (hook forward): `ct state established,related accept`, `ct state invalid drop`, then
//!   `ip saddr vmap @egress_v4` / `ip6 saddr vmap @egress_v6` (isolated sources jump to their egress chain),
//!   then `ip daddr vmap @ingress_v4` / `ip6 daddr vmap @ingress_v6`, then the chain policy accepts.
//! - `input` and `output` (hooks input and output): the same checks for traffic between a pod and the node itself
//!   (the node's addresses, and so its host-network pods: a pod's egress to them, their connections to a pod's
//!   ingress), which never passes `forward`. With IPv6 they first accept neighbour discovery (router and
//!   neighbour solicitations and advertisements, which conntrack leaves untracked): it is the link's, not the
//!   pods' traffic, and an isolated pod's link to its gateway must keep working.
//! - one chain per egress profile (`eg_…`: the set of policies isolating a pod for egress) and per ingress
//!   profile (`in_…`: policies + the pod's container ports, which resolve named ports). Each chain holds one
//!   rule per (rule, peer, protocol) of those policies, ending in `return` (allowed: go on to the other side's
//!   check), and a final `counter drop`. A packet walks the rules of the policies selecting its own two pods,
//!   whatever the number of pods and policies in the cluster.
//! - named sets: `sel_…` (pod IPs selected by one distinct podSelector/namespaceSelector peer, hash sets),
//!   `blk_…` (one ipBlock minus its exceptions, interval sets), `np_…` (destination IP . protocol . port for
//!   named ports in egress rules, resolved per destination pod).
//! - every rule has a counter and a comment naming policy, direction, rule and peer, read back by `nft stats`.
//!
//! Names of sets and chains are derived from their content, so recompiling an unchanged policy gives the same
//! names (incremental updates touch only what changed).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use netpol_core::compile::Engine;
use netpol_core::dataplane::{AddressSet, ProfileId, SetId, StageEnd, Table, TableRule, TableStep};
use netpol_core::eval::Action;
use netpol_core::host::HostPath;
use netpol_core::model::{Direction, IpBlock};
use netpol_core::portset::{PortSet, Protocol};
use serde_json::{json, Value};

pub const TABLE: &str = "netpol";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
    fn proto(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
    fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
    fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }
}

/// A set element.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Elem {
    Addr(IpAddr),
    /// Inclusive address range (interval sets).
    Range(IpAddr, IpAddr),
    /// address . protocol . port
    AddrProtoPort(IpAddr, Protocol, u16),
    /// address . address (source . destination)
    AddrPair(IpAddr, IpAddr),
}

/// What a set's elements are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetKind {
    /// `ipv4_addr`
    Addr,
    /// `ipv4_addr . inet_proto . inet_service`
    AddrProtoPort,
    /// `ipv4_addr . ipv4_addr`
    AddrPair,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftSet {
    pub family: Family,
    pub kind: SetKind,
    pub interval: bool,
    pub elements: BTreeSet<Elem>,
}

impl NftSet {
    fn type_text(&self) -> String {
        let a = self.family.addr_type();
        match self.kind {
            SetKind::Addr => a.to_string(),
            SetKind::AddrProtoPort => format!("{a} . inet_proto . inet_service"),
            SetKind::AddrPair => format!("{a} . {a}"),
        }
    }

    fn type_json(&self) -> Value {
        let a = self.family.addr_type();
        match self.kind {
            SetKind::Addr => json!(a),
            SetKind::AddrProtoPort => json!([a, "inet_proto", "inet_service"]),
            SetKind::AddrPair => json!([a, a]),
        }
    }
}

/// A verdict map from pod address to `jump <chain>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftMap {
    pub family: Family,
    pub elements: BTreeMap<IpAddr, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Saddr,
    Daddr,
}

impl Side {
    fn text(self) -> &'static str {
        match self {
            Side::Saddr => "saddr",
            Side::Daddr => "daddr",
        }
    }
}

/// The expressions netpol uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `ip saddr @set`
    AddrInSet(Family, Side, String),
    /// `ip daddr . meta l4proto . th dport @set`
    AddrProtoPortInSet(Family, Side, String),
    /// `ip saddr . ip daddr @set`
    AddrPairInSet(Family, String),
    /// `ip saddr != @set`
    AddrNotInSet(Family, Side, String),
    /// `ip daddr . meta l4proto . th dport != @set`
    AddrProtoPortNotInSet(Family, Side, String),
    /// `meta l4proto tcp`
    L4Proto(Protocol),
    /// `th dport { 80, 8000-8080 }`
    Dport(Vec<(u16, u16)>),
    /// `meta l4proto . th dport { tcp . 80, udp . 53-60 }` (several protocols in one lookup)
    ProtoPorts(Vec<(Protocol, u16, u16)>),
    CtState(Vec<&'static str>),
    /// `icmpv6 type { nd-neighbor-solicit, ... }`
    Icmpv6Types(Vec<&'static str>),
    /// `icmp type . icmp code { 8 . 0, 3 . 0-255 }` (or `icmpv6`): ICMP messages, as (type, codes) pieces.
    IcmpMsgs(Protocol, Vec<(u8, u8, u8)>),
    /// `ip saddr vmap @map`
    Vmap(Family, Side, String),
    Counter,
    Accept,
    Drop,
    /// `reject with tcp reset` (only after a match on TCP)
    RejectTcpReset,
    /// `reject with icmpx admin-prohibited`
    RejectIcmpx,
    Return,
    /// `goto chain`
    Goto(String),
    /// `jump chain`
    Jump(String),
    /// `log prefix "..."` (audit mode: what would have been dropped)
    Log(String),
    /// `meta l4proto { 4, 41, 47 }` (IP protocol numbers)
    L4ProtoNums(Vec<u8>),
    /// `iifname "veth*"` (a trailing `*` is nft's wildcard)
    IifName(String),
    /// `oifname "veth*"`
    OifName(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NftRule {
    pub exprs: Vec<Expr>,
    pub comment: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftChain {
    /// `Some` for the base chain: (hook, priority, policy).
    pub hook: Option<(&'static str, &'static str, &'static str)>,
    pub rules: Vec<NftRule>,
}

/// A whole `table inet netpol`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: BTreeMap<String, NftSet>,
    pub maps: BTreeMap<String, NftMap>,
    pub chains: BTreeMap<String, NftChain>,
    /// Comments longer than nft allows (128 bytes) are shortened to `#hash`; this maps them back.
    pub long_comments: BTreeMap<String, String>,
}

/// The chain that answers what a `Reject` rule (Antrea) denies: see `Gen::reject_chain`.
pub const REJECT_CHAIN: &str = "np_reject";

/// nft's limit on rule comments.
pub const MAX_COMMENT: usize = 128;

/// Expands a shortened comment (see [`Ruleset::long_comments`]).
pub fn expand_comment<'a>(c: &'a str, long: &'a BTreeMap<String, String>) -> &'a str {
    long.get(c).map_or(c, String::as_str)
}

/// Where each counter comes from, to aggregate `nft stats` per policy rule.
pub fn parse_comment(comment: &str) -> Option<(&str, &str)> {
    comment.strip_prefix("np:").and_then(|c| c.split_once(' '))
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn short_hash(s: &str) -> String {
    format!("{:012x}", fnv(s) & 0xffff_ffff_ffff)
}

fn proto_text(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
        Protocol::Icmp => "icmp",
        Protocol::Icmpv6 => "ipv6-icmp",
    }
}

/// ICMP messages `lo..=hi` (`type << 8 | code`) as (type, first code, last code) pieces, one per type.
fn icmp_pieces(ranges: &[(u16, u16)]) -> Vec<(u8, u8, u8)> {
    let mut out = Vec::new();
    for &(lo, hi) in ranges {
        for t in (lo >> 8)..=(hi >> 8) {
            let first = if t == lo >> 8 { lo & 0xff } else { 0 };
            let last = if t == hi >> 8 { hi & 0xff } else { 255 };
            out.push((t as u8, first as u8, last as u8));
        }
    }
    out
}

/// `cidr` minus every `except`, as disjoint inclusive address ranges.
pub fn block_ranges(b: &IpBlock) -> Vec<(IpAddr, IpAddr)> {
    fn bounds(n: &IpNet) -> (u128, u128) {
        match n {
            IpNet::V4(n) => (u128::from(u32::from(n.network())), u128::from(u32::from(n.broadcast()))),
            IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
        }
    }
    let v4 = matches!(b.cidr, IpNet::V4(_));
    let to_ip = |x: u128| -> IpAddr {
        if v4 {
            IpAddr::from(std::net::Ipv4Addr::from(x as u32))
        } else {
            IpAddr::from(std::net::Ipv6Addr::from(x))
        }
    };
    let (lo, hi) = bounds(&b.cidr);
    let mut holes: Vec<(u128, u128)> = b.except.iter().map(bounds).collect();
    holes.sort_unstable();
    let mut out = Vec::new();
    let mut cur = lo;
    let mut done = false;
    for (hlo, hhi) in holes {
        if hhi < cur {
            continue;
        }
        if hlo > cur {
            out.push((to_ip(cur), to_ip(hlo - 1)));
        }
        if hhi >= hi {
            done = true;
            break;
        }
        cur = hhi + 1;
    }
    if !done {
        out.push((to_ip(cur), to_ip(hi)));
    }
    out
}

/// Port matchers of a rule's numeric ports: one per protocol present (ICMP messages on their own), or one empty
/// matcher for "every port" (`None`).
fn port_matchers(ports: &Option<PortSet>) -> Vec<Vec<Expr>> {
    let mut port_matchers: Vec<Vec<Expr>> = Vec::new();
    match ports {
        None => port_matchers.push(Vec::new()),
        Some(ports) => {
            // ICMP has no ports: its messages (type and code) are matched on their own.
            for icmp in [Protocol::Icmp, Protocol::Icmpv6] {
                let ranges: Vec<(u16, u16)> = ports.iter().filter(|r| r.0 == icmp).map(|(_, a, z)| (a, z)).collect();
                if ranges.is_empty() {
                    continue;
                }
                let mut m = vec![Expr::L4Proto(icmp)];
                if ranges != [(0, 65535)] {
                    m.push(Expr::IcmpMsgs(icmp, icmp_pieces(&ranges)));
                }
                port_matchers.push(m);
            }
            let ports: netpol_core::portset::PortSet = ports
                .difference(&netpol_core::portset::PortSet::protocol(Protocol::Icmp))
                .difference(&netpol_core::portset::PortSet::protocol(Protocol::Icmpv6));
            let ports = &ports;
            let protos: BTreeSet<Protocol> = ports.iter().map(|(p, _, _)| p).collect();
            if protos.len() == 1 {
                // One protocol: `meta l4proto tcp [th dport {...}]`.
                let proto = protos.iter().next().copied().unwrap_or(Protocol::Tcp);
                let ranges: Vec<(u16, u16)> = ports.iter().map(|(_, a, z)| (a, z)).collect();
                let mut m = vec![Expr::L4Proto(proto)];
                if ranges != [(1, 65535)] {
                    m.push(Expr::Dport(ranges));
                }
                port_matchers.push(m);
            } else if !protos.is_empty() {
                // Several protocols: one concatenated lookup.
                port_matchers.push(vec![Expr::ProtoPorts(ports.iter().collect())]);
            }
        }
    }
    port_matchers
}

/// How a chain of steps ends: what an Allow does, the last rule, and whether rules are host endpoint stage rules
/// (own side, named ports per destination).
struct StepEnds {
    allow: Vec<Expr>,
    end: NftRule,
    host: bool,
}

impl StepEnds {
    fn profile() -> Self {
        StepEnds { allow: vec![Expr::Return], end: NftRule { exprs: vec![Expr::Return], comment: None }, host: false }
    }
}

struct Gen<'t> {
    t: &'t Table,
    rs: Ruleset,
    has_v6: bool,
    /// Set names by table set and family (`None`: no element of that family).
    set_names: BTreeMap<(SetId, Family), Option<String>>,
    /// Chain names by profile.
    chains: BTreeMap<ProfileId, String>,
    /// Policy references that name more than one policy of the table ([`Table::shared_refs`]).
    shared_refs: BTreeSet<String>,
}

/// The policy references (`namespace/name`) that name more than one policy of the table's profiles: an Antrea
/// policy is lowered to a policy per rule (and per `appliedTo`, per namespace of a `namespaces` peer), all under
/// its name. Two profiles with the same references may then hold different rules, and a chain named after the
/// references alone would be shared by them.
impl<'t> Gen<'t> {
    /// A comment nft accepts: the text itself, or `#hash` remembered in `long_comments`.
    fn comment(&mut self, full: String) -> String {
        if full.len() <= MAX_COMMENT {
            return full;
        }
        let short = format!("np:#{}", short_hash(&full));
        self.rs.long_comments.insert(short.clone(), full);
        short
    }

    /// The nft set of a table set in one family: `sel_…` (pod addresses, hash set) or `blk_…` (an ipBlock's
    /// ranges, interval set, only in its own family). `None`: the set has no address of that family.
    fn set(&mut self, id: SetId, fam: Family) -> Option<String> {
        if let Some(n) = self.set_names.get(&(id, fam)) {
            return n.clone();
        }
        let name = match &self.t.sets[id.index()] {
            AddressSet::Pods { key, addresses } => {
                let name = format!("sel_{}_{}", short_hash(key), fam.suffix());
                let elements: BTreeSet<Elem> =
                    addresses.iter().filter(|ip| Family::of(ip) == fam).map(|ip| Elem::Addr(*ip)).collect();
                let empty = elements.is_empty();
                self.rs
                    .sets
                    .insert(name.clone(), NftSet { family: fam, kind: SetKind::Addr, interval: false, elements });
                (!empty).then_some(name)
            }
            AddressSet::Ranges { key, ranges } => {
                let name = format!("cal_{}_{}", short_hash(key), fam.suffix());
                let elements: BTreeSet<Elem> =
                    ranges.iter().filter(|(a, _)| Family::of(a) == fam).map(|&(a, z)| Elem::Range(a, z)).collect();
                let empty = elements.is_empty();
                self.rs
                    .sets
                    .insert(name.clone(), NftSet { family: fam, kind: SetKind::Addr, interval: true, elements });
                (!empty).then_some(name)
            }
            AddressSet::Block { key, v6, ranges } => {
                if (fam == Family::V6) != *v6 {
                    None
                } else {
                    let name = format!("blk_{}_{}", short_hash(key), fam.suffix());
                    let elements = ranges.iter().map(|&(a, z)| Elem::Range(a, z)).collect();
                    self.rs
                        .sets
                        .insert(name.clone(), NftSet { family: fam, kind: SetKind::Addr, interval: true, elements });
                    Some(name)
                }
            }
        };
        self.set_names.insert((id, fam), name.clone());
        name
    }

    /// The `np_…` set of an egress rule's named ports in one family: destination . protocol . port.
    fn named_port_set(&mut self, rule: &TableRule, fam: Family) -> String {
        let elements: BTreeSet<Elem> = rule
            .named
            .iter()
            .flatten()
            .filter(|(ip, _, _)| Family::of(ip) == fam)
            .map(|&(ip, proto, port)| Elem::AddrProtoPort(ip, proto, port))
            .collect();
        let name =
            format!("np_{}_{}", short_hash(&format!("{}#{}#{elements:?}", rule.policy_ref, rule.rule)), fam.suffix());
        self.rs
            .sets
            .insert(name.clone(), NftSet { family: fam, kind: SetKind::AddrProtoPort, interval: false, elements });
        name
    }

    /// The nft rules of one table rule. `verdict` ends each of them.
    fn emit_rule(&mut self, out: &mut Vec<NftRule>, rule: &TableRule, verdict: &[Expr]) {
        let dir = rule.dir;
        let side = if dir == Direction::Ingress { Side::Saddr } else { Side::Daddr };
        let base_comment = format!("np:{}/{}/{} ", rule.policy_ref, dir.as_str(), rule.index);
        let port_matchers = port_matchers(&rule.ports);
        let tail = |comment: String| -> (Vec<Expr>, Option<String>) {
            (std::iter::once(Expr::Counter).chain(verdict.iter().cloned()).collect(), Some(comment))
        };
        // Peer matchers, in the order of the manifest's peers, numbered as there (`from[N]`/`to[N]`, like
        // explanations do). An address family with no selected pod needs no rule (a later update that adds one
        // refills the chain).
        let mut peer_matchers: Vec<(Vec<Expr>, String)> = Vec::new();
        if rule.peers.is_empty() {
            peer_matchers.push((Vec::new(), "any-peer".to_string()));
        }
        for &(pi, set) in &rule.peers {
            for fam in self.families() {
                if let Some(name) = self.set(set, fam) {
                    peer_matchers.push((vec![Expr::AddrInSet(fam, side, name)], format!("peer-{pi}")));
                }
            }
        }
        for (pm, ptag) in &peer_matchers {
            for m in &port_matchers {
                let mut exprs = pm.clone();
                exprs.extend(m.iter().cloned());
                let (t, comment) = tail(format!("{base_comment}{ptag}"));
                exprs.extend(t);
                let comment = comment.map(|c| self.comment(c));
                out.push(NftRule { exprs, comment });
            }
        }
        // Named ports in egress rules: destination . protocol . port, resolved per destination pod.
        if rule.named.is_some() {
            for fam in self.families() {
                let set = self.named_port_set(rule, fam);
                let (t, comment) = tail(format!("{base_comment}named-ports"));
                let mut exprs = vec![Expr::AddrProtoPortInSet(fam, Side::Daddr, set)];
                exprs.extend(t);
                let comment = comment.map(|c| self.comment(c));
                out.push(NftRule { exprs, comment });
            }
        }
    }

    /// A host stage rule's `(destination . protocol . port)` set in one family (`kind`: `hn` named ports, `hx`
    /// excepted); `None` when it has no element of that family.
    fn host_port_set(
        &mut self,
        kind: &str,
        rule: &TableRule,
        els: &[(IpAddr, Protocol, u16)],
        fam: Family,
    ) -> Option<String> {
        let elements: BTreeSet<Elem> = els
            .iter()
            .filter(|(ip, _, _)| Family::of(ip) == fam)
            .map(|&(ip, proto, port)| Elem::AddrProtoPort(ip, proto, port))
            .collect();
        if elements.is_empty() {
            return None;
        }
        let name = format!(
            "{kind}_{}_{}",
            short_hash(&format!("{}#{}#{elements:?}", rule.policy_ref, rule.rule)),
            fam.suffix()
        );
        self.rs
            .sets
            .insert(name.clone(), NftSet { family: fam, kind: SetKind::AddrProtoPort, interval: false, elements });
        Some(name)
    }

    /// The nft rules of a host endpoint stage's rule: per family, its own side (the destination of an ingress
    /// rule, the source of an egress rule) in its set, the destination not among its excepted named `notPorts`,
    /// then per peer its numeric ports, and its named ports as resolved at each destination.
    fn emit_host_rule(&mut self, out: &mut Vec<NftRule>, rule: &TableRule, verdict: &[Expr]) {
        let dir = rule.dir;
        let (peer_side, own_side) =
            if dir == Direction::Ingress { (Side::Saddr, Side::Daddr) } else { (Side::Daddr, Side::Saddr) };
        let base_comment = format!("np:{}/{}/{} ", rule.policy_ref, dir.as_str(), rule.index);
        let port_matchers = port_matchers(&rule.ports);
        let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
        for fam in self.families() {
            let mut pre = Vec::new();
            if let Some(own) = rule.own {
                match self.set(own, fam) {
                    Some(n) => pre.push(Expr::AddrInSet(fam, own_side, n)),
                    None => continue,
                }
            }
            if let Some(n) = self.host_port_set("hx", rule, &rule.except, fam) {
                pre.push(Expr::AddrProtoPortNotInSet(fam, Side::Daddr, n));
            }
            let mut peers: Vec<(Vec<Expr>, String)> = Vec::new();
            if rule.peers.is_empty() {
                peers.push((Vec::new(), "any-peer".to_string()));
            }
            for &(pi, set) in &rule.peers {
                if let Some(name) = self.set(set, fam) {
                    peers.push((vec![Expr::AddrInSet(fam, peer_side, name)], format!("peer-{pi}")));
                }
            }
            let named = match &rule.named {
                Some(n) => self.host_port_set("hn", rule, n, fam),
                None => None,
            };
            for (pm, tag) in &peers {
                let mut matchers: Vec<(Vec<Expr>, String)> =
                    port_matchers.iter().map(|m| (m.clone(), tag.clone())).collect();
                if let Some(n) = &named {
                    matchers.push((
                        vec![Expr::AddrProtoPortInSet(fam, Side::Daddr, n.clone())],
                        format!("{tag} named-ports"),
                    ));
                }
                for (m, tag) in matchers {
                    let mut exprs = pre.clone();
                    exprs.extend(pm.iter().cloned());
                    exprs.extend(m);
                    exprs.push(Expr::Counter);
                    exprs.extend(verdict.iter().cloned());
                    // A rule matching no address of its own (every peer, every port) is the same in each family.
                    if !seen.insert(exprs.iter().map(expr_text).collect()) {
                        continue;
                    }
                    let comment = Some(self.comment(format!("{base_comment}{tag}")));
                    out.push(NftRule { exprs, comment });
                }
            }
        }
    }

    fn families(&self) -> Vec<Family> {
        if self.has_v6 {
            vec![Family::V4, Family::V6]
        } else {
            vec![Family::V4]
        }
    }

    /// The rules of a profile chain (or a host endpoint stage's) from `steps`: each rule's verdict is its action
    /// (allow: `ends.allow`, for a profile `return`, on to the other side's check; deny: `drop`; log: count and go
    /// on; pass: `goto` a chain of the later tiers), a tier that ends in "deny" drops what is left, and what no
    /// tier decided meets `ends.end` (a profile's: `return`, allowed).
    fn emit_steps(&mut self, name: &str, steps: &[TableStep], drop_comment: &str, ends: &StepEnds) -> Vec<NftRule> {
        let mut rules = Vec::new();
        for (k, step) in steps.iter().enumerate() {
            let rule = match step {
                TableStep::TierEnd { deny, .. } => {
                    if *deny {
                        let comment = Some(drop_comment.to_string());
                        rules.push(NftRule { exprs: vec![Expr::Counter, Expr::Drop], comment });
                        return rules;
                    }
                    continue;
                }
                TableStep::Rule(r) => r,
            };
            let verdict = match rule.action {
                Action::Allow => ends.allow.clone(),
                Action::Deny => vec![Expr::Drop],
                Action::Reject => vec![Expr::Goto(self.reject_chain())],
                Action::Log => Vec::new(),
                Action::Pass => {
                    // The rest of this tier is skipped: on to the steps after its end (Antrea: after the end of
                    // the last tier that holds passed traffic, the NetworkPolicy tier's), in a chain of their own.
                    let end = netpol_core::dataplane::pass_target(steps, k);
                    let rest = format!("{name}_t{end}");
                    if !self.rs.chains.contains_key(&rest) {
                        self.rs.chains.insert(rest.clone(), NftChain { hook: None, rules: Vec::new() });
                        let rules = self.emit_steps(&rest, &steps[end..], drop_comment, ends);
                        self.rs.chains.insert(rest.clone(), NftChain { hook: None, rules });
                    }
                    vec![Expr::Goto(rest)]
                }
            };
            if rule.ports.as_ref().is_some_and(PortSet::is_empty) && rule.named.is_none() {
                // Only named ports the subject (or no destination) defines: this rule can never match here.
                continue;
            }
            if ends.host {
                self.emit_host_rule(&mut rules, rule, &verdict);
            } else {
                self.emit_rule(&mut rules, rule, &verdict);
            }
        }
        rules.push(ends.end.clone());
        rules
    }

    /// The chain a `Reject` rule goes to (made on first use): TCP is answered with a reset, anything else with
    /// ICMP "administratively prohibited" (`icmpx`: ICMP or ICMPv6, as the packet's family is).
    fn reject_chain(&mut self) -> String {
        if !self.rs.chains.contains_key(REJECT_CHAIN) {
            let rules = vec![
                NftRule { exprs: vec![Expr::L4Proto(Protocol::Tcp), Expr::RejectTcpReset], comment: None },
                NftRule { exprs: vec![Expr::RejectIcmpx], comment: None },
            ];
            self.rs.chains.insert(REJECT_CHAIN.to_string(), NftChain { hook: None, rules });
        }
        REJECT_CHAIN.to_string()
    }

    /// What tells a profile's steps apart in any engine: each rule's origin, action, peers (their sets' keys) and
    /// ports, each tier end.
    fn steps_key(&self, steps: &[TableStep]) -> String {
        let mut key = String::new();
        for step in steps {
            match step {
                TableStep::TierEnd { deny, hold } => key.push_str(&format!("|end {deny} {hold}")),
                TableStep::Rule(r) => {
                    let peers: Vec<(usize, &str)> = r
                        .peers
                        .iter()
                        .map(|&(i, s)| {
                            let k = match &self.t.sets[s.index()] {
                                AddressSet::Pods { key, .. }
                                | AddressSet::Ranges { key, .. }
                                | AddressSet::Block { key, .. } => key.as_str(),
                            };
                            (i, k)
                        })
                        .collect();
                    key.push_str(&format!(
                        "|{}/{}/{} {:?} {peers:?} {:?} {}",
                        r.policy_ref,
                        r.dir.as_str(),
                        r.index,
                        r.action,
                        r.ports,
                        r.named.is_some()
                    ));
                }
            }
        }
        key
    }

    fn chain(&mut self, p: ProfileId) -> String {
        if let Some(n) = self.chains.get(&p) {
            return n.clone();
        }
        let profile = &self.t.profiles[p.index()];
        let refs = &profile.policy_refs;
        let mut key = match profile.dir {
            Direction::Egress => format!("eg {refs:?}"),
            Direction::Ingress => format!("in {refs:?} {:?}", profile.ports),
        };
        if !profile.masked.is_empty() {
            key.push_str(&format!(" without {:?}", profile.masked));
        }
        if let Some(node) = &profile.node {
            key.push_str(&format!(" on {node}"));
        }
        if refs.iter().any(|r| self.shared_refs.contains(r)) {
            // Policies under one name: the chain is named after the rules it holds too.
            key.push_str(&format!(" rules {}", self.steps_key(&profile.steps)));
        }
        let dir = profile.dir;
        let name = format!("{}_{}", if dir == Direction::Egress { "eg" } else { "in" }, short_hash(&key));
        self.chains.insert(p, name.clone());
        if !self.rs.chains.contains_key(&name) {
            let drop_comment = self.comment(format!("np-drop:{} {}", dir.as_str(), refs.join(",")));
            let mut rules = Vec::new();
            if dir == Direction::Ingress && self.t.own_node_check {
                // Cilium's allow-localhost: the pod's own node passes its ingress check, whatever the policies.
                for fam in self.families() {
                    rules.push(NftRule {
                        exprs: vec![Expr::AddrPairInSet(fam, own_node_set(fam)), Expr::Counter, Expr::Return],
                        comment: Some(OWN_NODE_COMMENT.to_string()),
                    });
                }
            }
            rules.extend(self.emit_steps(&name, &profile.steps, &drop_comment, &StepEnds::profile()));
            self.rs.chains.insert(name.clone(), NftChain { hook: None, rules });
        }
        name
    }
}

impl Gen<'_> {
    /// Calico host endpoint checks ([`netpol_core::dataplane::HostTable`]): a set per address class (`hc_…`, and
    /// `hc_all_…` for every address in the cluster: outside it is not in it), a chain per check (`hk_…`, its
    /// failsafe ports, then a chain per stage `hk_…_s<i>`: the stage's tiers as ordered rules, each Allow passing
    /// the check or going on to the next stage, what is left going on, passing or dropped as the stage ends), a
    /// chain per pair of places jumping to its checks in packet order (`hp_…`). Returns the dispatch rules of the
    /// base chains: source and destination class → the pair's chain.
    fn hosts(&mut self) -> Vec<NftRule> {
        let h = &self.t.hosts;
        if h.pairs.is_empty() {
            return Vec::new();
        }
        let fams = self.families();
        // Class sets, per family (`None`: no address of that family).
        let mut class_sets: Vec<BTreeMap<Family, String>> = Vec::new();
        let mut all: BTreeMap<Family, BTreeSet<Elem>> = BTreeMap::new();
        for c in &h.classes {
            let mut names = BTreeMap::new();
            for &fam in &fams {
                let elements: BTreeSet<Elem> =
                    c.addresses.iter().filter(|ip| Family::of(ip) == fam).map(|ip| Elem::Addr(*ip)).collect();
                if elements.is_empty() {
                    continue;
                }
                all.entry(fam).or_default().extend(elements.iter().cloned());
                let name = format!("hc_{}_{}", short_hash(&c.name), fam.suffix());
                self.rs
                    .sets
                    .insert(name.clone(), NftSet { family: fam, kind: SetKind::Addr, interval: false, elements });
                names.insert(fam, name);
            }
            class_sets.push(names);
        }
        for (fam, elements) in all {
            let name = format!("hc_all_{}", fam.suffix());
            self.rs.sets.insert(name, NftSet { family: fam, kind: SetKind::Addr, interval: false, elements });
        }
        let check_chains: Vec<String> = (0..h.checks.len()).map(|c| self.host_check_chain(c)).collect();
        let mut dispatch = Vec::new();
        for (a, b, checks) in &h.pairs {
            let class_name = |k: &Option<usize>| k.map_or("outside".to_string(), |k| h.classes[k].name.clone());
            let (an, bn) = (class_name(a), class_name(b));
            let chain = format!("hp_{}", short_hash(&format!("{an} -> {bn}")));
            let rules = checks
                .iter()
                .map(|&c| NftRule { exprs: vec![Expr::Jump(check_chains[c].clone())], comment: None })
                .collect();
            self.rs.chains.insert(chain.clone(), NftChain { hook: None, rules });
            for &fam in &fams {
                let m = |k: &Option<usize>, side: Side| -> Option<Option<Expr>> {
                    match k {
                        Some(k) => class_sets[*k].get(&fam).map(|n| Some(Expr::AddrInSet(fam, side, n.clone()))),
                        None => Some(
                            class_sets
                                .iter()
                                .any(|c| c.contains_key(&fam))
                                .then(|| Expr::AddrNotInSet(fam, side, format!("hc_all_{}", fam.suffix()))),
                        ),
                    }
                };
                let (Some(sm), Some(dm)) = (m(a, Side::Saddr), m(b, Side::Daddr)) else { continue };
                let mut exprs: Vec<Expr> = sm.into_iter().chain(dm).collect();
                if exprs.is_empty() {
                    continue;
                }
                exprs.push(Expr::Jump(chain.clone()));
                let comment = Some(self.comment(format!("np-host:{an} -> {bn}")));
                dispatch.push(NftRule { exprs, comment });
            }
        }
        dispatch
    }

    /// The chains of one host endpoint check; returns the name of its first.
    fn host_check_chain(&mut self, c: usize) -> String {
        let t = self.t;
        let check = &t.hosts.checks[c];
        let path = match check.path {
            HostPath::ToHost => "to-host",
            HostPath::FromHost => "from-host",
            HostPath::ForwardedIn => "forwarded-in",
            HostPath::ForwardedOut => "forwarded-out",
        };
        let what = format!("{} {path}", check.host_endpoint);
        let name = format!("hk_{}", short_hash(&what));
        let stage_chain = |i: usize| format!("{name}_s{i}");
        let mut rules = Vec::new();
        let failsafe = Expr::ProtoPorts(check.failsafe.iter().map(|&(p, port)| (p, port, port)).collect());
        let first = check.stages.iter().position(|s| !s.skipped_by_failsafe).unwrap_or(check.stages.len());
        if check.failsafe.is_empty() {
            // No failsafe ports (Cilium's host endpoints): nothing to accept ahead of the stages.
        } else if check.failsafe_passes {
            let comment = Some(self.comment(format!("np-host:{what} failsafe")));
            rules.push(NftRule { exprs: vec![failsafe, Expr::Counter, Expr::Return], comment });
        } else if first > 0 {
            let to = if first < check.stages.len() { Expr::Goto(stage_chain(first)) } else { Expr::Return };
            let comment = Some(self.comment(format!("np-host:{what} failsafe")));
            rules.push(NftRule { exprs: vec![failsafe, Expr::Counter, to], comment });
        }
        rules.push(NftRule {
            exprs: vec![if check.stages.is_empty() { Expr::Return } else { Expr::Goto(stage_chain(0)) }],
            comment: None,
        });
        self.rs.chains.insert(name.clone(), NftChain { hook: None, rules });
        for (i, st) in check.stages.iter().enumerate() {
            let next = if i + 1 < check.stages.len() { Expr::Goto(stage_chain(i + 1)) } else { Expr::Return };
            let drop_comment = self.comment(format!("np-drop:host {what} {}", st.stage.as_str()));
            let end = match st.end {
                StageEnd::Next => NftRule { exprs: vec![next.clone()], comment: None },
                StageEnd::Allow => NftRule { exprs: vec![Expr::Return], comment: None },
                StageEnd::Deny => {
                    let comment =
                        Some(self.comment(format!("np-drop:host {what} {} no profile allows", st.stage.as_str())));
                    NftRule { exprs: vec![Expr::Counter, Expr::Drop], comment }
                }
            };
            let ends = StepEnds { allow: vec![if st.allow_passes { Expr::Return } else { next }], end, host: true };
            let chain = stage_chain(i);
            let rules = self.emit_steps(&chain, &st.steps, &drop_comment, &ends);
            self.rs.chains.insert(chain, NftChain { hook: None, rules });
        }
        name
    }
}

/// The comment of the rules letting a pod's own node through its ingress check (Cilium's allow-localhost).
pub const OWN_NODE_COMMENT: &str = "np-own-node:ingress";

/// The set of (node address . pod address) pairs of Cilium's allow-localhost, per family.
fn own_node_set(fam: Family) -> String {
    format!("own_node_{}", fam.suffix())
}

/// The base chains, each named after its hook: traffic forwarded by the node, delivered to it, sent by it.
pub const BASE_HOOKS: [&str; 3] = ["forward", "input", "output"];

/// The priority of each base chain. `input` runs after IPVS (kube-proxy's IPVS mode), which takes a pod's packet to
/// a Service address at the input hook (its LOCAL_IN hooks sit at priorities 98 and 99, `NF_IP_PRI_NAT_SRC - 2`
/// and `- 1`), translates it and sends it on through the output hook, where `output` judges it on the backend
/// (the packet keeps the pod's source address). Before IPVS, `input` would judge the pod's egress against the
/// Service address itself. `forward` and `output` run at the filter priority, after the DNAT of kube-proxy's
/// iptables and nftables modes (prerouting and output at -100).
pub fn base_priority(hook: &str) -> &'static str {
    match hook {
        "input" => "filter + 101",
        _ => "filter",
    }
}

/// [`base_priority`] as the number the JSON form takes.
fn priority_number(p: &str) -> i64 {
    p.strip_prefix("filter").map(|rest| rest.replace(['+', ' '], "").parse().unwrap_or(0)).unwrap_or(0)
}

/// ICMPv6 neighbour discovery, accepted on the node's own paths (`input`, `output`).
const ND_TYPES: [&str; 4] = ["nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert"];

/// Generates the ruleset enforcing the engine's policies: the engine's data-plane table, rendered.
pub fn generate(e: &Engine) -> Ruleset {
    generate_scoped(e, None)
}

/// The addresses of the pods whose `spec.nodeName` is `node` (hostNetwork pods left out: the node's own addresses
/// are not a pod's to check): what [`generate_for_node`] checks.
pub fn node_pod_addresses(e: &Engine, node: &str) -> BTreeSet<IpAddr> {
    e.cluster()
        .pods
        .iter()
        .filter(|p| !p.host_network && p.node.as_deref() == Some(node))
        .flat_map(|p| p.ips.iter().copied())
        .collect()
}

/// What a node's ruleset knows of the node beyond the model.
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    /// Interface name patterns of the node's pods (`veth*`, `cali*`, `lxc*`; nft's `*` wildcard at the end): with
    /// any, the node fails closed for pods it does not know yet. A packet forwarded from such an interface whose
    /// source is no address of the node's pods in the model, or forwarded to one whose destination is none, is
    /// dropped (`np-drop:unknown-local-pod`) until a program includes the pod.
    pub pod_interfaces: Vec<String>,
    /// Drop encapsulated traffic a pod isolated for egress sends itself (IP-in-IP, IPv6-in-IP, GRE, VXLAN's UDP
    /// 4789 and 8472), which would otherwise carry packets past the checks of the node that decapsulates them
    /// (`np-drop:encapsulation`). A node's protection, outside the policies: the engine does not model it.
    pub block_pod_encapsulation: bool,
}

/// The set of the node's pod addresses, per family (what fail-closed checks against).
fn local_pods_set(fam: Family) -> String {
    format!("local_pods_{}", fam.suffix())
}

/// [`generate_for_node`], failing closed for unknown local pods when `opts` names the pods' interfaces.
pub fn generate_for_node_with(e: &Engine, node: &str, opts: &NodeOptions) -> Ruleset {
    let local = node_pod_addresses(e, node);
    let mut rs = generate_scoped(e, Some(&local));
    let mut guard = Vec::new();
    if opts.block_pod_encapsulation {
        for fam in [Family::V4, Family::V6] {
            let isolated: BTreeSet<Elem> = rs
                .maps
                .get(&format!("egress_{}", fam.suffix()))
                .map(|m| m.elements.keys().map(|&ip| Elem::Addr(ip)).collect())
                .unwrap_or_default();
            let set = format!("isolated_egress_{}", fam.suffix());
            rs.sets
                .insert(set.clone(), NftSet { family: fam, kind: SetKind::Addr, interval: false, elements: isolated });
            for m in [
                vec![Expr::L4ProtoNums(vec![4, 41, 47])],
                vec![Expr::L4Proto(Protocol::Udp), Expr::Dport(vec![(4789, 4789), (8472, 8472)])],
            ] {
                let mut exprs = vec![Expr::AddrInSet(fam, Side::Saddr, set.clone())];
                exprs.extend(m);
                exprs.extend([Expr::Counter, Expr::Drop]);
                guard.push(NftRule { exprs, comment: Some("np-drop:encapsulation".into()) });
            }
        }
        // Sent to another node (forward) or to this one (input).
        if let Some(input) = rs.chains.get_mut("input") {
            let at = input.rules.len().min(2);
            for (k, r) in guard.iter().cloned().enumerate() {
                input.rules.insert(at + k, r);
            }
        }
    }
    if opts.pod_interfaces.is_empty() && guard.is_empty() {
        return rs;
    }
    for fam in [Family::V4, Family::V6].into_iter().filter(|_| !opts.pod_interfaces.is_empty()) {
        let elements: BTreeSet<Elem> =
            local.iter().filter(|ip| Family::of(ip) == fam).map(|&ip| Elem::Addr(ip)).collect();
        rs.sets.insert(local_pods_set(fam), NftSet { family: fam, kind: SetKind::Addr, interval: false, elements });
        for pattern in &opts.pod_interfaces {
            for (iface, side) in
                [(Expr::IifName(pattern.clone()), Side::Saddr), (Expr::OifName(pattern.clone()), Side::Daddr)]
            {
                guard.push(NftRule {
                    exprs: vec![iface, Expr::AddrNotInSet(fam, side, local_pods_set(fam)), Expr::Counter, Expr::Drop],
                    comment: Some("np-drop:unknown-local-pod".into()),
                });
            }
        }
    }
    if let Some(fwd) = rs.chains.get_mut("forward") {
        // After the established/related accept and the invalid drop, before any policy check.
        let at = fwd.rules.len().min(2);
        for (k, r) in guard.into_iter().enumerate() {
            fwd.rules.insert(at + k, r);
        }
    }
    rs
}

/// The ruleset one node enforces, as a node agent programs it: the egress checks of the pods on `node` (as
/// sources) and the ingress checks of the pods on `node` (as destinations), each with its peers' address sets from
/// the whole cluster. A flow between two nodes is checked for egress on the source's node and for ingress on the
/// destination's; together the two answer as [`generate`] does on one node. Only the profiles of local pods get a
/// chain.
pub fn generate_for_node(e: &Engine, node: &str) -> Ruleset {
    generate_scoped(e, Some(&node_pod_addresses(e, node)))
}

/// The ruleset of a node holding the pods with the `local` addresses (what [`generate_for_node`] computes from
/// `spec.nodeName`, for a placement known otherwise, such as a lab's).
pub fn generate_for_addresses(e: &Engine, local: &BTreeSet<IpAddr>) -> Ruleset {
    generate_scoped(e, Some(local))
}

/// [`generate`], with the address maps (and so the profile chains) limited to `local` addresses when given.
fn generate_scoped(e: &Engine, local: Option<&BTreeSet<IpAddr>>) -> Ruleset {
    // For one node, only its pods' checks are computed (the table of the whole cluster costs 50 times more at 50
    // nodes, for the same ruleset: tested).
    let t = match local {
        Some(l) => e.dataplane_for(l),
        None => e.dataplane(),
    };
    generate_from(&t, local)
}

/// The ruleset of data-plane table `t`, its address maps limited to `local` when given.
fn generate_from(t: &Table, local: Option<&BTreeSet<IpAddr>>) -> Ruleset {
    let mut g = Gen {
        t,
        rs: Ruleset::default(),
        has_v6: t.has_ipv6,
        set_names: BTreeMap::new(),
        chains: BTreeMap::new(),
        shared_refs: t.shared_refs.clone(),
    };
    let mut maps: BTreeMap<String, NftMap> = BTreeMap::new();
    for fam in g.families() {
        for dir in ["ingress", "egress"] {
            maps.insert(format!("{dir}_{}", fam.suffix()), NftMap { family: fam, elements: BTreeMap::new() });
        }
    }
    // A chain per profile, even one whose pods have no address yet (an update that adds one only fills the map);
    // for one node, only its pods' profiles.
    if local.is_none() {
        for p in 0..t.profiles.len() {
            g.chain(ProfileId::new(p));
        }
    }
    for &(ip, dir, profile) in &t.addresses {
        if local.is_some_and(|l| !l.contains(&ip)) {
            continue;
        }
        let chain = g.chain(profile);
        if let Some(m) = maps.get_mut(&format!("{}_{}", dir.as_str(), Family::of(&ip).suffix())) {
            m.elements.insert(ip, chain);
        }
    }
    g.rs.maps = maps;
    if t.own_node_check {
        for fam in g.families() {
            let elements = t
                .own_node
                .iter()
                .filter(|(n, p)| Family::of(n) == fam && local.is_none_or(|l| l.contains(p)))
                .map(|&(n, p)| Elem::AddrPair(n, p))
                .collect();
            g.rs.sets
                .insert(own_node_set(fam), NftSet { family: fam, kind: SetKind::AddrPair, interval: false, elements });
        }
    }
    let host_dispatch = g.hosts();
    // The same checks on every path between pods and the node: forwarded (pod to pod, or to an address outside),
    // delivered to the node (a pod to the node's addresses), sent by the node (from its addresses to a pod).
    for hook in BASE_HOOKS {
        let mut rules = vec![
            NftRule { exprs: vec![Expr::CtState(vec!["established", "related"]), Expr::Accept], comment: None },
            NftRule {
                exprs: vec![Expr::CtState(vec!["invalid"]), Expr::Counter, Expr::Drop],
                comment: Some("np-drop:invalid".into()),
            },
        ];
        if hook != "forward" && g.has_v6 {
            rules.push(NftRule { exprs: vec![Expr::Icmpv6Types(ND_TYPES.to_vec()), Expr::Accept], comment: None });
        }
        for fam in g.families() {
            rules.push(NftRule {
                exprs: vec![Expr::Vmap(fam, Side::Saddr, format!("egress_{}", fam.suffix()))],
                comment: None,
            });
        }
        for fam in g.families() {
            rules.push(NftRule {
                exprs: vec![Expr::Vmap(fam, Side::Daddr, format!("ingress_{}", fam.suffix()))],
                comment: None,
            });
        }
        rules.extend(host_dispatch.iter().cloned());
        g.rs.chains.insert(hook.into(), NftChain { hook: Some((hook, base_priority(hook), "accept")), rules });
    }
    g.rs
}

// ---- rendering: nft syntax ----

fn elem_text(e: &Elem) -> String {
    match e {
        Elem::Addr(a) => a.to_string(),
        Elem::Range(a, z) if a == z => a.to_string(),
        Elem::Range(a, z) => format!("{a}-{z}"),
        Elem::AddrProtoPort(a, p, port) => format!("{a} . {} . {port}", proto_text(*p)),
        Elem::AddrPair(a, b) => format!("{a} . {b}"),
    }
}

fn ranges_text(r: &[(u16, u16)]) -> String {
    let parts: Vec<String> = r.iter().map(|&(a, z)| if a == z { a.to_string() } else { format!("{a}-{z}") }).collect();
    if parts.len() == 1 {
        parts.join("")
    } else {
        format!("{{ {} }}", parts.join(", "))
    }
}

fn expr_text(x: &Expr) -> String {
    match x {
        Expr::AddrInSet(f, s, set) => format!("{} {} @{set}", f.proto(), s.text()),
        Expr::AddrProtoPortInSet(f, s, set) => format!("{} {} . meta l4proto . th dport @{set}", f.proto(), s.text()),
        Expr::AddrNotInSet(f, s, set) => format!("{} {} != @{set}", f.proto(), s.text()),
        Expr::AddrPairInSet(f, set) => format!("{p} saddr . {p} daddr @{set}", p = f.proto()),
        Expr::AddrProtoPortNotInSet(f, s, set) => {
            format!("{} {} . meta l4proto . th dport != @{set}", f.proto(), s.text())
        }
        Expr::L4Proto(p) => format!("meta l4proto {}", proto_text(*p)),
        Expr::Dport(r) => format!("th dport {}", ranges_text(r)),
        Expr::ProtoPorts(v) => {
            let items: Vec<String> =
                v.iter()
                    .map(|&(p, a, z)| {
                        if a == z {
                            format!("{} . {a}", proto_text(p))
                        } else {
                            format!("{} . {a}-{z}", proto_text(p))
                        }
                    })
                    .collect();
            format!("meta l4proto . th dport {{ {} }}", items.join(", "))
        }
        Expr::CtState(s) => format!("ct state {}", s.join(",")),
        Expr::Icmpv6Types(t) => format!("icmpv6 type {{ {} }}", t.join(", ")),
        Expr::IcmpMsgs(p, pieces) => {
            let h = if *p == Protocol::Icmp { "icmp" } else { "icmpv6" };
            let items: Vec<String> = pieces
                .iter()
                .map(|&(t, a, z)| if a == z { format!("{t} . {a}") } else { format!("{t} . {a}-{z}") })
                .collect();
            format!("{h} type . {h} code {{ {} }}", items.join(", "))
        }
        Expr::Vmap(f, s, m) => format!("{} {} vmap @{m}", f.proto(), s.text()),
        Expr::Counter => "counter".into(),
        Expr::Accept => "accept".into(),
        Expr::Drop => "drop".into(),
        Expr::RejectTcpReset => "reject with tcp reset".into(),
        Expr::RejectIcmpx => "reject with icmpx admin-prohibited".into(),
        Expr::Return => "return".into(),
        Expr::Goto(c) => format!("goto {c}"),
        Expr::Jump(c) => format!("jump {c}"),
        Expr::Log(prefix) => format!("log prefix {}", serde_json::to_string(prefix).unwrap_or_default()),
        Expr::L4ProtoNums(ns) => {
            format!("meta l4proto {{ {} }}", ns.iter().map(u8::to_string).collect::<Vec<_>>().join(", "))
        }
        Expr::IifName(n) => format!("iifname {}", serde_json::to_string(n).unwrap_or_default()),
        Expr::OifName(n) => format!("oifname {}", serde_json::to_string(n).unwrap_or_default()),
    }
}

fn rule_text(r: &NftRule) -> String {
    let mut t: Vec<String> = r.exprs.iter().map(expr_text).collect();
    if let Some(c) = &r.comment {
        t.push(format!("comment \"{}\"", c.replace('"', "'")));
    }
    t.join(" ")
}

impl Ruleset {
    /// The set definition in nft syntax (also used by incremental updates).
    pub fn set_text(name: &str, s: &NftSet) -> String {
        let mut out = format!("set {name} {{ type {}; ", s.type_text());
        if s.interval {
            out.push_str("flags interval; ");
        }
        if !s.elements.is_empty() {
            let els: Vec<String> = s.elements.iter().map(elem_text).collect();
            let _ = write!(out, "elements = {{ {} }} ", els.join(", "));
        }
        out.push('}');
        out
    }

    pub fn map_text(name: &str, m: &NftMap) -> String {
        let mut out = format!("map {name} {{ type {} : verdict; ", m.family.addr_type());
        if !m.elements.is_empty() {
            let els: Vec<String> = m.elements.iter().map(|(ip, c)| format!("{ip} : jump {c}")).collect();
            let _ = write!(out, "elements = {{ {} }} ", els.join(", "));
        }
        out.push('}');
        out
    }

    pub fn rule_lines(c: &NftChain) -> Vec<String> {
        c.rules.iter().map(rule_text).collect()
    }

    /// The whole table in nft syntax (an `nft -f` script defining it).
    pub fn to_nft(&self) -> String {
        let mut out = format!("table inet {TABLE} {{\n");
        for (n, s) in &self.sets {
            let _ = writeln!(out, "\t{}", Self::set_text(n, s));
        }
        for (n, m) in &self.maps {
            let _ = writeln!(out, "\t{}", Self::map_text(n, m));
        }
        // Regular chains first (the maps jump to them), base chain last.
        for (n, c) in self.chains.iter().filter(|(_, c)| c.hook.is_none()) {
            let _ = writeln!(out, "\tchain {n} {{");
            for r in Self::rule_lines(c) {
                let _ = writeln!(out, "\t\t{r}");
            }
            out.push_str("\t}\n");
        }
        for (n, c) in self.chains.iter().filter(|(_, c)| c.hook.is_some()) {
            let _ = writeln!(out, "\tchain {n} {{");
            if let Some((hook, prio, policy)) = c.hook {
                let _ = writeln!(out, "\t\ttype filter hook {hook} priority {prio}; policy {policy};");
            }
            for r in Self::rule_lines(c) {
                let _ = writeln!(out, "\t\t{r}");
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        out
    }

    /// Audit mode: every verdict that would drop or reject (a rule's, a chain's final drop, an invalid packet's)
    /// counts and logs with the prefix `netpol-audit ` and the rule's comment instead, and the packet goes on to the
    /// next check: in a policy check's chains with `return` (their sub-chains are entered with `goto`, so this ends
    /// that direction's check, whose first would-be drop decided it, and the base chain goes on to the other
    /// direction's check), in a base chain by going on to its next rule. The same checks, each direction's would-be
    /// drop counted, nothing dropped (for rolling policies out).
    pub fn audit(mut self) -> Ruleset {
        for chain in self.chains.values_mut() {
            let base = chain.hook.is_some();
            for rule in &mut chain.rules {
                let denies = matches!(rule.exprs.last(), Some(Expr::Drop | Expr::RejectTcpReset | Expr::RejectIcmpx))
                    || matches!(rule.exprs.last(), Some(Expr::Goto(c)) if c == REJECT_CHAIN);
                if !denies {
                    continue;
                }
                rule.exprs.pop();
                if !rule.exprs.contains(&Expr::Counter) {
                    rule.exprs.push(Expr::Counter);
                }
                let what = rule.comment.as_deref().unwrap_or("np-drop");
                let mut prefix = format!("netpol-audit {what} ");
                // nft's log prefix is at most 127 bytes.
                while prefix.len() > 120 {
                    prefix.pop();
                }
                rule.exprs.push(Expr::Log(prefix));
                if !base {
                    rule.exprs.push(Expr::Return);
                }
            }
        }
        self
    }

    /// A script that replaces the table atomically (one transaction): create-if-missing, delete, define.
    pub fn replace_script(&self) -> String {
        format!("table inet {TABLE}\ndelete table inet {TABLE}\n{}", self.to_nft())
    }

    /// Number of rules and set elements, for benchmarks.
    pub fn size(&self) -> (usize, usize) {
        let rules = self.chains.values().map(|c| c.rules.len()).sum();
        let elements = self.sets.values().map(|s| s.elements.len()).sum::<usize>()
            + self.maps.values().map(|m| m.elements.len()).sum::<usize>();
        (rules, elements)
    }
}

// ---- rendering: libnftables JSON ----

fn elem_json(e: &Elem) -> Value {
    match e {
        Elem::Addr(a) => json!(a.to_string()),
        Elem::Range(a, z) if a == z => json!(a.to_string()),
        Elem::Range(a, z) => json!({"range": [a.to_string(), z.to_string()]}),
        Elem::AddrProtoPort(a, p, port) => json!({"concat": [a.to_string(), proto_text(*p), port]}),
        Elem::AddrPair(a, b) => json!({"concat": [a.to_string(), b.to_string()]}),
    }
}

fn payload(f: Family, s: Side) -> Value {
    json!({"payload": {"protocol": f.proto(), "field": s.text()}})
}

fn expr_json(x: &Expr) -> Value {
    match x {
        Expr::AddrInSet(f, s, set) => {
            json!({"match": {"op": "==", "left": payload(*f, *s), "right": format!("@{set}")}})
        }
        Expr::AddrProtoPortInSet(f, s, set) => json!({"match": {"op": "==", "left": {"concat": [
            payload(*f, *s), {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}
        ]}, "right": format!("@{set}")}}),
        Expr::AddrNotInSet(f, s, set) => {
            json!({"match": {"op": "!=", "left": payload(*f, *s), "right": format!("@{set}")}})
        }
        Expr::AddrPairInSet(f, set) => json!({"match": {"op": "==", "left": {"concat": [
            payload(*f, Side::Saddr), payload(*f, Side::Daddr)
        ]}, "right": format!("@{set}")}}),
        Expr::AddrProtoPortNotInSet(f, s, set) => json!({"match": {"op": "!=", "left": {"concat": [
            payload(*f, *s), {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}
        ]}, "right": format!("@{set}")}}),
        Expr::L4Proto(p) => {
            json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": proto_text(*p)}})
        }
        Expr::Dport(r) => {
            let items: Vec<Value> =
                r.iter().map(|&(a, z)| if a == z { json!(a) } else { json!({"range": [a, z]}) }).collect();
            let right = if items.len() == 1 { items[0].clone() } else { json!({"set": items}) };
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": right}})
        }
        Expr::ProtoPorts(v) => {
            let items: Vec<Value> = v
                .iter()
                .map(|&(p, a, z)| {
                    let port = if a == z { json!(a) } else { json!({"range": [a, z]}) };
                    json!({"concat": [proto_text(p), port]})
                })
                .collect();
            json!({"match": {"op": "==", "left": {"concat": [
                {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}
            ]}, "right": {"set": items}}})
        }
        Expr::CtState(s) => json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": s}}),
        Expr::Icmpv6Types(t) => {
            json!({"match": {"op": "==", "left": {"payload": {"protocol": "icmpv6", "field": "type"}},
            "right": {"set": t}}})
        }
        Expr::IcmpMsgs(p, pieces) => {
            let h = if *p == Protocol::Icmp { "icmp" } else { "icmpv6" };
            let items: Vec<Value> = pieces
                .iter()
                .map(|&(t, a, z)| {
                    let code = if a == z { json!(a) } else { json!({"range": [a, z]}) };
                    json!({"concat": [t, code]})
                })
                .collect();
            json!({"match": {"op": "==", "left": {"concat": [
                {"payload": {"protocol": h, "field": "type"}}, {"payload": {"protocol": h, "field": "code"}}
            ]}, "right": {"set": items}}})
        }
        Expr::Vmap(f, s, m) => json!({"vmap": {"key": payload(*f, *s), "data": format!("@{m}")}}),
        Expr::Counter => json!({"counter": null}),
        Expr::Accept => json!({"accept": null}),
        Expr::Drop => json!({"drop": null}),
        Expr::RejectTcpReset => json!({"reject": {"type": "tcp reset"}}),
        Expr::RejectIcmpx => json!({"reject": {"type": "icmpx", "expr": "admin-prohibited"}}),
        Expr::Return => json!({"return": null}),
        Expr::Goto(c) => json!({"goto": {"target": c}}),
        Expr::Jump(c) => json!({"jump": {"target": c}}),
        Expr::Log(prefix) => json!({"log": {"prefix": prefix}}),
        Expr::L4ProtoNums(ns) => {
            json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ns}}})
        }
        Expr::IifName(n) => json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": n}}),
        Expr::OifName(n) => json!({"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": n}}),
    }
}

impl Ruleset {
    /// The ruleset as libnftables JSON commands (`nft -j -f`): add table, sets, maps, chains, rules.
    pub fn to_json(&self) -> Value {
        let mut cmds = vec![json!({"add": {"table": {"family": "inet", "name": TABLE}}})];
        for (n, s) in &self.sets {
            let mut set = json!({"family": "inet", "table": TABLE, "name": n, "type": s.type_json()});
            if s.interval {
                set["flags"] = json!(["interval"]);
            }
            if !s.elements.is_empty() {
                set["elem"] = Value::Array(s.elements.iter().map(elem_json).collect());
            }
            cmds.push(json!({"add": {"set": set}}));
        }
        for (n, c) in &self.chains {
            let mut chain = json!({"family": "inet", "table": TABLE, "name": n});
            if let Some((hook, prio, policy)) = c.hook {
                chain["type"] = json!("filter");
                chain["hook"] = json!(hook);
                chain["prio"] = json!(priority_number(prio));
                chain["policy"] = json!(policy);
            }
            cmds.push(json!({"add": {"chain": chain}}));
        }
        for (n, m) in &self.maps {
            let mut map =
                json!({"family": "inet", "table": TABLE, "name": n, "type": m.family.addr_type(), "map": "verdict"});
            if !m.elements.is_empty() {
                map["elem"] = Value::Array(
                    m.elements.iter().map(|(ip, c)| json!([ip.to_string(), {"jump": {"target": c}}])).collect(),
                );
            }
            cmds.push(json!({"add": {"map": map}}));
        }
        for (n, c) in &self.chains {
            for r in &c.rules {
                let mut rule = json!({"family": "inet", "table": TABLE, "chain": n, "expr": r.exprs.iter().map(expr_json).collect::<Vec<_>>()});
                if let Some(cm) = &r.comment {
                    rule["comment"] = json!(cm);
                }
                cmds.push(json!({"add": {"rule": rule}}));
            }
        }
        json!({"nftables": cmds})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Failing closed: with the pods' interfaces named, forwarded traffic from or to an address that is no pod of
    /// the node is dropped before any policy check; the node's pods are in the set it checks.
    #[test]
    #[allow(clippy::unwrap_used, clippy::indexing_slicing)]
    fn a_node_fails_closed_for_pods_it_does_not_know() {
        let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1, podIPs: [{ip: 10.0.0.1}, {ip: 'fd00::1'}]}
";
        let e = Engine::new(netpol_core::load::load_str("t.yaml", yaml).cluster);
        let plain = generate_for_node_with(&e, "n1", &NodeOptions::default());
        assert_eq!(plain, generate_for_node(&e, "n1"));
        let rs = generate_for_node_with(
            &e,
            "n1",
            &NodeOptions { pod_interfaces: vec!["v*".into()], ..NodeOptions::default() },
        );
        let v4: Vec<&Elem> = rs.sets["local_pods_v4"].elements.iter().collect();
        assert_eq!(v4, [&Elem::Addr("10.0.0.1".parse().unwrap())]);
        assert_eq!(rs.sets["local_pods_v6"].elements.len(), 1);
        let lines = Ruleset::rule_lines(&rs.chains["forward"]);
        assert!(lines[0].contains("ct state established,related accept"), "{lines:?}");
        assert!(lines[1].contains("ct state invalid"), "{lines:?}");
        assert_eq!(
            lines[2],
            "iifname \"v*\" ip saddr != @local_pods_v4 counter drop comment \"np-drop:unknown-local-pod\""
        );
        assert_eq!(
            lines[3],
            "oifname \"v*\" ip daddr != @local_pods_v4 counter drop comment \"np-drop:unknown-local-pod\""
        );
        assert!(lines[4].starts_with("iifname \"v*\" ip6 saddr != @local_pods_v6"), "{lines:?}");
        // Only the forward path: the node's own paths (input, output) are not a pod's interface's.
        assert!(!Ruleset::rule_lines(&rs.chains["input"]).iter().any(|l| l.contains("unknown-local-pod")));
        let json = rs.to_json().to_string();
        assert!(json.contains("{\"meta\":{\"key\":\"iifname\"}},\"op\":\"==\",\"right\":\"v*\""), "{json}");
    }

    /// Encapsulated traffic from pods isolated for egress is dropped before any policy check (forward and input);
    /// the other pods' is not looked at.
    #[test]
    #[allow(clippy::indexing_slicing)]
    fn a_node_drops_the_encapsulation_of_egress_isolated_pods() {
        let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n, labels: {app: a}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n, labels: {app: b}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: out, namespace: n}
spec: {podSelector: {matchLabels: {app: a}}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}]}]}
";
        let e = Engine::new(netpol_core::load::load_str("t.yaml", yaml).cluster);
        let opts = NodeOptions { block_pod_encapsulation: true, ..NodeOptions::default() };
        let rs = generate_for_node_with(&e, "n1", &opts);
        let isolated: Vec<&Elem> = rs.sets["isolated_egress_v4"].elements.iter().collect();
        assert_eq!(isolated.len(), 1, "only a is isolated for egress: {isolated:?}");
        for chain in ["forward", "input"] {
            let lines = Ruleset::rule_lines(&rs.chains[chain]);
            assert_eq!(
                lines[2],
                "ip saddr @isolated_egress_v4 meta l4proto { 4, 41, 47 } counter drop comment \"np-drop:encapsulation\"",
                "{chain}: {lines:?}"
            );
            assert!(lines[3].contains("meta l4proto udp th dport { 4789, 8472 } counter drop"), "{lines:?}");
        }
        assert!(!Ruleset::rule_lines(&rs.chains["output"]).iter().any(|l| l.contains("encapsulation")));
        assert!(!rs.sets.contains_key("local_pods_v4"), "no fail-closed without pod interfaces");
    }

    /// Audit mode drops nothing: every drop or reject becomes count, log and return (in a base chain: go on);
    /// everything else is unchanged.
    #[test]
    fn audit_mode_logs_and_accepts_what_would_be_dropped() {
        let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n, labels: {app: a}}
status: {podIP: 10.0.0.1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: n}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
";
        let e = Engine::new(netpol_core::load::load_str("t.yaml", yaml).cluster);
        let enforce = generate(&e);
        let audit = enforce.clone().audit();
        fn verdicts(rs: &Ruleset) -> Vec<&Expr> {
            rs.chains.values().flat_map(|c| &c.rules).filter_map(|r| r.exprs.last()).collect()
        }
        assert!(verdicts(&enforce).contains(&&Expr::Drop));
        assert!(!verdicts(&audit).iter().any(|x| matches!(x, Expr::Drop | Expr::RejectTcpReset | Expr::RejectIcmpx)));
        let text = audit.to_nft();
        // In a base chain the packet goes on to the next check; in a policy's chain the check returns.
        assert!(text.contains("counter log prefix \"netpol-audit np-drop:invalid \" comment"), "{text}");
        assert!(!text.contains("netpol-audit np-drop:invalid \" accept"), "{text}");
        assert!(text.contains("log prefix \"netpol-audit np-drop:"), "{text}");
        assert!(!text.contains("\" accept comment \"np-drop"), "{text}");
        let returns = audit.chains.values().filter(|c| c.hook.is_none()).flat_map(|c| &c.rules);
        assert!(returns.filter(|r| matches!(r.exprs.last(), Some(Expr::Return))).count() >= 2);
        // The same maps, sets and chains: only the deny verdicts differ.
        assert_eq!(audit.maps, enforce.maps);
        assert_eq!(audit.chains.keys().collect::<Vec<_>>(), enforce.chains.keys().collect::<Vec<_>>());
        let json = audit.to_json().to_string();
        assert!(json.contains("\"log\":{\"prefix\":\"netpol-audit"), "{json}");
    }

    /// One node's ruleset checks its own pods only: their egress as sources, their ingress as destinations, with
    /// peer sets from the whole cluster; the two nodes' rulesets together hold every check of the whole one.
    #[test]
    #[allow(clippy::unwrap_used, clippy::indexing_slicing)]
    fn a_node_checks_its_own_pods_with_the_whole_clusters_peers() {
        let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n, labels: {app: a}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n, labels: {app: b}}
spec: {nodeName: n2}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: n, labels: {app: c}}
spec: {nodeName: n2}
status: {podIP: 10.0.0.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: in, namespace: n}
spec: {podSelector: {matchLabels: {app: a}}, ingress: [{from: [{podSelector: {matchLabels: {app: b}}}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: out, namespace: n}
spec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{podSelector: {matchLabels: {app: a}}}]}]}
";
        let e = Engine::new(netpol_core::load::load_str("t.yaml", yaml).cluster);
        let whole = generate(&e);
        let (n1, n2) = (generate_for_node(&e, "n1"), generate_for_node(&e, "n2"));
        let keys = |rs: &Ruleset, m: &str| -> Vec<String> {
            rs.maps.get(m).map(|m| m.elements.keys().map(|ip| ip.to_string()).collect()).unwrap_or_default()
        };
        assert_eq!(keys(&n1, "egress_v4"), ["10.0.0.1"]);
        assert_eq!(keys(&n1, "ingress_v4"), ["10.0.0.1"]);
        assert_eq!(keys(&n2, "egress_v4"), ["10.0.0.2", "10.0.0.3"]);
        assert!(keys(&n2, "ingress_v4").is_empty(), "b and c are not isolated for ingress");
        // Every map element of the whole ruleset is on exactly one node, pointing at a chain of the same rules.
        for m in ["egress_v4", "ingress_v4"] {
            let mut both = keys(&n1, m);
            both.extend(keys(&n2, m));
            both.sort();
            assert_eq!(both, keys(&whole, m), "{m}");
        }
        let rules = |rs: &Ruleset, m: &str, ip: &str| -> Vec<String> {
            let chain = &rs.maps[m].elements[&ip.parse::<IpAddr>().unwrap()];
            Ruleset::rule_lines(&rs.chains[chain])
        };
        assert_eq!(rules(&n1, "ingress_v4", "10.0.0.1"), rules(&whole, "ingress_v4", "10.0.0.1"));
        assert_eq!(rules(&n2, "egress_v4", "10.0.0.3"), rules(&whole, "egress_v4", "10.0.0.3"));
        // The peers' sets are the whole cluster's: n1's ingress check of `a` names b's address (on n2).
        assert!(n1.to_nft().contains("10.0.0.2"), "{}", n1.to_nft());
        // A node without pods checks nothing.
        let empty = generate_for_node(&e, "n3");
        assert!(keys(&empty, "egress_v4").is_empty() && keys(&empty, "ingress_v4").is_empty());
        assert!(empty.chains.keys().all(|c| BASE_HOOKS.contains(&c.as_str())), "{:?}", empty.chains.keys());
    }

    #[test]
    fn icmp_messages_are_matched_by_type_and_code() {
        // Type 3 whole, then 8/0, then a range crossing from type 11 code 1 into type 12 code 0.
        let pieces = icmp_pieces(&[(0x0300, 0x03ff), (0x0800, 0x0800), (0x0b01, 0x0c00)]);
        assert_eq!(pieces, vec![(3, 0, 255), (8, 0, 0), (11, 1, 255), (12, 0, 0)]);
        let x = Expr::IcmpMsgs(Protocol::Icmp, pieces);
        assert_eq!(expr_text(&x), "icmp type . icmp code { 3 . 0-255, 8 . 0, 11 . 1-255, 12 . 0 }");
        let j = expr_json(&Expr::IcmpMsgs(Protocol::Icmpv6, vec![(128, 0, 0)]));
        assert_eq!(j["match"]["left"]["concat"][0]["payload"]["protocol"], "icmpv6");
        assert_eq!(j["match"]["right"]["set"][0]["concat"], serde_json::json!([128, 0]));
        assert_eq!(expr_text(&Expr::L4Proto(Protocol::Icmpv6)), "meta l4proto ipv6-icmp");
    }

    /// `peer-N` in rule comments is the peer's index in the manifest (as in explanations), whatever order the
    /// engine compiled the distinct peers in.
    #[test]
    #[allow(clippy::panic)]
    fn peer_numbers_in_comments_are_manifest_indexes() {
        let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n, labels: {app: b}}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: n, labels: {app: c}}
status: {podIP: 10.0.0.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: first, namespace: n}
spec: {podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {app: b}}}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: second, namespace: n}
spec: {podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {app: c}}}, {podSelector: {matchLabels: {app: b}}}]}]}
";
        let e = Engine::new(netpol_core::load::load_str("t", yaml).cluster);
        let text = generate(&e).to_nft();
        // The set a commented rule matches on.
        let set_of = |comment: &str| -> String {
            let line = text
                .lines()
                .find(|l| l.contains(&format!("\"{comment}\"")))
                .unwrap_or_else(|| panic!("{comment}:\n{text}"));
            let at = line.find('@').unwrap_or_else(|| panic!("{line}"));
            line[at..].split_whitespace().next().unwrap_or_default().to_string()
        };
        let b = set_of("np:n/first/ingress/0 peer-0");
        assert_eq!(set_of("np:n/second/ingress/0 peer-1"), b, "from[1] of `second` is app=b");
        assert_ne!(set_of("np:n/second/ingress/0 peer-0"), b, "from[0] of `second` is app=c");
    }

    /// An Antrea policy whose rules each have their own `appliedTo` is lowered to a policy per rule, all under its
    /// name: the pods each rule applies to get a chain holding that rule, not one chain (named after the policy)
    /// for all of them.
    #[test]
    fn per_rule_applied_to_gives_each_subject_its_own_rules() {
        let yaml = "
apiVersion: v1
kind: Namespace
metadata: {name: n}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n, labels: {pod: a}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: n, labels: {pod: b}}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: n, labels: {pod: c}}
status: {podIP: 10.0.0.3}
---
apiVersion: crd.antrea.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: cnp1}
spec:
  priority: 1
  ingress:
  - action: Drop
    appliedTo: [{podSelector: {matchLabels: {pod: a}}}]
    from: [{podSelector: {matchLabels: {pod: c}}}]
  - action: Drop
    appliedTo: [{podSelector: {matchLabels: {pod: b}}}]
    from: [{podSelector: {matchLabels: {pod: a}}}]
";
        let e = Engine::new(netpol_core::load::load_str("t", yaml).cluster);
        let rs = generate(&e);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let chain_of = |a: &str| rs.maps["ingress_v4"].elements[&ip(a)].clone();
        let (a, b) = (chain_of("10.0.0.1"), chain_of("10.0.0.2"));
        assert_ne!(a, b, "{}", rs.to_nft());
        // The addresses of the peer sets a chain's rules match.
        let peers = |chain: &str| -> Vec<IpAddr> {
            let mut out = Vec::new();
            for r in &rs.chains[chain].rules {
                for x in &r.exprs {
                    if let Expr::AddrInSet(_, Side::Saddr, set) = x {
                        for el in &rs.sets[set].elements {
                            if let Elem::Addr(ip) = el {
                                out.push(*ip);
                            }
                        }
                    }
                }
            }
            out
        };
        assert_eq!(peers(&a), [ip("10.0.0.3")], "a's rule drops c");
        assert_eq!(peers(&b), [ip("10.0.0.1")], "b's rule drops a");
    }

    /// Rule actions become verdicts in rule order: deny drops, log only counts, pass jumps to a chain of the later
    /// tiers (no dialect produces deny, log or pass yet: the rules' actions are set by hand here).
    #[test]
    #[allow(clippy::panic)]
    fn actions_become_verdicts_in_order() {
        let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: n}
spec: {podSelector: {}, ingress: [{ports: [{port: 1}]}, {ports: [{port: 2}]}, {ports: [{port: 3}]}, {ports: [{port: 4}]}]}
";
        let mut e = Engine::new(netpol_core::load::load_str("t", yaml).cluster);
        for (r, action) in [Action::Deny, Action::Log, Action::Allow, Action::Pass].into_iter().enumerate() {
            e.set_rule_action(netpol_core::compile::RuleId::new(r), action);
        }
        let text = generate(&e).to_nft();
        let chain: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("chain in_"))
            .take_while(|l| l.trim() != "}")
            .collect();
        let verdict = |port: &str| -> String {
            let line = chain.iter().find(|l| l.contains(&format!("dport {port} "))).unwrap_or_else(|| panic!("{text}"));
            line.split("counter")
                .nth(1)
                .unwrap_or_default()
                .split("comment")
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        assert_eq!(verdict("1"), "drop");
        assert_eq!(verdict("2"), "");
        assert_eq!(verdict("3"), "return");
        assert!(verdict("4").starts_with("goto in_"), "{text}");
        // Nothing after the pass: the later-tier chain has no rules of its own, and the tier still ends in a drop.
        assert!(chain.iter().any(|l| l.contains("np-drop:ingress")), "{text}");
    }

    /// Antrea's Reject: the rule goes to the shared reject chain, which answers TCP with a reset and anything
    /// else with ICMP "administratively prohibited"; Drop stays a silent drop.
    #[test]
    fn reject_rules_answer_the_sender() {
        let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: n}
spec: {podSelector: {}, ingress: [{ports: [{port: 1}]}, {ports: [{port: 2}]}]}
";
        let mut e = Engine::new(netpol_core::load::load_str("t", yaml).cluster);
        e.set_rule_action(netpol_core::compile::RuleId::new(0), Action::Reject);
        e.set_rule_action(netpol_core::compile::RuleId::new(1), Action::Deny);
        let rs = generate(&e);
        let chain = rs.chains.keys().find(|k| k.starts_with("in_")).cloned().unwrap_or_default();
        let dport = |p: u16| move |r: &NftRule| r.exprs.iter().any(|x| matches!(x, Expr::Dport(d) if d == &[(p, p)]));
        assert_eq!(target(&rs, &chain, dport(1)), REJECT_CHAIN);
        let denied = rs.chains[&chain].rules.iter().find(|r| dport(2)(r)).map(|r| r.exprs.last().cloned());
        assert_eq!(denied, Some(Some(Expr::Drop)));
        let lines = Ruleset::rule_lines(&rs.chains[REJECT_CHAIN]);
        assert_eq!(lines, ["meta l4proto tcp reject with tcp reset", "reject with icmpx admin-prohibited"]);
        let json = rs.to_json().to_string();
        assert!(json.contains(r#"{"reject":{"type":"tcp reset"}}"#), "{json}");
        assert!(json.contains(r#"{"reject":{"expr":"admin-prohibited","type":"icmpx"}}"#), "{json}");
    }

    /// Antrea's tiers: a Pass in a tier whose pass is held (`Tier::hold`) goes to a chain of the NetworkPolicy
    /// tier's steps, past the later Antrea tiers' rules; without the flag, to the next tier's.
    #[test]
    fn a_held_pass_jumps_to_the_network_policy_tier() {
        use netpol_core::model::*;
        let yaml = "
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: n}
spec: {podSelector: {}, ingress: [{ports: [{port: 1}]}]}
";
        for flag in [true, false] {
            let mut c = netpol_core::load::load_str("t", yaml).cluster;
            if c.tiers.len() < 3 {
                c.tiers = TierDef::builtin();
            }
            for (name, order) in [("emergency", 50.0), ("securityops", 100.0)] {
                c.tiers.push(TierDef {
                    name: name.into(),
                    order: Some(order),
                    default_action: Action::Pass,
                    origin: None,
                    pass_to_network_policy: flag,
                });
            }
            for (k, (name, action, port)) in
                [("first", Action::Pass, 7u16), ("second", Action::Allow, 8)].into_iter().enumerate()
            {
                let rule = Rule {
                    action,
                    ports: vec![PolicyPort { protocol: Protocol::Tcp, port: PortMatch::Range(port, port) }],
                    ..Default::default()
                };
                c.policies.push(Policy {
                    host: Default::default(),
                    position: 0,
                    manifest: None,
                    kind: PolicyKind::AntreaClusterNetworkPolicy,
                    tier: PolicyTier::from_index(3 + k),
                    order: Order(Some(1.0)),
                    calico_selector: None,
                    scope: Scope::Cluster(netpol_core::selector::Selector::everything()),
                    name: name.into(),
                    pod_selector: netpol_core::selector::Selector::everything(),
                    affects_ingress: true,
                    affects_egress: false,
                    ingress: vec![rule],
                    egress: Vec::new(),
                    origin: Origin::default(),
                });
            }
            let rs = generate(&Engine::new(c));
            let chain =
                rs.chains.keys().find(|k| k.starts_with("in_") && !k.contains("_t")).cloned().unwrap_or_default();
            let dport =
                |p: u16| move |r: &NftRule| r.exprs.iter().any(|x| matches!(x, Expr::Dport(d) if d == &[(p, p)]));
            let rest = target(&rs, &chain, dport(7));
            let lines = Ruleset::rule_lines(&rs.chains[&rest]);
            // Held: the NetworkPolicy's rule first (port 1); not held: securityops's allow of port 8 first.
            let first = if flag { "th dport 1 " } else { "th dport 8 " };
            assert!(lines.first().is_some_and(|l| l.contains(first)), "{flag}: {lines:#?}");
            assert_eq!(lines.iter().any(|l| l.contains("th dport 8 ")), !flag, "{lines:#?}");
        }
    }

    /// Traffic between a pod and the node itself (the node's addresses, which its hostNetwork pods have) passes
    /// the input and output hooks, never forward: all three base chains dispatch to the same egress and ingress
    /// chains. Once only `forward` did, and a pod's egress to its node (a `nodes` peer's Deny, say) was not
    /// enforced. With IPv6 the node's own paths accept neighbour discovery before the dispatch; forward never
    /// sees it.
    #[test]
    fn the_node_own_paths_are_checked_like_forwarded_traffic() {
        let yaml = |v6: bool| {
            let ips = if v6 { "podIPs: [{ip: 10.0.0.2}, {ip: 'fd00::2'}]" } else { "podIPs: [{ip: 10.0.0.2}]" };
            format!(
                "
apiVersion: v1
kind: Node
metadata: {{name: n1}}
status: {{addresses: [{{type: InternalIP, address: 10.1.0.1}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: agent, namespace: n}}
spec: {{nodeName: n1, hostNetwork: true}}
---
apiVersion: v1
kind: Pod
metadata: {{name: a, namespace: n}}
status: {{podIP: 10.0.0.2, {ips}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p, namespace: n}}
spec: {{podSelector: {{}}, policyTypes: [Ingress, Egress], egress: [{{to: [{{ipBlock: {{cidr: 10.1.0.0/24}}}}]}}]}}
"
            )
        };
        for v6 in [false, true] {
            let e = Engine::new(netpol_core::load::load_str("t", &yaml(v6)).cluster);
            let rs = generate(&e);
            let base: Vec<(&String, &NftChain)> = rs.chains.iter().filter(|(_, c)| c.hook.is_some()).collect();
            assert_eq!(base.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["forward", "input", "output"]);
            let dispatch = |c: &NftChain| -> Vec<Expr> {
                c.rules.iter().flat_map(|r| &r.exprs).filter(|x| matches!(x, Expr::Vmap(..))).cloned().collect()
            };
            let fwd = &rs.chains["forward"];
            assert_eq!(dispatch(fwd).len(), if v6 { 4 } else { 2 });
            for (name, c) in &base {
                assert_eq!(c.hook, Some((name.as_str(), base_priority(name), "accept")));
                assert_eq!(dispatch(c), dispatch(fwd), "{name}");
                assert_eq!(c.rules[..2], fwd.rules[..2], "{name}: conntrack first");
                let nd = c.rules.iter().position(|r| matches!(r.exprs[0], Expr::Icmpv6Types(_)));
                let first_vmap = c.rules.iter().position(|r| matches!(r.exprs[0], Expr::Vmap(..)));
                match (name.as_str(), v6) {
                    ("forward", _) | (_, false) => assert_eq!(nd, None, "{name}"),
                    _ => assert!(nd.is_some() && nd < first_vmap, "{name}: {:?}", c.rules),
                }
            }
            // The pod is isolated in both directions and the node's address is in its egress rule's block.
            assert!(rs.maps["egress_v4"]
                .elements
                .contains_key(&"10.0.0.2".parse::<IpAddr>().unwrap_or_else(|_| unreachable!())));
            let text = rs.to_nft();
            assert!(
                text.contains("chain input {\n\t\ttype filter hook input priority filter + 101; policy accept;"),
                "{text}"
            );
            assert_eq!(text.contains("icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept"), v6);
        }
    }

    /// A node's ruleset made from its share of the data-plane table (`Engine::dataplane_for`: only its pods'
    /// checks computed) is the one made from the whole table, for every node of every conformance case of every
    /// dialect (network-policy-api's steps, Calico's, Cilium's and Antrea's cases).
    #[test]
    fn a_nodes_share_of_the_table_gives_the_ruleset_of_the_whole_table() {
        use std::path::{Path, PathBuf};
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance");
        let files = |dir: &Path| -> Vec<PathBuf> {
            let mut v: Vec<PathBuf> =
                std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
            v.sort();
            v
        };
        let mut clusters: Vec<(String, String)> = Vec::new();
        for dialect in ["calico", "cilium", "antrea"] {
            for f in files(&root.join(dialect)).into_iter().filter(|f| f.extension().is_some_and(|x| x == "yaml")) {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap_or(serde_yaml_ng::Value::Null);
                if let Some(m) = v.get("manifests").and_then(|m| m.as_str()) {
                    clusters.push((f.display().to_string(), m.to_string()));
                }
            }
        }
        let api = root.join("network-policy-api");
        let base: String = files(&api.join("base"))
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default() + "\n---\n")
            .collect();
        for test in files(&api).into_iter().filter(|d| d.is_dir() && !d.ends_with("base")) {
            for step in files(&test).into_iter().filter(|d| d.is_dir()) {
                let policies = std::fs::read_to_string(step.join("policies.yaml")).unwrap_or_default();
                clusters.push((step.display().to_string(), format!("{base}{policies}")));
            }
        }
        assert!(clusters.len() >= 200, "{} clusters", clusters.len());
        let mut checked = 0;
        for (name, manifests) in &clusters {
            let e = Engine::new(netpol_core::load::load_str(name, manifests).cluster);
            let whole = e.dataplane();
            let nodes: BTreeSet<String> = e.cluster().pods.iter().filter_map(|p| p.node.clone()).collect();
            for node in nodes {
                let local = node_pod_addresses(&e, &node);
                let from_whole = generate_from(&whole, Some(&local)).snapshot();
                let share = generate_for_node(&e, &node).snapshot();
                let diff = |a: &Snapshot, b: &Snapshot| -> Vec<String> {
                    let sets =
                        a.sets.iter().filter(|(k, v)| b.sets.get(*k) != Some(v)).map(|(k, _)| format!("set {k}"));
                    let chains = a
                        .chains
                        .iter()
                        .filter(|(k, v)| b.chains.get(*k) != Some(v))
                        .map(|(k, v)| format!("chain {k}: {v:?}"));
                    let maps =
                        a.maps.iter().filter(|(k, v)| b.maps.get(*k) != Some(v)).map(|(k, _)| format!("map {k}"));
                    sets.chain(chains).chain(maps).collect()
                };
                assert!(
                    from_whole == share,
                    "{name}, node {node}:\nonly from the whole table: {:#?}\nonly from the share: {:#?}",
                    diff(&from_whole, &share),
                    diff(&share, &from_whole)
                );
                checked += 1;
            }
        }
        assert!(checked >= 300, "{checked} nodes checked");
    }

    /// kube-proxy's IPVS mode: IPVS takes a packet to a Service address at the input hook (priorities 98 and 99 in
    /// the kernel, `NF_IP_PRI_NAT_SRC - 2` and `- 1`) and sends it translated through the output hook. `input`
    /// runs after it (so it never judges a pod's egress against the Service address), and `output` judges a
    /// packet by its source pod's egress and its destination pod's ingress, as `forward` does.
    #[test]
    fn input_runs_after_ipvs_and_output_judges_pod_sources() {
        const IPVS_LOCAL_IN: [i64; 2] = [98, 99];
        let input = priority_number(base_priority("input"));
        assert!(IPVS_LOCAL_IN.iter().all(|&p| input > p), "{input}");
        assert_eq!(priority_number(base_priority("forward")), 0);
        assert_eq!(priority_number(base_priority("output")), 0);
        let e = Engine::new(
            netpol_core::load::load_str(
                "t",
                "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: n, labels: {app: a}}\nstatus: {podIP: 10.0.0.1}\n---\n\
                 apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: n}\n\
                 spec: {podSelector: {}, policyTypes: [Egress]}\n",
            )
            .cluster,
        );
        let rs = generate(&e);
        let json = rs.to_json();
        let prios: Vec<(String, i64)> = json["nftables"]
            .as_array()
            .unwrap_or_else(|| unreachable!())
            .iter()
            .filter_map(|c| {
                Some((c["add"]["chain"]["hook"].as_str()?.to_string(), c["add"]["chain"]["prio"].as_i64()?))
            })
            .collect();
        assert!(prios.contains(&("input".to_string(), 101)) && prios.contains(&("output".to_string(), 0)), "{prios:?}");
        assert!(rs.chains["output"]
            .rules
            .iter()
            .any(|r| r.exprs == [Expr::Vmap(Family::V4, Side::Saddr, "egress_v4".into())]));
    }

    /// Cilium's allow-localhost: with Cilium policies every ingress chain first lets the pod's own node through
    /// (`ip saddr . ip daddr @own_node_v4`: node address . pod address, one element per governed pod and node
    /// address of its family), before any deny rule; the egress chains and clusters without Cilium policies have
    /// no such rule.
    #[test]
    #[allow(clippy::panic)]
    fn cilium_clusters_let_a_pods_own_node_through_its_ingress() {
        let yaml = "
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.1.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: a}
spec: {nodeName: n1}
status: {podIP: 10.0.0.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: a}
spec: {podSelector: {}, policyTypes: [Egress]}
";
        let cnp = "
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: lock, namespace: a}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingressDeny: [{fromEntities: [all]}]
";
        let e = Engine::new(netpol_core::load::load_str("t", &format!("{yaml}{cnp}")).cluster);
        let rs = generate(&e);
        let text = rs.to_nft();
        assert_eq!(
            rs.sets["own_node_v4"].elements,
            [Elem::AddrPair(ip("10.1.0.1"), ip("10.0.0.2"))].into_iter().collect(),
            "web only: other's ingress is not governed"
        );
        assert!(
            text.contains("set own_node_v4 { type ipv4_addr . ipv4_addr; elements = { 10.1.0.1 . 10.0.0.2 } }"),
            "{text}"
        );
        let ingress = rs.maps["ingress_v4"].elements[&ip("10.0.0.2")].clone();
        let lines = Ruleset::rule_lines(&rs.chains[&ingress]);
        assert_eq!(lines[0], "ip saddr . ip daddr @own_node_v4 counter return comment \"np-own-node:ingress\"");
        assert!(lines[1].contains("drop"), "the deny comes after: {lines:?}");
        for (n, c) in rs.chains.iter().filter(|(n, _)| n.starts_with("eg_")) {
            assert!(!Ruleset::rule_lines(c).iter().any(|l| l.contains("own_node")), "{n}");
        }
        let json = rs.to_json().to_string();
        assert!(json.contains(r#""type":["ipv4_addr","ipv4_addr"]"#), "{json}");
        assert!(json.contains(r#"{"concat":["10.1.0.1","10.0.0.2"]}"#), "{json}");
        assert!(json.contains(r#"{"concat":[{"payload":{"field":"saddr","protocol":"ip"}},{"payload":{"field":"daddr","protocol":"ip"}}]}"#), "{json}");
        let plain = generate(&Engine::new(netpol_core::load::load_str("t", yaml).cluster)).to_nft();
        assert!(!plain.contains("own_node"), "{plain}");
    }

    /// A host endpoint with untracked, pre-DNAT, normal and forward policies (`10.0.0.1` on node `n1`, a pod on
    /// `n1`), as the host endpoint rulesets are built.
    const HOST_YAML: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a}
spec: {nodeName: n1}
status: {podIP: 10.1.1.10}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h1, labels: {role: node}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [10.0.0.1]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked}
spec:
  selector: role == 'node'
  doNotTrack: true
  applyOnForward: true
  types: [Ingress]
  ingress: [{action: Allow, source: {nets: [10.77.0.0/16]}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pre}
spec:
  selector: role == 'node'
  preDNAT: true
  applyOnForward: true
  ingress: [{action: Deny, source: {nets: [10.66.0.0/16]}}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: normal}
spec:
  selector: role == 'node'
  types: [Ingress]
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80]}}]
";

    /// The chain a rule of `chain` jumps or goes to (the first such rule).
    #[allow(clippy::panic)]
    fn target(rs: &Ruleset, chain: &str, pick: impl Fn(&NftRule) -> bool) -> String {
        let r = rs.chains[chain]
            .rules
            .iter()
            .find(|r| pick(r))
            .unwrap_or_else(|| panic!("{chain}: {:?}", rs.chains[chain]));
        match r.exprs.last() {
            Some(Expr::Goto(c) | Expr::Jump(c)) => c.clone(),
            x => panic!("{chain}: {x:?}"),
        }
    }

    /// A Node that Cilium's host policies select is a host check with no failsafe ports: its check chain goes
    /// straight to its stages, whose normal stage holds the host policy and drops what it leaves.
    #[test]
    fn cilium_host_policies_become_host_checks_without_failsafe_ports() {
        let yaml = "
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {role: edge}}
status: {addresses: [{type: InternalIP, address: 10.1.0.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.2}
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: edge}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  ingress: [{toPorts: [{ports: [{port: \"22\", protocol: TCP}]}]}]
";
        let e = Engine::new(netpol_core::load::load_str("t", yaml).cluster);
        let rs = generate(&e);
        let text = rs.to_nft();
        assert!(!text.contains("{  }") && !text.contains("failsafe"), "{text}");
        let dispatch = |comment: &str| target(&rs, "forward", |r| r.comment.as_deref() == Some(comment));
        let to_host = target(&rs, &dispatch("np-host:outside -> host endpoint n1"), |_| true);
        assert!(rule_text(&rs.chains[&to_host].rules[0]).starts_with("goto "), "{text}");
        assert!(text.contains("th dport 22 counter return comment \"np:ccnp/edge/ingress/0 any-peer\""), "{text}");
        assert!(text.contains("counter drop comment \"np-drop:host n1 to-host normal\""), "{text}");
    }

    /// Host endpoint checks: every base chain dispatches by source and destination address class (after the
    /// pods' own checks) to a chain per pair of places, which jumps to each check's chain; a check's chain
    /// accepts Felix's failsafe ports (to the host: the check passes; forwarded: the untracked and pre-DNAT
    /// stages are skipped), then walks its stages: an Allow passes the check (an untracked Allow of traffic
    /// forwarded in only goes on to the next stage), a Deny drops, and the normal stage drops what no rule and
    /// no profile allows.
    #[test]
    #[allow(clippy::panic)]
    fn host_endpoint_checks_become_stage_chains() {
        let e = Engine::new(netpol_core::load::load_str("t", HOST_YAML).cluster);
        let rs = generate(&e);
        let text = rs.to_nft();
        for hook in BASE_HOOKS {
            let rules = &rs.chains[hook].rules;
            let last_vmap = rules.iter().rposition(|r| matches!(r.exprs[0], Expr::Vmap(..))).unwrap_or_default();
            let first_host = rules.iter().position(|r| matches!(r.exprs.last(), Some(Expr::Jump(_))));
            assert!(first_host.is_some_and(|h| h > last_vmap), "{hook}: {rules:?}");
        }
        assert_eq!(rs.sets["hc_all_v4"].elements.len(), 2, "the host endpoint's and the pod's addresses");
        // Outside -> the host endpoint: one check, to the host.
        let dispatch = |comment: &str| target(&rs, "forward", |r| r.comment.as_deref() == Some(comment));
        let to_host = target(&rs, &dispatch("np-host:outside -> host endpoint h1"), |_| true);
        let to_host_rules = &rs.chains[&to_host].rules;
        assert!(
            matches!(to_host_rules[0].exprs[..], [Expr::ProtoPorts(ref p), Expr::Counter, Expr::Return] if p.contains(&(Protocol::Tcp, 22, 22))),
            "{text}"
        );
        // Stages: untracked (Allow passes the check), pre-DNAT (Deny drops), normal (port 80, else the tier drops).
        let s0 = target(&rs, &to_host, |r| r.comment.is_none());
        assert!(s0.ends_with("_s0"), "{text}");
        let untracked = &rs.chains[&s0].rules;
        assert!(
            rule_text(&untracked[0]).ends_with("counter return comment \"np:gnp/untracked/ingress/0 peer-0\""),
            "{text}"
        );
        let s1 = format!("{}_s1", &s0[..s0.len() - 3]);
        assert_eq!(rule_text(untracked.last().unwrap_or_else(|| unreachable!())), format!("goto {s1}"));
        assert!(rule_text(&rs.chains[&s1].rules[0]).contains("counter drop comment \"np:gnp/pre/ingress/0"), "{text}");
        let s2 = format!("{}_s2", &s0[..s0.len() - 3]);
        let normal: Vec<String> = rs.chains[&s2].rules.iter().map(rule_text).collect();
        assert!(normal[0].starts_with("meta l4proto tcp th dport 80 counter return"), "{normal:?}");
        // The default tier's own end (Deny) drops first; the stage's end (no profile) is never reached here.
        assert!(normal[1].starts_with("counter drop comment \"np-drop:host h1 to-host normal"), "{normal:?}");
        // Outside -> the pod: forwarded in. Failsafe ports skip to the forward stage; the untracked Allow only goes
        // on to the pre-DNAT stage; the forward stage (no applyOnForward normal policy) allows.
        let fwd_in = target(&rs, &dispatch("np-host:outside -> pods on node n1"), |_| true);
        let fs = rule_text(&rs.chains[&fwd_in].rules[0]);
        assert!(
            fs.starts_with("meta l4proto . th dport { tcp . 22,") && fs.contains(&format!("goto {fwd_in}_s2")),
            "{fs}"
        );
        let untracked = &rs.chains[&format!("{fwd_in}_s0")].rules;
        assert!(rule_text(&untracked[0]).contains(&format!("counter goto {fwd_in}_s1 comment")), "{text}");
        assert_eq!(rs.chains[&format!("{fwd_in}_s2")].rules.iter().map(rule_text).collect::<Vec<_>>(), ["return"]);
        // Pod -> outside: forwarded out, through the forward stage only; the host to outside: its normal egress,
        // no policy, no profile: dropped but for outbound failsafe ports.
        assert!(rs
            .chains
            .values()
            .flat_map(|c| &c.rules)
            .any(|r| r.comment.as_deref() == Some("np-host:pods on node n1 -> outside")));
        let from_host = target(&rs, &dispatch("np-host:host endpoint h1 -> outside"), |_| true);
        assert!(rule_text(&rs.chains[&from_host].rules[0]).contains("udp . 53"), "{text}");
        // The same in libnftables JSON: the negated class lookup and the jumps.
        let json = rs.to_json().to_string();
        assert!(
            json.contains(
                r#"{"match":{"left":{"payload":{"field":"saddr","protocol":"ip"}},"op":"!=","right":"@hc_all_v4"}}"#
            ),
            "{json}"
        );
        assert!(json.contains(r#"{"jump":{"target":"hp_"#), "{json}");
        // A cluster without host endpoints has none of this.
        let plain = generate(&Engine::new(
            netpol_core::load::load_str("t", HOST_YAML.split("---").next().unwrap_or_default()).cluster,
        ));
        assert!(!plain.to_nft().contains("hc_") && !plain.to_nft().contains("jump hp_"));
    }

    /// A host stage rule with own-side criteria matches them by address, and its named ports (and named
    /// notPorts) resolve at each destination: the host endpoint's ports here.
    #[test]
    #[allow(clippy::panic)]
    fn host_stage_rules_match_their_own_side_and_named_ports() {
        let yaml = "
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h1, labels: {role: node}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [10.0.0.1, 10.0.0.2], ports: [{name: web, port: 8080, protocol: TCP}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: p}
spec:
  selector: role == 'node'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, destination: {nets: [10.0.0.2/32], ports: [web]}}
";
        let e = Engine::new(netpol_core::load::load_str("t", yaml).cluster);
        let rs = generate(&e);
        let rule = rs
            .chains
            .values()
            .flat_map(|c| &c.rules)
            .map(rule_text)
            .find(|r| r.contains("np:gnp/p/ingress/0"))
            .unwrap_or_default();
        let own = rs.sets.iter().find(|(_, s)| s.elements.contains(&Elem::Range(ip("10.0.0.2"), ip("10.0.0.2"))));
        let named = rs.sets.iter().find(|(_, s)| {
            s.elements
                == [
                    Elem::AddrProtoPort(ip("10.0.0.1"), Protocol::Tcp, 8080),
                    Elem::AddrProtoPort(ip("10.0.0.2"), Protocol::Tcp, 8080),
                ]
                .into_iter()
                .collect()
        });
        let (Some((own, _)), Some((named, _))) = (own, named) else { panic!("{}", rs.to_nft()) };
        assert_eq!(rule, format!("ip daddr @{own} ip daddr . meta l4proto . th dport @{named} counter return comment \"np:gnp/p/ingress/0 any-peer named-ports\""));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn block_minus_excepts() {
        let b = IpBlock {
            cidr: "10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!()),
            except: vec!["10.1.0.0/16".parse().unwrap_or_else(|_| unreachable!())],
        };
        let r: Vec<String> = block_ranges(&b).iter().map(|(a, z)| format!("{a}-{z}")).collect();
        assert_eq!(r, vec!["10.0.0.0-10.0.255.255", "10.2.0.0-10.255.255.255"]);
        let edge = IpBlock {
            cidr: "10.0.0.0/24".parse().unwrap_or_else(|_| unreachable!()),
            except: vec!["10.0.0.0/25".parse().unwrap_or_else(|_| unreachable!())],
        };
        let r: Vec<String> = block_ranges(&edge).iter().map(|(a, z)| format!("{a}-{z}")).collect();
        assert_eq!(r, vec!["10.0.0.128-10.0.0.255"]);
    }
}

// ---- incremental updates ----

/// A ruleset as text pieces, kept between updates (serialisable) to compute the next incremental update.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// set name → (declaration without elements, elements)
    pub sets: BTreeMap<String, (String, BTreeSet<String>)>,
    /// map name → (declaration without elements, key → verdict)
    pub maps: BTreeMap<String, (String, BTreeMap<String, String>)>,
    /// chain name → (base-chain header if any, rules)
    pub chains: BTreeMap<String, (Option<String>, Vec<String>)>,
    /// Shortened comments → full text.
    #[serde(default)]
    pub long_comments: BTreeMap<String, String>,
}

impl Ruleset {
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for (n, set) in &self.sets {
            let decl = Self::set_text(n, &NftSet { elements: BTreeSet::new(), ..set.clone() });
            s.sets.insert(n.clone(), (decl, set.elements.iter().map(elem_text).collect()));
        }
        for (n, m) in &self.maps {
            let decl = Self::map_text(n, &NftMap { family: m.family, elements: BTreeMap::new() });
            let els = m.elements.iter().map(|(ip, c)| (ip.to_string(), format!("jump {c}"))).collect();
            s.maps.insert(n.clone(), (decl, els));
        }
        for (n, c) in &self.chains {
            let header =
                c.hook.map(|(hook, prio, policy)| format!("type filter hook {hook} priority {prio}; policy {policy};"));
            s.chains.insert(n.clone(), (header, Self::rule_lines(c)));
        }
        s.long_comments = self.long_comments.clone();
        s
    }
}

fn elements_block(els: &[&String]) -> String {
    let v: Vec<&str> = els.iter().map(|s| s.as_str()).collect();
    format!("{{ {} }}", v.join(", "))
}

impl Snapshot {
    /// One nft transaction (an `nft -f` script) that turns the loaded `old` into `self`: new sets and chains are
    /// added first, changed sets get element deltas (never a flush), changed chains are flushed and refilled,
    /// map entries are swapped, and only then are unused chains and sets removed. Either all of it applies or
    /// nothing does.
    pub fn update_script(&self, old: &Snapshot) -> String {
        let t = format!("inet {TABLE}");
        let mut out = String::new();
        // 1. sets and maps: new ones, then element deltas.
        for (n, (decl, els)) in &self.sets {
            match old.sets.get(n) {
                Some((odecl, oels)) if odecl == decl => {
                    let del: Vec<&String> = oels.difference(els).collect();
                    let add: Vec<&String> = els.difference(oels).collect();
                    if !del.is_empty() {
                        let _ = writeln!(out, "delete element {t} {n} {}", elements_block(&del));
                    }
                    if !add.is_empty() {
                        let _ = writeln!(out, "add element {t} {n} {}", elements_block(&add));
                    }
                }
                Some(_) => {
                    let _ = writeln!(out, "delete set {t} {n}");
                    let _ = writeln!(out, "add {}", decl_in_table(decl, &t));
                    if !els.is_empty() {
                        let _ =
                            writeln!(out, "add element {t} {n} {}", elements_block(&els.iter().collect::<Vec<_>>()));
                    }
                }
                None => {
                    let _ = writeln!(out, "add {}", decl_in_table(decl, &t));
                    if !els.is_empty() {
                        let _ =
                            writeln!(out, "add element {t} {n} {}", elements_block(&els.iter().collect::<Vec<_>>()));
                    }
                }
            }
        }
        // 2. chains: create new ones (empty) so that rules and map entries can refer to them.
        for n in self.chains.keys() {
            if !old.chains.contains_key(n) {
                let header = self.chains.get(n).and_then(|c| c.0.clone());
                match header {
                    Some(h) => {
                        let _ = writeln!(out, "add chain {t} {n} {{ {h} }}");
                    }
                    None => {
                        let _ = writeln!(out, "add chain {t} {n}");
                    }
                }
            }
        }
        // 3. rules of new and changed chains.
        for (n, (_, rules)) in &self.chains {
            match old.chains.get(n) {
                Some((_, orules)) if orules == rules => continue,
                Some(_) => {
                    let _ = writeln!(out, "flush chain {t} {n}");
                }
                None => {}
            }
            for r in rules {
                let _ = writeln!(out, "add rule {t} {n} {r}");
            }
        }
        // 4. maps: new maps, then entry deltas (a changed entry is deleted and re-added in this transaction).
        for (n, (decl, els)) in &self.maps {
            let (odecl, oels) = match old.maps.get(n) {
                Some((d, e)) => (Some(d), e.clone()),
                None => (None, BTreeMap::new()),
            };
            if odecl != Some(decl) {
                if odecl.is_some() {
                    let _ = writeln!(out, "delete map {t} {n}");
                }
                let _ = writeln!(out, "add {}", decl_in_table(decl, &t));
                if !els.is_empty() {
                    let v: Vec<String> = els.iter().map(|(k, v)| format!("{k} : {v}")).collect();
                    let _ = writeln!(out, "add element {t} {n} {{ {} }}", v.join(", "));
                }
                continue;
            }
            let del: Vec<&String> = oels.iter().filter(|(k, v)| els.get(*k) != Some(v)).map(|(k, _)| k).collect();
            let add: Vec<String> =
                els.iter().filter(|(k, v)| oels.get(*k) != Some(v)).map(|(k, v)| format!("{k} : {v}")).collect();
            if !del.is_empty() {
                let _ = writeln!(out, "delete element {t} {n} {}", elements_block(&del));
            }
            if !add.is_empty() {
                let _ = writeln!(out, "add element {t} {n} {{ {} }}", add.join(", "));
            }
        }
        // 5. remove what is no longer used: maps, chains (flushed first), sets.
        for n in old.maps.keys() {
            if !self.maps.contains_key(n) {
                let _ = writeln!(out, "delete map {t} {n}");
            }
        }
        for n in old.chains.keys() {
            if !self.chains.contains_key(n) {
                let _ = writeln!(out, "flush chain {t} {n}");
            }
        }
        for n in old.chains.keys() {
            if !self.chains.contains_key(n) {
                let _ = writeln!(out, "delete chain {t} {n}");
            }
        }
        for n in old.sets.keys() {
            if !self.sets.contains_key(n) {
                let _ = writeln!(out, "delete set {t} {n}");
            }
        }
        out
    }
}

/// `set NAME { ... }` → `set inet netpol NAME { ... }` (for `add` commands).
fn decl_in_table(decl: &str, table: &str) -> String {
    match decl.split_once(' ') {
        Some((kind, rest)) => format!("{kind} {table} {rest}"),
        None => decl.to_string(),
    }
}
