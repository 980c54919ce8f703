//! Vertical compaction of series holding native histogram chunks: each replica's points
//! (floats, integer and float histograms) decoded, merged by the same deduplication rule
//! as float series (on timestamps), and written again in their own kinds (XOR for floats,
//! integer or float histogram chunks, each cut and laid out as Prometheus' appender would).

use strata_chunkenc::{Encoding, FloatHistogramIter, HistogramIter, XorIter};
use strata_types::histogram::{FloatHistogram, Histogram};
use strata_types::{Labels, Sample};

use crate::block::BlockReader;
use crate::cutter::EncodedChunk;
use crate::dedup::DedupFunc;
use crate::error::{Error, Result};
use crate::index::ChunkMeta;

/// Whether a chunk holds histograms.
pub(crate) fn is_histogram(encoding: Encoding) -> bool {
    matches!(encoding, Encoding::Histogram | Encoding::FloatHistogram)
}

/// One decoded point of any kind.
#[derive(Debug, Clone)]
pub(crate) enum Point {
    Float(Sample),
    Histogram(i64, Histogram),
    FloatHistogram(i64, FloatHistogram),
}

impl Point {
    pub(crate) fn t(&self) -> i64 {
        match self {
            Point::Float(s) => s.t,
            Point::Histogram(t, _) | Point::FloatHistogram(t, _) => *t,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Point::Float(_) => 0,
            Point::Histogram(..) => 1,
            Point::FloatHistogram(..) => 2,
        }
    }
}

/// Every point of one series' chunks in a block, deleted ones left out, in time order with
/// one point per timestamp.
pub(crate) fn decode_points(
    block: &BlockReader,
    series_ref: u32,
    chunks: &[ChunkMeta],
) -> Result<Vec<Point>> {
    let deleted = block.tombstones().intervals(u64::from(series_ref));
    let mut out = Vec::new();
    for meta in chunks {
        let chunk = block.chunks().chunk(meta.chunk_ref)?;
        let bad = |e: strata_chunkenc::ChunkError| {
            Error::invalid(block.name(), format!("chunk {}: {e}", meta.chunk_ref))
        };
        match chunk.encoding {
            Encoding::Xor => {
                let mut it = XorIter::new(&chunk.data).map_err(bad)?;
                while let Some((t, v)) = it.next_sample() {
                    out.push(Point::Float(Sample { t, v }));
                }
                it.finish().map_err(bad)?;
            }
            Encoding::Histogram => {
                let mut it = HistogramIter::new(&chunk.data).map_err(bad)?;
                out.extend(it.by_ref().map(|(t, h)| Point::Histogram(t, h)));
                it.finish().map_err(bad)?;
            }
            Encoding::FloatHistogram => {
                let mut it = FloatHistogramIter::new(&chunk.data).map_err(bad)?;
                out.extend(it.by_ref().map(|(t, h)| Point::FloatHistogram(t, h)));
                it.finish().map_err(bad)?;
            }
            other => {
                return Err(Error::invalid(
                    block.name(),
                    format!("chunk {}: encoding {other} in a raw block", meta.chunk_ref),
                ));
            }
        }
    }
    out.retain(|p| !deleted.iter().any(|&(lo, hi)| lo <= p.t() && p.t() <= hi));
    out.sort_by_key(Point::t);
    out.dedup_by_key(|p| p.t());
    Ok(out)
}

/// Merges replicas (each in time order) by `dedup`, deciding on timestamps.
pub(crate) fn merge(mut replicas: Vec<Vec<Point>>, dedup: DedupFunc) -> Vec<Point> {
    replicas.retain(|r| !r.is_empty());
    replicas.sort_by_key(|r| r.first().map_or(i64::MAX, Point::t));
    crate::dedup::dedup_by_time(replicas, dedup, Point::t)
}

/// Chunks holding `points`: each run of one kind written in its encoding.
pub(crate) fn encode_points(points: &[Point], labels: &Labels) -> Result<Vec<EncodedChunk>> {
    let err = |e: strata_chunkenc::ChunkError| {
        Error::invalid("compaction output", format!("series {labels}: {e}"))
    };
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < points.len() {
        let kind = points.get(start).map_or(0, Point::kind);
        let end = points
            .get(start..)
            .unwrap_or_default()
            .iter()
            .position(|p| p.kind() != kind)
            .map_or(points.len(), |n| start + n);
        let run = points.get(start..end).unwrap_or_default();
        match kind {
            0 => {
                let samples: Vec<Sample> = run
                    .iter()
                    .filter_map(|p| match p {
                        Point::Float(s) => Some(*s),
                        _ => None,
                    })
                    .collect();
                out.extend(crate::compact::encode_fixed(&samples).map_err(err)?);
            }
            1 => {
                let hs: Vec<(i64, Histogram)> = run
                    .iter()
                    .filter_map(|p| match p {
                        Point::Histogram(t, h) => Some((*t, h.clone())),
                        _ => None,
                    })
                    .collect();
                out.extend(
                    strata_chunkenc::encode_histograms(&hs)
                        .map_err(err)?
                        .into_iter()
                        .map(into_encoded),
                );
            }
            _ => {
                let hs: Vec<(i64, FloatHistogram)> = run
                    .iter()
                    .filter_map(|p| match p {
                        Point::FloatHistogram(t, h) => Some((*t, h.clone())),
                        _ => None,
                    })
                    .collect();
                out.extend(
                    strata_chunkenc::encode_float_histograms(&hs)
                        .map_err(err)?
                        .into_iter()
                        .map(into_encoded),
                );
            }
        }
        start = end;
    }
    Ok(out)
}

fn into_encoded(c: strata_chunkenc::WrittenChunk) -> EncodedChunk {
    EncodedChunk {
        min_time: c.min_time,
        max_time: c.max_time,
        encoding: c.encoding,
        data: c.data,
    }
}
