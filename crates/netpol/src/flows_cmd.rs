//! `netpol flows replay`: observed connections from flow logs, judged by the current policies and by a proposed
//! change, and compared with what the data plane logged. The answers come from `netpol_input::replay`; this
//! module reads the inputs (the change from files or git, the logs) and writes text, JSON or Markdown.

use std::io::Write;

use anyhow::{bail, Context, Result};
use netpol_core::compile::Engine;
use netpol_core::model::Cluster;
use netpol_input::flowlog::{FlowFormat, Folded, LineError};
use netpol_input::overlay::{applicable, applied_reference, Applicable};
use netpol_input::replay::{self, Change, Disagreement, Report, Row, Tally};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayFormat {
    Text,
    Json,
    Markdown,
}

/// `--flow-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    Hubble,
    Calico,
    KubeNetworkPolicies,
    Gadget,
    Netpol,
}

impl FormatArg {
    pub fn format(self) -> FlowFormat {
        match self {
            FormatArg::Hubble => FlowFormat::Hubble,
            FormatArg::Calico => FlowFormat::Calico,
            FormatArg::KubeNetworkPolicies => FlowFormat::KubeNetworkPolicies,
            FormatArg::Gadget => FlowFormat::Gadget,
            FormatArg::Netpol => FlowFormat::Netpol,
        }
    }
}

/// `--dialect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DialectArg {
    Networkpolicy,
    Clusternetworkpolicy,
    Cilium,
    Calico,
}

impl DialectArg {
    pub fn dialect(self) -> netpol_input::generate::Dialect {
        use netpol_input::generate::Dialect;
        match self {
            DialectArg::Networkpolicy => Dialect::NetworkPolicy,
            DialectArg::Clusternetworkpolicy => Dialect::ClusterNetworkPolicy,
            DialectArg::Cilium => Dialect::Cilium,
            DialectArg::Calico => Dialect::Calico,
        }
    }
}

/// The proposed change, as given.
pub enum Proposal<'a> {
    None,
    /// Policy manifests applied over the cluster.
    Against(&'a [String]),
    /// The policies under PATH at OLD, replaced by those at NEW.
    Git {
        old: &'a str,
        new: &'a str,
        path: &'a str,
    },
}

/// What the logs held, folded.
pub struct Logs {
    pub folded: Vec<Folded>,
    pub errors: Vec<LineError>,
    /// Lines read (every file), and lines that carry no flow (skipped by their format's rules).
    pub lines: u64,
    pub skipped: u64,
}

/// Reads and folds the flow logs (`-` is stdin; gzip is read as such); a line that cannot be read is an error of
/// its own, and reading goes on.
pub fn read_logs(paths: &[String], forced: Option<FlowFormat>) -> Result<Logs> {
    let mut folder = netpol_input::flowlog::Folder::new();
    let mut logs = Logs { folded: Vec::new(), errors: Vec::new(), lines: 0, skipped: 0 };
    // A spinner with the records read, on a terminal only (indicatif draws nothing elsewhere).
    let spinner = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} reading {msg}") {
        spinner.set_style(style);
    }
    let mut records = 0u64;
    for path in paths {
        let input = netpol_input::flowlog::open(path)?;
        let mut reader = netpol_input::flowlog::Reader::new(path, input, forced);
        for r in reader.by_ref() {
            records += 1;
            if records.is_multiple_of(65_536) {
                spinner.set_message(format!("{path}: {records} records, {} classes", folder.len()));
            }
            match r {
                Ok(o) => folder.add(path, o),
                Err(e) => logs.errors.push(e),
            }
        }
        logs.lines += reader.lines();
        logs.skipped += reader.skipped();
    }
    spinner.finish_and_clear();
    logs.folded = folder.finish();
    Ok(logs)
}

/// One object of a manifest file, with where it came from.
pub(crate) struct Object {
    pub(crate) value: serde_json::Value,
    pub(crate) file: String,
    pub(crate) document: usize,
}

