//! Label matcher regexps: checked as Prometheus 3.5 does (Go's `regexp/syntax` parse of the
//! pattern as written, before it is anchored), with errors worded like Go's for the common
//! mistakes.

use regex_syntax::ast::ErrorKind;

/// Compiles the regexp of a `=~`/`!~` matcher; the error reads like Prometheus'.
pub(crate) fn compile(pattern: &str) -> Result<regex::Regex, String> {
    let compatible = strata_types::go_regex_compat(pattern);
    if let Err(e) = regex_syntax::ast::parse::Parser::new().parse(&compatible) {
        return Err(go_message(&compatible, &e));
    }
    regex::Regex::new(&format!("^(?s:{compatible})$"))
        .map_err(|e| format!("error parsing regexp: {e}"))
}

fn go_message(anchored: &str, e: &regex_syntax::ast::Error) -> String {
    let span = e.span();
    let fragment = anchored
        .get(span.start.offset..span.end.offset)
        .unwrap_or(anchored);
    let (code, expr) = match e.kind() {
        ErrorKind::GroupUnclosed => ("missing closing )", anchored),
        ErrorKind::GroupUnopened => ("unexpected )", anchored),
        ErrorKind::ClassUnclosed => (
            "missing closing ]",
            anchored.get(span.start.offset..).unwrap_or(anchored),
        ),
        ErrorKind::RepetitionMissing => ("missing argument to repetition operator", fragment),
        ErrorKind::EscapeUnrecognized | ErrorKind::EscapeUnexpectedEof => {
            ("invalid escape sequence", fragment)
        }
        ErrorKind::ClassRangeInvalid => ("invalid character class range", fragment),
        ErrorKind::RepetitionCountInvalid | ErrorKind::RepetitionCountDecimalEmpty => {
            ("invalid repeat count", fragment)
        }
        ErrorKind::UnsupportedLookAround => ("invalid or unsupported Perl syntax", fragment),
        _ => return format!("error parsing regexp: {}", e.kind()),
    };
    format!("error parsing regexp: {code}: `{expr}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_go() {
        assert_eq!(
            compile("(").err().as_deref(),
            Some("error parsing regexp: missing closing ): `(`")
        );
        assert!(compile("a|b.*").is_ok_and(|re| re.is_match("b") && !re.is_match("c")));
    }
}
