use std::time::{Duration, Instant};

use crate::syntax::ast::Expr;
use crate::syntax::{ParseOptions, parse};

use crate::annotations::{AnnotationKind, Annotations};
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
    /// Range queries are evaluated in slices of about this much evaluation time (ms), at
    /// most four and at least one a thread (see `plan_slices`); each slice decodes only the
    /// samples its own steps need, which bounds memory.
    pub slice_duration: i64,
    /// Slices evaluated in parallel (threads per range query).
    pub parallelism: usize,
    /// Subquery step when none is given, in ms (Prometheus uses the global evaluation
    /// interval; 1m by default).
    pub default_subquery_step: i64,
    /// Set when the query's client went away: evaluation stops at the next step with
    /// [`Error::Canceled`].
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            slice_duration: 2 * 60 * 60 * 1000,
            parallelism: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4),
            default_subquery_step: 60 * 1000,
            cancel: None,
        }
    }
}

/// Slices of fewer steps are not split further: threads cost more than they save.
const MIN_SLICE_STEPS: i64 = 16;

/// The time slices `[from, to]` a range query from `start` to `end` at `step` is evaluated
/// in: about `slice_duration` each, at most four a thread, and a whole number a thread (at
/// least one each), so that the threads finish together — a 2-hour range on two threads is
/// two slices, not one slice on one thread while the other idles; 6 hours are two slices of
/// 3 hours, not three of 2 (one thread doing two); 2 days are eight of 6 hours. Fewer, longer
/// slices decode less (each decodes again the chunk its first window reaches back into).
/// Slices have at least [`MIN_SLICE_STEPS`] steps when the range has that many.
fn plan_slices(
    start: i64,
    end: i64,
    step: i64,
    slice_duration: i64,
    parallelism: usize,
) -> Vec<(i64, i64)> {
    let threads = i64::try_from(parallelism.max(1)).unwrap_or(1);
    let range = end.saturating_sub(start).max(0);
    let duration = slice_duration.max(1);
    // Both operands are positive here (at least 0 and 1).
    let ceil_div = |a: i64, b: i64| a / b + i64::from(a % b != 0);
    let fit = ceil_div(range, duration).max(1);
    let mut count = fit.min(threads.saturating_mul(4));
    count = (count / threads * threads).max(threads);
    let steps = range / step.max(1) + 1;
    count = count.min((steps / MIN_SLICE_STEPS).max(1));
    let steps_per_slice = ceil_div(steps, count).max(1);
    let mut slices = Vec::new();
    let mut slice_start = start;
    while slice_start <= end {
        let slice_end = slice_start
            .saturating_add((steps_per_slice - 1).saturating_mul(step))
            .min(end);
        slices.push((slice_start, slice_end));
        match slice_end.checked_add(step) {
            Some(next) => slice_start = next,
            None => break,
        }
    }
    slices
}

/// The result of a query: its value and annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: Value,
    /// Warnings and infos, with the positions of the expressions they are about.
    pub annotations: Annotations,
}

impl QueryResult {
    /// The warning messages (without positions).
    pub fn warnings(&self) -> Vec<String> {
        self.annotations.messages(AnnotationKind::Warning)
    }

    /// The info messages (without positions).
    pub fn infos(&self) -> Vec<String> {
        self.annotations.messages(AnnotationKind::Info)
    }
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

    /// Parses a query as Prometheus 3.5 does; a malformed query gets Prometheus' parse
    /// error (`line:col: parse error: message`, Prometheus' position and words).
    pub fn parse(query: &str) -> Result<Expr, Error> {
        Self::parse_with(query, ParseOptions::default())
    }

    /// [`Engine::parse`] with parser options (experimental functions).
    pub fn parse_with(query: &str, options: ParseOptions) -> Result<Expr, Error> {
        parse(query, options).map_err(|e| Error::Parse(e.display(query).to_string()))
    }

