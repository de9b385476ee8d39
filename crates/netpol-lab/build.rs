//! Probes whether the lab tests (`tests/it/lab.rs`: root, `nft`, `ip`) can run here; see `build_probe.rs`.

#[path = "build_probe.rs"]
mod build_probe;

use std::path::Path;

fn main() {
    build_probe::watch_env();
    let target = build_probe::target_dir();
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let workspace = Path::new(&manifest).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    let skip: Vec<&Path> = [target.as_deref(), Some(workspace.as_path())].into_iter().flatten().collect();
    build_probe::cfg("netpol_root_tools", build_probe::root_tools(&skip).is_none());
}
