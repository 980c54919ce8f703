//! The native histogram chunk encodings, bit-exact with Prometheus 3.5's
//! `tsdb/chunkenc/histogram.go` and `float_histogram.go`: a chunk written here from the
//! same histograms equals the chunk Prometheus wrote.
//!
//! Both start with a 3-byte header (sample count, big-endian; the counter reset header in
//! the top two bits of the third byte), then a bit stream: the layout every histogram of
//! the chunk shares ([`varbit`]), then the samples ([`int`], [`float`]).
//!
//! Prometheus keeps one layout per chunk: when buckets appear it re-encodes the chunk's
//! earlier histograms with the wider layout, so every chunk it wrote holds one layout. The
//! encoders here take histograms of one layout (anything else is
//! [`ChunkError::LayoutMismatch`]); cutting and widening is the caller's.

mod cut;
mod float;
mod int;
mod varbit;

use strata_types::histogram::{CounterResetHint, Span, is_custom_buckets_schema};

pub use cut::{
    HISTOGRAMS_PER_CHUNK, WrittenChunk, encode_float_histogram_chunk, encode_float_histograms,
    encode_histograms,
};
pub use float::{FloatHistogramEncoder, FloatHistogramIter};
pub use int::{HistogramEncoder, HistogramIter};

use crate::error::ChunkError;
use varbit::Layout;

/// Bytes before the bit stream.
const HEADER_BYTES: usize = 3;

/// The counter reset header: the top two bits of a histogram chunk's third byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum CounterResetHeader {
    /// Not known whether a counter reset started the chunk.
    #[default]
    Unknown = 0b0000_0000,
    /// A counter reset started the chunk.
    CounterReset = 0b1000_0000,
    /// The chunk was cut without a counter reset.
    NotCounterReset = 0b0100_0000,
    /// The chunk holds gauge histograms.
    Gauge = 0b1100_0000,
}

impl CounterResetHeader {
    /// The header in a chunk's third byte.
    pub fn from_byte(b: u8) -> Self {
        match b & 0b1100_0000 {
            0b1000_0000 => CounterResetHeader::CounterReset,
            0b0100_0000 => CounterResetHeader::NotCounterReset,
            0b1100_0000 => CounterResetHeader::Gauge,
            _ => CounterResetHeader::Unknown,
        }
    }
}

/// The sample count and counter reset header of a histogram chunk.
fn read_header(data: &[u8]) -> Result<(u16, CounterResetHeader), ChunkError> {
    match data {
        [hi, lo, flags, ..] => Ok((
            u16::from_be_bytes([*hi, *lo]),
            CounterResetHeader::from_byte(*flags),
        )),
        _ => Err(ChunkError::MissingHeader { len: data.len() }),
    }
}

/// The hint a read histogram carries (Prometheus' `counterResetHint`): gauge in gauge
/// chunks, no reset after a chunk's first histogram, unknown for the first (the chunk
/// before it may be gone or out of order).
fn counter_reset_hint(header: CounterResetHeader, read: u16) -> CounterResetHint {
    match header {
        CounterResetHeader::Gauge => CounterResetHint::Gauge,
        _ if read > 1 => CounterResetHint::NotCounterReset,
        _ => CounterResetHint::Unknown,
    }
}

/// The layout a histogram's fields describe (custom bounds only for the custom schema, as
/// only then are they written).
fn layout_of(
    schema: i32,
    zero_threshold: f64,
    positive_spans: &[Span],
    negative_spans: &[Span],
    custom_values: &[f64],
) -> Layout {
    Layout {
        schema,
        zero_threshold,
        positive_spans: positive_spans.to_vec(),
        negative_spans: negative_spans.to_vec(),
        custom_values: if is_custom_buckets_schema(schema) {
            custom_values.to_vec()
        } else {
            Vec::new()
        },
    }
}

#[cfg(test)]
mod tests;
