//! Native histograms: chunk encoding and decoding throughput, then `strata query` over
//! `strata store` against Prometheus (3.5.3 when `STRATA_PROMETHEUS` names it) on the same
//! blocks: 240 counter histogram series (schema 3, 12 to 20 populated buckets, bucket layout
//! growing over time, a counter reset every 6 h) at 15 s over 12 h in 2 h blocks.
//!
//! Each query is timed alternately through the HTTP APIs, `RUNS` rounds (default 3, the
//! median); every Strata answer (histogram JSON included) is compared with Prometheus'
//! (the `cluster` external label aside). Prints per-query ratios, the geometric mean and
//! peak RSS.
//!
//! Run: `cargo run --release -p strata-benches --bin histograms-vs-prometheus`. With
//! `PROFILE=QUERY` (and `SECONDS`, default 60) it only sends that range query (with
//! `INSTANT=1`, instant query) to Strata in a loop and prints the median, for a profiler
//! attached to the querier (its PID is printed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Instant;

use strata_benches::{median, peak_rss_kib};
use strata_chunkenc::{HistogramIter, encode_histograms};
use strata_e2e::prometheus::{Prometheus, get_json};
use strata_e2e::store_api::{StrataProcess, upload_block};
use strata_objstore::Bucket;
use strata_tsdb::block::{BlockOptions, BlockWriter};
use strata_tsdb::cutter::EncodedChunk;
use strata_types::Labels;
use strata_types::histogram::{Histogram, Span};

const BLOCK_MS: i64 = 7_200_000;
const STEP_MS: i64 = 15_000;

/// Range queries over the 12 hours (step 60 s).
const RANGE: &[&str] = &[
    "histogram_quantile(0.99, sum(rate(request_duration_seconds[5m])))",
    "histogram_quantile(0.9, sum by (job) (rate(request_duration_seconds[5m])))",
    "histogram_count(sum by (handler) (rate(request_duration_seconds[5m])))",
    "histogram_fraction(0, 0.25, sum(rate(request_duration_seconds[5m])))",
    "sum by (job) (rate(request_duration_seconds[5m]))",
    "histogram_avg(sum(increase(request_duration_seconds[1h])))",
];

/// Instant queries at the end.
const INSTANT: &[&str] = &[
    "histogram_quantile(0.99, sum by (instance) (rate(request_duration_seconds[5m])))",
    "sum(rate(request_duration_seconds[5m]))",
    "request_duration_seconds{job=\"api\", handler=\"/a\"}",
    "histogram_count(increase(request_duration_seconds[1h]))",
];

/// The label sets: 4 jobs × 12 instances × 5 handlers.
fn series_labels() -> Vec<Labels> {
    let mut out = Vec::new();
    for job in ["api", "auth", "batch", "web"] {
        for instance in 0..12 {
            for handler in ["/a", "/b", "/c", "/d", "/e"] {
                out.push(Labels::from_pairs([
                    ("__name__", "request_duration_seconds"),
                    ("handler", handler),
                    ("instance", &format!("10.0.0.{instance}:9090")),
                    ("job", job),
                ]));
            }
        }
    }
    out.sort();
    out
}

/// Series `s`' histogram at sample `n`: counts grow by a per-series rate, a reset every 6 h,
/// buckets appear as counts grow.
fn histogram(s: usize, n: i64) -> Histogram {
    let since_reset = n % (6 * 3600 * 1000 / STEP_MS);
    let rate = 1 + (s % 7) as i64;
    let buckets = 12 + (since_reset * 8 / (6 * 240)).min(8) as u32;
    let counts: Vec<i64> = (0..i64::from(buckets))
        .map(|b| {
            let shape = 1 + ((b * 7 + s as i64) % 5);
            since_reset * rate * shape / 3
        })
        .collect();
    let mut deltas = Vec::with_capacity(counts.len());
    let mut prev = 0;
    for c in &counts {
        deltas.push(c - prev);
        prev = *c;
    }
    let total: i64 = counts.iter().sum();
    Histogram {
        count: total as u64,
        sum: total as f64 * 0.0123,
        schema: 3,
        zero_threshold: 1e-128,
        positive_spans: vec![Span {
            offset: -40,
            length: buckets,
        }],
        positive_buckets: deltas,
        ..Histogram::default()
    }
}

