//! Two real Prometheus 2.42 replicas (external labels differing only in `replica`, each
//! missing a two-hour block the other has), each with a `strata sidecar` shipping to one
//! bucket, a `strata store` over that bucket, and `strata query` over the two sidecars and
//! the store; a third Prometheus over the complete data is the reference.
//!
//! - `chain` (replicas hold identical samples): every answer equals the reference;
//! - `penalty`: no series doubled, every gap of one replica filled from the other, answers
//!   equal the reference except within five minutes after a replica switch;
//! - `dedup=false`: both replicas' series, with their `replica` label;
//! - a sidecar killed mid-test: a warning under partial response, an error without.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use strata_e2e::data::{DataSet, QUERIES};
use strata_e2e::prometheus::{Answer, Prometheus, close, compare_answers, get_json, parse_answer};
use strata_e2e::store_api::StrataProcess;
use strata_e2e::{block_dirs, copy_as_new_block, copy_dir, promtool_create_blocks};
use strata_tsdb::BlockMeta;
use strata_types::Sample;

const START_S: i64 = 1_700_000_000;
const HOURS: i64 = 8;

fn sidecar(prometheus: &Prometheus, bucket_yaml: &str) -> StrataProcess {
    StrataProcess::start(&[
        "sidecar",
        "--prometheus.url",
        &prometheus.url(),
        "--tsdb.path",
        prometheus.data_dir.to_str().unwrap(),
        "--objstore.config",
        bucket_yaml,
        "--shipper.sync-interval",
        "1s",
        "--prometheus.get_config_interval",
        "1s",
    ])
}

/// Blocks with a meta.json in the FILESYSTEM bucket at `dir`.
fn bucket_metas(dir: &Path) -> Vec<BlockMeta> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read(e.ok()?.path().join("meta.json")).ok())
        .filter_map(|b| BlockMeta::parse(&b).ok())
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Compares ours with the reference's points except within each switch's penalty window
/// (`windows(series)` gives `(start, end)` pairs in seconds); returns (points compared,
/// points skipped).
fn compare_outside_windows(
    query: &str,
    ours: &Answer,
    theirs: &Answer,
    windows: impl Fn(&str) -> Vec<(f64, f64)>,
    failures: &mut Vec<String>,
) -> (usize, usize) {
    if ours.keys().ne(theirs.keys()) {
        failures.push(format!(
            "{query}: series differ\n  ours:   {:?}\n  theirs: {:?}",
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>()
        ));
        return (0, 0);
    }
    let (mut compared, mut skipped) = (0, 0);
    for (key, want) in theirs {
        let windows = windows(key);
        let got: BTreeMap<i64, f64> = ours[key]
            .iter()
            .map(|(t, v)| ((t * 1000.0).round() as i64, *v))
            .collect();
        for (t, v) in want {
            if windows.iter().any(|(from, to)| t >= from && t < to) {
                skipped += 1;
                continue;
            }
            compared += 1;
            match got.get(&((t * 1000.0).round() as i64)) {
                Some(g) if close(*g, *v) => {}
                other => failures.push(format!(
                    "{query}: {key} at {t}: ours {other:?}, reference {v}"
                )),
            }
        }
    }
    (compared, skipped)
}

