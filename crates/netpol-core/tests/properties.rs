//! Property tests: on random clusters, the compiled engine, the explanation and the matrix agree with the
//! naive reference evaluator on every flow.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::IpAddr;

use ipnet::IpNet;
use netpol_core::compile::{Endpoint, Engine};
use netpol_core::model::*;
use netpol_core::portset::Protocol;
use netpol_core::reference;
use netpol_core::verdict::Verdict;
use proptest::prelude::*;

mod common;
use common::{labels, selector, Rng, NS_KEYS, POD_KEYS};

const PROTOS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
const PORTS: [u16; 6] = [53, 70, 80, 81, 90, 100];

fn ip(r: &mut Rng, i: usize) -> Option<IpAddr> {
    match r.below(6) {
        0 => None,
        1 => Some(format!("fd00::{}", i + 1).parse().unwrap()),
        _ => Some(format!("10.0.0.{}", i * 16 + 1 + r.below(15)).parse().unwrap()),
    }
}

fn ip_block(r: &mut Rng) -> IpBlock {
    if r.chance(25) {
        let cidr: IpNet = "fd00::/120".parse().unwrap();
        let except = if r.chance(50) { vec!["fd00::/126".parse().unwrap()] } else { vec![] };
        return IpBlock { cidr, except };
    }
    let prefix = *r.pick(&[24u8, 25, 26, 28]);
    let base = (r.below(4) * 64) as u8;
    let cidr = IpNet::new(format!("10.0.0.{base}").parse().unwrap(), prefix).unwrap().trunc();
    let mut except = Vec::new();
    if r.chance(40) && prefix < 30 {
        let IpNet::V4(c) = cidr else { unreachable!() };
        let sub = c.subnets(prefix + 2).unwrap().nth(r.below(4)).unwrap();
        except.push(IpNet::V4(sub));
    }
    IpBlock { cidr, except }
}

fn rule(r: &mut Rng) -> Rule {
    let mut rule = Rule::default();
    for _ in 0..r.below(3) {
        rule.peers.push(if r.chance(25) {
            Peer::IpBlock(ip_block(r))
        } else {
            let namespaces = r.chance(60).then(|| selector(r, NS_KEYS));
            let pods = if namespaces.is_none() || r.chance(50) { Some(selector(r, POD_KEYS)) } else { None };
            Peer::Selectors { namespaces, pods }
        });
    }
    for _ in 0..r.below(3) {
        let protocol = *r.pick(&PROTOS);
        let port = match r.below(4) {
            0 => PortMatch::Any,
            1 => {
                let lo = *r.pick(&PORTS);
                PortMatch::Range(lo, lo + r.below(25) as u16)
            }
            2 => PortMatch::Range(*r.pick(&PORTS), 0).clone(),
            _ => PortMatch::Named(r.pick(&["http", "dns", "metrics", "sctp"]).to_string()),
        };
        let port = match port {
            PortMatch::Range(lo, 0) => PortMatch::Range(lo, lo),
            p => p,
        };
        rule.ports.push(PolicyPort { protocol, port });
    }
    rule
}

fn cluster(seed: u64) -> Cluster {
    let mut r = Rng(seed);
    let mut c = Cluster::default();
    for i in 0..1 + r.below(3) {
        let mut l = labels(&mut r, NS_KEYS);
        l.insert("kubernetes.io/metadata.name".into(), format!("ns{i}"));
        c.namespaces.push(Namespace { name: format!("ns{i}"), labels: l, origin: None });
    }
    let port_choices = [
        ("http", 80, Protocol::Tcp),
        ("http", 81, Protocol::Tcp),
        ("dns", 53, Protocol::Udp),
        ("metrics", 90, Protocol::Tcp),
        ("sctp", 70, Protocol::Sctp),
    ];
    for i in 0..1 + r.below(8) {
        let mut ports: Vec<ContainerPort> = Vec::new();
        for (n, p, proto) in port_choices {
            if r.chance(35) && !ports.iter().any(|x| x.name.as_deref() == Some(n)) {
                ports.push(ContainerPort { name: Some(n.to_string()), port: p, protocol: proto });
            }
        }
        let ips = ip(&mut r, i).into_iter().collect();
        c.pods.push(Pod {
            ns: r.below(c.namespaces.len()) as NsId,
            name: format!("p{i}"),
            labels: labels(&mut r, POD_KEYS),
            ports,
            ips,
            host_network: r.chance(8),
            source: PodSource { kind: "Pod".into(), origin: Origin::default() },
        });
    }
    for i in 0..r.below(7) {
        let ingress: Vec<Rule> = (0..r.below(3)).map(|_| rule(&mut r)).collect();
        let egress: Vec<Rule> = (0..r.below(3)).map(|_| rule(&mut r)).collect();
        let (ai, ae) = match r.below(3) {
            0 => (true, false),
            1 => (false, true),
            _ => (true, true),
        };
        c.policies.push(Policy {
            ns: r.below(c.namespaces.len()) as NsId,
            name: format!("pol{i}"),
            pod_selector: selector(&mut r, POD_KEYS),
            ingress,
            egress,
            affects_ingress: ai,
            affects_egress: ae,
            origin: Origin::default(),
        });
    }
    c
}

