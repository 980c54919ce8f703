//! Time and duration strings in Prometheus' formats, in milliseconds.

/// A Prometheus duration (`model.ParseDuration` of prometheus/common 0.65, which Prometheus
/// 3.5 uses): integer+unit pairs with units `y`, `w`, `d`, `h`, `m`, `s`, `ms` in that order,
/// each at most once, e.g. `1h30m`; `0` alone is zero. Milliseconds, or Prometheus' message.
pub fn parse_model_duration(s: &str) -> Result<i64, String> {
    match s {
        "0" => return Ok(0),
        "" => return Err("empty duration string".to_owned()),
        _ => {}
    }
    let invalid = || format!("not a valid duration string: {}", go_quoted(s));
    let bytes = s.as_bytes();
    let mut i = 0usize;
    let mut last_unit = 0u8;
    let mut total_ns: u128 = 0;
    while i < bytes.len() {
        let digits_start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == digits_start {
            return Err(invalid());
        }
        let value: u64 = s
            .get(digits_start..i)
            .and_then(|d| d.parse().ok())
            .ok_or_else(invalid)?;
        let unit_start = i;
        while bytes.get(i).is_some_and(|b| !b.is_ascii_digit()) {
            i += 1;
        }
        if i == unit_start {
            return Err(invalid());
        }
        let unit = s.get(unit_start..i).unwrap_or("");
        let (position, ns): (u8, u64) = match unit {
            "ms" => (7, 1_000_000),
            "s" => (6, 1_000_000_000),
            "m" => (5, 60_000_000_000),
            "h" => (4, 3_600_000_000_000),
            "d" => (3, 86_400_000_000_000),
            "w" => (2, 7 * 86_400_000_000_000),
            "y" => (1, 365 * 86_400_000_000_000),
            _ => {
                return Err(format!(
                    "unknown unit {} in duration {}",
                    go_quoted(unit),
                    go_quoted(s)
                ));
            }
        };
        if position <= last_unit {
            return Err(invalid());
        }
        last_unit = position;
        if u128::from(value) > (1u128 << 63) / u128::from(ns) {
            return Err("duration out of range".to_owned());
        }
        total_ns += u128::from(value) * u128::from(ns);
        if total_ns > i64::MAX as u128 {
            return Err("duration out of range".to_owned());
        }
    }
    i64::try_from(total_ns / 1_000_000).map_err(|_| "duration out of range".to_owned())
}

/// Go's `%q` for the ASCII a duration holds (other characters are kept as they are).
fn go_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// [`parse_model_duration`] as a non-negative count of milliseconds, `None` when malformed.
pub fn parse_duration_ms(s: &str) -> Option<u64> {
    parse_model_duration(s)
        .ok()
        .and_then(|ms| u64::try_from(ms).ok())
}

/// An RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`), as Go's
/// `time.RFC3339Nano` accepts it, in ms since the Unix epoch (fraction truncated to ms).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't'))
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        let digits = frac.get(..n)?;
        if digits.is_empty() {
            return None;
        }
        ms = format!("{digits:0<3}").get(..3)?.parse().ok()?;
        rest = frac.get(n..)?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let hours: i64 = rest.get(1..3)?.parse().ok()?;
            let minutes: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (hours * 60 + minutes)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset * 60) * 1000 + ms)
}

/// A Go `time.Duration` string such as `1m30s`, `250ms`, `1.5h` or `0` (the format of
/// Thanos' YAML configs, unlike Prometheus durations: no `d`, `w`, `y`; fractions allowed).
pub fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = tail;
    }
    std::time::Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_durations_as_prometheus() {
        assert_eq!(parse_model_duration("1h30m"), Ok(5_400_000));
        assert_eq!(
            parse_model_duration("1y2w3d4h5m6s7ms"),
            Ok(((((365 + 14 + 3) * 24 + 4) * 60 + 5) * 60 + 6) * 1000 + 7)
        );
        assert_eq!(parse_model_duration("0"), Ok(0));
        assert_eq!(parse_model_duration("0s"), Ok(0));
        assert_eq!(
            parse_model_duration(""),
            Err("empty duration string".to_owned())
        );
        assert_eq!(
            parse_model_duration("5m1h"),
            Err("not a valid duration string: \"5m1h\"".to_owned())
        );
        assert_eq!(
            parse_model_duration("1m1m"),
            Err("not a valid duration string: \"1m1m\"".to_owned())
        );
        assert_eq!(
            parse_model_duration("5x"),
            Err("unknown unit \"x\" in duration \"5x\"".to_owned())
        );
        assert_eq!(
            parse_model_duration("m"),
            Err("not a valid duration string: \"m\"".to_owned())
        );
        assert_eq!(
            parse_model_duration("5"),
            Err("not a valid duration string: \"5\"".to_owned())
        );
        assert_eq!(
            parse_model_duration("300y"),
            Err("duration out of range".to_owned())
        );
        assert_eq!(parse_model_duration("292y"), Ok(292 * 365 * 86_400_000));
        assert_eq!(
            parse_model_duration("99999999999999999999s"),
            Err("not a valid duration string: \"99999999999999999999s\"".to_owned())
        );
        assert_eq!(
            parse_model_duration("106751d23h47m16s854ms"),
            Ok(9_223_372_036_854)
        );
        assert_eq!(
            parse_model_duration("106751d23h47m16s855ms"),
            Err("duration out of range".to_owned())
        );
    }

    #[test]
    fn go_durations() {
        use std::time::Duration;
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("1d"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("15m"), Some(900_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("1.5h"), None);
        assert_eq!(parse_duration_ms("5"), None);
        assert_eq!(parse_duration_ms(""), None);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(
            parse_rfc3339_ms("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2023-11-15T00:13:20.5+02:00"),
            Some(1_700_000_000_500)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        assert_eq!(parse_rfc3339_ms("2023-11-14T22:13:20.Z"), None);
    }
}