    /// Evaluates `query` at `time` (ms).
    pub fn instant_query(
        &self,
        queryable: &(dyn Queryable + Sync),
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
            annotations: ev.take_annotations(),
        })
    }

    /// Evaluates `query` at `start, start+step, …, ≤ end` (ms); the result is a matrix.
    pub fn range_query(
        &self,
        queryable: &(dyn Queryable + Sync),
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, Error> {
        let expr = Self::parse(query)?;
        self.range_expr(queryable, &expr, start, end, step)
    }

    /// Evaluates a parsed expression over a range: every selector's data is loaded once for
    /// the whole range (one `select` each, as Prometheus and Thanos do, so answers do not
    /// depend on slicing: deduplication and downsampled counters see the whole range), then
    /// the steps are evaluated in time slices, several at once on separate threads.
    pub fn range_expr(
        &self,
        queryable: &(dyn Queryable + Sync),
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
        let mut loader = Evaluator::new(&self.options, start, end, step, deadline);
        loader.preload(queryable, expr)?;
        let slices = plan_slices(
            start,
            end,
            step,
            self.options.slice_duration,
            self.options.parallelism,
        );
        let run_slice = |(from, to): (i64, i64)| -> SliceResult {
            let mut ev = Evaluator::new(&self.options, from, to, step, deadline)
                .for_slice(start, end, &loader);
            let value = ev.eval_range_top(expr)?;
            Ok(QueryResult {
                value,
                annotations: ev.take_annotations(),
            })
        };
        let workers = self.options.parallelism.clamp(1, slices.len().max(1));
        let results: Vec<SliceResult> = if workers == 1 {
            slices.iter().map(|&s| run_slice(s)).collect()
        } else {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let mut slots: Vec<Option<SliceResult>> = (0..slices.len()).map(|_| None).collect();
            let done = std::sync::Mutex::new(Vec::new());
            std::thread::scope(|scope| {
                for _ in 0..workers {
                    scope.spawn(|| {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(&slice) = slices.get(i) else { break };
                            let result = run_slice(slice);
                            let failed = result.is_err();
                            if let Ok(mut d) = done.lock() {
                                d.push((i, result));
                            }
                            if failed {
                                // Later slices are pointless once one fails.
                                next.store(usize::MAX / 2, std::sync::atomic::Ordering::Relaxed);
                                break;
                            }
                        }
                    });
                }
            });
            for (i, result) in done.into_inner().unwrap_or_default() {
                if let Some(slot) = slots.get_mut(i) {
                    *slot = Some(result);
                }
            }
            let mut ordered = Vec::with_capacity(slots.len());
            for slot in slots {
                match slot {
                    Some(r) => ordered.push(r),
                    None => break,
                }
            }
            ordered
        };
        merge_slices(results)
    }
}

/// Joins the per-slice matrices (each sorted by labels, slices in time order).
/// The outcome of evaluating one slice of a range query.
type SliceResult = Result<QueryResult, Error>;

