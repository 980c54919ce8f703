//! `strata store` over a bucket of 2 million series over 48 hours (two 24 h blocks, one
//! sample every 10 minutes): time to first ready (index-headers built from the bucket),
//! resident memory after sync, and Series throughput for selectors matching 1, 1,000 and
//! 100,000 series over the whole 48 h, cold and warm (series/s, samples/s, and samples per
//! CPU-second of the gateway). The peer, measured in the same run: Prometheus 2.42 started
//! on the same blocks (its resident memory, and its streamed remote read of the same
//! selectors). Prints a table.
//!
//! Run: `cargo run --release -p strata-benches --bin store-gateway -- [SERIES] [STEP_SECONDS]`
//! (defaults 2000000 and 600). `BENCH_TMP` chooses the scratch directory (default /var/tmp).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strata_benches::status_kib;
use strata_e2e::prometheus::Prometheus;
use strata_e2e::store_api::StrataProcess;
use strata_storepb::store_client::StoreClient;
use strata_storepb::{SeriesRequest, series_response};
use strata_tsdb::meta::ThanosMeta;
use strata_tsdb::{BlockOptions, BlockWriter};
use strata_types::{Labels, Matcher, Sample};

const HOUR: i64 = 3_600_000;
const METRICS: usize = 20;
const JOBS: usize = 100;

/// User plus system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// Series `i`: 20 metrics of 100,000 series each at 2 million; within a metric, 100 jobs
/// of 1,000 series; every series its own instance.
fn labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", format!("bench_metric_{}", i % METRICS)),
        ("instance", format!("host-{i:07}:9100")),
        ("job", format!("job-{:02}", i / METRICS % JOBS)),
    ])
}

fn write_block(dir: &std::path::Path, series: usize, start: i64, end: i64, step: i64) -> u64 {
    let mut all: Vec<(Labels, usize)> = (0..series).map(|i| (labels(i), i)).collect();
    all.sort();
    let mut w = BlockWriter::new(dir).unwrap();
    let mut samples = Vec::new();
    let mut total = 0u64;
    for (l, i) in &all {
        samples.clear();
        let mut v = (*i % 977) as f64;
        for t in (start..end).step_by(step as usize) {
            v += ((t / step) as usize % 7 + i % 3) as f64;
            samples.push(Sample { t, v });
        }
        total += samples.len() as u64;
        w.add_samples(l, &samples, 24 * HOUR).unwrap();
    }
    let mut ext = BTreeMap::new();
    ext.insert("cluster".to_owned(), "bench".to_owned());
    w.finish(BlockOptions {
        min_time: Some(start),
        max_time: Some(end),
        thanos: Some(ThanosMeta {
            version: 1,
            labels: ext,
            source: "bench".into(),
            ..ThanosMeta::default()
        }),
        compaction: None,
    })
    .unwrap();
    total
}

