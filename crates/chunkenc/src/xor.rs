//! The XOR float chunk of Prometheus (`tsdb/chunkenc/xor.go`), bit for bit.
//!
//! Layout: a 2-byte big-endian sample count; sample 0 as a zig-zag varint timestamp and 64
//! raw value bits; sample 1 as a uvarint timestamp delta and an XOR-encoded value; later
//! samples as a delta-of-delta with prefix codes `0`, `10`+14, `110`+17, `1110`+20,
//! `1111`+64 bits and an XOR-encoded value (`0` same, `10` reuse window, `11` new window with
//! 5 bits of leading zeros and 6 bits of significant-bit count, 0 meaning 64).

use crate::ChunkError;
use crate::bits::{BitReader, BitWriter};
use crate::varint::{get_uvarint, get_varint};

/// Sentinel for "no value window yet", as Go's `0xff`.
const NO_WINDOW: u8 = 0xff;

/// Whether `dod` fits the `nbits` payload of a delta-of-delta prefix code. The range is
/// deliberately asymmetric, as in Prometheus' `bitRange`: `-(2^(n-1)-1) ..= 2^(n-1)`.
#[inline]
fn fits(dod: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= dod && dod <= half
}

/// Encodes float samples into one XOR chunk, producing the same bytes as Prometheus.
#[derive(Debug, Clone)]
pub struct XorEncoder {
    stream: BitWriter,
    num_samples: u16,
    t: i64,
    v: f64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl XorEncoder {
    /// An empty chunk (just the 2-byte count).
    pub fn new() -> Self {
        // Go: NewXORChunk starts from a 2-byte stream (the count) with a full last byte.
        let stream = BitWriter::with_prefix(&[0, 0], 128);
        XorEncoder {
            stream,
            num_samples: 0,
            t: 0,
            v: 0.0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Samples appended so far.
    pub fn num_samples(&self) -> u16 {
        self.num_samples
    }

    /// Encoded size so far, in bytes.
    pub fn size_bytes(&self) -> usize {
        self.stream.len_bytes()
    }

    /// Timestamp of the last sample appended (meaningless while empty).
    pub fn last_timestamp(&self) -> i64 {
        self.t
    }

    /// Appends a sample. Timestamps must increase strictly.
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        if self.num_samples == u16::MAX {
            return Err(ChunkError::Full);
        }
        if self.num_samples > 0 && t <= self.t {
            return Err(ChunkError::OutOfOrder { t, last: self.t });
        }
        self.append_unchecked(t, v);
        Ok(())
    }

    /// Appends without the ordering check (Prometheus itself encodes whatever it is given).
    pub fn append_unchecked(&mut self, t: i64, v: f64) {
        let mut t_delta = 0u64;
        match self.num_samples {
            0 => {
                let mut buf = Vec::with_capacity(10);
                crate::put_varint(&mut buf, t);
                for byte in buf {
                    self.stream.write_byte(byte);
                }
                self.stream.write_bits(v.to_bits(), 64);
            }
            1 => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let mut buf = Vec::with_capacity(10);
                crate::put_uvarint(&mut buf, t_delta);
                for byte in buf {
                    self.stream.write_byte(byte);
                }
                self.write_value(v);
            }
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 {
                    self.stream.write_bit(false);
                } else if fits(dod, 14) {
                    self.stream.write_bits(0b10, 2);
                    self.stream.write_bits(dod as u64, 14);
                } else if fits(dod, 17) {
                    self.stream.write_bits(0b110, 3);
                    self.stream.write_bits(dod as u64, 17);
                } else if fits(dod, 20) {
                    self.stream.write_bits(0b1110, 4);
                    self.stream.write_bits(dod as u64, 20);
                } else {
                    self.stream.write_bits(0b1111, 4);
                    self.stream.write_bits(dod as u64, 64);
                }
                self.write_value(v);
            }
        }
        self.t = t;
        self.v = v;
        self.t_delta = t_delta;
        self.num_samples += 1;
        let count = self.num_samples.to_be_bytes();
        if let Some(header) = self.stream.completed_mut().get_mut(0..2) {
            header.copy_from_slice(&count);
        }
    }

    fn write_value(&mut self, v: f64) {
        let delta = v.to_bits() ^ self.v.to_bits();
        if delta == 0 {
            self.stream.write_bit(false);
            return;
        }
        self.stream.write_bit(true);
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            self.stream.write_bit(false);
            let significant = 64 - u32::from(self.leading) - u32::from(self.trailing);
            self.stream.write_bits(delta >> self.trailing, significant);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        self.stream.write_bit(true);
        self.stream.write_bits(u64::from(leading), 5);
        let significant = 64 - u32::from(leading) - u32::from(trailing);
        // 64 significant bits do not fit 6 bits; they are written as 0 (never ambiguous,
        // since 0 significant bits would have been the "same value" case).
        self.stream.write_bits(u64::from(significant), 6);
        self.stream.write_bits(delta >> trailing, significant);
    }

