//! `--prometheus.http-client`: how the sidecar authenticates to Prometheus and which
//! certificates it trusts, in the YAML of Thanos' (and Prometheus') HTTP client settings:
//!
//! ```yaml
//! basic_auth: {username: u, password: p}   # or password_file
//! bearer_token: t                          # or bearer_token_file
//! tls_config: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem,
//!              server_name: name, insecure_skip_verify: false}
//! ```
//!
//! As in Prometheus, `ca_file` replaces the system roots rather than adding to them, and a
//! `*_file` is read once, when the sidecar starts. `proxy_url` and `transport_config` are
//! refused (not supported) rather than ignored.

use std::path::{Path, PathBuf};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::Deserialize;

/// A bad `--prometheus.http-client` setting.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// The YAML did not parse, or has a field this sidecar does not support.
    #[error("--prometheus.http-client: {0}")]
    Config(String),
    /// A file it names could not be read.
    #[error("--prometheus.http-client: reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The settings, as parsed.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpClientConfig {
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// A bearer token.
    #[serde(default)]
    pub bearer_token: Option<strata_types::Secret>,
    /// A file holding a bearer token.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// TLS towards Prometheus.
    #[serde(default)]
    pub tls_config: TlsConfig,
}

/// `basic_auth`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: Option<strata_types::Secret>,
    /// A file holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// `tls_config`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificates to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Client key (with `cert_file`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accepted when it is empty; a different server name is not supported.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Skip verifying Prometheus' certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl HttpClientConfig {
    /// Parses the YAML; an empty text is the default (no settings).
    pub fn from_yaml(text: &str) -> Result<HttpClientConfig, HttpClientError> {
        if text.trim().is_empty() {
            return Ok(HttpClientConfig::default());
        }
        let config: HttpClientConfig =
            serde_norway::from_str(text).map_err(|e| HttpClientError::Config(e.to_string()))?;
        if config.basic_auth.is_some()
            && (config.bearer_token.is_some() || config.bearer_token_file.is_some())
        {
            return Err(HttpClientError::Config(
                "at most one of basic_auth, bearer_token and bearer_token_file".into(),
            ));
        }
        if config.bearer_token.is_some() && config.bearer_token_file.is_some() {
            return Err(HttpClientError::Config(
                "at most one of bearer_token and bearer_token_file".into(),
            ));
        }
        if let Some(auth) = &config.basic_auth
            && auth.password.is_some()
            && auth.password_file.is_some()
        {
            return Err(HttpClientError::Config(
                "basic_auth: at most one of password and password_file".into(),
            ));
        }
        let tls = &config.tls_config;
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(HttpClientError::Config(
                "tls_config: cert_file and key_file go together".into(),
            ));
        }
        if tls.server_name.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(HttpClientError::Config(
                "tls_config: server_name is not supported".into(),
            ));
        }
        Ok(config)
    }

    /// Applies the settings to a client builder, reading the files they name.
    pub fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, HttpClientError> {
        let mut headers = HeaderMap::new();
        if let Some(value) = self.authorization()? {
            let mut value = HeaderValue::from_str(&value)
                .map_err(|e| HttpClientError::Config(format!("credentials: {e}")))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        if !headers.is_empty() {
            builder = builder.default_headers(headers);
        }
        let tls = &self.tls_config;
        if let Some(ca) = &tls.ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?)
                .map_err(|e| HttpClientError::Config(format!("{}: {e}", ca.display())))?;
            builder = builder.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend_from_slice(&read(key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| HttpClientError::Config(format!("{}: {e}", cert.display())))?;
            builder = builder.identity(identity);
        }
        if tls.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        Ok(builder)
    }

    /// The `Authorization` header value, if any.
    fn authorization(&self) -> Result<Option<String>, HttpClientError> {
        if let Some(auth) = &self.basic_auth {
            let password = match (&auth.password, &auth.password_file) {
                (Some(p), _) => p.expose().to_owned(),
                (None, Some(file)) => read_trimmed(file)?,
                (None, None) => String::new(),
            };
            let pair = format!("{}:{password}", auth.username);
            return Ok(Some(format!("Basic {}", base64(pair.as_bytes()))));
        }
        let token = match (&self.bearer_token, &self.bearer_token_file) {
            (Some(t), _) => t.expose().to_owned(),
            (None, Some(file)) => read_trimmed(file)?,
            (None, None) => return Ok(None),
        };
        Ok(Some(format!("Bearer {token}")))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, HttpClientError> {
    std::fs::read(path).map_err(|source| HttpClientError::Read {
        path: path.to_owned(),
        source,
    })
}

/// A secret file's text without surrounding whitespace (as Prometheus reads them).
fn read_trimmed(path: &Path) -> Result<String, HttpClientError> {
    let bytes = read(path)?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
}

/// Standard base64 with padding (RFC 4648), for the basic-auth header.
fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn parses_thanos_http_client_yaml() {
        let config = HttpClientConfig::from_yaml(
            "basic_auth:\n  username: strata\n  password: secret\ntls_config:\n  ca_file: /ca.pem\n  insecure_skip_verify: false\n",
        )
        .unwrap();
        assert_eq!(
            config.basic_auth,
            Some(BasicAuth {
                username: "strata".into(),
                password: Some("secret".into()),
                password_file: None,
            })
        );
        assert_eq!(config.tls_config.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(
            config.authorization().unwrap().as_deref(),
            Some("Basic c3RyYXRhOnNlY3JldA==")
        );
        assert_eq!(
            HttpClientConfig::from_yaml("").unwrap(),
            HttpClientConfig::default()
        );
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret"), "{debug}");
        let bearer = HttpClientConfig::from_yaml("bearer_token: t0ken\n").unwrap();
        let debug = format!("{bearer:?}");
        assert!(
            !debug.contains("t0ken") && debug.contains("<redacted>"),
            "{debug}"
        );
    }

    #[test]
    fn refuses_what_it_does_not_support_or_contradicts_itself() {
        for text in [
            "proxy_url: http://proxy:3128\n",
            "transport_config:\n  dial_timeout: 5s\n",
            "bearer_token: a\nbearer_token_file: /t\n",
            "basic_auth: {username: u}\nbearer_token: t\n",
            "tls_config: {cert_file: /c.pem}\n",
            "tls_config: {server_name: prometheus.example}\n",
            "basic_auth: [1, 2]\n",
        ] {
            assert!(HttpClientConfig::from_yaml(text).is_err(), "{text}");
        }
    }
}
