//! Histogram chunks written from any sequence of histograms (compaction, downsampling):
//! cut where Prometheus' appender must start a new chunk (a schema, zero threshold or
//! custom bounds change, gauge versus counter, a counter reset, 120 samples), each chunk
//! in the union of its histograms' layouts (the empty buckets added, as Prometheus'
//! appender re-encodes a chunk when buckets appear).

use strata_types::histogram::{BucketIndices, CounterResetHint, FloatHistogram, Histogram};
use strata_types::is_stale_nan;

use super::{CounterResetHeader, FloatHistogramEncoder, HistogramEncoder};
use crate::Encoding;
use crate::error::ChunkError;

/// Histograms per chunk at most.
pub const HISTOGRAMS_PER_CHUNK: usize = 120;

/// One chunk written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenChunk {
    /// First timestamp.
    pub min_time: i64,
    /// Last timestamp.
    pub max_time: i64,
    /// `Histogram` or `FloatHistogram`.
    pub encoding: Encoding,
    /// The chunk's bytes.
    pub data: Vec<u8>,
}

/// Whether `curr` follows `prev` only after a counter reset, judged from the buckets
/// (hints of a merged sequence may come from different chunks, so they are not trusted).
fn is_reset(curr: &FloatHistogram, prev: &FloatHistogram) -> bool {
    let mut c = curr.clone();
    c.counter_reset_hint = CounterResetHint::Unknown;
    c.detect_reset(prev)
}

/// Where runs start and with which header: the index of each run's first histogram.
fn runs(floats: &[(i64, FloatHistogram)]) -> Vec<(usize, CounterResetHeader)> {
    let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
    let mut out: Vec<(usize, CounterResetHeader)> = Vec::new();
    // The current run's first histogram (stale markers aside), and the last one seen.
    let mut first: Option<&FloatHistogram> = None;
    let mut prev: Option<&FloatHistogram> = None;
    let mut len = 0usize;
    for (i, (_, h)) in floats.iter().enumerate() {
        let stale = is_stale_nan(h.sum);
        let reset = !stale && !gauge(h) && prev.is_some_and(|p| !gauge(p) && is_reset(h, p));
        let incompatible = !stale
            && first.is_some_and(|f| {
                f.schema != h.schema
                    || f.zero_threshold.to_bits() != h.zero_threshold.to_bits()
                    || f.custom_values != h.custom_values
                    || gauge(f) != gauge(h)
            });
        let cut = out.is_empty()
            || len >= HISTOGRAMS_PER_CHUNK
            || incompatible
            || (reset && first.is_some());
        if cut {
            let header = if stale {
                CounterResetHeader::Unknown
            } else if gauge(h) {
                CounterResetHeader::Gauge
            } else if reset {
                CounterResetHeader::CounterReset
            } else {
                CounterResetHeader::Unknown
            };
            out.push((i, header));
            first = None;
            len = 0;
        }
        if !stale {
            if first.is_none() {
                // A run that began with stale markers takes its first histogram's kind.
                if let Some(last) = out.last_mut()
                    && last.0 != i
                {
                    last.1 = if gauge(h) {
                        CounterResetHeader::Gauge
                    } else {
                        CounterResetHeader::Unknown
                    };
                }
                first = Some(h);
            }
            prev = Some(h);
        }
        len += 1;
    }
    out
}

/// The union of the layouts of a run's histograms (stale markers have none).
fn union_layout<'a>(layouts: impl Iterator<Item = BucketIndices> + 'a) -> BucketIndices {
    layouts.fold(BucketIndices::default(), |acc, l| acc.union(&l))
}

/// What writing a run of one kind of histogram needs: its layout, its widening, its
/// encoder.
trait RunHistogram: Sized {
    type Encoder;
    const ENCODING: Encoding;
    fn is_stale(&self) -> bool;
    fn indices(&self) -> BucketIndices;
    fn widened(&self, to: &BucketIndices) -> Option<Self>;
    fn encoder(header: CounterResetHeader) -> Self::Encoder;
    fn append(e: &mut Self::Encoder, t: i64, h: &Self) -> Result<(), ChunkError>;
    fn bytes(e: &Self::Encoder) -> Vec<u8>;
}

