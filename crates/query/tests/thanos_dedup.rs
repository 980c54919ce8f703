//! Thanos' querier regression data (issue 2401: real GitLab replicas with a stale marker and
//! an application restart) through our decoding and deduplication: the samples must equal
//! what Thanos' `TestQuerier_Select` expects, raw and for a counter function.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use strata_query::dedup::DedupFunc;
use strata_query::queryable::{decode_series, dedup_series};
use strata_storepb::{AggrChunk, Chunk, chunk};
use strata_types::{Labels, Sample, is_stale_nan, stale_nan};

/// The series of a grpcurl dump of Series responses (one JSON message per line).
fn series_from_dump(text: &str) -> Vec<(Labels, Vec<AggrChunk>)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let s = &v["series"];
            let labels = Labels::from_pairs(s["labels"].as_array().unwrap().iter().map(|l| {
                (
                    l["name"].as_str().unwrap().to_owned(),
                    l["value"].as_str().unwrap().to_owned(),
                )
            }));
            let chunks = s["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| AggrChunk {
                    min_time: c["minTime"].as_str().unwrap().parse().unwrap(),
                    max_time: c["maxTime"].as_str().unwrap().parse().unwrap(),
                    raw: Some(Chunk {
                        r#type: chunk::Encoding::Xor as i32,
                        data: base64::engine::general_purpose::STANDARD
                            .decode(c["raw"]["data"].as_str().unwrap())
                            .unwrap()
                            .into(),
                        hash: 0,
                    }),
                    ..Default::default()
                })
                .collect();
            (labels, chunks)
        })
        .collect()
}

fn expected(json: &serde_json::Value, name: &str) -> Vec<Sample> {
    json[name]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Sample {
            t: p[0].as_i64().unwrap(),
            v: if p[1] == "stale" {
                stale_nan()
            } else {
                p[1].as_f64().unwrap()
            },
        })
        .collect()
}

/// Bit-exact comparison (a stale marker must be the stale-marker NaN).
fn assert_same(got: &[Sample], want: &[Sample], what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} samples, want {}",
        got.len(),
        want.len()
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.t, w.t, "{what}: sample {i}");
        assert_eq!(
            g.v.to_bits(),
            w.v.to_bits(),
            "{what}: sample {i} at {}: {} vs {}",
            g.t,
            g.v,
            w.v
        );
    }
}

#[test]
fn thanos_issue_2401_replicas_deduplicate_as_thanos() {
    let dump = include_str!("data/thanos-issue2401-seriesresponses.json");
    let want: serde_json::Value =
        serde_json::from_str(include_str!("data/thanos-issue2401-expected.json")).unwrap();
    let (mint, maxt) = (
        want["mint"].as_i64().unwrap(),
        want["maxt"].as_i64().unwrap(),
    );
    let series = series_from_dump(dump);
    let raw = decode_series(series.clone(), mint, maxt).unwrap();
    assert_eq!(raw.len(), 2);
    // Without deduplication each replica is its raw samples, stale marker included.
    let by_replica = |r: &str| {
        raw.iter()
            .find(|s| s.0.get("replica") == Some(r))
            .unwrap()
            .1
            .clone()
    };
    assert_same(
        &by_replica("01"),
        &expected(&want, "Replica0"),
        "replica 01",
    );
    assert_same(
        &by_replica("02"),
        &expected(&want, "Replica1"),
        "replica 02",
    );
    assert_eq!(
        by_replica("01")
            .iter()
            .filter(|s| is_stale_nan(s.v))
            .count(),
        1
    );

    let replica = vec!["replica".to_owned()];
    let dedup = dedup_series(
        series.clone(),
        mint,
        maxt,
        &replica,
        DedupFunc::Penalty,
        false,
        false,
    )
    .unwrap();
    assert_eq!(dedup.len(), 1);
    assert_eq!(dedup[0].labels.get("replica"), None);
    assert_same(
        &dedup[0].samples,
        &expected(&want, "Deduplicated"),
        "penalty",
    );

    // For `rate`: each replica through the counter-reset iterator, then the switch
    // adjustment: the merged counter never goes down.
    let dedup = dedup_series(
        series,
        mint,
        maxt,
        &replica,
        DedupFunc::Penalty,
        true,
        false,
    )
    .unwrap();
    assert_same(
        &dedup[0].samples,
        &expected(&want, "DeduplicatedForRate"),
        "penalty for rate",
    );
    assert!(dedup[0].samples.windows(2).all(|w| w[1].v >= w[0].v));
}

