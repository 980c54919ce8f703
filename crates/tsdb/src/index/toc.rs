use crate::encoding::{Decoder, EncodeExt, check_crc};
use crate::error::{CorruptKind, Corruption, Section};

/// Magic number at the start of an index file.
pub const INDEX_MAGIC: u32 = 0xBAAA_D700;
/// Index format version 2, the only one Prometheus has written since 2.0.
pub const INDEX_VERSION_V2: u8 = 2;
/// Magic (4 bytes) and version (1 byte).
pub const INDEX_HEADER_LEN: usize = 5;
/// Six 8-byte offsets and a CRC32C.
pub const TOC_LEN: usize = 52;

/// The table of contents at the end of an index: absolute offsets of each section (0 means
/// the section is absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Toc {
    /// Symbol table.
    pub symbols: u64,
    /// Series section.
    pub series: u64,
    /// Legacy label indices.
    pub label_indices: u64,
    /// Legacy label offset table.
    pub label_indices_table: u64,
    /// First postings list.
    pub postings: u64,
    /// Postings offset table.
    pub postings_table: u64,
}

impl Toc {
    /// Checks the 5-byte header at the start of an index.
    pub fn check_header(header: &[u8]) -> Result<(), Corruption> {
        let mut d = Decoder::new(header, 0, Section::IndexHeader);
        let magic = d.be32()?;
        if magic != INDEX_MAGIC {
            return Err(Corruption::new(
                Section::IndexHeader,
                0,
                CorruptKind::BadMagic {
                    found: magic,
                    expected: INDEX_MAGIC,
                },
            ));
        }
        let version = d.byte()?;
        if version != INDEX_VERSION_V2 {
            return Err(Corruption::new(
                Section::IndexHeader,
                4,
                CorruptKind::BadVersion(version),
            ));
        }
        Ok(())
    }

    /// Decodes the TOC from the last [`TOC_LEN`] bytes of an index of `index_len` bytes and
    /// checks that every offset lies inside the file.
    pub fn decode(tail: &[u8], index_len: u64) -> Result<Toc, Corruption> {
        let base = index_len.saturating_sub(TOC_LEN as u64);
        if tail.len() != TOC_LEN || index_len < (TOC_LEN + INDEX_HEADER_LEN) as u64 {
            return Err(Corruption::new(
                Section::Toc,
                base,
                CorruptKind::Truncated {
                    needed: TOC_LEN as u64,
                    available: tail.len() as u64,
                },
            ));
        }
        let (body, crc) = tail.split_at(TOC_LEN - 4);
        check_crc(body, crc, Section::Toc, base + 48)?;
        let mut d = Decoder::new(body, base, Section::Toc);
        let toc = Toc {
            symbols: d.be64()?,
            series: d.be64()?,
            label_indices: d.be64()?,
            label_indices_table: d.be64()?,
            postings: d.be64()?,
            postings_table: d.be64()?,
        };
        let limit = base;
        for (what, value) in [
            ("symbols offset", toc.symbols),
            ("series offset", toc.series),
            ("label indices offset", toc.label_indices),
            ("label offset table offset", toc.label_indices_table),
            ("postings offset", toc.postings),
            ("postings offset table offset", toc.postings_table),
        ] {
            if value > limit {
                return Err(Corruption::new(
                    Section::Toc,
                    base,
                    CorruptKind::OutOfBounds { what, value, limit },
                ));
            }
        }
        if toc.symbols < INDEX_HEADER_LEN as u64 || toc.postings_table < INDEX_HEADER_LEN as u64 {
            return Err(Corruption::new(
                Section::Toc,
                base,
                CorruptKind::Invalid("symbol table or postings offset table missing"),
            ));
        }
        Ok(toc)
    }

    /// Where the series section ends in an index of `index_len` bytes: at the next section
    /// after it, or at the TOC.
    pub fn series_end(&self, index_len: u64) -> u64 {
        [
            self.label_indices,
            self.postings,
            self.label_indices_table,
            self.postings_table,
        ]
        .into_iter()
        .filter(|&o| o > self.series)
        .min()
        .unwrap_or(index_len.saturating_sub(TOC_LEN as u64))
    }

    /// The 52 bytes of this TOC.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TOC_LEN);
        for offset in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_indices_table,
            self.postings,
            self.postings_table,
        ] {
            out.put_be64(offset);
        }
        let crc = crate::encoding::crc32c(&out);
        out.put_be32(crc);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_crc_check() {
        let toc = Toc {
            symbols: 5,
            series: 110,
            label_indices: 199,
            label_indices_table: 416,
            postings: 288,
            postings_table: 467,
        };
        let bytes = toc.encode();
        assert_eq!(Toc::decode(&bytes, 600).unwrap(), toc);
        let mut bad = bytes.clone();
        bad[3] ^= 1;
        assert!(matches!(
            Toc::decode(&bad, 600).unwrap_err().kind,
            CorruptKind::BadCrc { .. }
        ));
        assert!(matches!(
            Toc::decode(&bytes, 300).unwrap_err().kind,
            CorruptKind::OutOfBounds { .. }
        ));
    }

    #[test]
    fn header_checks() {
        assert!(Toc::check_header(&[0xba, 0xaa, 0xd7, 0x00, 2]).is_ok());
        assert!(matches!(
            Toc::check_header(&[0xba, 0xaa, 0xd7, 0x01, 2])
                .unwrap_err()
                .kind,
            CorruptKind::BadMagic { .. }
        ));
        assert!(matches!(
            Toc::check_header(&[0xba, 0xaa, 0xd7, 0x00, 1])
                .unwrap_err()
                .kind,
            CorruptKind::BadVersion(1)
        ));
        assert!(matches!(
            Toc::check_header(&[0xba]).unwrap_err().kind,
            CorruptKind::Truncated { .. }
        ));
    }
}
