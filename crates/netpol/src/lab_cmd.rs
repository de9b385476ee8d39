//! `netpol lab up|down|apply`, `netpol connectivity-test`, `netpol nft stats`: the data plane from the CLI, in a
//! single-node lab or a multi-node one (`--nodes N`: every node loaded with its own share, [`node_ruleset`]).
//!
//! Everything kernel-facing goes through `netpol_nft::apply` (commands) and `netpol_lab` (namespaces, and sockets
//! in them); this module only plans and reports. Built with the `lab` feature.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use netpol_core::compile::Engine;
use netpol_core::model::{Cluster, PodId};
use netpol_input::query::Resolver;
use netpol_lab::connectivity::{self, Case, Placed};
use netpol_lab::lab::{Lab, LabPod};
use netpol_lab::probe::Observed;
use netpol_nft::apply::{self, Runner, System};
use netpol_nft::ruleset;
use serde::Serialize;

pub const DEFAULT_PREFIX: &str = "netpol-lab";

/// The lab's pods for a cluster (plus emulated external addresses) and the engine compiled on lab addresses.
pub struct Prepared {
    pub engine: Engine,
    pub pods: Vec<LabPod>,
    pub untestable: BTreeMap<PodId, String>,
}

pub fn prepare(cluster: &Cluster) -> Prepared {
    l7_notes(cluster);
    let plan = connectivity::plan(cluster);
    let engine = Engine::with_cni(plan.cluster, netpol_input::cni());
    let mut pods = plan.pods;
    let hosts = connectivity::host_endpoint_pods(&engine, &pods);
    pods.extend(hosts);
    let nodes = connectivity::node_pods(&engine, &pods);
    pods.extend(nodes);
    Prepared { engine, pods, untestable: plan.untestable }
}

/// Says, for each Cilium rule with L7 rules, that the data plane allows its ports at L4 and filters no request
/// (it has no HTTP or DNS proxy).
fn l7_notes(cluster: &Cluster) {
    for p in &cluster.policies {
        for r in p.ingress.iter().chain(&p.egress).filter(|r| r.l7.is_some()) {
            let field = r.name.as_deref().unwrap_or_default();
            let parser = r.l7.as_ref().map_or("L7", |l| l.parser());
            let name = match p.ns() {
                Some(ns) => format!("{}/{}", cluster.ns_name(ns), p.name),
                None => p.name.clone(),
            };
            eprintln!(
                "note: {} {name}: {field}: the data plane allows these ports at L4; the requests themselves are not \
                 filtered ({parser} rules need Cilium's proxy; `netpol query` with `http`/`dns` gives its verdict)",
                p.kind.as_str(),
            );
        }
    }
}

/// Where the snapshot of the ruleset loaded in node `node` of lab `prefix` is kept: `<prefix>.ruleset.json` for
/// the node of a single-node lab, `<prefix>.<node>.ruleset.json` for each node of a multi-node lab.
fn snapshot_path(prefix: &str, node: Option<&str>) -> std::path::PathBuf {
    let name = match node {
        None => format!("{prefix}.ruleset.json"),
        Some(node) => format!("{prefix}.{node}.ruleset.json"),
    };
    std::path::PathBuf::from(netpol_lab::lab::STATE_DIR).join(name)
}

/// Whether `file` (a name in the state directory) is the snapshot of a ruleset of lab `prefix`, whatever its
/// nodes: `<prefix>.ruleset.json` or `<prefix>.<node>.ruleset.json` (a prefix has no dots).
fn is_snapshot_of(prefix: &str, file: &str) -> bool {
    file.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('.')).is_some_and(|r| r.ends_with("ruleset.json"))
}

/// The snapshot paths of every node of `lab`.
fn snapshot_paths(lab: &Lab) -> Vec<std::path::PathBuf> {
    if lab.is_multi_node() {
        lab.nodes().iter().map(|n| snapshot_path(lab.prefix(), Some(&n.name))).collect()
    } else {
        vec![snapshot_path(lab.prefix(), None)]
    }
}

/// Shortened rule comments of the rulesets loaded in the lab's nodes → full text.
fn long_comments(lab: &Lab) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for path in snapshot_paths(lab) {
        let snap = std::fs::read(path).ok().and_then(|b| serde_json::from_slice::<ruleset::Snapshot>(&b).ok());
        out.extend(snap.map(|s| s.long_comments).unwrap_or_default());
    }
    out
}

/// The ruleset node `node` of a lab enforces: a single node, the whole cluster's; a node of a multi-node lab, its
/// own share, as a node agent programs it (`ruleset::generate_for_addresses`: the egress checks of the pods the
/// lab placed on it and their ingress checks, with the whole cluster's peer sets). A flow between pods on two nodes
/// is then checked for egress on the source's node and for ingress on the destination's.
pub fn node_ruleset(engine: &Engine, lab: &Lab, node: &str) -> ruleset::Ruleset {
    if !lab.is_multi_node() {
        return ruleset::generate(engine);
    }
    let c = engine.cluster();
    let local: std::collections::BTreeSet<std::net::IpAddr> = (0..c.pods.len())
        .map(PodId::new)
        .filter(|&p| !c.pod(p).host_network && lab.pod_node(&c.pod_ref(p)) == Some(node))
        .flat_map(|p| c.pod(p).ips.iter().copied())
        .collect();
    ruleset::generate_for_addresses(engine, &local)
}

