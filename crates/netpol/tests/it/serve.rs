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

/// `POST path` with a JSON `body` over a fresh connection: the raw answer.
fn raw_post(addr: std::net::SocketAddr, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(60))).expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: \
         {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp
}

/// The JSON body of a raw answer.
fn body_json(resp: &str) -> serde_json::Value {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

/// `serve` on a file with Antrea's objects: verdicts, explanations and the matrix as the one-shot commands give
/// them; what-if bodies with Antrea objects (an ACNP added, a ClusterGroup changed, an ANNP deleted) answer their
/// delta, lowered with the loaded objects (the group an ACNP names, the Tiers); an applied policy whose Tier does
/// not exist is refused (422) naming the field.
#[test]
fn serve_answers_antrea_objects_and_what_ifs() {
    use netpol_fakeapi::fixtures::{antrea_cluster_group, antrea_cluster_policy, antrea_drop_web, antrea_objects};
    use serde_json::{json, Value};
    use std::io::BufRead;
    use std::time::Duration;
    let dir = crate::common::tempdir();
    let mut objects = netpol_fakeapi::fixtures::two_namespaces();
    objects.extend(antrea_objects());
    let text: Vec<String> = objects.iter().map(Value::to_string).collect();
    let file = dir.path().join("cluster.json");
    std::fs::write(&file, text.join("\n")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["serve", "--listen", "127.0.0.1:0", "-f"])
        .arg(&file)
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
    let _child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr: std::net::SocketAddr = loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("an address");
        if let Some(at) = line.find("http://") {
            break line[at + 7..].split_whitespace().next().expect("addr").parse().expect("address");
        }
    };

    // Verdicts and explanations, as `netpol query`/`explain -f` give them.
    let explain =
        |port: u16| body_json(&raw_get(addr, &format!("/api/v1/explain?src=frontend/web&dst=backend/api&port={port}")));
    for (port, want) in [(8080, "allow"), (9090, "deny"), (5432, "deny")] {
        let e = explain(port);
        assert_eq!(e["verdict"], want, "{port}: {e}");
    }
    let e = explain(9090).to_string();
    assert!(e.contains("guard-api"), "{e}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["explain", "-o", "json", "-f"])
        .arg(&file)
        .args(["frontend/web", "backend/api", "5432"])
        .output()
        .expect("netpol explain");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["verdict"], explain(5432)["verdict"]);
    assert_eq!(cli["ingress"], explain(5432)["ingress"]);

    // The matrix.
    let m = body_json(&raw_get(addr, "/api/v1/matrix?port=9090/TCP&port=8080/TCP"));
    let pods: Vec<&str> = m["pods"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    let (web, api) = (
        pods.iter().position(|p| *p == "frontend/web").unwrap(),
        pods.iter().position(|p| *p == "backend/api").unwrap(),
    );
    assert_eq!(m["ports"][0]["rows"][web][api], false, "{m}");
    assert_eq!(m["ports"][1]["rows"][web][api], true, "{m}");
    assert_eq!(m["cni"]["name"], "antrea", "{m}");

    // What-if: a Drop ACNP added (its group is the loaded one).
    // Whether a port set's text (`TCP 1-5431,5433-9089; UDP all`) has TCP `port`.
    let covers = |text: &str, port: &str| {
        let port: u16 = port.parse().unwrap();
        let tcp = text.split("; ").find_map(|p| p.strip_prefix("TCP ")).unwrap_or("");
        tcp == "all"
            || tcp.split(',').any(|r| match r.split_once('-') {
                Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).contains(&port),
                None => r.parse::<u16>().ok() == Some(port),
            })
    };
    let changed = |d: &Value, change: &str, port: &str| {
        d["groups"].as_array().unwrap().iter().any(|g| {
            g["change"] == change
                && g["sources"].as_array().unwrap().iter().any(|s| s == "frontend/web")
                && g["destinations"].as_array().unwrap().iter().any(|s| s == "backend/api")
                && covers(g["ports"].as_str().unwrap_or(""), port)
        })
    };
    let resp = raw_post(addr, "/api/v1/whatif", &json!({"apply": [antrea_drop_web()]}).to_string());
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let d = body_json(&resp);
    assert!(changed(&d, "newly_denied", "8080"), "{d}");
    assert!(d.to_string().contains("drop-web"), "{d}");

    // The ClusterGroup changed: the ACNP that names it no longer drops 9090.
    let group = antrea_cluster_group("web-pods", json!({"podSelector": {"matchLabels": {"app": "none"}}}));
    let d = body_json(&raw_post(addr, "/api/v1/whatif", &json!({"apply": [group]}).to_string()));
    assert!(changed(&d, "newly_allowed", "9090"), "{d}");

    // The ANNP deleted: 5432 is no longer dropped.
    let d = body_json(&raw_post(addr, "/api/v1/whatif", &json!({"delete": ["annp/backend/api-self"]}).to_string()));
    assert!(changed(&d, "newly_allowed", "5432"), "{d}");

    // An ACNP in a Tier that does not exist: refused by admission, as loading it would.
    let nowhere = antrea_cluster_policy(
        "nowhere",
        json!({"tier": "missing", "priority": 1, "appliedTo": [{"podSelector": {}}],
            "ingress": [{"action": "Drop", "from": [{"podSelector": {}}]}]}),
    );
    let resp = raw_post(addr, "/api/v1/whatif", &json!({"apply": [nowhere]}).to_string());
    assert!(resp.starts_with("HTTP/1.1 422"), "{resp}");
    let e = body_json(&resp);
    assert_eq!(e["field"], "apply[0].spec.tier", "{e}");
    // With the Tier applied first, admitted.
    let tier = netpol_fakeapi::fixtures::antrea_tier("missing", 40);
    let nowhere = antrea_cluster_policy(
        "nowhere",
        json!({"tier": "missing", "priority": 1, "appliedTo": [{"podSelector": {}}],
            "ingress": [{"action": "Drop", "from": [{"podSelector": {}}]}]}),
    );
    let d = body_json(&raw_post(addr, "/api/v1/whatif", &json!({"apply": [tier, nowhere]}).to_string()));
    assert!(changed(&d, "newly_denied", "8080"), "{d}");
}
