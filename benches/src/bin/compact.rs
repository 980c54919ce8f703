//! `strata compact` on a FILESYSTEM bucket: (1) compaction of 12 aligned two-hour blocks
//! into three 8h blocks, (2) downsampling of one 48h block to 5m. Prints input/output
//! bytes, MB/s of input, samples/s, the compactor's peak RSS and the wall time of each run
//! (the run includes downloading from and uploading to the bucket directory).
//!
//! Run: `cargo run --release -p strata-benches --bin compact -- [SERIES_PER_BLOCK] [DOWNSAMPLE_SERIES]`
//! (defaults 500000 and 100000; 60 s samples).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_benches::status_kib;
use strata_tsdb::compact::{CompactOptions, compact_blocks};
use strata_tsdb::downsample::{RES_5M, downsample_block};
use strata_tsdb::meta::ThanosMeta;
use strata_tsdb::{BlockOptions, BlockReader, BlockWriter};
use strata_types::{Labels, Sample};

const STEP_MS: i64 = 60_000;
const HOUR: i64 = 3_600_000;

/// User plus system CPU time of a process so far, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time (user + system) of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Times `f` on this thread; prints a row of the in-process table.
fn in_process(name: &str, input: u64, samples: u64, f: impl FnOnce() -> u64) {
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let output = f();
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), thread_cpu() - cpu);
    println!(
        "| {name} (in process, one thread) | {samples} | {input} | {output} | {:.3} | {wall:.2} s | {cpu:.2} s | {:.1} | {:.1} | {:.0} | | |",
        output as f64 / input as f64,
        mb(input) / wall,
        mb(input) / cpu.max(0.01),
        samples as f64 / wall,
    );
}

/// What one compactor run cost.
struct Run {
    wall: Duration,
    /// CPU seconds (user + system), sampled until just before exit.
    cpu: f64,
    /// Peak resident set (VmHWM: anonymous memory plus mapped block files).
    peak_rss_kib: u64,
    /// Peak anonymous memory (RssAnon sampled every 20 ms): what the process allocated.
    peak_anon_kib: u64,
}

fn labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", format!("bench_metric_{}", i % 50)),
        (
            "instance",
            format!("10.{}.{}.{}:9100", i / 65536, i / 256 % 256, i % 256),
        ),
        ("job", format!("job-{}", i % 20)),
    ])
}

/// Writes a block of `series` series with a sample every minute in `[start, end)`.
fn write_block(bucket: &Path, series: usize, start: i64, end: i64) -> u64 {
    let mut all: Vec<(Labels, usize)> = (0..series).map(|i| (labels(i), i)).collect();
    all.sort();
    let mut w = BlockWriter::new(bucket).unwrap();
    let mut samples = Vec::new();
    let mut total = 0u64;
    for (l, i) in &all {
        samples.clear();
        let mut v = (*i % 1000) as f64;
        for (n, t) in (start..end).step_by(STEP_MS as usize).enumerate() {
            // Counters with a reset now and then; every fifth series a gauge.
            v = if i % 5 == 0 {
                ((n as f64) * 0.1 + *i as f64).sin() * 100.0
            } else if (n + i) % 997 == 0 {
                0.0
            } else {
                v + ((n * 7 + i) % 13) as f64
            };
            samples.push(Sample { t, v });
        }
        total += samples.len() as u64;
        w.add_samples(l, &samples, 2 * HOUR).unwrap();
    }
    let mut labels = BTreeMap::new();
    labels.insert("cluster".to_owned(), "bench".to_owned());
    w.finish(BlockOptions {
        min_time: Some(start),
        max_time: Some(end),
        thanos: Some(ThanosMeta {
            version: 1,
            labels,
            source: "bench".into(),
            ..ThanosMeta::default()
        }),
        compaction: None,
    })
    .unwrap();
    total
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn blocks(bucket: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(bucket)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("meta.json").exists())
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                dir_bytes(&e.path()),
            )
        })
        .collect()
}

