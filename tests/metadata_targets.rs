//! Thanos' Metadata, Targets, Exemplars and Rules APIs end to end: Prometheus 3.5 scraping itself, the sidecar
//! serving `thanos.Metadata` and `thanos.Targets` from it, the querier fanning out, and the
//! query frontend passing `/api/v1/metadata` and `/api/v1/targets` through. Grafana's metric
//! browser reads the metadata: each metric's type, help and unit must be Prometheus' own;
//! targets are Prometheus' with the external labels added (the replica label removed, as the
//! querier deduplicates replicas).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use strata_e2e::prometheus::{Prometheus, get_json};
use strata_e2e::store_api::StrataProcess;

#[test]
fn metadata_and_targets_equal_prometheus_through_frontend_and_querier() {
    let dir = tempfile::tempdir().unwrap();
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
    ]);
    let query = StrataProcess::start(&[
        "query",
        "--endpoint",
        &sidecar.grpc,
        "--query.replica-label",
        "prometheus_replica",
    ]);
    let frontend = StrataProcess::start_http_only(&[
        "query-frontend",
        "--query-frontend.downstream-url",
        &format!("http://{}", query.http),
    ]);
    let ours = format!("http://{}", frontend.http);

    // Prometheus has scraped itself once: its metadata and target exist.
    let deadline = Instant::now() + Duration::from_secs(60);
    let theirs = loop {
        let body = prometheus.get_json("/api/v1/metadata", &[]);
        let up = prometheus.get_json("/api/v1/targets", &[]);
        let scraped = up["data"]["activeTargets"][0]["health"] == "up";
        if body["data"].as_object().is_some_and(|m| m.len() > 20) && scraped {
            break body;
        }
        assert!(Instant::now() < deadline, "Prometheus never scraped itself");
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(500));
    };

    // Every metric's metadata, as Prometheus has it. (Prometheus keeps scraping: a metric it
    // learns between the two requests may be missing from the earlier answer only.)
    let body = loop {
        let body = get_json(&ours, "/api/v1/metadata", &[]);
        assert_eq!(body["status"], "success", "{body}");
        if body["data"].as_object().is_some_and(|m| !m.is_empty()) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no metadata through the querier: {body}"
        );
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(500));
    };
    let ours_map = body["data"].as_object().unwrap();
    let theirs_map = theirs["data"].as_object().unwrap();
    let mut compared = 0;
    for (metric, metas) in theirs_map {
        let Some(ours) = ours_map.get(metric) else {
            panic!("{metric} missing from the querier's metadata");
        };
        assert_eq!(ours, metas, "{metric}");
        compared += 1;
    }
    eprintln!("metadata of {compared} metrics equal to Prometheus 3.5's");

    // One metric, and the limits, as Prometheus answers them.
    for params in [
        vec![("metric", "prometheus_http_requests_total")],
        vec![("limit", "5")],
        vec![("metric", "no_such_metric")],
    ] {
        let a = get_json(&ours, "/api/v1/metadata", &params);
        let b = prometheus.get_json("/api/v1/metadata", &params);
        if params[0].0 == "limit" {
            assert_eq!(
                a["data"].as_object().unwrap().len(),
                b["data"].as_object().unwrap().len(),
                "{params:?}"
            );
        } else {
            assert_eq!(a["data"], b["data"], "{params:?}");
        }
    }
    // CORS as Prometheus sets it (origin `.*`: any origin), on the querier.
    let cors = |base: &str| {
        let resp = ureq::get(format!("{base}/api/v1/metadata?metric=up"))
            .header("Origin", "http://grafana.example")
            .call()
            .unwrap();
        [
            "access-control-allow-headers",
            "access-control-allow-methods",
            "access-control-expose-headers",
            "access-control-allow-origin",
            "vary",
        ]
        .map(|h| {
            resp.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        })
    };
    assert_eq!(
        cors(&format!("http://{}", query.http)),
        cors(&prometheus.url()),
        "CORS headers"
    );
    // Status: the querier's flags with their values, runtime info with Prometheus' keys.
    let flags = get_json(&ours, "/api/v1/status/flags", &[]);
    assert_eq!(
        flags["data"]["query.replica-label"], "prometheus_replica",
        "{flags}"
    );
    assert_eq!(flags["data"]["query.timeout"], "2m", "{flags}");
    let keys = |v: &serde_json::Value| {
        v["data"]
            .as_object()
            .map(|o| o.keys().cloned().collect::<std::collections::BTreeSet<_>>())
            .unwrap_or_default()
    };
    let theirs_info = prometheus.get_json("/api/v1/status/runtimeinfo", &[]);
    let ours_info = get_json(&ours, "/api/v1/status/runtimeinfo", &[]);
    assert_eq!(
        keys(&ours_info),
        keys(&theirs_info),
        "{ours_info}\n{theirs_info}"
    );
    let bad = get_json(&ours, "/api/v1/metadata", &[("limit", "x")]);
    assert_eq!(bad["errorType"], "bad_data", "{bad}");

    // Targets: Prometheus' own, labels with the cluster label added and the replica label
    // removed.
    let theirs = prometheus.get_json("/api/v1/targets", &[]);
    let body = get_json(&ours, "/api/v1/targets", &[]);
    assert_eq!(body["status"], "success", "{body}");
    let a = &body["data"]["activeTargets"];
    let b = &theirs["data"]["activeTargets"];
    assert_eq!(
        a.as_array().unwrap().len(),
        b.as_array().unwrap().len(),
        "{body}"
    );
    for key in [
        "scrapePool",
        "scrapeUrl",
        "globalUrl",
        "health",
        "discoveredLabels",
    ] {
        assert_eq!(a[0][key], b[0][key], "{key}: {body}");
    }
    let mut expected = b[0]["labels"].clone();
    expected["cluster"] = "eks-1".into();
    assert_eq!(a[0]["labels"], expected, "{body}");
    assert!(
        a[0]["lastScrape"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );
    let dropped = get_json(&ours, "/api/v1/targets", &[("state", "dropped")]);
    assert_eq!(
        dropped["data"]["activeTargets"],
        serde_json::json!([]),
        "{dropped}"
    );
    let bad = get_json(&ours, "/api/v1/targets", &[("state", "sleeping")]);
    assert_eq!(bad["errorType"], "bad_data", "{bad}");

    // A querier stacked on the querier gets the same, through the querier's own gRPC APIs.
    let stacked = StrataProcess::start(&[
        "query",
        "--endpoint",
        &query.grpc,
        "--query.replica-label",
        "prometheus_replica",
    ]);
    let top = format!("http://{}", stacked.http);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = get_json(
            &top,
            "/api/v1/metadata",
            &[("metric", "prometheus_http_requests_total")],
        );
        let t = get_json(&top, "/api/v1/targets", &[]);
        let direct = get_json(
            &ours,
            "/api/v1/metadata",
            &[("metric", "prometheus_http_requests_total")],
        );
        if m["data"] == direct["data"] && t["data"]["activeTargets"][0]["labels"] == expected {
            break;
        }
        assert!(Instant::now() < deadline, "stacked querier: {m} {t}");
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A scrape target serving OpenMetrics with exemplars, on its own thread (closed with the
/// listener when the test ends).
fn exemplar_target() -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut n = 0u64;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            n += 1;
            let body = format!(
                "# TYPE app_requests counter\n# HELP app_requests Requests served.\napp_requests_total{{path=\"/a\"}} {n} # {{trace_id=\"t{n}\"}} {n}.5\napp_requests_total{{path=\"/b\"}} {n}\n# EOF\n"
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn exemplars_equal_prometheus_through_frontend_and_querier() {
    let dir = tempfile::tempdir().unwrap();
    let target = exemplar_target();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  external_labels:\n    cluster: eks-1\n    prometheus_replica: prometheus-0\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let prometheus = Prometheus::start_with_config_and_flags(
        &config,
        &dir.path().join("prometheus"),
        &["--enable-feature=exemplar-storage"],
    );
    let sidecar = StrataProcess::start(&[
        "sidecar",
        "--prometheus.url",
        &prometheus.url(),
        "--tsdb.path",
        &prometheus.data_dir.display().to_string(),
    ]);
    let query = StrataProcess::start(&[
        "query",
        "--endpoint",
        &sidecar.grpc,
        "--query.replica-label",
        "prometheus_replica",
    ]);
    let frontend = StrataProcess::start_http_only(&[
        "query-frontend",
        "--query-frontend.downstream-url",
        &format!("http://{}", query.http),
    ]);
    let ours = format!("http://{}", frontend.http);
    let deadline = Instant::now() + Duration::from_secs(60);
    // Three scrapes' exemplars, in a range that ends in the past (so that both answers
    // cover the same exemplars).
    let (start, end) = loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let params = [
            ("query", "app_requests_total"),
            ("start", &format!("{:.3}", now - 60.0)),
            ("end", &format!("{now:.3}")),
        ];
        let theirs = prometheus.get_json("/api/v1/query_exemplars", &params);
        if theirs["data"][0]["exemplars"]
            .as_array()
            .is_some_and(|e| e.len() >= 3)
        {
            break (now - 60.0, now);
        }
        assert!(
            Instant::now() < deadline,
            "no exemplars in Prometheus: {theirs}"
        );
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(500));
    };
    let (start, end) = (format!("{start:.3}"), format!("{end:.3}"));
    let params = [
        ("query", "app_requests_total"),
        ("start", start.as_str()),
        ("end", end.as_str()),
    ];
    let theirs = prometheus.get_json("/api/v1/query_exemplars", &params);
    let body = get_json(&ours, "/api/v1/query_exemplars", &params);
    assert_eq!(body["status"], "success", "{body}");
    let a = body["data"].as_array().unwrap();
    let b = theirs["data"].as_array().unwrap();
    assert_eq!(a.len(), b.len(), "{body}\n{theirs}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["exemplars"], y["exemplars"], "{body}\n{theirs}");
        let mut expected = y["seriesLabels"].clone();
        expected["cluster"] = "eks-1".into();
        assert_eq!(x["seriesLabels"], expected, "{body}");
    }
    eprintln!(
        "exemplars of {} series ({} exemplars) equal to Prometheus 3.5's",
        a.len(),
        a.iter()
            .map(|s| s["exemplars"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
    );
    let bad = get_json(&ours, "/api/v1/query_exemplars", &[("query", "sum(")]);
    assert_eq!(bad["errorType"], "bad_data", "{bad}");
    let theirs_bad = prometheus.get_json("/api/v1/query_exemplars", &[("query", "sum(")]);
    assert_eq!(theirs_bad["errorType"], "bad_data", "{theirs_bad}");
}

#[test]
fn rules_and_alerts_equal_prometheus_through_frontend_and_querier() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: strata\n    interval: 1s\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n      - alert: AlwaysFiring\n        expr: vector(1) > 0\n        labels:\n          severity: none\n        annotations:\n          summary: it fires\n      - alert: NeverFiring\n        expr: vector(1) < 0\n        for: 5m\n",
    )
    .unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    cluster: eks-1\n    prometheus_replica: prometheus-0\nrule_files:\n  - {}\n",
            rules.display()
        ),
    )
    .unwrap();
    let prometheus =
        Prometheus::start_with_config_and_flags(&config, &dir.path().join("prometheus"), &[]);
    let sidecar = StrataProcess::start(&[
        "sidecar",
        "--prometheus.url",
        &prometheus.url(),
        "--tsdb.path",
        &prometheus.data_dir.display().to_string(),
    ]);
    let query = StrataProcess::start(&[
        "query",
        "--endpoint",
        &sidecar.grpc,
        "--query.replica-label",
        "prometheus_replica",
    ]);
    let frontend = StrataProcess::start_http_only(&[
        "query-frontend",
        "--query-frontend.downstream-url",
        &format!("http://{}", query.http),
    ]);
    let ours = format!("http://{}", frontend.http);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let theirs = prometheus.get_json("/api/v1/alerts", &[]);
        if theirs["data"]["alerts"][0]["state"] == "firing" {
            break;
        }
        assert!(Instant::now() < deadline, "the alert never fired: {theirs}");
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(300));
    }
    let theirs = prometheus.get_json("/api/v1/rules", &[]);
    let body = get_json(&ours, "/api/v1/rules", &[]);
    assert_eq!(body["status"], "success", "{body}");
    let (a, b) = (&body["data"]["groups"], &theirs["data"]["groups"]);
    assert_eq!(a.as_array().unwrap().len(), 1, "{body}");
    for key in ["name", "file", "interval", "limit"] {
        assert_eq!(a[0][key], b[0][key], "group {key}: {body}\n{theirs}");
    }
    let (ra, rb) = (
        a[0]["rules"].as_array().unwrap(),
        b[0]["rules"].as_array().unwrap(),
    );
    assert_eq!(ra.len(), rb.len(), "{body}\n{theirs}");
    let with_cluster = |v: &serde_json::Value| {
        let mut v = if v.is_object() {
            v.clone()
        } else {
            serde_json::json!({})
        };
        v["cluster"] = "eks-1".into();
        v
    };
    for (x, y) in ra.iter().zip(rb) {
        for key in [
            "name",
            "query",
            "type",
            "health",
            "state",
            "duration",
            "keepFiringFor",
            "annotations",
        ] {
            assert_eq!(x[key], y[key], "rule {key}: {x}\n{y}");
        }
        assert_eq!(x["labels"], with_cluster(&y["labels"]), "{x}\n{y}");
        let (xa, ya) = (&x["alerts"], &y["alerts"]);
        assert_eq!(
            xa.as_array().map(Vec::len),
            ya.as_array().map(Vec::len),
            "{x}\n{y}"
        );
        for (p, q) in xa
            .as_array()
            .into_iter()
            .flatten()
            .zip(ya.as_array().into_iter().flatten())
        {
            for key in ["annotations", "state", "value"] {
                assert_eq!(p[key], q[key], "alert {key}: {p}\n{q}");
            }
            assert_eq!(p["labels"], with_cluster(&q["labels"]), "{p}\n{q}");
            // The same instant (Prometheus trims trailing zeros of the fraction).
            let second =
                |v: &serde_json::Value| v.as_str().unwrap_or("").get(..19).map(str::to_owned);
            assert_eq!(second(&p["activeAt"]), second(&q["activeAt"]), "{p}\n{q}");
        }
    }
    // Filters and /api/v1/alerts, as Prometheus answers them.
    let only_alerts = get_json(&ours, "/api/v1/rules", &[("type", "alert")]);
    assert_eq!(
        only_alerts["data"]["groups"][0]["rules"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{only_alerts}"
    );
    let named = get_json(&ours, "/api/v1/rules", &[("rule_name[]", "job:up:sum")]);
    assert_eq!(
        named["data"]["groups"][0]["rules"][0]["name"], "job:up:sum",
        "{named}"
    );
    let bad = get_json(&ours, "/api/v1/rules", &[("type", "x")]);
    assert_eq!(bad["errorType"], "bad_data", "{bad}");
    let alerts = get_json(&ours, "/api/v1/alerts", &[]);
    let theirs_alerts = prometheus.get_json("/api/v1/alerts", &[]);
    assert_eq!(
        alerts["data"]["alerts"][0]["labels"],
        with_cluster(&theirs_alerts["data"]["alerts"][0]["labels"]),
        "{alerts}"
    );
    eprintln!(
        "{} rules and their alerts equal to Prometheus 3.5's",
        ra.len()
    );
}
