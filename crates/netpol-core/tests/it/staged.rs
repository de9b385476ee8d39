//! Calico's staged policies (StagedNetworkPolicy, StagedGlobalNetworkPolicy, StagedKubernetesNetworkPolicy):
//! loaded apart from the enforced policies (each kind, each `stagedAction`, every validation rule with its field
//! path), never changing an enforced answer, `Cluster::with_staged` (set, replace, delete, and what it adds), and
//! explanations with the staged view's verdict. Upstream: api/pkg/apis/projectcalico/v3/staged*.go (the kinds and
//! `ConvertStaged*ToEnforced`), libcalico-go's validator (`validateStaged*`) and update processors, the CRDs'
//! schemas, and the e2e test that enforces a staged policy by creating its enforced conversion.

use netpol_core::compile::{Endpoint, Engine};
use netpol_core::diff::{diff, DiffOptions};
use netpol_core::load::{load_str, Diagnostic, Loaded, Loader, Severity};
use netpol_core::model::{Cluster, Policy, PolicyKind, PolicyTier, Scope, StagedAction};
use netpol_core::portset::Protocol;
use netpol_core::staged::explain_with_staged;
use netpol_core::verdict::{DecidedBy, Verdict};

// ---- helpers ----

fn fixture(name: &str) -> String {
    let path = format!("{}/../../tests/data/calico/staged/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The fixture files, loaded together in order.
fn load_fixtures(names: &[&str]) -> Loaded {
    let mut l = Loader::new();
    for n in names {
        l.add_bytes(n, fixture(n).as_bytes());
    }
    l.finish()
}

fn errors(l: &Loaded) -> Vec<(&str, &str)> {
    l.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| (d.object.as_deref().unwrap_or(""), d.field.as_deref().unwrap_or("")))
        .collect()
}

fn warnings(l: &Loaded) -> Vec<&Diagnostic> {
    l.diagnostics.iter().filter(|d| d.severity == Severity::Warning).collect()
}

#[track_caller]
fn assert_clean(l: &Loaded) {
    assert!(l.diagnostics.is_empty(), "expected no diagnostics, got {:#?}", l.diagnostics);
}

fn doc(api_version: &str, kind: &str, meta: &str, spec: &str) -> String {
    format!("apiVersion: {api_version}\nkind: {kind}\nmetadata: {meta}\nspec: {spec}\n")
}

fn snp(spec: &str) -> String {
    doc("projectcalico.org/v3", "StagedNetworkPolicy", "{name: p, namespace: prod}", spec)
}

fn sgnp(spec: &str) -> String {
    doc("projectcalico.org/v3", "StagedGlobalNetworkPolicy", "{name: g}", spec)
}

fn sknp(spec: &str) -> String {
    doc("projectcalico.org/v3", "StagedKubernetesNetworkPolicy", "{name: k, namespace: prod}", spec)
}

/// A policy's data (everything but its origin's file name), for comparing conversions.
fn shape(p: &Policy) -> String {
    let mut p = p.clone();
    p.origin = Default::default();
    format!("{p:?}")
}

/// The only policy of the staged view of `text` (one staged object), and the only policy of `enforced`: equal.
#[track_caller]
fn converts_as_enforced(staged: &str, enforced: &str) {
    let s = load_str("x.yaml", staged);
    assert_clean(&s);
    assert!(s.cluster.policies.is_empty(), "a staged policy is never enforced");
    assert_eq!(s.cluster.staged.len(), 1);
    let e = load_str("x.yaml", enforced);
    assert_clean(&e);
    let view = s.cluster.with_staged();
    assert_eq!(view.policies.len(), 1);
    assert_eq!(shape(&view.policies[0]), shape(&e.cluster.policies[0]));
    assert_eq!(view.namespaces.len(), e.cluster.namespaces.len());
}

fn pod(e: &Engine, r: &str) -> Endpoint {
    e.parse_endpoint(r, "default").unwrap()
}

// ---- the loader ----

#[test]
fn each_staged_kind_converts_as_its_enforced_kind() {
    // StagedNetworkPolicy → Calico NetworkPolicy (selector, tier, order, types, rules).
    let spec = "{tier: default, order: 10, selector: app == 'db', types: [Ingress, Egress], ingress: [{action: Allow, \
                protocol: TCP, source: {selector: app == 'api'}, destination: {ports: [5432]}}], egress: [{action: \
                Deny}]}";
    converts_as_enforced(
        &snp(&spec.replace("{tier", "{stagedAction: Set, tier")),
        &doc("projectcalico.org/v3", "NetworkPolicy", "{name: p, namespace: prod}", spec),
    );
    // StagedGlobalNetworkPolicy → GlobalNetworkPolicy (namespaceSelector and serviceAccountSelector combined).
    let spec = "{order: 5, selector: all(), namespaceSelector: team == 'a', serviceAccountSelector: role == 'x', \
                ingress: [{action: Pass}]}";
    converts_as_enforced(&sgnp(spec), &doc("projectcalico.org/v3", "GlobalNetworkPolicy", "{name: g}", spec));
    // StagedKubernetesNetworkPolicy → a networking.k8s.io/v1 NetworkPolicy, exactly as the v1 loader converts it.
    let spec = "{podSelector: {matchLabels: {app: db}}, policyTypes: [Ingress, Egress], ingress: [{from: \
                [{namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: api}}}, {ipBlock: \
                {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}], ports: [{port: 5432}, {protocol: UDP, port: 53, endPort: \
                60}]}]}";
    converts_as_enforced(
        &sknp(spec),
        &doc("networking.k8s.io/v1", "NetworkPolicy", "{name: k, namespace: prod}", spec),
    );
    // The CRD group reads the same.
    let staged = sknp("{podSelector: {}}").replace("projectcalico.org/v3", "crd.projectcalico.org/v1");
    converts_as_enforced(&staged, &doc("networking.k8s.io/v1", "NetworkPolicy", "{name: k, namespace: prod}", "{}"));
}

#[test]
fn the_fixtures_load_staged_policies_apart_from_enforced_ones() {
    let l = load_fixtures(&["cluster.yaml", "deny.yaml", "delete.yaml", "replace.yaml"]);
    assert_clean(&l);
    let c = &l.cluster;
    let enforced: Vec<&str> = c.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(enforced, ["db-from-api", "api-ingress"]);
    let staged: Vec<(String, StagedAction, String)> =
        c.staged.iter().map(|s| (s.object_ref(), s.action, s.key().to_string())).collect();
    assert_eq!(
        staged,
        [
            ("StagedNetworkPolicy shop/deny-ops".into(), StagedAction::Set, "caliconetworkpolicy/shop/deny-ops".into()),
            ("StagedKubernetesNetworkPolicy shop/db-from-api".into(), StagedAction::Delete, "shop/db-from-api".into()),
            ("StagedKubernetesNetworkPolicy shop/api-ingress".into(), StagedAction::Set, "shop/api-ingress".into()),
            ("StagedGlobalNetworkPolicy log-egress".into(), StagedAction::Learn, "gnp/log-egress".into()),
        ]
    );
    // The staged deny is in the declared tier `security`; its origin is the staged object's.
    let deny = &c.staged[0];
    assert_eq!(c.tiers[deny.policy.tier.index()].name, "security");
    assert_eq!(deny.implicit_tier, None);
    assert_eq!(deny.policy.origin.to_string(), "deny.yaml (document 0)");
    assert_eq!(deny.namespace.as_deref(), Some("shop"));
    assert_eq!(deny.policy.scope, Scope::Namespace(c.namespace_id("shop").unwrap()));
}

#[test]
fn staged_action_is_set_by_default_and_takes_each_value() {
    for (written, want) in [
        (None, StagedAction::Set),
        (Some("Set"), StagedAction::Set),
        (Some("Learn"), StagedAction::Learn),
        (Some("Ignore"), StagedAction::Ignore),
        (Some("Delete"), StagedAction::Delete),
    ] {
        let action = written.map(|a| format!("stagedAction: {a}, ")).unwrap_or_default();
        let rules = if want == StagedAction::Delete { "" } else { "selector: all(), ingress: [{action: Deny}]" };
        for text in [snp(&format!("{{{action}{rules}}}")), sgnp(&format!("{{{action}{rules}}}"))] {
            let l = load_str("a.yaml", &text);
            let delete_warning = warnings(&l).iter().all(|d| d.message.contains("would delete nothing"));
            assert!(errors(&l).is_empty() && delete_warning, "{written:?}: {:#?}", l.diagnostics);
            assert_eq!(l.cluster.staged.len(), 1);
            assert_eq!(l.cluster.staged[0].action, want);
            assert_eq!(l.cluster.staged[0].policy.ingress.len(), usize::from(want != StagedAction::Delete));
        }
        let rules = if want == StagedAction::Delete { "" } else { "podSelector: {}" };
        let l = load_str("k.yaml", &sknp(&format!("{{{action}{rules}}}")));
        assert!(errors(&l).is_empty(), "{:#?}", l.diagnostics);
        assert_eq!(l.cluster.staged[0].action, want);
    }
}

#[test]
fn a_staged_action_upstream_refuses_is_an_error_at_its_field() {
    for (bad, hint) in [("set", true), ("Apply", false), ("''", false)] {
        for text in [
            snp(&format!("{{stagedAction: {bad}}}")),
            sgnp(&format!("{{stagedAction: {bad}}}")),
            sknp(&format!("{{stagedAction: {bad}}}")),
        ] {
            let l = load_str("a.yaml", &text);
            let e: Vec<&Diagnostic> = l.diagnostics.iter().filter(|d| d.severity == Severity::Error).collect();
            assert_eq!(e.len(), 1, "{bad}: {:#?}", l.diagnostics);
            assert_eq!(e[0].field.as_deref(), Some("spec.stagedAction"));
            assert!(
                e[0].message.contains(r#"supported values: "Set", "Delete", "Learn", "Ignore""#),
                "{}",
                e[0].message
            );
            assert_eq!(e[0].message.contains("case-sensitive: `Set`"), hint, "{}", e[0].message);
            assert!(l.cluster.staged.is_empty());
        }
    }
}

#[test]
fn a_staged_delete_names_the_policy_and_nothing_more() {
    // Calico kinds: tier and types may be given (the client clears types); every other field is an error.
    let l = load_str("d.yaml", &snp("{stagedAction: Delete, tier: default, types: [Ingress]}"));
    assert!(errors(&l).is_empty(), "{:#?}", l.diagnostics);
    let l = load_str(
        "d.yaml",
        &snp("{stagedAction: Delete, order: 1, selector: all(), ingress: [], egress: [{action: Allow}], \
              serviceAccountSelector: a == 'b', performanceHints: [AssumeNeededOnEveryNode]}"),
    );
    let fields: Vec<&str> = errors(&l).iter().map(|e| e.1).collect();
    assert_eq!(
        fields,
        [
            "spec.order",
            "spec.ingress",
            "spec.egress",
            "spec.selector",
            "spec.serviceAccountSelector",
            "spec.performanceHints"
        ]
    );
    assert!(l.diagnostics[0].message.contains("must not be set when stagedAction is Delete"));
    // Zero values are no values: an empty selector, `false`.
    let l = load_str("d.yaml", &sgnp("{stagedAction: Delete, selector: '', doNotTrack: false, preDNAT: false}"));
    assert!(errors(&l).is_empty(), "{:#?}", l.diagnostics);
    let l = load_str(
        "d.yaml",
        &sgnp(
            "{stagedAction: Delete, doNotTrack: true, preDNAT: true, applyOnForward: true, namespaceSelector: all()}",
        ),
    );
    let fields: Vec<&str> = errors(&l).iter().map(|e| e.1).collect();
    assert_eq!(fields, ["spec.doNotTrack", "spec.preDNAT", "spec.applyOnForward", "spec.namespaceSelector"]);
    // What a Delete may say is still checked: its tier's name, its types, its own name.
    let l = load_str("d.yaml", &snp("{stagedAction: Delete, tier: Bad_Tier, types: [Ingress, Sideways]}"));
    assert_eq!(
        errors(&l),
        [("StagedNetworkPolicy prod/p", "spec.tier"), ("StagedNetworkPolicy prod/p", "spec.types[1]")]
    );
    let l = load_str(
        "d.yaml",
        &doc("projectcalico.org/v3", "StagedGlobalNetworkPolicy", "{name: a.b.c}", "{stagedAction: Delete}"),
    );
    assert_eq!(errors(&l), [("StagedGlobalNetworkPolicy a.b.c", "metadata.name")]);
    // StagedKubernetesNetworkPolicy: every spec field but stagedAction is an error; `podSelector: {}` is zero.
    let l = load_str("d.yaml", &sknp("{stagedAction: Delete, podSelector: {}}"));
    assert!(errors(&l).is_empty(), "{:#?}", l.diagnostics);
    let l = load_str(
        "d.yaml",
        &sknp(
            "{stagedAction: Delete, podSelector: {matchLabels: {}}, ingress: [{}], egress: [], policyTypes: [Egress]}",
        ),
    );
    let fields: Vec<&str> = errors(&l).iter().map(|e| e.1).collect();
    assert_eq!(fields, ["spec.podSelector", "spec.ingress", "spec.egress", "spec.policyTypes"]);
    assert!(l.cluster.staged.is_empty());
}

#[test]
fn a_staged_delete_of_a_policy_not_loaded_is_warned_about() {
    let enforced = doc("networking.k8s.io/v1", "NetworkPolicy", "{name: k, namespace: prod}", "{}");
    let l = load_str("d.yaml", &[enforced, sknp("{stagedAction: Delete}")].join("---\n"));
    assert_clean(&l);
    // A Calico NetworkPolicy of that name is another policy.
    let l = load_str("d.yaml", &sknp("{stagedAction: Delete}").replace("name: k", "name: p"));
    let w = warnings(&l);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].field.as_deref(), Some("metadata.name"));
    assert_eq!(
        w[0].message,
        "stagedAction Delete: no NetworkPolicy prod/p is loaded, so enforcing this staged policy would delete nothing"
    );
    assert_eq!(l.cluster.staged.len(), 1, "still loaded");
}

