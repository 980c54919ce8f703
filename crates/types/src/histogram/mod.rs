//! Native histograms as Prometheus models them (`model/histogram`): an integer histogram
//! (what scrapes produce; bucket counts stored as deltas) and a float histogram (what
//! rules and PromQL produce; absolute counts), both with sparse buckets laid out by spans.

mod arith;
mod bounds_table;
mod buckets;
mod layout;

pub use arith::{Incompatible, buckets_iter};
pub use buckets::{Bucket, bucket_bound};
pub use layout::BucketIndices;

/// A run of consecutive buckets: `offset` empty buckets after the previous span (or from
/// index 0 for the first), then `length` buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Gap to the previous span's end (the first span: its starting bucket index).
    pub offset: i32,
    /// Buckets in the span.
    pub length: u32,
}

/// What is known about a counter reset before a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    /// Not known: to be detected by comparing with the previous histogram.
    #[default]
    Unknown,
    /// A counter reset happened.
    CounterReset,
    /// No counter reset happened.
    NotCounterReset,
    /// A gauge histogram: counter resets do not apply.
    Gauge,
}

/// The schema of custom-bucket histograms (NHCB): bucket bounds in `custom_values`.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Whether `schema` is the custom-buckets schema.
pub fn is_custom_buckets_schema(schema: i32) -> bool {
    schema == CUSTOM_BUCKETS_SCHEMA
}

/// An integer histogram: counts are whole numbers, bucket counts are stored as deltas to
/// the previous bucket (the first as its count), across all spans of one sign.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Counter reset knowledge.
    pub counter_reset_hint: CounterResetHint,
    /// Resolution: bucket boundaries are powers of `2^(2^-schema)`; -53 is custom buckets.
    pub schema: i32,
    /// Observations with an absolute value up to this land in the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// All observations.
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
    /// Layout of the positive buckets.
    pub positive_spans: Vec<Span>,
    /// Layout of the negative buckets.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts, delta-encoded.
    pub positive_buckets: Vec<i64>,
    /// Negative bucket counts, delta-encoded.
    pub negative_buckets: Vec<i64>,
    /// Upper bounds of the custom buckets (schema -53 only).
    pub custom_values: Vec<f64>,
}

/// A float histogram: counts are floats, bucket counts absolute.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    /// Counter reset knowledge.
    pub counter_reset_hint: CounterResetHint,
    /// Resolution, as [`Histogram::schema`].
    pub schema: i32,
    /// As [`Histogram::zero_threshold`].
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// All observations.
    pub count: f64,
    /// Sum of the observations.
    pub sum: f64,
    /// Layout of the positive buckets.
    pub positive_spans: Vec<Span>,
    /// Layout of the negative buckets.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts.
    pub positive_buckets: Vec<f64>,
    /// Negative bucket counts.
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (schema -53 only).
    pub custom_values: Vec<f64>,
}

impl Histogram {
    /// The same histogram with float counts (Prometheus' `ToFloat`).
    pub fn to_float(&self) -> FloatHistogram {
        let absolute = |deltas: &[i64]| {
            let mut current = 0i64;
            deltas
                .iter()
                .map(|d| {
                    current = current.wrapping_add(*d);
                    current as f64
                })
                .collect()
        };
        FloatHistogram {
            counter_reset_hint: self.counter_reset_hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count as f64,
            count: self.count as f64,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: absolute(&self.positive_buckets),
            negative_buckets: absolute(&self.negative_buckets),
            custom_values: self.custom_values.clone(),
        }
    }
}

/// A float histogram at a time: what a query reads of a histogram series (integer
/// histograms are read as float histograms, as Prometheus' engine does).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The histogram, shared between the steps that see it.
    pub h: std::sync::Arc<FloatHistogram>,
}

impl HistogramSample {
    /// Whether this is a staleness marker (a histogram whose sum is the stale NaN).
    pub fn is_stale(&self) -> bool {
        crate::is_stale_nan(self.h.sum)
    }
}

/// Buckets a span layout holds.
pub fn bucket_count(spans: &[Span]) -> usize {
    spans.iter().map(|s| s.length as usize).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_become_absolute_counts() {
        let h = Histogram {
            count: 9,
            positive_spans: vec![Span {
                offset: 0,
                length: 3,
            }],
            positive_buckets: vec![2, 1, -3],
            ..Histogram::default()
        };
        let f = h.to_float();
        assert_eq!(f.positive_buckets, vec![2.0, 3.0, 0.0]);
        assert_eq!(f.count, 9.0);
        assert_eq!(bucket_count(&h.positive_spans), 3);
    }
}
