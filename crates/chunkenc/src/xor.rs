//! The XOR float chunk of Prometheus (`tsdb/chunkenc/xor.go`), bit for bit.
//!
//! Layout: a 2-byte big-endian sample count; sample 0 as a zig-zag varint timestamp and 64
//! raw value bits; sample 1 as a uvarint timestamp delta and an XOR-encoded value; later
//! samples as a delta-of-delta with prefix codes `0`, `10`+14, `110`+17, `1110`+20,
//! `1111`+64 bits and an XOR-encoded value (`0` same, `10` reuse window, `11` new window with
//! 5 bits of leading zeros and 6 bits of significant-bit count, 0 meaning 64).

use strata_types::Sample;

use crate::ChunkError;
use crate::bits::BitWriter;
use crate::varint::{get_uvarint, get_varint};

#[cfg(target_arch = "x86_64")]
mod simd;

/// Sentinel for "no value window yet", as Go's `0xff`.
const NO_WINDOW: u32 = 0xff;

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
    /// The bit stream after the 2-byte sample count.
    stream: BitWriter,
    /// Kept as wide as the other fields (at most `u16::MAX`): a narrow store followed by a
    /// wide load of the neighbouring bytes defeats store-to-load forwarding in tight loops.
    num_samples: u32,
    t: i64,
    v: f64,
    t_delta: u64,
    leading: u32,
    trailing: u32,
}

impl Default for XorEncoder {
    #[inline]
    fn default() -> Self {
        Self::new()
    }
}

impl XorEncoder {
    /// An empty chunk (just the 2-byte count).
    #[inline]
    pub fn new() -> Self {
        // Go: NewXORChunk starts from a 2-byte stream (the count) with a full last byte, so
        // the stream proper starts byte-aligned with no pending byte write.
        XorEncoder {
            stream: BitWriter::with_capacity(160),
            num_samples: 0,
            t: 0,
            v: 0.0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Samples appended so far.
    #[inline]
    pub fn num_samples(&self) -> u16 {
        self.num_samples as u16
    }

    /// Encoded size so far, in bytes.
    #[inline]
    pub fn size_bytes(&self) -> usize {
        2 + self.stream.len_bytes()
    }

    /// Timestamp of the last sample appended (meaningless while empty).
    #[inline]
    pub fn last_timestamp(&self) -> i64 {
        self.t
    }

    /// Appends a sample. Timestamps must increase strictly.
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        if self.num_samples == u32::from(u16::MAX) {
            return Err(ChunkError::Full);
        }
        if self.num_samples > 0 && t <= self.t {
            return Err(ChunkError::OutOfOrder { t, last: self.t });
        }
        self.append_unchecked(t, v);
        Ok(())
    }

    /// Appends without the ordering check (Prometheus itself encodes whatever it is given).
    /// A full chunk (65535 samples) ignores further samples.
    #[inline]
    pub fn append_unchecked(&mut self, t: i64, v: f64) {
        if self.num_samples == u32::from(u16::MAX) {
            return;
        }
        let mut t_delta = 0u64;
        match self.num_samples {
            0 => {
                let mut buf = [0u8; 10];
                let n = put_varint_into(&mut buf, t);
                for &byte in buf.get(..n).unwrap_or_default() {
                    self.stream.put(u64::from(byte), 8);
                }
                self.stream.put(v.to_bits(), 64);
                self.stream.set_last_was_byte(true);
            }
            1 => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let mut buf = [0u8; 10];
                let n = put_uvarint_into(&mut buf, t_delta);
                for &byte in buf.get(..n).unwrap_or_default() {
                    self.stream.put(u64::from(byte), 8);
                }
                self.stream.set_last_was_byte(true);
                self.write_value(v, 0, 0);
            }
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                // The delta-of-delta code is written together with the value's bits.
                if dod == 0 {
                    self.write_value(v, 0, 1);
                } else if fits(dod, 14) {
                    self.write_value(v, (0b10 << 14) | (dod as u64 & 0x3fff), 16);
                } else if fits(dod, 17) {
                    self.write_value(v, (0b110 << 17) | (dod as u64 & 0x1_ffff), 20);
                } else if fits(dod, 20) {
                    self.write_value(v, (0b1110 << 20) | (dod as u64 & 0xf_ffff), 24);
                } else {
                    self.stream.put(0b1111, 4);
                    self.stream.put(dod as u64, 64);
                    self.write_value(v, 0, 0);
                }
            }
        }
        self.t = t;
        self.v = v;
        self.t_delta = t_delta;
        self.num_samples += 1;
    }

    /// Writes `prefix_len` bits of `prefix` (a timestamp code, possibly empty) followed by the
    /// XOR encoding of `v` against the previous value, in as few writes as possible.
    ///
    /// Whether the previous window is reused is unpredictable on real data, so both codes are
    /// computed and one is picked with conditional moves rather than a branch.
    #[inline(always)]
    fn write_value(&mut self, v: f64, prefix: u64, prefix_len: u32) {
        let delta = v.to_bits() ^ self.v.to_bits();
        if delta == 0 {
            self.put_joined(prefix, prefix_len, 0, 1);
            self.stream.set_last_was_byte(false);
            return;
        }
        let leading = delta.leading_zeros().min(31);
        let trailing = delta.trailing_zeros();
        // With no window yet `self.leading` is NO_WINDOW, above any count of leading zeros.
        let reuse = leading >= self.leading && trailing >= self.trailing;
        let new_significant = 64 - leading - trailing;
        let new_header =
            (0b11 << 11) | (u64::from(leading) << 6) | u64::from(new_significant & 0x3f);
        let (header, header_len) = if reuse { (0b10, 2) } else { (new_header, 13) };
        if !reuse {
            self.leading = leading;
            self.trailing = trailing;
        }
        let window_trailing = self.trailing;
        let significant = 64 - self.leading - window_trailing;
        let total = prefix_len + header_len + significant;
        if total <= 56 {
            // The whole sample in one write (the usual case for counters).
            let code =
                (((prefix << header_len) | header) << significant) | (delta >> window_trailing);
            self.stream.put(code, total);
        } else {
            self.put_joined(prefix, prefix_len, header, header_len);
            self.stream.put(delta >> window_trailing, significant);
        }
        // Go writes the significant bits with writeBits: whole bytes by writeByte, the rest
        // by writeBit.
        self.stream.set_last_was_byte(significant.is_multiple_of(8));
    }

    #[inline(always)]
    fn put_joined(&mut self, prefix: u64, prefix_len: u32, bits: u64, len: u32) {
        // prefix_len <= 24 and len <= 13, so the joined write fits 64 bits; an empty prefix
        // is zero, so joining it changes nothing.
        debug_assert!(prefix_len > 0 || prefix == 0);
        self.stream.put((prefix << len) | bits, prefix_len + len);
    }

    /// The chunk bytes (count header included), exactly as Prometheus stores them.
    #[inline]
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_bytes());
        out.extend_from_slice(&(self.num_samples as u16).to_be_bytes());
        self.stream.append_to(&mut out);
        out
    }
}

