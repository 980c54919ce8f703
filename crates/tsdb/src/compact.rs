//! Compaction: merging several blocks into one, as Prometheus' leveled compactor does.
//!
//! Series of all inputs are merged in label order (a k-way merge over each block's sorted
//! series, so only one series per input is held at a time; the output index is written at
//! the end from the labels and chunk references collected). A series whose chunks do not
//! overlap in time across inputs keeps its chunks byte for byte. Where chunks overlap
//! (vertical compaction: replicas, backfills) or tombstones delete samples, the samples are
//! decoded, merged with the chosen [`DedupFunc`] and re-encoded into chunks of at most
//! 120 samples.

use std::path::{Path, PathBuf};

use strata_chunkenc::{Encoding, SAMPLES_PER_CHUNK, XorEncoder};
use strata_types::{Labels, Sample};

use crate::block::{BlockOptions, BlockReader, BlockWriter};
use crate::cutter::EncodedChunk;
use crate::dedup::{DedupFunc, dedup_replicas};
use crate::error::{Corruption, Error, Result};
use crate::index::{ChunkMeta, IndexReader, SeriesIter};
use crate::meta::{BlockDesc, BlockMeta, Compaction, ThanosMeta};

/// How to merge blocks.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// How samples of overlapping chunks are merged: `Chain` (one sample per timestamp, the
    /// Prometheus default) or `Penalty` (Thanos' replica deduplication, without counter
    /// adjustment).
    pub dedup: DedupFunc,
    /// The `thanos` section of the output (labels, resolution, source).
    pub thanos: Option<ThanosMeta>,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            dedup: DedupFunc::Chain,
            thanos: None,
        }
    }
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Series written.
    pub series: u64,
    /// Chunks copied unchanged.
    pub chunks_copied: u64,
    /// Series whose samples were merged and re-encoded.
    pub series_merged: u64,
}

struct Cursor<'a> {
    block: &'a BlockReader,
    series: SeriesIter<'a>,
    head: Option<(Labels, u32, Vec<ChunkMeta>)>,
}

impl Cursor<'_> {
    fn advance(&mut self) -> Result<()> {
        self.head = match self.series.next() {
            None => None,
            Some(entry) => {
                let (series_ref, entry) = entry?;
                Some((entry.labels, series_ref, entry.chunks))
            }
        };
        Ok(())
    }
}

type SymbolIter<'a> = Box<dyn Iterator<Item = std::result::Result<&'a str, Corruption>> + 'a>;

/// The sorted union of the symbol tables of `indexes`, for an output index written as the
/// merge goes (a superset of the symbols it needs, as Prometheus' compactor writes). The
/// first error reading a table ends the iteration; [`SymbolUnion::check`] reports it.
pub(crate) struct SymbolUnion<'a> {
    /// Per table: its block, its next symbol, the rest.
    heads: Vec<(&'a str, Option<&'a str>, SymbolIter<'a>)>,
    error: Option<(String, Corruption)>,
}

impl<'a> SymbolUnion<'a> {
    pub(crate) fn new(indexes: &[&'a IndexReader]) -> SymbolUnion<'a> {
        let mut union = SymbolUnion {
            heads: Vec::with_capacity(indexes.len()),
            error: None,
        };
        for index in indexes {
            let mut rest: SymbolIter<'a> = Box::new(index.symbols().iter());
            let head = union.pull(index.block(), &mut rest);
            union.heads.push((index.block(), head, rest));
        }
        union
    }

    fn pull(&mut self, block: &str, rest: &mut SymbolIter<'a>) -> Option<&'a str> {
        match rest.next()? {
            Ok(s) => Some(s),
            Err(c) => {
                self.error.get_or_insert((block.to_owned(), c));
                None
            }
        }
    }

    /// The error that ended the iteration early, if any, naming the block.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.error {
            Some((block, c)) => Err(Error::corrupt(block, c.clone())),
            None => Ok(()),
        }
    }
}

impl<'a> Iterator for SymbolUnion<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.error.is_some() {
            return None;
        }
        let min = self.heads.iter().filter_map(|h| h.1).min()?;
        let mut heads = std::mem::take(&mut self.heads);
        for (block, head, rest) in &mut heads {
            // Each table is sorted and unique: a table moves one step past `min` at most.
            if *head == Some(min) {
                *head = self.pull(block, rest);
            }
        }
        self.heads = heads;
        Some(min)
    }
}

