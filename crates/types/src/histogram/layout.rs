//! Bucket layouts: which bucket indices a histogram holds, and a histogram widened to a
//! larger layout (the empty buckets added), as Prometheus' chunk appender does when it
//! re-encodes a chunk to hold buckets that appeared.

use super::arith::spans_of;
use super::buckets::indexed;
use super::{FloatHistogram, Histogram, Span};

/// The bucket indices of each sign, ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketIndices {
    /// Positive buckets.
    pub positive: Vec<i32>,
    /// Negative buckets.
    pub negative: Vec<i32>,
}

impl BucketIndices {
    /// The union of both (each list stays ascending).
    pub fn union(&self, other: &BucketIndices) -> BucketIndices {
        let merge = |a: &[i32], b: &[i32]| {
            let mut out: Vec<i32> = a.iter().chain(b).copied().collect();
            out.sort_unstable();
            out.dedup();
            out
        };
        BucketIndices {
            positive: merge(&self.positive, &other.positive),
            negative: merge(&self.negative, &other.negative),
        }
    }
}

/// Indices of a span layout.
fn indices(spans: &[Span]) -> Vec<i32> {
    let mut out = Vec::new();
    let mut idx: i32 = 0;
    for span in spans {
        idx = idx.wrapping_add(span.offset);
        for _ in 0..span.length {
            out.push(idx);
            idx = idx.wrapping_add(1);
        }
    }
    out
}

/// `counts` (by `from`'s indices) placed at `to`'s indices, zero where `from` has none;
/// `None` when `from` has an index `to` lacks.
fn widen(from: &[(i32, f64)], to: &[i32]) -> Option<Vec<f64>> {
    let mut out = Vec::with_capacity(to.len());
    let mut it = from.iter().peekable();
    for &idx in to {
        match it.peek() {
            Some(&&(i, c)) if i == idx => {
                out.push(c);
                it.next();
            }
            Some(&&(i, _)) if i < idx => return None,
            _ => out.push(0.0),
        }
    }
    it.next().is_none().then_some(out)
}

impl FloatHistogram {
    /// The bucket indices this histogram holds.
    pub fn bucket_indices(&self) -> BucketIndices {
        BucketIndices {
            positive: indices(&self.positive_spans),
            negative: indices(&self.negative_spans),
        }
    }

    /// This histogram in the layout `to` (a superset of its own); `None` if it is not one.
    pub fn widened(&self, to: &BucketIndices) -> Option<FloatHistogram> {
        let positive = widen(
            &indexed(&self.positive_spans, &self.positive_buckets),
            &to.positive,
        )?;
        let negative = widen(
            &indexed(&self.negative_spans, &self.negative_buckets),
            &to.negative,
        )?;
        let layout = |list: &[i32]| spans_of(&list.iter().map(|&i| (i, 0.0)).collect::<Vec<_>>()).0;
        Some(FloatHistogram {
            positive_spans: layout(&to.positive),
            negative_spans: layout(&to.negative),
            positive_buckets: positive,
            negative_buckets: negative,
            ..self.clone()
        })
    }
}

impl Histogram {
    /// The bucket indices this histogram holds.
    pub fn bucket_indices(&self) -> BucketIndices {
        BucketIndices {
            positive: indices(&self.positive_spans),
            negative: indices(&self.negative_spans),
        }
    }

    /// This histogram in the layout `to` (a superset of its own); `None` if it is not one.
    /// Bucket counts stay delta-encoded.
    pub fn widened(&self, to: &BucketIndices) -> Option<Histogram> {
        let widen_deltas = |spans: &[Span], deltas: &[i64], to: &[i32]| -> Option<Vec<i64>> {
            let mut absolute = 0i64;
            let from: Vec<(i32, i64)> = indices(spans)
                .into_iter()
                .zip(deltas)
                .map(|(i, d)| {
                    absolute = absolute.wrapping_add(*d);
                    (i, absolute)
                })
                .collect();
            let mut out = Vec::with_capacity(to.len());
            let mut it = from.iter().peekable();
            let mut prev = 0i64;
            for &idx in to {
                let count = match it.peek() {
                    Some(&&(i, c)) if i == idx => {
                        it.next();
                        c
                    }
                    Some(&&(i, _)) if i < idx => return None,
                    _ => 0,
                };
                out.push(count.wrapping_sub(prev));
                prev = count;
            }
            it.next().is_none().then_some(out)
        };
        let positive = widen_deltas(&self.positive_spans, &self.positive_buckets, &to.positive)?;
        let negative = widen_deltas(&self.negative_spans, &self.negative_buckets, &to.negative)?;
        let layout = |list: &[i32]| spans_of(&list.iter().map(|&i| (i, 0.0)).collect::<Vec<_>>()).0;
        Some(Histogram {
            positive_spans: layout(&to.positive),
            negative_spans: layout(&to.negative),
            positive_buckets: positive,
            negative_buckets: negative,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_keeps_counts_and_adds_empty_buckets() {
        let h = Histogram {
            count: 5,
            positive_spans: vec![
                Span {
                    offset: 1,
                    length: 1,
                },
                Span {
                    offset: 1,
                    length: 1,
                },
            ],
            positive_buckets: vec![2, 1], // absolute 2 at 1, 3 at 3
            ..Histogram::default()
        };
        let to = BucketIndices {
            positive: vec![0, 1, 2, 3],
            negative: vec![],
        };
        let w = h.widened(&to).unwrap_or_default();
        assert_eq!(w.positive_buckets, vec![0, 2, -2, 3]);
        assert_eq!(w.to_float().positive_buckets, vec![0.0, 2.0, 0.0, 3.0]);
        assert_eq!(
            h.to_float().widened(&to).map(|f| f.positive_buckets),
            Some(vec![0.0, 2.0, 0.0, 3.0])
        );
        // A layout missing one of the histogram's buckets is no widening.
        let narrow = BucketIndices {
            positive: vec![1],
            negative: vec![],
        };
        assert!(h.widened(&narrow).is_none());
        assert_eq!(h.bucket_indices().union(&narrow).positive, vec![1, 3]);
    }
}
