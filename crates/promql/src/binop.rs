//! Binary operators: arithmetic, comparison (filtering or `bool`), set operators, and
//! one-to-one / many-to-one vector matching.

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

use crate::syntax::ast::{BinOp, BinaryExpr, Cardinality};
use strata_types::Labels;
use strata_types::histogram::FloatHistogram;

use crate::annotations::Annotation;

use crate::error::{Error, exec};
use crate::eval::{Evaluator, type_name};
use crate::identity::IdentityMap;
use crate::value::{Element, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn of(op: BinOp) -> Op {
        match op {
            BinOp::Add => Op::Add,
            BinOp::Sub => Op::Sub,
            BinOp::Mul => Op::Mul,
            BinOp::Div => Op::Div,
            BinOp::Mod => Op::Mod,
            BinOp::Pow => Op::Pow,
            BinOp::Atan2 => Op::Atan2,
            BinOp::Eql => Op::Eq,
            BinOp::Neq => Op::Ne,
            BinOp::Gtr => Op::Gt,
            BinOp::Lss => Op::Lt,
            BinOp::Gte => Op::Ge,
            BinOp::Lte => Op::Le,
            BinOp::And => Op::And,
            BinOp::Or => Op::Or,
            BinOp::Unless => Op::Unless,
        }
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }
}

/// Applies `op` to two floats: the value, and whether a comparison holds.
pub(crate) fn apply(op: Op, l: f64, r: f64) -> (f64, bool) {
    match op {
        Op::Add => (l + r, true),
        Op::Sub => (l - r, true),
        Op::Mul => (l * r, true),
        Op::Div => (l / r, true),
        Op::Mod => (l % r, true),
        Op::Pow => (l.powf(r), true),
        Op::Atan2 => (l.atan2(r), true),
        Op::Eq => (l, l == r),
        Op::Ne => (l, l != r),
        Op::Gt => (l, l > r),
        Op::Lt => (l, l < r),
        Op::Ge => (l, l >= r),
        Op::Le => (l, l <= r),
        Op::And | Op::Or | Op::Unless => (l, true),
    }
}

impl Op {
    /// The operator as Prometheus spells it in annotations.
    fn name(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Mod => "%",
            Op::Pow => "^",
            Op::Atan2 => "atan2",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Lt => "<",
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::And => "and",
            Op::Or => "or",
            Op::Unless => "unless",
        }
    }
}

/// What `vectorElemBinop` gives: a float or a histogram, and whether to keep it.
type ElemResult = (f64, Option<Arc<FloatHistogram>>, bool);

/// Prometheus' `vectorElemBinop`: floats as [`apply`]; with a histogram on either side,
/// `*` (and histogram `/` float) scale it, histogram `+`/`-` histogram add, histogram
/// `==`/`!=` histogram compare, anything else is no result with the annotation to give.
fn elem_binop(
    op: Op,
    (l, lh): (f64, Option<&Arc<FloatHistogram>>),
    (r, rh): (f64, Option<&Arc<FloatHistogram>>),
    pos: usize,
) -> Result<ElemResult, Annotation> {
    let incompatible =
        |a: &str, b: &str| Annotation::incompatible_types_in_binop(a, op.name(), b, pos);
    match (lh, rh) {
        (None, None) => {
            let (v, keep) = apply(op, l, r);
            Ok((v, None, keep))
        }
        (None, Some(h)) => match op {
            Op::Mul => {
                let mut h = (**h).clone();
                h.mul(l);
                h.compact();
                Ok((0.0, Some(Arc::new(h)), true))
            }
            _ => Err(incompatible("float", "histogram")),
        },
        (Some(h), None) => match op {
            Op::Mul | Op::Div => {
                let mut h = (**h).clone();
                if op == Op::Mul {
                    h.mul(r);
                } else {
                    h.div(r);
                }
                h.compact();
                Ok((0.0, Some(Arc::new(h)), true))
            }
            _ => Err(incompatible("histogram", "float")),
        },
        (Some(a), Some(b)) => match op {
            Op::Add | Op::Sub => {
                let mut h = (**a).clone();
                let done = if op == Op::Add { h.add(b) } else { h.sub(b) };
                if done.is_err() {
                    return Err(Annotation::incompatible_bucket_layout_in_binop(
                        op.name(),
                        pos,
                    ));
                }
                h.compact();
                Ok((0.0, Some(Arc::new(h)), true))
            }
            Op::Eq => Ok((0.0, Some(Arc::clone(a)), a.equals(b))),
            Op::Ne => Ok((0.0, Some(Arc::clone(a)), !a.equals(b))),
            _ => Err(incompatible("histogram", "histogram")),
        },
    }
}

