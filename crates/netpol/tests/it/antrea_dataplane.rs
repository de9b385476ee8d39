//! Antrea's native policies in the kernel: every case of `tests/conformance/antrea/` (replayed through the engine
//! by `antrea_conformance.rs`) through `netpol connectivity-test`, with real connections between the lab's network
//! namespaces. Every probe the lab can test must be observed as the engine decides, and the engine must decide
//! what Antrea does (the case's `expect`): the nftables rules enforce Antrea's tiers and priorities, Pass (held
//! until the NetworkPolicy tier, then the baseline tier), Reject, Drop, groups, peers, ports and protocols. A
//! probe with `action: reject` must be seen answered: TCP with a reset (`connectivity-test` says `rejected`, a
//! listener being up on every probed port), UDP with an ICMP error, an ICMP echo request with a destination
//! unreachable quoting it; one with `action: drop` must time out. Cases
//! with `invalid` objects load without them, as with Antrea's admission.
//!
//! Not sent to the lab (counted, never judged by the kernel): probes with an HTTP request (Antrea's L7 engine
//! judges the request; the kernel sees a connection) and probes with `dst_fqdn` (the DNS name the destination was
//! resolved from: Antrea's FQDN rules learn the addresses from DNS answers, which the lab does not have), as a
//! plain connection would be judged without what decides them. ICMP flows other than echo requests, and SCTP
//! without raw sockets, are untestable in the lab (`connectivity-test` says why); their verdicts are still checked
//! against Antrea's.
//!
//! Labs are reused as Calico's are (`dataplane::run_cases_in_labs`). Root, `nft` and `ip` are needed.

use crate::antrea_conformance::{cases, Case, Probe, CASES, PROBES};
use crate::dataplane::{answer_lines, run_cases_in_labs, skip_reason, LabCase};

const LABS: usize = 4;
const TIMEOUT_MS: &str = "700";
const NO_SCTP: &str = "no raw SCTP socket";
const NO_ICMP: &str = "only echo requests are probed by the lab";

/// Whether the kernel can judge `p` as the engine does: neither an HTTP request nor a destination's DNS name.
fn in_lab(p: &Probe) -> bool {
    p.http.is_none() && p.dst_fqdn.is_none()
}

/// A flow line of the query contract (ICMP: the probe's port is the type, code 0).
fn flow_line(p: &Probe) -> String {
    let v = if p.protocol == "ICMP" {
        serde_json::json!({"src": p.from, "dst": p.to, "protocol": p.protocol, "icmp": {"type": p.port, "code": 0}})
    } else {
        serde_json::json!({"src": p.from, "dst": p.to, "protocol": p.protocol, "port": p.port})
    };
    v.to_string() + "\n"
}

pub(crate) fn lab_case(case: &Case) -> LabCase {
    LabCase {
        manifests: case.manifests.clone(),
        flows: case.probes.iter().filter(|p| in_lab(p)).map(flow_line).collect(),
    }
}

