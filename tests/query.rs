//! `strata query` end to end: promtool blocks in a bucket as two replicas (each missing a
//! block the other has), served by `strata store`, queried through `strata query`; answers
//! must equal a real Prometheus 2.42 over the complete data.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use strata_e2e::data::{DataSet, QUERIES};
use strata_e2e::prometheus::{Prometheus, compare_answers, get_json, parse_answer};
use strata_e2e::store_api::{StrataProcess, upload_block};
use strata_e2e::{block_dirs, copy_as_new_block, copy_dir, promtool_create_blocks};
use strata_objstore::Bucket;

const START_S: i64 = 1_700_000_000;
const HOURS: i64 = 6;

struct Setup {
    _dir: tempfile::TempDir,
    prometheus: Prometheus,
    bucket_yaml: String,
    data_root: PathBuf,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(23, START_S, HOURS);
    let input = dir.path().join("data.om");
    std::fs::write(&input, data.to_openmetrics()).unwrap();
    let blocks_dir = dir.path().join("blocks");
    promtool_create_blocks(&input, &blocks_dir);
    let blocks = block_dirs(&blocks_dir);
    assert!(blocks.len() >= 4, "{} blocks", blocks.len());

    let prom_dir = dir.path().join("prometheus");
    copy_dir(&blocks_dir, &prom_dir);
    let prometheus = Prometheus::start_on_blocks(&prom_dir);

    let bucket_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    let bucket = Bucket::from_yaml(&bucket_yaml, None).unwrap();
    let copies = dir.path().join("replica-b");
    for (i, block) in blocks.iter().enumerate() {
        if i != 1 {
            upload_block(&bucket, block, &[("cluster", "eu1"), ("replica", "a")]).await;
        }
        if i != 2 {
            let copy = copy_as_new_block(block, &copies);
            upload_block(&bucket, &copy, &[("cluster", "eu1"), ("replica", "b")]).await;
        }
    }
    Setup {
        data_root: dir.path().to_owned(),
        _dir: dir,
        prometheus,
        bucket_yaml,
    }
}

