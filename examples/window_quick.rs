//! Quick throughput check of the sliding sum (window 100, step 1) through the actor runtime.
use std::time::Instant;
use tributary::operator::window::{Agg, Count};
use tributary::Graph;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let cap: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let mut rates = vec![];
    for _ in 0..9 {
        let xs: Vec<f64> = (0..n).map(|i| (i % 1000) as f64 * 0.25).collect();
        let mut g = Graph::new();
        g.set_default_link(tributary::LinkConfig {
            capacity: cap,
            overflow: tributary::Overflow::Block,
            ..tributary::LinkConfig::default()
        });
        let s = g.source_iter(xs);
        let y = g.map_window_agg(&s, Count::new(100, 1), Agg::Sum);
        g.sink_list(&y, |_b: &[f64]| {});
        let t = Instant::now();
        g.run().unwrap();
        let dt = t.elapsed().as_secs_f64();
        rates.push(n as f64 / dt / 1e6);
    }
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{n} elements, capacity {cap}: median {:.1} M elements/s (min {:.1}, max {:.1})",
        rates[4], rates[0], rates[8]
    );
    let t = Instant::now();
    let g = Graph::new();
    g.run().unwrap();
    println!("empty graph run: {:.3} ms", t.elapsed().as_secs_f64() * 1e3);
}
