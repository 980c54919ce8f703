//! Thanos' binary index-header (`docs/operating/binary-index-header.md`): the parts of an
//! index a store gateway keeps locally so that it can serve a block without holding its
//! whole index. Built from two byte ranges of the remote index:
//!
//! ```text
//! magic BE u32 0xBAAAD792 | version u8 = 1 | index version u8 | postings offset table ref BE u64
//! symbol table        (copy of index bytes [TOC.symbols, TOC.series))
//! postings offset tbl (copy of index bytes [TOC.postings_offset_table, end), the index TOC included)
//! TOC: symbols ref BE u64 | postings offset table ref BE u64 | CRC32C of the 16 bytes
//! ```
//!
//! Sans-IO like the rest of the crate: [`IndexHeader::decode`] takes the header's bytes (a
//! memory-mapped file), [`plan_postings`] says which postings lists a set of matchers needs
//! (as byte ranges of the remote index) and [`combine_postings`] computes the result once
//! the caller has fetched them.

use std::collections::HashMap;
use std::ops::Range;

use bytes::Bytes;
use strata_types::{MatchType, Matcher};

use crate::encoding::{Decoder, EncodeExt, check_crc, crc32c};
use crate::error::{CorruptKind, Corruption, Error, Result, Section};
use crate::index::{
    INDEX_VERSION_V2, Postings, PostingsOffsetTable, PostingsRange, SERIES_ALIGNMENT, Symbols,
    TOC_LEN, Toc, intersect, merge, without,
};

/// Magic number of an index-header file.
pub const INDEX_HEADER_MAGIC: u32 = 0xBAAA_D792;
/// The index-header format version.
pub const INDEX_HEADER_VERSION: u8 = 1;
/// Length of the fixed header: magic, version, index version, postings offset table ref.
pub const INDEX_HEADER_PREFIX_LEN: usize = 14;
const HEADER_TOC_LEN: usize = 20;

/// The two ranges of an index of `index_len` bytes with table of contents `toc` that an
/// index-header copies: the symbol table and the postings offset table through the end.
pub fn header_ranges(toc: &Toc, index_len: u64) -> [Range<u64>; 2] {
    [toc.symbols..toc.series, toc.postings_table..index_len]
}

/// Builds index-header bytes from the two ranges [`header_ranges`] names.
pub fn encode_index_header(toc: &Toc, symbols: &[u8], postings_table: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(INDEX_HEADER_PREFIX_LEN + symbols.len() + postings_table.len() + 20);
    out.put_be32(INDEX_HEADER_MAGIC);
    out.push(INDEX_HEADER_VERSION);
    out.push(INDEX_VERSION_V2);
    out.put_be64(toc.postings_table);
    let symbols_ref = out.len() as u64;
    out.extend_from_slice(symbols);
    let postings_ref = out.len() as u64;
    out.extend_from_slice(postings_table);
    let toc_start = out.len();
    out.put_be64(symbols_ref);
    out.put_be64(postings_ref);
    let crc = crc32c(out.get(toc_start..).unwrap_or_default());
    out.put_be32(crc);
    out
}

/// A decoded index-header: the symbol table, the postings offset table and the index's TOC.
#[derive(Debug, Clone)]
pub struct IndexHeader {
    block: String,
    toc: Toc,
    index_len: u64,
    symbols: Symbols,
    postings_table: PostingsOffsetTable,
    series_end: u64,
}

