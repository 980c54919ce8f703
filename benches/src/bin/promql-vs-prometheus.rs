//! Times the benchmark queries as 24h range queries (step 60s) over 10,000 series x 1 day at
//! 15 s in Strata's engine (reading the blocks in-process) and in Prometheus 2.42 (its own
//! `execTotalTime` from `stats=all`, so HTTP and JSON are left out), alternately, and prints
//! a table with the ratio Strata / Prometheus for each query and their geometric mean.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]

use std::time::Instant;

/// The allocator the strata binary uses, so the engine is measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use strata_benches::{QUERIES, median, write_blocks};
use strata_e2e::blocks_queryable::BlocksQueryable;
use strata_e2e::copy_dir;
use strata_e2e::prometheus::Prometheus;
use strata_promql::{Engine, EngineOptions, Value};

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let blocks = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks).unwrap();
    let start_ms: i64 = 1_699_999_200_000; // 2h-aligned
    let hours = 24;
    let t = Instant::now();
    let samples = write_blocks(&blocks, start_ms, hours);
    eprintln!(
        "wrote {samples} samples in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let prom_dir = dir.path().join("prometheus");
    copy_dir(&blocks, &prom_dir);
    let prometheus = Prometheus::start_on_blocks(&prom_dir);
    let queryable = BlocksQueryable::open(&blocks);
    let engine = Engine::new(EngineOptions::default());

    let (start, end, step) = (
        start_ms + 3_600_000,
        start_ms + hours * 3_600_000 - 1,
        60_000,
    );
    println!("| query | Prometheus 2.42 ms | Strata ms | Strata / Prometheus | series |");
    println!("|---|---:|---:|---:|---:|");
    let mut log_sum = 0.0;
    for (name, query) in QUERIES {
        let mut theirs = Vec::new();
        let mut ours = Vec::new();
        let mut series = 0;
        for _ in 0..runs {
            let body = prometheus.get_json(
                "/api/v1/query_range",
                &[
                    ("query", query),
                    ("start", &(start as f64 / 1000.0).to_string()),
                    ("end", &(end as f64 / 1000.0).to_string()),
                    ("step", "60"),
                    ("stats", "all"),
                ],
            );
            assert_eq!(body["status"], "success", "{query}: {body}");
            theirs.push(
                body["data"]["stats"]["timings"]["execTotalTime"]
                    .as_f64()
                    .unwrap()
                    * 1000.0,
            );
            let t = Instant::now();
            let result = engine
                .range_query(&queryable, query, start, end, step)
                .unwrap();
            ours.push(t.elapsed().as_secs_f64() * 1000.0);
            if let Value::Matrix(m) = result.value {
                series = m.len();
            }
        }
        let (p, s) = (median(theirs), median(ours));
        log_sum += (s / p).ln();
        println!("| {name} | {p:.1} | {s:.1} | {:.2} | {series} |", s / p);
    }
    println!(
        "\ngeometric mean of Strata / Prometheus: {:.2}",
        (log_sum / QUERIES.len() as f64).exp()
    );
}
