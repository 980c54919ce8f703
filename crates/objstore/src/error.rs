//! Errors of bucket operations, naming the operation, the bucket and the object.

/// A bucket operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not exist.
    #[error("{operation} {bucket}/{path}: object not found")]
    NotFound {
        /// Operation name (`get`, `get_range`, …).
        operation: &'static str,
        /// Bucket name.
        bucket: String,
        /// Object path (without the bucket prefix).
        path: String,
    },
    /// The operation did not finish within the configured timeout.
    #[error("{operation} {bucket}/{path}: timed out after {timeout_ms} ms")]
    Timeout {
        /// Operation name.
        operation: &'static str,
        /// Bucket name.
        bucket: String,
        /// Object path.
        path: String,
        /// The timeout.
        timeout_ms: u128,
    },
    /// Any other failure of the object store (after its retries).
    #[error("{operation} {bucket}/{path}: {source}")]
    Store {
        /// Operation name.
        operation: &'static str,
        /// Bucket name.
        bucket: String,
        /// Object path.
        path: String,
        /// The underlying error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// Reading a local file to upload failed.
    #[error("upload {bucket}/{path}: reading {local}: {source}")]
    LocalFile {
        /// Bucket name.
        bucket: String,
        /// Object path.
        path: String,
        /// The local file.
        local: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a downloaded object to a local file failed.
    #[error("download {bucket}/{path}: writing {local}: {source}")]
    LocalWrite {
        /// Bucket name.
        bucket: String,
        /// Object path.
        path: String,
        /// The local file.
        local: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The bucket configuration is invalid.
    #[error("bucket config: {0}")]
    Config(String),
}

impl Error {
    /// Whether the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// Result of bucket operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
