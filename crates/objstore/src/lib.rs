//! Object storage for Strata.
//!
//! A [`Bucket`] is built from a Thanos-compatible [`BucketConfig`] (`type: S3` or
//! `type: FILESYSTEM`, optional `prefix`) on top of the `object_store` crate. Every
//! operation is counted and timed with Thanos' `thanos_objstore_bucket_*` metrics, passes a
//! concurrency gate, and on S3 is retried with exponential backoff by the client, with
//! connect and read timeouts. Errors name the operation, the bucket and the object.
//!
//! Object names are `/`-separated paths relative to the bucket (and prefix), as in Thanos:
//! `01H…/meta.json`, `01H…/chunks/000001`.

mod config;
mod error;
mod mapped;
mod metrics;
pub mod testsuite;

use std::fmt;
use std::ops::Range;
use std::path::Path as LocalPath;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

pub use config::{
    BucketConfig, FilesystemConfig, HttpConfig, Provider, S3Config, TlsConfig, parse_go_duration,
};
pub use error::{Error, Result};

use metrics::Metrics;

/// Default number of bucket operations in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 64;
/// Default multipart part size (as Thanos' S3 client: 64 MiB).
pub const DEFAULT_PART_SIZE: u64 = 64 << 20;
/// Part size for FILESYSTEM buckets: a copy to local disk gains nothing from big parts, and
/// each part in flight is held in memory.
const FILESYSTEM_PART_SIZE: u64 = 8 << 20;
/// Bytes of one upload held in memory at most (parts in flight plus the one being filled);
/// at least one part is always allowed in flight.
const UPLOAD_BUFFER_BYTES: u64 = 128 << 20;

/// A FILESYSTEM bucket's store and prefix.
struct Local {
    fs: Arc<LocalFileSystem>,
    prefix: Path,
}

/// Runs a FILESYSTEM bucket's file work on a blocking thread; a task that dies is an error
/// of the operation.
async fn on_blocking_thread<T, F>(work: F) -> object_store::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> object_store::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        })?
}

static STAGING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Local {
    /// The file holding object `location`.
    fn file(&self, location: &Path) -> object_store::Result<std::path::PathBuf> {
        let full: Path = self.prefix.parts().chain(location.parts()).collect();
        self.fs.path_to_filesystem(&full)
    }

    /// Puts `from` into the object's file through a staging file (`<file>#<digits>`, which
    /// listings skip, as object_store's own uploads do) renamed into place. The staging file
    /// is a hard link to `from` when both are on one filesystem (block files are never
    /// modified once written, so sharing the inode is safe), else a copy.
    fn copy_in(&self, location: &Path, from: &LocalPath) -> object_store::Result<()> {
        let dest = self.file(location)?;
        let generic = |e: std::io::Error| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        };
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(generic)?;
        }
        let n = STAGING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut staging = dest.as_os_str().to_owned();
        staging.push(format!("#{}{n:08}", std::process::id()));
        let staging = std::path::PathBuf::from(staging);
        let copied = std::fs::hard_link(from, &staging)
            .or_else(|_| std::fs::copy(from, &staging).map(|_| ()))
            .and_then(|()| std::fs::rename(&staging, &dest));
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&staging);
            return Err(generic(e));
        }
        Ok(())
    }

    /// Puts the object's file at `to`: a hard link when on one filesystem, else a copy.
    fn copy_out(&self, location: &Path, to: &LocalPath) -> object_store::Result<u64> {
        let src = self.file(location)?;
        let _ = std::fs::remove_file(to);
        let linked = std::fs::hard_link(&src, to)
            .and_then(|()| std::fs::metadata(to))
            .map(|m| m.len());
        if let Ok(len) = linked {
            return Ok(len);
        }
        std::fs::copy(&src, to).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound if !src.exists() => object_store::Error::NotFound {
                path: location.to_string(),
                source: Box::new(e),
            },
            _ => object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            },
        })
    }
}

/// Size and modification time of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAttributes {
    /// Size in bytes.
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    pub last_modified_ms: i64,
}

