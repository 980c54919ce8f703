//! The PromQL engine alone (criterion): the benchmark queries of `promql-vs-prometheus` as
//! 24 h range queries (step 60 s) over 10,000 series × 1 day at 15 s (57.6 M samples) held
//! in memory, so storage decoding is left out and only evaluation is measured.
#![allow(clippy::expect_used)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use strata_benches::{QUERIES, series_set};
use strata_promql::{Engine, EngineOptions, Queryable, SelectHints, Series};
use strata_types::{Matcher, Sample};

/// The allocator the strata binary uses, so the engine is measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const START_MS: i64 = 1_699_999_200_000;
const STEP_MS: i64 = 15_000;
const SAMPLES_PER_SERIES: i64 = 24 * 3600 * 1000 / STEP_MS;

/// The data set in memory, series sorted by labels as a storage returns them.
struct Data {
    series: Vec<Series>,
}

impl Data {
    fn new() -> Self {
        let series = series_set()
            .into_iter()
            .map(|s| {
                let samples = (0..SAMPLES_PER_SERIES)
                    .map(|n| Sample::new(START_MS + n * STEP_MS, s.value(n)))
                    .collect();
                Series::floats(s.labels, samples)
            })
            .collect();
        Self { series }
    }
}

impl Queryable for Data {
    fn select(
        &self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<Vec<Series>, strata_promql::Error> {
        Ok(self
            .series
            .iter()
            .filter(|s| {
                matchers
                    .iter()
                    .all(|m| m.matches(s.labels.get(m.name()).unwrap_or("")))
            })
            .map(|s| {
                let from = s.samples.partition_point(|x| x.t < hints.start);
                let to = s.samples.partition_point(|x| x.t <= hints.end);
                Series::floats(
                    s.labels.clone(),
                    s.samples.get(from..to).unwrap_or_default().to_vec(),
                )
            })
            .collect())
    }
}

fn engine(c: &mut Criterion) {
    let data = Data::new();
    let engine = Engine::new(EngineOptions::default());
    let (start, end, step) = (START_MS + 3_600_000, START_MS + 24 * 3_600_000 - 1, 60_000);
    let mut group = c.benchmark_group("range_24h_step_60s");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    for (name, query) in QUERIES {
        group.bench_function(*name, |b| {
            b.iter(|| {
                engine
                    .range_query(&data, query, start, end, step)
                    .expect("benchmark query evaluates")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
