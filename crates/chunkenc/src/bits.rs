//! MSB-first bit streams, the layout of Prometheus' `bstream`.

/// Appends bits MSB-first into a 64-bit accumulator, flushing 8 bytes at a time; the last
/// byte is zero-padded when read out.
///
/// Reproduces one quirk of Go's `bstream` exactly: its `writeByte` always appends a fresh
/// byte after the one it fills, so a stream whose last primitive write was a whole byte at
/// a byte boundary ends with an extra zero byte. (`writeBits` writes whole bytes with
/// `writeByte` and the remaining `nbits % 8` bits with `writeBit`.) Callers that combine
/// several Go-level writes into one [`BitWriter::put`] say which kind of write came last
/// with [`BitWriter::set_last_was_byte`]; [`BitWriter::write_bits`] does it for them.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    /// Bits not yet flushed, left-aligned: the first `used` bits are valid.
    acc: u64,
    used: u32,
    /// Whether the last primitive write in Go's terms was `writeByte`.
    last_was_byte: bool,
}

impl BitWriter {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        BitWriter {
            bytes: Vec::with_capacity(capacity),
            acc: 0,
            used: 0,
            last_was_byte: false,
        }
    }

    /// Writes the low `nbits` bits of `value` as Go's `writeBits` does. `nbits <= 64`.
    #[cfg(test)]
    pub(crate) fn write_bits(&mut self, value: u64, nbits: u32) {
        if nbits == 0 {
            return;
        }
        self.put(value, nbits);
        self.last_was_byte = nbits.is_multiple_of(8);
    }

    #[cfg(test)]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.put(u64::from(bit), 1);
        self.last_was_byte = false;
    }

    /// Records whether the last Go-level write was a byte write (see the type docs).
    #[inline]
    pub(crate) fn set_last_was_byte(&mut self, last_was_byte: bool) {
        self.last_was_byte = last_was_byte;
    }

    /// Appends the low `nbits` (1..=64) bits of `value`, most significant first, without
    /// touching the Go write-kind flag.
    #[inline(always)]
    pub(crate) fn put(&mut self, value: u64, nbits: u32) {
        debug_assert!((1..=64).contains(&nbits));
        let value = if nbits == 64 {
            value
        } else {
            value & ((1u64 << nbits) - 1)
        };
        let free = 64 - self.used; // always >= 1
        if nbits < free {
            self.acc |= value << (free - nbits);
            self.used += nbits;
            return;
        }
        let rest = nbits - free;
        self.acc |= value >> rest;
        self.bytes.extend_from_slice(&self.acc.to_be_bytes());
        self.acc = if rest == 0 { 0 } else { value << (64 - rest) };
        self.used = rest;
    }

    /// Whether Go's stream would hold one more byte than the whole bytes written: a partial
    /// byte, or the empty byte `writeByte` leaves behind.
    fn tail_bytes(&self) -> usize {
        let partial = (self.used as usize).div_ceil(8);
        let empty_after_byte_write = usize::from(self.used.is_multiple_of(8) && self.last_was_byte);
        partial + empty_after_byte_write
    }

    /// Length in bytes as Go's `bstream.bytes()` would report it.
    pub(crate) fn len_bytes(&self) -> usize {
        self.bytes.len() + self.tail_bytes()
    }

    /// Appends the stream as Go's `bstream.bytes()` returns it to `out`.
    pub(crate) fn append_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
        let partial = (self.used as usize).div_ceil(8);
        out.extend_from_slice(self.acc.to_be_bytes().get(..partial).unwrap_or_default());
        if self.used.is_multiple_of(8) && self.last_was_byte {
            out.push(0);
        }
    }

    /// The stream as bytes.
    #[cfg(test)]
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len_bytes());
        self.append_to(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_msb_first_and_pads() {
        let mut w = BitWriter::with_capacity(4);
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
    fn long_writes_cross_the_accumulator() {
        let mut w = BitWriter::default();
        w.write_bits(0b101, 3);
        w.write_bits(u64::MAX, 64);
        w.write_bits(0, 61);
        let bytes = w.to_bytes();
        assert_eq!(bytes.len(), 16);
        assert_eq!(bytes[0], 0b1011_1111);
        assert_eq!(bytes[8], 0b1110_0000);
        assert!(bytes[9..].iter().all(|&b| b == 0));
    }
}
