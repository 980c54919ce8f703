//! The set of blocks the gateway serves, kept in step with the bucket by [`BucketStore::sync`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use strata_objstore::Bucket;
use strata_types::{Labels, Matcher};
use ulid::Ulid;

use crate::block::BucketBlock;
use crate::cache::IndexCache;
use strata_block::fetcher::{BLOCK_ID_LABEL, FetchFilter, MetaFetcher};

/// Resolutions from coarsest to raw, as Thanos selects them.
const RESOLUTIONS: [i64; 3] = [3_600_000, 300_000, 0];

#[derive(Debug, Default, Clone)]
struct Metrics {
    blocks_loaded: Gauge<i64, AtomicI64>,
    block_loads: Counter,
    block_load_failures: Counter,
    block_drops: Counter,
    meta_synced: Family<Vec<(&'static str, &'static str)>, Gauge<i64, AtomicI64>>,
    meta_syncs: Counter,
    meta_sync_failures: Counter,
    meta_sync_duration: SyncDuration,
    block_drop_failures: Counter,
}

/// `thanos_blocks_meta_sync_duration_seconds`, with Thanos' buckets.
#[derive(Debug, Clone)]
struct SyncDuration(Histogram);

impl Default for SyncDuration {
    fn default() -> Self {
        SyncDuration(Histogram::new([
            0.01, 1.0, 10.0, 100.0, 300.0, 600.0, 1000.0,
        ]))
    }
}

impl Metrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "thanos_bucket_store_blocks_loaded",
            "Number of currently loaded blocks.",
            self.blocks_loaded.clone(),
        );
        registry.register(
            "thanos_bucket_store_block_loads",
            "Total number of remote block loading attempts.",
            self.block_loads.clone(),
        );
        registry.register(
            "thanos_bucket_store_block_load_failures",
            "Total number of failed remote block loading attempts.",
            self.block_load_failures.clone(),
        );
        registry.register(
            "thanos_bucket_store_block_drops",
            "Total number of local blocks that were dropped.",
            self.block_drops.clone(),
        );
        registry.register(
            "thanos_blocks_meta_synced",
            "Number of block metadata synced",
            self.meta_synced.clone(),
        );
        registry.register(
            "thanos_blocks_meta_syncs",
            "Total blocks metadata synchronization attempts",
            self.meta_syncs.clone(),
        );
        registry.register(
            "thanos_blocks_meta_sync_failures",
            "Total blocks metadata synchronization failures",
            self.meta_sync_failures.clone(),
        );
        registry.register(
            "thanos_blocks_meta_sync_duration_seconds",
            "Duration of the blocks metadata synchronization in seconds",
            self.meta_sync_duration.0.clone(),
        );
        registry.register(
            "thanos_bucket_store_block_drop_failures",
            "Total number of local blocks that failed to be dropped.",
            self.block_drop_failures.clone(),
        );
    }
}

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncStats {
    /// Blocks served after the sync.
    pub loaded: usize,
    /// Blocks newly loaded.
    pub added: usize,
    /// Blocks dropped (gone from the bucket or filtered out).
    pub dropped: usize,
    /// Blocks that failed to load (skipped until the next sync).
    pub failed: usize,
}

/// The blocks of a bucket that this gateway serves.
#[derive(Debug)]
pub struct BucketStore {
    bucket: Bucket,
    cache: IndexCache,
    data_dir: PathBuf,
    fetcher: MetaFetcher,
    filter: FetchFilter,
    block_sync_concurrency: usize,
    blocks: RwLock<BTreeMap<Ulid, Arc<BucketBlock>>>,
    metrics: Metrics,
}

