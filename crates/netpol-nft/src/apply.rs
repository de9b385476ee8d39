//! The only module that runs external commands against the kernel (`ip`, `nft`, and `sh` for netns sysctls).
//!
//! Everything goes through the [`Runner`] trait so that pure code (command generation in `netpol-lab`'s `lab`, ruleset
//! application) can be tested with a fake runner that records argv instead of touching the kernel. [`System`] is
//! the real implementation on top of [`std::process::Command`].

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs one external command. `argv[0]` is the program (looked up in `PATH`); `stdin`, when given, is written to
/// the child's standard input. Returns the child's standard output on success (exit status 0).
pub trait Runner {
    fn run(&self, argv: &[&str], stdin: Option<&str>) -> Result<String, ApplyError>;
}

/// The real [`Runner`]: spawns the process with [`std::process::Command`].
#[derive(Clone, Copy, Debug, Default)]
pub struct System;

/// Failure of an external command (or of interpreting its output).
#[derive(thiserror::Error, Debug)]
pub enum ApplyError {
    #[error("empty command line")]
    EmptyCommand,
    #[error("cannot run `{argv}`: {source}")]
    Spawn {
        argv: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{argv}` failed ({status}): {stderr}")]
    Failed {
        argv: String,
        /// e.g. `exit status: 1` or `signal: 9 (SIGKILL)`
        status: String,
        /// The code, if the process exited normally.
        code: Option<i32>,
        stderr: String,
    },
    #[error("`{argv}` printed output that is not valid JSON: {source}")]
    Json {
        argv: String,
        #[source]
        source: serde_json::Error,
    },
}

impl ApplyError {
    /// The standard error of a failed command (empty for other errors).
    pub fn stderr(&self) -> &str {
        match self {
            ApplyError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}

/// Quote an argv for error messages (shell-like, only quoting where needed).
pub fn display_argv(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b));
            if plain {
                (*a).to_string()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Runner for System {
    fn run(&self, argv: &[&str], stdin: Option<&str>) -> Result<String, ApplyError> {
        let (prog, args) = argv.split_first().ok_or(ApplyError::EmptyCommand)?;
        let shown = || display_argv(argv);
        tracing::debug!(argv = %shown(), stdin_bytes = stdin.map_or(0, str::len), "run");
        let mut child = Command::new(prog)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_ALL", "C")
            .spawn()
            .map_err(|source| ApplyError::Spawn { argv: shown(), source })?;
        // Write stdin on a separate thread: a large script and a chatty child could otherwise deadlock on full pipes.
        let output = std::thread::scope(|s| {
            let writer = match (stdin, child.stdin.take()) {
                (Some(text), Some(mut pipe)) => Some(s.spawn(move || {
                    // A child that exits early closes the pipe (EPIPE); its exit status tells the real story.
                    let _ = pipe.write_all(text.as_bytes());
                })),
                _ => None,
            };
            let out = child.wait_with_output();
            if let Some(w) = writer {
                let _ = w.join();
            }
            out
        })
        .map_err(|source| ApplyError::Spawn { argv: shown(), source })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(ApplyError::Failed {
                argv: shown(),
                status: output.status.to_string(),
                code: output.status.code(),
                stderr: String::from_utf8_lossy(&output.stderr).trim_end().to_string(),
            })
        }
    }
}

/// `args`, prefixed with `ip netns exec NS` when `netns` is given.
fn in_ns<'a>(netns: Option<&'a str>, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = Vec::with_capacity(args.len() + 4);
    if let Some(ns) = netns {
        v.extend_from_slice(&["ip", "netns", "exec", ns]);
    }
    v.extend_from_slice(args);
    v
}

/// Load an nft script atomically (`nft -f -`, script on stdin), inside `netns` when given.
pub fn nft_apply(r: &dyn Runner, netns: Option<&str>, script: &str) -> Result<(), ApplyError> {
    r.run(&in_ns(netns, &["nft", "-f", "-"]), Some(script)).map(drop)
}

/// A long-lived `nft -i` process (inside a network namespace when given) that commits scripts of one-line commands,
/// each as one transaction. Against a new `nft -f -` per script it saves starting nft, and above all its exit: a
/// process closing its nftables socket waits until the kernel has released what its transactions replaced (one RCU
/// grace period: 5–17 ms on the test machine), while the session's socket stays open.
///
/// nft answers nothing when a command succeeds, so each script is followed by a line nft cannot parse,
/// [`SESSION_MARKER`]: the error it prints for that line, after any error of the script, says the script is done.
/// The session is replaced after [`SESSION_BYTES`] of input (nft keeps its input lines as history).
pub struct NftSession {
    argv: Vec<String>,
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    /// Lines of nft's standard error, read on a thread of their own.
    errors: std::sync::mpsc::Receiver<String>,
    written: usize,
}

/// What [`NftSession`] sends after each script: not an nft command.
pub const SESSION_MARKER: &str = "netpol-session-sync";

/// How much input an [`NftSession`] takes before it is replaced by a fresh process.
pub const SESSION_BYTES: usize = 32 << 20;

impl NftSession {
    /// Starts `nft -i`, inside `netns` when given.
    pub fn start(netns: Option<&str>) -> Result<NftSession, ApplyError> {
        let argv: Vec<String> = in_ns(netns, &["nft", "-i"]).into_iter().map(str::to_string).collect();
        let shown = || display_argv(&argv.iter().map(String::as_str).collect::<Vec<_>>());
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("LC_ALL", "C")
            // nft writes its history file under $HOME when it exits: nowhere.
            .env("HOME", "/nonexistent")
            .spawn()
            .map_err(|source| ApplyError::Spawn { argv: shown(), source })?;
        let (Some(stdin), Some(stderr)) = (child.stdin.take(), child.stderr.take()) else {
            let _ = child.kill();
            return Err(ApplyError::Spawn { argv: shown(), source: std::io::Error::other("no pipes") });
        };
        let (tx, errors) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(NftSession { argv, child, stdin, errors, written: 0 })
    }

    /// Whether this session has taken so much input that it should be replaced.
    pub fn worn(&self) -> bool {
        self.written >= SESSION_BYTES
    }

    /// Commits `script` (one command per line, no comment: what [`crate::ruleset::Snapshot::update_script`] writes)
    /// as one transaction (its lines joined with `;`), waiting at most `timeout` for nft's answer. When nft refuses
    /// the script (nothing of it is committed), the error has `code: Some(1)`, nft's own status for that, and its
    /// complaint as `stderr`, and the session stays usable; any other error leaves it unusable.
    pub fn apply(&mut self, script: &str, timeout: std::time::Duration) -> Result<(), ApplyError> {
        let argv: Vec<&str> = self.argv.iter().map(String::as_str).collect();
        let error = |code: Option<i32>, stderr: String| ApplyError::Failed {
            argv: display_argv(&argv),
            status: if code.is_some() { "refused" } else { "session lost" }.to_string(),
            code,
            stderr,
        };
        let failed = |stderr: String| error(None, stderr);
        let line: Vec<&str> = script.lines().filter(|l| !l.trim().is_empty()).collect();
        // Joined on one line, a comment would hide the commands after it.
        if line.iter().any(|l| l.split('"').step_by(2).any(|outside| outside.contains('#'))) {
            return Err(failed("a script for a session has no comments (`#` outside quotes)".into()));
        }
        let text = format!("{}\n{SESSION_MARKER}\n", line.join("; "));
        // What a previous answer left (the caret line under the marker).
        while self.errors.try_recv().is_ok() {}
        self.stdin.write_all(text.as_bytes()).and_then(|()| self.stdin.flush()).map_err(|e| failed(e.to_string()))?;
        self.written += text.len();
        let deadline = std::time::Instant::now() + timeout;
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.errors.recv_timeout(left) {
                Ok(l) if l == SESSION_MARKER => break,
                Ok(l) => said.push(l),
                Err(e) => return Err(failed(format!("no answer from nft ({e}): {}", said.join("\n")))),
            }
        }
        // The marker's own error line is the last one before it; anything earlier is the script's.
        said.pop();
        if said.iter().any(|l| l.starts_with("Error:")) {
            return Err(error(Some(1), said.join("\n")));
        }
        Ok(())
    }

    /// Whether `e`, an error of [`NftSession::apply`], is nft refusing the script (the session still usable).
    pub fn refused(e: &ApplyError) -> bool {
        matches!(e, ApplyError::Failed { code: Some(_), .. })
    }
}

