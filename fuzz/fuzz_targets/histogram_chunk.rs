//! Arbitrary bytes as an integer and as a float histogram chunk: decoding never panics or
//! allocates without bound, and what decodes whole encodes again to the same histograms.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_chunkenc::{FloatHistogramEncoder, FloatHistogramIter, HistogramEncoder, HistogramIter};

fuzz_target!(|data: &[u8]| {
    if let Ok(mut it) = HistogramIter::new(data) {
        let header = it.header();
        let read: Vec<_> = it.by_ref().collect();
        if it.finish().is_ok() {
            let mut again = HistogramEncoder::new(header);
            if read.iter().all(|(t, h)| again.append(*t, h).is_ok()) {
                let bytes = again.bytes();
                let back: Vec<_> = HistogramIter::new(&bytes).map(|i| i.collect()).unwrap_or_default();
                assert_eq!(back.len(), read.len());
                for ((t1, h1), (t2, h2)) in back.iter().zip(&read) {
                    assert_eq!(t1, t2);
                    assert_eq!(h1.count, h2.count);
                    assert_eq!(h1.positive_buckets, h2.positive_buckets);
                    assert_eq!(h1.sum.to_bits(), h2.sum.to_bits());
                }
            }
        }
    }
    if let Ok(mut it) = FloatHistogramIter::new(data) {
        let header = it.header();
        let read: Vec<_> = it.by_ref().collect();
        if it.finish().is_ok() {
            let mut again = FloatHistogramEncoder::new(header);
            if read.iter().all(|(t, h)| again.append(*t, h).is_ok()) {
                let bytes = again.bytes();
                let back: Vec<_> =
                    FloatHistogramIter::new(&bytes).map(|i| i.collect()).unwrap_or_default();
                assert_eq!(back.len(), read.len());
                for ((t1, h1), (t2, h2)) in back.iter().zip(&read) {
                    assert_eq!(t1, t2);
                    assert_eq!(h1.count.to_bits(), h2.count.to_bits());
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&h1.positive_buckets), bits(&h2.positive_buckets));
                }
            }
        }
    }
});
