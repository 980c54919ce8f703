//! Times and durations of HTTP API parameters (`time`, `start`, `end`, `step`, `timeout`,
//! `lookback_delta`), parsed as Prometheus 3.5's API parses them (`web/api/v1`: `parseTime`,
//! `parseDuration`), with checked arithmetic throughout.
//!
//! Prometheus reads float seconds through Go's float-to-int conversion, which on the
//! machines it runs on turns NaN, infinities and out-of-range values into the minimum
//! `int64`; so `time=NaN` or `start=-1e300&end=1e300` are accepted and land on one (absurd)
//! instant. [`ApiTime`] keeps Go's seconds and nanoseconds exactly, so range checks (the
//! 11,000-point limit, `end` before `start`) refuse and accept what Prometheus does; the
//! time the engine evaluates at ([`ApiTime::millis`]) is clamped to `i64` instead of
//! wrapping as Go's arithmetic does. Nothing here can overflow or panic.

/// Seconds between year 1 and the Unix epoch, as Go's `time` package counts them.
const UNIX_TO_INTERNAL: i64 = 62_135_596_800;

/// Go's conversion of a float to `int64` on amd64 (`CVTTSD2SI`): truncation, and the
/// minimum `int64` for NaN and anything out of range.
pub fn go_f64_to_i64(f: f64) -> i64 {
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        return i64::MIN;
    }
    f as i64
}

/// A time as Go's `time.Time` holds it after Prometheus' `parseTime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiTime {
    /// Seconds since the Unix epoch.
    unix_sec: i64,
    /// Nanoseconds, `0..1e9`.
    nsec: i64,
}

impl ApiTime {
    /// `time.Unix(sec, nsec)`, normalizing `nsec` into `[0, 1e9)` as Go does.
    pub fn unix(sec: i64, nsec: i64) -> ApiTime {
        let mut sec = sec;
        let mut nsec = nsec;
        if !(0..1_000_000_000).contains(&nsec) {
            let n = nsec / 1_000_000_000;
            sec = sec.wrapping_add(n);
            nsec -= n * 1_000_000_000;
            if nsec < 0 {
                nsec += 1_000_000_000;
                sec = sec.wrapping_sub(1);
            }
        }
        ApiTime {
            unix_sec: sec,
            nsec,
        }
    }

    /// A time in milliseconds since the epoch.
    pub fn from_millis(ms: i64) -> ApiTime {
        ApiTime::unix(ms.div_euclid(1000), ms.rem_euclid(1000) * 1_000_000)
    }

    /// Go's internal seconds (since year 1), wrapping as Go's `unixTime` does.
    fn internal_sec(self) -> i64 {
        self.unix_sec.wrapping_add(UNIX_TO_INTERNAL)
    }

    /// `t.Sub(u)` in nanoseconds, saturated to the `int64` range as Go's `Sub` is.
    pub fn sub_nanos(self, u: ApiTime) -> i64 {
        let d = (i128::from(self.internal_sec()) - i128::from(u.internal_sec())) * 1_000_000_000
            + i128::from(self.nsec - u.nsec);
        i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
    }

    /// `t.Before(u)`.
    pub fn before(self, u: ApiTime) -> bool {
        (self.internal_sec(), self.nsec) < (u.internal_sec(), u.nsec)
    }

    /// Milliseconds since the epoch (Prometheus' `timestamp.FromTime`), clamped to the
    /// `int64` range where Go would wrap.
    pub fn millis(self) -> i64 {
        let ms = i128::from(self.unix_sec) * 1000 + i128::from(self.nsec / 1_000_000);
        i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
    }
}

/// Prometheus' `MinTime`: the default start of optional time ranges.
pub fn min_time() -> ApiTime {
    ApiTime::unix(i64::MIN / 1000 + 62_135_596_801, 0)
}

/// Prometheus' `MaxTime`: the default end of optional time ranges.
pub fn max_time() -> ApiTime {
    ApiTime::unix(i64::MAX / 1000 - 62_135_596_801, 999_999_999)
}

