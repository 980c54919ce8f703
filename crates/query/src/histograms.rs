//! Series holding native histogram chunks (Store API `HISTOGRAM` and `FLOAT_HISTOGRAM`):
//! decoded into float histograms (integer histograms converted, as Prometheus' engine
//! reads them), with the float samples a series may hold beside them, and replicas
//! deduplicated by the same rules as float series (the penalty algorithm looks at
//! timestamps only; Thanos' counter adjustment applies to floats and is not used here).

use std::sync::Arc;

use strata_chunkenc::{FloatHistogramIter, HistogramIter};
use strata_promql::Series;
use strata_storepb::{Aggr, AggrChunk, Chunk, chunk};
use strata_types::histogram::HistogramSample;
use strata_types::{Labels, Sample};

use crate::dedup::DedupFunc;

fn is_histogram(c: &Chunk) -> bool {
    c.r#type == chunk::Encoding::Histogram as i32
        || c.r#type == chunk::Encoding::FloatHistogram as i32
}

/// Whether the series holds histograms: raw histogram chunks, or downsampled ones whose
/// sum or counter aggregates are histograms.
pub fn has_histograms(chunks: &[AggrChunk]) -> bool {
    chunks.iter().any(|c| {
        [c.raw.as_ref(), c.sum.as_deref(), c.counter.as_deref()]
            .into_iter()
            .flatten()
            .any(is_histogram)
    })
}

