//! Structural health monitoring: a simulated 250 Hz accelerometer with injected shocks, a
//! sliding RMS window, a threshold, and alerts with timestamps.
//!
//! `cargo run --example structural_health`

use tributary::operator::window::Count;
use tributary::{Emit, Graph};

const HZ: f64 = 250.0;
const SECONDS: usize = 20;
/// Samples per RMS window (0.2 s) and the step between windows (0.04 s).
const WINDOW: usize = 50;
const STEP: usize = 10;
const THRESHOLD: f64 = 0.5;

fn main() {
    let mut g = Graph::new();
    // A deterministic "accelerometer": background vibration plus shocks at 4.0 s, 9.5 s and 15.2 s.
    let shocks = [4.0, 9.5, 15.2];
    let samples = g.source_fn(SECONDS * HZ as usize, move |i| {
        let t = i as f64 / HZ;
        let background = 0.05 * (2.0 * std::f64::consts::PI * 7.0 * t).sin()
            + 0.02 * ((i * 7919 % 101) as f64 / 101.0 - 0.5);
        let shock: f64 = shocks
            .iter()
            .filter(|&&s| t >= s && t < s + 0.3)
            .map(|&s| 2.0 * (-(t - s) * 15.0).exp() * (2.0 * std::f64::consts::PI * 40.0 * t).sin())
            .sum();
        (t, background + shock)
    });
    // Sliding RMS over (t, a) samples; each output is stamped with the window's last time.
    let rms = g.map_window(&samples, Count::new(WINDOW, STEP), |w: &[(f64, f64)]| {
        let ms = w.iter().map(|(_, a)| a * a).sum::<f64>() / w.len() as f64;
        (w[w.len() - 1].0, ms.sqrt())
    });
    // An alert when the RMS crosses the threshold upwards (stateful: remembers if it was above).
    let alerts = g.map_element_with_state(&rms, false, |(t, r): (f64, f64), above: &mut bool| {
        let crossing = r > THRESHOLD && !*above;
        *above = r > THRESHOLD;
        if crossing {
            Emit::One(format!(
                "t={t:6.2}s  ALERT  rms={r:.3} g (threshold {THRESHOLD})"
            ))
        } else {
            Emit::Skip
        }
    });
    let out = g.collect(&alerts);
    let report = g.run().expect("the pipeline runs");
    println!(
        "{} samples at {HZ} Hz, {} RMS windows:",
        report.count("source_fn#0").unwrap_or(0),
        report.count("map_window#1").unwrap_or(0)
    );
    for line in out.take() {
        println!("  {line}");
    }
}