/// Merges `inputs` into a new block `<parent>/<ulid>`. Returns `None` (and writes nothing)
/// when the inputs hold no series, as Prometheus does; the caller then only retires the
/// inputs. The output's time range is the union of the inputs' ranges; its compaction
/// level is one more than the highest input level, its sources the union of theirs.
pub fn compact_blocks(
    parent: &Path,
    ulid: ulid::Ulid,
    inputs: &[BlockReader],
    options: &CompactOptions,
) -> Result<Option<(PathBuf, BlockMeta, CompactStats)>> {
    let name = ulid.to_string();
    let Some(first) = inputs.first() else {
        return Err(Error::invalid(&name, "nothing to compact"));
    };
    let mut cursors = Vec::with_capacity(inputs.len());
    for block in inputs {
        let mut cursor = Cursor {
            block,
            series: block.index().series_iter(),
            head: None,
        };
        cursor.advance()?;
        cursors.push(cursor);
    }
    let indexes: Vec<&IndexReader> = inputs.iter().map(BlockReader::index).collect();
    let mut symbols = SymbolUnion::new(&indexes);
    let writer = BlockWriter::streaming(parent, ulid, &mut symbols);
    symbols.check()?;
    let mut writer = writer?;
    let mut stats = CompactStats::default();
    let mut min_time = first.meta().min_time;
    let mut max_time = first.meta().max_time;
    let mut level = 0;
    let mut sources: Vec<String> = Vec::new();
    let mut parents = Vec::new();
    for block in inputs {
        let meta = block.meta();
        min_time = min_time.min(meta.min_time);
        max_time = max_time.max(meta.max_time);
        level = level.max(meta.compaction.level);
        sources.extend(meta.compaction.sources.iter().cloned());
        parents.push(BlockDesc {
            ulid: meta.ulid.clone(),
            min_time: meta.min_time,
            max_time: meta.max_time,
        });
    }
    sources.sort();
    sources.dedup();

    while let Some(labels) = cursors
        .iter()
        .filter_map(|c| c.head.as_ref().map(|h| &h.0))
        .min()
        .cloned()
    {
        // Every input's entry for these labels (one per input: series are unique and
        // sorted within a block).
        let mut parts: Vec<(&BlockReader, u32, Vec<ChunkMeta>)> = Vec::new();
        for cursor in &mut cursors {
            while let Some((l, series_ref, chunks)) = cursor.head.take() {
                if l != labels {
                    cursor.head = Some((l, series_ref, chunks));
                    break;
                }
                parts.push((cursor.block, series_ref, chunks));
                cursor.advance()?;
            }
        }
        write_series(&mut writer, &labels, &parts, options.dedup, &mut stats)?;
    }

    if stats.series == 0 {
        drop(writer);
        let tmp = parent.join(format!("{name}.tmp-for-creation"));
        let _ = std::fs::remove_dir_all(tmp);
        return Ok(None);
    }
    let (dir, meta) = writer.finish(BlockOptions {
        min_time: Some(min_time),
        max_time: Some(max_time),
        thanos: options.thanos.clone(),
        compaction: Some(Compaction {
            level: level.saturating_add(1),
            sources,
            parents,
            ..Compaction::default()
        }),
    })?;
    Ok(Some((dir, meta, stats)))
}

