//! Where the querier's endpoints come from, as in Thanos:
//!
//! - `--endpoint` / `--store` and `--endpoint-strict`: `host:port`; `dns+host:port` (every
//!   A/AAAA record of `host`); `dnssrv+_grpc._tcp.name` (every SRV record of the name, each
//!   target's A/AAAA records with the record's port); `dnssrvnoa+_grpc._tcp.name` (the SRV
//!   targets as they are, `target:port`);
//! - `--endpoint.sd-files`: Prometheus file-SD files (`- targets: [host:port, …]`, YAML or
//!   JSON);
//! - `--endpoint.sd-config(-file)`: Thanos' endpoint config, with TLS per endpoint:
//!
//! ```yaml
//! default_client_config:          # for endpoints without their own client_config
//!   tls_config: {enabled: true, cert_file: …, key_file: …, ca_file: …}
//!   server_name: …
//! endpoints:
//!   - address: sidecar.cluster-b.example.com:443
//!     strict: true                # queried even when its Info check fails
//!     client_config: {tls_config: {ca_file: …}}
//! ```
//!
//! Static endpoints use the `--grpc-client-tls-*` settings. Files are re-read when they
//! change and with DNS every `--store.sd-dns-interval`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::endpoints::{ClientTls, Compression};

/// One endpoint to use: its address, how to reach it, and whether it is strict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub address: String,
    /// Client TLS (`None`: plaintext).
    pub tls: Option<Arc<ClientTls>>,
    /// Strict endpoints are queried even while their Info check fails, and never hidden.
    pub strict: bool,
    /// How requests are compressed (`--grpc-compression`, or the SD config's
    /// `compression`).
    pub compression: Compression,
}

/// Thanos' `--endpoint.sd-config` content.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdConfig {
    /// TLS and server name for endpoints without their own.
    #[serde(default)]
    pub default_client_config: Option<ClientConfig>,
    /// The endpoints.
    #[serde(default)]
    pub endpoints: Vec<SdEndpoint>,
}

/// One endpoint of an [`SdConfig`].
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdEndpoint {
    /// `host:port` or `dns+host:port`.
    pub address: String,
    /// Queried even while unhealthy.
    #[serde(default)]
    pub strict: bool,
    /// Thanos' endpoint groups (one logical endpoint over its resolved addresses); Strata
    /// uses each address as an endpoint of its own.
    #[serde(default)]
    pub group: bool,
    /// Accepted for compatibility; gRPC service configs are not applied.
    #[serde(default)]
    pub service_config: Option<serde_norway::Value>,
    /// TLS and server name for this endpoint.
    #[serde(default)]
    pub client_config: Option<ClientConfig>,
}

/// How to connect to an endpoint.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// TLS settings.
    #[serde(default)]
    pub tls_config: Option<TlsConfig>,
    /// Name to verify the endpoint's certificate against.
    #[serde(default)]
    pub server_name: String,
    /// `none` or `snappy` (empty: the querier's `--grpc-compression`).
    #[serde(default)]
    pub compression: String,
}

/// TLS settings of a [`ClientConfig`]; any file set implies `enabled`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Use TLS.
    #[serde(default)]
    pub enabled: bool,
    /// Not supported: a configuration that sets it is refused.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Client certificate (PEM).
    #[serde(default)]
    pub cert_file: String,
    /// Client key (PEM).
    #[serde(default)]
    pub key_file: String,
    /// CA to verify the endpoint (PEM; system roots when empty).
    #[serde(default)]
    pub ca_file: String,
    /// Lowest TLS version offered: 1.2 or 1.3 (default 1.3, as Thanos).
    #[serde(default)]
    pub min_version: String,
}

/// An endpoint config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SdConfigError {
    /// The YAML does not parse.
    #[error("endpoint SD config {source_name}: {message}")]
    Parse {
        /// File name or `--endpoint.sd-config`.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// A file it names cannot be read, or a setting is not supported.
    #[error("endpoint SD config {source_name}: {message}")]
    Invalid {
        /// File name or `--endpoint.sd-config`.
        source_name: String,
        /// What is wrong.
        message: String,
    },
}