fn put_uvarint_into(buf: &mut [u8; 10], mut v: u64) -> usize {
    let mut i = 0;
    while v >= 0x80 && i < 9 {
        if let Some(slot) = buf.get_mut(i) {
            *slot = (v as u8) | 0x80;
        }
        v >>= 7;
        i += 1;
    }
    if let Some(slot) = buf.get_mut(i) {
        *slot = v as u8;
    }
    i + 1
}

fn put_varint_into(buf: &mut [u8; 10], v: i64) -> usize {
    put_uvarint_into(buf, ((v << 1) ^ (v >> 63)) as u64)
}

/// The sample count from a chunk's 2-byte header.
pub fn xor_num_samples(data: &[u8]) -> Result<u16, ChunkError> {
    match data.get(0..2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(ChunkError::MissingHeader { len: data.len() }),
    }
}

/// Decoder state shared by the iterator and the batch decoder.
#[derive(Debug, Clone)]
struct State {
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u32,
    trailing: u32,
}

/// A 64-bit register of upcoming bits, refilled from the chunk a whole byte at a time.
///
/// Invariant: the first `count` bits of `buf` are the stream bits just before byte `byte`;
/// bits below them are zero or the correct next bits. Reading past the end of the data
/// yields zero bits; a [`BitBuf::position`] past the end reveals truncation.
#[derive(Debug, Clone)]
struct BitBuf {
    buf: u64,
    count: u32,
    byte: usize,
}

impl BitBuf {
    /// A buffer positioned at bit `pos` of `data`.
    #[inline(always)]
    fn at(data: &[u8], pos: usize) -> Self {
        let mut bb = BitBuf {
            buf: 0,
            count: 0,
            byte: pos >> 3,
        };
        bb.refill(data);
        bb.consume((pos & 7) as u32);
        bb
    }

    /// Tops the buffer up to at least 56 bits.
    #[inline(always)]
    fn refill(&mut self, data: &[u8]) {
        let word = load_be64(data, self.byte);
        self.buf |= word >> self.count;
        let bytes = (63 - self.count) >> 3;
        self.byte += bytes as usize;
        self.count += bytes * 8;
    }

