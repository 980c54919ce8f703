//! Per-operation metrics with Thanos' names, so existing dashboards and alerts work.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type OpLabels = Vec<(&'static str, String)>;

/// The operations Thanos' objstore counts, by their label values.
const OPERATIONS: [&str; 7] = [
    "get",
    "get_range",
    "exists",
    "iter",
    "attributes",
    "upload",
    "delete",
];

#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    operations: Family<OpLabels, Counter>,
    failures: Family<OpLabels, Counter>,
    duration: Family<OpLabels, Histogram, fn() -> Histogram>,
    last_upload: Family<Vec<(&'static str, String)>, Gauge<f64, AtomicU64>>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Metrics {
            operations: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            last_upload: Family::default(),
        }
    }

    /// Every operation's series at zero, and the last upload time at 0, as Thanos creates
    /// them for a bucket: rates and "has not run" alerts have a series before the first
    /// failure or upload.
    pub(crate) fn init(&self, bucket: &str) {
        for operation in OPERATIONS {
            let labels = Self::labels(bucket, operation);
            drop(self.operations.get_or_create(&labels));
            drop(self.failures.get_or_create(&labels));
            drop(self.duration.get_or_create(&labels));
        }
        drop(
            self.last_upload
                .get_or_create(&vec![("bucket", bucket.to_owned())]),
        );
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "thanos_objstore_bucket_operations",
            "Total number of all attempted operations against a bucket.",
            self.operations.clone(),
        );
        registry.register(
            "thanos_objstore_bucket_operation_failures",
            "Total number of operations against a bucket that failed, but were not expected to fail in certain way from caller perspective.",
            self.failures.clone(),
        );
        registry.register(
            "thanos_objstore_bucket_operation_duration_seconds",
            "Duration of successful operations against the remote bucket.",
            self.duration.clone(),
        );
        registry.register(
            "thanos_objstore_bucket_last_successful_upload_time",
            "Second timestamp of the last successful upload to the bucket.",
            self.last_upload.clone(),
        );
    }

    fn labels(bucket: &str, operation: &'static str) -> OpLabels {
        vec![
            ("bucket", bucket.to_owned()),
            ("operation", operation.to_owned()),
        ]
    }

    pub(crate) fn observe(
        &self,
        bucket: &str,
        operation: &'static str,
        seconds: f64,
        failed: bool,
    ) {
        let labels = Self::labels(bucket, operation);
        self.operations.get_or_create(&labels).inc();
        if failed {
            self.failures.get_or_create(&labels).inc();
        } else {
            self.duration.get_or_create(&labels).observe(seconds);
        }
    }

    pub(crate) fn uploaded(&self, bucket: &str, unix_seconds: f64) {
        self.last_upload
            .get_or_create(&vec![("bucket", bucket.to_owned())])
            .set(unix_seconds);
    }
}
