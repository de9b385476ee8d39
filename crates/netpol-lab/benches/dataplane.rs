//! `cargo bench -p netpol-lab --bench dataplane` (root, nftables, iproute2): ruleset size, generation and load time
//! for synthetic clusters, incremental update time, and the cost of a new connection through the node with no
//! policy vs the full synthetic ruleset loaded. Sizes: `NETPOL_BENCH_SIZES` (default `1k,10k`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netpol_core::compile::{Endpoint, Engine};
use netpol_core::load::Loader;
use netpol_core::model::PodId;
use netpol_core::portset::Protocol;
use netpol_lab::lab::{Lab, LabPod};
use netpol_lab::probe::in_netns;
use netpol_nft::apply::{self, System};
use netpol_nft::ruleset;
use netpol_synth::Params;

fn params(size: &str) -> Params {
    match size {
        "1k" => Params::new(100, 1_000, 400),
        "10k" => Params::new(1_000, 10_000, 8_000),
        "50k" => Params::new(5_000, 50_000, 40_000),
        other => panic!("unknown size {other}"),
    }
}

fn engine(size: &str) -> Engine {
    let yaml = netpol_synth::generate_yaml(&params(size));
    let mut l = Loader::new();
    l.add_bytes("synth.yaml", yaml.as_bytes());
    Engine::new(l.finish().cluster)
}

/// A (client, server, port) where both pods are isolated and the connection is allowed.
fn pick_pair(e: &Engine) -> (PodId, PodId, u16) {
    for (d, pod) in e.cluster().pods.iter().enumerate() {
        let di = e.identity_of(PodId::new(d));
        if pod.host_network || di.ingress_policies.is_empty() || pod.ips.is_empty() {
            continue;
        }
        for cp in pod.ports.iter().filter(|c| c.protocol == Protocol::Tcp) {
            for (s, sp) in e.cluster().pods.iter().enumerate() {
                let si = e.identity_of(PodId::new(s));
                if s == d || sp.host_network || si.egress_policies.is_empty() || sp.ips.is_empty() {
                    continue;
                }
                let (a, b) =
                    (Endpoint::Pod { pod: PodId::new(s), ip: None }, Endpoint::Pod { pod: PodId::new(d), ip: None });
                if e.allowed(&a, &b, Protocol::Tcp, cp.port) {
                    return (PodId::new(s), PodId::new(d), cp.port);
                }
            }
        }
    }
    panic!("no allowed pair with both sides isolated");
}

/// New TCP connections per second from the client namespace (each one walks the whole forward path).
fn connect_rate(client_ns: &str, dst: SocketAddr, n: usize) -> f64 {
    in_netns(client_ns, move || {
        let t = Instant::now();
        let mut slow = 0;
        for _ in 0..n {
            let t0 = Instant::now();
            let s = TcpStream::connect_timeout(&dst, Duration::from_secs(3)).expect("connect");
            // Abortive close (RST): no TIME_WAIT, so the client's ephemeral ports do not fill up and slow connect()
            // down with port scans over thousands of TIME_WAIT sockets (which made early figures meaningless).
            let linger = libc::linger { l_onoff: 1, l_linger: 0 };
            // SAFETY: a valid socket fd and a correctly sized option value.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&s),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            drop(s);
            if t0.elapsed() > Duration::from_millis(100) {
                slow += 1;
            }
        }
        if slow > 0 {
            eprintln!("  {slow} of {n} connections took > 100 ms");
        }
        n as f64 / t.elapsed().as_secs_f64()
    })
    .unwrap()
}

