//! The Store API endpoints the querier fans out to (found by [`crate::discovery`]), each
//! checked with the Info API every few seconds. An endpoint whose Info call fails is
//! unhealthy and left out of queries until it answers again (strict ones are still asked);
//! one unhealthy for longer than `--store.unhealthy-timeout` is no longer listed in
//! `/api/v1/stores`, and comes back when it answers.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use strata_storepb::convert::labels_from_proto;
use strata_storepb::grpc_metrics::{GrpcMetrics, MeteredChannel};
use strata_storepb::info::InfoRequest;
use strata_storepb::info::info_client::InfoClient;
pub use strata_storepb::snappy::Compression;
use strata_storepb::snappy::SnappyClient;
use strata_storepb::store_client::StoreClient;
use strata_types::Labels;
use tonic::transport::Endpoint as TonicEndpoint;

pub use crate::discovery::{Discovery, Target};

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
    /// Serves the Metadata API (`thanos.Metadata`).
    pub metadata: bool,
    /// Serves the Targets API (`thanos.Targets`).
    pub targets: bool,
    /// Serves the Exemplars API (`thanos.Exemplars`).
    pub exemplars: bool,
    /// Serves the Rules API (`thanos.Rules`).
    pub rules: bool,
}

#[derive(Debug, Clone, Default)]
struct State {
    info: Option<EndpointInfo>,
    healthy: bool,
    last_check: Option<Instant>,
    /// Wall-clock time of the last check, for `/api/v1/stores`.
    last_check_time: Option<std::time::SystemTime>,
    last_error: Option<String>,
    /// Since when the endpoint has failed its checks (`None`: healthy, or never checked).
    unhealthy_since: Option<Instant>,
}

/// Client TLS for endpoints (`--grpc-client-tls-*`): CA to trust (system roots when
/// absent), client certificate for mutual TLS, and server name override.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificates (PEM).
    pub ca: Option<Vec<u8>>,
    /// Client certificate and key (PEM).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Name to verify the server certificate against (default: the address' host).
    pub server_name: Option<String>,
    /// Do not verify the server's certificate chain and name
    /// (`--grpc-client-tls-skip-verify`); the CA is then unused.
    pub skip_verify: bool,
    /// The lowest TLS version offered (`--grpc-client-tls-min-version`).
    pub min_version: strata_runtime::TlsVersion,
}

impl ClientTls {
    /// The name the server is verified against (and SNI): the override, else the host.
    fn server_name(&self, address: &str) -> String {
        let host = address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        self.server_name.clone().unwrap_or_else(|| host.to_owned())
    }
}

/// Why an endpoint cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The address or TLS settings are not usable by the gRPC client.
    #[error("endpoint: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Client TLS material for `--grpc-client-tls-skip-verify` does not load.
    #[error("endpoint: {0}")]
    Tls(#[from] crate::client_tls::ClientTlsError),
}

/// One Store API endpoint.
#[derive(Debug)]
pub struct Endpoint {
    address: String,
    tls: Option<Arc<ClientTls>>,
    strict: bool,
    compression: Compression,
    channel: MeteredChannel,
    state: RwLock<State>,
}

impl Endpoint {
    /// An endpoint at `address` (`host:port`); connects lazily.
    pub fn new(address: &str, tls: Option<&ClientTls>) -> Result<Endpoint, EndpointError> {
        Self::from_target(
            &Target {
                address: address.to_owned(),
                tls: tls.cloned().map(Arc::new),
                strict: false,
                compression: Compression::None,
            },
            GrpcMetrics::unregistered_client(),
        )
    }

    /// The endpoint `target` describes, its calls counted in `metrics`; connects lazily.
    pub fn from_target(
        target: &Target,
        metrics: Arc<GrpcMetrics>,
    ) -> Result<Endpoint, EndpointError> {
        let address = target.address.as_str();
        let endpoint = TonicEndpoint::from_shared(format!("http://{address}"))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        // TLS connections are made by our connector and handed to tonic as plaintext.
        let channel = match &target.tls {
            Some(tls) => endpoint.connect_with_connector_lazy(crate::client_tls::connector(
                crate::client_tls::client_config(tls)?,
                tls.server_name(address),
            )),
            None => endpoint.connect_lazy(),
        };
        let channel = MeteredChannel::new(
            SnappyClient::new(
                channel,
                target.compression,
                strata_storepb::serve::MAX_MESSAGE_BYTES,
            ),
            metrics,
        );
        Ok(Endpoint {
            address: address.to_owned(),
            tls: target.tls.clone(),
            strict: target.strict,
            compression: target.compression,
            channel,
            state: RwLock::new(State::default()),
        })
    }

    /// Whether the endpoint is strict (asked even while unhealthy, never hidden).
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// Whether the endpoint has failed its checks for longer than `timeout` (and is not
    /// strict): it is then no longer listed.
    pub fn is_gone(&self, timeout: Duration) -> bool {
        !self.strict
            && self
                .state
                .read()
                .ok()
                .and_then(|s| s.unhealthy_since)
                .is_some_and(|since| since.elapsed() >= timeout)
    }

    /// Wall-clock time of the last check.
    pub fn last_check_time(&self) -> Option<std::time::SystemTime> {
        self.state.read().ok().and_then(|s| s.last_check_time)
    }

