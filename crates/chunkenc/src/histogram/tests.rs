use proptest::prelude::*;
use strata_types::histogram::{
    CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Histogram, Span,
};
use strata_types::stale_nan;

use super::*;

fn spans() -> Vec<Span> {
    vec![
        Span {
            offset: -2,
            length: 2,
        },
        Span {
            offset: 3,
            length: 3,
        },
    ]
}

fn histogram(i: i64) -> Histogram {
    Histogram {
        schema: 3,
        zero_threshold: 2f64.powi(-128),
        zero_count: 2 + i as u64,
        count: 40 + 7 * i as u64,
        sum: 18.4 + 3.25 * i as f64,
        positive_spans: spans(),
        negative_spans: vec![Span {
            offset: 0,
            length: 1,
        }],
        positive_buckets: vec![1 + i, 2, -1, 0, 3 + (i % 3)],
        negative_buckets: vec![4],
        ..Histogram::default()
    }
}

/// What the iterator gives back for the `n`-th (0-based) histogram appended.
fn as_read(mut h: Histogram, n: usize, header: CounterResetHeader) -> Histogram {
    h.counter_reset_hint = counter_reset_hint(header, n as u16 + 1);
    h
}

#[test]
fn integer_histograms_round_trip() {
    let mut enc = HistogramEncoder::new(CounterResetHeader::NotCounterReset);
    let times = [1000i64, 2000, 3000, 3999, 6000, 6001];
    for (i, t) in times.iter().enumerate() {
        enc.append(*t, &histogram(i as i64)).unwrap();
    }
    let bytes = enc.bytes();
    assert_eq!(&bytes[..3], &[0, 6, 0b0100_0000]);
    let mut it = HistogramIter::new(&bytes).unwrap();
    assert_eq!(it.header(), CounterResetHeader::NotCounterReset);
    let read: Vec<_> = it.by_ref().collect();
    it.finish().unwrap();
    for (i, (t, h)) in read.into_iter().enumerate() {
        assert_eq!(t, times[i]);
        assert_eq!(
            h,
            as_read(histogram(i as i64), i, CounterResetHeader::NotCounterReset)
        );
    }
    // The first histogram's hint is unknown, later ones not a reset.
    let hints: Vec<_> = HistogramIter::new(&bytes)
        .unwrap()
        .map(|(_, h)| h.counter_reset_hint)
        .collect();
    assert_eq!(hints[0], CounterResetHint::Unknown);
    assert_eq!(hints[1], CounterResetHint::NotCounterReset);
}

#[test]
fn stale_markers_carry_no_buckets() {
    let mut enc = HistogramEncoder::new(CounterResetHeader::Unknown);
    enc.append(10, &histogram(0)).unwrap();
    let stale = Histogram {
        sum: stale_nan(),
        ..histogram(1)
    };
    enc.append(20, &stale).unwrap();
    enc.append(30, &stale).unwrap();
    let read: Vec<_> = HistogramIter::new(&enc.bytes()).unwrap().collect();
    assert_eq!(read.len(), 3);
    assert!(strata_types::is_stale_nan(read[1].1.sum));
    assert!(read[2].1.positive_buckets.is_empty());
    // A chunk may start with a stale marker: its layout is empty.
    let mut enc = FloatHistogramEncoder::new(CounterResetHeader::Gauge);
    enc.append(
        5,
        &FloatHistogram {
            sum: stale_nan(),
            ..histogram(0).to_float()
        },
    )
    .unwrap();
    let read: Vec<_> = FloatHistogramIter::new(&enc.bytes()).unwrap().collect();
    assert!(strata_types::is_stale_nan(read[0].1.sum));
}

#[test]
fn a_different_layout_is_refused() {
    let mut enc = HistogramEncoder::new(CounterResetHeader::Unknown);
    enc.append(1, &histogram(0)).unwrap();
    let mut wider = histogram(1);
    wider.positive_spans[1].length = 4;
    wider.positive_buckets.push(1);
    assert_eq!(enc.append(2, &wider), Err(ChunkError::LayoutMismatch));
    let mut bad = histogram(1);
    bad.positive_buckets.pop();
    assert_eq!(enc.append(2, &bad), Err(ChunkError::LayoutMismatch));
    assert_eq!(
        enc.append(1, &histogram(1)),
        Err(ChunkError::OutOfOrder { t: 1, last: 1 })
    );
}

#[test]
fn custom_bucket_histograms_round_trip() {
    let h = FloatHistogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        count: 10.0,
        sum: 3.5,
        positive_spans: vec![Span {
            offset: 0,
            length: 3,
        }],
        positive_buckets: vec![2.0, 3.0, 5.0],
        custom_values: vec![0.1, 0.5, 2.25, 1e9],
        ..FloatHistogram::default()
    };
    let mut enc = FloatHistogramEncoder::new(CounterResetHeader::Unknown);
    enc.append(100, &h).unwrap();
    let mut next = h.clone();
    next.count = 12.0;
    next.positive_buckets[2] = 7.0;
    enc.append(200, &next).unwrap();
    let read: Vec<_> = FloatHistogramIter::new(&enc.bytes()).unwrap().collect();
    assert_eq!(read[0].1.custom_values, h.custom_values);
    assert_eq!(read[1].1.positive_buckets, vec![2.0, 3.0, 7.0]);
    assert_eq!(read[1].1.count, 12.0);
}

