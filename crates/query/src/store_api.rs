//! The querier's own Store API, so queriers stack: a querier is an endpoint of another
//! (the observer/observee layout). Series are the merged, not deduplicated, series of the
//! endpoints below (the querier above deduplicates); Info advertises the union of their
//! external label sets and time ranges.

use std::pin::Pin;

use futures::Stream;
use strata_storepb::convert::{labels_to_proto, matchers_from_proto};
use strata_storepb::info::info_server::Info;
use strata_storepb::info::{InfoRequest, InfoResponse, StoreInfo};
use strata_storepb::serve::{spawn_producer, stream_series};
use strata_storepb::store_server::Store;
use strata_storepb::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse,
    PartialResponseStrategy, SeriesRequest, SeriesResponse, ZLabelSet, series_response,
};
use strata_types::Labels;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::endpoints::EndpointSet;
use crate::proxy::{self, FanOut};

/// The Store and Info services of a querier.
#[derive(Debug, Clone)]
pub struct ProxyStoreService {
    pub(crate) endpoints: EndpointSet,
    timeout: std::time::Duration,
}

impl ProxyStoreService {
    /// Services over `endpoints`, with a per-endpoint timeout.
    pub fn new(endpoints: EndpointSet, timeout: std::time::Duration) -> Self {
        ProxyStoreService { endpoints, timeout }
    }

    /// Whether a healthy endpoint's Info says `has`.
    fn any_endpoint(&self, has: fn(&crate::endpoints::EndpointInfo) -> bool) -> bool {
        self.endpoints
            .all()
            .iter()
            .any(|e| e.is_healthy() && e.info().is_some_and(|i| has(&i)))
    }

    pub(crate) fn fan_out(&self, strategy: i32, disabled: bool) -> FanOut {
        FanOut {
            partial_response: !disabled && strategy != PartialResponseStrategy::Abort as i32,
            timeout: self.timeout,
            store_matchers: std::sync::Arc::default(),
        }
    }
}

type SeriesStream = Pin<Box<dyn Stream<Item = Result<SeriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Store for ProxyStoreService {
    type SeriesStream = SeriesStream;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let req = request.into_inner();
        let matchers = matchers_from_proto(&req.matchers)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let fan_out = self.fan_out(req.partial_response_strategy, req.partial_response_disabled);
        let batch_size = usize::try_from(req.response_batch_size.max(1)).unwrap_or(1);
        let strip = req.without_replica_labels.clone();
        // The endpoints below strip replica labels themselves (and sort by what remains);
        // series stream through as the merge yields them.
        let mut merged = proxy::series_stream(
            &self.endpoints,
            &matchers,
            req,
            &fan_out,
            proxy::Budget::default(),
        );
        let rx = spawn_producer("proxy Series".to_owned(), 16, |tx| async move {
            let mut batch = Vec::with_capacity(batch_size);
            while let Some(item) = merged.next().await {
                let (mut labels, chunks) = match item {
                    Ok(item) => item,
                    Err(e) => {
                        let status =
                            Status::new(tonic::Code::from_i32(e.class.grpc_code()), e.message);
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if !strip.is_empty() {
                    let mut b = labels.to_builder();
                    for name in &strip {
                        b.delete(name);
                    }
                    labels = b.build();
                }
                batch.push((labels, chunks));
                if batch.len() >= batch_size {
                    stream_series(&tx, std::mem::take(&mut batch), batch_size).await;
                    if tx.is_closed() {
                        return;
                    }
                }
            }
            stream_series(&tx, batch, batch_size).await;
            for warning in merged.take_warnings() {
                let frame = SeriesResponse {
                    result: Some(series_response::Result::Warning(warning)),
                };
                if tx.send(Ok(frame)).await.is_err() {
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
        let matchers = matchers_from_proto(&req.matchers)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let fan_out = self.fan_out(req.partial_response_strategy, req.partial_response_disabled);
        let (mut names, warnings) =
            proxy::label_names(&self.endpoints, req.start, req.end, &matchers, &fan_out)
                .await
                .map_err(|e| Status::aborted(e.to_string()))?;
        names.retain(|n| !req.without_replica_labels.contains(n));
        Ok(Response::new(LabelNamesResponse {
            names,
            warnings,
            hints: None,
        }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let req = request.into_inner();
        let matchers = matchers_from_proto(&req.matchers)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let fan_out = self.fan_out(req.partial_response_strategy, req.partial_response_disabled);
        let (values, warnings) = proxy::label_values(
            &self.endpoints,
            &req.label,
            req.start,
            req.end,
            &matchers,
            &fan_out,
        )
        .await
        .map_err(|e| Status::aborted(e.to_string()))?;
        Ok(Response::new(LabelValuesResponse {
            values,
            warnings,
            hints: None,
        }))
    }
}

#[tonic::async_trait]
impl Info for ProxyStoreService {
    async fn info(&self, _request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let mut sets: Vec<Labels> = Vec::new();
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        for e in &self.endpoints.all() {
            if !e.is_healthy() {
                continue;
            }
            let Some(info) = e.info() else { continue };
            min_time = min_time.min(info.min_time);
            max_time = max_time.max(info.max_time);
            for set in info.label_sets {
                if !sets.contains(&set) {
                    sets.push(set);
                }
            }
        }
        sets.sort();
        Ok(Response::new(InfoResponse {
            label_sets: sets
                .iter()
                .map(|l| ZLabelSet {
                    labels: labels_to_proto(l),
                })
                .collect(),
            component_type: strata_storepb::COMPONENT_QUERY.to_owned(),
            // The APIs some endpoint behind serves, passed on (stacked queriers).
            metric_metadata: self
                .any_endpoint(|i| i.metadata)
                .then_some(strata_storepb::info::MetricMetadataInfo {}),
            targets: self
                .any_endpoint(|i| i.targets)
                .then_some(strata_storepb::info::TargetsInfo {}),
            rules: self
                .any_endpoint(|i| i.rules)
                .then_some(strata_storepb::info::RulesInfo {}),
            exemplars: self.any_endpoint(|i| i.exemplars).then_some(
                strata_storepb::info::ExemplarsInfo {
                    min_time: i64::MIN,
                    max_time: i64::MAX,
                },
            ),
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
