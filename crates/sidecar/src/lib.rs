//! The sidecar (`strata sidecar`): runs beside a Prometheus, ships each block it cuts to the
//! bucket and serves its recent data over the Store API.
//!
//! - [`prometheus`]: the Prometheus HTTP client (config, flags, remote read, label APIs);
//! - [`shipper`]: block uploads in Thanos' order and `thanos.shipper.json`;
//! - [`store`]: the Store and Info APIs over remote read.

mod apis;
pub mod http_client;
pub mod prometheus;
pub mod reloader;
pub mod shipper;
pub mod store;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_objstore::Bucket;
use strata_runtime::{Readiness, Shutdown};

use crate::prometheus::PromClient;
use crate::shipper::Shipper;
use crate::store::{PromState, SidecarStore};

/// Settings of `strata sidecar` (flag names as in Thanos).
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// `--prometheus.url`.
    pub prometheus_url: String,
    /// `--prometheus.http-client`: authentication and TLS towards Prometheus.
    pub http_client: http_client::HttpClientConfig,
    /// `--reloader.*`: what to watch for Prometheus config reloads.
    pub reloader: reloader::ReloaderConfig,
    /// `--tsdb.path`.
    pub tsdb_path: PathBuf,
    /// The bucket config, if blocks are to be shipped.
    pub bucket_yaml: Option<strata_types::Secret>,
    /// `--grpc-address`.
    pub grpc_address: String,
    /// `--http-address`.
    pub http_address: String,
    /// `--shipper.upload-compacted`.
    pub upload_compacted: bool,
    /// `--shipper.ignore-unequal-block-size`.
    pub ignore_unequal_block_size: bool,
    /// `--prometheus.get_config_interval`: how often external labels are re-read.
    pub config_interval: Duration,
    /// How often the TSDB directory is checked for new blocks (Thanos: 30 s).
    pub shipper_interval: Duration,
    /// `--min-time` (ms): the earliest time served.
    pub min_time: i64,
    /// `--grpc-server-tls-*`.
    pub grpc_tls: strata_runtime::TlsFiles,
    /// `--shipper.meta-file-name`: the shipper's state file in the TSDB directory.
    pub shipper_meta_file_name: String,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        SidecarConfig {
            prometheus_url: "http://localhost:9090".into(),
            http_client: http_client::HttpClientConfig::default(),
            reloader: reloader::ReloaderConfig::default(),
            tsdb_path: PathBuf::from("./data"),
            bucket_yaml: None,
            grpc_address: "0.0.0.0:10901".into(),
            http_address: "0.0.0.0:10902".into(),
            upload_compacted: false,
            ignore_unequal_block_size: false,
            config_interval: Duration::from_secs(30),
            shipper_interval: Duration::from_secs(30),
            min_time: i64::MIN,
            grpc_tls: strata_runtime::TlsFiles::default(),
            shipper_meta_file_name: shipper::SHIPPER_FILE.to_owned(),
        }
    }
}

