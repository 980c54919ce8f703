//! The shipper: uploads every new, complete block Prometheus cuts to the bucket, in Thanos'
//! way — chunks, then the index, then `meta.json` with the `thanos` section last, so a
//! reader never sees a half-uploaded block — and records what is uploaded in
//! `thanos.shipper.json` (Thanos' format) in the TSDB directory.
//!
//! After a restart nothing is uploaded twice (the shipper file, and a block whose meta.json
//! is already in the bucket counts as uploaded) and nothing is skipped (a block missing from
//! the file is uploaded again, overwriting any partial objects of an interrupted upload).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_objstore::Bucket;
use strata_tsdb::BlockMeta;
use strata_tsdb::meta::Downsample;
use strata_types::Labels;
use ulid::Ulid;

/// Thanos' default shipper file name.
pub const SHIPPER_FILE: &str = "thanos.shipper.json";

/// A sync failed.
#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    /// A local file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The bucket failed.
    #[error("block {block}: {source}")]
    Bucket {
        /// The block.
        block: Ulid,
        /// The bucket error.
        #[source]
        source: strata_objstore::Error,
    },
    /// A meta.json is unreadable.
    #[error("block {block}: meta.json: {message}")]
    Meta {
        /// The block.
        block: Ulid,
        /// What is wrong.
        message: String,
    },
    /// Uploading a block failed.
    #[error(transparent)]
    Upload(#[from] strata_block::BlockError),
}

/// `thanos.shipper.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipperFile {
    /// Always 1.
    pub version: u32,
    /// Uploaded blocks still on local disk.
    pub uploaded: Vec<String>,
}

/// What one sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncStats {
    /// Blocks uploaded now.
    pub uploaded: Vec<Ulid>,
    /// Blocks found already in the bucket and recorded.
    pub found: usize,
    /// Upload failures (the block is retried next sync).
    pub failed: usize,
}

/// Ships the blocks of one TSDB directory.
#[derive(Debug, Clone)]
pub struct Shipper {
    dir: PathBuf,
    bucket: Bucket,
    upload_compacted: bool,
}

impl Shipper {
    /// A shipper for the TSDB at `dir`.
    pub fn new(dir: PathBuf, bucket: Bucket, upload_compacted: bool) -> Shipper {
        Shipper {
            dir,
            bucket,
            upload_compacted,
        }
    }

    fn shipper_path(&self) -> PathBuf {
        self.dir.join(SHIPPER_FILE)
    }

    /// Reads the shipper file (missing or corrupt: nothing uploaded yet).
    pub fn read_state(&self) -> ShipperFile {
        std::fs::read(self.shipper_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(ShipperFile {
                version: 1,
                uploaded: Vec::new(),
            })
    }

    fn write_state(&self, uploaded: &BTreeSet<String>) -> Result<(), ShipperError> {
        let path = self.shipper_path();
        let io = |source| ShipperError::Io {
            path: path.clone(),
            source,
        };
        let file = ShipperFile {
            version: 1,
            uploaded: uploaded.iter().cloned().collect(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(())
    }

    /// Block directories (by ULID, in time order) with their metas.
    fn local_blocks(&self) -> Result<Vec<(Ulid, PathBuf, BlockMeta)>, ShipperError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| ShipperError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(id) = name.parse::<Ulid>() else {
                continue;
            };
            let path = entry.path();
            let Ok(bytes) = std::fs::read(path.join("meta.json")) else {
                continue; // not complete yet, or being deleted
            };
            match BlockMeta::parse(&bytes) {
                Ok(meta) => out.push((id, path, meta)),
                Err(e) => {
                    tracing::warn!(block = %id, error = %e, "skipping block with unreadable meta.json")
                }
            }
        }
        out.sort_by_key(|(id, _, meta)| (meta.min_time, *id));
        Ok(out)
    }

    /// Uploads every block not uploaded yet, in time order, with `ext_labels`.
    pub async fn sync(&self, ext_labels: &Labels) -> Result<SyncStats, ShipperError> {
        let state = self.read_state();
        let mut uploaded: BTreeSet<String> = state.uploaded.into_iter().collect();
        let blocks = self.local_blocks()?;
        let mut stats = SyncStats::default();
        let mut seen = BTreeSet::new();
        for (id, path, meta) in blocks {
            let name = id.to_string();
            seen.insert(name.clone());
            if uploaded.contains(&name) {
                continue;
            }
            if meta.stats.num_samples == 0 {
                continue;
            }
            if meta.compaction.level > 1 && !self.upload_compacted {
                continue;
            }
            let exists = self
                .bucket
                .exists(&format!("{name}/meta.json"))
                .await
                .map_err(|source| ShipperError::Bucket { block: id, source })?;
            if exists {
                uploaded.insert(name);
                stats.found += 1;
                continue;
            }
            match self.upload(id, &path, meta, ext_labels).await {
                Ok(()) => {
                    tracing::info!(block = %id, "uploaded block");
                    uploaded.insert(name);
                    stats.uploaded.push(id);
                }
                Err(e) => {
                    stats.failed += 1;
                    if !path.join("meta.json").exists() {
                        // Prometheus deleted the block under us: its objects stay without
                        // a meta.json, which readers ignore.
                        tracing::warn!(block = %id, error = %e, "block vanished during upload");
                        continue;
                    }
                    tracing::warn!(block = %id, error = %e, "upload failed; retrying next sync");
                    break;
                }
            }
        }
        uploaded.retain(|u| seen.contains(u));
        self.write_state(&uploaded)?;
        Ok(stats)
    }

    async fn upload(
        &self,
        id: Ulid,
        dir: &Path,
        mut meta: BlockMeta,
        ext_labels: &Labels,
    ) -> Result<(), ShipperError> {
        let mut thanos = meta.thanos.take().unwrap_or_default();
        thanos.labels = ext_labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        thanos.downsample = Downsample { resolution: 0 };
        thanos.source = "sidecar".into();
        meta.thanos = Some(thanos);
        strata_block::upload_block(&self.bucket, id, dir, meta).await?;
        Ok(())
    }
}
