//! Arbitrary bytes as an index file: open it and read everything it claims to hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_tsdb::index::IndexReader;

fuzz_target!(|data: &[u8]| {
    let Ok(index) = IndexReader::new("fuzz", bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    for name in index.label_names() {
        let Ok(values) = index.label_values(&name) else { continue };
        for value in values.iter().take(64) {
            if let Ok(refs) = index.postings(&name, value) {
                for r in refs.into_iter().take(64) {
                    let _ = index.series(r);
                }
            }
        }
    }
    if let Ok(all) = index.all_postings() {
        for r in all.into_iter().take(256) {
            let _ = index.series(r);
        }
    }
    for symbol in index.symbols().iter().take(1024) {
        if let Ok(s) = symbol {
            let _ = index.symbols().reverse_lookup(s);
        }
    }
});
