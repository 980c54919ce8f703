//! `strata compact` end to end on a FILESYSTEM bucket of real Prometheus blocks (written by
//! promtool): compaction into 8h blocks that promtool and a real Prometheus accept with the
//! same answers, vertical compaction of replicas, overlap handling, retention, and a crash
//! test that kills the compactor at random points and checks that the bucket always holds
//! every sample exactly once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_block::{FetchFilter, MetaFetcher};
use strata_e2e::data::{DataSet, Rng};
use strata_e2e::prometheus::{Prometheus, compare_answers, parse_answer};
use strata_e2e::store_api::upload_block;
use strata_e2e::{block_dirs, promtool_create_blocks, require_tool, run, strata_binary};
use strata_objstore::Bucket;
use strata_tsdb::{BlockMeta, BlockReader};
use strata_types::{Labels, Sample};

/// A 2d-aligned start, so 2h blocks fill 8h and 2d windows.
const START_S: i64 = 1_699_833_600;

fn bucket_yaml(dir: &Path) -> String {
    format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.display()
    )
}

fn promtool_blocks(data: &DataSet, dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let input = dir.join("data.om");
    std::fs::write(&input, data.to_openmetrics()).unwrap();
    let out = dir.join("blocks");
    promtool_create_blocks(&input, &out);
    block_dirs(&out)
}

fn upload_all(bucket: &Bucket, blocks: &[PathBuf], ext: &[(&str, &str)]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for b in blocks {
            upload_block(bucket, b, ext).await;
        }
    });
}

fn with_ext(data: &DataSet, ext: &[(&str, &str)]) -> BTreeMap<Labels, Vec<Sample>> {
    data.series()
        .into_iter()
        .map(|(l, s)| {
            let mut b = l.to_builder();
            for (k, v) in ext {
                b.set(*k, *v);
            }
            (b.build(), s)
        })
        .collect()
}

/// The blocks a store gateway serves (metas present, superseded blocks hidden; with
/// `honour_marks`, blocks marked for deletion hidden at once).
fn served(bucket: &Bucket, honour_marks: bool) -> BTreeMap<ulid::Ulid, BlockMeta> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fetcher = MetaFetcher::new(bucket.clone(), None, 8);
    // Raw data only: downsampled copies are checked on their own.
    let filter = FetchFilter {
        ignore_deletion_marks_delay: if honour_marks {
            Duration::ZERO
        } else {
            Duration::from_secs(24 * 3600)
        },
        ..FetchFilter::default()
    };
    let mut metas = rt.block_on(fetcher.fetch(&filter)).unwrap().metas;
    metas.retain(|_, m| strata_block::resolution(m) == 0);
    metas
}

/// Every sample of the served blocks, with external labels; panics on a sample present
/// twice (a doubled block).
fn bucket_samples(
    bucket_dir: &Path,
    metas: &BTreeMap<ulid::Ulid, BlockMeta>,
) -> BTreeMap<Labels, Vec<Sample>> {
    let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for (id, meta) in metas {
        let block = BlockReader::open(&bucket_dir.join(id.to_string())).unwrap();
        let ext = strata_block::external_labels(meta);
        for r in block.index().all_postings().unwrap() {
            let entry = block.series(r).unwrap();
            let samples = block.samples(r, &entry, i64::MIN, i64::MAX).unwrap();
            let mut b = entry.labels.to_builder();
            for l in &ext {
                b.set(&l.name, &l.value);
            }
            out.entry(b.build()).or_default().extend(samples);
        }
    }
    for (labels, samples) in &mut out {
        samples.sort_by_key(|s| s.t);
        for w in samples.windows(2) {
            assert!(
                w[0].t != w[1].t,
                "{labels}: sample at {} present twice",
                w[0].t
            );
        }
    }
    out
}

fn assert_same(
    got: &BTreeMap<Labels, Vec<Sample>>,
    want: &BTreeMap<Labels, Vec<Sample>>,
    what: &str,
) -> usize {
    assert_eq!(got.len(), want.len(), "{what}: series count");
    let mut n = 0;
    for (labels, w) in want {
        let g = got
            .get(labels)
            .unwrap_or_else(|| panic!("{what}: {labels} missing"));
        assert_eq!(g.len(), w.len(), "{what}: {labels}: sample count");
        for (a, b) in g.iter().zip(w) {
            let same = a.v.to_bits() == b.v.to_bits() || (a.v.is_nan() && b.v.is_nan());
            assert!(a.t == b.t && same, "{what}: {labels}: {a:?} vs {b:?}");
        }
        n += w.len();
    }
    n
}

fn compact_cmd(bucket_dir: &Path, data_dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(strata_binary());
    c.args(["compact", "--objstore.config", &bucket_yaml(bucket_dir)])
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--http-address",
            &format!("127.0.0.1:{}", strata_e2e::free_port()),
            "--consistency-delay=0s",
        ])
        .args(extra)
        .env("STRATA_LOG_LEVEL", "info")
        .stdout(Stdio::null());
    c
}

fn compact_once(bucket_dir: &Path, data_dir: &Path, extra: &[&str]) -> String {
    let out = compact_cmd(bucket_dir, data_dir, extra).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if std::env::var_os("COMPACT_LOG").is_some() {
        eprintln!("{stderr}");
    }
    assert!(
        out.status.success(),
        "strata compact failed: {}\n{stderr}",
        out.status
    );
    stderr
}