fn write_series(
    writer: &mut BlockWriter,
    labels: &Labels,
    parts: &[(&BlockReader, u32, Vec<ChunkMeta>)],
    dedup: DedupFunc,
    stats: &mut CompactStats,
) -> Result<()> {
    let mut all: Vec<(&BlockReader, ChunkMeta)> = parts
        .iter()
        .flat_map(|(block, _, chunks)| chunks.iter().map(move |c| (*block, *c)))
        .collect();
    all.sort_by_key(|(_, c)| (c.min_time, c.max_time));
    let overlapping = all
        .windows(2)
        .any(|w| matches!(w, [a, b] if b.1.min_time <= a.1.max_time));
    let deletions = parts.iter().any(|(block, series_ref, _)| {
        !block
            .tombstones()
            .intervals(u64::from(*series_ref))
            .is_empty()
    });
    if !overlapping && !deletions {
        let mut chunks = Vec::with_capacity(all.len());
        for (block, meta) in &all {
            let raw = block.chunks().chunk(meta.chunk_ref)?;
            chunks.push(EncodedChunk {
                min_time: meta.min_time,
                max_time: meta.max_time,
                encoding: raw.encoding,
                data: raw.data.to_vec(),
            });
        }
        if chunks.is_empty() {
            return Ok(());
        }
        stats.chunks_copied += chunks.len() as u64;
        stats.series += 1;
        return writer.add_series(labels, &chunks);
    }
    if all
        .iter()
        .any(|(block, meta)| chunk_holds_histograms(block, meta))
    {
        return write_histogram_series(writer, labels, parts, dedup, stats);
    }
    // One replica per input series, in the order of their first sample.
    let mut replicas: Vec<Vec<Sample>> = Vec::with_capacity(parts.len());
    for (block, series_ref, chunks) in parts {
        let entry = crate::index::SeriesEntry {
            labels: labels.clone(),
            chunks: chunks.clone(),
        };
        let mut samples = block.samples(*series_ref, &entry, i64::MIN, i64::MAX)?;
        // Chunks of one series that overlap each other (out-of-order chunks): keep one
        // sample per timestamp.
        samples.sort_by_key(|s| s.t);
        samples.dedup_by_key(|s| s.t);
        if !samples.is_empty() {
            replicas.push(samples);
        }
    }
    replicas.sort_by_key(|r| r.first().map_or(i64::MAX, |s| s.t));
    let merged = dedup_replicas(replicas, dedup, false);
    if merged.is_empty() {
        return Ok(());
    }
    let chunks = encode_fixed(&merged)
        .map_err(|e| Error::invalid(&writer.ulid().to_string(), format!("series {labels}: {e}")))?;
    stats.series_merged += 1;
    stats.series += 1;
    writer.add_series(labels, &chunks)
}

/// Whether the chunk holds native histograms (unreadable chunks answer no; reading them
/// reports the error).
fn chunk_holds_histograms(block: &BlockReader, meta: &ChunkMeta) -> bool {
    block
        .chunks()
        .chunk(meta.chunk_ref)
        .is_ok_and(|c| crate::compact_histograms::is_histogram(c.encoding))
}

/// [`write_series`] for a series holding native histograms: merged point by point, written
/// again in each point's own kind.
fn write_histogram_series(
    writer: &mut BlockWriter,
    labels: &Labels,
    parts: &[(&BlockReader, u32, Vec<ChunkMeta>)],
    dedup: DedupFunc,
    stats: &mut CompactStats,
) -> Result<()> {
    use crate::compact_histograms::{decode_points, encode_points, merge};
    let mut replicas = Vec::with_capacity(parts.len());
    for (block, series_ref, chunks) in parts {
        replicas.push(decode_points(block, *series_ref, chunks)?);
    }
    let merged = merge(replicas, dedup);
    if merged.is_empty() {
        return Ok(());
    }
    let chunks = encode_points(&merged, labels)?;
    stats.series_merged += 1;
    stats.series += 1;
    writer.add_series(labels, &chunks)
}

