//! Live clusters through the binary, against `netpol-fakeapi` (an API server written for these tests that speaks
//! the real wire protocol over plain HTTP) with kube-rs's real client:
//!
//! - The one-shot commands (`query`, `explain`, `matrix`, `lint`, `describe`) with `--kubeconfig`, and the input
//!   flags.
//! - `netpol serve --kubeconfig` over a real socket.
//! - The deploy/ manifest: kinds, read-only RBAC, the Deployment's command, probes and hardening.
//!
//! `serve` on a live cluster in-process (events, relists, counters) is tested in
//! `crates/netpol-server/tests/it/live.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netpol_fakeapi::fixtures::{self, allow_web, anp_deny_frontend, default_deny, pod, policy, worker_node};
use netpol_fakeapi::{FakeApiServer, RequestLog};
use serde_json::{json, Value};

/// Longest wait for the model to reflect a change (it normally takes ~50–100 ms).
const TIMEOUT: Duration = Duration::from_secs(20);

/// A fake API server with two namespaces and a pod in each, and a kubeconfig pointing at it.
struct Cluster {
    server: FakeApiServer,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

fn cluster() -> Cluster {
    let server = FakeApiServer::start().expect("fake API server");
    let dir = crate::common::tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    fixtures::seed_two_namespaces(&server);
    Cluster { server, kubeconfig, _dir: dir }
}

/// Non-watch GETs of a collection (list calls) among `requests`.
fn lists<'a>(requests: &'a [RequestLog], path: &'a str) -> impl Iterator<Item = &'a RequestLog> + 'a {
    requests.iter().filter(move |r| r.method == "GET" && r.path == path && !r.is_watch())
}

// ---- one-shot commands, through the binary ----

