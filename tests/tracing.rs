//! `--tracing.config` with Thanos' OTLP type: one query through the query frontend, the
//! querier and the store gateway is one trace, continued from the caller's `traceparent`,
//! with each hop's spans children of the hop before; an in-process OTLP/gRPC collector in
//! the test receives them. An exporter type Strata does not implement leaves tracing off
//! with a warning; the component still starts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use strata_e2e::data::DataSet;
use strata_e2e::store_api::{StrataProcess, upload_block};
use strata_e2e::{block_dirs, promtool_create_blocks};
use strata_objstore::Bucket;

const START_S: i64 = 1_699_833_600;

/// One received span: service, name, ids (hex).
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_id: String,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Received>>>);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    got.push(Received {
                        service: service.clone(),
                        name: span.name,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_id: hex(&span.parent_span_id),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[test]
fn a_query_is_one_trace_across_frontend_querier_and_store() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let collector = Collector::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let collector_addr = listener.local_addr().unwrap();
    let server = TraceServiceServer::new(collector.clone());
    runtime.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let tracing_config = format!(
        "type: OTLP\nconfig:\n  client_type: grpc\n  insecure: true\n  endpoint: {collector_addr}\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir(&bucket_dir).unwrap();
    let bucket_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket_dir.display()
    );
    let data = DataSet::generate(43, START_S, 2);
    let om = dir.path().join("data.om");
    std::fs::write(&om, data.to_openmetrics()).unwrap();
    promtool_create_blocks(&om, &dir.path().join("blocks"));
    let bucket = Bucket::from_yaml(&bucket_yaml, None).unwrap();
    for block in block_dirs(&dir.path().join("blocks")) {
        runtime.block_on(upload_block(&bucket, &block, &[("cluster", "c1")]));
    }

    let store = StrataProcess::start_logged(
        &[
            "store",
            "--objstore.config",
            &bucket_yaml,
            "--data-dir",
            &dir.path().join("store").display().to_string(),
            "--tracing.config",
            &tracing_config,
        ],
        &dir.path().join("store.log"),
    );
    let query = StrataProcess::start_logged(
        &[
            "query",
            "--endpoint",
            &store.grpc,
            "--tracing.config",
            &tracing_config,
        ],
        &dir.path().join("query.log"),
    );
    let frontend = StrataProcess::start_http_only_logged(
        &[
            "query-frontend",
            "--query-frontend.downstream-url",
            &format!("http://{}", query.http),
            "--tracing.config",
            &tracing_config,
        ],
        &dir.path().join("frontend.log"),
    );

    // Grafana's trace: the frontend continues it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let body = ureq::get(&format!("http://{}/api/v1/query_range", frontend.http))
        .header("traceparent", &format!("00-{trace_id}-{caller_span}-01"))
        .query("query", "sum by (cluster) (rate({__name__=~\".+\"}[5m]))")
        .query("start", START_S.to_string())
        .query("end", (START_S + 7200).to_string())
        .query("step", "60")
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(body.contains("\"c1\""), "{body}");

    // Spans arrive within the batch delay (1s) of each process.
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<Received> = collector
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
        if ["strata-query-frontend", "strata-query", "strata-store"]
            .iter()
            .all(|s| services.contains(s))
        {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans of the trace so far: {spans:#?}\nall: {:#?}\nquerier log:\n{}\nstore log:\n{}\nfrontend log:\n{}",
            collector.0.lock().unwrap(),
            query.log(),
            store.log(),
            frontend.log()
        );
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(300));
    };
    let by_id: BTreeMap<&str, &Received> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let service_of_parent =
        |s: &Received| by_id.get(s.parent_id.as_str()).map(|p| p.service.clone());
    // The frontend's request span continues the caller's.
    let frontend_root = spans
        .iter()
        .find(|s| s.service == "strata-query-frontend" && s.parent_id == caller_span)
        .unwrap_or_else(|| panic!("no frontend span under the caller's: {spans:#?}"));
    assert!(frontend_root.name.starts_with("HTTP "), "{frontend_root:?}");
    // Each querier request span is a child of a frontend span (the split sub-queries).
    let query_http: Vec<&Received> = spans
        .iter()
        .filter(|s| s.service == "strata-query" && s.name.starts_with("HTTP "))
        .collect();
    assert!(!query_http.is_empty(), "{spans:#?}");
    for s in &query_http {
        assert_eq!(
            service_of_parent(s).as_deref(),
            Some("strata-query-frontend"),
            "{s:?}"
        );
    }
    // The store gateway's Series calls are children of querier spans.
    let store_series: Vec<&Received> = spans
        .iter()
        .filter(|s| s.service == "strata-store" && s.name == "/thanos.Store/Series")
        .collect();
    assert!(!store_series.is_empty(), "{spans:#?}");
    for s in &store_series {
        assert_eq!(
            service_of_parent(s).as_deref(),
            Some("strata-query"),
            "{s:?}"
        );
    }
    eprintln!(
        "one trace: {} spans ({} querier requests, {} store Series calls)",
        spans.len(),
        query_http.len(),
        store_series.len()
    );

    // An exporter type Strata does not implement: a warning, and the component runs.
    let log = dir.path().join("jaeger.log");
    let other = StrataProcess::start_logged(
        &[
            "store",
            "--objstore.config",
            &bucket_yaml,
            "--data-dir",
            &dir.path().join("store2").display().to_string(),
            "--tracing.config",
            "type: JAEGER\nconfig:\n  service_name: x\n",
        ],
        &log,
    );
    let text = other.log();
    assert!(
        text.contains("tracing is off") && text.contains("JAEGER"),
        "{text}"
    );
}
