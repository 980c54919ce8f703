//! The classes of errors a request can end with, and what each is on every wire: the HTTP
//! status and Prometheus `errorType` of the HTTP API (Prometheus 3.5's `web/api/v1`
//! mapping) and the gRPC status code of the Store API. Every component maps its errors to
//! a class; only this file says what a class becomes.

/// What kind of failure a request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request is malformed (a parameter, a query that does not parse).
    BadData,
    /// Evaluation failed, or would exceed a limit (samples, series, bytes).
    Execution,
    /// A limit of the request's size was exceeded where Prometheus has no class for it
    /// (Store API series/chunk/sample limits): `execution` over HTTP, `ResourceExhausted`
    /// over gRPC.
    LimitExceeded,
    /// The deadline passed.
    Timeout,
    /// The client went away, or the query was canceled.
    Canceled,
    /// A failure of ours or of a storage we read.
    Internal,
    /// The component cannot serve now (shutting down, not ready, overloaded).
    Unavailable,
    /// Nothing at this path or with this name.
    NotFound,
}

impl ErrorClass {
    /// Prometheus' `errorType`.
    pub fn error_type(self) -> &'static str {
        match self {
            ErrorClass::BadData => "bad_data",
            ErrorClass::Execution | ErrorClass::LimitExceeded => "execution",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Canceled => "canceled",
            ErrorClass::Internal => "internal",
            ErrorClass::Unavailable => "unavailable",
            ErrorClass::NotFound => "not_found",
        }
    }

    /// The HTTP status Prometheus answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorClass::BadData => 400,
            ErrorClass::Execution | ErrorClass::LimitExceeded => 422,
            ErrorClass::Timeout | ErrorClass::Unavailable => 503,
            ErrorClass::Canceled => 499,
            ErrorClass::Internal => 500,
            ErrorClass::NotFound => 404,
        }
    }

    /// The gRPC status code (numbers as in `google.rpc.Code`).
    pub fn grpc_code(self) -> i32 {
        match self {
            ErrorClass::BadData => 3,       // InvalidArgument
            ErrorClass::Execution => 13,    // Internal
            ErrorClass::LimitExceeded => 8, // ResourceExhausted
            ErrorClass::Timeout => 4,       // DeadlineExceeded
            ErrorClass::Canceled => 1,      // Cancelled
            ErrorClass::Internal => 13,     // Internal
            ErrorClass::Unavailable => 14,  // Unavailable
            ErrorClass::NotFound => 5,      // NotFound
        }
    }

    /// The class of a gRPC status code an endpoint answered with.
    pub fn from_grpc_code(code: i32) -> ErrorClass {
        match code {
            1 => ErrorClass::Canceled,
            3 => ErrorClass::BadData,
            4 => ErrorClass::Timeout,
            5 => ErrorClass::NotFound,
            8 => ErrorClass::LimitExceeded,
            14 => ErrorClass::Unavailable,
            _ => ErrorClass::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_round_trips_through_grpc_where_it_has_its_own_code() {
        for class in [
            ErrorClass::BadData,
            ErrorClass::LimitExceeded,
            ErrorClass::Timeout,
            ErrorClass::Canceled,
            ErrorClass::Internal,
            ErrorClass::Unavailable,
            ErrorClass::NotFound,
        ] {
            assert_eq!(ErrorClass::from_grpc_code(class.grpc_code()), class);
        }
        assert_eq!(ErrorClass::Execution.http_status(), 422);
        assert_eq!(ErrorClass::Canceled.error_type(), "canceled");
    }
}