#[test]
fn truncated_and_hostile_chunks_are_errors() {
    let mut enc = HistogramEncoder::new(CounterResetHeader::Unknown);
    for i in 0..5 {
        enc.append(i * 1000, &histogram(i)).unwrap();
    }
    let bytes = enc.bytes();
    for cut in 0..bytes.len() - 1 {
        match HistogramIter::new(&bytes[..cut]) {
            Err(e) => assert!(matches!(e, ChunkError::MissingHeader { .. })),
            Ok(mut it) => {
                let n = it.by_ref().count();
                assert!(n < 5 || cut >= bytes.len() - 1, "cut {cut}: {n}");
                assert!(it.finish().is_err() || n == 5);
            }
        }
    }
    // A layout claiming 2^40 spans is refused, not allocated.
    let mut w = crate::bits::BitWriter::default();
    w.write_bits(0, 8);
    varbit::put_varbit_int(&mut w, 0);
    varbit::put_varbit_uint(&mut w, 1 << 40);
    let mut chunk = vec![0, 1, 0];
    chunk.extend(w.to_bytes());
    let mut it = HistogramIter::new(&chunk).unwrap();
    assert!(it.next().is_none());
    assert!(matches!(it.finish(), Err(ChunkError::BadHistogram { .. })));
}

fn float_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(1.0),
        -1e6f64..1e6,
        any::<f64>().prop_filter("not stale", |v| !strata_types::is_stale_nan(*v)),
    ]
}

proptest! {
    /// Any sequence of float histograms of one layout decodes to itself (NaN bits kept).
    #[test]
    fn float_histograms_round_trip(
        values in prop::collection::vec(prop::collection::vec(float_strategy(), 8), 1..40),
        deltas in prop::collection::vec(1i64..100_000, 40),
    ) {
        let mut enc = FloatHistogramEncoder::new(CounterResetHeader::Gauge);
        let mut t = 1_700_000_000_000i64;
        let mut want = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let h = FloatHistogram {
                schema: -1,
                zero_threshold: 0.001,
                count: v[0],
                zero_count: v[1],
                sum: v[2],
                positive_spans: vec![Span { offset: 1, length: 3 }],
                negative_spans: vec![Span { offset: -4, length: 2 }],
                positive_buckets: v[3..6].to_vec(),
                negative_buckets: v[6..8].to_vec(),
                ..FloatHistogram::default()
            };
            t += deltas[i];
            enc.append(t, &h).unwrap();
            want.push((t, h));
        }
        let bytes = enc.bytes();
        let mut it = FloatHistogramIter::new(&bytes).unwrap();
        let got: Vec<_> = it.by_ref().collect();
        it.finish().unwrap();
        prop_assert_eq!(got.len(), want.len());
        for ((gt, gh), (wt, wh)) in got.iter().zip(&want) {
            prop_assert_eq!(gt, wt);
            let bits = |h: &FloatHistogram| {
                let mut all = vec![h.count.to_bits(), h.zero_count.to_bits(), h.sum.to_bits()];
                all.extend(h.positive_buckets.iter().chain(&h.negative_buckets).map(|v| v.to_bits()));
                all
            };
            prop_assert_eq!(bits(gh), bits(wh));
            prop_assert_eq!(gh.counter_reset_hint, CounterResetHint::Gauge);
        }
    }

    /// Integer histograms of any counts round-trip, and re-encoding what was read gives
    /// the same bytes.
    #[test]
    fn integer_histograms_reencode_to_the_same_bytes(
        counts in prop::collection::vec((0u64..1_000_000, prop::collection::vec(-5000i64..5000, 4)), 1..60),
        deltas in prop::collection::vec(1i64..1_000_000, 60),
    ) {
        let mut enc = HistogramEncoder::new(CounterResetHeader::CounterReset);
        let mut t = 0i64;
        for (i, (count, buckets)) in counts.iter().enumerate() {
            t += deltas[i];
            let h = Histogram {
                schema: 0,
                count: *count,
                zero_count: count / 3,
                sum: *count as f64 * 0.25,
                positive_spans: vec![Span { offset: 0, length: 4 }],
                positive_buckets: buckets.clone(),
                ..Histogram::default()
            };
            enc.append(t, &h).unwrap();
        }
        let bytes = enc.bytes();
        let mut again = HistogramEncoder::new(CounterResetHeader::from_byte(bytes[2]));
        for (t, h) in HistogramIter::new(&bytes).unwrap() {
            again.append(t, &h).unwrap();
        }
        prop_assert_eq!(again.bytes(), bytes);
    }

    /// Arbitrary bytes never panic either decoder.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(it) = HistogramIter::new(&data) {
            let _ = it.take(1000).count();
        }
        if let Ok(it) = FloatHistogramIter::new(&data) {
            let _ = it.take(1000).count();
        }
    }
}
