//! The one place for flags shared by several subcommands (each group is flattened into the
//! subcommands that need it, with its one default), and parsers for flag values in Thanos'
//! formats.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// A config given inline or as a file (Thanos' `PathOrContent`): both given is an error;
/// `$(VAR)` references are replaced by environment variables, an unset one is an error.
pub(crate) fn path_or_content(
    inline: Option<String>,
    file: Option<&Path>,
    flag: &str,
) -> anyhow::Result<Option<String>> {
    let text = match (inline, file) {
        (Some(_), Some(_)) => {
            anyhow::bail!("--{flag} and --{flag}-file are exclusive; give one of them")
        }
        (Some(text), None) => text,
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("--{flag}-file: reading {}", path.display()))?,
        (None, None) => return Ok(None),
    };
    let expanded =
        strata_types::expand_env(&text, |name| std::env::var(name).ok()).map_err(|name| {
            anyhow::anyhow!("--{flag}: found reference to unset environment variable {name:?}")
        })?;
    Ok(Some(expanded))
}

/// `--objstore.config(-file)`: the bucket.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ObjstoreArgs {
    /// Path to the bucket config YAML (Thanos' bucket.yml).
    #[arg(long = "objstore.config-file")]
    objstore_config_file: Option<PathBuf>,
    /// The bucket config YAML itself (instead of a file).
    #[arg(long = "objstore.config", allow_hyphen_values = true)]
    objstore_config: Option<String>,
}

impl ObjstoreArgs {
    /// The bucket YAML, if one was given.
    pub(crate) fn yaml(&self) -> anyhow::Result<Option<String>> {
        path_or_content(
            self.objstore_config.clone(),
            self.objstore_config_file.as_deref(),
            "objstore.config",
        )
    }

    /// The bucket YAML; an error when none was given.
    pub(crate) fn required_yaml(&self) -> anyhow::Result<String> {
        self.yaml()?
            .context("one of --objstore.config-file or --objstore.config is required")
    }
}

/// The HTTP server every component runs (`/metrics`, `/-/healthy`, `/-/ready`, APIs).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct HttpServerArgs {
    /// HTTP listen address: host:port, :port (every interface), [::]:port.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub(crate) http_address: String,
    /// Time to wait for requests in flight at shutdown (accepted as Thanos'; shutdown waits
    /// for them anyway).
    #[arg(long = "http-grace-period", default_value = "2m", value_parser = parse_duration)]
    #[allow(dead_code)]
    http_grace_period: Duration,
    /// Prometheus exporter-toolkit web config (TLS and basic auth on the HTTP address).
    #[arg(long = "http.config")]
    http_config: Option<PathBuf>,
}

impl HttpServerArgs {
    /// Reads `--http.config` (the exporter-toolkit web config) and installs it for every
    /// HTTP server of the process: TLS from `tls_server_config`, basic auth from
    /// `basic_auth_users`. What Strata does not implement is refused at start (serving
    /// plaintext or open when the operator asked otherwise would be worse than not starting).
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        let Some(path) = &self.http_config else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--http.config: reading {}", path.display()))?;
        let config = web_config(&text, path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("--http.config {}", path.display()))?;
        strata_runtime::web::install(config);
        Ok(())
    }
}

