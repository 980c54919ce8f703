//! Replica deduplication at query time, as Thanos' querier does it.
//!
//! Series that differ only in replica labels are replicas of one series. `chain` merges
//! them by timestamp (one sample per timestamp, the first replica's wins), for replicas that
//! hold identical samples. `penalty` (the default) is Thanos' algorithm (`pkg/dedup/iter.go`):
//! it follows one replica and switches to another only after a gap longer than twice the
//! last sample interval (5 s before any interval is known), so the result keeps the sample
//! rate of one replica while filling the other's gaps. More than two replicas are folded
//! from the left, `dedup(dedup(r0, r1), r2)`, as iterators: a switch in the outer merge
//! adjusts the inner one's replicas too, exactly as Thanos' nested iterators do.
//!
//! Samples pass through untouched (bit for bit: a stale marker stays a stale marker), except
//! for counter functions (`rate`, `irate`, `increase`, `resets`). For those Thanos first
//! reads each replica through its counter-reset iterator (`downsample.
//! ApplyCounterResetsSeriesIterator`: NaN samples, stale markers included, are dropped and
//! resets are added up, so each replica is monotonic), and then each replica switch that
//! would look like a counter reset adds the difference to the new replica's values
//! (`counterErrAdjustSeriesIterator`, the fix of Thanos issue 2401).

use strata_types::Sample;

/// The deduplication function (`--deduplication.func`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DedupFunc {
    /// Thanos' penalty-based algorithm.
    #[default]
    Penalty,
    /// Merge by timestamp.
    Chain,
}

impl std::str::FromStr for DedupFunc {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "penalty" | "" => Ok(DedupFunc::Penalty),
            "chain" => Ok(DedupFunc::Chain),
            other => Err(format!(
                "unknown deduplication func {other:?} (want penalty or chain)"
            )),
        }
    }
}

/// Penalty before any sample interval is known (ms), as Thanos.
const INITIAL_PENALTY: i64 = 5000;

/// Merges replicas (each sorted by time) into one series. `counter` asks for Thanos' counter
/// handling (see the module documentation); it only matters for `penalty`.
pub fn dedup_replicas(replicas: Vec<Vec<Sample>>, func: DedupFunc, counter: bool) -> Vec<Sample> {
    match func {
        DedupFunc::Chain => {
            let mut iter = replicas.into_iter();
            let Some(first) = iter.next() else {
                return Vec::new();
            };
            iter.fold(first, |acc, next| chain(&acc, &next))
        }
        DedupFunc::Penalty => {
            if counter {
                let monotonic: Vec<Vec<Sample>> = replicas
                    .iter()
                    .map(|r| crate::downsample::apply_counter_resets(std::slice::from_ref(r)).0)
                    .collect();
                penalty_all(&monotonic, true, Seek::Forward)
            } else {
                penalty_all(&replicas, false, Seek::Forward)
            }
        }
    }
}

/// Merges replicas of points of any kind (each in time order) by `func`, deciding on
/// timestamps only (Thanos' rules without the counter adjustment, which is for floats): how
/// native histogram samples are deduplicated. Each point stands in the float merge as a
/// sample whose value names it (replica in the high bits, position in the low 32).
pub fn dedup_by_time<T: Clone>(
    replicas: Vec<Vec<T>>,
    func: DedupFunc,
    time: impl Fn(&T) -> i64,
) -> Vec<T> {
    if replicas.len() <= 1 {
        return replicas.into_iter().next().unwrap_or_default();
    }
    let stand_ins: Vec<Vec<Sample>> = replicas
        .iter()
        .enumerate()
        .map(|(r, points)| {
            points
                .iter()
                .enumerate()
                .map(|(i, p)| Sample {
                    t: time(p),
                    v: ((r as u64) << 32 | i as u64) as f64,
                })
                .collect()
        })
        .collect();
    dedup_replicas(stand_ins, func, false)
        .into_iter()
        .filter_map(|s| {
            let id = s.v as u64;
            replicas
                .get((id >> 32) as usize)?
                .get((id & 0xffff_ffff) as usize)
                .cloned()
        })
        .collect()
}

