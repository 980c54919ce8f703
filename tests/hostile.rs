//! Hostile and careless requests against the real binaries: `strata query` over
//! `strata store`, and `strata query-frontend` in front of it, beside Prometheus 3.5.3 on the
//! same blocks. Each answer's status and `errorType` must equal Prometheus' (where
//! Prometheus' own answer is deterministic), the processes must stay up, and the querier's
//! peak resident memory must stay below a bound.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use strata_e2e::data::DataSet;
use strata_e2e::prometheus::Prometheus;
use strata_e2e::store_api::{StrataProcess, upload_block};
use strata_e2e::{block_dirs, copy_dir, promtool_create_blocks};
use strata_objstore::Bucket;

const START_S: i64 = 1_700_000_000;

/// Peak resident memory the querier may reach over the whole suite.
const QUERIER_PEAK_RSS_KIB: u64 = 512 * 1024;

/// Status and `errorType` of an answer (`""` on success).
type Outcome = (u16, String);

fn call(base: &str, path: &str, params: &[(&str, &str)], post: bool) -> Outcome {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let url = format!("{base}{path}");
    let result = if post {
        agent.post(&url).send_form(params.iter().copied())
    } else {
        agent.get(&url).query_pairs(params.iter().copied()).call()
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => return (0, format!("transport error: {e}")),
    };
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_default();
    if std::env::var_os("HOSTILE_VERBOSE").is_some() && status >= 500 {
        eprintln!("{path}: {status} {}", &body[..body.len().min(300)]);
    }
    let error_type = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errorType"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, error_type)
}

/// Peak resident set (`VmHWM`) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn assert_up(name: &str, base: &str) {
    let (status, _) = call(base, "/-/healthy", &[], false);
    assert_eq!(status, 200, "{name} is not healthy any more");
}

