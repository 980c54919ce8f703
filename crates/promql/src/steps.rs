//! Range functions over a range selector, computed for every step of a range query in one
//! pass per series.
//!
//! Evaluating `rate(x[5m])` step by step finds every series' window again at each step and
//! hands the function a fresh range vector. For a range query this module instead walks each
//! series once across all of the evaluator's steps (the window's two ends only move
//! forward: O(samples + steps) per series) and keeps the values; each step then reads its
//! column. The window function is the same one the step-by-step path calls
//! ([`crate::functions::window_function`]), so the values are the same.

use strata_types::{Labels, Sample, is_stale_nan};

use crate::annotations::Annotation;
use crate::error::Error;
use crate::eval::{Evaluator, any_in, key};
use crate::functions::{Window, WindowFunction, window_function};
use crate::syntax::ast::{Call, Expr, MatrixSelector, VectorSelector};
use crate::value::Element;

/// One series' values at every step of an evaluator.
#[derive(Debug)]
pub(crate) struct StepValues {
    start: i64,
    interval: i64,
    steps: usize,
    labels: Vec<Labels>,
    drop_name: bool,
    /// Step-major: the value of series `i` at step `k` is at `k * labels.len() + i`.
    values: Vec<f64>,
    present: Vec<bool>,
    /// Per series, the metric name to report once as possibly not a counter (`rate` and
    /// `increase` of a name without a counter suffix); taken when reported.
    non_counter: Vec<Option<String>>,
}

impl StepValues {
    /// The step index of `ts`, if it is one of the steps.
    fn step_of(&self, ts: i64) -> Option<usize> {
        if self.interval <= 0 {
            // An instant query: its one step.
            return (ts == self.start).then_some(0);
        }
        if ts < self.start || (ts - self.start) % self.interval != 0 {
            return None;
        }
        let k = usize::try_from((ts - self.start) / self.interval).ok()?;
        (k < self.steps).then_some(k)
    }
}

/// Whether `rate`/`increase` of this series may be reported as not a counter.
fn non_counter_name(labels: &Labels) -> Option<String> {
    let metric = labels.metric_name().unwrap_or("");
    (!metric.is_empty()
        && !["_total", "_sum", "_count", "_bucket"]
            .iter()
            .any(|suffix| metric.ends_with(suffix)))
    .then(|| metric.to_owned())
}

/// The values of a window-function call at one step: `(series index, value)` of the series
/// that have one, in series order.
pub(crate) struct StepCells {
    pub(crate) cells: Vec<(usize, f64)>,
    /// Whether every element drops its metric name.
    pub(crate) drop_name: bool,
}

/// The window function and range selector of `call` when it is a window function of a
/// range selector without `@` (what [`Evaluator::step_cells`] can compute for all steps).
fn eligible(call: &Call) -> Option<(WindowFunction, &MatrixSelector, usize)> {
    let wf = window_function(call.func.name)?;
    let range_expr = call.args.first()?;
    match range_expr.unparen() {
        Expr::MatrixSelector(ms) if ms.vs.at.is_none() => Some((wf, ms, range_expr.pos())),
        _ => None,
    }
}

fn node(call: &Call) -> usize {
    std::ptr::from_ref(call) as usize
}

/// What is computed for every step: a window function of a range selector, or an instant
/// selector's value (the newest sample within the lookback, none if it is a stale marker).
#[derive(Clone, Copy)]
enum Source<'e> {
    Window(&'e str, WindowFunction, &'e MatrixSelector),
    Instant(&'e VectorSelector),
}

/// The selector whose series `source` reads.
fn source_key(source: Source<'_>) -> usize {
    match source {
        Source::Window(_, _, ms) => key(&ms.vs),
        Source::Instant(vs) => key(vs),
    }
}

