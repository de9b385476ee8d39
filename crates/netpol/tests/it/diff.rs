//! `netpol diff` through its library entry point `netpol::diff_cmd::run`, on the fixtures in tests/data/diff/
//! (old/ and new/) and on a temporary git repository holding them as two commits.

use std::path::{Path, PathBuf};
use std::process::Command;

use netpol::diff_cmd::{run, DiffFormat};

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/diff")
}

fn side(name: &str) -> Vec<String> {
    vec![data().join(name).display().to_string()]
}

fn diff(old: &str, new: &str, ns: Option<&str>, format: DiffFormat, fail: bool) -> (u8, String) {
    let mut out = Vec::new();
    let code = run(&side(old), &side(new), None, ns, format, fail, &mut out).unwrap();
    (code, String::from_utf8(out).unwrap())
}

#[test]
fn text_output_lists_groups_with_causes_and_a_summary() {
    let (code, text) = diff("old", "new", None, DiffFormat::Text, false);
    assert_eq!(code, 0);
    println!("{text}");
    let expected = [
        "+ ALLOW  shop/web-1, shop/web-2 -> shop/api  TCP 8443  (2 pairs)",
        "    because (e.g. shop/web-1 -> shop/api 8443/TCP): ingress to shop/api now allowed by shop/allow-web-to-api \
         rule 0 peer 0 port 8443/TCP",
        "+ ALLOW  shop/web-1, shop/web-2 -> shop/db  TCP 5432  (2 pairs)",
        "    because (e.g. shop/web-1 -> shop/db 5432/TCP): ingress to shop/db now allowed by shop/allow-web-to-db \
         rule 0 peer 0 port 5432/TCP",
        "- DENY   ops/monitor -> shop/api, shop/web-1, shop/web-2  TCP 8080  (3 pairs)",
        "    because (e.g. ops/monitor -> shop/api 8080/TCP): ingress to shop/api no longer allowed by \
         shop/allow-monitoring rule 0 peer 0 port http/TCP \
         (named port = 8080): the policy was removed",
        "- DENY   ops/tool-1, ops/tool-2, ops/tool-3, ops/tool-4, ops/tool-5 -> ops/* (6 pods)  all  (25 pairs)",
        "    because (e.g. ops/tool-1 -> ops/monitor 1/TCP): egress from ops/tool-1 is now isolated by \
         ops/tools-egress-deny, and no rule allows 1/TCP",
        "- DENY   shop/web-1, shop/web-2 -> shop/api  TCP 8080  (2 pairs)",
        "- DENY   ops/tool-1, ops/tool-2, ops/tool-3, ops/tool-4, ops/tool-5 -> outside 0.0.0.0/0, ::/0  all  (5 pods)",
        "    because (e.g. ops/tool-1 -> 203.0.113.10 1/TCP): egress from ops/tool-1 is now isolated by \
         ops/tools-egress-deny, and no rule allows 1/TCP",
        "pods added (1, not compared): shop/cache",
        "pods removed (1, not compared): ops/old-job",
    ];
    for e in expected {
        assert!(text.contains(e), "missing `{e}` in\n{text}");
    }
    assert!(text.trim_end().ends_with(
        "5 groups: 4 pairs newly allowed, 30 pairs newly denied (32 pairs changed), 58 pairs unchanged; \
         1 group with addresses outside the cluster (0 newly allowed); 1 pod added, 1 removed"
    ));
}

