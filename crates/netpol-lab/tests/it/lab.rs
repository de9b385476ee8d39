//! Integration tests of the network-namespace lab, the probes and nft application.
//!
//! They need root, `ip` (iproute2) and `nft` (nftables): without them at build time (`build.rs` sets
//! `cfg(netpol_root_tools)`) they are ignored with that reason; a test that runs and finds them missing fails.
//! Every test uses its own prefix `nptest-<test>-<pid>` and a guard that runs `Lab::down` even when the test fails,
//! and checks at its end that `ip netns list` shows nothing left with its prefix. All addresses are in 10.0.0.0/8
//! and fd00::/8 inside namespaces the test made.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netpol_lab::lab::{Lab, LabError, LabPod};
use netpol_lab::probe::{in_netns, kernel_supports_sctp, run_probes, Listeners, Observed, Probe, L4};
use netpol_nft::apply::{ip_available, netns_list, nft_apply, nft_available, nft_check, nft_list_json, System};

const TIMEOUT: Duration = Duration::from_millis(1000);

fn skip_reason() -> Option<&'static str> {
    if netpol_lab::euid() != 0 {
        return Some("not root");
    }
    if !ip_available() {
        return Some("`ip` (iproute2) not installed");
    }
    if !nft_available() {
        return Some("`nft` (nftables) not installed");
    }
    None
}

