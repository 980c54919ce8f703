//! PromQL printed back as Prometheus 3.5 prints it: `Display` is its `String()`
//! (`parser/printer.go`: sorted matchers, `by (…) ` before the parenthesis, durations as
//! `model.Duration`), [`pretty`] its `Prettify` (`parser/prettier.go`: a node longer than
//! 100 characters is split over lines, two spaces of indent per level). `/api/v1/format_query`
//! answers with [`pretty`].

use std::fmt::{self, Write};

use super::ast::{
    AggregateExpr, AtModifier, BinaryExpr, Call, Cardinality, Expr, MatrixSelector, NumberLiteral,
    SubqueryExpr, VectorSelector,
};
use super::lexer::go_quote;

/// Prometheus' `maxCharactersPerLine`.
const MAX_CHARACTERS_PER_LINE: usize = 100;

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Trees are at most `MAX_DEPTH` high; deep ones print on a grown stack.
        super::grow(|| self.write_string(f))
    }
}

impl Expr {
    fn write_string(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::NumberLiteral(n) => write_number(f, n),
            Expr::StringLiteral(s) => f.write_str(&go_quote(&s.val)),
            Expr::VectorSelector(vs) => write_vector_selector(f, vs, true),
            Expr::MatrixSelector(ms) => write_matrix_selector(f, ms),
            Expr::Subquery(sq) => write!(f, "{}{}", sq.expr, SubquerySuffix(sq)),
            Expr::Call(c) => {
                write!(f, "{}(", c.func.name)?;
                write_args(f, c)?;
                f.write_char(')')
            }
            Expr::Aggregate(a) => {
                write_agg_op(f, a)?;
                f.write_char('(')?;
                if let Some(param) = &a.param {
                    write!(f, "{param}, ")?;
                }
                write!(f, "{})", a.expr)
            }
            Expr::Binary(b) => {
                write!(f, "{} {}", b.lhs, b.op.name())?;
                write_bool_and_matching(f, b)?;
                write!(f, " {}", b.rhs)
            }
            Expr::Unary(u) => write!(f, "{}{}", if u.negate { "-" } else { "+" }, u.expr),
            Expr::Paren(p) => write!(f, "({})", p.expr),
        }
    }
}

/// The expression as `/api/v1/format_query` prints it (Prometheus' `Prettify`).
pub fn pretty(expr: &Expr) -> String {
    pretty_with_width(expr, MAX_CHARACTERS_PER_LINE)
}

/// [`pretty`] with another line width (Prometheus' tests use 10).
pub fn pretty_with_width(expr: &Expr, width: usize) -> String {
    let mut out = String::new();
    Pretty { width }.write(&mut out, expr, 0);
    out
}

/// Prometheus' `Pretty(level)` of each node, splitting nodes longer than `width`.
struct Pretty {
    width: usize,
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

impl Pretty {
    /// Whether the node prints longer than the width. Printing stops past the width, so a
    /// node costs at most the width, not its whole subtree (no quadratic time on a long
    /// query).
    fn needs_split(&self, expr: &Expr) -> bool {
        let mut bounded = Bounded { left: self.width };
        write!(bounded, "{expr}").is_err()
    }

    fn write(&self, out: &mut String, expr: &Expr, level: usize) {
        super::grow(|| self.write_node(out, expr, level))
    }

