//! The pieces both histogram encodings share (Prometheus' `varbit.go`,
//! `histogram_meta.go` and `xorWrite`/`xorRead`): varbit integers, the chunk layout
//! (zero threshold, schema, spans, custom bounds) and Gorilla XOR of one float field.

use strata_types::histogram::{Span, is_custom_buckets_schema};

use crate::bits::{BitReader, BitWriter};
use crate::error::ChunkError;

/// Most spans or custom bounds one layout may declare (every span holds at least one
/// bucket in practice; a layout this large is corruption, and reading it would allocate).
pub(crate) const MAX_LAYOUT_ITEMS: u64 = 1 << 16;

/// The error for data that ends inside the sample being read.
pub(crate) fn truncated(r: &BitReader<'_>) -> ChunkError {
    ChunkError::BadHistogram {
        offset: r.byte_offset(),
        reason: "data ends inside a sample",
    }
}

fn bit_range(x: i64, nbits: u32) -> bool {
    -((1i64 << (nbits - 1)) - 1) <= x && x <= 1i64 << (nbits - 1)
}

/// (prefix, prefix length, value bits) of the bucket `putVarbitInt`/`putVarbitUint` use.
const BUCKETS: [(u64, u32, u32); 7] = [
    (0b10, 2, 3),
    (0b110, 3, 6),
    (0b1110, 4, 9),
    (0b11110, 5, 12),
    (0b111110, 6, 18),
    (0b1111110, 7, 25),
    (0b11111110, 8, 56),
];

/// Prometheus' `putVarbitInt`.
pub(crate) fn put_varbit_int(w: &mut BitWriter, val: i64) {
    if val == 0 {
        w.write_bit(false);
        return;
    }
    for (prefix, prefix_len, bits) in BUCKETS {
        if bit_range(val, bits) {
            w.write_bits(prefix, prefix_len);
            w.write_bits(val as u64, bits);
            return;
        }
    }
    w.write_bits(0b1111_1111, 8);
    w.write_bits(val as u64, 64);
}

/// Prometheus' `putVarbitUint`.
pub(crate) fn put_varbit_uint(w: &mut BitWriter, val: u64) {
    if val == 0 {
        w.write_bit(false);
        return;
    }
    for (prefix, prefix_len, bits) in BUCKETS {
        if val.leading_zeros() >= 64 - bits {
            w.write_bits(prefix, prefix_len);
            w.write_bits(val, bits);
            return;
        }
    }
    w.write_bits(0b1111_1111, 8);
    w.write_bits(val, 64);
}

/// The size in bits of the value after a varbit prefix, 0 for zero, 64 for the last form.
fn read_varbit_size(r: &mut BitReader<'_>) -> Result<u32, ChunkError> {
    let mut ones = 0u32;
    if let Some(w) = r.window() {
        // Up to eight leading ones and the zero after them, in one look.
        ones = w.leading_ones().min(8);
        r.skip(if ones == 8 { 8 } else { ones + 1 });
        return Ok(match ones {
            0 => 0,
            8 => 64,
            n => BUCKETS.get((n - 1) as usize).map_or(64, |b| b.2),
        });
    }
    while ones < 8 {
        if !r.read_bit().ok_or_else(|| truncated(r))? {
            break;
        }
        ones += 1;
    }
    Ok(match ones {
        0 => 0,
        8 => 64,
        n => BUCKETS.get((n - 1) as usize).map_or(64, |b| b.2),
    })
}

/// Prometheus' `readVarbitInt`.
pub(crate) fn read_varbit_int(r: &mut BitReader<'_>) -> Result<i64, ChunkError> {
    let size = read_varbit_size(r)?;
    let bits = r.read_bits(size).ok_or_else(|| truncated(r))?;
    if size == 0 || size == 64 {
        return Ok(bits as i64);
    }
    // Sign-extend as Go does: values above 2^(size-1) are negative.
    if bits > 1u64 << (size - 1) {
        return Ok(bits.wrapping_sub(1u64 << size) as i64);
    }
    Ok(bits as i64)
}

