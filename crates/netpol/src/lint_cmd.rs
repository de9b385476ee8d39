//! `netpol lint`: runs the core's lint catalogue and renders findings as text (grouped by file and object,
//! coloured on a terminal), JSON, or SARIF 2.1.0 with the file and line of each offending field.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use netpol_core::compile::Engine;
use netpol_core::lint::{self, Config, Finding, Severity, RULES};
use serde::Deserialize;
use serde_json::json;

use netpol_core::suggest::distance;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LintFormat {
    Text,
    Json,
    Sarif,
}

/// `--fail-on` threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Info,
    Warning,
    Error,
    Never,
}

/// `.netpol.yaml`: settings for netpol commands (only `lint:` for now).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub lint: Config,
}

/// Reads the config file: the given path, or `.netpol.yaml` in the current directory if it exists. Rule codes in
/// it are checked (see [`check_rules`]); a UTF-8 byte-order mark is ignored.
pub fn load_config(path: Option<&str>) -> Result<Config> {
    let p = match path {
        Some(p) => p.to_string(),
        None if std::path::Path::new(".netpol.yaml").exists() => ".netpol.yaml".to_string(),
        None => return Ok(Config::default()),
    };
    let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read `{p}`"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut cf: ConfigFile = serde_yaml_ng::from_str(text)
        .map_err(|e| anyhow::anyhow!("{}", in_user_terms(&e.to_string())))
        .with_context(|| format!("invalid config file `{p}`"))?;
    check_rules(&mut cf.lint.disable, "lint.disable").with_context(|| format!("invalid config file `{p}`"))?;
    let mut severity = BTreeMap::new();
    for (k, v) in std::mem::take(&mut cf.lint.severity) {
        let code = rule_code(&k, "lint.severity").with_context(|| format!("invalid config file `{p}`"))?;
        severity.insert(code.to_string(), v);
    }
    cf.lint.severity = severity;
    Ok(cf.lint)
}

/// serde's messages name the Rust types of the settings: say what is expected instead.
fn in_user_terms(msg: &str) -> String {
    msg.replace("expected struct ConfigFile", "expected a mapping with a `lint:` section")
        .replace("expected struct Config", "expected a mapping with `disable`, `severity` or `dns`")
        .replace("expected struct DnsConfig", "expected a mapping with `namespace` and `pod_labels`")
}

/// The code of a rule given by code (any case) or name; an unknown one is an error naming it, the closest known
/// rule and every code. `what` says where it was given (`--disable`, `lint.disable`).
pub fn rule_code(given: &str, what: &str) -> Result<&'static str> {
    if let Some(r) = RULES.iter().find(|r| r.code.eq_ignore_ascii_case(given) || r.name == given) {
        return Ok(r.code);
    }
    let g = given.to_ascii_uppercase();
    let closest = RULES
        .iter()
        .map(|r| (distance(&g, r.code).min(distance(given, r.name)), r))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, _)| *d <= 2)
        .map(|(_, r)| format!("did you mean `{}` ({})? ", r.code, r.name))
        .unwrap_or_default();
    let codes: Vec<&str> = RULES.iter().map(|r| r.code).collect();
    anyhow::bail!(
        "unknown lint rule `{given}` in {what}: {closest}known codes: {} (or their names, see `netpol lint --list`)",
        codes.join(", ")
    )
}

/// Checks rule codes or names (`--disable`, `lint.disable`) and writes them as codes.
pub fn check_rules(rules: &mut [String], what: &str) -> Result<()> {
    for r in rules.iter_mut() {
        *r = rule_code(r, what)?.to_string();
    }
    Ok(())
}

