//! The functions of native histograms (Prometheus 3.5's `promql/quantile.go`
//! `HistogramQuantile` and `HistogramFraction`, and `histogram_count`, `_sum`, `_avg`,
//! `_stddev`, `_stdvar` of `promql/functions.go`), on the elements of an instant vector that
//! hold a histogram.

use strata_types::histogram::{
    Bucket, CounterResetHint, FloatHistogram, HistogramSample, Incompatible,
};

use crate::annotations::Annotation;
use crate::gomath::{exp2, log2};
use crate::value::Element;

/// The simple histogram functions: the name's value of one histogram.
pub(crate) fn simple(name: &str, h: &FloatHistogram) -> Option<f64> {
    Some(match name {
        "histogram_count" => h.count,
        "histogram_sum" => h.sum,
        "histogram_avg" => h.sum / h.count,
        "histogram_stddev" => variance(h).sqrt(),
        "histogram_stdvar" => variance(h),
        _ => return None,
    })
}

/// Applies a simple histogram function to the histogram elements of `v` (float elements
/// are dropped, as Prometheus' `simpleHistogramFunc` does).
pub(crate) fn apply_simple(name: &str, v: Vec<Element>, ts: i64) -> Vec<Element> {
    v.into_iter()
        .filter_map(|e| {
            let value = simple(name, e.h.as_deref()?)?;
            Some(Element {
                labels: e.labels,
                t: ts,
                v: value,
                h: None,
                drop_name: true,
            })
        })
        .collect()
}

/// Go's `FloatHistogram.String()` (what `count_values` puts in its label):
/// `{count:N, sum:S, [-2,-1):3, [-0.001,0.001]:2, (1,2]:4}` — populated buckets, negative
/// ones from the lowest, bounds not clamped to the zero bucket.
pub(crate) fn go_string(h: &FloatHistogram) -> String {
    use crate::functions::go_g;
    use strata_types::histogram::bucket_bound;
    let bound = |i: i32| bucket_bound(i, h.schema, &h.custom_values).unwrap_or(f64::NAN);
    let custom = h.uses_custom_buckets();
    let bucket = |lower: f64, upper: f64, li: bool, ui: bool, count: f64| {
        format!(
            "{}{},{}{}:{}",
            if li { '[' } else { '(' },
            go_g(lower),
            go_g(upper),
            if ui { ']' } else { ')' },
            go_g(count)
        )
    };
    let mut out = format!("{{count:{}, sum:{}", go_g(h.count), go_g(h.sum));
    let negative: Vec<(i32, f64)> =
        strata_types::histogram::buckets_iter(&h.negative_spans, &h.negative_buckets).collect();
    for (idx, c) in negative.into_iter().rev() {
        if c == 0.0 {
            continue;
        }
        let (lower, upper) = (-bound(idx), -bound(idx.wrapping_sub(1)));
        let (li, ui) = if custom {
            (idx == 0, true)
        } else {
            (lower < 0.0, upper > 0.0)
        };
        out.push_str(", ");
        out.push_str(&bucket(lower, upper, li, ui, c));
    }
    if h.zero_count != 0.0 {
        out.push_str(", ");
        out.push_str(&bucket(
            -h.zero_threshold,
            h.zero_threshold,
            true,
            true,
            h.zero_count,
        ));
    }
    for (idx, c) in strata_types::histogram::buckets_iter(&h.positive_spans, &h.positive_buckets) {
        if c == 0.0 {
            continue;
        }
        let (lower, upper) = (bound(idx.wrapping_sub(1)), bound(idx));
        let (li, ui) = if custom {
            (idx == 0, true)
        } else {
            (lower < 0.0, upper > 0.0)
        };
        out.push_str(", ");
        out.push_str(&bucket(lower, upper, li, ui, c));
    }
    out.push('}');
    out
}

/// Kahan summation step (Prometheus' `kahanSumInc`).
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `histogramVariance`: each bucket's observations at its (geometric, for exponential
/// buckets) mean.
fn variance(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let (mut variance, mut c) = (0.0, 0.0);
    for b in h.all_buckets() {
        if b.count == 0.0 {
            continue;
        }
        let val = if h.uses_custom_buckets() {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let v = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 { -v } else { v }
        };
        let delta = val - mean;
        (variance, c) = kahan_inc(b.count * delta * delta, variance, c);
    }
    (variance + c) / h.count
}

/// What `HistogramQuantile` and `HistogramFraction` report about NaN observations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NanNote {
    /// The quantile is NaN because of them.
    QuantileNan,
    /// The quantile is skewed higher by them.
    QuantileSkew,
    /// The fraction leaves them out.
    FractionExcludes,
}

impl NanNote {
    /// The info annotation for `metric` at `pos`.
    pub(crate) fn annotation(self, metric: &str, pos: usize) -> Annotation {
        Annotation::histogram_nan(self, metric, pos)
    }
}