#[test]
fn compacts_into_valid_blocks_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(21, START_S, 20);
    let blocks = promtool_blocks(&data, dir.path());
    assert_eq!(blocks.len(), 10, "promtool wrote {} blocks", blocks.len());
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let bucket = Bucket::from_yaml(&bucket_yaml(&bucket_dir), None).unwrap();
    let ext = [("cluster", "eu1")];
    upload_all(&bucket, &blocks, &ext);
    let want = with_ext(&data, &ext);

    let data_dir = dir.path().join("compactor");
    compact_once(&bucket_dir, &data_dir, &["--delete-delay=0s"]);
    let metas = served(&bucket, true);
    let levels: Vec<(u32, usize)> = metas
        .values()
        .map(|m| (m.compaction.level, m.compaction.sources.len()))
        .collect();
    // 20h of 2h blocks: [0,8h) and [8h,16h) become level-2 blocks of 4 sources; the
    // window [16h,24h) is still filling (its newest block is the newest of all).
    assert_eq!(
        levels.iter().filter(|l| **l == (2, 4)).count(),
        2,
        "{levels:?}"
    );
    assert_eq!(
        levels.iter().filter(|l| **l == (1, 1)).count(),
        2,
        "{levels:?}"
    );
    let samples = assert_same(
        &bucket_samples(&bucket_dir, &metas),
        &want,
        "after pass 1 (marks honoured)",
    );
    assert_same(
        &bucket_samples(&bucket_dir, &served(&bucket, false)),
        &want,
        "after pass 1 (marks not yet honoured)",
    );
    for meta in metas.values().filter(|m| m.compaction.level == 2) {
        let thanos = meta.thanos.as_ref().unwrap();
        assert_eq!(thanos.source, "compactor");
        assert_eq!(
            thanos.labels.get("cluster").map(String::as_str),
            Some("eu1")
        );
        assert_eq!(meta.compaction.parents.len(), 4);
        let span = meta.max_time - meta.min_time;
        assert!(span > 7 * 3_600_000 && span <= 8 * 3_600_000, "span {span}");
    }
    eprintln!(
        "pass 1: {} blocks served, {samples} samples exact",
        metas.len()
    );

    // The next pass deletes the marked sources (--delete-delay=0s).
    compact_once(&bucket_dir, &data_dir, &["--delete-delay=0s"]);
    let dirs: Vec<String> = std::fs::read_dir(&bucket_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(dirs.len(), 4, "blocks left in the bucket: {dirs:?}");
    let metas = served(&bucket, true);
    assert_same(&bucket_samples(&bucket_dir, &metas), &want, "after pass 2");

    // promtool accepts the compacted blocks, and a real Prometheus answers the same on
    // them as on promtool's originals.
    let compacted_dir = dir.path().join("compacted");
    std::fs::create_dir_all(&compacted_dir).unwrap();
    for id in metas.keys() {
        strata_e2e::copy_dir(
            &bucket_dir.join(id.to_string()),
            &compacted_dir.join(id.to_string()),
        );
        let promtool = require_tool("promtool");
        if metas[id].compaction.level == 2 {
            run(Command::new(&promtool)
                .args(["tsdb", "analyze"])
                .arg(&compacted_dir)
                .arg(id.to_string()));
        }
    }
    let listing = run(Command::new(require_tool("promtool"))
        .args(["tsdb", "list"])
        .arg(&compacted_dir));
    assert_eq!(listing.lines().count(), 5, "{listing}");
    let original = Prometheus::start_on_blocks(&dir.path().join("blocks"));
    let compacted = Prometheus::start_on_blocks(&compacted_dir);
    let end = (data.end_ms / 1000) as f64;
    let start = (data.start_ms / 1000) as f64;
    let queries = [
        "up",
        "sum by (job) (rate(http_requests_total[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[10m])))",
        "count({__name__=~\".+\"})",
        "max_over_time(temperature_celsius[1h])",
    ];
    let mut compared = 0;
    for q in queries {
        for (s, e, step) in [(start, end, 600.0), (start + 7.3, start + 9000.3, 61.0)] {
            let a = parse_answer(&original.query_range(q, s, e, step), &[]).unwrap();
            let b = parse_answer(&compacted.query_range(q, s, e, step), &[]).unwrap();
            if let Some(diff) = compare_answers(q, &b, &a) {
                panic!("{q}: {diff}");
            }
            compared += 1;
        }
    }
    eprintln!("{compared} range queries equal on original and compacted blocks");
}

#[test]
fn replicas_are_merged_and_overlaps_without_replica_labels_skip_only_their_group() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(22, START_S, 8);
    let a = promtool_blocks(&data, &dir.path().join("a"));
    let b = promtool_blocks(&data, &dir.path().join("b"));
    let c = promtool_blocks(&data, &dir.path().join("c"));
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let bucket = Bucket::from_yaml(&bucket_yaml(&bucket_dir), None).unwrap();
    upload_all(&bucket, &a, &[("cluster", "eu1"), ("replica", "a")]);
    upload_all(&bucket, &b, &[("cluster", "eu1"), ("replica", "b")]);
    // Same labels twice: overlapping blocks of one stream.
    upload_all(&bucket, &c, &[("cluster", "us1")]);
    let c2 = promtool_blocks(&data, &dir.path().join("c2"));
    upload_all(&bucket, &c2, &[("cluster", "us1")]);
    let data_dir = dir.path().join("compactor");

    // Without replica labels: the us1 group overlaps and is skipped with a log line
    // naming its blocks; the eu1 replicas are separate streams and are left as they are.
    let log = compact_once(&bucket_dir, &data_dir, &["--delete-delay=0s"]);
    assert!(log.contains("vertical compaction is off"), "{log}");
    let c_ids: Vec<String> = c
        .iter()
        .chain(&c2)
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(
        c_ids.iter().any(|id| log.contains(id.as_str())),
        "the log names the blocks: {log}"
    );

    // With --deduplication.replica-label replica: the replicas become one stream.
    compact_once(
        &bucket_dir,
        &data_dir,
        &[
            "--delete-delay=0s",
            "--deduplication.replica-label=replica",
            "--compact.enable-vertical-compaction",
        ],
    );
    compact_once(
        &bucket_dir,
        &data_dir,
        &[
            "--delete-delay=0s",
            "--deduplication.replica-label=replica",
            "--compact.enable-vertical-compaction",
        ],
    );
    let metas = served(&bucket, true);
    let mut want = with_ext(&data, &[("cluster", "eu1")]);
    want.extend(with_ext(&data, &[("cluster", "us1")]));
    let got = bucket_samples(&bucket_dir, &metas);
    let n = assert_same(&got, &want, "after vertical compaction");
    assert!(
        metas
            .values()
            .all(|m| strata_block::external_labels(m).get("replica").is_none())
    );
    eprintln!(
        "vertical compaction: {} blocks, {n} samples exact",
        metas.len()
    );
}

