//! Under load: `CLIENTS` concurrent clients (default 50) send heavy range queries over
//! 10,000 series for `SECONDS` (default 60) against `strata query` over `strata store` (a
//! FILESYSTEM bucket of the blocks), then against Prometheus 3.5 on the same blocks, one
//! after the other in the same run. Reports throughput, p50/p99 latency, errors (limit
//! refusals apart) and each process' peak RSS, and checks the querier's peak RSS against its
//! configured budget: max concurrency × per-query budget + a fixed overhead.
//!
//! The querier runs with `--query.max-concurrent` (`CONCURRENT`, default 8),
//! `--query.max-samples` (`MAX_SAMPLES`, default 20,000,000) and `--query.max-fetched-bytes`
//! (`MAX_BYTES`, default 64 MiB). A query's memory is bounded by the bytes it fetches plus its
//! samples in memory (16 bytes each: timestamp and value): the budget printed is
//! `CONCURRENT × (MAX_BYTES + 16 × MAX_SAMPLES) + OVERHEAD` with a 256 MiB overhead (runtime,
//! caches, connection buffers of 50 clients, JSON encoding of the answers).
//!
//! Run: `cargo run --release -p strata-benches --bin load`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_benches::{peak_rss_kib, write_blocks};
use strata_e2e::prometheus::Prometheus;
use strata_e2e::store_api::{StrataProcess, upload_block};
use strata_objstore::Bucket;

/// Heavy range queries a dashboard sends; every one reads thousands of series.
const QUERIES: &[&str] = &[
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum by (instance) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))",
    "sum by (instance) (rate(http_requests_total{code=\"500\"}[5m])) / on(instance) sum by (instance) (rate(http_requests_total[5m]))",
    "topk(10, sum by (instance) (rate(http_requests_total[5m])))",
    "max by (instance) (avg_over_time(node_memory_bytes[10m]))",
    "sum(increase(http_requests_total[1h]))",
    "count by (code) (rate(http_requests_total[5m]) > 1)",
];

const OVERHEAD_BYTES: u64 = 256 << 20;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one client saw of one request.
enum Outcome {
    Ok(Duration),
    /// Refused by a limit (422): the deliberate answer.
    Refused,
    Error(String),
}

struct Report {
    name: &'static str,
    ok: Vec<Duration>,
    refused: usize,
    errors: Vec<String>,
    wall: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn one(agent: &ureq::Agent, base: &str, q: &str, start: i64, end: i64) -> Outcome {
    let t = Instant::now();
    let result = agent
        .get(&format!("{base}/api/v1/query_range"))
        .query("query", q)
        .query("start", start.to_string())
        .query("end", end.to_string())
        .query("step", "60")
        .call();
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("transport: {e}")),
    };
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_string()
        .unwrap_or_default();
    let elapsed = t.elapsed();
    match status {
        200 if body.contains("\"status\":\"success\"") => Outcome::Ok(elapsed),
        422 => Outcome::Refused,
        _ => Outcome::Error(format!("{status}: {}", &body[..body.len().min(200)])),
    }
}

/// `clients` threads, each sending the queries in turn (from its own offset) until
/// `seconds` have passed; requests started before the end are waited for.
fn load(name: &'static str, base: &str, clients: usize, seconds: u64, range: (i64, i64)) -> Report {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut threads = Vec::new();
    for c in 0..clients {
        let stop = Arc::clone(&stop);
        let base = base.to_owned();
        threads.push(std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(600)))
                .build()
                .into();
            let mut out = Vec::new();
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let q = QUERIES[i % QUERIES.len()];
                // Each client looks at a slightly different window, as dashboards do.
                let shift = (i as i64 % 7) * 60;
                out.push(one(&agent, &base, q, range.0 + shift, range.1 - shift));
                i += 1;
            }
            out
        }));
    }
    let deadline = started + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        std::thread::park_timeout(deadline.saturating_duration_since(Instant::now()));
    }
    stop.store(true, Ordering::Relaxed);
    let mut report = Report {
        name,
        ok: Vec::new(),
        refused: 0,
        errors: Vec::new(),
        wall: Duration::ZERO,
    };
    for t in threads {
        for outcome in t.join().unwrap() {
            match outcome {
                Outcome::Ok(d) => report.ok.push(d),
                Outcome::Refused => report.refused += 1,
                Outcome::Error(e) => report.errors.push(e),
            }
        }
    }
    report.wall = started.elapsed();
    report.ok.sort();
    report
}

