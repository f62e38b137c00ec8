//! Sliding sum, window 100 step 1, over 1 M floats through `Graph::run()`: the incremental
//! built-in `map_window_agg` against a closure summing each window slice (the baseline).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tributary::operator::window::{Agg, Count};
use tributary::Graph;

const N: usize = 1_000_000;

fn run(xs: Vec<f64>, incremental: bool) -> f64 {
    let mut g = Graph::new();
    let s = g.source_iter(xs);
    // One thread for the whole graph: a thread group of its own for the window costs more in
    // cross-thread handoffs than it gains on this 2-core machine.
    let y = if incremental {
        g.map_window_agg(&s, Count::new(100, 1), Agg::Sum)
    } else {
        g.map_window(&s, Count::new(100, 1), |w: &[f64]| w.iter().sum::<f64>())
    };
    let total = std::sync::Arc::new(std::sync::Mutex::new(0.0));
    let t2 = total.clone();
    g.sink_list(&y, move |b: &[f64]| {
        *t2.lock().unwrap() += b.iter().sum::<f64>()
    });
    g.run().unwrap();
    let t = *total.lock().unwrap();
    t
}

fn sliding_sum(c: &mut Criterion) {
    let xs: Vec<f64> = (0..N).map(|i| (i % 1000) as f64 * 0.25).collect();
    let mut grp = c.benchmark_group("sliding_sum_w100_s1");
    grp.throughput(Throughput::Elements(N as u64));
    grp.sample_size(10);
    // The input copy is made outside the timed part.
    grp.bench_function("map_window_agg (incremental)", |b| {
        b.iter_batched(|| xs.clone(), |v| run(v, true), BatchSize::LargeInput)
    });
    grp.bench_function("map_window closure over slice", |b| {
        b.iter_batched(|| xs.clone(), |v| run(v, false), BatchSize::LargeInput)
    });
    grp.finish();
}

criterion_group!(benches, sliding_sum);
criterion_main!(benches);
