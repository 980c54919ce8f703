//! Chunk segment files `chunks/000001…` (`tsdb/docs/format/chunks.md`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_chunkenc::Encoding;

use crate::encoding::{Decoder, EncodeExt, check_crc};
use crate::error::{CorruptKind, Corruption, Error, Result, Section};

/// Magic number of a chunk segment file.
pub const CHUNKS_MAGIC: u32 = 0x85BD_40DD;
/// Segment header: magic, version 1, three zero bytes.
pub const SEGMENT_HEADER_LEN: usize = 8;
/// Prometheus' default maximum segment size.
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;

/// The chunk reference of `offset` in the segment with 0-based index `segment`.
pub fn chunk_ref(segment: u32, offset: u32) -> u64 {
    (u64::from(segment) << 32) | u64::from(offset)
}

/// Splits a chunk reference into its 0-based segment index and byte offset.
pub fn split_chunk_ref(reference: u64) -> (u32, u32) {
    ((reference >> 32) as u32, reference as u32)
}

/// One chunk as stored: its encoding and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawChunk {
    /// The encoding byte.
    pub encoding: Encoding,
    /// The payload (for XOR: the 2-byte count and the bit stream).
    pub data: Bytes,
}

/// Checks the 8-byte header of segment `segment`.
pub fn check_segment_header(data: &[u8], segment: u32) -> Result<(), Corruption> {
    let mut d = Decoder::new(data, 0, Section::Chunks(segment));
    let magic = d.be32()?;
    if magic != CHUNKS_MAGIC {
        return Err(Corruption::new(
            Section::Chunks(segment),
            0,
            CorruptKind::BadMagic {
                found: magic,
                expected: CHUNKS_MAGIC,
            },
        ));
    }
    let version = d.byte()?;
    if version != 1 {
        return Err(Corruption::new(
            Section::Chunks(segment),
            4,
            CorruptKind::BadVersion(version),
        ));
    }
    d.skip(3)?;
    Ok(())
}

/// Decodes the chunk at byte `offset` of segment `segment` whose bytes are `data` (the whole
/// segment), checking its CRC.
pub fn decode_chunk(data: &Bytes, segment: u32, offset: u32) -> Result<RawChunk, Corruption> {
    let section = Section::Chunks(segment);
    if (offset as usize) < SEGMENT_HEADER_LEN || offset as usize >= data.len() {
        return Err(Corruption::new(
            section,
            u64::from(offset),
            CorruptKind::OutOfBounds {
                what: "chunk offset",
                value: u64::from(offset),
                limit: data.len() as u64,
            },
        ));
    }
    decode_chunk_at(&data.slice(offset as usize..), segment, offset)
}

/// Decodes the chunk whose bytes start at `region` (fetched from byte `offset` of segment
/// `segment`; the region may extend past the chunk), checking its CRC.
pub fn decode_chunk_at(region: &Bytes, segment: u32, offset: u32) -> Result<RawChunk, Corruption> {
    let section = Section::Chunks(segment);
    let mut d = Decoder::new(region, u64::from(offset), section);
    let len = d.uvarint()?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    let start = d.position();
    let encoded = d.bytes(len.saturating_add(1))?;
    let crc = d.bytes(4)?;
    check_crc(
        encoded,
        crc,
        section,
        u64::from(offset) + (start + encoded.len()) as u64,
    )?;
    let encoding = Encoding::from_byte(encoded.first().copied().unwrap_or_default());
    Ok(RawChunk {
        encoding,
        data: region.slice(start + 1..start + 1 + len),
    })
}

/// The total size of the chunk whose bytes start at `prefix` (length varint, encoding
/// byte, data, CRC), when `prefix` holds at least the complete length varint.
pub fn chunk_size_hint(prefix: &[u8]) -> Option<u64> {
    let mut d = Decoder::new(prefix, 0, Section::Chunks(0));
    let len = d.uvarint().ok()?;
    Some((d.position() as u64).saturating_add(len).saturating_add(5))
}

/// Reads chunks from a block's segment files, held as [`Bytes`].
#[derive(Debug, Clone)]
pub struct ChunkReader {
    block: String,
    segments: Vec<Bytes>,
}

