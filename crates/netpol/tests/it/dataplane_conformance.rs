//! The upstream conformance suite of kubernetes-sigs/network-policy-api (`tests/conformance/network-policy-api/`,
//! replayed through `netpol query` by `conformance.rs`) with real connections: every step through
//! `netpol connectivity-test`, with the step's `expect.jsonl` as its flows (they are flow lines; the extra fields
//! pass through). Every flow the lab can test must be observed as the engine decides it, and the engine must
//! decide what upstream expects.
//!
//! - Labs are reused: [`LABS`] labs, one thread each, take the steps in turn. A step's `connectivity-test` finds
//!   its thread's lab running (`--keep`) and updates it as `netpol lab apply` does (pods and namespaces, then the
//!   ruleset as an incremental nft transaction), after the lab node's conntrack table is flushed: a connection
//!   an earlier step allowed must not pass as `established` (UDP probes use random source ports, so a later
//!   probe can hit an old entry by chance).
//! - Host-network pods (`centaur-0/1`, at their nodes' addresses 10.1.0.1 and 10.1.0.2) live in the lab's node
//!   netns, as on a real node: probes to them take the node's input path. The lab has one node for both Nodes.
//! - SCTP (90 probes): on a kernel without SCTP sockets (`CONFIG_IP_SCTP` unset, as on the machine this was
//!   written on) the lab probes SCTP over raw sockets (INIT, INIT-ACK: see `netpol_lab::probe::raw_sctp`). Only
//!   where that fails too may an SCTP flow be `untestable` (with that reason); every other flow must be tested.
//!   The counts are printed (`cargo test -- --nocapture`).
//!
//! Root, `nft` and `ip` are needed: without them at build time the test is ignored (see `dataplane.rs`).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::conformance::{describe, expectations, manifest_args, steps, PROBES, STEPS};
use crate::dataplane::{prefix, skip_reason, LabGuard};

/// Labs (and threads) the steps are spread over.
const LABS: usize = 4;
/// `connectivity-test --timeout-ms`: how long a dropped connection is waited for.
const TIMEOUT_MS: &str = "700";
/// What `connectivity-test` says of an SCTP flow it cannot test (no SCTP sockets, no raw sockets).
const NO_SCTP: &str = "no raw SCTP socket";

fn connectivity_test(prefix: &str, dir: &std::path::Path) -> Output {
    let mut args: Vec<String> =
        ["connectivity-test", "--prefix", prefix, "--keep", "--timeout-ms", TIMEOUT_MS].map(String::from).to_vec();
    args.extend(manifest_args(dir));
    args.extend(["--flows".to_string(), dir.join("expect.jsonl").display().to_string()]);
    Command::new(env!("CARGO_BIN_EXE_netpol")).args(&args).env("NO_COLOR", "1").output().unwrap()
}

