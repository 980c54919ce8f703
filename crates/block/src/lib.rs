//! Blocks in a bucket, laid out as Thanos lays them out (`<ULID>/meta.json`, `index`,
//! `chunks/NNNNNN`, marker files):
//!
//! - [`fetcher`] lists the bucket and filters block metas (partial uploads, deletion marks,
//!   time window, relabel selection, blocks superseded by compaction);
//! - [`relabel`] is Prometheus relabelling for `--selector.relabel-config`;
//! - [`markers`] reads and writes `deletion-mark.json`, `no-compact-mark.json` and
//!   `no-downsample-mark.json`;
//! - [`listing`] lists every block with its facts, size and markers (the blocks pages);
//! - [`upload`] uploads a local block directory (meta.json last) and deletes a block in the
//!   order that never leaves a readable half-block behind.
//!
//! Shared by the sidecar, the store gateway, the compactor and the bucket tools.

pub mod cleanup;
pub mod fetcher;
pub mod listing;
pub mod markers;
pub mod relabel;
pub mod upload;

pub use fetcher::{FetchFilter, FetchResult, MetaFetcher, external_labels, resolution};
pub use markers::{DeletionMark, NoCompactMark, NoDownsampleMark};
pub use relabel::Relabel;
pub use upload::{BlockError, delete_block, upload_block};
