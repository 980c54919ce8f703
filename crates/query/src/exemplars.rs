//! Thanos' Exemplars API across endpoints: every healthy endpoint advertising it is asked for
//! the exemplars of a query's series in a time range; a series reported by several endpoints
//! (Prometheus replicas, once their replica labels are removed) is shown once with each
//! distinct exemplar once, in time order.

use std::collections::BTreeMap;

use futures::StreamExt as _;
use strata_storepb::convert::labels_from_proto;
use strata_storepb::{ExemplarData, ExemplarsRequest, exemplars_response};
use strata_types::Labels;

use crate::endpoints::EndpointSet;
use crate::metadata::{MAX_FRAMES, fan_out};
use crate::proxy::{FanOut, ProxyError};

/// One exemplar.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// Its labels (trace_id, …).
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// Milliseconds.
    pub ts: i64,
}

/// The endpoints' answers as they sent them.
pub async fn exemplars_raw(
    endpoints: &EndpointSet,
    request: &ExemplarsRequest,
    fan_out_options: &FanOut,
) -> Result<(Vec<ExemplarData>, Vec<String>), ProxyError> {
    fan_out(
        endpoints,
        fan_out_options,
        |i| i.exemplars,
        |e| {
            let request = request.clone();
            async move {
                let mut stream = e.exemplars_client().exemplars(request).await?.into_inner();
                let mut out = Vec::new();
                let mut warnings = Vec::new();
                while let Some(frame) = stream.next().await {
                    if out.len() + warnings.len() >= MAX_FRAMES * 64 {
                        return Err(tonic::Status::resource_exhausted(
                            "too many exemplar frames",
                        ));
                    }
                    match frame?.result {
                        Some(exemplars_response::Result::Data(d)) => out.push(d),
                        Some(exemplars_response::Result::Warning(w)) => warnings.push(w),
                        None => {}
                    }
                }
                Ok((out, warnings))
            }
        },
    )
    .await
}

/// Exemplars of the series `query` selects in `[start, end]` (ms), by series (replica labels
/// removed), sorted.
pub async fn exemplars(
    endpoints: &EndpointSet,
    query: &str,
    start: i64,
    end: i64,
    replica_labels: &[String],
    fan_out_options: &FanOut,
) -> Result<(Vec<(Labels, Vec<Exemplar>)>, Vec<String>), ProxyError> {
    let request = ExemplarsRequest {
        query: query.to_owned(),
        start,
        end,
        partial_response_strategy: 0,
    };
    let (answers, warnings) = exemplars_raw(endpoints, &request, fan_out_options).await?;
    let mut merged: BTreeMap<Labels, Vec<Exemplar>> = BTreeMap::new();
    for data in answers {
        let series = data
            .series_labels
            .map(|s| labels_from_proto(&s.labels))
            .unwrap_or_default();
        let series = Labels::from_pairs(
            series
                .iter()
                .filter(|l| !replica_labels.contains(&l.name))
                .map(|l| (l.name.clone(), l.value.clone())),
        );
        let list = merged.entry(series).or_default();
        for e in data.exemplars {
            let exemplar = Exemplar {
                labels: e
                    .labels
                    .map(|s| labels_from_proto(&s.labels))
                    .unwrap_or_default(),
                value: e.value,
                ts: e.ts,
            };
            let seen = list.iter().any(|x| {
                x.ts == exemplar.ts
                    && x.value.to_bits() == exemplar.value.to_bits()
                    && x.labels == exemplar.labels
            });
            if !seen {
                list.push(exemplar);
            }
        }
    }
    let mut out: Vec<(Labels, Vec<Exemplar>)> = merged.into_iter().collect();
    for (_, list) in &mut out {
        list.sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.labels.cmp(&b.labels)));
    }
    Ok((out, warnings))
}