impl Drop for NftSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rules of netpol's table by handle, inside `netns` when given (`nft -a -j -t list table inet netpol`: `-t`
/// leaves the sets' elements out), read by [`crate::observe::table_rules_of`]; none when it cannot be listed.
pub fn nft_table_rules(
    r: &dyn Runner,
    netns: Option<&str>,
) -> std::collections::HashMap<u64, crate::observe::TableRule> {
    let argv = in_ns(netns, &["nft", "-a", "-j", "-t", "list", "table", "inet", crate::ruleset::TABLE]);
    crate::observe::table_rules_of(&r.run(&argv, None).unwrap_or_default())
}

/// Check an nft script without applying it (`nft -c -f -`), inside `netns` when given.
///
/// Note: `nft -c` still needs the tables/sets the script refers to to exist in that netns when the script
/// references (rather than creates) them.
pub fn nft_check(r: &dyn Runner, netns: Option<&str>, script: &str) -> Result<(), ApplyError> {
    r.run(&in_ns(netns, &["nft", "-c", "-f", "-"]), Some(script)).map(drop)
}

/// `nft -j list ruleset`, parsed, inside `netns` when given.
pub fn nft_list_json(r: &dyn Runner, netns: Option<&str>) -> Result<serde_json::Value, ApplyError> {
    let argv = in_ns(netns, &["nft", "-j", "list", "ruleset"]);
    let out = r.run(&argv, None)?;
    if out.trim().is_empty() {
        // nft prints nothing at all for an empty ruleset in some versions.
        return Ok(serde_json::json!({ "nftables": [] }));
    }
    serde_json::from_str(&out).map_err(|source| ApplyError::Json { argv: display_argv(&argv), source })
}

