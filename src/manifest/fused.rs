//! One actor for a chain of single-input, single-output operators over `Value`s.
//!
//! [`Fused`] runs each batch through its first stage, what that emitted through the second, and
//! so on, in the same callback: no link and no actor wake-up between stages. Everything an
//! unfused chain would observe is kept:
//! - `start`, `on_end` and `finish` reach every stage in order, and whatever a stage emits
//!   there still passes through the stages after it (which then end, and finish, in turn);
//! - each stage keeps the type check of the stream it writes (`[[stream]] type`);
//! - the elements each stage but the last emits are counted ([`Stages`]), so the report still
//!   lists every stream between the stages;
//! - a failure (or a panic) is attributed to the stage that failed ([`Stages::failed`]), with
//!   its own message and element. What the failed stage emitted before failing still flows
//!   through the later stages, which then end and finish, as after an unfused failure.
//!
//! Which chains are fused is decided in [`crate::manifest::fuse`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::operator::checked::{Checked, OutputCheck};
use crate::operator::{Gen, OpError, OpResult, Operator, Outputs};
use crate::pipeline::{Stages, ValueOperator};
use crate::Value;

/// One operator of a fused chain.
pub(crate) struct Stage {
    /// The operator's name (the manifest's `name`).
    pub name: String,
    /// The operator.
    pub op: ValueOperator,
    /// The check of what it emits, when its output stream is typed.
    pub check: Option<OutputCheck>,
}

/// A boxed operator as an [`Operator`] (so that [`Checked`] can wrap it).
struct Dyn(ValueOperator);

impl Operator for Dyn {
    type In = Value;
    type Out = Value;

    fn start(&mut self, out: &mut Outputs<Value>) -> OpResult {
        self.0.start(out)
    }

    fn on_batch(&mut self, port: usize, batch: Vec<Value>, out: &mut Outputs<Value>) -> OpResult {
        self.0.on_batch(port, batch, out)
    }

    fn on_end(&mut self, port: usize, out: &mut Outputs<Value>) -> OpResult {
        self.0.on_end(port, out)
    }

    fn finish(&mut self, out: &mut Outputs<Value>) -> OpResult {
        self.0.finish(out)
    }

    fn generate(&mut self, out: &mut Outputs<Value>, max: usize) -> OpResult<Gen> {
        self.0.generate(out, max)
    }

    fn end_note(&self) -> Option<String> {
        self.0.end_note()
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        self.0.snapshot()
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        self.0.restore(state)
    }
}

/// A chain of operators run as one (see the module's documentation).
pub(crate) struct Fused {
    names: Vec<String>,
    ops: Vec<Checked<Dyn>>,
    /// What stage `i` emitted, before it moves on to stage `i + 1` (all stages but the last;
    /// the last writes into the node's own outputs).
    bufs: Vec<Outputs<Value>>,
    /// Elements emitted by each stage but the last.
    counts: Vec<Arc<AtomicU64>>,
    /// Stages that failed or finished: they take no more input (it is dropped, as by a link
    /// whose consumer is gone).
    done: Vec<bool>,
    failed: Arc<OnceLock<String>>,
}

impl Fused {
    /// The chain `stages` (at least one), and what the graph needs to report on its stages.
    pub(crate) fn new(stages: Vec<Stage>) -> (Fused, Stages) {
        assert!(!stages.is_empty(), "a fused chain has at least one stage");
        let n = stages.len();
        let counts: Vec<Arc<AtomicU64>> = (1..n).map(|_| Arc::default()).collect();
        let failed = Arc::new(OnceLock::new());
        let mut names = vec![];
        let mut ops = vec![];
        for s in stages {
            names.push(s.name);
            ops.push(Checked::new(Dyn(s.op), vec![s.check]));
        }
        let info = Stages {
            inner: names[..n - 1]
                .iter()
                .cloned()
                .zip(counts.iter().cloned())
                .collect(),
            failed: failed.clone(),
        };
        let fused = Fused {
            names,
            ops,
            bufs: (1..n).map(|_| Outputs::new(1)).collect(),
            counts,
            done: vec![false; n],
            failed,
        };
        (fused, info)
    }

