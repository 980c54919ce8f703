//! `strata sidecar`: flags as Thanos' sidecar (including those the Prometheus Operator
//! passes, accepted where they do not apply).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::flags::{parse_duration, parse_time_or_duration};
use crate::store::config_text;

#[derive(Debug, Args)]
pub(crate) struct SidecarArgs {
    /// URL of the Prometheus beside which the sidecar runs.
    #[arg(long = "prometheus.url", default_value = "http://localhost:9090")]
    prometheus_url: String,
    /// Prometheus' data directory (where it writes blocks).
    #[arg(long = "tsdb.path", default_value = "./data")]
    tsdb_path: PathBuf,
    /// Path to the bucket config YAML; without a bucket config blocks are not shipped.
    #[arg(long = "objstore.config-file")]
    objstore_config_file: Option<PathBuf>,
    /// The bucket config YAML itself (instead of a file).
    #[arg(long = "objstore.config", allow_hyphen_values = true)]
    objstore_config: Option<String>,
    /// gRPC listen address (Store API, Info API).
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    grpc_address: String,
    /// HTTP listen address (/metrics, /-/healthy, /-/ready).
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: String,
    #[command(flatten)]
    grpc_tls: crate::flags::GrpcServerTlsArgs,
    /// Also ship blocks Prometheus compacted (level > 1), to migrate old data.
    #[arg(long = "shipper.upload-compacted", default_value_t = false)]
    upload_compacted: bool,
    /// Ship even if Prometheus' min and max block durations differ.
    #[arg(long = "shipper.ignore-unequal-block-size", default_value_t = false)]
    ignore_unequal_block_size: bool,
    /// How often the TSDB directory is checked for new blocks.
    #[arg(long = "shipper.sync-interval", default_value = "30s", value_parser = parse_duration)]
    shipper_interval: Duration,
    /// Shipper state file name (only the default is supported).
    #[arg(long = "shipper.meta-file-name", default_value = "thanos.shipper.json")]
    shipper_meta_file_name: String,
    /// How often Prometheus' external labels are re-read.
    #[arg(long = "prometheus.get_config_interval", default_value = "30s", value_parser = parse_duration)]
    config_interval: Duration,
    /// Serve only data after this time (RFC 3339 or relative, e.g. -2h).
    #[arg(long = "min-time", default_value = "0000-01-01T00:00:00Z", allow_hyphen_values = true, value_parser = parse_time_or_duration)]
    min_time: i64,
    /// Accepted for compatibility (Prometheus Operator); not used.
    #[arg(long = "log.format", hide = true)]
    log_format: Option<String>,
    /// HTTP client settings for Prometheus, as YAML (Thanos' format: basic_auth,
    /// bearer_token(_file), tls_config with ca_file, cert_file, key_file,
    /// insecure_skip_verify).
    #[arg(long = "prometheus.http-client")]
    prometheus_http_client: Option<String>,
    /// File with the YAML of --prometheus.http-client.
    #[arg(long = "prometheus.http-client-file")]
    prometheus_http_client_file: Option<PathBuf>,
    /// Accepted for compatibility; not used.
    #[arg(long = "prometheus.get_config_timeout", hide = true)]
    get_config_timeout: Option<String>,
    /// Accepted for compatibility; not used.
    #[arg(long = "grpc-server-max-connection-age", hide = true)]
    grpc_max_connection_age: Option<String>,
    /// Accepted for compatibility; not used.
    #[arg(long = "prometheus.ready_timeout", hide = true)]
    ready_timeout: Option<String>,
    /// Prometheus' configuration file to watch; a change makes Prometheus reload
    /// (`POST /-/reload`, Prometheus needs --web.enable-lifecycle).
    #[arg(long = "reloader.config-file")]
    reloader_config_file: Option<PathBuf>,
    /// Where the watched configuration is written with `$(VAR)` environment references
    /// substituted (what Prometheus then reads).
    #[arg(long = "reloader.config-envsubst-file")]
    reloader_envsubst_file: Option<PathBuf>,
    /// Rule directories to watch (repeatable).
    #[arg(long = "reloader.rule-dir")]
    reloader_rule_dir: Vec<PathBuf>,
    /// How often the watched files are checked.
    #[arg(long = "reloader.watch-interval", default_value = "3m", value_parser = parse_duration)]
    reloader_watch_interval: Duration,
    /// Accepted for compatibility; not used.
    #[arg(long = "http-grace-period", hide = true)]
    http_grace_period: Option<String>,
    /// Accepted for compatibility; not used.
    #[arg(long = "grpc-grace-period", hide = true)]
    grpc_grace_period: Option<String>,
}

pub(crate) fn run(args: SidecarArgs) -> anyhow::Result<()> {
    if args.shipper_meta_file_name != strata_sidecar::shipper::SHIPPER_FILE {
        anyhow::bail!(
            "--shipper.meta-file-name: only {} is supported",
            strata_sidecar::shipper::SHIPPER_FILE
        );
    }
    let bucket_yaml = config_text(
        args.objstore_config,
        args.objstore_config_file.as_ref(),
        "--objstore.config-file",
    )?;
    let http_client = config_text(
        args.prometheus_http_client,
        args.prometheus_http_client_file.as_ref(),
        "--prometheus.http-client-file",
    )?
    .unwrap_or_default();
    let http_client = strata_sidecar::http_client::HttpClientConfig::from_yaml(&http_client)?;
    let config = strata_sidecar::SidecarConfig {
        prometheus_url: args.prometheus_url,
        http_client,
        reloader: strata_sidecar::reloader::ReloaderConfig {
            config_file: args.reloader_config_file,
            envsubst_file: args.reloader_envsubst_file,
            rule_dirs: args.reloader_rule_dir,
            watch_interval: args.reloader_watch_interval,
        },
        tsdb_path: args.tsdb_path,
        bucket_yaml: bucket_yaml.map(Into::into),
        grpc_address: args.grpc_address,
        http_address: args.http_address,
        upload_compacted: args.upload_compacted,
        ignore_unequal_block_size: args.ignore_unequal_block_size,
        config_interval: args.config_interval,
        shipper_interval: args.shipper_interval,
        min_time: args.min_time,
        grpc_tls: args.grpc_tls.files(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (trigger, shutdown) = strata_runtime::Shutdown::new();
        tokio::spawn(trigger.on_signals());
        strata_sidecar::run(config, shutdown).await
    })?;
    Ok(())
}
