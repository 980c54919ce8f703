/// Query errors, each mapped to a Prometheus API error type by [`Error::error_type`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The query does not parse or has the wrong type; Prometheus' `bad_data`.
    #[error("{0}")]
    Parse(String),
    /// A runtime evaluation error; Prometheus' `execution`.
    #[error("{0}")]
    Execution(String),
    /// The query loaded more samples than allowed.
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The query ran past its deadline.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The storage failed.
    #[error("{0}")]
    Storage(String),
}

impl Error {
    /// The Prometheus HTTP API `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Parse(_) => "bad_data",
            Error::Execution(_) | Error::TooManySamples(_) => "execution",
            Error::Timeout(_) => "timeout",
            Error::Storage(_) => "internal",
        }
    }
}

pub(crate) fn exec(msg: impl Into<String>) -> Error {
    Error::Execution(msg.into())
}
