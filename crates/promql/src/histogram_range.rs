//! Range functions over windows holding native histograms, as Prometheus 3.5 evaluates
//! them: `rate`, `increase`, `delta` (`histogramRate` and the floats' extrapolation),
//! `irate`, `idelta`, `resets`, `changes`, and the `*_over_time` functions, `deriv` and
//! `predict_linear` (counted, present, last, summed, averaged, or the floats only with an
//! info). Float-only series of the same argument go the float path of `functions.rs`.

use strata_types::histogram::FloatHistogram;

use crate::annotations::Annotation;
use crate::error::Error;
use crate::eval::{Evaluator, RangeArg};
use crate::functions::{
    Window, arg, extrapolation_factor, over_windows, range_outputs, window_function,
};
use crate::syntax::ast::{Call, Expr};
use crate::value::Element;

/// `rate`, `increase` or `delta` of a range argument holding native histograms: floats as
/// usual, histograms by `histogramRate`, a series mixing both in its window left out with
/// Prometheus' warning.
pub(crate) fn histogram_windows(
    ev: &mut Evaluator<'_>,
    name: &str,
    pos: usize,
    arg: RangeArg,
    ts: i64,
) -> Vec<Element> {
    let (is_counter, is_rate) = (name != "delta", name == "rate");
    let wf = window_function(name);
    let mut out = Vec::with_capacity(arg.series.len());
    for s in &arg.series {
        let metric = s.labels.metric_name().unwrap_or("");
        if s.histograms.is_empty() {
            let window = Window {
                samples: &s.samples,
                no_resets: s.no_resets,
                range: arg.range,
                ref_time: arg.ref_time,
            };
            if let Some(v) = wf.and_then(|wf| (wf.f)(&window)) {
                out.push(Element {
                    labels: s.labels.clone(),
                    t: ts,
                    v,
                    h: None,
                    drop_name: true,
                });
            }
            continue;
        }
        if !s.samples.is_empty() {
            ev.annotate(Annotation::mixed_floats_histograms(metric, pos));
            continue;
        }
        let points = &s.histograms;
        if points.len() < 2 {
            continue;
        }
        let mut annos = Vec::new();
        let h =
            crate::histogram_functions::histogram_rate(points, is_counter, metric, pos, &mut annos);
        for a in annos {
            ev.annotate(a);
        }
        let (Some(mut h), Some(first), Some(last)) = (h, points.first(), points.last()) else {
            continue;
        };
        let factor = extrapolation_factor(
            (first.t, last.t),
            points.len() - 1,
            (arg.ref_time - arg.range, arg.ref_time),
            arg.range,
            is_rate,
            None,
        );
        h.mul(factor);
        out.push(Element {
            labels: s.labels.clone(),
            t: ts,
            v: 0.0,
            h: Some(std::sync::Arc::new(h)),
            drop_name: true,
        });
    }
    out
}

/// The `*_over_time` functions, `deriv` and `predict_linear` of a range argument holding
/// native histograms, as Prometheus 3.5 treats them: counted, present, the last one, summed
/// or averaged (a series mixing floats and histograms in its window is left out with a
/// warning), or the floats only (with an info where histograms were left out).
pub(crate) fn histogram_over_time(
    ev: &mut Evaluator<'_>,
    call: &Call,
    name: &str,
    pos: usize,
    input: RangeArg,
    ts: i64,
) -> Result<Vec<Element>, Error> {
    let RangeArg {
        series,
        range,
        ref_time,
    } = input;
    // `quantile_over_time`'s info points at its first argument, as Prometheus' does.
    let info_pos = call.args.first().map_or(pos, Expr::pos);
    let mut floats_only = Vec::new();
    let mut out = Vec::new();
    for s in series {
        if s.histograms.is_empty() {
            floats_only.push(s);
            continue;
        }
        let metric = s.labels.metric_name().unwrap_or("").to_owned();
        let element = |v: f64, h: Option<FloatHistogram>, keep_name: bool| Element {
            labels: s.labels.clone(),
            t: ts,
            v,
            h: h.map(std::sync::Arc::new),
            drop_name: !keep_name || s.drop_name,
        };
        match name {
            "count_over_time" => {
                out.push(element(
                    (s.samples.len() + s.histograms.len()) as f64,
                    None,
                    false,
                ));
            }
            "present_over_time" => out.push(element(1.0, None, false)),
            "resets" | "changes" => {
                // Floats and histograms in time order; a change of kind counts as one.
                let points = time_ordered_points(&s);
                let mut n = 0usize;
                for pair in points.windows(2) {
                    let [(_, ph, pv), (_, ch, cv)] = pair else {
                        continue;
                    };
                    n += usize::from(match (ph, ch) {
                        (None, None) if name == "resets" => cv < pv,
                        (None, None) => cv != pv && !(cv.is_nan() && pv.is_nan()),
                        (Some(p), Some(c)) if name == "resets" => c.detect_reset(p),
                        (Some(p), Some(c)) => !c.equals(p),
                        _ => true,
                    });
                }
                out.push(element(n as f64, None, false));
            }
            "irate" | "idelta" => {
                if let Some(e) = instant_value_mixed(ev, &s, name == "irate", &metric, pos) {
                    out.push(Element {
                        labels: s.labels.clone(),
                        t: ts,
                        drop_name: true,
                        ..e
                    });
                }
            }
            "last_over_time" => {
                let (f, h) = (s.samples.last(), s.histograms.last());
                match (f, h) {
                    (Some(f), Some(h)) if h.t < f.t => out.push(element(f.v, None, true)),
                    (_, Some(h)) => out.push(element(0.0, Some((*h.h).clone()), true)),
                    (Some(f), None) => out.push(element(f.v, None, true)),
                    (None, None) => {}
                }
            }
            "sum_over_time" | "avg_over_time" => {
                if !s.samples.is_empty() {
                    ev.annotate(Annotation::mixed_floats_histograms(&metric, pos));
                    continue;
                }
                let Some(first) = s.histograms.first() else {
                    continue;
                };
                let mut acc = (*first.h).clone();
                let mut failed = None;
                for (i, h) in s.histograms.iter().enumerate().skip(1) {
                    let done = if name == "sum_over_time" {
                        acc.add(&h.h)
                    } else {
                        let count = (i + 1) as f64;
                        let mut left = (*h.h).clone();
                        left.div(count);
                        let mut right = acc.clone();
                        right.div(count);
                        left.sub(&right).and_then(|()| acc.add(&left))
                    };
                    if let Err(e) = done {
                        failed = Some(e);
                        break;
                    }
                }
                match failed {
                    Some(e) => {
                        ev.annotate(crate::histogram_functions::incompatible(e, &metric, pos))
                    }
                    None => out.push(element(0.0, Some(acc), false)),
                }
            }
            _ => {
                // Floats only: none, or the floats with an info.
                let enough = match name {
                    "deriv" | "predict_linear" => s.samples.len() >= 2,
                    _ => !s.samples.is_empty(),
                };
                let mixed_info = match name {
                    "deriv" | "predict_linear" => !s.samples.is_empty(),
                    _ => enough,
                };
                if mixed_info {
                    ev.annotate(Annotation::histogram_ignored_in_mixed_range(
                        &metric, info_pos,
                    ));
                }
                if enough {
                    floats_only.push(crate::eval::ArgSeries {
                        histograms: crate::eval::Histograms::default(),
                        ..s
                    });
                }
            }
        }
    }
    let floats = RangeArg {
        series: floats_only,
        range,
        ref_time,
    };
    if !floats.series.is_empty() {
        let computed = match window_function(name) {
            Some(wf) => Some(over_windows(floats, ts, wf)),
            None => range_outputs(
                ev,
                call,
                name,
                arg(call, histogram_range_index(name))?,
                floats,
                ts,
            )?,
        };
        out.extend(computed.unwrap_or_default());
    }
    Ok(out)
}

