//! `strata query` over `strata store` (a FILESYSTEM bucket holding the blocks) against
//! Prometheus 2.42 on the same blocks: 20 heavy range queries over 2 days of 10,000 series
//! (15 s samples), step 5 m, timed alternately, wall-clock through each HTTP API. Prints
//! each ratio (Strata / Prometheus), their geometric mean, and each process' peak RSS.
//!
//! Run: `cargo run --release -p strata-benches --bin query-vs-prometheus`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::time::Instant;

use strata_benches::write_blocks;
use strata_e2e::prometheus::{Prometheus, get_json};
use strata_e2e::store_api::{StrataProcess, upload_block};
use strata_objstore::Bucket;

const QUERIES: &[&str] = &[
    "sum(rate(http_requests_total[5m]))",
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum by (code) (rate(http_requests_total[5m]))",
    "sum by (instance) (rate(http_requests_total[5m]))",
    "topk(10, sum by (instance) (rate(http_requests_total[5m])))",
    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.9, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, sum by (le, instance) (rate(http_request_duration_seconds_bucket[10m])))",
    "sum by (instance) (rate(http_requests_total{code=\"500\"}[5m])) / on(instance) sum by (instance) (rate(http_requests_total[5m]))",
    "sum(rate(http_requests_total{code=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m]))",
    "avg(node_memory_bytes)",
    "max by (instance) (avg_over_time(node_memory_bytes[10m]))",
    "quantile(0.9, node_memory_bytes)",
    "count(http_requests_total)",
    "sum(increase(http_requests_total[1h]))",
    "max(irate(http_requests_total[5m]))",
    "stddev(rate(http_requests_total[5m]))",
    "avg by (job) (deriv(node_memory_bytes[15m]))",
    "sum by (job) (delta(node_memory_bytes[30m]))",
    "count by (code) (rate(http_requests_total[5m]) > 1)",
];

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn timed(base: &str, q: &str, start: i64, end: i64) -> f64 {
    let t = Instant::now();
    let body = get_json(
        base,
        "/api/v1/query_range",
        &[
            ("query", q),
            ("start", &start.to_string()),
            ("end", &end.to_string()),
            ("step", "300"),
        ],
    );
    assert_eq!(body["status"], "success", "{q}: {body}");
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = dir.path().join("blocks");
    let start_ms = 1_699_999_200_000;
    let t = Instant::now();
    let samples = write_blocks(&blocks, start_ms, 48);
    eprintln!("wrote {samples} samples in {:?}", t.elapsed());

    let bucket_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let bucket = Bucket::from_yaml(&bucket_yaml, None).unwrap();
        for block in strata_e2e::block_dirs(&blocks) {
            upload_block(&bucket, &block, &[("cluster", "bench")]).await;
        }
    });
    let prometheus = Prometheus::start_on_blocks(&blocks);
    let data_dir = dir.path().join("store");
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &bucket_yaml,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    let query =
        StrataProcess::start(&["query", "--endpoint", &store.grpc, "--query.timeout", "10m"]);
    let ours = format!("http://{}", query.http);
    let (start, end) = (start_ms / 1000 + 600, start_ms / 1000 + 48 * 3600);
    println!("| query | Strata (ms) | Prometheus (ms) | ratio |");
    println!("|---|---|---|---|");
    let mut log_sum = 0.0;
    for q in QUERIES {
        let s = timed(&ours, q, start, end);
        let p = timed(&prometheus.url(), q, start, end);
        log_sum += (s / p).ln();
        println!("| `{q}` | {s:.0} | {p:.0} | {:.2} |", s / p);
    }
    println!(
        "geometric mean of ratios: {:.2}",
        (log_sum / QUERIES.len() as f64).exp()
    );
    println!(
        "peak RSS: strata query {} KiB, strata store {} KiB, Prometheus {} KiB",
        peak_rss_kib(query.pid()),
        peak_rss_kib(store.pid()),
        peak_rss_kib(prometheus.pid())
    );
}