#[test]
fn staged_policies_are_validated_as_their_enforced_kind_with_the_same_field_paths() {
    // Calico kinds: the Calico loader's rules.
    let l = load_str(
        "v.yaml",
        &snp("{selector: 'app ==', ingress: [{action: allow}], egress: [{action: Allow, destination: {ports: [80]}}]}"),
    );
    assert_eq!(
        errors(&l),
        [
            ("StagedNetworkPolicy prod/p", "spec.selector"),
            ("StagedNetworkPolicy prod/p", "spec.ingress[0].action"),
            ("StagedNetworkPolicy prod/p", "spec.egress[0].destination.ports"),
        ]
    );
    let l = load_str("v.yaml", &sgnp("{preDNAT: true, applyOnForward: true, egress: [{action: Deny}]}"));
    assert_eq!(errors(&l), [("StagedGlobalNetworkPolicy g", "spec.egress")]);
    let l =
        load_str("v.yaml", &doc("projectcalico.org/v3", "StagedNetworkPolicy", "{name: a.b.c, namespace: x}", "{}"));
    assert_eq!(errors(&l), [("StagedNetworkPolicy x/a.b.c", "metadata.name")]);
    // The staged Kubernetes kind: the v1 loader's rules, then the staged CRD's (policyTypes: 1 or 2 distinct).
    let l = load_str(
        "v.yaml",
        &sknp("{podSelector: {matchLabels: {'a b': c}}, ingress: [{ports: [{port: 0}]}], policyTypes: [Ingress, Sideways]}"),
    );
    assert_eq!(
        errors(&l),
        [
            ("StagedKubernetesNetworkPolicy prod/k", "spec.podSelector.matchLabels"),
            ("StagedKubernetesNetworkPolicy prod/k", "spec.ingress[0].ports[0].port"),
            ("StagedKubernetesNetworkPolicy prod/k", "spec.policyTypes[1]"),
        ]
    );
    let l = load_str("v.yaml", &sknp("{policyTypes: []}"));
    assert_eq!(errors(&l), [("StagedKubernetesNetworkPolicy prod/k", "spec.policyTypes")]);
    let l = load_str("v.yaml", &sknp("{policyTypes: [Egress, Egress]}"));
    assert_eq!(errors(&l), [("StagedKubernetesNetworkPolicy prod/k", "spec.policyTypes[1]")]);
    // Unknown fields, as for every strict kind (a NetworkPolicy's `status` is not a staged object's).
    let l = load_str("v.yaml", &sknp("{podSelector: {}, stagedActoin: Set}"));
    let e = &l.diagnostics[0];
    assert_eq!(e.field.as_deref(), Some("spec.stagedActoin"));
    assert!(e.message.contains("unknown field `stagedActoin`: did you mean `stagedAction`?"), "{}", e.message);
    let l = load_str("v.yaml", &format!("{}status: {{}}\n", sknp("{}")));
    assert_eq!(errors(&l), [("StagedKubernetesNetworkPolicy prod/k", "status")]);
}

