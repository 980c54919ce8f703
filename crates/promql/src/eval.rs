//! The evaluator: preloads every selector's series once, then evaluates the expression
//! tree at each step.

use std::collections::HashMap;
use std::time::Instant;

use strata_types::histogram::{CounterResetHint, HistogramSample};
use strata_types::{Labels, Sample, is_stale_nan};

use crate::engine::EngineOptions;
use crate::error::{Error, exec};
use crate::queryable::{Queryable, SelectHints, Series};
use crate::syntax::ast::{AtModifier, Expr, SubqueryExpr, VectorSelector};
use crate::value::{Element, RangeSeries, Value};

/// Points of one series in a range argument: a window into the preloaded ones (shared,
/// not copied), or points of their own (subquery results, windows that had staleness
/// markers removed).
#[derive(Debug, Clone)]
pub(crate) enum Shared<T> {
    Owned(Vec<T>),
    Window(std::sync::Arc<Vec<T>>, std::ops::Range<usize>),
}

/// A range argument's float samples.
pub(crate) type Samples = Shared<Sample>;
/// A range argument's native histogram samples.
pub(crate) type Histograms = Shared<HistogramSample>;

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Shared::Owned(Vec::new())
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            Shared::Owned(v) => v,
            Shared::Window(all, range) => all.get(range.clone()).unwrap_or_default(),
        }
    }
}

/// One series of a range argument.
#[derive(Debug, Clone)]
pub(crate) struct ArgSeries {
    pub(crate) labels: Labels,
    pub(crate) samples: Samples,
    pub(crate) drop_name: bool,
    /// Native histogram samples of the window (only where histograms are supported).
    pub(crate) histograms: Histograms,
    /// Known to hold no counter reset (no sample below the one before it); false when
    /// unknown.
    pub(crate) no_resets: bool,
}

impl ArgSeries {
    fn into_range_series(self) -> RangeSeries {
        RangeSeries {
            labels: self.labels,
            samples: self.samples.to_vec(),
            histograms: self.histograms.to_vec(),
            drop_name: self.drop_name,
        }
    }
}

/// A series' decoded float samples, shared so range windows can point into them, with
/// what the window functions look up in them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Floats {
    pub(crate) samples: std::sync::Arc<Vec<Sample>>,
    /// Indices of stale markers, ascending: whether a window holds one is a binary search,
    /// not a scan of the window at every step.
    pub(crate) stale: Vec<u32>,
    /// Indices `j` where `v[j] < v[j - 1]` (counter resets), ascending; `None` where they
    /// are too many to be worth keeping (a gauge): a window without one needs no reset scan.
    pub(crate) resets: Option<Vec<u32>>,
}

impl Floats {
    pub(crate) fn new(samples: Vec<Sample>) -> Self {
        let (stale, resets) = sample_index(&samples);
        Floats {
            samples: std::sync::Arc::new(samples),
            stale,
            resets,
        }
    }
}

/// The stale marker and counter reset indices of `samples` (see [`Floats`]).
pub(crate) fn sample_index(samples: &[Sample]) -> (Vec<u32>, Option<Vec<u32>>) {
    /// Samples checked by one branch-free pass before any is looked at one by one.
    const BLOCK: usize = 64;
    let mut stale = Vec::new();
    // Beyond one reset in eight samples the list costs more than the scans it saves.
    let limit = samples.len() / 8;
    let mut resets = Some(Vec::new());
    let mut previous = f64::NEG_INFINITY;
    for (b, block) in samples.chunks(BLOCK).enumerate() {
        // Most blocks hold neither a stale marker nor a fall in value: one pass without
        // branches says so.
        let mut before = previous;
        let mut unusual = false;
        for s in block {
            unusual |= is_stale_nan(s.v) | (s.v < before);
            before = s.v;
        }
        if unusual {
            for (j, s) in block.iter().enumerate() {
                let i = b * BLOCK + j;
                if is_stale_nan(s.v) {
                    stale.push(i as u32);
                }
                if s.v < previous
                    && let Some(list) = resets.as_mut()
                {
                    if list.len() >= limit {
                        resets = None;
                    } else {
                        list.push(i as u32);
                    }
                }
                previous = s.v;
            }
        }
        previous = before;
    }
    (stale, resets)
}

/// The stale marker indices of `samples` alone (what [`sample_index`] gives first).
pub(crate) fn stale_index(samples: &[Sample]) -> Vec<u32> {
    /// Samples checked by one branch-free pass before any is looked at one by one.
    const BLOCK: usize = 64;
    let mut stale = Vec::new();
    for (b, block) in samples.chunks(BLOCK).enumerate() {
        if !block.iter().fold(false, |any, s| any | is_stale_nan(s.v)) {
            continue;
        }
        for (j, s) in block.iter().enumerate() {
            if is_stale_nan(s.v) {
                stale.push((b * BLOCK + j) as u32);
            }
        }
    }
    stale
}

static NO_FLOATS: std::sync::LazyLock<Floats> = std::sync::LazyLock::new(Floats::default);

