//! Shared by the tests: the scratch directory, and the bundled example's path.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

/// The directory for the tests' scratch files: `CARGO_TARGET_TMPDIR` (`<target dir>/tmp`), never the system's
/// temporary directory, so that no test writes outside the target directory.
pub fn scratch() -> &'static Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("netpol-it");
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
        d
    })
}

/// A fresh directory under [`scratch`], removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(scratch())
        .unwrap_or_else(|e| panic!("cannot create a directory in {}: {e}", scratch().display()))
}

/// examples/three-tier.
pub fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/three-tier").display().to_string()
}
