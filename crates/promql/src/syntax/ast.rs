//! The PromQL syntax tree, as Prometheus' `parser` package builds it: every node knows the
//! byte offset where it starts (what Prometheus prints as `line:col` in errors and
//! annotations), durations and offsets are milliseconds, `@` timestamps are milliseconds.
//!
//! Trees are built only by [`super::parse`], which bounds their height, so the recursive
//! walks over them (type checks, evaluation, `Drop`) have a bounded depth.

use strata_types::Matcher;

use super::functions::{Signature, ValueType};

/// A PromQL expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number (also a duration written as a number, `5m` = 300).
    NumberLiteral(NumberLiteral),
    /// A string.
    StringLiteral(StringLiteral),
    /// An instant vector selector.
    VectorSelector(VectorSelector),
    /// A range vector selector (`x[5m]`).
    MatrixSelector(MatrixSelector),
    /// A subquery (`expr[1h:1m]`).
    Subquery(SubqueryExpr),
    /// A function call.
    Call(Call),
    /// An aggregation (`sum by (a) (x)`).
    Aggregate(AggregateExpr),
    /// A binary operation.
    Binary(BinaryExpr),
    /// Unary `-` or `+`.
    Unary(UnaryExpr),
    /// An expression in parentheses.
    Paren(ParenExpr),
}

/// A number.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberLiteral {
    /// The value.
    pub val: f64,
    /// Written as a duration (`5m`): printed back as one.
    pub duration: bool,
    /// Start offset in the query.
    pub pos: usize,
}

/// A string.
#[derive(Debug, Clone, PartialEq)]
pub struct StringLiteral {
    /// The unquoted value.
    pub val: String,
    /// Start offset in the query.
    pub pos: usize,
}

/// The `@` modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtModifier {
    /// `@ <timestamp>`, in milliseconds.
    At(i64),
    /// `@ start()`.
    Start,
    /// `@ end()`.
    End,
}

/// An instant vector selector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSelector {
    /// The metric name written before the braces, if any.
    pub name: Option<String>,
    /// Every matcher, the `__name__` matcher of `name` included (last, as Prometheus).
    pub matchers: Vec<Matcher>,
    /// `offset` in milliseconds (0 when none).
    pub offset: i64,
    /// The `@` modifier.
    pub at: Option<AtModifier>,
    /// Start offset in the query.
    pub pos: usize,
}

/// A range vector selector.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSelector {
    /// The selector.
    pub vs: VectorSelector,
    /// The range in milliseconds.
    pub range: i64,
}

/// A subquery.
#[derive(Debug, Clone, PartialEq)]
pub struct SubqueryExpr {
    /// The inner expression.
    pub expr: Box<Expr>,
    /// The range in milliseconds.
    pub range: i64,
    /// The step in milliseconds; 0 for the default step.
    pub step: i64,
    /// `offset` in milliseconds.
    pub offset: i64,
    /// The `@` modifier.
    pub at: Option<AtModifier>,
    /// Start offset in the query (that of the inner expression).
    pub pos: usize,
}

/// A function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The function.
    pub func: &'static Signature,
    /// The arguments.
    pub args: Vec<Expr>,
    /// Start offset in the query.
    pub pos: usize,
}

/// An aggregation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum AggOp {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    CountValues,
    Quantile,
    Limitk,
    LimitRatio,
}

impl AggOp {
    /// The operator as written (`sum`, `count_values`, …).
    pub fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Count => "count",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Group => "group",
            AggOp::Stddev => "stddev",
            AggOp::Stdvar => "stdvar",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
            AggOp::CountValues => "count_values",
            AggOp::Quantile => "quantile",
            AggOp::Limitk => "limitk",
            AggOp::LimitRatio => "limit_ratio",
        }
    }
}

/// An aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateExpr {
    /// The operator.
    pub op: AggOp,
    /// The aggregated expression.
    pub expr: Box<Expr>,
    /// The parameter of `topk`, `bottomk`, `quantile`, `count_values`, `limitk`, `limit_ratio`.
    pub param: Option<Box<Expr>>,
    /// The `by` or `without` labels.
    pub grouping: Vec<String>,
    /// `without` (else `by`, or no grouping when `grouping` is empty).
    pub without: bool,
    /// Start offset in the query.
    pub pos: usize,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eql,
    Neq,
    Lss,
    Lte,
    Gtr,
    Gte,
    And,
    Or,
    Unless,
}

