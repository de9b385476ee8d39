//! An ipBlock with 45,000 `except` entries (spread /32s, /24s, /20s with /32s and /28s nested inside them, the
//! pod CIDR): the engine, the explanation, `outside::allowed_ports` and the diff's outside groups agree with the
//! reference evaluator on sampled addresses. A correctness test: the speed is measured by the engine benchmark.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use netpol_core::compile::{Endpoint, Engine};
use netpol_core::diff::{diff, Change, DiffOptions, OutsideGroup};
use netpol_core::model::*;
use netpol_core::outside::{allowed_ports, Segments};
use netpol_core::portset::Protocol;
use netpol_core::reference;
use netpol_core::selector::{Requirement, Selector};
use netpol_core::verdict::Verdict;

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

fn net(n: u32, prefix: u8) -> IpNet {
    IpNet::new(v4(n), prefix).unwrap()
}

const A100_64: u32 = 0x6440_0000; // 100.64.0.0
const A172_16: u32 = 0xac10_0000; // 172.16.0.0
const A11: u32 = 0x0b00_0000; // 11.0.0.0

/// 45,000 exceptions, unsorted, overlapping and nested.
fn long_except() -> Vec<IpNet> {
    let mut ex: Vec<IpNet> = Vec::with_capacity(45_000);
    ex.extend((0..38_000u32).map(|i| net(A100_64 + i * 7, 32)));
    ex.extend((0..4_000u32).map(|i| net(A172_16 + ((i * 2) << 8), 24)));
    ex.extend((0..1_000u32).map(|i| net(A11 + ((i * 2) << 12), 20)));
    // Nested in the /20s above: a /32 in each, and a /28 at the start of each but the last.
    ex.extend((0..1_000u32).map(|i| net(A11 + ((i * 2) << 12) + 77, 32)));
    ex.extend((0..999u32).map(|i| net(A11 + ((i * 2) << 12), 28)));
    ex.push(net(0x0af4_0000, 16)); // 10.244.0.0/16, the pod CIDR
                                   // Reverse order: the engine sorts.
    ex.reverse();
    assert_eq!(ex.len(), 45_000);
    ex
}

fn sel(k: &str, v: &str) -> Selector {
    Selector::from_requirements(vec![Requirement::In(k.into(), vec![v.into()])])
}

fn pod(name: &str, app: &str, ip: &str) -> Pod {
    Pod {
        ns: NsId::new(0),
        name: name.into(),
        labels: [("app".to_string(), app.to_string())].into_iter().collect(),
        ports: Vec::new().into(),
        ips: vec![ip.parse().unwrap()],
        host_network: false,
        node: None,
        service_account: "default".into(),
        source: PodSource { kind: "Pod", origin: Origin::default() },
    }
}

fn base() -> Cluster {
    let mut c = Cluster::default();
    let labels = [("kubernetes.io/metadata.name".to_string(), "a".to_string())].into_iter().collect();
    c.namespaces.push(Namespace { name: "a".into(), labels, origin: None });
    c.pods = vec![
        pod("web", "web", "10.244.0.5"),    // in the excepted pod CIDR
        pod("db", "db", "172.16.3.9"),      // in a /24 gap: inside the block
        pod("edge", "edge", "100.64.0.14"), // an excepted /32
        pod("batch", "batch", "11.0.1.3"),  // in an excepted /20
    ];
    c
}

fn with_policies(mut c: Cluster) -> Cluster {
    let big = Peer::IpBlock(IpBlock { cidr: "0.0.0.0/0".parse().unwrap(), except: long_except() });
    // A second, overlapping block: 11.0.0.0/12 minus nested exceptions.
    let small = Peer::IpBlock(IpBlock {
        cidr: net(A11, 12),
        except: vec![net(A11, 16), net(A11 + 0x100, 24), net(A11 + (3 << 16), 16)],
    });
    let port = |p: u16| PolicyPort { protocol: Protocol::Tcp, port: PortMatch::Range(p, p) };
    let policy = |name: &str, app: &str, ingress: Vec<Rule>, egress: Vec<Rule>| Policy {
        host: Default::default(),
        position: 0,
        manifest: None,
        kind: PolicyKind::NetworkPolicy,
        tier: PolicyTier::NetworkPolicy,
        order: 1000.into(),
        calico_selector: None,
        scope: Scope::Namespace(NsId::new(0)),
        name: name.into(),
        pod_selector: sel("app", app),
        affects_ingress: !ingress.is_empty(),
        affects_egress: !egress.is_empty(),
        ingress,
        egress,
        origin: Origin::default(),
    };
    c.policies = vec![
        policy(
            "web-out",
            "web",
            vec![],
            vec![Rule { peers: vec![big.clone()], ports: vec![port(443)], ..Default::default() }],
        ),
        policy(
            "web-out-11",
            "web",
            vec![],
            vec![Rule { peers: vec![small.clone()], ports: vec![port(8080)], ..Default::default() }],
        ),
        policy(
            "db-in",
            "db",
            vec![
                Rule { peers: vec![big], ports: vec![port(5432)], ..Default::default() },
                Rule { peers: vec![small], ports: vec![], ..Default::default() },
            ],
            vec![],
        ),
    ];
    c
}

