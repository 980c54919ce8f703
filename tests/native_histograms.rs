//! Native histogram chunks written by the real Prometheus 3.5.3: it scrapes its own native
//! histograms (`prometheus_http_request_duration_seconds`, integer histograms) and records
//! their rate (float gauge histograms) every second; its head is snapshotted into a block.
//! Every histogram chunk of that block decodes whole, its histograms are consistent (count
//! = zero count + buckets for integer histograms), and encoding the decoded histograms
//! again gives Prometheus' bytes exactly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use strata_chunkenc::{
    Encoding, FloatHistogramEncoder, FloatHistogramIter, HistogramEncoder, HistogramIter,
};
use strata_e2e::block_dirs;
use strata_e2e::prometheus::Prometheus;
use strata_tsdb::BlockReader;
use strata_types::{MatchType, Matcher};

const RULES: &str = "groups:
  - name: histograms
    interval: 1s
    rules:
      - record: handler:prometheus_http_request_duration_seconds:rate5s
        expr: rate(prometheus_http_request_duration_seconds[5s])
      - record: prometheus_http_request_duration_seconds:sum
        expr: sum(prometheus_http_request_duration_seconds)
";

#[test]
fn prometheus_histogram_chunks_decode_and_reencode_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start_native_histograms(dir.path(), RULES);
    // Requests of varied cost, so buckets appear over time (and chunks get recoded).
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut i = 0u64;
    while Instant::now() < deadline {
        i += 1;
        let q = match i % 4 {
            0 => "up",
            1 => "rate(prometheus_http_request_duration_seconds[10s])",
            2 => "histogram_quantile(0.9, rate(prometheus_http_request_duration_seconds[10s]))",
            _ => "count({__name__=~\".+\"})",
        };
        prometheus.query(q, 0.0);
        prometheus.get_json("/api/v1/labels", &[]);
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(50 + (i % 7) * 30));
    }
    let answer = prometheus.query(
        "prometheus_http_request_duration_seconds{handler=\"/metrics\"}",
        unix_now(),
    );
    assert!(
        answer["data"]["result"][0]["histogram"].is_array(),
        "Prometheus scrapes a native histogram: {answer}"
    );
    let snapshot = prometheus.snapshot();
    let blocks = block_dirs(&snapshot);
    assert!(!blocks.is_empty(), "no block in {}", snapshot.display());

    let mut counts = [0usize; 4]; // integer chunks, float chunks, histograms, float histograms
    let mut headers = std::collections::BTreeMap::new();
    let mut layouts_per_series = 0usize;
    for block_dir in &blocks {
        let block = BlockReader::open(block_dir).unwrap();
        let all = Matcher::new(MatchType::Regex, "__name__", ".+").unwrap();
        for series_ref in block.select(&[all]).unwrap() {
            let entry = block.series(series_ref).unwrap();
            let mut layouts = std::collections::BTreeSet::new();
            for meta in &entry.chunks {
                let chunk = block.chunks().chunk(meta.chunk_ref).unwrap();
                let data = chunk.data.as_ref();
                match chunk.encoding {
                    Encoding::Histogram => {
                        counts[0] += 1;
                        let mut it = HistogramIter::new(data).unwrap();
                        let header = it.header();
                        *headers.entry(format!("{header:?}")).or_insert(0) += 1;
                        let read: Vec<_> = it.by_ref().collect();
                        it.finish()
                            .unwrap_or_else(|e| panic!("{}: {e}", entry.labels));
                        counts[2] += read.len();
                        let mut again = HistogramEncoder::new(header);
                        for (t, h) in &read {
                            if !strata_types::is_stale_nan(h.sum) {
                                let buckets: i64 = h
                                    .to_float()
                                    .positive_buckets
                                    .iter()
                                    .chain(&h.to_float().negative_buckets)
                                    .map(|v| *v as i64)
                                    .sum();
                                assert_eq!(
                                    h.count,
                                    h.zero_count + buckets as u64,
                                    "{} at {t}",
                                    entry.labels
                                );
                                layouts.insert(format!("{:?}", h.positive_spans));
                            }
                            again.append(*t, h).unwrap();
                        }
                        assert_eq!(
                            again.bytes(),
                            data,
                            "{} chunk {}",
                            entry.labels,
                            meta.chunk_ref
                        );
                    }
                    Encoding::FloatHistogram => {
                        counts[1] += 1;
                        let mut it = FloatHistogramIter::new(data).unwrap();
                        let header = it.header();
                        *headers.entry(format!("float {header:?}")).or_insert(0) += 1;
                        let read: Vec<_> = it.by_ref().collect();
                        it.finish()
                            .unwrap_or_else(|e| panic!("{}: {e}", entry.labels));
                        counts[3] += read.len();
                        let mut again = FloatHistogramEncoder::new(header);
                        for (t, h) in &read {
                            again.append(*t, h).unwrap();
                        }
                        assert_eq!(
                            again.bytes(),
                            data,
                            "{} chunk {}",
                            entry.labels,
                            meta.chunk_ref
                        );
                    }
                    _ => {}
                }
            }
            layouts_per_series = layouts_per_series.max(layouts.len());
        }
    }
    eprintln!(
        "{} integer histogram chunks ({} histograms), {} float histogram chunks ({} histograms); headers {headers:?}; at most {layouts_per_series} bucket layouts in one series",
        counts[0], counts[2], counts[1], counts[3]
    );
    assert!(counts[0] > 0 && counts[1] > 0, "{counts:?}");
    assert!(headers.contains_key("float Gauge"), "{headers:?}");
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Instant queries over native histograms (integer histograms scraped, float gauge
/// histograms recorded) that Strata answers like Prometheus 3.5.3: the `histogram` JSON and
/// the histogram functions.
const INSTANT: &[&str] = &[
    "prometheus_http_request_duration_seconds",
    "handler:prometheus_http_request_duration_seconds:rate5s",
    "prometheus_http_request_duration_seconds{handler=\"/metrics\"}[10s]",
    "histogram_count(prometheus_http_request_duration_seconds)",
    "histogram_sum(prometheus_http_request_duration_seconds)",
    "histogram_avg(prometheus_http_request_duration_seconds)",
    "histogram_stddev(prometheus_http_request_duration_seconds)",
    "histogram_stdvar(handler:prometheus_http_request_duration_seconds:rate5s)",
    "histogram_quantile(0.9, prometheus_http_request_duration_seconds)",
    "histogram_quantile(0.5, handler:prometheus_http_request_duration_seconds:rate5s)",
    "histogram_quantile(0.1, prometheus_http_request_duration_seconds)",
    "histogram_fraction(0, 0.001, prometheus_http_request_duration_seconds)",
    "histogram_fraction(0.0001, 0.1, handler:prometheus_http_request_duration_seconds:rate5s)",
    "rate(prometheus_http_request_duration_seconds[10s])",
    "increase(prometheus_http_request_duration_seconds[10s])",
    "sum(rate(prometheus_http_request_duration_seconds[10s]))",
    "sum by (handler) (prometheus_http_request_duration_seconds)",
    "sum(handler:prometheus_http_request_duration_seconds:rate5s)",
    "histogram_quantile(0.9, sum(rate(prometheus_http_request_duration_seconds[10s])))",
    "histogram_count(sum(rate(prometheus_http_request_duration_seconds[10s])))",
    "delta(handler:prometheus_http_request_duration_seconds:rate5s[10s])",
    "rate(handler:prometheus_http_request_duration_seconds:rate5s[10s])",
    "avg(rate(prometheus_http_request_duration_seconds[10s]))",
    "count(prometheus_http_request_duration_seconds)",
    "max(prometheus_http_request_duration_seconds)",
    "sum(rate(prometheus_http_request_duration_seconds[10s])) * 60",
    "histogram_quantile(0.5, sum(increase(prometheus_http_request_duration_seconds[10s])) / 10)",
    "last_over_time(prometheus_http_request_duration_seconds[10s])",
    "count_over_time(prometheus_http_request_duration_seconds[10s])",
    "histogram_count(avg_over_time(handler:prometheus_http_request_duration_seconds:rate5s[10s]))",
    "label_replace(prometheus_http_request_duration_seconds, \"h\", \"$1\", \"handler\", \"(.*)\")",
    "prometheus_http_request_duration_seconds or vector(1)",
    "resets(prometheus_http_request_duration_seconds[10s])",
    "irate(prometheus_http_request_duration_seconds[10s])",
    "histogram_quantile(0.9, sum(rate(prometheus_http_request_duration_seconds[5s:1s])))",
];

/// Range queries over native histograms.
const RANGE: &[&str] = &[
    "prometheus_http_request_duration_seconds{handler=\"/metrics\"}",
    "histogram_count(prometheus_http_request_duration_seconds)",
    "histogram_quantile(0.99, prometheus_http_request_duration_seconds)",
    "sum(rate(prometheus_http_request_duration_seconds[5s]))",
    "histogram_quantile(0.9, sum by (handler) (rate(prometheus_http_request_duration_seconds[5s])))",
];

/// `data.result` with `drop` labels removed, sorted by labels.
fn result_without(answer: &serde_json::Value, drop: &str) -> Vec<serde_json::Value> {
    let mut result: Vec<serde_json::Value> = answer["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {answer}"))
        .clone();
    for r in &mut result {
        if let Some(metric) = r["metric"].as_object_mut() {
            metric.remove(drop);
        }
    }
    result.sort_by_key(|r| r["metric"].to_string());
    result
}