/// A preloaded series.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) labels: Labels,
    /// The decoded float samples: set at load, or, for samples the storage kept encoded,
    /// when a step-by-step evaluation first needs them ([`Evaluator::materialize`]).
    floats: std::sync::OnceLock<Floats>,
    /// The float samples still encoded (then `floats` is set only once materialized).
    pub(crate) encoded: Option<std::sync::Arc<dyn crate::queryable::EncodedSamples>>,
    /// Native histogram samples (stale markers included), only for selectors whose
    /// consumer handles histograms; shared, so range windows can point into them.
    pub(crate) histograms: std::sync::Arc<Vec<HistogramSample>>,
    /// Indices of histogram stale markers, ascending.
    pub(crate) histogram_stale: Vec<u32>,
}

impl Loaded {
    fn new(labels: Labels, samples: Vec<Sample>) -> Self {
        Loaded {
            labels,
            floats: std::sync::OnceLock::from(Floats::new(samples)),
            encoded: None,
            histograms: std::sync::Arc::default(),
            histogram_stale: Vec::new(),
        }
    }

    /// The decoded float samples (none before [`Evaluator::materialize`] for encoded ones).
    pub(crate) fn floats(&self) -> &Floats {
        self.floats.get().unwrap_or(&NO_FLOATS)
    }

    /// The decoded float samples if they are (no decoding).
    pub(crate) fn decoded(&self) -> Option<&Floats> {
        self.floats.get()
    }
}

/// The newest histogram sample in `(ref_time - lookback, ref_time]`.
fn newest_histogram(
    histograms: &[HistogramSample],
    ref_time: i64,
    lookback: i64,
) -> Option<&HistogramSample> {
    let hi = histograms.partition_point(|h| h.t <= ref_time);
    let h = histograms.get(hi.checked_sub(1)?)?;
    (h.t > ref_time.saturating_sub(lookback)).then_some(h)
}

/// The histogram samples of `s` in `(ref_time - range, ref_time]`, without stale markers:
/// a window into them unless it holds a stale marker.
fn histogram_window(s: &Loaded, ref_time: i64, range: i64) -> Histograms {
    let all = &s.histograms;
    let lo = all.partition_point(|h| h.t <= ref_time.saturating_sub(range));
    let hi = all.partition_point(|h| h.t <= ref_time);
    if !any_in(&s.histogram_stale, lo..hi) {
        return Histograms::Window(std::sync::Arc::clone(all), lo..hi);
    }
    Histograms::Owned(
        all.get(lo..hi)
            .unwrap_or_default()
            .iter()
            .filter(|h| !h.is_stale())
            .cloned()
            .collect(),
    )
}

/// Whether an ascending index list has an entry in `range`.
pub(crate) fn any_in(indices: &[u32], range: std::ops::Range<usize>) -> bool {
    let from = indices.partition_point(|&i| (i as usize) < range.start);
    indices.get(from).is_some_and(|&i| (i as usize) < range.end)
}

/// A range vector handed to a function, with what extrapolation needs to know.
#[derive(Debug, Clone)]
pub(crate) struct RangeArg {
    pub(crate) series: Vec<ArgSeries>,
    /// Range in ms.
    pub(crate) range: i64,
    /// End of the window (evaluation time after `@` and `offset`).
    pub(crate) ref_time: i64,
}

pub(crate) struct Evaluator<'a> {
    pub(crate) opts: &'a EngineOptions,
    /// First step evaluated by this evaluator (a slice of a range query, or the instant).
    pub(crate) start: i64,
    /// Last step evaluated by this evaluator.
    pub(crate) end: i64,
    /// The whole query's start and end, what `@ start()` and `@ end()` mean.
    query_start: i64,
    query_end: i64,
    pub(crate) interval: i64,
    deadline: Instant,
    /// Every selector's series, loaded once for the whole query (shared by the evaluators of
    /// its slices): what each slice sees does not depend on how the query is sliced.
    pub(crate) data: std::sync::Arc<HashMap<usize, Vec<Loaded>>>,
    /// Per subquery node, its inner results by (step-aligned) time: the inner expression's
    /// value depends only on the time, and consecutive outer steps share most of their
    /// windows, so each inner step is evaluated once. Entries left of the latest window
    /// are dropped, which bounds the cache by one window per node.
    subqueries: HashMap<usize, std::collections::BTreeMap<i64, Value>>,
    /// Per selector node, the window of each series at the last evaluation time (`lo..hi`
    /// into its samples) and that time: steps move forward, so the next window is found by
    /// walking on from there instead of binary searches through every series.
    cursors: HashMap<usize, Cursors>,
    /// Per range-function call node, its values at every step of this evaluator, computed
    /// series by series in one pass at the first step that asks (`None`: not eligible).
    pub(crate) step_values: HashMap<usize, Option<crate::steps::StepValues>>,
    /// Per aggregation node, the group of each input label set seen so far.
    pub(crate) group_cache: HashMap<usize, crate::aggregate::GroupCache>,
    /// Per binary-operator node, signatures and result labels of the label sets seen.
    pub(crate) match_cache: HashMap<usize, crate::binop::MatchCache>,
    pub(crate) loaded_samples: usize,
    /// Points of the range query's result so far, over all slices (an upper bound: each
    /// step counts every series seen so far), counted against `max_samples`.
    output_points: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Values held by every evaluator of the query in `step_values` (shared by its slices),
    /// counted with the loaded samples against `max_samples`; `own_step_cells` are this
    /// evaluator's, given back when it is dropped.
    pub(crate) step_cells: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub(crate) own_step_cells: usize,
    /// Held while a slice decodes a selector's encoded samples (shared by the slices).
    materialize_lock: std::sync::Arc<std::sync::Mutex<()>>,
    /// Selector nodes whose samples this evaluator knows to be decoded.
    materialized: std::collections::HashSet<usize>,
    annotations: crate::annotations::Annotations,
}

