//! Arbitrary bytes as a tombstones file: what decodes must encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_tsdb::tombstones::Tombstones;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tombstones::decode(data) {
        let again = Tombstones::decode(&t.encode()).expect("encoded tombstones decode");
        assert_eq!(again, t);
    }
});
