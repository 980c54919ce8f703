//! The results cache: Thanos' `--query-range.response-cache-config` (`IN-MEMORY` or
//! `MEMCACHED`). Memcached failures never fail a query: the answer is computed uncached and
//! `thanos_memcached_operation_failures_total` counts the failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_memcached::AsciiProtocol;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::Mutex;

/// A cache config that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("response cache config: {0}")]
pub struct CacheConfigError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: serde_norway::Value,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InMemoryRaw {
    #[serde(default)]
    max_size: Option<String>,
    #[serde(default)]
    max_size_items: u64,
    #[serde(default)]
    validity: Option<String>,
}

#[derive(Deserialize, Default)]
struct MemcachedRaw {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    max_idle_connections: usize,
    #[serde(default)]
    max_item_size: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

/// A parsed cache config.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheConfig {
    /// In-process, bounded by bytes and items, entries valid for `validity` (zero: forever).
    InMemory {
        /// Bytes.
        max_size: u64,
        /// Items (0: unbounded).
        max_items: u64,
        /// Entry lifetime.
        validity: Duration,
    },
    /// memcached servers.
    Memcached {
        /// `host:port` of each server.
        addresses: Vec<String>,
        /// Per-operation timeout.
        timeout: Duration,
        /// Connections per server.
        max_idle_connections: usize,
        /// Largest value stored.
        max_item_size: u64,
        /// Entry lifetime.
        expiration: Duration,
    },
}

fn bytes(s: Option<&str>, default: u64) -> Result<u64, CacheConfigError> {
    let Some(s) = s else { return Ok(default) };
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| CacheConfigError(format!("bad size {s:?}")))?;
    let factor = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" => 1 << 10,
        "MB" | "MIB" => 1 << 20,
        "GB" | "GIB" => 1 << 30,
        _ => return Err(CacheConfigError(format!("bad size {s:?}"))),
    };
    Ok(n.saturating_mul(factor))
}

fn duration(s: Option<&str>, default: Duration) -> Result<Duration, CacheConfigError> {
    let Some(s) = s else { return Ok(default) };
    strata_objstore::parse_go_duration(s).map_err(|e| CacheConfigError(e.to_string()))
}

impl CacheConfig {
    /// Parses Thanos' cache config YAML.
    pub fn from_yaml(yaml: &str) -> Result<CacheConfig, CacheConfigError> {
        let raw: RawConfig =
            serde_norway::from_str(yaml).map_err(|e| CacheConfigError(e.to_string()))?;
        match raw.kind.to_ascii_uppercase().as_str() {
            "IN-MEMORY" | "INMEMORY" => {
                let c: InMemoryRaw = if raw.config.is_null() {
                    InMemoryRaw::default()
                } else {
                    serde_norway::from_value(raw.config)
                        .map_err(|e| CacheConfigError(e.to_string()))?
                };
                Ok(CacheConfig::InMemory {
                    max_size: bytes(c.max_size.as_deref(), 100 << 20)?,
                    max_items: c.max_size_items,
                    validity: duration(c.validity.as_deref(), Duration::ZERO)?,
                })
            }
            "MEMCACHED" => {
                let c: MemcachedRaw = serde_norway::from_value(raw.config)
                    .map_err(|e| CacheConfigError(e.to_string()))?;
                if c.addresses.is_empty() {
                    return Err(CacheConfigError("MEMCACHED: no addresses".into()));
                }
                Ok(CacheConfig::Memcached {
                    addresses: c.addresses,
                    timeout: duration(c.timeout.as_deref(), Duration::from_millis(500))?,
                    max_idle_connections: c.max_idle_connections.clamp(1, 16),
                    max_item_size: bytes(c.max_item_size.as_deref(), 1 << 20)?,
                    expiration: duration(c.expiration.as_deref(), Duration::from_secs(86_400))?,
                })
            }
            other => Err(CacheConfigError(format!(
                "unsupported type {other:?} (supported: IN-MEMORY, MEMCACHED)"
            ))),
        }
    }
}

type Labels = Vec<(&'static str, &'static str)>;

#[derive(Debug, Clone, Default)]
struct Metrics {
    requests: Counter,
    hits: Counter,
    failures: Family<Labels, Counter>,
}

/// A memcached operation.
enum McOp {
    Get(String),
    Set(String, Vec<u8>, i64),
}

/// One memcached server's connections.
struct Server {
    address: String,
    clients: Vec<Mutex<Option<async_memcached::Client>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .finish()
    }
}