impl ClientConfig {
    /// The client TLS this config asks for (`None`: plaintext), with files read.
    fn client_tls(&self, source_name: &str) -> Result<Option<ClientTls>, SdConfigError> {
        let invalid = |message: String| SdConfigError::Invalid {
            source_name: source_name.to_owned(),
            message,
        };
        let Some(tls) = &self.tls_config else {
            return Ok(None);
        };
        let enabled = tls.enabled
            || !tls.cert_file.is_empty()
            || !tls.key_file.is_empty()
            || !tls.ca_file.is_empty();
        if !enabled {
            return Ok(None);
        }
        let min_version = if tls.min_version.is_empty() {
            strata_runtime::TlsVersion::default()
        } else {
            strata_runtime::TlsVersion::parse(&tls.min_version)
                .map_err(|e| invalid(format!("tls_config.min_version: {e}")))?
        };
        let read = |path: &str, what: &str| {
            std::fs::read(path).map_err(|e| invalid(format!("tls_config.{what} {path}: {e}")))
        };
        let ca = (!tls.ca_file.is_empty())
            .then(|| read(&tls.ca_file, "ca_file"))
            .transpose()?;
        let identity = match (tls.cert_file.is_empty(), tls.key_file.is_empty()) {
            (true, true) => None,
            (false, false) => Some((
                read(&tls.cert_file, "cert_file")?,
                read(&tls.key_file, "key_file")?,
            )),
            _ => {
                return Err(invalid(
                    "tls_config.cert_file and key_file must be set together".into(),
                ));
            }
        };
        Ok(Some(ClientTls {
            ca,
            identity,
            server_name: (!self.server_name.is_empty()).then(|| self.server_name.clone()),
            skip_verify: tls.insecure_skip_verify,
            min_version,
        }))
    }
}

/// An endpoint config and what it came from.
#[derive(Debug, Clone)]
pub enum SdConfigSource {
    /// `--endpoint.sd-config`: the YAML itself.
    Inline(String),
    /// `--endpoint.sd-config-file`.
    File(PathBuf),
}

impl SdConfigSource {
    fn name(&self) -> String {
        match self {
            SdConfigSource::Inline(_) => "--endpoint.sd-config".to_owned(),
            SdConfigSource::File(path) => path.display().to_string(),
        }
    }

    /// Reads and parses the config into targets whose `address` is the configured spec
    /// (`dns+` names not yet resolved), with their TLS files read.
    pub fn load(&self) -> Result<Vec<Target>, SdConfigError> {
        let name = self.name();
        let text = match self {
            SdConfigSource::Inline(text) => text.clone(),
            SdConfigSource::File(path) => {
                std::fs::read_to_string(path).map_err(|e| SdConfigError::Invalid {
                    source_name: name.clone(),
                    message: e.to_string(),
                })?
            }
        };
        let config: SdConfig = if text.trim().is_empty() {
            SdConfig::default()
        } else {
            serde_norway::from_str(&text).map_err(|e| SdConfigError::Parse {
                source_name: name.clone(),
                message: e.to_string(),
            })?
        };
        let default_tls = match &config.default_client_config {
            Some(c) => c.client_tls(&name)?.map(Arc::new),
            None => None,
        };
        let compression_of = |c: Option<&ClientConfig>| {
            Compression::parse(c.map_or("", |c| c.compression.as_str())).map_err(|message| {
                SdConfigError::Invalid {
                    source_name: name.clone(),
                    message,
                }
            })
        };
        let mut out = Vec::with_capacity(config.endpoints.len());
        for e in &config.endpoints {
            if e.address.is_empty() {
                return Err(SdConfigError::Invalid {
                    source_name: name.clone(),
                    message: "an endpoint without address".into(),
                });
            }
            if e.group {
                tracing::warn!(endpoint = %e.address, "endpoint groups are not supported; each address is used as an endpoint");
            }
            let tls = match &e.client_config {
                Some(c) => c.client_tls(&name)?.map(Arc::new),
                None => default_tls.clone(),
            };
            let compression = compression_of(
                e.client_config
                    .as_ref()
                    .or(config.default_client_config.as_ref()),
            )?;
            out.push(Target {
                address: e.address.clone(),
                tls,
                strict: e.strict,
                compression,
            });
        }
        Ok(out)
    }

    fn stamp(&self) -> Option<std::time::SystemTime> {
        match self {
            SdConfigSource::Inline(_) => None,
            SdConfigSource::File(path) => std::fs::metadata(path).and_then(|m| m.modified()).ok(),
        }
    }
}

