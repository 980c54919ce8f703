//! A recursive-descent PromQL checker that follows Prometheus' grammar and its error
//! productions, then Prometheus' type checks (`checkAST`), to find the first error Prometheus
//! reports for a query: the same message at the same position. It builds a small tree of
//! types and positions only; the AST the engine evaluates comes from `promql-parser`.

use super::functions::{self, Signature, ValueType};
use super::lexer::{Item, Kind, go_quote, lex};

/// The first error Prometheus reports for a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// Byte offset in the query.
    pub(crate) pos: usize,
    /// Prometheus' message, without the position prefix.
    pub(crate) message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

#[derive(Debug)]
enum Node {
    Number {
        pos: usize,
    },
    Str {
        pos: usize,
    },
    Vector {
        pos: usize,
        name: Option<String>,
        matchers: Vec<Matcher>,
        modifiers: Modifiers,
    },
    Matrix {
        pos: usize,
        vector: Box<Node>,
    },
    Subquery {
        pos: usize,
        expr: Box<Node>,
        modifiers: Modifiers,
    },
    Call {
        pos: usize,
        func: Option<&'static Signature>,
        args: Vec<Node>,
    },
    Aggregate {
        pos: usize,
        op: Kind,
        param: Option<Box<Node>>,
        expr: Option<Box<Node>>,
    },
    Binary {
        lhs: Box<Node>,
        rhs: Box<Node>,
        op: Kind,
        op_pos: usize,
        return_bool: bool,
        on: bool,
        matching: Vec<String>,
        include: Vec<String>,
        card: Card,
    },
    Unary {
        pos: usize,
        expr: Box<Node>,
    },
    Paren {
        pos: usize,
        expr: Box<Node>,
    },
}

impl Node {
    fn pos(&self) -> usize {
        match self {
            Node::Number { pos }
            | Node::Str { pos }
            | Node::Vector { pos, .. }
            | Node::Matrix { pos, .. }
            | Node::Subquery { pos, .. }
            | Node::Call { pos, .. }
            | Node::Aggregate { pos, .. }
            | Node::Unary { pos, .. }
            | Node::Paren { pos, .. } => *pos,
            Node::Binary { lhs, .. } => lhs.pos(),
        }
    }

    fn value_type(&self) -> ValueType {
        match self {
            Node::Number { .. } => ValueType::Scalar,
            Node::Str { .. } => ValueType::String,
            Node::Vector { .. } | Node::Aggregate { .. } => ValueType::Vector,
            Node::Matrix { .. } | Node::Subquery { .. } => ValueType::Matrix,
            Node::Call { func, .. } => func.map_or(ValueType::Vector, |f| f.returns),
            Node::Binary { lhs, rhs, .. } => {
                if lhs.value_type() == ValueType::Scalar && rhs.value_type() == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Node::Unary { expr, .. } | Node::Paren { expr, .. } => expr.value_type(),
        }
    }
}

/// Which of `offset` and `@` a selector or subquery has.
#[derive(Debug, Default)]
struct Modifiers {
    offset: bool,
    at: bool,
}

/// What the checks need of a label matcher.
#[derive(Debug)]
struct Matcher {
    name: String,
    value: String,
    matches_empty: bool,
}

/// A syntax error ends the parse; it is already recorded.
struct Abort;

type Parsed<T> = Result<T, Abort>;

struct Parser<'a> {
    input: &'a str,
    items: Vec<Item>,
    next: usize,
    first: Option<SyntaxError>,
    /// Depth of aggregations being parsed (their error production names the context).
    aggregation: usize,
    /// Nesting depth of expressions, bounded so hostile input cannot exhaust the stack.
    depth: usize,
}

/// Deeper nesting is refused (no real query comes near it).
const MAX_DEPTH: usize = 256;

/// Checks `query` as Prometheus does; `None` if Prometheus would accept it.
pub(crate) fn check(query: &str) -> Option<SyntaxError> {
    let mut p = Parser {
        input: query,
        items: lex(query),
        next: 0,
        first: None,
        aggregation: 0,
        depth: 0,
    };
    if p.peek().kind == Kind::Eof {
        p.error(0, "no expression found in input".to_owned());
        return p.first;
    }
    let Ok(expr) = p.expr(0) else {
        return p.first;
    };
    if p.peek().kind != Kind::Eof {
        p.unexpected("", "");
        return p.first;
    }
    if p.first.is_some() {
        return p.first;
    }
    p.check_ast(&expr);
    p.first
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
    )
}

