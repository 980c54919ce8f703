//! Failed sub-queries are retried: a downstream that answers 503 twice before answering
//! still yields the full answer, and a downstream that keeps failing yields its error.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

const ANSWER: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up"},"values":[[60,"1"]]}]}}"#;

async fn flaky_downstream(failures: usize) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let app = Router::new().route(
        "/api/v1/query_range",
        get(move || {
            let counter = Arc::clone(&counter);
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                if n < failures {
                    return (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response();
                }
                ([("content-type", "application/json")], ANSWER).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), calls)
}

async fn frontend(downstream: String, retries: usize) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = strata_query_frontend::FrontendConfig {
        downstream_url: downstream,
        http_address: format!("127.0.0.1:{port}"),
        max_retries: retries,
        ..Default::default()
    };
    let (_trigger, shutdown) = strata_runtime::Shutdown::new();
    std::mem::forget(_trigger);
    tokio::spawn(strata_query_frontend::run(config, shutdown));
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    format!("http://127.0.0.1:{port}")
}

async fn query(base: &str) -> (u16, String) {
    let resp = reqwest::get(format!(
        "{base}/api/v1/query_range?query=up&start=60&end=60&step=60"
    ))
    .await
    .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn failed_sub_queries_are_retried() {
    let (downstream, calls) = flaky_downstream(2).await;
    let base = frontend(downstream, 5).await;
    assert_eq!(query(&base).await, (200, ANSWER.to_owned()));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let (downstream, calls) = flaky_downstream(usize::MAX).await;
    let base = frontend(downstream, 2).await;
    let (status, body) = query(&base).await;
    assert_eq!((status, body.as_str()), (503, "try later"));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