/// Starts one `netpol agent` per node of a running multi-node lab, inside the node's namespace, reading `files`
/// (re-read when they change) and failing closed for the lab's pod interfaces (`v*`); each one's log goes to
/// `/run/netpol-lab/<prefix>.<node>.agent.log`. The agents replace the nodes' rulesets with their own shares and keep
/// them current; `lab down` stops them (every process of the lab's namespaces). The lab's nodes must be the
/// cluster's Nodes (pods placed by their `spec.nodeName`, which is what an agent reads).
#[cfg(feature = "agent")]
pub fn start_agents(cluster: &Cluster, lab: &Lab, files: &[String]) -> Result<Vec<Started>> {
    check_agent_nodes(cluster, lab)?;
    let exe = std::env::current_exe().context("locating the netpol binary")?;
    let mut abs = Vec::new();
    for f in files {
        if f == "-" {
            return Err(anyhow!("--agent: the agents re-read the manifests, so give files, not `-`"));
        }
        abs.push(std::fs::canonicalize(f).with_context(|| format!("cannot read `{f}`"))?.display().to_string());
    }
    let mut started = Vec::new();
    for node in lab.nodes() {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &node.netns]).arg(&exe).args([
            "agent",
            "--node",
            &node.name,
            "--pod-interface",
            "v*",
        ]);
        for f in &abs {
            cmd.args(["-f", f]);
        }
        let pid = spawn_logged(cmd, lab.prefix(), &format!("{}.agent", node.name))?;
        started.push(Started { name: node.name.clone(), pid, metrics: None });
    }
    let text: String = started.iter().map(|s| format!("{}\n", s.pid)).collect();
    std::fs::write(pids_path(lab.prefix()), text)?;
    Ok(started)
}

/// A process `lab up --agent` started.
#[cfg(feature = "agent")]
pub struct Started {
    /// `api` (the lab's API server) or the node of an agent.
    pub name: String,
    pub pid: u32,
    /// Where an agent serves its metrics and readiness.
    pub metrics: Option<std::net::SocketAddr>,
}

/// Starts `cmd` detached from the terminal, its output to the lab's log `/run/netpol-lab/<prefix>.<name>.log`
/// (which [`down`] removes); its pid.
#[cfg(feature = "agent")]
fn spawn_logged(mut cmd: std::process::Command, prefix: &str, name: &str) -> Result<u32> {
    let dir = std::path::Path::new(netpol_lab::lab::STATE_DIR);
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{prefix}.{name}.log"));
    let log = std::fs::File::create(&path).with_context(|| format!("cannot write `{}`", path.display()))?;
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name} (see {})", path.display()))?;
    Ok(child.id())
}

/// The file of the lab's long-lived processes outside its namespaces (its API server, agents in the host's
/// namespace): one pid a line, stopped by [`down`].
fn pids_path(prefix: &str) -> std::path::PathBuf {
    std::path::Path::new(netpol_lab::lab::STATE_DIR).join(format!("{prefix}.pids"))
}

/// Serves the manifests' objects from an API server (netpol's fake one, which speaks the real wire protocol and
/// takes kubectl's writes) until killed, its kubeconfig written to `kubeconfig_out` once it listens: the cluster a
/// lab's agents watch (`lab up --agent --kubeconfig-out`). Objects of kinds it does not serve are left out, counted.
#[cfg(feature = "agent")]
pub fn serve_api(files: &[String], kubeconfig_out: &std::path::Path) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Faults, for tests and for people trying the agents' recovery: SIGUSR1 forgets the history and drops every
    // watch (as an apiserver whose etcd compacted: clients watch again from their last revision, get `410 Gone`
    // and relist); SIGUSR2 only drops the watches (a lost connection: clients resume where they were); SIGHUP
    // reads the files again and makes the server hold exactly their objects (each put, every other deleted: the
    // changes a client would make). Taken before the kubeconfig exists, so that a signal never finds the process
    // without its handlers.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut expire, mut drop, mut reload) = rt.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::user_defined1())?,
            signal(SignalKind::user_defined2())?,
            signal(SignalKind::hangup())?,
        ))
    })?;
    let server = netpol_fakeapi::FakeApiServer::start().context("starting the API server")?;
    let mut left_out = 0;
    let objects = crate::flows_cmd::objects_of_paths(files)?;
    install_apis(&server, objects.iter().map(|o| &o.value));
    for o in objects {
        if server.try_put(o.value).is_err() {
            left_out += 1;
        }
    }
    if left_out > 0 {
        eprintln!("{left_out} object(s) of kinds the lab's API server does not serve were left out");
    }
    let tmp = kubeconfig_out.with_extension("tmp");
    server.write_kubeconfig(&tmp).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, kubeconfig_out)?;
    eprintln!("API server at {} (kubeconfig: {})", server.url(), kubeconfig_out.display());
    rt.block_on(async {
        loop {
            tokio::select! {
                _ = expire.recv() => {
                    server.compact();
                    server.drop_watches();
                    eprintln!("SIGUSR1: history compacted and every watch dropped: clients relist (410 Gone)");
                }
                _ = drop.recv() => {
                    server.drop_watches();
                    eprintln!("SIGUSR2: every watch dropped: clients watch again");
                }
                _ = reload.recv() => match crate::flows_cmd::objects_of_paths(files) {
                    Ok(objects) => {
                        install_apis(&server, objects.iter().map(|o| &o.value));
                        let (put, deleted, refused) = server.replace_all(objects.into_iter().map(|o| o.value).collect());
                        eprintln!(
                            "SIGHUP: files read again: {put} object(s) put, {deleted} deleted, {refused} left out \
                             (revision {})",
                            server.resource_version()
                        );
                    }
                    Err(e) => eprintln!("SIGHUP: cannot read the files again, nothing changed: {e:#}"),
                },
            }
        }
    })
}

