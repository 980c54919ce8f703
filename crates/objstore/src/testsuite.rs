//! The conformance suite every storage backend must pass: the same calls with the same
//! expectations against FILESYSTEM, S3 on an in-process s3s-fs server, and S3 on Garage.
//!
//! Returns a description of the first mismatch instead of panicking, so it can run from
//! any test harness.

use bytes::Bytes;

use crate::Bucket;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// Runs every check against `bucket`, using only objects under `root` (e.g. a fresh
/// random directory name), and deletes them at the end.
pub async fn run(bucket: &Bucket, root: &str) -> Result<(), String> {
    fn e(op: &'static str) -> impl Fn(crate::Error) -> String {
        move |err| format!("{op}: {err}")
    }
    let name = |rest: &str| format!("{root}/{rest}");

    // Missing objects.
    let missing = name("missing/meta.json");
    ensure!(
        !bucket.exists(&missing).await.map_err(e("exists missing"))?,
        "missing object exists"
    );
    match bucket.get(&missing).await {
        Err(err) if err.is_not_found() => {}
        other => return Err(format!("get missing: want NotFound, got {other:?}")),
    }
    match bucket.get_range(&missing, 0..4).await {
        Err(err) if err.is_not_found() => {}
        other => return Err(format!("get_range missing: want NotFound, got {other:?}")),
    }
    match bucket.get_range_mapped(&missing, 0..4).await {
        Err(err) if err.is_not_found() => {}
        other => {
            return Err(format!(
                "get_range_mapped missing: want NotFound, got {other:?}"
            ));
        }
    }
    match bucket.attributes(&missing).await {
        Err(err) if err.is_not_found() => {}
        other => return Err(format!("attributes missing: want NotFound, got {other:?}")),
    }
    bucket.delete(&missing).await.map_err(e("delete missing"))?;

    // Small objects: put, get, ranges, attributes, overwrite.
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let data = Bytes::from(data);
    let index = name("01BLOCK/index");
    bucket
        .upload(&index, data.clone())
        .await
        .map_err(e("upload"))?;
    ensure!(
        bucket.exists(&index).await.map_err(e("exists"))?,
        "uploaded object missing"
    );
    let got = bucket.get(&index).await.map_err(e("get"))?;
    ensure!(
        got == data,
        "get returned {} bytes, want the {} uploaded",
        got.len(),
        data.len()
    );
    let range = bucket
        .get_range(&index, 1000..1500)
        .await
        .map_err(e("get_range"))?;
    ensure!(
        range.as_ref() == data.get(1000..1500).unwrap_or_default(),
        "get_range bytes differ"
    );
    // The same bytes whether mapped (FILESYSTEM) or read.
    for want in [0..100_000u64, 1000..1500, 4095..4097, 99_999..100_000] {
        let got = bucket
            .get_range_mapped(&index, want.clone())
            .await
            .map_err(e("get_range_mapped"))?;
        ensure!(
            got.as_ref()
                == data
                    .get(want.start as usize..want.end as usize)
                    .unwrap_or_default(),
            "get_range_mapped {want:?} differs"
        );
    }
    let ranges = bucket
        .get_ranges(&index, &[0..10, 50_000..50_100, 99_990..100_000])
        .await
        .map_err(e("get_ranges"))?;
    ensure!(
        ranges.len() == 3,
        "get_ranges returned {} ranges",
        ranges.len()
    );
    for (got, want) in ranges
        .iter()
        .zip([0..10usize, 50_000..50_100, 99_990..100_000])
    {
        ensure!(
            got.as_ref() == data.get(want.clone()).unwrap_or_default(),
            "get_ranges {want:?} differs"
        );
    }
    let attrs = bucket.attributes(&index).await.map_err(e("attributes"))?;
    ensure!(
        attrs.size == data.len() as u64,
        "size {} want {}",
        attrs.size,
        data.len()
    );
    ensure!(
        attrs.last_modified_ms > 1_600_000_000_000,
        "last_modified {}",
        attrs.last_modified_ms
    );
    bucket
        .upload(&index, Bytes::from_static(b"v2"))
        .await
        .map_err(e("overwrite"))?;
    let got = bucket.get(&index).await.map_err(e("get overwritten"))?;
    ensure!(got.as_ref() == b"v2", "overwrite not visible: {got:?}");

    // A multipart upload from a local file (larger than the 5 MiB minimum part).
    let dir = tempfile_dir().map_err(|err| format!("tempdir: {err}"))?;
    let local = dir.join("segment");
    let big: Vec<u8> = (0..(11u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&local, &big).map_err(|err| format!("write local: {err}"))?;
    let segment = name("01BLOCK/chunks/000001");
    let small_parts = bucket.with_part_size(5 << 20);
    small_parts
        .upload_file(&segment, &local)
        .await
        .map_err(e("upload_file"))?;
    let downloaded = dir.join("downloaded");
    let size = bucket
        .download_file(&segment, &downloaded)
        .await
        .map_err(e("download_file"))?;
    let local_copy = std::fs::read(&downloaded).map_err(|err| format!("read download: {err}"))?;
    ensure!(
        size == big.len() as u64 && local_copy == big,
        "downloaded file differs ({size} bytes)"
    );
    // The same file through the bucket's own upload path (a kernel copy for FILESYSTEM).
    let copy = name("01BLOCK/chunks/000002");
    bucket
        .upload_file(&copy, &local)
        .await
        .map_err(e("upload_file default"))?;
    let got = bucket.get(&copy).await.map_err(e("get uploaded file"))?;
    ensure!(got.as_ref() == big.as_slice(), "uploaded file differs");
    let missing = bucket
        .download_file(&name("01BLOCK/chunks/missing"), &dir.join("missing"))
        .await;
    ensure!(
        matches!(missing, Err(crate::Error::NotFound { .. })),
        "download of a missing object: {missing:?}"
    );
    bucket.delete(&copy).await.map_err(e("delete copy"))?;
    let _ = std::fs::remove_dir_all(&dir);
    let attrs = bucket
        .attributes(&segment)
        .await
        .map_err(e("attributes big"))?;
    ensure!(
        attrs.size == big.len() as u64,
        "multipart size {} want {}",
        attrs.size,
        big.len()
    );
    let tail = bucket
        .get_range(&segment, (big.len() - 100) as u64..big.len() as u64)
        .await
        .map_err(e("get_range big"))?;
    ensure!(
        tail.as_ref() == big.get(big.len() - 100..).unwrap_or_default(),
        "multipart tail differs"
    );
    let got = bucket.get(&segment).await.map_err(e("get big"))?;
    ensure!(got.as_ref() == big.as_slice(), "multipart content differs");

    // Listing: one level with directories marked, and recursive.
    let meta = name("01BLOCK/meta.json");
    bucket
        .upload(&meta, Bytes::from_static(b"{}"))
        .await
        .map_err(e("upload meta"))?;
    let other = name("02OTHER/meta.json");
    bucket
        .upload(&other, Bytes::from_static(b"{}"))
        .await
        .map_err(e("upload other"))?;
    let top = bucket.iter(root).await.map_err(e("iter root"))?;
    ensure!(
        top == vec![format!("{root}/01BLOCK/"), format!("{root}/02OTHER/")],
        "iter {root}: {top:?}"
    );
    let block = bucket
        .iter(&format!("{root}/01BLOCK/"))
        .await
        .map_err(e("iter block"))?;
    ensure!(
        block
            == vec![
                format!("{root}/01BLOCK/chunks/"),
                format!("{root}/01BLOCK/index"),
                format!("{root}/01BLOCK/meta.json")
            ],
        "iter block: {block:?}"
    );
    let all = bucket
        .iter_recursive(root)
        .await
        .map_err(e("iter_recursive"))?;
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(
        names
            == vec![
                segment.as_str(),
                index.as_str(),
                meta.as_str(),
                other.as_str()
            ],
        "iter_recursive: {names:?}"
    );
    ensure!(
        all.first().map(|(_, s)| *s) == Some(big.len() as u64),
        "iter_recursive size: {all:?}"
    );
    let empty = bucket
        .iter(&name("nothing-here"))
        .await
        .map_err(e("iter empty"))?;
    ensure!(empty.is_empty(), "iter of missing dir: {empty:?}");

    // Deletion.
    for (object, _) in &all {
        bucket.delete(object).await.map_err(e("delete"))?;
    }
    ensure!(
        !bucket.exists(&meta).await.map_err(e("exists deleted"))?,
        "deleted object still exists"
    );
    let left = bucket
        .iter_recursive(root)
        .await
        .map_err(e("iter after delete"))?;
    ensure!(left.is_empty(), "objects left after delete: {left:?}");
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "strata-objstore-suite-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
