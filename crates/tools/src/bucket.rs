//! `strata tools bucket`: inspection and maintenance of a bucket of blocks — `ls`,
//! `inspect` (a table of blocks), `verify` (overlaps, index problems, out-of-order
//! chunks), `mark` (deletion, no-compact, no-downsample marks), `cleanup` (delete what is
//! due) and the timeline page of `web`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use serde::Serialize;
use strata_block::markers::{self, DELETION_MARK, NO_COMPACT_MARK, NO_DOWNSAMPLE_MARK};
use strata_block::{FetchFilter, MetaFetcher};
use strata_objstore::Bucket;
use strata_tsdb::BlockMeta;
use strata_tsdb::index::IndexReader;
use ulid::Ulid;

use crate::format::format_rfc3339_millis;

/// Errors of the bucket tools.
#[derive(Debug, thiserror::Error)]
pub enum BucketToolError {
    /// The bucket failed.
    #[error(transparent)]
    Bucket(#[from] strata_objstore::Error),
    /// A block operation failed.
    #[error(transparent)]
    Block(#[from] strata_block::BlockError),
    /// The web server failed.
    #[error(transparent)]
    Server(#[from] strata_runtime::Error),
    /// An argument is wrong.
    #[error("{0}")]
    Usage(String),
    /// Output could not be written.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// JSON output failed.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Opens the bucket a Thanos bucket config describes.
pub fn open_bucket(yaml: &str) -> Result<Bucket, BucketToolError> {
    Ok(Bucket::from_yaml(yaml, None)?)
}

pub use strata_block::listing::{BlockRow, list_blocks};

fn duration_text(ms: i64) -> String {
    let s = ms / 1000;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if d > 0 {
        out.push_str(&format!("{d}d"));
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

fn resolution_text(ms: i64) -> String {
    match ms {
        0 => "raw".into(),
        other => duration_text(other),
    }
}

/// Writes rows as an aligned text table; `wide` adds series, samples, chunks, size,
/// source, marks and labels.
pub fn render_table(rows: &[BlockRow], wide: bool, out: &mut impl Write) -> std::io::Result<()> {
    let mut table: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["ULID", "FROM", "UNTIL", "RANGE", "RESOLUTION", "LEVEL"];
    if wide {
        header.extend([
            "SOURCES",
            "SERIES",
            "SAMPLES",
            "CHUNKS",
            "SIZE_BYTES",
            "SOURCE",
            "MARKS",
            "LABELS",
        ]);
    } else {
        header.push("LABELS");
    }
    table.push(header.iter().map(|s| (*s).to_owned()).collect());
    for r in rows {
        let mut line = vec![
            r.id.clone(),
            format_rfc3339_millis(r.min_time),
            format_rfc3339_millis(r.max_time),
            duration_text(r.max_time - r.min_time),
            resolution_text(r.resolution),
            r.level.to_string(),
        ];
        if wide {
            line.extend([
                r.sources.to_string(),
                r.series.to_string(),
                r.samples.to_string(),
                r.chunks.to_string(),
                r.size_bytes.to_string(),
                r.source.clone(),
                if r.marks.is_empty() {
                    "-".into()
                } else {
                    r.marks.join(",")
                },
            ]);
        }
        line.push(r.labels.clone());
        table.push(line);
    }
    let columns = table.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table
                .iter()
                .filter_map(|l| l.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in &table {
        let mut text = String::new();
        for (c, cell) in line.iter().enumerate() {
            let last = c + 1 == line.len();
            if last {
                text.push_str(cell);
            } else {
                let width = widths.get(c).copied().unwrap_or(0);
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}

/// A problem `verify` found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Issue {
    /// The block(s).
    pub blocks: Vec<String>,
    /// `overlap`, `index`, `out-of-order-chunks`, `chunk-outside-block`, `series-order`,
    /// `chunk-ref`.
    pub kind: String,
    /// Details.
    pub message: String,
}

/// Checks the blocks of the bucket (all, or `ids`): overlaps within a stream and
/// resolution, index integrity (TOC, CRCs, symbol references), series order, chunks out
/// of order or outside the block's range, and chunk references past their segment.
/// Blocks marked for deletion are left out.
pub async fn verify(bucket: &Bucket, ids: &[Ulid]) -> Result<(Vec<Issue>, usize), BucketToolError> {
    let fetcher = MetaFetcher::new(bucket.clone(), None, 16);
    let filter = FetchFilter {
        ignore_deletion_marks_delay: Duration::ZERO,
        ..FetchFilter::default()
    };
    let mut synced = fetcher.fetch(&filter).await?;
    // Superseded blocks are real blocks too: verify them (the fetcher hid them).
    for id in &synced.duplicates {
        if let Ok(bytes) = bucket.get(&format!("{id}/meta.json")).await
            && let Ok(meta) = BlockMeta::parse(&bytes)
        {
            synced.metas.insert(*id, meta);
        }
    }
    let mut issues = Vec::new();
    // Overlaps per stream and resolution.
    let mut groups: BTreeMap<(String, i64), Vec<&BlockMeta>> = BTreeMap::new();
    for meta in synced.metas.values() {
        groups
            .entry((
                strata_block::external_labels(meta).to_string(),
                strata_block::resolution(meta),
            ))
            .or_default()
            .push(meta);
    }
    for ((labels, resolution), mut metas) in groups {
        metas.sort_by_key(|m| (m.min_time, m.max_time));
        let mut max_seen: Option<&BlockMeta> = None;
        for meta in metas {
            if let Some(prev) = max_seen
                && meta.min_time < prev.max_time
            {
                issues.push(Issue {
                    blocks: vec![prev.ulid.clone(), meta.ulid.clone()],
                    kind: "overlap".into(),
                    message: format!(
                        "{labels} resolution {resolution}: [{}, {}) overlaps [{}, {})",
                        prev.min_time, prev.max_time, meta.min_time, meta.max_time
                    ),
                });
            }
            if max_seen.is_none_or(|p| meta.max_time > p.max_time) {
                max_seen = Some(meta);
            }
        }
    }
    let mut checked = 0;
    for (id, meta) in &synced.metas {
        if !ids.is_empty() && !ids.contains(id) {
            continue;
        }
        checked += 1;
        let index = match bucket.get(&format!("{id}/index")).await {
            Ok(b) => b,
            Err(e) => {
                issues.push(issue(id, "index", format!("reading index: {e}")));
                continue;
            }
        };
        let segments: BTreeMap<u32, u64> = bucket
            .iter_recursive(&format!("{id}/chunks"))
            .await?
            .into_iter()
            .filter_map(|(name, size)| {
                let file = name.rsplit('/').next()?;
                Some((file.parse::<u32>().ok()?, size))
            })
            .collect();
        let meta = meta.clone();
        let id = *id;
        let found = tokio::task::spawn_blocking(move || verify_index(id, &meta, index, &segments))
            .await
            .map_err(|e| BucketToolError::Usage(format!("verify task: {e}")))?;
        issues.extend(found);
    }
    Ok((issues, checked))
}

fn issue(id: &Ulid, kind: &str, message: String) -> Issue {
    Issue {
        blocks: vec![id.to_string()],
        kind: kind.into(),
        message,
    }
}

const MAX_ISSUES_PER_BLOCK: usize = 20;

fn verify_index(
    id: Ulid,
    meta: &BlockMeta,
    index: bytes::Bytes,
    segments: &BTreeMap<u32, u64>,
) -> Vec<Issue> {
    let mut issues = Vec::new();
    let name = id.to_string();
    let reader = match IndexReader::new(&name, index) {
        Ok(r) => r,
        Err(e) => return vec![issue(&id, "index", e.to_string())],
    };
    let postings = match reader.all_postings() {
        Ok(p) => p,
        Err(e) => return vec![issue(&id, "index", e.to_string())],
    };
    let mut previous: Option<strata_types::Labels> = None;
    for series_ref in postings {
        if issues.len() >= MAX_ISSUES_PER_BLOCK {
            break;
        }
        let entry = match reader.series(series_ref) {
            Ok(e) => e,
            Err(e) => {
                issues.push(issue(&id, "index", e.to_string()));
                continue;
            }
        };
        if let Some(prev) = &previous
            && prev >= &entry.labels
        {
            issues.push(issue(
                &id,
                "series-order",
                format!("series {} after {prev}", entry.labels),
            ));
        }
        let mut last_max: Option<i64> = None;
        for chunk in &entry.chunks {
            if chunk.min_time > chunk.max_time {
                issues.push(issue(
                    &id,
                    "out-of-order-chunks",
                    format!(
                        "{}: chunk with min time {} after max time {}",
                        entry.labels, chunk.min_time, chunk.max_time
                    ),
                ));
            }
            if let Some(prev_max) = last_max
                && chunk.min_time <= prev_max
            {
                issues.push(issue(
                    &id,
                    "out-of-order-chunks",
                    format!(
                        "{}: chunk starting at {} overlaps the previous one ending at {prev_max}",
                        entry.labels, chunk.min_time
                    ),
                ));
            }
            if chunk.min_time < meta.min_time || chunk.max_time >= meta.max_time {
                issues.push(issue(
                    &id,
                    "chunk-outside-block",
                    format!(
                        "{}: chunk [{}, {}] outside the block's [{}, {})",
                        entry.labels, chunk.min_time, chunk.max_time, meta.min_time, meta.max_time
                    ),
                ));
            }
            let (segment, offset) = strata_tsdb::chunks::split_chunk_ref(chunk.chunk_ref);
            match segments.get(&(segment + 1)) {
                Some(&size) if u64::from(offset) < size => {}
                Some(&size) => issues.push(issue(
                    &id,
                    "chunk-ref",
                    format!(
                        "{}: chunk offset {offset} past the end of segment {:06} ({size} bytes)",
                        entry.labels,
                        segment + 1
                    ),
                )),
                None => issues.push(issue(
                    &id,
                    "chunk-ref",
                    format!(
                        "{}: chunk in missing segment {:06}",
                        entry.labels,
                        segment + 1
                    ),
                )),
            }
            last_max = Some(chunk.max_time);
        }
        previous = Some(entry.labels);
    }
    issues
}

/// Which marker `mark` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// `deletion-mark.json`.
    Deletion,
    /// `no-compact-mark.json`.
    NoCompact,
    /// `no-downsample-mark.json`.
    NoDownsample,
}

impl std::str::FromStr for Marker {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            DELETION_MARK => Ok(Marker::Deletion),
            NO_COMPACT_MARK => Ok(Marker::NoCompact),
            NO_DOWNSAMPLE_MARK => Ok(Marker::NoDownsample),
            other => Err(format!(
                "unknown marker {other:?} (want {DELETION_MARK}, {NO_COMPACT_MARK} or {NO_DOWNSAMPLE_MARK})"
            )),
        }
    }
}

impl Marker {
    fn file(self) -> &'static str {
        match self {
            Marker::Deletion => DELETION_MARK,
            Marker::NoCompact => NO_COMPACT_MARK,
            Marker::NoDownsample => NO_DOWNSAMPLE_MARK,
        }
    }
}

/// Adds (or with `remove`, deletes) a marker on each block. Returns the blocks changed.
pub async fn mark(
    bucket: &Bucket,
    ids: &[Ulid],
    marker: Marker,
    details: &str,
    remove: bool,
) -> Result<Vec<Ulid>, BucketToolError> {
    let mut changed = Vec::new();
    for id in ids {
        if !bucket.exists(&format!("{id}/meta.json")).await? {
            return Err(BucketToolError::Usage(format!(
                "block {id} not found in the bucket"
            )));
        }
        if remove {
            let path = format!("{id}/{}", marker.file());
            if bucket.exists(&path).await? {
                bucket.delete(&path).await?;
                changed.push(*id);
            }
            continue;
        }
        let added = match marker {
            Marker::Deletion => markers::mark_for_deletion(bucket, *id, details).await?,
            Marker::NoCompact => markers::mark_no_compact(bucket, *id, "manual", details).await?,
            Marker::NoDownsample => {
                markers::mark_no_downsample(bucket, *id, "manual", details).await?
            }
        };
        if added {
            changed.push(*id);
        }
    }
    Ok(changed)
}

/// What `cleanup` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanupSummary {
    /// Marked blocks deleted.
    pub deleted_marked: Vec<String>,
    /// Partial uploads deleted.
    pub deleted_partial: Vec<String>,
    /// Failures.
    pub failed: Vec<String>,
}

/// Deletes blocks marked for deletion at least `delete_delay` ago and partial uploads
/// older than `delete_delay`.
pub async fn cleanup(
    bucket: &Bucket,
    delete_delay: Duration,
) -> Result<CleanupSummary, BucketToolError> {
    let fetcher = MetaFetcher::new(bucket.clone(), None, 16);
    let filter = FetchFilter {
        ignore_deletion_marks_delay: Duration::ZERO,
        ..FetchFilter::default()
    };
    let synced = fetcher.fetch(&filter).await?;
    let marked = strata_block::cleanup::delete_marked(bucket, &synced, delete_delay).await;
    let partial = strata_block::cleanup::delete_partial(bucket, &synced, delete_delay).await;
    Ok(CleanupSummary {
        deleted_marked: marked.deleted.iter().map(Ulid::to_string).collect(),
        deleted_partial: partial.deleted.iter().map(Ulid::to_string).collect(),
        failed: marked
            .failed
            .iter()
            .chain(&partial.failed)
            .map(|(id, e)| format!("{id}: {e}"))
            .collect(),
    })
}