fn main() {
    let clients: usize = env_or("CLIENTS", 50);
    let seconds: u64 = env_or("SECONDS", 60);
    let hours: i64 = env_or("HOURS", 6);
    let concurrent: u64 = env_or("CONCURRENT", 8);
    let max_samples: u64 = env_or("MAX_SAMPLES", 20_000_000);
    let max_bytes: u64 = env_or("MAX_BYTES", 64 << 20);

    let dir = tempfile::tempdir().unwrap();
    let blocks = dir.path().join("blocks");
    let start_ms = 1_699_999_200_000;
    let t = Instant::now();
    let samples = write_blocks(&blocks, start_ms, hours);
    eprintln!(
        "wrote {samples} samples (10,000 series × {hours} h) in {:?}",
        t.elapsed()
    );
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
    // The queries cover the whole data set (less the first 10 minutes).
    let range = (start_ms / 1000 + 600, start_ms / 1000 + hours * 3600);

    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &bucket_yaml,
        "--data-dir",
        dir.path().join("store").to_str().unwrap(),
    ]);
    let query = StrataProcess::start(&[
        "query",
        "--endpoint",
        &store.grpc,
        "--query.max-concurrent",
        &concurrent.to_string(),
        "--query.max-samples",
        &max_samples.to_string(),
        "--query.max-fetched-bytes",
        &max_bytes.to_string(),
        "--query.timeout",
        "10m",
    ]);
    let strata = load(
        "strata query + store",
        &format!("http://{}", query.http),
        clients,
        seconds,
        range,
    );
    let (query_rss, store_rss) = (peak_rss_kib(query.pid()), peak_rss_kib(store.pid()));
    drop(query);
    drop(store);

    let prometheus = Prometheus::start_on_blocks(&blocks);
    let prom = load("Prometheus 3.5", &prometheus.url(), clients, seconds, range);
    let prom_rss = peak_rss_kib(prometheus.pid());

    println!(
        "{clients} clients, {seconds} s each, {} heavy range queries in turn over 10,000 series × {hours} h (step 60 s)\n",
        QUERIES.len()
    );
    println!(
        "| target | answered | queries/s | p50 (ms) | p99 (ms) | limit refusals | errors | peak RSS (KiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for (r, rss) in [
        (&strata, format!("query {query_rss}, store {store_rss}")),
        (&prom, prom_rss.to_string()),
    ] {
        println!(
            "| {} | {} | {:.2} | {:.0} | {:.0} | {} | {} | {rss} |",
            r.name,
            r.ok.len(),
            r.ok.len() as f64 / r.wall.as_secs_f64(),
            percentile(&r.ok, 0.5),
            percentile(&r.ok, 0.99),
            r.refused,
            r.errors.len(),
        );
    }
    for r in [&strata, &prom] {
        for e in r.errors.iter().take(5) {
            eprintln!("{} error: {e}", r.name);
        }
    }
    let budget = concurrent * (max_bytes + 16 * max_samples) + OVERHEAD_BYTES;
    let within = query_rss * 1024 <= budget;
    println!(
        "\nquerier budget: {concurrent} × ({} MiB fetched + 16 B × {max_samples} samples) + {} MiB = {} MiB; peak RSS {} MiB: {}",
        max_bytes >> 20,
        OVERHEAD_BYTES >> 20,
        budget >> 20,
        query_rss >> 10,
        if within { "within" } else { "OVER" }
    );
    let faster = strata.ok.len() as f64 / strata.wall.as_secs_f64()
        > prom.ok.len() as f64 / prom.wall.as_secs_f64();
    println!(
        "throughput: Strata {} Prometheus; errors other than limit refusals: Strata {}, Prometheus {}",
        if faster { "above" } else { "below" },
        strata.errors.len(),
        prom.errors.len()
    );
}
