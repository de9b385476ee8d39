//! NP002 peer-matches-nothing.
//!
//! **What it finds**: a `from`/`to` peer whose selectors can match no pod: a namespaceSelector matching no
//! namespace, a podSelector matching no pod of the policy's namespace, or a namespaceSelector + podSelector in one
//! peer (AND) whose combination is empty although each selector alone matches pods.
//! **Why it is bad**: the rule allows nothing the author intended; the AND/OR confusion comes from YAML dash
//! placement (`- namespaceSelector: ... podSelector: ...` is one peer; two dashes are two peers).
//! **Instead**: fix the labels, or split the peer in two (`- podSelector:` on its own dash) if OR was meant.
//!
//! Calico rules: a side's selector (`selector`, `namespaceSelector` and `serviceAccounts`, combined as Calico
//! combines them, limited to the policy's own namespace when it has no `namespaceSelector`) that matches no pod
//! and no network set, so the rule matches nothing; a `notSelector` that matches nothing, so it excludes nothing;
//! and a selector on the subject's own side (`destination` of an ingress rule, `source` of an egress rule) that
//! matches none of the pods the policy selects, so the rule applies to none. The term that can never hold is
//! named with the closest label key or value the input's endpoints carry ("did you mean `app`?"). As for
//! NetworkPolicy, a selector of namespaces the input does not show, or of namespaces without pods or network sets
//! in the input, is not judged.
//!
//! Antrea rules: a peer's ClusterGroup or Group (`spec.ingress[0].from[1]`) that matches no pod and no address, or
//! does not exist, once per peer of the object; the rules' other selector peers as NetworkPolicy's (an ACNP's
//! `podSelector` looks in every namespace), named by the object's rule (`spec.ingress[1].from`).

use super::antrea;
use super::calico::{self, Seen, Universe};
use super::{Ctx, Finding, RuleInfo, Severity};
use crate::compile::CPeer;
use crate::model::{Direction, NsId, Peer, PolicyId};

pub static RULE: RuleInfo = RuleInfo {
    code: "NP002",
    name: "peer-matches-nothing",
    severity: Severity::Warning,
    explanation: "A peer of a rule can match no pod: its namespaceSelector matches no namespace, its podSelector \
                  matches no pod of the namespaces it looks in, or the namespaceSelector and podSelector of one peer \
                  (which are ANDed) have no pod in common. The rule then allows nothing from that peer; with both \
                  selectors in one peer this is often a dash-placement mistake where two peers (OR) were meant. An \
                  Antrea peer's ClusterGroup or Group that matches no pod and no address, or does not exist, matches \
                  nothing.",
    check,
};

