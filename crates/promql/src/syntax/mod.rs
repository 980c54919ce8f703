//! Prometheus' parse errors: which error Prometheus reports for a malformed query, at which
//! position, in its words. The engine parses with `promql-parser`; when that fails, this
//! checker (a lexer and recursive-descent parser following Prometheus' grammar, its error
//! productions and its type checks) supplies the message Prometheus gives.

mod functions;
mod lexer;
mod parser;
mod regex;

use std::fmt;

pub(crate) use parser::SyntaxError;

/// The first error Prometheus reports for `query`, or `None` if Prometheus accepts it.
pub(crate) fn check(query: &str) -> Option<SyntaxError> {
    parser::check(query)
}

impl SyntaxError {
    /// `line:column` of the error as Prometheus prints it (1-based, column in bytes).
    fn position(&self, query: &str) -> Option<(usize, usize)> {
        let head = query.get(..self.pos)?;
        let line = 1 + head.matches('\n').count();
        let col = self.pos - head.rfind('\n').map_or(0, |i| i + 1) + 1;
        Some((line, col))
    }

    /// The error as Prometheus formats it: `1:5: parse error: message`.
    pub(crate) fn display<'a>(&'a self, query: &'a str) -> impl fmt::Display + 'a {
        Shown { err: self, query }
    }
}

struct Shown<'a> {
    err: &'a SyntaxError,
    query: &'a str,
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
        let e = check(q).expect("error");
        assert_eq!(
            e.display(q).to_string(),
            "2:8: parse error: expected type range vector in call to function \"rate\", got instant vector"
        );
    }
}
