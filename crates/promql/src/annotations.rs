//! Annotations: the warnings and infos a query's answer carries, with Prometheus 3.5's
//! messages (`util/annotations`) and the position of the expression that caused them.
//!
//! As in Prometheus, an annotation is kept once per message (the first position wins here,
//! Prometheus' map keeps one of them), and the HTTP API shows at most ten of each kind,
//! with `N more … annotations omitted` after them.

use crate::functions::go_g;

/// Warning or info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationKind {
    /// `PromQL warning: …` (and storage warnings).
    Warning,
    /// `PromQL info: …`.
    Info,
}

/// One annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Warning or info.
    pub kind: AnnotationKind,
    /// Prometheus' message, without the position.
    pub message: String,
    /// Byte offset in the query of the expression it is about.
    pub pos: Option<usize>,
}

impl Annotation {
    fn warning(message: String, pos: usize) -> Self {
        Annotation {
            kind: AnnotationKind::Warning,
            message: format!("PromQL warning: {message}"),
            pos: Some(pos),
        }
    }

    fn info(message: String, pos: usize) -> Self {
        Annotation {
            kind: AnnotationKind::Info,
            message: format!("PromQL info: {message}"),
            pos: Some(pos),
        }
    }

    /// `NewInvalidQuantileWarning`.
    pub(crate) fn invalid_quantile(q: f64, pos: usize) -> Self {
        Self::warning(
            format!("quantile value should be between 0 and 1, got {}", go_g(q)),
            pos,
        )
    }

    /// `NewInvalidRatioWarning`.
    pub(crate) fn invalid_ratio(q: f64, to: f64, pos: usize) -> Self {
        Self::warning(
            format!(
                "ratio value should be between -1 and 1, got {}, capping to {}",
                go_g(q),
                go_g(to)
            ),
            pos,
        )
    }

    /// `NewBadBucketLabelWarning`.
    pub(crate) fn bad_bucket_label(metric: &str, label: &str, pos: usize) -> Self {
        Self::warning(
            format!(
                "bucket label \"le\" is missing or has a malformed value of {} for metric name {}",
                go_quote(label),
                go_quote(metric)
            ),
            pos,
        )
    }

    /// `NewPossibleNonCounterInfo`.
    pub(crate) fn possible_non_counter(metric: &str, pos: usize) -> Self {
        Self::info(
            format!(
                "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {}",
                go_quote(metric)
            ),
            pos,
        )
    }

    /// `NewHistogramQuantileForcedMonotonicityInfo`.
    pub(crate) fn forced_monotonicity(metric: &str, pos: usize) -> Self {
        Self::info(
            format!(
                "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {}",
                go_quote(metric)
            ),
            pos,
        )
    }

    /// `NewMixedFloatsHistogramsWarning`.
    pub(crate) fn mixed_floats_histograms(metric: &str, pos: usize) -> Self {
        Self::warning(
            format!(
                "encountered a mix of histograms and floats for metric name {}",
                go_quote(metric)
            ),
            pos,
        )
    }

    /// `NewMixedFloatsHistogramsAggWarning`.
    pub(crate) fn mixed_floats_histograms_aggregation(pos: usize) -> Self {
        Self::warning(
            "encountered a mix of histograms and floats for aggregation".to_owned(),
            pos,
        )
    }

    /// `NewNativeHistogramQuantileNaNResultInfo`, `…NaNSkewInfo`, `NewNativeHistogramFractionNaNsInfo`.
    pub(crate) fn histogram_nan(
        note: crate::histogram_functions::NanNote,
        metric: &str,
        pos: usize,
    ) -> Self {
        use crate::histogram_functions::NanNote;
        let text = match note {
            NanNote::QuantileNan => {
                "input to histogram_quantile has NaN observations, result is NaN for metric name"
            }
            NanNote::QuantileSkew => {
                "input to histogram_quantile has NaN observations, result is skewed higher for metric name"
            }
            NanNote::FractionExcludes => {
                "input to histogram_fraction has NaN observations, which are excluded from all fractions for metric name"
            }
        };
        Self::info(format!("{text} {}", go_quote(metric)), pos)
    }

    /// `NewIncompatibleTypesInBinOpInfo`.
    pub(crate) fn incompatible_types_in_binop(lhs: &str, op: &str, rhs: &str, pos: usize) -> Self {
        Self::info(
            format!(
                "incompatible sample types encountered for binary operator {}: {lhs} {op} {rhs}",
                go_quote(op)
            ),
            pos,
        )
    }

    /// `NewIncompatibleBucketLayoutInBinOpWarning`.
    pub(crate) fn incompatible_bucket_layout_in_binop(op: &str, pos: usize) -> Self {
        Self::warning(
            format!("incompatible bucket layout encountered for binary operator {op}"),
            pos,
        )
    }

    /// `NewHistogramIgnoredInAggregationInfo`.
    pub(crate) fn histogram_ignored_in_aggregation(aggregation: &str, pos: usize) -> Self {
        Self::info(
            format!("ignored histogram in {aggregation} aggregation"),
            pos,
        )
    }

    /// `NewHistogramIgnoredInMixedRangeInfo`.
    pub(crate) fn histogram_ignored_in_mixed_range(metric: &str, pos: usize) -> Self {
        Self::info(
            format!(
                "ignored histograms in a range containing both floats and histograms for metric name {}",
                go_quote(metric)
            ),
            pos,
        )
    }

