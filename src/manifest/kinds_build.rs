//! One builder per `op` kind: the manifest's keys and `fn` turned into calls of the Rust API.

use crate::emit::Emit;
use crate::manifest::build::{typecheck, BuildError, Func};
use crate::manifest::schema::{Manifest, OperatorDecl};
use crate::operator::OpError;
use crate::pipeline::{Graph, Stream};
use crate::Value;

fn bad(d: &OperatorDecl, message: impl Into<String>) -> BuildError {
    BuildError::Operator {
        operator: d.name.clone(),
        message: message.into(),
    }
}

fn func(m: &Manifest, d: &OperatorDecl) -> Result<Func, BuildError> {
    Func::of(m, d)?.ok_or_else(|| bad(d, "needs `fn`"))
}

/// A source's values checked against the type of the stream it feeds.
fn typed_values(m: &Manifest, d: &OperatorDecl, vals: Vec<Value>) -> Result<Vec<Value>, BuildError> {
    let ty = m.stream(&d.outputs[0]).ty;
    vals.into_iter()
        .enumerate()
        .map(|(i, v)| typecheck(ty, v).map_err(|e| bad(d, format!("value {}: {e}", i + 1))))
        .collect()
}

/// Adds the operator `d` reading `inputs`; returns its output streams in `out` order.
pub fn build_op(
    g: &mut Graph,
    m: &Manifest,
    d: &OperatorDecl,
    inputs: &[Stream<Value>],
) -> Result<Vec<Stream<Value>>, BuildError> {
    let one = |s: Stream<Value>| Ok(vec![s]);
    match d.kind.as_str() {
        "source.list" => {
            let vals = d.get_array("values").map(|a| a.to_vec()).unwrap_or_default();
            let vals = typed_values(m, d, vals)?;
            one(g.source_iter(vals))
        }
        "source.range" => {
            let start = d.get_i64("start").unwrap_or(0);
            let end = d.get_i64("end").unwrap_or(0);
            let step = d.get_i64("step").unwrap_or(1);
            let it = RangeIter { next: start, end, step };
            one(g.source_iter(it.map(Value::Int)))
        }
        "map_element" => {
            let mut f = func(m, d)?;
            one(g.try_map_element(&inputs[0], move |x: Value| {
                let mut b = vec![("x", x)];
                f.call(&mut b)
            }))
        }
        "filter_element" => {
            let mut f = func(m, d)?;
            one(g.try_filter_element(&inputs[0], move |x: &Value| f.call_filter(x)))
        }
        "sink_element" => {
            let mut f = func(m, d)?;
            g.try_sink_element(&inputs[0], move |x: Value| {
                let mut b = vec![("x", x)];
                f.call_sink(&mut b)
            });
            Ok(vec![])
        }
        "sink.null" => {
            g.sink_element(&inputs[0], |_x: Value| {});
            Ok(vec![])
        }
        "copy" => Ok(g.copy(&inputs[0], d.outputs.len())),
        "prepend" => {
            let vals = d.get_array("values").map(|a| a.to_vec()).unwrap_or_default();
            one(g.prepend(&inputs[0], vals))
        }
        "exponential_smoothing" => {
            let alpha = d.get_f64("alpha").unwrap_or(0.0);
            let mut s = d.state.as_ref().and_then(Value::as_f64).unwrap_or(0.0);
            one(g.try_map_element(&inputs[0], move |x: Value| {
                let v = x
                    .as_f64()
                    .ok_or_else(|| OpError::new(format!("expected a number, got {x}")).with_element(&x))?;
                s = alpha * s + (1.0 - alpha) * v;
                Ok(Emit::One(Value::Float(s)))
            }))
        }
        other => Err(bad(d, format!("the kind `{other}` is not built yet"))),
    }
}

/// `source.range`: integers from `start` (inclusive) to `end` (exclusive) by `step`.
struct RangeIter {
    next: i64,
    end: i64,
    step: i64,
}

impl Iterator for RangeIter {
    type Item = i64;
    fn next(&mut self) -> Option<i64> {
        let more = if self.step > 0 { self.next < self.end } else { self.next > self.end };
        if !more {
            return None;
        }
        let v = self.next;
        match self.next.checked_add(self.step) {
            Some(n) => self.next = n,
            None => self.next = self.end,
        }
        Some(v)
    }
}
