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
    /// The query was canceled (its client went away).
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
    /// The storage failed.
    #[error("{0}")]
    Storage(String),
}

impl Error {
    /// The class of the error (HTTP status, `errorType`, gRPC code).
    pub fn class(&self) -> strata_types::ErrorClass {
        use strata_types::ErrorClass;
        match self {
            Error::Parse(_) => ErrorClass::BadData,
            Error::Execution(_) | Error::TooManySamples(_) => ErrorClass::Execution,
            Error::Timeout(_) => ErrorClass::Timeout,
            Error::Canceled(_) => ErrorClass::Canceled,
            Error::Storage(_) => ErrorClass::Internal,
        }
    }

    /// The Prometheus HTTP API `errorType`.
    pub fn error_type(&self) -> &'static str {
        self.class().error_type()
    }
}

pub(crate) fn exec(msg: impl Into<String>) -> Error {
    Error::Execution(msg.into())
}
