//! Two sensor streams sampled at different times, merged with `timed_zip`: one row per
//! timestamp, `None` where a sensor has no reading at that time.
//!
//! `cargo run --example sensor_merge`

use tributary::Graph;

fn main() {
    let temperature: Vec<(i64, f64)> =
        vec![(0, 20.5), (10, 20.7), (20, 21.0), (30, 21.4), (40, 21.3)];
    let humidity: Vec<(i64, f64)> = vec![(0, 0.41), (15, 0.43), (20, 0.44), (35, 0.47)];
    let mut g = Graph::new();
    let t = g.source_iter(temperature);
    let h = g.source_iter(humidity);
    let rows = g.timed_zip(&[&t, &h]);
    let out = g.collect(&rows);
    g.run().expect("the pipeline runs");
    println!("{:>4}  {:>8}  {:>8}", "t", "temp C", "humidity");
    let show = |x: &Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
    for (time, vals) in out.take() {
        println!("{time:>4}  {:>8}  {:>8}", show(&vals[0]), show(&vals[1]));
    }
}
