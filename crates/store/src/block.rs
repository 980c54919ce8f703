//! One block of the bucket as the gateway serves it: its meta, a local index-header
//! (symbols and postings offsets, memory-mapped), and byte-range reads of postings, series
//! and chunks from the bucket, coalesced when close together and cached.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use strata_objstore::Bucket;
use strata_tsdb::chunks::{RawChunk, chunk_size_hint, decode_chunk_at, split_chunk_ref};
use strata_tsdb::index::{SeriesEntry, Toc, decode_postings, decode_series_with};
use strata_tsdb::index_header::{
    IndexHeader, combine_postings, encode_index_header, header_ranges,
};
use strata_tsdb::{BlockMeta, CorruptKind};
use strata_types::{Labels, Matcher};
use ulid::Ulid;

use crate::cache::{IndexCache, Key, Value};
use strata_block::fetcher::{external_labels, resolution};

/// Ranges closer than this are fetched with one request (Thanos' `PartitionerMaxGapSize`).
pub const MAX_GAP: u64 = 512 * 1024;
/// Bytes read for a series entry when the block does not say its largest.
pub const ESTIMATED_MAX_SERIES_SIZE: u64 = 64 * 1024;
/// Bytes read for a chunk when the block does not say its largest.
pub const ESTIMATED_MAX_CHUNK_SIZE: u64 = 16_000;
/// Concurrent range requests per call.
const FETCH_CONCURRENCY: usize = 8;

