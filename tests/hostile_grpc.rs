//! Hostile and careless Store API requests over gRPC against the real binaries: `strata
//! store` over a bucket and `strata sidecar` beside Prometheus 3.5.3, on the same blocks.
//! Each answer's gRPC code must be the one Thanos' store gateway or sidecar gives (from
//! `pkg/store/bucket.go`, `pkg/store/prometheus.go`), the processes must stay up, and their
//! peak resident memory must stay below a bound.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use strata_e2e::data::DataSet;
use strata_e2e::prometheus::Prometheus;
use strata_e2e::store_api::{StrataProcess, upload_block};
use strata_e2e::{block_dirs, copy_dir, promtool_create_blocks};
use strata_objstore::Bucket;
use strata_storepb::store_client::StoreClient;
use strata_storepb::{LabelMatcher, LabelNamesRequest, LabelValuesRequest, SeriesRequest};
use tonic::Code;

const START_S: i64 = 1_700_000_000;
const EXT: [(&str, &str); 1] = [("cluster", "eu1")];

/// Peak resident memory the store gateway and the sidecar may each reach.
const PEAK_RSS_KIB: u64 = 512 * 1024;

fn m(kind: i32, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: kind,
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

const EQ: i32 = 0;
const RE: i32 = 2;

fn series(matchers: Vec<LabelMatcher>, min_time: i64, max_time: i64) -> SeriesRequest {
    SeriesRequest {
        min_time,
        max_time,
        matchers,
        ..Default::default()
    }
}

/// The code of a Series call (after reading the whole stream), and how many series came.
async fn call_series(url: &str, req: SeriesRequest) -> (Code, usize) {
    let mut client = StoreClient::connect(url.to_owned())
        .await
        .unwrap()
        .max_encoding_message_size(64 << 20);
    let mut stream = match client.series(req).await {
        Ok(s) => s.into_inner(),
        Err(status) => return (status.code(), 0),
    };
    let mut count = 0;
    loop {
        match stream.message().await {
            Ok(Some(frame)) => {
                count += match frame.result {
                    Some(strata_storepb::series_response::Result::Series(_)) => 1,
                    Some(strata_storepb::series_response::Result::Batch(b)) => b.series.len(),
                    _ => 0,
                }
            }
            Ok(None) => return (Code::Ok, count),
            Err(status) => return (status.code(), count),
        }
    }
}

async fn call_values(url: &str, req: LabelValuesRequest) -> Code {
    let mut client = StoreClient::connect(url.to_owned()).await.unwrap();
    match client.label_values(req).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn call_names(url: &str, req: LabelNamesRequest) -> Code {
    let mut client = StoreClient::connect(url.to_owned()).await.unwrap();
    match client.label_names(req).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn assert_up(name: &str, process: &StrataProcess) {
    assert_eq!(
        process.http_get("/-/healthy").trim(),
        "OK",
        "{name} is down"
    );
}

/// Which component a case runs against, and the code Thanos' component answers.
struct Case {
    name: &'static str,
    req: SeriesRequest,
    store: Code,
    sidecar: Code,
}

fn series_cases() -> Vec<Case> {
    let all = || vec![m(RE, "__name__", ".+")];
    let garbage_hints = prost_types::Any {
        type_url: format!(
            "{}hintspb.SeriesRequestHints",
            strata_storepb::ANY_TYPE_PREFIX
        ),
        value: vec![0xff, 0xff, 0xff, 0xff],
    };
    let many: Vec<LabelMatcher> = (0..10_000)
        .map(|i| m(1, &format!("l{i}"), "x"))
        .chain([m(RE, "__name__", ".+")])
        .collect();
    vec![
        Case {
            name: "invalid regex",
            req: series(vec![m(RE, "__name__", "(")], 0, i64::MAX),
            store: Code::InvalidArgument,
            sidecar: Code::InvalidArgument,
        },
        Case {
            name: "no matchers",
            req: series(Vec::new(), 0, i64::MAX),
            store: Code::Ok,
            sidecar: Code::InvalidArgument,
        },
        Case {
            name: "unknown matcher type",
            req: series(vec![m(99, "__name__", "up")], 0, i64::MAX),
            store: Code::InvalidArgument,
            sidecar: Code::InvalidArgument,
        },
        Case {
            name: "only external-label matchers",
            req: series(vec![m(EQ, "cluster", "eu1")], 0, i64::MAX),
            // Thanos' gateway: no matchers left select no postings; the sidecar refuses.
            store: Code::Ok,
            sidecar: Code::InvalidArgument,
        },
        Case {
            name: "external labels that do not match",
            req: series(
                vec![m(EQ, "cluster", "other"), m(RE, "__name__", ".+")],
                0,
                i64::MAX,
            ),
            store: Code::Ok,
            sidecar: Code::Ok,
        },
        Case {
            name: "min time after max time",
            req: series(all(), i64::MAX, i64::MIN),
            store: Code::Ok,
            sidecar: Code::Ok,
        },
        Case {
            name: "the whole time range",
            req: series(all(), i64::MIN, i64::MAX),
            store: Code::Ok,
            sidecar: Code::Ok,
        },
        Case {
            name: "a megabyte matcher value",
            req: series(vec![m(EQ, "__name__", &"x".repeat(1 << 20))], 0, i64::MAX),
            store: Code::Ok,
            sidecar: Code::Ok,
        },
        Case {
            name: "ten thousand matchers",
            req: series(many, 0, i64::MAX),
            store: Code::Ok,
            sidecar: Code::Ok,
        },
        Case {
            name: "garbage hints",
            req: SeriesRequest {
                hints: Some(garbage_hints),
                ..series(all(), 0, i64::MAX)
            },
            // Thanos' sidecar does not read hints.
            store: Code::InvalidArgument,
            sidecar: Code::Ok,
        },
        Case {
            name: "negative batch size and limit",
            req: SeriesRequest {
                response_batch_size: -5,
                limit: -1,
                ..series(all(), 0, i64::MAX)
            },
            store: Code::Ok,
            sidecar: Code::Ok,
        },
    ]
}

#[test]
fn hostile_store_api_requests_get_thanos_codes_and_nothing_falls_over() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(5, START_S, 4);
    let input = dir.path().join("data.om");
    std::fs::write(&input, data.to_openmetrics()).unwrap();
    let blocks_dir = dir.path().join("blocks");
    promtool_create_blocks(&input, &blocks_dir);
    let prom_dir = dir.path().join("prometheus");
    copy_dir(&blocks_dir, &prom_dir);
    let prometheus = Prometheus::start_on_blocks_with_labels(&prom_dir, &EXT);

    let bucket_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    let bucket = Bucket::from_yaml(&bucket_yaml, None).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for block in block_dirs(&blocks_dir) {
        rt.block_on(upload_block(&bucket, &block, &EXT));
    }
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &bucket_yaml,
        "--data-dir",
        dir.path().join("store").to_str().unwrap(),
    ]);
    let sidecar = StrataProcess::start(&[
        "sidecar",
        "--prometheus.url",
        &prometheus.url(),
        "--tsdb.path",
        prom_dir.to_str().unwrap(),
    ]);
    let targets = [("store", &store), ("sidecar", &sidecar)];
    let mut failures = Vec::new();
    let mut same = 0;
    rt.block_on(async {
        for case in series_cases() {
            for (name, process) in targets {
                let want = if name == "store" {
                    case.store
                } else {
                    case.sidecar
                };
                let (got, count) = call_series(&process.grpc_url(), case.req.clone()).await;
                let selects_nothing = [
                    "no matchers",
                    "only external-label matchers",
                    "external labels that do not match",
                    "min time after max time",
                ];
                if got == Code::Ok && selects_nothing.contains(&case.name) && count != 0 {
                    failures.push(format!(
                        "{name} Series {}: {count} series, Thanos none",
                        case.name
                    ));
                } else if got == want {
                    same += 1;
                } else {
                    failures.push(format!(
                        "{name} Series {}: {got:?} ({count} series), Thanos {want:?}",
                        case.name
                    ));
                }
                assert_up(name, process);
            }
        }
        // Label calls: an empty name (the sidecar refuses it as Thanos'), bad matchers.
        let bad = vec![m(RE, "a", "(")];
        let label_cases: Vec<(&str, LabelValuesRequest, Code, Code)> = vec![
            (
                "values of an empty name",
                LabelValuesRequest {
                    label: String::new(),
                    end: i64::MAX,
                    ..Default::default()
                },
                Code::Ok,
                Code::InvalidArgument,
            ),
            (
                "values with an invalid regex",
                LabelValuesRequest {
                    label: "job".into(),
                    end: i64::MAX,
                    matchers: bad.clone(),
                    ..Default::default()
                },
                Code::InvalidArgument,
                Code::InvalidArgument,
            ),
            (
                "values over min > max",
                LabelValuesRequest {
                    label: "job".into(),
                    start: i64::MAX,
                    end: i64::MIN,
                    ..Default::default()
                },
                Code::Ok,
                Code::Ok,
            ),
        ];
        for (case, req, want_store, want_sidecar) in label_cases {
            for (name, process) in targets {
                let want = if name == "store" {
                    want_store
                } else {
                    want_sidecar
                };
                let got = call_values(&process.grpc_url(), req.clone()).await;
                if got == want {
                    same += 1;
                } else {
                    failures.push(format!(
                        "{name} LabelValues {case}: {got:?}, Thanos {want:?}"
                    ));
                }
                assert_up(name, process);
            }
        }
        for (name, process) in targets {
            let got = call_names(
                &process.grpc_url(),
                LabelNamesRequest {
                    matchers: bad.clone(),
                    end: i64::MAX,
                    ..Default::default()
                },
            )
            .await;
            if got == Code::InvalidArgument {
                same += 1;
            } else {
                failures.push(format!(
                    "{name} LabelNames with an invalid regex: {got:?}, Thanos InvalidArgument"
                ));
            }
        }

        // A request over the 32 MiB limit is refused (grpc-go says ResourceExhausted,
        // tonic OutOfRange), and the server carries on.
        for (name, process) in targets {
            let huge = series(vec![m(EQ, "__name__", &"x".repeat(40 << 20))], 0, i64::MAX);
            let (got, _) = call_series(&process.grpc_url(), huge).await;
            assert!(
                matches!(got, Code::ResourceExhausted | Code::OutOfRange),
                "{name}: a 40 MiB request answered {got:?}"
            );
            assert_up(name, process);
        }

        // Clients that go away mid-stream: the next request is served normally.
        for (name, process) in targets {
            for _ in 0..20 {
                let mut client = StoreClient::connect(process.grpc_url()).await.unwrap();
                let mut stream = client
                    .series(series(vec![m(RE, "__name__", ".+")], i64::MIN, i64::MAX))
                    .await
                    .unwrap()
                    .into_inner();
                let _ = stream.message().await;
                drop(stream);
            }
            let (got, count) = call_series(
                &process.grpc_url(),
                series(vec![m(RE, "__name__", ".+")], i64::MIN, i64::MAX),
            )
            .await;
            assert_eq!(got, Code::Ok, "{name} after abandoned streams");
            assert!(count > 0, "{name} after abandoned streams: no series");
            assert_up(name, process);
        }

        // Many concurrent heavy requests: all answered, none lost.
        for (name, process) in targets {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..32 {
                let url = process.grpc_url();
                set.spawn(async move {
                    call_series(
                        &url,
                        series(vec![m(RE, "__name__", ".+")], i64::MIN, i64::MAX),
                    )
                    .await
                });
            }
            let mut counts = Vec::new();
            while let Some(done) = set.join_next().await {
                let (code, count) = done.unwrap();
                assert_eq!(code, Code::Ok, "{name} under 32 concurrent requests");
                counts.push(count);
            }
            counts.dedup();
            assert_eq!(
                counts.len(),
                1,
                "{name}: answers of different sizes {counts:?}"
            );
            assert_up(name, process);
        }
    });
    let store_rss = peak_rss_kib(store.pid());
    let sidecar_rss = peak_rss_kib(sidecar.pid());
    eprintln!(
        "hostile Store API requests: {same} codes equal to Thanos', {} differ; peak RSS store {store_rss} KiB, sidecar {sidecar_rss} KiB",
        failures.len()
    );
    for f in &failures {
        eprintln!("  {f}");
    }
    assert!(
        failures.is_empty(),
        "{} codes differ from Thanos'",
        failures.len()
    );
    for (name, rss) in [("store", store_rss), ("sidecar", sidecar_rss)] {
        assert!(rss > 0 && rss < PEAK_RSS_KIB, "{name} peak RSS {rss} KiB");
    }
}