/// Writes the 2 h blocks; returns (histograms, encode seconds, decode seconds, chunk bytes).
fn write_blocks(dir: &Path, start_ms: i64, hours: i64) -> (u64, f64, f64, u64) {
    let labels = series_labels();
    let (mut total, mut encode_s, mut decode_s, mut bytes) = (0u64, 0.0, 0.0, 0u64);
    for w in 0..hours * 3_600_000 / BLOCK_MS {
        let from = start_ms + w * BLOCK_MS;
        let mut writer = BlockWriter::new(dir).unwrap();
        for (s, l) in labels.iter().enumerate() {
            let first = (from - start_ms) / STEP_MS;
            let hs: Vec<(i64, Histogram)> = (first..first + BLOCK_MS / STEP_MS)
                .map(|n| (start_ms + n * STEP_MS, histogram(s, n)))
                .collect();
            total += hs.len() as u64;
            let t = Instant::now();
            let chunks = encode_histograms(&hs).unwrap();
            encode_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut decoded = 0usize;
            for c in &chunks {
                let mut it = HistogramIter::new(&c.data).unwrap();
                decoded += it.by_ref().count();
                it.finish().unwrap();
                bytes += c.data.len() as u64;
            }
            decode_s += t.elapsed().as_secs_f64();
            assert_eq!(decoded, hs.len());
            let encoded: Vec<EncodedChunk> = chunks
                .into_iter()
                .map(|c| EncodedChunk {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    encoding: c.encoding,
                    data: c.data,
                })
                .collect();
            writer.add_series(l, &encoded).unwrap();
        }
        writer
            .finish(BlockOptions {
                min_time: Some(from),
                max_time: Some(from + BLOCK_MS),
                ..BlockOptions::default()
            })
            .unwrap();
    }
    (total, encode_s, decode_s, bytes)
}

/// `data.result` without the `drop` label, sorted.
fn result_of(body: &serde_json::Value, drop: &str) -> Vec<serde_json::Value> {
    let mut result = body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for r in &mut result {
        if let Some(m) = r["metric"].as_object_mut() {
            m.remove(drop);
        }
    }
    result.sort_by_key(|r| r["metric"].to_string());
    result
}

/// A query to time: its name, the API path and the parameters.
type Case = (String, &'static str, Vec<(&'static str, String)>);