#[test]
fn staged_objects_are_unique_per_kind_and_name_and_apart_from_enforced_names() {
    let knp = doc("networking.k8s.io/v1", "NetworkPolicy", "{name: p, namespace: prod}", "{}");
    let cnp = doc("projectcalico.org/v3", "NetworkPolicy", "{name: p, namespace: prod}", "{}");
    let sk = sknp("{}").replace("name: k", "name: p");
    let text = [knp, cnp, snp("{}"), sk.clone(), snp("{}"), sk, snp("{}").replace("prod", "dev")].join("---\n");
    let l = load_str("u.yaml", &text);
    assert_eq!(
        errors(&l),
        [("StagedNetworkPolicy prod/p", "metadata.name"), ("StagedKubernetesNetworkPolicy prod/p", "metadata.name")]
    );
    assert!(l.diagnostics.iter().all(|d| d.message.contains("duplicate object") && d.origin.document >= 4));
    assert_eq!(l.cluster.policies.len(), 2);
    assert_eq!(l.cluster.staged.len(), 3);
}

#[test]
fn a_staged_policy_in_an_undeclared_tier_is_warned_about_and_the_tier_is_left_to_the_staged_view() {
    let l = load_str("t.yaml", &snp("{tier: audit, selector: all(), ingress: [{action: Deny}]}"));
    let w = warnings(&l);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].field.as_deref(), Some("spec.tier"));
    assert!(w[0].message.contains("tier `audit` is not declared by any Tier object"), "{}", w[0].message);
    assert_eq!(l.cluster.tiers.len(), 3, "the enforced cluster gets no tier");
    assert_eq!(l.cluster.staged[0].implicit_tier.as_deref(), Some("audit"));
    let view = l.cluster.with_staged();
    assert_eq!(view.tiers.len(), 4);
    assert_eq!((view.tiers[3].name.as_str(), view.tiers[3].order), ("audit", None));
    assert_eq!(view.policies[0].tier, PolicyTier::Custom(3));
    // A tier an enforced policy names (implicitly) is shared; a Tier object's is found whatever the order.
    let enforced = doc("projectcalico.org/v3", "NetworkPolicy", "{name: e, namespace: prod}", "{tier: audit}");
    let l = load_str("t.yaml", &[snp("{tier: audit}"), enforced].join("---\n"));
    assert_eq!(warnings(&l).len(), 2, "one per object");
    assert_eq!(l.cluster.staged[0].implicit_tier, None);
    assert_eq!(l.cluster.staged[0].policy.tier, l.cluster.policies[0].tier);
    let tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: audit}\nspec: {order: 50}\n";
    let l = load_str("t.yaml", &[snp("{tier: audit}"), tier.to_string()].join("---\n"));
    assert_clean(&l);
    assert_eq!(l.cluster.staged[0].policy.tier, PolicyTier::Custom(3));
}

