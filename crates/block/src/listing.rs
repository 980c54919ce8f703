//! Every block of a bucket with its meta.json facts, size and marker files: what
//! `strata tools bucket ls`/`web` and the store gateway's and compactor's blocks pages show.

use serde::Serialize;
use strata_objstore::Bucket;
use strata_tsdb::BlockMeta;
use ulid::Ulid;

use crate::markers::{DELETION_MARK, NO_COMPACT_MARK, NO_DOWNSAMPLE_MARK};

/// One block of the bucket.
#[derive(Debug, Clone, Serialize)]
pub struct BlockRow {
    /// The ULID.
    pub id: String,
    /// minTime (ms).
    pub min_time: i64,
    /// maxTime (ms, exclusive).
    pub max_time: i64,
    /// Resolution (ms; 0 raw).
    pub resolution: i64,
    /// Compaction level.
    pub level: u32,
    /// Number of level-1 sources.
    pub sources: usize,
    /// Series.
    pub series: u64,
    /// Samples.
    pub samples: u64,
    /// Chunks.
    pub chunks: u64,
    /// Bytes of all the block's objects.
    pub size_bytes: u64,
    /// `thanos.source`.
    pub source: String,
    /// External labels, `{a="b", …}`.
    pub labels: String,
    /// Marker files present (`deletion`, `no-compact`, `no-downsample`).
    pub marks: Vec<String>,
}

/// Every block with a meta.json, sorted by labels, resolution and time; blocks without a
/// meta.json (partial uploads) are returned separately.
pub async fn list_blocks(
    bucket: &Bucket,
) -> Result<(Vec<BlockRow>, Vec<String>), strata_objstore::Error> {
    let entries = bucket.iter("").await?;
    let mut rows = Vec::new();
    let mut partial = Vec::new();
    for entry in entries {
        let Some(name) = entry.strip_suffix('/') else {
            continue;
        };
        let Ok(id) = name.parse::<Ulid>() else {
            continue;
        };
        let objects = bucket.iter_recursive(&format!("{id}/")).await?;
        let meta_bytes = match bucket.get(&format!("{id}/meta.json")).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                partial.push(id.to_string());
                continue;
            }
            Err(e) => return Err(e),
        };
        let Ok(meta) = BlockMeta::parse(&meta_bytes) else {
            partial.push(format!("{id} (corrupted meta.json)"));
            continue;
        };
        let mut marks = Vec::new();
        for (file, mark) in [
            (DELETION_MARK, "deletion"),
            (NO_COMPACT_MARK, "no-compact"),
            (NO_DOWNSAMPLE_MARK, "no-downsample"),
        ] {
            if objects
                .iter()
                .any(|(n, _)| n.ends_with(&format!("/{file}")))
            {
                marks.push(mark.to_owned());
            }
        }
        rows.push(row(&meta, objects.iter().map(|(_, s)| *s).sum(), marks));
    }
    rows.sort_by(|a, b| {
        (&a.labels, a.resolution, a.min_time, &a.id).cmp(&(
            &b.labels,
            b.resolution,
            b.min_time,
            &b.id,
        ))
    });
    Ok((rows, partial))
}

fn row(meta: &BlockMeta, size_bytes: u64, marks: Vec<String>) -> BlockRow {
    BlockRow {
        id: meta.ulid.clone(),
        min_time: meta.min_time,
        max_time: meta.max_time,
        resolution: crate::resolution(meta),
        level: meta.compaction.level,
        sources: meta.compaction.sources.len(),
        series: meta.stats.num_series,
        samples: meta.stats.num_samples,
        chunks: meta.stats.num_chunks,
        size_bytes,
        source: meta
            .thanos
            .as_ref()
            .map(|t| t.source.clone())
            .unwrap_or_default(),
        labels: crate::external_labels(meta).to_string(),
        marks,
    }
}