fn merge_slices(results: Vec<SliceResult>) -> Result<QueryResult, Error> {
    type Points = (
        Vec<strata_types::Sample>,
        Vec<strata_types::histogram::HistogramSample>,
    );
    let mut series: std::collections::BTreeMap<strata_types::Labels, Points> =
        std::collections::BTreeMap::new();
    let mut annotations = Annotations::default();
    for result in results {
        let QueryResult {
            value,
            annotations: a,
        } = result?;
        annotations.merge(a);
        if let Value::Matrix(m) = value {
            for s in m {
                let entry = series.entry(s.labels).or_default();
                entry.0.extend(s.samples);
                entry.1.extend(s.histograms);
            }
        }
    }
    let matrix = series
        .into_iter()
        .map(
            |(labels, (samples, histograms))| crate::value::RangeSeries {
                labels,
                samples,
                histograms,
                drop_name: false,
            },
        )
        .collect();
    Ok(QueryResult {
        value: Value::Matrix(matrix),
        annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queryable::MemQueryable;
    use strata_types::{Labels, Sample};

    fn store(series: usize, samples: i64) -> MemQueryable {
        let mut q = MemQueryable::new();
        for i in 0..series {
            let labels = Labels::from_pairs([("__name__", "m".to_owned()), ("i", i.to_string())]);
            let points: Vec<Sample> = (0..samples)
                .map(|t| Sample::new(t * 15_000, t as f64))
                .collect();
            q.add(labels, &points);
        }
        q
    }

    #[test]
    fn too_many_samples_is_prometheus_error_not_oom() {
        let q = store(20, 200);
        let engine = Engine::new(EngineOptions {
            max_samples: 1000,
            ..EngineOptions::default()
        });
        let err = engine
            .instant_query(&q, "sum(sum_over_time(m[1h]))", 3_000_000)
            .unwrap_err();
        assert_eq!(err, Error::TooManySamples("query execution"));
        assert_eq!(
            err.to_string(),
            "query processing would load too many samples into memory in query execution"
        );
        assert_eq!(err.error_type(), "execution");
        // Within the limit the same query works.
        let engine = Engine::new(EngineOptions {
            max_samples: 100_000,
            ..EngineOptions::default()
        });
        assert!(
            engine
                .instant_query(&q, "sum(sum_over_time(m[1h]))", 3_000_000)
                .is_ok()
        );
    }

    #[test]
    fn timeout_is_prometheus_error() {
        let q = store(5, 100);
        let engine = Engine::new(EngineOptions {
            timeout: Duration::ZERO,
            ..EngineOptions::default()
        });
        let err = engine
            .range_query(&q, "rate(m[5m])", 0, 1_500_000, 15_000)
            .unwrap_err();
        assert_eq!(err, Error::Timeout("query execution"));
        assert_eq!(err.to_string(), "query timed out in query execution");
        assert_eq!(err.error_type(), "timeout");
    }

    #[test]
    fn slices_are_a_whole_number_a_thread() {
        const H: i64 = 3_600_000;
        let plan = |range: i64, step: i64, threads: usize| {
            plan_slices(1_000, 1_000 + range, step, 2 * H, threads)
        };
        let lengths = |slices: &[(i64, i64)]| -> Vec<i64> {
            slices.iter().map(|(from, to)| to - from).collect()
        };
        // Two hours at 60 s on two threads: two slices of an hour, back to back.
        let two = plan(2 * H, 60_000, 2);
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].0, 1_000);
        assert_eq!(two[1].0, two[0].1 + 60_000);
        assert_eq!(two[1].1, 1_000 + 2 * H);
        // Six hours: two of three, not three of two; two days: eight of six.
        assert_eq!(lengths(&plan(6 * H, 30_000, 2)), [3 * H, 3 * H - 30_000]);
        assert_eq!(plan(48 * H, 300_000, 2).len(), 8);
        assert_eq!(plan(48 * H, 300_000, 4).len(), 16);
        // One thread: as many slices as fit, at most four.
        assert_eq!(plan(2 * H, 60_000, 1).len(), 1);
        assert_eq!(plan(48 * H, 300_000, 1).len(), 4);
        // Few steps: not split; one step: one slice.
        assert_eq!(plan(2 * H, 600_000, 2).len(), 1);
        assert_eq!(plan(0, 60_000, 2), [(1_000, 1_000)]);
        // Whatever the plan, the slices cover every step once, in order.
        for (range, step, threads) in [(7 * H, 15_000, 3), (H + 1, 7_000, 2), (5, 1, 4)] {
            let slices = plan(range, step, threads);
            let mut t = 1_000;
            for (from, to) in slices {
                assert_eq!(from, t);
                assert!(to >= from);
                t = to + step;
            }
            assert!(t > 1_000 + range && t - step <= 1_000 + range);
        }
    }

    #[test]
    fn slices_and_threads_do_not_change_results() {
        let q = store(7, 2000);
        let query = "sum by (i) (rate(m[5m])) + on(i) group_left max_over_time(m[10m:1m])";
        let whole = Engine::new(EngineOptions {
            slice_duration: i64::MAX,
            parallelism: 1,
            ..EngineOptions::default()
        })
        .range_query(&q, query, 600_000, 29_000_000, 60_000)
        .unwrap();
        let sliced = Engine::new(EngineOptions {
            slice_duration: 7 * 60_000,
            parallelism: 3,
            ..EngineOptions::default()
        })
        .range_query(&q, query, 600_000, 29_000_000, 60_000)
        .unwrap();
        assert_eq!(whole, sliced);
        let Value::Matrix(m) = whole.value else {
            panic!("matrix expected")
        };
        assert_eq!(m.len(), 7);
    }

    #[test]
    fn at_timestamps_out_of_range_are_refused() {
        let err = Engine::parse("x @ 1e30").unwrap_err();
        assert_eq!(
            err.to_string(),
            "1:1: parse error: timestamp out of bounds for @ modifier: 1000000000000000019884624838656.000000"
        );
        assert!(Engine::parse("x @ 1e9").is_ok());
    }

    /// Native histograms where the engine does not take them (the experimental functions)
    /// are an error naming the series, not an answer that differs from Prometheus'; where
    /// it does, they are answered.
    #[test]
    fn histograms_where_not_taken_are_an_error_naming_the_series() {
        use strata_types::histogram::{FloatHistogram, HistogramSample};
        let mut store = MemQueryable::new();
        let h = |t: i64, count: f64| HistogramSample {
            t,
            h: std::sync::Arc::new(FloatHistogram {
                count,
                sum: count,
                ..FloatHistogram::default()
            }),
        };
        store.add_histograms(
            Labels::from_pairs([("__name__", "h")]),
            &[h(0, 1.0), h(30_000, 2.0)],
        );
        let engine = Engine::new(EngineOptions::default());
        let experimental = crate::syntax::ParseOptions {
            experimental_functions: true,
        };
        let expr = Engine::parse_with("mad_over_time(h[5m])", experimental).unwrap();
        let err = engine.instant_expr(&store, &expr, 60_000).unwrap_err();
        assert!(
            err.to_string()
                .contains("native histogram samples of series {__name__=\"h\"}"),
            "{err}"
        );
        let expr = Engine::parse("histogram_count(h)").unwrap();
        let answer = engine.instant_expr(&store, &expr, 60_000).unwrap();
        match answer.value {
            Value::Vector(v) => assert_eq!(v.first().map(|e| e.v), Some(2.0)),
            other => panic!("{other:?}"),
        }
    }

    /// Queries at the nesting limit evaluate (in bounded stack, on any thread); deeper ones
    /// are parse errors.
    #[test]
    fn deep_queries_evaluate_or_are_refused() {
        let q = store(3, 100);
        let engine = Engine::default();
        let depth = crate::syntax::MAX_DEPTH - 2;
        for (query, want) in [
            (format!("1{}", "+1".repeat(depth)), (depth + 1) as f64),
            (
                format!("{}m{}", "abs(".repeat(depth), ")".repeat(depth)),
                4.0,
            ),
            (format!("{}1{}", "(".repeat(depth), ")".repeat(depth)), 1.0),
        ] {
            let r = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn({
                    let engine = engine.clone();
                    let q = q.clone();
                    move || engine.range_query(&q, &query, 0, 60_000, 15_000)
                })
                .unwrap()
                .join()
                .unwrap()
                .unwrap();
            let Value::Matrix(m) = r.value else { panic!() };
            let last = m.last().and_then(|s| s.samples.last()).map(|p| p.v);
            assert_eq!(last, Some(want));
        }
        let err = Engine::parse(&format!("1{}", "+1".repeat(200_000))).unwrap_err();
        assert_eq!(err.error_type(), "bad_data");
    }

    #[test]
    fn parse_errors_are_bad_data() {
        let err = Engine::parse("sum(").unwrap_err();
        assert_eq!(err.error_type(), "bad_data");
    }
}
