//! Element operators whose `fn` is a stateless script, evaluated a whole batch per call (the
//! script layer's native fast path runs simple expressions in one tight loop).

use crate::manifest::build::op_err;
use crate::operator::{OpError, OpResult, Operator, Outputs};
use crate::script::{ScriptError, ScriptFn};
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
        let o = out.port_mut(0);
        let r = if self.filter {
            self.f.filter_batch("x", batch, o)
        } else {
            self.f.map_batch("x", batch, o)
        };
        r.map_err(|(_, e)| self.err(e))
    }
}
