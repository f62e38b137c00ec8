//! One builder per `op` kind: the manifest's keys and `fn` turned into calls of the Rust API.

use crate::emit::Emit;
use crate::manifest::build::{typecheck, BuildError};
use crate::manifest::schema::{Format as MFormat, StreamType};
use crate::manifest::schema::{Manifest, OperatorDecl};
use crate::manifest::script_ops::{Script, ScriptBatch};
use crate::operator::element::{FilterElement, MapElement};
use crate::operator::exec::{ExecCommand, ExecSink};
use crate::operator::list::MapList;
use crate::operator::merge::{merge_list_op_with_state, zip_map_op_with_state, MergeAsynch};
use crate::operator::multi::multi_element_op_with_state;
use crate::operator::sink::{SinkElement, WriteSink};
use crate::operator::source::{FileSource, Format, IterSource, OnError, SourceFn, TypeCheck};
use crate::operator::split::SplitElement;
use crate::operator::timed::{Timed, TimedWindow};
use crate::operator::window::{self, Count, CountWindow, MultiWindow};
use crate::operator::{FnState, OpError, Operator, Outputs};
use crate::pipeline::{Graph, Stream};
use crate::recovery::{SkipWritten, Slot};
use crate::registry::Registry;
use crate::Value;

/// A window function: a script (given the operator's state) or a built-in reducer.
type Reducer = Box<dyn FnMut(&[Value], &mut St) -> Result<Emit<Value>, OpError> + Send>;

/// The state of a manifest operator's `fn`, held by the operator (`None`: stateless).
type St = Option<Value>;

fn bad(d: &OperatorDecl, message: impl Into<String>) -> BuildError {
    BuildError::Operator {
        operator: d.name.clone(),
        message: message.into(),
    }
}

/// The operator's `fn`, and its initial state (held by the operator, see [`Script`]).
fn func(m: &Manifest, d: &OperatorDecl) -> Result<(Script, St), BuildError> {
    Script::of(m, d)?.ok_or_else(|| bad(d, "needs `fn`"))
}

/// A source's values checked against the type of the stream it feeds.
fn typed_values(
    m: &Manifest,
    d: &OperatorDecl,
    vals: Vec<Value>,
) -> Result<Vec<Value>, BuildError> {
    let ty = m.stream(&d.outputs[0]).ty;
    vals.into_iter()
        .enumerate()
        .map(|(i, v)| typecheck(ty, v).map_err(|e| bad(d, format!("value {}: {e}", i + 1))))
        .collect()
}