// ---- staged policies never change an enforced answer ----

#[test]
fn staged_policies_change_no_enforced_answer() {
    let plain = load_fixtures(&["cluster.yaml"]);
    let with = load_fixtures(&["cluster.yaml", "deny.yaml", "delete.yaml", "replace.yaml"]);
    // A staged policy in a namespace nothing else mentions does not create it.
    let elsewhere = snp("{selector: all(), ingress: [{action: Deny}]}").replace("prod", "elsewhere");
    let mut l = Loader::new();
    l.add_bytes("cluster.yaml", fixture("cluster.yaml").as_bytes());
    l.add_bytes("elsewhere.yaml", elsewhere.as_bytes());
    let with_elsewhere = l.finish();
    for loaded in [with, with_elsewhere] {
        assert_eq!(loaded.cluster.namespaces.len(), plain.cluster.namespaces.len());
        assert_eq!(loaded.cluster.tiers.len(), plain.cluster.tiers.len());
        let (a, b) = (Engine::new(plain.cluster.clone()), Engine::new(loaded.cluster));
        let d = diff(&a, &b, &DiffOptions::default());
        assert!(d.is_empty(), "{d:#?}");
        assert_eq!(d.unchanged_pairs, 20);
        for (s, t, port) in
            [("ops/monitor-1", "shop/api", 8080), ("shop/web", "shop/db", 80), ("shop/api", "shop/db", 5432)]
        {
            let (x, y) = (
                a.explain(&pod(&a, s), &pod(&a, t), Protocol::Tcp, port),
                b.explain(&pod(&b, s), &pod(&b, t), Protocol::Tcp, port),
            );
            assert_eq!(x, y);
            assert!(y.staged.is_none(), "Engine::explain never adds the staged view");
        }
    }
}

