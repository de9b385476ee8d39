//! NP023 cilium-fqdn-without-dns.
//!
//! **What it finds**: a `toFQDNs` entry of a Cilium egress rule whose names the selected pods' own egress
//! policies never let Cilium's DNS proxy see: no allow rule of those pods has a `rules.dns` entry allowing them.
//! A `matchName` is covered when one of the pods' DNS rules matches the name; a `matchPattern` when one of their
//! DNS patterns covers every name it matches (`*`, the same pattern, or a broader one such as `*.example.com` for
//! `api-*.example.com`). One finding per uncovered entry, naming the pods it is uncovered for. A host policy's
//! (`nodeSelector`) entry is judged for the hosts of the Nodes it applies to, against their egress host policies'
//! DNS rules (the docs' *Host Policies*: host policies may have DNS rules, and then the host's queries go through
//! the proxy); the finding names those Nodes.
//! **Why it is bad**: Cilium learns the addresses a `toFQDNs` peer stands for only from the DNS answers its proxy
//! sees, and the proxy sees (and answers) a pod's query only when one of the pod's egress rules with `rules.dns`
//! allows the name. Without one the rule allows nothing: the connections the author meant to allow are dropped.
//! **Instead**: allow DNS to the cluster's DNS server with DNS rules, e.g. `toPorts: [{ports: [{port: "53",
//! protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]`, in a policy selecting the same pods.
//!
//! Whether the DNS server itself is reachable is the DNS flow's own question (NP003, `explain`). A pattern's
//! coverage is judged on sample names of the pattern (each run of `*` filled with a long and a one-character text, a
//! leading `**.` with one and two labels), which is exact for the patterns Cilium's syntax allows in practice.

use std::collections::HashSet;

use super::cilium::{is_cilium, rule_field};
use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::IdentityId;
use crate::l7::DnsPattern;
use crate::model::{Action, Direction, Peer, PolicyId};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP023",
    name: "cilium-fqdn-without-dns",
    severity: Severity::Warning,
    explanation: "A toFQDNs entry selects names that no rules.dns entry of the selected pods' egress policies allows. \
                  Cilium learns the addresses behind a toFQDNs peer only from DNS answers its proxy sees, and the \
                  proxy sees a pod's query only when one of the pod's egress rules with DNS rules allows the name: \
                  without one, the toFQDNs rule allows nothing.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    for (pid, pol) in c.policies.iter().enumerate().filter(|(_, p)| is_cilium(p)) {
        let pol_id = PolicyId::new(pid);
        // A rule with L7 rules is several model rules with the same peers: judge its toFQDNs once.
        let mut seen = HashSet::new();
        for &rid in e.policy_rules(pol_id, Direction::Egress) {
            let cr = &e.rules[rid.index()];
            let Some(rule) = pol.egress.get(cr.index as usize) else { continue };
            let Some(base) = rule_field(rule) else { continue };
            if rule.action != Action::Allow || !seen.insert(base.to_string()) {
                continue;
            }
            let Some(sels) = rule.peers.iter().find_map(|p| if let Peer::Fqdns(s) = p { Some(s) } else { None }) else {
                continue;
            };
            // The subjects: the pods' identities, or for a host policy the hosts of the Nodes it applies to
            // (their DNS queries go through the proxy when their own host policies have DNS rules).
            let (pods, hosts) = if pol.host.cilium_host {
                (Vec::new(), e.cilium_egress_hosts(pol_id))
            } else {
                (ctx.subjects_of(pol_id, Direction::Egress, rid), Vec::new())
            };
            if pods.is_empty() && hosts.is_empty() {
                continue;
            }
            for (k, sel) in sels.iter().enumerate() {
                let uncovered_by = |rules: &[crate::compile::RuleId]| {
                    if sel.match_pattern.is_empty() {
                        !e.rules_learn(rules, &sel.match_name)
                    } else {
                        !dns_patterns(ctx, rules).any(|p| covers(p, &sel.match_pattern))
                    }
                };
                let uncovered: Vec<IdentityId> =
                    pods.iter().copied().filter(|&i| uncovered_by(&e.identities[i.index()].egress_rules)).collect();
                let uncovered_hosts: Vec<String> =
                    hosts.iter().filter(|(_, rules)| uncovered_by(rules)).map(|(n, _)| n.to_string()).collect();
                if uncovered.is_empty() && uncovered_hosts.is_empty() {
                    continue;
                }
                let (what, verb) = if sel.match_pattern.is_empty() {
                    ("the name", "allows it")
                } else {
                    ("the names", "allows all of them")
                };
                let of = if !hosts.is_empty() {
                    let all = uncovered_hosts.len() == hosts.len();
                    let nodes = Ctx::name_list(uncovered_hosts, 3);
                    if all {
                        format!("the hosts it applies to (Nodes {nodes})")
                    } else {
                        format!("the hosts of Nodes {nodes} (of those it applies to)")
                    }
                } else if uncovered.len() == pods.len() {
                    format!("the pods it applies to ({})", ctx.pod_list(&uncovered, 3))
                } else {
                    format!("{} (of the pods it applies to)", ctx.pod_list(&uncovered, 3))
                };
                let msg = format!(
                    "toFQDNs {sel}: no rules.dns entry of the egress policies of {of} {verb}; Cilium never learns \
                     the addresses of {what}, so this rule allows nothing for them"
                );
                out.push(ctx.policy_finding(
                    &RULE,
                    pol_id,
                    Some(format!("{base}.toFQDNs[{k}]")),
                    msg,
                    "allow DNS to the cluster's DNS server with DNS rules in a policy selecting the same pods, e.g. \
                     toPorts: [{ports: [{port: \"53\", protocol: ANY}], rules: {dns: [{matchPattern: \"*\"}]}}]",
                ));
            }
        }
    }
}

