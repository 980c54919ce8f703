//! The PromQL parser: recursive descent following Prometheus 3.5's grammar
//! (`generated_parser.y`), its error productions and its type checks (`checkAST`), building
//! the [`ast`](super::ast) the engine evaluates. The first error is Prometheus' first error:
//! the same message at the same position.
//!
//! Hostile input is bounded: the parser's recursion and the height of the tree it builds are
//! limited to [`MAX_DEPTH`] (left-associative chains like `1+1+…+1` are built in a loop, so
//! their height is counted separately), so neither parsing nor the recursive walks over the
//! tree (type checks, evaluation, dropping it) can exhaust the stack; time and memory are
//! linear in the length of the query.

use strata_types::{MatchType, Matcher};

use super::ast::{
    AggOp, AggregateExpr, AtModifier, BinOp, BinaryExpr, Call, Cardinality, Expr, MatrixSelector,
    NumberLiteral, ParenExpr, StringLiteral, SubqueryExpr, UnaryExpr, VectorMatching,
    VectorSelector,
};
use super::functions::{self, ValueType};
use super::lexer::{Item, Kind, go_quote, lex};

/// The first error Prometheus reports for a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset in the query.
    pub pos: usize,
    /// Prometheus' message, without the position prefix.
    pub message: String,
}

/// What the parser accepts beyond Prometheus' defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    /// `--enable-feature=promql-experimental-functions`.
    pub experimental_functions: bool,
}

/// Deeper nesting (of the parser, and of the tree it builds) is refused; Prometheus has no
/// such limit, but no real query comes near it.
pub const MAX_DEPTH: usize = 1000;

/// A syntax error ends the parse; it is already recorded.
struct Abort;

type Parsed<T> = Result<T, Abort>;

/// An expression and the height of its tree.
struct Tree {
    e: Expr,
    h: usize,
}

impl Tree {
    fn leaf(e: Expr) -> Tree {
        Tree { e, h: 1 }
    }
}

struct Parser<'a> {
    input: &'a str,
    items: Vec<Item>,
    next: usize,
    first: Option<SyntaxError>,
    /// Depth of aggregations being parsed (their error production names the context).
    aggregation: usize,
    /// Recursion depth.
    depth: usize,
    options: ParseOptions,
}

/// Parses a query as Prometheus 3.5 does (`parser.ParseExpr`).
pub fn parse(query: &str, options: ParseOptions) -> Result<Expr, SyntaxError> {
    let mut p = Parser::new(query, options);
    if p.peek().kind == Kind::Eof {
        p.error(0, "no expression found in input".to_owned());
        return Err(p.take_error());
    }
    let Ok(tree) = p.expr(0) else {
        return Err(p.take_error());
    };
    if p.peek().kind != Kind::Eof {
        p.unexpected("", "");
        return Err(p.take_error());
    }
    if p.first.is_some() {
        return Err(p.take_error());
    }
    p.check_ast(&tree.e);
    match p.first {
        Some(e) => Err(e),
        None => Ok(tree.e),
    }
}

/// Parses a series selector as Prometheus does for `match[]` (`parser.ParseMetricSelector`:
/// a vector selector only, without the type checks).
pub fn parse_selector(query: &str) -> Result<VectorSelector, SyntaxError> {
    let mut p = Parser::new(query, ParseOptions::default());
    let item = p.peek();
    let vs = match item.kind {
        Kind::LeftBrace => p.label_matchers(None, item.pos),
        k if is_metric_identifier(k) => {
            p.bump();
            if p.peek().kind == Kind::LeftBrace {
                p.label_matchers(Some(item.val.clone()), item.pos)
            } else {
                Ok(p.selector(Some(item.val.clone()), Vec::new(), item.pos))
            }
        }
        _ => Err(p.unexpected("", "")),
    };
    let Ok(vs) = vs else {
        return Err(p.take_error());
    };
    if p.peek().kind != Kind::Eof {
        p.unexpected("", "");
    }
    match p.first {
        Some(e) => Err(e),
        None => Ok(vs),
    }
}

/// Binding power of binary operators, as Prometheus' precedence declarations.
fn precedence(kind: Kind) -> Option<u8> {
    use Kind::*;
    Some(match kind {
        Lor => 1,
        Land | Lunless => 2,
        Eqlc | Gte | Gtr | Lss | Lte | Neq => 3,
        Add | Sub => 4,
        Mul | Div | Mod | Atan2 => 5,
        Pow => 6,
        _ => return None,
    })
}

const MUL_PRECEDENCE: u8 = 5;

fn bin_op(kind: Kind) -> Option<BinOp> {
    use Kind::*;
    Some(match kind {
        Add => BinOp::Add,
        Sub => BinOp::Sub,
        Mul => BinOp::Mul,
        Div => BinOp::Div,
        Mod => BinOp::Mod,
        Pow => BinOp::Pow,
        Atan2 => BinOp::Atan2,
        Eqlc => BinOp::Eql,
        Neq => BinOp::Neq,
        Lss => BinOp::Lss,
        Lte => BinOp::Lte,
        Gtr => BinOp::Gtr,
        Gte => BinOp::Gte,
        Land => BinOp::And,
        Lor => BinOp::Or,
        Lunless => BinOp::Unless,
        _ => return None,
    })
}

fn agg_op(kind: Kind) -> Option<AggOp> {
    use Kind::*;
    Some(match kind {
        Sum => AggOp::Sum,
        Avg => AggOp::Avg,
        Count => AggOp::Count,
        Min => AggOp::Min,
        Max => AggOp::Max,
        Group => AggOp::Group,
        Stddev => AggOp::Stddev,
        Stdvar => AggOp::Stdvar,
        Topk => AggOp::Topk,
        Bottomk => AggOp::Bottomk,
        CountValues => AggOp::CountValues,
        Quantile => AggOp::Quantile,
        Limitk => AggOp::Limitk,
        LimitRatio => AggOp::LimitRatio,
        _ => return None,
    })
}

fn is_metric_identifier(kind: Kind) -> bool {
    use Kind::*;
    matches!(
        kind,
        Avg | Bottomk
            | By
            | Count
            | CountValues
            | Group
            | Identifier
            | Land
            | Lor
            | Lunless
            | Max
            | MetricIdentifier
            | Min
            | Offset
            | Quantile
            | Stddev
            | Stdvar
            | Sum
            | Topk
            | Without
            | Start
            | End
            | Limitk
            | LimitRatio
    )
}

fn starts_expression(kind: Kind) -> bool {
    is_metric_identifier(kind)
        || matches!(
            kind,
            Kind::Number
                | Kind::Duration
                | Kind::String
                | Kind::LeftParen
                | Kind::LeftBrace
                | Kind::Add
                | Kind::Sub
        )
}

