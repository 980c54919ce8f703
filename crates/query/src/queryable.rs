//! The engine's view of the Store API: each selector becomes one fan-out Series call, its
//! chunks are decoded, and replicas are deduplicated.

use std::sync::Mutex;

use strata_promql::{EncodedSamples, Error, Queryable, SelectHints, Series};
use strata_storepb::{Aggr, AggrChunk, Func, QueryHints, Range, SeriesRequest, chunk};
use strata_types::{Labels, Matcher, Sample};

use crate::dedup::{DedupFunc, dedup_replicas};
use crate::endpoints::EndpointSet;
use crate::proxy::{self, FanOut};

/// Functions whose input is treated as a counter when switching replicas.
const COUNTER_FUNCS: [&str; 4] = ["rate", "irate", "increase", "resets"];

/// Functions that need two samples in their range: downsampled data is read only at a
/// resolution of at most half the range (Thanos' `promqlFuncRequiresTwoSamples`).
const TWO_SAMPLE_FUNCS: [&str; 9] = [
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "predict_linear",
    "holt_winters",
    "double_exponential_smoothing",
];

/// The coarsest resolution a selection may read: `max_source_resolution`, capped at half
/// the range for functions that need two samples in it (Thanos' `maxResolutionFromSelectHints`).
pub fn max_resolution_for(max_resolution: i64, hints: &SelectHints) -> i64 {
    if hints.range > 0
        && hints
            .func
            .as_deref()
            .is_some_and(|f| TWO_SAMPLE_FUNCS.contains(&f))
    {
        return max_resolution.min(hints.range / 2);
    }
    max_resolution
}

/// Settings of one query's reads.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Fan-out behaviour.
    pub fan_out: FanOut,
    /// Replica labels to deduplicate on (empty: no deduplication).
    pub replica_labels: Vec<String>,
    /// How replicas are merged.
    pub dedup: DedupFunc,
    /// `max_source_resolution` in ms (0: raw data only).
    pub max_resolution: i64,
    /// The query's deadline: fetching stops there too.
    pub deadline: Option<std::time::Instant>,
    /// Canceled when the query's client goes away: fetching stops.
    pub cancel: Option<tokio_util::sync::CancellationToken>,
    /// What the query's selects may bring in together.
    pub budget: proxy::Budget,
}

/// A [`Queryable`] over Store API endpoints. Must be called from outside the async runtime
/// (the engine runs on blocking threads); it blocks on `handle` for the network calls.
#[derive(Debug)]
pub struct StoreQueryable {
    handle: tokio::runtime::Handle,
    endpoints: EndpointSet,
    options: ReadOptions,
    warnings: Mutex<Vec<String>>,
}

