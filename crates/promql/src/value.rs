use strata_types::histogram::{FloatHistogram, HistogramSample};
use strata_types::{Labels, Sample};

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// Labels.
    pub labels: Labels,
    /// Timestamp: the sample's own time for elements straight from a selector (what
    /// `timestamp()` reports), the evaluation time otherwise.
    pub t: i64,
    /// Value (0 when the element is a histogram).
    pub v: f64,
    /// The native histogram, when the element is one (then `v` means nothing).
    pub h: Option<std::sync::Arc<FloatHistogram>>,
    /// Delayed `__name__` removal: drop the metric name when the result is finalised.
    pub drop_name: bool,
}

/// One series of a range vector or of a range query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// Labels.
    pub labels: Labels,
    /// Float points in time order.
    pub samples: Vec<Sample>,
    /// Histogram points in time order.
    pub histograms: Vec<HistogramSample>,
    /// Delayed `__name__` removal.
    pub drop_name: bool,
}

/// A PromQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar at a time.
    Scalar {
        /// Evaluation time (ms).
        t: i64,
        /// Value.
        v: f64,
    },
    /// A string at a time.
    String {
        /// Evaluation time (ms).
        t: i64,
        /// Value.
        s: String,
    },
    /// An instant vector.
    Vector(Vec<Element>),
    /// A range vector (instant query of a range selector) or a range query's result.
    Matrix(Vec<RangeSeries>),
}

/// Formats a float as Prometheus' API does for sample values (Go's `strconv.FormatFloat(v,
/// 'f', -1, 64)` but exponent form below 1e-6 and from 1e21) ... used for `count_values` in
/// the plain `'f'` form via [`format_float_f`].
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        };
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let sci = format!("{v:e}");
        let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    format!("{v}")
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: shortest digits, never an exponent.
pub(crate) fn format_float_f(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        };
    }
    format!("{v}")
}
