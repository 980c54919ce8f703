//! The `strata` binary: one subcommand per component, flags named as in Thanos.
//!
//! Only this crate builds runtimes, installs the tracing subscriber, reads argv and calls
//! `process::exit`; everything else lives in library crates.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// mimalloc: the engine, the merges and the store allocate and free many small buffers per
/// request; it is markedly faster at that than glibc's allocator (see `benches/`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bucket;
mod compact;
mod flags;
mod frontend;
mod logging;
mod query;
mod sidecar;
mod store;

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Long-term storage and global querying for Prometheus"
)]
struct Cli {
    /// Log level: error, warn, info, debug, trace.
    #[arg(long = "log.level", default_value = "info", global = true)]
    log_level: String,
    /// Log format: logfmt or json (Thanos' keys: ts, caller, level, msg).
    #[arg(
        long = "log.format",
        value_enum,
        default_value_t = logging::LogFormat::Logfmt,
        global = true
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store gateway: serves the blocks of a bucket over the Store API.
    Store(Box<store::StoreArgs>),
    /// Querier: PromQL over all Store API endpoints, with the Prometheus HTTP API.
    Query(Box<query::QueryArgs>),
    /// Sidecar: ships Prometheus' blocks to the bucket, serves its recent data.
    Sidecar(Box<sidecar::SidecarArgs>),
    /// Query frontend: splits range queries and caches their results.
    #[command(name = "query-frontend")]
    QueryFrontend(Box<frontend::FrontendArgs>),
    /// Compactor: compacts, deduplicates and applies retention to a bucket's blocks.
    Compact(Box<compact::CompactArgs>),
    /// Inspection and repair tools.
    Tools {
        #[command(subcommand)]
        command: ToolsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ToolsCommand {
    /// Tools for TSDB block directories.
    Block {
        #[command(subcommand)]
        command: BlockCommand,
    },
    /// Tools for a bucket of blocks.
    Bucket(Box<bucket::BucketArgs>),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum BlockCommand {
    /// Series, chunks, samples, time range and label cardinality of a block (or of every
    /// block in a Prometheus data directory).
    Inspect {
        /// A block directory or a directory of blocks.
        dir: PathBuf,
        /// How many label names and metrics to list.
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Prints the samples of matching series, in `promtool tsdb dump`'s format.
    Dump {
        /// A block directory or a directory of blocks.
        dir: PathBuf,
        /// Series selector, e.g. 'up{job="api"}' (repeat to add matchers; default: all series).
        #[arg(long = "match")]
        selectors: Vec<String>,
        /// First timestamp to dump, in milliseconds.
        #[arg(long = "min-time", default_value_t = i64::MIN, allow_hyphen_values = true)]
        min_time: i64,
        /// Last timestamp to dump, in milliseconds.
        #[arg(long = "max-time", default_value_t = i64::MAX, allow_hyphen_values = true)]
        max_time: i64,
    },
}

fn run_block(command: BlockCommand) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match command {
        BlockCommand::Inspect { dir, top, output } => {
            let reports = strata_tools::inspect(&dir, top)?;
            match output {
                OutputFormat::Text => strata_tools::render_inspect_text(&reports, &mut out)?,
                OutputFormat::Json => {
                    serde_json::to_writer_pretty(&mut out, &reports)?;
                    writeln!(out)?;
                }
            }
        }
        BlockCommand::Dump {
            dir,
            selectors,
            min_time,
            max_time,
        } => {
            let mut matchers = Vec::new();
            for selector in &selectors {
                matchers.extend(strata_tools::parse_selector(selector)?);
            }
            let options = strata_tools::DumpOptions {
                matchers,
                min_time,
                max_time,
            };
            strata_tools::dump(&dir, &options, &mut out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The environment variable every long flag can also come from: `STRATA_` and the flag's
/// name in capitals with `.` and `-` as `_` (`--objstore.config` → `STRATA_OBJSTORE_CONFIG`).
fn env_name(long: &str) -> String {
    format!(
        "STRATA_{}",
        long.to_ascii_uppercase().replace(['.', '-'], "_")
    )
}

/// The command line with an environment variable behind every long flag (set here, once,
/// rather than on each flag).
fn command() -> clap::Command {
    fn with_env(cmd: clap::Command) -> clap::Command {
        let cmd = cmd.mut_args(|arg| match arg.get_long().map(env_name) {
            Some(name) if !arg.is_positional() => {
                // clap keeps `&'static str` names; the command line is built once.
                let name: &'static str = Box::leak(name.into_boxed_str());
                arg.env(name)
            }
            _ => arg,
        });
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        names
            .into_iter()
            .fold(cmd, |cmd, name| cmd.mut_subcommand(name, with_env))
    }
    with_env(Cli::command())
}

fn parse() -> Cli {
    let matches = command().get_matches();
    // `/api/v1/status/flags`: the subcommand's flags with their values (defaults included),
    // as Prometheus lists its own; secrets are not flags (they live in config files).
    if let Some((name, sub)) = matches.subcommand() {
        let definition = command();
        let mut flags = std::collections::BTreeMap::new();
        for arg in definition
            .find_subcommand(name)
            .map(|c| c.get_arguments().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let Some(long) = arg.get_long() else {
                continue;
            };
            let value = match sub.try_get_raw(arg.get_id().as_str()) {
                Ok(Some(values)) => values
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(","),
                _ => String::new(),
            };
            flags.insert(long.to_owned(), value);
        }
        let _ = FLAGS.set(flags);
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The flags of this process' subcommand, for `/api/v1/status/flags`.
pub(crate) static FLAGS: std::sync::OnceLock<std::collections::BTreeMap<String, String>> =
    std::sync::OnceLock::new();

fn main() -> ExitCode {
    let cli = parse();
    // The span exporter must be in the subscriber from the start (it is found by downcasting
    // through the layers), so the subcommand's tracing flags are read before logging starts.
    let tracing_args = match &cli.command {
        Command::Store(a) => Some((&a.tracing, "store")),
        Command::Query(a) => Some((&a.tracing, "query")),
        Command::Sidecar(a) => Some((&a.tracing, "sidecar")),
        Command::QueryFrontend(a) => Some((&a.tracing, "query-frontend")),
        Command::Compact(a) => Some((&a.tracing, "compact")),
        Command::Tools { .. } => None,
    };
    let tracing_config = tracing_args.map(|(args, component)| args.config(component));
    let (exporter, tracing_note) = match tracing_config {
        None | Some(Ok(None)) => (None, Ok(None)),
        Some(Err(e)) => (None, Err(e)),
        Some(Ok(Some(Err(reason)))) => (None, Ok(Some(Err(reason)))),
        Some(Ok(Some(Ok(config)))) => {
            let endpoint = config.endpoint.clone();
            match strata_runtime::trace::Exporter::start(config) {
                Ok(exporter) => (Some(exporter), Ok(Some(Ok(endpoint)))),
                Err(e) => (None, Ok(Some(Err(format!("exporter thread: {e}"))))),
            }
        }
    };
    let spans = exporter.as_ref().map(|e| {
        Box::new(e.layer::<logging::Base>())
            as Box<dyn tracing_subscriber::Layer<logging::Base> + Send + Sync>
    });
    logging::init(&cli.log_level, cli.log_format, spans);
    match tracing_note {
        Ok(None) => {}
        Ok(Some(Ok(endpoint))) => {
            tracing::info!(endpoint = %endpoint, "exporting traces with OTLP")
        }
        Ok(Some(Err(reason))) => {
            tracing::warn!(reason = %reason, "--tracing.config: tracing is off")
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "command failed");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Tools {
            command: ToolsCommand::Block { command },
        } => run_block(command),
        Command::Tools {
            command: ToolsCommand::Bucket(args),
        } => match bucket::run(*args) {
            Ok(true) => Ok(()),
            Ok(false) => Err(anyhow::anyhow!("problems found")),
            Err(e) => Err(e),
        },
        Command::Store(args) => store::run(*args),
        Command::Query(args) => query::run(*args),
        Command::Sidecar(args) => sidecar::run(*args),
        Command::QueryFrontend(args) => frontend::run(*args),
        Command::Compact(args) => match compact::run(*args) {
            Ok(true) => Ok(()),
            Ok(false) => Err(anyhow::anyhow!(
                "compaction pass failed (see the errors above)"
            )),
            Err(e) => Err(e),
        },
    };
    // Sends the spans still queued.
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "command failed");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_long_flag_has_an_environment_variable() {
        assert_eq!(env_name("objstore.config"), "STRATA_OBJSTORE_CONFIG");
        assert_eq!(
            env_name("grpc-server-tls-cert"),
            "STRATA_GRPC_SERVER_TLS_CERT"
        );
        let cmd = command();
        let store = cmd.find_subcommand("store").map(|s| {
            s.get_arguments()
                .find(|a| a.get_long() == Some("data-dir"))
                .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        });
        assert_eq!(store, Some(Some("STRATA_DATA_DIR".to_owned())));
    }
}