    /// The chunk bytes (count header included; last byte zero-padded).
    pub fn bytes(&self) -> Vec<u8> {
        self.stream.to_bytes()
    }
}

/// The sample count from a chunk's 2-byte header.
pub fn xor_num_samples(data: &[u8]) -> Result<u16, ChunkError> {
    match data.get(0..2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(ChunkError::MissingHeader { len: data.len() }),
    }
}

/// Iterates the samples of an XOR chunk. Never panics on corrupt input: iteration stops
/// early and [`XorIter::finish`] reports why.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    reader: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u32,
    trailing: u32,
    error: Option<ChunkError>,
}

impl<'a> XorIter<'a> {
    /// Starts iterating; fails only when the 2-byte header is missing.
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        let total = xor_num_samples(data)?;
        Ok(XorIter {
            reader: BitReader::new(data, 2),
            total,
            read: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: 0,
            trailing: 0,
            error: None,
        })
    }

    /// Samples not yet returned.
    pub fn remaining(&self) -> u16 {
        self.total - self.read
    }

    /// The next sample, or `None` at the end or on corruption.
    #[inline]
    pub fn next_sample(&mut self) -> Option<(i64, f64)> {
        if self.read >= self.total || self.error.is_some() {
            return None;
        }
        let decoded = match self.read {
            0 => self.read_first(),
            1 => self.read_second(),
            _ => self.read_later(),
        };
        if let Err(err) = decoded {
            self.error = Some(err);
            return None;
        }
        if self.reader.overrun() {
            self.error = Some(ChunkError::Truncated {
                announced: self.total,
                decoded: self.read,
            });
            return None;
        }
        self.read += 1;
        Some((self.t, f64::from_bits(self.v)))
    }

    /// Ends iteration: an error if the chunk was corrupt or truncated.
    pub fn finish(self) -> Result<(), ChunkError> {
        match self.error {
            Some(err) => Err(err),
            None if self.read < self.total => Err(ChunkError::Truncated {
                announced: self.total,
                decoded: self.read,
            }),
            None => Ok(()),
        }
    }

    /// The error that stopped iteration, if any.
    pub fn error(&self) -> Option<&ChunkError> {
        self.error.as_ref()
    }

    fn read_first(&mut self) -> Result<(), ChunkError> {
        let start = self.reader.byte_pos();
        let data = self.reader_data();
        let rest = data.get(start..).unwrap_or_default();
        let (t, n) = get_varint(rest).ok_or(ChunkError::BadVarint { offset: start })?;
        self.reader.set_byte_pos(start + n);
        self.t = t;
        self.v = self.reader.read_bits(64);
        Ok(())
    }

    fn read_second(&mut self) -> Result<(), ChunkError> {
        let start = self.reader.byte_pos();
        let data = self.reader_data();
        let rest = data.get(start..).unwrap_or_default();
        let (t_delta, n) = get_uvarint(rest).ok_or(ChunkError::BadVarint { offset: start })?;
        self.reader.set_byte_pos(start + n);
        self.t_delta = t_delta;
        self.t = self.t.wrapping_add(t_delta as i64);
        self.read_value()
    }

    #[inline(always)]
    fn read_later(&mut self) -> Result<(), ChunkError> {
        let word = self.reader.peek();
        let dod: i64 = if word >> 63 == 0 {
            self.reader.skip(1);
            0
        } else if word >> 62 == 0b10 {
            self.reader.skip(2);
            signed(self.reader.read_bits(14), 14)
        } else if word >> 61 == 0b110 {
            self.reader.skip(3);
            signed(self.reader.read_bits(17), 17)
        } else if word >> 60 == 0b1110 {
            self.reader.skip(4);
            signed(self.reader.read_bits(20), 20)
        } else {
            self.reader.skip(4);
            self.reader.read_bits(64) as i64
        };
        self.t_delta = (self.t_delta as i64).wrapping_add(dod) as u64;
        self.t = self.t.wrapping_add(self.t_delta as i64);
        self.read_value()
    }

    #[inline(always)]
    fn read_value(&mut self) -> Result<(), ChunkError> {
        let word = self.reader.peek();
        if word >> 63 == 0 {
            self.reader.skip(1);
            return Ok(());
        }
        if word >> 62 == 0b11 {
            // New window: 2 control bits, 5 bits leading, 6 bits significant.
            let leading = ((word >> 57) & 0x1f) as u32;
            let mut significant = ((word >> 51) & 0x3f) as u32;
            if significant == 0 {
                significant = 64;
            }
            self.reader.skip(13);
            if leading + significant > 64 {
                return Err(ChunkError::BadWindow {
                    sample: self.read,
                    leading,
                    significant,
                });
            }
            self.leading = leading;
            self.trailing = 64 - leading - significant;
        } else {
            self.reader.skip(2);
        }
        let significant = 64 - self.leading - self.trailing;
        if significant == 0 {
            // Only reachable from corrupt input (a reuse before any window was set is fine:
            // the window starts at 64 significant bits, as in Go).
            return Err(ChunkError::BadWindow {
                sample: self.read,
                leading: self.leading,
                significant,
            });
        }
        let bits = self.reader.read_bits(significant);
        self.v ^= bits << self.trailing;
        Ok(())
    }

    fn reader_data(&self) -> &'a [u8] {
        self.reader.data()
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        self.next_sample()
    }
}

