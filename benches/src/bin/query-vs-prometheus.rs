//! `strata query` over `strata store` (a FILESYSTEM bucket holding the blocks) against
//! Prometheus (3.5.3 when `STRATA_PROMETHEUS` names it, as `scripts/test` does) and, when
//! `victoria-metrics`, `vmctl` (Debian sid's `victoria-metrics` 1.145: `scripts/sid-package
//! victoria-metrics 1.145`) and `script` are on the PATH, VictoriaMetrics, all on the same
//! blocks: 2 days of 10,000 series at 15 s, plus one 2 h block of 100,000 container
//! counters at 60 s. VictoriaMetrics gets the blocks through `vmctl prometheus`, its
//! rollup result cache off.
//!
//! Workloads, each timed alternately through the HTTP APIs, wall clock, `RUNS` rounds
//! (default 3, the median): **cold** (the first query each process answers after it
//! started), **heavy** (20 range queries over 2 days, step 5 m), **high cardinality** (4
//! aggregations of the 100,000 series over 2 h, step 60 s), **dashboard** (10 panels over
//! the last 6 h at step 30 s, refreshed `RUNS` times; the first refresh and the median of
//! the others) and **instant** (10 instant queries). Every Strata answer is compared with
//! Prometheus' (values as printed, the `cluster` external label aside); VictoriaMetrics'
//! answers are counted as equal or not (MetricsQL has its own semantics). Prints per-query
//! ratios to Prometheus, geometric means per workload and overall, and each process' peak
//! RSS.
//!
//! Run: `cargo run --release -p strata-benches --bin query-vs-prometheus`. With
//! `PROFILE_INSTANT=QUERY` (and `SECONDS`, default 60) it only sends that instant query to
//! Strata in a loop and prints the median, for a profiler attached to the querier and store
//! (their PIDs are printed; `PROFILE_WAIT=N` waits N seconds before the first query). One
//! query per line; `PROFILE_PEER=1` loops each against Prometheus too; `PROFILE_STEP=S`
//! sends range queries over the two days (the last H hours with `PROFILE_HOURS=H`) at step S
//! seconds instead; `PROFILE_GAP_MS=N`
//! pauses N ms between queries.
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

use strata_benches::{answer_of, median, peak_rss_kib, write_blocks, write_high_cardinality_block};
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

/// The high-cardinality queries (100,000 series matched).
const HIGH_CARDINALITY: &[&str] = &[
    "sum(rate(container_cpu_usage_seconds_total[5m]))",
    "sum by (namespace) (rate(container_cpu_usage_seconds_total[5m]))",
    "count(container_cpu_usage_seconds_total)",
    "topk(5, sum by (pod) (rate(container_cpu_usage_seconds_total[5m])))",
];

/// A 10-panel dashboard.
const DASHBOARD: &[&str] = &[
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum by (code) (rate(http_requests_total[5m]))",
    "sum(rate(http_requests_total{code=~\"5..\"}[5m])) / sum(rate(http_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))",
    "topk(5, sum by (instance) (rate(http_requests_total[5m])))",
    "avg by (job) (node_memory_bytes)",
    "max(node_memory_bytes)",
    "sum(increase(http_requests_total[1h]))",
    "sum by (job) (rate(http_requests_total{code=\"500\"}[5m]))",
];

/// Instant queries.
const INSTANT: &[&str] = &[
    "sum by (job) (rate(http_requests_total[5m]))",
    "topk(10, rate(http_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "count(http_requests_total)",
    "avg(node_memory_bytes)",
    "sum by (instance) (rate(http_requests_total{code=\"500\"}[5m])) / on(instance) sum by (instance) (rate(http_requests_total[5m]))",
    "max_over_time(node_memory_bytes[1h])",
    "sum(increase(http_requests_total[1d]))",
    "sum by (namespace) (rate(container_cpu_usage_seconds_total[5m]))",
    "quantile(0.9, node_memory_bytes)",
];

/// One query request: a range query when `step` is given, else instant at `end`.
#[derive(Clone, Copy)]
struct Request<'a> {
    query: &'a str,
    start: i64,
    end: i64,
    step: Option<i64>,
}

/// Milliseconds and the answer.
fn timed(base: &str, r: Request<'_>) -> (f64, serde_json::Value) {
    let t = Instant::now();
    let body = match r.step {
        Some(step) => get_json(
            base,
            "/api/v1/query_range",
            &[
                ("query", r.query),
                ("start", &r.start.to_string()),
                ("end", &r.end.to_string()),
                ("step", &step.to_string()),
            ],
        ),
        None => get_json(
            base,
            "/api/v1/query",
            &[("query", r.query), ("time", &r.end.to_string())],
        ),
    };
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(body["status"], "success", "{}: {body}", r.query);
    (ms, body)
}

/// The systems measured.
struct Targets {
    strata: String,
    prometheus: String,
    victoria: Option<String>,
}

/// One query's medians and answer comparison.
struct Row {
    strata: f64,
    prometheus: f64,
    victoria: Option<f64>,
    equal: bool,
    victoria_equal: Option<bool>,
    series: usize,
}