#[test]
fn json_output_is_the_serialised_diff() {
    let (code, text) = diff("old", "new", None, DiffFormat::Json, false);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 5);
    assert_eq!(v["pods_added"], serde_json::json!(["shop/cache"]));
    assert_eq!(v["pods_removed"], serde_json::json!(["ops/old-job"]));
    assert_eq!(v["unchanged_pairs"], 58);
    assert_eq!(v["changed_pairs"], 32);
    let g = groups
        .iter()
        .find(|g| g["change"] == "newly_allowed" && g["destinations"] == serde_json::json!(["shop/db"]))
        .unwrap();
    assert_eq!(g["sources"], serde_json::json!(["shop/web-1", "shop/web-2"]));
    assert_eq!(g["ports"], "TCP 5432");
    assert_eq!(g["pairs"], 2);
    for g in groups {
        let keys: Vec<&str> = g.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["cause", "cause_detail", "change", "destinations", "pairs", "ports", "sources"]);
        assert!(["newly_allowed", "newly_denied"].contains(&g["change"].as_str().unwrap()));
        assert!(g["cause_detail"]["old"]["verdict"].is_string());
        assert!(g["cause_detail"]["new"]["egress"]["direction"] == "egress");
    }
    // Every source list is complete in JSON (no truncation).
    let tools = groups.iter().find(|g| g["sources"].as_array().unwrap().len() == 5).unwrap();
    assert_eq!(tools["destinations"].as_array().unwrap().len(), 6);
    assert_eq!(tools["pairs"], 25);
}

#[test]
fn markdown_output_is_a_pr_comment() {
    let (code, md) = diff("old", "new", None, DiffFormat::Markdown, false);
    assert_eq!(code, 0);
    println!("{md}");
    assert!(
        md.starts_with("### NetworkPolicy connectivity diff\n\n_cni: generic (auto: no Cilium, Calico or Antrea objects or agents)_\n\n**4 pairs newly allowed**, **30 pairs newly denied**, 58 pairs unchanged.")
    );
    assert!(md.contains(
        "| Change | Sources | Destinations | Ports | Pairs | Cause |\n| --- | --- | --- | --- | ---: | --- |\n"
    ));
    // Long pod lists are truncated in the table, complete (up to 50) in the details.
    assert!(
        md.contains("| **− denied** | ops/tool-1, ops/tool-2, ops/tool-3 (+2 more) | ops/* (6 pods) | all | 25 |"),
        "{md}"
    );
    assert!(md.contains("- Sources (5): ops/tool-1, ops/tool-2, ops/tool-3, ops/tool-4, ops/tool-5\n"));
    assert!(md.contains("| **+ allowed** | shop/web-1, shop/web-2 | shop/db | TCP 5432 | 2 | ingress to shop/db now allowed by shop/allow-web-to-db rule 0 peer 0 port 5432/TCP |"));
    assert!(md.contains("<details>\n<summary>"));
    assert!(md.trim_end().ends_with("</details>"));
    // The details hold the before/after explanations of each group's representative flow.
    assert!(md.contains("Before:\n\n```text\nDENY shop/web-1 -> shop/db 5432/TCP\n"), "{md}");
    assert!(md.contains("After:\n\n```text\nALLOW shop/web-1 -> shop/db 5432/TCP\n"));
    assert_eq!(md.matches("```text").count(), 2 * 5);
    assert!(md.contains("Pods added (not compared): shop/cache"));
}

#[test]
fn fail_on_new_allows_sets_the_exit_code() {
    assert_eq!(diff("old", "new", None, DiffFormat::Text, true).0, 1);
    assert_eq!(diff("old", "new", None, DiffFormat::Text, false).0, 0);
    // The reverse diff re-opens what was closed.
    assert_eq!(diff("new", "old", None, DiffFormat::Text, true).0, 1);
    // In ops, only egress was closed: nothing newly allowed.
    let (code, text) = diff("old", "new", Some("ops"), DiffFormat::Text, true);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("- DENY   ops/tool-1, ops/tool-2, ops/tool-3, ops/tool-4, ops/tool-5 -> ops/* (6 pods)  all"),
        "{text}"
    );
    // No change at all.
    let (code, text) = diff("old", "old", None, DiffFormat::Text, true);
    assert_eq!(code, 0);
    assert_eq!(text, "cni: generic (auto: no Cilium, Calico or Antrea objects or agents)\nno connectivity change: 110 pairs compared, none changed; 0 pods added, 0 removed\n");
    let (_, md) = diff("old", "old", None, DiffFormat::Markdown, true);
    assert_eq!(md, "### NetworkPolicy connectivity diff\n\n_cni: generic (auto: no Cilium, Calico or Antrea objects or agents)_\n\nNo connectivity change: 110 pairs compared.\n");
}