/// `HistogramQuantile`: the `q` quantile of a native histogram, interpolating
/// exponentially inside exponential buckets and linearly inside custom and zero buckets.
pub(crate) fn quantile(q: f64, h: &FloatHistogram) -> (f64, Option<NanNote>) {
    if q < 0.0 {
        return (f64::NEG_INFINITY, None);
    }
    if q > 1.0 {
        return (f64::INFINITY, None);
    }
    if h.count == 0.0 || q.is_nan() {
        return (f64::NAN, None);
    }
    let (v, note) = quantile_of(q, h);
    (v, note)
}

fn quantile_of(q: f64, h: &FloatHistogram) -> (f64, Option<NanNote>) {
    let forward = h.sum.is_nan() || q < 0.5;
    let buckets = if forward {
        h.all_buckets()
    } else {
        h.all_buckets_reverse()
    };
    let mut rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    let mut count = 0.0;
    let mut bucket: Option<Bucket> = None;
    let mut next = buckets.len();
    for (i, b) in buckets.iter().enumerate() {
        // As Go: the bucket is taken before an empty one is skipped.
        bucket = Some(*b);
        if b.count == 0.0 {
            continue;
        }
        count += b.count;
        if count >= rank {
            next = i + 1;
            break;
        }
    }
    // Go's zero `Bucket` when no bucket held anything.
    let mut bucket = bucket.unwrap_or(Bucket {
        lower: 0.0,
        upper: 0.0,
        lower_inclusive: false,
        upper_inclusive: false,
        count: 0.0,
    });
    if !h.uses_custom_buckets() && bucket.lower < 0.0 && bucket.upper > 0.0 {
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            bucket.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            bucket.upper = 0.0;
        }
    } else if h.uses_custom_buckets() {
        if bucket.lower == f64::NEG_INFINITY {
            if bucket.upper <= 0.0 {
                return (bucket.upper, None);
            }
            bucket.lower = 0.0;
        } else if bucket.upper == f64::INFINITY {
            return (bucket.lower, None);
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        if h.sum.is_nan() {
            return (f64::NAN, Some(NanNote::QuantileNan));
        }
        return (bucket.upper, None);
    }
    if forward {
        rank -= count - bucket.count;
    } else {
        rank = count - rank;
    }
    let mut note = None;
    if h.sum.is_nan() {
        // NaN observations count in `count` but in no bucket.
        let total = count
            + buckets
                .get(next..)
                .unwrap_or_default()
                .iter()
                .map(|b| b.count)
                .sum::<f64>();
        if total < h.count {
            note = Some(NanNote::QuantileSkew);
        }
    }
    let fraction = rank / bucket.count;
    if h.uses_custom_buckets() || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
        return (
            bucket.lower + (bucket.upper - bucket.lower) * fraction,
            note,
        );
    }
    let log_lower = log2(bucket.lower.abs());
    let log_upper = log2(bucket.upper.abs());
    if bucket.lower > 0.0 {
        return (exp2(log_lower + (log_upper - log_lower) * fraction), note);
    }
    (
        -exp2(log_upper + (log_lower - log_upper) * (1.0 - fraction)),
        note,
    )
}

/// `HistogramFraction`: the share of observations between `lower` and `upper`.
pub(crate) fn fraction(lower: f64, upper: f64, h: &FloatHistogram) -> (f64, Option<NanNote>) {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return (f64::NAN, None);
    }
    if lower >= upper {
        return (0.0, None);
    }
    let buckets = h.all_buckets();
    let (mut count, mut rank) = (0.0, 0.0);
    let (mut lower_rank, mut upper_rank) = (0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut consumed = buckets.len();
    for (i, b) in buckets.iter().enumerate() {
        let mut b = *b;
        count += b.count;
        let mut zero_bucket = false;
        if b.lower <= 0.0 && b.upper >= 0.0 {
            zero_bucket = true;
            if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
                b.lower = 0.0;
            } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
                b.upper = 0.0;
            }
        }
        let linear = |v: f64| rank + b.count * (v - b.lower) / (b.upper - b.lower);
        let exponential = |v: f64| {
            let log_lower = log2(b.lower.abs());
            let log_upper = log2(b.upper.abs());
            let log_v = log2(v.abs());
            let fraction = if v > 0.0 {
                (log_v - log_lower) / (log_upper - log_lower)
            } else {
                1.0 - ((log_v - log_upper) / (log_lower - log_upper))
            };
            rank + b.count * fraction
        };
        let interpolate = |v: f64| {
            if h.uses_custom_buckets() || zero_bucket {
                linear(v)
            } else {
                exponential(v)
            }
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            consumed = i + 1;
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            consumed = i + 1;
            break;
        }
        rank += b.count;
    }
    let mut note = None;
    if h.sum.is_nan() {
        count += buckets
            .get(consumed..)
            .unwrap_or_default()
            .iter()
            .map(|b| b.count)
            .sum::<f64>();
        if count < h.count {
            note = Some(NanNote::FractionExcludes);
        }
    } else {
        count = h.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    ((upper_rank - lower_rank) / h.count, note)
}

