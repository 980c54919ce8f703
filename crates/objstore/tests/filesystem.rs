//! The conformance suite against a FILESYSTEM bucket (S3 backends run it in `tests/`).

use strata_objstore::{Bucket, testsuite};

#[tokio::test]
async fn filesystem_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().display()
    );
    let mut registry = prometheus_client::registry::Registry::default();
    let bucket = Bucket::from_yaml(&yaml, Some(&mut registry)).unwrap();
    testsuite::run(&bucket, "suite").await.unwrap();

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("thanos_objstore_bucket_operations_total{bucket="),
        "{text}"
    );
}

#[tokio::test]
async fn filesystem_prefix_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\nprefix: tenant-a\n",
        dir.path().display()
    );
    let bucket = Bucket::from_yaml(&yaml, None).unwrap();
    testsuite::run(&bucket, "suite").await.unwrap();
    bucket
        .upload("x/meta.json", bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert!(dir.path().join("tenant-a/x/meta.json").exists());
}
