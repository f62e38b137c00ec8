//! Per-element cost of a manifest `fn` (`x * 2`): plain Rhai, native fast path, and `call_batch`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tributary::script::ScriptFn;
use tributary::Value;

const N: usize = 10_000;

fn bench(c: &mut Criterion) {
    let xs: Vec<Value> = (0..N as i64).map(Value::Int).collect();
    let params = BTreeMap::new();
    let mut g = c.benchmark_group("x * 2");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(N as u64));

    g.bench_function("baseline: native Rust closure", |b| {
        let f = |v: &Value| match v {
            Value::Int(i) => i.checked_mul(2).map(Value::Int),
            _ => None,
        };
        b.iter(|| {
            let out: Vec<Option<Value>> = xs.iter().map(|x| f(black_box(x))).collect();
            black_box(out)
        })
    });

    let mut plain = ScriptFn::compile("x * 2", "double", 1, &params).unwrap();
    plain.set_fast_path(false);
    g.bench_function("plain rhai call", |b| {
        b.iter(|| {
            for x in &xs {
                black_box(plain.call(&[("x", x)]).unwrap());
            }
        })
    });

    let mut fast = ScriptFn::compile("x * 2", "double", 1, &params).unwrap();
    assert!(fast.has_fast_path());
    g.bench_function("fast path call", |b| {
        b.iter(|| {
            for x in &xs {
                black_box(fast.call(&[("x", x)]).unwrap());
            }
        })
    });
    g.bench_function("fast path call_batch", |b| {
        b.iter(|| black_box(fast.call_batch("x", &xs).unwrap()))
    });
    g.bench_function("plain rhai call_batch", |b| {
        b.iter(|| black_box(plain.call_batch("x", &xs).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
