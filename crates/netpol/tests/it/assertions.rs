//! `netpol test` (policy assertions) through the library API, on the bundled example and `tests/data/assertions/`.

use std::path::PathBuf;

use netpol::assert_cmd::{self, AssertFormat};
use netpol_core::compile::Engine;
use netpol_core::load::Loader;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example_engine() -> Engine {
    let mut loader = Loader::new();
    for f in ["namespaces.yaml", "workloads.yaml", "policies.yaml"] {
        let path = root().join("examples/three-tier").join(f);
        loader.add_bytes(&path.display().to_string(), &std::fs::read(&path).unwrap());
    }
    let loaded = loader.finish();
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    Engine::new(loaded.cluster)
}

fn fixture(name: &str) -> String {
    root().join("tests/data/assertions").join(name).display().to_string()
}

/// Runs the assertions file; returns (exit code, report, errors). A text report starts with the engine's CNI,
/// checked and left out of the report returned.
fn run_path(engine: &Engine, path: &str, format: AssertFormat) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = assert_cmd::run_with_errors(engine, path, format, &mut out, &mut err).unwrap();
    let mut report = String::from_utf8(out).unwrap();
    if format == AssertFormat::Text && code != 2 {
        let header = format!("{}\n", netpol_input::cni_header(engine));
        assert!(report.starts_with(&header), "{report}");
        report = report.split_off(header.len());
    }
    (code, report, String::from_utf8(err).unwrap())
}

fn run_fixture(name: &str, format: AssertFormat) -> (u8, String, String) {
    run_path(&example_engine(), &fixture(name), format)
}

fn json(report: &str) -> serde_json::Value {
    serde_json::from_str(report).unwrap_or_else(|e| panic!("{e}: {report}"))
}

