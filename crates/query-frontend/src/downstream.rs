//! The downstream (the querier, or Prometheus): requests with a connect and an overall
//! timeout, answers read with a size cap, retries only where a retry can help (transport
//! errors and server errors that are not the query's own timeout; never 4xx or 422), and
//! every request forwarding the headers that identify the caller.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// Headers a split or proxied request carries on to the downstream (what identifies the
/// caller: credentials and tenant), besides those configured.
pub(crate) const IDENTITY_HEADERS: [&str; 3] = ["authorization", "x-scope-orgid", "thanos-tenant"];

/// A downstream answer that is not a usable success: returned to the client as it is.
pub(crate) struct Passthrough(pub(crate) Response);

/// The downstream client.
#[derive(Debug, Clone)]
pub(crate) struct Downstream {
    pub(crate) url: String,
    http: reqwest::Client,
    max_retries: usize,
    max_body: usize,
    forward_headers: Vec<String>,
}

/// A JSON error answer in Prometheus' shape.
pub(crate) fn error_response(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "status": "error",
        "errorType": error_type,
        "error": message,
    })
    .to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl Downstream {
    pub(crate) fn new(
        url: &str,
        timeout: Duration,
        max_retries: usize,
        max_body: usize,
        forward_headers: &[String],
    ) -> Result<Downstream, String> {
        let mut builder = reqwest::Client::builder()
            .pool_max_idle_per_host(100)
            .connect_timeout(Duration::from_secs(10));
        if !timeout.is_zero() {
            builder = builder.timeout(timeout);
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(Downstream {
            url: url.trim_end_matches('/').to_owned(),
            http,
            max_retries,
            max_body,
            forward_headers: forward_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        })
    }

    /// Whether `name` is forwarded on split requests (and so part of cache keys).
    pub(crate) fn forwards(&self, name: &str) -> bool {
        IDENTITY_HEADERS.contains(&name) || self.forward_headers.iter().any(|h| h == name)
    }

    /// The forwarded headers of a request, sorted: what makes its answers its own.
    pub(crate) fn identity(&self, headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = headers
            .iter()
            .filter(|(name, _)| self.forwards(name.as_str()))
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        out.sort();
        out
    }

    /// Reads an answer's body, refusing more than the cap.
    async fn read_body(&self, mut resp: reqwest::Response) -> Result<Bytes, Passthrough> {
        if resp
            .content_length()
            .is_some_and(|n| n > self.max_body as u64)
        {
            return Err(too_large(self.max_body));
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.max_body {
                        return Err(too_large(self.max_body));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(Bytes::from(body)),
                Err(e) => {
                    return Err(Passthrough(error_response(
                        StatusCode::BAD_GATEWAY,
                        "unavailable",
                        &format!("downstream: {e}"),
                    )));
                }
            }
        }
    }

    /// `GET path_and_query` with the caller's forwarded headers, retried as the policy
    /// allows. A success gives its body; anything else comes back as the answer to pass on.
    pub(crate) async fn get(
        &self,
        path_and_query: &str,
        headers: &HeaderMap,
        retries: &Retries,
    ) -> Result<Bytes, Passthrough> {
        let url = format!("{}{path_and_query}", self.url);
        let mut attempt = 0usize;
        // Cortex' `cortex_query_frontend_retries`: the retries each request took, observed
        // however it ends.
        let mut tried = RetriesOf {
            histogram: &retries.per_request,
            retries: 0,
        };
        loop {
            attempt += 1;
            let mut builder = self.http.get(&url);
            for (name, value) in headers {
                if self.forwards(name.as_str()) && !is_trace_header(name.as_str()) {
                    builder = builder.header(name.as_str(), value.as_bytes());
                }
            }
            builder = with_trace_context(builder);
            let can_retry = attempt <= self.max_retries;
            match builder.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
                    let body = self.read_body(resp).await?;
                    if status.is_success() {
                        return Ok(body);
                    }
                    if can_retry && retryable(status.as_u16(), &body) {
                        tracing::debug!(%status, attempt, "downstream answered an error; retrying");
                    } else {
                        let mut response = Response::new(Body::from(body));
                        *response.status_mut() = StatusCode::from_u16(status.as_u16())
                            .unwrap_or(StatusCode::BAD_GATEWAY);
                        if let Some(ct) = content_type
                            && let Ok(v) = HeaderValue::from_bytes(ct.as_bytes())
                        {
                            response.headers_mut().insert(header::CONTENT_TYPE, v);
                        }
                        return Err(Passthrough(response));
                    }
                }
                Err(e) if can_retry && !e.is_timeout() => {
                    tracing::debug!(error = %e, attempt, "downstream request failed; retrying");
                }
                Err(e) => {
                    let (status, kind) = if e.is_timeout() {
                        (StatusCode::SERVICE_UNAVAILABLE, "timeout")
                    } else {
                        (StatusCode::BAD_GATEWAY, "unavailable")
                    };
                    return Err(Passthrough(error_response(
                        status,
                        kind,
                        &format!("downstream: {e}"),
                    )));
                }
            }
            retries.total.inc();
            tried.retries += 1;
            tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
        }
    }

    /// Forwards a request as it is (hop-by-hop headers aside) and its answer back.
    pub(crate) async fn forward(
        &self,
        method: axum::http::Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Vec<u8>,
        as_form: bool,
    ) -> Response {
        let url = format!("{}{path_and_query}", self.url);
        let Ok(method) = reqwest::Method::from_bytes(method.as_str().as_bytes()) else {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        };
        let method = if as_form {
            reqwest::Method::POST
        } else {
            method
        };
        let mut builder = self.http.request(method, &url);
        for (name, value) in headers {
            let n = name.as_str();
            if HOP_BY_HOP.contains(&n)
                || n == "accept-encoding"
                || n == "content-length"
                || is_trace_header(n)
            {
                continue;
            }
            if as_form && n == "content-type" {
                continue;
            }
            builder = builder.header(n, value.as_bytes());
        }
        if as_form {
            builder = builder.header("content-type", "application/x-www-form-urlencoded");
        }
        builder = with_trace_context(builder);
        let resp = match builder.body(body).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    &format!("downstream: {e}"),
                );
            }
            Err(e) => {
                return error_response(
                    StatusCode::BAD_GATEWAY,
                    "unavailable",
                    &format!("downstream: {e}"),
                );
            }
        };
        let status =
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut out_headers = HeaderMap::new();
        for (name, value) in resp.headers() {
            let n = name.as_str();
            if HOP_BY_HOP.contains(&n) || n == "content-length" || n == "content-encoding" {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                out_headers.append(n, v);
            }
        }
        let bytes = match self.read_body(resp).await {
            Ok(b) => b,
            Err(Passthrough(r)) => return r,
        };
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() = status;
        *response.headers_mut() = out_headers;
        response
    }
}

