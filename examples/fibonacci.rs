//! A Fibonacci feedback cycle: the stream of pairs (a, b) is fed back into itself as (b, a+b)
//! until the numbers pass a bound; the cycle then goes quiet and the run ends by itself.
//!
//! `cargo run --example fibonacci`

use tributary::{Emit, Graph};

fn main() {
    let mut g = Graph::new();
    let seed = g.source_iter(vec![(0u64, 1u64)]);
    let fb = g.stream::<(u64, u64)>("feedback");
    let pairs = g.weave(&[&seed, &fb]);
    let next = g.map_element(&pairs, |(a, b): (u64, u64)| {
        if b > 1_000_000 {
            Emit::Skip
        } else {
            Emit::One((b, a + b))
        }
    });
    g.connect(&next, &fb);
    let fib = g.map_element(&pairs, |(a, _)| a);
    let out = g.collect(&fib);
    g.run().expect("the cycle ends once it is quiet");
    let v = out.take();
    println!("{} Fibonacci numbers from a feedback cycle:", v.len());
    println!("{v:?}");
}
