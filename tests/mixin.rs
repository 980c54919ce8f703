//! The alerts, recording rules and dashboards the chart ships (`helm/strata/files/mixin`,
//! generated from Thanos' mixin) read only metrics that Strata exposes. Every component runs
//! (the sidecar beside Prometheus 3.5, store gateway, compactor, querier, query frontend),
//! serves some queries, and is scraped; every expression of the shipped files is parsed by
//! our PromQL parser and each metric name it selects must be in some component's `/metrics`
//! (or in Prometheus' own, for the Prometheus metrics the sidecar alerts join with). No list
//! is kept by hand: a new alert or panel over a metric we lack fails here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use strata_e2e::data::DataSet;
use strata_e2e::prometheus::{Prometheus, get_json};
use strata_e2e::store_api::{StrataProcess, upload_block};
use strata_e2e::{block_dirs, promtool_create_blocks};
use strata_objstore::Bucket;
use strata_promql::syntax::ast::Expr;

const START_S: i64 = 1_699_833_600;

fn mixin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/strata/files/mixin")
}

/// (where, expression) for every rule of `rules/*.yaml` and every panel target and
/// variable query of `dashboards/*.json`.
fn shipped_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dir = mixin_dir();
    for entry in std::fs::read_dir(dir.join("rules")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let groups: serde_json::Value =
            serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for group in groups.as_array().unwrap() {
            for rule in group["rules"].as_array().unwrap() {
                let id = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
                let expr = rule["expr"].as_str().unwrap();
                out.push((format!("{name}: {id}"), expr.to_owned()));
            }
        }
    }
    for entry in std::fs::read_dir(dir.join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for row in dashboard["rows"].as_array().unwrap() {
            for panel in row["panels"].as_array().unwrap() {
                for target in panel["targets"].as_array().unwrap() {
                    let expr = target["expr"].as_str().unwrap();
                    let title = panel["title"].as_str().unwrap_or("");
                    out.push((format!("{name}: {title}"), expr.to_owned()));
                }
            }
        }
        for var in dashboard["templating"]["list"].as_array().unwrap() {
            // label_values(SELECTOR, label): Grafana's, the selector is PromQL.
            let query = var["query"].as_str().unwrap_or("");
            if let Some(inner) = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
            {
                out.push((format!("{name}: ${}", var["name"]), inner.0.to_owned()));
            }
        }
    }
    assert!(out.len() > 100, "only {} expressions found", out.len());
    out
}

/// Grafana's variables and the chart's job placeholders replaced by what they stand for.
fn instantiate(expr: &str) -> String {
    let mut e = expr.to_owned();
    for (var, value) in [
        ("$__rate_interval", "5m"),
        ("$interval", "5m"),
        ("$job", ".+"),
    ] {
        e = e.replace(var, value);
    }
    while let Some(start) = e.find("__STRATA_JOB_") {
        let end = e[start + 13..].find("__").unwrap() + start + 15;
        e.replace_range(start..end, ".+");
    }
    e
}

/// The metric names an expression selects.
fn metric_names(expr: &Expr, names: &mut BTreeSet<String>) {
    let mut selector = |vs: &strata_promql::syntax::ast::VectorSelector| {
        let name = vs.name.clone().or_else(|| {
            vs.matchers
                .iter()
                .find(|m| m.name() == "__name__")
                .map(|m| m.value().to_owned())
        });
        names.insert(name.expect("a selector without a metric name"));
    };
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::VectorSelector(vs) => selector(vs),
        Expr::MatrixSelector(ms) => selector(&ms.vs),
        Expr::Subquery(sq) => metric_names(&sq.expr, names),
        Expr::Call(call) => call.args.iter().for_each(|a| metric_names(a, names)),
        Expr::Aggregate(agg) => {
            metric_names(&agg.expr, names);
            if let Some(p) = &agg.param {
                metric_names(p, names);
            }
        }
        Expr::Binary(b) => {
            metric_names(&b.lhs, names);
            metric_names(&b.rhs, names);
        }
        Expr::Unary(u) => metric_names(&u.expr, names),
        Expr::Paren(p) => metric_names(&p.expr, names),
    }
}