/// One sample per timestamp from both; `a` wins ties.
pub fn chain(a: &[Sample], b: &[Sample]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    loop {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.t == y.t => {
                out.push(*x);
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.t < y.t => {
                out.push(*x);
                i += 1;
            }
            (_, Some(y)) => {
                out.push(*y);
                j += 1;
            }
            (Some(x), None) => {
                out.push(*x);
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Thanos' penalty deduplication of two replicas (`counter`: with the counter adjustment on
/// switches; the replicas are taken as they are).
pub fn penalty(a: &[Sample], b: &[Sample], counter: bool) -> Vec<Sample> {
    penalty_all(&[a.to_vec(), b.to_vec()], counter, Seek::Forward)
}

/// How a replica seeks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seek {
    /// Never backwards, as Prometheus' chunk iterators (what Thanos' querier reads).
    Forward,
    /// A binary search from the first sample, as the mock iterator of Thanos' dedup unit
    /// tests: a seek to a time before the current sample moves back. Only to reproduce
    /// those tests' expectations.
    #[cfg(test)]
    FromStart,
}

/// Folds the replicas into one iterator tree and drains it.
fn penalty_all(replicas: &[Vec<Sample>], counter: bool, seek: Seek) -> Vec<Sample> {
    let mut iter = replicas.iter();
    let Some(first) = iter.next() else {
        return Vec::new();
    };
    let mut root = Node::Leaf(Leaf::new(first, counter, seek));
    for next in iter {
        root = Node::Dedup(Box::new(Dedup::new(
            root,
            Node::Leaf(Leaf::new(next, counter, seek)),
        )));
    }
    if let Node::Leaf(_) = root {
        return first.clone();
    }
    let mut out = Vec::with_capacity(replicas.iter().map(Vec::len).max().unwrap_or(0));
    while root.next() {
        if let Some(s) = root.at() {
            out.push(s);
        }
    }
    out
}

/// A replica read forward (`pos` is the current sample; `None` before the first `next`),
/// with the counter adjustment Thanos' `counterErrAdjustSeriesIterator` keeps.
struct Leaf<'a> {
    samples: &'a [Sample],
    pos: Option<usize>,
    counter: bool,
    adjust: f64,
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "read only by the test-only seek mode")
    )]
    seek: Seek,
}

impl<'a> Leaf<'a> {
    fn new(samples: &'a [Sample], counter: bool, seek: Seek) -> Self {
        Leaf {
            samples,
            pos: None,
            counter,
            adjust: 0.0,
            seek,
        }
    }

    fn current(&self) -> Option<&Sample> {
        self.samples.get(self.pos?)
    }

    fn next(&mut self) -> bool {
        let pos = self.pos.map_or(0, |p| p.saturating_add(1));
        self.pos = Some(pos.min(self.samples.len()));
        self.current().is_some()
    }

    /// The first sample at or after `t`; never moves backwards.
    fn seek(&mut self, t: i64) -> bool {
        #[cfg(test)]
        if self.seek == Seek::FromStart {
            self.pos = Some(self.samples.partition_point(|s| s.t < t));
            return self.current().is_some();
        }
        let mut pos = self.pos.unwrap_or(0);
        if self.samples.get(pos).is_some_and(|s| s.t < t) {
            pos += self
                .samples
                .get(pos..)
                .unwrap_or_default()
                .partition_point(|s| s.t < t);
        }
        self.pos = Some(pos.min(self.samples.len()));
        self.current().is_some()
    }

    fn at(&self) -> Option<Sample> {
        let s = *self.current()?;
        Some(if self.counter {
            Sample {
                t: s.t,
                v: s.v + self.adjust,
            }
        } else {
            s
        })
    }

    fn adjust_at_value(&mut self, last: f64) {
        if !self.counter {
            return;
        }
        if let Some(now) = self.at()
            && last > now.v
        {
            self.adjust += last - now.v;
        }
    }
}

/// A replica or a merge of replicas.
enum Node<'a> {
    Leaf(Leaf<'a>),
    Dedup(Box<Dedup<'a>>),
}

impl Node<'_> {
    fn next(&mut self) -> bool {
        match self {
            Node::Leaf(l) => l.next(),
            Node::Dedup(d) => d.next(),
        }
    }

    fn seek(&mut self, t: i64) -> bool {
        match self {
            Node::Leaf(l) => l.seek(t),
            Node::Dedup(d) => d.seek(t),
        }
    }

    fn at(&self) -> Option<Sample> {
        match self {
            Node::Leaf(l) => l.at(),
            Node::Dedup(d) => d.at(),
        }
    }

    fn at_t(&self) -> Option<i64> {
        match self {
            Node::Leaf(l) => l.current().map(|s| s.t),
            Node::Dedup(d) => d.at_t(),
        }
    }

    fn adjust_at_value(&mut self, last: f64) {
        match self {
            Node::Leaf(l) => l.adjust_at_value(last),
            Node::Dedup(d) => d.adjust_at_value(last),
        }
    }
}

