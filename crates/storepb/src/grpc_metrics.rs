//! gRPC metrics as go-grpc-middleware's Prometheus provider names them (what Thanos' servers
//! and Store API clients export and its mixin reads): `grpc_{server,client}_started_total`,
//! `…_handled_total{grpc_code}`, `…_msg_received_total`, `…_msg_sent_total` and
//! `…_handling_seconds`, each with `grpc_service`, `grpc_method` and `grpc_type`, and Thanos'
//! handling-time buckets (server and client ones differ).
//!
//! One tower layer for both sides: in front of a server's services, or around a client's
//! channel. A call is started when its request passes and handled when the answer's
//! trailers (or a trailers-only answer) carry `grpc-status`; an answer dropped before its
//! status (a client that went away, or that stopped reading) is handled as `Canceled`.
//! Answer messages (sent by a server, received by a client) are counted from their 5-byte
//! gRPC prefixes; every method of the Store and Info APIs takes one request message.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Buf;
use http::{Request, Response};
use http_body::{Body, Frame};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    grpc_method: String,
    grpc_service: String,
    grpc_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_code: &'static str,
    grpc_method: String,
    grpc_service: String,
    grpc_type: &'static str,
}

const SERVER_BUCKETS: [f64; 14] = [
    0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0,
];

const CLIENT_BUCKETS: [f64; 17] = [
    0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0, 240.0, 360.0,
    720.0,
];

fn server_histogram() -> Histogram {
    Histogram::new(SERVER_BUCKETS)
}

fn client_histogram() -> Histogram {
    Histogram::new(CLIENT_BUCKETS)
}

/// Which end of the calls the metrics count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// The gRPC metrics of one server, or of one component's clients.
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    side: Side,
    started: Family<CallLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    received: Family<CallLabels, Counter>,
    sent: Family<CallLabels, Counter>,
    handling: Family<CallLabels, Histogram, fn() -> Histogram>,
}

impl GrpcMetrics {
    fn unregistered(side: Side) -> GrpcMetrics {
        let histogram = match side {
            Side::Server => server_histogram as fn() -> Histogram,
            Side::Client => client_histogram as fn() -> Histogram,
        };
        GrpcMetrics {
            side,
            started: Family::default(),
            handled: Family::default(),
            received: Family::default(),
            sent: Family::default(),
            handling: Family::new_with_constructor(histogram),
        }
    }

    fn register(self, registry: &mut Registry, who: &str) -> Arc<GrpcMetrics> {
        let prefix = match self.side {
            Side::Server => "grpc_server",
            Side::Client => "grpc_client",
        };
        registry.register(
            format!("{prefix}_started"),
            format!("Total number of RPCs started on the {who}."),
            self.started.clone(),
        );
        registry.register(
            format!("{prefix}_handled"),
            format!(
                "Total number of RPCs completed on the {who}, regardless of success or failure."
            ),
            self.handled.clone(),
        );
        registry.register(
            format!("{prefix}_msg_received"),
            format!("Total number of RPC stream messages received on the {who}."),
            self.received.clone(),
        );
        registry.register(
            format!("{prefix}_msg_sent"),
            format!("Total number of gRPC stream messages sent by the {who}."),
            self.sent.clone(),
        );
        registry.register(
            format!("{prefix}_handling_seconds"),
            format!("Histogram of response latency (seconds) of gRPC that had been application-level handled by the {who}."),
            self.handling.clone(),
        );
        Arc::new(self)
    }

    /// A server's metrics (`grpc_server_*`), registered in `registry`.
    pub fn server(registry: &mut Registry) -> Arc<GrpcMetrics> {
        GrpcMetrics::unregistered(Side::Server).register(registry, "server")
    }

    /// A component's client metrics (`grpc_client_*`), registered in `registry`.
    pub fn client(registry: &mut Registry) -> Arc<GrpcMetrics> {
        GrpcMetrics::unregistered(Side::Client).register(registry, "client")
    }

    /// Client metrics registered nowhere (for clients built without a registry).
    pub fn unregistered_client() -> Arc<GrpcMetrics> {
        Arc::new(GrpcMetrics::unregistered(Side::Client))
    }

    /// The counter of answer messages: sent by a server, received by a client.
    fn answers(&self) -> &Family<CallLabels, Counter> {
        match self.side {
            Side::Server => &self.sent,
            Side::Client => &self.received,
        }
    }

    /// The counter of request messages: received by a server, sent by a client.
    fn requests(&self) -> &Family<CallLabels, Counter> {
        match self.side {
            Side::Server => &self.received,
            Side::Client => &self.sent,
        }
    }
}

/// gRPC's name for a status code number.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// `/pkg.Service/Method` → (service, method, type). The Store API's `Series` is the one
/// server stream; every other method of ours is unary.
fn call_labels(path: &str) -> CallLabels {
    let trimmed = path.trim_start_matches('/');
    let (service, method) = trimmed.split_once('/').unwrap_or(("unknown", trimmed));
    let grpc_type = if method == "Series" {
        "server_stream"
    } else {
        "unary"
    };
    CallLabels {
        grpc_method: method.to_owned(),
        grpc_service: service.to_owned(),
        grpc_type,
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<&'static str> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(code_name)
}

/// What a call still has to record when it ends.
struct Call {
    metrics: Arc<GrpcMetrics>,
    labels: CallLabels,
    started: Instant,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: &'static str) {
        if self.done {
            return;
        }
        self.done = true;
        let l = &self.labels;
        self.metrics
            .handled
            .get_or_create(&HandledLabels {
                grpc_code: code,
                grpc_method: l.grpc_method.clone(),
                grpc_service: l.grpc_service.clone(),
                grpc_type: l.grpc_type,
            })
            .inc();
        self.metrics
            .handling
            .get_or_create(l)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // The answer was dropped before its status: the client went away.
        self.finish("Canceled");
    }
}

