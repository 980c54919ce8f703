//! Bounds-checked readers and writers of the primitive fields in TSDB files.

use crate::error::{CorruptKind, Corruption, Section};

/// CRC-32 Castagnoli, as every TSDB section uses.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// A cursor over one region of a file. Every read checks bounds and reports the absolute file
/// offset of a problem; nothing here can panic.
#[derive(Debug, Clone)]
pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
    section: Section,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(buf: &'a [u8], base: u64, section: Section) -> Self {
        Decoder {
            buf,
            pos: 0,
            base,
            section,
        }
    }

    pub(crate) fn err(&self, kind: CorruptKind) -> Corruption {
        Corruption::new(self.section, self.offset(), kind)
    }

    /// Absolute file offset of the cursor.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Corruption> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(self.err(CorruptKind::Truncated {
                needed: n as u64,
                available: self.remaining() as u64,
            })),
        }
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Corruption> {
        self.bytes(n).map(|_| ())
    }

    pub(crate) fn byte(&mut self) -> Result<u8, Corruption> {
        let slice = self.bytes(1)?;
        Ok(slice.first().copied().unwrap_or_default())
    }

    pub(crate) fn be32(&mut self) -> Result<u32, Corruption> {
        let slice = self.bytes(4)?;
        let mut buf = [0u8; 4];
        buf.copy_from_slice(slice);
        Ok(u32::from_be_bytes(buf))
    }

    pub(crate) fn be64(&mut self) -> Result<u64, Corruption> {
        let slice = self.bytes(8)?;
        let mut buf = [0u8; 8];
        buf.copy_from_slice(slice);
        Ok(u64::from_be_bytes(buf))
    }

    pub(crate) fn uvarint(&mut self) -> Result<u64, Corruption> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match strata_chunkenc::get_uvarint(rest) {
            Some((value, n)) => {
                self.pos += n;
                Ok(value)
            }
            None => Err(self.err(CorruptKind::BadVarint)),
        }
    }

    pub(crate) fn uvarint32(&mut self) -> Result<u32, Corruption> {
        let at = self.clone();
        let value = self.uvarint()?;
        u32::try_from(value).map_err(|_| {
            at.err(CorruptKind::OutOfBounds {
                what: "32-bit varint",
                value,
                limit: u64::from(u32::MAX),
            })
        })
    }

    pub(crate) fn varint(&mut self) -> Result<i64, Corruption> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match strata_chunkenc::get_varint(rest) {
            Some((value, n)) => {
                self.pos += n;
                Ok(value)
            }
            None => Err(self.err(CorruptKind::BadVarint)),
        }
    }

    /// A uvarint length followed by that many bytes of UTF-8.
    pub(crate) fn uvarint_str(&mut self) -> Result<&'a str, Corruption> {
        let at = self.clone();
        let raw = self.uvarint_bytes()?;
        std::str::from_utf8(raw).map_err(|_| at.err(CorruptKind::BadUtf8))
    }

    /// Skips a length-prefixed string without checking that it is UTF-8 (for scans past
    /// strings already checked, such as symbols between two sampled ones).
    pub(crate) fn skip_uvarint_str(&mut self) -> Result<(), Corruption> {
        self.uvarint_bytes().map(|_| ())
    }

    fn uvarint_bytes(&mut self) -> Result<&'a [u8], Corruption> {
        let at = self.clone();
        let len = self.uvarint()?;
        let len = usize::try_from(len).map_err(|_| {
            at.err(CorruptKind::OutOfBounds {
                what: "string length",
                value: len,
                limit: usize::MAX as u64,
            })
        })?;
        self.bytes(len)
    }
}

/// Checks the CRC32C stored big-endian right after `data` (at `crc_offset` in the file).
pub(crate) fn check_crc(
    data: &[u8],
    stored: &[u8],
    section: Section,
    crc_offset: u64,
) -> Result<(), Corruption> {
    let Some(&[a, b, c, d]) = stored.get(0..4) else {
        return Err(Corruption::new(
            section,
            crc_offset,
            CorruptKind::Truncated {
                needed: 4,
                available: stored.len() as u64,
            },
        ));
    };
    let stored = u32::from_be_bytes([a, b, c, d]);
    let computed = crc32c(data);
    if stored != computed {
        return Err(Corruption::new(
            section,
            crc_offset,
            CorruptKind::BadCrc { stored, computed },
        ));
    }
    Ok(())
}

/// Appends big-endian and varint fields to a buffer.
pub(crate) trait EncodeExt {
    fn put_be32(&mut self, v: u32);
    fn put_be64(&mut self, v: u64);
    fn put_uvarint(&mut self, v: u64);
    fn put_varint(&mut self, v: i64);
    fn put_uvarint_str(&mut self, s: &str);
}

impl EncodeExt for Vec<u8> {
    fn put_be32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_be64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_uvarint(&mut self, v: u64) {
        strata_chunkenc::put_uvarint(self, v);
    }
    fn put_varint(&mut self, v: i64) {
        strata_chunkenc::put_varint(self, v);
    }
    fn put_uvarint_str(&mut self, s: &str) {
        strata_chunkenc::put_uvarint(self, s.len() as u64);
        self.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn decoder_reports_absolute_offsets() {
        let data = [0u8, 0, 0, 1, 0x80];
        let mut d = Decoder::new(&data, 100, Section::Symbols);
        assert_eq!(d.be32().unwrap(), 1);
        let err = d.uvarint().unwrap_err();
        assert_eq!(err.offset, 104);
        assert_eq!(err.kind, CorruptKind::BadVarint);
        let err = d.be64().unwrap_err();
        assert!(matches!(
            err.kind,
            CorruptKind::Truncated {
                needed: 8,
                available: 1
            }
        ));
    }
}
