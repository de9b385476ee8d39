//! Antrea's evaluation, on clusters built from the model (the loader of `crd.antrea.io` objects is separate): a
//! `Pass` in one of Antrea's regular tiers skips every later one of them, on to NetworkPolicy (README of
//! `tests/conformance/antrea`, "Each side is decided in this order"), and `Reject` denies. Every flow is checked
//! three ways: the engine, the explanation and the reference evaluator; then the matrix and the data plane.

use netpol_core::compile::Engine;
use netpol_core::load::load_str;
use netpol_core::model::*;
use netpol_core::portset::Protocol;
use netpol_core::selector::Selector;
use netpol_core::verdict::DecidedBy;

use crate::common::check;

/// Namespace `n` with pods `web` (10.0.0.2) and `client` (10.0.0.3); a NetworkPolicy letting `web` in on TCP 1
/// only (so it isolates `web`'s ingress).
const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: n}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: n, labels: {app: web}}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: n, labels: {app: client}}
status: {podIP: 10.0.0.3}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-1, namespace: n}
spec: {podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 1}]}]}
"#;

fn tier(name: &str, order: f64, flag: bool) -> TierDef {
    TierDef {
        name: name.into(),
        order: Some(order),
        default_action: Action::Pass,
        origin: Some(Origin::default()),
        pass_to_network_policy: flag,
    }
}

/// An ACNP in tier `tier` (index in `Cluster::tiers`) selecting every pod, with one ingress rule per (action,
/// TCP port; 0: every port), in order.
fn acnp(name: &str, tier: usize, rules: &[(Action, u16)]) -> Policy {
    let ingress: Vec<Rule> = rules
        .iter()
        .map(|&(action, port)| Rule {
            action,
            ports: if port == 0 {
                Vec::new()
            } else {
                vec![PolicyPort { protocol: Protocol::Tcp, port: PortMatch::Range(port, port) }]
            },
            ..Default::default()
        })
        .collect();
    Policy {
        host: Default::default(),
        position: 0,
        manifest: None,
        kind: PolicyKind::AntreaClusterNetworkPolicy,
        tier: PolicyTier::from_index(tier),
        order: Order(Some(1.0)),
        calico_selector: None,
        scope: Scope::Cluster(Selector::everything()),
        name: name.into(),
        pod_selector: Selector::everything(),
        affects_ingress: true,
        affects_egress: false,
        ingress,
        egress: Vec::new(),
        origin: Origin::default(),
    }
}

/// [`BASE`] with Antrea tiers `emergency` (50), `securityops` (100) and `application` (1,500, after the Admin
/// tier) with the flag (`flag`), the Admin tier with it too, and:
/// - `emergency`: pass TCP 1-3 (every port when `pass_all`), reject TCP 4;
/// - `securityops`: allow every port (it must not reach what `emergency` passes), drop TCP 5;
/// - `application`: reject every port.
fn cluster(flag: bool, pass_all: bool) -> Cluster {
    let loaded = load_str("base.yaml", BASE);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let mut c = loaded.cluster;
    if c.tiers.len() < 3 {
        c.tiers = TierDef::builtin();
    }
    c.tiers[0].pass_to_network_policy = flag;
    let t = c.tiers.len();
    c.tiers.push(tier("emergency", 50.0, flag));
    c.tiers.push(tier("securityops", 100.0, flag));
    c.tiers.push(tier("application", 1_500.0, flag));
    let pass: Vec<(Action, u16)> =
        if pass_all { vec![(Action::Pass, 0)] } else { (1..=3).map(|p| (Action::Pass, p)).collect() };
    let mut first = pass;
    first.push((Action::Reject, 4));
    c.policies.push(acnp("first", t, &first));
    c.policies.push(acnp("second", t + 1, &[(Action::Deny, 5), (Action::Allow, 0)]));
    c.policies.push(acnp("third", t + 2, &[(Action::Reject, 0)]));
    c
}

#[test]
fn a_pass_skips_the_later_antrea_tiers_to_network_policy() {
    let e = Engine::new(cluster(true, false));
    assert!(e.tier_list().iter().filter(|t| t.hold).count() >= 3, "{:?}", e.tier_list());
    let ex = check(
        &e,
        &[
            // Passed: securityops's allow and application's reject are skipped; the NetworkPolicy decides.
            ("n/client", "n/web", "1", true),
            ("n/client", "n/web", "2", false),
            // Rejected in emergency; dropped in securityops; allowed there (NetworkPolicy never consulted).
            ("n/client", "n/web", "4", false),
            ("n/client", "n/web", "5", false),
            ("n/client", "n/web", "80", true),
        ],
    );
    // The explanation says the rule passed and which tiers the flow skipped.
    let ingress = &ex[1].ingress;
    assert_eq!(ingress.decided_by, DecidedBy::NetworkPolicy, "{}", ex[1].render());
    let pass = &ingress.walk[0];
    assert_eq!(pass.action, Action::Pass);
    assert_eq!(pass.skipped_tiers, ["securityops", "Admin", "application"], "{}", ex[1].render());
    let text = ex[1].render();
    assert!(
        text.contains(": Pass, any peer, port 2/TCP")
            && text.contains("→ past tiers securityops, Admin, application (to the NetworkPolicy tier)"),
        "{text}"
    );
    assert!(!text.contains("acnp/second") && !text.contains("acnp/third"), "{text}");
    assert!(ex[2].render().contains("Reject"), "{}", ex[2].render());
    assert_eq!(ex[2].ingress.decided_by, DecidedBy::Rule);
}

