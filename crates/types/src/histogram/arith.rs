//! Arithmetic of float histograms as Prometheus 3.5 does it (`model/histogram`:
//! `FloatHistogram.Add`, `Sub`, `Mul`, `CopyToSchema`, `Compact(0)`, `DetectReset`, the zero
//! bucket reconciliation): the same buckets get the same counts, each computed by the same
//! floating-point operations in the same order.
//!
//! The buckets of one sign are handled as a list of `(index, count)` in index order; the
//! spans of a result are rebuilt from it. Where Prometheus compacts, the layout is the
//! same; where it does not, the same buckets hold the same counts and only span
//! boundaries may differ, which no query answer shows.

use super::buckets::indexed;
use super::{CounterResetHint, FloatHistogram, Span, bucket_bound, is_custom_buckets_schema};

/// Why two histograms cannot be added or subtracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incompatible {
    /// One uses custom buckets, the other exponential ones.
    Schema,
    /// Both use custom buckets, with different bounds.
    Bounds,
}

type Buckets = Vec<(i32, f64)>;

/// Spans and counts of buckets given in index order.
pub(super) fn spans_of(buckets: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut counts = Vec::with_capacity(buckets.len());
    let mut next: Option<i32> = None;
    for &(idx, c) in buckets {
        match (next, spans.last_mut()) {
            (Some(n), Some(last)) if n == idx => last.length += 1,
            (Some(n), _) => spans.push(Span {
                offset: idx.wrapping_sub(n),
                length: 1,
            }),
            (None, _) => spans.push(Span {
                offset: idx,
                length: 1,
            }),
        }
        counts.push(c);
        next = Some(idx.wrapping_add(1));
    }
    (spans, counts)
}

/// `targetIdx`: the bucket of `target` (≤ `origin`) schema that bucket `idx` falls into.
fn target_idx(idx: i32, origin: i32, target: i32) -> i32 {
    let shift = (origin - target).clamp(0, 31);
    (idx.wrapping_sub(1) >> shift).wrapping_add(1)
}

/// `reduceResolution` of absolute counts: buckets merged into the lower schema, counts
/// added in index order.
fn reduce(buckets: &[(i32, f64)], origin: i32, target: i32) -> Buckets {
    if origin == target {
        return buckets.to_vec();
    }
    let mut out: Buckets = Vec::with_capacity(buckets.len());
    for &(idx, c) in buckets {
        let t = target_idx(idx, origin, target);
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 += c,
            _ => out.push((t, c)),
        }
    }
    out
}

/// `addBuckets`: `b`'s buckets added to (or, `negative`, subtracted from) `a`'s, missing
/// ones created; `b`'s buckets whose upper bound lies within the zero bucket (`threshold`)
/// are left out (their counts are in the zero count already).
fn add_buckets(
    a: &[(i32, f64)],
    b: &[(i32, f64)],
    schema: i32,
    threshold: f64,
    negative: bool,
) -> Buckets {
    let mut out: Buckets = Vec::with_capacity(a.len() + b.len());
    let mut ai = 0usize;
    let mut lower_than_threshold = true;
    for &(idx, count) in b {
        if lower_than_threshold
            && !is_custom_buckets_schema(schema)
            && bucket_bound(idx, schema, &[]).is_some_and(|bound| bound <= threshold)
        {
            continue;
        }
        lower_than_threshold = false;
        let count = if negative { -count } else { count };
        while let Some(&(a_idx, a_count)) = a.get(ai)
            && a_idx < idx
        {
            out.push((a_idx, a_count));
            ai += 1;
        }
        match a.get(ai) {
            Some(&(a_idx, a_count)) if a_idx == idx => {
                out.push((idx, a_count + count));
                ai += 1;
            }
            _ => out.push((idx, count)),
        }
    }
    out.extend(a.get(ai..).unwrap_or_default().iter().copied());
    out
}

impl FloatHistogram {
    fn positive(&self) -> Buckets {
        indexed(&self.positive_spans, &self.positive_buckets)
    }

    fn negative(&self) -> Buckets {
        indexed(&self.negative_spans, &self.negative_buckets)
    }

    fn set_positive(&mut self, buckets: &[(i32, f64)]) {
        (self.positive_spans, self.positive_buckets) = spans_of(buckets);
    }

    fn set_negative(&mut self, buckets: &[(i32, f64)]) {
        (self.negative_spans, self.negative_buckets) = spans_of(buckets);
    }

