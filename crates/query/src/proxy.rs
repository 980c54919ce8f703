//! Fan-out to Store API endpoints and merging of their answers.
//!
//! An endpoint is asked only if it is healthy, its time range overlaps the request and one
//! of its external label sets can satisfy the matchers. Calls run concurrently with a
//! per-endpoint timeout; each answer streams in sorted by labels and the streams go through
//! the one streaming k-way merge ([`strata_storepb::merge`]: series present at several
//! endpoints get their chunks joined, identical chunks dropped), so no endpoint's whole
//! answer is held. Samples and bytes are counted as frames arrive, against a budget. An
//! endpoint that fails is a warning under partial response, else an error.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use futures::future::join_all;
use strata_storepb::convert::{labels_from_proto_owned, matcher_to_proto};
use strata_storepb::grpc_metrics::MeteredChannel;
use strata_storepb::merge::{SeriesItem, SeriesMerge};
use strata_storepb::store_client::StoreClient;
use strata_storepb::{
    AggrChunk, LabelNamesRequest, LabelValuesRequest, PartialResponseStrategy, SeriesRequest,
    series_response,
};
use strata_types::ErrorClass;
use strata_types::{Labels, Matcher};

use crate::endpoints::{Endpoint, EndpointSet};

/// A fan-out failed: an endpoint (partial response off), or the budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProxyError {
    /// The class (HTTP status and gRPC code).
    pub class: ErrorClass,
    /// What happened.
    pub message: String,
}

impl ProxyError {
    pub(crate) fn endpoint(message: String) -> Self {
        ProxyError {
            class: ErrorClass::Internal,
            message,
        }
    }
}

/// How much a query's fan-outs may bring in, together (clones share the count); 0 means
/// unlimited.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    /// Samples, counted from chunk headers as frames arrive.
    pub samples: u64,
    /// Bytes of chunks and labels, as frames arrive.
    pub bytes: u64,
    counted: Arc<Counted>,
}

impl Budget {
    /// A budget of `samples` and `bytes` (0: unlimited).
    pub fn new(samples: u64, bytes: u64) -> Budget {
        Budget {
            samples,
            bytes,
            counted: Arc::default(),
        }
    }

    /// Samples and bytes counted so far.
    pub fn used(&self) -> (u64, u64) {
        (
            self.counted.samples.load(Ordering::Relaxed),
            self.counted.bytes.load(Ordering::Relaxed),
        )
    }
}

/// The message Prometheus gives when a query loads too much.
pub const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

/// How to fan out.
#[derive(Debug, Clone, Default)]
pub struct FanOut {
    /// Turn endpoint failures into warnings.
    pub partial_response: bool,
    /// Per-endpoint timeout (zero: none).
    pub timeout: Duration,
    /// `storeMatch[]`: when not empty, only endpoints that some selector matches are asked.
    /// A selector's `__address__` matchers test the endpoint's address, its other matchers
    /// its external label sets (as for series matchers).
    pub store_matchers: Arc<Vec<Vec<Matcher>>>,
}

impl FanOut {
    /// Whether `storeMatch[]` lets `endpoint` be asked.
    fn admits(&self, endpoint: &Endpoint) -> bool {
        if self.store_matchers.is_empty() {
            return true;
        }
        let sets = endpoint.info().map(|i| i.label_sets).unwrap_or_default();
        self.store_matchers.iter().any(|selector| {
            let (address, labels): (Vec<&Matcher>, Vec<&Matcher>) =
                selector.iter().partition(|m| m.name() == "__address__");
            address.iter().all(|m| m.matches(endpoint.address()))
                && label_sets_match(&sets, &labels.into_iter().cloned().collect::<Vec<_>>())
        })
    }
}

/// One series as an endpoint returned it.
pub type RawSeries = (Labels, Vec<AggrChunk>);

/// Series gathered from the endpoints.
#[derive(Debug, Default)]
pub struct SeriesSet {
    /// Sorted by labels, unique.
    pub series: Vec<(Labels, Vec<AggrChunk>)>,
    /// Warnings (failed endpoints under partial response, endpoint warnings).
    pub warnings: Vec<String>,
}