/// Addresses around the exceptions (every 97th, and every 10th of the nested /28s), in the gaps, pods' IPs, and
/// pseudo-random addresses of the areas involved and of the whole space.
fn samples() -> Vec<IpAddr> {
    let mut v: Vec<u32> = Vec::new();
    for (i, e) in long_except().iter().enumerate() {
        if i % 97 == 0 || e.prefix_len() == 28 && i % 10 == 0 {
            let (IpAddr::V4(lo), IpAddr::V4(hi)) = (e.network(), e.broadcast()) else { unreachable!() };
            let (lo, hi) = (u32::from(lo), u32::from(hi));
            v.extend([lo.wrapping_sub(1), lo, lo + 1, hi, hi.wrapping_add(1)]);
        }
    }
    v.extend([A11 + 76, A11 + 77, A11 + 78, A11 + (1 << 12) + 77, A11 + (1 << 16), A11 + (3 << 16) - 1]);
    v.extend([0, u32::MAX, 0x0af4_0005, 0xac10_0309, 0x6440_000e, 0x0b00_0103]);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for k in 0..1_200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let r = x as u32;
        v.push(match k % 4 {
            0 => A100_64 + r % (38_000 * 7 + 64),
            1 => A172_16 + r % (8_000 << 8),
            2 => A11 + r % (1 << 21),
            _ => r,
        });
    }
    v.sort_unstable();
    v.dedup();
    v.into_iter().map(v4).collect()
}

/// `10.0.0.0/8` or `FIRST-LAST` (the diff's address texts) as (first, last).
fn text_range(text: &str) -> (IpAddr, IpAddr) {
    if let Ok(net) = text.parse::<IpNet>() {
        return (net.network(), net.broadcast());
    }
    let (a, b) = text.split_once('-').expect("FIRST-LAST");
    (a.parse().unwrap(), b.parse().unwrap())
}

const PORTS: [u16; 4] = [443, 5432, 8080, 80];

#[test]
fn a_long_except_list_agrees_with_reference() {
    let e = Engine::new(with_policies(base()));
    let c = &e.cluster();
    let web = c.find_pod("a", "web").unwrap();
    let db = c.find_pod("a", "db").unwrap();
    let me = |p: PodId| Endpoint::Pod { pod: p, ip: None };
    let samples = samples();
    assert!(samples.len() > 2_000, "{}", samples.len());
    let segs = Segments::new(&[&e]);
    let web_out = allowed_ports(&e, e.pod_identity(web), Direction::Egress, &segs);
    let db_in = allowed_ports(&e, e.pod_identity(db), Direction::Ingress, &segs);
    let old = Engine::new(base());
    let d = diff(&old, &e, &DiffOptions::default());
    // Each group's addresses (CIDRs or `FIRST-LAST`), parsed once into sorted ranges.
    let groups: Vec<(&OutsideGroup, Vec<(IpAddr, IpAddr)>)> = d
        .outside
        .iter()
        .map(|g| {
            let mut r: Vec<(IpAddr, IpAddr)> = g.addresses.iter().map(|a| text_range(a)).collect();
            r.sort_unstable();
            (g, r)
        })
        .collect();
    let (mut allowed_443, mut denied_443) = (0, 0);
    for &ip in &samples {
        let x = e.endpoint_for_ip(ip);
        // The reference is O(k) per address: each flow is asked once and its answer checked three ways.
        for (dir, name, p) in [(Direction::Egress, "a/web", web), (Direction::Ingress, "a/db", db)] {
            let (s, d_) = match dir {
                Direction::Egress => (me(p), x),
                Direction::Ingress => (x, me(p)),
            };
            let ports = match dir {
                Direction::Egress => &web_out,
                Direction::Ingress => &db_in,
            };
            for port in PORTS {
                let want = reference::allowed(c, &s, &d_, Protocol::Tcp, port);
                // The engine's verdict.
                assert_eq!(e.allowed(&s, &d_, Protocol::Tcp, port), want, "{s:?} -> {d_:?} {port}");
                if port == 443 && dir == Direction::Egress {
                    if want {
                        allowed_443 += 1;
                    } else {
                        denied_443 += 1;
                    }
                }
                if !matches!(x, Endpoint::External(_)) {
                    continue;
                }
                // The outside segment containing the address: the ports of `outside::allowed_ports`.
                let i = segs.ranges.partition_point(|r| r.0 <= ip) - 1;
                assert!(segs.ranges[i].0 <= ip && ip <= segs.ranges[i].1);
                assert_eq!(ports[i].contains(Protocol::Tcp, port), want, "{name} {dir:?} {ip} {port}");
                // What-if: the diff from the cluster without the policies (which allows everything).
                let was = reference::allowed(old.cluster(), &s, &d_, Protocol::Tcp, port);
                let reported = |change: Change| {
                    groups.iter().any(|(g, ranges)| {
                        let i = ranges.partition_point(|r| r.0 <= ip);
                        g.change == change
                            && g.direction == dir
                            && g.pods.iter().any(|n| n == name)
                            && g.ports.contains(Protocol::Tcp, port)
                            && i > 0
                            && ip <= ranges[i - 1].1
                    })
                };
                assert_eq!(reported(Change::NewlyDenied), was && !want, "{name} {dir:?} {ip} {port}");
                assert_eq!(reported(Change::NewlyAllowed), !was && want, "{name} {dir:?} {ip} {port}");
            }
        }
        if ip.to_string().ends_with(".77") || ip == v4(A11 + 76) {
            let ex = e.explain(&me(web), &x, Protocol::Tcp, 443);
            assert_eq!(ex.verdict, Verdict::from_bool(e.allowed(&me(web), &x, Protocol::Tcp, 443)));
        }
    }
    assert!(allowed_443 > 500 && denied_443 > 500, "{allowed_443} allowed, {denied_443} denied");
    // Pod to pod: web's IP is excepted, db's is in a gap of the big block.
    for port in PORTS {
        for (s, d_) in [(me(web), me(db)), (me(db), me(web))] {
            assert_eq!(e.allowed(&s, &d_, Protocol::Tcp, port), reference::allowed(c, &s, &d_, Protocol::Tcp, port));
        }
    }
}