impl Drop for Evaluator<'_> {
    fn drop(&mut self) {
        self.step_cells
            .fetch_sub(self.own_step_cells, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(crate) fn key(vs: &VectorSelector) -> usize {
    std::ptr::from_ref(vs) as usize
}

/// Window positions of one selector's series; see `Evaluator::cursors`.
#[derive(Debug, Default)]
struct Cursors {
    ref_time: i64,
    range: i64,
    windows: Vec<(usize, usize)>,
}

impl Cursors {
    /// The windows `(ref_time - range, ref_time]` of every series, walked on from the last
    /// ones when time moved forward with the same range, else found by binary search.
    fn advance(&mut self, series: &[Loaded], ref_time: i64, range: i64) {
        let forward =
            self.windows.len() == series.len() && self.range == range && ref_time >= self.ref_time;
        if !forward {
            self.windows = series
                .iter()
                .map(|s| {
                    (
                        s.floats()
                            .samples
                            .partition_point(|p| p.t <= ref_time.saturating_sub(range)),
                        s.floats().samples.partition_point(|p| p.t <= ref_time),
                    )
                })
                .collect();
        } else {
            for (s, (lo, hi)) in series.iter().zip(self.windows.iter_mut()) {
                let samples = &s.floats().samples;
                while samples.get(*hi).is_some_and(|p| p.t <= ref_time) {
                    *hi += 1;
                }
                while samples
                    .get(*lo)
                    .is_some_and(|p| p.t <= ref_time.saturating_sub(range))
                {
                    *lo += 1;
                }
            }
        }
        self.ref_time = ref_time;
        self.range = range;
    }
}

impl<'a> Evaluator<'a> {
    pub(crate) fn new(
        opts: &'a EngineOptions,
        start: i64,
        end: i64,
        interval: i64,
        deadline: Instant,
    ) -> Self {
        Evaluator {
            opts,
            start,
            end,
            query_start: start,
            query_end: end,
            interval,
            deadline,
            data: std::sync::Arc::new(HashMap::new()),
            subqueries: HashMap::new(),
            cursors: HashMap::new(),
            step_values: HashMap::new(),
            group_cache: HashMap::new(),
            match_cache: HashMap::new(),
            loaded_samples: 0,
            output_points: std::sync::Arc::default(),
            step_cells: std::sync::Arc::default(),
            own_step_cells: 0,
            materialize_lock: std::sync::Arc::default(),
            materialized: std::collections::HashSet::new(),
            annotations: crate::annotations::Annotations::default(),
        }
    }

    /// Restricts this evaluator to the steps `[start, end]` of a query spanning
    /// `[query_start, query_end]`, whose data `loaded` preloaded.
    pub(crate) fn for_slice(
        mut self,
        query_start: i64,
        query_end: i64,
        loaded: &Evaluator<'_>,
    ) -> Self {
        self.query_start = query_start;
        self.query_end = query_end;
        self.data = std::sync::Arc::clone(&loaded.data);
        self.loaded_samples = loaded.loaded_samples;
        self.output_points = std::sync::Arc::clone(&loaded.output_points);
        self.step_cells = std::sync::Arc::clone(&loaded.step_cells);
        self.materialize_lock = std::sync::Arc::clone(&loaded.materialize_lock);
        self
    }

    /// The annotations of this evaluation, taken.
    pub(crate) fn take_annotations(&mut self) -> crate::annotations::Annotations {
        std::mem::take(&mut self.annotations)
    }

    pub(crate) fn annotate(&mut self, a: crate::annotations::Annotation) {
        self.annotations.add(a);
    }

    /// The evaluation time after an `@` modifier.
    pub(crate) fn at_time(&self, at: Option<&AtModifier>, ts: i64) -> i64 {
        match at {
            None => ts,
            Some(AtModifier::Start) => self.query_start,
            Some(AtModifier::End) => self.query_end,
            Some(AtModifier::At(t)) => *t,
        }
    }

    /// Loads the series of every selector in `expr` for every time the evaluation can ask.
    pub(crate) fn preload(&mut self, q: &dyn Queryable, expr: &Expr) -> Result<(), Error> {
        self.preload_node(q, expr, self.start, self.end, None, true)
    }

    fn eval_window(&self, at: Option<&AtModifier>, offset: i64, lo: i64, hi: i64) -> (i64, i64) {
        let off = offset;
        match at {
            Some(_) => {
                let t = self.at_time(at, lo);
                (t.saturating_sub(off), t.saturating_sub(off))
            }
            None => (lo.saturating_sub(off), hi.saturating_sub(off)),
        }
    }

    /// `hist`: whether what consumes `expr`'s value handles native histograms (see
    /// [`HISTOGRAM_CONSUMERS`]); selectors elsewhere refuse series holding them.
    fn preload_node(
        &mut self,
        q: &dyn Queryable,
        expr: &Expr,
        lo: i64,
        hi: i64,
        func: Option<&str>,
        hist: bool,
    ) -> Result<(), Error> {
        crate::syntax::grow(|| self.preload_inner(q, expr, lo, hi, func, hist))
    }

    fn preload_inner(
        &mut self,
        q: &dyn Queryable,
        expr: &Expr,
        lo: i64,
        hi: i64,
        func: Option<&str>,
        hist: bool,
    ) -> Result<(), Error> {
        match expr {
            Expr::VectorSelector(vs) => {
                let (from, to) = self.eval_window(vs.at.as_ref(), vs.offset, lo, hi);
                self.load(
                    q,
                    vs,
                    from.saturating_sub(self.opts.lookback_delta),
                    to,
                    0,
                    func,
                    hist,
                )
            }
            Expr::MatrixSelector(ms) => {
                let (from, to) = self.eval_window(ms.vs.at.as_ref(), ms.vs.offset, lo, hi);
                let range = ms.range;
                self.load(q, &ms.vs, from.saturating_sub(range), to, range, func, hist)
            }
            Expr::Subquery(sq) => {
                let (from, to) = self.eval_window(sq.at.as_ref(), sq.offset, lo, hi);
                let range = sq.range;
                // A subquery's points carry histograms to where its consumer takes them.
                self.preload_node(q, &sq.expr, from.saturating_sub(range), to, func, hist)
            }
            // The function a selector's data is for is the nearest enclosing call or
            // aggregation, through parentheses, unary operators and subqueries, and none
            // past a binary operator (Prometheus' `extractFuncFromPath`): it decides which
            // aggregate of downsampled data is read and whether replicas are counters.
            Expr::Aggregate(agg) => {
                let name = Some(agg.op.name());
                if let Some(param) = &agg.param {
                    self.preload_node(q, param, lo, hi, name, false)?;
                }
                // `sum` and `avg` give histograms of histograms; `count` and `group` count
                // them; the others pass them by with an info.
                let takes = match agg.op.name() {
                    "sum" | "avg" => hist,
                    "count" | "group" | "min" | "max" | "stddev" | "stdvar" | "quantile"
                    | "topk" | "bottomk" | "count_values" => true,
                    _ => false,
                };
                self.preload_node(q, &agg.expr, lo, hi, name, takes)
            }
            // Negation, arithmetic and filtering comparisons give histograms where they
            // take them; `bool` comparisons give floats; `and`/`unless` only match on the
            // right side's labels.
            Expr::Unary(u) => self.preload_node(q, &u.expr, lo, hi, func, hist),
            Expr::Binary(b) => {
                use crate::syntax::ast::BinOp;
                let rhs_hist = match b.op {
                    BinOp::And | BinOp::Unless => true,
                    _ => hist || b.return_bool,
                };
                self.preload_node(q, &b.lhs, lo, hi, None, hist || b.return_bool)?;
                self.preload_node(q, &b.rhs, lo, hi, None, rhs_hist)
            }
            Expr::Paren(p) => self.preload_node(q, &p.expr, lo, hi, func, hist),
            Expr::Call(call) => {
                for (i, arg) in call.args.iter().enumerate() {
                    let flag = match crate::functions::histogram_arg(call.func.name, i) {
                        Some(crate::functions::HistogramArg::Consumes) => true,
                        Some(crate::functions::HistogramArg::Passes) => hist,
                        None => false,
                    };
                    self.preload_node(q, arg, lo, hi, Some(call.func.name), flag)?;
                }
                Ok(())
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn load(
        &mut self,
        q: &dyn Queryable,
        vs: &VectorSelector,
        from: i64,
        to: i64,
        range: i64,
        func: Option<&str>,
        hist: bool,
    ) -> Result<(), Error> {
        let matchers = vs.matchers.clone();
        let hints = SelectHints {
            start: from,
            end: to,
            step: self.interval,
            range,
            func: func.map(str::to_owned),
        };
        let series = q.select(&matchers, &hints)?;
        self.loaded_samples += series
            .iter()
            .map(|s| s.float_count() + s.histograms.len())
            .sum::<usize>();
        if self.loaded_samples > self.opts.max_samples {
            return Err(Error::TooManySamples("query execution"));
        }
        if !hist && let Some(s) = series.iter().find(|s| !s.histograms.is_empty()) {
            return Err(exec(format!(
                "native histogram samples of series {} are not supported here yet (the experimental functions over them)",
                s.labels
            )));
        }
        let loaded = series
            .into_iter()
            .map(|s: Series| {
                let mut loaded = match s.encoded {
                    Some(encoded) => Loaded {
                        labels: s.labels,
                        floats: std::sync::OnceLock::new(),
                        encoded: Some(encoded),
                        histograms: std::sync::Arc::default(),
                        histogram_stale: Vec::new(),
                    },
                    None => Loaded::new(s.labels, s.samples),
                };
                loaded.histogram_stale = s
                    .histograms
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.is_stale())
                    .map(|(i, _)| i as u32)
                    .collect();
                loaded.histograms = std::sync::Arc::new(s.histograms);
                loaded
            })
            .collect();
        std::sync::Arc::make_mut(&mut self.data).insert(key(vs), loaded);
        Ok(())
    }

    /// Decodes the float samples of selector `node`'s series that the storage kept encoded,
    /// once for the query (every slice shares them): for evaluation step by step, which
    /// reads them at every step.
    pub(crate) fn materialize(&mut self, node: usize) -> Result<(), Error> {
        if self.materialized.contains(&node) {
            return Ok(());
        }
        if let Some(series) = self.data.get(&node)
            && series
                .iter()
                .any(|s| s.encoded.is_some() && s.decoded().is_none())
        {
            // One slice decodes while the others wait for it.
            let _guard = self
                .materialize_lock
                .lock()
                .map_err(|_| exec("a slice of the query failed while decoding"))?;
            for (i, s) in series.iter().enumerate() {
                if i % 256 == 0 {
                    self.check_deadline()?;
                }
                if let (Some(encoded), None) = (&s.encoded, s.decoded()) {
                    let mut samples = Vec::with_capacity(encoded.len());
                    encoded
                        .decode(i64::MIN, i64::MAX, &mut samples)
                        .map_err(|e| Error::Storage(format!("series {}: {e}", s.labels)))?;
                    let _ = s.floats.set(Floats::new(samples));
                }
            }
        }
        self.materialized.insert(node);
        Ok(())
    }

    pub(crate) fn check_deadline(&self) -> Result<(), Error> {
        if self
            .opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(Error::Canceled("query execution"));
        }
        if Instant::now() > self.deadline {
            return Err(Error::Timeout("query execution"));
        }
        Ok(())
    }

    /// Instant query: evaluate once and finalise labels.
    pub(crate) fn eval_top(&mut self, expr: &Expr, ts: i64) -> Result<Value, Error> {
        let value = self.eval(expr, ts)?;
        match value {
            Value::Vector(v) => Ok(Value::Vector(finalize_vector(v)?)),
            Value::Matrix(m) => {
                let mut out: Vec<RangeSeries> = m
                    .into_iter()
                    .map(|mut s| {
                        if s.drop_name {
                            s.labels = without_name(&s.labels);
                            s.drop_name = false;
                        }
                        s
                    })
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Ok(Value::Matrix(out))
            }
            other => Ok(other),
        }
    }

    /// Range query: evaluate at every step and assemble a matrix sorted by labels.
    pub(crate) fn eval_range_top(&mut self, expr: &Expr) -> Result<Value, Error> {
        // Output series by slot. The same input series comes back at every step with the
        // same (shared) label set, so the slot and the delayed `__name__` removal are
        // worked out once per input set (keyed by its identity, kept alive in `pinned`),
        // not once per step.
        let mut out: Vec<RangeSeries> = Vec::new();
        let mut by_labels: HashMap<Labels, usize> = HashMap::new();
        let mut by_identity: crate::identity::IdentityMap<(usize, bool), usize> =
            crate::identity::IdentityMap::default();
        let mut pinned: Vec<Labels> = Vec::new();
        let mut filled_at: Vec<i64> = Vec::new();
        let mut slot_for = |labels: &Labels,
                            drop_name: bool,
                            out: &mut Vec<RangeSeries>,
                            filled_at: &mut Vec<i64>|
         -> usize {
            let key = (labels.identity(), drop_name);
            if let Some(&slot) = by_identity.get(&key) {
                return slot;
            }
            let output = if drop_name {
                without_name(labels)
            } else {
                labels.clone()
            };
            let slot = *by_labels.entry(output.clone()).or_insert_with(|| {
                out.push(RangeSeries {
                    labels: output,
                    samples: Vec::new(),
                    histograms: Vec::new(),
                    drop_name: false,
                });
                filled_at.push(i64::MIN);
                out.len() - 1
            });
            by_identity.insert(key, slot);
            pinned.push(labels.clone());
            slot
        };
        let mut ts = self.start;
        while ts <= self.end {
            self.check_deadline()?;
            match self.eval(expr, ts)? {
                Value::Scalar { v, .. } => {
                    let slot = slot_for(&Labels::empty(), false, &mut out, &mut filled_at);
                    if let Some(series) = out.get_mut(slot) {
                        series.samples.push(Sample::new(ts, v));
                    }
                }
                Value::Vector(vector) => {
                    let any_dropped = vector.iter().any(|e| e.drop_name);
                    for e in vector {
                        let slot = slot_for(&e.labels, e.drop_name, &mut out, &mut filled_at);
                        if let Some(at) = filled_at.get_mut(slot) {
                            if *at == ts && any_dropped {
                                return Err(exec(
                                    "vector cannot contain metrics with the same labelset",
                                ));
                            }
                            *at = ts;
                        }
                        if let Some(series) = out.get_mut(slot) {
                            match e.h {
                                Some(h) => series.histograms.push(HistogramSample { t: ts, h }),
                                None => series.samples.push(Sample::new(ts, e.v)),
                            }
                        }
                    }
                }
                Value::Matrix(_) => {
                    return Err(Error::Parse(
                        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".to_owned(),
                    ));
                }
                Value::String { .. } => {
                    return Err(Error::Parse(
                        "invalid expression type \"string\" for range query, must be Scalar or instant Vector".to_owned(),
                    ));
                }
            }
            let steps_points = out.len().max(1);
            let total = self
                .output_points
                .fetch_add(steps_points, std::sync::atomic::Ordering::Relaxed)
                .saturating_add(steps_points);
            if total.saturating_add(self.loaded_samples) > self.opts.max_samples {
                return Err(Error::TooManySamples("query execution"));
            }
            match ts.checked_add(self.interval) {
                Some(next) if self.interval > 0 => ts = next,
                _ => break,
            }
        }
        drop(pinned);
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Value::Matrix(out))
    }

    pub(crate) fn eval(&mut self, expr: &Expr, ts: i64) -> Result<Value, Error> {
        crate::syntax::grow(|| self.eval_node(expr, ts))
    }

    fn eval_node(&mut self, expr: &Expr, ts: i64) -> Result<Value, Error> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar { t: ts, v: n.val }),
            Expr::StringLiteral(s) => Ok(Value::String {
                t: ts,
                s: s.val.clone(),
            }),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) if !u.negate => self.eval(&u.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                Value::Scalar { t, v } => Ok(Value::Scalar { t, v: -v }),
                Value::Vector(v) => Ok(Value::Vector(
                    v.into_iter()
                        .map(|e| Element {
                            v: -e.v,
                            h: e.h.map(|h| {
                                let mut h = (*h).clone();
                                h.mul(-1.0);
                                std::sync::Arc::new(h)
                            }),
                            t: ts,
                            drop_name: true,
                            ..e
                        })
                        .collect(),
                )),
                _ => Err(exec(
                    "unary expression only allowed on expressions of type scalar or instant vector",
                )),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.eval_vector_selector(vs, ts)?)),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                let arg = self.eval_range(expr, ts)?;
                Ok(Value::Matrix(
                    arg.series
                        .into_iter()
                        .map(ArgSeries::into_range_series)
                        .collect(),
                ))
            }
            Expr::Binary(b) => crate::binop::eval_binary(self, b, ts),
            Expr::Aggregate(a) => crate::aggregate::eval_aggregate(self, a, ts),
            Expr::Call(c) => crate::functions::eval_call(self, c, ts),
        }
    }

    /// Evaluates to an instant vector or fails.
    pub(crate) fn eval_vector(&mut self, expr: &Expr, ts: i64) -> Result<Vec<Element>, Error> {
        match self.eval(expr, ts)? {
            Value::Vector(v) => Ok(v),
            other => Err(exec(format!(
                "expected instant vector, got {}",
                type_name(&other)
            ))),
        }
    }

    /// Evaluates to a scalar or fails.
    pub(crate) fn eval_scalar(&mut self, expr: &Expr, ts: i64) -> Result<f64, Error> {
        match self.eval(expr, ts)? {
            Value::Scalar { v, .. } => Ok(v),
            other => Err(exec(format!("expected scalar, got {}", type_name(&other)))),
        }
    }

    fn eval_vector_selector(
        &mut self,
        vs: &VectorSelector,
        ts: i64,
    ) -> Result<Vec<Element>, Error> {
        let ref_time = self.at_time(vs.at.as_ref(), ts) - vs.offset;
        let lookback = self.opts.lookback_delta;
        self.materialize(key(vs))?;
        let Some(series) = self.data.get(&key(vs)) else {
            return Ok(Vec::new());
        };
        let cursors = self.cursors.entry(key(vs)).or_default();
        cursors.advance(series, ref_time, lookback);
        let mut out = Vec::with_capacity(series.len());
        for (s, &(lo, hi)) in series.iter().zip(&cursors.windows) {
            // Newest sample with t <= ref_time, inside the left-open lookback window.
            let float = (hi > lo).then(|| s.floats().samples.get(hi - 1)).flatten();
            if !s.histograms.is_empty()
                && let Some(h) = newest_histogram(&s.histograms, ref_time, lookback)
                && float.is_none_or(|f| f.t < h.t)
            {
                if !h.is_stale() {
                    out.push(Element {
                        labels: s.labels.clone(),
                        t: h.t,
                        v: 0.0,
                        h: Some(std::sync::Arc::clone(&h.h)),
                        drop_name: false,
                    });
                }
                continue;
            }
            let Some(sample) = float else {
                continue;
            };
            if is_stale_nan(sample.v) {
                continue;
            }
            out.push(Element {
                labels: s.labels.clone(),
                t: sample.t,
                v: sample.v,
                h: None,
                drop_name: false,
            });
        }
        Ok(out)
    }

    /// Evaluates a range selector or subquery at `ts` into a range vector.
    pub(crate) fn eval_range(&mut self, expr: &Expr, ts: i64) -> Result<RangeArg, Error> {
        crate::syntax::grow(|| self.eval_range_node(expr, ts))
    }

    fn eval_range_node(&mut self, expr: &Expr, ts: i64) -> Result<RangeArg, Error> {
        match expr {
            Expr::Paren(p) => self.eval_range(&p.expr, ts),
            Expr::MatrixSelector(ms) => {
                let vs = &ms.vs;
                let range = ms.range;
                let ref_time = self.at_time(vs.at.as_ref(), ts) - vs.offset;
                let mut out = Vec::new();
                self.materialize(key(vs))?;
                if let Some(series) = self.data.get(&key(vs)) {
                    let cursors = self.cursors.entry(key(vs)).or_default();
                    cursors.advance(series, ref_time, range);
                    for (s, &(lo, hi)) in series.iter().zip(&cursors.windows) {
                        let histograms = if s.histograms.is_empty() {
                            Histograms::default()
                        } else {
                            histogram_window(s, ref_time, range)
                        };
                        let floats = s.floats();
                        let window = floats.samples.get(lo..hi).unwrap_or_default();
                        if window.is_empty() && histograms.is_empty() {
                            continue;
                        }
                        let has_stale = any_in(&floats.stale, lo..hi);
                        let no_resets = !has_stale
                            && floats
                                .resets
                                .as_deref()
                                .is_some_and(|r| !any_in(r, lo + 1..hi));
                        let samples = if has_stale {
                            let kept: Vec<Sample> = window
                                .iter()
                                .filter(|p| !is_stale_nan(p.v))
                                .copied()
                                .collect();
                            if kept.is_empty() && histograms.is_empty() {
                                continue;
                            }
                            Samples::Owned(kept)
                        } else {
                            Samples::Window(std::sync::Arc::clone(&floats.samples), lo..hi)
                        };
                        out.push(ArgSeries {
                            labels: s.labels.clone(),
                            samples,
                            drop_name: false,
                            histograms,
                            no_resets,
                        });
                    }
                }
                Ok(RangeArg {
                    series: out,
                    range,
                    ref_time,
                })
            }
            Expr::Subquery(sq) => self.eval_subquery(sq, ts),
            _ => Err(exec("expected range vector")),
        }
    }

    fn eval_subquery(&mut self, sq: &SubqueryExpr, ts: i64) -> Result<RangeArg, Error> {
        let range = sq.range;
        let step = if sq.step > 0 {
            sq.step
        } else {
            self.opts.default_subquery_step
        };
        let ref_time = self.at_time(sq.at.as_ref(), ts) - sq.offset;
        let window_start = ref_time.saturating_sub(range);
        // First step-aligned time after the (left-open) window start, as Go computes it.
        let mut t = step.saturating_mul(window_start / step);
        if t <= window_start {
            t = t.saturating_add(step);
        }
        let node = std::ptr::from_ref(sq) as usize;
        let mut cache = self.subqueries.remove(&node).unwrap_or_default();
        let result = self.subquery_window(sq, t, step, ref_time, &mut cache);
        // Keep what a later (forward-moving) window can still use.
        cache = cache.split_off(&window_start.saturating_add(1));
        self.subqueries.insert(node, cache);
        let by_labels = result?;
        Ok(RangeArg {
            series: by_labels,
            range,
            ref_time,
        })
    }

    /// The inner results of `sq` at `first, first + step, …, ≤ ref_time`, from `cache` or
    /// evaluated (and cached), as range series.
    fn subquery_window(
        &mut self,
        sq: &SubqueryExpr,
        first: i64,
        step: i64,
        ref_time: i64,
        cache: &mut std::collections::BTreeMap<i64, Value>,
    ) -> Result<Vec<ArgSeries>, Error> {
        let mut by_labels: Vec<RangeSeries> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        // Identities of label sets held by `cache` for the whole call, so never reused.
        let mut by_identity: crate::identity::IdentityMap<usize, usize> =
            crate::identity::IdentityMap::default();
        // Points of this window, counted against `max_samples` with the loaded samples (at
        // most one series a step more than held: a bound, not an exact count).
        let mut points = 0usize;
        let mut t = first;
        while t <= ref_time {
            self.check_deadline()?;
            if let std::collections::btree_map::Entry::Vacant(slot) = cache.entry(t) {
                slot.insert(self.eval(&sq.expr, t)?);
            }
            match cache.get(&t) {
                Some(Value::Vector(v)) => {
                    for e in v {
                        if e.h.is_none() && is_stale_nan(e.v) {
                            continue;
                        }
                        // The same series comes back at most inner steps with the same
                        // (shared) label set: found by its identity before its contents.
                        let slot = match by_identity.get(&e.labels.identity()) {
                            Some(&slot) => slot,
                            None => {
                                let slot = *index.entry(e.labels.clone()).or_insert_with(|| {
                                    by_labels.push(RangeSeries {
                                        labels: e.labels.clone(),
                                        samples: Vec::new(),
                                        histograms: Vec::new(),
                                        drop_name: e.drop_name,
                                    });
                                    by_labels.len() - 1
                                });
                                by_identity.insert(e.labels.identity(), slot);
                                slot
                            }
                        };
                        if let Some(series) = by_labels.get_mut(slot) {
                            match &e.h {
                                // As Prometheus: counter reset hints are not trusted through a
                                // subquery (it may skip or repeat the sample they are about).
                                Some(h) => series.histograms.push(HistogramSample {
                                    t,
                                    h: match h.counter_reset_hint {
                                        CounterResetHint::NotCounterReset
                                        | CounterResetHint::CounterReset => {
                                            let mut h = (**h).clone();
                                            h.counter_reset_hint = CounterResetHint::Unknown;
                                            std::sync::Arc::new(h)
                                        }
                                        _ => std::sync::Arc::clone(h),
                                    },
                                }),
                                None => series.samples.push(Sample::new(t, e.v)),
                            }
                            series.drop_name |= e.drop_name;
                        }
                    }
                }
                Some(Value::Scalar { v, .. }) => {
                    let v = *v;
                    let slot = *index.entry(Labels::empty()).or_insert_with(|| {
                        by_labels.push(RangeSeries {
                            labels: Labels::empty(),
                            samples: Vec::new(),
                            histograms: Vec::new(),
                            drop_name: false,
                        });
                        by_labels.len() - 1
                    });
                    if let Some(series) = by_labels.get_mut(slot) {
                        series.samples.push(Sample::new(t, v));
                    }
                }
                _ => return Err(exec("subquery is only allowed on instant vector or scalar")),
            }
            points = points.saturating_add(by_labels.len());
            if points.saturating_add(self.loaded_samples) > self.opts.max_samples {
                return Err(Error::TooManySamples("query execution"));
            }
            match t.checked_add(step) {
                Some(next) => t = next,
                None => break,
            }
        }
        Ok(by_labels
            .into_iter()
            .map(|r| ArgSeries {
                labels: r.labels,
                samples: Samples::Owned(r.samples),
                drop_name: r.drop_name,
                histograms: Histograms::Owned(r.histograms),
                no_resets: false,
            })
            .collect())
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Scalar { .. } => "scalar",
        Value::String { .. } => "string",
        Value::Vector(_) => "instant vector",
        Value::Matrix(_) => "range vector",
    }
}

