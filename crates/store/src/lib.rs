//! The store gateway (`strata store`): serves the blocks of a bucket over the Thanos Store
//! API within a fixed memory budget.
//!
//! - `strata_block::fetcher` lists the bucket and filters block metas (partial uploads,
//!   deletion marks, time window, relabel sharding, blocks superseded by compaction);
//! - [`block`] serves one block from a local index-header plus byte-range reads;
//! - [`bucket_store`] keeps the served set in step with the bucket;
//! - [`service`] implements `thanos.Store` and `thanos.info.Info`.

pub mod block;
mod block_query;
pub mod bucket_store;
mod cache;
mod expanded;
mod series_metrics;
pub mod service;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use strata_objstore::Bucket;
use strata_runtime::{Readiness, Shutdown};

pub use bucket_store::{BucketStore, SyncStats};
pub use cache::IndexCache;
pub use service::{Limits, StoreService};
pub use strata_block::{FetchFilter, Relabel};

/// Settings of `strata store` (flag names as in Thanos).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The bucket config YAML (`--objstore.config` or the file's contents).
    pub bucket_yaml: strata_types::Secret,
    /// `--data-dir`: index-headers and cached metas.
    pub data_dir: PathBuf,
    /// `--grpc-address`.
    pub grpc_address: String,
    /// `--http-address`.
    pub http_address: String,
    /// `--sync-block-duration`.
    pub sync_interval: Duration,
    /// `--block-sync-concurrency`.
    pub block_sync_concurrency: usize,
    /// `--min-time`, ms.
    pub min_time: i64,
    /// `--max-time`, ms.
    pub max_time: i64,
    /// `--selector.relabel-config` YAML.
    pub relabel_yaml: String,
    /// `--index-cache-size` in bytes.
    pub index_cache_size: u64,
    /// `--index-cache.config(-file)`: replaces `--index-cache-size` when set.
    pub index_cache: Option<strata_cache::CacheConfig>,
    /// `--store.grpc.*` limits.
    pub limits: Limits,
    /// `--store.grpc.series-max-concurrency`.
    pub series_max_concurrency: usize,
    /// `--ignore-deletion-marks-delay`.
    pub ignore_deletion_marks_delay: Duration,
    /// `--grpc-server-tls-*`.
    pub grpc_tls: strata_runtime::TlsFiles,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            bucket_yaml: strata_types::Secret::default(),
            data_dir: PathBuf::from("./data"),
            grpc_address: "0.0.0.0:10901".into(),
            http_address: "0.0.0.0:10902".into(),
            sync_interval: Duration::from_secs(15 * 60),
            block_sync_concurrency: 20,
            min_time: i64::MIN,
            max_time: i64::MAX,
            relabel_yaml: String::new(),
            index_cache_size: 250 << 20,
            index_cache: None,
            limits: Limits::default(),
            series_max_concurrency: 20,
            ignore_deletion_marks_delay: Duration::from_secs(24 * 3600),
            grpc_tls: strata_runtime::TlsFiles::default(),
        }
    }
}

/// Errors that stop the gateway.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket config is invalid.
    #[error(transparent)]
    Bucket(#[from] strata_objstore::Error),
    /// The relabel config is invalid.
    #[error(transparent)]
    Relabel(#[from] strata_block::relabel::RelabelError),
    /// A server failed.
    #[error(transparent)]
    Server(#[from] strata_runtime::Error),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The gRPC TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] strata_runtime::TlsError),
    /// A background task (block sync, HTTP server) ended on its own.
    #[error(transparent)]
    Task(#[from] strata_runtime::TaskFailure),
    /// The data directory is unusable.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the gateway until `shutdown` fires.
pub async fn run(config: StoreConfig, shutdown: Shutdown) -> Result<(), StoreError> {
    let mut registry = Registry::default();
    let bucket = Bucket::from_yaml(config.bucket_yaml.expose(), Some(&mut registry))?;
    let relabel = Relabel::from_yaml(&config.relabel_yaml)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StoreError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let cache = match &config.index_cache {
        // `dns+` memcached addresses are resolved by the client, and again as they change.
        Some(cache_config) => IndexCache::from_config(cache_config, Some(&mut registry)),
        None => IndexCache::new(config.index_cache_size, Some(&mut registry)),
    };
    let filter = FetchFilter {
        min_time: config.min_time,
        max_time: config.max_time,
        relabel,
        ignore_deletion_marks_delay: config.ignore_deletion_marks_delay,
    };
    let store = Arc::new(BucketStore::new(
        bucket.clone(),
        cache,
        config.data_dir.clone(),
        filter,
        config.block_sync_concurrency,
        Some(&mut registry),
    ));
    let grpc_metrics = strata_storepb::grpc_metrics::GrpcMetrics::server(&mut registry);
    let service = StoreService::with_metrics(
        Arc::clone(&store),
        config.limits,
        config.series_max_concurrency,
        &mut registry,
    );
    let registry = Arc::new(Mutex::new(registry));
    let ready = Readiness::default();

    let http_listener = strata_runtime::bind(&config.http_address).await?;
    let grpc_listener = strata_runtime::bind(&config.grpc_address).await?;
    // The bucket's blocks, as Thanos' store gateway shows them at `/loaded`.
    let blocks = strata_web::blocks::router(bucket.clone(), &["/loaded", "/blocks"]);
    let router = strata_runtime::http_router(registry, ready.clone(), blocks);
    let mut tasks = strata_runtime::Tasks::new();
    tasks.spawn(
        "http",
        strata_runtime::serve_http(http_listener, router, shutdown.clone()),
    );

    let sync_store = Arc::clone(&store);
    let mut sync_shutdown = shutdown.clone();
    let interval = config.sync_interval;
    let sync_ready = ready.clone();
    tasks.spawn_loop("block sync", async move {
        loop {
            match sync_store.sync().await {
                Ok(stats) => {
                    tracing::info!(
                        bucket = bucket.name(),
                        loaded = stats.loaded,
                        added = stats.added,
                        dropped = stats.dropped,
                        failed = stats.failed,
                        "synced blocks"
                    );
                    if !sync_ready.is_ready() {
                        sync_ready.set(true);
                        tracing::info!("store gateway ready");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "syncing blocks failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = sync_shutdown.wait() => return,
            }
        }
    });

    match grpc_listener.local_addr() {
        Ok(address) => tracing::info!(address = %address, "serving gRPC"),
        Err(_) => tracing::info!(address = %config.grpc_address, "serving gRPC"),
    }
    let mut grpc_shutdown = shutdown.clone();
    let tls = config.grpc_tls.server()?;
    let grpc = strata_storepb::serve::store_api_server(service, grpc_metrics)
        .serve_with_incoming_shutdown(
            strata_runtime::tls::incoming(grpc_listener, tls),
            async move { grpc_shutdown.wait().await },
        );
    tokio::select! {
        served = grpc => served?,
        failure = tasks.failure() => return Err(failure.into()),
    }
    tasks.join(strata_runtime::SHUTDOWN_GRACE).await;
    Ok(())
}