#[test]
fn bundled_example_assertions_all_pass() {
    let path = root().join("examples/three-tier/assertions.yaml").display().to_string();
    let mut out = Vec::new();
    let code = assert_cmd::run(&example_engine(), &path, AssertFormat::Text, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{text}");
    let text = text
        .strip_prefix("cni: generic (auto: no Cilium, Calico or Antrea objects or agents)\n")
        .unwrap_or_else(|| panic!("{text}"));
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len() - 1;
    assert!((8..=12).contains(&n), "{text}");
    assert!(lines[..n].iter().all(|l| l.starts_with("PASS ")), "{text}");
    assert!(text.contains("PASS worker can reach postgres (the mis-indent, see README)\n"), "{text}");
    assert_eq!(lines[n], format!("{n} passed, 0 failed"));
    // Selector endpoints really expanded to several pods.
    let (_, report, _) = run_path(&example_engine(), &path, AssertFormat::Json);
    let v = json(&report);
    let pairs = |name: &str| {
        v["assertions"].as_array().unwrap().iter().find(|a| a["name"] == name).unwrap()["pairs"].as_u64().unwrap()
    };
    // 8 pods outside backend x 2 postgres pods, minus each postgres pod paired with itself.
    assert_eq!(pairs("nothing outside backend reaches postgres"), 14);
    // 8 pods of frontend, backend and database x 2 kube-dns pods.
    assert_eq!(pairs("every pod of the app namespaces reaches kube-dns on 53/UDP"), 16);
}

#[test]
fn passing_file_exits_0_with_a_line_per_assertion() {
    let (code, text, err) = run_fixture("pass.yaml", AssertFormat::Text);
    assert_eq!(code, 0, "{text}{err}");
    assert_eq!(
        text,
        "PASS web reaches the api on http\nPASS api resolves names\nPASS web does not reach postgres\n\
         3 passed, 0 failed\n"
    );
    assert!(err.is_empty());
}

#[test]
fn failing_assertions_show_the_actual_verdict_and_its_explanation() {
    let (code, text, err) = run_fixture("fail.yaml", AssertFormat::Text);
    assert_eq!(code, 1, "{text}{err}");
    assert!(text.starts_with("PASS web reaches the api on http\nFAIL worker cannot reach postgres\n"), "{text}");
    assert!(
        text.contains(
            "  backend/worker -> database/postgres 5432/TCP: expected deny, got allow for 1 of 1 pair(s)\n  \
             - backend/worker -> database/postgres: allow\n"
        ),
        "{text}"
    );
    // The explanation of the actual verdict: which rules let the worker in (the mis-indented peer 0).
    assert!(
        text.contains("      ingress to database/postgres: allowed; isolated by database/default-deny, database/allow-postgres-from-backend\n"),
        "{text}"
    );
    assert!(
        text.contains("        allowed by database/allow-postgres-from-backend rule 0 peer 0, port 5432/TCP\n"),
        "{text}"
    );
    // A deny is explained by every rule that does not allow it.
    assert!(text.contains("FAIL web reaches postgres\n"), "{text}");
    assert!(text.contains("  - frontend/web -> database/postgres: deny\n"), "{text}");
    assert!(text.contains("no rule allows it:"), "{text}");
    assert!(text.contains("- frontend/default-deny has no egress rules: it only isolates"), "{text}");
    assert_eq!(text.lines().last(), Some("1 passed, 2 failed"));
}

#[test]
fn selectors_expand_to_every_matching_pod_and_skip_self_pairs() {
    let (code, report, err) = run_fixture("selectors.yaml", AssertFormat::Json);
    assert_eq!(code, 0, "{report}{err}");
    let v = json(&report);
    let a = v["assertions"].as_array().unwrap();
    assert_eq!(a[0]["result"], "pass");
    // 4 backend pods x 2 postgres pods.
    assert_eq!(a[0]["pairs"], 8);
    // 4 x 4 backend pods minus the 4 pods paired with themselves.
    assert_eq!(a[1]["pairs"], 12);
    assert_eq!(a[1]["failing_pairs"], 0);
}

#[test]
fn endpoints_that_match_no_pod_fail() {
    let (code, text, err) = run_fixture("no-match.yaml", AssertFormat::Text);
    assert_eq!(code, 1, "{text}{err}");
    assert!(err.is_empty(), "cluster-dependent problems are failures, not file errors: {err}");
    assert!(
        text.contains(
            "FAIL nothing reaches the cache\n  to: {namespace: backend, podSelector: app=redis} matches no pod\n"
        ),
        "{text}"
    );
    assert!(text.contains("FAIL renamed pod\n  from: unknown pod `frontend/web-legacy`\n"), "{text}");
    assert!(text.contains("PASS web reaches the api on http\n"), "{text}");
    assert_eq!(text.lines().last(), Some("1 passed, 2 failed"));
}

#[test]
fn a_pod_paired_only_with_itself_is_not_a_pass() {
    let dir = crate::common::tempdir();
    let path = dir.path().join("self.yaml");
    std::fs::write(
        &path,
        "assertions:\n  - {name: self, from: frontend/web, to: {namespace: frontend, podSelector: {matchLabels: \
         {app: web}}}, port: 22, expect: deny}\n  - {name: only self, from: frontend/web, to: frontend/web, \
         port: 22, expect: deny}\n",
    )
    .unwrap();
    let (code, text, _) = run_path(&example_engine(), &path.display().to_string(), AssertFormat::Text);
    assert_eq!(code, 1, "{text}");
    // web -> web-7c9f8d6b5-k2x9p is checked (denied on 22); web -> web is skipped.
    assert!(text.starts_with("PASS self\nFAIL only self\n  nothing to check"), "{text}");
}

#[test]
fn invalid_files_exit_2_naming_file_and_field() {
    let cases = [
        (
            "bad-operator.yaml",
            "assertions[0].from.namespaceSelector.matchExpressions[0].operator: not a valid selector operator \
             `Equals`",
        ),
        ("missing-name.yaml", ":7: assertions[1].name: missing field"),
        (
            "duplicate-name.yaml",
            "assertions[1].name: duplicate name `web reaches the api`: already used by assertions[0]",
        ),
        ("bad-expect.yaml", "assertions[0].expect: must be `allow` or `deny`, found \"allowed\""),
    ];
    let engine = example_engine();
    for (file, want) in cases {
        let path = fixture(file);
        let (code, out, err) = run_path(&engine, &path, AssertFormat::Junit);
        assert_eq!(code, 2, "{file}: {out}{err}");
        assert!(out.is_empty(), "{file}: no report for an invalid file: {out}");
        assert!(err.starts_with(&format!("error: {path}:")), "{file}: {err}");
        assert!(err.contains(want), "{file}: want `{want}` in: {err}");
    }
    // `run` itself reports on stderr and returns 2.
    let mut out = Vec::new();
    assert_eq!(assert_cmd::run(&engine, &fixture("bad-expect.yaml"), AssertFormat::Text, &mut out).unwrap(), 2);
    // An unreadable file is an invalid file too.
    let (code, _, err) = run_path(&engine, &fixture("no-such-file.yaml"), AssertFormat::Text);
    assert_eq!(code, 2);
    assert!(err.contains("no-such-file.yaml: cannot read"), "{err}");
}

#[test]
fn every_problem_of_a_file_is_reported() {
    let text = r#"
apiVersion: netpol/v1
assertions:
  - name: a
    from: {namespace: backend, podSelector: {matchLabel: {app: api}}}
    to: "10.0.0.0/8"
    port: http
    expect: allow
  - name: b
    from: {ip: 10.1.2.3, namespace: x}
    to: backend/api
    port: 53/UDP
    protocol: TCP
    expect: deny
    comment: extra
  - name: c
    from: backend/api
    to: backend/worker
    port: 70000
"#;
    let e = assert_cmd::parse("t.yaml", text).unwrap_err();
    let msgs: Vec<String> = e.errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
    let want = [
        "apiVersion: unsupported apiVersion \"netpol/v1\"",
        // A typo in a selector would silently select everything: rejected.
        "assertions[0].from.podSelector.matchLabel: unknown field",
        "assertions[0].to: `10.0.0.0/8` is a CIDR (`/8`), not an address: give a single IP address",
        "assertions[0].port: invalid port \"http\"",
        "named ports are not supported",
        "assertions[1].from: `ip` cannot be combined",
        "assertions[1].protocol: TCP conflicts with the protocol given in `port` (UDP)",
        "assertions[1].comment: unknown field",
        "assertions[2].port: invalid port 70000",
        "assertions[2].expect: missing field",
        "(in assertion `c`)",
    ];
    for w in want {
        assert!(msgs.iter().any(|m| m.contains(w)), "want `{w}` in {msgs:#?}");
    }
    assert!(e.to_string().lines().all(|l| l.starts_with("t.yaml:")), "{e}");
    // Lines point at the field, or at its closest enclosing field.
    let line_of = |field: &str| e.errors.iter().find(|e| e.field == field).and_then(|e| e.line);
    assert_eq!(line_of("apiVersion"), Some(2));
    assert_eq!(line_of("assertions[0].port"), Some(7));
    assert_eq!(line_of("assertions[1].comment"), Some(15));
    assert_eq!(line_of("assertions[2].expect"), Some(16), "a missing field: the assertion's first line");
    assert!(e.to_string().contains("t.yaml:7: assertions[0].port: invalid port"), "{e}");
    // Not a mapping, an empty list, a YAML syntax error.
    for (text, want) in [
        ("- a\n- b\n", "expected a mapping with an `assertions` list"),
        ("assertions: []\n", "assertions: the list is empty"),
        ("assertions:\n  - name: [\n", "invalid YAML"),
        ("kind: Assertion\nassertions: [{name: x, from: a, to: b, port: 1, expect: deny}]\n", "kind: unsupported kind"),
    ] {
        let e = assert_cmd::parse("t.yaml", text).unwrap_err().to_string();
        assert!(e.contains(want), "want `{want}` in {e}");
    }
}

#[test]
fn json_assertions_files_and_ip_endpoints() {
    let (code, report, err) = run_fixture("assertions.json", AssertFormat::Json);
    assert_eq!(code, 0, "{report}{err}");
    let v = json(&report);
    assert_eq!(v["passed"], 2);
    let a = &v["assertions"][1];
    assert_eq!(a["from"], "2001:db8::99");
    assert_eq!(a["to"], "fd00:10:244:2::21");
    assert_eq!(a["pairs"], 1);
}

#[test]
fn json_report_shape() {
    let (code, report, _) = run_fixture("fail.yaml", AssertFormat::Json);
    assert_eq!(code, 1);
    let v = json(&report);
    assert_eq!(v["passed"], 1);
    assert_eq!(v["failed"], 2);
    let a = v["assertions"].as_array().unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["name"], "web reaches the api on http");
    assert_eq!(a[0]["result"], "pass");
    assert_eq!(a[0]["pairs"], 1);
    assert_eq!(a[0]["failures"], serde_json::json!([]));
    let f = &a[1];
    assert_eq!(f["result"], "fail");
    assert_eq!(f["from"], "backend/worker");
    assert_eq!(f["to"], "database/postgres");
    assert_eq!(f["port"], 5432);
    assert_eq!(f["protocol"], "TCP");
    assert_eq!(f["expect"], "deny");
    assert_eq!(f["pairs"], 1);
    assert_eq!(f["failing_pairs"], 1);
    assert!(f.get("errors").is_none());
    let p = &f["failures"][0];
    for (k, want) in [
        ("src", serde_json::json!("backend/worker")),
        ("dst", serde_json::json!("database/postgres")),
        ("port", serde_json::json!(5432)),
        ("protocol", serde_json::json!("TCP")),
        ("expected", serde_json::json!("deny")),
        ("actual", serde_json::json!("allow")),
    ] {
        assert_eq!(p[k], want, "{k}: {p}");
    }
    // The explain object is the one of `netpol explain -o json`.
    assert_eq!(p["explain"]["verdict"], "allow");
    assert_eq!(p["explain"]["ingress"]["allowed_by"][0]["policy"], "database/allow-postgres-from-backend");
    let (_, report, _) = run_fixture("no-match.yaml", AssertFormat::Json);
    let v = json(&report);
    assert_eq!(
        v["assertions"][0]["errors"],
        serde_json::json!(["to: {namespace: backend, podSelector: app=redis} matches no pod"])
    );
}

