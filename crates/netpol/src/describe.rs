//! `netpol describe`: which policies select each pod, whether it is isolated per direction, and what it may
//! exchange with addresses outside the cluster; with Calico host endpoints, the host endpoint a hostNetwork pod's
//! traffic meets, and (listing every pod) each host endpoint with its node, addresses and policies per stage, and
//! each Node that Cilium's host policies select with its host policies per direction.

use std::collections::BTreeMap;
use std::io::Write;

use netpol_core::compile::{Engine, IdentityId};
use netpol_core::model::{Direction, PodId, PolicyKind};
use netpol_core::outside::{allowed_groups, Segments};
use netpol_core::selector::{format_labels, Labels};
use serde::Serialize;

use crate::TableOrJson;

#[derive(Serialize)]
struct Side {
    /// Whether a NetworkPolicy selects the pod (what NetworkPolicies do not allow is denied).
    isolated: bool,
    /// Every policy that applies, in evaluation order.
    policies: Vec<String>,
    /// The same, tier by tier.
    tiers: Vec<TierPolicies>,
}

#[derive(Serialize)]
struct TierPolicies {
    tier: String,
    /// `anp/name (priority 10)` for the admin tiers.
    policies: Vec<String>,
}

/// Ports allowed with some addresses outside the cluster.
#[derive(Clone, Serialize)]
struct OutsideRule {
    ports: String,
    /// CIDRs or `FIRST-LAST` ranges; `["0.0.0.0/0", "::/0"]` for every address.
    addresses: Vec<String>,
}

#[derive(Clone, Serialize)]
struct Outside {
    egress: Vec<OutsideRule>,
    ingress: Vec<OutsideRule>,
}

/// Per identity (computed once), what its pods may exchange with outside addresses: segments grouped by the
/// ports they allow, segments that only pods' IPs fill left out.
struct OutsideCache<'a> {
    e: &'a Engine,
    segs: Segments,
    /// Segments (sorted) that hold no outside address: left out of every answer.
    skip: Vec<usize>,
    done: BTreeMap<IdentityId, Outside>,
    /// The policies of each Antrea object (one per rule and appliedTo entry), computed on first use.
    antrea: Option<std::collections::HashMap<netpol_core::model::PolicyKey, Vec<netpol_core::model::PolicyId>>>,
}

impl<'a> OutsideCache<'a> {
    fn new(e: &'a Engine) -> Self {
        let segs = Segments::new(&[e]);
        let skip = (0..segs.len()).filter(|&i| segs.outside_address(i, &[e]).is_none()).collect();
        OutsideCache { e, segs, skip, done: BTreeMap::new(), antrea: None }
    }

    /// Per direction, the ports allowed with outside addresses and where (grouped from runs of segments, so a
    /// block with 45,000 `except` entries costs its runs, not a port set per segment).
    fn get(&mut self, ident: IdentityId) -> Outside {
        if let Some(o) = self.done.get(&ident) {
            return o.clone();
        }
        let side = |dir: Direction| -> Vec<OutsideRule> {
            allowed_groups(self.e, ident, dir, &self.segs, &self.skip)
                .into_iter()
                .map(|(p, addresses)| OutsideRule { ports: p.to_string(), addresses })
                .collect()
        };
        let o = Outside { egress: side(Direction::Egress), ingress: side(Direction::Ingress) };
        self.done.insert(ident, o.clone());
        o
    }
}

fn outside_text(rules: &[OutsideRule], to: bool) -> Vec<String> {
    if rules.is_empty() {
        return vec!["nothing".to_string()];
    }
    let word = if to { "to" } else { "from" };
    rules
        .iter()
        .map(|r| {
            let ports = if r.ports == "all" { "all ports" } else { r.ports.as_str() };
            format!("{ports} {word} {}", r.addresses.join(", "))
        })
        .collect()
}

