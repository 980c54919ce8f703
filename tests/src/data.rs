//! Deterministic test data shaped like real Prometheus metrics, rendered as OpenMetrics for
//! promtool and kept as the exact samples it stands for.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use strata_types::{Labels, Sample};

/// splitmix64: small, deterministic, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// One metric family: its OpenMetrics type, and series with samples.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub kind: &'static str,
    pub series: Vec<(Labels, Vec<Sample>)>,
}

/// A generated data set.
#[derive(Debug, Clone)]
pub struct DataSet {
    pub families: Vec<Family>,
    pub start_ms: i64,
    pub end_ms: i64,
}

fn labels(name: &str, pairs: &[(&str, &str)]) -> Labels {
    let mut all: Vec<(String, String)> = vec![("__name__".to_owned(), name.to_owned())];
    all.extend(
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    Labels::from_pairs(all)
}

impl DataSet {
    /// Counters with resets, gauges with full-precision values, a classic histogram, series
    /// that start and stop, gaps, special values and millisecond-jittered timestamps.
    pub fn generate(seed: u64, start_s: i64, hours: i64) -> DataSet {
        let mut rng = Rng::new(seed);
        let start_ms = start_s * 1000;
        let end_ms = start_ms + hours * 3_600_000;
        let step = 15_000i64;
        let grid: Vec<i64> = (start_ms..end_ms).step_by(step as usize).collect();
        let mut families = Vec::new();

        // Counters with occasional resets.
        let mut counters = Vec::new();
        for job in ["api", "web"] {
            for instance in ["10.0.0.1:9100", "10.0.0.2:9100", "10.0.0.3:9100"] {
                for code in ["200", "500"] {
                    let mut value = rng.below(1000) as f64;
                    let mut samples = Vec::with_capacity(grid.len());
                    for &t in &grid {
                        if rng.below(400) == 0 {
                            value = 0.0;
                        } else {
                            value +=
                                rng.below(50) as f64 + if rng.below(4) == 0 { 0.5 } else { 0.0 };
                        }
                        samples.push(Sample::new(t, value));
                    }
                    counters.push((
                        labels(
                            "http_requests_total",
                            &[("job", job), ("instance", instance), ("code", code)],
                        ),
                        samples,
                    ));
                }
            }
        }
        families.push(Family {
            name: "http_requests".into(),
            kind: "counter",
            series: counters,
        });

        // Gauges with arbitrary doubles.
        let mut gauges = Vec::new();
        for room in ["lab", "office", "server"] {
            let samples = grid
                .iter()
                .map(|&t| Sample::new(t, rng.unit() * 80.0 - 30.0))
                .collect();
            gauges.push((labels("temperature_celsius", &[("room", room)]), samples));
        }
        families.push(Family {
            name: "temperature_celsius".into(),
            kind: "gauge",
            series: gauges,
        });

        // A classic histogram: cumulative buckets, _sum and _count.
        let bounds = ["0.05", "0.1", "0.5", "1", "+Inf"];
        let mut cumulative = [0u64; 5];
        let mut sum = 0.0f64;
        let mut per_bucket: Vec<Vec<Sample>> = vec![Vec::new(); 5];
        let mut sums = Vec::new();
        let mut counts = Vec::new();
        for &t in &grid {
            for _ in 0..rng.below(20) {
                let observation = rng.unit() * 1.5;
                sum += observation;
                let first = bounds
                    .iter()
                    .position(|b| b.parse::<f64>().map_or(true, |b| observation <= b))
                    .unwrap_or(4);
                for slot in cumulative.iter_mut().skip(first) {
                    *slot += 1;
                }
            }
            for (i, samples) in per_bucket.iter_mut().enumerate() {
                samples.push(Sample::new(t, cumulative[i] as f64));
            }
            sums.push(Sample::new(t, sum));
            counts.push(Sample::new(t, cumulative[4] as f64));
        }
        let mut histogram = Vec::new();
        for (bound, samples) in bounds.iter().zip(per_bucket) {
            histogram.push((
                labels(
                    "request_duration_seconds_bucket",
                    &[("job", "api"), ("le", bound)],
                ),
                samples,
            ));
        }
        histogram.push((
            labels("request_duration_seconds_sum", &[("job", "api")]),
            sums,
        ));
        histogram.push((
            labels("request_duration_seconds_count", &[("job", "api")]),
            counts,
        ));
        families.push(Family {
            name: "request_duration_seconds".into(),
            kind: "histogram",
            series: histogram,
        });

        // Series that start late and stop early, and one with gaps and special values.
        let span = end_ms - start_ms;
        let batch: Vec<Sample> = grid
            .iter()
            .filter(|&&t| t >= start_ms + span * 4 / 10 && t < start_ms + span * 7 / 10)
            .map(|&t| Sample::new(t, (t / 1000) as f64))
            .collect();
        let mut flaky = Vec::new();
        for &t in &grid {
            let offset = t - start_ms;
            if (3_600_000..5_400_000).contains(&offset)
                || (14_400_000..14_700_000).contains(&offset)
            {
                continue;
            }
            let v = match rng.below(100) {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                _ => rng.unit() * 1e6,
            };
            flaky.push(Sample::new(t, v));
        }
        let mut jittered = Vec::new();
        let mut t = start_ms + 7;
        while t < end_ms {
            jittered.push(Sample::new(t, rng.below(10) as f64));
            t += 10_000 + rng.below(9_000) as i64;
        }
        // Values across the range of float formatting: tiny, huge, long mantissas, -0.
        let specials = [
            1e-7,
            2.5e-5,
            0.0001,
            123456.0,
            1234567.0,
            1.5e21,
            -3.25e-9,
            123456789.125,
            0.1 + 0.2,
            -0.0,
        ];
        let extreme: Vec<Sample> = grid
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                Sample::new(
                    t,
                    specials[i % specials.len()] * (1.0 + (i / specials.len()) as f64),
                )
            })
            .collect();
        families.push(Family {
            name: "misc_gauge".into(),
            kind: "gauge",
            series: vec![
                (labels("misc_gauge", &[("kind", "batch")]), batch),
                (labels("misc_gauge", &[("kind", "flaky")]), flaky),
                (labels("misc_gauge", &[("kind", "extreme")]), extreme),
                (labels("misc_gauge", &[("kind", "jittered")]), jittered),
            ],
        });
        DataSet {
            families,
            start_ms,
            end_ms,
        }
    }

    /// Every series with its samples, keyed by labels.
    pub fn series(&self) -> BTreeMap<Labels, Vec<Sample>> {
        self.families
            .iter()
            .flat_map(|f| f.series.iter().cloned())
            .collect()
    }

    /// The data as an OpenMetrics text file (timestamps in seconds with millisecond decimals).
    pub fn to_openmetrics(&self) -> String {
        let mut out = String::new();
        for family in &self.families {
            writeln!(out, "# TYPE {} {}", family.name, family.kind).unwrap();
            for (labels, samples) in &family.series {
                let name = labels.metric_name().unwrap_or_default();
                let rest: Vec<String> = labels
                    .iter()
                    .filter(|l| l.name != "__name__")
                    .map(|l| format!("{}=\"{}\"", l.name, l.value))
                    .collect();
                let selector = if rest.is_empty() {
                    name.to_owned()
                } else {
                    format!("{name}{{{}}}", rest.join(","))
                };
                for s in samples {
                    writeln!(
                        out,
                        "{selector} {} {}.{:03}",
                        format_value(s.v),
                        s.t / 1000,
                        s.t % 1000
                    )
                    .unwrap();
                }
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Rust's Display prints the shortest representation that parses back exactly.
        format!("{v}")
    }
}

/// PromQL queries over the metrics of [`DataSet`]: selectors, rates, aggregations, joins,
/// `*_over_time`, histograms, subqueries.
pub const QUERIES: &[&str] = &[
    "http_requests_total",
    "http_requests_total{job=\"api\",code!=\"500\"}",
    "{__name__=~\"http_.*\", instance=~\"10.0.0.[12]:9100\"}",
    "rate(http_requests_total[5m])",
    "irate(http_requests_total[5m])",
    "increase(http_requests_total[1h])",
    "sum by (job) (rate(http_requests_total[5m]))",
    "sum without (instance) (rate(http_requests_total[10m]))",
    "avg by (code) (http_requests_total)",
    "count by (job) (http_requests_total > 5000)",
    "topk(3, http_requests_total)",
    "quantile(0.9, http_requests_total)",
    "resets(http_requests_total[2h])",
    "changes(temperature_celsius[30m])",
    "deriv(temperature_celsius[20m])",
    "avg_over_time(temperature_celsius[30m])",
    "max_over_time(misc_gauge[30m])",
    "count_over_time(misc_gauge[20m])",
    "last_over_time(misc_gauge[10m])",
    "quantile_over_time(0.75, temperature_celsius[1h])",
    "absent(nonexistent{job=\"x\"})",
    "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[10m])))",
    "rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])",
    "http_requests_total / on(instance, job) group_left sum by (instance, job) (http_requests_total)",
    "http_requests_total > bool 10000",
    "http_requests_total{job=\"api\"} or temperature_celsius",
    "clamp(temperature_celsius, -10, 20)",
    "timestamp(temperature_celsius)",
    "scalar(sum(temperature_celsius)) * 2",
    "label_replace(http_requests_total, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "sum(rate(http_requests_total[5m] offset 10m))",
    "max_over_time(rate(http_requests_total[5m])[30m:1m])",
    "1 + 2 * 3 / 4 - 5 ^ 2",
];