impl BucketStore {
    /// A store over `bucket`, keeping index-headers and cached metas under `data_dir`.
    pub fn new(
        bucket: Bucket,
        cache: IndexCache,
        data_dir: PathBuf,
        filter: FetchFilter,
        block_sync_concurrency: usize,
        registry: Option<&mut Registry>,
    ) -> BucketStore {
        let fetcher = MetaFetcher::new(bucket.clone(), Some(data_dir.join("meta-syncer")), 32);
        let metrics = Metrics::default();
        if let Some(registry) = registry {
            metrics.register(registry);
        }
        BucketStore {
            bucket,
            cache,
            data_dir,
            fetcher,
            filter,
            block_sync_concurrency: block_sync_concurrency.max(1),
            blocks: RwLock::new(BTreeMap::new()),
            metrics,
        }
    }

    /// Reads the bucket's metas, loads new blocks and drops vanished ones. A block that
    /// fails to load is logged, counted and skipped; the others keep being served.
    pub async fn sync(&self) -> Result<SyncStats, strata_objstore::Error> {
        self.metrics.meta_syncs.inc();
        let started = std::time::Instant::now();
        let fetched = self.fetcher.fetch(&self.filter).await;
        self.metrics
            .meta_sync_duration
            .0
            .observe(started.elapsed().as_secs_f64());
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) => {
                self.metrics.meta_sync_failures.inc();
                return Err(e);
            }
        };
        for (state, count) in &fetched.states {
            self.metrics
                .meta_synced
                .get_or_create(&vec![("state", *state)])
                .set(*count as i64);
        }
        for (id, reason) in &fetched.failures {
            tracing::warn!(block = %id, error = %reason, "reading block meta failed");
        }
        // An incomplete view (some block's meta unreadable now) adds blocks but drops none:
        // a transient bucket error must not make blocks vanish from queries.
        let complete = fetched.is_complete();
        if !complete {
            self.metrics.meta_sync_failures.inc();
            tracing::warn!(
                failures = fetched.failures.len(),
                "incomplete block view; keeping every block served until a complete sync"
            );
        }
        let current: BTreeSet<Ulid> = self.ids();
        let wanted: BTreeSet<Ulid> = fetched.metas.keys().copied().collect();
        let to_load: Vec<_> = fetched
            .metas
            .iter()
            .filter(|(id, _)| !current.contains(id))
            .map(|(_, meta)| meta.clone())
            .collect();
        let mut stats = SyncStats::default();
        let loads = futures::stream::iter(to_load)
            .map(|meta| {
                let bucket = self.bucket.clone();
                let cache = self.cache.clone();
                let data_dir = self.data_dir.clone();
                async move {
                    let ulid = meta.ulid.clone();
                    (
                        ulid,
                        BucketBlock::load(bucket, cache, meta, &data_dir).await,
                    )
                }
            })
            .buffer_unordered(self.block_sync_concurrency)
            .collect::<Vec<_>>()
            .await;
        let mut loaded = Vec::new();
        for (ulid, result) in loads {
            self.metrics.block_loads.inc();
            match result {
                Ok(block) => loaded.push(block),
                Err(e) => {
                    self.metrics.block_load_failures.inc();
                    stats.failed += 1;
                    tracing::warn!(block = %ulid, error = %e, "loading block failed; skipping it");
                }
            }
        }
        let mut dropped = Vec::new();
        if let Ok(mut blocks) = self.blocks.write() {
            for block in loaded {
                stats.added += 1;
                blocks.insert(block.id(), Arc::new(block));
            }
            let gone: Vec<Ulid> = blocks
                .keys()
                .filter(|id| complete && !wanted.contains(id))
                .copied()
                .collect();
            for id in gone {
                blocks.remove(&id);
                dropped.push(id);
            }
            stats.loaded = blocks.len();
        }
        for id in &dropped {
            self.metrics.block_drops.inc();
            stats.dropped += 1;
            let dir = self.data_dir.join(id.to_string());
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                self.metrics.block_drop_failures.inc();
                tracing::warn!(block = %id, error = %e, "removing local block files failed");
            }
        }
        self.metrics.blocks_loaded.set(stats.loaded as i64);
        Ok(stats)
    }

    fn ids(&self) -> BTreeSet<Ulid> {
        self.blocks
            .read()
            .map(|b| b.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Every block served now.
    pub fn blocks(&self) -> Vec<Arc<BucketBlock>> {
        self.blocks
            .read()
            .map(|b| b.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The time range served: the blocks' union clamped to the configured window;
    /// `(i64::MAX, i64::MIN)` with no blocks.
    pub fn time_range(&self) -> (i64, i64) {
        let blocks = self.blocks();
        if blocks.is_empty() {
            return (i64::MAX, i64::MIN);
        }
        let min = blocks
            .iter()
            .map(|b| b.meta().min_time)
            .min()
            .unwrap_or(i64::MAX);
        let max = blocks
            .iter()
            .map(|b| b.meta().max_time)
            .max()
            .unwrap_or(i64::MIN);
        (min.max(self.filter.min_time), max.min(self.filter.max_time))
    }

    /// The distinct external label sets of the served blocks.
    pub fn label_sets(&self) -> Vec<Labels> {
        let set: BTreeSet<Labels> = self
            .blocks()
            .iter()
            .map(|b| b.ext_labels().clone())
            .collect();
        set.into_iter().collect()
    }

    /// The configured window (`--min-time`, `--max-time`).
    pub fn window(&self) -> (i64, i64) {
        (self.filter.min_time, self.filter.max_time)
    }
}

/// Thanos' block selection: per stream (external label set), blocks covering
/// `[mint, maxt]` at the coarsest resolution not above `max_resolution`, with gaps filled
/// from finer resolutions; blocks failing `block_matchers` (over external labels and
/// `__block_id`) are left out.
pub fn select_blocks(
    blocks: &[Arc<BucketBlock>],
    mint: i64,
    maxt: i64,
    max_resolution: i64,
    block_matchers: &[Matcher],
) -> Vec<Arc<BucketBlock>> {
    let mut streams: BTreeMap<Labels, BTreeMap<i64, Vec<Arc<BucketBlock>>>> = BTreeMap::new();
    for b in blocks {
        streams
            .entry(b.ext_labels().clone())
            .or_default()
            .entry(b.resolution())
            .or_default()
            .push(Arc::clone(b));
    }
    let mut out = Vec::new();
    for by_res in streams.values_mut() {
        for list in by_res.values_mut() {
            list.sort_by_key(|b| (b.meta().min_time, b.id()));
        }
        get_for(by_res, mint, maxt, max_resolution, block_matchers, &mut out);
    }
    out
}

fn get_for(
    by_res: &BTreeMap<i64, Vec<Arc<BucketBlock>>>,
    mint: i64,
    maxt: i64,
    max_resolution: i64,
    block_matchers: &[Matcher],
    out: &mut Vec<Arc<BucketBlock>>,
) {
    if mint > maxt {
        return;
    }
    let mut i = 0;
    while i + 1 < RESOLUTIONS.len() {
        if RESOLUTIONS.get(i).is_some_and(|&r| r <= max_resolution) {
            break;
        }
        i += 1;
    }
    let finer = RESOLUTIONS.get(i + 1).copied();
    let resolution = RESOLUTIONS.get(i).copied().unwrap_or(0);
    let mut start = mint;
    for b in by_res
        .get(&resolution)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if b.meta().max_time <= mint {
            continue;
        }
        if b.meta().min_time > maxt {
            break;
        }
        if let Some(finer) = finer {
            get_for(
                by_res,
                start,
                b.meta().min_time - 1,
                finer,
                block_matchers,
                out,
            );
        }
        if block_matches(b, block_matchers) {
            out.push(Arc::clone(b));
        }
        start = b.meta().max_time;
    }
    if let Some(finer) = finer {
        get_for(by_res, start, maxt, finer, block_matchers, out);
    }
}

/// Whether the block's external labels and `__block_id` pass `matchers`.
pub fn block_matches(block: &BucketBlock, matchers: &[Matcher]) -> bool {
    let id = block.id().to_string();
    matchers.iter().all(|m| {
        let value = if m.name() == BLOCK_ID_LABEL {
            id.as_str()
        } else {
            block.ext_labels().get(m.name()).unwrap_or("")
        };
        m.matches(value)
    })
}