#[test]
fn retention_marks_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(23, START_S, 4);
    let blocks = promtool_blocks(&data, dir.path());
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let bucket = Bucket::from_yaml(&bucket_yaml(&bucket_dir), None).unwrap();
    upload_all(&bucket, &blocks, &[("cluster", "eu1")]);
    // The data is from 2023: 30 days of raw retention deletes all of it.
    let data_dir = dir.path().join("compactor");
    compact_once(
        &bucket_dir,
        &data_dir,
        &["--retention.resolution-raw=30d", "--delete-delay=0s"],
    );
    assert!(served(&bucket, true).is_empty());
    compact_once(
        &bucket_dir,
        &data_dir,
        &["--retention.resolution-raw=30d", "--delete-delay=0s"],
    );
    let left = std::fs::read_dir(&bucket_dir).unwrap().count();
    assert_eq!(left, 0, "all blocks deleted");
}

#[test]
fn killed_at_random_points_never_loses_or_doubles_samples() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(24, START_S, 52);
    let blocks = promtool_blocks(&data, dir.path());
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let bucket = Bucket::from_yaml(&bucket_yaml(&bucket_dir), None).unwrap();
    let ext = [("cluster", "eu1")];
    upload_all(&bucket, &blocks, &ext);
    let want = with_ext(&data, &ext);
    let data_dir = dir.path().join("compactor");
    let pristine = dir.path().join("pristine");
    strata_e2e::copy_dir(&bucket_dir, &pristine);

    // How long an uninterrupted pass takes on this machine (on a copy).
    let probe = dir.path().join("probe");
    strata_e2e::copy_dir(&pristine, &probe);
    let t = Instant::now();
    compact_once(
        &probe,
        &dir.path().join("probe-data"),
        &["--delete-delay=0s", "--downsampling.disable"],
    );
    let pass = t.elapsed();
    let kill_window_ms = pass.as_millis().max(50) as u64;

    // Runs until 50 of them were SIGKILLed at a random point within the duration of an
    // uninterrupted pass (at most 200 runs); whenever a run finishes its pass, the bucket
    // is reset to the original blocks so the next runs have work to be interrupted in.
    let mut rng = Rng::new(7);
    let started = Instant::now();
    let (mut killed, mut finished) = (0, 0);
    let reset = |bucket_dir: &Path| {
        let _ = std::fs::remove_dir_all(bucket_dir);
        let _ = std::fs::remove_dir_all(&data_dir);
        strata_e2e::copy_dir(&pristine, bucket_dir);
    };
    reset(&bucket_dir);
    let mut run_no = 0;
    while killed < 50 {
        run_no += 1;
        assert!(run_no <= 200, "only {killed} kills in 200 runs");
        let mut child = compact_cmd(
            &bucket_dir,
            &data_dir,
            &["--delete-delay=0s", "--downsampling.disable"],
        )
        .env("STRATA_LOG_LEVEL", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let deadline = Instant::now() + Duration::from_millis(rng.below(kill_window_ms));
        let mut exited = false;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                exited = true;
                break;
            }
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(2));
        }
        if !exited {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        for honour in [false, true] {
            let metas = served(&bucket, honour);
            assert_same(
                &bucket_samples(&bucket_dir, &metas),
                &want,
                &format!("run {run_no} (marks honoured: {honour})"),
            );
        }
        if exited {
            finished += 1;
            reset(&bucket_dir);
        }
    }
    // Then a run to the end, twice (the second deletes what the first marked).
    compact_once(
        &bucket_dir,
        &data_dir,
        &["--delete-delay=0s", "--downsampling.disable"],
    );
    compact_once(
        &bucket_dir,
        &data_dir,
        &["--delete-delay=0s", "--downsampling.disable"],
    );
    let metas = served(&bucket, true);
    let n = assert_same(&bucket_samples(&bucket_dir, &metas), &want, "final");
    let max_level = metas.values().map(|m| m.compaction.level).max().unwrap();
    assert!(max_level >= 3, "2d compaction reached: level {max_level}");
    // A kill between deleting a block's last file and removing its directories leaves
    // empty directories, and one between writing a staging file and renaming it leaves that
    // file: no objects, so invisible to every reader (and non-existent in S3).
    let dirs: Vec<String> = std::fs::read_dir(&bucket_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| holds_files(p))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let contents: Vec<String> = dirs
        .iter()
        .map(|d| {
            let mut files = Vec::new();
            for e in walk(&bucket_dir.join(d)) {
                files.push(e);
            }
            format!("{d}: {files:?}")
        })
        .collect();
    assert_eq!(
        dirs.len(),
        metas.len(),
        "no partial or marked blocks left: {contents:?} vs {:?}",
        metas.keys().map(ToString::to_string).collect::<Vec<_>>()
    );
    eprintln!(
        "crash test: {run_no} runs ({killed} killed mid-pass, {finished} finished first; uninterrupted pass {pass:?}) in {:?}; final {} blocks, {n} samples exact",
        started.elapsed(),
        metas.len()
    );
}

/// Whether `path` is a file or a directory with a file somewhere below it.
fn holds_files(path: &Path) -> bool {
    if !path.is_dir() {
        return !is_staging_file(path);
    }
    std::fs::read_dir(path)
        .unwrap()
        .any(|e| holds_files(&e.unwrap().path()))
}