#[derive(Serialize)]
struct PodInfo {
    pod: String,
    source: String,
    /// As in a manifest's `metadata.labels`: `{"app":"web"}`.
    labels: Labels,
    ips: Vec<String>,
    ports: Vec<String>,
    #[serde(rename = "hostNetwork")]
    host_network: bool,
    /// A hostNetwork pod at a Calico host endpoint's address: that host endpoint, whose policies its traffic meets.
    #[serde(rename = "hostEndpoint", skip_serializing_if = "Option::is_none")]
    host_endpoint: Option<String>,
    ingress: Side,
    egress: Side,
    /// Traffic with addresses outside the cluster (no pod has them): only this pod's side decides.
    outside: Outside,
    /// Cilium rules of the policies selecting the pod that carry L7 rules: requests on their ports are filtered
    /// (`ingress cnp/ns/name spec.ingress[0].toPorts[0]: HTTP method `GET``).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    l7: Vec<String>,
    /// The Antrea ClusterNetworkPolicies and NetworkPolicies that apply to the pod, each once with its rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    antrea: Vec<AntreaObject>,
}

fn info(e: &Engine, pod: PodId, cache: &mut OutsideCache) -> PodInfo {
    let p = e.cluster().pod(pod);
    let ident = e.identity_of(pod);
    let side = |dir: Direction| {
        let tiers: Vec<TierPolicies> = e
            .policies_by_tier(e.pod_identity(pod), dir)
            .into_iter()
            .map(|(tier, pols)| TierPolicies {
                tier: tier.to_string(),
                policies: pols
                    .iter()
                    .map(|&x| {
                        let p = e.cluster().policy(x);
                        match p.kind {
                            PolicyKind::NetworkPolicy => e.cluster().policy_ref(x),
                            PolicyKind::CalicoNetworkPolicy | PolicyKind::GlobalNetworkPolicy => {
                                format!("{} (order {})", e.cluster().policy_ref(x), p.order)
                            }
                            _ => format!("{} (priority {})", e.cluster().policy_ref(x), p.order),
                        }
                    })
                    .collect(),
            })
            .collect();
        // An Antrea or Cilium object lowers to several policies (an Antrea one per rule and appliedTo entry):
        // each object once, at its first place.
        let mut tiers = tiers;
        for t in &mut tiers {
            once(&mut t.policies);
        }
        let mut policies: Vec<String> =
            e.evaluation_order(ident.policies(dir)).iter().map(|&x| e.cluster().policy_ref(x)).collect();
        once(&mut policies);
        Side { isolated: e.isolated(e.pod_identity(pod), dir), policies, tiers }
    };
    PodInfo {
        pod: e.cluster().pod_ref(pod),
        source: p.source.kind.to_string(),
        labels: p.labels.clone(),
        ips: p.ips.iter().map(|i| i.to_string()).collect(),
        ports: p.ports.iter().map(|c| c.to_string()).collect(),
        host_network: p.host_network,
        host_endpoint: p
            .host_network
            .then(|| p.ips.iter().find_map(|&ip| e.host_endpoint_at(ip)).map(|h| h.name.clone()))
            .flatten(),
        ingress: side(Direction::Ingress),
        egress: side(Direction::Egress),
        outside: cache.get(e.pod_identity(pod)),
        l7: l7_rules(e, pod),
        antrea: antrea_objects(e, pod, cache),
    }
}

