//! Aggregation operators (`sum`, `avg`, `count`, `min`, `max`, `group`, `stddev`, `stdvar`,
//! `topk`, `bottomk`, `quantile`, `count_values`, `limitk`, `limit_ratio`).

use std::collections::HashMap;

use crate::syntax::ast::{AggregateExpr, Expr};
use strata_types::Labels;

use crate::error::{Error, exec};
use crate::eval::{Evaluator, without_name};
use crate::functions::{kahan_inc, quantile_of};
use crate::identity::IdentityMap;
use crate::value::{Element, Value, format_float_f};

#[derive(Debug, Default, Clone)]
struct Group {
    labels: Labels,
    count: f64,
    value: f64,
    kahan: f64,
    mean: f64,
    incremental_mean: bool,
    values: Vec<f64>,
    members: Vec<Element>,
    drop_name: bool,
    /// `sum` of native histograms: the sum so far (from the group's first element, when
    /// that is a histogram), whether floats and histograms came in, and whether two
    /// histograms could not be added (the group then has no value).
    histogram: Option<strata_types::histogram::FloatHistogram>,
    has_float: bool,
    has_histogram: bool,
    incompatible: bool,
}

/// The group of a sample. With delayed name removal a to-be-dropped `__name__` still
/// partitions `by (__name__)` groups, as in Prometheus; the group then drops the name if
/// any member does.
fn grouping_labels(labels: &Labels, _drop_name: bool, modifier: Modifier<'_>) -> Labels {
    if modifier.without {
        let kept: Vec<(String, String)> = labels
            .iter()
            .filter(|l| l.name != "__name__" && !modifier.labels.contains(&l.name))
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        return Labels::from_pairs(kept);
    }
    let kept: Vec<(String, String)> = labels
        .iter()
        .filter(|l| modifier.labels.contains(&l.name))
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect();
    Labels::from_pairs(kept)
}

/// The group of every input label set an aggregation node has seen, kept across the steps
/// of one evaluator: the same series come back at every step (the same shared label set),
/// so their group is worked out once. Keyed by the set's identity; the set is held, so its
/// address cannot be reused by another set while the entry lives.
#[derive(Debug, Default)]
pub(crate) struct GroupCache {
    by_identity: IdentityMap<usize, (Labels, usize)>,
    groups: Vec<Labels>,
    by_labels: HashMap<Labels, usize>,
    /// The group of each series of a call's step values (the call node, the groups).
    series: Option<(usize, Vec<usize>)>,
}

impl GroupCache {
    /// Forgets everything once the cache holds far more sets than a step brings: inputs
    /// made afresh at each step (after a binary operator, say) never hit, and must not pile
    /// up.
    fn bound(&mut self, input_len: usize) {
        if self.by_identity.len() > input_len.saturating_mul(4).saturating_add(1024) {
            *self = GroupCache::default();
        }
    }

    /// The group of each of `labels` (the series of the step values of call node `call`),
    /// worked out at the first step and kept.
    fn series_groups(&mut self, call: usize, labels: &[Labels], modifier: Modifier<'_>) {
        if self.series.as_ref().is_none_or(|(node, _)| *node != call) {
            let groups = labels
                .iter()
                .map(|l| self.group_index(grouping_labels(l, false, modifier)))
                .collect();
            self.series = Some((call, groups));
        }
    }

    fn group_index(&mut self, key: Labels) -> usize {
        match self.by_labels.get(&key) {
            Some(&index) => index,
            None => {
                self.groups.push(key.clone());
                self.by_labels.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        }
    }

    fn group_of(&mut self, labels: &Labels, modifier: Modifier<'_>) -> usize {
        if let Some(&(_, index)) = self.by_identity.get(&labels.identity()) {
            return index;
        }
        let index = self.group_index(grouping_labels(labels, false, modifier));
        self.by_identity
            .insert(labels.identity(), (labels.clone(), index));
        index
    }
}

/// The groups of one step, by index into the cache's groups, in the order first seen.
#[derive(Default)]
struct Slots {
    order: Vec<usize>,
    slots: Vec<Option<Group>>,
}

impl Slots {
    fn get(&mut self, index: usize, labels: &[Labels]) -> Option<&mut Group> {
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        let slot = self.slots.get_mut(index)?;
        if slot.is_none() {
            self.order.push(index);
            *slot = Some(Group {
                labels: labels.get(index).cloned().unwrap_or_default(),
                ..Group::default()
            });
        }
        slot.as_mut()
    }
}

/// How an aggregation takes in one value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Accumulate {
    Sum,
    Avg,
    Min,
    Max,
    Variance,
    Quantile,
    LimitRatio,
    Count,
}