/// A FILESYSTEM bucket writes each object to `<file>#<digits>` and renames it into place
/// (as object_store's LocalFileSystem does); a kill between the two leaves the staging file,
/// which no listing shows, so no reader sees it (S3 has no such state).
fn is_staging_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once('#'))
        .is_some_and(|(_, digits)| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

fn tools(bucket_dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(strata_binary())
        .args(["tools", "bucket"])
        .args(args)
        .args(["--objstore.config", &bucket_yaml(bucket_dir)])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn bucket_tools_list_verify_mark_cleanup_and_web() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(25, START_S, 6);
    let blocks = promtool_blocks(&data, &dir.path().join("a"));
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let bucket = Bucket::from_yaml(&bucket_yaml(&bucket_dir), None).unwrap();
    upload_all(&bucket, &blocks, &[("cluster", "eu1")]);
    let ids: Vec<String> = blocks
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();

    // ls / inspect: one row per block with exact figures.
    let (ok, text) = tools(&bucket_dir, &["inspect"]);
    assert!(ok, "{text}");
    assert_eq!(text.lines().count(), 1 + blocks.len(), "{text}");
    let first = BlockReader::open(&blocks[0]).unwrap();
    let line = text.lines().find(|l| l.starts_with(&ids[0])).unwrap();
    assert!(
        line.contains(&format!(" {} ", first.meta().stats.num_samples)),
        "{line}"
    );
    assert!(line.contains("{cluster=\"eu1\"}"), "{line}");
    let (ok, json) = tools(&bucket_dir, &["ls", "-o", "json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["blocks"].as_array().unwrap().len(), blocks.len());

    // verify: a clean bucket, then an overlap and a corrupted index.
    let (ok, text) = tools(&bucket_dir, &["verify"]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("{} blocks checked, 0 issues", blocks.len())),
        "{text}"
    );
    let again = promtool_blocks(&data, &dir.path().join("b"));
    upload_all(&bucket, &again[..1], &[("cluster", "eu1")]);
    let again_id = again[0].file_name().unwrap().to_string_lossy().to_string();
    let index = bucket_dir.join(&ids[1]).join("index");
    let mut bytes = std::fs::read(&index).unwrap();
    // A byte inside the symbol table (after magic, version, length and count).
    bytes[20] ^= 0xff;
    std::fs::write(&index, bytes).unwrap();
    let (ok, text) = tools(&bucket_dir, &["verify"]);
    assert!(!ok, "verify must fail: {text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("overlap") && l.contains(&again_id)),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("index") && l.contains(&ids[1])),
        "{text}"
    );

    // mark, then cleanup deletes the marked block (and only it).
    let (ok, text) = tools(
        &bucket_dir,
        &[
            "mark",
            "--id",
            &again_id,
            "--marker",
            "deletion-mark.json",
            "--details",
            "test",
        ],
    );
    assert!(ok && text.contains("1 of 1 blocks changed"), "{text}");
    let (ok, text) = tools(
        &bucket_dir,
        &["mark", "--id", &ids[0], "--marker", "no-compact-mark.json"],
    );
    assert!(ok, "{text}");
    assert!(
        bucket_dir
            .join(&ids[0])
            .join("no-compact-mark.json")
            .is_file()
    );
    let (_, text) = tools(&bucket_dir, &["inspect"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&again_id) && l.contains("deletion")),
        "{text}"
    );
    let (ok, text) = tools(&bucket_dir, &["cleanup", "--delete-delay=0s"]);
    assert!(ok && text.contains("deleted 1 marked blocks"), "{text}");
    assert!(!bucket_dir.join(&again_id).exists());
    assert!(bucket_dir.join(&ids[0]).exists());

    // web: the timeline page and the JSON API.
    let port = strata_e2e::free_port();
    let mut child = Command::new(strata_binary())
        .args([
            "tools",
            "bucket",
            "web",
            "--http-address",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--objstore.config", &bucket_yaml(&bucket_dir)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        if let Ok(mut resp) = ureq::get(&format!("http://127.0.0.1:{port}/")).call() {
            break resp.body_mut().read_to_string().unwrap();
        }
        assert!(Instant::now() < deadline, "web did not come up");
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(100));
    };
    let api: serde_json::Value = serde_json::from_str(
        &ureq::get(&format!("http://127.0.0.1:{port}/api/v1/blocks"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    for id in &ids {
        assert!(page.contains(id.as_str()), "page lists {id}");
    }
    assert!(page.contains("class=\"lane\""));
    assert_eq!(
        api["data"]["blocks"].as_array().unwrap().len(),
        blocks.len()
    );
}

#[test]
fn blocks_spanning_40h_get_a_5m_copy_with_exact_aggregates() {
    use strata_chunkenc::aggr::AggrType;
    use strata_tsdb::downsample::{RES_5M, aggr_samples, apply_counter_resets};

    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(26, START_S, 52);
    let blocks = promtool_blocks(&data, dir.path());
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let bucket = Bucket::from_yaml(&bucket_yaml(&bucket_dir), None).unwrap();
    let ext = [("cluster", "eu1")];
    upload_all(&bucket, &blocks, &ext);
    let data_dir = dir.path().join("compactor");
    compact_once(&bucket_dir, &data_dir, &["--delete-delay=0s"]);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let all = rt
        .block_on(MetaFetcher::new(bucket.clone(), None, 8).fetch(&FetchFilter::default()))
        .unwrap()
        .metas;
    let five: Vec<&BlockMeta> = all
        .values()
        .filter(|m| strata_block::resolution(m) == RES_5M)
        .collect();
    assert_eq!(five.len(), 1, "one 5m block (of the 2d block)");
    let five = five[0];
    let raw_2d = all
        .values()
        .find(|m| strata_block::resolution(m) == 0 && m.max_time - m.min_time >= 40 * 3_600_000)
        .expect("the 2d raw block");
    assert_eq!(five.compaction.sources, raw_2d.compaction.sources);
    assert_eq!(
        (five.min_time, five.max_time),
        (raw_2d.min_time, raw_2d.max_time)
    );
    run(Command::new(require_tool("promtool"))
        .args(["tsdb", "analyze"])
        .arg(&bucket_dir)
        .arg(&five.ulid));

    // Every aggregate equals what the raw samples of the 2d block give per 5m window.
    let raw_block = BlockReader::open(&bucket_dir.join(&raw_2d.ulid)).unwrap();
    let agg_block = BlockReader::open(&bucket_dir.join(&five.ulid)).unwrap();
    let mut raw_series = BTreeMap::new();
    for r in raw_block.index().all_postings().unwrap() {
        let e = raw_block.series(r).unwrap();
        let s = raw_block.samples(r, &e, i64::MIN, i64::MAX).unwrap();
        raw_series.insert(e.labels, s);
    }
    let (mut windows, mut series_checked) = (0usize, 0usize);
    for r in agg_block.index().all_postings().unwrap() {
        let e = agg_block.series(r).unwrap();
        let raw: Vec<Sample> = raw_series[&e.labels]
            .iter()
            .filter(|s| !s.v.is_nan())
            .copied()
            .collect();
        let mut got: BTreeMap<AggrType, Vec<Sample>> = BTreeMap::new();
        let mut counters = Vec::new();
        for c in &e.chunks {
            let chunk = agg_block.chunks().chunk(c.chunk_ref).unwrap();
            for at in [AggrType::Count, AggrType::Sum, AggrType::Min, AggrType::Max] {
                got.entry(at)
                    .or_default()
                    .extend(aggr_samples(&chunk.data, at).unwrap());
            }
            counters.push(aggr_samples(&chunk.data, AggrType::Counter).unwrap());
        }
        // Expected windows from the raw samples.
        let mut want: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for s in &raw {
            want.entry(s.t - s.t % RES_5M).or_default().push(s.v);
        }
        let count = &got[&AggrType::Count];
        assert_eq!(count.len(), want.len(), "{}: windows", e.labels);
        for (i, (start, values)) in want.iter().enumerate() {
            let t = count[i].t;
            assert!(
                t >= *start && t < start + RES_5M,
                "{}: window stamp {t}",
                e.labels
            );
            assert_eq!(count[i].v, values.len() as f64, "{}: count", e.labels);
            let sum: f64 = values.iter().sum();
            let g = got[&AggrType::Sum][i].v;
            let same =
                g == sum || (g.is_nan() && sum.is_nan()) || (g - sum).abs() <= 1e-9 * sum.abs();
            assert!(same, "{}: sum {g} vs {sum}", e.labels);
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(got[&AggrType::Min][i].v, min, "{}: min", e.labels);
            assert_eq!(got[&AggrType::Max][i].v, max, "{}: max", e.labels);
            windows += 1;
        }
        // The counter ends at the first value plus every increase (resets counted whole).
        if raw.iter().any(|s| !s.v.is_finite()) {
            series_checked += 1;
            continue;
        }
        let mut total = raw[0].v;
        for w in raw.windows(2) {
            total += if w[1].v >= w[0].v {
                w[1].v - w[0].v
            } else {
                w[1].v
            };
        }
        let (mono, last) = apply_counter_resets(&counters);
        let end = mono.last().unwrap().v;
        let same = end == total
            || (end.is_nan() && total.is_nan())
            || (end - total).abs() <= 1e-9 * total.abs();
        assert!(same, "{}: counter {end} vs {total}", e.labels);
        assert_eq!(
            last,
            raw.last().unwrap().v,
            "{}: last raw value kept",
            e.labels
        );
        series_checked += 1;
    }
    eprintln!(
        "5m block: {series_checked} series, {windows} windows equal to the raw data's aggregates"
    );

    // Served by the store gateway and read by the querier: with max_source_resolution=5m,
    // *_over_time over a range that covers whole windows gives the raw answer.
    let store = strata_e2e::store_api::StrataProcess::start(&[
        "store",
        "--objstore.config",
        &bucket_yaml(&bucket_dir),
        "--data-dir",
        dir.path().join("store").to_str().unwrap(),
    ]);
    let query = strata_e2e::store_api::StrataProcess::start(&["query", "--endpoint", &store.grpc]);
    let base = format!("http://{}", query.http);
    let t_ms = START_S * 1000 + 24 * 3_600_000 - 1;
    let time = format!("{}.{:03}", t_ms / 1000, t_ms % 1000);
    let ask = |q: &str, res: &str| -> BTreeMap<String, f64> {
        let body = strata_e2e::prometheus::get_json(
            &base,
            "/api/v1/query",
            &[
                ("query", q),
                ("time", &time),
                ("max_source_resolution", res),
            ],
        );
        assert_eq!(body["status"], "success", "{q}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].to_string(),
                    r["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
                )
            })
            .collect()
    };
    for q in [
        "max_over_time(temperature_celsius[1h])",
        "min_over_time(temperature_celsius[1h])",
        "sum_over_time(temperature_celsius[1h])",
    ] {
        let raw = ask(q, "0s");
        let down = ask(q, "5m");
        assert!(!raw.is_empty(), "{q}");
        assert_eq!(
            raw.keys().collect::<Vec<_>>(),
            down.keys().collect::<Vec<_>>(),
            "{q}"
        );
        for (k, r) in &raw {
            let d = down[k];
            assert!(
                *r == d || (r - d).abs() <= 1e-9 * r.abs(),
                "{q} {k}: raw {r} vs 5m {d}"
            );
        }
    }
    // The 5m answer really comes from aggregates: 12 windows per hour instead of 240 samples.
    let raw = ask("count_over_time(temperature_celsius[1h])", "0s");
    let down = ask("count_over_time(temperature_celsius[1h])", "5m");
    assert!(raw.values().all(|v| *v > 200.0), "{raw:?}");
    assert!(down.values().all(|v| *v == 12.0), "{down:?}");
    // rate over the counter aggregate stays close to the raw rate.
    let raw = ask("sum(rate(http_requests_total[1h]))", "0s");
    let down = ask("sum(rate(http_requests_total[1h]))", "5m");
    let (r, d) = (
        raw.values().next().copied().unwrap(),
        down.values().next().copied().unwrap(),
    );
    assert!((r - d).abs() <= 0.05 * r.abs(), "rate raw {r} vs 5m {d}");
    eprintln!("querier at 5m: *_over_time equal to raw; sum(rate) raw {r} vs 5m {d}");

    // Thanos' rules, answer by answer: each query's expected value is computed by the
    // engine over the samples those rules select (the aggregate of the nearest enclosing
    // function or aggregation; raw data when the range is too short for a two-sample
    // function; the counter made monotonic from the first chunk the select returns).
    let ext_labels = |l: &Labels| {
        let mut b = l.to_builder();
        b.set("cluster", "eu1");
        b.build()
    };
    /// A series' chunks: min time, max time, bytes.
    type SeriesChunks = (Labels, Vec<(i64, i64, Vec<u8>)>);
    let chunks_of = |block: &BlockReader| {
        let mut out: Vec<SeriesChunks> = Vec::new();
        for r in block.index().all_postings().unwrap() {
            let e = block.series(r).unwrap();
            let chunks = e
                .chunks
                .iter()
                .map(|c| {
                    let data = block.chunks().chunk(c.chunk_ref).unwrap().data.to_vec();
                    (c.min_time, c.max_time, data)
                })
                .collect();
            out.push((ext_labels(&e.labels), chunks));
        }
        out
    };
    let agg_chunks = chunks_of(&agg_block);
    /// Which samples a query reads.
    #[derive(Clone, Copy, Debug)]
    enum Read {
        Aggr(AggrType),
        Average,
        Counter,
        Raw,
    }
    let mem_for = |read: Read, sel_start: i64, sel_end: i64| {
        let mut mem = strata_promql::MemQueryable::new();
        match read {
            Read::Raw => {
                for (labels, samples) in &raw_series {
                    mem.add(ext_labels(labels), samples);
                }
            }
            _ => {
                for (labels, chunks) in &agg_chunks {
                    let selected: Vec<&(i64, i64, Vec<u8>)> = chunks
                        .iter()
                        .filter(|(min, max, _)| *max >= sel_start && *min <= sel_end)
                        .collect();
                    let samples: Vec<Sample> = match read {
                        Read::Aggr(at) => selected
                            .iter()
                            .flat_map(|(_, _, d)| aggr_samples(d, at).unwrap())
                            .collect(),
                        Read::Average => selected
                            .iter()
                            .flat_map(|(_, _, d)| {
                                let n = aggr_samples(d, AggrType::Count).unwrap();
                                let s = aggr_samples(d, AggrType::Sum).unwrap();
                                n.into_iter()
                                    .zip(s)
                                    .map(|(n, s)| Sample::new(n.t, s.v / n.v))
                                    .collect::<Vec<_>>()
                            })
                            .collect(),
                        _ => {
                            let parts: Vec<Vec<Sample>> = selected
                                .iter()
                                .map(|(_, _, d)| aggr_samples(d, AggrType::Counter).unwrap())
                                .collect();
                            apply_counter_resets(&parts).0
                        }
                    };
                    let samples: Vec<Sample> = samples
                        .into_iter()
                        .filter(|p| p.t >= sel_start && p.t <= sel_end)
                        .collect();
                    if !samples.is_empty() {
                        mem.add(labels.clone(), &samples);
                    }
                }
            }
        }
        mem
    };
    let engine = strata_promql::Engine::default();
    let to_map = |v: strata_promql::Value| -> BTreeMap<String, Vec<(i64, f64)>> {
        let mut out = BTreeMap::new();
        match v {
            strata_promql::Value::Vector(v) => {
                for e in v {
                    out.insert(e.labels.to_string(), vec![(e.t, e.v)]);
                }
            }
            strata_promql::Value::Matrix(m) => {
                for s in m {
                    out.insert(
                        s.labels.to_string(),
                        s.samples.iter().map(|p| (p.t, p.v)).collect(),
                    );
                }
            }
            other => panic!("{other:?}"),
        }
        out
    };
    let from_http = |body: &serde_json::Value, instant: Option<i64>| {
        assert_eq!(body["status"], "success", "{body}");
        let mut out = BTreeMap::new();
        for r in body["data"]["result"].as_array().unwrap() {
            let labels: Vec<(String, String)> = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let key = Labels::from_pairs(labels).to_string();
            let points: Vec<(i64, f64)> = match instant {
                Some(t) => vec![(t, r["value"][1].as_str().unwrap().parse().unwrap())],
                None => r["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                            p[1].as_str().unwrap().parse().unwrap(),
                        )
                    })
                    .collect(),
            };
            out.insert(key, points);
        }
        out
    };
    let same = |a: &BTreeMap<String, Vec<(i64, f64)>>, b: &BTreeMap<String, Vec<(i64, f64)>>| {
        a.len() == b.len()
            && a.iter().zip(b).all(|((ka, va), (kb, vb))| {
                ka == kb
                    && va.len() == vb.len()
                    && va.iter().zip(vb).all(|(x, y)| {
                        x.0 == y.0
                            && (x.1 == y.1
                                || (x.1.is_nan() && y.1.is_nan())
                                || (x.1 - y.1).abs() <= 1e-9 * x.1.abs().max(y.1.abs()))
                    })
            })
    };
    let lookback = 5 * 60_000;
    let instant_cases: &[(&str, Read, i64)] = &[
        (
            "max(temperature_celsius)",
            Read::Aggr(AggrType::Max),
            lookback,
        ),
        (
            "min by (instance) (temperature_celsius)",
            Read::Aggr(AggrType::Min),
            lookback,
        ),
        (
            "-min(temperature_celsius)",
            Read::Aggr(AggrType::Min),
            lookback,
        ),
        ("sum(temperature_celsius)", Read::Average, lookback),
        ("temperature_celsius + 1", Read::Average, lookback),
        (
            "count(temperature_celsius)",
            Read::Aggr(AggrType::Count),
            lookback,
        ),
        (
            "avg_over_time(temperature_celsius[1h])",
            Read::Average,
            3_600_000,
        ),
        (
            "max_over_time(temperature_celsius[1h])",
            Read::Aggr(AggrType::Max),
            3_600_000,
        ),
        (
            "sum_over_time(temperature_celsius[1h])",
            Read::Aggr(AggrType::Sum),
            3_600_000,
        ),
        (
            "count_over_time(temperature_celsius[1h])",
            Read::Aggr(AggrType::Count),
            3_600_000,
        ),
        (
            "max(min_over_time(temperature_celsius[30m]))",
            Read::Aggr(AggrType::Min),
            1_800_000,
        ),
        ("rate(http_requests_total[20m])", Read::Counter, 1_200_000),
        (
            "sum by (job) (increase(http_requests_total[1h]))",
            Read::Counter,
            3_600_000,
        ),
        ("rate(http_requests_total[8m])", Read::Raw, 480_000),
        ("deriv(temperature_celsius[9m])", Read::Raw, 540_000),
    ];
    let mut checked = 0usize;
    for &(q, read, span) in instant_cases {
        let want = to_map(
            engine
                .instant_query(&mem_for(read, t_ms - span, t_ms), q, t_ms)
                .unwrap()
                .value,
        );
        let got = from_http(
            &strata_e2e::prometheus::get_json(
                &base,
                "/api/v1/query",
                &[
                    ("query", q),
                    ("time", &time),
                    ("max_source_resolution", "5m"),
                ],
            ),
            Some(t_ms),
        );
        assert!(!want.is_empty(), "{q}");
        assert!(
            same(&want, &got),
            "{q} ({read:?}):\n want {want:?}\n got  {got:?}"
        );
        checked += want.len();
    }
    // Range queries across the engine's 2 h slices (answers do not depend on slicing), and
    // `auto` resolution: a fifth of the step (7 m step: raw, 30 m step: 5 m data).
    let (start, end) = (t_ms - 10 * 3_600_000 + 1, t_ms);
    let range_cases: &[(&str, Read, i64, &str, i64)] = &[
        (
            "max(temperature_celsius)",
            Read::Aggr(AggrType::Max),
            420_000,
            "5m",
            lookback,
        ),
        (
            "sum(temperature_celsius)",
            Read::Average,
            1_800_000,
            "auto",
            lookback,
        ),
        (
            "sum(temperature_celsius)",
            Read::Raw,
            420_000,
            "auto",
            lookback,
        ),
        (
            "sum(rate(http_requests_total[20m]))",
            Read::Counter,
            420_000,
            "5m",
            1_200_000,
        ),
        (
            "max_over_time(temperature_celsius[1h])",
            Read::Aggr(AggrType::Max),
            900_000,
            "1h",
            3_600_000,
        ),
    ];
    for &(q, read, step, res, span) in range_cases {
        let want = to_map(
            engine
                .range_query(&mem_for(read, start - span, end), q, start, end, step)
                .unwrap()
                .value,
        );
        let got = from_http(
            &strata_e2e::prometheus::get_json(
                &base,
                "/api/v1/query_range",
                &[
                    ("query", q),
                    ("start", &format!("{}.{:03}", start / 1000, start % 1000)),
                    ("end", &time),
                    ("step", &format!("{}", step / 1000)),
                    ("max_source_resolution", res),
                ],
            ),
            None,
        );
        assert!(!want.is_empty(), "{q}");
        assert!(
            same(&want, &got),
            "{q} step {step} res {res} ({read:?}):\n want {want:?}\n got  {got:?}"
        );
        checked += want.values().map(Vec::len).sum::<usize>();
    }
    eprintln!(
        "downsampled reads by Thanos' rules: {checked} values equal to the expected aggregates"
    );
}