#[test]
fn unknown_namespace_is_an_error() {
    let mut out = Vec::new();
    let e = run(&side("old"), &side("new"), None, Some("nope"), DiffFormat::Text, false, &mut out).unwrap_err();
    assert!(e.to_string().contains("unknown namespace `nope`"), "{e}");
}

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn commit(dir: &Path, msg: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", msg]);
}

#[test]
fn git_mode_compares_two_revisions_of_a_directory() {
    let tmp = crate::common::tempdir();
    let repo = tmp.path();
    git(repo, &["init", "-q"]);
    let dir = repo.join("deploy/policies");
    copy_dir(&data().join("old"), &dir);
    std::fs::write(dir.join("README.txt"), "not a manifest").unwrap();
    commit(repo, "old");
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&data().join("new"), &dir);
    commit(repo, "new");
    // Uncommitted edits in the work tree do not matter: revisions are read from git.
    std::fs::write(dir.join("policies.yaml"), "garbage: [").unwrap();

    let path = dir.display().to_string();
    let mut from_git = Vec::new();
    let code = run(&[], &[], Some(("HEAD~1", "HEAD", &path)), None, DiffFormat::Json, true, &mut from_git).unwrap();
    assert_eq!(code, 1);
    let (_, from_files) = diff("old", "new", None, DiffFormat::Json, false);
    // The same answer; only where each rule was read from differs (a revision, a directory).
    let sources = without_sources(&String::from_utf8(from_git).unwrap());
    assert_eq!(sources, without_sources(&from_files));

    // A path given relative to a subdirectory of the repository, and a revision where it does not exist.
    std::fs::remove_dir_all(repo.join("deploy")).unwrap();
    commit(repo, "removed");
    let mut out = Vec::new();
    let code = run(&[], &[], Some(("HEAD~1", "HEAD", &path)), None, DiffFormat::Json, true, &mut out).unwrap();
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["pods_removed"].as_array().unwrap().len(), 11);
    assert_eq!(v["groups"], serde_json::json!([]));

    // Errors: an unknown revision; both paths and revisions.
    let mut out = Vec::new();
    let e = run(&[], &[], Some(("no-such-rev", "HEAD", &path)), None, DiffFormat::Text, false, &mut out).unwrap_err();
    assert!(format!("{e:#}").contains("unknown git revision `no-such-rev`"), "{e:#}");
    let e =
        run(&side("old"), &[], Some(("HEAD~1", "HEAD", &path)), None, DiffFormat::Text, false, &mut out).unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
    // git's own reason is part of the error, with the command.
    let e = run(&[], &[], Some(("no-such-rev", "HEAD", &path)), None, DiffFormat::Text, false, &mut out).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("rev-parse --verify no-such-rev^{commit}` failed (exit status: 128): fatal:"), "{e}");
}

#[test]
fn git_mode_path_at_neither_revision_is_an_error() {
    let tmp = crate::common::tempdir();
    let repo = tmp.path();
    git(repo, &["init", "-q"]);
    copy_dir(&data().join("old"), &repo.join("deploy"));
    commit(repo, "old");
    copy_dir(&data().join("new"), &repo.join("deploy"));
    commit(repo, "new");
    // A typo: before, two empty sides compared equal and `--fail-on-new-allows` passed.
    let typo = repo.join("deplyo").display().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["diff", "--git", "HEAD~1", "HEAD", &typo, "--fail-on-new-allows"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("no manifests (`*.yaml`, `*.yml`, `*.json`) under `{typo}` at either revision")),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    // The right path still works (and finds the new allows).
    let path = repo.join("deploy").display().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["diff", "--git", "HEAD~1", "HEAD", &path, "--fail-on-new-allows"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    // Outside a repository: says so, with git's reason. The scratch directory lives in the target directory,
    // itself often inside a checkout: git is told not to look above it.
    let plain = crate::common::tempdir();
    let ceiling = plain.path().parent().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["diff", "--git", "HEAD~1", "HEAD", plain.path().to_str().unwrap()])
        .env("GIT_CEILING_DIRECTORIES", ceiling)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("is not in a git repository"), "{e}");
    assert!(e.contains("rev-parse --show-toplevel` failed (exit status: 128): fatal: not a git repository"), "{e}");
}

