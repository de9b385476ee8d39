//! Calico staged policies through the `netpol` binary, on tests/data/calico/staged/: `explain` with the staged
//! view's verdict (text and JSON), and `diff --staged` (the enforced cluster against the cluster as if its staged
//! policies were enforced), end to end with its output formats and exit codes; `query --explain` with the staged
//! verdict in every explanation.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/calico/staged").join(name).display().to_string()
}

fn netpol(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netpol")).args(args).env("NO_COLOR", "1").stdin(Stdio::null()).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// `netpol diff --staged -f cluster.yaml -f EXTRA... ARGS`.
fn diff_staged(extra: &[&str], args: &[&str]) -> Output {
    let files: Vec<String> = std::iter::once("cluster.yaml").chain(extra.iter().copied()).map(data).collect();
    let mut all = vec!["diff", "--staged"];
    for f in &files {
        all.extend(["-f", f.as_str()]);
    }
    all.extend(args);
    netpol(&all)
}

#[test]
fn diff_staged_counts_the_flows_a_staged_deny_would_cut() {
    let o = diff_staged(&["deny.yaml"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(
        text,
        "cni: calico (auto: Calico objects present)\n- DENY   ops/* (2 pods) -> shop/api, shop/web  all  (4 pairs)\n    because (e.g. ops/monitor-1 -> shop/api \
         8080/TCP): ingress to shop/api now denied by the security policy caliconetworkpolicy/shop/deny-ops rule 0 \
         (deny), which overrides NetworkPolicy shop/api-ingress rule 1 peer 0 any port\n\n1 group: 0 pairs newly \
         allowed, 4 pairs newly denied (4 pairs changed), 16 pairs unchanged; 0 pods added, 0 removed\n"
    );
    assert!(stderr(&o).contains("1 staged policy (1 Set)"), "{}", stderr(&o));
    // Nothing is newly allowed: --fail-on-new-allows passes.
    assert_eq!(diff_staged(&["deny.yaml"], &["--fail-on-new-allows"]).status.code(), Some(0));
    // JSON: the same diff as data, pair by pair counts and the cause's two explanations.
    let o = diff_staged(&["deny.yaml"], &["-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((v["changed_pairs"].as_u64(), v["unchanged_pairs"].as_u64()), (Some(4), Some(16)));
    let g = &v["groups"][0];
    assert_eq!(g["change"], "newly_denied");
    assert_eq!(g["sources"], serde_json::json!(["ops/monitor-1", "ops/monitor-2"]));
    assert_eq!(g["destinations"], serde_json::json!(["shop/api", "shop/web"]));
    assert_eq!((g["ports"].as_str(), g["pairs"].as_u64()), (Some("all"), Some(4)));
    assert_eq!(g["cause_detail"]["old"]["verdict"], "allow");
    assert_eq!(g["cause_detail"]["new"]["ingress"]["walk"][0]["policy"], "caliconetworkpolicy/shop/deny-ops");
    // Markdown: the pull-request comment.
    let o = diff_staged(&["deny.yaml"], &["-o", "markdown"]);
    let md = stdout(&o);
    assert!(md.contains("**0 pairs newly allowed**, **4 pairs newly denied**, 16 pairs unchanged."), "{md}");
    assert!(md.contains("| **− denied** | ops/* (2 pods) | shop/api, shop/web | all | 4 |"), "{md}");
}

#[test]
fn diff_staged_reports_what_a_staged_delete_would_open_and_fails_on_it_when_asked() {
    let o = diff_staged(&["delete.yaml"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    for line in [
        "+ ALLOW  ops/* (2 pods), shop/web -> shop/db  all  (3 pairs)",
        "    because (e.g. ops/monitor-1 -> shop/db 5432/TCP): ingress to shop/db is not isolated anymore \
         (shop/db-from-api was removed)",
        "+ ALLOW  shop/api -> shop/db  TCP 1-5431,5433-65535; UDP all; SCTP all; ICMP all; ICMPv6 all  (1 pair)",
        "+ ALLOW  outside 0.0.0.0/0, ::/0 -> shop/db  all  (1 pod)",
        "2 groups: 4 pairs newly allowed, 0 pairs newly denied (4 pairs changed), 16 pairs unchanged; 1 group with \
         addresses outside the cluster (1 newly allowed); 0 pods added, 0 removed",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
    let o = diff_staged(&["delete.yaml"], &["--fail-on-new-allows", "-o", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let allowed: u64 = v["groups"].as_array().unwrap().iter().map(|g| g["pairs"].as_u64().unwrap()).sum();
    assert_eq!(allowed, 4);
    assert_eq!(v["outside"][0]["change"], "newly_allowed");
}

/// `diff --staged` is `diff -f OLD --against NEW` with NEW the staged policies enforced by hand: the same JSON.
#[test]
fn diff_staged_is_the_diff_against_the_staged_policies_enforced_by_hand() {
    let dir = crate::common::tempdir();
    let cluster = std::fs::read_to_string(data("cluster.yaml")).unwrap();
    // The enforced cluster with shop/db-from-api deleted and shop/api-ingress replaced, as staged.
    let docs: Vec<&str> = cluster.split("\n---\n").filter(|d| !d.contains("name: db-from-api")).collect();
    let replace = std::fs::read_to_string(data("replace.yaml")).unwrap();
    let new_api = replace.split("\n---\n").next().unwrap().replace("projectcalico.org/v3", "networking.k8s.io/v1");
    let new_api =
        new_api.replace("StagedKubernetesNetworkPolicy", "NetworkPolicy").replace("  stagedAction: Set\n", "");
    let by_hand: Vec<String> =
        docs.iter().map(|d| if d.contains("name: api-ingress") { new_api.clone() } else { d.to_string() }).collect();
    let new = dir.path().join("new.yaml");
    std::fs::write(&new, by_hand.join("\n---\n")).unwrap();
    // Only the Kubernetes kind (the staged GlobalNetworkPolicy of replace.yaml changes no verdict anyway).
    let staged_file = dir.path().join("staged.yaml");
    std::fs::write(
        &staged_file,
        [std::fs::read_to_string(data("delete.yaml")).unwrap(), replace.split("\n---\n").next().unwrap().to_string()]
            .join("\n---\n"),
    )
    .unwrap();
    let (old, staged_file, new) = (data("cluster.yaml"), staged_file.display().to_string(), new.display().to_string());
    let staged = netpol(&["diff", "--staged", "-f", &old, "-f", &staged_file, "-o", "json"]);
    let by_hand = netpol(&["diff", "-f", &old, "-f", &staged_file, "--against", &new, "-o", "json"]);
    assert_eq!(staged.status.code(), Some(0), "{}", stderr(&staged));
    let (a, mut b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(&stdout(&staged)).unwrap(), serde_json::from_str(&stdout(&by_hand)).unwrap());
    assert!(!a["groups"].as_array().unwrap().is_empty());
    // The replaced rule is named by its file: the staged object's, or the hand-written one's.
    let text = b.to_string().replace(&format!("{new} (document 9)"), &format!("{staged_file} (document 1)"));
    b = serde_json::from_str(&text).unwrap();
    assert_eq!(a, b);
}

#[test]
fn diff_staged_without_staged_policies_or_with_against_or_git() {
    let o = diff_staged(&[], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("the manifests have no staged policies"), "{}", stderr(&o));
    let want = "cni: calico (auto: Calico objects present)\nno connectivity change: 20 pairs compared, none changed";
    assert!(stdout(&o).starts_with(want), "{}", stdout(&o));
    let c = data("cluster.yaml");
    for args in [
        vec!["diff", "--staged", "-f", c.as_str(), "--against", c.as_str()],
        vec!["diff", "--staged", "--git", "HEAD", "HEAD", "."],
        vec!["diff", "--staged"],
    ] {
        let o = netpol(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    // -n: the pairs inside one namespace (the staged Deny changes none inside shop).
    let o = diff_staged(&["deny.yaml"], &["-n", "shop"]);
    let want = "cni: calico (auto: Calico objects present)\nno connectivity change: 6 pairs compared";
    assert!(stdout(&o).starts_with(want), "{}", stdout(&o));
    let o = diff_staged(&["deny.yaml"], &["-n", "nowhere"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown namespace `nowhere`"), "{}", stderr(&o));
}

#[test]
fn explain_shows_the_enforced_verdict_then_the_staged_one() {
    let (c, deny) = (data("cluster.yaml"), data("deny.yaml"));
    let plain = netpol(&["explain", "-f", &c, "ops/monitor-1", "shop/api", "8080"]);
    let o = netpol(&["explain", "-f", &c, "-f", &deny, "ops/monitor-1", "shop/api", "8080"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    // The enforced explanation, untouched, then the staged view.
    assert!(text.starts_with(&stdout(&plain)), "{text}");
    let staged = &text[stdout(&plain).len()..];
    assert!(
        staged.starts_with(
            "STAGED DENY ops/monitor-1 -> shop/api 8080/TCP: the verdict if the staged policies were enforced \
             (changes the enforced ALLOW)\n  staged policies on this flow: StagedNetworkPolicy shop/deny-ops (Set: \
             caliconetworkpolicy/shop/deny-ops, "
        ),
        "{staged}"
    );
    assert!(
        staged.contains("  ingress to shop/api: DENIED\n    [security] caliconetworkpolicy/shop/deny-ops"),
        "{staged}"
    );
    assert!(staged.contains("spec.ingress[0]) → DENY"), "{staged}");
    // JSON: the enforced explanation's fields, and `staged`.
    let o = netpol(&["explain", "-f", &c, "-f", &deny, "ops/monitor-1", "shop/api", "8080", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let p: serde_json::Value = serde_json::from_str(&stdout(&netpol(&[
        "explain",
        "-f",
        &c,
        "ops/monitor-1",
        "shop/api",
        "8080",
        "-o",
        "json",
    ])))
    .unwrap();
    assert!(p.get("staged").is_none());
    let mut enforced = v.clone();
    enforced.as_object_mut().unwrap().remove("staged");
    assert_eq!(enforced, p);
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["staged"]["verdict"], "deny");
    assert_eq!(v["staged"]["changed"], true);
    assert_eq!(v["staged"]["policies"][0]["kind"], "StagedNetworkPolicy");
    assert_eq!(v["staged"]["ingress"]["decided_by"], "rule");
    assert_eq!(v["staged"]["ingress"]["walk"][0]["policy"], "caliconetworkpolicy/shop/deny-ops");
    // A staged Delete: the staged view is not isolated any more.
    let o = netpol(&["explain", "-f", &c, "-f", &data("delete.yaml"), "shop/web", "shop/db", "5432", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((v["verdict"].as_str(), v["staged"]["verdict"].as_str()), (Some("deny"), Some("allow")));
    assert_eq!(v["staged"]["policies"][0]["action"], "Delete");
    assert_eq!(v["staged"]["ingress"]["decided_by"], "not_governed");
}

/// `netpol query --explain`: each explanation carries the staged verdict, exactly as `explain -o json` gives it;
/// verdicts stay the enforced ones; without `--explain` or without staged policies, nothing staged is added.
#[test]
fn query_explain_carries_the_staged_verdict() {
    let (c, deny) = (data("cluster.yaml"), data("deny.yaml"));
    let dir = crate::common::tempdir();
    let flows = dir.path().join("flows.jsonl");
    std::fs::write(
        &flows,
        "{\"src\":\"ops/monitor-1\",\"dst\":\"shop/api\",\"port\":8080}\n\
         {\"src\":\"shop/web\",\"dst\":\"shop/api\",\"port\":8080}\n\
         {\"src\":\"shop/nope\",\"dst\":\"shop/api\",\"port\":8080}\n",
    )
    .unwrap();
    let flows = flows.display().to_string();
    let o = netpol(&["query", "-f", &c, "-f", &deny, "--flows", &flows, "--explain"]);
    assert_eq!(o.status.code(), Some(1), "the unknown pod is an error line: {}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["verdict"], "allow", "the enforced verdict");
    assert_eq!(lines[0]["explain"]["staged"]["verdict"], "deny");
    assert_eq!(lines[0]["explain"]["staged"]["changed"], true);
    assert_eq!(lines[0]["explain"]["staged"]["policies"][0]["name"], "shop/deny-ops");
    assert_eq!(lines[1]["explain"]["staged"]["verdict"], "allow");
    assert_eq!(lines[1]["explain"]["staged"]["changed"], false);
    assert!(lines[2]["error"].is_string());
    // The same object as `explain -o json`.
    let e = netpol(&["explain", "-f", &c, "-f", &deny, "ops/monitor-1", "shop/api", "8080", "-o", "json"]);
    let e: serde_json::Value = serde_json::from_str(&stdout(&e)).unwrap();
    assert_eq!(lines[0]["explain"], e);
    // Without --explain: verdicts only.
    let o = netpol(&["query", "-f", &c, "-f", &deny, "--flows", &flows]);
    let first: serde_json::Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(first.get("explain"), None);
    // Without staged policies: no `staged`.
    let o = netpol(&["query", "-f", &c, "--flows", &flows, "--explain"]);
    let first: serde_json::Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(first["verdict"], "allow");
    assert!(first["explain"].get("staged").is_none(), "{first}");
}

/// `netpol lint` on the fixtures: NP022 names each staged policy that would cut allowed traffic, with the
/// count of flows, on the line of its object (text and SARIF); the staged Delete (it opens) and the staged Log
/// policy are quiet, and the Tier only a staged policy is in is not "without policies" (NP020).
#[test]
fn lint_reports_the_staged_policies_that_would_cut_allowed_traffic() {
    let dir = data("");
    let o = netpol(&["lint", "-f", &dir, "--fail-on", "warning"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let text = stdout(&o);
    let np022: Vec<&str> = text.lines().filter(|l| l.contains("[NP022]")).collect();
    assert_eq!(np022.len(), 2, "{text}");
    assert!(
        np022[0].ends_with(
            "warning[NP022] staged-cuts-allowed-traffic (line 3): enforcing this staged policy would deny 4 currently \
             allowed flow(s) (pod pair, declared port) on 4 pod pair(s), some together with other staged policies, \
             e.g. ops/monitor-1 -> shop/api 8080/TCP, ops/monitor-1 -> shop/web 80/TCP"
        ),
        "{text}"
    );
    assert!(text.contains("  StagedNetworkPolicy shop/deny-ops\n"), "{text}");
    assert!(text.contains("  StagedKubernetesNetworkPolicy shop/api-ingress\n"), "{text}");
    assert!(np022[1].contains("would deny 2 currently allowed flow(s) (pod pair, declared port) on 2 pod pair(s)"));
    assert!(!text.contains("[NP020]"), "{text}");
    // Without staged policies: no NP022.
    let o = netpol(&["lint", "-f", &data("cluster.yaml"), "--fail-on", "never"]);
    assert!(!stdout(&o).contains("NP022"), "{}", stdout(&o));
    // SARIF: the rule's metadata, and each result on its staged object's first line.
    let o =
        netpol(&["lint", "-f", &data("deny.yaml"), "-f", &data("cluster.yaml"), "-o", "sarif", "--fail-on", "never"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r["id"] == "NP022" && r["name"] == "staged-cuts-allowed-traffic"), "{rules:?}");
    let results: Vec<&serde_json::Value> =
        v["runs"][0]["results"].as_array().unwrap().iter().filter(|r| r["ruleId"] == "NP022").collect();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["level"], "warning");
    let loc = &results[0]["locations"][0]["physicalLocation"];
    assert!(loc["artifactLocation"]["uri"].as_str().unwrap().ends_with("deny.yaml"), "{loc}");
    assert_eq!(loc["region"]["startLine"], 3);
}

/// The README's examples (Calico section, `explain`; Connectivity diff, `diff --staged`) are what the binary prints.
#[test]
fn the_readme_examples_are_the_binary_output() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_netpol")).args(args).current_dir(&root).env("NO_COLOR", "1").output();
        stdout(&o.unwrap())
    };
    // The block after the command line, up to the closing fence, without its indentation.
    let block = |command: &str| -> String {
        let at = readme.find(command).unwrap_or_else(|| panic!("`{command}` is not in the README"));
        let indent = at - readme[..at].rfind('\n').map_or(0, |i| i + 1);
        let body = &readme[at..];
        let body = &body[body.find('\n').unwrap() + 1..];
        let body = &body[..body.find("```").unwrap()];
        body.lines()
            .filter(|l| !l.trim().is_empty() || l.is_empty())
            .filter(|l| !l.contains("(on stderr)"))
            .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
            .collect()
    };
    let explain = "netpol explain -f tests/data/calico/staged/cluster.yaml -f tests/data/calico/staged/deny.yaml \
                   ops/monitor-1 shop/api 8080";
    let args: Vec<&str> = explain.split(' ').skip(1).collect();
    assert_eq!(block(&format!("$ {explain}")), run(&args));
    assert_eq!(
        block("$ netpol diff --staged -f tests/data/calico/staged"),
        run(&["diff", "--staged", "-f", "tests/data/calico/staged"])
    );
}