    fn write_node(&self, out: &mut String, expr: &Expr, level: usize) {
        match expr {
            Expr::Aggregate(a) => {
                indent(out, level);
                if !self.needs_split(expr) {
                    let _ = write!(out, "{expr}");
                    return;
                }
                let _ = write_agg_op(out, a);
                out.push_str("(\n");
                if let Some(param) = &a.param {
                    self.write(out, param, level + 1);
                    out.push_str(",\n");
                }
                self.write(out, &a.expr, level + 1);
                out.push('\n');
                indent(out, level);
                out.push(')');
            }
            Expr::Binary(b) => {
                if !self.needs_split(expr) {
                    indent(out, level);
                    let _ = write!(out, "{expr}");
                    return;
                }
                // Prometheus writes its indent and then the operands' own: the left operand
                // starts at the indent of level + 1 without this level's.
                self.write(out, &b.lhs, level + 1);
                out.push('\n');
                indent(out, level);
                out.push_str(b.op.name());
                let _ = write_bool_and_matching(out, b);
                out.push('\n');
                self.write(out, &b.rhs, level + 1);
            }
            Expr::Call(c) => {
                indent(out, level);
                if !self.needs_split(expr) {
                    let _ = write!(out, "{expr}");
                    return;
                }
                out.push_str(c.func.name);
                out.push_str("(\n");
                for (i, arg) in c.args.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                    }
                    self.write(out, arg, level + 1);
                }
                out.push('\n');
                indent(out, level);
                out.push(')');
            }
            Expr::Paren(p) => {
                indent(out, level);
                if !self.needs_split(expr) {
                    let _ = write!(out, "{expr}");
                    return;
                }
                out.push_str("(\n");
                self.write(out, &p.expr, level + 1);
                out.push('\n');
                indent(out, level);
                out.push(')');
            }
            Expr::Subquery(sq) => {
                if !self.needs_split(expr) {
                    // Prometheus prints an unsplit subquery without its indent.
                    let _ = write!(out, "{expr}");
                    return;
                }
                self.write(out, &sq.expr, level);
                let _ = write!(out, "{}", SubquerySuffix(sq));
            }
            Expr::Unary(u) => {
                let mut child = String::new();
                self.write(&mut child, &u.expr, level);
                indent(out, level);
                out.push(if u.negate { '-' } else { '+' });
                out.push_str(child.trim_matches(go_space));
            }
            Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_) => {
                indent(out, level);
                let _ = write!(out, "{expr}");
            }
        }
    }
}

/// A writer that fails once more than `left` bytes are written.
struct Bounded {
    left: usize,
}

impl Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.left = self.left.checked_sub(s.len()).ok_or(fmt::Error)?;
        Ok(())
    }
}

/// What Go's `strings.TrimSpace` trims.
fn go_space(c: char) -> bool {
    c.is_whitespace()
}

fn write_args(f: &mut impl Write, c: &Call) -> fmt::Result {
    for (i, arg) in c.args.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{arg}")?;
    }
    Ok(())
}

/// `getAggOpStr`: the operator and its grouping, with a trailing space after a grouping.
fn write_agg_op(f: &mut impl Write, a: &AggregateExpr) -> fmt::Result {
    f.write_str(a.op.name())?;
    if a.without {
        f.write_str(" without (")?;
    } else if !a.grouping.is_empty() {
        f.write_str(" by (")?;
    } else {
        return Ok(());
    }
    for (i, label) in a.grouping.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        if is_legacy_metric_name(label) {
            f.write_str(label)?;
        } else {
            f.write_str(&go_quote(label))?;
        }
    }
    f.write_str(") ")
}

/// ` bool` and ` on (…) group_left (…)` of a binary operation (`getMatchingStr`).
fn write_bool_and_matching(f: &mut impl Write, b: &BinaryExpr) -> fmt::Result {
    if b.return_bool {
        f.write_str(" bool")?;
    }
    let Some(m) = b.matching.as_ref().filter(|_| has_vector_matching(b)) else {
        return Ok(());
    };
    if m.labels.is_empty() && !m.on {
        return Ok(());
    }
    write!(
        f,
        " {} ({})",
        if m.on { "on" } else { "ignoring" },
        m.labels.join(", ")
    )?;
    match m.card {
        Cardinality::ManyToOne => write!(f, " group_left ({})", m.include.join(", ")),
        Cardinality::OneToMany => write!(f, " group_right ({})", m.include.join(", ")),
        Cardinality::OneToOne | Cardinality::ManyToMany => Ok(()),
    }
}

/// Whether Prometheus keeps the vector matching of a binary operation: only between two
/// instant vectors (it drops it when either side is a scalar).
pub fn has_vector_matching(b: &BinaryExpr) -> bool {
    use super::functions::ValueType;
    b.lhs.value_type() == ValueType::Vector && b.rhs.value_type() == ValueType::Vector
}

