//! The supervisor: runs a manifest, starting each process group as an OS process of its own
//! (the same executable in a worker role) linked by shared-memory rings.

pub mod dot;
pub mod plan;
pub mod process;
pub mod restart;
pub mod signals;

use crate::manifest::Manifest;
use crate::run::Report;

/// The manifest stream a process's report calls `name`: reports name an operator's output
/// after the operator (`op`, or `op.2` for its third output); streams fed from another
/// process keep their manifest name.
fn manifest_stream(m: &Manifest, name: &str) -> Option<String> {
    for o in &m.operators {
        if o.outputs.len() == 1 && o.name == name {
            return Some(o.outputs[0].clone());
        }
        if let Some(p) = name
            .strip_prefix(o.name.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|p| p.parse::<usize>().ok())
        {
            if let Some(s) = o.outputs.get(p) {
                return Some(s.clone());
            }
        }
    }
    m.operators
        .iter()
        .flat_map(|o| o.outputs.iter())
        .find(|s| s.as_str() == name)
        .cloned()
}

/// One report for a whole run from the reports of its processes: every stream of the
/// manifest in declaration order (0 where no process reported it), drops and notes of all.
pub fn merge(m: &Manifest, parts: &[Report]) -> Report {
    let mut out = Report::default();
    for o in &m.operators {
        for s in &o.outputs {
            out.streams.push((s.clone(), 0));
        }
    }
    let add = |list: &mut Vec<(String, u64)>, name: String, n: u64| match list
        .iter_mut()
        .find(|x| x.0 == name)
    {
        Some(x) => x.1 += n,
        None => list.push((name, n)),
    };
    for r in parts {
        for (name, n) in &r.streams {
            let s = manifest_stream(m, name).unwrap_or_else(|| name.clone());
            add(&mut out.streams, s, *n);
        }
        for (name, n) in &r.drops {
            let s = manifest_stream(m, name).unwrap_or_else(|| name.clone());
            add(&mut out.drops, s, *n);
        }
        out.notes.extend(r.notes.iter().cloned());
        out.restarts.extend(r.restarts.iter().cloned());
        out.wall = out.wall.max(r.wall);
    }
    out
}

/// The end-of-run summary for people: elements per stream, drops, notes, wall time.
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
    if r.restarts.is_empty() {
        s.push_str("; no restarts");
    }
    for line in &r.restarts {
        s.push_str(&format!("\n  {line}"));
    }
    for (name, n) in &r.streams {
        s.push_str(&format!("\n  stream {name}: {n} elements"));
        if let Some((_, d)) = r.drops.iter().find(|x| &x.0 == name) {
            s.push_str(&format!(", {d} dropped"));
        }
    }
    for (name, d) in &r.drops {
        if !r.streams.iter().any(|x| &x.0 == name) {
            s.push_str(&format!("\n  stream {name}: {d} dropped"));
        }
    }
    for (op, note) in &r.notes {
        s.push_str(&format!("\n  {op}: {note}"));
    }
    s
}

/// The end-of-run summary as one JSON object (for `--log-format json`): `status` is `ok`,
/// `stopped` or `failed`; `error` is set when failed.
pub fn summary_json(r: &Report, status: &str, error: Option<&str>) -> String {
    let pairs = |v: &[(String, u64)]| {
        v.iter()
            .map(|(k, n)| (k.clone(), serde_json::Value::from(*n)))
            .collect::<serde_json::Map<_, _>>()
    };
    let notes: Vec<serde_json::Value> = r
        .notes
        .iter()
        .map(|(op, note)| serde_json::json!({ "operator": op, "note": note }))
        .collect();
    let mut v = serde_json::json!({
        "event": "summary",
        "status": status,
        "wall_s": r.wall.as_secs_f64(),
        "elements": r.streams.iter().map(|x| x.1).sum::<u64>(),
        "dropped": r.total_drops(),
        "streams": pairs(&r.streams),
        "drops": pairs(&r.drops),
        "notes": notes,
        "restarts": r.restarts,
    });
    if let Some(e) = error {
        v["error"] = serde_json::Value::from(e);
    }
    v.to_string()
}
