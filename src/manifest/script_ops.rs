//! Element operators whose `fn` is a stateless script, evaluated a whole batch per call (the
//! script layer's native fast path runs simple expressions in one tight loop), and [`Script`]:
//! a manifest `fn` whose state the operator holds.

use crate::emit::Emit;
use crate::manifest::build::{emit_of, op_err, BuildError, Func};
use crate::manifest::schema::{Manifest, OperatorDecl};
use crate::operator::{OpError, OpResult, Operator, Outputs};
use crate::script::{ScriptError, ScriptFn};
use crate::Value;

/// `map_element` or `filter_element` with a stateless script (no snapshot: it has no state).
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

    fn reads_batches(&self) -> bool {
        true
    }

    fn on_batch_ref(
        &mut self,
        _port: usize,
        batch: &[Value],
        out: &mut Outputs<Value>,
    ) -> OpResult {
        let o = out.port_mut(0);
        let r = if self.filter {
            self.f.filter_batch_ref("x", batch, o)
        } else {
            self.f.map_batch_ref("x", batch, o)
        };
        r.map_err(|(_, e)| self.err(e))
    }
}

/// A manifest `fn` whose state, if it has one, the operator holds (so that it is part of the
/// operator's snapshot): a stateless `fn` is a [`Func`]; a stateful one is the compiled script,
/// and each call is given the state (`Some` exactly when the operator has `state`).
///
/// The stateful calls are those of [`Func`], with the state passed in rather than kept.
pub(crate) enum Script {
    /// No `state`: the state passed in is `None` and ignored.
    Plain(Func),
    /// With `state`: the script, and the manifest's file name for errors.
    Stateful(ScriptFn, String),
}

impl Script {
    /// The operator's `fn` and its initial state (`None` for the stateless form).
    pub(crate) fn of(
        m: &Manifest,
        d: &OperatorDecl,
    ) -> Result<Option<(Script, Option<Value>)>, BuildError> {
        let Some(func) = Func::of(m, d)? else {
            return Ok(None);
        };
        Ok(Some(match &d.state {
            None => (Script::Plain(func), None),
            Some(st) => {
                let (f, file) = func.into_parts();
                (Script::Stateful(f, file), Some(st.clone()))
            }
        }))
    }

    fn err(file: &str, e: ScriptError) -> OpError {
        op_err(e.with_file(file.to_string()))
    }

    /// Calls it: returns what to emit (the state, if any, is bound and advanced).
    pub(crate) fn call(
        &mut self,
        state: &mut Option<Value>,
        bindings: &mut Vec<(&str, Value)>,
    ) -> Result<Emit<Value>, OpError> {
        let (f, file) = match self {
            Script::Plain(func) => return func.call(bindings),
            Script::Stateful(f, file) => (f, file),
        };
        let st = state.get_or_insert(Value::Null);
        bindings.push(("state", std::mem::take(st)));
        let r = f.call_stateful(bindings);
        let st_back = bindings.pop().map(|b| b.1).unwrap_or_default();
        match r {
            Ok((out, next)) => {
                *st = next;
                Ok(emit_of(out))
            }
            Err(e) => {
                *st = st_back;
                Err(Self::err(file, e))
            }
        }
    }

    /// Calls it for a sink: a stateful sink returns just the next state.
    pub(crate) fn call_sink(
        &mut self,
        state: &mut Option<Value>,
        bindings: &mut Vec<(&str, Value)>,
    ) -> OpResult {
        let (f, file) = match self {
            Script::Plain(func) => return func.call_sink(bindings),
            Script::Stateful(f, file) => (f, file),
        };
        let st = state.get_or_insert(Value::Null);
        bindings.push(("state", std::mem::take(st)));
        let r = f.call_value(bindings);
        let st_back = bindings.pop().map(|b| b.1).unwrap_or_default();
        match r {
            Ok(next) => {
                *st = next;
                Ok(())
            }
            Err(e) => {
                *st = st_back;
                Err(Self::err(file, e))
            }
        }
    }

    /// Calls it for a split or multi operator: one entry per output (`()` emits nothing there).
    pub(crate) fn call_split(
        &mut self,
        state: &mut Option<Value>,
        bindings: &mut Vec<(&str, Value)>,
        n: usize,
    ) -> Result<Vec<Emit<Value>>, OpError> {
        let name = match self {
            Script::Plain(func) => return func.call_split(bindings, n),
            Script::Stateful(f, _) => f.operator().to_string(),
        };
        match self.call(state, bindings)? {
            Emit::One(Value::Array(a)) if a.len() == n => {
                Ok(a.into_iter().map(Emit::One).collect())
            }
            other => Err(OpError::new(format!(
                "operator \"{name}\": expected an array of {n} entries (one per output), got {other:?}"
            ))),
        }
    }

    /// Calls it for a filter: a bool, or `[keep, next_state]` in the stateful form.
    pub(crate) fn call_filter(
        &mut self,
        state: &mut Option<Value>,
        x: &Value,
    ) -> Result<bool, OpError> {
        let (f, file) = match self {
            Script::Plain(func) => return func.call_filter(x),
            Script::Stateful(f, file) => (f, file),
        };
        let st = state.get_or_insert(Value::Null);
        let mut b = vec![("x", x.clone()), ("state", std::mem::take(st))];
        let r = f.call_value(&b);
        let st_back = b.pop().map(|b| b.1).unwrap_or_default();
        let v = match r {
            Ok(v) => v,
            Err(e) => {
                *st = st_back;
                return Err(Self::err(file, e));
            }
        };
        let v = match v {
            Value::Array(mut a) if a.len() == 2 => {
                *st = a.pop().unwrap_or_default();
                a.pop().unwrap_or_default()
            }
            other => {
                *st = st_back;
                return Err(OpError::new(format!(
                    "operator \"{}\": a stateful filter must return [keep, next_state], got {other}",
                    f.operator()
                ))
                .with_element(x));
            }
        };
        match v {
            Value::Bool(k) => Ok(k),
            other => Err(OpError::new(format!(
                "operator \"{}\": a filter must return a bool, got {} {other}",
                f.operator(),
                other.type_name()
            ))
            .with_element(x)),
        }
    }
}