impl ChunkReader {
    /// Wraps the segments of block `block`, in file-name order; checks their headers.
    pub fn new(block: &str, segments: Vec<Bytes>) -> Result<Self> {
        for (i, segment) in segments.iter().enumerate() {
            check_segment_header(segment, i as u32).map_err(|c| Error::corrupt(block, c))?;
        }
        Ok(ChunkReader {
            block: block.to_owned(),
            segments,
        })
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Total size of the segments in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len() as u64).sum()
    }

    /// The chunk with reference `reference`.
    pub fn chunk(&self, reference: u64) -> Result<RawChunk> {
        let (segment, offset) = split_chunk_ref(reference);
        let data = self
            .segments
            .get(segment as usize)
            .ok_or_else(|| Error::BadChunkRef {
                block: self.block.clone(),
                reference,
            })?;
        decode_chunk(data, segment, offset).map_err(|c| Error::corrupt(&self.block, c))
    }
}

/// Writes chunks into numbered segment files, cutting a new file when the next chunk would
/// pass the size limit.
#[derive(Debug)]
pub struct ChunkWriter {
    block: String,
    dir: PathBuf,
    segment_size: u64,
    current: Option<(PathBuf, BufWriter<File>)>,
    /// 0-based index of the open segment.
    segment: u32,
    /// Segments created so far.
    segments_created: u32,
    pos: u64,
    scratch: Vec<u8>,
}

impl ChunkWriter {
    /// Writes segments into `dir` (created if missing).
    pub fn new(block: &str, dir: &Path, segment_size: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(block, dir, e))?;
        Ok(ChunkWriter {
            block: block.to_owned(),
            dir: dir.to_owned(),
            segment_size: segment_size.max(SEGMENT_HEADER_LEN as u64 + 1),
            current: None,
            segment: 0,
            segments_created: 0,
            pos: 0,
            scratch: Vec::new(),
        })
    }

    fn cut(&mut self) -> Result<()> {
        self.finish_segment()?;
        let index = self.segments_created;
        let path = self.dir.join(format!("{:06}", index + 1));
        let file = File::create(&path).map_err(|e| Error::io(&self.block, &path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = Vec::with_capacity(SEGMENT_HEADER_LEN);
        header.put_be32(CHUNKS_MAGIC);
        header.extend_from_slice(&[1, 0, 0, 0]);
        out.write_all(&header)
            .map_err(|e| Error::io(&self.block, &path, e))?;
        self.current = Some((path, out));
        self.segment = index;
        self.segments_created += 1;
        self.pos = SEGMENT_HEADER_LEN as u64;
        Ok(())
    }

    fn finish_segment(&mut self) -> Result<()> {
        if let Some((path, mut out)) = self.current.take() {
            out.flush().map_err(|e| Error::io(&self.block, &path, e))?;
            out.get_ref()
                .sync_all()
                .map_err(|e| Error::io(&self.block, &path, e))?;
        }
        Ok(())
    }

    /// Appends one chunk and returns its reference.
    pub fn write_chunk(&mut self, encoding: Encoding, data: &[u8]) -> Result<u64> {
        let mut record = std::mem::take(&mut self.scratch);
        record.clear();
        record.put_uvarint(data.len() as u64);
        let crc_start = record.len();
        record.push(encoding.to_byte());
        record.extend_from_slice(data);
        let crc = crate::encoding::crc32c(record.get(crc_start..).unwrap_or_default());
        record.put_be32(crc);
        if self.current.is_none() || self.pos + record.len() as u64 > self.segment_size {
            self.cut()?;
        }
        let offset = u32::try_from(self.pos)
            .map_err(|_| Error::invalid(&self.block, "chunk segment exceeds 4 GiB"))?;
        let reference = chunk_ref(self.segment, offset);
        if let Some((path, out)) = self.current.as_mut() {
            out.write_all(&record)
                .map_err(|e| Error::io(&self.block, path.as_path(), e))?;
        }
        self.pos += record.len() as u64;
        self.scratch = record;
        Ok(reference)
    }

    /// Flushes and syncs the last segment.
    pub fn finish(mut self) -> Result<()> {
        self.finish_segment()
    }
}
