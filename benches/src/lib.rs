//! Data sets shared by the cross-crate benchmarks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use strata_tsdb::{BlockOptions, BlockWriter, DEFAULT_BLOCK_DURATION};
use strata_types::{Labels, Sample};

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// Peak resident set of a process (`VmHWM`), in KiB; 0 if unreadable.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:").unwrap_or(0)
}

/// The median of some timings.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One generated series: labels and a value for every 15 s step `n`.
#[derive(Debug, Clone)]
pub struct GenSeries {
    pub labels: Labels,
    kind: Kind,
    seed: u64,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Bucket(u32),
    Gauge,
}

impl GenSeries {
    /// The value at step `n` (15 s steps from the data set's start).
    pub fn value(&self, n: i64) -> f64 {
        let wobble = ((n.wrapping_mul(n).wrapping_add(self.seed as i64)) % 7) as f64;
        match self.kind {
            Kind::Counter => (n * (7 + (self.seed % 13) as i64)) as f64 + wobble,
            Kind::Bucket(le_index) => {
                (n * i64::from(le_index + 1) * 3) as f64 + f64::from(le_index)
            }
            Kind::Gauge => 1e9 + ((n as f64) / 40.0 + self.seed as f64).sin() * 1e8 + wobble,
        }
    }
}

/// The benchmark data set: 5,000 counters, 4,000 histogram buckets (400 histograms of 10
/// buckets) and 1,000 gauges: 10,000 series.
pub fn series_set() -> Vec<GenSeries> {
    let mut out = Vec::new();
    for job in 0..10 {
        for instance in 0..100 {
            for code in ["200", "201", "400", "404", "500"] {
                out.push(GenSeries {
                    labels: Labels::from_pairs([
                        ("__name__", "http_requests_total".to_owned()),
                        ("job", format!("job-{job}")),
                        ("instance", format!("10.0.{job}.{instance}:9100")),
                        ("code", code.to_owned()),
                    ]),
                    kind: Kind::Counter,
                    seed: (job * 1000 + instance) as u64,
                });
            }
        }
    }
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
    ];
    for job in 0..10 {
        for instance in 0..40 {
            for (i, le) in bounds.iter().enumerate() {
                out.push(GenSeries {
                    labels: Labels::from_pairs([
                        (
                            "__name__",
                            "http_request_duration_seconds_bucket".to_owned(),
                        ),
                        ("job", format!("job-{job}")),
                        ("instance", format!("10.0.{job}.{instance}:9100")),
                        ("le", (*le).to_owned()),
                    ]),
                    kind: Kind::Bucket(i as u32),
                    seed: (job * 100 + instance) as u64,
                });
            }
        }
    }
    for instance in 0..1000 {
        out.push(GenSeries {
            labels: Labels::from_pairs([
                ("__name__", "node_memory_bytes".to_owned()),
                ("job", format!("job-{}", instance % 10)),
                (
                    "instance",
                    format!("10.0.{}.{}:9100", instance % 10, instance / 10),
                ),
            ]),
            kind: Kind::Gauge,
            seed: instance as u64,
        });
    }
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// Writes `hours` of the data set at 15 s into 2h blocks under `dir`, starting at `start_ms`
/// (aligned to 2h). Returns the number of samples written.
pub fn write_blocks(dir: &Path, start_ms: i64, hours: i64) -> u64 {
    let series = series_set();
    let step = 15_000i64;
    let mut total = 0u64;
    let windows = hours * 3_600_000 / DEFAULT_BLOCK_DURATION;
    for w in 0..windows {
        let from = start_ms + w * DEFAULT_BLOCK_DURATION;
        let to = from + DEFAULT_BLOCK_DURATION;
        let mut writer = BlockWriter::new(dir).unwrap();
        for s in &series {
            let first_n = (from - start_ms) / step;
            let last_n = (to - start_ms) / step;
            let samples: Vec<Sample> = (first_n..last_n)
                .map(|n| Sample::new(start_ms + n * step, s.value(n)))
                .collect();
            total += samples.len() as u64;
            writer
                .add_samples(&s.labels, &samples, DEFAULT_BLOCK_DURATION)
                .unwrap();
        }
        writer
            .finish(BlockOptions {
                min_time: Some(from),
                max_time: Some(to),
                ..BlockOptions::default()
            })
            .unwrap();
    }
    total
}