/// Installs on the lab's API server the optional APIs the objects need (as a cluster has the CRDs of its CNI):
/// Calico's (its API server when an object is `projectcalico.org/v3`, else its CRDs), Cilium's and Antrea's. An
/// API once installed stays.
#[cfg(feature = "agent")]
fn install_apis<'a>(server: &netpol_fakeapi::FakeApiServer, objects: impl Iterator<Item = &'a serde_json::Value>) {
    let (mut calico_v3, mut calico_crd, mut cilium, mut antrea) = (false, false, false, false);
    for o in objects {
        let v = o["apiVersion"].as_str().unwrap_or("");
        calico_v3 |= v.starts_with("projectcalico.org/");
        calico_crd |= v.starts_with("crd.projectcalico.org/");
        cilium |= v.starts_with("cilium.io/");
        antrea |= v.ends_with("antrea.io/v1beta1") || v.starts_with("crd.antrea.io/");
    }
    if calico_v3 {
        server.set_calico(netpol_fakeapi::Calico::ApiServer);
    } else if calico_crd && !server.served_kinds().iter().any(|k| k.api_version().starts_with("crd.projectcalico")) {
        server.set_calico(netpol_fakeapi::Calico::Crds);
    }
    if cilium {
        server.set_cilium(true);
    }
    if antrea {
        server.set_antrea(true);
    }
}

