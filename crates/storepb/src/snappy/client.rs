//! The client side: requests sent snappy-compressed, compressed responses decoded as they
//! stream in.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::HeaderValue;
use http_body_util::BodyExt;
use tonic::body::Body;

use super::{MAX_REQUEST_BYTES, MessageStream, RecodedBody, encode_messages};

/// How requests to an endpoint are compressed (`--grpc-compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Uncompressed.
    #[default]
    None,
    /// Snappy framed, as Thanos' `--grpc-compression=snappy`.
    Snappy,
}

impl Compression {
    /// Parses the flag's value (`none` or `snappy`).
    pub fn parse(value: &str) -> Result<Compression, String> {
        match value {
            "none" | "" => Ok(Compression::None),
            "snappy" => Ok(Compression::Snappy),
            other => Err(format!(
                "unknown gRPC compression {other:?} (none or snappy)"
            )),
        }
    }
}

/// A client channel that compresses requests as `compression` says and decodes answers
/// compressed with snappy (whatever was asked: grpc-go servers answer with the request's
/// compressor), each response message bounded by `limit` bytes.
#[derive(Debug, Clone)]
pub struct SnappyClient<S> {
    inner: S,
    compression: Compression,
    limit: usize,
}

impl<S> SnappyClient<S> {
    /// `inner` with requests compressed as `compression` says.
    pub fn new(inner: S, compression: Compression, limit: usize) -> SnappyClient<S> {
        SnappyClient {
            inner,
            compression,
            limit,
        }
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for SnappyClient<S>
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
        // The service that was polled ready handles this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let compression = self.compression;
        let limit = self.limit;
        Box::pin(async move {
            let request = match compression {
                Compression::None => request,
                Compression::Snappy => match compress_request(request).await {
                    Ok(r) => r,
                    Err(status) => return Ok(status.into_http()),
                },
            };
            let response = inner.call(request).await?;
            Ok(decode_response(response, limit))
        })
    }
}

/// The request with its (small, bounded) body read and every message compressed.
async fn compress_request(
    request: http::Request<Body>,
) -> Result<http::Request<Body>, tonic::Status> {
    let (mut parts, body) = request.into_parts();
    let collected = http_body_util::Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|e| tonic::Status::resource_exhausted(format!("request body: {e}")))?
        .to_bytes();
    let encoded =
        encode_messages(&collected).map_err(|e| tonic::Status::internal(e.to_string()))?;
    parts
        .headers
        .insert("grpc-encoding", HeaderValue::from_static("snappy"));
    parts
        .headers
        .insert("grpc-accept-encoding", HeaderValue::from_static("snappy"));
    Ok(http::Request::from_parts(
        parts,
        Body::new(http_body_util::Full::new(encoded)),
    ))
}

/// A response compressed with snappy gets a decoding body (and loses the header tonic
/// would refuse); any other passes through.
fn decode_response(response: http::Response<Body>, limit: usize) -> http::Response<Body> {
    let snappy = response
        .headers()
        .get("grpc-encoding")
        .is_some_and(|v| v.as_bytes() == b"snappy");
    if !snappy {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    parts.headers.remove("grpc-encoding");
    let body = RecodedBody::new(body, MessageStream::decoding(limit));
    http::Response::from_parts(parts, Body::new(body))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tower_service::Service;

    use super::*;
    use crate::snappy::decode_messages;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A grpc-go-like server: reads the request (decoding it when it says snappy) and
    /// answers its message twice, compressed with the request's compressor, then trailers.
    #[derive(Clone)]
    struct EchoTwice;

    impl tower_service::Service<http::Request<Body>> for EchoTwice {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<Self::Response, Self::Error>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            Box::pin(async move {
                let snappy = request.headers().get("grpc-encoding").cloned();
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let plain = match &snappy {
                    Some(_) => {
                        assert_eq!(body[0], 1, "the request message is compressed");
                        decode_messages(&body).unwrap()
                    }
                    None => body,
                };
                let answer = [plain.to_vec(), plain.to_vec()].concat();
                let answer = match &snappy {
                    Some(_) => encode_messages(&answer).unwrap(),
                    None => Bytes::from(answer),
                };
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                let frames = vec![
                    Ok::<_, Infallible>(http_body::Frame::data(answer.slice(..3))),
                    Ok(http_body::Frame::data(answer.slice(3..))),
                    Ok(http_body::Frame::trailers(trailers)),
                ];
                let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
                let mut response = http::Response::new(Body::new(body));
                if let Some(v) = snappy {
                    response.headers_mut().insert("grpc-encoding", v);
                }
                Ok(response)
            })
        }
    }

    async fn call(compression: Compression) -> (http::HeaderMap, Vec<u8>, Option<String>) {
        let mut client = SnappyClient::new(EchoTwice, compression, 1 << 20);
        let message: Vec<u8> = (0..3000u32).map(|i| (i % 13) as u8).collect();
        let request = http::Request::new(Body::new(http_body_util::Full::new(Bytes::from(frame(
            &message,
        )))));
        let response = client.call(request).await.unwrap();
        let headers = response.headers().clone();
        let collected = response.into_body().collect().await.unwrap();
        let status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let want = [frame(&message), frame(&message)].concat();
        let data = collected.to_bytes().to_vec();
        assert_eq!(data, want, "{compression:?}");
        (headers, data, status)
    }

    #[tokio::test]
    async fn requests_compressed_and_answers_decoded() {
        let (headers, _, status) = call(Compression::Snappy).await;
        assert!(
            headers.get("grpc-encoding").is_none(),
            "tonic never sees it"
        );
        assert_eq!(status.as_deref(), Some("0"));
        let (_, _, status) = call(Compression::None).await;
        assert_eq!(status.as_deref(), Some("0"));
        assert_eq!(Compression::parse("snappy"), Ok(Compression::Snappy));
        assert_eq!(Compression::parse("none"), Ok(Compression::None));
        assert!(Compression::parse("gzip").is_err());
    }
}
