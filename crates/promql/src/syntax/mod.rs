//! PromQL's one grammar: a lexer with the states and messages of Prometheus 3.5's lexer, and
//! a recursive-descent parser following Prometheus' grammar (`generated_parser.y`), its error
//! productions and its type checks, building the syntax tree the engine evaluates. A
//! malformed query gets Prometheus' first error, at Prometheus' position, in its words.
//!
//! Why our own parser and not a crate: the engine needs positions (Prometheus' annotations
//! and errors print them), Prometheus 3.5's exact grammar and messages, and hard bounds on
//! nesting (a query of 10,000 chained operators must be refused, not overflow the stack).
//! See docs/architecture.md.

pub mod ast;
pub mod functions;
mod lexer;
mod parser;
mod printer;
mod regex;

use std::fmt;

pub(crate) use lexer::go_quote;
pub(crate) use parser::grow;
pub use parser::{MAX_DEPTH, ParseOptions, SyntaxError, parse, parse_selector};
pub use printer::{ModelDuration, format_float, has_vector_matching, pretty, pretty_with_width};

impl SyntaxError {
    /// `line:column` of the error as Prometheus prints it (1-based, column in bytes).
    fn position(&self, query: &str) -> Option<(usize, usize)> {
        let head = query.get(..self.pos)?;
        let line = 1 + head.matches('\n').count();
        let col = self.pos - head.rfind('\n').map_or(0, |i| i + 1) + 1;
        Some((line, col))
    }

    /// The error as Prometheus formats it: `1:5: parse error: message`.
    pub fn display<'a>(&'a self, query: &'a str) -> impl fmt::Display + 'a {
        Shown { err: self, query }
    }
}

struct Shown<'a> {
    err: &'a SyntaxError,
    query: &'a str,
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.query.is_empty() {
            return write!(f, "unknown position: parse error: {}", self.err.message);
        }
        match self.err.position(self.query) {
            Some((line, col)) => write!(f, "{line}:{col}: parse error: {}", self.err.message),
            None => write!(f, "invalid position: parse error: {}", self.err.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_bytes() {
        let q = "sum(\n  rate(x)\n)";
        let e = parse(q, ParseOptions::default()).expect_err("error");
        assert_eq!(
            e.display(q).to_string(),
            "2:8: parse error: expected type range vector in call to function \"rate\", got instant vector"
        );
    }
}