impl Targets {
    fn measure(&self, r: Request<'_>, runs: usize) -> Row {
        let (mut s, mut p, mut v) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ours, mut theirs, mut vm) = (None, None, None);
        for _ in 0..runs {
            let (ms, body) = timed(&self.strata, r);
            s.push(ms);
            ours = Some(answer_of(&body, "cluster"));
            let (ms, body) = timed(&self.prometheus, r);
            p.push(ms);
            theirs = Some(answer_of(&body, "cluster"));
            if let Some(url) = &self.victoria {
                let (ms, body) = timed(url, r);
                v.push(ms);
                vm = Some(answer_of(&body, "cluster"));
            }
        }
        let series = theirs.as_ref().map_or(0, |a| a.len());
        Row {
            strata: median(s),
            prometheus: median(p),
            victoria: (!v.is_empty()).then(|| median(v)),
            equal: ours == theirs,
            victoria_equal: vm.map(|vm| Some(vm) == theirs),
            series,
        }
    }
}

/// Prints a workload's table; returns the logs of its ratios (Strata, VictoriaMetrics).
fn print_table(title: &str, rows: &[(String, Row)]) -> (Vec<f64>, Vec<f64>) {
    println!("\n### {title}\n");
    println!(
        "| query | Prometheus (ms) | VictoriaMetrics (ms) | Strata (ms) | VictoriaMetrics / Prometheus | Strata / Prometheus | series | Strata = Prometheus | VictoriaMetrics = Prometheus |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|---|");
    let (mut ours, mut vm) = (Vec::new(), Vec::new());
    for (name, r) in rows {
        let v = r.victoria.map_or("–".to_owned(), |v| format!("{v:.0}"));
        let vr = r
            .victoria
            .map_or("–".to_owned(), |v| format!("{:.2}", v / r.prometheus));
        let ve = r
            .victoria_equal
            .map_or("–", |e| if e { "yes" } else { "no" });
        println!(
            "| `{name}` | {:.0} | {v} | {:.0} | {vr} | {:.2} | {} | {} | {ve} |",
            r.prometheus,
            r.strata,
            r.strata / r.prometheus,
            r.series,
            if r.equal { "yes" } else { "**no**" },
        );
        ours.push((r.strata / r.prometheus).ln());
        if let Some(v) = r.victoria {
            vm.push((v / r.prometheus).ln());
        }
    }
    let gm = |logs: &[f64]| (logs.iter().sum::<f64>() / logs.len().max(1) as f64).exp();
    println!(
        "\ngeometric mean: Strata / Prometheus {:.2}{}",
        gm(&ours),
        if vm.is_empty() {
            String::new()
        } else {
            format!(", VictoriaMetrics / Prometheus {:.2}", gm(&vm))
        }
    );
    (ours, vm)
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
    let samples = write_blocks(&blocks, start_ms, 48)
        + write_high_cardinality_block(&blocks, start_ms + 46 * 3_600_000, 100_000);
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
    let (start, end) = (start_ms / 1000 + 600, start_ms / 1000 + 48 * 3600);
    // `PROFILE_INSTANT=QUERY`: only send that instant query to Strata, over and over for
    // `SECONDS` (60), for a profiler attached to the querier and the store.
    if let Ok(q) = std::env::var("PROFILE_INSTANT") {
        let seconds: u64 = std::env::var("SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        eprintln!(
            "profiling: querier pid {}, store pid {}",
            query.pid(),
            store.pid()
        );
        // `PROFILE_WAIT=N`: wait N seconds first, for a profiler to attach before the
        // first query (which sets the peaks).
        if let Some(wait) = std::env::var("PROFILE_WAIT")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            runtime.block_on(async { tokio::time::sleep(Duration::from_secs(wait)).await });
        }
        // `PROFILE_STEP=S`: range queries over the two days at step S seconds instead.
        let step: Option<i64> = std::env::var("PROFILE_STEP")
            .ok()
            .and_then(|s| s.parse().ok());
        // `PROFILE_GAP_MS=N`: an idle pause between queries (as between a dashboard's
        // refreshes: the processes' threads park).
        let gap = std::env::var("PROFILE_GAP_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_millis);
        // `PROFILE_HOURS=H`: range queries over the last H hours only (the high-cardinality
        // counters cover the last two).
        let start = std::env::var("PROFILE_HOURS")
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .map_or(start, |h| end - h * 3600);
        let repeat = |url: &str, q: &str| {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut times = Vec::new();
            while Instant::now() < deadline {
                let r = Request {
                    query: q,
                    start: if step.is_some() { start } else { end },
                    end,
                    step,
                };
                times.push(timed(url, r).0);
                if let Some(gap) = gap {
                    runtime.block_on(async { tokio::time::sleep(gap).await });
                }
            }
            (times.len(), median(times))
        };
        // `PROFILE_PEER=1`: then the same loop against Prometheus, for its median.
        let peer = std::env::var("PROFILE_PEER")
            .is_ok()
            .then(|| Prometheus::start_on_blocks(&blocks));
        // One query per line.
        for q in q.lines().map(str::trim).filter(|q| !q.is_empty()) {
            let (n, strata) = repeat(&format!("http://{}", query.http), q);
            let versus = peer.as_ref().map_or_else(String::new, |p| {
                let (m, theirs) = repeat(&p.url(), q);
                format!(
                    "; Prometheus {m} queries, median {theirs:.2} ms, Strata / Prometheus {:.2}",
                    strata / theirs
                )
            });
            println!("{q}: {n} queries, median {strata:.2} ms{versus}");
        }
        println!(
            "peak RSS strata query {} KiB, strata store {} KiB",
            peak_rss_kib(query.pid()),
            peak_rss_kib(store.pid())
        );
        return;
    }
    let prometheus = Prometheus::start_on_blocks(&blocks);
    let targets = Targets {
        strata: format!("http://{}", query.http),
        prometheus: prometheus.url(),
        victoria: victoria.as_ref().map(|v| v.url.clone()),
    };

    let heavy = |q| Request {
        query: q,
        start,
        end,
        step: Some(300),
    };
    // Peaks so far, after each workload: which workload sets each process' peak.
    let pids = (query.pid(), store.pid(), prometheus.pid());
    let peaks_so_far = move || {
        println!(
            "\npeak RSS so far (KiB): strata query {}, strata store {}, Prometheus {}",
            peak_rss_kib(pids.0),
            peak_rss_kib(pids.1),
            peak_rss_kib(pids.2)
        );
    };
    let mut all = (Vec::new(), Vec::new());
    let mut add = |(o, v): (Vec<f64>, Vec<f64>)| {
        all.0.extend(o);
        all.1.extend(v);
    };

    // Cold: the first query each process answers.
    let cold = targets.measure(heavy(QUERIES[0]), 1);
    add(print_table(
        "cold: the first query after start",
        &[(QUERIES[0].to_owned(), cold)],
    ));
    peaks_so_far();

    let rows: Vec<_> = QUERIES
        .iter()
        .map(|q| ((*q).to_owned(), targets.measure(heavy(q), runs)))
        .collect();
    add(print_table("heavy: 2 days, step 5 m", &rows));
    peaks_so_far();

    let rows: Vec<_> = HIGH_CARDINALITY
        .iter()
        .map(|q| {
            let r = Request {
                query: q,
                start: end - 7200 + 300,
                end,
                step: Some(60),
            };
            ((*q).to_owned(), targets.measure(r, runs))
        })
        .collect();
    add(print_table(
        "high cardinality: 100,000 series, 2 h, step 60 s",
        &rows,
    ));
    peaks_so_far();

    // The dashboard: each refresh runs the 10 panels in turn; a row per refresh.
    let mut refreshes = Vec::new();
    for i in 0..runs.max(2) {
        let mut total = Row {
            strata: 0.0,
            prometheus: 0.0,
            victoria: victoria.as_ref().map(|_| 0.0),
            equal: true,
            victoria_equal: victoria.as_ref().map(|_| true),
            series: 0,
        };
        for q in DASHBOARD {
            let r = targets.measure(
                Request {
                    query: q,
                    start: end - 6 * 3600,
                    end,
                    step: Some(30),
                },
                1,
            );
            total.strata += r.strata;
            total.prometheus += r.prometheus;
            total.victoria = total.victoria.zip(r.victoria).map(|(a, b)| a + b);
            total.equal &= r.equal;
            total.victoria_equal = total
                .victoria_equal
                .zip(r.victoria_equal)
                .map(|(a, b)| a && b);
            total.series += r.series;
        }
        refreshes.push((format!("dashboard refresh {} (10 panels)", i + 1), total));
    }
    add(print_table(
        "dashboard: 10 panels, 6 h, step 30 s",
        &refreshes,
    ));
    peaks_so_far();

    let rows: Vec<_> = INSTANT
        .iter()
        .map(|q| {
            let r = Request {
                query: q,
                start: end,
                end,
                step: None,
            };
            ((*q).to_owned(), targets.measure(r, runs))
        })
        .collect();
    add(print_table("instant", &rows));
    peaks_so_far();

    let gm = |logs: &[f64]| (logs.iter().sum::<f64>() / logs.len().max(1) as f64).exp();
    println!(
        "\nall workloads: geometric mean Strata / Prometheus {:.2} over {} timings{}",
        gm(&all.0),
        all.0.len(),
        if all.1.is_empty() {
            String::new()
        } else {
            format!(", VictoriaMetrics / Prometheus {:.2}", gm(&all.1))
        }
    );
    if let Some(vm) = &victoria {
        println!(
            "VictoriaMetrics peak RSS {} KiB",
            peak_rss_kib(vm.child.id())
        );
    }
    println!(
        "peak RSS: strata query {} KiB, strata store {} KiB (sum {} KiB), Prometheus {} KiB",
        peak_rss_kib(query.pid()),
        peak_rss_kib(store.pid()),
        peak_rss_kib(query.pid()) + peak_rss_kib(store.pid()),
        peak_rss_kib(prometheus.pid())
    );
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
            "vmctl prometheus -s --disable-progress-bar --prom-concurrency 2 --prom-snapshot={} --vm-addr={url}",
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