fn is_maybe_label(kind: Kind) -> bool {
    use Kind::*;
    matches!(
        kind,
        Avg | Bool
            | Bottomk
            | By
            | Count
            | CountValues
            | Group
            | GroupLeft
            | GroupRight
            | Identifier
            | Ignoring
            | Land
            | Lor
            | Lunless
            | Max
            | MetricIdentifier
            | Min
            | Offset
            | On
            | Quantile
            | Stddev
            | Stdvar
            | Sum
            | Topk
            | Start
            | End
            | Atan2
            | Limitk
            | LimitRatio
    )
}

/// Prometheus 3's `model.LabelName.IsValid` under UTF-8 validation: any non-empty name.
fn is_valid_label_name(s: &str) -> bool {
    !s.is_empty()
}

/// Runs `f` with at least 256 KiB of stack left, on a new 8 MiB segment if need be: the
/// recursion over nested expressions (at most [`MAX_DEPTH`] levels) never runs out of stack,
/// whatever thread it runs on.
pub(crate) fn grow<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(256 * 1024, 8 * 1024 * 1024, f)
}

/// Seconds (as a float duration literal) to milliseconds, as Prometheus:
/// `time.Duration(math.Round(v * 1e9))`, then whole milliseconds.
fn seconds_to_ms(seconds: f64) -> i64 {
    let ns = (seconds * 1e9).round();
    if !ns.is_finite() || ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
        return 0;
    }
    (ns as i64) / 1_000_000
}

/// Whether a duration in seconds is beyond what `time.Duration` holds.
fn duration_out_of_range(seconds: f64) -> bool {
    let limit = 9_223_372_036_854_775_808.0 / 1e9;
    seconds > limit || seconds < -limit || seconds.is_nan()
}

impl<'a> Parser<'a> {
    fn new(input: &'a str, options: ParseOptions) -> Self {
        Parser {
            input,
            items: lex(input),
            next: 0,
            first: None,
            aggregation: 0,
            depth: 0,
            options,
        }
    }

    fn take_error(&mut self) -> SyntaxError {
        self.first.take().unwrap_or_else(|| SyntaxError {
            pos: 0,
            message: "unexpected error".to_owned(),
        })
    }

    fn error(&mut self, pos: usize, message: String) {
        if self.first.is_none() {
            self.first = Some(SyntaxError { pos, message });
        }
    }

    /// The next token; a lexing error is recorded when the parser first reaches it.
    fn peek(&mut self) -> Item {
        let item = self.items.get(self.next).cloned().unwrap_or_else(|| Item {
            kind: Kind::Eof,
            pos: self.input.len(),
            val: String::new(),
        });
        if item.kind == Kind::Error {
            self.error(item.pos, item.val.clone());
        }
        item
    }

    fn peek_kind(&self, ahead: usize) -> Kind {
        self.items
            .get(self.next + ahead)
            .map_or(Kind::Eof, |i| i.kind)
    }

    fn bump(&mut self) -> Item {
        let item = self.peek();
        if !matches!(item.kind, Kind::Eof | Kind::Error) {
            self.next += 1;
        }
        item
    }

    /// Prometheus' `unexpected(context, expected)` at the next token; ends the parse.
    fn unexpected(&mut self, context: &str, expected: &str) -> Abort {
        let item = self.peek();
        if item.kind == Kind::Error {
            return Abort;
        }
        let mut message = format!("unexpected {}", item.desc());
        if !context.is_empty() {
            message.push_str(" in ");
            message.push_str(context);
        }
        if !expected.is_empty() {
            message.push_str(", expected ");
            message.push_str(expected);
        }
        self.error(item.pos, message);
        Abort
    }

    /// An unexpected token where no closer error production applies.
    fn unexpected_here(&mut self) -> Abort {
        if self.aggregation > 0 {
            self.unexpected("aggregation", "")
        } else {
            self.unexpected("", "")
        }
    }

    /// Refuses trees and recursion beyond [`MAX_DEPTH`].
    fn too_deep(&mut self) -> Abort {
        let pos = self.peek().pos;
        self.error(
            pos,
            format!("expression nests too deeply (more than {MAX_DEPTH} levels)"),
        );
        Abort
    }