/// The objects of manifest bytes (a `List`'s items each), or the first document that cannot be read.
fn objects_of(name: &str, bytes: &[u8], out: &mut Vec<Object>) -> Result<()> {
    let text = std::str::from_utf8(bytes).map_err(|_| anyhow::anyhow!("`{name}` is not UTF-8"))?;
    for (i, d) in netpol_core::load::yaml_documents(text).into_iter().enumerate() {
        let v = d.map_err(|e| anyhow::anyhow!("`{name}` document {}: {}", i + 1, e.message))?;
        match v {
            serde_json::Value::Null => {}
            serde_json::Value::Object(ref m) if m.get("kind").and_then(|k| k.as_str()) == Some("List") => {
                if let Some(serde_json::Value::Array(items)) = m.get("items") {
                    for item in items {
                        out.push(Object { value: item.clone(), file: name.to_string(), document: i + 1 });
                    }
                }
            }
            v => out.push(Object { value: v, file: name.to_string(), document: i + 1 }),
        }
    }
    Ok(())
}

/// The objects of `-f`-style paths (files, directories, `-`).
pub(crate) fn objects_of_paths(paths: &[String]) -> Result<Vec<Object>> {
    let m = netpol_input::files::manifest_files(paths)?;
    for w in &m.warnings {
        eprintln!("warning: {w}");
    }
    let mut out = Vec::new();
    for f in &m.files {
        let name = f.display().to_string();
        let bytes = if name == "-" {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).context("reading stdin")?;
            b
        } else {
            std::fs::read(f).with_context(|| format!("cannot read `{name}`"))?
        };
        objects_of(&name, &bytes, &mut out)?;
    }
    Ok(out)
}

/// The cluster with the proposed change, and a line saying what it is; `None` without a change.
pub fn proposed_cluster(current: &Cluster, proposal: &Proposal) -> Result<Option<(Cluster, String)>> {
    let (apply, delete, what): (Vec<Object>, Vec<String>, String) = match proposal {
        Proposal::None => return Ok(None),
        Proposal::Against(paths) => {
            (objects_of_paths(paths)?, Vec::new(), format!("the policies of {} applied", paths.join(", ")))
        }
        Proposal::Git { old, new, path } => {
            let mut before = Vec::new();
            for (name, bytes) in crate::diff_cmd::git_manifests(old, path)? {
                objects_of(&name, &bytes, &mut before)?;
            }
            let mut after = Vec::new();
            for (name, bytes) in crate::diff_cmd::git_manifests(new, path)? {
                objects_of(&name, &bytes, &mut after)?;
            }
            if before.is_empty() && after.is_empty() {
                bail!("no objects under `{path}` at either revision ({old}, {new}): check the path");
            }
            let kept: std::collections::HashSet<String> =
                after.iter().filter_map(|o| applied_reference(&o.value)).map(|(r, _)| r).collect();
            // Policies PATH had at OLD and no longer has at NEW are deleted (when the cluster has them).
            let delete = before
                .iter()
                .filter_map(|o| applied_reference(&o.value))
                .filter(|(r, what)| matches!(what, Applicable::Policy(_)) && !kept.contains(r))
                .map(|(r, _)| r)
                .filter(|r| current.find_policy(r).is_some())
                .collect();
            (after, delete, format!("`{path}` changed from {old} to {new}"))
        }
    };
    let (policies, others): (Vec<Object>, Vec<Object>) =
        apply.into_iter().partition(|o| applicable(&o.value).is_some());
    if !others.is_empty() {
        // Pods, workloads and namespaces come from -f: the change is of policies.
        eprintln!(
            "warning: {} object(s) of the change are not policies (e.g. `{}` in {}) and were left out: the pods and \
             namespaces are -f's",
            others.len(),
            others.first().and_then(|o| o.value.get("kind")).and_then(|k| k.as_str()).unwrap_or("?"),
            others.first().map(|o| o.file.as_str()).unwrap_or("?"),
        );
    }
    let origins: Vec<(String, usize)> = policies.iter().map(|o| (o.file.clone(), o.document)).collect();
    let values = policies.into_iter().map(|o| o.value).collect();
    let cluster = netpol_input::overlay::apply(current, values, &delete).map_err(|e| {
        // `apply[i].field`: name the file and document instead.
        let field = e.field.strip_prefix("apply[").and_then(|rest| {
            let (i, tail) = rest.split_once(']')?;
            let (file, doc) = origins.get(i.parse::<usize>().ok()?)?;
            Some(format!("{file} document {doc}{}", tail.replacen('.', ": ", 1)))
        });
        anyhow::anyhow!("the proposed change: {}: {}", field.unwrap_or(e.field), e.message)
    })?;
    Ok(Some((cluster, what)))
}

