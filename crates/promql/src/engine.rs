use std::time::{Duration, Instant};

use promql_parser::parser::Expr;

use crate::error::Error;
use crate::eval::Evaluator;
use crate::queryable::Queryable;
use crate::value::Value;

/// Engine settings, named after Prometheus' flags.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// `--query.lookback-delta` in ms (default 5m).
    pub lookback_delta: i64,
    /// `--query.max-samples` (default 50 million).
    pub max_samples: usize,
    /// `--query.timeout` (default 2m).
    pub timeout: Duration,
    /// Subquery step when none is given, in ms (Prometheus uses the global evaluation
    /// interval; 1m by default).
    pub default_subquery_step: i64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step: 60 * 1000,
        }
    }
}

/// The result of a query: its value and annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: Value,
    /// Warning annotations.
    pub warnings: Vec<String>,
    /// Info annotations.
    pub infos: Vec<String>,
}

/// Evaluates PromQL queries.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    options: EngineOptions,
}

impl Engine {
    /// An engine with the given options.
    pub fn new(options: EngineOptions) -> Self {
        Engine { options }
    }

    /// The options.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Parses a query; errors read like Prometheus' parse errors.
    pub fn parse(query: &str) -> Result<Expr, Error> {
        promql_parser::parser::parse(query).map_err(Error::Parse)
    }

    /// Evaluates `query` at `time` (ms).
    pub fn instant_query(
        &self,
        queryable: &dyn Queryable,
        query: &str,
        time: i64,
    ) -> Result<QueryResult, Error> {
        let expr = Self::parse(query)?;
        self.instant_expr(queryable, &expr, time)
    }

    /// Evaluates a parsed expression at `time` (ms).
    pub fn instant_expr(
        &self,
        queryable: &dyn Queryable,
        expr: &Expr,
        time: i64,
    ) -> Result<QueryResult, Error> {
        let deadline = Instant::now() + self.options.timeout;
        let mut ev = Evaluator::new(&self.options, time, time, 0, deadline);
        ev.preload(queryable, expr)?;
        let value = ev.eval_top(expr, time)?;
        Ok(QueryResult {
            value,
            warnings: ev.warnings(),
            infos: ev.infos(),
        })
    }

    /// Evaluates `query` at `start, start+step, …, ≤ end` (ms); the result is a matrix.
    pub fn range_query(
        &self,
        queryable: &dyn Queryable,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, Error> {
        let expr = Self::parse(query)?;
        self.range_expr(queryable, &expr, start, end, step)
    }

    /// Evaluates a parsed expression over a range.
    pub fn range_expr(
        &self,
        queryable: &dyn Queryable,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, Error> {
        if step <= 0 {
            return Err(Error::Parse(
                "zero or negative query resolution step widths are not accepted".to_owned(),
            ));
        }
        if end < start {
            return Err(Error::Parse(
                "end timestamp must not be before start time".to_owned(),
            ));
        }
        let deadline = Instant::now() + self.options.timeout;
        let mut ev = Evaluator::new(&self.options, start, end, step, deadline);
        ev.preload(queryable, expr)?;
        let value = ev.eval_range_top(expr)?;
        Ok(QueryResult {
            value,
            warnings: ev.warnings(),
            infos: ev.infos(),
        })
    }
}