/// Prometheus' `parseTime`: float seconds (Go's `strconv.ParseFloat` syntax, the fraction
/// rounded to milliseconds) or RFC 3339, or the RFC 3339 forms of `MinTime`/`MaxTime`.
pub fn parse_api_time(s: &str) -> Result<ApiTime, String> {
    if let Some(t) = go_parse_float(s) {
        let whole = t.trunc();
        let frac = ((t - whole) * 1000.0).round() / 1000.0;
        return Ok(ApiTime::unix(
            go_f64_to_i64(whole),
            go_f64_to_i64(frac * 1e9),
        ));
    }
    if let Some(ms) = crate::time::parse_rfc3339_ms(s) {
        return Ok(ApiTime::from_millis(ms));
    }
    match s {
        "-292273086-05-16T16:47:06Z" => return Ok(min_time()),
        "292277025-08-18T07:12:54.999999999Z" => return Ok(max_time()),
        _ => {}
    }
    Err(format!("cannot parse {} to a valid timestamp", go_quote(s)))
}

/// Prometheus' `parseDuration`, in nanoseconds: float seconds (refused when beyond
/// `int64` nanoseconds; NaN becomes the minimum `int64`, as Go converts it) or a Prometheus
/// duration (`5m`, `1h30m`; never negative).
pub fn parse_api_duration(s: &str) -> Result<i64, String> {
    if let Some(d) = go_parse_float(s) {
        let ns = d * 1e9;
        // NaN passes (as in Go, where its comparisons are false) and converts below.
        if !ns.is_nan()
            && !(-9_223_372_036_854_775_808.0..=9_223_372_036_854_775_807.0).contains(&ns)
        {
            return Err(format!(
                "cannot parse {} to a valid duration. It overflows int64",
                go_quote(s)
            ));
        }
        return Ok(go_f64_to_i64(ns));
    }
    if let Ok(ms) = crate::time::parse_model_duration(s) {
        return Ok(ms.saturating_mul(1_000_000));
    }
    Err(format!("cannot parse {} to a valid duration", go_quote(s)))
}

/// Nanoseconds as whole milliseconds (Go's `d / time.Millisecond`, toward zero).
pub fn nanos_to_millis(ns: i64) -> i64 {
    ns / 1_000_000
}