fn check(ctx: &Ctx, out: &mut Vec<Finding>) {
    calico_sides(ctx, out);
    antrea_groups(ctx, out);
    let c = &ctx.engine.cluster;
    // Antrea: the peers each object rule has from its groups (judged as groups, above), by object and rule path.
    let mut from_groups: std::collections::HashMap<(crate::model::PolicyKey, String), Vec<&Peer>> = Default::default();
    for r in c.antrea_refs.iter().filter(|r| !r.applied_to) {
        let rule = r.field.split_once("].").map_or(r.field.as_str(), |(rule, _)| rule);
        from_groups.entry((r.policy.clone(), format!("{rule}]"))).or_default().extend(&r.members);
    }
    for at in ctx.peers() {
        let (pid, pol, dir, ri, pi, peer) = (at.policy.index(), at.pol, at.dir, at.rule, at.peer, at.value);
        let Peer::Selectors { namespaces, pods } = peer else { continue };
        if pol.kind.is_antrea() {
            let key = (c.policy_key(at.policy), Ctx::rule_field(pol, dir, ri));
            if from_groups.get(&key).is_some_and(|g| g.contains(&peer)) {
                continue;
            }
        }
        let nss: Vec<NsId> = match namespaces {
            None => pol.ns().into_iter().collect(),
            Some(sel) => (0..c.namespaces.len()).map(NsId::new).filter(|&n| sel.matches(&c.ns(n).labels)).collect(),
        };
        let path = Some(Ctx::peer_path(dir, ri, pi));
        if nss.is_empty() {
            // A selector that only names namespaces absent from the input says nothing about the
            // cluster (the input may be one team's manifests).
            let only_names = namespaces.as_ref().is_some_and(|s| {
                !s.requirements().is_empty()
                    && s.requirements().iter().all(|r| r.key() == crate::load::NAMESPACE_NAME_LABEL)
            });
            if only_names {
                continue;
            }
            let sel = namespaces.as_ref().map(|s| s.to_string()).unwrap_or_default();
            let msg = format!("{} `{sel}` matches no namespace", ns_field(pol, peer));
            out.push(ctx.policy_finding(
                &RULE,
                PolicyId::new(pid),
                path,
                msg,
                "check the namespace labels (`kubectl get ns --show-labels`)",
            ));
            continue;
        }
        let pod_ok = |p: &crate::model::Pod| !p.host_network && pods.as_ref().is_none_or(|s| s.matches(&p.labels));
        let matched = c.pods.iter().any(|p| nss.contains(&p.ns) && pod_ok(p));
        // Without any pod of those namespaces in the input there is nothing to judge.
        let visible = c.pods.iter().any(|p| nss.contains(&p.ns));
        if matched || !visible {
            continue;
        }
        let Some(psel) = pods else { continue };
        let elsewhere: Vec<String> = c
            .pods
            .iter()
            .filter(|p| !nss.contains(&p.ns) && pod_ok(p))
            .map(|p| c.ns_name(p.ns).to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let (msg, help) = match namespaces {
            // The admin kinds' `pods` peer: both selectors in one object, ANDed by definition.
            Some(nsel) if pol.kind.is_antrea() && pol.ns().is_none() => (
                format!("no pod matches this peer (namespaceSelector `{nsel}`, podSelector `{psel}`)"),
                "check the labels of the pods in the selected namespaces".to_string(),
            ),
            Some(nsel) if pol.ns().is_none() => (
                format!("no pod matches this `pods` peer (namespaceSelector `{nsel}`, podSelector `{psel}`)"),
                "check the labels of the pods in the selected namespaces".to_string(),
            ),
            Some(nsel) => {
                let ns_has_pods = c.pods.iter().any(|p| nss.contains(&p.ns) && !p.host_network);
                let help = if ns_has_pods && !elsewhere.is_empty() {
                    format!(
                        "did you mean two peers? (dash placement) `namespaceSelector` and `podSelector` in \
                                     one peer are ANDed; pods with `{psel}` exist only in {}",
                        elsewhere.join(", ")
                    )
                } else {
                    "check the labels of the pods in the selected namespaces".to_string()
                };
                (format!("no pod matches podSelector `{psel}` AND namespaceSelector `{nsel}` (one peer)"), help)
            }
            None => {
                let help = if elsewhere.is_empty() {
                    "check the pod labels".to_string()
                } else {
                    format!(
                        "pods with these labels exist in {}; a podSelector alone only looks in the policy's \
                                     namespace — add a namespaceSelector",
                        elsewhere.join(", ")
                    )
                };
                (
                    format!(
                        "podSelector `{psel}` matches no pod in namespace {}",
                        pol.ns().map_or("", |ns| c.ns_name(ns))
                    ),
                    help,
                )
            }
        };
        out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), path, msg, help));
    }
}

/// Antrea: a peer's ClusterGroup or Group that matches no pod and no address, or does not exist (Antrea admits
/// the reference: the peer matches nothing until the group is created); once per peer of the object.
fn antrea_groups(ctx: &Ctx, out: &mut Vec<Finding>) {
    let c = &ctx.engine.cluster;
    for r in c.antrea_refs.iter().filter(|r| !r.applied_to) {
        let Some(g) = &r.group else { continue };
        if antrea::members_match(c, &r.members) != antrea::Matches::Nothing {
            continue;
        }
        let kind = antrea::group_kind(r);
        let (msg, help) = if r.exists {
            (
                format!("{kind} `{g}` matches no pod and no address: this peer matches nothing"),
                "check the group's selectors against the pod and namespace labels (`kubectl get pods -A \
                 --show-labels`)",
            )
        } else {
            (
                format!(
                    "{kind} `{g}` does not exist: this peer matches nothing (Antrea admits the reference, and the \
                     rule applies to the group's members once it is created)"
                ),
                "create the group, or fix its name",
            )
        };
        out.push(antrea::finding(&RULE, r, msg, help));
    }
}

