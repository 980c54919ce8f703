//! One compactor pass over a bucket: clean up, garbage-collect, compact every group until
//! nothing is left to do, apply retention, delete aborted partial uploads.
//!
//! Crash safety comes from the order of steps, never from locks: a compacted block is
//! uploaded (meta.json last) before its sources are marked for deletion, and readers hide
//! blocks whose sources another block holds. A crash at any point leaves either the old
//! blocks, or the new block plus old blocks that are hidden and garbage-collected by the
//! next pass; a half-uploaded block has no meta.json and is never read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use strata_block::markers;
use strata_block::{BlockError, FetchFilter, FetchResult, MetaFetcher, Relabel};
use strata_objstore::Bucket;
use strata_tsdb::compact::{CompactOptions, compact_blocks};
use strata_tsdb::dedup::DedupFunc;
use strata_tsdb::meta::{Downsample, ThanosMeta};
use strata_tsdb::{BlockMeta, BlockReader};
use strata_types::Labels;
use ulid::Ulid;

use crate::metrics::{Metrics, resolution_label};
use crate::planner::{PlanMeta, RANGES, overlapping, plan};

/// Settings of one compactor (what `strata compact` flags set).
#[derive(Debug, Clone)]
pub struct CompactorOptions {
    /// `--data-dir`: downloaded and produced blocks (scratch space).
    pub data_dir: PathBuf,
    /// `--retention.resolution-raw`; zero keeps blocks forever.
    pub retention_raw: Duration,
    /// `--retention.resolution-5m`.
    pub retention_5m: Duration,
    /// `--retention.resolution-1h`.
    pub retention_1h: Duration,
    /// `--deduplication.replica-label`: external labels that tell replicas apart; blocks
    /// that differ only in them are merged (vertical compaction).
    pub replica_labels: Vec<String>,
    /// `--deduplication.func`: `""` (one sample per timestamp) or `penalty`.
    pub dedup_func: DedupFunc,
    /// `--compact.enable-vertical-compaction` (implied by replica labels).
    pub vertical_compaction: bool,
    /// `--compact.concurrency`: groups compacted at once.
    pub concurrency: usize,
    /// `--delete-delay`: how long a block marked for deletion stays, and how old a
    /// partial upload must be to be deleted.
    pub delete_delay: Duration,
    /// `--consistency-delay`: blocks younger than this (by ULID time) are not touched,
    /// except those the compactor made.
    pub consistency_delay: Duration,
    /// `--selector.relabel-config`: which blocks this compactor owns.
    pub relabel: Relabel,
    /// `--min-time`/`--max-time` (ms).
    pub min_time: i64,
    /// See `min_time`.
    pub max_time: i64,
    /// `--debug.max-compaction-level` (1–4).
    pub max_compaction_level: usize,
    /// Downsampling on (`--downsampling.disable` turns it off).
    pub downsampling: bool,
}

impl Default for CompactorOptions {
    fn default() -> Self {
        CompactorOptions {
            data_dir: PathBuf::from("./data"),
            retention_raw: Duration::ZERO,
            retention_5m: Duration::ZERO,
            retention_1h: Duration::ZERO,
            replica_labels: Vec::new(),
            dedup_func: DedupFunc::Chain,
            vertical_compaction: false,
            concurrency: 1,
            delete_delay: Duration::from_secs(48 * 3600),
            consistency_delay: Duration::from_secs(30 * 60),
            relabel: Relabel::default(),
            min_time: i64::MIN,
            max_time: i64::MAX,
            max_compaction_level: 4,
            downsampling: true,
        }
    }
}

