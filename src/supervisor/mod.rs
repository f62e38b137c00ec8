//! The supervisor: runs a manifest, starting each process group as an OS process of its own
//! (the same executable in a worker role) linked by shared-memory rings.

pub mod dot;
pub mod plan;
pub mod process;

use crate::run::Report;

/// The end-of-run summary for people: elements per stream, drops, wall time.
pub fn summary(r: &Report) -> String {
    let mut s = format!("done in {:.3}s", r.wall.as_secs_f64());
    let total: u64 = r.streams.iter().map(|x| x.1).sum();
    s.push_str(&format!(
        "; {total} elements over {} streams",
        r.streams.len()
    ));
    if r.total_drops() > 0 {
        s.push_str(&format!("; {} dropped", r.total_drops()));
    }
    for (op, note) in &r.notes {
        s.push_str(&format!("\n  {op}: {note}"));
    }
    s
}
