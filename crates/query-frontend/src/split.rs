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
        let down = |t: i64| t.div_euclid(self.step).checked_mul(self.step).unwrap_or(t);
        Range {
            start: down(self.start),
            end: down(self.end),
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
            // Near the ends of the i64 range the rest is one piece.
            let boundary = next_boundary(start, self.step, interval).unwrap_or(self.end);
            let mut end = boundary;
            if end.saturating_add(self.step) >= self.end {
                end = self.end;
            }
            out.push(Range {
                start,
                end,
                step: self.step,
            });
            if end >= self.end {
                break;
            }
            start = boundary.saturating_add(self.step);
        }
        out
    }
}

/// The last evaluation time before the interval boundary after `t` (a whole number of steps
/// from `t`).
fn next_boundary(t: i64, step: i64, interval: i64) -> Option<i64> {
    let next = t
        .div_euclid(interval)
        .checked_add(1)?
        .checked_mul(interval)?;
    let target = next.checked_sub(next.checked_sub(t)? % step)?;
    if target == next {
        target.checked_sub(step)
    } else {
        Some(target)
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