    /// The configured address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A Store API client on the shared connection.
    pub fn store_client(&self) -> StoreClient<MeteredChannel> {
        StoreClient::new(self.channel.clone())
            .max_decoding_message_size(strata_storepb::serve::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(32 << 20)
    }

    /// A Metadata API client on the shared connection.
    pub fn metadata_client(
        &self,
    ) -> strata_storepb::metadata_client::MetadataClient<MeteredChannel> {
        strata_storepb::metadata_client::MetadataClient::new(self.channel.clone())
            .max_decoding_message_size(strata_storepb::serve::MAX_MESSAGE_BYTES)
    }

    /// A Targets API client on the shared connection.
    pub fn targets_client(&self) -> strata_storepb::targets_client::TargetsClient<MeteredChannel> {
        strata_storepb::targets_client::TargetsClient::new(self.channel.clone())
            .max_decoding_message_size(strata_storepb::serve::MAX_MESSAGE_BYTES)
    }

    /// An Exemplars API client on the shared connection.
    pub fn exemplars_client(
        &self,
    ) -> strata_storepb::exemplars_client::ExemplarsClient<MeteredChannel> {
        strata_storepb::exemplars_client::ExemplarsClient::new(self.channel.clone())
            .max_decoding_message_size(strata_storepb::serve::MAX_MESSAGE_BYTES)
    }

    /// A Rules API client on the shared connection.
    pub fn rules_client(&self) -> strata_storepb::rules_client::RulesClient<MeteredChannel> {
        strata_storepb::rules_client::RulesClient::new(self.channel.clone())
            .max_decoding_message_size(strata_storepb::serve::MAX_MESSAGE_BYTES)
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
        let mut client = InfoClient::new(self.channel.clone())
            .max_decoding_message_size(strata_storepb::serve::MAX_MESSAGE_BYTES);
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
                        metadata: resp.metric_metadata.is_some(),
                        targets: resp.targets.is_some(),
                        exemplars: resp.exemplars.is_some(),
                        rules: resp.rules.is_some(),
                    })
                }
            }
        };
        if let Ok(mut state) = self.state.write() {
            state.last_check = Some(Instant::now());
            state.last_check_time = Some(std::time::SystemTime::now());
            match outcome {
                Ok(info) => {
                    if !state.healthy {
                        tracing::info!(endpoint = %self.address, component = %info.component, "endpoint healthy");
                    }
                    state.info = Some(info);
                    state.healthy = true;
                    state.last_error = None;
                    state.unhealthy_since = None;
                }
                Err(e) => {
                    // Logged when the endpoint turns unhealthy, and whenever the reason
                    // changes (so an endpoint that never came up says why).
                    if state.healthy || state.last_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!(endpoint = %self.address, error = %e, "endpoint unhealthy");
                    }
                    state.healthy = false;
                    state.last_error = Some(e);
                    state.unhealthy_since.get_or_insert_with(Instant::now);
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

/// The current endpoints; changes when discovery finds other addresses.
#[derive(Debug, Clone)]
pub struct EndpointSet {
    endpoints: Arc<RwLock<Vec<Arc<Endpoint>>>>,
    metrics: Arc<GrpcMetrics>,
}

impl Default for EndpointSet {
    fn default() -> Self {
        EndpointSet {
            endpoints: Arc::default(),
            metrics: GrpcMetrics::unregistered_client(),
        }
    }
}

impl EndpointSet {
    /// Endpoints for `targets` (their calls counted nowhere).
    pub fn new(targets: &[Target]) -> Result<EndpointSet, EndpointError> {
        Self::with_metrics(targets, GrpcMetrics::unregistered_client())
    }

    /// Endpoints for `targets`, every call counted in `metrics` (`grpc_client_*`).
    pub fn with_metrics(
        targets: &[Target],
        metrics: Arc<GrpcMetrics>,
    ) -> Result<EndpointSet, EndpointError> {
        let endpoints = targets
            .iter()
            .map(|t| Endpoint::from_target(t, Arc::clone(&metrics)).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EndpointSet {
            endpoints: Arc::new(RwLock::new(endpoints)),
            metrics,
        })
    }

    /// All endpoints, healthy or not.
    pub fn all(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints.read().map(|e| e.clone()).unwrap_or_default()
    }

    /// Replaces the set with `targets`, keeping the state of endpoints that stay (same
    /// address, TLS and strictness).
    pub fn update(&self, targets: &[Target]) {
        let current = self.all();
        let mut next = Vec::with_capacity(targets.len());
        for target in targets {
            if let Some(existing) = current.iter().find(|e| {
                e.address() == target.address
                    && e.tls == target.tls
                    && e.strict == target.strict
                    && e.compression == target.compression
            }) {
                next.push(Arc::clone(existing));
                continue;
            }
            match Endpoint::from_target(target, Arc::clone(&self.metrics)) {
                Ok(e) => {
                    tracing::info!(endpoint = %target.address, tls = target.tls.is_some(), strict = target.strict, "adding endpoint");
                    next.push(Arc::new(e));
                }
                Err(e) => {
                    tracing::warn!(endpoint = %target.address, error = %e, "invalid endpoint address")
                }
            }
        }
        for gone in current
            .iter()
            .filter(|e| !next.iter().any(|n| Arc::ptr_eq(n, e)))
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
