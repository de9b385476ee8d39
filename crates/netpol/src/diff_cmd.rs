//! `netpol diff`: what a change to the policies opens or closes. Loads two manifest sets (paths, or one path at
//! two git revisions), or one set and its staged view (`--staged`: the cluster as if its Calico staged policies
//! were enforced), computes [`netpol_core::diff::diff`] and writes it as text, JSON or a Markdown PR comment.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use netpol_core::compile::Engine;
use netpol_core::diff::{diff, Change, DeltaGroup, Diff, DiffOptions, OutsideGroup};
use netpol_core::load::{Loaded, Loader};
use netpol_core::model::{Direction, PodId};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
    Markdown,
}

/// Loads OLD and NEW manifest sets (paths as with -f), or two git revisions of a directory, computes the diff and
/// writes it. Returns the exit code: 0, or 1 when `fail_on_new_allows` and something is newly allowed.
pub fn run(
    old: &[String],
    new: &[String],
    git: Option<(&str, &str, &str)>,
    ns: Option<&str>,
    format: DiffFormat,
    fail_on_new_allows: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    let (old_e, new_e) = match git {
        Some((old_rev, new_rev, path)) => {
            if !old.is_empty() || !new.is_empty() {
                bail!("give either the OLD and NEW manifests or a git revision pair, not both");
            }
            let (old_l, old_n) = load_git(old_rev, path)?;
            let (new_l, new_n) = load_git(new_rev, path)?;
            if old_n == 0 && new_n == 0 {
                // Most likely a typo: two empty sides would compare equal, and `--fail-on-new-allows` would pass.
                bail!(
                    "no manifests (`*.yaml`, `*.yml`, `*.json`) under `{path}` at either revision ({old_rev}, \
                     {new_rev}): check the path"
                );
            }
            for (n, rev) in [(old_n, old_rev), (new_n, new_rev)] {
                if n == 0 {
                    eprintln!("warning: no manifests under `{path}` at revision {rev}: that side is empty");
                }
            }
            (engine(old_l, "old"), engine(new_l, "new"))
        }
        None => {
            if old.iter().any(|f| f == "-") && new.iter().any(|f| f == "-") {
                bail!("stdin (`-`) can be read only once: give a file or directory for OLD or NEW");
            }
            (engine(load_files(old, "old")?, "old"), engine(load_files(new, "new")?, "new"))
        }
    };
    if let Some(n) = ns {
        if old_e.cluster().namespace_id(n).is_none() && new_e.cluster().namespace_id(n).is_none() {
            bail!("unknown namespace `{n}` (in neither the old nor the new manifests)");
        }
    }
    report(&old_e, &new_e, ns, format, fail_on_new_allows, out)
}

/// `netpol diff --staged -f FILES`: the enforced cluster of FILES against its staged view (the same cluster as if
/// its staged policies were enforced: `Cluster::with_staged`), compared and written exactly as two manifest sets
/// are. Pods are the same on both sides. Returns the exit code as [`run`] does.
pub fn run_staged(
    files: &[String],
    ns: Option<&str>,
    format: DiffFormat,
    fail_on_new_allows: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    if files.is_empty() {
        bail!("no manifests: give them with -f (files, directories or -)");
    }
    let (loaded, invalid) = netpol_input::files::load(files).context("loading the manifests")?;
    if invalid > 0 {
        eprintln!("warning: {invalid} invalid object(s) in the manifests were skipped");
    }
    run_staged_on(loaded.cluster, "the manifests", ns, format, fail_on_new_allows, out)
}

/// [`run_staged`] on a loaded cluster (`what` names it in messages: the manifests, the cluster).
pub fn run_staged_on(
    cluster: netpol_core::model::Cluster,
    what: &str,
    ns: Option<&str>,
    format: DiffFormat,
    fail_on_new_allows: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    let staged = cluster.with_staged();
    if cluster.staged.is_empty() {
        eprintln!(
            "warning: {what} have no staged policies (StagedNetworkPolicy, StagedGlobalNetworkPolicy, \
             StagedKubernetesNetworkPolicy): the staged view is the enforced cluster"
        );
    } else {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &cluster.staged {
            *counts.entry(s.action.as_str()).or_default() += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(a, n)| format!("{n} {a}")).collect();
        eprintln!(
            "netpol: the enforced policies against the staged view: {} staged polic{} ({})",
            cluster.staged.len(),
            if cluster.staged.len() == 1 { "y" } else { "ies" },
            counts.join(", ")
        );
    }
    let (old_e, new_e) = (engine_of(cluster, "enforced"), engine_of(staged, "staged"));
    if let Some(n) = ns {
        if old_e.cluster().namespace_id(n).is_none() {
            bail!("unknown namespace `{n}` (not in {what})");
        }
    }
    report(&old_e, &new_e, ns, format, fail_on_new_allows, out)
}