fn write_number(f: &mut impl Write, n: &NumberLiteral) -> fmt::Result {
    if n.duration {
        let ms = n.val * 1000.0;
        if n.val < 0.0 {
            return write!(f, "-{}", ModelDuration((-ms) as i64));
        }
        return write!(f, "{}", ModelDuration(ms as i64));
    }
    f.write_str(&format_float(n.val))
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// Prometheus' `model.Duration` printed: `1h30m`, `90d` (years and weeks only when exact),
/// `0s` for nothing.
#[derive(Debug, Clone, Copy)]
pub struct ModelDuration(pub i64);

impl fmt::Display for ModelDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0;
        if ms == 0 {
            return f.write_str("0s");
        }
        const UNITS: [(&str, i64, bool); 7] = [
            ("y", 1000 * 60 * 60 * 24 * 365, true),
            ("w", 1000 * 60 * 60 * 24 * 7, true),
            ("d", 1000 * 60 * 60 * 24, false),
            ("h", 1000 * 60 * 60, false),
            ("m", 1000 * 60, false),
            ("s", 1000, false),
            ("ms", 1, false),
        ];
        for (unit, mult, exact) in UNITS {
            if exact && ms % mult != 0 {
                continue;
            }
            let v = ms / mult;
            if v > 0 {
                write!(f, "{v}{unit}")?;
                ms -= v * mult;
            }
        }
        Ok(())
    }
}

/// ` @ …` and ` offset …` of a selector or subquery.
fn write_at_offset(f: &mut impl Write, at: Option<AtModifier>, offset: i64) -> fmt::Result {
    match at {
        Some(AtModifier::At(ms)) => write!(f, " @ {:.3}", ms as f64 / 1000.0)?,
        Some(AtModifier::Start) => f.write_str(" @ start()")?,
        Some(AtModifier::End) => f.write_str(" @ end()")?,
        None => {}
    }
    if offset > 0 {
        write!(f, " offset {}", ModelDuration(offset))?;
    } else if offset < 0 {
        write!(f, " offset -{}", ModelDuration(-offset))?;
    }
    Ok(())
}

fn write_vector_selector(
    f: &mut impl Write,
    vs: &VectorSelector,
    with_modifiers: bool,
) -> fmt::Result {
    let name = vs.name.as_deref().unwrap_or("");
    let mut matchers: Vec<String> = vs
        .matchers
        .iter()
        .filter(|m| {
            !(m.name() == "__name__"
                && m.kind() == strata_types::MatchType::Equal
                && m.value() == name
                && !m.value().is_empty())
        })
        .map(|m| {
            let label = if should_quote_label(m.name()) {
                go_quote(m.name())
            } else {
                m.name().to_owned()
            };
            format!("{label}{}{}", m.kind().as_str(), go_quote(m.value()))
        })
        .collect();
    f.write_str(name)?;
    if !matchers.is_empty() {
        matchers.sort();
        write!(f, "{{{}}}", matchers.join(","))?;
    }
    if with_modifiers {
        write_at_offset(f, vs.at, vs.offset)?;
    }
    Ok(())
}

fn write_matrix_selector(f: &mut impl Write, ms: &MatrixSelector) -> fmt::Result {
    write_vector_selector(f, &ms.vs, false)?;
    write!(f, "[{}]", ModelDuration(ms.range))?;
    write_at_offset(f, ms.vs.at, ms.vs.offset)
}

/// `[range:step] @ … offset …` of a subquery.
struct SubquerySuffix<'a>(&'a SubqueryExpr);

impl fmt::Display for SubquerySuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sq = self.0;
        write!(f, "[{}:", ModelDuration(sq.range))?;
        if sq.step != 0 {
            write!(f, "{}", ModelDuration(sq.step))?;
        }
        f.write_char(']')?;
        write_at_offset(f, sq.at, sq.offset)
    }
}

