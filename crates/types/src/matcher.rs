use std::fmt;

use regex::Regex;

/// The four PromQL label matcher kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchType {
    /// The operator as written in PromQL.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regex => "=~",
            MatchType::NotRegex => "!~",
        }
    }

    /// Whether this is a negative matcher (`!=` or `!~`).
    pub fn is_negative(self) -> bool {
        matches!(self, MatchType::NotEqual | MatchType::NotRegex)
    }
}

/// A label matcher could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// The regular expression does not compile.
    #[error("invalid regular expression {pattern:?} for label {name:?}: {source}")]
    InvalidRegex {
        /// Label name the matcher applies to.
        name: String,
        /// The pattern as given.
        pattern: String,
        /// The regex compiler's complaint.
        source: Box<regex::Error>,
    },
}

/// A label matcher, e.g. `job=~"api|web"`.
///
/// Regular expressions are fully anchored and `.` matches newlines, as in Prometheus 3
/// (`^(?s:<pattern>)$`). A label that a series does not have matches as the empty string.
#[derive(Clone)]
pub struct Matcher {
    name: String,
    kind: MatchType,
    value: String,
    regex: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher; compiles the pattern of regex matchers.
    pub fn new(
        kind: MatchType,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        let regex = match kind {
            MatchType::Regex | MatchType::NotRegex => {
                let anchored = format!("^(?s:{})$", go_regex_compat(&value));
                let compiled =
                    Regex::new(&anchored).map_err(|source| MatcherError::InvalidRegex {
                        name: name.clone(),
                        pattern: value.clone(),
                        source: Box::new(source),
                    })?;
                Some(compiled)
            }
            MatchType::Equal | MatchType::NotEqual => None,
        };
        Ok(Matcher {
            name,
            kind,
            value,
            regex,
        })
    }

    /// `name="value"`; cannot fail.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            kind: MatchType::Equal,
            value: value.into(),
            regex: None,
        }
    }

    /// `name!="value"`; cannot fail.
    pub fn not_equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            kind: MatchType::NotEqual,
            value: value.into(),
            regex: None,
        }
    }

    /// The label name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matcher kind.
    pub fn kind(&self) -> MatchType {
        self.kind
    }

    /// The value or pattern as given.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether `value` (the empty string for a missing label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match (self.kind, &self.regex) {
            (MatchType::Equal, _) => value == self.value,
            (MatchType::NotEqual, _) => value != self.value,
            (MatchType::Regex, Some(re)) => re.is_match(value),
            (MatchType::NotRegex, Some(re)) => !re.is_match(value),
            // Unreachable by construction: regex kinds always carry a compiled regex.
            (MatchType::Regex | MatchType::NotRegex, None) => false,
        }
    }

    /// The matcher with the opposite kind (`=` ↔ `!=`, `=~` ↔ `!~`) and the same pattern.
    pub fn inverse(&self) -> Matcher {
        let kind = match self.kind {
            MatchType::Equal => MatchType::NotEqual,
            MatchType::NotEqual => MatchType::Equal,
            MatchType::Regex => MatchType::NotRegex,
            MatchType::NotRegex => MatchType::Regex,
        };
        Matcher {
            name: self.name.clone(),
            kind,
            value: self.value.clone(),
            regex: self.regex.clone(),
        }
    }

    /// For `=~` matchers whose pattern is a plain alternation of literals (`a|b|c`), the
    /// literals; lets an index look those values up directly instead of scanning all values.
    pub fn set_matches(&self) -> Option<Vec<String>> {
        if self.kind != MatchType::Regex {
            return None;
        }
        let is_literal = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '/' | ' '))
        };
        let parts: Vec<String> = self.value.split('|').map(str::to_owned).collect();
        if parts.iter().all(|p| is_literal(p)) {
            Some(parts)
        } else {
            None
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.kind == other.kind && self.value == other.value
    }
}

