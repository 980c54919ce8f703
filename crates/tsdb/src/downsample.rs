//! Downsampling, in Thanos' format and with Thanos' arithmetic (`pkg/compact/downsample`):
//! raw samples become 5-minute aggregates, 5-minute aggregates become 1-hour aggregates.
//!
//! Each window `[t - t % r, t - t % r + r - 1]` yields one sample per aggregate at the
//! window's last millisecond (clamped to the batch's last sample): count, sum, min, max
//! and a counter that grows by each increase and by the whole value after a reset. The
//! counter sub-chunk also starts with the first raw sample and ends with the last raw value
//! repeated at the last window's timestamp, so [`apply_counter_resets`] can detect resets
//! between chunks. Output chunks use Thanos' aggregate chunk encoding (`0xff`).

use std::path::{Path, PathBuf};

use strata_chunkenc::aggr::{AGGR_ENCODING, AggrType, decode_aggr, encode_aggr};
use strata_chunkenc::{ChunkError, Encoding, XorEncoder, XorIter};
use strata_types::Sample;

use crate::block::{BlockOptions, BlockReader, BlockWriter};
use crate::cutter::EncodedChunk;
use crate::error::{Error, Result};
use crate::meta::{BlockMeta, ThanosMeta};

/// 5 minutes, in ms.
pub const RES_5M: i64 = 300_000;
/// 1 hour, in ms.
pub const RES_1H: i64 = 3_600_000;
/// A raw block spanning at least this long (40h) gets a 5m copy.
pub const RES_5M_MIN_SPAN: i64 = 40 * 3_600_000;
/// A 5m block spanning at least this long (10d) gets a 1h copy.
pub const RES_1H_MIN_SPAN: i64 = 10 * 24 * 3_600_000;

/// End (inclusive) of the window of width `r` holding `t`.
pub(crate) fn current_window(t: i64, r: i64) -> i64 {
    // Go's `%` truncates; for the negative times of tests this matches Thanos too.
    t - t % r + r - 1
}

/// How many output chunks so that each holds at most about 140 samples.
pub(crate) fn target_chunk_count(
    mint: i64,
    maxt: i64,
    in_res: i64,
    out_res: i64,
    count: usize,
) -> usize {
    let span = (maxt - mint) as f64;
    let max_samples = ((maxt - mint) / out_res.max(1)) as f64;
    let fullness = if span <= 0.0 {
        1.0
    } else {
        (count as f64 / (span / in_res.max(1) as f64)).min(1.0)
    };
    let expected = (max_samples * fullness) as usize + 1;
    let mut x = 1;
    while expected / x > 140 {
        x += 1;
    }
    x
}

#[derive(Debug, Clone, Copy)]
struct Aggregator {
    total: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    counter: f64,
    last: f64,
}

impl Aggregator {
    fn new() -> Self {
        Aggregator {
            total: 0,
            count: 0,
            sum: 0.0,
            min: f64::MAX,
            max: -f64::MAX,
            counter: 0.0,
            last: 0.0,
        }
    }

    /// A new window (the counter runs on).
    fn reset(&mut self) {
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::MAX;
        self.max = -f64::MAX;
    }

    fn add(&mut self, v: f64) {
        if self.total > 0 {
            if v < self.last {
                self.counter += v;
            } else {
                self.counter += v - self.last;
            }
        } else {
            self.counter = v;
        }
        self.last = v;
        self.sum += v;
        self.count += 1;
        self.total += 1;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }
}

/// Aggregates `data` per window, calling `add(window_end, aggregator)` at each window's
/// end; returns the last window's timestamp.
fn downsample_batch(data: &[Sample], res: i64, mut add: impl FnMut(i64, &Aggregator)) -> i64 {
    let mut aggr = Aggregator::new();
    let mut next_t = -1i64;
    let mut started = false;
    let last_t = data.last().map_or(0, |s| s.t);
    for s in data {
        if strata_types::is_stale_nan(s.v) {
            continue;
        }
        if !started || s.t > next_t {
            if started {
                add(next_t, &aggr);
            }
            started = true;
            aggr.reset();
            next_t = current_window(s.t, res).min(last_t);
        }
        aggr.add(s.v);
    }
    if started {
        add(next_t, &aggr);
    }
    next_t
}

