//! gRPC `snappy` compression as Thanos registers it (`pkg/extgrpc/snappy`: the snappy
//! *framed* stream format): Thanos components started with `--grpc-compression=snappy`
//! send their requests compressed with it. tonic knows gzip, deflate and zstd only, so this
//! layer decompresses such requests before tonic sees them: the whole (small, bounded)
//! request body is read, each compressed gRPC message is decoded and re-framed
//! uncompressed, and `grpc-encoding` is removed. Answers go out uncompressed, which every
//! gRPC client accepts.
//!
//! [`decode_messages`] is the sans-IO part (and the fuzz target's entry).

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use tonic::body::Body;

/// Largest request accepted, compressed or not (the Store API's request limit).
pub const MAX_REQUEST_BYTES: usize = 32 << 20;

/// Why a snappy request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnappyError {
    /// A gRPC message header or body is cut short.
    #[error("truncated gRPC message at byte {0}")]
    Truncated(usize),
    /// A message is not valid snappy framed data.
    #[error("invalid snappy data in the message at byte {offset}: {reason}")]
    Invalid {
        /// Where the message starts in the body.
        offset: usize,
        /// What snap said.
        reason: String,
    },
    /// The decoded request would exceed [`MAX_REQUEST_BYTES`].
    #[error("decompressed request exceeds {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
}

/// Decodes the length-prefixed gRPC messages of a request body whose compressed messages
/// (flag 1) are snappy framed, into the same messages uncompressed (flag 0).
pub fn decode_messages(body: &[u8]) -> Result<Bytes, SnappyError> {
    let mut out = BytesMut::with_capacity(body.len());
    let mut pos = 0usize;
    while pos < body.len() {
        let header = body.get(pos..pos + 5).ok_or(SnappyError::Truncated(pos))?;
        let (flag, len) = match header {
            [flag, a, b, c, d] => (*flag, u32::from_be_bytes([*a, *b, *c, *d]) as usize),
            _ => return Err(SnappyError::Truncated(pos)),
        };
        let start = pos + 5;
        let payload = start
            .checked_add(len)
            .and_then(|end| body.get(start..end))
            .ok_or(SnappyError::Truncated(pos))?;
        let room = MAX_REQUEST_BYTES.saturating_sub(out.len() + 5);
        let message: std::borrow::Cow<'_, [u8]> = if flag == 0 {
            payload.into()
        } else {
            let mut decoded = Vec::new();
            snap::read::FrameDecoder::new(payload)
                .take(room as u64 + 1)
                .read_to_end(&mut decoded)
                .map_err(|e| SnappyError::Invalid {
                    offset: pos,
                    reason: e.to_string(),
                })?;
            decoded.into()
        };
        if message.len() > room {
            return Err(SnappyError::TooLarge);
        }
        out.put_u8(0);
        out.put_u32(message.len() as u32);
        out.put_slice(&message);
        pos = start + len;
    }
    Ok(out.freeze())
}

/// The layer: add it to a tonic server with `Server::builder().layer(SnappyRequests)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnappyRequests;

impl<S> tower_layer::Layer<S> for SnappyRequests {
    type Service = SnappyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SnappyService { inner }
    }
}

/// See [`SnappyRequests`].
#[derive(Debug, Clone)]
pub struct SnappyService<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for SnappyService<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let snappy = request
            .headers()
            .get("grpc-encoding")
            .is_some_and(|v| v.as_bytes() == b"snappy");
        if !snappy {
            return Box::pin(self.inner.call(request));
        }
        // The service that was polled ready handles this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let limited = http_body_util::Limited::new(body, MAX_REQUEST_BYTES);
            let collected = match limited.collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    return Ok(tonic::Status::resource_exhausted(format!(
                        "snappy request body: {e}"
                    ))
                    .into_http());
                }
            };
            let decoded = match decode_messages(&collected) {
                Ok(d) => d,
                Err(e) => return Ok(tonic::Status::invalid_argument(e.to_string()).into_http()),
            };
            parts.headers.remove("grpc-encoding");
            let body = Body::new(http_body_util::Full::new(decoded));
            inner.call(http::Request::from_parts(parts, body)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn compress(data: &[u8]) -> Vec<u8> {
        let mut w = snap::write::FrameEncoder::new(Vec::new());
        w.write_all(data).unwrap_or_default();
        w.into_inner().unwrap_or_default()
    }

    fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn compressed_messages_are_reframed_uncompressed() {
        let message =
            b"a protobuf message, repeated: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec();
        let mut body = frame(1, &compress(&message));
        body.extend(frame(0, b"plain"));
        let out = decode_messages(&body).unwrap_or_default();
        let mut want = frame(0, &message);
        want.extend(frame(0, b"plain"));
        assert_eq!(out.as_ref(), want.as_slice());
        assert_eq!(decode_messages(&[]).unwrap_or_default().len(), 0);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(decode_messages(&[1, 0, 0]), Err(SnappyError::Truncated(0)));
        assert_eq!(
            decode_messages(&frame(1, b"xx")[..6]),
            Err(SnappyError::Truncated(0))
        );
        assert!(matches!(
            decode_messages(&frame(1, b"not snappy at all")),
            Err(SnappyError::Invalid { .. })
        ));
        // A bomb: 64 MiB of zeros compresses to a few KiB.
        let bomb = compress(&vec![0u8; 64 << 20]);
        assert_eq!(
            decode_messages(&frame(1, &bomb)),
            Err(SnappyError::TooLarge)
        );
    }
}
