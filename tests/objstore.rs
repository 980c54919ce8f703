//! The object storage conformance suite against S3 backends: an in-process s3s-fs server
//! and a real Garage server (installed by `scripts/test`; see `strata_e2e::garage`).

use strata_e2e::s3::S3Server;
use strata_objstore::{Bucket, testsuite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_conformance_on_s3s_fs() {
    let server = S3Server::start("thanos");
    let bucket = Bucket::from_yaml(&server.bucket_yaml(), None).unwrap();
    testsuite::run(&bucket, "suite").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_conformance_with_prefix() {
    let server = S3Server::start("thanos");
    let yaml = format!("{}prefix: tenant-a\n", server.bucket_yaml());
    let bucket = Bucket::from_yaml(&yaml, None).unwrap();
    testsuite::run(&bucket, "suite").await.unwrap();
    bucket
        .upload("x/meta.json", bytes::Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert!(server.bucket_dir().join("tenant-a/x/meta.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_credentials_fail_clearly() {
    let server = S3Server::start("thanos");
    let yaml = server.bucket_yaml().replace("strata-test-secret", "wrong");
    let bucket = Bucket::from_yaml(&yaml, None).unwrap();
    let err = bucket.get("a/meta.json").await.unwrap_err();
    assert!(!err.is_not_found(), "{err}");
    let text = err.to_string();
    assert!(text.contains("thanos/a/meta.json"), "{text}");
    assert!(!text.contains("wrong"), "secret in error: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_conformance_on_garage() {
    let garage = strata_e2e::garage::Garage::start("thanos");
    let bucket = Bucket::from_yaml(&garage.bucket_yaml(), None).unwrap();
    if let Err(e) = testsuite::run(&bucket, "suite").await {
        let log = std::fs::read_to_string(garage.log_path()).unwrap_or_default();
        panic!("conformance suite on Garage: {e}\ngarage log:\n{log}");
    }
    let yaml = format!("{}prefix: tenant-a\n", garage.bucket_yaml());
    let prefixed = Bucket::from_yaml(&yaml, None).unwrap();
    testsuite::run(&prefixed, "suite").await.unwrap();
}