/// Errors that stop the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// The bucket config is invalid.
    #[error(transparent)]
    Bucket(#[from] strata_objstore::Error),
    /// The Prometheus client could not be built.
    #[error(transparent)]
    Prometheus(#[from] prometheus::PromError),
    /// A server failed.
    #[error(transparent)]
    Server(#[from] strata_runtime::Error),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The gRPC TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] strata_runtime::TlsError),
    /// `--prometheus.http-client` is unusable.
    #[error(transparent)]
    HttpClient(#[from] http_client::HttpClientError),
    /// A background task (heartbeat, reloader, shipper, HTTP server) ended on its own.
    #[error(transparent)]
    Task(#[from] strata_runtime::TaskFailure),
}

#[derive(Debug, Clone, Default)]
struct Metrics {
    prometheus_up: Gauge,
    uploads: Counter,
    upload_failures: Counter,
    dir_syncs: Counter,
    dir_sync_failures: Counter,
}

impl Metrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "thanos_sidecar_prometheus_up",
            "Boolean indicator whether the sidecar can reach its Prometheus peer.",
            self.prometheus_up.clone(),
        );
        registry.register(
            "thanos_shipper_uploads",
            "Total number of uploaded blocks.",
            self.uploads.clone(),
        );
        registry.register(
            "thanos_shipper_upload_failures",
            "Total number of block upload failures.",
            self.upload_failures.clone(),
        );
        registry.register(
            "thanos_shipper_dir_syncs",
            "Total number of dir syncs.",
            self.dir_syncs.clone(),
        );
        registry.register(
            "thanos_shipper_dir_sync_failures",
            "Total number of failed dir syncs.",
            self.dir_sync_failures.clone(),
        );
    }
}

/// Runs the sidecar until `shutdown` fires.
pub async fn run(config: SidecarConfig, shutdown: Shutdown) -> Result<(), SidecarError> {
    let mut registry = Registry::default();
    let metrics = Metrics::default();
    metrics.register(&mut registry);
    let bucket = match &config.bucket_yaml {
        Some(yaml) => Some(Bucket::from_yaml(yaml.expose(), Some(&mut registry))?),
        None => None,
    };
    let prom = PromClient::new(
        &config.prometheus_url,
        Duration::from_secs(120),
        &config.http_client,
    )?;
    let state = Arc::new(PromState::default());
    state.set_min_time(config.min_time);
    let ready = Readiness::default();
    let grpc_metrics = strata_storepb::grpc_metrics::GrpcMetrics::server(&mut registry);
    let registry = Arc::new(Mutex::new(registry));

    let http_listener = strata_runtime::bind(&config.http_address).await?;
    let grpc_listener = strata_runtime::bind(&config.grpc_address).await?;
    let router = strata_runtime::http_router(registry, ready.clone(), axum::Router::new());
    let mut tasks = strata_runtime::Tasks::new();
    tasks.spawn(
        "http",
        strata_runtime::serve_http(http_listener, router, shutdown.clone()),
    );

    // Heartbeat: external labels and the lowest timestamp.
    {
        let prom = prom.clone();
        let state = Arc::clone(&state);
        let ready = ready.clone();
        let metrics = metrics.clone();
        let mut stop = shutdown.clone();
        let interval = config.config_interval;
        let min_time_flag = config.min_time;
        tasks.spawn_loop("heartbeat", async move {
            loop {
                // While Prometheus holds no sample yet (its lowest timestamp is "never"), the
                // time range advertised in Info would leave the sidecar out of every query:
                // check again every second rather than every interval.
                let mut no_data = false;
                match prom.external_labels().await {
                    Ok(labels) if labels.is_empty() => {
                        metrics.prometheus_up.set(1);
                        ready.set(false);
                        tracing::error!(
                            prometheus = prom.base(),
                            "no external labels configured on Prometheus server; Thanos requires a unique set of external labels for each Prometheus"
                        );
                    }
                    Ok(labels) => {
                        metrics.prometheus_up.set(1);
                        if state.ext_labels().as_ref() != Some(&labels) {
                            tracing::info!(external_labels = %labels, "loaded external labels");
                        }
                        state.set_ext_labels(labels);
                        if let Ok(t) = prom.lowest_timestamp().await {
                            no_data = t >= i64::MAX / 2;
                            state.set_min_time(t.max(min_time_flag));
                        }
                        ready.set(true);
                    }
                    Err(e) => {
                        metrics.prometheus_up.set(0);
                        ready.set(false);
                        tracing::warn!(error = %e, "reading Prometheus config failed");
                    }
                }
                let wait = if ready.is_ready() && !no_data {
                    interval
                } else {
                    Duration::from_secs(1).min(interval)
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait() => return,
                }
            }
        });
    }

    if config.reloader.enabled() {
        let prom = prom.clone();
        let watch = config.reloader.clone();
        let mut stop = shutdown.clone();
        tasks.spawn_loop("reloader", async move {
            // What Prometheus was last told to load; `None` until the first reload works.
            let mut applied: Option<reloader::Snapshot> = None;
            loop {
                let files = watch.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let now = reloader::snapshot(&files)?;
                    Ok::<_, reloader::ReloadError>(now)
                })
                .await;
                let mut failed = false;
                match read {
                    Ok(Ok(now)) if applied.as_ref() != Some(&now) => {
                        let files = watch.clone();
                        let written = {
                            let now = now.clone();
                            tokio::task::spawn_blocking(move || reloader::apply(&files, &now)).await
                        };
                        match written {
                            Ok(Ok(())) => match prom.reload().await {
                                Ok(()) => {
                                    tracing::info!("Prometheus reloaded its configuration");
                                    applied = Some(now);
                                }
                                Err(e) => {
                                    failed = true;
                                    tracing::warn!(error = %e, "asking Prometheus to reload failed");
                                }
                            },
                            Ok(Err(e)) => {
                                failed = true;
                                tracing::warn!(error = %e, "writing the substituted config failed");
                            }
                            Err(e) => tracing::warn!(error = %e, "reloader task failed"),
                        }
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "reading the watched files failed"),
                    Err(e) => tracing::warn!(error = %e, "reloader task failed"),
                }
                // A failed reload is retried soon (Prometheus may be starting).
                let wait = if failed {
                    watch.watch_interval.min(Duration::from_secs(5))
                } else {
                    watch.watch_interval
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait() => return,
                }
            }
        });
    }

    if let Some(bucket) = bucket {
        let shipper = Shipper::new(config.tsdb_path.clone(), bucket, config.upload_compacted)
            .with_meta_file_name(&config.shipper_meta_file_name);
        let prom = prom.clone();
        let state = Arc::clone(&state);
        let metrics = metrics.clone();
        let mut stop = shutdown.clone();
        let interval = config.shipper_interval;
        let ignore_unequal = config.ignore_unequal_block_size;
        tasks.spawn_loop("shipper", async move {
            let mut checked_flags = ignore_unequal;
            loop {
                if let Some(labels) = state.ext_labels() {
                    if !checked_flags {
                        checked_flags = check_block_durations(&prom).await;
                    }
                    if checked_flags {
                        metrics.dir_syncs.inc();
                        match shipper.sync(&labels).await {
                            Ok(stats) => {
                                metrics.uploads.inc_by(stats.uploaded.len() as u64);
                                metrics.upload_failures.inc_by(stats.failed as u64);
                            }
                            Err(e) => {
                                metrics.dir_sync_failures.inc();
                                tracing::warn!(error = %e, "shipper sync failed");
                            }
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.wait() => return,
                }
            }
        });
    }

    let service = SidecarStore::new(prom, state);
    tracing::info!(address = %config.grpc_address, "serving gRPC");
    let mut grpc_shutdown = shutdown.clone();
    let tls = config.grpc_tls.server()?;
    let grpc = strata_storepb::serve::store_api_server(service.clone(), grpc_metrics)
        .add_service(strata_storepb::metadata_server::MetadataServer::new(
            service.clone(),
        ))
        .add_service(strata_storepb::targets_server::TargetsServer::new(
            service.clone(),
        ))
        .add_service(strata_storepb::exemplars_server::ExemplarsServer::new(
            service.clone(),
        ))
        .add_service(strata_storepb::rules_server::RulesServer::new(service))
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

/// Thanos' check: uploads would overlap if Prometheus compacts blocks locally, so the
/// minimum and maximum block durations must be equal. Returns whether shipping may start.
async fn check_block_durations(prom: &PromClient) -> bool {
    match prom.flags().await {
        Ok(flags) => {
            let min = flags.get("storage.tsdb.min-block-duration");
            let max = flags.get("storage.tsdb.max-block-duration");
            if min != max {
                tracing::error!(
                    min_block_duration = ?min,
                    max_block_duration = ?max,
                    "found that TSDB max time is different from min time; compaction needs to be disabled (storage.tsdb.min-block-duration = storage.tsdb.max-block-duration); not uploading blocks"
                );
                return false;
            }
            if min.is_some_and(|m| m != "2h") {
                tracing::warn!(block_duration = ?min, "found that TSDB block duration is not 2h; only 2h is recommended");
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading Prometheus flags failed; will retry");
            false
        }
    }
}