/// Series decoded together by [`DecodeBatch`] at most...
const DECODE_BATCH_SERIES: usize = 32;
/// ...and at most this many samples in all, counted by each series' whole length (a few
/// MiB decoded, whatever the selector's range).
const DECODE_BATCH_SAMPLES: usize = 1 << 18;

/// Encoded series decoded a few at a time into one buffer: the storage's decoder gets many
/// series' chunks in one call (the XOR decoder's lanes take sixteen chunks at once, and one
/// series has only a few within a slice's steps).
#[derive(Debug, Default)]
struct DecodeBatch {
    samples: Vec<Sample>,
    /// Where each decoded series' samples are in `samples`.
    runs: Vec<std::ops::Range<usize>>,
    /// The index among the selector's series of the first one decoded.
    first: usize,
}

impl DecodeBatch {
    /// Series `i`'s samples in `[from, to]`; decodes it and the encoded series after it when
    /// it is not in the batch yet.
    fn samples_of(
        &mut self,
        series: &[crate::eval::Loaded],
        i: usize,
        from: i64,
        to: i64,
    ) -> Result<&[Sample], Error> {
        if i < self.first || i >= self.first + self.runs.len() {
            let mut group: Vec<&dyn crate::queryable::EncodedSamples> = Vec::new();
            let mut held = 0usize;
            for s in series.get(i..).unwrap_or_default() {
                let (None, Some(encoded)) = (s.decoded(), &s.encoded) else {
                    break;
                };
                if !group.is_empty()
                    && (group.len() >= DECODE_BATCH_SERIES
                        || held.saturating_add(encoded.len()) > DECODE_BATCH_SAMPLES)
                {
                    break;
                }
                held = held.saturating_add(encoded.len());
                group.push(encoded.as_ref());
            }
            self.samples.clear();
            self.runs.clear();
            self.first = i;
            let Some(head) = group.first() else {
                return Ok(&[]);
            };
            head.decode_batch(&group, from, to, &mut self.samples, &mut self.runs)
                .map_err(|(j, e)| {
                    let labels = series
                        .get(i + j)
                        .map(|s| s.labels.to_string())
                        .unwrap_or_default();
                    Error::Storage(format!("series {labels}: {e}"))
                })?;
            if self.runs.len() != group.len() {
                return Err(Error::Storage(format!(
                    "the storage decoded {} of {} series",
                    self.runs.len(),
                    group.len()
                )));
            }
        }
        let run = self.runs.get(i - self.first).cloned().unwrap_or_default();
        Ok(self.samples.get(run).unwrap_or_default())
    }
}

