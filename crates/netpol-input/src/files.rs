//! Reading manifests: files, directories (recursive, `*.yaml|*.yml|*.json`) and `-` for stdin, fed to the
//! core loader; diagnostics go to stderr.
//!
//! Directories are walked once each: symlinks are followed, but a directory already read (a symlink loop, or a
//! second link to the same directory) is skipped with a warning, and a file reached twice (the same file given
//! twice, or through a link) is read once. A dangling symlink inside a directory is a warning; the rest loads.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use netpol_core::compile::Engine;
use netpol_core::load::{Diagnostic, Loaded, Loader, Severity};

/// What loading found, for the exit status.
pub struct Input {
    pub engine: Engine,
    pub invalid: usize,
}

fn is_manifest(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

/// The manifest files of the `-f` arguments, each once, in argument order and, within a directory, in path order
/// (`-`, stdin, stays where it was given); and the warnings of the walk (dangling symlinks, directories reached
/// twice).
#[derive(Debug, Default)]
pub struct Manifests {
    pub files: Vec<PathBuf>,
    pub warnings: Vec<String>,
    /// Canonical paths of the directories read.
    dirs: HashSet<PathBuf>,
    /// Canonical paths of the files listed.
    seen: HashSet<PathBuf>,
}

impl Manifests {
    fn add_file(&mut self, p: &Path) {
        // A file that cannot be canonicalised is listed anyway: reading it reports the error.
        let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        if self.seen.insert(canon) {
            self.files.push(p.to_path_buf());
        } else {
            tracing::debug!(path = %p.display(), "file already read (given twice, or through a link): skipped");
        }
    }

    fn walk_dir(&mut self, dir: &Path) -> Result<()> {
        let canon = std::fs::canonicalize(dir).with_context(|| format!("cannot read `{}`", dir.display()))?;
        if self.dirs.contains(&canon) {
            self.warnings.push(format!(
                "skipped `{}`: it leads to the directory `{}`, which is already read (a symlink loop, or a second \
                 link to it)",
                dir.display(),
                canon.display()
            ));
            return Ok(());
        }
        self.dirs.insert(canon);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot list directory `{}`", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            match std::fs::metadata(&e) {
                Ok(m) if m.is_dir() => self.walk_dir(&e)?,
                Ok(_) if is_manifest(&e) => self.add_file(&e),
                Ok(_) => {}
                Err(err) => {
                    let link = std::fs::symlink_metadata(&e).is_ok_and(|m| m.file_type().is_symlink());
                    if link {
                        let target = std::fs::read_link(&e).map(|t| t.display().to_string()).unwrap_or_default();
                        self.warnings.push(format!(
                            "skipped `{}`: a symlink to `{target}`, which cannot be read ({err})",
                            e.display()
                        ));
                    } else if is_manifest(&e) {
                        return Err(err).with_context(|| format!("cannot read `{}`", e.display()));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Lists the manifest files of `-f` arguments. A path given on the command line must exist (an error otherwise);
/// inside directories, see [`Manifests`]. `-` may be given once.
pub fn manifest_files(args: &[String]) -> Result<Manifests> {
    check_stdin(args)?;
    let mut m = Manifests::default();
    for a in args {
        if a == "-" {
            m.files.push(PathBuf::from("-"));
            continue;
        }
        let p = Path::new(a);
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read `{a}`"))?;
        if meta.is_dir() {
            m.walk_dir(p)?;
        } else {
            m.add_file(p);
        }
    }
    Ok(m)
}

/// `-f -` at most once: stdin can be read only once.
pub fn check_stdin(files: &[String]) -> Result<()> {
    if files.iter().filter(|f| *f == "-").count() > 1 {
        anyhow::bail!("`-f -` is given more than once: stdin can be read only once");
    }
    Ok(())
}

/// How many objects (or unreadable documents) the error diagnostics are about: an object with two invalid fields
/// is one invalid object.
pub fn invalid_objects(diagnostics: &[Diagnostic]) -> usize {
    diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| (&d.origin.file, d.origin.document, d.origin.item, &d.object))
        .collect::<HashSet<_>>()
        .len()
}

/// Loads every `-f` argument. Unreadable paths are errors (exit 2); invalid objects are diagnostics.
pub fn load(files: &[String]) -> Result<(Loaded, usize)> {
    if files.is_empty() {
        anyhow::bail!("no input: give manifests with -f FILE|DIR|- (repeatable)");
    }
    let manifests = manifest_files(files)?;
    for w in &manifests.warnings {
        eprintln!("warning: {w}");
    }
    let mut loader = Loader::new();
    for p in &manifests.files {
        if p.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).context("cannot read stdin")?;
            loader.add_bytes("-", &buf);
            continue;
        }
        let bytes = std::fs::read(p).with_context(|| format!("cannot read `{}`", p.display()))?;
        loader.add_bytes(&p.display().to_string(), &bytes);
    }
    let loaded = loader.finish();
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    let invalid = invalid_objects(&loaded.diagnostics);
    for (kind, n) in &loaded.skipped_kinds {
        tracing::debug!(kind, count = n, "skipped objects of a kind netpol does not model");
    }
    Ok((loaded, invalid))
}

/// Loads and compiles.
pub fn engine(files: &[String]) -> Result<Input> {
    let (loaded, invalid) = load(files)?;
    let t = std::time::Instant::now();
    let engine = Engine::with_cni(loaded.cluster, crate::cni());
    tracing::info!(elapsed = ?t.elapsed(), stats = ?engine.stats(), "compiled");
    Ok(Input { engine, invalid })
}