fn starts_expression(kind: Kind) -> bool {
    is_metric_identifier(kind)
        || matches!(
            kind,
            Kind::Number | Kind::String | Kind::LeftParen | Kind::LeftBrace | Kind::Add | Kind::Sub
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
    )
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

impl Parser<'_> {
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

    fn expr(&mut self, min_precedence: u8) -> Parsed<Node> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let pos = self.peek().pos;
            self.error(pos, "expression nests too deeply".to_owned());
            return Err(Abort);
        }
        let result = self.binary(min_precedence);
        self.depth -= 1;
        result
    }

    fn binary(&mut self, min_precedence: u8) -> Parsed<Node> {
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
            let mut on = false;
            let mut matching = Vec::new();
            let mut include = Vec::new();
            let mut card = Card::OneToOne;
            let next = self.peek().kind;
            if matches!(next, Kind::On | Kind::Ignoring) {
                self.bump();
                on = next == Kind::On;
                matching = self.grouping_labels()?;
                let group = self.peek().kind;
                if matches!(group, Kind::GroupLeft | Kind::GroupRight) {
                    self.bump();
                    card = if group == Kind::GroupLeft {
                        Card::ManyToOne
                    } else {
                        Card::OneToMany
                    };
                    // The labels are optional; what can start no expression is taken
                    // for their missing "(" (Prometheus' LALR tables do the same).
                    let next = self.peek().kind;
                    if next == Kind::LeftParen || !starts_expression(next) {
                        include = self.grouping_labels()?;
                    }
                }
            }
            let right_min = if op.kind == Kind::Pow {
                precedence
            } else {
                precedence + 1
            };
            let rhs = self.expr(right_min)?;
            lhs = Node::Binary {
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                op: op.kind,
                op_pos: op.pos,
                return_bool,
                on,
                matching,
                include,
                card,
            };
        }
    }

    fn unary(&mut self) -> Parsed<Node> {
        let op = self.peek();
        if !matches!(op.kind, Kind::Add | Kind::Sub) {
            return self.postfix();
        }
        self.bump();
        // `unary_op expr %prec MUL`: only `^` and the postfix modifiers bind tighter.
        let operand = self.expr(MUL_PRECEDENCE + 1)?;
        if let Node::Number { .. } = operand {
            return Ok(Node::Number { pos: op.pos });
        }
        Ok(Node::Unary {
            pos: op.pos,
            expr: Box::new(operand),
        })
    }

    fn postfix(&mut self) -> Parsed<Node> {
        let mut expr = self.primary()?;
        loop {
            match self.peek().kind {
                Kind::LeftBracket => expr = self.range_or_subquery(expr)?,
                Kind::Offset => {
                    self.bump();
                    let next = self.peek();
                    match next.kind {
                        Kind::Duration => {
                            self.bump();
                            self.duration(&next);
                        }
                        Kind::Sub => {
                            self.bump();
                            let d = self.peek();
                            if d.kind != Kind::Duration {
                                return Err(self.unexpected("offset", "duration"));
                            }
                            self.bump();
                            self.duration(&d);
                        }
                        _ => return Err(self.unexpected("offset", "duration")),
                    }
                    self.add_offset(&mut expr);
                }
                Kind::At => {
                    self.bump();
                    let next = self.peek();
                    match next.kind {
                        Kind::Number => {
                            self.bump();
                            let ts = self.number(&next);
                            self.set_timestamp(&mut expr, Some(ts));
                        }
                        Kind::Add | Kind::Sub => {
                            self.bump();
                            let n = self.peek();
                            if n.kind != Kind::Number {
                                return Err(self.unexpected("@", "timestamp"));
                            }
                            self.bump();
                            let ts = self.number(&n);
                            let ts = if next.kind == Kind::Sub { -ts } else { ts };
                            self.set_timestamp(&mut expr, Some(ts));
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
                            self.set_timestamp(&mut expr, None);
                        }
                        _ => return Err(self.unexpected("@", "timestamp")),
                    }
                }
                _ => return Ok(expr),
            }
        }
    }

    fn range_or_subquery(&mut self, expr: Node) -> Parsed<Node> {
        let open = self.bump();
        let range = self.peek();
        if range.kind != Kind::Duration {
            return Err(self.unexpected("subquery selector", "duration"));
        }
        self.bump();
        self.duration(&range);
        match self.peek().kind {
            Kind::RightBracket => {
                self.bump();
                let message = match &expr {
                    Node::Vector { modifiers, .. } if modifiers.offset => {
                        Some("no offset modifiers allowed before range")
                    }
                    Node::Vector { modifiers, .. } if modifiers.at => {
                        Some("no @ modifiers allowed before range")
                    }
                    Node::Vector { .. } => None,
                    _ => Some("ranges only allowed for vector selectors"),
                };
                if let Some(message) = message {
                    self.error(open.pos, message.to_owned());
                }
                Ok(Node::Matrix {
                    pos: expr.pos(),
                    vector: Box::new(expr),
                })
            }
            Kind::Colon => {
                self.bump();
                let step = self.peek();
                match step.kind {
                    Kind::RightBracket => {}
                    Kind::Duration => {
                        self.bump();
                        self.duration(&step);
                        if self.peek().kind != Kind::RightBracket {
                            return Err(self.unexpected("subquery selector", "\"]\""));
                        }
                    }
                    _ => {
                        return Err(self.unexpected("subquery selector", "duration or \"]\""));
                    }
                }
                self.bump();
                Ok(Node::Subquery {
                    pos: expr.pos(),
                    expr: Box::new(expr),
                    modifiers: Modifiers::default(),
                })
            }
            _ => Err(self.unexpected("subquery or range", "\":\" or \"]\"")),
        }
    }

    /// The modifiers of the selector or subquery that `offset` or `@` (named by `what`)
    /// applies to; records Prometheus' error when there is none.
    fn modifiers_of<'n>(&mut self, expr: &'n mut Node, what: &str) -> Option<&'n mut Modifiers> {
        let pos = expr.pos();
        match expr {
            Node::Vector { modifiers, .. } | Node::Subquery { modifiers, .. } => Some(modifiers),
            Node::Matrix { vector, .. } => match vector.as_mut() {
                Node::Vector { modifiers, .. } => Some(modifiers),
                _ => {
                    self.error(pos, "ranges only allowed for vector selectors".to_owned());
                    None
                }
            },
            _ => {
                self.error(
                    pos,
                    format!("{what} must be preceded by an instant vector selector or range vector selector or a subquery"),
                );
                None
            }
        }
    }

    fn add_offset(&mut self, expr: &mut Node) {
        let pos = expr.pos();
        let Some(modifiers) = self.modifiers_of(expr, "offset modifier") else {
            return;
        };
        if modifiers.offset {
            self.error(pos, "offset may not be set multiple times".to_owned());
        }
        modifiers.offset = true;
    }

    /// `@ ts` (with the number) or `@ start()`/`@ end()` (without).
    fn set_timestamp(&mut self, expr: &mut Node, ts: Option<f64>) {
        let pos = expr.pos();
        if let Some(ts) = ts
            && (!ts.is_finite() || ts >= i64::MAX as f64 || ts <= i64::MIN as f64)
        {
            self.error(
                pos,
                format!("timestamp out of bounds for @ modifier: {}", go_float_f(ts)),
            );
        }
        let Some(modifiers) = self.modifiers_of(expr, "@ modifier") else {
            return;
        };
        if modifiers.at {
            self.error(
                pos,
                "@ <timestamp> may not be set multiple times".to_owned(),
            );
            return;
        }
        modifiers.at = true;
    }

    fn primary(&mut self) -> Parsed<Node> {
        let item = self.peek();
        match item.kind {
            Kind::Number => {
                self.bump();
                self.number(&item);
                Ok(Node::Number { pos: item.pos })
            }
            Kind::String => {
                self.bump();
                Ok(Node::Str { pos: item.pos })
            }
            Kind::LeftParen => {
                self.bump();
                let inner = self.expr(0)?;
                if self.peek().kind != Kind::RightParen {
                    return Err(self.unexpected_here());
                }
                self.bump();
                Ok(Node::Paren {
                    pos: item.pos,
                    expr: Box::new(inner),
                })
            }
            Kind::LeftBrace => {
                let matchers = self.label_matchers()?;
                Ok(Node::Vector {
                    pos: item.pos,
                    name: None,
                    matchers,
                    modifiers: Modifiers::default(),
                })
            }
            kind if is_metric_identifier(kind) => {
                let after = self.items.get(self.next + 1).map(|i| i.kind);
                if kind == Kind::Identifier && after == Some(Kind::LeftParen) {
                    return self.call();
                }
                if kind.is_aggregator()
                    && matches!(after, Some(Kind::LeftParen | Kind::By | Kind::Without))
                {
                    return self.aggregate();
                }
                self.bump();
                let matchers = if self.peek().kind == Kind::LeftBrace {
                    self.label_matchers()?
                } else {
                    Vec::new()
                };
                Ok(Node::Vector {
                    pos: item.pos,
                    name: Some(item.val),
                    matchers,
                    modifiers: Modifiers::default(),
                })
            }
            _ => Err(self.unexpected_here()),
        }
    }

    /// `( args )` of a function call or aggregation: the arguments.
    fn call_body(&mut self) -> Parsed<Vec<Node>> {
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

    fn call(&mut self) -> Parsed<Node> {
        let name = self.bump();
        let args = self.call_body()?;
        let func = functions::lookup(&name.val);
        if func.is_none() {
            self.error(
                name.pos,
                format!("unknown function with name {}", go_quote(&name.val)),
            );
        }
        Ok(Node::Call {
            pos: name.pos,
            func,
            args,
        })
    }

    fn aggregate(&mut self) -> Parsed<Node> {
        let op = self.bump();
        self.aggregation += 1;
        let result = self.aggregate_rest(&op);
        self.aggregation -= 1;
        result
    }

    fn aggregate_rest(&mut self, op: &Item) -> Parsed<Node> {
        let mut modifier = false;
        if matches!(self.peek().kind, Kind::By | Kind::Without) {
            self.bump();
            self.grouping_labels()?;
            modifier = true;
        }
        let mut args = self.call_body()?;
        if !modifier && matches!(self.peek().kind, Kind::By | Kind::Without) {
            self.bump();
            self.grouping_labels()?;
        }
        let with_param = matches!(
            op.kind,
            Kind::Topk | Kind::Bottomk | Kind::CountValues | Kind::Quantile
        );
        let node = |param: Option<Node>, expr: Option<Node>| Node::Aggregate {
            pos: op.pos,
            op: op.kind,
            param: param.map(Box::new),
            expr: expr.map(Box::new),
        };
        if args.is_empty() {
            self.error(
                op.pos,
                "no arguments for aggregate expression provided".to_owned(),
            );
            return Ok(node(None, None));
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
            return Ok(node(None, None));
        }
        let expr = args.pop();
        let param = args.pop();
        Ok(node(param, expr))
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
            if !is_maybe_label(label.kind) {
                return Err(self.unexpected("grouping opts", "label"));
            }
            self.bump();
            if !is_label_name(&label.val) {
                self.error(
                    label.pos,
                    format!(
                        "unexpected {} in grouping opts, expected label",
                        label.desc()
                    ),
                );
            }
            labels.push(label.val);
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

    /// `{ name op "value", ... }`.
    fn label_matchers(&mut self) -> Parsed<Vec<Matcher>> {
        self.bump();
        let mut matchers = Vec::new();
        if self.peek().kind == Kind::RightBrace {
            self.bump();
            return Ok(matchers);
        }
        loop {
            let name = self.peek();
            if name.kind != Kind::Identifier {
                return Err(self.unexpected("label matching", "identifier or \"}\""));
            }
            self.bump();
            let op = self.peek();
            if !matches!(
                op.kind,
                Kind::Eql | Kind::Neq | Kind::EqlRegex | Kind::NeqRegex
            ) {
                return Err(self.unexpected("label matching", "label matching operator"));
            }
            self.bump();
            let value = self.peek();
            if value.kind != Kind::String {
                return Err(self.unexpected("label matching", "string"));
            }
            self.bump();
            let text = unquote(&value.val);
            let matches_empty = match op.kind {
                Kind::Eql => text.is_empty(),
                Kind::Neq => !text.is_empty(),
                _ => match super::regex::compile(&text) {
                    Ok(re) => re.is_match("") == (op.kind == Kind::EqlRegex),
                    Err(message) => {
                        self.error(name.pos, message);
                        true
                    }
                },
            };
            matchers.push(Matcher {
                name: name.val,
                value: text,
                matches_empty,
            });
            match self.peek().kind {
                Kind::Comma => {
                    self.bump();
                    if self.peek().kind == Kind::RightBrace {
                        self.bump();
                        return Ok(matchers);
                    }
                }
                Kind::RightBrace => {
                    self.bump();
                    return Ok(matchers);
                }
                _ => return Err(self.unexpected("label matching", "\",\" or \"}\"")),
            }
        }
    }

    /// Checks a duration token as Prometheus' `parseDuration`.
    fn duration(&mut self, item: &Item) {
        if let Err(message) = check_duration(&item.val) {
            self.error(item.pos, message);
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
    fn expect_type(&mut self, node: &Node, want: ValueType, context: &str) {
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
    fn check_ast(&mut self, node: &Node) -> ValueType {
        let typ = node.value_type();
        match node {
            Node::Aggregate {
                op, param, expr, ..
            } => {
                if let Some(expr) = expr {
                    self.expect_type(expr, ValueType::Vector, "aggregation expression");
                }
                if let Some(param) = param {
                    let want = if *op == Kind::CountValues {
                        ValueType::String
                    } else {
                        ValueType::Scalar
                    };
                    self.expect_type(param, want, "aggregation parameter");
                }
            }
            Node::Binary {
                lhs,
                rhs,
                op,
                op_pos,
                return_bool,
                on,
                matching,
                include,
                card,
            } => {
                let lt = self.check_ast(lhs);
                let rt = self.check_ast(rhs);
                if *return_bool && !op.is_comparison() {
                    self.error(
                        *op_pos,
                        "bool modifier can only be used on comparison operators".to_owned(),
                    );
                }
                if op.is_comparison()
                    && !*return_bool
                    && lt == ValueType::Scalar
                    && rt == ValueType::Scalar
                {
                    self.error(
                        *op_pos,
                        "comparisons between scalars must use BOOL modifier".to_owned(),
                    );
                }
                let card = if op.is_set_operator() && *card == Card::OneToOne {
                    Card::ManyToMany
                } else {
                    *card
                };
                for l1 in matching {
                    for l2 in include {
                        if l1 == l2 && *on {
                            self.error(
                                *op_pos,
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
                        lhs.pos(),
                        "binary expression must contain only scalar and instant vector types"
                            .to_owned(),
                    );
                }
                if !instant(rt) {
                    self.error(
                        rhs.pos(),
                        "binary expression must contain only scalar and instant vector types"
                            .to_owned(),
                    );
                }
                let op_name = go_quote(op.type_str().unwrap_or(""));
                if lt != ValueType::Vector || rt != ValueType::Vector {
                    if !matching.is_empty() {
                        self.error(
                            node.pos(),
                            "vector matching only allowed between instant vectors".to_owned(),
                        );
                    }
                } else if op.is_set_operator() {
                    if matches!(card, Card::OneToMany | Card::ManyToOne) {
                        self.error(
                            node.pos(),
                            format!("no grouping allowed for {op_name} operation"),
                        );
                    }
                    if card != Card::ManyToMany {
                        self.error(
                            node.pos(),
                            "set operations must always be many-to-many".to_owned(),
                        );
                    }
                }
                if (lt == ValueType::Scalar || rt == ValueType::Scalar) && op.is_set_operator() {
                    self.error(
                        node.pos(),
                        format!("set operator {op_name} not allowed in binary scalar expression"),
                    );
                }
            }
            Node::Call { func, args, pos } => {
                let Some(func) = func else {
                    return typ;
                };
                let nargs = func.args.len();
                let name = go_quote(func.name);
                if func.variadic == 0 {
                    if nargs != args.len() {
                        self.error(
                            *pos,
                            format!(
                                "expected {nargs} argument(s) in call to {name}, got {}",
                                args.len()
                            ),
                        );
                    }
                } else {
                    let na = nargs.saturating_sub(1);
                    if na > args.len() {
                        self.error(
                            *pos,
                            format!(
                                "expected at least {na} argument(s) in call to {name}, got {}",
                                args.len()
                            ),
                        );
                    } else if func.variadic > 0 {
                        let max = na + func.variadic.unsigned_abs() as usize;
                        if max < args.len() {
                            self.error(
                                *pos,
                                format!(
                                    "expected at most {max} argument(s) in call to {name}, got {}",
                                    args.len()
                                ),
                            );
                        }
                    }
                }
                let context = format!("call to function {name}");
                for (i, arg) in args.iter().enumerate() {
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
            Node::Paren { expr, .. } => {
                self.check_ast(expr);
            }
            Node::Unary { expr, pos } => {
                let t = self.check_ast(expr);
                if !matches!(t, ValueType::Scalar | ValueType::Vector) {
                    self.error(
                        *pos,
                        format!(
                            "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                            go_quote(t.documented())
                        ),
                    );
                }
            }
            Node::Subquery { expr, pos, .. } => {
                let t = self.check_ast(expr);
                if t != ValueType::Vector {
                    self.error(
                        *pos,
                        format!(
                            "subquery is only allowed on instant vector, got {} instead",
                            t.name()
                        ),
                    );
                }
            }
            Node::Matrix { vector, .. } => {
                self.check_ast(vector);
            }
            Node::Vector {
                pos,
                name,
                matchers,
                ..
            } => {
                if let Some(name) = name {
                    if let Some(m) = matchers.iter().find(|m| m.name == "__name__") {
                        self.error(
                            *pos,
                            format!(
                                "metric name must not be set twice: {} or {}",
                                go_quote(name),
                                go_quote(&m.value)
                            ),
                        );
                    }
                } else if matchers.iter().all(|m| m.matches_empty) {
                    self.error(
                        *pos,
                        "vector selector must contain at least one non-empty matcher".to_owned(),
                    );
                }
            }
            Node::Number { .. } | Node::Str { .. } => {}
        }
        typ
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
fn go_number(s: &str) -> Result<f64, String> {
    if let Some(v) = go_parse_int(s) {
        return Ok(v as f64);
    }
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
            go_quote(s)
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
            go_quote(s)
        ));
    }
    Ok(v)
}

/// Go's `strconv.ParseInt(s, 0, 64)` for unsigned tokens: 0x hex, leading-0 octal, decimal.
fn go_parse_int(s: &str) -> Option<i64> {
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

/// Prometheus' `parseDuration`: `model.ParseDuration` and a positive value.
fn check_duration(s: &str) -> Result<(), String> {
    const UNITS: [&str; 7] = ["y", "w", "d", "h", "m", "s", "ms"];
    let invalid = || format!("not a valid duration string: {}", go_quote(s));
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return Err("empty duration string".to_owned());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let (number, after) = rest.split_at(digits);
        let unit = UNITS
            .iter()
            .enumerate()
            .skip(next_unit)
            .filter(|(_, u)| after.starts_with(**u))
            // "ms" must win over "m" when both match.
            .max_by_key(|(_, u)| u.len());
        let Some((index, unit)) = unit else {
            return Err(invalid());
        };
        let n: u128 = number.parse().unwrap_or(u128::MAX);
        let ms: u128 = match *unit {
            "y" => 365 * 24 * 3_600_000,
            "w" => 7 * 24 * 3_600_000,
            "d" => 24 * 3_600_000,
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1000,
            _ => 1,
        };
        total = total.saturating_add(n.saturating_mul(ms));
        next_unit = index + 1;
        rest = &after[unit.len()..];
    }
    if total > i64::MAX as u128 / 1_000_000 {
        return Err("duration out of range".to_owned());
    }
    if total == 0 {
        return Err("duration must be greater than 0".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(q: &str) -> Option<(usize, String)> {
        check(q).map(|e| (e.pos, e.message))
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
            "{a!~\".*\"}",
        ] {
            assert_eq!(err(q), None, "{q}");
        }
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
                "sum(x) by",
                9,
                "unexpected end of input in grouping opts, expected \"(\"",
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
            ("rate(x +)", 8, "unexpected \")\""),
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
            (
                "1e",
                0,
                "error parsing number: strconv.ParseFloat: parsing \"1e\": invalid syntax",
            ),
            ("x[0s]", 2, "duration must be greater than 0"),
            ("x[m]", 2, "not a valid duration string: \"m\""),
            (
                "x[5m:1m 5]",
                8,
                "unexpected number \"5\" in subquery selector, expected \"]\"",
            ),
        ];
        for (q, pos, message) in cases {
            assert_eq!(err(q), Some((*pos, (*message).to_owned())), "{q}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let q = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(check(&q).is_some());
    }
}
