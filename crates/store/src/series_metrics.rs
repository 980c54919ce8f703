//! Per-Series-call histograms with Thanos' names, labels and buckets (`pkg/store/bucket.go`),
//! which the Thanos store dashboard reads: blocks queried, items touched and fetched per data
//! type, series returned, chunk bytes sent per series, and the two phases' durations.
//!
//! Strata streams: block tasks and the k-way merge run together. "get all" is the time until
//! the merge has a head from every block (each block's postings expanded and first batch
//! read), "merge" the time from there to the last series sent. An item is counted as fetched
//! when it is read for the request (from the index cache or the bucket), so fetched equals
//! touched.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Thanos' tenant label value when a request names none.
pub(crate) const DEFAULT_TENANT: &str = "default-tenant";

type TenantLabels = Vec<(&'static str, &'static str)>;
type Hist = Family<TenantLabels, Histogram, fn() -> Histogram>;

const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0,
];

fn blocks_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}
fn data_buckets() -> Histogram {
    Histogram::new(exponential_buckets(200.0, 2.0, 15))
}
fn result_buckets() -> Histogram {
    Histogram::new(exponential_buckets(100.0, 2.0, 15))
}
fn duration_buckets() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}
fn chunk_size_buckets() -> Histogram {
    Histogram::new([
        32.0,
        256.0,
        512.0,
        1024.0,
        32.0 * 1024.0,
        256.0 * 1024.0,
        512.0 * 1024.0,
        1024.0 * 1024.0,
        32.0 * 1024.0 * 1024.0,
        256.0 * 1024.0 * 1024.0,
        512.0 * 1024.0 * 1024.0,
    ])
}

/// What one Series call touched, observed when it ends.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SeriesStats {
    pub(crate) blocks: u64,
    pub(crate) postings: u64,
    pub(crate) series: u64,
    pub(crate) chunks: u64,
    pub(crate) result_series: u64,
    pub(crate) get_all_seconds: f64,
    pub(crate) merge_seconds: f64,
}

/// The store gateway's Series histograms.
#[derive(Debug, Clone)]
pub(crate) struct SeriesMetrics {
    blocks_queried: Hist,
    data_touched: Hist,
    data_fetched: Hist,
    result_series: Hist,
    get_all_duration: Hist,
    merge_duration: Hist,
    sent_chunk_size: Hist,
    queries_dropped:
        Family<Vec<(&'static str, &'static str)>, prometheus_client::metrics::counter::Counter>,
}

impl SeriesMetrics {
    pub(crate) fn new() -> SeriesMetrics {
        SeriesMetrics {
            blocks_queried: Family::new_with_constructor(blocks_buckets),
            data_touched: Family::new_with_constructor(data_buckets),
            data_fetched: Family::new_with_constructor(data_buckets),
            result_series: Family::new_with_constructor(result_buckets),
            get_all_duration: Family::new_with_constructor(duration_buckets),
            merge_duration: Family::new_with_constructor(duration_buckets),
            sent_chunk_size: Family::new_with_constructor(chunk_size_buckets),
            queries_dropped: Family::default(),
        }
    }

