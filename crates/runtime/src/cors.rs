//! CORS on the Prometheus HTTP API, as Prometheus' `httputil.SetCORS` with Thanos' origin
//! `.*` (`--web.disable-cors` turns it off): `Vary: Origin` on every answer; to a request
//! with an `Origin`, the allowed headers and methods, `Date` exposed, and that origin allowed
//! (echoed, as Prometheus 3.5 answers with its default origin pattern).
//! Preflight `OPTIONS` requests are answered with success.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The middleware.
pub async fn cors(req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut response = if req.method() == Method::OPTIONS {
        (
            [(header::CONTENT_TYPE, "application/json")],
            "{\"status\":\"success\",\"data\":null}",
        )
            .into_response()
    } else {
        next.run(req).await
    };
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        for (name, value) in [
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Accept, Authorization, Content-Type, Origin",
            ),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"),
            (header::ACCESS_CONTROL_EXPOSE_HEADERS, "Date"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}
