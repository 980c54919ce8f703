//! The querier's own Metadata, Targets, Exemplars and Rules gRPC APIs, for a querier stacked on this one: the
//! answers of this querier's endpoints, merged (metadata) or passed on (targets), as Thanos'
//! querier proxies them.

use std::pin::Pin;

use futures::Stream;
use strata_storepb::exemplars_server::Exemplars;
use strata_storepb::metadata_server::Metadata;
use strata_storepb::targets_server::Targets;
use strata_storepb::{
    Meta, MetricMetadata, MetricMetadataEntry, MetricMetadataRequest, MetricMetadataResponse,
    TargetsRequest, TargetsResponse, metric_metadata_response, targets_response,
};
use tonic::{Request, Response, Status};

use crate::store_api::ProxyStoreService;

type Answer<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The endpoints' answers passed on as a stream: warnings first, then each answer, every
/// one wrapped as the API's response (`warning` and `answer` pick the oneof case).
fn passed_on<A, R, M>(
    warnings: Vec<String>,
    answers: Vec<A>,
    warning: fn(String) -> R,
    answer: fn(A) -> R,
    message: fn(R) -> M,
) -> Response<Answer<M>>
where
    M: Send + 'static,
{
    let frames: Vec<Result<M, Status>> = warnings
        .into_iter()
        .map(warning)
        .chain(answers.into_iter().map(answer))
        .map(|r| Ok(message(r)))
        .collect();
    Response::new(Box::pin(futures::stream::iter(frames)))
}

fn status(e: crate::proxy::ProxyError) -> Status {
    Status::unavailable(e.to_string())
}

#[tonic::async_trait]
impl Metadata for ProxyStoreService {
    type MetricMetadataStream = Answer<MetricMetadataResponse>;

    async fn metric_metadata(
        &self,
        request: Request<MetricMetadataRequest>,
    ) -> Result<Response<Self::MetricMetadataStream>, Status> {
        let req = request.into_inner();
        let fan_out = self.fan_out(req.partial_response_strategy, false);
        let (merged, warnings) =
            crate::metadata::metric_metadata(&self.endpoints, &req.metric, &fan_out)
                .await
                .map_err(status)?;
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        let metadata = merged
            .into_iter()
            .take(if req.limit < 0 { usize::MAX } else { limit })
            .map(|(name, metas)| {
                let metas = metas
                    .into_iter()
                    .map(|m| Meta {
                        r#type: m.kind,
                        help: m.help,
                        unit: m.unit,
                    })
                    .collect();
                (name, MetricMetadataEntry { metas })
            })
            .collect();
        let mut frames: Vec<Result<MetricMetadataResponse, Status>> = warnings
            .into_iter()
            .map(|w| {
                Ok(MetricMetadataResponse {
                    result: Some(metric_metadata_response::Result::Warning(w)),
                })
            })
            .collect();
        frames.push(Ok(MetricMetadataResponse {
            result: Some(metric_metadata_response::Result::Metadata(MetricMetadata {
                metadata,
            })),
        }));
        Ok(Response::new(Box::pin(futures::stream::iter(frames))))
    }
}

#[tonic::async_trait]
impl Targets for ProxyStoreService {
    type TargetsStream = Answer<TargetsResponse>;

    async fn targets(
        &self,
        request: Request<TargetsRequest>,
    ) -> Result<Response<Self::TargetsStream>, Status> {
        let req = request.into_inner();
        let fan_out = self.fan_out(req.partial_response_strategy, false);
        let (answers, warnings) =
            crate::metadata::targets_raw(&self.endpoints, req.state, &fan_out)
                .await
                .map_err(status)?;
        Ok(passed_on(
            warnings,
            answers,
            targets_response::Result::Warning,
            targets_response::Result::Targets,
            |r| TargetsResponse { result: Some(r) },
        ))
    }
}

#[tonic::async_trait]
impl Exemplars for ProxyStoreService {
    type ExemplarsStream = Answer<strata_storepb::ExemplarsResponse>;

    async fn exemplars(
        &self,
        request: Request<strata_storepb::ExemplarsRequest>,
    ) -> Result<Response<Self::ExemplarsStream>, Status> {
        let req = request.into_inner();
        let fan_out = self.fan_out(req.partial_response_strategy, false);
        let (answers, warnings) = crate::exemplars::exemplars_raw(&self.endpoints, &req, &fan_out)
            .await
            .map_err(status)?;
        Ok(passed_on(
            warnings,
            answers,
            strata_storepb::exemplars_response::Result::Warning,
            strata_storepb::exemplars_response::Result::Data,
            |r| strata_storepb::ExemplarsResponse { result: Some(r) },
        ))
    }
}

#[tonic::async_trait]
impl strata_storepb::rules_server::Rules for ProxyStoreService {
    type RulesStream = Answer<strata_storepb::RulesResponse>;

    async fn rules(
        &self,
        request: Request<strata_storepb::RulesRequest>,
    ) -> Result<Response<Self::RulesStream>, Status> {
        let req = request.into_inner();
        let fan_out = self.fan_out(req.partial_response_strategy, false);
        let (groups, warnings) = crate::rules::rules_raw(&self.endpoints, &req, &fan_out)
            .await
            .map_err(status)?;
        Ok(passed_on(
            warnings,
            groups,
            strata_storepb::rules_response::Result::Warning,
            strata_storepb::rules_response::Result::Group,
            |r| strata_storepb::RulesResponse { result: Some(r) },
        ))
    }
}