// ---- the staged view ----

fn names(c: &Cluster) -> Vec<String> {
    (0..c.policies.len()).map(|i| c.policy_ref(netpol_core::model::PolicyId::new(i))).collect()
}

#[test]
fn with_staged_sets_replaces_and_deletes_policies_of_the_same_kind_namespace_and_name() {
    let l = load_fixtures(&["cluster.yaml", "deny.yaml", "delete.yaml", "replace.yaml"]);
    let c = &l.cluster;
    let view = c.with_staged();
    assert!(view.staged.is_empty());
    // db-from-api deleted, api-ingress replaced in place, deny-ops and the Learn GNP added.
    assert_eq!(names(&view), ["shop/api-ingress", "caliconetworkpolicy/shop/deny-ops", "gnp/log-egress"]);
    let api = &view.policies[0];
    assert_eq!(api.ingress.len(), 1, "the staged version has one rule");
    assert_eq!(api.origin.to_string(), "replace.yaml (document 0)");
    assert_eq!(view.policies[2].kind, PolicyKind::GlobalNetworkPolicy);
    // Pods, namespaces, tiers: the same.
    assert_eq!(view.pods.len(), c.pods.len());
    assert!(view.pods.iter().zip(&c.pods).all(|(a, b)| a.name == b.name && a.ns == b.ns));
    assert_eq!(view.namespaces.len(), c.namespaces.len());
    assert_eq!(
        view.tiers.iter().map(|t| &t.name).collect::<Vec<_>>(),
        c.tiers.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    // The enforced cluster is untouched.
    assert_eq!(names(c), ["shop/db-from-api", "shop/api-ingress"]);
}

#[test]
fn learn_and_ignore_act_as_set_a_delete_of_nothing_changes_nothing() {
    let enforced =
        |name: &str| doc("networking.k8s.io/v1", "NetworkPolicy", &format!("{{name: {name}, namespace: prod}}"), "{}");
    let staged = |name: &str, action: &str| {
        doc(
            "projectcalico.org/v3",
            "StagedKubernetesNetworkPolicy",
            &format!("{{name: {name}, namespace: prod}}"),
            &format!("{{stagedAction: {action}{}}}", if action == "Delete" { "" } else { ", policyTypes: [Egress]" }),
        )
    };
    let text = [
        enforced("a"),
        enforced("b"),
        staged("a", "Learn"),
        staged("b", "Ignore"),
        staged("c", "Learn"),
        staged("gone", "Delete"),
    ]
    .join("---\n");
    let l = load_str("l.yaml", &text);
    assert_eq!(warnings(&l).len(), 1, "the Delete of nothing: {:#?}", l.diagnostics);
    let view = l.cluster.with_staged();
    assert_eq!(names(&view), ["prod/a", "prod/b", "prod/c"]);
    assert!(view.policies.iter().all(|p| p.affects_egress && !p.affects_ingress), "all three are the staged ones");
}

#[test]
fn the_staged_view_adds_the_namespace_of_a_staged_policy() {
    let text = [
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: prod}\nstatus: {podIP: 10.0.0.1}\n".to_string(),
        sknp("{}").replace("prod", "quiet"),
    ]
    .join("---\n");
    let l = load_str("n.yaml", &text);
    assert_eq!(l.cluster.namespaces.len(), 1);
    let view = l.cluster.with_staged();
    assert_eq!(view.namespaces.len(), 2);
    assert_eq!(view.namespaces[1].name, "quiet");
    assert_eq!(view.policies[0].scope, Scope::Namespace(view.namespace_id("quiet").unwrap()));
    assert_eq!(view.policy_ref(netpol_core::model::PolicyId::new(0)), "quiet/k");
}

