//! Runs Prometheus' own PromQL test scripts (`tests/testdata/*.test`, from Prometheus 3.5.3) against our engine
//! and prints `passed / failed / skipped` per file. Files listed in `REQUIRED` must have no
//! failures; evals that need what the engine refuses for native histograms (with its
//! "not supported here yet" error), custom-bucket histograms made from classic ones, or
//! experimental features are skipped by reason, never dropped silently. Native histograms
//! of the `{{…}}` notation are stored as Prometheus' head would store them (written into
//! chunks and read back) and compared as Prometheus' runner compares them (compacted).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strata_promql::syntax::ParseOptions;
use strata_promql::syntax::ast::{AggOp, Expr, VectorSelector};
use strata_promql::{Engine, EngineOptions, MemQueryable, Value};
use strata_types::histogram::{CounterResetHint, FloatHistogram, HistogramSample, Span};
use strata_types::{Labels, Matcher, Sample, stale_nan};

/// Files in which every non-skipped eval must pass.
const REQUIRED: &[&str] = &[
    "aggregators.test",
    "at_modifier.test",
    "collision.test",
    "functions.test",
    "histograms.test",
    "literals.test",
    "name_label_dropping.test",
    "native_histograms.test",
    "operators.test",
    "range_queries.test",
    "selectors.test",
    "staleness.test",
    "subquery.test",
    "trig_functions.test",
];

/// Files of experimental features (see the README beside them): an eval there that fails is
/// reported as skipped for "experimental feature not implemented", not as a failure.
const EXPERIMENTAL: &[&str] = &[
    "duration_expression.test",
    "limit.test",
    "type_and_unit.test",
];

fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata")
}

// ---------------------------------------------------------------- parsing helpers

/// Prometheus durations (`1h30m`, `500ms`, `-5m`) or plain seconds, to milliseconds.
fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let value = if let Ok(secs) = body.parse::<f64>() {
        (secs * 1000.0).round() as i64
    } else {
        let mut total: i64 = 0;
        let mut rest = body;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return None;
            }
            let n: i64 = rest[..digits].parse().ok()?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let ms = match unit {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                "y" => 365 * 86_400_000,
                _ => return None,
            };
            total += n * ms;
        }
        total
    };
    Some(if neg { -value } else { value })
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => {
            if let Some(hex) = s.strip_prefix("0x") {
                return i64::from_str_radix(hex, 16).ok().map(|v| v as f64);
            }
            s.parse::<f64>().ok()
        }
    }
}

/// One expanded value: a sample, a gap, or a native histogram.
#[derive(Debug, Clone)]
enum Point {
    Value(f64),
    Gap,
    Histogram(Box<FloatHistogram>),
}

/// A `[1 2 3]` list of floats.
fn float_list(s: &str) -> Option<Vec<f64>> {
    s.strip_prefix('[')?
        .strip_suffix(']')?
        .split_whitespace()
        .map(parse_float)
        .collect()
}

