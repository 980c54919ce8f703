//! Arbitrary requests to the querier's HTTP API (no stores behind it): the first byte picks
//! the endpoint and method, the rest is the query string (GET) or the form body (POST), so
//! every parameter parser (times, durations, steps, limits, `match[]`, PromQL with any
//! nesting) and the evaluation of what parses are reached. No request may panic; every
//! answer is Prometheus' JSON envelope with a status Prometheus uses.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use strata_promql::{Engine, EngineOptions};
use strata_query::api::{ApiOptions, ApiState, router};
use strata_query::endpoints::EndpointSet;
use tower::ServiceExt;

const PATHS: [&str; 9] = [
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/label/job/values",
    "/api/v1/label/U__a_2e_b/values",
    "/api/v1/query_exemplars",
    "/api/v1/metadata",
    "/api/v1/status/buildinfo",
];

struct Fixture {
    runtime: tokio::runtime::Runtime,
    state: Arc<ApiState>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let endpoints = runtime.block_on(async { EndpointSet::new(&[]).expect("no endpoints") });
        // Small budgets keep each run short; the limits themselves are what is exercised.
        let engine = Engine::new(EngineOptions {
            max_samples: 100_000,
            timeout: Duration::from_secs(2),
            parallelism: 1,
            ..EngineOptions::default()
        });
        let state = Arc::new(ApiState {
            endpoints,
            engine,
            options: ApiOptions::default(),
            gate: strata_runtime::gate::Gate::new(4, "gate", None),
            range_timespan: strata_query::api::range_timespan_histogram(),
            flags: std::collections::BTreeMap::new(),
            started: std::time::SystemTime::now(),
        });
        Fixture { runtime, state }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let path = PATHS[usize::from(selector) % PATHS.len()];
    let post = selector & 0x80 != 0;
    let request = if post {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(rest.to_vec()))
    } else {
        // A query string is whatever survives as a URI; other inputs exercise POST.
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        Request::builder()
            .method(Method::GET)
            .uri(format!("{path}?{text}"))
            .body(Body::empty())
    };
    let Ok(request) = request else {
        return;
    };
    let app = router(Arc::clone(&fixture.state));
    let (status, body) = fixture.runtime.block_on(async move {
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        (status, body)
    });
    assert!(
        [
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::METHOD_NOT_ALLOWED,
        ]
        .contains(&status),
        "{path}: status {status}: {}",
        String::from_utf8_lossy(&body)
    );
    if status != StatusCode::METHOD_NOT_ALLOWED {
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("{path}: not JSON ({e}): {}", String::from_utf8_lossy(&body))
        });
        let expected = if status == StatusCode::OK { "success" } else { "error" };
        assert_eq!(json["status"], expected, "{path}: {json}");
    }
});
