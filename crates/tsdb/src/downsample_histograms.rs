//! Downsampling of native histogram series as Thanos does it (`histogramAggregator`,
//! `downsampleHistogramBatch`, `downsampleHistogramAggrBatch`): per window a count (XOR),
//! the sum of the window's histograms and a counter histogram running over the whole batch
//! (float histogram sub-chunks), every histogram of a batch first reduced to the batch's
//! lowest schema. Min and max do not exist for histograms.

use strata_chunkenc::aggr::{AGGR_ENCODING, AggrParts, AggrType, encode_aggr_with};
use strata_chunkenc::{
    ChunkError, CounterResetHeader, Encoding, FloatHistogramIter, XorEncoder, XorIter,
    encode_float_histogram_chunk,
};
use strata_types::histogram::{CounterResetHint, FloatHistogram};
use strata_types::{Sample, is_stale_nan};

use crate::cutter::EncodedChunk;

/// A float histogram at a time.
pub(crate) type Point = (i64, FloatHistogram);

/// Thanos' `histogramAggregator`.
#[derive(Debug, Default)]
struct Aggregator {
    total: usize,
    count: usize,
    sum: Option<FloatHistogram>,
    counter: Option<FloatHistogram>,
    previous: Option<FloatHistogram>,
    schema: i32,
}

impl Aggregator {
    fn new(schema: i32) -> Self {
        Aggregator {
            schema,
            ..Aggregator::default()
        }
    }

    fn reset(&mut self) {
        self.count = 0;
        self.sum = None;
    }

    fn add(&mut self, original: &FloatHistogram) -> Result<(), ChunkError> {
        let fh = if original.schema > self.schema {
            original.copy_to_schema(self.schema)
        } else {
            original.clone()
        };
        let incompatible = |_| ChunkError::LayoutMismatch;
        match (&mut self.counter, &self.previous) {
            (Some(counter), Some(previous)) if self.total > 0 => {
                if fh.counter_reset_hint != CounterResetHint::Gauge
                    && original.detect_reset(previous)
                {
                    counter.add(&fh).map_err(incompatible)?;
                } else {
                    let mut delta = fh.clone();
                    delta.sub(previous).map_err(incompatible)?;
                    counter.add(&delta).map_err(incompatible)?;
                }
            }
            _ => self.counter = Some(fh.clone()),
        }
        match &mut self.sum {
            Some(sum) => sum.add(&fh).map_err(incompatible)?,
            None => self.sum = Some(fh.clone()),
        }
        if let Some(sum) = &mut self.sum {
            sum.counter_reset_hint = CounterResetHint::Gauge;
        }
        self.previous = Some(fh);
        self.count += 1;
        self.total += 1;
        Ok(())
    }
}

/// `minSchema`: the lowest schema of the batch's histograms.
fn min_schema(points: &[Point]) -> i32 {
    points
        .iter()
        .filter(|(_, h)| !is_stale_nan(h.sum))
        .map(|(_, h)| h.schema)
        .min()
        .unwrap_or(i32::MAX)
}

/// `downsampleBatch` with the histogram aggregator: `add(window_end, aggregator)` at each
/// window's end.
fn downsample_batch(
    points: &[Point],
    res: i64,
    schema: i32,
    mut add: impl FnMut(i64, &Aggregator),
) -> Result<(), ChunkError> {
    let mut aggr = Aggregator::new(schema);
    let mut next_t = -1i64;
    let last_t = points.last().map_or(0, |p| p.0);
    for (t, h) in points {
        if *t > next_t {
            if next_t != -1 {
                add(next_t, &aggr);
            }
            aggr.reset();
            next_t = super::downsample::current_window(*t, res).min(last_t);
        }
        aggr.add(h)?;
    }
    if aggr.total > 0 {
        add(next_t, &aggr);
    }
    Ok(())
}

/// The sub-chunks of one output chunk being built.
struct Builder {
    count: XorEncoder,
    sum: Vec<Point>,
    counter: Vec<Point>,
    gauge: bool,
    mint: i64,
    maxt: i64,
}

impl Builder {
    fn new(gauge: bool) -> Self {
        Builder {
            count: XorEncoder::new(),
            sum: Vec::new(),
            counter: Vec::new(),
            gauge,
            mint: i64::MAX,
            maxt: i64::MIN,
        }
    }

