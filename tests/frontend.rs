//! `strata query-frontend` end to end with a real Prometheus 2.42 as the downstream: split and
//! cached answers are byte-identical to the downstream's whole-range answers, cold and warm
//! and with the window moved; with a real memcached, and with memcached down.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use strata_e2e::data::DataSet;
use strata_e2e::prometheus::Prometheus;
use strata_e2e::store_api::StrataProcess;
use strata_e2e::{free_port, promtool_create_blocks};

const START_S: i64 = 1_700_000_000;
const HOURS: i64 = 6;

const QUERIES: &[&str] = &[
    "http_requests_total",
    "rate(http_requests_total[5m])",
    "sum by (job) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[10m])))",
    "avg_over_time(temperature_celsius[30m])",
    "max_over_time(misc_gauge[30m])",
    "absent(nonexistent)",
];

fn get(base: &str, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(format!("{base}{path}"));
    for (k, v) in params {
        request = request.query(*k, *v);
    }
    let mut resp = request.call().unwrap();
    let status = resp.status().as_u16();
    (
        status,
        resp.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .unwrap(),
    )
}

/// Compares the frontend's answers with Prometheus' for every query over `[start, end]`.
fn check_equal(frontend: &str, prometheus: &str, start: i64, end: i64, step: &str) {
    for q in QUERIES {
        let (s, e) = (start.to_string(), end.to_string());
        let params = [
            ("query", *q),
            ("start", s.as_str()),
            ("end", e.as_str()),
            ("step", step),
        ];
        let (fs, fb) = get(frontend, "/api/v1/query_range", &params);
        let (ps, pb) = get(prometheus, "/api/v1/query_range", &params);
        if (fs, &fb) != (ps, &pb) {
            let at = fb
                .bytes()
                .zip(pb.bytes())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let lo = at.saturating_sub(80);
            panic!(
                "{q} [{start}, {end}] step {step}: status {fs} vs {ps}, first difference at byte {at}:\n  frontend:   {}\n  prometheus: {}",
                &fb[lo..(at + 80).min(fb.len())],
                &pb[lo..(at + 80).min(pb.len())]
            );
        }
    }
}