/// An overlap the compactor cannot resolve (no replica labels) sets `thanos_compact_halted`,
/// which the Thanos mixin's ThanosCompactHalted alert reads; the process keeps running.
#[test]
fn an_unresolvable_overlap_sets_thanos_compact_halted() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataSet::generate(5, START_S, 4);
    let c = promtool_blocks(&data, &dir.path().join("c"));
    let c2 = promtool_blocks(&data, &dir.path().join("c2"));
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let bucket = Bucket::from_yaml(&bucket_yaml(&bucket_dir), None).unwrap();
    upload_all(&bucket, &c, &[("cluster", "us1")]);
    upload_all(&bucket, &c2, &[("cluster", "us1")]);
    let compactor = strata_e2e::store_api::StrataProcess::start_http_only(&[
        "compact",
        "--objstore.config",
        &bucket_yaml(&bucket_dir),
        "--data-dir",
        dir.path().join("compactor").to_str().unwrap(),
        "--consistency-delay=0s",
        "--wait",
        "--wait-interval=1h",
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = compactor.http_get("/metrics");
        if metrics.lines().any(|l| l == "thanos_compact_halted 1") {
            break;
        }
        assert!(Instant::now() < deadline, "not halted:\n{metrics}");
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(compactor.http_get("/-/healthy").trim(), "OK");
}

/// Files under `dir`, relative names.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(
                walk(&p)
                    .into_iter()
                    .map(|f| format!("{}/{f}", e.file_name().to_string_lossy())),
            );
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// A counter native histogram every minute from `from` for `n` minutes: bucket `i % 4`
/// gets `1 + i % 3` observations at sample `i`; `skip` leaves out a range of minutes.
fn histogram_series(
    from_ms: i64,
    n: i64,
    skip: std::ops::Range<i64>,
) -> Vec<(i64, strata_types::histogram::Histogram)> {
    use strata_types::histogram::{Histogram, Span};
    let mut counts = [0i64; 4];
    let mut out = Vec::new();
    for i in 0..n {
        counts[(i % 4) as usize] += 1 + i % 3;
        if skip.contains(&i) {
            continue;
        }
        let total: i64 = counts.iter().sum();
        let mut deltas = Vec::new();
        let mut prev = 0;
        for c in counts {
            deltas.push(c - prev);
            prev = c;
        }
        out.push((
            from_ms + i * 60_000,
            Histogram {
                count: total as u64,
                sum: total as f64 * 0.25,
                schema: 0,
                zero_threshold: 1e-128,
                positive_spans: vec![Span {
                    offset: 0,
                    length: 4,
                }],
                positive_buckets: deltas,
                ..Histogram::default()
            },
        ));
    }
    out
}