/// Computes the diff of two engines and writes it; the exit code: 0, or 1 when `fail_on_new_allows` and something
/// is newly allowed.
fn report(
    old_e: &Engine,
    new_e: &Engine,
    ns: Option<&str>,
    format: DiffFormat,
    fail_on_new_allows: bool,
    out: &mut dyn Write,
) -> Result<u8> {
    let t = std::time::Instant::now();
    let d = diff(old_e, new_e, &DiffOptions { namespace: ns.map(str::to_string) });
    tracing::info!(elapsed = ?t.elapsed(), groups = d.groups.len(), changed_pairs = d.changed_pairs, "diff computed");
    let ctx = Ctx { old: old_e, new: new_e, scope: Scope::new(new_e, ns, &d) };
    // The CNI the answers follow: the new side's, and the old side's too when auto found another there.
    let old_differs = (old_e.cni(), old_e.cni_source()) != (new_e.cni(), new_e.cni_source());
    match format {
        DiffFormat::Json => {
            let mut v = serde_json::to_value(&d)?;
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("cni".into(), netpol_input::cni_json(new_e));
                if old_differs {
                    m.insert("cni_old".into(), netpol_input::cni_json(old_e));
                }
            }
            serde_json::to_writer_pretty(&mut *out, &v)?;
            writeln!(out)?;
        }
        DiffFormat::Text => {
            writeln!(out, "{}", netpol_input::cni_header(new_e))?;
            if old_differs {
                writeln!(out, "{} on the old side", netpol_input::cni_header(old_e))?;
            }
            write_text(&d, &ctx, out)?
        }
        DiffFormat::Markdown => write_markdown(&d, &ctx, out)?,
    }
    Ok(u8::from(fail_on_new_allows && d.opens_anything()))
}

fn load_files(files: &[String], which: &str) -> Result<Loaded> {
    if files.is_empty() {
        bail!("no {which} manifests: give the OLD and NEW files or directories, or a git revision pair");
    }
    let (loaded, invalid) =
        netpol_input::files::load(files).with_context(|| format!("loading the {which} manifests"))?;
    if invalid > 0 {
        eprintln!("warning: {invalid} invalid object(s) in the {which} manifests were skipped");
    }
    Ok(loaded)
}

fn engine(loaded: Loaded, which: &str) -> Engine {
    engine_of(loaded.cluster, which)
}

fn engine_of(cluster: netpol_core::model::Cluster, which: &str) -> Engine {
    let t = std::time::Instant::now();
    let e = Engine::with_cni(cluster, netpol_input::cni());
    tracing::info!(side = which, elapsed = ?t.elapsed(), stats = ?e.stats(), "compiled");
    e
}

// ---------------------------------------------------------------------------------------------------------------
// git revisions

/// Runs git in `dir`; a failure names the command, its exit status and what git printed on stderr.
fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .with_context(|| "cannot run `git` (is it installed and on PATH?)")?;
    if !o.status.success() {
        let stderr = String::from_utf8_lossy(&o.stderr);
        let why = match stderr.trim() {
            "" => String::new(),
            s => format!(": {}", s.lines().collect::<Vec<_>>().join(" / ")),
        };
        bail!("`git -C {} {}` failed ({}){why}", dir.display(), args.join(" "), o.status);
    }
    Ok(o.stdout)
}