/// Whether an endpoint's external label sets can satisfy `matchers`: a set fails if it has
/// a matcher's label with a value the matcher rejects.
fn label_sets_match(sets: &[Labels], matchers: &[Matcher]) -> bool {
    if sets.is_empty() {
        return true;
    }
    sets.iter().any(|set| {
        matchers
            .iter()
            .all(|m| set.get(m.name()).is_none_or(|v| m.matches(v)))
    })
}

/// The endpoints worth asking for `[mint, maxt]` and `matchers`: healthy ones whose last
/// Info allows them, plus strict ones whatever their state (their failure is reported).
pub fn select_endpoints(
    endpoints: &EndpointSet,
    mint: i64,
    maxt: i64,
    matchers: &[Matcher],
    fan_out: &FanOut,
) -> Vec<Arc<Endpoint>> {
    endpoints
        .all()
        .into_iter()
        .filter(|e| e.is_healthy() || e.is_strict())
        .filter(|e| fan_out.admits(e))
        .filter(|e| match e.info() {
            Some(info) => {
                info.min_time <= maxt
                    && info.max_time >= mint
                    && label_sets_match(&info.label_sets, matchers)
            }
            None => e.is_strict(),
        })
        .collect()
}

async fn with_timeout<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    if timeout.is_zero() {
        return fut.await;
    }
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

/// Samples of a chunk as its header gives them (a downsampled chunk: its first aggregate's).
fn chunk_samples(c: &AggrChunk) -> u64 {
    let parts = c.parts();
    let first = parts.into_iter().flatten().next();
    match first.map(|chunk| &chunk.data[..]) {
        Some([a, b, ..]) => u64::from(u16::from_be_bytes([*a, *b])),
        _ => 0,
    }
}

fn chunk_bytes(c: &AggrChunk) -> u64 {
    c.parts()
        .into_iter()
        .flatten()
        .map(|chunk| chunk.data.len() as u64)
        .sum()
}

/// What one fan-out has counted so far, shared by its endpoint streams.
#[derive(Debug, Default)]
struct Counted {
    samples: AtomicU64,
    bytes: AtomicU64,
    over: AtomicBool,
}

impl Counted {
    /// Counts a batch; false once over the budget's limits.
    fn add(&self, batch: &[SeriesItem], samples_limit: u64, bytes_limit: u64) -> bool {
        let (mut samples, mut bytes) = (0u64, 0u64);
        for (labels, chunks) in batch {
            bytes += labels
                .iter()
                .map(|l| (l.name.len() + l.value.len()) as u64)
                .sum::<u64>();
            for c in chunks {
                samples += chunk_samples(c);
                bytes += chunk_bytes(c);
            }
        }
        let s = self.samples.fetch_add(samples, Ordering::Relaxed) + samples;
        let b = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let over = (samples_limit > 0 && s > samples_limit) || (bytes_limit > 0 && b > bytes_limit);
        if over {
            self.over.store(true, Ordering::Relaxed);
        }
        !over
    }
}

type EndpointStream = std::pin::Pin<Box<dyn Stream<Item = Result<Vec<SeriesItem>, String>> + Send>>;

