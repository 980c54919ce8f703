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
    /// Lowest TLS version the gRPC server accepts: 1.2 or 1.3.
    #[arg(long = "grpc-server-tls-min-version", default_value = "1.3", value_parser = strata_runtime::TlsVersion::parse)]
    min_version: strata_runtime::TlsVersion,
}

impl GrpcServerTlsArgs {
    pub(crate) fn files(&self) -> strata_runtime::TlsFiles {
        let non_empty = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
        strata_runtime::TlsFiles {
            cert: non_empty(&self.cert),
            key: non_empty(&self.key),
            client_ca: non_empty(&self.client_ca),
            min_version: self.min_version,
        }
    }
}

/// A Prometheus duration such as `15m`, `1h30m`, `2d` or `1w`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let ms = parse_duration_ms(s)?;
    Ok(Duration::from_millis(ms))
}

fn parse_duration_ms(s: &str) -> Result<u64, String> {
    strata_types::time::parse_duration_ms(s)
        .ok_or_else(|| format!("invalid duration {s:?} (want e.g. 30s, 15m, 2h, 1d)"))
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
    strata_types::time::parse_rfc3339_ms(s).ok_or_else(|| {
        format!("invalid time {s:?} (want RFC 3339 or a relative duration like -2w)")
    })
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
