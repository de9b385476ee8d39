//! Reading manifests: files, directories (recursive, `*.yaml|*.yml|*.json`) and `-` for stdin, fed to the
//! core loader; diagnostics go to stderr.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use netpol_core::compile::Engine;
use netpol_core::load::{Loaded, Loader, Severity};

/// What loading found, for the exit status.
pub struct Input {
    pub engine: Engine,
    pub invalid: usize,
}

fn is_manifest(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list directory `{}`", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                collect(&e, out)?;
            } else if is_manifest(&e) {
                out.push(e);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Loads every `-f` argument. Unreadable paths are errors (exit 2); invalid objects are diagnostics.
pub fn load(files: &[String]) -> Result<(Loaded, usize)> {
    if files.is_empty() {
        anyhow::bail!("no input: give manifests with -f FILE|DIR|- (repeatable)");
    }
    let mut loader = Loader::new();
    for f in files {
        if f == "-" {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).context("cannot read stdin")?;
            loader.add_bytes("-", &buf);
            continue;
        }
        let mut paths = Vec::new();
        collect(Path::new(f), &mut paths)?;
        for p in paths {
            let bytes = std::fs::read(&p).with_context(|| format!("cannot read `{}`", p.display()))?;
            loader.add_bytes(&p.display().to_string(), &bytes);
        }
    }
    let loaded = loader.finish();
    let mut invalid = 0;
    for d in &loaded.diagnostics {
        eprintln!("{d}");
        if d.severity == Severity::Error {
            invalid += 1;
        }
    }
    for (kind, n) in &loaded.skipped_kinds {
        tracing::debug!(kind, count = n, "skipped objects of a kind netpol does not model");
    }
    Ok((loaded, invalid))
}

/// Loads and compiles.
pub fn engine(files: &[String]) -> Result<Input> {
    let (loaded, invalid) = load(files)?;
    let t = std::time::Instant::now();
    let engine = Engine::new(loaded.cluster);
    tracing::info!(elapsed = ?t.elapsed(), stats = ?engine.stats(), "compiled");
    Ok(Input { engine, invalid })
}
