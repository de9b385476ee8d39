//! The CNI's reading of NetworkPolicy v1's corners (`netpol_core::cni`): an ipBlock that covers a pod's or a
//! node's address, a node's traffic to its own pods, hostNetwork pods; the engine against the reference for each
//! CNI on random clusters.

use netpol_core::cni::{Cni, CniSource};
use netpol_core::compile::{Endpoint, Engine, FlowInfo};
use netpol_core::load::load_str;
use netpol_core::model::*;
use netpol_core::portset::Protocol;
use netpol_core::reference;
use netpol_core::verdict::Verdict;
use proptest::prelude::*;

use crate::common::{cluster, endpoints, Rng, PROTOS};

/// Two nodes; `api` and `db` on n1, `web` on n2, `agent` a hostNetwork pod of n1.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.1.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 10.1.0.2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {nodeName: n2}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.5}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: shop, labels: {app: agent}}
spec: {nodeName: n1, hostNetwork: true}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/24, except: [10.0.0.2/32]}}, {ipBlock: {cidr: 10.1.0.0/24}}, {ipBlock: {cidr: 192.0.2.0/24}}]
"#;

fn engine(cni: Cni) -> Engine {
    Engine::with_cni(load_str("c.yaml", CLUSTER).cluster, Some(cni))
}

fn allowed(e: &Engine, from: &str, to: &str) -> bool {
    let src = e.parse_endpoint(from, "shop").unwrap();
    let dst = e.parse_endpoint(to, "shop").unwrap();
    let got = e.allowed(&src, &dst, Protocol::Tcp, 5432);
    let want = reference::allowed_flow_cni(e.cluster(), e.cni(), &src, &dst, FlowInfo::default(), Protocol::Tcp, 5432);
    assert_eq!(got, want, "{from} -> {to} ({}): engine and reference", e.cni());
    assert_eq!(e.explain(&src, &dst, Protocol::Tcp, 5432).verdict, Verdict::from_bool(got), "explain {from} -> {to}");
    got
}

#[test]
fn an_ip_block_covering_a_pod_matches_it_except_with_cilium() {
    // Generic and Calico: an address in the ipBlock (Kubernetes' reading; Felix's `nets`).
    for cni in [Cni::Generic, Cni::Calico] {
        let e = engine(cni);
        assert!(allowed(&e, "api", "db"), "{cni}");
        assert!(!allowed(&e, "web", "db"), "{cni}: the exception");
        assert!(allowed(&e, "192.0.2.7", "db"), "{cni}");
    }
    // Cilium: the pod has an identity, which no CIDR selects; an address outside the cluster still matches.
    let e = engine(Cni::Cilium);
    assert!(!allowed(&e, "api", "db"));
    assert!(allowed(&e, "192.0.2.7", "db"));
    let src = e.parse_endpoint("api", "shop").unwrap();
    let dst = e.parse_endpoint("db", "shop").unwrap();
    let text = e.explain(&src, &dst, Protocol::Tcp, 5432).render();
    assert!(text.contains("which Cilium selects only by identity"), "{text}");
}

#[test]
fn an_ip_block_covering_a_node_matches_it_except_with_cilium() {
    // 10.1.0.2 is node n2 (not db's node): only the ipBlock can let it in.
    assert!(allowed(&engine(Cni::Generic), "10.1.0.2", "db"));
    assert!(allowed(&engine(Cni::Calico), "10.1.0.2", "db"));
    assert!(!allowed(&engine(Cni::Cilium), "10.1.0.2", "db"));
}

#[test]
fn a_node_reaches_its_own_pods_with_cilium_and_calico_not_generic() {
    let deny_all = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: shop}
spec: {podSelector: {}}
"#;
    let c = load_str("c.yaml", &format!("{CLUSTER}---\n{deny_all}")).cluster;
    for (cni, own) in [(Cni::Generic, false), (Cni::Cilium, true), (Cni::Calico, true), (Cni::Antrea, true)] {
        let e = Engine::with_cni(c.clone(), Some(cni));
        assert_eq!(allowed(&e, "10.1.0.1", "api"), own, "{cni}: the node of api");
        // A hostNetwork pod of the node is the node.
        assert_eq!(allowed(&e, "agent", "api"), own, "{cni}: a hostNetwork pod of api's node");
        assert!(!allowed(&e, "10.1.0.2", "api"), "{cni}: another node");
        assert!(!allowed(&e, "web", "api"), "{cni}");
    }
}

