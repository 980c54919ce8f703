//! The sidecar's Store API: Prometheus' recent data through its streamed remote-read
//! endpoint, with the external labels attached to every series.

use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use futures::Stream;
use strata_storepb::convert::{chunk_hash, labels_to_proto, matchers_from_proto};
use strata_storepb::info::info_server::Info;
use strata_storepb::info::{InfoRequest, InfoResponse, StoreInfo};
use strata_storepb::serve::{matchers_without_external, stream_series, with_external_labels};
use strata_storepb::store_server::Store;
use strata_storepb::{
    AggrChunk, Chunk, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, SeriesRequest, SeriesResponse, ZLabelSet, chunk, prompb,
};
use strata_types::Labels;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::prometheus::PromClient;

/// What the sidecar knows about its Prometheus, refreshed in the background.
#[derive(Debug, Default)]
pub struct PromState {
    ext_labels: RwLock<Option<Labels>>,
    min_time: AtomicI64,
}

impl PromState {
    /// Records the external labels.
    pub fn set_ext_labels(&self, labels: Labels) {
        if let Ok(mut l) = self.ext_labels.write() {
            *l = Some(labels);
        }
    }

    /// The external labels, once loaded.
    pub fn ext_labels(&self) -> Option<Labels> {
        self.ext_labels.read().ok().and_then(|l| l.clone())
    }

    /// Records the lowest timestamp served.
    pub fn set_min_time(&self, t: i64) {
        self.min_time.store(t, Ordering::Relaxed);
    }

    /// The lowest timestamp served.
    pub fn min_time(&self) -> i64 {
        self.min_time.load(Ordering::Relaxed)
    }
}

/// The Store and Info services of a sidecar.
#[derive(Debug, Clone)]
pub struct SidecarStore {
    prom: PromClient,
    state: Arc<PromState>,
}

impl SidecarStore {
    /// Services over the Prometheus `prom`.
    pub fn new(prom: PromClient, state: Arc<PromState>) -> SidecarStore {
        SidecarStore { prom, state }
    }

    fn ext_labels(&self) -> Result<Labels, Status> {
        self.state
            .ext_labels()
            .ok_or_else(|| Status::unavailable("sidecar not ready: external labels not loaded yet"))
    }
}

fn convert_chunk(c: prompb::Chunk) -> Option<AggrChunk> {
    let kind = match prompb::chunk::Encoding::try_from(c.r#type).ok()? {
        prompb::chunk::Encoding::Xor => chunk::Encoding::Xor,
        prompb::chunk::Encoding::Histogram => chunk::Encoding::Histogram,
        prompb::chunk::Encoding::FloatHistogram => chunk::Encoding::FloatHistogram,
        prompb::chunk::Encoding::Unknown => return None,
    };
    Some(AggrChunk {
        min_time: c.min_time_ms,
        max_time: c.max_time_ms,
        raw: Some(Chunk {
            r#type: kind as i32,
            hash: chunk_hash(&c.data),
            data: c.data,
        }),
        ..Default::default()
    })
}