/// An appliedTo entry's members in words: `namespaceSelector `team=a`, podSelector `app=web``, `podSelector
/// `app=web`` in an ANNP (whose entries are in its namespace).
fn members_text(m: &netpol_core::model::Peer, own_ns: Option<&str>) -> String {
    let (namespaces, pods) = match m {
        netpol_core::model::Peer::Selectors { namespaces, pods } => (namespaces, pods),
        netpol_core::model::Peer::Calico(c) => {
            use netpol_core::calico_selector::Expr;
            use netpol_core::model::calico_keys::{NAMESPACE, SERVICE_ACCOUNT};
            // A `serviceAccount` entry: its namespace and name.
            if let Some(Expr::And(terms)) = &c.selector {
                if let [Expr::Eq { key: k1, value: ns }, Expr::Eq { key: k2, value: name }] = terms.as_slice() {
                    if k1 == NAMESPACE && k2 == SERVICE_ACCOUNT {
                        return format!("serviceAccount {ns}/{name}");
                    }
                }
            }
            return c.selector.as_ref().map_or_else(|| "pods".to_string(), |e| format!("selector `{e}`"));
        }
        _ => return "addresses".to_string(),
    };
    let shown = |field: &str, s: &Option<netpol_core::selector::Selector>| {
        s.as_ref().filter(|s| !s.requirements().is_empty()).map(|s| format!("{field} `{s}`"))
    };
    let namespaces = if own_ns.is_some() { &None } else { namespaces };
    let parts: Vec<String> =
        [shown("namespaceSelector", namespaces), shown("podSelector", pods)].into_iter().flatten().collect();
    let text = if parts.is_empty() { "all pods".to_string() } else { parts.join(", ") };
    match own_ns {
        Some(ns) => format!("{text} in namespace {ns}"),
        None => text,
    }
}

/// Keeps the first of equal entries, in order.
fn once(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|x| seen.insert(x.clone()));
}

/// An Antrea ClusterNetworkPolicy or NetworkPolicy that applies to a pod, as its object has it (the model's policies
/// it lowers to, one per rule and appliedTo entry, grouped back by kind, namespace and name).
#[derive(Serialize)]
struct AntreaObject {
    /// `acnp/name`, `annp/ns/name`.
    policy: String,
    tier: String,
    priority: String,
    /// The pods it applies to, per appliedTo entry (the policy's or its rules'), groups resolved:
    /// `spec.appliedTo[0]: namespaceSelector `team=a``, `spec.ingress[1].appliedTo[0]: group g (podSelector `app=x`)`.
    #[serde(rename = "appliedTo")]
    applied_to: Vec<String>,
    rules: Vec<AntreaRule>,
}

#[derive(Serialize)]
struct AntreaRule {
    /// `spec.ingress[0]`.
    rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// `Allow`, `Drop`, `Reject`, `Pass`.
    action: String,
    /// Whether the rule applies to this pod (its appliedTo, or the policy's, selects it).
    applies: bool,
    /// Its peers as the object has them (`from` or `to`; empty: every peer).
    peers: Vec<String>,
    /// Its ports (empty: every port).
    ports: Vec<String>,
}