/// How two vectors are matched.
struct Matching<'m> {
    on: bool,
    labels: &'m [String],
    card: Cardinality,
    include: &'m [String],
}

impl Matching<'_> {
    /// The matching key of a label set: the `on` labels, or all but the `ignoring` labels and
    /// the metric name.
    fn signature(&self, labels: &Labels) -> Vec<(String, String)> {
        if self.on {
            let mut sig: Vec<(String, String)> = Vec::with_capacity(self.labels.len());
            for name in self.labels {
                sig.push((name.clone(), labels.get(name).unwrap_or("").to_owned()));
            }
            sig.sort();
            sig
        } else {
            labels
                .iter()
                .filter(|l| l.name != "__name__" && !self.labels.contains(&l.name))
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect()
        }
    }
}

/// Per binary-operator node, what vector matching works out per label set, kept across the
/// steps of one evaluator: the same series (the same shared label sets) come back at every
/// step. Label sets are keyed by identity and held, so an address cannot be reused by
/// another set while its entry lives.
#[derive(Debug, Default)]
pub(crate) struct MatchCache {
    /// Label set → its signature's number.
    signatures: IdentityMap<usize, (Labels, u32)>,
    interned: HashMap<Vec<(String, String)>, u32>,
    /// (many side, one side) → the result's labels.
    results: IdentityMap<(usize, usize), Labels>,
}

impl MatchCache {
    /// Forgets everything once it holds far more sets than a step brings (inputs made
    /// afresh at every step never hit and must not pile up).
    fn bound(&mut self, input_len: usize) {
        let limit = input_len.saturating_mul(4).saturating_add(1024);
        if self.signatures.len() > limit || self.results.len() > limit {
            *self = MatchCache::default();
        }
    }

    fn signature(&mut self, labels: &Labels, matching: &Matching<'_>) -> u32 {
        if let Some(&(_, sig)) = self.signatures.get(&labels.identity()) {
            return sig;
        }
        let next = u32::try_from(self.interned.len()).unwrap_or(u32::MAX);
        let sig = *self
            .interned
            .entry(matching.signature(labels))
            .or_insert(next);
        self.signatures
            .insert(labels.identity(), (labels.clone(), sig));
        sig
    }

    /// The labels of a result; both sets must have had their signature taken this step
    /// (which holds them).
    fn result(
        &mut self,
        many: &Labels,
        one: &Labels,
        matching: &Matching<'_>,
        include: &[String],
        grouped: bool,
    ) -> Labels {
        self.results
            .entry((many.identity(), one.identity()))
            .or_insert_with(|| result_labels(many, one, matching, include, grouped))
            .clone()
    }
}