/// How many rows a text or Markdown list shows before "and N more".
const SHOW: usize = 20;

fn conns(t: Tally) -> String {
    let c = if t.connections == 1 { "connection" } else { "connections" };
    let k = if t.classes == 1 { "flow" } else { "flows" };
    format!("{} {k} ({} {c})", t.classes, t.connections)
}

fn flow_text(r: &Row) -> String {
    format!("{} -> {} {}", r.src, r.dst, netpol_core::verdict::flow_port_text(r.protocol, r.port))
}

fn verdict_word(v: netpol_core::verdict::Verdict) -> &'static str {
    v.as_str()
}

/// Writes the report as text.
fn write_text(rep: &Report, logs: &Logs, change: Option<&str>, header: &str, out: &mut dyn Write) -> Result<()> {
    let s = &rep.summary;
    writeln!(out, "{header}")?;
    writeln!(
        out,
        "observed: {} from {} line(s){}{}",
        conns(s.observed),
        logs.lines,
        if logs.errors.is_empty() { String::new() } else { format!(", {} unreadable", logs.errors.len()) },
        if logs.skipped == 0 { String::new() } else { format!(", {} without a flow", logs.skipped) },
    )?;
    if let Some(c) = change {
        writeln!(out, "change: {c}")?;
    }
    writeln!(out)?;
    let list = |out: &mut dyn Write, rows: &[&Row], detail: &dyn Fn(&Row) -> Vec<String>| -> Result<()> {
        for r in rows.iter().take(SHOW) {
            writeln!(out, "  {}  {} conn  ({}:{})", flow_text(r), r.connections, r.file, r.line)?;
            for d in detail(r) {
                writeln!(out, "      {d}")?;
            }
        }
        if rows.len() > SHOW {
            writeln!(out, "  ... and {} more (-o json lists every one)", rows.len() - SHOW)?;
        }
        Ok(())
    };
    let now_after = |r: &Row| -> Vec<String> {
        let mut v = Vec::new();
        if let Some(ex) = &r.explain_current {
            v.push(format!("now:   {}", replay::cause(ex)));
        }
        if let Some(ex) = &r.explain_proposed {
            v.push(format!("after: {}", replay::cause(ex)));
        }
        v
    };
    if s.proposed {
        let cut: Vec<&Row> = rep.rows.iter().filter(|r| r.change == Some(Change::NewlyDenied)).collect();
        if cut.is_empty() {
            writeln!(
                out,
                "breaks observed traffic: nothing (no observed flow allowed now is denied after the change)"
            )?;
        } else {
            writeln!(
                out,
                "BREAKS OBSERVED TRAFFIC: {} allowed now would be denied after the change",
                conns(s.newly_denied)
            )?;
            list(out, &cut, &now_after)?;
        }
        let opened: Vec<&Row> = rep.rows.iter().filter(|r| r.change == Some(Change::NewlyAllowed)).collect();
        writeln!(out, "newly allowed: {}", conns(s.newly_allowed))?;
        list(out, &opened, &now_after)?;
        writeln!(out)?;
    }
    let model = |r: &Row| -> Vec<String> {
        r.explain_current
            .iter()
            .map(|ex| format!("model: {}", replay::cause(ex)))
            .chain(
                (!r.observed_policies.is_empty())
                    .then(|| format!("logged policies: {}", r.observed_policies.join(", "))),
            )
            .collect()
    };
    let disagree = |d: Disagreement| -> Vec<&Row> { rep.rows.iter().filter(|r| r.disagreement == Some(d)).collect() };
    let n = s.observed_allowed_model_denies.classes + s.observed_denied_model_allows.classes;
    if n == 0 {
        writeln!(out, "the log and the current model agree on every judged flow with a logged verdict")?;
    } else {
        writeln!(out, "THE LOG AND THE CURRENT MODEL DISAGREE:")?;
        if s.observed_allowed_model_denies.classes > 0 {
            writeln!(
                out,
                "observed allowed, the model denies: {} (a CNI that does not enforce, a policy the manifests have \
                 and the cluster lacks, a stale log)",
                conns(s.observed_allowed_model_denies)
            )?;
            list(out, &disagree(Disagreement::ObservedAllowedModelDenies), &model)?;
        }
        if s.observed_denied_model_allows.classes > 0 {
            writeln!(
                out,
                "observed denied, the model allows: {} (a policy the cluster has and the manifests lack, a CNI that \
                 enforces more)",
                conns(s.observed_denied_model_allows)
            )?;
            list(out, &disagree(Disagreement::ObservedDeniedModelAllows), &model)?;
        }
    }
    if s.mixed.classes > 0 {
        let mixed: Vec<&Row> = rep.rows.iter().filter(|r| r.observed == replay::Observation::Mixed).collect();
        writeln!(out, "logged both allowed and denied: {} (the policies changed during the log?)", conns(s.mixed))?;
        list(out, &mixed, &model)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "judged: {} (ends resolved: {} by name, {} by address, {} by labels)",
        conns(s.judged),
        s.resolved_by_name,
        s.resolved_by_address,
        s.resolved_by_labels
    )?;
    if s.unresolved.classes > 0 {
        writeln!(out, "unresolved (not judged, never guessed): {}", conns(s.unresolved))?;
        for u in rep.unresolved.iter().take(SHOW) {
            writeln!(out, "  {}:{}: {}", u.file, u.line, u.reason)?;
        }
        if rep.unresolved.len() > SHOW {
            writeln!(out, "  ... and {} more (-o json lists every one)", rep.unresolved.len() - SHOW)?;
        }
    }
    for e in logs.errors.iter().take(SHOW) {
        writeln!(out, "unreadable: {}:{}: {}", e.file, e.line, e.message)?;
    }
    if logs.errors.len() > SHOW {
        writeln!(out, "  ... and {} more unreadable line(s) (-o json lists every one)", logs.errors.len() - SHOW)?;
    }
    Ok(())
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Writes the report as Markdown: a pull-request comment.
fn write_markdown(rep: &Report, logs: &Logs, change: Option<&str>, out: &mut dyn Write) -> Result<()> {
    let s = &rep.summary;
    writeln!(out, "### netpol flows replay\n")?;
    if let Some(c) = change {
        writeln!(out, "Change: {}\n", cell(c))?;
    }
    if s.proposed {
        if s.newly_denied.classes > 0 {
            writeln!(
                out,
                "> [!CAUTION]\n> This change **breaks observed traffic**: {} allowed now would be denied.\n",
                conns(s.newly_denied)
            )?;
        } else {
            writeln!(out, "No observed flow that is allowed now would be denied by this change.\n")?;
        }
    }
    writeln!(out, "| | flows | connections |\n|---|---:|---:|")?;
    let mut line = |name: &str, t: Tally| writeln!(out, "| {name} | {} | {} |", t.classes, t.connections);
    line("observed", s.observed)?;
    if s.proposed {
        line("**newly denied**", s.newly_denied)?;
        line("newly allowed", s.newly_allowed)?;
    }
    line("observed allowed, model denies", s.observed_allowed_model_denies)?;
    line("observed denied, model allows", s.observed_denied_model_allows)?;
    line("logged both allowed and denied", s.mixed)?;
    line("unresolved", s.unresolved)?;
    writeln!(out, "\n{} log line(s), {} unreadable.\n", logs.lines, logs.errors.len())?;
    let table = |out: &mut dyn Write, title: &str, rows: Vec<&Row>| -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        writeln!(out, "<details><summary>{title} ({})</summary>\n", rows.len())?;
        writeln!(out, "| flow | connections | observed | now | after | why |\n|---|---:|---|---|---|---|")?;
        for r in rows.iter().take(SHOW) {
            let why = r.explain_proposed.as_ref().or(r.explain_current.as_ref()).map(|ex| replay::cause(ex));
            writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} |",
                flow_text(r),
                r.connections,
                serde_json::to_value(r.observed).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                verdict_word(r.current),
                r.proposed.map(verdict_word).unwrap_or("-"),
                cell(&why.unwrap_or_default())
            )?;
        }
        if rows.len() > SHOW {
            writeln!(out, "\n... and {} more (`-o json` lists every one).", rows.len() - SHOW)?;
        }
        writeln!(out, "\n</details>\n")?;
        Ok(())
    };
    table(out, "Newly denied", rep.rows.iter().filter(|r| r.change == Some(Change::NewlyDenied)).collect())?;
    table(out, "Newly allowed", rep.rows.iter().filter(|r| r.change == Some(Change::NewlyAllowed)).collect())?;
    table(out, "The log and the model disagree", rep.rows.iter().filter(|r| r.disagreement.is_some()).collect())?;
    Ok(())
}