/// Every source of endpoints.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// The DNS server for SRV lookups (`None`: the system's, from `/etc/resolv.conf`).
    pub dns_server: Option<std::net::SocketAddr>,
    /// `--endpoint` values.
    pub endpoints: Vec<String>,
    /// `--endpoint-strict` values.
    pub strict_endpoints: Vec<String>,
    /// `--endpoint.sd-files` paths.
    pub sd_files: Vec<PathBuf>,
    /// `--endpoint.sd-config(-file)`.
    pub sd_config: Option<SdConfigSource>,
    /// `--grpc-client-tls-*`, for `--endpoint` and SD-file endpoints.
    pub tls: Option<Arc<ClientTls>>,
    /// `--grpc-compression`, for every endpoint whose SD config does not say.
    pub compression: Compression,
    /// `thanos_query_store_apis_dns_{lookups,failures}_total`.
    pub dns_metrics: DnsMetrics,
}

/// Thanos' DNS provider counters of the querier's endpoint names.
#[derive(Debug, Clone, Default)]
pub struct DnsMetrics {
    lookups: prometheus_client::metrics::counter::Counter,
    failures: prometheus_client::metrics::counter::Counter,
}

impl DnsMetrics {
    /// Registers `thanos_query_store_apis_dns_lookups_total` and `…_failures_total`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "thanos_query_store_apis_dns_lookups",
            "The number of DNS lookups resolutions attempts",
            self.lookups.clone(),
        );
        registry.register(
            "thanos_query_store_apis_dns_failures",
            "The number of DNS lookup failures",
            self.failures.clone(),
        );
    }
}

#[derive(serde::Deserialize)]
struct FileSdGroup {
    #[serde(default)]
    targets: Vec<String>,
}

/// A resolver for SRV records: the system's, or one asking `server` only.
fn srv_resolver(
    server: Option<std::net::SocketAddr>,
) -> Result<hickory_resolver::TokioResolver, String> {
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
    use hickory_resolver::name_server::TokioConnectionProvider;
    let mut builder = match server {
        Some(addr) => hickory_resolver::Resolver::builder_with_config(
            ResolverConfig::from_parts(
                None,
                Vec::new(),
                NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true),
            ),
            TokioConnectionProvider::default(),
        ),
        None => hickory_resolver::Resolver::builder_tokio().map_err(|e| e.to_string())?,
    };
    builder.options_mut().timeout = std::time::Duration::from_secs(5);
    builder.options_mut().attempts = 2;
    Ok(builder.build())
}

/// `(target, port)` of every SRV record of `name`.
async fn srv_records(
    name: &str,
    server: Option<std::net::SocketAddr>,
) -> Result<Vec<(String, u16)>, String> {
    let resolver = srv_resolver(server)?;
    let lookup = resolver.srv_lookup(name).await.map_err(|e| e.to_string())?;
    Ok(lookup
        .iter()
        .map(|srv| {
            let target = srv.target().to_utf8();
            (target.trim_end_matches('.').to_owned(), srv.port())
        })
        .collect())
}

async fn expand(
    spec: &str,
    out: &mut Vec<String>,
    dns_server: Option<std::net::SocketAddr>,
    metrics: &DnsMetrics,
) {
    let before = out.len();
    let uses_dns = ["dns+", "dnssrv+", "dnssrvnoa+"]
        .iter()
        .any(|p| spec.starts_with(p));
    expand_one(spec, out, dns_server).await;
    if uses_dns {
        metrics.lookups.inc();
        if out.len() == before {
            metrics.failures.inc();
        }
    }
}

async fn expand_one(spec: &str, out: &mut Vec<String>, dns_server: Option<std::net::SocketAddr>) {
    if let Some(name) = spec.strip_prefix("dnssrvnoa+") {
        match srv_records(name, dns_server).await {
            Ok(records) => out.extend(records.into_iter().map(|(t, p)| format!("{t}:{p}"))),
            Err(e) => tracing::warn!(endpoint = %spec, error = %e, "DNS SRV lookup failed"),
        }
    } else if let Some(name) = spec.strip_prefix("dnssrv+") {
        match srv_records(name, dns_server).await {
            Ok(records) => {
                for (target, port) in records {
                    match tokio::net::lookup_host((target.as_str(), port)).await {
                        Ok(addrs) => out.extend(addrs.map(|a| a.to_string())),
                        Err(e) => {
                            tracing::warn!(endpoint = %spec, target = %target, error = %e, "DNS lookup of an SRV target failed")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(endpoint = %spec, error = %e, "DNS SRV lookup failed"),
        }
    } else if let Some(name) = spec.strip_prefix("dns+") {
        match tokio::net::lookup_host(name).await {
            Ok(addrs) => out.extend(addrs.map(|a| a.to_string())),
            Err(e) => tracing::warn!(endpoint = %spec, error = %e, "DNS lookup failed"),
        }
    } else {
        out.push(spec.to_owned());
    }
}

fn read_sd_file(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => match serde_norway::from_str::<Vec<FileSdGroup>>(&text) {
            Ok(groups) => groups.into_iter().flat_map(|g| g.targets).collect(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "file SD parse failed");
                Vec::new()
            }
        },
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "file SD read failed");
            Vec::new()
        }
    }
}

