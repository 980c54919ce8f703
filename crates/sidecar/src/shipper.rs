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
    /// Listing the bucket's blocks failed.
    #[error("listing the bucket's blocks: {0}")]
    List(#[source] strata_objstore::Error),
    /// A compacted block overlaps blocks of the same external labels in the bucket (as in
    /// Thanos, shipping stops until an operator sorts the overlap out).
    #[error("shipping compacted block {block} is blocked; overlap spotted: {overlaps}")]
    Overlap {
        /// The local block.
        block: Ulid,
        /// The bucket's blocks it overlaps, as `<ulid, mint, maxt>`.
        overlaps: String,
    },
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
    meta_file_name: String,
}

impl Shipper {
    /// A shipper for the TSDB at `dir`.
    pub fn new(dir: PathBuf, bucket: Bucket, upload_compacted: bool) -> Shipper {
        Shipper {
            dir,
            bucket,
            upload_compacted,
            meta_file_name: SHIPPER_FILE.to_owned(),
        }
    }

    /// Keeps its state in `name` under the TSDB directory instead of `thanos.shipper.json`
    /// (`--shipper.meta-file-name`; Prometheus can be told to wait for the file).
    pub fn with_meta_file_name(mut self, name: &str) -> Shipper {
        if !name.is_empty() {
            self.meta_file_name = name.to_owned();
        }
        self
    }

    fn shipper_path(&self) -> PathBuf {
        self.dir.join(&self.meta_file_name)
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
        // The bucket's blocks of these external labels, read once, when a compacted block
        // is about to be shipped.
        let mut in_bucket: Option<Vec<(Ulid, i64, i64)>> = None;
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
            let range = (meta.min_time, meta.max_time);
            if meta.compaction.level > 1 {
                if in_bucket.is_none() {
                    in_bucket = Some(self.bucket_ranges(ext_labels).await?);
                }
                let overlaps: Vec<String> = in_bucket
                    .iter()
                    .flatten()
                    .filter(|(_, min, max)| *min < range.1 && range.0 < *max)
                    .map(|(other, min, max)| format!("<{other}, {min}, {max}>"))
                    .collect();
                if !overlaps.is_empty() {
                    return Err(ShipperError::Overlap {
                        block: id,
                        overlaps: overlaps.join(", "),
                    });
                }
            }
            match self.upload(id, &path, meta, ext_labels).await {
                Ok(()) => {
                    if let Some(list) = in_bucket.as_mut() {
                        list.push((id, range.0, range.1));
                    }
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

    /// `(ulid, min_time, max_time)` of the bucket's blocks whose external labels are
    /// `ext_labels`.
    async fn bucket_ranges(
        &self,
        ext_labels: &Labels,
    ) -> Result<Vec<(Ulid, i64, i64)>, ShipperError> {
        let fetcher = strata_block::fetcher::MetaFetcher::new(self.bucket.clone(), None, 8);
        let fetched = fetcher
            .fetch(&strata_block::fetcher::FetchFilter::default())
            .await
            .map_err(ShipperError::List)?;
        Ok(fetched
            .metas
            .iter()
            .filter(|(_, meta)| strata_block::fetcher::external_labels(meta) == *ext_labels)
            .map(|(id, meta)| (*id, meta.min_time, meta.max_time))
            .collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use strata_tsdb::block::{BlockOptions, BlockWriter};
    use strata_tsdb::meta::{Compaction, ThanosMeta};
    use strata_types::Sample;

    /// A block of one series over `[min, max)` under `dir`, at compaction `level`.
    fn block(dir: &Path, min: i64, max: i64, level: u32, thanos: Option<ThanosMeta>) -> PathBuf {
        let mut writer = BlockWriter::new(dir).unwrap();
        let samples: Vec<Sample> = (min..max)
            .step_by(60_000)
            .map(|t| Sample { t, v: 1.0 })
            .collect();
        writer
            .add_samples(
                &Labels::from_pairs([("__name__", "up")]),
                &samples,
                7_200_000,
            )
            .unwrap();
        let id = writer.ulid().to_string();
        let (path, _) = writer
            .finish(BlockOptions {
                min_time: Some(min),
                max_time: Some(max),
                thanos,
                compaction: Some(Compaction {
                    level,
                    sources: vec![id],
                    ..Compaction::default()
                }),
            })
            .unwrap();
        path
    }

    #[tokio::test]
    async fn a_compacted_block_overlapping_the_bucket_is_not_shipped() {
        let dir = tempfile::tempdir().unwrap();
        let tsdb = dir.path().join("tsdb");
        let staging = dir.path().join("staging");
        std::fs::create_dir_all(&tsdb).unwrap();
        std::fs::create_dir_all(&staging).unwrap();
        let bucket = Bucket::from_yaml(
            &format!(
                "type: FILESYSTEM\nconfig:\n  directory: {}\n",
                dir.path().join("bucket").display()
            ),
            None,
        )
        .unwrap();
        let ext = Labels::from_pairs([("cluster", "eu1")]);
        let thanos = |labels: &[(&str, &str)]| ThanosMeta {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            source: "sidecar".into(),
            ..ThanosMeta::default()
        };
        // In the bucket: [0, 2h) of another Prometheus and [2h, 4h) of this one.
        for (min, max, labels) in [
            (0, 7_200_000, [("cluster", "us1")]),
            (7_200_000, 14_400_000, [("cluster", "eu1")]),
        ] {
            let path = block(&staging, min, max, 1, Some(thanos(&labels)));
            let meta = BlockMeta::parse(&std::fs::read(path.join("meta.json")).unwrap()).unwrap();
            let id: Ulid = meta.ulid.parse().unwrap();
            strata_block::upload_block(&bucket, id, &path, meta)
                .await
                .unwrap();
        }
        let shipper = Shipper::new(tsdb.clone(), bucket.clone(), true);

        // A compacted [0, 4h) block overlaps this Prometheus' [2h, 4h): refused.
        let compacted = block(&tsdb, 0, 14_400_000, 2, None);
        let err = shipper.sync(&ext).await.unwrap_err();
        assert!(matches!(err, ShipperError::Overlap { .. }), "{err}");
        assert!(err.to_string().contains("7200000"), "{err}");
        std::fs::remove_dir_all(&compacted).unwrap();

        // A compacted [0, 2h) block overlaps only another Prometheus' block, and a compacted
        // [4h, 8h) block nothing: both shipped.
        let other_only = block(&tsdb, 0, 7_200_000, 2, None);
        let fine = block(&tsdb, 14_400_000, 28_800_000, 2, None);
        let stats = shipper.sync(&ext).await.unwrap();
        assert_eq!(stats.uploaded.len(), 2);
        for path in [&other_only, &fine] {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            assert!(bucket.exists(&format!("{name}/meta.json")).await.unwrap());
        }

        // Without --shipper.upload-compacted a compacted block is not considered at all.
        let _skipped = block(&tsdb, 0, 14_400_000, 2, None);
        let stats = Shipper::new(tsdb, bucket, false).sync(&ext).await.unwrap();
        assert!(stats.uploaded.is_empty());
    }
}