macro_rules! require_root_tools {
    ($name:expr) => {
        if let Some(why) = skip_reason() {
            panic!("{}: cannot run: {why} (it is ignored when the build finds no root or tools)", $name);
        }
    };
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn leftovers(prefix: &str) -> Vec<String> {
    let dash = format!("{prefix}-");
    netns_list(&System).unwrap().into_iter().filter(|n| n.starts_with(&dash)).collect()
}

/// Owns a prefix: removes its namespaces on drop (also when the test panics).
struct Guard {
    prefix: String,
}

impl Guard {
    fn new(test: &str) -> Guard {
        let prefix = format!("nptest-{test}-{}", std::process::id());
        Lab::down(&System, &prefix).unwrap();
        Guard { prefix }
    }
    /// Tear down and check that nothing with the prefix is left.
    fn finish(self) {
        Lab::down(&System, &self.prefix).unwrap();
        let left = leftovers(&self.prefix);
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        assert!(!netpol_lab::lab::state_path(&self.prefix).exists(), "state file left behind");
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = Lab::down(&System, &self.prefix) {
            eprintln!("cleanup of {} failed: {e}", self.prefix);
        }
    }
}

fn probe(lab: &Lab, from: &str, dst: &str, l4: L4, port: u16) -> Probe {
    Probe { netns: lab.pod_netns(from).unwrap().to_string(), src: None, dst: ip(dst), l4, port }
}

fn targets(lab: &Lab, key: &str, l4: L4, port: u16) -> Vec<(String, IpAddr, L4, u16)> {
    let ns = lab.pod_netns(key).unwrap().to_string();
    lab.pod_ips(key).unwrap().iter().map(|ip| (ns.clone(), *ip, l4, port)).collect()
}

fn three_pods() -> Vec<LabPod> {
    vec![
        LabPod::new("default/a", [ip("10.50.0.1"), ip("fd00:50::1")]),
        LabPod::new("default/b", [ip("10.50.0.2")]),
        LabPod::new("external/x", [ip("10.99.0.1"), ip("fd00:99::1")]),
    ]
}

/// (a) 3 pods (dual-stack, v4-only, external pseudo-pod): TCP, UDP and IPv6 TCP all connect with no ruleset.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn a_connectivity_without_ruleset() {
    require_root_tools!("a_connectivity_without_ruleset");
    let guard = Guard::new("conn");
    let lab = Lab::up(&System, &guard.prefix, &three_pods()).unwrap();
    assert_eq!(lab.node_netns(), format!("{}-node", guard.prefix));
    assert_eq!(lab.pods().count(), 3);
    for (key, ns, _) in lab.pods() {
        let veth = lab.host_veth(key).unwrap();
        assert!(veth.len() <= 15 && veth.starts_with('v'), "{veth}");
        assert_eq!(&ns[guard.prefix.len() + 1..], &veth[1..]);
    }
    let mut t = Vec::new();
    for key in ["default/a", "default/b", "external/x"] {
        t.extend(targets(&lab, key, L4::Tcp, 8080));
        t.extend(targets(&lab, key, L4::Udp, 5353));
    }
    let listeners = Listeners::start(&t).unwrap();
    assert_eq!(listeners.len(), t.len());

    let mut probes = Vec::new();
    let mut what = Vec::new();
    for (from, dst) in [
        ("default/a", "10.50.0.2"),
        ("default/b", "10.50.0.1"),
        ("default/a", "10.99.0.1"),
        ("external/x", "10.50.0.2"),
        ("default/a", "fd00:99::1"),
        ("external/x", "fd00:50::1"),
    ] {
        for (l4, port) in [(L4::Tcp, 8080), (L4::Udp, 5353)] {
            probes.push(probe(&lab, from, dst, l4, port));
            what.push(format!("{from} -> {dst} {l4:?}/{port}"));
        }
    }
    // With an explicit source address.
    let mut p = probe(&lab, "default/a", "fd00:99::1", L4::Tcp, 8080);
    p.src = Some(ip("fd00:50::1"));
    probes.push(p);
    what.push("a(src fd00:50::1) -> fd00:99::1 TCP/8080".into());
    let results = run_probes(&probes, TIMEOUT, 64);
    for (w, r) in what.iter().zip(&results) {
        assert_eq!(r.observed, Observed::Allow, "{w}: {r:?}");
    }
    assert!(results.iter().any(|r| r.detail == "connected") && results.iter().any(|r| r.detail == "reply"));

    // A port nobody listens on: the SYN reached the pod and an RST came back => Allow ("refused"), fast.
    let r = run_probes(&[probe(&lab, "default/a", "10.50.0.2", L4::Tcp, 9999)], TIMEOUT, 1);
    assert_eq!((r[0].observed, r[0].detail.as_str()), (Observed::Allow, "refused"), "{r:?}");
    assert!(r[0].micros < 500_000, "{r:?}");
    // A source address the pod does not own cannot be bound.
    let mut p = probe(&lab, "default/b", "10.50.0.1", L4::Tcp, 8080);
    p.src = Some(ip("10.50.0.1"));
    assert_eq!(run_probes(&[p], TIMEOUT, 1)[0].observed, Observed::Untestable);

    // The lab is rediscovered from its state file.
    let again = Lab::attach(&System, &guard.prefix).unwrap().unwrap();
    assert_eq!(again.lab_pods(), lab.lab_pods());
    // And a second `up` with the same prefix is refused.
    assert!(matches!(Lab::up(&System, &guard.prefix, &three_pods()), Err(LabError::InUse { .. })));
    drop(listeners);
    guard.finish();
}

