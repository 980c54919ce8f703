//! The Store API endpoints the querier fans out to: static addresses, each checked with the
//! Info API every few seconds. An endpoint whose Info call fails is unhealthy and left out
//! of queries until it answers again.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use strata_storepb::convert::labels_from_proto;
use strata_storepb::info::InfoRequest;
use strata_storepb::info::info_client::InfoClient;
use strata_storepb::store_client::StoreClient;
use strata_types::Labels;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};

/// What an endpoint said about itself in its last successful Info call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    /// `ComponentType` (store, sidecar, query, …).
    pub component: String,
    /// External label sets.
    pub label_sets: Vec<Labels>,
    /// First timestamp served (ms).
    pub min_time: i64,
    /// Last timestamp served (ms).
    pub max_time: i64,
}

#[derive(Debug, Clone, Default)]
struct State {
    info: Option<EndpointInfo>,
    healthy: bool,
    last_check: Option<Instant>,
    last_error: Option<String>,
}

/// Client TLS for endpoints (`--grpc-client-tls-*`): CA to trust (system roots when
/// absent), client certificate for mutual TLS, and server name override.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// CA certificates (PEM).
    pub ca: Option<Vec<u8>>,
    /// Client certificate and key (PEM).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to verify the server certificate against (default: the address' host).
    pub server_name: Option<String>,
}

impl ClientTls {
    fn config(&self, address: &str) -> tonic::transport::ClientTlsConfig {
        let mut config = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(tonic::transport::Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        let host = address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        config.domain_name(self.server_name.clone().unwrap_or_else(|| host.to_owned()))
    }
}

/// One Store API endpoint.
#[derive(Debug)]
pub struct Endpoint {
    address: String,
    channel: Channel,
    state: RwLock<State>,
}

impl Endpoint {
    /// An endpoint at `address` (`host:port`); connects lazily.
    pub fn new(
        address: &str,
        tls: Option<&ClientTls>,
    ) -> Result<Endpoint, tonic::transport::Error> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = TonicEndpoint::from_shared(format!("{scheme}://{address}"))?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.config(address))?;
        }
        let channel = endpoint
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(Endpoint {
            address: address.to_owned(),
            channel,
            state: RwLock::new(State::default()),
        })
    }

    /// The configured address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A Store API client on the shared connection.
    pub fn store_client(&self) -> StoreClient<Channel> {
        StoreClient::new(self.channel.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    /// Whether the last Info call succeeded.
    pub fn is_healthy(&self) -> bool {
        self.state.read().map(|s| s.healthy).unwrap_or(false)
    }

    /// The last Info answer.
    pub fn info(&self) -> Option<EndpointInfo> {
        self.state.read().ok().and_then(|s| s.info.clone())
    }

    /// Last check time and error, for `/api/v1/stores`.
    pub fn status(&self) -> (Option<Instant>, Option<String>) {
        self.state
            .read()
            .map(|s| (s.last_check, s.last_error.clone()))
            .unwrap_or((None, None))
    }

    /// Calls Info with `timeout` and records the outcome.
    pub async fn check(&self, timeout: Duration) {
        let mut client = InfoClient::new(self.channel.clone());
        let result = tokio::time::timeout(timeout, client.info(InfoRequest {})).await;
        let outcome = match result {
            Err(_) => Err(format!("info call timed out after {timeout:?}")),
            Ok(Err(status)) => Err(status_text(&status)),
            Ok(Ok(resp)) => {
                let resp = resp.into_inner();
                let (min_time, max_time) = resp
                    .store
                    .as_ref()
                    .map_or((i64::MIN, i64::MAX), |s| (s.min_time, s.max_time));
                if resp.store.is_none() {
                    Err("endpoint does not serve the Store API".to_owned())
                } else {
                    Ok(EndpointInfo {
                        component: resp.component_type,
                        label_sets: resp
                            .label_sets
                            .iter()
                            .map(|s| labels_from_proto(&s.labels))
                            .collect(),
                        min_time,
                        max_time,
                    })
                }
            }
        };
        if let Ok(mut state) = self.state.write() {
            state.last_check = Some(Instant::now());
            match outcome {
                Ok(info) => {
                    if !state.healthy {
                        tracing::info!(endpoint = %self.address, component = %info.component, "endpoint healthy");
                    }
                    state.info = Some(info);
                    state.healthy = true;
                    state.last_error = None;
                }
                Err(e) => {
                    // Logged when the endpoint turns unhealthy, and whenever the reason
                    // changes (so an endpoint that never came up says why).
                    if state.healthy || state.last_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!(endpoint = %self.address, error = %e, "endpoint unhealthy");
                    }
                    state.healthy = false;
                    state.last_error = Some(e);
                }
            }
        }
    }
}

