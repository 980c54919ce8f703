//! Index format v2 (`tsdb/docs/format/index.md`): sans-IO decoders for each section, a
//! reader over a whole index held as [`bytes::Bytes`], and a writer.
//!
//! The decoders take the bytes of one region plus its file offset, so a caller that fetches
//! byte ranges from object storage can use them as well as one that maps a file.

mod postings;
mod postings_table;
mod reader;
mod series;
mod symbols;
mod toc;
mod writer;

pub use postings::{Postings, decode_postings, intersect, merge, without};
pub use postings_table::{PostingsOffsetTable, PostingsRange};
pub use reader::{IndexReader, SeriesIter};
pub use series::{ChunkMeta, SeriesEntry, decode_series, decode_series_with, encode_series};
pub use symbols::{SymbolMemo, Symbols};
pub use toc::{INDEX_HEADER_LEN, INDEX_MAGIC, INDEX_VERSION_V2, TOC_LEN, Toc};
pub use writer::IndexWriter;

/// Series references in v2 are the entry's file offset divided by 16.
pub const SERIES_ALIGNMENT: u64 = 16;