/// (b) A hand-written ruleset in the node netns: dropping TCP 8080 to one pod denies that probe, another port stays
/// allowed, and an established connection survives a drop rule added later (conntrack), until the node's
/// conntrack table is flushed.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn b_nft_ruleset_and_conntrack() {
    require_root_tools!("b_nft_ruleset_and_conntrack");
    let guard = Guard::new("nft");
    let pods = [LabPod::new("default/a", [ip("10.51.0.1")]), LabPod::new("default/b", [ip("10.51.0.2")])];
    let lab = Lab::up(&System, &guard.prefix, &pods).unwrap();
    let b_ns = lab.pod_netns("default/b").unwrap().to_string();
    let a_ns = lab.pod_netns("default/a").unwrap().to_string();
    let mut t = targets(&lab, "default/b", L4::Tcp, 8080);
    t.extend(targets(&lab, "default/b", L4::Tcp, 8081));
    let _listeners = Listeners::start(&t).unwrap();

    let ruleset = "\
table inet labtest {
    chain forward {
        type filter hook forward priority 0; policy accept;
        ct state established,related accept
        ip daddr 10.51.0.2 tcp dport 8080 drop
    }
}
";
    let node = Some(lab.node_netns());
    nft_check(&System, node, ruleset).unwrap();
    assert!(nft_check(&System, node, "table inet labtest { chain c { bogus } }\n").is_err());
    nft_apply(&System, node, ruleset).unwrap();
    let json = nft_list_json(&System, node).unwrap();
    assert!(json["nftables"].as_array().unwrap().iter().any(|o| o["table"]["name"] == "labtest"), "{json}");

    let r = run_probes(
        &[probe(&lab, "default/a", "10.51.0.2", L4::Tcp, 8080), probe(&lab, "default/a", "10.51.0.2", L4::Tcp, 8081)],
        TIMEOUT,
        8,
    );
    assert_eq!((r[0].observed, r[0].detail.as_str()), (Observed::Deny, "timeout"), "{r:?}");
    assert_eq!(r[1].observed, Observed::Allow, "{r:?}");

    // Long-lived connection a -> b:9000 through an echo server, opened before the drop rule exists.
    let listener = in_netns(&b_ns, || TcpListener::bind("10.51.0.2:9000")).unwrap().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // Once the client's conntrack entry is flushed its FIN is dropped too: stop waiting by then.
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => s.write_all(&buf[..n]).unwrap(),
            }
        }
    });
    let dst: SocketAddr = "10.51.0.2:9000".parse().unwrap();
    let mut conn = in_netns(&a_ns, || TcpStream::connect_timeout(&dst, TIMEOUT)).unwrap().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 5];
    conn.write_all(b"ping1").unwrap();
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping1");

    nft_apply(&System, node, "add rule inet labtest forward ip daddr 10.51.0.2 tcp dport 9000 drop\n").unwrap();
    conn.write_all(b"ping2").unwrap();
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping2", "established connection must survive the new drop rule");
    let r = run_probes(&[probe(&lab, "default/a", "10.51.0.2", L4::Tcp, 9000)], TIMEOUT, 1);
    assert_eq!(r[0].observed, Observed::Deny, "a new connection must be dropped: {r:?}");
    // Without its conntrack entry the connection is new again to the node, and meets the drop rule.
    netpol_lab::probe::flush_conntrack(lab.node_netns()).unwrap();
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    conn.write_all(b"ping3").unwrap();
    assert!(conn.read_exact(&mut buf).is_err(), "flushed conntrack: the segment must be dropped");
    assert!(netpol_lab::probe::flush_conntrack("netpol-no-such-netns-xyz").is_err());
    drop(conn);
    echo.join().unwrap();
    guard.finish();
}