    /// `Mul`: every count and the sum times `factor`.
    pub fn mul(&mut self, factor: f64) {
        self.zero_count *= factor;
        self.count *= factor;
        self.sum *= factor;
        for c in self
            .positive_buckets
            .iter_mut()
            .chain(self.negative_buckets.iter_mut())
        {
            *c *= factor;
        }
    }

    /// `Equals`: the same schema, counts, sum, zero bucket, bounds and buckets, floats
    /// compared bit for bit (span boundaries aside: the same buckets at the same indices).
    pub fn equals(&self, other: &FloatHistogram) -> bool {
        let bits = |a: f64, b: f64| a.to_bits() == b.to_bits();
        let same_buckets = |a: Buckets, b: Buckets| {
            a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.0 == y.0 && bits(x.1, y.1))
        };
        self.schema == other.schema
            && bits(self.count, other.count)
            && bits(self.sum, other.sum)
            && (!self.uses_custom_buckets()
                || (self.custom_values.len() == other.custom_values.len()
                    && self
                        .custom_values
                        .iter()
                        .zip(&other.custom_values)
                        .all(|(a, b)| bits(*a, *b))))
            && self.zero_threshold == other.zero_threshold
            && bits(self.zero_count, other.zero_count)
            && same_buckets(self.negative(), other.negative())
            && same_buckets(self.positive(), other.positive())
    }

    /// `Div`: every count and the sum divided by `scalar`; dividing by zero removes the
    /// buckets.
    pub fn div(&mut self, scalar: f64) {
        self.zero_count /= scalar;
        self.count /= scalar;
        self.sum /= scalar;
        if scalar == 0.0 {
            self.positive_buckets.clear();
            self.negative_buckets.clear();
            self.positive_spans.clear();
            self.negative_spans.clear();
            return;
        }
        for c in self
            .positive_buckets
            .iter_mut()
            .chain(self.negative_buckets.iter_mut())
        {
            *c /= scalar;
        }
    }

    /// `CopyToSchema`: a copy at the lower (or same) exponential schema `target`.
    pub fn copy_to_schema(&self, target: i32) -> FloatHistogram {
        if target == self.schema || self.uses_custom_buckets() || target > self.schema {
            return self.clone();
        }
        let mut c = FloatHistogram {
            counter_reset_hint: CounterResetHint::Unknown,
            schema: target,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count,
            count: self.count,
            sum: self.sum,
            ..FloatHistogram::default()
        };
        c.set_positive(&reduce(&self.positive(), self.schema, target));
        c.set_negative(&reduce(&self.negative(), self.schema, target));
        c
    }

    /// `Compact(0)`: buckets without observations removed.
    pub fn compact(&mut self) {
        if !self
            .positive_buckets
            .iter()
            .chain(&self.negative_buckets)
            .any(|c| *c == 0.0)
        {
            // Nothing to remove (span boundaries, which no answer shows, are left as they are).
            return;
        }
        let keep =
            |b: &Buckets| -> Buckets { b.iter().copied().filter(|&(_, c)| c != 0.0).collect() };
        let positive = keep(&self.positive());
        let negative = keep(&self.negative());
        self.set_positive(&positive);
        self.set_negative(&negative);
    }

    /// `zeroCountForLargerThreshold`: the zero count with the threshold raised to `larger`
    /// (moved further up to the end of a populated bucket it would cut), and that
    /// threshold.
    fn zero_count_for_larger_threshold(&self, larger: f64) -> (f64, f64) {
        if larger == self.zero_threshold {
            return (self.zero_count, larger);
        }
        let bound = |i: i32| bucket_bound(i, self.schema, &self.custom_values).unwrap_or(f64::NAN);
        let positive = self.positive();
        let negative = self.negative();
        let mut larger = larger;
        'outer: loop {
            let mut count = self.zero_count;
            for &(idx, c) in &positive {
                let (lower, upper) = (bound(idx.wrapping_sub(1)), bound(idx));
                if lower >= larger {
                    break;
                }
                count += c;
                if upper > larger {
                    if c != 0.0 {
                        larger = upper;
                    }
                    break;
                }
            }
            for &(idx, c) in &negative {
                let (lower, upper) = (-bound(idx), -bound(idx.wrapping_sub(1)));
                if upper <= -larger {
                    break;
                }
                count += c;
                if lower < -larger {
                    if c != 0.0 {
                        larger = -lower;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (count, larger);
        }
    }

    /// `trimBucketsInZeroBucket`: the buckets inside the zero bucket emptied, then
    /// `Compact(0)`.
    fn trim_buckets_in_zero_bucket(&mut self) {
        let bound = |i: i32| bucket_bound(i, self.schema, &self.custom_values).unwrap_or(f64::NAN);
        let zt = self.zero_threshold;
        let mut positive = self.positive();
        for (idx, c) in positive.iter_mut() {
            if bound(idx.wrapping_sub(1)) >= zt {
                break;
            }
            *c = 0.0;
        }
        let mut negative = self.negative();
        for (idx, c) in negative.iter_mut() {
            if -bound(idx.wrapping_sub(1)) <= -zt {
                break;
            }
            *c = 0.0;
        }
        self.set_positive(&positive);
        self.set_negative(&negative);
        self.compact();
    }

    /// `reconcileZeroBuckets`: this histogram's zero bucket widened to hold both zero
    /// buckets; the zero count `other` would have with it.
    fn reconcile_zero_buckets(&mut self, other: &FloatHistogram) -> f64 {
        let mut other_count = other.zero_count;
        let mut other_threshold = other.zero_threshold;
        // Each round raises a threshold to a bucket bound: bounded by the buckets.
        let mut rounds = 0usize;
        while other_threshold != self.zero_threshold && rounds < 1 << 20 {
            rounds += 1;
            if self.zero_threshold > other_threshold {
                (other_count, other_threshold) =
                    other.zero_count_for_larger_threshold(self.zero_threshold);
            }
            if other_threshold > self.zero_threshold {
                (self.zero_count, self.zero_threshold) =
                    self.zero_count_for_larger_threshold(other_threshold);
                self.trim_buckets_in_zero_bucket();
            }
        }
        other_count
    }

    fn check_compatible(&self, other: &FloatHistogram) -> Result<(), Incompatible> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(Incompatible::Schema);
        }
        if self.uses_custom_buckets()
            && (self.custom_values.len() != other.custom_values.len()
                || self
                    .custom_values
                    .iter()
                    .zip(&other.custom_values)
                    .any(|(a, b)| a.to_bits() != b.to_bits()))
        {
            return Err(Incompatible::Bounds);
        }
        Ok(())
    }

    /// `Add` (`negative`: `Sub`): counts, sum and buckets of `other` added to this one, the
    /// zero buckets reconciled and the finer schema reduced to the coarser.
    fn combine(&mut self, other: &FloatHistogram, negative: bool) -> Result<(), Incompatible> {
        self.check_compatible(other)?;
        if self.same_layout_above_zero_bucket(other) {
            // The common case (the histograms of one chunk, of one scrape config): bucket
            // by bucket in place, the same operations `addBuckets` does.
            let op = |a: &mut f64, b: f64| {
                if negative {
                    *a += -b;
                } else {
                    *a += b;
                }
            };
            if !self.uses_custom_buckets() {
                if negative {
                    self.zero_count -= other.zero_count;
                } else {
                    self.zero_count += other.zero_count;
                }
            }
            if negative {
                self.count -= other.count;
                self.sum -= other.sum;
            } else {
                self.count += other.count;
                self.sum += other.sum;
            }
            for (a, b) in self
                .positive_buckets
                .iter_mut()
                .zip(&other.positive_buckets)
            {
                op(a, *b);
            }
            for (a, b) in self
                .negative_buckets
                .iter_mut()
                .zip(&other.negative_buckets)
            {
                op(a, *b);
            }
            return Ok(());
        }
        if !self.uses_custom_buckets() {
            let other_zero = self.reconcile_zero_buckets(other);
            if negative {
                self.zero_count -= other_zero;
            } else {
                self.zero_count += other_zero;
            }
        }
        if negative {
            self.count -= other.count;
            self.sum -= other.sum;
        } else {
            self.count += other.count;
            self.sum += other.sum;
        }
        let (mut positive, mut negative_side) = (self.positive(), self.negative());
        let (mut other_positive, mut other_negative) = (other.positive(), other.negative());
        if self.uses_custom_buckets() {
            let sum = add_buckets(
                &positive,
                &other_positive,
                self.schema,
                self.zero_threshold,
                negative,
            );
            self.set_positive(&sum);
            return Ok(());
        }
        if other.schema < self.schema {
            positive = reduce(&positive, self.schema, other.schema);
            negative_side = reduce(&negative_side, self.schema, other.schema);
            self.schema = other.schema;
        } else if other.schema > self.schema {
            other_positive = reduce(&other_positive, other.schema, self.schema);
            other_negative = reduce(&other_negative, other.schema, self.schema);
        }
        let p = add_buckets(
            &positive,
            &other_positive,
            self.schema,
            self.zero_threshold,
            negative,
        );
        let n = add_buckets(
            &negative_side,
            &other_negative,
            self.schema,
            self.zero_threshold,
            negative,
        );
        self.set_positive(&p);
        self.set_negative(&n);
        Ok(())
    }

    /// Whether `other` has this histogram's schema, zero threshold and bucket layout, with
    /// no bucket inside the zero bucket (where `addBuckets` would skip it).
    fn same_layout_above_zero_bucket(&self, other: &FloatHistogram) -> bool {
        let first_above = |spans: &[Span]| {
            self.uses_custom_buckets()
                || spans.first().is_none_or(|s| {
                    bucket_bound(s.offset, self.schema, &[])
                        .is_some_and(|bound| bound > self.zero_threshold)
                })
        };
        self.schema == other.schema
            && self.zero_threshold.to_bits() == other.zero_threshold.to_bits()
            && self.positive_spans == other.positive_spans
            && self.negative_spans == other.negative_spans
            && self.positive_buckets.len() == other.positive_buckets.len()
            && self.negative_buckets.len() == other.negative_buckets.len()
            && first_above(&self.positive_spans)
            && first_above(&self.negative_spans)
    }

    /// `Add`, with Prometheus' counter reset hint of the sum.
    pub fn add(&mut self, other: &FloatHistogram) -> Result<(), Incompatible> {
        use CounterResetHint::{Gauge, Unknown};
        let hint = match (self.counter_reset_hint, other.counter_reset_hint) {
            (a, b) if a == b => a,
            (Gauge, _) | (_, Gauge) => Gauge,
            _ => Unknown,
        };
        self.combine(other, false)?;
        self.counter_reset_hint = hint;
        Ok(())
    }

    /// `Sub`.
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<(), Incompatible> {
        self.combine(other, true)
    }

    /// `DetectReset`: whether this histogram, following `previous`, starts after a counter
    /// reset (a count went down, a populated bucket went away, the resolution went up or
    /// the zero bucket shrank).
    pub fn detect_reset(&self, previous: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::CounterReset => return true,
            CounterResetHint::NotCounterReset => return false,
            _ => {}
        }
        if self.count < previous.count {
            return true;
        }
        if self.check_compatible(previous).is_err() {
            return true;
        }
        if self.schema > previous.schema {
            return true;
        }
        if self.zero_threshold < previous.zero_threshold {
            return true;
        }
        let (previous_zero, threshold) =
            previous.zero_count_for_larger_threshold(self.zero_threshold);
        if threshold != self.zero_threshold {
            return true;
        }
        if self.zero_count < previous_zero {
            return true;
        }
        let start = self.zero_threshold;
        let custom = self.uses_custom_buckets();
        if previous.schema == self.schema {
            // No merging needed: walk both layouts without copying them.
            let above = |(idx, _): &(i32, f64)| {
                custom || bucket_bound(*idx, self.schema, &[]).is_none_or(|bound| bound > start)
            };
            return reset_in_iter(
                buckets_iter(&self.positive_spans, &self.positive_buckets)
                    .skip_while(|b| !above(b)),
                buckets_iter(&previous.positive_spans, &previous.positive_buckets)
                    .skip_while(|b| !above(b)),
            ) || reset_in_iter(
                buckets_iter(&self.negative_spans, &self.negative_buckets)
                    .skip_while(|b| !above(b)),
                buckets_iter(&previous.negative_spans, &previous.negative_buckets)
                    .skip_while(|b| !above(b)),
            );
        }
        let merged = |b: Buckets, schema: i32| -> Buckets {
            let mut b = reduce(&b, schema, self.schema);
            if !custom {
                // Buckets up to the zero threshold are skipped (they are in the zero count).
                let skip = b
                    .iter()
                    .take_while(|&&(idx, _)| {
                        bucket_bound(idx, self.schema, &[]).is_some_and(|bound| bound <= start)
                    })
                    .count();
                b.drain(..skip);
            }
            b
        };
        let (curr_p, prev_p) = (
            merged(self.positive(), self.schema),
            merged(previous.positive(), previous.schema),
        );
        if reset_in(&curr_p, &prev_p) {
            return true;
        }
        let (curr_n, prev_n) = (
            merged(self.negative(), self.schema),
            merged(previous.negative(), previous.schema),
        );
        reset_in(&curr_n, &prev_n)
    }
}

