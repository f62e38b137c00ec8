//! Quick throughput check of the P1 chain (map, map, filter, sink) through the actor runtime.
use std::time::Instant;
use tributary::Graph;
fn main() {
    let n: i64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let mut g = Graph::new();
    let x = g.source_iter(0..n);
    let a = g.map_element(&x, |v| v + 1);
    let b = g.map_element(&a, |v| v * 2);
    let c = g.filter_element(&b, |v| v % 2 == 0);
    let total = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let t2 = total.clone();
    let mut acc = 0i64;
    g.sink_element(&c, move |v| {
        acc += v;
        t2.store(acc, std::sync::atomic::Ordering::Relaxed);
    });
    let t = Instant::now();
    g.run().unwrap();
    let dt = t.elapsed().as_secs_f64();
    println!(
        "{n} elements in {dt:.3}s: {:.1} M elements/s (sum {})",
        n as f64 / dt / 1e6,
        total.load(std::sync::atomic::Ordering::Relaxed)
    );
}
