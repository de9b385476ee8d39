//! Fuzzes the Calico selector parser: arbitrary text in, never a panic out, and whatever parses prints (in its
//! canonical form) as a selector that parses back to the same expression and prints the same again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netpol_core::calico_selector::parse;
use netpol_core::labels::Labels;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = parse(text) else {
        return;
    };
    let canonical = expr.to_string();
    let again = parse(&canonical).unwrap_or_else(|e| panic!("canonical form {canonical:?} of {text:?}: {e}"));
    assert_eq!(again, expr, "{text:?} → {canonical:?}");
    assert_eq!(again.to_string(), canonical);
    // Matching must not panic either, and agree between the two.
    let mut labels = Labels::new();
    assert_eq!(expr.matches(&labels), again.matches(&labels));
    labels.insert("a", "b");
    labels.insert("k8s-app", "kube-dns");
    assert_eq!(expr.matches(&labels), again.matches(&labels));
});