fn metric(frontend: &StrataProcess, name: &str) -> f64 {
    let text = frontend.http_get("/metrics");
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn setup() -> (tempfile::TempDir, Prometheus) {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(5, START_S, HOURS);
    let input = dir.path().join("data.om");
    std::fs::write(&input, data.to_openmetrics()).unwrap();
    let blocks = dir.path().join("prom");
    promtool_create_blocks(&input, &blocks);
    let prometheus = Prometheus::start_on_blocks(&blocks);
    (dir, prometheus)
}

fn frontend(prometheus: &Prometheus, cache_yaml: &str) -> StrataProcess {
    StrataProcess::start_http_only(&[
        "query-frontend",
        "--query-frontend.downstream-url",
        &prometheus.url(),
        "--query-range.split-interval",
        "1h",
        "--labels.split-interval",
        "1h",
        "--query-range.response-cache-config",
        cache_yaml,
    ])
}

#[test]
fn frontend_with_in_memory_cache_matches_downstream() {
    let (_dir, prometheus) = setup();
    let fe = frontend(&prometheus, "type: IN-MEMORY\nconfig:\n  max_size: 64MB\n");
    let base = format!("http://{}", fe.http);
    // Aligned to the step, so alignment changes nothing; 6 hours: 7 one-hour splits.
    let (start, end) = (
        START_S - START_S % 60,
        START_S + HOURS * 3600 - (START_S % 60),
    );
    check_equal(&base, &prometheus.url(), start, end, "60");
    let cold_requests = metric(&fe, "thanos_frontend_downstream_requests_total");
    assert!(
        cold_requests >= (QUERIES.len() * 6) as f64,
        "{cold_requests}"
    );
    // Warm: the same answers, no downstream request.
    check_equal(&base, &prometheus.url(), start, end, "60");
    assert_eq!(
        metric(&fe, "thanos_frontend_downstream_requests_total"),
        cold_requests
    );
    assert!(
        metric(&fe, "thanos_frontend_query_range_cache_hits_total") >= (QUERIES.len() * 6) as f64
    );
    // The window moved by one minute: still identical, served from the cache but the end.
    check_equal(&base, &prometheus.url(), start + 60, end + 60, "60");
    let after_move = metric(&fe, "thanos_frontend_downstream_requests_total") - cold_requests;
    assert!(
        after_move <= QUERIES.len() as f64,
        "{after_move} downstream requests after moving the window"
    );
    // Another step is another cache entry; still exact.
    check_equal(
        &base,
        &prometheus.url(),
        start - start % 300,
        end - end % 300,
        "300",
    );

    // Label and series requests over six hours are split in hours and merged.
    let (s6, e6) = (START_S.to_string(), (START_S + HOURS * 3600).to_string());
    for (path, params) in [
        (
            "/api/v1/labels",
            vec![("start", s6.as_str()), ("end", e6.as_str())],
        ),
        (
            "/api/v1/label/__name__/values",
            vec![("start", s6.as_str()), ("end", e6.as_str())],
        ),
        (
            "/api/v1/label/instance/values",
            vec![
                ("start", s6.as_str()),
                ("end", e6.as_str()),
                ("match[]", "http_requests_total"),
            ],
        ),
        (
            "/api/v1/series",
            vec![
                ("start", s6.as_str()),
                ("end", e6.as_str()),
                ("match[]", "{__name__=~\"http.*|misc.*\"}"),
            ],
        ),
    ] {
        let before = metric(&fe, "thanos_frontend_downstream_requests_total");
        let fe_answer = get(&base, path, &params);
        let prom_answer = get(&prometheus.url(), path, &params);
        assert_eq!(fe_answer, prom_answer, "{path} {params:?}");
        assert!(
            metric(&fe, "thanos_frontend_downstream_requests_total") - before >= 6.0,
            "{path} not split"
        );
    }

    // Everything else is proxied unchanged, errors included.
    for (path, params) in [
        ("/api/v1/labels", vec![]),
        ("/api/v1/label/__name__/values", vec![]),
        (
            "/api/v1/query",
            vec![
                ("query", "sum(http_requests_total)"),
                ("time", "1700010000"),
            ],
        ),
        ("/api/v1/query", vec![("query", "sum(")]),
        (
            "/api/v1/query_range",
            vec![("query", "up"), ("start", "x"), ("end", "1"), ("step", "1")],
        ),
        ("/api/v1/status/buildinfo", vec![]),
    ] {
        let fe_answer = get(&base, path, &params);
        let prom_answer = get(&prometheus.url(), path, &params);
        assert_eq!(fe_answer, prom_answer, "{path} {params:?}");
    }
}

#[test]
fn frontend_with_memcached_and_memcached_down() {
    let (_dir, prometheus) = setup();
    let port = free_port();
    let memcached = strata_e2e::memcached::Memcached::start(port);
    let fe = frontend(
        &prometheus,
        &format!(
            "type: MEMCACHED\nconfig:\n  addresses: [\"127.0.0.1:{port}\"]\n  timeout: 500ms\n  max_item_size: 8MiB\n"
        ),
    );
    let base = format!("http://{}", fe.http);
    let (start, end) = (
        START_S - START_S % 60,
        START_S + HOURS * 3600 - (START_S % 60),
    );
    check_equal(&base, &prometheus.url(), start, end, "60");
    let cold = metric(&fe, "thanos_frontend_downstream_requests_total");
    check_equal(&base, &prometheus.url(), start, end, "60");
    assert_eq!(
        metric(&fe, "thanos_frontend_downstream_requests_total"),
        cold,
        "warm answers came from memcached"
    );
    assert_eq!(
        metric(&fe, "thanos_memcached_operation_failures_total"),
        0.0
    );

    drop(memcached);
    check_equal(&base, &prometheus.url(), start, end, "60");
    assert!(metric(&fe, "thanos_frontend_downstream_requests_total") > cold);
    assert!(metric(&fe, "thanos_memcached_operation_failures_total") > 0.0);
}