#[test]
fn auto_picks_cilium_then_calico_then_generic() {
    let c = load_str("c.yaml", CLUSTER).cluster;
    let e = Engine::new(c.clone());
    assert_eq!(
        (e.cni(), e.cni_source()),
        (Cni::Generic, CniSource::Auto("no Cilium, Calico or Antrea objects or agents".into()))
    );
    let gnp =
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {selector: all()}\n";
    let e = Engine::new(load_str("c.yaml", &format!("{CLUSTER}---\n{gnp}")).cluster);
    assert_eq!(e.cni(), Cni::Calico);
    let cnp = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: c, namespace: shop}\n\
               spec: {endpointSelector: {}, ingress: [{}]}\n";
    let e = Engine::new(load_str("c.yaml", &format!("{CLUSTER}---\n{gnp}---\n{cnp}")).cluster);
    assert_eq!(e.cni(), Cni::Cilium);
    let e = Engine::with_cni(c, Some(Cni::Calico));
    assert_eq!((e.cni(), e.cni_source(), e.cni_choice()), (Cni::Calico, CniSource::Given, Some(Cni::Calico)));
}

/// Cilium's agent as its Helm chart installs it (the DaemonSet `cilium`, pods labelled `k8s-app: cilium`).
const CILIUM_AGENT: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: cilium, namespace: kube-system}\n\
    spec:\n  selector: {matchLabels: {k8s-app: cilium}}\n  template:\n    metadata: {labels: {k8s-app: cilium, \
    app.kubernetes.io/name: cilium-agent}}\n    spec: {hostNetwork: true, containers: [{name: cilium-agent}]}\n";
/// Calico's node agent as the Tigera operator installs it (in calico-system).
const CALICO_AGENT: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: calico-node, namespace: calico-system}\n\
    spec:\n  selector: {matchLabels: {k8s-app: calico-node}}\n  template:\n    metadata: {labels: {k8s-app: calico-node}}\n\
    \x20   spec: {hostNetwork: true, containers: [{name: calico-node}]}\n";

fn auto_of(docs: &[&str]) -> (Cni, CniSource) {
    let l = load_str("c.yaml", &docs.join("---\n"));
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let e = Engine::new(l.cluster);
    (e.cni(), e.cni_source())
}

#[test]
fn auto_finds_cilium_from_its_agent_daemonset() {
    assert_eq!(
        auto_of(&[CLUSTER, CILIUM_AGENT]),
        (Cni::Cilium, CniSource::Auto("DaemonSet kube-system/cilium (k8s-app=cilium)".into()))
    );
}

#[test]
fn auto_finds_calico_from_its_node_agent() {
    assert_eq!(
        auto_of(&[CLUSTER, CALICO_AGENT]),
        (Cni::Calico, CniSource::Auto("DaemonSet calico-system/calico-node (k8s-app=calico-node)".into()))
    );
    // A live cluster's agent is a pod (here in kube-system, as the manifests install it).
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: calico-node-x7k2p, namespace: kube-system, labels: \
               {k8s-app: calico-node, pod-template-generation: \"1\"}}\nspec: {nodeName: n1, hostNetwork: true}\n";
    assert_eq!(
        auto_of(&[CLUSTER, pod]),
        (Cni::Calico, CniSource::Auto("pod kube-system/calico-node-x7k2p (k8s-app=calico-node)".into()))
    );
}

#[test]
fn auto_needs_the_agents_own_label() {
    // A look-alike name or another label value is not an agent.
    let other = CILIUM_AGENT.replace("k8s-app: cilium", "k8s-app: cilium-operator");
    assert_eq!(auto_of(&[CLUSTER, &other]).0, Cni::Generic);
}

#[test]
fn auto_prefers_policies_and_objects_to_agents_and_cilium_to_calico() {
    let gnp =
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {selector: all()}\n";
    let cnp = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: c, namespace: shop}\n\
               spec: {endpointSelector: {}, ingress: [{}]}\n";
    // Calico's objects win over Cilium's agent, Cilium's policies over Calico's agent.
    assert_eq!(auto_of(&[CLUSTER, CILIUM_AGENT, gnp]), (Cni::Calico, CniSource::Auto("Calico objects present".into())));
    assert_eq!(
        auto_of(&[CLUSTER, CALICO_AGENT, cnp]),
        (Cni::Cilium, CniSource::Auto("Cilium policies present".into()))
    );
    // Both agents (a migration): Cilium's first.
    assert_eq!(auto_of(&[CLUSTER, CALICO_AGENT, CILIUM_AGENT]).0, Cni::Cilium);
    // --cni wins over everything.
    let e = Engine::with_cni(load_str("c.yaml", &[CLUSTER, CILIUM_AGENT].join("---\n")).cluster, Some(Cni::Calico));
    assert_eq!((e.cni(), e.cni_source()), (Cni::Calico, CniSource::Given));
}