/// An answer body that records the call when its status passes and counts messages.
pub struct MeteredBody<B> {
    inner: B,
    call: Call,
    /// Bytes still to skip of the current message (0: at a message prefix).
    in_message: u64,
    /// The bytes of a message prefix seen so far (a prefix can span frames).
    prefix: Vec<u8>,
}

impl<B> std::fmt::Debug for MeteredBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredBody")
            .field("method", &self.call.labels.grpc_method)
            .finish()
    }
}

impl<B> MeteredBody<B> {
    fn count_messages(&mut self, data: &[u8]) {
        let mut bytes = data.iter();
        loop {
            if self.in_message > 0 {
                let skip = usize::try_from(self.in_message)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                if skip == 0 {
                    return;
                }
                // `nth(skip - 1)` consumes `skip` bytes.
                bytes.nth(skip - 1);
                self.in_message -= skip as u64;
                continue;
            }
            let Some(&b) = bytes.next() else {
                return;
            };
            self.prefix.push(b);
            if let [_, a, b, c, d] = self.prefix[..] {
                self.prefix.clear();
                self.in_message = u64::from(u32::from_be_bytes([a, b, c, d]));
                self.call
                    .metrics
                    .answers()
                    .get_or_create(&self.call.labels)
                    .inc();
            }
        }
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let bytes = data.chunk();
                    // A data frame is one contiguous buffer in tonic's encoder.
                    if bytes.len() == data.remaining() {
                        this.count_messages(bytes);
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    this.call.finish(status_of(trailers).unwrap_or("OK"));
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish("Unknown"),
            Poll::Ready(None) => this.call.finish("OK"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The layer.
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer(pub Arc<GrpcMetrics>);

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: Arc::clone(&self.0),
        }
    }
}

/// The service the layer makes.
#[derive(Clone, Debug)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

impl<S> GrpcMetricsService<S> {
    /// `inner` (a client channel) counted in `metrics`.
    pub fn new(inner: S, metrics: Arc<GrpcMetrics>) -> GrpcMetricsService<S> {
        GrpcMetricsService { inner, metrics }
    }
}

/// A Store API client channel that counts its calls (`grpc_client_*`).
/// Requests are compressed as `--grpc-compression` says.
pub type MeteredChannel =
    GrpcMetricsService<crate::snappy::SnappyClient<tonic::transport::Channel>>;

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for GrpcMetricsService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Traces: a server call continues the caller's trace in its own span (which the
        // handler's spawned streaming task keeps, see `serve::spawn_producer`); a client call
        // carries the current span's context to the server.
        let span = match self.metrics.side {
            Side::Server => {
                let span = tracing::info_span!(
                    "grpc.server",
                    otel.name = %req.uri().path(),
                    otel.kind = "server",
                    rpc.system = "grpc",
                );
                strata_runtime::trace::continue_from(&span, req.headers());
                span
            }
            Side::Client => {
                strata_runtime::trace::inject_current(req.headers_mut());
                tracing::Span::none()
            }
        };
        let _entered = span.enter();
        let labels = call_labels(req.uri().path());
        self.metrics.started.get_or_create(&labels).inc();
        // Every method of ours takes one request message.
        self.metrics.requests().get_or_create(&labels).inc();
        let metrics = Arc::clone(&self.metrics);
        let started = Instant::now();
        let future = self.inner.call(req);
        drop(_entered);
        Box::pin(tracing::Instrument::instrument(
            async move {
                let response = future.await?;
                let mut call = Call {
                    metrics,
                    labels,
                    started,
                    done: false,
                };
                // A trailers-only answer (an error before any message) has its status here.
                if let Some(code) = status_of(response.headers()) {
                    call.finish(code);
                }
                Ok(response.map(|inner| MeteredBody {
                    inner,
                    call,
                    in_message: 0,
                    prefix: Vec::with_capacity(5),
                }))
            },
            span,
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn labels_and_codes() {
        let l = call_labels("/thanos.Store/Series");
        assert_eq!(
            (l.grpc_service.as_str(), l.grpc_method.as_str(), l.grpc_type),
            ("thanos.Store", "Series", "server_stream")
        );
        assert_eq!(call_labels("/thanos.info.Info/Info").grpc_type, "unary");
        assert_eq!(code_name(8), "ResourceExhausted");
        assert_eq!(code_name(99), "Unknown");
    }

    #[test]
    fn messages_are_counted_across_frames() {
        let mut registry = Registry::default();
        let metrics = GrpcMetrics::server(&mut registry);
        let labels = call_labels("/thanos.Store/Series");
        let mut body = MeteredBody {
            inner: http_body_util::Empty::<bytes::Bytes>::new(),
            call: Call {
                metrics: Arc::clone(&metrics),
                labels: labels.clone(),
                started: Instant::now(),
                done: false,
            },
            in_message: 0,
            prefix: Vec::new(),
        };
        // Two messages of 3 and 2 bytes, the second's prefix split over two frames.
        body.count_messages(&[0, 0, 0, 0, 3, 1, 2, 3, 0, 0]);
        body.count_messages(&[0, 0, 2, 9, 9]);
        assert_eq!(metrics.sent.get_or_create(&labels).get(), 2);
        drop(body);
        let canceled = HandledLabels {
            grpc_code: "Canceled",
            grpc_method: "Series".into(),
            grpc_service: "thanos.Store".into(),
            grpc_type: "server_stream",
        };
        assert_eq!(metrics.handled.get_or_create(&canceled).get(), 1);
    }
}