/// One Series call: (series, samples, wall time).
async fn series_call(
    url: &str,
    matchers: &[Matcher],
    start: i64,
    end: i64,
) -> (u64, u64, Duration) {
    let mut client = StoreClient::connect(url.to_owned())
        .await
        .unwrap()
        .max_decoding_message_size(usize::MAX);
    let request = SeriesRequest {
        min_time: start,
        max_time: end,
        matchers: matchers
            .iter()
            .map(strata_storepb::convert::matcher_to_proto)
            .collect(),
        response_batch_size: 64,
        ..Default::default()
    };
    let t = Instant::now();
    let mut stream = client.series(request).await.unwrap().into_inner();
    let (mut series, mut samples) = (0u64, 0u64);
    while let Some(frame) = stream.message().await.unwrap() {
        let batch = match frame.result {
            Some(series_response::Result::Series(s)) => vec![s],
            Some(series_response::Result::Batch(b)) => b.series,
            _ => continue,
        };
        series += batch.len() as u64;
        for s in &batch {
            for c in &s.chunks {
                let raw = c.raw.as_ref().unwrap();
                samples += u64::from(strata_chunkenc::xor_num_samples(&raw.data).unwrap_or(0));
            }
        }
    }
    (series, samples, t.elapsed())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let series: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let step_s: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(600);
    let step = step_s * 1000;
    let scratch = std::env::var("BENCH_TMP").unwrap_or_else(|_| "/var/tmp".into());
    let dir = tempfile::tempdir_in(scratch).unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();

    // Two 24 h blocks ending 3 h ago (so Prometheus keeps them as they are).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let end = (now - 3 * HOUR) / (24 * HOUR) * (24 * HOUR);
    let start = end - 48 * HOUR;
    let t = Instant::now();
    let mut samples = 0;
    for day in 0..2 {
        let from = start + day * 24 * HOUR;
        samples += write_block(&bucket, series, from, from + 24 * HOUR, step);
    }
    let bucket_bytes: u64 = walk_size(&bucket);
    eprintln!(
        "bucket: {series} series, {samples} samples, {bucket_bytes} bytes in 2 blocks, written in {:?}",
        t.elapsed()
    );

    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    let data = dir.path().join("store-data");
    // Build the binary first, so the time to ready is the gateway's own.
    strata_e2e::strata_binary();
    let t = Instant::now();
    let store = StrataProcess::start(&[
        "store",
        "--objstore.config",
        &yaml,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let ready = t.elapsed();
    let rss_ready = status_kib(store.pid(), "VmRSS:").unwrap_or(0);
    let anon_ready = status_kib(store.pid(), "RssAnon:").unwrap_or(0);

    let selectors: [(&str, Vec<Matcher>); 3] = [
        (
            "1 series",
            vec![
                Matcher::equal("__name__", "bench_metric_3"),
                Matcher::equal("instance", "host-0000003:9100"),
            ],
        ),
        (
            "1,000 series",
            vec![
                Matcher::equal("__name__", "bench_metric_3"),
                Matcher::equal("job", "job-07"),
            ],
        ),
        (
            "100,000 series",
            vec![Matcher::equal("__name__", "bench_metric_3")],
        ),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "| bucket | series | samples | bytes | store time to ready | store RSS after sync | store anonymous RSS after sync | Prometheus RSS on the same blocks |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (name, matchers) in &selectors {
        for pass in ["cold", "warm"] {
            let cpu = cpu_seconds(store.pid());
            let (n, s, took) =
                runtime.block_on(series_call(&store.grpc_url(), matchers, start, end));
            let cpu = cpu_seconds(store.pid()) - cpu;
            rows.push(format!(
                "| {name} | {pass} | {n} | {s} | {} ms | {:.0} | {:.0} | {:.2} s | {:.0} |",
                took.as_millis(),
                n as f64 / took.as_secs_f64(),
                s as f64 / took.as_secs_f64(),
                cpu,
                s as f64 / cpu.max(0.01)
            ));
        }
    }
    let rss_after = status_kib(store.pid(), "VmRSS:").unwrap_or(0);
    let hwm = status_kib(store.pid(), "VmHWM:").unwrap_or(0);
    drop(store);

    // The peer: Prometheus on the same blocks.
    let prom_dir = dir.path().join("prometheus");
    strata_e2e::copy_dir(&bucket, &prom_dir);
    let prometheus = Prometheus::start_on_blocks(&prom_dir);
    // Let it settle after opening the blocks.
    #[allow(clippy::disallowed_methods)]
    std::thread::sleep(Duration::from_secs(5));
    let prom_rss = status_kib(prometheus.pid(), "VmRSS:").unwrap_or(0);
    let client = strata_sidecar::prometheus::PromClient::new(
        &prometheus.url(),
        Duration::from_secs(600),
        &strata_sidecar::http_client::HttpClientConfig::default(),
    )
    .unwrap();
    let mut peer_rows = Vec::new();
    for (name, matchers) in &selectors {
        let t = Instant::now();
        let got = runtime
            .block_on(client.remote_read(start, end, matchers))
            .unwrap();
        let took = t.elapsed();
        let s: u64 = got
            .iter()
            .flat_map(|s| s.chunks.iter())
            .map(|c| u64::from(strata_chunkenc::xor_num_samples(&c.data).unwrap_or(0)))
            .sum();
        peer_rows.push(format!(
            "| {name} | {} | {s} | {} ms | {:.0} |",
            got.len(),
            took.as_millis(),
            s as f64 / took.as_secs_f64()
        ));
    }
    let prom_hwm = status_kib(prometheus.pid(), "VmHWM:").unwrap_or(0);
    println!(
        "| 2 x 24 h | {series} | {samples} | {bucket_bytes} | {} ms | {rss_ready} KiB | {anon_ready} KiB | {prom_rss} KiB |",
        ready.as_millis()
    );
    println!();
    println!(
        "| strata store Series (48 h) | pass | series | samples | wall time | series/s | samples/s | store CPU | samples per CPU-second |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!("store RSS after the calls {rss_after} KiB, peak {hwm} KiB");
    println!();
    println!("| Prometheus remote read (48 h) | series | samples | wall time | samples/s |");
    println!("|---|---|---|---|---|");
    for r in peer_rows {
        println!("{r}");
    }
    println!("Prometheus peak RSS {prom_hwm} KiB");
}

fn walk_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            walk_size(&e.path())
        } else {
            m.len()
        };
    }
    total
}
