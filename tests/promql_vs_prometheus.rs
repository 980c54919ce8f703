//! Differential test: our engine and a real Prometheus 3.5.3 evaluate the same queries over
//! the same promtool-written blocks; results must agree within a relative 1e-9.
//!
//! Evaluation times are off the sample grid (samples are on whole seconds, queries at
//! .567 s); docs/promql-differences.md lists what is known to differ (nothing, on float
//! data).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use strata_e2e::blocks_queryable::BlocksQueryable;
use strata_e2e::data::DataSet;
use strata_e2e::prometheus::{Answer, Prometheus, compare_answers, parse_answer};
use strata_e2e::{copy_dir, promtool_create_blocks};
use strata_promql::{Engine, EngineOptions, Value};

const START_S: i64 = 1_700_000_000;
const HOURS: i64 = 6;

type Result = Answer;

/// Warnings and infos as sets (Prometheus keeps them in a map: their order is random).
type Notes = (
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
);

fn prometheus_notes(body: &serde_json::Value) -> Notes {
    let set = |key: &str| {
        body[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    (set("warnings"), set("infos"))
}

fn engine_notes(
    value: &std::result::Result<strata_promql::QueryResult, strata_promql::Error>,
    query: &str,
) -> Notes {
    let Ok(result) = value else {
        return Notes::default();
    };
    let (w, i) = result.annotations.as_strings(query, 10);
    (w.into_iter().collect(), i.into_iter().collect())
}

fn from_engine(
    value: std::result::Result<strata_promql::QueryResult, strata_promql::Error>,
    instant_time: f64,
) -> std::result::Result<Result, String> {
    let value = value.map_err(|e| e.to_string())?.value;
    let mut out = Result::new();
    match value {
        Value::Scalar { v, .. } => {
            out.insert("scalar".into(), vec![(instant_time, v)]);
        }
        Value::Vector(v) => {
            for e in v {
                out.insert(e.labels.to_string(), vec![(instant_time, e.v)]);
            }
        }
        Value::Matrix(m) => {
            for s in m {
                out.insert(
                    s.labels.to_string(),
                    s.samples
                        .iter()
                        .map(|p| (p.t as f64 / 1000.0, p.v))
                        .collect(),
                );
            }
        }
        Value::String { .. } => return Err("string result".into()),
    }
    Ok(out)
}

/// The queries: every function family over the generated metrics.
fn queries() -> Vec<String> {
    let mut q: Vec<String> = [
        "http_requests_total",
        "http_requests_total{job=\"api\",code!=\"500\"}",
        "{__name__=~\"http_.*\", instance=~\"10.0.0.[12]:9100\"}",
        "rate(http_requests_total[5m])",
        "irate(http_requests_total[5m])",
        "increase(http_requests_total[1h])",
        "sum by (job) (rate(http_requests_total[5m]))",
        "sum without (instance) (rate(http_requests_total[10m]))",
        "avg by (code) (http_requests_total)",
        "max by (job) (http_requests_total) - min by (job) (http_requests_total)",
        "count by (job) (http_requests_total > 5000)",
        "count_values(\"code\", http_requests_total > 1e9)",
        "stddev by (job) (http_requests_total)",
        "stdvar(temperature_celsius)",
        "topk(3, http_requests_total)",
        "bottomk(2, temperature_celsius)",
        "quantile(0.9, http_requests_total)",
        "group by (instance) (http_requests_total)",
        "resets(http_requests_total[2h])",
        "changes(temperature_celsius[30m])",
        "delta(temperature_celsius[15m])",
        "idelta(temperature_celsius[15m])",
        "deriv(temperature_celsius[20m])",
        "predict_linear(http_requests_total[30m], 3600)",
        "avg_over_time(temperature_celsius[30m])",
        "min_over_time(temperature_celsius[1h])",
        "max_over_time(misc_gauge[30m])",
        "sum_over_time(temperature_celsius[10m])",
        "count_over_time(misc_gauge[20m])",
        "stddev_over_time(temperature_celsius[1h])",
        "stdvar_over_time(temperature_celsius[1h])",
        "last_over_time(misc_gauge[10m])",
        "present_over_time(misc_gauge{kind=\"batch\"}[10m])",
        "quantile_over_time(0.75, temperature_celsius[1h])",
        "absent(nonexistent{job=\"x\"})",
        "absent_over_time(misc_gauge{kind=\"batch\"}[5m])",
        "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[10m])))",
        "histogram_quantile(0.5, rate(request_duration_seconds_bucket[5m]))",
        "rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])",
        "http_requests_total / on(instance, job) group_left sum by (instance, job) (http_requests_total)",
        "http_requests_total{code=\"200\"} / ignoring(code) http_requests_total{code=\"500\"}",
        "http_requests_total > bool 10000",
        "temperature_celsius > 10",
        "10 < temperature_celsius",
        "http_requests_total{job=\"api\"} and http_requests_total{code=\"500\"}",
        "http_requests_total{job=\"api\"} or temperature_celsius",
        "http_requests_total unless http_requests_total{code=\"200\"}",
        "-temperature_celsius",
        "abs(temperature_celsius) + ceil(temperature_celsius) - floor(temperature_celsius)",
        "round(temperature_celsius, 0.25)",
        "clamp(temperature_celsius, -10, 20)",
        "clamp_min(temperature_celsius, 0) * clamp_max(temperature_celsius, 30)",
        "sqrt(abs(temperature_celsius)) ^ 2",
        "exp(temperature_celsius / 100) + ln(abs(temperature_celsius) + 1) + log2(http_requests_total + 1) + log10(http_requests_total + 1)",
        "sgn(temperature_celsius)",
        "timestamp(temperature_celsius)",
        "scalar(sum(temperature_celsius)) * 2",
        "vector(1) + time() - time()",
        "hour() + minute() + day_of_week() + day_of_month() + month() + year()",
        "label_replace(http_requests_total, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
        "label_join(http_requests_total, \"combo\", \"-\", \"job\", \"code\")",
        "sort(temperature_celsius)",
        "sum(rate(http_requests_total[5m] offset 10m))",
        "max_over_time(rate(http_requests_total[5m])[30m:1m])",
        "avg_over_time(temperature_celsius[20m:2m] offset 5m)",
        "rate(http_requests_total[5m] @ 1700010000)",
        "temperature_celsius @ end()",
        "sum(http_requests_total) % 7 atan2 3",
        "1 + 2 * 3 / 4 - 5 ^ 2",
        // Annotations (Prometheus' warnings and infos, with their positions).
        "rate(temperature_celsius[5m])",
        "sum by (room) (increase(temperature_celsius[10m])) + on() group_left sum(rate(misc_gauge[5m]))",
        "quantile(1.5, http_requests_total)",
        "quantile_over_time(-0.5, temperature_celsius[10m])",
        "histogram_quantile(2, rate(request_duration_seconds_bucket[5m]))",
        "histogram_quantile(0.9, temperature_celsius)",
        "rate(http_requests_total[5m])\n  / rate(temperature_celsius[5m])",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    q.sort();
    q.dedup();
    q
}

#[test]
fn engine_agrees_with_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(11, START_S, HOURS);
    let input = dir.path().join("data.om");
    std::fs::write(&input, data.to_openmetrics()).unwrap();
    let blocks = dir.path().join("blocks");
    promtool_create_blocks(&input, &blocks);
    let prom_dir = dir.path().join("prometheus");
    copy_dir(&blocks, &prom_dir);
    let prometheus = Prometheus::start_on_blocks(&prom_dir);
    let queryable = BlocksQueryable::open(&blocks);
    let engine = Engine::new(EngineOptions::default());

    let mut compared = 0;
    let mut annotated = 0usize;
    let mut both_failed = Vec::new();
    let mut points = 0usize;
    let mut failures = Vec::new();
    for query in queries() {
        // Instant queries at times off the sample grid.
        for i in 0..4 {
            let time_s = START_S as f64 + 1234.567 + f64::from(i) * 4321.25;
            let body = prometheus.query(&query, time_s);
            let theirs = parse_answer(&body, &[]);
            let result = engine.instant_query(&queryable, &query, (time_s * 1000.0).round() as i64);
            let (their_notes, our_notes) = (prometheus_notes(&body), engine_notes(&result, &query));
            annotated += usize::from(!their_notes.0.is_empty() || !their_notes.1.is_empty());
            if their_notes != our_notes {
                failures.push(format!(
                    "annotations of {query}: ours {our_notes:?}, Prometheus {their_notes:?}"
                ));
            }
            let ours = from_engine(result, time_s);
            compared += 1;
            match (ours, theirs) {
                (Ok(o), Ok(t)) => {
                    points += t.values().map(Vec::len).sum::<usize>();
                    failures.extend(compare_answers(&query, &o, &t));
                }
                (Err(e), Err(_)) => both_failed.push(format!("{query}: {e}")),
                (o, t) => failures.push(format!("{query}: ours {o:?}, Prometheus {t:?}")),
            }
        }
        // A range query over the whole data set.
        let (start, end, step) = (
            START_S as f64 + 600.567,
            (START_S + HOURS * 3600) as f64,
            137.0,
        );
        let body = prometheus.query_range(&query, start, end, step);
        let theirs = parse_answer(&body, &[]);
        let result = engine.range_query(
            &queryable,
            &query,
            (start * 1000.0).round() as i64,
            (end * 1000.0).round() as i64,
            (step * 1000.0) as i64,
        );
        let (their_notes, our_notes) = (prometheus_notes(&body), engine_notes(&result, &query));
        annotated += usize::from(!their_notes.0.is_empty() || !their_notes.1.is_empty());
        if their_notes != our_notes {
            failures.push(format!(
                "annotations of range {query}: ours {our_notes:?}, Prometheus {their_notes:?}"
            ));
        }
        let ours = from_engine(result, 0.0);
        compared += 1;
        match (ours, theirs) {
            (Ok(o), Ok(t)) => {
                points += t.values().map(Vec::len).sum::<usize>();
                failures.extend(compare_answers(&format!("range {query}"), &o, &t));
            }
            (Err(e), Err(_)) => both_failed.push(format!("range {query}: {e}")),
            (o, t) => failures.push(format!("range {query}: ours {o:?}, Prometheus {t:?}")),
        }
    }
    eprintln!(
        "compared {compared} query results ({points} points, {annotated} with annotations) with Prometheus 3.5.3; {} differ; {} failed in both",
        failures.len(),
        both_failed.len()
    );
    assert!(annotated >= 30, "too few annotated answers: {annotated}");
    for f in &both_failed {
        eprintln!("  both failed: {f}");
    }
    // Every query here is valid: an error on both sides would hide a broken comparison.
    assert!(both_failed.is_empty());
    assert!(points > 40_000, "too few points compared: {points}");
    for f in failures.iter().take(20) {
        eprintln!("  {}", &f[..f.len().min(600)]);
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} results differ",
        failures.len()
    );
}

/// The parse error (`line:col: parse error: message`) or "OK" Prometheus' answer carries.
fn prometheus_parse_result(body: &serde_json::Value) -> Option<String> {
    if body["status"] == "success" {
        return Some("OK".to_owned());
    }
    if body["errorType"] != "bad_data" {
        // Parsed, then failed in evaluation (e.g. count_values with a bad label name).
        return None;
    }
    let error = body["error"].as_str().unwrap_or("");
    Some(
        error
            .strip_prefix("invalid parameter \"query\": ")
            .unwrap_or(error)
            .to_owned(),
    )
}

/// Malformed queries (hand-written ones, every prefix and one-character deletion of long
/// queries, and random token insertions and deletions) get Prometheus' parse error: the
/// same message at the same line and column. Queries where Prometheus 3, whose grammar the
/// engine follows, differs from 2.42 are listed with the reason in
/// tests/data/promql_parse_errors_known.txt.
#[test]
fn parse_errors_match_prometheus() {
    let corpus = include_str!("data/promql_parse_errors.txt");
    let known: std::collections::HashMap<&str, &str> =
        include_str!("data/promql_parse_errors_known.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('\t'))
            .map(|(reason, query)| (query, reason))
            .collect();
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start_on_blocks(dir.path());
    let (mut same, mut known_differences, mut rejected) = (0, 0, 0);
    let mut failures = Vec::new();
    for line in corpus.lines() {
        let query = line.replace("\\n", "\n");
        let Some(theirs) = prometheus_parse_result(&prometheus.query(&query, 1_700_000_000.0))
        else {
            continue;
        };
        let ours = match Engine::parse(&query) {
            Ok(_) => "OK".to_owned(),
            Err(e) => {
                assert_eq!(e.error_type(), "bad_data", "{query}");
                e.to_string()
            }
        };
        if theirs != "OK" {
            rejected += 1;
        }
        if ours == theirs {
            same += 1;
        } else if known.contains_key(line) {
            known_differences += 1;
        } else {
            failures.push(format!(
                "{query:?}\n    Prometheus: {theirs}\n    Strata:     {ours}"
            ));
        }
    }
    eprintln!(
        "parse results: {same} identical to Prometheus 3.5.3 ({rejected} queries rejected by it), {known_differences} known differences, {} differ",
        failures.len()
    );
    for f in failures.iter().take(30) {
        eprintln!("  {f}");
    }
    assert!(
        rejected > 2500,
        "too few malformed queries compared: {rejected}"
    );
    assert!(
        failures.is_empty(),
        "{} parse results differ",
        failures.len()
    );
}