    fn expr(&mut self, min_precedence: u8) -> Parsed<Tree> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.too_deep());
        }
        let result = grow(|| self.binary(min_precedence));
        self.depth -= 1;
        result
    }

    fn binary(&mut self, min_precedence: u8) -> Parsed<Tree> {
        let mut lhs = self.unary()?;
        loop {
            let op = self.peek();
            let Some(precedence) = precedence(op.kind) else {
                return Ok(lhs);
            };
            if precedence < min_precedence {
                return Ok(lhs);
            }
            self.bump();
            let mut return_bool = false;
            if self.peek().kind == Kind::Bool {
                self.bump();
                return_bool = true;
            }
            let mut matching = VectorMatching {
                card: Cardinality::OneToOne,
                on: false,
                labels: Vec::new(),
                include: Vec::new(),
            };
            let next = self.peek().kind;
            if matches!(next, Kind::On | Kind::Ignoring) {
                self.bump();
                matching.on = next == Kind::On;
                matching.labels = self.grouping_labels()?;
                let group = self.peek().kind;
                if matches!(group, Kind::GroupLeft | Kind::GroupRight) {
                    self.bump();
                    matching.card = if group == Kind::GroupLeft {
                        Cardinality::ManyToOne
                    } else {
                        Cardinality::OneToMany
                    };
                    // The labels are optional; what can start no expression is taken
                    // for their missing "(" (Prometheus' LALR tables do the same).
                    let next = self.peek().kind;
                    if next == Kind::LeftParen || !starts_expression(next) {
                        matching.include = self.grouping_labels()?;
                    }
                }
            }
            let right_min = if op.kind == Kind::Pow {
                precedence
            } else {
                precedence + 1
            };
            let rhs = self.expr(right_min)?;
            let h = lhs.h.max(rhs.h) + 1;
            if h > MAX_DEPTH {
                return Err(self.too_deep());
            }
            let op_item = op;
            let Some(op) = bin_op(op_item.kind) else {
                return Err(self.unexpected_here());
            };
            lhs = Tree {
                e: Expr::Binary(BinaryExpr {
                    op,
                    lhs: Box::new(lhs.e),
                    rhs: Box::new(rhs.e),
                    return_bool,
                    matching: Some(matching),
                    op_pos: op_item.pos,
                }),
                h,
            };
        }
    }

    fn unary(&mut self) -> Parsed<Tree> {
        let op = self.peek();
        if !matches!(op.kind, Kind::Add | Kind::Sub) {
            return self.postfix();
        }
        self.bump();
        // `unary_op expr %prec MUL`: only `^` and the postfix modifiers bind tighter.
        let operand = self.expr(MUL_PRECEDENCE + 1)?;
        let negate = op.kind == Kind::Sub;
        if let Expr::NumberLiteral(n) = operand.e {
            return Ok(Tree::leaf(Expr::NumberLiteral(NumberLiteral {
                val: if negate { -n.val } else { n.val },
                duration: n.duration,
                pos: op.pos,
            })));
        }
        let h = operand.h + 1;
        if h > MAX_DEPTH {
            return Err(self.too_deep());
        }
        Ok(Tree {
            e: Expr::Unary(UnaryExpr {
                negate,
                expr: Box::new(operand.e),
                pos: op.pos,
            }),
            h,
        })
    }

    fn postfix(&mut self) -> Parsed<Tree> {
        let mut tree = self.primary()?;
        loop {
            match self.peek().kind {
                Kind::LeftBracket => tree = self.range_or_subquery(tree)?,
                Kind::Offset => {
                    self.bump();
                    let offset = self.offset_duration()?;
                    self.add_offset(&mut tree.e, offset);
                }
                Kind::At => {
                    self.bump();
                    let next = self.peek();
                    match next.kind {
                        Kind::Number | Kind::Duration => {
                            self.bump();
                            let ts = self.number_or_duration_value(&next);
                            self.set_timestamp(&mut tree.e, Some(ts));
                        }
                        Kind::Add | Kind::Sub => {
                            self.bump();
                            let n = self.peek();
                            if !matches!(n.kind, Kind::Number | Kind::Duration) {
                                return Err(self.unexpected("@", "timestamp"));
                            }
                            self.bump();
                            let ts = self.number_or_duration_value(&n);
                            let ts = if next.kind == Kind::Sub { -ts } else { ts };
                            self.set_timestamp(&mut tree.e, Some(ts));
                        }
                        Kind::Start | Kind::End => {
                            self.bump();
                            if self.peek().kind != Kind::LeftParen {
                                return Err(self.unexpected("@", "timestamp"));
                            }
                            self.bump();
                            if self.peek().kind != Kind::RightParen {
                                return Err(self.unexpected("@", "timestamp"));
                            }
                            self.bump();
                            let at = if next.kind == Kind::Start {
                                AtModifier::Start
                            } else {
                                AtModifier::End
                            };
                            self.set_at(&mut tree.e, at);
                        }
                        _ => return Err(self.unexpected("@", "timestamp")),
                    }
                }
                _ => return Ok(tree),
            }
        }
    }

    /// The value of a NUMBER or DURATION token in seconds (Prometheus' `number` rule).
    fn number_or_duration_value(&mut self, item: &Item) -> f64 {
        if item.kind == Kind::Duration {
            match strata_types::time::parse_model_duration(&item.val) {
                Ok(ms) => ms as f64 / 1000.0,
                Err(message) => {
                    self.error(item.pos, message);
                    0.0
                }
            }
        } else {
            self.number(item)
        }
    }

    /// Prometheus' `duration_expr` in a range, subquery or offset: a number or duration
    /// literal, signs allowed. Arithmetic and parentheses are Prometheus' experimental
    /// duration expressions: refused as Prometheus refuses them when not enabled. Returns
    /// the value in seconds and its start offset.
    fn duration_expr(&mut self, context: &str, expected: &str) -> Parsed<(f64, usize)> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.too_deep());
        }
        let result = grow(|| self.duration_binary(0, context, expected));
        self.depth -= 1;
        result
    }

    fn duration_binary(
        &mut self,
        min_precedence: u8,
        context: &str,
        expected: &str,
    ) -> Parsed<(f64, usize)> {
        let lhs = self.duration_unary(context, expected)?;
        let op = self.peek();
        let Some(precedence) = precedence(op.kind).filter(|_| {
            matches!(
                op.kind,
                Kind::Add | Kind::Sub | Kind::Mul | Kind::Div | Kind::Mod | Kind::Pow
            )
        }) else {
            return Ok(lhs);
        };
        if precedence < min_precedence {
            return Ok(lhs);
        }
        self.bump();
        let right_min = if op.kind == Kind::Pow {
            precedence
        } else {
            precedence + 1
        };
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.too_deep());
        }
        let rhs = grow(|| self.duration_binary(right_min, context, expected));
        self.depth -= 1;
        rhs?;
        // `duration_expr ADD duration_expr` and friends are reduced (and refused, as
        // experimental) only once their right side parsed.
        self.error(
            lhs.1,
            "experimental duration expression is not enabled".to_owned(),
        );
        Err(Abort)
    }

    fn duration_unary(&mut self, context: &str, expected: &str) -> Parsed<(f64, usize)> {
        let item = self.peek();
        match item.kind {
            Kind::Number | Kind::Duration => {
                self.bump();
                let v = self.number_or_duration_value(&item);
                if duration_out_of_range(v) {
                    self.error(item.pos, "duration out of range".to_owned());
                    return Ok((0.0, item.pos));
                }
                Ok((v, item.pos))
            }
            Kind::Add | Kind::Sub => {
                self.bump();
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(self.too_deep());
                }
                let operand = self.duration_binary(MUL_PRECEDENCE + 1, context, expected);
                self.depth -= 1;
                let (v, _) = operand?;
                let v = if item.kind == Kind::Sub { -v } else { v };
                if duration_out_of_range(v) {
                    self.error(item.pos, "duration out of range".to_owned());
                    return Ok((0.0, item.pos));
                }
                Ok((v, item.pos))
            }
            Kind::LeftParen => {
                self.bump();
                let inner = self.duration_expr(context, expected)?;
                if self.peek().kind != Kind::RightParen {
                    return Err(self.unexpected(context, expected));
                }
                self.bump();
                self.error(
                    inner.1,
                    "experimental duration expression is not enabled".to_owned(),
                );
                Err(Abort)
            }
            _ => Err(self.unexpected(context, expected)),
        }
    }

    /// `offset_duration_expr`, in milliseconds: a literal, optionally signed, or a
    /// parenthesised duration expression. Operators after the literal belong to the
    /// enclosing expression (`x offset -2^2` is `(x offset -2)^2`).
    fn offset_duration(&mut self) -> Parsed<i64> {
        let (context, expected) = ("offset", "number or duration");
        let item = self.peek();
        let seconds = match item.kind {
            Kind::Number | Kind::Duration => {
                self.bump();
                let v = self.number_or_duration_value(&item);
                if duration_out_of_range(v) {
                    self.error(item.pos, "duration out of range".to_owned());
                    0.0
                } else {
                    v
                }
            }
            Kind::Add | Kind::Sub if matches!(self.peek_kind(1), Kind::Number | Kind::Duration) => {
                self.bump();
                let literal = self.bump();
                let v = self.number_or_duration_value(&literal);
                let v = if item.kind == Kind::Sub { -v } else { v };
                if duration_out_of_range(v) {
                    self.error(item.pos, "duration out of range".to_owned());
                    0.0
                } else {
                    v
                }
            }
            Kind::Add | Kind::Sub | Kind::LeftParen => self.duration_unary(context, expected)?.0,
            _ => return Err(self.unexpected(context, expected)),
        };
        Ok(seconds_to_ms(seconds))
    }

    /// `positive_duration_expr`, in milliseconds.
    fn positive_duration(&mut self, context: &str, expected: &str) -> Parsed<i64> {
        let (seconds, pos) = self.duration_expr(context, expected)?;
        if seconds <= 0.0 {
            self.error(pos, "duration must be greater than 0".to_owned());
            return Ok(0);
        }
        Ok(seconds_to_ms(seconds))
    }

    fn range_or_subquery(&mut self, tree: Tree) -> Parsed<Tree> {
        let open = self.bump();
        let range = self.positive_duration("subquery selector", "number or duration")?;
        match self.peek().kind {
            Kind::RightBracket => {
                self.bump();
                let message = match &tree.e {
                    Expr::VectorSelector(vs) if vs.offset != 0 => {
                        Some("no offset modifiers allowed before range")
                    }
                    Expr::VectorSelector(vs) if vs.at.is_some() => {
                        Some("no @ modifiers allowed before range")
                    }
                    Expr::VectorSelector(_) => None,
                    _ => Some("ranges only allowed for vector selectors"),
                };
                if let Some(message) = message {
                    self.error(open.pos, message.to_owned());
                }
                let vs = match tree.e {
                    Expr::VectorSelector(vs) => vs,
                    // Recorded above; a placeholder keeps the parse going.
                    other => VectorSelector {
                        name: None,
                        matchers: Vec::new(),
                        offset: 0,
                        at: None,
                        pos: other.pos(),
                    },
                };
                Ok(Tree {
                    e: Expr::MatrixSelector(MatrixSelector { vs, range }),
                    h: tree.h,
                })
            }
            Kind::Colon => {
                self.bump();
                let step = match self.peek().kind {
                    Kind::RightBracket => 0,
                    _ => {
                        let step = self.positive_duration(
                            "subquery selector",
                            "number or duration or \"]\"",
                        )?;
                        if self.peek().kind != Kind::RightBracket {
                            return Err(self.unexpected("subquery selector", "\"]\""));
                        }
                        step
                    }
                };
                self.bump();
                let h = tree.h + 1;
                if h > MAX_DEPTH {
                    return Err(self.too_deep());
                }
                let pos = tree.e.pos();
                Ok(Tree {
                    e: Expr::Subquery(SubqueryExpr {
                        expr: Box::new(tree.e),
                        range,
                        step,
                        offset: 0,
                        at: None,
                        pos,
                    }),
                    h,
                })
            }
            _ => Err(self.unexpected("subquery or range", "\":\" or \"]\"")),
        }
    }

    /// The offset and `@` of the selector or subquery that a modifier (named by `what`)
    /// applies to; records Prometheus' error when there is none.
    fn modifiers_of<'n>(
        &mut self,
        expr: &'n mut Expr,
        what: &str,
    ) -> Option<(&'n mut i64, &'n mut Option<AtModifier>)> {
        let pos = expr.pos();
        match expr {
            Expr::VectorSelector(vs) => Some((&mut vs.offset, &mut vs.at)),
            Expr::MatrixSelector(ms) => Some((&mut ms.vs.offset, &mut ms.vs.at)),
            Expr::Subquery(sq) => Some((&mut sq.offset, &mut sq.at)),
            _ => {
                self.error(
                    pos,
                    format!("{what} must be preceded by an instant vector selector or range vector selector or a subquery"),
                );
                None
            }
        }
    }

    fn add_offset(&mut self, expr: &mut Expr, offset: i64) {
        let pos = expr.pos();
        let Some((current, _)) = self.modifiers_of(expr, "offset modifier") else {
            return;
        };
        if *current != 0 {
            self.error(pos, "offset may not be set multiple times".to_owned());
            return;
        }
        *current = offset;
    }

    /// `@ ts` (seconds).
    fn set_timestamp(&mut self, expr: &mut Expr, ts: Option<f64>) {
        let pos = expr.pos();
        let Some(ts) = ts else { return };
        if !ts.is_finite() || ts >= i64::MAX as f64 || ts <= i64::MIN as f64 {
            self.error(
                pos,
                format!("timestamp out of bounds for @ modifier: {}", go_float_f(ts)),
            );
        }
        // `timestamp.FromFloatSeconds`: rounded milliseconds (saturating, as Go's
        // conversion of an out-of-range float is undefined; the error is recorded above).
        let ms = (ts * 1000.0).round();
        let ms = if ms.is_nan() { 0 } else { ms as i64 };
        self.set_at(expr, AtModifier::At(ms));
    }

    fn set_at(&mut self, expr: &mut Expr, at: AtModifier) {
        let pos = expr.pos();
        let Some((_, current)) = self.modifiers_of(expr, "@ modifier") else {
            return;
        };
        if current.is_some() {
            self.error(
                pos,
                "@ <timestamp> may not be set multiple times".to_owned(),
            );
            return;
        }
        *current = Some(at);
    }

    fn primary(&mut self) -> Parsed<Tree> {
        let item = self.peek();
        match item.kind {
            Kind::Number | Kind::Duration => {
                self.bump();
                let val = self.number_or_duration_value(&item);
                Ok(Tree::leaf(Expr::NumberLiteral(NumberLiteral {
                    val,
                    duration: item.kind == Kind::Duration,
                    pos: item.pos,
                })))
            }
            Kind::String => {
                self.bump();
                Ok(Tree::leaf(Expr::StringLiteral(StringLiteral {
                    val: unquote(&item.val),
                    pos: item.pos,
                })))
            }
            Kind::LeftParen => {
                self.bump();
                let inner = self.expr(0)?;
                if self.peek().kind != Kind::RightParen {
                    return Err(self.unexpected_here());
                }
                self.bump();
                let h = inner.h + 1;
                if h > MAX_DEPTH {
                    return Err(self.too_deep());
                }
                Ok(Tree {
                    e: Expr::Paren(ParenExpr {
                        expr: Box::new(inner.e),
                        pos: item.pos,
                    }),
                    h,
                })
            }
            Kind::LeftBrace => {
                let vs = self.label_matchers(None, item.pos)?;
                Ok(Tree::leaf(Expr::VectorSelector(vs)))
            }
            kind if is_metric_identifier(kind) => {
                let after = self.peek_kind(1);
                if kind == Kind::Identifier && after == Kind::LeftParen {
                    return self.call();
                }
                if kind.is_aggregator()
                    && matches!(after, Kind::LeftParen | Kind::By | Kind::Without)
                {
                    return self.aggregate();
                }
                self.bump();
                let vs = if self.peek().kind == Kind::LeftBrace {
                    self.label_matchers(Some(item.val.clone()), item.pos)?
                } else {
                    self.selector(Some(item.val.clone()), Vec::new(), item.pos)
                };
                Ok(Tree::leaf(Expr::VectorSelector(vs)))
            }
            _ => Err(self.unexpected_here()),
        }
    }

    /// Prometheus' `assembleVectorSelector`: the name, if written before the braces, adds a
    /// `__name__` matcher after the others.
    fn selector(
        &mut self,
        name: Option<String>,
        mut matchers: Vec<Matcher>,
        pos: usize,
    ) -> VectorSelector {
        if let Some(name) = &name {
            matchers.push(Matcher::equal("__name__", name.clone()));
        }
        VectorSelector {
            name,
            matchers,
            offset: 0,
            at: None,
            pos,
        }
    }

    /// `( args )` of a function call or aggregation: the arguments.
    fn call_body(&mut self) -> Parsed<Vec<Tree>> {
        if self.peek().kind != Kind::LeftParen {
            return Err(self.unexpected_here());
        }
        self.bump();
        let mut args = Vec::new();
        if self.peek().kind == Kind::RightParen {
            self.bump();
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            loop {
                match self.peek().kind {
                    Kind::RightParen => {
                        self.bump();
                        return Ok(args);
                    }
                    Kind::Comma => {
                        let comma = self.bump();
                        // A comma that no argument follows is reduced as a trailing comma
                        // before the parser looks further (Prometheus' grammar).
                        if !starts_expression(self.peek().kind) {
                            self.error(
                                comma.pos,
                                "trailing commas not allowed in function call args".to_owned(),
                            );
                            continue;
                        }
                        break;
                    }
                    _ if self.first.is_some() => return Err(Abort),
                    _ => return Err(self.unexpected_here()),
                }
            }
        }
    }

    fn call(&mut self) -> Parsed<Tree> {
        let name = self.bump();
        let args = self.call_body()?;
        let func = functions::lookup(&name.val);
        match func {
            None => self.error(
                name.pos,
                format!("unknown function with name {}", go_quote(&name.val)),
            ),
            Some(f) if f.experimental && !self.options.experimental_functions => self.error(
                name.pos,
                format!("function {} is not enabled", go_quote(&name.val)),
            ),
            Some(_) => {}
        }
        let h = args.iter().map(|a| a.h).max().unwrap_or(0) + 1;
        if h > MAX_DEPTH {
            return Err(self.too_deep());
        }
        let Some(func) = func else {
            return Err(Abort);
        };
        Ok(Tree {
            e: Expr::Call(Call {
                func,
                args: args.into_iter().map(|a| a.e).collect(),
                pos: name.pos,
            }),
            h,
        })
    }

    fn aggregate(&mut self) -> Parsed<Tree> {
        let op = self.bump();
        self.aggregation += 1;
        let result = self.aggregate_rest(&op);
        self.aggregation -= 1;
        result
    }

    fn aggregate_rest(&mut self, op: &Item) -> Parsed<Tree> {
        let mut grouping = Vec::new();
        let mut without = false;
        let mut modifier = false;
        if matches!(self.peek().kind, Kind::By | Kind::Without) {
            without = self.bump().kind == Kind::Without;
            grouping = self.grouping_labels()?;
            modifier = true;
        }
        let mut args = self.call_body()?;
        if !modifier && matches!(self.peek().kind, Kind::By | Kind::Without) {
            without = self.bump().kind == Kind::Without;
            grouping = self.grouping_labels()?;
        }
        let Some(agg) = agg_op(op.kind) else {
            return Err(self.unexpected_here());
        };
        if args.is_empty() {
            self.error(
                op.pos,
                "no arguments for aggregate expression provided".to_owned(),
            );
            return Err(Abort);
        }
        let with_param = matches!(
            agg,
            AggOp::Topk
                | AggOp::Bottomk
                | AggOp::CountValues
                | AggOp::Quantile
                | AggOp::Limitk
                | AggOp::LimitRatio
        );
        if matches!(agg, AggOp::Limitk | AggOp::LimitRatio) && !self.options.experimental_functions
        {
            self.error(
                op.pos,
                format!(
                    "{}() is experimental and must be enabled with --enable-feature=promql-experimental-functions",
                    agg.name()
                ),
            );
            return Err(Abort);
        }
        let desired = if with_param { 2 } else { 1 };
        if args.len() != desired {
            self.error(
                op.pos,
                format!(
                    "wrong number of arguments for aggregate expression provided, expected {desired}, got {}",
                    args.len()
                ),
            );
            return Err(Abort);
        }
        let h = args.iter().map(|a| a.h).max().unwrap_or(0) + 1;
        if h > MAX_DEPTH {
            return Err(self.too_deep());
        }
        let expr = args.pop().map(|t| t.e).ok_or(Abort)?;
        let param = args.pop().map(|t| Box::new(t.e));
        Ok(Tree {
            e: Expr::Aggregate(AggregateExpr {
                op: agg,
                expr: Box::new(expr),
                param,
                grouping,
                without,
                pos: op.pos,
            }),
            h,
        })
    }

    /// `( label, ... )` after by/without/on/ignoring/group_left/group_right.
    fn grouping_labels(&mut self) -> Parsed<Vec<String>> {
        if self.peek().kind != Kind::LeftParen {
            return Err(self.unexpected("grouping opts", "\"(\""));
        }
        self.bump();
        let mut labels = Vec::new();
        if self.peek().kind == Kind::RightParen {
            self.bump();
            return Ok(labels);
        }
        loop {
            let label = self.peek();
            let name = if is_maybe_label(label.kind) {
                label.val.clone()
            } else if label.kind == Kind::String {
                unquote(&label.val)
            } else {
                return Err(self.unexpected("grouping opts", "label"));
            };
            self.bump();
            if !is_valid_label_name(&name) {
                self.error(
                    label.pos,
                    format!("invalid label name for grouping: {}", go_quote(&name)),
                );
            }
            labels.push(name);
            match self.peek().kind {
                Kind::Comma => {
                    self.bump();
                    if self.peek().kind == Kind::RightParen {
                        self.bump();
                        return Ok(labels);
                    }
                }
                Kind::RightParen => {
                    self.bump();
                    return Ok(labels);
                }
                _ => return Err(self.unexpected("grouping opts", "\",\" or \")\"")),
            }
        }
    }

    /// `{ name op "value", "name" op "value", "metric_name", ... }` and the selector.
    fn label_matchers(&mut self, name: Option<String>, pos: usize) -> Parsed<VectorSelector> {
        self.bump();
        let mut matchers = Vec::new();
        if self.peek().kind == Kind::RightBrace {
            self.bump();
            return Ok(self.selector(name, matchers, pos));
        }
        loop {
            let label = self.peek();
            let label_name = match label.kind {
                Kind::Identifier => label.val.clone(),
                Kind::String => unquote(&label.val),
                _ => return Err(self.unexpected("label matching", "identifier or \"}\"")),
            };
            self.bump();
            let op = self.peek();
            let kind = match op.kind {
                Kind::Eql => Some(MatchType::Equal),
                Kind::Neq => Some(MatchType::NotEqual),
                Kind::EqlRegex => Some(MatchType::Regex),
                Kind::NeqRegex => Some(MatchType::NotRegex),
                _ => None,
            };
            match kind {
                Some(kind) => {
                    self.bump();
                    let value = self.peek();
                    if value.kind != Kind::String {
                        return Err(self.unexpected("label matching", "string"));
                    }
                    self.bump();
                    let text = unquote(&value.val);
                    if matches!(kind, MatchType::Regex | MatchType::NotRegex)
                        && let Err(message) = super::regex::compile(&text)
                    {
                        self.error(label.pos, message);
                    }
                    match Matcher::new(kind, label_name, text) {
                        Ok(m) => matchers.push(m),
                        Err(e) => {
                            if self.first.is_none() {
                                self.error(label.pos, e.to_string());
                            }
                        }
                    }
                }
                // A quoted name alone is the metric name (`{"metric.name"}`).
                None if label.kind == Kind::String => {
                    matchers.push(Matcher::equal("__name__", label_name));
                }
                None => {
                    return Err(self.unexpected("label matching", "label matching operator"));
                }
            }
            match self.peek().kind {
                Kind::Comma => {
                    self.bump();
                    if self.peek().kind == Kind::RightBrace {
                        self.bump();
                        return Ok(self.selector(name, matchers, pos));
                    }
                }
                Kind::RightBrace => {
                    self.bump();
                    return Ok(self.selector(name, matchers, pos));
                }
                _ => return Err(self.unexpected("label matching", "\",\" or \"}\"")),
            }
        }
    }

    /// A number token's value, recording Prometheus' error for malformed numbers.
    fn number(&mut self, item: &Item) -> f64 {
        match go_number(&item.val) {
            Ok(v) => v,
            Err(message) => {
                self.error(item.pos, format!("error parsing number: {message}"));
                0.0
            }
        }
    }

    /// Prometheus' `expectType`.
    fn expect_type(&mut self, node: &Expr, want: ValueType, context: &str) {
        let got = self.check_ast(node);
        if got != want {
            self.error(
                node.pos(),
                format!(
                    "expected type {} in {context}, got {}",
                    want.documented(),
                    got.documented()
                ),
            );
        }
    }

    /// Prometheus' `checkAST`: type checks, in its order.
    fn check_ast(&mut self, node: &Expr) -> ValueType {
        grow(|| self.check_node(node))
    }

    fn check_node(&mut self, node: &Expr) -> ValueType {
        let typ = node.value_type();
        match node {
            Expr::Aggregate(a) => {
                self.expect_type(&a.expr, ValueType::Vector, "aggregation expression");
                if let Some(param) = &a.param {
                    let want = if a.op == AggOp::CountValues {
                        ValueType::String
                    } else {
                        ValueType::Scalar
                    };
                    self.expect_type(param, want, "aggregation parameter");
                }
            }
            Expr::Binary(b) => {
                let lt = self.check_ast(&b.lhs);
                let rt = self.check_ast(&b.rhs);
                if b.return_bool && !b.op.is_comparison() {
                    let pos = b.op_pos;
                    self.error(
                        pos,
                        "bool modifier can only be used on comparison operators".to_owned(),
                    );
                }
                if b.op.is_comparison()
                    && !b.return_bool
                    && lt == ValueType::Scalar
                    && rt == ValueType::Scalar
                {
                    let pos = b.op_pos;
                    self.error(
                        pos,
                        "comparisons between scalars must use BOOL modifier".to_owned(),
                    );
                }
                let Some(matching) = &b.matching else {
                    return typ;
                };
                let card = if b.op.is_set_operator() && matching.card == Cardinality::OneToOne {
                    Cardinality::ManyToMany
                } else {
                    matching.card
                };
                for l1 in &matching.labels {
                    for l2 in &matching.include {
                        if l1 == l2 && matching.on {
                            let pos = b.op_pos;
                            self.error(
                                pos,
                                format!(
                                    "label {} must not occur in ON and GROUP clause at once",
                                    go_quote(l1)
                                ),
                            );
                        }
                    }
                }
                let instant = |t: ValueType| matches!(t, ValueType::Scalar | ValueType::Vector);
                if !instant(lt) {
                    self.error(
                        b.lhs.pos(),
                        "binary expression must contain only scalar and instant vector types"
                            .to_owned(),
                    );
                }
                if !instant(rt) {
                    self.error(
                        b.rhs.pos(),
                        "binary expression must contain only scalar and instant vector types"
                            .to_owned(),
                    );
                }
                let op_name = go_quote(b.op.name());
                if lt != ValueType::Vector || rt != ValueType::Vector {
                    if !matching.labels.is_empty() {
                        self.error(
                            node.pos(),
                            "vector matching only allowed between instant vectors".to_owned(),
                        );
                    }
                } else if b.op.is_set_operator() {
                    if matches!(card, Cardinality::OneToMany | Cardinality::ManyToOne) {
                        self.error(
                            node.pos(),
                            format!("no grouping allowed for {op_name} operation"),
                        );
                    }
                    if card != Cardinality::ManyToMany {
                        self.error(
                            node.pos(),
                            "set operations must always be many-to-many".to_owned(),
                        );
                    }
                }
                if (lt == ValueType::Scalar || rt == ValueType::Scalar) && b.op.is_set_operator() {
                    self.error(
                        node.pos(),
                        format!("set operator {op_name} not allowed in binary scalar expression"),
                    );
                }
            }
            Expr::Call(c) => {
                let func = c.func;
                let nargs = func.args.len();
                let name = go_quote(func.name);
                if func.variadic == 0 {
                    if nargs != c.args.len() {
                        self.error(
                            c.pos,
                            format!(
                                "expected {nargs} argument(s) in call to {name}, got {}",
                                c.args.len()
                            ),
                        );
                    }
                } else {
                    let na = nargs.saturating_sub(1);
                    if na > c.args.len() {
                        self.error(
                            c.pos,
                            format!(
                                "expected at least {na} argument(s) in call to {name}, got {}",
                                c.args.len()
                            ),
                        );
                    } else if func.variadic > 0 {
                        let max = na + func.variadic.unsigned_abs() as usize;
                        if max < c.args.len() {
                            self.error(
                                c.pos,
                                format!(
                                    "expected at most {max} argument(s) in call to {name}, got {}",
                                    c.args.len()
                                ),
                            );
                        }
                    }
                }
                let context = format!("call to function {name}");
                for (i, arg) in c.args.iter().enumerate() {
                    let index = if i >= nargs {
                        if func.variadic == 0 {
                            break;
                        }
                        nargs.saturating_sub(1)
                    } else {
                        i
                    };
                    if let Some(&want) = func.args.get(index) {
                        self.expect_type(arg, want, &context);
                    }
                }
            }
            Expr::Paren(p) => {
                self.check_ast(&p.expr);
            }
            Expr::Unary(u) => {
                let t = self.check_ast(&u.expr);
                if !matches!(t, ValueType::Scalar | ValueType::Vector) {
                    self.error(
                        u.pos,
                        format!(
                            "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                            go_quote(t.documented())
                        ),
                    );
                }
            }
            Expr::Subquery(sq) => {
                let t = self.check_ast(&sq.expr);
                if t != ValueType::Vector {
                    self.error(
                        sq.pos,
                        format!(
                            "subquery is only allowed on instant vector, got {} instead",
                            t.name()
                        ),
                    );
                }
            }
            Expr::MatrixSelector(ms) => {
                self.check_selector(&ms.vs);
            }
            Expr::VectorSelector(vs) => self.check_selector(vs),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        }
        typ
    }

    fn check_selector(&mut self, vs: &VectorSelector) {
        if let Some(name) = &vs.name {
            let before_name = vs.matchers.len().saturating_sub(1);
            let twice = vs
                .matchers
                .iter()
                .take(before_name)
                .find(|m| m.name() == "__name__")
                .map(|m| m.value().to_owned());
            if let Some(other) = twice {
                self.error(
                    vs.pos,
                    format!(
                        "metric name must not be set twice: {} or {}",
                        go_quote(name),
                        go_quote(&other)
                    ),
                );
            }
            return;
        }
        if vs.matchers.iter().all(|m| m.matches("")) {
            self.error(
                vs.pos,
                "vector selector must contain at least one non-empty matcher".to_owned(),
            );
        }
    }
}