impl BinOp {
    /// The operator as written.
    pub fn name(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Atan2 => "atan2",
            BinOp::Eql => "==",
            BinOp::Neq => "!=",
            BinOp::Lss => "<",
            BinOp::Lte => "<=",
            BinOp::Gtr => ">",
            BinOp::Gte => ">=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Unless => "unless",
        }
    }

    /// `==`, `!=`, `<`, `<=`, `>`, `>=`.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eql | BinOp::Neq | BinOp::Lss | BinOp::Lte | BinOp::Gtr | BinOp::Gte
        )
    }

    /// `and`, `or`, `unless`.
    pub fn is_set_operator(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
}

/// How the two sides of a binary operation between vectors are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    /// One-to-one.
    OneToOne,
    /// `group_left`.
    ManyToOne,
    /// `group_right`.
    OneToMany,
    /// Set operators.
    ManyToMany,
}

/// Vector matching of a binary operation (`on`/`ignoring`, `group_left`/`group_right`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorMatching {
    /// The cardinality.
    pub card: Cardinality,
    /// `on` (true) or `ignoring` (false) labels.
    pub on: bool,
    /// The labels of `on`/`ignoring`.
    pub labels: Vec<String>,
    /// The labels of `group_left`/`group_right`.
    pub include: Vec<String>,
}

/// A binary operation.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryExpr {
    /// The operator.
    pub op: BinOp,
    /// Left operand.
    pub lhs: Box<Expr>,
    /// Right operand.
    pub rhs: Box<Expr>,
    /// The `bool` modifier.
    pub return_bool: bool,
    /// Vector matching (also present, empty, for scalar operands; evaluation ignores it
    /// there).
    pub matching: Option<VectorMatching>,
    /// Start offset of the operator in the query.
    pub op_pos: usize,
}

/// Unary minus or plus.
#[derive(Debug, Clone, PartialEq)]
pub struct UnaryExpr {
    /// `-` (true) or `+`.
    pub negate: bool,
    /// The operand.
    pub expr: Box<Expr>,
    /// Start offset in the query.
    pub pos: usize,
}

/// An expression in parentheses.
#[derive(Debug, Clone, PartialEq)]
pub struct ParenExpr {
    /// The inner expression.
    pub expr: Box<Expr>,
    /// Start offset in the query.
    pub pos: usize,
}

impl Expr {
    /// Start offset in the query, as Prometheus' `PositionRange().Start`.
    pub fn pos(&self) -> usize {
        match self {
            Expr::NumberLiteral(n) => n.pos,
            Expr::StringLiteral(s) => s.pos,
            Expr::VectorSelector(vs) => vs.pos,
            Expr::MatrixSelector(ms) => ms.vs.pos,
            Expr::Subquery(sq) => sq.pos,
            Expr::Call(c) => c.pos,
            Expr::Aggregate(a) => a.pos,
            Expr::Binary(b) => b.lhs.pos(),
            Expr::Unary(u) => u.pos,
            Expr::Paren(p) => p.pos,
        }
    }

    /// The type of value the expression evaluates to.
    pub fn value_type(&self) -> ValueType {
        match self {
            Expr::NumberLiteral(_) => ValueType::Scalar,
            Expr::StringLiteral(_) => ValueType::String,
            Expr::VectorSelector(_) | Expr::Aggregate(_) => ValueType::Vector,
            Expr::MatrixSelector(_) | Expr::Subquery(_) => ValueType::Matrix,
            Expr::Call(c) => c.func.returns,
            Expr::Binary(b) => {
                if b.lhs.value_type() == ValueType::Scalar
                    && b.rhs.value_type() == ValueType::Scalar
                {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Expr::Unary(u) => u.expr.value_type(),
            Expr::Paren(p) => p.expr.value_type(),
        }
    }

    /// The expression without enclosing parentheses.
    pub fn unparen(&self) -> &Expr {
        let mut e = self;
        while let Expr::Paren(p) = e {
            e = &p.expr;
        }
        e
    }
}