/// The exporter-toolkit web config: `tls_server_config` (cert_file, key_file,
/// client_ca_file, client_auth_type, min_version) and `basic_auth_users` (user: bcrypt
/// hash). Relative file names are relative to the config file's directory, as Prometheus
/// reads them.
pub(crate) fn web_config(
    text: &str,
    base: &Path,
) -> anyhow::Result<strata_runtime::web::WebConfig> {
    let value: serde_json::Value =
        serde_norway::from_str(&expand_env_text(text)?).context("not YAML")?;
    let mut config = strata_runtime::web::WebConfig::default();
    if value.is_null() {
        return Ok(config);
    }
    let str_of = |v: &serde_json::Value, key: &str| -> Option<String> {
        v.get(key)
            .and_then(|x| x.as_str())
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
    };
    let file = |name: String| -> PathBuf {
        let p = PathBuf::from(name);
        if p.is_absolute() { p } else { base.join(p) }
    };
    if let Some(tls) = value.get("tls_server_config").filter(|v| !v.is_null()) {
        for inline in ["cert", "key", "client_ca"] {
            if str_of(tls, inline).is_some() {
                anyhow::bail!(
                    "tls_server_config.{inline} (inline PEM) is not supported; use {inline}_file"
                );
            }
        }
        let cert = str_of(tls, "cert_file");
        let key = str_of(tls, "key_file");
        if cert.is_none() || key.is_none() {
            anyhow::bail!("tls_server_config needs cert_file and key_file");
        }
        let auth = str_of(tls, "client_auth_type").unwrap_or_default();
        let client_ca = match auth.as_str() {
            "" | "NoClientCert" => None,
            "RequireAndVerifyClientCert" => {
                Some(str_of(tls, "client_ca_file").ok_or_else(|| {
                    anyhow::anyhow!(
                        "client_auth_type RequireAndVerifyClientCert needs client_ca_file"
                    )
                })?)
            }
            other => anyhow::bail!(
                "tls_server_config.client_auth_type {other} is not supported (NoClientCert or RequireAndVerifyClientCert)"
            ),
        };
        let min_version = match str_of(tls, "min_version").as_deref() {
            None | Some("TLS12") => strata_runtime::tls::TlsVersion::V1_2,
            Some("TLS13") => strata_runtime::tls::TlsVersion::V1_3,
            Some(other) => anyhow::bail!(
                "tls_server_config.min_version {other} is not supported (TLS12 or TLS13)"
            ),
        };
        let files = strata_runtime::tls::TlsFiles {
            cert: cert.map(&file),
            key: key.map(&file),
            client_ca: client_ca.map(&file),
            min_version,
        };
        config.tls = files
            .server()
            .map_err(|e| anyhow::anyhow!("tls_server_config: {e}"))?;
        for ignored in [
            "cipher_suites",
            "curve_preferences",
            "prefer_server_cipher_suites",
        ] {
            if tls.get(ignored).is_some_and(|v| !v.is_null()) {
                tracing::warn!(
                    setting = ignored,
                    "--http.config: tls_server_config setting ignored (rustls' defaults apply)"
                );
            }
        }
    }
    if let Some(users) = value.get("basic_auth_users").filter(|v| !v.is_null()) {
        let users = users
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("basic_auth_users is not a map of user: bcrypt hash"))?;
        for (user, hash) in users {
            let hash = hash
                .as_str()
                .filter(|h| h.starts_with("$2"))
                .ok_or_else(|| anyhow::anyhow!("basic_auth_users.{user}: not a bcrypt hash"))?;
            config.users.insert(user.clone(), hash.to_owned());
        }
    }
    if value
        .get("http_server_config")
        .and_then(|h| h.get("headers"))
        .is_some_and(|v| !v.is_null())
    {
        anyhow::bail!("http_server_config.headers is not supported");
    }
    Ok(config)
}

