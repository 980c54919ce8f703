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

/// The querier's `/api/v1/stores` answer.
fn stores_of(query: &StrataProcess) -> serde_json::Value {
    strata_e2e::prometheus::get_json(&format!("http://{}", query.http), "/api/v1/stores", &[])
}

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
    let stores = stores_of(&with_cert);
    assert!(
        stores["data"]["store"][0]["lastError"].is_null(),
        "{stores}"
    );
    // --grpc-client-tls-skip-verify (the bitnami chart passes it): no CA and a name the
    // certificate does not hold, yet the querier gets in (still with its certificate);
    // without the flag the same querier is refused by its own verification.
    let skip_verify = |skip: bool| {
        let mut args = vec![
            "query",
            "--endpoint",
            &store.grpc,
            "--grpc-client-tls-secure",
            "--grpc-client-tls-cert",
            client_cert.to_str().unwrap(),
            "--grpc-client-tls-key",
            client_key.to_str().unwrap(),
            "--grpc-client-server-name",
            "elsewhere.example",
        ];
        if skip {
            args.push("--grpc-client-tls-skip-verify");
        }
        StrataProcess::start(&args)
    };
    let skipping = skip_verify(true);
    let stores = stores_of(&skipping);
    assert!(
        stores["data"]["store"][0]["lastError"].is_null(),
        "{stores}"
    );
    let verifying = skip_verify(false);
    let stores = stores_of(&verifying);
    assert!(
        stores["data"]["unknown"][0]["lastError"].is_string(),
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
    let stores = stores_of(&without_cert);
    assert!(
        stores["data"]["unknown"][0]["lastError"].is_string(),
        "{stores}"
    );
    let plain = StrataProcess::start(&["query", "--endpoint", &store.grpc]);
    let stores = stores_of(&plain);
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

/// A bare TLS handshake offering only `versions`, with a client certificate.
async fn handshake(
    address: &str,
    ca_pem: &str,
    client: &strata_e2e::certs::Leaf,
    versions: &[&'static tokio_rustls::rustls::SupportedProtocolVersion],
) -> Result<(), String> {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(client.cert.as_bytes())
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_slice(client.key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Every refusal is logged with its reason on the server (and on the querier), TLS 1.3 is
/// the minimum by default, and rotated certificate and CA files apply without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_logged_and_rotated_certificates_apply() {
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
    let store = StrataProcess::start_logged(
        &[
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
        ],
        &dir.path().join("store.log"),
    );
    let wait = Duration::from_secs(15);
    let base = |ca_pem: &str| {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .domain_name("localhost")
    };
    let trusted = ca.leaf("querier", &["querier"]);
    let identity = |l: &strata_e2e::certs::Leaf| Identity::from_pem(&l.cert, &l.key);

    let expired = ca.expired_leaf("querier", &["querier"]);
    let got = info(&store.grpc, base(&ca.pem).identity(identity(&expired))).await;
    assert!(got.is_err(), "an expired certificate got in");
    let line = store.wait_log(&["gRPC TLS handshake refused", "expired"], wait);
    assert!(line.contains("127.0.0.1:"), "no peer address: {line}");

    assert!(info(&store.grpc, base(&ca.pem)).await.is_err());
    store.wait_log(&["handshake refused", "presented no certificate"], wait);

    let foreign = other.leaf("querier", &["querier"]);
    assert!(
        info(&store.grpc, base(&ca.pem).identity(identity(&foreign)))
            .await
            .is_err()
    );
    store.wait_log(
        &["handshake refused", "not signed by the trusted client CA"],
        wait,
    );

    // TLS 1.3 is the minimum: a TLS 1.2-only client is refused, the same client offering
    // 1.3 completes the handshake.
    let tls12 = handshake(
        &store.grpc,
        &ca.pem,
        &trusted,
        &[&tokio_rustls::rustls::version::TLS12],
    )
    .await;
    assert!(tls12.is_err(), "a TLS 1.2-only client got in");
    store.wait_log(&["handshake refused", "TLS version"], wait);
    handshake(
        &store.grpc,
        &ca.pem,
        &trusted,
        &[&tokio_rustls::rustls::version::TLS13],
    )
    .await
    .unwrap();

    // The querier's side: a querier with a wrong server name says why it cannot use the
    // endpoint, and the store logs the client's alert.
    let (client_cert, client_key) = trusted.write(dir.path(), "querier");
    let querier = StrataProcess::start_logged(
        &[
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
            "elsewhere.example",
        ],
        &dir.path().join("query.log"),
    );
    let line = querier.wait_log(&["endpoint unhealthy", &store.grpc], wait);
    eprintln!("querier: {line}");
    assert!(line.contains("not valid for name"), "{line}");
    store.wait_log(&["handshake refused", "aborted the handshake"], wait);
    drop(querier);

    // A querier without a client certificate: refused by the store, and the querier says
    // the store required one.
    let querier = StrataProcess::start_logged(
        &[
            "query",
            "--endpoint",
            &store.grpc,
            "--grpc-client-tls-secure",
            "--grpc-client-tls-ca",
            ca_file.to_str().unwrap(),
            "--grpc-client-server-name",
            "localhost",
            "--endpoint.info-timeout",
            "1s",
        ],
        &dir.path().join("query-no-cert.log"),
    );
    // In TLS 1.3 the server refuses after the client's handshake is done, so what the
    // querier sees depends on timing (the alert naming the reason, `CertificateRequired`,
    // or a closed connection when it writes first; on a loaded machine the latter can win
    // every try): the querier marks the store unhealthy, and the store names the reason.
    let line = querier.wait_log(&["endpoint unhealthy", &store.grpc], wait);
    eprintln!("querier without certificate: {line}");
    store.wait_log(
        &["handshake refused", "the client presented no certificate"],
        wait,
    );
    drop(querier);

    // Rotation: a new CA signs a new server certificate and the clients from now on;
    // the files are replaced in place and the store picks them up.
    let rotated = TestCa::new("rotated CA");
    let new_server = rotated.leaf("store", &["localhost", "127.0.0.1"]);
    std::fs::write(&server_cert, &new_server.cert).unwrap();
    std::fs::write(&server_key, &new_server.key).unwrap();
    std::fs::write(&ca_file, &rotated.pem).unwrap();
    let new_client = rotated.leaf("querier", &["querier"]);
    let deadline = std::time::Instant::now() + wait;
    loop {
        let got = info(
            &store.grpc,
            base(&rotated.pem).identity(identity(&new_client)),
        )
        .await;
        if got == Ok("store".to_owned()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rotated certificates not used: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    store.wait_log(&["reloaded gRPC server TLS material"], wait);
    let old = info(&store.grpc, base(&ca.pem).identity(identity(&trusted))).await;
    assert!(old.is_err(), "the old CA is still trusted after rotation");
    eprintln!("store log:\n{}", store.log());
}

/// `--grpc-client-tls-min-version`: behind a relay that speaks only TLS 1.2 (then plaintext
/// to a store), a querier with the default (1.3, as Thanos) is refused in the handshake;
/// one with `1.2` reaches the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_min_version_decides_what_is_offered() {
    use std::sync::Arc;
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("strata test CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let leaf = ca.leaf("relay", &["localhost", "127.0.0.1"]);
    let bucket = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &bucket,
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);

    // The TLS 1.2-only relay.
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = listener.local_addr().unwrap().to_string();
    let target = store.grpc.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });

    let querier = move |min_version: Option<&str>| {
        let mut args = vec![
            "query",
            "--endpoint",
            &relay,
            "--grpc-client-tls-secure",
            "--grpc-client-tls-ca",
            ca_file.to_str().unwrap(),
            "--grpc-client-server-name",
            "localhost",
        ];
        if let Some(v) = min_version {
            args.extend(["--grpc-client-tls-min-version", v]);
        }
        StrataProcess::start(&args)
    };
    let (default, tls12) = tokio::task::spawn_blocking(move || {
        let default = stores_of(&querier(None));
        let tls12 = stores_of(&querier(Some("1.2")));
        (default, tls12)
    })
    .await
    .unwrap();
    let error = default["data"]["unknown"][0]["lastError"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !error.is_empty(),
        "the default (1.3) got through: {default}"
    );
    assert!(
        tls12["data"]["store"][0]["lastError"].is_null(),
        "with 1.2 the store is reached: {tls12}"
    );
    eprintln!("default querier's error towards a TLS 1.2-only endpoint: {error}");
}
