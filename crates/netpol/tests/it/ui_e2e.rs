//! The web UI end to end: the real `netpol serve` binary on loopback, driven by headless Chromium through
//! `e2e/ui.test.mjs` (playwright-core from `e2e/node_modules`, Debian's `/usr/bin/chromium`).
//!
//! - `ui_on_the_bundled_example`: the page shows the engine's edges on several ports, node and edge clicks,
//!   explanations, a lint link, a what-if preview checked against `POST /api/v1/whatif`, an inline validation
//!   error; screenshots in `target/tmp/ui-e2e/` (`$CARGO_TARGET_TMPDIR/ui-e2e/`).
//! - `ui_on_1000_pods`: a synthetic 1,000-pod cluster (netpol-synth's `1k` preset): prints API, render and
//!   interaction timings (`PERF {...}`); asserts only that the run completes and the graph is grouped.
//! - `ui_follows_the_model`: `serve --watch` on a copy of the example; a policy written into it shows up on the
//!   open page by itself (new revision, policy listed, edges equal to the engine's matrix again).
//!
//! Without node, `e2e/node_modules` (`npm ci --prefix e2e`) or Chromium at build time, `build.rs` leaves
//! `cfg(netpol_browser)` unset and the tests are ignored with that reason; with `CI` set they always run (and fail
//! when something is missing: `.ci/run` installs all three). A test that runs and finds something missing fails.
//!
//! Nothing is fetched here, and nothing is written outside the target directory: node runs with `TMPDIR`, `HOME`
//! and the XDG directories under `$CARGO_TARGET_TMPDIR/ui-e2e/`, where Chromium's throwaway profile goes too.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// `None` when everything the browser test needs is there, else what is missing.
fn missing() -> Option<String> {
    let mut what = Vec::new();
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        what.push("node (apt-get install nodejs npm)".to_string());
    }
    if !root().join("e2e/node_modules/playwright-core/package.json").is_file() {
        what.push("e2e/node_modules (npm ci --prefix e2e)".to_string());
    }
    if !chromium().is_file() {
        what.push(format!("{} (apt-get install chromium)", chromium().display()));
    }
    if what.is_empty() {
        None
    } else {
        Some(what.join(", "))
    }
}

/// Fails the test, saying what is missing, when the browser test cannot run (it is ignored unless the build found
/// everything, so this is a broken setup: never a silent pass).
fn require_browser(test: &str) {
    if let Some(what) = missing() {
        panic!("{test}: the browser test cannot run: missing {what} (see .ci/run)");
    }
}

/// A `netpol serve` process on 127.0.0.1:0; killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(files: &[&Path]) -> Server {
        Server::start_with(files, &[])
    }

    fn start_with(files: &[&Path], flags: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_netpol"));
        cmd.arg("serve").args(flags);
        for f in files {
            cmd.arg("-f").arg(f);
        }
        let mut child = cmd
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netpol serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(at) = line.find("http://") {
                        let url: String = line[at..].chars().take_while(|c| !c.is_whitespace()).collect();
                        sent = tx.send(url.trim_end_matches('/').to_string()).is_ok();
                        continue;
                    }
                }
                eprintln!("netpol serve: {line}");
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(u) => u,
            Err(e) => {
                let _ = child.kill();
                panic!("netpol serve did not print its address: {e}");
            }
        };
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$CARGO_TARGET_TMPDIR/ui-e2e`: screenshots, the 1k-pod cluster, and node's and Chromium's scratch files.
fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-e2e");
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
    d
}

/// A directory under [`out_dir`] for what node and Chromium write besides the results.
fn node_home() -> PathBuf {
    let d = out_dir().join("home");
    for sub in ["tmp", ".config", ".cache"] {
        std::fs::create_dir_all(d.join(sub)).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
    }
    d
}

/// Runs the browser script; returns its stdout. Panics (with its output) when it fails.
fn run_script(args: &[&str]) -> String {
    let out = Command::new("node")
        .arg(root().join("e2e/ui.test.mjs"))
        .args(args)
        .env("CHROMIUM", chromium())
        .env("HOME", node_home())
        .env("TMPDIR", node_home().join("tmp"))
        .env("XDG_CONFIG_HOME", node_home().join(".config"))
        .env("XDG_CACHE_HOME", node_home().join(".cache"))
        .current_dir(root().join("e2e"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "e2e/ui.test.mjs {args:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout
}

#[test]
#[cfg_attr(not(netpol_browser), ignore = "needs node, e2e/node_modules (npm ci --prefix e2e) and /usr/bin/chromium")]
fn ui_on_the_bundled_example() {
    require_browser("ui_on_the_bundled_example");
    let server = Server::start(&[&root().join("examples/three-tier")]);
    let out = out_dir();
    let stdout = run_script(&[&server.url, out.to_str().expect("utf-8 path")]);
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    for shot in ["ui.png", "three-tier-node.png", "three-tier-whatif.png", "three-tier-invalid.png"] {
        let meta = std::fs::metadata(out.join(shot)).unwrap_or_else(|e| panic!("{shot}: {e}"));
        assert!(meta.len() > 10_000, "{shot} is {} bytes", meta.len());
    }
}

#[test]
#[cfg_attr(not(netpol_browser), ignore = "needs node, e2e/node_modules (npm ci --prefix e2e) and /usr/bin/chromium")]
fn ui_on_1000_pods() {
    require_browser("ui_on_1000_pods");
    // Kept in target/tmp/ui-e2e/, to serve it by hand: `netpol serve -f target/tmp/ui-e2e/synth-1k.yaml`.
    let file = out_dir().join("synth-1k.yaml");
    let params = netpol_synth::Params::preset("1k").expect("the 1k preset");
    std::fs::write(&file, netpol_synth::generate_yaml(&params)).expect("write the cluster");
    let server = Server::start(&[&file]);
    let stdout = run_script(&["--perf", &server.url, out_dir().to_str().expect("utf-8 path")]);
    let perf = stdout.lines().find_map(|l| l.strip_prefix("PERF ")).expect("a PERF line");
    let v: serde_json::Value = serde_json::from_str(perf).expect("PERF is JSON");
    assert_eq!(v["first"]["pods"], 1000, "{v}");
    assert!(v["runs"].as_array().is_some_and(|r| !r.is_empty()), "{v}");
}

#[test]
#[cfg_attr(not(netpol_browser), ignore = "needs node, e2e/node_modules (npm ci --prefix e2e) and /usr/bin/chromium")]
fn ui_follows_the_model() {
    require_browser("ui_follows_the_model");
    let dir = crate::common::tempdir();
    for f in std::fs::read_dir(root().join("examples/three-tier")).expect("example dir") {
        let f = f.expect("entry").path();
        if f.extension().is_some_and(|x| x == "yaml") && !f.ends_with("assertions.yaml") {
            std::fs::copy(&f, dir.path().join(f.file_name().expect("name"))).expect("copy");
        }
    }
    let server = Server::start_with(&[dir.path()], &["--watch"]);
    let stdout = run_script(&[
        "--follow",
        &server.url,
        out_dir().to_str().expect("utf-8 path"),
        dir.path().to_str().expect("utf-8 path"),
    ]);
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
