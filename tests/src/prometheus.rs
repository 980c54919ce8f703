//! A real Prometheus server, started on 127.0.0.1 over a data directory and stopped by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, require_tool};

/// A running Prometheus; killed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    port: u16,
    _config_dir: tempfile::TempDir,
    pub data_dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus without scrape jobs over `data_dir` (blocks only; no compaction of
    /// the given blocks: min and max block duration are both 2h). Waits until it is ready.
    pub fn start_on_blocks(data_dir: &Path) -> Prometheus {
        let binary = require_tool("prometheus");
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data_dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=100y")
            .arg("--storage.tsdb.min-block-duration=2h")
            .arg("--storage.tsdb.max-block-duration=2h")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let prometheus = Prometheus {
            child,
            port,
            _config_dir: config_dir,
            data_dir: data_dir.to_owned(),
        };
        prometheus.wait_ready(Duration::from_secs(60));
        prometheus
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let agent = agent();
        loop {
            if let Ok(resp) = agent.get(format!("{}/-/ready", self.url())).call()
                && resp.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus on port {} not ready within {timeout:?}",
                self.port
            );
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET `path` with query parameters; returns the parsed JSON body whatever the status.
    pub fn get_json(&self, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
        let mut request = agent().get(format!("{}{path}", self.url()));
        for (k, v) in params {
            request = request.query(*k, *v);
        }
        let mut resp = request.call().unwrap();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .unwrap();
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// An instant query at `time` (seconds).
    pub fn query(&self, expr: &str, time: f64) -> serde_json::Value {
        self.get_json(
            "/api/v1/query",
            &[("query", expr), ("time", &time.to_string())],
        )
    }

    /// A range query.
    pub fn query_range(&self, expr: &str, start: f64, end: f64, step: f64) -> serde_json::Value {
        self.get_json(
            "/api/v1/query_range",
            &[
                ("query", expr),
                ("start", &start.to_string()),
                ("end", &end.to_string()),
                ("step", &step.to_string()),
            ],
        )
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
