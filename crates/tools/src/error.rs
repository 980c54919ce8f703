use std::path::PathBuf;

/// Errors of the tools.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    /// A block could not be read.
    #[error(transparent)]
    Block(#[from] strata_tsdb::Error),
    /// A directory could not be listed or output not written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Neither a block nor a directory of blocks.
    #[error("{0}: no block (no meta.json) found")]
    NoBlocks(PathBuf),
    /// The series selector does not parse.
    #[error("invalid series selector {selector:?}: {reason}")]
    Selector {
        /// As given.
        selector: String,
        /// Why.
        reason: String,
    },
    /// Output could not be written.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// JSON output failed.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}
