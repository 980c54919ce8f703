//! The results cache: Thanos' `--query-range.response-cache-config` (`IN-MEMORY` or
//! `MEMCACHED`, parsed and served by `strata-cache`). Memcached failures never fail a query:
//! the answer is computed uncached and `thanos_memcached_operation_failures_total` counts
//! the failure.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
pub use strata_cache::{CacheConfig, CacheConfigError};

#[derive(Debug, Clone, Default)]
struct Metrics {
    requests: Counter,
    hits: Counter,
    /// Thanos' (Cortex') names for the same lookups, which its dashboards read.
    fetched_keys: Counter,
    cortex_hits: Counter,
    gets: Counter,
    misses: Counter,
    /// `cortex_cache_request_duration_seconds{method, status_code}`.
    request_duration: RequestDuration,
}

type DurationFamily = Family<Vec<(&'static str, &'static str)>, Histogram, fn() -> Histogram>;

/// Cortex' instrumented-cache histogram: 16µs to about 0.26s, ×4 per bucket.
#[derive(Debug, Clone)]
struct RequestDuration(DurationFamily);

impl Default for RequestDuration {
    fn default() -> Self {
        let family: DurationFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000016, 4.0, 8)));
        for method in [FETCH, STORE] {
            drop(family.get_or_create(&vec![("method", method), ("status_code", "200")]));
        }
        RequestDuration(family)
    }
}

const FETCH: &str = "frontend-cache.fetch";
const STORE: &str = "frontend-cache.store";

impl RequestDuration {
    fn observe(&self, method: &'static str, started: std::time::Instant) {
        self.0
            .get_or_create(&vec![("method", method), ("status_code", "200")])
            .observe(started.elapsed().as_secs_f64());
    }
}

#[derive(Debug)]
enum Backend {
    None,
    InMemory(moka::sync::Cache<String, Arc<Vec<u8>>>),
    Memcached(strata_cache::Memcached),
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
                ..
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
            Some(config @ CacheConfig::Memcached { .. }) => {
                match strata_cache::Memcached::new(config) {
                    Some(m) => {
                        m.register(registry);
                        Backend::Memcached(m)
                    }
                    None => Backend::None,
                }
            }
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
        // Thanos labels its results-cache metrics by tripperware (and cache name).
        let thanos = registry.sub_registry_with_labels(
            [
                (
                    std::borrow::Cow::Borrowed("name"),
                    std::borrow::Cow::Borrowed("frontend-cache"),
                ),
                (
                    std::borrow::Cow::Borrowed("tripperware"),
                    std::borrow::Cow::Borrowed("query_range"),
                ),
            ]
            .into_iter(),
        );
        thanos.register(
            "cortex_cache_fetched_keys",
            "Total count of keys requested from cache.",
            metrics.fetched_keys.clone(),
        );
        thanos.register(
            "cortex_cache_hits",
            "Total count of keys found in cache.",
            metrics.cortex_hits.clone(),
        );
        thanos.register(
            "cortex_cache_request_duration_seconds",
            "Total time spent in seconds doing cache requests.",
            metrics.request_duration.0.clone(),
        );
        thanos.register(
            "querier_cache_gets",
            "The total number of Get calls",
            metrics.gets.clone(),
        );
        thanos.register(
            "querier_cache_misses",
            "The total number of Get calls that had no valid entry",
            metrics.misses.clone(),
        );
        ResultsCache {
            backend: Arc::new(backend),
            metrics,
        }
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

    /// memcached keys are at most 250 bytes: the cache key's SHA-256 (collision-resistant,
    /// so two queries never share an entry).
    fn memcached_key(key: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.as_bytes());
        let mut out = String::with_capacity(3 + 64);
        out.push_str("fe:");
        for b in digest {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// The cached value of `key`.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.metrics.requests.inc();
        self.metrics.fetched_keys.inc();
        self.metrics.gets.inc();
        let started = std::time::Instant::now();
        let found = match &*self.backend {
            Backend::None => None,
            Backend::InMemory(cache) => cache.get(key).map(|v| v.as_ref().clone()),
            Backend::Memcached(m) => m.get(&Self::memcached_key(key)).await,
        };
        self.metrics.request_duration.observe(FETCH, started);
        if found.is_some() {
            self.metrics.hits.inc();
            self.metrics.cortex_hits.inc();
        } else {
            self.metrics.misses.inc();
        }
        found
    }

    /// Stores `value` under `key` (values over the size limit are skipped).
    pub async fn set(&self, key: &str, value: Vec<u8>) {
        let started = std::time::Instant::now();
        match &*self.backend {
            Backend::None => return,
            Backend::InMemory(cache) => cache.insert(key.to_owned(), Arc::new(value)),
            Backend::Memcached(m) => m.set(&Self::memcached_key(key), value).await,
        }
        self.metrics.request_duration.observe(STORE, started);
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
                max_item_size: 1 << 20,
                validity: std::time::Duration::ZERO,
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
}