/// The same native histograms read through `strata sidecar` (streamed remote read from a
/// live Prometheus 3.5.3) and through `strata store` (the block of a snapshot of it in a
/// bucket), each behind a `strata query`, and range queries also through `strata
/// query-frontend`: the answers equal Prometheus' own, histogram JSON included; what the engine does not do yet with histograms is refused, not answered
/// differently.
#[test]
fn queries_over_native_histograms_answer_as_prometheus() {
    use strata_e2e::prometheus::get_json;
    use strata_e2e::store_api::{StrataProcess, upload_block};

    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start_native_histograms_with_labels(
        &dir.path().join("prom"),
        RULES,
        &[("cluster", "eu1")],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut i = 0u64;
    while Instant::now() < deadline {
        i += 1;
        let q = if i.is_multiple_of(2) {
            "up"
        } else {
            "count({__name__=~\".+\"})"
        };
        prometheus.query(q, 0.0);
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(40 + (i % 5) * 30));
    }
    let snapshot = prometheus.snapshot();
    let eval = unix_now().floor() - 3.0;

    let bucket_dir = dir.path().join("bucket");
    let bucket_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket_dir.display()
    );
    let bucket = strata_objstore::Bucket::from_yaml(&bucket_yaml, None).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let blocks = block_dirs(&snapshot);
    for block in &blocks {
        rt.block_on(upload_block(&bucket, block, &[("cluster", "eu1")]));
    }
    let sidecar = StrataProcess::start(&[
        "sidecar",
        "--prometheus.url",
        &prometheus.url(),
        "--tsdb.path",
        dir.path().join("prom").to_str().unwrap(),
    ]);
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &bucket_yaml,
        "--data-dir",
        dir.path().join("store").to_str().unwrap(),
    ]);
    let loaded = format!("thanos_bucket_store_blocks_loaded {}", blocks.len());
    let wait = Instant::now() + Duration::from_secs(30);
    while !store.http_get("/metrics").contains(&loaded) {
        assert!(Instant::now() < wait, "the store never loaded the blocks");
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(200));
    }
    let queriers: Vec<(&str, StrataProcess)> = [("sidecar", &sidecar), ("store", &store)]
        .into_iter()
        .map(|(name, endpoint)| {
            let q = StrataProcess::start(&["query", "--endpoint", &endpoint.grpc]);
            (name, q)
        })
        .collect();
    for (name, q) in &queriers {
        let url = format!("http://{}", q.http);
        let wait = Instant::now() + Duration::from_secs(30);
        loop {
            let up = get_json(
                &url,
                "/api/v1/query",
                &[("query", "up"), ("time", &eval.to_string())],
            );
            if up["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                break;
            }
            assert!(
                Instant::now() < wait,
                "{name}: the querier never answered: {up}"
            );
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // The query frontend in front of the first querier, splitting ranges by 5 s (and caching
    // the parts): its merged answers equal the whole-range ones.
    let frontend = StrataProcess::start_http_only(&[
        "query-frontend",
        "--query-frontend.downstream-url",
        &format!("http://{}", queriers[0].1.http),
        "--query-range.split-interval",
        "5s",
    ]);
    let frontend_url = format!("http://{}", frontend.http);

    let time = eval.to_string();
    let mut compared = 0;
    for query in INSTANT {
        let theirs = prometheus.get_json("/api/v1/query", &[("query", query), ("time", &time)]);
        let want = result_without(&theirs, "cluster");
        // Empty only where Prometheus says why (an info or a warning).
        assert!(
            !want.is_empty() || !theirs["infos"].is_null() || !theirs["warnings"].is_null(),
            "{query}: Prometheus has no data: {theirs}"
        );
        for (name, q) in &queriers {
            let url = format!("http://{}", q.http);
            let ours = get_json(&url, "/api/v1/query", &[("query", query), ("time", &time)]);
            assert_eq!(ours["status"], "success", "{name}: {query}: {ours}");
            assert_eq!(
                ours["data"]["resultType"], theirs["data"]["resultType"],
                "{name}: {query}"
            );
            let got = result_without(&ours, "cluster");
            assert_eq!(got, want, "{name}: {query}");
            for key in ["warnings", "infos"] {
                assert_eq!(ours[key], theirs[key], "{name}: {query}: {key}");
            }
            compared += got.len();
        }
    }
    let (start, end) = ((eval - 10.0).to_string(), time.clone());
    for query in RANGE {
        let params = [
            ("query", *query),
            ("start", start.as_str()),
            ("end", end.as_str()),
            ("step", "1"),
        ];
        let theirs = prometheus.get_json("/api/v1/query_range", &params);
        let want = result_without(&theirs, "cluster");
        assert!(
            !want.is_empty(),
            "{query}: Prometheus has no data: {theirs}"
        );
        let mut urls: Vec<(&str, String)> = queriers
            .iter()
            .map(|(name, q)| (*name, format!("http://{}", q.http)))
            .collect();
        // Twice through the frontend: split and computed, then from its cache.
        urls.push(("frontend", frontend_url.clone()));
        urls.push(("frontend, cached", frontend_url.clone()));
        for (name, url) in &urls {
            let got = result_without(&get_json(url, "/api/v1/query_range", &params), "cluster");
            assert_eq!(got, want, "{name}: {query}");
            compared += got.len();
        }
    }
    // What the engine does not handle yet is an error naming the series, not a different
    // answer.
    for (name, q) in &queriers {
        let url = format!("http://{}", q.http);
        let ours = get_json(
            &url,
            "/api/v1/query",
            &[
                (
                    "query",
                    "count_values(\"v\", prometheus_http_request_duration_seconds)",
                ),
                ("time", &time),
            ],
        );
        assert_eq!(ours["status"], "error", "{name}: {ours}");
        assert!(
            ours["error"]
                .as_str()
                .is_some_and(|e| e.contains("native histogram")),
            "{name}: {ours}"
        );
    }
    eprintln!(
        "{} instant and {} range queries over native histograms through sidecar and store: {compared} series equal Prometheus 3.5.3's",
        INSTANT.len(),
        RANGE.len()
    );
}
