//! `strata query`: flags as Thanos' querier.

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::flags::parse_duration;

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// Store API endpoint to query: host:port, dns+host:port, dnssrv+_grpc._tcp.name or
    /// dnssrvnoa+_grpc._tcp.name; repeat for several.
    #[arg(long = "endpoint")]
    endpoints: Vec<String>,
    /// Same as --endpoint (Thanos' older flag).
    #[arg(long = "store")]
    stores: Vec<String>,
    /// Store API endpoint that is always asked, even while its Info check fails.
    #[arg(long = "endpoint-strict")]
    strict_endpoints: Vec<String>,
    /// Endpoint config (Thanos' YAML: default_client_config, endpoints with address, strict
    /// and client_config), given inline.
    #[arg(long = "endpoint.sd-config", allow_hyphen_values = true)]
    sd_config: Option<String>,
    /// Endpoint config file; re-read when it changes.
    #[arg(long = "endpoint.sd-config-file")]
    sd_config_file: Option<std::path::PathBuf>,
    /// How often the endpoint config is re-read at the latest.
    #[arg(long = "endpoint.sd-config-reload-interval", default_value = "5m", value_parser = parse_duration)]
    sd_config_reload_interval: Duration,
    /// How long an endpoint failing its checks stays listed in /api/v1/stores.
    #[arg(long = "store.unhealthy-timeout", default_value = "5m", value_parser = parse_duration)]
    unhealthy_timeout: Duration,
    /// Prometheus file-SD files (YAML or JSON) listing endpoints; re-read when they change.
    #[arg(long = "endpoint.sd-files", alias = "store.sd-files")]
    sd_files: Vec<std::path::PathBuf>,
    /// How often DNS names (dns+host:port) and SD files are re-read.
    #[arg(long = "store.sd-dns-interval", default_value = "30s", value_parser = parse_duration)]
    sd_interval: Duration,
    #[command(flatten)]
    http: crate::flags::HttpServerArgs,
    #[command(flatten)]
    grpc: crate::flags::GrpcServerArgs,
    #[command(flatten)]
    client: crate::flags::GrpcClientArgs,
    #[command(flatten)]
    web: crate::flags::WebArgs,
    #[command(flatten)]
    pub(crate) tracing: crate::flags::TracingArgs,
    /// Endpoint group address (Thanos' `--endpoint-group`: every address behind one name,
    /// e.g. a headless Service); resolved as `dns+` and asked like --endpoint.
    #[arg(long = "endpoint-group")]
    endpoint_groups: Vec<String>,
    /// URL of this querier in alert links (used by Thanos' rule UI; accepted).
    #[arg(long = "alert.query-url")]
    #[allow(dead_code)]
    alert_query_url: Option<String>,
    /// Label naming a replica; series differing only in it are deduplicated. Repeatable.
    #[arg(long = "query.replica-label")]
    replica_labels: Vec<String>,
    /// How replicas are merged: penalty or chain.
    #[arg(long = "deduplication.func", default_value = "penalty")]
    dedup: strata_query::DedupFunc,
    /// Answer with a warning instead of an error when an endpoint fails.
    #[arg(long = "query.partial-response", default_value_t = true, action = clap::ArgAction::Set)]
    partial_response: bool,
    /// Maximum time to evaluate a query.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = parse_duration)]
    timeout: Duration,
    /// Queries evaluated at once; more wait.
    #[arg(long = "query.max-concurrent", default_value_t = 20)]
    max_concurrent: usize,
    /// How far back an instant selector looks for a sample.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = parse_duration)]
    lookback_delta: Duration,
    /// Most samples a query may load.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    max_samples: usize,
    /// Per-endpoint timeout of a fan-out call (0: only the query's deadline bounds it).
    #[arg(long = "store.response-timeout", default_value = "2m", value_parser = parse_duration)]
    endpoint_timeout: Duration,
    /// Read downsampled data when the query allows (`max_source_resolution=auto` by default).
    #[arg(long = "query.auto-downsampling", default_value_t = false)]
    auto_downsampling: bool,
    /// `max_source_resolution` of instant queries asking for `auto`.
    #[arg(long = "query.default-instant-query-max-source-resolution", default_value = "0s", value_parser = parse_duration)]
    instant_max_source_resolution: Duration,
    /// Most series one `/api/v1/series` request may gather (bounds its memory).
    #[arg(long = "query.max-series", default_value_t = 1_000_000)]
    max_series: usize,
    /// Bytes of chunks and labels one query may bring in from the endpoints (0: unlimited).
    #[arg(long = "query.max-fetched-bytes", default_value = "1GiB", value_parser = crate::flags::parse_bytes)]
    max_fetched_bytes: u64,
    /// Log queries that take longer than this ("slow query detected", as the query
    /// frontend's `--query-frontend.log-queries-longer-than`; Strata's own flag): 0 disables,
    /// a negative value logs all.
    #[arg(
        long = "query.log-queries-longer-than",
        default_value = "0",
        allow_hyphen_values = true
    )]
    log_queries_longer_than: String,
    /// Answer without CORS headers (Thanos' flag; by default any origin may call the API).
    #[arg(long = "web.disable-cors", default_value_t = false)]
    disable_cors: bool,
    /// How often endpoints are checked with the Info API, and the check's timeout.
    #[arg(long = "endpoint.info-timeout", default_value = "5s", value_parser = parse_duration)]
    info_interval: Duration,
}

