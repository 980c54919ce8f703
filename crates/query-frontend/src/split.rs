//! Step alignment and splitting of range queries at interval boundaries, as Thanos' (and
//! Cortex') query frontend does it.

/// A range query's time parameters, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First evaluation time.
    pub start: i64,
    /// Last evaluation time (inclusive).
    pub end: i64,
    /// Step.
    pub step: i64,
}

impl Range {
    /// Start and end moved down to multiples of the step (`--query-range.align-range-with-step`).
    pub fn aligned(self) -> Range {
        Range {
            start: self.start.div_euclid(self.step) * self.step,
            end: self.end.div_euclid(self.step) * self.step,
            step: self.step,
        }
    }

    /// Sub-ranges that each lie within one `interval` (ms), covering the same evaluation
    /// times as the whole.
    pub fn split(self, interval: i64) -> Vec<Range> {
        if interval <= 0 || self.start >= self.end {
            return vec![self];
        }
        let mut out = Vec::new();
        let mut start = self.start;
        while start < self.end {
            let mut end = next_boundary(start, self.step, interval);
            if end.saturating_add(self.step) >= self.end {
                end = self.end;
            }
            out.push(Range {
                start,
                end,
                step: self.step,
            });
            start = next_boundary(start, self.step, interval).saturating_add(self.step);
        }
        out
    }
}

/// The last evaluation time before the interval boundary after `t` (a whole number of steps
/// from `t`).
fn next_boundary(t: i64, step: i64, interval: i64) -> i64 {
    let next = (t.div_euclid(interval) + 1) * interval;
    let target = next - (next - t) % step;
    if target == next {
        target - step
    } else {
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn points(r: &Range) -> Vec<i64> {
        (0..)
            .map(|i| r.start + i * r.step)
            .take_while(|t| *t <= r.end)
            .collect()
    }

    #[test]
    fn split_covers_the_same_points() {
        for (start, end, step) in [
            (0, 7 * DAY, 60_000),
            (DAY / 3, 3 * DAY + 17, 3_600_000 + 7),
            (5, 5 + 10_000, 1000),
            (DAY - 30_000, DAY + 30_000, 15_000),
        ] {
            let whole = Range { start, end, step };
            let parts = whole.split(DAY);
            let mut got = Vec::new();
            for p in &parts {
                assert!(
                    p.start.div_euclid(DAY) == p.end.div_euclid(DAY) || p.end == end,
                    "{p:?}"
                );
                got.extend(points(p));
            }
            assert_eq!(got, points(&whole), "{whole:?}");
        }
    }

    #[test]
    fn alignment() {
        let r = Range {
            start: 1_000_123,
            end: 2_000_999,
            step: 60_000,
        }
        .aligned();
        assert_eq!((r.start, r.end), (960_000, 1_980_000));
    }
}
