//! MSB-first bit streams, the layout of Prometheus' `bstream`.

/// Appends bits MSB-first; the last byte is zero-padded when read out.
///
/// Reproduces one quirk of Go's `bstream` exactly: its `writeByte` always appends a fresh
/// byte after the one it fills, so a stream whose last primitive write was a whole byte at
/// a byte boundary ends with an extra zero byte. (`writeBits` writes whole bytes with
/// `writeByte` and the remaining `nbits % 8` bits with `writeBit`.)
#[derive(Debug, Clone, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    /// Pending bits not yet forming a whole byte, in the low `pending_bits` bits.
    pending: u64,
    pending_bits: u32,
    /// Whether the last primitive write in Go's terms was `writeByte`.
    last_was_byte: bool,
}

impl BitWriter {
    /// A stream that starts with `prefix` as whole bytes (Go's `bstream{stream: prefix}`).
    pub(crate) fn with_prefix(prefix: &[u8], capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity.max(prefix.len()));
        bytes.extend_from_slice(prefix);
        BitWriter {
            bytes,
            pending: 0,
            pending_bits: 0,
            last_was_byte: false,
        }
    }

    /// Writes a whole byte (at any bit alignment, as Go's `writeByte`).
    #[inline]
    pub(crate) fn write_byte(&mut self, byte: u8) {
        self.write_bits(u64::from(byte), 8);
    }

    /// Writes the low `nbits` bits of `value`, most significant first. `nbits <= 64`.
    #[inline]
    pub(crate) fn write_bits(&mut self, value: u64, nbits: u32) {
        debug_assert!(nbits <= 64);
        if nbits == 0 {
            return;
        }
        self.last_was_byte = nbits.is_multiple_of(8);
        if nbits > 32 {
            self.push_bits(value >> 32, nbits - 32);
            self.push_bits(value & 0xffff_ffff, 32);
            return;
        }
        self.push_bits(value, nbits);
    }

    #[inline]
    fn push_bits(&mut self, value: u64, nbits: u32) {
        let masked = if nbits == 0 {
            0
        } else {
            value & (u64::MAX >> (64 - nbits))
        };
        // pending holds < 8 bits, so shifting by <= 32 cannot overflow.
        self.pending = (self.pending << nbits) | masked;
        self.pending_bits += nbits;
        while self.pending_bits >= 8 {
            self.pending_bits -= 8;
            self.bytes.push((self.pending >> self.pending_bits) as u8);
        }
        self.pending &= (1u64 << self.pending_bits) - 1;
    }

    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Mutable access to the completed bytes (used to patch the sample-count header).
    pub(crate) fn completed_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// Whether Go's stream would hold one more byte than the whole bytes written: a partial
    /// byte, or the empty byte `writeByte` leaves behind.
    fn has_tail_byte(&self) -> bool {
        self.pending_bits > 0 || self.last_was_byte
    }

    /// Length in bytes as Go's `bstream.bytes()` would report it.
    pub(crate) fn len_bytes(&self) -> usize {
        self.bytes.len() + usize::from(self.has_tail_byte())
    }

    /// The stream as Go's `bstream.bytes()` returns it: the last byte zero-padded.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len_bytes());
        out.extend_from_slice(&self.bytes);
        if self.has_tail_byte() {
            out.push((self.pending << (8 - self.pending_bits)) as u8);
        }
        out
    }
}

/// Reads bits MSB-first from a byte slice. Reads past the end yield zero bits; callers check
/// [`BitReader::overrun`] to detect truncation, so decoding never indexes out of bounds.
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8], byte_offset: usize) -> Self {
        BitReader {
            data,
            pos: byte_offset * 8,
        }
    }

    /// The next 64 bits (at least 57 of them real), left-aligned; zeros past the end.
    #[inline(always)]
    pub(crate) fn peek(&self) -> u64 {
        let byte = self.pos >> 3;
        let word = match self.data.get(byte..byte + 8) {
            Some(slice) => {
                let mut buf = [0u8; 8];
                buf.copy_from_slice(slice);
                u64::from_be_bytes(buf)
            }
            None => self.peek_tail(byte),
        };
        word << (self.pos & 7)
    }

    #[cold]
    #[inline(never)]
    fn peek_tail(&self, byte: usize) -> u64 {
        let mut buf = [0u8; 8];
        if let Some(rest) = self.data.get(byte..) {
            for (dst, src) in buf.iter_mut().zip(rest) {
                *dst = *src;
            }
        }
        u64::from_be_bytes(buf)
    }

    #[inline(always)]
    pub(crate) fn skip(&mut self, nbits: u32) {
        self.pos += nbits as usize;
    }

    /// Reads `nbits` (1..=64) bits as an unsigned integer.
    #[inline(always)]
    pub(crate) fn read_bits(&mut self, nbits: u32) -> u64 {
        debug_assert!((1..=64).contains(&nbits));
        if nbits <= 56 {
            let value = self.peek() >> (64 - nbits);
            self.pos += nbits as usize;
            return value;
        }
        let high = self.peek() >> 32;
        self.pos += 32;
        let low_bits = nbits - 32;
        let low = self.peek() >> (64 - low_bits);
        self.pos += low_bits as usize;
        (high << low_bits) | low
    }

    /// Whether more bits were consumed than the data holds.
    #[inline(always)]
    pub(crate) fn overrun(&self) -> bool {
        self.pos > self.data.len() * 8
    }

    pub(crate) fn data(&self) -> &'a [u8] {
        self.data
    }

    pub(crate) fn byte_pos(&self) -> usize {
        self.pos.div_ceil(8)
    }

    pub(crate) fn set_byte_pos(&mut self, byte: usize) {
        self.pos = byte * 8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_msb_first_and_pads() {
        let mut w = BitWriter::default();
        w.write_bit(true);
        w.write_bits(0b01, 2);
        assert_eq!(w.to_bytes(), [0b1010_0000]);
        w.write_bits(0xabcd, 16);
        assert_eq!(w.to_bytes(), [0b1011_0101, 0b0111_1001, 0b1010_0000]);
    }

    #[test]
    fn byte_writes_at_a_boundary_leave_go_s_empty_tail_byte() {
        let mut w = BitWriter::default();
        w.write_bits(0xab, 8);
        assert_eq!(w.to_bytes(), [0xab, 0]);
        w.write_bit(true);
        assert_eq!(w.to_bytes(), [0xab, 0x80]);
        w.write_bits(0x7f, 7);
        assert_eq!(w.to_bytes(), [0xab, 0xff]);
        w.write_bits(0x1, 9);
        assert_eq!(w.to_bytes(), [0xab, 0xff, 0x00, 0x80]);
    }

    #[test]
    fn reads_back_any_widths() {
        let mut w = BitWriter::default();
        let widths = [1u32, 5, 64, 13, 57, 63, 2, 64, 1];
        let values: Vec<u64> = widths
            .iter()
            .enumerate()
            .map(|(i, &n)| (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)) >> (64 - n))
            .collect();
        for (&n, &v) in widths.iter().zip(&values) {
            w.write_bits(v, n);
        }
        let bytes = w.to_bytes();
        let mut r = BitReader::new(&bytes, 0);
        for (&n, &v) in widths.iter().zip(&values) {
            assert_eq!(r.read_bits(n), v, "width {n}");
        }
        assert!(!r.overrun());
        r.read_bits(8);
        assert!(r.overrun());
    }
}
