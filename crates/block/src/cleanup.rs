//! Deleting what is due: blocks marked for deletion longer ago than a delay, and partial
//! uploads (no meta.json) older than a delay. Shared by the compactor and
//! `strata tools bucket cleanup`.

use std::time::Duration;

use strata_objstore::Bucket;
use ulid::Ulid;

use crate::fetcher::FetchResult;
use crate::markers::now_unix;
use crate::upload::delete_block;

/// What a cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Blocks deleted.
    pub deleted: Vec<Ulid>,
    /// Deletions that failed (retried next time), with the error.
    pub failed: Vec<(Ulid, String)>,
}

/// Deletes blocks marked for deletion at least `delay` ago.
pub async fn delete_marked(
    bucket: &Bucket,
    synced: &FetchResult,
    delay: Duration,
) -> CleanupReport {
    let now = now_unix();
    let delay = delay.as_secs() as i64;
    let mut report = CleanupReport::default();
    for (id, marked_at) in &synced.marked {
        if now.saturating_sub(*marked_at) < delay {
            continue;
        }
        match delete_block(bucket, *id).await {
            Ok(()) => {
                tracing::info!(block = %id, "deleted block marked for deletion");
                report.deleted.push(*id);
            }
            Err(e) => {
                tracing::warn!(block = %id, error = %e, "deleting block failed");
                report.failed.push((*id, e.to_string()));
            }
        }
    }
    report
}

/// Deletes partial uploads (no meta.json) whose newest object is at least `delay` old:
/// an upload still in progress (even of a block made long ago, after an outage) keeps
/// writing objects, so it is never deleted under its uploader. An interrupted deletion
/// (meta.json gone first) is finished the same way.
pub async fn delete_partial(
    bucket: &Bucket,
    synced: &FetchResult,
    delay: Duration,
) -> CleanupReport {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let mut report = CleanupReport::default();
    for id in &synced.partial {
        // The ULID's time is a lower bound of every object's: younger blocks are left
        // without listing them.
        if now_ms.saturating_sub(id.timestamp_ms() as i64) < delay_ms {
            continue;
        }
        let newest = match bucket.list_objects(&format!("{id}/")).await {
            Ok(objects) => objects
                .iter()
                .map(|(_, a)| a.last_modified_ms)
                .max()
                .unwrap_or(i64::MIN),
            Err(e) => {
                tracing::warn!(block = %id, error = %e, "listing a partial upload failed; leaving it");
                report.failed.push((*id, e.to_string()));
                continue;
            }
        };
        let age = now_ms.saturating_sub(newest);
        if age < delay_ms {
            tracing::debug!(block = %id, age_ms = age, "partial upload still being written; leaving it");
            continue;
        }
        match delete_block(bucket, *id).await {
            Ok(()) => {
                tracing::info!(block = %id, age_ms = age, "deleted partial upload");
                report.deleted.push(*id);
            }
            Err(e) => {
                tracing::warn!(block = %id, error = %e, "deleting partial upload failed");
                report.failed.push((*id, e.to_string()));
            }
        }
    }
    report
}