/// Reading a block failed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The bucket failed.
    #[error("block {block}: {source}")]
    Bucket {
        /// Block ID.
        block: Ulid,
        /// The bucket error (names the object).
        #[source]
        source: strata_objstore::Error,
    },
    /// The block's bytes are corrupt.
    #[error(transparent)]
    Format(#[from] strata_tsdb::Error),
    /// A local file failed.
    #[error("block {block}: {path}: {source}")]
    Io {
        /// Block ID.
        block: Ulid,
        /// The local file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

/// A block served from the bucket.
#[derive(Debug)]
pub struct BucketBlock {
    id: Ulid,
    name: String,
    meta: BlockMeta,
    ext_labels: Labels,
    resolution: i64,
    header: IndexHeader,
    bucket: Bucket,
    cache: IndexCache,
    segment_sizes: Vec<u64>,
    series_max_size: u64,
    chunk_max_size: u64,
}

impl BucketBlock {
    /// Loads the block: its index-header from `data_dir/<id>/index-header` (built from the
    /// bucket if missing or corrupt) and its chunk segment sizes.
    pub async fn load(
        bucket: Bucket,
        cache: IndexCache,
        meta: BlockMeta,
        data_dir: &Path,
    ) -> Result<BucketBlock, BlockError> {
        let id: Ulid = meta
            .ulid()
            .map_err(|e| strata_tsdb::Error::invalid(&meta.ulid, e.to_string()))?;
        let name = id.to_string();
        let dir = data_dir.join(&name);
        let path = dir.join("index-header");
        let header = match open_header(&name, &path) {
            Some(header) => header,
            None => {
                build_header(&bucket, id, &dir, &path).await?;
                let (data, mapped) =
                    strata_tsdb::source::map_file_releasable(&path).map_err(|source| {
                        BlockError::Io {
                            block: id,
                            path: path.clone(),
                            source,
                        }
                    })?;
                let header = IndexHeader::decode(&name, data)?;
                release(&name, &mapped);
                header
            }
        };
        let segment_sizes = segment_sizes(&bucket, id, &meta).await?;
        let stats = meta.thanos.as_ref().and_then(|t| t.index_stats);
        let series_max_size = stats
            .map(|s| s.series_max_size)
            .filter(|&s| s > 0)
            .unwrap_or(ESTIMATED_MAX_SERIES_SIZE);
        let chunk_max_size = stats
            .map(|s| s.chunk_max_size)
            .filter(|&s| s > 0)
            .unwrap_or(ESTIMATED_MAX_CHUNK_SIZE);
        Ok(BucketBlock {
            id,
            name,
            ext_labels: external_labels(&meta),
            resolution: resolution(&meta),
            meta,
            header,
            bucket,
            cache,
            segment_sizes,
            series_max_size,
            chunk_max_size,
        })
    }

    /// Block ID.
    pub fn id(&self) -> Ulid {
        self.id
    }

    /// The block's meta.json.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// External labels.
    pub fn ext_labels(&self) -> &Labels {
        &self.ext_labels
    }

    /// Resolution in ms (0 = raw).
    pub fn resolution(&self) -> i64 {
        self.resolution
    }

    /// The index cache the block reads through.
    pub(crate) fn cache(&self) -> &IndexCache {
        &self.cache
    }

    /// The index-header.
    pub fn header(&self) -> &IndexHeader {
        &self.header
    }

    fn bucket_err(&self, source: strata_objstore::Error) -> BlockError {
        BlockError::Bucket {
            block: self.id,
            source,
        }
    }

    /// References of the series matching every matcher, ascending (= label order).
    pub async fn postings(&self, matchers: &[Matcher]) -> Result<Vec<u32>, BlockError> {
        let plan = self.header.plan_postings(matchers)?;
        if plan.is_empty_result() {
            return Ok(Vec::new());
        }
        let mut lists: HashMap<u64, Vec<u32>> = HashMap::new();
        let mut missing = Vec::new();
        let ranges = plan.ranges();
        let keys: Vec<Key> = ranges
            .iter()
            .map(|r| Key::Postings(self.id, r.offset))
            .collect();
        for (range, cached) in ranges.into_iter().zip(self.cache.get_many(&keys).await) {
            match cached {
                Some(Value::Postings(list)) => {
                    lists.insert(range.offset, list.as_ref().clone());
                }
                _ => missing.push(range),
            }
        }
        let ranges: Vec<Range<u64>> = missing.iter().map(|r| r.offset..r.end).collect();
        let fetched = self.fetch(&format!("{}/index", self.name), &ranges).await?;
        for (range, data) in missing.iter().zip(fetched) {
            let list = decode_postings(&data, range.offset)
                .map_err(|c| strata_tsdb::Error::corrupt(&self.name, c))?;
            self.cache.insert(
                Key::Postings(self.id, range.offset),
                Value::Postings(Arc::new(list.clone())),
            );
            lists.insert(range.offset, list);
        }
        Ok(combine_postings(&plan, &lists))
    }

    /// The series entries of `refs` (ascending), in the same order.
    pub async fn series(&self, refs: &[u32]) -> Result<Vec<SeriesEntry>, BlockError> {
        let section = self.header.series_section();
        let mut raw: Vec<Option<Bytes>> = Vec::with_capacity(refs.len());
        let mut missing: Vec<(usize, u64)> = Vec::new();
        let keys: Vec<Key> = refs.iter().map(|&r| Key::Series(self.id, r)).collect();
        let cached = self.cache.get_many(&keys).await;
        for ((i, &r), cached) in refs.iter().enumerate().zip(cached) {
            match cached {
                Some(Value::Series(bytes)) => raw.push(Some(bytes)),
                _ => {
                    missing.push((i, self.header.series_offset(r)?));
                    raw.push(None);
                }
            }
        }
        let ranges: Vec<Range<u64>> = missing
            .iter()
            .map(|&(_, off)| off..(off + self.series_max_size).min(section.end))
            .collect();
        let object = format!("{}/index", self.name);
        let fetched = self.fetch(&object, &ranges).await?;
        for ((i, offset), mut data) in missing.into_iter().zip(fetched) {
            let mut size = series_size(&data);
            if size.is_none_or(|s| s > data.len() as u64) {
                // Larger than the estimate: read exactly what its length prefix says.
                let Some(exact) = size.or_else(|| series_size(&data)) else {
                    return Err(strata_tsdb::Error::corrupt(
                        &self.name,
                        strata_tsdb::Corruption::new(
                            strata_tsdb::Section::Series,
                            offset,
                            CorruptKind::BadVarint,
                        ),
                    )
                    .into());
                };
                let end = (offset + exact).min(section.end);
                data = self
                    .bucket
                    .get_range(&object, offset..end)
                    .await
                    .map_err(|e| self.bucket_err(e))?;
                size = Some(exact);
            }
            let exact = size.unwrap_or(data.len() as u64).min(data.len() as u64);
            let entry_bytes = data.slice(..exact as usize);
            if let Some(&r) = refs.get(i) {
                // A copy: a slice would hold the whole (merged) read alive in the cache,
                // which weighs only the entry.
                self.cache.insert(
                    Key::Series(self.id, r),
                    Value::Series(Bytes::copy_from_slice(&entry_bytes)),
                );
            }
            if let Some(slot) = raw.get_mut(i) {
                *slot = Some(entry_bytes);
            }
        }
        let mut out = Vec::with_capacity(refs.len());
        // The batch's series share most of their symbols.
        let symbols = self.header.symbols();
        let mut memo = strata_tsdb::index::SymbolMemo::default();
        for (bytes, &r) in raw.into_iter().zip(refs) {
            let offset = self.header.series_offset(r)?;
            let bytes = bytes.unwrap_or_default();
            let entry = decode_series_with(&bytes, offset, symbols, &mut memo)
                .map_err(|c| strata_tsdb::Error::corrupt(&self.name, c))?;
            out.push(entry);
        }
        Ok(out)
    }

    /// The chunks with references `refs`, in the same order.
    pub async fn chunks(&self, refs: &[u64]) -> Result<Vec<RawChunk>, BlockError> {
        let mut by_segment: HashMap<u32, Vec<(usize, u32)>> = HashMap::new();
        for (i, &r) in refs.iter().enumerate() {
            let (segment, offset) = split_chunk_ref(r);
            by_segment.entry(segment).or_default().push((i, offset));
        }
        let mut out: Vec<Option<RawChunk>> = vec![None; refs.len()];
        for (segment, items) in by_segment {
            let size = self
                .segment_sizes
                .get(segment as usize)
                .copied()
                .ok_or_else(|| {
                    strata_tsdb::Error::corrupt(
                        &self.name,
                        strata_tsdb::Corruption::new(
                            strata_tsdb::Section::Chunks(segment),
                            0,
                            CorruptKind::OutOfBounds {
                                what: "chunk segment",
                                value: u64::from(segment),
                                limit: self.segment_sizes.len() as u64,
                            },
                        ),
                    )
                })?;
            let object = format!("{}/chunks/{:06}", self.name, segment + 1);
            let ranges: Vec<Range<u64>> = items
                .iter()
                .map(|&(_, off)| {
                    let start = u64::from(off).min(size);
                    start..(start + self.chunk_max_size).min(size)
                })
                .collect();
            let fetched = self.fetch(&object, &ranges).await?;
            for ((i, offset), mut data) in items.into_iter().zip(fetched) {
                if let Some(need) = chunk_size_hint(&data)
                    && need > data.len() as u64
                {
                    let start = u64::from(offset);
                    data = self
                        .bucket
                        .get_range(&object, start..(start + need).min(size))
                        .await
                        .map_err(|e| self.bucket_err(e))?;
                }
                let chunk = decode_chunk_at(&data, segment, offset)
                    .map_err(|c| strata_tsdb::Error::corrupt(&self.name, c))?;
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(chunk);
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Fetches `ranges` of `object` (one result per range, same order), merging ranges
    /// less than [`MAX_GAP`] apart into one request. On a FILESYSTEM bucket the ranges are
    /// mapped, not copied (copying from the page cache into zeroed buffers was a sixth of
    /// the store gateway's work): what is kept longer than a request (index cache entries)
    /// is copied out of them.
    async fn fetch(&self, object: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, BlockError> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let mut order: Vec<usize> = (0..ranges.len()).collect();
        order.sort_by_key(|&i| ranges.get(i).map_or(0, |r| r.start));
        let mut merged: Vec<Range<u64>> = Vec::new();
        for &i in &order {
            let Some(r) = ranges.get(i) else { continue };
            match merged.last_mut() {
                Some(last) if r.start <= last.end.saturating_add(MAX_GAP) => {
                    last.end = last.end.max(r.end);
                }
                _ => merged.push(r.clone()),
            }
        }
        let bucket = &self.bucket;
        let fetched: Vec<(Range<u64>, Bytes)> = futures::stream::iter(merged)
            .map(|r| async move {
                let bytes = bucket.get_range_mapped(object, r.clone()).await?;
                Ok::<_, strata_objstore::Error>((r, bytes))
            })
            .buffered(FETCH_CONCURRENCY)
            .try_collect()
            .await
            .map_err(|e| self.bucket_err(e))?;
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            // Merged ranges are disjoint and sorted: the one holding `r` starts last at or
            // before it.
            let index = fetched.partition_point(|(m, _)| m.start <= r.start);
            let part = index
                .checked_sub(1)
                .and_then(|i| fetched.get(i))
                .filter(|(m, _)| r.end <= m.end)
                .map(|(m, bytes)| {
                    let start = (r.start - m.start) as usize;
                    let end = ((r.end - m.start) as usize).min(bytes.len());
                    bytes.slice(start.min(end)..end)
                })
                .unwrap_or_default();
            out.push(part);
        }
        Ok(out)
    }
}

/// Total size of the series entry at the start of `data` (length varint, body, CRC), if
/// the varint is complete.
fn series_size(data: &[u8]) -> Option<u64> {
    let (len, used) = strata_chunkenc::get_uvarint(data)?;
    Some((used as u64).saturating_add(len).saturating_add(4))
}

/// Decoding reads the whole index-header once (checksums, sampled offsets); afterwards
/// only the pages lookups touch need to stay resident.
fn release(name: &str, mapped: &strata_tsdb::source::MappedFile) {
    if let Err(e) = mapped.release() {
        tracing::debug!(block = name, error = %e, "releasing index-header pages failed");
    }
}

fn open_header(name: &str, path: &Path) -> Option<IndexHeader> {
    let (data, mapped) = strata_tsdb::source::map_file_releasable(path).ok()?;
    match IndexHeader::decode(name, data) {
        Ok(header) => {
            release(name, &mapped);
            Some(header)
        }
        Err(e) => {
            tracing::warn!(block = name, error = %e, "local index-header is corrupt; rebuilding");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

/// Builds the index-header from three range reads of the remote index and writes it
/// atomically (temporary file, fsync, rename).
async fn build_header(
    bucket: &Bucket,
    id: Ulid,
    dir: &Path,
    path: &Path,
) -> Result<(), BlockError> {
    let name = id.to_string();
    let object = format!("{name}/index");
    let bucket_err = |source| BlockError::Bucket { block: id, source };
    let size = bucket.attributes(&object).await.map_err(bucket_err)?.size;
    let toc_len = strata_tsdb::index::TOC_LEN as u64;
    if size < toc_len + strata_tsdb::index::INDEX_HEADER_LEN as u64 {
        return Err(strata_tsdb::Error::corrupt(
            &name,
            strata_tsdb::Corruption::new(
                strata_tsdb::Section::Toc,
                0,
                CorruptKind::Truncated {
                    needed: toc_len + 5,
                    available: size,
                },
            ),
        )
        .into());
    }
    let head = bucket
        .get_range(&object, 0..strata_tsdb::index::INDEX_HEADER_LEN as u64)
        .await
        .map_err(bucket_err)?;
    Toc::check_header(&head).map_err(|c| strata_tsdb::Error::corrupt(&name, c))?;
    let tail = bucket
        .get_range(&object, size - toc_len..size)
        .await
        .map_err(bucket_err)?;
    let toc = Toc::decode(&tail, size).map_err(|c| strata_tsdb::Error::corrupt(&name, c))?;
    let [symbols, table] = header_ranges(&toc, size);
    let parts = bucket
        .get_ranges(&object, &[symbols, table])
        .await
        .map_err(bucket_err)?;
    let (Some(symbols), Some(table)) = (parts.first(), parts.get(1)) else {
        return Err(strata_tsdb::Error::invalid(&name, "index ranges missing").into());
    };
    let bytes = encode_index_header(&toc, symbols, table);
    // Validate before writing, so a corrupt index never leaves a header behind.
    IndexHeader::decode(&name, Bytes::from(bytes.clone()))?;
    let io = |source| BlockError::Io {
        block: id,
        path: path.to_owned(),
        source,
    };
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let tmp = path.with_extension("tmp");
    let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
    tokio::io::AsyncWriteExt::write_all(&mut file, &bytes)
        .await
        .map_err(io)?;
    file.sync_all().await.map_err(io)?;
    drop(file);
    tokio::fs::rename(&tmp, path).await.map_err(io)?;
    Ok(())
}

/// Sizes of the block's chunk segment files, in order: from meta.json's file list when it
/// has one, else by listing `chunks/`.
async fn segment_sizes(
    bucket: &Bucket,
    id: Ulid,
    meta: &BlockMeta,
) -> Result<Vec<u64>, BlockError> {
    let mut files: Vec<(String, u64)> = meta
        .thanos
        .as_ref()
        .map(|t| {
            t.files
                .iter()
                .filter(|f| f.rel_path.starts_with("chunks/"))
                .filter_map(|f| Some((f.rel_path.clone(), f.size_bytes?)))
                .collect()
        })
        .unwrap_or_default();
    if files.is_empty() {
        let prefix = format!("{id}/");
        files = bucket
            .iter_recursive(&format!("{id}/chunks"))
            .await
            .map_err(|source| BlockError::Bucket { block: id, source })?
            .into_iter()
            .map(|(name, size)| (name.strip_prefix(&prefix).unwrap_or(&name).to_owned(), size))
            .collect();
    }
    files.sort();
    Ok(files.into_iter().map(|(_, size)| size).collect())
}
