//! gRPC bodies with snappy-compressed messages: decoding never panics, and what it returns
//! is well-formed uncompressed framing within the size limit — whole (a request, as the
//! server reads it) and streamed in pieces (a response, as the querier reads it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_storepb::snappy::{MAX_REQUEST_BYTES, MessageStream, decode_messages};

/// Checks `out` is uncompressed framing; returns the messages' bytes.
fn check_framing(out: &[u8]) {
    let mut pos = 0usize;
    while pos < out.len() {
        assert_eq!(out[pos], 0, "every message is uncompressed");
        let len = u32::from_be_bytes([out[pos + 1], out[pos + 2], out[pos + 3], out[pos + 4]]);
        pos += 5 + len as usize;
    }
    assert_eq!(pos, out.len());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = decode_messages(data) {
        assert!(out.len() <= MAX_REQUEST_BYTES);
        check_framing(&out);
    }
    // The same bytes streamed in pieces of 7 bytes, messages bounded by 1 MiB.
    let limit = 1 << 20;
    let mut stream = MessageStream::decoding(limit);
    'chunks: for chunk in data.chunks(7) {
        stream.push(chunk);
        loop {
            match stream.next_message() {
                Ok(Some(message)) => {
                    assert!(message.len() <= 5 + limit);
                    check_framing(&message);
                }
                Ok(None) => break,
                Err(_) => break 'chunks,
            }
        }
    }
});