/// `netpol flows replay`. Returns the exit code: 0, or 1 with `fail_on_breakage` when observed traffic would be cut.
#[allow(clippy::too_many_arguments)]
pub fn run(
    current: &Engine,
    proposal: &Proposal,
    logs: &[String],
    forced: Option<FlowFormat>,
    format: ReplayFormat,
    explain_all: bool,
    fail_on_breakage: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    let proposed = proposed_cluster(current.cluster(), proposal)?;
    let proposed_engine = proposed.as_ref().map(|(c, _)| Engine::with_cni(c.clone(), current.cni_choice()));
    let logs = read_logs(logs, forced)?;
    let opts = replay::Options { explain_all, ..Default::default() };
    let rep = replay::replay(current, proposed_engine.as_ref(), &logs.folded, opts);
    let change = proposed.as_ref().map(|(_, what)| what.as_str());
    match format {
        ReplayFormat::Json => {
            let mut v = serde_json::to_value(&rep)?;
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("cni".into(), netpol_input::cni_json(current));
                m.insert("change".into(), serde_json::json!(change));
                m.insert("lines".into(), serde_json::json!(logs.lines));
                m.insert("skipped_lines".into(), serde_json::json!(logs.skipped));
                m.insert("errors".into(), serde_json::to_value(&logs.errors)?);
            }
            serde_json::to_writer_pretty(&mut *out, &v)?;
            writeln!(out)?;
        }
        ReplayFormat::Text => write_text(&rep, &logs, change, &netpol_input::cni_header(current), out)?,
        ReplayFormat::Markdown => write_markdown(&rep, &logs, change, out)?,
    }
    Ok(u8::from(fail_on_breakage && rep.breaks_traffic()))
}