/// Adds the operator `d` reading `inputs`; returns its output streams in `out` order. Kinds
/// that are not built in come from `reg`.
pub fn build_op(
    g: &mut Graph,
    m: &Manifest,
    d: &OperatorDecl,
    inputs: &[Stream<Value>],
    reg: &Registry,
    slot: Option<Slot>,
) -> Result<Vec<Stream<Value>>, BuildError> {
    let one = |s: Stream<Value>| Ok(vec![s]);
    match d.kind.as_str() {
        "source.list" => {
            let vals = d
                .get_array("values")
                .map(|a| a.to_vec())
                .unwrap_or_default();
            let vals = typed_values(m, d, vals)?;
            let src = IterSource::new(vals.into_iter());
            one(g.source_paced_clocked("source.list", src, d.interval(), slot))
        }
        "source.range" => {
            let start = d.get_i64("start").unwrap_or(0);
            let end = d.get_i64("end").unwrap_or(0);
            let step = d.get_i64("step").unwrap_or(1);
            let it = RangeIter {
                next: start,
                end,
                step,
            };
            // Floats from the start on an f64 stream (its check then converts nothing).
            let out = if m.stream(&d.outputs[0]).ty == StreamType::F64 {
                let src = IterSource::new(it.map(|i| Value::Float(i as f64)));
                g.source_paced_clocked("source.range", src, d.interval(), slot)
            } else {
                let src = IterSource::new(it.map(Value::Int));
                g.source_paced_clocked("source.range", src, d.interval(), slot)
            };
            one(out)
        }
        "map_element" | "filter_element" if d.state.is_none() => {
            let Some((Script::Plain(f), _)) = Script::of(m, d)? else {
                return Err(bad(d, "needs `fn`"));
            };
            let (f, file) = f.into_parts();
            let filter = d.kind == "filter_element";
            one(g.add_unary(&d.kind, ScriptBatch::new(f, file, filter), &[&inputs[0]]))
        }
        "source_fn" => {
            let (kind, op) = fn_operator(m, d)?;
            one(g.source_paced_clocked(kind, op, d.interval(), slot))
        }
        "timed_window" if d.agg().is_some() => {
            let agg = d.agg().map(agg_of).unwrap_or(window::Agg::Sum);
            one(g.timed_window_agg_value(&inputs[0], timed_of(d), agg))
        }
        "map_element"
        | "filter_element"
        | "sink_element"
        | "exponential_smoothing"
        | "map_list"
        | "sink_list"
        | "map_window"
        | "map_window_list"
        | "sliding_window_with_startup"
        | "sink_window"
        | "split_window"
        | "merge_window"
        | "multi_window"
        | "timed_window"
        | "zip_map"
        | "merge_list"
        | "merge_asynch"
        | "blend"
        | "split_element"
        | "multi_element" => {
            let (kind, op) = fn_operator(m, d)?;
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            Ok(g.add_operator(kind, op, &refs, d.outputs.len()))
        }
        "sink.null" => {
            g.sink_null(&inputs[0]);
            Ok(vec![])
        }
        "copy" => Ok(g.copy(&inputs[0], d.outputs.len())),
        "prepend" => {
            let vals = d
                .get_array("values")
                .map(|a| a.to_vec())
                .unwrap_or_default();
            one(g.prepend(&inputs[0], vals))
        }
        "source.file" | "source.stdin" => {
            let (on_error, tc) = line_checks(m, d);
            let src = match d.kind.as_str() {
                "source.file" => {
                    let path = m.resolve(d.get_str("path").unwrap_or_default());
                    FileSource::new(path, src_format(d), on_error, tc)
                }
                _ => FileSource::stdin(src_format(d), on_error, tc),
            };
            one(g.source_paced_clocked(&d.kind, src, d.interval(), slot))
        }
        "source.exec" => {
            let (on_error, tc) = line_checks(m, d);
            one(g.source_exec(exec_command(m, d), on_error, tc, d.interval()))
        }
        "sink.exec" => {
            let sink = ExecSink::new(exec_command(m, d));
            match slot {
                Some(s) => g.add_sink("sink.exec", SkipWritten::new(sink, s), &[&inputs[0]]),
                None => g.add_sink("sink.exec", sink, &[&inputs[0]]),
            }
            Ok(vec![])
        }
        "sink.file" => {
            let path = m.resolve(d.get_str("path").unwrap_or_default());
            g.sink_file(&inputs[0], path, sink_format(d));
            Ok(vec![])
        }
        "sink.stdout" => {
            let sink = WriteSink::stdout(sink_format(d));
            match slot {
                Some(s) => g.add_sink("sink.stdout", SkipWritten::new(sink, s), &[&inputs[0]]),
                None => g.add_sink("sink.stdout", sink, &[&inputs[0]]),
            }
            Ok(vec![])
        }
        "zip_stream" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            one(g.zip_stream_values(&refs))
        }
        "timed_zip" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            one(g.timed_zip(&refs))
        }
        "timed_mix" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            one(g.timed_mix(&refs))
        }
        "mix" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            one(g.mix_values(&refs))
        }
        "weave" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            one(g.weave(&refs))
        }
        "unzip" => Ok(g.unzip(&inputs[0], d.outputs.len())),
        "separate" => Ok(g.separate(&inputs[0], d.outputs.len())),
        "timed_unzip" => Ok(g.timed_unzip::<Value>(&inputs[0], d.outputs.len())),
        "add" | "sub" | "mul" | "div" | "lt" | "le" | "eq" | "ne" | "gt" | "ge" => {
            let (a, b) = (&inputs[0], &inputs[1]);
            one(match d.kind.as_str() {
                "add" => g.add(a, b),
                "sub" => g.sub(a, b),
                "mul" => g.mul(a, b),
                "div" => g.div(a, b),
                k => {
                    let k = k.to_string();
                    g.try_zip_map(&[a, b], move |xs: Vec<Value>| {
                        compare(&k, &xs[0], &xs[1]).map(|r| Emit::One(Value::Bool(r)))
                    })
                }
            })
        }
        other => match reg.builder(other) {
            Some(b) => b(g, d, inputs),
            None => Err(bad(d, format!("the kind `{other}` is not built yet"))),
        },
    }
}

