//! Thanos-compatible bucket configuration (`--objstore.config-file` / `--objstore.config`).
//!
//! ```yaml
//! type: S3            # or FILESYSTEM (case-insensitive)
//! config:
//!   bucket: thanos
//!   endpoint: 127.0.0.1:9000
//!   insecure: true
//! prefix: tenant-a    # optional
//! ```
//!
//! Fields Thanos accepts but Strata does not act on are accepted and logged once as ignored;
//! unknown fields are an error (Thanos parses strictly too). Secrets are redacted from
//! `Debug` output so configs can be logged.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole bucket config file.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketConfig {
    /// The provider and its settings.
    pub provider: Provider,
    /// Object name prefix inside the bucket ("" for none), without leading or trailing `/`.
    pub prefix: String,
}

/// A supported provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Provider {
    /// Any S3-compatible store.
    S3(Box<S3Config>),
    /// A local directory.
    Filesystem(FilesystemConfig),
}

impl Provider {
    /// Name as Thanos spells it in `type:`.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::S3(_) => "S3",
            Provider::Filesystem(_) => "FILESYSTEM",
        }
    }
}

/// `type: FILESYSTEM`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Root directory of the bucket.
    pub directory: String,
}

/// `type: S3`, with the field names of Thanos' objstore (minio-go based) config.
#[derive(Clone, PartialEq, Deserialize)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// `host[:port]` of the S3 endpoint (no scheme; `insecure` selects http).
    #[serde(default)]
    pub endpoint: String,
    /// Region; empty means `us-east-1`.
    #[serde(default)]
    pub region: String,
    /// Static access key; empty means the AWS default credential chain (env, IMDS).
    #[serde(default)]
    pub access_key: String,
    /// Static secret key.
    #[serde(default)]
    pub secret_key: String,
    /// Session token for temporary credentials.
    #[serde(default)]
    pub session_token: String,
    /// Use plain http.
    #[serde(default)]
    pub insecure: bool,
    /// Signature v2 is not supported: ignored with a warning (v4 is used).
    #[serde(default)]
    pub signature_version2: bool,
    /// `auto`, `path` or `virtual-hosted` (`auto` = path style).
    #[serde(default)]
    pub bucket_lookup_type: String,
    /// Multipart part size in bytes (0: 64 MiB).
    #[serde(default)]
    pub part_size: u64,
    /// Retries of a failed request (0: 10).
    #[serde(default)]
    pub max_retries: usize,
    /// HTTP client settings.
    #[serde(default)]
    pub http_config: HttpConfig,
    /// Accepted for compatibility, not used.
    #[serde(flatten)]
    pub ignored: BTreeMap<String, serde_norway::Value>,
}

/// Fields of Thanos' S3 config that are accepted and ignored.
const S3_IGNORED_FIELDS: &[&str] = &[
    "disable_dualstack",
    "aws_sdk_auth",
    "put_user_metadata",
    "trace",
    "list_objects_version",
    "send_content_md5",
    "disable_multipart",
    "sse_config",
    "sts_endpoint",
];

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &redact(&self.secret_key))
            .field("session_token", &redact(&self.session_token))
            .field("insecure", &self.insecure)
            .field("signature_version2", &self.signature_version2)
            .field("bucket_lookup_type", &self.bucket_lookup_type)
            .field("part_size", &self.part_size)
            .field("max_retries", &self.max_retries)
            .field("http_config", &self.http_config)
            .finish_non_exhaustive()
    }
}

/// `http_config` of the S3 config.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct HttpConfig {
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Time to wait for response headers (Go duration, default 2m); used as read timeout.
    #[serde(default)]
    pub response_header_timeout: Option<String>,
    /// TLS handshake timeout (Go duration, default 10s); used as connect timeout.
    #[serde(default)]
    pub tls_handshake_timeout: Option<String>,
    /// Idle connection timeout (Go duration, default 1m30s).
    #[serde(default)]
    pub idle_conn_timeout: Option<String>,
    /// Idle connections kept per host (default 100).
    #[serde(default)]
    pub max_idle_conns_per_host: Option<usize>,
    /// TLS settings.
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// Accepted for compatibility, not used.
    #[serde(flatten)]
    pub ignored: BTreeMap<String, serde_norway::Value>,
}

const HTTP_IGNORED_FIELDS: &[&str] = &[
    "expect_continue_timeout",
    "max_idle_conns",
    "max_conns_per_host",
    "disable_compression",
];

/// `tls_config` of `http_config`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust (besides the system roots).
    #[serde(default)]
    pub ca_file: String,
    /// Client certificate: not supported by the S3 client; an error if set.
    #[serde(default)]
    pub cert_file: String,
    /// Client key: not supported by the S3 client; an error if set.
    #[serde(default)]
    pub key_file: String,
    /// Server name override: accepted, not used.
    #[serde(default)]
    pub server_name: String,
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: serde_norway::Value,
    #[serde(default)]
    prefix: String,
}