/// Interprets an `n`-bit delta-of-delta payload: values above `2^(n-1)` are negative.
#[inline(always)]
fn signed(bits: u64, nbits: u32) -> i64 {
    let value = bits as i64;
    if value > (1i64 << (nbits - 1)) {
        value - (1i64 << nbits)
    } else {
        value
    }
}

/// Decodes a whole XOR chunk into parallel timestamp and value vectors (appending).
pub fn decode_xor(data: &[u8], ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> Result<(), ChunkError> {
    let mut iter = XorIter::new(data)?;
    let n = usize::from(iter.remaining());
    ts.reserve(n);
    vs.reserve(n);
    while let Some((t, v)) = iter.next_sample() {
        ts.push(t);
        vs.push(v);
    }
    iter.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut enc = XorEncoder::new();
        for &(t, v) in samples {
            enc.append_unchecked(t, v);
        }
        enc.bytes()
    }

    fn decode(data: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
        let mut iter = XorIter::new(data)?;
        let out: Vec<_> = iter.by_ref().collect();
        iter.finish()?;
        Ok(out)
    }

    #[test]
    fn empty_chunk_is_two_zero_bytes() {
        assert_eq!(XorEncoder::new().bytes(), [0, 0]);
        assert_eq!(decode(&[0, 0]).unwrap(), []);
    }

    #[test]
    fn first_sample_layout() {
        // Count 1, varint(1700000000000), the raw bits of 1.0, and the empty byte Go's
        // writeByte leaves at the end.
        let bytes = encode(&[(1_700_000_000_000, 1.0)]);
        assert_eq!(
            bytes,
            [
                0, 1, 0x80, 0xa0, 0xab, 0xfe, 0xf9, 0x62, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
    }

    #[test]
    fn dod_boundaries_round_trip() {
        // Each delta-of-delta sits on an edge of a prefix-code range.
        let dods = [
            0i64,
            8192,
            -8191,
            8193,
            -8192,
            65536,
            -65535,
            65537,
            524288,
            -524287,
            524289,
            -524288,
            i64::from(i32::MAX),
        ];
        let mut samples = vec![(1000i64, 1.0), (2000, 2.0)];
        let mut delta = 1000i64;
        let mut t = 2000i64;
        for (i, dod) in dods.iter().enumerate() {
            delta += dod;
            t += delta;
            samples.push((t, i as f64 * 0.5));
        }
        assert_eq!(decode(&encode(&samples)).unwrap(), samples);
    }

    #[test]
    fn truncation_is_an_error_not_a_panic() {
        let samples: Vec<(i64, f64)> = (0..50).map(|i| (i * 15_000, (i as f64).sin())).collect();
        let bytes = encode(&samples);
        for cut in 0..bytes.len() {
            let result = decode(&bytes[..cut]);
            assert!(result.is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 56) as u8
                })
                .collect();
            let _ = decode(&bytes);
        }
    }

    fn float_strategy() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (0i64..1000).prop_map(|x| x as f64),
            Just(f64::NAN),
            Just(strata_types::stale_nan()),
            Just(f64::INFINITY),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(
            start in any::<i32>(),
            steps in proptest::collection::vec((1i64..100_000_000, float_strategy()), 0..300),
        ) {
            let mut t = i64::from(start);
            let mut samples = Vec::new();
            for (dt, v) in steps {
                samples.push((t, v));
                t += dt;
            }
            let decoded = decode(&encode(&samples)).unwrap();
            prop_assert_eq!(decoded.len(), samples.len());
            for (a, b) in decoded.iter().zip(&samples) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
        }
    }
}