/// A manifest operator over values, boxed: what [`fn_operator`] builds.
pub(crate) type ValueOp = Box<dyn Operator<In = Value, Out = Value>>;

/// The operator of a kind with a `fn` (with `state`, its stateful form), of `map_window` and
/// `sliding_window_with_startup` with `agg`, and of `exponential_smoothing`, with the kind it
/// is added under. The state lives in the operator, so that it is part of its snapshot.
pub(crate) fn fn_operator(
    m: &Manifest,
    d: &OperatorDecl,
) -> Result<(&'static str, ValueOp), BuildError> {
    let n_in = d.inputs.len();
    let n_out = d.outputs.len();
    Ok(match d.kind.as_str() {
        "map_element" => {
            let (mut f, st) = func(m, d)?;
            let op = MapElement::with_state(st, move |x: Value, st: &mut St| {
                let mut b = vec![("x", x)];
                f.call(st, &mut b)
            });
            ("map_element", Box::new(op))
        }
        "filter_element" => {
            let (mut f, st) = func(m, d)?;
            let op =
                FilterElement::with_state(st, move |x: &Value, st: &mut St| f.call_filter(st, x));
            ("filter_element", Box::new(op))
        }
        "sink_element" => {
            let (mut f, st) = func(m, d)?;
            let op = SinkElement::with_state(st, move |x: Value, st: &mut St| {
                let mut b = vec![("x", x)];
                f.call_sink(st, &mut b)
            });
            ("sink_element", Box::new(op))
        }
        "exponential_smoothing" => {
            let alpha = d.get_f64("alpha").unwrap_or(0.0);
            let s0 = d.state.as_ref().and_then(Value::as_f64).unwrap_or(0.0);
            let op = MapElement::with_state(FnState(s0), move |x: Value, s: &mut FnState<f64>| {
                let v = x.as_f64().ok_or_else(|| {
                    OpError::new(format!("expected a number, got {x}")).with_element(&x)
                })?;
                s.0 = alpha * s.0 + (1.0 - alpha) * v;
                Ok(Emit::One(Value::Float(s.0)))
            });
            ("map_element", Box::new(op))
        }
        "source_fn" => {
            let count = d.get_usize("count").unwrap_or(usize::MAX);
            let (mut f, st) = func(m, d)?;
            let ty = m.stream(&d.outputs[0]).ty;
            let name = d.name.clone();
            let src = SourceFn::with_state(count, st, move |i, st: &mut St| {
                let mut b = vec![("x", Value::Int(i as i64))];
                let e = f.call(st, &mut b)?;
                check_emit(ty, e, &name)
            });
            ("source_fn", Box::new(src))
        }
        "map_list" => {
            let (mut f, st) = func(m, d)?;
            let op = MapList::with_state(st, move |b: &[Value], st: &mut St| {
                let mut bind = vec![("batch", Value::Array(b.to_vec()))];
                spliced(f.call(st, &mut bind)?)
            });
            ("map_list", Box::new(op))
        }
        "sink_list" => {
            let (mut f, st) = func(m, d)?;
            let op = MapList::with_state(st, move |b: &[Value], st: &mut St| {
                let mut bind = vec![("batch", Value::Array(b.to_vec()))];
                f.call_sink(st, &mut bind).map(|()| Vec::<Value>::new())
            });
            ("sink_list", Box::new(op))
        }
        "map_window" | "map_window_list" | "sliding_window_with_startup" => {
            let c = count(d)?;
            let list = d.kind == "map_window_list";
            let (mut red, st): (Reducer, St) = match d.agg() {
                Some(a) => {
                    let a = agg_of(a);
                    (
                        Box::new(move |w: &[Value], _: &mut St| a.reduce(w).map(Emit::One)),
                        None,
                    )
                }
                None => {
                    let (mut f, st) = func(m, d)?;
                    let red: Reducer = Box::new(move |w: &[Value], st: &mut St| {
                        let mut b = vec![("window", Value::Array(w.to_vec()))];
                        let e = f.call(st, &mut b)?;
                        if list {
                            Ok(Emit::Many(spliced(e)?))
                        } else {
                            Ok(e)
                        }
                    });
                    (red, st)
                }
            };
            let emit = move |w: &[Value], st: &mut St, out: &mut Outputs<Value>| {
                out.emit(0, red(w, st)?);
                Ok(())
            };
            if d.kind == "sliding_window_with_startup" {
                let op = CountWindow::startup_with_state(c, st, emit);
                ("sliding_window_with_startup", Box::new(op))
            } else {
                let init = d.get("initial_value").cloned();
                (
                    "map_window",
                    Box::new(CountWindow::with_state(c, init, st, emit)),
                )
            }
        }
        "sink_window" => {
            let c = count(d)?;
            let (mut f, st) = func(m, d)?;
            let op = CountWindow::<Value, Value, _, _>::with_state(
                c,
                None,
                st,
                move |w: &[Value], st: &mut St, _: &mut Outputs<Value>| {
                    let mut b = vec![("window", Value::Array(w.to_vec()))];
                    f.call_sink(st, &mut b)
                },
            );
            ("sink_window", Box::new(op))
        }
        "split_window" => {
            let c = count(d)?;
            let (mut f, st) = func(m, d)?;
            let op = CountWindow::with_state(
                c,
                None,
                st,
                move |w: &[Value], st: &mut St, out: &mut Outputs<Value>| {
                    let mut b = vec![("window", Value::Array(w.to_vec()))];
                    out.emit_each("split_window", f.call_split(st, &mut b, n_out)?)
                },
            );
            ("split_window", Box::new(op))
        }
        "merge_window" | "multi_window" => {
            let ws = d.get_usize_per_input("window", n_in).unwrap_or_default();
            let ss = d
                .get_usize_per_input("step", n_in)
                .unwrap_or_else(|| vec![1; n_in]);
            let counts: Vec<Count> = ws
                .iter()
                .zip(&ss)
                .map(|(w, s)| Count::new(*w, *s))
                .collect();
            let (mut f, st) = func(m, d)?;
            if d.kind == "merge_window" {
                let op = MultiWindow::with_state(
                    n_in,
                    &counts,
                    st,
                    move |ws: &[&[Value]], st: &mut St, out: &mut Outputs<Value>| {
                        let mut b = vec![("windows", windows_value(ws))];
                        out.emit(0, f.call(st, &mut b)?);
                        Ok(())
                    },
                );
                ("merge_window", Box::new(op))
            } else {
                let op = MultiWindow::with_state(
                    n_in,
                    &counts,
                    st,
                    move |ws: &[&[Value]], st: &mut St, out: &mut Outputs<Value>| {
                        let mut b = vec![("windows", windows_value(ws))];
                        out.emit_each("multi_window", f.call_split(st, &mut b, n_out)?)
                    },
                );
                ("multi_window", Box::new(op))
            }
        }
        "timed_window" => {
            let p = timed_of(d);
            let (mut f, st) = func(m, d)?;
            let op = TimedWindow::with_state(
                p,
                st,
                move |end, w: &[Value], st: &mut St, out: &mut Outputs<Value>| {
                    let mut b = vec![("window", Value::Array(w.to_vec()))];
                    let end = p.end_value(end);
                    let e = f.call(st, &mut b)?;
                    out.emit(0, e.map(|u| Value::Array(vec![end.clone(), u])));
                    Ok(())
                },
            );
            ("timed_window", Box::new(op))
        }
        "zip_map" => {
            let (mut f, st) = func(m, d)?;
            let op = zip_map_op_with_state(n_in, st, move |xs: Vec<Value>, st: &mut St| {
                let mut b = vec![("xs", Value::Array(xs))];
                f.call(st, &mut b)
            });
            ("zip_map", Box::new(op))
        }
        "merge_list" => {
            let (mut f, st) = func(m, d)?;
            let op = merge_list_op_with_state(n_in, st, move |bs: Vec<Vec<Value>>, st: &mut St| {
                let arr = Value::Array(bs.into_iter().map(Value::Array).collect());
                let mut b = vec![("batches", arr)];
                spliced(f.call(st, &mut b)?)
            });
            ("merge_list", Box::new(op))
        }
        "merge_asynch" | "blend" => {
            let (mut f, st) = func(m, d)?;
            let op = MergeAsynch::with_state(st, move |i: usize, x: Value, st: &mut St| {
                let mut b = vec![("x", x), ("i", Value::Int(i as i64))];
                f.call(st, &mut b)
            });
            ("merge_asynch", Box::new(op))
        }
        "split_element" => {
            let (mut f, st) = func(m, d)?;
            let op = SplitElement::with_state(st, move |x: Value, st: &mut St| {
                let mut b = vec![("x", x)];
                f.call_split(st, &mut b, n_out)
            });
            ("split_element", Box::new(op))
        }
        "multi_element" => {
            let (mut f, st) = func(m, d)?;
            let op = multi_element_op_with_state(n_in, st, move |xs: Vec<Value>, st: &mut St| {
                let mut b = vec![("xs", Value::Array(xs))];
                f.call_split(st, &mut b, n_out)
            });
            ("multi_element", Box::new(op))
        }
        other => return Err(bad(d, format!("`{other}` has no function"))),
    })
}

