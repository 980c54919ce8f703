//! The Store API (`thanos.Store`) and Info API (`thanos.info.Info`) over a [`BucketStore`].
//!
//! A Series call selects blocks (time range, resolution, block matchers); each block's
//! task ([`crate::block_query`]) expands postings, or takes the block's expanded series
//! for the same selection from the index cache, and streams its matching series in
//! batches, in the order of their labels as sent (external labels attached, replica labels
//! stripped), fetching chunks batch by batch; the one
//! streaming k-way merge ([`SeriesMerge`]) joins the blocks' streams, merging series present
//! in several blocks and dropping identical chunks. Everything is bounded: a concurrency
//! gate on calls (label calls included), bounded channels between the stages, a per-request
//! gate on the blocks' index and chunk fetches, and series, chunk and sample limits counted
//! over the whole request that end it with `RESOURCE_EXHAUSTED`. Block tasks are owned by
//! the call (a `JoinSet`): a client that goes away stops them, and a task that ends without
//! finishing its stream (a panic, an abort) ends the call with an error, never a shorter
//! answer.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::Stream;
use strata_storepb::convert::{
    from_any, labels_into_proto, labels_to_proto, matchers_from_proto, to_any,
};
use strata_storepb::info::info_server::Info;
use strata_storepb::info::{InfoRequest, InfoResponse, StoreInfo};
use strata_storepb::merge::{SeriesItem, SeriesMerge};
use strata_storepb::serve::{
    SeriesBatcher, matchers_without_external, send_series, spawn_producer,
};
use strata_storepb::store_server::Store;
use strata_storepb::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse, Series,
    SeriesRequest, SeriesResponse, ZLabelSet, hintspb, series_response,
};
use strata_types::{Labels, Matcher};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::block::{BlockError, BucketBlock};
use crate::block_query::{Batch, BlockQuery, Counters, Frame};
use crate::bucket_store::{BucketStore, block_matches, select_blocks};
use crate::series_metrics::{SeriesMetrics, SeriesStats};

/// Series read per postings batch from one block.
pub(crate) const SERIES_BATCH: usize = 10_000;
/// Series whose chunks are fetched together (and sent to the merge as one batch), per
/// block: [`CHUNK_SERIES_IN_FLIGHT`] shared by the request's blocks, within these bounds.
/// Every block keeps a few batches in flight while the merge waits for the others' heads,
/// so many blocks take small batches (over 24 blocks, a two-day query's store peak RSS was
/// 516 MB with 1,000 and 345 MB with 100, as fast), while a query of one or two blocks
/// takes large ones (fewer fetches and hand-offs: an instant query over 1,000 series of one
/// block took 4.9 ms with 1,000, 5.2 ms with 100, when the processes were idle before it).
const CHUNK_BATCH: std::ops::RangeInclusive<usize> = 100..=1_000;
/// See [`CHUNK_BATCH`].
const CHUNK_SERIES_IN_FLIGHT: usize = 2_400;
/// Index and chunk fetches one request's blocks run at once.
const FETCH_CONCURRENCY: usize = 8;

/// Per-request limits (over all the request's blocks); 0 means unlimited.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Series a Series call may return.
    pub series: u64,
    /// Samples (counted from chunk headers) a Series call may touch.
    pub samples: u64,
    /// Chunks a Series call may touch.
    pub chunks: u64,
}

/// The gRPC services of the store gateway.
#[derive(Debug, Clone)]
pub struct StoreService {
    store: Arc<BucketStore>,
    limits: Limits,
    gate: strata_runtime::gate::Gate,
    metrics: Option<SeriesMetrics>,
}

impl StoreService {
    /// Services over `store`, with at most `max_concurrency` Series calls at once.
    pub fn new(store: Arc<BucketStore>, limits: Limits, max_concurrency: usize) -> StoreService {
        StoreService {
            store,
            limits,
            gate: strata_runtime::gate::Gate::new(max_concurrency, "series_gate", None),
            metrics: None,
        }
    }

