//! A whole block: reading a block directory, and writing a new one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_types::{Labels, Matcher, Sample};

use crate::chunks::{ChunkReader, ChunkWriter, DEFAULT_SEGMENT_SIZE};
use crate::cutter::{EncodedChunk, cut_xor_chunks};
use crate::error::{Error, Result};
use crate::index::{ChunkMeta, IndexReader, IndexWriter, Postings, SeriesEntry};
use crate::meta::{BlockMeta, IndexStats, ThanosMeta};
use crate::source::map_file;
use crate::tombstones::Tombstones;

/// File names inside a block directory.
pub const META_FILENAME: &str = "meta.json";
/// The index file.
pub const INDEX_FILENAME: &str = "index";
/// The chunk segment directory.
pub const CHUNKS_DIRNAME: &str = "chunks";
/// The tombstones file.
pub const TOMBSTONES_FILENAME: &str = "tombstones";

/// An open block: meta, index, chunks and tombstones, all validated at open.
#[derive(Debug, Clone)]
pub struct BlockReader {
    name: String,
    meta: BlockMeta,
    index: IndexReader,
    chunks: ChunkReader,
    tombstones: Tombstones,
}

/// Sorted chunk segment file names (`000001`, …) in a block's `chunks/` directory.
pub fn segment_files(block: &str, chunks_dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(chunks_dir).map_err(|e| Error::io(block, chunks_dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(block, chunks_dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() == 6 && name.bytes().all(|b| b.is_ascii_digit()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

impl BlockReader {
    /// Opens the block in directory `dir` (memory-mapping index and chunks). A missing
    /// tombstones file counts as no deletions (blocks in object storage have none).
    pub fn open(dir: &Path) -> Result<Self> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("<unnamed>")
            .to_owned();
        let meta_path = dir.join(META_FILENAME);
        let meta_bytes = std::fs::read(&meta_path).map_err(|e| Error::io(&name, &meta_path, e))?;
        let index_path = dir.join(INDEX_FILENAME);
        let index = map_file(&index_path).map_err(|e| Error::io(&name, &index_path, e))?;
        let mut segments = Vec::new();
        for path in segment_files(&name, &dir.join(CHUNKS_DIRNAME))? {
            segments.push(map_file(&path).map_err(|e| Error::io(&name, &path, e))?);
        }
        let tombstones_path = dir.join(TOMBSTONES_FILENAME);
        let tombstones = match std::fs::read(&tombstones_path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&name, &tombstones_path, e)),
        };
        Self::from_parts(&name, &meta_bytes, index, segments, tombstones.as_deref())
    }

    /// Builds a reader from the bytes of each file (e.g. fetched from object storage).
    pub fn from_parts(
        name: &str,
        meta_json: &[u8],
        index: Bytes,
        segments: Vec<Bytes>,
        tombstones: Option<&[u8]>,
    ) -> Result<Self> {
        let meta = BlockMeta::parse(meta_json).map_err(|source| Error::Meta {
            block: name.to_owned(),
            source,
        })?;
        let index = IndexReader::new(name, index)?;
        let chunks = ChunkReader::new(name, segments)?;
        let tombstones = match tombstones {
            Some(bytes) => Tombstones::decode(bytes).map_err(|c| Error::corrupt(name, c))?,
            None => Tombstones::empty(),
        };
        Ok(BlockReader {
            name: name.to_owned(),
            meta,
            index,
            chunks,
            tombstones,
        })
    }

    /// The block's name (its directory name, normally the ULID).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// meta.json.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The index.
    pub fn index(&self) -> &IndexReader {
        &self.index
    }

    /// The chunk segments.
    pub fn chunks(&self) -> &ChunkReader {
        &self.chunks
    }

    /// The tombstones.
    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// References of the series matching all `matchers`.
    pub fn select(&self, matchers: &[Matcher]) -> Result<Postings> {
        self.index.postings_for_matchers(matchers)
    }

    /// The series entry for a reference.
    pub fn series(&self, series_ref: u32) -> Result<SeriesEntry> {
        self.index.series(series_ref)
    }

    /// Decodes the float samples of a series within `[min_time, max_time]` (inclusive),
    /// leaving out samples deleted by tombstones.
    pub fn samples(
        &self,
        series_ref: u32,
        entry: &SeriesEntry,
        min_time: i64,
        max_time: i64,
    ) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        let deleted = self.tombstones.intervals(u64::from(series_ref));
        for meta in &entry.chunks {
            if meta.max_time < min_time || meta.min_time > max_time {
                continue;
            }
            let chunk = self.chunks.chunk(meta.chunk_ref)?;
            let start = out.len();
            strata_chunkenc::decode_floats(chunk.encoding, &chunk.data, &mut out).map_err(|e| {
                Error::corrupt(
                    &self.name,
                    crate::error::Corruption::new(
                        crate::error::Section::Chunks(
                            crate::chunks::split_chunk_ref(meta.chunk_ref).0,
                        ),
                        u64::from(crate::chunks::split_chunk_ref(meta.chunk_ref).1),
                        e.into(),
                    ),
                )
            })?;
            let tail = out.split_off(start);
            out.extend(tail.into_iter().filter(|s| {
                s.t >= min_time
                    && s.t <= max_time
                    && !deleted.iter().any(|&(lo, hi)| lo <= s.t && s.t <= hi)
            }));
        }
        Ok(out)
    }
}

/// Options for the meta.json of a block being written.
#[derive(Debug, Clone, Default)]
pub struct BlockOptions {
    /// minTime; defaults to the first sample's time.
    pub min_time: Option<i64>,
    /// maxTime (exclusive); defaults to the last sample's time + 1, as promtool writes.
    pub max_time: Option<i64>,
    /// The Thanos section to include.
    pub thanos: Option<ThanosMeta>,
    /// Compaction level and sources (defaults: level 1, itself).
    pub compaction: Option<crate::meta::Compaction>,
}

/// Writes a new block into `<parent>/<ULID>`, through a temporary directory renamed at the
/// end so a reader never sees a half-written block. Series must be added in label order.
///
/// Two modes: [`BlockWriter::new`] keeps every series' labels and chunk references until
/// [`BlockWriter::finish`] (the symbols are only known then); [`BlockWriter::streaming`]
/// takes the symbols up front and writes each series' index entry as it comes, so memory
/// does not grow with the number of series (compaction and downsampling use it).
#[derive(Debug)]
pub struct BlockWriter {
    parent: PathBuf,
    ulid: ulid::Ulid,
    name: String,
    tmp_dir: PathBuf,
    chunks: Option<ChunkWriter>,
    /// Streaming mode: the index, written as series come.
    index: Option<IndexWriter>,
    /// Buffered mode: series and symbols kept until `finish` writes the index.
    series: Vec<(Labels, Vec<ChunkMeta>)>,
    symbols: BTreeSet<String>,
    last_labels: Option<Labels>,
    num_series: u64,
    num_samples: u64,
    num_chunks: u64,
    min_time: i64,
    max_time: i64,
    index_stats: IndexStats,
}

impl BlockWriter {
    /// Starts a block with a fresh ULID under `parent`.
    pub fn new(parent: &Path) -> Result<Self> {
        Self::with_ulid(parent, ulid::Ulid::generate())
    }

    /// Starts a block with the given ULID.
    pub fn with_ulid(parent: &Path, ulid: ulid::Ulid) -> Result<Self> {
        Self::with_segment_size(parent, ulid, DEFAULT_SEGMENT_SIZE)
    }

    /// Starts a block with a custom maximum chunk segment size (tests use small ones).
    pub fn with_segment_size(parent: &Path, ulid: ulid::Ulid, segment_size: u64) -> Result<Self> {
        let name = ulid.to_string();
        let tmp_dir = parent.join(format!("{name}.tmp-for-creation"));
        std::fs::create_dir_all(&tmp_dir).map_err(|e| Error::io(&name, &tmp_dir, e))?;
        let chunks = ChunkWriter::new(&name, &tmp_dir.join(CHUNKS_DIRNAME), segment_size)?;
        Ok(BlockWriter {
            parent: parent.to_owned(),
            ulid,
            name,
            tmp_dir,
            chunks: Some(chunks),
            index: None,
            series: Vec::new(),
            symbols: BTreeSet::new(),
            last_labels: None,
            num_series: 0,
            num_samples: 0,
            num_chunks: 0,
            min_time: i64::MAX,
            max_time: i64::MIN,
            index_stats: IndexStats::default(),
        })
    }

    /// Starts a block in streaming mode: `symbols` (sorted, unique) must hold every label
    /// name and value of the series to come; each series is written to the index at once.
    pub fn streaming<'s>(
        parent: &Path,
        ulid: ulid::Ulid,
        symbols: impl IntoIterator<Item = &'s str>,
    ) -> Result<Self> {
        let mut writer = Self::with_ulid(parent, ulid)?;
        let index_path = writer.tmp_dir.join(INDEX_FILENAME);
        writer.index = Some(IndexWriter::create_from(
            &writer.name,
            &index_path,
            symbols,
        )?);
        Ok(writer)
    }

    /// The ULID of the block being written.
    pub fn ulid(&self) -> ulid::Ulid {
        self.ulid
    }

    /// Adds a series with already encoded chunks (time-ordered, non-overlapping).
    pub fn add_series(&mut self, labels: &Labels, chunks: &[EncodedChunk]) -> Result<()> {
        if let Some(last) = &self.last_labels
            && last >= labels
        {
            return Err(Error::invalid(
                &self.name,
                format!("series {labels} added after {last}"),
            ));
        }
        if labels
            .iter()
            .any(|l| l.name.is_empty() || l.value.is_empty())
        {
            return Err(Error::invalid(
                &self.name,
                format!("series {labels} has an empty label name or value"),
            ));
        }
        let Some(writer) = self.chunks.as_mut() else {
            return Err(Error::invalid(&self.name, "block already finished"));
        };
        let mut metas = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let count = strata_chunkenc::num_samples(chunk.encoding, &chunk.data)
                .map_err(|e| Error::invalid(&self.name, format!("chunk of {labels}: {e}")))?;
            let chunk_ref = writer.write_chunk(chunk.encoding, &chunk.data)?;
            metas.push(ChunkMeta {
                min_time: chunk.min_time,
                max_time: chunk.max_time,
                chunk_ref,
            });
            self.num_samples += u64::from(count);
            self.num_chunks += 1;
            self.min_time = self.min_time.min(chunk.min_time);
            self.max_time = self.max_time.max(chunk.max_time);
            self.index_stats.chunk_max_size = self
                .index_stats
                .chunk_max_size
                .max(chunk.data.len() as u64 + 6);
        }
        self.num_series += 1;
        self.last_labels = Some(labels.clone());
        if let Some(index) = self.index.as_mut() {
            index.add_series(labels, &metas)?;
            return Ok(());
        }
        for label in labels {
            if !self.symbols.contains(&label.name) {
                self.symbols.insert(label.name.clone());
            }
            if !self.symbols.contains(&label.value) {
                self.symbols.insert(label.value.clone());
            }
        }
        self.series.push((labels.clone(), metas));
        Ok(())
    }

    /// Adds a series from samples, cutting chunks as Prometheus does for `chunk_range`.
    pub fn add_samples(
        &mut self,
        labels: &Labels,
        samples: &[Sample],
        chunk_range: i64,
    ) -> Result<()> {
        let chunks = cut_xor_chunks(samples, chunk_range)
            .map_err(|e| Error::invalid(&self.name, format!("samples of {labels}: {e}")))?;
        self.add_series(labels, &chunks)
    }

    /// Writes index, tombstones and meta.json, then renames the directory into place.
    /// Returns the block directory and its meta.
    pub fn finish(mut self, options: BlockOptions) -> Result<(PathBuf, BlockMeta)> {
        if let Some(chunks) = self.chunks.take() {
            chunks.finish()?;
        }
        let index = match self.index.take() {
            Some(index) => index,
            None => {
                let index_path = self.tmp_dir.join(INDEX_FILENAME);
                let symbols = std::mem::take(&mut self.symbols);
                let mut index = IndexWriter::create_from(
                    &self.name,
                    &index_path,
                    symbols.iter().map(String::as_str),
                )?;
                drop(symbols);
                for (labels, chunks) in &self.series {
                    index.add_series(labels, chunks)?;
                }
                self.series = Vec::new();
                index
            }
        };
        index.finish()?;

        let tombstones_path = self.tmp_dir.join(TOMBSTONES_FILENAME);
        std::fs::write(&tombstones_path, Tombstones::empty().encode())
            .map_err(|e| Error::io(&self.name, &tombstones_path, e))?;

        let (min_time, max_time) = if self.num_chunks == 0 {
            (0, 0)
        } else {
            (self.min_time, self.max_time.saturating_add(1))
        };
        let mut meta = BlockMeta::new_level1(
            self.ulid,
            options.min_time.unwrap_or(min_time),
            options.max_time.unwrap_or(max_time),
        );
        meta.stats.num_samples = self.num_samples;
        meta.stats.num_series = self.num_series;
        meta.stats.num_chunks = self.num_chunks;
        if let Some(compaction) = options.compaction {
            meta.compaction = compaction;
        }
        meta.thanos = options.thanos;
        let meta_path = self.tmp_dir.join(META_FILENAME);
        let json = meta.to_json().map_err(|source| Error::Meta {
            block: self.name.clone(),
            source,
        })?;
        std::fs::write(&meta_path, json).map_err(|e| Error::io(&self.name, &meta_path, e))?;

        let final_dir = self.parent.join(&self.name);
        std::fs::rename(&self.tmp_dir, &final_dir)
            .map_err(|e| Error::io(&self.name, &final_dir, e))?;
        Ok((final_dir, meta))
    }
}