/// The windows of a `timed_window`.
fn timed_of(d: &OperatorDecl) -> Timed {
    let num = |k: &str| d.get(k).and_then(Value::as_f64);
    let integer = ["duration", "step", "start"]
        .iter()
        .all(|k| d.get(k).map(|v| matches!(v, Value::Int(_))).unwrap_or(true));
    let duration = num("duration").unwrap_or(1.0);
    Timed {
        duration,
        step: num("step").unwrap_or(duration),
        start: num("start").unwrap_or(0.0),
        flush: d.get_bool("flush").unwrap_or(false),
        integer,
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
        let more = if self.step > 0 {
            self.next < self.end
        } else {
            self.next > self.end
        };
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

    /// Exact: lets a batch be reserved at once.
    fn size_hint(&self) -> (usize, Option<usize>) {
        let (next, end, step) = (self.next as i128, self.end as i128, self.step as i128);
        let n = if step > 0 && next < end {
            (end - next + step - 1) / step
        } else if step < 0 && next > end {
            (next - end - step - 1) / -step
        } else {
            0
        };
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

/// A script result spliced into the output: an array gives its entries.
fn spliced(e: Emit<Value>) -> Result<Vec<Value>, OpError> {
    match e {
        Emit::Skip => Ok(vec![]),
        Emit::One(Value::Array(a)) => Ok(a),
        Emit::Many(v) => Ok(v),
        Emit::One(other) => Err(OpError::new(format!(
            "expected an array to splice, got {other}"
        ))),
    }
}

fn windows_value(ws: &[&[Value]]) -> Value {
    Value::Array(ws.iter().map(|w| Value::Array(w.to_vec())).collect())
}

fn count(d: &OperatorDecl) -> Result<Count, BuildError> {
    let w = d
        .get_usize("window")
        .ok_or_else(|| bad(d, "needs `window`"))?;
    let s = d.get_usize("step").unwrap_or(1);
    let c = Count::new(w, s);
    Ok(if d.get_bool("flush").unwrap_or(false) {
        c.flushed()
    } else {
        c
    })
}

/// What a bad input line of the source's stream does, and its type check.
fn line_checks(m: &Manifest, d: &OperatorDecl) -> (OnError, Option<TypeCheck>) {
    let sd = m.stream(&d.outputs[0]);
    let on_error = match sd.on_error {
        crate::manifest::schema::OnError::Fail => OnError::Fail,
        crate::manifest::schema::OnError::Skip => OnError::Skip,
    };
    (on_error, type_check_fn(sd.ty))
}

/// The `command` of an exec operator: run in the manifest's directory, with relative paths
/// that name an existing file there resolved against it.
fn exec_command(m: &Manifest, d: &OperatorDecl) -> ExecCommand {
    let written = d.get_strings("command").unwrap_or_default();
    // Absolute, since the command runs in this directory.
    let dir = std::path::absolute(&m.dir).unwrap_or_else(|_| m.dir.clone());
    let argv = written
        .iter()
        .map(|a| {
            let p = std::path::Path::new(a);
            let r = dir.join(p);
            if !p.is_absolute() && !a.is_empty() && r.is_file() {
                r.to_string_lossy().into_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    ExecCommand {
        argv,
        dir: Some(dir),
        label: written.join(" "),
    }
}

fn src_format(d: &OperatorDecl) -> Format {
    match d.effective_format() {
        MFormat::Lines => Format::Lines,
        MFormat::Jsonl => Format::Jsonl,
        MFormat::Csv => Format::Csv,
    }
}

fn sink_format(d: &OperatorDecl) -> Format {
    match d.format_or(MFormat::Jsonl) {
        MFormat::Lines => Format::Lines,
        MFormat::Jsonl => Format::Jsonl,
        MFormat::Csv => Format::Csv,
    }
}

fn type_check_fn(ty: StreamType) -> Option<TypeCheck> {
    match ty {
        StreamType::Any => None,
        StreamType::I64 => Some(|v: &Value| typecheck(StreamType::I64, v.clone()).map(|_| ())),
        StreamType::F64 => Some(|v: &Value| typecheck(StreamType::F64, v.clone()).map(|_| ())),
        StreamType::Bool => Some(|v: &Value| typecheck(StreamType::Bool, v.clone()).map(|_| ())),
        StreamType::Str => Some(|v: &Value| typecheck(StreamType::Str, v.clone()).map(|_| ())),
    }
}

fn check_emit(ty: StreamType, e: Emit<Value>, op: &str) -> Result<Emit<Value>, OpError> {
    if ty == StreamType::Any {
        return Ok(e);
    }
    let chk =
        |v: Value| typecheck(ty, v).map_err(|m| OpError::new(format!("operator \"{op}\": {m}")));
    Ok(match e {
        Emit::Skip => Emit::Skip,
        Emit::One(v) => Emit::One(chk(v)?),
        Emit::Many(vs) => Emit::Many(vs.into_iter().map(chk).collect::<Result<_, _>>()?),
    })
}

fn agg_of(a: crate::manifest::schema::Agg) -> window::Agg {
    use crate::manifest::schema::Agg as M;
    match a {
        M::Sum => window::Agg::Sum,
        M::Mean => window::Agg::Mean,
        M::Min => window::Agg::Min,
        M::Max => window::Agg::Max,
        M::Std => window::Agg::Std,
        M::Count => window::Agg::Count,
    }
}

/// The comparison zips over values: numbers numerically, strings and bools by their order,
/// `eq`/`ne` on anything; comparing other kinds is an operator error.
fn compare(op: &str, a: &Value, b: &Value) -> Result<bool, OpError> {
    use std::cmp::Ordering;
    if op == "eq" || op == "ne" {
        let same = match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        };
        return Ok(same == (op == "eq"));
    }
    let ord = match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
    };
    let ord = ord.ok_or_else(|| {
        OpError::new(format!(
            "cannot compare {} {a} with {} {b}",
            a.type_name(),
            b.type_name()
        ))
    })?;
    Ok(match op {
        "lt" => ord == Ordering::Less,
        "le" => ord != Ordering::Greater,
        "gt" => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testkit::{chunks, run_with_restore};
    use std::path::Path;

    const MANIFEST: &str = r#"
[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [1]

[[operator]]
name = "src2"
op = "source.list"
out = "y"
values = [1]

[[operator]]
name = "ts"
op = "source.list"
out = "t"
values = [[0, 1]]

[[operator]]
name = "acc"
op = "map_element"
in = "x"
out = "o1"
fn = "[x + state, state + 1]"
state = 0

[[operator]]
name = "rec"
op = "filter_element"
in = "x"
out = "o2"
fn = "[x > state, if x > state { x } else { state }]"
state = -1000

[[operator]]
name = "smooth"
op = "exponential_smoothing"
in = "x"
out = "o3"
alpha = 0.5
state = 1.0

[[operator]]
name = "gen"
op = "source_fn"
out = "o4"
count = 9
fn = "[x * state, state + 1]"
state = 1

[[operator]]
name = "ml"
op = "map_list"
in = "x"
out = "o5"
fn = "[batch.map(|v| v + state), state + 1]"
state = 0

[[operator]]
name = "mw"
op = "map_window"
in = "x"
out = "o6"
window = 3
step = 2
fn = "[sum(window) + state, state + 1]"
state = 0
initial_value = -1

[[operator]]
name = "mwl"
op = "map_window_list"
in = "x"
out = "o7"
window = 2
step = 1
flush = true
fn = "[[sum(window), state], state + 1]"
state = 0

[[operator]]
name = "sw"
op = "sliding_window_with_startup"
in = "x"
out = "o8"
window = 4
step = 2
fn = "[sum(window) * state, state + 1]"
state = 1

[[operator]]
name = "spw"
op = "split_window"
in = "x"
out = ["o9", "o10"]
window = 2
step = 2
fn = "[[window[0] + state, window[1]], state + 1]"
state = 0

[[operator]]
name = "mgw"
op = "merge_window"
in = ["x", "y"]
out = "o11"
window = [2, 1]
step = [2, 1]
fn = "[sum(windows[0]) + sum(windows[1]) + state, state + 1]"
state = 0

[[operator]]
name = "mtw"
op = "multi_window"
in = ["x", "y"]
out = ["o12", "o13"]
window = 1
fn = "[[windows[0][0] + state, windows[1][0]], state + 1]"
state = 0

[[operator]]
name = "tw"
op = "timed_window"
in = "t"
out = "o14"
duration = 4
step = 2
flush = true
fn = "[window.len() + state, state + 1]"
state = 0

[[operator]]
name = "zm"
op = "zip_map"
in = ["x", "y"]
out = "o15"
fn = "[xs[0] * xs[1] + state, state + 1]"
state = 0

[[operator]]
name = "mgl"
op = "merge_list"
in = ["x", "y"]
out = "o16"
fn = "[[batches[0].len() + state], state + 1]"
state = 0

[[operator]]
name = "ma"
op = "merge_asynch"
in = ["x", "y"]
out = "o17"
fn = "[[i, x + state], state + x]"
state = 0

[[operator]]
name = "se"
op = "split_element"
in = "x"
out = ["o18", "o19"]
fn = "[[x, state], state + x]"
state = 0

[[operator]]
name = "me"
op = "multi_element"
in = ["x", "y"]
out = ["o20", "o21"]
fn = "[[xs[0] + state, xs[1]], state + 1]"
state = 0

[[operator]]
name = "ske"
op = "sink_element"
in = "x"
fn = "state + x"
state = 0

[[operator]]
name = "skl"
op = "sink_list"
in = "x"
fn = "state + batch.len()"
state = 0

[[operator]]
name = "skw"
op = "sink_window"
in = "x"
window = 2
fn = "state + sum(window)"
state = 0

[[operator]]
name = "plain"
op = "zip_map"
in = ["x", "y"]
out = "o22"
fn = "xs[0] - xs[1]"
"#;

    fn manifest() -> Manifest {
        match crate::manifest::parse(MANIFEST, Path::new("pipeline.toml")) {
            Ok(m) => m,
            Err(d) => panic!("{}", d.render()),
        }
    }

    fn ints(r: std::ops::Range<i64>) -> Vec<Value> {
        r.map(Value::Int).collect()
    }

    #[test]
    fn manifest_operators_with_state_resume_from_a_snapshot() {
        let m = manifest();
        let xs = chunks(&ints(0..23), &[1, 3, 2, 5]);
        let ys = chunks(&ints(100..117), &[2, 1, 4]);
        let ts: Vec<Value> = (0..20)
            .map(|i| Value::Array(vec![Value::Int(i * 3 / 2), Value::Int(i)]))
            .collect();
        let ts = chunks(&ts, &[3, 1, 2]);
        let mut tested = 0;
        for d in &m.operators {
            if d.kind.starts_with("source.") {
                continue;
            }
            let make = || fn_operator(&m, d).unwrap().1;
            if d.kind == "source_fn" {
                for k in 0..10 {
                    let (got, want) = crate::operator::testkit::source_with_restore(make, k);
                    assert_eq!(got, want, "{} cut at {k}", d.name);
                    assert_eq!(
                        want,
                        [0, 2, 6, 12, 20, 30, 42, 56, 72].map(Value::Int).to_vec()
                    );
                }
                tested += 1;
                continue;
            }
            let inputs: Vec<Vec<Vec<Value>>> = d
                .inputs
                .iter()
                .map(|s| match s.as_str() {
                    "x" => xs.clone(),
                    "y" => ys.clone(),
                    _ => ts.clone(),
                })
                .collect();
            let order = [0, 1, 1, 0, 0, 1, 0];
            let n_out = d.outputs.len();
            for cut in 0..12 {
                let (got, want) = run_with_restore(make, inputs.clone(), &order, cut, n_out);
                assert_eq!(got, want, "{} cut at {cut}", d.name);
                if n_out > 0 {
                    assert!(!want[0].is_empty(), "{}", d.name);
                }
            }
            // A sink's state: the restored one ends where the uninterrupted one does.
            if n_out == 0 {
                let run = |op: &mut ValueOp, from: usize, to: usize| {
                    let mut out = Outputs::new(0);
                    for b in &xs[from..to] {
                        op.on_batch(0, b.clone(), &mut out).unwrap();
                    }
                };
                let mut whole = make();
                run(&mut whole, 0, xs.len());
                let mut first = make();
                run(&mut first, 0, 3);
                let mut second = make();
                second.restore(&first.snapshot().unwrap().unwrap()).unwrap();
                run(&mut second, 3, xs.len());
                assert_eq!(
                    second.snapshot().unwrap(),
                    whole.snapshot().unwrap(),
                    "{}",
                    d.name
                );
                let fresh = make().snapshot().unwrap();
                assert_ne!(whole.snapshot().unwrap(), fresh, "{}", d.name);
            }
            let stateful = d.state.is_some();
            assert_eq!(
                make().snapshot().unwrap().is_some(),
                stateful
                    || !matches!(
                        d.kind.as_str(),
                        "map_element"
                            | "filter_element"
                            | "sink_element"
                            | "map_list"
                            | "sink_list"
                            | "merge_asynch"
                            | "split_element"
                    ),
                "{}",
                d.name
            );
            tested += 1;
        }
        assert_eq!(tested, 21);
    }
}
