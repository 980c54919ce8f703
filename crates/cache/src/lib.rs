//! Caches configured as Thanos configures them (`type: IN-MEMORY | MEMCACHED`, `config:`),
//! shared by the query frontend (results cache) and the store gateway (index cache).
//!
//! - [`CacheConfig`] parses Thanos' YAML;
//! - [`Memcached`] is a bounded client for a set of memcached servers: keys hashed to a
//!   server, a small pool of connections per server, a timeout on every operation. A failure
//!   is counted in `thanos_memcached_operation_failures_total` and reads as a miss: a cache
//!   never fails the request it serves.

use std::collections::HashMap;
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
#[error("cache config: {0}")]
pub struct CacheConfigError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: serde_norway::Value,
    /// Thanos' index cache: which items are cached (all are).
    #[serde(default)]
    enabled_items: Vec<String>,
    /// Thanos' index cache TTL for memcached items.
    #[serde(default)]
    ttl: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct InMemoryRaw {
    #[serde(default)]
    max_size: Option<String>,
    #[serde(default)]
    max_size_items: u64,
    #[serde(default)]
    max_item_size: Option<String>,
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
        /// Largest value stored.
        max_item_size: u64,
        /// Entry lifetime.
        validity: Duration,
    },
    /// memcached servers.
    Memcached {
        /// `host:port` of each server (`dns+host:port` resolved by [`resolve_addresses`]).
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
    strata_types::time::parse_go_duration(s)
        .ok_or_else(|| CacheConfigError(format!("invalid duration {s:?}")))
}

impl CacheConfig {
    /// Parses Thanos' cache config YAML.
    pub fn from_yaml(yaml: &str) -> Result<CacheConfig, CacheConfigError> {
        let raw: RawConfig =
            serde_norway::from_str(yaml).map_err(|e| CacheConfigError(e.to_string()))?;
        for item in &raw.enabled_items {
            if !["Postings", "Series", "ExpandedPostings"].contains(&item.as_str()) {
                return Err(CacheConfigError(format!(
                    "unknown enabled_items entry {item:?}"
                )));
            }
        }
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
                    max_item_size: bytes(c.max_item_size.as_deref(), 125 << 20)?,
                    validity: duration(c.validity.as_deref(), Duration::ZERO)?,
                })
            }
            "MEMCACHED" => {
                let c: MemcachedRaw = serde_norway::from_value(raw.config)
                    .map_err(|e| CacheConfigError(e.to_string()))?;
                if c.addresses.is_empty() {
                    return Err(CacheConfigError("MEMCACHED: no addresses".into()));
                }
                let expiration = match raw.ttl.as_deref() {
                    Some(ttl) => duration(Some(ttl), Duration::from_secs(86_400))?,
                    None => duration(c.expiration.as_deref(), Duration::from_secs(86_400))?,
                };
                Ok(CacheConfig::Memcached {
                    addresses: c.addresses,
                    timeout: duration(c.timeout.as_deref(), Duration::from_millis(500))?,
                    max_idle_connections: c.max_idle_connections.clamp(1, 16),
                    max_item_size: bytes(c.max_item_size.as_deref(), 1 << 20)?,
                    expiration,
                })
            }
            other => Err(CacheConfigError(format!(
                "unsupported type {other:?} (supported: IN-MEMORY, MEMCACHED)"
            ))),
        }
    }
}

/// Resolves `dns+host:port` memcached addresses (every A/AAAA record) once.
pub async fn resolve_addresses(config: &mut CacheConfig) {
    let CacheConfig::Memcached { addresses, .. } = config else {
        return;
    };
    let mut out = Vec::new();
    for a in addresses.iter() {
        match a.strip_prefix("dns+") {
            Some(name) => match tokio::net::lookup_host(name).await {
                Ok(found) => out.extend(found.map(|s| s.to_string())),
                Err(e) => tracing::warn!(address = %a, error = %e, "memcached DNS lookup failed"),
            },
            None => out.push(a.clone()),
        }
    }
    out.sort();
    out.dedup();
    *addresses = out;
}

type OperationLabels = Vec<(&'static str, &'static str)>;

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

/// A memcached operation.
enum Op {
    GetMulti(Vec<String>),
    Set(String, Vec<u8>, i64),
}

/// How often `dns+` addresses are looked up again (Thanos' `dns_provider_update_interval`).
const DNS_REFRESH: Duration = Duration::from_secs(10);

/// The servers in use and when their addresses were last resolved.
#[derive(Debug, Default)]
struct ServerSet {
    servers: Arc<Vec<Arc<Server>>>,
    resolved_at: Option<std::time::Instant>,
}

/// A client for a set of memcached servers.
#[derive(Debug)]
pub struct Memcached {
    /// The addresses as configured (`host:port` or `dns+host:port`).
    configured: Vec<String>,
    pool: usize,
    set: Arc<std::sync::RwLock<ServerSet>>,
    refreshing: Arc<std::sync::atomic::AtomicBool>,
    timeout: Duration,
    max_item_size: u64,
    expiration: Duration,
    failures: Family<OperationLabels, Counter>,
}

