//! Property tests: on random clusters, the compiled engine, the explanation and the matrix agree with the
//! naive reference evaluator on every flow.

use netpol_core::compile::{Endpoint, Engine, FlowInfo};
use netpol_core::model::*;
use netpol_core::portset::Protocol;
use netpol_core::reference;
use netpol_core::verdict::Verdict;
use proptest::prelude::*;

use crate::common::{cluster, endpoints, NAMES, PROTOS};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn engine_and_explanation_agree_with_reference(seed in any::<u64>()) {
        let e = Engine::new(cluster(seed));
        let eps = endpoints(&e);
        for s in &eps {
            for d in &eps {
                for proto in PROTOS {
                    for port in [22u16, 53, 70, 80, 81, 90, 95, 100, 124, 125, 200] {
                        let want = reference::allowed(e.cluster(), s, d, proto, port);
                        prop_assert_eq!(e.allowed(s, d, proto, port), want, "engine {:?} -> {:?} {}/{}", s, d, port, proto);
                        let ex = e.explain(s, d, proto, port);
                        prop_assert_eq!(ex.verdict, Verdict::from_bool(want), "explain\n{}", ex.render());
                        // Each direction alone, as a log that records one side is compared with.
                        for (dir, side) in [(Direction::Egress, &ex.egress), (Direction::Ingress, &ex.ingress)] {
                            let one = e.allowed_direction(s, d, FlowInfo::default(), proto, port, dir);
                            prop_assert_eq!(one, side.allowed, "{:?} {:?} -> {:?} {}/{}", dir, s, d, port, proto);
                        }
                    }
                    // A destination resolved from a DNS name (what domainNames peers match).
                    if matches!(d, Endpoint::External(_)) {
                        for name in NAMES {
                            let want = reference::allowed_named(e.cluster(), s, d, Some(name), proto, 80);
                            prop_assert_eq!(e.allowed_named(s, d, Some(name), proto, 80), want, "{:?} -> {:?} ({})", s, d, name);
                            let ex = e.explain_named(s, d, Some(name), proto, 80);
                            prop_assert_eq!(ex.verdict, Verdict::from_bool(want), "explain\n{}", ex.render());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn matrix_agrees_with_reference(seed in any::<u64>()) {
        let e = Engine::new(cluster(seed));
        let mut m = e.matrix(None).unwrap();
        let n = e.cluster().pods.len();
        for a in (0..n).map(PodId::new) {
            for b in (0..n).map(PodId::new) {
                let cell = m.pod_cell(&e, a, b).unwrap();
                let set = m.port_sets.get(cell).clone();
                for proto in PROTOS {
                    for port in [1u16, 53, 70, 80, 81, 90, 95, 100, 124, 125, 200, 65535] {
                        let want = reference::allowed(
                            e.cluster(), &Endpoint::Pod { pod: a, ip: None }, &Endpoint::Pod { pod: b, ip: None }, proto, port);
                        prop_assert_eq!(set.contains(proto, port), want, "matrix {} -> {} {}/{}: {}", a, b, port, proto, set);
                    }
                }
            }
        }
        // Pair counts add up to all ordered pairs of distinct pods, and match a direct count.
        let counts = m.pair_counts(&e);
        let total: u64 = counts.values().sum();
        prop_assert_eq!(total, n as u64 * n.saturating_sub(1) as u64);
        let mut direct: std::collections::HashMap<netpol_core::portset::PortSet, u64> = Default::default();
        for a in (0..n).map(PodId::new) {
            for b in (0..n).map(PodId::new) {
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
        // And counted on several threads (columns split, port sets merged by content).
        let mut parallel = e.matrix_with_limit(None, 0).unwrap();
        let pc = parallel.pair_counts_threads(&e, 3, &mut |_| {});
        let by_set_parallel: std::collections::HashMap<_, u64> =
            pc.iter().map(|(&c, &k)| (parallel.port_sets.get(c).clone(), k)).collect();
        prop_assert_eq!(&by_set_parallel, &direct);
        // Streamed columns counted cell by cell, and by their overrides only, on one thread and on two.
        for (by_overrides, threads) in [(false, 1), (true, 1), (true, 2)] {
            let mut one_way = e.matrix_with_limit(None, 0).unwrap();
            let oc = one_way.pair_counts_one_way(&e, threads, by_overrides);
            let by_set_one_way: std::collections::HashMap<_, u64> =
                oc.iter().map(|(&c, &k)| (one_way.port_sets.get(c).clone(), k)).collect();
            prop_assert_eq!(&by_set_one_way, &direct, "by overrides: {}, threads: {}", by_overrides, threads);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Calico clusters: tiers of Calico's own with both default actions, orders that tie, Calico selectors on
    /// every label Felix sees, network sets, nets and notNets, protocols, notPorts, own-side criteria.
    #[test]
    fn calico_engine_and_explanation_agree_with_reference(seed in any::<u64>()) {
        let e = Engine::new(crate::common::calico_cluster(seed));
        let eps = endpoints(&e);
        for s in &eps {
            for d in &eps {
                // ICMP: echo request, echo reply, a destination-unreachable code.
                for (proto, port) in [(Protocol::Icmp, 0x0800u16), (Protocol::Icmp, 0), (Protocol::Icmp, 0x0301)] {
                    let want = reference::allowed(e.cluster(), s, d, proto, port);
                    prop_assert_eq!(e.allowed(s, d, proto, port), want, "engine {:?} -> {:?} {}/{}", s, d, port, proto);
                    let ex = e.explain(s, d, proto, port);
                    prop_assert_eq!(ex.verdict, Verdict::from_bool(want), "explain\n{}", ex.render());
                }
                for proto in PROTOS {
                    for port in [53u16, 70, 80, 81, 90, 95, 100, 124, 125, 200] {
                        let want = reference::allowed(e.cluster(), s, d, proto, port);
                        prop_assert_eq!(e.allowed(s, d, proto, port), want, "engine {:?} -> {:?} {}/{}", s, d, port, proto);
                        let ex = e.explain(s, d, proto, port);
                        prop_assert_eq!(ex.verdict, Verdict::from_bool(want), "explain\n{}", ex.render());
                        // Each direction alone, as a log that records one side is compared with.
                        for (dir, side) in [(Direction::Egress, &ex.egress), (Direction::Ingress, &ex.ingress)] {
                            let one = e.allowed_direction(s, d, FlowInfo::default(), proto, port, dir);
                            prop_assert_eq!(one, side.allowed, "{:?} {:?} -> {:?} {}/{}", dir, s, d, port, proto);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn calico_matrix_agrees_with_reference(seed in any::<u64>()) {
        calico_matrix_matches_reference(&Engine::new(crate::common::calico_cluster(seed)))?;
    }

    /// Many Calico policies in several tiers: the matrix folds each tier's part once per (tier, the subject's
    /// policies there, masked rules, named ports) and shares it among profiles that differ in other tiers.
    #[test]
    fn calico_matrix_with_shared_tier_parts_agrees_with_reference(seed in any::<u64>()) {
        calico_matrix_matches_reference(&Engine::new(crate::common::calico_cluster_with(seed, 2, 6)))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Antrea-like clusters: a pass in a run of tiers with `pass_to_network_policy` skips the rest of the run
    /// (held past their ends, decided by none of their rules), Reject denies. Explanations name the tiers a
    /// pass skips, and only for passes the walk holds.
    #[test]
    fn antrea_engine_and_explanation_agree_with_reference(seed in any::<u64>()) {
        let e = Engine::new(crate::common::antrea_like_cluster(seed));
        let eps = endpoints(&e);
        let held = e.tier_list().iter().any(|t| t.hold);
        for s in &eps {
            for d in &eps {
                for proto in PROTOS {
                    for port in [22u16, 53, 70, 80, 81, 90, 100, 124, 200] {
                        let want = reference::allowed(e.cluster(), s, d, proto, port);
                        prop_assert_eq!(e.allowed(s, d, proto, port), want, "engine {:?} -> {:?} {}/{}", s, d, port, proto);
                        let ex = e.explain(s, d, proto, port);
                        prop_assert_eq!(ex.verdict, Verdict::from_bool(want), "explain\n{}", ex.render());
                        for m in ex.egress.walk.iter().chain(&ex.ingress.walk) {
                            prop_assert!(m.skipped_tiers.is_empty() || (held && m.action == Action::Pass), "{:?}", m);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn antrea_matrix_agrees_with_reference(seed in any::<u64>()) {
        calico_matrix_matches_reference(&Engine::new(crate::common::antrea_like_cluster(seed)))?;
    }
}

/// Compares every cell of the matrix with the reference evaluator on the Calico test ports.
fn calico_matrix_matches_reference(e: &Engine) -> Result<(), TestCaseError> {
    let m = e.matrix(None).unwrap();
    let n = e.cluster().pods.len();
    // The matrix leaves out the host endpoint checks of hostNetwork pods' traffic (and says so:
    // `Engine::matrix_caveat`); queries and explain include them (the engine test above).
    let at_host = e.pods_with_host_checks();
    for a in (0..n).map(PodId::new) {
        for b in (0..n).map(PodId::new) {
            if at_host.contains(&a) || at_host.contains(&b) {
                continue;
            }
            let set = m.port_sets.get(m.pod_cell(e, a, b).unwrap()).clone();
            let icmp = [(Protocol::Icmp, 0x0800u16), (Protocol::Icmp, 0), (Protocol::Icmp, 0x0301)];
            let ports = [1u16, 53, 70, 80, 81, 90, 95, 100, 124, 125, 200, 65535];
            let probes = icmp.into_iter().chain(PROTOS.into_iter().flat_map(|p| ports.map(|port| (p, port))));
            for (proto, port) in probes {
                let want = reference::allowed(
                    e.cluster(),
                    &Endpoint::Pod { pod: a, ip: None },
                    &Endpoint::Pod { pod: b, ip: None },
                    proto,
                    port,
                );
                prop_assert_eq!(set.contains(proto, port), want, "matrix {} -> {} {}/{}: {}", a, b, port, proto, set);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// The data plane's host endpoint checks (`Table::hosts`: address classes, the checks of each pair of
    /// places, each check's stages) decide every flow between two addresses as the engine's host checks do, and
    /// with the pods' profiles as `Engine::allowed` does: a flow the engine allows passes every check.
    #[test]
    fn dataplane_host_checks_agree_with_the_engine(seed in any::<u64>()) {
        let e = Engine::new(crate::common::calico_cluster(seed));
        let t = e.dataplane();
        if !e.has_host_endpoints() {
            prop_assert!(t.hosts.pairs.is_empty() && t.hosts.classes.is_empty());
        }
        // Flows by address, as a data plane sees them.
        let mut ips: Vec<std::net::IpAddr> = endpoints(&e).iter().filter_map(|ep| e.endpoint_ip(ep)).collect();
        ips.sort();
        ips.dedup();
        // Failsafe ports, ports rules name, and every named port of the cluster.
        let mut ports = vec![(Protocol::Tcp, 22u16), (Protocol::Tcp, 80), (Protocol::Udp, 53), (Protocol::Udp, 68),
            (Protocol::Tcp, 6443), (Protocol::Tcp, 81), (Protocol::Sctp, 90), (Protocol::Udp, 124), (Protocol::Icmp, 0x0800)];
        let named = e.cluster().pods.iter().flat_map(|p| p.ports.iter())
            .chain(e.cluster().host_endpoints.iter().flat_map(|h| h.ports.iter()));
        ports.extend(named.map(|c| (c.protocol, c.port)));
        ports.sort();
        ports.dedup();
        for &a in &ips {
            for &b in &ips {
                let (s, d) = (e.endpoint_for_ip(a), e.endpoint_for_ip(b));
                for &(proto, port) in &ports {
                    let want = e.host_checks_allow(&s, &d, proto, port);
                    prop_assert_eq!(t.host_allows(a, b, proto, port), want, "{} -> {} {}/{}\n{:#?}", a, b, port, proto, t.hosts);
                    let same_pod = matches!((&s, &d), (Endpoint::Pod { pod: x, .. }, Endpoint::Pod { pod: y, .. }) if x == y);
                    if e.allowed(&s, &d, proto, port) && !same_pod {
                        prop_assert!(want, "{} -> {} {}/{}: allowed, yet a host check fails", a, b, port, proto);
                    }
                }
            }
        }
    }
}