/// Requests whose answer must equal Prometheus': path, parameters.
fn compared() -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let q = |query: &str| vec![("query", query.to_owned())];
    let qp = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    };
    let mut out = vec![
        // Times, durations and steps at the extremes.
        ("/api/v1/query", qp(&[("query", "up"), ("time", "NaN")])),
        ("/api/v1/query", qp(&[("query", "up"), ("time", "1e300")])),
        ("/api/v1/query", qp(&[("query", "up"), ("time", "-1e300")])),
        ("/api/v1/query", qp(&[("query", "up"), ("time", "Inf")])),
        (
            "/api/v1/query",
            qp(&[("query", "time()"), ("time", "9.2e15")]),
        ),
        ("/api/v1/query", qp(&[("query", "up"), ("time", "zz")])),
        (
            "/api/v1/query",
            qp(&[("query", "up"), ("time", "2262-01-01T00:00:00Z")]),
        ),
        ("/api/v1/query", qp(&[("query", "up"), ("timeout", "zz")])),
        (
            "/api/v1/query",
            qp(&[("query", "up"), ("timeout", "1e300")]),
        ),
        ("/api/v1/query", qp(&[("query", "up"), ("timeout", "-1s")])),
        (
            "/api/v1/query",
            qp(&[("query", "up"), ("lookback_delta", "zz")]),
        ),
        (
            "/api/v1/query",
            qp(&[("query", "up"), ("lookback_delta", "-5m")]),
        ),
        (
            "/api/v1/query",
            qp(&[("query", "up"), ("lookback_delta", "-1")]),
        ),
        (
            "/api/v1/query",
            qp(&[("query", "up"), ("lookback_delta", "1e-9")]),
        ),
        ("/api/v1/query", qp(&[("query", "up"), ("limit", "-1")])),
        ("/api/v1/query", qp(&[("query", "up"), ("limit", "zz")])),
        (
            "/api/v1/query",
            qp(&[("query", "up"), ("limit", "99999999999999999999")]),
        ),
        ("/api/v1/query", qp(&[("query", "up"), ("limit", "1")])),
        ("/api/v1/query", vec![]),
        ("/api/v1/query", q("")),
        ("/api/v1/query", q("up[1e20]")),
        ("/api/v1/query", q("up offset 1e18")),
        ("/api/v1/query", q("up @ 1e30")),
        ("/api/v1/query", q("up @ 9e15")),
        ("/api/v1/query", q("vector(1)[1e9:1e8]")),
        ("/api/v1/query", q("sum(")),
        ("/api/v1/query", q("rate(up)")),
        ("/api/v1/query", q("{__name__=~\"(\"}")),
        (
            "/api/v1/query",
            q("label_replace(vector(1), \"a\", \"$1\", \"b\", \"(\")"),
        ),
        ("/api/v1/query", q("count_values(\"__name__\", vector(1))")),
        ("/api/v1/query", q("vector(1) + on(a) group_left vector(2)")),
        ("/api/v1/query", q("\u{fffd}\u{0}")),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up"),
                ("start", "-1e300"),
                ("end", "1e300"),
                ("step", "0.001"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up"),
                ("start", "0"),
                ("end", "100"),
                ("step", "NaN"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up"),
                ("start", "0"),
                ("end", "100"),
                ("step", "Inf"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up"),
                ("start", "0"),
                ("end", "100"),
                ("step", "1e300"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up"),
                ("start", "0"),
                ("end", "100"),
                ("step", "0"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up"),
                ("start", "0"),
                ("end", "100"),
                ("step", "-1"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up"),
                ("start", "0"),
                ("end", "100"),
                ("step", "0.0001"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up"),
                ("start", "NaN"),
                ("end", "100"),
                ("step", "10"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up"),
                ("start", "0"),
                ("end", "Inf"),
                ("step", "10"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[("query", "up"), ("start", "1"), ("end", "0"), ("step", "1")]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up"),
                ("start", "0"),
                ("end", "1e12"),
                ("step", "1"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up"),
                ("start", "0"),
                ("end", "0.001"),
                ("step", "0.0005"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[("query", "up"), ("end", "100"), ("step", "10")]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up"),
                ("start", "zz"),
                ("end", "100"),
                ("step", "10"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "up[5m]"),
                ("start", "0"),
                ("end", "100"),
                ("step", "10"),
            ]),
        ),
        (
            "/api/v1/query_range",
            qp(&[
                ("query", "\"a\""),
                ("start", "0"),
                ("end", "100"),
                ("step", "10"),
            ]),
        ),
        // Series, label names and values.
        ("/api/v1/series", vec![]),
        ("/api/v1/series", qp(&[("match[]", "up[1e20]")])),
        ("/api/v1/series", qp(&[("match[]", "{}")])),
        ("/api/v1/series", qp(&[("match[]", "{a=~\".*\"}")])),
        ("/api/v1/series", qp(&[("match[]", "up"), ("start", "zz")])),
        ("/api/v1/series", qp(&[("match[]", "up"), ("limit", "-1")])),
        ("/api/v1/series", qp(&[("match[]", "rate(up[5m])")])),
        ("/api/v1/labels", qp(&[("start", "zz")])),
        ("/api/v1/labels", qp(&[("match[]", "{}")])),
        ("/api/v1/labels", qp(&[("match[]", "up{")])),
        ("/api/v1/label/job/values", qp(&[("end", "zz")])),
        ("/api/v1/label/job/values", qp(&[("match[]", "{}")])),
        ("/api/v1/label/job/values", qp(&[("limit", "zz")])),
        // Escaped names: `U__` alone is the empty name; a bad escape stays as it is.
        ("/api/v1/label/U__/values", vec![]),
        ("/api/v1/label/U__a_2e_b/values", vec![]),
        ("/api/v1/label/U__bad_zz_/values", vec![]),
    ];
    // Large but legal: a megabyte label value, a thousand selectors.
    let big = "x".repeat(1 << 20);
    out.push((
        "/api/v1/query",
        vec![("query", format!("up{{a=\"{big}\"}}"))],
    ));
    let mut many = Vec::new();
    for i in 0..1000 {
        many.push(("match[]", format!("up{{i=\"{i}\"}}")));
    }
    out.push(("/api/v1/series", many));
    out
}

/// Queries of any nesting: evaluated, or refused with 400 `bad_data`; never a crash.
fn deep() -> Vec<String> {
    let n = 100_000;
    vec![
        format!("1{}", "+1".repeat(n)),
        format!("{}1{}", "(".repeat(20_000), ")".repeat(20_000)),
        format!("{}1", "-".repeat(20_000)),
        format!("{}vector(1){}", "abs(".repeat(10_000), ")".repeat(10_000)),
        format!("{}vector(1){}", "sum(".repeat(10_000), ")".repeat(10_000)),
        format!("vector(1){}", "[5m:1m]".repeat(5_000)),
        format!("up{}", " or up".repeat(n)),
        format!("1{}", "+1".repeat(900)),
    ]
}

#[test]
fn hostile_requests_get_prometheus_answers_and_nothing_falls_over() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(5, START_S, 4);
    let input = dir.path().join("data.om");
    std::fs::write(&input, data.to_openmetrics()).unwrap();
    let blocks_dir = dir.path().join("blocks");
    promtool_create_blocks(&input, &blocks_dir);
    let prom_dir = dir.path().join("prometheus");
    copy_dir(&blocks_dir, &prom_dir);
    let prometheus = Prometheus::start_on_blocks(&prom_dir);

    let bucket_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    let bucket = Bucket::from_yaml(&bucket_yaml, None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for block in block_dirs(&blocks_dir) {
        rt.block_on(upload_block(&bucket, &block, &[]));
    }
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &bucket_yaml,
        "--data-dir",
        dir.path().join("store").to_str().unwrap(),
    ]);
    let query = StrataProcess::start(&["query", "--endpoint", &store.grpc]);
    let frontend_cache = dir.path().join("cache.yml");
    std::fs::write(
        &frontend_cache,
        "type: IN-MEMORY\nconfig:\n  max_size: 64MB\n",
    )
    .unwrap();
    let frontend = StrataProcess::start_http_only(&[
        "query-frontend",
        "--query-frontend.downstream-url",
        &format!("http://{}", query.http),
        "--query-range.response-cache-config-file",
        frontend_cache.to_str().unwrap(),
    ]);
    let targets = [
        ("querier", format!("http://{}", query.http)),
        ("frontend", format!("http://{}", frontend.http)),
    ];
    let prom = prometheus.url();
    let started = Instant::now();
    let (mut same, mut failures) = (0usize, Vec::new());
    for (path, params) in compared() {
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let post = params.iter().map(|(_, v)| v.len()).sum::<usize>() > 8 << 10;
        let theirs = call(&prom, path, &pairs, post);
        for (name, base) in &targets {
            let ours = call(base, path, &pairs, post);
            if ours == theirs {
                same += 1;
            } else {
                let shown: Vec<String> = params
                    .iter()
                    .map(|(k, v)| format!("{k}={}", &v[..v.len().min(40)]))
                    .collect();
                failures.push(format!(
                    "{name} {path} {shown:?}: ours {ours:?}, Prometheus {theirs:?}"
                ));
            }
            assert_up(name, base);
        }
    }
    // Prometheus' answer to a non-positive timeout depends on a race; ours is a timeout.
    for timeout in ["-1", "0"] {
        for (name, base) in &targets {
            let ours = call(
                base,
                "/api/v1/query",
                &[("query", "up"), ("timeout", timeout)],
                false,
            );
            assert_eq!(
                ours,
                (503, "timeout".to_owned()),
                "{name} timeout={timeout}"
            );
        }
    }
    let mut deep_refused = 0;
    for q in deep() {
        for (name, base) in &targets {
            let t = Instant::now();
            let ours = call(base, "/api/v1/query", &[("query", q.as_str())], true);
            assert!(
                ours == (200, String::new()) || ours == (400, "bad_data".to_owned()),
                "{name} deep query {}…: {ours:?}",
                &q[..30]
            );
            deep_refused += usize::from(ours.0 == 400);
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{name}: deep query took {:?}",
                t.elapsed()
            );
            assert_up(name, base);
        }
    }
    // A query's budget: over --query.max-samples (counted as frames arrive), Prometheus'
    // error, and the querier stays up.
    let small = StrataProcess::start(&[
        "query",
        "--endpoint",
        &store.grpc,
        "--query.max-samples",
        "2000",
    ]);
    let small_base = format!("http://{}", small.http);
    let heavy = [
        ("query", "sum(rate(http_requests_total[1h]))"),
        ("time", "1700010000"),
    ];
    assert_eq!(
        call(&small_base, "/api/v1/query", &heavy, false),
        (422, "execution".to_owned()),
        "over the samples budget"
    );
    assert_up("querier with a small budget", &small_base);
    let rss = peak_rss_kib(query.pid());
    eprintln!(
        "hostile requests: {same} answers equal to Prometheus 3.5.3's, {} differ; {deep_refused} deep queries refused; querier peak RSS {rss} KiB; {:?}",
        failures.len(),
        started.elapsed()
    );
    for f in &failures {
        eprintln!("  {f}");
    }
    assert!(
        failures.is_empty(),
        "{} answers differ from Prometheus'",
        failures.len()
    );
    assert!(
        rss > 0 && rss < QUERIER_PEAK_RSS_KIB,
        "querier peak RSS {rss} KiB"
    );
}