/// The `rules.dns` patterns of the allow rules among `rules` (an identity's or a host's egress rules): what the DNS
/// proxy lets through for it.
fn dns_patterns<'a>(ctx: &'a Ctx, rules: &'a [crate::compile::RuleId]) -> impl Iterator<Item = &'a DnsPattern> + 'a {
    let e = ctx.engine;
    rules.iter().flat_map(move |r| {
        let rule = &e.rules[r.index()];
        let l7 = rule.l7.filter(|_| rule.action == Action::Allow).map(|l| e.l7_rules(l));
        l7.into_iter().flat_map(|l| l.dns.iter())
    })
}

/// Whether DNS rule pattern `p` allows every name `toFQDNs` pattern `q` matches (see the module documentation).
fn covers(p: &DnsPattern, q: &str) -> bool {
    let q = q.trim();
    if q.chars().all(|c| c == '*') {
        return p.is_pattern() && p.as_str().trim().chars().all(|c| c == '*');
    }
    if !q.contains('*') {
        return p.matches(q);
    }
    samples(q).iter().all(|s| p.matches(s))
}

/// Names pattern `q` matches: each run of `*` filled with a long and a one-character text; a leading `**.` (one or more
/// whole labels) with one label and with two.
fn samples(q: &str) -> Vec<String> {
    const LABEL: &str = "zq9x";
    let unstarred = q.trim_start_matches('*');
    let (heads, rest) = match unstarred.strip_prefix('.') {
        Some(rest) if q.len() - unstarred.len() >= 2 => (vec![format!("{LABEL}."), format!("{LABEL}.yr8w.")], rest),
        _ => (vec![String::new()], q),
    };
    let fill = |with: &str| {
        let mut s = String::new();
        let mut star = false;
        for c in rest.chars() {
            if c == '*' {
                if !star {
                    s.push_str(with);
                }
                star = true;
            } else {
                s.push(c);
                star = false;
            }
        }
        s
    };
    heads.iter().flat_map(|h| [format!("{h}{}", fill(LABEL)), format!("{h}{}", fill("q"))]).collect()
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::super::cilium::cnp;
    use super::super::testutil::{run, with};
    use super::{covers, RULE};
    use crate::l7::DnsPattern;

    const FQDN: &str = "  endpointSelector: {matchLabels: {app: web}}\n  egress:\n  - toFQDNs: [{matchName: api.example.com}, {matchPattern: '*.example.org'}]\n    toPorts: [{ports: [{port: '443', protocol: TCP}]}]\n";

    fn dns(rules: &str) -> String {
        format!(
            "  endpointSelector: {{matchLabels: {{app: web}}}}\n  egress:\n  - toEndpoints: [{{matchLabels: {{io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}}}]\n    toPorts: [{{ports: [{{port: '53', protocol: ANY}}], rules: {{dns: [{rules}]}}}}]\n"
        )
    }

    #[test]
    fn without_dns_rules_every_entry_is_uncovered() {
        let f = run(&RULE, &with(&cnp("a", "ext", FQDN)));
        let fields: Vec<_> = f.iter().map(|f| f.field.as_deref().unwrap_or_default()).collect();
        assert_eq!(fields, ["spec.egress[0].toFQDNs[0]", "spec.egress[0].toFQDNs[1]"], "{f:?}");
        assert_eq!(f[0].object, "CiliumNetworkPolicy a/ext");
        assert!(f[0].message.starts_with("toFQDNs matchName api.example.com: no rules.dns entry"), "{}", f[0].message);
        assert!(f[0].message.contains("a/web"), "{}", f[0].message);
        assert!(f[1].message.starts_with("toFQDNs matchPattern *.example.org"), "{}", f[1].message);
    }

    /// DNS rules elsewhere (another policy of the same pods) that allow only other names leave the entries
    /// uncovered; a narrower pattern does not cover a broader one.
    #[test]
    fn dns_rules_for_other_names() {
        let yaml = with(&format!(
            "{}\n---\n{}",
            cnp("a", "ext", FQDN),
            cnp("a", "dns", &dns("{matchName: other.example.com}, {matchPattern: 'api.*.example.org'}"))
        ));
        let f = run(&RULE, &yaml);
        assert_eq!(f.len(), 2, "{f:?}");
    }

    /// A host policy's toFQDNs: judged against the DNS rules of the host policies of the Nodes it applies to.
    #[test]
    fn host_policies_are_judged_for_their_nodes() {
        let nodes = "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {role: edge}}\nstatus: {addresses: [{type: InternalIP, address: 10.1.0.1}]}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n2}\nstatus: {addresses: [{type: InternalIP, address: 10.1.0.2}]}\n---\n";
        let host = |name: &str, selector: &str, egress: &str| {
            format!("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  nodeSelector: {selector}\n  egress:\n{egress}---\n")
        };
        let fqdn =
            "  - toFQDNs: [{matchName: api.example.com}]\n    toPorts: [{ports: [{port: '443', protocol: TCP}]}]\n";
        let dns = "  - toEntities: [cluster]\n    toPorts: [{ports: [{port: '53', protocol: UDP}], rules: {dns: [{matchPattern: '*.example.com'}]}}]\n";
        // Every Node, none with DNS rules: both named.
        let f = run(&RULE, &with(&format!("{nodes}{}", host("ext", "{}", fqdn))));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "CiliumClusterwideNetworkPolicy ext");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0].toFQDNs[0]"));
        assert!(f[0].message.contains("the hosts it applies to (Nodes n1, n2)"), "{}", f[0].message);
        // DNS rules in a host policy of n1 only: n2 is still uncovered.
        let yaml = format!("{nodes}{}{}", host("ext", "{}", fqdn), host("dns", "{matchLabels: {role: edge}}", dns));
        let f = run(&RULE, &with(&yaml));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("the hosts of Nodes n2 (of those it applies to)"), "{}", f[0].message);
        // For every Node: quiet. Pods' DNS rules do not count for hosts.
        let yaml = format!("{nodes}{}{}", host("ext", "{}", fqdn), host("dns", "{}", dns));
        assert!(run(&RULE, &with(&yaml)).is_empty());
        let pods_dns = cnp("a", "dns", &dns_rules_for_pods());
        let yaml = format!("{nodes}{}{pods_dns}", host("ext", "{}", fqdn));
        assert_eq!(run(&RULE, &with(&yaml)).len(), 1);
    }

    fn dns_rules_for_pods() -> String {
        dns("{matchPattern: '*'}").replace("{matchLabels: {app: web}}", "{}")
    }

    #[test]
    fn covered_names_and_patterns_are_quiet() {
        for rules in [
            "{matchPattern: '*'}",
            "{matchName: API.example.com.}, {matchPattern: '*.example.org'}",
            "{matchPattern: '*.example.com'}, {matchPattern: '**.example.org'}",
        ] {
            let yaml = with(&format!("{}\n---\n{}", cnp("a", "ext", FQDN), cnp("a", "dns", &dns(rules))));
            let f = run(&RULE, &yaml);
            assert!(f.is_empty(), "{rules}: {f:?}");
        }
    }

    /// Only the pods without DNS rules are named; DNS rules of pods the toFQDNs rule does not apply to do not count.
    #[test]
    fn coverage_is_per_pod() {
        let ext = "  endpointSelector: {}\n  egress:\n  - toFQDNs: [{matchName: api.example.com}]\n";
        let yaml = with(&format!("{}\n---\n{}", cnp("a", "ext", ext), cnp("a", "dns", &dns("{matchPattern: '*'}"))));
        let f = run(&RULE, &yaml);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("a/db (of the pods it applies to)"), "{}", f[0].message);
        assert!(!f[0].message.contains("a/web"), "{}", f[0].message);
    }

    /// A toFQDNs rule with HTTP rules on one of its ports is several model rules: one finding per entry.
    #[test]
    fn a_rule_with_l7_rules_is_judged_once() {
        let ext = "  endpointSelector: {matchLabels: {app: web}}\n  egress:\n  - toFQDNs: [{matchPattern: '*.example.com'}]\n    toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n      rules: {http: [{method: GET}]}\n    - ports: [{port: '443', protocol: TCP}]\n";
        let f = run(&RULE, &with(&cnp("a", "ext", ext)));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0].toFQDNs[0]"));
        let yaml = with(&format!(
            "{}\n---\n{}",
            cnp("a", "ext", ext),
            cnp("a", "dns", &dns("{matchPattern: '*.com'}, {matchPattern: '*.example.com'}"))
        ));
        assert!(run(&RULE, &yaml).is_empty());
    }

    #[test]
    fn pattern_coverage() {
        let p = |s: &str| DnsPattern::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let n = |s: &str| DnsPattern::parse_name(s).unwrap_or_else(|e| panic!("{e}"));
        assert!(covers(&p("*"), "*"));
        assert!(covers(&p("*"), "*.example.com"));
        assert!(!covers(&p("*.com"), "*"));
        assert!(covers(&p("*.example.com"), "*.example.com"));
        assert!(covers(&p("*.example.com"), "api-*.example.com"));
        assert!(!covers(&p("api-*.example.com"), "*.example.com"));
        assert!(!covers(&p("*.com"), "*.example.com"));
        assert!(covers(&p("**.example.com"), "*.example.com"));
        assert!(covers(&p("**.example.com"), "**.example.com"));
        assert!(!covers(&p("*.example.com"), "**.example.com"));
        assert!(!covers(&n("api.example.com"), "*.example.com"));
        assert!(covers(&n("api.example.com"), "api.example.com"));
    }
}
