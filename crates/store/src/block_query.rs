//! One block's part of a Series call: the series the request selects (expanded from
//! postings and series entries, or served from the block's expanded list in the index
//! cache), their labels as sent (external labels attached, replica labels stripped, in
//! order: [`Reorder`]), and their chunks fetched batch by batch and sent to the call's
//! merge.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_chunkenc::Encoding;
use strata_storepb::convert::chunk_hash;
use strata_storepb::serve::Reorder;
use strata_storepb::{Aggr, AggrChunk, Chunk, chunk};
use strata_tsdb::chunks::RawChunk;
use strata_tsdb::index::ChunkMeta;
use strata_types::{Labels, Matcher};
use tokio::sync::{Semaphore, mpsc};
use tonic::Status;

use crate::block::BucketBlock;
use crate::cache::{Key, Value};
use crate::expanded::{Expanded, Filling, Selection};
use crate::service::{Limits, SERIES_BATCH, block_status};

/// Samples an XOR chunk is counted as when its header cannot be read (Thanos' figure).
const MAX_SAMPLES_PER_CHUNK: u64 = 120;

/// One series on its way out.
#[derive(Debug, Clone)]
pub(crate) struct SeriesOut {
    pub(crate) labels: Labels,
    pub(crate) chunks: Vec<AggrChunk>,
}

/// What a block task sends: a batch of series, or that it has finished.
pub(crate) enum Frame {
    Batch(Vec<SeriesOut>),
    End,
}

pub(crate) type Batch = Result<Frame, Status>;

/// What a request has touched so far, over all its blocks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Postings expanded (series references), over all blocks.
    pub(crate) postings: AtomicU64,
    /// Series entries read from the index.
    pub(crate) series_read: AtomicU64,
    pub(crate) series: AtomicU64,
    pub(crate) samples: AtomicU64,
    pub(crate) chunks: AtomicU64,
}

/// Splits a downsampled (0xff) chunk into the requested aggregates.
fn aggr_chunk(raw: RawChunk, meta: &ChunkMeta, aggregates: &[i32]) -> Result<AggrChunk, Status> {
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
        let hash = chunk_hash(data);
        out.raw = Some(Chunk {
            r#type: kind as i32,
            // Moved, not cloned: the fetched range's count is shared by every chunk in it
            // (and by the threads that encode them).
            data: raw.data,
            hash,
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
            data: raw.data.slice_ref(bytes),
            hash: chunk_hash(bytes),
        }));
    }
    let wanted = |a: Aggr| aggregates.is_empty() || aggregates.contains(&(a as i32));
    let mut take = |i: usize| parts.get_mut(i).and_then(Option::take).map(Box::new);
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

pub(crate) struct BlockQuery {
    pub(crate) block: Arc<BucketBlock>,
    pub(crate) matchers: Vec<Matcher>,
    pub(crate) mint: i64,
    pub(crate) maxt: i64,
    pub(crate) skip_chunks: bool,
    pub(crate) strip: Vec<String>,
    pub(crate) aggregates: Vec<i32>,
    pub(crate) limits: Limits,
    pub(crate) counters: Arc<Counters>,
    /// The request's gate on index and chunk fetches.
    pub(crate) fetches: Arc<Semaphore>,
    /// Series per chunk fetch (see [`crate::service`]'s `CHUNK_BATCH`).
    pub(crate) chunk_batch: usize,
}

impl BlockQuery {
    /// Streams the block's matching series, sorted by served labels, in batches, then
    /// `End`.
    pub(crate) async fn run(self, tx: mpsc::Sender<Batch>) {
        match self.produce(&tx).await {
            Ok(true) => {
                let _ = tx.send(Ok(Frame::End)).await;
            }
            Ok(false) => {}
            Err(status) => {
                let _ = tx.send(Err(status)).await;
            }
        }
    }

    async fn fetch_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Status> {
        self.fetches
            .acquire()
            .await
            .map_err(|_| Status::unavailable("store is shutting down"))
    }

    /// Returns false when the receiver went away.
    async fn produce(&self, tx: &mpsc::Sender<Batch>) -> Result<bool, Status> {
        let cache = self.block.cache();
        let selection = Arc::new(Selection::new(&self.matchers, &self.strip));
        if let Some(expanded) = cache.get_expanded(self.block.id(), &selection).await {
            return self.serve_expanded(&expanded, tx).await;
        }
        let refs = {
            let _permit = self.fetch_permit().await?;
            self.block
                .postings(&self.matchers)
                .await
                .map_err(block_status)?
        };
        self.counters
            .postings
            .fetch_add(refs.len() as u64, Ordering::Relaxed);
        // Unless it grows too large, the list is kept for the next request with the same
        // selection; it holds every series with all its chunks, so nothing is filtered
        // before it.
        let mut fill = cache
            .expanded_budget(self.block.id(), &selection)
            .and_then(|budget| Filling::new(refs.len(), budget));
        let filling = fill.is_some();
        let mut order = Reorder::new(self.block.ext_labels().clone(), self.strip.clone());
        let mut ready: Vec<(Labels, Vec<ChunkMeta>)> = Vec::new();
        let mut new = Vec::new();
        for batch in refs.chunks(SERIES_BATCH) {
            let entries = {
                let _permit = self.fetch_permit().await?;
                self.block.series(batch).await.map_err(block_status)?
            };
            self.counters
                .series_read
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            for entry in entries {
                let mut chunks = entry.chunks;
                if fill.is_none() {
                    chunks.retain(|c| self.in_range(c));
                    if chunks.is_empty() {
                        continue;
                    }
                }
                let released = order
                    .push(entry.labels, chunks)
                    .map_err(|e| Status::internal(format!("block {}: {e}", self.block.id())))?;
                self.take(released, &mut fill, &mut new, &mut ready)?;
                if !self.drain(tx, &mut ready, false).await? {
                    return Ok(false);
                }
            }
            if tx.is_closed() {
                return Ok(false);
            }
        }
        let released = order
            .finish()
            .map_err(|e| Status::internal(format!("block {}: {e}", self.block.id())))?;
        self.take(released, &mut fill, &mut new, &mut ready)?;
        if !self.drain(tx, &mut ready, true).await? {
            return Ok(false);
        }
        match fill {
            Some(fill) => {
                let expanded = fill.finish(selection.weight());
                cache.insert(
                    Key::Expanded(self.block.id(), selection),
                    Value::Expanded(Arc::new(expanded)),
                );
            }
            None if filling => cache.expanded_too_big(self.block.id(), selection),
            None => {}
        }
        Ok(true)
    }

