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

/// Deletes partial uploads (no meta.json) whose ULID time is at least `delay` ago. An
/// interrupted deletion (meta.json gone first) is finished the same way.
pub async fn delete_partial(
    bucket: &Bucket,
    synced: &FetchResult,
    delay: Duration,
) -> CleanupReport {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let delay_ms = delay.as_millis() as i64;
    let mut report = CleanupReport::default();
    for id in &synced.partial {
        let age = now_ms - id.timestamp_ms() as i64;
        if age < delay_ms {
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