    /// Drops `n` (< 64) bits.
    #[inline(always)]
    fn consume(&mut self, n: u32) {
        debug_assert!(n < 64 && n <= self.count);
        self.buf <<= n;
        self.count -= n;
    }

    /// Reads `n` (1..=32) bits; the buffer must hold at least `n`.
    #[inline(always)]
    fn take(&mut self, n: u32) -> u64 {
        let bits = self.buf >> (64 - n);
        self.consume(n);
        bits
    }

    /// Reads `n` (1..=64) bits, refilling as needed.
    #[inline(always)]
    fn take_long(&mut self, data: &[u8], n: u32) -> u64 {
        if n <= 32 {
            if self.count < n {
                self.refill(data);
            }
            return self.take(n);
        }
        if self.count < 32 {
            self.refill(data);
        }
        let high = self.take(32);
        self.refill(data);
        let low_bits = n - 32;
        let low = self.buf >> (64 - low_bits);
        self.consume(low_bits);
        (high << low_bits) | low
    }

    /// Bit position of the next unread bit.
    #[inline(always)]
    fn position(&self) -> usize {
        self.byte * 8 - self.count as usize
    }
}

/// Eight bytes at `byte` as a big-endian integer; zeros past the end of `data`.
#[inline(always)]
fn load_be64(data: &[u8], byte: usize) -> u64 {
    match data.get(byte..byte.saturating_add(8)) {
        Some(slice) => {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(slice);
            u64::from_be_bytes(buf)
        }
        None => load_tail(data, byte),
    }
}

#[cold]
#[inline(never)]
fn load_tail(data: &[u8], byte: usize) -> u64 {
    let mut buf = [0u8; 8];
    if let Some(rest) = data.get(byte..) {
        for (dst, src) in buf.iter_mut().zip(rest) {
            *dst = *src;
        }
    }
    u64::from_be_bytes(buf)
}

/// Reads a delta-of-delta.
#[inline(always)]
fn read_dod(data: &[u8], bb: &mut BitBuf) -> i64 {
    if bb.count < 32 {
        bb.refill(data);
    }
    let word = bb.buf;
    if word >> 63 == 0 {
        bb.consume(1);
        return 0;
    }
    if word >> 62 == 0b10 {
        bb.consume(16);
        return signed((word << 2) >> 50, 14);
    }
    if word >> 61 == 0b110 {
        bb.consume(20);
        return signed((word << 3) >> 47, 17);
    }
    if word >> 60 == 0b1110 {
        bb.consume(24);
        return signed((word << 4) >> 44, 20);
    }
    bb.consume(4);
    bb.take_long(data, 64) as i64
}

/// Reads an XOR-encoded value into `state`.
#[inline(always)]
fn read_value(
    data: &[u8],
    bb: &mut BitBuf,
    state: &mut State,
    sample: u16,
) -> Result<(), ChunkError> {
    if bb.count < 16 {
        bb.refill(data);
    }
    let word = bb.buf;
    if word >> 63 == 0 {
        bb.consume(1);
        return Ok(());
    }
    if word >> 62 == 0b11 {
        // New window: 2 control bits, 5 bits leading, 6 bits significant.
        let leading = ((word >> 57) & 0x1f) as u32;
        let mut significant = ((word >> 51) & 0x3f) as u32;
        if significant == 0 {
            significant = 64;
        }
        bb.consume(13);
        if leading + significant > 64 {
            return Err(ChunkError::BadWindow {
                sample,
                leading,
                significant,
            });
        }
        state.leading = leading;
        state.trailing = 64 - leading - significant;
    } else {
        bb.consume(2);
    }
    let significant = 64 - state.leading - state.trailing;
    if significant == 0 {
        // Only from corrupt input: a window always has at least one significant bit.
        return Err(ChunkError::BadWindow {
            sample,
            leading: state.leading,
            significant,
        });
    }
    let bits = if significant <= 56 {
        if bb.count < significant {
            bb.refill(data);
        }
        let bits = bb.buf >> (64 - significant);
        bb.consume(significant);
        bits
    } else {
        bb.take_long(data, significant)
    };
    state.v ^= bits << state.trailing;
    Ok(())
}

/// Iterates the samples of an XOR chunk. Never panics on corrupt input: iteration stops
/// early and [`XorIter::finish`] reports why.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    data: &'a [u8],
    /// Bit position of the next sample.
    pos: usize,
    total: u16,
    read: u16,
    state: State,
    error: Option<ChunkError>,
}