/// Calico rules: each side's selectors, judged on what the engine compiled them to.
fn calico_sides(ctx: &Ctx, out: &mut Vec<Finding>) {
    let e = ctx.engine;
    let c = &e.cluster;
    let mut universe: Option<Universe> = None;
    for (pid, pol) in c.policies.iter().enumerate().filter(|(_, p)| calico::is_calico(p)) {
        let own = pol.ns().map(|ns| c.ns_name(ns));
        for dir in [Direction::Ingress, Direction::Egress] {
            for &rid in e.policy_rules(PolicyId::new(pid), dir) {
                let rule = &e.rules[rid.index()];
                let ri = rule.index as usize;
                let u = universe.get_or_insert_with(|| Universe::new(ctx, Seen::RuleSide));
                let remote = rule.peers.iter().find_map(|p| if let CPeer::Calico(id) = *p { Some(id) } else { None });
                if let Some(cc) = remote.map(|id| e.calico_peer_of(id)) {
                    let base = calico::side_path(dir, ri, true);
                    let side = calico::side_name(dir, true);
                    if let (Some(sel), Some(m)) = (&cc.peer.selector, &cc.sel) {
                        if m.idents.is_empty() && m.sets.is_empty() && m.heps.is_empty() {
                            if let Some(f) = nothing_matched(ctx, u, pid, sel, own, &base, side) {
                                out.push(f);
                            }
                        }
                    }
                    if let (Some(sel), Some(m)) = (&cc.peer.not_selector, &cc.not_sel) {
                        let visible = c.pods.iter().any(|p| !p.host_network) || !c.network_sets.is_empty();
                        if m.idents.is_empty() && m.sets.is_empty() && m.heps.is_empty() && visible {
                            let (field, help) = match calico::blame(ctx, u, sel) {
                                Some(b) => (format!("{base}.notSelector"), b.help),
                                None => (
                                    format!("{base}.notSelector"),
                                    "check the labels of the pods and network sets".into(),
                                ),
                            };
                            let msg = format!(
                                "the {side}'s notSelector `{sel}` matches no pod and no network set: it excludes nothing"
                            );
                            out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), Some(field), msg, help));
                        }
                    }
                }
                // The subject's own side: a selector that none of the selected pods matches.
                let subjects = &ctx.selected[pid];
                let Some(local) = rule.local.map(|id| e.calico_peer_of(id)) else { continue };
                let (Some(sel), Some(m)) = (&local.peer.selector, &local.sel) else { continue };
                if subjects.is_empty() || subjects.iter().any(|&i| m.idents.contains(i)) {
                    continue;
                }
                let side = calico::side_name(dir, false);
                let base = calico::side_path(dir, ri, false);
                let (field, help) = match calico::blame(ctx, u, sel) {
                    Some(b) => (format!("{base}.{}", calico::side_field(&b.key)), b.help),
                    None => (
                        format!("{base}.selector"),
                        format!(
                            "the policy selects {}; narrow the rule's {side} to some of them",
                            ctx.pod_list(subjects, 3)
                        ),
                    ),
                };
                let msg = format!(
                    "the {side}'s selector `{}` matches none of the pods the policy selects: {} applies to no pod",
                    calico::shown(sel, own),
                    Ctx::rule_words(pol, dir, ri)
                );
                out.push(ctx.policy_finding(&RULE, PolicyId::new(pid), Some(field), msg, help));
            }
        }
    }
}