#[derive(Debug)]
enum Backend {
    None,
    InMemory(moka::sync::Cache<String, Arc<Vec<u8>>>),
    Memcached {
        servers: Vec<Server>,
        timeout: Duration,
        max_item_size: u64,
        expiration: Duration,
    },
}

/// The results cache.
#[derive(Debug, Clone)]
pub struct ResultsCache {
    backend: Arc<Backend>,
    metrics: Metrics,
}

impl ResultsCache {
    /// A cache from `config` (`None`: caching off).
    pub fn new(config: Option<&CacheConfig>, registry: &mut Registry) -> ResultsCache {
        let backend = match config {
            None => Backend::None,
            Some(CacheConfig::InMemory {
                max_size,
                max_items,
                validity,
            }) => {
                // Both bounds with one weigher: every entry weighs at least
                // max_size / max_items, so no more than max_items fit.
                let floor = max_size.checked_div(*max_items).map_or(0, |f| f.max(1));
                let mut builder = moka::sync::Cache::builder()
                    .max_capacity(*max_size)
                    .weigher(move |k: &String, v: &Arc<Vec<u8>>| {
                        let weight = ((k.len() + v.len()) as u64).max(floor);
                        u32::try_from(weight).unwrap_or(u32::MAX)
                    });
                if !validity.is_zero() {
                    builder = builder.time_to_live(*validity);
                }
                Backend::InMemory(builder.build())
            }
            Some(CacheConfig::Memcached {
                addresses,
                timeout,
                max_idle_connections,
                max_item_size,
                expiration,
            }) => Backend::Memcached {
                servers: addresses
                    .iter()
                    .map(|a| Server {
                        address: a.clone(),
                        clients: (0..*max_idle_connections)
                            .map(|_| Mutex::new(None))
                            .collect(),
                        next: AtomicUsize::new(0),
                    })
                    .collect(),
                timeout: *timeout,
                max_item_size: *max_item_size,
                expiration: *expiration,
            },
        };
        let metrics = Metrics::default();
        registry.register(
            "thanos_frontend_query_range_cache_requests",
            "Cache lookups of the query-range results cache.",
            metrics.requests.clone(),
        );
        registry.register(
            "thanos_frontend_query_range_cache_hits",
            "Cache lookups of the query-range results cache that found an entry.",
            metrics.hits.clone(),
        );
        registry.register(
            "thanos_memcached_operation_failures",
            "Failed memcached operations (the query went on uncached).",
            metrics.failures.clone(),
        );
        ResultsCache {
            backend: Arc::new(backend),
            metrics,
        }
    }

    /// Resolves `dns+host:port` memcached addresses (every A/AAAA record) once, at start.
    pub async fn resolve_addresses(config: &mut CacheConfig) {
        let CacheConfig::Memcached { addresses, .. } = config else {
            return;
        };
        let mut out = Vec::new();
        for a in addresses.iter() {
            match a.strip_prefix("dns+") {
                Some(name) => match tokio::net::lookup_host(name).await {
                    Ok(found) => out.extend(found.map(|s| s.to_string())),
                    Err(e) => {
                        tracing::warn!(address = %a, error = %e, "memcached DNS lookup failed")
                    }
                },
                None => out.push(a.clone()),
            }
        }
        out.sort();
        out.dedup();
        *addresses = out;
    }

    /// Entries held (in-memory cache only).
    pub fn entry_count(&self) -> u64 {
        match &*self.backend {
            Backend::InMemory(cache) => {
                cache.run_pending_tasks();
                cache.entry_count()
            }
            _ => 0,
        }
    }

    /// Whether caching is on.
    pub fn enabled(&self) -> bool {
        !matches!(*self.backend, Backend::None)
    }