impl Accumulate {
    fn of(op: &str) -> Option<Self> {
        Some(match op {
            "sum" => Accumulate::Sum,
            "avg" => Accumulate::Avg,
            "min" => Accumulate::Min,
            "max" => Accumulate::Max,
            "stddev" | "stdvar" => Accumulate::Variance,
            "quantile" => Accumulate::Quantile,
            "limit_ratio" => Accumulate::LimitRatio,
            "count" | "group" => Accumulate::Count,
            _ => return None,
        })
    }

    /// Adds `f` to the group (`limit_ratio`'s members are the caller's).
    fn add(self, group: &mut Group, f: f64) {
        let first = group.count == 0.0;
        group.count += 1.0;
        match self {
            Accumulate::Sum => {
                let (s, c) = kahan_inc(f, group.value, group.kahan);
                group.value = s;
                group.kahan = c;
            }
            Accumulate::Avg => {
                if first {
                    group.value = f;
                    return;
                }
                if !group.incremental_mean {
                    let (s, c) = kahan_inc(f, group.value, group.kahan);
                    if !s.is_infinite() {
                        group.value = s;
                        group.kahan = c;
                        return;
                    }
                    group.incremental_mean = true;
                    group.mean = group.value / (group.count - 1.0);
                    group.kahan /= group.count - 1.0;
                }
                let q = (group.count - 1.0) / group.count;
                let (m, c) = kahan_inc(f / group.count, q * group.mean, q * group.kahan);
                group.mean = m;
                group.kahan = c;
            }
            Accumulate::Min => {
                if first || group.value > f || group.value.is_nan() {
                    group.value = f;
                }
            }
            Accumulate::Max => {
                if first || group.value < f || group.value.is_nan() {
                    group.value = f;
                }
            }
            Accumulate::Variance => {
                let delta = f - group.mean;
                group.mean += delta / group.count;
                group.value += delta * (f - group.mean);
            }
            Accumulate::Quantile => group.values.push(f),
            Accumulate::LimitRatio | Accumulate::Count => {}
        }
    }
}

/// `by (labels)` (`without` false) or `without (labels)`; `by ()` when there is none.
#[derive(Clone, Copy)]
struct Modifier<'a> {
    without: bool,
    labels: &'a [String],
}

