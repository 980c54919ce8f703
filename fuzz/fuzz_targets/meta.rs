//! Arbitrary bytes as meta.json: parse, and what parses must serialise and parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_tsdb::BlockMeta;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = BlockMeta::parse(data) {
        let json = meta.to_json().expect("a parsed meta serialises");
        let again = BlockMeta::parse(&json).expect("serialised meta parses");
        assert_eq!(again, meta);
    }
});