/// `$(VAR)` expanded from the environment, as in every other config Strata reads.
fn expand_env_text(text: &str) -> anyhow::Result<String> {
    strata_types::expand_env(text, |name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The gRPC server of the components that serve the Store API.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GrpcServerArgs {
    /// gRPC listen address (Store API, Info API): host:port, :port, [::]:port.
    #[arg(long = "grpc-address", default_value = "0.0.0.0:10901")]
    pub(crate) grpc_address: String,
    /// Time to wait for calls in flight at shutdown (accepted as Thanos').
    #[arg(long = "grpc-grace-period", default_value = "2m", value_parser = parse_duration)]
    #[allow(dead_code)]
    grpc_grace_period: Duration,
    #[command(flatten)]
    pub(crate) tls: GrpcServerTlsArgs,
}

/// `--grpc-client-*`: how a querier talks to its Store API endpoints.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GrpcClientArgs {
    /// Use TLS towards the endpoints.
    #[arg(long = "grpc-client-tls-secure", default_value_t = false)]
    client_secure: bool,
    /// Client certificate (PEM) presented to the endpoints (mutual TLS).
    #[arg(long = "grpc-client-tls-cert")]
    client_cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long = "grpc-client-tls-key")]
    client_key: Option<PathBuf>,
    /// CA (PEM) to verify the endpoints' certificates (default: system roots).
    #[arg(long = "grpc-client-tls-ca")]
    client_tls_ca: Option<PathBuf>,
    /// Server name to verify the endpoints' certificates against.
    #[arg(long = "grpc-client-server-name")]
    client_server_name: Option<String>,
    /// Do not verify the endpoints' certificates (chain and name), as Thanos' flag: the
    /// connection is still encrypted and the client certificate still sent. Insecure.
    #[arg(long = "grpc-client-tls-skip-verify", default_value_t = false)]
    client_skip_verify: bool,
    /// Lowest TLS version offered to the endpoints (1.2 or 1.3; 1.3 offers TLS 1.3 only).
    #[arg(long = "grpc-client-tls-min-version", default_value = "1.3", value_parser = strata_runtime::TlsVersion::parse)]
    client_min_version: strata_runtime::TlsVersion,
    /// Compression of requests to the endpoints: none or snappy (Thanos' snappy, framed).
    /// Answers compressed with snappy are decoded either way.
    #[arg(long = "grpc-compression", default_value = "none", value_parser = strata_query::endpoints::Compression::parse)]
    pub(crate) compression: strata_query::endpoints::Compression,
}

impl GrpcClientArgs {
    /// The client TLS settings (`None`: plaintext).
    pub(crate) fn tls(&self) -> anyhow::Result<Option<strata_query::endpoints::ClientTls>> {
        if !self.client_secure {
            return Ok(None);
        }
        if self.client_skip_verify {
            tracing::warn!(
                "--grpc-client-tls-skip-verify: endpoint certificates are not verified; connections are encrypted but not authenticated"
            );
        }
        let read = |p: &PathBuf, flag: &str| {
            std::fs::read(p).with_context(|| format!("{flag}: reading {}", p.display()))
        };
        let ca = self
            .client_tls_ca
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|p| read(p, "--grpc-client-tls-ca"))
            .transpose()?;
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) if !c.as_os_str().is_empty() && !k.as_os_str().is_empty() => Some((
                read(c, "--grpc-client-tls-cert")?,
                read(k, "--grpc-client-tls-key")?,
            )),
            (None, None) => None,
            (Some(c), Some(k)) if c.as_os_str().is_empty() && k.as_os_str().is_empty() => None,
            _ => anyhow::bail!(
                "--grpc-client-tls-cert and --grpc-client-tls-key must be set together"
            ),
        };
        Ok(Some(strata_query::endpoints::ClientTls {
            ca,
            identity,
            server_name: self.client_server_name.clone().filter(|s| !s.is_empty()),
            skip_verify: self.client_skip_verify,
            min_version: self.client_min_version,
        }))
    }
}

/// `--web.route-prefix` and `--web.external-prefix`: where the HTTP API is served.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WebArgs {
    /// Path prefix of the HTTP API (default: the path of --web.external-prefix).
    #[arg(long = "web.route-prefix", default_value = "")]
    route_prefix: String,
    /// Prefix of the externally reachable URL (e.g. behind a reverse proxy).
    #[arg(long = "web.external-prefix", default_value = "")]
    external_prefix: String,
}

impl WebArgs {
    /// The route prefix as a path (`""` for none, else `/x/y` without a trailing `/`).
    pub(crate) fn route_prefix(&self) -> String {
        let raw = if self.route_prefix.is_empty() {
            // Thanos: the route prefix defaults to the external prefix's path.
            let external = self.external_prefix.as_str();
            let path_start = external
                .find("://")
                .map(|i| {
                    external[i + 3..]
                        .find('/')
                        .map_or(external.len(), |j| i + 3 + j)
                })
                .unwrap_or(0);
            external.get(path_start..).unwrap_or_default()
        } else {
            self.route_prefix.as_str()
        };
        let trimmed = raw.trim_matches('/');
        if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{trimmed}")
        }
    }
}

