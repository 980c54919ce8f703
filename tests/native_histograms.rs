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