/// The annotation of two histograms that cannot be combined.
pub(crate) fn incompatible(e: Incompatible, metric: &str, pos: usize) -> Annotation {
    match e {
        Incompatible::Schema => Annotation::mixed_exponential_custom(metric, pos),
        Incompatible::Bounds => Annotation::incompatible_custom_buckets(metric, pos),
    }
}

/// `histogramRate`: the increase (`is_counter`, with counter resets) or the difference
/// over a window of histograms (at least two), compacted and marked a gauge; `None` with
/// the annotations that say why not. Annotations go to `annos` (replaced, as Prometheus
/// replaces them, where it gives up).
pub(crate) fn histogram_rate(
    points: &[HistogramSample],
    is_counter: bool,
    metric: &str,
    pos: usize,
    annos: &mut Vec<Annotation>,
) -> Option<FloatHistogram> {
    let (first, last) = (&points.first()?.h, &points.last()?.h);
    let empty;
    let mut prev: &FloatHistogram = first;
    let mut custom = prev.uses_custom_buckets();
    if is_counter
        && (prev.counter_reset_hint == CounterResetHint::Gauge
            || last.counter_reset_hint == CounterResetHint::Gauge)
    {
        annos.push(Annotation::native_histogram_not_counter(metric, pos));
    }
    // A reset between the first two: the first is not looked at.
    if is_counter
        && let Some(second) = points.get(1)
        && second.h.detect_reset(prev)
    {
        empty = FloatHistogram {
            schema: second.h.schema,
            custom_values: second.h.custom_values.clone(),
            ..FloatHistogram::default()
        };
        prev = &empty;
        custom = second.h.uses_custom_buckets();
    }
    if last.uses_custom_buckets() != custom {
        annos.push(Annotation::mixed_exponential_custom(metric, pos));
        return None;
    }
    let mut min_schema = prev.schema.min(last.schema);
    for p in points.get(1..points.len() - 1).unwrap_or_default() {
        if !is_counter {
            continue;
        }
        if p.h.counter_reset_hint == CounterResetHint::Gauge {
            annos.push(Annotation::native_histogram_not_counter(metric, pos));
        }
        min_schema = min_schema.min(p.h.schema);
        if p.h.uses_custom_buckets() != custom {
            *annos = vec![Annotation::mixed_exponential_custom(metric, pos)];
            return None;
        }
    }
    let mut h = last.copy_to_schema(min_schema);
    if let Err(e) = h.sub(prev) {
        *annos = vec![incompatible(e, metric, pos)];
        return None;
    }
    if is_counter {
        for p in points.get(1..).unwrap_or_default() {
            if p.h.detect_reset(prev)
                && let Err(e) = h.add(prev)
            {
                *annos = vec![incompatible(e, metric, pos)];
                return None;
            }
            prev = &p.h;
        }
    } else if first.counter_reset_hint != CounterResetHint::Gauge
        || last.counter_reset_hint != CounterResetHint::Gauge
    {
        annos.push(Annotation::native_histogram_not_gauge(metric, pos));
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact();
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_types::histogram::Span;

    /// Schema 0, buckets (0.5,1]:2, (1,2]:4, (2,4]:2, zero bucket 0.
    fn h() -> FloatHistogram {
        FloatHistogram {
            schema: 0,
            zero_threshold: 0.001,
            count: 8.0,
            sum: 14.0,
            positive_spans: vec![Span {
                offset: 0,
                length: 3,
            }],
            positive_buckets: vec![2.0, 4.0, 2.0],
            ..FloatHistogram::default()
        }
    }

    #[test]
    fn quantiles_interpolate_exponentially() {
        let h = h();
        // From the top: 2 observations in (2, 4], then half of the 4 in (1, 2], half-way
        // on a logarithmic scale.
        assert!((quantile(0.5, &h).0 - 2f64.sqrt()).abs() < 1e-15);
        // 0.25 (from the bottom): rank 2 ends the first bucket exactly.
        assert_eq!(quantile(0.25, &h).0, 1.0);
        assert!(quantile(-0.1, &h).0.is_infinite());
        assert!(quantile(0.5, &FloatHistogram::default()).0.is_nan());
    }

    #[test]
    fn fractions() {
        let h = h();
        assert_eq!(fraction(0.0, 1.0, &h).0, 0.25);
        assert_eq!(fraction(1.0, 4.0, &h).0, 0.75);
        assert_eq!(fraction(2.0, 1.0, &h).0, 0.0);
    }

    #[test]
    fn simple_functions() {
        let h = h();
        assert_eq!(simple("histogram_count", &h), Some(8.0));
        assert_eq!(simple("histogram_avg", &h), Some(1.75));
        assert!(simple("histogram_stdvar", &h).is_some_and(|v| v > 0.0));
        assert_eq!(simple("rate", &h), None);
    }
}