/// `--selector.relabel-config(-file)`: which blocks a store gateway or compactor works on.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RelabelArgs {
    /// Relabel config file selecting blocks (over external labels and __block_id).
    #[arg(long = "selector.relabel-config-file")]
    relabel_config_file: Option<PathBuf>,
    /// Relabel config YAML (instead of a file).
    #[arg(long = "selector.relabel-config", allow_hyphen_values = true)]
    relabel_config: Option<String>,
}

impl RelabelArgs {
    /// The relabel YAML (empty: every block).
    pub(crate) fn yaml(&self) -> anyhow::Result<String> {
        Ok(path_or_content(
            self.relabel_config.clone(),
            self.relabel_config_file.as_deref(),
            "selector.relabel-config",
        )?
        .unwrap_or_default())
    }
}

/// `--tracing.config(-file)`: accepted so that Operator and chart argument lists start;
/// spans are not exported yet, which is logged once with the configured exporter type.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TracingArgs {
    /// Tracing config YAML (Thanos' format: type, config).
    #[arg(long = "tracing.config", allow_hyphen_values = true)]
    tracing_config: Option<String>,
    /// Tracing config file.
    #[arg(long = "tracing.config-file")]
    tracing_config_file: Option<PathBuf>,
}

impl TracingArgs {
    /// The exporter config from `--tracing.config(-file)`: `None` without one, `Err` inside
    /// when it names something Strata does not implement (logged as a warning: tracing stays
    /// off, the component starts), an error when the flags themselves are wrong.
    pub(crate) fn config(
        &self,
        component: &str,
    ) -> anyhow::Result<Option<Result<strata_runtime::trace::OtlpConfig, String>>> {
        let Some(text) = path_or_content(
            self.tracing_config.clone(),
            self.tracing_config_file.as_deref(),
            "tracing.config",
        )?
        else {
            return Ok(None);
        };
        if text.trim().is_empty() {
            return Ok(None);
        }
        let value: serde_json::Value =
            serde_norway::from_str(&text).context("--tracing.config: not YAML")?;
        Ok(Some(otlp_config(&value, component)))
    }
}

/// Thanos' tracing config of type OTLP (gRPC, plaintext) as an exporter config; why not
/// otherwise.
pub(crate) fn otlp_config(
    value: &serde_json::Value,
    component: &str,
) -> Result<strata_runtime::trace::OtlpConfig, String> {
    let kind = value.get("type").and_then(|t| t.as_str()).unwrap_or("");
    if !kind.eq_ignore_ascii_case("otlp") {
        return Err(format!(
            "exporter type {kind:?} is not supported (only OTLP is)"
        ));
    }
    let empty = serde_json::Value::Null;
    let config = value.get("config").unwrap_or(&empty);
    let text = |key: &str| -> String {
        match config.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(serde_json::Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        }
    };
    let client_type = text("client_type");
    if !(client_type.is_empty() || client_type.eq_ignore_ascii_case("grpc")) {
        return Err(format!(
            "OTLP client_type {client_type:?} is not supported (only grpc is)"
        ));
    }
    if text("insecure") != "true" {
        return Err(
            "OTLP over TLS is not supported: set insecure: true (plaintext to an in-cluster collector)"
                .into(),
        );
    }
    let endpoint = match text("endpoint") {
        e if e.is_empty() => "localhost:4317".to_owned(),
        e => e
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned(),
    };
    let timeout = match text("timeout") {
        t if t.is_empty() || t == "0s" || t == "0" => Duration::from_secs(10),
        t => parse_duration(&t).map_err(|e| format!("OTLP timeout: {e}"))?,
    };
    let param = match text("sampler_param") {
        p if p.is_empty() => 1.0,
        p => p
            .parse::<f64>()
            .map_err(|e| format!("OTLP sampler_param {p:?}: {e}"))?,
    };
    let sampler = strata_runtime::trace::SamplerKind::parse(&text("sampler_type"), param)?;
    let headers = config
        .get("headers")
        .and_then(|h| h.as_object())
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let service_name = match text("service_name") {
        s if s.is_empty() => format!("strata-{component}"),
        s => s,
    };
    Ok(strata_runtime::trace::OtlpConfig {
        endpoint,
        service_name,
        timeout,
        sampler,
        headers,
    })
}

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
    /// TLS 1.2 cipher suites (Go names, comma-separated) the server offers; TLS 1.3 suites
    /// are not configurable, as in Go. Accepted; rustls' safe defaults are used.
    #[arg(long = "grpc-server-tls-ciphers")]
    ciphers: Option<String>,
    /// Key exchange curves (Go names: X25519, CurveP256, CurveP384, CurveP521).
    /// Accepted; rustls' defaults (X25519, P-256, P-384) are used.
    #[arg(long = "grpc-server-tls-curves")]
    curves: Option<String>,
}

