//! `strata sidecar`: flags as Thanos' sidecar (including those the Prometheus Operator
//! passes, accepted where they do not apply).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::flags::{parse_duration, parse_time_or_duration};

#[derive(Debug, Args)]
pub(crate) struct SidecarArgs {
    /// URL of the Prometheus beside which the sidecar runs.
    #[arg(long = "prometheus.url", default_value = "http://localhost:9090")]
    prometheus_url: String,
    /// Prometheus' data directory (where it writes blocks).
    #[arg(long = "tsdb.path", default_value = "./data")]
    tsdb_path: PathBuf,
    /// The bucket (without one, blocks are not shipped).
    #[command(flatten)]
    objstore: crate::flags::ObjstoreArgs,
    #[command(flatten)]
    http: crate::flags::HttpServerArgs,
    #[command(flatten)]
    grpc: crate::flags::GrpcServerArgs,
    #[command(flatten)]
    pub(crate) tracing: crate::flags::TracingArgs,
    /// Also ship blocks Prometheus compacted (level > 1), to migrate old data.
    #[arg(long = "shipper.upload-compacted", default_value_t = false)]
    upload_compacted: bool,
    /// Ship even if Prometheus' min and max block durations differ.
    #[arg(long = "shipper.ignore-unequal-block-size", default_value_t = false)]
    ignore_unequal_block_size: bool,
    /// How often the TSDB directory is checked for new blocks.
    #[arg(long = "shipper.sync-interval", default_value = "30s", value_parser = parse_duration)]
    shipper_interval: Duration,
    /// Shipper state file name, in the TSDB directory.
    #[arg(long = "shipper.meta-file-name", default_value = "thanos.shipper.json")]
    shipper_meta_file_name: String,
    /// How long to wait for Prometheus at startup (accepted as Thanos'; the sidecar waits
    /// without limit, not ready until Prometheus answers).
    #[arg(long = "prometheus.ready_timeout", default_value = "10m", value_parser = parse_duration)]
    #[allow(dead_code)]
    ready_timeout: Duration,
    /// Timeout of reading Prometheus' config (accepted as Thanos').
    #[arg(long = "prometheus.get_config_timeout", default_value = "30s", value_parser = parse_duration)]
    #[allow(dead_code)]
    get_config_timeout: Duration,
    /// How often Prometheus' external labels are re-read.
    #[arg(long = "prometheus.get_config_interval", default_value = "30s", value_parser = parse_duration)]
    config_interval: Duration,
    /// Serve only data after this time (RFC 3339 or relative, e.g. -2h).
    #[arg(long = "min-time", default_value = "0000-01-01T00:00:00Z", allow_hyphen_values = true, value_parser = parse_time_or_duration)]
    min_time: i64,
    /// HTTP client settings for Prometheus, as YAML (Thanos' format: basic_auth,
    /// bearer_token(_file), tls_config with ca_file, cert_file, key_file,
    /// insecure_skip_verify).
    #[arg(long = "prometheus.http-client")]
    prometheus_http_client: Option<String>,
    /// File with the YAML of --prometheus.http-client.
    #[arg(long = "prometheus.http-client-file")]
    prometheus_http_client_file: Option<PathBuf>,
    /// Accepted for compatibility; not used.
    #[arg(long = "grpc-server-max-connection-age", hide = true)]
    grpc_max_connection_age: Option<String>,
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
}

pub(crate) fn run(args: SidecarArgs) -> anyhow::Result<()> {
    args.http.check()?;
    let bucket_yaml = args.objstore.yaml()?;
    let http_client = crate::flags::path_or_content(
        args.prometheus_http_client,
        args.prometheus_http_client_file.as_deref(),
        "prometheus.http-client",
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
        grpc_address: args.grpc.grpc_address,
        http_address: args.http.http_address,
        upload_compacted: args.upload_compacted,
        ignore_unequal_block_size: args.ignore_unequal_block_size,
        config_interval: args.config_interval,
        shipper_interval: args.shipper_interval,
        min_time: args.min_time,
        grpc_tls: args.grpc.tls.files(),
        shipper_meta_file_name: args.shipper_meta_file_name,
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