/// The Antrea objects some rule of which applies to the pod, in evaluation order, each with all its rules.
fn antrea_objects(e: &Engine, pod: PodId, cache: &mut OutsideCache) -> Vec<AntreaObject> {
    use netpol_core::model::{PolicyId, Scope};
    let c = e.cluster();
    let ident = e.identity_of(pod);
    let mine: Vec<PolicyId> = ident.ingress_policies.iter().chain(&ident.egress_policies).copied().collect();
    let mut keys = Vec::new();
    for &x in &e.evaluation_order(&mine) {
        if !c.policy(x).kind.is_antrea() {
            continue;
        }
        let k = c.policy_key(x);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    if keys.is_empty() {
        return Vec::new();
    }
    let objects = cache.antrea.get_or_insert_with(|| {
        let mut m: std::collections::HashMap<_, Vec<PolicyId>> = std::collections::HashMap::new();
        for x in (0..c.policies.len()).map(PolicyId::new).filter(|&x| c.policy(x).kind.is_antrea()) {
            m.entry(c.policy_key(x)).or_default().push(x);
        }
        m
    });
    keys.into_iter()
        .map(|key| {
            let splits: Vec<PolicyId> = objects.get(&key).cloned().unwrap_or_default();
            let first = c.policy(splits[0]);
            // The appliedTo entries as the loader read them (the policy's and its rules', groups named); only when
            // there are none (service accounts), the subjects of the policies the object lowers to.
            let mut applied_to: Vec<String> = c
                .antrea_refs
                .iter()
                .filter(|r| r.applied_to && r.policy == key)
                .map(|r| {
                    let own = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
                    let members: Vec<String> = r.members.iter().map(|m| members_text(m, own)).collect();
                    let members = if members.is_empty() { "no pod".to_string() } else { members.join("; ") };
                    match &r.group {
                        Some(g) => format!("{}: group {g} ({members})", r.field),
                        None => format!("{}: {members}", r.field),
                    }
                })
                .collect();
            let written = !applied_to.is_empty();
            let mut rules: BTreeMap<(Direction, u32), AntreaRule> = BTreeMap::new();
            for &x in &splits {
                let p = c.policy(x);
                let pods = |s: &netpol_core::selector::Selector| match s.requirements().is_empty() {
                    true => "all pods".to_string(),
                    false => format!("podSelector `{s}`"),
                };
                let subject = match (&p.calico_selector, &p.scope) {
                    (Some(expr), _) if p.ns().is_none() => format!("selector `{expr}`"),
                    (Some(expr), Scope::Namespace(ns)) => format!("selector `{expr}` in namespace {}", c.ns_name(*ns)),
                    (None, Scope::Namespace(ns)) => {
                        format!("{} in namespace {}", pods(&p.pod_selector), c.ns_name(*ns))
                    }
                    (_, Scope::Cluster(nss)) if nss.requirements().is_empty() => pods(&p.pod_selector),
                    (_, Scope::Cluster(nss)) if p.pod_selector.requirements().is_empty() => {
                        format!("namespaceSelector `{nss}`")
                    }
                    (_, Scope::Cluster(nss)) => format!("namespaceSelector `{nss}`, {}", pods(&p.pod_selector)),
                };
                if !written && !applied_to.contains(&subject) {
                    applied_to.push(subject);
                }
                let dir = if p.affects_ingress { Direction::Ingress } else { Direction::Egress };
                let Some(r) = p.rules(dir).first() else { continue };
                let entry = rules.entry((dir, p.position)).or_insert_with(|| {
                    let (peers, ports) =
                        netpol_core::load::antrea_rule_words(c, &key, dir, p.position).unwrap_or_default();
                    AntreaRule {
                        rule: format!("spec.{}[{}]", dir.as_str(), p.position),
                        name: r.name.clone(),
                        action: netpol_core::lint::action_word(p.kind, r.action).to_string(),
                        applies: false,
                        peers,
                        ports,
                    }
                });
                entry.applies |= mine.contains(&x);
            }
            let tier = e.tier_list()[e.policy_tier(splits[0]).index()].name.to_string();
            AntreaObject {
                policy: key.to_string(),
                tier,
                priority: first.order.to_string(),
                applied_to,
                rules: rules.into_values().collect(),
            }
        })
        .collect()
}

/// The L7 rules of the Cilium rules that apply to a pod, one line each.
fn l7_rules(e: &Engine, pod: PodId) -> Vec<String> {
    let ident = e.identity_of(pod);
    let mut out = Vec::new();
    for dir in [Direction::Ingress, Direction::Egress] {
        for &x in ident.policies(dir) {
            let p = e.cluster().policy(x);
            for r in p.rules(dir).iter() {
                if let (Some(l7), Some(name)) = (&r.l7, &r.name) {
                    let ports: Vec<String> = r.ports.iter().map(|p| p.to_string()).collect();
                    out.push(format!(
                        "{dir} {} {name} (ports {}): {l7}",
                        e.cluster().policy_ref(x),
                        if ports.is_empty() { "all".to_string() } else { ports.join(", ") }
                    ));
                }
            }
        }
    }
    out
}

fn side_text(s: &Side, i: &PodInfo) -> String {
    if let Some(h) = &i.host_endpoint {
        format!("not subject (hostNetwork): host endpoint {h}")
    } else if i.host_network {
        "not subject (hostNetwork)".to_string()
    } else if s.tiers.iter().all(|t| t.tier == "NetworkPolicy") {
        if s.isolated {
            format!("isolated by {}", s.policies.join(", "))
        } else {
            "not isolated".to_string()
        }
    } else {
        let tiers: Vec<String> = s
            .tiers
            .iter()
            .map(|t| match t.tier.as_str() {
                "NetworkPolicy" => format!("[NetworkPolicy] isolated by {}", t.policies.join(", ")),
                tier => format!("[{tier}] {}", t.policies.join(", ")),
            })
            .collect();
        let np = if s.isolated { "" } else { "; no NetworkPolicy selects it" };
        format!("{}{np}", tiers.join("; "))
    }
}

pub fn run(
    e: &Engine,
    pod: Option<&str>,
    ns: Option<&str>,
    output: TableOrJson,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let pods: Vec<PodId> = match pod {
        Some(name) => {
            let (pns, pname) = name.split_once('/').unwrap_or((ns.unwrap_or("default"), name));
            let id = e.cluster().find_pod(pns, pname).ok_or_else(|| anyhow::anyhow!("unknown pod `{pns}/{pname}`"))?;
            vec![id]
        }
        None => e
            .sorted_pods()
            .into_iter()
            .filter(|&p| ns.is_none_or(|n| e.cluster().ns_name(e.cluster().pod(p).ns) == n))
            .collect(),
    };
    let mut cache = OutsideCache::new(e);
    let infos: Vec<PodInfo> = pods.iter().map(|&p| info(e, p, &mut cache)).collect();
    if output == TableOrJson::Table {
        writeln!(out, "{}", netpol_input::cni_header(e))?;
    }
    match output {
        TableOrJson::Json => {
            let doc = serde_json::json!({"cni": netpol_input::cni_json(e), "pods": infos});
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?
        }
        TableOrJson::Table if pod.is_some() => {
            for i in &infos {
                writeln!(out, "Pod:      {} ({})", i.pod, i.source)?;
                writeln!(out, "Labels:   {}", format_labels(&i.labels))?;
                writeln!(out, "IPs:      {}", if i.ips.is_empty() { "<none>".into() } else { i.ips.join(", ") })?;
                writeln!(out, "Ports:    {}", if i.ports.is_empty() { "<none>".into() } else { i.ports.join(", ") })?;
                writeln!(out, "Ingress:  {}", side_text(&i.ingress, i))?;
                writeln!(out, "Egress:   {}", side_text(&i.egress, i))?;
                if !i.l7.is_empty() {
                    writeln!(out, "L7 (Cilium's proxies filter the requests on these ports):")?;
                    for line in &i.l7 {
                        writeln!(out, "  {line}")?;
                    }
                }
                if !i.antrea.is_empty() {
                    writeln!(out, "Antrea policies (in evaluation order; * the rules that apply to this pod):")?;
                    for a in &i.antrea {
                        writeln!(out, "  {} (tier {}, priority {})", a.policy, a.tier, a.priority)?;
                        writeln!(out, "    appliedTo: {}", a.applied_to.join("; "))?;
                        for r in &a.rules {
                            let name = r.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
                            let mark = if r.applies { "*" } else { " " };
                            let peers = if r.peers.is_empty() { "any peer".to_string() } else { r.peers.join("; ") };
                            let ports = if r.ports.is_empty() { "any port".to_string() } else { r.ports.join(", ") };
                            let dir = if r.rule.contains("ingress") { "from" } else { "to" };
                            writeln!(out, "    {mark} {}{name}: {}, {dir} {peers}, {ports}", r.rule, r.action)?;
                        }
                    }
                }
                writeln!(out, "Outside the cluster (addresses no pod has):")?;
                for (title, rules, to) in [("egress", &i.outside.egress, true), ("ingress", &i.outside.ingress, false)]
                {
                    for (k, line) in outside_text(rules, to).into_iter().enumerate() {
                        writeln!(out, "  {:<9} {line}", if k == 0 { title } else { "" })?;
                    }
                }
            }
        }
        TableOrJson::Table => {
            let w = infos.iter().map(|i| i.pod.len()).max().unwrap_or(3).max(3);
            writeln!(out, "{:<w$}  {:<40}  EGRESS", "POD", "INGRESS")?;
            for i in &infos {
                writeln!(out, "{:<w$}  {:<40}  {}", i.pod, side_text(&i.ingress, i), side_text(&i.egress, i))?;
            }
            if ns.is_none() && !e.cluster().host_endpoints.is_empty() {
                host_endpoints_table(e, out)?;
            }
            if ns.is_none() && e.has_cilium_hosts() {
                cilium_hosts_table(e, out)?;
            }
        }
    }
    Ok(())
}

/// The Nodes that Cilium's host policies select (`nodeSelector`): addresses and host policies per direction.
fn cilium_hosts_table(e: &Engine, out: &mut dyn Write) -> anyhow::Result<()> {
    let c = e.cluster();
    let rows: Vec<[String; 3]> = e
        .cilium_hosts()
        .into_iter()
        .map(|(node, addrs, pols)| {
            let addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            let mut dirs = Vec::new();
            for (dir, list) in [Direction::Ingress, Direction::Egress].into_iter().zip(pols) {
                if !list.is_empty() {
                    let refs: Vec<String> = list.iter().map(|&p| c.policy_ref(p)).collect();
                    dirs.push(format!("{dir}: {}", refs.join(", ")));
                }
            }
            [node, if addrs.is_empty() { "<none>".into() } else { addrs.join(", ") }, dirs.join("; ")]
        })
        .collect();
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max("NODE (CILIUM HOST)".len());
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0).max("ADDRESSES".len());
    writeln!(out)?;
    writeln!(out, "{:<w0$}  {:<w1$}  HOST POLICIES", "NODE (CILIUM HOST)", "ADDRESSES")?;
    for [node, addrs, pols] in rows {
        writeln!(out, "{node:<w0$}  {addrs:<w1$}  {pols}")?;
    }
    Ok(())
}

