//! The upstream conformance suite of kubernetes-sigs/network-policy-api (ClusterNetworkPolicy, Admin and Baseline
//! tiers) as data: `tests/conformance/network-policy-api/` (layout and provenance in its README.md). Every step runs
//! through the real `netpol query` (its manifests + the base cluster, its `expect.jsonl` as the flows), and every
//! answer must be the upstream expectation; the probes whose deciding rule upstream names are also checked with
//! `netpol explain -o json`. Counts are asserted, so a lost directory or an emptied file fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What the data holds (README.md of the data directory, "Counts").
const TESTS: usize = 24;
pub(crate) const STEPS: usize = 96;
pub(crate) const PROBES: usize = 301;
const DECIDED_BY: usize = 50;

pub(crate) fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/network-policy-api")
}

pub(crate) struct Step {
    /// `<test>/<step>`, for messages.
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
}

/// Every step directory, in order: `<ShortName>/<NN-subtest>/`.
pub(crate) fn steps() -> Vec<Step> {
    let mut tests: Vec<PathBuf> = std::fs::read_dir(data())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap() != "base")
        .collect();
    tests.sort();
    assert_eq!(tests.len(), TESTS, "test directories in {}", data().display());
    let mut out = Vec::new();
    for t in tests {
        let mut steps: Vec<PathBuf> =
            std::fs::read_dir(&t).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
        steps.sort();
        assert!(!steps.is_empty(), "{}: no steps", t.display());
        for dir in steps {
            let name =
                format!("{}/{}", t.file_name().unwrap().to_str().unwrap(), dir.file_name().unwrap().to_str().unwrap());
            out.push(Step { name, dir });
        }
    }
    assert_eq!(out.len(), STEPS, "step directories");
    out
}

/// The `-f` arguments of a step: each file of `base/`, or the step's own file of that name (a step's
/// `namespaces.yaml` replaces the base one), then the step's `policies.yaml`.
pub(crate) fn manifest_args(step: &Path) -> Vec<String> {
    let mut base: Vec<PathBuf> = std::fs::read_dir(data().join("base")).unwrap().map(|e| e.unwrap().path()).collect();
    base.sort();
    let mut args = Vec::new();
    for b in base {
        let own = step.join(b.file_name().unwrap());
        args.push("-f".to_string());
        args.push(if own.exists() { own } else { b }.display().to_string());
    }
    args.push("-f".to_string());
    args.push(step.join("policies.yaml").display().to_string());
    args
}

fn netpol(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netpol")).args(args).env("NO_COLOR", "1").output().unwrap()
}

