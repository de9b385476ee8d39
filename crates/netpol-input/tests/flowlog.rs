//! Flow logs in: each format's fixture (`tests/data/flowlogs/`) read field by field, detection on a mixed file,
//! line errors that do not stop reading, gzip, the kube-network-policies join, and folding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufReader, Cursor, Write};
use std::net::IpAddr;

use netpol_core::portset::{icmp_port, Protocol};
use netpol_input::flowlog::{
    open, Counts, End, FlowFormat, Folded, Folder, LineError, Observed, Reader, Side, Verdict,
};

fn path(name: &str) -> String {
    format!("{}/../../tests/data/flowlogs/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Every record and every error of a fixture, and the reader's skipped count.
fn read_all(name: &str, forced: Option<FlowFormat>) -> (Vec<Observed>, Vec<LineError>, u64) {
    let input = open(&path(name)).unwrap();
    let mut r = Reader::new(name, input, forced);
    let (mut ok, mut errs) = (Vec::new(), Vec::new());
    while let Some(x) = r.next() {
        match x {
            Ok(o) => ok.push(o),
            Err(e) => errs.push(e),
        }
    }
    (ok, errs, r.skipped())
}

fn read_bytes(bytes: &[u8], forced: Option<FlowFormat>) -> (Vec<Observed>, Vec<LineError>, u64) {
    let mut r = Reader::new("mem", BufReader::new(Cursor::new(bytes.to_vec())), forced);
    let (mut ok, mut errs) = (Vec::new(), Vec::new());
    for x in r.by_ref() {
        match x {
            Ok(o) => ok.push(o),
            Err(e) => errs.push(e),
        }
    }
    (ok, errs, r.skipped())
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn labels(l: &[(&str, &str)]) -> Vec<(String, String)> {
    l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn pod(ns: &str, name: &str, addr: Option<&str>, l: &[(&str, &str)]) -> End {
    End {
        namespace: Some(ns.to_string()),
        pod: Some(name.to_string()),
        ip: addr.and_then(ip),
        labels: labels(l),
        ..End::default()
    }
}

fn addr(a: &str) -> End {
    End { ip: ip(a), ..End::default() }
}

/// A record with the defaults of most: TCP, no verdict, one event.
fn rec(format: FlowFormat, line: u64, src: End, dst: End) -> Observed {
    Observed {
        line,
        time: None,
        src,
        dst,
        src_port: None,
        protocol: Protocol::Tcp,
        port: None,
        verdict: None,
        side: Side::Both,
        policies: vec![],
        reply: false,
        opens: None,
        events: 1,
        connections: None,
        format,
    }
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

#[test]
fn hubble_fields() {
    let (got, errs, skipped) = read_all("hubble.jsonl", None);
    assert_eq!(errs, vec![]);
    assert_eq!(skipped, 2, "node_status and lost_events carry no flow");
    let web = |a| pod("shop", "web-1", a, &[("app", "web"), ("tier", "front")]);
    let db = pod("shop", "db-0", Some("10.0.2.7"), &[("app", "db")]);
    let h = FlowFormat::Hubble;
    let want = vec![
        Observed {
            time: Some("2024-05-01T10:00:00.100Z".into()),
            src_port: Some(43512),
            port: Some(5432),
            verdict: Some(Verdict::Allowed),
            side: Side::Egress,
            policies: strings(&["shop/allow-web-to-db"]),
            opens: Some(true),
            ..rec(h, 1, web(Some("10.0.1.5")), db.clone())
        },
        // The reply (camelCase, `isReply` wrapped), turned around.
        Observed {
            time: Some("2024-05-01T10:00:00.200Z".into()),
            src_port: Some(43512),
            port: Some(5432),
            verdict: Some(Verdict::Allowed),
            side: Side::Both,
            reply: true,
            opens: Some(false),
            ..rec(h, 2, web(Some("10.0.1.5")), db.clone())
        },
        Observed {
            time: Some("2024-05-01T10:00:01Z".into()),
            src_port: Some(50000),
            port: Some(5432),
            verdict: Some(Verdict::Denied),
            side: Side::Ingress,
            policies: strings(&["shop/deny-other"]),
            opens: Some(true),
            ..rec(h, 3, pod("other", "probe-x", Some("10.0.3.9"), &[("app", "probe")]), db.clone())
        },
        // Dropped, but not by a policy: no verdict.
        Observed {
            time: Some("2024-05-01T10:00:02Z".into()),
            src_port: Some(40000),
            protocol: Protocol::Udp,
            port: Some(53),
            ..rec(h, 4, pod("shop", "web-1", Some("10.0.1.5"), &[]), pod("shop", "db-0", Some("10.0.2.7"), &[]))
        },
        // Audit: what the policies would have done; a mapped IPv6 address is IPv4; a reserved identity is a kind.
        Observed {
            time: Some("2024-05-01T10:00:04Z".into()),
            src_port: Some(41000),
            protocol: Protocol::Udp,
            port: Some(443),
            verdict: Some(Verdict::Denied),
            side: Side::Egress,
            policies: strings(&["default-deny"]),
            ..rec(
                h,
                6,
                pod("shop", "web-1", Some("10.0.1.5"), &[("app", "web")]),
                End { ip: ip("93.184.216.34"), kind: Some("world".into()), ..End::default() },
            )
        },
        // A bare flow, the direction as a number; ICMP's message is the port.
        Observed {
            time: Some("2024-05-01T10:00:05Z".into()),
            protocol: Protocol::Icmp,
            port: Some(icmp_port(8, 0)),
            verdict: Some(Verdict::Allowed),
            side: Side::Egress,
            ..rec(
                h,
                7,
                pod("shop", "web-1", Some("10.0.1.5"), &[]),
                End { ip: ip("10.0.0.1"), kind: Some("host".into()), ..End::default() },
            )
        },
    ];
    assert_eq!(got, want);
}

#[test]
fn calico_fields() {
    let (got, errs, skipped) = read_all("calico.jsonl", None);
    assert_eq!(errs, vec![]);
    assert_eq!(skipped, 0);
    let c = FlowFormat::Calico;
    let want = vec![
        // Goldmane's FlowResult: int64 as strings, enums as names.
        Observed {
            time: Some("2024-05-01T10:00:00Z".into()),
            port: Some(5432),
            verdict: Some(Verdict::Allowed),
            side: Side::Egress,
            policies: strings(&["shop/allow-web"]),
            events: 22,
            connections: Some(3),
            ..rec(
                c,
                1,
                End {
                    namespace: Some("shop".into()),
                    aggregated: Some("web-7d9f8b-*".into()),
                    labels: labels(&[("app", "web"), ("tier", "front")]),
                    ..End::default()
                },
                pod("shop", "db-0", None, &[("app", "db")]),
            )
        },
        // Whisker's flat response.
        Observed {
            time: Some("2024-05-01T10:01:00Z".into()),
            protocol: Protocol::Udp,
            port: Some(53),
            verdict: Some(Verdict::Denied),
            side: Side::Ingress,
            policies: strings(&["security.base"]),
            events: 4,
            ..rec(
                c,
                2,
                End { kind: Some("pub".into()), ..End::default() },
                pod("shop", "db-0", None, &[("app", "db"), ("tier", "data")]),
            )
        },
        // camelCase `key`, enums as numbers, Pass: no verdict.
        Observed {
            time: Some("2024-05-01T10:01:40Z".into()),
            port: Some(8080),
            side: Side::Ingress,
            connections: Some(1),
            ..rec(
                c,
                3,
                End { kind: Some("hep".into()), ..End::default() },
                End { namespace: Some("shop".into()), aggregated: Some("api-*".into()), ..End::default() },
            )
        },
        // Calico's flow-log JSON, with addresses.
        Observed {
            time: Some("2024-05-01T10:03:20Z".into()),
            port: Some(5432),
            verdict: Some(Verdict::Allowed),
            side: Side::Ingress,
            policies: strings(&["shop/default.allow-web"]),
            events: 10,
            connections: Some(2),
            ..rec(
                c,
                4,
                End {
                    namespace: Some("shop".into()),
                    aggregated: Some("web-7d9f8b-*".into()),
                    ip: ip("10.0.1.5"),
                    labels: labels(&[("app", "web")]),
                    ..End::default()
                },
                End {
                    namespace: Some("shop".into()),
                    aggregated: Some("db-*".into()),
                    ip: ip("10.0.2.7"),
                    ..End::default()
                },
            )
        },
    ];
    assert_eq!(got, want);
}

#[test]
fn knp_fields_and_join() {
    let (got, errs, skipped) = read_all("knp.jsonl", None);
    assert_eq!(errs, vec![]);
    // Lines 1, 3 (other messages), 2, 5, 8 (packets; their records have their line), 6 (a verdict for no packet).
    assert_eq!(skipped, 6);
    let k = FlowFormat::KubeNetworkPolicies;
    let want = vec![
        Observed {
            time: Some("2024-05-01T10:00:00.123Z".into()),
            src_port: Some(43512),
            port: Some(5432),
            verdict: Some(Verdict::Allowed),
            opens: Some(true),
            ..rec(k, 2, pod("shop", "web-1", Some("10.0.1.5"), &[]), pod("shop", "db-0", Some("10.0.2.7"), &[]))
        },
        Observed {
            time: Some("2024-05-01T10:00:01Z".into()),
            src_port: Some(5353),
            protocol: Protocol::Udp,
            port: Some(53),
            verdict: Some(Verdict::Denied),
            side: Side::Egress,
            opens: Some(true),
            ..rec(k, 5, pod("other", "probe-x", Some("fd00::5"), &[]), addr("fd00::99"))
        },
        // The packet as text.
        Observed {
            time: Some("2024-05-01T10:00:03Z".into()),
            src_port: Some(1234),
            port: Some(5432),
            verdict: Some(Verdict::Allowed),
            opens: Some(true),
            ..rec(k, 8, addr("192.168.1.4"), pod("shop", "db-0", Some("10.0.2.7"), &[]))
        },
    ];
    assert_eq!(got, want);
}

#[test]
fn knp_verdict_before_packet_is_not_joined() {
    let lines = concat!(
        r#"{"ts":1,"msg":"Finished syncing packet","v":2,"id":3,"verdict":"accept"}"#,
        "\n",
        r#"{"ts":2,"msg":"Evaluating packet","srcPod":"a/b","dstPod":"none","packet":{"ID":3,"SrcIP":"10.0.0.1","DstIP":"10.0.0.2","Proto":"TCP","SrcPort":1,"DstPort":2}}"#,
        "\n"
    );
    let (got, errs, skipped) = read_bytes(lines.as_bytes(), None);
    assert_eq!((got.len(), errs.len(), skipped), (0, 0, 2));
}

#[test]
fn gadget_fields() {
    let (got, errs, skipped) = read_all("gadget.jsonl", None);
    assert_eq!(errs, vec![]);
    assert_eq!(skipped, 1, "close");
    let g = FlowFormat::Gadget;
    let want = vec![
        Observed {
            time: Some("2024-05-01T10:02:00.000000001Z".into()),
            src_port: Some(43600),
            port: Some(5432),
            opens: Some(true),
            ..rec(
                g,
                1,
                pod("shop", "web-1", Some("10.0.1.5"), &[("app", "web"), ("tier", "front")]),
                pod("shop", "db-0", Some("10.0.2.7"), &[("app", "db")]),
            )
        },
        // An accept, turned around: the traced pod is the destination.
        Observed {
            time: Some("2024-05-01T10:02:00.000000002Z".into()),
            src_port: Some(43600),
            port: Some(5432),
            opens: Some(true),
            ..rec(g, 2, addr("10.0.1.5"), pod("shop", "db-0", Some("10.0.2.7"), &[]))
        },
        // The older event shape.
        Observed {
            time: Some("2024-05-01T10:02:00Z".into()),
            src_port: Some(38000),
            port: Some(53),
            opens: Some(true),
            ..rec(g, 4, pod("shop", "web-1", Some("10.0.1.5"), &[]), addr("10.96.0.10"))
        },
    ];
    assert_eq!(got, want);
    // A message that is no connection, read as a gadget event: skipped.
    let (got, errs, skipped) = read_bytes(br#"{"type":"err","message":"cannot attach"}"#, Some(g));
    assert_eq!((got.len(), errs.len(), skipped), (0, 0, 1));
}

#[test]
fn netpol_fields() {
    let (got, errs, skipped) = read_all("netpol.jsonl", None);
    assert_eq!(errs, vec![]);
    assert_eq!(skipped, 1, "the query line answered with an error");
    let n = FlowFormat::Netpol;
    let web = End { namespace: Some("shop".into()), pod: Some("web-1".into()), ..End::default() };
    let want = vec![
        Observed { port: Some(5432), verdict: Some(Verdict::Allowed), ..rec(n, 1, web.clone(), addr("10.0.2.7")) },
        Observed {
            protocol: Protocol::Udp,
            port: Some(53),
            verdict: Some(Verdict::Denied),
            policies: strings(&["shop/deny-dns"]),
            ..rec(n, 2, web.clone(), pod("shop", "db-0", None, &[]))
        },
        Observed {
            time: Some("2024-05-01T10:03:00Z".into()),
            src_port: Some(43000),
            protocol: Protocol::Udp,
            port: Some(443),
            verdict: Some(Verdict::Denied),
            side: Side::Egress,
            policies: strings(&["shop/egress-lockdown"]),
            events: 4,
            connections: Some(2),
            ..rec(
                n,
                3,
                End {
                    namespace: Some("shop".into()),
                    aggregated: Some("web-7d9f8b-*".into()),
                    labels: labels(&[("app", "web")]),
                    ..End::default()
                },
                End { ip: ip("93.184.216.34"), kind: Some("world".into()), ..End::default() },
            )
        },
        Observed {
            protocol: Protocol::Icmp,
            port: Some(icmp_port(3, 1)),
            opens: Some(true),
            ..rec(n, 5, End { pod: Some("web-1".into()), ..End::default() }, addr("10.0.0.1"))
        },
    ];
    assert_eq!(got, want);
}

#[test]
fn netpol_errors() {
    for (line, message) in [
        (r#"{"src":"a/b","dst":"c/d","verdict":"maybe"}"#, "unknown verdict `maybe`"),
        (r#"{"src":"a/b","dst":"c/d","side":"up"}"#, "unknown side `up`"),
        (r#"{"src":"a/b","dst":"c/d","port":80,"icmp":{"type":8}}"#, "`icmp` is for ICMP"),
        (r#"{"src":"a/b","dst":"c/d","protocol":"ICMP","port":80}"#, "ICMP has no port"),
        (r#"{"src":"a/b","dst":"c/d","port":70000}"#, "invalid port 70000"),
        (r#"{"src":{},"dst":"c/d"}"#, "src: an empty endpoint"),
        (r#"{"src":{"pods":"x"},"dst":"c/d"}"#, "unknown field `pods`"),
        (r#"{"src":"a/b","dst":{"ip":"10.0.0.256"}}"#, "dst.ip: `10.0.0.256` is not a valid IP address"),
        (r#"{"src":"a/b","dst":7}"#, "dst: expected `namespace/pod`"),
        (r#"{"src":"a/b","dst":"c/d","events":-1}"#, "events: expected a count"),
        (r#"{"src":"a/b","dst":"c/d","policies":[{"namespace":"x"}]}"#, "needs a `name`"),
    ] {
        let (got, errs, _) = read_bytes(line.as_bytes(), Some(FlowFormat::Netpol));
        assert_eq!(got.len(), 0, "{line}");
        assert!(errs[0].message.contains(message), "{line}: {}", errs[0].message);
    }
    // A bare flow without a verdict (protobuf's JSON leaves the zero enum out) is still Hubble's.
    let bare = r#"{"IP":{"source":"10.0.0.1","destination":"10.0.0.2"},"l4":{"UDP":{"destination_port":53}}}"#;
    assert_eq!(FlowFormat::detect(bare), Some(FlowFormat::Hubble));
}

#[test]
fn format_names() {
    for f in FlowFormat::ALL {
        assert_eq!(FlowFormat::parse(f.name()), Ok(f));
    }
    assert_eq!(FlowFormat::parse("Kube-Network-Policies"), Ok(FlowFormat::KubeNetworkPolicies));
    assert!(FlowFormat::parse("cilium").unwrap_err().contains("hubble, calico"));
}

/// The first line of each fixture, and its format.
fn firsts() -> Vec<(String, FlowFormat)> {
    [
        ("hubble.jsonl", FlowFormat::Hubble),
        ("calico.jsonl", FlowFormat::Calico),
        ("knp.jsonl", FlowFormat::KubeNetworkPolicies),
        ("gadget.jsonl", FlowFormat::Gadget),
        ("netpol.jsonl", FlowFormat::Netpol),
    ]
    .into_iter()
    .map(|(f, fmt)| {
        let text = std::fs::read_to_string(path(f)).unwrap();
        (text.lines().next().unwrap().to_string(), fmt)
    })
    .collect()
}

#[test]
fn detect_each_line() {
    for (name, fmt) in [
        ("hubble.jsonl", FlowFormat::Hubble),
        ("calico.jsonl", FlowFormat::Calico),
        ("knp.jsonl", FlowFormat::KubeNetworkPolicies),
        ("gadget.jsonl", FlowFormat::Gadget),
        ("netpol.jsonl", FlowFormat::Netpol),
    ] {
        for (i, line) in std::fs::read_to_string(path(name)).unwrap().lines().enumerate() {
            assert_eq!(FlowFormat::detect(line), Some(fmt), "{name}:{}", i + 1);
        }
    }
    assert_eq!(FlowFormat::detect("not json"), None);
    assert_eq!(FlowFormat::detect(r#"{"a":1}"#), None);
    assert_eq!(FlowFormat::detect("[1,2]"), None);
}

#[test]
fn mixed_file_with_bad_lines() {
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    let firsts = firsts();
    for (i, (line, _)) in firsts.iter().enumerate() {
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
        match i {
            0 => bytes.extend_from_slice(b"{\"flow\": {\n"),
            1 => bytes.extend_from_slice(b"   \n"),
            2 => bytes.extend_from_slice(b"{\"src\": \"a/b\", \"dst\": \"c\xff\"}\n"),
            3 => bytes.extend_from_slice(b"{\"what\": 1}\n"),
            _ => {}
        }
    }
    bytes.extend_from_slice(br#"{"src":"a/b","dst":"10.0.0.1","protocol":"GRE"}"#);
    let (got, errs, skipped) = read_bytes(&bytes, None);
    let formats: Vec<(u64, FlowFormat)> = got.iter().map(|o| (o.line, o.format)).collect();
    // The knp line is a message about no packet: skipped.
    assert_eq!(
        formats,
        vec![(1, FlowFormat::Hubble), (3, FlowFormat::Calico), (7, FlowFormat::Gadget), (9, FlowFormat::Netpol)]
    );
    assert_eq!(skipped, 1);
    let errs: Vec<(u64, &str)> = errs.iter().map(|e| (e.line, e.message.as_str())).collect();
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert_eq!(errs[0].0, 2);
    assert_eq!(errs[0].1, "invalid Hubble flow: EOF while parsing an object (column 10)");
    assert_eq!(errs[1], (6, "line 6 is not valid UTF-8 (at byte 25)"));
    assert_eq!(errs[2].0, 8);
    assert!(errs[2].1.contains("tried hubble") && errs[2].1.contains("netpol"), "{}", errs[2].1);
    assert_eq!(errs[3].0, 10);
    assert!(errs[3].1.contains("unsupported protocol `GRE`"), "{}", errs[3].1);
    let all = read_bytes(&bytes, None).1;
    assert!(all.iter().all(|e| e.file == "mem"));
}

#[test]
fn forced_format_reads_other_shapes_as_errors() {
    let (hubble_line, _) = firsts().swap_remove(0);
    let (got, errs, _) = read_bytes(hubble_line.as_bytes(), Some(FlowFormat::Calico));
    assert_eq!(got.len(), 0);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("no `proto`"), "{}", errs[0].message);
    // Goldmane's result whose `Key` is not the flow's first member: not taken for Hubble's.
    let goldmane = br#"{"flow":{"start_time":"1714557600","Key":{"source_name":"a-*","dest_name":"b","proto":"udp","dest_port":"53","action":"Allow","reporter":"Dst"}}}"#;
    let (got, errs, _) = read_bytes(goldmane, None);
    assert_eq!(errs, vec![]);
    assert_eq!((got[0].format, got[0].port, got[0].side), (FlowFormat::Calico, Some(53), Side::Ingress));
    let (got, errs, _) = read_bytes(br#"{"src":"a/b","dst":"c/d"}"#, Some(FlowFormat::Hubble));
    assert_eq!((got.len(), errs.len()), (0, 1));
    assert!(errs[0].message.contains("not a Hubble flow"), "{}", errs[0].message);
}

#[test]
fn gzip_is_detected_by_its_bytes() {
    let plain = std::fs::read(path("hubble.jsonl")).unwrap();
    let dir = std::env::temp_dir().join(format!("netpol-flowlog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Two gzip members (a rotated log concatenated), under a name that does not say gzip.
    let file = dir.join("flows.log");
    let mut out = Vec::new();
    for half in [&plain[..plain.len() / 2], &plain[plain.len() / 2..]] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(half).unwrap();
        out.extend(gz.finish().unwrap());
    }
    std::fs::write(&file, &out).unwrap();
    let mut r = Reader::new("flows.log", open(file.to_str().unwrap()).unwrap(), None);
    let got: Vec<Observed> = r.by_ref().map(Result::unwrap).collect();
    let (want, _, _) = read_all("hubble.jsonl", None);
    assert_eq!(got, want);
    assert_eq!(r.skipped(), 2);
    // A truncated stream: an error (after the lines decoded before the cut, if any) ends the reading.
    std::fs::write(&file, &out[..out.len() / 4]).unwrap();
    let mut r = Reader::new("flows.log", open(file.to_str().unwrap()).unwrap(), None);
    let results: Vec<Result<Observed, LineError>> = r.by_ref().collect();
    let last = results.last().unwrap().as_ref().unwrap_err();
    assert!(last.message.starts_with(&format!("cannot read line {}:", last.line)), "{}", last.message);
    assert!(results[..results.len() - 1].iter().all(|x| x.is_ok()), "{results:?}");
    assert!(r.next().is_none());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(open("/nonexistent/flows.log").is_err());
}

fn fold(records: Vec<Observed>) -> Vec<Folded> {
    let mut f = Folder::new();
    for o in records {
        f.add("f", o);
    }
    f.finish()
}

#[test]
fn fold_hubble_syn_reply_and_repeats() {
    let (mut records, _, _) = read_all("hubble.jsonl", None);
    // The SYN seen again at the destination's ingress (same 5-tuple): one connection.
    let mut again = records[0].clone();
    again.line = 9;
    again.side = Side::Both;
    again.time = Some("2024-05-01T10:00:00.150Z".into());
    records.push(again);
    let folded = fold(records);
    let first = &folded[0];
    assert_eq!((first.file.as_str(), first.line), ("f", 1));
    assert_eq!(first.connections, 1, "SYN at egress + same SYN at ingress + reply");
    assert_eq!(first.events, 3);
    assert_eq!(first.counts, Counts { egress_allowed: 1, allowed: 2, ..Counts::default() });
    assert_eq!(first.policies, strings(&["shop/allow-web-to-db"]));
    assert_eq!(first.first_time.as_deref(), Some("2024-05-01T10:00:00.100Z"));
    assert_eq!(first.last_time.as_deref(), Some("2024-05-01T10:00:00.200Z"));
    assert_eq!(folded.len(), 5);
    // The policy drop: a SYN, one connection, denied at ingress.
    assert_eq!((folded[1].line, folded[1].connections, folded[1].counts.ingress_denied), (3, 1, 1));
    // UDP without a verdict: one connection (opens unknown, a new 5-tuple), unknown count.
    assert_eq!((folded[2].line, folded[2].connections, folded[2].counts.unknown), (4, 1, 1));
}

#[test]
fn fold_repeated_events_and_source_ports() {
    let base = Observed {
        src_port: Some(40000),
        protocol: Protocol::Udp,
        port: Some(53),
        ..rec(FlowFormat::Netpol, 1, addr("10.0.0.1"), addr("10.0.0.2"))
    };
    let mut records = Vec::new();
    for (i, sport) in [40000, 40000, 40000, 40001].into_iter().enumerate() {
        records.push(Observed { line: i as u64 + 1, src_port: Some(sport), ..base.clone() });
    }
    // No source port: each counts.
    records.push(Observed { line: 5, src_port: None, ..base.clone() });
    records.push(Observed { line: 6, src_port: None, ..base.clone() });
    // A TCP segment that opens nothing, and a reply: no connection.
    records.push(Observed { line: 7, src_port: Some(40002), opens: Some(false), ..base.clone() });
    records.push(Observed { line: 8, src_port: Some(40003), reply: true, ..base.clone() });
    let folded = fold(records);
    assert_eq!(folded.len(), 1, "the source port is not in the class");
    assert_eq!((folded[0].connections, folded[0].events, folded[0].counts.unknown), (4, 8, 8));
}

#[test]
fn fold_syns_count_each_new_tuple() {
    let syn = Observed {
        src_port: Some(1000),
        port: Some(80),
        opens: Some(true),
        verdict: Some(Verdict::Denied),
        side: Side::Egress,
        ..rec(FlowFormat::Hubble, 1, addr("10.0.0.1"), addr("10.0.0.2"))
    };
    let records = vec![
        syn.clone(),
        // A retransmitted SYN.
        Observed { line: 2, ..syn.clone() },
        Observed { line: 3, src_port: Some(1001), ..syn.clone() },
        Observed { line: 4, src_port: Some(1002), ..syn.clone() },
    ];
    let folded = fold(records);
    assert_eq!((folded[0].connections, folded[0].events, folded[0].counts.egress_denied), (3, 4, 4));
}

#[test]
fn fold_aggregated_counts() {
    let (records, _, _) = read_all("calico.jsonl", None);
    let mut more = records[0].clone();
    more.line = 5;
    more.connections = Some(2);
    more.events = 5;
    more.policies = strings(&["shop/zz", "shop/allow-web"]);
    let mut all = records;
    all.push(more);
    let folded = fold(all);
    assert_eq!(folded.len(), 4);
    assert_eq!((folded[0].connections, folded[0].events, folded[0].counts.egress_allowed), (5, 27, 27));
    assert_eq!(folded[0].policies, strings(&["shop/allow-web", "shop/zz"]));
    assert_eq!(folded[0].format, FlowFormat::Calico);
    // Pass: no verdict, counted unknown; a record without a connection count counts one.
    assert_eq!((folded[2].counts.unknown, folded[2].connections), (1, 1));
    assert_eq!(folded[1].connections, 1);
}

#[test]
fn fold_window_is_bounded() {
    let tuple = |line: u64, sport: u16| Observed {
        src_port: Some(sport),
        protocol: Protocol::Udp,
        port: Some(53),
        ..rec(FlowFormat::Netpol, line, addr("10.0.0.1"), addr("10.0.0.2"))
    };
    let run = |window: usize| {
        let mut f = Folder::with_window(window);
        for (i, sport) in [1, 2, 3, 1].into_iter().enumerate() {
            f.add("f", tuple(i as u64 + 1, sport));
        }
        f.finish()[0].connections
    };
    assert_eq!(run(3), 3, "the repeat is within the window");
    assert_eq!(run(2), 4, "the first tuple was forgotten");
    // Recently seen tuples stay: 1 is touched again before 3 and 4 push the oldest out.
    let mut f = Folder::with_window(2);
    for (i, sport) in [1, 2, 1, 3, 1].into_iter().enumerate() {
        f.add("f", tuple(i as u64 + 1, sport));
    }
    assert_eq!(f.finish()[0].connections, 3);
}

#[test]
fn fold_orders_by_first_file_and_line() {
    let (knp, _, _) = read_all("knp.jsonl", None);
    let (gadget, _, _) = read_all("gadget.jsonl", None);
    let mut f = Folder::new();
    for o in gadget.clone() {
        f.add("gadget.jsonl", o);
    }
    // Joined records come in verdict order; a class is ordered by its packet's line. knp's line 2 (shop/web-1 at
    // 10.0.1.5 -> shop/db-0 at 10.0.2.7, 5432/TCP) is the class gadget's first line opened (the same pods and
    // addresses; its labels are the first event's): no class of its own.
    for o in knp.into_iter().rev() {
        f.add("knp.jsonl", o);
    }
    let got: Vec<(String, u64)> = f.finish().into_iter().map(|c| (c.file, c.line)).collect();
    let want: Vec<(String, u64)> = [("gadget.jsonl", 1), ("gadget.jsonl", 2), ("gadget.jsonl", 4)]
        .into_iter()
        .chain([("knp.jsonl", 5), ("knp.jsonl", 8)])
        .map(|(f, l)| (f.to_string(), l))
        .collect();
    assert_eq!(got, want);
    // The connect and the accept of one connection (same 5-tuple, turned around): one connection.
    let folded = fold(gadget);
    assert_eq!(folded.len(), 3, "the accept's source is an address, the connect's a pod: two classes");
    assert_eq!((folded[0].connections, folded[1].connections), (1, 0));
}
