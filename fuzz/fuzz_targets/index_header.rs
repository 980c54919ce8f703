//! Arbitrary bytes as a local index-header: decode it, list names and values, and plan
//! postings for a few matchers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_tsdb::index_header::IndexHeader;
use strata_types::Matcher;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = IndexHeader::decode("fuzz", bytes::Bytes::copy_from_slice(data)) else {
        return;
    };
    for name in header.label_names().into_iter().take(64) {
        if let Ok(values) = header.label_values(&name) {
            if let Some(value) = values.first() {
                let _ = header.plan_postings(&[Matcher::equal(name.clone(), value.clone())]);
            }
        }
        let _ = header.plan_postings(&[Matcher::not_equal(name, "")]);
    }
    let _ = header.series_offset(u32::MAX);
});