pub(crate) fn eval_binary(ev: &mut Evaluator<'_>, b: &BinaryExpr, ts: i64) -> Result<Value, Error> {
    let op = Op::of(b.op);
    let return_bool = b.return_bool;
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    match (lhs, rhs) {
        (Value::Scalar { v: l, .. }, Value::Scalar { v: r, .. }) => {
            let (value, keep) = apply(op, l, r);
            let value = if op.is_comparison() {
                if keep { 1.0 } else { 0.0 }
            } else {
                value
            };
            Ok(Value::Scalar { t: ts, v: value })
        }
        (Value::Vector(v), Value::Scalar { v: s, .. }) => {
            let (out, note) = vector_scalar(op, v, s, false, return_bool, ts, b.lhs.pos());
            if let Some(note) = note {
                ev.annotate(note);
            }
            Ok(Value::Vector(out))
        }
        (Value::Scalar { v: s, .. }, Value::Vector(v)) => {
            let (out, note) = vector_scalar(op, v, s, true, return_bool, ts, b.lhs.pos());
            if let Some(note) = note {
                ev.annotate(note);
            }
            Ok(Value::Vector(out))
        }
        (Value::Vector(l), Value::Vector(r)) => {
            let matching = match &b.matching {
                Some(m) => Matching {
                    on: m.on,
                    labels: &m.labels,
                    card: m.card,
                    include: &m.include,
                },
                None => Matching {
                    on: false,
                    labels: &[],
                    card: Cardinality::OneToOne,
                    include: &[],
                },
            };
            let node = std::ptr::from_ref(b) as usize;
            let mut cache = ev.match_cache.remove(&node).unwrap_or_default();
            cache.bound(l.len().saturating_add(r.len()));
            let mut note = None;
            let out = if op.is_set() {
                Ok(set_op(op, l, r, &matching, &mut cache))
            } else {
                vector_vector(
                    op,
                    l,
                    r,
                    &matching,
                    (return_bool, ts, b.lhs.pos()),
                    &mut cache,
                    &mut note,
                )
            };
            ev.match_cache.insert(node, cache);
            if let Some(note) = note {
                ev.annotate(note);
            }
            out.map(Value::Vector)
        }
        (l, r) => Err(exec(format!(
            "binary operator not defined on {} and {}",
            type_name(&l),
            type_name(&r)
        ))),
    }
}

#[allow(clippy::too_many_arguments)]
fn vector_scalar(
    op: Op,
    vector: Vec<Element>,
    scalar: f64,
    swap: bool,
    return_bool: bool,
    ts: i64,
    pos: usize,
) -> (Vec<Element>, Option<Annotation>) {
    let mut out = Vec::with_capacity(vector.len());
    let mut last_note = None;
    for e in vector {
        let sides = if swap {
            ((scalar, None), (e.v, e.h.as_ref()))
        } else {
            ((e.v, e.h.as_ref()), (scalar, None))
        };
        let (mut value, mut h, mut keep) = match elem_binop(op, sides.0, sides.1, pos) {
            Ok(result) => result,
            Err(note) => {
                last_note = Some(note);
                continue;
            }
        };
        // The vector's value is the result of a filtering comparison, whichever side it is on.
        if op.is_comparison() && swap {
            value = e.v;
            h = e.h.clone();
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            h = None;
            keep = true;
        }
        if !keep {
            continue;
        }
        let drop_name = e.drop_name || !op.is_comparison() || return_bool;
        out.push(Element {
            labels: e.labels,
            t: ts,
            v: value,
            h,
            drop_name,
        });
    }
    (out, last_note)
}

fn set_op(
    op: Op,
    lhs: Vec<Element>,
    rhs: Vec<Element>,
    matching: &Matching<'_>,
    cache: &mut MatchCache,
) -> Vec<Element> {
    match op {
        Op::And | Op::Unless => {
            let right: HashSet<u32> = rhs
                .iter()
                .map(|e| cache.signature(&e.labels, matching))
                .collect();
            let keep_matched = op == Op::And;
            lhs.into_iter()
                .filter(|e| right.contains(&cache.signature(&e.labels, matching)) == keep_matched)
                .collect()
        }
        _ => {
            let left: HashSet<u32> = lhs
                .iter()
                .map(|e| cache.signature(&e.labels, matching))
                .collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|e| !left.contains(&cache.signature(&e.labels, matching))),
            );
            out
        }
    }
}