/// The text of a string token (quotes removed, escapes resolved; the lexer validated them).
fn unquote(token: &str) -> String {
    let mut chars = token.chars();
    let Some(quote) = chars.next() else {
        return String::new();
    };
    let body: String = {
        let mut s: String = chars.collect();
        s.pop();
        s
    };
    if quote == '`' {
        return body;
    }
    let mut out = String::with_capacity(body.len());
    let mut it = body.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = it.next() else { break };
        let simple = match e {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' | '"' | '\'' => Some(e),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            continue;
        }
        let (digits, radix, first) = match e {
            '0'..='7' => (2, 8, Some(e)),
            'x' => (2, 16, None),
            'u' => (4, 16, None),
            'U' => (8, 16, None),
            _ => {
                out.push(e);
                continue;
            }
        };
        let mut text: String = first.into_iter().collect();
        for _ in 0..digits {
            if let Some(d) = it.next() {
                text.push(d);
            }
        }
        if let Some(ch) = u32::from_str_radix(&text, radix)
            .ok()
            .and_then(char::from_u32)
        {
            out.push(ch);
        }
    }
    out
}

/// Go's `%f` of a float (used in the @ bounds message).
fn go_float_f(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    format!("{v:.6}")
}

/// Parses a number token as Prometheus does (`strconv.ParseInt(s, 0, 64)`, then
/// `strconv.ParseFloat`), with Go's error text.
fn go_number(original: &str) -> Result<f64, String> {
    if let Some(v) = go_parse_int(original) {
        return Ok(v as f64);
    }
    let cleaned;
    let s = if original.contains('_') {
        match without_underscores(original) {
            Some(c) => {
                cleaned = c;
                cleaned.as_str()
            }
            None => {
                return Err(format!(
                    "strconv.ParseFloat: parsing {}: invalid syntax",
                    go_quote(original)
                ));
            }
        }
    } else {
        original
    };
    let lower = s.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "+inf" | "infinity") {
        return Ok(f64::INFINITY);
    }
    if lower == "nan" {
        return Ok(f64::NAN);
    }
    let syntax = || {
        format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            go_quote(original)
        )
    };
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut mantissa = 0;
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
        mantissa += 1;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            mantissa += 1;
        }
    }
    if mantissa == 0 {
        return Err(syntax());
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return Err(syntax());
        }
    }
    if i != bytes.len() {
        return Err(syntax());
    }
    let v: f64 = s.parse().map_err(|_| syntax())?;
    if v.is_infinite() {
        return Err(format!(
            "strconv.ParseFloat: parsing {}: value out of range",
            go_quote(original)
        ));
    }
    Ok(v)
}