/// (c) `apply` adds, removes and re-addresses pods.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn c_apply_adds_and_removes() {
    require_root_tools!("c_apply_adds_and_removes");
    let guard = Guard::new("apply");
    let mut lab = Lab::up(
        &System,
        &guard.prefix,
        &[LabPod::new("default/a", [ip("10.52.0.1")]), LabPod::new("default/b", [ip("10.52.0.2")])],
    )
    .unwrap();
    let b_ns = lab.pod_netns("default/b").unwrap().to_string();
    let want = [
        LabPod::new("default/a", [ip("10.52.0.11"), ip("fd00:52::11")]),
        LabPod::new("default/c", [ip("10.52.0.3"), ip("fd00:52::3")]),
    ];
    let delta = lab.apply(&System, &want).unwrap();
    assert_eq!(delta.added, ["default/c"]);
    assert_eq!(delta.removed, ["default/b"]);
    assert_eq!(delta.changed, ["default/a"]);
    assert!(lab.pod_netns("default/b").is_none());
    let names = netns_list(&System).unwrap();
    assert!(!names.contains(&b_ns), "{names:?}");
    assert!(names.iter().any(|n| n == lab.pod_netns("default/c").unwrap()));
    // Nothing to do the second time.
    assert!(lab.apply(&System, &want).unwrap().is_empty());

    let mut t = targets(&lab, "default/c", L4::Tcp, 80);
    t.extend(targets(&lab, "default/a", L4::Tcp, 80));
    let _l = Listeners::start(&t).unwrap();
    let r = run_probes(
        &[
            probe(&lab, "default/a", "10.52.0.3", L4::Tcp, 80),
            probe(&lab, "default/a", "fd00:52::3", L4::Tcp, 80),
            probe(&lab, "default/c", "10.52.0.11", L4::Tcp, 80),
            probe(&lab, "default/c", "fd00:52::11", L4::Tcp, 80),
        ],
        TIMEOUT,
        8,
    );
    assert!(r.iter().all(|r| r.observed == Observed::Allow), "{r:?}");
    // The removed pod's old address is gone: nothing answers.
    let r = run_probes(&[probe(&lab, "default/a", "10.52.0.2", L4::Tcp, 80)], Duration::from_millis(300), 1);
    assert_ne!(r[0].observed, Observed::Allow, "{r:?}");

    let attached = Lab::attach(&System, &guard.prefix).unwrap().unwrap();
    assert_eq!(attached.lab_pods(), lab.lab_pods());
    guard.finish();
}

/// (d) `down` removes every netns with the prefix, also ones the lab does not know about (crash recovery), and
/// nothing else.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn d_down_after_crash() {
    require_root_tools!("d_down_after_crash");
    let guard = Guard::new("down");
    let lab = Lab::up(
        &System,
        &guard.prefix,
        &[LabPod::new("default/a", [ip("10.53.0.1")]), LabPod::new("default/b", [ip("10.53.0.2")])],
    )
    .unwrap();
    drop(lab); // "crash": the Lab value is gone, the namespaces are not
    let stray = format!("{}-stray", guard.prefix);
    let neighbour = format!("{}x-keep", guard.prefix); // same characters, different prefix: must survive
    netpol_nft::apply::ip_batch(&System, None, &format!("netns add {stray}\nnetns add {neighbour}\n"), false).unwrap();
    assert_eq!(leftovers(&guard.prefix).len(), 4);
    assert_eq!(Lab::down(&System, &guard.prefix).unwrap(), 4);
    assert!(leftovers(&guard.prefix).is_empty());
    assert!(netns_list(&System).unwrap().contains(&neighbour));
    netpol_nft::apply::ip_batch(&System, None, &format!("netns del {neighbour}\n"), false).unwrap();
    assert!(Lab::attach(&System, &guard.prefix).unwrap().is_none());
    assert_eq!(Lab::down(&System, &guard.prefix).unwrap(), 0);
    guard.finish();
}

