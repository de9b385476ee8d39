//! `netpol lint`: runs the core's lint catalogue and renders findings as text (grouped by file and object,
//! coloured on a terminal), JSON, or SARIF 2.1.0 with the file and line of each offending field.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use netpol_core::compile::Engine;
use netpol_core::lint::{self, Config, Finding, Severity, RULES};
use serde::Deserialize;
use serde_json::json;

use crate::suggest::distance;

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
            texts.entry(o.file.as_str()).or_insert_with(|| std::fs::read_to_string(&o.file).ok());
        }
    }
    let sources: BTreeMap<&str, crate::locate::Source> =
        texts.iter().filter_map(|(k, t)| t.as_deref().map(|t| (*k, crate::locate::Source::new(t)))).collect();
    findings
        .iter()
        .map(|f| {
            let o = f.origin.as_ref()?;
            sources.get(o.file.as_str())?.find_line(o.document, o.item, f.field.as_deref())
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

/// The SARIF 2.1.0 log for findings.
pub fn sarif(findings: &[Finding], lines: &[Option<usize>]) -> serde_json::Value {
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
            if let Some(o) = &f.origin {
                let mut phys = json!({"artifactLocation": {"uri": o.file.trim_start_matches("./")}});
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
        let file = f.origin.as_ref().map_or("<cluster>".to_string(), |o| o.file.clone());
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
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        LintFormat::Sarif => writeln!(out, "{}", serde_json::to_string_pretty(&sarif(&findings, &lines))?)?,
        LintFormat::Text => {
            use std::io::IsTerminal;
            let color = crate::style::color_enabled(std::io::stdout().is_terminal());
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