impl BucketConfig {
    /// Parses a bucket config from YAML.
    pub fn from_yaml(yaml: &str) -> Result<BucketConfig> {
        let raw: RawConfig =
            serde_norway::from_str(yaml).map_err(|e| Error::Config(e.to_string()))?;
        let provider = match raw.kind.to_ascii_uppercase().as_str() {
            "S3" => {
                let s3: S3Config = serde_norway::from_value(raw.config)
                    .map_err(|e| Error::Config(format!("S3: {e}")))?;
                s3.validate()?;
                Provider::S3(Box::new(s3))
            }
            "FILESYSTEM" => {
                let fs: FilesystemConfig = serde_norway::from_value(raw.config)
                    .map_err(|e| Error::Config(format!("FILESYSTEM: {e}")))?;
                if fs.directory.is_empty() {
                    return Err(Error::Config("FILESYSTEM: directory is empty".into()));
                }
                Provider::Filesystem(fs)
            }
            other => {
                return Err(Error::Config(format!(
                    "unsupported bucket type {other:?} (supported: S3, FILESYSTEM)"
                )));
            }
        };
        Ok(BucketConfig {
            provider,
            prefix: raw.prefix.trim_matches('/').to_owned(),
        })
    }
}

impl S3Config {
    fn validate(&self) -> Result<()> {
        if self.bucket.is_empty() {
            return Err(Error::Config("S3: bucket is empty".into()));
        }
        if self.access_key.is_empty() != self.secret_key.is_empty() {
            return Err(Error::Config(
                "S3: access_key and secret_key must be set together".into(),
            ));
        }
        if self.endpoint.contains("://") {
            return Err(Error::Config(format!(
                "S3: endpoint {:?} must be host[:port] without a scheme (set insecure: true for http)",
                self.endpoint
            )));
        }
        if !self.http_config.tls_config.cert_file.is_empty()
            || !self.http_config.tls_config.key_file.is_empty()
        {
            return Err(Error::Config(
                "S3: client certificates (tls_config.cert_file/key_file) are not supported".into(),
            ));
        }
        match self.bucket_lookup_type.as_str() {
            "" | "auto" | "path" | "virtual-hosted" => {}
            other => {
                return Err(Error::Config(format!(
                    "S3: bucket_lookup_type {other:?} (want auto, path or virtual-hosted)"
                )));
            }
        }
        for name in self.ignored.keys() {
            if !S3_IGNORED_FIELDS.contains(&name.as_str()) {
                return Err(Error::Config(format!("S3: unknown field {name:?}")));
            }
        }
        for name in self.http_config.ignored.keys() {
            if !HTTP_IGNORED_FIELDS.contains(&name.as_str()) {
                return Err(Error::Config(format!(
                    "S3 http_config: unknown field {name:?}"
                )));
            }
        }
        parse_go_duration_opt(self.http_config.response_header_timeout.as_deref())?;
        parse_go_duration_opt(self.http_config.tls_handshake_timeout.as_deref())?;
        parse_go_duration_opt(self.http_config.idle_conn_timeout.as_deref())?;
        Ok(())
    }

    /// Names of accepted-but-ignored fields that are set (for a warning).
    pub fn ignored_fields(&self) -> Vec<String> {
        let mut out: Vec<String> = self.ignored.keys().cloned().collect();
        out.extend(
            self.http_config
                .ignored
                .keys()
                .map(|k| format!("http_config.{k}")),
        );
        if self.signature_version2 {
            out.push("signature_version2 (signature v4 is used)".into());
        }
        if !self.http_config.tls_config.server_name.is_empty() {
            out.push("http_config.tls_config.server_name".into());
        }
        out
    }
}

/// Parses an optional Go duration; `None` for absent.
pub(crate) fn parse_go_duration_opt(s: Option<&str>) -> Result<Option<Duration>> {
    s.map(parse_go_duration).transpose()
}

/// Parses a Go `time.Duration` string such as `1m30s`, `250ms` or `2h`.
pub fn parse_go_duration(s: &str) -> Result<Duration> {
    strata_types::time::parse_go_duration(s)
        .ok_or_else(|| Error::Config(format!("invalid duration {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thanos_s3_config() {
        let yaml = r#"
type: s3
config:
  bucket: "thanos"
  endpoint: "127.0.0.1:9000"
  region: eu-west-1
  access_key: AKIA
  secret_key: "very-secret"
  insecure: true
  signature_version2: true
  put_user_metadata: {}
  part_size: 16777216
  http_config:
    idle_conn_timeout: 1m30s
    response_header_timeout: 2m
    insecure_skip_verify: false
    max_idle_conns: 100
    tls_config:
      ca_file: /etc/ca.pem
prefix: /tenant-a/
"#;
        let config = BucketConfig::from_yaml(yaml).unwrap();
        assert_eq!(config.prefix, "tenant-a");
        let Provider::S3(s3) = &config.provider else {
            panic!("not S3")
        };
        assert_eq!(s3.bucket, "thanos");
        assert_eq!(s3.part_size, 16 << 20);
        assert_eq!(s3.http_config.tls_config.ca_file, "/etc/ca.pem");
        let debug = format!("{config:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(debug.contains("<redacted>"));
        let ignored = s3.ignored_fields();
        assert!(ignored.iter().any(|f| f.starts_with("signature_version2")));
        assert!(ignored.iter().any(|f| f == "put_user_metadata"));
    }

    #[test]
    fn parses_filesystem_and_rejects_unknown() {
        let config =
            BucketConfig::from_yaml("type: FILESYSTEM\nconfig:\n  directory: /data\n").unwrap();
        assert_eq!(
            config.provider,
            Provider::Filesystem(FilesystemConfig {
                directory: "/data".into()
            })
        );
        assert!(BucketConfig::from_yaml("type: GCS\nconfig: {}\n").is_err());
        assert!(BucketConfig::from_yaml("type: S3\nconfig:\n  bucket: b\n  bogus: 1\n").is_err());
        assert!(
            BucketConfig::from_yaml("type: S3\nconfig:\n  bucket: b\n  endpoint: http://x\n")
                .is_err()
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("").is_err());
    }
}