/// Thanos' `dedupSeriesIterator` over two nodes.
struct Dedup<'a> {
    a: Node<'a>,
    b: Node<'a>,
    a_ok: bool,
    b_ok: bool,
    last_t: i64,
    /// Whether `a` gave the last sample (Thanos' `lastIter`).
    last_is_a: bool,
    pen_a: i64,
    pen_b: i64,
    use_a: bool,
}

impl<'a> Dedup<'a> {
    fn new(mut a: Node<'a>, mut b: Node<'a>) -> Self {
        let a_ok = a.next();
        let b_ok = b.next();
        Dedup {
            a,
            b,
            a_ok,
            b_ok,
            last_t: i64::MIN,
            last_is_a: true,
            pen_a: 0,
            pen_b: 0,
            use_a: true,
        }
    }

    fn last_value(&self) -> Option<f64> {
        let ok = if self.use_a { self.a_ok } else { self.b_ok };
        if !ok {
            return None;
        }
        self.at().map(|s| s.v)
    }

    fn next(&mut self) -> bool {
        let last_value = self.last_value();
        let last_use_a = self.use_a;
        let ok = self.step();
        if self.use_a != last_use_a
            && let Some(v) = last_value
        {
            // Switched replicas: a counter must not go down (Thanos adjusts both sides).
            self.adjust_at_value(v);
        }
        ok
    }

    fn step(&mut self) -> bool {
        let from = self.last_t.saturating_add(1);
        if self.a_ok {
            self.a_ok = self.a.seek(from.saturating_add(self.pen_a));
        }
        if self.b_ok {
            self.b_ok = self.b.seek(from.saturating_add(self.pen_b));
        }
        let (ta, tb) = match (self.a_ok, self.b_ok) {
            (false, false) => {
                self.use_a = false;
                return false;
            }
            (false, true) => {
                self.use_a = false;
                self.last_t = self.b.at_t().unwrap_or(self.last_t);
                self.last_is_a = false;
                self.pen_b = 0;
                return true;
            }
            (true, false) => {
                self.use_a = true;
                self.last_t = self.a.at_t().unwrap_or(self.last_t);
                self.last_is_a = true;
                self.pen_a = 0;
                return true;
            }
            (true, true) => (
                self.a.at_t().unwrap_or(i64::MAX),
                self.b.at_t().unwrap_or(i64::MAX),
            ),
        };
        self.use_a = ta <= tb;
        let (chosen_t, other_pen) = if self.use_a {
            (ta, &mut self.pen_b)
        } else {
            (tb, &mut self.pen_a)
        };
        *other_pen = if self.last_t == i64::MIN {
            INITIAL_PENALTY
        } else {
            chosen_t.saturating_sub(self.last_t).saturating_mul(2)
        };
        if self.use_a {
            self.pen_a = 0;
        } else {
            self.pen_b = 0;
        }
        self.last_t = chosen_t;
        self.last_is_a = self.use_a;
        true
    }

    fn seek(&mut self, t: i64) -> bool {
        // As Thanos: step with `next` so that no gap is missed.
        loop {
            match self.at_t() {
                Some(now) if now >= t => return true,
                None if !self.a_ok && !self.b_ok => return false,
                _ => {}
            }
            if !self.next() {
                return false;
            }
        }
    }

    fn at(&self) -> Option<Sample> {
        if self.last_is_a {
            self.a.at()
        } else {
            self.b.at()
        }
    }

    fn at_t(&self) -> Option<i64> {
        if self.use_a {
            self.a.at_t()
        } else {
            self.b.at_t()
        }
    }

