//! The block format against the real thing: blocks promtool writes read back exactly, our
//! chunks are byte-identical to Prometheus', and blocks we write are accepted by promtool
//! and answer queries in a real Prometheus exactly as promtool's blocks of the same data do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use strata_e2e::data::DataSet;
use strata_e2e::prometheus::Prometheus;
use strata_e2e::{block_dirs, copy_dir, promtool_create_blocks, require_tool, run, strata_binary};
use strata_tsdb::{BlockOptions, BlockReader, BlockWriter, DEFAULT_BLOCK_DURATION};
use strata_types::{Labels, MatchType, Matcher, Sample};

const START_S: i64 = 1_700_000_000;
const HOURS: i64 = 6;
/// promtool's backfill opens its block writer with twice the block duration (so it may
/// append across the whole block), which makes its head's chunk range 4h.
const PROMTOOL_CHUNK_RANGE: i64 = 2 * DEFAULT_BLOCK_DURATION;

struct Fixture {
    _dir: tempfile::TempDir,
    data: DataSet,
    promtool_blocks: PathBuf,
    our_blocks: PathBuf,
}

/// Generates the data, has promtool write blocks of it, and writes our own blocks of it.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = DataSet::generate(7, START_S, HOURS);
        let input = dir.path().join("data.om");
        std::fs::write(&input, data.to_openmetrics()).unwrap();
        let promtool_blocks = dir.path().join("promtool");
        promtool_create_blocks(&input, &promtool_blocks);
        let our_blocks = dir.path().join("strata");
        write_our_blocks(&data, &our_blocks);
        Fixture {
            _dir: dir,
            data,
            promtool_blocks,
            our_blocks,
        }
    })
}

/// Splits every series at 2h-aligned boundaries, as promtool does, and writes one block
/// per window with our writer.
fn write_our_blocks(data: &DataSet, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let mut windows: BTreeMap<i64, Vec<(Labels, Vec<Sample>)>> = BTreeMap::new();
    for (labels, samples) in data.series() {
        let mut per_window: BTreeMap<i64, Vec<Sample>> = BTreeMap::new();
        for s in samples {
            per_window
                .entry(s.t.div_euclid(DEFAULT_BLOCK_DURATION))
                .or_default()
                .push(s);
        }
        for (window, samples) in per_window {
            windows
                .entry(window)
                .or_default()
                .push((labels.clone(), samples));
        }
    }
    for (_, mut series) in windows {
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut writer = BlockWriter::new(out).unwrap();
        for (labels, samples) in &series {
            writer
                .add_samples(labels, samples, PROMTOOL_CHUNK_RANGE)
                .unwrap();
        }
        writer.finish(BlockOptions::default()).unwrap();
    }
}

/// All series and samples of the blocks in `dir`, read with our reader.
fn read_all(dir: &Path) -> BTreeMap<Labels, Vec<Sample>> {
    let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for block_dir in block_dirs(dir) {
        let block = BlockReader::open(&block_dir).unwrap();
        let mut samples_in_block = 0u64;
        let mut chunks_in_block = 0u64;
        let refs = block.index().all_postings().unwrap();
        assert_eq!(refs.len() as u64, block.meta().stats.num_series);
        for series_ref in refs {
            let entry = block.series(series_ref).unwrap();
            chunks_in_block += entry.chunks.len() as u64;
            let samples = block
                .samples(series_ref, &entry, i64::MIN, i64::MAX)
                .unwrap();
            samples_in_block += samples.len() as u64;
            out.entry(entry.labels.clone()).or_default().extend(samples);
        }
        assert_eq!(
            samples_in_block,
            block.meta().stats.num_samples,
            "{}",
            block.name()
        );
        assert_eq!(
            chunks_in_block,
            block.meta().stats.num_chunks,
            "{}",
            block.name()
        );
    }
    out
}

fn assert_same_samples(
    actual: &BTreeMap<Labels, Vec<Sample>>,
    expected: &BTreeMap<Labels, Vec<Sample>>,
) {
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (labels, want) in expected {
        let got = &actual[labels];
        assert_eq!(got.len(), want.len(), "sample count of {labels}");
        for (g, w) in got.iter().zip(want) {
            let same_value = g.v.to_bits() == w.v.to_bits() || (g.v.is_nan() && w.v.is_nan());
            assert!(g.t == w.t && same_value, "{labels}: got {g:?}, want {w:?}");
        }
    }
}

