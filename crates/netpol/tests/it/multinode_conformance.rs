//! Every dialect's conformance cases enforced by node agents across two nodes (root, nftables): the cases of
//! `tests/conformance/` (network-policy-api's suite, Calico's, Cilium's connection cases, Antrea's; the same cases
//! and flows as the single-node data-plane tests) served by a multi-node lab's API server, programmed by one
//! `netpol agent` per node from its watch, and probed with real connections between the nodes' pods by
//! `netpol connectivity-test`, which probes a lab whose agents program it without programming it itself.
//!
//! - What is checked: every probe the lab can test is observed as the engine decides, the engine reading the
//!   policies as the agents do (`--cni netpol`). The single-node tests also check the engine against each
//!   dialect's expectations; here the counts of probes where netpol's reading differs from the dialect's (a
//!   node's own traffic to its pods, which the agent exempts) are printed.
//! - Placement: each case's pods run on the Node their `spec.nodeName` names; a case must have exactly the Nodes
//!   `node-1` and `node-2` (as nearly all do), or none (then those two are added). A pod without a node is placed
//!   on them in turn (its manifest given that `nodeName`, for the agents and the engine alike); a case with other
//!   Nodes is skipped, and counted.
//! - Labs are reused: [`LABS`] labs, one thread each, take the cases in turn. For each case its manifests replace
//!   the lab's (the API server reads its file again on SIGHUP: each object put, the others deleted, as a client
//!   would), a marker Namespace without pods is written last, and every agent's
//!   `netpol_agent_synced_resource_version` must reach the marker's revision before the probes; the nodes'
//!   conntrack tables are flushed between cases.

use std::process::{Command, Output};
use std::time::Duration;

use crate::agent_lab::{wait, LiveLab, JSON};
use crate::dataplane::{skip_reason, LabCase};

const LABS: usize = 2;
const TIMEOUT_MS: &str = "700";
const NODES: [&str; 2] = ["node-1", "node-2"];

/// The case's manifests with every pod on one of [`NODES`], or why the case cannot run on the agents' nodes.
fn placed(manifests: &str) -> Result<String, String> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for d in serde_yaml_ng::Deserializer::from_str(manifests) {
        let v = serde_json::Value::deserialize(d).map_err(|e| format!("manifests: {e}"))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    let mut nodes: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "Node")
        .filter_map(|d| d["metadata"]["name"].as_str())
        .map(String::from)
        .collect();
    nodes.sort();
    if nodes.is_empty() {
        // A case without Node objects (its pods name their nodes): the agents' Nodes are added.
        for n in NODES {
            docs.push(serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}}));
        }
    } else if nodes != NODES {
        return Err(format!("its Nodes are {nodes:?}, not {NODES:?}"));
    }
    let mut next = 0;
    for d in docs.iter_mut().filter(|d| d["kind"] == "Pod") {
        match d["spec"]["nodeName"].as_str() {
            Some(n) if NODES.contains(&n) => {}
            Some(n) => return Err(format!("a pod runs on {n}")),
            None => {
                if !d["spec"].is_object() {
                    d["spec"] = serde_json::json!({});
                }
                d["spec"]["nodeName"] = serde_json::json!(NODES[next % 2]);
                next += 1;
            }
        }
    }
    Ok(docs.iter().map(|d| format!("---\n{d}\n")).collect())
}

/// The outcome of one case: its connectivity-test output, or why it was skipped.
type Run = Result<Output, String>;

