//! Strata's web UI on the querier's HTTP address (and, proxied, the query frontend's): the
//! query page (expression with autocompletion of metric and label names, instant table,
//! range graph, time picker, deduplication, partial response and resolution choices) and
//! the stores page. One HTML page and its script and style sheet, built into the binary;
//! the script picks the page by path and talks only to the querier's own API with relative
//! URLs, so it works under `--web.route-prefix`.
//!
//! Paths, as Thanos and Prometheus users have bookmarked them: `/graph?g0.expr=…&g0.tab=1`
//! (Thanos, Prometheus 2; `1` = table, `0` = graph), `/query?g0.expr=…&g0.tab=table`
//! (Prometheus 3), `/stores`; `/` leads to `/graph`.

pub mod blocks;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const STRATA_JS: &str = include_str!("../assets/strata.js");
const STRATA_CSS: &str = include_str!("../assets/strata.css");

/// The UI's routes; `prefix` is the `--web.route-prefix` they are served under (`""`
/// for none), for the redirect from `/`.
pub fn query_ui(prefix: &str) -> Router {
    let home = format!("{}/graph", prefix.trim_end_matches('/'));
    Router::new()
        .route("/", get(move || async move { Redirect::to(&home) }))
        .route("/graph", get(page))
        .route("/query", get(page))
        .route("/stores", get(page))
        .route("/static/strata.js", get(script))
        .route("/static/strata.css", get(style))
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", STRATA_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STRATA_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(router: Router, path: &str) -> (StatusCode, String, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap_or_default())
            .await
            .unwrap_or_else(|e| match e {});
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        (status, location, body)
    }

    #[tokio::test]
    async fn pages_and_assets_are_served() {
        for path in ["/graph", "/query", "/stores", "/graph?g0.expr=up&g0.tab=1"] {
            let (status, _, body) = get(query_ui(""), path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(body.contains("static/strata.js"), "{path}");
        }
        let (status, location, _) = get(query_ui(""), "/").await;
        assert_eq!(
            (status, location.as_str()),
            (StatusCode::SEE_OTHER, "/graph")
        );
        let (_, location, _) = get(query_ui("/thanos"), "/").await;
        assert_eq!(location, "/thanos/graph");
        let (status, _, js) = get(query_ui(""), "/static/strata.js").await;
        assert_eq!(status, StatusCode::OK);
        assert!(js.contains("api/v1/query_range"));
        // Every URL the page uses is relative (route prefixes), and nothing is fetched
        // from elsewhere.
        for asset in [INDEX_HTML, STRATA_JS, STRATA_CSS] {
            assert!(!asset.contains("http://") || asset.contains("http://www.w3.org/2000/svg"));
            assert!(!asset.contains("https://"));
            assert!(!asset.contains("\"/api"));
        }
    }
}