/// A Prometheus range-query answer as `labels -> [(t ms, value)]`.
fn matrix(json: &serde_json::Value) -> Vec<(Labels, Vec<(i64, f64)>)> {
    json["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = Labels::from_pairs(
                r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())),
            );
            let values = r["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                        p[1].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect();
            (labels, values)
        })
        .collect()
}

/// Thanos issue 2890: with a lookback delta of 15 minutes, a range query over two replicas
/// that do not overlap in time (one stops, the other starts later) must not miss the
/// switch. Thanos' `TestQuerier_Select_AfterPromQL` data and expected answers.
#[test]
fn thanos_issue_2890_switching_replicas_keeps_every_step() {
    use strata_promql::{Engine, EngineOptions, MemQueryable, Value};
    let series = series_from_dump(include_str!("data/thanos-issue2890-seriesresponses.json"));
    let (start, end, step) = (1_598_471_700_000_i64, 1_598_472_600_000_i64, 3_000_i64);
    let lookback = 15 * 60 * 1000;
    let engine = Engine::new(EngineOptions {
        lookback_delta: lookback,
        ..EngineOptions::default()
    });
    let run = |dedup: bool| -> Vec<(Labels, Vec<(i64, f64)>)> {
        let mut store = MemQueryable::new();
        let selected: Vec<(Labels, Vec<Sample>)> = if dedup {
            dedup_series(
                series.clone(),
                start - lookback,
                end,
                &["replica".to_owned()],
                DedupFunc::Penalty,
                false,
                false,
            )
            .unwrap()
            .into_iter()
            .map(|s| (s.labels, s.samples))
            .collect()
        } else {
            decode_series(series.clone(), start - lookback, end).unwrap()
        };
        for (labels, samples) in selected {
            store.add(labels, &samples);
        }
        let result = engine
            .range_query(&store, "cluster_version{}", start, end, step)
            .unwrap();
        let Value::Matrix(m) = result.value else {
            panic!("matrix expected")
        };
        m.into_iter()
            .map(|s| (s.labels, s.samples.iter().map(|p| (p.t, p.v)).collect()))
            .collect()
    };
    let want: serde_json::Value =
        serde_json::from_str(include_str!("data/thanos-issue2890-expected.json")).unwrap();
    let mut want = matrix(&want);
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(run(false), want);
    let want: serde_json::Value =
        serde_json::from_str(include_str!("data/thanos-issue2890-expected-dedup.json")).unwrap();
    let got = run(true);
    assert_eq!(got, matrix(&want));
    assert_eq!(got[0].1.len(), 301, "one point per step");
}

/// `rate` over the deduplicated replicas of issue 2401 (a stale marker and a restart around
/// a replica switch) equals `rate` over the samples Thanos' deduplication gives, and is
/// never negative (penalty deduplication without Thanos' counter handling went negative on
/// such data).
#[test]
fn thanos_issue_2401_rate_over_deduplicated_replicas() {
    use strata_promql::{Engine, MemQueryable, Value};
    let want: serde_json::Value =
        serde_json::from_str(include_str!("data/thanos-issue2401-expected.json")).unwrap();
    let (mint, maxt) = (
        want["mint"].as_i64().unwrap(),
        want["maxt"].as_i64().unwrap(),
    );
    let series = series_from_dump(include_str!("data/thanos-issue2401-seriesresponses.json"));
    let ours = dedup_series(
        series,
        mint,
        maxt,
        &["replica".to_owned()],
        DedupFunc::Penalty,
        true,
        false,
    )
    .unwrap();
    let labels = ours[0].labels.clone();
    let mut a = MemQueryable::new();
    a.add(labels.clone(), &ours[0].samples);
    let mut b = MemQueryable::new();
    b.add(labels, &expected(&want, "DeduplicatedForRate"));
    let engine = Engine::default();
    for query in [
        "rate(gitlab_transaction_cache_read_hit_count_total[5m])",
        "increase(gitlab_transaction_cache_read_hit_count_total[2m])",
    ] {
        let run = |q: &MemQueryable| {
            let r = engine
                .range_query(q, query, mint + 300_000, maxt, 10_000)
                .unwrap();
            let Value::Matrix(m) = r.value else { panic!() };
            m
        };
        let (got, thanos) = (run(&a), run(&b));
        assert_eq!(got, thanos, "{query}");
        assert!(got[0].samples.len() > 300, "{query}");
        assert!(
            got[0].samples.iter().all(|p| p.v >= 0.0),
            "{query}: {:?}",
            got[0].samples
        );
    }
}
