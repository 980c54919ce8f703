//! Buckets of a float histogram with their bounds, in the orders Prometheus 3.5 iterates
//! them (`model/histogram`: `getBound`, `AllBucketIterator`, `AllReverseBucketIterator`):
//! what the HTTP API shows and what `histogram_quantile` and `histogram_fraction` walk.

use super::bounds_table::EXPONENTIAL_BOUNDS;
use super::{FloatHistogram, Span, is_custom_buckets_schema};

/// One bucket: its bounds, which of them belong to it, and its count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Whether the lower bound is in the bucket.
    pub lower_inclusive: bool,
    /// Whether the upper bound is in the bucket.
    pub upper_inclusive: bool,
    /// Observations in the bucket.
    pub count: f64,
}

/// The upper bound of bucket `idx` (Prometheus' `getBound`); `None` for a custom-bucket
/// index outside the bounds, which a valid histogram never has.
pub fn bucket_bound(idx: i32, schema: i32, custom_values: &[f64]) -> Option<f64> {
    if is_custom_buckets_schema(schema) {
        let len = i32::try_from(custom_values.len()).unwrap_or(i32::MAX);
        return match idx {
            i if i == len => Some(f64::INFINITY),
            -1 => Some(f64::NEG_INFINITY),
            i if i < -1 || i > len => None,
            i => custom_values.get(usize::try_from(i).ok()?).copied(),
        };
    }
    Some(exponential_bound(idx, schema))
}

