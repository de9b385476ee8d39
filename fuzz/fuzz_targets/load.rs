//! Fuzzes the loader: arbitrary bytes in, never a panic out. Every input must yield a cluster plus
//! diagnostics, whatever the bytes are (invalid UTF-8, broken YAML/JSON, wrong types, odd values).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netpol_core::compile::{Endpoint, Engine, FlowInfo};
use netpol_core::l7::{HttpRequest, Request};
use netpol_core::load::Loader;
use netpol_core::model::PodId;
use netpol_core::portset::Protocol;

fuzz_target!(|data: &[u8]| {
    let mut loader = Loader::new();
    loader.add_bytes("fuzz.yaml", data);
    // A second input exercises cross-file state (duplicates, implicit namespaces, shared IPs).
    loader.add_bytes("fuzz-again.yaml", data);
    let loaded = loader.finish();
    // Touch the results so the work is not optimised away, and check invariants the rest of the engine
    // relies on: every id the loader hands out is in range.
    let c = &loaded.cluster;
    for p in &c.pods {
        assert!(p.ns.index() < c.namespaces.len());
    }
    for p in &c.policies {
        assert!(p.ns().is_none_or(|ns| ns.index() < c.namespaces.len()));
    }
    for d in &loaded.diagnostics {
        let _ = d.to_string();
    }
    // Whatever loaded must compile and answer without panicking, with a destination name too (domainNames).
    let e = Engine::new(loaded.cluster);
    if let Ok(mut m) = e.matrix(None) {
        let _ = m.pair_counts(&e);
    }
    let n = e.cluster().pods.len();
    if n > 0 {
        let (a, b) = (Endpoint::Pod { pod: PodId::new(0), ip: None }, Endpoint::Pod { pod: PodId::new(n - 1), ip: None });
        let _ = e.allowed(&a, &b, Protocol::Tcp, 80);
        let _ = e.explain(&a, &b, Protocol::Udp, 53).render();
        let ext = e.endpoint_for_ip("203.0.113.9".parse().unwrap());
        let _ = e.allowed_named(&a, &ext, Some("api.example.com"), Protocol::Tcp, 443);
        let _ = e.explain_named(&a, &ext, Some("api.example.com"), Protocol::Tcp, 443).render();
        // Cilium's L7 rules: one HTTP request and one DNS query on the connection.
        let http = Request::Http(HttpRequest::new("GET", "/api/v1").with_header("X-Token", "t"));
        let dns = Request::Dns("api.example.com".to_string());
        for req in [&http, &dns] {
            let info = FlowInfo { dst_name: Some("api.example.com"), request: Some(req) };
            let _ = e.allowed_flow(&a, &b, info, Protocol::Tcp, 80);
            let _ = e.explain_flow(&a, &ext, info, Protocol::Udp, 53).render();
        }
    }
});