#[derive(Debug)]
struct Builder {
    encoders: [Option<XorEncoder>; 5],
    mint: i64,
    maxt: i64,
}

impl Builder {
    fn new(all: bool) -> Self {
        let make = || all.then(XorEncoder::new);
        Builder {
            encoders: [make(), make(), make(), make(), make()],
            mint: i64::MAX,
            maxt: i64::MIN,
        }
    }

    fn append(&mut self, at: AggrType, t: i64, v: f64) {
        if let Some(slot) = self.encoders.get_mut(at as usize) {
            slot.get_or_insert_with(XorEncoder::new)
                .append_unchecked(t, v);
        }
    }

    fn track(&mut self, t: i64) {
        self.mint = self.mint.min(t);
        self.maxt = self.maxt.max(t);
    }

    fn finish(self) -> EncodedChunk {
        let parts = self
            .encoders
            .map(|e| e.filter(|e| e.num_samples() > 0).map(|e| e.bytes()));
        EncodedChunk {
            min_time: self.mint,
            max_time: self.maxt,
            encoding: Encoding::Other(AGGR_ENCODING),
            data: encode_aggr(&parts),
        }
    }
}

type Pick = fn(&Aggregator) -> f64;

fn aggr_part<'a>(
    parts: &strata_chunkenc::aggr::AggrParts<'a>,
    at: AggrType,
) -> Option<(Encoding, &'a [u8])> {
    parts.get(at as usize).copied().flatten()
}

/// Aggregate chunks of raw samples at resolution `res`. NaN samples (including staleness
/// markers) are left out.
pub fn downsample_raw(samples: &[Sample], res: i64) -> Vec<EncodedChunk> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Vec::new();
    };
    let num_chunks = target_chunk_count(first.t, last.t, 60_000, res, samples.len());
    let batch_size = samples.len() / num_chunks + 1;
    let mut out = Vec::with_capacity(num_chunks);
    let mut data = samples;
    while !data.is_empty() {
        let mut j = batch_size.min(data.len());
        let window = data.get(j - 1).map_or(0, |s| current_window(s.t, res));
        while data.get(j).is_some_and(|s| s.t <= window) {
            j += 1;
        }
        let (head, tail) = data.split_at(j);
        data = tail;
        let batch: Vec<Sample> = head.iter().filter(|s| !s.v.is_nan()).copied().collect();
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            continue;
        };
        let mut b = Builder::new(true);
        b.append(AggrType::Counter, first.t, first.v);
        let last_t = downsample_batch(&batch, res, |t, a| {
            b.track(t);
            b.append(AggrType::Sum, t, a.sum);
            b.append(AggrType::Min, t, a.min);
            b.append(AggrType::Max, t, a.max);
            b.append(AggrType::Count, t, a.count as f64);
            b.append(AggrType::Counter, t, a.counter);
        });
        b.append(AggrType::Counter, last_t, last.v);
        out.push(b.finish());
    }
    out
}

/// The samples of one aggregate of an aggregate chunk (empty if absent). Staleness markers
/// and samples going back in time are dropped; a repeated timestamp is kept (the counter's
/// last raw value).
pub fn aggr_samples(data: &[u8], at: AggrType) -> std::result::Result<Vec<Sample>, ChunkError> {
    let parts = decode_aggr(data)?;
    let mut out = Vec::new();
    let Some((encoding, sub)) = aggr_part(&parts, at) else {
        return Ok(out);
    };
    if encoding != Encoding::Xor {
        return Err(ChunkError::UnsupportedEncoding(encoding.to_byte()));
    }
    expand_xor(sub, &mut out)?;
    Ok(out)
}

fn expand_xor(sub: &[u8], out: &mut Vec<Sample>) -> std::result::Result<(), ChunkError> {
    let mut iter = XorIter::new(sub)?;
    let mut last_t = i64::MIN;
    while let Some((t, v)) = iter.next_sample() {
        if strata_types::is_stale_nan(v) || t < last_t {
            continue;
        }
        last_t = t;
        out.push(Sample { t, v });
    }
    iter.finish()
}

