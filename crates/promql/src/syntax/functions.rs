//! PromQL's function table (Prometheus 3.5.3's `parser/functions.go`): names, argument and
//! return types, whether experimental. The parser resolves calls to these entries; the
//! evaluator dispatches on them.

/// The value types of PromQL.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl ValueType {
    /// Prometheus' `DocumentedType`.
    pub fn documented(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
            ValueType::String => "string",
        }
    }

    /// Prometheus' `ValueType` string.
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "vector",
            ValueType::Matrix => "matrix",
            ValueType::String => "string",
        }
    }
}

/// A function's name, argument types and return type. `variadic`: 0 for exactly `args`,
/// n > 0 for up to n more of the last type, negative for any number more.
#[derive(Debug, PartialEq, Eq)]
pub struct Signature {
    /// The name.
    pub name: &'static str,
    pub(crate) args: &'static [ValueType],
    pub(crate) variadic: i32,
    pub(crate) returns: ValueType,
    /// Behind `--enable-feature=promql-experimental-functions`.
    pub experimental: bool,
}

impl Signature {
    /// The argument types (the last one repeats for variadic functions).
    pub fn arg_types(&self) -> &'static [ValueType] {
        self.args
    }

    /// Prometheus' `Variadic`: 0 for exactly the arguments, n > 0 for up to n more of the
    /// last type, negative for any number more.
    pub fn variadic(&self) -> i32 {
        self.variadic
    }

    /// The type of the result.
    pub fn return_type(&self) -> ValueType {
        self.returns
    }
}

use ValueType::{Matrix as M, Scalar as S, String as T, Vector as V};

const fn sig(
    name: &'static str,
    args: &'static [ValueType],
    variadic: i32,
    returns: ValueType,
) -> Signature {
    Signature {
        name,
        args,
        variadic,
        returns,
        experimental: false,
    }
}

const fn exp(
    name: &'static str,
    args: &'static [ValueType],
    variadic: i32,
    returns: ValueType,
) -> Signature {
    Signature {
        name,
        args,
        variadic,
        returns,
        experimental: true,
    }
}

/// Sorted by name.
static FUNCTIONS: &[Signature] = &[
    sig("abs", &[V], 0, V),
    sig("absent", &[V], 0, V),
    sig("absent_over_time", &[M], 0, V),
    sig("acos", &[V], 0, V),
    sig("acosh", &[V], 0, V),
    sig("asin", &[V], 0, V),
    sig("asinh", &[V], 0, V),
    sig("atan", &[V], 0, V),
    sig("atanh", &[V], 0, V),
    sig("avg_over_time", &[M], 0, V),
    sig("ceil", &[V], 0, V),
    sig("changes", &[M], 0, V),
    sig("clamp", &[V, S, S], 0, V),
    sig("clamp_max", &[V, S], 0, V),
    sig("clamp_min", &[V, S], 0, V),
    sig("cos", &[V], 0, V),
    sig("cosh", &[V], 0, V),
    sig("count_over_time", &[M], 0, V),
    sig("day_of_month", &[V], 1, V),
    sig("day_of_week", &[V], 1, V),
    sig("day_of_year", &[V], 1, V),
    sig("days_in_month", &[V], 1, V),
    sig("deg", &[V], 0, V),
    sig("delta", &[M], 0, V),
    sig("deriv", &[M], 0, V),
    exp("double_exponential_smoothing", &[M, S, S], 0, V),
    sig("exp", &[V], 0, V),
    sig("floor", &[V], 0, V),
    sig("histogram_avg", &[V], 0, V),
    sig("histogram_count", &[V], 0, V),
    sig("histogram_fraction", &[S, S, V], 0, V),
    sig("histogram_quantile", &[S, V], 0, V),
    sig("histogram_stddev", &[V], 0, V),
    sig("histogram_stdvar", &[V], 0, V),
    sig("histogram_sum", &[V], 0, V),
    sig("hour", &[V], 1, V),
    sig("idelta", &[M], 0, V),
    sig("increase", &[M], 0, V),
    exp("info", &[V, V], 1, V),
    sig("irate", &[M], 0, V),
    sig("label_join", &[V, T, T, T], -1, V),
    sig("label_replace", &[V, T, T, T, T], 0, V),
    sig("last_over_time", &[M], 0, V),
    sig("ln", &[V], 0, V),
    sig("log10", &[V], 0, V),
    sig("log2", &[V], 0, V),
    exp("mad_over_time", &[M], 0, V),
    sig("max_over_time", &[M], 0, V),
    sig("min_over_time", &[M], 0, V),
    sig("minute", &[V], 1, V),
    sig("month", &[V], 1, V),
    sig("pi", &[], 0, S),
    sig("predict_linear", &[M, S], 0, V),
    sig("present_over_time", &[M], 0, V),
    sig("quantile_over_time", &[S, M], 0, V),
    sig("rad", &[V], 0, V),
    sig("rate", &[M], 0, V),
    sig("resets", &[M], 0, V),
    sig("round", &[V, S], 1, V),
    sig("scalar", &[V], 0, S),
    sig("sgn", &[V], 0, V),
    sig("sin", &[V], 0, V),
    sig("sinh", &[V], 0, V),
    sig("sort", &[V], 0, V),
    exp("sort_by_label", &[V, T], -1, V),
    exp("sort_by_label_desc", &[V, T], -1, V),
    sig("sort_desc", &[V], 0, V),
    sig("sqrt", &[V], 0, V),
    sig("stddev_over_time", &[M], 0, V),
    sig("stdvar_over_time", &[M], 0, V),
    sig("sum_over_time", &[M], 0, V),
    sig("tan", &[V], 0, V),
    sig("tanh", &[V], 0, V),
    sig("time", &[], 0, S),
    sig("timestamp", &[V], 0, V),
    exp("ts_of_last_over_time", &[M], 0, V),
    exp("ts_of_max_over_time", &[M], 0, V),
    exp("ts_of_min_over_time", &[M], 0, V),
    sig("vector", &[S], 0, V),
    sig("year", &[V], 1, V),
];

/// The signature of function `name`, if PromQL has it.
pub fn lookup(name: &str) -> Option<&'static Signature> {
    FUNCTIONS
        .binary_search_by(|s| s.name.cmp(name))
        .ok()
        .and_then(|i| FUNCTIONS.get(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_found() {
        assert!(FUNCTIONS.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(lookup("rate").map(|s| s.args), Some(&[M][..]));
        assert!(lookup("holt_winters").is_none());
    }
}
