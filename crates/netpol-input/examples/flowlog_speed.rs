//! How fast flow logs are read: generates Hubble lines (`hubble observe -o json`, as a policy-verdict event with
//! labels and a policy, about 1.3 kB each) in memory and reads them, then reads and folds them, printing records
//! per second. Run it in release mode, on an idle machine:
//!
//! ```text
//! cargo run --release -p netpol-input --example flowlog_speed -- [LINES]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufReader, Cursor, Write};
use std::time::Instant;

use netpol_input::flowlog::{Folder, Reader};

fn main() {
    let lines: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let mut data = Vec::with_capacity(lines * 1400);
    for i in 0..lines {
        let (a, b, sport) = (i % 200, (i / 200) % 50, 32768 + (i % 28000));
        let (dir, reply) = if i % 3 == 0 { ("INGRESS", "true") } else { ("EGRESS", "false") };
        writeln!(
            data,
            concat!(
                r#"{{"flow":{{"time":"2024-05-01T10:00:{:02}.{:09}Z","uuid":"1b0c1c48-5c2e-4b6a-9d5e-{:012}","verdict":"FORWARDED","#,
                r#""ethernet":{{"source":"aa:00:00:00:00:01","destination":"aa:00:00:00:00:02"}},"#,
                r#""IP":{{"source":"10.0.{}.{}","destination":"10.1.{}.7","ipVersion":"IPv4"}},"#,
                r#""l4":{{"TCP":{{"source_port":{},"destination_port":8080,"flags":{{"SYN":true}}}}}},"#,
                r#""source":{{"ID":101,"identity":4242,"namespace":"shop","labels":["k8s:app=web{}","k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=shop","k8s:io.cilium.k8s.policy.cluster=default","k8s:io.cilium.k8s.policy.serviceaccount=web","k8s:io.kubernetes.pod.namespace=shop","k8s:tier=front"],"pod_name":"web-{}-7d9f8b-x2v4q","workloads":[{{"name":"web","kind":"Deployment"}}]}},"#,
                r#""destination":{{"ID":202,"identity":5151,"namespace":"shop","labels":["k8s:app=api","k8s:io.kubernetes.pod.namespace=shop"],"pod_name":"api-{}-5c6d7e-abcde"}},"#,
                r#""Type":"L3_L4","node_name":"kind-worker","event_type":{{"type":5}},"traffic_direction":"{}","is_reply":{},"#,
                r#""egress_allowed_by":[{{"name":"allow-web","namespace":"shop","labels":["k8s:io.cilium.k8s.policy.derived-from=NetworkPolicy"],"revision":"7","kind":"NetworkPolicy"}}],"#,
                r#""Summary":"TCP Flags: SYN"}},"node_name":"kind-worker","time":"2024-05-01T10:00:00.100Z"}}"#
            ),
            i % 60, i, i, a / 250, a % 250, b, sport, a % 7, a, b, dir, reply
        )
        .unwrap();
    }
    println!(
        "{lines} Hubble lines, {:.0} MB, {:.0} bytes a line",
        data.len() as f64 / 1e6,
        data.len() as f64 / lines as f64
    );
    for run in 1..=3 {
        let start = Instant::now();
        let mut r = Reader::new("gen", BufReader::with_capacity(1 << 16, Cursor::new(&data[..])), None);
        let mut n = 0u64;
        for x in r.by_ref() {
            x.unwrap();
            n += 1;
        }
        let read = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut r = Reader::new("gen", BufReader::with_capacity(1 << 16, Cursor::new(&data[..])), None);
        let mut f = Folder::new();
        for x in r.by_ref() {
            f.add("gen", x.unwrap());
        }
        let classes = f.finish().len();
        let fold = start.elapsed().as_secs_f64();
        println!(
            "run {run}: read {n} records in {read:.2} s: {:.0} records/s; read and folded into {classes} classes in {fold:.2} s: {:.0} records/s",
            n as f64 / read,
            n as f64 / fold
        );
    }
}
