//! Data safety of the bucket code over a FILESYSTEM bucket: a transient failure is never
//! read as a block being gone, an unparsable deletion mark never as "deleted long ago", and
//! a partial upload still being written is never cleaned up under its uploader.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use strata_block::cleanup::delete_partial;
use strata_block::fetcher::{FetchFilter, MetaFetcher};
use strata_objstore::Bucket;
use strata_tsdb::BlockMeta;
use ulid::Ulid;

fn bucket(dir: &std::path::Path) -> Bucket {
    Bucket::from_yaml(
        &format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            dir.display()
        ),
        None,
    )
    .unwrap()
}

/// A ULID whose time is `age` ago (the random part from a counter).
fn ulid_aged(age: Duration) -> Ulid {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let ms = (SystemTime::now() - age)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    Ulid::from_parts(ms, u128::from(NEXT.fetch_add(1, Ordering::Relaxed)))
}

fn new_ulid() -> Ulid {
    ulid_aged(Duration::ZERO)
}

async fn put_block(bucket: &Bucket, id: Ulid) {
    let meta = BlockMeta::new_level1(id, 0, 7_200_000);
    bucket
        .upload(&format!("{id}/meta.json"), meta.to_json().unwrap().into())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unparsable_deletion_mark_keeps_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket(dir.path());
    let (a, b, c) = (new_ulid(), new_ulid(), new_ulid());
    for id in [a, b, c] {
        put_block(&bucket, id).await;
    }
    bucket
        .upload(
            &format!("{a}/deletion-mark.json"),
            b"{\"id\":".to_vec().into(),
        )
        .await
        .unwrap();
    bucket
        .upload(&format!("{b}/deletion-mark.json"), b"{}".to_vec().into())
        .await
        .unwrap();
    bucket
        .upload(
            &format!("{c}/deletion-mark.json"),
            b"{\"deletion_time\": 1}".to_vec().into(),
        )
        .await
        .unwrap();
    let fetched = MetaFetcher::new(bucket, None, 4)
        .fetch(&FetchFilter::default())
        .await
        .unwrap();
    assert!(fetched.metas.contains_key(&a), "a torn mark hides nothing");
    assert!(
        fetched.metas.contains_key(&b),
        "a mark without a time hides nothing"
    );
    assert!(!fetched.metas.contains_key(&c), "a real, old mark does");
    assert_eq!(fetched.marked, vec![(c, 1)]);
}

#[tokio::test]
async fn an_unreadable_meta_makes_the_view_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket(dir.path());
    let (good, bad) = (new_ulid(), new_ulid());
    put_block(&bucket, good).await;
    // meta.json as a symlink to itself: reading it fails (ELOOP) with an error that is
    // not "not found", as a bucket's transient failure would.
    let block_dir = dir.path().join(bad.to_string());
    std::fs::create_dir_all(&block_dir).unwrap();
    std::os::unix::fs::symlink(block_dir.join("meta.json"), block_dir.join("meta.json")).unwrap();
    let fetched = MetaFetcher::new(bucket, None, 4)
        .fetch(&FetchFilter::default())
        .await
        .unwrap();
    assert!(fetched.metas.contains_key(&good));
    assert!(!fetched.is_complete(), "{:?}", fetched.failures);
    assert_eq!(fetched.failures.len(), 1);
    assert_eq!(fetched.failures[0].0, bad);
}

#[tokio::test]
async fn a_partial_upload_still_being_written_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = bucket(dir.path());
    let delay = Duration::from_secs(3600);
    // Both blocks were made three days ago; one's upload is in progress now.
    let (writing, abandoned) = (
        ulid_aged(Duration::from_secs(3 * 86_400)),
        ulid_aged(Duration::from_secs(3 * 86_400)),
    );
    for id in [writing, abandoned] {
        bucket
            .upload(&format!("{id}/chunks/000001"), vec![1u8; 64].into())
            .await
            .unwrap();
    }
    let old = SystemTime::now() - Duration::from_secs(2 * 86_400);
    let chunk = dir.path().join(abandoned.to_string()).join("chunks/000001");
    std::fs::File::options()
        .write(true)
        .open(&chunk)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fetched = MetaFetcher::new(bucket.clone(), None, 4)
        .fetch(&FetchFilter::default())
        .await
        .unwrap();
    assert_eq!(fetched.partial.len(), 2);
    let report = delete_partial(&bucket, &fetched, delay).await;
    assert_eq!(report.deleted, vec![abandoned]);
    assert!(
        bucket
            .exists(&format!("{writing}/chunks/000001"))
            .await
            .unwrap()
    );
    assert!(
        !bucket
            .exists(&format!("{abandoned}/chunks/000001"))
            .await
            .unwrap()
    );
}
