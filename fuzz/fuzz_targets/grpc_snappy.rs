//! gRPC request bodies with snappy-compressed messages: decoding never panics, and what it
//! returns is well-formed uncompressed framing within the size limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_storepb::snappy::{MAX_REQUEST_BYTES, decode_messages};

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = decode_messages(data) {
        assert!(out.len() <= MAX_REQUEST_BYTES);
        let mut pos = 0usize;
        while pos < out.len() {
            assert_eq!(out[pos], 0, "every message is uncompressed");
            let len = u32::from_be_bytes([out[pos + 1], out[pos + 2], out[pos + 3], out[pos + 4]]);
            pos += 5 + len as usize;
        }
        assert_eq!(pos, out.len());
    }
});
