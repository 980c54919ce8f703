//! `strata tools bucket web`: the blocks page of [`strata_web::blocks`] on its own HTTP
//! server.

use strata_objstore::Bucket;

/// Serves the page, `/api/v1/blocks`, `/metrics`, `/-/healthy` and `/-/ready` on
/// `address` until `shutdown` fires.
pub async fn serve(
    bucket_yaml: &str,
    address: &str,
    shutdown: strata_runtime::Shutdown,
) -> Result<(), crate::bucket::BucketToolError> {
    let mut registry = prometheus_client::registry::Registry::default();
    let bucket = Bucket::from_yaml(bucket_yaml, Some(&mut registry))?;
    let registry = std::sync::Arc::new(std::sync::Mutex::new(registry));
    let ready = strata_runtime::Readiness::default();
    ready.set(true);
    let listener = strata_runtime::bind(address).await?;
    let router =
        strata_runtime::http_router(registry, ready, strata_web::blocks::router(bucket, &["/"]));
    strata_runtime::serve_http(listener, router, shutdown).await?;
    Ok(())
}