/// Counter values made monotonic across chunks (Thanos' `ApplyCounterResetsSeriesIterator`):
/// each chunk's counter samples in order; a sample at the previous timestamp is that
/// chunk's true last raw value and only sets the base for the next comparison. Returns the
/// samples and the last raw value.
pub fn apply_counter_resets(chunks: &[Vec<Sample>]) -> (Vec<Sample>, f64) {
    let mut out = Vec::new();
    let (mut last_t, mut last_v, mut total) = (i64::MIN, 0.0f64, 0.0f64);
    let mut started = false;
    for chunk in chunks {
        for s in chunk {
            if s.v.is_nan() {
                continue;
            }
            if !started {
                started = true;
                (last_t, last_v, total) = (s.t, s.v, s.v);
                out.push(Sample { t: s.t, v: total });
            } else if s.t > last_t {
                total += if s.v >= last_v { s.v - last_v } else { s.v };
                (last_t, last_v) = (s.t, s.v);
                out.push(Sample { t: s.t, v: total });
            } else if s.t == last_t {
                last_v = s.v;
            }
        }
    }
    (out, last_v)
}

/// Aggregate chunks (payloads of `0xff` chunks, in time order) re-aggregated from `in_res`
/// to the coarser `out_res`, along chunk boundaries.
pub fn downsample_aggr(
    chunks: &[(i64, i64, &[u8])],
    in_res: i64,
    out_res: i64,
) -> std::result::Result<Vec<EncodedChunk>, ChunkError> {
    let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
        return Ok(Vec::new());
    };
    let mut num_samples = 0usize;
    for (_, _, data) in chunks {
        num_samples += usize::from(strata_chunkenc::aggr::aggr_num_samples(data)?);
    }
    let num_chunks = target_chunk_count(first.0, last.1, in_res, out_res, num_samples);
    let batch_size = (chunks.len() / num_chunks).max(1);
    let mut out = Vec::with_capacity(num_chunks);
    for part in chunks.chunks(batch_size) {
        out.push(downsample_aggr_batch(part, out_res)?);
    }
    Ok(out)
}

fn downsample_aggr_batch(
    part: &[(i64, i64, &[u8])],
    res: i64,
) -> std::result::Result<EncodedChunk, ChunkError> {
    let mut b = Builder::new(false);
    let mut decoded = Vec::with_capacity(part.len());
    for (_, _, data) in part {
        decoded.push(decode_aggr(data)?);
    }
    let plain: [(AggrType, Pick); 4] = [
        (AggrType::Count, |a| a.sum),
        (AggrType::Sum, |a| a.sum),
        (AggrType::Min, |a| a.min),
        (AggrType::Max, |a| a.max),
    ];
    let mut buf = Vec::new();
    for (at, f) in plain {
        buf.clear();
        for parts in &decoded {
            if let Some((Encoding::Xor, sub)) = aggr_part(parts, at) {
                expand_xor(sub, &mut buf)?;
            }
        }
        if buf.is_empty() {
            continue;
        }
        downsample_batch(&buf, res, |t, a| {
            b.track(t);
            b.append(at, t, f(a));
        });
    }
    let mut counters = Vec::with_capacity(decoded.len());
    for parts in &decoded {
        if let Some((Encoding::Xor, sub)) = aggr_part(parts, AggrType::Counter) {
            let mut samples = Vec::new();
            expand_xor(sub, &mut samples)?;
            counters.push(samples);
        }
    }
    let (monotonic, last_raw) = apply_counter_resets(&counters);
    if let Some(first) = monotonic.first() {
        b.append(AggrType::Counter, first.t, first.v);
        let last_t = downsample_batch(&monotonic, res, |t, a| {
            b.track(t);
            b.append(AggrType::Counter, t, a.counter);
        });
        b.append(AggrType::Counter, last_t, last_raw);
    }
    if b.mint == i64::MAX {
        // Nothing in this batch: keep the input's range so the chunk stays in order.
        b.mint = part.first().map_or(0, |p| p.0);
        b.maxt = part.last().map_or(0, |p| p.1);
    }
    Ok(b.finish())
}