/// Whether the `nft` binary can be run (`nft --version` succeeds). Says nothing about privileges.
pub fn nft_available() -> bool {
    System.run(&["nft", "--version"], None).is_ok()
}

/// Whether the `ip` binary (iproute2) can be run.
pub fn ip_available() -> bool {
    System.run(&["ip", "-V"], None).is_ok()
}

/// Run an `ip -batch -` script (one `ip` command per line, without the leading `ip`), inside `netns` (`ip -n NS`)
/// when given. With `force`, `ip` goes on after a failing line (`-force`) and still fails at the end.
pub fn ip_batch(r: &dyn Runner, netns: Option<&str>, script: &str, force: bool) -> Result<(), ApplyError> {
    if script.trim().is_empty() {
        return Ok(());
    }
    let mut argv = vec!["ip"];
    if let Some(ns) = netns {
        argv.extend_from_slice(&["-n", ns]);
    }
    if force {
        argv.push("-force");
    }
    argv.extend_from_slice(&["-batch", "-"]);
    r.run(&argv, Some(script)).map(drop)
}

/// Names of all named network namespaces (`ip netns list`, first word of each line).
pub fn netns_list(r: &dyn Runner) -> Result<Vec<String>, ApplyError> {
    let out = r.run(&["ip", "netns", "list"], None)?;
    Ok(parse_netns_list(&out))
}

