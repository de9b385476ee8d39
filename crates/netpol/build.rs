//! Probes what the root-only and browser tests need, so that `cargo test` reports them as ignored (with the
//! reason) when it is missing rather than passing them without running: see `../netpol-lab/build_probe.rs`.
//!
//! - `netpol_root_tools`: root, `nft` and `ip` on `PATH` (`tests/it/dataplane.rs`).
//! - `netpol_browser`: `node` on `PATH`, `e2e/node_modules/playwright-core` (`npm ci --prefix e2e`) and
//!   `/usr/bin/chromium` (or `$CHROMIUM`) (`tests/it/ui_e2e.rs`). Always set when `CI` is set: on CI a missing
//!   browser fails the tests.
//! - `netpol_sarif_schema`: `<target dir>/sarif-schema-2.1.0.json`, which `.ci/run` downloads (`tests/it/lint.rs`);
//!   its path is passed as `NETPOL_SARIF_SCHEMA`. Always set when `CI` is set.

#[path = "../netpol-lab/build_probe.rs"]
mod build_probe;

use std::path::{Path, PathBuf};

fn main() {
    build_probe::watch_env();
    let ci = std::env::var_os("CI").is_some();
    let target = build_probe::target_dir();
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let workspace = manifest.join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let skip: Vec<&Path> = [target.as_deref(), Some(workspace.as_path())].into_iter().flatten().collect();

    build_probe::cfg("netpol_root_tools", build_probe::root_tools(&skip).is_none());

    let node = build_probe::require_tools(&["node"], &skip).is_empty();
    let playwright = workspace.join("e2e/node_modules/playwright-core/package.json");
    build_probe::watch_path(&playwright);
    let chromium = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    build_probe::watch_path(&chromium);
    build_probe::cfg("netpol_browser", ci || (node && playwright.is_file() && chromium.is_file()));

    // The schema sits in the target directory; watch its directory only while it is missing (the target
    // directory changes on every build) — `sarif/` is made here so that there is a small directory to watch.
    let schema = target.map(|t| t.join("sarif/sarif-schema-2.1.0.json")).unwrap_or_default();
    if let Some(dir) = schema.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    build_probe::watch_path(&schema);
    println!("cargo::rustc-env=NETPOL_SARIF_SCHEMA={}", schema.display());
    build_probe::cfg("netpol_sarif_schema", ci || schema.is_file());
}
