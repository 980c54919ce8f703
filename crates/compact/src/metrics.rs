//! The compactor's metrics, with Thanos' names where Thanos has one.

use std::sync::atomic::AtomicI64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels1 = Vec<(&'static str, String)>;

/// Counters and gauges of the compactor.
#[derive(Debug, Clone)]
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
    pub(crate) downsample_failures: Family<Labels1, Counter>,
    pub(crate) garbage_collections: Counter,
    pub(crate) garbage_collection_failures: Counter,
    pub(crate) garbage_collection_duration: Histogram,
    pub(crate) meta_syncs: Counter,
    pub(crate) meta_sync_failures: Counter,
    pub(crate) meta_sync_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let blocks_marked: Family<Vec<(&'static str, &'static str)>, Counter> = Family::default();
        // Thanos creates the marks' series up front.
        for labels in [
            [
                ("marker", "no-compact-mark.json"),
                ("reason", "block-index-out-of-order-chunk"),
            ],
            [
                ("marker", "no-compact-mark.json"),
                ("reason", "index-size-exceeding"),
            ],
            [("marker", "deletion-mark.json"), ("reason", "")],
        ] {
            drop(blocks_marked.get_or_create(&labels.to_vec()));
        }
        let metrics = Metrics {
            iterations: Counter::default(),
            halted: Gauge::default(),
            retries: Counter::default(),
            compactions: Family::default(),
            compaction_failures: Family::default(),
            vertical_compactions: Family::default(),
            blocks_marked,
            garbage_collected: Counter::default(),
            blocks_cleaned: Counter::default(),
            block_cleanup_failures: Counter::default(),
            partial_deletions: Counter::default(),
            meta_synced: Family::default(),
            overlapping: Family::default(),
            todo_compactions: Gauge::default(),
            downsamples: Family::default(),
            downsample_failures: Family::default(),
            garbage_collections: Counter::default(),
            garbage_collection_failures: Counter::default(),
            garbage_collection_duration: Histogram::new([
                0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0, 240.0,
                360.0, 720.0,
            ]),
            meta_syncs: Counter::default(),
            meta_sync_failures: Counter::default(),
            meta_sync_duration: Histogram::new([0.01, 1.0, 10.0, 100.0, 300.0, 600.0, 1000.0]),
        };
        // Every resolution's compaction and downsampling series from the start (Thanos
        // creates them when it first sees a group or block of the resolution): the rates
        // and the failure ratios the mixin reads exist on a compactor that has not worked yet.
        for resolution in [0, 300_000, 3_600_000] {
            metrics.init_group(resolution);
            metrics.init_downsample(resolution);
        }
        metrics
    }
}

/// A resolution in milliseconds as Thanos labels it (Go's duration format): 0s, 5m0s,
/// 1h0m0s.
pub(crate) fn resolution_label(ms: i64) -> String {
    let seconds = ms / 1000;
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

impl Metrics {
    /// The series of a group's resolution, created when the group is seen (as Thanos'
    /// grouper does), so rates exist before the first compaction or failure.
    pub(crate) fn init_group(&self, resolution_ms: i64) {
        let labels = vec![("resolution", resolution_label(resolution_ms))];
        drop(self.compactions.get_or_create(&labels));
        drop(self.compaction_failures.get_or_create(&labels));
        drop(self.vertical_compactions.get_or_create(&labels));
    }

    /// The downsampling series of a block resolution, as Thanos creates them per block seen.
    pub(crate) fn init_downsample(&self, resolution_ms: i64) {
        let labels = vec![("resolution", resolution_label(resolution_ms))];
        drop(self.downsamples.get_or_create(&labels));
        drop(self.downsample_failures.get_or_create(&labels));
    }
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
            "thanos_compact_downsample_failures",
            "Total number of failed downsampling attempts.",
            self.downsample_failures.clone(),
        );
        r.register(
            "thanos_compact_garbage_collection",
            "Total number of garbage collection operations.",
            self.garbage_collections.clone(),
        );
        r.register(
            "thanos_compact_garbage_collection_failures",
            "Total number of failed garbage collection operations.",
            self.garbage_collection_failures.clone(),
        );
        r.register(
            "thanos_compact_garbage_collection_duration_seconds",
            "Time it took to perform garbage collection iteration.",
            self.garbage_collection_duration.clone(),
        );
        r.register(
            "thanos_blocks_meta_syncs",
            "Total blocks metadata synchronization attempts",
            self.meta_syncs.clone(),
        );
        r.register(
            "thanos_blocks_meta_sync_failures",
            "Total blocks metadata synchronization failures",
            self.meta_sync_failures.clone(),
        );
        r.register(
            "thanos_blocks_meta_sync_duration_seconds",
            "Duration of the blocks metadata synchronization in seconds",
            self.meta_sync_duration.clone(),
        );
        r.register(
            "thanos_compact_todo_compactions",
            "The number of planned compactions found in the last pass.",
            self.todo_compactions.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::resolution_label;

    #[test]
    fn resolutions_are_labelled_as_go_prints_durations() {
        assert_eq!(resolution_label(0), "0s");
        assert_eq!(resolution_label(300_000), "5m0s");
        assert_eq!(resolution_label(3_600_000), "1h0m0s");
    }
}