/// Parse `ip netns list` output: lines like `name (id: 3)` or `name`.
pub fn parse_netns_list(out: &str) -> Vec<String> {
    out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

/// Write `value` to `/proc/sys/<key with dots as slashes>` inside `netns` (never the root namespace):
/// `ip netns exec NS sh -c 'echo V > /proc/sys/...'`. Keys and values are restricted to `[A-Za-z0-9._-]`.
pub fn sysctl_in_netns(r: &dyn Runner, netns: &str, settings: &[(&str, &str)]) -> Result<(), ApplyError> {
    let safe = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    let mut script = String::from("set -e");
    for (k, v) in settings {
        if !safe(k) || !safe(v) || k.contains("..") {
            return Err(ApplyError::Failed {
                argv: format!("sysctl {k}={v}"),
                status: "not run".into(),
                code: None,
                stderr: "refusing sysctl key/value with unexpected characters".into(),
            });
        }
        script.push_str(&format!("; echo {v} > /proc/sys/{}", k.replace('.', "/")));
    }
    r.run(&["ip", "netns", "exec", netns, "sh", "-c", &script], None).map(drop)
}

/// `nft -a monitor trace` in `netns`, or in the caller's own namespace (a node agent's: the host's): the trace
/// events, every traced rule with its handle (`... # handle N (verdict ...)`), for a reader that names rules from
/// the table as it is now (`crate::observe::renamed`): the monitor prints a rule as the ruleset was when it started,
/// and a table replaced since may have given that handle to another rule. Its standard output is piped; the caller
/// kills the child when done.
pub fn spawn_trace_monitor_with_handles_in(netns: Option<&str>) -> Result<std::process::Child, ApplyError> {
    spawn_monitor(in_ns(netns, &["nft", "-a", "monitor", "trace"]))
}

fn spawn_monitor(argv: Vec<&str>) -> Result<std::process::Child, ApplyError> {
    std::process::Command::new(argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|source| ApplyError::Spawn { argv: display_argv(&argv), source })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records every call and answers with a canned stdout.
    struct Fake {
        calls: RefCell<Vec<(Vec<String>, Option<String>)>>,
        reply: String,
    }
    impl Runner for Fake {
        fn run(&self, argv: &[&str], stdin: Option<&str>) -> Result<String, ApplyError> {
            self.calls.borrow_mut().push((argv.iter().map(|s| s.to_string()).collect(), stdin.map(str::to_string)));
            Ok(self.reply.clone())
        }
    }
    fn fake(reply: &str) -> Fake {
        Fake { calls: RefCell::new(Vec::new()), reply: reply.to_string() }
    }

    #[test]
    fn nft_argv() {
        let f = fake("");
        nft_apply(&f, Some("lab-node"), "table inet t {}\n").unwrap();
        nft_check(&f, None, "x").unwrap();
        let calls = f.calls.borrow();
        assert_eq!(calls[0].0, ["ip", "netns", "exec", "lab-node", "nft", "-f", "-"]);
        assert_eq!(calls[0].1.as_deref(), Some("table inet t {}\n"));
        assert_eq!(calls[1].0, ["nft", "-c", "-f", "-"]);
    }

    #[test]
    fn list_json_empty_and_full() {
        assert_eq!(nft_list_json(&fake(""), None).unwrap()["nftables"], serde_json::json!([]));
        let v = nft_list_json(&fake(r#"{"nftables":[{"metainfo":{"json_schema_version":1}}]}"#), Some("n")).unwrap();
        assert_eq!(v["nftables"][0]["metainfo"]["json_schema_version"], 1);
        assert!(matches!(nft_list_json(&fake("nope"), None), Err(ApplyError::Json { .. })));
    }

    #[test]
    fn netns_list_parsing() {
        assert_eq!(parse_netns_list("a-node (id: 3)\nb\n\n  c (id: 0)\n"), ["a-node", "b", "c"]);
    }

    #[test]
    fn ip_batch_argv() {
        let f = fake("");
        ip_batch(&f, Some("ns1"), "link set lo up\n", true).unwrap();
        ip_batch(&f, None, "  \n", false).unwrap(); // empty: nothing run
        let calls = f.calls.borrow();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0, ["ip", "-n", "ns1", "-force", "-batch", "-"]);
    }

    #[test]
    fn sysctl_quoting() {
        let f = fake("");
        sysctl_in_netns(&f, "n", &[("net.ipv4.ip_forward", "1")]).unwrap();
        assert_eq!(f.calls.borrow()[0].0[6], "set -e; echo 1 > /proc/sys/net/ipv4/ip_forward");
        assert!(sysctl_in_netns(&f, "n", &[("net.ipv4.ip_forward; rm", "1")]).is_err());
        assert!(sysctl_in_netns(&f, "n", &[("..x", "1")]).is_err());
    }

    #[test]
    fn system_runner_reports_failures() {
        // `sh` exists everywhere this crate runs; these run nothing against the kernel.
        let out = System.run(&["sh", "-c", "cat"], Some("hello")).unwrap();
        assert_eq!(out, "hello");
        match System.run(&["sh", "-c", "echo oops >&2; exit 3"], None) {
            Err(ApplyError::Failed { code, stderr, argv, .. }) => {
                assert_eq!(code, Some(3));
                assert_eq!(stderr, "oops");
                assert_eq!(argv, "sh -c 'echo oops >&2; exit 3'");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(System.run(&["/nonexistent/prog"], None), Err(ApplyError::Spawn { .. })));
        assert!(matches!(System.run(&[], None), Err(ApplyError::EmptyCommand)));
    }
}
