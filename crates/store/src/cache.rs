//! The index cache: postings lists, series entries and expanded series (a block's
//! series for one selection, in memory only: see [`crate::expanded`]), in memory (bounded in bytes, moka's
//! TinyLFU eviction; `--index-cache-size` or `--index-cache.config` `IN-MEMORY`) or in
//! memcached (`--index-cache.config` `MEMCACHED`), with Thanos' cache metrics. A memcached
//! failure is a miss; writes to memcached go out in the background, bounded, and are dropped
//! when too many are in flight.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use moka::sync::Cache;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use ulid::Ulid;

use crate::expanded::{Expanded, Interner, Selection};

/// What a cache entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// A decoded postings list, by block and index offset.
    Postings(Ulid, u64),
    /// A series entry's bytes, by block and series reference.
    Series(Ulid, u32),
    /// The series a selection picks in a block (in memory only).
    Expanded(Ulid, Arc<Selection>),
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Postings(Arc<Vec<u32>>),
    Series(Bytes),
    Expanded(Arc<Expanded>),
}

impl Value {
    fn weight(&self) -> u32 {
        let bytes = match self {
            Value::Postings(p) => p.len() * 4 + 64,
            Value::Series(b) => b.len() + 64,
            Value::Expanded(e) => return e.weight,
        };
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// A selection in one block.
type SelectionIn = (Ulid, Arc<Selection>);

type ItemLabels = Vec<(&'static str, &'static str)>;

/// Writes to memcached in flight at once; more are dropped.
const REMOTE_WRITES: usize = 64;

impl Key {
    /// The memcached key (at most 250 bytes, no spaces).
    fn remote(&self) -> String {
        match self {
            Key::Postings(block, offset) => format!("P:{block}:{offset}"),
            Key::Series(block, series) => format!("S:{block}:{series}"),
            // Never sent: expanded series stay in memory.
            Key::Expanded(block, _) => format!("E:{block}"),
        }
    }
}

impl Value {
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            Value::Postings(list) => list.iter().flat_map(|r| r.to_le_bytes()).collect(),
            Value::Series(b) => b.to_vec(),
            Value::Expanded(_) => Vec::new(),
        }
    }

    /// The value of `key` from memcached bytes; `None` for bytes that cannot be one.
    fn from_bytes(key: &Key, bytes: Vec<u8>) -> Option<Value> {
        match key {
            Key::Postings(..) => {
                if !bytes.len().is_multiple_of(4) {
                    return None;
                }
                let list: Vec<u32> = bytes
                    .chunks_exact(4)
                    .filter_map(|c| match *c {
                        [a, b, c, d] => Some(u32::from_le_bytes([a, b, c, d])),
                        _ => None,
                    })
                    .collect();
                // Postings are strictly increasing; anything else is not ours.
                list.is_sorted_by(|a, b| a < b)
                    .then(|| Value::Postings(Arc::new(list)))
            }
            Key::Series(..) => Some(Value::Series(Bytes::from(bytes))),
            Key::Expanded(..) => None,
        }
    }
}

/// The index cache shared by all blocks.
#[derive(Debug, Clone)]
pub struct IndexCache {
    /// Keyed by block and offset: FxHash, as the keys come from our own index, not from
    /// requests.
    cache: Option<Cache<Key, Value, rustc_hash::FxBuildHasher>>,
    remote: Option<Arc<strata_cache::Memcached>>,
    writes: Arc<tokio::sync::Semaphore>,
    requests: Family<ItemLabels, Counter>,
    hits: Family<ItemLabels, Counter>,
    added: Family<ItemLabels, Counter>,
    evicted: Family<ItemLabels, Counter>,
    /// Items held and their bytes, per type (in-memory cache).
    held: Family<ItemLabels, Gauge>,
    held_bytes: Family<ItemLabels, Gauge>,
    max_bytes: Gauge,
    /// Label sets shared by expanded series.
    interner: Arc<Interner>,
    /// Selections whose expanded series outgrew their budget, not to be collected again.
    too_big: Arc<Mutex<HashSet<SelectionIn>>>,
}