/// The penalty window after a replica switch at `switch_ms` for a series with `samples`:
/// the replica switched to is skipped for twice the interval before the last sample taken
/// (Thanos' algorithm), which after a gap both replicas share is twice that gap; points
/// within the lookback (5m) after the window may still miss the skipped samples.
fn penalty_window(samples: &[Sample], switch_ms: i64) -> (f64, f64) {
    let widest = samples
        .windows(2)
        .filter(|w| w[1].t <= switch_ms)
        .map(|w| w[1].t - w[0].t)
        .max()
        .unwrap_or(0);
    let from = switch_ms as f64 / 1000.0;
    (from, from + (2 * widest + 300_000) as f64 / 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_prometheus_replicas_with_sidecars_deduplicate_to_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(31, START_S, HOURS);
    let input = dir.path().join("data.om");
    std::fs::write(&input, data.to_openmetrics()).unwrap();
    let blocks_dir = dir.path().join("blocks");
    promtool_create_blocks(&input, &blocks_dir);
    let blocks = block_dirs(&blocks_dir);
    assert!(blocks.len() >= 4, "{} blocks", blocks.len());
    let meta = |b: &Path| BlockMeta::parse(&std::fs::read(b.join("meta.json")).unwrap()).unwrap();

    // Replica a lacks block 1, replica b block 2; b's blocks are its own (new ULIDs).
    let (gap_a, gap_b) = (meta(&blocks[1]), meta(&blocks[2]));
    let tsdb_a = dir.path().join("prometheus-a");
    let tsdb_b = dir.path().join("prometheus-b");
    std::fs::create_dir_all(&tsdb_a).unwrap();
    std::fs::create_dir_all(&tsdb_b).unwrap();
    for (i, block) in blocks.iter().enumerate() {
        if i != 1 {
            copy_dir(block, &tsdb_a.join(block.file_name().unwrap()));
        }
        if i != 2 {
            copy_as_new_block(block, &tsdb_b);
        }
    }
    let reference_dir = dir.path().join("reference");
    copy_dir(&blocks_dir, &reference_dir);
    let reference = Prometheus::start_on_blocks(&reference_dir);
    let prom_a =
        Prometheus::start_on_blocks_with_labels(&tsdb_a, &[("cluster", "eu1"), ("replica", "a")]);
    let prom_b =
        Prometheus::start_on_blocks_with_labels(&tsdb_b, &[("cluster", "eu1"), ("replica", "b")]);

    let bucket_dir = dir.path().join("bucket");
    let bucket_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket_dir.display()
    );
    let sidecar_a = sidecar(&prom_a, &bucket_yaml);
    let sidecar_b = sidecar(&prom_b, &bucket_yaml);
    let shipped = 2 * (blocks.len() - 1);
    wait_until(
        "both sidecars to ship every block",
        Duration::from_secs(60),
        || bucket_metas(&bucket_dir).len() == shipped,
    );
    for m in bucket_metas(&bucket_dir) {
        let thanos = m.thanos.expect("thanos section");
        assert_eq!(thanos.labels["cluster"], "eu1");
        assert!(["a", "b"].contains(&thanos.labels["replica"].as_str()));
    }
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &bucket_yaml,
        "--data-dir",
        dir.path().join("store").to_str().unwrap(),
    ]);
    let loaded = format!("thanos_bucket_store_blocks_loaded {shipped}");
    wait_until(
        "the store to load every block",
        Duration::from_secs(30),
        || store.http_get("/metrics").contains(&loaded),
    );

    let endpoints = [
        sidecar_a.grpc.clone(),
        sidecar_b.grpc.clone(),
        store.grpc.clone(),
    ];
    let query = |extra: &[&str]| {
        let mut args = vec!["query"];
        for e in &endpoints {
            args.extend(["--endpoint", e.as_str()]);
        }
        args.extend(["--query.replica-label", "replica"]);
        args.extend_from_slice(extra);
        StrataProcess::start(&args)
    };
    let chain = query(&["--deduplication.func", "chain"]);
    let penalty = query(&[
        "--deduplication.func",
        "penalty",
        "--endpoint.info-timeout",
        "60s",
    ]);
    let chain_url = format!("http://{}", chain.http);
    let penalty_url = format!("http://{}", penalty.http);
    wait_until(
        "the queriers to see three endpoints",
        Duration::from_secs(30),
        || {
            [&chain_url, &penalty_url].iter().all(|u| {
                let stores = get_json(u, "/api/v1/stores", &[]);
                let healthy = stores["data"]
                    .as_object()
                    .map(|m| {
                        m.values()
                            .flat_map(|v| v.as_array().unwrap().clone())
                            .filter(|e| {
                                e["lastError"].is_null() && e["minTime"].as_i64() < Some(i64::MAX)
                            })
                            .count()
                    })
                    .unwrap_or(0);
                healthy == 3
            })
        },
    );

    // chain: every answer equals the reference's.
    let (start, end) = (
        START_S as f64 + 0.567,
        (START_S + HOURS * 3600) as f64 + 0.567,
    );
    let instants: Vec<f64> = (1..=6)
        .map(|i| START_S as f64 + i as f64 * 4000.0 + 0.321)
        .collect();
    let (mut evaluations, mut points) = (0usize, 0usize);
    let mut failures = Vec::new();
    for q in QUERIES {
        for t in &instants {
            let ts = t.to_string();
            let ours = parse_answer(
                &get_json(&chain_url, "/api/v1/query", &[("query", q), ("time", &ts)]),
                &["cluster"],
            );
            let theirs = parse_answer(&reference.query(q, *t), &[]);
            evaluations += 1;
            match (ours, theirs) {
                (Ok(o), Ok(r)) => {
                    points += r.values().map(Vec::len).sum::<usize>();
                    failures.extend(compare_answers(&format!("instant {q} at {t}"), &o, &r));
                }
                (o, r) => failures.push(format!("{q}: ours {o:?}, reference {r:?}")),
            }
        }
        for step in ["60", "300"] {
            let params = [
                ("query", *q),
                ("start", &start.to_string()),
                ("end", &end.to_string()),
                ("step", step),
            ];
            let ours = parse_answer(
                &get_json(&chain_url, "/api/v1/query_range", &params),
                &["cluster"],
            );
            let theirs = parse_answer(
                &reference.query_range(q, start, end, step.parse().unwrap()),
                &[],
            );
            evaluations += 1;
            match (ours, theirs) {
                (Ok(o), Ok(r)) => {
                    points += r.values().map(Vec::len).sum::<usize>();
                    failures.extend(compare_answers(&format!("range {q} step {step}"), &o, &r));
                }
                (o, r) => failures.push(format!("range {q}: ours {o:?}, reference {r:?}")),
            }
        }
    }
    eprintln!("chain: {evaluations} queries, {points} points compared");
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        evaluations >= 250 && points > 50_000,
        "{evaluations} queries, {points} points"
    );

    // penalty: the same series, every point present, equal to the reference outside each
    // switch's penalty window. Replicas switch where one lacks a block.
    let switches_ms = [
        gap_a.min_time,
        gap_a.max_time,
        gap_b.min_time,
        gap_b.max_time,
    ];
    let series: BTreeMap<String, Vec<Sample>> = data
        .series()
        .into_iter()
        .map(|(labels, samples)| (labels.to_string(), samples))
        .collect();
    let windows = |key: &str| -> Vec<(f64, f64)> {
        let samples = series.get(key).map(Vec::as_slice).unwrap_or_default();
        switches_ms
            .iter()
            .map(|&s| penalty_window(samples, s))
            .collect()
    };
    let (mut compared, mut skipped) = (0, 0);
    let mut failures = Vec::new();
    for q in [
        "temperature_celsius",
        "http_requests_total",
        "misc_gauge",
        "request_duration_seconds_bucket",
    ] {
        let params = [
            ("query", q),
            ("start", &start.to_string()),
            ("end", &end.to_string()),
            ("step", "30"),
        ];
        let ours = parse_answer(
            &get_json(&penalty_url, "/api/v1/query_range", &params),
            &["cluster"],
        )
        .unwrap();
        let theirs = parse_answer(&reference.query_range(q, start, end, 30.0), &[]).unwrap();
        let (c, s) = compare_outside_windows(q, &ours, &theirs, windows, &mut failures);
        compared += c;
        skipped += s;
    }
    eprintln!(
        "penalty: {compared} points equal to the reference, {skipped} within a penalty window after a switch"
    );
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        compared > 10 * skipped,
        "{compared} compared, {skipped} skipped"
    );

    // dedup=false: both replicas' series where both have data.
    let t = (START_S + 1800) as f64 + 0.5;
    let deduped =
        parse_answer(&chain_query(&chain_url, "temperature_celsius", t, &[]), &[]).unwrap();
    let raw = parse_answer(
        &chain_query(&chain_url, "temperature_celsius", t, &[("dedup", "false")]),
        &[],
    )
    .unwrap();
    assert_eq!(raw.len(), 2 * deduped.len(), "{raw:?}");
    assert!(
        raw.keys()
            .all(|k| k.contains("replica=\"a\"") || k.contains("replica=\"b\""))
    );

    // A sidecar killed mid-test: the penalty querier (long info interval: it still counts
    // the endpoint healthy) warns under partial response and fails without.
    drop(sidecar_b);
    let t = end - 600.0;
    let body = chain_query(&penalty_url, "count(temperature_celsius)", t, &[]);
    assert_eq!(body["status"], "success", "{body}");
    let warnings = body["warnings"]
        .as_array()
        .expect("a warning for the dead sidecar");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains(endpoints[1].as_str())),
        "{body}"
    );
    let body = chain_query(
        &penalty_url,
        "count(temperature_celsius)",
        t,
        &[("partial_response", "false")],
    );
    assert_eq!(body["status"], "error", "{body}");
}

fn chain_query(base: &str, q: &str, t: f64, extra: &[(&str, &str)]) -> serde_json::Value {
    let ts = t.to_string();
    let mut params = vec![("query", q), ("time", ts.as_str())];
    params.extend_from_slice(extra);
    get_json(base, "/api/v1/query", &params)
}
