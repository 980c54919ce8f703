use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use strata_types::{MatchType, Matcher};

use crate::ToolsError;

/// Parses a PromQL series selector (`up{job="api"}`, `{__name__=~"x.*"}`) into matchers.
pub fn parse_selector(selector: &str) -> Result<Vec<Matcher>, ToolsError> {
    let invalid = |reason: String| ToolsError::Selector {
        selector: selector.to_owned(),
        reason,
    };
    let expr = promql_parser::parser::parse(selector).map_err(invalid)?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(invalid("not a series selector".to_owned()));
    };
    if !vs.matchers.or_matchers.is_empty() || vs.offset.is_some() || vs.at.is_some() {
        return Err(invalid(
            "only plain label matchers are supported".to_owned(),
        ));
    }
    let mut matchers = Vec::new();
    if let Some(name) = &vs.name {
        matchers.push(Matcher::equal("__name__", name.clone()));
    }
    for m in &vs.matchers.matchers {
        let kind = match m.op {
            MatchOp::Equal => MatchType::Equal,
            MatchOp::NotEqual => MatchType::NotEqual,
            MatchOp::Re(_) => MatchType::Regex,
            MatchOp::NotRe(_) => MatchType::NotRegex,
        };
        matchers.push(
            Matcher::new(kind, m.name.clone(), m.value.clone())
                .map_err(|e| invalid(e.to_string()))?,
        );
    }
    Ok(matchers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_all_matcher_kinds() {
        let matchers = parse_selector(r#"up{job="api",instance!="a",le=~"0.*",x!~"y|z"}"#).unwrap();
        let rendered: Vec<String> = matchers.iter().map(ToString::to_string).collect();
        assert_eq!(
            rendered,
            [
                r#"__name__="up""#,
                r#"job="api""#,
                r#"instance!="a""#,
                r#"le=~"0.*""#,
                r#"x!~"y|z""#
            ]
        );
        assert!(parse_selector("rate(up[5m])").is_err());
        assert!(parse_selector("up{").is_err());
    }
}