#[derive(Default, Debug)]
struct Counts {
    probes: usize,
    /// Observed, and as the engine decided.
    agree: usize,
    untestable: usize,
    /// Of `agree`: SCTP probes, probes to a host-network pod.
    sctp: usize,
    host_network: usize,
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn upstream_conformance_suite_in_the_kernel() {
    if let Some(why) = skip_reason() {
        panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
    }
    let steps = steps();
    let prefixes: Vec<String> = (0..LABS).map(|i| prefix(&format!("conf{i}"))).collect();
    let guards: Vec<LabGuard> = prefixes.iter().map(|p| LabGuard(p.clone())).collect();
    let started = Instant::now();
    let mut runs: Vec<(usize, Output, Duration)> = std::thread::scope(|s| {
        let workers: Vec<_> = prefixes
            .iter()
            .enumerate()
            .map(|(w, p)| {
                let steps = &steps;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (i, step) in steps.iter().enumerate().skip(w).step_by(LABS) {
                        let t = Instant::now();
                        if !out.is_empty() {
                            netpol_lab::probe::flush_conntrack(&netpol_lab::lab::node_netns_name(p)).unwrap();
                        }
                        out.push((i, connectivity_test(p, &step.dir), t.elapsed()));
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let wall = started.elapsed();
    drop(guards);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    for p in &prefixes {
        assert!(!left.lines().any(|l| l.starts_with(&format!("{p}-"))), "leftover namespaces of {p}:\n{left}");
    }
    runs.sort_by_key(|r| r.0);
    assert_eq!(runs.len(), STEPS);

    let mut n = Counts::default();
    let (mut disagree, mut engine, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for (i, o, _) in &runs {
        let step = &steps[*i];
        let expect = expectations(step);
        let stderr = String::from_utf8_lossy(&o.stderr);
        // 0: all agree; 1: a disagreement or an error line (both reported below). Anything else: it did not run.
        assert!(matches!(o.status.code(), Some(0 | 1)), "{}: connectivity-test failed:\n{stderr}", step.name);
        let lines: Vec<serde_json::Value> =
            String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), expect.len(), "{}: one answer per flow\n{stderr}", step.name);
        for (l, e) in lines.iter().zip(&expect) {
            for key in ["src", "dst", "protocol", "port", "source"] {
                assert_eq!(l[key], e[key], "{}: answers out of order", step.name);
            }
            n.probes += 1;
            let what = format!("{}: {}", step.name, describe(e));
            if let Some(err) = l.get("error") {
                other.push(format!("{what}: not taken as a flow: {err}"));
                continue;
            }
            if l["verdict"] != e["expect"] {
                engine.push(format!("{what}: upstream expects {}, the engine says {}", e["expect"], l["verdict"]));
            }
            match l["observed"].as_str().unwrap() {
                "untestable" if l["protocol"] == "SCTP" && l["detail"].as_str().unwrap().contains(NO_SCTP) => {
                    n.untestable += 1
                }
                "untestable" => other.push(format!("{what}: untestable: {}", l["detail"])),
                o if l["verdict"] == o => {
                    n.agree += 1;
                    n.sctp += usize::from(l["protocol"] == "SCTP");
                    if l["dst"].as_str().unwrap().contains("/centaur-") {
                        n.host_network += 1;
                    }
                }
                o => disagree.push(format!(
                    "{what}: the engine says {}, the kernel {o} ({})",
                    l["verdict"],
                    l["detail"].as_str().unwrap_or("")
                )),
            }
        }
    }
    let (slowest, slow_t) = runs.iter().map(|r| (&steps[r.0].name, r.2)).max_by_key(|r| r.1).unwrap();
    let sum: Duration = runs.iter().map(|r| r.2).sum();
    let sctp = netpol_lab::probe::kernel_supports_sctp();
    eprintln!(
        "data-plane conformance: {} steps, {} probes: {} tested and agreeing ({} SCTP, {} to host-network pods), {} \
         disagree, {} untestable, {} other failures, {} engine verdicts differ from upstream; SCTP {}; {LABS} labs, \
         wall {:.1} s (steps {:.1} s in all, slowest {:.2} s: {slowest})",
        runs.len(),
        n.probes,
        n.agree,
        n.sctp,
        n.host_network,
        disagree.len(),
        n.untestable,
        other.len(),
        engine.len(),
        if sctp { "with SCTP sockets" } else { "over raw sockets (no SCTP sockets in this kernel)" },
        wall.as_secs_f64(),
        sum.as_secs_f64(),
        slow_t.as_secs_f64(),
    );
    assert!(
        disagree.is_empty(),
        "the kernel and the engine disagree on {} probes:\n{}",
        disagree.len(),
        disagree.join("\n")
    );
    assert!(engine.is_empty(), "{} verdicts differ from upstream:\n{}", engine.len(), engine.join("\n"));
    assert!(other.is_empty(), "{}", other.join("\n"));
    assert_eq!(n.probes, PROBES);
    // Every probe is tested but SCTP ones the lab could not probe at all; those are few or none.
    let all: Vec<serde_json::Value> = steps.iter().flat_map(expectations).collect();
    assert_eq!(n.agree + n.untestable, PROBES, "{n:?}");
    assert_eq!(n.agree - n.sctp, all.iter().filter(|p| p["protocol"] != "SCTP").count(), "{n:?}");
    assert!(n.agree >= 211, "{n:?}");
    // The probes to host-network pods (9, 2 of them SCTP) went to the node.
    let centaur = |p: &&serde_json::Value| p["dst"].as_str().unwrap().contains("/centaur-");
    let sctp_centaur = all.iter().filter(centaur).filter(|p| p["protocol"] == "SCTP").count();
    let all_centaur = all.iter().filter(centaur).count();
    assert!(n.host_network + sctp_centaur >= all_centaur && n.host_network <= all_centaur, "{n:?}");
    if n.untestable == 0 {
        assert_eq!(n.host_network, all_centaur, "{n:?}");
    }
}
