//! Pieces every Store API server shares: external labels on served series, and sending
//! series as `SeriesResponse` frames.

use strata_types::{Label, Labels, Matcher};
use tokio::sync::mpsc;
use tonic::Status;

use crate::convert::labels_into_proto;
use crate::{AggrChunk, Series, SeriesBatch, SeriesResponse, series_response};

/// The matchers left once a source's external labels `ext` are checked: those on external
/// label names are decided here and dropped. `None` if the external labels rule it out.
pub fn matchers_without_external(ext: &Labels, matchers: &[Matcher]) -> Option<Vec<Matcher>> {
    let mut left = Vec::with_capacity(matchers.len());
    for m in matchers {
        match ext.get(m.name()) {
            Some(value) if !m.matches(value) => return None,
            Some(_) => {}
            None => left.push(m.clone()),
        }
    }
    Some(left)
}

/// A series' labels as served: external labels override the series' own, then the
/// external labels named in `strip` (replica labels a client asked to drop) are removed.
/// The series' strings are moved, not copied, when nothing else holds its label set.
pub fn with_external_labels(series: Labels, ext: &Labels, strip: &[String]) -> Labels {
    if ext.is_empty() {
        return series;
    }
    if !Labels::is_sorted_unique(series.as_slice()) || ext.iter().any(|l| l.value.is_empty()) {
        // Never from a block or Prometheus; the general path keeps the rules.
        let mut b = series.to_builder();
        for l in ext.iter() {
            if strip.contains(&l.name) {
                b.delete(&l.name);
            } else {
                b.set(l.name.clone(), l.value.clone());
            }
        }
        return b.build();
    }
    // Both sorted by name: one merge, the external label winning a shared name.
    let own = series.into_vec();
    let mut out = Vec::with_capacity(own.len() + ext.len());
    let (mut a, mut b) = (own.into_iter().peekable(), ext.iter().peekable());
    loop {
        let take_ext = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => match x.name.cmp(&y.name) {
                std::cmp::Ordering::Less => false,
                std::cmp::Ordering::Equal => {
                    a.next();
                    true
                }
                std::cmp::Ordering::Greater => true,
            },
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (None, None) => break,
        };
        if take_ext {
            if let Some(y) = b.next()
                && !strip.contains(&y.name)
            {
                out.push(y.clone());
            }
        } else if let Some(x) = a.next() {
            out.push(x);
        }
    }
    Labels::from_sorted(out)
}

/// A stream of Series answers.
pub type SeriesSender = mpsc::Sender<Result<SeriesResponse, Status>>;

/// Runs `produce` as the task behind a streamed answer: it gets the sending half of a
/// channel of `capacity` frames and the caller returns the receiving half to gRPC. If the
/// task panics, the stream ends with an `internal` status naming `what` instead of ending as
/// if the answer were complete (a producer that simply drops its sender early must send its
/// own error first).
pub fn spawn_producer<T, F, Fut>(
    what: String,
    capacity: usize,
    produce: F,
) -> mpsc::Receiver<Result<T, Status>>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use futures::FutureExt;
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let guard = tx.clone();
    let task = std::panic::AssertUnwindSafe(produce(tx)).catch_unwind();
    // The task keeps the caller's span (the gRPC call's, in a trace) until it has streamed.
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        if task.await.is_err() {
            tracing::error!(task = %what, "a streaming task panicked");
            let _ = guard
                .send(Err(Status::internal(format!("{what}: its task failed"))))
                .await;
        }
    }));
    rx
}

/// Sends `series` as one `Series` frame each (`batch_size` ≤ 1) or as one `SeriesBatch`
/// frame. `false` when the receiver is gone (the client went away).
pub async fn send_series(tx: &SeriesSender, series: Vec<Series>, batch_size: usize) -> bool {
    if batch_size <= 1 {
        for s in series {
            let frame = SeriesResponse {
                result: Some(series_response::Result::Series(s)),
            };
            if tx.send(Ok(frame)).await.is_err() {
                return false;
            }
        }
        return true;
    }
    let frame = SeriesResponse {
        result: Some(series_response::Result::Batch(SeriesBatch { series })),
    };
    tx.send(Ok(frame)).await.is_ok()
}

