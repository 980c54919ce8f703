//! Replica deduplication at query time, as Thanos' querier does it.
//!
//! Series that differ only in replica labels are replicas of one series. `chain` merges
//! them by timestamp (one sample per timestamp, the first replica's wins), for replicas that
//! hold identical samples. `penalty` (the default) is Thanos' algorithm (`pkg/dedup/iter.go`):
//! it follows one replica and switches to another only after a gap longer than twice the
//! last sample interval (5 s before any interval is known), so the result keeps the sample
//! rate of one replica while filling the other's gaps. More than two replicas are folded
//! from the left: `dedup(dedup(r0, r1), r2)`.
//!
//! For counter functions (`rate`, `irate`, `increase`, `resets`) each replica switch that
//! would look like a counter reset adds the difference to the new replica's later values
//! (Thanos' `counterErrAdjustSeriesIterator`).

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

const INITIAL_PENALTY: i64 = 5000;

/// Merges replicas (each sorted by time) into one series.
pub fn dedup_replicas(replicas: Vec<Vec<Sample>>, func: DedupFunc, counter: bool) -> Vec<Sample> {
    let mut iter = replicas.into_iter();
    let Some(first) = iter.next() else {
        return Vec::new();
    };
    iter.fold(first, |acc, next| match func {
        DedupFunc::Chain => chain(&acc, &next),
        DedupFunc::Penalty => penalty(&acc, &next, counter),
    })
}

/// One sample per timestamp from both; `a` wins ties.
pub fn chain(a: &[Sample], b: &[Sample]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
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

/// A replica being read, with its counter adjustment.
struct Cursor<'a> {
    samples: &'a [Sample],
    pos: usize,
    adjust: f64,
}

impl Cursor<'_> {
    fn seek(&mut self, t: i64) -> Option<Sample> {
        while self.samples.get(self.pos).is_some_and(|s| s.t < t) {
            self.pos += 1;
        }
        self.at()
    }

    fn at(&self) -> Option<Sample> {
        self.samples.get(self.pos).map(|s| Sample {
            t: s.t,
            v: s.v + self.adjust,
        })
    }

    /// Thanos' counter adjustment on switching to this replica after `last` was emitted.
    fn adjust_at(&mut self, last: Sample) {
        let Some(current) = self.at() else { return };
        if current.v < last.v {
            self.adjust += last.v - current.v;
        }
    }
}

/// Thanos' penalty deduplication of two replicas.
pub fn penalty(a: &[Sample], b: &[Sample], counter: bool) -> Vec<Sample> {
    let mut ca = Cursor {
        samples: a,
        pos: 0,
        adjust: 0.0,
    };
    let mut cb = Cursor {
        samples: b,
        pos: 0,
        adjust: 0.0,
    };
    let mut out: Vec<Sample> = Vec::with_capacity(a.len().max(b.len()));
    let mut last_t = i64::MIN;
    let (mut pen_a, mut pen_b) = (0i64, 0i64);
    let mut use_a = true;
    let (mut a_done, mut b_done) = (a.is_empty(), b.is_empty());
    loop {
        let last = out.last().copied();
        let was_a = use_a;
        let seek_from = |pen: i64| {
            if last_t == i64::MIN {
                i64::MIN
            } else {
                last_t.saturating_add(1).saturating_add(pen)
            }
        };
        let va = if a_done {
            None
        } else {
            ca.seek(seek_from(pen_a))
        };
        let vb = if b_done {
            None
        } else {
            cb.seek(seek_from(pen_b))
        };
        a_done |= va.is_none();
        b_done |= vb.is_none();
        let chosen = match (va, vb) {
            (None, None) => break,
            (None, Some(_)) => {
                use_a = false;
                pen_b = 0;
                false
            }
            (Some(_), None) => {
                use_a = true;
                pen_a = 0;
                true
            }
            (Some(x), Some(y)) => {
                use_a = x.t <= y.t;
                if use_a {
                    pen_b = if last_t == i64::MIN {
                        INITIAL_PENALTY
                    } else {
                        2 * (x.t - last_t)
                    };
                    pen_a = 0;
                } else {
                    pen_a = if last_t == i64::MIN {
                        INITIAL_PENALTY
                    } else {
                        2 * (y.t - last_t)
                    };
                    pen_b = 0;
                }
                use_a
            }
        };
        if counter
            && chosen != was_a
            && let Some(last) = last
        {
            if chosen {
                ca.adjust_at(last);
            } else {
                cb.adjust_at(last);
            }
        }
        let sample = if chosen { ca.at() } else { cb.at() };
        let Some(sample) = sample else { break };
        last_t = sample.t;
        out.push(sample);
        // Step past the emitted sample on the chosen replica.
        if chosen {
            ca.pos += 1;
        } else {
            cb.pos += 1;
        }
    }
    out
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
}
