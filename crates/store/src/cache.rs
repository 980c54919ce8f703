//! The in-memory index cache: postings lists and series entries, bounded in bytes (LRU-like
//! eviction by moka's TinyLFU), with Thanos' cache metrics.

use std::sync::Arc;

use bytes::Bytes;
use moka::sync::Cache;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use ulid::Ulid;

/// What a cache entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// A decoded postings list, by block and index offset.
    Postings(Ulid, u64),
    /// A series entry's bytes, by block and series reference.
    Series(Ulid, u32),
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Postings(Arc<Vec<u32>>),
    Series(Bytes),
}

impl Value {
    fn weight(&self) -> u32 {
        let bytes = match self {
            Value::Postings(p) => p.len() * 4 + 64,
            Value::Series(b) => b.len() + 64,
        };
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

type ItemLabels = Vec<(&'static str, &'static str)>;

/// The index cache shared by all blocks.
#[derive(Debug, Clone)]
pub struct IndexCache {
    cache: Option<Cache<Key, Value>>,
    requests: Family<ItemLabels, Counter>,
    hits: Family<ItemLabels, Counter>,
}

impl IndexCache {
    /// A cache holding at most `max_bytes` (0 disables it).
    pub fn new(max_bytes: u64, registry: Option<&mut Registry>) -> IndexCache {
        let cache = (max_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_k: &Key, v: &Value| v.weight())
                .build()
        });
        let this = IndexCache {
            cache,
            requests: Family::default(),
            hits: Family::default(),
        };
        if let Some(registry) = registry {
            registry.register(
                "thanos_store_index_cache_requests",
                "Total number of items requests to the cache.",
                this.requests.clone(),
            );
            registry.register(
                "thanos_store_index_cache_hits",
                "Total number of items requests to the cache that were a hit.",
                this.hits.clone(),
            );
        }
        this
    }

    fn item_type(key: &Key) -> &'static str {
        match key {
            Key::Postings(..) => "Postings",
            Key::Series(..) => "Series",
        }
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Value> {
        let cache = self.cache.as_ref()?;
        let labels = vec![("item_type", Self::item_type(key))];
        self.requests.get_or_create(&labels).inc();
        let value = cache.get(key);
        if value.is_some() {
            self.hits.get_or_create(&labels).inc();
        }
        value
    }

    pub(crate) fn insert(&self, key: Key, value: Value) {
        if let Some(cache) = &self.cache {
            cache.insert(key, value);
        }
    }

    /// Bytes currently held (approximate).
    pub fn weighted_size(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.weighted_size()
        })
    }
}