/// Where to run git for `path`, and `path` relative to there: its deepest existing directory (the path may not
/// exist in the work tree, e.g. when it was deleted since).
fn locate(path: &str) -> (PathBuf, String) {
    let p = Path::new(if path.is_empty() { "." } else { path });
    let mut base = p.to_path_buf();
    let mut rest: Vec<String> = Vec::new();
    while !base.is_dir() {
        match (base.file_name(), base.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_string_lossy().into_owned());
                base = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent.to_path_buf() };
            }
            _ => {
                base = PathBuf::from(".");
                break;
            }
        }
    }
    rest.reverse();
    let rel = if rest.is_empty() { ".".to_string() } else { rest.join("/") };
    (base, rel)
}

/// The manifest files (`*.yaml|*.yml|*.json`, or the path itself when it names a file) under `path` at `rev`:
/// each named `REV:path` (the path from the repository root), with its bytes.
pub(crate) fn git_manifests(rev: &str, path: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let (dir, rel) = locate(path);
    git(&dir, &["rev-parse", "--show-toplevel"])
        .with_context(|| format!("`{path}` is not in a git repository (looked from `{}`)", dir.display()))?;
    git(&dir, &["rev-parse", "--verify", &format!("{rev}^{{commit}}")])
        .with_context(|| format!("unknown git revision `{rev}`"))?;
    let listing = git(&dir, &["ls-tree", "-r", "-z", "--name-only", "--full-name", rev, "--", &rel])?;
    let files: Vec<String> =
        listing.split(|&b| b == 0).filter(|f| !f.is_empty()).map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    let single_file = files.len() == 1 && files.first().is_some_and(|f| f.ends_with(rel.as_str()));
    let mut out = Vec::new();
    for f in &files {
        let is_manifest = [".yaml", ".yml", ".json"].iter().any(|ext| f.ends_with(ext));
        if !is_manifest && !single_file {
            continue;
        }
        // `REV:path` with a path from the repository root (ls-tree --full-name).
        let bytes = git(&dir, &["show", "--no-textconv", &format!("{rev}:{f}")])?;
        out.push((format!("{rev}:{f}"), bytes));
    }
    Ok(out)
}

/// [`git_manifests`], loaded, and how many files were read; diagnostics go to stderr like `-f`'s.
fn load_git(rev: &str, path: &str) -> Result<(Loaded, usize)> {
    let files = git_manifests(rev, path)?;
    let mut loader = Loader::new();
    for (name, bytes) in &files {
        loader.add_bytes(name, bytes);
    }
    let loaded = loader.finish();
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    let invalid = netpol_input::files::invalid_objects(&loaded.diagnostics);
    if invalid > 0 {
        eprintln!("warning: {invalid} invalid object(s) at revision {rev} were skipped");
    }
    Ok((loaded, files.len()))
}

// ---------------------------------------------------------------------------------------------------------------
// rendering

/// Compared pods per namespace, to shorten pod lists (`ns/* (12 pods)` when a list has all of a namespace).
struct Scope {
    per_ns: BTreeMap<String, usize>,
    total: usize,
}

impl Scope {
    fn new(new: &Engine, ns: Option<&str>, d: &Diff) -> Scope {
        let added: HashSet<&str> = d.pods_added.iter().map(String::as_str).collect();
        let mut per_ns: BTreeMap<String, usize> = BTreeMap::new();
        for p in (0..new.cluster().pods.len()).map(PodId::new) {
            let pod = new.cluster().pod(p);
            let pns = new.cluster().ns_name(pod.ns);
            if ns.is_some_and(|n| n != pns) || added.contains(new.cluster().pod_ref(p).as_str()) {
                continue;
            }
            *per_ns.entry(pns.to_string()).or_default() += 1;
        }
        let total = per_ns.values().sum();
        Scope { per_ns, total }
    }

    /// Shortened items of a sorted pod list, with the number of pods each stands for.
    fn items(&self, names: &[String]) -> Vec<(String, usize)> {
        if self.per_ns.len() > 1 && names.len() == self.total && self.total > 1 {
            return vec![(format!("all {} pods", self.total), self.total)];
        }
        let mut out: Vec<(String, usize)> = Vec::new();
        let mut i = 0;
        while i < names.len() {
            let ns = names[i].split_once('/').map_or("", |(n, _)| n);
            let run = names[i..].iter().take_while(|n| n.split_once('/').map_or("", |(x, _)| x) == ns).count();
            if run > 1 && self.per_ns.get(ns) == Some(&run) {
                out.push((format!("{ns}/* ({run} pods)"), run));
            } else {
                out.extend(names[i..i + run].iter().map(|n| (n.clone(), 1)));
            }
            i += run;
        }
        out
    }