/// XOR chunks of at most 120 samples each.
pub(crate) fn encode_fixed(
    samples: &[Sample],
) -> std::result::Result<Vec<EncodedChunk>, strata_chunkenc::ChunkError> {
    let mut out = Vec::with_capacity(samples.len().div_ceil(SAMPLES_PER_CHUNK));
    for batch in samples.chunks(SAMPLES_PER_CHUNK) {
        let mut encoder = XorEncoder::new();
        for s in batch {
            encoder.append(s.t, s.v)?;
        }
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            continue;
        };
        out.push(EncodedChunk {
            min_time: first.t,
            max_time: last.t,
            encoding: Encoding::Xor,
            data: encoder.bytes(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(from: i64, to: i64, step: i64, v: impl Fn(i64) -> f64) -> Vec<Sample> {
        (from..to)
            .step_by(step as usize)
            .map(|t| Sample { t, v: v(t) })
            .collect()
    }

    fn write(dir: &Path, series: &[(&str, Vec<Sample>)], min: i64, max: i64) -> BlockReader {
        let mut w = BlockWriter::new(dir).unwrap();
        let mut sorted: Vec<_> = series.iter().collect();
        sorted.sort_by_key(|(n, _)| Labels::from_pairs([("__name__", *n)]));
        for (name, s) in sorted {
            w.add_samples(&Labels::from_pairs([("__name__", *name)]), s, 7_200_000)
                .unwrap();
        }
        let (path, _) = w
            .finish(BlockOptions {
                min_time: Some(min),
                max_time: Some(max),
                ..BlockOptions::default()
            })
            .unwrap();
        BlockReader::open(&path).unwrap()
    }

    fn read_all(block: &BlockReader) -> Vec<(Labels, Vec<Sample>)> {
        let mut out = Vec::new();
        for r in block.index().all_postings().unwrap() {
            let e = block.series(r).unwrap();
            let s = block.samples(r, &e, i64::MIN, i64::MAX).unwrap();
            out.push((e.labels, s));
        }
        out
    }

    #[test]
    fn adjacent_blocks_keep_chunks_and_merge_series() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            &[
                ("a", samples(0, 7_200_000, 15_000, |t| t as f64)),
                ("b", samples(0, 3_600_000, 15_000, |_| 1.0)),
            ],
            0,
            7_200_000,
        );
        let b = write(
            dir.path(),
            &[
                ("a", samples(7_200_000, 14_400_000, 15_000, |t| t as f64)),
                ("c", samples(7_200_000, 8_000_000, 15_000, |_| 2.0)),
            ],
            7_200_000,
            14_400_000,
        );
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let (path, meta, stats) = compact_blocks(
            &out,
            ulid::Ulid::generate(),
            &[a.clone(), b.clone()],
            &CompactOptions::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(stats.series, 3);
        assert_eq!(stats.series_merged, 0);
        assert_eq!(meta.min_time, 0);
        assert_eq!(meta.max_time, 14_400_000);
        assert_eq!(meta.compaction.level, 2);
        assert_eq!(meta.compaction.sources.len(), 2);
        assert_eq!(meta.compaction.parents.len(), 2);
        let merged = read_all(&BlockReader::open(&path).unwrap());
        let names: Vec<String> = merged.iter().map(|(l, _)| l.to_string()).collect();
        assert_eq!(
            names,
            ["{__name__=\"a\"}", "{__name__=\"b\"}", "{__name__=\"c\"}"]
        );
        assert_eq!(merged[0].1, samples(0, 14_400_000, 15_000, |t| t as f64));
        assert_eq!(merged[1].1.len(), 240);
        assert_eq!(
            merged[2].1.len(),
            samples(7_200_000, 8_000_000, 15_000, |_| 2.0).len()
        );
    }

    /// A counter histogram series with one bucket per power of two up to `t / 60 s`.
    fn histograms(from: i64, to: i64, step: i64) -> Vec<(i64, strata_types::histogram::Histogram)> {
        use strata_types::histogram::{Histogram, Span};
        (from..to)
            .step_by(step as usize)
            .map(|t| {
                let n = 1 + (t / 60_000 % 4) as u32;
                let count = (t / 1000) as u64 * u64::from(n);
                (
                    t,
                    Histogram {
                        count,
                        sum: count as f64 * 0.5,
                        positive_spans: vec![Span {
                            offset: 0,
                            length: n,
                        }],
                        // Every bucket holds t / 1000: deltas are that, then zeros.
                        positive_buckets: (0..n)
                            .map(|i| if i == 0 { t / 1000 } else { 0 })
                            .collect(),
                        ..Histogram::default()
                    },
                )
            })
            .collect()
    }

    fn write_histograms(
        dir: &Path,
        series: &[(i64, strata_types::histogram::Histogram)],
    ) -> BlockReader {
        let mut w = BlockWriter::new(dir).unwrap();
        let chunks: Vec<EncodedChunk> = strata_chunkenc::encode_histograms(series)
            .unwrap()
            .into_iter()
            .map(|c| EncodedChunk {
                min_time: c.min_time,
                max_time: c.max_time,
                encoding: c.encoding,
                data: c.data,
            })
            .collect();
        w.add_series(&Labels::from_pairs([("__name__", "h")]), &chunks)
            .unwrap();
        let (path, _) = w
            .finish(BlockOptions {
                min_time: Some(0),
                max_time: Some(7_200_000),
                ..BlockOptions::default()
            })
            .unwrap();
        BlockReader::open(&path).unwrap()
    }

    /// Overlapping blocks of a native histogram series (two replicas, one with a gap) merge
    /// into one series holding every histogram once, bucket counts intact.
    #[test]
    fn overlapping_histogram_blocks_are_merged() {
        let dir = tempfile::tempdir().unwrap();
        let all = histograms(0, 7_200_000, 30_000);
        let mut gappy = all.clone();
        gappy.retain(|(t, _)| !(1_000_000..3_000_000).contains(t));
        let a = write_histograms(dir.path(), &gappy);
        let b = write_histograms(&dir.path().join("b"), &all);
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let (path, _, stats) = compact_blocks(
            &out,
            ulid::Ulid::generate(),
            &[a, b],
            &CompactOptions::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(stats.series_merged, 1);
        let merged = BlockReader::open(&path).unwrap();
        let r = merged.index().all_postings().unwrap()[0];
        let entry = merged.series(r).unwrap();
        let points = crate::compact_histograms::decode_points(&merged, r, &entry.chunks).unwrap();
        assert_eq!(points.len(), all.len());
        for (p, (t, h)) in points.iter().zip(&all) {
            let crate::compact_histograms::Point::Histogram(pt, ph) = p else {
                panic!("not an integer histogram at {}", p.t());
            };
            assert_eq!(pt, t);
            assert_eq!(ph.count, h.count);
            let nonzero = |f: strata_types::histogram::FloatHistogram| -> Vec<(f64, f64)> {
                f.all_buckets()
                    .iter()
                    .filter(|b| b.count != 0.0)
                    .map(|b| (b.upper, b.count))
                    .collect()
            };
            assert_eq!(nonzero(ph.to_float()), nonzero(h.to_float()), "at {t}");
        }
        assert!(
            entry.chunks.iter().all(
                |c| merged.chunks().chunk(c.chunk_ref).unwrap().encoding == Encoding::Histogram
            )
        );
    }

    #[test]
    fn overlapping_blocks_are_merged_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            &[("a", samples(0, 7_200_000, 30_000, |t| t as f64))],
            0,
            7_200_000,
        );
        let b = write(
            dir.path(),
            &[("a", samples(15_000, 7_200_000, 30_000, |t| t as f64))],
            0,
            7_200_000,
        );
        let c = write(
            dir.path(),
            &[("a", samples(0, 7_200_000, 30_000, |t| t as f64))],
            0,
            7_200_000,
        );
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let (path, _, stats) = compact_blocks(
            &out,
            ulid::Ulid::generate(),
            &[a, b, c],
            &CompactOptions::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(stats.series_merged, 1);
        let merged = read_all(&BlockReader::open(&path).unwrap());
        let want = samples(0, 7_200_000, 15_000, |t| t as f64);
        assert_eq!(merged[0].1.len(), want.len());
        assert!(merged[0].1 == want);
        let block = BlockReader::open(&path).unwrap();
        let entry = block
            .series(block.index().all_postings().unwrap()[0])
            .unwrap();
        assert_eq!(entry.chunks.len(), 4, "480 samples in chunks of 120");
    }

    #[test]
    fn empty_inputs_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), &[], 0, 7_200_000);
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        assert!(
            compact_blocks(
                &out,
                ulid::Ulid::generate(),
                &[a],
                &CompactOptions::default()
            )
            .unwrap()
            .is_none()
        );
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    }
}