type SeriesStream = Pin<Box<dyn Stream<Item = Result<SeriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for SidecarStore {
    type SeriesStream = SeriesStream;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let req = request.into_inner();
        let ext = self.ext_labels()?;
        let matchers = matchers_from_proto(&req.matchers)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (tx, rx) = mpsc::channel(16);
        let Some(rest) = matchers_without_external(&ext, &matchers) else {
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        };
        if rest.is_empty() {
            return Err(Status::invalid_argument(
                "no matchers specified (excluding external labels)",
            ));
        }
        let mint = req.min_time.max(self.state.min_time());
        let maxt = req.max_time;
        let mut read = self
            .prom
            .remote_read_stream(mint, maxt, &rest)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut order = Reorder::new(ext, req.without_replica_labels.clone());
        let skip_chunks = req.skip_chunks;
        let batch_size = usize::try_from(req.response_batch_size.max(1)).unwrap_or(1);
        // Series go out as Prometheus' frames come in: memory holds a frame, a run of
        // series that may need reordering (see `Reorder`) and the channel's frames.
        tokio::spawn(async move {
            loop {
                let next = match read.next().await {
                    Ok(next) => next,
                    Err(e) => {
                        let _ = tx.send(Err(Status::unavailable(e.to_string()))).await;
                        return;
                    }
                };
                let end = next.is_none();
                let ready = match next {
                    Some(s) => {
                        let labels =
                            Labels::from_pairs(s.labels.into_iter().map(|l| (l.name, l.value)));
                        let chunks = if skip_chunks {
                            Vec::new()
                        } else {
                            s.chunks.into_iter().filter_map(convert_chunk).collect()
                        };
                        order.push(labels, chunks)
                    }
                    None => order.finish(),
                };
                let ready = match ready {
                    Ok(ready) => ready,
                    Err(message) => {
                        let _ = tx.send(Err(Status::internal(message))).await;
                        return;
                    }
                };
                if !ready.is_empty() && !stream_series(&tx, ready, batch_size).await {
                    return;
                }
                if end {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let req = request.into_inner();
        let ext = self.ext_labels()?;
        let matchers = matchers_from_proto(&req.matchers)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let Some(rest) = matchers_without_external(&ext, &matchers) else {
            return Ok(Response::new(LabelNamesResponse::default()));
        };
        let (start, end) = range(req.start, req.end);
        let mut names = self
            .prom
            .label_names(start, end, &rest)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        names.extend(ext.iter().map(|l| l.name.clone()));
        names.retain(|n| !req.without_replica_labels.contains(n));
        names.sort();
        names.dedup();
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
        let ext = self.ext_labels()?;
        let matchers = matchers_from_proto(&req.matchers)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let Some(rest) = matchers_without_external(&ext, &matchers) else {
            return Ok(Response::new(LabelValuesResponse::default()));
        };
        if let Some(v) = ext.get(&req.label) {
            return Ok(Response::new(LabelValuesResponse {
                values: vec![v.to_owned()],
                warnings: Vec::new(),
                hints: None,
            }));
        }
        let (start, end) = range(req.start, req.end);
        let values = self
            .prom
            .label_values(&req.label, start, end, &rest)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(LabelValuesResponse {
            values,
            warnings: Vec::new(),
            hints: None,
        }))
    }
}

fn range(start: i64, end: i64) -> (i64, i64) {
    if start == 0 && end == 0 {
        (i64::MIN, i64::MAX)
    } else {
        (start, end)
    }
}

#[tonic::async_trait]
impl Info for SidecarStore {
    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let ext = self.ext_labels()?;
        Ok(Response::new(InfoResponse {
            label_sets: vec![ZLabelSet {
                labels: labels_to_proto(&ext),
            }],
            component_type: strata_storepb::COMPONENT_SIDECAR.to_owned(),
            store: Some(StoreInfo {
                min_time: self.state.min_time(),
                max_time: i64::MAX,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos: Vec::new(),
                supports_projections: false,
            }),
            ..Default::default()
        }))
    }
}

/// Puts a sidecar's series in the order of their labels as sent (external labels attached,
/// replica labels stripped) while they stream.
///
/// Prometheus sends series sorted by their own labels and attaches its external labels
/// afterwards. Inserting the same labels into every label set keeps the sets' order except
/// where one set is a prefix of another: `{a="1"}` before `{a="1", b="2"}` becomes
/// `{a="1", c="x"}` after `{a="1", b="2", c="x"}`. The sets that extend a set arrive right
/// after it, so series are held in runs, a series and those that extend it, and a run is
/// sorted and sent when a series arrives that does not extend the run's first. Both
/// assumptions are checked; a stream that breaks them ends with an error rather than
/// series out of order.
struct Reorder {
    ext: Labels,
    strip: Vec<String>,
    /// The run: (labels without external label names, labels as sent, chunks).
    run: Vec<(Labels, Labels, Vec<AggrChunk>)>,
    last_key: Option<Labels>,
    last_sent: Option<Labels>,
}

impl Reorder {
    fn new(ext: Labels, strip: Vec<String>) -> Self {
        Reorder {
            ext,
            strip,
            run: Vec::new(),
            last_key: None,
            last_sent: None,
        }
    }

    /// Takes Prometheus' next series; returns the series now ready to send, in order.
    fn push(
        &mut self,
        labels: Labels,
        chunks: Vec<AggrChunk>,
    ) -> Result<Vec<(Labels, Vec<AggrChunk>)>, String> {
        let mut key = labels.to_builder();
        for l in self.ext.iter() {
            key.delete(&l.name);
        }
        let key = key.build();
        if self.last_key.as_ref().is_some_and(|last| key < *last) {
            return Err(format!(
                "prometheus sent series out of order: {key} after {}",
                self.last_key
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ));
        }
        self.last_key = Some(key.clone());
        let sent = with_external_labels(&labels, &self.ext, &self.strip);
        let extends_run = self
            .run
            .first()
            .is_some_and(|(head, _, _)| is_prefix(head, &key));
        let ready = if extends_run {
            Vec::new()
        } else {
            self.flush()?
        };
        self.run.push((key, sent, chunks));
        Ok(ready)
    }

    /// The end of Prometheus' answer: the last run.
    fn finish(&mut self) -> Result<Vec<(Labels, Vec<AggrChunk>)>, String> {
        self.flush()
    }

    fn flush(&mut self) -> Result<Vec<(Labels, Vec<AggrChunk>)>, String> {
        let mut run: Vec<(Labels, Vec<AggrChunk>)> = std::mem::take(&mut self.run)
            .into_iter()
            .map(|(_, sent, chunks)| (sent, chunks))
            .collect();
        if run.len() > 1 {
            run.sort_by(|a, b| a.0.cmp(&b.0));
        }
        if let (Some(last), Some((first, _))) = (self.last_sent.as_ref(), run.first())
            && first < last
        {
            return Err(format!(
                "series out of order after external labels: {first} after {last}"
            ));
        }
        if let Some((last, _)) = run.last() {
            self.last_sent = Some(last.clone());
        }
        Ok(run)
    }
}

/// Whether `head`'s labels are the first labels of `labels`.
fn is_prefix(head: &Labels, labels: &Labels) -> bool {
    head.len() <= labels.len() && head.iter().zip(labels.iter()).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn run_through(order: &mut Reorder, input: &[Labels]) -> Vec<Labels> {
        let mut out = Vec::new();
        for l in input {
            out.extend(
                order
                    .push(l.clone(), Vec::new())
                    .unwrap()
                    .into_iter()
                    .map(|s| s.0),
            );
        }
        out.extend(order.finish().unwrap().into_iter().map(|s| s.0));
        out
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
                .map(|l| with_external_labels(l, &ext, &[]))
                .collect();
            let out = run_through(&mut Reorder::new(ext.clone(), strip.clone()), &input);
            let mut expected: Vec<Labels> = internal
                .iter()
                .map(|l| with_external_labels(l, &ext, &strip))
                .collect();
            expected.sort();
            assert_eq!(out, expected, "ext {ext} strip {strip:?}");
        }
    }

    #[test]
    fn series_out_of_order_from_prometheus_are_an_error() {
        let mut order = Reorder::new(Labels::default(), Vec::new());
        assert!(order.push(labels(&[("a", "2")]), Vec::new()).is_ok());
        assert!(order.push(labels(&[("a", "1")]), Vec::new()).is_err());
    }
}
