//! Arbitrary text as a PromQL query: parsing and the Prometheus-style error checker must not
//! panic, and a query they reject gets a positioned parse error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(message) = strata_promql::prometheus_parse_error(query) {
        assert!(message.contains(": parse error: "), "{message}");
    }
    if let Err(e) = strata_promql::Engine::parse(query) {
        assert!(e.to_string().contains("parse error: "), "{e}");
    }
});