/// Writes a copy of `block` at resolution `res` (5m from raw, 1h from 5m) into
/// `<parent>/<ulid>`: same series, time range, compaction level and sources; `thanos`
/// becomes the new block's section (its resolution set to `res`). Returns `None` when the
/// block has no samples to aggregate.
pub fn downsample_block(
    block: &BlockReader,
    parent: &Path,
    ulid: ulid::Ulid,
    res: i64,
    mut thanos: ThanosMeta,
) -> Result<Option<(PathBuf, BlockMeta)>> {
    let name = ulid.to_string();
    let meta = block.meta();
    let in_res = meta.thanos.as_ref().map_or(0, |t| t.downsample.resolution);
    if in_res >= res {
        return Err(Error::invalid(
            block.name(),
            format!("target resolution {res} not coarser than the block's {in_res}"),
        ));
    }
    let mut symbols = crate::compact::SymbolUnion::new(&[block.index()]);
    let writer = BlockWriter::streaming(parent, ulid, &mut symbols);
    symbols.check()?;
    let mut writer = writer?;
    let mut series = 0u64;
    let corrupt = |e: ChunkError, what: &str| Error::invalid(block.name(), format!("{what}: {e}"));
    for entry in block.index().series_iter() {
        let (series_ref, entry) = entry?;
        let histograms = in_res == 0
            && entry.chunks.iter().any(|c| {
                block
                    .chunks()
                    .chunk(c.chunk_ref)
                    .is_ok_and(|c| crate::compact_histograms::is_histogram(c.encoding))
            });
        let chunks = if histograms {
            // Thanos downsamples by the kind of the series' first sample.
            use crate::compact_histograms::Point;
            let points =
                crate::compact_histograms::decode_points(block, series_ref, &entry.chunks)?;
            if matches!(points.first(), Some(Point::Float(_))) {
                let samples: Vec<Sample> = points
                    .iter()
                    .filter_map(|p| match p {
                        Point::Float(s) if !strata_types::is_stale_nan(s.v) => Some(*s),
                        _ => None,
                    })
                    .collect();
                downsample_raw(&samples, res)
            } else {
                let hs: Vec<(i64, strata_types::histogram::FloatHistogram)> = points
                    .into_iter()
                    .filter_map(|p| match p {
                        Point::Histogram(t, h) => Some((t, h.to_float())),
                        Point::FloatHistogram(t, h) => Some((t, h)),
                        Point::Float(_) => None,
                    })
                    .collect();
                crate::downsample_histograms::downsample_raw(&hs, res)
                    .map_err(|e| corrupt(e, &entry.labels.to_string()))?
            }
        } else if in_res == 0 {
            let mut samples = block.samples(series_ref, &entry, i64::MIN, i64::MAX)?;
            let mut last_t = i64::MIN;
            samples.retain(|s| {
                let keep = !strata_types::is_stale_nan(s.v) && s.t >= last_t;
                if keep {
                    last_t = s.t;
                }
                keep
            });
            downsample_raw(&samples, res)
        } else {
            let mut raw = Vec::with_capacity(entry.chunks.len());
            for c in &entry.chunks {
                raw.push((c, block.chunks().chunk(c.chunk_ref)?));
            }
            let mut parts = Vec::with_capacity(raw.len());
            for (c, chunk) in &raw {
                if chunk.encoding != Encoding::Other(AGGR_ENCODING) {
                    return Err(Error::invalid(
                        block.name(),
                        format!(
                            "series {}: {} chunk in a downsampled block",
                            entry.labels, chunk.encoding
                        ),
                    ));
                }
                parts.push((c.min_time, c.max_time, chunk.data.as_ref()));
            }
            let decoded: std::result::Result<Vec<_>, ChunkError> = parts
                .iter()
                .map(|(min, max, data)| Ok((*min, *max, decode_aggr(data)?)))
                .collect();
            let decoded = decoded.map_err(|e| corrupt(e, &entry.labels.to_string()))?;
            if decoded
                .first()
                .is_some_and(|(_, _, p)| crate::downsample_histograms::is_histogram_aggr(p))
            {
                let mut num_samples = 0usize;
                for (_, _, data) in &parts {
                    num_samples += usize::from(
                        strata_chunkenc::aggr::aggr_num_samples(data)
                            .map_err(|e| corrupt(e, &entry.labels.to_string()))?,
                    );
                }
                crate::downsample_histograms::downsample_aggr(&decoded, num_samples, in_res, res)
                    .map_err(|e| corrupt(e, &entry.labels.to_string()))?
            } else {
                downsample_aggr(&parts, in_res, res)
                    .map_err(|e| corrupt(e, &entry.labels.to_string()))?
            }
        };
        if chunks.is_empty() {
            continue;
        }
        writer.add_series(&entry.labels, &chunks)?;
        series += 1;
    }
    if series == 0 {
        drop(writer);
        let _ = std::fs::remove_dir_all(parent.join(format!("{name}.tmp-for-creation")));
        return Ok(None);
    }
    thanos.downsample.resolution = res;
    let (dir, new_meta) = writer.finish(BlockOptions {
        min_time: Some(meta.min_time),
        max_time: Some(meta.max_time),
        thanos: Some(thanos),
        compaction: Some(meta.compaction.clone()),
    })?;
    Ok(Some((dir, new_meta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter_series() -> Vec<Sample> {
        // 1 sample per 15 s for 2 h, a counter growing by 1 per sample with a reset at 1 h.
        (0..480)
            .map(|i| {
                let t = i * 15_000;
                let v = if i < 240 { i as f64 } else { (i - 240) as f64 };
                Sample { t, v }
            })
            .collect()
    }

    #[test]
    fn raw_aggregates_per_window() {
        let raw = counter_series();
        let chunks = downsample_raw(&raw, RES_5M);
        assert!(!chunks.is_empty());
        let mut count = Vec::new();
        let mut sum = Vec::new();
        let mut min = Vec::new();
        let mut max = Vec::new();
        let mut counters = Vec::new();
        for c in &chunks {
            count.extend(aggr_samples(&c.data, AggrType::Count).unwrap());
            sum.extend(aggr_samples(&c.data, AggrType::Sum).unwrap());
            min.extend(aggr_samples(&c.data, AggrType::Min).unwrap());
            max.extend(aggr_samples(&c.data, AggrType::Max).unwrap());
            counters.push(aggr_samples(&c.data, AggrType::Counter).unwrap());
        }
        // 24 windows of 20 samples each, stamped at each window's last millisecond (the
        // last one clamped to the last sample).
        assert_eq!(count.len(), 24);
        assert!(count.iter().all(|s| s.v == 20.0));
        assert_eq!(count[0].t, 299_999);
        assert_eq!(count[23].t, 479 * 15_000);
        assert_eq!(sum[0].v, (0..20).sum::<i32>() as f64);
        assert_eq!(min[12].v, 0.0, "window after the reset starts at 0");
        assert_eq!(max[11].v, 239.0);
        // The counter never decreases and ends at the raw increase (239 + 239).
        let (mono, last) = apply_counter_resets(&counters);
        assert!(mono.windows(2).all(|w| w[1].v >= w[0].v && w[1].t > w[0].t));
        assert_eq!(mono.last().unwrap().v, 239.0 + 239.0);
        assert_eq!(last, 239.0);
    }

    #[test]
    fn aggregates_of_aggregates() {
        let raw: Vec<Sample> = (0..(3 * 240))
            .map(|i| Sample {
                t: i * 15_000,
                v: (i % 7) as f64,
            })
            .collect();
        let five = downsample_raw(&raw, RES_5M);
        let parts: Vec<(i64, i64, &[u8])> = five
            .iter()
            .map(|c| (c.min_time, c.max_time, c.data.as_slice()))
            .collect();
        let hour = downsample_aggr(&parts, RES_5M, RES_1H).unwrap();
        let mut count = Vec::new();
        let mut sum = Vec::new();
        let mut min = Vec::new();
        let mut max = Vec::new();
        for c in &hour {
            count.extend(aggr_samples(&c.data, AggrType::Count).unwrap());
            sum.extend(aggr_samples(&c.data, AggrType::Sum).unwrap());
            min.extend(aggr_samples(&c.data, AggrType::Min).unwrap());
            max.extend(aggr_samples(&c.data, AggrType::Max).unwrap());
        }
        assert_eq!(count.iter().map(|s| s.v).sum::<f64>(), 720.0);
        assert_eq!(count[0].v, 240.0);
        assert_eq!(count[0].t, 3_599_999);
        let raw_sum: f64 = raw.iter().filter(|s| s.t < 3_600_000).map(|s| s.v).sum();
        assert_eq!(sum[0].v, raw_sum);
        assert_eq!(min[0].v, 0.0);
        assert_eq!(max[0].v, 6.0);
    }
}
