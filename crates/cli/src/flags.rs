//! Parsers for flag values in Thanos' formats.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `--grpc-server-tls-*`, shared by every component that serves gRPC.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GrpcServerTlsArgs {
    /// TLS certificate (PEM) for the gRPC server; with the key, turns TLS on.
    #[arg(long = "grpc-server-tls-cert")]
    cert: Option<PathBuf>,
    /// TLS private key (PEM) for the gRPC server.
    #[arg(long = "grpc-server-tls-key")]
    key: Option<PathBuf>,
    /// CA bundle (PEM): clients must present a certificate signed by it (mutual TLS).
    #[arg(long = "grpc-server-tls-client-ca")]
    client_ca: Option<PathBuf>,
}

impl GrpcServerTlsArgs {
    pub(crate) fn files(&self) -> strata_runtime::TlsFiles {
        let non_empty = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        strata_runtime::TlsFiles {
            cert: non_empty(&self.cert),
            key: non_empty(&self.key),
            client_ca: non_empty(&self.client_ca),
        }
    }
}

/// A Prometheus duration such as `15m`, `1h30m`, `2d` or `1w`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let ms = parse_duration_ms(s)?;
    Ok(Duration::from_millis(ms))
}

fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid duration {s:?} (want e.g. 30s, 15m, 2h, 1d)");
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let (number, tail) = rest.split_at(digits);
        let value: u64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let factor: u64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return Err(bad()),
        };
        total = total
            .checked_add(value.checked_mul(factor).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        rest = tail;
    }
    Ok(total)
}

/// A byte size such as `250MB` or `1GiB` (base 2, as Thanos' units).
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {s:?} (want e.g. 250MB, 1GB, 512KiB)");
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let value: u64 = number.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" | "K" => 1 << 10,
        "MB" | "MIB" | "M" => 1 << 20,
        "GB" | "GIB" | "G" => 1 << 30,
        "TB" | "TIB" | "T" => 1 << 40,
        _ => return Err(bad()),
    };
    value.checked_mul(factor).ok_or_else(bad)
}

/// A time as RFC 3339, or a duration relative to now (`-2w`, `-1d`), in ms. The Thanos
/// defaults `0000-01-01T00:00:00Z` and `9999-12-31T23:59:59Z` mean unbounded.
pub(crate) fn parse_time_or_duration(s: &str) -> Result<i64, String> {
    if s.starts_with("0000-01-01") {
        return Ok(i64::MIN);
    }
    if s.starts_with("9999-12-31") {
        return Ok(i64::MAX);
    }
    if let Some(rel) = s.strip_prefix('-') {
        let ms = parse_duration_ms(rel)?;
        return Ok(now_ms().saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX)));
    }
    if let Ok(ms) = parse_duration_ms(s) {
        return Ok(now_ms().saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)));
    }
    parse_rfc3339_ms(s).ok_or_else(|| {
        format!("invalid time {s:?} (want RFC 3339 or a relative duration like -2w)")
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` in ms since the epoch.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let bytes = s.as_bytes();
    if bytes.len() < 20 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(bytes.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        let (f, tail) = frac.split_at(digits);
        let padded = format!("{f:0<3}");
        millis = padded.get(0..3)?.parse().ok()?;
        rest = tail;
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(0..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (h * 60 + m)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_sizes_times() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("1.5h").is_err());
        assert_eq!(parse_bytes("250MB").unwrap(), 250 << 20);
        assert_eq!(parse_bytes("0").unwrap(), 0);
        assert!(parse_bytes("12XB").is_err());
        assert_eq!(
            parse_time_or_duration("0000-01-01T00:00:00Z").unwrap(),
            i64::MIN
        );
        assert_eq!(
            parse_time_or_duration("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time_or_duration("2023-11-15T00:13:20.5+02:00").unwrap(),
            1_700_000_000_500
        );
        assert!(parse_time_or_duration("yesterday").is_err());
        let rel = parse_time_or_duration("-1d").unwrap();
        assert!((now_ms() - rel - 86_400_000).abs() < 5_000);
    }
}