impl Evaluator<'_> {
    /// The elements of `call` at `ts` from values computed for every step, or `None` when
    /// this evaluation does not qualify (see [`Evaluator::step_cells`]): the caller then
    /// evaluates the step on its own.
    pub(crate) fn step_function(
        &mut self,
        call: &Call,
        ts: i64,
    ) -> Result<Option<Vec<Element>>, Error> {
        let Some(cells) = self.step_cells(call, ts)? else {
            return Ok(None);
        };
        let labels = self.step_labels(call).unwrap_or_default();
        Ok(Some(
            cells
                .cells
                .into_iter()
                .filter_map(|(i, v)| {
                    Some(Element {
                        labels: labels.get(i)?.clone(),
                        t: ts,
                        v,
                        h: None,
                        drop_name: cells.drop_name,
                    })
                })
                .collect(),
        ))
    }

    /// The label sets of the series [`Evaluator::step_cells`] indexes for `call`, once
    /// computed.
    pub(crate) fn step_labels(&self, call: &Call) -> Option<&[Labels]> {
        self.labels_of(node(call))
    }

    /// The label sets of the series of node `node`'s values (a call's or a selector's).
    pub(crate) fn labels_of(&self, node: usize) -> Option<&[Labels]> {
        match self.step_values.get(&node) {
            Some(Some(sv)) => Some(&sv.labels),
            _ => None,
        }
    }

    /// The values of `call` at `ts`, computed for every step of this evaluator at the first
    /// step that asks; `None` when this evaluation does not qualify: not a window function
    /// of a range selector without `@`, an instant query, a time off the steps, or more
    /// values than the sample limit leaves room for.
    pub(crate) fn step_cells(&mut self, call: &Call, ts: i64) -> Result<Option<StepCells>, Error> {
        let Some((wf, ms, pos)) = eligible(call) else {
            return Ok(None);
        };
        self.cells_at(node(call), Source::Window(call.func.name, wf, ms), pos, ts)
    }

    /// The values of the instant selector `vs` at `ts` (without the samples' own
    /// timestamps: for aggregations), as [`Evaluator::step_cells`]; `None` with `@`.
    pub(crate) fn selector_cells(
        &mut self,
        vs: &VectorSelector,
        ts: i64,
    ) -> Result<Option<StepCells>, Error> {
        if vs.at.is_some() {
            return Ok(None);
        }
        self.cells_at(key(vs), Source::Instant(vs), vs.pos, ts)
    }

    fn cells_at(
        &mut self,
        node: usize,
        source: Source<'_>,
        pos: usize,
        ts: i64,
    ) -> Result<Option<StepCells>, Error> {
        // A range query, or an instant query (one step) over samples the storage kept
        // encoded: they are decoded series by series here too.
        let instant = self.interval <= 0 || self.end <= self.start;
        if instant
            && (self.start != self.end
                || ts != self.start
                || !self
                    .data
                    .get(&source_key(source))
                    .is_some_and(|series| series.iter().any(|s| s.decoded().is_none())))
        {
            return Ok(None);
        }
        if !self.step_values.contains_key(&node) {
            let computed = self.compute_steps(source)?;
            self.step_values.insert(node, computed);
        }
        let Some(Some(sv)) = self.step_values.get_mut(&node) else {
            return Ok(None);
        };
        let Some(k) = sv.step_of(ts) else {
            return Ok(None);
        };
        let n = sv.labels.len();
        let base = k * n;
        let mut cells = Vec::new();
        let mut report = Vec::new();
        let (Some(values), Some(present)) = (
            sv.values.get(base..base + n),
            sv.present.get(base..base + n),
        ) else {
            return Ok(None);
        };
        for (i, (&v, &p)) in values.iter().zip(present).enumerate() {
            if !p {
                continue;
            }
            cells.push((i, v));
            if let Some(metric) = sv.non_counter.get_mut(i).and_then(Option::take) {
                report.push(metric);
            }
        }
        let drop_name = sv.drop_name;
        for metric in report {
            self.annotate(Annotation::possible_non_counter(&metric, pos));
        }
        Ok(Some(StepCells { cells, drop_name }))
    }

    fn compute_steps(&mut self, source: Source<'_>) -> Result<Option<StepValues>, Error> {
        let (vs, range, name) = match source {
            Source::Window(name, _, ms) => (&ms.vs, ms.range, name),
            Source::Instant(vs) => (vs, self.opts.lookback_delta, ""),
        };
        let steps = if self.interval > 0 {
            (self.end - self.start) / self.interval + 1
        } else {
            1
        };
        let Ok(steps) = usize::try_from(steps) else {
            return Ok(None);
        };
        let empty = Vec::new();
        let series = self.data.get(&key(vs)).unwrap_or(&empty);
        // Native histograms take the step-by-step path.
        if series.iter().any(|s| !s.histograms.is_empty()) {
            return Ok(None);
        }
        let n = series.len();
        // The values are held until the evaluator ends: only while the sample limit has
        // room for them beside the loaded samples and every other slice's values (9 bytes
        // each, within the 16 a loaded sample takes).
        let cells = n.saturating_mul(steps);
        let held = self
            .step_cells
            .fetch_add(cells, std::sync::atomic::Ordering::Relaxed)
            .saturating_add(cells);
        if held.saturating_add(self.loaded_samples) > self.opts.max_samples {
            self.step_cells
                .fetch_sub(cells, std::sync::atomic::Ordering::Relaxed);
            return Ok(None);
        }
        self.own_step_cells = self.own_step_cells.saturating_add(cells);
        let mut values = vec![0.0; cells];
        let mut present = vec![false; cells];
        let counter_check = matches!(name, "rate" | "increase");
        let mut non_counter = Vec::with_capacity(n);
        let mut kept: Vec<Sample> = Vec::new();
        // Samples the storage kept encoded are decoded here a few series at a time (the
        // decoder works on many series' chunks at once), only those this evaluator's steps
        // read (`(start - offset - range, end - offset]`), into one buffer: the query never
        // holds them all decoded.
        let mut batch = DecodeBatch::default();
        let mut own_index: (Vec<u32>, Option<Vec<u32>>);
        let first_needed = self
            .start
            .saturating_sub(vs.offset)
            .saturating_sub(range)
            .saturating_add(1);
        let last_needed = self.end.saturating_sub(vs.offset);
        for (i, s) in series.iter().enumerate() {
            if i % 256 == 0 {
                self.check_deadline()?;
            }
            let (samples, stale, resets): (&[Sample], &[u32], Option<&[u32]>) =
                match (s.decoded(), &s.encoded) {
                    (None, Some(_)) => {
                        let decoded = batch.samples_of(series, i, first_needed, last_needed)?;
                        // Only `rate` and `increase` read the reset list (a window known
                        // to hold none spares their scan); a gauge's values fall half the
                        // time, so listing them would cost a slow pass for nothing.
                        own_index = if counter_check {
                            crate::eval::sample_index(decoded)
                        } else {
                            (crate::eval::stale_index(decoded), None)
                        };
                        (decoded, &own_index.0, own_index.1.as_deref())
                    }
                    _ => {
                        let floats = s.floats();
                        (&floats.samples, &floats.stale, floats.resets.as_deref())
                    }
                };
            let (mut lo, mut hi) = (0usize, 0usize);
            let mut any = false;
            for k in 0..steps {
                let ts = self.start + (k as i64) * self.interval;
                let ref_time = ts.saturating_sub(vs.offset);
                let left = ref_time.saturating_sub(range);
                while samples.get(hi).is_some_and(|p| p.t <= ref_time) {
                    hi += 1;
                }
                while samples.get(lo).is_some_and(|p| p.t <= left) {
                    lo += 1;
                }
                let Some(window) = samples.get(lo..hi).filter(|w| !w.is_empty()) else {
                    continue;
                };
                let wf = match source {
                    Source::Window(_, wf, _) => wf,
                    Source::Instant(_) => {
                        // The newest sample in the lookback window, unless a stale marker.
                        if let Some(last) = window.last().filter(|p| !is_stale_nan(p.v)) {
                            let cell = k * n + i;
                            if let (Some(slot), Some(p)) =
                                (values.get_mut(cell), present.get_mut(cell))
                            {
                                *slot = last.v;
                                *p = true;
                            }
                        }
                        continue;
                    }
                };
                let has_stale = any_in(stale, lo..hi);
                let window = if has_stale {
                    kept.clear();
                    kept.extend(window.iter().filter(|p| !is_stale_nan(p.v)));
                    if kept.is_empty() {
                        continue;
                    }
                    kept.as_slice()
                } else {
                    window
                };
                let no_resets = !has_stale && resets.is_some_and(|r| !any_in(r, lo + 1..hi));
                let w = Window {
                    samples: window,
                    no_resets,
                    range,
                    ref_time,
                };
                if let Some(v) = (wf.f)(&w) {
                    let cell = k * n + i;
                    if let (Some(slot), Some(p)) = (values.get_mut(cell), present.get_mut(cell)) {
                        *slot = v;
                        *p = true;
                        any = true;
                    }
                }
            }
            non_counter.push(if counter_check && any {
                non_counter_name(&s.labels)
            } else {
                None
            });
        }
        Ok(Some(StepValues {
            start: self.start,
            interval: self.interval,
            steps,
            labels: series.iter().map(|s| s.labels.clone()).collect(),
            drop_name: match source {
                Source::Window(_, wf, _) => !wf.keep_name,
                Source::Instant(_) => false,
            },
            values,
            present,
            non_counter,
        }))
    }
}

