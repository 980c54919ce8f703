//! The Prometheus TSDB block format, read and written bit-compatibly with Prometheus.
//!
//! Owns: `meta.json` (with Thanos' `thanos` section), the index (format v2: symbols, series,
//! postings, postings offset table, TOC, all CRC-checked), chunk segment files and
//! tombstones; a [`BlockReader`] over a block directory or over bytes fetched from
//! anywhere, and a [`BlockWriter`].
//!
//! The section decoders in [`index`] are sans-IO: they take the bytes of a region and its
//! file offset, so the store gateway can feed them byte ranges from object storage.
//! Everything here is synchronous; no async runtime, network or object storage.
//! Untrusted bytes never cause a panic: every problem is an [`Error`] naming the block and
//! the section.

pub mod block;
pub mod chunks;
pub mod compact;
mod compact_histograms;
pub mod cutter;
pub mod dedup;
pub mod downsample;
mod downsample_histograms;
mod encoding;
pub mod error;
pub mod index;
pub mod index_header;
pub mod meta;
pub mod source;
pub mod tombstones;

pub use block::{BlockOptions, BlockReader, BlockWriter};
pub use cutter::{EncodedChunk, cut_xor_chunks};
pub use error::{CorruptKind, Corruption, Error, Result, Section};
pub use meta::{BlockMeta, ThanosMeta};

/// Default block duration: 2 hours in milliseconds.
pub const DEFAULT_BLOCK_DURATION: i64 = 2 * 60 * 60 * 1000;