#[test]
fn without_the_flag_a_pass_goes_on_to_the_next_tier() {
    // Calico's (and the admin tiers') Pass: securityops decides what emergency passes.
    let e = Engine::new(cluster(false, false));
    assert!(e.tier_list().iter().all(|t| !t.hold));
    let ex = check(
        &e,
        &[
            ("n/client", "n/web", "1", true),
            ("n/client", "n/web", "2", true),
            ("n/client", "n/web", "4", false),
            ("n/client", "n/web", "5", false),
        ],
    );
    assert!(ex[0].ingress.walk[0].skipped_tiers.is_empty());
    assert!(ex[0].render().contains("→ next tier"), "{}", ex[0].render());
}

#[test]
fn the_matrix_and_the_data_plane_hold_a_pass_too() {
    for (flag, pass_all) in [(true, false), (true, true), (false, false), (false, true)] {
        let e = Engine::new(cluster(flag, pass_all));
        let c = e.cluster();
        let (web, client) = (c.find_pod("n", "web").unwrap(), c.find_pod("n", "client").unwrap());
        let m = e.matrix(None).unwrap();
        let cell = m.port_sets.get(m.pod_cell(&e, client, web).unwrap()).clone();
        for port in [1u16, 2, 3, 4, 5, 6, 80] {
            let src = netpol_core::compile::Endpoint::Pod { pod: client, ip: None };
            let dst = netpol_core::compile::Endpoint::Pod { pod: web, ip: None };
            let want = netpol_core::reference::allowed(c, &src, &dst, Protocol::Tcp, port);
            assert_eq!(e.allowed(&src, &dst, Protocol::Tcp, port), want, "{flag} {pass_all} {port}");
            assert_eq!(cell.contains(Protocol::Tcp, port), want, "matrix {flag} {pass_all} {port}: {cell}");
        }
        // The data plane: the web pod's ingress profile's pass jumps past the held tiers' steps.
        let t = e.dataplane();
        let profile = t.profiles.iter().find(|p| p.dir == Direction::Ingress).unwrap();
        let pass = profile
            .steps
            .iter()
            .position(|s| matches!(s, netpol_core::dataplane::TableStep::Rule(r) if r.action == Action::Pass))
            .unwrap();
        let to = netpol_core::dataplane::pass_target(&profile.steps, pass);
        let next_rule = profile.steps[to..].iter().find_map(|s| match s {
            netpol_core::dataplane::TableStep::Rule(r) => Some(r.policy_ref.clone()),
            netpol_core::dataplane::TableStep::TierEnd { .. } => None,
        });
        let want = if flag { "n/web-1" } else { "acnp/second" };
        assert_eq!(next_rule.as_deref(), Some(want), "{flag}: {:#?}", profile.steps);
    }
}

/// Explain names an Antrea rule by its index in the object (each rule is a policy of netpol's own), and the
/// object's other rules are no tie of its priority.
#[test]
fn explain_names_the_rule_of_the_object() {
    let yaml = r#"
apiVersion: v1
kind: Namespace
metadata: {name: n}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: n, labels: {app: client}}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: n, labels: {app: web}}
status: {podIP: 10.0.0.2}
---
apiVersion: crd.antrea.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  priority: 5
  appliedTo: [{podSelector: {matchLabels: {app: web}}}]
  ingress:
  - action: Allow
    from: [{podSelector: {matchLabels: {app: other}}}]
  - action: Drop
    name: drop-client
    from: [{podSelector: {matchLabels: {app: client}}}]
"#;
    let loaded = load_str("a.yaml", yaml);
    assert!(
        loaded.diagnostics.iter().all(|d| d.severity != netpol_core::load::Severity::Error),
        "{:?}",
        loaded.diagnostics
    );
    let e = Engine::new(loaded.cluster);
    let ex = check(&e, &[("n/client", "n/web", "80", false)]);
    let deciding = ex[0].ingress.walk.iter().find(|m| m.action == Action::Deny).expect("the drop rule");
    assert_eq!((deciding.field.as_str(), deciding.rule), ("spec.ingress[1]", 1), "{}", ex[0].render());
    assert!(deciding.tie.is_empty(), "{:?}", deciding.tie);
    let text = ex[0].render();
    assert!(text.contains("drop-client") && text.contains("Drop"), "{text}");
}