/// The finding for a rule side's selector `sel` that matches no pod and no network set, unless the input does
/// not show what it selects (namespaces it names but the input lacks, namespaces without pods or network sets).
fn nothing_matched(
    ctx: &Ctx,
    u: &Universe,
    pid: usize,
    sel: &crate::calico_selector::Expr,
    own: Option<&str>,
    base: &str,
    side: &str,
) -> Option<Finding> {
    let c = &ctx.engine.cluster;
    let terms = calico::conjuncts(sel);
    let (ns_terms, rest): (Vec<&crate::calico_selector::Expr>, Vec<&crate::calico_selector::Expr>) =
        terms.iter().partition(|t| calico::is_namespace_term(t));
    let nss = calico::namespaces_of(ctx, &ns_terms);
    let shown = calico::shown(sel, own);
    let blame = calico::blame(ctx, u, sel);
    if nss.is_empty() && !ns_terms.is_empty() {
        if ns_terms.iter().all(|t| calico::names_namespaces(t)) {
            return None;
        }
        if ns_terms.iter().any(|t| calico::is_global_term(t)) {
            // `namespaceSelector: global()`: the global network sets, if the input shows any.
            if !c.network_sets.iter().any(|s| s.ns.is_none()) {
                return None;
            }
        } else {
            let ns_sel = calico::joined(&ns_terms);
            let help = blame.map(|b| b.help).unwrap_or_else(|| {
                "check the namespace labels (`kubectl get ns --show-labels`); Calico sees them with `pcns.` removed"
                    .to_string()
            });
            let msg = format!("the {side}'s namespaceSelector (`{}`) matches no namespace", ns_sel);
            return Some(ctx.policy_finding(
                &RULE,
                PolicyId::new(pid),
                Some(format!("{base}.namespaceSelector")),
                msg,
                help,
            ));
        }
    }
    let visible = c.pods.iter().any(|p| !p.host_network && (ns_terms.is_empty() || nss.contains(&p.ns)))
        || c.network_sets.iter().any(|s| s.ns.is_none_or(|n| ns_terms.is_empty() || nss.contains(&n)))
        || (ns_terms.iter().any(|t| calico::is_global_term(t)) && c.network_sets.iter().any(|s| s.ns.is_none()));
    if !visible {
        return None;
    }
    // A namespaced policy's selector without a namespaceSelector looks in its own namespace only.
    let own_only = own.is_some_and(|ns| ns_terms.len() == 1 && calico::is_own_namespace(ns_terms[0], ns));
    // Endpoints the rest of the selector matches, which the namespace terms leave out.
    let mut elsewhere: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    if !ns_terms.is_empty() && !rest.is_empty() {
        let e = ctx.engine;
        for (i, ident) in e.identities.iter().enumerate() {
            let hit = e.ident_calico.get(i).is_some_and(|l| rest.iter().all(|t| t.matches(l)));
            if hit && !ident.host_network && !nss.contains(&ident.ns) {
                elsewhere.insert(format!("namespace {}", c.ns_name(ident.ns)));
            }
        }
        for s in &c.network_sets {
            let labels = crate::model::network_set_labels(s, s.ns.map(|n| c.ns(n)));
            let excluded = !ns_terms.iter().all(|t| t.matches(&labels));
            if excluded && rest.iter().all(|t| t.matches(&labels)) {
                elsewhere.insert(match s.ns {
                    Some(n) => format!("NetworkSet {}/{}", c.ns_name(n), s.name),
                    None => format!("GlobalNetworkSet {}", s.name),
                });
            }
        }
    }
    let elsewhere = Ctx::name_list(elsewhere.into_iter().collect(), 3);
    let (field, help) = match (&blame, elsewhere.is_empty()) {
        (_, false) if own_only => (
            format!("{base}.selector"),
            format!(
                "endpoints matching it exist in {elsewhere}; a rule's selector in a namespaced policy only looks in \
                 the policy's namespace: add a `namespaceSelector`"
            ),
        ),
        (_, false) => (
            format!("{base}.namespaceSelector"),
            format!(
                "endpoints matching it exist in {elsewhere}, which the namespaceSelector leaves out (`all()` is every \
                 namespace, not the global network sets: `global()` selects those)"
            ),
        ),
        (Some(b), true) => (format!("{base}.{}", calico::side_field(&b.key)), b.help.clone()),
        (None, true) => (format!("{base}.selector"), "check the labels of the pods and network sets".to_string()),
    };
    let where_ = match own.filter(|_| own_only) {
        Some(ns) => format!(" in namespace {ns}"),
        None => String::new(),
    };
    let msg = format!("the {side}'s selector `{shown}` matches no pod and no network set{where_}");
    Some(ctx.policy_finding(&RULE, PolicyId::new(pid), Some(field), msg, help))
}

