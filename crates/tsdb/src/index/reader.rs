use bytes::Bytes;
use strata_types::{MatchType, Matcher};

use super::SERIES_ALIGNMENT;
use super::postings::{Postings, decode_postings, intersect, merge, without};
use super::postings_table::PostingsOffsetTable;
use super::series::{SeriesEntry, decode_series};
use super::symbols::Symbols;
use super::toc::{INDEX_HEADER_LEN, TOC_LEN, Toc};
use crate::encoding::Decoder;
use crate::error::{CorruptKind, Corruption, Error, Result, Section};

/// Reads an index held entirely as [`Bytes`] (a memory-mapped file or a downloaded object).
///
/// Opening validates the header, the TOC, the symbol table and the postings offset table
/// (CRCs, order, bounds); series and postings lists are validated when read.
#[derive(Debug, Clone)]
pub struct IndexReader {
    block: String,
    data: Bytes,
    toc: Toc,
    symbols: Symbols,
    postings_table: PostingsOffsetTable,
    series_end: u64,
}

impl IndexReader {
    /// Opens the index bytes of block `block` (used in error messages).
    pub fn new(block: &str, data: Bytes) -> Result<Self> {
        let corrupt = |c: Corruption| Error::corrupt(block, c);
        let len = data.len() as u64;
        let header = data
            .get(0..INDEX_HEADER_LEN.min(data.len()))
            .unwrap_or_default();
        Toc::check_header(header).map_err(corrupt)?;
        let tail_start = data.len().saturating_sub(TOC_LEN);
        let toc = Toc::decode(data.get(tail_start..).unwrap_or_default(), len).map_err(corrupt)?;
        let toc_start = len - TOC_LEN as u64;
        let symbols = Symbols::decode(
            data.slice(toc.symbols as usize..toc_start as usize),
            toc.symbols,
        )
        .map_err(corrupt)?;
        let postings_table = PostingsOffsetTable::decode(
            data.slice(toc.postings_table as usize..toc_start as usize),
            toc.postings_table,
            toc.postings_table,
        )
        .map_err(corrupt)?;
        let series_end = toc.series_end(len);
        Ok(IndexReader {
            block: block.to_owned(),
            data,
            toc,
            symbols,
            postings_table,
            series_end,
        })
    }

    /// The block name used in errors.
    pub fn block(&self) -> &str {
        &self.block
    }

    /// The table of contents.
    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// The symbol table.
    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    /// The postings offset table.
    pub fn postings_table(&self) -> &PostingsOffsetTable {
        &self.postings_table
    }