    /// As [`StoreService::new`], the gate's waits and holders counted in `registry`
    /// (`thanos_bucket_store_series_gate_*`, as Thanos), and every Series call's
    /// histograms (`thanos_bucket_store_series_*`, see [`crate::series_metrics`]).
    pub fn with_metrics(
        store: Arc<BucketStore>,
        limits: Limits,
        max_concurrency: usize,
        registry: &mut prometheus_client::registry::Registry,
    ) -> StoreService {
        let metrics = SeriesMetrics::new();
        metrics.register(registry);
        StoreService {
            store,
            limits,
            gate: strata_runtime::gate::Gate::new(
                max_concurrency,
                "thanos_bucket_store_series_gate",
                Some(registry),
            ),
            metrics: Some(metrics),
        }
    }
}

pub(crate) fn block_status(e: BlockError) -> Status {
    Status::internal(e.to_string())
}

fn decode_request_block_matchers(hints: Option<&prost_types::Any>) -> Result<Vec<Matcher>, Status> {
    let Some(any) = hints else {
        return Ok(Vec::new());
    };
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let matchers = match name {
        "hintspb.SeriesRequestHints" => {
            from_any::<hintspb::SeriesRequestHints>(any).map(|h| h.block_matchers)
        }
        "hintspb.LabelNamesRequestHints" => {
            from_any::<hintspb::LabelNamesRequestHints>(any).map(|h| h.block_matchers)
        }
        "hintspb.LabelValuesRequestHints" => {
            from_any::<hintspb::LabelValuesRequestHints>(any).map(|h| h.block_matchers)
        }
        _ => return Ok(Vec::new()),
    }
    .map_err(|e| Status::invalid_argument(e.to_string()))?;
    matchers_from_proto(&matchers).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A block task's channel as a merge input: batches until `End`; a channel that closes
/// without `End` (the task panicked or was aborted) is an error, not a shorter stream.
fn block_input(
    name: String,
    rx: mpsc::Receiver<Batch>,
) -> Pin<Box<dyn Stream<Item = Result<Vec<SeriesItem>, String>> + Send>> {
    Box::pin(futures::stream::unfold(
        (rx, false, name),
        |(mut rx, ended, name)| async move {
            if ended {
                return None;
            }
            match rx.recv().await {
                Some(Ok(Frame::Batch(batch))) => Some((
                    Ok(batch.into_iter().map(|s| (s.labels, s.chunks)).collect()),
                    (rx, false, name),
                )),
                Some(Ok(Frame::End)) => None,
                Some(Err(status)) => Some((Err(status_text(&status)), (rx, true, name))),
                None => Some((
                    Err(format!("{name}: its task ended before its series")),
                    (rx, true, name),
                )),
            }
        },
    ))
}

/// A status as merge error text: its code name and message, so that the code can be told
/// apart again.
fn status_text(status: &Status) -> String {
    format!("{}\u{0}{}", i32::from(status.code()), status.message())
}

fn status_from_text(text: &str) -> Status {
    match text.split_once('\u{0}') {
        Some((code, message)) => Status::new(
            tonic::Code::from_i32(code.parse().unwrap_or(13)),
            message.to_owned(),
        ),
        None => Status::internal(text.to_owned()),
    }
}

/// What [`merge_and_send`] reports to the Series histograms when the call ends.
struct Observe {
    metrics: Option<SeriesMetrics>,
    counters: Arc<Counters>,
    started: std::time::Instant,
}

/// Merges the blocks' sorted streams into one sorted stream of frames; owns the block
/// tasks (dropped, and so stopped, when the client goes away).
#[allow(clippy::too_many_arguments)]
async fn merge_and_send(
    inputs: Vec<(String, mpsc::Receiver<Batch>)>,
    tasks: JoinSet<()>,
    out: mpsc::Sender<Result<SeriesResponse, Status>>,
    batch_size: usize,
    limit: usize,
    queried: Vec<String>,
    observe: Observe,
    _permit: strata_runtime::gate::Turn,
) {
    let _tasks = tasks;
    let mut heads_ready: Option<std::time::Instant> = None;
    let mut merge = SeriesMerge::new(
        inputs
            .into_iter()
            .map(|(name, rx)| (name.clone(), block_input(name, rx)))
            .collect(),
    );
    let mut batcher = SeriesBatcher::new(batch_size);
    // Looked up once: per series it was a label-set lookup in the family each time.
    let sent_size = observe.metrics.as_ref().map(SeriesMetrics::sent_chunk_size);
    let mut sent = 0usize;
    while let Some(item) = merge.next().await {
        let (labels, chunks) = match item {
            Ok(item) => {
                heads_ready.get_or_insert_with(std::time::Instant::now);
                item
            }
            Err(strata_storepb::merge::MergeError::Input(text)) => {
                let status = status_from_text(&text);
                if status.code() == tonic::Code::ResourceExhausted
                    && let Some(metrics) = &observe.metrics
                {
                    for reason in ["series", "chunks", "samples"] {
                        if status
                            .message()
                            .contains(&format!("exceeded {reason} limit"))
                        {
                            metrics.dropped(reason);
                        }
                    }
                }
                let _ = out.send(Err(status)).await;
                return;
            }
            Err(e) => {
                let _ = out.send(Err(Status::internal(e.to_string()))).await;
                return;
            }
        };
        if let Some(sent_size) = &sent_size {
            let bytes: usize = chunks.iter().map(prost::Message::encoded_len).sum();
            sent_size.observe(bytes as f64);
        }
        let series = Series {
            labels: labels_into_proto(labels),
            chunks,
        };
        sent += 1;
        if let Some(batch) = batcher.push(series)
            && !send_series(&out, batch, batch_size).await
        {
            return;
        }
        if limit > 0 && sent >= limit {
            break;
        }
    }
    if let Some(batch) = batcher.finish()
        && !send_series(&out, batch, batch_size).await
    {
        return;
    }
    if let Some(metrics) = &observe.metrics {
        let now = std::time::Instant::now();
        let heads = heads_ready.unwrap_or(now);
        let c = &observe.counters;
        metrics.observe(&SeriesStats {
            blocks: queried.len() as u64,
            postings: c.postings.load(Ordering::Relaxed),
            series: c.series_read.load(Ordering::Relaxed),
            chunks: c.chunks.load(Ordering::Relaxed),
            result_series: sent as u64,
            get_all_seconds: heads.duration_since(observe.started).as_secs_f64(),
            merge_seconds: now.duration_since(heads).as_secs_f64(),
        });
    }
    let hints = hintspb::SeriesResponseHints {
        queried_blocks: queried
            .into_iter()
            .map(|id| hintspb::Block { id })
            .collect(),
        query_stats: None,
    };
    let _ = out
        .send(Ok(SeriesResponse {
            result: Some(series_response::Result::Hints(to_any(&hints))),
        }))
        .await;
}

type SeriesStream = Pin<Box<dyn Stream<Item = Result<SeriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for StoreService {
    type SeriesStream = SeriesStream;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let started = std::time::Instant::now();
        let req = request.into_inner();
        let matchers = matchers_from_proto(&req.matchers)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if matchers.is_empty() {
            // As Thanos' gateway: no matchers select no postings (not an error).
            return Ok(Response::new(Box::pin(futures::stream::empty())));
        }
        let block_matchers = decode_request_block_matchers(req.hints.as_ref())?;
        let permit = self.permit().await?;
        let (window_min, window_max) = self.store.window();
        let mint = req.min_time.max(window_min);
        let maxt = req.max_time.min(window_max);
        let max_resolution = req.max_resolution_window;
        let blocks = select_blocks(
            &self.store.blocks(),
            mint,
            maxt,
            max_resolution,
            &block_matchers,
        );
        let counters = Arc::new(Counters::default());
        let fetches = Arc::new(Semaphore::new(FETCH_CONCURRENCY));
        let limit = usize::try_from(req.limit.max(0)).unwrap_or(usize::MAX);
        let batch_size = usize::try_from(req.response_batch_size.max(1)).unwrap_or(1);
        let mut inputs = Vec::new();
        let mut tasks = JoinSet::new();
        let mut queried = Vec::new();
        let chunk_batch = (CHUNK_SERIES_IN_FLIGHT / blocks.len().max(1))
            .clamp(*CHUNK_BATCH.start(), *CHUNK_BATCH.end());
        for block in blocks {
            let Some(left) = matchers_without_external(block.ext_labels(), &matchers) else {
                continue;
            };
            if left.is_empty() {
                // Only external-label matchers: no postings, as in Thanos.
                continue;
            }
            queried.push(block.id().to_string());
            let (tx, rx) = mpsc::channel(2);
            let query = BlockQuery {
                block,
                matchers: left,
                mint,
                maxt,
                skip_chunks: req.skip_chunks,
                strip: req.without_replica_labels.clone(),
                aggregates: req.aggregates.clone(),
                limits: self.limits,
                counters: Arc::clone(&counters),
                fetches: Arc::clone(&fetches),
                chunk_batch,
            };
            let name = format!("block {}", query.block.id());
            tasks.spawn(query.run(tx));
            inputs.push((name, rx));
        }
        let observe = Observe {
            metrics: self.metrics.clone(),
            counters,
            started,
        };
        let out_rx = spawn_producer("store gateway Series".to_owned(), 16, |out_tx| {
            merge_and_send(
                inputs, tasks, out_tx, batch_size, limit, queried, observe, permit,
            )
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let req = request.into_inner();
        let matchers = matchers_from_proto(&req.matchers)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let block_matchers = decode_request_block_matchers(req.hints.as_ref())?;
        let _permit = self.permit().await?;
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut touched = 0u64;
        for block in self.blocks_for(req.start, req.end, &block_matchers) {
            let Some(left) = matchers_without_external(block.ext_labels(), &matchers) else {
                continue;
            };
            if left.is_empty() {
                names.extend(block.header().label_names());
            } else {
                for_each_series(&block, &left, &mut touched, self.limits.series, |labels| {
                    for l in labels.iter() {
                        if !names.contains(&l.name) {
                            names.insert(l.name.clone());
                        }
                    }
                })
                .await?;
            }
            names.extend(block.ext_labels().iter().map(|l| l.name.clone()));
        }
        for name in &req.without_replica_labels {
            names.remove(name);
        }
        let mut names: Vec<String> = names.into_iter().collect();
        if req.limit > 0 {
            names.truncate(usize::try_from(req.limit).unwrap_or(usize::MAX));
        }
        Ok(Response::new(LabelNamesResponse {
            names,
            warnings: Vec::new(),
            hints: None,
        }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let req = request.into_inner();
        if req.label.is_empty() {
            // Thanos' gateway looks an empty name up and finds nothing.
            return Ok(Response::new(LabelValuesResponse::default()));
        }
        let matchers = matchers_from_proto(&req.matchers)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let block_matchers = decode_request_block_matchers(req.hints.as_ref())?;
        let _permit = self.permit().await?;
        let mut values: BTreeSet<String> = BTreeSet::new();
        let mut touched = 0u64;
        if !req.without_replica_labels.contains(&req.label) {
            for block in self.blocks_for(req.start, req.end, &block_matchers) {
                let Some(left) = matchers_without_external(block.ext_labels(), &matchers) else {
                    continue;
                };
                if let Some(v) = block.ext_labels().get(&req.label) {
                    values.insert(v.to_owned());
                    continue;
                }
                if left.is_empty() {
                    values.extend(
                        block
                            .header()
                            .label_values(&req.label)
                            .map_err(|e| Status::internal(e.to_string()))?,
                    );
                } else {
                    for_each_series(&block, &left, &mut touched, self.limits.series, |labels| {
                        if let Some(v) = labels.get(&req.label)
                            && !values.contains(v)
                        {
                            values.insert(v.to_owned());
                        }
                    })
                    .await?;
                }
            }
        }
        let mut values: Vec<String> = values.into_iter().collect();
        if req.limit > 0 {
            values.truncate(usize::try_from(req.limit).unwrap_or(usize::MAX));
        }
        Ok(Response::new(LabelValuesResponse {
            values,
            warnings: Vec::new(),
            hints: None,
        }))
    }
}

impl StoreService {
    /// A permit of the concurrency gate (Series and label calls share it).
    async fn permit(&self) -> Result<strata_runtime::gate::Turn, Status> {
        self.gate
            .enter()
            .await
            .map_err(|_| Status::unavailable("store is shutting down"))
    }

    /// Blocks of any resolution overlapping `[start, end]` that pass the block matchers
    /// (a zero range means everything, as in Thanos).
    fn blocks_for(
        &self,
        start: i64,
        end: i64,
        block_matchers: &[Matcher],
    ) -> Vec<Arc<BucketBlock>> {
        let (start, end) = if start == 0 && end == 0 {
            (i64::MIN, i64::MAX)
        } else {
            (start, end)
        };
        self.store
            .blocks()
            .into_iter()
            .filter(|b| b.meta().max_time >= start && b.meta().min_time <= end)
            .filter(|b| block_matches(b, block_matchers))
            .collect()
    }
}

/// Calls `f` with the labels of every series of `block` that `matchers` select, a batch
/// of series at a time (never all of them held); counts them in `touched` against the
/// request's series limit.
async fn for_each_series(
    block: &BucketBlock,
    matchers: &[Matcher],
    touched: &mut u64,
    limit: u64,
    mut f: impl FnMut(&Labels),
) -> Result<(), Status> {
    let refs = block.postings(matchers).await.map_err(block_status)?;
    for batch in refs.chunks(SERIES_BATCH) {
        for entry in block.series(batch).await.map_err(block_status)? {
            *touched += 1;
            if limit > 0 && *touched > limit {
                return Err(Status::resource_exhausted(format!(
                    "exceeded series limit: limit {limit} violated (got at least {touched})"
                )));
            }
            f(&entry.labels);
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl Info for StoreService {
    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let (min_time, max_time) = self.store.time_range();
        let label_sets = self
            .store
            .label_sets()
            .iter()
            .map(|l| ZLabelSet {
                labels: labels_to_proto(l),
            })
            .collect();
        Ok(Response::new(InfoResponse {
            label_sets,
            component_type: strata_storepb::COMPONENT_STORE.to_owned(),
            store: Some(StoreInfo {
                min_time,
                max_time,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos: Vec::new(),
                supports_projections: false,
            }),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_query::SeriesOut;
    use futures::StreamExt;

    /// A block task that goes away without finishing its stream (it panicked, or was
    /// aborted) makes the merge input an error, never a shorter answer.
    #[tokio::test]
    async fn a_block_task_that_dies_is_an_error_not_a_short_answer() {
        let (tx, rx) = mpsc::channel(4);
        let series = SeriesOut {
            labels: Labels::from_pairs([("a", "1")]),
            chunks: Vec::new(),
        };
        tx.send(Ok(Frame::Batch(vec![series]))).await.unwrap();
        let task = tokio::spawn(async move {
            let _tx = tx;
            panic!("a block task fails");
        });
        assert!(task.await.is_err());
        let mut input = block_input("block x".into(), rx);
        assert!(matches!(input.next().await, Some(Ok(batch)) if batch.len() == 1));
        let err = input.next().await.unwrap().unwrap_err();
        assert!(
            err.contains("block x: its task ended before its series"),
            "{err}"
        );
        assert!(input.next().await.is_none());

        // A task that finishes sends End: the input simply ends.
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ok(Frame::End)).await.unwrap();
        let mut input = block_input("block y".into(), rx);
        assert!(input.next().await.is_none());
    }

    #[test]
    fn statuses_survive_the_merge() {
        let status = Status::resource_exhausted("exceeded series limit");
        let back = status_from_text(&status_text(&status));
        assert_eq!(back.code(), tonic::Code::ResourceExhausted);
        assert_eq!(back.message(), "exceeded series limit");
    }
}