/// The histogram notation of the test files, `{{schema:0 sum:5 count:4 buckets:[1 2 1]}}`
/// (Prometheus' `buildHistogramFromMap`): `buckets`/`n_buckets` are absolute counts of one
/// span starting at `offset`/`n_offset`.
fn parse_histogram(token: &str) -> Option<FloatHistogram> {
    let inner = token.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let mut h = FloatHistogram::default();
    let (mut buckets, mut n_buckets) = (Vec::new(), Vec::new());
    let (mut offset, mut n_offset) = (0i32, 0i32);
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once(':')?;
        let after = after.trim_start();
        let (value, next) = if after.starts_with('[') {
            let end = after.find(']')? + 1;
            after.split_at(end)
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            after.split_at(end)
        };
        rest = next.trim_start();
        match key.trim() {
            "schema" => h.schema = value.parse().ok()?,
            "sum" => h.sum = parse_float(value)?,
            "count" => h.count = parse_float(value)?,
            "z_bucket" => h.zero_count = parse_float(value)?,
            "z_bucket_w" => h.zero_threshold = parse_float(value)?,
            "buckets" => buckets = float_list(value)?,
            "n_buckets" => n_buckets = float_list(value)?,
            "offset" => offset = value.parse().ok()?,
            "n_offset" => n_offset = value.parse().ok()?,
            "custom_values" => h.custom_values = float_list(value)?,
            "counter_reset_hint" => {
                h.counter_reset_hint = match value {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::CounterReset,
                    "not_reset" => CounterResetHint::NotCounterReset,
                    "gauge" => CounterResetHint::Gauge,
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
    if !buckets.is_empty() {
        h.positive_spans = vec![Span {
            offset,
            length: buckets.len() as u32,
        }];
    }
    if !n_buckets.is_empty() {
        h.negative_spans = vec![Span {
            offset: n_offset,
            length: n_buckets.len() as u32,
        }];
    }
    h.positive_buckets = buckets;
    h.negative_buckets = n_buckets;
    Some(h)
}

/// `{{a}}`, `{{a}}xN` (N + 1 copies), `{{a}}+{{b}}xN` and `{{a}}-{{b}}xN` (a, a±b, a±2b, …:
/// Prometheus' `histogramsSeries`).
fn expand_histograms(token: &str) -> Option<Vec<FloatHistogram>> {
    let (body, times) = match token.rsplit_once("}}x") {
        Some((head, n)) => (format!("{head}}}}}"), Some(n.parse::<usize>().ok()?)),
        None => (token.to_owned(), None),
    };
    let (base, inc, negative) = match body.find("}}+{{").or_else(|| body.find("}}-{{")) {
        Some(i) => {
            let negative = body.get(i + 2..i + 3) == Some("-");
            (
                parse_histogram(body.get(..i + 2)?)?,
                Some(parse_histogram(body.get(i + 3..)?)?),
                negative,
            )
        }
        None => (parse_histogram(&body)?, None, false),
    };
    let n = times.unwrap_or(0);
    let mut out = vec![base.clone()];
    let mut cur = base;
    for _ in 0..n {
        if let Some(inc) = &inc {
            let mut next = cur.clone();
            if negative {
                next.sub(inc).ok()?;
            } else {
                next.add(inc).ok()?;
            }
            cur = next;
        }
        out.push(cur.clone());
    }
    Some(out)
}

/// Splits a values string into tokens, keeping `{{ … }}` histograms whole.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '{' => {
                depth += 1;
                current.push(c);
            }
            '}' => {
                depth -= 1;
                current.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Expands the series-values notation (`1+2x3`, `_x2`, `stale`, `{{…}}`).
fn expand_values(s: &str) -> Option<Vec<Point>> {
    let mut out = Vec::new();
    for token in tokens(s) {
        if token.contains("{{") {
            out.extend(
                expand_histograms(&token)?
                    .into_iter()
                    .map(|h| Point::Histogram(Box::new(h))),
            );
            continue;
        }
        if token == "_" {
            out.push(Point::Gap);
            continue;
        }
        if let Some(n) = token.strip_prefix("_x") {
            out.extend(std::iter::repeat_n(Point::Gap, n.parse().ok()?));
            continue;
        }
        if token == "stale" {
            out.push(Point::Value(stale_nan()));
            continue;
        }
        if let Some((head, times)) = token.rsplit_once('x')
            && let Ok(n) = times.parse::<usize>()
        {
            // head is `a`, `a+b` or `a-b` (a may itself be signed).
            let split = head.char_indices().skip(1).find(|&(i, c)| {
                (c == '+' || c == '-') && !matches!(head.as_bytes().get(i - 1), Some(b'e' | b'E'))
            });
            let (start, step) = match split {
                Some((i, _)) => (parse_float(&head[..i])?, parse_float(&head[i..])?),
                None => (parse_float(head)?, 0.0),
            };
            for k in 0..=n {
                out.push(Point::Value(start + step * k as f64));
            }
            continue;
        }
        out.push(Point::Value(parse_float(&token)?));
    }
    Some(out)
}

/// Parses `name{a="b", c="d"}` / `{a="b"}` / `name` at the start of `line`; returns the
/// labels and the rest of the line.
fn parse_series_desc(line: &str) -> Option<(Labels, &str)> {
    let line = line.trim_start();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    if name_end > 0 {
        pairs.push(("__name__".into(), line[..name_end].to_owned()));
    }
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let consumed;
        loop {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() || c == ',' {
                    chars.next();
                } else {
                    break;
                }
            }
            let &(i, c) = chars.peek()?;
            if c == '}' {
                consumed = i + 1;
                break;
            }
            // label name, possibly quoted
            let name = if c == '"' {
                chars.next();
                read_quoted(&mut chars, '"')?
            } else {
                let mut name = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                name
            };
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            match chars.peek() {
                Some(&(_, '=')) => {
                    chars.next();
                    while let Some(&(_, c)) = chars.peek() {
                        if c.is_whitespace() {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    let (_, quote) = chars.next()?;
                    let value = read_quoted(&mut chars, quote)?;
                    pairs.push((name, value));
                }
                // `{"metric_name"}`: a quoted metric name alone.
                _ => pairs.push(("__name__".into(), name)),
            }
        }
        rest = &inner[consumed..];
    }
    if pairs.is_empty() && !line.starts_with('{') {
        return None;
    }
    Some((Labels::from_pairs(pairs), rest))
}

fn read_quoted(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    quote: char,
) -> Option<String> {
    let mut out = String::new();
    loop {
        let (_, c) = chars.next()?;
        if c == quote {
            return Some(out);
        }
        if c == '\\' && quote != '`' {
            let (_, escaped) = chars.next()?;
            out.push(match escaped {
                'n' => '\n',
                't' => '\t',
                other => other,
            });
        } else {
            out.push(c);
        }
    }
}

// ---------------------------------------------------------------- the runner

#[derive(Debug, Default)]
struct FileReport {
    passed: usize,
    failed: usize,
    skipped: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

#[derive(Debug)]
enum Expectation {
    Fail(Option<String>),
    Ordered,
    Warn(Option<String>),
    Info(Option<String>),
    NoWarn,
    NoInfo,
    String(String),
    RangeVector(i64, i64, i64),
}

struct Eval {
    line: usize,
    range: Option<(i64, i64, i64)>,
    at: i64,
    query: String,
    expectations: Vec<Expectation>,
    results: Vec<String>,
}

struct Env {
    store: MemQueryable,
    histogram_series: Vec<Labels>,
}

fn collect_selectors<'e>(expr: &'e Expr, out: &mut Vec<&'e VectorSelector>) {
    match expr {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Subquery(s) => collect_selectors(&s.expr, out),
        Expr::Aggregate(a) => {
            collect_selectors(&a.expr, out);
            if let Some(p) = &a.param {
                collect_selectors(p, out);
            }
        }
        Expr::Unary(u) => collect_selectors(&u.expr, out),
        Expr::Binary(b) => {
            collect_selectors(&b.lhs, out);
            collect_selectors(&b.rhs, out);
        }
        Expr::Paren(p) => collect_selectors(&p.expr, out),
        Expr::Call(c) => {
            for a in &c.args {
                collect_selectors(a, out);
            }
        }
        _ => {}
    }
}

fn uses_experimental(expr: &Expr) -> bool {
    match expr {
        Expr::Call(c) => c.func.experimental || c.args.iter().any(uses_experimental),
        Expr::Aggregate(a) => {
            matches!(a.op, AggOp::Limitk | AggOp::LimitRatio)
                || uses_experimental(&a.expr)
                || a.param.as_ref().is_some_and(|p| uses_experimental(p))
        }
        Expr::Binary(b) => uses_experimental(&b.lhs) || uses_experimental(&b.rhs),
        Expr::Unary(u) => uses_experimental(&u.expr),
        Expr::Paren(p) => uses_experimental(&p.expr),
        Expr::Subquery(s) => uses_experimental(&s.expr),
        _ => false,
    }
}

fn matchers_of(vs: &VectorSelector) -> Vec<Matcher> {
    vs.matchers.clone()
}

fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < 1e-6
}

/// Histograms as Prometheus' head returns them: written into chunks (cut at resets and
/// layout changes, each chunk in the union of its histograms' layouts) and read back, with
/// the counter reset hints the chunks give.
fn as_stored(histograms: &[(i64, FloatHistogram)]) -> Result<Vec<HistogramSample>, String> {
    let chunks = strata_chunkenc::encode_float_histograms(histograms).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(histograms.len());
    for c in chunks {
        let mut it =
            strata_chunkenc::FloatHistogramIter::new(&c.data).map_err(|e| e.to_string())?;
        out.extend(it.by_ref().map(|(t, h)| HistogramSample {
            t,
            h: std::sync::Arc::new(h),
        }));
        it.finish().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// A classic histogram at one time being collected into a custom-bucket histogram
/// (Prometheus' `convertnhcb.TempHistogram`).
#[derive(Debug, Default, Clone)]
struct TempHistogram {
    /// (upper bound, cumulative count), ascending bounds.
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: f64,
    bad: bool,
}

impl TempHistogram {
    fn set_bucket(&mut self, le: f64, count: f64) {
        if self.bad || count < 0.0 {
            self.bad = true;
            return;
        }
        let i = self.buckets.partition_point(|b| b.0 < le);
        if self.buckets.get(i).is_some_and(|b| b.0 == le) {
            return;
        }
        let below = i.checked_sub(1).and_then(|j| self.buckets.get(j));
        if below.is_some_and(|b| count < b.1) || self.buckets.get(i).is_some_and(|b| count > b.1) {
            self.bad = true;
            return;
        }
        self.buckets.insert(i, (le, count));
    }

    /// `Convert`: the custom-bucket histogram, `None` where Prometheus' conversion fails.
    fn convert(mut self) -> Option<FloatHistogram> {
        if self.bad {
            return None;
        }
        let count = match self.count {
            Some(c) => c,
            None => self.buckets.last().map_or(0.0, |b| b.1),
        };
        if self.buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
            self.buckets.push((f64::INFINITY, count));
        }
        if self.buckets.last().is_some_and(|b| b.1 != count) {
            return None;
        }
        let mut counts = Vec::with_capacity(self.buckets.len());
        let mut prev = 0.0;
        for (_, c) in &self.buckets {
            counts.push(c - prev);
            prev = *c;
        }
        let custom_values: Vec<f64> = self
            .buckets
            .iter()
            .map(|b| b.0)
            .filter(|le| *le != f64::INFINITY)
            .collect();
        Some(FloatHistogram {
            schema: strata_types::histogram::CUSTOM_BUCKETS_SCHEMA,
            count,
            sum: self.sum,
            positive_spans: vec![Span {
                offset: 0,
                length: counts.len() as u32,
            }],
            positive_buckets: counts,
            custom_values,
            ..FloatHistogram::default()
        })
    }
}

/// `load_with_nhcb`: the classic histograms of the load (`_bucket`, `_count`, `_sum`
/// series) also stored as custom-bucket native histograms under their base name, as
/// Prometheus' test runner does.
fn add_nhcb(env: &mut Env, classic: &[(Labels, Vec<Sample>)]) -> Result<(), String> {
    let mut by_base: BTreeMap<Labels, BTreeMap<i64, TempHistogram>> = BTreeMap::new();
    for (labels, samples) in classic {
        let name = labels.metric_name().unwrap_or("");
        let (base, kind) = if let Some(b) = name.strip_suffix("_bucket") {
            (b, 0)
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, 1)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (b, 2)
        } else {
            continue;
        };
        let le = match kind {
            0 => match labels.get("le").map(parse_float) {
                Some(Some(le)) if !le.is_nan() => le,
                _ => continue,
            },
            _ => 0.0,
        };
        let mut b = labels.to_builder();
        b.set("__name__", base.to_owned());
        b.delete("le");
        let by_t = by_base.entry(b.build()).or_default();
        for s in samples.iter().filter(|s| !s.v.is_nan()) {
            let h = by_t.entry(s.t).or_default();
            match kind {
                0 => h.set_bucket(le, s.v),
                1 if s.v < 0.0 => h.bad = true,
                1 => h.count = Some(s.v),
                _ => h.sum = s.v,
            }
        }
    }
    for (labels, by_t) in by_base {
        let converted: Vec<(i64, FloatHistogram)> = by_t
            .into_iter()
            .filter_map(|(t, h)| Some((t, h.convert()?)))
            .collect();
        if converted.is_empty() {
            continue;
        }
        env.histogram_series.push(labels.clone());
        env.store.add_histograms(labels, &as_stored(&converted)?);
    }
    Ok(())
}

fn load(env: &mut Env, interval: i64, lines: &[String], nhcb: bool) -> Result<(), String> {
    let mut classic = Vec::new();
    for line in lines {
        let (labels, rest) =
            parse_series_desc(line).ok_or_else(|| format!("bad series line {line:?}"))?;
        let points = expand_values(rest).ok_or_else(|| format!("bad values in {line:?}"))?;
        let mut samples = Vec::new();
        let mut histograms: Vec<(i64, FloatHistogram)> = Vec::new();
        for (i, p) in points.iter().enumerate() {
            match p {
                Point::Value(v) => samples.push(Sample::new(i as i64 * interval, *v)),
                Point::Gap => {}
                Point::Histogram(h) => histograms.push((i as i64 * interval, (**h).clone())),
            }
        }
        if !histograms.is_empty() {
            env.histogram_series.push(labels.clone());
            env.store
                .add_histograms(labels.clone(), &as_stored(&histograms)?);
        }
        if nhcb {
            classic.push((labels.clone(), samples.clone()));
        }
        if !samples.is_empty() {
            env.store.add(labels, &samples);
        }
    }
    if nhcb {
        add_nhcb(env, &classic)?;
    }
    Ok(())
}

enum Outcome {
    Pass,
    Fail(String),
    Skip(&'static str),
}

fn expected_series(results: &[String]) -> Result<Vec<(Labels, Vec<Point>)>, String> {
    let mut out = Vec::new();
    for line in results {
        let (labels, rest) =
            parse_series_desc(line).ok_or_else(|| format!("bad expected line {line:?}"))?;
        out.push((
            labels,
            expand_values(rest).ok_or_else(|| format!("bad expected values {line:?}"))?,
        ));
    }
    Ok(out)
}

fn run_eval(engine: &Engine, env: &Env, eval: &Eval) -> Outcome {
    let experimental = ParseOptions {
        experimental_functions: true,
    };
    let expr = match Engine::parse_with(&eval.query, experimental) {
        Ok(e) => e,
        Err(e) => {
            if eval
                .expectations
                .iter()
                .any(|x| matches!(x, Expectation::Fail(_)))
            {
                return Outcome::Pass;
            }
            if eval.query.contains("{{") {
                return Outcome::Skip("native histograms");
            }
            if eval.query.contains(">/") || eval.query.contains("</") {
                return Outcome::Skip("experimental feature");
            }
            return Outcome::Fail(format!("parse error: {e}"));
        }
    };
    let mut selectors = Vec::new();
    collect_selectors(&expr, &mut selectors);
    // An eval whose selectors reach series holding native histograms runs anyway; only if it
    // fails is it counted as needing native histograms.
    let touches = |series: &[Labels]| {
        selectors.iter().any(|vs| {
            let matchers = matchers_of(vs);
            series.iter().any(|l| {
                matchers
                    .iter()
                    .all(|m| m.matches(l.get(m.name()).unwrap_or("")))
            })
        })
    };
    let touches_histograms = touches(&env.histogram_series);
    if uses_experimental(&expr) {
        return Outcome::Skip("experimental feature");
    }
    match check_eval(engine, env, eval, &expr) {
        // What the engine refuses with native histograms (rather than answering otherwise).
        Outcome::Fail(msg) if touches_histograms && msg.contains("not supported here yet") => {
            Outcome::Skip("native histograms: not implemented")
        }
        Outcome::Skip(_) if touches_histograms => Outcome::Skip("native histograms"),
        outcome => outcome,
    }
}

fn check_eval(engine: &Engine, env: &Env, eval: &Eval, expr: &Expr) -> Outcome {
    let result = match eval.range {
        Some((start, end, step)) => engine.range_expr(&env.store, expr, start, end, step),
        None => engine.instant_expr(&env.store, expr, eval.at),
    };
    let expect_fail = eval.expectations.iter().find_map(|x| match x {
        Expectation::Fail(m) => Some(m.clone()),
        _ => None,
    });
    let result = match (result, expect_fail) {
        (Err(err), Some(None)) => {
            let _ = err;
            return Outcome::Pass;
        }
        (Err(err), Some(Some(pattern))) => {
            let message = err.to_string();
            let ok = match pattern.strip_prefix("regex:") {
                Some(re) => regex::Regex::new(re.trim().trim_matches('"'))
                    .is_ok_and(|r| r.is_match(&message)),
                None => {
                    let want = pattern.trim_start_matches("msg:").trim().trim_matches('"');
                    message == want
                }
            };
            return if ok {
                Outcome::Pass
            } else {
                Outcome::Fail(format!("error {message:?} does not match {pattern:?}"))
            };
        }
        (Ok(_), Some(_)) => return Outcome::Fail("expected an error, query succeeded".to_owned()),
        (Err(err), None) => return Outcome::Fail(format!("unexpected error: {err}")),
        (Ok(result), None) => result,
    };
    let outcome = compare(eval, &result.value);
    if let Outcome::Fail(_) = outcome {
        return outcome;
    }
    for x in &eval.expectations {
        match x {
            Expectation::Warn(pattern) => {
                if let Some(outcome) =
                    check_annotation("warning", pattern.as_deref(), &result.warnings())
                {
                    return outcome;
                }
            }
            Expectation::Info(pattern) => {
                if let Some(outcome) = check_annotation("info", pattern.as_deref(), &result.infos())
                {
                    return outcome;
                }
            }
            Expectation::NoWarn if !result.warnings().is_empty() => {
                return Outcome::Fail(format!("unexpected warnings {:?}", result.warnings()));
            }
            Expectation::NoInfo if !result.infos().is_empty() => {
                return Outcome::Fail(format!("unexpected infos {:?}", result.infos()));
            }
            _ => {}
        }
    }
    outcome
}

/// `msg: text` or `regex: pattern` after an annotation expectation.
fn annotation_pattern(arg: &str) -> Option<String> {
    if arg.is_empty() {
        None
    } else {
        Some(arg.to_owned())
    }
}

/// Checks an expected annotation; `None` when satisfied.
fn check_annotation(kind: &str, pattern: Option<&str>, got: &[String]) -> Option<Outcome> {
    let Some(pattern) = pattern else {
        return got
            .is_empty()
            .then(|| Outcome::Fail(format!("expected a {kind} annotation, got none")));
    };
    let matched = match pattern.strip_prefix("regex:") {
        Some(re) => regex::Regex::new(re.trim()).is_ok_and(|r| got.iter().any(|g| r.is_match(g))),
        None => {
            let want = pattern.trim_start_matches("msg:").trim();
            got.iter().any(|g| g == want)
        }
    };
    if matched {
        None
    } else {
        Some(Outcome::Fail(format!(
            "expected {kind} {pattern:?}, got {got:?}"
        )))
    }
}

fn compare(eval: &Eval, value: &Value) -> Outcome {
    let ordered = eval
        .expectations
        .iter()
        .any(|x| matches!(x, Expectation::Ordered));
    if let Some(s) = eval.expectations.iter().find_map(|x| match x {
        Expectation::String(s) => Some(s),
        _ => None,
    }) {
        return match value {
            Value::String { s: got, .. } if got == s => Outcome::Pass,
            other => Outcome::Fail(format!("expected string {s:?}, got {other:?}")),
        };
    }
    let range_vector = eval.expectations.iter().find_map(|x| match x {
        Expectation::RangeVector(a, b, c) => Some((*a, *b, *c)),
        _ => None,
    });
    // A bare number is a scalar expectation.
    if eval.range.is_none()
        && eval.results.len() == 1
        && tokens(&eval.results[0]).len() == 1
        && let Some(want) = parse_float(eval.results[0].trim())
    {
        return match value {
            Value::Scalar { v, .. } if almost_equal(*v, want) => Outcome::Pass,
            other => Outcome::Fail(format!("expected scalar {want}, got {other:?}")),
        };
    }
    let expected = match expected_series(&eval.results) {
        Ok(e) => e,
        Err(e) => return Outcome::Fail(e),
    };
    let grid: Option<(i64, i64)> = match (eval.range, range_vector) {
        (Some((start, _, step)), _) => Some((start, step)),
        (None, Some((start, _, step))) => Some((start, step)),
        (None, None) => None,
    };
    match (value, grid) {
        (Value::Vector(v), None) => {
            if v.len() != expected.len() {
                return Outcome::Fail(format!(
                    "expected {} elements, got {}: {:?}",
                    expected.len(),
                    v.len(),
                    summarize_vector(v)
                ));
            }
            for (i, (labels, points)) in expected.iter().enumerate() {
                let found = if ordered {
                    v.get(i).filter(|e| &e.labels == labels)
                } else {
                    v.iter().find(|e| &e.labels == labels)
                };
                let want = match points.first() {
                    Some(Point::Value(x)) => *x,
                    Some(Point::Histogram(want)) => match found.map(|e| e.h.as_deref()) {
                        Some(Some(got)) if histograms_match(want, got) => continue,
                        Some(got) => {
                            return Outcome::Fail(format!(
                                "{labels}: expected {want:?}, got {got:?}"
                            ));
                        }
                        None => {
                            return Outcome::Fail(format!(
                                "missing {labels} (got {:?})",
                                summarize_vector(v)
                            ));
                        }
                    },
                    _ => return Outcome::Fail(format!("bad expectation for {labels}")),
                };
                match found {
                    Some(e) if e.h.is_none() && almost_equal(e.v, want) => {}
                    Some(e) => {
                        return Outcome::Fail(format!("{labels}: expected {want}, got {}", e.v));
                    }
                    None => {
                        return Outcome::Fail(format!(
                            "missing {labels} (got {:?})",
                            summarize_vector(v)
                        ));
                    }
                }
            }
            Outcome::Pass
        }
        (Value::Matrix(m), Some((start, step))) => {
            let mut want_series = 0;
            for (labels, points) in &expected {
                let want: Vec<(i64, f64)> = points
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| match p {
                        Point::Value(v) => Some((start + i as i64 * step, *v)),
                        _ => None,
                    })
                    .collect();
                let want_histograms: Vec<(i64, &FloatHistogram)> = points
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| match p {
                        Point::Histogram(h) => Some((start + i as i64 * step, &**h)),
                        _ => None,
                    })
                    .collect();
                if want.is_empty() && want_histograms.is_empty() {
                    continue;
                }
                want_series += 1;
                let Some(got) = m.iter().find(|s| &s.labels == labels) else {
                    return Outcome::Fail(format!(
                        "missing series {labels}; got {:?}",
                        m.iter().map(|s| s.labels.to_string()).collect::<Vec<_>>()
                    ));
                };
                if got.histograms.len() != want_histograms.len()
                    || got
                        .histograms
                        .iter()
                        .zip(&want_histograms)
                        .any(|(g, w)| g.t != w.0 || !histograms_match(w.1, &g.h))
                {
                    return Outcome::Fail(format!(
                        "{labels}: expected histograms {want_histograms:?}, got {:?}",
                        got.histograms
                    ));
                }
                let got_points: Vec<(i64, f64)> = got.samples.iter().map(|s| (s.t, s.v)).collect();
                if got_points.len() != want.len()
                    || got_points
                        .iter()
                        .zip(&want)
                        .any(|(g, w)| g.0 != w.0 || !almost_equal(g.1, w.1))
                {
                    return Outcome::Fail(format!(
                        "{labels}: expected {want:?}, got {got_points:?}"
                    ));
                }
            }
            if m.len() != want_series {
                return Outcome::Fail(format!(
                    "expected {want_series} series, got {}: {:?}",
                    m.len(),
                    m.iter().map(|s| s.labels.to_string()).collect::<Vec<_>>()
                ));
            }
            Outcome::Pass
        }
        (Value::Scalar { v, .. }, _) if expected.is_empty() => {
            Outcome::Fail(format!("got scalar {v}, expected nothing"))
        }
        (other, _) => {
            if expected.is_empty() {
                if let Value::Vector(v) = other
                    && v.is_empty()
                {
                    return Outcome::Pass;
                }
                if let Value::Matrix(m) = other
                    && m.is_empty()
                {
                    return Outcome::Pass;
                }
            }
            Outcome::Fail(format!("unexpected result type: {other:?}"))
        }
    }
}

/// Prometheus' `compareNativeHistogram` of both histograms compacted: schema, count, sum,
/// custom bounds, zero bucket and every bucket holding observations (index and count)
/// alike.
fn histograms_match(want: &FloatHistogram, got: &FloatHistogram) -> bool {
    let buckets = |spans: &[Span], counts: &[f64]| -> Vec<(i32, f64)> {
        let mut out = Vec::new();
        let mut idx = 0i32;
        let mut it = counts.iter();
        for s in spans {
            idx += s.offset;
            for _ in 0..s.length {
                if let Some(c) = it.next()
                    && *c != 0.0
                {
                    out.push((idx, *c));
                }
                idx += 1;
            }
        }
        out
    };
    let same = |a: Vec<(i32, f64)>, b: Vec<(i32, f64)>| {
        a.len() == b.len()
            && a.iter()
                .zip(&b)
                .all(|(x, y)| x.0 == y.0 && almost_equal(x.1, y.1))
    };
    want.schema == got.schema
        && almost_equal(want.count, got.count)
        && almost_equal(want.sum, got.sum)
        && (!want.uses_custom_buckets() || want.custom_values == got.custom_values)
        && want.zero_threshold == got.zero_threshold
        && almost_equal(want.zero_count, got.zero_count)
        && same(
            buckets(&want.positive_spans, &want.positive_buckets),
            buckets(&got.positive_spans, &got.positive_buckets),
        )
        && same(
            buckets(&want.negative_spans, &want.negative_buckets),
            buckets(&got.negative_spans, &got.negative_buckets),
        )
}

fn summarize_vector(v: &[strata_promql::Element]) -> Vec<String> {
    v.iter()
        .take(6)
        .map(|e| format!("{} {}", e.labels, e.v))
        .collect()
}

fn parse_expectation(line: &str) -> Option<Expectation> {
    let rest = line.trim().strip_prefix("expect ")?;
    let (kind, arg) = rest
        .split_once(' ')
        .map_or((rest, ""), |(k, a)| (k, a.trim()));
    Some(match kind {
        "fail" => Expectation::Fail(if arg.is_empty() {
            None
        } else {
            Some(arg.to_owned())
        }),
        "ordered" => Expectation::Ordered,
        "warn" => Expectation::Warn(annotation_pattern(arg)),
        "info" => Expectation::Info(annotation_pattern(arg)),
        "no_warn" => Expectation::NoWarn,
        "no_info" => Expectation::NoInfo,
        "string" => Expectation::String(arg.trim_matches(|c| c == '"' || c == '`').to_owned()),
        "range" => {
            // range vector from <a> to <b> step <c>
            let words: Vec<&str> = arg.split_whitespace().collect();
            match words.as_slice() {
                ["vector", "from", a, "to", b, "step", c] => {
                    Expectation::RangeVector(parse_time(a)?, parse_time(b)?, parse_time(c)?)
                }
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// An empty store; with `encoded`, float samples are handed to the engine still encoded
/// (as the querier hands over chunks), so it decodes them where it reads them.
fn new_store(encoded: bool) -> MemQueryable {
    let mut store = MemQueryable::new();
    store.encode_floats(encoded);
    store
}

fn run_file(engine: &Engine, path: &Path, experimental_file: bool, encoded: bool) -> FileReport {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut report = FileReport::default();
    let mut env = Env {
        store: new_store(encoded),
        histogram_series: Vec::new(),
    };
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let start_line = i + 1;
        // The block: this line and the following non-blank lines (comments dropped).
        let mut block = Vec::new();
        let mut j = i + 1;
        while j < lines.len() && !lines[j].trim().is_empty() {
            let l = lines[j].trim();
            if !l.starts_with('#') {
                if l.starts_with("eval") || l.starts_with("load") || l == "clear" {
                    break;
                }
                block.push(l.to_owned());
            }
            j += 1;
        }
        i = j;
        if line == "clear" {
            env = Env {
                store: new_store(encoded),
                histogram_series: Vec::new(),
            };
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("load_with_nhcb ")
            .or_else(|| line.strip_prefix("load "))
        {
            let interval = parse_time(rest).unwrap_or(60_000);
            if let Err(e) = load(
                &mut env,
                interval,
                &block,
                line.starts_with("load_with_nhcb"),
            ) {
                report
                    .failures
                    .push(format!("line {start_line}: load: {e}"));
            }
            continue;
        }
        if line.starts_with("eval") {
            let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
            let mut expectations = Vec::new();
            match command {
                "eval_fail" => expectations.push(Expectation::Fail(None)),
                "eval_ordered" => expectations.push(Expectation::Ordered),
                "eval_warn" => expectations.push(Expectation::Warn(None)),
                "eval_info" => expectations.push(Expectation::Info(None)),
                _ => {}
            }
            let (range, at, query) = if let Some(r) = rest.strip_prefix("instant at ") {
                let (t, q) = r.split_once(' ').unwrap_or((r, ""));
                (None, parse_time(t).unwrap_or(0), q.to_owned())
            } else if let Some(r) = rest.strip_prefix("range from ") {
                let words: Vec<&str> = r.splitn(6, ' ').collect();
                match words.as_slice() {
                    [a, "to", b, "step", c, q] => (
                        Some((
                            parse_time(a).unwrap_or(0),
                            parse_time(b).unwrap_or(0),
                            parse_time(c).unwrap_or(1),
                        )),
                        0,
                        (*q).to_owned(),
                    ),
                    _ => {
                        report.failed += 1;
                        report
                            .failures
                            .push(format!("line {start_line}: cannot parse {line:?}"));
                        continue;
                    }
                }
            } else {
                report.failed += 1;
                report
                    .failures
                    .push(format!("line {start_line}: cannot parse {line:?}"));
                continue;
            };
            let mut results = Vec::new();
            for l in &block {
                match parse_expectation(l) {
                    Some(x) => expectations.push(x),
                    None if l.starts_with("expect") => {}
                    None => results.push(l.clone()),
                }
            }
            let eval = Eval {
                line: start_line,
                range,
                at,
                query,
                expectations,
                results,
            };
            match run_eval(engine, &env, &eval) {
                Outcome::Pass => report.passed += 1,
                Outcome::Skip(reason) => {
                    if std::env::var_os("PROMQLTEST_SHOW_SKIPS").is_some() {
                        eprintln!("    skip line {}: {reason}: {}", eval.line, eval.query);
                    }
                    *report.skipped.entry(reason).or_default() += 1;
                }
                Outcome::Fail(_) if experimental_file => {
                    *report
                        .skipped
                        .entry("experimental feature not implemented")
                        .or_default() += 1;
                }
                Outcome::Fail(why) => {
                    report.failed += 1;
                    report
                        .failures
                        .push(format!("line {}: {}: {why}", eval.line, eval.query));
                }
            }
            continue;
        }
        report
            .failures
            .push(format!("line {start_line}: unknown command {line:?}"));
    }
    report
}

#[test]
fn prometheus_promql_test_files() {
    let dir = testdata_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    let engine = Engine::new(EngineOptions::default());
    let verbose = std::env::var_os("PROMQLTEST_VERBOSE").is_some();
    let only = std::env::var("PROMQLTEST_FILE").ok();
    let mut required_failures = Vec::new();
    let (mut total_pass, mut total_fail, mut total_skip) = (0, 0, 0);
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let experimental = EXPERIMENTAL.contains(&name.as_str());
        let mut report = run_file(&engine, &path, experimental, false);
        // Again with the samples kept encoded until the engine reads them: the same answers.
        let encoded = run_file(&engine, &path, experimental, true);
        if encoded.failed != report.failed || encoded.passed != report.passed {
            report.failed += 1;
            report.failures.push(format!(
                "with encoded samples: {} passed, {} failed: {:?}",
                encoded.passed, encoded.failed, encoded.failures
            ));
        }
        let skipped: usize = report.skipped.values().sum();
        total_pass += report.passed;
        total_fail += report.failed;
        total_skip += skipped;
        let reasons: Vec<String> = report
            .skipped
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        let required = REQUIRED.contains(&name.as_str());
        eprintln!(
            "promqltest {name:<28} {:>4} passed {:>4} failed {:>4} skipped{}{}",
            report.passed,
            report.failed,
            skipped,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            },
            if required { "  [required]" } else { "" }
        );
        if verbose {
            for f in &report.failures {
                eprintln!("    {f}");
            }
        }
        if required && (report.failed > 0 || !report.failures.is_empty()) {
            required_failures.push((name, report.failures));
        }
    }
    eprintln!("promqltest total: {total_pass} passed, {total_fail} failed, {total_skip} skipped");
    assert!(
        required_failures.is_empty(),
        "failures in required files: {required_failures:#?}"
    );
}
