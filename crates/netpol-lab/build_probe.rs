//! Build-time probe of what the root-only and browser tests need, shared by the build scripts of `netpol-lab` and
//! `netpol` (`#[path]`-included). A missing requirement makes those tests `#[ignore = "..."]` through a `--cfg`,
//! so that `cargo test` lists them as ignored, with the reason, instead of passing them without running.
//!
//! Cargo re-runs the probe when `PATH` (or `CHROMIUM`, `CI`, `USER`, `SUDO_UID`) changes, and when a tool that was
//! found changes or a directory where a missing one would appear changes (the `PATH` directories). A missing path
//! is never given to `rerun-if-changed`: cargo would then re-run the script, and rebuild the crate, on every build.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The tools the data-plane tests run: `nft` (nftables) and `ip` (iproute2). `conntrack` (the CLI) is installed
/// by `.ci/run` but not run by any test: the kernel's conntrack is used through nft's `ct` expressions.
pub const ROOT_TOOLS: &[&str] = &["nft", "ip"];

pub fn watch_env() {
    for var in ["PATH", "CHROMIUM", "CI", "USER", "SUDO_UID"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
}

/// The effective user id, from the `Uid:` line of `/proc/self/status` (real, effective, saved, fs).
pub fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Absolute directories of `PATH`, without those inside `skip` (a directory the build itself writes to would make
/// the script re-run after every build).
fn path_dirs(skip: &[&Path]) -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute() && d.is_dir() && !skip.iter().any(|s| d.starts_with(s)))
        .filter(|d| seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone())))
        .collect()
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Where `tool` is on `PATH`, if it is.
pub fn which(tool: &str) -> Option<PathBuf> {
    path_dirs(&[]).into_iter().map(|d| d.join(tool)).find(|p| executable(p))
}

/// Watch `p` when it exists, else the nearest existing ancestor that is not `/` (where it would appear).
pub fn watch_path(p: &Path) {
    let mut at = Some(p);
    while let Some(q) = at {
        if q.exists() && q != Path::new("/") {
            println!("cargo::rerun-if-changed={}", q.display());
            return;
        }
        at = q.parent();
    }
}

/// Finds `tools` on `PATH`; watches the ones found, and every `PATH` directory when one is missing. Returns the
/// missing ones.
pub fn require_tools(tools: &[&str], skip: &[&Path]) -> Vec<String> {
    let mut missing = Vec::new();
    for t in tools {
        match which(t) {
            Some(p) => println!("cargo::rerun-if-changed={}", p.display()),
            None => missing.push((*t).to_string()),
        }
    }
    if !missing.is_empty() {
        for d in path_dirs(skip) {
            println!("cargo::rerun-if-changed={}", d.display());
        }
    }
    missing
}

/// `None` when the data-plane tests can run here (root, and `ROOT_TOOLS` on `PATH`), else why not.
pub fn root_tools(skip: &[&Path]) -> Option<String> {
    let mut why = Vec::new();
    match euid() {
        Some(0) => {}
        Some(u) => why.push(format!("not root (euid {u})")),
        None => why.push("euid unknown (no /proc/self/status)".to_string()),
    }
    let missing = require_tools(ROOT_TOOLS, skip);
    if !missing.is_empty() {
        why.push(format!("not on PATH: {}", missing.join(", ")));
    }
    if why.is_empty() {
        None
    } else {
        Some(why.join("; "))
    }
}

/// Declares `cfg(name)` and sets it when `on`.
pub fn cfg(name: &str, on: bool) {
    println!("cargo::rustc-check-cfg=cfg({name})");
    if on {
        println!("cargo::rustc-cfg={name}");
    }
}

/// The target directory, from `OUT_DIR` (`<target>[/<triple>]/<profile>/build/<pkg>-<hash>/out`).
pub fn target_dir() -> Option<PathBuf> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let dir = out.ancestors().nth(4)?;
    let triple = std::env::var("TARGET").unwrap_or_default();
    if !triple.is_empty() && dir.file_name().is_some_and(|n| n == triple.as_str()) {
        return dir.parent().map(Path::to_path_buf);
    }
    Some(dir.to_path_buf())
}
