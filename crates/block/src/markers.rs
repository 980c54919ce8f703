//! Marker files next to a block (`pkg/block/metadata/markers.go`): a deletion mark (the
//! compactor deletes the block after `--delete-delay`), a no-compact mark and a
//! no-downsample mark. All are version 1 JSON with unix-second timestamps.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use strata_objstore::Bucket;
use ulid::Ulid;

use crate::upload::BlockError;

/// `deletion-mark.json`.
pub const DELETION_MARK: &str = "deletion-mark.json";
/// `no-compact-mark.json`.
pub const NO_COMPACT_MARK: &str = "no-compact-mark.json";
/// `no-downsample-mark.json`.
pub const NO_DOWNSAMPLE_MARK: &str = "no-downsample-mark.json";

/// `deletion-mark.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    /// The block.
    pub id: String,
    /// Always 1.
    pub version: u32,
    /// Why.
    #[serde(default)]
    pub details: String,
    /// When the mark was made (unix seconds).
    pub deletion_time: i64,
}

/// `no-compact-mark.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoCompactMark {
    /// The block.
    pub id: String,
    /// Always 1.
    pub version: u32,
    /// Why, in words.
    #[serde(default)]
    pub details: String,
    /// When (unix seconds).
    pub no_compact_time: i64,
    /// `manual`, `index-size-exceeding`, `block-index-out-of-order-chunk`,
    /// `downsample-vertical-compaction`.
    #[serde(default)]
    pub reason: String,
}

/// `no-downsample-mark.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoDownsampleMark {
    /// The block.
    pub id: String,
    /// Always 1.
    pub version: u32,
    /// Why, in words.
    #[serde(default)]
    pub details: String,
    /// When (unix seconds).
    pub no_downsample_time: i64,
    /// Usually `manual`.
    #[serde(default)]
    pub reason: String,
}

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    bucket: &Bucket,
    id: Ulid,
    file: &str,
) -> Result<Option<T>, BlockError> {
    let path = format!("{id}/{file}");
    match bucket.get(&path).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| BlockError::Marker {
                block: id,
                file: file.to_owned(),
                message: e.to_string(),
            }),
        Err(e) if e.is_not_found() => Ok(None),
        Err(source) => Err(BlockError::Bucket { block: id, source }),
    }
}

async fn write_json<T: Serialize>(
    bucket: &Bucket,
    id: Ulid,
    file: &str,
    value: &T,
) -> Result<(), BlockError> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| BlockError::Marker {
        block: id,
        file: file.to_owned(),
        message: e.to_string(),
    })?;
    bucket
        .upload(&format!("{id}/{file}"), json.into())
        .await
        .map_err(|source| BlockError::Bucket { block: id, source })
}

/// The block's deletion mark, if any.
pub async fn read_deletion_mark(
    bucket: &Bucket,
    id: Ulid,
) -> Result<Option<DeletionMark>, BlockError> {
    read_json(bucket, id, DELETION_MARK).await
}

/// The block's no-compact mark, if any.
pub async fn read_no_compact_mark(
    bucket: &Bucket,
    id: Ulid,
) -> Result<Option<NoCompactMark>, BlockError> {
    read_json(bucket, id, NO_COMPACT_MARK).await
}

/// The block's no-downsample mark, if any.
pub async fn read_no_downsample_mark(
    bucket: &Bucket,
    id: Ulid,
) -> Result<Option<NoDownsampleMark>, BlockError> {
    read_json(bucket, id, NO_DOWNSAMPLE_MARK).await
}

/// Marks a block for deletion. Idempotent: an existing mark is kept (with its time) and
/// `false` returned.
pub async fn mark_for_deletion(
    bucket: &Bucket,
    id: Ulid,
    details: &str,
) -> Result<bool, BlockError> {
    if read_deletion_mark(bucket, id).await?.is_some() {
        tracing::warn!(block = %id, "block already marked for deletion");
        return Ok(false);
    }
    let mark = DeletionMark {
        id: id.to_string(),
        version: 1,
        details: details.to_owned(),
        deletion_time: now_unix(),
    };
    write_json(bucket, id, DELETION_MARK, &mark).await?;
    Ok(true)
}

/// Marks a block not to be compacted. Idempotent as [`mark_for_deletion`].
pub async fn mark_no_compact(
    bucket: &Bucket,
    id: Ulid,
    reason: &str,
    details: &str,
) -> Result<bool, BlockError> {
    if read_no_compact_mark(bucket, id).await?.is_some() {
        return Ok(false);
    }
    let mark = NoCompactMark {
        id: id.to_string(),
        version: 1,
        details: details.to_owned(),
        no_compact_time: now_unix(),
        reason: reason.to_owned(),
    };
    write_json(bucket, id, NO_COMPACT_MARK, &mark).await?;
    Ok(true)
}

/// Marks a block not to be downsampled. Idempotent as [`mark_for_deletion`].
pub async fn mark_no_downsample(
    bucket: &Bucket,
    id: Ulid,
    reason: &str,
    details: &str,
) -> Result<bool, BlockError> {
    if read_no_downsample_mark(bucket, id).await?.is_some() {
        return Ok(false);
    }
    let mark = NoDownsampleMark {
        id: id.to_string(),
        version: 1,
        details: details.to_owned(),
        no_downsample_time: now_unix(),
        reason: reason.to_owned(),
    };
    write_json(bucket, id, NO_DOWNSAMPLE_MARK, &mark).await?;
    Ok(true)
}
