//! The server side: requests compressed with snappy are decompressed before tonic sees
//! them, and their answers compressed with snappy.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use tonic::body::Body;

use super::{MAX_REQUEST_BYTES, MessageStream, RecodedBody, decode_messages};
use crate::serve::MAX_MESSAGE_BYTES;

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
            let response = inner.call(http::Request::from_parts(parts, body)).await?;
            // Answered with the request's compressor, as grpc-go servers do.
            let (mut parts, body) = response.into_parts();
            parts.headers.insert(
                "grpc-encoding",
                http::header::HeaderValue::from_static("snappy"),
            );
            let body = RecodedBody::new(body, MessageStream::encoding(MAX_MESSAGE_BYTES));
            Ok(http::Response::from_parts(parts, Body::new(body)))
        })
    }
}
