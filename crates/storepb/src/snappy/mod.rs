//! gRPC `snappy` compression as Thanos registers it (`pkg/extgrpc/snappy`: the snappy
//! *framed* stream format). tonic knows gzip, deflate and zstd only, so both sides are
//! layers of ours:
//!
//! - [`SnappyRequests`] (server): Thanos components started with `--grpc-compression=snappy`
//!   send their requests compressed. The whole (small, bounded) request body is read, each
//!   compressed gRPC message is decoded and re-framed uncompressed, and `grpc-encoding` is
//!   removed. The answer is compressed with snappy too, as grpc-go servers answer with
//!   the request's compressor (Thanos queriers expect it; their Series answers are the
//!   bulk of the bytes).
//! - [`SnappyClient`] (client, `--grpc-compression=snappy` on the querier): requests are
//!   sent compressed with `grpc-encoding: snappy`; a Thanos (grpc-go) server then answers
//!   with the request's compressor, so compressed response messages are decoded as they
//!   stream in.
//!
//! [`decode_messages`], [`encode_messages`] and [`MessageStream`] are the sans-IO parts
//! (the fuzz target's entries).

use std::io::{Read, Write};

use bytes::{Buf, BufMut, Bytes, BytesMut};

mod body;
mod client;
mod server;

pub use body::RecodedBody;
pub use client::{Compression, SnappyClient};
pub use server::{SnappyRequests, SnappyService};

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
    /// A response message is larger than the decoder's limit, compressed or not.
    #[error("a gRPC message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// The message's size (compressed as framed, or decoded so far).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Compressing a message failed (only on I/O errors of an in-memory buffer).
    #[error("snappy compression failed: {0}")]
    Compress(String),
}

/// Decodes the length-prefixed gRPC messages of a request body whose compressed messages
/// (flag 1) are snappy framed, into the same messages uncompressed (flag 0).
pub fn decode_messages(body: &[u8]) -> Result<Bytes, SnappyError> {
    let mut out = BytesMut::with_capacity(body.len());
    let mut pos = 0usize;
    while pos < body.len() {
        let (flag, payload) = message_at(body, pos)?;
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
        pos += 5 + payload.len();
    }
    Ok(out.freeze())
}

/// Compresses every uncompressed gRPC message (flag 0) of a request body with snappy
/// (framed), flag 1; compressed messages are kept. Fails on a truncated body.
pub fn encode_messages(body: &[u8]) -> Result<Bytes, SnappyError> {
    let mut out = BytesMut::with_capacity(body.len() / 2 + 64);
    let mut pos = 0usize;
    while pos < body.len() {
        let (flag, payload) = message_at(body, pos)?;
        let compressed = if flag == 0 {
            compress(payload)?
        } else {
            payload.to_vec()
        };
        out.put_u8(1);
        out.put_u32(compressed.len() as u32);
        out.put_slice(&compressed);
        pos += 5 + payload.len();
    }
    Ok(out.freeze())
}

/// The flag and payload of the gRPC message starting at `pos`.
fn message_at(body: &[u8], pos: usize) -> Result<(u8, &[u8]), SnappyError> {
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
    Ok((flag, payload))
}

/// One message compressed as snappy's framed format.
fn compress(data: &[u8]) -> Result<Vec<u8>, SnappyError> {
    let mut w = snap::write::FrameEncoder::new(Vec::with_capacity(data.len() / 2 + 32));
    w.write_all(data)
        .map_err(|e| SnappyError::Compress(e.to_string()))?;
    w.into_inner()
        .map_err(|e| SnappyError::Compress(e.to_string()))
}

/// Re-frames a stream of gRPC messages as the bytes arrive, either decoding the
/// snappy-compressed ones (flag 1) into uncompressed messages, or compressing the
/// uncompressed ones (flag 0): [`push`](Self::push) what came in, then take what is
/// complete with [`next_message`](Self::next_message). Every message, as framed and as
/// decoded, is bounded by the limit.
#[derive(Debug)]
pub struct MessageStream {
    buffer: BytesMut,
    limit: usize,
    compress: bool,
    /// Bytes consumed so far, for error offsets.
    offset: usize,
}

impl MessageStream {
    /// A stream decoding compressed messages, refusing messages larger than `limit`.
    pub fn decoding(limit: usize) -> MessageStream {
        MessageStream {
            buffer: BytesMut::new(),
            limit,
            compress: false,
            offset: 0,
        }
    }

