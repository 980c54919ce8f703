//! The querier (`strata query`): fans out to Store API endpoints (sidecars, store gateways,
//! other queriers), merges and deduplicates replica series, evaluates PromQL with
//! `strata-promql`, and serves the Prometheus HTTP API so Grafana can use it as a Prometheus
//! datasource.
//!
//! - [`endpoints`]: the endpoint set, health-checked with the Info API;
//! - [`proxy`]: fan-out and k-way merge;
//! - [`dedup`]: replica deduplication (`penalty`, `chain`);
//! - [`queryable`]: the engine's `Queryable` over the proxy;
//! - [`api`]: the HTTP API.

pub mod api;
pub mod discovery;
pub use strata_tsdb::dedup;
pub mod client_tls;
pub mod endpoints;
pub mod exemplars;
mod grpc_apis;
pub mod histograms;
pub mod json;
pub mod metadata;
pub mod proxy;
pub mod queryable;
pub mod rules;
pub mod store_api;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use strata_promql::{Engine, EngineOptions};
use strata_runtime::{Readiness, Shutdown};

pub use dedup::DedupFunc;

/// Settings of `strata query` (flag names as in Thanos).
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// `--web.route-prefix`: the HTTP API is served under it (`""`: at the root; `/x`).
    pub route_prefix: String,
    /// `--endpoint` addresses (`host:port` or `dns+host:port`).
    pub endpoints: Vec<String>,
    /// `--endpoint-strict` addresses: asked even while unhealthy.
    pub strict_endpoints: Vec<String>,
    /// `--endpoint.sd-files`: Prometheus file-SD files listing endpoints.
    pub sd_files: Vec<std::path::PathBuf>,
    /// `--endpoint.sd-config(-file)`: endpoints with TLS of their own.
    pub sd_config: Option<discovery::SdConfigSource>,
    /// `--store.unhealthy-timeout`: how long a failing endpoint stays listed.
    pub unhealthy_timeout: Duration,
    /// `--store.sd-dns-interval`: how often DNS names and SD files are re-read.
    pub sd_interval: Duration,
    /// `--http-address`.
    pub http_address: String,
    /// `--grpc-address`: the Store API for queriers stacked above this one.
    pub grpc_address: String,
    /// `--query.replica-label`.
    pub replica_labels: Vec<String>,
    /// `--deduplication.func`.
    pub dedup: DedupFunc,
    /// `--query.partial-response`.
    pub partial_response: bool,
    /// `--query.timeout`.
    pub timeout: Duration,
    /// `--query.max-concurrent`.
    pub max_concurrent: usize,
    /// `--query.lookback-delta` (ms).
    pub lookback_delta: i64,
    /// `--query.max-samples`.
    pub max_samples: usize,
    /// `--store.response-timeout` (zero: the query's deadline alone bounds endpoints).
    pub endpoint_timeout: Duration,
    /// `--query.auto-downsampling`.
    pub auto_downsampling: bool,
    /// `--query.default-instant-query-max-source-resolution` (ms).
    pub instant_max_source_resolution: i64,
    /// Most series a `/api/v1/series` request may gather.
    pub max_series: usize,
    /// `--query.max-fetched-bytes`: bytes of chunks and labels one query may bring in.
    pub max_fetched_bytes: u64,
    /// `--endpoint.info-timeout`: how often and how long endpoints are checked.
    pub info_interval: Duration,
    /// `--grpc-server-tls-*`.
    pub grpc_tls: strata_runtime::TlsFiles,
    /// `--grpc-client-tls-*`: TLS towards the endpoints (`None`: plaintext).
    pub client_tls: Option<endpoints::ClientTls>,
    /// How requests to the endpoints are compressed (`--grpc-compression`).
    pub grpc_compression: strata_storepb::snappy::Compression,
    /// `--query.log-queries-longer-than`: the slow query log's threshold (`None`: off).
    pub log_queries_longer_than: Option<Duration>,
    /// `--web.disable-cors`: no CORS headers on the API.
    pub disable_cors: bool,
    /// The command line's flags and values, for `/api/v1/status/flags`.
    pub flags: std::collections::BTreeMap<String, String>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            log_queries_longer_than: None,
            disable_cors: false,
            flags: std::collections::BTreeMap::new(),
            route_prefix: String::new(),
            endpoints: Vec::new(),
            strict_endpoints: Vec::new(),
            sd_files: Vec::new(),
            sd_config: None,
            unhealthy_timeout: Duration::from_secs(300),
            sd_interval: Duration::from_secs(30),
            http_address: "0.0.0.0:10902".into(),
            grpc_address: "0.0.0.0:10901".into(),
            replica_labels: Vec::new(),
            dedup: DedupFunc::Penalty,
            partial_response: true,
            timeout: Duration::from_secs(120),
            max_concurrent: 20,
            lookback_delta: 5 * 60 * 1000,
            max_samples: 50_000_000,
            endpoint_timeout: Duration::from_secs(120),
            auto_downsampling: false,
            instant_max_source_resolution: 0,
            max_series: 1_000_000,
            max_fetched_bytes: 1 << 30,
            info_interval: Duration::from_secs(5),
            grpc_tls: strata_runtime::TlsFiles::default(),
            client_tls: None,
            grpc_compression: Default::default(),
        }
    }
}