#[test]
fn failing_pairs_are_capped_at_20_per_assertion() {
    let dir = crate::common::tempdir();
    let path = dir.path().join("many.yaml");
    // Port 22 is open only between pods that are not isolated (kube-system, monitoring).
    std::fs::write(
        &path,
        "assertions:\n  - {name: everything open on ssh, from: {}, to: {}, port: 22, expect: allow}\n",
    )
    .unwrap();
    let path = path.display().to_string();
    let engine = example_engine();
    let (code, report, _) = run_path(&engine, &path, AssertFormat::Json);
    assert_eq!(code, 1);
    let v = json(&report);
    let a = &v["assertions"][0];
    assert_eq!(a["pairs"], 12 * 11);
    let failing = a["failing_pairs"].as_u64().unwrap();
    assert!(failing > 20, "{failing}");
    assert_eq!(a["failures"].as_array().unwrap().len(), 20);
    let (_, text, _) = run_path(&engine, &path, AssertFormat::Text);
    assert_eq!(text.matches("\n  - ").count(), 20, "{text}");
    assert!(text.contains(&format!("\n  and {} more\n0 passed, 1 failed\n", failing - 20)), "{text}");
}

/// An XML element: name, attributes (values as written, escaped), text content (escaped).
type Element = (String, Vec<(String, String)>, String);