impl IndexHeader {
    /// Decodes and validates the header of block `block` (named in errors).
    pub fn decode(block: &str, data: Bytes) -> Result<IndexHeader> {
        let corrupt = |c: Corruption| Error::corrupt(block, c);
        let section = Section::IndexHeader;
        let mut d = Decoder::new(&data, 0, section);
        let magic = d.be32().map_err(corrupt)?;
        if magic != INDEX_HEADER_MAGIC {
            return Err(corrupt(Corruption::new(
                section,
                0,
                CorruptKind::BadMagic {
                    found: magic,
                    expected: INDEX_HEADER_MAGIC,
                },
            )));
        }
        let version = d.byte().map_err(corrupt)?;
        if version != INDEX_HEADER_VERSION {
            return Err(corrupt(Corruption::new(
                section,
                4,
                CorruptKind::BadVersion(version),
            )));
        }
        let index_version = d.byte().map_err(corrupt)?;
        if index_version != INDEX_VERSION_V2 {
            return Err(corrupt(Corruption::new(
                section,
                5,
                CorruptKind::BadVersion(index_version),
            )));
        }
        let postings_table_ref = d.be64().map_err(corrupt)?;
        let len = data.len();
        if len < INDEX_HEADER_PREFIX_LEN + HEADER_TOC_LEN + TOC_LEN {
            return Err(corrupt(Corruption::new(
                section,
                0,
                CorruptKind::Truncated {
                    needed: (INDEX_HEADER_PREFIX_LEN + HEADER_TOC_LEN + TOC_LEN) as u64,
                    available: len as u64,
                },
            )));
        }
        let toc_start = len - HEADER_TOC_LEN;
        let tail = data.get(toc_start..).unwrap_or_default();
        let (body, crc) = tail.split_at(16);
        check_crc(body, crc, section, toc_start as u64 + 16).map_err(corrupt)?;
        let mut t = Decoder::new(body, toc_start as u64, section);
        let symbols_ref = t.be64().map_err(corrupt)?;
        let postings_ref = t.be64().map_err(corrupt)?;
        let limit = toc_start as u64;
        if symbols_ref < INDEX_HEADER_PREFIX_LEN as u64
            || postings_ref < symbols_ref
            || postings_ref.saturating_add(TOC_LEN as u64) > limit
        {
            return Err(corrupt(Corruption::new(
                section,
                toc_start as u64,
                CorruptKind::OutOfBounds {
                    what: "index-header section reference",
                    value: postings_ref.max(symbols_ref),
                    limit,
                },
            )));
        }
        // The copied postings offset table ends with the index's own TOC.
        let copied_len = limit - postings_ref;
        let index_len = postings_table_ref.saturating_add(copied_len);
        let index_toc = data.get(toc_start - TOC_LEN..toc_start).unwrap_or_default();
        let toc = Toc::decode(index_toc, index_len).map_err(corrupt)?;
        if toc.postings_table != postings_table_ref {
            return Err(corrupt(Corruption::new(
                section,
                6,
                CorruptKind::Invalid("postings offset table reference differs from the index TOC"),
            )));
        }
        let symbols = Symbols::decode(
            data.slice(symbols_ref as usize..postings_ref as usize),
            toc.symbols,
        )
        .map_err(corrupt)?;
        let postings_table = PostingsOffsetTable::decode(
            data.slice(postings_ref as usize..toc_start - TOC_LEN),
            toc.postings_table,
            toc.postings_table,
        )
        .map_err(corrupt)?;
        let series_end = toc.series_end(index_len);
        Ok(IndexHeader {
            block: block.to_owned(),
            toc,
            index_len,
            symbols,
            postings_table,
            series_end,
        })
    }

    /// The block name used in errors.
    pub fn block(&self) -> &str {
        &self.block
    }

    /// The index's table of contents.
    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// Size of the remote index in bytes.
    pub fn index_len(&self) -> u64 {
        self.index_len
    }

    /// The symbol table (to resolve series labels).
    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    /// The postings offset table.
    pub fn postings_table(&self) -> &PostingsOffsetTable {
        &self.postings_table
    }

    /// The range of index bytes series entries lie in.
    pub fn series_section(&self) -> Range<u64> {
        self.toc.series..self.series_end
    }

    /// Index byte offset of series `series_ref`, or an error if it lies outside the series
    /// section.
    pub fn series_offset(&self, series_ref: u32) -> Result<u64> {
        let offset = u64::from(series_ref) * SERIES_ALIGNMENT;
        if offset < self.toc.series || offset >= self.series_end {
            return Err(Error::corrupt(
                &self.block,
                Corruption::new(
                    Section::Series,
                    offset,
                    CorruptKind::OutOfBounds {
                        what: "series reference",
                        value: u64::from(series_ref),
                        limit: self.series_end / SERIES_ALIGNMENT,
                    },
                ),
            ));
        }
        Ok(offset)
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
            .map_err(|c| Error::corrupt(&self.block, c))?;
        Ok(values.into_iter().map(|(v, _)| v.to_owned()).collect())
    }

    /// Which postings lists `matchers` need; see [`plan_postings`].
    pub fn plan_postings(&self, matchers: &[Matcher]) -> Result<PostingsPlan> {
        plan_postings(&self.postings_table, matchers).map_err(|c| Error::corrupt(&self.block, c))
    }
}

/// The postings lists a set of matchers needs, and how to combine them: the intersection of
/// the unions in `positive`, minus the union of each group in `negative`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostingsPlan {
    /// Groups whose unions are intersected.
    pub positive: Vec<Vec<PostingsRange>>,
    /// Groups whose unions are removed.
    pub negative: Vec<Vec<PostingsRange>>,
}

impl PostingsPlan {
    /// Whether the plan selects nothing whatever the lists hold (a positive group is empty).
    pub fn is_empty_result(&self) -> bool {
        self.positive.iter().any(Vec::is_empty)
    }

    /// Every list the plan reads, by offset, without duplicates.
    pub fn ranges(&self) -> Vec<PostingsRange> {
        let mut all: Vec<PostingsRange> = self
            .positive
            .iter()
            .chain(self.negative.iter())
            .flatten()
            .copied()
            .collect();
        all.sort_by_key(|r| r.offset);
        all.dedup_by_key(|r| r.offset);
        all
    }
}