    /// `NewMixedClassicNativeHistogramsWarning`.
    pub(crate) fn mixed_classic_native(metric: &str, pos: usize) -> Self {
        Self::warning(
            format!(
                "vector contains a mix of classic and native histograms for metric name {}",
                go_quote(metric)
            ),
            pos,
        )
    }

    /// `NewMixedExponentialCustomHistogramsWarning`.
    pub(crate) fn mixed_exponential_custom(metric: &str, pos: usize) -> Self {
        Self::warning(
            format!(
                "vector contains a mix of histograms with exponential and custom buckets schemas for metric name {}",
                go_quote(metric)
            ),
            pos,
        )
    }

    /// `NewIncompatibleCustomBucketsHistogramsWarning`.
    pub(crate) fn incompatible_custom_buckets(metric: &str, pos: usize) -> Self {
        Self::warning(
            format!(
                "vector contains histograms with incompatible custom buckets for metric name {}",
                go_quote(metric)
            ),
            pos,
        )
    }

    /// `NewNativeHistogramNotCounterWarning`.
    pub(crate) fn native_histogram_not_counter(metric: &str, pos: usize) -> Self {
        Self::warning(
            format!(
                "this native histogram metric is not a counter: {}",
                go_quote(metric)
            ),
            pos,
        )
    }

    /// `NewNativeHistogramNotGaugeWarning`.
    pub(crate) fn native_histogram_not_gauge(metric: &str, pos: usize) -> Self {
        Self::warning(
            format!(
                "this native histogram metric is not a gauge: {}",
                go_quote(metric)
            ),
            pos,
        )
    }

    /// The annotation as Prometheus' API prints it: the message, then the position of its
    /// expression in `query` (` (1:6)`).
    pub fn render(&self, query: &str) -> String {
        match self.pos {
            Some(pos) if !query.is_empty() => {
                let Some(head) = query.get(..pos) else {
                    return format!("{} (invalid position)", self.message);
                };
                let line = 1 + head.matches('\n').count();
                let col = pos - head.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("{} ({line}:{col})", self.message)
            }
            Some(_) => format!("{} (unknown position)", self.message),
            None => self.message.clone(),
        }
    }
}

/// The annotations of one query, once per message, in the order first seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    list: Vec<Annotation>,
}

impl Annotations {
    /// Adds an annotation unless its message is there already.
    pub fn add(&mut self, a: Annotation) {
        if !self.list.iter().any(|b| b.message == a.message) {
            self.list.push(a);
        }
    }

    /// A storage warning (failed endpoint under partial response), without position.
    pub fn add_warning_text(&mut self, message: String) {
        self.add(Annotation {
            kind: AnnotationKind::Warning,
            message,
            pos: None,
        });
    }

    /// Adds every annotation of `other`.
    pub fn merge(&mut self, other: Annotations) {
        for a in other.list {
            self.add(a);
        }
    }

    /// All annotations.
    pub fn iter(&self) -> impl Iterator<Item = &Annotation> {
        self.list.iter()
    }

    /// The messages of one kind (without positions).
    pub fn messages(&self, kind: AnnotationKind) -> Vec<String> {
        self.list
            .iter()
            .filter(|a| a.kind == kind)
            .map(|a| a.message.clone())
            .collect()
    }

    /// Prometheus' `AsStrings(query, max_warnings, max_infos)`: warnings and infos with
    /// positions, at most `max` of each (0: no limit), then how many were left out.
    pub fn as_strings(&self, query: &str, max: usize) -> (Vec<String>, Vec<String>) {
        let (mut warnings, mut infos) = (Vec::new(), Vec::new());
        let (mut warnings_skipped, mut infos_skipped) = (0usize, 0usize);
        for a in &self.list {
            let (list, skipped) = match a.kind {
                AnnotationKind::Warning => (&mut warnings, &mut warnings_skipped),
                AnnotationKind::Info => (&mut infos, &mut infos_skipped),
            };
            if max == 0 || list.len() < max {
                list.push(a.render(query));
            } else {
                *skipped += 1;
            }
        }
        if warnings_skipped > 0 {
            warnings.push(format!(
                "{warnings_skipped} more warning annotations omitted"
            ));
        }
        if infos_skipped > 0 {
            infos.push(format!("{infos_skipped} more info annotations omitted"));
        }
        (warnings, infos)
    }
}

fn go_quote(s: &str) -> String {
    crate::syntax::go_quote(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_as_prometheus_does() {
        let mut a = Annotations::default();
        a.add(Annotation::possible_non_counter("foo", 5));
        a.add(Annotation::possible_non_counter("foo", 9));
        a.add(Annotation::invalid_quantile(1.5, 9));
        let (w, i) = a.as_strings("rate(foo[5m])\n + quantile(1.5, x)", 10);
        assert_eq!(
            i,
            [
                "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"foo\" (1:6)"
            ]
        );
        assert_eq!(
            w,
            ["PromQL warning: quantile value should be between 0 and 1, got 1.5 (1:10)"]
        );
        let mut many = Annotations::default();
        for i in 0..12 {
            many.add(Annotation::invalid_quantile(f64::from(i) + 2.0, 0));
        }
        let (w, _) = many.as_strings("x", 10);
        assert_eq!(w.len(), 11);
        assert_eq!(w[10], "2 more warning annotations omitted");
    }
}
