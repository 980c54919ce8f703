//! The Store API (`thanos.Store`) and Info API (`thanos.info.Info`) over a [`BucketStore`].
//!
//! A Series call selects blocks (time range, resolution, block matchers), expands postings
//! per block, reads and sorts the block's matching series (with external labels applied),
//! then streams their chunks in batches; a k-way merge joins the blocks' sorted streams,
//! merging series present in several blocks and dropping identical chunks. Everything is
//! bounded: a concurrency gate on calls, bounded channels between the stages, and series,
//! chunk and sample limits that end the call with `RESOURCE_EXHAUSTED`. A client that goes
//! away closes the channels, which stops the work.

use std::collections::{BTreeSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::Stream;
use strata_chunkenc::Encoding;
use strata_storepb::convert::{chunk_hash, from_any, labels_to_proto, matchers_from_proto, to_any};
use strata_storepb::info::info_server::Info;
use strata_storepb::info::{InfoRequest, InfoResponse, StoreInfo};
use strata_storepb::serve::{matchers_without_external, send_series, with_external_labels};
use strata_storepb::store_server::Store;
use strata_storepb::{
    Aggr, AggrChunk, Chunk, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, Series, SeriesRequest, SeriesResponse, ZLabelSet, chunk, hintspb,
    series_response,
};
use strata_tsdb::chunks::RawChunk;
use strata_tsdb::index::ChunkMeta;
use strata_types::{Labels, Matcher};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::block::{BlockError, BucketBlock};
use crate::bucket_store::{BucketStore, block_matches, select_blocks};

/// Series read per postings batch from one block.
const SERIES_BATCH: usize = 10_000;
/// Series whose chunks are fetched together.
const CHUNK_BATCH: usize = 1_000;
/// Samples an XOR chunk is counted as when its header cannot be read (Thanos' figure).
const MAX_SAMPLES_PER_CHUNK: u64 = 120;

/// Per-call limits; 0 means unlimited.
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
    gate: Arc<Semaphore>,
}

impl StoreService {
    /// Services over `store`, with at most `max_concurrency` Series calls at once.
    pub fn new(store: Arc<BucketStore>, limits: Limits, max_concurrency: usize) -> StoreService {
        StoreService {
            store,
            limits,
            gate: Arc::new(Semaphore::new(max_concurrency.max(1))),
        }
    }
}

/// One series on its way out.
#[derive(Debug, Clone)]
struct SeriesOut {
    labels: Labels,
    chunks: Vec<AggrChunk>,
}

type Batch = Result<Vec<SeriesOut>, Status>;

#[derive(Debug, Default)]
struct Counters {
    samples: AtomicU64,
    chunks: AtomicU64,
}