/// The line of each finding, from the manifest files (read again; stdin has no lines).
fn lines_of(findings: &[Finding]) -> Vec<Option<usize>> {
    // Read and split each file once, however many findings point into it.
    let mut texts: BTreeMap<&str, Option<String>> = BTreeMap::new();
    for f in findings {
        if let Some(o) = &f.origin {
            texts.entry(&*o.file).or_insert_with(|| std::fs::read_to_string(&*o.file).ok());
        }
    }
    let sources: BTreeMap<&str, netpol_input::locate::Source> =
        texts.iter().filter_map(|(k, t)| t.as_deref().map(|t| (*k, netpol_input::locate::Source::new(t)))).collect();
    findings
        .iter()
        .map(|f| {
            let o = f.origin.as_ref()?;
            sources.get(&*o.file)?.find_line(o.document, o.item, f.field.as_deref())
        })
        .collect()
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// Percent-encodes one path segment for a URI: unreserved characters and the sub-delimiters a segment may hold
/// stay, everything else (spaces, `:` , `%`, `#`, `?`, `\\`, non-ASCII bytes of UTF-8) becomes `%XX`.
fn encode_segment(seg: &str, out: &mut String) {
    for b in seg.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(b)),
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b'@' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// `.` and `..` of a path removed without touching the file system.
fn normalize(p: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn encode_path<'a>(parts: impl Iterator<Item = std::path::Component<'a>>) -> String {
    let mut out = String::new();
    for (i, c) in parts.filter(|c| matches!(c, std::path::Component::Normal(_))).enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode_segment(&c.as_os_str().to_string_lossy(), &mut out);
    }
    out
}

/// SARIF `artifactLocation.uri` of a finding's file: a relative URI reference (forward slashes, percent-encoded)
/// when the file is under `cwd`, which is how GitHub code scanning places results in the repository; a `file://`
/// URI otherwise; `cluster:...` names of live-cluster objects as they are; none for stdin.
pub fn sarif_uri(file: &str, cwd: &std::path::Path) -> Option<String> {
    if file == "-" {
        return None;
    }
    if file.starts_with("cluster:") {
        return Some(file.to_string());
    }
    let p = std::path::Path::new(file);
    let cwd = normalize(cwd);
    let abs = normalize(&cwd.join(p));
    let inside = |abs: &std::path::Path| abs.strip_prefix(&cwd).ok().map(|rel| encode_path(rel.components()));
    if let Some(rel) = inside(&abs).filter(|r| !r.is_empty()) {
        return Some(rel);
    }
    // A path through a symlink may still lead inside.
    if let Some(rel) = std::fs::canonicalize(&abs).ok().and_then(|c| inside(&c)).filter(|r| !r.is_empty()) {
        return Some(rel);
    }
    Some(format!("file:///{}", encode_path(abs.components())))
}

/// The SARIF 2.1.0 log for findings; file locations relative to the current directory (see [`sarif_uri`]).
pub fn sarif(findings: &[Finding], lines: &[Option<usize>]) -> serde_json::Value {
    let cwd = std::env::current_dir().unwrap_or_default();
    sarif_in(findings, lines, &cwd)
}

