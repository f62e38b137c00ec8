//! A timed window over (t, v) readings: 10-second windows every 5 seconds, averaged.
//!
//! `cargo run --example timed_window`

use tributary::operator::timed::Timed;
use tributary::Graph;

fn main() {
    let readings: Vec<(f64, f64)> = vec![
        (0.5, 20.1),
        (2.0, 20.4),
        (7.5, 21.0),
        (11.0, 21.8),
        (12.5, 22.0),
        (19.0, 23.5),
        (24.0, 22.9),
        (31.0, 21.2),
        (36.5, 20.8),
        (41.0, 20.5),
    ];
    let mut g = Graph::new();
    let r = g.source_iter(readings);
    let avg = g.timed_window(&r, Timed::new(10.0, 5.0).flushed(), |w: &[(f64, f64)]| {
        w.iter().map(|(_, v)| v).sum::<f64>() / w.len() as f64
    });
    let out = g.collect(&avg);
    g.run().expect("the pipeline runs");
    println!("window end   mean of the readings in [end-10, end)");
    for (end, mean) in out.take() {
        println!("{end:>10.1}   {mean:.2}");
    }
}