    fn track(&mut self, t: i64) {
        self.mint = self.mint.min(t);
        self.maxt = self.maxt.max(t);
    }

    fn finish(self) -> Result<EncodedChunk, ChunkError> {
        let header = |points: &[Point]| {
            if points
                .first()
                .is_some_and(|(_, h)| h.counter_reset_hint == CounterResetHint::Gauge)
            {
                CounterResetHeader::Gauge
            } else {
                CounterResetHeader::Unknown
            }
        };
        let part = |points: &[Point]| -> Result<Option<(Encoding, Vec<u8>)>, ChunkError> {
            if points.is_empty() {
                return Ok(None);
            }
            let c = encode_float_histogram_chunk(points, header(points))?;
            Ok(Some((Encoding::FloatHistogram, c.data)))
        };
        let count = (self.count.num_samples() > 0).then(|| (Encoding::Xor, self.count.bytes()));
        let parts = [count, part(&self.sum)?, None, None, part(&self.counter)?];
        Ok(EncodedChunk {
            min_time: self.mint,
            max_time: self.maxt,
            encoding: Encoding::Other(AGGR_ENCODING),
            data: encode_aggr_with(&parts),
        })
    }
}

/// `isGaugeSamples`: whether the batch's first histogram is a gauge.
fn is_gauge(points: &[Point]) -> bool {
    points
        .first()
        .is_some_and(|(_, h)| h.counter_reset_hint == CounterResetHint::Gauge)
}

/// `downsampleHistogramBatch`: one aggregate chunk of a batch of raw histograms.
fn raw_batch(batch: &[Point], res: i64) -> Result<EncodedChunk, ChunkError> {
    let mut b = Builder::new(is_gauge(batch));
    let schema = min_schema(batch);
    downsample_batch(batch, res, schema, |t, a| {
        b.track(t);
        let (Some(mut counter), Some(mut sum)) = (a.counter.clone(), a.sum.clone()) else {
            return;
        };
        if b.gauge {
            counter.counter_reset_hint = CounterResetHint::Gauge;
            sum.counter_reset_hint = CounterResetHint::Gauge;
        }
        b.counter.push((t, counter));
        b.sum.push((t, sum));
        b.count.append_unchecked(t, a.count as f64);
    })?;
    b.finish()
}

/// `DownsampleRaw` for a histogram series: aggregate chunks at resolution `res`, stale
/// markers left out, batches cut at window ends as for floats.
pub(crate) fn downsample_raw(points: &[Point], res: i64) -> Result<Vec<EncodedChunk>, ChunkError> {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Ok(Vec::new());
    };
    let num_chunks =
        super::downsample::target_chunk_count(first.0, last.0, 60_000, res, points.len());
    let batch_size = points.len() / num_chunks + 1;
    let mut out = Vec::with_capacity(num_chunks);
    let mut data = points;
    while !data.is_empty() {
        let mut j = batch_size.min(data.len());
        let window = data
            .get(j - 1)
            .map_or(0, |p| super::downsample::current_window(p.0, res));
        while data.get(j).is_some_and(|p| p.0 <= window) {
            j += 1;
        }
        let (head, tail) = data.split_at(j);
        data = tail;
        let batch: Vec<Point> = head
            .iter()
            .filter(|(_, h)| !is_stale_nan(h.sum))
            .cloned()
            .collect();
        if batch.is_empty() {
            continue;
        }
        out.push(raw_batch(&batch, res)?);
    }
    Ok(out)
}

/// Whether an aggregate chunk's counter is a histogram (`isHistogramAggrChunk`).
pub(crate) fn is_histogram_aggr(parts: &AggrParts<'_>) -> bool {
    matches!(
        parts.get(AggrType::Counter as usize).copied().flatten(),
        Some((Encoding::Histogram | Encoding::FloatHistogram, _))
    )
}

/// The histograms of one float histogram sub-chunk, stale markers and samples going back
/// in time left out (`expandFloatHistogramChunkIterator`).
fn expand(sub: &[u8], out: &mut Vec<Point>) -> Result<(), ChunkError> {
    let mut it = FloatHistogramIter::new(sub)?;
    let mut last_t = i64::MIN;
    for (t, h) in it.by_ref() {
        if is_stale_nan(h.sum) || t < last_t {
            continue;
        }
        last_t = t;
        out.push((t, h));
    }
    it.finish()
}

