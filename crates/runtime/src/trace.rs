//! Traces across processes, as Thanos' `--tracing.config` type `OTLP` sends them: spans of
//! `tracing` exported to an OpenTelemetry collector over OTLP/gRPC, and W3C trace context
//! (`traceparent`) carried on every HTTP and gRPC hop (query frontend → querier → Store API
//! servers), so one query is one trace.
//!
//! The exporter hands finished batches to a bounded queue; one owned thread (with its own
//! single-threaded runtime, so that exporting never needs the component's runtime) sends them
//! with the generated OTLP client. A full queue drops a batch (counted in the log), never
//! blocks a request, and a collector that is down costs one failed call per batch.

use std::str::FromStr;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Batches waiting for the export thread; more are dropped.
const QUEUE_BATCHES: usize = 64;

/// What to export to (Thanos' OTLP tracing config, the parts Strata uses).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// `host:port` of the collector's OTLP/gRPC receiver.
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Per-export timeout.
    pub timeout: Duration,
    /// Which traces are kept.
    pub sampler: SamplerKind,
    /// Extra request metadata (e.g. an API key).
    pub headers: Vec<(String, String)>,
}

/// Thanos' `sampler_type` (with `sampler_param` for the ratio).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerKind {
    /// Every trace.
    Always,
    /// None.
    Never,
    /// A share of traces by trace ID.
    Ratio(f64),
    /// As the caller decided (its `traceparent`), else every trace.
    ParentBasedAlways,
    /// As the caller decided, else a share by trace ID.
    ParentBasedRatio(f64),
}

impl SamplerKind {
    /// From Thanos' names: `alwayssample`, `neversample`, `traceidratiobased`,
    /// `parentbasedalwayssample` (the default, also for ""), `parentbasedtraceidratiobased`.
    pub fn parse(name: &str, param: f64) -> Result<SamplerKind, String> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "" | "parentbasedalwayssample" => SamplerKind::ParentBasedAlways,
            "alwayssample" => SamplerKind::Always,
            "neversample" => SamplerKind::Never,
            "traceidratiobased" => SamplerKind::Ratio(param),
            "parentbasedtraceidratiobased" => SamplerKind::ParentBasedRatio(param),
            other => return Err(format!("unknown sampler_type {other:?}")),
        })
    }

    fn sampler(self) -> Sampler {
        match self {
            SamplerKind::Always => Sampler::AlwaysOn,
            SamplerKind::Never => Sampler::AlwaysOff,
            SamplerKind::Ratio(r) => Sampler::TraceIdRatioBased(r),
            SamplerKind::ParentBasedAlways => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            SamplerKind::ParentBasedRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

/// The exporter the batch processor calls: queues the batch for the export thread.
#[derive(Debug)]
struct QueueExporter {
    tx: Mutex<Option<SyncSender<Vec<SpanData>>>>,
}

impl SpanExporter for QueueExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let result = match self.tx.lock().ok().as_ref().and_then(|g| g.as_ref()) {
            None => Err(OTelSdkError::AlreadyShutdown),
            Some(tx) => match tx.try_send(batch) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(batch)) => {
                    tracing::debug!(
                        spans = batch.len(),
                        "trace export queue full; spans dropped"
                    );
                    Ok(())
                }
                Err(TrySendError::Disconnected(_)) => Err(OTelSdkError::AlreadyShutdown),
            },
        };
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // Closing the queue ends the export thread once it has sent what is queued.
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        Ok(())
    }
}

/// Sends queued batches until the queue closes.
fn export_loop(rx: Receiver<Vec<SpanData>>, config: OtlpConfig, resource: Resource) {
    // The exporter's own gRPC client must not make spans of its own (each export would then
    // cause the next); its warnings still go to the process' log.
    let log = tracing::dispatcher::get_default(Clone::clone);
    let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
    let warn = |message: &str, endpoint: &str, error: &dyn std::fmt::Display| {
        tracing::dispatcher::with_default(&log, || {
            tracing::warn!(endpoint = %endpoint, error = %error, "{message}");
        });
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn(
                "trace export thread has no runtime; traces are not sent",
                &config.endpoint,
                &e,
            );
            return;
        }
    };
    let resource = ResourceAttributesWithSchema::from(&resource);
    let channel = {
        let _entered = runtime.enter();
        tonic::transport::Endpoint::from_shared(format!("http://{}", config.endpoint))
            .map(|e| e.timeout(config.timeout).connect_lazy())
    };
    let channel = match channel {
        Ok(c) => c,
        Err(e) => {
            warn(
                "bad OTLP endpoint; traces are not sent",
                &config.endpoint,
                &e,
            );
            return;
        }
    };
    let mut client = TraceServiceClient::new(channel);
    let mut warned = false;
    while let Ok(batch) = rx.recv() {
        let mut request = tonic::Request::new(ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &resource),
        });
        for (name, value) in &config.headers {
            if let (Ok(name), Ok(value)) = (
                tonic::metadata::MetadataKey::from_str(name),
                tonic::metadata::MetadataValue::try_from(value.as_str()),
            ) {
                request.metadata_mut().insert(name, value);
            }
        }
        match runtime.block_on(client.export(request)) {
            Ok(_) => warned = false,
            Err(status) if !warned => {
                // Once per outage, not once per batch.
                warned = true;
                warn("sending traces failed", &config.endpoint, &status);
            }
            Err(_) => {}
        }
    }
}

/// A running exporter: the `tracing` layer that makes OpenTelemetry spans, and the provider
/// to shut down (flushing what is queued) when the process ends.
pub struct Exporter {
    provider: SdkTracerProvider,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// Starts the export thread and the batch processor for `config`.
    pub fn start(config: OtlpConfig) -> std::io::Result<Exporter> {
        let resource = Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .build();
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_BATCHES);
        let sampler = config.sampler.sampler();
        let thread_resource = resource.clone();
        let thread = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || export_loop(rx, config, thread_resource))?;
        let processor = BatchSpanProcessor::builder(QueueExporter {
            tx: Mutex::new(Some(tx)),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_secs(1))
                .with_max_queue_size(4096)
                .build(),
        )
        .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        Ok(Exporter {
            provider,
            thread: Some(thread),
        })
    }

    /// The `tracing` layer recording spans into this exporter.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + Send + Sync + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("strata"))
    }

    /// Flushes queued spans and stops the export thread (bounded: the batch processor and
    /// each export call have timeouts).
    pub fn shutdown(mut self) {
        let _ = self.provider.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_str(key),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the trace context in `headers` (`traceparent`, `tracestate`),
/// when there is one.
pub fn continue_from(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let _ = span.set_parent(cx);
    }
}

/// Writes the current span's trace context into `headers` (nothing when no trace is being
/// recorded).
pub fn inject_current(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thanos_sampler_names() {
        assert_eq!(
            SamplerKind::parse("", 0.0),
            Ok(SamplerKind::ParentBasedAlways)
        );
        assert_eq!(
            SamplerKind::parse("traceidratiobased", 0.25),
            Ok(SamplerKind::Ratio(0.25))
        );
        assert!(SamplerKind::parse("sometimes", 0.0).is_err());
    }

    #[test]
    fn no_trace_context_leaves_headers_alone() {
        let mut headers = http::HeaderMap::new();
        inject_current(&mut headers);
        assert!(headers.is_empty());
        continue_from(&tracing::Span::none(), &headers);
    }
}
