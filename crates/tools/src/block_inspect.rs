use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use strata_tsdb::BlockReader;

use crate::{ToolsError, block_dirs, format_rfc3339_millis};

/// Series count of one label name and its number of distinct values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelCardinality {
    /// Label name.
    pub name: String,
    /// Distinct values.
    pub values: u64,
    /// Series that have the label.
    pub series: u64,
}

/// Series count of one metric name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricSeries {
    /// Metric name.
    pub name: String,
    /// Series with that name.
    pub series: u64,
}

/// What `strata tools block inspect` reports for one block. Counts of series, chunks and
/// samples are computed from the index and chunk headers, not copied from meta.json.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockReport {
    /// Block ULID.
    pub ulid: String,
    /// Directory.
    pub path: String,
    /// minTime (ms, inclusive).
    pub min_time: i64,
    /// maxTime (ms, exclusive).
    pub max_time: i64,
    /// maxTime - minTime.
    pub duration_ms: i64,
    /// Series in the index.
    pub series: u64,
    /// Chunks referenced by the index.
    pub chunks: u64,
    /// Samples, summed from the chunk headers.
    pub samples: u64,
    /// Tombstone entries.
    pub tombstones: u64,
    /// Compaction level.
    pub level: u32,
    /// Downsampling resolution in ms (0 for raw or non-Thanos blocks).
    pub resolution_ms: i64,
    /// Thanos external labels, if the block has a thanos section.
    pub external_labels: Option<BTreeMap<String, String>>,
    /// Size of the index in bytes.
    pub index_bytes: u64,
    /// Size of the chunk segments in bytes.
    pub chunk_bytes: u64,
    /// Number of chunk segment files.
    pub segment_files: u64,
    /// Symbols in the symbol table.
    pub symbols: u64,
    /// Distinct label names.
    pub label_names: u64,
    /// Label names with the most distinct values.
    pub top_labels_by_values: Vec<LabelCardinality>,
    /// Metric names with the most series.
    pub top_metrics_by_series: Vec<MetricSeries>,
    /// Whether meta.json's stats agree with the counts above.
    pub meta_stats_match: bool,
}

/// Inspects the block at `path`, or every block of a data directory, listing the `top`
/// largest label names and metrics.
pub fn inspect(path: &Path, top: usize) -> Result<Vec<BlockReport>, ToolsError> {
    let mut reports = Vec::new();
    for dir in block_dirs(path)? {
        reports.push(inspect_block(&dir, top)?);
    }
    Ok(reports)
}