fn format_match_labels(labels: &Labels, matching: &Matching<'_>) -> String {
    let kept: Vec<(String, String)> = if matching.on {
        labels
            .iter()
            .filter(|l| matching.labels.contains(&l.name))
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    } else {
        labels
            .iter()
            .filter(|l| l.name != "__name__" && !matching.labels.contains(&l.name))
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect()
    };
    Labels::from_pairs(kept).to_string()
}

fn vector_vector(
    op: Op,
    lhs: Vec<Element>,
    rhs: Vec<Element>,
    matching: &Matching<'_>,
    (return_bool, ts, pos): (bool, i64, usize),
    cache: &mut MatchCache,
    last_note: &mut Option<Annotation>,
) -> Result<Vec<Element>, Error> {
    let one_to_many = matching.card == Cardinality::OneToMany;
    let include: &[String] = match matching.card {
        Cardinality::ManyToOne | Cardinality::OneToMany => matching.include,
        _ => &[],
    };
    let grouped = matching.card != Cardinality::OneToOne;
    let (many, one) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };

    let mut one_side: HashMap<u32, Element> = HashMap::with_capacity(one.len());
    for e in one {
        let sig = cache.signature(&e.labels, matching);
        if let Some(existing) = one_side.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(exec(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                format_match_labels(&e.labels, matching),
                e.labels,
                existing.labels
            )));
        }
        one_side.insert(sig, e);
    }

    // Signatures matched so far; with group_left/group_right, the result label sets of each.
    let mut matched: HashSet<u32> = HashSet::new();
    let mut grouped_results: HashMap<u32, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for ls in many {
        let sig = cache.signature(&ls.labels, matching);
        let Some(rs) = one_side.get(&sig) else {
            continue;
        };
        let (l, r) = if one_to_many {
            ((rs.v, rs.h.as_ref()), (ls.v, ls.h.as_ref()))
        } else {
            ((ls.v, ls.h.as_ref()), (rs.v, rs.h.as_ref()))
        };
        let (mut value, mut h, keep) = if l.1.is_none() && r.1.is_none() {
            let (v, keep) = apply(op, l.0, r.0);
            (v, None, keep)
        } else {
            match elem_binop(op, l, r, pos) {
                Ok(result) => result,
                Err(note) => {
                    // Prometheus skips the pair before its matching checks.
                    *last_note = Some(note);
                    continue;
                }
            }
        };
        let labels = cache.result(&ls.labels, &rs.labels, matching, include, grouped);
        // Matching errors are found even for samples a comparison filters away.
        if grouped {
            if !grouped_results
                .entry(sig)
                .or_default()
                .insert(labels.clone())
            {
                return Err(exec(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                ));
            }
        } else if !matched.insert(sig) {
            return Err(exec(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
            ));
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            h = None;
        } else if !keep {
            continue;
        }
        let drop_name = if op.is_comparison() && !return_bool {
            ls.drop_name
        } else {
            true
        };
        out.push(Element {
            labels,
            t: ts,
            v: value,
            h,
            drop_name,
        });
    }
    Ok(out)
}

fn result_labels(
    many: &Labels,
    one: &Labels,
    matching: &Matching<'_>,
    include: &[String],
    grouped: bool,
) -> Labels {
    let mut b = many.to_builder();
    if !grouped {
        if matching.on {
            let keep: Vec<(String, String)> = many
                .iter()
                .filter(|l| matching.labels.contains(&l.name))
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            return Labels::from_pairs(keep);
        }
        for name in matching.labels {
            b.delete(name);
        }
    }
    for name in include {
        match one.get(name) {
            Some(v) => {
                b.set(name.clone(), v.to_owned());
            }
            None => {
                b.delete(name);
            }
        }
    }
    b.build()
}