/// A small well-formedness check: tags balance, attributes are quoted, text and attribute values hold no raw
/// `<` or undeclared entity. Returns the elements as (name, attributes, text) in document order.
fn parse_xml(s: &str) -> Vec<Element> {
    fn check_text(t: &str) {
        assert!(!t.contains('<'), "raw < in {t:?}");
        let mut rest = t;
        while let Some(i) = rest.find('&') {
            rest = &rest[i + 1..];
            let end = rest.find(';').unwrap_or_else(|| panic!("unterminated entity in {t:?}"));
            let ent = &rest[..end];
            let ok = ["amp", "lt", "gt", "quot", "apos"].contains(&ent)
                || ent.strip_prefix('#').is_some_and(|n| n.parse::<u32>().is_ok());
            assert!(ok, "bad entity &{ent}; in {t:?}");
        }
    }
    let s = s.strip_prefix(r#"<?xml version="1.0" encoding="UTF-8"?>"#).expect("XML declaration");
    let mut stack: Vec<usize> = Vec::new();
    let mut elems: Vec<Element> = Vec::new();
    let mut rest = s;
    let mut roots = 0;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        check_text(text);
        match stack.last() {
            Some(&i) => elems[i].2.push_str(text),
            None => assert!(text.trim().is_empty(), "text outside the root: {text:?}"),
        }
        let gt = rest[lt..].find('>').expect("unterminated tag") + lt;
        let tag = &rest[lt + 1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let i = stack.pop().unwrap_or_else(|| panic!("unmatched </{name}>"));
            assert_eq!(elems[i].0, name, "mismatched end tag");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, mut attrs_src) = tag.split_once(' ').unwrap_or((tag, ""));
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()), "bad tag name {name:?}");
        let mut attrs = Vec::new();
        loop {
            attrs_src = attrs_src.trim_start();
            if attrs_src.is_empty() {
                break;
            }
            let (k, v) = attrs_src.split_once("=\"").unwrap_or_else(|| panic!("unquoted attribute in <{tag}>"));
            let end = v.find('"').expect("unterminated attribute");
            check_text(&v[..end]);
            assert!(!v[..end].contains('\n'), "raw newline in an attribute");
            attrs.push((k.to_string(), v[..end].to_string()));
            attrs_src = &v[end + 1..];
        }
        if stack.is_empty() {
            roots += 1;
        }
        elems.push((name.to_string(), attrs, String::new()));
        if !self_closing {
            stack.push(elems.len() - 1);
        }
    }
    assert!(rest.trim().is_empty() && stack.is_empty(), "unclosed elements");
    assert_eq!(roots, 1, "one root element");
    elems
}