/// The Calico host endpoints, by name: node, addresses, and the GlobalNetworkPolicies of each stage (untracked,
/// pre-DNAT, normal, forward) per direction, in evaluation order.
fn host_endpoints_table(e: &Engine, out: &mut dyn Write) -> anyhow::Result<()> {
    use netpol_core::host::Stage;
    let c = e.cluster();
    let mut rows: Vec<[String; 4]> = c
        .host_endpoints
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let addrs: Vec<String> = e.host_endpoint_addresses(h).iter().map(|a| a.to_string()).collect();
            let mut stages = Vec::new();
            for stage in Stage::ALL {
                for dir in [Direction::Ingress, Direction::Egress] {
                    let pols = e.host_endpoint_policies(i, stage, dir);
                    if !pols.is_empty() {
                        let refs: Vec<String> = pols.iter().map(|&p| c.policy_ref(p)).collect();
                        stages.push(format!("{} {dir}: {}", stage.as_str(), refs.join(", ")));
                    }
                }
            }
            let node = match h.interface.as_deref() {
                Some("*") => format!("{} (all interfaces)", h.node),
                Some(i) => format!("{} ({i})", h.node),
                None => h.node.clone(),
            };
            [
                h.name.clone(),
                node,
                if addrs.is_empty() { "<none>".into() } else { addrs.join(", ") },
                if stages.is_empty() { "no policy".into() } else { stages.join("; ") },
            ]
        })
        .collect();
    rows.sort();
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max("HOST ENDPOINT".len());
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0).max("NODE".len());
    let w2 = rows.iter().map(|r| r[2].len()).max().unwrap_or(0).max("ADDRESSES".len());
    writeln!(out)?;
    writeln!(out, "{:<w0$}  {:<w1$}  {:<w2$}  POLICIES", "HOST ENDPOINT", "NODE", "ADDRESSES")?;
    for [name, node, addrs, pols] in rows {
        writeln!(out, "{name:<w0$}  {node:<w1$}  {addrs:<w2$}  {pols}")?;
    }
    Ok(())
}
