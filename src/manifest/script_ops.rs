//! Element operators whose `fn` is a stateless script, evaluated a whole batch per call (the
//! script layer's native fast path runs simple expressions in one tight loop).

use crate::emit::Emit;
use crate::manifest::build::{emit_of, op_err};
use crate::operator::{OpError, OpResult, Operator, Outputs};
use crate::script::{Out, ScriptError, ScriptFn};
use crate::Value;

/// `map_element` or `filter_element` with a stateless script.
pub(crate) struct ScriptBatch {
    f: ScriptFn,
    file: String,
    filter: bool,
}

impl ScriptBatch {
    /// A `map_element` (`filter = false`) or a `filter_element` (`filter = true`).
    pub(crate) fn new(f: ScriptFn, file: String, filter: bool) -> Self {
        ScriptBatch { f, file, filter }
    }

    fn err(&self, e: ScriptError) -> OpError {
        op_err(e.with_file(self.file.clone()))
    }
}

impl Operator for ScriptBatch {
    type In = Value;
    type Out = Value;

    fn on_batch(&mut self, _port: usize, batch: Vec<Value>, out: &mut Outputs<Value>) -> OpResult {
        let (results, failure) = self.f.call_batch_prefix("x", &batch);
        let o = out.port_mut(0);
        o.reserve(results.len());
        if self.filter {
            for (x, r) in batch.into_iter().zip(results) {
                match r {
                    Out::One(Value::Bool(true)) => o.push(x),
                    Out::One(Value::Bool(false)) => {}
                    other => {
                        return Err(OpError::new(format!(
                            "operator \"{}\": a filter must return a bool, got {other:?}",
                            self.f.operator()
                        ))
                        .with_element(&x))
                    }
                }
            }
        } else {
            for r in results {
                match emit_of(r) {
                    Emit::One(v) => o.push(v),
                    e => e.push_into(o),
                }
            }
        }
        match failure {
            None => Ok(()),
            Some((_, e)) => Err(self.err(e)),
        }
    }
}
