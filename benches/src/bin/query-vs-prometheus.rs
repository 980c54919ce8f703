//! `strata query` over `strata store` (a FILESYSTEM bucket holding the blocks) against
//! Prometheus 2.42 on the same blocks: 20 heavy range queries over 2 days of 10,000 series
//! (15 s samples), step 5 m, timed alternately, wall-clock through each HTTP API; `RUNS`
//! rounds (default 3), the median of each. Prints each ratio (Strata / Prometheus), their
//! geometric mean, and each process' peak RSS.
//!
//! When `victoria-metrics`, `vmctl` (Debian package `victoria-metrics`) and `script` are on the PATH,
//! VictoriaMetrics joins as a third column: the same blocks imported with `vmctl prometheus`,
//! its rollup result cache off, the same queries (MetricsQL answers them with its own
//! semantics; only the time is compared).
//!
//! Run: `cargo run --release -p strata-benches --bin query-vs-prometheus`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_benches::{median, peak_rss_kib, write_blocks};
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

/// Milliseconds for the range query, and the number of series in the answer.
fn timed(base: &str, q: &str, start: i64, end: i64) -> (f64, usize) {
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
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(body["status"], "success", "{q}: {body}");
    let series = body["data"]["result"].as_array().map_or(0, Vec::len);
    (ms, series)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

/// A VictoriaMetrics single-node process holding the benchmark blocks.
struct Victoria {
    child: Child,
    url: String,
}

impl Victoria {
    fn start(dir: &Path, blocks: &Path) -> Victoria {
        let port = strata_e2e::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", dir.join("vm").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=100y")
            .arg("-search.disableCache")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start victoria-metrics");
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{url}/health")).call().is_err() {
            assert!(Instant::now() < deadline, "victoria-metrics did not start");
            // A benchmark binary polling a child process; no clock to inject.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(100));
        }
        let t = Instant::now();
        // vmctl insists on a terminal; `script` gives it one.
        let vmctl = format!(
            "vmctl prometheus -s --vm-disable-progress-bar --prom-concurrency 2 --prom-snapshot={} --vm-addr={url}",
            blocks.display()
        );
        let status = Command::new("script")
            .args(["-qec", &vmctl, "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run vmctl");
        assert!(status.success(), "vmctl prometheus failed");
        let _ = ureq::get(&format!("{url}/internal/force_flush")).call();
        eprintln!("imported into VictoriaMetrics in {:?}", t.elapsed());
        Victoria { child, url }
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let victoria = (on_path("victoria-metrics") && on_path("vmctl") && on_path("script"))
        .then(|| Victoria::start(dir.path(), &blocks));
    let prometheus = Prometheus::start_on_blocks(&blocks);
    let data_dir = dir.path().join("store");
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &bucket_yaml,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    let query = StrataProcess::start(&[
        "query",
        "--endpoint",
        &store.grpc,
        "--query.timeout",
        "10m",
        // The querier counts every sample it loads for a query (57.6 M for the counters
        // over 2 days); Prometheus counts those held at one step.
        "--query.max-samples",
        "200000000",
    ]);
    let ours = format!("http://{}", query.http);
    let (start, end) = (start_ms / 1000 + 600, start_ms / 1000 + 48 * 3600);
    if victoria.is_some() {
        println!(
            "| query | Strata (ms) | Prometheus (ms) | Strata / Prometheus | VictoriaMetrics (ms) | VictoriaMetrics / Prometheus | series (Strata, Prometheus, VictoriaMetrics) |"
        );
        println!("|---|---:|---:|---:|---:|---:|---|");
    } else {
        println!(
            "| query | Strata (ms) | Prometheus (ms) | Strata / Prometheus | series (Strata, Prometheus) |"
        );
        println!("|---|---:|---:|---:|---|");
    }
    let (mut log_sum, mut vm_log_sum) = (0.0, 0.0);
    for q in QUERIES {
        let (mut ours_ms, mut theirs_ms, mut vm_ms) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ours_n, mut theirs_n, mut vm_n) = (0, 0, 0);
        for _ in 0..runs {
            let (ms, n) = timed(&ours, q, start, end);
            ours_ms.push(ms);
            ours_n = n;
            let (ms, n) = timed(&prometheus.url(), q, start, end);
            theirs_ms.push(ms);
            theirs_n = n;
            if let Some(vm) = &victoria {
                let (ms, n) = timed(&vm.url, q, start, end);
                vm_ms.push(ms);
                vm_n = n;
            }
        }
        let (s, p) = (median(ours_ms), median(theirs_ms));
        log_sum += (s / p).ln();
        if vm_ms.is_empty() {
            println!(
                "| `{q}` | {s:.0} | {p:.0} | {:.2} | {ours_n}, {theirs_n} |",
                s / p
            );
        } else {
            let v = median(vm_ms);
            vm_log_sum += (v / p).ln();
            println!(
                "| `{q}` | {s:.0} | {p:.0} | {:.2} | {v:.0} | {:.2} | {ours_n}, {theirs_n}, {vm_n} |",
                s / p,
                v / p
            );
        }
    }
    let n = QUERIES.len() as f64;
    println!(
        "geometric mean of Strata / Prometheus: {:.2}",
        (log_sum / n).exp()
    );
    if let Some(vm) = &victoria {
        println!(
            "geometric mean of VictoriaMetrics / Prometheus: {:.2}; VictoriaMetrics peak RSS {} KiB",
            (vm_log_sum / n).exp(),
            peak_rss_kib(vm.child.id())
        );
    }
    println!(
        "peak RSS: strata query {} KiB, strata store {} KiB, Prometheus {} KiB",
        peak_rss_kib(query.pid()),
        peak_rss_kib(store.pid()),
        peak_rss_kib(prometheus.pid())
    );
}