fn attr<'a>(e: &'a Element, k: &str) -> &'a str {
    e.1.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {k} on <{}>", e.0))
}

#[test]
fn junit_report_is_well_formed_with_a_failure_per_failing_assertion() {
    let (code, xml, _) = run_fixture("fail.yaml", AssertFormat::Junit);
    assert_eq!(code, 1);
    let elems = parse_xml(&xml);
    let suite = &elems[0];
    assert_eq!(suite.0, "testsuite");
    assert_eq!(attr(suite, "name"), "netpol");
    assert_eq!(attr(suite, "tests"), "3");
    assert_eq!(attr(suite, "failures"), "2");
    let cases: Vec<_> = elems.iter().filter(|e| e.0 == "testcase").collect();
    assert_eq!(cases.len(), 3);
    assert!(cases.iter().all(|c| attr(c, "classname") == "netpol.assertions"));
    assert_eq!(attr(cases[1], "name"), "worker cannot reach postgres");
    let failures: Vec<_> = elems.iter().filter(|e| e.0 == "failure").collect();
    assert_eq!(failures.len(), 2);
    assert_eq!(attr(failures[0], "message"), "expected deny, got allow for 1 of 1 pair(s)");
    assert_eq!(attr(failures[0], "type"), "verdict-mismatch");
    // Details carry the explanation (`->` escaped as `-&gt;`).
    assert!(failures[0].2.contains("- backend/worker -&gt; database/postgres: allow"), "{}", failures[0].2);
    assert!(failures[0].2.contains("allowed by database/allow-postgres-from-backend rule 0 peer 0"));
}

#[test]
fn junit_escapes_names_and_reports_unresolved_endpoints() {
    let dir = crate::common::tempdir();
    let path = dir.path().join("esc.yaml");
    std::fs::write(
        &path,
        "assertions:\n  - name: \"<web> & 'api' \\\"http\\\"\"\n    from: frontend/web\n    to: backend/api\n    \
         port: 8080\n    expect: deny\n  - name: none\n    from: {namespace: nope}\n    to: backend/api\n    port: 1\n    \
         expect: deny\n",
    )
    .unwrap();
    let (code, xml, err) = run_path(&example_engine(), &path.display().to_string(), AssertFormat::Junit);
    assert_eq!(code, 1, "{xml}{err}");
    let elems = parse_xml(&xml);
    let cases: Vec<_> = elems.iter().filter(|e| e.0 == "testcase").collect();
    assert_eq!(attr(cases[0], "name"), "&lt;web&gt; &amp; &apos;api&apos; &quot;http&quot;");
    let failures: Vec<_> = elems.iter().filter(|e| e.0 == "failure").collect();
    assert_eq!(failures.len(), 2);
    assert_eq!(attr(failures[1], "type"), "unresolved-endpoint");
    assert_eq!(attr(failures[1], "message"), "from: {namespace: nope} matches no pod");
}