    /// Serves the block's series from its expanded list.
    async fn serve_expanded(
        &self,
        expanded: &Expanded,
        tx: &mpsc::Sender<Batch>,
    ) -> Result<bool, Status> {
        let n = expanded.series.len() as u64;
        self.counters.postings.fetch_add(n, Ordering::Relaxed);
        self.counters.series_read.fetch_add(n, Ordering::Relaxed);
        let mut ready: Vec<(Labels, Vec<ChunkMeta>)> = Vec::new();
        for (labels, chunks) in &expanded.series {
            // `offer` keeps the chunks in range.
            self.offer(labels.clone(), chunks.clone(), &mut ready)?;
            if !self.drain(tx, &mut ready, false).await? {
                return Ok(false);
            }
        }
        self.drain(tx, &mut ready, true).await
    }

    fn in_range(&self, c: &ChunkMeta) -> bool {
        c.max_time >= self.mint && c.min_time <= self.maxt
    }

    /// Takes the series the reorder released: into the list being filled (their label
    /// sets interned first), and, those with chunks in range, into `ready`.
    fn take(
        &self,
        mut released: Vec<(Labels, Vec<ChunkMeta>)>,
        fill: &mut Option<Filling>,
        new: &mut Vec<bool>,
        ready: &mut Vec<(Labels, Vec<ChunkMeta>)>,
    ) -> Result<(), Status> {
        if released.is_empty() {
            return Ok(());
        }
        if fill.is_some() {
            let mut sets: Vec<&mut Labels> = released.iter_mut().map(|(l, _)| l).collect();
            self.block.cache().interner().intern_all(&mut sets, new);
        } else {
            // Read only while filling.
            new.clear();
        }
        for ((labels, chunks), is_new) in released
            .into_iter()
            .zip(new.iter().copied().chain(std::iter::repeat(false)))
        {
            if let Some(filling) = fill
                && !filling.push(&labels, &chunks, is_new)
            {
                *fill = None;
            }
            self.offer(labels, chunks, ready)?;
        }
        Ok(())
    }

    /// Adds a series whose chunks in range are `chunks` (none: skipped), counted against
    /// the series limit.
    fn offer(
        &self,
        labels: Labels,
        mut chunks: Vec<ChunkMeta>,
        ready: &mut Vec<(Labels, Vec<ChunkMeta>)>,
    ) -> Result<(), Status> {
        chunks.retain(|c| self.in_range(c));
        if chunks.is_empty() {
            return Ok(());
        }
        let touched = self.counters.series.fetch_add(1, Ordering::Relaxed) + 1;
        if self.limits.series > 0 && touched > self.limits.series {
            return Err(Status::resource_exhausted(format!(
                "exceeded series limit: limit {} violated (got at least {touched})",
                self.limits.series
            )));
        }
        ready.push((labels, chunks));
        Ok(())
    }

    /// Sends full groups of ready series (and, when `all`, the rest); false when the
    /// receiver went away.
    async fn drain(
        &self,
        tx: &mpsc::Sender<Batch>,
        ready: &mut Vec<(Labels, Vec<ChunkMeta>)>,
        all: bool,
    ) -> Result<bool, Status> {
        while ready.len() >= self.chunk_batch || (all && !ready.is_empty()) {
            let rest = ready.split_off(ready.len().min(self.chunk_batch));
            let group = std::mem::replace(ready, rest);
            if !self.send(tx, group).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sends a group of series (with their chunks unless skipped); false when the receiver
    /// went away.
    async fn send(
        &self,
        tx: &mpsc::Sender<Batch>,
        group: Vec<(Labels, Vec<ChunkMeta>)>,
    ) -> Result<bool, Status> {
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
        Ok(tx.send(Ok(Frame::Batch(out))).await.is_ok())
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
        let raws = {
            let _permit = self.fetch_permit().await?;
            self.block.chunks(&refs).await.map_err(block_status)?
        };
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
                chunks.push(aggr_chunk(raw, meta, &self.aggregates)?);
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