/// Whether an error answer is worth asking again: a server error (500, 502, 503, 504:
/// unreachable, overloaded, a storage failure), but not when the query itself timed out or
/// was refused.
fn retryable(status: u16, body: &[u8]) -> bool {
    if !matches!(status, 500 | 502..=504) {
        return false;
    }
    let error_type = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errorType")
                .and_then(|t| t.as_str())
                .map(str::to_owned)
        });
    !matches!(
        error_type.as_deref(),
        Some("timeout" | "canceled" | "execution" | "bad_data")
    )
}

fn too_large(max: usize) -> Passthrough {
    Passthrough(error_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        "execution",
        &format!("the downstream answer is larger than {max} bytes; narrow the query"),
    ))
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// The retry metrics: Strata's total, and Cortex' per-request histogram.
#[derive(Debug, Clone)]
pub(crate) struct Retries {
    pub(crate) total: prometheus_client::metrics::counter::Counter,
    pub(crate) per_request: prometheus_client::metrics::histogram::Histogram,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            total: Default::default(),
            per_request: prometheus_client::metrics::histogram::Histogram::new([
                0.0, 1.0, 2.0, 3.0, 4.0, 5.0,
            ]),
        }
    }
}

struct RetriesOf<'a> {
    histogram: &'a prometheus_client::metrics::histogram::Histogram,
    retries: u32,
}

impl Drop for RetriesOf<'_> {
    fn drop(&mut self) {
        self.histogram.observe(f64::from(self.retries));
    }
}

/// The caller's trace context is not passed on as it is: the frontend's own span (a child of
/// it) is what the querier continues.
fn is_trace_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("traceparent") || name.eq_ignore_ascii_case("tracestate")
}

/// `builder` with the current span's `traceparent` (when a trace is recorded).
fn with_trace_context(mut builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let mut trace = HeaderMap::new();
    strata_runtime::trace::inject_current(&mut trace);
    for (name, value) in &trace {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_where_they_can_help() {
        assert!(retryable(502, b""));
        assert!(retryable(503, b"{\"errorType\":\"unavailable\"}"));
        assert!(!retryable(503, b"{\"errorType\":\"timeout\"}"));
        assert!(!retryable(422, b"{\"errorType\":\"execution\"}"));
        assert!(!retryable(400, b""));
        assert!(retryable(500, b"{\"errorType\":\"internal\"}"));
    }
}
