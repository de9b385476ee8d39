//! Fuzzes the reading of flow logs: arbitrary bytes through `flowlog::Reader` (the first byte picks detection per
//! line or one forced format) and every record read through `flowlog::Folder`: never a panic, every error names a
//! line that was read, and the folded events add up to the records' events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netpol_input::flowlog::{FlowFormat, Folder, Reader};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let forced = FlowFormat::ALL.get(usize::from(pick) % (FlowFormat::ALL.len() + 1)).copied();
    let mut reader = Reader::new("fuzz", std::io::Cursor::new(rest), forced);
    // A small window, so that eviction runs too.
    let mut folder = Folder::with_window(4);
    let mut events = 0u64;
    while let Some(x) = reader.next() {
        match x {
            Ok(o) => {
                assert!(o.line >= 1 && o.line <= reader.lines());
                events = events.saturating_add(o.events);
                folder.add("fuzz", o);
            }
            Err(e) => assert!(e.line >= 1 && e.line <= reader.lines() + 1, "{e:?}"),
        }
    }
    let folded: u64 = folder.finish().iter().fold(0u64, |s, f| s.saturating_add(f.events));
    assert_eq!(folded, events);
});