#[test]
fn a_byte_order_mark_and_protocols_in_any_case_are_accepted() {
    let engine = example_engine();
    let dir = crate::common::tempdir();
    let yaml = "\u{feff}assertions:\n  - name: dns\n    from: backend/api\n    to: kube-system/coredns\n    port: 53/udp\n    expect: allow\n  - name: dns tcp\n    from: backend/api\n    to: kube-system/coredns\n    port: 53\n    protocol: Tcp\n    expect: allow\n";
    let json_text = "\u{feff}{\"assertions\":[{\"name\":\"dns\",\"from\":\"backend/api\",\"to\":\"kube-system/coredns\",\"port\":53,\"protocol\":\"udp\",\"expect\":\"allow\"}]}";
    for (name, text, passed) in [("a.yaml", yaml, 2), ("a.json", json_text, 1)] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (code, report, err) = run_path(&engine, path.to_str().unwrap(), AssertFormat::Json);
        assert_eq!(code, 0, "{name}: {report}{err}");
        assert_eq!(json(&report)["passed"], passed, "{name}");
    }
    // With a BOM, lines of errors are still right.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, yaml.replace("expect: allow\n  - name: dns tcp", "expect: allowed\n  - name: dns tcp"))
        .unwrap();
    let (code, _, err) = run_path(&engine, bad.to_str().unwrap(), AssertFormat::Text);
    assert_eq!(code, 2);
    assert!(err.contains("bad.yaml:6: assertions[0].expect: must be `allow` or `deny`"), "{err}");
}

#[test]
fn a_selector_mistake_is_reported_once_in_user_terms() {
    let one = |sel: &str| -> Vec<String> {
        let text = format!("assertions:\n  - name: a\n    from: {{podSelector: {sel}}}\n    to: backend/api\n    port: 80\n    expect: allow\n");
        let e = assert_cmd::parse("t.yaml", &text).unwrap_err();
        e.errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect()
    };
    let p = "assertions[0].from.podSelector.matchExpressions[0]";
    // A misspelt field: before, also "not a valid selector operator ``" for the operator it left empty.
    assert_eq!(
        one("{matchExpressions: [{key: app, operater: In, values: [a]}]}"),
        [format!(
            "{p}.operater: unknown field (did you mean `operator`? expected one of `key`, `operator`, `values`) (in \
             assertion `a`)"
        )]
    );
    // And "values: must be specified when `operator` is 'In'" for a misspelt `values`.
    assert_eq!(one("{matchExpressions: [{key: app, operator: In, valus: [a]}]}").len(), 1);
    // A missing key: said once, not as "invalid label key ``".
    assert_eq!(one("{matchExpressions: [{operator: Exists}]}"), [format!("{p}.key: missing field (in assertion `a`)")]);
    // Not a mapping: no Rust type name (serde said "expected LabelSelectorRequirement").
    assert_eq!(
        one("{matchExpressions: [app=web]}"),
        [format!("{p}: must be a mapping with `key`, `operator` and `values`, found a string (in assertion `a`)")]
    );
    // Real selector errors are still reported, each once.
    let errs = one("{matchExpressions: [{key: app, operator: Equals, values: [a]}, {key: x, operator: In}]}");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs[0].contains("not a valid selector operator `Equals`"), "{errs:#?}");
}

/// Addresses in assertion files: an IPv4-mapped IPv6 address is the IPv4 address (so the pod with it); a zoned
/// address is an error naming the field.
#[test]
fn mapped_addresses_are_ipv4_and_zoned_ones_are_errors() {
    let dir = crate::common::tempdir();
    let path = dir.path().join("mapped.yaml");
    std::fs::write(
        &path,
        "assertions:\n  - {name: web by its mapped address, from: '::ffff:10.244.1.11', to: backend/api, port: 8080, \
         expect: allow}\n  - {name: mapped in ip, from: {ip: '::ffff:10.244.1.11'}, to: database/postgres, port: 5432, \
         expect: deny}\n",
    )
    .unwrap();
    let (code, text, err) = run_path(&example_engine(), &path.display().to_string(), AssertFormat::Text);
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.starts_with("PASS web by its mapped address\nPASS mapped in ip\n"), "{text}");
    let zoned = dir.path().join("zoned.yaml");
    std::fs::write(
        &zoned,
        "assertions:\n  - {name: a, from: 'fe80::1%eth0', to: backend/api, port: 8080, expect: allow}\n  - {name: b, \
         from: {ip: 'fe80::1%eth0'}, to: backend/api, port: 8080, expect: allow}\n",
    )
    .unwrap();
    let (code, out, err) = run_path(&example_engine(), &zoned.display().to_string(), AssertFormat::Text);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("assertions[0].from: `fe80::1%eth0`: zoned IPv6 addresses (`%eth0`) are not supported"),
        "{err}"
    );
    assert!(err.contains("assertions[1].from.ip: `fe80::1%eth0`: zoned IPv6 addresses"), "{err}");
}