/// Go's `strconv.ParseFloat(s, 64)` for the forms a parameter takes: decimal with optional
/// sign, fraction, exponent and `_` separators between digits, `Inf`/`Infinity`/`NaN` in any
/// case; `None` for anything else, and for values beyond `f64` (Go's range error).
/// Hexadecimal floats with a binary exponent (`0x1p3`), which Go also reads, are refused.
pub fn go_parse_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        let v = if lower == "nan" {
            f64::NAN
        } else {
            f64::INFINITY
        };
        return Some(if s.starts_with('-') { -v } else { v });
    }
    let bytes = body.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    // Digits, one dot, an exponent; `_` only between digits.
    let mut i = 0;
    let mut digits = 0;
    let mut prev_digit = false;
    let mut cleaned = String::with_capacity(s.len());
    if s.starts_with('-') {
        cleaned.push('-');
    }
    let mut seen_dot = false;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'0'..=b'9' => {
                digits += 1;
                prev_digit = true;
                cleaned.push(c as char);
            }
            b'_' => {
                if !prev_digit || !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
                prev_digit = false;
            }
            b'.' if !seen_dot => {
                seen_dot = true;
                prev_digit = false;
                cleaned.push('.');
            }
            b'e' | b'E' => break,
            _ => return None,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if let Some(&e) = bytes.get(i)
        && (e == b'e' || e == b'E')
    {
        cleaned.push('e');
        i += 1;
        if let Some(&sign) = bytes.get(i)
            && (sign == b'+' || sign == b'-')
        {
            cleaned.push(sign as char);
            i += 1;
        }
        let start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            cleaned.push(bytes.get(i).copied().map_or('0', char::from));
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if i != bytes.len() {
        return None;
    }
    // Rust's parser gives the correctly rounded value Go's does; out-of-range exponents
    // give infinity where Go reports a range error (and Prometheus then refuses).
    let v: f64 = cleaned.parse().ok()?;
    v.is_finite().then_some(v)
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn times_as_prometheus_reads_them() {
        assert_eq!(
            parse_api_time("1700000000.123").map(ApiTime::millis),
            Ok(1_700_000_000_123)
        );
        assert_eq!(parse_api_time("-1.5").map(ApiTime::millis), Ok(-1500));
        assert_eq!(parse_api_time("1_0").map(ApiTime::millis), Ok(10_000));
        assert_eq!(
            parse_api_time("2023-11-14T22:13:20.5Z").map(ApiTime::millis),
            Ok(1_700_000_000_500)
        );
        // Huge values land on Go's minimum int64 seconds; NaN and infinities also get
        // Go's minimum int64 nanoseconds (their fraction is NaN).
        let huge = parse_api_time("1e300").unwrap();
        assert_eq!(parse_api_time("-1e300"), Ok(huge));
        assert_eq!(huge.millis(), i64::MIN);
        let nan = parse_api_time("NaN").unwrap();
        assert_eq!(parse_api_time("Inf"), Ok(nan));
        assert_eq!(parse_api_time("-Inf"), Ok(nan));
        assert_eq!(
            parse_api_time("zz"),
            Err("cannot parse \"zz\" to a valid timestamp".to_owned())
        );
        assert!(parse_api_time("1e400").is_err());
        assert_eq!(min_time().millis(), -9_223_309_901_257_974_000);
        assert_eq!(max_time().millis(), 9_223_309_901_257_974_999);
    }

    #[test]
    fn durations_as_prometheus_reads_them() {
        assert_eq!(parse_api_duration("15"), Ok(15_000_000_000));
        assert_eq!(parse_api_duration("0.001"), Ok(1_000_000));
        assert_eq!(parse_api_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_api_duration("-1"), Ok(-1_000_000_000));
        assert_eq!(parse_api_duration("NaN"), Ok(i64::MIN));
        assert_eq!(
            parse_api_duration("1e300"),
            Err("cannot parse \"1e300\" to a valid duration. It overflows int64".to_owned())
        );
        assert_eq!(
            parse_api_duration("Inf"),
            Err("cannot parse \"Inf\" to a valid duration. It overflows int64".to_owned())
        );
        assert_eq!(
            parse_api_duration("-1s"),
            Err("cannot parse \"-1s\" to a valid duration".to_owned())
        );
        assert_eq!(
            parse_api_duration("zz"),
            Err("cannot parse \"zz\" to a valid duration".to_owned())
        );
    }

    #[test]
    fn range_checks_see_go_time() {
        // Prometheus accepts start=-1e300&end=1e300 (one instant) but refuses start=NaN&end=100.
        let (a, b) = (
            parse_api_time("-1e300").unwrap(),
            parse_api_time("1e300").unwrap(),
        );
        assert_eq!(b.sub_nanos(a), 0);
        let c = parse_api_time("100").unwrap();
        assert_eq!(c.sub_nanos(a), i64::MAX);
        assert!(a.before(c));
        assert_eq!(a.sub_nanos(c), i64::MIN);
    }

    proptest! {
        /// Any parameter text parses without panicking, and every derived value is in range.
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,40}") {
            if let Ok(t) = parse_api_time(&s) {
                let _ = t.millis();
                let _ = t.sub_nanos(min_time());
                let _ = max_time().sub_nanos(t);
            }
            let _ = parse_api_duration(&s);
        }

        /// Float times at the extremes: conversion and range arithmetic stay checked.
        #[test]
        fn extreme_floats_never_panic(f in prop::num::f64::ANY) {
            let s = format!("{f:e}");
            if let Ok(t) = parse_api_time(&s) {
                let ms = t.millis();
                prop_assert_eq!(ApiTime::from_millis(ms).millis(), ms);
                let _ = t.sub_nanos(ApiTime::from_millis(0));
            }
            if let Ok(ns) = parse_api_duration(&s) {
                let _ = nanos_to_millis(ns);
            }
        }

        /// Finite times within the millisecond range round-trip through Go's representation.
        #[test]
        fn millis_round_trip(ms in -9_000_000_000_000_000_000i64..9_000_000_000_000_000_000i64) {
            let t = ApiTime::from_millis(ms);
            prop_assert_eq!(t.millis(), ms);
            prop_assert_eq!(t.sub_nanos(ApiTime::from_millis(ms)), 0);
        }
    }
}