/// A pass failed (the bucket could not be listed, or blocks failed; failed groups are
/// retried next pass).
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The bucket failed.
    #[error(transparent)]
    Bucket(#[from] strata_objstore::Error),
    /// A block operation failed.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// A block could not be read or written.
    #[error(transparent)]
    Tsdb(#[from] strata_tsdb::Error),
    /// A local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task died.
    #[error("compaction task: {0}")]
    Task(String),
    /// Some block metas could not be read: the pass is skipped.
    #[error("incomplete view of the bucket, pass skipped: {0}")]
    IncompleteView(String),
    /// Some groups failed; the others went on.
    #[error("{failed} of {total} compactions failed in this pass (first: {first})")]
    Groups {
        /// Failed compactions.
        failed: usize,
        /// Compactions tried.
        total: usize,
        /// The first error.
        first: String,
    },
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Blocks written by compaction.
    pub compacted: Vec<Ulid>,
    /// Blocks marked for deletion (sources, duplicates, retention).
    pub marked: usize,
    /// Blocks deleted after their delay.
    pub deleted: usize,
    /// Downsampled blocks written.
    pub downsampled: Vec<Ulid>,
    /// Partial uploads deleted.
    pub partial_deleted: usize,
    /// Groups skipped because their blocks overlap and vertical compaction is off.
    pub overlapping_groups: Vec<String>,
}

/// A compaction group: blocks with the same external labels (less replica labels) and
/// resolution.
#[derive(Debug, Clone)]
struct Group {
    key: String,
    labels: Labels,
    resolution: i64,
    metas: Vec<BlockMeta>,
}

/// The compactor of one bucket.
#[derive(Debug, Clone)]
pub struct Compactor {
    bucket: Bucket,
    options: CompactorOptions,
    fetcher: MetaFetcher,
    metrics: Metrics,
}

impl Compactor {
    pub(crate) fn new(bucket: Bucket, options: CompactorOptions, metrics: Metrics) -> Compactor {
        let fetcher = MetaFetcher::new(
            bucket.clone(),
            Some(options.data_dir.join("meta-syncer")),
            32,
        );
        Compactor {
            bucket,
            options,
            fetcher,
            metrics,
        }
    }

    /// A compactor without registered metrics (tests, tools).
    pub fn without_metrics(bucket: Bucket, options: CompactorOptions) -> Compactor {
        Compactor::new(bucket, options, Metrics::default())
    }

    async fn sync(&self) -> Result<FetchResult, CompactError> {
        let filter = FetchFilter {
            min_time: self.options.min_time,
            max_time: self.options.max_time,
            relabel: self.options.relabel.clone(),
            ignore_deletion_marks_delay: Duration::ZERO,
        };
        self.metrics.meta_syncs.inc();
        let started = std::time::Instant::now();
        let fetched = self.fetcher.fetch(&filter).await;
        self.metrics
            .meta_sync_duration
            .observe(started.elapsed().as_secs_f64());
        let mut result = fetched.inspect_err(|_| {
            self.metrics.meta_sync_failures.inc();
        })?;
        // A pass on an incomplete view could plan around, or delete, blocks it could not
        // read: skip it (the next one retries), as Thanos does.
        if !result.is_complete() {
            self.metrics.meta_sync_failures.inc();
            let reasons: Vec<String> = result
                .failures
                .iter()
                .map(|(id, e)| format!("{id}: {e}"))
                .collect();
            return Err(CompactError::IncompleteView(reasons.join("; ")));
        }
        // Consistency delay: too fresh blocks are left alone (their uploader may not be
        // done with its view of them), except the compactor's own.
        let now_ms = now_ms();
        let delay_ms = self.options.consistency_delay.as_millis() as i64;
        let fresh: Vec<Ulid> = result
            .metas
            .iter()
            .filter(|(id, meta)| {
                let source = meta
                    .thanos
                    .as_ref()
                    .map(|t| t.source.as_str())
                    .unwrap_or("");
                let made_here = source == "compactor" || source == "compactor.repair";
                !made_here && now_ms - (id.timestamp_ms() as i64) < delay_ms
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &fresh {
            result.metas.remove(id);
        }
        result.states.insert("too-fresh", fresh.len() as u64);
        result.states.insert("loaded", result.metas.len() as u64);
        tracing::debug!(states = ?result.states, "synced block metas");
        self.metrics.meta_synced.clear();
        for (state, count) in &result.states {
            self.metrics
                .meta_synced
                .get_or_create(&vec![("state", *state)])
                .set(*count as i64);
        }
        Ok(result)
    }

    /// One full pass. Errors of single groups do not stop the others; they are reported
    /// together at the end (and retried by the next pass).
    pub async fn pass(&self) -> Result<PassReport, CompactError> {
        let mut report = PassReport::default();
        std::fs::create_dir_all(&self.options.data_dir).map_err(|source| CompactError::Io {
            path: self.options.data_dir.clone(),
            source,
        })?;
        let synced = self.sync().await?;
        self.delete_marked(&synced, &mut report).await;
        self.garbage_collect(&synced, &mut report).await?;

        let mut failures: Vec<String> = Vec::new();
        let mut total = 0;
        let mut failed_groups: BTreeSet<String> = BTreeSet::new();
        self.metrics.overlapping.clear();
        loop {
            let synced = self.sync().await?;
            let groups = self.groups(&synced);
            for group in &groups {
                self.metrics.init_group(group.resolution);
            }
            let mut jobs = Vec::new();
            report.overlapping_groups.clear();
            for group in groups {
                if failed_groups.contains(&group.key) {
                    continue;
                }
                match self.plan_group(&group, &synced).await? {
                    Planned::Nothing => {}
                    Planned::Overlap(ids) => {
                        let blocks = ids
                            .iter()
                            .map(Ulid::to_string)
                            .collect::<Vec<_>>()
                            .join(",");
                        tracing::error!(
                            group = %group.key,
                            labels = %group.labels,
                            blocks = %blocks,
                            "blocks of the group overlap and vertical compaction is off (no --deduplication.replica-label); skipping the group"
                        );
                        self.metrics
                            .overlapping
                            .get_or_create(&vec![("group", group.key.clone()), ("blocks", blocks)])
                            .set(1);
                        report.overlapping_groups.push(group.key.clone());
                    }
                    Planned::Compact(plan, vertical) => jobs.push((group, plan, vertical)),
                }
            }
            self.metrics.todo_compactions.set(jobs.len() as i64);
            if jobs.is_empty() {
                break;
            }
            total += jobs.len();
            let results: Vec<(String, i64, Result<Option<Ulid>, CompactError>)> =
                futures::stream::iter(jobs)
                    .map(|(group, plan, vertical)| async move {
                        let key = group.key.clone();
                        let result = self.compact_group(&group, &plan, vertical).await;
                        (key, group.resolution, result)
                    })
                    .buffer_unordered(self.options.concurrency.max(1))
                    .collect()
                    .await;
            for (key, resolution, result) in results {
                match result {
                    Ok(Some(id)) => report.compacted.push(id),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(group = %key, error = %e, "compaction failed; the group is retried next pass");
                        self.metrics
                            .compaction_failures
                            .get_or_create(&vec![("resolution", resolution_label(resolution))])
                            .inc();
                        failures.push(format!("group {key}: {e}"));
                        failed_groups.insert(key);
                    }
                }
            }
            // Marks just written must be seen by the next planning round.
            let synced = self.sync().await?;
            self.garbage_collect(&synced, &mut report).await?;
        }

        // A group that cannot make progress (overlaps without replica labels) is what makes
        // Thanos halt; the other groups go on here, but the mixin's ThanosCompactHalted
        // must still fire until someone resolves it.
        self.metrics
            .halted
            .set(i64::from(!report.overlapping_groups.is_empty()));

        if failures.is_empty() && self.options.downsampling {
            use strata_tsdb::downsample::{RES_1H, RES_1H_MIN_SPAN, RES_5M, RES_5M_MIN_SPAN};
            for (from, to, span) in [
                (0, RES_5M, RES_5M_MIN_SPAN),
                (RES_5M, RES_1H, RES_1H_MIN_SPAN),
            ] {
                if let Err(e) = self.downsample_pass(from, to, span, &mut report).await {
                    tracing::error!(resolution = to, error = %e, "downsampling failed; retried next pass");
                    failures.push(format!("downsampling to {to} ms: {e}"));
                    break;
                }
            }
        }
        if failures.is_empty() {
            let synced = self.sync().await?;
            self.apply_retention(&synced, &mut report).await?;
        } else {
            tracing::warn!("retention skipped: compaction failed in this pass");
        }
        let synced = self.sync().await?;
        self.delete_partial(&synced, &mut report).await;
        if let Some(first) = failures.first() {
            return Err(CompactError::Groups {
                failed: failures.len(),
                total,
                first: first.clone(),
            });
        }
        self.metrics.iterations.inc();
        Ok(report)
    }

    fn groups(&self, synced: &FetchResult) -> Vec<Group> {
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for meta in synced.metas.values() {
            let labels = group_labels(meta, &self.options.replica_labels);
            let resolution = strata_block::resolution(meta);
            let key = format!("{resolution}@{}", labels_hash(&labels));
            groups
                .entry(key.clone())
                .or_insert_with(|| Group {
                    key,
                    labels,
                    resolution,
                    metas: Vec::new(),
                })
                .metas
                .push(meta.clone());
        }
        groups.into_values().collect()
    }

    async fn plan_group(
        &self,
        group: &Group,
        _synced: &FetchResult,
    ) -> Result<Planned, CompactError> {
        let mut metas = Vec::with_capacity(group.metas.len());
        let mut no_compact = BTreeSet::new();
        for meta in &group.metas {
            let id = meta.ulid().map_err(|e| BlockError::Meta {
                block: Ulid::nil(),
                message: e.to_string(),
            })?;
            if markers::read_no_compact_mark(&self.bucket, id)
                .await?
                .is_some()
            {
                no_compact.insert(id);
            }
            metas.push(PlanMeta {
                id,
                min_time: meta.min_time,
                max_time: meta.max_time,
                failed: meta.compaction.failed,
            });
        }
        let vertical = self.options.vertical_compaction || !self.options.replica_labels.is_empty();
        let candidates: Vec<PlanMeta> = metas
            .iter()
            .filter(|m| !no_compact.contains(&m.id))
            .cloned()
            .collect();
        let overlaps = overlapping(&candidates);
        if !overlaps.is_empty() {
            if !vertical {
                return Ok(Planned::Overlap(overlaps));
            }
            if group.resolution != 0 {
                // Thanos does not merge overlapping downsampled blocks: mark them.
                for id in &overlaps {
                    markers::mark_no_compact(
                        &self.bucket,
                        *id,
                        "downsample-vertical-compaction",
                        "overlapping downsampled blocks are not compacted",
                    )
                    .await?;
                    self.metrics
                        .blocks_marked
                        .get_or_create(&vec![
                            ("marker", "no-compact-mark.json"),
                            ("reason", "downsample-vertical-compaction"),
                        ])
                        .inc();
                }
                return Ok(Planned::Nothing);
            }
            return Ok(Planned::Compact(overlaps, true));
        }
        let levels = self.options.max_compaction_level.clamp(1, RANGES.len() - 1);
        let ranges = RANGES.get(..=levels).unwrap_or(&RANGES);
        let chosen = plan(&metas, &no_compact, ranges);
        if chosen.len() < 2 {
            return Ok(Planned::Nothing);
        }
        Ok(Planned::Compact(chosen, false))
    }

    async fn compact_group(
        &self,
        group: &Group,
        plan: &[Ulid],
        vertical: bool,
    ) -> Result<Option<Ulid>, CompactError> {
        let work = self
            .options
            .data_dir
            .join("compact")
            .join(group.key.replace('@', "_"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(|source| CompactError::Io {
            path: work.clone(),
            source,
        })?;
        let started = std::time::Instant::now();
        let mut dirs = Vec::with_capacity(plan.len());
        for id in plan {
            dirs.push(self.download(*id, &work).await?);
        }
        let out_dir = work.join("out");
        std::fs::create_dir_all(&out_dir).map_err(|source| CompactError::Io {
            path: out_dir.clone(),
            source,
        })?;
        let mut thanos_labels = BTreeMap::new();
        for l in &group.labels {
            thanos_labels.insert(l.name.clone(), l.value.clone());
        }
        let options = CompactOptions {
            dedup: self.options.dedup_func,
            thanos: Some(ThanosMeta {
                version: 1,
                labels: thanos_labels,
                downsample: Downsample {
                    resolution: group.resolution,
                },
                source: "compactor".into(),
                ..ThanosMeta::default()
            }),
        };
        let new_id = Ulid::generate();
        let out = out_dir.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut readers = Vec::with_capacity(dirs.len());
            for dir in &dirs {
                readers.push(BlockReader::open(dir)?);
            }
            let result = compact_blocks(&out, new_id, &readers, &options)?;
            if let Some((dir, _, _)) = &result {
                // The new block must read back whole before it replaces anything.
                let check = BlockReader::open(dir)?;
                for series_ref in check.index().all_postings()? {
                    check.series(series_ref)?;
                }
            }
            Ok::<_, strata_tsdb::Error>(result)
        })
        .await
        .map_err(|e| CompactError::Task(e.to_string()))??;

        let produced = match result {
            Some((dir, meta, stats)) => {
                strata_block::upload_block(&self.bucket, new_id, &dir, meta).await?;
                tracing::info!(
                    group = %group.key,
                    block = %new_id,
                    sources = ?plan.iter().map(Ulid::to_string).collect::<Vec<_>>(),
                    series = stats.series,
                    chunks_copied = stats.chunks_copied,
                    series_merged = stats.series_merged,
                    vertical,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "compacted blocks"
                );
                Some(new_id)
            }
            None => {
                tracing::info!(group = %group.key, "compacted blocks hold no series; retiring them");
                None
            }
        };
        for id in plan {
            let details = match produced {
                Some(new) => format!("source of compacted block {new}"),
                None => "compacted into an empty block".to_owned(),
            };
            if markers::mark_for_deletion(&self.bucket, *id, &details).await? {
                self.metrics
                    .blocks_marked
                    .get_or_create(&vec![
                        ("marker", "deletion-mark.json"),
                        ("reason", "compacted"),
                    ])
                    .inc();
            }
        }
        self.metrics
            .compactions
            .get_or_create(&vec![("resolution", resolution_label(group.resolution))])
            .inc();
        if vertical {
            self.metrics
                .vertical_compactions
                .get_or_create(&vec![("resolution", resolution_label(group.resolution))])
                .inc();
        }
        let _ = std::fs::remove_dir_all(&work);
        Ok(produced)
    }

    /// Downsamples every block of resolution `from` spanning at least `min_span` that has no
    /// copy at resolution `to` yet (a `to` block holding all its sources) and no
    /// no-downsample mark.
    async fn downsample_pass(
        &self,
        from: i64,
        to: i64,
        min_span: i64,
        report: &mut PassReport,
    ) -> Result<(), CompactError> {
        let synced = self.sync().await?;
        let mut done: BTreeSet<(String, String)> = BTreeSet::new();
        for meta in synced.metas.values() {
            if strata_block::resolution(meta) != to {
                continue;
            }
            let labels = strata_block::external_labels(meta).to_string();
            for source in &meta.compaction.sources {
                done.insert((labels.clone(), source.clone()));
            }
        }
        for meta in synced.metas.values() {
            self.metrics.init_downsample(strata_block::resolution(meta));
        }
        for (id, meta) in &synced.metas {
            if strata_block::resolution(meta) != from || meta.max_time - meta.min_time < min_span {
                continue;
            }
            let labels = strata_block::external_labels(meta).to_string();
            let covered = !meta.compaction.sources.is_empty()
                && meta
                    .compaction
                    .sources
                    .iter()
                    .all(|s| done.contains(&(labels.clone(), s.clone())));
            if covered {
                continue;
            }
            if markers::read_no_downsample_mark(&self.bucket, *id)
                .await?
                .is_some()
            {
                continue;
            }
            let new_id = self
                .downsample_block(*id, meta, to)
                .await
                .inspect_err(|_| {
                    self.metrics
                        .downsample_failures
                        .get_or_create(&vec![("resolution", resolution_label(from))])
                        .inc();
                })?;
            if let Some(new_id) = new_id {
                report.downsampled.push(new_id);
            }
        }
        Ok(())
    }

    async fn downsample_block(
        &self,
        id: Ulid,
        meta: &BlockMeta,
        to: i64,
    ) -> Result<Option<Ulid>, CompactError> {
        let work = self
            .options
            .data_dir
            .join("downsample")
            .join(id.to_string());
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(|source| CompactError::Io {
            path: work.clone(),
            source,
        })?;
        let started = std::time::Instant::now();
        let dir = self.download(id, &work).await?;
        let out = work.join("out");
        std::fs::create_dir_all(&out).map_err(|source| CompactError::Io {
            path: out.clone(),
            source,
        })?;
        let mut thanos = meta.thanos.clone().unwrap_or_default();
        thanos.source = "compactor".into();
        thanos.files.clear();
        let new_id = Ulid::generate();
        let result = tokio::task::spawn_blocking(move || {
            let reader = BlockReader::open(&dir)?;
            let result =
                strata_tsdb::downsample::downsample_block(&reader, &out, new_id, to, thanos)?;
            if let Some((dir, _)) = &result {
                let check = BlockReader::open(dir)?;
                for series_ref in check.index().all_postings()? {
                    check.series(series_ref)?;
                }
            }
            Ok::<_, strata_tsdb::Error>(result)
        })
        .await
        .map_err(|e| CompactError::Task(e.to_string()))??;
        let produced = match result {
            Some((dir, new_meta)) => {
                strata_block::upload_block(&self.bucket, new_id, &dir, new_meta).await?;
                tracing::info!(
                    source_block = %id,
                    block = %new_id,
                    resolution = to,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "downsampled block"
                );
                self.metrics
                    .downsamples
                    .get_or_create(&vec![(
                        "resolution",
                        resolution_label(strata_block::resolution(meta)),
                    )])
                    .inc();
                Some(new_id)
            }
            None => None,
        };
        let _ = std::fs::remove_dir_all(&work);
        Ok(produced)
    }

    /// Downloads a block's meta.json, index and chunks into `<work>/<id>`.
    async fn download(&self, id: Ulid, work: &Path) -> Result<PathBuf, CompactError> {
        let dir = work.join(id.to_string());
        let chunks = dir.join("chunks");
        std::fs::create_dir_all(&chunks).map_err(|source| CompactError::Io {
            path: chunks.clone(),
            source,
        })?;
        let bucket_err = |source| BlockError::Bucket { block: id, source };
        let objects = self
            .bucket
            .iter_recursive(&format!("{id}/chunks"))
            .await
            .map_err(bucket_err)?;
        for (name, _) in objects {
            let Some(file) = name.rsplit('/').next() else {
                continue;
            };
            self.bucket
                .download_file(&name, &chunks.join(file))
                .await
                .map_err(bucket_err)?;
        }
        for file in ["index", "meta.json"] {
            self.bucket
                .download_file(&format!("{id}/{file}"), &dir.join(file))
                .await
                .map_err(bucket_err)?;
        }
        Ok(dir)
    }

    /// Marks blocks whose sources another block holds (left behind by an interrupted
    /// compaction, or duplicates) for deletion.
    async fn garbage_collect(
        &self,
        synced: &FetchResult,
        report: &mut PassReport,
    ) -> Result<(), CompactError> {
        self.metrics.garbage_collections.inc();
        let started = std::time::Instant::now();
        let result = self.mark_duplicates(synced, report).await;
        self.metrics
            .garbage_collection_duration
            .observe(started.elapsed().as_secs_f64());
        result.inspect_err(|_| {
            self.metrics.garbage_collection_failures.inc();
        })
    }

    async fn mark_duplicates(
        &self,
        synced: &FetchResult,
        report: &mut PassReport,
    ) -> Result<(), CompactError> {
        for id in &synced.duplicates {
            if markers::mark_for_deletion(&self.bucket, *id, "sources held by another block")
                .await?
            {
                tracing::info!(block = %id, "marked duplicate block for deletion");
                self.metrics.garbage_collected.inc();
                self.metrics
                    .blocks_marked
                    .get_or_create(&vec![
                        ("marker", "deletion-mark.json"),
                        ("reason", "duplicate"),
                    ])
                    .inc();
                report.marked += 1;
            }
        }
        Ok(())
    }

    /// Deletes blocks marked for deletion longer ago than `--delete-delay`.
    async fn delete_marked(&self, synced: &FetchResult, report: &mut PassReport) {
        let done =
            strata_block::cleanup::delete_marked(&self.bucket, synced, self.options.delete_delay)
                .await;
        self.metrics
            .blocks_cleaned
            .inc_by(done.deleted.len() as u64);
        self.metrics
            .block_cleanup_failures
            .inc_by(done.failed.len() as u64);
        report.deleted += done.deleted.len();
    }

    /// Deletes partial uploads older than `--delete-delay` by ULID time.
    async fn delete_partial(&self, synced: &FetchResult, report: &mut PassReport) {
        let done =
            strata_block::cleanup::delete_partial(&self.bucket, synced, self.options.delete_delay)
                .await;
        self.metrics
            .partial_deletions
            .inc_by((done.deleted.len() + done.failed.len()) as u64);
        self.metrics
            .block_cleanup_failures
            .inc_by(done.failed.len() as u64);
        report.partial_deleted += done.deleted.len();
    }

    /// Marks blocks older than their resolution's retention for deletion.
    async fn apply_retention(
        &self,
        synced: &FetchResult,
        report: &mut PassReport,
    ) -> Result<(), CompactError> {
        let now_ms = now_ms();
        for (id, meta) in &synced.metas {
            let retention = match strata_block::resolution(meta) {
                0 => self.options.retention_raw,
                300_000 => self.options.retention_5m,
                3_600_000 => self.options.retention_1h,
                _ => Duration::ZERO,
            };
            if retention.is_zero() {
                continue;
            }
            if now_ms - meta.max_time <= retention.as_millis() as i64 {
                continue;
            }
            if markers::mark_for_deletion(&self.bucket, *id, "retention").await? {
                tracing::info!(block = %id, max_time = meta.max_time, "block past retention; marked for deletion");
                self.metrics
                    .blocks_marked
                    .get_or_create(&vec![
                        ("marker", "deletion-mark.json"),
                        ("reason", "retention"),
                    ])
                    .inc();
                report.marked += 1;
            }
        }
        Ok(())
    }
}

enum Planned {
    Nothing,
    Overlap(Vec<Ulid>),
    Compact(Vec<Ulid>, bool),
}

/// A block's external labels without the replica labels; if none are left, the first
/// replica label with value `deduped` (as Thanos does).
fn group_labels(meta: &BlockMeta, replica_labels: &[String]) -> Labels {
    let labels = strata_block::external_labels(meta);
    if replica_labels.is_empty() {
        return labels;
    }
    let mut b = labels.to_builder();
    for name in replica_labels {
        b.delete(name);
    }
    let out = b.build();
    if out.is_empty()
        && let Some(first) = replica_labels.first()
    {
        return Labels::from_pairs([(first.as_str(), "deduped")]);
    }
    out
}

/// Prometheus' `labels.Hash`: xxhash64 over `name 0xff value 0xff` of the sorted labels.
fn labels_hash(labels: &Labels) -> u64 {
    let mut buf = Vec::new();
    for l in labels {
        buf.extend_from_slice(l.name.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(l.value.as_bytes());
        buf.push(0xff);
    }
    xxhash_rust::xxh64::xxh64(&buf, 0)
}

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
