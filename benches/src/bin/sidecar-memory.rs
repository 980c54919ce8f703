//! Resident memory of `strata sidecar` while it serves one Store API Series call over two
//! hours of 100,000 series (15 s samples: 48 million samples) read from a real Prometheus
//! 2.42, next to Prometheus' own peak. Prints a table.
//!
//! Run: `cargo run --release -p strata-benches --bin sidecar-memory`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::time::Instant;

use strata_benches::peak_rss_kib;
use strata_e2e::prometheus::Prometheus;
use strata_e2e::store_api::StrataProcess;
use strata_storepb::store_client::StoreClient;
use strata_storepb::{SeriesRequest, series_response};
use strata_tsdb::{BlockOptions, BlockWriter};
use strata_types::{Labels, Matcher, Sample};

const SERIES: usize = 100_000;
const STEP_MS: i64 = 15_000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("prometheus");
    // Two hours, aligned, ending an hour ago so Prometheus keeps it as a block.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = (now - 3 * 3_600_000) / 7_200_000 * 7_200_000;
    let end = start + 7_200_000;
    let t0 = Instant::now();
    let mut writer = BlockWriter::new(&data).unwrap();
    let mut labels: Vec<Labels> = (0..SERIES)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", "bench_metric".to_owned()),
                (
                    "instance",
                    format!("10.1.{}.{}:9100", i / 1000, i % 1000 / 10),
                ),
                ("shard", format!("{}", i % 10)),
            ])
        })
        .collect();
    labels.sort();
    let mut samples = 0u64;
    for (i, l) in labels.iter().enumerate() {
        let points: Vec<Sample> = (start..end)
            .step_by(STEP_MS as usize)
            .enumerate()
            .map(|(n, t)| Sample {
                t,
                v: (n as f64 * (1.0 + (i % 17) as f64)).floor(),
            })
            .collect();
        samples += points.len() as u64;
        writer.add_samples(l, &points, 7_200_000).unwrap();
    }
    writer.finish(BlockOptions::default()).unwrap();
    eprintln!(
        "wrote {SERIES} series, {samples} samples in {:?}",
        t0.elapsed()
    );

    let prometheus =
        Prometheus::start_on_blocks_with_labels(&data, &[("cluster", "bench"), ("replica", "0")]);
    let sidecar = StrataProcess::start(&[
        "sidecar",
        "--prometheus.url",
        &prometheus.url(),
        "--tsdb.path",
        data.to_str().unwrap(),
    ]);
    let idle = peak_rss_kib(sidecar.pid());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (series, chunks, elapsed) = runtime.block_on(async {
        let mut client = StoreClient::connect(sidecar.grpc_url())
            .await
            .unwrap()
            .max_decoding_message_size(usize::MAX);
        let t = Instant::now();
        let request = SeriesRequest {
            min_time: start,
            max_time: end,
            matchers: vec![strata_storepb::convert::matcher_to_proto(&Matcher::equal(
                "__name__",
                "bench_metric",
            ))],
            response_batch_size: 64,
            ..Default::default()
        };
        let mut stream = client.series(request).await.unwrap().into_inner();
        let (mut series, mut chunks) = (0usize, 0usize);
        while let Some(frame) = stream.message().await.unwrap() {
            let batch = match frame.result {
                Some(series_response::Result::Series(s)) => vec![s],
                Some(series_response::Result::Batch(b)) => b.series,
                _ => continue,
            };
            series += batch.len();
            chunks += batch.iter().map(|s| s.chunks.len()).sum::<usize>();
        }
        (series, chunks, t.elapsed())
    });
    assert_eq!(series, SERIES);
    let sidecar_peak = peak_rss_kib(sidecar.pid());
    let prom_peak = peak_rss_kib(prometheus.pid());
    println!("| what | value |");
    println!("|---|---|");
    println!("| series returned | {series} |");
    println!("| chunks returned | {chunks} |");
    println!("| samples in range | {samples} |");
    println!("| Series call duration | {} ms |", elapsed.as_millis());
    println!("| sidecar peak RSS before the call | {} KiB |", idle);
    println!("| sidecar peak RSS after the call | {} KiB |", sidecar_peak);
    println!("| Prometheus peak RSS (remote read) | {} KiB |", prom_peak);
}