pub(crate) fn run(args: QueryArgs) -> anyhow::Result<()> {
    args.http.check()?;
    let client_tls = args.client.tls()?;
    let mut endpoints = args.endpoints;
    endpoints.extend(args.stores);
    endpoints.extend(args.endpoint_groups.iter().map(|g| {
        if g.contains("+") {
            g.clone()
        } else {
            format!("dns+{g}")
        }
    }));
    let replica_labels = args
        .replica_labels
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let sd_config = match (args.sd_config, args.sd_config_file) {
        (Some(_), Some(_)) => {
            anyhow::bail!("--endpoint.sd-config and --endpoint.sd-config-file are exclusive")
        }
        (Some(text), None) => Some(strata_query::discovery::SdConfigSource::Inline(text)),
        (None, Some(path)) => Some(strata_query::discovery::SdConfigSource::File(path)),
        (None, None) => None,
    };
    let config = strata_query::QueryConfig {
        log_queries_longer_than: crate::flags::slow_query_threshold(&args.log_queries_longer_than)?,
        disable_cors: args.disable_cors,
        flags: crate::FLAGS.get().cloned().unwrap_or_default(),
        endpoints,
        strict_endpoints: args.strict_endpoints,
        sd_files: args.sd_files,
        sd_config,
        unhealthy_timeout: args.unhealthy_timeout,
        sd_interval: args.sd_interval.min(args.sd_config_reload_interval),
        http_address: args.http.http_address,
        grpc_address: args.grpc.grpc_address,
        route_prefix: args.web.route_prefix(),
        replica_labels,
        dedup: args.dedup,
        partial_response: args.partial_response,
        timeout: args.timeout,
        max_concurrent: args.max_concurrent,
        lookback_delta: args.lookback_delta.as_millis() as i64,
        max_samples: args.max_samples,
        endpoint_timeout: args.endpoint_timeout,
        auto_downsampling: args.auto_downsampling,
        instant_max_source_resolution: i64::try_from(
            args.instant_max_source_resolution.as_millis(),
        )
        .unwrap_or(i64::MAX),
        max_series: args.max_series,
        max_fetched_bytes: args.max_fetched_bytes,
        info_interval: args.info_interval,
        grpc_tls: args.grpc.tls.files(),
        client_tls,
        grpc_compression: args.client.compression,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (trigger, shutdown) = strata_runtime::Shutdown::new();
        tokio::spawn(trigger.on_signals());
        strata_query::run(config, shutdown).await
    })?;
    Ok(())
}