/// Runs `cases` in [`LABS`] reused two-node labs with agents (see the module's documentation).
fn run_with_agents(tag: &str, cases: &[LabCase]) -> Vec<Run> {
    let placed: Vec<Result<String, String>> = cases.iter().map(|c| placed(&c.manifests)).collect();
    let runnable: Vec<usize> = (0..cases.len()).filter(|i| placed[*i].is_ok()).collect();
    let mut runs: Vec<(usize, Run)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..LABS)
            .map(|w| {
                let mine: Vec<usize> = runnable.iter().copied().skip(w).step_by(LABS).collect();
                let (placed, cases) = (&placed, cases);
                s.spawn(move || {
                    let Some(&first) = mine.first() else { return Vec::new() };
                    let first_manifests = placed[first].as_ref().unwrap();
                    let live = LiveLab::up(&format!("{tag}{w}"), first_manifests, 2);
                    let flows = live.file.with_extension("jsonl");
                    let mut out = Vec::new();
                    for (k, &i) in mine.iter().enumerate() {
                        let manifests = placed[i].as_ref().unwrap();
                        if k > 0 {
                            std::fs::write(&live.file, manifests).unwrap();
                            let _ = Command::new("kill").args(["-HUP", &live.api_pid.to_string()]).status();
                            let log = format!("{}/{}.api.log", netpol_lab::lab::STATE_DIR, live.prefix);
                            wait("the API server's reload", Duration::from_secs(30), || {
                                std::fs::read_to_string(&log)
                                    .is_ok_and(|l| l.matches("SIGHUP: files read again").count() >= k)
                            });
                            for node in NODES {
                                netpol_lab::probe::flush_conntrack(&live.node_netns(node)).unwrap();
                            }
                        }
                        // The marker: written last, so the agents have every change once they reflect it.
                        let marker = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": "netpol-sync-marker", "labels": {"case": k.to_string()}}});
                        let (code, _) = live.api("DELETE", "/api/v1/namespaces/netpol-sync-marker", JSON, "");
                        assert!(code == 200 || code == 404, "{code}");
                        let rv = live.write("POST", "/api/v1/namespaces", JSON, &marker.to_string());
                        live.wait_synced(rv);
                        std::fs::write(&flows, &cases[i].flows).unwrap();
                        let o = Command::new(env!("CARGO_BIN_EXE_netpol"))
                            .args(["--cni", "netpol", "connectivity-test", "--prefix", &live.prefix, "--keep"])
                            .args(["--timeout-ms", TIMEOUT_MS, "-f"])
                            .arg(&live.file)
                            .arg("--flows")
                            .arg(&flows)
                            .env("NO_COLOR", "1")
                            .output()
                            .unwrap();
                        out.push((i, Ok(o)));
                    }
                    let prefix = live.prefix.clone();
                    drop(live);
                    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
                    let left = String::from_utf8_lossy(&left.stdout);
                    assert!(!left.lines().any(|l| l.starts_with(&format!("{prefix}-"))), "leftovers:\n{left}");
                    out
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    for (i, p) in placed.into_iter().enumerate() {
        if let Err(why) = p {
            runs.push((i, Err(why)));
        }
    }
    runs.sort_by_key(|r| r.0);
    runs.into_iter().map(|(_, r)| r).collect()
}

#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    skipped: Vec<String>,
    probes: usize,
    agree: usize,
    untestable: usize,
    /// Probes where netpol's reading (`--cni netpol`) differs from the dialect's expectation.
    reading_differs: usize,
    problems: Vec<String>,
}

/// What `connectivity-test` may call untestable in the lab (it says why): SCTP without raw sockets, ICMP other
/// than echo requests.
const UNTESTABLE: [&str; 2] = ["no raw SCTP socket", "only echo requests are probed by the lab"];

/// Checks every case's answers: one line per flow, each observed as the engine decides (or untestable for a
/// reason the lab gives). `expect` gives a flow's dialect expectation, when the case has one.
fn tally(names: &[String], cases: &[LabCase], runs: &[Run], expect: impl Fn(usize, usize) -> Option<String>) -> Tally {
    let mut t = Tally::default();
    for (i, ((name, case), run)) in names.iter().zip(cases).zip(runs).enumerate() {
        let o = match run {
            Ok(o) => o,
            Err(why) => {
                t.skipped.push(format!("{name}: {why}"));
                continue;
            }
        };
        t.cases += 1;
        let stderr = String::from_utf8_lossy(&o.stderr);
        if !matches!(o.status.code(), Some(0 | 1)) {
            t.problems.push(format!("{name}: connectivity-test failed: {stderr}"));
            continue;
        }
        let lines: Vec<serde_json::Value> =
            String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if lines.len() != case.flows.lines().count() {
            t.problems.push(format!(
                "{name}: {} answers for {} flows: {stderr}",
                lines.len(),
                case.flows.lines().count()
            ));
            continue;
        }
        for (j, l) in lines.iter().enumerate() {
            t.probes += 1;
            let what = format!("{name}: {} -> {} {}/{}", l["src"], l["dst"], l["protocol"], l["port"]);
            if let Some(err) = l.get("error") {
                t.problems.push(format!("{what}: not taken as a flow: {err}"));
                continue;
            }
            if expect(i, j).is_some_and(|e| l["verdict"] != e.as_str()) {
                t.reading_differs += 1;
            }
            match l["observed"].as_str().unwrap_or("") {
                "untestable" if UNTESTABLE.iter().any(|u| l["detail"].as_str().unwrap_or("").contains(u)) => {
                    t.untestable += 1
                }
                o if l["verdict"] == o => t.agree += 1,
                o => t.problems.push(format!(
                    "{what}: the engine says {}, the kernel of the agents' nodes {o} ({})",
                    l["verdict"],
                    l["detail"].as_str().unwrap_or("")
                )),
            }
        }
    }
    t
}

fn report(dialect: &str, t: &Tally, total: usize) {
    eprintln!(
        "{dialect} across two nodes with agents: {} of {total} cases ({} skipped), {} probes: {} agree, {} \
         untestable, {} where netpol's reading differs from the dialect's, {} problems",
        t.cases,
        t.skipped.len(),
        t.probes,
        t.agree,
        t.untestable,
        t.reading_differs,
        t.problems.len()
    );
    for s in &t.skipped {
        eprintln!("  skipped: {s}");
    }
    assert!(t.problems.is_empty(), "{} problems:\n{}", t.problems.len(), t.problems.join("\n"));
    assert_eq!(t.agree + t.untestable, t.probes);
    assert!(t.cases * 10 >= total * 9, "fewer than 90% of the cases ran ({} skipped)", t.skipped.len());
}

macro_rules! require_root {
    () => {
        if let Some(why) = skip_reason() {
            panic!("this data-plane test cannot run: {why} (it is ignored when the build finds no root or tools)");
        }
    };
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn network_policy_api_conformance_across_nodes_with_agents() {
    require_root!();
    let steps = crate::conformance::steps();
    let mut names = Vec::new();
    let mut cases = Vec::new();
    let mut expects = Vec::new();
    for step in &steps {
        let args = crate::conformance::manifest_args(&step.dir);
        let manifests: String = args
            .iter()
            .filter(|a| *a != "-f")
            .map(|f| format!("---\n{}\n", std::fs::read_to_string(f).unwrap()))
            .collect();
        let flows = std::fs::read_to_string(step.dir.join("expect.jsonl")).unwrap();
        expects.push(crate::conformance::expectations(step));
        names.push(step.name.clone());
        cases.push(LabCase { manifests, flows });
    }
    let runs = run_with_agents("mnp", &cases);
    let t = tally(&names, &cases, &runs, |i, j| expects[i][j]["expect"].as_str().map(String::from));
    report("network-policy-api conformance", &t, cases.len());
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn calico_conformance_across_nodes_with_agents() {
    require_root!();
    let all = crate::calico_conformance::cases();
    let cases: Vec<LabCase> = all.iter().map(|(_, c)| crate::calico_dataplane::lab_case(c)).collect();
    let names: Vec<String> = all.iter().map(|(f, c)| format!("{f} ({})", c.name)).collect();
    let runs = run_with_agents("mca", &cases);
    let t = tally(&names, &cases, &runs, |i, j| all[i].1.probes.get(j).map(|p| p.expect.clone()));
    report("Calico conformance", &t, cases.len());
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn antrea_conformance_across_nodes_with_agents() {
    require_root!();
    let all = crate::antrea_conformance::cases();
    let cases: Vec<LabCase> = all.iter().map(|(_, c)| crate::antrea_dataplane::lab_case(c)).collect();
    let names: Vec<String> = all.iter().map(|(f, c)| format!("{f} ({})", c.name)).collect();
    let runs = run_with_agents("man", &cases);
    let t = tally(&names, &cases, &runs, |_, _| None);
    report("Antrea conformance", &t, cases.len());
}

#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn cilium_conformance_across_nodes_with_agents() {
    require_root!();
    let all: Vec<(String, crate::cilium_conformance::Case)> = crate::cilium_conformance::cases()
        .into_iter()
        .filter(|(f, _)| crate::cilium_conformance::L3L4_CASES.contains(&f.as_str()))
        .filter(|(_, c)| !crate::cilium_dataplane::case_flows(c).1.is_empty())
        .collect();
    let cases: Vec<LabCase> = all
        .iter()
        .map(|(_, c)| LabCase { manifests: c.manifests.clone(), flows: crate::cilium_dataplane::case_flows(c).0 })
        .collect();
    let names: Vec<String> = all.iter().map(|(f, c)| format!("{f} ({})", c.name)).collect();
    let runs = run_with_agents("mci", &cases);
    let t = tally(&names, &cases, &runs, |i, j| {
        crate::cilium_dataplane::case_flows(&all[i].1).1.get(j).map(|p| p.2.to_string())
    });
    report("Cilium conformance (connections)", &t, cases.len());
}
