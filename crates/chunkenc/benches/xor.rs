//! XOR chunk encode and decode throughput, in samples per second.
#![allow(clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata_chunkenc::{XorEncoder, XorIter};

/// 120-sample chunks like a 15s scrape: regular timestamps with occasional jitter; a counter
/// with random increments, a gauge with random mantissas (worst case), a constant, and the
/// data of Prometheus' own `BenchmarkXorRead` (regular timestamps, linear values).
fn chunks(kind: &str, count: usize) -> Vec<Vec<u8>> {
    let mut seed = 42u64;
    let mut rand = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    (0..count)
        .map(|c| {
            let mut enc = XorEncoder::new();
            let mut t = 1_700_000_000_000i64 + (c as i64) * 1_800_000;
            let mut counter = 0.0f64;
            for _ in 0..120 {
                let jitter = if rand() % 10 == 0 {
                    (rand() % 20) as i64 - 10
                } else {
                    0
                };
                t += 15_000 + jitter;
                if kind == "prometheus" {
                    continue;
                }
                let v = match kind {
                    "counter" => {
                        counter += (rand() % 100) as f64;
                        counter
                    }
                    "constant" => 1.0,
                    _ => 20.0 + (rand() % 1000) as f64 / 37.0,
                };
                enc.append_unchecked(t, v);
            }
            if kind == "prometheus" {
                // The data of Prometheus' own BenchmarkXorRead: t = i*1000, v = float(i*1000).
                for i in 0..120i64 {
                    enc.append_unchecked(i * 1000, (i * 1000) as f64);
                }
            }
            enc.bytes()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    for kind in ["counter", "gauge", "constant", "prometheus"] {
        let data = chunks(kind, 1000);
        let samples = (data.len() * 120) as u64;
        let mut group = c.benchmark_group(format!("xor_{kind}"));
        group.throughput(Throughput::Elements(samples));
        group.bench_function("decode", |b| {
            b.iter(|| {
                let mut sum = 0.0f64;
                let mut tsum = 0i64;
                for chunk in &data {
                    let mut it = XorIter::new(chunk).expect("header");
                    while let Some((t, v)) = it.next_sample() {
                        tsum = tsum.wrapping_add(t);
                        sum += v;
                    }
                }
                std::hint::black_box((sum, tsum))
            })
        });
        group.bench_function("decode_batch", |b| {
            let mut ts = Vec::with_capacity(120);
            let mut vs = Vec::with_capacity(120);
            b.iter(|| {
                let mut sum = 0.0f64;
                for chunk in &data {
                    ts.clear();
                    vs.clear();
                    strata_chunkenc::decode_xor(chunk, &mut ts, &mut vs).expect("valid chunk");
                    sum += vs.last().copied().unwrap_or_default();
                }
                std::hint::black_box((sum, ts.len()))
            })
        });
        // A series' chunks decoded together: 16 chunks are 8 hours of a 15 s scrape.
        group.bench_function("decode_chunks", |b| {
            let chunks: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let mut ts = Vec::with_capacity(16 * 120);
            let mut vs = Vec::with_capacity(16 * 120);
            b.iter(|| {
                let mut sum = 0.0f64;
                for series in chunks.chunks(16) {
                    ts.clear();
                    vs.clear();
                    strata_chunkenc::decode_xor_chunks(series, &mut ts, &mut vs)
                        .expect("valid chunks");
                    sum += vs.last().copied().unwrap_or_default();
                }
                std::hint::black_box((sum, ts.len()))
            })
        });
        let decoded: Vec<Vec<(i64, f64)>> = data
            .iter()
            .map(|chunk| XorIter::new(chunk).expect("header").collect())
            .collect();
        group.bench_function("encode", |b| {
            b.iter(|| {
                let mut total = 0usize;
                for samples in &decoded {
                    let mut enc = XorEncoder::new();
                    for &(t, v) in samples {
                        enc.append_unchecked(t, v);
                    }
                    total += enc.size_bytes();
                }
                std::hint::black_box(total)
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
