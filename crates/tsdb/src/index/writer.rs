use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use strata_types::Labels;

use super::SERIES_ALIGNMENT;
use super::postings::encode_postings;
use super::postings_table::PostingsOffsetTable;
use super::series::{ChunkMeta, encode_series};
use super::symbols::Symbols;
use super::toc::{INDEX_MAGIC, INDEX_VERSION_V2, Toc};
use crate::encoding::EncodeExt;
use crate::error::{Error, Result};

/// Writes an index file in format v2, as Prometheus 2.42 lays it out: symbols, series,
/// label indices, postings, label offset table, postings offset table, TOC.
///
/// Symbols are given up front; series must be added in label order.
#[derive(Debug)]
pub struct IndexWriter {
    block: String,
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    toc: Toc,
    symbols: Vec<String>,
    symbol_refs: HashMap<String, u32>,
    /// (name ref, value ref) → series refs. Symbol order is string order, so the map's
    /// order is the (name, value) order the postings must be written in.
    postings: BTreeMap<(u32, u32), Vec<u32>>,
    all_series: Vec<u32>,
    last_labels: Option<Labels>,
    scratch: Vec<u8>,
}

impl IndexWriter {
    /// Creates `path` and writes the header and the symbol table. `symbols` must be sorted
    /// and unique and contain every label name and value of the series to come.
    pub fn create(block: &str, path: &Path, symbols: Vec<String>) -> Result<Self> {
        if !symbols.windows(2).all(|w| matches!(w, [a, b] if a < b)) {
            return Err(Error::invalid(
                block,
                "index symbols must be sorted and unique",
            ));
        }
        let file = File::create(path).map_err(|e| Error::io(block, path, e))?;
        let mut writer = IndexWriter {
            block: block.to_owned(),
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            toc: Toc::default(),
            symbol_refs: symbols
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i as u32))
                .collect(),
            symbols,
            postings: BTreeMap::new(),
            all_series: Vec::new(),
            last_labels: None,
            scratch: Vec::new(),
        };
        let mut header = Vec::with_capacity(5);
        header.put_be32(INDEX_MAGIC);
        header.push(INDEX_VERSION_V2);
        writer.write(&header)?;
        writer.toc.symbols = writer.pos;
        let table = Symbols::encode(writer.symbols.iter().map(String::as_str));
        writer.write(&table)?;
        writer.toc.series = writer.pos;
        Ok(writer)
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
        self.symbol_refs.get(symbol).copied().ok_or_else(|| {
            Error::invalid(&self.block, format!("symbol {symbol:?} was not declared"))
        })
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
            let refs = (
                self.symbol_ref(&label.name)?,
                self.symbol_ref(&label.value)?,
            );
            label_refs.push(refs);
            self.postings.entry(refs).or_default().push(series_ref);
        }
        self.all_series.push(series_ref);
        let mut entry = std::mem::take(&mut self.scratch);
        entry.clear();
        encode_series(&mut entry, &label_refs, chunks);
        let written = self.write(&entry);
        self.scratch = entry;
        written?;
        self.last_labels = Some(labels.clone());
        Ok(series_ref)
    }

    /// Writes the remaining sections and the TOC, and syncs the file.
    pub fn finish(mut self) -> Result<()> {
        // Legacy label indices: one per label name, listing its value symbols.
        self.toc.label_indices = self.pos;
        let mut names: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for &(name, value) in self.postings.keys() {
            names.entry(name).or_default().push(value);
        }
        let mut label_index_offsets = Vec::with_capacity(names.len());
        for (name, values) in &names {
            self.pad_to(4)?;
            label_index_offsets.push((*name, self.pos));
            let mut body = Vec::with_capacity(8 + values.len() * 4);
            body.put_be32(1);
            body.put_be32(values.len() as u32);
            for value in values {
                body.put_be32(*value);
            }
            let mut section = Vec::with_capacity(body.len() + 8);
            section.put_be32(body.len() as u32);
            section.extend_from_slice(&body);
            section.put_be32(crate::encoding::crc32c(&body));
            self.write(&section)?;
        }

        // Postings: the all-postings list first, then every (name, value) in order.
        self.pad_to(4)?;
        self.toc.postings = self.pos;
        let mut table_entries: Vec<(u32, u32, u64)> = Vec::with_capacity(self.postings.len() + 1);
        let all = std::mem::take(&mut self.all_series);
        let mut buf = Vec::new();
        encode_postings(&mut buf, &all);
        let all_offset = self.pos;
        self.write(&buf)?;
        let postings = std::mem::take(&mut self.postings);
        for (&(name, value), refs) in &postings {
            self.pad_to(4)?;
            table_entries.push((name, value, self.pos));
            buf.clear();
            encode_postings(&mut buf, refs);
            self.write(&buf)?;
        }

        // Legacy label offset table.
        self.toc.label_indices_table = self.pos;
        let mut body = Vec::new();
        body.put_be32(label_index_offsets.len() as u32);
        for (name, offset) in &label_index_offsets {
            body.put_uvarint(1);
            body.put_uvarint_str(self.symbols.get(*name as usize).map_or("", String::as_str));
            body.put_uvarint(*offset);
        }
        let mut section = Vec::with_capacity(body.len() + 8);
        section.put_be32(body.len() as u32);
        section.extend_from_slice(&body);
        section.put_be32(crate::encoding::crc32c(&body));
        self.write(&section)?;

        // Postings offset table, starting with the all-postings key ("", "").
        self.toc.postings_table = self.pos;
        let symbol = |r: u32| self.symbols.get(r as usize).map_or("", String::as_str);
        let entries = std::iter::once(("", "", all_offset)).chain(
            table_entries
                .iter()
                .map(|&(n, v, o)| (symbol(n), symbol(v), o)),
        );
        let table = PostingsOffsetTable::encode(entries);
        self.write(&table)?;

        let toc = self.toc.encode();
        self.write(&toc)?;
        self.out
            .flush()
            .map_err(|e| Error::io(&self.block, &self.path, e))?;
        let file = self.out.get_ref();
        file.sync_all()
            .map_err(|e| Error::io(&self.block, &self.path, e))?;
        Ok(())
    }
}
