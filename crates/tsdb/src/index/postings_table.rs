use std::collections::BTreeMap;

use bytes::Bytes;

use crate::encoding::{Decoder, check_crc};
use crate::error::{CorruptKind, Corruption, Section};

/// Every `SAMPLING`-th value of a label name is kept in memory (plus the first and last), as
/// Prometheus and Thanos' index-header do; lookups scan at most that many table entries.
const SAMPLING: usize = 32;

/// Where one postings list lies in the index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostingsRange {
    /// File offset of the list's `len` field.
    pub offset: u64,
    /// An upper bound of the list's end: the next list's offset, or the end of the postings
    /// region for the last list. Readers fetching byte ranges read `offset..end`.
    pub end: u64,
}

#[derive(Debug, Clone)]
struct NameEntry {
    /// Sampled values: (value, position in `entries` of that value's table entry).
    sampled: Vec<(String, u32)>,
    /// Position in `entries` just past this name's last entry.
    end: u32,
    value_count: u32,
}

/// The postings offset table: for each label (name, value) the file offset of its postings
/// list, sorted by name then value. Validated completely (CRC, order, offsets in bounds)
/// when built; keeps a sample of the values in memory.
#[derive(Debug, Clone)]
pub struct PostingsOffsetTable {
    entries: Bytes,
    base: u64,
    names: BTreeMap<String, NameEntry>,
    postings_limit: u64,
}

impl PostingsOffsetTable {
    /// Decodes the table starting at file offset `offset` (`data` starts there). Postings
    /// offsets must be below `postings_limit` (the table's own offset).
    pub fn decode(data: Bytes, offset: u64, postings_limit: u64) -> Result<Self, Corruption> {
        let section = Section::PostingsOffsetTable;
        let mut d = Decoder::new(&data, offset, section);
        let len = d.be32()? as usize;
        let body = d.bytes(len)?;
        let crc = d.bytes(4)?;
        check_crc(body, crc, section, offset + 4 + len as u64)?;
        let mut body_decoder = Decoder::new(body, offset + 4, section);
        let count = body_decoder.be32()?;
        let entries_start = 8usize;
        let mut names: BTreeMap<String, NameEntry> = BTreeMap::new();
        let mut previous: Option<(&str, &str)> = None;
        let mut current: Option<(&str, NameEntry)> = None;
        for _ in 0..count {
            let entry_pos = (body_decoder.position() - 4) as u32;
            let keys = body_decoder.uvarint()?;
            if keys != 2 {
                return Err(body_decoder.err(CorruptKind::Invalid(
                    "postings offset table entry must have 2 keys",
                )));
            }
            let name = body_decoder.uvarint_str()?;
            let value = body_decoder.uvarint_str()?;
            let postings_offset = body_decoder.uvarint()?;
            if postings_offset >= postings_limit {
                return Err(body_decoder.err(CorruptKind::OutOfBounds {
                    what: "postings offset",
                    value: postings_offset,
                    limit: postings_limit,
                }));
            }
            if let Some(prev) = previous
                && prev >= (name, value)
            {
                return Err(body_decoder.err(CorruptKind::Unsorted("postings offset table")));
            }
            previous = Some((name, value));
            let end_pos = (body_decoder.position() - 4) as u32;
            match &mut current {
                Some((current_name, entry)) if *current_name == name => {
                    if (entry.value_count as usize).is_multiple_of(SAMPLING) {
                        entry.sampled.push((value.to_owned(), entry_pos));
                    }
                    entry.value_count += 1;
                    entry.end = end_pos;
                }
                _ => {
                    if let Some((finished_name, entry)) = current.take() {
                        names.insert(finished_name.to_owned(), entry);
                    }
                    let entry = NameEntry {
                        sampled: vec![(value.to_owned(), entry_pos)],
                        end: end_pos,
                        value_count: 1,
                    };
                    current = Some((name, entry));
                }
            }
        }
        if let Some((finished_name, entry)) = current.take() {
            names.insert(finished_name.to_owned(), entry);
        }
        if !body_decoder.is_empty() {
            return Err(body_decoder.err(CorruptKind::Invalid(
                "trailing bytes in postings offset table",
            )));
        }
        let entries_end = entries_start + body.len().saturating_sub(4);
        let entries = data.slice(entries_start..entries_end);
        Ok(PostingsOffsetTable {
            entries,
            base: offset + entries_start as u64,
            names,
            postings_limit,
        })
    }

    /// Label names in order, the empty name of the all-postings list included.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// Number of distinct values of `name`.
    pub fn value_count(&self, name: &str) -> u32 {
        self.names.get(name).map_or(0, |e| e.value_count)
    }

    /// Each value of `name` with its postings list location, in order.
    pub fn values(&self, name: &str) -> Result<Vec<(&str, PostingsRange)>, Corruption> {
        let Some(entry) = self.names.get(name) else {
            return Ok(Vec::new());
        };
        let start = entry.sampled.first().map_or(0, |(_, pos)| *pos);
        self.scan(start, entry.end, |_| true)
    }

