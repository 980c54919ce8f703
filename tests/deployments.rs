//! Real deployments' argument lists (`tests/data/argv/`: the Prometheus Operator's sidecar
//! container, the bitnami thanos chart's query, query-frontend, store gateway and compactor)
//! start `strata` unchanged but for ports, paths and in-cluster URLs (see the README there),
//! and every component gets ready; the querier then answers through the frontend over the
//! sidecar and the store gateway, and the logs are the format asked for.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use strata_e2e::certs::TestCa;
use strata_e2e::prometheus::{Prometheus, get_json};
use strata_e2e::store_api::StrataProcess;

const EXT: [(&str, &str); 2] = [("cluster", "eks-1"), ("prometheus_replica", "prometheus-0")];

/// The arguments of `tests/data/argv/<name>.args` (comments and blank lines dropped).
fn argv(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/argv")
        .join(format!("{name}.args"));
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// What the test changes in an argument list.
struct Rewrite<'a> {
    /// Replacements of a value's start (in-container paths and in-cluster URLs).
    values: Vec<(&'a str, String)>,
    /// Extra arguments (an endpoint the test can reach).
    extra: Vec<String>,
}

/// The rewritten arguments, with the HTTP and gRPC addresses they now hold.
fn rewrite(
    args: Vec<String>,
    rw: &Rewrite<'_>,
    env: &[(&str, &str)],
) -> (Vec<String>, String, String) {
    let (mut http, mut grpc) = (String::new(), String::new());
    let mut out = Vec::new();
    for arg in args {
        let arg = if let Some(v) = arg.strip_prefix("--http-address=") {
            assert!(v.contains(':'), "{arg}");
            http = format!("127.0.0.1:{}", strata_e2e::free_port());
            format!("--http-address={http}")
        } else if let Some(v) = arg.strip_prefix("--grpc-address=") {
            assert!(v.contains(':'), "{arg}");
            grpc = format!("127.0.0.1:{}", strata_e2e::free_port());
            format!("--grpc-address={grpc}")
        } else {
            // The first rule whose text starts the value replaces that start, once.
            let arg = match arg.split_once('=') {
                Some((flag, value)) => rw
                    .values
                    .iter()
                    .find_map(|(from, to)| {
                        value
                            .strip_prefix(from)
                            .map(|rest| format!("{flag}={to}{rest}"))
                    })
                    .unwrap_or(arg),
                None => arg,
            };
            // The kubelet expands $(VAR) in container args from the container's env.
            strata_types::expand_env(&arg, |name| {
                env.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            })
            .unwrap_or(arg)
        };
        out.push(arg);
    }
    out.extend(rw.extra.iter().cloned());
    (out, http, grpc)
}

fn start(
    name: &str,
    rw: &Rewrite<'_>,
    env: &[(&str, &str)],
    logs: &Path,
) -> (StrataProcess, PathBuf) {
    let (args, http, grpc) = rewrite(argv(name), rw, env);
    let log = logs.join(format!("{name}.log"));
    eprintln!("starting strata {}", args.join(" "));
    let process = StrataProcess::start_exact(&args, &http, &grpc, env, &log);
    (process, log)
}

/// Every line of a log is logfmt with Thanos' keys.
fn assert_logfmt(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty(), "{} is empty", log.display());
    for line in lines {
        assert!(
            line.starts_with("ts=") && line.contains(" level=") && line.contains(" msg="),
            "not Thanos logfmt: {line}"
        );
    }
}

/// Every line of a log is a JSON object with Thanos' keys.
fn assert_json(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty(), "{} is empty", log.display());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["ts", "level", "msg", "caller"] {
            assert!(v.get(key).is_some(), "no {key}: {line}");
        }
    }
}