    fn server_for<'a>(servers: &'a [Server], key: &str) -> Option<&'a Server> {
        if servers.is_empty() {
            return None;
        }
        let h = xxhash_rust::xxh64::xxh64(key.as_bytes(), 0);
        servers.get((h % servers.len() as u64) as usize)
    }

    /// memcached keys are at most 250 bytes: hash the cache key.
    fn memcached_key(key: &str) -> String {
        format!("fe:{:016x}", xxhash_rust::xxh64::xxh64(key.as_bytes(), 0))
    }

    /// Runs one memcached operation on a pooled connection (connecting if needed); any
    /// failure drops the connection, is counted, and yields `None`.
    async fn memcached_op(
        &self,
        server: &Server,
        timeout: Duration,
        op: McOp,
    ) -> Option<Option<Vec<u8>>> {
        let name = match &op {
            McOp::Get(_) => "get",
            McOp::Set(..) => "set",
        };
        let slot = server.next.fetch_add(1, Ordering::Relaxed) % server.clients.len().max(1);
        let client = server.clients.get(slot)?;
        let mut guard = client.lock().await;
        let result = tokio::time::timeout(timeout, async {
            if guard.is_none() {
                let c = async_memcached::Client::new(format!("tcp://{}", server.address))
                    .await
                    .map_err(|e| e.to_string())?;
                *guard = Some(c);
            }
            let Some(c) = guard.as_mut() else {
                return Err("no connection".to_owned());
            };
            match op {
                McOp::Get(key) => c
                    .get(&key)
                    .await
                    .map(|v| v.and_then(|v| v.data))
                    .map_err(|e| e.to_string()),
                McOp::Set(key, value, ttl) => c
                    .set(&key, value.as_slice(), Some(ttl), None)
                    .await
                    .map(|()| None)
                    .map_err(|e| e.to_string()),
            }
        })
        .await;
        match result {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                *guard = None;
                self.metrics
                    .failures
                    .get_or_create(&vec![("operation", name)])
                    .inc();
                tracing::debug!(server = %server.address, error = %e, "memcached {name} failed");
                None
            }
            Err(_) => {
                *guard = None;
                self.metrics
                    .failures
                    .get_or_create(&vec![("operation", name)])
                    .inc();
                tracing::debug!(server = %server.address, "memcached {name} timed out");
                None
            }
        }
    }

    /// The cached value of `key`.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.metrics.requests.inc();
        let found = match &*self.backend {
            Backend::None => None,
            Backend::InMemory(cache) => cache.get(key).map(|v| v.as_ref().clone()),
            Backend::Memcached {
                servers, timeout, ..
            } => {
                let server = Self::server_for(servers, key)?;
                let mkey = Self::memcached_key(key);
                self.memcached_op(server, *timeout, McOp::Get(mkey))
                    .await
                    .flatten()
            }
        };
        if found.is_some() {
            self.metrics.hits.inc();
        }
        found
    }

    /// Stores `value` under `key` (values over the size limit are skipped).
    pub async fn set(&self, key: &str, value: Vec<u8>) {
        match &*self.backend {
            Backend::None => {}
            Backend::InMemory(cache) => cache.insert(key.to_owned(), Arc::new(value)),
            Backend::Memcached {
                servers,
                timeout,
                max_item_size,
                expiration,
            } => {
                if value.len() as u64 > *max_item_size {
                    return;
                }
                let Some(server) = Self::server_for(servers, key) else {
                    return;
                };
                let mkey = Self::memcached_key(key);
                let ttl = i64::try_from(expiration.as_secs()).unwrap_or(86_400);
                self.memcached_op(server, *timeout, McOp::Set(mkey, value, ttl))
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_bounds_items() {
        let mut registry = Registry::default();
        let cache = ResultsCache::new(
            Some(&CacheConfig::InMemory {
                max_size: 1 << 20,
                max_items: 10,
                validity: Duration::ZERO,
            }),
            &mut registry,
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            for i in 0..100 {
                cache.set(&format!("k{i}"), vec![0u8; 10]).await;
            }
        });
        assert!(cache.entry_count() <= 10, "{}", cache.entry_count());
    }

    #[test]
    fn parses_thanos_configs() {
        let c = CacheConfig::from_yaml(
            "type: IN-MEMORY\nconfig:\n  max_size: 256MB\n  max_size_items: 1000\n  validity: 1h\n",
        )
        .unwrap();
        assert_eq!(
            c,
            CacheConfig::InMemory {
                max_size: 256 << 20,
                max_items: 1000,
                validity: Duration::from_secs(3600)
            }
        );
        let c = CacheConfig::from_yaml(
            "type: MEMCACHED\nconfig:\n  addresses: [\"127.0.0.1:11211\"]\n  timeout: 200ms\n  max_idle_connections: 4\n  max_item_size: 2MiB\n  max_async_concurrency: 10\n",
        )
        .unwrap();
        assert!(
            matches!(c, CacheConfig::Memcached { max_item_size, .. } if max_item_size == 2 << 20)
        );
        assert!(CacheConfig::from_yaml("type: REDIS\nconfig: {}\n").is_err());
    }
}