/// The benchmark queries, by what they exercise.
pub const QUERIES: &[(&str, &str)] = &[
    ("selector", "node_memory_bytes"),
    ("rate", "rate(http_requests_total[5m])"),
    ("sum by", "sum by (job) (rate(http_requests_total[5m]))"),
    (
        "histogram_quantile",
        "histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    (
        "binary join",
        "sum by (instance) (rate(http_requests_total{code=\"500\"}[5m])) / on(instance) sum by (instance) (rate(http_requests_total[5m]))",
    ),
    (
        "subquery",
        "max_over_time(sum by (job) (rate(http_requests_total[5m]))[1h:1m])",
    ),
    (
        "aggregation over time",
        "avg_over_time(node_memory_bytes[10m])",
    ),
    ("topk", "topk(5, rate(http_requests_total[5m]))"),
];

/// Writes one 2h block at `from_ms` (aligned to 2h) of `series` container CPU counters at
/// 60 s (`container_cpu_usage_seconds_total{namespace, pod, container}`: 50 namespaces,
/// `series / 4` pods, 4 containers each), for queries that match ≥ 100,000 series.
/// Returns the number of samples written.
pub fn write_high_cardinality_block(dir: &Path, from_ms: i64, series: usize) -> u64 {
    let step = 60_000i64;
    let mut labels: Vec<Labels> = (0..series)
        .map(|i| {
            let pod = i / 4;
            Labels::from_pairs([
                ("__name__", "container_cpu_usage_seconds_total".to_owned()),
                ("namespace", format!("ns-{}", pod % 50)),
                ("pod", format!("pod-{pod:06}")),
                ("container", format!("c{}", i % 4)),
            ])
        })
        .collect();
    labels.sort();
    let mut writer = BlockWriter::new(dir).unwrap();
    let mut total = 0u64;
    for (i, l) in labels.iter().enumerate() {
        let rate = 0.05 + (i % 97) as f64 / 100.0;
        let samples: Vec<Sample> = (0..DEFAULT_BLOCK_DURATION / step)
            .map(|n| {
                Sample::new(
                    from_ms + n * step,
                    (n as f64) * 60.0 * rate + (i % 5) as f64,
                )
            })
            .collect();
        total += samples.len() as u64;
        writer
            .add_samples(l, &samples, DEFAULT_BLOCK_DURATION)
            .unwrap();
    }
    writer
        .finish(BlockOptions {
            min_time: Some(from_ms),
            max_time: Some(from_ms + DEFAULT_BLOCK_DURATION),
            ..BlockOptions::default()
        })
        .unwrap();
    total
}

/// A query answer (matrix, vector or scalar JSON) in a comparable form: each series' labels
/// (without `drop`) and its values as the API printed them.
pub fn answer_of(
    body: &serde_json::Value,
    drop: &str,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let data = &body["data"];
    let mut out = std::collections::BTreeMap::new();
    let key = |metric: &serde_json::Value| {
        let mut pairs: Vec<String> = metric
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.as_str() != drop)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect()
            })
            .unwrap_or_default();
        pairs.sort();
        pairs.join(",")
    };
    let point = |p: &serde_json::Value| format!("{}@{}", p[1].as_str().unwrap_or(""), p[0]);
    match data["resultType"].as_str() {
        Some("matrix") | Some("vector") => {
            for s in data["result"].as_array().into_iter().flatten() {
                let values = match s["values"].as_array() {
                    Some(values) => values.iter().map(point).collect(),
                    None => vec![point(&s["value"])],
                };
                out.insert(key(&s["metric"]), values);
            }
        }
        _ => {
            out.insert(String::new(), vec![point(&data["result"])]);
        }
    }
    out
}
