//! The compactor (`strata compact`): the singleton that turns a bucket's 2h blocks into
//! 8h, 2d and 14d blocks, merges replicas, applies retention per resolution and cleans up.
//!
//! - [`planner`]: which blocks of a group to merge next (Prometheus' and Thanos' planner);
//! - [`compactor`]: one pass over the bucket, in a crash-safe order.

pub mod compactor;
mod metrics;
pub mod planner;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use strata_objstore::Bucket;
use strata_runtime::{Readiness, Shutdown};

pub use compactor::{CompactError, Compactor, CompactorOptions, PassReport};

/// Settings of `strata compact`.
#[derive(Debug, Clone)]
pub struct CompactConfig {
    /// The bucket config YAML.
    pub bucket_yaml: strata_types::Secret,
    /// `--http-address`.
    pub http_address: String,
    /// `--wait`: keep running, one pass every `wait_interval`.
    pub wait: bool,
    /// `--wait-interval`.
    pub wait_interval: Duration,
    /// Everything else.
    pub options: CompactorOptions,
}

/// Errors that stop the compactor before its first pass.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The bucket config is invalid.
    #[error(transparent)]
    Bucket(#[from] strata_objstore::Error),
    /// A server failed.
    #[error(transparent)]
    Server(#[from] strata_runtime::Error),
    /// A background task (the HTTP server) ended on its own.
    #[error(transparent)]
    Task(#[from] strata_runtime::TaskFailure),
}

/// Runs the compactor: one pass (returning whether it succeeded) or, with `wait`, passes
/// until `shutdown` fires (returning true).
pub async fn run(config: CompactConfig, shutdown: Shutdown) -> Result<bool, StartError> {
    let mut registry = Registry::default();
    let metrics = metrics::Metrics::default();
    metrics.register(&mut registry);
    let bucket = Bucket::from_yaml(config.bucket_yaml.expose(), Some(&mut registry))?;
    let ready = Readiness::default();
    let registry = Arc::new(Mutex::new(registry));
    let listener = strata_runtime::bind(&config.http_address).await?;
    // The bucket's blocks, as Thanos' compactor shows them at `/`.
    let blocks = strata_web::blocks::router(bucket.clone(), &["/", "/blocks"]);
    let router = strata_runtime::http_router(registry, ready.clone(), blocks);
    let mut tasks = strata_runtime::Tasks::new();
    tasks.spawn(
        "http",
        strata_runtime::serve_http(listener, router, shutdown.clone()),
    );
    ready.set(true);

    let compactor = Compactor::new(bucket, config.options.clone(), metrics.clone());
    let passes = passes(&compactor, &config, &metrics, shutdown.clone());
    let ok = tokio::select! {
        ok = passes => ok,
        failure = tasks.failure() => return Err(failure.into()),
    };
    if !shutdown.is_triggered() {
        // A single pass: nothing else stops the HTTP server.
        return Ok(ok);
    }
    tasks.join(strata_runtime::SHUTDOWN_GRACE).await;
    Ok(ok || config.wait)
}

/// One pass, or with `wait` passes until `stop` fires; whether the last pass succeeded.
async fn passes(
    compactor: &Compactor,
    config: &CompactConfig,
    metrics: &metrics::Metrics,
    mut stop: Shutdown,
) -> bool {
    let mut ok = true;
    loop {
        let started = std::time::Instant::now();
        let pass = tokio::select! {
            r = compactor.pass() => r,
            _ = stop.wait() => break,
        };
        match pass {
            Ok(report) => {
                ok = true;
                tracing::info!(
                    compacted = report.compacted.len(),
                    downsampled = report.downsampled.len(),
                    marked = report.marked,
                    deleted = report.deleted,
                    partial_deleted = report.partial_deleted,
                    overlapping_groups = report.overlapping_groups.len(),
                    duration_ms = started.elapsed().as_millis() as u64,
                    "compaction pass done"
                );
            }
            Err(e) => {
                ok = false;
                metrics.retries.inc();
                tracing::error!(error = %e, "compaction pass failed");
            }
        }
        if !config.wait {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(config.wait_interval) => {}
            _ = stop.wait() => break,
        }
    }
    ok
}