/// Prometheus' `readVarbitUint`.
pub(crate) fn read_varbit_uint(r: &mut BitReader<'_>) -> Result<u64, ChunkError> {
    let size = read_varbit_size(r)?;
    r.read_bits(size).ok_or_else(|| truncated(r))
}

/// The layout every histogram of a chunk shares.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Layout {
    pub(crate) schema: i32,
    pub(crate) zero_threshold: f64,
    pub(crate) positive_spans: Vec<Span>,
    pub(crate) negative_spans: Vec<Span>,
    pub(crate) custom_values: Vec<f64>,
}

/// Prometheus' `writeHistogramChunkLayout`.
pub(crate) fn write_layout(w: &mut BitWriter, layout: &Layout) {
    put_zero_threshold(w, layout.zero_threshold);
    put_varbit_int(w, i64::from(layout.schema));
    put_spans(w, &layout.positive_spans);
    put_spans(w, &layout.negative_spans);
    if is_custom_buckets_schema(layout.schema) {
        put_varbit_uint(w, layout.custom_values.len() as u64);
        for bound in &layout.custom_values {
            put_custom_bound(w, *bound);
        }
    }
}

/// Prometheus' `readHistogramChunkLayout`.
pub(crate) fn read_layout(r: &mut BitReader<'_>) -> Result<Layout, ChunkError> {
    let zero_threshold = read_zero_threshold(r)?;
    let schema = read_varbit_int(r)?;
    let schema = i32::try_from(schema).map_err(|_| ChunkError::BadHistogram {
        offset: r.byte_offset(),
        reason: "schema out of range",
    })?;
    let positive_spans = read_spans(r)?;
    let negative_spans = read_spans(r)?;
    let mut custom_values = Vec::new();
    if is_custom_buckets_schema(schema) {
        let n = bounded_count(r)?;
        for _ in 0..n {
            custom_values.push(read_custom_bound(r)?);
        }
    }
    Ok(Layout {
        schema,
        zero_threshold,
        positive_spans,
        negative_spans,
        custom_values,
    })
}

fn bounded_count(r: &mut BitReader<'_>) -> Result<u64, ChunkError> {
    let n = read_varbit_uint(r)?;
    if n > MAX_LAYOUT_ITEMS {
        return Err(ChunkError::BadHistogram {
            offset: r.byte_offset(),
            reason: "layout declares too many spans or bounds",
        });
    }
    Ok(n)
}

fn put_spans(w: &mut BitWriter, spans: &[Span]) {
    put_varbit_uint(w, spans.len() as u64);
    for s in spans {
        put_varbit_uint(w, u64::from(s.length));
        put_varbit_int(w, i64::from(s.offset));
    }
}

fn read_spans(r: &mut BitReader<'_>) -> Result<Vec<Span>, ChunkError> {
    let n = bounded_count(r)?;
    let mut spans = Vec::with_capacity(n as usize);
    let mut buckets = 0u64;
    for _ in 0..n {
        let length = read_varbit_uint(r)?;
        let offset = read_varbit_int(r)?;
        buckets = buckets.saturating_add(length);
        if buckets > MAX_LAYOUT_ITEMS {
            return Err(ChunkError::BadHistogram {
                offset: r.byte_offset(),
                reason: "layout declares too many buckets",
            });
        }
        spans.push(Span {
            // Go truncates to the field's width, as here.
            length: length as u32,
            offset: offset as i32,
        });
    }
    Ok(spans)
}

/// Prometheus' `putZeroThreshold`: 0 as one zero byte, powers of two from 2^-243 to 2^10
/// as one byte, anything else as 255 and the float's 8 bytes.
fn put_zero_threshold(w: &mut BitWriter, threshold: f64) {
    if threshold == 0.0 {
        w.write_bits(0, 8);
        return;
    }
    match frexp(threshold) {
        (frac, exp) if frac == 0.5 && (-242..=11).contains(&exp) => {
            w.write_bits((exp + 243) as u64, 8);
        }
        _ => {
            w.write_bits(255, 8);
            w.write_bits(threshold.to_bits(), 64);
        }
    }
}