#[test]
fn an_agent_arriving_on_a_live_cluster_switches_the_auto_cni() {
    use netpol_core::update::Change;
    let mut e = Engine::new(load_str("c.yaml", CLUSTER).cluster);
    assert_eq!(e.cni(), Cni::Generic);
    assert!(allowed(&e, "api", "db"), "generic: an ipBlock covers api's address");
    let pod = load_str(
        "p.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: cilium-abcde, namespace: kube-system, labels: {k8s-app: cilium}}\n\
         spec: {nodeName: n1, hostNetwork: true}\n",
    )
    .cluster
    .pods[0]
    .clone();
    let stats = e.update(vec![Change::PutPod { namespace: "kube-system".into(), pod }]);
    assert!(stats.recompiled);
    assert_eq!(
        (e.cni(), e.cni_source()),
        (Cni::Cilium, CniSource::Auto("pod kube-system/cilium-abcde (k8s-app=cilium)".into()))
    );
    assert!(!allowed(&e, "api", "db"), "cilium: no CIDR selects a pod");
    e.update(vec![Change::DeletePod { namespace: "kube-system".into(), name: "cilium-abcde".into() }]);
    assert_eq!(e.cni(), Cni::Generic);
    assert!(allowed(&e, "api", "db"));
}

#[test]
fn a_cilium_engine_updated_in_place_answers_as_a_fresh_one() {
    use netpol_core::update::Change;
    let mut e = engine(Cni::Cilium);
    let more = load_str("m.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: api, namespace: shop}\n\
                                   spec: {podSelector: {matchLabels: {app: api}}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/24}}]}]}\n");
    let policy = more.cluster.policies[0].clone();
    e.update(vec![Change::PutPolicy { namespace: "shop".into(), policy }]);
    assert_eq!(e.cni(), Cni::Cilium);
    assert!(!allowed(&e, "web", "api"), "the new ipBlock does not select the pod web");
    assert!(allowed(&e, "10.0.0.77", "api"));
}