impl RunHistogram for FloatHistogram {
    type Encoder = FloatHistogramEncoder;
    const ENCODING: Encoding = Encoding::FloatHistogram;
    fn is_stale(&self) -> bool {
        is_stale_nan(self.sum)
    }
    fn indices(&self) -> BucketIndices {
        self.bucket_indices()
    }
    fn widened(&self, to: &BucketIndices) -> Option<Self> {
        FloatHistogram::widened(self, to)
    }
    fn encoder(header: CounterResetHeader) -> Self::Encoder {
        FloatHistogramEncoder::new(header)
    }
    fn append(e: &mut Self::Encoder, t: i64, h: &Self) -> Result<(), ChunkError> {
        e.append(t, h)
    }
    fn bytes(e: &Self::Encoder) -> Vec<u8> {
        e.bytes()
    }
}

impl RunHistogram for Histogram {
    type Encoder = HistogramEncoder;
    const ENCODING: Encoding = Encoding::Histogram;
    fn is_stale(&self) -> bool {
        is_stale_nan(self.sum)
    }
    fn indices(&self) -> BucketIndices {
        self.bucket_indices()
    }
    fn widened(&self, to: &BucketIndices) -> Option<Self> {
        Histogram::widened(self, to)
    }
    fn encoder(header: CounterResetHeader) -> Self::Encoder {
        HistogramEncoder::new(header)
    }
    fn append(e: &mut Self::Encoder, t: i64, h: &Self) -> Result<(), ChunkError> {
        e.append(t, h)
    }
    fn bytes(e: &Self::Encoder) -> Vec<u8> {
        e.bytes()
    }
}

/// One chunk of `run` (stale markers as they are, the others widened to the union of their
/// layouts); `None` for an empty run.
fn encode_run<H: RunHistogram>(
    run: &[(i64, H)],
    header: CounterResetHeader,
) -> Result<Option<WrittenChunk>, ChunkError> {
    let layout = union_layout(
        run.iter()
            .filter(|(_, h)| !h.is_stale())
            .map(|(_, h)| h.indices()),
    );
    let mut enc = H::encoder(header);
    for (t, h) in run {
        if h.is_stale() {
            H::append(&mut enc, *t, h)?;
            continue;
        }
        let wide = h.widened(&layout).ok_or(ChunkError::LayoutMismatch)?;
        H::append(&mut enc, *t, &wide)?;
    }
    Ok(match (run.first(), run.last()) {
        (Some(first), Some(last)) => Some(WrittenChunk {
            min_time: first.0,
            max_time: last.0,
            encoding: H::ENCODING,
            data: H::bytes(&enc),
        }),
        _ => None,
    })
}

/// The chunks of `samples` cut where [`runs`] of their float forms say.
fn encode_runs<H: RunHistogram>(
    samples: &[(i64, H)],
    floats: &[(i64, FloatHistogram)],
) -> Result<Vec<WrittenChunk>, ChunkError> {
    let starts = runs(floats);
    let mut out = Vec::with_capacity(starts.len());
    for (k, &(from, header)) in starts.iter().enumerate() {
        let to = starts.get(k + 1).map_or(samples.len(), |&(i, _)| i);
        out.extend(encode_run(
            samples.get(from..to).unwrap_or_default(),
            header,
        )?);
    }
    Ok(out)
}

/// One float histogram chunk holding all of `samples` (in time order; stale markers
/// aside, all of one schema, zero threshold and custom bounds, at most 65,535), in the union
/// of their layouts: a sub-chunk of an aggregate chunk, which cannot be cut.
pub fn encode_float_histogram_chunk(
    samples: &[(i64, FloatHistogram)],
    header: CounterResetHeader,
) -> Result<WrittenChunk, ChunkError> {
    let mut live = samples.iter().map(|(_, h)| h).filter(|h| !h.is_stale());
    if let Some(f) = live.next()
        && live.any(|h| {
            f.schema != h.schema
                || f.zero_threshold.to_bits() != h.zero_threshold.to_bits()
                || f.custom_values != h.custom_values
        })
    {
        return Err(ChunkError::LayoutMismatch);
    }
    Ok(encode_run(samples, header)?.unwrap_or(WrittenChunk {
        min_time: 0,
        max_time: 0,
        encoding: Encoding::FloatHistogram,
        data: FloatHistogramEncoder::new(header).bytes(),
    }))
}