    /// `a, b, c (+12 more)`: at most `show` items.
    fn list(&self, names: &[String], show: usize) -> String {
        let items = self.items(names);
        let shown: Vec<&str> = items.iter().take(show).map(|(s, _)| s.as_str()).collect();
        let hidden: usize = items.iter().skip(show).map(|(_, n)| n).sum();
        let mut s = shown.join(", ");
        if hidden > 0 {
            s.push_str(&format!(" (+{hidden} more)"));
        }
        s
    }
}

struct Ctx<'a> {
    old: &'a Engine,
    new: &'a Engine,
    scope: Scope,
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

const TEXT_SHOW: usize = 6;

fn write_text(d: &Diff, ctx: &Ctx, out: &mut dyn Write) -> Result<()> {
    for g in &d.groups {
        let head = match g.change {
            Change::NewlyAllowed => "+ ALLOW",
            Change::NewlyDenied => "- DENY ",
        };
        writeln!(
            out,
            "{head}  {} -> {}  {}  ({})",
            ctx.scope.list(&g.sources, TEXT_SHOW),
            ctx.scope.list(&g.destinations, TEXT_SHOW),
            g.ports,
            plural(g.pairs, "pair")
        )?;
        // A group's cause is explained on one representative flow: name it when the group has several.
        match flow_text(&g.cause_detail["new"]) {
            Some(flow) if g.pairs > 1 => writeln!(out, "    because (e.g. {flow}): {}", g.cause)?,
            _ => writeln!(out, "    because: {}", g.cause)?,
        }
    }
    for g in &d.outside {
        let head = match g.change {
            Change::NewlyAllowed => "+ ALLOW",
            Change::NewlyDenied => "- DENY ",
        };
        let (src, dst) = outside_ends(g, &ctx.scope.list(&g.pods, TEXT_SHOW), TEXT_SHOW);
        writeln!(out, "{head}  {src} -> {dst}  {}  ({})", g.ports, plural(g.pods.len() as u64, "pod"))?;
        match flow_text(&g.cause_detail["new"]) {
            Some(flow) => writeln!(out, "    because (e.g. {flow}): {}", g.cause)?,
            None => writeln!(out, "    because: {}", g.cause)?,
        }
    }
    if !d.groups.is_empty() || !d.outside.is_empty() {
        writeln!(out)?;
    }
    if !d.pods_added.is_empty() {
        writeln!(out, "pods added ({}, not compared): {}", d.pods_added.len(), ctx.scope.list(&d.pods_added, 20))?;
    }
    if !d.pods_removed.is_empty() {
        writeln!(
            out,
            "pods removed ({}, not compared): {}",
            d.pods_removed.len(),
            ctx.scope.list(&d.pods_removed, 20)
        )?;
    }
    write_host_endpoints(d, "", out)?;
    write_l7(d, "", out)?;
    writeln!(out, "{}", summary(d))?;
    Ok(())
}

/// Calico host endpoints whose object or policies changed: the diff computes no host endpoint flows, so it names
/// what changed (`prefix`: Markdown list marker or none).
fn write_host_endpoints(d: &Diff, prefix: &str, out: &mut dyn Write) -> Result<()> {
    if d.host_endpoints.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{}host endpoints changed ({}; their flows are not diffed: ask `netpol explain` or `netpol query` on either \
         side):",
        if prefix.is_empty() { "" } else { "\n" },
        d.host_endpoints.len()
    )?;
    for h in &d.host_endpoints {
        let what = if h.changes.is_empty() { String::new() } else { format!(": {}", h.changes.join("; ")) };
        writeln!(out, "{prefix}  {} {}{what}", h.host_endpoint, h.what)?;
    }
    Ok(())
}