pub(crate) fn eval_aggregate(
    ev: &mut Evaluator<'_>,
    agg: &AggregateExpr,
    ts: i64,
) -> Result<Value, Error> {
    let op = agg.op.name();
    let param = match &agg.param {
        Some(p) => Some(ev.eval(p, ts)?),
        None => None,
    };
    let modifier = Modifier {
        without: agg.without,
        labels: &agg.grouping,
    };

    if op == "count_values" {
        let input = ev.eval_vector(&agg.expr, ts)?;
        let Some(Value::String { s: label, .. }) = param else {
            return Err(exec("count_values: label parameter must be a string"));
        };
        return count_values(&label, input, modifier, ts);
    }
    let scalar_param = match param {
        Some(Value::Scalar { v, .. }) => Some(v),
        Some(_) => return Err(exec(format!("{op}: parameter must be a scalar"))),
        None => None,
    };
    if op == "limit_ratio" {
        let r = scalar_param.unwrap_or(f64::NAN);
        let pos = agg.param.as_ref().map_or(agg.pos, |p| p.pos());
        if r > 1.0 {
            ev.annotate(crate::annotations::Annotation::invalid_ratio(r, 1.0, pos));
        } else if r < -1.0 {
            ev.annotate(crate::annotations::Annotation::invalid_ratio(r, -1.0, pos));
        }
    }
    if op == "quantile" {
        let pos = agg.param.as_ref().map_or(agg.pos, |p| p.pos());
        crate::functions::check_quantile(ev, scalar_param.unwrap_or(f64::NAN), pos);
    }
    if matches!(op, "topk" | "bottomk" | "limitk") {
        let mut input = ev.eval_vector(&agg.expr, ts)?;
        if op != "limitk" && input.iter().any(|e| e.h.is_some()) {
            input.retain(|e| e.h.is_none());
            ev.annotate(
                crate::annotations::Annotation::histogram_ignored_in_aggregation(op, agg.pos),
            );
        }
        let k = scalar_param.unwrap_or(f64::NAN);
        return top_bottom(op, k, input, modifier, ts);
    }
    let Some(acc) = Accumulate::of(op) else {
        return Err(exec(format!("unsupported aggregation {op:?}")));
    };

    let node = std::ptr::from_ref(agg) as usize;
    let mut cache = ev.group_cache.remove(&node).unwrap_or_default();
    // Groups by index into the cache's groups, in the order first seen at this step.
    let mut slots = Slots::default();
    // A window function of a range selector, or an instant selector, computed for every
    // step: its values at this step are aggregated straight from the step's column, each
    // series' group known from the first step on (no element, label set or lookup per
    // series and step).
    let (cells, source) = match agg.expr.unparen() {
        _ if acc == Accumulate::LimitRatio => (None, 0),
        Expr::Call(call) => (ev.step_cells(call, ts)?, std::ptr::from_ref(call) as usize),
        Expr::VectorSelector(vs) => (ev.selector_cells(vs, ts)?, crate::eval::key(vs)),
        _ => (None, 0),
    };
    if let Some(cells) = cells {
        let labels = ev.labels_of(source).unwrap_or_default();
        cache.series_groups(source, labels, modifier);
        let groups = cache.series.as_ref().map_or(&[][..], |(_, g)| g);
        for (i, f) in cells.cells {
            let Some(&index) = groups.get(i) else {
                continue;
            };
            if let Some(group) = slots.get(index, &cache.groups) {
                group.drop_name |= cells.drop_name;
                acc.add(group, f);
            }
        }
    } else {
        let input = ev.eval_vector(&agg.expr, ts)?;
        cache.bound(input.len());
        for e in input {
            // Aggregations of floats only pass histograms by (before the group is made:
            // a group of histograms only has no value).
            if e.h.is_some()
                && matches!(
                    acc,
                    Accumulate::Min | Accumulate::Max | Accumulate::Variance | Accumulate::Quantile
                )
            {
                ev.annotate(
                    crate::annotations::Annotation::histogram_ignored_in_aggregation(
                        op,
                        agg.expr.pos(),
                    ),
                );
                continue;
            }
            let index = cache.group_of(&e.labels, modifier);
            let Some(group) = slots.get(index, &cache.groups) else {
                continue;
            };
            group.drop_name |= e.drop_name;
            if matches!(acc, Accumulate::Sum | Accumulate::Avg) {
                // Prometheus' order: the group's first element sets what it holds; an
                // addition that fails leaves the group without a value.
                if group.incompatible {
                    continue;
                }
                let first = !group.has_float && !group.has_histogram;
                match &e.h {
                    Some(h) => {
                        group.has_histogram = true;
                        if acc == Accumulate::Avg {
                            group.count += 1.0;
                        }
                        if first {
                            group.histogram = Some(h.as_ref().clone());
                            continue;
                        }
                        let count = group.count;
                        if let Some(acc_h) = group.histogram.as_mut() {
                            let done = if acc == Accumulate::Sum {
                                acc_h.add(h)
                            } else {
                                // The incremental mean: mean += h / n - mean / n.
                                let mut left = h.as_ref().clone();
                                left.div(count);
                                let mut right = acc_h.clone();
                                right.div(count);
                                left.sub(&right).and_then(|()| acc_h.add(&left))
                            };
                            if let Err(err) = done {
                                let metric = e.labels.metric_name().unwrap_or("");
                                ev.annotate(crate::histogram_functions::incompatible(
                                    err,
                                    metric,
                                    agg.expr.pos(),
                                ));
                                group.incompatible = true;
                            }
                        }
                        continue;
                    }
                    None => group.has_float = true,
                }
            }
            acc.add(group, e.v);
            if acc == Accumulate::LimitRatio {
                group.members.push(e);
            }
        }
    }
    ev.group_cache.insert(node, cache);

    let mut out = Vec::with_capacity(slots.order.len());
    for index in slots.order {
        let Some(group) = slots.slots.get_mut(index).and_then(Option::take) else {
            continue;
        };
        if matches!(op, "sum" | "avg") && group.has_histogram {
            if group.has_float {
                ev.annotate(
                    crate::annotations::Annotation::mixed_floats_histograms_aggregation(
                        agg.expr.pos(),
                    ),
                );
                continue;
            }
            if group.incompatible {
                continue;
            }
            let Some(mut h) = group.histogram else {
                continue;
            };
            h.compact();
            out.push(Element {
                labels: group.labels,
                t: ts,
                v: 0.0,
                h: Some(std::sync::Arc::new(h)),
                drop_name: group.drop_name,
            });
            continue;
        }
        let value = match op {
            "sum" => {
                if group.value.is_infinite() {
                    group.value
                } else {
                    group.value + group.kahan
                }
            }
            "avg" => {
                if group.count == 1.0 {
                    group.value
                } else if group.incremental_mean {
                    group.mean + group.kahan
                } else {
                    group.value / group.count + group.kahan / group.count
                }
            }
            "count" => group.count,
            "group" => 1.0,
            "min" | "max" => group.value,
            "stdvar" => group.value / group.count,
            "stddev" => (group.value / group.count).sqrt(),
            "quantile" => quantile_of(scalar_param.unwrap_or(f64::NAN), group.values),
            "limit_ratio" => {
                out.extend(limit_ratio(scalar_param.unwrap_or(f64::NAN), group.members));
                continue;
            }
            _ => 0.0,
        };
        out.push(Element {
            labels: group.labels,
            t: ts,
            v: value,
            h: None,
            drop_name: group.drop_name,
        });
    }
    Ok(Value::Vector(out))
}