impl Eq for Matcher {}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.kind.as_str(), self.value)
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Go's RE2 reads a `{` that starts no repetition (`{n}`, `{n,}`, `{n,m}`) as a literal
/// character, where Rust's `regex` refuses the pattern; such braces are escaped here, so a
/// pattern means in Strata what it means in Prometheus.
pub fn go_regex_compat(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !pattern.contains('{') {
        return std::borrow::Cow::Borrowed(pattern);
    }
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut i = 0;
    let mut in_class = false;
    let mut class_start = 0;
    while i < bytes.len() {
        let rest = pattern.get(i..).unwrap_or("");
        let c = rest.chars().next().unwrap_or('\0');
        match c {
            '\\' => {
                // An escape and the character it escapes stay as they are.
                out.push('\\');
                if let Some(next) = pattern.get(i + 1..).and_then(|r| r.chars().next()) {
                    out.push(next);
                    i += 1 + next.len_utf8();
                } else {
                    i += 1;
                }
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                class_start = i;
            }
            '[' if rest.starts_with("[:") => {
                if let Some(end) = rest.find(":]") {
                    out.push_str(rest.get(..end + 2).unwrap_or(""));
                    i += end + 2;
                    continue;
                }
            }
            ']' if in_class => {
                let first = i == class_start + 1
                    || (i == class_start + 2 && bytes.get(class_start + 1) == Some(&b'^'));
                if !first {
                    in_class = false;
                }
            }
            '{' if !in_class && !starts_repetition(rest) => {
                out.push_str("\\{");
                i += 1;
                continue;
            }
            _ => {}
        }
        out.push(c);
        i += c.len_utf8();
    }
    std::borrow::Cow::Owned(out)
}

/// Whether `s` (starting at a `{`) is `{n}`, `{n,}` or `{n,m}`.
fn starts_repetition(s: &str) -> bool {
    let Some(body) = s.strip_prefix('{') else {
        return false;
    };
    let Some(end) = body.find('}') else {
        return false;
    };
    let inner = body.get(..end).unwrap_or("");
    let (min, max) = match inner.split_once(',') {
        Some((min, max)) => (min, Some(max)),
        None => (inner, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(min) && max.is_none_or(|m| m.is_empty() || digits(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored_and_dot_matches_newline() {
        let m = Matcher::new(MatchType::Regex, "a", "fo+").unwrap();
        assert!(m.matches("foo"));
        assert!(!m.matches("xfoo"));
        assert!(!m.matches("foox"));
        let dot = Matcher::new(MatchType::Regex, "a", "a.b").unwrap();
        assert!(dot.matches("a\nb"));
    }

    #[test]
    fn empty_value_semantics() {
        assert!(Matcher::equal("a", "").matches(""));
        assert!(!Matcher::not_equal("a", "").matches(""));
        assert!(
            Matcher::new(MatchType::Regex, "a", ".*")
                .unwrap()
                .matches("")
        );
        assert!(
            !Matcher::new(MatchType::Regex, "a", ".+")
                .unwrap()
                .matches("")
        );
    }

    #[test]
    fn set_matches_only_for_literal_alternations() {
        let m = Matcher::new(MatchType::Regex, "job", "api|web").unwrap();
        assert_eq!(
            m.set_matches(),
            Some(vec!["api".to_owned(), "web".to_owned()])
        );
        assert_eq!(
            Matcher::new(MatchType::Regex, "job", "a.*")
                .unwrap()
                .set_matches(),
            None
        );
    }

    #[test]
    fn braces_that_start_no_repetition_are_literal_as_in_go() {
        assert_eq!(go_regex_compat("5.{."), "5.\\{.");
        assert_eq!(go_regex_compat("a{2}b{1,}c{1,3}"), "a{2}b{1,}c{1,3}");
        assert_eq!(go_regex_compat("[{]\\{x{"), "[{]\\{x\\{");
        let m = Matcher::new(MatchType::Regex, "a", "x{y}").unwrap();
        assert!(m.matches("x{y}"));
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(Matcher::new(MatchType::Regex, "a", "(").is_err());
    }
}