    fn adjust_at_value(&mut self, last: f64) {
        if self.a_ok {
            self.a.adjust_at_value(last);
        }
        if self.b_ok {
            self.b.adjust_at_value(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(points: &[(i64, f64)]) -> Vec<Sample> {
        points.iter().map(|&(t, v)| Sample { t, v }).collect()
    }

    #[test]
    fn chain_merges_by_timestamp() {
        let a = s(&[(1, 1.0), (3, 3.0)]);
        let b = s(&[(1, 9.0), (2, 2.0), (4, 4.0)]);
        assert_eq!(chain(&a, &b), s(&[(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]));
    }

    /// Worked by hand from the algorithm: replica A scrapes every 10 s at 0..=100 with a gap
    /// from 30 to 70; replica B every 10 s offset by 3 s.
    #[test]
    fn penalty_follows_one_replica_and_fills_gaps() {
        let a = s(&[
            (0, 0.0),
            (10_000, 1.0),
            (20_000, 2.0),
            (80_000, 8.0),
            (90_000, 9.0),
            (100_000, 10.0),
        ]);
        let b: Vec<Sample> = (0..10)
            .map(|i| Sample {
                t: 3_000 + i * 10_000,
                v: 100.0 + i as f64,
            })
            .collect();
        let got = penalty(&a, &b, false);
        // Start: A at 0 (<= B at 3000); penB = 5000 → B may not be used before 5001.
        // A at 10000, 20000 (penB = 2*10000 → B seeks from 40001).
        // After 20000 A's next is 80000; B's next at or after 40001 is 43000 → switch to B
        // (penA = 2*(43000-20000) = 46000 → A seeks from 89001). B continues: 53000, 63000,
        // 73000, 83000 (each time penA = 2*10000 → A seeks from last+20001). At 83000 A's
        // next ≥ 103001 does not exist... A is at 90000 < 93000 + 1 + 20000, B keeps going:
        // 93000. Then A is exhausted after seeking past 100000 → B to the end.
        let want = s(&[
            (0, 0.0),
            (10_000, 1.0),
            (20_000, 2.0),
            (43_000, 104.0),
            (53_000, 105.0),
            (63_000, 106.0),
            (73_000, 107.0),
            (83_000, 108.0),
            (93_000, 109.0),
        ]);
        assert_eq!(got, want);
    }

    #[test]
    fn penalty_keeps_a_when_complete_and_uses_b_when_a_empty() {
        let series = |offset: i64, value: Option<f64>| -> Vec<Sample> {
            (0..10)
                .map(|i| Sample {
                    t: i * 15_000 + offset,
                    v: value.unwrap_or(i as f64),
                })
                .collect()
        };
        let a = series(0, None);
        // B 3 s behind A: held off 5 s before any interval is known, then 2 x 15 s.
        let b = series(3_000, Some(50.0));
        assert_eq!(penalty(&a, &b, false), a);
        assert_eq!(penalty(&[], &b, false), b);
        assert_eq!(
            dedup_replicas(vec![a.clone(), b.clone(), b], DedupFunc::Penalty, false),
            a
        );
        // B 7 s behind: its first sample is past the initial 5 s penalty and before A's
        // second (15 s), so B takes over and keeps it, as in Thanos.
        let late = series(7_000, Some(50.0));
        let mut want = vec![a[0]];
        want.extend(late.iter().copied());
        assert_eq!(penalty(&a, &late, false), want);
    }

    #[test]
    fn counter_adjustment_on_switch() {
        // A counts to 20 then stops; B (lower, restarted) continues. Switching to B adds
        // the difference so the counter does not look reset.
        let a = s(&[(0, 10.0), (10_000, 20.0)]);
        let b = s(&[(50_000, 5.0), (60_000, 6.0)]);
        assert_eq!(
            penalty(&a, &b, true),
            s(&[(0, 10.0), (10_000, 20.0), (50_000, 20.0), (60_000, 21.0)])
        );
        assert_eq!(
            penalty(&a, &b, false),
            s(&[(0, 10.0), (10_000, 20.0), (50_000, 5.0), (60_000, 6.0)])
        );
    }

    /// Thanos' `TestDedupSeriesSet` case "Regression test against 2401": one replica misses
    /// samples around an application restart; the counter must not look reset after the
    /// switch back and forth.
    #[test]
    fn thanos_regression_2401() {
        let a = s(&[
            (10_000, 8.0),
            (20_000, 9.0),
            (50_001, 10.0),
            (60_000, 11.0),
            (70_000, 12.0),
            (80_000, 13.0),
            (90_000, 14.0),
            (100_000, 15.0),
        ]);
        let b = s(&[(10_001, 8.0), (45_001, 8.5), (55_001, 9.5), (65_001, 10.5)]);
        // Thanos' expectation holds with its test's mock iterator, whose seek can move back
        // (at 65,001 A is sought from 75,002 and lands on 80,000 though it stood at 100,000).
        assert_eq!(
            penalty_all(&[a.clone(), b.clone()], true, Seek::FromStart),
            s(&[
                (10_000, 8.0),
                (20_000, 9.0),
                (45_001, 9.0),
                (55_001, 10.0),
                (65_001, 11.0),
                (90_000, 14.0),
                (100_000, 15.0)
            ])
        );
        // Thanos' querier reads chunk iterators, which only seek forward: A stays at 100,000
        // and the sample at 90,000 is not taken (what Thanos returns in production).
        assert_eq!(
            dedup_replicas(vec![a.clone(), b.clone()], DedupFunc::Penalty, true),
            s(&[
                (10_000, 8.0),
                (20_000, 9.0),
                (45_001, 9.0),
                (55_001, 10.0),
                (65_001, 11.0),
                (100_000, 15.0)
            ])
        );
        // "Regression test with no counter adjustment": the same without a counter function.
        assert_eq!(
            penalty_all(&[a, b], false, Seek::FromStart),
            s(&[
                (10_000, 8.0),
                (20_000, 9.0),
                (45_001, 8.5),
                (55_001, 9.5),
                (65_001, 10.5),
                (90_000, 14.0),
                (100_000, 15.0)
            ])
        );
    }

    /// Thanos' "Regression test on real data against 2401": two real replicas (GitLab's), the
    /// expected result from Thanos' test (data in `tests/data`, Apache-2.0, The Thanos Authors).
    #[test]
    fn thanos_regression_2401_real_data() {
        let json: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/thanos_dedup_issue2401.json"))
                .unwrap();
        let series = |v: &serde_json::Value| -> Vec<Sample> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|p| Sample {
                    t: p[0].as_i64().unwrap(),
                    v: p[1].as_f64().unwrap(),
                })
                .collect()
        };
        let replicas: Vec<Vec<Sample>> = json["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(series)
            .collect();
        let want = series(&json["expected_penalty_counter"]);
        assert_eq!(dedup_replicas(replicas, DedupFunc::Penalty, true), want);
    }

    /// Stale markers come out bit for bit, whichever replica they are read from.
    #[test]
    fn stale_markers_stay_stale_markers() {
        let stale = strata_types::stale_nan();
        let a = s(&[(0, 1.0), (15_000, 2.0), (30_000, stale), (90_000, 3.0)]);
        let b = s(&[
            (2_000, 1.0),
            (17_000, 2.0),
            (32_000, 2.5),
            (47_000, stale),
            (92_000, 4.0),
        ]);
        for func in [DedupFunc::Penalty, DedupFunc::Chain] {
            let out = dedup_replicas(vec![a.clone(), b.clone()], func, false);
            let stale_in = out.iter().filter(|p| p.v.is_nan()).count();
            assert!(stale_in > 0, "{func:?}: {out:?}");
            for p in &out {
                if p.v.is_nan() {
                    assert!(
                        strata_types::is_stale_nan(p.v),
                        "{func:?}: {:x}",
                        p.v.to_bits()
                    );
                }
            }
        }
        // Penalty follows A through its stale marker (B is held off by the penalty).
        let out = dedup_replicas(vec![a, b], DedupFunc::Penalty, false);
        assert_eq!(out.get(2).map(|p| p.v.to_bits()), Some(stale.to_bits()));
    }

    /// Counter functions: each replica is read as Thanos' counter-reset iterator reads it
    /// (NaN dropped, resets added up) before the switch adjustment, so a replica that went
    /// stale and restarted never makes the merged counter go down.
    #[test]
    fn counters_are_monotonic_across_stale_restarts() {
        let stale = strata_types::stale_nan();
        // A restarts after a stale marker at 45 s; B keeps counting, 1 s behind.
        let a = s(&[
            (0, 100.0),
            (15_000, 110.0),
            (30_000, 120.0),
            (45_000, stale),
            (60_000, 5.0),
            (75_000, 15.0),
        ]);
        let b = s(&[
            (1_000, 100.0),
            (16_000, 111.0),
            (31_000, 121.0),
            (46_000, 131.0),
            (61_000, 141.0),
            (76_000, 151.0),
        ]);
        let out = dedup_replicas(vec![a, b], DedupFunc::Penalty, true);
        assert!(out.iter().all(|p| !p.v.is_nan()), "{out:?}");
        assert!(out.windows(2).all(|w| w[1].v >= w[0].v), "{out:?}");
    }

    /// Three replicas fold like Thanos' nested iterators (a switch in the outer merge adjusts
    /// the inner merge's replicas).
    #[test]
    fn three_replicas_fold_from_the_left() {
        let r = |offset: i64, from: usize, to: usize, base: f64| -> Vec<Sample> {
            (from..to)
                .map(|i| Sample {
                    t: i as i64 * 10_000 + offset,
                    v: base + i as f64,
                })
                .collect()
        };
        let a = r(0, 0, 5, 0.0);
        let b = r(1_000, 0, 10, 2.0);
        let c = r(2_000, 0, 20, 1.0);
        let out = dedup_replicas(vec![a, b, c], DedupFunc::Penalty, true);
        assert!(
            out.windows(2).all(|w| w[1].v >= w[0].v && w[1].t > w[0].t),
            "{out:?}"
        );
        assert_eq!(out.last().map(|p| p.t), Some(192_000));
    }
}