fn endpoints(e: &Engine) -> Vec<Endpoint> {
    let mut v: Vec<Endpoint> = (0..e.cluster.pods.len() as PodId).map(|pod| Endpoint::Pod { pod, ip: None }).collect();
    for (pod, p) in e.cluster.pods.iter().enumerate() {
        for ip in &p.ips {
            v.push(Endpoint::Pod { pod: pod as PodId, ip: Some(*ip) });
        }
    }
    for ext in ["10.0.0.200", "10.0.0.3", "fd00::99", "192.0.2.1"] {
        v.push(e.endpoint_for_ip(ext.parse().unwrap()));
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn engine_and_explanation_agree_with_reference(seed in any::<u64>()) {
        let e = Engine::new(cluster(seed));
        let eps = endpoints(&e);
        for s in &eps {
            for d in &eps {
                for proto in PROTOS {
                    for port in [53u16, 70, 80, 81, 90, 95, 100, 124, 125, 200] {
                        let want = reference::allowed(&e.cluster, s, d, proto, port);
                        prop_assert_eq!(e.allowed(s, d, proto, port), want, "engine {:?} -> {:?} {}/{}", s, d, port, proto);
                        let ex = e.explain(s, d, proto, port);
                        prop_assert_eq!(ex.verdict, Verdict::from_bool(want), "explain\n{}", ex.render());
                    }
                }
            }
        }
    }

    #[test]
    fn matrix_agrees_with_reference(seed in any::<u64>()) {
        let e = Engine::new(cluster(seed));
        let mut m = e.matrix(None).unwrap();
        let n = e.cluster.pods.len() as PodId;
        for a in 0..n {
            for b in 0..n {
                let cell = m.pod_cell(&e, a, b).unwrap();
                let set = m.port_sets.get(cell).clone();
                for proto in PROTOS {
                    for port in [1u16, 53, 70, 80, 81, 90, 95, 100, 124, 125, 200, 65535] {
                        let want = reference::allowed(
                            &e.cluster, &Endpoint::Pod { pod: a, ip: None }, &Endpoint::Pod { pod: b, ip: None }, proto, port);
                        prop_assert_eq!(set.contains(proto, port), want, "matrix {} -> {} {}/{}: {}", a, b, port, proto, set);
                    }
                }
            }
        }
        // Pair counts add up to all ordered pairs of distinct pods, and match a direct count.
        let counts = m.pair_counts(&e);
        let total: u64 = counts.values().sum();
        prop_assert_eq!(total, u64::from(n) * u64::from(n.saturating_sub(1)));
        let mut direct: std::collections::HashMap<netpol_core::portset::PortSet, u64> = Default::default();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    *direct.entry(m.port_sets.get(m.pod_cell(&e, a, b).unwrap()).clone()).or_default() += 1;
                }
            }
        }
        let by_set: std::collections::HashMap<_, u64> =
            counts.iter().map(|(&c, &k)| (m.port_sets.get(c).clone(), k)).collect();
        prop_assert_eq!(&by_set, &direct);
        // The streaming path (cells not stored) gives the same counts.
        let mut streamed = e.matrix_with_limit(None, 0).unwrap();
        prop_assert!(!streamed.is_stored());
        let sc = streamed.pair_counts(&e);
        let by_set_streamed: std::collections::HashMap<_, u64> =
            sc.iter().map(|(&c, &k)| (streamed.port_sets.get(c).clone(), k)).collect();
        prop_assert_eq!(&by_set_streamed, &direct);
    }
}
