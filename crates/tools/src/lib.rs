//! `strata tools`: inspection of Prometheus TSDB blocks and of a bucket of blocks, as
//! library functions that the `strata` binary calls. Output is exact (plain integers, no rounding) and available as JSON.

mod block_dump;
mod block_inspect;
pub mod bucket;
pub mod bucket_web;
mod error;
mod format;
mod selector;

pub use block_dump::{DumpOptions, dump};
pub use block_inspect::{
    BlockReport, LabelCardinality, MetricSeries, inspect, render_inspect_text,
};
pub use error::ToolsError;
pub use format::{format_go_float, format_rfc3339_millis};
pub use selector::parse_selector;

use std::path::{Path, PathBuf};

/// Block directories named by `path`: the block itself if it holds a meta.json, otherwise
/// every sub-directory that does (a Prometheus data directory), sorted by name.
pub fn block_dirs(path: &Path) -> Result<Vec<PathBuf>, ToolsError> {
    if path.join("meta.json").is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path).map_err(|source| ToolsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ToolsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let candidate = entry.path();
        if candidate.join("meta.json").is_file() {
            dirs.push(candidate);
        }
    }
    if dirs.is_empty() {
        return Err(ToolsError::NoBlocks(path.to_owned()));
    }
    dirs.sort();
    Ok(dirs)
}