pub(crate) fn without_name(labels: &Labels) -> Labels {
    let mut b = labels.to_builder();
    b.delete("__name__");
    b.build()
}

/// Applies delayed `__name__` removal and rejects duplicate label sets.
pub(crate) fn finalize_vector(vector: Vec<Element>) -> Result<Vec<Element>, Error> {
    let mut out = Vec::with_capacity(vector.len());
    let mut any_dropped = false;
    for mut e in vector {
        if e.drop_name {
            e.labels = without_name(&e.labels);
            e.drop_name = false;
            any_dropped = true;
        }
        out.push(e);
    }
    if any_dropped {
        check_unique(&out)?;
    }
    Ok(out)
}

pub(crate) fn check_unique(vector: &[Element]) -> Result<(), Error> {
    let mut seen = std::collections::HashSet::with_capacity(vector.len());
    for e in vector {
        if !seen.insert(&e.labels) {
            return Err(exec("vector cannot contain metrics with the same labelset"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-by-one definition `sample_index`'s block pass must agree with.
    fn sample_index_reference(samples: &[Sample]) -> (Vec<u32>, Option<Vec<u32>>) {
        let mut stale = Vec::new();
        let limit = samples.len() / 8;
        let mut resets = Some(Vec::new());
        let mut previous = f64::NEG_INFINITY;
        for (i, s) in samples.iter().enumerate() {
            if is_stale_nan(s.v) {
                stale.push(i as u32);
            }
            if s.v < previous
                && let Some(list) = resets.as_mut()
            {
                if list.len() >= limit {
                    resets = None;
                } else {
                    list.push(i as u32);
                }
            }
            previous = s.v;
        }
        (stale, resets)
    }

    #[test]
    fn sample_index_finds_what_a_sample_by_sample_pass_finds() {
        // A counter with resets and stale markers at block edges and inside blocks, NaNs,
        // and densities on both sides of the reset limit.
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            state >> 33
        };
        for len in [0usize, 1, 63, 64, 65, 127, 128, 129, 1000] {
            for odds in [0u64, 2, 20, 200, 5000] {
                let mut v = 0.0;
                let samples: Vec<Sample> = (0..len)
                    .map(|i| {
                        let roll = next() % 10_000;
                        v = if odds > 0 && roll < odds {
                            0.0
                        } else if odds > 0 && roll < 2 * odds {
                            f64::from_bits(strata_types::STALE_NAN_BITS)
                        } else if odds > 0 && roll < 2 * odds + 5 {
                            f64::NAN
                        } else if v.is_nan() {
                            1.0
                        } else {
                            v + 1.0
                        };
                        Sample::new(i as i64, v)
                    })
                    .collect();
                let reference = sample_index_reference(&samples);
                assert_eq!(stale_index(&samples), reference.0, "len {len}, odds {odds}");
                assert_eq!(sample_index(&samples), reference, "len {len}, odds {odds}");
            }
        }
    }

    #[test]
    fn any_in_finds_entries_inside_a_range_only() {
        let indices = [2u32, 5, 9];
        assert!(!any_in(&indices, 0..2));
        assert!(any_in(&indices, 0..3));
        assert!(!any_in(&indices, 3..5));
        assert!(any_in(&indices, 5..6));
        assert!(!any_in(&indices, 10..20));
        assert!(!any_in(&[], 0..100));
        assert!(!any_in(&indices, 4..4));
    }

    #[test]
    fn loaded_series_know_their_resets_and_stale_markers() {
        let values = [
            1.0,
            2.0,
            0.5,
            3.0,
            strata_types::stale_nan(),
            4.0,
            5.0,
            6.0,
            7.0,
        ];
        let mut values = values.to_vec();
        values.extend((8..40).map(f64::from));
        let samples: Vec<Sample> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample::new(i as i64 * 1000, v))
            .collect();
        let loaded = Floats::new(samples);
        assert_eq!(loaded.stale, [4]);
        // 0.5 after 2.0; the stale marker compares as no reset on either side.
        assert_eq!(loaded.resets.as_deref(), Some(&[2u32][..]));
        // A gauge going up and down has too many to keep.
        let gauge: Vec<Sample> = (0..80)
            .map(|i| Sample::new(i * 1000, f64::from((i % 2) as u8)))
            .collect();
        assert!(Floats::new(gauge).resets.is_none());
    }
}