fn run(size: &str) {
    let e = engine(size);
    let t = Instant::now();
    let rs = ruleset::generate(&e);
    let gen = t.elapsed();
    let script = rs.replace_script();
    let (rules, elements) = rs.size();
    let (c, s, port) = {
        let (c, s, port) = pick_pair(&e);
        (c, s, port)
    };
    let prefix = format!("npbench{}", std::process::id() % 10000);
    let r = System;
    let _ = Lab::down(&r, &prefix);
    let key = |p: PodId| e.cluster().pod_ref(p);
    let pods = vec![
        LabPod::new(key(c), [e.cluster().pod(c).primary_ip().unwrap()]),
        LabPod::new(key(s), [e.cluster().pod(s).primary_ip().unwrap()]),
    ];
    let lab = Lab::up(&r, &prefix, &pods).unwrap();
    let node = lab.node_netns().to_string();
    let server_ip: IpAddr = e.cluster().pod(s).primary_ip().unwrap();
    let listener =
        in_netns(lab.pod_netns(&key(s)).unwrap(), move || TcpListener::bind(SocketAddr::new(server_ip, port)))
            .unwrap()
            .unwrap();
    std::thread::spawn(move || for _c in listener.incoming() {});
    let client_ns = lab.pod_netns(&key(c)).unwrap().to_string();
    let dst = SocketAddr::new(server_ip, port);
    let n = 3000;
    let median = |f: &dyn Fn() -> f64| -> f64 {
        let mut v = [f(), f(), f()];
        v.sort_by(|a, b| a.total_cmp(b));
        v[1]
    };
    let _ = connect_rate(&client_ns, dst, 200); // warm-up
    let empty = median(&|| connect_rate(&client_ns, dst, n));
    let t = Instant::now();
    apply::nft_apply(&r, Some(&node), &script).unwrap();
    let load = t.elapsed();
    let _ = connect_rate(&client_ns, dst, 200);
    let full = median(&|| connect_rate(&client_ns, dst, n));
    if std::env::var_os("NETPOL_BENCH_KEEP").is_some() {
        eprintln!("kept lab {prefix}: client {client_ns} -> {dst}; pair {} -> {}", key(c), key(s));
        std::thread::sleep(Duration::from_secs(600));
    }
    // Incremental update: one pod takes the labels of another app of its namespace (selectors change).
    let mut c2 = e.cluster().clone();
    let moved = (0..c2.pods.len()).find_map(|i| {
        let p = &c2.pods[i];
        c2.pods
            .iter()
            .find(|q| q.ns == p.ns && q.labels != p.labels && !q.host_network && !p.host_network)
            .map(|q| (i, q.labels.clone()))
    });
    if let Some((i, labels)) = moved {
        c2.pods[i].labels = labels;
    }
    let e2 = Engine::new(c2);
    let rs2 = ruleset::generate(&e2);
    let update = rs2.snapshot().update_script(&rs.snapshot());
    let t = Instant::now();
    apply::nft_apply(&r, Some(&node), &update).unwrap();
    let inc = t.elapsed();
    Lab::down(&r, &prefix).unwrap();
    println!(
        "{size:>4}: pods {:>6} policies {:>6} | ruleset: {} rules, {} set/map elements, {} sets, {:.1} MiB script | generate {:>7.1} ms | load (one transaction) {:>7.1} ms | incremental update (1 label change, {} script lines) {:>6.1} ms | new TCP connections/s through the node: no ruleset {:>6.0}, with ruleset {:>6.0} ({:+.1}%)",
        e.cluster().pods.len(),
        e.cluster().policies.len(),
        rules,
        elements,
        rs.sets.len(),
        script.len() as f64 / (1 << 20) as f64,
        gen.as_secs_f64() * 1e3,
        load.as_secs_f64() * 1e3,
        update.lines().count(),
        inc.as_secs_f64() * 1e3,
        empty,
        full,
        (full / empty - 1.0) * 100.0,
    );
}

fn main() {
    if netpol_lab::euid() != 0 || !apply::nft_available() {
        println!("dataplane benchmark skipped: needs root and nftables");
        return;
    }
    let sizes = std::env::var("NETPOL_BENCH_SIZES").unwrap_or_else(|_| "1k,10k".to_string());
    println!("netpol data-plane benchmark");
    for size in sizes.split(',') {
        run(size);
    }
}
