//! Calico's semantics in the kernel: every case of `tests/conformance/calico/` (replayed through the engine by
//! `calico_conformance.rs`) through `netpol connectivity-test`, with real connections between the lab's network
//! namespaces. Every probe the lab can test must be observed as the engine decides, and the engine must decide
//! what Calico does (the case's `expect`): the nftables rules enforce Calico's tiers (ordered chains, Pass as a
//! jump to the later tiers, each tier's default action), orders, selectors through network sets, nets and
//! notNets, protocols and notPorts, rules whose own side applies to some of a pod's addresses only, and host
//! endpoint checks (failsafe ports, untracked, pre-DNAT, normal and forward stages, profiles; the host endpoints'
//! addresses live on the lab node's `lo`).
//!
//! Labs are reused as in `dataplane_conformance.rs`: [`LABS`] labs, one thread each, take the cases in turn,
//! the lab node's conntrack table flushed between cases. Root, `nft` and `ip` are needed.

use std::process::{Command, Output};

use crate::calico_conformance::{cases, Case, PROBES};
use crate::dataplane::{prefix, skip_reason, LabGuard};

const LABS: usize = 4;
const TIMEOUT_MS: &str = "700";
const NO_SCTP: &str = "no raw SCTP socket";

fn run_case(prefix: &str, case: &Case, dir: &std::path::Path) -> Output {
    let manifests = dir.join("cluster.yaml");
    std::fs::write(&manifests, &case.manifests).unwrap();
    let flows: String = case
        .probes
        .iter()
        .map(|p| {
            serde_json::json!({"src": p.from, "dst": p.to, "protocol": p.protocol, "port": p.port, "expect": p.expect})
                .to_string()
                + "\n"
        })
        .collect();
    let flows_path = dir.join("flows.jsonl");
    std::fs::write(&flows_path, flows).unwrap();
    let args = ["connectivity-test", "--prefix", prefix, "--keep", "--timeout-ms", TIMEOUT_MS, "-f"];
    Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(args)
        .arg(&manifests)
        .arg("--flows")
        .arg(&flows_path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn calico_conformance_in_the_kernel() {
    if let Some(why) = skip_reason() {
        panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
    }
    let cases = cases();
    let prefixes: Vec<String> = (0..LABS).map(|i| prefix(&format!("cal{i}"))).collect();
    let guards: Vec<LabGuard> = prefixes.iter().map(|p| LabGuard(p.clone())).collect();
    let tmp = tempfile::tempdir().unwrap();
    let mut runs: Vec<(usize, Output)> = std::thread::scope(|s| {
        let workers: Vec<_> = prefixes
            .iter()
            .enumerate()
            .map(|(w, p)| {
                let cases = &cases;
                let dir = tmp.path().join(format!("w{w}"));
                std::fs::create_dir_all(&dir).unwrap();
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (i, (_, case)) in cases.iter().enumerate().skip(w).step_by(LABS) {
                        if !out.is_empty() {
                            netpol_lab::probe::flush_conntrack(&netpol_lab::lab::node_netns_name(p)).unwrap();
                        }
                        out.push((i, run_case(p, case, &dir)));
                    }
                    out
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    drop(guards);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    for p in &prefixes {
        assert!(!left.lines().any(|l| l.starts_with(&format!("{p}-"))), "leftover namespaces of {p}:\n{left}");
    }
    runs.sort_by_key(|r| r.0);
    let (mut probes, mut agree, mut untestable) = (0, 0, 0);
    let mut problems = Vec::new();
    for (i, o) in &runs {
        let (file, case) = &cases[*i];
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{file}: connectivity-test failed:\n{stderr}");
        let lines: Vec<serde_json::Value> =
            String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), case.probes.len(), "{file}: one answer per flow\n{stderr}");
        for (l, p) in lines.iter().zip(&case.probes) {
            probes += 1;
            let what = format!("{file} ({}): {}", case.name, p.describe());
            if let Some(err) = l.get("error") {
                problems.push(format!("{what}: not taken as a flow: {err}"));
                continue;
            }
            if l["verdict"] != p.expect.as_str() {
                problems.push(format!("{what}: Calico says {}, the engine {}", p.expect, l["verdict"]));
            }
            match l["observed"].as_str().unwrap() {
                "untestable" if p.protocol == "SCTP" && l["detail"].as_str().unwrap_or("").contains(NO_SCTP) => {
                    untestable += 1
                }
                "untestable" => problems.push(format!("{what}: untestable: {}", l["detail"])),
                o if l["verdict"] == o => agree += 1,
                o => problems.push(format!(
                    "{what}: the engine says {}, the kernel {o} ({})",
                    l["verdict"],
                    l["detail"].as_str().unwrap_or("")
                )),
            }
        }
    }
    eprintln!(
        "Calico data-plane conformance: {} cases, {probes} probes: {agree} tested and agreeing, {untestable} \
         untestable SCTP, {} problems",
        runs.len(),
        problems.len()
    );
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
    assert_eq!(probes, PROBES);
    assert_eq!(agree + untestable, PROBES);
}