/// Runs one `strata compact` pass.
fn compact(bucket: &Path, data: &Path, extra: &[&str]) -> Run {
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    let t = Instant::now();
    let mut child = Command::new(strata_e2e::strata_binary())
        .args([
            "compact",
            "--objstore.config",
            &yaml,
            "--consistency-delay=0s",
        ])
        .arg("--data-dir")
        .arg(data)
        .args([
            "--http-address",
            &format!("127.0.0.1:{}", strata_e2e::free_port()),
        ])
        .args(extra)
        .env("STRATA_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (mut peak, mut anon, mut ticks) = (0, 0, 0);
    loop {
        if let Some(kib) = status_kib(child.id(), "VmHWM:") {
            peak = peak.max(kib);
        }
        if let Some(kib) = status_kib(child.id(), "RssAnon:") {
            anon = anon.max(kib);
        }
        if let Some(t) = cpu_ticks(child.id()) {
            ticks = ticks.max(t);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "strata compact failed: {status}");
            break;
        }
        // Polling a child process' peak RSS: a plain sleep is what is wanted here.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(20));
    }
    Run {
        wall: t.elapsed(),
        cpu: ticks as f64 / 100.0,
        peak_rss_kib: peak,
        peak_anon_kib: anon,
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let series: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(500_000);
    let down_series: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_TMP").unwrap_or_else(|_| "/var/tmp".into()))
            .unwrap();

    println!(
        "| run | series | samples | input bytes | output bytes | output/input | wall time | CPU time | input MB/s (wall) | input MB per CPU-second | samples/s (wall) | peak RSS | peak anonymous RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    // SERIES_PER_BLOCK 0 skips the compaction run.
    if series > 0 {
        compaction_run(dir.path(), series);
    }
    if down_series > 0 {
        downsampling_run(dir.path(), down_series);
    }
    if std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("kept {}", dir.keep().display());
    }
}

/// Compaction: 12 aligned 2h blocks (+ a small newest block the planner leaves out).
fn compaction_run(dir: &Path, series: usize) {
    let bucket = dir.join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let t = Instant::now();
    let mut samples = 0u64;
    for i in 0..12 {
        samples += write_block(&bucket, series, i * 2 * HOUR, (i + 1) * 2 * HOUR);
    }
    write_block(&bucket, 1, 24 * HOUR, 26 * HOUR);
    let before = blocks(&bucket);
    let input: u64 = before.values().sum();
    eprintln!(
        "generated 12 blocks x {series} series ({samples} samples, {input} bytes) in {:?}",
        t.elapsed()
    );
    // The merge itself, in process: the first four blocks (one 8h group) into one.
    let first: Vec<_> = before.keys().take(4).cloned().collect();
    let readers: Vec<BlockReader> = first
        .iter()
        .map(|id| BlockReader::open(&bucket.join(id)).unwrap())
        .collect();
    let group_bytes: u64 = first.iter().map(|id| before[id]).sum();
    let out = dir.join("in-process");
    std::fs::create_dir_all(&out).unwrap();
    in_process("merge 4 x 2h -> 8h", group_bytes, samples / 3, || {
        let (path, _, _) = compact_blocks(
            &out,
            ulid::Ulid::generate(),
            &readers,
            &CompactOptions::default(),
        )
        .unwrap()
        .unwrap();
        dir_bytes(&path)
    });
    drop(readers);
    std::fs::remove_dir_all(&out).unwrap();
    let run = compact(&bucket, &dir.join("data"), &["--downsampling.disable"]);
    let after = blocks(&bucket);
    let output: u64 = after
        .iter()
        .filter(|(id, _)| !before.contains_key(*id))
        .map(|(_, b)| b)
        .sum();
    let new_blocks = after.keys().filter(|id| !before.contains_key(*id)).count();
    assert_eq!(new_blocks, 3, "three 8h blocks");
    row(
        "compact 12 x 2h -> 3 x 8h",
        &format!("{series} per block"),
        samples,
        input,
        output,
        &run,
    );
    std::fs::remove_dir_all(&bucket).unwrap();
}

/// Downsampling: one 48h raw block to 5m.
fn downsampling_run(dir: &Path, down_series: usize) {
    let bucket = dir.join("bucket-48h");
    std::fs::create_dir_all(&bucket).unwrap();
    let samples = write_block(&bucket, down_series, 0, 48 * HOUR);
    let before = blocks(&bucket);
    let input: u64 = before.values().sum();
    // The aggregation itself, in process.
    let id = before.keys().next().unwrap().clone();
    let reader = BlockReader::open(&bucket.join(&id)).unwrap();
    let out = dir.join("in-process-48h");
    std::fs::create_dir_all(&out).unwrap();
    in_process("downsample 48h raw -> 5m", input, samples, || {
        let (path, _) = downsample_block(
            &reader,
            &out,
            ulid::Ulid::generate(),
            RES_5M,
            reader.meta().thanos.clone().unwrap(),
        )
        .unwrap()
        .unwrap();
        dir_bytes(&path)
    });
    drop(reader);
    std::fs::remove_dir_all(&out).unwrap();
    // BENCH_KEEP keeps a copy of the input for profiling.
    if std::env::var_os("BENCH_KEEP").is_some() {
        strata_e2e::copy_dir(&bucket, &dir.join("bucket-48h-input"));
    }
    let run = compact(&bucket, &dir.join("data-48h"), &[]);
    let after = blocks(&bucket);
    let output: u64 = after
        .iter()
        .filter(|(id, _)| !before.contains_key(*id))
        .map(|(_, b)| b)
        .sum();
    assert_eq!(after.len(), 2, "one 5m block");
    row(
        "downsample 48h raw -> 5m",
        &down_series.to_string(),
        samples,
        input,
        output,
        &run,
    );
}

fn row(name: &str, series: &str, samples: u64, input: u64, output: u64, run: &Run) {
    let secs = run.wall.as_secs_f64();
    println!(
        "| {name} | {series} | {samples} | {input} | {output} | {:.3} | {secs:.2} s | {:.2} s | {:.1} | {:.1} | {:.0} | {} KiB | {} KiB |",
        output as f64 / input as f64,
        run.cpu,
        mb(input) / secs,
        mb(input) / run.cpu.max(0.01),
        samples as f64 / secs,
        run.peak_rss_kib,
        run.peak_anon_kib,
    );
}