fn netpol(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netpol"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("KUBECONFIG").env_remove("KUBERNETES_SERVICE_HOST").env_remove("RUST_LOG");
    for v in ["HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"] {
        cmd.env_remove(v);
    }
    cmd.env("HOME", "/nonexistent");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn netpol");
    // The command may exit before it reads stdin (a usage error): a broken pipe here is not a failure.
    let _ = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("netpol {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// The cluster of the one-shot tests: policies, a terminated pod and an invalid policy on top of [`cluster`].
fn policy_cluster() -> Cluster {
    let c = cluster();
    c.server.put(default_deny());
    c.server.put(allow_web());
    let mut done = pod("frontend", "job-1", json!({"app": "job"}), "10.0.1.9");
    done["status"]["phase"] = json!("Succeeded");
    c.server.put(done);
    // The fake server does not validate; netpol's loader reports this one and leaves it out.
    c.server.put(policy("backend", "bad", json!({"podSelector": {}, "policyTypes": ["Sideways"]})));
    // Selects no pod: lint's NP001.
    c.server.put(policy("backend", "typo", json!({"podSelector": {"matchLabels": {"app": "apii"}}})));
    c
}

#[test]
fn one_shot_query_explain_matrix_describe() {
    let c = policy_cluster();
    let kc = c.kubeconfig.display().to_string();
    let flows = concat!(
        r#"{"id":1,"src":"frontend/web","dst":"backend/api","port":8080}"#,
        "\n",
        r#"{"id":2,"src":"frontend/web","dst":"backend/api","port":9090}"#,
        "\n",
        r#"{"id":3,"src":"frontend/job-1","dst":"backend/api","port":8080}"#,
        "\n"
    );
    let (code, out, err) = netpol(&["query", "--kubeconfig", &kc], flows, &[]);
    assert_eq!(code, 1, "one flow names a pod that is not in the model: {err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["verdict"], "allow");
    assert_eq!(lines[1]["verdict"], "deny");
    assert!(lines[2]["error"].is_string(), "{}", lines[2]);
    let rv = c.server.resource_version();
    let from = format!(
        "netpol: answered from {} at resourceVersion pods={rv} networkpolicies={rv} namespaces={rv} nodes={rv} \
         clusternetworkpolicies={rv} adminnetworkpolicies={rv} baselineadminnetworkpolicies={rv} \
         (1 terminated pod(s) left out)",
        c.server.url()
    );
    assert!(err.contains(&from), "{err}");
    assert!(
        err.contains(
            "error: cluster:networkpolicies/backend/bad (document 0): NetworkPolicy backend/bad: spec.policyTypes[0]:"
        ),
        "{err}"
    );
    assert!(err.contains("warning: 1 invalid object(s) were skipped"), "{err}");
    let (code, _, err) = netpol(&["--strict", "query", "--kubeconfig", &kc], flows, &[]);
    assert_eq!(code, 2, "{err}");

    let (code, out, err) =
        netpol(&["explain", "--kubeconfig", &kc, "frontend/web", "backend/api", "8080", "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(j["verdict"], "allow");

    let (code, out, err) = netpol(&["matrix", "--kubeconfig", &kc, "--port", "9090/TCP", "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(j["pods"], json!(["backend/api", "frontend/web"]));
    // backend/api is isolated for ingress and allows only its named port `http` (8080) from frontend/web.
    assert_eq!(j["ports"][0]["rows"], json!([[true, true], [false, true]]));

    let (code, out, err) = netpol(&["describe", "--kubeconfig", &kc, "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(j["pods"].as_array().map(Vec::len), Some(2), "{j}");
}

/// A live cluster without Cilium or Calico objects, but with Calico's node agent running: auto finds its pod.
#[test]
fn one_shot_commands_find_the_cni_from_its_agents_pod() {
    let c = cluster();
    let kc = c.kubeconfig.display().to_string();
    let (code, out, err) = netpol(&["explain", "--kubeconfig", &kc, "frontend/web", "backend/api", "8080"], "", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("cni: generic (auto: no Cilium, Calico or Antrea objects or agents)\n"), "{out}");
    c.server.put(pod("kube-system", "calico-node-x7k2p", json!({"k8s-app": "calico-node"}), "10.1.0.1"));
    let (code, out, err) = netpol(&["explain", "--kubeconfig", &kc, "frontend/web", "backend/api", "8080"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let want = "cni: calico (auto: pod kube-system/calico-node-x7k2p (k8s-app=calico-node))\n";
    assert!(out.starts_with(want), "{out}");
    let (code, out, err) = netpol(&["describe", "--kubeconfig", &kc, "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(j["cni"], json!({"name": "calico", "auto": "pod kube-system/calico-node-x7k2p (k8s-app=calico-node)"}));
}

#[test]
fn one_shot_commands_read_admin_policies_and_work_without_their_crds() {
    let c = cluster();
    c.server.put(allow_web());
    c.server.put(anp_deny_frontend());
    c.server.put(worker_node());
    let kc = c.kubeconfig.display().to_string();
    let args = ["explain", "--kubeconfig", &kc, "frontend/web", "backend/api", "8080", "-o", "json"];
    let (code, out, err) = netpol(&args, "", &[]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).expect("json");
    // The AdminNetworkPolicy's Deny rule comes before the NetworkPolicy that allows the flow.
    assert_eq!(j["verdict"], "deny", "{out}");
    let rv = c.server.resource_version();
    assert!(err.contains(&format!(" nodes={rv} clusternetworkpolicies={rv} adminnetworkpolicies={rv} ")), "{err}");

    // Without the CRDs: no error, the kinds are left out of the resourceVersions.
    c.server.set_crds_installed(false);
    c.server.clear_requests();
    let (code, out, err) = netpol(&args, "", &[]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(j["verdict"], "allow", "{out}");
    let rv = c.server.resource_version();
    assert!(err.contains(&format!(" namespaces={rv} nodes={rv}\n")), "{err}");
    assert!(!err.contains("adminnetworkpolicies") && !err.contains("error"), "{err}");
    let requests = c.server.requests();
    assert_eq!(lists(&requests, "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies").count(), 1);
}

/// Calico's objects (from its CRDs) and service accounts: the one-shot commands answer exactly as from a file of
/// the same objects; an invalid Calico object is reported like any other; a CRD that is not installed is no error.
#[test]
fn one_shot_commands_read_calico_and_answer_as_from_a_file() {
    use netpol_fakeapi::fixtures::{calico_deny_web, calico_objects, seed_calico, CALICO_CRD};
    use netpol_fakeapi::{Calico, Kind as ApiKind};
    let c = cluster();
    c.server.set_calico(Calico::Crds);
    seed_calico(&c.server, CALICO_CRD);
    let kc = c.kubeconfig.display().to_string();
    // The same objects in one file (a later object of the same kind and name replaces an earlier one, as on the
    // server).
    let mut objects = fixtures::two_namespaces();
    objects.extend(calico_objects(CALICO_CRD));
    let key = |o: &Value| {
        (o["apiVersion"].clone(), o["kind"].clone(), o["metadata"]["namespace"].clone(), o["metadata"]["name"].clone())
    };
    let text: Vec<String> = objects
        .iter()
        .enumerate()
        .filter(|(i, o)| objects[i + 1..].iter().all(|later| key(later) != key(o)))
        .map(|(_, o)| o.to_string())
        .collect();
    let file = c._dir.path().join("cluster.json");
    std::fs::write(&file, text.join("\n")).unwrap();
    let file = file.display().to_string();

    let flows = [
        (r#"{"id":1,"src":"frontend/web","dst":"backend/api","port":8080}"#, "allow"),
        (r#"{"id":2,"src":"frontend/web","dst":"backend/api","port":9090}"#, "deny"),
        (r#"{"id":3,"src":"192.0.2.7","dst":"backend/api","port":8080}"#, "allow"),
        (r#"{"id":4,"src":"198.51.100.7","dst":"backend/api","port":8080}"#, "deny"),
        (r#"{"id":5,"src":"198.51.100.7","dst":"frontend/web","port":8080}"#, "deny"),
        (r#"{"id":6,"src":"backend/api","dst":"frontend/web","port":8080}"#, "allow"),
    ];
    let input: String = flows.iter().map(|(f, _)| format!("{f}\n")).collect();
    let (code, live, err) = netpol(&["query", "--kubeconfig", &kc], &input, &[]);
    assert_eq!(code, 0, "{err}");
    let rv = c.server.resource_version();
    assert!(
        err.contains(&format!(
            " tiers={rv} networkpolicies.projectcalico.org={rv} globalnetworkpolicies={rv} networksets={rv} \
             globalnetworksets={rv} serviceaccounts={rv} stagednetworkpolicies={rv} stagedglobalnetworkpolicies={rv} \
             stagedkubernetesnetworkpolicies={rv} hostendpoints={rv} \
             (Calico's objects from crd.projectcalico.org/v1)"
        )),
        "{err}"
    );
    assert!(!err.contains("warning") && !err.contains("error"), "{err}");
    let (code, answers_from_file, err) = netpol(&["query", "-f", &file], &input, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(live, answers_from_file);
    for (line, (_, want)) in live.lines().zip(flows) {
        let j: Value = serde_json::from_str(line).unwrap();
        assert_eq!(j["verdict"], want, "{line}");
    }

    // explain and matrix: the same answers, but for where each rule was read from.
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("source");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    for (src, dst, port) in [("frontend/web", "backend/api", "8080"), ("198.51.100.7", "frontend/web", "8080")] {
        let mut answers = Vec::new();
        for input in [["--kubeconfig", kc.as_str()], ["-f", file.as_str()]] {
            let mut args = vec!["explain"];
            args.extend(input);
            args.extend([src, dst, port, "-o", "json"]);
            let (code, out, err) = netpol(&args, "", &[]);
            assert_eq!(code, 0, "{err}");
            let mut j: Value = serde_json::from_str(&out).unwrap();
            strip(&mut j);
            answers.push(j);
        }
        assert_eq!(answers[0], answers[1], "{src} -> {dst}");
        assert!(answers[0].to_string().contains("security."), "{}", answers[0]);
    }
    let (code, live, err) = netpol(&["matrix", "--kubeconfig", &kc, "--port", "8080/TCP", "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let (code, from_file, err) = netpol(&["matrix", "-f", &file, "--port", "8080/TCP", "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(live, from_file);

    // An invalid Calico object: reported with the cluster object's name, left out, counted for --strict.
    let mut bad = calico_deny_web(CALICO_CRD);
    bad["spec"]["ingress"][0]["action"] = json!("Reject");
    c.server.put(bad);
    let (code, out, err) = netpol(&["query", "--kubeconfig", &kc], &input, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, answers_from_file, "left out");
    assert!(
        err.contains(
            "error: cluster:globalnetworkpolicies/security.deny-web (document 0): GlobalNetworkPolicy security.deny-web: \
             spec.ingress[0].action:"
        ),
        "{err}"
    );
    let (code, _, err) = netpol(&["--strict", "query", "--kubeconfig", &kc], &input, &[]);
    assert_eq!(code, 2, "{err}");
    c.server.delete_kind(ApiKind::CalicoGlobalNetworkPolicy, None, "security.deny-web");

    // One of Calico's CRDs not installed: no error, the kind left out.
    c.server.set_served(ApiKind::CalicoGlobalNetworkSet, false);
    let (code, out, err) = netpol(&["query", "--kubeconfig", &kc], &input, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("globalnetworksets") && !err.contains("error"), "{err}");
    let verdicts: Vec<Value> =
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["verdict"].clone()).collect();
    assert_eq!(verdicts[4], "allow", "no GlobalNetworkSet: nothing is blocked");
}

/// Cilium's policies (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, from its CRDs): the one-shot commands
/// answer exactly as from a file of the same objects, with the same warning; an invalid one is reported like any
/// other; without Cilium's CRDs, none is asked for and nothing is an error.
#[test]
fn one_shot_commands_read_cilium_and_answer_as_from_a_file() {
    use netpol_fakeapi::fixtures::{cilium_objects, cilium_policy, seed_cilium};
    let c = cluster();
    c.server.set_cilium(true);
    seed_cilium(&c.server);
    let kc = c.kubeconfig.display().to_string();
    let mut objects = fixtures::two_namespaces();
    objects.extend(cilium_objects());
    let text: Vec<String> = objects.iter().map(Value::to_string).collect();
    let file = c._dir.path().join("cluster.json");
    std::fs::write(&file, text.join("\n")).unwrap();
    let file = file.display().to_string();

    let flows = [
        (r#"{"id":1,"src":"frontend/web","dst":"backend/api","port":8080}"#, "allow"),
        (r#"{"id":2,"src":"frontend/web","dst":"backend/api","port":9090}"#, "deny"),
        (r#"{"id":3,"src":"frontend/web","dst":"backend/api","port":5432}"#, "deny"),
        (r#"{"id":4,"src":"backend/api","dst":"frontend/web","port":8080}"#, "deny"),
        (r#"{"id":5,"src":"203.0.113.1","dst":"frontend/web","port":8080}"#, "allow"),
    ];
    let input: String = flows.iter().map(|(f, _)| format!("{f}\n")).collect();
    let (code, live, err) = netpol(&["query", "--kubeconfig", &kc], &input, &[]);
    assert_eq!(code, 0, "{err}");
    let rv = c.server.resource_version();
    assert!(err.contains(&format!(" ciliumnetworkpolicies={rv} ciliumclusterwidenetworkpolicies={rv}")), "{err}");
    let (code, from_file, file_err) = netpol(&["query", "-f", &file], &input, &[]);
    assert_eq!(code, 0, "{file_err}");
    assert_eq!(live, from_file);
    for (line, (_, want)) in live.lines().zip(flows) {
        let j: Value = serde_json::from_str(line).unwrap();
        assert_eq!(j["verdict"], want, "{line}");
    }
    // No warning either way: every object is valid.
    let warnings =
        |text: &str| text.lines().filter(|l| l.starts_with("warning:")).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(warnings(&err), warnings(&file_err), "{err}");
    assert!(warnings(&err).is_empty(), "{err}");

    // explain names the deny rule, as from the file.
    let (code, out, err) = netpol(&["explain", "--kubeconfig", &kc, "frontend/web", "backend/api", "9090"], "", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("spec.ingressDeny[0]") && out.contains("cluster:ciliumnetworkpolicies/backend/api-ingress"),
        "{out}"
    );
    let (code, out, err) = netpol(&["explain", "--kubeconfig", &kc, "backend/api", "frontend/web", "8080"], "", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("spec.egressDeny[0]") && out.contains("backend-not-to-frontend"), "{out}");
    let (code, live, err) = netpol(&["matrix", "--kubeconfig", &kc, "--port", "8080/TCP", "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let (code, from_file, err) = netpol(&["matrix", "-f", &file, "--port", "8080/TCP", "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(live, from_file);

    // An invalid Cilium policy: reported with the cluster object's name, left out, counted for --strict.
    c.server.put(cilium_policy("backend", "bad", json!({"ingress": [{"fromEndpoints": [{}]}]})));
    let (code, out, err) = netpol(&["query", "--kubeconfig", &kc], &input, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, netpol(&["query", "-f", &file], &input, &[]).1, "left out");
    assert!(err.contains("error: cluster:ciliumnetworkpolicies/backend/bad (document 0)"), "{err}");
    let (code, _, err) = netpol(&["--strict", "query", "--kubeconfig", &kc], &input, &[]);
    assert_eq!(code, 2, "{err}");

    // Without Cilium's CRDs: not asked for, no error, no Cilium kind on the line.
    c.server.set_cilium(false);
    c.server.clear_requests();
    let (code, out, err) = netpol(&["query", "--kubeconfig", &kc], &input, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("cilium") && !err.contains("error"), "{err}");
    assert!(c.server.requests().iter().all(|r| !r.path.contains("cilium.io")));
    let verdicts: Vec<Value> =
        out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["verdict"].clone()).collect();
    assert!(verdicts.iter().all(|v| v == "allow"), "no policy: {verdicts:?}");
}

/// Antrea's objects (`crd.antrea.io/v1beta1`) read from a live cluster: `query`, `explain` and `matrix` answer as
/// from a file of the same objects; a policy whose Tier does not exist is reported, as from a file.
#[test]
fn one_shot_commands_read_antrea_and_answer_as_from_a_file() {
    use netpol_fakeapi::fixtures::{antrea_cluster_policy, antrea_objects, seed_antrea};
    let c = cluster();
    c.server.set_antrea(true);
    seed_antrea(&c.server);
    let kc = c.kubeconfig.display().to_string();
    let mut objects = fixtures::two_namespaces();
    objects.extend(antrea_objects());
    let text: Vec<String> = objects.iter().map(Value::to_string).collect();
    let file = c._dir.path().join("cluster.json");
    std::fs::write(&file, text.join("\n")).unwrap();
    let file = file.display().to_string();

    let flows = [
        (r#"{"id":1,"src":"frontend/web","dst":"backend/api","port":8080}"#, "allow"),
        (r#"{"id":2,"src":"frontend/web","dst":"backend/api","port":9090}"#, "deny"),
        (r#"{"id":3,"src":"frontend/web","dst":"backend/api","port":5432}"#, "deny"),
        (r#"{"id":4,"src":"backend/api","dst":"frontend/web","port":8080}"#, "allow"),
    ];
    let input: String = flows.iter().map(|(f, _)| format!("{f}\n")).collect();
    let (code, live, err) = netpol(&["query", "--kubeconfig", &kc], &input, &[]);
    assert_eq!(code, 0, "{err}");
    let rv = c.server.resource_version();
    assert!(err.contains(&format!(" tiers.crd.antrea.io={rv} clustergroups={rv} groups={rv}")), "{err}");
    assert!(err.contains(" networkpolicies.crd.antrea.io="), "{err}");
    let (code, from_file, file_err) = netpol(&["query", "-f", &file], &input, &[]);
    assert_eq!(code, 0, "{file_err}");
    assert_eq!(live, from_file);
    for (line, (_, want)) in live.lines().zip(flows) {
        let j: Value = serde_json::from_str(line).unwrap();
        assert_eq!(j["verdict"], want, "{line}");
    }
    let (code, out, err) = netpol(&["explain", "--kubeconfig", &kc, "frontend/web", "backend/api", "9090"], "", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("guard-api") && out.contains("cluster:clusternetworkpolicies.crd.antrea.io/guard-api"),
        "{out}"
    );
    let (code, live, err) = netpol(&["matrix", "--kubeconfig", &kc, "--port", "9090/TCP", "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let (code, from_file, err) = netpol(&["matrix", "-f", &file, "--port", "9090/TCP", "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(live, from_file);

    // A policy in a Tier that does not exist: refused, reported with the cluster object's name.
    c.server.put(antrea_cluster_policy(
        "nowhere",
        json!({"tier": "missing", "priority": 1, "appliedTo": [{"podSelector": {}}],
            "ingress": [{"action": "Drop", "from": [{"podSelector": {}}]}]}),
    ));
    let (code, out, err) = netpol(&["query", "--kubeconfig", &kc], &input, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, netpol(&["query", "-f", &file], &input, &[]).1, "left out");
    assert!(err.contains("error: cluster:clusternetworkpolicies.crd.antrea.io/nowhere (document 0)"), "{err}");

    // Without Antrea's CRDs: not asked for, no error.
    c.server.set_antrea(false);
    c.server.clear_requests();
    let (code, _, err) = netpol(&["query", "--kubeconfig", &kc], &input, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("antrea") && !err.contains("error"), "{err}");
    assert!(c.server.requests().iter().all(|r| !r.path.contains("crd.antrea.io")));
}

/// Calico's staged policies read from a live cluster (its API server's group): `explain` and `query --explain` add
/// the staged verdict, `lint` names the staged policy that would cut allowed traffic (NP022), `diff --staged`
/// compares the enforced cluster with them enforced; enforced answers do not change.
#[test]
fn one_shot_commands_read_calicos_staged_policies() {
    use netpol_fakeapi::fixtures::{calico_staged_deny_web, seed_calico, CALICO_V3};
    use netpol_fakeapi::Calico;
    let c = cluster();
    c.server.set_calico(Calico::ApiServer);
    seed_calico(&c.server, CALICO_V3);
    c.server.put(calico_staged_deny_web(CALICO_V3));
    let kc = c.kubeconfig.display().to_string();
    let (code, out, err) =
        netpol(&["explain", "--kubeconfig", &kc, "frontend/web", "backend/api", "8080", "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(" stagedglobalnetworkpolicies="), "{err}");
    let j: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((&j["verdict"], &j["staged"]["verdict"]), (&json!("allow"), &json!("deny")), "{j}");
    assert_eq!(
        j["staged"]["policies"][0]["source"],
        "cluster:stagedglobalnetworkpolicies/security.staged-deny-web (document 0)"
    );
    let input = "{\"src\":\"frontend/web\",\"dst\":\"backend/api\",\"port\":8080}\n";
    let (code, out, err) = netpol(&["query", "--kubeconfig", &kc, "--explain"], input, &[]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((&j["verdict"], &j["explain"]["staged"]["verdict"]), (&json!("allow"), &json!("deny")), "{j}");
    let (_, out, err) = netpol(&["lint", "--kubeconfig", &kc, "--fail-on", "never"], "", &[]);
    assert!(
        out.contains("StagedGlobalNetworkPolicy security.staged-deny-web")
            && out.contains("[NP022] staged-cuts-allowed-traffic")
            && out.contains("frontend/web -> backend/api 8080/TCP"),
        "{out}{err}"
    );
    let (code, out, err) = netpol(&["diff", "--staged", "--kubeconfig", &kc], "", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("- DENY   frontend/web -> backend/api"), "{out}");
    assert!(err.contains("1 staged policy (1 Set)"), "{err}");
    // A cluster is compared with its staged view only.
    let (code, _, err) = netpol(&["diff", "--kubeconfig", &kc, "-f", "x.yaml", "--against", "y.yaml"], "", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("compared only with --staged"), "{err}");
}

/// Like kubectl, the client goes through `HTTPS_PROXY` unless `NO_PROXY` names the server.
#[test]
fn one_shot_commands_follow_https_proxy_and_no_proxy() {
    let c = policy_cluster();
    let kc = c.kubeconfig.display().to_string();
    // A proxy that refuses every connection: port 1 on loopback has no listener.
    let proxy = ("HTTPS_PROXY", "http://127.0.0.1:1");
    let args = ["explain", "--kubeconfig", &kc, "frontend/web", "backend/api", "8080"];
    let (code, _, err) = netpol(&args, "", &[proxy]);
    assert_eq!(code, 2, "the proxy is used and refuses: {err}");
    let (code, out, err) = netpol(&args, "", &[proxy, ("NO_PROXY", "127.0.0.1")]);
    assert_eq!(code, 0, "NO_PROXY bypasses the proxy: {err}");
    assert!(out.contains("allow"), "{out}");
}

#[test]
fn one_shot_lint_points_at_cluster_objects() {
    let c = policy_cluster();
    let kc = c.kubeconfig.display().to_string();
    let (code, out, err) = netpol(&["lint", "--kubeconfig", &kc, "-o", "json", "--fail-on", "never"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).expect("json");
    let findings: Vec<Value> = serde_json::from_value(doc["findings"].clone()).expect("findings");
    let np001 = findings.iter().find(|f| f["code"] == "NP001").unwrap_or_else(|| panic!("NP001 in {out}"));
    assert_eq!(np001["origin"]["file"], "cluster:networkpolicies/backend/typo");
    // Objects from a cluster have no file lines.
    assert!(findings.iter().all(|f| f["line"].is_null()), "{out}");

    let (code, out, err) = netpol(&["lint", "--kubeconfig", &kc, "-o", "sarif", "--fail-on", "never"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let sarif: Value = serde_json::from_str(&out).expect("json");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert!(!results.is_empty());
    for r in results {
        let phys = &r["locations"][0]["physicalLocation"];
        assert!(phys["artifactLocation"]["uri"].as_str().is_some_and(|u| u.starts_with("cluster:")), "{r}");
        assert!(phys["region"].is_null(), "{r}");
    }

    let (code, out, err) = netpol(&["lint", "--kubeconfig", &kc, "--fail-on", "warning"], "", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("cluster:networkpolicies/backend/typo\n  NetworkPolicy backend/typo\n"), "{out}");
}

#[test]
fn one_shot_lists_page_by_page() {
    let c = cluster();
    for i in 0..1200 {
        let ip = format!("10.1.{}.{}", i / 200, i % 200 + 1);
        c.server.put(pod("backend", &format!("w-{i}"), json!({"app": "w"}), &ip));
    }
    c.server.clear_requests();
    let kc = c.kubeconfig.display().to_string();
    let flow = r#"{"src":"frontend/web","dst":"backend/w-1199","port":80}"#;
    let (code, out, err) = netpol(&["query", "--kubeconfig", &kc], flow, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#""verdict":"allow""#), "{out}");
    let requests = c.server.requests();
    let pages: Vec<&RequestLog> = lists(&requests, "/api/v1/pods").collect();
    assert_eq!(pages.len(), 3, "1,202 pods in pages of 500: {pages:?}");
    assert!(pages.iter().all(|r| r.has_param("limit", "500")), "{pages:?}");
    assert_eq!(pages.iter().filter(|r| r.query.contains("continue=")).count(), 2, "{pages:?}");
}

#[test]
fn input_flags() {
    let c = cluster();
    let kc = c.kubeconfig.display().to_string();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/three-tier").display().to_string();
    let flow = r#"{"src":"frontend/web","dst":"backend/api","port":8080}"#;

    let (code, _, err) = netpol(&["query", "-f", &example, "--kubeconfig", &kc], flow, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("either with -f or with --kubeconfig/--context, not both"), "{err}");

    // $KUBECONFIG does not get in the way of -f ...
    c.server.clear_requests();
    let (code, _, err) = netpol(&["query", "-f", &example], flow, &[("KUBECONFIG", &kc)]);
    assert_eq!(code, 0, "{err}");
    assert!(c.server.requests().is_empty());
    // ... and is the cluster when -f is not given, like kubectl.
    let (code, out, err) = netpol(&["query"], flow, &[("KUBECONFIG", &kc)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#""verdict":"allow""#), "{out}");
    assert!(err.contains(&format!("answered from {}", c.server.url())), "{err}");

    let (code, _, err) = netpol(&["query", "--kubeconfig", &kc, "--context", "nope"], flow, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("nope"), "{err}");
    let (code, _, err) = netpol(&["query", "--in-cluster"], flow, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("in-cluster"), "{err}");
    let (code, _, err) = netpol(&["query", "--in-cluster", "--kubeconfig", &kc], flow, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--in-cluster cannot be combined"), "{err}");
    let (code, _, err) = netpol(&["query"], flow, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no input"), "{err}");
    #[cfg(feature = "server")]
    {
        let (code, _, err) = netpol(&["serve", "--kubeconfig", &kc, "--watch"], "", &[]);
        assert_eq!(code, 2);
        assert!(err.contains("--watch"), "{err}");
    }
    // A server that does not answer: a clear error, not a hang.
    let dead = c._dir.path().join("dead");
    std::fs::write(
        &dead,
        std::fs::read_to_string(&c.kubeconfig).unwrap().replace(&c.server.url(), "http://127.0.0.1:9"),
    )
    .unwrap();
    let (code, _, err) = netpol(&["query", "--kubeconfig", &dead.display().to_string()], flow, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("reading the cluster at http://127.0.0.1:9"), "{err}");
}

#[test]
#[cfg(feature = "server")]
fn serve_binary_over_a_socket() {
    use std::io::{BufRead, BufReader, Read};
    let c = cluster();
    c.server.put(default_deny());
    let mut child = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["serve", "--kubeconfig", &c.kubeconfig.display().to_string(), "--listen", "127.0.0.1:0"])
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netpol serve");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("read stderr");
    let addr = line.split("http://").nth(2).and_then(|s| s.split_whitespace().next()).map(str::to_string);
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("no address in `{line}`");
    };
    assert!(line.contains(&format!("serving the cluster at {}", c.server.url())), "{line}");
    let http_get = |path: &str| -> String {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        resp
    };
    let deadline = Instant::now() + TIMEOUT;
    while !http_get("/healthz").starts_with("HTTP/1.1 200") {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve never became ready");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let resp = http_get("/api/v1/explain?src=frontend/web&dst=backend/api&port=8080");
    let _ = child.kill();
    let _ = child.wait();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let rv = c.server.resource_version();
    let lower = resp.to_ascii_lowercase();
    assert!(
        lower.contains(&format!(
            "x-netpol-resource-version: pods=5,networkpolicies={rv},namespaces=3,nodes=-,clusternetworkpolicies=-,\
             adminnetworkpolicies=-,baselineadminnetworkpolicies=-\r\n"
        )),
        "{resp}"
    );
    assert!(resp.contains(r#""verdict":"deny""#), "{resp}");
}

/// `netpol serve --kubeconfig` on a cluster with Antrea's CRDs: a Drop ACNP put on the cluster denies, through the
/// watch, a flow that was allowed; deleted, the flow is allowed again.
#[test]
#[cfg(feature = "server")]
fn serve_binary_follows_antrea_policies() {
    use netpol_fakeapi::fixtures::{antrea_drop_web, seed_antrea};
    use std::io::{BufRead, BufReader, Read};
    let c = cluster();
    c.server.set_antrea(true);
    seed_antrea(&c.server);
    let mut child = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["serve", "--kubeconfig", &c.kubeconfig.display().to_string(), "--listen", "127.0.0.1:0"])
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netpol serve");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("read stderr");
    let addr = line.split("http://").nth(2).and_then(|s| s.split_whitespace().next()).map(str::to_string);
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("no address in `{line}`");
    };
    let http_get = |path: &str| -> String {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        resp
    };
    // Waits until the explanation of frontend/web -> backend/api on `port` has `verdict`.
    let wait_for = |port: u16, verdict: &str| -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let resp = http_get(&format!("/api/v1/explain?src=frontend/web&dst=backend/api&port={port}"));
            if resp.starts_with("HTTP/1.1 200") && resp.contains(&format!(r#""verdict":"{verdict}""#)) {
                return resp;
            }
            if Instant::now() > deadline {
                panic!("never {verdict} on {port}: {resp}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let resp = wait_for(9090, "deny");
        assert!(resp.contains("guard-api"), "{resp}");
        assert!(resp.to_ascii_lowercase().contains(",networkpolicies.crd.antrea.io="), "{resp}");
        wait_for(8080, "allow");
        c.server.put(antrea_drop_web());
        let resp = wait_for(8080, "deny");
        assert!(resp.contains("drop-web"), "{resp}");
        c.server.delete_kind(netpol_fakeapi::Kind::AntreaClusterNetworkPolicy, None, "drop-web").unwrap();
        wait_for(8080, "allow");
    }));
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

// ---- deploy/ ----

#[test]
#[cfg(feature = "server")]
fn deploy_manifest_is_read_only_and_hardened() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/netpol.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/netpol.yaml");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .collect();
    let of = |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]);

    // RBAC: get/list/watch only, on exactly namespaces, nodes, pods, serviceaccounts, networking.k8s.io
    // networkpolicies, the policy.networking.k8s.io kinds, Calico's (both groups; its API server's tiered-policy
    // pseudo-resources), Cilium's, Antrea's, and the Services, Endpoints and EndpointSlices Cilium's policies name.
    let role = of("ClusterRole")[0];
    let mut granted = Vec::new();
    for rule in role["rules"].as_array().expect("rules") {
        let verbs: Vec<&str> = rule["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(verbs, ["get", "list", "watch"], "{rule}");
        assert!(rule.get("nonResourceURLs").is_none() && rule.get("resourceNames").is_none(), "{rule}");
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                granted.push(format!("{}/{}", g.as_str().unwrap(), r.as_str().unwrap()));
            }
        }
    }
    granted.sort();
    assert_eq!(
        granted,
        [
            "/endpoints",
            "/namespaces",
            "/nodes",
            "/pods",
            "/serviceaccounts",
            "/services",
            "cilium.io/ciliumcidrgroups",
            "cilium.io/ciliumclusterwidenetworkpolicies",
            "cilium.io/ciliumnetworkpolicies",
            "crd.antrea.io/clustergroups",
            "crd.antrea.io/clusternetworkpolicies",
            "crd.antrea.io/groups",
            "crd.antrea.io/networkpolicies",
            "crd.antrea.io/tiers",
            "crd.projectcalico.org/globalnetworkpolicies",
            "crd.projectcalico.org/globalnetworksets",
            "crd.projectcalico.org/hostendpoints",
            "crd.projectcalico.org/networkpolicies",
            "crd.projectcalico.org/networksets",
            "crd.projectcalico.org/stagedglobalnetworkpolicies",
            "crd.projectcalico.org/stagedkubernetesnetworkpolicies",
            "crd.projectcalico.org/stagednetworkpolicies",
            "crd.projectcalico.org/tiers",
            "discovery.k8s.io/endpointslices",
            "networking.k8s.io/networkpolicies",
            "policy.networking.k8s.io/adminnetworkpolicies",
            "policy.networking.k8s.io/baselineadminnetworkpolicies",
            "policy.networking.k8s.io/clusternetworkpolicies",
            "projectcalico.org/globalnetworkpolicies",
            "projectcalico.org/globalnetworksets",
            "projectcalico.org/hostendpoints",
            "projectcalico.org/networkpolicies",
            "projectcalico.org/networksets",
            "projectcalico.org/stagedglobalnetworkpolicies",
            "projectcalico.org/stagedkubernetesnetworkpolicies",
            "projectcalico.org/stagednetworkpolicies",
            "projectcalico.org/tier.globalnetworkpolicies",
            "projectcalico.org/tier.networkpolicies",
            "projectcalico.org/tier.stagedglobalnetworkpolicies",
            "projectcalico.org/tier.stagednetworkpolicies",
            "projectcalico.org/tiers",
        ]
    );
    let binding = of("ClusterRoleBinding")[0];
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let sa = of("ServiceAccount")[0];
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["namespace"], sa["metadata"]["namespace"]);

    let dep = of("Deployment")[0];
    let spec = &dep["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(dep["metadata"]["namespace"], sa["metadata"]["namespace"]);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    let container = &spec["containers"][0];
    assert_eq!(container["args"], json!(["serve", "--in-cluster", "--listen", "0.0.0.0:8080"]));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["livenessProbe"]["httpGet"]["path"].is_string());
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert!(
        container["resources"]["requests"]["cpu"].is_string()
            && container["resources"]["requests"]["memory"].is_string()
    );
    let labels = &dep["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&dep["spec"]["selector"]["matchLabels"], labels);
    let svc = of("Service")[0];
    assert_eq!(&svc["spec"]["selector"], labels);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], container["ports"][0]["name"]);
    // The CLI accepts the Deployment's arguments (parsing only: --help after them).
    let mut args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    args.push("--help");
    let (code, _, err) = netpol(&args, "", &[]);
    assert_eq!(code, 0, "{err}");
}

/// deploy/agent.yaml: a DaemonSet on every node (hostNetwork, NET_ADMIN and nothing more), bound read-only to
/// deploy/netpol.yaml's ClusterRole, running `netpol agent` for its own node with readiness on its metrics port.
#[test]
#[cfg(feature = "agent")]
fn agent_manifest_is_a_hardened_daemonset_bound_to_the_read_only_role() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("deploy/agent.yaml")).expect("deploy/agent.yaml");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["ServiceAccount", "ClusterRoleBinding", "ClusterRole", "ClusterRoleBinding", "DaemonSet"]);
    let binding = &docs[1];
    assert_eq!(binding["roleRef"]["name"], "netpol-reader");
    // Its one write: Events (on its Node), nothing else.
    let events = &docs[2];
    assert_eq!(events["rules"].as_array().unwrap().len(), 1);
    assert_eq!(events["rules"][0]["resources"], serde_json::json!(["events"]));
    assert_eq!(docs[3]["roleRef"]["name"], "netpol-agent-events");
    // The role it names is the read-only one of deploy/netpol.yaml.
    let reader = std::fs::read_to_string(root.join("deploy/netpol.yaml")).unwrap();
    assert!(reader.contains("kind: ClusterRole\nmetadata:\n  name: netpol-reader"));
    let ds = &docs[4];
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["serviceAccountName"], "netpol-agent");
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&args[..4], ["agent", "--in-cluster", "--node", "$(NODE_NAME)"]);
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    let sc = &c["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["capabilities"]["add"], serde_json::json!(["NET_ADMIN"]));
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert!(sc.get("privileged").is_none() && pod.get("volumes").is_none());
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
    // The arguments parse: the same command line is accepted by this netpol.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_netpol")).args(["agent", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in ["--in-cluster", "--node", "--mode", "--metrics-listen"] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}