fn block_status(e: BlockError) -> Status {
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

/// Splits a downsampled (0xff) chunk into the requested aggregates.
fn aggr_chunk(raw: &RawChunk, meta: &ChunkMeta, aggregates: &[i32]) -> Result<AggrChunk, Status> {
    let mut out = AggrChunk {
        min_time: meta.min_time,
        max_time: meta.max_time,
        ..Default::default()
    };
    let data = raw.data.as_ref();
    let encoding_byte = match raw.encoding {
        Encoding::Other(b) => b,
        _ => 0,
    };
    if encoding_byte != strata_chunkenc::aggr::AGGR_ENCODING {
        let kind = match raw.encoding {
            Encoding::Xor => chunk::Encoding::Xor,
            Encoding::Histogram => chunk::Encoding::Histogram,
            Encoding::FloatHistogram => chunk::Encoding::FloatHistogram,
            other => {
                return Err(Status::internal(format!(
                    "unsupported chunk encoding {other:?}"
                )));
            }
        };
        out.raw = Some(Chunk {
            r#type: kind as i32,
            data: data.to_vec(),
            hash: chunk_hash(data),
        });
        return Ok(out);
    }
    let decoded = strata_chunkenc::aggr::decode_aggr(data)
        .map_err(|e| Status::internal(format!("corrupt aggregate chunk: {e}")))?;
    let mut parts: Vec<Option<Chunk>> = Vec::with_capacity(5);
    for part in decoded {
        let Some((encoding, bytes)) = part else {
            parts.push(None);
            continue;
        };
        let kind = match encoding {
            Encoding::Xor => chunk::Encoding::Xor,
            Encoding::Histogram => chunk::Encoding::Histogram,
            Encoding::FloatHistogram => chunk::Encoding::FloatHistogram,
            _ => return Err(Status::internal("corrupt aggregate chunk: sub-encoding")),
        };
        parts.push(Some(Chunk {
            r#type: kind as i32,
            data: bytes.to_vec(),
            hash: chunk_hash(bytes),
        }));
    }
    let wanted = |a: Aggr| aggregates.is_empty() || aggregates.contains(&(a as i32));
    let mut take = |i: usize| parts.get_mut(i).and_then(Option::take);
    if wanted(Aggr::Count) {
        out.count = take(0);
    }
    if wanted(Aggr::Sum) {
        out.sum = take(1);
    }
    if wanted(Aggr::Min) {
        out.min = take(2);
    }
    if wanted(Aggr::Max) {
        out.max = take(3);
    }
    if wanted(Aggr::Counter) {
        out.counter = take(4);
    }
    Ok(out)
}

fn chunk_samples(raw: &RawChunk) -> u64 {
    match raw.encoding {
        Encoding::Xor => {
            strata_chunkenc::xor_num_samples(&raw.data).map_or(MAX_SAMPLES_PER_CHUNK, u64::from)
        }
        Encoding::Other(strata_chunkenc::aggr::AGGR_ENCODING) => {
            strata_chunkenc::aggr::aggr_num_samples(&raw.data)
                .map_or(MAX_SAMPLES_PER_CHUNK, u64::from)
        }
        _ => MAX_SAMPLES_PER_CHUNK,
    }
}

struct BlockQuery {
    block: Arc<BucketBlock>,
    matchers: Vec<Matcher>,
    mint: i64,
    maxt: i64,
    skip_chunks: bool,
    strip: Vec<String>,
    aggregates: Vec<i32>,
    limits: Limits,
    counters: Arc<Counters>,
}

impl BlockQuery {
    /// Streams the block's matching series, sorted by served labels, in batches.
    async fn run(self, tx: mpsc::Sender<Batch>) {
        if let Err(status) = self.produce(&tx).await {
            let _ = tx.send(Err(status)).await;
        }
    }

    async fn produce(&self, tx: &mpsc::Sender<Batch>) -> Result<(), Status> {
        let refs = self
            .block
            .postings(&self.matchers)
            .await
            .map_err(block_status)?;
        let mut selected: Vec<(Labels, Vec<ChunkMeta>)> = Vec::new();
        for batch in refs.chunks(SERIES_BATCH) {
            let entries = self.block.series(batch).await.map_err(block_status)?;
            for entry in entries {
                let chunks: Vec<ChunkMeta> = entry
                    .chunks
                    .into_iter()
                    .filter(|c| c.max_time >= self.mint && c.min_time <= self.maxt)
                    .collect();
                if chunks.is_empty() {
                    continue;
                }
                let labels =
                    with_external_labels(&entry.labels, self.block.ext_labels(), &self.strip);
                selected.push((labels, chunks));
            }
            if self.limits.series > 0 && selected.len() as u64 > self.limits.series {
                return Err(Status::resource_exhausted(format!(
                    "exceeded series limit: limit {} violated (got at least {})",
                    self.limits.series,
                    selected.len()
                )));
            }
            if tx.is_closed() {
                return Ok(());
            }
        }
        if !self.block.ext_labels().is_empty() {
            selected.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let mut pending = selected.into_iter().peekable();
        while pending.peek().is_some() {
            let group: Vec<(Labels, Vec<ChunkMeta>)> = pending.by_ref().take(CHUNK_BATCH).collect();
            let out = if self.skip_chunks {
                group
                    .into_iter()
                    .map(|(labels, _)| SeriesOut {
                        labels,
                        chunks: Vec::new(),
                    })
                    .collect()
            } else {
                self.with_chunks(group).await?
            };
            if tx.send(Ok(out)).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn with_chunks(
        &self,
        group: Vec<(Labels, Vec<ChunkMeta>)>,
    ) -> Result<Vec<SeriesOut>, Status> {
        let refs: Vec<u64> = group
            .iter()
            .flat_map(|(_, metas)| metas.iter().map(|m| m.chunk_ref))
            .collect();
        let touched = self
            .counters
            .chunks
            .fetch_add(refs.len() as u64, Ordering::Relaxed)
            + refs.len() as u64;
        if self.limits.chunks > 0 && touched > self.limits.chunks {
            return Err(Status::resource_exhausted(format!(
                "exceeded chunks limit: limit {} violated (got {touched})",
                self.limits.chunks
            )));
        }
        let raws = self.block.chunks(&refs).await.map_err(block_status)?;
        let mut raws = raws.into_iter();
        let mut out = Vec::with_capacity(group.len());
        let mut samples = 0u64;
        for (labels, metas) in group {
            let mut chunks = Vec::with_capacity(metas.len());
            for meta in &metas {
                let Some(raw) = raws.next() else {
                    return Err(Status::internal("chunk count mismatch"));
                };
                samples += chunk_samples(&raw);
                chunks.push(aggr_chunk(&raw, meta, &self.aggregates)?);
            }
            out.push(SeriesOut { labels, chunks });
        }
        let total = self.counters.samples.fetch_add(samples, Ordering::Relaxed) + samples;
        if self.limits.samples > 0 && total > self.limits.samples {
            return Err(Status::resource_exhausted(format!(
                "exceeded samples limit: limit {} violated (got {total})",
                self.limits.samples
            )));
        }
        Ok(out)
    }
}

/// Merges the blocks' sorted streams into one sorted stream of frames.
async fn merge_and_send(
    mut inputs: Vec<mpsc::Receiver<Batch>>,
    out: mpsc::Sender<Result<SeriesResponse, Status>>,
    batch_size: usize,
    limit: usize,
    queried: Vec<String>,
    _permit: OwnedSemaphorePermit,
) {
    let mut heads: Vec<VecDeque<SeriesOut>> = inputs.iter().map(|_| VecDeque::new()).collect();
    let mut done = vec![false; inputs.len()];
    let mut batch: Vec<Series> = Vec::new();
    let mut sent = 0usize;
    loop {
        for i in 0..inputs.len() {
            while heads.get(i).is_some_and(VecDeque::is_empty)
                && !done.get(i).copied().unwrap_or(true)
            {
                let Some(rx) = inputs.get_mut(i) else { break };
                match rx.recv().await {
                    Some(Ok(items)) => {
                        if let Some(h) = heads.get_mut(i) {
                            h.extend(items);
                        }
                    }
                    Some(Err(status)) => {
                        let _ = out.send(Err(status)).await;
                        return;
                    }
                    None => {
                        if let Some(d) = done.get_mut(i) {
                            *d = true;
                        }
                    }
                }
            }
        }
        let min = heads
            .iter()
            .filter_map(|h| h.front())
            .map(|s| &s.labels)
            .min()
            .cloned();
        let Some(min) = min else { break };
        let mut merged: Option<SeriesOut> = None;
        for h in heads.iter_mut() {
            while h.front().is_some_and(|s| s.labels == min) {
                let Some(next) = h.pop_front() else { break };
                match &mut merged {
                    None => merged = Some(next),
                    Some(m) => m.chunks.extend(next.chunks),
                }
            }
        }
        let Some(mut series) = merged else { break };
        if series.chunks.len() > 1 {
            series.chunks.sort_by_key(|c| (c.min_time, c.max_time));
            series.chunks.dedup();
        }
        batch.push(Series {
            labels: labels_to_proto(&series.labels),
            chunks: series.chunks,
        });
        sent += 1;
        if batch.len() >= batch_size
            && !send_series(&out, std::mem::take(&mut batch), batch_size).await
        {
            return;
        }
        if limit > 0 && sent >= limit {
            break;
        }
    }
    if !batch.is_empty() && !send_series(&out, std::mem::take(&mut batch), batch_size).await {
        return;
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
        let req = request.into_inner();
        let matchers = matchers_from_proto(&req.matchers)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if matchers.is_empty() {
            return Err(Status::invalid_argument("no matchers specified"));
        }
        let block_matchers = decode_request_block_matchers(req.hints.as_ref())?;
        let permit = Arc::clone(&self.gate)
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("store is shutting down"))?;
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
        let limit = usize::try_from(req.limit.max(0)).unwrap_or(usize::MAX);
        let batch_size = usize::try_from(req.response_batch_size.max(1)).unwrap_or(1);
        let mut inputs = Vec::new();
        let mut queried = Vec::new();
        for block in blocks {
            let Some(left) = matchers_without_external(block.ext_labels(), &matchers) else {
                continue;
            };
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
            };
            tokio::spawn(query.run(tx));
            inputs.push(rx);
        }
        let (out_tx, out_rx) = mpsc::channel(16);
        tokio::spawn(merge_and_send(
            inputs, out_tx, batch_size, limit, queried, permit,
        ));
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
        let mut names: BTreeSet<String> = BTreeSet::new();
        for block in self.blocks_for(req.start, req.end, &block_matchers) {
            let Some(left) = matchers_without_external(block.ext_labels(), &matchers) else {
                continue;
            };
            if left.is_empty() {
                names.extend(block.header().label_names());
            } else {
                for labels in series_labels(&block, &left).await? {
                    names.extend(labels.iter().map(|l| l.name.clone()));
                }
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
            return Err(Status::invalid_argument(
                "label name parameter cannot be empty",
            ));
        }
        let matchers = matchers_from_proto(&req.matchers)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let block_matchers = decode_request_block_matchers(req.hints.as_ref())?;
        let mut values: BTreeSet<String> = BTreeSet::new();
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
                    for labels in series_labels(&block, &left).await? {
                        if let Some(v) = labels.get(&req.label) {
                            values.insert(v.to_owned());
                        }
                    }
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

async fn series_labels(block: &BucketBlock, matchers: &[Matcher]) -> Result<Vec<Labels>, Status> {
    let refs = block.postings(matchers).await.map_err(block_status)?;
    let mut out = Vec::with_capacity(refs.len());
    for batch in refs.chunks(SERIES_BATCH) {
        for entry in block.series(batch).await.map_err(block_status)? {
            out.push(entry.labels);
        }
    }
    Ok(out)
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