impl Discovery {
    /// Checks the endpoint config once, so a broken one fails the start.
    pub fn check(&self) -> Result<(), SdConfigError> {
        if let Some(config) = &self.sd_config {
            config.load()?;
        }
        Ok(())
    }

    /// The endpoints to use now, one per address (the first source naming an address wins:
    /// strict, then the SD config, then `--endpoint`, then SD files). Unresolvable names and
    /// unreadable files are logged and skipped.
    pub async fn resolve(&self) -> Vec<Target> {
        let mut out: Vec<Target> = Vec::new();
        let flag_compression = self.compression;
        let mut push = |addresses: Vec<String>,
                        tls: &Option<Arc<ClientTls>>,
                        strict: bool,
                        compression: Compression| {
            for address in addresses {
                if !out.iter().any(|t| t.address == address) {
                    out.push(Target {
                        address,
                        tls: tls.clone(),
                        strict,
                        compression: match compression {
                            Compression::None => flag_compression,
                            c => c,
                        },
                    });
                }
            }
        };
        for spec in &self.strict_endpoints {
            let mut addresses = Vec::new();
            expand(spec, &mut addresses, self.dns_server, &self.dns_metrics).await;
            push(addresses, &self.tls, true, Compression::None);
        }
        if let Some(config) = &self.sd_config {
            match config.load() {
                Ok(entries) => {
                    for entry in entries {
                        let mut addresses = Vec::new();
                        expand(
                            &entry.address,
                            &mut addresses,
                            self.dns_server,
                            &self.dns_metrics,
                        )
                        .await;
                        push(addresses, &entry.tls, entry.strict, entry.compression);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "endpoint SD config not usable; its endpoints are left out")
                }
            }
        }
        for spec in &self.endpoints {
            let mut addresses = Vec::new();
            expand(spec, &mut addresses, self.dns_server, &self.dns_metrics).await;
            push(addresses, &self.tls, false, Compression::None);
        }
        for path in &self.sd_files {
            push(read_sd_file(path), &self.tls, false, Compression::None);
        }
        out.sort_by(|a, b| a.address.cmp(&b.address));
        out
    }