/// `getBoundExponential`: the upper bound of bucket `idx` of an exponential schema (the
/// last finite bucket ends at `f64::MAX`, not at the +Inf the formula gives).
fn exponential_bound(idx: i32, schema: i32) -> f64 {
    if schema < 0 {
        let exp = i64::from(idx) << (-schema).clamp(0, 62);
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    let schema = schema.min(8);
    let table = EXPONENTIAL_BOUNDS
        .get(usize::try_from(schema).unwrap_or(0))
        .copied()
        .unwrap_or(&[0.5]);
    let frac_idx = (idx & ((1 << schema) - 1)) as usize;
    let frac = table.get(frac_idx).copied().unwrap_or(0.5);
    let exp = i64::from(idx >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// `frac * 2^exp`, as Go's `math.Ldexp` (exact, through subnormals; ±Inf beyond the range).
fn ldexp(frac: f64, exp: i64) -> f64 {
    let mut x = frac;
    let mut e = exp.clamp(-2200, 2200);
    // Scale in steps that stay exact: 2^1000 and 2^-1000 are normal doubles.
    while e > 1000 {
        x *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        x *= 2f64.powi(-1000);
        e += 1000;
        if x == 0.0 {
            return x;
        }
    }
    // One multiplication by an exact power of two: a single rounding, as Go's.
    x * 2f64.powi(e as i32)
}

/// The buckets of one sign in index order: `(index, count)`.
pub(super) fn indexed(spans: &[Span], counts: &[f64]) -> Vec<(i32, f64)> {
    super::arith::buckets_iter(spans, counts).collect()
}

impl FloatHistogram {
    /// The bucket at `idx` of one sign, with bounds as Prometheus' iterators give them.
    fn bucket(&self, idx: i32, count: f64, positive: bool) -> Bucket {
        let bound = |i: i32| bucket_bound(i, self.schema, &self.custom_values).unwrap_or(f64::NAN);
        let (lower, upper) = if positive {
            (bound(idx.wrapping_sub(1)), bound(idx))
        } else {
            (-bound(idx), -bound(idx.wrapping_sub(1)))
        };
        let (lower_inclusive, upper_inclusive) = if is_custom_buckets_schema(self.schema) {
            (idx == 0, true)
        } else {
            (lower < 0.0, upper > 0.0)
        };
        Bucket {
            lower,
            upper,
            lower_inclusive,
            upper_inclusive,
            count,
        }
    }

    /// The zero bucket, `[-threshold, threshold]`.
    pub fn zero_bucket(&self) -> Bucket {
        Bucket {
            lower: -self.zero_threshold,
            upper: self.zero_threshold,
            lower_inclusive: true,
            upper_inclusive: true,
            count: self.zero_count,
        }
    }

    /// Moves bounds inside the zero bucket out to its threshold (as `allFloatBucketIterator`).
    fn clamp(&self, mut b: Bucket) -> Bucket {
        if b.lower > 0.0 && b.lower < self.zero_threshold {
            b.lower = self.zero_threshold;
        } else if b.upper < 0.0 && b.upper > -self.zero_threshold {
            b.upper = -self.zero_threshold;
        }
        b
    }

    /// Every bucket from the lowest to the highest: negative buckets, the zero bucket when
    /// it holds observations, positive buckets (`AllBucketIterator`).
    pub fn all_buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        for (idx, c) in indexed(&self.negative_spans, &self.negative_buckets)
            .into_iter()
            .rev()
        {
            out.push(self.clamp(self.bucket(idx, c, false)));
        }
        if self.zero_count > 0.0 {
            out.push(self.zero_bucket());
        }
        for (idx, c) in indexed(&self.positive_spans, &self.positive_buckets) {
            out.push(self.clamp(self.bucket(idx, c, true)));
        }
        out
    }

    /// Every bucket from the highest to the lowest (`AllReverseBucketIterator`).
    pub fn all_buckets_reverse(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        for (idx, c) in indexed(&self.positive_spans, &self.positive_buckets)
            .into_iter()
            .rev()
        {
            out.push(self.clamp(self.bucket(idx, c, true)));
        }
        if self.zero_count > 0.0 {
            out.push(self.zero_bucket());
        }
        for (idx, c) in indexed(&self.negative_spans, &self.negative_buckets) {
            out.push(self.clamp(self.bucket(idx, c, false)));
        }
        out
    }

    /// Whether this histogram uses custom bucket bounds.
    pub fn uses_custom_buckets(&self) -> bool {
        is_custom_buckets_schema(self.schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_bounds_match_prometheus() {
        // Schema 0: powers of two; bucket 1 is (1, 2].
        assert_eq!(bucket_bound(1, 0, &[]), Some(2.0));
        assert_eq!(bucket_bound(0, 0, &[]), Some(1.0));
        assert_eq!(bucket_bound(-1, 0, &[]), Some(0.5));
        // Schema 3: 2^(1/8) steps.
        assert_eq!(bucket_bound(1, 3, &[]), Some(1.0905077326652577));
        assert_eq!(bucket_bound(-3, 3, &[]), Some(0.7711054127039704));
        // Negative schemas: 2^(idx * 2^-schema).
        assert_eq!(bucket_bound(2, -2, &[]), Some(256.0));
        // The last finite bucket ends at the largest double.
        assert_eq!(bucket_bound(1024, 0, &[]), Some(f64::MAX));
        assert_eq!(bucket_bound(1025, 0, &[]), Some(f64::INFINITY));
        // Subnormal and tiny bounds are exact powers of two.
        assert_eq!(bucket_bound(-1074, 0, &[]), Some(f64::from_bits(1)));
    }

    #[test]
    fn custom_bounds() {
        let cv = [1.0, 5.0];
        assert_eq!(bucket_bound(-1, -53, &cv), Some(f64::NEG_INFINITY));
        assert_eq!(bucket_bound(1, -53, &cv), Some(5.0));
        assert_eq!(bucket_bound(2, -53, &cv), Some(f64::INFINITY));
        assert_eq!(bucket_bound(3, -53, &cv), None);
    }

    #[test]
    fn buckets_in_both_orders_with_the_zero_bucket() {
        let h = FloatHistogram {
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 2.0,
            count: 10.0,
            positive_spans: vec![Span {
                offset: 0,
                length: 2,
            }],
            positive_buckets: vec![3.0, 1.0],
            negative_spans: vec![Span {
                offset: 1,
                length: 1,
            }],
            negative_buckets: vec![4.0],
            ..FloatHistogram::default()
        };
        let all: Vec<(f64, f64, f64)> = h
            .all_buckets()
            .iter()
            .map(|b| (b.lower, b.upper, b.count))
            .collect();
        assert_eq!(
            all,
            vec![
                (-2.0, -1.0, 4.0),
                (-0.001, 0.001, 2.0),
                (0.5, 1.0, 3.0),
                (1.0, 2.0, 1.0)
            ]
        );
        let rev: Vec<f64> = h.all_buckets_reverse().iter().map(|b| b.count).collect();
        assert_eq!(rev, vec![1.0, 3.0, 2.0, 4.0]);
        let first = h.all_buckets()[0];
        assert!(first.lower_inclusive && !first.upper_inclusive);
    }
}
