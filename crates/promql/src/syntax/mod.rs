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

/// Numbers written as durations (Prometheus 3: seconds) at most this big are passed to
/// `promql-parser`; it panics converting larger ones (from about 1.8e19 seconds).
const MAX_NUMBER_DURATION_SECONDS: f64 = 1e15;

/// A number in a duration position (after `[`, a subquery's `:` or `offset`) too big for
/// `promql-parser`, as an error at its position. Quoted strings are skipped.
pub(crate) fn oversized_number_duration(query: &str) -> Option<SyntaxError> {
    let bytes = query.as_bytes();
    let mut i = 0;
    // The last significant token before `i`: a byte, or `o` for the keyword `offset`.
    let mut before: Option<u8> = None;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'"' | b'\'' | b'`' => {
                // Skip the string (backslash escapes except in raw strings).
                i += 1;
                while let Some(&d) = bytes.get(i) {
                    i += 1;
                    if d == b'\\' && c != b'`' {
                        i += 1;
                    } else if d == c {
                        break;
                    }
                }
                before = Some(b'"');
            }
            b'0'..=b'9' | b'.' => {
                let start = i;
                while bytes
                    .get(i)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_'))
                {
                    // An exponent's sign belongs to the number.
                    let exponent = matches!(bytes.get(i), Some(b'e' | b'E'))
                        && matches!(bytes.get(i + 1), Some(b'+' | b'-'))
                        && !query.get(start..i).is_some_and(|t| t.starts_with("0x"));
                    i += if exponent { 2 } else { 1 };
                }
                let text = query.get(start..i).unwrap_or_default();
                if matches!(before, Some(b'[' | b':' | b'o')) && too_big(text) {
                    return Some(SyntaxError {
                        pos: start,
                        message: format!("duration out of range: {text}"),
                    });
                }
                before = Some(b'0');
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while bytes
                    .get(i)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b':')
                {
                    i += 1;
                }
                let word = query.get(start..i).unwrap_or_default();
                before = Some(if word.eq_ignore_ascii_case("offset") {
                    b'o'
                } else {
                    b'a'
                });
            }
            c if c.is_ascii_whitespace() => i += 1,
            b'-' | b'+' if before == Some(b'o') => i += 1,
            _ => {
                before = Some(c);
                i += 1;
            }
        }
    }
    None
}

/// Whether a number literal (decimal, float or hex) is beyond what can be a duration.
fn too_big(text: &str) -> bool {
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let value = match clean
        .strip_prefix("0x")
        .or_else(|| clean.strip_prefix("0X"))
    {
        Some(hex) => hex
            .chars()
            .try_fold(0f64, |acc, c| {
                c.to_digit(16).map(|d| acc * 16.0 + f64::from(d))
            })
            .unwrap_or(0.0),
        None => clean.parse::<f64>().unwrap_or(0.0),
    };
    value.is_nan() || value.abs() > MAX_NUMBER_DURATION_SECONDS
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

#[cfg(test)]
mod duration_guard_tests {
    use super::*;

    #[test]
    fn numbers_too_big_for_durations_are_found_where_durations_go() {
        let big = "9".repeat(40);
        for query in [
            format!("d[{big}]"),
            format!("d offset {big}"),
            format!("d offset -{big}"),
            format!("d[1m:{big}]"),
            format!("d[{big}:1m]"),
            "d[1e20]".to_owned(),
            "d[5m] offset 1e300".to_owned(),
            "rate(d[1e+20])".to_owned(),
            "d[0xffffffffffffffffffff]".to_owned(),
            "d[1_000_000_000_000_000_000]".to_owned(),
        ] {
            assert!(oversized_number_duration(&query).is_some(), "{query}");
        }
        for query in [
            "d[5m]".to_owned(),
            "d[1e9]".to_owned(),
            "d > 1e300".to_owned(),
            format!("d{{a=\"[{big}]\"}}"),
            "d @ 1e300".to_owned(),
            "sum(x) offset 5m".to_owned(),
            "vector(1e300)[5m:1m]".to_owned(),
        ] {
            assert!(oversized_number_duration(&query).is_none(), "{query}");
        }
    }
}