impl<'a> XorIter<'a> {
    /// Starts iterating; fails only when the 2-byte header is missing.
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        let total = xor_num_samples(data)?;
        Ok(XorIter {
            data,
            pos: 16,
            total,
            read: 0,
            state: State {
                t: 0,
                v: 0,
                t_delta: 0,
                leading: 0,
                trailing: 0,
            },
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
        let decoded = if self.read >= 2 {
            let mut bb = BitBuf::at(self.data, self.pos);
            let dod = read_dod(self.data, &mut bb);
            self.state.t_delta = (self.state.t_delta as i64).wrapping_add(dod) as u64;
            self.state.t = self.state.t.wrapping_add(self.state.t_delta as i64);
            let result = read_value(self.data, &mut bb, &mut self.state, self.read);
            self.pos = bb.position();
            result
        } else if self.read == 0 {
            self.read_first()
        } else {
            self.read_second()
        };
        if let Err(err) = decoded {
            self.error = Some(err);
            return None;
        }
        if self.pos > self.data.len() * 8 {
            self.error = Some(ChunkError::Truncated {
                announced: self.total,
                decoded: self.read,
            });
            return None;
        }
        self.read += 1;
        Some((self.state.t, f64::from_bits(self.state.v)))
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
        // Sample 0 starts byte-aligned right after the header.
        let start = self.pos / 8;
        let rest = self.data.get(start..).unwrap_or_default();
        let (t, n) = get_varint(rest).ok_or(ChunkError::BadVarint { offset: start })?;
        self.pos = (start + n) * 8;
        self.state.t = t;
        let mut bb = BitBuf::at(self.data, self.pos);
        self.state.v = bb.take_long(self.data, 64);
        self.pos = bb.position();
        Ok(())
    }

    fn read_second(&mut self) -> Result<(), ChunkError> {
        // Still byte-aligned: sample 0 was whole bytes.
        let start = self.pos / 8;
        let rest = self.data.get(start..).unwrap_or_default();
        let (t_delta, n) = get_uvarint(rest).ok_or(ChunkError::BadVarint { offset: start })?;
        self.pos = (start + n) * 8;
        self.state.t_delta = t_delta;
        self.state.t = self.state.t.wrapping_add(t_delta as i64);
        let mut bb = BitBuf::at(self.data, self.pos);
        let result = read_value(self.data, &mut bb, &mut self.state, 1);
        self.pos = bb.position();
        result
    }

    /// Decodes all remaining samples into `ts` and `vs` (appending) in one tight loop.
    pub fn decode_remaining(
        &mut self,
        ts: &mut Vec<i64>,
        vs: &mut Vec<f64>,
    ) -> Result<(), ChunkError> {
        while self.read < 2 {
            match self.next_sample() {
                Some((t, v)) => {
                    ts.push(t);
                    vs.push(v);
                }
                None => return self.take_result(),
            }
        }
        let remaining = usize::from(self.total - self.read);
        if usize::from(self.total) > most_samples(self.data.len()) {
            // More samples than the bytes can hold: truncated or corrupt. Refused before
            // room is made for them, so a tiny chunk cannot claim 65,535 samples of memory.
            let err = ChunkError::Truncated {
                announced: self.total,
                decoded: self.read,
            };
            self.error = Some(err.clone());
            return Err(err);
        }
        let ts_start = ts.len();
        let vs_start = vs.len();
        ts.resize(ts_start + remaining, 0);
        vs.resize(vs_start + remaining, 0.0);
        let ts_out = ts.get_mut(ts_start..).unwrap_or_default();
        let vs_out = vs.get_mut(vs_start..).unwrap_or_default();
        let (decoded, result) = self.decode_rest_into(ts_out, vs_out);
        ts.truncate(ts_start + decoded);
        vs.truncate(vs_start + decoded);
        result
    }

    /// Decodes samples from the third on into `ts_out` and `vs_out` (which must be as long
    /// as the samples remaining); returns how many it decoded and why it stopped early.
    fn decode_rest_into(
        &mut self,
        ts_out: &mut [i64],
        vs_out: &mut [f64],
    ) -> (usize, Result<(), ChunkError>) {
        debug_assert!(self.read >= 2);
        let data = self.data;
        let mut bb = BitBuf::at(data, self.pos);
        let mut state = self.state.clone();
        let mut sample = self.read;
        let mut failure = None;
        for (t_slot, v_slot) in ts_out.iter_mut().zip(vs_out.iter_mut()) {
            let dod = read_dod(data, &mut bb);
            state.t_delta = (state.t_delta as i64).wrapping_add(dod) as u64;
            state.t = state.t.wrapping_add(state.t_delta as i64);
            if let Err(err) = read_value(data, &mut bb, &mut state, sample) {
                failure = Some(err);
                break;
            }
            *t_slot = state.t;
            *v_slot = f64::from_bits(state.v);
            sample += 1;
        }
        // Reads past the end yield zero bits; one check at the end finds truncation.
        let pos = bb.position();
        if failure.is_none() && pos > data.len() * 8 {
            failure = Some(ChunkError::Truncated {
                announced: self.total,
                decoded: self.read,
            });
        }
        self.pos = pos;
        self.state = state;
        let decoded = usize::from(sample - self.read);
        if let Some(err) = failure {
            self.read = sample;
            self.error = Some(err.clone());
            return (decoded, Err(err));
        }
        self.read = self.total;
        (decoded, Ok(()))
    }

    fn take_result(&mut self) -> Result<(), ChunkError> {
        match self.error.clone() {
            Some(err) => Err(err),
            None => Ok(()),
        }
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
    iter.decode_remaining(ts, vs)
}

/// Where one chunk's decoded samples go: exactly as many slots as its header counts, as
/// two columns (`(&mut [i64], &mut [f64])`) or as samples (`&mut [Sample]`).
pub(crate) trait Sink {
    /// Slots for samples.
    fn len(&self) -> usize;
    /// Sample `k` (ignored past the end).
    fn put(&mut self, k: usize, t: i64, v: f64);
    /// Samples from the third on, from the vector decoder's rows (`GROUP` lanes a row, one
    /// row a sample): lane `lane`'s column, timestamps and value bits.
    #[cfg(target_arch = "x86_64")]
    fn put_rows(&mut self, rows_t: &[i64], rows_v: &[i64], lane: usize);
    /// Decodes `chunk` into the slots with the scalar decoder (which decides the errors).
    fn decode_scalar(&mut self, chunk: &[u8]) -> Result<(), ChunkError>;
}

impl Sink for (&mut [i64], &mut [f64]) {
    fn len(&self) -> usize {
        self.0.len().min(self.1.len())
    }

    fn put(&mut self, k: usize, t: i64, v: f64) {
        if let (Some(t_slot), Some(v_slot)) = (self.0.get_mut(k), self.1.get_mut(k)) {
            *t_slot = t;
            *v_slot = v;
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn put_rows(&mut self, rows_t: &[i64], rows_v: &[i64], lane: usize) {
        let ts_rest = self.0.get_mut(2..).unwrap_or_default();
        for (slot, row) in ts_rest.iter_mut().zip(rows_t.chunks_exact(simd::GROUP)) {
            if let Some(&t) = row.get(lane) {
                *slot = t;
            }
        }
        let vs_rest = self.1.get_mut(2..).unwrap_or_default();
        for (slot, row) in vs_rest.iter_mut().zip(rows_v.chunks_exact(simd::GROUP)) {
            if let Some(&v) = row.get(lane) {
                *slot = f64::from_bits(v as u64);
            }
        }
    }

    fn decode_scalar(&mut self, chunk: &[u8]) -> Result<(), ChunkError> {
        decode_into(chunk, self.0, self.1)
    }
}

impl Sink for &mut [Sample] {
    fn len(&self) -> usize {
        <[Sample]>::len(self)
    }

    fn put(&mut self, k: usize, t: i64, v: f64) {
        if let Some(slot) = self.get_mut(k) {
            *slot = Sample { t, v };
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn put_rows(&mut self, rows_t: &[i64], rows_v: &[i64], lane: usize) {
        let rest = self.get_mut(2..).unwrap_or_default();
        let rows = rows_t
            .chunks_exact(simd::GROUP)
            .zip(rows_v.chunks_exact(simd::GROUP));
        for (slot, (row_t, row_v)) in rest.iter_mut().zip(rows) {
            if let (Some(&t), Some(&v)) = (row_t.get(lane), row_v.get(lane)) {
                *slot = Sample {
                    t,
                    v: f64::from_bits(v as u64),
                };
            }
        }
    }

    fn decode_scalar(&mut self, chunk: &[u8]) -> Result<(), ChunkError> {
        let n = Sink::len(self);
        let (mut ts, mut vs) = (vec![0; n], vec![0.0; n]);
        decode_into(chunk, &mut ts, &mut vs)?;
        for (slot, (t, v)) in self.iter_mut().zip(ts.into_iter().zip(vs)) {
            *slot = Sample { t, v };
        }
        Ok(())
    }
}

/// Decodes one chunk into `ts` and `vs`, which are exactly as long as its sample count.
///
/// A chunk whose count its bytes cannot hold is given no room ([`room_for`]); it is
/// decoded on its own, which reports its error.
fn decode_into(data: &[u8], ts: &mut [i64], vs: &mut [f64]) -> Result<(), ChunkError> {
    let mut iter = XorIter::new(data)?;
    if ts.len() != usize::from(iter.total) || vs.len() != ts.len() {
        let (mut t, mut v) = (Vec::new(), Vec::new());
        return iter.decode_remaining(&mut t, &mut v);
    }
    for (t_slot, v_slot) in ts.iter_mut().zip(vs.iter_mut()).take(2) {
        let Some((t, v)) = iter.next_sample() else {
            return iter.take_result();
        };
        *t_slot = t;
        *v_slot = f64::from_bits(v.to_bits());
    }
    if iter.read < iter.total {
        let ts_rest = ts.get_mut(2..).unwrap_or_default();
        let vs_rest = vs.get_mut(2..).unwrap_or_default();
        iter.decode_rest_into(ts_rest, vs_rest).1?;
    }
    Ok(())
}

/// The most samples `len` bytes of XOR chunk can hold: every sample after the first two
/// takes at least two bits (a loose bound: the first two take more).
fn most_samples(len: usize) -> usize {
    len.saturating_mul(4).saturating_add(2)
}

/// Output room [`decode_xor_chunks`] makes for a chunk: its sample count, or none when the
/// header is missing or claims more than the bytes can hold (decoding it then fails).
fn room_for(chunk: &[u8]) -> usize {
    let n = usize::from(xor_num_samples(chunk).unwrap_or_default());
    if n > most_samples(chunk.len()) { 0 } else { n }
}

/// Fewest chunks worth handing to the lane decoder (fewer would leave lanes idle).
#[cfg(target_arch = "x86_64")]
const MIN_LANE_CHUNKS: usize = 4;

/// Decodes several XOR chunks, in order (a series' chunks), appending all their samples to
/// `ts` and `vs`: the same samples as [`decode_xor`] on each chunk in turn. On x86-64 CPUs
/// with AVX-512, sixteen chunks are decoded at once, one per 64-bit lane of two vector registers.
///
/// On error, `ts` and `vs` are left as they were and the error names the chunk's index.
pub fn decode_xor_chunks(
    chunks: &[&[u8]],
    ts: &mut Vec<i64>,
    vs: &mut Vec<f64>,
) -> Result<(), (usize, ChunkError)> {
    decode_xor_chunks_with(chunks, ts, vs, true)
}

/// [`decode_xor_chunks`], with the vector lanes allowed or not (tests take both paths).
fn decode_xor_chunks_with(
    chunks: &[&[u8]],
    ts: &mut Vec<i64>,
    vs: &mut Vec<f64>,
    lanes: bool,
) -> Result<(), (usize, ChunkError)> {
    let (ts_start, vs_start) = (ts.len(), vs.len());
    // A chunk without a header counts no samples here; decoding it reports the error, in
    // chunk order.
    let total: usize = chunks.iter().map(|chunk| room_for(chunk)).sum();
    ts.resize(ts_start + total, 0);
    vs.resize(vs_start + total, 0.0);
    let result = decode_chunks_into_columns(
        chunks,
        ts.get_mut(ts_start..).unwrap_or_default(),
        vs.get_mut(vs_start..).unwrap_or_default(),
        lanes,
    );
    if result.is_err() {
        ts.truncate(ts_start);
        vs.truncate(vs_start);
    }
    result
}

/// Decodes several XOR chunks, in order, appending all their samples to `out`: what
/// [`decode_xor_chunks`] gives, as samples (no second pass joining the columns).
///
/// On error, `out` is left as it was and the error names the chunk's index.
pub fn decode_xor_chunks_samples(
    chunks: &[&[u8]],
    out: &mut Vec<Sample>,
) -> Result<(), (usize, ChunkError)> {
    let start = out.len();
    let total: usize = chunks.iter().map(|chunk| room_for(chunk)).sum();
    out.resize(start + total, Sample { t: 0, v: 0.0 });
    let mut rest = out.get_mut(start..).unwrap_or_default();
    let mut outputs: Vec<&mut [Sample]> = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let n = room_for(chunk).min(rest.len());
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
        outputs.push(head);
        rest = tail;
    }
    let result = decode_chunks_into(chunks, &mut outputs, true);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// [`decode_xor_chunks`] into slices exactly as long as all the chunks' samples.
fn decode_chunks_into_columns(
    chunks: &[&[u8]],
    mut ts: &mut [i64],
    mut vs: &mut [f64],
    lanes: bool,
) -> Result<(), (usize, ChunkError)> {
    // One output slice pair per chunk, split off in order.
    let mut outputs: Vec<(&mut [i64], &mut [f64])> = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let n = room_for(chunk);
        let n = n.min(ts.len()).min(vs.len());
        let (t_head, t_tail) = std::mem::take(&mut ts).split_at_mut(n);
        let (v_head, v_tail) = std::mem::take(&mut vs).split_at_mut(n);
        outputs.push((t_head, v_head));
        ts = t_tail;
        vs = v_tail;
    }
    decode_chunks_into(chunks, &mut outputs, lanes)
}

/// Decodes chunk `i` into `outputs[i]` (each exactly as long as the chunk's sample count):
/// sixteen at a time in vector lanes where the CPU has them, else one by one.
fn decode_chunks_into<S: Sink>(
    chunks: &[&[u8]],
    outputs: &mut [S],
    lanes: bool,
) -> Result<(), (usize, ChunkError)> {
    #[cfg(target_arch = "x86_64")]
    if lanes && chunks.len() >= MIN_LANE_CHUNKS && simd::available() {
        return simd::SCRATCH.with_borrow_mut(|scratch| {
            for (group, (chunk_group, output_group)) in chunks
                .chunks(simd::GROUP)
                .zip(outputs.chunks_mut(simd::GROUP))
                .enumerate()
            {
                let errors = simd::decode_group(chunk_group, output_group, scratch);
                if let Some((i, err)) = errors
                    .into_iter()
                    .enumerate()
                    .find_map(|(i, err)| err.map(|err| (i, err)))
                {
                    return Err((group * simd::GROUP + i, err));
                }
            }
            scratch.shrink();
            Ok(())
        });
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = lanes;
    for (i, (chunk, out)) in chunks.iter().zip(outputs.iter_mut()).enumerate() {
        out.decode_scalar(chunk).map_err(|err| (i, err))?;
    }
    Ok(())
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
    fn a_count_the_bytes_cannot_hold_is_refused_without_making_room_for_it() {
        let mut chunk = encode(&[(1_000, 1.0), (2_000, 2.0), (3_000, 3.0)]);
        chunk[0] = 0xff;
        chunk[1] = 0xff;
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        let err = decode_xor(&chunk, &mut ts, &mut vs).unwrap_err();
        assert!(
            matches!(
                err,
                ChunkError::Truncated {
                    announced: 65535,
                    ..
                }
            ),
            "{err}"
        );
        assert!(ts.capacity() < 1_000 && vs.capacity() < 1_000);
        let chunks = vec![chunk.as_slice(); 100];
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        assert_eq!(decode_xor_chunks(&chunks, &mut ts, &mut vs), Err((0, err)));
        assert!(ts.capacity() < 1_000 && vs.capacity() < 1_000);
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

    /// Samples with timestamps and values of every kind the codes distinguish.
    fn chunk_strategy() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::collection::vec((1i64..5_000_000, float_strategy()), 0..200),
            any::<bool>(),
        )
            .prop_map(|(steps, regular)| {
                let mut t = 1_700_000_000_000i64;
                let samples: Vec<(i64, f64)> = steps
                    .into_iter()
                    .map(|(dt, v)| {
                        t += if regular { 15_000 + dt % 3 } else { dt };
                        (t, v)
                    })
                    .collect();
                encode(&samples)
            })
    }

    #[test]
    fn chunks_decoder_matches_one_at_a_time_on_many_chunk_counts() {
        let chunks: Vec<Vec<u8>> = (0..40)
            .map(|c| {
                let samples: Vec<(i64, f64)> = (0..(c * 7 % 130))
                    .map(|i| {
                        (
                            1_000 * i64::from(i) + i64::from(i % 3),
                            f64::from(i * c).sqrt(),
                        )
                    })
                    .collect();
                encode(&samples)
            })
            .collect();
        for n in 0..chunks.len() {
            let slices: Vec<&[u8]> = chunks.iter().take(n).map(Vec::as_slice).collect();
            let (mut ts, mut vs) = (vec![7], vec![7.0]);
            decode_xor_chunks(&slices, &mut ts, &mut vs).unwrap();
            let (mut ets, mut evs) = (vec![7], vec![7.0]);
            for chunk in &slices {
                decode_xor(chunk, &mut ets, &mut evs).unwrap();
            }
            assert_eq!(ts, ets);
            assert_eq!(
                vs.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                evs.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    proptest! {
        /// Decoding chunks together gives what decoding each alone gives: the same samples,
        /// or an error for the first chunk that has one, with the outputs left untouched.
        #[test]
        fn chunks_decoder_agrees_with_decode_xor(
            chunks in proptest::collection::vec(chunk_strategy(), 0..20),
            damage in proptest::collection::vec((any::<u16>(), any::<u8>(), any::<u8>()), 0..3),
        ) {
            let mut chunks = chunks;
            for (at, flip, cut) in damage {
                if chunks.is_empty() {
                    break;
                }
                let i = usize::from(at) % chunks.len();
                let chunk = &mut chunks[i];
                if chunk.is_empty() {
                    continue;
                }
                let j = usize::from(at) % chunk.len();
                chunk[j] ^= flip;
                let keep = chunk.len() - usize::from(cut) % (chunk.len() / 3 + 1);
                chunk.truncate(keep);
            }
            let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            let (mut ets, mut evs) = (Vec::new(), Vec::new());
            let mut expected = Ok(());
            for (i, chunk) in slices.iter().enumerate() {
                if let Err(err) = decode_xor(chunk, &mut ets, &mut evs) {
                    expected = Err((i, err));
                    break;
                }
            }
            for lanes in [true, false] {
                let (mut ts, mut vs) = (vec![1i64], vec![1.0f64]);
                let got = decode_xor_chunks_with(&slices, &mut ts, &mut vs, lanes);
                match &expected {
                    Ok(()) => {
                        prop_assert!(got.is_ok(), "{got:?}");
                        prop_assert_eq!(&ts[1..], &ets[..]);
                        let bits: Vec<u64> = vs[1..].iter().map(|v| v.to_bits()).collect();
                        let ebits: Vec<u64> = evs.iter().map(|v| v.to_bits()).collect();
                        prop_assert_eq!(bits, ebits);
                    }
                    Err(err) => {
                        prop_assert_eq!(&got, &Err(err.clone()));
                        prop_assert_eq!(ts, vec![1]);
                        prop_assert_eq!(vs.len(), 1);
                    }
                }
            }
            // As samples: the same, or the same error with the output untouched.
            let mut samples = vec![Sample { t: 1, v: 1.0 }];
            let got = decode_xor_chunks_samples(&slices, &mut samples);
            match &expected {
                Ok(()) => {
                    prop_assert!(got.is_ok(), "{got:?}");
                    let ts: Vec<i64> = samples[1..].iter().map(|s| s.t).collect();
                    let bits: Vec<u64> = samples[1..].iter().map(|s| s.v.to_bits()).collect();
                    let ebits: Vec<u64> = evs.iter().map(|v| v.to_bits()).collect();
                    prop_assert_eq!(ts, ets);
                    prop_assert_eq!(bits, ebits);
                }
                Err(err) => {
                    prop_assert_eq!(&got, &Err(err.clone()));
                    prop_assert_eq!(samples.len(), 1);
                }
            }
        }

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
            let bytes = encode(&samples);
            let decoded = decode(&bytes).unwrap();
            prop_assert_eq!(decoded.len(), samples.len());
            for (a, b) in decoded.iter().zip(&samples) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
            let (mut ts, mut vs) = (Vec::new(), Vec::new());
            decode_xor(&bytes, &mut ts, &mut vs).unwrap();
            prop_assert_eq!(ts.len(), samples.len());
            for ((t, v), b) in ts.iter().zip(&vs).zip(&samples) {
                prop_assert_eq!(*t, b.0);
                prop_assert_eq!(v.to_bits(), b.1.to_bits());
            }
        }

        /// The batch decoder agrees with the iterator on any bytes: the same samples when
        /// the chunk is whole, an error when it is not.
        #[test]
        fn batch_agrees_with_iterator(
            steps in proptest::collection::vec((1i64..5_000_000, float_strategy()), 0..200),
            cut in any::<u16>(),
            flip in any::<(u16, u8)>(),
        ) {
            let mut t = 1_700_000_000_000i64;
            let samples: Vec<(i64, f64)> = steps
                .into_iter()
                .map(|(dt, v)| {
                    t += dt;
                    (t, v)
                })
                .collect();
            let mut bytes = encode(&samples);
            let flip_at = usize::from(flip.0) % bytes.len();
            bytes[flip_at] ^= flip.1;
            bytes.truncate(bytes.len() - usize::from(cut) % (bytes.len() / 2 + 1));
            let iterated = decode(&bytes);
            let (mut ts, mut vs) = (Vec::new(), Vec::new());
            let batch = decode_xor(&bytes, &mut ts, &mut vs);
            match iterated {
                Ok(expected) => {
                    prop_assert!(batch.is_ok(), "{batch:?}");
                    prop_assert_eq!(ts.len(), expected.len());
                    for ((t, v), e) in ts.iter().zip(&vs).zip(&expected) {
                        prop_assert_eq!(*t, e.0);
                        prop_assert_eq!(v.to_bits(), e.1.to_bits());
                    }
                }
                Err(_) => prop_assert!(batch.is_err()),
            }
        }
    }
}