/// Go's `strconv.ParseInt(s, 0, 64)` for unsigned tokens: 0x hex, leading-0 octal, decimal.
/// The digits of a number with Go's `_` separators removed, `None` if the separators are
/// misplaced (Go's `underscoreOK`: only between digits, or after a base prefix).
fn without_underscores(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut saw = b'^';
    let mut hex = false;
    if let [b'0', prefix, ..] = b
        && matches!(prefix.to_ascii_lowercase(), b'b' | b'o' | b'x')
    {
        i = 2;
        saw = b'0';
        hex = prefix.eq_ignore_ascii_case(&b'x');
    }
    while let Some(&c) = b.get(i) {
        i += 1;
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return None;
            }
            saw = b'_';
            continue;
        }
        if saw == b'_' {
            return None;
        }
        saw = b'!';
    }
    (saw != b'_').then(|| s.replace('_', ""))
}

fn go_parse_int(s: &str) -> Option<i64> {
    let cleaned;
    let s = if s.contains('_') {
        cleaned = without_underscores(s)?;
        cleaned.as_str()
    } else {
        s
    };
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16)
            .ok()
            .filter(|_| !hex.is_empty());
    }
    if s.len() > 1 && s.starts_with('0') {
        return i64::from_str_radix(&s[1..], 8).ok();
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(q: &str) -> Option<(usize, String)> {
        parse(q, ParseOptions::default())
            .err()
            .map(|e| (e.pos, e.message))
    }

    #[test]
    fn valid_queries_pass() {
        for q in [
            "sum by (job) (rate(x{a=~\"b\"}[5m] offset 1h)) > bool 0.5",
            "x @ start()",
            "x[5m:] @ 100",
            "-x ^ 2",
            "topk(1, x) by (a)",
            "count by (a,) (x)",
            "x + on(a) group_left(b) y",
            "foo{a=\"b\",}",
            "label_join(x, \"a\", \",\", \"b\", \"c\")",
            "sum",
            "x and and",
            "1 +-+ 2",
            "x offset -5m",
            "{a!~\".*\", b=\"c\"}",
            "x[300]",
            "x offset 60",
            "x @ 5m",
            "{\"metric.name\", \"le\"=\"1\"}",
            "sum by (\"a.b\") (x)",
            "5m",
            "1_000 + 0x1F",
        ] {
            assert_eq!(err(q), None, "{q}");
        }
    }

    #[test]
    fn trees_carry_values_and_positions() {
        let e = parse(
            "sum by (a) (rate(x{b=\"c\"}[5m] offset 1m @ 100)) / 2",
            ParseOptions::default(),
        )
        .unwrap();
        let Expr::Binary(b) = e else { panic!() };
        assert_eq!(b.op, BinOp::Div);
        assert_eq!(b.op_pos, 48);
        let Expr::Aggregate(a) = b.lhs.as_ref() else {
            panic!()
        };
        assert_eq!(
            (a.op, a.grouping.as_slice(), a.without, a.pos),
            (AggOp::Sum, &["a".to_owned()][..], false, 0)
        );
        let Expr::Call(c) = a.expr.as_ref() else {
            panic!()
        };
        assert_eq!((c.func.name, c.pos), ("rate", 12));
        let Some(Expr::MatrixSelector(ms)) = c.args.first() else {
            panic!()
        };
        assert_eq!(
            (ms.range, ms.vs.offset, ms.vs.at, ms.vs.pos),
            (300_000, 60_000, Some(AtModifier::At(100_000)), 17)
        );
        assert_eq!(ms.vs.name.as_deref(), Some("x"));
        let names: Vec<&str> = ms.vs.matchers.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["b", "__name__"]);
        let e = parse("x[1.5]", ParseOptions::default()).unwrap();
        let Expr::MatrixSelector(ms) = e else {
            panic!()
        };
        assert_eq!(ms.range, 1500);
        let e = parse("-5m", ParseOptions::default()).unwrap();
        assert_eq!(
            e,
            Expr::NumberLiteral(NumberLiteral {
                val: -300.0,
                duration: true,
                pos: 0
            })
        );
    }

    #[test]
    fn errors_match_prometheus() {
        let cases: &[(&str, usize, &str)] = &[
            ("sum(rate(x[5m])", 15, "unclosed left parenthesis"),
            ("1 +", 3, "unexpected end of input"),
            (
                "x / on(a) group_left",
                20,
                "unexpected end of input in grouping opts, expected \"(\"",
            ),
            ("foo bar", 4, "unexpected identifier \"bar\""),
            (
                "sum by (a) b",
                11,
                "unexpected identifier \"b\" in aggregation",
            ),
            (
                "rate(x)",
                5,
                "expected type range vector in call to function \"rate\", got instant vector",
            ),
            (
                "x @ foo",
                4,
                "unexpected identifier \"foo\" in @, expected timestamp",
            ),
            (
                "1 < 2",
                2,
                "comparisons between scalars must use BOOL modifier",
            ),
            (
                "x[5m] @ 1 [1m]",
                10,
                "ranges only allowed for vector selectors",
            ),
            ("sum(rate(x +))", 12, "unexpected \")\" in aggregation"),
            (
                "rate(x, ^y)",
                6,
                "trailing commas not allowed in function call args",
            ),
            ("", 0, "no expression found in input"),
            (
                "foo{__name__=\"a\"}",
                0,
                "metric name must not be set twice: \"foo\" or \"a\"",
            ),
            (
                "x @ 1e30",
                0,
                "timestamp out of bounds for @ modifier: 1000000000000000019884624838656.000000",
            ),
            ("x[0s]", 2, "duration must be greater than 0"),
            ("x[-5m]", 2, "duration must be greater than 0"),
            (
                "x[5m:1m 5]",
                8,
                "unexpected number \"5\" in subquery selector, expected \"]\"",
            ),
            (
                "x[foo]",
                2,
                "unexpected character in duration expression: 'f'",
            ),
            (
                "x[5m + 1m]",
                2,
                "experimental duration expression is not enabled",
            ),
            (
                "x offset foo",
                9,
                "unexpected identifier \"foo\" in offset, expected number or duration",
            ),
            ("x[1e20]", 2, "duration out of range"),
            ("x[5x]", 2, "bad number or duration syntax: \"5\""),
            ("x[5m1h]", 2, "not a valid duration string: \"5m1h\""),
            (
                "holt_winters(x[5m], 0.5, 0.5)",
                0,
                "unknown function with name \"holt_winters\"",
            ),
            (
                "sort_by_label(x, \"a\")",
                0,
                "function \"sort_by_label\" is not enabled",
            ),
            (
                "limitk(1, x)",
                0,
                "limitk() is experimental and must be enabled with --enable-feature=promql-experimental-functions",
            ),
        ];
        for (q, pos, message) in cases {
            assert_eq!(err(q), Some((*pos, (*message).to_owned())), "{q}");
        }
    }

    /// Any nesting is refused or parsed in bounded stack: deep parentheses, unary operators,
    /// function calls, subqueries and chains of operators (built in a loop, yet their
    /// height counts).
    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let n = 100_000;
        let cases = [
            format!("{}1{}", "(".repeat(n), ")".repeat(n)),
            format!("{}1", "-".repeat(n)),
            format!("{}x", "- ".repeat(n)),
            format!("{}x{}", "abs(".repeat(n), ")".repeat(n)),
            format!("{}x{}", "sum(".repeat(n), ")".repeat(n)),
            format!("x{}", "[5m:]".repeat(n)),
            format!("1{}", "+1".repeat(n)),
            format!("x{}", " or x".repeat(n)),
            format!("2{}", "^2".repeat(n)),
            format!("x[{}5m{}]", "(".repeat(n), ")".repeat(n)),
        ];
        for q in &cases {
            let got = parse(q, ParseOptions::default());
            let e = got.expect_err("too deep");
            assert!(
                e.message.contains("nests too deeply") || e.message.contains("experimental"),
                "{}: {}",
                &q[..20],
                e.message
            );
        }
        // Within the limit, a long chain parses.
        let q = format!("1{}", "+1".repeat(MAX_DEPTH - 2));
        assert!(parse(&q, ParseOptions::default()).is_ok());
    }
}