#[test]
fn operator_and_chart_argument_lists_start_every_component() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let prometheus = Prometheus::start_scraping_itself(&dir.path().join("prometheus"), &EXT);
    let bucket_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    std::fs::create_dir(dir.path().join("bucket")).unwrap();
    let objstore_file = dir.path().join("objstore.yml");
    std::fs::write(&objstore_file, &bucket_yaml).unwrap();
    // The Secret the Operator writes for --prometheus.http-client-file.
    let http_client_file = dir.path().join("prometheus.http-client-file.yaml");
    std::fs::write(
        &http_client_file,
        "tls_config:\n  insecure_skip_verify: true\n",
    )
    .unwrap();
    let prom_url = format!("{}/", prometheus.url());
    let env = [("OBJSTORE_CONFIG", bucket_yaml.as_str())];

    // The Operator's sidecar, shipping to the bucket.
    let sidecar_rw = Rewrite {
        values: vec![
            ("http://localhost:9090/", prom_url.clone()),
            (
                "/etc/thanos/config/prometheus.http-client-file.yaml",
                http_client_file.display().to_string(),
            ),
            ("/prometheus", prometheus.data_dir.display().to_string()),
        ],
        extra: Vec::new(),
    };
    let (sidecar, sidecar_log) = start("operator-sidecar", &sidecar_rw, &env, &logs);

    // The Operator's sidecar with gRPC TLS (its certificates) and JSON logs.
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir(&tls_dir).unwrap();
    let ca = TestCa::new("operator-ca");
    std::fs::write(tls_dir.join("ca"), &ca.pem).unwrap();
    let leaf = ca.leaf("sidecar", &["localhost", "127.0.0.1"]);
    std::fs::write(tls_dir.join("cert"), &leaf.cert).unwrap();
    std::fs::write(tls_dir.join("key"), &leaf.key).unwrap();
    let tls_rw = Rewrite {
        values: vec![
            ("http://localhost:9090/", prom_url.clone()),
            (
                "/etc/thanos/config/prometheus.http-client-file.yaml",
                http_client_file.display().to_string(),
            ),
            ("/etc/thanos/tls", tls_dir.display().to_string()),
        ],
        extra: Vec::new(),
    };
    let (tls_sidecar, tls_log) = start("operator-sidecar-tls", &tls_rw, &env, &logs);

    // The chart's store gateway, compactor, querier and frontend.
    let paths = |name: &str| Rewrite {
        values: vec![
            ("/conf/objstore.yml", objstore_file.display().to_string()),
            ("/data", dir.path().join(name).display().to_string()),
        ],
        extra: Vec::new(),
    };
    let (store, store_log) = start("bitnami-storegateway", &paths("store"), &[], &logs);
    let (compactor, compactor_log) = start("bitnami-compactor", &paths("compact"), &[], &logs);
    let query_rw = Rewrite {
        values: Vec::new(),
        extra: vec![
            format!("--endpoint={}", store.grpc),
            format!("--endpoint={}", sidecar.grpc),
        ],
    };
    let (query, query_log) = start("bitnami-query", &query_rw, &[], &logs);
    let frontend_rw = Rewrite {
        values: vec![(
            "http://strata-thanos-query:9090",
            format!("http://{}", query.http),
        )],
        extra: Vec::new(),
    };
    let (frontend, frontend_log) = start("bitnami-query-frontend", &frontend_rw, &[], &logs);

    // Prometheus' own `up` through frontend → querier → sidecar, deduplicated over the
    // chart's replica label (`replica`, absent here) with the cluster label kept.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let body = get_json(
            &format!("http://{}", frontend.http),
            "/api/v1/query",
            &[("query", "up{job=\"prometheus\"}")],
        );
        assert_eq!(body["status"], "success", "{body}");
        let result = body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(series) = result.first() {
            assert_eq!(series["metric"]["cluster"], "eks-1", "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no `up` through the frontend: {body}"
        );
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    for (name, process) in [
        ("sidecar", &sidecar),
        ("TLS sidecar", &tls_sidecar),
        ("store", &store),
        ("compactor", &compactor),
        ("query", &query),
        ("frontend", &frontend),
    ] {
        assert_eq!(process.http_get("/-/ready").trim(), "OK", "{name}");
    }
    // Thanos' request metrics: HTTP per handler on the querier and the frontend, gRPC per
    // method on the Store API servers.
    let metrics = |p: &StrataProcess| p.http_get("/metrics");
    let query_metrics = metrics(&query);
    assert!(
        query_metrics.contains(r#"http_requests_total{code="200",handler="query",method="get"}"#),
        "{query_metrics}"
    );
    assert!(query_metrics.contains("http_request_duration_seconds_bucket{"));
    assert!(query_metrics.contains("thanos_query_concurrent_gate_queries_max 20"));
    // One lookup per `--store.sd-dns-interval` (30s): a slow machine may have done two.
    assert!(
        query_metrics.lines().any(|l| l
            .strip_prefix("thanos_query_store_apis_dns_lookups_total ")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|v| v >= 1.0)),
        "{query_metrics}"
    );
    // Its Store API clients, as Thanos' querier counts them (the mixin's client error rate).
    assert!(
        query_metrics.contains(r#"grpc_client_handled_total{grpc_code="OK",grpc_method="Series",grpc_service="thanos.Store",grpc_type="server_stream"}"#),
        "{query_metrics}"
    );
    assert!(query_metrics.contains(r#"grpc_client_started_total{grpc_method="Info""#));
    let frontend_metrics = metrics(&frontend);
    assert!(
        frontend_metrics.contains(r#"handler="query-frontend""#),
        "frontend HTTP metrics"
    );
    // Thanos' frontend counters by operation (the dashboards' "requests by op").
    assert!(
        frontend_metrics.lines().any(|l| l
            .starts_with(r#"thanos_query_frontend_queries_total{op="query"}"#)
            && !l.ends_with(" 0")),
        "{frontend_metrics}"
    );
    let sidecar_metrics = metrics(&sidecar);
    assert!(
        sidecar_metrics.contains(r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Series",grpc_service="thanos.Store",grpc_type="server_stream"}"#),
        "{sidecar_metrics}"
    );
    assert!(sidecar_metrics.contains("grpc_server_handling_seconds_bucket{"));
    assert!(sidecar_metrics.contains(r#"grpc_server_msg_sent_total{grpc_method="Series""#));
    for (name, text) in [("query", &query_metrics), ("sidecar", &sidecar_metrics)] {
        assert!(
            text.contains("thanos_build_info{version=\""),
            "{name}: {text}"
        );
        assert!(text.contains("process_resident_memory_bytes "), "{name}");
        assert!(text.contains("process_cpu_seconds_total "), "{name}");
    }
    // The gateway's bucket is still empty: the querier only checks it with Info.
    let store_metrics = metrics(&store);
    assert!(store_metrics.contains("thanos_bucket_store_series_gate_queries_max 20"));
    assert!(
        store_metrics.contains(r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Info",grpc_service="thanos.info.Info",grpc_type="unary"}"#),
        "{store_metrics}"
    );
    // --query-frontend.log-queries-longer-than: Thanos' slow query line, with the query.
    let slow_http = format!("127.0.0.1:{}", strata_e2e::free_port());
    let slow_log = logs.join("slow-frontend.log");
    let slow = StrataProcess::start_exact(
        &[
            "query-frontend".to_owned(),
            format!("--http-address={slow_http}"),
            format!("--query-frontend.downstream-url=http://{}", query.http),
            "--query-frontend.log-queries-longer-than=-1".to_owned(),
        ],
        &slow_http,
        "",
        &[],
        &slow_log,
    );
    let body = get_json(
        &format!("http://{}", slow.http),
        "/api/v1/query",
        &[("query", "count(up)")],
    );
    assert_eq!(body["status"], "success", "{body}");
    let text = std::fs::read_to_string(&slow_log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains(r#"msg="slow query detected""#)
                && l.contains("path=/api/v1/query")
                && l.contains("param_query")),
        "{text}"
    );
    // The querier's own slow query log (--query.log-queries-longer-than), the same line.
    let slow_query_http = format!("127.0.0.1:{}", strata_e2e::free_port());
    let slow_query_grpc = format!("127.0.0.1:{}", strata_e2e::free_port());
    let slow_query_log = logs.join("slow-query.log");
    let slow_query = StrataProcess::start_exact(
        &[
            "query".to_owned(),
            format!("--http-address={slow_query_http}"),
            format!("--grpc-address={slow_query_grpc}"),
            format!("--endpoint={}", sidecar.grpc),
            "--query.log-queries-longer-than=-1s".to_owned(),
        ],
        &slow_query_http,
        &slow_query_grpc,
        &[],
        &slow_query_log,
    );
    let body = get_json(
        &format!("http://{}", slow_query.http),
        "/api/v1/query",
        &[("query", "count(up)")],
    );
    assert_eq!(body["status"], "success", "{body}");
    let text = std::fs::read_to_string(&slow_query_log).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains(r#"msg="slow query detected""#)
                && l.contains("path=/api/v1/query")
                && l.contains("param_query")),
        "{text}"
    );
    for log in [
        &sidecar_log,
        &store_log,
        &compactor_log,
        &query_log,
        &frontend_log,
    ] {
        assert_logfmt(log);
    }
    assert_json(&tls_log);
}
