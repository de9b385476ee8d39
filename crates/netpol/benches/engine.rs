//! `cargo bench -p netpol --bench engine`: end-to-end figures on synthetic clusters (netpol-synth).
//!
//! For each size it reports parse, compile, full-matrix (whole port space, class-grouped, with pair counts),
//! query throughput (the real `netpol query` loop: JSON parse, resolve, verdict, JSON write, in memory) and the
//! peak resident memory of a process that did only that size. Sizes: `NETPOL_BENCH_SIZES=1k,10k,50k,100k`
//! (default `1k,10k,50k`); query flow count: `NETPOL_BENCH_FLOWS` (default 2,000,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::fmt::Write as _;
use std::time::Instant;

use netpol_core::compile::Engine;
use netpol_core::load::Loader;
use netpol_synth::Params;

fn params(size: &str) -> Params {
    match size {
        "1k" => Params::new(100, 1_000, 400),
        "10k" => Params::new(1_000, 10_000, 8_000),
        "50k" => Params::new(5_000, 50_000, 40_000),
        "100k" => Params::new(10_000, 100_000, 80_000),
        other => panic!("unknown size {other}"),
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn flows(e: &Engine, n: usize) -> Vec<u8> {
    let names: Vec<String> = (0..e.cluster.pods.len() as u32).map(|p| e.cluster.pod_ref(p)).collect();
    let ips: Vec<String> = e.cluster.pods.iter().filter_map(|p| p.primary_ip()).map(|ip| ip.to_string()).collect();
    let ports = [53u16, 80, 443, 5432, 8080, 9090, 9100, 30080];
    let mut s = String::with_capacity(n * 80);
    let mut x: u64 = 0x1234_5678;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..n {
        let r = next();
        let src = if r % 4 == 0 && !ips.is_empty() {
            &ips[(r >> 8) as usize % ips.len()]
        } else {
            &names[(r >> 8) as usize % names.len()]
        };
        let r2 = next();
        let dst = if r2 % 8 == 0 { "203.0.113.10" } else { &names[(r2 >> 8) as usize % names.len()] };
        let port = ports[(r2 >> 40) as usize % ports.len()];
        let proto = if port == 53 && r2 % 2 == 0 { "UDP" } else { "TCP" };
        let _ = writeln!(s, r#"{{"src":"{src}","dst":"{dst}","protocol":"{proto}","port":{port}}}"#);
    }
    s.into_bytes()
}

fn run_size(size: &str) {
    let p = params(size);
    let yaml = netpol_synth::generate_yaml(&p);
    let t = Instant::now();
    let mut loader = Loader::new();
    loader.add_bytes("synth.yaml", yaml.as_bytes());
    let loaded = loader.finish();
    let parse = t.elapsed();
    assert!(loaded.diagnostics.is_empty(), "{:?}", &loaded.diagnostics[..loaded.diagnostics.len().min(3)]);
    drop(yaml);
    let t = Instant::now();
    let engine = Engine::new(loaded.cluster);
    let compile = t.elapsed();
    let stats = engine.stats();

    let t = Instant::now();
    let mut m = engine.matrix(None).unwrap();
    let counts = m.pair_counts(&engine);
    let matrix = t.elapsed();
    let allowed_sets = counts.len();
    // Peak memory of parse + compile + matrix (before the query input buffer is built).
    let peak = peak_rss_mib();

    let n_flows: usize = std::env::var("NETPOL_BENCH_FLOWS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let input = flows(&engine, n_flows);
    let mut out = std::io::sink();
    let t = Instant::now();
    let errors = netpol::query::run(&engine, &mut &input[..], &mut out, false, "default").unwrap();
    let query = t.elapsed();
    assert_eq!(errors, 0);

    println!(
        "{size:>5}: pods {:>6} ns {:>6} policies {:>6} | identities {:>6} src/dst classes {:>6}/{:>6} | parse {:>8.1} ms | compile {:>8.1} ms | load+compile {:>8.1} ms | matrix {:>9.1} ms ({} distinct port sets) | query {:>5.2} M flows/s | peak RSS (load+compile+matrix) {:>7.1} MiB",
        stats["pods"],
        stats["namespaces"],
        stats["policies"],
        stats["identities"],
        m.src_classes.len(),
        m.dst_classes.len(),
        parse.as_secs_f64() * 1e3,
        compile.as_secs_f64() * 1e3,
        (parse + compile).as_secs_f64() * 1e3,
        matrix.as_secs_f64() * 1e3,
        allowed_sets,
        n_flows as f64 / query.as_secs_f64() / 1e6,
        peak,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it as a smoke test with `NETPOL_BENCH_SIZES=1k`.
    if let Ok(size) = std::env::var("NETPOL_BENCH_ONE") {
        run_size(&size);
        return;
    }
    let sizes = std::env::var("NETPOL_BENCH_SIZES").unwrap_or_else(|_| "1k,10k,50k".to_string());
    println!("netpol engine benchmark (one process per size, single-threaded)");
    for size in sizes.split(',') {
        // A fresh process per size, so peak RSS is that size's own.
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new(exe).env("NETPOL_BENCH_ONE", size).status().unwrap();
        assert!(status.success(), "size {size} failed");
    }
}
