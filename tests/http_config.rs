//! `--http.config` (the exporter-toolkit web config the bitnami chart passes with
//! `https.enabled` / `auth.basicAuthUsers`): the querier serves its HTTP address over TLS and
//! asks every request for basic-auth credentials checked against a bcrypt hash; plaintext,
//! missing or wrong credentials are refused. A web config asking for what Strata does not do
//! stops the start with a clear error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::BodyExt as _;
use strata_e2e::certs::TestCa;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// `GET path` over TLS (trusting `ca`), with basic auth when given: (status, body).
async fn get(
    address: &str,
    ca: &str,
    path: &str,
    auth: Option<(&str, &str)>,
) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::get(path).header("host", "localhost");
    if let Some((user, password)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        req = req.header("authorization", format!("Basic {token}"));
    }
    let resp = sender
        .send_request(
            req.body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_querier_serves_https_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("web config CA");
    let leaf = ca.leaf("query", &["localhost", "127.0.0.1"]);
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    std::fs::write(dir.path().join("tls/tls.crt"), &leaf.cert).unwrap();
    std::fs::write(dir.path().join("tls/tls.key"), &leaf.key).unwrap();
    let hash = bcrypt::hash("s3cret", 6).unwrap();
    // As the bitnami chart writes it: file names relative to the config's directory work too.
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: tls/tls.crt\n  key_file: tls/tls.key\nbasic_auth_users:\n  admin: {hash}\n"
        ),
    )
    .unwrap();
    let http = format!("127.0.0.1:{}", strata_e2e::free_port());
    let grpc = format!("127.0.0.1:{}", strata_e2e::free_port());
    let mut child = Command::new(strata_e2e::strata_binary())
        .args([
            "query",
            &format!("--http-address={http}"),
            &format!("--grpc-address={grpc}"),
            &format!("--http.config={}", web.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let auth = Some(("admin", "s3cret"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = get(&http, &ca.pem, "/-/ready", auth).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the querier never answered over HTTPS"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = get(&http, &ca.pem, "/api/v1/query?query=1%2B1", auth)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"2\""), "{body}");
    // The remembered check answers the same (and a second request does not pay bcrypt).
    assert_eq!(get(&http, &ca.pem, "/metrics", auth).await.unwrap().0, 200);
    for (what, creds) in [
        ("no credentials", None),
        ("a wrong password", Some(("admin", "guess"))),
        ("an unknown user", Some(("root", "s3cret"))),
    ] {
        let (status, _) = get(&http, &ca.pem, "/api/v1/query?query=1", creds)
            .await
            .unwrap();
        assert_eq!(status, 401, "{what}");
    }
    // Plaintext HTTP gets no answer from a TLS listener.
    let plain = tokio::time::timeout(Duration::from_secs(5), async {
        let mut tcp = tokio::net::TcpStream::connect(&http).await.unwrap();
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        tcp.write_all(b"GET /-/ready HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tcp.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    })
    .await
    .unwrap_or_default();
    assert!(!plain.contains("200 OK"), "{plain}");
    child.kill().unwrap();
    let _ = child.wait();

    // What Strata does not implement fails the start, naming it.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: tls/tls.crt\n  key_file: tls/tls.key\n  client_auth_type: VerifyClientCertIfGiven\n",
    )
    .unwrap();
    let out = Command::new(strata_e2e::strata_binary())
        .args([
            "query",
            "--http-address=127.0.0.1:0",
            "--grpc-address=127.0.0.1:0",
            &format!("--http.config={}", web.display()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VerifyClientCertIfGiven"), "{stderr}");
}