/// (e) SCTP: Allow with SCTP sockets where the kernel has them; on a kernel without them (6.18 here,
/// `CONFIG_IP_SCTP` not set) over raw sockets: the probe's INIT gets the listener's INIT-ACK back, in both families,
/// through conntrack (checksums valid: nothing is `invalid`), and a drop rule in the node for that port is a timeout.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn e_sctp() {
    require_root_tools!("e_sctp");
    let guard = Guard::new("sctp");
    let lab = Lab::up(
        &System,
        &guard.prefix,
        &[
            LabPod::new("default/a", [ip("10.54.0.1"), ip("fd00:54::1")]),
            LabPod::new("default/b", [ip("10.54.0.2"), ip("fd00:54::2")]),
        ],
    )
    .unwrap();
    let mut t = targets(&lab, "default/b", L4::Sctp, 3868);
    t.extend(targets(&lab, "default/b", L4::Sctp, 3869));
    let listeners = Listeners::start(&t).unwrap();
    assert_eq!(listeners.sctp_supported(), kernel_supports_sctp());
    assert!(listeners.skipped().is_empty(), "{listeners:?}");
    let node = Some(lab.node_netns());
    nft_apply(
        &System,
        node,
        "table inet labtest {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n  ct state established,related accept\n  ct state invalid counter drop\n  meta l4proto sctp th dport 3869 drop\n }\n}\n",
    )
    .unwrap();
    let mut probes = Vec::new();
    for dst in ["10.54.0.2", "fd00:54::2"] {
        for port in [3868, 3869] {
            probes.push(probe(&lab, "default/a", dst, L4::Sctp, port));
        }
    }
    let r = run_probes(&probes, TIMEOUT, 8);
    eprintln!("SCTP on this kernel: sockets={} probes={r:?}", listeners.sctp_supported());
    let seen: Vec<Observed> = r.iter().map(|r| r.observed).collect();
    assert_eq!(seen, [Observed::Allow, Observed::Deny, Observed::Allow, Observed::Deny], "{r:?}");
    if !listeners.sctp_supported() {
        assert_eq!(r[0].detail, "connected (SCTP INIT-ACK over raw sockets)");
    }
    // Every packet had a valid checksum: conntrack found none invalid.
    let invalid = std::process::Command::new("ip")
        .args(["netns", "exec", lab.node_netns(), "nft", "list", "chain", "inet", "labtest", "forward"])
        .output()
        .unwrap();
    let invalid = String::from_utf8(invalid.stdout).unwrap();
    assert!(invalid.contains("ct state invalid counter packets 0 bytes 0 drop"), "{invalid}");
    drop(listeners);
    guard.finish();
}

/// Scale: 50 pods come up in seconds and 200 probes (half of them dropped) finish in about one timeout.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn f_scale_50_pods_200_probes() {
    require_root_tools!("f_scale_50_pods_200_probes");
    let guard = Guard::new("scale");
    let pods: Vec<LabPod> = (1..=50u8)
        .map(|i| {
            LabPod::new(format!("ns{}/pod{i}", i % 5), [ip(&format!("10.55.0.{i}")), ip(&format!("fd00:55::{i:x}"))])
        })
        .collect();
    let t0 = Instant::now();
    let lab10 = Lab::up(&System, &format!("{}-ten", guard.prefix), &pods[..10]).unwrap();
    let up10 = t0.elapsed();
    Lab::down(&System, &format!("{}-ten", guard.prefix)).unwrap();
    drop(lab10);
    let t0 = Instant::now();
    let lab = Lab::up(&System, &guard.prefix, &pods).unwrap();
    let up50 = t0.elapsed();

    let mut t = Vec::new();
    for p in &pods {
        t.extend(targets(&lab, &p.key, L4::Tcp, 80));
        t.extend(targets(&lab, &p.key, L4::Udp, 53));
    }
    let _l = Listeners::start(&t).unwrap();
    // Drop TCP 80 to the even pods.
    let mut rules = String::from(
        "table inet scale {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n  ct state established,related accept\n",
    );
    for i in (2..=50).step_by(2) {
        rules.push_str(&format!(
            "  ip daddr 10.55.0.{i} tcp dport 80 drop\n  ip6 daddr fd00:55::{i:x} tcp dport 80 drop\n"
        ));
    }
    rules.push_str(" }\n}\n");
    nft_apply(&System, Some(lab.node_netns()), &rules).unwrap();

    let mut probes = Vec::new();
    let mut want = Vec::new();
    for k in 0..200usize {
        let from = &pods[k % 50];
        let to_i = (k * 7 + 3) % 50 + 1; // 1..=50
        let to_i = if to_i == k % 50 + 1 { to_i % 50 + 1 } else { to_i };
        let v6 = k % 3 == 0;
        let dst = if v6 { format!("fd00:55::{to_i:x}") } else { format!("10.55.0.{to_i}") };
        let l4 = if k % 4 == 0 { L4::Udp } else { L4::Tcp };
        let port = if l4 == L4::Udp { 53 } else { 80 };
        probes.push(Probe { netns: lab.pod_netns(&from.key).unwrap().to_string(), src: None, dst: ip(&dst), l4, port });
        want.push(if l4 == L4::Tcp && to_i % 2 == 0 { Observed::Deny } else { Observed::Allow });
    }
    let t0 = Instant::now();
    let results = run_probes(&probes, TIMEOUT, 256);
    let probe_time = t0.elapsed();
    for ((p, w), r) in probes.iter().zip(&want).zip(&results) {
        assert_eq!(r.observed, *w, "{p:?}: {r:?}");
    }
    let denies = want.iter().filter(|w| **w == Observed::Deny).count();
    eprintln!("timings: lab up 10 pods {:?}, 50 pods {:?}; 200 probes ({denies} deny) {:?}", up10, up50, probe_time);
    assert!(up50 < Duration::from_secs(20), "50 pods took {up50:?}");
    assert!(probe_time < Duration::from_secs(10), "200 probes took {probe_time:?}");
    let t0 = Instant::now();
    guard.finish();
    eprintln!("timings: lab down 50 pods {:?}", t0.elapsed());
}