/// The admin-tiers example's assertions pass, each decided by the tier its name says; flipping the Admin Deny
/// to Accept makes the first one fail.
#[test]
fn admin_tiers_example_assertions_pass() {
    let engine = |yaml: &str| {
        let mut loader = Loader::new();
        loader.add_bytes("cluster.yaml", yaml.as_bytes());
        let loaded = loader.finish();
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        Engine::new(loaded.cluster)
    };
    let cluster = std::fs::read_to_string(root().join("examples/admin-tiers/cluster.yaml")).unwrap();
    let path = root().join("examples/admin-tiers/assertions.yaml").display().to_string();
    let mut out = Vec::new();
    let code = assert_cmd::run(&engine(&cluster), &path, AssertFormat::Text, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(text.ends_with("6 passed, 0 failed\n"), "{text}");
    let flipped = cluster.replacen("name: no-dev\n      action: Deny", "name: no-dev\n      action: Accept", 1);
    assert_ne!(flipped, cluster);
    let mut out = Vec::new();
    let code = assert_cmd::run(&engine(&flipped), &path, AssertFormat::Text, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("FAIL [Admin] dev never reaches prod"), "{text}");
}

/// Antrea's objects: assertions are answered by the same evaluator (a Drop after an Allow of one port, a held
/// Pass that NetworkPolicy then decides), and a failing one names the Antrea rule that denied it.
#[test]
fn assertions_on_antrea_policies() {
    let manifests = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Pod\nmetadata: \
                     {name: a, namespace: x, labels: {app: a}}\nspec: {containers: [{name: c, image: i}]}\nstatus: \
                     {podIP: 10.0.1.1}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b, namespace: x, labels: \
                     {app: b}}\nspec: {containers: [{name: c, image: i}]}\nstatus: {podIP: 10.0.1.2}\n---\n\
                     apiVersion: crd.antrea.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: guard}\nspec:\n  \
                     priority: 1\n  tier: securityops\n  appliedTo: [{podSelector: {matchLabels: {app: b}}}]\n  \
                     ingress:\n  - {action: Allow, ports: [{protocol: TCP, port: 443}]}\n  - {action: Pass, ports: \
                     [{protocol: TCP, port: 8080}]}\n  - {action: Drop, name: rest}\n---\napiVersion: \
                     networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b-8080, namespace: x}\nspec: \
                     {podSelector: {matchLabels: {app: b}}, ingress: [{ports: [{port: 9090}]}]}\n";
    let loaded = netpol_core::load::load_str("antrea.yaml", manifests);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let engine = Engine::new(loaded.cluster);
    let dir = crate::common::tempdir();
    let path = dir.path().join("antrea-assertions.yaml");
    std::fs::write(
        &path,
        "apiVersion: netpol/v1alpha1\nkind: Assertions\nassertions:\n\
         - {name: 443 allowed, from: x/a, to: x/b, port: 443, expect: allow}\n\
         - {name: 8080 passed to NetworkPolicy which isolates b, from: x/a, to: x/b, port: 8080, expect: deny}\n\
         - {name: the rest dropped, from: x/a, to: x/b, port: 22, expect: deny}\n\
         - {name: wrongly expected, from: x/a, to: x/b, port: 22, expect: allow}\n",
    )
    .unwrap();
    let (code, report, errors) = run_path(&engine, &path.display().to_string(), AssertFormat::Text);
    assert_eq!(code, 1, "one assertion fails: {report}{errors}");
    assert!(report.contains("PASS 443 allowed\n"), "{report}");
    assert!(report.contains("PASS 8080 passed to NetworkPolicy which isolates b\n"), "{report}");
    assert!(report.contains("PASS the rest dropped\n"), "{report}");
    assert!(report.contains("FAIL wrongly expected"), "{report}");
    assert!(report.contains("acnp/guard"), "the failure names the deciding object: {report}");
    assert!(report.contains("3 passed, 1 failed"), "{report}");
}