/// Chunk bytes after which a batch of series is sent even if it holds fewer than the
/// requested `response_batch_size` series (clients accept batches of any length): a frame,
/// and the buffer it is encoded into, stays near this size however many chunks each series
/// has (64 series of two days' chunks are over a megabyte).
pub const MAX_BATCH_BYTES: usize = 64 << 10;

/// Gathers series into Series frames: `batch_size` series or [`MAX_BATCH_BYTES`] of chunk
/// data, whichever comes first.
#[derive(Debug)]
pub struct SeriesBatcher {
    batch: Vec<Series>,
    bytes: usize,
    batch_size: usize,
}

impl SeriesBatcher {
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch: Vec::new(),
            bytes: 0,
            batch_size,
        }
    }

    /// Adds `series`; returns a batch that is ready to be sent.
    pub fn push(&mut self, series: Series) -> Option<Vec<Series>> {
        self.bytes += series
            .chunks
            .iter()
            .map(|c| {
                c.parts()
                    .into_iter()
                    .flatten()
                    .map(|chunk| chunk.data.len())
                    .sum::<usize>()
            })
            .sum::<usize>();
        self.batch.push(series);
        (self.batch.len() >= self.batch_size || self.bytes >= MAX_BATCH_BYTES).then(|| {
            self.bytes = 0;
            std::mem::take(&mut self.batch)
        })
    }

    /// The last, partial batch (if any).
    pub fn finish(self) -> Option<Vec<Series>> {
        (!self.batch.is_empty()).then_some(self.batch)
    }
}

/// Sends sorted series in frames of `batch_size` series (or [`MAX_BATCH_BYTES`]). `false`
/// when the receiver is gone.
pub async fn stream_series(
    tx: &SeriesSender,
    series: Vec<(Labels, Vec<AggrChunk>)>,
    batch_size: usize,
) -> bool {
    let mut batcher = SeriesBatcher::new(batch_size);
    for (labels, chunks) in series {
        let series = Series {
            labels: labels_into_proto(labels),
            chunks,
        };
        if let Some(batch) = batcher.push(series)
            && !send_series(tx, batch, batch_size).await
        {
            return false;
        }
    }
    match batcher.finish() {
        Some(batch) => send_series(tx, batch, batch_size).await,
        None => true,
    }
}

/// The server [`store_api_server`] builds.
pub type StoreApiRouter = tonic::transport::server::Router<
    tower_layer::Stack<
        crate::snappy::SnappyRequests,
        tower_layer::Stack<crate::grpc_metrics::GrpcMetricsLayer, tower_layer::Identity>,
    >,
>;