#[test]
fn a_staged_calico_policy_makes_the_staged_view_a_calico_cluster() {
    let knp = doc("networking.k8s.io/v1", "NetworkPolicy", "{name: k, namespace: prod}", "{}");
    let l = load_str("c.yaml", &[knp.clone(), snp("{selector: all(), ingress: [{action: Deny}]}")].join("---\n"));
    let tiers = |c: &Cluster| c.tiers.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    // The enforced cluster has no Calico object: Kubernetes' names; its staged view has one: Calico's.
    assert_eq!(tiers(&l.cluster), ["Admin", "NetworkPolicy", "Baseline"]);
    assert_eq!(tiers(&l.cluster.with_staged()), ["kube-admin", "default", "kube-baseline"]);
    // A staged Kubernetes NetworkPolicy is no Calico policy.
    let l = load_str("c.yaml", &[knp, sknp("{}")].join("---\n"));
    assert_eq!(tiers(&l.cluster.with_staged()), ["Admin", "NetworkPolicy", "Baseline"]);
}

#[test]
fn the_staged_view_is_evaluated_as_any_cluster() {
    let l = load_fixtures(&["cluster.yaml", "deny.yaml"]);
    let view = Engine::new(l.cluster.with_staged());
    // The staged Deny cuts ops from the shop; everything else stays as enforced.
    crate::common::check(
        &view,
        &[
            ("ops/monitor-1", "shop/api", "8080", false),
            ("ops/monitor-2", "shop/web", "80", false),
            ("shop/web", "shop/api", "8080", true),
            ("shop/api", "shop/db", "5432", true),
            ("shop/web", "shop/db", "5432", false),
            ("shop/web", "ops/monitor-1", "9", true),
        ],
    );
}