/// The item types this cache holds, by Thanos' label values.
const ITEM_TYPES: [&str; 3] = ["Postings", "Series", "ExpandedSeries"];

/// An expanded list may take at most this share of the in-memory cache (a quarter: the
/// 100,000 series of one block, about 40 MB, fit in the default 250 MB; Thanos' in-memory
/// cache takes items up to half its size).
const EXPANDED_SHARE: u64 = 4;
/// Selections remembered as too big to keep expanded (forgotten all at once beyond).
const TOO_BIG_REMEMBERED: usize = 4_096;

impl IndexCache {
    /// A cache holding at most `max_bytes` (0 disables it).
    pub fn new(max_bytes: u64, registry: Option<&mut Registry>) -> IndexCache {
        let evicted: Family<ItemLabels, Counter> = Family::default();
        let held: Family<ItemLabels, Gauge> = Family::default();
        let held_bytes: Family<ItemLabels, Gauge> = Family::default();
        let on_evict = evicted.clone();
        let (on_remove, on_remove_bytes) = (held.clone(), held_bytes.clone());
        let cache = (max_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_k: &Key, v: &Value| v.weight())
                .eviction_listener(move |key: Arc<Key>, value: Value, cause| {
                    let labels = vec![("item_type", Self::item_type(&key))];
                    if cause.was_evicted() {
                        on_evict.get_or_create(&labels).inc();
                    }
                    // Every removal (evicted, replaced, invalidated) leaves the cache.
                    on_remove.get_or_create(&labels).dec();
                    on_remove_bytes
                        .get_or_create(&labels)
                        .dec_by(i64::from(value.weight()));
                })
                .build_with_hasher(rustc_hash::FxBuildHasher)
        });
        let this = IndexCache {
            cache,
            remote: None,
            writes: Arc::new(tokio::sync::Semaphore::new(REMOTE_WRITES)),
            requests: Family::default(),
            hits: Family::default(),
            added: Family::default(),
            evicted,
            held,
            held_bytes,
            max_bytes: Gauge::default(),
            interner: Arc::default(),
            too_big: Arc::default(),
        };
        this.max_bytes
            .set(i64::try_from(max_bytes).unwrap_or(i64::MAX));
        this.register(registry);
        this
    }

    /// A cache from `--index-cache.config`: `IN-MEMORY` (its `max_size`) or `MEMCACHED`.
    pub fn from_config(
        config: &strata_cache::CacheConfig,
        registry: Option<&mut Registry>,
    ) -> IndexCache {
        match config {
            strata_cache::CacheConfig::InMemory { max_size, .. } => {
                IndexCache::new(*max_size, registry)
            }
            strata_cache::CacheConfig::Memcached { .. } => {
                let remote = strata_cache::Memcached::new(config).map(Arc::new);
                let this = IndexCache {
                    cache: None,
                    remote,
                    writes: Arc::new(tokio::sync::Semaphore::new(REMOTE_WRITES)),
                    requests: Family::default(),
                    hits: Family::default(),
                    added: Family::default(),
                    evicted: Family::default(),
                    held: Family::default(),
                    held_bytes: Family::default(),
                    max_bytes: Gauge::default(),
                    interner: Arc::default(),
                    too_big: Arc::default(),
                };
                if let Some(registry) = registry {
                    if let Some(remote) = &this.remote {
                        remote.register(registry);
                    }
                    this.register(Some(registry));
                }
                this
            }
        }
    }

    fn register(&self, registry: Option<&mut Registry>) {
        if let Some(registry) = registry {
            // Every item type's series from the start, as Thanos' caches create them.
            for item_type in ITEM_TYPES {
                let labels = vec![("item_type", item_type)];
                for family in [&self.requests, &self.hits, &self.added, &self.evicted] {
                    drop(family.get_or_create(&labels));
                }
                drop(self.held.get_or_create(&labels));
                drop(self.held_bytes.get_or_create(&labels));
            }
            registry.register(
                "thanos_store_index_cache_items",
                "Current number of items in the index cache.",
                self.held.clone(),
            );
            registry.register(
                "thanos_store_index_cache_items_size_bytes",
                "Current byte size of items in the index cache.",
                self.held_bytes.clone(),
            );
            registry.register(
                "thanos_store_index_cache_total_size_bytes",
                "Current byte size of items (both value and key) in the index cache.",
                self.held_bytes.clone(),
            );
            registry.register(
                "thanos_store_index_cache_max_size_bytes",
                "Maximum number of bytes to be held in the index cache.",
                self.max_bytes.clone(),
            );
            registry.register(
                "thanos_store_index_cache_items_added",
                "Total number of items that were added to the index cache.",
                self.added.clone(),
            );
            registry.register(
                "thanos_store_index_cache_items_evicted",
                "Total number of items that were evicted from the index cache.",
                self.evicted.clone(),
            );
            registry.register(
                "thanos_store_index_cache_requests",
                "Total number of items requests to the cache.",
                self.requests.clone(),
            );
            registry.register(
                "thanos_store_index_cache_hits",
                "Total number of items requests to the cache that were a hit.",
                self.hits.clone(),
            );
        }
    }

    /// The key's position in [`ITEM_TYPES`].
    fn item_index(key: &Key) -> usize {
        match key {
            Key::Postings(..) => 0,
            Key::Series(..) => 1,
            Key::Expanded(..) => 2,
        }
    }

    fn item_type(key: &Key) -> &'static str {
        match key {
            Key::Postings(..) => ITEM_TYPES[0],
            Key::Series(..) => ITEM_TYPES[1],
            Key::Expanded(..) => ITEM_TYPES[2],
        }
    }

    /// The cached values of `keys`, in order.
    pub(crate) async fn get_many(&self, keys: &[Key]) -> Vec<Option<Value>> {
        if self.cache.is_none() && self.remote.is_none() {
            return vec![None; keys.len()];
        }
        let mut found: Vec<Option<Value>> = match &self.cache {
            Some(cache) => keys.iter().map(|k| cache.get(k)).collect(),
            None => vec![None; keys.len()],
        };
        if let Some(remote) = &self.remote {
            let wanted: Vec<String> = keys.iter().map(Key::remote).collect();
            let mut got = remote.get_multi(&wanted).await;
            for ((key, name), slot) in keys.iter().zip(&wanted).zip(found.iter_mut()) {
                if let Some(bytes) = got.remove(name) {
                    *slot = Value::from_bytes(key, bytes);
                }
            }
        }
        // Counted per item type, not per key (a label lookup each).
        let mut counts = [(0u64, 0u64); ITEM_TYPES.len()];
        for (key, value) in keys.iter().zip(&found) {
            if let Some((requests, hits)) = counts.get_mut(Self::item_index(key)) {
                *requests += 1;
                *hits += u64::from(value.is_some());
            }
        }
        for (item_type, (requests, hits)) in ITEM_TYPES.iter().zip(counts) {
            if requests == 0 {
                continue;
            }
            let labels = vec![("item_type", *item_type)];
            self.requests.get_or_create(&labels).inc_by(requests);
            if hits > 0 {
                self.hits.get_or_create(&labels).inc_by(hits);
            }
        }
        found
    }

    pub(crate) fn insert(&self, key: Key, value: Value) {
        let remote_too = !matches!(key, Key::Expanded(..));
        if let Some(cache) = &self.cache {
            let labels = vec![("item_type", Self::item_type(&key))];
            self.added.get_or_create(&labels).inc();
            self.held.get_or_create(&labels).inc();
            self.held_bytes
                .get_or_create(&labels)
                .inc_by(i64::from(value.weight()));
            cache.insert(key.clone(), value.clone());
        }
        let Some(remote) = self.remote.as_ref().filter(|_| remote_too) else {
            return;
        };
        let bytes = value.to_bytes();
        if bytes.len() as u64 > remote.max_item_size() {
            return;
        }
        let Ok(permit) = Arc::clone(&self.writes).try_acquire_owned() else {
            return;
        };
        let remote = Arc::clone(remote);
        tokio::spawn(async move {
            let _permit = permit;
            remote.set(&key.remote(), bytes).await;
        });
    }

    /// The expanded series of `selection` in `block`, if held.
    pub(crate) async fn get_expanded(
        &self,
        block: Ulid,
        selection: &Arc<Selection>,
    ) -> Option<Arc<Expanded>> {
        // In memory only: with memcached there is nothing to look up.
        self.cache.as_ref()?;
        let key = Key::Expanded(block, Arc::clone(selection));
        match self.get_many(&[key]).await.pop().flatten()? {
            Value::Expanded(e) => Some(e),
            _ => None,
        }
    }

    /// Bytes one expanded list of `selection` in `block` may take; `None` when nothing is
    /// kept in memory, or when that list outgrew it before.
    pub(crate) fn expanded_budget(&self, block: Ulid, selection: &Arc<Selection>) -> Option<usize> {
        let cache = self.cache.as_ref()?;
        if self
            .too_big
            .lock()
            .is_ok_and(|set| set.contains(&(block, Arc::clone(selection))))
        {
            return None;
        }
        let max = cache.policy().max_capacity()? / EXPANDED_SHARE;
        usize::try_from(max).ok()
    }

    /// Remembers that the expanded list of `selection` in `block` outgrew its budget.
    pub(crate) fn expanded_too_big(&self, block: Ulid, selection: Arc<Selection>) {
        if let Ok(mut set) = self.too_big.lock() {
            if set.len() >= TOO_BIG_REMEMBERED {
                set.clear();
            }
            set.insert((block, selection));
        }
    }

    /// Label sets shared by expanded series.
    pub(crate) fn interner(&self) -> &Interner {
        &self.interner
    }

    /// Bytes currently held (approximate).
    pub fn weighted_size(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.weighted_size()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_types::Matcher;

    #[test]
    fn a_selection_that_outgrew_its_budget_is_not_collected_again() {
        let cache = IndexCache::new(16 << 20, None);
        let block = Ulid::nil();
        let up = Arc::new(Selection::new(&[Matcher::equal("__name__", "up")], &[]));
        let other = Arc::new(Selection::new(&[Matcher::equal("__name__", "x")], &[]));
        assert_eq!(cache.expanded_budget(block, &up), Some(4 << 20));
        cache.expanded_too_big(block, Arc::clone(&up));
        assert_eq!(cache.expanded_budget(block, &up), None);
        assert_eq!(cache.expanded_budget(block, &other), Some(4 << 20));
        // Nothing is kept when the cache is off.
        assert_eq!(
            IndexCache::new(0, None).expanded_budget(block, &other),
            None
        );
    }

    #[tokio::test]
    async fn expanded_series_are_held_and_weighed() {
        let cache = IndexCache::new(16 << 20, None);
        let block = Ulid::nil();
        let up = Arc::new(Selection::new(&[Matcher::equal("__name__", "up")], &[]));
        assert!(cache.get_expanded(block, &up).await.is_none());
        let expanded = Expanded {
            series: Vec::new(),
            weight: 1_000,
        };
        cache.insert(
            Key::Expanded(block, Arc::clone(&up)),
            Value::Expanded(Arc::new(expanded)),
        );
        let got = cache.get_expanded(block, &up).await.expect("held");
        assert_eq!(got.weight, 1_000);
        assert_eq!(cache.weighted_size(), 1_000);
    }
}