/// A gRPC status with its whole cause chain: tonic says only "transport error" at the
/// top, the reason (refused TLS handshake, connection refused, ...) is in the sources.
fn status_text(status: &tonic::Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// Where endpoint addresses come from: static `host:port`, `dns+host:port` (every A/AAAA
/// record of `host`), and Prometheus file-SD files (`- targets: [host:port, …]`, YAML or
/// JSON), re-read when they change.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// `--endpoint` values.
    pub endpoints: Vec<String>,
    /// `--endpoint.sd-files` paths.
    pub sd_files: Vec<std::path::PathBuf>,
}

#[derive(serde::Deserialize)]
struct FileSdGroup {
    #[serde(default)]
    targets: Vec<String>,
}

impl Discovery {
    /// The addresses to use now. Unresolvable names and unreadable files are logged and
    /// skipped (the previous answer stays for them).
    pub async fn resolve(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for spec in &self.endpoints {
            if let Some(name) = spec.strip_prefix("dns+") {
                match tokio::net::lookup_host(name).await {
                    Ok(addrs) => out.extend(addrs.map(|a| a.to_string())),
                    Err(e) => tracing::warn!(endpoint = %spec, error = %e, "DNS lookup failed"),
                }
            } else {
                out.push(spec.clone());
            }
        }
        for path in &self.sd_files {
            match std::fs::read_to_string(path) {
                Ok(text) => match serde_norway::from_str::<Vec<FileSdGroup>>(&text) {
                    Ok(groups) => out.extend(groups.into_iter().flat_map(|g| g.targets)),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "file SD parse failed")
                    }
                },
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "file SD read failed"),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Modification times of the SD files, to notice changes.
    pub fn file_stamps(&self) -> Vec<Option<std::time::SystemTime>> {
        self.sd_files
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// The current endpoints; changes when discovery finds other addresses.
#[derive(Debug, Clone, Default)]
pub struct EndpointSet {
    endpoints: Arc<RwLock<Vec<Arc<Endpoint>>>>,
    tls: Option<Arc<ClientTls>>,
}

impl EndpointSet {
    /// Endpoints for `addresses`.
    pub fn new(
        addresses: &[String],
        tls: Option<ClientTls>,
    ) -> Result<EndpointSet, tonic::transport::Error> {
        let endpoints = addresses
            .iter()
            .map(|a| Endpoint::new(a, tls.as_ref()).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EndpointSet {
            endpoints: Arc::new(RwLock::new(endpoints)),
            tls: tls.map(Arc::new),
        })
    }

    /// All endpoints, healthy or not.
    pub fn all(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints.read().map(|e| e.clone()).unwrap_or_default()
    }

    /// Replaces the set with `addresses`, keeping the state of endpoints that stay.
    pub fn update(&self, addresses: &[String]) {
        let current = self.all();
        let mut next = Vec::with_capacity(addresses.len());
        for address in addresses {
            if let Some(existing) = current.iter().find(|e| e.address() == address) {
                next.push(Arc::clone(existing));
                continue;
            }
            match Endpoint::new(address, self.tls.as_deref()) {
                Ok(e) => {
                    tracing::info!(endpoint = %address, "adding endpoint");
                    next.push(Arc::new(e));
                }
                Err(e) => {
                    tracing::warn!(endpoint = %address, error = %e, "invalid endpoint address")
                }
            }
        }
        for gone in current
            .iter()
            .filter(|e| !addresses.iter().any(|a| a == e.address()))
        {
            tracing::info!(endpoint = %gone.address(), "removing endpoint");
        }
        if let Ok(mut endpoints) = self.endpoints.write() {
            *endpoints = next;
        }
    }

    /// Checks every endpoint concurrently.
    pub async fn check_all(&self, timeout: Duration) {
        let all = self.all();
        let checks = all.iter().map(|e| e.check(timeout));
        futures::future::join_all(checks).await;
    }
}
