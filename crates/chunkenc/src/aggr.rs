//! Thanos' aggregate chunk (encoding byte `0xff`), the chunk of downsampled blocks: up to
//! five XOR sub-chunks — count, sum, min, max and counter, in that order — each written as
//! `uvarint(len)` followed, when `len > 0`, by its encoding byte and `len` bytes of chunk
//! data. A zero length means the aggregate is absent.

use crate::varint::{get_uvarint, put_uvarint};
use crate::{ChunkError, Encoding, xor_num_samples};

/// The encoding byte of aggregate chunks.
pub const AGGR_ENCODING: u8 = 0xff;

/// The aggregates, in their order inside an aggregate chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggrType {
    /// Number of raw samples in the window.
    Count = 0,
    /// Sum of the raw values.
    Sum = 1,
    /// Minimum.
    Min = 2,
    /// Maximum.
    Max = 3,
    /// Counter value with resets removed (plus the first and last raw values).
    Counter = 4,
}

impl AggrType {
    /// All five, in chunk order.
    pub const ALL: [AggrType; 5] = [
        AggrType::Count,
        AggrType::Sum,
        AggrType::Min,
        AggrType::Max,
        AggrType::Counter,
    ];
}

/// The sub-chunks of an aggregate chunk: `(encoding, data)` per aggregate, `None` if absent.
pub type AggrParts<'a> = [Option<(Encoding, &'a [u8])>; 5];

/// Encodes sub-chunks (XOR data, `None` for an absent aggregate) into an aggregate chunk's
/// payload.
pub fn encode_aggr(parts: &[Option<Vec<u8>>; 5]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().flatten().map(|p| p.len() + 3).sum());
    for part in parts {
        match part {
            Some(data) if !data.is_empty() => {
                put_uvarint(&mut out, data.len() as u64);
                out.push(Encoding::Xor.to_byte());
                out.extend_from_slice(data);
            }
            _ => put_uvarint(&mut out, 0),
        }
    }
    out
}

/// Encodes sub-chunks of any encoding (native histogram aggregates hold float histogram
/// chunks for sum and counter) into an aggregate chunk's payload.
pub fn encode_aggr_with(parts: &[Option<(Encoding, Vec<u8>)>; 5]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().flatten().map(|p| p.1.len() + 3).sum());
    for part in parts {
        match part {
            Some((encoding, data)) if !data.is_empty() => {
                put_uvarint(&mut out, data.len() as u64);
                out.push(encoding.to_byte());
                out.extend_from_slice(data);
            }
            _ => put_uvarint(&mut out, 0),
        }
    }
    out
}

/// Splits an aggregate chunk's payload into its sub-chunks. Every length is checked
/// against the data; trailing bytes are an error.
pub fn decode_aggr(data: &[u8]) -> Result<AggrParts<'_>, ChunkError> {
    let mut parts: AggrParts<'_> = [None; 5];
    let mut pos = 0usize;
    for part in &mut parts {
        let rest = data.get(pos..).unwrap_or_default();
        let (len, n) = get_uvarint(rest).ok_or(ChunkError::BadVarint { offset: pos })?;
        pos += n;
        if len == 0 {
            continue;
        }
        let len = usize::try_from(len).map_err(|_| ChunkError::BadVarint { offset: pos })?;
        let encoding = *data
            .get(pos)
            .ok_or(ChunkError::MissingHeader { len: data.len() })?;
        pos += 1;
        let end = pos
            .checked_add(len)
            .ok_or(ChunkError::BadVarint { offset: pos })?;
        let sub = data
            .get(pos..end)
            .ok_or(ChunkError::MissingHeader { len: data.len() })?;
        *part = Some((Encoding::from_byte(encoding), sub));
        pos = end;
    }
    if pos != data.len() {
        return Err(ChunkError::TrailingBytes {
            expected: pos,
            len: data.len(),
        });
    }
    Ok(parts)
}

/// Samples of an aggregate chunk: those of its count sub-chunk (0 if absent).
pub fn aggr_num_samples(data: &[u8]) -> Result<u16, ChunkError> {
    let parts = decode_aggr(data)?;
    match parts.first().copied().flatten() {
        Some((Encoding::Xor, sub)) => xor_num_samples(sub),
        Some((other, _)) => Err(ChunkError::UnsupportedEncoding(other.to_byte())),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::XorEncoder;

    fn xor(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut e = XorEncoder::new();
        for (t, v) in samples {
            e.append_unchecked(*t, *v);
        }
        e.bytes()
    }

    #[test]
    fn round_trip_with_absent_parts() {
        let count = xor(&[(299_999, 20.0), (599_999, 20.0)]);
        let counter = xor(&[(0, 1.0), (299_999, 30.0), (599_999, 50.0), (599_999, 50.0)]);
        let parts = [Some(count.clone()), None, None, None, Some(counter.clone())];
        let data = encode_aggr(&parts);
        let decoded = decode_aggr(&data).unwrap();
        assert_eq!(decoded[0], Some((Encoding::Xor, count.as_slice())));
        assert_eq!(decoded[1], None);
        assert_eq!(decoded[4], Some((Encoding::Xor, counter.as_slice())));
        assert_eq!(aggr_num_samples(&data).unwrap(), 2);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(decode_aggr(&[]).is_err());
        assert!(decode_aggr(&[5, 1, 0]).is_err());
        assert!(decode_aggr(&[0, 0, 0, 0, 0, 7]).is_err());
        assert!(decode_aggr(&[0xff; 12]).is_err());
        assert_eq!(decode_aggr(&[0, 0, 0, 0, 0]).unwrap(), [None; 5]);
    }
}