// ---------------------------------------------------------------------------------------------------------------
// netpol generate

/// Where the generated policies go.
pub enum Destination<'a> {
    Stdout,
    /// One file per policy.
    Dir(&'a std::path::Path),
}

fn check_line(out: &mut dyn Write, ok: bool, n: usize, text: &str) -> std::io::Result<()> {
    writeln!(out, "  {}  {n}. {text}", if ok { "ok  " } else { "FAIL" })
}

/// Writes the report as text.
pub fn write_generate_report(g: &netpol_input::generate::Generated, out: &mut dyn Write) -> Result<()> {
    use netpol_input::generate::render::dialect_name;
    let r = &g.report;
    let v = &r.verification;
    writeln!(
        out,
        "netpol generate: {} {} object(s) ({} rules, {} peers, {} selector labels) from {} observed connection(s) ({} \
         logged denied)",
        r.sizes.policies,
        dialect_name(r.dialect),
        r.sizes.rules,
        r.sizes.peers,
        r.sizes.selector_labels,
        r.observed_needed,
        r.observed_denied
    )?;
    check_line(out, v.coverage.ok, 1, &format!("coverage: {} observed connection(s) checked", v.coverage.checked))?;
    check_line(
        out,
        v.observed_denials.ok,
        2,
        &format!("observed denials: {} denied connection(s) checked", v.observed_denials.checked),
    )?;
    check_line(
        out,
        v.collateral.ok,
        3,
        &format!(
            "no collateral change: {} pod pairs compared, {} changed, each with a source or destination the generated \
             policies select",
            v.collateral.checked, v.delta.changed_pairs
        ),
    )?;
    let o = v.over_allow;
    writeln!(
        out,
        "  info  4. over-allow: {} tuple(s) between other replicas of observed workloads, {} genuinely new, {} DNS \
         (and {} observed)",
        o.replicas, o.new, o.dns, o.observed
    )?;
    check_line(
        out,
        v.churn.ok,
        5,
        &format!("stable under churn: {} verdict(s) re-checked with every pod replaced (and doubled)", v.churn.checked),
    )?;
    match &r.dns {
        Some(d) => writeln!(
            out,
            "  ok    6. DNS: {} pod(s) of namespace {} ({}), selected by {}",
            d.pods,
            d.namespace,
            d.found_by,
            d.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
        )?,
        None => writeln!(out, "  --    6. DNS: no egress policy, or no DNS pods (see the notes)")?,
    }
    writeln!(out, "  ok    7. deterministic: the same input gives the same bytes")?;
    for (name, c) in [
        ("coverage", &v.coverage),
        ("observed denials", &v.observed_denials),
        ("collateral", &v.collateral),
        ("churn", &v.churn),
    ] {
        for f in c.failures.iter().take(SHOW) {
            let at = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!(" ({file}:{line})"),
                _ => String::new(),
            };
            writeln!(out, "  {name}: {}{at}: {}", f.flow, f.reason)?;
        }
        if c.failures.len() > SHOW {
            writeln!(out, "  {name}: ... and {} more (-o json lists every one)", c.failures.len() - SHOW)?;
        }
    }
    writeln!(
        out,
        "against the policies in force: {} pod pair(s) changed ({} group(s) newly allowed, {} newly denied, {} with \
         addresses outside)",
        v.delta.changed_pairs, v.delta.groups_newly_allowed, v.delta.groups_newly_denied, v.delta.outside_groups
    )?;
    for p in &r.policies {
        let sel = p.selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        writeln!(
            out,
            "  {}{}: {} of {} ({}): {} rule(s), {} peer(s), {} observed connection(s)",
            p.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
            p.name,
            p.direction.to_string().to_lowercase(),
            p.subject,
            if sel.is_empty() { "every pod".to_string() } else { sel },
            p.rules,
            p.peers,
            p.connections
        )?;
    }
    for n in r.not_expressible.iter().chain(&r.notes) {
        writeln!(out, "note: {n}")?;
    }
    if !r.unresolved.is_empty() {
        writeln!(out, "unresolved (no rule written, never guessed): {} flow(s)", r.unresolved.len())?;
        for u in r.unresolved.iter().take(SHOW) {
            writeln!(out, "  {}:{}: {}", u.file, u.line, u.reason)?;
        }
    }
    writeln!(out, "{}", if r.ok { "result: every guarantee holds" } else { "result: FAILED (see above)" })?;
    Ok(())
}

