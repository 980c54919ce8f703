use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use strata_tsdb::BlockReader;
use strata_types::{Labels, Matcher, Sample};

use crate::{ToolsError, block_dirs, format_go_float};

/// What to dump.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Series selector matchers (all series when empty).
    pub matchers: Vec<Matcher>,
    /// First timestamp to include (ms).
    pub min_time: i64,
    /// Last timestamp to include (ms).
    pub max_time: i64,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions {
            matchers: Vec::new(),
            min_time: i64::MIN,
            max_time: i64::MAX,
        }
    }
}

/// Writes every sample of the matching series as `promtool tsdb dump` does (`<labels>
/// <value> <timestamp ms>`, series in label order, samples merged across blocks by time).
/// Returns the number of samples written.
pub fn dump(path: &Path, options: &DumpOptions, out: &mut dyn Write) -> Result<u64, ToolsError> {
    let mut series: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    let matchers: Vec<Matcher> = if options.matchers.is_empty() {
        vec![
            Matcher::new(strata_types::MatchType::Regex, "__name__", ".*").map_err(|e| {
                ToolsError::Selector {
                    selector: "{__name__=~\".*\"}".to_owned(),
                    reason: e.to_string(),
                }
            })?,
        ]
    } else {
        options.matchers.clone()
    };
    for dir in block_dirs(path)? {
        let block = BlockReader::open(&dir)?;
        let meta = block.meta();
        if meta.max_time <= options.min_time || meta.min_time > options.max_time {
            continue;
        }
        for series_ref in block.select(&matchers)? {
            let entry = block.series(series_ref)?;
            let samples = block.samples(series_ref, &entry, options.min_time, options.max_time)?;
            series.entry(entry.labels).or_default().extend(samples);
        }
    }
    let mut written = 0u64;
    for (labels, mut samples) in series {
        samples.sort_by_key(|s| s.t);
        samples.dedup_by_key(|s| s.t);
        for sample in samples {
            writeln!(out, "{labels} {} {}", format_go_float(sample.v), sample.t)?;
            written += 1;
        }
    }
    Ok(written)
}
