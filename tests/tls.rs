//! gRPC server TLS with client certificates (`--grpc-server-tls-*`) on a real `strata store`:
//! a client with a certificate from the trusted CA gets answers; no certificate, a
//! certificate from another CA, and a wrong server name are refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::time::Duration;

use strata_e2e::certs::TestCa;
use strata_e2e::store_api::StrataProcess;
use strata_storepb::info::InfoRequest;
use strata_storepb::info::info_client::InfoClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

async fn info(address: &str, tls: ClientTlsConfig) -> Result<String, String> {
    let channel = Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut client = InfoClient::new(channel);
    client
        .info(InfoRequest {})
        .await
        .map(|r| r.into_inner().component_type)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_trusted_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("strata test CA");
    let other = TestCa::new("another CA");
    let (server_cert, server_key) = ca
        .leaf("store", &["localhost", "127.0.0.1"])
        .write(dir.path(), "server");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let bucket = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    let data = dir.path().join("data");
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &bucket,
        "--data-dir",
        data.to_str().unwrap(),
        "--grpc-server-tls-cert",
        server_cert.to_str().unwrap(),
        "--grpc-server-tls-key",
        server_key.to_str().unwrap(),
        "--grpc-server-tls-client-ca",
        ca_file.to_str().unwrap(),
    ]);
    let trusted = ca.leaf("querier", &["querier"]);
    let untrusted = other.leaf("querier", &["querier"]);
    let base = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca.pem))
            .domain_name("localhost")
    };

    let ok = info(
        &store.grpc,
        base().identity(Identity::from_pem(&trusted.cert, &trusted.key)),
    )
    .await;
    assert_eq!(ok, Ok("store".to_owned()));

    let no_cert = info(&store.grpc, base()).await;
    assert!(no_cert.is_err(), "a client without a certificate got in");

    let wrong_ca = info(
        &store.grpc,
        base().identity(Identity::from_pem(&untrusted.cert, &untrusted.key)),
    )
    .await;
    assert!(wrong_ca.is_err(), "a certificate from another CA got in");

    let wrong_name = info(
        &store.grpc,
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca.pem))
            .domain_name("elsewhere.example")
            .identity(Identity::from_pem(&trusted.cert, &trusted.key)),
    )
    .await;
    assert!(wrong_name.is_err(), "a wrong server name was accepted");

    // A querier with the trusted client certificate reaches the store over mTLS; one
    // without a certificate, and a plaintext one, do not.
    let (client_cert, client_key) = trusted.write(dir.path(), "querier");
    let with_cert = StrataProcess::start(&[
        "query",
        "--endpoint",
        &store.grpc,
        "--grpc-client-tls-secure",
        "--grpc-client-tls-ca",
        ca_file.to_str().unwrap(),
        "--grpc-client-tls-cert",
        client_cert.to_str().unwrap(),
        "--grpc-client-tls-key",
        client_key.to_str().unwrap(),
        "--grpc-client-server-name",
        "localhost",
    ]);
    let stores = strata_e2e::prometheus::get_json(
        &format!("http://{}", with_cert.http),
        "/api/v1/stores",
        &[],
    );
    assert!(
        stores["data"]["store"][0]["lastError"].is_null(),
        "{stores}"
    );
    let without_cert = StrataProcess::start(&[
        "query",
        "--endpoint",
        &store.grpc,
        "--grpc-client-tls-secure",
        "--grpc-client-tls-ca",
        ca_file.to_str().unwrap(),
        "--grpc-client-server-name",
        "localhost",
    ]);
    let stores = strata_e2e::prometheus::get_json(
        &format!("http://{}", without_cert.http),
        "/api/v1/stores",
        &[],
    );
    assert!(
        stores["data"]["unknown"][0]["lastError"].is_string(),
        "{stores}"
    );
    let plain = StrataProcess::start(&["query", "--endpoint", &store.grpc]);
    let stores =
        strata_e2e::prometheus::get_json(&format!("http://{}", plain.http), "/api/v1/stores", &[]);
    assert!(
        stores["data"]["unknown"][0]["lastError"].is_string(),
        "{stores}"
    );

    // Plaintext clients are refused too.
    let plain = Endpoint::from_shared(format!("http://{}", store.grpc))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        assert!(InfoClient::new(channel).info(InfoRequest {}).await.is_err());
    }
}
