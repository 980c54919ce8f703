//! PromQL functions over floats.

use crate::syntax::ast::{Call, Expr};
use strata_types::{Labels, Sample};

use crate::annotations::Annotation;
use crate::error::{Error, exec};
use crate::eval::{Evaluator, RangeArg};
use crate::value::{Element, Value};

/// Kahan-Neumaier summation step: returns the new sum and compensation.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Prometheus' warning for a quantile parameter outside [0, 1] (the parameter at `pos`).
pub(crate) fn check_quantile(ev: &mut Evaluator<'_>, q: f64, pos: usize) {
    if q.is_nan() || !(0.0..=1.0).contains(&q) {
        ev.annotate(Annotation::invalid_quantile(q, pos));
    }
}

/// Go's `%g`-style shortest formatting for messages.
pub(crate) fn go_g(v: f64) -> String {
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

/// The φ-quantile of `values` with linear interpolation (Prometheus' `quantile`).
pub(crate) fn quantile_of(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    let lo = values.get(lower as usize).copied().unwrap_or(f64::NAN);
    let hi = values.get(upper as usize).copied().unwrap_or(f64::NAN);
    lo * (1.0 - weight) + hi * weight
}

fn linear_regression(samples: &[Sample], intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = samples.first().map_or(0.0, |s| s.v);
    let mut const_y = true;
    for (i, s) in samples.iter().enumerate() {
        if const_y && i > 0 && s.v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (s.t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(s.v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * s.v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// rate / increase / delta with Prometheus' extrapolation to the window edges.
///
/// `no_resets` says the window is known to hold no counter reset, which spares the scan.
fn extrapolated_rate(w: &Window<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let (samples, no_resets) = (w.samples, w.no_resets);
    if samples.len() < 2 {
        return None;
    }
    let (first, last) = (samples.first()?, samples.last()?);
    let range_start = w.ref_time - w.range;
    let range_end = w.ref_time;
    let mut result = last.v - first.v;
    if is_counter && !no_resets {
        let mut prev = first.v;
        for s in samples.iter().skip(1) {
            if s.v < prev {
                result += prev;
            }
            prev = s.v;
        }
    }
    let zero_point = is_counter.then_some((first.v, result));
    let factor = extrapolation_factor(
        (first.t, last.t),
        samples.len() - 1,
        (range_start, range_end),
        w.range,
        is_rate,
        zero_point,
    );
    Some(result * factor)
}

/// The factor `extrapolatedRate` scales a window's increase by: to the window's edges when
/// the first and last samples are close enough to them (else half an average interval
/// beyond), not below the counter's zero point (`zero_point`: first value and increase of a
/// float counter), per second for `rate`.
pub(crate) fn extrapolation_factor(
    (first_t, last_t): (i64, i64),
    intervals: usize,
    (range_start, range_end): (i64, i64),
    range: i64,
    is_rate: bool,
    zero_point: Option<(f64, f64)>,
) -> f64 {
    let mut duration_to_start = (first_t - range_start) as f64 / 1000.0;
    let mut duration_to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let average = sampled_interval / intervals as f64;
    let threshold = average * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average / 2.0;
    }
    if let Some((first_v, result)) = zero_point {
        let mut duration_to_zero = duration_to_start;
        if result > 0.0 && first_v >= 0.0 {
            duration_to_zero = sampled_interval * (first_v / result);
        }
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average / 2.0;
    }
    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if is_rate {
        factor /= range as f64 / 1000.0;
    }
    factor
}

fn instant_value(samples: &[Sample], is_rate: bool) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let last = samples.last()?;
    let previous = samples.get(samples.len() - 2)?;
    let mut value = last.v - previous.v;
    if is_rate && last.v < previous.v {
        value = last.v;
    }
    let interval = last.t - previous.t;
    if interval == 0 {
        return None;
    }
    if is_rate {
        value /= interval as f64 / 1000.0;
    }
    Some(value)
}

fn avg_over(samples: &[Sample]) -> f64 {
    let Some(first) = samples.first() else {
        return f64::NAN;
    };
    let (mut sum, mut count) = (first.v, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, s) in samples.iter().enumerate().skip(1) {
        count = (i + 1) as f64;
        if !incremental {
            let (new_sum, new_c) = kahan_inc(s.v, sum, c);
            if !new_sum.is_infinite() {
                sum = new_sum;
                c = new_c;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(s.v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn stdvar_over(samples: &[Sample]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for s in samples {
        count += 1.0;
        let delta = s.v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (s.v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

/// The labels `absent()` reports: the selector's equality matchers (but the name).
fn absent_labels(expr: &Expr) -> Labels {
    let inner = match expr {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        _ => None,
    };
    let Some(vs) = inner else {
        return Labels::empty();
    };
    let matchers = vs.matchers.clone();
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    for m in matchers {
        if m.name() == "__name__" {
            continue;
        }
        let existing = pairs.iter().position(|(n, _)| n == m.name());
        match (m.kind(), existing) {
            (strata_types::MatchType::Equal, None) => {
                pairs.push((m.name().to_owned(), Some(m.value().to_owned())))
            }
            (_, Some(i)) => {
                if let Some(slot) = pairs.get_mut(i) {
                    slot.1 = None;
                }
            }
            (_, None) => pairs.push((m.name().to_owned(), None)),
        }
    }
    Labels::from_pairs(pairs.into_iter().filter_map(|(n, v)| v.map(|v| (n, v))))
}

fn days_from_civil_inverse(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn date_part(name: &str, seconds: f64) -> f64 {
    if seconds.is_nan() || seconds.is_infinite() {
        return f64::NAN;
    }
    let secs = seconds.floor() as i64;
    let days = secs.div_euclid(86_400);
    let secs_of_day = secs.rem_euclid(86_400);
    let (year, month, day) = days_from_civil_inverse(days);
    match name {
        "minute" => ((secs_of_day / 60) % 60) as f64,
        "hour" => (secs_of_day / 3600) as f64,
        "day_of_month" => f64::from(day),
        "day_of_week" => ((days + 4).rem_euclid(7)) as f64,
        "day_of_year" => {
            let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
            let base = cumulative.get((month - 1) as usize).copied().unwrap_or(0);
            let leap = u32::from(month > 2 && is_leap(year));
            f64::from(base + day + leap)
        }
        "days_in_month" => {
            let days = match month {
                2 => {
                    if is_leap(year) {
                        29
                    } else {
                        28
                    }
                }
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            f64::from(days)
        }
        "month" => f64::from(month),
        "year" => year as f64,
        _ => f64::NAN,
    }
}

fn simple(name: &str, v: f64) -> Option<f64> {
    Some(match name {
        "abs" => v.abs(),
        "ceil" => v.ceil(),
        "floor" => v.floor(),
        "exp" => v.exp(),
        "sqrt" => v.sqrt(),
        "ln" => crate::gomath::log(v),
        "log2" => crate::gomath::log2(v),
        "log10" => crate::gomath::log10(v),
        "sgn" => {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }
        "sin" => v.sin(),
        "cos" => v.cos(),
        "tan" => v.tan(),
        "asin" => v.asin(),
        "acos" => v.acos(),
        "atan" => v.atan(),
        "sinh" => v.sinh(),
        "cosh" => v.cosh(),
        "tanh" => v.tanh(),
        "asinh" => v.asinh(),
        "acosh" => v.acosh(),
        "atanh" => v.atanh(),
        "deg" => v * 180.0 / std::f64::consts::PI,
        "rad" => v * std::f64::consts::PI / 180.0,
        _ => return None,
    })
}

/// Applies a float function to each element; histograms are left out (Prometheus'
/// `simpleFloatFunc`).
fn map_vector(v: Vec<Element>, ts: i64, f: impl Fn(f64) -> f64) -> Vec<Element> {
    v.into_iter()
        .filter(|e| e.h.is_none())
        .map(|e| Element {
            v: f(e.v),
            t: ts,
            drop_name: true,
            ..e
        })
        .collect()
}

/// Applies a function of a range vector's samples to each series.
fn over_time(
    arg: RangeArg,
    ts: i64,
    keep_name: bool,
    f: impl Fn(&RangeArg, &[Sample]) -> Option<f64>,
) -> Vec<Element> {
    let mut out = Vec::with_capacity(arg.series.len());
    for s in &arg.series {
        if let Some(v) = f(&arg, &s.samples) {
            out.push(Element {
                labels: s.labels.clone(),
                t: ts,
                v,
                h: None,
                drop_name: !keep_name || s.drop_name,
            });
        }
    }
    out
}

/// One window of one series, as a range function sees it.
pub(crate) struct Window<'a> {
    /// The window's samples (stale markers removed), oldest first.
    pub(crate) samples: &'a [Sample],
    /// Known to hold no counter reset (false when unknown).
    pub(crate) no_resets: bool,
    /// The range (ms).
    pub(crate) range: i64,
    /// The window's end (evaluation time after `@` and `offset`).
    pub(crate) ref_time: i64,
}

/// A range function whose value depends on one window only (no other argument): what the
/// evaluator may compute for a series at every step in one pass.
#[derive(Clone, Copy)]
pub(crate) struct WindowFunction {
    /// Keeps the metric name (`last_over_time`, `first_over_time`).
    pub(crate) keep_name: bool,
    /// The value of a non-empty window; `None` for no output.
    pub(crate) f: fn(&Window<'_>) -> Option<f64>,
}

/// The range functions of one window and no other argument, by name.
pub(crate) fn window_function(name: &str) -> Option<WindowFunction> {
    fn drop(f: fn(&Window<'_>) -> Option<f64>) -> Option<WindowFunction> {
        Some(WindowFunction {
            keep_name: false,
            f,
        })
    }
    match name {
        "rate" => drop(|w| extrapolated_rate(w, true, true)),
        "increase" => drop(|w| extrapolated_rate(w, true, false)),
        "delta" => drop(|w| extrapolated_rate(w, false, false)),
        "irate" => drop(|w| instant_value(w.samples, true)),
        "idelta" => drop(|w| instant_value(w.samples, false)),
        "deriv" => drop(|w| {
            let s = w.samples;
            if s.len() < 2 {
                return None;
            }
            Some(linear_regression(s, s.first()?.t).0)
        }),
        "changes" => drop(|w| {
            let mut changes = 0.0;
            let mut prev = w.samples.first()?.v;
            for p in w.samples.iter().skip(1) {
                if !(p.v == prev || (p.v.is_nan() && prev.is_nan())) {
                    changes += 1.0;
                }
                prev = p.v;
            }
            Some(changes)
        }),
        "resets" => drop(|w| {
            let mut resets = 0.0;
            let mut prev = w.samples.first()?.v;
            for p in w.samples.iter().skip(1) {
                if p.v < prev {
                    resets += 1.0;
                }
                prev = p.v;
            }
            Some(resets)
        }),
        "avg_over_time" => drop(|w| Some(avg_over(w.samples))),
        "min_over_time" => drop(|w| {
            let mut m = w.samples.first()?.v;
            for p in w.samples {
                if p.v < m || m.is_nan() {
                    m = p.v;
                }
            }
            Some(m)
        }),
        "max_over_time" => drop(|w| {
            let mut m = w.samples.first()?.v;
            for p in w.samples {
                if p.v > m || m.is_nan() {
                    m = p.v;
                }
            }
            Some(m)
        }),
        "sum_over_time" => drop(|w| {
            let (mut sum, mut c) = (0.0, 0.0);
            for p in w.samples {
                (sum, c) = kahan_inc(p.v, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }),
        "count_over_time" => drop(|w| Some(w.samples.len() as f64)),
        "stddev_over_time" => drop(|w| Some(stdvar_over(w.samples).sqrt())),
        "stdvar_over_time" => drop(|w| Some(stdvar_over(w.samples))),
        "last_over_time" => Some(WindowFunction {
            keep_name: true,
            f: |w| Some(w.samples.last()?.v),
        }),
        "first_over_time" => Some(WindowFunction {
            keep_name: true,
            f: |w| Some(w.samples.first()?.v),
        }),
        "present_over_time" => drop(|_| Some(1.0)),
        "ts_of_last_over_time" => drop(|w| Some(w.samples.last()?.t as f64 / 1000.0)),
        "ts_of_first_over_time" => drop(|w| Some(w.samples.first()?.t as f64 / 1000.0)),
        "ts_of_max_over_time" => drop(|w| ts_of_extreme(w.samples, true)),
        "ts_of_min_over_time" => drop(|w| ts_of_extreme(w.samples, false)),
        "mad_over_time" => drop(|w| {
            let values: Vec<f64> = w.samples.iter().map(|p| p.v).collect();
            let median = quantile_of(0.5, values.clone());
            Some(quantile_of(
                0.5,
                values.iter().map(|v| (v - median).abs()).collect(),
            ))
        }),
        _ => None,
    }
}

/// The time (s) of the window's last maximum (`max`) or minimum.
fn ts_of_extreme(samples: &[Sample], max: bool) -> Option<f64> {
    let mut best = samples.first()?;
    for p in samples {
        let better = if max {
            p.v >= best.v || best.v.is_nan()
        } else {
            p.v <= best.v || best.v.is_nan()
        };
        if better {
            best = p;
        }
    }
    Some(best.t as f64 / 1000.0)
}

/// Applies a window function to each series of a range argument.
pub(crate) fn over_windows(arg: RangeArg, ts: i64, wf: WindowFunction) -> Vec<Element> {
    let mut out = Vec::with_capacity(arg.series.len());
    for s in &arg.series {
        let window = Window {
            samples: &s.samples,
            no_resets: s.no_resets,
            range: arg.range,
            ref_time: arg.ref_time,
        };
        if let Some(v) = (wf.f)(&window) {
            out.push(Element {
                labels: s.labels.clone(),
                t: ts,
                v,
                h: None,
                drop_name: !wf.keep_name || s.drop_name,
            });
        }
    }
    out
}

pub(crate) fn arg(call: &Call, i: usize) -> Result<&Expr, Error> {
    call.args
        .get(i)
        .ok_or_else(|| exec(format!("{}: missing argument {}", call.func.name, i + 1)))
}

fn string_arg(ev: &mut Evaluator<'_>, call: &Call, i: usize, ts: i64) -> Result<String, Error> {
    match ev.eval(arg(call, i)?, ts)? {
        Value::String { s, .. } => Ok(s),
        _ => Err(exec(format!(
            "{}: argument {} must be a string",
            call.func.name,
            i + 1
        ))),
    }
}

/// What a function does with native histograms in one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistogramArg {
    /// Takes them and gives floats (or leaves them out, as Prometheus does).
    Consumes,
    /// Gives histograms of histograms: only where its own consumer takes them.
    Passes,
}

/// How function `name` treats native histograms in argument `index`; `None` where the
/// engine refuses them for now (rather than answering differently from Prometheus).
pub(crate) fn histogram_arg(name: &str, index: usize) -> Option<HistogramArg> {
    use HistogramArg::{Consumes, Passes};
    let kind = match (name, index) {
        ("histogram_quantile", 1) | ("histogram_fraction", 2) | ("quantile_over_time", 1) => {
            Consumes
        }
        (
            "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
            | "histogram_stdvar" | "count_over_time" | "present_over_time" | "absent_over_time"
            | "min_over_time" | "max_over_time" | "stddev_over_time" | "stdvar_over_time" | "deriv"
            | "predict_linear" | "resets" | "changes" | "timestamp" | "scalar" | "sort"
            | "sort_desc" | "absent" | "round" | "clamp" | "clamp_min" | "clamp_max" | "minute"
            | "hour" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "month"
            | "year",
            0,
        ) => Consumes,
        (
            "rate" | "increase" | "delta" | "irate" | "idelta" | "last_over_time" | "sum_over_time"
            | "avg_over_time" | "label_replace" | "label_join" | "sort_by_label"
            | "sort_by_label_desc",
            0,
        ) => Passes,
        (other, 0) if simple(other, 0.0).is_some() => Consumes,
        _ => return None,
    };
    Some(kind)
}

pub(crate) fn eval_call(ev: &mut Evaluator<'_>, call: &Call, ts: i64) -> Result<Value, Error> {
    let name = call.func.name;
    if let Some(value) = range_function(ev, call, name, ts)? {
        return Ok(Value::Vector(value));
    }
    match name {
        "time" => {
            return Ok(Value::Scalar {
                t: ts,
                v: ts as f64 / 1000.0,
            });
        }
        "pi" => {
            return Ok(Value::Scalar {
                t: ts,
                v: std::f64::consts::PI,
            });
        }
        "scalar" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            // The one float (histograms aside), else NaN.
            let mut floats = v.iter().filter(|e| e.h.is_none());
            let value = match (floats.next(), floats.next()) {
                (Some(only), None) => only.v,
                _ => f64::NAN,
            };
            return Ok(Value::Scalar { t: ts, v: value });
        }
        "vector" => {
            let v = ev.eval_scalar(arg(call, 0)?, ts)?;
            return Ok(Value::Vector(vec![Element {
                labels: Labels::empty(),
                t: ts,
                v,
                h: None,
                drop_name: false,
            }]));
        }
        "minute" | "hour" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "month" | "year" => {
            if call.args.is_empty() {
                let v = date_part(name, ts as f64 / 1000.0);
                return Ok(Value::Vector(vec![Element {
                    labels: Labels::empty(),
                    t: ts,
                    v,
                    h: None,
                    drop_name: false,
                }]));
            }
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            return Ok(Value::Vector(map_vector(v, ts, |x| date_part(name, x))));
        }
        _ => {}
    }
    if let Some(_probe) = simple(name, 0.0) {
        let v = ev.eval_vector(arg(call, 0)?, ts)?;
        return Ok(Value::Vector(map_vector(v, ts, |x| {
            simple(name, x).unwrap_or(f64::NAN)
        })));
    }
    match name {
        "round" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            let to = match call.args.get(1) {
                Some(e) => ev.eval_scalar(e, ts)?,
                None => 1.0,
            };
            let inverse = 1.0 / to;
            Ok(Value::Vector(map_vector(v, ts, |x| {
                (x * inverse + 0.5).floor() / inverse
            })))
        }
        "clamp" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            let min = ev.eval_scalar(arg(call, 1)?, ts)?;
            let max = ev.eval_scalar(arg(call, 2)?, ts)?;
            if max < min {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(Value::Vector(map_vector(v, ts, |x| {
                go_max(min, go_min(max, x))
            })))
        }
        "clamp_min" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            let min = ev.eval_scalar(arg(call, 1)?, ts)?;
            Ok(Value::Vector(map_vector(v, ts, |x| go_max(min, x))))
        }
        "clamp_max" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            let max = ev.eval_scalar(arg(call, 1)?, ts)?;
            Ok(Value::Vector(map_vector(v, ts, |x| go_min(max, x))))
        }
        "timestamp" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            Ok(Value::Vector(
                v.into_iter()
                    .map(|e| Element {
                        v: e.t as f64 / 1000.0,
                        h: None,
                        t: ts,
                        drop_name: true,
                        ..e
                    })
                    .collect(),
            ))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector(arg(call, 0)?, ts)?;
            // Prometheus sorts the floats only.
            v.retain(|e| e.h.is_none());
            let desc = name == "sort_desc";
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => {
                    let ord = a.v.partial_cmp(&b.v).unwrap_or(std::cmp::Ordering::Equal);
                    if desc { ord.reverse() } else { ord }
                }
            });
            Ok(Value::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = ev.eval_vector(arg(call, 0)?, ts)?;
            let mut names = Vec::new();
            for i in 1..call.args.len() {
                names.push(string_arg(ev, call, i, ts)?);
            }
            v.sort_by(|a, b| {
                for n in &names {
                    let ord =
                        natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                    if ord != std::cmp::Ordering::Equal {
                        return if name == "sort_by_label_desc" {
                            ord.reverse()
                        } else {
                            ord
                        };
                    }
                }
                let ord = a.labels.cmp(&b.labels);
                if name == "sort_by_label_desc" {
                    ord.reverse()
                } else {
                    ord
                }
            });
            Ok(Value::Vector(v))
        }
        "absent" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            if !v.is_empty() {
                return Ok(Value::Vector(Vec::new()));
            }
            let labels = absent_labels(arg(call, 0)?);
            Ok(Value::Vector(vec![Element {
                labels,
                t: ts,
                v: 1.0,
                h: None,
                drop_name: false,
            }]))
        }
        "label_replace" => label_replace(ev, call, ts),
        "label_join" => label_join(ev, call, ts),
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            Ok(Value::Vector(crate::histogram_functions::apply_simple(
                call.func.name,
                v,
                ts,
            )))
        }
        "histogram_quantile" => histogram_quantile(ev, call, ts),
        "histogram_fraction" => histogram_fraction(ev, call, ts),
        other => Err(exec(format!("function {other:?} is not supported"))),
    }
}

/// Go's math.Max: NaN wins, +Inf wins.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.cmp(b)
}

fn range_function(
    ev: &mut Evaluator<'_>,
    call: &Call,
    name: &str,
    ts: i64,
) -> Result<Option<Vec<Element>>, Error> {
    let range_arg_index = match name {
        "quantile_over_time" => 1,
        "predict_linear" | "double_exponential_smoothing" | "holt_winters" => 0,
        "rate"
        | "increase"
        | "delta"
        | "irate"
        | "idelta"
        | "deriv"
        | "changes"
        | "resets"
        | "avg_over_time"
        | "min_over_time"
        | "max_over_time"
        | "sum_over_time"
        | "count_over_time"
        | "stddev_over_time"
        | "stdvar_over_time"
        | "last_over_time"
        | "first_over_time"
        | "present_over_time"
        | "absent_over_time"
        | "mad_over_time"
        | "ts_of_max_over_time"
        | "ts_of_min_over_time"
        | "ts_of_last_over_time"
        | "ts_of_first_over_time" => 0,
        _ => return Ok(None),
    };
    let range_expr = arg(call, range_arg_index)?;
    if let Some(out) = ev.step_function(call, ts)? {
        return Ok(Some(out));
    }
    let range = ev.eval_range(range_expr, ts)?;
    let out = range_outputs(ev, call, name, range_expr, range, ts)?;
    let Some(out) = out else {
        return Ok(None);
    };
    // `rate` and `increase` over a range selector: a name without a counter suffix gets
    // Prometheus' info (one per metric name, at the selector).
    if matches!(name, "rate" | "increase")
        && matches!(range_expr.unparen(), Expr::MatrixSelector(_))
    {
        for e in out.iter().filter(|e| e.h.is_none()) {
            let metric = e.labels.metric_name().unwrap_or("");
            if !metric.is_empty()
                && !["_total", "_sum", "_count", "_bucket"]
                    .iter()
                    .any(|suffix| metric.ends_with(suffix))
            {
                ev.annotate(Annotation::possible_non_counter(metric, range_expr.pos()));
            }
        }
    }
    Ok(Some(out))
}

/// The elements a range function gives at `ts`; `None` if `name` is none.
pub(crate) fn range_outputs(
    ev: &mut Evaluator<'_>,
    call: &Call,
    name: &str,
    range_expr: &Expr,
    range: RangeArg,
    ts: i64,
) -> Result<Option<Vec<Element>>, Error> {
    if matches!(name, "rate" | "increase" | "delta")
        && range.series.iter().any(|s| !s.histograms.is_empty())
    {
        return Ok(Some(crate::histogram_range::histogram_windows(
            ev,
            name,
            range_expr.pos(),
            range,
            ts,
        )));
    }
    if range.series.iter().any(|s| !s.histograms.is_empty())
        && matches!(
            name,
            "count_over_time"
                | "present_over_time"
                | "last_over_time"
                | "sum_over_time"
                | "avg_over_time"
                | "min_over_time"
                | "max_over_time"
                | "stddev_over_time"
                | "stdvar_over_time"
                | "quantile_over_time"
                | "deriv"
                | "predict_linear"
                | "irate"
                | "idelta"
                | "resets"
                | "changes"
        )
    {
        return crate::histogram_range::histogram_over_time(
            ev,
            call,
            name,
            range_expr.pos(),
            range,
            ts,
        )
        .map(Some);
    }
    if let Some(wf) = window_function(name) {
        return Ok(Some(over_windows(range, ts, wf)));
    }
    let out = match name {
        "predict_linear" => {
            let duration = ev.eval_scalar(arg(call, 1)?, ts)?;
            // Prometheus takes the intercept at the step's time, even under `@` or `offset`.
            let eval_time = ts;
            over_time(range, ts, false, |_, s| {
                if s.len() < 2 {
                    return None;
                }
                let (slope, intercept) = linear_regression(s, eval_time);
                Some(slope * duration + intercept)
            })
        }
        "double_exponential_smoothing" | "holt_winters" => {
            let sf = ev.eval_scalar(arg(call, 1)?, ts)?;
            let tf = ev.eval_scalar(arg(call, 2)?, ts)?;
            if !(sf > 0.0 && sf < 1.0) {
                return Err(exec(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf}"
                )));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return Err(exec(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf}"
                )));
            }
            over_time(range, ts, false, |_, s| {
                double_exponential_smoothing(s, sf, tf)
            })
        }
        "quantile_over_time" => {
            let q = ev.eval_scalar(arg(call, 0)?, ts)?;
            check_quantile(ev, q, arg(call, 0)?.pos());
            over_time(range, ts, false, |_, s| {
                Some(quantile_of(q, s.iter().map(|p| p.v).collect()))
            })
        }
        "absent_over_time" => {
            if range.series.is_empty() {
                vec![Element {
                    labels: absent_labels(range_expr),
                    t: ts,
                    v: 1.0,
                    h: None,
                    drop_name: false,
                }]
            } else {
                Vec::new()
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(out))
}

/// Holt's linear smoothing as Prometheus computes it (`double_exponential_smoothing`).
fn double_exponential_smoothing(samples: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let first = samples.first()?.v;
    let mut s0 = 0.0;
    let mut s1 = first;
    let mut b = samples.get(1)?.v - first;
    for (i, p) in samples.iter().enumerate().skip(1) {
        let x = sf * p.v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

fn label_replace(ev: &mut Evaluator<'_>, call: &Call, ts: i64) -> Result<Value, Error> {
    let v = ev.eval_vector(arg(call, 0)?, ts)?;
    let dst = string_arg(ev, call, 1, ts)?;
    let replacement = string_arg(ev, call, 2, ts)?;
    let src = string_arg(ev, call, 3, ts)?;
    let pattern = string_arg(ev, call, 4, ts)?;
    let regex = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|e| {
        exec(format!(
            "invalid regular expression in label_replace(): {pattern}: {e}"
        ))
    })?;
    if !crate::aggregate::is_valid_label_name(&dst) {
        return Err(exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut e in v {
        let source = e.labels.get(&src).unwrap_or("").to_owned();
        if let Some(caps) = regex.captures(&source) {
            let mut result = String::new();
            caps.expand(&replacement, &mut result);
            let mut b = e.labels.to_builder();
            b.set(dst.clone(), result);
            e.labels = b.build();
            if dst == "__name__" {
                e.drop_name = false;
            }
        }
        e.t = ts;
        out.push(e);
    }
    crate::eval::check_unique(&out)?;
    Ok(Value::Vector(out))
}

fn label_join(ev: &mut Evaluator<'_>, call: &Call, ts: i64) -> Result<Value, Error> {
    let v = ev.eval_vector(arg(call, 0)?, ts)?;
    let dst = string_arg(ev, call, 1, ts)?;
    let sep = string_arg(ev, call, 2, ts)?;
    let mut srcs = Vec::new();
    for i in 3..call.args.len() {
        srcs.push(string_arg(ev, call, i, ts)?);
    }
    if !crate::aggregate::is_valid_label_name(&dst) {
        return Err(exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut out = Vec::with_capacity(v.len());
    for mut e in v {
        let joined: Vec<&str> = srcs.iter().map(|s| e.labels.get(s).unwrap_or("")).collect();
        let joined = joined.join(&sep);
        let mut b = e.labels.to_builder();
        b.set(dst.clone(), joined);
        e.labels = b.build();
        if dst == "__name__" {
            e.drop_name = false;
        }
        e.t = ts;
        out.push(e);
    }
    crate::eval::check_unique(&out)?;
    Ok(Value::Vector(out))
}

/// Groups classic histogram buckets by their labels without `le` (the metric name kept, so
/// two histograms never merge; it is dropped from the result).
fn bucket_groups(
    ev: &mut Evaluator<'_>,
    v: Vec<Element>,
    pos: usize,
) -> Vec<(Labels, Vec<(f64, f64)>)> {
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: std::collections::HashMap<Labels, Vec<(f64, f64)>> =
        std::collections::HashMap::new();
    for e in v {
        let le = e.labels.get("le").unwrap_or("");
        let Ok(bound) = parse_le(le) else {
            let name = e.labels.metric_name().unwrap_or("").to_owned();
            ev.annotate(Annotation::bad_bucket_label(&name, le, pos));
            continue;
        };
        let mut b = e.labels.to_builder();
        b.delete("le");
        let key = b.build();
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push((bound, e.v));
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k).map(|b| (k, b)))
        .collect()
}

/// A classic histogram's labels (without `le`) and its (upper bound, count) buckets.
type BucketGroup = (Labels, Vec<(f64, f64)>);

/// The input of `histogram_quantile` and `histogram_fraction` split as Prometheus'
/// `resetHistograms` does: native histograms, and classic bucket groups (labels without
/// `le`); a native histogram whose labels equal a classic group's conflicts with it, and
/// both are left out with a warning.
fn native_and_classic(
    ev: &mut Evaluator<'_>,
    v: Vec<Element>,
    pos: usize,
) -> (Vec<Element>, Vec<BucketGroup>) {
    let (native, classic): (Vec<Element>, Vec<Element>) =
        v.into_iter().partition(|e| e.h.is_some());
    let mut groups = bucket_groups(ev, classic, pos);
    let mut kept = Vec::with_capacity(native.len());
    for e in native {
        if let Some(i) = groups.iter().position(|(labels, _)| *labels == e.labels) {
            let metric = e.labels.metric_name().unwrap_or("").to_owned();
            ev.annotate(Annotation::mixed_classic_native(&metric, pos));
            groups.remove(i);
            continue;
        }
        kept.push(e);
    }
    (kept, groups)
}

fn histogram_quantile(ev: &mut Evaluator<'_>, call: &Call, ts: i64) -> Result<Value, Error> {
    let q = ev.eval_scalar(arg(call, 0)?, ts)?;
    check_quantile(ev, q, arg(call, 0)?.pos());
    let buckets_pos = arg(call, 1)?.pos();
    let v = ev.eval_vector(arg(call, 1)?, ts)?;
    let (native, classic) = native_and_classic(ev, v, buckets_pos);
    let q_pos = arg(call, 0)?.pos();
    let mut out: Vec<Element> = Vec::with_capacity(native.len() + classic.len());
    for e in native {
        let Some(h) = e.h.as_deref() else { continue };
        let (v, note) = crate::histogram_functions::quantile(q, h);
        if let Some(note) = note {
            ev.annotate(note.annotation(e.labels.metric_name().unwrap_or(""), q_pos));
        }
        out.push(Element {
            v,
            labels: e.labels,
            t: ts,
            h: None,
            drop_name: true,
        });
    }
    for (labels, buckets) in classic {
        let (value, fixed) = bucket_quantile(q, buckets);
        if fixed {
            let name = labels.metric_name().unwrap_or("").to_owned();
            ev.annotate(Annotation::forced_monotonicity(&name, buckets_pos));
        }
        out.push(Element {
            labels,
            t: ts,
            v: value,
            h: None,
            drop_name: true,
        });
    }
    Ok(Value::Vector(out))
}

fn histogram_fraction(ev: &mut Evaluator<'_>, call: &Call, ts: i64) -> Result<Value, Error> {
    let lower = ev.eval_scalar(arg(call, 0)?, ts)?;
    let upper = ev.eval_scalar(arg(call, 1)?, ts)?;
    let buckets_pos = arg(call, 2)?.pos();
    let v = ev.eval_vector(arg(call, 2)?, ts)?;
    let (native, classic) = native_and_classic(ev, v, buckets_pos);
    let lower_pos = arg(call, 0)?.pos();
    let mut out: Vec<Element> = Vec::with_capacity(native.len() + classic.len());
    for e in native {
        let Some(h) = e.h.as_deref() else { continue };
        let (v, note) = crate::histogram_functions::fraction(lower, upper, h);
        if let Some(note) = note {
            ev.annotate(note.annotation(e.labels.metric_name().unwrap_or(""), lower_pos));
        }
        out.push(Element {
            v,
            labels: e.labels,
            t: ts,
            h: None,
            drop_name: true,
        });
    }
    out.extend(classic.into_iter().map(|(labels, buckets)| Element {
        labels,
        t: ts,
        v: bucket_fraction(lower, upper, buckets),
        h: None,
        drop_name: true,
    }));
    Ok(Value::Vector(out))
}

/// Sorts buckets by upper bound and merges equal bounds; `None` unless the last is +Inf.
fn prepare_buckets(mut buckets: Vec<(f64, f64)>) -> Option<Vec<(f64, f64)>> {
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some((bound, _)) if *bound == f64::INFINITY => {}
        _ => return None,
    }
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (bound, count) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == bound => last.1 += count,
            _ => merged.push((bound, count)),
        }
    }
    Some(merged)
}

/// The share of observations between `lower` and `upper` in classic buckets, interpolating
/// linearly inside finite buckets (a first bucket with a positive bound starts at 0) and
/// never inside an infinitely wide one.
fn bucket_fraction(lower: f64, upper: f64, buckets: Vec<(f64, f64)>) -> f64 {
    let Some(buckets) = prepare_buckets(buckets) else {
        return f64::NAN;
    };
    let count = buckets.last().map_or(0.0, |b| b.1);
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let rank_at = |x: f64| -> f64 {
        let mut prev_rank = 0.0;
        for (i, &(bucket_upper, bucket_rank)) in buckets.iter().enumerate() {
            let bucket_lower = match i {
                0 if bucket_upper > 0.0 => 0.0,
                0 => f64::NEG_INFINITY,
                _ => buckets.get(i - 1).map_or(f64::NEG_INFINITY, |b| b.0),
            };
            if x <= bucket_lower {
                return prev_rank;
            }
            if x < bucket_upper {
                if bucket_lower.is_infinite() || bucket_upper.is_infinite() {
                    // No interpolation in an infinitely wide bucket: it holds nothing of a
                    // range that does not cover it completely.
                    return if x == f64::NEG_INFINITY {
                        prev_rank
                    } else {
                        f64::NAN
                    };
                }
                return prev_rank
                    + (bucket_rank - prev_rank) * (x - bucket_lower)
                        / (bucket_upper - bucket_lower);
            }
            prev_rank = bucket_rank;
        }
        count
    };
    // (rank before, rank after) of the bucket holding x.
    let bucket_ranks = |x: f64| -> (f64, f64) {
        match buckets.iter().position(|&(u, _)| x < u) {
            Some(i) => {
                let before = if i == 0 {
                    0.0
                } else {
                    buckets.get(i - 1).map_or(0.0, |b| b.1)
                };
                (before, buckets.get(i).map_or(count, |b| b.1))
            }
            None => (count, count),
        }
    };
    let mut lower_rank = rank_at(lower);
    if lower_rank.is_nan() {
        // Inside an infinitely wide bucket: all of it if the range reaches +Inf, else none.
        let (before, after) = bucket_ranks(lower);
        lower_rank = if upper == f64::INFINITY {
            before
        } else {
            after
        };
    }
    let mut upper_rank = rank_at(upper);
    if upper_rank.is_nan() {
        let (before, after) = bucket_ranks(upper);
        upper_rank = if lower == f64::NEG_INFINITY {
            after
        } else {
            before
        };
    }
    ((upper_rank - lower_rank) / count).max(0.0)
}

fn parse_le(s: &str) -> Result<f64, ()> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        other => other.parse::<f64>().map_err(|_| ()),
    }
}

fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < epsilon * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Prometheus' `bucketQuantile`; also says whether counts had to be forced monotonic.
fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> (f64, bool) {
    let mut forced = false;
    if q.is_nan() {
        return (f64::NAN, forced);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, forced);
    }
    if q > 1.0 {
        return (f64::INFINITY, forced);
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some((bound, _)) if *bound == f64::INFINITY => {}
        _ => return (f64::NAN, forced),
    }
    // Coalesce buckets with the same upper bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (bound, count) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == bound => last.1 += count,
            _ => merged.push((bound, count)),
        }
    }
    // Force monotonicity and ignore tiny floating point differences.
    if let Some(&(_, first)) = merged.first() {
        let mut prev = first;
        for bucket in merged.iter_mut().skip(1) {
            let curr = bucket.1;
            if curr == prev {
                continue;
            }
            if almost_equal(prev, curr, 1e-12) {
                bucket.1 = prev;
                continue;
            }
            if curr < prev {
                bucket.1 = prev;
                forced = true;
                continue;
            }
            prev = curr;
        }
    }
    if merged.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = merged.last().map_or(0.0, |b| b.1);
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let last_index = merged.len() - 1;
    let b = merged
        .get(..last_index)
        .unwrap_or_default()
        .partition_point(|bucket| bucket.1 < rank);
    if b == last_index {
        return (
            merged
                .get(last_index - 1)
                .map_or(f64::NAN, |bucket| bucket.0),
            forced,
        );
    }
    let Some(&(bucket_end, bucket_count)) = merged.get(b) else {
        return (f64::NAN, forced);
    };
    if b == 0 && bucket_end <= 0.0 {
        return (bucket_end, forced);
    }
    let mut bucket_start = 0.0;
    let mut count = bucket_count;
    if b > 0
        && let Some(&(prev_bound, prev_count)) = merged.get(b - 1)
    {
        bucket_start = prev_bound;
        count -= prev_count;
        rank -= prev_count;
    }
    (
        bucket_start + (bucket_end - bucket_start) * (rank / count),
        forced,
    )
}
