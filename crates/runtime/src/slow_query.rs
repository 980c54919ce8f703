//! Thanos' slow query log (`--query-frontend.log-queries-longer-than`, and the querier's
//! `--query.log-queries-longer-than`): a request that takes at least the threshold is logged
//! as "slow query detected" with its method, host, path, time taken, Grafana's dashboard and
//! panel ids, and the query's parameters as `param_<name>`.

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// Runs `req` and logs it when it took `threshold` or longer.
pub async fn observe(threshold: Duration, req: Request, next: Next) -> Response {
    // Read before the request moves on (and before any await: a borrowed request is not
    // Send).
    let (method, path, dashboard, panel, host, params) = {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        let params: Vec<String> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .map(|(k, v)| format!("param_{k}={:?}", v.into_owned()))
                .collect();
        (
            req.method().to_string(),
            req.uri().path().to_owned(),
            header("X-Dashboard-Uid"),
            header("X-Panel-Id"),
            header("host"),
            params,
        )
    };
    let started = Instant::now();
    let response = next.run(req).await;
    let taken = started.elapsed();
    if taken >= threshold {
        tracing::info!(
            method = %method,
            host = %host,
            path = %path,
            time_taken_ms = taken.as_millis() as u64,
            grafana_dashboard_uid = %dashboard,
            grafana_panel_id = %panel,
            params = %params.join(" "),
            "slow query detected"
        );
    }
    response
}
