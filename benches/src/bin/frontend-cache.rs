//! A Grafana dashboard through `strata query-frontend` (in-memory results cache, 24 h
//! splits) in front of Prometheus 2.42: 10 range queries over 7 days of 10,000 series at
//! 15 s, step 10 m, first cold, then repeated with the window moved by one minute. Prints
//! each query's cold and warm latency, the totals and their ratio.
//!
//! Run: `cargo run --release -p strata-benches --bin frontend-cache`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use strata_benches::write_blocks;
use strata_e2e::prometheus::{Prometheus, get_json};
use strata_e2e::store_api::StrataProcess;

const DASHBOARD: &[&str] = &[
    "sum(rate(http_requests_total[5m]))",
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum by (code) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "sum by (instance) (rate(http_requests_total{code=\"500\"}[5m])) / on(instance) sum by (instance) (rate(http_requests_total[5m]))",
    "avg(node_memory_bytes)",
    "max by (instance) (avg_over_time(node_memory_bytes[10m]))",
    "topk(5, sum by (instance) (rate(http_requests_total[5m])))",
    "count(http_requests_total)",
];

fn run_dashboard(base: &str, start: i64, end: i64) -> Vec<Duration> {
    DASHBOARD
        .iter()
        .map(|q| {
            let t = Instant::now();
            let body = get_json(
                base,
                "/api/v1/query_range",
                &[
                    ("query", q),
                    ("start", &start.to_string()),
                    ("end", &end.to_string()),
                    ("step", "600"),
                ],
            );
            assert_eq!(body["status"], "success", "{q}: {body}");
            t.elapsed()
        })
        .collect()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("prometheus");
    let start_ms = 1_699_999_200_000; // a multiple of 2 h
    let t = Instant::now();
    let samples = write_blocks(&data, start_ms, 7 * 24);
    eprintln!("wrote {samples} samples in {:?}", t.elapsed());
    let prometheus = Prometheus::start_on_blocks(&data);
    let frontend = StrataProcess::start_http_only(&[
        "query-frontend",
        "--query-frontend.downstream-url",
        &prometheus.url(),
        "--query-range.split-interval",
        "24h",
        "--query-range.response-cache-config",
        "type: IN-MEMORY\nconfig:\n  max_size: 512MB\n",
    ]);
    let base = format!("http://{}", frontend.http);
    let start = start_ms / 1000 + 3600;
    let end = start + 7 * 24 * 3600 - 7200;
    let cold = run_dashboard(&base, start, end);
    let warm = run_dashboard(&base, start + 60, end + 60);
    let direct = run_dashboard(&prometheus.url(), start + 60, end + 60);
    println!("| query | cold (ms) | warm, window +1m (ms) | Prometheus direct (ms) |");
    println!("|---|---|---|---|");
    for (i, q) in DASHBOARD.iter().enumerate() {
        println!(
            "| `{q}` | {} | {} | {} |",
            cold[i].as_millis(),
            warm[i].as_millis(),
            direct[i].as_millis()
        );
    }
    let total = |v: &[Duration]| v.iter().map(Duration::as_millis).sum::<u128>();
    let (c, w, d) = (total(&cold), total(&warm), total(&direct));
    println!("| total | {c} | {w} | {d} |");
    println!("cold / warm = {:.1}x", c as f64 / w.max(1) as f64);
}