fn timed(base: &str, path: &str, params: &[(&str, &str)]) -> (f64, serde_json::Value) {
    let t = Instant::now();
    let body = get_json(base, path, params);
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(body["status"], "success", "{params:?}: {body}");
    (ms, body)
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let dir = tempfile::tempdir().unwrap();
    let blocks = dir.path().join("blocks");
    let start_ms = 1_699_999_200_000;
    let hours = 12;
    let (total, encode_s, decode_s, bytes) = write_blocks(&blocks, start_ms, hours);
    println!("### chunk encoding\n");
    println!(
        "{total} integer histograms (12–20 buckets) in {bytes} chunk bytes ({:.1} bytes each): encode {:.2} M histograms/s, decode {:.2} M histograms/s",
        bytes as f64 / total as f64,
        total as f64 / encode_s / 1e6,
        total as f64 / decode_s / 1e6
    );

    let bucket_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let bucket = Bucket::from_yaml(&bucket_yaml, None).unwrap();
        for block in strata_e2e::block_dirs(&blocks) {
            upload_block(&bucket, &block, &[("cluster", "bench")]).await;
        }
    });
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
        "--query.timeout",
        "10m",
        "--query.max-samples",
        "200000000",
    ]);
    let strata = format!("http://{}", query.http);
    // `PROFILE=QUERY`: only that range query against Strata, in a loop for `SECONDS` (60),
    // for a profiler attached to the querier and the store (their PIDs are printed).
    if let Ok(q) = std::env::var("PROFILE") {
        let seconds: u64 = std::env::var("SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        let (start, end) = (start_ms / 1000 + 600, start_ms / 1000 + hours * 3600 - 1);
        eprintln!(
            "profiling: querier pid {}, store pid {}",
            query.pid(),
            store.pid()
        );
        let deadline = Instant::now() + std::time::Duration::from_secs(seconds);
        let mut times = Vec::new();
        while Instant::now() < deadline {
            let (start, end) = (start.to_string(), end.to_string());
            // `INSTANT=1`: the query as an instant query at the end.
            let ms = if std::env::var_os("INSTANT").is_some() {
                timed(
                    &strata,
                    "/api/v1/query",
                    &[("query", q.as_str()), ("time", &end)],
                )
                .0
            } else {
                let params = [
                    ("query", q.as_str()),
                    ("start", start.as_str()),
                    ("end", end.as_str()),
                    ("step", "60"),
                ];
                timed(&strata, "/api/v1/query_range", &params).0
            };
            times.push(ms);
        }
        println!("{} queries, median {:.1} ms", times.len(), median(times));
        return;
    }
    let prometheus = Prometheus::start_on_blocks(&blocks);
    let prom = prometheus.url();
    let (start, end) = (start_ms / 1000 + 600, start_ms / 1000 + hours * 3600 - 1);
    // Wait until the store serves every block.
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while result_of(
        &get_json(
            &strata,
            "/api/v1/query",
            &[
                ("query", "count(request_duration_seconds)"),
                ("time", &end.to_string()),
            ],
        ),
        "cluster",
    )
    .is_empty()
    {
        assert!(Instant::now() < deadline, "the store never answered");
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    println!(
        "\n### queries over native histograms ({} series, {hours} h)\n",
        series_labels().len()
    );
    println!("| query | Prometheus (ms) | Strata (ms) | Strata / Prometheus | series | equal |");
    println!("|---|---:|---:|---:|---:|---|");
    let mut logs = Vec::new();
    let mut all_equal = true;
    let cases: Vec<Case> = RANGE
        .iter()
        .map(|q| {
            (
                format!("{q} (range, step 60 s)"),
                "/api/v1/query_range",
                vec![
                    ("query", (*q).to_owned()),
                    ("start", start.to_string()),
                    ("end", end.to_string()),
                    ("step", "60".to_owned()),
                ],
            )
        })
        .chain(INSTANT.iter().map(|q| {
            (
                format!("{q} (instant)"),
                "/api/v1/query",
                vec![("query", (*q).to_owned()), ("time", end.to_string())],
            )
        }))
        .collect();
    for (name, path, params) in &cases {
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (ms, body) = timed(&strata, path, &params);
            ours.push(ms);
            a = result_of(&body, "cluster");
            let (ms, body) = timed(&prom, path, &params);
            theirs.push(ms);
            b = result_of(&body, "cluster");
        }
        let (s, p) = (median(ours), median(theirs));
        let equal = a == b;
        all_equal &= equal;
        logs.push((s / p).ln());
        println!(
            "| `{name}` | {p:.0} | {s:.0} | {:.2} | {} | {} |",
            s / p,
            b.len(),
            if equal { "yes" } else { "**no**" }
        );
    }
    println!(
        "\ngeometric mean Strata / Prometheus {:.2} over {} queries; answers equal: {all_equal}",
        (logs.iter().sum::<f64>() / logs.len() as f64).exp(),
        logs.len()
    );
    println!(
        "peak RSS: strata query {} KiB, strata store {} KiB, Prometheus {} KiB",
        peak_rss_kib(query.pid()),
        peak_rss_kib(store.pid()),
        peak_rss_kib(prometheus.pid())
    );
}
