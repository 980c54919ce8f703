//! The `tombstones` file: deleted time intervals per series (`tsdb/docs/format/tombstones.md`).

use std::collections::BTreeMap;

use crate::encoding::{Decoder, EncodeExt, check_crc};
use crate::error::{CorruptKind, Corruption, Section};

/// Magic number of the tombstones file.
pub const TOMBSTONES_MAGIC: u32 = 0x0130_BA30;

/// Deleted intervals (both ends inclusive) per series reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tombstones {
    intervals: BTreeMap<u64, Vec<(i64, i64)>>,
}

impl Tombstones {
    /// No deletions.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Adds a deleted interval for a series.
    pub fn add(&mut self, series_ref: u64, min_time: i64, max_time: i64) {
        self.intervals
            .entry(series_ref)
            .or_default()
            .push((min_time, max_time));
    }

    /// Whether nothing is deleted.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// Number of (series, interval) entries.
    pub fn len(&self) -> usize {
        self.intervals.values().map(Vec::len).sum()
    }

    /// Deleted intervals of a series.
    pub fn intervals(&self, series_ref: u64) -> &[(i64, i64)] {
        self.intervals.get(&series_ref).map_or(&[], Vec::as_slice)
    }

    /// Whether sample time `t` of the series is deleted.
    pub fn is_deleted(&self, series_ref: u64, t: i64) -> bool {
        self.intervals(series_ref)
            .iter()
            .any(|&(lo, hi)| lo <= t && t <= hi)
    }

    /// Decodes a tombstones file.
    pub fn decode(data: &[u8]) -> Result<Tombstones, Corruption> {
        let section = Section::Tombstones;
        let mut d = Decoder::new(data, 0, section);
        let magic = d.be32()?;
        if magic != TOMBSTONES_MAGIC {
            return Err(Corruption::new(
                section,
                0,
                CorruptKind::BadMagic {
                    found: magic,
                    expected: TOMBSTONES_MAGIC,
                },
            ));
        }
        let version = d.byte()?;
        if version != 1 {
            return Err(Corruption::new(
                section,
                4,
                CorruptKind::BadVersion(version),
            ));
        }
        if data.len() < 9 {
            return Err(Corruption::new(
                section,
                5,
                CorruptKind::Truncated {
                    needed: 4,
                    available: (data.len() - 5) as u64,
                },
            ));
        }
        let entries_end = data.len() - 4;
        let entries = data.get(5..entries_end).unwrap_or_default();
        check_crc(
            entries,
            data.get(entries_end..).unwrap_or_default(),
            section,
            entries_end as u64,
        )?;
        let mut e = Decoder::new(entries, 5, section);
        let mut tombstones = Tombstones::empty();
        while !e.is_empty() {
            let series_ref = e.uvarint()?;
            let min_time = e.varint()?;
            let max_time = e.varint()?;
            tombstones.add(series_ref, min_time, max_time);
        }
        Ok(tombstones)
    }

    /// Encodes the file; an empty set gives Prometheus' 9-byte empty file.
    pub fn encode(&self) -> Vec<u8> {
        let mut entries = Vec::new();
        for (&series_ref, intervals) in &self.intervals {
            for &(lo, hi) in intervals {
                entries.put_uvarint(series_ref);
                entries.put_varint(lo);
                entries.put_varint(hi);
            }
        }
        let mut out = Vec::with_capacity(entries.len() + 9);
        out.put_be32(TOMBSTONES_MAGIC);
        out.push(1);
        out.extend_from_slice(&entries);
        out.put_be32(crate::encoding::crc32c(&entries));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_matches_prometheus() {
        assert_eq!(
            Tombstones::empty().encode(),
            [0x01, 0x30, 0xba, 0x30, 0x01, 0, 0, 0, 0]
        );
        assert!(
            Tombstones::decode(&[0x01, 0x30, 0xba, 0x30, 0x01, 0, 0, 0, 0])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn round_trip_and_corruption() {
        let mut t = Tombstones::empty();
        t.add(7, -5, 100);
        t.add(7, 200, 300);
        t.add(12, 0, 0);
        let bytes = t.encode();
        let back = Tombstones::decode(&bytes).unwrap();
        assert_eq!(back, t);
        assert!(back.is_deleted(7, 250));
        assert!(!back.is_deleted(7, 150));
        let mut bad = bytes.clone();
        bad[6] ^= 1;
        assert!(matches!(
            Tombstones::decode(&bad).unwrap_err().kind,
            CorruptKind::BadCrc { .. }
        ));
        assert!(matches!(
            Tombstones::decode(&bytes[..3]).unwrap_err().kind,
            CorruptKind::Truncated { .. }
        ));
        assert!(matches!(
            Tombstones::decode(&[0, 0, 0, 0, 1, 0, 0, 0, 0])
                .unwrap_err()
                .kind,
            CorruptKind::BadMagic { .. }
        ));
    }
}