/// The figures in the README ("Connectivity diff"): `cargo test --release -p netpol --test it diff:: -- --ignored --nocapture`
/// (`NETPOL_DIFF_SIZE=50k` for another preset).
#[test]
#[ignore]
fn synthetic_10k_timing() {
    use netpol_core::compile::Engine;
    use netpol_core::diff::{diff, diff_with_limits, DiffOptions};
    use std::time::Instant;

    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    // NETPOL_DIFF_SIZE=1k|10k|50k|100k (netpol-synth presets; default 10k).
    let size = std::env::var("NETPOL_DIFF_SIZE").unwrap_or_else(|_| "10k".to_string());
    let params = netpol_synth::Params::preset(&size).unwrap();
    let yaml = netpol_synth::generate_yaml(&params);
    // The variant: every 40th NetworkPolicy removed, and 8080 → 8081 in every 25th one.
    let mut n_pol = 0;
    let mut changed = 0;
    let mut removed = 0;
    let docs: Vec<String> = yaml
        .split("\n---\n")
        .filter_map(|doc| {
            if !doc.contains("kind: NetworkPolicy") {
                return Some(doc.to_string());
            }
            n_pol += 1;
            if n_pol % 40 == 0 {
                removed += 1;
                return None;
            }
            if n_pol % 25 == 0 && doc.contains("8080") {
                changed += 1;
                return Some(doc.replace("8080", "8081"));
            }
            Some(doc.to_string())
        })
        .collect();
    let variant = docs.join("\n---\n");
    let seed2 = netpol_synth::generate_yaml(&netpol_synth::Params { seed: 2, ..params.clone() });
    let load = |s: &str| Engine::new(netpol_core::load::load_str("synth.yaml", s).cluster);
    let (old, new, other) = (load(&yaml), load(&variant), load(&seed2));
    println!("policies: {n_pol}; variant: {removed} removed, 8080→8081 in {changed}");
    let t = Instant::now();
    let m = old.matrix(None).unwrap();
    println!("one matrix: {:.1?} ({} × {} classes)", t.elapsed(), m.src_classes.len(), m.dst_classes.len());
    drop(m);
    // Best of 3 (the machine is shared).
    let best = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    for (label, a, b) in
        [("no change", &old, &old), ("changed policies", &old, &new), ("seed 1 vs seed 2", &old, &other)]
    {
        let d = diff(a, b, &DiffOptions::default());
        let el = best(&mut || drop(diff(a, b, &DiffOptions::default())));
        println!(
            "{label}: diff of {} pods in {:.1?}: {} groups, {} pairs changed, {} unchanged, {} pods added, {} removed",
            a.cluster().pods.len(),
            el,
            d.groups.len(),
            d.changed_pairs,
            d.unchanged_pairs,
            d.pods_added.len(),
            d.pods_removed.len()
        );
        // Several passes over stored matrices (as when the old cells exceed the buffer) agree.
        let s = diff_with_limits(a, b, &DiffOptions::default(), usize::MAX, 4 << 20);
        assert_eq!(serde_json::to_value(&d).unwrap(), serde_json::to_value(&s).unwrap());
    }
    if size != "10k" {
        return;
    }
    // End to end through the command: YAML files in, text out.
    let dir = crate::common::tempdir();
    std::fs::write(dir.path().join("old.yaml"), &yaml).unwrap();
    std::fs::write(dir.path().join("new.yaml"), &variant).unwrap();
    let f = |n: &str| vec![dir.path().join(n).display().to_string()];
    for format in [DiffFormat::Text, DiffFormat::Markdown, DiffFormat::Json] {
        let mut text = String::new();
        let el = best(&mut || {
            let mut out = Vec::new();
            run(&f("old.yaml"), &f("new.yaml"), None, None, format, false, &mut out).unwrap();
            text = String::from_utf8(out).unwrap();
        });
        println!(
            "diff_cmd::run {format:?}, end to end (load + compile both sides, diff, render): {el:.1?}, {} lines",
            text.lines().count()
        );
        for l in text.lines().take(8) {
            println!("  | {l}");
        }
        println!("  | ...\n  | {}", text.lines().last().unwrap_or_default());
    }
    let el = best(&mut || {
        drop(load(&yaml));
    });
    println!("for reference, load + compile of one side: {el:.1?}");
}

