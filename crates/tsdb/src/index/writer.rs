use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use strata_types::Labels;

use super::SERIES_ALIGNMENT;
use super::postings::encode_postings;
use super::series::{ChunkMeta, encode_series};
use super::symbols::Symbols;
use super::toc::{INDEX_MAGIC, INDEX_VERSION_V2, Toc};
use crate::encoding::EncodeExt;
use crate::error::{Error, Result};

/// Postings entries (one per label of each series) held in memory at once while the
/// postings are written; more than this and the label names are done in several batches.
const DEFAULT_POSTINGS_BATCH: usize = 2 << 20;
/// Label names whose symbol reference is cached (names are few; values are looked up in
/// the symbol table).
const NAME_CACHE_LIMIT: usize = 4096;

/// Writes an index file in format v2, as Prometheus 2.42 lays it out: symbols, series,
/// label indices, postings, label offset table, postings offset table, TOC.
///
/// Symbols are given up front; series must be added in label order and are written as they
/// come. Memory does not grow with the series: each series' label references go to a spill
/// file next to the index, from which the label indices and postings are built at the end,
/// a batch of label names at a time (Prometheus' writer works the same way). What stays in
/// memory is the encoded symbol table and one postings-table entry per distinct label pair.
#[derive(Debug)]
pub struct IndexWriter {
    block: String,
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    toc: Toc,
    symbols: Symbols,
    name_refs: HashMap<String, u32>,
    spill_path: PathBuf,
    spill: BufWriter<File>,
    /// `(name_ref, value_ref, offset)` of every postings list written, for the postings
    /// offset table at the end.
    table_spill_path: PathBuf,
    table_spill: BufWriter<File>,
    /// Label occurrences per name reference: sizes the postings batches.
    name_counts: BTreeMap<u32, u64>,
    series_count: u32,
    last_labels: Option<Labels>,
    scratch: Vec<u8>,
    postings_batch: usize,
}

impl IndexWriter {
    /// Creates `path` and writes the header and the symbol table. `symbols` must be sorted
    /// and unique and contain every label name and value of the series to come.
    pub fn create(block: &str, path: &Path, symbols: Vec<String>) -> Result<Self> {
        Self::create_from(block, path, symbols.iter().map(String::as_str))
    }

