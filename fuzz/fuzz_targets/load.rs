//! Fuzzes the loader: arbitrary bytes in, never a panic out. Every input must yield a cluster plus
//! diagnostics, whatever the bytes are (invalid UTF-8, broken YAML/JSON, wrong types, odd values).
#![no_main]

use libfuzzer_sys::fuzz_target;
use netpol_core::compile::{Endpoint, Engine};
use netpol_core::load::Loader;
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
        assert!((p.ns as usize) < c.namespaces.len());
    }
    for p in &c.policies {
        assert!((p.ns as usize) < c.namespaces.len());
    }
    for d in &loaded.diagnostics {
        let _ = d.to_string();
    }
    // Whatever loaded must compile and answer without panicking.
    let e = Engine::new(loaded.cluster);
    if let Ok(mut m) = e.matrix(None) {
        let _ = m.pair_counts(&e);
    }
    if let (Some(_), Some(_)) = (e.cluster.pods.first(), e.cluster.pods.last()) {
        let (a, b) = (Endpoint::Pod { pod: 0, ip: None }, Endpoint::Pod { pod: e.cluster.pods.len() as u32 - 1, ip: None });
        let _ = e.allowed(&a, &b, Protocol::Tcp, 80);
        let _ = e.explain(&a, &b, Protocol::Udp, 53).render();
    }
});