    /// The values of `name` accepted by `keep`, with their postings list locations.
    pub fn values_matching(
        &self,
        name: &str,
        mut keep: impl FnMut(&str) -> bool,
    ) -> Result<Vec<(&str, PostingsRange)>, Corruption> {
        let Some(entry) = self.names.get(name) else {
            return Ok(Vec::new());
        };
        let start = entry.sampled.first().map_or(0, |(_, pos)| *pos);
        self.scan(start, entry.end, |v| keep(v))
    }

    /// The postings list location of `name=value`.
    pub fn lookup(&self, name: &str, value: &str) -> Result<Option<PostingsRange>, Corruption> {
        let Some(entry) = self.names.get(name) else {
            return Ok(None);
        };
        let index = entry
            .sampled
            .partition_point(|(sampled, _)| sampled.as_str() <= value);
        if index == 0 {
            return Ok(None);
        }
        let start = entry.sampled.get(index - 1).map_or(0, |(_, pos)| *pos);
        let end = entry.sampled.get(index).map_or(entry.end, |(_, pos)| *pos);
        let found = self.scan(start, end, |v| v == value)?;
        Ok(found.first().map(|(_, range)| *range))
    }

    fn scan(
        &self,
        start: u32,
        end: u32,
        mut keep: impl FnMut(&str) -> bool,
    ) -> Result<Vec<(&str, PostingsRange)>, Corruption> {
        let region = self.entries.get(start as usize..).unwrap_or_default();
        let mut d = Decoder::new(
            region,
            self.base + u64::from(start),
            Section::PostingsOffsetTable,
        );
        let scan_len = end.saturating_sub(start) as usize;
        let mut out: Vec<(&str, PostingsRange)> = Vec::new();
        // Whether the previous entry was kept: its end is this entry's offset.
        let mut previous_kept = false;
        while !d.is_empty() {
            let inside = d.position() < scan_len;
            d.uvarint()?;
            // The name was checked when the table was decoded.
            d.skip_uvarint_str()?;
            let value = d.uvarint_str()?;
            let offset = d.uvarint()?;
            if previous_kept && let Some((_, range)) = out.last_mut() {
                range.end = offset;
            }
            if !inside {
                break;
            }
            previous_kept = keep(value);
            if previous_kept {
                out.push((
                    value,
                    PostingsRange {
                        offset,
                        end: self.postings_limit,
                    },
                ));
            }
        }
        Ok(out)
    }

    /// Encodes a table from entries sorted by (name, value).
    #[cfg(test)]
    pub(crate) fn encode<'e>(
        entries: impl IntoIterator<Item = (&'e str, &'e str, u64)>,
    ) -> Vec<u8> {
        use crate::encoding::EncodeExt;
        let mut body = Vec::new();
        body.put_be32(0);
        let mut count = 0u32;
        for (name, value, offset) in entries {
            body.put_uvarint(2);
            body.put_uvarint_str(name);
            body.put_uvarint_str(value);
            body.put_uvarint(offset);
            count += 1;
        }
        if let Some(slot) = body.get_mut(0..4) {
            slot.copy_from_slice(&count.to_be_bytes());
        }
        let mut out = Vec::with_capacity(body.len() + 8);
        out.put_be32(body.len() as u32);
        out.extend_from_slice(&body);
        out.put_be32(crate::encoding::crc32c(&body));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_across_samples() {
        let mut entries: Vec<(String, String, u64)> = vec![(String::new(), String::new(), 8)];
        for i in 0..100u64 {
            entries.push(("instance".into(), format!("host-{i:03}"), 100 + i * 12));
        }
        entries.push(("job".into(), "api".into(), 5000));
        let bytes = PostingsOffsetTable::encode(
            entries.iter().map(|(n, v, o)| (n.as_str(), v.as_str(), *o)),
        );
        let table = PostingsOffsetTable::decode(Bytes::from(bytes), 0, 10_000).unwrap();
        assert_eq!(table.names().collect::<Vec<_>>(), ["", "instance", "job"]);
        assert_eq!(table.value_count("instance"), 100);
        for i in 0..100u64 {
            let range = table
                .lookup("instance", &format!("host-{i:03}"))
                .unwrap()
                .unwrap();
            assert_eq!(range.offset, 100 + i * 12);
            let end = if i == 99 { 5000 } else { 100 + (i + 1) * 12 };
            assert_eq!(range.end, end);
        }
        assert_eq!(table.lookup("instance", "host-100").unwrap(), None);
        assert_eq!(table.lookup("instance", "a").unwrap(), None);
        assert_eq!(table.lookup("nope", "x").unwrap(), None);
        assert_eq!(table.values("instance").unwrap().len(), 100);
        assert_eq!(
            table.lookup("job", "api").unwrap(),
            Some(PostingsRange {
                offset: 5000,
                end: 10_000
            })
        );
        let err = PostingsOffsetTable::decode(
            Bytes::from(PostingsOffsetTable::encode([("a", "b", 10)])),
            0,
            5,
        )
        .unwrap_err();
        assert!(matches!(err.kind, CorruptKind::OutOfBounds { .. }));
    }
}
