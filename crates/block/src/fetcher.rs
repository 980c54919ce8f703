//! Block discovery: lists the bucket, reads each block's meta.json (cached on local disk,
//! since metas are immutable) and filters the blocks this gateway serves.
//!
//! States counted per sync, as Thanos' `thanos_blocks_meta_synced{state}`: `loaded`,
//! `no-meta-json` (a partial upload), `corrupted-meta-json`, `marked-for-deletion`,
//! `time-excluded`, `label-excluded`, `duplicate`, `failed`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde::Deserialize;
use strata_objstore::Bucket;
use strata_tsdb::BlockMeta;
use strata_types::Labels;
use ulid::Ulid;

use crate::relabel::Relabel;

/// Block IDs' label in relabelling and block matchers.
pub const BLOCK_ID_LABEL: &str = "__block_id";

/// Which blocks to serve.
#[derive(Debug, Clone)]
pub struct FetchFilter {
    /// Serve blocks whose range overlaps `[min_time, max_time]` (ms).
    pub min_time: i64,
    /// See `min_time`.
    pub max_time: i64,
    /// Relabelling over external labels plus `__block_id`; a dropped block is not served.
    pub relabel: Relabel,
    /// A block marked for deletion longer ago than this is no longer served.
    pub ignore_deletion_marks_delay: Duration,
}

impl Default for FetchFilter {
    fn default() -> Self {
        FetchFilter {
            min_time: i64::MIN,
            max_time: i64::MAX,
            relabel: Relabel::default(),
            ignore_deletion_marks_delay: Duration::from_secs(24 * 3600),
        }
    }
}

/// The result of one sync.
#[derive(Debug, Default)]
pub struct FetchResult {
    /// Blocks to serve, by ID.
    pub metas: BTreeMap<Ulid, BlockMeta>,
    /// Blocks per state.
    pub states: BTreeMap<&'static str, u64>,
    /// Blocks that could not be read (errors other than a missing meta.json), with reasons.
    pub failures: Vec<(Ulid, String)>,
    /// Blocks without meta.json (partial uploads, or deletions in progress).
    pub partial: Vec<Ulid>,
    /// Blocks left out for their deletion mark, with the mark's time (unix seconds).
    pub marked: Vec<(Ulid, i64)>,
    /// Blocks left out because another block holds all their sources.
    pub duplicates: Vec<Ulid>,
}

impl FetchResult {
    /// Whether every block's state is known: a sync with failures (a transient bucket
    /// error on some block) must not be read as those blocks being gone.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }
}

#[derive(Deserialize)]
struct DeletionMark {
    #[serde(default)]
    deletion_time: Option<i64>,
}

/// Reads block metas from a bucket.
#[derive(Debug, Clone)]
pub struct MetaFetcher {
    bucket: Bucket,
    cache_dir: Option<PathBuf>,
    concurrency: usize,
}

enum Outcome {
    Loaded(Box<BlockMeta>),
    State(&'static str),
    Partial,
    Marked(i64),
    Failed(String),
}

impl MetaFetcher {
    /// A fetcher caching metas under `cache_dir` (Thanos' `meta-syncer` directory).
    pub fn new(bucket: Bucket, cache_dir: Option<PathBuf>, concurrency: usize) -> MetaFetcher {
        MetaFetcher {
            bucket,
            cache_dir,
            concurrency: concurrency.max(1),
        }
    }

    /// Lists the bucket and returns the blocks `filter` keeps. A listing error fails the
    /// sync; an error on one block only skips that block.
    pub async fn fetch(&self, filter: &FetchFilter) -> Result<FetchResult, strata_objstore::Error> {
        let entries = self.bucket.iter("").await?;
        let ids: Vec<Ulid> = entries
            .iter()
            .filter_map(|e| e.strip_suffix('/'))
            .filter_map(|name| name.parse::<Ulid>().ok())
            .collect();
        let outcomes: Vec<(Ulid, Outcome)> = futures::stream::iter(ids)
            .map(|id| async move { (id, self.load(id, filter).await) })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut result = FetchResult::default();
        for (id, outcome) in outcomes {
            match outcome {
                Outcome::Loaded(meta) => {
                    result.metas.insert(id, *meta);
                }
                Outcome::State(state) => *result.states.entry(state).or_default() += 1,
                Outcome::Partial => {
                    *result.states.entry("no-meta-json").or_default() += 1;
                    result.partial.push(id);
                }
                Outcome::Marked(at) => {
                    *result.states.entry("marked-for-deletion").or_default() += 1;
                    result.marked.push((id, at));
                }
                Outcome::Failed(reason) => {
                    *result.states.entry("failed").or_default() += 1;
                    result.failures.push((id, reason));
                }
            }
        }
        let duplicates = duplicate_blocks(&result.metas);
        for id in duplicates {
            result.metas.remove(&id);
            *result.states.entry("duplicate").or_default() += 1;
            result.duplicates.push(id);
        }
        result.states.insert("loaded", result.metas.len() as u64);
        Ok(result)
    }