/// What the finding calls a peer's namespace selector: `namespaceSelector`, or an admin kind's `namespaces` peer.
fn ns_field(pol: &crate::model::Policy, peer: &Peer) -> &'static str {
    match peer {
        Peer::Selectors { pods: None, .. } if pol.ns().is_none() => "`namespaces` peer",
        _ => "namespaceSelector",
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{run, with};
    use super::RULE;

    const AND_MISTAKE: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: a}}
      podSelector: {matchLabels: {app: client}}
"#;

    #[test]
    fn and_peer_with_empty_combination_suggests_two_peers() {
        let f = run(&RULE, &with(AND_MISTAKE));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].help.contains("did you mean two peers? (dash placement)"), "{}", f[0].help);
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].from[0]"));
    }

    #[test]
    fn namespace_selector_matching_no_namespace() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: zz}}}]}]\n"));
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("matches no namespace"));
    }

    #[test]
    fn pod_selector_alone_looks_in_own_namespace() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]\n"));
        assert_eq!(f.len(), 1);
        assert!(f[0].help.contains("exist in b"), "{}", f[0].help);
    }

    #[test]
    fn quiet_when_the_input_does_not_show_those_namespaces() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: elsewhere}}, podSelector: {matchLabels: {app: x}}}]}]\n"));
        assert!(f.is_empty(), "{f:?}");
    }

    fn calico(rules: &str) -> String {
        with(&format!(
            "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: a}}\nspec:\n  selector: app == 'web'\n  types: [Ingress, Egress]\n{rules}"
        ))
    }

    /// A Calico rule side's selector that matches nothing, with the term to blame and its field.
    #[test]
    fn calico_rule_selectors_that_match_nothing() {
        let f = run(&RULE, &calico("  ingress:\n  - action: Allow\n    source: {selector: app == 'clinet', namespaceSelector: team == 'b'}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].object, "NetworkPolicy.projectcalico.org a/p");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].source.selector"));
        assert!(f[0].message.starts_with("the source's selector `"), "{}", f[0].message);
        assert!(f[0].message.ends_with("` matches no pod and no network set"), "{}", f[0].message);
        assert_eq!(f[0].help, "no pod or network set has `app` = `clinet`; did you mean `client`?");
        // A misspelt namespace label: the namespaceSelector matches no namespace.
        let f = run(&RULE, &calico("  ingress:\n  - action: Allow\n    source: {selector: app == 'client', namespaceSelector: taem == 'b'}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].source.namespaceSelector"));
        assert!(
            f[0].message.contains("namespaceSelector (`pcns.taem == \"b\"`) matches no namespace"),
            "{}",
            f[0].message
        );
        assert_eq!(f[0].help, "no namespace carries the label `taem`; did you mean `team`?");
        // `namespaceSelector: all()` is every namespace, which leaves the global network sets out.
        let netset = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: partners, labels: {role: partner}}\nspec: {nets: [192.0.2.0/24]}\n---\n";
        let f = run(&RULE, &format!("{netset}{}", calico("  ingress:\n  - action: Allow\n    source: {selector: role == 'partner', namespaceSelector: all()}\n")));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].source.namespaceSelector"));
        assert!(
            f[0].help.starts_with("endpoints matching it exist in GlobalNetworkSet partners, which"),
            "{}",
            f[0].help
        );
        // A selector alone looks in the policy's own namespace: the pods it means are elsewhere.
        let f = run(&RULE, &calico("  egress:\n  - action: Allow\n    destination: {selector: app == 'client'}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.egress[0].destination.selector"));
        assert_eq!(
            f[0].message,
            "the destination's selector `app == \"client\"` matches no pod and no network set in namespace a"
        );
        assert!(f[0].help.starts_with("endpoints matching it exist in namespace b;"), "{}", f[0].help);
        // A service account name no pod runs as.
        let f =
            run(&RULE, &calico("  ingress:\n  - action: Allow\n    source: {serviceAccounts: {names: [defualt]}}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].source.serviceAccounts.names"));
        assert!(f[0].help.ends_with("did you mean `default`?"), "{}", f[0].help);
        // A notSelector that matches nothing excludes nothing.
        let f = run(
            &RULE,
            &calico("  ingress:\n  - action: Allow\n    source: {namespaceSelector: all(), notSelector: ap == 'db'}\n"),
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].source.notSelector"));
        assert!(f[0].message.ends_with("it excludes nothing"), "{}", f[0].message);
        // The subject's own side: the destination of an ingress rule names none of the selected pods.
        let f = run(&RULE, &calico("  ingress:\n  - action: Allow\n    destination: {selector: app == 'db'}\n"));
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].field.as_deref(), Some("spec.ingress[0].destination.selector"));
        assert!(
            f[0].message
                .contains("matches none of the pods the policy selects: ingress rule 0 (Allow) applies to no pod"),
            "{}",
            f[0].message
        );
    }

    /// Calico selectors that match pods or network sets, or name namespaces the input does not show.
    #[test]
    fn quiet_for_calico_selectors_that_match() {
        let netset = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: partners, labels: {role: partner}}\nspec: {nets: [192.0.2.0/24]}\n---\n";
        for source in [
            "{selector: app == 'client', namespaceSelector: team == 'b'}",
            "{selector: app == 'db'}",
            "{namespaceSelector: projectcalico.org/name == 'elsewhere', selector: app == 'x'}",
            "{namespaceSelector: global(), selector: role == 'partner'}",
            "{serviceAccounts: {names: [default]}, notSelector: app == 'db'}",
            "{nets: [192.0.2.0/24]}",
        ] {
            let f = run(
                &RULE,
                &format!("{netset}{}", calico(&format!("  ingress:\n  - action: Allow\n    source: {source}\n"))),
            );
            assert!(f.is_empty(), "{source}: {f:?}");
        }
        // A namespace with neither pods nor network sets in the input: nothing to judge.
        let f = run(&RULE, &calico("  ingress:\n  - action: Allow\n    source: {namespaceSelector: projectcalico.org/name == 'empty' || team == 'none', selector: app == 'x'}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: empty}\n"));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn quiet_for_peers_that_match() {
        let f = run(&RULE, &with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: client}}}, {podSelector: {matchLabels: {app: web}}}]}]\n"));
        assert!(f.is_empty(), "{f:?}");
    }

    /// Antrea: a peer group that matches nothing, or does not exist, is one finding at the peer (not one per split
    /// policy, nor a second one about the selectors the group was inlined as); a selector peer of an ACNP that
    /// matches nothing is named at its rule.
    #[test]
    fn antrea_peer_groups_that_match_nothing() {
        let yaml = "apiVersion: crd.antrea.io/v1beta1\nkind: ClusterGroup\nmetadata: {name: nobody}\nspec: {podSelector: {matchLabels: {app: nothere}}}\n---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterGroup\nmetadata: {name: nets}\nspec: {ipBlocks: [{cidr: 192.0.2.0/24}]}\n---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\nspec:\n  priority: 1\n  appliedTo: [{podSelector: {matchLabels: {app: web}}}, {podSelector: {matchLabels: {app: db}}}]\n  ingress:\n  - {action: Allow, from: [{group: nets}]}\n  - {action: Drop, from: [{group: nets}, {group: nobody}, {group: missing}]}\n  - {action: Drop, from: [{podSelector: {matchLabels: {app: gohst}}}]}\n";
        let f = run(&RULE, &with(yaml));
        let got: Vec<(&str, &str)> = f.iter().map(|f| (f.field.as_deref().unwrap_or(""), f.message.as_str())).collect();
        assert_eq!(
            got,
            [
                ("spec.ingress[1].from[1]", "ClusterGroup `nobody` matches no pod and no address: this peer matches nothing"),
                (
                    "spec.ingress[1].from[2]",
                    "ClusterGroup `missing` does not exist: this peer matches nothing (Antrea admits the reference, and \
                     the rule applies to the group's members once it is created)"
                ),
                ("spec.ingress[2].from", "no pod matches this peer (namespaceSelector `{}`, podSelector `app=gohst`)"),
            ],
            "{f:?}"
        );
        assert!(f.iter().all(|f| f.object == "ClusterNetworkPolicy.crd.antrea.io p"), "{f:?}");
    }
}
