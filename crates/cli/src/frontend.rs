//! `strata query-frontend`: flags as Thanos' query frontend.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::flags::parse_duration;

#[derive(Debug, Args)]
pub(crate) struct FrontendArgs {
    /// URL of the querier (or Prometheus) the frontend sends queries to.
    #[arg(
        long = "query-frontend.downstream-url",
        default_value = "http://localhost:9090"
    )]
    downstream_url: String,
    #[command(flatten)]
    http: crate::flags::HttpServerArgs,
    #[command(flatten)]
    pub(crate) tracing: crate::flags::TracingArgs,
    #[command(flatten)]
    web: crate::flags::WebArgs,
    /// Range queries are split at multiples of this interval (0: no splitting).
    #[arg(long = "query-range.split-interval", default_value = "24h", value_parser = parse_duration)]
    split_interval: Duration,
    /// Move start and end down to multiples of the step (makes results cacheable).
    #[arg(long = "query-range.align-range-with-step", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    align_range_with_step: bool,
    /// Retries of a failed sub-query.
    #[arg(long = "query-range.max-retries-per-request", default_value_t = 5)]
    max_retries: usize,
    /// Results cache config file (Thanos format: IN-MEMORY or MEMCACHED).
    #[arg(long = "query-range.response-cache-config-file")]
    cache_config_file: Option<PathBuf>,
    /// Results cache config YAML (instead of a file).
    #[arg(long = "query-range.response-cache-config", allow_hyphen_values = true)]
    cache_config: Option<String>,
    /// Results newer than this are never cached (they may still change).
    #[arg(long = "query-range.response-cache-max-freshness", default_value = "1m", value_parser = parse_duration)]
    max_freshness: Duration,
    /// Sub-queries of one query run at once.
    #[arg(long = "query-range.max-query-parallelism", default_value_t = 14)]
    parallelism: usize,
    /// Label and series requests with a time range are split at multiples of this (0: not split).
    #[arg(long = "labels.split-interval", default_value = "24h", value_parser = parse_duration)]
    labels_split_interval: Duration,
    /// Range queries longer than this are refused (0: no limit).
    #[arg(long = "query-range.max-query-length", default_value = "0s", value_parser = parse_duration)]
    max_query_length: Duration,
    /// Headers forwarded to the downstream on split requests, besides Authorization and the
    /// tenant headers (also part of the results cache key).
    #[arg(long = "query-frontend.forward-header")]
    forward_headers: Vec<String>,
    /// Timeout of one downstream request (0: none).
    #[arg(long = "query-frontend.downstream-timeout", default_value = "5m", value_parser = parse_duration)]
    downstream_timeout: Duration,
    /// Accepted for compatibility; answers are gzip-compressed when the client accepts it.
    #[arg(long = "query-frontend.compress-responses", hide = true, num_args = 0..=1, default_missing_value = "true")]
    compress_responses: Option<String>,
    /// Log queries that take longer than this ("slow query detected", with the query's
    /// parameters, Grafana's dashboard and panel ids); 0 disables, a negative value logs all.
    #[arg(
        long = "query-frontend.log-queries-longer-than",
        default_value = "0",
        allow_hyphen_values = true
    )]
    log_queries_longer_than: String,
}

pub(crate) fn run(args: FrontendArgs) -> anyhow::Result<()> {
    args.http.check()?;
    let cache = crate::flags::path_or_content(
        args.cache_config,
        args.cache_config_file.as_deref(),
        "query-range.response-cache-config",
    )?
    .map(|yaml| strata_query_frontend::cache::CacheConfig::from_yaml(&yaml))
    .transpose()?;
    let config = strata_query_frontend::FrontendConfig {
        downstream_url: args.downstream_url,
        http_address: args.http.http_address,
        route_prefix: args.web.route_prefix(),
        log_queries_longer_than: crate::flags::slow_query_threshold(&args.log_queries_longer_than)?,
        split_interval: args.split_interval,
        align_range_with_step: args.align_range_with_step,
        max_retries: args.max_retries,
        cache,
        max_freshness: args.max_freshness,
        parallelism: args.parallelism,
        labels_split_interval: args.labels_split_interval,
        max_query_length: args.max_query_length,
        downstream_timeout: args.downstream_timeout,
        forward_headers: args.forward_headers,
        ..strata_query_frontend::FrontendConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (trigger, shutdown) = strata_runtime::Shutdown::new();
        tokio::spawn(trigger.on_signals());
        strata_query_frontend::run(config, shutdown).await
    })?;
    Ok(())
}