/// Opening egress to the Internet is a new allow even when no pod pair changes: it is listed, and
/// `--fail-on-new-allows` fails on it.
#[test]
fn outside_addresses_count_as_changes() {
    let dir = crate::common::tempdir();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {app: a}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.1.0.1}\n";
    let deny = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec: {podSelector: {}, policyTypes: [Egress]}\n";
    let open = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: internet, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}], ports: [{port: 443}]}]\n";
    let (old, new) = (dir.path().join("old.yaml"), dir.path().join("new.yaml"));
    std::fs::write(&old, format!("{pod}{deny}")).unwrap();
    std::fs::write(&new, format!("{pod}{deny}{open}")).unwrap();
    let run_it = |format, fail| {
        let mut out = Vec::new();
        let code = run(&[old.display().to_string()], &[new.display().to_string()], None, None, format, fail, &mut out)
            .unwrap();
        (code, String::from_utf8(out).unwrap())
    };
    let (code, text) = run_it(DiffFormat::Text, true);
    println!("{text}");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("+ ALLOW  x/a -> outside 0.0.0.0-9.255.255.255, 11.0.0.0-255.255.255.255  TCP 443  (1 pod)"),
        "{text}"
    );
    assert!(text.contains("now allowed by x/internet rule 0 peer 0 port 443/TCP"), "{text}");
    assert!(text.contains("no change between pods"), "{text}");
    let (_, md) = run_it(DiffFormat::Markdown, false);
    assert!(md.contains("With addresses outside the cluster"), "{md}");
    assert!(
        md.contains("| **+ allowed** | x/a | outside 0.0.0.0-9.255.255.255, 11.0.0.0-255.255.255.255 | TCP 443 | 1 |"),
        "{md}"
    );
    let (code, json) = run_it(DiffFormat::Json, false);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["outside"][0]["direction"], "egress");
    assert_eq!(v["outside"][0]["pods"], serde_json::json!(["x/a"]));
    assert_eq!(v["outside"][0]["ports"], "TCP 443");
}