/// Prometheus' `Matcher.shouldQuoteName`: anything but `[a-zA-Z_][a-zA-Z0-9_]*`.
fn should_quote_label(name: &str) -> bool {
    name.is_empty()
        || name
            .char_indices()
            .any(|(i, c)| !(c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
}

/// `model.IsValidLegacyMetricName`: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_legacy_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.char_indices().all(|(i, c)| {
            c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::{ParseOptions, parse};

    fn printed(q: &str) -> String {
        parse(q, ParseOptions::default())
            .map(|e| e.to_string())
            .unwrap_or_else(|e| format!("error: {}", e.message))
    }

    /// Cases from Prometheus 3.5's `printer_test.go` (`TestExprString`): each input prints
    /// as the expected string (the input itself when none is given).
    #[test]
    fn prints_as_prometheus() {
        let cases: &[(&str, &str)] = &[
            (
                "sum by() (task:errors:rate10s{job=\"s\"})",
                "sum(task:errors:rate10s{job=\"s\"})",
            ),
            (
                "sum by(code) (task:errors:rate10s{job=\"s\"})",
                "sum by (code) (task:errors:rate10s{job=\"s\"})",
            ),
            (
                "sum without() (task:errors:rate10s{job=\"s\"})",
                "sum without () (task:errors:rate10s{job=\"s\"})",
            ),
            (
                "sum without(instance) (task:errors:rate10s{job=\"s\"})",
                "sum without (instance) (task:errors:rate10s{job=\"s\"})",
            ),
            ("topk(5, task:errors:rate10s{job=\"s\"})", ""),
            (
                "count_values(\"value\", task:errors:rate10s{job=\"s\"})",
                "",
            ),
            ("a - on() c", "a - on () c"),
            ("a - on(b) c", "a - on (b) c"),
            ("a - on(b) group_left(x) c", "a - on (b) group_left (x) c"),
            (
                "a - on(b) group_left(x, y) c",
                "a - on (b) group_left (x, y) c",
            ),
            ("a - on(b) group_left c", "a - on (b) group_left () c"),
            ("a - on(b) group_left() (c)", "a - on (b) group_left () (c)"),
            ("a - ignoring(b) c", "a - ignoring (b) c"),
            ("a - ignoring() c", "a - c"),
            ("up > bool 0", ""),
            ("a offset 1m", ""),
            ("a offset -7m", ""),
            ("a{c=\"d\"}[5m] offset 1m", ""),
            ("a[5m] offset 1m", ""),
            ("a[12m] offset -3m", ""),
            ("a[1h:5m] offset 1m", ""),
            ("{__name__=\"a\"}", ""),
            ("a{b!=\"c\"}[1m]", ""),
            ("a{b=~\"c\"}[1m]", ""),
            ("a{b!~\"c\"}[1m]", ""),
            ("a @ 10", "a @ 10.000"),
            ("a[1m] @ 10", "a[1m] @ 10.000"),
            ("a @ start()", ""),
            ("a @ end()", ""),
            ("a[1m] @ start()", ""),
            ("a[1m] @ end()", ""),
            ("{__name__=\"\",a=\"x\"}", ""),
            ("-some_metric", ""),
            ("+some_metric", ""),
            ("rate(a[5m]) + -1", ""),
            ("sum by (\"foo\") (x)", "sum by (foo) (x)"),
            ("sum by (\"foo.bar\") (x)", "sum by (\"foo.bar\") (x)"),
            ("a{\"b.c\"=\"d\"}", ""),
            ("1e3", "1000"),
            ("5m", ""),
            ("-5m", ""),
            ("Inf", "+Inf"),
            ("-Inf", ""),
            ("NaN", ""),
            ("(1 + 2) * 3", ""),
            ("x[1h:]", ""),
            ("x[1w]", "x[1w]"),
            ("x[14d]", "x[2w]"),
            ("x[90d]", "x[90d]"),
            ("x[36h]", "x[1d12h]"),
            ("\"a\\nb\"", ""),
            ("`raw`", "\"raw\""),
        ];
        for (input, want) in cases {
            let want = if want.is_empty() { input } else { want };
            assert_eq!(printed(input), *want, "input {input}");
        }
    }

    /// The deepest trees the parser builds print on any stack; long operands are split.
    #[test]
    fn deep_and_long_queries_print() {
        let chain = format!("x{}", " + x".repeat(998));
        let e = parse(&chain, ParseOptions::default()).unwrap();
        assert_eq!(e.to_string(), chain);
        let printed = pretty(&e);
        assert!(printed.lines().count() > 1900, "split at every long level");
        let nested = format!("{}x{}", "(".repeat(990), ")".repeat(990));
        let e = parse(&nested, ParseOptions::default()).unwrap();
        // The tree is dropped on this thread: only printing runs on the small stack.
        let (printed, _e) = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || (pretty(&e), e))
            .unwrap()
            .join()
            .unwrap();
        assert!(printed.ends_with(')'));
        let long_selector = format!("x{{a=\"{}\"}}", "v".repeat(1 << 20));
        let many = [long_selector.as_str(); 8].join(" + ");
        let e = parse(&many, ParseOptions::default()).unwrap();
        let printed = pretty(&e);
        assert_eq!(printed.matches(&long_selector).count(), 8);
        assert_eq!(printed.lines().count(), 8 + 7);
    }
}
