//! A gRPC body re-framed as it streams: the response side of both layers.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;

use super::MessageStream;

/// A body whose messages are re-framed by a [`MessageStream`] (decoded or compressed) as
/// they arrive; trailers pass through.
#[derive(Debug)]
pub struct RecodedBody<B> {
    inner: B,
    stream: MessageStream,
}

impl<B> RecodedBody<B> {
    /// `inner` re-framed by `stream`.
    pub fn new(inner: B, stream: MessageStream) -> RecodedBody<B> {
        RecodedBody { inner, stream }
    }
}

impl<B> http_body::Body for RecodedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = Bytes;
    type Error = tonic::codegen::StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        loop {
            match this.stream.next_message() {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(Frame::data(message)))),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.stream.push(&data),
                    Err(trailers) => {
                        if this.stream.has_partial() {
                            return Poll::Ready(Some(Err(this.stream.truncated().into())));
                        }
                        return Poll::Ready(Some(Ok(trailers)));
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => {
                    if this.stream.has_partial() {
                        return Poll::Ready(Some(Err(this.stream.truncated().into())));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}
