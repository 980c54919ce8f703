//! Thanos' `$(VAR)` environment substitution in config files and inline configs (the
//! Kubernetes convention: `$(POD_NAME)`), as its `extflag` and reloader do.

/// Replaces every `$(NAME)` (letters, digits, `_`) with `lookup(NAME)`; the first name
/// without a value is the error. Anything else is kept as it is.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("$(") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let body = from.get(2..).unwrap_or_default();
        let name_len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let name = body.get(..name_len).unwrap_or_default();
        if name.is_empty() || !body.get(name_len..).unwrap_or_default().starts_with(')') {
            // Not a reference: keep `$(` and go on after it.
            out.push_str("$(");
            rest = body;
            continue;
        }
        match lookup(name) {
            Some(value) => out.push_str(&value),
            None => return Err(name.to_owned()),
        }
        rest = body.get(name_len + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_references_and_keeps_everything_else() {
        let env = |name: &str| match name {
            "POD_NAME" => Some("prometheus-0".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            expand_env(
                "replica: $(POD_NAME)\nx: $(EMPTY)y $ $( $(1bad chars) ${HOME}",
                env
            ),
            Ok("replica: prometheus-0\nx: y $ $( $(1bad chars) ${HOME}".to_owned())
        );
        assert_eq!(expand_env("a: $(NOPE)", env), Err("NOPE".to_owned()));
        assert_eq!(
            expand_env("tail $(POD_NAME", env),
            Ok("tail $(POD_NAME".to_owned())
        );
    }
}
