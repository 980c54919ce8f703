//! `strata store`: flags as Thanos' store gateway.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::flags::{parse_bytes, parse_duration, parse_time_or_duration};

#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    #[command(flatten)]
    objstore: crate::flags::ObjstoreArgs,
    /// Local directory for index-headers and cached metas.
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    #[command(flatten)]
    http: crate::flags::HttpServerArgs,
    #[command(flatten)]
    grpc: crate::flags::GrpcServerArgs,
    #[command(flatten)]
    pub(crate) tracing: crate::flags::TracingArgs,
    /// How often to sync blocks from the bucket.
    #[arg(long = "sync-block-duration", default_value = "15m", value_parser = parse_duration)]
    sync_block_duration: Duration,
    /// Blocks loaded in parallel during a sync.
    #[arg(long = "block-sync-concurrency", default_value_t = 20)]
    block_sync_concurrency: usize,
    /// Serve only blocks ending after this time (RFC 3339 or relative, e.g. -2w).
    #[arg(long = "min-time", default_value = "0000-01-01T00:00:00Z", allow_hyphen_values = true, value_parser = parse_time_or_duration)]
    min_time: i64,
    /// Serve only blocks starting before this time (RFC 3339 or relative).
    #[arg(long = "max-time", default_value = "9999-12-31T23:59:59Z", allow_hyphen_values = true, value_parser = parse_time_or_duration)]
    max_time: i64,
    #[command(flatten)]
    relabel: crate::flags::RelabelArgs,
    /// Maximum size of the in-memory index cache (postings and series).
    #[arg(long = "index-cache-size", default_value = "250MB", value_parser = parse_bytes)]
    index_cache_size: u64,
    /// Index cache config (Thanos' YAML: type IN-MEMORY or MEMCACHED), given inline;
    /// replaces --index-cache-size.
    #[arg(long = "index-cache.config", allow_hyphen_values = true)]
    index_cache_config: Option<String>,
    /// Index cache config file.
    #[arg(long = "index-cache.config-file")]
    index_cache_config_file: Option<std::path::PathBuf>,
    /// Maximum samples a Series call may touch (0: no limit).
    #[arg(long = "store.grpc.series-sample-limit", default_value_t = 0)]
    series_sample_limit: u64,
    /// Maximum series a Series call may return (0: no limit).
    #[arg(long = "store.grpc.touched-series-limit", default_value_t = 0)]
    touched_series_limit: u64,
    /// Maximum chunks a Series call may touch (0: no limit).
    #[arg(long = "store.grpc.touched-chunks-limit", default_value_t = 0)]
    touched_chunks_limit: u64,
    /// Same as --store.grpc.touched-series-limit (Thanos' newer name).
    #[arg(long = "store.limits.request-series", default_value_t = 0)]
    request_series: u64,
    /// Same as --store.grpc.series-sample-limit (Thanos' newer name).
    #[arg(long = "store.limits.request-samples", default_value_t = 0)]
    request_samples: u64,
    /// Series calls served at once; more wait.
    #[arg(long = "store.grpc.series-max-concurrency", default_value_t = 20)]
    series_max_concurrency: usize,
    /// Blocks marked for deletion longer ago than this are no longer served.
    #[arg(long = "ignore-deletion-marks-delay", default_value = "24h", value_parser = parse_duration)]
    ignore_deletion_marks_delay: Duration,
}

fn first_nonzero(a: u64, b: u64) -> u64 {
    if a > 0 { a } else { b }
}

pub(crate) fn run(args: StoreArgs) -> anyhow::Result<()> {
    args.http.check()?;
    let bucket_yaml = args.objstore.required_yaml()?;
    let relabel_yaml = args.relabel.yaml()?;
    let index_cache = crate::flags::path_or_content(
        args.index_cache_config,
        args.index_cache_config_file.as_deref(),
        "index-cache.config",
    )?
    .map(|yaml| strata_cache::CacheConfig::from_yaml(&yaml))
    .transpose()
    .context("--index-cache.config")?;
    let config = strata_store::StoreConfig {
        bucket_yaml: bucket_yaml.into(),
        data_dir: args.data_dir,
        grpc_address: args.grpc.grpc_address,
        http_address: args.http.http_address,
        sync_interval: args.sync_block_duration,
        block_sync_concurrency: args.block_sync_concurrency,
        min_time: args.min_time,
        max_time: args.max_time,
        relabel_yaml,
        index_cache_size: args.index_cache_size,
        index_cache,
        limits: strata_store::Limits {
            series: first_nonzero(args.touched_series_limit, args.request_series),
            samples: first_nonzero(args.series_sample_limit, args.request_samples),
            chunks: args.touched_chunks_limit,
        },
        series_max_concurrency: args.series_max_concurrency,
        ignore_deletion_marks_delay: args.ignore_deletion_marks_delay,
        grpc_tls: args.grpc.tls.files(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // FILESYSTEM buckets read on blocking threads; each thread that allocates a read
        // buffer keeps allocator pages of its own, so hundreds of them (tokio's default
        // limit is 512) held a 2-day query's store RSS at twice its live heap.
        .max_blocking_threads(8)
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (trigger, shutdown) = strata_runtime::Shutdown::new();
        tokio::spawn(trigger.on_signals());
        strata_store::run(config, shutdown).await
    })?;
    Ok(())
}
