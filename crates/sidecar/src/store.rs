//! The sidecar's Store API: Prometheus' recent data through its streamed remote-read
//! endpoint, with the external labels attached to every series.

use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use futures::Stream;
use strata_storepb::convert::{chunk_hash, labels_to_proto, matchers_from_proto};
use strata_storepb::info::info_server::Info;
use strata_storepb::info::{InfoRequest, InfoResponse, StoreInfo};
use strata_storepb::serve::{Reorder, matchers_without_external, spawn_producer, stream_series};
use strata_storepb::store_server::Store;
use strata_storepb::{
    AggrChunk, Chunk, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, SeriesRequest, SeriesResponse, ZLabelSet, chunk, prompb,
};
use strata_types::Labels;
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
    pub(crate) prom: PromClient,
    state: Arc<PromState>,
}

impl SidecarStore {
    /// Services over the Prometheus `prom`.
    pub fn new(prom: PromClient, state: Arc<PromState>) -> SidecarStore {
        SidecarStore { prom, state }
    }

    pub(crate) fn ext_labels(&self) -> Result<Labels, Status> {
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
        let Some(rest) = matchers_without_external(&ext, &matchers) else {
            return Ok(Response::new(Box::pin(futures::stream::empty())));
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
        let rx = spawn_producer("sidecar Series".to_owned(), 16, |tx| async move {
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
        if req.label.is_empty() {
            return Err(Status::invalid_argument(
                "label name parameter cannot be empty",
            ));
        }
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
            metric_metadata: Some(strata_storepb::info::MetricMetadataInfo {}),
            rules: Some(strata_storepb::info::RulesInfo {}),
            targets: Some(strata_storepb::info::TargetsInfo {}),
            exemplars: Some(strata_storepb::info::ExemplarsInfo {
                min_time: self.state.min_time(),
                max_time: i64::MAX,
            }),
            ..Default::default()
        }))
    }
}