/// The histograms of one chunk in `[start, end]` (integer ones read as float histograms):
/// read only up to `end` (the rest of the chunk is not needed), converted only from
/// `start`.
fn histograms_of(c: &Chunk, start: i64, end: i64) -> Result<Vec<HistogramSample>, String> {
    match chunk::Encoding::try_from(c.r#type) {
        Ok(chunk::Encoding::Histogram) => {
            let mut it = HistogramIter::new(&c.data).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for (t, h) in it.by_ref() {
                if t > end {
                    return Ok(out);
                }
                if t >= start {
                    out.push(HistogramSample {
                        t,
                        h: Arc::new(h.to_float()),
                    });
                }
            }
            it.finish().map_err(|e| e.to_string())?;
            Ok(out)
        }
        Ok(chunk::Encoding::FloatHistogram) => {
            let mut it = FloatHistogramIter::new(&c.data).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for (t, h) in it.by_ref() {
                if t > end {
                    return Ok(out);
                }
                if t >= start {
                    out.push(HistogramSample { t, h: Arc::new(h) });
                }
            }
            it.finish().map_err(|e| e.to_string())?;
            Ok(out)
        }
        _ => Err(format!("chunk encoding {} is not a histogram", c.r#type)),
    }
}

fn floats_of(c: &Chunk) -> Result<Vec<Sample>, String> {
    if c.r#type != chunk::Encoding::Xor as i32 {
        return Err(format!("chunk encoding {} is not XOR", c.r#type));
    }
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    strata_chunkenc::decode_xor(&c.data, &mut ts, &mut vs).map_err(|e| e.to_string())?;
    Ok(ts.iter().zip(&vs).map(|(&t, &v)| Sample { t, v }).collect())
}

/// The points of a downsampled histogram chunk for the requested aggregates, as Thanos'
/// querier reads them: the counter or the sum histograms, the counts, or (count and sum)
/// the average histogram of each window.
fn aggregate_points(c: &AggrChunk, aggrs: &[Aggr]) -> Result<Vec<Point>, String> {
    let need = |part: Option<&Chunk>, name: &str| -> Result<Chunk, String> {
        part.cloned()
            .ok_or_else(|| format!("downsampled chunk without the {name} aggregate"))
    };
    let histograms = |part: Option<&Chunk>, name: &str| -> Result<Vec<Point>, String> {
        Ok(histograms_of(&need(part, name)?, i64::MIN, i64::MAX)?
            .into_iter()
            .map(Point::Histogram)
            .collect())
    };
    match aggrs {
        [Aggr::Counter] => histograms(c.counter.as_deref(), "counter"),
        [Aggr::Sum] => histograms(c.sum.as_deref(), "sum"),
        [Aggr::Count] => Ok(floats_of(&need(c.count.as_deref(), "count")?)?
            .into_iter()
            .map(Point::Float)
            .collect()),
        [Aggr::Count, Aggr::Sum] | [Aggr::Sum, Aggr::Count] => {
            let counts = floats_of(&need(c.count.as_deref(), "count")?)?;
            let sums = histograms_of(&need(c.sum.as_deref(), "sum")?, i64::MIN, i64::MAX)?;
            if counts.len() != sums.len() {
                return Err("sum and count aggregates not aligned".into());
            }
            counts
                .iter()
                .zip(sums)
                .map(|(n, s)| {
                    if n.t != s.t {
                        return Err("sum and count timestamps not aligned".to_owned());
                    }
                    let mut h = (*s.h).clone();
                    h.div(n.v);
                    Ok(Point::Histogram(HistogramSample {
                        t: s.t,
                        h: Arc::new(h),
                    }))
                })
                .collect()
        }
        other => Err(format!(
            "downsampled native histograms have no {other:?} aggregate"
        )),
    }
}

/// One decoded point of a series that may mix floats and histograms.
#[derive(Debug, Clone)]
enum Point {
    Float(Sample),
    Histogram(HistogramSample),
}

impl Point {
    fn t(&self) -> i64 {
        match self {
            Point::Float(s) => s.t,
            Point::Histogram(h) => h.t,
        }
    }
}

/// The points of raw chunks, in time order, one per timestamp (the first chunk's wins),
/// within `[start, end]`. Downsampled chunks of histograms do not exist: a series with
/// histogram chunks is read from its raw chunks.
fn decode_points(
    chunks: &[AggrChunk],
    start: i64,
    end: i64,
    aggrs: &[Aggr],
) -> Result<Vec<Point>, String> {
    let mut sorted: Vec<&AggrChunk> = chunks.iter().collect();
    sorted.sort_by_key(|c| (c.min_time, c.max_time));
    // Chunks of raw data announce their sample count in their first two bytes.
    let announced: usize = sorted
        .iter()
        .filter_map(|c| c.raw.as_ref())
        .filter_map(|raw| match &raw.data[..] {
            [hi, lo, ..] => Some(usize::from(u16::from_be_bytes([*hi, *lo]))),
            _ => None,
        })
        .sum();
    let mut points = Vec::with_capacity(announced.min(1 << 20));
    for c in sorted {
        if c.max_time < start || c.min_time > end {
            continue;
        }
        let Some(raw) = &c.raw else {
            // Downsampled: never back in time across chunks (Thanos' iterators seek on).
            let last = points.last().map_or(i64::MIN, Point::t);
            points.extend(
                aggregate_points(c, aggrs)?
                    .into_iter()
                    .filter(|p| p.t() > last),
            );
            continue;
        };
        match chunk::Encoding::try_from(raw.r#type) {
            Ok(chunk::Encoding::Xor) => {
                let (mut ts, mut vs) = (Vec::new(), Vec::new());
                strata_chunkenc::decode_xor(&raw.data, &mut ts, &mut vs)
                    .map_err(|e| e.to_string())?;
                points.extend(
                    ts.iter()
                        .zip(&vs)
                        .map(|(&t, &v)| Point::Float(Sample { t, v })),
                );
            }
            Ok(chunk::Encoding::Histogram | chunk::Encoding::FloatHistogram) => points.extend(
                histograms_of(raw, start, end)?
                    .into_iter()
                    .map(Point::Histogram),
            ),
            _ => return Err(format!("chunk encoding {} is not supported", raw.r#type)),
        }
    }
    points.retain(|p| p.t() >= start && p.t() <= end);
    if !points.is_sorted_by_key(Point::t) {
        points.sort_by_key(Point::t);
    }
    points.dedup_by_key(|p| p.t());
    Ok(points)
}

fn into_series(labels: Labels, points: Vec<Point>) -> Series {
    let mut series = Series::floats(labels, Vec::new());
    for p in points {
        match p {
            Point::Float(s) => series.samples.push(s),
            Point::Histogram(h) => series.histograms.push(h),
        }
    }
    series
}

/// Decodes one series' chunks (no deduplication); `None` when nothing is in the range.
pub fn decode(
    labels: Labels,
    chunks: &[AggrChunk],
    start: i64,
    end: i64,
    aggrs: &[Aggr],
) -> Result<Option<Series>, String> {
    let points =
        decode_points(chunks, start, end, aggrs).map_err(|e| format!("series {labels}: {e}"))?;
    Ok((!points.is_empty()).then(|| into_series(labels, points)))
}

/// Deduplicates the replicas (chunk groups, as `overlap_split` made them) of one series
/// holding histograms: the merge decides by timestamps which replica's point is kept.
pub fn dedup(
    labels: Labels,
    replicas: Vec<Vec<AggrChunk>>,
    start: i64,
    end: i64,
    func: DedupFunc,
    aggrs: &[Aggr],
) -> Result<Option<Series>, String> {
    let mut decoded: Vec<Vec<Point>> = Vec::new();
    for part in &replicas {
        let points =
            decode_points(part, start, end, aggrs).map_err(|e| format!("series {labels}: {e}"))?;
        if !points.is_empty() {
            decoded.push(points);
        }
    }
    if decoded.is_empty() {
        return Ok(None);
    }
    let points = crate::dedup::dedup_by_time(decoded, func, Point::t);
    Ok(Some(into_series(labels, points)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_chunkenc::{CounterResetHeader, HistogramEncoder};
    use strata_storepb::Chunk;
    use strata_types::histogram::{Histogram, Span};

    fn hist_chunk(from: i64, n: i64) -> AggrChunk {
        let mut enc = HistogramEncoder::new(CounterResetHeader::Unknown);
        for i in 0..n {
            let h = Histogram {
                schema: 0,
                count: (i + 1) as u64,
                sum: i as f64,
                positive_spans: vec![Span {
                    offset: 0,
                    length: 1,
                }],
                positive_buckets: vec![i + 1],
                ..Histogram::default()
            };
            enc.append(from + i * 1000, &h).unwrap_or_default();
        }
        AggrChunk {
            min_time: from,
            max_time: from + (n - 1) * 1000,
            raw: Some(Chunk {
                r#type: chunk::Encoding::Histogram as i32,
                data: enc.bytes().into(),
                hash: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn histogram_chunks_decode_into_float_histograms() {
        let chunks = vec![hist_chunk(0, 5)];
        assert!(has_histograms(&chunks));
        let s = decode(Labels::from_pairs([("a", "b")]), &chunks, 1000, 3000, &[])
            .ok()
            .flatten();
        let s = s.unwrap_or_else(|| Series::floats(Labels::empty(), Vec::new()));
        let counts: Vec<(i64, f64)> = s.histograms.iter().map(|h| (h.t, h.h.count)).collect();
        assert_eq!(counts, vec![(1000, 2.0), (2000, 3.0), (3000, 4.0)]);
        assert!(s.samples.is_empty());
    }

    #[test]
    fn replicas_merge_by_timestamps() {
        // Replica a has a gap from 3 s on; replica b fills it.
        let a = vec![hist_chunk(0, 3)];
        let b = vec![hist_chunk(500, 10)];
        let s = dedup(
            Labels::empty(),
            vec![a, b],
            0,
            20_000,
            DedupFunc::Penalty,
            &[],
        )
        .ok()
        .flatten()
        .unwrap_or_else(|| Series::floats(Labels::empty(), Vec::new()));
        let ts: Vec<i64> = s.histograms.iter().map(|h| h.t).collect();
        assert!(ts.is_sorted(), "{ts:?}");
        assert_eq!(ts.first(), Some(&0));
        assert_eq!(ts.last(), Some(&9500));
    }
}
