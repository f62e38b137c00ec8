//! Checks on what an operator emits: the element type of a typed output stream.
//!
//! Every node runs inside a [`Checked`] wrapper; without checks it only forwards calls.

use std::any::Any;

use crate::operator::{Gen, OpError, OpResult, Operator, Outputs};
use crate::value::Value;

/// A check of each element emitted on one output: it may rewrite the element (widen an int
/// into a float) or reject it with the operator failure to report.
pub type OutputCheck = Box<dyn CheckFn>;

/// What an [`OutputCheck`] does: any `FnMut(&mut Value) -> Result<(), OpError>` is one; a type
/// may also check a whole run of elements at once ([`CheckFn::check_all`]).
pub trait CheckFn: Send {
    /// Checks (and may rewrite) one element.
    fn check(&mut self, v: &mut Value) -> Result<(), OpError>;

    /// Checks `vs` in order; on the first rejected element, its index and the failure (the
    /// elements before it are checked, those after it untouched).
    fn check_all(&mut self, vs: &mut [Value]) -> Result<(), (usize, OpError)> {
        for (i, v) in vs.iter_mut().enumerate() {
            self.check(v).map_err(|e| (i, e))?;
        }
        Ok(())
    }
}

impl<F: FnMut(&mut Value) -> Result<(), OpError> + Send> CheckFn for F {
    fn check(&mut self, v: &mut Value) -> Result<(), OpError> {
        self(v)
    }
}

/// An operator whose outputs are checked after every callback (ports without a check, and
/// outputs that are not [`Value`]s, pass unchanged). Its snapshot is the inner operator's.
pub struct Checked<O> {
    inner: O,
    checks: Vec<Option<OutputCheck>>,
    marks: Vec<usize>,
}

impl<O: Operator> Checked<O> {
    /// `inner` with `checks[port]` applied to output `port`.
    pub fn new(inner: O, checks: Vec<Option<OutputCheck>>) -> Self {
        let checks = if checks.iter().all(Option::is_none) {
            vec![]
        } else {
            checks
        };
        Checked {
            inner,
            checks,
            marks: vec![],
        }
    }

    /// Runs one callback of the inner operator, then checks what it added to the outputs.
    #[inline]
    fn call<R>(
        &mut self,
        out: &mut Outputs<O::Out>,
        f: impl FnOnce(&mut O, &mut Outputs<O::Out>) -> OpResult<R>,
    ) -> OpResult<R> {
        if self.checks.is_empty() {
            return f(&mut self.inner, out);
        }
        self.marks.clear();
        for p in 0..out.len() {
            self.marks.push(out.port_mut(p).len());
        }
        let r = f(&mut self.inner, out);
        self.check(out)?;
        r
    }

    fn check(&mut self, out: &mut Outputs<O::Out>) -> OpResult {
        for p in 0..out.len().min(self.checks.len()) {
            let Some(check) = self.checks[p].as_mut() else {
                continue;
            };
            let port: &mut dyn Any = out.port_mut(p);
            let Some(port) = port.downcast_mut::<Vec<Value>>() else {
                continue;
            };
            let from = self.marks.get(p).copied().unwrap_or(0).min(port.len());
            if let Err((i, e)) = check.check_all(&mut port[from..]) {
                let i = from + i;
                let e = e.with_element(&port[i]);
                // What came before the bad element still flows; nothing after it does.
                port.truncate(i);
                for q in p + 1..out.len() {
                    let m = self.marks.get(q).copied().unwrap_or(0);
                    out.port_mut(q).truncate(m);
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

impl<O: Operator> Operator for Checked<O> {
    type In = O::In;
    type Out = O::Out;

    fn start(&mut self, out: &mut Outputs<O::Out>) -> OpResult {
        self.call(out, |op, out| op.start(out))
    }

    fn on_batch(&mut self, port: usize, batch: Vec<O::In>, out: &mut Outputs<O::Out>) -> OpResult {
        self.call(out, |op, out| op.on_batch(port, batch, out))
    }

    fn reads_batches(&self) -> bool {
        self.inner.reads_batches()
    }

    fn take_task(&mut self) -> Option<crate::operator::OpTask> {
        self.inner.take_task()
    }

    fn on_batch_ref(
        &mut self,
        port: usize,
        batch: &[O::In],
        out: &mut Outputs<O::Out>,
    ) -> OpResult {
        self.call(out, |op, out| op.on_batch_ref(port, batch, out))
    }

    fn on_end(&mut self, port: usize, out: &mut Outputs<O::Out>) -> OpResult {
        self.call(out, |op, out| op.on_end(port, out))
    }

    fn finish(&mut self, out: &mut Outputs<O::Out>) -> OpResult {
        self.call(out, |op, out| op.finish(out))
    }

    fn generate(&mut self, out: &mut Outputs<O::Out>, max: usize) -> OpResult<Gen> {
        self.call(out, |op, out| op.generate(out, max))
    }

    fn end_note(&self) -> Option<String> {
        self.inner.end_note()
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        self.inner.snapshot()
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        self.inner.restore(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::source::IterSource;

    #[test]
    fn checks_rewrite_or_reject_and_keep_what_came_before() {
        let vals = vec![Value::Int(1), Value::Float(2.5), Value::Str("x".into())];
        let check: OutputCheck = Box::new(|v: &mut Value| match v {
            Value::Int(i) => {
                *v = Value::Float(*i as f64);
                Ok(())
            }
            Value::Float(_) => Ok(()),
            _ => Err(OpError::new("not a number")),
        });
        let mut op = Checked::new(IterSource::new(vals.into_iter()), vec![Some(check)]);
        let mut out = Outputs::new(1);
        let e = op.generate(&mut out, 10).unwrap_err();
        assert_eq!(e.message, "not a number");
        assert_eq!(e.element.as_deref(), Some("Str(\"x\")"));
        assert_eq!(out.take(0), vec![Value::Float(1.0), Value::Float(2.5)]);
    }

    #[test]
    fn snapshots_are_the_inner_operators() {
        let vals = || (0..5).map(Value::Int).collect::<Vec<_>>().into_iter();
        let (got, want) = crate::operator::testkit::source_with_restore(
            || Checked::new(IterSource::new(vals()), vec![None]),
            2,
        );
        assert_eq!(got, want);
    }
}