#[cfg(test)]
mod tests {
    use strata_types::{Labels, Sample, stale_nan};

    use crate::{Engine, EngineOptions, MemQueryable, RangeSeries, Value};

    /// Counters with resets, a gauge, a series with stale markers and gaps, one with a name
    /// that is not a counter's.
    fn data() -> MemQueryable {
        let mut q = MemQueryable::new();
        for (name, i) in [("c_total", 0), ("c_total", 1), ("g", 2), ("s_total", 3)] {
            let labels = Labels::from_pairs([("__name__", name.to_owned()), ("i", i.to_string())]);
            let points: Vec<Sample> = (0..400i64)
                .filter(|t| i != 3 || !(100..130).contains(t))
                .map(|t| {
                    let v = match i {
                        0 => (t % 97) as f64 * 3.0,
                        1 => t as f64 * 0.5 + (t % 7) as f64,
                        2 => ((t * 37) % 101) as f64 - 50.0,
                        _ if t % 41 == 0 => stale_nan(),
                        _ => t as f64,
                    };
                    Sample::new(t * 15_000 + i * 1_000, v)
                })
                .collect();
            q.add(labels, &points);
        }
        q
    }

    /// [`data`], its float samples handed over encoded (as the querier hands over chunks
    /// for range queries): range queries over it must equal instant queries over `data`.
    fn encoded_data() -> MemQueryable {
        let mut q = data();
        q.encode_floats(true);
        q
    }