// ---- explanations with the staged view ----

fn explain(names: &[&str], src: &str, dst: &str, port: u16) -> netpol_core::verdict::Explanation {
    let l = load_fixtures(names);
    let enforced = Engine::new(l.cluster);
    let staged = Engine::new(enforced.cluster().with_staged());
    let (s, d) = (pod(&enforced, src), pod(&enforced, dst));
    explain_with_staged(&enforced, &staged, &s, &d, None, Protocol::Tcp, port)
}

#[test]
fn explain_gives_the_staged_verdict_and_its_deciding_rule_beside_the_enforced_one() {
    let x = explain(&["cluster.yaml", "deny.yaml"], "ops/monitor-1", "shop/api", 8080);
    assert_eq!(x.verdict, Verdict::Allow);
    let st = x.staged.as_deref().unwrap();
    assert_eq!((st.verdict, st.changed), (Verdict::Deny, true));
    assert_eq!(st.ingress.decided_by, DecidedBy::Rule);
    let rule = st.ingress.walk.last().unwrap();
    assert_eq!(
        (rule.tier.as_str(), rule.policy.as_str(), rule.rule),
        ("security", "caliconetworkpolicy/shop/deny-ops", 0)
    );
    assert_eq!(rule.source, "deny.yaml (document 0)");
    let refs: Vec<(&str, &str, StagedAction)> =
        st.policies.iter().map(|p| (p.kind, p.name.as_str(), p.action)).collect();
    assert_eq!(refs, [("StagedNetworkPolicy", "shop/deny-ops", StagedAction::Set)]);

    // The enforced part is what Engine::explain says, word for word.
    let l = load_fixtures(&["cluster.yaml", "deny.yaml"]);
    let e = Engine::new(l.cluster);
    let mut plain = x.clone();
    plain.staged = None;
    assert_eq!(plain, e.explain(&pod(&e, "ops/monitor-1"), &pod(&e, "shop/api"), Protocol::Tcp, 8080));
    let text = x.render();
    assert!(text.starts_with(&plain.render()), "{text}");
    let staged_text = &text[plain.render().len()..];
    assert_eq!(
        staged_text,
        "STAGED DENY ops/monitor-1 -> shop/api 8080/TCP: the verdict if the staged policies were enforced (changes the \
         enforced ALLOW)\n  staged policies on this flow: StagedNetworkPolicy shop/deny-ops (Set: \
         caliconetworkpolicy/shop/deny-ops, deny.yaml (document 0))\n  egress from ops/monitor-1: allowed: no policy \
         selects ops/monitor-1 for egress: not isolated, everything allowed\n  ingress to shop/api: DENIED\n    \
         [security] caliconetworkpolicy/shop/deny-ops (order 10) ingress rule 0: Deny, peer 0, any port (deny.yaml \
         (document 0), spec.ingress[0]) → DENY\n"
    );

    // JSON: `staged` with the verdict, the change, the staged policies and each side's walk.
    let json = serde_json::to_value(&x).unwrap();
    assert_eq!(json["verdict"], "allow");
    assert_eq!(json["staged"]["verdict"], "deny");
    assert_eq!(json["staged"]["changed"], true);
    assert_eq!(
        json["staged"]["policies"],
        serde_json::json!([{"kind": "StagedNetworkPolicy", "name": "shop/deny-ops", "action": "Set",
            "policy": "caliconetworkpolicy/shop/deny-ops", "source": "deny.yaml (document 0)"}])
    );
    assert_eq!(json["staged"]["ingress"]["decided_by"], "rule");
    assert_eq!(json["staged"]["ingress"]["walk"][0]["action"], "deny");
}