/// [`sarif`] with URIs relative to `cwd`.
pub fn sarif_in(findings: &[Finding], lines: &[Option<usize>], cwd: &std::path::Path) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.code,
                "name": r.name,
                "shortDescription": {"text": r.name.replace('-', " ")},
                "fullDescription": {"text": r.explanation},
                "help": {"text": r.explanation},
                "defaultConfiguration": {"level": level(r.severity)},
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = findings
        .iter()
        .zip(lines)
        .map(|(f, line)| {
            let mut loc = json!({
                "logicalLocations": [{
                    "fullyQualifiedName": match &f.field { Some(p) => format!("{} {p}", f.object), None => f.object.clone() },
                    "kind": "object",
                }]
            });
            if let Some(uri) = f.origin.as_ref().and_then(|o| sarif_uri(&o.file, cwd)) {
                let mut phys = json!({"artifactLocation": {"uri": uri}});
                if let Some(l) = line {
                    phys["region"] = json!({"startLine": l});
                }
                loc["physicalLocation"] = phys;
            }
            json!({
                "ruleId": f.code,
                "ruleIndex": RULES.iter().position(|r| r.code == f.code).unwrap_or(0),
                "level": level(f.severity),
                "message": {"text": format!("{} ({}). Fix: {}", f.message, f.object, f.help)},
                "locations": [loc],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "netpol",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/netpol/netpol",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

fn text(findings: &[Finding], lines: &[Option<usize>], color: bool, out: &mut dyn Write) -> Result<()> {
    let paint = |s: Severity, t: &str| -> String {
        if !color {
            return t.to_string();
        }
        let code = match s {
            Severity::Error => "1;31",
            Severity::Warning => "33",
            Severity::Info => "36",
        };
        format!("\x1b[{code}m{t}\x1b[0m")
    };
    let mut last_file: Option<String> = None;
    let mut last_obj: Option<String> = None;
    for (f, line) in findings.iter().zip(lines) {
        let file = f.origin.as_ref().map_or("<cluster>".to_string(), |o| o.file.to_string());
        if last_file.as_ref() != Some(&file) {
            writeln!(out, "{file}")?;
            last_file = Some(file);
            last_obj = None;
        }
        if last_obj.as_ref() != Some(&f.object) {
            writeln!(out, "  {}", f.object)?;
            last_obj = Some(f.object.clone());
        }
        let at = match (line, &f.field) {
            (Some(l), Some(p)) => format!(" (line {l}, {p})"),
            (Some(l), None) => format!(" (line {l})"),
            (None, Some(p)) => format!(" ({p})"),
            (None, None) => String::new(),
        };
        writeln!(
            out,
            "    {} {}{at}: {}",
            paint(f.severity, &format!("{}[{}]", f.severity, f.code)),
            f.rule,
            f.message
        )?;
        writeln!(out, "      help: {}", f.help)?;
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    writeln!(
        out,
        "{} error(s), {} warning(s), {} info",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    )?;
    Ok(())
}

/// Runs lint; returns the exit code (1 when a finding is at or above `fail_on`).
pub fn run(engine: &Engine, config: &Config, format: LintFormat, fail_on: FailOn, out: &mut dyn Write) -> Result<u8> {
    let findings = lint::lint(engine, config);
    let lines = lines_of(&findings);
    match format {
        LintFormat::Json => {
            let v: Vec<serde_json::Value> = findings
                .iter()
                .zip(&lines)
                .map(|(f, l)| {
                    let mut v = serde_json::to_value(f).unwrap_or_default();
                    v["line"] = json!(l);
                    v
                })
                .collect();
            // The findings with the CNI the rules that judge traffic followed.
            let doc = json!({"cni": netpol_input::cni_json(engine), "findings": v});
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        LintFormat::Sarif => {
            let mut doc = sarif(&findings, &lines);
            // The CNI as a property of the run (SARIF's property bag).
            doc["runs"][0]["properties"] = json!({"cni": netpol_input::cni_json(engine)});
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?
        }
        LintFormat::Text => {
            use std::io::IsTerminal;
            let color = crate::style::color_enabled(std::io::stdout().is_terminal());
            writeln!(out, "{}", netpol_input::cni_header(engine))?;
            text(&findings, &lines, color, out)?;
        }
    }
    let threshold = match fail_on {
        FailOn::Info => Some(Severity::Info),
        FailOn::Warning => Some(Severity::Warning),
        FailOn::Error => Some(Severity::Error),
        FailOn::Never => None,
    };
    Ok(u8::from(threshold.is_some_and(|t| findings.iter().any(|f| f.severity >= t))))
}

/// `netpol lint --list`: the catalogue.
pub fn list(out: &mut dyn Write) -> Result<()> {
    for r in RULES {
        writeln!(out, "{}  {:<26} {:<8} {}", r.code, r.name, r.severity.as_str(), r.explanation)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn sarif_uris_are_relative_references_or_file_uris() {
        let cwd = Path::new("/repo/sub");
        for (file, want) in [
            ("k8s/a.yaml", Some("k8s/a.yaml")),
            ("./k8s/./a.yaml", Some("k8s/a.yaml")),
            ("/repo/sub/k8s/a.yaml", Some("k8s/a.yaml")),
            ("k8s/../k8s/my app.yaml", Some("k8s/my%20app.yaml")),
            ("d/ünï:c#1?.yaml", Some("d/%C3%BCn%C3%AF%3Ac%231%3F.yaml")),
            ("back\\slash 100%.yaml", Some("back%5Cslash%20100%25.yaml")),
            ("../other/a.yaml", Some("file:///repo/other/a.yaml")),
            ("/etc/k8s/a b.yaml", Some("file:///etc/k8s/a%20b.yaml")),
            ("cluster:networkpolicies/prod/api", Some("cluster:networkpolicies/prod/api")),
            ("-", None),
        ] {
            assert_eq!(sarif_uri(file, cwd).as_deref(), want, "{file}");
        }
    }
}