    /// As [`IndexWriter::create`], with the symbols from an iterator (e.g. a merge of other
    /// indexes' symbol tables), so they need not be collected first.
    pub fn create_from<'s>(
        block: &str,
        path: &Path,
        symbols: impl IntoIterator<Item = &'s str>,
    ) -> Result<Self> {
        let mut previous: Option<&str> = None;
        let mut sorted = true;
        let checked = symbols.into_iter().inspect(|s| {
            if previous.is_some_and(|p| p >= *s) {
                sorted = false;
            }
            previous = Some(s);
        });
        let table = Symbols::encode(checked);
        if !sorted {
            return Err(Error::invalid(
                block,
                "index symbols must be sorted and unique",
            ));
        }
        let file = File::create(path).map_err(|e| Error::io(block, path, e))?;
        let spill_path = path.with_extension("postings-spill");
        let spill_file = File::create(&spill_path).map_err(|e| Error::io(block, &spill_path, e))?;
        let table_spill_path = path.with_extension("postings-table-spill");
        let table_spill_file =
            File::create(&table_spill_path).map_err(|e| Error::io(block, &table_spill_path, e))?;
        let mut header = Vec::with_capacity(5);
        header.put_be32(INDEX_MAGIC);
        header.push(INDEX_VERSION_V2);
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let write = |out: &mut BufWriter<File>, bytes: &[u8]| {
            out.write_all(bytes).map_err(|e| Error::io(block, path, e))
        };
        write(&mut out, &header)?;
        write(&mut out, &table)?;
        out.flush().map_err(|e| Error::io(block, path, e))?;
        let symbols_offset = header.len() as u64;
        let series_offset = symbols_offset + table.len() as u64;
        drop(table);
        // Lookups read the symbol table back from the file (mapped: the region is final and
        // only appended after), so it is not held in memory.
        let mapped = crate::source::map_file(path).map_err(|e| Error::io(block, path, e))?;
        let region = mapped.slice(symbols_offset as usize..series_offset as usize);
        let symbols =
            Symbols::decode(region, symbols_offset).map_err(|c| Error::corrupt(block, c))?;
        Ok(IndexWriter {
            block: block.to_owned(),
            path: path.to_owned(),
            out,
            pos: series_offset,
            toc: Toc {
                symbols: symbols_offset,
                series: series_offset,
                ..Toc::default()
            },
            symbols,
            name_refs: HashMap::new(),
            spill_path,
            spill: BufWriter::with_capacity(1 << 20, spill_file),
            table_spill_path,
            table_spill: BufWriter::with_capacity(1 << 16, table_spill_file),
            name_counts: BTreeMap::new(),
            series_count: 0,
            last_labels: None,
            scratch: Vec::new(),
            postings_batch: DEFAULT_POSTINGS_BATCH,
        })
    }

    /// Sets how many postings entries are held in memory at once (tests use tiny batches).
    pub fn set_postings_batch(&mut self, entries: usize) {
        self.postings_batch = entries.max(1);
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.block, &self.path, e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, alignment: u64) -> Result<()> {
        let rem = self.pos % alignment;
        if rem == 0 {
            return Ok(());
        }
        let zeros = vec![0u8; (alignment - rem) as usize];
        self.write(&zeros)
    }

    fn symbol_ref(&self, symbol: &str) -> Result<u32> {
        let found = self
            .symbols
            .reverse_lookup(symbol)
            .map_err(|c| Error::corrupt(&self.block, c))?;
        found.ok_or_else(|| {
            Error::invalid(&self.block, format!("symbol {symbol:?} was not declared"))
        })
    }

    fn lookup(&self, reference: u32) -> Result<&str> {
        self.symbols
            .lookup(reference)
            .map_err(|c| Error::corrupt(&self.block, c))
    }

    fn name_ref(&mut self, name: &str) -> Result<u32> {
        if let Some(&r) = self.name_refs.get(name) {
            return Ok(r);
        }
        let r = self.symbol_ref(name)?;
        if self.name_refs.len() < NAME_CACHE_LIMIT {
            self.name_refs.insert(name.to_owned(), r);
        }
        Ok(r)
    }

    /// Appends a series. Label sets must be strictly increasing; chunks must be in time order.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkMeta]) -> Result<u32> {
        if let Some(last) = &self.last_labels
            && last >= labels
        {
            return Err(Error::invalid(
                &self.block,
                format!("series {labels} added after {last}"),
            ));
        }
        if chunks
            .windows(2)
            .any(|w| matches!(w, [a, b] if b.min_time <= a.max_time || b.chunk_ref <= a.chunk_ref))
        {
            return Err(Error::invalid(
                &self.block,
                format!("chunks of {labels} overlap or are out of order"),
            ));
        }
        self.pad_to(SERIES_ALIGNMENT)?;
        let series_ref = u32::try_from(self.pos / SERIES_ALIGNMENT)
            .map_err(|_| Error::invalid(&self.block, "series section exceeds 64 GiB"))?;
        let mut label_refs = Vec::with_capacity(labels.len());
        for label in labels {
            label_refs.push((self.name_ref(&label.name)?, self.symbol_ref(&label.value)?));
        }
        let mut record = Vec::with_capacity(8 + label_refs.len() * 8);
        record.extend_from_slice(&series_ref.to_le_bytes());
        record.extend_from_slice(&(label_refs.len() as u32).to_le_bytes());
        for &(name, value) in &label_refs {
            record.extend_from_slice(&name.to_le_bytes());
            record.extend_from_slice(&value.to_le_bytes());
            *self.name_counts.entry(name).or_default() += 1;
        }
        self.spill
            .write_all(&record)
            .map_err(|e| Error::io(&self.block, &self.spill_path, e))?;
        self.series_count = self
            .series_count
            .checked_add(1)
            .ok_or_else(|| Error::invalid(&self.block, "more than 2^32 series"))?;

        let mut entry = std::mem::take(&mut self.scratch);
        entry.clear();
        encode_series(&mut entry, &label_refs, chunks);
        let written = self.write(&entry);
        self.scratch = entry;
        written?;
        self.last_labels = Some(labels.clone());
        Ok(series_ref)
    }

    /// Ranges of label-name references, in order, each with at most `postings_batch`
    /// label occurrences (a single name with more gets a batch of its own).
    fn name_batches(&self) -> Vec<(u32, u32)> {
        let mut batches = Vec::new();
        let mut current: Option<(u32, u32, u64)> = None;
        for (&name, &count) in &self.name_counts {
            current = match current {
                Some((first, _, total)) if total + count <= self.postings_batch as u64 => {
                    Some((first, name, total + count))
                }
                Some((first, last, _)) => {
                    batches.push((first, last));
                    Some((name, name, count))
                }
                None => Some((name, name, count)),
            };
        }
        if let Some((first, last, _)) = current {
            batches.push((first, last));
        }
        batches
    }

    /// Writes the remaining sections and the TOC, syncs the file and removes the spill file.
    pub fn finish(mut self) -> Result<()> {
        self.spill
            .flush()
            .map_err(|e| Error::io(&self.block, &self.spill_path, e))?;
        let batches = self.name_batches();
        let spill_path = self.spill_path.clone();
        let block = self.block.clone();
        let spill = Spill {
            block: &block,
            path: &spill_path,
            series: self.series_count,
        };

        // Legacy label indices: one per label name, listing its value symbols.
        self.toc.label_indices = self.pos;
        let mut label_index_offsets = Vec::with_capacity(self.name_counts.len());
        for &(first, last) in &batches {
            let mut pairs: Vec<(u32, u32)> = Vec::new();
            spill.scan(|_, labels| {
                pairs.extend(labels.iter().filter(|(n, _)| (first..=last).contains(n)));
                Ok(())
            })?;
            pairs.sort_unstable();
            pairs.dedup();
            for group in pairs.chunk_by(|a, b| a.0 == b.0) {
                let Some(&(name, _)) = group.first() else {
                    continue;
                };
                self.pad_to(4)?;
                label_index_offsets.push((name, self.pos));
                let mut body = Vec::with_capacity(8 + group.len() * 4);
                body.put_be32(1);
                body.put_be32(group.len() as u32);
                for &(_, value) in group {
                    body.put_be32(value);
                }
                let mut section = Vec::with_capacity(body.len() + 8);
                section.put_be32(body.len() as u32);
                section.extend_from_slice(&body);
                section.put_be32(crate::encoding::crc32c(&body));
                self.write(&section)?;
            }
        }

        // Postings: the all-postings list first (every series, streamed from the spill
        // file), then every (name, value) in order.
        self.pad_to(4)?;
        self.toc.postings = self.pos;
        let all_offset = self.pos;
        let count = self.series_count;
        let body_len = u32::try_from(4 + 4 * u64::from(count))
            .map_err(|_| Error::invalid(&self.block, "all-postings list exceeds 4 GiB"))?;
        self.write(&body_len.to_be_bytes())?;
        let mut crc = crc32c::crc32c(&count.to_be_bytes());
        self.write(&count.to_be_bytes())?;
        let mut refs: Vec<u8> = Vec::with_capacity(1 << 16);
        spill.scan(|series_ref, _| {
            refs.extend_from_slice(&series_ref.to_be_bytes());
            if refs.len() >= 1 << 16 {
                crc = crc32c::crc32c_append(crc, &refs);
                self.write(&refs)?;
                refs.clear();
            }
            Ok(())
        })?;
        crc = crc32c::crc32c_append(crc, &refs);
        self.write(&refs)?;
        self.write(&crc.to_be_bytes())?;

        let mut table_entries = 0u32;
        let mut buf = Vec::new();
        for &(first, last) in &batches {
            let mut entries: Vec<(u32, u32, u32)> = Vec::new();
            spill.scan(|series_ref, labels| {
                entries.extend(
                    labels
                        .iter()
                        .filter(|(n, _)| (first..=last).contains(n))
                        .map(|&(n, v)| (n, v, series_ref)),
                );
                Ok(())
            })?;
            entries.sort_unstable();
            let mut series = Vec::new();
            for group in entries.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
                let Some(&(name, value, _)) = group.first() else {
                    continue;
                };
                self.pad_to(4)?;
                let mut record = [0u8; 16];
                record[..4].copy_from_slice(&name.to_le_bytes());
                record[4..8].copy_from_slice(&value.to_le_bytes());
                record[8..].copy_from_slice(&self.pos.to_le_bytes());
                self.table_spill
                    .write_all(&record)
                    .map_err(|e| Error::io(&block, &self.table_spill_path, e))?;
                table_entries += 1;
                series.clear();
                series.extend(group.iter().map(|e| e.2));
                buf.clear();
                encode_postings(&mut buf, &series);
                self.write(&buf)?;
            }
        }

        // Legacy label offset table.
        self.toc.label_indices_table = self.pos;
        let mut body = Vec::new();
        body.put_be32(label_index_offsets.len() as u32);
        for (name, offset) in &label_index_offsets {
            let name = self
                .symbols
                .lookup(*name)
                .map_err(|c| Error::corrupt(&self.block, c))?;
            body.put_uvarint(1);
            body.put_uvarint_str(name);
            body.put_uvarint(*offset);
        }
        let mut section = Vec::with_capacity(body.len() + 8);
        section.put_be32(body.len() as u32);
        section.extend_from_slice(&body);
        section.put_be32(crate::encoding::crc32c(&body));
        self.write(&section)?;

        // Postings offset table, starting with the all-postings key ("", ""), streamed
        // from the table spill file: one pass for its length, one to write it.
        self.toc.postings_table = self.pos;
        self.table_spill
            .flush()
            .map_err(|e| Error::io(&block, &self.table_spill_path, e))?;
        let table_spill_path = self.table_spill_path.clone();
        let count = table_entries
            .checked_add(1)
            .ok_or_else(|| Error::invalid(&block, "more than 2^32 postings lists"))?;
        let mut entry = Vec::new();
        let mut body_len = 4u64;
        encode_table_entry(&mut entry, "", "", all_offset);
        body_len += entry.len() as u64;
        scan_table_spill(&block, &table_spill_path, |n, v, o| {
            entry.clear();
            encode_table_entry(&mut entry, self.lookup(n)?, self.lookup(v)?, o);
            body_len += entry.len() as u64;
            Ok(())
        })?;
        let body_len = u32::try_from(body_len)
            .map_err(|_| Error::invalid(&block, "postings offset table exceeds 4 GiB"))?;
        self.write(&body_len.to_be_bytes())?;
        let mut crc = crc32c::crc32c(&count.to_be_bytes());
        self.write(&count.to_be_bytes())?;
        entry.clear();
        encode_table_entry(&mut entry, "", "", all_offset);
        crc = crc32c::crc32c_append(crc, &entry);
        self.write(&entry)?;
        let mut pending: Vec<u8> = Vec::with_capacity(1 << 16);
        scan_table_spill(&block, &table_spill_path, |n, v, o| {
            let (name, value) = (self.lookup(n)?, self.lookup(v)?);
            encode_table_entry(&mut pending, name, value, o);
            if pending.len() >= 1 << 16 {
                crc = crc32c::crc32c_append(crc, &pending);
                self.write(&pending)?;
                pending.clear();
            }
            Ok(())
        })?;
        crc = crc32c::crc32c_append(crc, &pending);
        self.write(&pending)?;
        self.write(&crc.to_be_bytes())?;

        let toc = self.toc.encode();
        self.write(&toc)?;
        self.out
            .flush()
            .map_err(|e| Error::io(&self.block, &self.path, e))?;
        let file = self.out.get_ref();
        file.sync_all()
            .map_err(|e| Error::io(&self.block, &self.path, e))?;
        std::fs::remove_file(&spill_path).map_err(|e| Error::io(&block, &spill_path, e))?;
        std::fs::remove_file(&table_spill_path)
            .map_err(|e| Error::io(&block, &table_spill_path, e))?;
        Ok(())
    }
}

