//! An application's own operator kinds: `scale` (a native `f64 -> f64` closure with a `factor`)
//! and `above` (a native filter with a `threshold`), registered under names and used by a
//! manifest, `scale` in a process group. Workers re-execute this binary, so they know them too.
//!
//! `cargo run --example custom_kinds -- run examples/custom_kinds/pipeline.toml`
//! writes `examples/custom_kinds/out/high.jsonl`: 8.0, 14.5, 20.0.

use std::process::ExitCode;

use tributary::registry::Registry;

fn main() -> ExitCode {
    let mut reg = Registry::default();
    reg.map("scale", |p| {
        let factor = p.f64("factor").unwrap_or(1.0);
        move |x: f64| x * factor
    })
    .required(&["factor"]);
    reg.filter("above", |p| {
        let threshold = p.f64("threshold").unwrap_or(0.0);
        move |x: &f64| *x > threshold
    })
    .required(&["threshold"]);
    tributary::cli::main_with(reg)
}