/// Largest gRPC message a Store API client or server reads or writes (a Series frame of a
/// batch of series with their chunks stays far below it).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// A gRPC server for `service` as `thanos.Store` and `thanos.info.Info`; requests up to
/// 32 MiB (snappy-compressed ones too, as Thanos' `--grpc-compression=snappy` sends them),
/// answers up to [`MAX_MESSAGE_BYTES`]. TLS, when wanted, is done by the connection stream it
/// is served on (`strata_runtime::tls::incoming`). Every call is counted in `metrics`
/// (`grpc_server_*`).
pub fn store_api_server<S>(
    service: S,
    metrics: std::sync::Arc<crate::grpc_metrics::GrpcMetrics>,
) -> StoreApiRouter
where
    S: crate::store_server::Store + crate::info::info_server::Info + Clone,
{
    tonic::transport::Server::builder()
        .layer(crate::grpc_metrics::GrpcMetricsLayer(metrics))
        .layer(crate::snappy::SnappyRequests)
        .add_service(
            crate::store_server::StoreServer::new(service.clone())
                .max_decoding_message_size(32 << 20)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            crate::info::info_server::InfoServer::new(service)
                .max_decoding_message_size(1 << 20)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
}

/// Puts a store's series in the order of their labels as sent (external labels attached,
/// replica labels stripped) while they stream; `T` is what travels with a series (chunks,
/// or chunk references still to fetch).
///
/// A source (Prometheus' remote read, a block's index) gives series sorted by their own
/// labels, and the external labels are attached afterwards. Inserting the same labels into
/// every label set keeps the sets' order except where one set is a prefix of another:
/// `{a="1"}` before `{a="1", b="2"}` becomes `{a="1", c="x"}` after `{a="1", b="2", c="x"}`.
/// The sets that extend a set arrive right after it, so series are held in runs, a series
/// and those that extend it, and a run is sorted and sent when a series arrives that does
/// not extend the run's first. Both assumptions are checked; a stream that breaks them ends
/// with an error rather than series out of order.
///
/// A series' own labels (its key) are its labels as sent without the external label names,
/// so only the labels as sent are kept, and each label set has one owner: the last series
/// of a sent run is held back until the next run is known to sort after it, so that labels
/// can be moved into the answer rather than copied.
pub struct Reorder<T> {
    ext: Labels,
    strip: Vec<String>,
    /// The run: labels as sent, and the payload; the last is the latest series pushed.
    run: Vec<(Labels, T)>,
    /// The last series of the run flushed before, not yet given out.
    held: Option<(Labels, T)>,
}

impl<T> Reorder<T> {
    /// A reorder attaching `ext` and stripping `strip`.
    pub fn new(ext: Labels, strip: Vec<String>) -> Self {
        Reorder {
            ext,
            strip,
            run: Vec::new(),
            held: None,
        }
    }

    /// Takes the source's next series; returns the series now ready to send, in order.
    pub fn push(&mut self, labels: Labels, payload: T) -> Result<Vec<(Labels, T)>, String> {
        let sent = with_external_labels(labels, &self.ext, &self.strip);
        if let Some((last, _)) = self.run.last()
            && key_cmp(&sent, last, &self.ext) == std::cmp::Ordering::Less
        {
            return Err(format!(
                "series out of order at the source: {} after {}",
                Key(&sent, &self.ext),
                Key(last, &self.ext)
            ));
        }
        let extends_run = self
            .run
            .first()
            .is_some_and(|(head, _)| key_is_prefix(head, &sent, &self.ext));
        let ready = if extends_run {
            Vec::new()
        } else {
            self.flush()?
        };
        self.run.push((sent, payload));
        Ok(ready)
    }

    /// The end of the source: the last run.
    pub fn finish(&mut self) -> Result<Vec<(Labels, T)>, String> {
        let mut out = self.flush()?;
        out.extend(self.held.take());
        Ok(out)
    }

    /// Sorts the run and gives out what may go: the series held from the run before and
    /// all of this run but its last, which is held in turn.
    fn flush(&mut self) -> Result<Vec<(Labels, T)>, String> {
        let mut run = std::mem::take(&mut self.run);
        if run.len() > 1 {
            run.sort_by(|a, b| a.0.cmp(&b.0));
        }
        if let (Some((last, _)), Some((first, _))) = (self.held.as_ref(), run.first())
            && first < last
        {
            return Err(format!(
                "series out of order after external labels: {first} after {last}"
            ));
        }
        let Some(last) = run.pop() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(run.len() + 1);
        out.extend(self.held.replace(last));
        out.extend(run);
        Ok(out)
    }
}

impl<T> std::fmt::Debug for Reorder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reorder")
            .field("run", &self.run.len())
            .finish()
    }
}

/// A series' own labels: its labels as sent without the external label names.
fn key<'a>(labels: &'a Labels, ext: &'a Labels) -> impl Iterator<Item = &'a Label> + 'a {
    labels.iter().filter(move |l| ext.get(&l.name).is_none())
}

