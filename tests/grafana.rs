//! The requests Grafana's Prometheus datasource sends, through `strata query-frontend` →
//! `strata query` → sidecar (and a store gateway over the sidecar's bucket, in the fan-out
//! though it may hold no block yet in the test's minute), each answer
//! compared with what Prometheus 3.5 answers for the same data: the datasource health check,
//! the build info it reads the flavour from, the metric browser (label names with and without
//! `match[]`, metric names, label values, series, metadata), range queries with Grafana's
//! step-aligned `start`/`end` sent as a POST form, instant queries, and the exemplars query.
//! The only difference allowed is the external label `cluster`, which Strata adds (as Thanos
//! does) and Prometheus keeps out of its own answers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use strata_e2e::prometheus::{Prometheus, compare_answers, get_json, parse_answer};
use strata_e2e::store_api::StrataProcess;

const EXTERNAL: &str = "cluster";

/// POST a form, as Grafana sends range queries.
fn post_form(base: &str, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
    let body: String = form_encode(form);
    let resp = ureq::post(format!("{base}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .config()
        .http_status_as_error(false)
        .build()
        .send(body)
        .unwrap();
    let text = resp.into_body().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn form_encode(form: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in form.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        for (j, part) in [k, v].iter().enumerate() {
            if j == 1 {
                out.push('=');
            }
            for b in part.bytes() {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        out.push(b as char);
                    }
                    _ => out.push_str(&format!("%{b:02X}")),
                }
            }
        }
    }
    out
}

/// A string list answer as a set, without the external label.
fn string_set(body: &serde_json::Value) -> BTreeSet<String> {
    assert_eq!(body["status"], "success", "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .filter(|v| *v != EXTERNAL)
        .map(str::to_owned)
        .collect()
}

/// A series answer as a set of label sets, without the external label.
fn series_set(body: &serde_json::Value) -> BTreeSet<String> {
    assert_eq!(body["status"], "success", "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut pairs: Vec<(String, String)> = s
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.as_str() != EXTERNAL)
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect();
            pairs.sort();
            format!("{pairs:?}")
        })
        .collect()
}