    /// The value of the series `labels` of a range query's result at `t`.
    fn point_at(matrix: &[RangeSeries], labels: &Labels, t: i64) -> Option<f64> {
        matrix
            .iter()
            .find(|s| &s.labels == labels)
            .and_then(|s| s.samples.iter().find(|p| p.t == t))
            .map(|p| p.v)
    }

    /// How many series of a range query's result have a point at `t`.
    fn series_at(matrix: &[RangeSeries], t: i64) -> usize {
        matrix
            .iter()
            .filter(|s| s.samples.iter().any(|p| p.t == t))
            .count()
    }

    const AGGREGATIONS: &[&str] = &[
        "sum by (i) (X)",
        "X",
        "avg without (i) (X)",
        "max(X)",
        "min by (i) (X)",
        "count without (__name__) (X)",
        "stddev by (i) (X)",
        "quantile by (i) (0.3, X)",
        "group(X)",
        "stdvar(X)",
        "X * 2",
        "X + on(i) X",
        "X / ignoring(i) group_left sum(X)",
        "sum(X) - ignoring(i) group_right X",
        "X and on(i) (X > 0)",
        "X unless (X > 1)",
        "X or vector(1)",
        "X > bool 0.5",
    ];

    /// Aggregations of an instant selector (its values computed for all steps) equal the
    /// step-by-step evaluation of instant queries, stale markers and gaps included.
    #[test]
    fn aggregated_selectors_equal_instant_evaluations() {
        let q = data();
        let engine = Engine::new(EngineOptions {
            lookback_delta: 100_000,
            slice_duration: 23 * 60_000,
            ..EngineOptions::default()
        });
        let (start, end, step) = (0, 6_500_000, 30_000);
        for query in [
            "sum({__name__=~\".+\"})",
            "count by (i) (s_total)",
            "max without (i) ({__name__=~\".+\"} offset 2m)",
            "quantile(0.5, {__name__=~\".+\"})",
            "avg by (__name__) ({__name__=~\".+\"})",
        ] {
            let range = engine
                .range_query(&encoded_data(), query, start, end, step)
                .unwrap();
            let Value::Matrix(matrix) = &range.value else {
                panic!("{query}: matrix expected")
            };
            assert!(!matrix.is_empty(), "{query}");
            let mut t = start;
            while t <= end {
                let Value::Vector(vector) = engine.instant_query(&q, query, t).unwrap().value
                else {
                    panic!("{query}: vector expected")
                };
                assert_eq!(series_at(matrix, t), vector.len(), "{query} at {t}");
                for e in &vector {
                    assert_eq!(point_at(matrix, &e.labels, t), Some(e.v), "{query} at {t}");
                }
                t += step;
            }
        }
    }