    /// The stages' names, in order.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Calls stage `i` (unless it is done), writing into its buffer (into `out` for the last
    /// stage); a failure or a panic marks it done and is attributed to it.
    fn call(
        &mut self,
        i: usize,
        out: &mut Outputs<Value>,
        f: impl FnOnce(&mut Checked<Dyn>, &mut Outputs<Value>) -> OpResult,
    ) -> OpResult {
        if self.done[i] {
            return Ok(());
        }
        let target = if i + 1 == self.ops.len() {
            out
        } else {
            &mut self.bufs[i]
        };
        let op = &mut self.ops[i];
        let r = crate::operator::catch_panic(|| f(op, target));
        if r.is_err() {
            self.done[i] = true;
            let _ = self.failed.set(self.names[i].clone());
        }
        r
    }

    /// Moves what stage `i` emitted on to stage `i + 1` (and so on down the chain).
    fn flow(&mut self, i: usize, out: &mut Outputs<Value>) -> OpResult {
        if i + 1 >= self.ops.len() {
            return Ok(());
        }
        let batch = self.bufs[i].take(0);
        if batch.is_empty() {
            return Ok(());
        }
        self.counts[i].fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.step(i + 1, out, move |op, o| op.on_batch(0, batch, o))
    }

    /// Calls stage `i` and moves what it emitted down the chain. When it fails, what it emitted
    /// before failing still flows, the stages after it end, and its error is returned (the
    /// first failure is the one reported, as unfused).
    fn step(
        &mut self,
        i: usize,
        out: &mut Outputs<Value>,
        f: impl FnOnce(&mut Checked<Dyn>, &mut Outputs<Value>) -> OpResult,
    ) -> OpResult {
        match self.call(i, out, f) {
            Ok(()) => self.flow(i, out),
            Err(e) => {
                let _ = self.flow(i, out);
                self.end_after(i, out);
                Err(e)
            }
        }
    }

    /// After a failure: the stages before the failed one end and finish as their input ends
    /// (what they emit still counts, and goes no further than the failed stage).
    fn end_rest(&mut self, out: &mut Outputs<Value>) {
        for j in 0..self.ops.len() {
            if self.done[j] {
                continue;
            }
            let _ = self.step(j, out, |op, o| op.on_end(0, o));
            let _ = self.step(j, out, |op, o| op.finish(o));
            self.done[j] = true;
        }
    }

    /// Runs a callback of the node: stage 0's, then down the chain; after a failure the other
    /// stages end as they would unfused.
    fn top(
        &mut self,
        out: &mut Outputs<Value>,
        f: impl FnOnce(&mut Checked<Dyn>, &mut Outputs<Value>) -> OpResult,
    ) -> OpResult {
        let r = self.step(0, out, f);
        if r.is_err() {
            self.end_rest(out);
        }
        r
    }

    /// The input of every stage after `i` ends: each ends and finishes in turn (failures
    /// there come after the one being reported and are not).
    fn end_after(&mut self, i: usize, out: &mut Outputs<Value>) {
        for j in i + 1..self.ops.len() {
            if self.done[j] {
                continue;
            }
            let _ = self.step(j, out, |op, o| op.on_end(0, o));
            let _ = self.step(j, out, |op, o| op.finish(o));
            self.done[j] = true;
        }
    }
}

impl Operator for Fused {
    type In = Value;
    type Out = Value;

    fn start(&mut self, out: &mut Outputs<Value>) -> OpResult {
        // Unfused, every stage starts before it receives anything: start them all, then move
        // what each emitted down the chain.
        let n = self.ops.len();
        let mut first: Option<(usize, OpError)> = None;
        for i in 0..n {
            if let Err(e) = self.call(i, out, |op, o| op.start(o)) {
                first.get_or_insert((i, e));
            }
        }
        let mut r = Ok(());
        for i in 0..n - 1 {
            let f = self.flow(i, out);
            if r.is_ok() {
                r = f;
            }
        }
        if let Some((i, e)) = first {
            self.end_after(i, out);
            r = Err(e);
        }
        if r.is_err() {
            self.end_rest(out);
        }
        r
    }

    fn on_batch(&mut self, port: usize, batch: Vec<Value>, out: &mut Outputs<Value>) -> OpResult {
        self.top(out, move |op, o| op.on_batch(port, batch, o))
    }

    fn on_end(&mut self, port: usize, out: &mut Outputs<Value>) -> OpResult {
        self.top(out, move |op, o| op.on_end(port, o))
    }

    fn finish(&mut self, out: &mut Outputs<Value>) -> OpResult {
        self.top(out, |op, o| op.finish(o))?;
        self.done[0] = true;
        for j in 1..self.ops.len() {
            if self.done[j] {
                continue;
            }
            self.step(j, out, |op, o| op.on_end(0, o))?;
            self.step(j, out, |op, o| op.finish(o))?;
            self.done[j] = true;
        }
        Ok(())
    }