/// Sample names in a Prometheus text exposition.
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_metric_the_shipped_alerts_and_dashboards_read_is_exposed() {
    // What the shipped files read, parsed before anything starts.
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (place, expr) in shipped_expressions() {
        let text = instantiate(&expr);
        let ast =
            strata_promql::Engine::parse(&text).unwrap_or_else(|e| panic!("{place}: {e}\n{text}"));
        let mut names = BTreeSet::new();
        metric_names(&ast, &mut names);
        for name in names {
            wanted.entry(name).or_default().push(place.clone());
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir(&bucket_dir).unwrap();
    let bucket_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket_dir.display()
    );
    // A block in the bucket, so the store gateway loads and reads one.
    let data = DataSet::generate(41, START_S, 2);
    let om = dir.path().join("data.om");
    std::fs::write(&om, data.to_openmetrics()).unwrap();
    promtool_create_blocks(&om, &dir.path().join("blocks"));
    let bucket = Bucket::from_yaml(&bucket_yaml, None).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for block in block_dirs(&dir.path().join("blocks")) {
        rt.block_on(upload_block(&bucket, &block, &[("cluster", "old")]));
    }

    let prometheus = Prometheus::start_scraping_itself(
        &dir.path().join("prometheus"),
        &[("cluster", "eks-1"), ("prometheus_replica", "prometheus-0")],
    );
    let sidecar = StrataProcess::start(&[
        "sidecar",
        "--prometheus.url",
        &prometheus.url(),
        "--tsdb.path",
        &prometheus.data_dir.display().to_string(),
        "--objstore.config",
        &bucket_yaml,
    ]);
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &bucket_yaml,
        "--data-dir",
        &dir.path().join("store").display().to_string(),
    ]);
    let compactor = StrataProcess::start_http_only(&[
        "compact",
        "--objstore.config",
        &bucket_yaml,
        "--data-dir",
        &dir.path().join("compact").display().to_string(),
        "--wait",
    ]);
    let query = StrataProcess::start(&[
        "query",
        "--endpoint",
        &store.grpc,
        "--endpoint",
        &sidecar.grpc,
        "--query.replica-label",
        "prometheus_replica",
    ]);
    let frontend = StrataProcess::start_http_only(&[
        "query-frontend",
        "--query-frontend.downstream-url",
        &format!("http://{}", query.http),
        "--query-range.response-cache-config",
        "type: IN-MEMORY\nconfig:\n  max_size: 64MB\n",
    ]);

    // Dashboards' traffic: range queries (twice: a cache miss, then a hit) over the old
    // block and the recent data, an instant query, label names.
    let base = format!("http://{}", frontend.http);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for _ in 0..2 {
        for (start, end) in [(START_S, START_S + 7200), (now - 600, now)] {
            let body = get_json(
                &base,
                "/api/v1/query_range",
                &[
                    ("query", "count by (cluster) ({__name__=~\".+\"})"),
                    ("start", &start.to_string()),
                    ("end", &end.to_string()),
                    ("step", "60"),
                ],
            );
            assert_eq!(body["status"], "success", "{body}");
        }
    }
    let body = get_json(&base, "/api/v1/query", &[("query", "count(up)")]);
    assert_eq!(body["status"], "success", "{body}");
    let body = get_json(&base, "/api/v1/labels", &[]);
    assert_eq!(body["status"], "success", "{body}");

    let mut have: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let prometheus_metrics = ureq::get(&format!("{}/metrics", prometheus.url()))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let scraped = [
        ("sidecar", sidecar.http_get("/metrics")),
        ("store", store.http_get("/metrics")),
        ("compactor", compactor.http_get("/metrics")),
        ("query", query.http_get("/metrics")),
        ("query-frontend", frontend.http_get("/metrics")),
        ("prometheus", prometheus_metrics),
    ];
    for (component, text) in &scraped {
        for name in exposed(text) {
            have.entry(name).or_default().push(component);
        }
    }
    // `up` is written by the scraper for every target.
    have.entry("up".to_owned()).or_default().push("scraper");

    // The store gateway observed the Series calls over its block (not just zeroes).
    let store_metrics = &scraped[1].1;
    let value = |prefix: &str| {
        store_metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{store_metrics}"))
    };
    assert!(
        value("thanos_bucket_store_series_blocks_queried_sum{tenant=\"default-tenant\"}") >= 1.0
    );
    assert!(
        value(
            "thanos_bucket_store_series_data_touched_sum{data_type=\"postings\",tenant=\"default-tenant\"}"
        ) >= 1.0
    );
    assert!(
        value("thanos_bucket_store_sent_chunk_size_bytes_count{tenant=\"default-tenant\"}") >= 1.0
    );

    // Thanos' other operational metrics (not read by the mixin, read by operators): the
    // querier's store set, the gateway's index cache and limit refusals, the frontend's
    // retries per request.
    let query_metrics = &scraped[3].1;
    for (text, line) in [
        (
            query_metrics,
            r#"thanos_store_nodes_grpc_connections{external_labels="{cluster=\"old\"}",store_type="store"} 1"#,
        ),
        (query_metrics, r#"store_type="sidecar"} 1"#),
        (
            query_metrics,
            r#"thanos_query_range_requested_timespan_duration_seconds_bucket{le="900.0"} "#,
        ),
        (
            store_metrics,
            r#"thanos_store_index_cache_items{item_type="Postings"}"#,
        ),
        (store_metrics, "thanos_store_index_cache_max_size_bytes "),
        (
            store_metrics,
            r#"thanos_bucket_store_queries_dropped_total{reason="series",tenant="default-tenant"} 0"#,
        ),
        (
            &scraped[4].1,
            "cortex_query_frontend_retries_bucket{le=\"0.0\"}",
        ),
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }

    let missing: Vec<String> = wanted
        .iter()
        .filter(|(name, _)| !have.contains_key(*name))
        .map(|(name, places)| format!("{name} (read by {})", places.join("; ")))
        .collect();
    eprintln!(
        "{} metric names read by the shipped mixin, {} exposed",
        wanted.len(),
        wanted.len() - missing.len()
    );
    assert!(
        missing.is_empty(),
        "metrics the shipped mixin reads that no component exposes:\n{}",
        missing.join("\n")
    );
}
