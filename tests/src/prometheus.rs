//! A real Prometheus server, started on 127.0.0.1 over a data directory and stopped by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, prometheus_binary};

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
        Prometheus::start_on_blocks_with_labels(data_dir, &[])
    }

    /// [`Prometheus::start_on_blocks`] with external labels.
    pub fn start_on_blocks_with_labels(
        data_dir: &Path,
        external_labels: &[(&str, &str)],
    ) -> Prometheus {
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("prometheus.yml");
        let mut text = String::from("global:\n  scrape_interval: 15s\n");
        if !external_labels.is_empty() {
            text.push_str("  external_labels:\n");
            for (k, v) in external_labels {
                text.push_str(&format!("    {k}: \"{v}\"\n"));
            }
        }
        text.push_str("scrape_configs: []\n");
        std::fs::write(&config, text).unwrap();
        Prometheus::start_on_config(
            &config,
            config_dir,
            data_dir,
            &[
                "--storage.tsdb.retention.time=100y",
                "--storage.tsdb.min-block-duration=2h",
                "--storage.tsdb.max-block-duration=2h",
            ],
        )
    }

    /// Starts Prometheus on `config` (kept alive with `config_dir`) with `extra` flags on
    /// 127.0.0.1 and a free port; waits until it is ready.
    fn start_on_config(
        config: &Path,
        config_dir: tempfile::TempDir,
        data_dir: &Path,
        extra: &[&str],
    ) -> Prometheus {
        let port = free_port();
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data_dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
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

    /// Starts Prometheus scraping itself every second with `external_labels`, cutting
    /// blocks every minute (`--storage.tsdb.min-block-duration=1m`, max equal), over a new
    /// data directory `data_dir`. Waits until it is ready.
    pub fn start_scraping_itself(data_dir: &Path, external_labels: &[(&str, &str)]) -> Prometheus {
        let prometheus = Prometheus::spawn_scraping_itself(data_dir, external_labels, None);
        prometheus.wait_ready(Duration::from_secs(60));
        prometheus
    }

    /// [`Prometheus::start_scraping_itself`] with a web configuration (`--web.config.file`:
    /// TLS, basic auth). Its self-scrape then fails (it scrapes plain HTTP), which still
    /// records `up` samples. Waits until its port accepts connections.
    pub fn start_scraping_itself_with_web_config(
        data_dir: &Path,
        external_labels: &[(&str, &str)],
        web_config: &str,
    ) -> Prometheus {
        let prometheus =
            Prometheus::spawn_scraping_itself(data_dir, external_labels, Some(web_config));
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", prometheus.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "prometheus on port {} never listened",
                prometheus.port
            );
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    fn spawn_scraping_itself(
        data_dir: &Path,
        external_labels: &[(&str, &str)],
        web_config: Option<&str>,
    ) -> Prometheus {
        let binary = prometheus_binary();
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("prometheus.yml");
        let port = free_port();
        let labels: String = external_labels
            .iter()
            .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
            .collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n{labels}scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            ),
        )
        .unwrap();
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data_dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.min-block-duration=1m")
            .arg("--storage.tsdb.max-block-duration=1m")
            .arg("--log.level=warn");
        if let Some(web) = web_config {
            let path = config_dir.path().join("web.yml");
            std::fs::write(&path, web).unwrap();
            command.arg(format!("--web.config.file={}", path.display()));
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            port,
            _config_dir: config_dir,
            data_dir: data_dir.to_owned(),
        }
    }

    /// Starts Prometheus scraping itself every second with native histograms on
    /// (`--enable-feature=native-histograms`: its own `prometheus_http_request_duration_seconds`
    /// is one), evaluating `rules` (a rule file's YAML) every second, with the admin API
    /// (snapshots). Waits until it is ready.
    pub fn start_native_histograms(data_dir: &Path, rules: &str) -> Prometheus {
        Prometheus::start_native_histograms_with_labels(data_dir, rules, &[])
    }

    /// [`Prometheus::start_native_histograms`] with external labels (what a sidecar needs).
    pub fn start_native_histograms_with_labels(
        data_dir: &Path,
        rules: &str,
        external_labels: &[(&str, &str)],
    ) -> Prometheus {
        let labels: String = external_labels
            .iter()
            .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("  external_labels:\n{labels}")
        };
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("prometheus.yml");
        let rules_path = config_dir.path().join("rules.yml");
        std::fs::write(&rules_path, rules).unwrap();
        let port = free_port();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{labels}rule_files:\n  - {}\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n",
                rules_path.display()
            ),
        )
        .unwrap();
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data_dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=native-histograms")
            .arg("--web.enable-admin-api")
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

    /// Writes the head into a block with the admin API's snapshot; returns the snapshot's
    /// directory (its blocks inside).
    pub fn snapshot(&self) -> PathBuf {
        let mut resp = agent()
            .post(format!("{}/api/v1/admin/tsdb/snapshot", self.url()))
            .send_empty()
            .unwrap();
        let body: serde_json::Value =
            serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        let name = body["data"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("snapshot failed: {body}"));
        self.data_dir.join("snapshots").join(name)
    }

    /// Starts Prometheus on a configuration file the test owns (and may rewrite), with
    /// `--web.enable-lifecycle` so that `POST /-/reload` works. Waits until it is ready.
    pub fn start_with_config_file(config: &Path, data_dir: &Path) -> Prometheus {
        let config_dir = tempfile::tempdir().unwrap();
        Prometheus::start_on_config(config, config_dir, data_dir, &["--web.enable-lifecycle"])
    }

    /// Starts Prometheus on a configuration file with extra flags (e.g.
    /// `--enable-feature=exemplar-storage`). Waits until it is ready.
    pub fn start_with_config_and_flags(
        config: &Path,
        data_dir: &Path,
        flags: &[&str],
    ) -> Prometheus {
        let config_dir = tempfile::tempdir().unwrap();
        Prometheus::start_on_config(config, config_dir, data_dir, flags)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
        get_json(&self.url(), path, params)
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

impl Prometheus {
    /// POSTs `body` to `path` with `headers`; the status and the body of the answer.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        let mut request = agent().post(format!("{}{path}", self.url()));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut resp = request.send(body).unwrap();
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `base` + `path` with query parameters; the parsed JSON body whatever the status.
pub fn get_json(base: &str, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
    let mut request = agent().get(format!("{base}{path}"));
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

/// Series keyed by their label set rendered as `{a="b"}`, with (seconds, value) points.
pub type Answer = std::collections::BTreeMap<String, Vec<(f64, f64)>>;

fn parse_value(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap(),
    }
}

/// The labels of a JSON `metric` object, without `drop` labels, rendered as `{a="b"}`.
fn labels_key(metric: &serde_json::Map<String, serde_json::Value>, drop: &[&str]) -> String {
    let pairs: Vec<(String, String)> = metric
        .iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    strata_types::Labels::from_pairs(pairs).to_string()
}

/// A query API answer as series → points; `Err` with the error text for an error answer.
/// Labels named in `drop` are removed from every series first.
pub fn parse_answer(body: &serde_json::Value, drop: &[&str]) -> Result<Answer, String> {
    if body["status"] != "success" {
        return Err(body["error"].as_str().unwrap_or_default().to_owned());
    }
    let data = &body["data"];
    let mut out = Answer::new();
    match data["resultType"].as_str().unwrap() {
        "scalar" => {
            let pair = data["result"].as_array().unwrap();
            out.insert(
                "scalar".into(),
                vec![(
                    pair[0].as_f64().unwrap(),
                    parse_value(pair[1].as_str().unwrap()),
                )],
            );
        }
        "vector" => {
            for e in data["result"].as_array().unwrap() {
                let pair = e["value"].as_array().unwrap();
                out.insert(
                    labels_key(e["metric"].as_object().unwrap(), drop),
                    vec![(
                        pair[0].as_f64().unwrap(),
                        parse_value(pair[1].as_str().unwrap()),
                    )],
                );
            }
        }
        "matrix" => {
            for e in data["result"].as_array().unwrap() {
                let points = e["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_f64().unwrap(), parse_value(p[1].as_str().unwrap())))
                    .collect();
                out.insert(labels_key(e["metric"].as_object().unwrap(), drop), points);
            }
        }
        other => return Err(format!("unexpected result type {other}")),
    }
    Ok(out)
}

/// Whether two values agree within a relative 1e-9 (NaN equals NaN).
pub fn close(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() || a == b {
        return true;
    }
    let diff = (a - b).abs();
    diff <= 1e-9 * a.abs().max(b.abs()) || diff < 1e-12
}

/// The first difference between two answers, if any.
pub fn compare_answers(query: &str, ours: &Answer, theirs: &Answer) -> Option<String> {
    if ours.keys().ne(theirs.keys()) {
        return Some(format!(
            "{query}: series differ\n  ours:   {:?}\n  theirs: {:?}",
            ours.keys().collect::<Vec<_>>(),
            theirs.keys().collect::<Vec<_>>()
        ));
    }
    for (key, want) in theirs {
        let got = &ours[key];
        if got.len() != want.len() {
            return Some(format!(
                "{query}: {key}: {} points vs {}",
                got.len(),
                want.len()
            ));
        }
        for (g, w) in got.iter().zip(want) {
            if (g.0 - w.0).abs() > 1e-6 || !close(g.1, w.1) {
                return Some(format!("{query}: {key}: ours {g:?}, Prometheus {w:?}"));
            }
        }
    }
    None
}
