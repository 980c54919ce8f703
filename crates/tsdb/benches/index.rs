//! Index open, postings lookups and intersection on a block of 100k series.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_tsdb::index::{IndexReader, intersect};
use strata_tsdb::{BlockOptions, BlockReader, BlockWriter};
use strata_types::{Labels, MatchType, Matcher, Sample};

/// 100 metrics x 1000 instances (10 jobs): 100k series, one sample each.
fn build_block(dir: &std::path::Path) -> std::path::PathBuf {
    let mut all = Vec::new();
    for metric in 0..100 {
        for instance in 0..1000 {
            all.push(Labels::from_pairs([
                ("__name__", format!("metric_{metric:03}")),
                (
                    "instance",
                    format!("10.0.{}.{}:9100", instance / 250, instance % 250),
                ),
                ("job", format!("job-{}", instance % 10)),
            ]));
        }
    }
    all.sort();
    let mut writer = BlockWriter::new(dir).unwrap();
    for labels in &all {
        writer
            .add_samples(labels, &[Sample::new(1_000, 1.0)], 7_200_000)
            .unwrap();
    }
    writer.finish(BlockOptions::default()).unwrap().0
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = build_block(tmp.path());
    let index_bytes = bytes::Bytes::from(std::fs::read(dir.join("index")).unwrap());
    let block = BlockReader::open(&dir).unwrap();
    let index = block.index();

    let mut group = c.benchmark_group("index");
    group.throughput(Throughput::Bytes(index_bytes.len() as u64));
    group.bench_function("open_100k_series", |b| {
        b.iter(|| IndexReader::new("bench", index_bytes.clone()).unwrap())
    });
    group.finish();

    let job = index.postings("job", "job-3").unwrap(); // 10k series
    let metric = index.postings("__name__", "metric_042").unwrap(); // 1k series
    let all = index.all_postings().unwrap(); // 100k series
    let mut group = c.benchmark_group("postings");
    group.throughput(Throughput::Elements((job.len() + all.len()) as u64));
    group.bench_function("intersect_10k_with_100k", |b| {
        b.iter(|| intersect(vec![job.clone(), all.clone()]))
    });
    group.throughput(Throughput::Elements((job.len() + metric.len()) as u64));
    group.bench_function("intersect_1k_with_10k", |b| {
        b.iter(|| intersect(vec![metric.clone(), job.clone()]))
    });
    group.finish();

    let mut group = c.benchmark_group("postings_for_matchers");
    let eq = vec![
        Matcher::equal("__name__", "metric_042"),
        Matcher::equal("job", "job-3"),
    ];
    group.bench_function("name_and_job", |b| {
        b.iter(|| index.postings_for_matchers(&eq).unwrap())
    });
    let re = vec![
        Matcher::equal("__name__", "metric_042"),
        Matcher::new(MatchType::Regex, "instance", "10\\.0\\.1\\..*").unwrap(),
    ];
    group.bench_function("name_and_instance_regex", |b| {
        b.iter(|| index.postings_for_matchers(&re).unwrap())
    });
    let neg = vec![
        Matcher::equal("__name__", "metric_042"),
        Matcher::not_equal("job", "job-3"),
    ];
    group.bench_function("name_and_not_job", |b| {
        b.iter(|| index.postings_for_matchers(&neg).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
