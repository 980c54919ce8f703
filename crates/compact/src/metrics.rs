//! The compactor's metrics, with Thanos' names where Thanos has one.

use std::sync::atomic::AtomicI64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels1 = Vec<(&'static str, String)>;

/// Counters and gauges of the compactor.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    pub(crate) iterations: Counter,
    pub(crate) halted: Gauge,
    pub(crate) retries: Counter,
    pub(crate) compactions: Family<Labels1, Counter>,
    pub(crate) compaction_failures: Family<Labels1, Counter>,
    pub(crate) vertical_compactions: Family<Labels1, Counter>,
    pub(crate) blocks_marked: Family<Vec<(&'static str, &'static str)>, Counter>,
    pub(crate) garbage_collected: Counter,
    pub(crate) blocks_cleaned: Counter,
    pub(crate) block_cleanup_failures: Counter,
    pub(crate) partial_deletions: Counter,
    pub(crate) meta_synced: Family<Vec<(&'static str, &'static str)>, Gauge<i64, AtomicI64>>,
    pub(crate) overlapping: Family<Vec<(&'static str, String)>, Gauge<i64, AtomicI64>>,
    pub(crate) todo_compactions: Gauge,
    pub(crate) downsamples: Family<Labels1, Counter>,
}

impl Metrics {
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "thanos_compact_iterations",
            "Total number of iterations that were executed successfully.",
            self.iterations.clone(),
        );
        r.register(
            "thanos_compact_halted",
            "Set to 1 if the compactor halted due to an unexpected error.",
            self.halted.clone(),
        );
        r.register(
            "thanos_compact_retries",
            "Total number of retries after retriable compactor error.",
            self.retries.clone(),
        );
        r.register(
            "thanos_compact_group_compactions",
            "Total number of group compaction attempts that resulted in a new block.",
            self.compactions.clone(),
        );
        r.register(
            "thanos_compact_group_compactions_failures",
            "Total number of failed group compactions.",
            self.compaction_failures.clone(),
        );
        r.register(
            "thanos_compact_group_vertical_compactions",
            "Total number of group compaction attempts that resulted in a new block based on overlapping blocks.",
            self.vertical_compactions.clone(),
        );
        r.register(
            "thanos_compact_blocks_marked",
            "Total number of blocks marked in compactor.",
            self.blocks_marked.clone(),
        );
        r.register(
            "thanos_compact_garbage_collected_blocks",
            "Total number of blocks marked for deletion by compactor.",
            self.garbage_collected.clone(),
        );
        r.register(
            "thanos_compact_blocks_cleaned",
            "Total number of blocks deleted in compactor.",
            self.blocks_cleaned.clone(),
        );
        r.register(
            "thanos_compact_block_cleanup_failures",
            "Failures encountered while deleting blocks in compactor.",
            self.block_cleanup_failures.clone(),
        );
        r.register(
            "thanos_compact_aborted_partial_uploads_deletion_attempts",
            "Total number of started deletions of blocks that are assumed aborted and only partially uploaded.",
            self.partial_deletions.clone(),
        );
        r.register(
            "thanos_blocks_meta_synced",
            "Number of block metadata synced",
            self.meta_synced.clone(),
        );
        r.register(
            "strata_compact_overlapping_blocks",
            "1 for each group skipped because its blocks overlap and vertical compaction is off; the blocks label names them.",
            self.overlapping.clone(),
        );
        r.register(
            "thanos_compact_downsample",
            "Total number of downsampling attempts.",
            self.downsamples.clone(),
        );
        r.register(
            "thanos_compact_todo_compactions",
            "The number of planned compactions found in the last pass.",
            self.todo_compactions.clone(),
        );
    }
}