/// `lab up --agent --kubeconfig-out FILE`: the lab's API server (a process of its own, serving `files`) and one
/// agent per node watching it from the host's namespace and programming its node's (`--netns`). Their pids go to
/// the lab's pid file, which [`down`] reads.
#[cfg(feature = "agent")]
pub fn start_live_agents(
    cluster: &Cluster,
    lab: &Lab,
    files: &[String],
    kubeconfig_out: &std::path::Path,
) -> Result<Vec<Started>> {
    check_agent_nodes(cluster, lab)?;
    let exe = std::env::current_exe().context("locating the netpol binary")?;
    let dir = std::path::Path::new(netpol_lab::lab::STATE_DIR);
    let _ = std::fs::remove_file(kubeconfig_out);
    let mut pids = Vec::new();
    let mut api = std::process::Command::new(&exe);
    api.args(["lab", "api", "--kubeconfig-out"]).arg(kubeconfig_out);
    for f in files {
        api.args(["-f", f]);
    }
    pids.push(Started { name: "api".to_string(), pid: spawn_logged(api, lab.prefix(), "api")?, metrics: None });
    let t = std::time::Instant::now();
    while !kubeconfig_out.exists() {
        if t.elapsed() > Duration::from_secs(30) {
            return Err(anyhow!(
                "the lab's API server did not start (see {})",
                dir.join(format!("{}.api.log", lab.prefix())).display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for node in lab.nodes() {
        // Each agent's metrics and readiness on a free loopback port of the host's namespace.
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["agent", "--node", &node.name, "--netns", &node.netns, "--pod-interface", "v*", "--kubeconfig"])
            .arg(kubeconfig_out)
            .arg("--metrics-listen")
            .arg(metrics.to_string());
        let pid = spawn_logged(cmd, lab.prefix(), &format!("{}.agent", node.name))?;
        pids.push(Started { name: node.name.clone(), pid, metrics: Some(metrics) });
    }
    let text: String = pids.iter().map(|s| format!("{}\n", s.pid)).collect();
    std::fs::write(pids_path(lab.prefix()), text)?;
    Ok(pids)
}

/// The lab's nodes must be the cluster's Nodes for agents: an agent enforces for the pods whose nodeName is its node.
#[cfg(feature = "agent")]
fn check_agent_nodes(cluster: &Cluster, lab: &Lab) -> Result<()> {
    let names: Vec<String> = lab.nodes().iter().map(|n| n.name.clone()).collect();
    let mut cluster_nodes: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    cluster_nodes.sort();
    if !lab.is_multi_node() || cluster_nodes != names {
        return Err(anyhow!(
            "--agent needs a multi-node lab made of the cluster's Nodes (--nodes N with exactly N Node objects, and \
             the pods' spec.nodeName): an agent enforces for the pods whose nodeName is its node"
        ));
    }
    Ok(())
}

/// The lab's nodes for `lab up --nodes N` on `cluster`: one node (`node`) for `N` ≤ 1; the cluster's Nodes, by
/// name, when it has exactly `N` of them (pods then go to their `spec.nodeName`); else `node0` ... `node<N-1>`
/// (pods spread evenly).
pub fn lab_nodes(cluster: &Cluster, n: usize) -> Vec<String> {
    let mut names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    names.sort();
    names.dedup();
    if n > 1 && names.len() == n && names.iter().all(|n| netpol_lab::lab::valid_node_name(n)) {
        names
    } else {
        netpol_lab::lab::anonymous_nodes(n)
    }
}

/// How a ruleset was loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// The whole table replaced in one transaction.
    Full,
    /// Only the differences from the previous ruleset, in one transaction.
    Incremental,
    /// Not loaded: the lab's agents program its nodes ([`agents_program`]).
    Agents,
}

/// Whether agents program the lab's nodes (`lab up --agent`): then `lab apply` and `connectivity-test` on the
/// running lab only add and remove pods, and leave the rulesets to the agents.
pub fn agents_program(prefix: &str) -> bool {
    pids_path(prefix).exists()
}

/// Loads each node's ruleset ([`node_ruleset`]) into its namespace: incrementally when the previous ruleset is
/// known (its snapshot is kept beside the lab state), else by replacing the table; both are one nft transaction
/// per node. `Full` when any node's table was replaced.
fn load_ruleset(r: &dyn Runner, lab: &Lab, engine: &Engine, allow_incremental: bool) -> Result<Load> {
    let mut how = Load::Incremental;
    for (node, path) in lab.nodes().iter().zip(snapshot_paths(lab)) {
        let rs = node_ruleset(engine, lab, &node.name);
        if load_node_ruleset(r, &node.netns, &rs, &path, allow_incremental)? == Load::Full {
            how = Load::Full;
        }
    }
    Ok(how)
}

/// Loads `rs` into `netns` (see [`load_ruleset`]), its snapshot kept at `path`.
fn load_node_ruleset(
    r: &dyn Runner,
    netns: &str,
    rs: &ruleset::Ruleset,
    path: &std::path::Path,
    allow_incremental: bool,
) -> Result<Load> {
    let snap = rs.snapshot();
    let old: Option<ruleset::Snapshot> =
        if allow_incremental { std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()) } else { None };
    let t = std::time::Instant::now();
    let mode = match old {
        Some(old) => {
            let script = snap.update_script(&old);
            match apply::nft_apply(r, Some(netns), &script) {
                Ok(()) => Load::Incremental,
                Err(e) => {
                    tracing::warn!(error = %e, "incremental update refused; replacing the whole table instead");
                    apply::nft_apply(r, Some(netns), &rs.replace_script()).context("loading the ruleset")?;
                    Load::Full
                }
            }
        }
        None => {
            apply::nft_apply(r, Some(netns), &rs.replace_script()).context("loading the ruleset")?;
            Load::Full
        }
    };
    let (rules, elements) = rs.size();
    tracing::info!(netns, elapsed = ?t.elapsed(), rules, elements, ?mode, "ruleset loaded (one transaction)");
    std::fs::create_dir_all(netpol_lab::lab::STATE_DIR)?;
    std::fs::write(path, serde_json::to_vec(&snap)?)?;
    Ok(mode)
}

/// Replaces the lab's whole ruleset (tests compare it with incremental updates).
pub fn reload_full(cluster: &Cluster, prefix: &str) -> Result<()> {
    let r = System;
    let lab = Lab::attach(&r, prefix)?.ok_or_else(|| anyhow!("no lab `{prefix}` is running"))?;
    load_ruleset(&r, &lab, &prepare(cluster).engine, false).map(|_| ())
}

/// `lab up`: creates (or updates) the lab and loads the ruleset. A new lab has one node.
pub fn up(cluster: &Cluster, prefix: &str, extra: Vec<LabPod>) -> Result<(Lab, Prepared)> {
    up_nodes(cluster, prefix, None, extra)
}

/// `lab up --nodes N`: creates (or updates) the lab and loads the ruleset into every node. A new lab gets
/// [`lab_nodes`]`(cluster, N)` (one node without `N`); a running lab keeps its nodes (and must have `N` of them).
pub fn up_nodes(cluster: &Cluster, prefix: &str, nodes: Option<usize>, extra: Vec<LabPod>) -> Result<(Lab, Prepared)> {
    let r = System;
    let p = prepare(cluster);
    let mut pods = p.pods.clone();
    pods.extend(extra);
    let (lab, running) = match Lab::attach(&r, prefix)? {
        Some(lab) if nodes.is_some_and(|n| n.max(1) != lab.nodes().len()) => {
            return Err(anyhow!(
                "lab `{prefix}` is running with {} node(s), not {}: run `netpol lab down --prefix {prefix}` first",
                lab.nodes().len(),
                nodes.unwrap_or(1)
            ))
        }
        Some(mut lab) => {
            lab.apply(&r, &pods)?;
            (lab, true)
        }
        None => {
            let n = nodes.unwrap_or(1);
            let names = lab_nodes(cluster, n);
            if n > 1 && !cluster.nodes.is_empty() && names.first().is_some_and(|f| f == "node0") {
                eprintln!(
                    "note: the cluster has {} Node(s) the lab cannot be made of for --nodes {n}: its nodes are node0 .. \
                     node{}, and pods are spread over them whatever their nodeName",
                    cluster.nodes.len(),
                    n - 1
                );
            }
            (Lab::up_nodes(&r, prefix, &names, &pods)?, false)
        }
    };
    if running && agents_program(prefix) {
        tracing::info!(prefix, "the lab's agents program its nodes: no ruleset loaded");
    } else {
        load_ruleset(&r, &lab, &p.engine, running)?;
    }
    for (pod, why) in &p.untestable {
        eprintln!("warning: {} not created in the lab: {why}", p.engine.cluster().pod_ref(*pod));
    }
    Ok((lab, p))
}

/// `lab down`: removes every namespace of the lab (see [`Lab::down`]) and the snapshots of its rulesets.
pub fn down(prefix: &str) -> Result<usize> {
    // The lab's processes outside its namespaces (its API server, agents in the host's namespace) first.
    if let Ok(text) = std::fs::read_to_string(pids_path(prefix)) {
        let pids: Vec<&str> = text.split_whitespace().collect();
        if !pids.is_empty() {
            let mut argv = vec!["kill", "-TERM"];
            argv.extend(pids.iter().copied());
            let _ = System.run(&argv, None);
        }
        let _ = std::fs::remove_file(pids_path(prefix));
    }
    let n = Lab::down(&System, prefix)?;
    if let Ok(dir) = std::fs::read_dir(netpol_lab::lab::STATE_DIR) {
        for entry in dir.flatten() {
            // Its rulesets' snapshots, and the logs of its API server and agents (`P.api.log`, `P.NODE.agent.log`).
            let log = |name: &str| name.starts_with(&format!("{prefix}.")) && name.ends_with(".log");
            if entry.file_name().to_str().is_some_and(|name| is_snapshot_of(prefix, name) || log(name)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(n)
}

/// `lab apply`: re-applies after manifests changed: pods added/removed in the lab, the ruleset replaced in one
/// transaction (established connections that are still allowed survive through conntrack).
pub fn apply_changes(cluster: &Cluster, prefix: &str) -> Result<Load> {
    let r = System;
    let mut lab =
        Lab::attach(&r, prefix)?.ok_or_else(|| anyhow!("no lab `{prefix}` is running (use `netpol lab up`)"))?;
    let p = prepare(cluster);
    // Keep emulated external addresses that are already there.
    let mut pods = p.pods.clone();
    for (key, _, ips) in lab.pods() {
        if key.starts_with("external/") {
            pods.push(LabPod::new(key, ips.iter().copied()));
        }
    }
    let delta = lab.apply(&r, &pods)?;
    tracing::info!(?delta, "lab pods updated");
    if agents_program(prefix) {
        return Ok(Load::Agents);
    }
    load_ruleset(&r, &lab, &p.engine, true)
}

#[derive(Serialize)]
struct Summary {
    flows: usize,
    agree: usize,
    disagree: usize,
    untestable: usize,
    errors: usize,
}

/// `connectivity-test`: returns the exit code (0 all agree, 1 any disagreement or error line).
pub fn connectivity_test(
    cluster: &Cluster,
    flows: Option<&str>,
    prefix: &str,
    nodes: Option<usize>,
    keep: bool,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<u8> {
    match flows {
        Some(path) => {
            let f = std::fs::File::open(path).with_context(|| format!("cannot read `{path}`"))?;
            let input: &mut dyn BufRead = &mut std::io::BufReader::new(f);
            connectivity_test_input(cluster, Some(input), prefix, nodes, keep, timeout, out)
        }
        None => connectivity_test_input(cluster, None, prefix, nodes, keep, timeout, out),
    }
}

/// [`connectivity_test`] with the flows (the `query` contract) read from `flows`. A lab it creates has `nodes`
/// nodes (see [`up_nodes`]); a running lab (single- or multi-node) is probed as it is.
pub fn connectivity_test_input(
    cluster: &Cluster,
    flows: Option<&mut dyn BufRead>,
    prefix: &str,
    nodes: Option<usize>,
    keep: bool,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<u8> {
    let p = prepare(cluster);
    let e = &p.engine;
    // Cases: from the flows (query contract), or every pod pair on every declared port.
    let mut lines: Vec<(String, Result<Case, String>)> = Vec::new();
    match flows {
        Some(input) => {
            let r = Resolver::new(e, "default");
            for (line, text) in flow_lines(input)? {
                let case = text.and_then(|()| parse_case(&r, &line));
                lines.push((line, case));
            }
        }
        None => {
            for c in connectivity::default_cases(e, &p.untestable) {
                let line = serde_json::json!({
                    "src": e.endpoint_name(&c.src), "dst": e.endpoint_name(&c.dst),
                    "protocol": c.protocol, "port": c.port,
                })
                .to_string();
                lines.push((line, Ok(c)));
            }
        }
    }
    let cases: Vec<Case> = lines.iter().filter_map(|(_, c)| c.as_ref().ok().cloned()).collect();
    let externals = connectivity::external_pods(e, &cases);
    let r = System;
    let existing = Lab::attach(&r, prefix)?;
    let created = existing.is_none();
    let (lab, _) = up_nodes(cluster, prefix, if created { nodes } else { None }, externals)?;
    let probe_all = || -> Result<Vec<(Observed, String)>> {
        let placed: Vec<Result<(Placed, netpol_lab::probe::L4, u16), String>> = lines
            .iter()
            .filter_map(|(_, c)| c.as_ref().ok())
            .map(|c| {
                let (sk, sip) = connectivity::locate(e, &p.untestable, &c.src)?;
                let (dk, dip) = connectivity::locate(e, &p.untestable, &c.dst)?;
                let src_netns = lab.pod_netns(&sk).ok_or_else(|| format!("{sk} is not in the lab"))?.to_string();
                let dst_netns = lab.pod_netns(&dk).ok_or_else(|| format!("{dk} is not in the lab"))?.to_string();
                let (l4, port) = connectivity::probe_of(c.protocol, c.port, dip)?;
                Ok((Placed { src_netns, src_ip: sip, dst_netns, dst_ip: dip }, l4, port))
            })
            .collect();
        connectivity::observe(&placed, timeout).map_err(anyhow::Error::msg)
    };
    let result = probe_all();
    if created && !keep {
        if let Err(err) = down(prefix) {
            eprintln!("warning: could not remove the lab: {err}");
        }
    }
    let observed = result?;
    let mut obs = observed.into_iter();
    let mut s = Summary { flows: lines.len(), agree: 0, disagree: 0, untestable: 0, errors: 0 };
    let mut w = std::io::BufWriter::new(out);
    for (line, case) in &lines {
        let body = line.trim_end().strip_suffix('}').unwrap_or(line);
        let sep = if body.trim_end().ends_with('{') { "" } else { "," };
        match case {
            Err(msg) => {
                s.errors += 1;
                netpol_input::query::write_error_line(&mut w, line, msg)?;
            }
            Ok(c) => {
                let verdict = e.allowed(&c.src, &c.dst, c.protocol, c.port);
                let (o, detail) = obs.next().unwrap_or((Observed::Untestable, "not probed".into()));
                let v = if verdict { "allow" } else { "deny" };
                let o_text = match o {
                    Observed::Allow => "allow",
                    Observed::Deny => "deny",
                    Observed::Untestable => "untestable",
                };
                match o {
                    Observed::Untestable => s.untestable += 1,
                    _ if o_text == v => s.agree += 1,
                    _ => s.disagree += 1,
                }
                write!(w, "{body}{sep}\"verdict\":\"{v}\",\"observed\":\"{o_text}\"")?;
                // A deny the kernel answered (a rejection, an ICMP error) rather than a silent drop says how.
                if o == Observed::Untestable || o_text != v || (o == Observed::Deny && detail != "timeout") {
                    write!(w, ",\"detail\":{}", serde_json::to_string(&detail)?)?;
                }
                writeln!(w, "}}")?;
            }
        }
    }
    w.flush()?;
    // Each answer line stays the flow's own object (as `query`'s): the CNI of the verdicts is in the summary.
    eprintln!(
        "connectivity-test: {} flows: {} agree, {} DISAGREE, {} untestable, {} errors; verdicts for {}",
        s.flows,
        s.agree,
        s.disagree,
        s.untestable,
        s.errors,
        netpol_input::cni_header(e)
    );
    Ok(if s.disagree > 0 || s.errors > 0 { 1 } else { 0 })
}

/// The non-blank lines of a flows file (the `query` contract), read as bytes: a UTF-8 byte-order mark at the start
/// is ignored, and a line that is not UTF-8 comes with its error (the line with its bad bytes replaced).
fn flow_lines(input: &mut dyn BufRead) -> std::io::Result<Vec<(String, Result<(), String>)>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut n = 0u64;
    while let Some(bytes) = netpol_input::query::read_line(input, &mut buf, n + 1)? {
        n += 1;
        match std::str::from_utf8(bytes) {
            Ok(l) if l.trim().is_empty() => {}
            Ok(l) => out.push((l.to_string(), Ok(()))),
            Err(e) => {
                out.push((String::from_utf8_lossy(bytes).into_owned(), Err(netpol_input::query::not_utf8(n, &e))))
            }
        }
    }
    Ok(out)
}

fn parse_case(r: &Resolver, line: &str) -> Result<Case, String> {
    let f = netpol_input::query::parse_flow(r, line)?;
    Ok(Case { src: f.src, dst: f.dst, protocol: f.protocol, port: f.port })
}

#[derive(Serialize, Default)]
pub struct RuleStat {
    pub packets: u64,
    pub bytes: u64,
}

/// `nft stats`: counters of the loaded ruleset, per policy rule (and drops per isolation), from the lab's node
/// namespace; summed over the nodes of a multi-node lab (a flow between two nodes passes both, and counts twice).
pub fn stats(prefix: &str, json: bool, out: &mut dyn Write) -> Result<()> {
    let r = System;
    let lab = Lab::attach(&r, prefix)?.ok_or_else(|| anyhow!("no lab `{prefix}` is running"))?;
    let mut items = Vec::new();
    for node in lab.nodes() {
        let v = apply::nft_list_json(&r, Some(&node.netns))?;
        items.extend(v["nftables"].as_array().into_iter().flatten().cloned());
    }
    let long = long_comments(&lab);
    let mut per: BTreeMap<String, RuleStat> = BTreeMap::new();
    for item in &items {
        let Some(rule) = item.get("rule") else { continue };
        if rule["table"] != ruleset::TABLE {
            continue;
        }
        let Some(comment) = rule["comment"].as_str() else { continue };
        let comment = ruleset::expand_comment(comment, &long);
        let key = match ruleset::parse_comment(comment) {
            Some((rule_ref, _peer)) => rule_ref.to_string(),
            None => comment.to_string(),
        };
        for x in rule["expr"].as_array().into_iter().flatten() {
            if let Some(c) = x.get("counter") {
                let st = per.entry(key.clone()).or_default();
                st.packets += c["packets"].as_u64().unwrap_or(0);
                st.bytes += c["bytes"].as_u64().unwrap_or(0);
            }
        }
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&per)?)?;
    } else {
        writeln!(out, "{:<70} {:>10} {:>12}", "RULE (policy/direction/rule, or drop)", "PACKETS", "BYTES")?;
        for (k, s) in &per {
            writeln!(out, "{k:<70} {:>10} {:>12}", s.packets, s.bytes)?;
        }
    }
    Ok(())
}

/// Ensures we run as root with the tools the data plane needs.
pub fn check_privileges() -> Result<()> {
    if netpol_lab::euid() != 0 {
        return Err(anyhow!("the lab needs root (network namespaces and nftables)"));
    }
    if !apply::nft_available() {
        return Err(anyhow!("`nft` not found: install nftables (apt-get install nftables iproute2)"));
    }
    Ok(())
}

/// UTC RFC 3339 time of a `SystemTime` (seconds precision, plus milliseconds).
fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// `observe`: a JSON Lines flow log of data-plane verdicts for new connections through the lab's node; in a
/// multi-node lab through every node, each record naming its node (`"node"`): a flow between two nodes is seen,
/// and logged, on both.
pub fn observe(
    prefix: &str,
    engine: Option<&Engine>,
    count: Option<usize>,
    duration: Option<Duration>,
    out: &mut dyn Write,
) -> Result<usize> {
    use netpol_nft::observe::{trace_off_script, trace_on_script, TraceParser};
    let r = System;
    let lab = Lab::attach(&r, prefix)?.ok_or_else(|| anyhow!("no lab `{prefix}` is running"))?;
    let nodes: Vec<(String, String)> = lab.nodes().iter().map(|n| (n.name.clone(), n.netns.clone())).collect();
    // Read each node's monitor on a thread (lines tagged with the node's index), so that the duration limit can
    // stop us.
    let (tx, rx) = std::sync::mpsc::channel::<(usize, String)>();
    let mut children = Vec::new();
    let started = (|| -> Result<()> {
        for (i, (_, netns)) in nodes.iter().enumerate() {
            let mut child = apply::spawn_trace_monitor_with_handles_in(Some(netns))?;
            let stdout = child.stdout.take();
            children.push(child);
            let stdout = stdout.ok_or_else(|| anyhow!("no output from nft monitor"))?;
            apply::nft_apply(&r, Some(netns), &trace_on_script())?;
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((i, line)).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(())
    })();
    drop(tx);
    let stop = |children: &mut Vec<std::process::Child>| {
        for (_, netns) in &nodes {
            let _ = apply::nft_apply(&r, Some(netns), &trace_off_script());
        }
        for child in children.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    };
    if let Err(e) = started {
        stop(&mut children);
        return Err(e);
    }
    let name = |ip: &str| -> String {
        match (engine, ip.parse()) {
            (Some(e), Ok(addr)) => match e.pod_with_ip(addr) {
                Some(pod) => e.cluster().pod_ref(pod),
                None => ip.to_string(),
            },
            _ => ip.to_string(),
        }
    };
    let deadline = duration.map(|d| std::time::Instant::now() + d);
    // `nft monitor trace` prints a rule as it was when the monitor started: after `lab apply`, a handle is unknown
    // to it or names another rule. Each traced rule is named from its node's table as it is now (by the handle
    // `-a` prints), read again, with the shortened comments, when a handle is unknown or of another chain.
    let mut long = long_comments(&lab);
    let mut rules: Vec<_> = nodes.iter().map(|(_, netns)| apply::nft_table_rules(&r, Some(netns))).collect();
    let mut parsers: Vec<TraceParser> = nodes.iter().map(|_| TraceParser::default()).collect();
    let mut n = 0usize;
    let mut read_all = || -> Result<()> {
        loop {
            if count.is_some_and(|c| n >= c) {
                return Ok(());
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(std::time::Instant::now()) {
                    Some(w) => w,
                    None => return Ok(()),
                },
                None => Duration::from_secs(3600),
            };
            let (i, line) = match rx.recv_timeout(wait) {
                Ok(l) => l,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            };
            let (Some(parser), Some(node_rules)) = (parsers.get_mut(i), rules.get_mut(i)) else { continue };
            let mut line = line;
            if netpol_nft::observe::stale_for(node_rules, &line) {
                *node_rules = apply::nft_table_rules(&r, Some(&nodes[i].1));
                long = long_comments(&lab);
            }
            if let Some(named) = netpol_nft::observe::renamed(&line, node_rules) {
                line = named;
            }
            if let Some(mut rec) = parser.feed(&line) {
                rec.src = name(&rec.src);
                rec.dst = name(&rec.dst);
                for c in rec.allowed_by.iter_mut() {
                    *c = ruleset::expand_comment(c, &long).to_string();
                }
                if let Some(d) = rec.dropped_by.as_mut() {
                    *d = ruleset::expand_comment(d, &long).to_string();
                }
                let mut v = serde_json::to_value(&rec)?;
                v["time"] = serde_json::json!(rfc3339(std::time::SystemTime::now()));
                if lab.is_multi_node() {
                    v["node"] = serde_json::json!(nodes[i].0);
                }
                writeln!(out, "{v}")?;
                out.flush()?;
                n += 1;
            }
        }
    };
    let result = read_all();
    stop(&mut children);
    result.map(|_| n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `lab down` finds the snapshots of every node of the lab, and only its own.
    #[test]
    fn snapshots_of_a_lab() {
        assert_eq!(snapshot_path("p", None), std::path::Path::new("/run/netpol-lab/p.ruleset.json"));
        assert_eq!(snapshot_path("p", Some("n1")), std::path::Path::new("/run/netpol-lab/p.n1.ruleset.json"));
        for (file, mine) in [
            ("p.ruleset.json", true),
            ("p.n1.ruleset.json", true),
            ("p.ip-10-0-0-1.ec2.internal.ruleset.json", true),
            ("p.json", false),
            ("p-x.n1.ruleset.json", false),
            ("px.ruleset.json", false),
            ("q.n1.ruleset.json", false),
        ] {
            assert_eq!(is_snapshot_of("p", file), mine, "{file}");
        }
    }

    /// A multi-node lab's nodes are the cluster's Nodes when it has that many, else anonymous.
    #[test]
    fn lab_nodes_are_the_clusters_when_it_has_that_many() {
        let yaml = "
apiVersion: v1
kind: Node
metadata: {name: w2}
---
apiVersion: v1
kind: Node
metadata: {name: w1}
---
apiVersion: v1
kind: Node
metadata: {name: fabric}
";
        let c = netpol_core::load::load_str("n.yaml", yaml).cluster;
        let two = netpol_core::load::load_str("n.yaml", &yaml[..yaml.rfind("---").unwrap()]).cluster;
        assert_eq!(lab_nodes(&two, 2), ["w1", "w2"]);
        assert_eq!(lab_nodes(&two, 3), ["node0", "node1", "node2"]);
        assert_eq!(lab_nodes(&two, 1), ["node"]);
        // A Node name the lab cannot use: anonymous nodes.
        assert_eq!(lab_nodes(&c, 3), ["node0", "node1", "node2"]);
    }

    #[test]
    fn flow_files_skip_a_bom_and_blank_lines_and_keep_lines_that_are_not_utf8() {
        let mut input: &[u8] = b"\xef\xbb\xbf{\"src\":\"a/b\"}\r\n\n  \n\xff{}\n{\"x\":1}";
        let lines = flow_lines(&mut input).unwrap();
        assert_eq!(
            lines,
            vec![
                ("{\"src\":\"a/b\"}".to_string(), Ok(())),
                ("\u{fffd}{}".to_string(), Err("line 4 is not valid UTF-8 (at byte 1)".to_string())),
                ("{\"x\":1}".to_string(), Ok(())),
            ]
        );
        // Errors of lines that are not JSON objects are still one JSON object per line.
        let mut out = Vec::new();
        netpol_input::query::write_error_line(&mut out, "not json", "invalid flow").unwrap();
        netpol_input::query::write_error_line(&mut out, "{\"src\":1}", "bad").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"input\":\"not json\",\"error\":\"invalid flow\"}\n{\"src\":1,\"error\":\"bad\"}\n"
        );
    }
}
