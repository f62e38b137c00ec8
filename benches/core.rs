//! P1 through the actor runtime: map(x+1) -> map(2x) -> filter(even) -> sink over 10 M i64,
//! against the same computation as one plain Rust loop (the hardware baseline, same run).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tributary::Graph;

const N: i64 = 10_000_000;

fn p1_runtime(n: i64) -> i64 {
    let mut g = Graph::new();
    let x = g.source_iter(0..n);
    let a = g.map_element(&x, |v| v + 1);
    let b = g.map_element(&a, |v| v * 2);
    let c = g.filter_element(&b, |v| v % 2 == 0);
    let total = Arc::new(AtomicI64::new(0));
    let t2 = total.clone();
    g.sink_list(&c, move |batch: &[i64]| {
        t2.fetch_add(batch.iter().sum::<i64>(), Ordering::Relaxed);
    });
    g.run().unwrap();
    total.load(Ordering::Relaxed)
}

/// The same computation as one plain loop over the input in memory (no runtime at all).
fn p1_plain_loop(data: &[i64]) -> i64 {
    black_box(data)
        .iter()
        .map(|v| v + 1)
        .map(|v| v * 2)
        .filter(|v| v % 2 == 0)
        .sum()
}

fn p1(c: &mut Criterion) {
    let data: Vec<i64> = (0..N).collect();
    assert_eq!(p1_runtime(1000), p1_plain_loop(&data[..1000]));
    let mut grp = c.benchmark_group("p1_map_map_filter_10M");
    grp.throughput(Throughput::Elements(N as u64));
    grp.sample_size(10);
    grp.bench_function("tributary actors", |b| b.iter(|| p1_runtime(N)));
    grp.bench_function("plain loop (baseline)", |b| b.iter(|| p1_plain_loop(&data)));
    grp.finish();
}

criterion_group!(benches, p1);
criterion_main!(benches);