    /// Size of the index in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64
    }

    fn corrupt(&self, c: Corruption) -> Error {
        Error::corrupt(&self.block, c)
    }

    /// Label names of the block, sorted (the all-postings key excluded).
    pub fn label_names(&self) -> Vec<String> {
        self.postings_table
            .names()
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Sorted values of label `name`.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        let values = self
            .postings_table
            .values(name)
            .map_err(|c| self.corrupt(c))?;
        Ok(values.into_iter().map(|(v, _)| v.to_owned()).collect())
    }

    /// The postings list at file offset `offset`.
    fn postings_at(&self, offset: u64) -> Result<Postings> {
        let data = self.data.get(offset as usize..).unwrap_or_default();
        decode_postings(data, offset).map_err(|c| self.corrupt(c))
    }

    /// Series with `name=value`.
    pub fn postings(&self, name: &str, value: &str) -> Result<Postings> {
        match self
            .postings_table
            .lookup(name, value)
            .map_err(|c| self.corrupt(c))?
        {
            Some(range) => self.postings_at(range.offset),
            None => Ok(Vec::new()),
        }
    }

    /// Every series of the block.
    pub fn all_postings(&self) -> Result<Postings> {
        self.postings("", "")
    }

    /// Union of the postings of the values of `m.name()` that `m` accepts.
    fn postings_for_matcher(&self, m: &Matcher) -> Result<Postings> {
        if m.kind() == MatchType::Equal {
            return self.postings(m.name(), m.value());
        }
        if let Some(values) = m.set_matches() {
            let mut lists = Vec::with_capacity(values.len());
            for value in values {
                lists.push(self.postings(m.name(), &value)?);
            }
            return Ok(merge(lists));
        }
        let ranges = self
            .postings_table
            .values_matching(m.name(), |v| m.matches(v))
            .map_err(|c| self.corrupt(c))?;
        let mut lists = Vec::with_capacity(ranges.len());
        for (_, range) in ranges {
            lists.push(self.postings_at(range.offset)?);
        }
        Ok(merge(lists))
    }

    /// Union of the postings of the values of `m.name()` that `m` rejects.
    fn inverse_postings_for_matcher(&self, m: &Matcher) -> Result<Postings> {
        let ranges = self
            .postings_table
            .values_matching(m.name(), |v| !m.matches(v))
            .map_err(|c| self.corrupt(c))?;
        let mut lists = Vec::with_capacity(ranges.len());
        for (_, range) in ranges {
            lists.push(self.postings_at(range.offset)?);
        }
        Ok(merge(lists))
    }

    /// Series matching every matcher, with Prometheus' semantics for labels a series lacks
    /// (a missing label matches as the empty string).
    pub fn postings_for_matchers(&self, matchers: &[Matcher]) -> Result<Postings> {
        let mut positive: Vec<Postings> = Vec::new();
        let mut negative: Vec<Postings> = Vec::new();
        for m in matchers {
            let matches_empty = m.matches("");
            if matches_empty {
                // Selects series without the label too: subtract those with a rejected value.
                negative.push(self.inverse_postings_for_matcher(m)?);
                continue;
            }
            match m.kind() {
                // l!="" / l!~"" style: the label must be set to a value the inner accepts.
                MatchType::NotEqual | MatchType::NotRegex => {
                    positive.push(self.inverse_postings_for_matcher(&m.inverse())?);
                }
                MatchType::Equal | MatchType::Regex => positive.push(self.postings_for_matcher(m)?),
            }
        }
        if positive.is_empty() {
            positive.push(self.all_postings()?);
        }
        let mut result = intersect(positive);
        for remove in negative {
            if result.is_empty() {
                break;
            }
            result = without(&result, &remove);
        }
        Ok(result)
    }

    /// Every series in file order (which is label order), found by walking the series
    /// section: no postings list is held, so a merge over many blocks stays small.
    pub fn series_iter(&self) -> SeriesIter<'_> {
        SeriesIter {
            reader: self,
            pos: self.toc.series,
            failed: false,
        }
    }

    /// The series entry with reference `series_ref` (its offset / 16).
    pub fn series(&self, series_ref: u32) -> Result<SeriesEntry> {
        let offset = u64::from(series_ref) * SERIES_ALIGNMENT;
        if offset < self.toc.series || offset >= self.series_end {
            return Err(self.corrupt(Corruption::new(
                Section::Series,
                offset,
                CorruptKind::OutOfBounds {
                    what: "series reference",
                    value: u64::from(series_ref),
                    limit: self.series_end / SERIES_ALIGNMENT,
                },
            )));
        }
        let data = self
            .data
            .get(offset as usize..self.series_end as usize)
            .unwrap_or_default();
        decode_series(data, offset, &self.symbols).map_err(|c| self.corrupt(c))
    }
}

/// Iterator over `(series_ref, entry)` of an index, in file order; see
/// [`IndexReader::series_iter`]. Stops after the first error.
#[derive(Debug)]
pub struct SeriesIter<'a> {
    reader: &'a IndexReader,
    pos: u64,
    failed: bool,
}

impl Iterator for SeriesIter<'_> {
    type Item = Result<(u32, SeriesEntry)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        // Entries start 16-byte aligned; the section ends at most 3 padding bytes after the
        // last entry, so an aligned position at or past the end means no more entries.
        let start = self.pos.div_ceil(SERIES_ALIGNMENT) * SERIES_ALIGNMENT;
        if start >= self.reader.series_end {
            return None;
        }
        let data = self
            .reader
            .data
            .get(start as usize..self.reader.series_end as usize)
            .unwrap_or_default();
        let mut d = Decoder::new(data, start, Section::Series);
        let length = d.uvarint().and_then(|len| {
            let total = (d.position() as u64)
                .checked_add(len)
                .and_then(|n| n.checked_add(4))
                .filter(|&n| n <= data.len() as u64);
            total.ok_or_else(|| {
                d.err(CorruptKind::OutOfBounds {
                    what: "series length",
                    value: len,
                    limit: data.len() as u64,
                })
            })
        });
        let total = match length {
            Ok(total) => total,
            Err(c) => {
                self.failed = true;
                return Some(Err(self.reader.corrupt(c)));
            }
        };
        self.pos = start + total;
        let series_ref = match u32::try_from(start / SERIES_ALIGNMENT) {
            Ok(r) => r,
            Err(_) => {
                self.failed = true;
                return Some(Err(self.reader.corrupt(Corruption::new(
                    Section::Series,
                    start,
                    CorruptKind::Invalid("series section exceeds 64 GiB"),
                ))));
            }
        };
        let entry = decode_series(data, start, &self.reader.symbols).map_err(|c| {
            self.failed = true;
            self.reader.corrupt(c)
        });
        Some(entry.map(|e| (series_ref, e)))
    }
}