/// `instantValue` of a window holding histograms: the last two points (floats or
/// histograms), their difference (with a counter reset, `irate` takes the last one), per
/// second for `irate`; a float and a histogram give nothing and a warning.
fn instant_value_mixed(
    ev: &mut Evaluator<'_>,
    s: &crate::eval::ArgSeries,
    is_rate: bool,
    metric: &str,
    pos: usize,
) -> Option<Element> {
    let points = time_ordered_points(s);
    let [.., (t0, h0, v0), (t1, h1, v1)] = points.as_slice() else {
        return None;
    };
    let interval = t1 - t0;
    if interval == 0 {
        return None;
    }
    let element = |v: f64, h: Option<FloatHistogram>| Element {
        labels: s.labels.clone(),
        t: 0,
        v,
        h: h.map(std::sync::Arc::new),
        drop_name: true,
    };
    match (h0, h1) {
        (None, None) => {
            let mut v = *v1;
            if !is_rate || v1.partial_cmp(v0) != Some(std::cmp::Ordering::Less) {
                v = v1 - v0;
            }
            if is_rate {
                v /= interval as f64 / 1000.0;
            }
            Some(element(v, None))
        }
        (Some(a), Some(b)) => {
            use strata_types::histogram::CounterResetHint::Gauge;
            if is_rate && (b.counter_reset_hint == Gauge || a.counter_reset_hint == Gauge) {
                ev.annotate(Annotation::native_histogram_not_counter(metric, pos));
            }
            if !is_rate && (b.counter_reset_hint != Gauge || a.counter_reset_hint != Gauge) {
                ev.annotate(Annotation::native_histogram_not_gauge(metric, pos));
            }
            let mut h = (*b).clone();
            if (!is_rate || !b.detect_reset(a))
                && let Err(e) = h.sub(a)
            {
                ev.annotate(crate::histogram_functions::incompatible(e, metric, pos));
                return None;
            }
            h.counter_reset_hint = Gauge;
            h.compact();
            if is_rate {
                h.div(interval as f64 / 1000.0);
            }
            Some(element(0.0, Some(h)))
        }
        _ => {
            ev.annotate(Annotation::mixed_floats_histograms(metric, pos));
            None
        }
    }
}

/// The range argument's index of a function handled by [`histogram_over_time`].
fn histogram_range_index(name: &str) -> usize {
    usize::from(name == "quantile_over_time")
}

/// A window's floats and histograms as `(t, histogram, float)` in time order.
fn time_ordered_points(s: &crate::eval::ArgSeries) -> Vec<(i64, Option<&FloatHistogram>, f64)> {
    let mut points: Vec<(i64, Option<&FloatHistogram>, f64)> = s
        .samples
        .iter()
        .map(|p| (p.t, None, p.v))
        .chain(s.histograms.iter().map(|h| (h.t, Some(&*h.h), 0.0)))
        .collect();
    points.sort_by_key(|p| p.0);
    points
}