    /// Modification times of the files, to notice changes.
    pub fn file_stamps(&self) -> Vec<Option<std::time::SystemTime>> {
        let mut stamps: Vec<_> = self
            .sd_files
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect();
        if let Some(config) = &self.sd_config {
            stamps.push(config.stamp());
        }
        stamps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_config_gives_each_endpoint_its_tls() {
        let dir = std::env::temp_dir().join(format!("strata-sd-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let ca = dir.join("ca.pem");
        let _ = std::fs::write(&ca, b"CA PEM");
        let yaml = format!(
            "default_client_config:\n  tls_config:\n    ca_file: {ca}\n  server_name: default.example\nendpoints:\n  - address: a:10901\n  - address: b:10901\n    strict: true\n    client_config:\n      tls_config:\n        enabled: false\n  - address: c:10901\n    client_config:\n      server_name: c.example\n      tls_config:\n        enabled: true\n",
            ca = ca.display()
        );
        let loaded = SdConfigSource::Inline(yaml).load().unwrap();
        assert_eq!(loaded.len(), 3);
        assert_eq!(
            (loaded[0].address.as_str(), loaded[0].strict),
            ("a:10901", false)
        );
        let a_tls = loaded[0].tls.as_ref().unwrap();
        assert_eq!(a_tls.ca.as_deref(), Some(&b"CA PEM"[..]));
        assert_eq!(a_tls.server_name.as_deref(), Some("default.example"));
        assert!(
            loaded[1].tls.is_none() && loaded[1].strict,
            "b: plaintext, strict"
        );
        let c_tls = loaded[2].tls.as_ref().unwrap();
        assert!(c_tls.ca.is_none());
        assert_eq!(c_tls.server_name.as_deref(), Some("c.example"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A DNS server answering every query with SRV records `(port, target)`.
    async fn fake_srv_server(records: Vec<(u16, &'static str)>) -> std::net::SocketAddr {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let query = &buf[..n];
                // Question: the name's labels up to the zero byte, then type and class.
                let mut end = 12;
                while end < query.len() && query[end] != 0 {
                    end += usize::from(query[end]) + 1;
                }
                let question = &query[12..(end + 5).min(query.len())];
                let mut out = Vec::new();
                out.extend_from_slice(&query[..2]);
                out.extend_from_slice(&[0x85, 0x80, 0, 1]);
                out.extend_from_slice(&(records.len() as u16).to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 0]);
                out.extend_from_slice(question);
                for (port, target) in &records {
                    let mut rdata = vec![0, 0, 0, 0];
                    rdata.extend_from_slice(&port.to_be_bytes());
                    for label in target.split('.').filter(|l| !l.is_empty()) {
                        rdata.push(label.len() as u8);
                        rdata.extend_from_slice(label.as_bytes());
                    }
                    rdata.push(0);
                    out.extend_from_slice(&[0xc0, 0x0c, 0, 33, 0, 1, 0, 0, 0, 60]);
                    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                    out.extend_from_slice(&rdata);
                }
                let _ = socket.send_to(&out, peer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn dnssrv_names_resolve_through_srv_records() {
        let server = fake_srv_server(vec![(10901, "localhost."), (10905, "localhost.")]).await;
        let discovery = Discovery {
            endpoints: vec![
                "dnssrv+_grpc._tcp.store.example.".into(),
                "dnssrvnoa+_grpc._tcp.store.example.".into(),
            ],
            dns_server: Some(server),
            ..Discovery::default()
        };
        let addresses: Vec<String> = discovery
            .resolve()
            .await
            .into_iter()
            .map(|t| t.address)
            .collect();
        // dnssrv+: each target resolved (localhost: 127.0.0.1, maybe ::1) with the port;
        // dnssrvnoa+: the targets as named.
        assert!(
            addresses.contains(&"127.0.0.1:10901".to_owned()),
            "{addresses:?}"
        );
        assert!(
            addresses.contains(&"127.0.0.1:10905".to_owned()),
            "{addresses:?}"
        );
        assert!(
            addresses.contains(&"localhost:10901".to_owned()),
            "{addresses:?}"
        );
        assert!(
            addresses.contains(&"localhost:10905".to_owned()),
            "{addresses:?}"
        );
        // Thanos' counters: two names looked up, none failed; a name that does not
        // resolve is a failure.
        assert_eq!(discovery.dns_metrics.lookups.get(), 2);
        assert_eq!(discovery.dns_metrics.failures.get(), 0);
        let missing = Discovery {
            endpoints: vec!["dns+name.that.does.not.exist.invalid:10901".into()],
            ..Discovery::default()
        };
        assert!(missing.resolve().await.is_empty());
        assert_eq!(missing.dns_metrics.lookups.get(), 1);
        assert_eq!(missing.dns_metrics.failures.get(), 1);
    }

    #[test]
    fn bad_sd_configs_are_refused() {
        let load = |y: &str| SdConfigSource::Inline(y.to_owned()).load();
        assert!(
            load("endpoints:\n  - adress: a:1\n").is_err(),
            "misspelled field"
        );
        let insecure = load("endpoints:\n  - address: a:1\n    client_config:\n      tls_config:\n        insecure_skip_verify: true\n        enabled: true\n").unwrap();
        assert!(insecure[0].tls.as_ref().is_some_and(|t| t.skip_verify));
        // compression: snappy per endpoint, or from default_client_config; others refused.
        let snappy = load("default_client_config:\n  compression: snappy\nendpoints:\n  - address: a:1\n  - address: b:1\n    client_config:\n      compression: none\n").unwrap();
        assert_eq!(snappy[0].compression, Compression::Snappy);
        assert_eq!(snappy[1].compression, Compression::None);
        assert!(
            load("endpoints:\n  - address: a:1\n    client_config:\n      compression: gzip\n")
                .is_err()
        );
        let tls12 = load("endpoints:\n  - address: a:1\n    client_config:\n      tls_config:\n        enabled: true\n        min_version: \"1.2\"\n").unwrap();
        assert!(
            tls12[0]
                .tls
                .as_ref()
                .is_some_and(|t| t.min_version == strata_runtime::TlsVersion::V1_2)
        );
        assert!(load("endpoints:\n  - address: a:1\n    client_config:\n      tls_config:\n        enabled: true\n        min_version: \"1.0\"\n").is_err());
        assert!(
            load("endpoints:\n  - address: a:1\n    client_config:\n      tls_config:\n        cert_file: /nonexistent\n        key_file: /nonexistent\n")
                .is_err()
        );
        assert!(load("endpoints:\n  - address: ''\n").is_err());
        assert_eq!(load("").unwrap().len(), 0);
    }
}