impl GrpcServerTlsArgs {
    pub(crate) fn files(&self) -> strata_runtime::TlsFiles {
        for (flag, value) in [
            ("--grpc-server-tls-ciphers", &self.ciphers),
            ("--grpc-server-tls-curves", &self.curves),
        ] {
            if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                tracing::info!(
                    flag,
                    value = v,
                    "accepted; the TLS library's safe defaults are used"
                );
            }
        }
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
/// A `log-queries-longer-than` value: 0 is off, a negative duration logs every query.
pub(crate) fn slow_query_threshold(value: &str) -> anyhow::Result<Option<Duration>> {
    Ok(match value.strip_prefix('-') {
        Some(_) => Some(Duration::ZERO),
        None => Some(parse_duration(value).map_err(anyhow::Error::msg)?).filter(|d| !d.is_zero()),
    })
}

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
    fn route_prefixes() {
        let web = |route: &str, external: &str| WebArgs {
            route_prefix: route.into(),
            external_prefix: external.into(),
        };
        assert_eq!(web("", "").route_prefix(), "");
        assert_eq!(web("/", "").route_prefix(), "");
        assert_eq!(web("/thanos/", "").route_prefix(), "/thanos");
        assert_eq!(web("", "https://example.com/q/").route_prefix(), "/q");
        assert_eq!(web("", "https://example.com").route_prefix(), "");
        assert_eq!(web("a", "/b").route_prefix(), "/a");
    }

    #[test]
    fn path_or_content_refuses_both_and_expands_env() {
        let dir = std::env::temp_dir().join(format!("strata-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yml");
        std::fs::write(&file, "a: $(HOME)\n").unwrap();
        assert!(path_or_content(Some("x".into()), Some(&file), "objstore.config").is_err());
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(
            path_or_content(None, Some(&file), "objstore.config").unwrap(),
            Some(format!("a: {home}\n"))
        );
        let err = path_or_content(
            Some("k: $(STRATA_SURELY_UNSET_VARIABLE)".into()),
            None,
            "objstore.config",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("STRATA_SURELY_UNSET_VARIABLE"),
            "{err}"
        );
        assert_eq!(path_or_content(None, None, "x").unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

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

    #[test]
    fn thanos_otlp_tracing_configs() {
        let parse = |yaml: &str| {
            let value: serde_json::Value = serde_norway::from_str(yaml).unwrap();
            otlp_config(&value, "store")
        };
        // Thanos' documented OTLP example, gRPC and plaintext.
        let config = parse(
            "type: OTLP\nconfig:\n  client_type: grpc\n  insecure: true\n  endpoint: otel-collector.observability:4317\n  sampler_type: traceidratiobased\n  sampler_param: \"0.1\"\n  headers:\n    x-scope-orgid: team-a\n",
        )
        .unwrap();
        assert_eq!(config.endpoint, "otel-collector.observability:4317");
        assert_eq!(config.service_name, "strata-store");
        assert_eq!(
            config.sampler,
            strata_runtime::trace::SamplerKind::Ratio(0.1)
        );
        assert_eq!(
            config.headers,
            vec![("x-scope-orgid".to_owned(), "team-a".to_owned())]
        );
        // What Strata does not implement is a reason, never a start-up error.
        for (yaml, reason) in [
            ("type: JAEGER\nconfig: {}\n", "JAEGER"),
            (
                "type: otlp\nconfig:\n  client_type: http\n  insecure: true\n",
                "client_type",
            ),
            ("type: OTLP\nconfig:\n  endpoint: c:4317\n", "TLS"),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(reason), "{yaml}: {err}");
        }
    }
}
