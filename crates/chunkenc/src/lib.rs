//! Prometheus chunk encodings.
//!
//! Owns the bytes inside one chunk: the XOR float encoding (bit-exact with Prometheus'
//! `tsdb/chunkenc/xor.go`, so a chunk encoded here from the same samples equals the chunk
//! Prometheus wrote), the native histogram encodings ([`histogram`], bit-exact the same
//! way) and the encoding identifiers.
//!
//! Decoding comes in three shapes with one answer: [`XorIter`] a sample at a time,
//! [`decode_xor`] a chunk at a time, [`decode_xor_chunks`] many chunks at once (sixteen
//! AVX-512 lanes where the CPU has them).
//!
//! Not here: where chunks live in files (`strata-tsdb`) or on the wire (`strata-storeapi`).
//! Everything is sync and allocation-light; decoders never panic on untrusted bytes.

pub mod aggr;
mod bits;
mod error;
pub mod histogram;
mod varint;
mod xor;

pub use error::ChunkError;
pub use histogram::{
    CounterResetHeader, FloatHistogramEncoder, FloatHistogramIter, HistogramEncoder, HistogramIter,
    WrittenChunk, encode_float_histogram_chunk, encode_float_histograms, encode_histograms,
};
pub use varint::{get_uvarint, get_varint, put_uvarint, put_varint};
pub use xor::{
    XorEncoder, XorIter, decode_xor, decode_xor_chunks, decode_xor_chunks_samples, xor_num_samples,
};

/// Samples Prometheus aims to put in one chunk.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// A chunk encoding byte, as stored in chunk segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// 0: no encoding (never valid in a block).
    None,
    /// 1: XOR-compressed floats.
    Xor,
    /// 2: native integer histograms.
    Histogram,
    /// 3: native float histograms.
    FloatHistogram,
    /// Any other byte (newer Prometheus encodings, Thanos' 0xff aggregate chunk, corruption).
    Other(u8),
}

impl Encoding {
    /// Interprets an encoding byte.
    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => Encoding::None,
            1 => Encoding::Xor,
            2 => Encoding::Histogram,
            3 => Encoding::FloatHistogram,
            other => Encoding::Other(other),
        }
    }

    /// The byte written to disk.
    pub fn to_byte(self) -> u8 {
        match self {
            Encoding::None => 0,
            Encoding::Xor => 1,
            Encoding::Histogram => 2,
            Encoding::FloatHistogram => 3,
            Encoding::Other(b) => b,
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encoding::None => f.write_str("none"),
            Encoding::Xor => f.write_str("XOR"),
            Encoding::Histogram => f.write_str("histogram"),
            Encoding::FloatHistogram => f.write_str("floathistogram"),
            Encoding::Other(b) => write!(f, "<unknown {b}>"),
        }
    }
}

/// Number of samples in a chunk of any known encoding (all keep a 2-byte big-endian count).
pub fn num_samples(encoding: Encoding, data: &[u8]) -> Result<u16, ChunkError> {
    match encoding {
        Encoding::Xor | Encoding::Histogram | Encoding::FloatHistogram => xor_num_samples(data),
        Encoding::Other(aggr::AGGR_ENCODING) => aggr::aggr_num_samples(data),
        other => Err(ChunkError::UnsupportedEncoding(other.to_byte())),
    }
}

/// Decodes the float samples of a chunk. XOR only; other encodings are a typed error.
pub fn decode_floats(
    encoding: Encoding,
    data: &[u8],
    out: &mut Vec<strata_types::Sample>,
) -> Result<(), ChunkError> {
    match encoding {
        Encoding::Xor => {
            let mut iter = XorIter::new(data)?;
            out.reserve(usize::from(iter.remaining()));
            while let Some((t, v)) = iter.next_sample() {
                out.push(strata_types::Sample { t, v });
            }
            iter.finish()
        }
        other => Err(ChunkError::UnsupportedEncoding(other.to_byte())),
    }
}