/// `downsampleHistogramAggrBatch`: one aggregate chunk from a batch of histogram aggregate
/// chunks.
fn aggr_batch(parts: &[AggrParts<'_>], res: i64) -> Result<EncodedChunk, ChunkError> {
    let mut counters = Vec::new();
    for p in parts {
        if let Some((Encoding::FloatHistogram, sub)) =
            p.get(AggrType::Counter as usize).copied().flatten()
        {
            expand(sub, &mut counters)?;
        }
    }
    let mut b = Builder::new(is_gauge(&counters));
    downsample_batch(&counters, res, min_schema(&counters), |t, a| {
        b.track(t);
        if let Some(counter) = a.counter.clone() {
            b.counter.push((t, counter));
        }
    })?;
    let mut sums = Vec::new();
    for p in parts {
        if let Some((Encoding::FloatHistogram, sub)) =
            p.get(AggrType::Sum as usize).copied().flatten()
        {
            expand(sub, &mut sums)?;
        }
    }
    if sums.is_empty() {
        return b.finish();
    }
    downsample_batch(&sums, res, min_schema(&sums), |t, a| {
        b.track(t);
        if let Some(sum) = a.sum.clone() {
            b.sum.push((t, sum));
        }
    })?;
    // Counts: the sum of the windows' counts (`genericAggregate` with the float sum).
    let mut counts: Vec<Sample> = Vec::new();
    for p in parts {
        if let Some((Encoding::Xor, sub)) = p.get(AggrType::Count as usize).copied().flatten() {
            let mut it = XorIter::new(sub)?;
            let mut last_t = i64::MIN;
            while let Some((t, v)) = it.next_sample() {
                if is_stale_nan(v) || t < last_t {
                    continue;
                }
                last_t = t;
                counts.push(Sample { t, v });
            }
            it.finish()?;
        }
    }
    let mut next_t = -1i64;
    let last_t = counts.last().map_or(0, |s| s.t);
    let mut window_sum = 0.0;
    let mut any = false;
    for s in &counts {
        if s.t > next_t {
            if any {
                b.count.append_unchecked(next_t, window_sum);
                b.track(next_t);
            }
            any = true;
            window_sum = 0.0;
            next_t = super::downsample::current_window(s.t, res).min(last_t);
        }
        window_sum += s.v;
    }
    if any {
        b.count.append_unchecked(next_t, window_sum);
        b.track(next_t);
    }
    b.finish()
}

/// `downsampleAggr` for histogram aggregate chunks: re-aggregated along chunk boundaries.
pub(crate) fn downsample_aggr(
    chunks: &[(i64, i64, AggrParts<'_>)],
    num_samples: usize,
    in_res: i64,
    out_res: i64,
) -> Result<Vec<EncodedChunk>, ChunkError> {
    let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
        return Ok(Vec::new());
    };
    let num_chunks =
        super::downsample::target_chunk_count(first.0, last.1, in_res, out_res, num_samples);
    let batch_size = (chunks.len() / num_chunks).max(1);
    let mut out = Vec::with_capacity(num_chunks);
    for part in chunks.chunks(batch_size) {
        let parts: Vec<AggrParts<'_>> = part.iter().map(|(_, _, p)| *p).collect();
        out.push(aggr_batch(&parts, out_res)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockOptions, BlockReader, BlockWriter};
    use strata_chunkenc::aggr::decode_aggr;
    use strata_types::Labels;
    use strata_types::histogram::{Histogram, Span};

    /// A counter histogram every 15 s for 3 h: bucket `i % 3` gets one observation per
    /// sample, so count = i + 1; a reset at 2 h.
    fn series() -> Vec<(i64, Histogram)> {
        let mut out = Vec::new();
        let mut counts = [0i64; 3];
        for i in 0..720i64 {
            let t = i * 15_000;
            if t == 7_200_000 {
                counts = [0; 3];
            }
            counts[(i % 3) as usize] += 1;
            let total: i64 = counts.iter().sum();
            out.push((
                t,
                Histogram {
                    count: total as u64,
                    sum: total as f64 * 1.5,
                    positive_spans: vec![Span {
                        offset: 0,
                        length: 3,
                    }],
                    positive_buckets: vec![counts[0], counts[1] - counts[0], counts[2] - counts[1]],
                    ..Histogram::default()
                },
            ));
        }
        out
    }

    fn write(dir: &std::path::Path, s: &[(i64, Histogram)]) -> BlockReader {
        let mut w = BlockWriter::new(dir).unwrap_or_else(|e| panic!("{e}"));
        let chunks: Vec<EncodedChunk> = strata_chunkenc::encode_histograms(s)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|c| EncodedChunk {
                min_time: c.min_time,
                max_time: c.max_time,
                encoding: c.encoding,
                data: c.data,
            })
            .collect();
        w.add_series(&Labels::from_pairs([("__name__", "h")]), &chunks)
            .unwrap_or_else(|e| panic!("{e}"));
        let (path, _) = w
            .finish(BlockOptions {
                min_time: Some(0),
                max_time: Some(10_800_000),
                ..BlockOptions::default()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        BlockReader::open(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// (count samples, counter histograms, sum histograms) of a downsampled block's series.
    fn aggregates(block: &BlockReader) -> (Vec<Sample>, Vec<Point>, Vec<Point>) {
        let r = block.index().all_postings().unwrap_or_default()[0];
        let entry = block.series(r).unwrap_or_else(|e| panic!("{e}"));
        let (mut counts, mut counters, mut sums) = (Vec::new(), Vec::new(), Vec::new());
        for c in &entry.chunks {
            let chunk = block
                .chunks()
                .chunk(c.chunk_ref)
                .unwrap_or_else(|e| panic!("{e}"));
            let parts = decode_aggr(&chunk.data).unwrap_or_else(|e| panic!("{e}"));
            assert!(is_histogram_aggr(&parts));
            if let Some((Encoding::Xor, sub)) = parts[0] {
                let mut it = XorIter::new(sub).unwrap_or_else(|e| panic!("{e}"));
                while let Some((t, v)) = it.next_sample() {
                    counts.push(Sample { t, v });
                }
            }
            if let Some((_, sub)) = parts[4] {
                expand(sub, &mut counters).unwrap_or_else(|e| panic!("{e}"));
            }
            if let Some((_, sub)) = parts[1] {
                expand(sub, &mut sums).unwrap_or_else(|e| panic!("{e}"));
            }
            assert!(parts[2].is_none() && parts[3].is_none());
        }
        (counts, counters, sums)
    }

    #[test]
    fn raw_histograms_become_count_sum_and_counter_aggregates() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = series();
        let raw = write(dir.path(), &s);
        let out = dir.path().join("5m");
        std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
        let (path, meta) = crate::downsample::downsample_block(
            &raw,
            &out,
            ulid::Ulid::generate(),
            crate::downsample::RES_5M,
            crate::meta::ThanosMeta::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no block"));
        assert_eq!(meta.thanos.map(|t| t.downsample.resolution), Some(300_000));
        let block = BlockReader::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let (counts, counters, sums) = aggregates(&block);
        // 36 windows of 20 samples.
        assert_eq!(counts.len(), 36);
        assert!(counts.iter().all(|c| c.v == 20.0));
        assert_eq!(counters.len(), 36);
        // The counter runs on through the reset: 480 before it, then 240 more.
        assert_eq!(counters.last().map(|c| c.1.count), Some(720.0));
        // Each window's sum is the sum of its histograms' counts.
        let first_window: u64 = s.iter().take(20).map(|(_, h)| h.count).sum();
        assert_eq!(sums.first().map(|p| p.1.count), Some(first_window as f64));
        assert!(
            sums.iter()
                .all(|(_, h)| h.counter_reset_hint == CounterResetHint::Gauge)
        );

        // 5m to 1h: three windows, counts and the counter carried over.
        let out = dir.path().join("1h");
        std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
        let (path, _) = crate::downsample::downsample_block(
            &block,
            &out,
            ulid::Ulid::generate(),
            crate::downsample::RES_1H,
            crate::meta::ThanosMeta {
                downsample: crate::meta::Downsample {
                    resolution: 300_000,
                },
                ..crate::meta::ThanosMeta::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no block"));
        let coarse = BlockReader::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let (counts, counters, sums) = aggregates(&coarse);
        assert_eq!(
            counts.iter().map(|c| c.v).collect::<Vec<_>>(),
            [240.0, 240.0, 240.0]
        );
        assert_eq!(counters.last().map(|c| c.1.count), Some(720.0));
        assert_eq!(sums.len(), 3);
    }
}