/// An instrumented, bounded handle on one bucket. Cheap to clone.
#[derive(Clone)]
pub struct Bucket {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    /// FILESYSTEM buckets: the store and prefix, so whole files are copied by the kernel
    /// instead of streamed through memory.
    local: Option<Local>,
    name: String,
    provider: &'static str,
    gate: Semaphore,
    part_size: u64,
    metrics: Metrics,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket")
            .field("name", &self.inner.name)
            .field("provider", &self.inner.provider)
            .finish_non_exhaustive()
    }
}

impl Bucket {
    /// Opens the bucket `config` describes. A FILESYSTEM directory is created if missing.
    /// Metrics are registered in `registry` when given.
    pub fn from_config(config: &BucketConfig, registry: Option<&mut Registry>) -> Result<Bucket> {
        let mut local = None;
        let (store, name, part_size): (Arc<dyn ObjectStore>, String, u64) = match &config.provider {
            Provider::Filesystem(fs) => {
                std::fs::create_dir_all(&fs.directory).map_err(|e| {
                    Error::Config(format!("FILESYSTEM directory {}: {e}", fs.directory))
                })?;
                let store = LocalFileSystem::new_with_prefix(&fs.directory)
                    .map_err(|e| Error::Config(format!("FILESYSTEM {}: {e}", fs.directory)))?
                    .with_automatic_cleanup(true);
                let store = Arc::new(store);
                local = Some(Local {
                    fs: Arc::clone(&store),
                    prefix: Path::from(config.prefix.as_str()),
                });
                (store, fs.directory.clone(), FILESYSTEM_PART_SIZE)
            }
            Provider::S3(s3) => {
                for field in s3.ignored_fields() {
                    tracing::warn!(bucket = %s3.bucket, field = %field, "S3 config field is accepted but ignored");
                }
                let part_size = if s3.part_size == 0 {
                    DEFAULT_PART_SIZE
                } else {
                    s3.part_size.max(5 << 20)
                };
                (Arc::new(build_s3(s3)?), s3.bucket.clone(), part_size)
            }
        };
        let store: Arc<dyn ObjectStore> = if config.prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, config.prefix.as_str()))
        };
        let metrics = Metrics::new();
        if let Some(registry) = registry {
            metrics.init(&name);
            metrics.register(registry);
        }
        Ok(Bucket {
            inner: Arc::new(Inner {
                store,
                local,
                name,
                provider: config.provider.name(),
                gate: Semaphore::new(DEFAULT_CONCURRENCY),
                part_size,
                metrics,
            }),
        })
    }

    /// Parses `yaml` as a bucket config and opens it.
    pub fn from_yaml(yaml: &str, registry: Option<&mut Registry>) -> Result<Bucket> {
        Bucket::from_config(&BucketConfig::from_yaml(yaml)?, registry)
    }

    /// A handle on the same bucket with another multipart part size (at least 5 MiB). File
    /// uploads then always stream in parts, FILESYSTEM buckets too (no kernel copy).
    pub fn with_part_size(&self, part_size: u64) -> Bucket {
        Bucket {
            inner: Arc::new(Inner {
                store: Arc::clone(&self.inner.store),
                local: None,
                name: self.inner.name.clone(),
                provider: self.inner.provider,
                gate: Semaphore::new(DEFAULT_CONCURRENCY),
                part_size: part_size.max(5 << 20),
                metrics: self.inner.metrics.clone(),
            }),
        }
    }

    /// The bucket's name (S3 bucket or FILESYSTEM directory).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// `S3` or `FILESYSTEM`.
    pub fn provider(&self) -> &'static str {
        self.inner.provider
    }

    fn path(&self, operation: &'static str, name: &str) -> Result<Path> {
        Path::parse(name).map_err(|e| Error::Store {
            operation,
            bucket: self.inner.name.clone(),
            path: name.to_owned(),
            source: Box::new(e.into()),
        })
    }

    fn map_err(&self, operation: &'static str, name: &str, err: object_store::Error) -> Error {
        match err {
            object_store::Error::NotFound { .. } => Error::NotFound {
                operation,
                bucket: self.inner.name.clone(),
                path: name.to_owned(),
            },
            source => Error::Store {
                operation,
                bucket: self.inner.name.clone(),
                path: name.to_owned(),
                source: Box::new(source),
            },
        }
    }

    /// Runs one operation through the gate, the metrics and error mapping. A "not found" is
    /// an expected answer and not counted as a failure, as in Thanos.
    async fn run<T, F>(&self, operation: &'static str, name: &str, op: F) -> Result<T>
    where
        F: Future<Output = object_store::Result<T>>,
    {
        let _permit = self
            .inner
            .gate
            .acquire()
            .await
            .map_err(|_| Error::Config("bucket gate closed".into()))?;
        let start = Instant::now();
        let result = op.await;
        let failed =
            matches!(&result, Err(e) if !matches!(e, object_store::Error::NotFound { .. }));
        self.inner.metrics.observe(
            &self.inner.name,
            operation,
            start.elapsed().as_secs_f64(),
            failed,
        );
        if let Err(err) = &result
            && failed
        {
            tracing::debug!(bucket = %self.inner.name, object = name, operation, error = %err, "bucket operation failed");
        }
        result.map_err(|e| self.map_err(operation, name, e))
    }

    /// The whole object.
    pub async fn get(&self, name: &str) -> Result<Bytes> {
        let path = self.path("get", name)?;
        self.run("get", name, async {
            self.inner.store.get(&path).await?.bytes().await
        })
        .await
    }

    /// Bytes `range` of the object. A range past the end is an error.
    pub async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path("get_range", name)?;
        self.run("get_range", name, self.inner.store.get_range(&path, range))
            .await
    }

    /// Bytes `range` of the object, as [`Bucket::get_range`], without copying them on a
    /// FILESYSTEM bucket: there they are a read-only mapping of the object's file, faulted in
    /// on a blocking thread, which lives as long as the returned bytes or a slice of them
    /// (so hold them only while a request needs them, not in caches). For reads of whole
    /// chunk ranges, where copying from the page cache and zeroing the buffer first were a
    /// sixth of the store gateway's work.
    pub async fn get_range_mapped(&self, name: &str, range: Range<u64>) -> Result<Bytes> {
        let Some(local) = &self.inner.local else {
            return self.get_range(name, range).await;
        };
        let path = self.path("get_range", name)?;
        let file = local
            .file(&path)
            .map_err(|e| self.map_err("get_range", name, e))?;
        self.run("get_range", name, async move {
            on_blocking_thread(move || {
                mapped::map_range(&file, range).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => object_store::Error::NotFound {
                        path: file.display().to_string(),
                        source: Box::new(e),
                    },
                    _ => object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    },
                })
            })
            .await
        })
        .await
    }

    /// Several ranges of one object (the store may coalesce nearby ranges).
    pub async fn get_ranges(&self, name: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let path = self.path("get_range", name)?;
        self.run(
            "get_range",
            name,
            self.inner.store.get_ranges(&path, ranges),
        )
        .await
    }

    /// Size and modification time.
    pub async fn attributes(&self, name: &str) -> Result<ObjectAttributes> {
        let path = self.path("attributes", name)?;
        let meta = self
            .run("attributes", name, self.inner.store.head(&path))
            .await?;
        Ok(ObjectAttributes {
            size: meta.size,
            last_modified_ms: meta.last_modified.timestamp_millis(),
        })
    }

    /// Whether the object exists.
    pub async fn exists(&self, name: &str) -> Result<bool> {
        let path = self.path("exists", name)?;
        match self.run("exists", name, self.inner.store.head(&path)).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes the object (replacing it); large payloads go up in parts.
    pub async fn upload(&self, name: &str, data: Bytes) -> Result<()> {
        let path = self.path("upload", name)?;
        let part_size = self.inner.part_size;
        self.run("upload", name, async {
            if (data.len() as u64) <= part_size {
                self.inner.store.put(&path, PutPayload::from(data)).await?;
                return Ok(());
            }
            let upload = self.inner.store.put_multipart(&path).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size as usize);
            writer.put(data);
            writer.finish().await?;
            Ok(())
        })
        .await?;
        self.uploaded();
        Ok(())
    }

    /// Uploads a local file, streaming it in parts when larger than the part size.
    pub async fn upload_file(&self, name: &str, local: &LocalPath) -> Result<()> {
        let path = self.path("upload", name)?;
        if self.inner.local.is_some() {
            let (bucket, from) = (self.clone(), local.to_owned());
            let location = path.clone();
            self.run("upload", name, async move {
                on_blocking_thread(move || match &bucket.inner.local {
                    Some(l) => l.copy_in(&location, &from),
                    None => Ok(()),
                })
                .await
            })
            .await?;
            self.uploaded();
            return Ok(());
        }
        let local_err = |source: std::io::Error| Error::LocalFile {
            bucket: self.inner.name.clone(),
            path: name.to_owned(),
            local: local.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::open(local).await.map_err(local_err)?;
        let size = file.metadata().await.map_err(local_err)?.len();
        let part_size = self.inner.part_size;
        if size <= part_size {
            let mut data = Vec::with_capacity(size as usize);
            file.read_to_end(&mut data).await.map_err(local_err)?;
            return self.upload(name, Bytes::from(data)).await;
        }
        let upload = self
            .run("upload", name, self.inner.store.put_multipart(&path))
            .await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size as usize);
        let in_flight = (UPLOAD_BUFFER_BYTES / part_size)
            .saturating_sub(1)
            .clamp(1, 4) as usize;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(local_err(e));
                }
            };
            let Some(chunk) = buf.get(..n) else { break };
            if n == 0 {
                break;
            }
            writer.write(chunk);
            self.run("upload", name, writer.wait_for_capacity(in_flight))
                .await?;
        }
        self.run("upload", name, writer.finish()).await?;
        self.uploaded();
        Ok(())
    }

    /// Streams the object into a local file (created or truncated); returns its size.
    pub async fn download_file(&self, name: &str, local: &LocalPath) -> Result<u64> {
        let path = self.path("get", name)?;
        if self.inner.local.is_some() {
            let (bucket, to) = (self.clone(), local.to_owned());
            let location = path.clone();
            return self
                .run("get", name, async move {
                    on_blocking_thread(move || match &bucket.inner.local {
                        Some(l) => l.copy_out(&location, &to),
                        None => Ok(0),
                    })
                    .await
                })
                .await;
        }
        let local_err = |source: std::io::Error| Error::LocalWrite {
            bucket: self.inner.name.clone(),
            path: name.to_owned(),
            local: local.display().to_string(),
            source,
        };
        let result = self.run("get", name, self.inner.store.get(&path)).await?;
        let mut stream = result.into_stream();
        let mut file = tokio::fs::File::create(local).await.map_err(local_err)?;
        let mut size = 0u64;
        while let Some(chunk) = self.run("get", name, stream.try_next()).await? {
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(local_err)?;
        }
        file.flush().await.map_err(local_err)?;
        Ok(size)
    }

    fn uploaded(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        self.inner.metrics.uploaded(&self.inner.name, now);
    }

    /// Deletes the object. Deleting an object that does not exist is not an error.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let path = self.path("delete", name)?;
        match self
            .run("delete", name, self.inner.store.delete(&path))
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// Entries directly under `dir` ("" for the root), sorted: objects by full name and
    /// "directories" by full name with a trailing `/`, as Thanos' `Iter`.
    pub async fn iter(&self, dir: &str) -> Result<Vec<String>> {
        let prefix = self.dir_prefix("iter", dir)?;
        let listing = self
            .run(
                "iter",
                dir,
                self.inner.store.list_with_delimiter(prefix.as_ref()),
            )
            .await?;
        let mut out: Vec<String> = listing
            .common_prefixes
            .iter()
            .map(|p| format!("{p}/"))
            .chain(listing.objects.iter().map(|o| o.location.to_string()))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Every object under `dir` ("" for all), recursively, sorted by name, with sizes and
    /// modification times.
    pub async fn list_objects(&self, dir: &str) -> Result<Vec<(String, ObjectAttributes)>> {
        let prefix = self.dir_prefix("iter", dir)?;
        let stream = self.inner.store.list(prefix.as_ref());
        let metas: Vec<_> = self
            .run("iter", dir, stream.try_collect::<Vec<_>>())
            .await?;
        let mut out: Vec<(String, ObjectAttributes)> = metas
            .into_iter()
            .map(|m| {
                (
                    m.location.to_string(),
                    ObjectAttributes {
                        size: m.size,
                        last_modified_ms: m.last_modified.timestamp_millis(),
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Every object under `dir` ("" for all), recursively, sorted by name, with sizes.
    pub async fn iter_recursive(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let prefix = self.dir_prefix("iter", dir)?;
        let stream = self.inner.store.list(prefix.as_ref());
        let metas: Vec<_> = self
            .run("iter", dir, stream.try_collect::<Vec<_>>())
            .await?;
        let mut out: Vec<(String, u64)> = metas
            .into_iter()
            .map(|m| (m.location.to_string(), m.size))
            .collect();
        out.sort();
        Ok(out)
    }

    fn dir_prefix(&self, operation: &'static str, dir: &str) -> Result<Option<Path>> {
        let dir = dir.trim_end_matches('/');
        if dir.is_empty() {
            return Ok(None);
        }
        self.path(operation, dir).map(Some)
    }
}

fn build_s3(s3: &S3Config) -> Result<object_store::aws::AmazonS3> {
    let scheme = if s3.insecure { "http" } else { "https" };
    let region = if s3.region.is_empty() {
        "us-east-1"
    } else {
        s3.region.as_str()
    };
    let http = &s3.http_config;
    let read_timeout = config::parse_go_duration_opt(http.response_header_timeout.as_deref())?
        .unwrap_or(Duration::from_secs(120));
    let connect_timeout = config::parse_go_duration_opt(http.tls_handshake_timeout.as_deref())?
        .unwrap_or(Duration::from_secs(10));
    let idle_timeout = config::parse_go_duration_opt(http.idle_conn_timeout.as_deref())?
        .unwrap_or(Duration::from_secs(90));
    let mut options = ClientOptions::new()
        .with_allow_http(s3.insecure)
        .with_timeout_disabled()
        .with_read_timeout(read_timeout)
        .with_connect_timeout(connect_timeout)
        .with_pool_idle_timeout(idle_timeout)
        .with_pool_max_idle_per_host(http.max_idle_conns_per_host.unwrap_or(100))
        .with_allow_invalid_certificates(
            http.insecure_skip_verify || http.tls_config.insecure_skip_verify,
        );
    if !http.tls_config.ca_file.is_empty() {
        let pem = std::fs::read(&http.tls_config.ca_file).map_err(|e| {
            Error::Config(format!(
                "S3 tls_config.ca_file {}: {e}",
                http.tls_config.ca_file
            ))
        })?;
        let certs = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::Config(format!(
                "S3 tls_config.ca_file {}: {e}",
                http.tls_config.ca_file
            ))
        })?;
        for cert in certs {
            options = options.with_root_certificate(cert);
        }
    }
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: if s3.max_retries == 0 {
            10
        } else {
            s3.max_retries
        },
        retry_timeout: Duration::from_secs(180),
    };
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&s3.bucket)
        .with_region(region)
        .with_client_options(options)
        .with_retry(retry)
        .with_virtual_hosted_style_request(s3.bucket_lookup_type == "virtual-hosted");
    if !s3.endpoint.is_empty() {
        builder = builder.with_endpoint(format!("{scheme}://{}", s3.endpoint));
    }
    if !s3.access_key.is_empty() {
        builder = builder
            .with_access_key_id(&s3.access_key)
            .with_secret_access_key(&s3.secret_key);
    }
    if !s3.session_token.is_empty() {
        builder = builder.with_token(&s3.session_token);
    }
    builder
        .build()
        .map_err(|e| Error::Config(format!("S3 bucket {}: {e}", s3.bucket)))
}