/// Cilium rules whose L7 rules changed: the cells are L3/L4, so what requests a port lets through is listed apart.
fn write_l7(d: &Diff, prefix: &str, out: &mut dyn Write) -> Result<()> {
    if d.l7.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{}L7 rules changed ({}; requests on these ports are filtered differently: `netpol query` with `http`/`dns` \
         judges one on either side):",
        if prefix.is_empty() { "" } else { "\n" },
        d.l7.len()
    )?;
    for c in &d.l7 {
        let detail = match (&c.old, &c.new) {
            (Some(o), Some(n)) => format!(": {o} → {n}"),
            (None, Some(n)) => format!(": {n}"),
            (Some(o), None) => format!(": was {o}"),
            (None, None) => String::new(),
        };
        writeln!(out, "{prefix}  {} {} {}{detail}", c.policy, c.rule, c.what)?;
    }
    Ok(())
}

/// The two ends of an outside group as text: (pods, `outside ADDRESSES`) for egress, the reverse for ingress.
fn outside_ends(g: &OutsideGroup, pods: &str, show: usize) -> (String, String) {
    let mut addrs = g.addresses.iter().take(show).cloned().collect::<Vec<_>>().join(", ");
    if g.addresses.len() > show {
        addrs.push_str(&format!(" (+{} more)", g.addresses.len() - show));
    }
    let outside = format!("outside {addrs}");
    match g.direction {
        Direction::Egress => (pods.to_string(), outside),
        Direction::Ingress => (outside, pods.to_string()),
    }
}

fn summary(d: &Diff) -> String {
    let pods = format!("{} added, {} removed", plural(d.pods_added.len() as u64, "pod"), d.pods_removed.len());
    let outside = if d.outside.is_empty() {
        String::new()
    } else {
        let opened = d.outside.iter().filter(|g| g.change == Change::NewlyAllowed).count() as u64;
        format!(
            "; {} with addresses outside the cluster ({opened} newly allowed)",
            plural(d.outside.len() as u64, "group")
        )
    };
    if d.groups.is_empty() {
        let head = if d.outside.is_empty() { "no connectivity change" } else { "no change between pods" };
        return format!("{head}: {} compared, none changed{outside}; {pods}", plural(d.compared_pairs(), "pair"));
    }
    format!(
        "{}: {} newly allowed, {} newly denied ({} changed), {} unchanged{outside}; {pods}",
        plural(d.groups.len() as u64, "group"),
        plural(d.pairs(Change::NewlyAllowed), "pair"),
        plural(d.pairs(Change::NewlyDenied), "pair"),
        plural(d.changed_pairs, "pair"),
        plural(d.unchanged_pairs, "pair"),
    )
}

/// Groups in the Markdown table (and its details); the JSON output has all.
const MD_GROUPS: usize = 50;
const MD_TABLE_SHOW: usize = 3;
const MD_DETAILS_SHOW: usize = 50;

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn change_label(c: Change) -> &'static str {
    match c {
        Change::NewlyAllowed => "**+ allowed**",
        Change::NewlyDenied => "**− denied**",
    }
}

fn write_markdown(d: &Diff, ctx: &Ctx, out: &mut dyn Write) -> Result<()> {
    writeln!(out, "### NetworkPolicy connectivity diff\n")?;
    writeln!(out, "_{}_", netpol_input::cni_header(ctx.new))?;
    if (ctx.old.cni(), ctx.old.cni_source()) != (ctx.new.cni(), ctx.new.cni_source()) {
        writeln!(out, "_{} on the old side_", netpol_input::cni_header(ctx.old))?;
    }
    writeln!(out)?;
    if d.groups.is_empty() {
        writeln!(out, "No connectivity change: {} compared.", plural(d.compared_pairs(), "pair"))?;
    } else {
        writeln!(
            out,
            "**{} newly allowed**, **{} newly denied**, {} unchanged.",
            plural(d.pairs(Change::NewlyAllowed), "pair"),
            plural(d.pairs(Change::NewlyDenied), "pair"),
            plural(d.unchanged_pairs, "pair")
        )?;
    }
    if !d.pods_added.is_empty() || !d.pods_removed.is_empty() {
        writeln!(out)?;
        if !d.pods_added.is_empty() {
            writeln!(out, "Pods added (not compared): {}  ", ctx.scope.list(&d.pods_added, 10))?;
        }
        if !d.pods_removed.is_empty() {
            writeln!(out, "Pods removed (not compared): {}", ctx.scope.list(&d.pods_removed, 10))?;
        }
    }
    write_markdown_outside(d, ctx, out)?;
    write_host_endpoints(d, "-", out)?;
    write_l7(d, "-", out)?;
    if d.groups.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n| Change | Sources | Destinations | Ports | Pairs | Cause |")?;
    writeln!(out, "| --- | --- | --- | --- | ---: | --- |")?;
    let shown = &d.groups[..d.groups.len().min(MD_GROUPS)];
    for g in shown {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            change_label(g.change),
            cell(&ctx.scope.list(&g.sources, MD_TABLE_SHOW)),
            cell(&ctx.scope.list(&g.destinations, MD_TABLE_SHOW)),
            cell(&g.ports.to_string()),
            g.pairs,
            cell(&g.cause)
        )?;
    }
    if d.groups.len() > shown.len() {
        writeln!(
            out,
            "\n{} more group(s) not shown; `netpol diff -o json` lists every group.",
            d.groups.len() - shown.len()
        )?;
    }
    writeln!(out, "\n<details>\n<summary>Pod lists and explanations</summary>\n")?;
    for (i, g) in shown.iter().enumerate() {
        write_details(i + 1, g, ctx, out)?;
    }
    writeln!(out, "</details>")?;
    Ok(())
}

