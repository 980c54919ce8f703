//! `format_query` and `parse_query`, as Prometheus 3.5 answers them: the query pretty
//! printed (`Prettify`), and its syntax tree as the JSON Prometheus' UI reads
//! (`web/api/v1/translate_ast.go`; object keys sorted, as Go prints maps).

use axum::extract::Request;
use axum::response::Response;
use serde_json::{Value, json};
use strata_promql::Engine;
use strata_promql::syntax::ast::{AtModifier, Cardinality, Expr, VectorSelector};
use strata_promql::syntax::{format_float, has_vector_matching, pretty};

use super::error::ApiError;
use super::params::Params;
use super::response::success;

pub(crate) async fn format_query(req: Request) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let expr = Engine::parse(p.value("query")).map_err(|e| ApiError::param("query", e))?;
    let data = Value::String(pretty(&expr)).to_string();
    Ok(success(&data, &[], &[]))
}

pub(crate) async fn parse_query(req: Request) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let expr = Engine::parse(p.value("query")).map_err(|e| ApiError::param("query", e))?;
    Ok(success(&translate(&expr).to_string(), &[], &[]))
}

/// Prometheus' `translateAST`. The tree's height is bounded by the parser.
fn translate(expr: &Expr) -> Value {
    match expr {
        Expr::Aggregate(a) => json!({
            "type": "aggregation",
            "op": a.op.name(),
            "expr": translate(&a.expr),
            "param": a.param.as_deref().map_or(Value::Null, translate),
            "grouping": a.grouping,
            "without": a.without,
        }),
        Expr::Binary(b) => {
            let matching = match &b.matching {
                Some(m) if has_vector_matching(b) => json!({
                    // Prometheus' parser makes every set operation many-to-many.
                    "card": if b.op.is_set_operator() { "many-to-many" } else { card(m.card) },
                    "labels": m.labels,
                    "on": m.on,
                    "include": m.include,
                }),
                _ => Value::Null,
            };
            json!({
                "type": "binaryExpr",
                "op": b.op.name(),
                "lhs": translate(&b.lhs),
                "rhs": translate(&b.rhs),
                "matching": matching,
                "bool": b.return_bool,
            })
        }
        Expr::Call(c) => json!({
            "type": "call",
            "func": {
                "name": c.func.name,
                "argTypes": c.func.arg_types().iter().map(|t| t.name()).collect::<Vec<_>>(),
                "variadic": c.func.variadic(),
                "returnType": c.func.return_type().name(),
            },
            "args": c.args.iter().map(translate).collect::<Vec<_>>(),
        }),
        Expr::MatrixSelector(ms) => {
            let mut v = selector(&ms.vs, "matrixSelector");
            if let Some(fields) = v.as_object_mut() {
                fields.insert("range".to_owned(), json!(ms.range));
            }
            v
        }
        Expr::Subquery(sq) => {
            let (timestamp, start_or_end) = at(sq.at);
            json!({
                "type": "subquery",
                "expr": translate(&sq.expr),
                "range": sq.range,
                "offset": sq.offset,
                "step": sq.step,
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::NumberLiteral(n) => json!({
            "type": "numberLiteral",
            "val": format_float(n.val),
        }),
        Expr::Paren(p) => json!({
            "type": "parenExpr",
            "expr": translate(&p.expr),
        }),
        Expr::StringLiteral(s) => json!({
            "type": "stringLiteral",
            "val": s.val,
        }),
        Expr::Unary(u) => json!({
            "type": "unaryExpr",
            "op": if u.negate { "-" } else { "+" },
            "expr": translate(&u.expr),
        }),
        Expr::VectorSelector(vs) => selector(vs, "vectorSelector"),
    }
}

fn selector(vs: &VectorSelector, kind: &str) -> Value {
    let (timestamp, start_or_end) = at(vs.at);
    json!({
        "type": kind,
        "name": vs.name.as_deref().unwrap_or(""),
        "offset": vs.offset,
        "matchers": vs.matchers.iter().map(|m| json!({
            "name": m.name(),
            "value": m.value(),
            "type": m.kind().as_str(),
        })).collect::<Vec<_>>(),
        "timestamp": timestamp,
        "startOrEnd": start_or_end,
    })
}

/// `timestamp` (ms) and `startOrEnd` of an `@` modifier.
fn at(at: Option<AtModifier>) -> (Value, Value) {
    match at {
        Some(AtModifier::At(ms)) => (json!(ms), Value::Null),
        Some(AtModifier::Start) => (Value::Null, json!("start")),
        Some(AtModifier::End) => (Value::Null, json!("end")),
        None => (Value::Null, Value::Null),
    }
}

fn card(c: Cardinality) -> &'static str {
    match c {
        Cardinality::OneToOne => "one-to-one",
        Cardinality::ManyToOne => "many-to-one",
        Cardinality::OneToMany => "one-to-many",
        Cardinality::ManyToMany => "many-to-many",
    }
}
