//! `strata sidecar` beside a real Prometheus 2.42 (scraping itself every second, cutting
//! blocks every minute): blocks appear in the bucket with Thanos metas, byte-identical to
//! Prometheus' files and readable by our block reader with the samples Prometheus serves;
//! the Store API returns the samples Prometheus' own API returns; a restart ships nothing
//! twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strata_e2e::prometheus::Prometheus;
use strata_e2e::store_api::{StrataProcess, series_samples};
use strata_objstore::Bucket;
use strata_storepb::SeriesRequest;
use strata_tsdb::{BlockMeta, BlockReader};
use strata_types::{Labels, Matcher};

const EXT: [(&str, &str); 2] = [("cluster", "eu1"), ("replica", "0")];

async fn uploaded_blocks(bucket: &Bucket) -> Vec<BlockMeta> {
    let mut out = Vec::new();
    for entry in bucket.iter("").await.unwrap() {
        let Some(id) = entry.strip_suffix('/') else {
            continue;
        };
        if let Ok(bytes) = bucket.get(&format!("{id}/meta.json")).await {
            out.push(BlockMeta::parse(&bytes).unwrap());
        }
    }
    out.sort_by_key(|m| m.min_time);
    out
}

fn sidecar(prometheus: &Prometheus, bucket_yaml: &str) -> StrataProcess {
    StrataProcess::start(&[
        "sidecar",
        "--prometheus.url",
        &prometheus.url(),
        "--tsdb.path",
        prometheus.data_dir.to_str().unwrap(),
        "--objstore.config",
        bucket_yaml,
        "--shipper.sync-interval",
        "2s",
        "--prometheus.get_config_interval",
        "2s",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_ships_blocks_and_serves_recent_data() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start_scraping_itself(&dir.path().join("prom"), &EXT);
    let bucket_yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    let bucket = Bucket::from_yaml(&bucket_yaml, None).unwrap();
    let side = sidecar(&prometheus, &bucket_yaml);

    // Recent data over the Store API equals Prometheus' raw samples.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (now_s, raw) = loop {
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            .floor();
        let raw = prometheus.query("up[1m]", now_s);
        let points = raw["data"]["result"][0]["values"]
            .as_array()
            .map_or(0, Vec::len);
        if points >= 3 {
            break (now_s, raw);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no samples of up: {raw}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let result = raw["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{raw}");
    let want: Vec<(i64, f64)> = result[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                p[1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert!(want.len() >= 3, "{raw}");
    let end = (now_s * 1000.0) as i64;
    let request = SeriesRequest {
        min_time: end - 60_000 + 1,
        max_time: end,
        matchers: vec![strata_storepb::convert::matcher_to_proto(&Matcher::equal(
            "__name__", "up",
        ))],
        ..Default::default()
    };
    let got = series_samples(&side.grpc_url(), request).await.unwrap();
    let mut want_labels = Labels::from_pairs([
        ("__name__", "up"),
        (
            "instance",
            &format!("127.0.0.1:{}", prometheus.url().rsplit(':').next().unwrap()),
        ),
        ("job", "prometheus"),
    ])
    .to_builder();
    for (k, v) in EXT {
        want_labels.set(k, v);
    }
    let want_labels = want_labels.build();
    let samples: Vec<(i64, f64)> = got[&want_labels].iter().map(|s| (s.t, s.v)).collect();
    assert_eq!(samples, want, "{got:?}");

    // Blocks appear in the bucket within a few minutes, each complete and as Prometheus wrote it.
    let deadline = Instant::now() + Duration::from_secs(300);
    let metas = loop {
        let metas = uploaded_blocks(&bucket).await;
        if metas.len() >= 2 {
            break metas;
        }
        assert!(Instant::now() < deadline, "no blocks shipped: {metas:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    for meta in &metas {
        let cut = std::fs::metadata(prometheus.data_dir.join(&meta.ulid).join("meta.json"))
            .and_then(|m| m.modified());
        let shipped =
            std::fs::metadata(dir.path().join("bucket").join(&meta.ulid).join("meta.json"))
                .and_then(|m| m.modified());
        if let (Ok(cut), Ok(shipped)) = (cut, shipped) {
            eprintln!(
                "block {}: cut to meta.json in the bucket: {} ms",
                meta.ulid,
                shipped.duration_since(cut).map_or(0, |d| d.as_millis())
            );
        }
    }
    let local = dir.path().join("download");
    for meta in &metas {
        let thanos = meta.thanos.as_ref().unwrap();
        assert_eq!(thanos.source, "sidecar");
        assert_eq!(
            thanos.labels,
            EXT.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        );
        assert_eq!(thanos.downsample.resolution, 0);
        let block_dir = local.join(&meta.ulid);
        std::fs::create_dir_all(block_dir.join("chunks")).unwrap();
        for file in &thanos.files {
            let object = format!("{}/{}", meta.ulid, file.rel_path);
            let bytes = bucket.get(&object).await.unwrap();
            if let Some(size) = file.size_bytes {
                assert_eq!(bytes.len() as u64, size, "{object}");
            }
            if file.rel_path != "meta.json" {
                // Byte-identical to Prometheus' file (if Prometheus still holds the block).
                if let Ok(original) =
                    std::fs::read(prometheus.data_dir.join(&meta.ulid).join(&file.rel_path))
                {
                    assert_eq!(bytes.as_ref(), original.as_slice(), "{object}");
                }
            }
            std::fs::write(block_dir.join(&file.rel_path), &bytes).unwrap();
        }
        // Our reader reads it; its `up` samples are the ones Prometheus serves for that range.
        let block = BlockReader::open(&block_dir).unwrap();
        let refs = block.select(&[Matcher::equal("__name__", "up")]).unwrap();
        assert_eq!(refs.len(), 1);
        let ours = block
            .samples(
                refs[0],
                &block.series(refs[0]).unwrap(),
                meta.min_time,
                meta.max_time - 1,
            )
            .unwrap();
        let end_s = (meta.max_time - 1) as f64 / 1000.0;
        let range_s = (meta.max_time - meta.min_time) / 1000 + 2;
        let theirs = prometheus.query(&format!("up[{range_s}s]"), end_s);
        let theirs: Vec<i64> = theirs["data"]["result"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
            .filter(|t| *t >= meta.min_time && *t < meta.max_time)
            .collect();
        let ours_t: Vec<i64> = ours.iter().map(|s| s.t).collect();
        assert_eq!(ours_t, theirs, "block {}", meta.ulid);
        assert!(ours.iter().all(|s| s.v == 1.0));
    }
    let shipper: serde_json::Value = serde_json::from_slice(
        &std::fs::read(prometheus.data_dir.join("thanos.shipper.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shipper["version"], 1);
    let listed: Vec<&str> = shipper["uploaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for meta in &metas {
        assert!(listed.contains(&meta.ulid.as_str()), "{listed:?}");
    }
    let metrics = side.http_get("/metrics");
    assert!(
        metrics.contains("thanos_shipper_uploads_total"),
        "{metrics}"
    );

    // A restart uploads nothing twice: every block's meta.json keeps its upload.
    let before: Vec<String> = metas.iter().map(|m| m.ulid.clone()).collect();
    let mtimes: Vec<_> = before
        .iter()
        .map(|id| {
            std::fs::metadata(dir.path().join("bucket").join(id).join("meta.json"))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    drop(side);
    let side = sidecar(&prometheus, &bucket_yaml);
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (id, mtime) in before.iter().zip(&mtimes) {
        let now = std::fs::metadata(dir.path().join("bucket").join(id).join("meta.json"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(&now, mtime, "{id} uploaded again");
    }
    drop(side);
}

/// Checks that every block listed in the bucket (a directory with meta.json) is complete:
/// every file of its `thanos.files` is there with its size. Returns the listed blocks.
async fn check_complete(bucket: &Bucket) -> Vec<String> {
    let mut listed = Vec::new();
    let Ok(entries) = bucket.iter("").await else {
        return listed; // the server is down
    };
    for entry in entries {
        let Some(id) = entry.strip_suffix('/') else {
            continue;
        };
        let Ok(bytes) = bucket.get(&format!("{id}/meta.json")).await else {
            continue;
        };
        let meta = BlockMeta::parse(&bytes).unwrap();
        let Ok(objects) = bucket.iter_recursive(id).await else {
            continue;
        };
        for file in &meta.thanos.as_ref().unwrap().files {
            let Some(size) = file.size_bytes else {
                continue;
            };
            let name = format!("{id}/{}", file.rel_path);
            let found = objects.iter().find(|(n, _)| *n == name);
            assert_eq!(
                found.map(|(_, s)| *s),
                Some(size),
                "block {id} listed before {name} was complete"
            );
        }
        listed.push(id.to_owned());
    }
    listed
}

/// Bucket outages and SIGKILLs of the sidecar at pseudo-random points during uploads:
/// afterwards the bucket holds every block Prometheus cut exactly once and complete, and no
/// incomplete block was ever listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_survives_bucket_outages_and_kills() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start_scraping_itself(&dir.path().join("prom"), &EXT);
    let mut server = strata_e2e::s3::S3Server::start("thanos");
    let bucket_yaml = server.bucket_yaml();
    let bucket = Bucket::from_yaml(&format!("{bucket_yaml}  max_retries: 1\n"), None).unwrap();
    let mut side = Some(sidecar(&prometheus, &bucket_yaml));
    let mut rng = strata_e2e::data::Rng::new(42);
    let start = Instant::now();
    let mut kills = 0;
    let mut outages = 0;
    // Faults for three and a half minutes: at least three blocks are cut meanwhile.
    while start.elapsed() < Duration::from_secs(210) {
        tokio::time::sleep(Duration::from_millis(500 + rng.below(2500))).await;
        check_complete(&bucket).await;
        if rng.below(2) == 0 {
            drop(side.take()); // SIGKILL
            kills += 1;
            tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
            side = Some(sidecar(&prometheus, &bucket_yaml));
        } else {
            server.stop();
            outages += 1;
            tokio::time::sleep(Duration::from_millis(1000 + rng.below(4000))).await;
            server.restart();
        }
    }
    // Let it catch up, then every local block with samples must be in the bucket, complete.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let listed = check_complete(&bucket).await;
        let mut local: Vec<String> = std::fs::read_dir(&prometheus.data_dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("meta.json").exists())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.parse::<ulid::Ulid>().ok().map(|_| name)
            })
            .collect();
        local.sort();
        let missing: Vec<&String> = local.iter().filter(|l| !listed.contains(l)).collect();
        if missing.is_empty() && local.len() >= 3 {
            eprintln!(
                "{} blocks shipped complete through {kills} kills and {outages} bucket outages",
                local.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "blocks missing from the bucket: {missing:?} (local {local:?})"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(kills > 0 && outages > 0);
    drop(side);
}

/// Prometheus behind TLS and basic auth (`--web.config.file`): with
/// `--prometheus.http-client` naming the CA and the credentials the sidecar gets ready (it
/// read the external labels) and serves Prometheus' data; with a wrong password it stays
/// unready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_reaches_prometheus_over_tls_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let ca = strata_e2e::certs::TestCa::new("prometheus test CA");
    let (cert, key) = ca
        .leaf("prometheus", &["localhost", "127.0.0.1"])
        .write(dir.path(), "prometheus");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    // bcrypt of "secret" (cost 10), as Prometheus' web config wants it.
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  strata: $2b$10$NVVRUpa7koc9QiQJ0HdyGOjgn8bcbzg.RGXi6BT/h3pDl3EkSpdTm\n",
        cert.display(),
        key.display()
    );
    let prometheus =
        Prometheus::start_scraping_itself_with_web_config(&dir.path().join("prom"), &EXT, &web);
    let url = format!("https://127.0.0.1:{}", prometheus.port());
    let sidecar_args = |password: &str| -> Vec<String> {
        let client = format!(
            "basic_auth:\n  username: strata\n  password: {password}\ntls_config:\n  ca_file: {}\n",
            ca_file.display()
        );
        [
            "sidecar",
            "--prometheus.url",
            &url,
            "--tsdb.path",
            prometheus.data_dir.to_str().unwrap(),
            "--prometheus.http-client",
            &client,
            "--prometheus.get_config_interval",
            "1s",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let args = sidecar_args("secret");
    let side = StrataProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // Ready means the external labels came through TLS and basic auth; now data does too.
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let request = SeriesRequest {
            min_time: now - 600_000,
            max_time: now,
            matchers: vec![strata_storepb::convert::matcher_to_proto(&Matcher::equal(
                "__name__", "up",
            ))],
            ..Default::default()
        };
        let got = series_samples(&side.grpc_url(), request).await.unwrap();
        if got.values().any(|samples| !samples.is_empty()) || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (labels, samples) = got.iter().next().expect("an up series");
    assert_eq!(labels.get("cluster"), Some("eu1"));
    assert!(!samples.is_empty());

    // The wrong password: Prometheus answers 401 and the sidecar never gets ready.
    let http = format!("127.0.0.1:{}", strata_e2e::free_port());
    let grpc = format!("127.0.0.1:{}", strata_e2e::free_port());
    let mut wrong = std::process::Command::new(strata_e2e::strata_binary())
        .args(sidecar_args("wrong"))
        .args(["--http-address", &http, "--grpc-address", &grpc])
        .env("STRATA_LOG_LEVEL", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Ok(resp) = ureq::get(&format!("http://{http}/-/ready")).call() {
            statuses.push(resp.status().as_u16());
        }
    }
    let exited = wrong.try_wait().unwrap();
    wrong.kill().unwrap();
    wrong.wait().unwrap();
    assert!(exited.is_none(), "the sidecar exited: {exited:?}");
    assert!(
        !statuses.contains(&200),
        "ready with a wrong password: {statuses:?}"
    );
}

/// `--reloader.config-file` and `--reloader.config-envsubst-file`: the sidecar writes the
/// watched configuration with `$(VAR)` substituted where Prometheus reads it and makes
/// Prometheus reload, at start and on every change; the new external labels reach the
/// sidecar too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_reloads_prometheus_when_its_config_changes() {
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("prometheus.yml.in");
    let output = dir.path().join("prometheus.yml");
    let config = |cluster: &str, replica: &str| {
        format!(
            "global:\n  scrape_interval: 1s\n  external_labels:\n    cluster: {cluster}\n    replica: \"{replica}\"\nscrape_configs: []\n"
        )
    };
    // Prometheus starts on a plain config; the watched one references $(HOME).
    std::fs::write(&output, config("eu1", "before")).unwrap();
    std::fs::write(&watched, config("eu1", "$(HOME)")).unwrap();
    let home = std::env::var("HOME").unwrap();
    let prometheus = Prometheus::start_with_config_file(&output, &dir.path().join("prom"));
    let side = StrataProcess::start(&[
        "sidecar",
        "--prometheus.url",
        &prometheus.url(),
        "--tsdb.path",
        prometheus.data_dir.to_str().unwrap(),
        "--reloader.config-file",
        watched.to_str().unwrap(),
        "--reloader.config-envsubst-file",
        output.to_str().unwrap(),
        "--reloader.watch-interval",
        "1s",
        "--prometheus.get_config_interval",
        "1s",
    ]);
    let loaded = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = prometheus.get_json("/api/v1/status/config", &[]);
            let yaml = answer["data"]["yaml"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if yaml.contains(want) || Instant::now() > deadline {
                return yaml;
            }
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // At start: substituted and reloaded.
    let yaml = loaded(&format!("replica: {home}"));
    assert!(yaml.contains(&format!("replica: {home}")), "{yaml}");
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        config("eu1", &home)
    );
    // On a change: again, and the sidecar serves the new external labels.
    std::fs::write(&watched, config("eu2", "$(HOME)")).unwrap();
    let yaml = loaded("cluster: eu2");
    assert!(yaml.contains("cluster: eu2"), "{yaml}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = strata_e2e::store_api::info_labels(&side.grpc_url()).await;
        if info.get("cluster") == Some("eu2") {
            break;
        }
        assert!(Instant::now() < deadline, "sidecar still has {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