fn inspect_block(dir: &Path, top: usize) -> Result<BlockReport, ToolsError> {
    let block = BlockReader::open(dir)?;
    let index = block.index();
    let refs = index.all_postings()?;
    let mut chunks = 0u64;
    let mut samples = 0u64;
    for &series_ref in &refs {
        let entry = block.series(series_ref)?;
        chunks += entry.chunks.len() as u64;
        for meta in &entry.chunks {
            let raw = block.chunks().chunk(meta.chunk_ref)?;
            samples +=
                u64::from(strata_chunkenc::num_samples(raw.encoding, &raw.data).unwrap_or(0));
        }
    }
    let mut labels = Vec::new();
    for name in index.label_names() {
        let values = index.label_values(&name)?;
        let mut series = 0u64;
        let mut per_value = Vec::new();
        for value in &values {
            let count = index.postings(&name, value)?.len() as u64;
            series += count;
            if name == "__name__" {
                per_value.push(MetricSeries {
                    name: value.clone(),
                    series: count,
                });
            }
        }
        if name == "__name__" {
            per_value.sort_by(|a, b| b.series.cmp(&a.series).then_with(|| a.name.cmp(&b.name)));
            per_value.truncate(top);
            labels.push((
                LabelCardinality {
                    name,
                    values: values.len() as u64,
                    series,
                },
                Some(per_value),
            ));
        } else {
            labels.push((
                LabelCardinality {
                    name,
                    values: values.len() as u64,
                    series,
                },
                None,
            ));
        }
    }
    let label_names = labels.len() as u64;
    let top_metrics_by_series = labels
        .iter()
        .find_map(|(_, m)| m.clone())
        .unwrap_or_default();
    let mut top_labels_by_values: Vec<LabelCardinality> =
        labels.into_iter().map(|(l, _)| l).collect();
    top_labels_by_values.sort_by(|a, b| b.values.cmp(&a.values).then_with(|| a.name.cmp(&b.name)));
    top_labels_by_values.truncate(top);

    let meta = block.meta();
    let stats = &meta.stats;
    let series = refs.len() as u64;
    Ok(BlockReport {
        ulid: meta.ulid.clone(),
        path: dir.display().to_string(),
        min_time: meta.min_time,
        max_time: meta.max_time,
        duration_ms: meta.max_time - meta.min_time,
        series,
        chunks,
        samples,
        tombstones: block.tombstones().len() as u64,
        level: meta.compaction.level,
        resolution_ms: meta.thanos.as_ref().map_or(0, |t| t.downsample.resolution),
        external_labels: meta.thanos.as_ref().map(|t| t.labels.clone()),
        index_bytes: index.size_bytes(),
        chunk_bytes: block.chunks().size_bytes(),
        segment_files: block.chunks().segment_count() as u64,
        symbols: u64::from(index.symbols().len()),
        label_names,
        top_labels_by_values,
        top_metrics_by_series,
        meta_stats_match: stats.num_series == series
            && stats.num_chunks == chunks
            && stats.num_samples == samples,
    })
}

/// Writes reports as aligned text.
pub fn render_inspect_text(reports: &[BlockReport], out: &mut dyn Write) -> Result<(), ToolsError> {
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "Block {}", r.ulid)?;
        writeln!(out, "  path            {}", r.path)?;
        writeln!(
            out,
            "  min time        {} ({})",
            r.min_time,
            format_rfc3339_millis(r.min_time)
        )?;
        writeln!(
            out,
            "  max time        {} ({})",
            r.max_time,
            format_rfc3339_millis(r.max_time)
        )?;
        writeln!(out, "  duration ms     {}", r.duration_ms)?;
        writeln!(out, "  series          {}", r.series)?;
        writeln!(out, "  chunks          {}", r.chunks)?;
        writeln!(out, "  samples         {}", r.samples)?;
        writeln!(out, "  tombstones      {}", r.tombstones)?;
        writeln!(out, "  level           {}", r.level)?;
        writeln!(out, "  resolution ms   {}", r.resolution_ms)?;
        if let Some(labels) = &r.external_labels {
            let rendered: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            writeln!(out, "  external labels {{{}}}", rendered.join(", "))?;
        }
        writeln!(out, "  index bytes     {}", r.index_bytes)?;
        writeln!(
            out,
            "  chunk bytes     {} in {} segment files",
            r.chunk_bytes, r.segment_files
        )?;
        writeln!(out, "  symbols         {}", r.symbols)?;
        writeln!(out, "  label names     {}", r.label_names)?;
        writeln!(
            out,
            "  meta.json stats {}",
            if r.meta_stats_match {
                "match"
            } else {
                "DIFFER from the index and chunks"
            }
        )?;
        writeln!(out, "  label names with most values:")?;
        writeln!(out, "    {:<32} {:>10} {:>10}", "NAME", "VALUES", "SERIES")?;
        for l in &r.top_labels_by_values {
            writeln!(out, "    {:<32} {:>10} {:>10}", l.name, l.values, l.series)?;
        }
        writeln!(out, "  metrics with most series:")?;
        writeln!(out, "    {:<48} {:>10}", "METRIC", "SERIES")?;
        for m in &r.top_metrics_by_series {
            writeln!(out, "    {:<48} {:>10}", m.name, m.series)?;
        }
    }
    Ok(())
}
