//! `strata compact`: flags as Thanos' compactor.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::flags::{parse_duration, parse_time_or_duration};

#[derive(Debug, Args)]
pub(crate) struct CompactArgs {
    #[command(flatten)]
    objstore: crate::flags::ObjstoreArgs,
    /// Scratch directory for downloaded and compacted blocks.
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    #[command(flatten)]
    http: crate::flags::HttpServerArgs,
    #[command(flatten)]
    pub(crate) tracing: crate::flags::TracingArgs,
    /// Keep running: a pass every --wait-interval. Without it, one pass, and the exit
    /// status says whether it succeeded.
    #[arg(short = 'w', long = "wait")]
    wait: bool,
    /// Time between passes with --wait.
    #[arg(long = "wait-interval", default_value = "5m", value_parser = parse_duration)]
    wait_interval: Duration,
    /// How long raw blocks are kept (0d: forever).
    #[arg(long = "retention.resolution-raw", default_value = "0d", value_parser = parse_duration)]
    retention_raw: Duration,
    /// How long 5m-resolution blocks are kept (0d: forever).
    #[arg(long = "retention.resolution-5m", default_value = "0d", value_parser = parse_duration)]
    retention_5m: Duration,
    /// How long 1h-resolution blocks are kept (0d: forever).
    #[arg(long = "retention.resolution-1h", default_value = "0d", value_parser = parse_duration)]
    retention_1h: Duration,
    /// External label telling replicas apart (repeatable); replicas are merged into one
    /// block (vertical compaction, irreversible).
    #[arg(long = "deduplication.replica-label")]
    replica_labels: Vec<String>,
    /// How replicas are merged: "" (one sample per timestamp) or "penalty".
    #[arg(long = "deduplication.func", default_value = "")]
    dedup_func: String,
    /// Merge overlapping blocks of one stream even without replica labels.
    #[arg(long = "compact.enable-vertical-compaction", hide = true)]
    vertical_compaction: bool,
    /// Do not downsample (raw blocks spanning 40h get a 5m copy, 5m blocks spanning 10d a
    /// 1h copy).
    #[arg(long = "downsampling.disable")]
    downsampling_disable: bool,
    /// Groups compacted at once.
    #[arg(long = "compact.concurrency", default_value_t = 1)]
    concurrency: usize,
    /// How long blocks marked for deletion stay before they are deleted; also the age
    /// after which partial uploads are deleted.
    #[arg(long = "delete-delay", default_value = "48h", value_parser = parse_duration)]
    delete_delay: Duration,
    /// Blocks younger than this (by ULID time) are left alone, except the compactor's.
    #[arg(long = "consistency-delay", default_value = "30m", value_parser = parse_duration)]
    consistency_delay: Duration,
    /// Only blocks ending after this time (RFC 3339 or relative, e.g. -2w).
    #[arg(long = "min-time", default_value = "0000-01-01T00:00:00Z", allow_hyphen_values = true, value_parser = parse_time_or_duration)]
    min_time: i64,
    /// Only blocks starting before this time.
    #[arg(long = "max-time", default_value = "9999-12-31T23:59:59Z", allow_hyphen_values = true, value_parser = parse_time_or_duration)]
    max_time: i64,
    #[command(flatten)]
    relabel: crate::flags::RelabelArgs,
    /// Highest compaction level (1: 2h … 4: 14d).
    #[arg(long = "debug.max-compaction-level", default_value_t = 4, hide = true)]
    max_compaction_level: usize,
}

pub(crate) fn run(args: CompactArgs) -> anyhow::Result<bool> {
    args.http.check()?;
    let bucket_yaml = args.objstore.required_yaml()?;
    let relabel_yaml = args.relabel.yaml()?;
    let relabel = strata_block::Relabel::from_yaml(&relabel_yaml)?;
    let dedup_func = match args.dedup_func.as_str() {
        "" => strata_tsdb::dedup::DedupFunc::Chain,
        "penalty" => strata_tsdb::dedup::DedupFunc::Penalty,
        other => anyhow::bail!("--deduplication.func: unknown {other:?} (want \"\" or penalty)"),
    };
    let config = strata_compact::CompactConfig {
        bucket_yaml: bucket_yaml.into(),
        http_address: args.http.http_address,
        wait: args.wait,
        wait_interval: args.wait_interval,
        options: strata_compact::CompactorOptions {
            data_dir: args.data_dir,
            retention_raw: args.retention_raw,
            retention_5m: args.retention_5m,
            retention_1h: args.retention_1h,
            replica_labels: args.replica_labels,
            dedup_func,
            vertical_compaction: args.vertical_compaction,
            concurrency: args.concurrency,
            delete_delay: args.delete_delay,
            consistency_delay: args.consistency_delay,
            relabel,
            min_time: args.min_time,
            max_time: args.max_time,
            max_compaction_level: args.max_compaction_level,
            downsampling: !args.downsampling_disable,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ok = runtime.block_on(async move {
        let (trigger, shutdown) = strata_runtime::Shutdown::new();
        tokio::spawn(trigger.on_signals());
        strata_compact::run(config, shutdown).await
    })?;
    Ok(ok)
}