    /// Every window function over a range selector: the range query (values computed for
    /// all steps at once) equals instant queries at each step (evaluated on their own), as
    /// values and as annotations.
    #[test]
    fn range_steps_equal_instant_evaluations() {
        let q = data();
        let encoded = encoded_data();
        let engine = Engine::new(EngineOptions {
            slice_duration: 37 * 60_000,
            ..EngineOptions::default()
        });
        let functions = [
            "rate",
            "increase",
            "delta",
            "irate",
            "idelta",
            "deriv",
            "changes",
            "resets",
            "avg_over_time",
            "min_over_time",
            "max_over_time",
            "sum_over_time",
            "count_over_time",
            "stddev_over_time",
            "stdvar_over_time",
            "last_over_time",
            "first_over_time",
            "present_over_time",
            "ts_of_last_over_time",
            "ts_of_first_over_time",
            "ts_of_max_over_time",
            "ts_of_min_over_time",
            "mad_over_time",
        ];
        let (start, end, step) = (200_000, 6_000_000, 45_000);
        let mut tested = 0;
        for f in functions {
            for sel in ["{__name__=~\".+\"}[2m]", "c_total[5m] offset 3m", "g[1m]"] {
                let aggregation = AGGREGATIONS[tested % AGGREGATIONS.len()];
                let query = aggregation.replace("X", &format!("{f}({sel})"));
                let parsed = Engine::parse_with(
                    &query,
                    crate::syntax::ParseOptions {
                        experimental_functions: true,
                    },
                );
                // Functions of later Prometheus versions are in the table, not the grammar.
                let Ok(expr) = parsed else { continue };
                tested += 1;
                let range = engine
                    .range_expr(&encoded, &expr, start, end, step)
                    .unwrap_or_else(|e| panic!("{query}: {e}"));
                let Value::Matrix(matrix) = &range.value else {
                    panic!("{query}: matrix expected")
                };
                let mut t = start;
                while t <= end {
                    let instant = engine.instant_expr(&q, &expr, t).unwrap();
                    let Value::Vector(vector) = instant.value else {
                        panic!("{query}: vector expected")
                    };
                    for e in &vector {
                        let from_range = point_at(matrix, &e.labels, t);
                        let same =
                            from_range.is_some_and(|v| v == e.v || (v.is_nan() && e.v.is_nan()));
                        assert!(same, "{query} at {t}: {:?} vs {from_range:?}", e.v);
                    }
                    assert_eq!(series_at(matrix, t), vector.len(), "{query} at {t}");
                    t += step;
                }
                if f == "rate" && sel.starts_with('{') {
                    let range = engine
                        .range_query(&q, &format!("sum(rate({sel}))"), start, end, step)
                        .unwrap();
                    assert!(!matrix.is_empty());
                    assert_eq!(
                        range.infos(),
                        vec!["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"g\"".to_owned()],
                    );
                }
            }
        }
        assert!(tested >= 3 * 18, "{tested}");
        // Each function meets more than one of the forms above.
        assert!(tested > 3 * AGGREGATIONS.len(), "{tested}");
    }
}
