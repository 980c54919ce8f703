//! `deploy/demo`: the local multi-cluster demo starts with one command, the observer's
//! query frontend answers with the observee's data (reached over mutual TLS), the observee
//! sidecar refuses clients without the observer's certificate, and `deploy/demo down`
//! stops every process it started.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use strata_storepb::info::InfoRequest;
use strata_storepb::info::info_client::InfoClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A first port with the 17 after it free on 127.0.0.1.
fn free_port_range() -> u16 {
    for _ in 0..50 {
        let base = strata_e2e::free_port();
        if base > 65_000 {
            continue;
        }
        let all_free =
            (0..17).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no 17 consecutive free ports");
}

fn demo(dir: &Path, base: u16, command: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(root.join("deploy/demo"))
        .arg(command)
        .env("STRATA_DEMO_DIR", dir)
        .env("STRATA_DEMO_PORT", base.to_string())
        .env("STRATA_DEMO_BLOCK_DURATION", "1m")
        .env("STRATA_BINARY", strata_e2e::strata_binary())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "deploy/demo {command} failed: {}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

async fn info(address: &str, tls: Option<ClientTlsConfig>) -> Result<Vec<String>, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}")).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let resp = InfoClient::new(channel)
        .info(InfoRequest {})
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    Ok(resp
        .label_sets
        .iter()
        .flat_map(|s| s.labels.iter().map(|l| format!("{}={}", l.name, l.value)))
        .collect())
}

struct StopOnDrop<'a>(&'a Path, u16);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap()
                .join("deploy/demo"),
        )
        .arg("down")
        .env("STRATA_DEMO_DIR", self.0)
        .env("STRATA_DEMO_PORT", self.1.to_string())
        .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_observee_over_mutual_tls_and_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let base = free_port_range();
    let guard = StopOnDrop(&dir, base);
    let printed = demo(&dir, base, "up");
    let frontend = format!("http://127.0.0.1:{}", base + 16);
    assert!(printed.contains(&frontend), "{printed}");
    let datasource = std::fs::read_to_string(dir.join("grafana-datasource.yaml")).unwrap();
    assert!(datasource.contains(&frontend), "{datasource}");

    // The observee's live data through frontend → querier → observee querier → sidecar.
    let deadline = Instant::now() + Duration::from_secs(90);
    let result = loop {
        let resp = strata_e2e::prometheus::get_json(
            &frontend,
            "/api/v1/query",
            &[("query", "count by (cluster) (up)")],
        );
        let result = resp["data"]["result"].clone();
        if result.as_array().is_some_and(|r| !r.is_empty()) {
            break result;
        }
        assert!(
            Instant::now() < deadline,
            "no data through the frontend: {resp}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(result[0]["metric"]["cluster"], "cluster-b", "{result}");
    let stores = strata_e2e::prometheus::get_json(
        &format!("http://127.0.0.1:{}", base + 15),
        "/api/v1/stores",
        &[],
    );
    assert_eq!(
        stores["data"]["query"][0]["labelSets"][0]["cluster"], "cluster-b",
        "{stores}"
    );

    // The observee sidecar admits only the observer's certificate.
    let sidecar = format!("127.0.0.1:{}", base + 1);
    let certs = dir.join("certs");
    let ca = std::fs::read_to_string(certs.join("ca/ca.crt")).unwrap();
    let cert = std::fs::read_to_string(certs.join("observer/tls.crt")).unwrap();
    let key = std::fs::read_to_string(certs.join("observer/tls.key")).unwrap();
    let tls = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca))
            .domain_name("localhost")
    };
    let ok = info(
        &sidecar,
        Some(tls().identity(Identity::from_pem(&cert, &key))),
    )
    .await
    .unwrap();
    assert!(ok.contains(&"cluster=cluster-b".to_owned()), "{ok:?}");
    assert!(
        info(&sidecar, Some(tls())).await.is_err(),
        "no client certificate got in"
    );
    assert!(info(&sidecar, None).await.is_err(), "plaintext got in");

    let pids: Vec<u32> = std::fs::read_to_string(dir.join("pids"))
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 7, "{pids:?}");
    let stopped = demo(&dir, base, "down");
    assert!(stopped.contains("demo stopped"), "{stopped}");
    for pid in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "process {pid} still runs after deploy/demo down"
        );
    }
    drop(guard);
}