    fn end_note(&self) -> Option<String> {
        let notes: Vec<String> = self.ops.iter().filter_map(|o| o.end_note()).collect();
        (!notes.is_empty()).then(|| notes.join("; "))
    }

    /// Every stage's state, which stages are done, and the counts of the inner streams (the
    /// buffers between stages are empty between callbacks).
    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        let stages = self
            .ops
            .iter()
            .map(|o| o.snapshot())
            .collect::<OpResult<Vec<Option<Vec<u8>>>>>()?;
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let st: FusedState = (stages, self.done.clone(), counts);
        crate::operator::save_state("a fused chain", &st).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let (stages, done, counts): FusedState =
            crate::operator::load_state("a fused chain", state)?;
        if stages.len() != self.ops.len() || counts.len() != self.counts.len() {
            return Err(OpError::new(
                "a fused chain: the snapshot is of another chain",
            ));
        }
        for (op, st) in self.ops.iter_mut().zip(&stages) {
            if let Some(st) = st {
                op.restore(st)?;
            }
        }
        for (c, n) in self.counts.iter().zip(counts) {
            c.store(n, Ordering::Relaxed);
        }
        self.done = done;
        for b in &mut self.bufs {
            let _ = b.take(0);
        }
        Ok(())
    }
}

/// What a fused chain's snapshot holds: each stage's state, the done flags, the inner counts.
type FusedState = (Vec<Option<Vec<u8>>>, Vec<bool>, Vec<u64>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::fuse::add_fused;
    use crate::pipeline::{Graph, RunError};

    /// A stage that shows every callback: emits `start:T`, `end:T`, `fin:T`; passes elements on
    /// (or holds them until `finish`), fails or panics on one integer.
    #[derive(Clone, Default)]
    struct Probe {
        tag: &'static str,
        hold: bool,
        held: Vec<Value>,
        fail_at: Option<i64>,
        panic_at: Option<i64>,
        fail_at_finish: bool,
    }

    fn probe(tag: &'static str) -> Probe {
        Probe {
            tag,
            ..Probe::default()
        }
    }

    impl Operator for Probe {
        type In = Value;
        type Out = Value;

        fn start(&mut self, out: &mut Outputs<Value>) -> OpResult {
            out.push(Value::Str(format!("start:{}", self.tag)));
            Ok(())
        }

        fn on_batch(&mut self, _: usize, batch: Vec<Value>, out: &mut Outputs<Value>) -> OpResult {
            for x in batch {
                if let Value::Int(i) = x {
                    if Some(i) == self.fail_at {
                        return Err(OpError::new(format!("{} says no", self.tag)).with_element(&x));
                    }
                    if Some(i) == self.panic_at {
                        panic!("{} panics", self.tag);
                    }
                }
                if self.hold {
                    self.held.push(x);
                } else {
                    out.push(x);
                }
            }
            Ok(())
        }

        fn on_end(&mut self, _: usize, out: &mut Outputs<Value>) -> OpResult {
            out.push(Value::Str(format!("end:{}", self.tag)));
            Ok(())
        }

        fn finish(&mut self, out: &mut Outputs<Value>) -> OpResult {
            if self.fail_at_finish {
                return Err(OpError::new(format!("{} fails at finish", self.tag)));
            }
            out.put_vec(0, std::mem::take(&mut self.held));
            out.push(Value::Str(format!("fin:{}", self.tag)));
            Ok(())
        }
    }

    /// Rejects strings on the stage's output (a typed stream).
    fn no_strings() -> OutputCheck {
        Box::new(|v: &mut Value| match v {
            Value::Str(_) => Err(OpError::new("no strings here")),
            _ => Ok(()),
        })
    }

    /// What a run shows: the collected output, the stream counts, and failures as
    /// (operator, message, element).
    type Shown = (
        Vec<Value>,
        Vec<(String, u64)>,
        Vec<(String, String, Option<String>)>,
    );

    /// Runs `0..n` through `stages`, each its own actor or all fused.
    fn run(stages: Vec<(Probe, bool)>, n: i64, fused: bool) -> Shown {
        let mut g = Graph::new();
        let x = g.source_iter((0..n).map(Value::Int));
        let names = ["a", "b", "c", "d"];
        let out = if fused {
            let st = stages
                .into_iter()
                .enumerate()
                .map(|(i, (p, typed))| Stage {
                    name: names[i].to_string(),
                    op: Box::new(p),
                    check: typed.then(no_strings),
                })
                .collect();
            add_fused(&mut g, st, &x)
        } else {
            let mut s = x;
            for (i, (p, typed)) in stages.into_iter().enumerate() {
                g.name_next(names[i]);
                s = g.add_unary("probe", p, &[&s]);
                if typed {
                    g.check_output(&s, no_strings());
                }
            }
            s
        };
        let got = g.collect(&out);
        let (report, failures) = match g.run() {
            Ok(r) => (r, vec![]),
            Err(RunError::Failed(f, r)) => (*r, f),
            Err(e) => panic!("{e}"),
        };
        let failures = failures
            .into_iter()
            .map(|f| (f.operator, f.error.message, f.error.element))
            .collect();
        (got.take(), report.streams, failures)
    }

    fn same(stages: Vec<(Probe, bool)>, n: i64) -> Shown {
        let fused = run(stages.clone(), n, true);
        let plain = run(stages, n, false);
        assert_eq!(fused, plain);
        fused
    }

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn start_end_and_finish_reach_every_stage_in_order_and_flow_down_the_chain() {
        let (got, streams, failures) = same(
            vec![
                (probe("a"), false),
                (probe("b"), false),
                (probe("c"), false),
            ],
            3,
        );
        assert_eq!(
            got,
            vec![
                s("start:c"),
                s("start:b"),
                s("start:a"),
                Value::Int(0),
                Value::Int(1),
                Value::Int(2),
                s("end:a"),
                s("fin:a"),
                s("end:b"),
                s("fin:b"),
                s("end:c"),
                s("fin:c"),
            ]
        );
        assert!(failures.is_empty());
        let count = |n: &str| streams.iter().find(|x| x.0 == n).map(|x| x.1);
        assert_eq!(count("a"), Some(6));
        assert_eq!(count("b"), Some(9));
        assert_eq!(count("c"), Some(12));
    }

    #[test]
    fn what_a_stage_emits_at_finish_passes_through_the_later_stages() {
        let hold = Probe {
            hold: true,
            ..probe("b")
        };
        let (got, _, _) = same(
            vec![(probe("a"), false), (hold, false), (probe("c"), false)],
            4,
        );
        assert_eq!(
            got,
            vec![
                s("start:c"),
                s("start:b"),
                s("end:b"),
                s("start:a"),
                Value::Int(0),
                Value::Int(1),
                Value::Int(2),
                Value::Int(3),
                s("end:a"),
                s("fin:a"),
                s("fin:b"),
                s("end:c"),
                s("fin:c"),
            ]
        );
    }

    #[test]
    fn a_failing_stage_is_named_and_what_it_emitted_before_flows_on() {
        let bad = Probe {
            fail_at: Some(2),
            ..probe("b")
        };
        let (got, _, failures) = same(
            vec![(probe("a"), false), (bad, false), (probe("c"), false)],
            5,
        );
        assert_eq!(
            failures,
            vec![("b".into(), "b says no".into(), Some("Int(2)".into()))]
        );
        assert!(got.contains(&Value::Int(1)));
        assert!(!got.contains(&Value::Int(2)));
        assert_eq!(got.last(), Some(&s("fin:c")));
    }

    #[test]
    fn a_type_check_inside_the_chain_fails_the_stage_that_wrote_the_stream() {
        // `a` emits `start:a` into a stream that takes no strings.
        let (_, _, failures) = same(vec![(probe("a"), true), (probe("b"), false)], 3);
        assert_eq!(
            failures,
            vec![(
                "a".into(),
                "no strings here".into(),
                Some("Str(\"start:a\")".into())
            )]
        );
    }

    #[test]
    fn failures_at_the_last_stage_and_at_finish_are_named_too() {
        let last = Probe {
            fail_at: Some(1),
            ..probe("c")
        };
        let (_, _, failures) = same(
            vec![(probe("a"), false), (probe("b"), false), (last, false)],
            3,
        );
        assert_eq!(failures[0].0, "c");
        let fin = Probe {
            fail_at_finish: true,
            ..probe("a")
        };
        let (got, _, failures) = same(vec![(fin, false), (probe("b"), false)], 3);
        assert_eq!(
            failures,
            vec![("a".into(), "a fails at finish".into(), None)]
        );
        assert_eq!(got.last(), Some(&s("fin:b")));
    }

    #[test]
    fn a_panicking_stage_is_named() {
        let bad = Probe {
            panic_at: Some(1),
            ..probe("b")
        };
        let (_, _, failures) = same(vec![(probe("a"), false), (bad, false)], 3);
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, "b");
        assert_eq!(failures[0].1, "panicked: b panics");
    }
}
