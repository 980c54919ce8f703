//! Fan-out to Store API endpoints and merging of their answers.
//!
//! An endpoint is asked only if it is healthy, its time range overlaps the request and one
//! of its external label sets can satisfy the matchers. Calls run concurrently with a
//! per-endpoint timeout; each answer arrives sorted by labels and the answers are k-way
//! merged (series present at several endpoints get their chunks joined, identical chunks
//! dropped). An endpoint that fails is a warning under partial response, else an error.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use strata_storepb::convert::{labels_from_proto, matcher_to_proto};
use strata_storepb::store_client::StoreClient;
use strata_storepb::{
    AggrChunk, LabelNamesRequest, LabelValuesRequest, PartialResponseStrategy, SeriesRequest,
    series_response,
};
use strata_types::{Labels, Matcher};
use tonic::transport::Channel;

use crate::endpoints::{Endpoint, EndpointSet};

/// A fan-out failed (partial response off).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProxyError(pub String);

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

async fn endpoint_series(
    endpoint: &Endpoint,
    request: SeriesRequest,
) -> Result<(Vec<(Labels, Vec<AggrChunk>)>, Vec<String>), String> {
    let mut client = endpoint.store_client();
    let mut stream = client
        .series(request)
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    let mut series: Vec<(Labels, Vec<AggrChunk>)> = Vec::new();
    let mut warnings = Vec::new();
    while let Some(frame) = stream.message().await.map_err(|s| s.message().to_owned())? {
        match frame.result {
            Some(series_response::Result::Series(s)) => {
                series.push((labels_from_proto(&s.labels), s.chunks));
            }
            Some(series_response::Result::Batch(b)) => {
                series.extend(
                    b.series
                        .into_iter()
                        .map(|s| (labels_from_proto(&s.labels), s.chunks)),
                );
            }
            Some(series_response::Result::Warning(w)) => warnings.push(w),
            Some(series_response::Result::Hints(_)) | None => {}
        }
    }
    if !series.is_sorted_by(|a, b| a.0 <= b.0) {
        series.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok((series, warnings))
}

/// Calls Series on every selected endpoint and merges the answers.
pub async fn series(
    endpoints: &EndpointSet,
    matchers: &[Matcher],
    mut request: SeriesRequest,
    fan_out: &FanOut,
) -> Result<SeriesSet, ProxyError> {
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
    let calls = selected.iter().map(|e| {
        let request = request.clone();
        async move {
            let result = with_timeout(fan_out.timeout, endpoint_series(e, request)).await;
            (e.address().to_owned(), result)
        }
    });
    let mut out = SeriesSet::default();
    let mut answers = Vec::new();
    for (address, result) in join_all(calls).await {
        match result {
            Ok((series, warnings)) => {
                out.warnings.extend(warnings);
                answers.push(series);
            }
            Err(e) => {
                let message = format!("endpoint {address}: {e}");
                if !fan_out.partial_response {
                    return Err(ProxyError(message));
                }
                out.warnings.push(message);
            }
        }
    }
    out.series = merge(answers);
    Ok(out)
}

/// K-way merge of sorted answers; equal label sets are joined, identical chunks dropped.
pub fn merge(answers: Vec<Vec<(Labels, Vec<AggrChunk>)>>) -> Vec<(Labels, Vec<AggrChunk>)> {
    if answers.len() == 1 {
        return answers.into_iter().next().unwrap_or_default();
    }
    let total: usize = answers.iter().map(Vec::len).sum();
    let mut iters: Vec<std::iter::Peekable<std::vec::IntoIter<RawSeries>>> = answers
        .into_iter()
        .map(|a| a.into_iter().peekable())
        .collect();
    let mut out: Vec<(Labels, Vec<AggrChunk>)> = Vec::with_capacity(total);
    loop {
        // Resolve the minimum by comparing the heads explicitly.
        let mut best: Option<(usize, Labels)> = None;
        for (i, it) in iters.iter_mut().enumerate() {
            if let Some((labels, _)) = it.peek()
                && best.as_ref().is_none_or(|(_, b)| labels < b)
            {
                best = Some((i, labels.clone()));
            }
        }
        let Some((_, labels)) = best else { break };
        let mut chunks: Vec<AggrChunk> = Vec::new();
        let mut sources = 0;
        for it in iters.iter_mut() {
            while it.peek().is_some_and(|(l, _)| *l == labels) {
                if let Some((_, c)) = it.next() {
                    chunks.extend(c);
                    sources += 1;
                }
            }
        }
        if sources > 1 {
            chunks.sort_by_key(|c| (c.min_time, c.max_time));
            chunks.dedup();
        }
        out.push((labels, chunks));
    }
    out
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
    F: Fn(StoreClient<Channel>) -> Fut,
    Fut: Future<Output = Result<Gathered, tonic::Status>>,
{
    let selected = select_endpoints(endpoints, start, end, matchers, fan_out);
    let calls = selected.iter().map(|e| {
        let answer = call(e.store_client());
        async move {
            let result = with_timeout(fan_out.timeout, async {
                answer.await.map_err(|s| s.message().to_owned())
            })
            .await;
            (e.address().to_owned(), result)
        }
    });
    gather(join_all(calls).await, fan_out)
}

fn strategy(fan_out: &FanOut) -> i32 {
    if fan_out.partial_response {
        PartialResponseStrategy::Warn as i32
    } else {
        PartialResponseStrategy::Abort as i32
    }
}

type Gathered = (Vec<String>, Vec<String>);

fn gather(
    results: Vec<(String, Result<Gathered, String>)>,
    fan_out: &FanOut,
) -> Result<Gathered, ProxyError> {
    let mut values: BTreeSet<String> = BTreeSet::new();
    let mut warnings = Vec::new();
    for (address, result) in results {
        match result {
            Ok((v, w)) => {
                values.extend(v);
                warnings.extend(w);
            }
            Err(e) => {
                let message = format!("endpoint {address}: {e}");
                if !fan_out.partial_response {
                    return Err(ProxyError(message));
                }
                warnings.push(message);
            }
        }
    }
    Ok((values.into_iter().collect(), warnings))
}