#[test]
fn explain_lists_a_staged_delete_and_says_when_no_staged_policy_bears_on_the_flow() {
    let x = explain(&["cluster.yaml", "delete.yaml"], "shop/web", "shop/db", 5432);
    let st = x.staged.as_deref().unwrap();
    assert_eq!((x.verdict, st.verdict, st.changed), (Verdict::Deny, Verdict::Allow, true));
    assert_eq!(st.policies[0].action, StagedAction::Delete);
    assert_eq!(st.policies[0].policy, "shop/db-from-api");
    assert_eq!(st.ingress.decided_by, DecidedBy::NotGoverned);
    // No staged policy selects either side: the same verdict, said in one line.
    let x = explain(&["cluster.yaml", "delete.yaml"], "shop/web", "ops/monitor-1", 80);
    let st = x.staged.as_deref().unwrap();
    assert!(!st.changed && st.policies.is_empty());
    assert!(x.render().ends_with(
        "STAGED ALLOW shop/web -> ops/monitor-1 80/TCP: the verdict if the staged policies were enforced (keeps the \
         enforced ALLOW)\n  no staged policy selects shop/web for egress or ops/monitor-1 for ingress\n"
    ));
    // Without staged policies the explanation has no `staged` at all.
    let x = explain(&["cluster.yaml"], "shop/web", "shop/db", 5432);
    assert!(x.staged.is_none());
    assert!(serde_json::to_value(&x).unwrap().get("staged").is_none());
    assert!(!x.render().contains("STAGED"));
}