/// One postings offset table entry: `2 | name | value | offset`.
fn encode_table_entry(out: &mut Vec<u8>, name: &str, value: &str, offset: u64) {
    out.put_uvarint(2);
    out.put_uvarint_str(name);
    out.put_uvarint_str(value);
    out.put_uvarint(offset);
}

/// Calls `f(name_ref, value_ref, offset)` for every record of the table spill file.
fn scan_table_spill(
    block: &str,
    path: &Path,
    mut f: impl FnMut(u32, u32, u64) -> Result<()>,
) -> Result<()> {
    let io = |e| Error::io(block, path, e);
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut record = [0u8; 16];
    for _ in 0..len / 16 {
        r.read_exact(&mut record).map_err(io)?;
        let [a, b, c, d, e, g, h, i, rest @ ..] = record;
        f(
            u32::from_le_bytes([a, b, c, d]),
            u32::from_le_bytes([e, g, h, i]),
            u64::from_le_bytes(rest),
        )?;
    }
    Ok(())
}

/// The spill file's records: `series_ref | n | n × (name_ref, value_ref)`, u32 little-endian.
struct Spill<'a> {
    block: &'a str,
    path: &'a Path,
    series: u32,
}

impl Spill<'_> {
    /// Calls `f(series_ref, labels)` for every series, in order.
    fn scan(&self, mut f: impl FnMut(u32, &[(u32, u32)]) -> Result<()>) -> Result<()> {
        let io = |e| Error::io(self.block, self.path, e);
        let file = File::open(self.path).map_err(io)?;
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut head = [0u8; 8];
        let mut raw = Vec::new();
        let mut pairs = Vec::new();
        for _ in 0..self.series {
            r.read_exact(&mut head).map_err(io)?;
            let [a, b, c, d, n0, n1, n2, n3] = head;
            let series_ref = u32::from_le_bytes([a, b, c, d]);
            let n = u32::from_le_bytes([n0, n1, n2, n3]) as usize;
            raw.resize(n * 8, 0);
            r.read_exact(&mut raw).map_err(io)?;
            pairs.clear();
            for pair in raw.chunks_exact(8) {
                if let [a, b, c, d, e, g, h, i] = *pair {
                    pairs.push((
                        u32::from_le_bytes([a, b, c, d]),
                        u32::from_le_bytes([e, g, h, i]),
                    ));
                }
            }
            f(series_ref, &pairs)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bytes::Bytes;

    use super::*;
    use crate::index::IndexReader;

    fn series_set() -> Vec<Labels> {
        let mut all: Vec<Labels> = (0..300)
            .map(|i| {
                let mut pairs = vec![
                    ("__name__", format!("metric_{}", i % 7)),
                    ("instance", format!("host-{i}")),
                    ("job", format!("job-{}", i % 3)),
                ];
                if i % 4 == 0 {
                    pairs.push(("zone", format!("z{}", i % 5)));
                }
                Labels::from_pairs(pairs)
            })
            .collect();
        all.sort();
        all
    }

    fn write(path: &Path, series: &[Labels], batch: Option<usize>) -> Vec<u8> {
        let symbols: BTreeSet<String> = series
            .iter()
            .flat_map(|l| l.iter().flat_map(|l| [l.name.clone(), l.value.clone()]))
            .collect();
        let mut w =
            IndexWriter::create_from("test", path, symbols.iter().map(String::as_str)).unwrap();
        if let Some(b) = batch {
            w.set_postings_batch(b);
        }
        for (i, labels) in series.iter().enumerate() {
            let chunk = ChunkMeta {
                min_time: i as i64,
                max_time: i as i64 + 10,
                chunk_ref: 8 + i as u64 * 100,
            };
            w.add_series(labels, &[chunk]).unwrap();
        }
        w.finish().unwrap();
        assert!(!path.with_extension("postings-spill").exists());
        std::fs::read(path).unwrap()
    }

    #[test]
    fn batched_postings_give_the_same_bytes_and_answers() {
        let dir = tempfile::tempdir().unwrap();
        let series = series_set();
        let one = write(&dir.path().join("a"), &series, None);
        for batch in [1, 3, 250, 301] {
            let other = write(&dir.path().join(format!("b{batch}")), &series, Some(batch));
            assert!(one == other, "batch {batch} wrote different bytes");
        }
        let reader = IndexReader::new("test", Bytes::from(one)).unwrap();
        let walked: Vec<(u32, Labels)> = reader
            .series_iter()
            .map(|e| e.map(|(r, e)| (r, e.labels)).unwrap())
            .collect();
        assert_eq!(
            walked.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
            reader.all_postings().unwrap()
        );
        assert_eq!(
            walked.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
            series
        );
        for name in ["__name__", "instance", "job", "zone"] {
            let values: BTreeSet<String> = series
                .iter()
                .filter_map(|l| l.get(name).map(str::to_owned))
                .collect();
            assert_eq!(
                reader.label_values(name).unwrap(),
                values.iter().cloned().collect::<Vec<_>>()
            );
            for value in &values {
                let want: Vec<u32> = walked
                    .iter()
                    .filter(|(_, l)| l.get(name) == Some(value.as_str()))
                    .map(|(r, _)| *r)
                    .collect();
                assert_eq!(
                    reader.postings(name, value).unwrap(),
                    want,
                    "{name}={value}"
                );
            }
        }
    }

    #[test]
    fn undeclared_symbols_and_disorder_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i");
        assert!(IndexWriter::create_from("t", &path, ["b", "a"]).is_err());
        let mut w = IndexWriter::create_from("t", &path, ["a", "b"]).unwrap();
        assert!(
            w.add_series(&Labels::from_pairs([("a", "c")]), &[])
                .is_err()
        );
        w.add_series(&Labels::from_pairs([("a", "b")]), &[])
            .unwrap();
        assert!(
            w.add_series(&Labels::from_pairs([("a", "a")]), &[])
                .is_err()
        );
    }
}
