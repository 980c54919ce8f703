//! Expanded series: a block's series that one selection (matchers and stripped replica
//! labels) picks, with their labels as served and all their chunk references, in the order
//! they are sent. Dashboards repeat the same selections over the same blocks; keeping the
//! expanded list in the index cache skips the postings, the series entries, their decoding
//! and the reorder for external labels on every repeat. Only the time filter and the chunk
//! fetches stay per request.
//!
//! Label sets are interned across blocks ([`Interner`]): a series present in every block
//! of a two-day range holds one label set, not one per block, and the merge finds it equal
//! by address.

use std::collections::HashSet;
use std::sync::Mutex;

use strata_tsdb::index::ChunkMeta;
use strata_types::{Labels, MatchType, Matcher};

/// What a Series request selects in a block: its matchers (without those on external
/// labels, sorted) and the replica labels it strips.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Selection {
    matchers: Vec<(String, MatchType, String)>,
    strip: Vec<String>,
}

impl Selection {
    pub(crate) fn new(matchers: &[Matcher], strip: &[String]) -> Selection {
        let mut matchers: Vec<(String, MatchType, String)> = matchers
            .iter()
            .map(|m| (m.name().to_owned(), m.kind(), m.value().to_owned()))
            .collect();
        matchers.sort_by(|a, b| (&a.0, a.1 as u8, &a.2).cmp(&(&b.0, b.1 as u8, &b.2)));
        matchers.dedup();
        let mut strip = strip.to_vec();
        strip.sort();
        strip.dedup();
        Selection { matchers, strip }
    }

    /// Bytes the key holds.
    pub(crate) fn weight(&self) -> usize {
        64 + self
            .matchers
            .iter()
            .map(|(n, _, v)| 56 + n.len() + v.len())
            .sum::<usize>()
            + self.strip.iter().map(|s| 24 + s.len()).sum::<usize>()
    }
}

/// A block's expanded series for one [`Selection`].
#[derive(Debug)]
pub(crate) struct Expanded {
    /// Labels as served and all the series' chunks, in the order sent.
    pub(crate) series: Vec<(Labels, Vec<ChunkMeta>)>,
    /// Bytes charged to the cache.
    pub(crate) weight: u32,
}

/// Bytes of a label set's own allocation (its strings and their headers).
pub(crate) fn labels_weight(labels: &Labels) -> usize {
    32 + labels
        .iter()
        .map(|l| 48 + l.name.len() + l.value.len())
        .sum::<usize>()
}

/// Bytes of one series' place in an [`Expanded`] list (its label set not included).
pub(crate) fn entry_weight(chunks: usize) -> usize {
    16 + 24 + chunks * std::mem::size_of::<ChunkMeta>()
}

/// Collects an [`Expanded`] list while a block's series stream by, within a byte budget;
/// gives up (and frees what it held) when the list outgrows it.
#[derive(Debug)]
pub(crate) struct Filling {
    series: Vec<(Labels, Vec<ChunkMeta>)>,
    weight: usize,
    budget: usize,
}

impl Filling {
    /// A fill for `series` series within `budget` bytes; `None` when even their places
    /// would not fit.
    pub(crate) fn new(series: usize, budget: usize) -> Option<Filling> {
        (series.saturating_mul(entry_weight(1)) <= budget).then(|| Filling {
            series: Vec::with_capacity(series),
            weight: 0,
            budget,
        })
    }

    /// Adds a series; `new_labels` when its label set was not interned before (it is
    /// charged to this list). False when the budget ran out: the fill is over.
    pub(crate) fn push(&mut self, labels: &Labels, chunks: &[ChunkMeta], new_labels: bool) -> bool {
        self.weight += entry_weight(chunks.len());
        if new_labels {
            self.weight += labels_weight(labels);
        }
        if self.weight > self.budget {
            return false;
        }
        self.series.push((labels.clone(), chunks.to_vec()));
        true
    }

    pub(crate) fn finish(self, key_weight: usize) -> Expanded {
        Expanded {
            weight: u32::try_from(self.weight + key_weight).unwrap_or(u32::MAX),
            series: self.series,
        }
    }
}