/// One endpoint's Series answer as a stream of batches: warnings go to `warnings`; an error
/// under partial response becomes a warning and the end of the stream; the per-endpoint
/// timeout bounds the whole answer; every batch is counted against the budget.
fn endpoint_stream(
    endpoint: Arc<Endpoint>,
    request: SeriesRequest,
    fan_out: FanOut,
    warnings: Arc<Mutex<Vec<String>>>,
    budget: Budget,
) -> EndpointStream {
    let address = endpoint.address().to_owned();
    let deadline =
        (!fan_out.timeout.is_zero()).then(|| tokio::time::Instant::now() + fan_out.timeout);
    let state = (
        endpoint,
        Some(request),
        None::<tonic::Streaming<strata_storepb::SeriesResponse>>,
        false,
    );
    let stream =
        futures::stream::unfold(state, move |(endpoint, request, mut stream, finished)| {
            let warnings = Arc::clone(&warnings);
            let budget = budget.clone();
            let address = address.clone();
            let partial = fan_out.partial_response;
            async move {
                if finished {
                    return None;
                }
                let fail = |message: String| -> Option<(Result<Vec<SeriesItem>, String>, _)> {
                    let message = format!("endpoint {address}: {message}");
                    if partial {
                        if let Ok(mut w) = warnings.lock() {
                            w.push(message);
                        }
                        Some((Ok(Vec::new()), (Arc::clone(&endpoint), None, None, true)))
                    } else {
                        Some((Err(message), (Arc::clone(&endpoint), None, None, true)))
                    }
                };
                if stream.is_none() {
                    let request = request?;
                    let mut client = endpoint.store_client();
                    match until(deadline, client.series(request)).await {
                        Ok(Ok(resp)) => stream = Some(resp.into_inner()),
                        Ok(Err(status)) => return fail(status.message().to_owned()),
                        Err(()) => return fail(format!("timed out after {:?}", fan_out.timeout)),
                    }
                }
                let s = stream.as_mut()?;
                loop {
                    let frame = match until(deadline, s.message()).await {
                        Ok(Ok(Some(frame))) => frame,
                        Ok(Ok(None)) => return None,
                        Ok(Err(status)) => return fail(status.message().to_owned()),
                        Err(()) => return fail(format!("timed out after {:?}", fan_out.timeout)),
                    };
                    let batch: Vec<SeriesItem> = match frame.result {
                        Some(series_response::Result::Series(s)) => {
                            vec![(labels_from_proto_owned(s.labels), s.chunks)]
                        }
                        Some(series_response::Result::Batch(b)) => b
                            .series
                            .into_iter()
                            .map(|s| (labels_from_proto_owned(s.labels), s.chunks))
                            .collect(),
                        Some(series_response::Result::Warning(w)) => {
                            if let Ok(mut list) = warnings.lock() {
                                list.push(w);
                            }
                            continue;
                        }
                        Some(series_response::Result::Hints(_)) | None => continue,
                    };
                    if !budget.counted.add(&batch, budget.samples, budget.bytes) {
                        return Some((
                            Err(TOO_MANY_SAMPLES.to_owned()),
                            (Arc::clone(&endpoint), None, None, true),
                        ));
                    }
                    return Some((Ok(batch), (endpoint, None, stream, false)));
                }
            }
        });
    Box::pin(stream)
}

/// `fut`, unless `deadline` passes first.
async fn until<F: Future>(deadline: Option<tokio::time::Instant>, fut: F) -> Result<F::Output, ()> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, fut).await.map_err(|_| ()),
        None => Ok(fut.await),
    }
}

/// A fan-out's merged series, streaming.
pub struct SeriesFanOut {
    merge: SeriesMerge<EndpointStream>,
    warnings: Arc<Mutex<Vec<String>>>,
    budget: Budget,
}

impl std::fmt::Debug for SeriesFanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesFanOut").finish_non_exhaustive()
    }
}

impl SeriesFanOut {
    /// The next merged series, in label order.
    pub async fn next(&mut self) -> Option<Result<SeriesItem, ProxyError>> {
        let item = self.merge.next().await?;
        Some(item.map_err(|e| {
            if self.budget.counted.over.load(Ordering::Relaxed) {
                ProxyError {
                    class: ErrorClass::Execution,
                    message: TOO_MANY_SAMPLES.to_owned(),
                }
            } else {
                ProxyError::endpoint(e.to_string())
            }
        }))
    }

    /// The warnings so far (failed endpoints under partial response, endpoint warnings).
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
}

/// Starts Series on every selected endpoint; their answers come merged, as they stream.
pub fn series_stream(
    endpoints: &EndpointSet,
    matchers: &[Matcher],
    mut request: SeriesRequest,
    fan_out: &FanOut,
    budget: Budget,
) -> SeriesFanOut {
    request.matchers = matchers.iter().map(matcher_to_proto).collect();
    request.partial_response_strategy = strategy(fan_out);
    if request.response_batch_size == 0 {
        request.response_batch_size = 64;
    }
    let selected = select_endpoints(
        endpoints,
        request.min_time,
        request.max_time,
        matchers,
        fan_out,
    );
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let inputs = selected
        .into_iter()
        .map(|e| {
            let name = format!("endpoint {}", e.address());
            let stream = endpoint_stream(
                e,
                request.clone(),
                fan_out.clone(),
                Arc::clone(&warnings),
                budget.clone(),
            );
            (name, stream)
        })
        .collect();
    SeriesFanOut {
        merge: SeriesMerge::new(inputs),
        warnings,
        budget,
    }
}