/// Resolves `configured` and installs the servers, keeping those whose address stays.
async fn refresh(configured: &[String], pool: usize, set: &std::sync::RwLock<ServerSet>) {
    let mut config = CacheConfig::Memcached {
        addresses: configured.to_vec(),
        timeout: Duration::ZERO,
        max_idle_connections: pool,
        max_item_size: 0,
        expiration: Duration::ZERO,
    };
    resolve_addresses(&mut config).await;
    let CacheConfig::Memcached { addresses, .. } = config else {
        return;
    };
    let Ok(mut set) = set.write() else {
        return;
    };
    set.resolved_at = Some(std::time::Instant::now());
    let current: Vec<&str> = set.servers.iter().map(|s| s.address.as_str()).collect();
    if current == addresses.iter().map(String::as_str).collect::<Vec<_>>() {
        return;
    }
    if addresses.is_empty() && !current.is_empty() {
        // A failed lookup keeps the servers that worked.
        return;
    }
    let servers: Vec<Arc<Server>> = addresses
        .iter()
        .map(|a| {
            set.servers
                .iter()
                .find(|s| &s.address == a)
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(Server {
                        address: a.clone(),
                        clients: (0..pool.max(1)).map(|_| Mutex::new(None)).collect(),
                        next: AtomicUsize::new(0),
                    })
                })
        })
        .collect();
    tracing::info!(servers = ?addresses, "memcached servers");
    set.servers = Arc::new(servers);
}

/// Keys asked in one `get` round trip at most.
const GET_BATCH: usize = 100;

impl Memcached {
    /// A client for a `MEMCACHED` config (`None` for any other type).
    pub fn new(config: &CacheConfig) -> Option<Memcached> {
        let CacheConfig::Memcached {
            addresses,
            timeout,
            max_idle_connections,
            max_item_size,
            expiration,
        } = config
        else {
            return None;
        };
        Some(Memcached {
            configured: addresses.clone(),
            pool: *max_idle_connections,
            set: Arc::default(),
            refreshing: Arc::default(),
            timeout: *timeout,
            max_item_size: *max_item_size,
            expiration: *expiration,
            failures: Family::default(),
        })
    }

