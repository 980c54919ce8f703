//! The compaction planner: which blocks of one group to merge next. Prometheus' TSDB
//! planner as Thanos uses it (`pkg/compact/planner.go`): overlapping blocks first (vertical
//! compaction), else the first aligned window of 2h, 8h, 2d or 14d that holds at least two
//! blocks and is either full or ends before the newest block; the newest block is always
//! left out, and blocks marked no-compact split a window without being merged.

use std::collections::BTreeSet;

use ulid::Ulid;

const HOUR: i64 = 3_600_000;

/// Thanos' compaction ranges: 1h, 2h, 8h, 2d, 14d (planning uses all but the first).
pub const RANGES: [i64; 5] = [HOUR, 2 * HOUR, 8 * HOUR, 48 * HOUR, 14 * 24 * HOUR];

/// What the planner needs of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanMeta {
    /// The block.
    pub id: Ulid,
    /// minTime (ms, inclusive).
    pub min_time: i64,
    /// maxTime (ms, exclusive).
    pub max_time: i64,
    /// `compaction.failed`.
    pub failed: bool,
}

/// Blocks of one group that overlap in time (the first run of them, in minTime order).
pub fn overlapping(metas: &[PlanMeta]) -> Vec<Ulid> {
    let mut sorted: Vec<&PlanMeta> = metas.iter().collect();
    sorted.sort_by_key(|m| (m.min_time, m.id));
    let mut out = Vec::new();
    let Some(first) = sorted.first() else {
        return out;
    };
    let mut global_max = first.max_time;
    for pair in sorted.windows(2) {
        let [prev, m] = pair else { continue };
        if m.min_time < global_max {
            if out.is_empty() {
                out.push(prev.id);
            }
            out.push(m.id);
        } else if !out.is_empty() {
            break;
        }
        global_max = global_max.max(m.max_time);
    }
    out
}

/// The next blocks of one group to compact together, or nothing. `ranges` is normally
/// [`RANGES`] (cut to `--debug.max-compaction-level`).
pub fn plan(metas: &[PlanMeta], no_compact: &BTreeSet<Ulid>, ranges: &[i64]) -> Vec<Ulid> {
    let mut sorted: Vec<PlanMeta> = metas
        .iter()
        .filter(|m| !no_compact.contains(&m.id))
        .cloned()
        .collect();
    sorted.sort_by_key(|m| (m.min_time, m.id));
    let overlaps = overlapping(&sorted);
    if !overlaps.is_empty() {
        return overlaps;
    }
    // The newest block stays out: another block of its range may still be on its way.
    let all: Vec<PlanMeta> = metas.to_vec();
    let mut all_sorted = all;
    all_sorted.sort_by_key(|m| (m.min_time, m.id));
    all_sorted.pop();
    select(&all_sorted, no_compact, ranges)
}

fn select(ds: &[PlanMeta], no_compact: &BTreeSet<Ulid>, ranges: &[i64]) -> Vec<Ulid> {
    let Some(last) = ds.last() else {
        return Vec::new();
    };
    if ranges.len() < 2 {
        return Vec::new();
    }
    let high_time = last.min_time;
    for &iv in ranges.iter().skip(1) {
        for part in split_by_range(ds, iv) {
            if part.iter().any(|m| m.failed) || part.len() < 2 {
                continue;
            }
            let (Some(first), Some(last)) = (part.first(), part.last()) else {
                continue;
            };
            if last.max_time - first.min_time != iv && last.max_time > high_time {
                continue;
            }
            // No-compact blocks split the window; runs between them are compacted alone.
            let mut start = 0;
            for (i, m) in part.iter().enumerate() {
                if !no_compact.contains(&m.id) {
                    continue;
                }
                if i - start > 1 {
                    return part.get(start..i).map(ids).unwrap_or_default();
                }
                start = i + 1;
            }
            if part.len().saturating_sub(start) > 1 {
                return part.get(start..).map(ids).unwrap_or_default();
            }
        }
    }
    Vec::new()
}