/// Orders two series by their own labels as [`Labels`] are ordered.
fn key_cmp(a: &Labels, b: &Labels, ext: &Labels) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut x, mut y) = (key(a, ext), key(b, ext));
    loop {
        match (x.next(), y.next()) {
            (Some(p), Some(q)) => {
                let by = p.name.cmp(&q.name).then_with(|| p.value.cmp(&q.value));
                if by != Ordering::Equal {
                    return by;
                }
            }
            (Some(_), None) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (None, None) => return Ordering::Equal,
        }
    }
}

/// Whether `head`'s own labels are the first own labels of `labels`.
fn key_is_prefix(head: &Labels, labels: &Labels, ext: &Labels) -> bool {
    let mut y = key(labels, ext);
    key(head, ext).all(|p| y.next() == Some(p))
}

/// Displays a series' own labels.
struct Key<'a>(&'a Labels, &'a Labels);

impl std::fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let own: Labels = Labels::from_sorted(key(self.0, self.1).cloned().collect());
        own.fmt(f)
    }
}

#[cfg(test)]
mod reorder_tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn run_through(order: &mut Reorder<()>, input: &[Labels]) -> Vec<Labels> {
        let mut out = Vec::new();
        for l in input {
            out.extend(order.push(l.clone(), ()).unwrap().into_iter().map(|s| s.0));
        }
        out.extend(order.finish().unwrap().into_iter().map(|s| s.0));
        out
    }

    #[test]
    fn external_labels_merge_as_the_builder_does() {
        let reference = |series: &Labels, ext: &Labels, strip: &[String]| {
            let mut b = series.to_builder();
            for l in ext.iter() {
                if strip.contains(&l.name) {
                    b.delete(&l.name);
                } else {
                    b.set(l.name.clone(), l.value.clone());
                }
            }
            b.build()
        };
        let sets = [
            Labels::from_pairs([("__name__", "up"), ("job", "a")]),
            Labels::from_pairs([("a", "1"), ("cluster", "own"), ("z", "9")]),
            Labels::empty(),
            Labels::from_pairs([("zz", "last")]),
        ];
        let exts = [
            Labels::from_pairs([("cluster", "eu")]),
            Labels::from_pairs([("a", "x"), ("replica", "r1"), ("zzz", "y")]),
            Labels::empty(),
        ];
        let strips: [Vec<String>; 2] = [Vec::new(), vec!["replica".to_owned(), "a".to_owned()]];
        for series in &sets {
            for ext in &exts {
                for strip in &strips {
                    assert_eq!(
                        with_external_labels(series.clone(), ext, strip),
                        reference(series, ext, strip),
                        "{series} {ext} {strip:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_prefix_set_moves_after_its_extensions_when_external_labels_sort_between() {
        let ext = labels(&[("c", "x")]);
        let input = [
            labels(&[("a", "1"), ("c", "x")]),
            labels(&[("a", "1"), ("b", "2"), ("c", "x")]),
            labels(&[("a", "2"), ("c", "x")]),
        ];
        let out = run_through(&mut Reorder::new(ext, Vec::new()), &input);
        assert_eq!(
            out,
            [
                labels(&[("a", "1"), ("b", "2"), ("c", "x")]),
                labels(&[("a", "1"), ("c", "x")]),
                labels(&[("a", "2"), ("c", "x")]),
            ]
        );
    }

    /// Label sets sorted as Prometheus sorts them (without external labels), then external
    /// labels attached and some stripped: the streamed order equals a sort of everything.
    #[test]
    fn streamed_order_equals_a_full_sort() {
        let mut seed = 7u64;
        let mut rand = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let names = ["a", "b", "d", "f", "h"];
        let ext_names = ["c", "e", "g", "z", "_"];
        for _ in 0..300 {
            let mut internal: Vec<Labels> = (0..rand(40))
                .map(|_| {
                    let mut pairs: Vec<(String, String)> = Vec::new();
                    for n in names {
                        if rand(2) == 0 {
                            pairs.push((n.to_owned(), rand(3).to_string()));
                        }
                    }
                    Labels::from_pairs(pairs)
                })
                .collect();
            internal.sort();
            internal.dedup();
            let ext_pairs: Vec<(String, String)> = ext_names
                .iter()
                .filter(|_| rand(2) == 0)
                .map(|n| ((*n).to_owned(), "x".to_owned()))
                .collect();
            let ext = Labels::from_pairs(ext_pairs);
            let strip: Vec<String> = ext
                .iter()
                .filter(|_| rand(3) == 0)
                .map(|l| l.name.clone())
                .collect();
            // What Prometheus sends: its external labels merged in, internal order kept.
            let input: Vec<Labels> = internal
                .iter()
                .map(|l| with_external_labels(l.clone(), &ext, &[]))
                .collect();
            let out = run_through(&mut Reorder::new(ext.clone(), strip.clone()), &input);
            let mut expected: Vec<Labels> = internal
                .iter()
                .map(|l| with_external_labels(l.clone(), &ext, &strip))
                .collect();
            expected.sort();
            assert_eq!(out, expected, "ext {ext} strip {strip:?}");
        }
    }

    #[test]
    fn series_out_of_order_from_prometheus_are_an_error() {
        let mut order = Reorder::new(Labels::default(), Vec::new());
        assert!(order.push(labels(&[("a", "2")]), ()).is_ok());
        assert!(order.push(labels(&[("a", "1")]), ()).is_err());
    }
}

#[cfg(test)]
mod producer_tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// A producer that panics part-way ends its stream with an error, not a short answer.
    #[tokio::test]
    async fn a_panicking_producer_ends_the_stream_with_an_error() {
        let mut rx = spawn_producer("test Series".to_owned(), 4, |tx| async move {
            tx.send(Ok(1u32)).await.unwrap();
            panic!("producer fails");
        });
        assert_eq!(rx.recv().await.unwrap().unwrap(), 1);
        let status = rx.recv().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "test Series: its task failed");
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_finishing_producer_just_ends() {
        let mut rx = spawn_producer("test Series".to_owned(), 4, |tx| async move {
            tx.send(Ok(1u32)).await.unwrap();
        });
        assert_eq!(rx.recv().await.unwrap().unwrap(), 1);
        assert!(rx.recv().await.is_none());
    }
}

#[cfg(test)]
mod batcher_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::generated::thanos::{Chunk, chunk::Encoding};

    fn series(chunk_bytes: usize) -> Series {
        Series {
            labels: Vec::new(),
            chunks: vec![AggrChunk {
                min_time: 0,
                max_time: 1,
                raw: Some(Chunk {
                    r#type: Encoding::Xor as i32,
                    data: bytes::Bytes::from(vec![0u8; chunk_bytes]),
                    hash: 0,
                }),
                ..AggrChunk::default()
            }],
        }
    }

    /// A batch closes at the requested number of series, or earlier once its chunks reach
    /// `MAX_BATCH_BYTES`; nothing is lost between batches.
    #[test]
    fn batches_close_at_the_count_or_the_byte_bound() {
        let mut small = SeriesBatcher::new(3);
        assert!(small.push(series(10)).is_none());
        assert!(small.push(series(10)).is_none());
        assert_eq!(small.push(series(10)).unwrap().len(), 3);
        assert!(small.push(series(10)).is_none());
        assert_eq!(small.finish().unwrap().len(), 1);

        let mut big = SeriesBatcher::new(64);
        let per = MAX_BATCH_BYTES / 4;
        let mut sizes = Vec::new();
        for _ in 0..10 {
            if let Some(batch) = big.push(series(per)) {
                sizes.push(batch.len());
            }
        }
        sizes.extend(big.finish().map(|b| b.len()));
        assert_eq!(sizes, vec![4, 4, 2]);
        assert!(SeriesBatcher::new(64).finish().is_none());
    }
}