fn read_zero_threshold(r: &mut BitReader<'_>) -> Result<f64, ChunkError> {
    let b = r.read_bits(8).ok_or_else(|| truncated(r))?;
    Ok(match b {
        0 => 0.0,
        255 => f64::from_bits(r.read_bits(64).ok_or_else(|| truncated(r))?),
        b => ldexp(0.5, b as i32 - 243),
    })
}

/// Go's `math.Frexp` for finite non-zero values: `f = frac × 2^exp`, `0.5 <= |frac| < 1`.
fn frexp(f: f64) -> (f64, i32) {
    if f == 0.0 || !f.is_finite() {
        return (f, 0);
    }
    let bits = f.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    if exp_bits == 0 {
        // Subnormal: scale up first.
        let (frac, exp) = frexp(f * (1u64 << 54) as f64);
        return (frac, exp - 54);
    }
    let exp = exp_bits - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

/// `frac × 2^exp` (Go's `math.Ldexp`) for the exponents zero thresholds use.
fn ldexp(frac: f64, exp: i32) -> f64 {
    frac * 2f64.powi(exp)
}

/// Prometheus' `putCustomBound`: multiples of 0.001 from 0 to 33554.430 as a varbit of
/// `bound × 1000 + 1`, anything else as a 0 bit and the float's 8 bytes.
fn put_custom_bound(w: &mut BitWriter, f: f64) {
    let tf = f * 1000.0;
    if !(0.0..=33_554_430.0).contains(&tf) || !is_whole_when_multiplied(f) {
        w.write_bit(false);
        w.write_bits(f.to_bits(), 64);
        return;
    }
    put_varbit_uint(w, tf.round() as u64 + 1);
}

/// Go's `isWholeWhenMultiplied`: `uint(math.Round(in*1000))` back to float equals `in`.
fn is_whole_when_multiplied(f: f64) -> bool {
    let i = (f * 1000.0).round();
    // Go converts to uint: negative values wrap, but callers have excluded them.
    let i = if i < 0.0 { 0.0 } else { i };
    i / 1000.0 == f
}

fn read_custom_bound(r: &mut BitReader<'_>) -> Result<f64, ChunkError> {
    match read_varbit_uint(r)? {
        0 => Ok(f64::from_bits(r.read_bits(64).ok_or_else(|| truncated(r))?)),
        b => Ok((b - 1) as f64 / 1000.0),
    }
}

/// The XOR state of one float field: its last value and the window of its last change
/// (`leading == 0xff`: none yet).
#[derive(Debug, Clone, Copy)]
pub(crate) struct XorValue {
    pub(crate) value: f64,
    pub(crate) leading: u8,
    pub(crate) trailing: u8,
}

impl XorValue {
    pub(crate) fn new(value: f64) -> Self {
        XorValue {
            value,
            leading: 0xff,
            trailing: 0,
        }
    }
}

/// Prometheus' `xorWrite`: `v` against the field's last value; updates the state.
pub(crate) fn xor_write(w: &mut BitWriter, state: &mut XorValue, v: f64) {
    let delta = v.to_bits() ^ state.value.to_bits();
    state.value = v;
    if delta == 0 {
        w.write_bit(false);
        return;
    }
    w.write_bit(true);
    let new_leading = (delta.leading_zeros() as u8).min(31);
    let new_trailing = delta.trailing_zeros() as u8;
    if state.leading != 0xff && new_leading >= state.leading && new_trailing >= state.trailing {
        w.write_bit(false);
        let sig = 64 - u32::from(state.leading) - u32::from(state.trailing);
        w.write_bits(delta >> state.trailing, sig);
        return;
    }
    state.leading = new_leading;
    state.trailing = new_trailing;
    w.write_bit(true);
    w.write_bits(u64::from(new_leading), 5);
    let sig = 64 - u32::from(new_leading) - u32::from(new_trailing);
    // 64 significant bits are written as 0 (6 bits), read back as 64.
    w.write_bits(u64::from(sig) & 0x3f, 6);
    w.write_bits(delta >> new_trailing, sig);
}

/// Prometheus' `xorRead`.
pub(crate) fn xor_read(r: &mut BitReader<'_>, state: &mut XorValue) -> Result<(), ChunkError> {
    if !r.read_bit().ok_or_else(|| truncated(r))? {
        return Ok(());
    }
    let (leading, sig) = if !r.read_bit().ok_or_else(|| truncated(r))? {
        if state.leading == 0xff {
            return Err(ChunkError::BadHistogram {
                offset: r.byte_offset(),
                reason: "a value reuses a window before any was set",
            });
        }
        (
            u32::from(state.leading),
            64 - u32::from(state.leading) - u32::from(state.trailing),
        )
    } else {
        let leading = r.read_bits(5).ok_or_else(|| truncated(r))? as u32;
        let mut sig = r.read_bits(6).ok_or_else(|| truncated(r))? as u32;
        if sig == 0 {
            sig = 64;
        }
        if leading + sig > 64 {
            return Err(ChunkError::BadHistogram {
                offset: r.byte_offset(),
                reason: "value window wider than 64 bits",
            });
        }
        state.leading = leading as u8;
        state.trailing = (64 - leading - sig) as u8;
        (leading, sig)
    };
    if leading + sig > 64 {
        return Err(ChunkError::BadHistogram {
            offset: r.byte_offset(),
            reason: "value window wider than 64 bits",
        });
    }
    let bits = r.read_bits(sig).ok_or_else(|| truncated(r))?;
    let trailing = 64 - leading - sig;
    let shifted = if trailing >= 64 { 0 } else { bits << trailing };
    state.value = f64::from_bits(state.value.to_bits() ^ shifted);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varbits_round_trip_at_every_bucket_edge() {
        let ints = [
            0i64,
            1,
            -1,
            4,
            -3,
            5,
            -4,
            32,
            -31,
            33,
            256,
            -255,
            2048,
            -2047,
            131_072,
            -131_071,
            16_777_216,
            -16_777_215,
            36_028_797_018_963_968,
            -36_028_797_018_963_967,
            i64::MAX,
            i64::MIN,
        ];
        let uints = [
            0u64,
            7,
            8,
            63,
            64,
            511,
            4095,
            262_143,
            33_554_431,
            1 << 56,
            u64::MAX,
        ];
        let mut w = BitWriter::default();
        for v in ints {
            put_varbit_int(&mut w, v);
        }
        for v in uints {
            put_varbit_uint(&mut w, v);
        }
        let bytes = w.to_bytes();
        let mut r = BitReader::new(&bytes);
        for v in ints {
            assert_eq!(read_varbit_int(&mut r), Ok(v));
        }
        for v in uints {
            assert_eq!(read_varbit_uint(&mut r), Ok(v));
        }
    }

    #[test]
    fn zero_thresholds_as_prometheus_stores_them() {
        for (threshold, first_byte) in [
            (0.0, 0u8),
            (2f64.powi(-128), 116),
            (1e-9, 255),
            (0.001, 255),
        ] {
            let mut w = BitWriter::default();
            put_zero_threshold(&mut w, threshold);
            let bytes = w.to_bytes();
            assert_eq!(bytes[0], first_byte, "{threshold}");
            assert_eq!(
                read_zero_threshold(&mut BitReader::new(&bytes)),
                Ok(threshold)
            );
        }
    }

    #[test]
    fn custom_bounds_round_trip() {
        let bounds = [
            0.0,
            0.005,
            1.0,
            2.5,
            33554.43,
            33554.431,
            -1.0,
            f64::INFINITY,
            0.1234,
        ];
        let mut w = BitWriter::default();
        for b in bounds {
            put_custom_bound(&mut w, b);
        }
        let bytes = w.to_bytes();
        let mut r = BitReader::new(&bytes);
        for b in bounds {
            assert_eq!(read_custom_bound(&mut r), Ok(b));
        }
    }
}