/// Label sets shared by the blocks' expanded series: an equal set is handed out as the
/// same allocation. Sets nothing else holds any more are dropped when the table has doubled
/// since the last sweep.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    sets: HashSet<Labels, rustc_hash::FxBuildHasher>,
    swept_at: usize,
}

/// Below this many sets the table is not swept.
const SWEEP_MIN: usize = 4_096;

impl Interner {
    /// The interned equal of each of `labels` (replacing it), and whether it was new.
    pub(crate) fn intern_all(&self, labels: &mut [&mut Labels], new: &mut Vec<bool>) {
        new.clear();
        let Ok(mut table) = self.table.lock() else {
            new.resize(labels.len(), false);
            return;
        };
        for l in labels.iter_mut() {
            match table.sets.get(&**l) {
                Some(found) => {
                    **l = found.clone();
                    new.push(false);
                }
                None => {
                    table.sets.insert((**l).clone());
                    new.push(true);
                }
            }
        }
        let len = table.sets.len();
        if len >= SWEEP_MIN && len >= table.swept_at.saturating_mul(2) {
            table.sets.retain(|l| l.is_shared());
            table.swept_at = table.sets.len();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().map_or(0, |t| t.sets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &str) -> Labels {
        Labels::from_pairs([("__name__", "up"), ("instance", v)])
    }

    #[test]
    fn equal_selections_are_one_key() {
        let a = Selection::new(
            &[
                Matcher::equal("job", "api"),
                Matcher::equal("__name__", "up"),
            ],
            &["replica".to_owned()],
        );
        let b = Selection::new(
            &[
                Matcher::equal("__name__", "up"),
                Matcher::equal("job", "api"),
            ],
            &["replica".to_owned(), "replica".to_owned()],
        );
        assert_eq!(a, b);
        let c = Selection::new(&[Matcher::not_equal("job", "api")], &[]);
        let d = Selection::new(&[Matcher::equal("job", "api")], &[]);
        assert_ne!(c, d);
        let e = Selection::new(&[Matcher::equal("job", "api")], &["replica".to_owned()]);
        assert_ne!(d, e);
    }

    #[test]
    fn interned_sets_share_one_allocation_and_unheld_ones_are_swept() {
        let interner = Interner::default();
        let mut new = Vec::new();
        let mut a = labels("a");
        let mut b = labels("b");
        interner.intern_all(&mut [&mut a, &mut b], &mut new);
        assert_eq!(new, [true, true]);
        let mut a2 = labels("a");
        interner.intern_all(&mut [&mut a2], &mut new);
        assert_eq!(new, [false]);
        assert_eq!(a2.identity(), a.identity());
        // Fill past the sweep size with sets nobody holds: the sweep keeps only `a` and
        // `b`, which are held here.
        for i in 0..SWEEP_MIN {
            let mut l = labels(&format!("x{i}"));
            interner.intern_all(&mut [&mut l], &mut new);
        }
        assert!(interner.len() < SWEEP_MIN);
        let mut b2 = labels("b");
        interner.intern_all(&mut [&mut b2], &mut new);
        assert_eq!(new, [false]);
        assert_eq!(b2.identity(), b.identity());
    }

    #[test]
    fn a_fill_gives_up_past_its_budget() {
        let l = labels("a");
        let chunks = [ChunkMeta {
            min_time: 0,
            max_time: 1,
            chunk_ref: 8,
        }];
        assert!(Filling::new(1_000_000, 1_000).is_none());
        let mut fill =
            Filling::new(2, entry_weight(1) * 2 + labels_weight(&l)).expect("two places fit");
        assert!(fill.push(&l, &chunks, true));
        assert!(fill.push(&l, &chunks, false));
        assert!(!fill.push(&l, &chunks, false));
        let mut fill = Filling::new(1, 1_000).expect("fits");
        assert!(fill.push(&l, &chunks, true));
        let done = fill.finish(10);
        assert_eq!(done.series.len(), 1);
        assert_eq!(
            done.weight as usize,
            entry_weight(1) + labels_weight(&l) + 10
        );
    }
}
