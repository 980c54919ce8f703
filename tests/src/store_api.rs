//! Helpers for tests of Store API components: uploading blocks to a bucket as Thanos does,
//! running `strata` subcommands as processes, and reading Series answers back as samples.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_objstore::Bucket;
use strata_storepb::store_client::StoreClient;
use strata_storepb::{SeriesRequest, series_response};
use strata_tsdb::BlockMeta;
use strata_tsdb::meta::{BlockFile, ThanosMeta};
use strata_types::{Labels, Sample};

/// Uploads a local block directory as Thanos' shipper does: the `thanos` section with
/// `ext_labels` and the file list, chunks and index first, meta.json last.
pub async fn upload_block(bucket: &Bucket, dir: &Path, ext_labels: &[(&str, &str)]) -> BlockMeta {
    let mut meta = BlockMeta::parse(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let id = meta.ulid.clone();
    let mut files = Vec::new();
    let mut chunk_files: Vec<_> = std::fs::read_dir(dir.join("chunks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    chunk_files.sort();
    for path in &chunk_files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let rel = format!("chunks/{name}");
        bucket
            .upload_file(&format!("{id}/{rel}"), path)
            .await
            .unwrap();
        files.push(BlockFile {
            rel_path: rel,
            size_bytes: Some(std::fs::metadata(path).unwrap().len()),
            hash: None,
        });
    }
    bucket
        .upload_file(&format!("{id}/index"), &dir.join("index"))
        .await
        .unwrap();
    files.push(BlockFile {
        rel_path: "index".into(),
        size_bytes: Some(std::fs::metadata(dir.join("index")).unwrap().len()),
        hash: None,
    });
    files.push(BlockFile {
        rel_path: "meta.json".into(),
        size_bytes: None,
        hash: None,
    });
    meta.thanos = Some(ThanosMeta {
        version: 1,
        labels: ext_labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        source: "test".into(),
        files,
        ..ThanosMeta::default()
    });
    bucket
        .upload(&format!("{id}/meta.json"), meta.to_json().unwrap().into())
        .await
        .unwrap();
    meta
}

/// A `strata` process, killed when dropped.
#[derive(Debug)]
pub struct StrataProcess {
    child: Child,
    pub http: String,
    pub grpc: String,
    /// Where stderr goes, when started with [`StrataProcess::start_logged`].
    log: Option<std::path::PathBuf>,
}

impl StrataProcess {
    /// Starts `strata <args>` with `--http-address` and `--grpc-address` on free ports and
    /// waits until `/-/ready` answers 200.
    pub fn start(args: &[&str]) -> StrataProcess {
        StrataProcess::spawn(args, true, None)
    }

    /// As [`StrataProcess::start`], with info-level logs written to `log` (see
    /// [`StrataProcess::log`]).
    pub fn start_logged(args: &[&str], log: &std::path::Path) -> StrataProcess {
        StrataProcess::spawn(args, true, Some(log))
    }

    /// Starts `strata` with exactly `args`, which name its own listen addresses: `http` (and
    /// `grpc`, or `""`) are where it listens; `env` is added to its environment; stderr goes
    /// to `log`. Waits until it is ready.
    pub fn start_exact(
        args: &[String],
        http: &str,
        grpc: &str,
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> StrataProcess {
        let mut command = Command::new(crate::strata_binary());
        command
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap());
        let child = command.spawn().unwrap();
        let mut process = StrataProcess {
            child,
            http: http.to_owned(),
            grpc: grpc.to_owned(),
            log: Some(log.to_owned()),
        };
        if let Err(e) = process.wait_ready(Duration::from_secs(60)) {
            panic!(
                "strata {args:?} {e}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        process
    }

    /// Starts a component without a gRPC address (the query frontend).
    pub fn start_http_only(args: &[&str]) -> StrataProcess {
        StrataProcess::spawn(args, false, None)
    }

    /// As [`StrataProcess::start_http_only`], with info-level logs written to `log`.
    pub fn start_http_only_logged(args: &[&str], log: &std::path::Path) -> StrataProcess {
        StrataProcess::spawn(args, false, Some(log))
    }

    /// Starts the process on free ports. A port picked free can be taken before the child
    /// binds it (by another test's server, or as the local port of an outgoing connection),
    /// so a process that exits before it is ready is started again on other ports, twice.
    fn spawn(args: &[&str], with_grpc: bool, log: Option<&std::path::Path>) -> StrataProcess {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut process = StrataProcess::spawn_once(args, with_grpc, log);
            match process.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return process,
                Err(e) if attempt < 3 && e.starts_with("exited") => {
                    eprintln!("strata {args:?} {e}; starting it again on other ports");
                }
                Err(e) => panic!("strata {args:?} {e}"),
            }
        }
    }

    fn spawn_once(args: &[&str], with_grpc: bool, log: Option<&std::path::Path>) -> StrataProcess {
        let http = format!("127.0.0.1:{}", crate::free_port());
        let grpc = format!("127.0.0.1:{}", crate::free_port());
        let mut command = Command::new(crate::strata_binary());
        command.args(args).args(["--http-address", &http]);
        if with_grpc {
            command.args(["--grpc-address", &grpc]);
        }
        command.stdout(Stdio::null());
        match log {
            Some(path) => {
                command
                    .env("STRATA_LOG_LEVEL", "info")
                    .stderr(std::fs::File::create(path).unwrap());
            }
            None => {
                command
                    .env("STRATA_LOG_LEVEL", "warn")
                    .stderr(Stdio::inherit());
            }
        }
        let child = command.spawn().unwrap();
        StrataProcess {
            child,
            http,
            grpc,
            log: log.map(std::path::Path::to_path_buf),
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let url = format!("http://{}/-/ready", self.http);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited before ready: {status}"));
            }
            if let Ok(resp) = ureq::get(&url).call()
                && resp.status() == 200
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready after {timeout:?}"));
            }
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The body of `GET <http>/<path>`.
    pub fn http_get(&self, path: &str) -> String {
        let mut resp = ureq::get(&format!("http://{}{path}", self.http))
            .call()
            .unwrap();
        resp.body_mut().read_to_string().unwrap()
    }

    /// What the process has logged so far (empty unless started with a log file).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for a log line containing every one of `parts`; returns it.
    pub fn wait_log(&self, parts: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?} after {timeout:?}; log:\n{log}"
            );
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The gRPC endpoint URL.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

impl Drop for StrataProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls Series and decodes every chunk; returns samples per series, trimmed to the
/// request's time range.
pub async fn series_samples(
    url: &str,
    request: SeriesRequest,
) -> Result<BTreeMap<Labels, Vec<Sample>>, tonic::Status> {
    let mut client = StoreClient::connect(url.to_owned()).await.unwrap();
    let (mint, maxt) = (request.min_time, request.max_time);
    let mut stream = client.series(request).await?.into_inner();
    let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    let mut previous: Option<Labels> = None;
    while let Some(frame) = stream.message().await? {
        let series = match frame.result {
            Some(series_response::Result::Series(s)) => vec![s],
            Some(series_response::Result::Batch(b)) => b.series,
            _ => continue,
        };
        for s in series {
            let labels = strata_storepb::convert::labels_from_proto(&s.labels);
            if let Some(prev) = &previous {
                assert!(prev < &labels, "series out of order: {prev} then {labels}");
            }
            previous = Some(labels.clone());
            let samples = out.entry(labels).or_default();
            for c in s.chunks {
                let raw = c.raw.unwrap();
                let (mut ts, mut vs) = (Vec::new(), Vec::new());
                strata_chunkenc::decode_xor(&raw.data, &mut ts, &mut vs).unwrap();
                assert_eq!(raw.hash, strata_storepb::convert::chunk_hash(&raw.data));
                samples.extend(
                    ts.into_iter()
                        .zip(vs)
                        .filter(|(t, _)| *t >= mint && *t <= maxt)
                        .map(|(t, v)| Sample { t, v }),
                );
            }
        }
    }
    Ok(out)
}

/// The external labels a Store API endpoint announces in its Info answer (the first label
/// set), empty when the call fails.
pub async fn info_labels(url: &str) -> Labels {
    let Ok(mut client) =
        strata_storepb::info::info_client::InfoClient::connect(url.to_owned()).await
    else {
        return Labels::default();
    };
    let Ok(resp) = client.info(strata_storepb::info::InfoRequest {}).await else {
        return Labels::default();
    };
    resp.into_inner()
        .label_sets
        .first()
        .map(|set| strata_storepb::convert::labels_from_proto(&set.labels))
        .unwrap_or_default()
}
