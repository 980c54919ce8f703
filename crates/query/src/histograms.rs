//! Series holding native histogram chunks (Store API `HISTOGRAM` and `FLOAT_HISTOGRAM`):
//! decoded into float histograms (integer histograms converted, as Prometheus' engine
//! reads them), with the float samples a series may hold beside them, and replicas
//! deduplicated by the same rules as float series (the penalty algorithm looks at
//! timestamps only; Thanos' counter adjustment applies to floats and is not used here).

use std::sync::Arc;

use strata_chunkenc::{FloatHistogramIter, HistogramIter};
use strata_promql::Series;
use strata_storepb::{AggrChunk, chunk};
use strata_types::histogram::HistogramSample;
use strata_types::{Labels, Sample};

use crate::dedup::{DedupFunc, dedup_replicas};

/// Whether any raw chunk of the series holds histograms.
pub fn has_histograms(chunks: &[AggrChunk]) -> bool {
    chunks.iter().any(|c| {
        c.raw.as_ref().is_some_and(|raw| {
            raw.r#type == chunk::Encoding::Histogram as i32
                || raw.r#type == chunk::Encoding::FloatHistogram as i32
        })
    })
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
fn decode_points(chunks: &[AggrChunk], start: i64, end: i64) -> Result<Vec<Point>, String> {
    let mut sorted: Vec<&AggrChunk> = chunks.iter().collect();
    sorted.sort_by_key(|c| (c.min_time, c.max_time));
    let mut points = Vec::new();
    for c in sorted {
        if c.max_time < start || c.min_time > end {
            continue;
        }
        let Some(raw) = &c.raw else {
            return Err("a downsampled chunk in a series of native histograms".into());
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
            Ok(chunk::Encoding::Histogram) => {
                let mut it = HistogramIter::new(&raw.data).map_err(|e| e.to_string())?;
                for (t, h) in it.by_ref() {
                    points.push(Point::Histogram(HistogramSample {
                        t,
                        h: Arc::new(h.to_float()),
                    }));
                }
                it.finish().map_err(|e| e.to_string())?;
            }
            Ok(chunk::Encoding::FloatHistogram) => {
                let mut it = FloatHistogramIter::new(&raw.data).map_err(|e| e.to_string())?;
                for (t, h) in it.by_ref() {
                    points.push(Point::Histogram(HistogramSample { t, h: Arc::new(h) }));
                }
                it.finish().map_err(|e| e.to_string())?;
            }
            _ => return Err(format!("chunk encoding {} is not supported", raw.r#type)),
        }
    }
    points.retain(|p| p.t() >= start && p.t() <= end);
    points.sort_by_key(Point::t);
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
) -> Result<Option<Series>, String> {
    let points = decode_points(chunks, start, end).map_err(|e| format!("series {labels}: {e}"))?;
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
) -> Result<Option<Series>, String> {
    let mut decoded: Vec<Vec<Point>> = Vec::new();
    for part in &replicas {
        let points =
            decode_points(part, start, end).map_err(|e| format!("series {labels}: {e}"))?;
        if !points.is_empty() {
            decoded.push(points);
        }
    }
    if decoded.len() <= 1 {
        return Ok(decoded.pop().map(|points| into_series(labels, points)));
    }
    // Each point stands in the merge as a sample whose value names it: replica in the high
    // bits, position in the low 32 (exact in an f64 for any realistic count).
    let stand_ins: Vec<Vec<Sample>> = decoded
        .iter()
        .enumerate()
        .map(|(r, points)| {
            points
                .iter()
                .enumerate()
                .map(|(i, p)| Sample {
                    t: p.t(),
                    v: ((r as u64) << 32 | i as u64) as f64,
                })
                .collect()
        })
        .collect();
    let merged = dedup_replicas(stand_ins, func, false);
    let mut points = Vec::with_capacity(merged.len());
    for s in merged {
        let id = s.v as u64;
        let (r, i) = ((id >> 32) as usize, (id & 0xffff_ffff) as usize);
        if let Some(p) = decoded.get(r).and_then(|points| points.get(i)) {
            points.push(p.clone());
        }
    }
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
                data: enc.bytes(),
                hash: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn histogram_chunks_decode_into_float_histograms() {
        let chunks = vec![hist_chunk(0, 5)];
        assert!(has_histograms(&chunks));
        let s = decode(Labels::from_pairs([("a", "b")]), &chunks, 1000, 3000)
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
        let s = dedup(Labels::empty(), vec![a, b], 0, 20_000, DedupFunc::Penalty)
            .ok()
            .flatten()
            .unwrap_or_else(|| Series::floats(Labels::empty(), Vec::new()));
        let ts: Vec<i64> = s.histograms.iter().map(|h| h.t).collect();
        assert!(ts.is_sorted(), "{ts:?}");
        assert_eq!(ts.first(), Some(&0));
        assert_eq!(ts.last(), Some(&9500));
    }
}
