//! What an idle stream costs: N links that carry nothing, each read by its own operator actor,
//! measured as the growth of this process's resident memory while the graph runs.
//!
//! `cargo run --release --example idle_cost [N]`

use std::time::Duration;
use tributary::Graph;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut g = Graph::new();
    let (tx, x) = g.source_channel::<f64>(1024);
    let fan = g.copy(&x, n);
    for s in &fan {
        g.sink_element(s, |_v: f64| {});
    }
    let before = rss_kib();
    let runner = std::thread::spawn(move || g.run().map(|_| ()));
    // Let every actor start and every link exist, idle.
    std::thread::sleep(Duration::from_millis(1500));
    let during = rss_kib();
    drop(tx);
    runner.join().expect("run thread").expect("run");
    let per = (during.saturating_sub(before)) as f64 / n as f64;
    println!(
        "{n} idle streams (each a link plus the actor that reads it): RSS {before} KiB -> {during} KiB, {per:.2} KiB per idle stream"
    );
}