fn ids(ms: &[PlanMeta]) -> Vec<Ulid> {
    ms.iter().map(|m| m.id).collect()
}

/// Groups of consecutive blocks that fall into one aligned window `[t0, t0 + tr)`.
fn split_by_range(ds: &[PlanMeta], tr: i64) -> Vec<Vec<PlanMeta>> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(m) = ds.get(i) {
        let t0 = if m.min_time >= 0 {
            tr * (m.min_time / tr)
        } else {
            tr * ((m.min_time - tr + 1) / tr)
        };
        if m.max_time > t0 + tr {
            i += 1;
            continue;
        }
        let mut group = Vec::new();
        while let Some(d) = ds.get(i) {
            if d.max_time > t0 + tr {
                break;
            }
            group.push(d.clone());
            i += 1;
        }
        if !group.is_empty() {
            out.push(group);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(n: u128, min: i64, max: i64) -> PlanMeta {
        PlanMeta {
            id: Ulid(n),
            min_time: min * HOUR,
            max_time: max * HOUR,
            failed: false,
        }
    }

    fn plan_ids(metas: &[PlanMeta]) -> Vec<u128> {
        plan(metas, &BTreeSet::new(), &RANGES)
            .iter()
            .map(|u| u.0)
            .collect()
    }

    #[test]
    fn newest_block_is_left_out() {
        assert!(plan_ids(&[m(1, 0, 2), m(2, 2, 4)]).is_empty());
        // 4 two-hour blocks fill an 8h window; the fifth (newest) is left out.
        assert_eq!(
            plan_ids(&[m(1, 0, 2), m(2, 2, 4), m(3, 4, 6), m(4, 6, 8), m(5, 8, 10)]),
            [1, 2, 3, 4]
        );
    }

    #[test]
    fn partial_window_before_newest_block() {
        // 0-2 and 2-4 lie in [0, 8h), which ends after the newest block's min time (10h)?
        // No: maxt (4h) <= high time (min of the newest kept block) makes it eligible.
        assert_eq!(
            plan_ids(&[m(1, 0, 2), m(2, 2, 4), m(3, 8, 10), m(4, 10, 12)]),
            [1, 2]
        );
        // A window still filling (the newest block is in it) waits.
        assert!(plan_ids(&[m(1, 0, 2), m(2, 2, 4), m(3, 4, 6)]).is_empty());
    }

    #[test]
    fn larger_ranges_after_smaller_ones() {
        // Six 8h blocks fill 2d; the newest (2d..2d+2h) is left out.
        let mut metas: Vec<PlanMeta> = (0..6)
            .map(|i| m(i + 1, i as i64 * 8, i as i64 * 8 + 8))
            .collect();
        metas.push(m(7, 48, 50));
        assert_eq!(plan_ids(&metas), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn overlaps_first() {
        assert_eq!(plan_ids(&[m(1, 0, 2), m(2, 1, 3), m(3, 4, 6)]), [1, 2]);
        assert_eq!(overlapping(&[m(1, 0, 2), m(2, 2, 4)]), Vec::<Ulid>::new());
    }

    #[test]
    fn no_compact_marks_split_windows() {
        let metas = [m(1, 0, 2), m(2, 2, 4), m(3, 4, 6), m(4, 6, 8), m(5, 8, 10)];
        let marked: BTreeSet<Ulid> = [Ulid(2)].into();
        let got: Vec<u128> = plan(&metas, &marked, &RANGES).iter().map(|u| u.0).collect();
        assert_eq!(got, [3, 4]);
    }

    #[test]
    fn failed_blocks_block_their_window() {
        let mut metas = vec![m(1, 0, 2), m(2, 2, 4), m(3, 4, 6), m(4, 6, 8), m(5, 8, 10)];
        metas[1].failed = true;
        assert!(plan_ids(&metas).is_empty());
    }
}