/// (g) Host-network pods live in the node netns with their node's addresses (on the node's `lo`; two pods of one
/// node share it): pods reach them and they reach pods, in both families, through the node's own input and output
/// paths (a drop in `forward` does not see that traffic, a drop in `input` does). The address stays while a
/// host-network pod has it, and leaves with the last one.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn g_host_network_pods_in_the_node() {
    require_root_tools!("g_host_network_pods_in_the_node");
    let guard = Guard::new("hostnet");
    let pods = [
        LabPod::new("default/a", [ip("10.56.0.1"), ip("fd00:56::1")]),
        LabPod::host_network("kube-system/agent", [ip("10.56.1.1"), ip("fd00:56:1::1")]),
        LabPod::host_network("kube-system/exporter", [ip("10.56.1.1"), ip("fd00:56:1::1")]),
    ];
    let mut lab = Lab::up(&System, &guard.prefix, &pods).unwrap();
    let node = lab.node_netns().to_string();
    assert_eq!(lab.pod_netns("kube-system/agent"), Some(node.as_str()));
    assert_eq!(lab.host_veth("kube-system/agent"), None);
    assert_eq!(leftovers(&guard.prefix).len(), 2, "the node and default/a only");
    let mut t = targets(&lab, "kube-system/agent", L4::Tcp, 8080);
    t.extend(targets(&lab, "kube-system/agent", L4::Udp, 5353));
    t.extend(targets(&lab, "default/a", L4::Tcp, 8080));
    let _l = Listeners::start(&t).unwrap();
    let src =
        |from: &str, dst: &str, l4: L4, src: &str| Probe { src: Some(ip(src)), ..probe(&lab, from, dst, l4, 8080) };
    let mut udp = probe(&lab, "default/a", "10.56.1.1", L4::Udp, 5353);
    udp.src = Some(ip("10.56.0.1"));
    let all = [
        src("default/a", "10.56.1.1", L4::Tcp, "10.56.0.1"),
        src("default/a", "fd00:56:1::1", L4::Tcp, "fd00:56::1"),
        udp,
        src("kube-system/agent", "10.56.0.1", L4::Tcp, "10.56.1.1"),
        src("kube-system/exporter", "fd00:56::1", L4::Tcp, "fd00:56:1::1"),
    ];
    let r = run_probes(&all, TIMEOUT, 8);
    assert!(r.iter().all(|r| r.observed == Observed::Allow), "{r:?}");

    // That traffic is the node's own: `forward` never sees it, `input` (pod -> node) and `output` do.
    let ruleset = "\
table inet labtest {
    chain forward {
        type filter hook forward priority 0; policy accept;
        ip saddr 10.56.0.1 drop
        ip daddr 10.56.0.1 drop
    }
}
";
    nft_apply(&System, Some(&node), ruleset).unwrap();
    let r = run_probes(&all, TIMEOUT, 8);
    assert!(r.iter().all(|r| r.observed == Observed::Allow), "{r:?}");
    nft_apply(
        &System,
        Some(&node),
        "table inet labtest {\n chain input {\n  type filter hook input priority 0; policy accept;\n  ct state established,related accept\n  ip saddr 10.56.0.1 drop\n }\n chain output {\n  type filter hook output priority 0; policy accept;\n  ct state established,related accept\n  ip6 daddr fd00:56::1 drop\n }\n}\n",
    )
    .unwrap();
    let r = run_probes(&all, TIMEOUT, 8);
    let seen: Vec<Observed> = r.iter().map(|r| r.observed).collect();
    use Observed::{Allow, Deny};
    assert_eq!(seen, [Deny, Allow, Deny, Allow, Deny], "{r:?}");
    nft_apply(&System, Some(&node), "delete table inet labtest\n").unwrap();

    let lo = || {
        let o = std::process::Command::new("ip").args(["-n", &node, "-o", "addr", "show", "dev", "lo"]).output();
        String::from_utf8(o.unwrap().stdout).unwrap()
    };
    assert!(lo().contains("10.56.1.1/32") && lo().contains("fd00:56:1::1/128"), "{}", lo());
    // One of the two host-network pods goes: the address stays for the other.
    let delta = lab.apply(&System, &[pods[0].clone(), pods[2].clone()]).unwrap();
    assert_eq!(delta.removed, ["kube-system/agent"]);
    assert!(lo().contains("10.56.1.1/32"), "{}", lo());
    let r = run_probes(&all[..1], TIMEOUT, 1);
    assert_eq!(r[0].observed, Observed::Allow, "{r:?}");
    assert_eq!(Lab::attach(&System, &guard.prefix).unwrap().unwrap().lab_pods(), lab.lab_pods());
    // The last one goes: so does the address.
    lab.apply(&System, &pods[..1]).unwrap();
    assert!(!lo().contains("10.56.1.1") && !lo().contains("fd00:56:1::1"), "{}", lo());
    guard.finish();
}

