//! Arbitrary bytes as a chunk segment file and as an XOR chunk payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_chunkenc::{Encoding, XorIter, decode_floats};
use strata_tsdb::chunks::{ChunkReader, chunk_ref};

fuzz_target!(|data: &[u8]| {
    // As an XOR payload: decode every sample; re-encoding what decoded must round-trip.
    let mut samples = Vec::new();
    if decode_floats(Encoding::Xor, data, &mut samples).is_ok() {
        let mut encoder = strata_chunkenc::XorEncoder::new();
        for s in &samples {
            encoder.append_unchecked(s.t, s.v);
        }
        let encoded = encoder.bytes();
        let again: Vec<(i64, f64)> = XorIter::new(&encoded).map(|it| it.collect()).unwrap_or_default();
        assert_eq!(again.len(), samples.len());
        for (a, b) in again.iter().zip(&samples) {
            assert_eq!(a.0, b.t);
            assert_eq!(a.1.to_bits(), b.v.to_bits());
        }
    }
    // As several XOR chunks decoded together: the same as one at a time.
    if let Some((&n, rest)) = data.split_first() {
        let n = usize::from(n % 20) + 1;
        let size = rest.len().div_ceil(n).max(1);
        let chunks: Vec<&[u8]> = rest.chunks(size).collect();
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        let together = strata_chunkenc::decode_xor_chunks(&chunks, &mut ts, &mut vs);
        let (mut ets, mut evs) = (Vec::new(), Vec::new());
        let mut alone = Ok(());
        for (i, chunk) in chunks.iter().enumerate() {
            if let Err(err) = strata_chunkenc::decode_xor(chunk, &mut ets, &mut evs) {
                alone = Err((i, err));
                break;
            }
        }
        assert_eq!(together, alone);
        if together.is_ok() {
            assert_eq!(ts, ets);
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&vs), bits(&evs));
        }
    }
    // As a segment file: read a chunk at every offset the first bytes suggest.
    if let Ok(reader) = ChunkReader::new("fuzz", vec![bytes::Bytes::copy_from_slice(data)]) {
        for offset in 0..data.len().min(512) as u32 {
            let _ = reader.chunk(chunk_ref(0, offset));
        }
    }
});
