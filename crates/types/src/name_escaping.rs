//! Prometheus' "value encoding" escaping of names (`U__` + escapes), as the HTTP API uses it
//! for a label name in a URL path (`/api/v1/label/<name>/values`): a name that is not a
//! legacy one (`[a-zA-Z_:][a-zA-Z0-9_:]*`) is sent as `U__` followed by the name with `_`
//! doubled and every other character as `_<hex code point>_`. Same rules as prometheus/common
//! `model.EscapeName` / `model.UnescapeName` with `ValueEncodingEscaping`.

fn is_legacy_rune(c: char, i: usize) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (c.is_ascii_digit() && i > 0)
}

fn is_legacy_name(name: &str) -> bool {
    !name.is_empty() && name.chars().enumerate().all(|(i, c)| is_legacy_rune(c, i))
}

/// The name as a URL path segment should carry it: legacy names unchanged (except ones that
/// would read as escaped), others `U__`-escaped. The result is ASCII letters, digits, `_`
/// and `:` only.
pub fn escape_name(name: &str) -> String {
    if is_legacy_name(name) && !name.starts_with("U__") {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len() + 8);
    out.push_str("U__");
    for (i, c) in name.chars().enumerate() {
        if c == '_' {
            out.push_str("__");
        } else if is_legacy_rune(c, i) {
            out.push(c);
        } else {
            out.push('_');
            out.push_str(&format!("{:x}", u32::from(c)));
            out.push('_');
        }
    }
    out
}

/// Undoes [`escape_name`] for a name that starts with `U__`; anything that does not decode
/// is returned unchanged, as Prometheus does.
pub fn unescape_name(name: &str) -> String {
    let Some(escaped) = name.strip_prefix("U__") else {
        return name.to_owned();
    };
    let bytes = escaped.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&first) = bytes.get(i) {
        if first != b'_' {
            out.push(first);
            i += 1;
            continue;
        }
        i += 1;
        match bytes.get(i) {
            None => return name.to_owned(),
            Some(b'_') => {
                out.push(b'_');
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        let mut value: u32 = 0;
        let mut digits = 0;
        loop {
            let Some(&b) = bytes.get(i) else {
                return name.to_owned();
            };
            if b == b'_' {
                let Some(c) = char::from_u32(value) else {
                    return name.to_owned();
                };
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 1;
                break;
            }
            if digits >= 6 {
                return name.to_owned();
            }
            let Some(d) = char::from(b).to_digit(16) else {
                return name.to_owned();
            };
            value = value * 16 + d;
            digits += 1;
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prometheus_examples() {
        assert_eq!(escape_name("job"), "job");
        assert_eq!(escape_name("http.status"), "U__http_2e_status");
        assert_eq!(escape_name("a_b.c"), "U__a__b_2e_c");
        assert_eq!(escape_name("9lives"), "U___39_lives");
        assert_eq!(escape_name("U__x"), "U__U____x");
        assert_eq!(
            escape_name("../-/quit?x"),
            "U___2e__2e__2f__2d__2f_quit_3f_x"
        );
        assert_eq!(unescape_name("U__http_2e_status"), "http.status");
        assert_eq!(unescape_name("U__bad_zz_"), "U__bad_zz_");
        assert_eq!(unescape_name("U__open_2e"), "U__open_2e");
        assert_eq!(unescape_name("U__big_1234567_"), "U__big_1234567_");
        assert_eq!(unescape_name("U__sur_d800_"), "U__sur_d800_");
        assert_eq!(unescape_name("plain"), "plain");
    }

    proptest! {
        #[test]
        fn escaping_round_trips(name in "\\PC{0,12}") {
            let escaped = escape_name(&name);
            prop_assert!(escaped.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'));
            prop_assert_eq!(unescape_name(&escaped), name);
        }
    }
}