/// `cluster(seed)` with its pods spread over its nodes (so that nodes reach pods of their own).
fn cluster_on_nodes(seed: u64) -> Cluster {
    let mut c = cluster(seed);
    let mut r = Rng(seed ^ 0x5eed);
    let nodes: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    for p in c.pods.iter_mut().filter(|p| !p.host_network) {
        if !nodes.is_empty() && r.chance(70) {
            p.node = Some(r.pick(&nodes).clone());
        }
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Engine, explanation and matrix against the reference, per CNI, on clusters whose ipBlocks cover pods' and
    /// nodes' addresses and whose nodes have pods (flows from node addresses and hostNetwork pods included).
    #[test]
    fn each_cni_agrees_with_the_reference(seed in any::<u64>()) {
        let c = cluster_on_nodes(seed);
        for cni in Cni::ALL {
            let e = Engine::with_cni(c.clone(), Some(cni));
            let eps = endpoints(&e);
            for s in &eps {
                for d in &eps {
                    for proto in PROTOS {
                        for port in [22u16, 53, 80, 81, 100, 200] {
                            let want = reference::allowed_flow_cni(e.cluster(), cni, s, d, FlowInfo::default(), proto, port);
                            prop_assert_eq!(e.allowed(s, d, proto, port), want, "{} engine {:?} -> {:?} {}/{}", cni, s, d, port, proto);
                            let ex = e.explain(s, d, proto, port);
                            prop_assert_eq!(ex.verdict, Verdict::from_bool(want), "{} explain\n{}", cni, ex.render());
                        }
                    }
                }
            }
            let skip = e.pods_with_host_checks();
            let m = e.matrix(None).unwrap();
            let n = e.cluster().pods.len();
            for a in (0..n).map(PodId::new).filter(|p| !skip.contains(p)) {
                for b in (0..n).map(PodId::new).filter(|p| !skip.contains(p)) {
                    let set = m.port_sets.get(m.pod_cell(&e, a, b).unwrap()).clone();
                    for port in [53u16, 80, 100] {
                        let (s, d) = (Endpoint::Pod { pod: a, ip: None }, Endpoint::Pod { pod: b, ip: None });
                        let want = reference::allowed_flow_cni(e.cluster(), cni, &s, &d, FlowInfo::default(), Protocol::Tcp, port);
                        prop_assert_eq!(set.contains(Protocol::Tcp, port), want, "{} matrix {} -> {} {}", cni, a, b, port);
                    }
                }
            }
        }
    }
}

#[test]
fn disagreements_list_the_ip_block_over_pods_and_the_nodes_own_pods() {
    let e = Engine::new(load_str("c.yaml", CLUSTER).cluster);
    let rows = netpol_core::cni::disagreements(&e).unwrap();
    let row = |src: &str, dst: &str| rows.iter().find(|r| r.src == src && r.dst == dst);
    // api → db: the ipBlock covers api's address (generic, calico and antrea allow, cilium not).
    let r = row("shop/api", "shop/db").expect("api -> db");
    assert_eq!(r.allowed.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>(), ["all", "none", "all", "all"]);
    assert!(r.reason.contains("which Cilium selects only by identity"), "{}", r.reason);
    // n1 → db: the ipBlock 10.1.0.0/24 covers the node (generic, calico), and Cilium lets db's own node in anyway.
    assert!(row("node n1 (10.1.0.1)", "shop/db").is_none(), "{rows:?}");
    // n2 → db: the ipBlock covers n2's address: generic and calico allow, cilium denies.
    let r = row("node n2 (10.1.0.2)", "shop/db").expect("n2 -> db");
    assert_eq!(r.allowed[1].1, "none", "{r:?}");
    // web → db: the exception: all deny.
    assert!(row("shop/web", "shop/db").is_none());
    // Nothing differs in a cluster without ipBlocks or isolated pods on nodes.
    let plain = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\n\
                 metadata: {name: p, namespace: a}\nstatus: {podIP: 10.0.0.1}\n";
    assert!(netpol_core::cni::disagreements(&Engine::new(load_str("p.yaml", plain).cluster)).unwrap().is_empty());
}

/// netpol's own agent (`--cni netpol`, or its DaemonSet among the pods): the generic reading, but a node's own
/// traffic to its pods (kubelet probes) is exempt by source address, and explain says so; the reference evaluator
/// agrees.
#[test]
fn the_netpol_agent_exempts_a_nodes_own_traffic_to_its_pods() {
    use netpol_core::cni::Cni;
    use netpol_core::compile::{Endpoint, Engine};
    use netpol_core::portset::Protocol;
    let yaml = "
apiVersion: v1
kind: Node
metadata: {name: n1}
status: {addresses: [{type: InternalIP, address: 10.85.255.1}]}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: n}
spec: {nodeName: n1}
status: {podIP: 10.85.0.1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: n}
spec: {podSelector: {}, policyTypes: [Ingress]}
";
    let cluster = netpol_core::load::load_str("c.yaml", yaml).cluster;
    let node = Endpoint::External("10.85.255.1".parse().unwrap());
    let other = Endpoint::External("10.85.255.2".parse().unwrap());
    let a = Endpoint::Pod { pod: netpol_core::model::PodId::new(0), ip: None };
    let generic = Engine::with_cni(cluster.clone(), Some(Cni::Generic));
    let agent = Engine::with_cni(cluster.clone(), Some(Cni::Netpol));
    assert!(!generic.allowed(&node, &a, Protocol::Tcp, 8080));
    assert!(agent.allowed(&node, &a, Protocol::Tcp, 8080));
    assert!(!agent.allowed(&other, &a, Protocol::Tcp, 8080), "only the pod's own node");
    for (e, want) in [(&generic, false), (&agent, true)] {
        assert_eq!(
            netpol_core::reference::allowed_flow_cni(
                e.cluster(),
                e.cni(),
                &node,
                &a,
                Default::default(),
                Protocol::Tcp,
                8080
            ),
            want
        );
    }
    let ex = agent.explain(&node, &a, Protocol::Tcp, 8080);
    let note = ex.ingress.note.unwrap_or_default();
    assert!(note.contains("the netpol agent exempts a node's own traffic to its pods"), "{note}");
    // Its DaemonSet among the workloads chooses it.
    let ds = "
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: netpol-agent, namespace: netpol}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: netpol-agent}}
  template:
    metadata: {labels: {app.kubernetes.io/name: netpol-agent}}
    spec: {hostNetwork: true, containers: [{name: agent, image: netpol-agent}]}
";
    let with_agent = netpol_core::load::load_str("c.yaml", &format!("{yaml}{ds}")).cluster;
    let (cni, why) = Cni::auto(&with_agent);
    assert_eq!(cni, Cni::Netpol, "{why}");
    assert!(why.contains("netpol-agent"), "{why}");
    assert_eq!("netpol".parse::<Cni>().unwrap(), Cni::Netpol);
}