/// Float histogram chunks holding `samples` (in time order).
pub fn encode_float_histograms(
    samples: &[(i64, FloatHistogram)],
) -> Result<Vec<WrittenChunk>, ChunkError> {
    encode_runs(samples, samples)
}

/// Integer histogram chunks holding `samples` (in time order).
pub fn encode_histograms(samples: &[(i64, Histogram)]) -> Result<Vec<WrittenChunk>, ChunkError> {
    let floats: Vec<(i64, FloatHistogram)> =
        samples.iter().map(|(t, h)| (*t, h.to_float())).collect();
    encode_runs(samples, &floats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FloatHistogramIter, HistogramIter};
    use strata_types::histogram::Span;

    fn h(count: u64, buckets: &[(i32, i64)]) -> Histogram {
        // Absolute counts per index, one span per bucket.
        let mut spans = Vec::new();
        let mut deltas = Vec::new();
        let (mut next, mut prev) = (0i32, 0i64);
        for &(idx, c) in buckets {
            spans.push(Span {
                offset: idx - next,
                length: 1,
            });
            next = idx + 1;
            deltas.push(c - prev);
            prev = c;
        }
        Histogram {
            count,
            sum: count as f64,
            positive_spans: spans,
            positive_buckets: deltas,
            ..Histogram::default()
        }
    }

    #[test]
    fn buckets_appearing_widen_the_chunk_and_resets_cut() {
        let samples = vec![
            (1000, h(1, &[(1, 1)])),
            (2000, h(3, &[(1, 1), (4, 2)])),
            (3000, h(4, &[(1, 2), (4, 2)])),
            // Counter reset: a new chunk.
            (4000, h(1, &[(2, 1)])),
            (5000, h(2, &[(2, 2)])),
        ];
        let chunks = encode_histograms(&samples).unwrap_or_default();
        assert_eq!(chunks.len(), 2);
        assert_eq!((chunks[0].min_time, chunks[0].max_time), (1000, 3000));
        assert_eq!(
            chunks[1].data[2] & 0xc0,
            CounterResetHeader::CounterReset as u8
        );
        let mut decoded = Vec::new();
        for c in &chunks {
            let mut it = HistogramIter::new(&c.data).unwrap_or_else(|e| panic!("{e}"));
            decoded.extend(it.by_ref().map(|(t, h)| (t, h.to_float())));
            it.finish().unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(decoded.len(), 5);
        for ((t, got), (wt, want)) in decoded.iter().zip(&samples) {
            assert_eq!(t, wt);
            // Same counts per bucket (the widened layout adds empty ones).
            let nonzero = |f: &FloatHistogram| -> Vec<(f64, f64)> {
                f.all_buckets()
                    .iter()
                    .filter(|b| b.count != 0.0)
                    .map(|b| (b.upper, b.count))
                    .collect()
            };
            assert_eq!(nonzero(got), nonzero(&want.to_float()));
            assert_eq!(got.count, want.count as f64);
        }
        let floats: Vec<(i64, FloatHistogram)> =
            samples.iter().map(|(t, h)| (*t, h.to_float())).collect();
        let fchunks = encode_float_histograms(&floats).unwrap_or_default();
        assert_eq!(fchunks.len(), 2);
        let mut n = 0;
        for c in &fchunks {
            let mut it = FloatHistogramIter::new(&c.data).unwrap_or_else(|e| panic!("{e}"));
            n += it.by_ref().count();
            it.finish().unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(n, 5);
    }

    #[test]
    fn long_sequences_and_schema_changes_cut() {
        let mut samples: Vec<(i64, Histogram)> = (0..250)
            .map(|i| (i * 1000, h(i as u64 + 1, &[(0, i + 1)])))
            .collect();
        samples.push((
            300_000,
            Histogram {
                schema: 1,
                ..h(300, &[(0, 300)])
            },
        ));
        let chunks = encode_histograms(&samples).unwrap_or_default();
        let sizes: Vec<i64> = chunks
            .iter()
            .map(|c| (c.max_time - c.min_time) / 1000 + 1)
            .collect();
        assert_eq!(sizes, vec![120, 120, 10, 1]);
    }
}