#[derive(Default, Debug)]
struct Tally {
    probes: usize,
    agree: usize,
    /// Not sent: an HTTP request (L7).
    l7: usize,
    /// Not sent: a destination's DNS name.
    dns: usize,
    untestable_icmp: usize,
    untestable_sctp: usize,
    /// `action: reject` probes observed answered (TCP reset, ICMP error) / `action: drop` observed timing out.
    rejected: usize,
    dropped: usize,
    problems: Vec<String>,
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn antrea_conformance_in_the_kernel() {
    if let Some(why) = skip_reason() {
        panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
    }
    let cases = cases();
    assert!(cases.len() >= CASES, "{} cases", cases.len());
    // Cases with a flow for the lab (the others are all L7 or DNS-name probes).
    let lab: Vec<&(String, Case)> = cases.iter().filter(|(_, c)| c.probes.iter().any(in_lab)).collect();
    let lab_cases: Vec<LabCase> = lab.iter().map(|(_, c)| lab_case(c)).collect();
    let runs = run_cases_in_labs("antr", LABS, TIMEOUT_MS, &lab_cases);
    let mut t = Tally::default();
    for (_, case) in &cases {
        for p in case.probes.iter().filter(|p| !in_lab(p)) {
            t.probes += 1;
            if p.http.is_some() {
                t.l7 += 1;
            } else {
                t.dns += 1;
            }
        }
    }
    for ((file, case), o) in lab.iter().map(|c| (&c.0, &c.1)).zip(&runs) {
        let probes: Vec<&Probe> = case.probes.iter().filter(|p| in_lab(p)).collect();
        let lines = answer_lines(file, o, probes.len());
        for (l, p) in lines.iter().zip(probes) {
            t.probes += 1;
            let what = format!("{file} ({}): {}", case.name, p.describe());
            if let Some(err) = l.get("error") {
                t.problems.push(format!("{what}: not taken as a flow: {err}"));
                continue;
            }
            if l["verdict"] != p.expect.as_str() {
                t.problems.push(format!("{what}: Antrea says {}, the engine {}", p.expect, l["verdict"]));
            }
            let detail = l["detail"].as_str();
            match l["observed"].as_str().unwrap() {
                "untestable" if p.protocol == "ICMP" && detail.unwrap_or("").contains(NO_ICMP) => {
                    t.untestable_icmp += 1;
                    continue;
                }
                "untestable" if p.protocol == "SCTP" && detail.unwrap_or("").contains(NO_SCTP) => {
                    t.untestable_sctp += 1;
                    continue;
                }
                "untestable" => {
                    t.problems.push(format!("{what}: untestable: {}", detail.unwrap_or("")));
                    continue;
                }
                o if l["verdict"] == o => t.agree += 1,
                o => {
                    t.problems.push(format!(
                        "{what}: the engine says {}, the kernel {o} ({})",
                        l["verdict"],
                        detail.unwrap_or("")
                    ));
                    continue;
                }
            }
            // How the deny was seen: no detail is a timeout (a drop); a rejection is answered at once.
            match (p.action.as_deref(), p.protocol.as_str(), detail) {
                (Some("reject"), "TCP", Some(d)) if d == netpol_lab::connectivity::REJECTED_TCP => t.rejected += 1,
                (Some("reject"), "UDP", Some(d)) if d != "timeout" => t.rejected += 1,
                (Some("reject"), "ICMP", Some(d)) if d == netpol_lab::probe::REJECTED_ICMP => t.rejected += 1,
                (Some("reject"), _, _) => {
                    t.problems.push(format!("{what}: rejected by Antrea, seen as {}", detail.unwrap_or("a timeout")))
                }
                (Some("drop"), _, None) => t.dropped += 1,
                (Some("drop"), _, Some(d)) => t.problems.push(format!("{what}: dropped by Antrea, seen as {d}")),
                _ => {}
            }
        }
    }
    eprintln!(
        "Antrea data-plane conformance: {} cases ({} through the lab), {} probes: {} tested and agreeing ({} rejects \
         seen refused, {} drops seen timing out), {} not testable in the lab (L7 / DNS name: {} with an HTTP \
         request, {} with a destination's DNS name), {} untestable ICMP other than echo, {} untestable SCTP, {} \
         problems",
        cases.len(),
        runs.len(),
        t.probes,
        t.agree,
        t.rejected,
        t.dropped,
        t.l7 + t.dns,
        t.l7,
        t.dns,
        t.untestable_icmp,
        t.untestable_sctp,
        t.problems.len()
    );
    assert!(t.problems.is_empty(), "{} problems:\n{}", t.problems.len(), t.problems.join("\n"));
    assert!(t.probes >= PROBES, "{} probes", t.probes);
    assert_eq!(t.agree + t.l7 + t.dns + t.untestable_icmp + t.untestable_sctp, t.probes);
}
