//! `netpol serve`, the binary: `--watch` on a directory that links to itself, and running out of file descriptors
//! under `ulimit -n`. The server's endpoints, limits and reloads are tested in-process in
//! `crates/netpol-server/tests/it/serve.rs`.

use std::path::{Path, PathBuf};

use crate::common::example;

fn copy_example(to: &Path) -> PathBuf {
    for f in ["namespaces.yaml", "workloads.yaml", "policies.yaml"] {
        std::fs::copy(Path::new(&example()).join(f), to.join(f)).expect("copy");
    }
    to.join("policies.yaml")
}

/// The mis-indent fixed: `podSelector` ANDed with `namespaceSelector`, so backend/worker loses postgres.
fn fixed_policies(original: &str) -> String {
    let bad = "        - namespaceSelector:\n            matchLabels:\n              tier: backend\n        - podSelector:\n            matchLabels:\n              app: api\n";
    assert_eq!(original.matches(bad).count(), 1, "the example's mis-indent moved");
    original.replace(bad, &bad.replace("        - podSelector:", "          podSelector:"))
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// `serve --watch` on a directory that links to itself twice (`a -> .`, `b -> .`): the watcher walks it the way
/// loading does (each directory once, loops skipped), so a change is picked up within seconds. Before, its own
/// walk followed the links until ELOOP: 2^40 paths, a reload that never came.
#[test]
fn watch_reloads_a_directory_with_self_symlinks() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let dir = crate::common::tempdir();
    let policies = copy_example(dir.path());
    let original = std::fs::read_to_string(&policies).expect("read");
    for name in ["a", "b"] {
        std::os::unix::fs::symlink(".", dir.path().join(name)).expect("symlink");
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["serve", "--watch", "--listen", "127.0.0.1:0", "-f"])
        .arg(dir.path())
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = child.stderr.take().expect("stderr");
    let child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr: std::net::SocketAddr = loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|e| panic!("no address ({e}): {log:#?}"));
        if let Some(at) = line.find("http://") {
            break line[at + 7..].split_whitespace().next().expect("addr").parse().expect("address");
        }
        log.push(line);
    };
    let ask = |path: &str| raw_get(addr, path);
    let q = "/api/v1/explain?src=backend/worker&dst=database/postgres&port=5432";
    let first = ask(q);
    assert!(first.contains("x-netpol-revision: 1\r\n") && first.contains("\"verdict\":\"allow\""), "{first}");
    // The model has the example's objects once (no duplicates through the links).
    assert!(log.iter().all(|l| !l.contains("duplicate")), "{log:#?}");

    std::fs::write(&policies, fixed_policies(&original)).expect("write");
    let t = Instant::now();
    let resp = loop {
        let r = ask(q);
        if !r.contains("x-netpol-revision: 1\r\n") || t.elapsed() > Duration::from_secs(20) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(child);
    log.extend(rx.try_iter());
    assert!(resp.contains("x-netpol-revision: 2\r\n"), "no reload within 20 s: {resp}\n{log:#?}");
    assert!(resp.contains("\"verdict\":\"deny\""), "{resp}");
    eprintln!("reloaded after {:?}", t.elapsed());
}

#[test]
fn out_of_file_descriptors_the_server_backs_off_and_recovers() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    // The real binary with 64 file descriptors: 100 idle connections exhaust them, accept() fails with EMFILE.
    let mut child = std::process::Command::new("sh")
        .args(["-c", "ulimit -n 64 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_netpol"), "serve", "-f"])
        .arg(example())
        .args(["--listen", "127.0.0.1:0", "--header-timeout", "1s"])
        .env_remove("KUBECONFIG")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(60)).expect("netpol serve started");
    let at = first.find("http://").unwrap_or_else(|| panic!("{first}"));
    let addr: std::net::SocketAddr = first[at + 7..].split_whitespace().next().expect("addr").parse().expect("address");
    let idle: Vec<std::net::TcpStream> =
        (0..100).map(|_| std::net::TcpStream::connect(addr).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(300));
    // Queued in the backlog until connections close (the header timeout), then answered.
    let t = Instant::now();
    let ask = |path: &str| raw_get(addr, path);
    let resp = ask("/api/v1/explain?src=frontend/web&dst=backend/api&port=8080");
    let answered = t.elapsed();
    let metrics = ask("/metrics");
    let _ = child.kill();
    let _ = child.wait();
    drop(idle);
    let log: Vec<String> = rx.try_iter().collect();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}\n{log:#?}");
    let errors = metric(metrics.split("\r\n\r\n").nth(1).unwrap_or(""), "netpol_accept_errors_total");
    eprintln!("fd limit 64, 100 idle connections: {errors} failed accepts, answered after {answered:?}");
    assert!(errors >= 1.0, "accept() never failed, the test proves nothing: {metrics}");
    assert!(log.iter().any(|l| l.contains("accept failed")), "{log:#?}");
    assert!(answered < Duration::from_secs(15), "{answered:?}");
}

/// `GET path` over a fresh connection (closed after the answer), read until the server closes it: the raw answer.
fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("write");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp
}