fn count_values(
    label: &str,
    input: Vec<Element>,
    modifier: Modifier<'_>,
    ts: i64,
) -> Result<Value, Error> {
    if !is_valid_label_name(label) {
        return Err(exec(format!("invalid label name {label:?}")));
    }
    let mut order: Vec<Labels> = Vec::new();
    let mut counts: HashMap<Labels, f64> = HashMap::new();
    for e in input {
        let mut b = grouping_labels(&e.labels, e.drop_name, modifier).to_builder();
        let value = match &e.h {
            Some(h) => crate::histogram_functions::go_string(h),
            None => format_float_f(e.v),
        };
        b.set(label.to_owned(), value);
        let key = b.build();
        let count = counts.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            0.0
        });
        *count += 1.0;
    }
    let out = order
        .into_iter()
        .map(|labels| {
            let v = counts.get(&labels).copied().unwrap_or(0.0);
            Element {
                labels,
                t: ts,
                v,
                h: None,
                drop_name: false,
            }
        })
        .collect();
    Ok(Value::Vector(out))
}

pub(crate) fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn top_bottom(
    op: &str,
    k: f64,
    input: Vec<Element>,
    modifier: Modifier<'_>,
    ts: i64,
) -> Result<Value, Error> {
    if k.is_nan() {
        return Err(exec("Parameter value is NaN"));
    }
    if k >= 9.223_372_036_854_776e18 || k <= -9.223_372_036_854_776e18 {
        return Err(exec(format!(
            "Scalar value {} overflows int64",
            crate::value::format_float(k)
        )));
    }
    let k = k as i64;
    if k < 1 {
        return Ok(Value::Vector(Vec::new()));
    }
    let k = usize::try_from(k).unwrap_or(usize::MAX);
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<Element>> = HashMap::new();
    for e in input {
        let key = grouping_labels(&e.labels, e.drop_name, modifier);
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(e);
    }
    let mut out = Vec::new();
    for key in order {
        let Some(mut members) = groups.remove(&key) else {
            continue;
        };
        match op {
            "topk" => members.sort_by(|a, b| desc_nan_last(a.v, b.v)),
            "bottomk" => members.sort_by(|a, b| asc_nan_last(a.v, b.v)),
            _ => {}
        }
        members.truncate(k);
        for mut e in members {
            e.t = ts;
            out.push(e);
        }
    }
    Ok(Value::Vector(out))
}

fn desc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
    }
}

fn asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// `limit_ratio(r, v)`: keeps a deterministic share `r` of the series, chosen by a hash of
/// the labels (negative `r` keeps the complement).
fn limit_ratio(ratio: f64, members: Vec<Element>) -> Vec<Element> {
    let ratio = ratio.clamp(-1.0, 1.0);
    members
        .into_iter()
        .filter(|e| {
            let position = label_hash_ratio(&without_name(&e.labels));
            if ratio >= 0.0 {
                position < ratio
            } else {
                position >= 1.0 + ratio
            }
        })
        .collect()
}

fn label_hash_ratio(labels: &Labels) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    labels.hash(&mut h);
    (h.finish() as f64) / (u64::MAX as f64)
}