pub(crate) fn expectations(step: &Step) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(step.dir.join("expect.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!lines.is_empty(), "{}: no probes", step.name);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(step.dir.join("step.json")).unwrap()).unwrap();
    assert_eq!(meta["probes"], lines.len(), "{}: step.json counts another number of probes", step.name);
    let test = step.name.split('/').next().unwrap();
    for l in &lines {
        assert_eq!(l["test"], test, "{}: {l}", step.name);
        assert!(l["source"].as_str().unwrap().starts_with("conformance/tests/"), "{}: {l}", step.name);
        assert!(l["expect"] == "allow" || l["expect"] == "deny", "{}: {l}", step.name);
    }
    lines
}

fn proto_port(p: &serde_json::Value) -> String {
    format!("{}/{}", p["port"], p["protocol"].as_str().unwrap())
}

/// `netpol explain` (text) of a probe, for failure messages.
fn explain_text(step: &Step, p: &serde_json::Value) -> String {
    let mut args = vec!["explain".to_string()];
    args.extend(manifest_args(&step.dir));
    args.extend([p["src"].as_str().unwrap().to_string(), p["dst"].as_str().unwrap().to_string(), proto_port(p)]);
    let o = netpol(&args);
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub(crate) fn describe(p: &serde_json::Value) -> String {
    format!(
        "{} -> {} {} (upstream {}, {} / \"{}\")",
        p["src"].as_str().unwrap(),
        p["dst"].as_str().unwrap(),
        proto_port(p),
        p["source"].as_str().unwrap(),
        p["test"].as_str().unwrap(),
        p["subtest"].as_str().unwrap()
    )
}

#[test]
fn every_upstream_probe_through_query() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for step in steps() {
        let expect = expectations(&step);
        let mut args = vec!["query".to_string(), "--strict".to_string()];
        args.extend(manifest_args(&step.dir));
        args.extend(["--flows".to_string(), step.dir.join("expect.jsonl").display().to_string()]);
        let o = netpol(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{}: netpol query failed:\n{stderr}", step.name);
        assert!(stderr.is_empty(), "{}: netpol query warned:\n{stderr}", step.name);
        let answers: Vec<serde_json::Value> =
            String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(answers.len(), expect.len(), "{}: one answer per probe", step.name);
        for (a, e) in answers.iter().zip(&expect) {
            // The answer is the input line with the verdict appended.
            for key in ["src", "dst", "protocol", "port", "source"] {
                assert_eq!(a[key], e[key], "{}: answers out of order", step.name);
            }
            checked += 1;
            if a["verdict"] != e["expect"] {
                failures.push(format!(
                    "{}: {}: expected {}, netpol says {}\n{}",
                    step.name,
                    describe(e),
                    e["expect"],
                    a.get("verdict").unwrap_or(&a["error"]),
                    explain_text(&step, e)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} upstream probes disagree:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, PROBES, "probes checked");
}

/// netpol's name of a policy: `cnp/<name>` for a ClusterNetworkPolicy, `<namespace>/<name>` for a NetworkPolicy.
fn policy_ref(d: &serde_json::Value) -> String {
    let name = d["policy"].as_str().unwrap();
    match d["kind"].as_str().unwrap() {
        "ClusterNetworkPolicy" => format!("cnp/{name}"),
        "NetworkPolicy" => format!("{}/{name}", d["namespace"].as_str().unwrap()),
        k => panic!("unexpected kind {k}"),
    }
}

#[test]
fn the_rules_upstream_names_decide_in_explain() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for step in steps() {
        for p in expectations(&step).iter().filter(|p| p.get("decided_by").is_some()) {
            let d = &p["decided_by"];
            let mut args = vec!["explain".to_string(), "--strict".to_string()];
            args.extend(manifest_args(&step.dir));
            args.extend([
                p["src"].as_str().unwrap().to_string(),
                p["dst"].as_str().unwrap().to_string(),
                proto_port(p),
            ]);
            args.extend(["-o".to_string(), "json".to_string()]);
            let o = netpol(&args);
            assert_eq!(o.status.code(), Some(0), "{}: {}", step.name, String::from_utf8_lossy(&o.stderr));
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            checked += 1;
            let side = &v[d["direction"].as_str().unwrap()];
            let last = side["walk"].as_array().unwrap().last();
            let want_action = match d.get("action").and_then(|a| a.as_str()) {
                Some("Accept") | None => "allow",
                Some("Deny") => "deny",
                Some("Pass") => "pass",
                Some(a) => panic!("unexpected action {a}"),
            };
            let ok = v["verdict"] == p["expect"]
                && last.is_some_and(|l| {
                    l["policy"] == policy_ref(d)
                        && l["rule"] == d["rule"]
                        && l["action"] == want_action
                        && d.get("rule_name").is_none_or(|n| &l["name"] == n)
                });
            if !ok {
                failures.push(format!(
                    "{}: {}: upstream ({}) names {} {} rule {} ({}); netpol: verdict {}, {} walk ends with {}\n{}",
                    step.name,
                    describe(p),
                    d["comment"].as_str().unwrap(),
                    policy_ref(d),
                    d["direction"].as_str().unwrap(),
                    d["rule"],
                    d.get("rule_name").and_then(|n| n.as_str()).unwrap_or("-"),
                    v["verdict"],
                    d["direction"].as_str().unwrap(),
                    last.map_or("nothing".to_string(), |l| l.to_string()),
                    explain_text(&step, p)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} deciding rules differ:\n\n{}", failures.len(), failures.join("\n"));
    assert_eq!(checked, DECIDED_BY, "probes with a deciding rule checked");
}