/// What `--prove` answers: probes run in the lab, and how many the kernel and the engine disagree on.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Proof {
    pub probes: usize,
    pub agree: usize,
    pub disagree: usize,
    pub untestable: usize,
    pub errors: usize,
    /// The disagreeing probes (`connectivity-test` lines).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disagreements: Vec<String>,
}

/// Runs the probes (JSON Lines of the `query` contract) against a cluster in the lab: `lab_cmd::connectivity_test`
/// with its output read back.
pub type Prover<'a> = &'a dyn Fn(&Cluster, &str) -> Result<Proof>;

/// The observed connections as `query` lines: every one the generated set was checked on (allowed, seen, denied).
pub fn probe_lines(g: &netpol_input::generate::Generated, e: &Engine) -> String {
    let mut out = String::new();
    for n in g.plan.needed.iter().chain(&g.plan.denied) {
        let mut v =
            serde_json::json!({"src": e.endpoint_name(&n.src), "dst": e.endpoint_name(&n.dst), "protocol": n.protocol});
        if n.protocol.has_ports() {
            v["port"] = serde_json::json!(n.port);
        } else {
            v["icmp"] = serde_json::json!({"type": n.port >> 8, "code": n.port & 0xff});
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// Reads `connectivity-test`'s answer lines into a [`Proof`].
pub fn proof_of(lines: &str) -> Proof {
    let mut p = Proof::default();
    for l in lines.lines().filter(|l| !l.trim().is_empty()) {
        p.probes += 1;
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        match (v["verdict"].as_str(), v["observed"].as_str()) {
            (_, Some("untestable")) => p.untestable += 1,
            (Some(a), Some(b)) if a == b => p.agree += 1,
            (Some(_), Some(_)) => {
                p.disagree += 1;
                p.disagreements.push(l.to_string());
            }
            _ => p.errors += 1,
        }
    }
    p
}

/// `netpol generate`. Returns the exit code: 0, or 1 when a guarantee does not hold (or, with a prover, when the
/// kernel disagrees with the engine on an observed connection).
#[allow(clippy::too_many_arguments)]
pub fn generate(
    current: &Engine,
    logs: &[String],
    forced: Option<FlowFormat>,
    opts: &netpol_input::generate::Options,
    dest: Destination,
    report_json: bool,
    prove: Option<Prover>,
    report: &mut dyn Write,
    out: &mut dyn Write,
) -> Result<u8> {
    if let Some(ns) = &opts.namespace {
        if current.cluster().namespace_id(ns).is_none() {
            bail!("unknown namespace `{ns}`");
        }
    }
    let logs = read_logs(logs, forced)?;
    let g = netpol_input::generate::generate(current, &logs.folded, opts).map_err(anyhow::Error::msg)?;
    match dest {
        Destination::Stdout => out.write_all(netpol_input::generate::render::stream(&g.rendered).as_bytes())?,
        Destination::Dir(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
            for r in &g.rendered {
                let file = match &r.namespace {
                    Some(ns) => format!("{ns}.{}.yaml", r.name),
                    None => format!("{}.yaml", r.name),
                };
                let path = dir.join(file);
                std::fs::write(&path, &r.yaml).with_context(|| format!("cannot write `{}`", path.display()))?;
            }
        }
    }
    for e in logs.errors.iter().take(SHOW) {
        eprintln!("warning: unreadable: {}:{}: {}", e.file, e.line, e.message);
    }
    let proof = match prove {
        Some(prove) => {
            let after = netpol_input::generate::verify::apply_rendered(current.cluster(), &g.rendered)
                .map_err(anyhow::Error::msg)?;
            Some(prove(&after, &probe_lines(&g, current))?)
        }
        None => None,
    };
    let proved = proof.as_ref().is_none_or(|p| p.disagree == 0 && p.errors == 0);
    if report_json {
        let mut v = serde_json::to_value(&g.report)?;
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("cni".into(), netpol_input::cni_json(current));
            m.insert("lines".into(), serde_json::json!(logs.lines));
            m.insert("errors".into(), serde_json::to_value(&logs.errors)?);
            if let Some(p) = &proof {
                m.insert("prove".into(), serde_json::to_value(p)?);
            }
        }
        serde_json::to_writer_pretty(&mut *report, &v)?;
        writeln!(report)?;
    } else {
        write_generate_report(&g, report)?;
        if let Some(p) = &proof {
            writeln!(
                report,
                "{} --prove: {} observed connection(s) probed in the lab with the generated policies enforced: {} agree, {} \
                 disagree, {} untestable, {} errors",
                if proved { "ok  " } else { "FAIL" },
                p.probes,
                p.agree,
                p.disagree,
                p.untestable,
                p.errors
            )?;
            for d in p.disagreements.iter().take(SHOW) {
                writeln!(report, "  disagree: {d}")?;
            }
        }
    }
    Ok(u8::from(!g.report.ok || !proved))
}