/// The buckets of one sign as `(index, count)`, in index order, without copying.
pub fn buckets_iter<'a>(
    spans: &'a [Span],
    counts: &'a [f64],
) -> impl Iterator<Item = (i32, f64)> + 'a {
    let mut idx: i32 = 0;
    spans
        .iter()
        .flat_map(move |span| {
            idx = idx.wrapping_add(span.offset);
            let first = idx;
            idx = idx.wrapping_add(span.length as i32);
            (0..span.length as i32).map(move |j| first.wrapping_add(j))
        })
        .zip(counts.iter().copied())
}

/// [`reset_in`] over iterators.
fn reset_in_iter(
    curr: impl Iterator<Item = (i32, f64)>,
    prev: impl Iterator<Item = (i32, f64)>,
) -> bool {
    let mut curr = curr.peekable();
    for (p_idx, p_count) in prev {
        while curr.peek().is_some_and(|&(c_idx, _)| c_idx < p_idx) {
            curr.next();
        }
        match curr.peek() {
            Some(&(c_idx, c_count)) if c_idx == p_idx => {
                if c_count < p_count {
                    return true;
                }
            }
            _ => {
                if p_count != 0.0 {
                    return true;
                }
            }
        }
    }
    false
}

/// `detectReset` of two bucket lists of one schema.
fn reset_in(curr: &[(i32, f64)], prev: &[(i32, f64)]) -> bool {
    let mut ci = 0usize;
    for &(p_idx, p_count) in prev {
        while curr.get(ci).is_some_and(|&(c_idx, _)| c_idx < p_idx) {
            ci += 1;
        }
        match curr.get(ci) {
            Some(&(c_idx, c_count)) if c_idx == p_idx => {
                if c_count < p_count {
                    return true;
                }
            }
            _ => {
                if p_count != 0.0 {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(schema: i32, positive: &[(i32, f64)]) -> FloatHistogram {
        let mut h = FloatHistogram {
            schema,
            zero_threshold: 0.001,
            count: positive.iter().map(|b| b.1).sum(),
            sum: 1.0,
            ..FloatHistogram::default()
        };
        h.set_positive(positive);
        h
    }

    #[test]
    fn spans_round_trip() {
        let b = vec![(-3, 1.0), (-2, 2.0), (4, 3.0), (5, 0.0), (9, 1.0)];
        let (spans, counts) = spans_of(&b);
        assert_eq!(
            spans,
            vec![
                Span {
                    offset: -3,
                    length: 2
                },
                Span {
                    offset: 5,
                    length: 2
                },
                Span {
                    offset: 3,
                    length: 1
                }
            ]
        );
        assert_eq!(indexed(&spans, &counts), b);
    }

    #[test]
    fn add_reduces_to_the_coarser_schema() {
        // Schema 1 buckets 1, 2 (bounds √2, 2) fall into schema 0 bucket 1 (bound 2).
        let mut a = h(0, &[(1, 1.0)]);
        let b = h(1, &[(1, 2.0), (2, 3.0), (5, 4.0)]);
        a.add(&b).unwrap_or_default();
        assert_eq!(a.schema, 0);
        assert_eq!(a.positive(), vec![(1, 6.0), (3, 4.0)]);
        assert_eq!(a.count, 10.0);
    }

    #[test]
    fn sub_and_compact() {
        let mut a = h(0, &[(1, 5.0), (2, 3.0)]);
        a.sub(&h(0, &[(1, 5.0), (3, 1.0)])).unwrap_or_default();
        assert_eq!(a.positive(), vec![(1, 0.0), (2, 3.0), (3, -1.0)]);
        a.compact();
        assert_eq!(a.positive(), vec![(2, 3.0), (3, -1.0)]);
    }

    #[test]
    fn resets() {
        let prev = h(0, &[(1, 5.0), (2, 3.0)]);
        assert!(!h(0, &[(1, 5.0), (2, 4.0)]).detect_reset(&prev));
        assert!(h(0, &[(1, 4.0), (2, 5.0)]).detect_reset(&prev));
        // A populated bucket went away.
        assert!(h(0, &[(1, 9.0)]).detect_reset(&prev));
        // Higher resolution only comes with a reset.
        assert!(h(1, &[(1, 5.0), (2, 3.0), (3, 1.0)]).detect_reset(&prev));
        // Lower resolution: previous buckets merged first.
        let fine = h(1, &[(1, 1.0), (2, 1.0)]);
        assert!(!h(0, &[(1, 2.0)]).detect_reset(&fine));
    }

    #[test]
    fn custom_buckets_do_not_mix() {
        let mut a = h(-53, &[(0, 1.0)]);
        a.custom_values = vec![1.0];
        let mut b = a.clone();
        assert_eq!(a.add(&h(0, &[(1, 1.0)])), Err(Incompatible::Schema));
        b.custom_values = vec![2.0];
        assert_eq!(a.add(&b), Err(Incompatible::Bounds));
    }
}
