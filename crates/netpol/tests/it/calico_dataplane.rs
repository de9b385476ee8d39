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
//! the lab node's conntrack table flushed between cases (`dataplane::run_cases_in_labs`, shared with Antrea's). Root, `nft` and `ip` are needed.

use crate::calico_conformance::{cases, Case, PROBES};
use crate::dataplane::{answer_lines, run_cases_in_labs, skip_reason, LabCase};

const LABS: usize = 4;
const TIMEOUT_MS: &str = "700";
const NO_SCTP: &str = "no raw SCTP socket";

pub(crate) fn lab_case(case: &Case) -> LabCase {
    let flows: String = case
        .probes
        .iter()
        .map(|p| {
            serde_json::json!({"src": p.from, "dst": p.to, "protocol": p.protocol, "port": p.port, "expect": p.expect})
                .to_string()
                + "\n"
        })
        .collect();
    LabCase { manifests: case.manifests.clone(), flows }
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn calico_conformance_in_the_kernel() {
    if let Some(why) = skip_reason() {
        panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
    }
    let cases = cases();
    let lab_cases: Vec<LabCase> = cases.iter().map(|(_, c)| lab_case(c)).collect();
    let runs = run_cases_in_labs("cal", LABS, TIMEOUT_MS, &lab_cases);
    let (mut probes, mut agree, mut untestable) = (0, 0, 0);
    let mut problems = Vec::new();
    for ((file, case), o) in cases.iter().zip(&runs) {
        let lines = answer_lines(file, o, case.probes.len());
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