/// Changes with addresses outside the cluster: one table (the JSON output has the explanations).
fn write_markdown_outside(d: &Diff, ctx: &Ctx, out: &mut dyn Write) -> Result<()> {
    if d.outside.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nWith addresses outside the cluster:\n")?;
    writeln!(out, "| Change | From | To | Ports | Pods | Cause |")?;
    writeln!(out, "| --- | --- | --- | --- | ---: | --- |")?;
    let shown = &d.outside[..d.outside.len().min(MD_GROUPS)];
    for g in shown {
        let (src, dst) = outside_ends(g, &ctx.scope.list(&g.pods, MD_TABLE_SHOW), MD_TABLE_SHOW);
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            change_label(g.change),
            cell(&src),
            cell(&dst),
            cell(&g.ports.to_string()),
            g.pods.len(),
            cell(&g.cause)
        )?;
    }
    if d.outside.len() > shown.len() {
        writeln!(out, "\n{} more not shown; `netpol diff -o json` lists every group.", d.outside.len() - shown.len())?;
    }
    Ok(())
}

fn write_details(i: usize, g: &DeltaGroup, ctx: &Ctx, out: &mut dyn Write) -> Result<()> {
    let what = match g.change {
        Change::NewlyAllowed => "newly allowed",
        Change::NewlyDenied => "newly denied",
    };
    writeln!(out, "#### {i}. {what}: {} ({})\n", g.ports, plural(g.pairs, "pair"))?;
    writeln!(out, "- Sources ({}): {}", g.sources.len(), ctx.scope.list(&g.sources, MD_DETAILS_SHOW))?;
    writeln!(out, "- Destinations ({}): {}", g.destinations.len(), ctx.scope.list(&g.destinations, MD_DETAILS_SHOW))?;
    writeln!(out, "- Cause: {}\n", g.cause)?;
    for (title, e, key) in [("Before", ctx.old, "old"), ("After", ctx.new, "new")] {
        if let Some(text) = explanation_text(e, &g.cause_detail[key]) {
            writeln!(out, "{title}:\n\n```text\n{}```\n", text)?;
        }
    }
    Ok(())
}

/// `src -> dst port/PROTO` of an explanation object.
fn flow_text(ex: &serde_json::Value) -> Option<String> {
    Some(format!(
        "{} -> {} {}/{}",
        ex["src"].as_str()?,
        ex["dst"].as_str()?,
        ex["port"].as_u64()?,
        ex["protocol"].as_str()?
    ))
}

/// Re-renders the representative flow's explanation on one side as text.
fn explanation_text(e: &Engine, ex: &serde_json::Value) -> Option<String> {
    let src = e.parse_endpoint(ex["src"].as_str()?, "default").ok()?;
    let dst = e.parse_endpoint(ex["dst"].as_str()?, "default").ok()?;
    let proto = netpol_core::portset::Protocol::parse_exact(ex["protocol"].as_str()?)?;
    let port = u16::try_from(ex["port"].as_u64()?).ok()?;
    Some(e.explain(&src, &dst, proto, port).render())
}