impl StoreQueryable {
    /// A queryable for one query.
    pub fn new(
        handle: tokio::runtime::Handle,
        endpoints: EndpointSet,
        options: ReadOptions,
    ) -> Self {
        StoreQueryable {
            handle,
            endpoints,
            options,
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Warnings collected by the reads (failed endpoints under partial response).
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
}

/// The aggregates of downsampled data a function needs (Thanos' `aggrsFromFunc`): `min*`
/// the minimum, `max*` the maximum, `count*` the count, `sum_*` the sum, counter functions
/// the counter, anything else count and sum (for an average).
pub fn aggregates_for(func: Option<&str>) -> Vec<Aggr> {
    let f = func.unwrap_or("");
    if f == "min" || f.starts_with("min_") {
        return vec![Aggr::Min];
    }
    if f == "max" || f.starts_with("max_") {
        return vec![Aggr::Max];
    }
    if f == "count" || f.starts_with("count_") {
        return vec![Aggr::Count];
    }
    if f.starts_with("sum_") {
        return vec![Aggr::Sum];
    }
    if COUNTER_FUNCS.contains(&f) {
        return vec![Aggr::Counter];
    }
    vec![Aggr::Count, Aggr::Sum]
}

fn xor_samples(c: &strata_storepb::Chunk, out: &mut Vec<Sample>) -> Result<(), String> {
    if c.r#type != chunk::Encoding::Xor as i32 {
        return Err(format!("chunk encoding {} is not supported", c.r#type));
    }
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    strata_chunkenc::decode_xor(&c.data, &mut ts, &mut vs).map_err(|e| e.to_string())?;
    out.extend(ts.iter().zip(&vs).map(|(&t, &v)| Sample { t, v }));
    Ok(())
}

/// Chunks decoded per call of the XOR decoder when series are decoded together: enough to
/// keep its lanes busy, few enough that the batch's samples stay small next to the result.
const DECODE_BATCH_CHUNKS: usize = 1024;

/// The shortest range of an instant query's selector whose chunks stay encoded.
const ENCODED_INSTANT_RANGE: i64 = 60 * 60 * 1000;

/// A series' raw XOR chunks, in time order and not overlapping, kept encoded until the
/// engine reads them: a range query decodes each series only for the slice of steps it
/// evaluates, so the querier never holds all of a query's samples decoded (16 bytes each
/// against about 1.4 encoded). The chunks' bytes are copied into one buffer per series, so
/// the received frames are freed as the answer streams in.
#[derive(Debug)]
pub struct XorChunks {
    /// The chunks overlapping `[start, end]`, back to back.
    data: Vec<u8>,
    /// `(min_time, max_time, end of its bytes in data)` of each chunk.
    chunks: Vec<(i64, i64, u32)>,
    /// The selection's range: samples outside it are not handed out.
    start: i64,
    end: i64,
    /// Samples within `[start, end]`.
    len: usize,
}

/// Whether a series' chunks (sorted by time) can stay encoded: raw XOR chunks only, each
/// starting after the one before ends (overlapping ones are merged when decoded).
fn stays_encoded(sorted: &[AggrChunk]) -> bool {
    sorted.iter().all(|c| {
        c.raw
            .as_ref()
            .is_some_and(|raw| raw.r#type == chunk::Encoding::Xor as i32)
    }) && sorted.windows(2).all(|pair| match pair {
        [a, b] => a.max_time < b.min_time,
        _ => true,
    })
}

impl XorChunks {
    /// The chunks of a series that [`stays_encoded`] (sorted by time), those overlapping
    /// `[start, end]`; the chunks that reach past either end are decoded once here to count
    /// their samples within it.
    fn new(sorted: &[AggrChunk], start: i64, end: i64) -> Result<Self, String> {
        let mut chunks = Vec::with_capacity(sorted.len());
        let kept = || {
            sorted
                .iter()
                .filter(|c| c.max_time >= start && c.min_time <= end)
                .filter_map(|c| Some((c, c.raw.as_ref()?)))
        };
        let mut data = Vec::with_capacity(kept().map(|(_, raw)| raw.data.len()).sum());
        let mut len = 0usize;
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        for (c, raw) in kept() {
            if c.min_time >= start && c.max_time <= end {
                len += usize::from(
                    strata_chunkenc::xor_num_samples(&raw.data).map_err(|e| e.to_string())?,
                );
            } else {
                ts.clear();
                vs.clear();
                strata_chunkenc::decode_xor(&raw.data, &mut ts, &mut vs)
                    .map_err(|e| e.to_string())?;
                len += ts.iter().filter(|&&t| t >= start && t <= end).count();
            }
            data.extend_from_slice(&raw.data);
            let at = u32::try_from(data.len())
                .map_err(|_| "a series' chunks exceed 4 GiB".to_owned())?;
            chunks.push((c.min_time, c.max_time, at));
        }
        Ok(XorChunks {
            data,
            chunks,
            start,
            end,
            len,
        })
    }
}

impl XorChunks {
    /// The bytes of the chunks overlapping `[from, to]`, in time order.
    fn chunks_within(&self, from: i64, to: i64) -> impl Iterator<Item = &[u8]> {
        let mut begin = 0usize;
        self.chunks.iter().filter_map(move |&(min, max, end)| {
            let (start, end) = (begin, end as usize);
            begin = end;
            (max >= from && min <= to).then(|| self.data.get(start..end).unwrap_or_default())
        })
    }

    /// Where the samples with `from <= t <= to` are when `decoded` is strictly increasing
    /// in time (the usual case: one run).
    fn run_within(decoded: &[Sample], from: i64, to: i64) -> Option<std::ops::Range<usize>> {
        if !decoded.is_sorted_by(|a, b| a.t < b.t) {
            return None;
        }
        let lo = decoded.partition_point(|s| s.t < from);
        let hi = decoded.partition_point(|s| s.t <= to).max(lo);
        Some(lo..hi)
    }

    /// The samples with `from <= t <= to`, sorted, one per timestamp: chunks whose own
    /// timestamps do not increase are read as when decoded at once.
    fn sorted_within(decoded: &[Sample], from: i64, to: i64) -> Vec<Sample> {
        let mut mine: Vec<Sample> = decoded
            .iter()
            .filter(|s| s.t >= from && s.t <= to)
            .copied()
            .collect();
        mine.sort_by_key(|s| s.t);
        mine.dedup_by_key(|s| s.t);
        mine
    }
}

/// Samples the XOR chunks `datas` decode to: the counts in their headers (what the decoder
/// gives each chunk once it decoded them all).
fn samples_in(datas: &[&[u8]]) -> usize {
    datas
        .iter()
        .map(|data| usize::from(strata_chunkenc::xor_num_samples(data).unwrap_or_default()))
        .sum()
}

impl EncodedSamples for XorChunks {
    fn decode(&self, from: i64, to: i64, out: &mut Vec<Sample>) -> Result<(), String> {
        // A batch of one, decoded after `out`'s samples; its run then moves down to them.
        let base = out.len();
        let mut runs = Vec::with_capacity(1);
        self.decode_batch(&[self], from, to, out, &mut runs)
            .map_err(|(_, err)| err)?;
        let run = runs.pop().unwrap_or(base..base);
        let len = run.len();
        out.copy_within(run, base);
        out.truncate(base + len);
        Ok(())
    }

    /// All the series' chunks in one call of the XOR decoder: within a range query's slice
    /// each series has only a few chunks, too few for the decoder's sixteen lanes.
    fn decode_batch(
        &self,
        batch: &[&dyn EncodedSamples],
        from: i64,
        to: i64,
        out: &mut Vec<Sample>,
        runs: &mut Vec<std::ops::Range<usize>>,
    ) -> Result<(), (usize, String)> {
        let mine: Option<Vec<&XorChunks>> = batch
            .iter()
            .map(|s| s.as_any().downcast_ref::<XorChunks>())
            .collect();
        let Some(mine) = mine else {
            // Series of other storages: one at a time.
            return strata_promql::decode_each(batch, from, to, out, runs);
        };
        let mut datas: Vec<&[u8]> = Vec::new();
        // Each series' chunks in `datas`.
        let mut spans: Vec<std::ops::Range<usize>> = Vec::with_capacity(mine.len());
        for series in &mine {
            let first = datas.len();
            datas.extend(series.chunks_within(from.max(series.start), to.min(series.end)));
            spans.push(first..datas.len());
        }
        // Decoded in place: each series' run is found within its chunks' samples, not
        // copied.
        let base = out.len();
        strata_chunkenc::decode_xor_chunks_samples(&datas, out).map_err(|(at, err)| {
            let series = spans.iter().position(|span| span.contains(&at));
            (series.unwrap_or_default(), err.to_string())
        })?;
        let mut at = base;
        for (series, span) in mine.iter().zip(&spans) {
            let n = samples_in(datas.get(span.clone()).unwrap_or_default());
            let region = at..at + n;
            at += n;
            let (from, to) = (from.max(series.start), to.min(series.end));
            let decoded = out.get(region.clone()).unwrap_or_default();
            match Self::run_within(decoded, from, to) {
                Some(run) => runs.push(region.start + run.start..region.start + run.end),
                None => {
                    let sorted = Self::sorted_within(decoded, from, to);
                    let start = out.len();
                    out.extend(sorted);
                    runs.push(start..out.len());
                }
            }
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.len
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A series for the engine with its chunks kept encoded, if they [`stays_encoded`]
/// (`Ok(None)` when it has no samples in `[start, end]`); else the series back.
#[allow(clippy::type_complexity)]
fn encoded_series(
    labels: Labels,
    mut chunks: Vec<AggrChunk>,
    start: i64,
    end: i64,
) -> Result<Result<Option<Series>, (Labels, Vec<AggrChunk>)>, String> {
    chunks.sort_by_key(|c| (c.min_time, c.max_time));
    if !stays_encoded(&chunks) {
        return Ok(Err((labels, chunks)));
    }
    let xor = XorChunks::new(&chunks, start, end).map_err(|e| format!("series {labels}: {e}"))?;
    Ok(Ok((xor.len > 0).then(|| {
        Series::encoded(labels, std::sync::Arc::new(xor))
    })))
}

/// Decodes every series' chunks into samples within `[start, end]` (as [`decode_chunks`]
/// does), dropping series left without samples. Series of raw chunks only are decoded in
/// batches across series, so the XOR decoder can work on many chunks at once even when each
/// series has only a few.
pub fn decode_series(
    series: Vec<(Labels, Vec<AggrChunk>)>,
    start: i64,
    end: i64,
) -> Result<Vec<(Labels, Vec<Sample>)>, String> {
    let mut decoded = Vec::with_capacity(series.len());
    let mut batch: Vec<(Labels, Vec<AggrChunk>)> = Vec::new();
    let mut batch_chunks = 0usize;
    for (labels, chunks) in series {
        if !chunks.iter().all(|c| c.raw.is_some()) {
            let samples =
                decode_chunks(&chunks, start, end).map_err(|e| format!("series {labels}: {e}"))?;
            if !samples.is_empty() {
                decoded.push((labels, samples));
            }
            continue;
        }
        batch_chunks += chunks.len();
        batch.push((labels, chunks));
        if batch_chunks >= DECODE_BATCH_CHUNKS {
            decode_raw_batch(std::mem::take(&mut batch), start, end, &mut decoded)?;
            batch_chunks = 0;
        }
    }
    decode_raw_batch(batch, start, end, &mut decoded)?;
    Ok(decoded)
}

/// Decodes series of raw chunks only with one call of the XOR decoder, appending those left
/// with samples to `out`.
fn decode_raw_batch(
    batch: Vec<(Labels, Vec<AggrChunk>)>,
    start: i64,
    end: i64,
    out: &mut Vec<(Labels, Vec<Sample>)>,
) -> Result<(), String> {
    // Each series' chunks in time order, those overlapping [start, end] only.
    let mut datas: Vec<&[u8]> = Vec::new();
    let mut spans: Vec<std::ops::Range<usize>> = Vec::with_capacity(batch.len());
    for (labels, chunks) in &batch {
        let first = datas.len();
        let mut sorted: Vec<&AggrChunk> = chunks.iter().collect();
        sorted.sort_by_key(|c| (c.min_time, c.max_time));
        for c in sorted {
            if c.max_time < start || c.min_time > end {
                continue;
            }
            let Some(raw) = &c.raw else { continue };
            if raw.r#type != chunk::Encoding::Xor as i32 {
                return Err(format!(
                    "series {labels}: chunk encoding {} is not supported",
                    raw.r#type
                ));
            }
            datas.push(&raw.data);
        }
        spans.push(first..datas.len());
    }
    let mut decoded = Vec::new();
    strata_chunkenc::decode_xor_chunks_samples(&datas, &mut decoded).map_err(|(i, err)| {
        let labels = spans
            .iter()
            .position(|span| span.contains(&i))
            .and_then(|at| batch.get(at))
            .map(|(labels, _)| labels.to_string())
            .unwrap_or_default();
        format!("series {labels}: {err}")
    })?;
    let counts: Vec<usize> = spans
        .iter()
        .map(|span| samples_in(datas.get(span.clone()).unwrap_or_default()))
        .collect();
    drop(datas);
    let mut at = 0usize;
    for ((labels, _), n) in batch.into_iter().zip(counts) {
        // Only the samples within the range: a chunk reaching far past it (an instant
        // query's window) does not leave its whole length allocated.
        let samples: Vec<Sample> = decoded
            .get(at..at + n)
            .unwrap_or_default()
            .iter()
            .filter(|s| s.t >= start && s.t <= end)
            .copied()
            .collect();
        at += n;
        let samples = finish_samples(samples, start, end);
        if !samples.is_empty() {
            out.push((labels, samples));
        }
    }
    Ok(())
}

/// Decodes a series' chunks into samples within `[start, end]`, sorted, one per timestamp.
/// Raw chunks give their samples; chunks of downsampled blocks give the requested
/// aggregate: the counter (made monotonic across chunks, as Thanos' querier does), or
/// min, max, count or sum, or the average sum/count when both are present.
pub fn decode_chunks(chunks: &[AggrChunk], start: i64, end: i64) -> Result<Vec<Sample>, String> {
    let mut samples: Vec<Sample> = Vec::new();
    let mut counter_chunks: Vec<Vec<Sample>> = Vec::new();
    let mut sorted: Vec<&AggrChunk> = chunks.iter().collect();
    sorted.sort_by_key(|c| (c.min_time, c.max_time));
    let has_counter = sorted
        .iter()
        .any(|c| c.raw.is_none() && c.counter.is_some());
    for c in sorted {
        if c.max_time < start || c.min_time > end {
            continue;
        }
        if let Some(raw) = &c.raw {
            if has_counter {
                let mut part = Vec::new();
                xor_samples(raw, &mut part)?;
                counter_chunks.push(part);
            } else {
                xor_samples(raw, &mut samples)?;
            }
            continue;
        }
        if let Some(counter) = &c.counter {
            let mut part = Vec::new();
            xor_samples(counter, &mut part)?;
            counter_chunks.push(part);
            continue;
        }
        match (&c.count, &c.sum, &c.min, &c.max) {
            (Some(count), Some(sum), _, _) => {
                let (mut counts, mut sums) = (Vec::new(), Vec::new());
                xor_samples(count, &mut counts)?;
                xor_samples(sum, &mut sums)?;
                if counts.len() != sums.len() {
                    return Err("sum and count aggregates not aligned".into());
                }
                for (n, s) in counts.iter().zip(&sums) {
                    if n.t != s.t {
                        return Err("sum and count timestamps not aligned".into());
                    }
                    samples.push(Sample {
                        t: n.t,
                        v: s.v / n.v,
                    });
                }
            }
            (Some(only), None, None, None)
            | (None, Some(only), None, None)
            | (None, None, Some(only), None)
            | (None, None, None, Some(only)) => xor_samples(only, &mut samples)?,
            _ => return Err("downsampled chunk without the requested aggregate".into()),
        }
    }
    if !counter_chunks.is_empty() {
        let (monotonic, _) = strata_tsdb::downsample::apply_counter_resets(&counter_chunks);
        samples.extend(monotonic);
    }
    Ok(finish_samples(samples, start, end))
}

/// Keeps the samples within `[start, end]`, sorted, one per timestamp.
fn finish_samples(mut samples: Vec<Sample>, start: i64, end: i64) -> Vec<Sample> {
    samples.retain(|s| s.t >= start && s.t <= end);
    if !samples.is_sorted_by_key(|s| s.t) {
        samples.sort_by_key(|s| s.t);
    }
    samples.dedup_by_key(|s| s.t);
    samples
}

/// The labels without the replica labels.
fn strip(labels: &Labels, replica_labels: &[String]) -> Labels {
    let mut b = labels.to_builder();
    for name in replica_labels {
        b.delete(name);
    }
    b.build()
}

/// Deduplicates the series of a Store API answer as Thanos' querier does, chunk by chunk:
/// replica labels are stripped; the chunks of series that become equal are gathered (an
/// identical chunk, e.g. the same block served twice, kept once) and sorted by time, then
/// split into as many "replicas" as they overlap (Thanos' `NewOverlapSplit`: each chunk joins
/// the first replica whose last chunk ends before it starts), so the replica order is the
/// order of their first chunks. Each replica is decoded; for counter functions merged by
/// penalty it is read as Thanos' counter-reset iterator reads it (from its first chunk on,
/// before the cut to `[start, end]`); the replicas are then merged by `func`. A series with
/// one replica keeps its raw samples (Thanos would make even that one monotonic for
/// `rate`, which changes extrapolation and makes `resets()` 0; Prometheus' answer is kept).
pub fn dedup_series(
    series: Vec<(Labels, Vec<AggrChunk>)>,
    start: i64,
    end: i64,
    replica_labels: &[String],
    func: DedupFunc,
    counter: bool,
    encoded: bool,
) -> Result<Vec<Series>, String> {
    let mut stripped: Vec<(Labels, Vec<AggrChunk>)> = series
        .into_iter()
        .map(|(labels, chunks)| (strip(&labels, replica_labels), chunks))
        .collect();
    stripped.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    let mut iter = stripped.into_iter().peekable();
    while let Some((labels, mut chunks)) = iter.next() {
        while iter.peek().is_some_and(|(l, _)| *l == labels) {
            if let Some((_, more)) = iter.next() {
                chunks.extend(more);
            }
        }
        chunks.retain(|c| c.max_time >= start && c.min_time <= end);
        let groups = overlap_split(chunks);
        // One replica left (or its blocks compacted together): as without deduplication.
        if encoded
            && let [group] = groups.as_slice()
            && stays_encoded(group)
        {
            let xor =
                XorChunks::new(group, start, end).map_err(|e| format!("series {labels}: {e}"))?;
            if xor.len > 0 {
                out.push(Series::encoded(labels, std::sync::Arc::new(xor)));
            }
            continue;
        }
        // Thanos' counter handling only where replicas are merged by penalty: a single
        // replica (or chain merging) keeps its raw samples, so it answers as Prometheus.
        let counter = counter && func == DedupFunc::Penalty && groups.len() > 1;
        let mut replicas = Vec::new();
        for part in groups {
            let mut samples = decode_chunks(&part, i64::MIN, i64::MAX)
                .map_err(|e| format!("series {labels}: {e}"))?;
            if counter {
                samples =
                    strata_tsdb::downsample::apply_counter_resets(std::slice::from_ref(&samples)).0;
            }
            let samples = finish_samples(samples, start, end);
            if !samples.is_empty() {
                replicas.push(samples);
            }
        }
        let samples = match replicas.len() {
            0 => continue,
            1 => replicas.pop().unwrap_or_default(),
            _ => dedup_replicas(replicas, func, counter),
        };
        out.push(Series::floats(labels, samples));
    }
    Ok(out)
}

/// Thanos' `NewOverlapSplit` after its proxy's chunk deduplication: identical chunks once,
/// sorted by (min time, max time, bytes); each chunk goes to the first group whose last
/// chunk ends before it starts, else to a new group.
fn overlap_split(mut chunks: Vec<AggrChunk>) -> Vec<Vec<AggrChunk>> {
    let bytes = |c: &AggrChunk| -> Vec<u8> {
        c.parts()
            .into_iter()
            .flatten()
            .flat_map(|chunk| chunk.data.iter().copied())
            .collect()
    };
    chunks.sort_by_cached_key(|c| (c.min_time, c.max_time, bytes(c)));
    chunks.dedup_by(|a, b| a.min_time == b.min_time && a.max_time == b.max_time && a == b);
    let mut groups: Vec<Vec<AggrChunk>> = Vec::new();
    for chunk in chunks {
        let free = groups
            .iter_mut()
            .find(|g| g.last().is_none_or(|last| last.max_time < chunk.min_time));
        match free {
            Some(group) => group.push(chunk),
            None => groups.push(vec![chunk]),
        }
    }
    groups
}

/// Splits off the series holding native histogram chunks (all replicas of a series, when
/// any of them holds some).
#[allow(clippy::type_complexity)]
fn split_histogram_series(
    series: Vec<(Labels, Vec<AggrChunk>)>,
    replica_labels: &[String],
) -> (Vec<(Labels, Vec<AggrChunk>)>, Vec<(Labels, Vec<AggrChunk>)>) {
    if !series
        .iter()
        .any(|(_, chunks)| crate::histograms::has_histograms(chunks))
    {
        return (Vec::new(), series);
    }
    let with: std::collections::HashSet<Labels> = series
        .iter()
        .filter(|(_, chunks)| crate::histograms::has_histograms(chunks))
        .map(|(labels, _)| strip(labels, replica_labels))
        .collect();
    series
        .into_iter()
        .partition(|(labels, _)| with.contains(&strip(labels, replica_labels)))
}

/// Decodes (and, with replica labels, deduplicates) series holding native histograms.
fn histogram_series(
    series: Vec<(Labels, Vec<AggrChunk>)>,
    start: i64,
    end: i64,
    replica_labels: &[String],
    func: DedupFunc,
    aggrs: &[Aggr],
) -> Result<Vec<Series>, String> {
    let mut out = Vec::new();
    if replica_labels.is_empty() {
        for (labels, chunks) in series {
            out.extend(crate::histograms::decode(
                labels, &chunks, start, end, aggrs,
            )?);
        }
        return Ok(out);
    }
    let mut stripped: Vec<(Labels, Vec<AggrChunk>)> = series
        .into_iter()
        .map(|(labels, chunks)| (strip(&labels, replica_labels), chunks))
        .collect();
    stripped.sort_by(|a, b| a.0.cmp(&b.0));
    let mut iter = stripped.into_iter().peekable();
    while let Some((labels, mut chunks)) = iter.next() {
        while iter.peek().is_some_and(|(l, _)| *l == labels) {
            if let Some((_, more)) = iter.next() {
                chunks.extend(more);
            }
        }
        chunks.retain(|c| c.max_time >= start && c.min_time <= end);
        let groups = overlap_split(chunks);
        out.extend(crate::histograms::dedup(
            labels, groups, start, end, func, aggrs,
        )?);
    }
    Ok(out)
}

impl Queryable for StoreQueryable {
    fn select(&self, matchers: &[Matcher], hints: &SelectHints) -> Result<Vec<Series>, Error> {
        let max_resolution = max_resolution_for(self.options.max_resolution, hints);
        let request = SeriesRequest {
            min_time: hints.start,
            max_time: hints.end,
            max_resolution_window: max_resolution,
            aggregates: aggregates_for(hints.func.as_deref())
                .into_iter()
                .map(|a| a as i32)
                .collect(),
            query_hints: Some(QueryHints {
                step_millis: hints.step,
                func: hints.func.as_ref().map(|name| Func { name: name.clone() }),
                range: (hints.range > 0).then_some(Range {
                    millis: hints.range,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Range queries, and instant queries over windows of an hour or more, take chunks
        // still encoded: the engine decodes each series where it reads it. Short instant
        // windows read every sample they load at once (counting the samples of a chunk
        // reaching past the selection, most of theirs, would decode it twice).
        let encoded = hints.step > 0 || hints.range >= ENCODED_INSTANT_RANGE;
        let replica_labels = &self.options.replica_labels;
        // Without deduplication each series is complete as it arrives: it is packed for the
        // engine (kept encoded, or decoded) at once, so the received frames are freed as the
        // answer streams in.
        let single = replica_labels.is_empty();
        let pack = encoded && single;
        let (start, end) = (hints.start, hints.end);
        let mut stream = proxy::series_stream(
            &self.endpoints,
            matchers,
            request,
            &self.options.fan_out,
            self.options.budget.clone(),
        );
        let fetch = async move {
            let mut packed: Vec<Series> = Vec::new();
            let mut fetched: Vec<(Labels, Vec<AggrChunk>)> = Vec::new();
            let mut batch: Vec<(Labels, Vec<AggrChunk>)> = Vec::new();
            let mut batch_chunks = 0usize;
            while let Some(item) = stream.next().await {
                let (labels, chunks) = item.map_err(|e| match e.class {
                    strata_types::ErrorClass::Execution => Error::TooManySamples("query execution"),
                    _ => Error::Storage(e.to_string()),
                })?;
                if !single || crate::histograms::has_histograms(&chunks) {
                    fetched.push((labels, chunks));
                    continue;
                }
                if pack {
                    match encoded_series(labels, chunks, start, end).map_err(Error::Storage)? {
                        Ok(series) => packed.extend(series),
                        Err(other) => fetched.push(other),
                    }
                    continue;
                }
                // Decoded in batches across series as they arrive.
                batch_chunks += chunks.len();
                batch.push((labels, chunks));
                if batch_chunks >= DECODE_BATCH_CHUNKS {
                    batch_chunks = 0;
                    let decoded = decode_series(std::mem::take(&mut batch), start, end)
                        .map_err(Error::Storage)?;
                    packed.extend(decoded.into_iter().map(|(l, s)| Series::floats(l, s)));
                }
            }
            let decoded = decode_series(batch, start, end).map_err(Error::Storage)?;
            packed.extend(decoded.into_iter().map(|(l, s)| Series::floats(l, s)));
            Ok::<_, Error>((packed, fetched, stream.take_warnings()))
        };
        let deadline = self.options.deadline;
        let cancel = self.options.cancel.clone();
        let (packed, fetched, warnings) = self.handle.block_on(async move {
            let deadline = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            let canceled = async {
                match cancel {
                    Some(c) => c.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                got = fetch => got,
                () = deadline => Err(Error::Timeout("query execution")),
                () = canceled => Err(Error::Canceled("query execution")),
            }
        })?;
        if !warnings.is_empty()
            && let Ok(mut w) = self.warnings.lock()
        {
            w.extend(warnings);
        }
        let (histograms, floats) = split_histogram_series(fetched, replica_labels);
        let mut out = if replica_labels.is_empty() {
            decode_series(floats, hints.start, hints.end)
                .map_err(Error::Storage)?
                .into_iter()
                .map(|(labels, samples)| Series::floats(labels, samples))
                .collect()
        } else {
            let counter = hints
                .func
                .as_deref()
                .is_some_and(|f| COUNTER_FUNCS.contains(&f));
            dedup_series(
                floats,
                hints.start,
                hints.end,
                replica_labels,
                self.options.dedup,
                counter,
                encoded,
            )
            .map_err(Error::Storage)?
        };
        if !packed.is_empty() {
            let sorted = out.is_empty();
            out.extend(packed);
            if !sorted {
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
            }
        }
        if histograms.is_empty() {
            return Ok(out);
        }
        out.extend(
            histogram_series(
                histograms,
                hints.start,
                hints.end,
                replica_labels,
                self.options.dedup,
                &aggregates_for(hints.func.as_deref()),
            )
            .map_err(Error::Storage)?,
        );
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storepb::Chunk;

    fn raw(samples: &[(i64, f64)]) -> AggrChunk {
        let mut encoder = strata_chunkenc::XorEncoder::new();
        for &(t, v) in samples {
            encoder.append_unchecked(t, v);
        }
        AggrChunk {
            min_time: samples.first().map_or(0, |s| s.0),
            max_time: samples.last().map_or(0, |s| s.0),
            raw: Some(Chunk {
                r#type: chunk::Encoding::Xor as i32,
                data: encoder.bytes().into(),
                hash: 0,
            }),
            ..Default::default()
        }
    }

    /// Many series of a few raw chunks each (some overlapping, some outside the range,
    /// some empty after the range cut): decoding them together gives what decoding each
    /// series alone gives.
    /// `n` series of `s % 7` raw chunks each (in reverse order), chunk `c` from `c * 100 s`
    /// on at 1 s, `len(s)` samples; every third series' chunks after the first start
    /// `overlap` ms early.
    fn test_series(
        n: i64,
        overlap: i64,
        len: impl Fn(i64) -> i64,
    ) -> Vec<(Labels, Vec<AggrChunk>)> {
        (0..n)
            .map(|s| {
                let chunks: Vec<AggrChunk> = (0..(s % 7))
                    .map(|c| {
                        let from = c * 100_000 - i64::from(s % 3 == 0 && c > 0) * overlap;
                        let samples: Vec<(i64, f64)> = (0..len(s))
                            .map(|i| (from + i * 1_000 + s, (s * 1_000 + c * 7 + i) as f64))
                            .collect();
                        raw(&samples)
                    })
                    .rev()
                    .collect();
                (Labels::from_pairs([("s", s.to_string())]), chunks)
            })
            .collect()
    }

    #[test]
    fn series_decoded_together_equal_series_decoded_alone() {
        // Chunk c covers [c * 100 s, c * 100 s + 120 samples * 1 s); every third series
        // repeats a chunk, as two overlapping blocks would.
        let series = test_series(300, 100_000, |_| 120);
        let (start, end) = (50_000, 450_000);
        let expected: Vec<(Labels, Vec<Sample>)> = series
            .iter()
            .map(|(labels, chunks)| (labels.clone(), decode_chunks(chunks, start, end).unwrap()))
            .filter(|(_, samples)| !samples.is_empty())
            .collect();
        let got = decode_series(series, start, end).unwrap();
        assert_eq!(got.len(), expected.len());
        for ((labels, samples), (elabels, esamples)) in got.iter().zip(&expected) {
            assert_eq!(labels, elabels);
            assert_eq!(samples, esamples);
        }
    }

    /// Series kept encoded give, decoded whole or by any sub-range, what decoding at once
    /// gives, and count exactly the samples within the selection.
    #[test]
    fn encoded_series_equal_decoded_series() {
        // Every third series overlaps the chunk before by 30 s (overlapping blocks).
        let mut series = test_series(60, 30_000, |s| 60 + s);
        // As a Store API answer: sorted by labels.
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let (start, end) = (50_500, 450_000);
        let decoded: Vec<Series> = decode_series(series.clone(), start, end)
            .unwrap()
            .into_iter()
            .map(|(labels, samples)| Series::floats(labels, samples))
            .collect();
        // As the querier packs an answer: encoded where the chunks allow, else decoded.
        let mut encoded = Vec::new();
        for (labels, chunks) in series {
            match encoded_series(labels, chunks, start, end).unwrap() {
                Ok(series) => encoded.extend(series),
                Err((labels, chunks)) => encoded.extend(
                    decode_series(vec![(labels, chunks)], start, end)
                        .unwrap()
                        .into_iter()
                        .map(|(labels, samples)| Series::floats(labels, samples)),
                ),
            }
        }
        assert_eq!(decoded.len(), encoded.len());
        let mut kept_encoded = 0;
        for (d, e) in decoded.iter().zip(&encoded) {
            assert_eq!(d.labels, e.labels);
            assert_eq!(d.float_count(), e.float_count(), "{}", d.labels);
            let Some(enc) = &e.encoded else { continue };
            kept_encoded += 1;
            for (from, to) in [
                (i64::MIN, i64::MAX),
                (0, 10_000_000),
                (120_000, 230_999),
                (start, start),
                (end - 5_000, end + 5_000),
            ] {
                let mut got = Vec::new();
                enc.decode(from, to, &mut got).unwrap();
                let want: Vec<Sample> = d
                    .samples
                    .iter()
                    .filter(|p| p.t >= from && p.t <= to)
                    .copied()
                    .collect();
                assert_eq!(got, want, "{} in [{from}, {to}]", d.labels);
            }
        }
        // Series of overlapping chunks are decoded at once; the others stay encoded.
        assert!(kept_encoded >= 30, "{kept_encoded}");
        // Decoded together (as the engine decodes a slice's series), in batches of every
        // size, each series' run is what decoding it alone gives.
        let kept: Vec<(&Series, &dyn EncodedSamples)> = decoded
            .iter()
            .zip(&encoded)
            .filter_map(|(d, e)| Some((d, e.encoded.as_deref()?)))
            .collect();
        for size in [1, 2, 5, 16, kept.len()] {
            for (from, to) in [(i64::MIN, i64::MAX), (120_000, 230_999), (start, start)] {
                for group in kept.chunks(size) {
                    let batch: Vec<&dyn EncodedSamples> = group.iter().map(|&(_, e)| e).collect();
                    let (mut got, mut runs) = (vec![Sample::new(-1, -1.0)], Vec::new());
                    batch[0]
                        .decode_batch(&batch, from, to, &mut got, &mut runs)
                        .unwrap();
                    assert_eq!(runs.len(), group.len());
                    for (&(d, _), run) in group.iter().zip(&runs) {
                        let want: Vec<Sample> = d
                            .samples
                            .iter()
                            .filter(|p| p.t >= from && p.t <= to)
                            .copied()
                            .collect();
                        assert!(run.start >= 1, "{run:?}");
                        assert_eq!(got[run.clone()], want[..], "{} in [{from}, {to}]", d.labels);
                    }
                }
            }
        }
        assert!(encoded.iter().any(|s| s.encoded.is_none()));
    }

    #[test]
    fn a_corrupt_chunk_names_its_series() {
        let good = raw(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        let mut bad = good.clone();
        if let Some(chunk) = bad.raw.as_mut() {
            chunk.data.truncate(4);
        }
        let series = vec![
            (Labels::from_pairs([("s", "good")]), vec![good.clone(); 5]),
            (Labels::from_pairs([("s", "bad")]), vec![good, bad]),
        ];
        let err = decode_series(series.clone(), 0, 10).unwrap_err();
        assert!(err.contains("s=\"bad\""), "{err}");
        // Kept encoded and decoded in one batch: the error points at the bad series.
        let later = raw(&[(11, 1.0), (12, 2.0), (13, 3.0)]);
        let mut bad = later.clone();
        if let Some(chunk) = bad.raw.as_mut() {
            chunk.data.truncate(4);
        }
        let good = raw(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        let series = [
            ("good", vec![good.clone(), later]),
            ("bad", vec![good.clone(), bad]),
            ("after", vec![good]),
        ];
        let encoded: Vec<Series> = series
            .into_iter()
            .map(|(s, chunks)| (Labels::from_pairs([("s", s)]), chunks))
            .filter_map(|(labels, chunks)| encoded_series(labels, chunks, 0, 20).ok())
            .filter_map(|s| s.ok().flatten())
            .collect();
        let batch: Vec<&dyn EncodedSamples> = encoded
            .iter()
            .filter_map(|s| s.encoded.as_deref())
            .collect();
        let (mut out, mut runs) = (Vec::new(), Vec::new());
        assert_eq!(batch.len(), 3);
        let Err((at, _)) = batch[0].decode_batch(&batch, 0, 20, &mut out, &mut runs) else {
            panic!("a truncated chunk decoded");
        };
        assert_eq!(encoded[at].labels, Labels::from_pairs([("s", "bad")]));
    }
}