/// A block holding one native histogram series `h`.
fn histogram_block(
    parent: &Path,
    series: &[(i64, strata_types::histogram::Histogram)],
    min_ms: i64,
    max_ms: i64,
) -> PathBuf {
    use strata_tsdb::block::{BlockOptions, BlockWriter};
    use strata_tsdb::cutter::EncodedChunk;
    std::fs::create_dir_all(parent).unwrap();
    let mut w = BlockWriter::new(parent).unwrap();
    let chunks: Vec<EncodedChunk> = strata_chunkenc::encode_histograms(series)
        .unwrap()
        .into_iter()
        .map(|c| EncodedChunk {
            min_time: c.min_time,
            max_time: c.max_time,
            encoding: c.encoding,
            data: c.data,
        })
        .collect();
    w.add_series(&Labels::from_pairs([("__name__", "h")]), &chunks)
        .unwrap();
    let (path, _) = w
        .finish(strata_tsdb::block::BlockOptions {
            min_time: Some(min_ms),
            max_time: Some(max_ms),
            ..BlockOptions::default()
        })
        .unwrap();
    path
}

/// Two HA replicas of a native histogram series over 48h (one with a 3h gap) go through
/// `strata compact --deduplication.replica-label=replica`: they are merged vertically (every
/// histogram once, counts intact) and the 2d block gets a 5m copy with Thanos' histogram
/// aggregates (count, sum, counter); the pass succeeds, so retention is not held up. A
/// querier over a store gateway then answers from the raw block and, at
/// `max_source_resolution=5m`, from the aggregates (the average histogram of a window; the
/// counter for `rate`).
#[test]
fn native_histogram_replicas_merge_and_downsample() {
    use strata_e2e::prometheus::get_json;
    use strata_e2e::store_api::StrataProcess;

    let dir = tempfile::tempdir().unwrap();
    let start_ms = START_S * 1000;
    let minutes = 48 * 60;
    let full = histogram_series(start_ms, minutes, 0..0);
    let gappy = histogram_series(start_ms, minutes, 600..780);
    let a = histogram_block(
        &dir.path().join("a"),
        &full,
        start_ms,
        start_ms + minutes * 60_000,
    );
    let b = histogram_block(
        &dir.path().join("b"),
        &gappy,
        start_ms,
        start_ms + minutes * 60_000,
    );
    let bucket_dir = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let bucket = Bucket::from_yaml(&bucket_yaml(&bucket_dir), None).unwrap();
    upload_all(&bucket, &[a], &[("cluster", "eu1"), ("replica", "a")]);
    upload_all(&bucket, &[b], &[("cluster", "eu1"), ("replica", "b")]);
    let data_dir = dir.path().join("compactor");
    for _ in 0..2 {
        compact_once(
            &bucket_dir,
            &data_dir,
            &["--delete-delay=0s", "--deduplication.replica-label=replica"],
        );
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metas = rt
        .block_on(MetaFetcher::new(bucket.clone(), None, 8).fetch(&FetchFilter::default()))
        .unwrap()
        .metas;
    let raw: Vec<&BlockMeta> = metas
        .values()
        .filter(|m| strata_block::resolution(m) == 0)
        .collect();
    let five: Vec<&BlockMeta> = metas
        .values()
        .filter(|m| strata_block::resolution(m) == 300_000)
        .collect();
    assert_eq!((raw.len(), five.len()), (1, 1), "{metas:?}");
    assert!(raw[0].compaction.level >= 2);

    // The merged raw block: every minute once, the gap filled from the other replica.
    let block = BlockReader::open(&bucket_dir.join(&raw[0].ulid)).unwrap();
    let r = block.index().all_postings().unwrap()[0];
    let entry = block.series(r).unwrap();
    let mut merged = Vec::new();
    for c in &entry.chunks {
        let chunk = block.chunks().chunk(c.chunk_ref).unwrap();
        assert_eq!(chunk.encoding, strata_chunkenc::Encoding::Histogram);
        let mut it = strata_chunkenc::HistogramIter::new(&chunk.data).unwrap();
        merged.extend(it.by_ref().map(|(t, h)| (t, h.count)));
        it.finish().unwrap();
    }
    let want: Vec<(i64, u64)> = full.iter().map(|(t, h)| (*t, h.count)).collect();
    assert_eq!(merged, want);

    // The 5m block: one window per 5 minutes holding 5 histograms.
    let agg = BlockReader::open(&bucket_dir.join(&five[0].ulid)).unwrap();
    let r = agg.index().all_postings().unwrap()[0];
    let entry = agg.series(r).unwrap();
    let mut windows = 0usize;
    let mut observed = 0.0;
    for c in &entry.chunks {
        let chunk = agg.chunks().chunk(c.chunk_ref).unwrap();
        let counts = strata_tsdb::downsample::aggr_samples(
            &chunk.data,
            strata_chunkenc::aggr::AggrType::Count,
        )
        .unwrap();
        windows += counts.len();
        observed += counts.iter().map(|s| s.v).sum::<f64>();
    }
    assert_eq!((windows, observed), (576, minutes as f64));

    // Queries: the raw answer, then the 5m aggregates.
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &bucket_yaml(&bucket_dir),
        "--data-dir",
        dir.path().join("store").to_str().unwrap(),
    ]);
    let query = StrataProcess::start(&["query", "--endpoint", &store.grpc]);
    let url = format!("http://{}", query.http);
    // A window's end: 10h + 4m59.999s in; the window holds minutes 600..605.
    let t_ms = start_ms + 605 * 60_000 - 1;
    let time = format!("{}.{:03}", t_ms / 1000, t_ms % 1000);
    let ask = |q: &str, res: &str| -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = get_json(
                &url,
                "/api/v1/query",
                &[
                    ("query", q),
                    ("time", &time),
                    ("max_source_resolution", res),
                ],
            );
            if v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
                || Instant::now() > deadline
            {
                return v;
            }
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let value = |v: &serde_json::Value| -> f64 {
        v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"))
            .parse()
            .unwrap()
    };
    let raw_count = value(&ask("histogram_count(h)", "0s"));
    assert_eq!(raw_count, full[604].1.count as f64);
    // At 5m the window's average histogram: the mean of its five counts.
    let mean: f64 = full[600..605]
        .iter()
        .map(|(_, h)| h.count as f64)
        .sum::<f64>()
        / 5.0;
    let five_count = value(&ask("histogram_count(h)", "5m"));
    assert!((five_count - mean).abs() < 1e-9, "{five_count} vs {mean}");
    // `rate` reads the counter aggregate: close to the raw rate.
    let raw_rate = value(&ask("histogram_count(rate(h[1h]))", "0s"));
    let five_rate = value(&ask("histogram_count(rate(h[1h]))", "5m"));
    assert!(
        (five_rate - raw_rate).abs() / raw_rate < 0.1,
        "{five_rate} vs {raw_rate}"
    );
    eprintln!(
        "native histograms: {} merged, 576 windows at 5m; histogram_count raw {raw_count}, 5m {five_count} (mean {mean}); rate raw {raw_rate}, 5m {five_rate}",
        merged.len()
    );
}