/// Errors that stop the querier.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// An endpoint address or its client TLS is unusable.
    #[error(transparent)]
    Endpoint(#[from] endpoints::EndpointError),
    /// A server failed.
    #[error(transparent)]
    Server(#[from] strata_runtime::Error),
    /// The gRPC TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] strata_runtime::TlsError),
    /// The endpoint SD config is unusable.
    #[error(transparent)]
    SdConfig(#[from] discovery::SdConfigError),
    /// A background task (endpoint checks, gRPC server) ended on its own.
    #[error(transparent)]
    Task(#[from] strata_runtime::TaskFailure),
}

/// Runs the querier until `shutdown` fires.
pub async fn run(config: QueryConfig, shutdown: Shutdown) -> Result<(), QueryError> {
    let discovery = discovery::Discovery {
        dns_server: None,
        endpoints: config.endpoints.clone(),
        strict_endpoints: config.strict_endpoints.clone(),
        sd_files: config.sd_files.clone(),
        sd_config: config.sd_config.clone(),
        tls: config.client_tls.clone().map(Arc::new),
        compression: config.grpc_compression,
        dns_metrics: discovery::DnsMetrics::default(),
    };
    discovery.check()?;
    let mut registry = Registry::default();
    discovery.dns_metrics.register(&mut registry);
    let grpc_metrics = strata_storepb::grpc_metrics::GrpcMetrics::server(&mut registry);
    let client_metrics = strata_storepb::grpc_metrics::GrpcMetrics::client(&mut registry);
    let endpoints =
        endpoints::EndpointSet::with_metrics(&discovery.resolve().await, client_metrics)?;
    let gate = strata_runtime::gate::Gate::new(
        config.max_concurrent,
        "thanos_query_concurrent_gate",
        Some(&mut registry),
    );
    // Thanos' store-set gauge: healthy endpoints by external labels and component type.
    let connections: prometheus_client::metrics::family::Family<
        Vec<(&'static str, String)>,
        prometheus_client::metrics::gauge::Gauge,
    > = Default::default();
    registry.register(
        "thanos_store_nodes_grpc_connections",
        "Number of gRPC connection to Store APIs. Opened connection means healthy store APIs available for Querier.",
        connections.clone(),
    );
    let range_timespan = api::range_timespan_histogram();
    registry.register(
        "thanos_query_range_requested_timespan_duration_seconds",
        "A histogram of the query range window in seconds",
        range_timespan.clone(),
    );
    let registry = Arc::new(Mutex::new(registry));
    let ready = Readiness::default();
    let engine = Engine::new(EngineOptions {
        lookback_delta: config.lookback_delta,
        max_samples: config.max_samples,
        timeout: config.timeout,
        ..EngineOptions::default()
    });
    let state = Arc::new(api::ApiState {
        endpoints: endpoints.clone(),
        engine,
        options: api::ApiOptions {
            replica_labels: config.replica_labels.clone(),
            dedup: config.dedup,
            partial_response: config.partial_response,
            endpoint_timeout: config.endpoint_timeout,
            unhealthy_timeout: config.unhealthy_timeout,
            auto_downsampling: config.auto_downsampling,
            instant_max_source_resolution: config.instant_max_source_resolution,
            max_series: config.max_series,
            max_fetched_bytes: config.max_fetched_bytes,
        },
        gate,
        range_timespan,
        flags: config.flags.clone(),
        started: std::time::SystemTime::now(),
    });
    let listener = strata_runtime::bind(&config.http_address).await?;
    let grpc_listener = strata_runtime::bind(&config.grpc_address).await?;
    let mut api = api::router(state);
    if let Some(threshold) = config.log_queries_longer_than {
        // Only the query API's named routes (queries, series, labels, …) are logged.
        api = api.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                if api::handler_name(req.method(), req.uri().path()).is_some() {
                    strata_runtime::slow_query::observe(threshold, req, next).await
                } else {
                    next.run(req).await
                }
            },
        ));
    }
    if !config.disable_cors {
        api = api.layer(axum::middleware::from_fn(strata_runtime::cors::cors));
    }
    let api = strata_runtime::http_metrics::instrument(api, &registry, api::handler_name)
        .merge(strata_web::query_ui(&config.route_prefix));
    let router = strata_runtime::http_router(
        registry,
        ready.clone(),
        strata_runtime::with_route_prefix(&config.route_prefix, api),
    )
    .layer(tower_http::compression::CompressionLayer::new().gzip(true));
    let proxy = store_api::ProxyStoreService::new(endpoints.clone(), config.endpoint_timeout);
    let mut grpc_shutdown = shutdown.clone();
    let tls = config.grpc_tls.server()?;
    let server = strata_storepb::serve::store_api_server(proxy.clone(), grpc_metrics)
        .add_service(strata_storepb::metadata_server::MetadataServer::new(
            proxy.clone(),
        ))
        .add_service(strata_storepb::targets_server::TargetsServer::new(
            proxy.clone(),
        ))
        .add_service(strata_storepb::exemplars_server::ExemplarsServer::new(
            proxy.clone(),
        ))
        .add_service(strata_storepb::rules_server::RulesServer::new(proxy));
    let mut tasks = strata_runtime::Tasks::new();
    tasks.spawn(
        "grpc",
        server.serve_with_incoming_shutdown(
            strata_runtime::tls::incoming(grpc_listener, tls),
            async move { grpc_shutdown.wait().await },
        ),
    );

    let checker_endpoints = endpoints.clone();
    let interval = config.info_interval;
    let mut checker_shutdown = shutdown.clone();
    let checker_ready = ready.clone();
    let sd_interval = config.sd_interval;
    tasks.spawn_loop("endpoint checks", async move {
        let mut stamps = discovery.file_stamps();
        let mut last_resolve = tokio::time::Instant::now();
        loop {
            checker_endpoints.check_all(interval).await;
            count_connections(&checker_endpoints, &connections);
            checker_ready.set(true);
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = checker_shutdown.wait() => return,
            }
            let now_stamps = discovery.file_stamps();
            if now_stamps != stamps || last_resolve.elapsed() >= sd_interval {
                stamps = now_stamps;
                last_resolve = tokio::time::Instant::now();
                checker_endpoints.update(&discovery.resolve().await);
            }
        }
    });
    tokio::select! {
        served = strata_runtime::serve_http(listener, router, shutdown) => served?,
        failure = tasks.failure() => return Err(failure.into()),
    }
    tasks.join(strata_runtime::SHUTDOWN_GRACE).await;
    Ok(())
}

/// Sets `thanos_store_nodes_grpc_connections` from the endpoints' last checks.
fn count_connections(
    endpoints: &endpoints::EndpointSet,
    gauge: &prometheus_client::metrics::family::Family<
        Vec<(&'static str, String)>,
        prometheus_client::metrics::gauge::Gauge,
    >,
) {
    gauge.clear();
    for endpoint in endpoints.all() {
        let Some(info) = endpoint.info().filter(|_| endpoint.is_healthy()) else {
            continue;
        };
        let external = info
            .label_sets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        gauge
            .get_or_create(&vec![
                ("external_labels", external),
                ("store_type", info.component),
            ])
            .inc();
    }
}
