//! PromQL evaluation with Prometheus 3 semantics.
//!
//! Owns PromQL's grammar ([`syntax`]: Prometheus 3.5's, with its errors and positions) and
//! the evaluation of a parsed expression over any [`Queryable`]: instant and range queries, lookback with left-open windows, staleness,
//! `offset` and `@`, subqueries, binary operators with vector matching, aggregations and
//! the float functions. Does no IO of its own: the querier plugs in Store API fan-out, tests
//! plug in [`MemQueryable`]. Synchronous; callers run it off async workers.

mod aggregate;
mod annotations;
mod binop;
mod engine;
mod error;
mod eval;
mod functions;
mod gomath;
mod histogram_functions;
mod histogram_range;
mod identity;
mod queryable;
mod steps;
pub mod syntax;
mod value;

pub use annotations::{Annotation, AnnotationKind, Annotations};
pub use engine::{Engine, EngineOptions, QueryResult};
pub use error::Error;
pub use queryable::{EncodedSamples, MemQueryable, Queryable, SelectHints, Series, decode_each};
pub use value::{Element, RangeSeries, Value, format_float};

/// The parse error Prometheus reports for `query` (`line:col: parse error: message`), or
/// `None` if Prometheus' grammar and type checks accept it. [`Engine::parse`] uses this for
/// its messages; it is public for the fuzz target and for tools.
pub fn prometheus_parse_error(query: &str) -> Option<String> {
    syntax::parse(query, syntax::ParseOptions::default())
        .err()
        .map(|e| e.display(query).to_string())
}