    /// A stream compressing uncompressed messages, refusing messages larger than `limit`.
    pub fn encoding(limit: usize) -> MessageStream {
        MessageStream {
            compress: true,
            ..MessageStream::decoding(limit)
        }
    }

    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// Whether bytes of an incomplete message are waiting.
    pub fn has_partial(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// The error for a stream that ended inside a message.
    pub fn truncated(&self) -> SnappyError {
        SnappyError::Truncated(self.offset)
    }

    /// The next complete message, re-framed, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, SnappyError> {
        let (flag, len) = match self.buffer.get(..5) {
            Some([flag, a, b, c, d]) => (*flag, u32::from_be_bytes([*a, *b, *c, *d]) as usize),
            _ => return Ok(None),
        };
        if len > self.limit {
            return Err(SnappyError::MessageTooLarge {
                size: len,
                limit: self.limit,
            });
        }
        if self.buffer.len() < 5 + len {
            return Ok(None);
        }
        let offset = self.offset;
        self.offset += 5 + len;
        // Already in the wanted form.
        if (flag == 0) != self.compress {
            return Ok(Some(self.buffer.split_to(5 + len).freeze()));
        }
        self.buffer.advance(5);
        let payload = self.buffer.split_to(len);
        let (flag, message) = if self.compress {
            (1u8, compress(&payload)?)
        } else {
            let mut decoded = Vec::with_capacity(2 * len);
            snap::read::FrameDecoder::new(payload.as_ref())
                .take(self.limit as u64 + 1)
                .read_to_end(&mut decoded)
                .map_err(|e| SnappyError::Invalid {
                    offset,
                    reason: e.to_string(),
                })?;
            (0u8, decoded)
        };
        let size = message.len();
        if size > self.limit {
            return Err(SnappyError::MessageTooLarge {
                size,
                limit: self.limit,
            });
        }
        let mut out = BytesMut::with_capacity(5 + size);
        out.put_u8(flag);
        out.put_u32(size as u32);
        out.put_slice(&message);
        Ok(Some(out.freeze()))
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

    /// Feeds `data` to `stream` in pieces of `piece` bytes; returns the messages.
    fn stream_all(
        stream: &mut MessageStream,
        data: &[u8],
        piece: usize,
    ) -> Result<Vec<u8>, SnappyError> {
        let mut out = Vec::new();
        for chunk in data.chunks(piece) {
            stream.push(chunk);
            while let Some(m) = stream.next_message()? {
                out.extend_from_slice(&m);
            }
        }
        if stream.has_partial() {
            return Err(stream.truncated());
        }
        Ok(out)
    }

    #[test]
    fn encoded_requests_decode_to_the_same_messages() {
        let messages: Vec<Vec<u8>> = vec![
            b"first".to_vec(),
            Vec::new(),
            (0..5000u32).flat_map(|i| (i % 251).to_le_bytes()).collect(),
        ];
        let plain: Vec<u8> = messages.iter().flat_map(|m| frame(0, m)).collect();
        let encoded = encode_messages(&plain).unwrap_or_default();
        // Every message is compressed (flag 1), as Thanos' snappy compressor frames it.
        let mut pos = 0;
        let mut count = 0;
        while pos < encoded.len() {
            assert_eq!(encoded[pos], 1);
            let len = u32::from_be_bytes([
                encoded[pos + 1],
                encoded[pos + 2],
                encoded[pos + 3],
                encoded[pos + 4],
            ]) as usize;
            let payload = &encoded[pos + 5..pos + 5 + len];
            let mut decoded = Vec::new();
            snap::read::FrameDecoder::new(payload)
                .read_to_end(&mut decoded)
                .unwrap_or_default();
            assert_eq!(decoded, messages[count]);
            pos += 5 + len;
            count += 1;
        }
        assert_eq!(count, 3);
        assert_eq!(
            decode_messages(&encoded).unwrap_or_default().as_ref(),
            plain
        );
        assert_eq!(encode_messages(&plain[..3]), Err(SnappyError::Truncated(0)));
    }

    #[test]
    fn streams_reframe_messages_split_anywhere() {
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 7) as u8).collect();
        let plain: Vec<u8> = [frame(0, b"a"), frame(0, &big), frame(0, b"")].concat();
        for piece in [1, 4, 5, 6, 1000, 1 << 20] {
            let compressed =
                stream_all(&mut MessageStream::encoding(1 << 20), &plain, piece).unwrap();
            assert!(compressed.len() < plain.len(), "piece {piece}");
            assert_eq!(compressed, encode_messages(&plain).unwrap().as_ref());
            let decoded =
                stream_all(&mut MessageStream::decoding(1 << 20), &compressed, piece).unwrap();
            assert_eq!(decoded, plain, "piece {piece}");
            // Uncompressed messages pass a decoding stream unchanged.
            let same = stream_all(&mut MessageStream::decoding(1 << 20), &plain, piece).unwrap();
            assert_eq!(same, plain);
        }
    }

    #[test]
    fn streams_bound_messages_and_see_truncation() {
        let compressed = frame(1, &compress(&vec![0u8; 8 << 20]));
        // A bomb: a few hundred KiB that decode to 8 MiB, refused at the limit.
        assert!(compressed.len() < 1 << 20);
        assert_eq!(
            stream_all(&mut MessageStream::decoding(1 << 20), &compressed, 4096),
            Err(SnappyError::MessageTooLarge {
                size: (1 << 20) + 1,
                limit: 1 << 20
            })
        );
        // A frame header claiming more than the limit is refused before its bytes arrive.
        let mut huge = vec![1u8];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            stream_all(&mut MessageStream::decoding(1 << 20), &huge, 5),
            Err(SnappyError::MessageTooLarge { .. })
        ));
        // Cut short: the second message ends early.
        let two = [frame(0, b"one"), frame(0, b"two")].concat();
        assert_eq!(
            stream_all(
                &mut MessageStream::encoding(1 << 20),
                &two[..two.len() - 1],
                3
            ),
            Err(SnappyError::Truncated(8))
        );
        assert!(matches!(
            stream_all(&mut MessageStream::decoding(1 << 20), &frame(1, b"junk"), 9),
            Err(SnappyError::Invalid { offset: 0, .. })
        ));
    }
}
