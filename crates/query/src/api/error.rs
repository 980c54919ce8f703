//! API errors: a class (HTTP status and Prometheus `errorType`, from
//! [`strata_types::ErrorClass`]) and Prometheus' message.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_types::ErrorClass;

use crate::json::write_str;

/// An API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Its class.
    pub class: ErrorClass,
    /// Prometheus' message.
    pub message: String,
}

impl ApiError {
    /// An error of `class`.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        ApiError {
            class,
            message: message.into(),
        }
    }

    /// `bad_data` with a message as it is.
    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError::new(ErrorClass::BadData, message)
    }

    /// Prometheus' `invalidParamError`: `invalid parameter "name": message`.
    pub fn param(name: &str, message: impl std::fmt::Display) -> Self {
        ApiError::bad_data(format!("invalid parameter \"{name}\": {message}"))
    }
}

impl From<strata_promql::Error> for ApiError {
    fn from(e: strata_promql::Error) -> Self {
        ApiError::new(e.class(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = String::from("{\"status\":\"error\",\"errorType\":\"");
        body.push_str(self.class.error_type());
        body.push_str("\",\"error\":");
        write_str(&mut body, &self.message);
        body.push('}');
        let status = StatusCode::from_u16(self.class.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}