/// Packets sent through `dev` in `netns` (from `ip -s -j link show`).
fn tx_packets(netns: &str, dev: &str) -> u64 {
    let o = std::process::Command::new("ip").args(["-n", netns, "-s", "-j", "link", "show", "dev", dev]).output();
    let v: serde_json::Value = serde_json::from_slice(&o.unwrap().stdout).unwrap();
    v[0]["stats64"]["tx"]["packets"].as_u64().unwrap()
}

/// (g) A 3-node lab without ruleset: pods on different nodes reach each other (TCP and UDP, IPv4 and IPv6) over
/// the fabric (the nodes' uplinks carry the packets), as do a node's host-network address and an address outside
/// the cluster behind the fabric; a pod moved to another node by `apply` is reached there; `down` leaves nothing.
#[test]
#[cfg_attr(not(netpol_root_tools), ignore = "needs root, nft (nftables) and ip (iproute2)")]
fn g_multi_node_lab_routes_between_nodes() {
    require_root_tools!("g_multi_node_lab_routes_between_nodes");
    let guard = Guard::new("mn");
    let nodes = netpol_lab::lab::anonymous_nodes(3);
    let pods = vec![
        LabPod::new("a/p0", [ip("10.60.0.1"), ip("fd00:60::1")]).on_node("node0"),
        LabPod::new("a/p1", [ip("10.60.1.1"), ip("fd00:60:1::1")]).on_node("node1"),
        LabPod::new("a/p2", [ip("10.60.2.1"), ip("fd00:60:2::1")]).on_node("node2"),
        LabPod::host_network("sys/h2", [ip("10.60.9.3")]).on_node("node2"),
        LabPod::new("external/x", [ip("10.99.0.1"), ip("fd00:99::1")]),
    ];
    let mut lab = Lab::up_nodes(&System, &guard.prefix, &nodes, &pods).unwrap();
    assert!(lab.is_multi_node());
    assert_eq!(
        lab.nodes().iter().map(|n| n.netns.clone()).collect::<Vec<_>>(),
        nodes.iter().map(|n| format!("{}-{n}", guard.prefix)).collect::<Vec<_>>()
    );
    let mut left = leftovers(&guard.prefix);
    left.sort();
    assert_eq!(left.len(), 3 + 1 + 4, "3 nodes, the fabric, 4 pods: {left:?}");
    assert_eq!(lab.pod_node("a/p1"), Some("node1"));
    assert_eq!(lab.pod_netns("sys/h2"), Some(format!("{}-node2", guard.prefix).as_str()));
    let mut t = Vec::new();
    for key in ["a/p0", "a/p1", "a/p2", "external/x"] {
        t.extend(targets(&lab, key, L4::Tcp, 8080));
        t.extend(targets(&lab, key, L4::Udp, 5353));
    }
    t.push((lab.pod_netns("sys/h2").unwrap().to_string(), ip("10.60.9.3"), L4::Tcp, 8080));
    let listeners = Listeners::start(&t).unwrap();
    let uplinks = |lab: &Lab| -> Vec<u64> { lab.nodes().iter().map(|n| tx_packets(&n.netns, "eth0")).collect() };
    let before = uplinks(&lab);
    let mut probes = Vec::new();
    let mut what = Vec::new();
    for (from, dst) in [
        ("a/p0", "10.60.1.1"),
        ("a/p0", "fd00:60:1::1"),
        ("a/p1", "10.60.2.1"),
        ("a/p2", "fd00:60::1"),
        ("a/p1", "10.60.9.3"),
        ("a/p0", "10.99.0.1"),
        ("external/x", "fd00:60:2::1"),
    ] {
        for (l4, port) in [(L4::Tcp, 8080), (L4::Udp, 5353)] {
            if dst == "10.60.9.3" && l4 == L4::Udp {
                continue;
            }
            probes.push(probe(&lab, from, dst, l4, port));
            what.push(format!("{from} -> {dst} {l4:?}/{port}"));
        }
    }
    let results = run_probes(&probes, TIMEOUT, 16);
    for (w, r) in what.iter().zip(&results) {
        assert_eq!(r.observed, Observed::Allow, "{w}: {r:?}");
    }
    let after = uplinks(&lab);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(a > b, "node{i}'s uplink carried nothing: {before:?} -> {after:?}");
    }
    drop(listeners);
    // The state file records the nodes and each pod's node; attach reads them back.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(netpol_lab::lab::state_path(&guard.prefix)).unwrap()).unwrap();
    assert_eq!(state["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(state["pods"]["a/p1"]["node"], "node1");
    assert_eq!(state["fabric"], format!("{}-fabric", guard.prefix));
    let again = Lab::attach(&System, &guard.prefix).unwrap().unwrap();
    assert_eq!(again.lab_pods(), lab.lab_pods());
    assert_eq!(again.nodes(), lab.nodes());
    // a/p0 moves to node1: it is reached there, from node0's and node2's pods.
    let mut moved = pods.clone();
    moved[0] = LabPod::new("a/p0", [ip("10.60.0.1"), ip("fd00:60::1")]).on_node("node1");
    let delta = lab.apply(&System, &moved).unwrap();
    assert_eq!(delta.changed, ["a/p0"]);
    assert_eq!(lab.pod_node("a/p0"), Some("node1"));
    let listeners = Listeners::start(&targets(&lab, "a/p0", L4::Tcp, 8080)).unwrap();
    let r = run_probes(
        &[probe(&lab, "a/p2", "10.60.0.1", L4::Tcp, 8080), probe(&lab, "external/x", "fd00:60::1", L4::Tcp, 8080)],
        TIMEOUT,
        2,
    );
    assert!(r.iter().all(|r| r.observed == Observed::Allow), "{r:?}");
    drop(listeners);
    assert_eq!(Lab::down(&System, &guard.prefix).unwrap(), 8);
    guard.finish();
}