#[test]
fn promtool_blocks_read_back_exactly() {
    let f = fixture();
    let blocks = block_dirs(&f.promtool_blocks);
    assert!(
        blocks.len() >= 3,
        "expected several 2h blocks, got {}",
        blocks.len()
    );
    assert_same_samples(&read_all(&f.promtool_blocks), &f.data.series());
}

#[test]
fn our_blocks_read_back_exactly() {
    let f = fixture();
    assert_same_samples(&read_all(&f.our_blocks), &f.data.series());
}

fn matcher(kind: MatchType, name: &str, value: &str) -> Matcher {
    Matcher::new(kind, name, value).unwrap()
}

#[test]
fn postings_for_matchers_agree_with_brute_force() {
    let f = fixture();
    let cases: Vec<Vec<Matcher>> = vec![
        vec![Matcher::equal("__name__", "http_requests_total")],
        vec![
            Matcher::equal("__name__", "http_requests_total"),
            Matcher::not_equal("code", "200"),
        ],
        vec![
            matcher(MatchType::Regex, "job", "api|web"),
            matcher(MatchType::NotRegex, "instance", ".*:9100"),
        ],
        vec![matcher(
            MatchType::Regex,
            "instance",
            "10\\.0\\.0\\.[12]:9100",
        )],
        vec![Matcher::equal("le", "")],
        vec![Matcher::not_equal("le", "")],
        vec![matcher(MatchType::Regex, "le", ".*")],
        vec![matcher(MatchType::Regex, "le", ".+")],
        vec![matcher(MatchType::NotRegex, "le", "")],
        vec![
            matcher(MatchType::NotRegex, "le", "0.*|\\+Inf"),
            Matcher::equal("job", "api"),
        ],
        vec![
            matcher(MatchType::Regex, "room", "lab|"),
            matcher(MatchType::Regex, "__name__", "temp.*|misc.*"),
        ],
        vec![Matcher::equal("nonexistent", "x")],
        vec![Matcher::equal("nonexistent", "")],
        vec![
            matcher(MatchType::Regex, "__name__", ".+"),
            Matcher::not_equal("kind", "flaky"),
        ],
    ];
    for block_dir in block_dirs(&f.promtool_blocks)
        .into_iter()
        .chain(block_dirs(&f.our_blocks))
    {
        let block = BlockReader::open(&block_dir).unwrap();
        let all: Vec<Labels> = block
            .index()
            .all_postings()
            .unwrap()
            .into_iter()
            .map(|r| block.series(r).unwrap().labels)
            .collect();
        for matchers in &cases {
            let expected: Vec<&Labels> = all
                .iter()
                .filter(|l| {
                    matchers
                        .iter()
                        .all(|m| m.matches(l.get(m.name()).unwrap_or("")))
                })
                .collect();
            let got: Vec<Labels> = block
                .select(matchers)
                .unwrap()
                .into_iter()
                .map(|r| block.series(r).unwrap().labels)
                .collect();
            assert_eq!(
                got.iter().collect::<Vec<_>>(),
                expected,
                "{matchers:?} on {}",
                block.name()
            );
        }
        // Label names and values agree with the series.
        let mut names: Vec<String> = all
            .iter()
            .flat_map(|l| l.iter().map(|p| p.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(block.index().label_names(), names);
        let mut jobs: Vec<String> = all
            .iter()
            .filter_map(|l| l.get("job").map(str::to_owned))
            .collect();
        jobs.sort();
        jobs.dedup();
        assert_eq!(block.index().label_values("job").unwrap(), jobs);
    }
}

#[test]
fn chunks_are_bit_identical_to_prometheus() {
    let f = fixture();
    let out = tempfile::tempdir().unwrap();
    let mut chunks_compared = 0usize;
    for block_dir in block_dirs(&f.promtool_blocks) {
        let block = BlockReader::open(&block_dir).unwrap();
        let ulid: ulid::Ulid = block.meta().ulid.parse().unwrap();
        let mut writer = BlockWriter::with_ulid(out.path(), ulid).unwrap();
        for series_ref in block.index().all_postings().unwrap() {
            let entry = block.series(series_ref).unwrap();
            // Every chunk re-encoded from its own samples gives the same bytes.
            for meta in &entry.chunks {
                let raw = block.chunks().chunk(meta.chunk_ref).unwrap();
                let mut encoder = strata_chunkenc::XorEncoder::new();
                for (t, v) in strata_chunkenc::XorIter::new(&raw.data).unwrap() {
                    encoder.append(t, v).unwrap();
                }
                assert_eq!(
                    encoder.bytes(),
                    raw.data.as_ref(),
                    "chunk {:#x} of {}",
                    meta.chunk_ref,
                    entry.labels
                );
                chunks_compared += 1;
            }
            // Cutting the series' samples ourselves gives Prometheus' chunk boundaries.
            let samples = block
                .samples(series_ref, &entry, i64::MIN, i64::MAX)
                .unwrap();
            writer
                .add_samples(&entry.labels, &samples, PROMTOOL_CHUNK_RANGE)
                .unwrap();
        }
        let (ours, _) = writer.finish(BlockOptions::default()).unwrap();
        let theirs = std::fs::read(block_dir.join("chunks/000001")).unwrap();
        let mine = std::fs::read(ours.join("chunks/000001")).unwrap();
        assert!(
            theirs == mine,
            "chunks/000001 of {} differs ({} vs {} bytes)",
            block.name(),
            theirs.len(),
            mine.len()
        );
    }
    assert!(chunks_compared > 50);
}

fn promtool_dump(dir: &Path) -> Vec<String> {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    std::fs::create_dir_all(copy.path().join("wal")).unwrap();
    let out = run(Command::new(require_tool("promtool"))
        .args(["tsdb", "dump"])
        .arg(copy.path()));
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn promtool_accepts_our_blocks() {
    let f = fixture();
    let promtool = require_tool("promtool");
    let listing = run(Command::new(&promtool)
        .args(["tsdb", "list"])
        .arg(&f.our_blocks));
    for block_dir in block_dirs(&f.our_blocks) {
        let block = BlockReader::open(&block_dir).unwrap();
        let meta = block.meta();
        let line = listing
            .lines()
            .find(|l| l.starts_with(&meta.ulid))
            .unwrap_or_else(|| panic!("{} not listed:\n{listing}", meta.ulid));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1], meta.min_time.to_string());
        assert_eq!(fields[2], meta.max_time.to_string());
        assert_eq!(fields[4], meta.stats.num_samples.to_string());
        let analysis = run(Command::new(&promtool)
            .args(["tsdb", "analyze"])
            .arg(&f.our_blocks)
            .arg(&meta.ulid));
        assert!(
            analysis.contains(&format!("Block ID: {}", meta.ulid)),
            "{analysis}"
        );
        assert!(
            analysis.contains(&format!("Series: {}", meta.stats.num_series)),
            "{analysis}"
        );
    }
    assert_eq!(
        promtool_dump(&f.our_blocks),
        promtool_dump(&f.promtool_blocks)
    );
}

#[test]
fn prometheus_answers_the_same_on_our_blocks() {
    let f = fixture();
    let (promtool_data, our_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy_dir(&f.promtool_blocks, promtool_data.path());
    copy_dir(&f.our_blocks, our_data.path());
    let reference = Prometheus::start_on_blocks(promtool_data.path());
    let ours = Prometheus::start_on_blocks(our_data.path());
    let start = START_S as f64;
    let end = (START_S + HOURS * 3600) as f64;
    let queries = [
        "count({__name__=~\".+\"})",
        "http_requests_total",
        "sum by (job) (rate(http_requests_total[5m]))",
        "increase(http_requests_total{code=\"500\"}[1h])",
        "resets(http_requests_total[2h])",
        "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[10m])))",
        "max_over_time(temperature_celsius[1h]) - min_over_time(temperature_celsius[1h])",
        "avg_over_time(misc_gauge[30m])",
        "count_over_time(misc_gauge{kind=~\"flaky|batch\"}[20m])",
        "misc_gauge{kind=\"jittered\"}",
        "absent(misc_gauge{kind=\"batch\"})",
    ];
    let mut compared = 0;
    for query in queries {
        for i in 0..12 {
            let time = start + 1234.567 + f64::from(i) * 1750.25;
            let want = reference.query(query, time);
            assert_eq!(want["status"], "success", "{query}: {want}");
            assert_eq!(ours.query(query, time), want, "{query} at {time}");
            compared += 1;
        }
        let want = reference.query_range(query, start + 17.5, end + 600.0, 97.0);
        assert_eq!(want["status"], "success", "{query}: {want}");
        assert_eq!(
            ours.query_range(query, start + 17.5, end + 600.0, 97.0),
            want,
            "range {query}"
        );
        compared += 1;
    }
    let labels_want = reference.get_json("/api/v1/labels", &[]);
    assert_eq!(ours.get_json("/api/v1/labels", &[]), labels_want);
    eprintln!("compared {compared} query results");
}

#[test]
fn strata_block_dump_equals_promtool_dump() {
    let f = fixture();
    let ours = run(Command::new(strata_binary())
        .args(["tools", "block", "dump"])
        .arg(&f.promtool_blocks));
    let mut lines: Vec<String> = ours.lines().map(str::to_owned).collect();
    lines.sort();
    let expected = promtool_dump(&f.promtool_blocks);
    assert_eq!(lines.len(), expected.len());
    for (a, b) in lines.iter().zip(&expected) {
        assert_eq!(a, b);
    }
    // With a selector and a time range, compared with promtool's own filtering.
    let selector = r#"http_requests_total{code="500",job=~"a.*"}"#;
    let (min, max) = ((START_S + 3000) * 1000, (START_S + 9000) * 1000);
    let ours = run(Command::new(strata_binary())
        .args(["tools", "block", "dump", "--match", selector])
        .arg(format!("--min-time={min}"))
        .arg(format!("--max-time={max}"))
        .arg(&f.our_blocks));
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&f.promtool_blocks, copy.path());
    std::fs::create_dir_all(copy.path().join("wal")).unwrap();
    let theirs = run(Command::new(require_tool("promtool"))
        .args(["tsdb", "dump", "--match", selector])
        .arg(format!("--min-time={min}"))
        .arg(format!("--max-time={max}"))
        .arg(copy.path()));
    let mut ours: Vec<&str> = ours.lines().collect();
    let mut theirs: Vec<&str> = theirs.lines().collect();
    ours.sort_unstable();
    theirs.sort_unstable();
    assert!(!ours.is_empty());
    assert_eq!(ours, theirs);
}

#[test]
fn strata_block_inspect_reports_exact_figures() {
    let f = fixture();
    let json = run(Command::new(strata_binary())
        .args(["tools", "block", "inspect", "--output", "json"])
        .arg(&f.promtool_blocks));
    let reports: serde_json::Value = serde_json::from_str(&json).unwrap();
    let reports = reports.as_array().unwrap();
    let listing = run(Command::new(require_tool("promtool"))
        .args(["tsdb", "list"])
        .arg(&f.promtool_blocks));
    assert_eq!(reports.len(), block_dirs(&f.promtool_blocks).len());
    let mut total_samples = 0u64;
    for report in reports {
        let ulid = report["ulid"].as_str().unwrap();
        let line = listing.lines().find(|l| l.starts_with(ulid)).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        // promtool list: ULID MIN MAX DURATION SAMPLES CHUNKS SERIES SIZE
        assert_eq!(report["min_time"].to_string(), fields[1]);
        assert_eq!(report["max_time"].to_string(), fields[2]);
        assert_eq!(report["samples"].to_string(), fields[4]);
        assert_eq!(report["chunks"].to_string(), fields[5]);
        assert_eq!(report["series"].to_string(), fields[6]);
        assert_eq!(report["meta_stats_match"], true);
        total_samples += report["samples"].as_u64().unwrap();
    }
    let expected: u64 = f.data.series().values().map(|s| s.len() as u64).sum();
    assert_eq!(total_samples, expected);
    let text = run(Command::new(strata_binary())
        .args(["tools", "block", "inspect", "--top", "3"])
        .arg(&f.our_blocks));
    assert!(text.contains("http_requests_total"), "{text}");
}