/// Plans Prometheus' `PostingsForMatchers`: a label a series lacks matches as the empty
/// string; matchers that accept "" subtract the series whose value they reject.
pub fn plan_postings(
    table: &PostingsOffsetTable,
    matchers: &[Matcher],
) -> Result<PostingsPlan, Corruption> {
    let mut plan = PostingsPlan::default();
    let values_of = |m: &Matcher, accept: bool| -> Result<Vec<PostingsRange>, Corruption> {
        if accept && m.kind() == MatchType::Equal {
            return Ok(table.lookup(m.name(), m.value())?.into_iter().collect());
        }
        if accept && let Some(values) = m.set_matches() {
            let mut out = Vec::with_capacity(values.len());
            for value in values {
                out.extend(table.lookup(m.name(), &value)?);
            }
            return Ok(out);
        }
        Ok(table
            .values_matching(m.name(), |v| m.matches(v) == accept)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    };
    for m in matchers {
        if m.matches("") {
            plan.negative.push(values_of(m, false)?);
            continue;
        }
        plan.positive.push(values_of(m, true)?);
    }
    if plan.positive.is_empty() {
        plan.positive
            .push(table.lookup("", "")?.into_iter().collect());
    }
    Ok(plan)
}

/// Computes a plan's result from the fetched lists, keyed by offset. A list missing from
/// `lists` counts as empty (the caller fetches every range of [`PostingsPlan::ranges`]).
pub fn combine_postings(plan: &PostingsPlan, lists: &HashMap<u64, Postings>) -> Postings {
    let union = |group: &[PostingsRange]| -> Postings {
        let parts: Vec<Postings> = group
            .iter()
            .filter_map(|r| lists.get(&r.offset).cloned())
            .collect();
        merge(parts)
    };
    let positive: Vec<Postings> = plan.positive.iter().map(|g| union(g)).collect();
    let mut result = intersect(positive);
    for group in &plan.negative {
        if result.is_empty() {
            break;
        }
        result = without(&result, &union(group));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexReader, decode_postings};

    #[test]
    fn header_round_trip_matches_index_reader() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = crate::BlockWriter::new(dir.path()).unwrap();
        for i in 0..50 {
            for job in ["api", "db"] {
                let labels = strata_types::Labels::from_pairs([
                    ("__name__", "up"),
                    ("instance", &format!("host-{i:02}")),
                    ("job", job),
                ]);
                writer
                    .add_samples(&labels, &[strata_types::Sample::new(1000, 1.0)], 7_200_000)
                    .unwrap();
            }
        }
        let (block_dir, _) = writer.finish(crate::BlockOptions::default()).unwrap();
        let index = Bytes::from(std::fs::read(block_dir.join("index")).unwrap());
        let reader = IndexReader::new("b", index.clone()).unwrap();
        let [symbols, table] = header_ranges(reader.toc(), index.len() as u64);
        let bytes = encode_index_header(
            reader.toc(),
            &index[symbols.start as usize..symbols.end as usize],
            &index[table.start as usize..table.end as usize],
        );
        let header = IndexHeader::decode("b", Bytes::from(bytes.clone())).unwrap();
        assert_eq!(header.label_names(), reader.label_names());
        assert_eq!(header.label_values("job").unwrap(), ["api", "db"]);
        assert_eq!(header.index_len(), index.len() as u64);

        let check = |matchers: Vec<Matcher>| {
            let plan = header.plan_postings(&matchers).unwrap();
            let mut lists = HashMap::new();
            for r in plan.ranges() {
                let data = &index[r.offset as usize..r.end as usize];
                lists.insert(r.offset, decode_postings(data, r.offset).unwrap());
            }
            let got = combine_postings(&plan, &lists);
            assert_eq!(
                got,
                reader.postings_for_matchers(&matchers).unwrap(),
                "{matchers:?}"
            );
            got.len()
        };
        assert_eq!(check(vec![Matcher::equal("job", "api")]), 50);
        assert_eq!(
            check(vec![
                Matcher::new(MatchType::Regex, "instance", "host-0.").unwrap(),
                Matcher::not_equal("job", "db"),
            ]),
            10
        );
        assert_eq!(check(vec![Matcher::equal("job", "nope")]), 0);
        assert_eq!(check(vec![Matcher::equal("missing", "")]), 100);
        assert_eq!(
            check(vec![
                Matcher::new(MatchType::NotRegex, "instance", "host-.*").unwrap()
            ]),
            0
        );

        // Series entries decode through the header's symbols.
        let refs = reader
            .postings_for_matchers(&[Matcher::equal("job", "db")])
            .unwrap();
        let offset = header.series_offset(refs[0]).unwrap();
        let entry = crate::index::decode_series(
            &index[offset as usize..header.series_section().end as usize],
            offset,
            header.symbols(),
        )
        .unwrap();
        assert_eq!(entry, reader.series(refs[0]).unwrap());

        // Corruption is a typed error.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(IndexHeader::decode("b", Bytes::from(bad)).is_err());
        let mut bad = bytes.clone();
        bad[0] = 0;
        assert!(IndexHeader::decode("b", Bytes::from(bad)).is_err());
        for cut in [0, 10, 30, bytes.len() / 2] {
            assert!(IndexHeader::decode("b", Bytes::from(bytes[..cut].to_vec())).is_err());
        }
    }
}