    /// Registers `thanos_memcached_operation_failures_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "thanos_memcached_operation_failures",
            "Failed memcached operations (the request went on uncached).",
            self.failures.clone(),
        );
    }

    fn server_index(servers: &[Arc<Server>], key: &str) -> Option<usize> {
        if servers.is_empty() {
            return None;
        }
        let h = xxhash_rust::xxh64::xxh64(key.as_bytes(), 0);
        Some((h % servers.len() as u64) as usize)
    }

    /// The servers to use now. Addresses are resolved on first use and, when `dns+` names
    /// are configured, again in the background every [`DNS_REFRESH`] (memcached pods come
    /// and go behind a headless Service); a server whose address stays keeps its connections.
    async fn servers(&self) -> Arc<Vec<Arc<Server>>> {
        let (servers, resolved_at) = match self.set.read() {
            Ok(set) => (Arc::clone(&set.servers), set.resolved_at),
            Err(_) => return Arc::default(),
        };
        let Some(at) = resolved_at else {
            refresh(&self.configured, self.pool, &self.set).await;
            return self
                .set
                .read()
                .map(|s| Arc::clone(&s.servers))
                .unwrap_or_default();
        };
        let uses_dns = self.configured.iter().any(|a| a.starts_with("dns+"));
        if uses_dns && at.elapsed() >= DNS_REFRESH && !self.refreshing.swap(true, Ordering::AcqRel)
        {
            let (configured, pool) = (self.configured.clone(), self.pool);
            let (set, refreshing) = (Arc::clone(&self.set), Arc::clone(&self.refreshing));
            // One short lookup at a time, bounded by the resolver's own timeouts; its
            // result or failure is logged.
            tokio::spawn(async move {
                refresh(&configured, pool, &set).await;
                refreshing.store(false, Ordering::Release);
            });
        }
        servers
    }

    /// Runs one operation on a pooled connection (connecting if needed); any failure drops
    /// the connection, is counted, and yields `None`.
    async fn op(&self, server: &Server, op: Op) -> Option<Vec<async_memcached::Value>> {
        let name = match &op {
            Op::GetMulti(_) => "getmulti",
            Op::Set(..) => "set",
        };
        let slot = server.next.fetch_add(1, Ordering::Relaxed) % server.clients.len().max(1);
        let client = server.clients.get(slot)?;
        let mut guard = client.lock().await;
        let result = tokio::time::timeout(self.timeout, async {
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
                // The client reports "no key found" as an error: it is an empty answer.
                Op::GetMulti(keys) => match c.get_multi(&keys).await {
                    Ok(values) => Ok(values),
                    Err(async_memcached::Error::Protocol(async_memcached::Status::NotFound)) => {
                        Ok(Vec::new())
                    }
                    Err(e) => Err(e.to_string()),
                },
                Op::Set(key, value, ttl) => c
                    .set(&key, value.as_slice(), Some(ttl), None)
                    .await
                    .map(|()| Vec::new())
                    .map_err(|e| e.to_string()),
            }
        })
        .await;
        let error = match result {
            Ok(Ok(values)) => return Some(values),
            Ok(Err(e)) => e,
            Err(_) => format!("timed out after {:?}", self.timeout),
        };
        *guard = None;
        self.failures
            .get_or_create(&vec![("operation", name)])
            .inc();
        tracing::debug!(server = %server.address, error = %error, "memcached {name} failed");
        None
    }

    /// The values found for `keys` (keys of at most 250 bytes, without spaces).
    pub async fn get_multi(&self, keys: &[String]) -> HashMap<String, Vec<u8>> {
        let servers = self.servers().await;
        let mut by_server: Vec<Vec<String>> = vec![Vec::new(); servers.len()];
        for key in keys {
            if let Some(i) = Self::server_index(&servers, key)
                && let Some(list) = by_server.get_mut(i)
            {
                list.push(key.clone());
            }
        }
        let mut calls = Vec::new();
        for (server, keys) in servers.iter().zip(by_server) {
            for batch in keys.chunks(GET_BATCH) {
                calls.push(self.op(server, Op::GetMulti(batch.to_vec())));
            }
        }
        let mut found = HashMap::new();
        for values in futures::future::join_all(calls).await.into_iter().flatten() {
            for v in values {
                if let (Ok(key), Some(data)) = (String::from_utf8(v.key), v.data) {
                    found.insert(key, data);
                }
            }
        }
        found
    }

    /// The value of `key`, if cached.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.get_multi(&[key.to_owned()]).await.remove(key)
    }

    /// Stores `value` under `key`; values over `max_item_size` are skipped.
    pub async fn set(&self, key: &str, value: Vec<u8>) {
        if value.len() as u64 > self.max_item_size {
            return;
        }
        let servers = self.servers().await;
        let Some(server) = Self::server_index(&servers, key).and_then(|i| servers.get(i)) else {
            return;
        };
        let ttl = i64::try_from(self.expiration.as_secs()).unwrap_or(86_400);
        self.op(server, Op::Set(key.to_owned(), value, ttl)).await;
    }

    /// The largest value stored.
    pub fn max_item_size(&self) -> u64 {
        self.max_item_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dns_names_are_resolved_again_and_a_failed_lookup_keeps_the_servers() {
        let set = std::sync::RwLock::new(ServerSet::default());
        let names = [
            "dns+localhost:11211".to_owned(),
            "10.0.0.9:11211".to_owned(),
        ];
        refresh(&names, 2, &set).await;
        let addresses = |set: &std::sync::RwLock<ServerSet>| -> Vec<String> {
            set.read()
                .unwrap()
                .servers
                .iter()
                .map(|s| s.address.clone())
                .collect()
        };
        let first = addresses(&set);
        assert!(first.contains(&"127.0.0.1:11211".to_owned()), "{first:?}");
        assert!(first.contains(&"10.0.0.9:11211".to_owned()), "{first:?}");
        let before = Arc::clone(&set.read().unwrap().servers);
        // The same answer: the same servers (and their connections) stay.
        refresh(&names, 2, &set).await;
        assert!(Arc::ptr_eq(&before, &set.read().unwrap().servers));
        // A name that no longer resolves: the servers that worked are kept.
        refresh(&["dns+nothing.invalid:11211".to_owned()], 2, &set).await;
        assert_eq!(addresses(&set), first);
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
                max_item_size: 125 << 20,
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
        // Thanos' index cache form: enabled_items and ttl beside config.
        let c = CacheConfig::from_yaml(
            "type: MEMCACHED\nconfig:\n  addresses: [\"m:11211\"]\nenabled_items: [Postings, Series]\nttl: 2h\n",
        )
        .unwrap();
        assert!(
            matches!(c, CacheConfig::Memcached { expiration, .. } if expiration == Duration::from_secs(7200))
        );
        assert!(CacheConfig::from_yaml("type: REDIS\nconfig: {}\n").is_err());
        assert!(
            CacheConfig::from_yaml("type: IN-MEMORY\nconfig:\n  max_sise: 1MB\n").is_err(),
            "misspelled field"
        );
    }

    #[tokio::test]
    async fn unreachable_servers_are_misses_and_counted() {
        let config = CacheConfig::Memcached {
            addresses: vec!["127.0.0.1:1".into()],
            timeout: Duration::from_millis(200),
            max_idle_connections: 1,
            max_item_size: 1 << 20,
            expiration: Duration::from_secs(60),
        };
        let m = Memcached::new(&config).unwrap();
        assert!(m.get("k").await.is_none());
        m.set("k", b"v".to_vec()).await;
        let failures: u64 = ["getmulti", "set"]
            .iter()
            .map(|op| m.failures.get_or_create(&vec![("operation", *op)]).get())
            .sum();
        assert_eq!(failures, 2);
    }
}
