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
    /// The whole bytes written are `bytes[..len]`; the bytes after them are slack that every
    /// write scribbles 8 bytes over, so that no write branches on how many bytes it fills.
    bytes: Vec<u8>,
    len: usize,
    /// Bits not yet in a whole byte, left-aligned: the first `used` (< 8) bits are valid.
    acc: u64,
    used: u32,
    /// Whether the last primitive write in Go's terms was `writeByte`.
    last_was_byte: bool,
}

/// Slack kept after the whole bytes: one 8-byte store.
const SLACK: usize = 8;

/// `bytes` with room for more whole bytes than `len`. Takes and returns the vector by value:
/// a pointer into the writer would make the compiler keep all its fields in memory, where a
/// tight loop waits on store-to-load forwarding.
#[cold]
#[inline(never)]
fn grown(mut bytes: Vec<u8>, len: usize) -> Vec<u8> {
    let size = (bytes.len() * 2).max(len + 4 * SLACK);
    bytes.resize(size, 0);
    bytes
}

impl BitWriter {
    #[inline]
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        BitWriter {
            bytes: vec![0; capacity.max(SLACK)],
            len: 0,
            acc: 0,
            used: 0,
            last_was_byte: false,
        }
    }

    /// Writes the low `nbits` bits of `value` as Go's `writeBits` does. `nbits <= 64`.
    pub(crate) fn write_bits(&mut self, value: u64, nbits: u32) {
        if nbits == 0 {
            return;
        }
        self.put(value, nbits);
        self.last_was_byte = nbits.is_multiple_of(8);
    }

    /// Writes one bit as Go's `writeBit` does.
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
        if nbits > 56 {
            self.put_short(value >> 32, nbits - 32);
            self.put_short(value & 0xffff_ffff, 32);
            return;
        }
        self.put_short(value, nbits);
    }

    /// [`BitWriter::put`] of at most 56 bits: one store of the 8 bytes after the whole ones.
    #[inline(always)]
    fn put_short(&mut self, value: u64, nbits: u32) {
        debug_assert!((1..=56).contains(&nbits) && self.used < 8);
        // Shifting the value to the top drops its bits above `nbits`.
        self.acc |= (value << (64 - nbits)) >> self.used;
        self.used += nbits;
        if self.bytes.len() < self.len + SLACK {
            self.bytes = grown(std::mem::take(&mut self.bytes), self.len);
        }
        if let Some(slot) = self.bytes.get_mut(self.len..self.len + SLACK) {
            slot.copy_from_slice(&self.acc.to_be_bytes());
        }
        let whole = self.used >> 3;
        self.len += whole as usize;
        // `whole <= 7`: the shift stays below 64.
        self.acc <<= whole * 8;
        self.used &= 7;
    }

    /// Whether Go's stream would hold one more byte than the whole bytes written: a partial
    /// byte, or the empty byte `writeByte` leaves behind.
    #[inline]
    fn tail_bytes(&self) -> usize {
        usize::from(self.used > 0 || self.last_was_byte)
    }

    /// Length in bytes as Go's `bstream.bytes()` would report it.
    #[inline]
    pub(crate) fn len_bytes(&self) -> usize {
        self.len + self.tail_bytes()
    }

    /// Appends the stream as Go's `bstream.bytes()` returns it to `out`.
    #[inline]
    pub(crate) fn append_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.bytes.get(..self.len).unwrap_or_default());
        if self.tail_bytes() == 1 {
            // The partial byte, or (with nothing pending) the empty byte: zero either way.
            out.push((self.acc >> 56) as u8);
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

/// Reads bits MSB-first from a byte slice, as Go's `bstreamReader`: reading past the end is
/// `None`, never a panic.
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position of the next bit.
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `data`.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// Byte offset of the next bit (rounded down), for errors.
    pub(crate) fn byte_offset(&self) -> usize {
        self.pos / 8
    }

    /// One bit.
    #[inline]
    pub(crate) fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    /// The next 57 or more bits, first bit in the most significant position, when at least
    /// 8 bytes follow the current byte's start (else `None`: read bit by bit).
    #[inline]
    pub(crate) fn window(&self) -> Option<u64> {
        let start = self.pos / 8;
        let bytes: [u8; 8] = self.data.get(start..start + 8)?.try_into().ok()?;
        Some(u64::from_be_bytes(bytes) << (self.pos % 8))
    }

    /// Skips `n` bits (the caller has seen them in [`BitReader::window`]).
    #[inline]
    pub(crate) fn skip(&mut self, n: u32) {
        self.pos += n as usize;
    }

    /// `n` (0..=64) bits as the low bits of the result.
    #[inline]
    pub(crate) fn read_bits(&mut self, n: u32) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        if n <= 57
            && let Some(w) = self.window()
        {
            self.pos += n as usize;
            return Some(w >> (64 - n));
        }
        self.read_bits_slow(n)
    }

    /// [`BitReader::read_bits`] a byte at a time (near the end of the data, or above 57 bits).
    fn read_bits_slow(&mut self, n: u32) -> Option<u64> {
        let end = self.pos.checked_add(n as usize)?;
        if end > self.data.len().saturating_mul(8) {
            return None;
        }
        let mut out = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = u64::from(*self.data.get(self.pos / 8)?);
            let offset = (self.pos % 8) as u32;
            let take = (8 - offset).min(left);
            let bits = (byte >> (8 - offset - take)) & ((1u64 << take) - 1);
            out = if take == 64 {
                bits
            } else {
                (out << take) | bits
            };
            self.pos += take as usize;
            left -= take;
        }
        Some(out)
    }
}

#[cfg(test)]
mod reader_tests {
    use super::*;

    #[test]
    fn reads_what_the_writer_wrote() {
        let mut w = BitWriter::default();
        w.write_bits(0b101, 3);
        w.write_bits(u64::MAX, 64);
        w.write_bits(0x1234, 13);
        w.write_bit(true);
        let bytes = w.to_bytes();
        let mut r = BitReader::new(&bytes);
        assert_eq!(r.read_bits(3), Some(0b101));
        assert_eq!(r.read_bits(64), Some(u64::MAX));
        assert_eq!(r.read_bits(13), Some(0x1234 & 0x1fff));
        assert_eq!(r.read_bit(), Some(true));
        // The fast path (8 bytes ahead) and the slow one agree at every offset.
        let data: Vec<u8> = (0u8..40).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for n in 1..=64u32 {
            for start in 0..64usize {
                let mut fast = BitReader::new(&data);
                let mut slow = BitReader::new(&data);
                fast.skip(start as u32);
                slow.skip(start as u32);
                assert_eq!(
                    fast.read_bits(n),
                    slow.read_bits_slow(n),
                    "{n} bits at {start}"
                );
            }
        }
        let mut short = BitReader::new(&[0xff]);
        assert_eq!(short.read_bits(9), None);
        assert_eq!(short.read_bits(8), Some(0xff));
        assert_eq!(short.read_bit(), None);
    }
}