    async fn load(&self, id: Ulid, filter: &FetchFilter) -> Outcome {
        let meta = match self.read_meta(id).await {
            Ok(Some(meta)) => meta,
            Ok(None) => return Outcome::Partial,
            Err(Outcome::State(s)) => return Outcome::State(s),
            Err(other) => return other,
        };
        if meta.max_time < filter.min_time || meta.min_time > filter.max_time {
            return Outcome::State("time-excluded");
        }
        if !filter.relabel.is_empty() {
            let mut b = external_labels(&meta).to_builder();
            b.set(BLOCK_ID_LABEL, id.to_string());
            if filter.relabel.apply(&b.build()).is_none() {
                return Outcome::State("label-excluded");
            }
        }
        match self.bucket.get(&format!("{id}/deletion-mark.json")).await {
            Ok(bytes) => {
                let marked_at = serde_json::from_slice::<DeletionMark>(&bytes)
                    .ok()
                    .and_then(|m| m.deletion_time);
                let Some(marked_at) = marked_at else {
                    // A mark that does not parse (a partial upload of it) says nothing
                    // about when: the block stays, as in Thanos.
                    tracing::warn!(block = %id, "deletion-mark.json does not parse; ignoring it");
                    return Outcome::Loaded(Box::new(meta));
                };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO)
                    .as_secs();
                let now = i64::try_from(now).unwrap_or(i64::MAX);
                let delay =
                    i64::try_from(filter.ignore_deletion_marks_delay.as_secs()).unwrap_or(i64::MAX);
                if now.saturating_sub(marked_at) >= delay {
                    return Outcome::Marked(marked_at);
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Outcome::Failed(e.to_string()),
        }
        Outcome::Loaded(Box::new(meta))
    }

    async fn read_meta(&self, id: Ulid) -> Result<Option<BlockMeta>, Outcome> {
        let cached = self
            .cache_dir
            .as_ref()
            .map(|d| d.join(id.to_string()).join("meta.json"));
        if let Some(path) = &cached
            && let Ok(bytes) = std::fs::read(path)
            && let Ok(meta) = BlockMeta::parse(&bytes)
        {
            return Ok(Some(meta));
        }
        let bytes = match self.bucket.get(&format!("{id}/meta.json")).await {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(Outcome::Failed(e.to_string())),
        };
        let meta = match BlockMeta::parse(&bytes) {
            Ok(meta) if meta.ulid == id.to_string() => meta,
            Ok(_) | Err(_) => return Err(Outcome::State("corrupted-meta-json")),
        };
        if let Some(path) = &cached {
            let written = path
                .parent()
                .map(std::fs::create_dir_all)
                .transpose()
                .and_then(|_| std::fs::write(path, &bytes));
            if let Err(e) = written {
                tracing::warn!(block = %id, error = %e, "caching meta.json locally failed");
            }
        }
        Ok(Some(meta))
    }
}

/// A block's external labels (its `thanos.labels`).
pub fn external_labels(meta: &BlockMeta) -> Labels {
    meta.thanos
        .as_ref()
        .map(|t| Labels::from_pairs(t.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
        .unwrap_or_default()
}

/// A block's resolution in ms (0 = raw).
pub fn resolution(meta: &BlockMeta) -> i64 {
    meta.thanos.as_ref().map_or(0, |t| t.downsample.resolution)
}

/// Blocks whose sources are all covered by another block of the same stream and
/// resolution (the compactor made the other one from them and has not deleted them yet).
/// Of blocks with identical sources the one with the greatest ULID is kept.
fn duplicate_blocks(metas: &BTreeMap<Ulid, BlockMeta>) -> Vec<Ulid> {
    let mut out = Vec::new();
    for (id, meta) in metas {
        let labels = external_labels(meta);
        let res = resolution(meta);
        let sources = &meta.compaction.sources;
        if sources.is_empty() {
            continue;
        }
        let covered = metas.iter().any(|(other_id, other)| {
            if other_id == id || resolution(other) != res || external_labels(other) != labels {
                return false;
            }
            let other_sources = &other.compaction.sources;
            let subset = sources.iter().all(|s| other_sources.contains(s));
            subset && (other_sources.len() > sources.len() || other_id > id)
        });
        if covered {
            out.push(*id);
        }
    }
    out
}