fn start_store(setup: &Setup, name: &str) -> StrataProcess {
    let data_dir = setup.data_root.join(name);
    StrataProcess::start(&[
        "store",
        "--objstore.config",
        &setup.bucket_yaml,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
}

fn start_query(endpoints: &[&StrataProcess], extra: &[&str]) -> StrataProcess {
    let mut args = vec!["query"];
    for e in endpoints {
        args.push("--endpoint");
        args.push(&e.grpc);
    }
    args.extend_from_slice(extra);
    StrataProcess::start(&args)
}

fn our_url(p: &StrataProcess) -> String {
    format!("http://{}", p.http)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn querier_over_store_with_chain_dedup_matches_prometheus() {
    let setup = setup().await;
    let store = start_store(&setup, "store");
    let query = start_query(
        &[&store],
        &[
            "--query.replica-label",
            "replica",
            "--deduplication.func",
            "chain",
        ],
    );
    let base = our_url(&query);
    let mut compared = 0usize;
    let mut failures = Vec::new();
    for q in QUERIES {
        for t in [
            START_S as f64 + 3.0 * 3600.0 + 0.567,
            START_S as f64 + 5.0 * 3600.0 + 0.123,
        ] {
            let ts = t.to_string();
            let ours = parse_answer(
                &get_json(&base, "/api/v1/query", &[("query", q), ("time", &ts)]),
                &["cluster"],
            );
            let theirs = parse_answer(&setup.prometheus.query(q, t), &[]);
            match (ours, theirs) {
                (Ok(o), Ok(t)) => {
                    compared += t.values().map(Vec::len).sum::<usize>();
                    failures.extend(compare_answers(&format!("instant {q}"), &o, &t));
                }
                (o, t) => failures.push(format!("{q}: ours {o:?}, Prometheus {t:?}")),
            }
        }
        let (start, end) = (
            START_S as f64 + 0.567,
            (START_S + HOURS * 3600) as f64 + 0.567,
        );
        let params = [
            ("query", *q),
            ("start", &start.to_string()),
            ("end", &end.to_string()),
            ("step", "60"),
        ];
        let ours = parse_answer(
            &get_json(&base, "/api/v1/query_range", &params),
            &["cluster"],
        );
        let theirs = parse_answer(&setup.prometheus.query_range(q, start, end, 60.0), &[]);
        match (ours, theirs) {
            (Ok(o), Ok(t)) => {
                compared += t.values().map(Vec::len).sum::<usize>();
                failures.extend(compare_answers(&format!("range {q}"), &o, &t));
            }
            (o, t) => failures.push(format!("range {q}: ours {o:?}, Prometheus {t:?}")),
        }
    }
    eprintln!("compared {compared} points over {} queries", QUERIES.len());
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared > 20_000, "{compared}");

    // Without deduplication both replicas' series appear, with their replica label (in the
    // first block, which both replicas hold).
    let t = (START_S + 2000) as f64 + 0.567;
    let deduped = parse_answer(
        &get_json(
            &base,
            "/api/v1/query",
            &[("query", "temperature_celsius"), ("time", &t.to_string())],
        ),
        &[],
    )
    .unwrap();
    let raw = get_json(
        &base,
        "/api/v1/query",
        &[
            ("query", "temperature_celsius"),
            ("time", &t.to_string()),
            ("dedup", "false"),
        ],
    );
    let raw = parse_answer(&raw, &[]).unwrap();
    assert_eq!(raw.len(), 2 * deduped.len(), "{raw:?}");
    assert!(raw.keys().all(|k| k.contains("replica=")));

    // Metadata APIs.
    let labels = get_json(&base, "/api/v1/labels", &[]);
    let names: Vec<&str> = labels["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"__name__") && names.contains(&"cluster") && !names.contains(&"replica"),
        "{names:?}"
    );
    let values = get_json(&base, "/api/v1/label/__name__/values", &[]);
    let theirs = setup
        .prometheus
        .get_json("/api/v1/label/__name__/values", &[]);
    assert_eq!(values["data"], theirs["data"]);
    let series = get_json(
        &base,
        "/api/v1/series",
        &[("match[]", "http_requests_total{job=\"api\"}")],
    );
    let theirs = setup.prometheus.get_json(
        "/api/v1/series",
        &[
            ("match[]", "http_requests_total{job=\"api\"}"),
            ("start", "0"),
        ],
    );
    assert_eq!(
        series["data"].as_array().unwrap().len(),
        theirs["data"].as_array().unwrap().len()
    );
    let buildinfo = get_json(&base, "/api/v1/status/buildinfo", &[]);
    assert_eq!(buildinfo["status"], "success");
    let stores = get_json(&base, "/api/v1/stores", &[]);
    assert_eq!(
        stores["data"]["store"].as_array().unwrap().len(),
        1,
        "{stores}"
    );

    // Errors as Prometheus reports them.
    let bad = get_json(&base, "/api/v1/query", &[("query", "sum(")]);
    assert_eq!(bad["errorType"], "bad_data");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\": "),
        "{bad}"
    );
    let bad = get_json(
        &base,
        "/api/v1/query_range",
        &[
            ("query", "up"),
            ("start", "0"),
            ("end", "1000000"),
            ("step", "1"),
        ],
    );
    assert_eq!(bad["errorType"], "bad_data");
    assert!(
        bad["error"].as_str().unwrap().contains("11,000 points"),
        "{bad}"
    );

    // Stacking: a querier over this querier's Store API answers the same.
    let top = start_query(
        &[&query],
        &[
            "--query.replica-label",
            "replica",
            "--deduplication.func",
            "chain",
        ],
    );
    let top_base = our_url(&top);
    for q in [
        "sum by (job) (rate(http_requests_total[5m]))",
        "temperature_celsius",
        "http_requests_total{job=\"api\"}",
    ] {
        let (start, end) = (
            START_S as f64 + 0.567,
            (START_S + HOURS * 3600) as f64 + 0.567,
        );
        let params = [
            ("query", q),
            ("start", &start.to_string()),
            ("end", &end.to_string()),
            ("step", "120"),
        ];
        let direct = parse_answer(&get_json(&base, "/api/v1/query_range", &params), &[]).unwrap();
        let stacked =
            parse_answer(&get_json(&top_base, "/api/v1/query_range", &params), &[]).unwrap();
        assert!(!direct.is_empty());
        assert_eq!(compare_answers(q, &stacked, &direct), None);
    }
    let stores = get_json(&top_base, "/api/v1/stores", &[]);
    assert_eq!(
        stores["data"]["query"].as_array().unwrap().len(),
        1,
        "{stores}"
    );

    // gzip when the client accepts it.
    let resp = ureq::get(format!("{base}/api/v1/label/__name__/values"))
        .header("Accept-Encoding", "gzip")
        .call()
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );

    // Grafana's health check: `1+1` as a POST form.
    let mut resp = ureq::post(format!("{base}/api/v1/query"))
        .send_form([("query", "1+1"), ("time", "4")])
        .unwrap();
    let body: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["data"]["result"], serde_json::json!([4, "2"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn penalty_dedup_and_partial_response() {
    let setup = setup().await;
    let store = start_store(&setup, "store-a");
    let spare = start_store(&setup, "store-b");
    // A long info interval keeps a killed endpoint "healthy" so the fan-out hits it.
    let query = start_query(
        &[&store, &spare],
        &[
            "--query.replica-label",
            "replica",
            "--endpoint.info-timeout",
            "60s",
        ],
    );
    let base = our_url(&query);
    let (start, end) = (
        START_S as f64 + 0.567,
        (START_S + HOURS * 3600) as f64 + 0.567,
    );
    let params = [
        ("query", "temperature_celsius"),
        ("start", &start.to_string()),
        ("end", &end.to_string()),
        ("step", "60"),
    ];
    let ours = parse_answer(
        &get_json(&base, "/api/v1/query_range", &params),
        &["cluster"],
    )
    .unwrap();
    let theirs = parse_answer(
        &setup
            .prometheus
            .query_range("temperature_celsius", start, end, 60.0),
        &[],
    )
    .unwrap();
    // No series doubled, every one present, gaps of each replica filled by the other.
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for (key, want) in &theirs {
        let got = &ours[key];
        assert!(
            got.len() * 100 >= want.len() * 99,
            "{key}: {} of {} points",
            got.len(),
            want.len()
        );
    }

    drop(spare);
    let body = get_json(
        &base,
        "/api/v1/query",
        &[
            ("query", "count(temperature_celsius)"),
            ("time", &(start + 3600.0).to_string()),
        ],
    );
    assert_eq!(body["status"], "success", "{body}");
    let warnings = body["warnings"]
        .as_array()
        .expect("a warning for the dead endpoint");
    assert!(warnings[0].as_str().unwrap().contains("endpoint"), "{body}");
    let body = get_json(
        &base,
        "/api/v1/query",
        &[
            ("query", "count(temperature_celsius)"),
            ("time", &(start + 3600.0).to_string()),
            ("partial_response", "false"),
        ],
    );
    assert_eq!(body["status"], "error", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_from_dns_names_and_sd_files() {
    let setup = setup().await;
    let a = start_store(&setup, "store-a");
    let b = start_store(&setup, "store-b");
    let sd = setup.data_root.join("endpoints.yml");
    std::fs::write(&sd, format!("- targets: ['{}']\n", b.grpc)).unwrap();
    let port = a.grpc.rsplit(':').next().unwrap();
    let dns = format!("dns+localhost:{port}");
    let query = StrataProcess::start(&[
        "query",
        "--endpoint",
        &dns,
        "--endpoint.sd-files",
        sd.to_str().unwrap(),
        "--endpoint.info-timeout",
        "1s",
    ]);
    let base = our_url(&query);
    let names = |stores: &serde_json::Value| -> Vec<String> {
        let mut out: Vec<String> = stores["data"]
            .as_object()
            .map(|m| {
                m.values()
                    .flat_map(|v| v.as_array().unwrap().clone())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .iter()
            .filter(|e| e["lastError"].is_null())
            .map(|e| e["name"].as_str().unwrap().to_owned())
            .collect();
        out.sort();
        out
    };
    let mut want = vec![a.grpc.clone(), b.grpc.clone()];
    want.sort();
    assert_eq!(names(&get_json(&base, "/api/v1/stores", &[])), want);

    // The file changes: the endpoint it listed goes away.
    std::fs::write(&sd, "[]\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = names(&get_json(&base, "/api/v1/stores", &[]));
        if now == vec![a.grpc.clone()] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{now:?}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Names listed in `/api/v1/stores`, with whether their last check failed.
fn listed(base: &str) -> Vec<(String, bool)> {
    let stores = get_json(base, "/api/v1/stores", &[]);
    let mut out: Vec<(String, bool)> = stores["data"]
        .as_object()
        .map(|m| {
            m.values()
                .flat_map(|v| v.as_array().unwrap().clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .iter()
        .map(|e| {
            assert!(e["lastCheck"].is_string(), "{e}");
            (
                e["name"].as_str().unwrap().to_owned(),
                e["lastError"].is_string(),
            )
        })
        .collect();
    out.sort();
    out
}

async fn wait_listed(base: &str, want: &[(String, bool)]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = listed(base);
        if now == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{now:?}, want {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// `--endpoint.sd-config-file` with TLS for one endpoint only, `storeMatch[]`,
/// `--endpoint-strict` and `--store.unhealthy-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_endpoint_tls_store_match_strict_and_unhealthy_timeout() {
    let setup = setup().await;
    let certs = setup.data_root.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = strata_e2e::certs::TestCa::new("endpoint CA");
    let (server_cert, server_key) = ca
        .leaf("store", &["localhost", "127.0.0.1"])
        .write(&certs, "server");
    let (client_cert, client_key) = ca.leaf("querier", &["querier"]).write(&certs, "client");
    let ca_file = certs.join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let tls_store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &setup.bucket_yaml,
        "--data-dir",
        setup.data_root.join("store-tls").to_str().unwrap(),
        "--grpc-server-tls-cert",
        server_cert.to_str().unwrap(),
        "--grpc-server-tls-key",
        server_key.to_str().unwrap(),
        "--grpc-server-tls-client-ca",
        ca_file.to_str().unwrap(),
    ]);
    let plain = start_store(&setup, "store-plain");
    let doomed = start_store(&setup, "store-doomed");
    let strict = start_store(&setup, "store-strict");
    let sd_config = setup.data_root.join("endpoints.yml");
    std::fs::write(
        &sd_config,
        format!(
            "endpoints:\n  - address: {plain}\n  - address: {tls}\n    client_config:\n      server_name: localhost\n      tls_config:\n        cert_file: {cert}\n        key_file: {key}\n        ca_file: {ca}\n",
            plain = plain.grpc,
            tls = tls_store.grpc,
            cert = client_cert.display(),
            key = client_key.display(),
            ca = ca_file.display(),
        ),
    )
    .unwrap();
    let query = StrataProcess::start(&[
        "query",
        "--endpoint.sd-config-file",
        sd_config.to_str().unwrap(),
        "--endpoint",
        &doomed.grpc,
        "--endpoint-strict",
        &strict.grpc,
        "--endpoint.info-timeout",
        "1s",
        "--store.unhealthy-timeout",
        "3s",
        "--query.replica-label",
        "replica",
    ]);
    let base = our_url(&query);
    let mut all = vec![
        (plain.grpc.clone(), false),
        (tls_store.grpc.clone(), false),
        (doomed.grpc.clone(), false),
        (strict.grpc.clone(), false),
    ];
    all.sort();
    // Every endpoint healthy: the TLS one reached with its own client certificate.
    wait_listed(&base, &all).await;

    // storeMatch[] restricts the endpoints asked, by address.
    let t = (START_S + 3600) as f64 + 0.5;
    let count = |extra: &[(&str, &str)]| {
        let ts = t.to_string();
        let mut params = vec![
            ("query", "count(temperature_celsius)"),
            ("time", ts.as_str()),
        ];
        params.extend_from_slice(extra);
        get_json(&base, "/api/v1/query", &params)
    };
    let full = count(&[]);
    assert_eq!(
        full["data"]["result"].as_array().unwrap().len(),
        1,
        "{full}"
    );
    let only_tls = format!("{{__address__=\"{}\"}}", tls_store.grpc);
    let one = count(&[("storeMatch[]", &only_tls)]);
    assert_eq!(one["data"]["result"], full["data"]["result"], "{one}");
    let none = count(&[("storeMatch[]", "{__address__=\"nowhere:1\"}")]);
    assert_eq!(none["data"]["result"], serde_json::json!([]), "{none}");
    let bad = count(&[("storeMatch[]", "up{")]);
    assert_eq!(bad["errorType"], "bad_data", "{bad}");

    // A failing endpoint is listed with its error, then no longer after the unhealthy
    // timeout; a strict one stays listed and is still asked (so answers warn).
    let (doomed_addr, strict_addr) = (doomed.grpc.clone(), strict.grpc.clone());
    drop(doomed);
    drop(strict);
    let mut gone = vec![
        (plain.grpc.clone(), false),
        (tls_store.grpc.clone(), false),
        (strict_addr.clone(), true),
    ];
    gone.sort();
    wait_listed(&base, &gone).await;
    assert!(!listed(&base).iter().any(|(n, _)| n == &doomed_addr));
    let warned = count(&[]);
    assert_eq!(warned["status"], "success", "{warned}");
    let warnings = warned["warnings"]
        .as_array()
        .expect("a warning for the strict endpoint");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains(strict_addr.as_str())),
        "{warned}"
    );
    assert_eq!(warned["data"]["result"], full["data"]["result"]);
}