#[test]
fn grafanas_requests_get_prometheus_answers() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start_scraping_itself(
        &dir.path().join("prometheus"),
        &[(EXTERNAL, "eks-1"), ("prometheus_replica", "prometheus-0")],
    );
    let bucket = dir.path().join("bucket");
    std::fs::create_dir(&bucket).unwrap();
    let bucket_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
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
        "--sync-block-duration",
        "1s",
    ]);
    let query = StrataProcess::start(&[
        "query",
        "--endpoint",
        &sidecar.grpc,
        "--endpoint",
        &store.grpc,
        "--query.replica-label",
        "prometheus_replica",
    ]);
    let frontend = StrataProcess::start_http_only(&[
        "query-frontend",
        "--query-frontend.downstream-url",
        &format!("http://{}", query.http),
    ]);
    let grafana = format!("http://{}", frontend.http);
    let prom = prometheus.url();

    // A minute of data, so that a range has points and the metric browser has names.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(90);
    loop {
        let up = prometheus.query("count_over_time(up[1m])", now() - 1.0);
        let n = up["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if n >= 20.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has too little data: {up}"
        );
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(500));
    }
    // The querier sees the sidecar's data (the sidecar advertises Prometheus' time range once
    // Prometheus holds samples).
    loop {
        let seen = get_json(&grafana, "/api/v1/query", &[("query", "count(up)")]);
        if seen["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no data through the frontend: {seen}"
        );
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(500));
    }
    // Grafana aligns start and end to the step; everything ends a few seconds in the past
    // so that both sides have the same samples.
    let step = 2.0;
    let end = ((now() - 5.0) / step).floor() * step;
    let start = end - 40.0;
    let (s, e, st) = (start.to_string(), end.to_string(), step.to_string());

    // Health check: Grafana's `1+1` instant query.
    let ours = get_json(&grafana, "/api/v1/query", &[("query", "1+1"), ("time", &e)]);
    let theirs = get_json(&prom, "/api/v1/query", &[("query", "1+1"), ("time", &e)]);
    assert_eq!(ours["data"], theirs["data"], "health check");

    // Build info: the same keys (Grafana reads version and application flavour from them).
    let keys = |v: &serde_json::Value| {
        v["data"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<BTreeSet<_>>())
            .unwrap_or_default()
    };
    let ours = get_json(&grafana, "/api/v1/status/buildinfo", &[]);
    let theirs = get_json(&prom, "/api/v1/status/buildinfo", &[]);
    assert_eq!(keys(&ours), keys(&theirs), "buildinfo: {ours} {theirs}");

    // Metric browser.
    let window = [("start", s.as_str()), ("end", e.as_str())];
    let mut checked = 0;
    for (path, extra) in [
        ("/api/v1/labels", vec![]),
        ("/api/v1/labels", vec![("match[]", "up")]),
        ("/api/v1/label/__name__/values", vec![]),
        ("/api/v1/label/job/values", vec![("match[]", "up")]),
        ("/api/v1/label/instance/values", vec![]),
    ] {
        let params: Vec<(&str, &str)> = window.iter().copied().chain(extra).collect();
        let ours = string_set(&get_json(&grafana, path, &params));
        let theirs = string_set(&get_json(&prom, path, &params));
        assert_eq!(ours, theirs, "{path} {params:?}");
        checked += 1;
    }
    for selector in [
        "up",
        "{__name__=~\"prometheus_http_requests_total\",code=\"200\"}",
    ] {
        let params = [
            ("match[]", selector),
            ("start", s.as_str()),
            ("end", e.as_str()),
        ];
        let ours = series_set(&get_json(&grafana, "/api/v1/series", &params));
        let theirs = series_set(&get_json(&prom, "/api/v1/series", &params));
        assert_eq!(ours, theirs, "series {selector}");
        checked += 1;
    }
    let ours = get_json(&grafana, "/api/v1/metadata", &[("metric", "up")]);
    let theirs = get_json(&prom, "/api/v1/metadata", &[("metric", "up")]);
    assert_eq!(ours["data"], theirs["data"], "metadata");
    let ours = get_json(&grafana, "/api/v1/metadata", &[("limit", "1000")]);
    let theirs = get_json(&prom, "/api/v1/metadata", &[("limit", "1000")]);
    assert_eq!(
        ours["data"]["prometheus_http_requests_total"],
        theirs["data"]["prometheus_http_requests_total"],
        "metadata"
    );
    checked += 2;

    // Panels: range queries as Grafana posts them, and instant queries.
    for query in [
        "up",
        "sum by (handler) (rate(prometheus_http_requests_total[10s]))",
        "histogram_quantile(0.9, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[10s])))",
        "max_over_time(process_resident_memory_bytes[20s])",
    ] {
        let form = [
            ("query", query),
            ("start", s.as_str()),
            ("end", e.as_str()),
            ("step", st.as_str()),
        ];
        let ours = parse_answer(
            &post_form(&grafana, "/api/v1/query_range", &form),
            &[EXTERNAL],
        );
        let theirs = parse_answer(&post_form(&prom, "/api/v1/query_range", &form), &[]);
        let (ours, theirs) = (ours.unwrap(), theirs.unwrap());
        assert!(!theirs.is_empty(), "{query}: Prometheus has no answer");
        if let Some(diff) = compare_answers(query, &ours, &theirs) {
            panic!("range {query}: {diff}");
        }
        let ours = parse_answer(
            &get_json(&grafana, "/api/v1/query", &[("query", query), ("time", &e)]),
            &[EXTERNAL],
        );
        let theirs = parse_answer(
            &get_json(&prom, "/api/v1/query", &[("query", query), ("time", &e)]),
            &[],
        );
        if let Some(diff) = compare_answers(query, &ours.unwrap(), &theirs.unwrap()) {
            panic!("instant {query}: {diff}");
        }
        checked += 2;
    }

    // Exemplars (the panel toggle): Prometheus here stores none; both answer an empty list.
    let params = [("query", "up"), ("start", s.as_str()), ("end", e.as_str())];
    let ours = get_json(&grafana, "/api/v1/query_exemplars", &params);
    let theirs = get_json(&prom, "/api/v1/query_exemplars", &params);
    assert_eq!(ours["status"], "success", "{ours}");
    assert_eq!(ours["data"], theirs["data"], "exemplars");
    checked += 1;
    eprintln!("{checked} Grafana requests answered as Prometheus 3.5 answers them");
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