    /// Registers every histogram, each with the default tenant's series already there.
    pub(crate) fn register(&self, registry: &mut Registry) {
        let tenant = vec![("tenant", DEFAULT_TENANT)];
        for family in [
            &self.blocks_queried,
            &self.result_series,
            &self.get_all_duration,
            &self.merge_duration,
            &self.sent_chunk_size,
        ] {
            drop(family.get_or_create(&tenant));
        }
        for data_type in ["postings", "series", "chunks"] {
            let labels = vec![("data_type", data_type), ("tenant", DEFAULT_TENANT)];
            drop(self.data_touched.get_or_create(&labels));
            drop(self.data_fetched.get_or_create(&labels));
        }
        for reason in ["series", "chunks", "samples"] {
            drop(
                self.queries_dropped
                    .get_or_create(&vec![("reason", reason), ("tenant", DEFAULT_TENANT)]),
            );
        }
        registry.register(
            "thanos_bucket_store_queries_dropped",
            "Number of queries that were dropped due to the limit.",
            self.queries_dropped.clone(),
        );
        registry.register(
            "thanos_bucket_store_series_blocks_queried",
            "Number of blocks in a bucket store that were touched to satisfy a query.",
            self.blocks_queried.clone(),
        );
        registry.register(
            "thanos_bucket_store_series_data_touched",
            "Number of items of a data type touched to fulfill a single Store API series request.",
            self.data_touched.clone(),
        );
        registry.register(
            "thanos_bucket_store_series_data_fetched",
            "Number of items of a data type retrieved to fulfill a single Store API series request.",
            self.data_fetched.clone(),
        );
        registry.register(
            "thanos_bucket_store_series_result_series",
            "Number of series observed in the final result of a query.",
            self.result_series.clone(),
        );
        registry.register(
            "thanos_bucket_store_series_get_all_duration_seconds",
            "Time it takes until all per-block prepares and loads for a query are finished.",
            self.get_all_duration.clone(),
        );
        registry.register(
            "thanos_bucket_store_series_merge_duration_seconds",
            "Time it takes to merge sub-results from all queried blocks into a single result.",
            self.merge_duration.clone(),
        );
        registry.register(
            "thanos_bucket_store_sent_chunk_size_bytes",
            "Size in bytes of the chunks for the single series, which is adequate to the gRPC message size sent to querier.",
            self.sent_chunk_size.clone(),
        );
    }

    /// A Series call refused by a limit (`reason`: series, chunks, samples).
    pub(crate) fn dropped(&self, reason: &'static str) {
        self.queries_dropped
            .get_or_create(&vec![("reason", reason), ("tenant", DEFAULT_TENANT)])
            .inc();
    }

    /// The histogram of each series' chunk bytes as sent (a handle, to observe every
    /// series of a call without looking it up each time).
    pub(crate) fn sent_chunk_size(&self) -> Histogram {
        self.sent_chunk_size
            .get_or_create_owned(&vec![("tenant", DEFAULT_TENANT)])
    }

    /// A finished Series call.
    pub(crate) fn observe(&self, stats: &SeriesStats) {
        let tenant = vec![("tenant", DEFAULT_TENANT)];
        self.blocks_queried
            .get_or_create(&tenant)
            .observe(stats.blocks as f64);
        self.result_series
            .get_or_create(&tenant)
            .observe(stats.result_series as f64);
        self.get_all_duration
            .get_or_create(&tenant)
            .observe(stats.get_all_seconds);
        self.merge_duration
            .get_or_create(&tenant)
            .observe(stats.merge_seconds);
        for (data_type, count) in [
            ("postings", stats.postings),
            ("series", stats.series),
            ("chunks", stats.chunks),
        ] {
            let labels = vec![("data_type", data_type), ("tenant", DEFAULT_TENANT)];
            self.data_touched
                .get_or_create(&labels)
                .observe(count as f64);
            self.data_fetched
                .get_or_create(&labels)
                .observe(count as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_there_before_the_first_call_and_observations_land() {
        let metrics = SeriesMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        for name in [
            "thanos_bucket_store_series_blocks_queried_bucket{le=\"1.0\",tenant=\"default-tenant\"} 0",
            "thanos_bucket_store_series_data_touched_count{data_type=\"chunks\",tenant=\"default-tenant\"} 0",
            "thanos_bucket_store_sent_chunk_size_bytes_count{tenant=\"default-tenant\"} 0",
        ] {
            assert!(text.contains(name), "{name} not in\n{text}");
        }
        metrics.observe(&SeriesStats {
            blocks: 3,
            postings: 500,
            series: 400,
            chunks: 1200,
            result_series: 400,
            get_all_seconds: 0.05,
            merge_seconds: 0.2,
        });
        metrics.sent_chunk_size().observe(300.0);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        for line in [
            "thanos_bucket_store_series_blocks_queried_sum{tenant=\"default-tenant\"} 3.0",
            "thanos_bucket_store_series_data_fetched_sum{data_type=\"chunks\",tenant=\"default-tenant\"} 1200.0",
            "thanos_bucket_store_series_result_series_count{tenant=\"default-tenant\"} 1",
            "thanos_bucket_store_sent_chunk_size_bytes_bucket{le=\"512.0\",tenant=\"default-tenant\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
