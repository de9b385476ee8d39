//! `netpol flows replay` and `netpol generate` end to end, on the bundled example and its flow log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn path(p: &str) -> String {
    root().join(p).display().to_string()
}

fn netpol(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        let _ = child.stdin.take().unwrap().write_all(s.as_bytes());
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const LOG: &str = "examples/three-tier/flows.hubble.jsonl";

#[test]
fn replay_finds_the_observed_traffic_a_fix_would_cut() {
    let (ex, fix, log) = (path("examples/three-tier"), path("examples/three-tier-fix"), path(LOG));
    let o = netpol(&["flows", "replay", "-f", &ex, "--against", &fix, &log, "-o", "json"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v["summary"];
    // worker -> postgres: 3 connections (SYN at egress and ingress each: folded), cut by the fix.
    assert_eq!(s["newly_denied"], serde_json::json!({"classes": 1, "connections": 3}), "{s}");
    assert_eq!(s["newly_allowed"]["classes"], 0);
    // worker -> 198.51.100.7:443 was forwarded; the policies deny it.
    assert_eq!(s["observed_allowed_model_denies"]["classes"], 1);
    assert_eq!(s["observed_denied_model_allows"]["classes"], 0);
    // The gone replica is resolved by its labels; nothing is left unresolved.
    assert_eq!(s["resolved_by_labels"], 1);
    assert_eq!(s["unresolved"]["classes"], 0);
    // The truncated line is an error with its line number, and reading went on.
    assert_eq!(v["errors"][0]["line"], 8);
    assert_eq!(v["lines"], 24);
    let cut: Vec<&serde_json::Value> =
        v["rows"].as_array().unwrap().iter().filter(|r| r["change"] == "newly_denied").collect();
    assert_eq!(cut[0]["src"], "backend/worker-84f6c7d9b-q8w2z");
    assert_eq!(cut[0]["dst"], "database/postgres-0");
    assert_eq!((cut[0]["current"].as_str(), cut[0]["proposed"].as_str()), (Some("allow"), Some("deny")));
    assert!(cut[0]["explain_proposed"]["ingress"]["policies"].is_array());
    // Replies were folded into their connections: web -> api is 2 connections, 6 events (SYN twice, SYN-ACK).
    let web_api = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["src"] == "frontend/web-7c9f8d6b5-k2x9p" && r["port"] == 8080)
        .unwrap();
    assert_eq!((web_api["connections"].as_u64(), web_api["events"].as_u64()), (Some(2), Some(6)), "{web_api}");

    // Text: the most important line first; --fail-on-breakage: exit 1.
    let o = netpol(&["flows", "replay", "-f", &ex, "--against", &fix, &log, "--fail-on-breakage"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("BREAKS OBSERVED TRAFFIC: 1 flow (3 connections)"), "{out}");
    assert!(out.contains("backend/worker-84f6c7d9b-q8w2z -> database/postgres-0 5432/TCP"), "{out}");
    assert!(out.contains("observed allowed, the model denies: 1 flow"), "{out}");
    assert!(out.contains(":8: invalid Hubble flow"), "{out}");
    // Markdown, for a pull request.
    let o = netpol(&["flows", "replay", "-f", &ex, "--against", &fix, &log, "-o", "markdown"], None);
    let md = text(&o.stdout);
    assert!(
        md.contains("This change **breaks observed traffic**") && md.contains("| **newly denied** | 1 | 3 |"),
        "{md}"
    );
    // No change: the log against the model only.
    let o = netpol(&["flows", "replay", "-f", &ex, &log, "--fail-on-breakage"], None);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    assert!(!out.contains("BREAKS") && out.contains("THE LOG AND THE CURRENT MODEL DISAGREE"), "{out}");
}

#[test]
fn replay_reads_gzip_and_stdin() {
    let (ex, log) = (path("examples/three-tier"), path(LOG));
    let tmp = crate::common::tempdir();
    let gz = tmp.path().join("flows.jsonl.gz");
    let status = Command::new("gzip").arg("-c").arg(&log).stdout(std::fs::File::create(&gz).unwrap()).status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("skipped: no gzip");
        return;
    }
    let a = netpol(&["flows", "replay", "-f", &ex, "-o", "json", &gz.display().to_string()], None);
    let b = netpol(&["flows", "replay", "-f", &ex, "-o", "json", "-"], Some(&std::fs::read_to_string(&log).unwrap()));
    let c = netpol(&["flows", "replay", "-f", &ex, "-o", "json", &log], None);
    let summary = |o: &Output| serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["summary"].clone();
    assert_eq!(summary(&a), summary(&c));
    assert_eq!(summary(&b), summary(&c));
    // stdin once only.
    let o = netpol(&["flows", "replay", "-f", "-", "-"], Some(""));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("stdin (`-`) can be read only once"));
}

#[test]
fn a_proposed_change_that_does_not_load_names_its_file_and_document() {
    let (ex, log) = (path("examples/three-tier"), path(LOG));
    let tmp = crate::common::tempdir();
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: ok, namespace: backend}\nspec: {podSelector: {}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: backend}\nspec: {podSelector: {}, ingres: []}\n",
    )
    .unwrap();
    let o = netpol(&["flows", "replay", "-f", &ex, "--against", &bad.display().to_string(), &log], None);
    assert_eq!(o.status.code(), Some(2));
    let e = text(&o.stderr);
    assert!(e.contains("bad.yaml document 2") && e.contains("ingres"), "{e}");
}

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn replay_takes_the_change_from_two_git_revisions() {
    let tmp = crate::common::tempdir();
    let repo = tmp.path();
    git(repo, &["init", "-q"]);
    let dir = repo.join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    let policies = std::fs::read_to_string(root().join("examples/three-tier/policies.yaml")).unwrap();
    std::fs::write(dir.join("policies.yaml"), &policies).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "old"]);
    // The new revision: the fix replaces the policy, and the metrics scrape policy is deleted.
    let fixed =
        std::fs::read_to_string(root().join("examples/three-tier-fix/allow-postgres-from-backend.yaml")).unwrap();
    let mut docs: Vec<&str> = policies
        .split("\n---\n")
        .filter(|d| !d.contains("name: allow-postgres-from-backend") && !d.contains("name: allow-metrics-scrape"))
        .collect();
    docs.push(&fixed);
    std::fs::write(dir.join("policies.yaml"), docs.join("\n---\n")).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "new"]);
    let (ns, wl, log) =
        (path("examples/three-tier/namespaces.yaml"), path("examples/three-tier/workloads.yaml"), path(LOG));
    let p = dir.display().to_string();
    let cluster = root().join("examples/three-tier/policies.yaml").display().to_string();
    let o = netpol(
        &["flows", "replay", "-f", &ns, "-f", &wl, "-f", &cluster, "--git", "HEAD~1", "HEAD", &p, &log, "-o", "json"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // worker -> postgres (the fix), and prometheus -> api:9100 (the deleted scrape policy).
    assert_eq!(v["summary"]["newly_denied"], serde_json::json!({"classes": 2, "connections": 4}), "{}", v["summary"]);
    assert!(v["change"].as_str().unwrap().contains("changed from HEAD~1 to HEAD"));
    let o = netpol(&["flows", "replay", "-f", &ns, "--git", "HEAD~1", "HEAD", "nowhere", &log], None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[test]
fn generate_writes_policies_that_pass_every_check_and_break_no_observed_flow() {
    let (ex, log) = (path("examples/three-tier"), path(LOG));
    let o = netpol(&["generate", "-f", &ex, "--from-flows", &log], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let yaml = text(&o.stdout);
    let report = text(&o.stderr);
    assert!(report.contains("result: every guarantee holds"), "{report}");
    assert!(yaml.contains("name: worker-egress") && yaml.contains("cidr: 198.51.100.7/32"), "{yaml}");
    assert!(!yaml.contains("pod-template-hash"), "{yaml}");
    // Byte-identical on a second run.
    let again = netpol(&["generate", "-f", &ex, "--from-flows", &log], None);
    assert_eq!(o.stdout, again.stdout);
    // The generated set, applied: no observed flow the policies allow now is cut.
    let tmp = crate::common::tempdir();
    let gen = tmp.path().join("generated.yaml");
    std::fs::write(&gen, &yaml).unwrap();
    let r = netpol(&["flows", "replay", "-f", &ex, "--against", &gen.display().to_string(), &log, "-o", "json"], None);
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["summary"]["newly_denied"]["classes"], 0, "{}", v["summary"]);
    // The observed-allowed flow the policies in force deny (worker -> 198.51.100.7) is now allowed.
    assert_eq!(v["summary"]["newly_allowed"]["classes"], 1, "{}", v["summary"]);

    // One file per policy, the report as JSON in a file.
    let dir = tmp.path().join("out");
    let rep = tmp.path().join("report.json");
    let o = netpol(
        &[
            "generate",
            "-f",
            &ex,
            "--from-flows",
            &log,
            "--output-dir",
            &dir.display().to_string(),
            "--report",
            &rep.display().to_string(),
            "-o",
            "json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty());
    let files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(files.contains(&"backend.worker-egress.yaml".to_string()), "{files:?}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&rep).unwrap()).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["policies"].as_array().unwrap().len(), files.len());
    assert_eq!(v["coverage"]["ok"], true);
    assert!(v["over_allow"]["replicas"].is_u64());
}

#[test]
fn generate_in_every_dialect_and_one_namespace() {
    let (ex, log) = (path("examples/three-tier"), path(LOG));
    for d in ["networkpolicy", "clusternetworkpolicy", "cilium", "calico"] {
        let o = netpol(&["generate", "-f", &ex, "--from-flows", &log, "--dialect", d, "-o", "json"], None);
        let v: serde_json::Value =
            serde_json::from_slice(&o.stderr[o.stderr.iter().position(|&b| b == b'{').unwrap()..]).unwrap();
        if d == "clusternetworkpolicy" {
            // Baseline ClusterNetworkPolicies come after NetworkPolicy: they cannot open what the example's
            // NetworkPolicies deny (worker -> 198.51.100.7, forwarded in the log). The check says so: exit 1.
            assert_eq!(o.status.code(), Some(1), "{d}: {}", text(&o.stderr));
            let f = v["coverage"]["failures"].as_array().unwrap();
            assert_eq!(f.len(), 1, "{f:?}");
            assert!(f[0]["flow"].as_str().unwrap().contains("198.51.100.7"), "{f:?}");
            assert!(f[0]["reason"].as_str().unwrap().contains("backend/default-deny"), "{f:?}");
            continue;
        }
        assert_eq!(o.status.code(), Some(0), "{d}: {}", text(&o.stderr));
        assert_eq!(v["ok"], true, "{d}");
    }
    let o = netpol(&["generate", "-f", &ex, "--from-flows", &log, "-n", "backend"], None);
    let yaml = text(&o.stdout);
    assert!(yaml.contains("namespace: backend") && !yaml.contains("namespace: frontend"), "{yaml}");
    let o = netpol(&["generate", "-f", &ex, "--from-flows", &log, "-n", "nope"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("unknown namespace `nope`"));
}
