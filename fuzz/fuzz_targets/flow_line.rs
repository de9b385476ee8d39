//! Fuzzes the reading of `query` flow lines: arbitrary text in, never a panic out, and the fast reader of the
//! common line never takes a line that serde_json rejects or reads differently.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    assert!(netpol_input::query::fast_path_agrees(line), "{line:?}");
});
