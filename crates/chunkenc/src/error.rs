/// A chunk could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The chunk ends before the samples its header announces.
    #[error("chunk truncated: header announces {announced} samples, data ends after {decoded}")]
    Truncated {
        /// Samples the header announces.
        announced: u16,
        /// Samples fully decoded before the data ran out.
        decoded: u16,
    },
    /// The chunk is shorter than its 2-byte header.
    #[error("chunk of {len} bytes is shorter than its header")]
    MissingHeader {
        /// Length of the data.
        len: usize,
    },
    /// A varint runs past 10 bytes or past the end.
    #[error("malformed varint at byte {offset}")]
    BadVarint {
        /// Byte offset inside the chunk.
        offset: usize,
    },
    /// A value window claims more than 64 bits.
    #[error(
        "malformed XOR value window at sample {sample}: leading {leading} + significant {significant} bits > 64"
    )]
    BadWindow {
        /// Index of the sample.
        sample: u16,
        /// Leading zero bits.
        leading: u32,
        /// Significant bits.
        significant: u32,
    },
    /// The encoding is not (yet) supported for this operation.
    #[error("unsupported chunk encoding {0}")]
    UnsupportedEncoding(u8),
    /// Bytes left after the last part of a chunk.
    #[error("chunk has {len} bytes, its parts end at {expected}")]
    TrailingBytes {
        /// Where the parts end.
        expected: usize,
        /// Length of the data.
        len: usize,
    },
    /// A chunk holds at most 65535 samples.
    #[error("chunk is full: 65535 samples")]
    Full,
    /// Samples must be appended in increasing timestamp order.
    #[error("out of order sample: {t} after {last}")]
    OutOfOrder {
        /// Timestamp appended.
        t: i64,
        /// Previous timestamp.
        last: i64,
    },
    /// A histogram chunk's data is malformed.
    #[error("malformed histogram chunk at byte {offset}: {reason}")]
    BadHistogram {
        /// Byte offset after the 3-byte header.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A histogram does not have the layout (schema, zero threshold, spans, custom bounds)
    /// of the chunk it is appended to, or its bucket counts do not fit its spans.
    #[error("histogram layout differs from the chunk's")]
    LayoutMismatch,
}
