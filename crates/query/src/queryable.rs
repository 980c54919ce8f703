//! The engine's view of the Store API: each selector becomes one fan-out Series call, its
//! chunks are decoded, and replicas are deduplicated.

use std::sync::Mutex;

use strata_promql::{Error, Queryable, SelectHints, Series};
use strata_storepb::{Aggr, AggrChunk, Func, QueryHints, Range, SeriesRequest, chunk};
use strata_types::{Labels, Matcher, Sample};

use crate::dedup::{DedupFunc, dedup_replicas};
use crate::endpoints::EndpointSet;
use crate::proxy::{self, FanOut};

/// Functions whose input is treated as a counter when switching replicas.
const COUNTER_FUNCS: [&str; 4] = ["rate", "irate", "increase", "resets"];

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
    if sorted.iter().all(|c| c.raw.is_some()) {
        // Raw data only (the usual case): the chunks are decoded together, which lets the
        // decoder work on several at once.
        let mut raws: Vec<&[u8]> = Vec::with_capacity(sorted.len());
        for c in &sorted {
            if c.max_time < start || c.min_time > end {
                continue;
            }
            let Some(raw) = &c.raw else { continue };
            if raw.r#type != chunk::Encoding::Xor as i32 {
                return Err(format!("chunk encoding {} is not supported", raw.r#type));
            }
            raws.push(&raw.data);
        }
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        strata_chunkenc::decode_xor_chunks(&raws, &mut ts, &mut vs)
            .map_err(|(_, err)| err.to_string())?;
        samples.extend(ts.iter().zip(&vs).map(|(&t, &v)| Sample { t, v }));
        return Ok(finish_samples(samples, start, end));
    }
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

/// Strips replica labels and merges series that become equal.
pub fn deduplicate(
    series: Vec<(Labels, Vec<Sample>)>,
    replica_labels: &[String],
    func: DedupFunc,
    counter: bool,
) -> Vec<Series> {
    if replica_labels.is_empty() {
        return series
            .into_iter()
            .map(|(labels, samples)| Series { labels, samples })
            .collect();
    }
    let mut stripped: Vec<(Labels, Vec<Sample>)> = series
        .into_iter()
        .map(|(labels, samples)| {
            let mut b = labels.to_builder();
            for name in replica_labels {
                b.delete(name);
            }
            (b.build(), samples)
        })
        .collect();
    stripped.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<Series> = Vec::new();
    let mut iter = stripped.into_iter().peekable();
    while let Some((labels, first)) = iter.next() {
        let mut replicas = vec![first];
        while iter.peek().is_some_and(|(l, _)| *l == labels) {
            if let Some((_, samples)) = iter.next() {
                replicas.push(samples);
            }
        }
        let samples = if replicas.len() == 1 {
            replicas.pop().unwrap_or_default()
        } else {
            dedup_replicas(replicas, func, counter)
        };
        out.push(Series { labels, samples });
    }
    out
}

impl Queryable for StoreQueryable {
    fn select(&self, matchers: &[Matcher], hints: &SelectHints) -> Result<Vec<Series>, Error> {
        let request = SeriesRequest {
            min_time: hints.start,
            max_time: hints.end,
            max_resolution_window: self.options.max_resolution,
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
        let set = self
            .handle
            .block_on(proxy::series(
                &self.endpoints,
                matchers,
                request,
                &self.options.fan_out,
            ))
            .map_err(|e| Error::Storage(e.to_string()))?;
        if !set.warnings.is_empty()
            && let Ok(mut w) = self.warnings.lock()
        {
            w.extend(set.warnings);
        }
        let mut decoded = Vec::with_capacity(set.series.len());
        for (labels, chunks) in set.series {
            let samples = decode_chunks(&chunks, hints.start, hints.end)
                .map_err(|e| Error::Storage(format!("series {labels}: {e}")))?;
            if !samples.is_empty() {
                decoded.push((labels, samples));
            }
        }
        let counter = hints
            .func
            .as_deref()
            .is_some_and(|f| COUNTER_FUNCS.contains(&f));
        Ok(deduplicate(
            decoded,
            &self.options.replica_labels,
            self.options.dedup,
            counter,
        ))
    }
}