/// Antrea: an action changed (Allow to Drop, Drop to Pass), a priority changed, a new Pass in an earlier tier: the
/// causes name the object and the rule as the object has it (`acnp/guard spec.ingress[1]`, the action as Antrea
/// writes it), once, though each object is one model policy per rule and appliedTo entry.
#[test]
fn antrea_changes_name_the_object_rule() {
    let dir = crate::common::tempdir();
    let pods = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {team: a}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b, labels: {team: b}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: a, labels: {app: web}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.0.0.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: a, labels: {app: db}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.0.0.2}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: b, labels: {app: client}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 10.0.1.1}\n";
    let guard = |priority: u32, action: &str| {
        format!(
            "---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {{name: guard}}\nspec:\n  \
             priority: {priority}\n  tier: securityops\n  appliedTo: [{{namespaceSelector: {{matchLabels: {{team: a}}}}}}, \
             {{podSelector: {{matchLabels: {{app: web}}}}}}]\n  ingress:\n  - {{action: Allow, from: [{{podSelector: \
             {{matchLabels: {{app: db}}}}}}]}}\n  - {{name: from-b, action: {action}, from: [{{namespaceSelector: \
             {{matchLabels: {{team: b}}}}}}]}}\n"
        )
    };
    let other = "---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: other}\nspec:\n  priority: 3\n  tier: securityops\n  appliedTo: [{podSelector: {matchLabels: {app: web}}}]\n  ingress:\n  - {action: Drop, from: [{podSelector: {matchLabels: {app: client}}}]}\n";
    let waive = "---\napiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: waive}\nspec:\n  priority: 1\n  tier: emergency\n  appliedTo: [{podSelector: {matchLabels: {app: web}}}, {namespaceSelector: {matchLabels: {team: a}}}]\n  ingress:\n  - {action: Pass, from: [{podSelector: {matchLabels: {app: client}}}]}\n";
    let compare = |old: String, new: String, format| {
        let (o, n) = (dir.path().join("old.yaml"), dir.path().join("new.yaml"));
        std::fs::write(&o, format!("{pods}{old}")).unwrap();
        std::fs::write(&n, format!("{pods}{new}")).unwrap();
        let mut out = Vec::new();
        run(&[o.display().to_string()], &[n.display().to_string()], None, None, format, false, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    // Allow to Drop in rule 1: the rule, and what it was.
    let text =
        compare(format!("{}{other}", guard(5, "Allow")), format!("{}{other}", guard(5, "Drop")), DiffFormat::Text);
    assert!(
        text.contains(
            "- DENY   b/client -> a/db  all  (1 pair)\n    because: ingress to a/db now denied by the securityops policy \
             acnp/guard spec.ingress[1] \"from-b\" (Drop), whose action was Allow\n"
        ),
        "{text}"
    );
    assert!(text.contains("0 pairs newly allowed, 1 pair newly denied"), "{text}");
    // Drop to Pass: nothing decides after it.
    let text =
        compare(format!("{}{other}", guard(5, "Drop")), format!("{}{other}", guard(5, "Pass")), DiffFormat::Text);
    assert!(
        text.contains(
            "ingress to a/db no longer denied by the securityops policy acnp/guard spec.ingress[1] \"from-b\" (Drop) \
             (its action is now Pass)"
        ),
        "{text}"
    );
    // A priority change: guard's Allow now comes before other's Drop.
    let text =
        compare(format!("{}{other}", guard(5, "Allow")), format!("{}{other}", guard(1, "Allow")), DiffFormat::Text);
    assert!(
        text.contains(
            "+ ALLOW  b/client -> a/web  all  (1 pair)\n    because: ingress to a/web now allowed by the securityops \
             policy acnp/guard spec.ingress[1] \"from-b\" (Allow), which overrides the securityops policy acnp/other \
             spec.ingress[0] (Drop)\n"
        ),
        "{text}"
    );
    // A new Pass in an earlier tier skips other's tier.
    let text = compare(other.to_string(), format!("{other}{waive}"), DiffFormat::Text);
    assert!(
        text.contains(
            "ingress to a/web no longer denied by the securityops policy acnp/other spec.ingress[0] (Drop) (the \
             emergency policy acnp/waive spec.ingress[0] (Pass) now passes the flow past tier securityops)"
        ),
        "{text}"
    );
    // The explanations list each object once.
    let json =
        compare(format!("{}{other}", guard(5, "Allow")), format!("{}{other}", guard(5, "Drop")), DiffFormat::Json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let ingress = &v["groups"][0]["cause_detail"]["new"]["ingress"];
    assert_eq!(ingress["policies"], serde_json::json!(["acnp/guard"]), "{ingress}");
    assert_eq!(ingress["walk"].as_array().unwrap().last().unwrap()["field"], "spec.ingress[1]", "{ingress}");
}

/// The JSON without the `source` fields (where a rule was read from).
fn without_sources(json: &str) -> String {
    json.lines().filter(|l| !l.trim_start().starts_with("\"source\":")).collect::<Vec<_>>().join("\n")
}
