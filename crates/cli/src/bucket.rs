//! `strata tools bucket …`: flags as Thanos' `tools bucket`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use ulid::Ulid;

use crate::OutputFormat;
use crate::flags::parse_duration;

#[derive(Debug, Args)]
pub(crate) struct BucketArgs {
    /// Path to the bucket config YAML.
    #[arg(long = "objstore.config-file", global = true)]
    objstore_config_file: Option<PathBuf>,
    /// The bucket config YAML itself (instead of a file).
    #[arg(long = "objstore.config", allow_hyphen_values = true, global = true)]
    objstore_config: Option<String>,
    #[command(subcommand)]
    command: BucketCommand,
}

#[derive(Debug, Subcommand)]
enum BucketCommand {
    /// Lists the blocks: ULID, time range, resolution, level and labels.
    Ls {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// A table of the blocks with series, samples, chunks, sizes, marks and labels.
    Inspect {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Finds overlapping blocks, index problems and out-of-order chunks; exits 1 when it
    /// finds any.
    Verify {
        /// Only these blocks' indexes (overlaps are always checked over the whole bucket).
        #[arg(long = "id")]
        ids: Vec<Ulid>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Adds a marker to blocks (or removes it with --remove).
    Mark {
        /// Block IDs (repeatable).
        #[arg(long = "id", required = true)]
        ids: Vec<Ulid>,
        /// deletion-mark.json, no-compact-mark.json or no-downsample-mark.json.
        #[arg(long = "marker")]
        marker: strata_tools::bucket::Marker,
        /// Why, recorded in the marker.
        #[arg(long = "details", default_value = "")]
        details: String,
        /// Remove the marker instead.
        #[arg(long = "remove")]
        remove: bool,
    },
    /// Deletes blocks marked for deletion longer ago than --delete-delay, and partial
    /// uploads older than it.
    Cleanup {
        /// How long marked blocks stay before deletion.
        #[arg(long = "delete-delay", default_value = "48h", value_parser = parse_duration)]
        delete_delay: Duration,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Serves a page with the blocks on a timeline per stream (and /api/v1/blocks).
    Web {
        /// HTTP listen address.
        #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
        http_address: String,
    },
}

/// Runs a bucket tool; returns false when `verify` found problems.
pub(crate) fn run(args: BucketArgs) -> anyhow::Result<bool> {
    let yaml = crate::flags::path_or_content(
        args.objstore_config,
        args.objstore_config_file.as_deref(),
        "objstore.config",
    )?
    .context("one of --objstore.config-file or --objstore.config is required")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let bucket = strata_tools::bucket::open_bucket(&yaml)?;
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut ok = true;
        match args.command {
            BucketCommand::Ls { output } | BucketCommand::Inspect { output } => {
                let wide = matches!(args.command, BucketCommand::Inspect { .. });
                let (rows, partial) = strata_tools::bucket::list_blocks(&bucket).await?;
                match output {
                    OutputFormat::Json => {
                        serde_json::to_writer_pretty(
                            &mut out,
                            &serde_json::json!({"blocks": rows, "partial": partial}),
                        )?;
                        writeln!(out)?;
                    }
                    OutputFormat::Text => {
                        strata_tools::bucket::render_table(&rows, wide, &mut out)?;
                        if !partial.is_empty() {
                            writeln!(
                                out,
                                "\npartial uploads (no meta.json): {}",
                                partial.join(" ")
                            )?;
                        }
                    }
                }
            }
            BucketCommand::Verify { ids, output } => {
                let (issues, checked) = strata_tools::bucket::verify(&bucket, &ids).await?;
                ok = issues.is_empty();
                match output {
                    OutputFormat::Json => {
                        serde_json::to_writer_pretty(
                            &mut out,
                            &serde_json::json!({"checked": checked, "issues": issues}),
                        )?;
                        writeln!(out)?;
                    }
                    OutputFormat::Text => {
                        for i in &issues {
                            writeln!(out, "{}\t{}\t{}", i.kind, i.blocks.join(","), i.message)?;
                        }
                        writeln!(out, "{checked} blocks checked, {} issues", issues.len())?;
                    }
                }
            }
            BucketCommand::Mark {
                ids,
                marker,
                details,
                remove,
            } => {
                let changed =
                    strata_tools::bucket::mark(&bucket, &ids, marker, &details, remove).await?;
                for id in &changed {
                    writeln!(out, "{id}")?;
                }
                writeln!(out, "{} of {} blocks changed", changed.len(), ids.len())?;
            }
            BucketCommand::Cleanup {
                delete_delay,
                output,
            } => {
                let summary = strata_tools::bucket::cleanup(&bucket, delete_delay).await?;
                ok = summary.failed.is_empty();
                match output {
                    OutputFormat::Json => {
                        serde_json::to_writer_pretty(&mut out, &summary)?;
                        writeln!(out)?;
                    }
                    OutputFormat::Text => {
                        writeln!(
                            out,
                            "deleted {} marked blocks and {} partial uploads; {} failures",
                            summary.deleted_marked.len(),
                            summary.deleted_partial.len(),
                            summary.failed.len()
                        )?;
                        for f in &summary.failed {
                            writeln!(out, "failed: {f}")?;
                        }
                    }
                }
            }
            BucketCommand::Web { http_address } => {
                out.flush()?;
                let (trigger, shutdown) = strata_runtime::Shutdown::new();
                tokio::spawn(trigger.on_signals());
                strata_tools::bucket_web::serve(&yaml, &http_address, shutdown).await?;
            }
        }
        out.flush()?;
        Ok(ok)
    })
}