/// Calls Series on every selected endpoint and gathers the merged answer (within `budget`).
pub async fn series(
    endpoints: &EndpointSet,
    matchers: &[Matcher],
    request: SeriesRequest,
    fan_out: &FanOut,
    budget: Budget,
) -> Result<SeriesSet, ProxyError> {
    let mut stream = series_stream(endpoints, matchers, request, fan_out, budget);
    let mut out = SeriesSet::default();
    while let Some(item) = stream.next().await {
        out.series.push(item?);
    }
    out.warnings = stream.take_warnings();
    Ok(out)
}

/// Label names from every selected endpoint, sorted and unique.
pub async fn label_names(
    endpoints: &EndpointSet,
    start: i64,
    end: i64,
    matchers: &[Matcher],
    fan_out: &FanOut,
) -> Result<Gathered, ProxyError> {
    let request = LabelNamesRequest {
        start,
        end,
        matchers: matchers.iter().map(matcher_to_proto).collect(),
        partial_response_strategy: strategy(fan_out),
        ..Default::default()
    };
    fan_out_strings(endpoints, start, end, matchers, fan_out, |mut client| {
        let request = request.clone();
        async move {
            let r = client.label_names(request).await?.into_inner();
            Ok((r.names, r.warnings))
        }
    })
    .await
}

/// Values of label `name` from every selected endpoint, sorted and unique.
pub async fn label_values(
    endpoints: &EndpointSet,
    name: &str,
    start: i64,
    end: i64,
    matchers: &[Matcher],
    fan_out: &FanOut,
) -> Result<Gathered, ProxyError> {
    let request = LabelValuesRequest {
        label: name.to_owned(),
        start,
        end,
        matchers: matchers.iter().map(matcher_to_proto).collect(),
        partial_response_strategy: strategy(fan_out),
        ..Default::default()
    };
    fan_out_strings(endpoints, start, end, matchers, fan_out, |mut client| {
        let request = request.clone();
        async move {
            let r = client.label_values(request).await?.into_inner();
            Ok((r.values, r.warnings))
        }
    })
    .await
}

/// Runs `call` (one unary call returning strings and warnings) on every selected endpoint
/// concurrently and gathers the answers.
async fn fan_out_strings<F, Fut>(
    endpoints: &EndpointSet,
    start: i64,
    end: i64,
    matchers: &[Matcher],
    fan_out: &FanOut,
    call: F,
) -> Result<Gathered, ProxyError>
where
    F: Fn(StoreClient<MeteredChannel>) -> Fut,
    Fut: Future<Output = Result<Gathered, tonic::Status>>,
{
    let selected = select_endpoints(endpoints, start, end, matchers, fan_out);
    let (values, warnings) = fan_out_calls(&selected, fan_out, |e: Arc<Endpoint>| {
        call(e.store_client())
    })
    .await?;
    let values: BTreeSet<String> = values.into_iter().collect();
    Ok((values.into_iter().collect(), warnings))
}

/// Runs `call` on each of `selected` concurrently, each within the fan-out timeout, and
/// gathers (answers, warnings): an endpoint that fails adds a warning, or is the error
/// without partial response. The one fan-out of every unary or short-stream API.
pub(crate) async fn fan_out_calls<T, F, Fut>(
    selected: &[Arc<Endpoint>],
    fan_out: &FanOut,
    call: F,
) -> Result<(Vec<T>, Vec<String>), ProxyError>
where
    F: Fn(Arc<Endpoint>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Vec<String>), tonic::Status>>,
{
    let calls = selected.iter().map(|e| {
        let answer = call(Arc::clone(e));
        async move {
            let result = with_timeout(fan_out.timeout, async {
                answer.await.map_err(|s| s.message().to_owned())
            })
            .await;
            (e.address().to_owned(), result)
        }
    });
    let mut items = Vec::new();
    let mut warnings = Vec::new();
    for (address, result) in join_all(calls).await {
        match result {
            Ok((answers, w)) => {
                items.extend(answers);
                warnings.extend(w);
            }
            Err(e) => {
                let message = format!("endpoint {address}: {e}");
                if !fan_out.partial_response {
                    return Err(ProxyError::endpoint(message));
                }
                warnings.push(message);
            }
        }
    }
    Ok((items, warnings))
}

fn strategy(fan_out: &FanOut) -> i32 {
    if fan_out.partial_response {
        PartialResponseStrategy::Warn as i32
    } else {
        PartialResponseStrategy::Abort as i32
    }
}

type Gathered = (Vec<String>, Vec<String>);
