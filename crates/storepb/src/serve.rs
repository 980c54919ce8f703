//! Pieces every Store API server shares: external labels on served series, and sending
//! series as `SeriesResponse` frames.

use strata_types::{Labels, Matcher};
use tokio::sync::mpsc;
use tonic::Status;

use crate::convert::labels_to_proto;
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
pub fn with_external_labels(series: &Labels, ext: &Labels, strip: &[String]) -> Labels {
    if ext.is_empty() {
        return series.clone();
    }
    let mut b = series.to_builder();
    for l in ext.iter() {
        if strip.contains(&l.name) {
            b.delete(&l.name);
        } else {
            b.set(l.name.clone(), l.value.clone());
        }
    }
    b.build()
}

/// A stream of Series answers.
pub type SeriesSender = mpsc::Sender<Result<SeriesResponse, Status>>;

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

/// Sends sorted series in frames of `batch_size`. `false` when the receiver is gone.
pub async fn stream_series(
    tx: &SeriesSender,
    series: Vec<(Labels, Vec<AggrChunk>)>,
    batch_size: usize,
) -> bool {
    let mut batch: Vec<Series> = Vec::new();
    for (labels, chunks) in series {
        batch.push(Series {
            labels: labels_to_proto(&labels),
            chunks,
        });
        if batch.len() >= batch_size
            && !send_series(tx, std::mem::take(&mut batch), batch_size).await
        {
            return false;
        }
    }
    batch.is_empty() || send_series(tx, batch, batch_size).await
}

/// The server [`store_api_server`] builds.
pub type StoreApiRouter = tonic::transport::server::Router<
    tower_layer::Stack<crate::snappy::SnappyRequests, tower_layer::Identity>,
>;

/// Largest gRPC message a Store API client or server reads or writes (a Series frame of a
/// batch of series with their chunks stays far below it).
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// A gRPC server for `service` as `thanos.Store` and `thanos.info.Info`; requests up to
/// 32 MiB (snappy-compressed ones too, as Thanos' `--grpc-compression=snappy` sends them),
/// answers up to [`MAX_MESSAGE_BYTES`]. TLS, when wanted, is done by the connection stream it
/// is served on (`strata_runtime::tls::incoming`).
pub fn store_api_server<S>(service: S) -> StoreApiRouter
where
    S: crate::store_server::Store + crate::info::info_server::Info + Clone,
{
    tonic::transport::Server::builder()
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
