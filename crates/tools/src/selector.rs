use strata_types::Matcher;

use crate::ToolsError;

/// Parses a PromQL series selector (`up{job="api"}`, `{__name__=~"x.*"}`) into matchers, the
/// metric name first.
pub fn parse_selector(selector: &str) -> Result<Vec<Matcher>, ToolsError> {
    let vs = strata_promql::syntax::parse_selector(selector).map_err(|e| ToolsError::Selector {
        selector: selector.to_owned(),
        reason: e.display(selector).to_string(),
    })?;
    let mut matchers = vs.matchers;
    if vs.name.is_some()
        && let Some(name) = matchers.pop()
    {
        matchers.insert(0, name);
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
